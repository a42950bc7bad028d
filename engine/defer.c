/*
 * defer.c: the queue of deferred kernels and how a batch of them runs (see defer.h).
 *
 * Why: a forward pass is a sequence of eager calls from one thread, so each op could only
 * split its own kernel across the team, and the small ones of a wide model (a 64 x 256 tanh)
 * then cost as much in data moving between cores as they save. Queued, the independent
 * chains of a batch (the heads of a multi-head model) run whole on one thread each, every
 * kernel on the core that made its operands, as a program with one thread per head would.
 *
 * One queue for the process, by design: any thread may read any tensor, so whoever needs a
 * value must be able to run the kernel that makes it, whichever thread queued it. Queue order
 * is a topological order (a task's operands existed when it was queued). A task goes to the
 * thread of its parent, the task that writes its first queued operand; tasks without one
 * (roots) are shared out in queue order, in contiguous runs of about equal work (their own
 * and their descendants'). Each thread then runs its tasks in queue order, first waiting for
 * operands another thread writes. When that split is uneven (a plain chain of layers has one
 * root), the batch runs in queue order on the calling thread instead, each kernel split
 * across the team as in eager execution. Results do not depend on any of this: each kernel
 * gives the same bits on any thread.
 */
#include "defer.h"

#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "alloc.h"
#include "parallel.h"

/* A full queue runs: at QUEUE_MAX tasks (a batch's bookkeeping fits the stack), or once its
 * results and reserves take QUEUE_MAX_BYTES (what the queue keeps alive beyond eager execution
 * is of that order: a big op runs at once; a wide model's forward, ~6 MB for 32 heads, is
 * queued whole). */
#define QUEUE_MAX 1024
#define QUEUE_MAX_BYTES ((size_t)16 << 20)

static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;   /* the queue; storages' wpos
                                                                 and PEND_QUEUED */
static pthread_mutex_t run_lock = PTHREAD_MUTEX_INITIALIZER; /* one batch runs at a time */
static dtask *q_head, *q_tail;
static atomic_int q_count;
static size_t q_bytes; /* bytes of the queued tasks' results and reserves (under q_lock) */
static atomic_bool disabled;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static _Thread_local bool suspended __attribute__((tls_model("initial-exec")));
static _Thread_local bool in_task __attribute__((tls_model("initial-exec")));

void defer_enable(bool on) { atomic_store_explicit(&disabled, !on, memory_order_relaxed); }
bool defer_enabled(void) { return !atomic_load_explicit(&disabled, memory_order_relaxed); }

bool defer_suspend(bool on)
{
    bool prev = suspended;
    suspended = on;
    return prev;
}

bool defer_in_task(void) { return in_task; }
void defer_set_in_task(bool on) { in_task = on; }

/* fork() while another thread holds a lock would leave it held in the child forever. */
static void fork_prepare(void)
{
    pthread_mutex_lock(&run_lock);
    pthread_mutex_lock(&q_lock);
}
static void fork_done(void)
{
    pthread_mutex_unlock(&q_lock);
    pthread_mutex_unlock(&run_lock);
}
static void fork_register(void) { pthread_atfork(fork_prepare, fork_done, fork_done); }

bool defer_allowed(void)
{
    if (suspended || atomic_load_explicit(&disabled, memory_order_relaxed)) return false;
    /* (Inside a parallel region the caller is a backward task or a kernel's chunk.) */
    return par_num_threads() > 1 && !omp_in_parallel();
}

/* v: src's storage (a reference taken) and geometry, its sizes and strides at *dims. */
static void keep_view(dview *v, int64_t **dims, const tensor *src)
{
    v->st = src->st;
    v->offset = src->offset;
    v->numel = src->numel;
    v->dtype = src->dtype;
    v->ndim = src->ndim;
    v->dims = *dims;
    memcpy(v->dims, src->shape, (size_t)src->ndim * sizeof **dims);
    memcpy(v->dims + src->ndim, src->strides, (size_t)src->ndim * sizeof **dims);
    *dims += 2 * src->ndim;
    atomic_fetch_add_explicit(&src->st->refs, 1, memory_order_relaxed);
}

/* h: a header over v for a kernel (no autograd fields; it lives on the runner's stack). */
static void view_header(tensor *h, const dview *v)
{
    memset(h, 0, sizeof *h);
    atomic_init(&h->refs, 1);
    h->st = v->st;
    h->offset = v->offset;
    h->numel = v->numel;
    h->dtype = v->dtype;
    h->ndim = v->ndim;
    h->shape = v->dims;
    h->strides = v->dims + v->ndim;
}

dtask *defer_task(tensor *out, tensor *const *ins, int nin, dtask_run run, int64_t work,
                  size_t reserve)
{
    size_t ndims = out->ndim;
    for (int k = 0; k < nin; k++) ndims += ins[k]->ndim;
    dtask *t = mem_alloc(sizeof *t + 2 * ndims * sizeof(int64_t));
    void *r = reserve ? mem_alloc_aligned(reserve, MEM_DATA_ALIGN) : NULL;
    if (!t || (reserve && !r)) {
        mem_free(t);
        mem_free_aligned(r);
        return NULL;
    }
    t->next = NULL;
    t->run = run;
    t->nin = nin;
    int64_t *dims = t->dims;
    keep_view(&t->views[0], &dims, out);
    for (int k = 0; k < nin; k++) keep_view(&t->views[1 + k], &dims, ins[k]);
    t->parent = -1;
    t->work = work;
    t->reserve = r;
    t->reserve_bytes = reserve;
    return t;
}

void defer_submit(dtask *t)
{
    pthread_once(&fork_once, fork_register);
    pthread_mutex_lock(&q_lock);
    /* Full: run what is there first. */
    while (atomic_load_explicit(&q_count, memory_order_relaxed) >= QUEUE_MAX) {
        pthread_mutex_unlock(&q_lock);
        defer_flush();
        pthread_mutex_lock(&q_lock);
    }
    int pos = atomic_load_explicit(&q_count, memory_order_relaxed);
    t->parent = -1;
    for (int k = 0; k < t->nin; k++) {
        storage *s = t->views[1 + k].st;
        if (t->parent < 0 && (atomic_load_explicit(&s->pend, memory_order_relaxed) & PEND_QUEUED))
            t->parent = (int16_t)s->wpos;
        atomic_fetch_add_explicit(&s->pend, 1, memory_order_relaxed);
    }
    storage *o = t->views[0].st;
    o->wpos = (uint16_t)pos;
    atomic_fetch_or_explicit(&o->pend, PEND_WRITER | PEND_QUEUED, memory_order_relaxed);
    if (q_tail) q_tail->next = t;
    else q_head = t;
    q_tail = t;
    atomic_store_explicit(&q_count, pos + 1, memory_order_relaxed);
    q_bytes += o->nbytes + t->reserve_bytes;
    bool full = q_bytes > QUEUE_MAX_BYTES;
    pthread_mutex_unlock(&q_lock);
    if (full) defer_flush();
}

/* Runs t on the calling thread (its kernel's chunks may go to the team); its storages then no
 * longer count it, so readers stop waiting for it. */
static void run_task(dtask *t)
{
    tensor h[4], *ins[3];
    for (int k = 0; k <= t->nin; k++) view_header(&h[k], &t->views[k]);
    for (int k = 0; k < t->nin; k++) ins[k] = &h[1 + k];
    bool prev = in_task;
    in_task = true;
    t->run(t, &h[0], ins);
    in_task = prev;
    atomic_fetch_and_explicit(&t->views[0].st->pend, ~PEND_WRITER, memory_order_release);
    for (int k = 1; k <= t->nin; k++)
        atomic_fetch_sub_explicit(&t->views[k].st->pend, 1, memory_order_release);
}

/* Drops a task that has run: memory only (its storages, its reserve). */
static void drop_task(dtask *t)
{
    for (int k = 0; k <= t->nin; k++) storage_release(t->views[k].st);
    mem_free_aligned(t->reserve);
    mem_free(t);
}

/* Waits until another thread of the batch has written t's operands (earlier in queue order,
 * so it never waits for this one: no cycle). */
static void wait_operands(const dtask *t)
{
    for (int k = 1; k <= t->nin; k++) {
        const storage *s = t->views[k].st;
        for (int spin = 0; atomic_load_explicit(&((storage *)s)->pend, memory_order_acquire) &
                           PEND_WRITER;
             spin++)
            if (spin >= 256) sched_yield();
    }
}

/* Shares the batch's n tasks (queue order) out to nt threads: owner[i]. Returns whether the
 * split is even enough to run the threads side by side. */
static bool share_out(dtask *const *ts, int n, int nt, uint8_t *owner)
{
    int16_t root[QUEUE_MAX];
    int64_t rwork[QUEUE_MAX], total = 0;
    for (int i = 0; i < n; i++) {
        int p = ts[i]->parent;
        root[i] = (int16_t)(p >= 0 && p < i ? root[p] : i);
        rwork[i] = 0;
        rwork[root[i]] += ts[i]->work;
        total += ts[i]->work;
    }
    if (total <= 0) return false;
    int64_t load[256] = {0}, before = 0;
    for (int i = 0; i < n; i++) {
        if (root[i] == i) {
            /* the thread whose share holds the middle of this root's work */
            int64_t mid = before + rwork[i] / 2;
            int th = (int)((double)mid * nt / (double)total);
            owner[i] = (uint8_t)(th < nt ? th : nt - 1);
            before += rwork[i];
        } else {
            owner[i] = owner[root[i]];
        }
        load[owner[i]] += ts[i]->work;
    }
    int64_t most = 0;
    for (int th = 0; th < nt; th++)
        if (load[th] > most) most = load[th];
    return most * nt * 100 <= total * 115;
}

void defer_flush(void)
{
    pthread_once(&fork_once, fork_register);
    pthread_mutex_lock(&run_lock);
    pthread_mutex_lock(&q_lock);
    dtask *list = q_head;
    int n = atomic_load_explicit(&q_count, memory_order_relaxed);
    q_head = q_tail = NULL;
    atomic_store_explicit(&q_count, 0, memory_order_relaxed);
    q_bytes = 0;
    for (dtask *t = list; t; t = t->next)
        atomic_fetch_and_explicit(&t->views[0].st->pend, ~PEND_QUEUED, memory_order_relaxed);
    pthread_mutex_unlock(&q_lock);
    if (n) {
        dtask *order[QUEUE_MAX];
        uint8_t owner[QUEUE_MAX];
        int i = 0;
        for (dtask *t = list; t; t = t->next) order[i++] = t;
        int nt = par_num_threads();
        if (nt > 256) nt = 256;
        bool side = nt > 1 && n > 1 && !omp_in_parallel() && share_out(order, n, nt, owner);
        if (side) {
            par_team_begins();
#pragma omp parallel num_threads(nt) default(none) shared(order, owner, n)
            {
                int th = omp_get_thread_num(), team = omp_get_num_threads();
                bool serial = par_set_serial(true);
                for (int k = 0; k < n; k++) {
                    if (owner[k] % team != th) continue;
                    wait_operands(order[k]);
                    run_task(order[k]);
                }
                par_set_serial(serial);
            }
        } else {
            /* Inside a parallel region (a backward task reading a result another thread
             * queued), kernels run whole: a kernel waiting for its taskloop could run some
             * other task of the region meanwhile, on this thread, as if it were this batch's. */
            bool nested = omp_in_parallel(), serial = nested && par_set_serial(true);
            for (int k = 0; k < n; k++) run_task(order[k]);
            if (nested) par_set_serial(serial);
        }
    }
    pthread_mutex_unlock(&run_lock);
    for (dtask *t = list, *next; t; t = next) {
        next = t->next;
        drop_task(t);
    }
}

void defer_flush_queued(void)
{
    if (atomic_load_explicit(&q_count, memory_order_relaxed)) defer_flush();
}

void defer_wait(storage *s)
{
    (void)s; /* (the whole queue runs: what s waits for may wait for anything before it) */
    if (!in_task) defer_flush();
}
