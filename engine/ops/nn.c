/*
 * nn.c: softmax and log_softmax, dropout, layer_norm and embedding (the losses are in loss.c).
 * Forward passes and first-order backward passes are fused row kernels; under create_graph
 * the backward formulas are compositions of ordinary ops, so they differentiate again.
 */
#include <string.h>

#include "../rng.h"
#include "nn_common.h"

/* ---- softmax, log_softmax ---- */
typedef struct sm_ctx {
    const void *a, *g; /* forward: x; backward: y and its gradient */
    void *out;
    lay L;
} sm_ctx;

/* Rows along a middle dim are strided and go one by one; last-dim rows go a group at a time
 * (nn_common.h), their exps in one vector loop. */
#define SM_KERNELS(S, T, EXP, LOG)                                                         \
    EW_MULTIVERSION static void softmax_fwd_##S(void *p, int64_t lo, int64_t hi)           \
    {                                                                                      \
        const sm_ctx *c = p;                                                               \
        int64_t n = c->L.n, st = c->L.inner;                                               \
        if (st == 1) {                                                                     \
            T mx[NN_GROUP];                                                                \
            for (int64_t g = lo, gr = nn_group_rows(n); g < hi; g += gr) {                 \
                int64_t rows = hi - g < gr ? hi - g : gr;                                  \
                T *y = (T *)c->out + g * n;                                                \
                rows_exp_##S((const T *)c->a + g * n, n, rows, mx, y);                     \
                for (int64_t r = 0; r < rows; r++) {                                       \
                    T *yr = y + r * n, inv = 1 / row_sum_##S(yr, n);                       \
                    ROW_LOOP(n, 1, yr[k] *= inv;);                                         \
                }                                                                          \
            }                                                                              \
            return;                                                                        \
        }                                                                                  \
        for (int64_t r = lo; r < hi; r++) {                                                \
            int64_t o = lay_row(&c->L, r);                                                 \
            const T *x = (const T *)c->a + o;                                              \
            T *y = (T *)c->out + o, m = row_max_##S(x, n, st), s = 0;                      \
            ROW_LOOP(n, st, y[k * s_] = EXP(x[k * s_] - m););                              \
            for (int64_t k = 0; k < n; k++) s += y[k * st];                                \
            T inv = 1 / s;                                                                 \
            ROW_LOOP(n, st, y[k * s_] *= inv;);                                            \
        }                                                                                  \
    }                                                                                      \
    EW_MULTIVERSION static void log_softmax_fwd_##S(void *p, int64_t lo, int64_t hi)       \
    {                                                                                      \
        const sm_ctx *c = p;                                                               \
        int64_t n = c->L.n, st = c->L.inner;                                               \
        if (st == 1) {                                                                     \
            T mx[NN_GROUP];                                                                \
            for (int64_t g = lo, gr = nn_group_rows(n); g < hi; g += gr) {                 \
                int64_t rows = hi - g < gr ? hi - g : gr;                                  \
                const T *x = (const T *)c->a + g * n;                                      \
                T *y = (T *)c->out + g * n;                                                \
                rows_exp_##S(x, n, rows, mx, y); /* y as scratch for the exps */           \
                for (int64_t r = 0; r < rows; r++) {                                       \
                    const T *xr = x + r * n;                                               \
                    T *yr = y + r * n, m = mx[r], ls = LOG(row_sum_##S(yr, n));            \
                    ROW_LOOP(n, 1, yr[k] = (xr[k] - m) - ls;); /* (row_lse) */             \
                }                                                                          \
            }                                                                              \
            return;                                                                        \
        }                                                                                  \
        for (int64_t r = lo; r < hi; r++) {                                                \
            int64_t o = lay_row(&c->L, r);                                                 \
            const T *x = (const T *)c->a + o;                                              \
            T *y = (T *)c->out + o, m, ls;                                                 \
            row_lse_##S(x, n, st, &m, &ls);                                                \
            ROW_LOOP(n, st, y[k * s_] = (x[k * s_] - m) - ls;);                            \
        }                                                                                  \
    }                                                                                      \
    /* dx = y * (g - sum(g * y)) */                                                        \
    EW_MULTIVERSION static void softmax_bwd_##S(void *p, int64_t lo, int64_t hi)           \
    {                                                                                      \
        const sm_ctx *c = p;                                                               \
        int64_t n = c->L.n, st = c->L.inner;                                               \
        for (int64_t r = lo; r < hi; r++) {                                                \
            int64_t o = lay_row(&c->L, r);                                                 \
            const T *y = (const T *)c->a + o, *g = (const T *)c->g + o;                    \
            T *gx = (T *)c->out + o, dot = 0;                                              \
            ROW_REDUCE(+, dot, n, st, dot += g[k * s_] * y[k * s_];);                      \
            ROW_LOOP(n, st, gx[k * s_] = y[k * s_] * (g[k * s_] - dot););                  \
        }                                                                                  \
    }                                                                                      \
    /* dx = g - exp(y) * sum(g); last-dim rows take their exps in one loop first */        \
    EW_MULTIVERSION static void log_softmax_bwd_##S(void *p, int64_t lo, int64_t hi)       \
    {                                                                                      \
        const sm_ctx *c = p;                                                               \
        int64_t n = c->L.n, st = c->L.inner;                                               \
        if (st == 1) {                                                                     \
            const T *y = (const T *)c->a;                                                  \
            T *gx = c->out;                                                                \
            _Pragma("omp simd") for (int64_t j = lo * n; j < hi * n; j++) gx[j] = EXP(y[j]); \
        }                                                                                  \
        for (int64_t r = lo; r < hi; r++) {                                                \
            int64_t o = lay_row(&c->L, r);                                                 \
            const T *y = (const T *)c->a + o, *g = (const T *)c->g + o;                    \
            T *gx = (T *)c->out + o, s = 0;                                                \
            ROW_REDUCE(+, s, n, st, s += g[k * s_];);                                      \
            if (st == 1) ROW_LOOP(n, 1, gx[k] = g[k] - gx[k] * s;);                        \
            else ROW_LOOP(n, st, gx[k * s_] = g[k * s_] - EXP(y[k * s_]) * s;);            \
        }                                                                                  \
    }
SM_KERNELS(f32, float, nn_expf, logf)
SM_KERNELS(f64, double, exp, log)

enum { SM_FWD, LSM_FWD, SM_BWD, LSM_BWD };
static const par_fn sm_kernels[4][2] = {{softmax_fwd_f32, softmax_fwd_f64},
                                        {log_softmax_fwd_f32, log_softmax_fwd_f64},
                                        {softmax_bwd_f32, softmax_bwd_f64},
                                        {log_softmax_bwd_f32, log_softmax_bwd_f64}};

/* A new tensor shaped like a from one of the row kernels over dim d (g: backward only). */
static eng_err sm_run(tensor **out, tensor *a, tensor *g, int d, int kind)
{
    dtype dt = (dtype)a->dtype;
    tensor *ac = NULL, *gc = NULL, *r = NULL;
    eng_err e = contig_raw(&ac, a, dt);
    if (!e && g) e = contig_raw(&gc, g, dt);
    if (!e && !(r = tensor_new(dt, a->shape, a->ndim))) e = err_kind();
    if (!e) {
        sm_ctx c = {tensor_data(ac), gc ? tensor_data(gc) : NULL, tensor_data(r), lay_of(a, d)};
        par_for(lay_rows(&c.L), lay_grain(&c.L), sm_kernels[kind][dt], &c);
        *out = r;
    }
    tensor_release(ac);
    if (gc) tensor_release(gc);
    return e;
}

typedef struct dim_attr {
    int dim;
} dim_attr;

/* The gradients of softmax and log_softmax are ops of their own, as PyTorch's
 * _softmax_backward_data and _log_softmax_backward_data: the row kernels, and under
 * create_graph nodes SoftmaxBackwardDataBackward0 and LogSoftmaxBackwardDataBackward0 whose
 * formulas are derivatives.yaml's (incoming gradient G, the op's g and y):
 *   softmax:     d/dg the same op of G; d/dy g G - sum(y g) G - g sum(y G)
 *   log_softmax: d/dg G - sum(G exp(y));  d/dy -sum(g) exp(y) G
 * (sums over the op's dim, kept). */
typedef struct sm_bw_attr {
    int dim;
    bool log;
} sm_bw_attr;

static eng_err sm_bw_op(tensor **out, tensor *g, tensor *y, int d, bool log);

static eng_err sm_bwbw_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    const sm_bw_attr *a = node_attrs(n);
    int64_t d = a->dim;
    tensor *g, *y, *G = gin[0], *t[9] = {0};
    eng_err e;
    if ((e = saved_get(n, c, 0, &g)) || (e = saved_get(n, c, 1, &y))) return e;
    if (!a->log) {
        if (c->needed[0] && (e = sm_bw_op(&gout[0], G, y, a->dim, false))) return e;
        if (c->needed[1] && !(e = op_mul(&t[0], g, G)) && !(e = op_mul(&t[1], y, g)) &&
            !(e = op_sum_dims(&t[2], t[1], &d, 1, true)) && !(e = op_mul(&t[3], t[2], G)) &&
            !(e = op_sub(&t[4], t[0], t[3])) && !(e = op_mul(&t[5], y, G)) &&
            !(e = op_sum_dims(&t[6], t[5], &d, 1, true)) && !(e = op_mul(&t[7], g, t[6])))
            e = op_sub(&gout[1], t[4], t[7]);
    } else {
        if (c->needed[0] && !(e = op_exp(&t[0], y)) && !(e = op_mul(&t[1], G, t[0])) &&
            !(e = op_sum_dims(&t[2], t[1], &d, 1, true)))
            e = op_sub(&gout[0], G, t[2]);
        if (!e && c->needed[1] && !(e = op_sum_dims(&t[3], g, &d, 1, true)) &&
            !(e = op_neg(&t[4], t[3])) && (t[0] || !(e = op_exp(&t[0], y))) &&
            !(e = op_mul(&t[5], t[4], t[0])))
            e = op_mul(&gout[1], t[5], G);
    }
    for (int i = 0; i < 9; i++) tensor_release(t[i]);
    return e;
}
static const node_type SOFTMAX_BWBW = {"SoftmaxBackwardDataBackward0", sm_bwbw_backward, NULL};
static const node_type LOG_SOFTMAX_BWBW = {"LogSoftmaxBackwardDataBackward0", sm_bwbw_backward,
                                           NULL};

static eng_err sm_bw_op(tensor **out, tensor *g, tensor *y, int d, bool log)
{
    tensor *r = NULL;
    eng_err e = sm_run(&r, y, g, d, log ? LSM_BWD : SM_BWD);
    sm_bw_attr a = {d, log};
    return e ? e : record_grad_op(out, r, log ? &LOG_SOFTMAX_BWBW : &SOFTMAX_BWBW, g, y, &a,
                                  sizeof a);
}

static eng_err softmax_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    if (!c->needed[0]) return E_OK;
    tensor *y;
    eng_err e = saved_get(n, c, 0, &y);
    return e ? e : sm_bw_op(&gout[0], gin[0], y, ((dim_attr *)node_attrs(n))->dim, false);
}

static eng_err log_softmax_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    if (!c->needed[0]) return E_OK;
    tensor *y;
    eng_err e = saved_get(n, c, 0, &y);
    return e ? e : sm_bw_op(&gout[0], gin[0], y, ((dim_attr *)node_attrs(n))->dim, true);
}

static const node_type SOFTMAX_BW = {"SoftmaxBackward0", softmax_backward, NULL};
static const node_type LOG_SOFTMAX_BW = {"LogSoftmaxBackward0", log_softmax_backward, NULL};

static eng_err softmax_op(tensor **out, tensor *t, int64_t dim, bool log)
{
    eng_err e = require_float(t, log ? "log_softmax" : "softmax");
    int d;
    if (e || (e = wrap_dim(dim, t->ndim, &d))) return e;
    tensor *r = NULL;
    if ((e = sm_run(&r, t, NULL, d, log ? LSM_FWD : SM_FWD))) return e;
    node *n = record(log ? &LOG_SOFTMAX_BW : &SOFTMAX_BW, &t, 1, &r, 1, 1, sizeof(dim_attr), &e);
    if (!e && n) {
        ((dim_attr *)node_attrs(n))->dim = d;
        e = node_save_output(n, 0, r);
    }
    if (e) {
        tensor_release(r);
        return e;
    }
    *out = r;
    return E_OK;
}

eng_err op_softmax(tensor **out, tensor *t, int64_t dim)
{
    return softmax_op(out, t, dim, false);
}
eng_err op_log_softmax(tensor **out, tensor *t, int64_t dim)
{
    return softmax_op(out, t, dim, true);
}

/* ---- dropout ---- */
/* Element i keeps its value when word i % 4 of Philox block (base + i / 4) is below 1 - p:
 * a pure function of (seed, base, i), so the mask is the same for any thread count. */
typedef struct drop_ctx {
    uint64_t seed, base;
    double keep, scale;
    int64_t numel;
    void *mask;
    bool f32;
} drop_ctx;

static void drop_chunk(void *p, int64_t lo, int64_t hi)
{
    const drop_ctx *c = p;
    float sf = (float)c->scale;
    for (int64_t b = lo; b < hi; b++) {
        uint32_t w[4];
        philox(c->seed, c->base + (uint64_t)b, w);
        for (int64_t i = b * 4; i < b * 4 + 4 && i < c->numel; i++) {
            bool keep = (double)w[i - b * 4] * 0x1p-32 < c->keep;
            if (c->f32) ((float *)c->mask)[i] = keep ? sf : 0.0f;
            else ((double *)c->mask)[i] = keep ? c->scale : 0.0;
        }
    }
}

eng_err op_dropout(tensor **out, struct generator *g, tensor *t, double p, bool training)
{
    if (!(p >= 0 && p <= 1))
        return err_set(E_INVAL, "dropout probability has to be between 0 and 1, but got %g", p);
    if (!training || p == 0 || t->numel == 0) {
        tensor_retain(t);
        *out = t;
        return E_OK;
    }
    if (p == 1) return op_mul_scalar(out, t, 0.0); /* PyTorch: input * zeros({}) */
    if (!dtype_is_float((dtype)t->dtype))
        return err_set(E_DTYPE, "result type Float can't be cast to the desired output type %s",
                       torch_scalar_name((dtype)t->dtype));
    tensor *mask = tensor_new((dtype)t->dtype, t->shape, t->ndim);
    if (!mask) return err_kind();
    /* As PyTorch: bernoulli(1 - p) / (1 - p), the division in the tensor's dtype. */
    double scale = t->dtype == DT_F32 ? (double)(1.0f / (float)(1 - p)) : 1 / (1 - p);
    uint64_t blocks = (uint64_t)(t->numel + 3) / 4, seed;
    uint64_t base = generator_reserve(g ? g : generator_default(), blocks, &seed);
    drop_ctx c = {seed, base, 1 - p, scale, t->numel, tensor_data(mask), t->dtype == DT_F32};
    par_for((int64_t)blocks, PAR_GRAIN_COSTLY / 4, drop_chunk, &c);
    eng_err e = op_mul(out, t, mask);
    tensor_release(mask);
    return e;
}

/* ---- layer_norm ---- */
/* x as [M rows, N normalised elements]; mean and rstd per row, in float64. */
typedef struct ln_ctx {
    const void *x, *w, *b, *g;
    void *y;
    double *mean, *rstd;
    double *part; /* backward: per block of rows, partial sums for dw and db */
    int64_t M, N, block;
    double eps;
} ln_ctx;

static inline int64_t ln_grain(int64_t N) { return PAR_GRAIN_CHEAP / (N > 0 ? N : 1) + 1; }

#define LN_KERNELS(S, T)                                                                   \
    EW_MULTIVERSION static void ln_fwd_##S(void *p, int64_t lo, int64_t hi)                \
    {                                                                                      \
        const ln_ctx *c = p;                                                               \
        int64_t N = c->N;                                                                  \
        const T *w = c->w, *b = c->b;                                                      \
        for (int64_t r = lo; r < hi; r++) {                                                \
            const T *x = (const T *)c->x + r * N;                                          \
            T *y = (T *)c->y + r * N;                                                      \
            double s = 0, v = 0;                                                           \
            NN_PRAGMA(omp simd reduction(+ : s))                                           \
            for (int64_t k = 0; k < N; k++) s += x[k];                                     \
            double mu = s / (double)N;                                                     \
            NN_PRAGMA(omp simd reduction(+ : v))                                           \
            for (int64_t k = 0; k < N; k++) v += (x[k] - mu) * (x[k] - mu);                \
            double rs = 1 / sqrt(v / (double)N + c->eps);                                  \
            c->mean[r] = mu;                                                               \
            c->rstd[r] = rs;                                                               \
            _Pragma("omp simd") for (int64_t k = 0; k < N; k++)                            \
            {                                                                              \
                double h = (x[k] - mu) * rs;                                               \
                h = w ? h * w[k] : h;                                                      \
                y[k] = (T)(b ? h + b[k] : h);                                              \
            }                                                                              \
        }                                                                                  \
    }                                                                                      \
    /* dx = rstd * (gw - mean(gw) - xhat * mean(gw * xhat)), gw = g * w */                 \
    EW_MULTIVERSION static void ln_bwd_x_##S(void *p, int64_t lo, int64_t hi)              \
    {                                                                                      \
        const ln_ctx *c = p;                                                               \
        int64_t N = c->N;                                                                  \
        const T *w = c->w;                                                                 \
        for (int64_t r = lo; r < hi; r++) {                                                \
            const T *x = (const T *)c->x + r * N, *g = (const T *)c->g + r * N;            \
            T *dx = (T *)c->y + r * N;                                                     \
            double mu = c->mean[r], rs = c->rstd[r], a = 0, bb = 0;                        \
            NN_PRAGMA(omp simd reduction(+ : a, bb))                                       \
            for (int64_t k = 0; k < N; k++) {                                              \
                double gw = w ? (double)g[k] * w[k] : g[k];                                \
                a += gw;                                                                   \
                bb += gw * (x[k] - mu) * rs;                                               \
            }                                                                              \
            a /= (double)N;                                                                \
            bb /= (double)N;                                                               \
            _Pragma("omp simd") for (int64_t k = 0; k < N; k++)                            \
            {                                                                              \
                double gw = w ? (double)g[k] * w[k] : g[k];                                \
                dx[k] = (T)(rs * (gw - a - (x[k] - mu) * rs * bb));                        \
            }                                                                              \
        }                                                                                  \
    }                                                                                      \
    /* Partial dw (sum of g * xhat) and db (sum of g) over one block of rows. */           \
    EW_MULTIVERSION static void ln_bwd_wb_##S(void *p, int64_t lo, int64_t hi)             \
    {                                                                                      \
        const ln_ctx *c = p;                                                               \
        int64_t N = c->N;                                                                  \
        for (int64_t blk = lo; blk < hi; blk++) {                                          \
            double *pw = c->part + blk * 2 * N, *pb = pw + N;                              \
            memset(pw, 0, 2 * (size_t)N * sizeof *pw);                                     \
            int64_t end = (blk + 1) * c->block < c->M ? (blk + 1) * c->block : c->M;       \
            for (int64_t r = blk * c->block; r < end; r++) {                               \
                const T *x = (const T *)c->x + r * N, *g = (const T *)c->g + r * N;        \
                double mu = c->mean[r], rs = c->rstd[r];                                   \
                _Pragma("omp simd") for (int64_t k = 0; k < N; k++)                        \
                {                                                                          \
                    pw[k] += g[k] * ((x[k] - mu) * rs);                                    \
                    pb[k] += g[k];                                                         \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
    }
LN_KERNELS(f32, float)
LN_KERNELS(f64, double)

typedef struct ln_attr {
    int nd;
    double eps;
} ln_attr;

/* saved slots */
/* Saved as PyTorch's NativeLayerNormBackward0 saves them: the weight and bias even where
 * the formula needs neither, so that changing them in place before backward is an error. */
enum { LN_X, LN_W, LN_MEAN, LN_RSTD, LN_B, LN_NSAVED };

/* Under create_graph: the same formulas from differentiable ops, recomputing mean and rstd
 * from x so that they carry x's graph. */
static eng_err ln_backward_graph(tensor *x, tensor *w, tensor *g, int nd, double eps,
                                 const uint8_t *needed, tensor **gout)
{
    int64_t norm[MAX_DIMS], lead[MAX_DIMS];
    int nl = x->ndim - nd;
    for (int k = 0; k < nd; k++) norm[k] = nl + k;
    for (int k = 0; k < nl; k++) lead[k] = k;
    enum { MU, XC, SQ, VAR, VE, RS, XH, GW, A, GX, B, T1, T2, T3, GXH, NT };
    tensor *t[NT] = {0};
    eng_err e;
    if ((e = op_mean_dims(&t[MU], x, norm, nd, true)) || (e = op_sub(&t[XC], x, t[MU])) ||
        (e = op_mul(&t[SQ], t[XC], t[XC])) || (e = op_mean_dims(&t[VAR], t[SQ], norm, nd, true)) ||
        (e = op_add_scalar(&t[VE], t[VAR], eps)) || (e = op_pow_scalar(&t[RS], t[VE], -0.5)) ||
        (e = op_mul(&t[XH], t[XC], t[RS])))
        goto done;
    if (needed[0]) {
        if (w) e = op_mul(&t[GW], g, w);
        else tensor_retain(t[GW] = g);
        if (e || (e = op_mean_dims(&t[A], t[GW], norm, nd, true)) ||
            (e = op_mul(&t[GX], t[GW], t[XH])) ||
            (e = op_mean_dims(&t[B], t[GX], norm, nd, true)) || (e = op_mul(&t[T1], t[XH], t[B])) ||
            (e = op_sub(&t[T2], t[GW], t[A])) || (e = op_sub(&t[T3], t[T2], t[T1])) ||
            (e = op_mul(&gout[0], t[RS], t[T3])))
            goto done;
    }
    if (needed[1]) {
        if ((e = op_mul(&t[GXH], g, t[XH]))) goto done;
        if (nl) e = op_sum_dims(&gout[1], t[GXH], lead, nl, false);
        else tensor_retain(gout[1] = t[GXH]);
        if (e) goto done;
    }
    if (needed[2]) {
        /* (a copy when nothing is summed: not g itself, which the caller may change) */
        if (nl) e = op_sum_dims(&gout[2], g, lead, nl, false);
        else e = op_clone(&gout[2], g);
    }
done:
    for (int k = 0; k < NT; k++)
        if (t[k]) tensor_release(t[k]);
    return e;
}

/* PyTorch's layer_norm gradients under create_graph are the outputs of one node,
 * NativeLayerNormBackwardBackward0 (native_layer_norm_backward's), with edges to the incoming
 * gradient, input, weight and bias: each of them requires grad, even the bias's, sum(g),
 * which depends on none of them; its derivatives are layer_norm_double_backward's, which has
 * none in the bias and gives none where a gradient does not depend on an input (the weight's
 * in the weight, the bias's in anything but g). Here that node hands each output's gradient
 * to the composed formula that computed it (ln_backward_graph): the same values, the same
 * derivatives that are none. */
static eng_err ln_bb_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    (void)n;
    for (int k = 0; k < 3; k++)
        if (c->needed[k] && gin[k]) tensor_retain(gout[k] = gin[k]);
    return E_OK;
}
static const node_type LN_BB = {"NativeLayerNormBackwardBackward0", ln_bb_backward, NULL};

/* gout[k]: an alias of cg[k] (when there is one) with grad_fn the LN_BB node. */
static eng_err ln_double_node(tensor *const *cg, tensor **gout)
{
    int dims = 0;
    for (int k = 0; k < 3; k++)
        if (cg[k]) dims += cg[k]->ndim;
    node *n = node_new(&LN_BB, 3, 0, 3, dims, 0);
    if (!n) return err_nomem();
    eng_err e = E_OK;
    for (int k = 0; k < 3 && !e; k++) {
        if (!cg[k]) continue;
        tensor *t = NULL;
        if (!(e = node_set_edge(n, k, cg[k])) &&
            !(t = tensor_alias(cg[k], cg[k]->shape, cg[k]->strides, cg[k]->ndim, cg[k]->offset)))
            e = err_kind();
        if (t) {
            node_set_output(n, k, t);
            gout[k] = t;
        }
    }
    node_release(n); /* the outputs hold it */
    if (e)
        for (int k = 0; k < 3; k++) {
            tensor_release(gout[k]);
            gout[k] = NULL;
        }
    return e;
}

static eng_err layer_norm_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    const ln_attr *a = node_attrs(n);
    tensor *x, *w, *mean, *rstd, *b;
    eng_err e;
    if ((e = saved_get(n, c, LN_X, &x)) || (e = saved_get(n, c, LN_W, &w)) ||
        (e = saved_get(n, c, LN_MEAN, &mean)) || (e = saved_get(n, c, LN_RSTD, &rstd)) ||
        (e = saved_get(n, c, LN_B, &b)))
        return e;
    if (c->create_graph) {
        tensor *cg[3] = {NULL, NULL, NULL};
        e = ln_backward_graph(x, w, gin[0], a->nd, a->eps, c->needed, cg);
        /* Laid out as native_layer_norm_backward makes them whatever the incoming gradient's
         * layout (empty_like with LEGACY_CONTIGUOUS_MEMORY_FORMAT), as without create_graph:
         * the composed formula follows g's (a transposed g gave a transposed gradient). */
        for (int k = 0; k < 3 && !e; k++) {
            tensor *t = NULL;
            if (cg[k] && !(e = op_contiguous(&t, cg[k]))) {
                tensor_release(cg[k]);
                cg[k] = t;
            }
        }
        if (!e) e = ln_double_node(cg, gout);
        for (int k = 0; k < 3; k++) tensor_release(cg[k]);
        return e;
    }
    dtype dt = (dtype)x->dtype;
    const int64_t *nshape = x->shape + (x->ndim - a->nd);
    int64_t M = mean->numel, N = 1;
    for (int k = 0; k < a->nd; k++) N *= nshape[k];
    tensor *xc = NULL, *wc = NULL, *gc = NULL;
    double *part = NULL;
    if ((e = contig_raw(&xc, x, dt)) || (e = contig_raw(&gc, gin[0], dt)) ||
        (w && (e = contig_raw(&wc, w, dt))))
        goto done;
    ln_ctx k = {tensor_data(xc), wc ? tensor_data(wc) : NULL, NULL, tensor_data(gc), NULL,
                tensor_data(mean), tensor_data(rstd), NULL, M, N, ln_grain(N), 0};
    if (c->needed[0]) {
        if (!(gout[0] = tensor_new(dt, x->shape, x->ndim))) goto nomem;
        k.y = tensor_data(gout[0]);
        par_for(M, k.block, dt == DT_F32 ? ln_bwd_x_f32 : ln_bwd_x_f64, &k);
    }
    if (c->needed[1] || c->needed[2]) {
        /* Partial sums per fixed block of rows, combined in block order: deterministic. */
        int64_t nb = (M + k.block - 1) / k.block;
        tensor *dw = NULL, *db = NULL;
        if (!(part = mem_alloc((size_t)(nb * 2 * N + 1) * sizeof *part)) ||
            (c->needed[1] && !(dw = gout[1] = tensor_new(dt, nshape, a->nd))) ||
            (c->needed[2] && !(db = gout[2] = tensor_new(dt, nshape, a->nd))))
            goto nomem;
        k.part = part;
        par_for(nb, 1, dt == DT_F32 ? ln_bwd_wb_f32 : ln_bwd_wb_f64, &k);
        for (int64_t j = 0; j < N; j++) {
            double sw = 0, sb = 0;
            for (int64_t blk = 0; blk < nb; blk++) {
                sw += part[blk * 2 * N + j];
                sb += part[blk * 2 * N + N + j];
            }
            if (dt == DT_F32) {
                if (dw) ((float *)tensor_data(dw))[j] = (float)sw;
                if (db) ((float *)tensor_data(db))[j] = (float)sb;
            } else {
                if (dw) ((double *)tensor_data(dw))[j] = sw;
                if (db) ((double *)tensor_data(db))[j] = sb;
            }
        }
    }
    goto done;
nomem:
    e = err_kind();
done:
    mem_free(part);
    tensor_release(xc);
    tensor_release(wc);
    tensor_release(gc);
    return e;
}
static const node_type LAYER_NORM_BW = {"NativeLayerNormBackward0", layer_norm_backward, NULL};

static eng_err ln_check_param(const tensor *p, const char *what, const tensor *x,
                              const int64_t *nshape, int nd)
{
    char b1[128], b2[128];
    bool same = p->ndim == nd;
    for (int k = 0; same && k < nd; k++) same = p->shape[k] == nshape[k];
    if (!same)
        return err_set(E_SHAPE, "Expected %s to be of same shape as normalized_shape, but got "
                       "%s of shape %s and normalized_shape = %s", what, what,
                       fmt_shape(b1, sizeof b1, p->shape, p->ndim),
                       fmt_shape(b2, sizeof b2, nshape, nd));
    if (p->dtype != x->dtype)
        return err_set(E_DTYPE, "expected scalar type %s but found %s",
                       torch_scalar_name((dtype)x->dtype), torch_scalar_name((dtype)p->dtype));
    return E_OK;
}

eng_err op_layer_norm(tensor **out, tensor *x, const int64_t *nshape, int nd, tensor *w,
                      tensor *b, double eps)
{
    if (nd < 1)
        return err_set(E_SHAPE, "Expected normalized_shape to be at least 1-dimensional, i.e., "
                       "containing at least one element, but got normalized_shape = []");
    eng_err e;
    if ((w && (e = ln_check_param(w, "weight", x, nshape, nd))) ||
        (b && (e = ln_check_param(b, "bias", x, nshape, nd))))
        return e;
    bool match = x->ndim >= nd;
    for (int k = 0; match && k < nd; k++) match = x->shape[x->ndim - nd + k] == nshape[k];
    if (!match) {
        char b1[128], b2[128];
        fmt_shape(b1, sizeof b1, nshape, nd);
        fmt_shape(b2, sizeof b2, x->shape, x->ndim);
        return err_set(E_SHAPE, "Given normalized_shape=%s, expected input with shape [*, %s, "
                       "but got input of size%s", b1, b1 + 1, b2);
    }
    if (!dtype_is_float((dtype)x->dtype))
        return err_set(E_DTYPE, "\"LayerNormKernelImpl\" not implemented for '%s'",
                       torch_scalar_name((dtype)x->dtype));
    dtype dt = (dtype)x->dtype;
    int64_t N = 1, M;
    for (int k = 0; k < nd; k++) N *= nshape[k];
    M = N ? x->numel / N : 0;
    int64_t mshape[1] = {M};
    tensor *xc = NULL, *wc = NULL, *bc = NULL, *y = NULL, *mean = NULL, *rstd = NULL;
    if ((e = contig_raw(&xc, x, dt)) || (w && (e = contig_raw(&wc, w, dt))) ||
        (b && (e = contig_raw(&bc, b, dt))))
        goto done;
    if (!(y = tensor_new(dt, x->shape, x->ndim)) || !(mean = tensor_new(DT_F64, mshape, 1)) ||
        !(rstd = tensor_new(DT_F64, mshape, 1))) {
        e = err_kind();
        goto done;
    }
    ln_ctx k = {tensor_data(xc), wc ? tensor_data(wc) : NULL, bc ? tensor_data(bc) : NULL,
                NULL, tensor_data(y), tensor_data(mean), tensor_data(rstd), NULL, M, N,
                ln_grain(N), eps};
    par_for(M, k.block, dt == DT_F32 ? ln_fwd_f32 : ln_fwd_f64, &k);
    tensor *ins[3] = {x, w, b};
    node *n = record(&LAYER_NORM_BW, ins, 3, &y, 1, LN_NSAVED, sizeof(ln_attr), &e);
    if (!e && n) {
        ln_attr *a = node_attrs(n);
        a->nd = nd;
        a->eps = eps;
        node_save(n, LN_X, x);
        if (w) node_save(n, LN_W, w);
        if (b) node_save(n, LN_B, b);
        node_save(n, LN_MEAN, mean);
        node_save(n, LN_RSTD, rstd);
    }
done:
    tensor_release(xc);
    tensor_release(wc);
    tensor_release(bc);
    tensor_release(mean);
    tensor_release(rstd);
    if (e) {
        tensor_release(y);
        return e;
    }
    *out = y;
    return E_OK;
}

/* ---- embedding ---- */
/* Rows of w (contiguous, rows of `dim` elements of size es) at idx[0..K) into out. */
typedef struct emb_ctx {
    const int64_t *idx;
    const char *src;
    char *dst;
    int64_t dim, K;
    size_t es;
} emb_ctx;

static void emb_gather(void *p, int64_t lo, int64_t hi)
{
    const emb_ctx *c = p;
    size_t row = (size_t)c->dim * c->es;
    for (int64_t k = lo; k < hi; k++)
        memcpy(c->dst + (size_t)k * row, c->src + (size_t)c->idx[k] * row, row);
}

/* Gradient rows added into their embedding rows: chunks of columns, each walking every index
 * in order, so the sums are the same for any thread count. */
#define EMB_SCATTER(S, T)                                                                  \
    static void emb_scatter_##S(void *p, int64_t lo, int64_t hi)                           \
    {                                                                                      \
        const emb_ctx *c = p;                                                              \
        const T *g = (const T *)c->src;                                                    \
        T *r = (T *)c->dst;                                                                \
        for (int64_t k = 0; k < c->K; k++) {                                               \
            T *dst = r + c->idx[k] * c->dim;                                               \
            const T *src = g + k * c->dim;                                                 \
            for (int64_t j = lo; j < hi; j++) dst[j] += src[j];                            \
        }                                                                                  \
    }
EMB_SCATTER(f32, float)
EMB_SCATTER(f64, double)

static eng_err emb_indices(tensor **out, tensor *indices, int64_t num)
{
    if (indices->dtype != DT_I64) {
        static const char *names[DT_COUNT] = {"torch.FloatTensor", "torch.DoubleTensor",
                                              "torch.LongTensor", "torch.BoolTensor"};
        return err_set(E_DTYPE, "Expected tensor for argument #1 'indices' to have one of the "
                       "following scalar types: Long, Int; but got %s instead (while checking "
                       "arguments for embedding)", names[indices->dtype]);
    }
    if (indices->ndim >= MAX_DIMS)
        return err_set(E_RANGE, "indices have %d dims; at most %d are supported",
                       indices->ndim, MAX_DIMS - 1);
    tensor *ic = NULL;
    eng_err e = contig_raw(&ic, indices, DT_I64);
    if (e) return e;
    const int64_t *idx = tensor_data(ic);
    for (int64_t k = 0; k < ic->numel; k++)
        if (idx[k] < 0 || idx[k] >= num) {
            e = err_set(E_RANGE, "index out of range in self (index %lld, %lld embeddings)",
                        (long long)idx[k], (long long)num);
            tensor_release(ic);
            return e;
        }
    *out = ic;
    return E_OK;
}

static eng_err embedding_dense(tensor **out, tensor *g, tensor *indices, int64_t num);

static eng_err embedding_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    if (!c->needed[0]) return E_OK;
    tensor *indices;
    eng_err e = saved_get(n, c, 0, &indices);
    if (e) return e;
    return embedding_dense(&gout[0], gin[0], indices, *(int64_t *)node_attrs(n));
}
static const node_type EMBEDDING_BW = {"EmbeddingBackward0", embedding_backward, NULL};

/* The gradient of embedding_dense w.r.t. its g is an embedding of the incoming gradient. */
static eng_err embedding_dense_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    if (!c->needed[0]) return E_OK;
    tensor *indices;
    eng_err e = saved_get(n, c, 0, &indices);
    if (e) return e;
    return op_embedding(&gout[0], gin[0], indices);
}
static const node_type EMBEDDING_DENSE_BW = {"EmbeddingDenseBackwardBackward0",
                                             embedding_dense_backward, NULL};

/* zeros([num, dim]) with each row k of g (shaped indices.shape + [dim]) added at indices[k]. */
static eng_err embedding_dense(tensor **out, tensor *g, tensor *indices, int64_t num)
{
    dtype dt = (dtype)g->dtype;
    int64_t dim = g->shape[g->ndim - 1], shape[2] = {num, dim};
    tensor *ic = NULL, *gc = NULL, *r = NULL;
    eng_err e;
    if ((e = emb_indices(&ic, indices, num)) || (e = contig_raw(&gc, g, dt))) goto done;
    if (!(r = tensor_new(dt, shape, 2))) {
        e = err_kind();
        goto done;
    }
    memset(tensor_data(r), 0, (size_t)r->numel * dtype_size(dt));
    emb_ctx k = {tensor_data(ic), tensor_data(gc), tensor_data(r), dim, ic->numel, 0};
    par_for(dim, 256, dt == DT_F32 ? emb_scatter_f32 : emb_scatter_f64, &k);
    node *n = record(&EMBEDDING_DENSE_BW, &g, 1, &r, 1, 1, 0, &e);
    if (!e && n) node_save(n, 0, indices);
done:
    tensor_release(ic);
    tensor_release(gc);
    if (e) {
        tensor_release(r);
        return e;
    }
    *out = r;
    return E_OK;
}

eng_err op_embedding(tensor **out, tensor *weight, tensor *indices)
{
    if (weight->ndim != 2) return err_set(E_SHAPE, "'weight' must be 2-D");
    int64_t num = weight->shape[0], dim = weight->shape[1];
    tensor *ic = NULL, *wc = NULL, *r = NULL;
    eng_err e;
    if ((e = emb_indices(&ic, indices, num)) ||
        (e = contig_raw(&wc, weight, (dtype)weight->dtype)))
        goto done;
    int64_t shape[MAX_DIMS];
    memcpy(shape, indices->shape, (size_t)indices->ndim * sizeof *shape);
    shape[indices->ndim] = dim;
    if (!(r = tensor_new((dtype)weight->dtype, shape, indices->ndim + 1))) {
        e = err_kind();
        goto done;
    }
    emb_ctx k = {tensor_data(ic), tensor_data(wc), tensor_data(r), dim, ic->numel,
                 dtype_size((dtype)weight->dtype)};
    par_for(ic->numel, PAR_GRAIN_CHEAP / (dim + 1) + 1, emb_gather, &k);
    node *n = record(&EMBEDDING_BW, &weight, 1, &r, 1, 1, sizeof(int64_t), &e);
    if (!e && n) {
        *(int64_t *)node_attrs(n) = num;
        node_save(n, 0, indices);
    }
done:
    tensor_release(ic);
    tensor_release(wc);
    if (e) {
        tensor_release(r);
        return e;
    }
    *out = r;
    return E_OK;
}
