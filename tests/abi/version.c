/* version.c: the runtime version agrees with the header the caller compiled against. */
#include <stdio.h>
#include <string.h>

#include "autograd.h"

int main(void)
{
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", AG_VERSION_MAJOR, AG_VERSION_MINOR, AG_VERSION_PATCH);
    if (ag_version_number() != AG_VERSION_NUMBER || strcmp(ag_version_string(), want) != 0 ||
        strcmp(AG_VERSION_STRING, want) != 0) {
        fprintf(stderr, "version mismatch: header %d (%s), library %d (%s)\n", AG_VERSION_NUMBER,
                AG_VERSION_STRING, ag_version_number(), ag_version_string());
        return 1;
    }
    printf("version %s (%d)\n", ag_version_string(), ag_version_number());
    return 0;
}
