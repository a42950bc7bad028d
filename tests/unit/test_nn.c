/*
 * test_nn.c: softmax, log_softmax, the losses, dropout, layer_norm and embedding: values
 * against PyTorch 1.13 (the expression that produced each number is in a comment), grad_fn
 * names, errors, and first- and second-order gradient checks.
 */
#include <math.h>
#include <string.h>

#include "harness.h"

static ag_tensor *mat(ag_dtype dt, int64_t r, int64_t c, const double *d)
{
    int64_t shape[2] = {r, c};
    return tensor_f64(d, shape, 2, dt);
}

static ag_tensor *grad_of(const ag_tensor *t)
{
    ag_tensor *g = NULL;
    OK(ag_tensor_grad(&g, t));
    return g;
}

/* ---- softmax, log_softmax ---- */
typedef int (*dim_api)(ag_tensor **, const ag_tensor *, int64_t);
typedef struct dim_cfg {
    dim_api f;
    int64_t dim;
} dim_cfg;

static int call_dim(ag_tensor **out, ag_tensor *const *in, void *ctx)
{
    const dim_cfg *c = ctx;
    return c->f(out, in[0], c->dim);
}

static void softmax_values(void)
{
    static const double xd[6] = {1, 2, 3, -1, 0, 5};
    ag_tensor *x = mat(AG_FLOAT32, 2, 3, xd), *r;
    OK(ag_tensor_set_requires_grad(x, 1));
    /* F.softmax(x, 1) */
    static const double sm1[6] = {0.0900305733, 0.2447284758, 0.6652409434,
                                  0.0024561151, 0.0066764127, 0.9908674955};
    /* F.softmax(x, 0) */
    static const double sm0[6] = {0.8807970285, 0.8807970285, 0.1192029193,
                                  0.1192029193, 0.1192029193, 0.8807970285};
    /* F.log_softmax(x, -1) */
    static const double lsm1[6] = {-2.4076058865, -1.4076058865, -0.4076059461,
                                   -6.0091743469, -5.0091743469, -0.0091744522};
    /* F.log_softmax(x, 0) */
    static const double lsm0[6] = {-0.1269280463, -0.1269280463, -2.126928091,
                                   -2.126928091, -2.126928091, -0.1269280463};
    OK(ag_softmax(&r, x, 1));
    check_values("softmax dim 1", r, sm1, 6, 1e-6);
    CHECK_STR(grad_fn_name(r), "SoftmaxBackward0");
    ag_tensor_release(r);
    OK(ag_softmax(&r, x, 0));
    check_values("softmax dim 0", r, sm0, 6, 1e-6);
    ag_tensor_release(r);
    OK(ag_log_softmax(&r, x, -1));
    check_values("log_softmax dim -1", r, lsm1, 6, 1e-6);
    CHECK_STR(grad_fn_name(r), "LogSoftmaxBackward0");
    ag_tensor_release(r);
    OK(ag_log_softmax(&r, x, 0));
    check_values("log_softmax dim 0", r, lsm0, 6, 1e-6);
    ag_tensor_release(r);

    /* A middle dim (rows strided): x3 = torch.arange(24.).reshape(2,3,4).sin() * 3 */
    double x3d[24];
    for (int i = 0; i < 24; i++) x3d[i] = sin((double)i) * 3;
    int64_t s234[3] = {2, 3, 4};
    ag_tensor *x3 = tensor_f64(x3d, s234, 3, AG_FLOAT32);
    /* F.softmax(x3, 1) */
    static const double sm3[24] = {
        0.0486435741, 0.7810564041, 0.9605743885, 0.1744354665, 0.0050234254, 0.003523523,
        0.0271504261, 0.8198772669, 0.9463329911, 0.2154200971, 0.0122751351, 0.0056872345,
        0.0124262003, 0.2220087647, 0.9476432204, 0.8103193045, 0.0262014829, 0.0035184592,
        0.0050997636, 0.1805840731, 0.9613723159, 0.7744727731, 0.0472570546, 0.0090966262};
    /* F.log_softmax(x3, -2) */
    static const double lsm3[24] = {
        -3.0232355595, -0.2471079379, -0.040223822,  -1.7462004423, -5.2936434746, -5.648293972,
        -3.6063625813, -0.1986006051, -0.0551607646, -1.5351653099, -4.4001793861, -5.1695313454,
        -4.3879480362, -1.5050384998, -0.0537771881, -0.2103268802, -3.6419391632, -5.6497321129,
        -5.2785611153, -1.7115588188, -0.0393935144, -0.2555727959, -3.0521533489, -4.6998515129};
    OK(ag_softmax(&r, x3, 1));
    check_values("softmax 3-d dim 1", r, sm3, 24, 1e-6);
    ag_tensor_release(r);
    OK(ag_log_softmax(&r, x3, -2));
    check_values("log_softmax 3-d dim -2", r, lsm3, 24, 1e-6);
    ag_tensor_release(r);

    /* Stability and special values: F.softmax(tensor([1000., 0.]), 0) = [1, 0];
     * F.log_softmax(tensor([-inf, 1.]), 0) = [-inf, 0]; F.softmax(tensor([inf, 1.]), 0) = nan */
    static const double big[2] = {1000, 0}, ninf[2] = {-INFINITY, 1}, pinf[2] = {INFINITY, 1};
    static const double big_want[2] = {1, 0}, ninf_want[2] = {-INFINITY, 0},
                        nan2[2] = {NAN, NAN};
    ag_tensor *v;
    for (int dt = 0; dt < 2; dt++) {
        ag_dtype t = dt ? AG_FLOAT64 : AG_FLOAT32;
        v = vec(t, 2, big);
        OK(ag_softmax(&r, v, 0));
        check_values("softmax large", r, big_want, 2, 0);
        ag_tensor_release(r);
        ag_tensor_release(v);
        v = vec(t, 2, ninf);
        OK(ag_log_softmax(&r, v, 0));
        double *got = values(r, NULL);
        CHECK(got[0] == -INFINITY && got[1] == 0);
        free(got);
        (void)ninf_want;
        ag_tensor_release(r);
        ag_tensor_release(v);
        v = vec(t, 2, pinf);
        OK(ag_softmax(&r, v, 0));
        check_values("softmax inf", r, nan2, 2, 0);
        ag_tensor_release(r);
        ag_tensor_release(v);
    }
    /* 0-d: F.softmax(tensor(2.), 0) = 1, F.log_softmax(tensor(2.), -1) = 0 */
    OK(ag_tensor_scalar(&v, 2.0, AG_FLOAT64));
    static const double one = 1, zero = 0;
    OK(ag_softmax(&r, v, 0));
    check_values("softmax 0-d", r, &one, 1, 0);
    ag_tensor_release(r);
    OK(ag_log_softmax(&r, v, -1));
    check_values("log_softmax 0-d", r, &zero, 1, 0);
    ag_tensor_release(r);
    ag_tensor_release(v);

    /* Non-contiguous input: softmax of x.t() along 0 equals softmax(x, 1) transposed back. */
    ag_tensor *xt, *rt;
    OK(ag_t(&xt, x));
    OK(ag_softmax(&rt, xt, 0));
    OK(ag_t(&r, rt));
    check_values("softmax of a transposed view", r, sm1, 6, 1e-6);
    ag_tensor_release(r);
    ag_tensor_release(rt);
    ag_tensor_release(xt);
    ag_tensor_release(x3);
    ag_tensor_release(x);
}

static void softmax_grads(void)
{
    int64_t s35[2] = {3, 5}, s234[3] = {2, 3, 4};
    gc_input in2[1] = {{s35, 2, NULL, -2, 2, 1, 0}};
    gc_input in3[1] = {{s234, 3, NULL, -2, 2, 1, 0}};
    gc_input in0[1] = {{NULL, 0, NULL, -2, 2, 1, 0}};
    dim_api fs[2] = {ag_softmax, ag_log_softmax};
    const char *names[2] = {"softmax", "log_softmax"};
    for (int k = 0; k < 2; k++) {
        dim_cfg c1 = {fs[k], 1}, c0 = {fs[k], 0}, cm1 = {fs[k], -1}, cm2 = {fs[k], -2};
        CHECK(gradcheck(names[k], call_dim, in2, 1, &c1));
        CHECK(gradcheck(names[k], call_dim, in2, 1, &c0));
        CHECK(gradcheck(names[k], call_dim, in3, 1, &c1));
        CHECK(gradcheck(names[k], call_dim, in3, 1, &cm1));
        CHECK(gradcheck(names[k], call_dim, in3, 1, &cm2));
        CHECK(gradcheck(names[k], call_dim, in0, 1, &c0));
        CHECK(gradgradcheck(names[k], call_dim, in2, 1, &cm1));
        CHECK(gradgradcheck(names[k], call_dim, in3, 1, &c1));
    }
}

/* ---- cross_entropy, nll_loss ---- */
/* ce_in and tg of the PyTorch expressions below */
static const double ce_in[15] = {0.2, -1.0, 0.5, 2.0, 0.0, 1.5, 0.3, -0.7,
                                 0.1, -2.0, 0.0, 0.0, 1.0, -1.0, 0.5};
static const double ce_tg[3] = {1, 0, 4};
static const double ce_w[5] = {0.5, 2.0, 1.0, 1.5, 3.0};

typedef struct ce_cfg {
    int reduction;
    int64_t ignore;
    double ls;
    int weighted;
    int nll;
} ce_cfg;

static int call_ce(ag_tensor **out, ag_tensor *const *in, void *ctx)
{
    const ce_cfg *c = ctx;
    if (c->nll)
        return ag_nll_loss(out, in[0], in[1], c->weighted ? in[2] : NULL, c->reduction,
                           c->ignore);
    return ag_cross_entropy(out, in[0], in[1], c->weighted ? in[2] : NULL, c->reduction,
                            c->ignore, c->ls);
}

static void ce_case(const char *what, const ce_cfg *c, const double *want, size_t n,
                    const char *grad_fn)
{
    for (int dt = 0; dt < 2; dt++) {
        ag_tensor *in[3];
        in[0] = mat(dt ? AG_FLOAT64 : AG_FLOAT32, 3, 5, ce_in);
        in[1] = vec(AG_INT64, 3, ce_tg);
        in[2] = vec(dt ? AG_FLOAT64 : AG_FLOAT32, 5, ce_w);
        OK(ag_tensor_set_requires_grad(in[0], 1));
        ag_tensor *r = NULL;
        OK(call_ce(&r, in, (void *)c));
        if (r) {
            check_values(what, r, want, n, dt ? 1e-9 : 1e-6);
            CHECK_STR(grad_fn_name(r), grad_fn);
            ag_tensor_release(r);
        }
        for (int k = 0; k < 3; k++) ag_tensor_release(in[k]);
    }
}

static void cross_entropy_values(void)
{
    const int N = AG_REDUCTION_NONE, M = AG_REDUCTION_MEAN, S = AG_REDUCTION_SUM;
    /* F.cross_entropy(ce_in, tg, reduction=...) */
    static const double plain[3][3] = {{3.453335103, 0.5240133133, 1.4073003695},
                                       {1.7948829286}, {5.3846487858}};
    /* F.cross_entropy(ce_in, tg, weight=w, reduction=...) */
    static const double weighted[3][3] = {{6.906670206, 0.2620066566, 4.2219011086},
                                          {2.0710141766}, {11.3905779712}};
    /* F.cross_entropy(ce_in, tg, weight=w, ignore_index=0, reduction=...) */
    static const double ignored[3][3] = {{6.906670206, 0.0, 4.2219011086}, {2.2257142629},
                                         {11.1285713146}};
    /* F.cross_entropy(ce_in, tg, label_smoothing=0.1, reduction=...) */
    static const double smooth[3][3] = {{3.319335103, 0.6900133133, 1.4473003695},
                                        {1.8188829286}, {5.4566487858}};
    /* F.cross_entropy(ce_in, tg, weight=w, ignore_index=4, label_smoothing=0.25, ...) */
    static const double smooth_w[3][3] = {{6.0813366957, 1.2661103178, 0.0}, {2.9389788054},
                                          {7.3474470135}};
    /* F.nll_loss(ce_in, tg, weight=w, ignore_index=0, reduction=...) */
    static const double nll[3][3] = {{2.0, 0.0, -1.5}, {0.1}, {0.5}};
    const int reds[3] = {N, M, S};
    for (int k = 0; k < 3; k++) {
        size_t n = reds[k] == N ? 3 : 1;
        ce_cfg c = {reds[k], -100, 0, 0, 0};
        ce_case("cross_entropy", &c, plain[k], n, "NllLossBackward0");
        c.weighted = 1;
        ce_case("cross_entropy weighted", &c, weighted[k], n, "NllLossBackward0");
        c.ignore = 0;
        ce_case("cross_entropy ignore_index", &c, ignored[k], n, "NllLossBackward0");
        c = (ce_cfg){reds[k], -100, 0.1, 0, 0};
        ce_case("cross_entropy label_smoothing", &c, smooth[k], n, "AddBackward0");
        c = (ce_cfg){reds[k], 4, 0.25, 1, 0};
        ce_case("cross_entropy label_smoothing weighted", &c, smooth_w[k], n, "AddBackward0");
        c = (ce_cfg){reds[k], 0, 0, 1, 1};
        ce_case("nll_loss", &c, nll[k], n, "NllLossBackward0");
    }

    /* Gradients. a.grad after F.cross_entropy(a, tg, weight=w, ignore_index=0).backward() */
    static const double g_ign[15] = {0.0420193171, -0.3873440249, 0.0567201453, 0.2542020553,
                                     0.0344025072, 0, 0, 0, 0, 0, 0.0890884134, 0.0890884134,
                                     0.2421674153, 0.0327737957, -0.4531180378};
    /* ... and after F.cross_entropy(a, tg, weight=w, ignore_index=4, label_smoothing=0.25) */
    static const double g_ls[15] = {0.0698367025, -0.6159536473, 0.0877682761, 0.4529839051,
                                    0.0053647636, 0.023563193, 0.0152881713, 0.0003393815,
                                    0.0152661261, -0.0544568719, 0, 0, 0, 0, 0};
    for (int dt = 0; dt < 2; dt++) {
        for (int k = 0; k < 2; k++) {
            ag_tensor *x = mat(dt ? AG_FLOAT64 : AG_FLOAT32, 3, 5, ce_in);
            ag_tensor *t = vec(AG_INT64, 3, ce_tg), *w = vec(dt ? AG_FLOAT64 : AG_FLOAT32, 5, ce_w);
            ag_tensor *r, *g;
            OK(ag_tensor_set_requires_grad(x, 1));
            OK(ag_cross_entropy(&r, x, t, w, M, k ? 4 : 0, k ? 0.25 : 0));
            OK(ag_backward(r, NULL, 0));
            g = grad_of(x);
            check_values(k ? "cross_entropy smoothing grad" : "cross_entropy grad", g,
                         k ? g_ls : g_ign, 15, dt ? 1e-9 : 1e-6);
            ag_tensor_release(g);
            ag_tensor_release(r);
            ag_tensor_release(x);
            ag_tensor_release(t);
            ag_tensor_release(w);
        }
    }

    /* [C] input, [] target: F.cross_entropy(ce_in[0], tensor(3)) */
    ag_tensor *x1 = vec(AG_FLOAT64, 5, ce_in), *t0, *r;
    OK(ag_tensor_from_f64(&t0, (double[]){3}, AG_INT64, NULL, 0));
    static const double want1 = 0.453335103;
    OK(ag_cross_entropy(&r, x1, t0, NULL, M, -100, 0));
    check_values("cross_entropy [C]", r, &want1, 1, 1e-9);
    ag_tensor_release(r);
    OK(ag_cross_entropy(&r, x1, t0, NULL, N, -100, 0));
    size_t nd = 9;
    OK(ag_tensor_ndim(&nd, r));
    CHECK(nd == 0);
    ag_tensor_release(r);
    ag_tensor_release(t0);
    ag_tensor_release(x1);

    /* [N, C, d]: kin = torch.arange(24.).reshape(2,3,4).cos()*2, ktg as below */
    double kd[24];
    for (int i = 0; i < 24; i++) kd[i] = cos((double)i) * 2;
    static const double ktg[8] = {0, 1, 2, 1, 2, 2, 0, 1};
    int64_t s234[3] = {2, 3, 4}, s24[2] = {2, 4};
    ag_tensor *kin = tensor_f64(kd, s234, 3, AG_FLOAT32), *kt = tensor_f64(ktg, s24, 2, AG_INT64);
    static const double kmean = 1.3494186401; /* F.cross_entropy(kin, ktg) */
    static const double knone[8] = {0.1290795803, 1.0161108971, 3.6856927872, 0.2262843996,
                                    1.2400311232, 3.0487089157, 1.3743498325, 0.0750913918};
    OK(ag_cross_entropy(&r, kin, kt, NULL, M, -100, 0));
    check_values("cross_entropy [N, C, d]", r, &kmean, 1, 1e-6);
    ag_tensor_release(r);
    OK(ag_cross_entropy(&r, kin, kt, NULL, N, -100, 0));
    check_values("cross_entropy [N, C, d] none", r, knone, 8, 1e-6);
    ag_tensor_release(r);
    ag_tensor_release(kin);
    ag_tensor_release(kt);

    /* Every target ignored: mean is nan, sum 0 (F.nll_loss(x, tensor([-100]*3))). */
    static const double all_ign[3] = {-100, -100, -100};
    ag_tensor *x = mat(AG_FLOAT32, 3, 5, ce_in), *t = vec(AG_INT64, 3, all_ign);
    double v;
    OK(ag_nll_loss(&r, x, t, NULL, M, -100));
    OK(ag_tensor_item(&v, r));
    CHECK(isnan(v));
    ag_tensor_release(r);
    OK(ag_cross_entropy(&r, x, t, NULL, M, -100, 0.2));
    OK(ag_tensor_item(&v, r));
    CHECK(isnan(v));
    ag_tensor_release(r);
    OK(ag_cross_entropy(&r, x, t, NULL, S, -100, 0));
    OK(ag_tensor_item(&v, r));
    CHECK(v == 0);
    ag_tensor_release(r);
    ag_tensor_release(t);
    /* Empty batch: mean nan, sum 0. */
    int64_t s05[2] = {0, 5}, s0[1] = {0};
    ag_tensor *xe, *te;
    OK(ag_zeros(&xe, AG_FLOAT32, s05, 2));
    OK(ag_zeros(&te, AG_INT64, s0, 1));
    OK(ag_cross_entropy(&r, xe, te, NULL, M, -100, 0));
    OK(ag_tensor_item(&v, r));
    CHECK(isnan(v));
    ag_tensor_release(r);
    OK(ag_cross_entropy(&r, xe, te, NULL, S, -100, 0));
    OK(ag_tensor_item(&v, r));
    CHECK(v == 0);
    ag_tensor_release(r);
    ag_tensor_release(xe);
    ag_tensor_release(te);
    ag_tensor_release(x);
}

static void cross_entropy_errors(void)
{
    const int M = AG_REDUCTION_MEAN;
    ag_tensor *x = mat(AG_FLOAT32, 3, 5, ce_in), *r = NULL, *t;
    static const double t7[3] = {1, 0, 7}, tneg[3] = {1, 0, -3};
    t = vec(AG_INT64, 3, t7);
    FAILS(AG_ERANGE, ag_cross_entropy(&r, x, t, NULL, M, -100, 0));
    CHECK_STR(ag_last_error(), "ag_cross_entropy: Target 7 is out of bounds.");
    FAILS(AG_ERANGE, ag_nll_loss(&r, x, t, NULL, M, -100));
    ag_tensor_release(t);
    t = vec(AG_INT64, 3, tneg);
    FAILS(AG_ERANGE, ag_cross_entropy(&r, x, t, NULL, M, -100, 0.1));
    CHECK_STR(ag_last_error(), "ag_cross_entropy: Target -3 is out of bounds.");
    ag_tensor_release(t);
    t = vec(AG_FLOAT32, 3, ce_tg);
    FAILS(AG_EDTYPE, ag_cross_entropy(&r, x, t, NULL, M, -100, 0));
    CHECK_STR(ag_last_error(), "ag_cross_entropy: expected scalar type Long but found Float");
    ag_tensor_release(t);
    t = vec(AG_INT64, 2, ce_tg);
    FAILS(AG_ESHAPE, ag_cross_entropy(&r, x, t, NULL, M, -100, 0));
    CHECK_STR(ag_last_error(), "ag_cross_entropy: Expected input batch_size (3) to match target "
                               "batch_size (2).");
    ag_tensor_release(t);
    t = vec(AG_INT64, 3, ce_tg);
    ag_tensor *w4 = vec(AG_FLOAT32, 4, ce_w), *w64 = vec(AG_FLOAT64, 5, ce_w);
    FAILS(AG_ESHAPE, ag_cross_entropy(&r, x, t, w4, M, -100, 0));
    CHECK_STR(ag_last_error(), "ag_cross_entropy: weight tensor should be defined either for all "
                               "5 classes or no classes but got weight tensor of shape: [4]");
    FAILS(AG_EDTYPE, ag_cross_entropy(&r, x, t, w64, M, -100, 0));
    CHECK_STR(ag_last_error(), "ag_cross_entropy: expected scalar type Float but found Double");
    FAILS(AG_EINVAL, ag_cross_entropy(&r, x, t, NULL, M, -100, 1.5));
    CHECK_STR(ag_last_error(),
              "ag_cross_entropy: label_smoothing must be between 0.0 and 1.0. Got: 1.5");
    FAILS(AG_EINVAL, ag_cross_entropy(&r, x, t, NULL, 3, -100, 0));
    FAILS(AG_EINVAL, ag_cross_entropy(&r, x, NULL, NULL, M, -100, 0));
    /* A weight that requires grad is refused under grad mode, as PyTorch does. */
    ag_tensor *wg = vec(AG_FLOAT32, 5, ce_w);
    OK(ag_tensor_set_requires_grad(wg, 1));
    FAILS(AG_EINVAL, ag_nll_loss(&r, x, t, wg, M, -100));
    int prev = ag_set_grad_enabled(0);
    OK(ag_nll_loss(&r, x, t, wg, M, -100));
    ag_tensor_release(r);
    r = NULL;
    ag_set_grad_enabled(prev);
    ag_tensor_release(wg);
    /* Target shapes */
    int64_t s31[2] = {3, 1}, s23[2] = {2, 3}, s1[1] = {1};
    ag_tensor *t2 = tensor_f64(ce_tg, s31, 2, AG_INT64);
    FAILS(AG_ESHAPE, ag_nll_loss(&r, x, t2, NULL, M, -100));
    CHECK_STR(ag_last_error(),
              "ag_nll_loss: 0D or 1D target tensor expected, multi-target not supported");
    ag_tensor_release(t2);
    ag_tensor *x1 = vec(AG_FLOAT32, 5, ce_in), *t1 = tensor_f64(ce_tg, s1, 1, AG_INT64);
    FAILS(AG_ESHAPE, ag_cross_entropy(&r, x1, t1, NULL, M, -100, 0));
    CHECK_STR(ag_last_error(),
              "ag_cross_entropy: size mismatch (got input: [5], target: [1])");
    ag_tensor_release(t1);
    ag_tensor_release(x1);
    int64_t s234[3] = {2, 3, 4};
    double z[24] = {0};
    ag_tensor *x3 = tensor_f64(z, s234, 3, AG_FLOAT32), *t23 = tensor_f64(z, s23, 2, AG_INT64);
    FAILS(AG_ESHAPE, ag_cross_entropy(&r, x3, t23, NULL, M, -100, 0));
    CHECK_STR(ag_last_error(), "ag_cross_entropy: Expected target size [2, 4], got [2, 3]");
    ag_tensor_release(x3);
    ag_tensor_release(t23);
    double zi[15] = {0};
    ag_tensor *xi = mat(AG_INT64, 3, 5, zi);
    FAILS(AG_EDTYPE, ag_nll_loss(&r, xi, t, NULL, M, -100));
    ag_tensor_release(xi);
    CHECK(r == NULL);
    ag_tensor_release(w4);
    ag_tensor_release(w64);
    ag_tensor_release(t);
    ag_tensor_release(x);
}

static void cross_entropy_grads(void)
{
    int64_t s35[2] = {3, 5}, s3[1] = {3}, s5[1] = {5}, s234[3] = {2, 3, 4}, s24[2] = {2, 4};
    static const double tg[3] = {1, 0, 4}, ktg[8] = {0, 1, 2, 1, 2, 2, 0, 1};
    gc_input in[3] = {{s35, 2, NULL, -2, 2, 1, 0},
                      {s3, 1, tg, 0, 0, 0, AG_INT64},
                      {s5, 1, ce_w, 0, 0, 0, 0}};
    gc_input kin[2] = {{s234, 3, NULL, -2, 2, 1, 0}, {s24, 2, ktg, 0, 0, 0, AG_INT64}};
    gc_input one[2] = {{s5, 1, NULL, -2, 2, 1, 0}, {NULL, 0, tg, 0, 0, 0, AG_INT64}};
    const int reds[3] = {AG_REDUCTION_NONE, AG_REDUCTION_MEAN, AG_REDUCTION_SUM};
    for (int k = 0; k < 3; k++) {
        for (int nll = 0; nll < 2; nll++) {
            const char *name = nll ? "nll_loss" : "cross_entropy";
            ce_cfg plain = {reds[k], -100, 0, 0, nll}, wi = {reds[k], 0, 0, 1, nll};
            CHECK(gradcheck(name, call_ce, in, 2, &plain));
            CHECK(gradcheck(name, call_ce, in, 3, &wi));
            CHECK(gradcheck(name, call_ce, kin, 2, &plain));
            CHECK(gradcheck(name, call_ce, one, 2, &plain));
            CHECK(gradgradcheck(name, call_ce, in, 3, &wi));
            CHECK(gradgradcheck(name, call_ce, kin, 2, &plain));
            CHECK(gradgradcheck(name, call_ce, one, 2, &plain));
        }
        ce_cfg ls = {reds[k], -100, 0.2, 0, 0}, lsw = {reds[k], 4, 0.3, 1, 0};
        CHECK(gradcheck("cross_entropy smoothing", call_ce, in, 2, &ls));
        CHECK(gradcheck("cross_entropy smoothing weighted", call_ce, in, 3, &lsw));
        CHECK(gradcheck("cross_entropy smoothing [N, C, d]", call_ce, kin, 2, &ls));
        CHECK(gradgradcheck("cross_entropy smoothing", call_ce, in, 3, &lsw));
    }
}

/* Whether t holds want[0..n) exactly, NaN matching NaN. */
static int same_values(const ag_tensor *t, const double *want, int64_t n)
{
    int64_t numel = 0;
    double *v = values(t, &numel);
    int ok = numel == n;
    for (int64_t i = 0; ok && i < n; i++)
        ok = isnan(want[i]) ? isnan(v[i]) : v[i] == want[i];
    free(v);
    return ok;
}

/* The gradient in the loss scatters the incoming gradient to the targets (nll_loss) and
 * leaves ignored rows 0, whatever that gradient is: NaN or inf never reached the other entries
 * of nll_loss's gradient nor the ignored rows (it gave NaN there, from one-hot * g).
 * torch.autograd.grad(F.nll_loss/F.cross_entropy(x, t, w, reduction=r, ignore_index=1,
 * label_smoothing=ls), x, g, create_graph=cg), x = lx, t = [0, 2, 1], w = None or lw. */
static const double lx[9] = {0.5, -1.0, 2.0, 1.5, 0.25, -0.5, -0.75, 1.0, 0.0};
static const double ltg[3] = {0, 2, 1}, lw[3] = {0.5, 2.0, 1.5};

static void loss_nonfinite_grads(void)
{
    const double N = NAN, I = INFINITY;
    const int reds[3] = {AG_REDUCTION_SUM, AG_REDUCTION_MEAN, AG_REDUCTION_NONE};
    /* g: nan (sum), inf (mean), [nan, -inf, inf] (none) */
    const double gnone[3] = {N, -I, I};
    const double want[3][3][9] = {
        /* nll_loss */
        {{N, 0, 0, 0, 0, N, 0, 0, 0}, {-I, 0, 0, 0, 0, -I, 0, 0, 0}, {N, 0, 0, 0, 0, I, 0, 0, 0}},
        /* cross_entropy */
        {{N, N, N, N, N, N, 0, 0, 0}, {N, I, I, I, I, N, 0, 0, 0}, {N, N, N, -I, -I, N, 0, 0, 0}},
        /* cross_entropy, label_smoothing=0.2 */
        {{N, N, N, N, N, N, 0, 0, 0}, {N, N, N, N, N, N, 0, 0, 0}, {N, N, N, N, N, N, 0, 0, 0}}};
    for (int dt = 0; dt < 2; dt++) {
        ag_dtype d = dt ? AG_FLOAT64 : AG_FLOAT32;
        for (int f = 0; f < 3; f++)
            for (int k = 0; k < 3; k++)
                for (int weighted = 0; weighted < 2; weighted++)
                    for (int how = 0; how < 2; how++) { /* backward; grad with create_graph */
                        ag_tensor *x = mat(d, 3, 3, lx), *t = vec(AG_INT64, 3, ltg);
                        ag_tensor *w = weighted ? vec(d, 3, lw) : NULL, *l = NULL, *g = NULL;
                        OK(ag_tensor_set_requires_grad(x, 1));
                        if (k == 2) g = vec(d, 3, gnone);
                        else OK(ag_tensor_scalar(&g, k ? I : N, d));
                        ce_cfg c = {reds[k], 1, f == 2 ? 0.2 : 0, weighted, f == 0};
                        ag_tensor *in[3] = {x, t, w};
                        OK(call_ce(&l, in, &c));
                        ag_tensor *gx = NULL;
                        if (how == 0) {
                            OK(ag_backward(l, g, 0));
                            gx = grad_of(x);
                        } else {
                            OK(ag_grad(&gx, &l, &g, 1, &x, 1, AG_CREATE_GRAPH));
                        }
                        if (!gx || !same_values(gx, want[f][k], 9)) {
                            fprintf(stderr, "nonfinite grad: loss %d reduction %d weighted %d "
                                    "%s %s\n", f, reds[k], weighted,
                                    how ? "create_graph" : "backward", dt ? "f64" : "f32");
                            harness_failures++;
                        }
                        ag_tensor_release(gx);
                        ag_tensor_release(l);
                        ag_tensor_release(g);
                        ag_tensor_release(w);
                        ag_tensor_release(t);
                        ag_tensor_release(x);
                    }
    }
}

/* cross_entropy saves what PyTorch's log_softmax + nll_loss save: its own log_softmax, the
 * target and the weight, never the logits. So the logits may change in place before backward
 * (it was AG_EVERSION), and the gradients are those of the values the loss saw; the target
 * and the weight may not. */
static int ce_run(ag_tensor **gx, const ce_cfg *c, int modify, unsigned flags)
{
    ag_tensor *x = mat(AG_FLOAT64, 3, 3, lx), *t = vec(AG_INT64, 3, ltg);
    ag_tensor *w = vec(AG_FLOAT64, 3, lw), *y = NULL, *l = NULL, *s = NULL;
    OK(ag_tensor_set_requires_grad(x, 1));
    OK(ag_mul_scalar(&y, x, 1.0));
    ag_tensor *in[3] = {y, t, w};
    OK(call_ce(&l, in, (void *)c));
    if (modify == 1) OK(ag_mul_scalar_(y, 2.0));
    if (modify == 2) OK(ag_mul_scalar_(t, 1.0));
    if (modify == 3) OK(ag_mul_scalar_(w, 1.0));
    OK(ag_sum(&s, l));
    int rc = flags ? ag_grad(gx, &s, NULL, 1, &x, 1, flags) : ag_backward(s, NULL, 0);
    if (!flags && rc == AG_OK) OK(ag_tensor_grad(gx, x));
    ag_tensor_release(s);
    ag_tensor_release(l);
    ag_tensor_release(y);
    ag_tensor_release(w);
    ag_tensor_release(t);
    ag_tensor_release(x);
    return rc;
}

static void cross_entropy_inplace(void)
{
    const int reds[3] = {AG_REDUCTION_NONE, AG_REDUCTION_MEAN, AG_REDUCTION_SUM};
    for (int ls = 0; ls < 2; ls++)
        for (int k = 0; k < 3; k++)
            for (int weighted = 0; weighted < 2; weighted++)
                for (int ig = 0; ig < 2; ig++)
                    for (int cg = 0; cg < 2; cg++) {
                        ce_cfg c = {reds[k], ig ? 1 : -100, ls ? 0.2 : 0, weighted, 0};
                        unsigned fl = cg ? AG_CREATE_GRAPH : 0;
                        ag_tensor *ref = NULL, *got = NULL, *none = NULL;
                        OK(ce_run(&ref, &c, 0, fl));
                        OK(ce_run(&got, &c, 1, fl));
                        double *want = ref ? values(ref, NULL) : NULL;
                        if (got && want) check_values("ce logits modified", got, want, 9, 0);
                        else harness_failures++;
                        free(want);
                        FAILS(AG_EVERSION, ce_run(&none, &c, 2, fl));
                        if (weighted) FAILS(AG_EVERSION, ce_run(&none, &c, 3, fl));
                        CHECK(none == NULL);
                        ag_tensor_release(ref);
                        ag_tensor_release(got);
                    }
    /* Higher orders through the saved log_softmax:
     * x = lx.requires_grad_(); y = x * 1
     * l = F.cross_entropy(y, t, lw, ignore_index=1); y.mul_(2)
     * g, = grad(l, x, create_graph=True); g2, = grad((g * lc).sum(), x, create_graph=True)
     * g3, = grad((g2 * g2).sum(), x) */
    static const double lc[9] = {1.0, -0.5, 0.25, 0.75, 2.0, -1.0, 0.5, -1.5, 1.0};
    static const double wg[9] = {-0.20617740196499082, 0.009778143317671862,
                                 0.19639925864731897,  0.5274854820163304,
                                 0.1511271208717882,   -0.6786126028881188, 0, 0, 0};
    static const double wg2[9] = {0.028391199163060047, -0.00833228216044824,
                                  -0.020058917002611802, -0.0449987006552713,
                                  0.17601655749952425,   -0.13101785684425285, 0, 0, 0};
    static const double wg3[9] = {0.0017948375316305454, -0.0001462062240374854,
                                  -0.0016486313075930606, -0.06730269527837426,
                                  0.04478936635938404,    0.022513328918990244, 0, 0, 0};
    ag_tensor *x = mat(AG_FLOAT64, 3, 3, lx), *t = vec(AG_INT64, 3, ltg);
    ag_tensor *w = vec(AG_FLOAT64, 3, lw), *cm = mat(AG_FLOAT64, 3, 3, lc);
    ag_tensor *y = NULL, *l = NULL, *g = NULL, *p = NULL, *s = NULL, *g2 = NULL, *q = NULL,
              *s2 = NULL, *g3 = NULL;
    OK(ag_tensor_set_requires_grad(x, 1));
    OK(ag_mul_scalar(&y, x, 1.0));
    OK(ag_cross_entropy(&l, y, t, w, AG_REDUCTION_MEAN, 1, 0));
    OK(ag_mul_scalar_(y, 2.0));
    OK(ag_grad(&g, &l, NULL, 1, &x, 1, AG_CREATE_GRAPH));
    if (g) {
        check_values("ce first order", g, wg, 9, 1e-12);
        OK(ag_mul(&p, g, cm));
        OK(ag_sum(&s, p));
        OK(ag_grad(&g2, &s, NULL, 1, &x, 1, AG_CREATE_GRAPH));
    }
    if (g2) {
        check_values("ce second order", g2, wg2, 9, 1e-12);
        OK(ag_mul(&q, g2, g2));
        OK(ag_sum(&s2, q));
        OK(ag_grad(&g3, &s2, NULL, 1, &x, 1, 0));
    }
    if (g3) check_values("ce third order", g3, wg3, 9, 1e-12);
    ag_tensor *all[] = {x, t, w, cm, y, l, g, p, s, g2, q, s2, g3};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) ag_tensor_release(all[i]);
}

/* ---- mse_loss ---- */
static int call_mse(ag_tensor **out, ag_tensor *const *in, void *ctx)
{
    return ag_mse_loss(out, in[0], in[1], *(const int *)ctx);
}

static void mse(void)
{
    static const double xi[6] = {0.5, -1.0, 2.0, 1.5, 0.0, -0.5}, ti[3] = {1.0, 2.0, -1.0};
    /* F.mse_loss(xi, ti, reduction=...) with xi [2, 3], ti [3] */
    static const double none[6] = {0.25, 9.0, 9.0, 0.25, 4.0, 0.25}, mean = 3.7916666667,
                        sum = 22.75;
    ag_tensor *x = mat(AG_FLOAT64, 2, 3, xi), *t = vec(AG_FLOAT32, 3, ti), *r;
    OK(ag_tensor_set_requires_grad(x, 1));
    OK(ag_mse_loss(&r, x, t, AG_REDUCTION_NONE));
    check_values("mse none", r, none, 6, 1e-9);
    CHECK_STR(grad_fn_name(r), "MseLossBackward0");
    ag_dtype dt;
    OK(ag_tensor_dtype(&dt, r));
    CHECK(dt == AG_FLOAT64);
    ag_tensor_release(r);
    OK(ag_mse_loss(&r, x, t, AG_REDUCTION_MEAN));
    check_values("mse mean", r, &mean, 1, 1e-9);
    ag_tensor_release(r);
    OK(ag_mse_loss(&r, t, x, AG_REDUCTION_SUM));
    check_values("mse sum", r, &sum, 1, 1e-9);
    ag_tensor_release(r);
    /* F.mse_loss(zeros(0), zeros(0)) is nan */
    int64_t s0[1] = {0}, s4[1] = {4};
    ag_tensor *e0, *t4;
    double v;
    OK(ag_zeros(&e0, AG_FLOAT32, s0, 1));
    OK(ag_mse_loss(&r, e0, e0, AG_REDUCTION_MEAN));
    OK(ag_tensor_item(&v, r));
    CHECK(isnan(v));
    ag_tensor_release(r);
    ag_tensor_release(e0);
    OK(ag_zeros(&t4, AG_FLOAT32, s4, 1));
    FAILS(AG_ESHAPE, ag_mse_loss(&r, x, t4, AG_REDUCTION_MEAN));
    ag_tensor_release(t4);
    ag_tensor *xi64 = vec(AG_INT64, 3, ti);
    FAILS(AG_EDTYPE, ag_mse_loss(&r, xi64, xi64, AG_REDUCTION_MEAN));
    CHECK_STR(ag_last_error(), "ag_mse_loss: \"mse_cpu\" not implemented for 'Long'");
    ag_tensor_release(xi64);
    ag_tensor_release(x);
    ag_tensor_release(t);

    int64_t s23[2] = {2, 3}, s3[1] = {3};
    const int reds[3] = {AG_REDUCTION_NONE, AG_REDUCTION_MEAN, AG_REDUCTION_SUM};
    for (int k = 0; k < 3; k++) {
        gc_input same[2] = {{s23, 2, NULL, 0, 0, 1, 0}, {s23, 2, NULL, 0, 0, 1, 0}};
        gc_input bc[2] = {{s23, 2, NULL, 0, 0, 1, 0}, {s3, 1, NULL, 0, 0, 1, 0}};
        CHECK(gradcheck("mse_loss", call_mse, same, 2, (void *)&reds[k]));
        CHECK(gradcheck("mse_loss broadcast", call_mse, bc, 2, (void *)&reds[k]));
        CHECK(gradgradcheck("mse_loss", call_mse, same, 2, (void *)&reds[k]));
        CHECK(gradgradcheck("mse_loss broadcast", call_mse, bc, 2, (void *)&reds[k]));
    }
}

/* ---- binary_cross_entropy_with_logits ---- */
typedef struct bce_cfg {
    int reduction;
    int weighted, pos;
} bce_cfg;

static int call_bce(ag_tensor **out, ag_tensor *const *in, void *ctx)
{
    const bce_cfg *c = ctx;
    return ag_binary_cross_entropy_with_logits(out, in[0], in[1], c->weighted ? in[2] : NULL,
                                               c->pos ? in[3] : NULL, c->reduction);
}

static void bce(void)
{
    static const double bx[6] = {0.5, -1.0, 2.0, 30.0, -40.0, 0.0};
    static const double bt[6] = {1.0, 0.0, 0.3, 0.0, 1.0, 0.5};
    static const double bw[3] = {1.0, 2.0, 0.5}, bpw[2] = {3.0, 0.5};
    /* F.binary_cross_entropy_with_logits(bx, bt, reduction=...) */
    static const double plain[3][6] = {
        {0.4740769842, 0.3132616875, 1.526928011, 30.0, 40.0, 0.6931471806},
        {12.1679023106}, {73.0074138633}};
    /* ... with weight=bw ([3]) and pos_weight=bpw ([2, 1]) */
    static const double full[3][6] = {
        {1.4222309525, 0.626523375, 0.8015424088, 30.0, 40.0, 0.2599301927},
        {12.1850378215}, {73.1102269291}};
    /* grads of the mean with weight and pos_weight, w.r.t. input and target */
    static const double gx[6] = {-0.1887703344, 0.0896471405, 0.0424396104,
                                 0.1666666667, -0.1666666667, 0.0104166667};
    static const double gt[6] = {0.0746923281, 1.208841125, -0.1455119982,
                                 -5.0, 6.6666666667, -0.0288811325};
    const int reds[3] = {AG_REDUCTION_NONE, AG_REDUCTION_MEAN, AG_REDUCTION_SUM};
    int64_t s21[2] = {2, 1};
    for (int dt = 0; dt < 2; dt++) {
        ag_dtype d = dt ? AG_FLOAT64 : AG_FLOAT32;
        double tol = dt ? 1e-9 : 1e-6;
        ag_tensor *x = mat(d, 2, 3, bx), *t = mat(d, 2, 3, bt), *w = vec(d, 3, bw);
        ag_tensor *pw = tensor_f64(bpw, s21, 2, d), *r;
        OK(ag_tensor_set_requires_grad(x, 1));
        OK(ag_tensor_set_requires_grad(t, 1));
        for (int k = 0; k < 3; k++) {
            size_t n = k ? 1 : 6;
            OK(ag_binary_cross_entropy_with_logits(&r, x, t, NULL, NULL, reds[k]));
            check_values("bce", r, plain[k], n, tol);
            CHECK_STR(grad_fn_name(r), "BinaryCrossEntropyWithLogitsBackward0");
            ag_tensor_release(r);
            OK(ag_binary_cross_entropy_with_logits(&r, x, t, w, pw, reds[k]));
            check_values("bce weighted", r, full[k], n, tol);
            ag_tensor_release(r);
        }
        OK(ag_binary_cross_entropy_with_logits(&r, x, t, w, pw, AG_REDUCTION_MEAN));
        OK(ag_backward(r, NULL, 0));
        ag_tensor *g = grad_of(x);
        check_values("bce grad input", g, gx, 6, tol);
        ag_tensor_release(g);
        g = grad_of(t);
        check_values("bce grad target", g, gt, 6, tol);
        ag_tensor_release(g);
        ag_tensor_release(r);
        /* errors */
        ag_tensor *t3 = vec(d, 3, bt), *ti = mat(AG_INT64, 2, 3, (double[6]){0});
        FAILS(AG_ESHAPE, ag_binary_cross_entropy_with_logits(&r, x, t3, NULL, NULL, 1));
        CHECK_STR(ag_last_error(), "ag_binary_cross_entropy_with_logits: Target size ([3]) must "
                                   "be the same as input size ([2, 3])");
        FAILS(AG_EDTYPE, ag_binary_cross_entropy_with_logits(&r, x, ti, NULL, NULL, 1));
        int64_t s213[3] = {2, 1, 3};
        ag_tensor *wbig = tensor_f64(bx, s213, 3, d);
        FAILS(AG_ESHAPE, ag_binary_cross_entropy_with_logits(&r, x, t, NULL, wbig, 1));
        CHECK_STR(ag_last_error(), "ag_binary_cross_entropy_with_logits: output with shape "
                                   "[2, 3] doesn't match the broadcast shape [2, 2, 3]");
        ag_tensor_release(wbig);
        ag_tensor *w2 = vec(d, 2, bw);
        FAILS(AG_ESHAPE, ag_binary_cross_entropy_with_logits(&r, x, t, w2, NULL, 1));
        OK(ag_tensor_set_requires_grad(w, 1));
        FAILS(AG_EINVAL, ag_binary_cross_entropy_with_logits(&r, x, t, w, NULL, 1));
        ag_tensor_release(w2);
        ag_tensor_release(t3);
        ag_tensor_release(ti);
        ag_tensor_release(x);
        ag_tensor_release(t);
        ag_tensor_release(w);
        ag_tensor_release(pw);
    }
    int64_t s23[2] = {2, 3}, s3[1] = {3};
    for (int k = 0; k < 3; k++) {
        gc_input in[4] = {{s23, 2, NULL, -3, 3, 1, 0},
                          {s23, 2, NULL, 0, 1, 1, 0},
                          {s3, 1, bw, 0, 0, 0, 0},
                          {s21, 2, bpw, 0, 0, 0, 0}};
        bce_cfg plain = {reds[k], 0, 0}, full_cfg = {reds[k], 1, 1};
        CHECK(gradcheck("bce", call_bce, in, 2, &plain));
        CHECK(gradcheck("bce weighted", call_bce, in, 4, &full_cfg));
        CHECK(gradgradcheck("bce", call_bce, in, 2, &plain));
        CHECK(gradgradcheck("bce weighted", call_bce, in, 4, &full_cfg));
    }
}

/* ---- dropout ---- */
static double *dropout_values(ag_generator *g, const ag_tensor *x, double p)
{
    ag_tensor *r;
    OK(ag_dropout(&r, g, x, p, 1));
    double *v = values(r, NULL);
    ag_tensor_release(r);
    return v;
}

static void dropout(void)
{
    enum { N = 100000 };
    int64_t shape[1] = {N};
    ag_tensor *x, *r;
    OK(ag_ones(&x, AG_FLOAT32, shape, 1));
    ag_generator *g;
    OK(ag_generator_new(&g, 1234));
    double *a = dropout_values(g, x, 0.3);
    double *b = dropout_values(g, x, 0.3); /* the stream moved on: a different mask */
    OK(ag_generator_manual_seed(g, 1234));
    int prev = ag_get_num_threads();
    OK(ag_set_num_threads(1));
    double *c = dropout_values(g, x, 0.3); /* same seed, one thread: the same mask as a */
    OK(ag_set_num_threads(prev > 1 ? prev : 4));
    int same_ac = 1, same_ab = 1, kept = 0, scaled = 1;
    for (int i = 0; i < N; i++) {
        same_ac &= a[i] == c[i];
        same_ab &= a[i] == b[i];
        kept += a[i] != 0;
        scaled &= a[i] == 0 || a[i] == (double)(1.0f / 0.7f);
    }
    CHECK(same_ac);
    CHECK(!same_ab);
    CHECK(scaled);
    CHECK(fabs(kept / (double)N - 0.7) < 0.01);
    free(a);
    free(b);
    free(c);
    ag_set_num_threads(prev);

    /* grad_fn and gradient: F.dropout(x, 0.5, True).grad_fn is MulBackward0; d/dx = mask */
    ag_tensor *xs, *gx;
    static const double xd[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    xs = vec(AG_FLOAT64, 8, xd);
    OK(ag_tensor_set_requires_grad(xs, 1));
    OK(ag_dropout(&r, NULL, xs, 0.5, 1));
    CHECK_STR(grad_fn_name(r), "MulBackward0");
    ag_tensor *s;
    OK(ag_sum(&s, r));
    OK(ag_backward(s, NULL, 0));
    gx = grad_of(xs);
    double *rv = values(r, NULL), *gv = values(gx, NULL);
    for (int i = 0; i < 8; i++) CHECK(gv[i] == rv[i] / xd[i] && (gv[i] == 0 || gv[i] == 2));
    free(rv);
    free(gv);
    ag_tensor_release(gx);
    ag_tensor_release(s);
    ag_tensor_release(r);
    /* p == 0 or not training: the input itself; p == 1: zeros (MulBackward0) */
    OK(ag_dropout(&r, NULL, xs, 0.0, 1));
    CHECK(r == xs);
    ag_tensor_release(r);
    OK(ag_dropout(&r, NULL, xs, 0.5, 0));
    CHECK(r == xs);
    ag_tensor_release(r);
    OK(ag_dropout(&r, NULL, xs, 1.0, 1));
    CHECK_STR(grad_fn_name(r), "MulBackward0");
    double *zv = values(r, NULL);
    for (int i = 0; i < 8; i++) CHECK(zv[i] == 0);
    free(zv);
    ag_tensor_release(r);
    FAILS(AG_EINVAL, ag_dropout(&r, NULL, xs, 1.5, 1));
    CHECK_STR(ag_last_error(),
              "ag_dropout: dropout probability has to be between 0 and 1, but got 1.5");
    FAILS(AG_EINVAL, ag_dropout(&r, NULL, xs, -0.5, 0));
    FAILS(AG_EINVAL, ag_dropout(&r, NULL, xs, NAN, 1));
    ag_tensor *xi = vec(AG_INT64, 8, xd);
    FAILS(AG_EDTYPE, ag_dropout(&r, NULL, xi, 0.5, 1));
    ag_tensor_release(xi);
    /* The default generator follows ag_manual_seed. */
    OK(ag_manual_seed(7));
    double *d1 = dropout_values(NULL, x, 0.5);
    OK(ag_manual_seed(7));
    double *d2 = dropout_values(NULL, x, 0.5);
    CHECK(memcmp(d1, d2, N * sizeof(double)) == 0);
    free(d1);
    free(d2);
    ag_tensor_release(xs);
    ag_tensor_release(x);
    ag_generator_release(g);
}

/* ---- layer_norm ---- */
typedef struct ln_cfg {
    int64_t nshape[2];
    size_t nd;
    int w, b;
    double eps;
} ln_cfg;

static int call_ln(ag_tensor **out, ag_tensor *const *in, void *ctx)
{
    const ln_cfg *c = ctx;
    return ag_layer_norm(out, in[0], c->nshape, c->nd, c->w ? in[1] : NULL,
                         c->b ? in[c->w ? 2 : 1] : NULL, c->eps);
}

static void layer_norm(void)
{
    static const double lx[12] = {1.0, 2.0, 4.0, -1.0, 0.5, 0.5, 0.0, 3.0, 2.0, -2.0, 1.0, 1.0};
    static const double lw[4] = {1.0, 0.5, -1.0, 2.0}, lb[4] = {0.0, 0.1, 0.2, 0.3};
    /* F.layer_norm(lx, (4,), lw, lb) */
    static const double y1[12] = {-0.2773496714, 0.2386748357, -1.1867483571, -2.4734967142,
                                  -0.4263998822, -0.1131999411, 1.0527997643, 3.7111990574,
                                  0.9999977778, -0.7333314815, -0.1333325926, 0.9666651852};
    /* F.layer_norm(lx, (3, 4), eps=1e-3) */
    static const double y2[12] = {0.0, 0.6376631231, 1.9129893694, -1.2753262463,
                                  -0.3188315616, -0.3188315616, -0.6376631231, 1.2753262463,
                                  0.6376631231, -1.9129893694, 0.0, 0.0};
    /* grads of (F.layer_norm(x, (4,), w, b) * arange(12).reshape(3, 4)).sum() */
    static const double gx[12] = {-1.0453936189, 0.0746697689, 0.3733488445, 0.5973750055,
                                  2.7037455514, 1.4245459049, -3.4403064522, -0.6879850042,
                                  0.5000022222, 0.1666607408, -10.9999744445, 10.3333114816};
    static const double gw[4] = {6.2943826936, -16.8546164062, 0.9900240541, 11.445610148};
    static const double gb[4] = {12.0, 15.0, 18.0, 21.0};
    int64_t n4[1] = {4}, n34[2] = {3, 4};
    for (int dt = 0; dt < 2; dt++) {
        ag_dtype d = dt ? AG_FLOAT64 : AG_FLOAT32;
        double tol = dt ? 1e-9 : 2e-6;
        ag_tensor *x = mat(d, 3, 4, lx), *w = vec(d, 4, lw), *b = vec(d, 4, lb), *r;
        OK(ag_tensor_set_requires_grad(x, 1));
        OK(ag_tensor_set_requires_grad(w, 1));
        OK(ag_tensor_set_requires_grad(b, 1));
        OK(ag_layer_norm(&r, x, n4, 1, w, b, 1e-5));
        check_values("layer_norm", r, y1, 12, tol);
        CHECK_STR(grad_fn_name(r), "NativeLayerNormBackward0");
        double wd[12];
        for (int i = 0; i < 12; i++) wd[i] = i;
        ag_tensor *wt = mat(d, 3, 4, wd), *p, *s;
        OK(ag_mul(&p, r, wt));
        OK(ag_sum(&s, p));
        OK(ag_backward(s, NULL, 0));
        ag_tensor *g = grad_of(x);
        check_values("layer_norm grad x", g, gx, 12, dt ? 1e-8 : 1e-5);
        ag_tensor_release(g);
        g = grad_of(w);
        check_values("layer_norm grad w", g, gw, 4, dt ? 1e-8 : 1e-5);
        ag_tensor_release(g);
        g = grad_of(b);
        check_values("layer_norm grad b", g, gb, 4, tol);
        ag_tensor_release(g);
        ag_tensor_release(s);
        ag_tensor_release(p);
        ag_tensor_release(wt);
        ag_tensor_release(r);
        OK(ag_layer_norm(&r, x, n34, 2, NULL, NULL, 1e-3));
        check_values("layer_norm 2 dims", r, y2, 12, tol);
        ag_tensor_release(r);
        /* errors, with PyTorch's wording */
        static const int64_t n3[1] = {3};
        ag_tensor *w3 = vec(d, 3, lw), *xi = mat(AG_INT64, 3, 4, (double[12]){0});
        FAILS(AG_ESHAPE, ag_layer_norm(&r, x, n3, 1, NULL, NULL, 1e-5));
        CHECK_STR(ag_last_error(), "ag_layer_norm: Given normalized_shape=[3], expected input "
                                   "with shape [*, 3], but got input of size[3, 4]");
        FAILS(AG_ESHAPE, ag_layer_norm(&r, x, n4, 1, w3, NULL, 1e-5));
        CHECK_STR(ag_last_error(), "ag_layer_norm: Expected weight to be of same shape as "
                                   "normalized_shape, but got weight of shape [3] and "
                                   "normalized_shape = [4]");
        FAILS(AG_ESHAPE, ag_layer_norm(&r, x, n4, 1, NULL, w3, 1e-5));
        FAILS(AG_EDTYPE, ag_layer_norm(&r, xi, n4, 1, NULL, NULL, 1e-5));
        ag_tensor *wo = vec(dt ? AG_FLOAT32 : AG_FLOAT64, 4, lw);
        FAILS(AG_EDTYPE, ag_layer_norm(&r, x, n4, 1, wo, NULL, 1e-5));
        ag_tensor_release(wo);
        ag_tensor_release(w3);
        ag_tensor_release(xi);
        ag_tensor_release(x);
        ag_tensor_release(w);
        ag_tensor_release(b);
    }
    int64_t s34[2] = {3, 4}, s234[3] = {2, 3, 4}, s4[1] = {4};
    gc_input in[3] = {{s34, 2, NULL, -2, 2, 1, 0}, {s4, 1, NULL, -2, 2, 1, 0},
                      {s4, 1, NULL, -2, 2, 1, 0}};
    gc_input in3[3] = {{s234, 3, NULL, -2, 2, 1, 0}, {s34, 2, NULL, -2, 2, 1, 0},
                       {s34, 2, NULL, -2, 2, 1, 0}};
    ln_cfg c_wb = {{4}, 1, 1, 1, 1e-5}, c_none = {{4}, 1, 0, 0, 1e-5};
    ln_cfg c_b = {{4}, 1, 0, 1, 1e-5}, c_2d = {{3, 4}, 2, 1, 1, 1e-3};
    CHECK(gradcheck("layer_norm", call_ln, in, 3, &c_wb));
    CHECK(gradcheck("layer_norm no affine", call_ln, in, 1, &c_none));
    CHECK(gradcheck("layer_norm bias only", call_ln, in, 2, &c_b));
    CHECK(gradcheck("layer_norm 2 dims", call_ln, in3, 3, &c_2d));
    CHECK(gradgradcheck("layer_norm", call_ln, in, 3, &c_wb));
    CHECK(gradgradcheck("layer_norm 2 dims", call_ln, in3, 3, &c_2d));
    /* Only the weight requires grad. */
    gc_input wonly[3] = {{s34, 2, NULL, -2, 2, 0, 0}, {s4, 1, NULL, -2, 2, 1, 0},
                         {s4, 1, NULL, -2, 2, 0, 0}};
    CHECK(gradcheck("layer_norm weight only", call_ln, wonly, 3, &c_wb));
}

/* ---- embedding ---- */
static int call_emb(ag_tensor **out, ag_tensor *const *in, void *ctx)
{
    (void)ctx;
    return ag_embedding(out, in[0], in[1]);
}

static void embedding(void)
{
    static const double wd[12] = {0, 1, 2, 10, 11, 12, 20, 21, 22, 30, 31, 32};
    static const double id[4] = {1, 3, 1, 0};
    int64_t s22[2] = {2, 2};
    ag_tensor *w = mat(AG_FLOAT32, 4, 3, wd), *idx = tensor_f64(id, s22, 2, AG_INT64), *r;
    OK(ag_tensor_set_requires_grad(w, 1));
    OK(ag_embedding(&r, w, idx));
    static const double want[12] = {10, 11, 12, 30, 31, 32, 10, 11, 12, 0, 1, 2};
    check_values("embedding", r, want, 12, 0);
    CHECK_STR(grad_fn_name(r), "EmbeddingBackward0");
    int64_t shape[3];
    OK(ag_tensor_shape(shape, 3, r));
    CHECK(shape[0] == 2 && shape[1] == 2 && shape[2] == 3);
    ag_tensor *s;
    OK(ag_sum(&s, r));
    OK(ag_backward(s, NULL, 0));
    ag_tensor *g = grad_of(w);
    static const double gwant[12] = {1, 1, 1, 2, 2, 2, 0, 0, 0, 1, 1, 1};
    check_values("embedding grad", g, gwant, 12, 0);
    ag_tensor_release(g);
    ag_tensor_release(s);
    ag_tensor_release(r);

    /* Under create_graph the weight's gradient is differentiable in the incoming gradient:
     * torch names it EmbeddingDenseBackwardBackward0. */
    ag_tensor *v, *p, *gg;
    double ones[12] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    int64_t s223[3] = {2, 2, 3};
    v = tensor_f64(ones, s223, 3, AG_FLOAT32);
    OK(ag_tensor_set_requires_grad(v, 1));
    OK(ag_embedding(&r, w, idx));
    OK(ag_mul(&p, r, v));
    OK(ag_sum(&s, p));
    OK(ag_grad(&gg, &s, NULL, 1, &w, 1, AG_CREATE_GRAPH));
    CHECK_STR(grad_fn_name(gg), "EmbeddingDenseBackwardBackward0");
    ag_tensor *gs, *gv;
    OK(ag_sum(&gs, gg));
    OK(ag_grad(&gv, &gs, NULL, 1, &v, 1, 0));
    check_values("embedding double backward", gv, ones, 12, 0);
    ag_tensor_release(gv);
    ag_tensor_release(gs);
    ag_tensor_release(gg);
    ag_tensor_release(s);
    ag_tensor_release(p);
    ag_tensor_release(r);
    ag_tensor_release(v);

    /* A 0-d index gives one row; int64 weights work too. */
    ag_tensor *i0, *wi = mat(AG_INT64, 4, 3, wd);
    OK(ag_tensor_from_f64(&i0, (double[]){2}, AG_INT64, NULL, 0));
    OK(ag_embedding(&r, wi, i0));
    check_values("embedding 0-d index", r, wd + 6, 3, 0);
    ag_tensor_release(r);
    ag_tensor_release(i0);
    ag_tensor_release(wi);

    /* errors */
    static const double bad[2] = {1, 4}, neg[2] = {1, -1};
    ag_tensor *ib = vec(AG_INT64, 2, bad), *in = vec(AG_INT64, 2, neg);
    ag_tensor *ifl = vec(AG_FLOAT32, 2, id);
    ag_tensor *w1 = vec(AG_FLOAT32, 4, wd);
    r = NULL;
    FAILS(AG_ERANGE, ag_embedding(&r, w, ib));
    CHECK(strstr(ag_last_error(), "index out of range in self") != NULL);
    FAILS(AG_ERANGE, ag_embedding(&r, w, in));
    {
        /* 8-d indices: too many dims for the result, AG_ERANGE as everywhere, said once */
        int64_t s8[8] = {1, 1, 1, 1, 1, 1, 1, 1};
        ag_tensor *i8;
        OK(ag_zeros(&i8, AG_INT64, s8, 8));
        FAILS(AG_ERANGE, ag_embedding(&r, w, i8));
        CHECK(strstr(ag_last_error(), "ag_embedding: indices have 8 dims") == ag_last_error());
        ag_tensor_release(i8);
        FAILS(AG_EINVAL, ag_t(&r, NULL));
        CHECK_STR(ag_last_error(), "ag_t: argument 't' is NULL");
    }
    FAILS(AG_EDTYPE, ag_embedding(&r, w, ifl));
    CHECK_STR(ag_last_error(), "ag_embedding: Expected tensor for argument #1 'indices' to have "
                               "one of the following scalar types: Long, Int; but got "
                               "torch.FloatTensor instead (while checking arguments for "
                               "embedding)");
    FAILS(AG_ESHAPE, ag_embedding(&r, w1, idx));
    CHECK_STR(ag_last_error(), "ag_embedding: 'weight' must be 2-D");
    CHECK(r == NULL);
    ag_tensor_release(ib);
    ag_tensor_release(in);
    ag_tensor_release(ifl);
    ag_tensor_release(w1);
    ag_tensor_release(idx);
    ag_tensor_release(w);

    int64_t s43[2] = {4, 3}, s5[1] = {5};
    static const double id5[5] = {3, 0, 3, 3, 2};
    gc_input gin[2] = {{s43, 2, NULL, -1, 1, 1, 0}, {s5, 1, id5, 0, 0, 0, AG_INT64}};
    gc_input gin2[2] = {{s43, 2, NULL, -1, 1, 1, 0}, {s22, 2, id, 0, 0, 0, AG_INT64}};
    CHECK(gradcheck("embedding", call_emb, gin, 2, NULL));
    CHECK(gradcheck("embedding 2-d indices", call_emb, gin2, 2, NULL));
    CHECK(gradgradcheck("embedding", call_emb, gin, 2, NULL));
}

/* ---- the same bits for any thread count (sizes large enough for several chunks) ---- */
static int det_ce(ag_tensor **out, ag_tensor *const *in, void *ctx)
{
    (void)ctx;
    return ag_cross_entropy(out, in[0], in[1], NULL, AG_REDUCTION_MEAN, -100, 0);
}
static int det_softmax0(ag_tensor **out, ag_tensor *const *in, void *ctx)
{
    (void)ctx;
    return ag_softmax(out, in[0], 0);
}
static int det_ln(ag_tensor **out, ag_tensor *const *in, void *ctx)
{
    (void)ctx;
    int64_t ns[1] = {16};
    return ag_layer_norm(out, in[0], ns, 1, in[1], in[1], 1e-5);
}
static int det_emb(ag_tensor **out, ag_tensor *const *in, void *ctx)
{
    (void)ctx;
    return ag_embedding(out, in[0], in[1]);
}

/* Output and gradient (of the sum of out * w, w fixed) w.r.t. in[0], as doubles. */
static double *det_run(gc_fn f, ag_tensor **in, int threads, int64_t *n)
{
    OK(ag_set_num_threads(threads));
    ag_tensor *y, *w, *p, *s, *g;
    OK(f(&y, in, NULL));
    int64_t ny, ng, shape[8];
    size_t nd;
    OK(ag_tensor_numel(&ny, y));
    OK(ag_tensor_ndim(&nd, y));
    OK(ag_tensor_shape(shape, 8, y));
    double *wd = malloc((size_t)ny * sizeof *wd);
    for (int64_t i = 0; i < ny; i++) wd[i] = sin(0.1 * (double)i);
    w = tensor_f64(wd, shape, nd, AG_FLOAT32);
    OK(ag_mul(&p, y, w));
    OK(ag_sum(&s, p));
    OK(ag_grad(&g, &s, NULL, 1, in, 1, 0));
    double *vy = values(y, NULL), *vg = values(g, &ng);
    double *r = malloc((size_t)(ny + ng) * sizeof *r);
    memcpy(r, vy, (size_t)ny * sizeof *r);
    memcpy(r + ny, vg, (size_t)ng * sizeof *r);
    *n = ny + ng;
    free(vy);
    free(vg);
    free(wd);
    ag_tensor *t[5] = {y, w, p, s, g};
    for (int i = 0; i < 5; i++) ag_tensor_release(t[i]);
    return r;
}

static void thread_determinism(void)
{
    int prev = ag_get_num_threads();
    enum { R = 4000 };
    double *xd = malloc(R * 16 * sizeof *xd), td[R];
    for (int i = 0; i < R * 16; i++) xd[i] = 3 * sin(1.7 * i);
    for (int i = 0; i < R; i++) td[i] = (i * 7) % 10;
    int64_t s10[2] = {R, 10}, s16[2] = {R, 16}, s0[2] = {64, 300}, sw[1] = {16}, se[2] = {1000, 40};
    int64_t si[1] = {R};
    ag_tensor *x10 = tensor_f64(xd, s10, 2, AG_FLOAT32), *x0 = tensor_f64(xd, s0, 2, AG_FLOAT32);
    ag_tensor *x16 = tensor_f64(xd, s16, 2, AG_FLOAT32), *xe = tensor_f64(xd, se, 2, AG_FLOAT32);
    ag_tensor *w16 = tensor_f64(xd, sw, 1, AG_FLOAT32), *t1 = tensor_f64(td, si, 1, AG_INT64);
    ag_tensor *t2 = tensor_f64(td, si, 1, AG_INT64);
    struct {
        const char *name;
        gc_fn f;
        ag_tensor *in[2];
    } cases[4] = {{"cross_entropy", det_ce, {x10, t1}},
                  {"softmax dim 0", det_softmax0, {x0, NULL}},
                  {"layer_norm", det_ln, {x16, w16}},
                  {"embedding", det_emb, {xe, t2}}};
    for (int k = 0; k < 4; k++) {
        OK(ag_tensor_set_requires_grad(cases[k].in[0], 1));
        int64_t n1, n3;
        double *a = det_run(cases[k].f, cases[k].in, 1, &n1);
        double *b = det_run(cases[k].f, cases[k].in, 3, &n3);
        if (n1 != n3 || memcmp(a, b, (size_t)n1 * sizeof *a) != 0) {
            fprintf(stderr, "%s: results differ between 1 and 3 threads\n", cases[k].name);
            harness_failures++;
        }
        free(a);
        free(b);
        ag_tensor_release(cases[k].in[0]);
        ag_tensor_release(cases[k].in[1]);
    }
    free(xd);
    ag_set_num_threads(prev);
}

/* Empty tensors go through every op (and its backward) without touching memory. */
static void empty(void)
{
    int64_t s30[2] = {3, 0}, s04[2] = {0, 4}, s0[1] = {0}, n4[1] = {4}, s43[2] = {4, 3};
    ag_tensor *a, *b, *w, *i, *r, *s, *g;
    OK(ag_zeros(&a, AG_FLOAT32, s30, 2));
    OK(ag_zeros(&b, AG_FLOAT64, s04, 2));
    OK(ag_zeros(&w, AG_FLOAT32, s43, 2));
    OK(ag_zeros(&i, AG_INT64, s0, 1));
    OK(ag_tensor_set_requires_grad(a, 1));
    OK(ag_tensor_set_requires_grad(b, 1));
    OK(ag_tensor_set_requires_grad(w, 1));
    for (int d = 0; d < 2; d++) {
        OK(ag_log_softmax(&r, a, d));
        OK(ag_sum(&s, r));
        OK(ag_grad(&g, &s, NULL, 1, &a, 1, 0));
        ag_tensor_release(g);
        ag_tensor_release(s);
        ag_tensor_release(r);
    }
    OK(ag_layer_norm(&r, b, n4, 1, NULL, NULL, 1e-5));
    OK(ag_sum(&s, r));
    OK(ag_grad(&g, &s, NULL, 1, &b, 1, 0));
    ag_tensor_release(g);
    ag_tensor_release(s);
    ag_tensor_release(r);
    OK(ag_embedding(&r, w, i));
    OK(ag_sum(&s, r));
    OK(ag_grad(&g, &s, NULL, 1, &w, 1, 0));
    static const double zeros[12] = {0};
    check_values("embedding of no indices: grad", g, zeros, 12, 0);
    ag_tensor_release(g);
    ag_tensor_release(s);
    ag_tensor_release(r);
    ag_tensor_release(a);
    ag_tensor_release(b);
    ag_tensor_release(w);
    ag_tensor_release(i);
}

static void softmax_errors(void)
{
    static const double d[2] = {1, 2};
    ag_tensor *i = vec(AG_INT64, 2, d), *f = vec(AG_FLOAT32, 2, d), *r = NULL;
    FAILS(AG_EDTYPE, ag_softmax(&r, i, 0));
    FAILS(AG_EDTYPE, ag_log_softmax(&r, i, 0));
    FAILS(AG_ERANGE, ag_softmax(&r, f, 1));
    FAILS(AG_ERANGE, ag_log_softmax(&r, f, -2));
    CHECK(r == NULL);
    ag_tensor_release(i);
    ag_tensor_release(f);
}

/* float32 softmax underflows gradually, as exp does: exp(-88) = 6.05e-39 is still a normal
 * float (it was flushed to 0 below -87). */
static void softmax_small_values(void)
{
    int64_t s[1] = {3};
    ag_tensor *x = tensor_f64((double[]){0, -88, -100}, s, 1, AG_FLOAT32), *r;
    OK(ag_softmax(&r, x, 0));
    double v[3];
    OK(ag_tensor_copy_f64(v, 3, r));
    CHECK(v[0] == 1.0);
    CHECK(fabs(v[1] - 6.0546014e-39) < 1e-45); /* float32 exp(-88) */
    CHECK(v[2] > 0 && v[2] < 4e-44);           /* a denormal, not 0 */
    ag_tensor_release(r);
    ag_tensor_release(x);
}

int main(void)
{
    softmax_small_values();
    softmax_values();
    softmax_errors();
    softmax_grads();
    cross_entropy_values();
    cross_entropy_errors();
    cross_entropy_grads();
    loss_nonfinite_grads();
    cross_entropy_inplace();
    mse();
    bce();
    dropout();
    layer_norm();
    embedding();
    thread_determinism();
    empty();
    return harness_finish("test_nn");
}
