/* TEMPORARY stub */
#include <stdio.h>
#include <string.h>
#include "alloc.h"
#include "format.h"
eng_err tensor_format(char **out, const tensor *t)
{
    char *s = mem_alloc(64);
    if (!s) return err_nomem();
    snprintf(s, 64, "tensor(<%d-d>)", t->ndim);
    *out = s;
    return E_OK;
}
