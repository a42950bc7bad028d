/*
 * loss.c: cross_entropy, nll_loss, mse_loss and binary_cross_entropy_with_logits.
 * cross_entropy (without label smoothing) is one fused node: a log-sum-exp pass forward that
 * keeps the log_softmax (what PyTorch's graph saves), and a softmax-minus-one-hot pass
 * backward, named NllLossBackward0 as PyTorch's top node is.
 * Under create_graph every backward formula is a composition of ordinary ops instead.
 */
#include <string.h>

#include "nn_common.h"
#include "reduce_common.h"

/* ---- class-index losses: checks and per-row targets ---- */
/* The input's geometry, kept in the nodes (the gradient is shaped like the input). */
typedef struct xgeom {
    dtype dt;
    int ndim;
    int64_t shape[MAX_DIMS];
} xgeom;

static xgeom geom_of(const tensor *t)
{
    xgeom g = {(dtype)t->dtype, t->ndim, {0}};
    memcpy(g.shape, t->shape, (size_t)t->ndim * sizeof(int64_t));
    return g;
}

/* The input as [outer, C, inner] around its class dim (0 for a [C] input, else 1): row r is
 * element r of the flattened target. */
typedef struct nll_plan {
    lay L;
    int cdim;
    int64_t rows;
    int64_t *cls;  /* the row's class; -1 when ignored */
    double *coef;  /* weight[class] (1 without weight); 0 when ignored */
    double total;  /* sum of coef: the mean's divisor */
} nll_plan;

static void plan_free(nll_plan *p)
{
    mem_free(p->cls);
    mem_free(p->coef);
}

/* Shape and dtype checks as PyTorch's nll_loss_nd, in its order. An input of 3 or more dims
 * goes through nll_loss2d there (4-d as it is, others viewed as [N, C, 1, -1]), whose checks
 * and messages differ. */
static eng_err nll_check(const tensor *input, const tensor *target, const tensor *weight)
{
    char b1[160], b2[160];
    bool spatial = input->ndim >= 3;
    if (!dtype_is_float((dtype)input->dtype))
        return err_set(E_DTYPE, "\"%s\" not implemented for '%s'",
                       spatial ? "nll_loss2d_forward_out_frame" : "nll_loss_out_frame",
                       torch_scalar_name((dtype)input->dtype));
    if (input->ndim < 1) return err_set(E_SHAPE, "Expected 1 or more dimensions (got 0)");
    if (input->ndim != 1 && (target->ndim == 0 || input->shape[0] != target->shape[0]))
        return err_set(E_SHAPE, "Expected input batch_size (%lld) to match target batch_size "
                       "(%lld).", (long long)input->shape[0],
                       (long long)(target->ndim ? target->shape[0] : 0));
    if (input->ndim <= 2) {
        if (target->ndim > 1)
            return err_set(E_SHAPE, "0D or 1D target tensor expected, multi-target not supported");
        if (input->ndim == 1 && target->ndim != 0)
            return err_set(E_SHAPE, "size mismatch (got input: %s, target: %s)",
                           fmt_shape(b1, sizeof b1, input->shape, input->ndim),
                           fmt_shape(b2, sizeof b2, target->shape, target->ndim));
    } else if (input->ndim == 4) {
        if (target->ndim != 3)
            return err_set(E_SHAPE, "only batches of spatial targets supported (3D tensors) but "
                           "got targets of dimension: %d", target->ndim);
        if (weight && weight->numel != input->shape[1])
            return err_set(E_SHAPE, "weight tensor should be defined either for all or no "
                           "classes");
        if (target->shape[1] != input->shape[2] || target->shape[2] != input->shape[3])
            return err_set(E_SHAPE, "size mismatch (got input: %s , target: %s",
                           fmt_shape(b1, sizeof b1, input->shape, input->ndim),
                           fmt_shape(b2, sizeof b2, target->shape, target->ndim));
    } else {
        int64_t want[MAX_DIMS];
        want[0] = input->shape[0];
        memcpy(want + 1, input->shape + 2, (size_t)(input->ndim - 2) * sizeof *want);
        bool same = target->ndim == input->ndim - 1;
        for (int k = 0; same && k < target->ndim; k++) same = target->shape[k] == want[k];
        if (!same)
            return err_set(E_SHAPE, "Expected target size %s, got %s",
                           fmt_shape(b1, sizeof b1, want, input->ndim - 1),
                           fmt_shape(b2, sizeof b2, target->shape, target->ndim));
    }
    if (target->dtype != DT_I64)
        return err_set(E_DTYPE, "expected scalar type Long but found %s",
                       torch_scalar_name((dtype)target->dtype));
    if (weight) {
        int64_t C = input->shape[input->ndim == 1 ? 0 : 1];
        if (spatial && weight->numel != C) /* nll_loss2d: any shape of C elements */
            return err_set(E_SHAPE, "weight tensor should be defined either for all or no "
                           "classes");
        if (!spatial && (weight->ndim != 1 || weight->numel != C))
            return err_set(E_SHAPE, "weight tensor should be defined either for all %lld classes "
                           "or no classes but got weight tensor of shape: %s", (long long)C,
                           fmt_shape(b1, sizeof b1, weight->shape, weight->ndim));
        if (weight->dtype != input->dtype)
            return err_set(E_DTYPE, "expected scalar type %s but found %s",
                           torch_scalar_name((dtype)input->dtype),
                           torch_scalar_name((dtype)weight->dtype));
        if (grad_mode_enabled() && tensor_requires_grad((tensor *)weight))
            return err_set(E_INVAL, "The function 'nll_loss_forward' is not differentiable with "
                           "respect to argument 'weight'. This input cannot have requires_grad "
                           "True.");
    }
    return E_OK;
}

/* Each row's class and weight; E_RANGE for a target outside [0, C) that is not ignored. */
static eng_err plan_build(nll_plan *p, const xgeom *x, tensor *target, tensor *weight,
                          int64_t ignore)
{
    memset(p, 0, sizeof *p);
    p->cdim = x->ndim == 1 ? 0 : 1;
    p->L.outer = x->ndim == 1 ? 1 : x->shape[0];
    p->L.n = x->shape[p->cdim];
    p->L.inner = 1;
    for (int k = 2; k < x->ndim; k++) p->L.inner *= x->shape[k];
    p->rows = target->numel;
    tensor *tc = NULL, *wc = NULL;
    eng_err e;
    if ((e = contig_raw(&tc, target, DT_I64)) || (weight && (e = contig_raw(&wc, weight, DT_F64))))
        goto done;
    size_t m = (size_t)(p->rows ? p->rows : 1);
    if (!(p->cls = mem_alloc(m * sizeof *p->cls)) || !(p->coef = mem_alloc(m * sizeof *p->coef))) {
        e = err_nomem();
        goto done;
    }
    const int64_t *t = tensor_data(tc);
    const double *w = wc ? tensor_data(wc) : NULL;
    for (int64_t r = 0; r < p->rows; r++) {
        if (t[r] == ignore) {
            p->cls[r] = -1;
            p->coef[r] = 0;
            continue;
        }
        if (t[r] < 0 || t[r] >= p->L.n) {
            e = err_set(E_RANGE, "Target %lld is out of bounds.", (long long)t[r]);
            goto done;
        }
        p->cls[r] = t[r];
        p->coef[r] = w ? w[t[r]] : 1.0;
        p->total += p->coef[r];
    }
done:
    tensor_release(tc);
    tensor_release(wc);
    if (e) plan_free(p);
    return e;
}

/* Multiplies each kept row's coefficient by its loss's incoming gradient (g NULL: 1), divided
 * by the total for mean. Ignored rows stay 0, as PyTorch never writes them. */
static eng_err scale_coefs(nll_plan *p, tensor *g, int reduction)
{
    if (g && reduction == RED_NONE) {
        tensor *gc = NULL;
        eng_err e = contig_raw(&gc, g, DT_F64);
        if (e) return e;
        const double *gd = tensor_data(gc);
        for (int64_t r = 0; r < p->rows; r++)
            if (p->cls[r] >= 0) p->coef[r] *= gd[r];
        tensor_release(gc);
        return E_OK;
    }
    double s = g ? tensor_get_f64(g, 0) : 1.0;
    if (reduction == RED_MEAN) s /= p->total;
    for (int64_t r = 0; r < p->rows; r++)
        if (p->cls[r] >= 0) p->coef[r] *= s;
    return E_OK;
}

/* The loss from per-row losses: as they are (none, shaped like the target), summed, or
 * summed and divided by the total weight (mean; NaN when every target is ignored). */
static eng_err reduce_rows(tensor **out, const double *loss, const nll_plan *p, int reduction,
                           const tensor *target, dtype dt)
{
    tensor *r = reduction == RED_NONE ? tensor_new(dt, target->shape, target->ndim)
                                      : tensor_new(dt, NULL, 0);
    if (!r) return err_kind();
    if (reduction == RED_NONE) {
        for (int64_t i = 0; i < p->rows; i++) {
            if (dt == DT_F32) ((float *)tensor_data(r))[i] = (float)loss[i];
            else ((double *)tensor_data(r))[i] = loss[i];
        }
    } else {
        double s = 0;
        for (int64_t i = 0; i < p->rows; i++) s += loss[i];
        if (reduction == RED_MEAN) s /= p->total;
        if (dt == DT_F32) *(float *)tensor_data(r) = (float)s;
        else *(double *)tensor_data(r) = s;
    }
    *out = r;
    return E_OK;
}

/* x-shaped constant holding v[r] (1 when v is NULL) at each kept row's target, 0 elsewhere. */
static eng_err rows_onehot(tensor **out, const xgeom *x, const nll_plan *p, const double *v)
{
    tensor *r = tensor_new(x->dt, x->shape, x->ndim);
    if (!r) return err_kind();
    memset(tensor_data(r), 0, (size_t)r->numel * dtype_size(x->dt));
    for (int64_t i = 0; i < p->rows; i++) {
        if (p->cls[i] < 0) continue;
        int64_t o = lay_row(&p->L, i) + p->cls[i] * p->L.inner;
        double val = v ? v[i] : 1.0;
        if (x->dt == DT_F32) ((float *)tensor_data(r))[o] = (float)val;
        else ((double *)tensor_data(r))[o] = val;
    }
    *out = r;
    return E_OK;
}

typedef struct nll_attr {
    int reduction;
    int64_t ignore;
    xgeom x;
} nll_attr;

/* ---- nll_loss ---- */
/* Slots: target, weight, input. The gradient, -weight[t] * g at each target (/ total for
 * mean), does not depend on the input, but under create_graph it is PyTorch's
 * nll_loss_backward(g, input, ...), a node with edges to g and to the input: its derivative in
 * g is nll_loss(gg, ...), in the input zeros (not none: a second gradient with respect to the
 * input is zeros where it was an error). */
enum { NLL_TARGET, NLL_WEIGHT, NLL_INPUT, NLL_NSAVED };

static eng_err nll_bb_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    const nll_attr *a = node_attrs(n);
    tensor *target, *weight;
    eng_err e;
    if ((e = saved_get(n, c, NLL_TARGET, &target)) || (e = saved_get(n, c, NLL_WEIGHT, &weight)))
        return e;
    if (c->needed[0] &&
        (e = op_nll_loss(&gout[0], gin[0], target, weight, a->reduction, a->ignore)))
        return e;
    if (c->needed[1]) e = op_full_like(&gout[1], gin[0], 0.0);
    return e;
}
static const node_type NLL_BB = {"NllLossBackwardBackward0", nll_bb_backward, NULL};
static const node_type NLL2D_BB = {"NllLoss2DBackwardBackward0", nll_bb_backward, NULL};

static eng_err nll_grad(tensor **out, tensor *g, tensor *input, tensor *target, tensor *weight,
                        const nll_attr *a)
{
    tensor *r = NULL;
    nll_plan p;
    eng_err e = plan_build(&p, &a->x, target, weight, a->ignore);
    if (e) return e;
    /* g scattered to the kept rows' targets, as PyTorch writes it: NaN or inf in g reaches
     * nothing else (a one-hot times g gave NaN at every other entry and ignored row) */
    if (!(e = scale_coefs(&p, g, a->reduction))) {
        for (int64_t k = 0; k < p.rows; k++) p.coef[k] = -p.coef[k];
        e = rows_onehot(&r, &a->x, &p, p.coef);
    }
    plan_free(&p);
    if (e) return e;
    if (input) {
        tensor *ins[2] = {g, input};
        node *n = record(a->x.ndim == 4 ? &NLL2D_BB : &NLL_BB, ins, 2, &r, 1, 2,
                         sizeof(nll_attr), &e);
        if (e) {
            tensor_release(r);
            return e;
        }
        if (n) {
            *(nll_attr *)node_attrs(n) = *a;
            node_save(n, NLL_TARGET, target);
            if (weight) node_save(n, NLL_WEIGHT, weight);
        }
    }
    *out = r;
    return E_OK;
}

static eng_err nll_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    if (!c->needed[0]) return E_OK;
    tensor *target, *weight, *input;
    eng_err e;
    if ((e = saved_get(n, c, NLL_TARGET, &target)) || (e = saved_get(n, c, NLL_WEIGHT, &weight)) ||
        (e = saved_get(n, c, NLL_INPUT, &input)))
        return e;
    return nll_grad(&gout[0], gin[0], c->create_graph ? input : NULL, target, weight,
                    node_attrs(n));
}
static const node_type NLL_BW = {"NllLossBackward0", nll_backward, NULL};
static const node_type NLL2D_BW = {"NllLoss2DBackward0", nll_backward, NULL};

/* PyTorch's nll_loss_nd for an input of 3 or more than 4 dims: the input made contiguous and
 * viewed as [N, C, 1, -1] ([N, C, 0, 0] when empty), the target as [N, 1, -1] ([N, 0, 0]),
 * the 4-d loss taken (NllLoss2DBackward0), and without reduction its [N, 1, -1] result viewed
 * as the target's shape (ViewBackward0). `core` is the loss on the views. */
typedef eng_err (*loss_core)(tensor **out, tensor *input, tensor *target, void *args);

static eng_err loss_nd(tensor **out, tensor *input, tensor *target, int reduction,
                       loss_core core, void *args)
{
    int64_t n = input->shape[0], xs[4] = {n, input->shape[1], 1, -1}, ts[3] = {n, 1, -1};
    if (input->numel == 0) xs[2] = xs[3] = 0;
    if (target->numel == 0) ts[1] = ts[2] = 0;
    tensor *xc = NULL, *xv = NULL, *tv = NULL, *r = NULL;
    eng_err e;
    if (!(e = op_contiguous(&xc, input)) && !(e = op_view(&xv, xc, xs, 4)) &&
        !(e = op_reshape(&tv, target, ts, 3)) && !(e = core(&r, xv, tv, args))) {
        if (reduction == RED_NONE) e = op_view(out, r, target->shape, target->ndim);
        else tensor_retain(*out = r);
    }
    tensor_release(xc);
    tensor_release(xv);
    tensor_release(tv);
    tensor_release(r);
    return e;
}

typedef struct nll_args {
    tensor *weight;
    int reduction;
    int64_t ignore;
} nll_args;

/* The loss on checked operands (an input of 1, 2 or 4 dims). */
static eng_err nll_core(tensor **out, tensor *input, tensor *target, void *args)
{
    const nll_args *ar = args;
    tensor *weight = ar->weight;
    int reduction = ar->reduction;
    int64_t ignore_index = ar->ignore;
    eng_err e;
    xgeom x = geom_of(input);
    nll_plan p;
    if ((e = plan_build(&p, &x, target, weight, ignore_index))) return e;
    tensor *xc = NULL, *r = NULL;
    double *loss = mem_alloc((size_t)(p.rows ? p.rows : 1) * sizeof *loss);
    if (!loss) {
        e = err_nomem();
        goto done;
    }
    if ((e = contig_raw(&xc, input, x.dt))) goto done;
    for (int64_t i = 0; i < p.rows; i++) {
        loss[i] = 0;
        if (p.cls[i] < 0) continue;
        int64_t o = lay_row(&p.L, i) + p.cls[i] * p.L.inner;
        double v = x.dt == DT_F32 ? ((const float *)tensor_data(xc))[o]
                                  : ((const double *)tensor_data(xc))[o];
        loss[i] = -v * p.coef[i];
    }
    if ((e = reduce_rows(&r, loss, &p, reduction, target, x.dt))) goto done;
    node *n = record(x.ndim == 4 ? &NLL2D_BW : &NLL_BW, &input, 1, &r, 1, NLL_NSAVED,
                     sizeof(nll_attr), &e);
    if (!e && n) {
        nll_attr *a = node_attrs(n);
        a->reduction = reduction;
        a->ignore = ignore_index;
        a->x = x;
        node_save(n, NLL_TARGET, target);
        if (weight) node_save(n, NLL_WEIGHT, weight);
        node_save(n, NLL_INPUT, input); /* as PyTorch's self: for create_graph (nll_grad) */
    }
done:
    mem_free(loss);
    tensor_release(xc);
    plan_free(&p);
    if (e) {
        tensor_release(r);
        return e;
    }
    *out = r;
    return E_OK;
}

eng_err op_nll_loss(tensor **out, tensor *input, tensor *target, tensor *weight, int reduction,
                    int64_t ignore_index)
{
    eng_err e = nll_check(input, target, weight);
    if (e) return e;
    nll_args a = {weight, reduction, ignore_index};
    if (input->ndim == 3 || input->ndim > 4)
        return loss_nd(out, input, target, reduction, nll_core, &a);
    return nll_core(out, input, target, &a);
}

/* ---- cross_entropy ---- */
/* PyTorch's cross_entropy is nll_loss(log_softmax(x)): its graph saves the log_softmax
 * (the output of LogSoftmaxBackward0, and nll_loss's input), the target and the weight, never
 * the logits, which may therefore change in place before backward. The fused node saves the
 * same: its log_softmax y (computed with the loss when the node is recorded), and takes its
 * gradient a * exp(y) - a * onehot(t) from it. */
typedef struct ce_ctx {
    const void *x;      /* forward: the logits; backward: y */
    void *lse;
    void *gx;
    void *y;            /* forward: where y goes (NULL: not recorded) */
    const int64_t *cls;
    const double *coef; /* forward: weights; backward: weights times the loss's gradient */
    double *loss;
    lay L;
} ce_ctx;

#define CE_KERNELS(S, T, EXP, LOG)                                                            \
    /* Per row: m = max(x), ls = log(sum(exp(x - m))), kept apart in lse[2r], lse[2r + 1] \
     * (row_lse); y = (x - m) - ls when wanted; loss = w[t] * (ls - (x[t] - m)). Short    \
     * last-dim rows go a group at a time (nn_common.h). */                                \
    EW_MULTIVERSION static void ce_fwd_##S(void *p, int64_t lo, int64_t hi)                \
    {                                                                                      \
        const ce_ctx *c = p;                                                               \
        int64_t n = c->L.n, st = c->L.inner;                                               \
        T *lse = c->lse;                                                                   \
        if (st == 1 && n <= NN_GROUP) {                                                    \
            T mx[NN_GROUP], buf[NN_GROUP];                                                 \
            for (int64_t g = lo, gr = nn_group_rows(n); g < hi; g += gr) {                 \
                int64_t rows = hi - g < gr ? hi - g : gr;                                  \
                rows_exp_##S((const T *)c->x + g * n, n, rows, mx, buf);                   \
                for (int64_t r = 0; r < rows; r++) {                                       \
                    T m = mx[r], ls = LOG(row_sum_##S(buf + r * n, n));                    \
                    lse[2 * (g + r)] = m;                                                  \
                    lse[2 * (g + r) + 1] = ls;                                             \
                    if (c->y) {                                                            \
                        const T *xr = (const T *)c->x + (g + r) * n;                       \
                        T *yr = (T *)c->y + (g + r) * n;                                   \
                        ROW_LOOP(n, 1, yr[k] = (xr[k] - m) - ls;);                         \
                    }                                                                      \
                }                                                                          \
            }                                                                              \
        } else {                                                                           \
            for (int64_t r = lo; r < hi; r++) {                                            \
                int64_t o = lay_row(&c->L, r);                                             \
                const T *x = (const T *)c->x + o;                                          \
                row_lse_##S(x, n, st, &lse[2 * r], &lse[2 * r + 1]);                       \
                if (c->y) {                                                                \
                    T *y = (T *)c->y + o, m = lse[2 * r], ls = lse[2 * r + 1];             \
                    ROW_LOOP(n, st, y[k * s_] = (x[k * s_] - m) - ls;);                    \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
        for (int64_t r = lo; r < hi; r++) {                                                \
            const T *x = (const T *)c->x + lay_row(&c->L, r);                              \
            if (c->cls[r] < 0) { /* ignored */                                             \
                c->loss[r] = 0;                                                            \
                continue;                                                                  \
            }                                                                              \
            T lp = (x[c->cls[r] * st] - lse[2 * r]) - lse[2 * r + 1]; /* log p[t] */       \
            c->loss[r] = -c->coef[r] * (double)lp;                                         \
        }                                                                                  \
    }                                                                                      \
    /* dx = a * exp(y) - a * onehot(t), a = w[t] times the loss's gradient (0 for ignored  \
     * rows, whatever the gradient) */                                                     \
    EW_MULTIVERSION static void ce_bwd_##S(void *p, int64_t lo, int64_t hi)                \
    {                                                                                      \
        const ce_ctx *c = p;                                                               \
        int64_t n = c->L.n, st = c->L.inner;                                               \
        if (st == 1) { /* the exps of the whole chunk in one vector loop */                \
            const T *y = c->x;                                                             \
            T *gx = c->gx;                                                                 \
            _Pragma("omp simd") for (int64_t j = lo * n; j < hi * n; j++) gx[j] = EXP(y[j]); \
        }                                                                                  \
        for (int64_t r = lo; r < hi; r++) {                                                \
            int64_t o = lay_row(&c->L, r);                                                 \
            const T *y = (const T *)c->x + o;                                              \
            T *gx = (T *)c->gx + o, a = (T)c->coef[r];                                     \
            if (st == 1) ROW_LOOP(n, 1, gx[k] *= a;);                                      \
            else ROW_LOOP(n, st, gx[k * s_] = a * EXP(y[k * s_]););                        \
            if (c->cls[r] >= 0) gx[c->cls[r] * st] -= a;                                   \
        }                                                                                  \
    }
CE_KERNELS(f32, float, nn_expf, logf)
CE_KERNELS(f64, double, exp, log)

enum { CE_Y, CE_TARGET, CE_WEIGHT, CE_NSAVED };

/* Under create_graph the gradient is PyTorch's composition, differentiable again: nll_loss's
 * (nll_grad) and then log_softmax's, g - exp(y) * sum(g) over the class dim, from a tensor
 * holding the saved y whose grad_fn is a LogSoftmaxBackward0 with the fused node's edge to
 * the logits (the node PyTorch's graph has there), saving y as its output. */
typedef struct lsm_attr {
    int64_t dim;
} lsm_attr;

static eng_err lsm_grad(tensor **out, tensor *g, tensor *y, int64_t dim)
{
    tensor *ey = NULL, *s = NULL, *t = NULL;
    eng_err e;
    if (!(e = op_exp(&ey, y)) && !(e = op_sum_dims(&s, g, &dim, 1, true)) &&
        !(e = op_mul(&t, ey, s)))
        e = op_sub(out, g, t);
    tensor_release(ey);
    tensor_release(s);
    tensor_release(t);
    return e;
}

static eng_err ce_lsm_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    if (!c->needed[0]) return E_OK;
    tensor *y;
    eng_err e = saved_get(n, c, 0, &y);
    if (e) return e;
    return lsm_grad(&gout[0], gin[0], y, ((const lsm_attr *)node_attrs(n))->dim);
}
static const node_type CE_LSM_BW = {"LogSoftmaxBackward0", ce_lsm_backward, NULL};

/* A tensor with y's values whose grad_fn is a LogSoftmaxBackward0 into ce's input edge. */
static eng_err ce_lsm_history(tensor **out, node *ce, tensor *y, int64_t dim)
{
    tensor *t = tensor_alias(y, y->shape, y->strides, y->ndim, y->offset);
    node *h = t ? node_new(&CE_LSM_BW, 1, 1, 1, y->ndim, sizeof(lsm_attr)) : NULL;
    if (!h) {
        tensor_release(t);
        return err_nomem();
    }
    ((lsm_attr *)node_attrs(h))->dim = dim;
    h->next[0] = ce->next[0];
    if (h->next[0].fn) node_retain(h->next[0].fn);
    node_set_output(h, 0, t);
    eng_err e = node_save_output(h, 0, t);
    node_release(h); /* t holds it */
    if (e) {
        tensor_release(t);
        return e;
    }
    *out = t;
    return E_OK;
}

static eng_err ce_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    if (!c->needed[0]) return E_OK;
    const nll_attr *a = node_attrs(n);
    tensor *y, *target, *weight;
    eng_err e;
    if ((e = saved_get(n, c, CE_Y, &y)) || (e = saved_get(n, c, CE_TARGET, &target)) ||
        (e = saved_get(n, c, CE_WEIGHT, &weight)))
        return e;
    if (c->create_graph) {
        tensor *yh = NULL, *gy = NULL;
        if (!(e = ce_lsm_history(&yh, n, y, a->x.ndim == 1 ? 0 : 1)) &&
            !(e = nll_grad(&gy, gin[0], yh, target, weight, a)))
            e = lsm_grad(&gout[0], gy, yh, a->x.ndim == 1 ? 0 : 1);
        tensor_release(yh);
        tensor_release(gy);
        return e;
    }
    nll_plan p;
    if ((e = plan_build(&p, &a->x, target, weight, a->ignore))) return e;
    tensor *r = NULL;
    if ((e = scale_coefs(&p, gin[0], a->reduction))) goto done;
    if (!(r = tensor_new(a->x.dt, a->x.shape, a->x.ndim))) {
        e = err_kind();
        goto done;
    }
    ce_ctx k = {tensor_data(y), NULL, tensor_data(r), NULL, p.cls, p.coef, NULL, p.L};
    par_for(p.rows, lay_grain(&p.L), a->x.dt == DT_F32 ? ce_bwd_f32 : ce_bwd_f64, &k);
    gout[0] = r;
done:
    plan_free(&p);
    return e;
}
static const node_type CE_BW = {"NllLossBackward0", ce_backward, NULL};
static const node_type CE2D_BW = {"NllLoss2DBackward0", ce_backward, NULL};

/* MaskedFillBackward0 (PyTorch fills ignored rows of the smoothing loss in place): the
 * rows whose `keep` is 0 become 0, and so does their gradient. */
EW_BINARY_LOOP(keep_f32, float, float, y != 0 ? x : 0.0f)
EW_BINARY_LOOP(keep_f64, double, double, y != 0 ? x : 0.0)

static eng_err keep_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    if (!c->needed[0]) return E_OK;
    tensor *keep, *drop = NULL;
    eng_err e = saved_get(n, c, 0, &keep);
    if (e) return e;
    /* grad.masked_fill(mask, 0), as PyTorch's: 0 even where grad is inf or NaN (a mean over
     * no kept row divides by 0), where grad * keep gave NaN */
    if (!(e = op_compare_scalar(&drop, keep, 0.0, CMP_EQ)))
        e = op_masked_fill(&gout[0], gin[0], drop, 0.0);
    tensor_release(drop);
    return e;
}
static const node_type KEEP_BW = {"MaskedFillBackward0", keep_backward, NULL};

static eng_err zero_ignored(tensor **out, tensor *s, const nll_plan *p)
{
    dtype dt = (dtype)s->dtype;
    tensor *keep = tensor_new(dt, s->shape, s->ndim), *r = NULL;
    if (!keep) return err_kind();
    for (int64_t i = 0; i < p->rows; i++) {
        if (dt == DT_F32) ((float *)tensor_data(keep))[i] = p->cls[i] >= 0;
        else ((double *)tensor_data(keep))[i] = p->cls[i] >= 0;
    }
    static const loop_pair lp = {keep_f32, keep_f64};
    tensor *ins[2] = {s, keep};
    eng_err e = ew_map(&r, dt, dt, ins, 2, pick(&lp, dt), NULL, 0, PAR_GRAIN_CHEAP);
    if (!e) {
        node *n = record(&KEEP_BW, &s, 1, &r, 1, 1, 0, &e);
        if (!e && n) node_save(n, 0, keep);
    }
    tensor_release(keep);
    if (e) {
        tensor_release(r);
        return e;
    }
    *out = r;
    return E_OK;
}

/* label_smoothing > 0, as PyTorch composes it (its top node is AddBackward0):
 * (1 - ls) * nll_loss(lsm) + ls / C * reduce(-sum_c(w_c * lsm_c), ignored rows 0),
 * the mean dividing by the same total weight as nll_loss. */
static eng_err ce_smooth(tensor **out, tensor *input, tensor *target, tensor *weight,
                         int reduction, int64_t ignore, double ls, const nll_plan *p)
{
    enum { LSM, NLL, WV, PROD, S, NS, M, RED, RET, A, B, NT };
    tensor *t[NT] = {0};
    int64_t cdim = p->cdim, wshape[MAX_DIMS];
    bool any_ignored = false;
    for (int64_t r = 0; r < p->rows; r++) any_ignored |= p->cls[r] < 0;
    eng_err e;
    if ((e = op_log_softmax(&t[LSM], input, cdim)) ||
        (e = op_nll_loss(&t[NLL], t[LSM], target, weight, reduction, ignore)))
        goto done;
    if (weight) {
        for (int k = 0; k < input->ndim; k++) wshape[k] = k == cdim ? p->L.n : 1;
        if ((e = op_reshape(&t[WV], weight, wshape, input->ndim)) ||
            (e = op_mul(&t[PROD], t[LSM], t[WV])))
            goto done;
    } else {
        tensor_retain(t[PROD] = t[LSM]);
    }
    if ((e = op_sum_dims(&t[S], t[PROD], &cdim, 1, false)) || (e = op_neg(&t[NS], t[S])))
        goto done;
    if (any_ignored) e = zero_ignored(&t[M], t[NS], p);
    else tensor_retain(t[M] = t[NS]);
    if (e) goto done;
    if (reduction == RED_NONE) {
        tensor_retain(t[RET] = t[M]);
    } else if (!(e = op_sum(&t[RED], t[M]))) {
        if (reduction == RED_MEAN) e = op_div_scalar(&t[RET], t[RED], p->total);
        else tensor_retain(t[RET] = t[RED]);
    }
    if (e) goto done;
    if (!(e = op_mul_scalar(&t[A], t[NLL], 1 - ls)) &&
        !(e = op_mul_scalar(&t[B], t[RET], ls / (double)p->L.n)))
        e = op_add(out, t[A], t[B]);
done:
    for (int k = 0; k < NT; k++) tensor_release(t[k]);
    return e;
}

/* nll_loss(log_softmax(x)) in one node, on checked operands (an input of 1, 2 or 4 dims). */
static eng_err ce_core(tensor **out, tensor *input, tensor *target, void *args)
{
    const nll_args *ar = args;
    tensor *weight = ar->weight;
    int reduction = ar->reduction;
    int64_t ignore_index = ar->ignore;
    eng_err e;
    xgeom x = geom_of(input);
    nll_plan p;
    if ((e = plan_build(&p, &x, target, weight, ignore_index))) return e;
    /* per row: max and log-sum-exp past it (ce_fwd) */
    void *lse = mem_alloc((size_t)(p.rows ? p.rows : 1) * 2 * dtype_size(x.dt));
    tensor *xc = NULL, *y = NULL, *r = NULL;
    double *loss = mem_alloc((size_t)(p.rows ? p.rows : 1) * sizeof *loss);
    if (!loss || !lse) {
        e = err_nomem();
        goto done;
    }
    if (should_record(&input, 1) && !(y = tensor_new(x.dt, x.shape, x.ndim))) {
        e = err_kind();
        goto done;
    }
    if ((e = contig_raw(&xc, input, x.dt))) goto done;
    ce_ctx k = {tensor_data(xc), lse, NULL, y ? tensor_data(y) : NULL, p.cls, p.coef, loss, p.L};
    par_for(p.rows, lay_grain(&p.L), x.dt == DT_F32 ? ce_fwd_f32 : ce_fwd_f64, &k);
    if ((e = reduce_rows(&r, loss, &p, reduction, target, x.dt))) goto done;
    node *n = record(x.ndim == 4 ? &CE2D_BW : &CE_BW, &input, 1, &r, 1, CE_NSAVED,
                     sizeof(nll_attr), &e);
    if (!e && n) {
        nll_attr *a = node_attrs(n);
        a->reduction = reduction;
        a->ignore = ignore_index;
        a->x = x;
        node_save(n, CE_Y, y); /* private: no in-place change can reach it */
        node_save(n, CE_TARGET, target);
        if (weight) node_save(n, CE_WEIGHT, weight);
    }
done:
    mem_free(loss);
    mem_free(lse);
    tensor_release(xc);
    tensor_release(y);
    plan_free(&p);
    if (e) {
        tensor_release(r);
        return e;
    }
    *out = r;
    return E_OK;
}

eng_err op_cross_entropy(tensor **out, tensor *input, tensor *target, tensor *weight,
                         int reduction, int64_t ignore_index, double label_smoothing)
{
    /* (NaN passes, as PyTorch's check lets it: it then acts as 0.) */
    if (label_smoothing < 0 || label_smoothing > 1)
        return err_set(E_INVAL, "label_smoothing must be between 0.0 and 1.0. Got: %g",
                       label_smoothing);
    eng_err e = nll_check(input, target, weight);
    if (e) return e;
    nll_args a = {weight, reduction, ignore_index};
    if (label_smoothing > 0) {
        /* PyTorch's composition on the input as it is (its nll_loss takes the views) */
        xgeom x = geom_of(input);
        nll_plan p;
        if ((e = plan_build(&p, &x, target, weight, ignore_index))) return e;
        e = ce_smooth(out, input, target, weight, reduction, ignore_index, label_smoothing, &p);
        plan_free(&p);
        return e;
    }
    /* PyTorch's nll_loss_nd views log_softmax(x), whose values are x's row by row */
    if (input->ndim == 3 || input->ndim > 4)
        return loss_nd(out, input, target, reduction, ce_core, &a);
    return ce_core(out, input, target, &a);
}

/* ---- reductions shared by mse and bce ---- */
typedef struct red_attr {
    int reduction;
    int64_t numel;
} red_attr;

/* loss itself (none), or its sum, or its mean (NaN when empty): consumes the reference. */
static eng_err reduce_loss(tensor **out, tensor *loss, int reduction)
{
    if (reduction == RED_NONE) {
        *out = loss;
        return E_OK;
    }
    reduce_plan p;
    tensor *s = NULL;
    eng_err e = reduce_dims_prepare(loss, NULL, 0, false, &p);
    if (!e) e = sum_raw(&s, loss, &p);
    if (!e && reduction == RED_MEAN) {
        if (s->dtype == DT_F32) *(float *)tensor_data(s) /= (float)loss->numel;
        else *(double *)tensor_data(s) /= (double)loss->numel;
    }
    tensor_release(loss);
    if (e) return e;
    *out = s;
    return E_OK;
}

/* ---- mse_loss ---- */
EW_BINARY_LOOP(sqdiff_f32, float, float, (x - y) * (x - y))
EW_BINARY_LOOP(sqdiff_f64, double, double, (x - y) * (x - y))

/* PyTorch's mse_backward kernel, alpha (x - y) z with alpha = P[0] in the dtype (z the
 * incoming gradient, often one value: a reduced loss's). */
#define MSE_BW_LOOP(S, T)                                                                  \
    EW_MULTIVERSION static void mse_bw_##S(char **d, const int64_t *s, int64_t n, void *ctx) \
    {                                                                                      \
        const T alpha = (T)((const double *)ctx)[0];                                       \
        const int64_t es = (int64_t)sizeof(T);                                             \
        if (s[0] == es && s[1] == es && s[2] == es && (s[3] == es || s[3] == 0)) {         \
            T *o = (T *)d[0];                                                              \
            const T *x = (const T *)d[1], *y = (const T *)d[2], *z = (const T *)d[3];      \
            if (s[3] == 0) {                                                               \
                const T z0 = z[0];                                                         \
                _Pragma("omp simd") for (int64_t i = 0; i < n; i++) o[i] =                 \
                    alpha * (x[i] - y[i]) * z0;                                            \
            } else {                                                                       \
                _Pragma("omp simd") for (int64_t i = 0; i < n; i++) o[i] =                 \
                    alpha * (x[i] - y[i]) * z[i];                                          \
            }                                                                              \
        } else {                                                                           \
            for (int64_t i = 0; i < n; i++)                                                \
                *(T *)(d[0] + i * s[0]) = alpha * (*(const T *)(d[1] + i * s[1]) -         \
                                                   *(const T *)(d[2] + i * s[2])) *        \
                                          *(const T *)(d[3] + i * s[3]);                   \
        }                                                                                  \
    }
MSE_BW_LOOP(f32, float)
MSE_BW_LOOP(f64, double)

/* mse's gradient is an op of its own, as PyTorch's mse_loss_backward(g, x, t): its kernel
 * (alpha (x - t) g, alpha = 2, / numel for the mean), a contiguous result of the operands'
 * broadcast shape (F.mse_loss expands them first; conform sums the gradient back to each
 * operand's shape), and under create_graph a node MseLossBackwardBackward0 whose formulas are
 * derivatives.yaml's: in g, the same op of the incoming G; in x, 2 G g (/ numel for the
 * mean); in t, its negation. The target's gradient is mse_loss_backward(g, t, x). */
static eng_err mse_bw_op(tensor **out, tensor *g, tensor *x, tensor *t, const red_attr *a);

static eng_err mse_bwbw_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    const red_attr *a = node_attrs(n);
    tensor *g, *x, *t, *k[3] = {0};
    eng_err e;
    if ((e = saved_get(n, c, 0, &g)) || (e = saved_get(n, c, 1, &x)) ||
        (e = saved_get(n, c, 2, &t)))
        return e;
    if (c->needed[0] && (e = mse_bw_op(&gout[0], gin[0], x, t, a))) return e;
    if ((c->needed[1] || c->needed[2]) && !(e = op_mul(&k[0], gin[0], g)) &&
        !(e = op_mul_scalar1(&k[1], k[0], 2.0))) {
        if (a->reduction == RED_MEAN) e = op_div_scalar1(&k[2], k[1], (double)a->numel);
        else tensor_retain(k[2] = k[1]);
        if (!e && c->needed[1]) tensor_retain(gout[1] = k[2]);
        if (!e && c->needed[2]) e = op_neg(&gout[2], k[2]);
    }
    for (int i = 0; i < 3; i++) tensor_release(k[i]);
    return e;
}
static const node_type MSE_BWBW = {"MseLossBackwardBackward0", mse_bwbw_backward, NULL};

static eng_err mse_bw_op(tensor **out, tensor *g, tensor *x, tensor *t, const red_attr *a)
{
    static const loop_pair lp = {mse_bw_f32, mse_bw_f64};
    dtype dt = dtype_promote((dtype)x->dtype, (dtype)t->dtype);
    int64_t shape[MAX_DIMS];
    int nd;
    eng_err e = broadcast_shapes(x->shape, x->ndim, t->shape, t->ndim, shape, &nd);
    if (e) return e;
    tensor *r = tensor_new(dt, shape, nd);
    if (!r) return err_kind();
    double norm = a->reduction == RED_MEAN ? 2.0 / (double)a->numel : 2.0;
    tensor *ins[3] = {x, t, g};
    if ((e = ew_map_into(r, dt, ins, 3, pick(&lp, dt), &norm, PAR_GRAIN_CHEAP))) {
        tensor_release(r);
        return e;
    }
    tensor *rins[3] = {g, x, t};
    node *n = record(&MSE_BWBW, rins, 3, &r, 1, 3, sizeof *a, &e);
    if (e) {
        tensor_release(r);
        return e;
    }
    if (n) {
        *(red_attr *)node_attrs(n) = *a;
        if (n->next[1].fn || n->next[2].fn) node_save(n, 0, g); /* (by the edges: see op_mul) */
        node_save(n, 1, x);
        node_save(n, 2, t);
    }
    *out = r;
    return E_OK;
}

static eng_err mse_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    const red_attr *a = node_attrs(n);
    tensor *x, *t;
    eng_err e;
    if ((e = saved_get(n, c, 0, &x)) || (e = saved_get(n, c, 1, &t))) return e;
    if (c->needed[0] && (e = mse_bw_op(&gout[0], gin[0], x, t, a))) return e;
    if (c->needed[1]) e = mse_bw_op(&gout[1], gin[0], t, x, a);
    return e;
}
static const node_type MSE_BW = {"MseLossBackward0", mse_backward, NULL};

/* F.mse_loss broadcasts its operands (torch.broadcast_tensors) before the op's
 * TensorIterator converts one of another dtype with .to(): the copy that then lays out the
 * result is that of the expanded operand, which is not dense where it was broadcast (see
 * ew_layout_operand): an int64 input [1, 2, 1] with a transposed float target [2, 2] gives
 * contiguous [1, 2, 2], where the target's order wins without the expansion. view[k] is the
 * expanded view of an operand of another dtype and another shape (a header over its storage,
 * op_expand's geometry: ew_map then converts and lays out as PyTorch does), else NULL. */
static eng_err mse_expand_converted(tensor **view, tensor *const *ins, dtype dt)
{
    if (ins[0]->dtype == dt && ins[1]->dtype == dt) return E_OK;
    int64_t shape[MAX_DIMS], sh[MAX_DIMS], st[MAX_DIMS];
    int nd;
    eng_err e = broadcast_shapes(ins[0]->shape, ins[0]->ndim, ins[1]->shape, ins[1]->ndim,
                                 shape, &nd);
    if (e) return e;
    for (int k = 0; k < 2; k++) {
        const tensor *t = ins[k];
        if (t->dtype == dt ||
            (t->ndim == nd && !memcmp(t->shape, shape, (size_t)nd * sizeof *shape)))
            continue;
        if ((e = expand_geometry(t, shape, nd, sh, st)) ||
            !(view[k] = tensor_alias(t, sh, st, nd, t->offset))) {
            tensor_release(view[0]);
            view[0] = NULL;
            return e ? e : err_kind();
        }
    }
    return E_OK;
}

eng_err op_mse_loss(tensor **out, tensor *input, tensor *target, int reduction)
{
    dtype dt = dtype_promote((dtype)input->dtype, (dtype)target->dtype);
    if (!dtype_is_float(dt))
        return err_set(E_DTYPE, "\"mse_cpu\" not implemented for '%s'", torch_scalar_name(dt));
    static const loop_pair lp = {sqdiff_f32, sqdiff_f64};
    tensor *ins[2] = {input, target}, *view[2] = {NULL, NULL}, *sq = NULL, *r = NULL;
    eng_err e = mse_expand_converted(view, ins, dt);
    if (!e) e = ew_map(&sq, dt, dt, (tensor *[]){view[0] ? view[0] : input,
                                                 view[1] ? view[1] : target},
                       2, pick(&lp, dt), NULL, 0, PAR_GRAIN_CHEAP);
    tensor_release(view[0]);
    tensor_release(view[1]);
    if (e) return e;
    int64_t numel = sq->numel;
    if ((e = reduce_loss(&r, sq, reduction))) return e;
    node *n = record(&MSE_BW, ins, 2, &r, 1, 2, sizeof(red_attr), &e);
    if (!e && n) {
        *(red_attr *)node_attrs(n) = (red_attr){reduction, numel};
        node_save(n, 0, input);
        node_save(n, 1, target);
    }
    if (e) {
        tensor_release(r);
        return e;
    }
    *out = r;
    return E_OK;
}

/* ---- binary_cross_entropy_with_logits ---- */
/* The kernels follow PyTorch 1.13's formulas operation by operation, in its precisions, so
 * that non-finite values come out as PyTorch's (a logit of -inf gives NaN: max_val = inf and
 * exp(-x - max_val) = exp(inf - inf)). The input is read in its own dtype TX, in which PyTorch
 * computes max_val, the log term, sigmoid and log_sigmoid; target, weight, pos_weight and the
 * incoming gradient are in the computation dtype T (the promotion of all operands: TX itself
 * unless dtypes are mixed). All operands are contiguous, weight and pos_weight expanded to the
 * input's shape (NULL when absent); g has one element (reductions) or the input's shape. */
typedef struct bce_ctx {
    const void *x, *t, *w, *pw, *g;
    void *loss, *gx, *gt;
    bool g_full;
    int64_t mean_n; /* the mean's divisor, 0 for the other reductions */
} bce_ctx;

#define BCE_KERNELS(S, TX, T, EXP, LOG, LOG1P)                                             \
    /* loss = (1 - t) x + max_val + log(exp(-max_val) + exp(-x - max_val)), max_val =      \
     * max(-x, 0); with pw the last two terms times (pw - 1) t + 1; then times w */         \
    static void bce_fwd_##S(void *p, int64_t lo, int64_t hi)                               \
    {                                                                                      \
        const bce_ctx *c = p;                                                              \
        const TX *x = c->x;                                                                \
        const T *t = c->t, *w = c->w, *pw = c->pw;                                         \
        for (int64_t i = lo; i < hi; i++) {                                                \
            TX xi = x[i], mv = -xi;                                                        \
            if (mv < 0) mv = 0; /* clamp_min: NaN stays NaN */                             \
            TX lt = LOG(EXP(-mv) + EXP(-xi - mv));                                         \
            T l = (1 - t[i]) * (T)xi;                                                      \
            if (pw) l = l + ((pw[i] - 1) * t[i] + 1) * (T)(lt + mv);                       \
            else l = (l + (T)mv) + (T)lt;                                                  \
            ((T *)c->loss)[i] = w ? l * w[i] : l;                                          \
        }                                                                                  \
    }                                                                                      \
    /* log_sigmoid(v) = min(v, 0) - log1p(exp(-|v|)) (-inf at -inf, as PyTorch's) */       \
    static inline TX bce_logsig_##S(TX v)                                                  \
    {                                                                                      \
        return (v < 0 ? v : (TX)0) - LOG1P(EXP(-(v < 0 ? -v : v)));                        \
    }                                                                                      \
    /* dx = ((pw t + 1 - t) sigmoid(x) - pw t) g, or (sigmoid(x) - t) g; times w; / n.      \
     * dt = (log_sigmoid(-x) - log_sigmoid(x) pw) g (PyTorch keeps it in the input's        \
     * dtype: the casts to TX), or -x g; times w; / n. */                                   \
    static void bce_bwd_##S(void *p, int64_t lo, int64_t hi)                               \
    {                                                                                      \
        const bce_ctx *c = p;                                                              \
        const TX *x = c->x;                                                                \
        const T *t = c->t, *w = c->w, *pw = c->pw, *g = c->g;                              \
        T *gx = c->gx, *gt = c->gt;                                                        \
        for (int64_t i = lo; i < hi; i++) {                                                \
            TX xi = x[i];                                                                  \
            T gi = c->g_full ? g[i] : g[0];                                                \
            if (gx) {                                                                      \
                TX sig = (TX)1 / ((TX)1 + EXP(-xi));                                       \
                T d;                                                                       \
                if (pw) {                                                                  \
                    T pt = pw[i] * t[i];                                                   \
                    d = (((pt + 1) - t[i]) * (T)sig - pt) * gi;                            \
                } else {                                                                   \
                    d = ((T)sig - t[i]) * gi;                                              \
                }                                                                          \
                if (w) d = d * w[i];                                                       \
                gx[i] = c->mean_n ? d / (T)c->mean_n : d;                                  \
            }                                                                              \
            if (gt) {                                                                      \
                if (pw) {                                                                  \
                    TX a = (TX)((T)bce_logsig_##S(xi) * pw[i]);                            \
                    TX d = (TX)((T)(bce_logsig_##S(-xi) - a) * gi);                        \
                    if (w) d = (TX)((T)d * w[i]);                                          \
                    gt[i] = c->mean_n ? (T)(TX)((T)d / (T)c->mean_n) : (T)d;               \
                } else {                                                                   \
                    T d = (T)(-xi) * gi;                                                   \
                    if (w) d = d * w[i];                                                   \
                    gt[i] = c->mean_n ? d / (T)c->mean_n : d;                              \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
    }
BCE_KERNELS(f32, float, float, expf, logf, log1pf)
BCE_KERNELS(f64, double, double, exp, log, log1p)
BCE_KERNELS(f32_f64, float, double, expf, logf, log1pf)

static par_fn bce_pick(dtype x, dtype comp, bool fwd)
{
    if (comp == DT_F32) return fwd ? bce_fwd_f32 : bce_bwd_f32;
    if (x == DT_F32) return fwd ? bce_fwd_f32_f64 : bce_bwd_f32_f64;
    return fwd ? bce_fwd_f64 : bce_bwd_f64;
}

/* The computation dtype: the promotion of every operand. */
static dtype bce_dtype(const tensor *x, const tensor *t, const tensor *w, const tensor *pw)
{
    dtype dt = dtype_promote((dtype)x->dtype, (dtype)t->dtype);
    if (w) dt = dtype_promote(dt, (dtype)w->dtype);
    if (pw) dt = dtype_promote(dt, (dtype)pw->dtype);
    return dt;
}

enum { BCE_X, BCE_T, BCE_W, BCE_PW };

/* v (shaped like the input) converted to dt and expanded to `like`'s shape, contiguous. */
static eng_err expand_raw(tensor **out, tensor *v, const tensor *like, dtype dt)
{
    if (!v) {
        *out = NULL;
        return E_OK;
    }
    if (shapes_equal(v, like)) return contig_raw(out, v, dt);
    tensor *r = tensor_new(dt, like->shape, like->ndim);
    if (!r) return err_kind();
    kernel_copy(r, v);
    *out = r;
    return E_OK;
}

/* v * w (w may be NULL), then / n for the mean (n 0: none), from differentiable ops. */
static eng_err bce_finish_graph(tensor **out, tensor *v, tensor *w, int64_t n)
{
    tensor *a = NULL;
    eng_err e = E_OK;
    if (w) {
        if ((e = op_mul(&a, v, w))) return e;
        v = a;
    }
    if (n) e = op_div_scalar1(out, v, (double)n); /* (PyTorch: grad_input.div_(numel)) */
    else tensor_retain(*out = v);
    tensor_release(a);
    return e;
}

/* The kernels' formulas from ordinary ops (create_graph), in PyTorch's order. */
static eng_err bce_backward_graph(tensor *x, tensor *t, tensor *w, tensor *pw, tensor *g,
                                  int64_t n, const uint8_t *needed, tensor **gout)
{
    enum { SIG, PT, D1, D2, D3, D4, D5, NX, SP, LSX, LSN, Q, D6, D7, NT };
    tensor *k[NT] = {0};
    eng_err e = E_OK;
    if (needed[0]) {
        if ((e = op_sigmoid(&k[SIG], x))) goto done;
        if (pw) {
            if ((e = op_mul(&k[PT], pw, t)) || (e = op_add_scalar(&k[D1], k[PT], 1.0)) ||
                (e = op_sub(&k[D2], k[D1], t)) || (e = op_mul(&k[D3], k[D2], k[SIG])) ||
                (e = op_sub(&k[D4], k[D3], k[PT])))
                goto done;
        } else if ((e = op_sub(&k[D4], k[SIG], t))) {
            goto done;
        }
        if ((e = op_mul(&k[D5], k[D4], g)) || (e = bce_finish_graph(&gout[0], k[D5], w, n)))
            goto done;
    }
    if (needed[1]) {
        if ((e = op_neg(&k[NX], x))) goto done;
        if (pw) {
            /* log_sigmoid(-x) - log_sigmoid(x) pw, log_sigmoid(v) being -softplus(-v) */
            if ((e = op_softplus(&k[SP], x, 1.0, 20.0)) || (e = op_neg(&k[LSN], k[SP])))
                goto done;
            tensor_release(k[SP]);
            k[SP] = NULL;
            if ((e = op_softplus(&k[SP], k[NX], 1.0, 20.0)) || (e = op_neg(&k[LSX], k[SP])) ||
                (e = op_mul(&k[Q], k[LSX], pw)) || (e = op_sub(&k[D6], k[LSN], k[Q])))
                goto done;
        } else {
            tensor_retain(k[D6] = k[NX]);
        }
        if ((e = op_mul(&k[D7], k[D6], g)) || (e = bce_finish_graph(&gout[1], k[D7], w, n)))
            goto done;
    }
done:
    for (int i = 0; i < NT; i++) tensor_release(k[i]);
    return e;
}

static eng_err bce_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    const red_attr *a = node_attrs(n);
    tensor *x, *t, *w, *pw;
    eng_err e;
    if ((e = saved_get(n, c, BCE_X, &x)) || (e = saved_get(n, c, BCE_T, &t)) ||
        (e = saved_get(n, c, BCE_W, &w)) || (e = saved_get(n, c, BCE_PW, &pw)))
        return e;
    int64_t mean_n = a->reduction == RED_MEAN ? a->numel : 0;
    if (c->create_graph) return bce_backward_graph(x, t, w, pw, gin[0], mean_n, c->needed, gout);
    dtype dt = bce_dtype(x, t, w, pw);
    enum { X, T, W, PW, G, NT };
    tensor *k[NT] = {0};
    if ((e = contig_raw(&k[X], x, (dtype)x->dtype)) || (e = contig_raw(&k[T], t, dt)) ||
        (e = expand_raw(&k[W], w, x, dt)) || (e = expand_raw(&k[PW], pw, x, dt)) ||
        (e = contig_raw(&k[G], gin[0], dt)))
        goto done;
    for (int i = 0; i < 2; i++)
        if (c->needed[i] && !(gout[i] = tensor_new(dt, x->shape, x->ndim))) {
            e = err_kind();
            goto done;
        }
    bce_ctx b = {tensor_data(k[X]), tensor_data(k[T]), k[W] ? tensor_data(k[W]) : NULL,
                 k[PW] ? tensor_data(k[PW]) : NULL, tensor_data(k[G]), NULL,
                 gout[0] ? tensor_data(gout[0]) : NULL, gout[1] ? tensor_data(gout[1]) : NULL,
                 k[G]->numel == x->numel && a->reduction == RED_NONE, mean_n};
    par_for(x->numel, PAR_GRAIN_COSTLY, bce_pick((dtype)x->dtype, dt, false), &b);
    /* Laid out as PyTorch 1.13 lays them out (the kernel writes contiguous results): the
     * input's gradient as the input (sigmoid(x) updated in place), or by (pos_weight,
     * target) whose product starts it; the target's by (x, g) (-x * g), or contiguous
     * (log_sigmoid's result updated in place). */
    for (int i = 0; i < 2 && !e; i++) {
        if (!gout[i] || (i == 1 && pw)) continue;
        tensor *lay[2] = {i == 0 && pw ? pw : x, i == 0 ? t : gin[0]};
        int64_t st[MAX_DIMS];
        if (i == 0 && !pw ? dense_strides_like(x, st)
                          : ew_layout(st, x->shape, x->ndim, lay, 2, false))
            continue;
        tensor *r = tensor_new_strided(dt, x->shape, x->ndim, st);
        if (!r) {
            e = err_kind();
            break;
        }
        kernel_copy(r, gout[i]);
        tensor_release(gout[i]);
        gout[i] = r;
    }
done:
    for (int i = 0; i < NT; i++) tensor_release(k[i]);
    return e;
}
static const node_type BCE_BW = {"BinaryCrossEntropyWithLogitsBackward0", bce_backward, NULL};

/* weight / pos_weight: broadcastable to the input's shape, and constant under grad mode. */
static eng_err bce_check_param(const tensor *v, const char *what, const tensor *input)
{
    if (!v) return E_OK;
    int64_t shape[MAX_DIMS];
    int nd;
    eng_err e = broadcast_shapes(v->shape, v->ndim, input->shape, input->ndim, shape, &nd);
    if (e) return e;
    bool same = nd == input->ndim;
    for (int k = 0; same && k < nd; k++) same = shape[k] == input->shape[k];
    if (!same) {
        char b1[160], b2[160];
        return err_set(E_SHAPE, "output with shape %s doesn't match the broadcast shape %s",
                       fmt_shape(b1, sizeof b1, input->shape, input->ndim),
                       fmt_shape(b2, sizeof b2, shape, nd));
    }
    if (grad_mode_enabled() && tensor_requires_grad((tensor *)v))
        return err_set(E_INVAL, "The function 'binary_cross_entropy_with_logits' is not "
                       "differentiable with respect to argument '%s'. This input cannot have "
                       "requires_grad True.", what);
    return E_OK;
}

eng_err op_bce_with_logits(tensor **out, tensor *input, tensor *target, tensor *weight,
                           tensor *pos_weight, int reduction)
{
    char b1[160], b2[160];
    if (!shapes_equal(input, target))
        return err_set(E_SHAPE, "Target size (%s) must be the same as input size (%s)",
                       fmt_shape(b1, sizeof b1, target->shape, target->ndim),
                       fmt_shape(b2, sizeof b2, input->shape, input->ndim));
    eng_err e = require_float(input, "binary_cross_entropy_with_logits");
    if (e) return e;
    if (!dtype_is_float((dtype)target->dtype))
        return err_set(E_DTYPE, "result type Float can't be cast to the desired output type %s",
                       torch_scalar_name((dtype)target->dtype));
    if ((e = bce_check_param(weight, "weight", input)) ||
        (e = bce_check_param(pos_weight, "pos_weight", input)))
        return e;
    dtype dt = bce_dtype(input, target, weight, pos_weight);
    enum { X, T, W, PW, NT };
    tensor *k[NT] = {0}, *loss = NULL, *r = NULL;
    if ((e = contig_raw(&k[X], input, (dtype)input->dtype)) || (e = contig_raw(&k[T], target, dt)) ||
        (e = expand_raw(&k[W], weight, input, dt)) ||
        (e = expand_raw(&k[PW], pos_weight, input, dt)))
        goto done;
    if (!(loss = tensor_new(dt, input->shape, input->ndim))) {
        e = err_kind();
        goto done;
    }
    bce_ctx b = {tensor_data(k[X]), tensor_data(k[T]), k[W] ? tensor_data(k[W]) : NULL,
                 k[PW] ? tensor_data(k[PW]) : NULL, NULL, tensor_data(loss), NULL, NULL,
                 false, 0};
    par_for(input->numel, PAR_GRAIN_COSTLY, bce_pick((dtype)input->dtype, dt, true), &b);
    /* PyTorch's loss is (1 - target) updated in place: the target's dtype, and (unreduced)
     * the layout of 1 - target */
    int64_t st[MAX_DIMS];
    bool relayout = reduction == RED_NONE &&
                    !ew_layout(st, target->shape, target->ndim, &target, 1, true);
    if (loss->dtype != target->dtype || relayout) {
        tensor *lt = tensor_new_strided((dtype)target->dtype, loss->shape, loss->ndim,
                                        relayout ? st : NULL);
        if (!lt) {
            e = err_kind();
            goto done;
        }
        kernel_copy(lt, loss);
        tensor_release(loss);
        loss = lt;
    }
    int64_t numel = loss->numel;
    e = reduce_loss(&r, loss, reduction);
    loss = NULL;
    if (e) goto done;
    tensor *ins[2] = {input, target};
    node *n = record(&BCE_BW, ins, 2, &r, 1, 4, sizeof(red_attr), &e);
    if (!e && n) {
        *(red_attr *)node_attrs(n) = (red_attr){reduction, numel};
        node_save(n, BCE_X, input);
        node_save(n, BCE_T, target);
        if (weight) node_save(n, BCE_W, weight);
        if (pos_weight) node_save(n, BCE_PW, pos_weight);
    }
done:
    for (int i = 0; i < NT; i++) tensor_release(k[i]);
    tensor_release(loss);
    if (e) {
        tensor_release(r);
        return e;
    }
    *out = r;
    return E_OK;
}
