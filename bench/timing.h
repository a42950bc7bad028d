/*
 * timing.h: the wall clock and sample ordering the C benchmark programs share.
 */
#ifndef AG_BENCH_TIMING_H
#define AG_BENCH_TIMING_H

#include <time.h>

/** Seconds on a monotonic clock. */
static inline double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/** qsort comparator for doubles, ascending. */
static inline int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#endif
