/*
 * custom.c: user-defined differentiable functions (torch.autograd.Function): forward runs
 * under no_grad, tensors it saves are version-checked in backward, and the outputs get a node
 * named "<name>Backward" whose backward calls the user's function.
 */
#include <string.h>

#include "../alloc.h"
#include "../custom.h"
#include "ewise.h"

#define MAX_SAVED 64

struct fn_ctx {
    /* forward */
    bool in_forward;
    uint64_t needs;     /* ctx.needs_input_grad during forward (see op_custom_apply) */
    int n_in;
    tensor *pending[MAX_SAVED];
    int n_pending;
    /* backward */
    node *node;
    bwd_ctx *bc;
};

typedef struct custom_attr {
    char *name; /* "<def.name>Backward"; first: node_name reads it there */
    custom_fn_def def;
    /* ctx.needs_input_grad, fixed when the function was applied (as PyTorch's: whether the
     * input required grad), whichever inputs a later pass asks for */
    uint64_t needs_input_grad;
} custom_attr;

static void custom_destroy(node *n)
{
    custom_attr *a = node_attrs(n);
    if (a->def.free_userdata) a->def.free_userdata(a->def.userdata);
    mem_free(a->name);
}

/* PyTorch's check of a gradient a custom backward returned for input i: its shape must be
 * the input's, or one the input's broadcasts to. */
static eng_err check_grad_shape(node *n, int i, const tensor *g)
{
    const edge *ed = &n->next[i];
    const out_meta *m = &node_outs(ed->fn)[ed->input_nr];
    bool ok = g->ndim >= m->ndim;
    for (int d = 0; ok && d < m->ndim; d++) {
        int64_t want = m->shape[d], got = g->shape[g->ndim - m->ndim + d];
        ok = want == got || want == 1;
    }
    if (ok) return E_OK;
    char a[160], b[160];
    return err_set(E_SHAPE, "Function %s returned an invalid gradient at index %d - got %s but "
                   "expected shape compatible with %s", node_name(n), i,
                   fmt_shape(a, sizeof a, g->shape, g->ndim),
                   fmt_shape(b, sizeof b, m->shape, m->ndim));
}

static eng_err custom_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    custom_attr *a = node_attrs(n);
    /* PyTorch materialises missing output gradients as zeros for the user. */
    tensor *g_small[8], **g = n->n_out <= 8 ? g_small : mem_calloc(n->n_out * sizeof *g);
    if (!g) return err_nomem();
    eng_err e = E_OK;
    for (int o = 0; o < n->n_out; o++) {
        g[o] = gin[o];
        if (!g[o]) {
            out_meta *m = &node_outs(n)[o];
            if ((e = op_full(&g[o], (dtype)m->dtype, m->shape, m->ndim, 0.0))) {
                g[o] = NULL;
                break;
            }
        }
    }
    if (!e) {
        fn_ctx ctx = {.node = n, .bc = c};
        unsigned mark = err_mark(); /* what the callback says, if it fails */
        int rc = a->def.backward(&ctx, gout, n->n_next, g, n->n_out, a->def.userdata);
        if (rc) {
            for (int i = 0; i < n->n_next; i++) {
                tensor_release(gout[i]);
                gout[i] = NULL;
            }
            char tail[480], st[48];
            e = err_set(err_of_callback(rc), "the backward of custom function '%s' failed with %s%s",
                        a->name, err_callback_status(st, sizeof st, rc),
                        err_callback_tail(tail, sizeof tail, mark));
        } else {
            /* Every gradient for an input that requires grad is checked, also those this pass
             * does not need (PyTorch's validate_outputs); the scheduler then sums a broadcast
             * gradient down and casts it to the input's dtype, for those it needs. */
            for (int i = 0; i < n->n_next && !e; i++)
                if (gout[i] && n->next[i].fn) e = check_grad_shape(n, i, gout[i]);
            for (int i = 0; i < n->n_next; i++) {
                if (gout[i] && (e || !c->needed[i])) {
                    tensor_release(gout[i]);
                    gout[i] = NULL;
                }
            }
        }
    }
    for (int o = 0; o < n->n_out; o++)
        if (g[o] && g[o] != gin[o]) tensor_release(g[o]);
    if (g != g_small) mem_free(g);
    return e;
}

/* (no name of the type's: each node's is its attributes' first field, node_name) */
static const node_type CUSTOM = {NULL, custom_backward, custom_destroy};

eng_err fn_ctx_save(fn_ctx *c, tensor *t)
{
    if (!c->in_forward) return err_set(E_INVAL, "save_for_backward can only be called from forward");
    if (c->n_pending == MAX_SAVED)
        return err_set(E_INVAL, "a custom function saves at most %d tensors", MAX_SAVED);
    tensor_retain(t);
    c->pending[c->n_pending++] = t;
    return E_OK;
}

eng_err fn_ctx_num_saved(const fn_ctx *c, size_t *out)
{
    if (!c->node) return err_set(E_INVAL, "saved tensors are available in backward only");
    *out = c->node->n_saved;
    return E_OK;
}

eng_err fn_ctx_saved(fn_ctx *c, size_t i, tensor **out)
{
    if (!c->node) return err_set(E_INVAL, "saved tensors are available in backward only");
    if (i >= c->node->n_saved)
        return err_set(E_RANGE, "saved tensor index %zu out of range (%u saved)", i,
                       (unsigned)c->node->n_saved);
    /* Under the node's lock, which the formula does not hold (NODE_USER_FORMULA): another
     * pass through this node may be freeing its saved tensors. Retained, the tensor outlives
     * that. */
    tensor *t = NULL;
    bool locked = node_lock(c->node);
    eng_err e = saved_get(c->node, c->bc, (int)i, &t);
    if (!e && t) tensor_retain(t);
    if (locked) node_unlock(c->node);
    if (e) return e;
    *out = t;
    return E_OK;
}

eng_err fn_ctx_needs_input_grad(const fn_ctx *c, size_t i, bool *out)
{
    size_t n = c->in_forward ? (size_t)c->n_in : c->node ? c->node->n_next : 0;
    if (!c->in_forward && !c->node)
        return err_set(E_INVAL, "needs_input_grad is available in forward and backward only");
    if (i >= n) return err_set(E_RANGE, "input index %zu out of range (%zu inputs)", i, n);
    uint64_t bits = c->in_forward ? c->needs
                                  : ((custom_attr *)node_attrs(c->node))->needs_input_grad;
    *out = (bits >> i) & 1;
    return E_OK;
}

/* ctx.needs_input_grad as PyTorch's Function.apply sets it before forward runs: inputs that
 * require grad, where grad mode is on and the function would record (any input requires
 * grad); else none. */
static uint64_t needs_of(tensor *const *ins, int n_in)
{
    uint64_t bits = 0;
    if (!should_record(ins, n_in)) return 0;
    for (int i = 0; i < n_in; i++)
        if (ins[i] && tensor_requires_grad(ins[i])) bits |= (uint64_t)1 << i;
    return bits;
}

static void release_all(tensor **ts, int n)
{
    for (int i = 0; i < n; i++) {
        tensor_release(ts[i]);
        ts[i] = NULL;
    }
}

eng_err op_custom_apply(tensor **outs, int n_out, tensor *const *ins, int n_in,
                        const custom_fn_def *def)
{
    if (n_out < 1 || n_out > 64 || n_in > 64)
        return err_set(E_INVAL, "a custom function has 1 to 64 outputs and at most 64 inputs");
    tensor *res[64] = {0};
    fn_ctx ctx = {.in_forward = true, .needs = needs_of(ins, n_in), .n_in = n_in};
    bool prev = grad_mode_set(false);
    unsigned mark = err_mark(); /* what the callback says, if it fails */
    int rc = def->forward(&ctx, res, n_out, ins, n_in, def->userdata);
    grad_mode_set(prev);
    eng_err e = E_OK;
    if (rc) {
        char tail[480], st[48];
        e = err_set(err_of_callback(rc), "the forward of custom function '%s' failed with %s%s",
                    def->name, err_callback_status(st, sizeof st, rc),
                    err_callback_tail(tail, sizeof tail, mark));
    } else {
        for (int o = 0; o < n_out && !e; o++)
            if (!res[o])
                e = err_set(E_CALLBACK, "the forward of custom function '%s' left output %d NULL",
                            def->name, o);
    }
    bool recording = false;
    if (!e) {
        bool any_float = false;
        for (int o = 0; o < n_out; o++) any_float |= dtype_is_float((dtype)res[o]->dtype);
        recording = any_float && should_record(ins, n_in);
    }
    /* What forward returned, before the headers change below: a saved tensor is an output
     * when it is the very tensor returned (see the saving loop). */
    tensor *returned[64] = {0};
    for (int o = 0; o < n_out && !e; o++) returned[o] = res[o];
    /* Each output gets a header of its own where it is shared (an input returned as is, a
     * tensor forward keeps, one with a history): the node's history must not be written
     * into another tensor. When a node is recorded, an output that is a view stays a view
     * (an input returned as is becomes one, as PyTorch's view_as), marked made by a custom
     * function: an in-place op on it, or on its base behind it, is refused, as the history
     * a rebase would give it bypasses the function's own backward. */
    for (int o = 0; o < n_out && !e; o++) {
        bool is_input = false;
        for (int i = 0; i < n_in; i++) is_input |= res[o] == ins[i];
        bool fresh = !res[o]->grad_fn && !res[o]->requires_grad && !is_input;
        bool view = recording && (res[o]->base || is_input);
        if (!fresh || atomic_load(&res[o]->refs) > 1) {
            tensor *t = res[o];
            tensor *alias = view ? view_alias(t, t->shape, t->strides, t->ndim, t->offset)
                                 : tensor_alias(t, t->shape, t->strides, t->ndim, t->offset);
            if (!alias) {
                e = E_NOMEM;
                break;
            }
            tensor_release(res[o]);
            res[o] = alias;
        }
        if (view) res[o]->view_kind = VK_CUSTOM;
    }
    node *n = NULL;
    if (!e) {
        if (recording) {
            int out_dims = 0;
            for (int o = 0; o < n_out; o++) out_dims += res[o]->ndim;
            n = node_new(&CUSTOM, n_in, ctx.n_pending, n_out, out_dims, sizeof(custom_attr));
            size_t len = strlen(def->name);
            char *name = mem_alloc(len + sizeof "Backward");
            if (!n || !name) {
                mem_free(name);
                e = err_nomem();
            } else {
                memcpy(name, def->name, len);
                memcpy(name + len, "Backward", sizeof "Backward");
                custom_attr *a = node_attrs(n);
                a->def = *def;
                a->name = name;
                a->needs_input_grad = ctx.needs; /* (recording: what forward saw) */
                atomic_fetch_or(&n->flags, NODE_USER_FORMULA);
                if (def->caller_thread) atomic_fetch_or(&n->flags, NODE_CALLER_THREAD);
                for (int i = 0; i < n_in && !e; i++) e = node_set_edge(n, i, ins[i]);
            }
        }
    }
    if (e) {
        if (n) {
            /* The userdata stays the caller's on failure. */
            ((custom_attr *)node_attrs(n))->def.free_userdata = NULL;
            node_release(n);
        }
        release_all(ctx.pending, ctx.n_pending);
        release_all(res, n_out);
        return e;
    }
    if (n) {
        /* An integer output takes no grad_fn, but its dtype and shape are kept: backward
         * hands the user zeros of those (PyTorch materialises them so). */
        for (int o = 0; o < n_out; o++)
            if (dtype_is_float((dtype)res[o]->dtype)) node_set_output(n, o, res[o]);
            else node_out_meta(n, o, res[o]);
        /* A saved tensor is an output when it is the tensor forward returned for it (not an
         * input returned as is, nor another view of an output's memory: PyTorch decides by
         * identity, and a saved input keeps its own history). It is saved as the output's
         * new header, whose history is this node. (ctx.pending holds a reference to each
         * saved tensor, so a returned header it matches is still alive.) */
        for (int k = 0; k < ctx.n_pending && !e; k++) {
            int out_idx = -1;
            for (int o = 0; o < n_out; o++) {
                bool is_input = false;
                for (int i = 0; i < n_in; i++) is_input |= returned[o] == ins[i];
                if (ctx.pending[k] == returned[o] && !is_input && res[o]->grad_fn == n)
                    out_idx = o;
            }
            if (out_idx >= 0) e = node_save_output_alias(n, k, res[out_idx]);
            else node_save(n, k, ctx.pending[k]);
        }
        release_all(ctx.pending, ctx.n_pending);
        if (e) {
            /* On failure the caller keeps its userdata: the dying node must not free it. */
            ((custom_attr *)node_attrs(n))->def.free_userdata = NULL;
            node_release(n);
            release_all(res, n_out);
            return e;
        }
        node_release(n); /* the outputs own it now */
    } else {
        release_all(ctx.pending, ctx.n_pending);
        if (def->free_userdata) def->free_userdata(def->userdata);
    }
    for (int o = 0; o < n_out; o++) outs[o] = res[o];
    return E_OK;
}
