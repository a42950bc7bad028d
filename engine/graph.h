/*
 * graph.h: the backward graph. A node is what PyTorch calls a grad_fn: it holds edges to the
 * nodes of its forward inputs (its "next functions"), the tensors its formula needs (saved
 * variables, version-checked), and a pointer to its type: name and backward formula. An op
 * records a node when grad mode is on and one of its inputs requires grad.
 */
#ifndef AG_GRAPH_H
#define AG_GRAPH_H

#include <stdalign.h>
#include <stddef.h>

#include "tensor.h"

struct node;

/** An edge to the node that receives the gradient of one forward input: its `input_nr`-th
 *  gradient slot (the forward output index). fn NULL: that input needs no gradient. */
typedef struct edge {
    struct node *fn;
    uint32_t input_nr;
    uint8_t dtype; /* the input's dtype and rank, so backward can conform a 0-d gradient */
    uint8_t ndim;  /* without touching the next node */
} edge;

/** A tensor saved for backward. Inputs are kept by reference. A node's own output cannot be
 *  (a reference cycle through its grad_fn): a contiguous one is kept as a reference to its
 *  storage (by_storage), its geometry being the node's output metadata, and unpacked into a
 *  header of the formula's (bwd_ctx temps); any other as a detached alias. Either gets the
 *  node back as grad_fn when unpacked under create_graph. A separate alias block, made in
 *  forward and read and freed in backward, cost the scalar workload ~5% of its time
 *  (docs/performance.md). */
typedef struct saved_var {
    union {
        tensor *t;      /* non-NULL while the slot holds something (either kind) */
        storage *st;    /* by_storage */
    };
    uint32_t version;   /* low bits of the version counter when saved */
    uint16_t output_nr;
    bool is_output;
    bool by_storage;
} saved_var;

/** Shape and dtype of each forward output, to build zero gradients and check hooks. */
typedef struct out_meta {
    uint8_t dtype;
    uint8_t ndim;
    int64_t *shape; /* ndim sizes, in the node's own block */
} out_meta;

/** What a backward formula knows of the pass it runs in. */
typedef struct bwd_ctx {
    bool create_graph;
    bool take_saved;       /* the pass frees the node's saved variables after the formula
                              (saved_release): an unpacked output may take the slot's
                              reference instead of a new one */
    const uint8_t *needed; /* needed[i]: compute the gradient for edge i */
    struct node *node;
    tensor *temps[8];      /* unpacked saved outputs, released after the formula */
    int8_t temp_slot[8];   /* which saved slot each temp unpacks (one temp per slot) */
    int ntemps;
    saved_var *own_saved;  /* NULL, or the node's saved variables, taken by this pass (a
                              custom function's node, run without retain_graph: see
                              NODE_USER_FORMULA) */
} bwd_ctx;

/** A backward formula: from gin[0..n_out) (gradients w.r.t. the forward outputs; a NULL
 *  entry means zero) compute gout[i] for every edge i with c->needed[i] (store new references;
 *  leave the others NULL). A formula may also move gin[p] itself into an output, setting
 *  gin[p] to NULL: the engine releases what is left in gin. Formulas use ordinary ops, so
 *  with create_graph (grad mode on) they record a graph of their own and can be
 *  differentiated again. */
typedef eng_err (*backward_fn)(struct node *n, bwd_ctx *c, tensor **gin, tensor **gout);

/** The formula of nodes whose gradient passes unchanged to each of their n_edges inputs (add,
 *  expand: the engine sums it down to each input's shape). The last needed edge takes the
 *  engine's reference to gin[0], the others a new one each: with one edge, and for the last
 *  of two, no atomic read-modify-write is paid for a reference made here and dropped by the
 *  engine right after (the scalar workload: 4 fewer per triple). */
static inline void pass_gradient(const bwd_ctx *c, tensor **gin, tensor **gout, int n_edges)
{
    int last = -1;
    for (int i = 0; i < n_edges; i++)
        if (c->needed[i]) last = i;
    for (int i = 0; i < last; i++)
        if (c->needed[i]) {
            tensor_retain(gin[0]);
            gout[i] = gin[0];
        }
    if (last >= 0) {
        gout[last] = gin[0];
        gin[0] = NULL;
    }
}

typedef struct node_type {
    const char *name;            /* PyTorch's grad_fn name, e.g. "MulBackward0"; NULL: each
                                    node has its own (a custom function's), the first field
                                    of its attributes (node_name) */
    backward_fn backward;
    void (*destroy)(struct node *n); /* optional: free what the attrs own */
} node_type;

enum {
    NODE_RELEASED = 1,      /* saved variables were freed by a backward without retain_graph */
    NODE_CALLER_THREAD = 2, /* runs a callback that must stay on the caller's thread */
    NODE_EMBEDDED = 4,      /* lives in its leaf's meta block (AccumulateGrad) */
    NODE_LEAF_HOOKS = 8,    /* AccumulateGrad: its leaf has (or had) gradient hooks, so
                               backward must read the leaf's meta */
    NODE_LEAF_MOVED = 16,   /* AccumulateGrad: an in-place op made its tensor a non-leaf */
    NODE_RELEASABLE = 32,   /* marked released by a pass without retain_graph even if it had
                               no saved tensor to free, so that a second pass fails as in
                               PyTorch: a scalar operand kept in its attrs where PyTorch saves
                               a tensor (x * 2, x / 2), or CopySlices, which PyTorch frees
                               whole whatever its op saved */
    NODE_LEAF_NOGRAD = 64,  /* AccumulateGrad: its leaf was set not to require grad after a
                               graph recorded it: gradients reaching it are dropped */
    NODE_USER_FORMULA = 128, /* its formula runs user code (a custom function's backward),
                               which may run backward passes of its own: the node is not
                               locked across it (node_lock) */
};

typedef struct node {
    /* What discovery and execution read of every node first, so that in a graph larger than
     * the caches a node costs one or two line fills rather than three. */
    atomic_long refs;
    const node_type *type;
    edge *next;
    saved_var *saved;
    tensor *variable;  /* AccumulateGrad: the leaf (a reference to the node is one to it) */
    union {
        /* Scheduler scratch: the backward pass that currently indexes this node. */
        _Atomic uint64_t sched_owner;
        /* Once the node is dead (no pass can reach it then): its link in the list of nodes
         * to destroy (tensor.c's reclaim). */
        struct node *dead_next;
    };
    uint16_t n_next;   /* edges = forward inputs */
    uint16_t n_out;    /* gradient slots = forward outputs */
    uint16_t n_saved;
    atomic_uchar flags;
    uint32_t sched_idx;
    _Atomic uint32_t busy; /* node_lock: the holding thread's id, or 0 */
    /* The rest. (The output metas and the room for their sizes follow the saved slots in
     * the block: node_outs, node_dims.) */
    int64_t elems;     /* elements of all outputs: the scheduler's measure of the work */
    struct meta_link **hooked; /* per output: metas of non-leaf tensors with hooks / retain_grad */
    unsigned epoch;    /* inplace_epoch when recorded */
    uint16_t dims_used;
    int32_t hint;      /* node_hint: where the node made MEM_RECENT nodes before this one on
                          its thread lies, from here, in 16-byte steps; 0: none */
    alignas(16) unsigned char attrs[];
} node;
/* (96 bytes: a binary op's node, edges, saved slots and output meta, is three cache lines) */
_Static_assert(sizeof(node) == 96, "a node's header stays 96 bytes");

_Static_assert(sizeof(saved_var) == 16 && sizeof(out_meta) == 16,
               "node_outs and node_dims follow node_parts");
/** The metadata of n's outputs (n_out of them), after its saved slots in its block. */
static inline out_meta *node_outs(const node *n) { return (out_meta *)(n->saved + n->n_saved); }
/** The room for the outputs' sizes, after their metadata. */
static inline int64_t *node_dims(const node *n) { return (int64_t *)(node_outs(n) + n->n_out); }
/** PyTorch's name of n's grad_fn ("MulBackward0", a custom function's "<name>Backward"). */
static inline const char *node_name(const node *n)
{
    return n->type->name ? n->type->name : *(const char *const *)(const void *)n->attrs;
}

extern const node_type ACCUMULATE_GRAD;

/** Starts fetching the first three lines of n's block (its header and, for small nodes, its
 *  edges and saved slots) without waiting for them: a hint, never a fault. */
static inline void node_prefetch(const node *n)
{
    const char *p = (const char *)n;
    __builtin_prefetch(p);
    __builtin_prefetch(p + 64);
    __builtin_prefetch(p + 128);
}

/** The meta of an AccumulateGrad node's leaf: the block the node lives in, so reaching it
 *  costs no load of the leaf tensor (a cache miss per leaf in a large graph). */
static inline tmeta *node_leaf_meta(node *acc) { return (tmeta *)((char *)acc - TMETA_HEAD); }

/* ---- grad mode (per thread) ---- */
/* (initial-exec: read on every op; the general TLS model costs a call each time) */
extern _Thread_local bool grad_disabled __attribute__((tls_model("initial-exec")));
static inline bool grad_mode_enabled(void) { return !grad_disabled; }
bool grad_mode_set(bool enabled); /* returns previous */
bool anomaly_mode_enabled(void);
bool anomaly_mode_set(bool enabled);

/** Two backward passes may run one node at once (graphs that share it). A node with saved
 *  tensors is locked while its formula reads them and a pass without retain_graph frees
 *  them, so the other pass then finds them freed (E_GRAPH, as PyTorch's "backward through
 *  the graph a second time") instead of reading freed tensors. A node whose formula runs
 *  user code (NODE_USER_FORMULA) is locked only briefly: a pass without retain_graph takes
 *  its saved variables out first (the node then reads as freed to any other pass), and a
 *  pass with retain_graph locks it around each read of one (and retains it). Held across
 *  user code that runs backward passes of its own, the lock deadlocked two threads whose
 *  custom functions each ran a pass through the other's node. A waiting pass yields its
 *  core. False (nothing to unlock) if this thread holds the lock already. */
bool node_lock(node *n);
static inline void node_unlock(node *n) { atomic_store_explicit(&n->busy, 0, memory_order_release); }

/* ---- lifetime ---- */
/* An AccumulateGrad node (NODE_EMBEDDED) lives in its leaf's meta block and has no count of
 * its own: a reference to it is one to its leaf (n->variable), which keeps the meta, and so
 * the node, alive. So the graph holds its leaves, as PyTorch's AccumulateGrad holds its
 * variable, at one atomic per edge: when the node counted its references and held its leaf
 * while the count was above 0, an edge cost four (a compare-and-swap to revive the node from
 * 0 and the leaf's retain, then the same to retire it), each a full barrier on x86. */
static inline void node_retain(node *n)
{
    if (atomic_load_explicit(&n->flags, memory_order_relaxed) & NODE_EMBEDDED)
        tensor_retain(n->variable);
    else
        atomic_fetch_add_explicit(&n->refs, 1, memory_order_relaxed);
}
void node_destroy(node *n);           /* for tensor.c's reclaim loop */
void reclaim_node(node *n);           /* in tensor.c */
/* (inline: every tensor that dies and every node destroyed releases its nodes) */
static inline void node_release(node *n)
{
    if (!n) return;
    /* (the leaf's release may free n: n is not read after it) */
    if (atomic_load_explicit(&n->flags, memory_order_relaxed) & NODE_EMBEDDED)
        tensor_release(n->variable);
    else if (refs_drop(&n->refs)) reclaim_node(n);
}
static inline node *node_dead_next(node *n) { return n->dead_next; }
static inline void node_set_dead_next(node *n, node *next) { n->dead_next = next; }
static inline void *node_attrs(node *n) { return n->attrs; }

/* ---- recording ---- */
/** True when an op on these inputs must record a node (grad mode on, an input requires
 *  grad). NULL entries are ignored. */
bool view_requires_grad(tensor *t); /* (a view: see should_record) */
static inline bool should_record(tensor *const *ins, int n)
{
    if (!grad_mode_enabled()) return false;
    for (int i = 0; i < n; i++) {
        tensor *t = ins[i];
        if (!t) continue;
        /* A stale view may require grad only once up to date (its base took a history in
         * place). If that fails, it is recorded, and record's gradient_edge meets the error
         * again. */
        if (__builtin_expect(t->base != NULL, 0) ? view_requires_grad(t)
                                                 : t->requires_grad || t->grad_fn)
            return true;
    }
    return false;
}
/* Where a node's parts start in its block: edges, saved variables, output metas, dims. */
typedef struct node_offsets {
    size_t edges, saved, outs, dims;
} node_offsets;

static inline size_t node_align16(size_t n) { return (n + 15) & ~(size_t)15; }

static inline node_offsets node_parts(int n_next, int n_saved, int n_out, size_t attr_size)
{
    node_offsets o;
    o.edges = node_align16(sizeof(node) + node_align16(attr_size));
    o.saved = o.edges + node_align16((size_t)n_next * sizeof(edge));
    o.outs = o.saved + node_align16((size_t)n_saved * sizeof(saved_var));
    o.dims = o.outs + (size_t)n_out * sizeof(out_meta);
    return o;
}

/** Bytes a node with these counts takes (inline: with constant counts, as for a leaf's
 *  AccumulateGrad node, it folds to a constant). */
static inline size_t node_bytes(int n_next, int n_saved, int n_out, int out_dims, size_t attr_size)
{
    return node_parts(n_next, n_saved, n_out, attr_size).dims + (size_t)out_dims * sizeof(int64_t);
}

/* Notes n as the newest node of this thread and returns its hint: the offset (in 16-byte
 * steps, nodes being 16-byte aligned) of the node noted MEM_RECENT nodes before it, 0 if
 * none or too far. */
static inline int32_t node_hint_note(node *n)
{
    mem_recent *r = mem_recent_ring;
    if (!r) return 0;
    unsigned p = r->pos++ % MEM_RECENT;
    const char *old = r->v[p];
    r->v[p] = n;
    ptrdiff_t d = old ? (old - (const char *)n) / 16 : 0;
    return d >= INT32_MIN && d <= INT32_MAX ? (int32_t)d : 0;
}

/** Starts fetching the node made MEM_RECENT nodes before n on n's thread, from its block
 *  header to its edges, which discovery claims and release counts down and frees (it may be
 *  gone by now: a hint, never a fault). A graph is made in about the order
 *  backward walks it backwards, so that node is usually one that discovery, or the graph's
 *  release, reaches a few steps later: fetched now, it has arrived by then. Discovery
 *  otherwise learns each node's address only from the node before it (a chain such as
 *  s = s + ...: one miss after another in a graph larger than the caches). */
static inline void node_hint(const node *n)
{
    if (n->hint) mem_prefetch_block((const char *)n + (ptrdiff_t)n->hint * 16, 3);
}

/* The header of a node laid out in `mem` as node_parts gives it, every field written once
 * (zeros included) instead of clearing the block and then writing half of the header again.
 * (Field by field: an initializer of the whole header compiled to a `rep stos` of it first.)
 * The parts after the header are the caller's. */
static inline __attribute__((always_inline)) node *node_header(void *mem, const node_type *type,
                                                               int n_next, int n_saved,
                                                               int n_out, node_offsets o)
{
    node *n = mem;
    atomic_init(&n->refs, 1);
    n->type = type;
    n->next = (edge *)((char *)n + o.edges);
    n->saved = (saved_var *)((char *)n + o.saved);
    n->variable = NULL;
    atomic_init(&n->sched_owner, 0);
    n->n_next = (uint16_t)n_next;
    n->n_out = (uint16_t)n_out;
    n->n_saved = (uint16_t)n_saved;
    atomic_init(&n->flags, 0);
    n->sched_idx = 0;
    atomic_init(&n->busy, 0);
    n->elems = 0;
    n->hooked = NULL;
    n->epoch = atomic_load_explicit(&inplace_epoch, memory_order_acquire);
    n->dims_used = 0;
    n->hint = node_hint_note(n);
    return n;
}

/* Records like's dtype and shape as output o's metadata (inline for record: a 0-d output
 * copies no sizes, and a call to memcpy for none cost more than the rest). */
static inline __attribute__((always_inline)) void out_meta_set(node *n, int o, const tensor *like)
{
    out_meta *m = &node_outs(n)[o];
    int nd = like->ndim;
    m->dtype = like->dtype;
    m->ndim = (uint8_t)nd;
    m->shape = node_dims(n) + n->dims_used;
    n->dims_used = (uint16_t)(n->dims_used + nd);
    n->elems += like->numel;
    for (int d = 0; d < nd; d++) m->shape[d] = like->shape[d];
}

/** Lays out an idle (refcount 0) AccumulateGrad node in `mem` (node_bytes(0, 0, 1, 0)) for
 *  `leaf`; grad_accumulator brings it to life. (Inline: every leaf that requires grad comes
 *  through here, from tensor_meta.) */
static inline node *node_init_embedded(void *mem, const node_type *type, const tensor *leaf)
{
    /* (no edges, no saved slots, no attributes, one output meta, written whole) */
    node *n = node_header(mem, type, 0, 0, 1, node_parts(0, 0, 1, 0));
    atomic_init(&n->refs, 0); /* (unused: see node_retain) */
    atomic_init(&n->flags, NODE_EMBEDDED);
    n->variable = (tensor *)leaf; /* (weak: the meta, and so the node, dies with the leaf) */
    out_meta_set(n, 0, leaf);
    return n;
}

/** A zeroed node with room for the given counts, out_dims output sizes in all (the sum of
 *  the outputs' ndim) and attr_size bytes of op attributes. */
node *node_new(const node_type *type, int n_next, int n_saved, int n_out, int out_dims,
               size_t attr_size);
/** Records like's dtype and shape as the metadata of n's output o (once per output). */
void node_out_meta(node *n, int o, const tensor *like);
/** The gradient edge of t: its grad_fn, or its AccumulateGrad node if it is a leaf requiring
 *  grad (created on first use), or none. On success *e holds a new reference. A stale view
 *  is brought up to date first (view_sync), which can fail. */
eng_err gradient_edge(tensor *t, edge *e);

/* ---- views whose base changed behind them ----
 * An in-place op on a base, or on one of its views, gives the base a new grad_fn; the other
 * views of it still have grad_fns into the old history. As in PyTorch, such a view gets a
 * fresh AsStridedBackward0 of the base's current history the next time its grad_fn is
 * needed: when it enters an op under grad mode, is a root or input of backward, or is asked
 * for its grad_fn or is_leaf. A view records the storage version its grad_fn
 * reflects; every in-place op bumps the version, so a mismatch means it may be stale. */

/** t is a view whose storage changed since its grad_fn was last brought up to date (atomic
 *  loads only: another thread may be regenerating it). */
static inline bool view_stale(const tensor *t)
{
    return t->base && atomic_load_explicit(&((tensor *)t)->view_version, memory_order_acquire) !=
                          (uint32_t)tensor_version(t);
}
/** Brings a stale view t up to date, under its lock: if it or its base is differentiable, a
 *  fresh grad_fn (hooks and retain_grad follow as after an in-place op on it:
 *  tensor_history_moved). E_INVAL, with PyTorch's message, for a view PyTorch does not
 *  regenerate: one made under no_grad, by a multi-output op (split, chunk) or by a custom
 *  function. Until it is up to date, t->grad_fn must not be read: another thread may be
 *  replacing it. Defined in ops/shape.c, beside the AsStridedBackward0 it makes. */
eng_err view_sync_slow(tensor *t);
static inline eng_err view_sync(tensor *t) { return view_stale(t) ? view_sync_slow(t) : E_OK; }
/** The error PyTorch gives for an in-place op on, or behind (indirect), a view of kind
 *  VK_NO_GRAD, VK_MULTI or VK_CUSTOM. */
eng_err view_refused(const tensor *t, bool indirect);
/** Sets n's edge i to the gradient edge of t (t may be NULL: no edge). */
eng_err node_set_edge(node *n, int i, tensor *t);
/** Saves input t in slot i. */
void node_save(node *n, int i, tensor *t);
/** Saves n's own output t (already attached as output_nr) in slot i. */
eng_err node_save_output(node *n, int i, tensor *t);
/** The same, always as an alias: a custom function's slots, which its formula may read any
 *  number of (an unpacked output takes one of the formula's 8 temps). */
eng_err node_save_output_alias(node *n, int i, tensor *t);
/** Drops what slot s holds, leaving it empty. */
void saved_var_drop(saved_var *s);
/** Makes n the grad_fn of out (its output_nr-th output) and records out's shape. */
void node_set_output(node *n, int output_nr, tensor *out);
/** The usual case in one call: when should_record(ins), a node of `type` with one edge per
 *  input, the outputs attached, room for n_saved and attr_size; else NULL with *err = E_OK.
 *  On failure NULL with *err set (the outputs are untouched). */
node *record_node(const node_type *type, tensor *const *ins, int n_in, tensor *const *outs,
                  int n_out, int n_saved, size_t attr_size, eng_err *err);
/* (inline up to the test that most calls stop at: under no_grad, and in every backward
 * formula without create_graph) */
static inline node *record(const node_type *type, tensor *const *ins, int n_in,
                           tensor *const *outs, int n_out, int n_saved, size_t attr_size,
                           eng_err *err)
{
    *err = E_OK;
    if (!should_record(ins, n_in)) return NULL;
    return record_node(type, ins, n_in, outs, n_out, n_saved, attr_size, err);
}
/** For a gradient that is an op of its own (tanh_backward, _softmax_backward_data, GELU's,
 *  softplus'), r = f(g, y): records `type` over (g, y) with attr_size bytes of attributes
 *  copied from attr, saving g in slot 0 where y requires grad (only the formula in y reads
 *  it) and y in slot 1, and sets *out = r. Takes r's reference (released on failure). */
eng_err record_grad_op(tensor **out, tensor *r, const node_type *type, tensor *g, tensor *y,
                       const void *attr, size_t attr_size);

/** The saved tensor in slot i (borrowed for the formula's duration), checking its version. */
eng_err saved_get_slow(node *n, bwd_ctx *c, int i, tensor **out);
/* (inline for the common case, a slot still held by the node, no in-place op anywhere
 * since it was recorded, and nothing to unpack: every formula reads its slots through here) */
static inline eng_err saved_get(node *n, bwd_ctx *c, int i, tensor **out)
{
    const saved_var *s = &n->saved[i];
    if (__builtin_expect(!c->own_saved && s->t && !s->by_storage &&
                             !(s->is_output && c->create_graph) &&
                             n->epoch == atomic_load_explicit(&inplace_epoch,
                                                              memory_order_acquire),
                         1)) {
        *out = s->t;
        return E_OK;
    }
    return saved_get_slow(n, c, i, out);
}
/** Checks that n's saved variables were not freed by an earlier backward. (Versions are
 *  checked when the formula reads them: reading every saved tensor's storage up front
 *  cost a cache miss per node, 10% of a scalar graph's time.) */
eng_err saved_check(node *n);
/** Checks the versions of every saved variable n still holds (those a formula reads are
 *  checked as it reads them): for a node a pass reaches without any gradient, whose formula
 *  does not run, where PyTorch's still unpacks them all and fails the same way. */
eng_err saved_check_versions(node *n);
/** Frees n's saved variables (backward without retain_graph). */
void saved_release(node *n);
/** Moves n's saved variables into own[0..n_saved) (the caller releases their tensors), so
 *  that n reads as freed; false (own untouched) if an earlier pass freed them. Under the
 *  node's lock. */
bool saved_take(node *n, saved_var *own);

/** The AccumulateGrad node of a leaf requiring grad (new reference). */
eng_err grad_accumulator(tensor *leaf, node **out);

/** A tensor meta attached to an output of a node: when backward reaches that output it runs
 *  the meta's hooks registered under history `hist`, and retains the gradient if the meta
 *  retains grad and its history is still `hist`. A node output has several links when several
 *  tensors are that output (a saved output unpacked under create_graph is an alias of it) or
 *  when one tensor's history moved on and came back to it (never, today). Links are appended
 *  and never removed while the node lives, so backward walks them without a lock. */
typedef struct meta_link {
    struct meta_link *next; /* atomic: appended while a backward may walk the list */
    tmeta *m;               /* strong */
    uint32_t hist;
} meta_link;

/** Attaches meta m, in history hist, to output output_nr of n (no-op if already attached so).
 *  Safe while other threads attach metas to n or run backward through it. */
eng_err node_attach_meta(node *n, uint32_t output_nr, tmeta *m, uint32_t hist);

/** The first link of output p of n, or NULL; link_next walks on (atomic loads: links may be
 *  appended while a backward runs). */
static inline meta_link *node_links(const node *n, int p)
{
    meta_link **h = __atomic_load_n(&((node *)n)->hooked, __ATOMIC_ACQUIRE);
    return h ? __atomic_load_n(&h[p], __ATOMIC_ACQUIRE) : NULL;
}
static inline meta_link *link_next(const meta_link *l)
{
    return __atomic_load_n(&((meta_link *)l)->next, __ATOMIC_ACQUIRE);
}
/** The current history of m (see tmeta.hist). */
static inline uint32_t meta_hist(const tmeta *m)
{
    return __atomic_load_n(&((tmeta *)m)->hist, __ATOMIC_ACQUIRE);
}

/** Before an in-place op gives t the new grad_fn n (output output_nr): makes the links t's
 *  meta will need there, so that nothing can fail once the data has changed. */
eng_err tensor_history_reserve(tensor *t, node *n, uint32_t output_nr);
/** t just got a new grad_fn from an in-place op (its own, or as the base or the view of one;
 *  tensor_history_reserve came first): hooks registered from now on run at the new grad_fn,
 *  those registered before stay with the old one, and a retained gradient follows the tensor
 *  to the new grad_fn (PyTorch's rules since 2.0). A graph that reaches the tensor's
 *  AccumulateGrad node (it was a leaf) fails there from now on, as in PyTorch. */
void tensor_history_moved(tensor *t);
/** Sets leaf t's requires_grad flag (t has no grad_fn). Graphs recorded while it required
 *  grad keep their edge to its AccumulateGrad node, which then, as PyTorch's, drops what
 *  reaches it while the flag is off: .grad is left as it is. (Inline: every leaf made to
 *  require grad comes through here.) */
static inline void leaf_set_requires_grad(tensor *t, bool want)
{
    /* Stored only if it changes: setting it again to what it is, while other threads read it
     * (zero_grad on a .grad a backward reads, say), must not be a data race. */
    if (t->requires_grad != want) t->requires_grad = want;
    tmeta *m = tensor_meta_peek(t);
    if (!m) return;
    /* (Read first: the flag rarely changes, and an atomic read-modify-write costs as much
     * as the rest of the call.) */
    bool nograd = atomic_load_explicit(&m->acc->flags, memory_order_relaxed) & NODE_LEAF_NOGRAD;
    if (want && nograd) atomic_fetch_and(&m->acc->flags, (unsigned char)~NODE_LEAF_NOGRAD);
    else if (!want && !nograd) atomic_fetch_or(&m->acc->flags, NODE_LEAF_NOGRAD);
}

#endif
