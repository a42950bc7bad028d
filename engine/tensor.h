/*
 * tensor.h: storages, tensors (strided views of a storage) and their autograd metadata.
 *
 * A storage owns the bytes and the version counter, so every view of it (and detach()) sees
 * the same version, as PyTorch's views do. A tensor is a header: shape, strides, offset into
 * its storage, plus the autograd fields. Both are reference counted with atomics; the last
 * release destroys without recursion (long graphs would overflow the stack otherwise).
 */
#ifndef AG_TENSOR_H
#define AG_TENSOR_H

#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "alloc.h"
#include "dtype.h"
#include "error.h"

#define MAX_DIMS 8

struct node;
struct hook;

typedef struct storage {
    atomic_long refs;
    atomic_long version;
    size_t nbytes;
    void *data;         /* MEM_DATA_ALIGN-aligned unless nbytes <= 64 */
    void *block;        /* the allocation holding the tensor made with it, this, and data */
    uint8_t block_kind; /* how the block goes back (BLOCK_*) */
    _Atomic uint8_t guests; /* GUEST_*: what else lives in this block (a 0-d leaf made with
                               its meta, tensor_new_scalar_leaf), each holding one of `refs`
                               (storage_users) */
    uint16_t wpos;      /* the queue position of the queued task that writes it (defer.c,
                           under the queue's lock) */
    _Atomic uint32_t pend; /* deferred kernels that write or read it (defer.h: PEND_*); 0
                              when none: the elements are then what eager execution gives */
} storage;
/* (48 bytes: a 0-d tensor, header, storage and data, is 152 and takes the 160-byte class) */
_Static_assert(sizeof(storage) == 48, "the storage stays 48 bytes");

/* BLOCK_GUEST: a storage laid out in another storage's block (a 0-d leaf's .grad, in the
 * leaf's): releasing it releases that storage instead of freeing anything. */
enum { BLOCK_MALLOC = 0, BLOCK_ALIGNED = 1, BLOCK_GUEST = 2 };
enum { GUEST_META = 1, GUEST_GRAD = 2 };

/* The references to st held by tensors: its count less those of the guests in its block
 * (checks for a gradient nobody else holds compare this, not the count, with 1). */
static inline long storage_users(storage *st)
{
    unsigned g = atomic_load_explicit(&st->guests, memory_order_relaxed);
    return atomic_load(&st->refs) - (long)(g & 1) - (long)(g >> 1 & 1);
}

/* Autograd extras most tensors never need: created on first use, reference counted so a
 * graph node can keep writing a retained gradient after the user dropped the tensor. */
typedef struct tmeta {
    atomic_long refs;
    atomic_flag lock;          /* guards grad and hooks */
    struct tensor *grad;       /* .grad (strong) */
    struct hook *hooks;        /* registration order (the first's `prev` is the last) */
    uint64_t next_hook_id;
    uint32_t caller_hooks;     /* how many of them must run on the caller's thread */
    uint32_t hist;             /* the tensor's history: +1 each time an in-place op gives it a
                                  new grad_fn (atomic; tensor_history_moved) */
    bool retains_grad;
    bool caller_thread;        /* some hook must run on the caller's thread */
    bool hosted;               /* laid out in its tensor's storage block, which it holds a
                                  reference to (tensor_new_scalar_leaf) */
    struct node *acc;          /* a leaf's AccumulateGrad node, living in this block: a
                                  reference to it is one to the leaf (graph.h, node_retain) */
} tmeta;

/* Bytes of a meta block before the AccumulateGrad node laid out behind it (tensor_meta). */
#define TMETA_HEAD ((sizeof(tmeta) + 15) & ~(size_t)15)

typedef struct tensor {
    atomic_long refs;
    storage *st;
    int64_t offset; /* in elements */
    int64_t numel;
    uint8_t dtype;
    uint8_t ndim;
    uint8_t requires_grad; /* set by the user on leaves; non-leaves require grad via grad_fn */
    uint8_t zeros;         /* made as PyTorch's _efficientzerotensor (tensor_is_zeros) */
    uint32_t output_nr;    /* which output of grad_fn this tensor is */
    int64_t *shape;   /* ndim sizes, stored right after the header in its block */
    int64_t *strides; /* ndim strides (elements), after the sizes */
    struct node *grad_fn;          /* strong; NULL for leaves */
    struct tensor *base;           /* strong; the root base of a view, else NULL */
    _Atomic(tmeta *) meta;         /* lazily created */
    atomic_flag view_lock;         /* a view: guards the regeneration of grad_fn (view_sync) */
    uint8_t view_kind;             /* a view: how it was made (view_kind) */
    _Atomic uint32_t view_version; /* a view: the storage version its grad_fn reflects */
    struct tensor *dead_next;      /* link in the deferred-destruction list */
} tensor;

/* How a view was made, which decides what happens when its base changes in place behind it
 * (PyTorch's CreationMeta): a view made under grad mode gets a fresh grad_fn; the others are
 * refused, as PyTorch refuses them, because no history says what they should follow. VK_CUSTOM:
 * an output of a custom function that is a view (an input returned as is included), whose
 * history is the function's node, which a rebase would bypass. */
enum view_kind { VK_DEFAULT = 0, VK_NO_GRAD = 1, VK_MULTI = 2, VK_CUSTOM = 3 };

/* ---- creation (no autograd) ---- */
/** A new contiguous, uninitialised tensor; NULL (E_NOMEM/E_INVAL set) on failure. */
tensor *tensor_new(dtype dt, const int64_t *shape, int ndim);
/* Every field of a fresh header (its sizes and strides follow it in its block) written once,
 * zeros included. (Not with one initializer of the whole struct, nor memset and then the
 * fields: gcc compiled both to a `rep stos` clearing the header first, as costly as the rest
 * of making a 0-d tensor, which scalar graphs do several times per node.) */
static inline __attribute__((always_inline)) void header_init(tensor *t, storage *st, int dt,
                                                              int ndim, int64_t numel,
                                                              int64_t offset)
{
    atomic_init(&t->refs, 1);
    t->st = st;
    t->offset = offset;
    t->numel = numel;
    t->dtype = (uint8_t)dt;
    t->ndim = (uint8_t)ndim;
    t->requires_grad = 0;
    t->zeros = 0;
    t->output_nr = 0;
    t->shape = (int64_t *)(t + 1);
    t->strides = t->shape + ndim;
    t->grad_fn = NULL;
    t->base = NULL;
    atomic_init(&t->meta, NULL);
    atomic_flag_clear_explicit(&t->view_lock, memory_order_relaxed); /* (unpublished) */
    t->view_kind = 0;
    atomic_init(&t->view_version, 0);
    t->dead_next = NULL;
}

/* t is a gradient formula's zeros that stand for PyTorch's _efficientzerotensor (a
 * ZeroTensor) and still hold only zeros (nothing wrote them: storage version 0). Summing
 * gradients treats one as PyTorch treats a ZeroTensor: it cannot take the sum in place, and
 * the sum is laid out as the other term (engine.c: accumulate_into). */
static inline bool tensor_is_zeros(const tensor *t)
{
    return t->zeros && !t->grad_fn &&
           atomic_load_explicit(&t->st->version, memory_order_relaxed) == 0;
}

/* The storage of a tensor made with it: the whole block is its to free. */
static inline __attribute__((always_inline)) void storage_init(storage *st, void *block,
                                                               size_t nbytes, size_t off,
                                                               bool aligned)
{
    atomic_init(&st->refs, 1);
    atomic_init(&st->version, 0);
    st->nbytes = nbytes;
    st->data = (char *)block + off;
    st->block = block;
    st->block_kind = aligned ? BLOCK_ALIGNED : BLOCK_MALLOC;
    st->wpos = 0;
    atomic_init(&st->pend, 0);
    atomic_init(&st->guests, 0);
}

/* Where a 0-d tensor's data starts in the block it is made in, after its header and storage. */
enum { SCALAR_DATA_OFF = (sizeof(tensor) + sizeof(storage) + 15) & ~(size_t)15 };

/* A 0-d tensor (value unset) at the start of a new block of `size` bytes (at least
 * SCALAR_DATA_OFF + 8), its data at SCALAR_DATA_OFF; NULL (E_NOMEM) on failure. */
static inline __attribute__((always_inline)) tensor *scalar_in_block(dtype dt, size_t size)
{
    char *block = mem_alloc(size);
    if (!block) {
        err_nomem();
        return NULL;
    }
    tensor *t = (tensor *)block;
    storage *st = (storage *)(t + 1);
    header_init(t, st, dt, 0, 1, 0);
    storage_init(st, block, dtype_size(dt), SCALAR_DATA_OFF, false);
    return t;
}

/** A new 0-d tensor (the fast path of tensor_new, without its generic shape handling;
 *  inline: scalar graphs make several per node). */
static inline tensor *tensor_new_scalar(dtype dt) { return scalar_in_block(dt, SCALAR_DATA_OFF + 8); }
/** A new 0-d leaf (value unset) made in one block of 480 bytes with its meta (and so its
 *  AccumulateGrad node) and room for its .grad (tensor_grad_in_leaf), for a leaf about to
 *  require grad: one allocation instead of three, and what backward and release read of a
 *  leaf on adjacent lines. The meta and that .grad each hold a reference to the leaf's
 *  storage, which frees the block. NULL (E_NOMEM). */
tensor *tensor_new_scalar_leaf(dtype dt);
/** The .grad of the leaf whose meta m is, made in the leaf's block (tensor_new_scalar_leaf
 *  left room for it) as a copy of g, a 0-d gradient of the leaf's dtype that no one else
 *  holds: a fresh 0-d tensor, version 0, which holds a reference to the leaf's storage.
 *  NULL (nothing done) where the leaf has no such room, or its room is taken (an earlier
 *  .grad still alive), or g is not such a gradient. m is locked. */
tensor *tensor_grad_in_leaf(tmeta *m, const tensor *g);
/* Where, from its meta, the parts of a 0-d leaf's block lie that making its .grad reads and
 * writes (tensor.c checks them against the layout): its storage and data before the meta,
 * the room for its .grad after the meta and the AccumulateGrad node. */
enum { LEAF_STORAGE_BEFORE_META = 64, LEAF_ROOM_AFTER_META = 176,
       LEAF_ROOM_BYTES = sizeof(tensor) + sizeof(storage) };
/** Starts fetching, without waiting, the lines that making a .grad in its room touches of
 *  the 0-d leaf whose meta is m (tensor_new_scalar_leaf): the storage that gains a
 *  reference, the meta, and the room (tensor_grad_in_leaf), which in a graph larger than
 *  the caches were misses one after another. Computes addresses only: for any other meta,
 *  a harmless hint. */
static inline void tensor_leaf_prefetch(const tmeta *m)
{
    const char *p = (const char *)m;
    __builtin_prefetch(p - LEAF_STORAGE_BEFORE_META, 1);
    __builtin_prefetch(p - 1, 1); /* (the storage's end and the data) */
    __builtin_prefetch(p, 1);
    const char *room = p + LEAF_ROOM_AFTER_META;
    __builtin_prefetch(room, 1);
    __builtin_prefetch(room + 64, 1);
    __builtin_prefetch(room + LEAF_ROOM_BYTES - 1, 1);
}
/** A new tensor shaped like t (contiguous). */
tensor *tensor_new_like(const tensor *t, dtype dt);
/* A new tensor of t's shape with strides as given (a dense layout), or contiguous for NULL. */
tensor *tensor_new_strided(dtype dt, const int64_t *shape, int ndim, const int64_t *strides);
/* A new tensor of t's shape in t's memory layout, as PyTorch's empty_like with
 * preserve_format (clone, to, zeros_like...): t's own strides if t is dense, else dense
 * strides that keep the order of t's. */
tensor *tensor_new_preserve(const tensor *t, dtype dt);
/* The strides tensor_new_preserve gives t's shape: t's own if t is dense (contiguous ones
 * included), else inferred; true (strides untouched) when the inferred ones are contiguous. */
bool dense_strides_like(const tensor *t, int64_t *strides);
/* perm[0..nd): dimensions from innermost to outermost, ordered by the strides of n operands
 * (each nd strides, 0 where broadcast): the first operand that orders two dimensions
 * decides, equal strides put the smaller size inside, and what no operand orders keeps the
 * contiguous order. PyTorch's TensorIterator::reorder_dimensions. */
void layout_sort(int *perm, int nd, const int64_t *shape, const int64_t *const *strides, int n);
/** A new header over t's storage with the given geometry (no autograd, base unset). */
tensor *tensor_alias(const tensor *t, const int64_t *shape, const int64_t *strides, int ndim,
                     int64_t offset);
/** A new contiguous header (offset 0, no autograd) over st, which gains a reference (or,
 *  with adopt, takes over the caller's): the caller vouches that st holds the shape's
 *  elements of dtype dt. */
tensor *tensor_on_storage(storage *st, dtype dt, const int64_t *shape, int ndim, bool adopt);
/** Checks a user-supplied shape (ndim range, non-negative sizes, numel overflow). */
eng_err shape_check(const int64_t *shape, int ndim, int64_t *numel_out);

/* ---- references ---- */
/** Drops one reference from *refs; true if it was the last. The holder of the only reference
 *  (refs == 1) skips the atomic read-modify-write: nothing in the library makes a reference
 *  out of none (there are no weak references to tensors, storages, metas or nodes; a
 *  reference to an AccumulateGrad node is one to its leaf), so no other thread can change
 *  the count. It matters because on x86 an atomic read-modify-write is a full
 *  barrier: freeing a graph larger than the caches took its misses one at a time. The acquire
 *  load pairs with the releasing decrements of the other holders, as the atomic would. */
static inline bool refs_drop(atomic_long *refs)
{
    return atomic_load_explicit(refs, memory_order_acquire) == 1 ||
           atomic_fetch_sub_explicit(refs, 1, memory_order_acq_rel) == 1;
}
static inline void tensor_retain(tensor *t) { atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed); }
void tensor_release(tensor *t);
void storage_release(storage *s);

/* ---- geometry ---- */
/** Runs the deferred kernels queued before now, unless the calling thread is running one
 *  (defer.c). */
void defer_wait(storage *s);
/** The address of t's first element, for a caller that has just seen that t's storage has no
 *  pending work (pend == 0), or made t itself: tensor_data without the look. */
static inline void *tensor_data_unchecked(const tensor *t)
{
    return (char *)t->st->data + t->offset * (int64_t)dtype_size((dtype)t->dtype);
}
/** The address of t's first element. Every access to elements goes through here: a storage
 *  that a deferred kernel still has to write, or that one still has to read (the caller may
 *  be about to write it), is first brought up to date. */
static inline void *tensor_data(const tensor *t)
{
    if (__builtin_expect(atomic_load_explicit(&t->st->pend, memory_order_acquire) != 0, 0))
        defer_wait(t->st);
    return tensor_data_unchecked(t);
}
bool tensor_is_contiguous(const tensor *t);
bool tensor_is_dense(const tensor *t); /* PyTorch's is_non_overlapping_and_dense */
void contiguous_strides(const int64_t *shape, int ndim, int64_t *strides);
/* Memory overlap, as PyTorch's TensorIterator checks it before an op writes in place: an
 * element written twice (an expanded output) or an input partly aliasing the output would
 * make the result depend on the order of the writes, so on the thread count. */
typedef enum mem_overlap {
    OVERLAP_NO,
    OVERLAP_YES,      /* (internal) some element is reached twice: a stride-0 dim */
    OVERLAP_FULL,     /* (between two) the same elements in the same layout: safe */
    OVERLAP_PARTIAL,  /* (between two) some memory shared, not element for element */
    OVERLAP_TOO_HARD, /* not dense: not analysed (PyTorch lets it through too) */
} mem_overlap;
/** Whether t reaches some memory location twice. */
mem_overlap tensor_internal_overlap(const tensor *t);
/** How a and b share memory, as PyTorch judges it (TOO_HARD unless both are dense). */
mem_overlap tensor_overlap(const tensor *a, const tensor *b);
/** How `in`, broadcast to out's shape (it must broadcast), shares memory with out, position
 *  for position and exactly (whatever the strides): OVERLAP_PARTIAL if some element of out
 *  is read through `in` at another position than its own (or out reaches it twice), so that
 *  an elementwise in-place op's result would depend on the order of the writes;
 *  OVERLAP_FULL if `in` reads some of out's elements, each at its own position only;
 *  OVERLAP_NO if it reads none. OVERLAP_TOO_HARD only if its work array (about 16 bytes
 *  per element of out, and only when their memory ranges meet) cannot be allocated. */
mem_overlap tensor_overlap_elementwise(const tensor *out, const tensor *in);
/** Wraps a possibly negative dim into [0, ndim); E_RANGE with PyTorch's message if invalid.
 *  A 0-d tensor accepts dims -1 and 0, as PyTorch does. */
eng_err wrap_dim(int64_t dim, int ndim, int *out);
bool shapes_equal(const tensor *a, const tensor *b);
/** NumPy broadcasting of two shapes; E_SHAPE (message names both shapes) if incompatible. */
eng_err broadcast_shapes(const int64_t *a, int na, const int64_t *b, int nb, int64_t *out,
                         int *nout);

/* ---- version counter ---- */
static inline int64_t tensor_version(const tensor *t) { return atomic_load(&t->st->version); }
/* Counts every in-place change in the process. A node remembers its value when recorded;
 * if it has not moved by backward, no saved tensor can have been modified, and backward skips
 * the per-tensor version checks (each a cache miss on another tensor's storage). A hint only:
 * when it moved, every check is made. */
extern atomic_uint inplace_epoch;
static inline void tensor_bump_version(tensor *t)
{
    atomic_fetch_add(&t->st->version, 1);
    atomic_fetch_add_explicit(&inplace_epoch, 1, memory_order_release);
}

/* ---- autograd fields ---- */
/* A view requires grad when its base does, even one made under no_grad with no grad_fn (as in
 * PyTorch: such a view reports requires_grad but no gradient flows to it or through it). */
static inline bool tensor_requires_grad(const tensor *t)
{
    return t->requires_grad || t->grad_fn ||
           (t->base && (t->base->requires_grad || t->base->grad_fn));
}
static inline bool tensor_is_leaf(const tensor *t) { return t->grad_fn == NULL; }
/** The tensor's meta, created on first use; NULL (E_NOMEM) on failure. */
tmeta *tensor_meta(tensor *t);
/** tensor_meta for a tensor no other thread can see yet (just made by this call): stored
 *  without an atomic read-modify-write. */
tmeta *tensor_meta_private(tensor *t);
static inline tmeta *tensor_meta_peek(const tensor *t) { return atomic_load_explicit(&((tensor *)t)->meta, memory_order_acquire); }
void tmeta_release(tmeta *m);
/* Spins briefly, then yields: commit holds the lock across an in-place add into .grad, which
 * for a large gradient is a parallel kernel that wants every core. */
static inline void tmeta_lock(tmeta *m)
{
    for (int k = 0; atomic_flag_test_and_set_explicit(&m->lock, memory_order_acquire); k++)
        if (k >= 64) sched_yield();
}
static inline void tmeta_unlock(tmeta *m) { atomic_flag_clear_explicit(&m->lock, memory_order_release); }
/** t's .grad, retained, or NULL. */
tensor *tensor_grad_get(const tensor *t);

/* ---- gradient hooks (see ag_tensor_register_hook) ---- */
typedef int (*hook_fn)(tensor **new_grad, tensor *grad, void *userdata);
/* A meta's hooks are a list whose links hold references: the meta's head, and each hook's
 * `next`. A backward walking the list holds a reference to the hook it is at and takes the
 * next one under the meta's lock, so removing a hook (even from inside itself, or from another
 * thread) unlinks it and drops the link's reference, while a walk already on it finishes with
 * it, goes on to what followed it, and frees it last: free_userdata then runs once the hook is
 * removed and no longer running, as ag_tensor_register_hook promises. */
typedef struct hook {
    struct hook *next; /* strong; written under the meta's lock */
    struct hook *prev; /* weak, while it is linked: the hook before it, or for the first the
                          last (registration appends in O(1)); under the meta's lock */
    uint64_t id;
    hook_fn fn;
    void *userdata;
    void (*free_userdata)(void *);
    bool caller_thread;
    uint32_t hist;       /* the meta's history when registered: it runs at that grad_fn only */
    atomic_bool removed; /* a walk that reaches it does not call it */
    atomic_long refs;
} hook;
static inline void hook_retain(hook *h) { atomic_fetch_add_explicit(&h->refs, 1, memory_order_relaxed); }
/** Drops one reference to h; the last frees it (free_userdata first) and drops its `next`. */
void hook_release(hook *h);

#endif
