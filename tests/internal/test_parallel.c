/*
 * test_parallel.c: par_for (engine/parallel.c) runs every chunk exactly once, in the chunk
 * boundaries the grain fixes, whatever the thread count; and it reuses one pool of threads
 * whatever the chunk count of each loop, instead of libgomp's ending and re-creating the
 * threads a smaller team leaves out (a thread creation per region on many-core machines).
 */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "parallel.h"

static int failures;
#define CHECK(cond, ...)                                                                     \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                                  \
            fprintf(stderr, __VA_ARGS__);                                                    \
            fputc('\n', stderr);                                                             \
            failures++;                                                                      \
        }                                                                                    \
    } while (0)

enum { N = 1000, MAX_TIDS = 4096 };

typedef struct {
    int64_t grain;
    atomic_int hits[N];
    atomic_int bad_bounds;
    atomic_int ntids;
    atomic_long tids[MAX_TIDS]; /* every OS thread id seen running a chunk */
} job;

static void note_tid(job *j)
{
    long me = (long)syscall(SYS_gettid);
    int n = atomic_load(&j->ntids);
    for (int i = 0; i < n && i < MAX_TIDS; i++)
        if (atomic_load(&j->tids[i]) == me) return;
    int slot = atomic_fetch_add(&j->ntids, 1);
    if (slot < MAX_TIDS) atomic_store(&j->tids[slot], me);
}

static void chunk(void *ctx, int64_t lo, int64_t hi)
{
    job *j = ctx;
    if (lo % j->grain != 0 || (hi - lo != j->grain && hi != N) || hi > N || lo >= hi)
        atomic_fetch_add(&j->bad_bounds, 1);
    for (int64_t i = lo; i < hi && i < N; i++) atomic_fetch_add(&j->hits[i], 1);
    note_tid(j);
}

/* Every element exactly once, chunk bounds at multiples of the grain, for 1 to 4 threads. */
static void covers_each_chunk_once(void)
{
    static job j;
    const int64_t grains[] = {1, 7, 250, 999, 1000, 5000};
    for (int nt = 1; nt <= 4; nt++) {
        par_set_num_threads(nt);
        for (size_t g = 0; g < sizeof grains / sizeof *grains; g++) {
            memset(&j, 0, sizeof j);
            j.grain = grains[g];
            par_for(N, j.grain, chunk, &j);
            int wrong = 0;
            for (int i = 0; i < N; i++) wrong += atomic_load(&j.hits[i]) != 1;
            CHECK(wrong == 0, "threads=%d grain=%lld: %d elements not visited exactly once", nt,
                  (long long)j.grain, wrong);
            CHECK(atomic_load(&j.bad_bounds) == 0, "threads=%d grain=%lld: chunk bounds off the grain",
                  nt, (long long)j.grain);
        }
    }
    par_set_num_threads(0);
}

/* Loops of 2, 4, 3 and 1 chunks in turn, on 4 threads: the chunks run on at most 4 distinct
 * OS threads in all (the pool's). With teams sized by chunk count, libgomp made 2 new
 * threads each time a 4-chunk loop followed a 2-chunk one: ~300 distinct threads here. */
static void one_pool_for_any_chunk_count(void)
{
    static job j;
    memset(&j, 0, sizeof j);
    par_set_num_threads(4);
    const int64_t grains[] = {500, 250, 334, 1000};
    for (int round = 0; round < 100; round++)
        for (size_t g = 0; g < sizeof grains / sizeof *grains; g++) {
            j.grain = grains[g];
            par_for(N, j.grain, chunk, &j);
        }
    par_set_num_threads(0);
    int n = atomic_load(&j.ntids);
    CHECK(n <= 4, "400 loops on 4 threads ran on %d distinct OS threads (want at most 4)", n);
    CHECK(atomic_load(&j.bad_bounds) == 0, "chunk bounds off the grain");
}

int main(void)
{
    covers_each_chunk_once();
    one_pool_for_any_chunk_count();
    if (failures) {
        fprintf(stderr, "test_parallel: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_parallel: ok\n");
    return 0;
}
