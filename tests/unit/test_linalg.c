/*
 * test_linalg.c: matmul (every rank combination of torch.matmul), linear, and their
 * gradients: values, grad_fn names as PyTorch 1.13 prints them, errors, first- and
 * second-order gradient checks, and bitwise-identical results across thread counts.
 */
#include <math.h>
#include <string.h>

#include "harness.h"

static int call_matmul(ag_tensor **out, ag_tensor *const *in, void *ctx)
{
    (void)ctx;
    return ag_matmul(out, in[0], in[1]);
}

static int call_linear(ag_tensor **out, ag_tensor *const *in, void *ctx)
{
    return ag_linear(out, in[0], in[1], ctx ? in[2] : NULL);
}

/* matmul of transposed views: a^T @ b^T with a [k, n], b [m, k] */
static int call_matmul_tt(ag_tensor **out, ag_tensor *const *in, void *ctx)
{
    (void)ctx;
    ag_tensor *at, *bt;
    int rc = ag_t(&at, in[0]);
    if (rc) return rc;
    if ((rc = ag_t(&bt, in[1]))) {
        ag_tensor_release(at);
        return rc;
    }
    rc = ag_matmul(out, at, bt);
    ag_tensor_release(at);
    ag_tensor_release(bt);
    return rc;
}

typedef struct rank_case {
    const char *name;
    int64_t sa[4];
    size_t na;
    int64_t sb[4];
    size_t nb;
    const char *grad_fn; /* torch 1.13: type(torch.matmul(a, b).grad_fn).__name__ */
    int64_t out[4];
    size_t nout;
} rank_case;

static const rank_case ranks[] = {
    {"dot", {3}, 1, {3}, 1, "DotBackward0", {0}, 0},
    {"mv", {2, 3}, 2, {3}, 1, "MvBackward0", {2}, 1},
    {"vm", {3}, 1, {3, 4}, 2, "SqueezeBackward3", {4}, 1},
    {"mm", {2, 3}, 2, {3, 4}, 2, "MmBackward0", {2, 4}, 2},
    {"3d@2d", {2, 2, 3}, 3, {3, 4}, 2, "UnsafeViewBackward0", {2, 2, 4}, 3},
    {"3d@1d", {2, 2, 3}, 3, {3}, 1, "UnsafeViewBackward0", {2, 2}, 2},
    {"2d@3d", {2, 3}, 2, {2, 3, 4}, 3, "CloneBackward0", {2, 2, 4}, 3},
    {"bmm", {2, 2, 3}, 3, {2, 3, 4}, 3, "UnsafeViewBackward0", {2, 2, 4}, 3},
    {"broadcast", {2, 1, 2, 3}, 4, {3, 3, 2}, 3, "UnsafeViewBackward0", {2, 3, 2, 2}, 4},
    {"1d@3d", {3}, 1, {2, 3, 4}, 3, "UnsafeViewBackward0", {2, 4}, 2},
};

static void matmul_ranks(void)
{
    for (size_t k = 0; k < sizeof ranks / sizeof ranks[0]; k++) {
        const rank_case *c = &ranks[k];
        gc_input in[2] = {{c->sa, c->na, NULL, -1, 1, 1, 0}, {c->sb, c->nb, NULL, -1, 1, 1, 0}};
        CHECK(gradcheck(c->name, call_matmul, in, 2, NULL));
        CHECK(gradgradcheck(c->name, call_matmul, in, 2, NULL));
        /* shape and grad_fn */
        ag_tensor *a, *b, *r;
        OK(ag_ones(&a, AG_FLOAT64, c->sa, c->na));
        OK(ag_ones(&b, AG_FLOAT64, c->sb, c->nb));
        OK(ag_tensor_set_requires_grad(a, 1));
        OK(ag_matmul(&r, a, b));
        size_t nd;
        int64_t shape[8];
        OK(ag_tensor_ndim(&nd, r));
        OK(ag_tensor_shape(shape, 8, r));
        CHECK(nd == c->nout && memcmp(shape, c->out, nd * sizeof *shape) == 0);
        CHECK_STR(grad_fn_name(r), c->grad_fn);
        ag_tensor_release(r);
        ag_tensor_release(a);
        ag_tensor_release(b);
    }
}

static void matmul_values(void)
{
    /* torch.tensor([[1.,2,3],[4,5,6]]) @ torch.tensor([[7.,8],[9,10],[11,12]]) */
    double ad[6] = {1, 2, 3, 4, 5, 6}, bd[6] = {7, 8, 9, 10, 11, 12};
    int64_t s23[2] = {2, 3}, s32[2] = {3, 2};
    ag_tensor *a = tensor_f64(ad, s23, 2, AG_FLOAT32), *b = tensor_f64(bd, s32, 2, AG_FLOAT32);
    ag_tensor *r, *s;
    OK(ag_tensor_set_requires_grad(a, 1));
    OK(ag_tensor_set_requires_grad(b, 1));
    OK(ag_matmul(&r, a, b));
    double want[4] = {58, 64, 139, 154};
    check_values("matmul values", r, want, 4, 0);
    OK(ag_sum(&s, r));
    OK(ag_backward(s, NULL, 0));
    ag_tensor *ga, *gb;
    OK(ag_tensor_grad(&ga, a));
    OK(ag_tensor_grad(&gb, b));
    /* a.grad = ones(2,2) @ b^T ; b.grad = a^T @ ones(2,2) */
    double wa[6] = {15, 19, 23, 15, 19, 23}, wb[6] = {5, 5, 7, 7, 9, 9};
    check_values("matmul a.grad", ga, wa, 6, 0);
    check_values("matmul b.grad", gb, wb, 6, 0);
    ag_tensor *tensors[] = {ga, gb, s, r, a, b};
    for (size_t i = 0; i < 6; i++) ag_tensor_release(tensors[i]);
}

static void transposed_operands(void)
{
    int64_t sa[2] = {3, 2}, sb[2] = {4, 3}; /* a^T [2, 3] @ b^T [3, 4] */
    gc_input in[2] = {{sa, 2, NULL, -1, 1, 1, 0}, {sb, 2, NULL, -1, 1, 1, 0}};
    CHECK(gradcheck("transposed", call_matmul_tt, in, 2, NULL));
    CHECK(gradgradcheck("transposed", call_matmul_tt, in, 2, NULL));
}

static void linear(void)
{
    int64_t sx[2] = {3, 4}, sw[2] = {5, 4}, sb[1] = {5}, sx3[3] = {2, 3, 4}, sx1[1] = {4};
    gc_input with_bias[3] = {{sx, 2, NULL, -1, 1, 1, 0}, {sw, 2, NULL, -1, 1, 1, 0},
                             {sb, 1, NULL, -1, 1, 1, 0}};
    gc_input no_bias[2] = {{sx, 2, NULL, -1, 1, 1, 0}, {sw, 2, NULL, -1, 1, 1, 0}};
    gc_input rank3[3] = {{sx3, 3, NULL, -1, 1, 1, 0}, {sw, 2, NULL, -1, 1, 1, 0},
                         {sb, 1, NULL, -1, 1, 1, 0}};
    gc_input rank1[3] = {{sx1, 1, NULL, -1, 1, 1, 0}, {sw, 2, NULL, -1, 1, 1, 0},
                         {sb, 1, NULL, -1, 1, 1, 0}};
    int bias = 1;
    CHECK(gradcheck("linear", call_linear, with_bias, 3, &bias));
    CHECK(gradgradcheck("linear", call_linear, with_bias, 3, &bias));
    CHECK(gradcheck("linear no bias", call_linear, no_bias, 2, NULL));
    CHECK(gradcheck("linear 3d", call_linear, rank3, 3, &bias));
    CHECK(gradcheck("linear 1d", call_linear, rank1, 3, &bias));
    /* grad_fn names: F.linear in torch 1.13 */
    const struct {
        const int64_t *sx;
        size_t nx;
        int bias;
        const char *name;
    } names[] = {{sx, 2, 1, "AddmmBackward0"}, {sx, 2, 0, "MmBackward0"},
                 {sx3, 3, 1, "ViewBackward0"}, {sx1, 1, 1, "AddBackward0"}};
    ag_tensor *w, *b;
    OK(ag_ones(&w, AG_FLOAT32, sw, 2));
    OK(ag_ones(&b, AG_FLOAT32, sb, 1));
    OK(ag_tensor_set_requires_grad(w, 1));
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        ag_tensor *x, *r;
        OK(ag_ones(&x, AG_FLOAT32, names[k].sx, names[k].nx));
        OK(ag_linear(&r, x, w, names[k].bias ? b : NULL));
        CHECK_STR(grad_fn_name(r), names[k].name);
        ag_tensor_release(r);
        ag_tensor_release(x);
    }
    /* values: x @ w^T + b with x = 1, w = 1, b = 1 -> 4 + 1 */
    ag_tensor *x, *r;
    OK(ag_ones(&x, AG_FLOAT32, sx, 2));
    OK(ag_linear(&r, x, w, b));
    double five[15];
    for (int i = 0; i < 15; i++) five[i] = 5;
    check_values("linear values", r, five, 15, 0);
    ag_tensor_release(r);
    /* errors */
    int64_t bad[2] = {5, 3};
    ag_tensor *wbad;
    OK(ag_ones(&wbad, AG_FLOAT32, bad, 2));
    r = NULL;
    FAILS(AG_ESHAPE, ag_linear(&r, x, wbad, NULL));
    CHECK(r == NULL);
    FAILS(AG_EINVAL, ag_linear(&r, NULL, w, NULL));
    ag_tensor_release(wbad);
    ag_tensor_release(x);
    ag_tensor_release(w);
    ag_tensor_release(b);
}

/* What else F.linear takes (torch 1.13): a 1-d weight [in] (x @ w: MvBackward0 for a 2-d
 * input), a bias that broadcasts to the output ([1] or 0-d through addmm; anything an
 * in-place add takes on the other paths); and what it refuses, as PyTorch does: a 1-d weight
 * with a bias on the addmm path ("mat2 must be a matrix"), a bias the output would have to
 * broadcast to. These were all refused. Gradients: gradcheck; values and names: PyTorch's. */
static void linear_like_f_linear(void)
{
    int64_t sx[2] = {3, 4}, sw1[1] = {4}, sw[2] = {2, 4}, sb1[1] = {1}, sx4[4] = {2, 2, 3, 4},
            sb4[4] = {5, 1, 1, 1};
    gc_input w1d[2] = {{sx, 2, NULL, -1, 1, 1, 0}, {sw1, 1, NULL, -1, 1, 1, 0}};
    gc_input b1[3] = {{sx, 2, NULL, -1, 1, 1, 0}, {sw, 2, NULL, -1, 1, 1, 0},
                      {sb1, 1, NULL, -1, 1, 1, 0}};
    gc_input w1d_b1_4d[3] = {{sx4, 4, NULL, -1, 1, 1, 0}, {sw1, 1, NULL, -1, 1, 1, 0},
                             {sb1, 1, NULL, -1, 1, 1, 0}};
    int bias = 1;
    CHECK(gradcheck("linear, 1-d weight", call_linear, w1d, 2, NULL));
    CHECK(gradcheck("linear, bias [1]", call_linear, b1, 3, &bias));
    CHECK(gradgradcheck("linear, bias [1]", call_linear, b1, 3, &bias));
    CHECK(gradcheck("linear 4-d, 1-d weight, bias [1]", call_linear, w1d_b1_4d, 3, &bias));
    ag_tensor *x, *x4, *w1, *w, *b, *b4, *r = NULL, *g;
    OK(ag_ones(&x, AG_FLOAT32, sx, 2));
    OK(ag_ones(&x4, AG_FLOAT32, sx4, 4));
    OK(ag_ones(&w1, AG_FLOAT32, sw1, 1));
    OK(ag_ones(&w, AG_FLOAT32, sw, 2));
    OK(ag_ones(&b, AG_FLOAT32, sb1, 1));
    OK(ag_ones(&b4, AG_FLOAT32, sb4, 4));
    OK(ag_tensor_set_requires_grad(w1, 1));
    OK(ag_tensor_set_requires_grad(b, 1));
    OK(ag_linear(&r, x, w1, NULL)); /* [3]: 4 each */
    CHECK_STR(grad_fn_name(r), "MvBackward0");
    double four[3] = {4, 4, 4};
    check_values("linear, 1-d weight", r, four, 3, 0);
    ag_tensor_release(r);
    OK(ag_linear(&r, x, w, b)); /* [3, 2]: 5 each; b.grad = 6 */
    CHECK_STR(grad_fn_name(r), "AddmmBackward0");
    double five[6] = {5, 5, 5, 5, 5, 5};
    check_values("linear, bias [1]", r, five, 6, 0);
    ag_tensor *sum;
    OK(ag_sum(&sum, r));
    OK(ag_backward(sum, NULL, 0));
    ag_tensor_release(sum);
    OK(ag_tensor_grad(&g, b));
    double six[1] = {6};
    check_values("linear, bias [1], its gradient", g, six, 1, 0);
    ag_tensor_release(g);
    ag_tensor_release(r);
    OK(ag_linear(&r, x4, w1, b)); /* [2, 2, 3]: matmul, then the bias added */
    CHECK_STR(grad_fn_name(r), "AddBackward0");
    ag_tensor_release(r);
    r = NULL;
    FAILS(AG_ESHAPE, ag_linear(&r, x, w1, b));
    CHECK(strstr(ag_last_error(), "mat2 must be a matrix, got 1-D tensor"));
    FAILS(AG_ESHAPE, ag_linear(&r, x4, w, b4)); /* [5, 1, 1, 1] onto [2, 2, 3, 2] */
    CHECK(r == NULL);
    ag_tensor_release(b4);
    ag_tensor_release(b);
    ag_tensor_release(w);
    ag_tensor_release(w1);
    ag_tensor_release(x4);
    ag_tensor_release(x);
}

static void errors(void)
{
    int64_t s23[2] = {2, 3}, s45[2] = {4, 5};
    ag_tensor *a, *b, *c, *i, *z, *r = NULL;
    OK(ag_zeros(&a, AG_FLOAT32, s23, 2));
    OK(ag_zeros(&b, AG_FLOAT32, s45, 2));
    FAILS(AG_ESHAPE, ag_matmul(&r, a, b));
    CHECK_STR(ag_last_error(), "ag_matmul: shapes [2, 3] and [4, 5] cannot be multiplied");
    OK(ag_zeros(&c, AG_FLOAT64, s23, 2));
    FAILS(AG_EDTYPE, ag_matmul(&r, a, c)); /* mixed dtypes */
    OK(ag_zeros(&i, AG_INT64, s23, 2));
    FAILS(AG_EDTYPE, ag_matmul(&r, i, i)); /* integer matmul */
    OK(ag_tensor_scalar(&z, 1.0, AG_FLOAT32));
    FAILS(AG_ESHAPE, ag_matmul(&r, z, a)); /* 0-d operand */
    CHECK(r == NULL);
    ag_tensor *ts[] = {a, b, c, i, z};
    for (size_t k = 0; k < 5; k++) ag_tensor_release(ts[k]);
}

/* Mid-size products and their backward, bitwise identical for 1 to 16 threads. gemm.c cuts
 * more tiles for more threads: with AVX-512 kernels the product 200x512x600 (the fused path)
 * goes from 10 tiles on 2 threads to 20 on 7 and 76 on 16, and 300x520x260 (k-blocks) from 9
 * to 30 on 7 and 16, the backward products alike; 130x300x70's plans never change. With a
 * batch (batch > 0: [batch, m, k] @ [batch, k, n]), small products run side by side on the
 * team, each whole on one thread, where 1 thread runs them one after another. */
enum { NCOUNTS = 5 };
static void determinism_shape(int64_t batch, int64_t m, int64_t k, int64_t n)
{
    int saved = ag_get_num_threads();
    double *base[NCOUNTS] = {NULL};
    int counts[NCOUNTS] = {1, 2, 4, 7, 16};
    for (int c = 0; c < NCOUNTS; c++) {
        OK(ag_set_num_threads(counts[c]));
        ag_generator *g;
        OK(ag_generator_new(&g, 7));
        int64_t sa[3] = {batch, m, k}, sb[3] = {batch, k, n};
        int nd = batch ? 3 : 2, o = batch ? 0 : 1;
        ag_tensor *a, *b, *r, *s;
        OK(ag_randn(&a, g, AG_FLOAT32, sa + o, nd));
        OK(ag_randn(&b, g, AG_FLOAT32, sb + o, nd));
        OK(ag_tensor_set_requires_grad(a, 1));
        OK(ag_tensor_set_requires_grad(b, 1));
        OK(ag_matmul(&r, a, b));
        OK(ag_sum(&s, r));
        OK(ag_backward(s, NULL, 0));
        ag_tensor *ga, *gb;
        OK(ag_tensor_grad(&ga, a));
        OK(ag_tensor_grad(&gb, b));
        int64_t n1, n2, n3;
        double *v1 = values(r, &n1), *v2 = values(ga, &n2), *v3 = values(gb, &n3);
        double *all = malloc((size_t)(n1 + n2 + n3) * sizeof *all);
        memcpy(all, v1, (size_t)n1 * sizeof *all);
        memcpy(all + n1, v2, (size_t)n2 * sizeof *all);
        memcpy(all + n1 + n2, v3, (size_t)n3 * sizeof *all);
        free(v1);
        free(v2);
        free(v3);
        base[c] = all;
        if (c > 0 && memcmp(base[0], all, (size_t)(n1 + n2 + n3) * sizeof *all) != 0) {
            fprintf(stderr, "matmul %lld x %lldx%lldx%lld: %d threads differ from 1 thread\n",
                    (long long)batch, (long long)m, (long long)k, (long long)n, counts[c]);
            harness_failures++;
        }
        ag_tensor *ts[] = {ga, gb, s, r, a, b};
        for (size_t k = 0; k < 6; k++) ag_tensor_release(ts[k]);
        ag_generator_release(g);
    }
    for (int c = 0; c < NCOUNTS; c++) free(base[c]);
    OK(ag_set_num_threads(saved));
}

static void determinism(void)
{
    determinism_shape(0, 130, 300, 70);
    determinism_shape(0, 200, 512, 600);
    determinism_shape(0, 300, 520, 260);
    determinism_shape(12, 40, 56, 24);   /* small products: side by side */
    determinism_shape(5, 128, 128, 128); /* at BMM_WHOLE_MAX: side by side */
    determinism_shape(3, 150, 130, 120); /* bigger, an uneven batch: one after another */
    determinism_shape(4, 150, 130, 120); /* an even one: side by side on 2 and 4 threads */
}

/* A batch of products side by side on 2 threads, with the n-th allocation refused for each
 * n in turn (a product's packing buffer, on whichever thread): AG_ENOMEM, the output
 * untouched and nothing kept, until it succeeds with the values of 1 thread. */
static void batched_out_of_memory(void)
{
    int saved = ag_get_num_threads();
    OK(ag_set_allocator(&harness_allocator));
    ag_generator *g;
    OK(ag_generator_new(&g, 11));
    int64_t sa[3] = {6, 64, 96}, sbt[3] = {6, 80, 96};
    ag_tensor *a, *bt, *b, *want, *y;
    OK(ag_randn(&a, g, AG_FLOAT32, sa, 3));
    OK(ag_randn(&bt, g, AG_FLOAT32, sbt, 3));
    OK(ag_transpose(&b, bt, 1, 2)); /* (transposed: its panels are packed) */
    OK(ag_set_num_threads(1));
    OK(ag_matmul(&want, a, b));
    OK(ag_set_num_threads(2));
    ag_set_deferral_enabled(0);
    int refused = 0;
    for (long n = 0; n < 1000; n++) {
        long before = harness_alloc_live();
        harness_alloc_fail_nth(n);
        y = (ag_tensor *)&before;
        int rc = ag_matmul(&y, a, b);
        harness_alloc_fail_nth(-1);
        if (rc == AG_OK) break;
        refused++;
        CHECK(rc == AG_ENOMEM && y == (ag_tensor *)&before);
        CHECK(harness_alloc_live() == before);
    }
    CHECK(refused > 1); /* the output, and at least one packing buffer */
    int64_t ny, nw;
    double *vy = values(y, &ny), *vw = values(want, &nw);
    CHECK(ny == nw && memcmp(vy, vw, (size_t)ny * sizeof *vy) == 0);
    free(vy);
    free(vw);
    ag_tensor *all[] = {a, bt, b, want, y};
    for (int i = 0; i < 5; i++) ag_tensor_release(all[i]);
    ag_generator_release(g);
    ag_set_deferral_enabled(1);
    CHECK(harness_alloc_live() == 0);
    OK(ag_set_allocator(NULL));
    OK(ag_set_num_threads(saved));
}

/* matmul's and linear's results are fresh tensors, not views, even where they are a fresh
 * product seen with another shape (torch 1.13: _unsafe_view, or squeeze_ for 1-d @ 2-d):
 * made under no_grad they take in-place ops under grad mode, and an in-place op gives them
 * the op's own grad_fn, not AsStridedBackward0. */
typedef int (*product_fn)(ag_tensor **out, ag_tensor *a, ag_tensor *b);
static int mm_product(ag_tensor **out, ag_tensor *a, ag_tensor *b) { return ag_matmul(out, a, b); }
static int linear_product(ag_tensor **out, ag_tensor *a, ag_tensor *b)
{
    return ag_linear(out, a, b, NULL);
}

static void products_are_not_views(void)
{
    int64_t s2[1] = {2}, s22[2] = {2, 2}, s212[3] = {2, 1, 2}, s022[3] = {0, 2, 2},
            s222[3] = {2, 2, 2};
    const struct {
        const char *name;
        product_fn f;
        const int64_t *sa, *sb;
        size_t na, nb;
        const char *grad_fn; /* torch 1.13, with b requiring grad */
        int64_t version;     /* torch 1.13: squeeze_ bumps it */
    } cases[] = {
        {"1d@2d", mm_product, s2, s22, 1, 2, "SqueezeBackward3", 1},
        {"3d@2d", mm_product, s212, s22, 3, 2, "UnsafeViewBackward0", 0},
        {"3d@1d", mm_product, s222, s2, 3, 1, "UnsafeViewBackward0", 0},
        {"1d@3d", mm_product, s2, s222, 1, 3, "UnsafeViewBackward0", 0},
        {"3d@3d", mm_product, s222, s222, 3, 3, "UnsafeViewBackward0", 0},
        {"empty batch", mm_product, s022, s22, 3, 2, "UnsafeViewBackward0", 0},
        {"linear 1d", linear_product, s2, s22, 1, 2, "SqueezeBackward3", 1},
        {"linear 3d", linear_product, s212, s22, 3, 2, "UnsafeViewBackward0", 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        ag_tensor *a, *b, *y, *z, *s;
        OK(ag_ones(&a, AG_FLOAT64, cases[k].sa, cases[k].na));
        OK(ag_ones(&b, AG_FLOAT64, cases[k].sb, cases[k].nb));
        /* with torch.no_grad(): y = a @ b; then y.add_(z), z requiring grad */
        int prev = ag_set_grad_enabled(0);
        OK(cases[k].f(&y, a, b));
        ag_set_grad_enabled(prev);
        int64_t v = -1;
        OK(ag_tensor_version(&v, y));
        if (v != cases[k].version) {
            fprintf(stderr, "%s: version %lld, expected %lld\n", cases[k].name, (long long)v,
                    (long long)cases[k].version);
            harness_failures++;
        }
        OK(ag_ones_like(&z, y));
        OK(ag_tensor_set_requires_grad(z, 1));
        OK(ag_add_(y, z));
        CHECK_STR(grad_fn_name(y), "AddBackward0");
        ag_tensor_release(y);
        /* grad mode: y = a @ b, b requiring grad; y.mul_(3) is MulBackward0 */
        OK(ag_tensor_set_requires_grad(b, 1));
        OK(cases[k].f(&y, a, b));
        CHECK_STR(grad_fn_name(y), cases[k].grad_fn);
        OK(ag_mul_scalar_(y, 3));
        CHECK_STR(grad_fn_name(y), "MulBackward0");
        OK(ag_sum(&s, y));
        OK(ag_backward(s, NULL, 0));
        ag_tensor_release(s);
        ag_tensor_release(y);
        /* an in-place op under no_grad leaves the grad_fn as it was */
        OK(cases[k].f(&y, a, b));
        prev = ag_set_grad_enabled(0);
        OK(ag_mul_scalar_(y, 2));
        ag_set_grad_enabled(prev);
        CHECK_STR(grad_fn_name(y), cases[k].grad_fn);
        ag_tensor *ts[] = {y, z, a, b};
        for (size_t i = 0; i < 4; i++) ag_tensor_release(ts[i]);
    }

    /* torch: x = [1, 2], w = [[1, 2], [3, 4]] requiring grad; y = x @ w; y.<op>;
     * y.sum().backward() */
    double xd[2] = {1, 2}, wd[4] = {1, 2, 3, 4}, od[2] = {1, 1}, cd[2] = {5, 6};
    const struct {
        const char *grad_fn;
        double y[2], wgrad[4];
    } ops[] = {
        {"MulBackward0", {21, 30}, {3, 3, 6, 6}},   /* y.mul_(3) */
        {"FillBackward2", {2, 2}, {0, 0, 0, 0}},    /* y.fill_(2) */
        {"ZeroBackward0", {0, 0}, {0, 0, 0, 0}},    /* y.zero_() */
        {"CopyBackwards", {5, 6}, {0, 0, 0, 0}},    /* y.copy_([5, 6]) */
        {"SubBackward0", {6, 9}, {1, 1, 2, 2}},     /* y.sub_([1, 1]) */
        {"SqueezeBackward3", {14, 20}, {1, 1, 2, 2}}, /* with no_grad: y.mul_(2) */
    };
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
        ag_tensor *x = tensor_f64(xd, s2, 1, AG_FLOAT64), *w = tensor_f64(wd, s22, 2, AG_FLOAT64);
        ag_tensor *o = tensor_f64(od, s2, 1, AG_FLOAT64), *c = tensor_f64(cd, s2, 1, AG_FLOAT64);
        ag_tensor *y, *s, *g = NULL;
        OK(ag_tensor_set_requires_grad(w, 1));
        OK(ag_matmul(&y, x, w));
        int prev;
        switch (k) {
        case 0: OK(ag_mul_scalar_(y, 3)); break;
        case 1: OK(ag_fill_(y, 2)); break;
        case 2: OK(ag_zero_(y)); break;
        case 3: OK(ag_copy_(y, c)); break;
        case 4: OK(ag_sub_(y, o)); break;
        default:
            prev = ag_set_grad_enabled(0);
            OK(ag_mul_scalar_(y, 2));
            ag_set_grad_enabled(prev);
        }
        CHECK_STR(grad_fn_name(y), ops[k].grad_fn);
        check_values(ops[k].grad_fn, y, ops[k].y, 2, 0);
        OK(ag_sum(&s, y));
        OK(ag_backward(s, NULL, 0));
        OK(ag_tensor_grad(&g, w));
        check_values("w.grad", g, ops[k].wgrad, 4, 0);
        ag_tensor *ts[] = {g, s, y, c, o, w, x};
        for (size_t i = 0; i < 7; i++) ag_tensor_release(ts[i]);
    }

    /* linear of a contiguous 3-d input with a bias is a view in torch 1.13 (addmm(...).view),
     * so made under no_grad it refuses in-place ops under grad mode, as there */
    {
        ag_tensor *x, *w, *b, *y, *z;
        OK(ag_ones(&x, AG_FLOAT64, s212, 3));
        OK(ag_ones(&w, AG_FLOAT64, s22, 2));
        OK(ag_ones(&b, AG_FLOAT64, s2, 1));
        int prev = ag_set_grad_enabled(0);
        OK(ag_linear(&y, x, w, b));
        ag_set_grad_enabled(prev);
        OK(ag_ones_like(&z, y));
        OK(ag_tensor_set_requires_grad(z, 1));
        FAILS(AG_EINVAL, ag_add_(y, z));
        ag_tensor *ts[] = {z, y, b, w, x};
        for (size_t i = 0; i < 5; i++) ag_tensor_release(ts[i]);
    }
}

/* Gradients handed to the user are not views of the backward's temporaries: torch keeps
 * new_grad.detach() in .grad, so w.grad.mul_(z) with z requiring grad works (w's gradient of
 * x @ w.t() is the transpose of a product, which was kept as a view made in backward). */
static void gradients_are_not_views(void)
{
    static const int64_t s23[] = {2, 3}, s43[] = {4, 3};
    double xd[6] = {1, 2, 3, 4, 5, 6}, wd[12], zd[12];
    for (int i = 0; i < 12; i++) {
        wd[i] = 0.5 * i - 2;
        zd[i] = i % 3 + 1;
    }
    ag_tensor *x = tensor_f64(xd, s23, 2, AG_FLOAT64), *w = tensor_f64(wd, s43, 2, AG_FLOAT64);
    ag_tensor *z = tensor_f64(zd, s43, 2, AG_FLOAT64), *y, *s, *g, *r;
    OK(ag_tensor_set_requires_grad(w, 1));
    OK(ag_tensor_set_requires_grad(z, 1));
    OK(ag_linear(&y, x, w, NULL));
    OK(ag_sum(&s, y));
    OK(ag_backward(s, NULL, AG_RETAIN_GRAPH));
    OK(ag_tensor_grad(&g, w));
    OK(ag_mul_(g, z)); /* torch: works; w.grad[i][j] = (x[0][j] + x[1][j]) * z[i][j] */
    double want[12];
    for (int i = 0; i < 12; i++) want[i] = (xd[i % 3] + xd[3 + i % 3]) * zd[i];
    check_values("w.grad * z", g, want, 12, 0);
    CHECK_STR(grad_fn_name(g), "MulBackward0");
    ag_tensor_release(g);
    /* the same gradient from ag_grad */
    OK(ag_grad(&r, &s, NULL, 1, &w, 1, 0));
    OK(ag_mul_(r, z));
    check_values("grad * z", r, want, 12, 0);
    ag_tensor *ts[] = {r, s, y, z, w, x};
    for (size_t i = 0; i < 6; i++) ag_tensor_release(ts[i]);
}

/* A thin float32 product (N = 1, the direct path) sums K in blocks, as the blocked path
 * does: with one running sum over K = 65536 positive terms its relative error was 3.5e-6
 * (PyTorch: 3.1e-7); blocked it is ~2e-7. Against a float64 reference. */
static void thin_product_accuracy(void)
{
    enum { M = 8, K = 65536 };
    static double a[M * K], b[K];
    uint64_t s = 12345;
    for (int i = 0; i < M * K; i++) {
        s = s * 6364136223846793005u + 1442695040888963407u;
        a[i] = (double)(float)((double)(s >> 40) / (double)(1u << 24));
    }
    for (int k = 0; k < K; k++) {
        s = s * 6364136223846793005u + 1442695040888963407u;
        b[k] = (double)(float)((double)(s >> 40) / (double)(1u << 24));
    }
    int64_t sa[2] = {M, K}, sb[2] = {K, 1};
    ag_tensor *ta = tensor_f64(a, sa, 2, AG_FLOAT32), *tb = tensor_f64(b, sb, 2, AG_FLOAT32), *c;
    OK(ag_matmul(&c, ta, tb));
    double got[M], worst = 0;
    OK(ag_tensor_copy_f64(got, M, c));
    for (int i = 0; i < M; i++) {
        double ref = 0;
        for (int k = 0; k < K; k++) ref += a[i * K + k] * b[k];
        double rel = fabs(got[i] - ref) / ref;
        if (rel > worst) worst = rel;
    }
    if (worst > 1e-6) fprintf(stderr, "thin product: relative error %g\n", worst);
    CHECK(worst < 1e-6);
    ag_tensor_release(c);
    ag_tensor_release(tb);
    ag_tensor_release(ta);
}

int main(void)
{
    thin_product_accuracy();
    matmul_values();
    matmul_ranks();
    products_are_not_views();
    transposed_operands();
    linear();
    linear_like_f_linear();
    gradients_are_not_views();
    errors();
    determinism();
    batched_out_of_memory();
    return harness_finish("test_linalg");
}
