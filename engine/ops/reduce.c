/*
 * reduce.c: sum and mean over all or some dims, and sum_to (the inverse of broadcasting).
 * Other reductions (max/min, amax/amin, var/std, logsumexp, norm, argmax) live in
 * reduce_ext.c and share reduce_dims_prepare / reduce_expand_grad from reduce_common.h.
 */
#include <math.h>
#include <string.h>

#include "../defer.h"
#include "../kernels/reduce.h"
#include "ewise.h"
#include "reduce_common.h"

eng_err reduce_dims_prepare(const tensor *a, const int64_t *dims, int ndims, bool keepdim,
                            reduce_plan *p)
{
    memset(p, 0, sizeof *p);
    p->keepdim = keepdim;
    p->in_ndim = a->ndim;
    memcpy(p->in_shape, a->shape, (size_t)a->ndim * sizeof(int64_t));
    if (ndims < 0 || ndims > MAX_DIMS) return err_set(E_RANGE, "too many dims (%d)", ndims);
    if (!dims || ndims == 0) {
        for (int d = 0; d < a->ndim; d++) p->mask[d] = true;
        p->all = true;
    } else {
        bool seen[MAX_DIMS] = {false}; /* a 0-d tensor's dim 0 is seen but never reduced */
        for (int i = 0; i < ndims; i++) {
            int d;
            eng_err e = wrap_dim(dims[i], a->ndim, &d);
            if (e) return e;
            if (seen[d])
                return err_set(E_INVAL, "dim %d appears multiple times in the list of dims", d);
            seen[d] = true;
            p->mask[d] = a->ndim > 0;
        }
    }
    p->count = 1;
    p->out_ndim = 0;
    for (int d = 0; d < a->ndim; d++) {
        if (p->mask[d]) {
            p->count *= a->shape[d];
            if (keepdim) p->out_shape[p->out_ndim++] = 1;
        } else {
            p->out_shape[p->out_ndim++] = a->shape[d];
        }
    }
    return E_OK;
}

eng_err reduce_expand_grad(tensor **out, tensor *g, const reduce_plan *p)
{
    /* Put the reduced dims back as size 1, then broadcast (a stride-0 view, no copy). */
    tensor *k = g;
    tensor_retain(k);
    /* (a full reduction's 0-d gradient is expanded as it is: every stride 0, as PyTorch's
     * grad.expand(sizes)) */
    if (!p->keepdim && g->ndim) {
        int64_t shape[MAX_DIMS];
        for (int d = 0; d < p->in_ndim; d++) shape[d] = p->mask[d] ? 1 : p->in_shape[d];
        tensor *r = NULL;
        eng_err e = op_reshape(&r, k, shape, p->in_ndim);
        tensor_release(k);
        if (e) return e;
        k = r;
    }
    eng_err e = op_expand(out, k, p->in_shape, p->in_ndim);
    tensor_release(k);
    return e;
}

/* A mean from its sum, in place (s is private). Empty reductions give NaN, as PyTorch. */
static void mean_divide(tensor *s, int64_t count)
{
    double inv_count = count ? 1.0 / (double)count : NAN;
    int64_t n = s->numel;
    if (s->dtype == DT_F32) {
        float *d = tensor_data(s);
        for (int64_t i = 0; i < n; i++) d[i] = count ? d[i] / (float)count : NAN;
    } else {
        double *d = tensor_data(s);
        for (int64_t i = 0; i < n; i++) d[i] = count ? d[i] / (double)count : inv_count;
    }
}

/* A queued sum or mean (defer.h): only over at most REDUCE_CHUNK elements, where the kernel
 * needs no partial sums and so allocates nothing. */
typedef struct sum_args {
    bool mask[MAX_DIMS];
    int64_t count;
    bool mean;
} sum_args;
_Static_assert(sizeof(sum_args) <= sizeof(((dtask *)0)->args), "sum_args fits a task");

static void sum_task(dtask *t, tensor *out, tensor *const *ins)
{
    const sum_args *a = (const sum_args *)t->args;
    (void)reduce_kernel(out, NULL, ins[0], a->mask, RK_SUM);
    if (a->mean) mean_divide(out, a->count);
}

/* The sum (mean: divided by the count) of a over the plan's dims, no autograd. */
static eng_err sum_or_mean(tensor **out, tensor *a, const reduce_plan *p, bool mean)
{
    dtype dt = dtype_is_float((dtype)a->dtype) ? (dtype)a->dtype : DT_I64;
    tensor *r = tensor_new(dt, p->out_shape, p->out_ndim);
    if (!r) return err_kind();
    if (a->numel <= REDUCE_CHUNK && defer_wanted(&a, 1, a->numel)) {
        dtask *t = defer_task(r, &a, 1, sum_task, a->numel, 0);
        if (t) {
            sum_args *sa = (sum_args *)t->args;
            memcpy(sa->mask, p->mask, sizeof sa->mask);
            sa->count = p->count;
            sa->mean = mean;
            defer_submit(t);
            *out = r;
            return E_OK;
        }
        defer_flush(); /* no task: eagerly, as without deferral */
    }
    eng_err e = reduce_kernel(r, NULL, a, p->mask, RK_SUM);
    if (e) {
        tensor_release(r);
        return e;
    }
    if (mean) mean_divide(r, p->count);
    *out = r;
    return E_OK;
}

/* The raw sum (no autograd) of a over the plan's dims (see reduce_common.h). */
eng_err sum_raw(tensor **out, tensor *a, const reduce_plan *p) { return sum_or_mean(out, a, p, false); }

/* ---- sum ---- */
static eng_err sum_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    if (!c->needed[0]) return E_OK;
    return reduce_expand_grad(&gout[0], gin[0], (const reduce_plan *)node_attrs(n));
}
static const node_type SUM0_BW = {"SumBackward0", sum_backward, NULL};
static const node_type SUM1_BW = {"SumBackward1", sum_backward, NULL};

static eng_err sum_op(tensor **out, tensor *a, const int64_t *dims, int ndims, bool keepdim,
                      const node_type *bw)
{
    reduce_plan p;
    eng_err e = reduce_dims_prepare(a, dims, ndims, keepdim, &p);
    if (e) return e;
    tensor *r = NULL;
    if ((e = sum_raw(&r, a, &p))) return e;
    node *n = record(bw, &a, 1, &r, 1, 0, sizeof p, &e);
    if (e) {
        tensor_release(r);
        return e;
    }
    if (n) *(reduce_plan *)node_attrs(n) = p;
    *out = r;
    return E_OK;
}

eng_err op_sum(tensor **out, tensor *a) { return sum_op(out, a, NULL, 0, false, &SUM0_BW); }

eng_err op_sum_dims(tensor **out, tensor *a, const int64_t *dims, int ndims, bool keepdim)
{
    return sum_op(out, a, dims, ndims, keepdim, &SUM1_BW);
}

/* ---- mean ---- */
static eng_err mean_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    if (!c->needed[0]) return E_OK;
    /* PyTorch's grad.expand(sizes) / numel: expand first, then divide, so the gradient is a
     * fresh contiguous tensor (in-place ops accept it), not sum's stride-0 view. */
    const reduce_plan *p = (const reduce_plan *)node_attrs(n);
    tensor *g = NULL;
    eng_err e = reduce_expand_grad(&g, gin[0], p);
    if (e) return e;
    e = op_div_scalar(&gout[0], g, (double)p->count);
    tensor_release(g);
    return e;
}
/* PyTorch 1.13's MeanBackward1 saves self (its formula reads self.numel()), so changing the
 * input in place before backward is an error there, and so is a second backward without
 * retain_graph; MeanBackward0 saves nothing. The saved input is only checked. */
static eng_err mean1_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    tensor *self;
    eng_err e = saved_get(n, c, 0, &self);
    return e ? e : mean_backward(n, c, gin, gout);
}
static const node_type MEAN0_BW = {"MeanBackward0", mean_backward, NULL};
static const node_type MEAN1_BW = {"MeanBackward1", mean1_backward, NULL};

static eng_err mean_op(tensor **out, tensor *a, const int64_t *dims, int ndims, bool keepdim,
                       const node_type *bw)
{
    if (!dtype_is_float((dtype)a->dtype))
        return err_set(E_DTYPE, "mean(): could not infer output dtype. Input dtype must be either "
                       "a floating point or complex dtype. Got: %s", dtype_name((dtype)a->dtype));
    reduce_plan p;
    eng_err e = reduce_dims_prepare(a, dims, ndims, keepdim, &p);
    if (e) return e;
    tensor *s = NULL;
    if ((e = sum_or_mean(&s, a, &p, true))) return e;
    bool save_self = bw == &MEAN1_BW;
    node *nd = record(bw, &a, 1, &s, 1, save_self, sizeof p, &e);
    if (e) {
        tensor_release(s);
        return e;
    }
    if (nd) {
        *(reduce_plan *)node_attrs(nd) = p;
        if (save_self) node_save(nd, 0, a);
    }
    *out = s;
    return E_OK;
}

eng_err op_mean(tensor **out, tensor *a) { return mean_op(out, a, NULL, 0, false, &MEAN0_BW); }

eng_err op_mean_dims(tensor **out, tensor *a, const int64_t *dims, int ndims, bool keepdim)
{
    return mean_op(out, a, dims, ndims, keepdim, &MEAN1_BW);
}

/* ---- sum_to ---- */
eng_err op_sum_to(tensor **out, tensor *g, const int64_t *shape, int ndim)
{
    int lead = g->ndim - ndim;
    if (lead < 0)
        return err_set(E_SHAPE, "sum_to: gradient has fewer dims (%d) than the target (%d)",
                       g->ndim, ndim);
    int64_t dims[MAX_DIMS];
    int nd = 0;
    for (int d = 0; d < g->ndim; d++) {
        int td = d - lead;
        if (td < 0 || (shape[td] == 1 && g->shape[d] != 1)) dims[nd++] = d;
        else if (shape[td] != g->shape[d])
            return err_set(E_SHAPE, "sum_to: size %lld cannot be summed to %lld at dim %d",
                           (long long)g->shape[d], (long long)shape[td], d);
    }
    if (nd == 0) {
        if (lead == 0) {
            tensor_retain(g);
            *out = g;
            return E_OK;
        }
        return op_reshape(out, g, shape, ndim);
    }
    tensor *s = NULL;
    eng_err e = op_sum_dims(&s, g, dims, nd, true);
    if (e) return e;
    e = op_reshape(out, s, shape, ndim);
    tensor_release(s);
    return e;
}
