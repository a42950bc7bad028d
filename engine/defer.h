/*
 * defer.h: deferred kernels, the forward pass's inter-op parallelism. An op called from a
 * program's own thread may queue its kernel instead of running it, and return its result at
 * once; queued kernels run when some value they produce or read is needed, independent ones
 * at the same time on the thread team. Nothing else changes: every access to a tensor's
 * elements goes through tensor_data, which first runs what is queued on that storage, so a
 * program sees exactly the values, errors and gradients of eager execution.
 */
#ifndef AG_DEFER_H
#define AG_DEFER_H

#include <stdalign.h>
#include <stdbool.h>
#include <stdint.h>

#include "tensor.h"

struct dtask;
/* Runs a task's kernel: out and ins are headers over the task's storages with the geometry
 * the tensors had when it was queued. */
typedef void (*dtask_run)(struct dtask *t, tensor *out, tensor *const *ins);

/** What a queued kernel keeps of a tensor: its storage (a reference) and its geometry when
 *  queued. Not the tensor: dropping a task then frees memory and never a tensor, whose last
 *  release may run user code (a hook's free_userdata) that must run when the program releases
 *  it, as in eager execution. */
typedef struct dview {
    storage *st;
    int64_t offset, numel;
    uint8_t dtype, ndim;
    int64_t *dims; /* ndim sizes, then ndim strides, in the task's block */
} dview;

/** A queued kernel: it writes views[0] (a fresh tensor's storage) from views[1..1 + nin) and
 *  nothing else, and cannot fail (what it may need to allocate is reserved when it is
 *  queued). One allocation, its views' sizes and strides after it (small enough for the
 *  allocator's pools). */
typedef struct dtask {
    struct dtask *next;
    dtask_run run;
    int nin;
    int16_t parent;   /* queue position of the task that writes its first queued input (-1:
                         none): a task runs on its parent's thread */
    int64_t work;     /* a rough cost (elements, multiply-adds / 8): only balances threads */
    void *reserve;    /* memory the kernel may use if its own allocation fails (freed after) */
    size_t reserve_bytes;
    dview views[4];
    alignas(16) unsigned char args[64]; /* the kernel's own parameters */
    alignas(8) int64_t dims[];
} dtask;

/* storage.pend: a queued task writes the storage (and has not run yet), it sits in the
 * queue rather than in a batch now running, and how many queued or running tasks read it. */
#define PEND_WRITER 0x80000000u
#define PEND_QUEUED 0x40000000u
#define PEND_READERS 0x3fffffffu

/* Below this much work an op is queued only if an input is still pending (a scalar graph's
 * ops never are): queueing costs about what a small kernel does. */
#define DEFER_MIN_WORK 4096

/** The cheap half of defer_wanted, inline: work >= DEFER_MIN_WORK or an input pending.
 *  Scalar graphs' ops stop here (a few loads), before the call. */
static inline bool defer_worth(tensor *const *ins, int nin, int64_t work)
{
    if (work >= DEFER_MIN_WORK) return true;
    for (int k = 0; k < nin; k++)
        if (atomic_load_explicit(&ins[k]->st->pend, memory_order_relaxed)) return true;
    return false;
}

/** Whether the calling thread may queue kernels now: deferral on (ag_set_deferral), more
 *  than one thread, a caller that is neither inside a parallel region nor in a backward
 *  pass. */
bool defer_allowed(void);

/** Whether an op of this much work on these inputs should queue its kernel: defer_worth,
 *  then defer_allowed (so that scalar graphs' ops make no call). */
static inline bool defer_wanted(tensor *const *ins, int nin, int64_t work)
{
    return defer_worth(ins, nin, work) && defer_allowed();
}
/** A task for a kernel that writes `out` from ins (copies of their headers, their storages
 *  retained) with `reserve` bytes of fallback memory; NULL on failure, with nothing retained
 *  and the thread's error untouched: the caller then runs the kernel itself, eagerly (after
 *  defer_flush, so that the queue's memory is free as it would be without deferral). The
 *  caller fills args and submits it. */
dtask *defer_task(tensor *out, tensor *const *ins, int nin, dtask_run run, int64_t work,
                  size_t reserve);
/** Queues t (never fails; may first run what is queued when the queue is full). */
void defer_submit(dtask *t);
/** Runs every queued kernel; returns when they, and any running when it was called, are done. */
void defer_flush(void);
/** defer_flush if anything is queued (a relaxed check: enough before a backward pass, whose
 *  reads wait for anything else through tensor_data). */
void defer_flush_queued(void);
/** Stops (true) or resumes deferral on the calling thread; returns the previous setting.
 *  Backward passes run with it stopped. */
bool defer_suspend(bool on);
/** Whether the calling thread is running a queued kernel (or a chunk of one): its storages
 *  are then ready. par_for carries it into the threads that run the chunks. */
bool defer_in_task(void);
void defer_set_in_task(bool on);
/** Process-wide switch (ag_set_deferral); on by default. */
void defer_enable(bool on);
bool defer_enabled(void);

#endif
