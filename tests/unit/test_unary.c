/*
 * test_unary.c: exp..cos, the activations and clamp: values against PyTorch, grad_fn names,
 * dtype rules and errors, the fused backward kernels against the composed ones, and first-
 * and second-order gradient checks of every op.
 */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "harness.h"

typedef int (*unary_api)(ag_tensor **, const ag_tensor *);

/* ---- the ops as gradcheck functions ---- */
typedef struct uop {
    const char *name;
    int (*call)(ag_tensor **out, const ag_tensor *a, const struct uop *op);
    unary_api f;
    double p0, p1;
} uop;

static int call_plain(ag_tensor **o, const ag_tensor *a, const uop *op) { return op->f(o, a); }
static int call_leaky(ag_tensor **o, const ag_tensor *a, const uop *op) { return ag_leaky_relu(o, a, op->p0); }
static int call_gelu(ag_tensor **o, const ag_tensor *a, const uop *op) { return ag_gelu(o, a, (int)op->p0); }
static int call_softplus(ag_tensor **o, const ag_tensor *a, const uop *op) { return ag_softplus(o, a, op->p0, op->p1); }
static int call_clamp(ag_tensor **o, const ag_tensor *a, const uop *op) { return ag_clamp(o, a, op->p0, op->p1); }
static int call_clamp_min(ag_tensor **o, const ag_tensor *a, const uop *op) { return ag_clamp_min(o, a, op->p0); }
static int call_clamp_max(ag_tensor **o, const ag_tensor *a, const uop *op) { return ag_clamp_max(o, a, op->p0); }

static int gc_call(ag_tensor **out, ag_tensor *const *in, void *ctx)
{
    const uop *op = ctx;
    return op->call(out, in[0], op);
}

#define PLAIN(n) {#n, call_plain, ag_##n, 0, 0}
static const uop OPS[] = {
    PLAIN(exp),   PLAIN(log),  PLAIN(log1p), PLAIN(expm1),   PLAIN(sqrt), PLAIN(rsqrt),
    PLAIN(abs),   PLAIN(sin),  PLAIN(cos),   PLAIN(tanh),    PLAIN(sigmoid), PLAIN(relu),
    PLAIN(silu),  {"leaky_relu", call_leaky, NULL, 0.1, 0},  {"leaky_relu neg", call_leaky, NULL, -0.3, 0},
    {"gelu", call_gelu, NULL, 0, 0},        {"gelu tanh", call_gelu, NULL, 1, 0},
    {"softplus", call_softplus, NULL, 1, 20}, {"softplus b2 t1", call_softplus, NULL, 2, 1},
    {"softplus b-1", call_softplus, NULL, -1, 20},
    {"clamp", call_clamp, NULL, -0.5, 0.7}, {"clamp lo>hi", call_clamp, NULL, 0.5, -0.5},
    {"clamp_min", call_clamp_min, NULL, -0.5, 0}, {"clamp_max", call_clamp_max, NULL, 0.7, 0},
};

static void grads(void)
{
    /* Away from every kink (0 for relu/abs/leaky, the clamp bounds, softplus' threshold) and
     * inside every domain (log, sqrt need x > 0): |x| in [0.1, 2] keeps finite differences
     * honest. */
    static const double mixed[6] = {-1.7, -0.9, -0.3, 0.2, 0.6, 1.9};
    static const double pos[6] = {0.3, 0.8, 1.1, 1.6, 2.2, 3.0};
    int64_t s23[2] = {2, 3};
    for (size_t k = 0; k < sizeof OPS / sizeof OPS[0]; k++) {
        const uop *op = &OPS[k];
        bool domain = !strcmp(op->name, "log") || !strcmp(op->name, "sqrt") ||
                      !strcmp(op->name, "rsqrt") || !strcmp(op->name, "log1p");
        gc_input in[1] = {{s23, 2, domain ? pos : mixed, 0, 0, 1, 0}};
        gc_input scal[1] = {{NULL, 0, domain ? pos + 2 : mixed + 4, 0, 0, 1, 0}};
        CHECK(gradcheck(op->name, gc_call, in, 1, (void *)op));
        CHECK(gradcheck(op->name, gc_call, scal, 1, (void *)op));
        CHECK(gradgradcheck(op->name, gc_call, in, 1, (void *)op));
    }
}

/* ---- values ---- */
static void values_f64(void)
{
    /* x = torch.tensor([-1.5, -0.25, 0.5, 2.0], dtype=torch.float64); p = [0.25, 0.5, 1.5, 4.0] */
    static const double xd[4] = {-1.5, -0.25, 0.5, 2.0}, pd[4] = {0.25, 0.5, 1.5, 4.0};
    static const struct {
        const char *grad_fn;
        unary_api f;
        bool on_p;
        double want[4];
    } cases[] = {
        {"ExpBackward0", ag_exp, 0, {0.22313016014842982, 0.7788007830714049, 1.6487212707001282, 7.38905609893065}},
        {"LogBackward0", ag_log, 1, {-1.3862943611198906, -0.6931471805599453, 0.4054651081081644, 1.3862943611198906}},
        {"Log1PBackward0", ag_log1p, 0, {NAN, -0.2876820724517809, 0.4054651081081644, 1.0986122886681098}},
        {"Expm1Backward0", ag_expm1, 0, {-0.7768698398515702, -0.22119921692859512, 0.6487212707001282, 6.38905609893065}},
        {"SqrtBackward0", ag_sqrt, 1, {0.5, 0.7071067811865476, 1.224744871391589, 2.0}},
        {"RsqrtBackward0", ag_rsqrt, 1, {2.0, 1.414213562373095, 0.8164965809277261, 0.5}},
        {"AbsBackward0", ag_abs, 0, {1.5, 0.25, 0.5, 2.0}},
        {"SinBackward0", ag_sin, 0, {-0.9974949866040544, -0.24740395925452294, 0.479425538604203, 0.9092974268256817}},
        {"CosBackward0", ag_cos, 0, {0.0707372016677029, 0.9689124217106447, 0.8775825618903728, -0.4161468365471424}},
        {"TanhBackward0", ag_tanh, 0, {-0.9051482536448664, -0.24491866240370913, 0.46211715726000974, 0.9640275800758169}},
        {"SigmoidBackward0", ag_sigmoid, 0, {0.18242552380635635, 0.43782349911420193, 0.6224593312018546, 0.8807970779778823}},
        {"ReluBackward0", ag_relu, 0, {0.0, 0.0, 0.5, 2.0}},
        /* F.silu(x) */
        {"SiluBackward0", ag_silu, 0, {-0.2736382857095345, -0.10945587477855048, 0.3112296656009273, 1.7615941559557646}},
    };
    ag_tensor *x = vec(AG_FLOAT64, 4, xd), *p = vec(AG_FLOAT64, 4, pd), *r;
    OK(ag_tensor_set_requires_grad(x, 1));
    OK(ag_tensor_set_requires_grad(p, 1));
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        OK(cases[k].f(&r, cases[k].on_p ? p : x));
        CHECK_STR(grad_fn_name(r), cases[k].grad_fn);
        check_values(cases[k].grad_fn, r, cases[k].want, 4, 1e-14);
        ag_tensor_release(r);
    }
    /* F.leaky_relu(x, 0.1) */
    static const double leaky[4] = {-0.15000000000000002, -0.025, 0.5, 2.0};
    OK(ag_leaky_relu(&r, x, 0.1));
    CHECK_STR(grad_fn_name(r), "LeakyReluBackward0");
    check_values("leaky_relu", r, leaky, 4, 1e-15);
    ag_tensor_release(r);
    /* F.gelu(x), F.gelu(x, approximate='tanh') */
    static const double gelu[4] = {-0.10021080190328704, -0.10032341857926907, 0.34573123063700656, 1.9544997361036416};
    static const double gelu_t[4] = {-0.10042842301976707, -0.100324649298315, 0.34571400982514394, 1.954597694087775};
    OK(ag_gelu(&r, x, 0));
    CHECK_STR(grad_fn_name(r), "GeluBackward0");
    check_values("gelu", r, gelu, 4, 1e-14);
    ag_tensor_release(r);
    OK(ag_gelu(&r, x, 1));
    CHECK_STR(grad_fn_name(r), "GeluBackward0");
    check_values("gelu tanh", r, gelu_t, 4, 1e-14);
    ag_tensor_release(r);
    /* F.softplus(x, 2.0, 1.0): the last element is past the threshold (linear) */
    static const double sp[4] = {0.02429367578687103, 0.23703849209005334, 0.6566308437591114, 2.0};
    OK(ag_softplus(&r, x, 2.0, 1.0));
    CHECK_STR(grad_fn_name(r), "SoftplusBackward0");
    check_values("softplus", r, sp, 4, 1e-14);
    ag_tensor_release(r);
    /* torch.clamp(x, -0.5, 1.0); every form is ClampBackward1 */
    static const double cl[4] = {-0.5, -0.25, 0.5, 1.0}, clmin[4] = {-0.5, -0.25, 0.5, 2.0},
                        clmax[4] = {-1.5, -0.25, 0.5, 1.0}, clinv[4] = {-1, -1, -1, -1};
    OK(ag_clamp(&r, x, -0.5, 1.0));
    CHECK_STR(grad_fn_name(r), "ClampBackward1");
    check_values("clamp", r, cl, 4, 0);
    ag_tensor_release(r);
    OK(ag_clamp_min(&r, x, -0.5));
    CHECK_STR(grad_fn_name(r), "ClampBackward1");
    check_values("clamp_min", r, clmin, 4, 0);
    ag_tensor_release(r);
    OK(ag_clamp_max(&r, x, 1.0));
    CHECK_STR(grad_fn_name(r), "ClampBackward1");
    check_values("clamp_max", r, clmax, 4, 0);
    ag_tensor_release(r);
    OK(ag_clamp(&r, x, 1.0, -1.0)); /* lo > hi: torch.clamp gives hi everywhere */
    check_values("clamp lo>hi", r, clinv, 4, 0);
    ag_tensor_release(r);
    ag_tensor_release(x);
    ag_tensor_release(p);
}

/* relu(-0.0) is -0.0 and relu(NaN) NaN in both float dtypes, as torch.relu gives. */
static void relu_signed_zero(void)
{
    for (int k = 0; k < 2; k++) {
        ag_dtype dt = k ? AG_FLOAT64 : AG_FLOAT32;
        ag_tensor *x = vec(dt, 3, (const double[]){-0.0, -2.0, NAN}), *r;
        double v[3] = {0};
        OK(ag_relu(&r, x));
        OK(ag_tensor_copy_f64(v, 3, r));
        CHECK(v[0] == 0 && signbit(v[0]));
        CHECK(v[1] == 0 && !signbit(v[1]));
        CHECK(isnan(v[2]));
        ag_tensor_release(r);
        ag_tensor_release(x);
    }
}

static void values_f32(void)
{
    /* the float32 kernels (vectorised tanh / sigmoid): torch.tanh(x.float()) etc. */
    static const double xd[4] = {-1.5, -0.25, 0.5, 2.0};
    static const double th[4] = {-0.9051482677459717, -0.24491865932941437, 0.46211716532707214, 0.9640275835990906};
    static const double sg[4] = {0.18242552876472473, 0.43782350420951843, 0.622459352016449, 0.8807970285415649};
    static const double ex[4] = {0.22313016653060913, 0.7788007855415344, 1.6487212181091309, 7.389056205749512};
    static const double ge[4] = {-0.10021086037158966, -0.10032343119382858, 0.3457311987876892, 1.9544999599456787};
    static const double si[4] = {-0.2736382782459259, -0.10945587605237961, 0.3112296760082245, 1.7615940570831299};
    ag_tensor *x = vec(AG_FLOAT32, 4, xd), *r;
    ag_dtype dt;
    const double tol = 3e-7; /* a couple of float32 ulps */
    OK(ag_tanh(&r, x));
    check_values("tanh f32", r, th, 4, tol);
    OK(ag_tensor_dtype(&dt, r));
    CHECK(dt == AG_FLOAT32);
    ag_tensor_release(r);
    OK(ag_sigmoid(&r, x));
    check_values("sigmoid f32", r, sg, 4, tol);
    ag_tensor_release(r);
    OK(ag_exp(&r, x));
    check_values("exp f32", r, ex, 4, tol);
    ag_tensor_release(r);
    OK(ag_gelu(&r, x, 0));
    check_values("gelu f32", r, ge, 4, tol);
    ag_tensor_release(r);
    OK(ag_silu(&r, x));
    check_values("silu f32", r, si, 4, tol);
    ag_tensor_release(r);
    ag_tensor_release(x);

    /* special values through the vectorised kernels: long enough to take the SIMD path */
    double sd[40];
    for (int i = 0; i < 40; i++) sd[i] = (i % 5 - 2) * 30.0; /* -60, -30, 0, 30, 60 */
    sd[1] = NAN, sd[2] = INFINITY, sd[3] = -INFINITY, sd[4] = -0.0, sd[5] = -100.0;
    x = vec(AG_FLOAT32, 40, sd);
    OK(ag_tanh(&r, x));
    double *v = values(r, NULL);
    CHECK(isnan(v[1]) && v[2] == 1 && v[3] == -1 && v[4] == 0 && signbit(v[4]) && v[5] == -1);
    CHECK(v[10] == -1 && v[12] == 0 && v[13] == 1);
    free(v);
    ag_tensor_release(r);
    OK(ag_sigmoid(&r, x));
    v = values(r, NULL);
    CHECK(isnan(v[1]) && v[2] == 1 && v[3] == 0 && v[4] == 0.5 && v[13] == 1 && v[14] == 1);
    /* torch.sigmoid(torch.tensor(-100.)) underflows to 0; the true value 3.78e-44 is a
     * float32 denormal, which the kernel keeps */
    CHECK(v[5] >= 0 && v[5] < 1e-43);
    CHECK_CLOSE(v[10], 8.75651076269652e-27, 1e-6); /* sigmoid(-60) */
    free(v);
    ag_tensor_release(r);
    OK(ag_relu(&r, x));
    v = values(r, NULL);
    CHECK(isnan(v[1]) && v[2] == INFINITY && v[3] == 0 && v[10] == 0 && v[14] == 60);
    free(v);
    ag_tensor_release(r);
    OK(ag_clamp(&r, x, -1, 1));
    v = values(r, NULL);
    CHECK(isnan(v[1]) && v[2] == 1 && v[3] == -1 && v[10] == -1 && v[12] == 0 && v[14] == 1);
    free(v);
    ag_tensor_release(r);
    ag_tensor_release(x);
}

/* ---- dtypes and errors ---- */
static void dtypes(void)
{
    static const double d[3] = {-2, 0, 3};
    ag_tensor *i = vec(AG_INT64, 3, d), *b = vec(AG_BOOL, 2, (double[]){1, 0}), *r = NULL;
    ag_dtype dt;
    /* torch.exp(int) and torch.exp(bool) are float32 */
    OK(ag_exp(&r, i));
    OK(ag_tensor_dtype(&dt, r));
    CHECK(dt == AG_FLOAT32);
    check_values("exp int", r, (double[]){0.1353352832366127, 1, 20.085536923187668}, 3, 1e-7);
    ag_tensor_release(r);
    OK(ag_sigmoid(&r, b));
    OK(ag_tensor_dtype(&dt, r));
    CHECK(dt == AG_FLOAT32);
    check_values("sigmoid bool", r, (double[]){0.7310585786300049, 0.5}, 2, 1e-7);
    ag_tensor_release(r);
    /* abs and relu keep int64 */
    OK(ag_abs(&r, i));
    OK(ag_tensor_dtype(&dt, r));
    CHECK(dt == AG_INT64);
    check_values("abs int", r, (double[]){2, 0, 3}, 3, 0);
    ag_tensor_release(r);
    OK(ag_relu(&r, i));
    OK(ag_tensor_dtype(&dt, r));
    CHECK(dt == AG_INT64);
    check_values("relu int", r, (double[]){0, 0, 3}, 3, 0);
    ag_tensor_release(r);
    /* clamp promotes with its bounds as Python scalars */
    OK(ag_clamp(&r, i, -1, 1));
    OK(ag_tensor_dtype(&dt, r));
    CHECK(dt == AG_INT64);
    check_values("clamp int", r, (double[]){-1, 0, 1}, 3, 0);
    ag_tensor_release(r);
    OK(ag_clamp(&r, i, 2, -1)); /* lo > hi: hi */
    check_values("clamp int lo>hi", r, (double[]){-1, -1, -1}, 3, 0);
    ag_tensor_release(r);
    OK(ag_clamp_min(&r, i, 0.5)); /* torch.clamp(int, min=0.5) is float32 */
    OK(ag_tensor_dtype(&dt, r));
    CHECK(dt == AG_FLOAT32);
    check_values("clamp_min int 0.5", r, (double[]){0.5, 0.5, 3}, 3, 0);
    ag_tensor_release(r);
    OK(ag_clamp_max(&r, i, 1e30)); /* an integral value beyond int64 is a float scalar */
    OK(ag_tensor_dtype(&dt, r));
    CHECK(dt == AG_FLOAT32);
    ag_tensor_release(r);
    OK(ag_clamp(&r, b, -1, 0)); /* torch.clamp(bool, -1, 0) is int64 */
    OK(ag_tensor_dtype(&dt, r));
    CHECK(dt == AG_INT64);
    check_values("clamp bool", r, (double[]){0, 0}, 2, 0);
    ag_tensor_release(r);

    r = NULL;
    FAILS(AG_EDTYPE, ag_relu(&r, b));    /* Boolean inputs not supported for relu */
    FAILS(AG_EDTYPE, ag_abs(&r, b));     /* "abs_cpu" not implemented for 'Bool' */
    FAILS(AG_EDTYPE, ag_leaky_relu(&r, i, 0.1));
    FAILS(AG_EDTYPE, ag_gelu(&r, i, 0));
    FAILS(AG_EDTYPE, ag_silu(&r, i));
    FAILS(AG_EDTYPE, ag_softplus(&r, i, 1, 20));
    CHECK(r == NULL);
    ag_tensor *f = vec(AG_FLOAT32, 3, d);
    /* (beta 0 is no error: PyTorch gives inf; a float32 threshold out of range is) */
    FAILS(AG_EINVAL, ag_softplus(&r, f, 1, 1e39));
    CHECK(strstr(ag_last_error(), "ag_softplus: value cannot be converted to type float") ==
          ag_last_error());
    FAILS(AG_EINVAL, ag_clamp(&r, f, NAN, 1));
    FAILS(AG_EINVAL, ag_clamp(&r, f, 0, NAN));
    FAILS(AG_EINVAL, ag_clamp_min(&r, f, NAN));
    FAILS(AG_EINVAL, ag_tanh(&r, NULL));
    FAILS(AG_EINVAL, ag_tanh(NULL, f));
    CHECK(r == NULL);
    /* NaN flows through clamp (torch.clamp(nan, 0, 1) is nan) */
    ag_tensor *n = vec(AG_FLOAT64, 2, (double[]){NAN, 5});
    OK(ag_clamp(&r, n, 0, 1));
    check_values("clamp nan", r, (double[]){NAN, 1}, 2, 0);
    ag_tensor_release(r);
    ag_tensor_release(n);
    ag_tensor_release(f);
    ag_tensor_release(i);
    ag_tensor_release(b);
}

/* ---- gradients at the special points, as PyTorch defines them ---- */
static void special_grads(void)
{
    /* x = torch.tensor([-1., 0., nan, 2.]); each op's x.grad after backward(ones) */
    static const double xd[4] = {-1, 0, NAN, 2};
    static const struct {
        const char *name;
        unary_api f;
        double want[4];
    } cases[] = {
        {"relu", ag_relu, {0, 0, 1, 1}},  /* threshold_backward: 0 only where y <= 0 */
        {"abs", ag_abs, {-1, 0, 0, 1}},   /* sign(0) = sign(nan) = 0 */
        {"tanh", ag_tanh, {0.41997434161402614, 1, NAN, 0.07065082485316443}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        ag_tensor *x = vec(AG_FLOAT64, 4, xd), *r, *s, *g;
        OK(ag_tensor_set_requires_grad(x, 1));
        OK(cases[k].f(&r, x));
        OK(ag_sum(&s, r));
        OK(ag_backward(s, NULL, 0));
        OK(ag_tensor_grad(&g, x));
        check_values(cases[k].name, g, cases[k].want, 4, 1e-12);
        ag_tensor_release(g);
        ag_tensor_release(s);
        ag_tensor_release(r);
        ag_tensor_release(x);
    }
    /* leaky_relu(x, 0.2): slope at 0 and NaN; clamp(x, -0.5, 1): 0 at NaN */
    ag_tensor *x = vec(AG_FLOAT64, 4, xd), *r, *s, *g;
    OK(ag_tensor_set_requires_grad(x, 1));
    OK(ag_leaky_relu(&r, x, 0.2));
    OK(ag_sum(&s, r));
    OK(ag_backward(s, NULL, 0));
    OK(ag_tensor_grad(&g, x));
    check_values("leaky grad", g, (double[]){0.2, 0.2, 0.2, 1}, 4, 0);
    ag_tensor_release(g);
    ag_tensor_release(s);
    ag_tensor_release(r);
    OK(ag_tensor_zero_grad(x));
    OK(ag_clamp(&r, x, -0.5, 1));
    OK(ag_sum(&s, r));
    OK(ag_backward(s, NULL, 0));
    OK(ag_tensor_grad(&g, x));
    check_values("clamp grad", g, (double[]){0, 1, 0, 0}, 4, 0);
    ag_tensor_release(g);
    ag_tensor_release(s);
    ag_tensor_release(r);
    OK(ag_tensor_zero_grad(x));
    OK(ag_clamp(&r, x, 1, 0)); /* lo > hi: no element is inside, all gradients 0 */
    OK(ag_sum(&s, r));
    OK(ag_backward(s, NULL, 0));
    OK(ag_tensor_grad(&g, x));
    check_values("clamp lo>hi grad", g, (double[]){0, 0, 0, 0}, 4, 0);
    ag_tensor_release(g);
    ag_tensor_release(s);
    ag_tensor_release(r);
    ag_tensor_release(x);
}

/* First and second derivatives against torch.autograd.grad(..., create_graph=True). */
static void higher_order(void)
{
    static const double xd[4] = {-1.5, -0.25, 0.5, 2.0};
    static const struct {
        const char *name;
        uop op;
        const char *bw_name; /* grad_fn of the first-order gradient */
        double d1[4], d2[4];
    } cases[] = {
        {"gelu", {"gelu", call_gelu, NULL, 0, 0}, "GeluBackwardBackward0",
         {-0.1274691922299796, 0.304626645116364, 0.8674951246561629, 1.085231801078197},
         {-0.03237939891647296, 0.7491694763055204, 0.6161143218375241, -0.10798193302637613}},
        {"gelu tanh", {"gelu", call_gelu, NULL, 1, 0}, "GeluBackwardBackward0",
         {-0.12771079315143308, 0.30464590484893955, 0.8673699035346424, 1.0860992566236183},
         {-0.03051819648422486, 0.7489486142236504, 0.615506895115985, -0.10787507995107845}},
        {"silu", {"silu", call_plain, ag_silu, 0, 0}, NULL,
         {-0.041294154299142946, 0.37628997842980233, 0.7399611873026519, 1.0907842487848955},
         {0.15619758496353672, 0.48461628746851704, 0.4412290269770286, 0.05006216869470701}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        ag_tensor *x = vec(AG_FLOAT64, 4, xd), *y;
        OK(ag_tensor_set_requires_grad(x, 1));
        OK(cases[k].op.call(&y, x, &cases[k].op));
        check_two_orders(cases[k].name, x, y, cases[k].d1, cases[k].d2, 4, 1e-13, 1e-12,
                         cases[k].bw_name);
        ag_tensor_release(y);
        ag_tensor_release(x);
    }
}

/* The fused backward kernels (no graph recorded) and the composed formulas (create_graph)
 * give identical gradients, float32 and float64, for contiguous and broadcast gradients. */
static void fused_vs_composed(void)
{
    static const unary_api fs[3] = {ag_tanh, ag_sigmoid, ag_relu};
    static const char *names[3] = {"tanh", "sigmoid", "relu"};
    double xd[64], wd[64];
    for (int i = 0; i < 64; i++) {
        xd[i] = sin(i * 1.7) * 4, wd[i] = cos(i * 0.3);
    }
    xd[5] = 0, xd[6] = NAN, xd[7] = 30;
    for (int dti = 0; dti < 2; dti++) {
        ag_dtype dt = dti ? AG_FLOAT64 : AG_FLOAT32;
        for (int k = 0; k < 3; k++) {
            ag_tensor *x = vec(dt, 64, xd), *w = vec(dt, 64, wd), *y, *g1, *g2;
            OK(ag_tensor_set_requires_grad(x, 1));
            OK(fs[k](&y, x));
            OK(ag_grad(&g1, &y, &w, 1, &x, 1, AG_RETAIN_GRAPH));
            OK(ag_grad(&g2, &y, &w, 1, &x, 1, AG_CREATE_GRAPH));
            double *a = values(g1, NULL), *b = values(g2, NULL);
            int same = 1;
            for (int i = 0; i < 64; i++) same &= memcmp(&a[i], &b[i], sizeof a[i]) == 0;
            if (!same) fprintf(stderr, "fused != composed: %s (dtype %d)\n", names[k], dt);
            CHECK(same);
            free(a);
            free(b);
            ag_tensor_release(g1);
            ag_tensor_release(g2);
            ag_tensor_release(y);
            ag_tensor_release(w);
            ag_tensor_release(x);
        }
    }
}

/* abs's backward goes through sgn, a recorded op with zero gradient (SgnBackward0), so a
 * second derivative exists (and is zero). */
static void abs_double_backward(void)
{
    ag_tensor *x = vec(AG_FLOAT64, 3, (double[]){-2, 0.5, 3}), *y, *s, *g, *gs, *gg;
    OK(ag_tensor_set_requires_grad(x, 1));
    OK(ag_abs(&y, x));
    OK(ag_sum(&s, y));
    OK(ag_grad(&g, &s, NULL, 1, &x, 1, AG_CREATE_GRAPH));
    check_values("abs grad", g, (double[]){-1, 1, 1}, 3, 0);
    CHECK_STR(grad_fn_name(g), "MulBackward0");
    OK(ag_sum(&gs, g));
    OK(ag_grad(&gg, &gs, NULL, 1, &x, 1, 0));
    check_values("abs grad grad", gg, (double[]){0, 0, 0}, 3, 0);
    ag_tensor_release(gg);
    ag_tensor_release(gs);
    ag_tensor_release(g);
    ag_tensor_release(s);
    ag_tensor_release(y);
    ag_tensor_release(x);
}

/* The same value gives the same bits wherever it sits in a tensor: rows of 24 (16 in the
 * vector loop, 8 left over) against one contiguous run. GCC's narrower remainder loop
 * contracted differently: tanh, sigmoid, silu and gelu's tanh form were 1-3 ulp apart
 * (gelu's backward up to 2e4). Forward and backward, float32. */
static void same_bits_whatever_the_layout(void)
{
    enum { R = 64, W = 24, P = 32 };
    static double vals[R * W], padded[R * P];
    for (int i = 0; i < R * W; i++) vals[i] = -6.0 + 12.0 * (double)((i * 7919) % (R * W)) / (R * W);
    for (int r = 0; r < R; r++)
        for (int c = 0; c < P; c++) padded[r * P + c] = c < W ? vals[r * W + c] : 0.0;
    int64_t flat[1] = {R * W}, s2[2] = {R, P};
    for (int op = 0; op < 4; op++) {
        ag_tensor *a = tensor_f64(vals, flat, 1, AG_FLOAT32), *b = tensor_f64(padded, s2, 2, AG_FLOAT32);
        OK(ag_tensor_set_requires_grad(a, 1));
        OK(ag_tensor_set_requires_grad(b, 1));
        ag_tensor *v, *ya, *yb, *sa, *sb, *ga, *gb;
        OK(ag_narrow(&v, b, 1, 0, W));
        if (op == 0) { OK(ag_tanh(&ya, a)); OK(ag_tanh(&yb, v)); }
        if (op == 1) { OK(ag_sigmoid(&ya, a)); OK(ag_sigmoid(&yb, v)); }
        if (op == 2) { OK(ag_silu(&ya, a)); OK(ag_silu(&yb, v)); }
        if (op == 3) { OK(ag_gelu(&ya, a, 1)); OK(ag_gelu(&yb, v, 1)); }
        OK(ag_sum(&sa, ya));
        OK(ag_sum(&sb, yb));
        OK(ag_backward(sa, NULL, 0));
        OK(ag_backward(sb, NULL, 0));
        OK(ag_tensor_grad(&ga, a));
        OK(ag_tensor_grad(&gb, b));
        static float fa[R * W], fb[R * W], dga[R * W], dgb[R * P];
        OK(ag_tensor_copy_data(fa, sizeof fa, ya));
        OK(ag_tensor_copy_data(fb, sizeof fb, yb));
        OK(ag_tensor_copy_data(dga, sizeof dga, ga));
        OK(ag_tensor_copy_data(dgb, sizeof dgb, gb));
        int diff_f = 0, diff_b = 0;
        for (int r = 0; r < R; r++)
            for (int c = 0; c < W; c++) {
                diff_f += memcmp(&fa[r * W + c], &fb[r * W + c], 4) != 0;
                diff_b += memcmp(&dga[r * W + c], &dgb[r * P + c], 4) != 0;
            }
        if (diff_f || diff_b)
            fprintf(stderr, "op %d: %d forward and %d backward values differ by layout\n", op,
                    diff_f, diff_b);
        CHECK(diff_f == 0 && diff_b == 0);
        ag_tensor *all[] = {a, b, v, ya, yb, sa, sb, ga, gb};
        for (int k = 0; k < 9; k++) ag_tensor_release(all[k]);
    }
}

int main(void)
{
    same_bits_whatever_the_layout();
    relu_signed_zero();
    values_f64();
    values_f32();
    dtypes();
    special_grads();
    higher_order();
    fused_vs_composed();
    abs_double_backward();
    grads();
    return harness_finish("test_unary");
}
