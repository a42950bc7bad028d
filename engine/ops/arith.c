/*
 * arith.c: add, sub, mul, div, pow (tensor-tensor, tensor-scalar, scalar-tensor) and neg.
 * Each op: its kernels, its grad_fn (PyTorch's name) and backward formula, together.
 * Backward formulas return gradients in the broadcast shape and the computation dtype; the
 * engine reduces them to each input's shape and dtype (as PyTorch's validate_outputs does).
 */
#include <math.h>

#include "ewise.h"

/* ---- kernels ---- */
#define ARITH_LOOPS(T, S, ADD, SUB, MUL, NEG)                                              \
    EW_BINARY_LOOP(add_##S, T, T, ADD(x, y))                                               \
    EW_BINARY_LOOP(sub_##S, T, T, SUB(x, y))                                               \
    EW_BINARY_LOOP(mul_##S, T, T, MUL(x, y))                                               \
    EW_UNARY_LOOP(adds_##S, T, T, ADD(x, (T)P[0]))                                         \
    EW_UNARY_LOOP(subs_##S, T, T, SUB(x, (T)P[0]))                                         \
    EW_UNARY_LOOP(rsubs_##S, T, T, SUB((T)P[0], x))                                        \
    EW_UNARY_LOOP(muls_##S, T, T, MUL(x, (T)P[0]))                                         \
    EW_UNARY_LOOP(neg_##S, T, T, NEG(x))
ARITH_LOOPS(float, f32, ADD_OP, SUB_OP, MUL_OP, NEG_OP)
ARITH_LOOPS(double, f64, ADD_OP, SUB_OP, MUL_OP, NEG_OP)
ARITH_LOOPS(int64_t, i64, i64_add, i64_sub, i64_mul, i64_neg) /* (wrapping: ewise.h) */

EW_BINARY_LOOP(div_f32, float, float, x / y)
EW_BINARY_LOOP(div_f64, double, double, x / y)
EW_UNARY_LOOP(divs_f32, float, float, x / (float)P[0])
EW_UNARY_LOOP(divs_f64, double, double, x / P[0])
EW_BINARY_LOOP(pow_f32, float, float, powf(x, y))
EW_BINARY_LOOP(pow_f64, double, double, pow(x, y))
EW_UNARY_LOOP(pows_f32, float, float, powf(x, (float)P[0]))
EW_UNARY_LOOP(pows_f64, double, double, pow(x, P[0]))
/* PyTorch's special exponents (PowKernel.cpp): x^2 = x * x, x^3 = x * x * x,
 * x^-2 = 1 / (x * x), x^0.5 = sqrt(x), x^-0.5 = 1 / sqrt(x), x^-1 = 1 / x. They differ from
 * pow() in rounding (x^3, x^-2) and at -0 (sqrt(-0) = -0, 1 / sqrt(-0) = -inf, where pow()
 * gives +0 and +inf), which first and higher derivatives of x^s pass on. */
#define POWS_SPECIAL(S, T, SQRT)                                                           \
    EW_UNARY_LOOP(pows2_##S, T, T, x * x)                                                   \
    EW_UNARY_LOOP(pows3_##S, T, T, x * x * x)                                               \
    EW_UNARY_LOOP(powsm2_##S, T, T, (T)1 / (x * x))                                         \
    EW_UNARY_LOOP(powsh_##S, T, T, SQRT(x))                                                 \
    EW_UNARY_LOOP(powsmh_##S, T, T, (T)1 / SQRT(x))                                         \
    EW_UNARY_LOOP(powsm1_##S, T, T, (T)1 / x)
POWS_SPECIAL(f32, float, sqrtf)
POWS_SPECIAL(f64, double, sqrt)

/* The loop for x^s in a float dtype (dt: 0 = float32, 1 = float64). */
static iter_loop pows_loop(double s, int dt)
{
    static const struct {
        double s;
        iter_loop f[2];
    } special[] = {{2.0, {pows2_f32, pows2_f64}},   {3.0, {pows3_f32, pows3_f64}},
                   {-2.0, {powsm2_f32, powsm2_f64}}, {0.5, {powsh_f32, powsh_f64}},
                   {-0.5, {powsmh_f32, powsmh_f64}}, {-1.0, {powsm1_f32, powsm1_f64}}};
    for (size_t k = 0; k < sizeof special / sizeof special[0]; k++)
        if (special[k].s == s) return special[k].f[dt];
    return dt ? pows_f64 : pows_f32;
}
EW_UNARY_LOOP(rpows_f32, float, float, powf((float)P[0], x))
EW_UNARY_LOOP(rpows_f64, double, double, pow(P[0], x))

/* Integer power by squaring. A negative exponent is an error when it is a scalar (checked
 * before), else PyTorch's rule: 1 for base 1, +-1 for base -1, 0 otherwise. */
static inline int64_t ipow(int64_t b, int64_t e)
{
    if (e < 0) return b == 1 ? 1 : b == -1 ? ((e & 1) ? -1 : 1) : 0;
    int64_t r = 1;
    while (e > 0) {
        if (e & 1) r = i64_mul(r, b);
        b = i64_mul(b, b);
        e >>= 1;
    }
    return r;
}
EW_BINARY_LOOP(pow_i64, int64_t, int64_t, ipow(x, y))
EW_UNARY_LOOP(pows_i64, int64_t, int64_t, ipow(x, (int64_t)P[0]))
EW_UNARY_LOOP(rpows_i64, int64_t, int64_t, ipow((int64_t)P[0], x))

/* bool + bool is logical or, bool * bool logical and, as in PyTorch */
EW_BINARY_LOOP(or_b, uint8_t, uint8_t, (uint8_t)(x | y))
EW_BINARY_LOOP(and_b, uint8_t, uint8_t, (uint8_t)(x &y))

typedef enum binop { B_ADD, B_SUB, B_MUL, B_DIV, B_POW } binop;
static const char *binop_name[] = {"add", "sub", "mul", "div", "pow"};
/* [op][dtype f32, f64, i64, bool] */
static const iter_loop bin_loops[][4] = {
    {add_f32, add_f64, add_i64, or_b}, {sub_f32, sub_f64, sub_i64, NULL},
    {mul_f32, mul_f64, mul_i64, and_b}, {div_f32, div_f64, NULL, NULL},
    {pow_f32, pow_f64, pow_i64, NULL},
};

typedef enum scalop { S_ADD, S_SUB, S_RSUB, S_MUL, S_DIV, S_POW, S_RPOW } scalop;
static const iter_loop scal_loops[][3] = {
    {adds_f32, adds_f64, adds_i64}, {subs_f32, subs_f64, subs_i64},
    {rsubs_f32, rsubs_f64, rsubs_i64}, {muls_f32, muls_f64, muls_i64},
    {divs_f32, divs_f64, NULL},     {pows_f32, pows_f64, pows_i64},
    {rpows_f32, rpows_f64, rpows_i64},
};

/* ---- shared forward ---- */
static eng_err binary_dtype(tensor *a, tensor *b, binop op, dtype *dt)
{
    if (a->dtype == b->dtype && dtype_is_float((dtype)a->dtype)) {
        *dt = (dtype)a->dtype; /* the common case needs no promotion */
        return E_OK;
    }
    if (op == B_SUB && (a->dtype == DT_BOOL || b->dtype == DT_BOOL))
        return bool_sub_error(a->dtype == DT_BOOL && b->dtype == DT_BOOL);
    promo p;
    promo_init(&p);
    promo_add_tensor(&p, (dtype)a->dtype, a->ndim);
    promo_add_tensor(&p, (dtype)b->dtype, b->ndim);
    *dt = promo_result(&p);
    if (op == B_DIV && !dtype_is_float(*dt)) *dt = DT_DEFAULT_FLOAT; /* true division */
    if (!bin_loops[op][*dt])
        return err_set(E_DTYPE, "%s is not supported for two bool tensors", binop_name[op]);
    return E_OK;
}

/* PyTorch's mul and div where an operand is a ZeroTensor (tensor_is_zeros: the zeros of
 * SgnBackward0's formula and what they make): no arithmetic, whatever the other operand
 * holds (mul_zerotensor, div_zerotensor). A product, and zeros over a tensor that is not
 * one, are fresh contiguous zeros marked as a ZeroTensor again; x over zeros is inf and
 * zeros over zeros NaN, filled. So inf * 0 from a second derivative through abs is 0, as in
 * PyTorch, not NaN. Of the broadcast shape and the promoted dtype. */
static __attribute__((noinline)) eng_err zerotensor_binary(tensor **out, tensor *a, tensor *b,
                                                           binop op)
{
    dtype dt = DT_F32;
    int64_t sh[MAX_DIMS];
    int nd;
    eng_err e = binary_dtype(a, b, op, &dt);
    if (e || (e = broadcast_shapes(a->shape, a->ndim, b->shape, b->ndim, sh, &nd))) return e;
    bool za = tensor_is_zeros(a), zb = tensor_is_zeros(b);
    double v = op == B_MUL || !zb ? 0.0 : za ? NAN : INFINITY;
    if ((e = op_full(out, dt, sh, nd, v))) return e;
    (*out)->zeros = v == 0.0;
    return E_OK;
}

static eng_err binary_raw(tensor **out, tensor *a, tensor *b, binop op)
{
    if (__builtin_expect(a->zeros | b->zeros, 0) && (op == B_MUL || op == B_DIV) &&
        (tensor_is_zeros(a) || tensor_is_zeros(b)))
        return zerotensor_binary(out, a, b, op);
    /* Two 0-d operands of one float dtype: that dtype, the op's loop on them at once. (Their
     * own array: the one ew_map takes below lives in memory, and was stored before this.) */
    eng_err e;
    if (dtype_is_float((dtype)a->dtype)) {
        tensor *const pair[2] = {a, b};
        if (ew_scalar_now(&e, out, (dtype)a->dtype, (dtype)a->dtype, pair, 2,
                          bin_loops[op][a->dtype], NULL))
            return e;
    }
    dtype dt = DT_F32; /* (set by binary_dtype on success) */
    e = binary_dtype(a, b, op, &dt);
    if (e) return e;
    tensor *ins[2] = {a, b};
    return ew_map(out, dt, dt, ins, 2, bin_loops[op][dt], NULL, 0, PAR_GRAIN_CHEAP);
}

static eng_err scalar_raw(tensor **out, tensor *a, double s, scalop op)
{
    /* A bool tensor promotes with the scalar (True + 2 is 3 in int64, True * 2.5 is 2.5 in
     * float32), except for subtraction, as in PyTorch. */
    if (a->dtype == DT_BOOL && (op == S_SUB || op == S_RSUB)) return bool_sub_error(false);
    promo p;
    promo_init(&p);
    promo_add_tensor(&p, (dtype)a->dtype, a->ndim);
    promo_add_scalar(&p, s);
    dtype dt = promo_result(&p);
    if (op == S_DIV && !dtype_is_float(dt)) dt = DT_DEFAULT_FLOAT;
    if (__builtin_expect(a->zeros, 0) && (op == S_MUL || op == S_DIV) && tensor_is_zeros(a)) {
        /* a ZeroTensor times or over a scalar: zeros again (see zerotensor_binary) */
        eng_err e = op_full(out, dt, a->shape, a->ndim, 0.0);
        if (!e) (*out)->zeros = 1;
        return e;
    }
    if (dt == DT_I64 && op == S_POW && s < 0)
        return err_set(E_INVAL, "Integers to negative integer powers are not allowed.");
    double param = s;
    iter_loop loop = op == S_POW && dtype_is_float(dt) ? pows_loop(s, dt == DT_F64)
                                                        : scal_loops[op][dt];
    int64_t grain = op == S_POW || op == S_RPOW ? PAR_GRAIN_COSTLY : PAR_GRAIN_CHEAP;
    /* x ** 2 is a unary op in PyTorch; x + 2, 2 - x, 2 / x, 2 ** x take the scalar as an
     * operand (the layout of the result can differ in size-1 dimensions' strides) */
    if (op == S_POW) return ew_map(out, dt, dt, &a, 1, loop, &param, 1, grain);
    return ew_map_wrapped(out, dt, dt, a, loop, &param, 1, grain);
}

/* Attributes shared by the scalar forms: the scalar. */
typedef struct scalar_attr {
    double s;
} scalar_attr;

/* ---- add ---- */
static eng_err add_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    (void)n;
    pass_gradient(c, gin, gout, 2);
    return E_OK;
}
static const node_type ADD_BW = {"AddBackward0", add_backward, NULL};

eng_err op_add(tensor **out, tensor *a, tensor *b)
{
    tensor *r = NULL;
    eng_err e = binary_raw(&r, a, b, B_ADD);
    if (e) return e;
    tensor *ins[2] = {a, b};
    record(&ADD_BW, ins, 2, &r, 1, 0, 0, &e);
    if (e) {
        tensor_release(r);
        return e;
    }
    *out = r;
    return E_OK;
}

static eng_err pass_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    (void)n;
    pass_gradient(c, gin, gout, 1);
    return E_OK;
}
static const node_type ADDS_BW = {"AddBackward0", pass_backward, NULL};
static const node_type SUBS_BW = {"SubBackward0", pass_backward, NULL};

static eng_err scalar_op(tensor **out, tensor *a, double s, scalop op, const node_type *bw)
{
    tensor *r = NULL;
    eng_err e = scalar_raw(&r, a, s, op);
    if (e) return e;
    if (!dtype_is_float((dtype)r->dtype)) {
        *out = r;
        return E_OK;
    }
    bool save_in = op == S_POW || op == S_RPOW;
    bool save_out = op == S_RPOW;
    node *n = record(bw, &a, 1, &r, 1, save_in + save_out, sizeof(scalar_attr), &e);
    if (!e && n) {
        ((scalar_attr *)node_attrs(n))->s = s;
        if (save_in) node_save(n, 0, a);
        if (save_out) e = node_save_output(n, 1, r);
        if (op == S_MUL || op == S_DIV) atomic_fetch_or(&n->flags, NODE_RELEASABLE);
    }
    if (e) {
        tensor_release(r);
        return e;
    }
    *out = r;
    return E_OK;
}

eng_err op_add_scalar(tensor **out, tensor *a, double s) { return scalar_op(out, a, s, S_ADD, &ADDS_BW); }
eng_err op_sub_scalar(tensor **out, tensor *a, double s) { return scalar_op(out, a, s, S_SUB, &SUBS_BW); }

/* ---- sub, rsub, neg ---- */
static eng_err sub_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    (void)n;
    if (c->needed[0]) {
        tensor_retain(gin[0]);
        gout[0] = gin[0];
    }
    if (c->needed[1]) return op_neg(&gout[1], gin[0]);
    return E_OK;
}
static const node_type SUB_BW = {"SubBackward0", sub_backward, NULL};

eng_err op_sub(tensor **out, tensor *a, tensor *b)
{
    tensor *r = NULL;
    eng_err e = binary_raw(&r, a, b, B_SUB);
    if (e) return e;
    tensor *ins[2] = {a, b};
    record(&SUB_BW, ins, 2, &r, 1, 0, 0, &e);
    if (e) {
        tensor_release(r);
        return e;
    }
    *out = r;
    return E_OK;
}

static eng_err neg_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    (void)n;
    return c->needed[0] ? op_neg(&gout[0], gin[0]) : E_OK;
}
static const node_type RSUB_BW = {"RsubBackward1", neg_backward, NULL};
static const node_type NEG_BW = {"NegBackward0", neg_backward, NULL};

eng_err op_rsub_scalar(tensor **out, tensor *a, double s) { return scalar_op(out, a, s, S_RSUB, &RSUB_BW); }

eng_err op_neg(tensor **out, tensor *a)
{
    if (a->dtype == DT_BOOL)
        return err_set(E_DTYPE, "Negation, the `-` operator, on a bool tensor is not supported.");
    static const iter_loop loops[3] = {neg_f32, neg_f64, neg_i64};
    tensor *r = NULL;
    eng_err e = ew_map(&r, (dtype)a->dtype, (dtype)a->dtype, &a, 1, loops[a->dtype], NULL, 0,
                       PAR_GRAIN_CHEAP);
    if (e) return e;
    record(&NEG_BW, &a, 1, &r, 1, 0, 0, &e);
    if (e) {
        tensor_release(r);
        return e;
    }
    *out = r;
    return E_OK;
}

/* ---- mul ---- */
static eng_err mul_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    tensor *a, *b;
    eng_err e;
    if ((e = saved_get(n, c, 0, &a)) || (e = saved_get(n, c, 1, &b))) return e;
    /* (with grad mode off, as backward runs formulas without create_graph, op_mul records
     * nothing: its product alone, without the op's frame) */
    bool rec = grad_mode_enabled();
    if (c->needed[0] &&
        (e = rec ? op_mul(&gout[0], gin[0], b) : binary_raw(&gout[0], gin[0], b, B_MUL)))
        return e;
    if (c->needed[1] &&
        (e = rec ? op_mul(&gout[1], gin[0], a) : binary_raw(&gout[1], gin[0], a, B_MUL)))
        return e;
    return E_OK;
}
static const node_type MUL_BW = {"MulBackward0", mul_backward, NULL};

eng_err op_mul(tensor **out, tensor *a, tensor *b)
{
    tensor *r = NULL;
    eng_err e = binary_raw(&r, a, b, B_MUL);
    if (e) return e;
    tensor *ins[2] = {a, b};
    node *n = record(&MUL_BW, ins, 2, &r, 1, 2, 0, &e);
    if (e) {
        tensor_release(r);
        return e;
    }
    if (n) {
        /* Each input's gradient needs the other operand. (Decided by the edges just made,
         * which are what backward asks for: a requires_grad flag set meanwhile on another
         * thread, a data race, left a needed operand unsaved, and backward read NULL.) */
        if (n->next[1].fn) node_save(n, 0, a);
        if (n->next[0].fn) node_save(n, 1, b);
    }
    *out = r;
    return E_OK;
}

static eng_err muls_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    double s = ((scalar_attr *)node_attrs(n))->s;
    return c->needed[0] ? op_mul_scalar(&gout[0], gin[0], s) : E_OK;
}
static const node_type MULS_BW = {"MulBackward0", muls_backward, NULL};
eng_err op_mul_scalar(tensor **out, tensor *a, double s) { return scalar_op(out, a, s, S_MUL, &MULS_BW); }

/* ---- div ---- */
static eng_err div_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    tensor *a, *b;
    eng_err e;
    if ((e = saved_get(n, c, 0, &a)) || (e = saved_get(n, c, 1, &b))) return e;
    if (c->needed[0] && (e = op_div(&gout[0], gin[0], b))) return e;
    if (c->needed[1]) {
        /* d(a/b)/db = -a / b^2, as PyTorch's div_tensor_other_backward: -g * ((a / b) / b)
         * (a / (b * b) differs where b * b overflows or underflows, and in float32 rounding) */
        tensor *t1 = NULL, *t2 = NULL, *t3 = NULL;
        if (!(e = op_div(&t1, a, b)) && !(e = op_div(&t2, t1, b)) && !(e = op_neg(&t3, gin[0])))
            e = op_mul(&gout[1], t3, t2);
        tensor_release(t1);
        tensor_release(t2);
        tensor_release(t3);
    }
    return e;
}
static const node_type DIV_BW = {"DivBackward0", div_backward, NULL};

eng_err op_div(tensor **out, tensor *a, tensor *b)
{
    tensor *r = NULL;
    eng_err e = binary_raw(&r, a, b, B_DIV);
    if (e) return e;
    tensor *ins[2] = {a, b};
    node *n = record(&DIV_BW, ins, 2, &r, 1, 2, 0, &e);
    if (e) {
        tensor_release(r);
        return e;
    }
    if (n) {
        if (n->next[1].fn) node_save(n, 0, a); /* (by the edge: see op_mul) */
        node_save(n, 1, b);
    }
    *out = r;
    return E_OK;
}

static eng_err divs_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    double s = ((scalar_attr *)node_attrs(n))->s;
    return c->needed[0] ? op_div_scalar(&gout[0], gin[0], s) : E_OK;
}
static const node_type DIVS_BW = {"DivBackward0", divs_backward, NULL};
eng_err op_div_scalar(tensor **out, tensor *a, double s) { return scalar_op(out, a, s, S_DIV, &DIVS_BW); }

/* The same ops as PyTorch's C++ backward formulas write them, a tensor and a Scalar
 * (at::mul(Tensor, Scalar): the .Scalar overloads): the same values and layout, and nodes
 * named *Backward1, as the graph create_graph records through such a formula has them. */
static const node_type ADDS1_BW = {"AddBackward1", pass_backward, NULL};
static const node_type MULS1_BW = {"MulBackward1", muls_backward, NULL};
static const node_type DIVS1_BW = {"DivBackward1", divs_backward, NULL};
eng_err op_add_scalar1(tensor **out, tensor *a, double s) { return scalar_op(out, a, s, S_ADD, &ADDS1_BW); }
eng_err op_mul_scalar1(tensor **out, tensor *a, double s) { return scalar_op(out, a, s, S_MUL, &MULS1_BW); }
eng_err op_div_scalar1(tensor **out, tensor *a, double s) { return scalar_op(out, a, s, S_DIV, &DIVS1_BW); }

/* s / a is reciprocal(a) * s in PyTorch, hence its grad_fn MulBackward0 over
 * ReciprocalBackward0. reciprocal of an int64 or bool tensor is float32 (2 / True is 2.0,
 * 2 / False inf). */
EW_UNARY_LOOP(recip_f32, float, float, 1.0f / x)
EW_UNARY_LOOP(recip_f64, double, double, 1.0 / x)
static eng_err recip_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    if (!c->needed[0]) return E_OK;
    tensor *y, *y2 = NULL, *t = NULL;
    eng_err e = saved_get(n, c, 0, &y);
    /* -g * (y * y), in PyTorch's order (the same values: negation is exact; the last op
     * decides the layout) */
    if (!e && !(e = op_neg(&t, gin[0])) && !(e = op_mul(&y2, y, y))) e = op_mul(&gout[0], t, y2);
    tensor_release(y2);
    tensor_release(t);
    return e;
}
static const node_type RECIP_BW = {"ReciprocalBackward0", recip_backward, NULL};

static eng_err op_reciprocal(tensor **out, tensor *a)
{
    dtype dt = DT_DEFAULT_FLOAT; /* (bool too: torch.reciprocal(True) is 1.0) */
    eng_err e = a->dtype == DT_BOOL ? E_OK : unary_float_dtype(a, "reciprocal", &dt);
    if (e) return e;
    static const loop_pair lp = {recip_f32, recip_f64};
    tensor *r = NULL;
    if ((e = ew_map(&r, dt, dt, &a, 1, pick(&lp, dt), NULL, 0, PAR_GRAIN_CHEAP))) return e;
    node *n = record(&RECIP_BW, &a, 1, &r, 1, 1, 0, &e);
    if (!e && n) e = node_save_output(n, 0, r);
    if (e) {
        tensor_release(r);
        return e;
    }
    *out = r;
    return E_OK;
}

eng_err op_rdiv_scalar(tensor **out, tensor *a, double s)
{
    tensor *r = NULL;
    eng_err e = op_reciprocal(&r, a);
    if (e) return e;
    e = op_mul_scalar(out, r, s);
    tensor_release(r);
    return e;
}

/* ---- pow ---- */
/* d(a^s)/da = s a^(s-1). For s == 0 it is zeros_like(a) (contiguous, not in a's layout), as
 * PyTorch's pow_backward: zeros outside any graph (also under create_graph, where g may
 * require grad) and 0 where g is inf or NaN (g * 0 gave NaN there). 2a is the fast form of
 * s == 2, but under create_graph it is s a^(s-1) as in PyTorch, whose a^1 keeps a in the
 * graph: a third derivative is then zeros, not an error. */
static eng_err pow_scalar_grad(tensor **out, tensor *g, tensor *a, double s, bool create_graph)
{
    if (s == 0.0) /* zeros_like(self, LEGACY_CONTIGUOUS_MEMORY_FORMAT): contiguous */
        return op_full(out, (dtype)a->dtype, a->shape, a->ndim, 0.0);
    tensor *p = NULL, *q = NULL;
    eng_err e;
    if (s == 2.0 && !create_graph) {
        e = op_mul_scalar(&q, a, 2.0);
    } else if (!(e = op_pow_scalar(&p, a, s - 1.0))) {
        e = op_mul_scalar(&q, p, s);
    }
    if (!e) e = op_mul(out, g, q);
    tensor_release(p);
    tensor_release(q);
    return e;
}

static eng_err pows_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    if (!c->needed[0]) return E_OK;
    tensor *a;
    eng_err e = saved_get(n, c, 0, &a);
    if (e) return e;
    return pow_scalar_grad(&gout[0], gin[0], a, ((scalar_attr *)node_attrs(n))->s,
                           c->create_graph);
}
static const node_type POWS_BW = {"PowBackward0", pows_backward, NULL};
eng_err op_pow_scalar(tensor **out, tensor *a, double s) { return scalar_op(out, a, s, S_POW, &POWS_BW); }

/* d(s^a)/da = s^a log(s), taken as 0 where s == 0 and a >= 0 (PyTorch's
 * pow_backward_exponent: 0^a is 0 or 1 there, and 0 * -inf would give NaN) */
static eng_err rpows_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    if (!c->needed[0]) return E_OK;
    tensor *y, *t = NULL, *a = NULL, *mask = NULL, *u = NULL;
    /* (both unpacked, so that an in-place change of either is reported, as in PyTorch) */
    eng_err e = saved_get(n, c, 1, &y);
    if (!e) e = saved_get(n, c, 0, &a);
    if (e) return e;
    /* The base as the forward used it: PyTorch's __rpow__ makes it a tensor of x's dtype, so
     * for float32 it is rounded (1e-45 to the subnormal 1.4e-45, 1e39 to inf). */
    double s = ((scalar_attr *)node_attrs(n))->s;
    if (y->dtype == DT_F32) s = (double)(float)s;
    if (!(e = op_mul_scalar(&t, y, log(s))) && s == 0.0 &&
        !(e = op_compare_scalar(&mask, a, 0.0, CMP_GE)) &&
        !(e = op_where_zero(&u, mask, t, true))) {
        tensor_release(t);
        t = u;
    }
    if (!e) e = op_mul(&gout[0], gin[0], t);
    tensor_release(mask);
    tensor_release(t);
    return e;
}
static const node_type RPOWS_BW = {"PowBackward1", rpows_backward, NULL};
eng_err op_rpow_scalar(tensor **out, tensor *a, double s) { return scalar_op(out, a, s, S_RPOW, &RPOWS_BW); }

/* d(a^b)/da = b a^(b-1); d(a^b)/db = a^b log(a), taken as 0 where a == 0 and b >= 0 */
static eng_err pow_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    tensor *a, *b, *y;
    eng_err e;
    if ((e = saved_get(n, c, 0, &a)) || (e = saved_get(n, c, 1, &b)) ||
        (e = saved_get(n, c, 2, &y)))
        return e;
    tensor *t[6] = {0};
    if (c->needed[0]) {
        /* g b a^(b-1), taken as 0 where b == 0 (0^-1 would give inf * 0), as PyTorch's
         * pow_backward_self: where(b == 0, 0, g * b a^(b-1)), so 0 there even where g is
         * inf or NaN (a gradient through log(a) for a < 0 under create_graph, say) */
        tensor *b_zero = NULL;
        if (!(e = op_sub_scalar(&t[0], b, 1.0)) && !(e = op_pow(&t[1], a, t[0])) &&
            !(e = op_mul(&t[2], b, t[1])) && !(e = op_mul(&t[3], gin[0], t[2])) &&
            !(e = op_compare_scalar(&b_zero, b, 0.0, CMP_EQ)))
            e = op_where_zero(&gout[0], b_zero, t[3], true);
        tensor_release(b_zero);
        tensor_release(t[3]);
        t[3] = NULL;
    }
    if (!e && c->needed[1]) {
        /* g * where(a == 0 and b >= 0, 0, y log(a)), as pow_backward_exponent */
        tensor *zero_a = NULL, *b_nonneg = NULL, *mask = NULL;
        if (!(e = op_log(&t[3], a)) && !(e = op_mul(&t[4], y, t[3])) &&
            !(e = op_compare_scalar(&zero_a, a, 0.0, CMP_EQ)) &&
            !(e = op_compare_scalar(&b_nonneg, b, 0.0, CMP_GE)) &&
            !(e = op_mul(&mask, zero_a, b_nonneg)) && !(e = op_where_zero(&t[5], mask, t[4], true)))
            e = op_mul(&gout[1], gin[0], t[5]);
        tensor_release(zero_a);
        tensor_release(b_nonneg);
        tensor_release(mask);
    }
    for (int i = 0; i < 6; i++) tensor_release(t[i]);
    return e;
}
static const node_type POW_BW = {"PowBackward1", pow_backward, NULL};

eng_err op_pow(tensor **out, tensor *a, tensor *b)
{
    tensor *r = NULL;
    eng_err e = binary_raw(&r, a, b, B_POW);
    if (e) return e;
    if (!dtype_is_float((dtype)r->dtype)) {
        *out = r;
        return E_OK;
    }
    tensor *ins[2] = {a, b};
    node *n = record(&POW_BW, ins, 2, &r, 1, 3, 0, &e);
    if (!e && n) {
        node_save(n, 0, a);
        node_save(n, 1, b);
        e = node_save_output(n, 2, r);
    }
    if (e) {
        tensor_release(r);
        return e;
    }
    *out = r;
    return E_OK;
}
