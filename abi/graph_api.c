/*
 * graph_api.c: backward, autograd.grad, graph inspection and custom functions.
 */
#include <string.h>

#include "../engine/alloc.h"
#include "../engine/custom.h"
#include "boundary.h"

static int flags_check(const char *fn, unsigned flags, unsigned allowed)
{
    if (flags & ~allowed) return api_error(fn, AG_EINVAL, "unknown flags 0x%x", flags & ~allowed);
    if ((flags & AG_FREE_GRAPH) && (flags & AG_RETAIN_GRAPH))
        return api_error(fn, AG_EINVAL, "AG_FREE_GRAPH and AG_RETAIN_GRAPH contradict each other "
                                        "(flags 0x%x)", flags);
    return AG_OK;
}

AG_API int ag_backward(ag_tensor *root, ag_tensor *grad, unsigned flags)
{
    const char *fn = "ag_backward";
    CHECK_NOT_NULL(fn, root, "root");
    int rc = flags_check(fn, flags, AG_RETAIN_GRAPH | AG_CREATE_GRAPH | AG_FREE_GRAPH);
    if (rc) return rc;
    tensor *r = T(root), *g = T(grad);
    bwd_request req = {
        .roots = &r,
        .root_grads = &g,
        .n_roots = 1,
        .retain_graph = flags & AG_RETAIN_GRAPH,
        .create_graph = flags & AG_CREATE_GRAPH,
        .free_graph = flags & AG_FREE_GRAPH,
    };
    eng_err e = run_backward(&req);
    return e ? api_fail(fn, e) : AG_OK;
}

AG_API int ag_grad(ag_tensor **grads_out, ag_tensor *const *outputs, ag_tensor *const *grad_outputs,
                   size_t n_outputs, ag_tensor *const *inputs, size_t n_inputs, unsigned flags)
{
    const char *fn = "ag_grad";
    /* (The counts first: a binding passes NULL for an empty list, which is what is wrong.) */
    if (n_outputs == 0 || n_inputs == 0)
        return api_error(fn, AG_EINVAL, "grad requires at least one output and one input "
                                        "(got %zu and %zu)", n_outputs, n_inputs);
    CHECK_NOT_NULL(fn, grads_out, "grads_out");
    CHECK_NOT_NULL(fn, outputs, "outputs");
    CHECK_NOT_NULL(fn, inputs, "inputs");
    int rc = flags_check(fn, flags,
                         AG_RETAIN_GRAPH | AG_CREATE_GRAPH | AG_ALLOW_UNUSED | AG_FREE_GRAPH);
    if (rc) return rc;
    if (n_outputs > 1u << 20 || n_inputs > 1u << 20)
        return api_error(fn, AG_EINVAL, "too many outputs or inputs");
    for (size_t i = 0; i < n_outputs; i++)
        if (!outputs[i]) return api_error(fn, AG_EINVAL, "outputs[%zu] is NULL", i);
    for (size_t i = 0; i < n_inputs; i++)
        if (!inputs[i]) return api_error(fn, AG_EINVAL, "inputs[%zu] is NULL", i);
    tensor **captured = mem_calloc(n_inputs * sizeof *captured);
    if (!captured) return api_error(fn, AG_ENOMEM, "out of memory");
    bwd_request req = {
        .roots = (tensor *const *)outputs,
        .root_grads = (tensor *const *)grad_outputs,
        .n_roots = (int)n_outputs,
        .inputs = (tensor *const *)inputs,
        .n_inputs = (int)n_inputs,
        .captured = captured,
        .retain_graph = flags & AG_RETAIN_GRAPH,
        .create_graph = flags & AG_CREATE_GRAPH,
        .free_graph = flags & AG_FREE_GRAPH,
        .allow_unused = flags & AG_ALLOW_UNUSED,
    };
    eng_err e = run_backward(&req);
    if (!e && !req.allow_unused) {
        for (size_t i = 0; i < n_inputs; i++)
            if (!captured[i]) {
                e = err_set(E_NOGRAD, "One of the differentiated Tensors appears to not have been "
                            "used in the graph. Set allow_unused=True if this is the desired "
                            "behavior.");
                break;
            }
    }
    if (e) {
        for (size_t i = 0; i < n_inputs; i++) tensor_release(captured[i]);
        mem_free(captured);
        return api_fail(fn, e);
    }
    for (size_t i = 0; i < n_inputs; i++) grads_out[i] = TH(captured[i]);
    mem_free(captured);
    return AG_OK;
}

/* ---- nodes ---- */
AG_API int ag_node_retain(ag_node *n)
{
    CHECK_NOT_NULL("ag_node_retain", n, "node");
    node_retain(N(n));
    return AG_OK;
}

AG_API void ag_node_release(ag_node *n) { node_release(N(n)); }

AG_API int ag_node_name(const char **out, const ag_node *n)
{
    CHECK_NOT_NULL("ag_node_name", out, "out");
    CHECK_NOT_NULL("ag_node_name", n, "node");
    *out = node_name(N(n));
    return AG_OK;
}

AG_API int ag_node_num_next(size_t *out, const ag_node *n)
{
    CHECK_NOT_NULL("ag_node_num_next", out, "out");
    CHECK_NOT_NULL("ag_node_num_next", n, "node");
    *out = N(n)->n_next;
    return AG_OK;
}

AG_API int ag_node_next(ag_node **fn_out, int64_t *input_nr_out, const ag_node *n, size_t i)
{
    const char *fn = "ag_node_next";
    CHECK_NOT_NULL(fn, fn_out, "fn_out");
    CHECK_NOT_NULL(fn, n, "node");
    if (i >= N(n)->n_next)
        return api_error(fn, AG_ERANGE, "index %zu out of range: node %s has %u next functions", i,
                         node_name(N(n)), (unsigned)N(n)->n_next);
    node *nx = N(n)->next[i].fn;
    if (nx) node_retain(nx);
    *fn_out = NH(nx);
    if (input_nr_out) *input_nr_out = N(n)->next[i].input_nr;
    return AG_OK;
}

AG_API int ag_node_variable(ag_tensor **out, const ag_node *n)
{
    CHECK_NOT_NULL("ag_node_variable", out, "out");
    CHECK_NOT_NULL("ag_node_variable", n, "node");
    tensor *v = N(n)->variable;
    if (!v) return api_error("ag_node_variable", AG_EINVAL, "%s is not an AccumulateGrad node",
                             node_name(N(n)));
    tensor_retain(v);
    *out = TH(v);
    return AG_OK;
}

/* ---- custom functions ---- */
/* Trampolines turn the engine's callback types into the public ones. */
typedef struct api_fn {
    ag_function_forward_fn forward;
    ag_function_backward_fn backward;
    void *userdata;
    void (*free_userdata)(void *);
} api_fn;

static int fwd_trampoline(fn_ctx *ctx, tensor **outs, int n_out, tensor *const *ins, int n_in,
                          void *p)
{
    api_fn *f = p;
    return f->forward((ag_function_ctx *)ctx, (ag_tensor **)outs, (size_t)n_out,
                      (ag_tensor *const *)ins, (size_t)n_in, f->userdata);
}

static int bwd_trampoline(fn_ctx *ctx, tensor **gins, int n_in, tensor *const *gouts, int n_out,
                          void *p)
{
    api_fn *f = p;
    return f->backward((ag_function_ctx *)ctx, (ag_tensor **)gins, (size_t)n_in,
                       (ag_tensor *const *)gouts, (size_t)n_out, f->userdata);
}

static void free_trampoline(void *p)
{
    api_fn *f = p;
    if (f->free_userdata) f->free_userdata(f->userdata);
    mem_free(f);
}

AG_API int ag_function_apply(ag_tensor **outputs, size_t n_outputs, ag_tensor *const *inputs,
                             size_t n_inputs, const char *name, ag_function_forward_fn forward,
                             ag_function_backward_fn backward, unsigned flags, void *userdata,
                             void (*free_userdata)(void *userdata))
{
    const char *fn = "ag_function_apply";
    CHECK_NOT_NULL(fn, outputs, "outputs");
    CHECK_NOT_NULL(fn, name, "name");
    CHECK_NOT_NULL(fn, forward, "forward");
    CHECK_NOT_NULL(fn, backward, "backward");
    if (n_inputs && !inputs) return api_error(fn, AG_EINVAL, "argument 'inputs' is NULL");
    /* (the counts before the array: a count beyond it must not be walked) */
    if (n_outputs == 0 || n_outputs > 64 || n_inputs > 64)
        return api_error(fn, AG_EINVAL, "a custom function has 1 to 64 outputs and at most 64 "
                         "inputs (got %zu and %zu)", n_outputs, n_inputs);
    for (size_t i = 0; i < n_inputs; i++)
        if (!inputs[i]) return api_error(fn, AG_EINVAL, "inputs[%zu] is NULL", i);
    int rc = flags_check(fn, flags, AG_CALLBACK_CALLER_THREAD);
    if (rc) return rc;
    if (strlen(name) > 200) return api_error(fn, AG_EINVAL, "name is too long");
    api_fn *f = mem_alloc(sizeof *f);
    if (!f) return api_error(fn, AG_ENOMEM, "out of memory");
    f->forward = forward;
    f->backward = backward;
    f->userdata = userdata;
    f->free_userdata = free_userdata;
    custom_fn_def def = {
        .name = name,
        .forward = fwd_trampoline,
        .backward = bwd_trampoline,
        .userdata = f,
        .free_userdata = free_trampoline,
        .caller_thread = flags & AG_CALLBACK_CALLER_THREAD,
    };
    tensor *outs[64];
    eng_err e = op_custom_apply(outs, (int)n_outputs, (tensor *const *)inputs, (int)n_inputs, &def);
    if (e) {
        mem_free(f);
        return api_fail(fn, e);
    }
    for (size_t o = 0; o < n_outputs; o++) outputs[o] = TH(outs[o]);
    return AG_OK;
}

AG_API int ag_function_ctx_save(ag_function_ctx *ctx, ag_tensor *t)
{
    CHECK_NOT_NULL("ag_function_ctx_save", ctx, "ctx");
    CHECK_NOT_NULL("ag_function_ctx_save", t, "t");
    eng_err e = fn_ctx_save((fn_ctx *)ctx, T(t));
    return e ? api_fail("ag_function_ctx_save", e) : AG_OK;
}

AG_API int ag_function_ctx_num_saved(size_t *out, const ag_function_ctx *ctx)
{
    CHECK_NOT_NULL("ag_function_ctx_num_saved", out, "out");
    CHECK_NOT_NULL("ag_function_ctx_num_saved", ctx, "ctx");
    eng_err e = fn_ctx_num_saved((const fn_ctx *)ctx, out);
    return e ? api_fail("ag_function_ctx_num_saved", e) : AG_OK;
}

AG_API int ag_function_ctx_saved(ag_tensor **out, ag_function_ctx *ctx, size_t i)
{
    CHECK_NOT_NULL("ag_function_ctx_saved", out, "out");
    CHECK_NOT_NULL("ag_function_ctx_saved", ctx, "ctx");
    tensor *t;
    eng_err e = fn_ctx_saved((fn_ctx *)ctx, i, &t);
    if (e) return api_fail("ag_function_ctx_saved", e);
    *out = TH(t);
    return AG_OK;
}

AG_API int ag_function_ctx_needs_input_grad(int *out, const ag_function_ctx *ctx, size_t i)
{
    CHECK_NOT_NULL("ag_function_ctx_needs_input_grad", out, "out");
    CHECK_NOT_NULL("ag_function_ctx_needs_input_grad", ctx, "ctx");
    bool b;
    eng_err e = fn_ctx_needs_input_grad((const fn_ctx *)ctx, i, &b);
    if (e) return api_fail("ag_function_ctx_needs_input_grad", e);
    *out = b;
    return AG_OK;
}
