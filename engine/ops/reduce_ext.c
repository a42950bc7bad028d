/*
 * reduce_ext.c: the reductions beyond sum and mean: max/min (whole tensor and along a dim),
 * amax/amin, var/std, logsumexp, norm and argmax/argmin. Values come from the deterministic
 * reduce_kernel; backward formulas are PyTorch 1.13's (FunctionsManual.cpp), written with
 * ordinary ops so that they differentiate again.
 */
#include <math.h>
#include <string.h>

#include "../kernels/reduce.h"
#include "../kernels/vmath.h"
#include "ewise.h"
#include "reduce_common.h"

/* What every node of this file remembers. */
typedef struct red_attr {
    reduce_plan p;
    int dim;            /* max_dim / min_dim */
    int64_t correction; /* var / std */
    double ord;         /* norm's p */
} red_attr;

/* ---- shared plumbing ---- */

/* PyTorch refuses max-like reductions over nothing (messages as its own). */
static eng_err check_nonempty(const char *op, const tensor *a, const reduce_plan *p, bool hint)
{
    if (p->all && a->numel == 0)
        return err_set(E_SHAPE, "%s(): Expected reduction dim to be specified for input.numel() "
                       "== 0.%s", op,
                       hint ? " Specify the reduction dim with the 'dim' argument." : "");
    for (int d = 0; d < a->ndim; d++)
        if (p->mask[d] && a->shape[d] == 0)
            return err_set(E_SHAPE, "%s(): Expected reduction dim %d to have non-zero size.", op,
                           d);
    return E_OK;
}

/* t (shaped as the reduction's output) with the reduced dims back as size 1, as PyTorch's
 * unsqueeze_multiple: a reshape, so differentiable. */
static eng_err keep_dims(tensor **out, tensor *t, const reduce_plan *p)
{
    if (p->keepdim || p->in_ndim == 0) {
        tensor_retain(t);
        *out = t;
        return E_OK;
    }
    int64_t shape[MAX_DIMS];
    for (int d = 0; d < p->in_ndim; d++) shape[d] = p->mask[d] ? 1 : p->in_shape[d];
    return op_reshape(out, t, shape, p->in_ndim);
}

/* The reduced dims as a list (empty for a 0-d input, which op_sum_dims reads as "all"). */
static int plan_dims(const reduce_plan *p, int64_t *dims)
{
    int n = 0;
    for (int d = 0; d < p->in_ndim; d++)
        if (p->mask[d]) dims[n++] = d;
    return n;
}

/* Max/min/arg reduction into fresh tensors; vals or idx may be NULL when not wanted. */
static eng_err extreme_raw(tensor **vals, tensor **idx, tensor *a, const reduce_plan *p,
                           reduce_kind k)
{
    tensor *v = vals ? tensor_new((dtype)a->dtype, p->out_shape, p->out_ndim) : NULL;
    tensor *i = idx ? tensor_new(DT_I64, p->out_shape, p->out_ndim) : NULL;
    eng_err e = (vals && !v) || (idx && !i) ? err_kind() : reduce_kernel(v, i, a, p->mask, k);
    if (e) {
        tensor_release(v);
        tensor_release(i);
        return e;
    }
    if (vals) *vals = v;
    if (idx) *idx = i;
    return E_OK;
}

/* Records bw for r = f(a) with the attributes, saving a in slot 0 and r in slot 1 as asked;
 * releases r on failure. */
static eng_err finish(tensor **out, tensor *r, tensor *a, const node_type *bw, bool save_in,
                      bool save_out, const red_attr *at)
{
    eng_err e;
    node *n = record(bw, &a, 1, &r, 1, save_in + save_out, sizeof *at, &e);
    if (!e && n) {
        *(red_attr *)node_attrs(n) = *at;
        if (save_in) node_save(n, 0, a);
        if (save_out) e = node_save_output(n, 1, r);
    }
    if (e) {
        tensor_release(r);
        return e;
    }
    *out = r;
    return E_OK;
}

static void release_all(tensor **ts, int n)
{
    for (int i = 0; i < n; i++) tensor_release(ts[i]);
}

/* ---- max / min of all elements ---- */

/* evenly_distribute_backward: the gradient is shared among the elements equal to the result
 * (among the NaNs when the result is NaN), in a contiguous tensor (PyTorch's
 * grad.new_zeros(sizes).masked_fill_(mask, share)). */
static eng_err evenly_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    if (!c->needed[0]) return E_OK;
    tensor *x, *v, *t[4] = {NULL, NULL, NULL, NULL}; /* mask, count, share, zero */
    eng_err e;
    if ((e = saved_get(n, c, 0, &x)) || (e = saved_get(n, c, 1, &v))) return e;
    if (isnan(tensor_get_f64(v, 0))) e = op_compare(&t[0], x, x, CMP_NE);
    else e = op_compare(&t[0], x, v, CMP_EQ);
    if (!e && !(e = op_sum(&t[1], t[0])) && !(e = op_div(&t[2], gin[0], t[1])) &&
        !(e = op_scalar(&t[3], 0.0, (dtype)t[2]->dtype)))
        e = op_where_contiguous(&gout[0], t[0], t[2], t[3]);
    release_all(t, 4);
    return e;
}
static const node_type MAX1_BW = {"MaxBackward1", evenly_backward, NULL};
static const node_type MIN1_BW = {"MinBackward1", evenly_backward, NULL};

static eng_err extreme_all(tensor **out, tensor *a, bool mx)
{
    red_attr at = {0};
    eng_err e = reduce_dims_prepare(a, NULL, 0, false, &at.p);
    if (e || (e = check_nonempty(mx ? "max" : "min", a, &at.p, true))) return e;
    tensor *r;
    if ((e = extreme_raw(&r, NULL, a, &at.p, mx ? RK_MAX : RK_MIN))) return e;
    return finish(out, r, a, mx ? &MAX1_BW : &MIN1_BW, true, true, &at);
}

eng_err op_max_all(tensor **out, tensor *a) { return extreme_all(out, a, true); }
eng_err op_min_all(tensor **out, tensor *a) { return extreme_all(out, a, false); }

/* ---- max / min along a dim ---- */

/* zeros shaped like the input with g written at the selected indices (PyTorch's
 * value_selecting_reduction_backward, done directly when no graph is wanted). */
static eng_err scatter_raw(tensor **out, tensor *g, tensor *idx, const red_attr *at)
{
    const reduce_plan *p = &at->p;
    int64_t size = p->in_shape[at->dim], inner = 1;
    for (int d = at->dim + 1; d < p->in_ndim; d++) inner *= p->in_shape[d];
    tensor *gc = g, *r = tensor_new((dtype)g->dtype, p->in_shape, p->in_ndim);
    if (!r) return err_kind();
    eng_err e = E_OK;
    if (!tensor_is_contiguous(g)) {
        gc = tensor_new((dtype)g->dtype, g->shape, g->ndim);
        e = gc ? kernel_copy(gc, g) : err_kind();
    }
    if (e) {
        if (gc != g) tensor_release(gc);
        tensor_release(r);
        return e;
    }
    const int64_t *ix = tensor_data(idx);
    int64_t m = idx->numel;
    memset(tensor_data(r), 0, (size_t)r->numel * dtype_size((dtype)r->dtype));
    for (int64_t o = 0; o < m; o++) {
        int64_t dst = (o / inner * size + ix[o]) * inner + o % inner;
        if (r->dtype == DT_F32)
            ((float *)tensor_data(r))[dst] = ((const float *)tensor_data(gc))[o];
        else
            ((double *)tensor_data(r))[dst] = ((const double *)tensor_data(gc))[o];
    }
    if (gc != g) tensor_release(gc);
    *out = r;
    return E_OK;
}

static eng_err select_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    if (!c->needed[0]) return E_OK;
    const red_attr *at = (const red_attr *)node_attrs(n);
    tensor *idx, *t[3] = {NULL, NULL, NULL}; /* grad, indices with the dim back, zeros */
    eng_err e = saved_get(n, c, 0, &idx);
    if (e) return e;
    if (at->p.in_ndim == 0) { /* one element: it is the selected one */
        tensor_retain(gin[0]);
        gout[0] = gin[0];
        return E_OK;
    }
    if (!c->create_graph) return scatter_raw(&gout[0], gin[0], idx, at);
    if (!(e = keep_dims(&t[0], gin[0], &at->p)) && !(e = keep_dims(&t[1], idx, &at->p)) &&
        !(e = op_full(&t[2], (dtype)gin[0]->dtype, at->p.in_shape, at->p.in_ndim, 0.0)))
        e = op_scatter_add(&gout[0], t[2], at->dim, t[1], t[0]);
    release_all(t, 3);
    return e;
}
static const node_type MAX0_BW = {"MaxBackward0", select_backward, NULL};
static const node_type MIN0_BW = {"MinBackward0", select_backward, NULL};

static eng_err extreme_dim(tensor **values, tensor **indices, tensor *a, int64_t dim,
                           bool keepdim, bool mx)
{
    red_attr at = {0};
    eng_err e = reduce_dims_prepare(a, &dim, 1, keepdim, &at.p);
    if (e || (e = check_nonempty(mx ? "max" : "min", a, &at.p, true))) return e;
    if (a->ndim) wrap_dim(dim, a->ndim, &at.dim);
    tensor *v, *i;
    if ((e = extreme_raw(&v, &i, a, &at.p, mx ? RK_ARGMAX : RK_ARGMIN))) return e;
    node *n = record(mx ? &MAX0_BW : &MIN0_BW, &a, 1, &v, 1, 1, sizeof at, &e);
    if (e) {
        tensor_release(v);
        tensor_release(i);
        return e;
    }
    if (n) {
        *(red_attr *)node_attrs(n) = at;
        node_save(n, 0, i);
    }
    *values = v;
    *indices = i;
    return E_OK;
}

eng_err op_max_dim(tensor **values, tensor **indices, tensor *a, int64_t dim, bool keepdim)
{
    return extreme_dim(values, indices, a, dim, keepdim, true);
}

eng_err op_min_dim(tensor **values, tensor **indices, tensor *a, int64_t dim, bool keepdim)
{
    return extreme_dim(values, indices, a, dim, keepdim, false);
}

/* ---- amax / amin ---- */

/* scale_grad_by_count: (grad / mask.sum(dims, true)) * mask with mask = (x == result). */
static eng_err amax_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    if (!c->needed[0]) return E_OK;
    const reduce_plan *p = &((const red_attr *)node_attrs(n))->p;
    tensor *x, *v, *t[5] = {NULL, NULL, NULL, NULL, NULL}; /* vk, mask, count, gk, share */
    int64_t dims[MAX_DIMS];
    int nd = plan_dims(p, dims);
    eng_err e;
    if ((e = saved_get(n, c, 0, &x)) || (e = saved_get(n, c, 1, &v))) return e;
    /* (result == x, in PyTorch's order: the first operand lays the mask out) */
    if (!(e = keep_dims(&t[0], v, p)) && !(e = op_compare(&t[1], t[0], x, CMP_EQ)) &&
        !(e = op_sum_dims(&t[2], t[1], dims, nd, true)) && !(e = keep_dims(&t[3], gin[0], p)) &&
        !(e = op_div(&t[4], t[3], t[2])))
        e = op_mul(&gout[0], t[4], t[1]);
    release_all(t, 5);
    return e;
}
static const node_type AMAX_BW = {"AmaxBackward0", amax_backward, NULL};
static const node_type AMIN_BW = {"AminBackward0", amax_backward, NULL};

static eng_err amax_op(tensor **out, tensor *a, const int64_t *dims, int ndims, bool keepdim,
                       bool mx)
{
    red_attr at = {0};
    eng_err e = reduce_dims_prepare(a, dims, ndims, keepdim, &at.p);
    if (e) return e;
    /* amax names an empty reduced dim as the caller gave it (dim -1), unlike max's dim. */
    for (int k = 0; k < ndims; k++) {
        int d = 0;
        if (!wrap_dim(dims[k], a->ndim, &d) && a->ndim > 0 && a->shape[d] == 0)
            return err_set(E_SHAPE, "%s(): Expected reduction dim %lld to have non-zero size.",
                           mx ? "amax" : "amin", (long long)dims[k]);
    }
    if ((e = check_nonempty(mx ? "amax" : "amin", a, &at.p, true))) return e;
    tensor *r;
    if ((e = extreme_raw(&r, NULL, a, &at.p, mx ? RK_MAX : RK_MIN))) return e;
    return finish(out, r, a, mx ? &AMAX_BW : &AMIN_BW, true, true, &at);
}

eng_err op_amax(tensor **out, tensor *a, const int64_t *dims, int ndims, bool keepdim)
{
    return amax_op(out, a, dims, ndims, keepdim, true);
}

eng_err op_amin(tensor **out, tensor *a, const int64_t *dims, int ndims, bool keepdim)
{
    return amax_op(out, a, dims, ndims, keepdim, false);
}

/* ---- var / std ---- */
/* (Loop names carry rx_: clang makes target_clones resolvers global symbols, so a static loop
 * named like one in another file would clash at link time.) */
EW_BINARY_LOOP(rx_sqdev_f64, double, double, (x - y) * (x - y))
EW_UNARY_LOOP(rx_var_f32, float, double, (float)(x / P[0]))
EW_UNARY_LOOP(rx_var_f64, double, double, x / P[0])
EW_UNARY_LOOP(rx_std_f32, float, double, (float)sqrt(x / P[0]))
EW_UNARY_LOOP(rx_std_f64, double, double, sqrt(x / P[0]))

/* Two passes in float64 (float32 inputs too, as PyTorch accumulates them in double): the
 * mean, then the sum of squared deviations, divided by max(0, N - correction). */
static eng_err var_raw(tensor **out, tensor *a, const reduce_plan *p, int64_t correction,
                       bool take_sqrt)
{
    tensor *t[5] = {NULL, NULL, NULL, NULL, NULL}; /* x64, sum, mean (keepdim), sq dev, ss */
    eng_err e;
    if ((e = cast_raw(&t[0], a, DT_F64)) || (e = sum_raw(&t[1], t[0], p))) goto done;
    double *s = tensor_data(t[1]);
    for (int64_t i = 0; i < t[1]->numel; i++) s[i] /= (double)p->count; /* 0/0: NaN */
    if ((e = keep_dims(&t[2], t[1], p))) goto done;
    tensor *ins[2] = {t[0], t[2]};
    if (t[0] != a) { /* a private float64 copy: square the deviations in place */
        tensor_retain(t[0]);
        t[3] = t[0];
        e = ew_map_into(t[3], DT_F64, ins, 2, rx_sqdev_f64, NULL, PAR_GRAIN_CHEAP);
    } else {
        e = ew_map(&t[3], DT_F64, DT_F64, ins, 2, rx_sqdev_f64, NULL, 0, PAR_GRAIN_CHEAP);
    }
    if (e || (e = sum_raw(&t[4], t[3], p))) goto done;
    double dof = (double)p->count - (double)correction; /* (in double: any correction) */
    if (dof < 0) dof = 0;
    iter_loop loop = a->dtype == DT_F32 ? (take_sqrt ? rx_std_f32 : rx_var_f32)
                                        : (take_sqrt ? rx_std_f64 : rx_var_f64);
    e = ew_map(out, (dtype)a->dtype, DT_F64, &t[4], 1, loop, &dof, 1, PAR_GRAIN_CHEAP);
done:
    release_all(t, 5);
    return e;
}

/* var_backward: (2 / dof) * grad * (x - mean(x)), reduced dims restored. dof <= 0 gives
 * infinite or negative factors, as in PyTorch 1.13 (whose full reduction fails outright
 * when dof == 0; this gives the values of its per-dim formula there). */
static eng_err var_grad(tensor **out, tensor *g, tensor *x, const red_attr *at)
{
    const reduce_plan *p = &at->p;
    double dof = (double)p->count - (double)at->correction;
    /* A 0-d input with no degree of freedom left: PyTorch's var_backward gives inf * grad
     * there, without the factor x - mean (0), which would make it NaN. (A larger input with
     * dof 0 takes the general formula in PyTorch too: NaN.) */
    if (x->ndim == 0 && dof == 0) return op_mul_scalar(out, g, INFINITY);
    int64_t dims[MAX_DIMS];
    int nd = plan_dims(p, dims);
    tensor *t[4] = {NULL, NULL, NULL, NULL}; /* mean, grad (keepdim), scaled grad, x - mean */
    eng_err e;
    if (!(e = op_mean_dims(&t[0], x, dims, nd, true)) && !(e = keep_dims(&t[1], g, p)) &&
        !(e = op_mul_scalar(&t[2], t[1], 2.0 / dof)) && !(e = op_sub(&t[3], x, t[0])))
        e = op_mul(out, t[2], t[3]);
    release_all(t, 4);
    return e;
}

static eng_err var_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    if (!c->needed[0]) return E_OK;
    tensor *x;
    eng_err e = saved_get(n, c, 0, &x);
    return e ? e : var_grad(&gout[0], gin[0], x, (const red_attr *)node_attrs(n));
}

/* std_backward: var_backward of grad / (2 std), taken as 0 where std is 0. */
static eng_err std_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    if (!c->needed[0]) return E_OK;
    tensor *x, *r, *t[4] = {NULL, NULL, NULL, NULL};
    eng_err e;
    if ((e = saved_get(n, c, 0, &x)) || (e = saved_get(n, c, 1, &r))) return e;
    if (!(e = op_mul_scalar(&t[0], r, 2.0)) && !(e = op_div(&t[1], gin[0], t[0])) &&
        !(e = op_compare_scalar(&t[2], r, 0.0, CMP_EQ)) &&
        !(e = op_masked_fill_kept(&t[3], t[1], t[2], 0.0)))
        e = var_grad(&gout[0], t[3], x, (const red_attr *)node_attrs(n));
    release_all(t, 4);
    return e;
}
static const node_type VAR_BW = {"VarBackward0", var_backward, NULL};
static const node_type STD_BW = {"StdBackward0", std_backward, NULL};

static eng_err var_op(tensor **out, tensor *a, const int64_t *dims, int ndims, int64_t correction,
                      bool keepdim, bool take_sqrt)
{
    if (!dtype_is_float((dtype)a->dtype))
        return err_set(E_DTYPE, "std and var only support floating point dtypes, got %s",
                       dtype_name((dtype)a->dtype));
    red_attr at = {0};
    at.correction = correction;
    eng_err e = reduce_dims_prepare(a, dims, ndims, keepdim, &at.p);
    if (e) return e;
    tensor *r;
    if ((e = var_raw(&r, a, &at.p, correction, take_sqrt))) return e;
    return finish(out, r, a, take_sqrt ? &STD_BW : &VAR_BW, true, take_sqrt, &at);
}

eng_err op_var(tensor **out, tensor *a, const int64_t *dims, int ndims, int64_t correction,
               bool keepdim)
{
    return var_op(out, a, dims, ndims, correction, keepdim, false);
}

eng_err op_std(tensor **out, tensor *a, const int64_t *dims, int ndims, int64_t correction,
               bool keepdim)
{
    return var_op(out, a, dims, ndims, correction, keepdim, true);
}

/* ---- logsumexp ---- */
EW_BINARY_LOOP(rx_expsub_f32, float, float, vm_expf(x - y))
EW_BINARY_LOOP(rx_expsub_f64, double, double, exp(x - y))
EW_BINARY_LOOP(rx_logadd_f32, float, float, logf(x) + y)
EW_BINARY_LOOP(rx_logadd_f64, double, double, log(x) + y)

/* log(sum(exp(x - m))) + m with m = amax(x), and m taken as 0 where it is infinite (as
 * PyTorch: all -inf gives -inf, any +inf gives +inf, NaN propagates). */
static eng_err logsumexp_raw(tensor **out, tensor *a, const reduce_plan *p)
{
    dtype dt = (dtype)a->dtype;
    tensor *t[4] = {NULL, NULL, NULL, NULL}; /* max, max (keepdim), exp(x - max), sum */
    t[0] = tensor_new(dt, p->out_shape, p->out_ndim);
    if (!t[0]) return err_kind();
    eng_err e = E_OK;
    int64_t m = t[0]->numel;
    if (p->count == 0) memset(tensor_data(t[0]), 0, (size_t)m * dtype_size(dt));
    else e = reduce_kernel(t[0], NULL, a, p->mask, RK_MAX);
    for (int64_t i = 0; i < m && !e; i++) {
        if (dt == DT_F32) {
            float *v = (float *)tensor_data(t[0]) + i;
            if (isinf(*v)) *v = 0;
        } else {
            double *v = (double *)tensor_data(t[0]) + i;
            if (isinf(*v)) *v = 0;
        }
    }
    static const loop_pair es = {rx_expsub_f32, rx_expsub_f64},
                           la = {rx_logadd_f32, rx_logadd_f64};
    if (!e && !(e = keep_dims(&t[1], t[0], p))) {
        tensor *ins[2] = {a, t[1]};
        if (!(e = ew_map(&t[2], dt, dt, ins, 2, pick(&es, dt), NULL, 0, PAR_GRAIN_COSTLY)) &&
            !(e = sum_raw(&t[3], t[2], p))) {
            tensor *fin[2] = {t[3], t[0]};
            e = ew_map(out, dt, dt, fin, 2, pick(&la, dt), NULL, 0, PAR_GRAIN_COSTLY);
        }
    }
    release_all(t, 4);
    return e;
}

/* logsumexp_backward: grad * exp(x - result), reduced dims restored. */
static eng_err logsumexp_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    if (!c->needed[0]) return E_OK;
    const reduce_plan *p = &((const red_attr *)node_attrs(n))->p;
    tensor *x, *r, *t[4] = {NULL, NULL, NULL, NULL};
    eng_err e;
    if ((e = saved_get(n, c, 0, &x)) || (e = saved_get(n, c, 1, &r))) return e;
    if (!(e = keep_dims(&t[0], gin[0], p)) && !(e = keep_dims(&t[1], r, p)) &&
        !(e = op_sub(&t[2], x, t[1])) && !(e = op_exp(&t[3], t[2])))
        e = op_mul(&gout[0], t[0], t[3]);
    release_all(t, 4);
    return e;
}
static const node_type LSE_BW = {"LogsumexpBackward0", logsumexp_backward, NULL};

eng_err op_logsumexp(tensor **out, tensor *a, const int64_t *dims, int ndims, bool keepdim)
{
    red_attr at = {0};
    eng_err e = reduce_dims_prepare(a, dims, ndims, keepdim, &at.p);
    if (e) return e;
    if (!dtype_is_float((dtype)a->dtype)) {
        /* Integers and bools reduce in the default float dtype, as PyTorch's logsumexp
         * (which mean, var, std and norm refuse); such a tensor never requires grad. */
        tensor *f = NULL, *r = NULL;
        if (!(e = op_to_dtype(&f, a, DT_F32))) e = logsumexp_raw(&r, f, &at.p);
        tensor_release(f);
        if (!e) *out = r;
        return e;
    }
    tensor *r;
    if ((e = logsumexp_raw(&r, a, &at.p))) return e;
    return finish(out, r, a, &LSE_BW, true, true, &at);
}

/* ---- norm ---- */
EW_UNARY_LOOP(rx_nz_f32, float, float, (float)(x != 0))
EW_UNARY_LOOP(rx_nz_f64, double, double, (double)(x != 0))
EW_UNARY_LOOP(rx_abs_f32, float, float, fabsf(x))
EW_UNARY_LOOP(rx_abs_f64, double, double, fabs(x))
EW_UNARY_LOOP(rx_sq_f32, float, float, x *x)
EW_UNARY_LOOP(rx_sq_f64, double, double, x *x)
EW_UNARY_LOOP(rx_powabs_f32, float, float, powf(fabsf(x), (float)P[0]))
EW_UNARY_LOOP(rx_powabs_f64, double, double, pow(fabs(x), P[0]))
EW_UNARY_LOOP(rx_sqrt_f32, float, float, sqrtf(x))
EW_UNARY_LOOP(rx_sqrt_f64, double, double, sqrt(x))
EW_UNARY_LOOP(rx_root_f32, float, float, powf(x, 1.0f / (float)P[0]))
EW_UNARY_LOOP(rx_root_f64, double, double, pow(x, 1.0 / P[0]))

/* p = 0: count of nonzeros; 1: sum |x|; 2: sqrt(sum x^2); +-inf: max/min |x|; otherwise
 * (sum |x|^p)^(1/p). Each a map, a reduction and a finishing map, in the input's dtype. */
static eng_err norm_raw(tensor **out, tensor *a, double ord, const reduce_plan *p)
{
    static const loop_pair nz = {rx_nz_f32, rx_nz_f64}, ab = {rx_abs_f32, rx_abs_f64},
                           sq = {rx_sq_f32, rx_sq_f64}, pa = {rx_powabs_f32, rx_powabs_f64},
                           sr = {rx_sqrt_f32, rx_sqrt_f64}, rt = {rx_root_f32, rx_root_f64};
    dtype dt = (dtype)a->dtype;
    bool inf = isinf(ord);
    const loop_pair *map = ord == 0 ? &nz : ord == 1 || inf ? &ab : ord == 2 ? &sq : &pa;
    const loop_pair *fin = ord == 2 ? &sr : ord == 0 || ord == 1 || inf ? NULL : &rt;
    if (p->count == 0) fin = NULL; /* the norm of nothing is 0, whatever p */
    tensor *m = NULL, *s = NULL;
    eng_err e = ew_map(&m, dt, dt, &a, 1, pick(map, dt), &ord, 1,
                       map == &pa ? PAR_GRAIN_COSTLY : PAR_GRAIN_CHEAP);
    if (e) return e;
    if (!inf || p->count == 0) {
        e = sum_raw(&s, m, p);
    } else {
        s = tensor_new(dt, p->out_shape, p->out_ndim);
        e = s ? reduce_kernel(s, NULL, m, p->mask, ord > 0 ? RK_MAX : RK_MIN) : err_kind();
    }
    tensor_release(m);
    if (!e && fin) {
        e = ew_map(out, dt, dt, &s, 1, pick(fin, dt), &ord, 1, PAR_GRAIN_COSTLY);
        tensor_release(s);
    } else if (!e) {
        *out = s;
    } else {
        tensor_release(s);
    }
    return e;
}

/* norm_backward (PyTorch 1.13), with grad and norm given the reduced dims back; its
 * masked_fill_ calls (in place, so the layout stays) are op_masked_fill_kept. */
static eng_err norm_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    const red_attr *at = (const red_attr *)node_attrs(n);
    const reduce_plan *p = &at->p;
    double ord = at->ord;
    if (!c->needed[0]) return E_OK;
    tensor *x, *r, *t[10] = {NULL};
    eng_err e;
    /* (read first for every p, as PyTorch unpacks self and result: changing either in place
     * is an error even for p = 0, whose gradient is undefined, a count having none) */
    if ((e = saved_get(n, c, 0, &x)) || (e = saved_get(n, c, 1, &r)) || ord == 0 ||
        (e = keep_dims(&t[0], gin[0], p)) || (e = keep_dims(&t[1], r, p)))
        goto done;
    tensor *g = t[0], *nm = t[1];
    if (ord == 1) {
        /* sgn(x) * grad */
        if (!(e = op_sgn(&t[2], x))) e = op_mul(&gout[0], t[2], g);
    } else if (ord == 2) {
        /* grad * (x / norm), 0 where the norm is 0 */
        if (!(e = op_div(&t[2], x, nm)) && !(e = op_compare_scalar(&t[3], nm, 0.0, CMP_EQ)) &&
            !(e = op_masked_fill_kept(&t[4], t[2], t[3], 0.0)))
            e = op_mul(&gout[0], g, t[4]);
    } else if (isinf(ord)) {
        /* sgn(x) * (grad / count) * mask, mask = (|x| == norm) or |x| is NaN */
        int64_t dims[MAX_DIMS];
        int nd = plan_dims(p, dims);
        if (!(e = op_abs(&t[2], x)) && !(e = op_compare(&t[3], t[2], nm, CMP_EQ)) &&
            !(e = op_compare(&t[4], t[2], t[2], CMP_NE)) && !(e = op_add(&t[5], t[3], t[4])) &&
            !(e = op_sum_dims(&t[6], t[5], dims, nd, true)) && !(e = op_div(&t[7], g, t[6])) &&
            !(e = op_mul(&t[8], t[7], t[5])) && !(e = op_sgn(&t[9], x)))
            e = op_mul(&gout[0], t[9], t[8]);
    } else if (ord < 1) {
        /* sgn(x) * |x|^(p-1) (0 where x is 0) * grad * norm^(1-p) */
        if (!(e = op_abs(&t[2], x)) && !(e = op_pow_scalar(&t[3], t[2], ord - 1)) &&
            !(e = op_compare_scalar(&t[4], x, 0.0, CMP_EQ)) &&
            !(e = op_masked_fill_kept(&t[5], t[3], t[4], 0.0)) && !(e = op_sgn(&t[6], x)) &&
            !(e = op_mul(&t[7], t[6], t[5])) && !(e = op_mul(&t[8], t[7], g)) &&
            !(e = op_pow_scalar(&t[9], nm, 1 - ord)))
            e = op_mul(&gout[0], t[8], t[9]);
    } else {
        /* x_scaled * grad / norm^(p-1) (0 where the norm is 0); x_scaled is
         * sgn(x) * |x|^(p-1) for p < 2 and x * |x|^(p-2) above */
        bool lo = ord < 2;
        if (lo) {
            e = op_sgn(&t[4], x);
        } else {
            tensor_retain(x);
            t[4] = x;
        }
        if (!e && !(e = op_abs(&t[2], x)) &&
            !(e = op_pow_scalar(&t[3], t[2], lo ? ord - 1 : ord - 2)) &&
            !(e = op_mul(&t[5], t[4], t[3])) && !(e = op_pow_scalar(&t[6], nm, ord - 1)) &&
            !(e = op_div(&t[7], g, t[6])) && !(e = op_compare_scalar(&t[8], nm, 0.0, CMP_EQ)) &&
            !(e = op_masked_fill_kept(&t[9], t[7], t[8], 0.0)))
            e = op_mul(&gout[0], t[5], t[9]);
    }
done:
    release_all(t, 10);
    return e;
}
static const node_type NORM_BW = {"NormBackward1", norm_backward, NULL};

eng_err op_norm(tensor **out, tensor *a, double p, const int64_t *dims, int ndims, bool keepdim)
{
    if (!dtype_is_float((dtype)a->dtype))
        return err_set(E_DTYPE, "norm(): input dtype should be either floating point or complex. "
                       "Got %s instead.", dtype_name((dtype)a->dtype));
    red_attr at = {0};
    at.ord = p;
    eng_err e = reduce_dims_prepare(a, dims, ndims, keepdim, &at.p);
    if (e) return e;
    tensor *r;
    if ((e = norm_raw(&r, a, p, &at.p))) return e;
    return finish(out, r, a, &NORM_BW, true, true, &at);
}

/* ---- argmax / argmin (never recorded) ---- */
static eng_err arg_op(tensor **out, tensor *a, const int64_t *dim, bool keepdim, bool mx)
{
    const char *name = mx ? "argmax" : "argmin";
    if (a->dtype == DT_BOOL)
        return err_set(E_DTYPE, "%s is not implemented for bool tensors", name);
    reduce_plan p;
    eng_err e = reduce_dims_prepare(a, dim, dim ? 1 : 0, keepdim, &p);
    if (e || (e = check_nonempty(name, a, &p, false))) return e;
    return extreme_raw(NULL, out, a, &p, mx ? RK_ARGMAX : RK_ARGMIN);
}

eng_err op_argmax(tensor **out, tensor *a, int64_t dim, bool keepdim)
{
    return arg_op(out, a, &dim, keepdim, true);
}

eng_err op_argmin(tensor **out, tensor *a, int64_t dim, bool keepdim)
{
    return arg_op(out, a, &dim, keepdim, false);
}

eng_err op_argmax_all(tensor **out, tensor *a) { return arg_op(out, a, NULL, false, true); }
eng_err op_argmin_all(tensor **out, tensor *a) { return arg_op(out, a, NULL, false, false); }
