/*
 * test_default_threads.c: the default thread count (engine/parallel.c) is the process's, not
 * the first caller's: a caller whose own OpenMP setting is 1 thread (omp_set_num_threads, or
 * a thread inside a parallel region of its own) must not make it 1 for the whole process.
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "parallel.h"

int main(void)
{
    /* What the default must be: OMP_NUM_THREADS's first entry if the environment sets one
     * (ctest does not), else the processors this process may use. */
    const char *env = getenv("OMP_NUM_THREADS");
    int want = env && atoi(env) > 0 ? atoi(env) : omp_get_num_procs();
    if (want > 1024) want = 1024;
    omp_set_num_threads(1); /* this thread's own setting, before the library's first use */
    int got = par_num_threads();
    if (got != want) {
        fprintf(stderr, "default thread count %d after the caller set 1 for itself; want %d\n",
                got, want);
        return 1;
    }
    par_set_num_threads(3);
    if (par_num_threads() != 3) {
        fprintf(stderr, "an explicit count is not kept\n");
        return 1;
    }
    par_set_num_threads(0);
    if (par_num_threads() != want) {
        fprintf(stderr, "0 does not restore the default\n");
        return 1;
    }
    printf("test_default_threads: default %d whatever the first caller's own setting\n", got);
    return 0;
}
