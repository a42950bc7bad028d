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

int main(void)
{
    names_and_values();
    promotion();
    errors();
    grads_binary();
    grads_scalar();
    return harness_finish("test_arith");
}
