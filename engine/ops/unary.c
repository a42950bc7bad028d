/*
 * unary.c: elementwise math (exp..cos), activations (tanh..softplus) and clamp, with their
 * grad_fns. tanh, sigmoid and relu (the hot ones) run vectorised float32 kernels forward and a
 * fused one-pass kernel backward, unless the backward itself is being recorded.
 */
#include <math.h>
#include <string.h>

#include "../kernels/vmath.h"
#include "ewise.h"

/* ---- forward kernels ---- */
#define F32_F64_LOOPS(NAME, EXPR_F, EXPR_D)                                                \
    EW_UNARY_LOOP(NAME##_f32, float, float, EXPR_F)                                        \
    EW_UNARY_LOOP(NAME##_f64, double, double, EXPR_D)
F32_F64_LOOPS(exp, expf(x), exp(x))
F32_F64_LOOPS(log, logf(x), log(x))
F32_F64_LOOPS(log1p, log1pf(x), log1p(x))
F32_F64_LOOPS(expm1, expm1f(x), expm1(x))
F32_F64_LOOPS(sqrt, sqrtf(x), sqrt(x))
F32_F64_LOOPS(rsqrt, 1.0f / sqrtf(x), 1.0 / sqrt(x))
F32_F64_LOOPS(sin, sinf(x), sin(x))
F32_F64_LOOPS(cos, cosf(x), cos(x))
F32_F64_LOOPS(tanh, vm_tanhf(x), tanh(x))
F32_F64_LOOPS(sigmoid, vm_sigmoidf(x), 1.0 / (1.0 + exp(-x)))
F32_F64_LOOPS(silu, x * vm_sigmoidf(x), x / (1.0 + exp(-x)))
/* P: slope; beta, threshold (PyTorch computes in the tensor's dtype) */
F32_F64_LOOPS(leaky, x > 0 ? x : x * (float)P[0], x > 0 ? x : x * P[0])
F32_F64_LOOPS(softplus,
              x * (float)P[0] > (float)P[1] ? x : log1pf(expf(x * (float)P[0])) / (float)P[0],
              x * P[0] > P[1] ? x : log1p(exp(x * P[0])) / P[0])

/* relu keeps NaN (NaN < 0 is false) and -0, as PyTorch's clamp_min(0) does; sign(NaN) is
 * 0, as torch.sign's. */
#define SAME_LOOPS(T, S, ABS)                                                              \
    EW_UNARY_LOOP(relu_##S, T, T, x < 0 ? (T)0 : x)                                        \
    EW_UNARY_LOOP(abs_##S, T, T, ABS)                                                      \
    EW_UNARY_LOOP(sign_##S, T, T, (T)((x > 0) - (x < 0)))
SAME_LOOPS(float, f32, fabsf(x))
SAME_LOOPS(double, f64, fabs(x))
SAME_LOOPS(int64_t, i64, x < 0 ? i64_neg(x) : x) /* (|INT64_MIN| wraps, as in PyTorch) */
EW_UNARY_LOOP(sign_b, uint8_t, uint8_t, x)

/* clamp is min(max(x, lo), hi): lo > hi gives hi, NaN stays NaN. P = lo, hi, has_lo, has_hi;
 * float loops get -inf / +inf for an absent bound, int64 ones test the flags. */
static inline float clamp_f(float v, float lo, float hi)
{
    v = v < lo ? lo : v;
    return v > hi ? hi : v;
}
static inline double clamp_d(double v, double lo, double hi)
{
    v = v < lo ? lo : v;
    return v > hi ? hi : v;
}
static inline int64_t clamp_i(int64_t v, const double *p)
{
    v = p[2] != 0 && v < (int64_t)p[0] ? (int64_t)p[0] : v;
    return p[3] != 0 && v > (int64_t)p[1] ? (int64_t)p[1] : v;
}
EW_UNARY_LOOP(clamp_f32, float, float, clamp_f(x, (float)P[0], (float)P[1]))
EW_UNARY_LOOP(clamp_f64, double, double, clamp_d(x, P[0], P[1]))
EW_UNARY_LOOP(clamp_i64, int64_t, int64_t, clamp_i(x, P))

/* GELU's derivative: exact Phi(x) + x phi(x); tanh form 0.5 (1 + T) + 0.5 x (1 - T^2) u'. */
#define GELU_K 0.7978845608028654 /* sqrt(2 / pi) */
#define GELU_C 0.044715
#define INV_SQRT_2PI 0.3989422804014327
#define GELU_LOOPS(T, S, ERF, EXP, TANH)                                                   \
    static inline T gelu_u_##S(T v) { return (T)GELU_K * (v + (T)GELU_C * v * v * v); }    \
    EW_UNARY_LOOP(gelu_##S, T, T, (T)0.5 * x * ((T)1 + ERF(x * (T)M_SQRT1_2)))             \
    EW_UNARY_LOOP(gelu_tanh_##S, T, T, (T)0.5 * x * ((T)1 + TANH(gelu_u_##S(x))))          \
    EW_BINARY_LOOP(gelu_bw_##S, T, T,                                                      \
                   x * ((T)0.5 * ((T)1 + ERF(y * (T)M_SQRT1_2)) +                          \
                        y * (T)INV_SQRT_2PI * EXP((T)-0.5 * y * y)))                       \
    static inline T gelu_tanh_d_##S(T v)                                                   \
    {                                                                                      \
        T t = TANH(gelu_u_##S(v));                                                         \
        return (T)0.5 * ((T)1 + t) +                                                       \
               (T)0.5 * v * ((T)1 - t * t) * (T)GELU_K * ((T)1 + (T)(3 * GELU_C) * v * v); \
    }                                                                                      \
    EW_BINARY_LOOP(gelu_tanh_bw_##S, T, T, x * gelu_tanh_d_##S(y))
GELU_LOOPS(float, f32, erff, expf, vm_tanhf)
GELU_LOOPS(double, f64, erf, exp, tanh)

/* Fused backward kernels: x is the incoming gradient, y the saved output (relu: x the
 * output, y the gradient, the order of PyTorch's threshold_backward, whose operands also
 * decide the result's layout). The composed formulas below evaluate the same expressions op
 * by op, so both paths agree bitwise (tanh uses (1 - y)(1 + y): no product left for the
 * compiler to contract into an FMA). */
#define FUSED_LOOPS(T, S)                                                                  \
    EW_BINARY_LOOP(tanh_bw_##S, T, T, x * (((T)1 - y) * ((T)1 + y)))                       \
    EW_BINARY_LOOP(sigmoid_bw_##S, T, T, x * ((T)1 - y) * y)                               \
    EW_BINARY_LOOP(relu_bw_##S, T, T, x <= 0 ? (T)0 : y)
FUSED_LOOPS(float, f32)
FUSED_LOOPS(double, f64)

/* ---- the shared forward and backward of one-input ops ---- */
typedef enum ukind {
    U_FLOAT,     /* float function: int64 and bool compute in float32 (torch.exp(int)) */
    U_SAME,      /* keeps the dtype; refused where loops[dt] is NULL */
} ukind;
enum { SAVE_NONE, SAVE_IN, SAVE_OUT };

struct ufunc;
/** Op attributes: the op's descriptor and its parameters. */
typedef struct uattr {
    const struct ufunc *f;
    double p[4];
} uattr;

/** gout = the input's gradient from g and the saved tensor s. fused: no graph is being
 *  recorded, so a one-pass kernel may replace the composition. */
typedef eng_err (*ugrad_fn)(tensor **gout, tensor *g, tensor *s, const uattr *at, bool fused);

typedef struct ufunc {
    const char *name;
    node_type bw;
    ukind kind;
    iter_loop loops[DT_COUNT];
    ugrad_fn grad;
    int save;
    int64_t grain;
} ufunc;

static eng_err unary_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    if (!c->needed[0]) return E_OK;
    const uattr *at = (const uattr *)node_attrs(n);
    tensor *s = NULL;
    eng_err e = at->f->save != SAVE_NONE ? saved_get(n, c, 0, &s) : E_OK;
    return e ? e : at->f->grad(&gout[0], gin[0], s, at, !c->create_graph);
}

static eng_err unary_apply(tensor **out, tensor *a, const ufunc *f, const double *params)
{
    dtype dt = (dtype)a->dtype;
    if (f->kind == U_FLOAT && !dtype_is_float(dt)) dt = DT_DEFAULT_FLOAT;
    if (!f->loops[dt])
        return err_set(E_DTYPE, "%s is not implemented for %s tensors", f->name, dtype_name(dt));
    tensor *r = NULL;
    eng_err e;
    if (!ew_scalar_now(&e, &r, dt, dt, &a, 1, f->loops[dt], params))
        e = ew_map(&r, dt, dt, &a, 1, f->loops[dt], params, params ? 4 : 0, f->grain);
    if (e) return e;
    if (dtype_is_float(dt)) {
        node *n = record(&f->bw, &a, 1, &r, 1, f->save != SAVE_NONE, sizeof(uattr), &e);
        if (!e && n) {
            uattr *at = (uattr *)node_attrs(n);
            at->f = f;
            if (params) memcpy(at->p, params, sizeof at->p);
            if (f->save == SAVE_IN) node_save(n, 0, a);
            if (f->save == SAVE_OUT) e = node_save_output(n, 0, r);
        }
    }
    if (e) {
        tensor_release(r);
        return e;
    }
    *out = r;
    return E_OK;
}

static void release_all(tensor **t, int n)
{
    for (int i = 0; i < n; i++) tensor_release(t[i]);
}

/* A fused backward kernel over (a, b), in the loop's order (see FUSED_LOOPS). */
static eng_err fused(tensor **gout, tensor *a, tensor *b, iter_loop f32, iter_loop f64)
{
    const loop_pair lp = {f32, f64};
    dtype dt = (dtype)b->dtype;
    tensor *ins[2] = {a, b};
    eng_err e;
    if (ew_scalar_now(&e, gout, dt, dt, ins, 2, pick(&lp, dt), NULL)) return e;
    return ew_map(gout, dt, dt, ins, 2, pick(&lp, dt), NULL, 0, PAR_GRAIN_CHEAP);
}

/* ---- backward formulas (PyTorch's derivatives.yaml), written with ops ---- */
static eng_err exp_grad(tensor **go, tensor *g, tensor *y, const uattr *at, bool fu)
{
    (void)at, (void)fu;
    return op_mul(go, g, y); /* g * result */
}

static eng_err log_grad(tensor **go, tensor *g, tensor *x, const uattr *at, bool fu)
{
    (void)at, (void)fu;
    return op_div(go, g, x);
}

static eng_err log1p_grad(tensor **go, tensor *g, tensor *x, const uattr *at, bool fu)
{
    (void)at, (void)fu;
    tensor *t = NULL;
    eng_err e = op_add_scalar(&t, x, 1.0);
    if (!e) e = op_div(go, g, t);
    tensor_release(t);
    return e;
}

static eng_err expm1_grad(tensor **go, tensor *g, tensor *y, const uattr *at, bool fu)
{
    (void)at, (void)fu;
    tensor *t = NULL;
    eng_err e = op_add_scalar(&t, y, 1.0);
    if (!e) e = op_mul(go, g, t);
    tensor_release(t);
    return e;
}

static eng_err sqrt_grad(tensor **go, tensor *g, tensor *y, const uattr *at, bool fu)
{
    (void)at, (void)fu;
    tensor *t = NULL;
    eng_err e = op_mul_scalar(&t, y, 2.0);
    if (!e) e = op_div(go, g, t); /* g / (2 result) */
    tensor_release(t);
    return e;
}

static eng_err rsqrt_grad(tensor **go, tensor *g, tensor *y, const uattr *at, bool fu)
{
    (void)at, (void)fu;
    tensor *t[2] = {0};
    eng_err e;
    if (!(e = op_pow_scalar(&t[0], y, 3.0)) && !(e = op_mul(&t[1], g, t[0])))
        e = op_mul_scalar(go, t[1], -0.5); /* -0.5 g result^3 */
    release_all(t, 2);
    return e;
}

/* AbsBackward0: g * sgn(x), as PyTorch writes it (self.sgn(), not self.sign()): under
 * create_graph the node is SgnBackward0, whose zeros are laid out unlike SignBackward0's. */
static eng_err abs_grad(tensor **go, tensor *g, tensor *x, const uattr *at, bool fu)
{
    (void)at, (void)fu;
    tensor *t = NULL;
    eng_err e = op_sgn(&t, x);
    if (!e) e = op_mul(go, g, t);
    tensor_release(t);
    return e;
}

/* SgnBackward0 for real x: PyTorch's sgn_backward, _efficientzerotensor(sgn.sizes(),
 * sgn.options()): fresh contiguous zeros of the result's shape and dtype, whatever the layout
 * of x or of g (sign's own formula, zeros_like(grad), would keep g's), marked as a ZeroTensor
 * so that a sum with another gradient takes that one's layout (tensor_is_zeros). */
static eng_err sgn_grad(tensor **go, tensor *g, tensor *x, const uattr *at, bool fu)
{
    (void)x, (void)at, (void)fu;
    eng_err e = op_full(go, (dtype)g->dtype, g->shape, g->ndim, 0.0);
    if (!e) (*go)->zeros = 1;
    return e;
}

static eng_err sin_grad(tensor **go, tensor *g, tensor *x, const uattr *at, bool fu)
{
    (void)at, (void)fu;
    tensor *t = NULL;
    eng_err e = op_cos(&t, x);
    if (!e) e = op_mul(go, g, t);
    tensor_release(t);
    return e;
}

static eng_err cos_grad(tensor **go, tensor *g, tensor *x, const uattr *at, bool fu)
{
    (void)at, (void)fu;
    tensor *t[2] = {0};
    eng_err e;
    if (!(e = op_sin(&t[0], x)) && !(e = op_neg(&t[1], t[0]))) e = op_mul(go, g, t[1]);
    release_all(t, 2);
    return e;
}

/* tanh's and sigmoid's gradients are ops of their own, as PyTorch's tanh_backward and
 * sigmoid_backward: fused kernels, and under create_graph nodes TanhBackwardBackward0 and
 * SigmoidBackwardBackward0 (derivatives.yaml): in g, the same op of the incoming gradient;
 * in y, G (-2 y g) for tanh and G g (-2 y + 1) for sigmoid. */
typedef enum act_kind { ACT_TANH, ACT_SIGMOID } act_kind;

/* (Out of line: inlined, its frame was set up in tanh_grad and sigmoid_grad on the fused
 * path too, which backward without create_graph takes.) */
__attribute__((noinline)) static eng_err act_bw_op(tensor **out, tensor *g, tensor *y,
                                                   act_kind k);

static eng_err act_bwbw_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    act_kind k = *(act_kind *)node_attrs(n);
    tensor *g, *y, *t[3] = {0};
    eng_err e;
    if ((e = saved_get(n, c, 0, &g)) || (e = saved_get(n, c, 1, &y))) return e;
    if (c->needed[0] && (e = act_bw_op(&gout[0], gin[0], y, k))) return e;
    if (c->needed[1]) {
        if (k == ACT_TANH) {
            if (!(e = op_mul_scalar1(&t[0], y, -2.0)) && !(e = op_mul(&t[1], t[0], g)))
                e = op_mul(&gout[1], gin[0], t[1]);
        } else if (!(e = op_mul(&t[0], gin[0], g)) && !(e = op_mul_scalar1(&t[1], y, -2.0)) &&
                   !(e = op_add_scalar1(&t[2], t[1], 1.0))) {
            e = op_mul(&gout[1], t[0], t[2]);
        }
    }
    release_all(t, 3);
    return e;
}
static const node_type TANH_BWBW = {"TanhBackwardBackward0", act_bwbw_backward, NULL};
static const node_type SIGMOID_BWBW = {"SigmoidBackwardBackward0", act_bwbw_backward, NULL};

static eng_err act_bw_op(tensor **out, tensor *g, tensor *y, act_kind k)
{
    tensor *r = NULL;
    eng_err e = k == ACT_TANH ? fused(&r, g, y, tanh_bw_f32, tanh_bw_f64)
                              : fused(&r, g, y, sigmoid_bw_f32, sigmoid_bw_f64);
    return e ? e : record_grad_op(out, r, k == ACT_TANH ? &TANH_BWBW : &SIGMOID_BWBW, g, y, &k,
                                  sizeof k);
}

/* fu: grad mode is off, act_bw_op's record_grad_op would record nothing: the kernel alone. */
static eng_err tanh_grad(tensor **go, tensor *g, tensor *y, const uattr *at, bool fu)
{
    (void)at;
    return fu ? fused(go, g, y, tanh_bw_f32, tanh_bw_f64) : act_bw_op(go, g, y, ACT_TANH);
}

static eng_err sigmoid_grad(tensor **go, tensor *g, tensor *y, const uattr *at, bool fu)
{
    (void)at;
    return fu ? fused(go, g, y, sigmoid_bw_f32, sigmoid_bw_f64)
              : act_bw_op(go, g, y, ACT_SIGMOID);
}

/* relu's and leaky_relu's gradients gate g by the sign of a reference (relu: its output,
 * leaky_relu: its input). Under create_graph that is PyTorch's ThresholdBackwardBackward0 /
 * LeakyReluBackwardBackward0: a function of g and of the reference, with a zero derivative
 * in the reference but an edge to it, so that differentiating once more with respect to x
 * gives zeros where it was an error (the gate alone depended on g only). */
typedef struct gate_attr {
    bool leaky;
    double slope;
} gate_attr;

static eng_err gate(tensor **out, tensor *g, tensor *ref, bool leaky, double slope);

static eng_err gate_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    const gate_attr *a = node_attrs(n);
    tensor *ref;
    eng_err e = saved_get(n, c, 0, &ref);
    if (e) return e;
    if (c->needed[0] && (e = gate(&gout[0], gin[0], ref, a->leaky, a->slope))) return e;
    /* self: zeros_like(grad) in derivatives.yaml: the incoming gradient's layout, not ref's */
    if (c->needed[1]) e = op_full_like(&gout[1], gin[0], 0.0);
    return e;
}
static const node_type THRESHOLD_BB = {"ThresholdBackwardBackward0", gate_backward, NULL};
static const node_type LEAKY_BB = {"LeakyReluBackwardBackward0", gate_backward, NULL};

static eng_err gate(tensor **out, tensor *g, tensor *ref, bool leaky, double slope)
{
    tensor *t[2] = {0}, *r = NULL;
    bool prev = grad_mode_set(false);
    eng_err e;
    if (leaky) {
        if (!(e = op_compare_scalar(&t[0], ref, 0.0, CMP_GT)) &&
            !(e = op_mul_scalar(&t[1], g, slope)))
            e = op_where(&r, t[0], g, t[1]);
    } else if (!(e = op_compare_scalar(&t[0], ref, 0.0, CMP_LE))) {
        /* 0 where y <= 0, laid out by (y, g) as threshold_backward's result */
        e = op_where_zero(&r, t[0], g, true);
    }
    grad_mode_set(prev);
    release_all(t, 2);
    if (e) return e;
    tensor *ins[2] = {g, ref};
    node *n = record(leaky ? &LEAKY_BB : &THRESHOLD_BB, ins, 2, &r, 1, 1, sizeof(gate_attr), &e);
    if (e) {
        tensor_release(r);
        return e;
    }
    if (n) {
        *(gate_attr *)node_attrs(n) = (gate_attr){leaky, slope};
        node_save(n, 0, ref);
    }
    *out = r;
    return E_OK;
}

static eng_err relu_grad(tensor **go, tensor *g, tensor *y, const uattr *at, bool fu)
{
    (void)at;
    if (fu) return fused(go, y, g, relu_bw_f32, relu_bw_f64);
    return gate(go, g, y, false, 0.0);
}

static eng_err leaky_grad(tensor **go, tensor *g, tensor *x, const uattr *at, bool fu)
{
    (void)fu;
    return gate(go, g, x, true, at->p[0]);
}

static eng_err silu_grad(tensor **go, tensor *g, tensor *x, const uattr *at, bool fu)
{
    (void)at, (void)fu;
    /* g s (1 + x (1 - s)), s = sigmoid(x) */
    tensor *t[5] = {0};
    eng_err e;
    if (!(e = op_sigmoid(&t[0], x)) && !(e = op_rsub_scalar(&t[1], t[0], 1.0)) &&
        !(e = op_mul(&t[2], x, t[1])) && !(e = op_add_scalar(&t[3], t[2], 1.0)) &&
        !(e = op_mul(&t[4], t[0], t[3])))
        e = op_mul(go, g, t[4]);
    release_all(t, 5);
    return e;
}

/* softplus' gradient is an op of its own, as PyTorch's softplus_backward: its kernel
 * (z = exp(beta x); g where beta x > threshold, else g z / (z + 1), in the dtype: e / (e + 1)
 * is still the tiny e^(beta x) where 1 / (1 + exp(-beta x)) would be 0), and under
 * create_graph a node SoftplusBackwardBackward0: in g, the same op of the incoming gradient
 * G; in x, softplus_double_backward(G g, x), that is sigmoid_backward(G g, sigmoid(beta x))
 * masked by beta x < threshold (0 at beta x == threshold, where the value is still the
 * sigmoid branch), times beta. */
#define SOFTPLUS_BW_LOOPS(T, S, EXP)                                                       \
    EW_BINARY_LOOP(softplus_bw_##S, T, T,                                                  \
                   y * (T)P[0] > (T)P[1] ? x                                               \
                                         : x * EXP(y * (T)P[0]) / (EXP(y * (T)P[0]) + (T)1))
SOFTPLUS_BW_LOOPS(float, f32, expf)
SOFTPLUS_BW_LOOPS(double, f64, exp)

static eng_err softplus_bw_op(tensor **out, tensor *g, tensor *x, const double *p);

static eng_err softplus_bwbw_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    const double *p = node_attrs(n); /* beta, threshold */
    tensor *g, *x, *t[7] = {0};
    eng_err e;
    if ((e = saved_get(n, c, 0, &g)) || (e = saved_get(n, c, 1, &x))) return e;
    if (c->needed[0] && (e = softplus_bw_op(&gout[0], gin[0], x, p))) return e;
    if (c->needed[1] && !(e = op_mul(&t[0], gin[0], g)) &&
        !(e = op_mul_scalar1(&t[1], x, p[0])) && !(e = op_sigmoid(&t[2], t[1])) &&
        !(e = act_bw_op(&t[3], t[0], t[2], ACT_SIGMOID)) &&
        !(e = op_compare_scalar(&t[4], t[1], p[1], CMP_LT)) &&
        !(e = op_to_dtype(&t[5], t[4], (dtype)t[3]->dtype)) && !(e = op_mul(&t[6], t[3], t[5])))
        e = op_mul_scalar1(&gout[1], t[6], p[0]);
    release_all(t, 7);
    return e;
}
static const node_type SOFTPLUS_BWBW = {"SoftplusBackwardBackward0", softplus_bwbw_backward,
                                        NULL};

static eng_err softplus_bw_op(tensor **out, tensor *g, tensor *x, const double *p)
{
    static const loop_pair lp = {softplus_bw_f32, softplus_bw_f64};
    dtype dt = (dtype)x->dtype;
    tensor *ins[2] = {g, x}, *r = NULL;
    eng_err e = ew_map(&r, dt, dt, ins, 2, pick(&lp, dt), p, 2, PAR_GRAIN_COSTLY);
    return e ? e : record_grad_op(out, r, &SOFTPLUS_BWBW, g, x, p, 2 * sizeof(double));
}

static eng_err softplus_grad(tensor **go, tensor *g, tensor *x, const uattr *at, bool fu)
{
    (void)fu;
    return softplus_bw_op(go, g, x, at->p);
}

static eng_err clamp_grad(tensor **go, tensor *g, tensor *x, const uattr *at, bool fu)
{
    (void)fu;
    /* g where lo <= x <= hi (NaN x gets none), else 0 */
    const double *p = at->p;
    tensor *t[2] = {0};
    eng_err e = E_OK;
    if (p[2] != 0) e = op_compare_scalar(&t[0], x, p[0], CMP_GE);
    if (!e && p[3] != 0) e = op_compare_scalar(&t[1], x, p[1], CMP_LE);
    tensor *m = t[0] ? t[0] : t[1];
    /* (the first mask and-ed in place, as PyTorch's clamp_backward: it keeps that mask's
     * layout, which the result then follows) */
    if (!e && t[0] && t[1]) e = op_binary_(t[0], t[1], IP_MUL); /* bool * bool: and */
    if (!e) e = op_where_zero(go, m, g, false);
    release_all(t, 2);
    return e;
}

/* ---- GELU: its backward is an op of its own (GeluBackwardBackward0, as in PyTorch), so the
 * fused derivative serves every order of differentiation. ---- */
static eng_err gelu_bw_op(tensor **out, tensor *g, tensor *x, bool approx);

/* gelu''(x): exact phi(x) (2 - x^2); tanh form (1 - T^2) (u' - x T u'^2 + x u'' / 2) with
 * u = k (x + c x^3), T = tanh(u). */
static eng_err gelu_d2(tensor **out, tensor *x, bool approx)
{
    tensor *t[17] = {0};
    eng_err e;
    if (!(e = op_mul(&t[0], x, x)) && !approx) {
        if (!(e = op_mul_scalar(&t[1], t[0], -0.5)) && !(e = op_exp(&t[2], t[1])) &&
            !(e = op_mul_scalar(&t[3], t[2], INV_SQRT_2PI)) &&
            !(e = op_rsub_scalar(&t[4], t[0], 2.0)))
            e = op_mul(out, t[3], t[4]);
    } else if (!e && !(e = op_mul_scalar(&t[1], t[0], GELU_C)) &&
               !(e = op_add_scalar(&t[2], t[1], 1.0)) && !(e = op_mul(&t[3], x, t[2])) &&
               !(e = op_mul_scalar(&t[4], t[3], GELU_K)) &&               /* u */
               !(e = op_tanh(&t[5], t[4])) &&                             /* T */
               !(e = op_mul_scalar(&t[6], t[0], 3 * GELU_C)) &&
               !(e = op_add_scalar(&t[7], t[6], 1.0)) &&
               !(e = op_mul_scalar(&t[8], t[7], GELU_K)) &&               /* u' */
               !(e = op_mul(&t[9], t[8], t[8])) && !(e = op_mul(&t[10], x, t[5])) &&
               !(e = op_mul(&t[11], t[10], t[9])) &&                      /* x T u'^2 */
               !(e = op_mul_scalar(&t[12], t[0], 3 * GELU_K * GELU_C)) && /* x u'' / 2 */
               !(e = op_sub(&t[13], t[8], t[11])) && !(e = op_add(&t[14], t[13], t[12])) &&
               !(e = op_mul(&t[15], t[5], t[5])) && !(e = op_rsub_scalar(&t[16], t[15], 1.0)))
        e = op_mul(out, t[16], t[14]);
    release_all(t, 17);
    return e;
}

static eng_err gelu_bwbw_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    bool approx = *(bool *)node_attrs(n);
    tensor *g, *x, *t[2] = {0};
    eng_err e;
    if ((e = saved_get(n, c, 0, &g)) || (e = saved_get(n, c, 1, &x))) return e;
    if (c->needed[0] && (e = gelu_bw_op(&gout[0], gin[0], x, approx))) return e;
    if (c->needed[1] && !(e = gelu_d2(&t[0], x, approx)) && !(e = op_mul(&t[1], gin[0], g)))
        e = op_mul(&gout[1], t[1], t[0]);
    release_all(t, 2);
    return e;
}
static const node_type GELU_BWBW = {"GeluBackwardBackward0", gelu_bwbw_backward, NULL};

static eng_err gelu_bw_op(tensor **out, tensor *g, tensor *x, bool approx)
{
    static const loop_pair exact = {gelu_bw_f32, gelu_bw_f64}, tanhf = {gelu_tanh_bw_f32,
                                                                        gelu_tanh_bw_f64};
    dtype dt = (dtype)x->dtype;
    tensor *ins[2] = {g, x}, *r = NULL;
    eng_err e = ew_map(&r, dt, dt, ins, 2, pick(approx ? &tanhf : &exact, dt), NULL, 0,
                       PAR_GRAIN_COSTLY);
    return e ? e : record_grad_op(out, r, &GELU_BWBW, g, x, &approx, sizeof approx);
}

static eng_err gelu_grad(tensor **go, tensor *g, tensor *x, const uattr *at, bool fu)
{
    (void)fu;
    return gelu_bw_op(go, g, x, at->p[0] != 0);
}

/* ---- the ops ---- */
#define UF(VAR, NAME, BW, KIND, L32, L64, LI, LB, GRAD, SAVE, GRAIN)                       \
    static const ufunc VAR = {NAME, {BW, unary_backward, NULL}, KIND, {L32, L64, LI, LB},   \
                              GRAD, SAVE, GRAIN};
#define UF_FLOAT(NAME, BW, SAVE)                                                           \
    UF(UF_##NAME, #NAME, BW, U_FLOAT, NAME##_f32, NAME##_f64, NULL, NULL, NAME##_grad, SAVE, \
       PAR_GRAIN_COSTLY)                                                                   \
    eng_err op_##NAME(tensor **out, tensor *a) { return unary_apply(out, a, &UF_##NAME, NULL); }

UF_FLOAT(exp, "ExpBackward0", SAVE_OUT)
UF_FLOAT(log, "LogBackward0", SAVE_IN)
UF_FLOAT(log1p, "Log1PBackward0", SAVE_IN)
UF_FLOAT(expm1, "Expm1Backward0", SAVE_OUT)
UF_FLOAT(sqrt, "SqrtBackward0", SAVE_OUT)
UF_FLOAT(rsqrt, "RsqrtBackward0", SAVE_OUT)
UF_FLOAT(sin, "SinBackward0", SAVE_IN)
UF_FLOAT(cos, "CosBackward0", SAVE_IN)
UF_FLOAT(tanh, "TanhBackward0", SAVE_OUT)
UF_FLOAT(sigmoid, "SigmoidBackward0", SAVE_OUT)

UF(UF_ABS, "abs", "AbsBackward0", U_SAME, abs_f32, abs_f64, abs_i64, NULL, abs_grad, SAVE_IN,
   PAR_GRAIN_CHEAP)
UF(UF_SGN, "sgn", "SgnBackward0", U_SAME, sign_f32, sign_f64, sign_i64, sign_b, sgn_grad,
   SAVE_NONE, PAR_GRAIN_CHEAP)
UF(UF_RELU, "relu", "ReluBackward0", U_SAME, relu_f32, relu_f64, relu_i64, NULL, relu_grad,
   SAVE_OUT, PAR_GRAIN_CHEAP)
UF(UF_LEAKY, "leaky_relu", "LeakyReluBackward0", U_SAME, leaky_f32, leaky_f64, NULL, NULL,
   leaky_grad, SAVE_IN, PAR_GRAIN_CHEAP)
UF(UF_GELU, "gelu", "GeluBackward0", U_SAME, gelu_f32, gelu_f64, NULL, NULL, gelu_grad, SAVE_IN,
   PAR_GRAIN_COSTLY)
UF(UF_GELU_TANH, "gelu", "GeluBackward0", U_SAME, gelu_tanh_f32, gelu_tanh_f64, NULL, NULL,
   gelu_grad, SAVE_IN, PAR_GRAIN_COSTLY)
UF(UF_SILU, "silu", "SiluBackward0", U_SAME, silu_f32, silu_f64, NULL, NULL, silu_grad, SAVE_IN,
   PAR_GRAIN_COSTLY)
UF(UF_SOFTPLUS, "softplus", "SoftplusBackward0", U_SAME, softplus_f32, softplus_f64, NULL, NULL,
   softplus_grad, SAVE_IN, PAR_GRAIN_COSTLY)
UF(UF_CLAMP, "clamp", "ClampBackward1", U_SAME, clamp_f32, clamp_f64, clamp_i64, NULL,
   clamp_grad, SAVE_IN, PAR_GRAIN_CHEAP)

eng_err op_abs(tensor **out, tensor *a) { return unary_apply(out, a, &UF_ABS, NULL); }
eng_err op_sgn(tensor **out, tensor *a) { return unary_apply(out, a, &UF_SGN, NULL); }

eng_err op_relu(tensor **out, tensor *a)
{
    if (a->dtype == DT_BOOL) return err_set(E_DTYPE, "Boolean inputs not supported for relu");
    return unary_apply(out, a, &UF_RELU, NULL);
}

/* A float parameter (a slope, beta, a threshold) converts to the tensor's dtype as PyTorch
 * converts it: checked, so a finite value beyond float32's range is an error for float32. */
static eng_err param_check(const tensor *a, double v)
{
    return a->dtype == DT_F32 ? fill_value_check(DT_F32, v) : E_OK;
}

eng_err op_leaky_relu(tensor **out, tensor *a, double slope)
{
    eng_err e = param_check(a, slope);
    if (e) return e;
    double p[4] = {slope};
    return unary_apply(out, a, &UF_LEAKY, p);
}

eng_err op_gelu(tensor **out, tensor *a, bool approximate_tanh)
{
    double p[4] = {approximate_tanh};
    return unary_apply(out, a, approximate_tanh ? &UF_GELU_TANH : &UF_GELU, p);
}

eng_err op_silu(tensor **out, tensor *a) { return unary_apply(out, a, &UF_SILU, NULL); }

eng_err op_softplus(tensor **out, tensor *a, double beta, double threshold)
{
    /* (beta 0 or NaN is no error: PyTorch computes log1p(exp(0)) / 0 = inf, or NaN.) */
    eng_err e = param_check(a, beta);
    if (!e) e = param_check(a, threshold);
    if (e) return e;
    double p[4] = {beta, threshold};
    return unary_apply(out, a, &UF_SOFTPLUS, p);
}

eng_err op_clamp(tensor **out, tensor *a, bool has_lo, double lo, bool has_hi, double hi)
{
    if (!has_lo && !has_hi)
        return err_set(E_INVAL, "At least one of 'min' or 'max' must not be None");
    if ((has_lo && isnan(lo)) || (has_hi && isnan(hi)))
        return err_set(E_INVAL, "clamp bounds must not be NaN, got min=%g, max=%g", lo, hi);
    /* The bounds are Python scalars to type promotion: clamp(int64, 0.5) is float32. */
    promo pr;
    promo_init(&pr);
    promo_add_tensor(&pr, (dtype)a->dtype, a->ndim);
    if (has_lo) promo_add_scalar(&pr, lo);
    if (has_hi) promo_add_scalar(&pr, hi);
    dtype dt = promo_result(&pr);
    /* Each bound converts to the result's dtype as PyTorch converts it (checked: a finite
     * float32 bound beyond FLT_MAX is an error there). */
    eng_err e = has_lo ? fill_value_check(dt, lo) : E_OK;
    if (!e && has_hi) e = fill_value_check(dt, hi);
    if (e) return e;
    bool fl = dtype_is_float(dt);
    double p[4] = {has_lo ? lo : fl ? -INFINITY : 0, has_hi ? hi : fl ? INFINITY : 0, has_lo,
                   has_hi};
    /* A cast (only ever from int64 or bool) needs no graph; a float input passes through.
     * The cast keeps a's layout, as PyTorch's clamp does (cast_raw's contiguous copy gave a
     * transposed int64 input a contiguous result, which views then accepted where PyTorch
     * refuses them). */
    tensor *c = a;
    if (a->dtype != dt) {
        if (!(c = tensor_new_preserve(a, dt))) return err_kind();
        kernel_copy(c, a);
    } else {
        tensor_retain(c);
    }
    e = unary_apply(out, c, &UF_CLAMP, p);
    tensor_release(c);
    return e;
}
