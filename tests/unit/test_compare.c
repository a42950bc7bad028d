/*
 * test_compare.c: comparisons, where, masked_fill, maximum and minimum: values against
 * PyTorch, dtype promotion, broadcasting, errors, grad_fn names, and first- and second-order
 * gradient checks (broadcasting included).
 */
#include <math.h>
#include <string.h>

#include "harness.h"

typedef int (*binary_api)(ag_tensor **, const ag_tensor *, const ag_tensor *);
typedef int (*scalar_api)(ag_tensor **, const ag_tensor *, double);

static ag_dtype dtype_of(const ag_tensor *t)
{
    ag_dtype dt;
    OK(ag_tensor_dtype(&dt, t));
    return dt;
}

/* ---- comparisons ---- */
static void comparisons(void)
{
    static const binary_api fs[6] = {ag_eq, ag_ne, ag_lt, ag_le, ag_gt, ag_ge};
    static const scalar_api ss[6] = {ag_eq_scalar, ag_ne_scalar, ag_lt_scalar,
                                     ag_le_scalar, ag_gt_scalar, ag_ge_scalar};
    /* a = [1, 2, nan], b = [2, 2, 1]: NaN compares false except for ne */
    static const double want[6][3] = {{0, 1, 0}, {1, 0, 1}, {1, 0, 0},
                                      {1, 1, 0}, {0, 0, 0}, {0, 1, 0}};
    /* a against the scalar 2 */
    static const double want_s[6][3] = {{0, 1, 0}, {1, 0, 1}, {1, 0, 0},
                                        {1, 1, 0}, {0, 0, 0}, {0, 1, 0}};
    ag_tensor *a = vec(AG_FLOAT32, 3, (double[]){1, 2, NAN});
    ag_tensor *b = vec(AG_FLOAT64, 3, (double[]){2, 2, 1}), *r;
    OK(ag_tensor_set_requires_grad(a, 1));
    for (int k = 0; k < 6; k++) {
        OK(fs[k](&r, a, b));
        CHECK(dtype_of(r) == AG_BOOL);
        CHECK_STR(grad_fn_name(r), ""); /* never recorded */
        check_values("compare", r, want[k], 3, 0);
        ag_tensor_release(r);
        OK(ss[k](&r, a, 2.0));
        CHECK(dtype_of(r) == AG_BOOL);
        CHECK_STR(grad_fn_name(r), "");
        check_values("compare scalar", r, want_s[k], 3, 0);
        ag_tensor_release(r);
    }
    ag_tensor_release(a);
    ag_tensor_release(b);

    /* the scalar is converted to the compared dtype: torch.tensor([0.1]) == 0.1 is True */
    a = vec(AG_FLOAT32, 1, (double[]){0.1});
    OK(ag_eq_scalar(&r, a, 0.1));
    check_values("f32 == 0.1", r, (double[]){1}, 1, 0);
    ag_tensor_release(r);
    /* ... and a 0-d float64 tensor does not promote: [0.1] == tensor(0.1, float64) is True,
     * while a 1-d one does: [0.1] == tensor([0.1], float64) is False */
    OK(ag_tensor_scalar(&b, 0.1, AG_FLOAT64));
    OK(ag_eq(&r, a, b));
    check_values("f32 == f64 0-d", r, (double[]){1}, 1, 0);
    ag_tensor_release(r);
    ag_tensor_release(b);
    b = vec(AG_FLOAT64, 1, (double[]){0.1});
    OK(ag_eq(&r, a, b));
    check_values("f32 == f64 1-d", r, (double[]){0}, 1, 0);
    ag_tensor_release(r);
    ag_tensor_release(b);
    ag_tensor_release(a);

    /* int64 against a fractional scalar compares as float: tensor([-2, 0, 3]) < 2.5 */
    a = vec(AG_INT64, 3, (double[]){-2, 0, 3});
    OK(ag_lt_scalar(&r, a, 2.5));
    check_values("int < 2.5", r, (double[]){1, 1, 0}, 3, 0);
    ag_tensor_release(r);
    OK(ag_lt_scalar(&r, a, 1e30)); /* beyond int64: a float scalar, as in PyTorch */
    check_values("int < 1e30", r, (double[]){1, 1, 1}, 3, 0);
    ag_tensor_release(r);
    /* large int64 values compare exactly against an integral scalar */
    ag_tensor_release(a);
    int64_t big[2] = {(int64_t)1 << 60, ((int64_t)1 << 60) + 1};
    int64_t s2[1] = {2};
    OK(ag_tensor_from_data(&a, big, AG_INT64, s2, 1));
    OK(ag_eq_scalar(&r, a, 0x1p60));
    check_values("int64 exact", r, (double[]){1, 0}, 2, 0);
    ag_tensor_release(r);
    ag_tensor_release(a);

    /* bool against bool, and bool against an integer scalar (promotes to int64) */
    a = vec(AG_BOOL, 2, (double[]){1, 0});
    b = vec(AG_BOOL, 2, (double[]){1, 1});
    OK(ag_lt(&r, a, b));
    check_values("bool < bool", r, (double[]){0, 1}, 2, 0);
    ag_tensor_release(r);
    OK(ag_eq_scalar(&r, a, 1));
    check_values("bool == 1", r, (double[]){1, 0}, 2, 0);
    ag_tensor_release(r);
    OK(ag_lt_scalar(&r, a, 0.5));
    check_values("bool < 0.5", r, (double[]){0, 1}, 2, 0);
    ag_tensor_release(r);
    ag_tensor_release(b);

    /* broadcasting: [2, 1] against [3] */
    int64_t s21[2] = {2, 1};
    ag_tensor *c = tensor_f64((double[]){1, 3}, s21, 2, AG_FLOAT64);
    b = vec(AG_INT64, 3, (double[]){0, 2, 4});
    OK(ag_ge(&r, c, b));
    int64_t shape[2];
    OK(ag_tensor_shape(shape, 2, r));
    CHECK(shape[0] == 2 && shape[1] == 3);
    check_values("broadcast ge", r, (double[]){1, 0, 0, 1, 1, 0}, 6, 0);
    ag_tensor_release(r);
    r = NULL;
    ag_tensor *bad = vec(AG_FLOAT32, 2, (double[]){0, 0});
    FAILS(AG_ESHAPE, ag_eq(&r, bad, b));
    FAILS(AG_EINVAL, ag_eq(&r, NULL, b));
    CHECK(r == NULL);
    ag_tensor_release(bad);
    ag_tensor_release(a);
    ag_tensor_release(b);
    ag_tensor_release(c);
}

/* ---- where ---- */
static int call_where(ag_tensor **out, ag_tensor *const *in, void *ctx)
{
    (void)ctx;
    return ag_where(out, in[0], in[1], in[2]);
}

static void where_tests(void)
{
    int64_t s21[2] = {2, 1}, s23[2] = {2, 3};
    ag_tensor *cond = tensor_f64((double[]){1, 0}, s21, 2, AG_BOOL);
    ag_tensor *a = vec(AG_FLOAT32, 3, (double[]){-2, 0.5, 3}), *b, *r = NULL;
    OK(ag_tensor_scalar(&b, 7, AG_FLOAT32));
    OK(ag_tensor_set_requires_grad(a, 1));
    /* torch.where(tensor([[True], [False]]), a, tensor(7.)) */
    OK(ag_where(&r, cond, a, b));
    CHECK_STR(grad_fn_name(r), "WhereBackward0");
    {
        ag_tensor *bad = NULL;
        FAILS(AG_EDTYPE, ag_where(&bad, a, a, b)); /* a float condition, named once */
        CHECK(strcmp(ag_last_error(), "ag_where: condition must be a bool (or int64) tensor, "
                                      "got float32") == 0);
        CHECK(bad == NULL);
    }
    int64_t shape[2];
    OK(ag_tensor_shape(shape, 2, r));
    CHECK(shape[0] == 2 && shape[1] == 3);
    check_values("where", r, (double[]){-2, 0.5, 3, 7, 7, 7}, 6, 0);
    /* gradients: a gets the rows where cond holds, summed over the broadcast */
    ag_tensor *s, *g;
    OK(ag_sum(&s, r));
    OK(ag_backward(s, NULL, 0));
    OK(ag_tensor_grad(&g, a));
    check_values("where grad", g, (double[]){1, 1, 1}, 3, 0);
    ag_tensor_release(g);
    ag_tensor_release(s);
    ag_tensor_release(r);
    ag_tensor_release(b);

    /* promotion of a and b: where(c, int64, float32) is float32; where(c, f32, f64 1-d) f64 */
    ag_tensor *c3 = vec(AG_BOOL, 3, (double[]){1, 0, 1});
    ag_tensor *i = vec(AG_INT64, 3, (double[]){-2, 0, 3});
    ag_tensor *d = vec(AG_FLOAT64, 3, (double[]){9, 8, 7});
    OK(ag_where(&r, c3, i, a));
    CHECK(dtype_of(r) == AG_FLOAT32);
    check_values("where promote", r, (double[]){-2, 0.5, 3}, 3, 0);
    ag_tensor_release(r);
    OK(ag_where(&r, c3, a, d));
    CHECK(dtype_of(r) == AG_FLOAT64);
    check_values("where f64", r, (double[]){-2, 8, 3}, 3, 0);
    ag_tensor_release(r);
    OK(ag_where(&r, c3, i, i));
    CHECK(dtype_of(r) == AG_INT64);
    CHECK_STR(grad_fn_name(r), "");
    ag_tensor_release(r);
    /* an int64 condition selects where nonzero (PyTorch 1.13 wants bool; the ABI takes both) */
    ag_tensor *ic = vec(AG_INT64, 3, (double[]){0, 5, -1});
    OK(ag_where(&r, ic, a, d));
    check_values("where int cond", r, (double[]){9, 0.5, 3}, 3, 0);
    ag_tensor_release(r);
    r = NULL;
    FAILS(AG_EDTYPE, ag_where(&r, a, a, d)); /* a float condition */
    ag_tensor *c2 = vec(AG_BOOL, 2, (double[]){1, 0});
    FAILS(AG_ESHAPE, ag_where(&r, c2, a, d));
    FAILS(AG_EINVAL, ag_where(&r, c3, NULL, d));
    CHECK(r == NULL);
    ag_tensor_release(c2);
    ag_tensor_release(ic);
    ag_tensor_release(i);
    ag_tensor_release(d);
    ag_tensor_release(c3);
    ag_tensor_release(a);
    ag_tensor_release(cond);

    /* gradchecks: same shapes, everything broadcast, a 0-d operand */
    int64_t s3[1] = {3};
    static const double cd23[6] = {1, 0, 0, 1, 1, 0}, cd21[2] = {0, 1};
    gc_input same[3] = {{s23, 2, cd23, 0, 0, 0, AG_BOOL}, {s23, 2, NULL, 0, 0, 1, 0},
                        {s23, 2, NULL, 0, 0, 1, 0}};
    gc_input bc[3] = {{s21, 2, cd21, 0, 0, 0, AG_BOOL}, {s3, 1, NULL, 0, 0, 1, 0},
                      {s23, 2, NULL, 0, 0, 1, 0}};
    gc_input zd[3] = {{s23, 2, cd23, 0, 0, 0, AG_BOOL}, {NULL, 0, NULL, 0, 0, 1, 0},
                      {s21, 2, NULL, 0, 0, 1, 0}};
    CHECK(gradcheck("where", call_where, same, 3, NULL));
    CHECK(gradcheck("where bcast", call_where, bc, 3, NULL));
    CHECK(gradcheck("where 0-d", call_where, zd, 3, NULL));
    CHECK(gradgradcheck("where", call_where, same, 3, NULL));
    CHECK(gradgradcheck("where bcast", call_where, bc, 3, NULL));
}

/* ---- masked_fill ---- */
typedef struct mf_ctx {
    double v;
} mf_ctx;
static int call_masked_fill(ag_tensor **out, ag_tensor *const *in, void *ctx)
{
    return ag_masked_fill(out, in[0], in[1], ((mf_ctx *)ctx)->v);
}

static void masked_fill_tests(void)
{
    int64_t s23[2] = {2, 3}, s3[1] = {3}, s21[2] = {2, 1};
    ag_tensor *t = vec(AG_FLOAT32, 3, (double[]){-2, 0.5, 3}), *r = NULL, *s, *g;
    ag_tensor *m = vec(AG_BOOL, 3, (double[]){1, 0, 1});
    OK(ag_tensor_set_requires_grad(t, 1));
    OK(ag_masked_fill(&r, t, m, 9));
    CHECK_STR(grad_fn_name(r), "MaskedFillBackward0");
    check_values("masked_fill", r, (double[]){9, 0.5, 9}, 3, 0);
    OK(ag_sum(&s, r));
    OK(ag_backward(s, NULL, 0));
    OK(ag_tensor_grad(&g, t));
    check_values("masked_fill grad", g, (double[]){0, 1, 0}, 3, 0);
    ag_tensor_release(g);
    ag_tensor_release(s);
    ag_tensor_release(r);
    OK(ag_masked_fill(&r, t, m, NAN));
    check_values("masked_fill nan", r, (double[]){NAN, 0.5, NAN}, 3, 0);
    ag_tensor_release(r);
    /* torch.masked_fill(t, mask[2, 3], 9.) broadcasts t to the mask's shape */
    ag_tensor *m23 = tensor_f64((double[]){1, 0, 1, 0, 0, 0}, s23, 2, AG_BOOL);
    OK(ag_masked_fill(&r, t, m23, 9));
    int64_t shape[2];
    OK(ag_tensor_shape(shape, 2, r));
    CHECK(shape[0] == 2 && shape[1] == 3);
    check_values("masked_fill bcast", r, (double[]){9, 0.5, 9, -2, 0.5, 3}, 6, 0);
    ag_tensor_release(r);
    /* the value takes t's dtype: masked_fill(int64, 2.5) writes 2; bool writes value != 0 */
    ag_tensor *i = vec(AG_INT64, 3, (double[]){-2, 0, 3});
    OK(ag_masked_fill(&r, i, m, 2.5));
    CHECK(dtype_of(r) == AG_INT64);
    check_values("masked_fill int", r, (double[]){2, 0, 2}, 3, 0);
    ag_tensor_release(r);
    ag_tensor *bt = vec(AG_BOOL, 3, (double[]){1, 0, 1});
    ag_tensor *m2 = vec(AG_BOOL, 3, (double[]){1, 0, 0}), *m_short = vec(AG_BOOL, 2, (double[]){1, 0});
    ag_tensor *m3 = vec(AG_BOOL, 3, (double[]){0, 1, 0});
    OK(ag_masked_fill(&r, bt, m3, 2.0));
    check_values("masked_fill bool 2", r, (double[]){1, 1, 1}, 3, 0);
    ag_tensor_release(m3);
    ag_tensor_release(r);
    OK(ag_masked_fill(&r, bt, m2, 0.0));
    CHECK(dtype_of(r) == AG_BOOL);
    check_values("masked_fill bool", r, (double[]){0, 0, 1}, 3, 0);
    ag_tensor_release(r);
    r = NULL;
    FAILS(AG_EINVAL, ag_masked_fill(&r, i, m, 1e30)); /* value cannot be converted to int64 */
    FAILS(AG_EINVAL, ag_masked_fill(&r, i, m, NAN));
    FAILS(AG_EDTYPE, ag_masked_fill(&r, t, t, 0));    /* a float mask */
    FAILS(AG_ESHAPE, ag_masked_fill(&r, t, m_short, 0));
    CHECK(r == NULL);
    ag_tensor_release(m_short);
    ag_tensor_release(m2);
    ag_tensor_release(bt);
    ag_tensor_release(i);
    ag_tensor_release(m23);
    ag_tensor_release(m);
    ag_tensor_release(t);

    mf_ctx c = {-4.0};
    static const double md23[6] = {1, 0, 0, 1, 1, 0}, md21[2] = {0, 1};
    gc_input same[2] = {{s23, 2, NULL, 0, 0, 1, 0}, {s23, 2, md23, 0, 0, 0, AG_BOOL}};
    gc_input small_t[2] = {{s3, 1, NULL, 0, 0, 1, 0}, {s23, 2, md23, 0, 0, 0, AG_BOOL}};
    gc_input small_m[2] = {{s23, 2, NULL, 0, 0, 1, 0}, {s21, 2, md21, 0, 0, 0, AG_BOOL}};
    CHECK(gradcheck("masked_fill", call_masked_fill, same, 2, &c));
    CHECK(gradcheck("masked_fill t bcast", call_masked_fill, small_t, 2, &c));
    CHECK(gradcheck("masked_fill mask bcast", call_masked_fill, small_m, 2, &c));
    CHECK(gradgradcheck("masked_fill", call_masked_fill, same, 2, &c));
    CHECK(gradgradcheck("masked_fill t bcast", call_masked_fill, small_t, 2, &c));
}

/* ---- maximum / minimum ---- */
static int call_binary(ag_tensor **out, ag_tensor *const *in, void *ctx)
{
    return ((binary_api)ctx)(out, in[0], in[1]);
}

static void extremum_tests(void)
{
    /* a = [1, 2, nan, 4], b = [1, 3, 1, nan]: torch.maximum / minimum and their gradients
     * (backward with ones): ties split in half, a NaN side sends the gradient to both */
    static const struct {
        binary_api f;
        const char *name;
        double y[4], ga[4], gb[4];
    } cases[] = {
        {ag_maximum, "MaximumBackward0", {1, 3, NAN, NAN}, {0.5, 0, 1, 1}, {0.5, 1, 1, 1}},
        {ag_minimum, "MinimumBackward0", {1, 2, NAN, NAN}, {0.5, 1, 1, 1}, {0.5, 0, 1, 1}},
    };
    for (int k = 0; k < 2; k++) {
        ag_tensor *a = vec(AG_FLOAT64, 4, (double[]){1, 2, NAN, 4});
        ag_tensor *b = vec(AG_FLOAT64, 4, (double[]){1, 3, 1, NAN}), *r, *s, *g;
        OK(ag_tensor_set_requires_grad(a, 1));
        OK(ag_tensor_set_requires_grad(b, 1));
        OK(cases[k].f(&r, a, b));
        CHECK_STR(grad_fn_name(r), cases[k].name);
        check_values(cases[k].name, r, cases[k].y, 4, 0);
        OK(ag_sum(&s, r));
        OK(ag_backward(s, NULL, 0));
        OK(ag_tensor_grad(&g, a));
        check_values("grad a", g, cases[k].ga, 4, 0);
        ag_tensor_release(g);
        OK(ag_tensor_grad(&g, b));
        check_values("grad b", g, cases[k].gb, 4, 0);
        ag_tensor_release(g);
        ag_tensor_release(s);
        ag_tensor_release(r);
        ag_tensor_release(a);
        ag_tensor_release(b);
    }
    /* dtypes: int64 with float32 is float32; int64 stays int64 (no grad_fn); bool is or/and */
    ag_tensor *i = vec(AG_INT64, 3, (double[]){-2, 0, 3});
    ag_tensor *f = vec(AG_FLOAT32, 3, (double[]){-1, -0.5, 4}), *r = NULL;
    OK(ag_maximum(&r, i, f));
    CHECK(dtype_of(r) == AG_FLOAT32);
    check_values("maximum i/f", r, (double[]){-1, 0, 4}, 3, 0);
    ag_tensor_release(r);
    ag_tensor *i2 = vec(AG_INT64, 3, (double[]){1, -1, 3});
    OK(ag_minimum(&r, i, i2));
    CHECK(dtype_of(r) == AG_INT64);
    check_values("minimum int", r, (double[]){-2, -1, 3}, 3, 0);
    ag_tensor_release(r);
    ag_tensor *b1 = vec(AG_BOOL, 2, (double[]){1, 0}), *b2 = vec(AG_BOOL, 2, (double[]){0, 0});
    OK(ag_maximum(&r, b1, b2));
    CHECK(dtype_of(r) == AG_BOOL);
    check_values("maximum bool", r, (double[]){1, 0}, 2, 0);
    ag_tensor_release(r);
    OK(ag_minimum(&r, b1, b2));
    check_values("minimum bool", r, (double[]){0, 0}, 2, 0);
    ag_tensor_release(r);
    r = NULL;
    FAILS(AG_ESHAPE, ag_maximum(&r, i, b1));
    CHECK(r == NULL);
    ag_tensor_release(b1);
    ag_tensor_release(b2);
    ag_tensor_release(i2);
    ag_tensor_release(i);
    ag_tensor_release(f);

    /* gradchecks (random inputs: no ties), broadcasting on either side and a 0-d operand */
    int64_t s23[2] = {2, 3}, s3[1] = {3}, s21[2] = {2, 1};
    gc_input same[2] = {{s23, 2, NULL, 0, 0, 1, 0}, {s23, 2, NULL, 0, 0, 1, 0}};
    gc_input bc[2] = {{s23, 2, NULL, 0, 0, 1, 0}, {s3, 1, NULL, 0, 0, 1, 0}};
    gc_input outer[2] = {{s21, 2, NULL, 0, 0, 1, 0}, {s3, 1, NULL, 0, 0, 1, 0}};
    gc_input zd[2] = {{NULL, 0, NULL, 0, 0, 1, 0}, {s23, 2, NULL, 0, 0, 1, 0}};
    static const binary_api fs[2] = {ag_maximum, ag_minimum};
    static const char *names[2] = {"maximum", "minimum"};
    for (int k = 0; k < 2; k++) {
        CHECK(gradcheck(names[k], call_binary, same, 2, (void *)fs[k]));
        CHECK(gradcheck(names[k], call_binary, bc, 2, (void *)fs[k]));
        CHECK(gradcheck(names[k], call_binary, outer, 2, (void *)fs[k]));
        CHECK(gradcheck(names[k], call_binary, zd, 2, (void *)fs[k]));
        CHECK(gradgradcheck(names[k], call_binary, same, 2, (void *)fs[k]));
        CHECK(gradgradcheck(names[k], call_binary, outer, 2, (void *)fs[k]));
    }
}

int main(void)
{
    comparisons();
    where_tests();
    masked_fill_tests();
    extremum_tests();
    return harness_finish("test_compare");
}
