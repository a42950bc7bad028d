/*
 * test_arith.c: add, sub, mul, div, pow and their scalar forms: values, grad_fn names,
 * broadcasting, dtype promotion, and first- and second-order gradient checks.
 */
#include <math.h>
#include <string.h>

#include "harness.h"

typedef int (*binary_api)(ag_tensor **, const ag_tensor *, const ag_tensor *);
typedef int (*scalar_api)(ag_tensor **, const ag_tensor *, double);

static int call_binary(ag_tensor **out, ag_tensor *const *in, void *ctx)
{
    return ((binary_api)ctx)(out, in[0], in[1]);
}

typedef struct sc {
    scalar_api f;
    double s;
} sc;

static int call_scalar(ag_tensor **out, ag_tensor *const *in, void *ctx)
{
    const sc *c = ctx;
    return c->f(out, in[0], c->s);
}

static void grads_binary(void)
{
    static const struct {
        const char *name;
        binary_api f;
        double lo;
    } ops[] = {{"add", ag_add, -1}, {"sub", ag_sub, -1}, {"mul", ag_mul, -1},
               {"div", ag_div, 0.5}, {"pow", ag_pow, 0.5}};
    int64_t s23[2] = {2, 3}, s3[1] = {3}, s21[2] = {2, 1}, s0[1] = {0};
    (void)s0;
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
        double lo = ops[k].lo, hi = 2;
        /* same shape, broadcasting on either side, and a 0-d operand */
        gc_input same[2] = {{s23, 2, NULL, lo, hi, 1, 0}, {s23, 2, NULL, lo, hi, 1, 0}};
        gc_input bcast[2] = {{s23, 2, NULL, lo, hi, 1, 0}, {s3, 1, NULL, lo, hi, 1, 0}};
        gc_input outer[2] = {{s21, 2, NULL, lo, hi, 1, 0}, {s3, 1, NULL, lo, hi, 1, 0}};
        gc_input scal[2] = {{s23, 2, NULL, lo, hi, 1, 0}, {NULL, 0, NULL, lo, hi, 1, 0}};
        CHECK(gradcheck(ops[k].name, call_binary, same, 2, (void *)ops[k].f));
        CHECK(gradcheck(ops[k].name, call_binary, bcast, 2, (void *)ops[k].f));
        CHECK(gradcheck(ops[k].name, call_binary, outer, 2, (void *)ops[k].f));
        CHECK(gradcheck(ops[k].name, call_binary, scal, 2, (void *)ops[k].f));
        CHECK(gradgradcheck(ops[k].name, call_binary, bcast, 2, (void *)ops[k].f));
    }
}

static void grads_scalar(void)
{
    static const struct {
        const char *name;
        scalar_api f;
        double s, lo;
    } ops[] = {{"add_scalar", ag_add_scalar, 2.5, -1},   {"sub_scalar", ag_sub_scalar, 2.5, -1},
               {"rsub_scalar", ag_rsub_scalar, 2.5, -1}, {"mul_scalar", ag_mul_scalar, -1.5, -1},
               {"div_scalar", ag_div_scalar, 4.0, -1},   {"rdiv_scalar", ag_rdiv_scalar, 3.0, 0.5},
               {"pow_scalar", ag_pow_scalar, 3.0, -1},   {"pow_scalar frac", ag_pow_scalar, 1.5, 0.5},
               {"pow_scalar 0", ag_pow_scalar, 0.0, -1}, {"rpow_scalar", ag_rpow_scalar, 2.0, -1}};
    int64_t s23[2] = {2, 3};
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
        sc c = {ops[k].f, ops[k].s};
        gc_input in[1] = {{s23, 2, NULL, ops[k].lo, 2, 1, 0}};
        CHECK(gradcheck(ops[k].name, call_scalar, in, 1, &c));
        CHECK(gradgradcheck(ops[k].name, call_scalar, in, 1, &c));
    }
}

static void names_and_values(void)
{
    double xd[3] = {1, 2, 3};
    ag_tensor *x = vec(AG_FLOAT32, 3, xd), *r;
    OK(ag_tensor_set_requires_grad(x, 1));
    static const struct {
        const char *name;
        scalar_api f;
        double s;
        double want[3];
    } cases[] = {
        {"AddBackward0", ag_add_scalar, 5, {6, 7, 8}},
        {"SubBackward0", ag_sub_scalar, 1, {0, 1, 2}},
        {"RsubBackward1", ag_rsub_scalar, 1, {0, -1, -2}},
        {"MulBackward0", ag_mul_scalar, 2, {2, 4, 6}},
        {"DivBackward0", ag_div_scalar, 2, {0.5, 1, 1.5}},
        {"MulBackward0", ag_rdiv_scalar, 1, {1, 0.5, 1.0 / 3}},
        {"PowBackward0", ag_pow_scalar, 2, {1, 4, 9}},
        {"PowBackward1", ag_rpow_scalar, 2, {2, 4, 8}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        OK(cases[k].f(&r, x, cases[k].s));
        CHECK_STR(grad_fn_name(r), cases[k].name);
        check_values(cases[k].name, r, cases[k].want, 3, 1e-6);
        ag_tensor_release(r);
    }
    OK(ag_mul(&r, x, x));
    CHECK_STR(grad_fn_name(r), "MulBackward0");
    ag_tensor_release(r);
    OK(ag_pow(&r, x, x));
    CHECK_STR(grad_fn_name(r), "PowBackward1");
    ag_tensor_release(r);
    OK(ag_neg(&r, x));
    CHECK_STR(grad_fn_name(r), "NegBackward0");
    ag_tensor_release(r);
    ag_tensor_release(x);
}

static void promotion(void)
{
    double d[2] = {1, 2};
    ag_tensor *i = vec(AG_INT64, 2, d), *f = vec(AG_FLOAT32, 2, d), *r;
    ag_tensor *f64s;
    ag_dtype dt;
    OK(ag_tensor_scalar(&f64s, 2.0, AG_FLOAT64));
    OK(ag_add(&r, i, f));
    OK(ag_tensor_dtype(&dt, r));
    CHECK(dt == AG_FLOAT32);
    ag_tensor_release(r);
    OK(ag_add(&r, f, f64s)); /* a 0-d tensor does not promote a dimensioned one */
    OK(ag_tensor_dtype(&dt, r));
    CHECK(dt == AG_FLOAT32);
    ag_tensor_release(r);
    OK(ag_add(&r, i, f64s)); /* ... unless it is of a higher category */
    OK(ag_tensor_dtype(&dt, r));
    CHECK(dt == AG_FLOAT64);
    ag_tensor_release(r);
    OK(ag_mul_scalar(&r, i, 2.0));
    OK(ag_tensor_dtype(&dt, r));
    CHECK(dt == AG_INT64);
    ag_tensor_release(r);
    OK(ag_mul_scalar(&r, i, 2.5));
    OK(ag_tensor_dtype(&dt, r));
    CHECK(dt == AG_FLOAT32);
    ag_tensor_release(r);
    OK(ag_div(&r, i, i)); /* true division */
    OK(ag_tensor_dtype(&dt, r));
    CHECK(dt == AG_FLOAT32);
    ag_tensor_release(r);
    ag_tensor_release(i);
    ag_tensor_release(f);
    ag_tensor_release(f64s);
}

static void errors(void)
{
    int64_t s2[1] = {2}, s3[1] = {3};
    ag_tensor *a, *b, *r = NULL;
    OK(ag_zeros(&a, AG_FLOAT32, s2, 1));
    OK(ag_zeros(&b, AG_FLOAT32, s3, 1));
    FAILS(AG_ESHAPE, ag_add(&r, a, b));
    CHECK(r == NULL);
    CHECK(strstr(ag_last_error(), "ag_add: ") == ag_last_error());
    FAILS(AG_EINVAL, ag_add(&r, NULL, b));
    FAILS(AG_EINVAL, ag_add(NULL, a, b));
    ag_tensor_release(a);
    ag_tensor_release(b);
}

/* ---- in-place ops: overlap between the written-to tensor and the operand ---- */

static int64_t version_of(const ag_tensor *t)
{
    int64_t v = -1;
    OK(ag_tensor_version(&v, t));
    return v;
}

/* x.add_(x.narrow(1, 1, 1)): the column is broadcast over x, which it is part of; PyTorch
 * (which does not analyse the strided operand) computes it element by element, giving a
 * result that depends on the order of the writes; we refuse it, as a partial overlap. */
static void inplace_overlap_broadcast(void)
{
    double xd[6] = {2, 4, -1, 0, 2, 0};
    int64_t s23[2] = {2, 3};
    typedef int (*ip_api)(ag_tensor *, const ag_tensor *);
    static const ip_api fns[] = {ag_add_, ag_sub_, ag_mul_, ag_copy_};
    for (size_t k = 0; k < sizeof fns / sizeof fns[0]; k++) {
        ag_tensor *x = tensor_f64(xd, s23, 2, AG_FLOAT32), *c, *r0, *row;
        OK(ag_narrow(&c, x, 1, 1, 1));
        int64_t v = version_of(x);
        FAILS(AG_EINVAL, fns[k](x, c));
        CHECK(strstr(ag_last_error(), "some elements of the input tensor and the written-to "
                                      "tensor refer to a single memory location") != NULL);
        check_values("x after a refused in-place op", x, xd, 6, 0);
        CHECK(version_of(x) == v);
        /* the same through expand, and a row broadcast over the rows */
        int64_t s23b[2] = {2, 3};
        ag_tensor *e;
        OK(ag_expand(&e, c, s23b, 2));
        FAILS(AG_EINVAL, fns[k](x, e));
        OK(ag_narrow(&r0, x, 0, 1, 1));
        OK(ag_select(&row, x, 0, 0));
        FAILS(AG_EINVAL, fns[k](x, r0));
        FAILS(AG_EINVAL, fns[k](x, row));
        check_values("x after refused in-place ops", x, xd, 6, 0);
        ag_tensor_release(row);
        ag_tensor_release(r0);
        ag_tensor_release(e);
        ag_tensor_release(c);
        ag_tensor_release(x);
    }
    /* with a history: refused before anything is recorded */
    {
        ag_tensor *x = tensor_f64(xd, s23, 2, AG_FLOAT64), *b, *c, *sum;
        OK(ag_tensor_set_requires_grad(x, 1));
        OK(ag_mul_scalar(&b, x, 1.0));
        OK(ag_narrow(&c, b, 1, 2, 1));
        FAILS(AG_EINVAL, ag_add_(b, c));
        CHECK_STR(grad_fn_name(b), "MulBackward0");
        OK(ag_sum(&sum, b));
        OK(ag_backward(sum, NULL, 0));
        ag_tensor_release(sum);
        ag_tensor_release(c);
        ag_tensor_release(b);
        ag_tensor_release(x);
    }
    /* strided views far apart in a long storage (the sorted-list path): x[0:19000:1000]
     * from x[1000:20000:1000] reads elements the op writes */
    {
        ag_tensor *x, *t, *o, *o2;
        OK(ag_arange(&x, AG_FLOAT64, 0, 20000, 1));
        OK(ag_slice(&t, x, 0, 0, 19000, 1000));
        OK(ag_slice(&o, x, 0, 1000, 20000, 1000));
        OK(ag_slice(&o2, x, 0, 500, 19500, 1000));
        FAILS(AG_EINVAL, ag_add_(t, o));
        FAILS(AG_EINVAL, ag_copy_(t, o));
        OK(ag_add_(t, o2)); /* interleaved, disjoint */
        int64_t n;
        double *tv = values(t, &n);
        CHECK(n == 19);
        for (int64_t i = 0; i < n && tv; i++) CHECK(tv[i] == 1000.0 * (double)i * 2 + 500);
        free(tv);
        ag_tensor_release(o2);
        ag_tensor_release(o);
        ag_tensor_release(t);
        ag_tensor_release(x);
    }
}

/* What stays allowed: the same elements at the same positions, disjoint views of one
 * storage (also broadcast), and copy_ of a tensor onto itself. */
static void inplace_overlap_allowed(void)
{
    double xd[9] = {0, 1, 2, 3, 4, 5, 6, 7, 8};
    int64_t s33[2] = {3, 3}, s23[2] = {2, 3};
    ag_tensor *x = tensor_f64(xd, s33, 2, AG_FLOAT32), *a, *b, *c, *d;
    /* x[1:, 1:] += x[1:, 0:1]: the column is read over the rows, never written */
    OK(ag_narrow(&a, x, 0, 1, 2));
    OK(ag_narrow(&b, a, 1, 1, 2));
    OK(ag_narrow(&c, a, 1, 0, 1));
    OK(ag_add_(b, c));
    double w1[9] = {0, 1, 2, 3, 7, 8, 6, 13, 14};
    check_values("x[1:, 1:] += x[1:, 0:1]", x, w1, 9, 0);
    ag_tensor_release(b);
    ag_tensor_release(c);
    /* x[1:, 1:2] += x[1:, 1].unsqueeze(1): the same elements, position for position */
    OK(ag_narrow(&b, a, 1, 1, 1));
    OK(ag_select(&c, a, 1, 1));
    OK(ag_unsqueeze(&d, c, 1));
    OK(ag_add_(b, d));
    double w2[9] = {0, 1, 2, 3, 14, 8, 6, 26, 14};
    check_values("x[1:, 1:2] += x[1:, 1:2]", x, w2, 9, 0);
    ag_tensor_release(d);
    ag_tensor_release(c);
    ag_tensor_release(b);
    /* columns: x[:, 0].copy_(x[:, 1]), x[:, 2] *= x[:, 0] */
    OK(ag_select(&b, x, 1, 0));
    OK(ag_select(&c, x, 1, 1));
    OK(ag_select(&d, x, 1, 2));
    OK(ag_copy_(b, c));
    OK(ag_mul_(d, b));
    double w3[9] = {1, 1, 2, 14, 14, 112, 26, 26, 364};
    check_values("column copy_ and mul_", x, w3, 9, 0);
    OK(ag_add_(x, x));
    OK(ag_copy_(b, b));
    ag_tensor_release(d);
    ag_tensor_release(c);
    ag_tensor_release(b);
    ag_tensor_release(a);
    ag_tensor_release(x);

    /* e = zeros(3).expand(2, 3): e.copy_(e) is a no-op (version bumped), other writes
     * into e are refused, as in PyTorch */
    int64_t s3[1] = {3};
    ag_tensor *z, *e, *e2;
    OK(ag_zeros(&z, AG_FLOAT32, s3, 1));
    OK(ag_expand(&e, z, s23, 2));
    OK(ag_expand(&e2, z, s23, 2));
    int64_t v = version_of(z);
    OK(ag_copy_(e, e));
    CHECK(version_of(z) == v + 1);
    FAILS(AG_EINVAL, ag_copy_(e, e2));
    FAILS(AG_EINVAL, ag_add_(e, e));
    ag_tensor_release(e2);
    ag_tensor_release(e);
    ag_tensor_release(z);

    /* b.copy_(b) under grad mode: CopyBackwards, the gradient goes to the source */
    double yd[3] = {1, 2, 3}, ones[3] = {1, 1, 1};
    ag_tensor *y = vec(AG_FLOAT64, 3, yd), *m, *sum, *g = NULL;
    OK(ag_tensor_set_requires_grad(y, 1));
    OK(ag_mul_scalar(&m, y, 1.0));
    OK(ag_copy_(m, m));
    CHECK_STR(grad_fn_name(m), "CopyBackwards");
    check_values("b.copy_(b)", m, yd, 3, 0);
    OK(ag_sum(&sum, m));
    OK(ag_backward(sum, NULL, 0));
    OK(ag_tensor_grad(&g, y));
    if (g) check_values("grad of b.copy_(b)", g, ones, 3, 0);
    ag_tensor_release(g);
    ag_tensor_release(sum);
    ag_tensor_release(m);
    ag_tensor_release(y);
}

/* ---- bool operands, in place and out of place, as PyTorch 1.13 ---- */
static void bool_ops(void)
{
    double bd[4] = {1, 0, 1, 0}, b2d[4] = {1, 1, 0, 0}, fd[4] = {1, 2, 3, 4};
    ag_tensor *b = vec(AG_BOOL, 4, bd), *b2 = vec(AG_BOOL, 4, b2d), *r;
    double orv[4] = {1, 1, 1, 0}, andv[4] = {1, 0, 0, 0};
    OK(ag_add_(b, b2)); /* logical or */
    check_values("b.add_(b2)", b, orv, 4, 0);
    OK(ag_add_(b, b));
    check_values("b.add_(b)", b, orv, 4, 0);
    ag_tensor_release(b);
    b = vec(AG_BOOL, 4, bd);
    OK(ag_mul_(b, b2)); /* logical and */
    check_values("b.mul_(b2)", b, andv, 4, 0);
    OK(ag_mul_(b, b));
    check_values("b.mul_(b)", b, andv, 4, 0);
    ag_dtype dt;
    OK(ag_tensor_dtype(&dt, b));
    CHECK(dt == AG_BOOL);
    ag_tensor_release(b);
    b = vec(AG_BOOL, 4, bd);
    FAILS(AG_EDTYPE, ag_sub_(b, b2));
    CHECK(strstr(ag_last_error(), "with two bool tensors is not supported") != NULL);
    FAILS(AG_EDTYPE, ag_sub(&r, b, b2));
    CHECK(strstr(ag_last_error(), "with two bool tensors is not supported") != NULL);
    /* anything but a bool operand promotes past bool */
    ag_tensor *i = vec(AG_INT64, 4, fd), *f = vec(AG_FLOAT32, 4, fd);
    FAILS(AG_EDTYPE, ag_add_(b, i));
    CHECK(strstr(ag_last_error(), "can't be cast to the desired output type bool") != NULL);
    FAILS(AG_EDTYPE, ag_mul_(b, f));
    FAILS(AG_EDTYPE, ag_add_scalar_(b, 1.0));
    FAILS(AG_EDTYPE, ag_mul_scalar_(b, 1.0));
    FAILS(AG_EDTYPE, ag_mul_scalar_(b, 0.5));
    check_values("b after refused ops", b, bd, 4, 0);
    /* a bool operand into a number tensor: add_ and mul_ work, sub_ is refused */
    FAILS(AG_EDTYPE, ag_sub_(f, b));
    CHECK(strstr(ag_last_error(), "with a bool tensor is not supported") != NULL);
    FAILS(AG_EDTYPE, ag_sub_(i, b));
    check_values("f after a refused sub_", f, fd, 4, 0);
    OK(ag_add_(f, b));
    double w1[4] = {2, 2, 4, 4};
    check_values("f.add_(b)", f, w1, 4, 0);
    OK(ag_mul_(i, b));
    double w2[4] = {1, 0, 3, 0};
    check_values("i.mul_(b)", i, w2, 4, 0);
    /* s / b is true division: float32 */
    OK(ag_rdiv_scalar(&r, b, 2.0));
    OK(ag_tensor_dtype(&dt, r));
    CHECK(dt == AG_FLOAT32);
    int64_t n;
    double *rv = values(r, &n);
    CHECK(n == 4 && rv && rv[0] == 2 && isinf(rv[1]) && rv[2] == 2 && isinf(rv[3]));
    free(rv);
    ag_tensor_release(r);
    OK(ag_rdiv_scalar(&r, b, 0.0));
    rv = values(r, &n);
    CHECK(n == 4 && rv && rv[0] == 0 && isnan(rv[1]) && rv[2] == 0 && isnan(rv[3]));
    free(rv);
    ag_tensor_release(r);
    ag_tensor_release(i);
    ag_tensor_release(f);
    ag_tensor_release(b2);
    ag_tensor_release(b);
}

int main(void)
{
    names_and_values();
    promotion();
    errors();
    grads_binary();
    grads_scalar();
    inplace_overlap_broadcast();
    inplace_overlap_allowed();
    bool_ops();
    return harness_finish("test_arith");
}
