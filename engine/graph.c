/*
 * graph.c: nodes, edges, saved variables, AccumulateGrad, and per-thread grad mode.
 */
#include "graph.h"

#include <sched.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"

/* ---- grad mode and anomaly mode: per thread by design, like PyTorch's ---- */
/* initial-exec: these are read on every op; the general TLS model costs a call each time. */
_Thread_local bool grad_disabled __attribute__((tls_model("initial-exec")));
static _Thread_local bool anomaly_on __attribute__((tls_model("initial-exec")));

bool grad_mode_set(bool enabled)
{
    bool prev = !grad_disabled;
    grad_disabled = !enabled;
    return prev;
}
bool anomaly_mode_enabled(void) { return anomaly_on; }
bool anomaly_mode_set(bool enabled)
{
    bool prev = anomaly_on;
    anomaly_on = enabled;
    return prev;
}

/* ---- nodes ---- */
/* (node_header writes the header up to the attributes, which start where it ends: node_new
 * clears what follows it) */
_Static_assert(offsetof(node, attrs) == sizeof(node), "the attributes follow the header");

const node_type ACCUMULATE_GRAD = {"AccumulateGrad", NULL, NULL};

void node_out_meta(node *n, int o, const tensor *like) { out_meta_set(n, o, like); }

node *node_new(const node_type *type, int n_next, int n_saved, int n_out, int out_dims,
               size_t attr_size)
{
    node_offsets o = node_parts(n_next, n_saved, n_out, attr_size);
    void *mem = mem_alloc(o.dims + (size_t)out_dims * sizeof(int64_t));
    if (!mem) return NULL;
    node *n = node_header(mem, type, n_next, n_saved, n_out, o);
    /* (attributes, edges, saved slots and output metas: zeroed, as promised) */
    memset(n->attrs, 0, o.dims - sizeof(node));
    return n;
}

/* The calling thread's id for node_lock: nonzero, distinct among live threads. */
static uint32_t thread_id(void)
{
    static atomic_uint next = 1;
    static _Thread_local uint32_t id __attribute__((tls_model("initial-exec")));
    if (!id) {
        do id = atomic_fetch_add_explicit(&next, 1, memory_order_relaxed);
        while (!id); /* (after 2^32 threads) */
    }
    return id;
}

bool node_lock(node *n)
{
    uint32_t me = thread_id(), free_ = 0;
    if (atomic_load_explicit(&n->busy, memory_order_relaxed) == me) return false;
    /* Contended only when two passes run the same node at once: yield rather than spin. */
    while (!atomic_compare_exchange_weak_explicit(&n->busy, &free_, me, memory_order_acquire,
                                                  memory_order_relaxed)) {
        free_ = 0;
        sched_yield();
    }
    return true;
}

void node_destroy(node *n)
{
    if (n->type->destroy) n->type->destroy(n);
    for (int i = 0; i < n->n_saved; i++) /* (most were freed by the backward pass) */
        if (n->saved[i].t) saved_var_drop(&n->saved[i]);
    if (n->hooked) {
        for (int i = 0; i < n->n_out; i++) {
            for (meta_link *l = n->hooked[i], *next; l; l = next) {
                next = l->next;
                tmeta_release(l->m);
                mem_free(l);
            }
        }
        mem_free(n->hooked);
    }
    for (int i = 0; i < n->n_next; i++) node_release(n->next[i].fn);
    mem_free(n);
}

bool view_requires_grad(tensor *t) { return view_sync(t) || tensor_requires_grad(t); }

eng_err grad_accumulator(tensor *leaf, node **out)
{
    tmeta *m = tensor_meta_peek(leaf); /* made when the leaf started requiring grad */
    if (!m && !(m = tensor_meta(leaf))) return E_NOMEM;
    node *acc = m->acc;
    /* The edge's reference to the node is one to its leaf (node_retain). */
    tensor_retain(leaf);
    if (__atomic_load_n(&m->caller_thread, __ATOMIC_ACQUIRE))
        atomic_fetch_or(&acc->flags, NODE_CALLER_THREAD);
    *out = acc;
    return E_OK;
}

/* A stale view's edge (view_sync may fail or give it a new grad_fn): out of line, views are
 * rare in the hot path. */
static __attribute__((noinline)) eng_err view_edge(tensor *t, edge *e);

static inline __attribute__((always_inline)) eng_err edge_of(tensor *t, edge *e)
{
    if (__builtin_expect(t->base != NULL, 0)) return view_edge(t, e);
    e->dtype = t->dtype;
    e->ndim = t->ndim;
    node *fn = t->grad_fn;
    if (fn) {
        node_retain(fn);
        e->fn = fn;
        e->input_nr = t->output_nr;
        return E_OK;
    }
    e->input_nr = 0;
    e->fn = NULL;
    return t->requires_grad ? grad_accumulator(t, &e->fn) : E_OK;
}

static eng_err view_edge(tensor *t, edge *e)
{
    e->fn = NULL;
    e->input_nr = 0;
    e->dtype = t->dtype;
    e->ndim = t->ndim;
    eng_err err = view_sync(t);
    if (err) return err;
    if (t->grad_fn) {
        node_retain(t->grad_fn);
        e->fn = t->grad_fn;
        e->input_nr = t->output_nr;
        return E_OK;
    }
    if (t->requires_grad) return grad_accumulator(t, &e->fn);
    return E_OK;
}

eng_err gradient_edge(tensor *t, edge *e)
{
    if (!t) {
        e->fn = NULL;
        e->input_nr = 0;
        return E_OK;
    }
    return edge_of(t, e);
}

eng_err node_set_edge(node *n, int i, tensor *t) { return gradient_edge(t, &n->next[i]); }

void node_save(node *n, int i, tensor *t)
{
    tensor_retain(t);
    n->saved[i].t = t;
    n->saved[i].version = (uint32_t)tensor_version(t);
    n->saved[i].is_output = false;
    n->saved[i].by_storage = false;
}

/* t's strides are exactly the contiguous ones its shape gives (those of size-1 dimensions
 * too: a header rebuilt from the shape must not differ in any). */
static inline bool canonical_strides(const tensor *t)
{
    if (!t->ndim) return true;
    int64_t st[MAX_DIMS];
    contiguous_strides(t->shape, t->ndim, st);
    return !memcmp(st, t->strides, (size_t)t->ndim * sizeof *st);
}

static eng_err save_output(node *n, int i, tensor *t, bool alias_only)
{
    saved_var *s = &n->saved[i];
    const out_meta *om = &node_outs(n)[t->output_nr];
    s->version = (uint32_t)tensor_version(t);
    s->is_output = true;
    s->output_nr = (uint16_t)t->output_nr;
    /* (the node's metadata must describe t: saved after it was attached, as every op does) */
    s->by_storage = !alias_only && !t->offset && !t->base && !t->zeros && om->ndim == t->ndim &&
                    om->dtype == t->dtype && canonical_strides(t);
    if (s->by_storage) {
        atomic_fetch_add_explicit(&t->st->refs, 1, memory_order_relaxed);
        s->st = t->st;
        return E_OK;
    }
    tensor *alias = tensor_alias(t, t->shape, t->strides, t->ndim, t->offset);
    if (!alias) return E_NOMEM;
    s->t = alias;
    return E_OK;
}

eng_err node_save_output(node *n, int i, tensor *t) { return save_output(n, i, t, false); }
eng_err node_save_output_alias(node *n, int i, tensor *t) { return save_output(n, i, t, true); }

void saved_var_drop(saved_var *s)
{
    /* (A store, not an exchange, which x86 locks: the caller owns the slot, under the node's
     * lock where another pass could read it; backward's prefetch reads it without the lock,
     * hence atomically.) */
    void *p = s->t;
    if (!p) return;
    __atomic_store_n(&s->t, NULL, __ATOMIC_RELAXED);
    if (s->by_storage) storage_release(p);
    else tensor_release(p);
}

/* The dtype and sizes of what slot s holds (for messages). */
static const int64_t *saved_shape(const node *n, const saved_var *s, int *ndim, dtype *dt)
{
    if (s->by_storage) {
        const out_meta *om = &node_outs(n)[s->output_nr];
        *ndim = om->ndim;
        *dt = (dtype)om->dtype;
        return om->shape;
    }
    *ndim = s->t->ndim;
    *dt = (dtype)s->t->dtype;
    return s->t->shape;
}

/* Attaches without touching n's count: the caller hands over one reference. */
static inline __attribute__((always_inline)) void attach_output(node *n, int output_nr,
                                                                tensor *out)
{
    if (out->grad_fn) node_release(out->grad_fn); /* (a fresh result has none) */
    out->grad_fn = n;
    out->output_nr = (uint32_t)output_nr;
    out->requires_grad = 0;
    out_meta_set(n, output_nr, out);
    /* A view's grad_fn now reflects its storage as it is (say, a custom function's output
     * written in place inside forward): after the grad_fn, with release (view_stale). */
    if (out->base)
        atomic_store_explicit(&out->view_version, (uint32_t)tensor_version(out),
                              memory_order_release);
}

void node_set_output(node *n, int output_nr, tensor *out)
{
    node_retain(n);
    attach_output(n, output_nr, out);
}

/* record past should_record. Inline into record_node for the shapes of the hot ops, whose
 * counts then fold to constants. */
static inline __attribute__((always_inline)) node *
record_body(const node_type *type, tensor *const *ins, int n_in, tensor *const *outs, int n_out,
            int n_saved, size_t attr_size, eng_err *err)
{
    int out_dims = 0;
    for (int o = 0; o < n_out; o++) out_dims += outs[o]->ndim;
    node_offsets o = node_parts(n_in, n_saved, n_out, attr_size);
    void *mem = mem_alloc(o.dims + (size_t)out_dims * sizeof(int64_t));
    if (!mem) {
        *err = err_nomem();
        return NULL;
    }
    /* The node as node_new makes it, but only what nothing below writes is cleared (every op
     * records one, most with a few edges and slots: clearing the whole block with memset
     * cost more than the rest of the layout): the attributes and the saved slots. The edges
     * and the output metas are written whole here. */
    node *n = node_header(mem, type, n_in, n_saved, n_out, o);
    for (size_t k = 0; k < (o.edges - sizeof(node)) / 16; k++)
        memset(n->attrs + 16 * k, 0, 16);
    for (int i = 0; i < n_saved; i++) memset(&n->saved[i], 0, sizeof(saved_var));
    for (int i = 0; i < n_in; i++) {
        edge *ed = &n->next[i];
        if (!ins[i]) {
            *ed = (edge){0};
            continue;
        }
        eng_err e = edge_of(ins[i], ed);
        if (e) {
            /* (the edges not made yet hold nothing for node_destroy to release) */
            for (int j = i + 1; j < n_in; j++) n->next[j].fn = NULL;
            node_release(n);
            *err = e;
            return NULL;
        }
    }
    /* The creator's reference goes to the first output; the others take their own. */
    for (int k = 1; k < n_out; k++) node_set_output(n, k, outs[k]);
    attach_output(n, 0, outs[0]);
    return n;
}

node *record_node(const node_type *type, tensor *const *ins, int n_in, tensor *const *outs,
                  int n_out, int n_saved, size_t attr_size, eng_err *err)
{
    /* binary ops (add: nothing saved, mul: both inputs) and one-input ops with attributes
     * (the unary ops' uattr), with their counts known to the compiler */
    if (n_in == 2 && n_out == 1 && attr_size == 0) {
        if (n_saved == 0) return record_body(type, ins, 2, outs, 1, 0, 0, err);
        if (n_saved == 2) return record_body(type, ins, 2, outs, 1, 2, 0, err);
    }
    if (n_in == 1 && n_out == 1 && n_saved == 1)
        return record_body(type, ins, 1, outs, 1, 1, attr_size, err);
    return record_body(type, ins, n_in, outs, n_out, n_saved, attr_size, err);
}

eng_err record_grad_op(tensor **out, tensor *r, const node_type *type, tensor *g, tensor *y,
                       const void *attr, size_t attr_size)
{
    tensor *ins[2] = {g, y};
    eng_err e;
    node *n = record(type, ins, 2, &r, 1, 2, attr_size, &e);
    if (e) {
        tensor_release(r);
        return e;
    }
    if (n) {
        memcpy(node_attrs(n), attr, attr_size);
        if (tensor_requires_grad(y)) node_save(n, 0, g);
        node_save(n, 1, y);
    }
    *out = r;
    return E_OK;
}

/* ---- saved variables ---- */
static const char *torch_type_name(dtype d)
{
    static const char *names[DT_COUNT] = {"torch.FloatTensor", "torch.DoubleTensor",
                                          "torch.LongTensor", "torch.BoolTensor"};
    return names[d];
}

static eng_err freed_error(void)
{
    return err_set(E_GRAPH,
                   "Trying to backward through the graph a second time (or directly access "
                   "saved tensors after they have already been freed). Saved intermediate "
                   "values of the graph are freed when you call .backward() or "
                   "autograd.grad(). Specify retain_graph=True if you need to backward "
                   "through the graph a second time or if you need to access saved tensors "
                   "after calling backward.");
}

static eng_err check_one(node *n, saved_var *s)
{
    int64_t v = atomic_load(s->by_storage ? &s->st->version : &s->t->st->version);
    if ((uint32_t)v == s->version) return E_OK;
    char sh[160];
    int ndim;
    dtype dt;
    const int64_t *shape = saved_shape(n, s, &ndim, &dt);
    fmt_shape(sh, sizeof sh, shape, ndim);
    const char *producer = s->is_output ? node_name(n) : s->t->grad_fn ? node_name(s->t->grad_fn) : NULL;
    unsigned nr = s->is_output ? s->output_nr : s->t->output_nr;
    char which[160] = "";
    if (producer) snprintf(which, sizeof which, ", which is output %u of %s,", nr, producer);
    return err_set(E_VERSION,
                   "one of the variables needed for gradient computation has been modified "
                   "by an inplace operation: [%s %s]%s is at version %lld; expected version "
                   "%lld instead",
                   torch_type_name(dt), sh, which, (long long)v,
                   (long long)s->version);
}

eng_err saved_check(node *n)
{
    if (atomic_load_explicit(&n->flags, memory_order_relaxed) & NODE_RELEASED)
        return freed_error();
    return E_OK;
}

eng_err saved_check_versions(node *n)
{
    if (n->epoch == atomic_load_explicit(&inplace_epoch, memory_order_acquire)) return E_OK;
    for (int i = 0; i < n->n_saved; i++) {
        if (!n->saved[i].t) continue;
        eng_err e = check_one(n, &n->saved[i]);
        if (e) return e;
    }
    return E_OK;
}

eng_err saved_get_slow(node *n, bwd_ctx *c, int i, tensor **out)
{
    saved_var *s = c->own_saved ? &c->own_saved[i] : &n->saved[i];
    /* (first: an unpacked output may have taken its slot's reference, see below) */
    for (int k = 0; k < c->ntemps; k++)
        if (c->temp_slot[k] == i) {
            *out = c->temps[k];
            return E_OK;
        }
    if (!s->t) {
        if (c->own_saved) {
            *out = NULL;
            return E_OK;
        }
        if (atomic_load_explicit(&n->flags, memory_order_relaxed) & NODE_RELEASED)
            return freed_error();
        *out = NULL;
        return E_OK;
    }
    if (n->epoch != atomic_load_explicit(&inplace_epoch, memory_order_acquire)) {
        eng_err e = check_one(n, s);
        if (e) return e;
    }
    if (s->by_storage || (s->is_output && c->create_graph)) {
        /* A header of the formula's over the output's memory; under create_graph double
         * backward differentiates through it: it gets its grad_fn back. One per slot, however
         * often the formula reads it (found above). */
        if (c->ntemps == (int)(sizeof c->temps / sizeof c->temps[0]))
            return err_set(E_INTERNAL, "too many saved outputs unpacked in %s", node_name(n));
        tensor *t;
        if (s->by_storage) {
            /* A pass about to free the slot hands its reference to the header (one atomic
             * add and subtract fewer on the storage), and the node reads as freed now, as
             * it would after saved_release. */
            const out_meta *om = &node_outs(n)[s->output_nr];
            bool take = c->take_saved && !c->own_saved;
            t = tensor_on_storage(s->st, (dtype)om->dtype, om->shape, om->ndim, take);
            if (t && take) {
                __atomic_store_n(&s->t, NULL, __ATOMIC_RELAXED);
                atomic_fetch_or(&n->flags, NODE_RELEASED);
            }
        } else {
            t = tensor_alias(s->t, s->t->shape, s->t->strides, s->t->ndim, s->t->offset);
        }
        if (!t) return E_NOMEM;
        if (c->create_graph) {
            node_retain(n);
            t->grad_fn = n;
            t->output_nr = s->output_nr;
        }
        c->temp_slot[c->ntemps] = (int8_t)i;
        c->temps[c->ntemps++] = t;
        *out = t;
        return E_OK;
    }
    *out = s->t;
    return E_OK;
}

bool saved_take(node *n, saved_var *own)
{
    if (atomic_load_explicit(&n->flags, memory_order_relaxed) & NODE_RELEASED) return false;
    bool any = false;
    for (int i = 0; i < n->n_saved; i++) {
        own[i] = n->saved[i];
        if (own[i].t) {
            /* (atomic: backward's prefetch reads it without the node's lock) */
            __atomic_store_n(&n->saved[i].t, NULL, __ATOMIC_RELAXED);
            any = true;
        }
    }
    if (any) atomic_fetch_or(&n->flags, NODE_RELEASED);
    return true;
}

void saved_release(node *n)
{
    bool any = false;
    for (int i = 0; i < n->n_saved; i++) {
        if (n->saved[i].t) {
            saved_var_drop(&n->saved[i]);
            any = true;
        }
    }
    if (any) atomic_fetch_or(&n->flags, NODE_RELEASED);
}

eng_err node_attach_meta(node *n, uint32_t output_nr, tmeta *m, uint32_t hist)
{
    /* Published with compare-and-swap: another thread may attach at once, and a backward
     * through n walks the lists without a lock (node_links). Nothing is ever unlinked or
     * replaced before the node dies, so a walker never meets a freed link or meta. */
    meta_link **h = __atomic_load_n(&n->hooked, __ATOMIC_ACQUIRE);
    if (!h) {
        meta_link **fresh = mem_calloc((size_t)n->n_out * sizeof *fresh);
        if (!fresh) return err_nomem();
        h = NULL;
        if (__atomic_compare_exchange_n(&n->hooked, &h, fresh, false, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE))
            h = fresh;
        else
            mem_free(fresh);
    }
    meta_link **slot = &h[output_nr], *made = NULL;
    for (;;) {
        meta_link *l = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
        if (!l) {
            if (!made) {
                made = mem_alloc(sizeof *made);
                if (!made) return err_nomem();
                made->next = NULL;
                made->m = m;
                made->hist = hist;
            }
            if (__atomic_compare_exchange_n(slot, &l, made, false, __ATOMIC_ACQ_REL,
                                            __ATOMIC_ACQUIRE)) {
                atomic_fetch_add(&m->refs, 1);
                break;
            }
            /* Another thread appended first: look at what it appended, then go on. */
        }
        if (l->m == m && l->hist == hist) {
            mem_free(made); /* attached already, perhaps by another thread just now */
            return E_OK;
        }
        slot = &l->next;
    }
    if (__atomic_load_n(&m->caller_thread, __ATOMIC_ACQUIRE))
        atomic_fetch_or(&n->flags, NODE_CALLER_THREAD);
    return E_OK;
}

eng_err tensor_history_reserve(tensor *t, node *n, uint32_t output_nr)
{
    tmeta *m = tensor_meta_peek(t);
    if (!m || !__atomic_load_n(&m->retains_grad, __ATOMIC_ACQUIRE)) return E_OK;
    /* Inert until the history moves: no hook has that history yet, and retaining needs the
     * meta's history to equal the link's. */
    return node_attach_meta(n, output_nr, m, meta_hist(m) + 1);
}

void tensor_history_moved(tensor *t)
{
    tmeta *m = tensor_meta_peek(t);
    if (!m) return;
    __atomic_add_fetch(&m->hist, 1, __ATOMIC_ACQ_REL);
    atomic_fetch_or(&m->acc->flags, NODE_LEAF_MOVED);
}
