/*
 * parallel.h: the one way kernels and the backward scheduler use threads.
 *
 * Work is cut into chunks whose boundaries depend only on the problem size and a grain, never
 * on the thread count, so any reduction that combines per-chunk results in chunk order gives
 * bitwise-identical results for 1, 2 or 64 threads. Outside a parallel region a loop opens one
 * (worksharing over chunks); inside one (a backward task) it spawns a taskloop on the existing
 * team instead, so nothing is ever oversubscribed.
 */
#ifndef AG_PARALLEL_H
#define AG_PARALLEL_H

#include <stdbool.h>
#include <stdint.h>

/** Calls fn(ctx, lo, hi) for every chunk [lo, hi) of [0, n), chunks of `grain` elements (the
 *  last may be shorter). Chunks may run concurrently and in any order; each runs exactly once.
 *  Runs inline when there is one chunk or one thread. */
typedef void (*par_fn)(void *ctx, int64_t lo, int64_t hi);
void par_for(int64_t n, int64_t grain, par_fn fn, void *ctx);

/** Makes par_for on the calling thread run its chunks inline (returns the previous
 *  setting). Backward sets it while the team runs independent nodes at once: each kernel
 *  then uses one thread, and the team's threads stay free for the other nodes. */
bool par_set_serial(bool serial);

/** The process-wide thread count (ag_set_num_threads / OMP_NUM_THREADS / cores; 1 by
 *  default in a child made by fork() after the library ran a thread team). */
int par_num_threads(void);
/** The threads a kernel's par_for calls will use from here: 1 while par_set_serial is on,
 *  else par_num_threads(). What kernels plan their split for (never their results). */
int par_plan_threads(void);
/** Sets it; 0 restores the default. */
void par_set_num_threads(int n);
/** Records that the library is about to open a parallel region (of par_num_threads()
 *  threads): a child this process forks from then on runs on one thread. Called before
 *  every `omp parallel` of the library. */
void par_team_begins(void);

/** Grain sizes: elements of work per chunk for cheap (add, mul, copy) and costly (exp, tanh)
 *  elementwise kernels. Chosen so a chunk costs several microseconds: far above the ~1 us
 *  price of a task or a parallel region on this kind of machine. */
#define PAR_GRAIN_CHEAP 32768
#define PAR_GRAIN_COSTLY 8192

#endif
