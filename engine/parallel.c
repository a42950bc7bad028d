/*
 * parallel.c: chunked parallel loops over OpenMP (see parallel.h for the determinism rule).
 */
#include "parallel.h"

#include "defer.h"

#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

/* Process-wide by design (like torch.set_num_threads): bindings such as Go move a caller
 * between OS threads, so a per-thread count would change under their feet. 0 = default. */
static atomic_int requested_threads;

/* Whether the library has run a thread team in this process, and whether this process is a
 * child made by fork() after that. Such a child runs on one thread unless the program asks for
 * more: GCC's OpenMP runtime keeps the parent's thread pool in name only, and the child's
 * first team (any parallel op) waited forever for threads that do not exist. A child of a
 * process that never ran a team keeps the default (its runtime starts a pool of its own). */
static atomic_bool teams_started, forked;

void par_team_begins(void)
{
    if (!atomic_load_explicit(&teams_started, memory_order_relaxed))
        atomic_store_explicit(&teams_started, true, memory_order_relaxed);
}

static void par_forked(void)
{
    if (!atomic_load_explicit(&teams_started, memory_order_relaxed)) return;
    atomic_store_explicit(&forked, true, memory_order_relaxed);
    atomic_store_explicit(&requested_threads, 0, memory_order_relaxed);
}

__attribute__((constructor)) static void par_register_fork(void)
{
    pthread_atfork(NULL, NULL, par_forked);
}

/* The default count: 1 in a forked child of a process that ran a team (see forked); else the
 * first entry of OMP_NUM_THREADS if it is a positive integer, else the processors this
 * process may run on. Not omp_get_max_threads(): that is the calling thread's own setting
 * (omp_set_num_threads, or 1 inside a parallel region of the caller's), and the default,
 * cached once, would then depend on which thread called first. */
static int default_threads(void)
{
    static atomic_int cached;
    if (atomic_load_explicit(&forked, memory_order_relaxed)) return 1;
    int n = atomic_load_explicit(&cached, memory_order_relaxed);
    if (n > 0) return n;
    n = 0;
    const char *env = getenv("OMP_NUM_THREADS");
    if (env) {
        while (*env == ' ' || *env == '\t') env++;
        char *end;
        long v = strtol(env, &end, 10);
        while (*end == ' ' || *end == '\t') end++;
        if (end != env && (*end == '\0' || *end == ',') && v > 0) n = v > 1024 ? 1024 : (int)v;
    }
    if (n < 1) n = omp_get_num_procs();
    if (n < 1) n = 1;
    atomic_store_explicit(&cached, n, memory_order_relaxed);
    return n;
}

int par_num_threads(void)
{
    int n = atomic_load_explicit(&requested_threads, memory_order_relaxed);
    return n > 0 ? n : default_threads();
}

void par_set_num_threads(int n)
{
    atomic_store_explicit(&requested_threads, n < 0 ? 0 : n, memory_order_relaxed);
}

static _Thread_local bool serial __attribute__((tls_model("initial-exec")));

int par_plan_threads(void) { return serial ? 1 : par_num_threads(); }

bool par_set_serial(bool s)
{
    bool prev = serial;
    serial = s;
    return prev;
}

void par_for(int64_t n, int64_t grain, par_fn fn, void *ctx)
{
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    int64_t nchunks = (n + grain - 1) / grain;
    int nt = par_num_threads();
    if (nchunks == 1 || nt == 1 || serial) {
        for (int64_t c = 0; c < nchunks; c++) {
            int64_t lo = c * grain, hi = lo + grain < n ? lo + grain : n;
            fn(ctx, lo, hi);
        }
        return;
    }
    if (omp_in_parallel()) {
        /* Inside a backward task: share the existing team instead of nesting a region. */
        /* (An unsigned counter: clang's taskloop lowering compares it with an unsigned
         * trip count.) */
        uint64_t count = (uint64_t)nchunks;
        bool task = defer_in_task();
#pragma omp taskloop grainsize(1) default(none) shared(fn, ctx, n, grain, count, task)
        for (uint64_t c = 0; c < count; c++) {
            int64_t lo = (int64_t)c * grain, hi = lo + grain < n ? lo + grain : n;
            bool prev = defer_in_task();
            defer_set_in_task(task);
            fn(ctx, lo, hi);
            defer_set_in_task(prev);
        }
        return;
    }
    /* Static: consecutive chunks stay on one thread, so consecutive ops over the same
     * tensors (a matmul, then its tanh) find their data in the same core's cache.
     * The team is always the full thread count, even for fewer chunks (the threads without
     * a chunk only pass the barrier): libgomp ends the pool threads a smaller team leaves
     * out and creates new ones for the next larger team, so teams sized by chunk count
     * (2 for a tanh, 8 for a matmul) cost a thread creation per region on a 16-core machine
     * (wide: 9.8 ms at 8 threads against 4.1 at 2). PyTorch works around the same libgomp
     * behaviour the same way (pytorch#32008). */
    /* A deferred kernel's chunks run as part of it (defer.h): the team's threads must not
     * wait for the storages it reads and writes. An eager kernel's chunks may read what a
     * queued one writes: the queue runs now, with the whole team, rather than from inside
     * the region, where the first chunk to need it would run it while the other threads
     * wait for it (a product then ran on one core). */
    bool task = defer_in_task();
    if (!task) defer_flush_queued();
    par_team_begins();
#pragma omp parallel num_threads(nt) default(none) shared(fn, ctx, n, grain, nchunks, task)
    {
        bool prev = defer_in_task();
        defer_set_in_task(task);
#pragma omp for schedule(static)
        for (int64_t c = 0; c < nchunks; c++) {
            int64_t lo = c * grain, hi = lo + grain < n ? lo + grain : n;
            fn(ctx, lo, hi);
        }
        defer_set_in_task(prev);
    }
}
