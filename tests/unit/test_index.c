/*
 * test_index.c: index_select, gather, scatter_add, cat, stack, split and chunk: values
 * against PyTorch 1.13 (the expression in each comment), grad_fn names, error cases,
 * non-contiguous operands, deterministic scatters, and first- and second-order gradient
 * checks (index_add is reached through index_select's double backward).
 */
#include <math.h>
#include <string.h>

#include "harness.h"

static ag_tensor *mk(ag_dtype dt, const int64_t *shape, size_t nd, const double *data)
{
    return tensor_f64(data, shape, nd, dt);
}

/* arange(12.).reshape(3, 4) */
static ag_tensor *x34(ag_dtype dt)
{
    double d[12];
    for (int i = 0; i < 12; i++) d[i] = i;
    int64_t s[2] = {3, 4};
    return mk(dt, s, 2, d);
}

static void check_shape(const char *what, const ag_tensor *t, const int64_t *want, size_t nd)
{
    size_t got;
    int64_t sh[8];
    OK(ag_tensor_ndim(&got, t));
    OK(ag_tensor_shape(sh, 8, t));
    int ok = got == nd;
    for (size_t i = 0; ok && i < nd; i++) ok = sh[i] == want[i];
    if (!ok) {
        fprintf(stderr, "%s: wrong shape\n", what);
        harness_failures++;
    }
}

static void check_dtype(const ag_tensor *t, ag_dtype want)
{
    ag_dtype dt;
    OK(ag_tensor_dtype(&dt, t));
    CHECK(dt == want);
}

#define ERR_HAS(s) CHECK(strstr(ag_last_error(), (s)) != NULL)

/* ---- index_select ---- */
static void index_select_values(void)
{
    ag_tensor *x = x34(AG_FLOAT32), *xt, *r, *g, *i;
    OK(ag_tensor_set_requires_grad(x, 1));
    /* x.index_select(1, tensor([3, 0, 3])) */
    double id[3] = {3, 0, 3};
    i = vec(AG_INT64, 3, id);
    OK(ag_index_select(&r, x, 1, i));
    CHECK_STR(grad_fn_name(r), "IndexSelectBackward0");
    double w1[9] = {3, 0, 3, 7, 4, 7, 11, 8, 11};
    check_values("index_select", r, w1, 9, 0);
    /* y.sum().backward(); x.grad */
    ag_tensor *s;
    OK(ag_sum(&s, r));
    OK(ag_backward(s, NULL, 0));
    OK(ag_tensor_grad(&g, x));
    double wg[12] = {1, 0, 0, 2, 1, 0, 0, 2, 1, 0, 0, 2};
    check_values("index_select grad", g, wg, 12, 0);
    ag_tensor_release(g);
    ag_tensor_release(s);
    ag_tensor_release(r);
    ag_tensor_release(i);

    /* x.t().index_select(0, tensor([1, 2])): a non-contiguous self */
    OK(ag_transpose(&xt, x, 0, 1));
    double id2[2] = {1, 2};
    i = vec(AG_INT64, 2, id2);
    OK(ag_index_select(&r, xt, 0, i));
    double w2[6] = {1, 5, 9, 2, 6, 10};
    check_values("index_select of a transpose", r, w2, 6, 0);
    ag_tensor_release(r);
    ag_tensor_release(i);

    /* x.index_select(1, tensor(2)): a 0-d index keeps the dim, size 1 */
    OK(ag_tensor_from_f64(&i, (double[]){2}, AG_INT64, NULL, 0));
    OK(ag_index_select(&r, x, 1, i));
    int64_t s31[2] = {3, 1};
    check_shape("0-d index", r, s31, 2);
    double w3[3] = {2, 6, 10};
    check_values("0-d index", r, w3, 3, 0);
    ag_tensor_release(r);
    ag_tensor_release(i);

    /* x.index_select(0, tensor([2, 0, 1, 2])[::2]): a strided index */
    double id4[4] = {2, 0, 1, 2};
    ag_tensor *i4 = vec(AG_INT64, 4, id4);
    OK(ag_slice(&i, i4, 0, 0, 4, 2));
    OK(ag_index_select(&r, x, 0, i));
    double w4[8] = {8, 9, 10, 11, 4, 5, 6, 7};
    check_values("strided index", r, w4, 8, 0);
    ag_tensor_release(r);
    ag_tensor_release(i);
    ag_tensor_release(i4);

    /* int64 and bool selves, an empty index, a 0-d self */
    ag_tensor *xi = x34(AG_INT64);
    i = vec(AG_INT64, 3, id);
    OK(ag_index_select(&r, xi, -1, i));
    check_dtype(r, AG_INT64);
    check_values("int64 index_select", r, w1, 9, 0);
    CHECK_STR(grad_fn_name(r), "");
    ag_tensor_release(r);
    double bd[4] = {1, 0, 0, 1};
    ag_tensor *b = vec(AG_BOOL, 4, bd);
    OK(ag_index_select(&r, b, 0, i)); /* tensor([T, F, F, T]).index_select(0, [3, 0, 3]) */
    double wb[3] = {1, 1, 1};
    check_values("bool index_select", r, wb, 3, 0);
    ag_tensor_release(r);
    ag_tensor_release(b);
    ag_tensor_release(i);
    ag_tensor_release(xi);
    OK(ag_zeros(&i, AG_INT64, (int64_t[]){0}, 1));
    OK(ag_index_select(&r, x, 0, i)); /* shape [0, 4] */
    int64_t s04[2] = {0, 4};
    check_shape("empty index", r, s04, 2);
    ag_tensor_release(r);
    ag_tensor_release(i);
    ag_tensor *x0;
    OK(ag_tensor_scalar(&x0, 5.0, AG_FLOAT64));
    i = vec(AG_INT64, 1, (double[]){0});
    OK(ag_index_select(&r, x0, 0, i)); /* tensor(5.).index_select(0, [0]) is 0-d */
    check_shape("0-d self", r, NULL, 0);
    check_values("0-d self", r, (double[]){5}, 1, 0);
    ag_tensor_release(r);
    ag_tensor_release(i);
    ag_tensor_release(x0);

    ag_tensor_release(xt);
    ag_tensor_release(x);
}

static void index_select_errors(void)
{
    ag_tensor *x = x34(AG_FLOAT32), *r = NULL, *i;
    i = vec(AG_INT64, 1, (double[]){4});
    FAILS(AG_ERANGE, ag_index_select(&r, x, 1, i));
    ERR_HAS("index 4 is out of bounds for dimension 1 with size 4");
    ag_tensor_release(i);
    i = vec(AG_INT64, 2, (double[]){0, -1}); /* PyTorch refuses negative indices too */
    FAILS(AG_ERANGE, ag_index_select(&r, x, 1, i));
    ERR_HAS("index -1 is out of bounds for dimension 1 with size 4");
    FAILS(AG_ERANGE, ag_index_select(&r, x, 2, i));
    ag_tensor_release(i);
    i = vec(AG_FLOAT32, 1, (double[]){0});
    FAILS(AG_EDTYPE, ag_index_select(&r, x, 1, i));
    ERR_HAS("Expected dtype int64 for index");
    ag_tensor_release(i);
    int64_t s11[2] = {1, 1};
    i = mk(AG_INT64, s11, 2, (double[]){0});
    FAILS(AG_ESHAPE, ag_index_select(&r, x, 1, i));
    ERR_HAS("Index is supposed to be a vector");
    ag_tensor_release(i);
    CHECK(r == NULL);
    ag_tensor_release(x);
}

/* ---- gather / scatter_add ---- */
static void gather_values(void)
{
    ag_tensor *x = x34(AG_FLOAT32), *r, *g, *i, *s;
    OK(ag_tensor_set_requires_grad(x, 1));
    /* x.gather(1, [[0, 0], [3, 1], [2, 2]]) */
    int64_t s32[2] = {3, 2};
    i = mk(AG_INT64, s32, 2, (double[]){0, 0, 3, 1, 2, 2});
    OK(ag_gather(&r, x, 1, i));
    CHECK_STR(grad_fn_name(r), "GatherBackward0");
    check_values("gather", r, (double[]){0, 0, 7, 5, 10, 10}, 6, 0);
    OK(ag_sum(&s, r));
    OK(ag_backward(s, NULL, 0));
    OK(ag_tensor_grad(&g, x));
    check_values("gather grad", g, (double[]){2, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 0}, 12, 0);
    ag_tensor_release(g);
    ag_tensor_release(s);
    ag_tensor_release(r);
    ag_tensor_release(i);

    /* x.gather(0, [[2, 1, 0, 0]]) */
    int64_t s14[2] = {1, 4};
    i = mk(AG_INT64, s14, 2, (double[]){2, 1, 0, 0});
    OK(ag_gather(&r, x, 0, i));
    check_values("gather dim 0", r, (double[]){8, 5, 2, 3}, 4, 0);
    ag_tensor_release(r);
    ag_tensor_release(i);

    /* x.t().gather(1, tensor([[2, 0], [1, 1]]).t()): self and index both transposed */
    ag_tensor *xt, *it, *i22;
    int64_t s22[2] = {2, 2};
    i22 = mk(AG_INT64, s22, 2, (double[]){2, 0, 1, 1});
    OK(ag_transpose(&xt, x, 0, 1));
    OK(ag_transpose(&it, i22, 0, 1));
    OK(ag_gather(&r, xt, 1, it));
    check_values("gather transposed", r, (double[]){8, 4, 1, 5}, 4, 0);
    ag_tensor_release(r);
    /* the index dim may exceed self's: x.gather(1, zeros(3, 7)) has shape [3, 7] */
    int64_t s37[2] = {3, 7};
    ag_tensor *z37;
    OK(ag_zeros(&z37, AG_INT64, s37, 2));
    OK(ag_gather(&r, x, 1, z37));
    check_shape("long gather", r, s37, 2);
    ag_tensor_release(r);
    ag_tensor_release(z37);
    /* tensor([True, False]).gather(0, [1, 0, 1]) */
    ag_tensor *b = vec(AG_BOOL, 2, (double[]){1, 0});
    i = vec(AG_INT64, 3, (double[]){1, 0, 1});
    OK(ag_gather(&r, b, 0, i));
    check_dtype(r, AG_BOOL);
    check_values("bool gather", r, (double[]){0, 1, 0}, 3, 0);
    ag_tensor_release(r);
    ag_tensor_release(i);
    ag_tensor_release(b);
    ag_tensor_release(xt);
    ag_tensor_release(it);
    ag_tensor_release(i22);
    ag_tensor_release(x);
}

static void gather_errors(void)
{
    ag_tensor *x = x34(AG_FLOAT32), *r = NULL, *i;
    int64_t s11[2] = {1, 1}, s41[2] = {4, 1};
    i = mk(AG_INT64, s11, 2, (double[]){-1});
    FAILS(AG_ERANGE, ag_gather(&r, x, 1, i));
    ERR_HAS("index -1 is out of bounds for dimension 1 with size 4");
    ag_tensor_release(i);
    i = mk(AG_INT64, s11, 2, (double[]){4});
    FAILS(AG_ERANGE, ag_gather(&r, x, 1, i));
    ERR_HAS("index 4 is out of bounds for dimension 1 with size 4");
    ag_tensor_release(i);
    ag_tensor *i41;
    OK(ag_zeros(&i41, AG_INT64, s41, 2));
    FAILS(AG_ESHAPE, ag_gather(&r, x, 1, i41));
    ERR_HAS("Size does not match at dimension 0 expected index [4, 1] to be smaller than self "
            "[3, 4] apart from dimension 1");
    ag_tensor_release(i41);
    i = vec(AG_INT64, 1, (double[]){1});
    FAILS(AG_ESHAPE, ag_gather(&r, x, 1, i));
    ERR_HAS("Index tensor must have the same number of dimensions as input tensor");
    ag_tensor_release(i);
    i = mk(AG_FLOAT64, s11, 2, (double[]){1});
    FAILS(AG_EDTYPE, ag_gather(&r, x, 1, i));
    FAILS(AG_ERANGE, ag_gather(&r, x, 2, i));
    ag_tensor_release(i);
    CHECK(r == NULL);
    ag_tensor_release(x);
}

static void scatter_add_values(void)
{
    int64_t s34[2] = {3, 4}, s23[2] = {2, 3}, s25[2] = {2, 5};
    ag_tensor *z, *i, *src, *r, *srct, *src42;
    OK(ag_zeros(&z, AG_FLOAT32, s34, 2));
    /* zeros(3, 4).scatter_add(1, [[0, 0, 3], [1, 2, 1]], arange(10.).reshape(2, 5)):
     * src larger than the index; only its [2, 3] window is read */
    i = mk(AG_INT64, s23, 2, (double[]){0, 0, 3, 1, 2, 1});
    double sd[10];
    for (int k = 0; k < 10; k++) sd[k] = k;
    src = mk(AG_FLOAT32, s25, 2, sd);
    OK(ag_scatter_add(&r, z, 1, i, src));
    check_values("scatter_add", r, (double[]){1, 0, 0, 2, 0, 12, 6, 0, 0, 0, 0, 0}, 12, 0);
    ag_tensor_release(r);
    ag_tensor_release(i);
    ag_tensor_release(src);
    /* zeros(3, 4).scatter_add(0, [[2, 1, 0, 0]], arange(8.).reshape(4, 2).t()) */
    int64_t s14[2] = {1, 4}, s42[2] = {4, 2};
    i = mk(AG_INT64, s14, 2, (double[]){2, 1, 0, 0});
    src42 = mk(AG_FLOAT32, s42, 2, sd);
    OK(ag_transpose(&srct, src42, 0, 1));
    OK(ag_scatter_add(&r, z, 0, i, srct));
    check_values("scatter_add transposed src", r,
                 (double[]){0, 0, 4, 6, 0, 2, 0, 0, 0, 0, 0, 0}, 12, 0);
    ag_tensor_release(r);
    /* grad_fn, and int64 / bool: zeros(3, dtype=bool).scatter_add(0, [0, 0], ones(2, bool)) */
    ag_tensor *zz;
    OK(ag_tensor_set_requires_grad(srct, 0));
    OK(ag_zeros(&zz, AG_FLOAT32, s34, 2));
    OK(ag_tensor_set_requires_grad(zz, 1));
    OK(ag_scatter_add(&r, zz, 0, i, srct));
    CHECK_STR(grad_fn_name(r), "ScatterAddBackward0");
    ag_tensor_release(r);
    ag_tensor_release(zz);
    ag_tensor *bz, *bo, *iz = vec(AG_INT64, 2, (double[]){0, 0});
    int64_t s3[1] = {3}, s2[1] = {2};
    OK(ag_zeros(&bz, AG_BOOL, s3, 1));
    OK(ag_ones(&bo, AG_BOOL, s2, 1));
    OK(ag_scatter_add(&r, bz, 0, iz, bo));
    check_values("bool scatter_add", r, (double[]){1, 0, 0}, 3, 0);
    ag_tensor_release(r);
    ag_tensor_release(bz);
    ag_tensor_release(bo);
    OK(ag_zeros(&bz, AG_INT64, s3, 1));
    OK(ag_ones(&bo, AG_INT64, s2, 1));
    OK(ag_scatter_add(&r, bz, 0, iz, bo));
    check_values("int64 scatter_add", r, (double[]){2, 0, 0}, 3, 0);
    ag_tensor_release(r);
    ag_tensor_release(bz);
    ag_tensor_release(bo);
    ag_tensor_release(iz);
    ag_tensor_release(i);
    ag_tensor_release(srct);
    ag_tensor_release(src42);
    ag_tensor_release(z);
}

static void scatter_add_errors(void)
{
    int64_t s34[2] = {3, 4}, s13[2] = {1, 3}, s12[2] = {1, 2};
    ag_tensor *z, *i, *src, *r = NULL, *s64;
    OK(ag_zeros(&z, AG_FLOAT32, s34, 2));
    i = mk(AG_INT64, s13, 2, (double[]){0, 0, 3});
    OK(ag_ones(&src, AG_FLOAT32, s12, 2));
    FAILS(AG_ESHAPE, ag_scatter_add(&r, z, 1, i, src));
    ERR_HAS("Expected index [1, 3] to be smaller than self [3, 4] apart from dimension 1 and to "
            "be smaller size than src [1, 2]");
    ag_tensor_release(src);
    OK(ag_ones(&s64, AG_FLOAT64, s13, 2));
    FAILS(AG_EDTYPE, ag_scatter_add(&r, z, 1, i, s64));
    ERR_HAS("Expected self.dtype to be equal to src.dtype");
    ag_tensor_release(s64);
    ag_tensor_release(i);
    OK(ag_ones(&src, AG_FLOAT32, s13, 2));
    i = mk(AG_INT64, s13, 2, (double[]){0, 4, 0});
    FAILS(AG_ERANGE, ag_scatter_add(&r, z, 1, i, src));
    ERR_HAS("index 4 is out of bounds for dimension 1 with size 4");
    ag_tensor_release(i);
    i = mk(AG_INT64, s13, 2, (double[]){0, -1, 0});
    FAILS(AG_ERANGE, ag_scatter_add(&r, z, 1, i, src));
    ag_tensor_release(i);
    i = vec(AG_INT64, 3, (double[]){0, 0, 1});
    FAILS(AG_ESHAPE, ag_scatter_add(&r, z, 1, i, src));
    ERR_HAS("Index tensor must have the same number of dimensions as self tensor");
    ag_tensor_release(i);
    /* an empty index changes nothing, whatever its shape */
    OK(ag_zeros(&i, AG_INT64, (int64_t[]){0}, 1));
    OK(ag_scatter_add(&r, z, 1, i, src));
    check_shape("empty scatter", r, s34, 2);
    ag_tensor_release(r);
    ag_tensor_release(i);
    ag_tensor_release(src);
    ag_tensor_release(z);
}

/* Scatters accumulate in index order whatever the thread count: bitwise equal to a
 * sequential float32 sum, with 1 and 4 threads. */
static void scatter_determinism(void)
{
    enum { R = 4, C = 1000, K = 60 };
    static double idx[K * C], src[K * C];
    uint64_t st = 12345;
    for (int k = 0; k < K * C; k++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        idx[k] = (double)((st >> 33) % R);
        src[k] = (double)(float)((double)((st >> 11) & 0xfffff) / 1048576.0 * 2 - 1) * 1e3;
    }
    float want[R * C];
    memset(want, 0, sizeof want);
    for (int k = 0; k < K; k++)
        for (int c = 0; c < C; c++) want[(int)idx[k * C + c] * C + c] += (float)src[k * C + c];
    int64_t sk[2] = {K, C}, sr[2] = {R, C};
    ag_tensor *i = mk(AG_INT64, sk, 2, idx), *s = mk(AG_FLOAT32, sk, 2, src), *z, *r;
    OK(ag_zeros(&z, AG_FLOAT32, sr, 2));
    for (int threads = 1; threads <= 4; threads += 3) {
        OK(ag_set_num_threads(threads));
        OK(ag_scatter_add(&r, z, 0, i, s));
        float got[R * C];
        OK(ag_tensor_copy_data(got, sizeof got, r));
        CHECK(memcmp(got, want, sizeof got) == 0);
        ag_tensor_release(r);
    }
    /* One destination, a long index: zeros(1).scatter_add(0, zeros(K*C), src) */
    int64_t sn[1] = {K * C}, s1[1] = {1};
    ag_tensor *i0, *s1d, *z1;
    OK(ag_zeros(&i0, AG_INT64, sn, 1));
    s1d = mk(AG_FLOAT32, sn, 1, src);
    OK(ag_zeros(&z1, AG_FLOAT32, s1, 1));
    float acc = 0;
    for (int k = 0; k < K * C; k++) acc += (float)src[k];
    OK(ag_scatter_add(&r, z1, 0, i0, s1d));
    float got1;
    OK(ag_tensor_copy_data(&got1, sizeof got1, r));
    CHECK(memcmp(&got1, &acc, sizeof acc) == 0);
    ag_tensor_release(r);
    OK(ag_set_num_threads(0));
    ag_tensor_release(i0);
    ag_tensor_release(s1d);
    ag_tensor_release(z1);
    ag_tensor_release(i);
    ag_tensor_release(s);
    ag_tensor_release(z);
}

/* Large enough to run in parallel chunks: index_select and gather of a transposed self
 * against a direct computation. */
static void large_gathers(void)
{
    enum { R = 300, C = 400, M = 700 };
    static double xd[R * C], id[M], want[M * R];
    for (int k = 0; k < R * C; k++) xd[k] = k % 1013;
    for (int k = 0; k < M; k++) id[k] = (k * 7919) % C;
    int64_t sx[2] = {R, C}, sm[1] = {M};
    ag_tensor *x = mk(AG_FLOAT64, sx, 2, xd), *xt, *i = mk(AG_INT64, sm, 1, id), *r;
    OK(ag_transpose(&xt, x, 0, 1)); /* [C, R], non-contiguous */
    /* xt.index_select(0, i)[m][r] = x[r][i[m]] */
    for (int m = 0; m < M; m++)
        for (int q = 0; q < R; q++) want[m * R + q] = xd[q * C + (int)id[m]];
    OK(ag_index_select(&r, xt, 0, i));
    check_values("large index_select", r, want, M * R, 0);
    ag_tensor_release(r);
    /* x.gather(1, i.expand(R, M))[r][m] = x[r][i[m]] */
    ag_tensor *ie;
    OK(ag_expand(&ie, i, (int64_t[]){R, M}, 2));
    OK(ag_gather(&r, x, 1, ie));
    for (int q = 0; q < R; q++)
        for (int m = 0; m < M; m++) want[q * M + m] = xd[q * C + (int)id[m]];
    check_values("large gather", r, want, M * R, 0);
    ag_tensor_release(r);
    ag_tensor_release(ie);
    ag_tensor_release(i);
    ag_tensor_release(xt);
    ag_tensor_release(x);
}

/* ---- cat / stack ---- */
static void cat_values(void)
{
    int64_t s22[2] = {2, 2}, s23[2] = {2, 3}, s0[1] = {0};
    ag_tensor *a = mk(AG_FLOAT32, s22, 2, (double[]){0, 1, 2, 3});
    ag_tensor *b = mk(AG_INT64, s23, 2, (double[]){0, 1, 2, 3, 4, 5});
    ag_tensor *at, *e0, *e64, *r;
    /* cat([a, b], 1): float32 and int64 promote to float32 */
    OK(ag_cat(&r, (ag_tensor *[]){a, b}, 2, 1));
    check_dtype(r, AG_FLOAT32);
    check_values("cat dim 1", r, (double[]){0, 1, 0, 1, 2, 2, 3, 3, 4, 5}, 10, 0);
    CHECK_STR(grad_fn_name(r), "");
    ag_tensor_release(r);
    /* cat([a.t(), zeros(0), a]): a non-contiguous input; a 1-d empty one is skipped */
    OK(ag_transpose(&at, a, 0, 1));
    OK(ag_zeros(&e0, AG_FLOAT32, s0, 1));
    OK(ag_cat(&r, (ag_tensor *[]){at, e0, a}, 3, 0));
    int64_t s42[2] = {4, 2};
    check_shape("cat skip", r, s42, 2);
    check_values("cat skip", r, (double[]){0, 2, 1, 3, 0, 1, 2, 3}, 8, 0);
    ag_tensor_release(r);
    /* cat([zeros(0, dtype=float64), a]) is float64: skipped inputs still promote */
    OK(ag_zeros(&e64, AG_FLOAT64, s0, 1));
    OK(ag_cat(&r, (ag_tensor *[]){e64, a}, 2, 1));
    check_dtype(r, AG_FLOAT64);
    check_shape("cat skip dim", r, s22, 2);
    ag_tensor_release(r);
    /* all skipped: cat([zeros(0), zeros(0)], 5) is [0] (dim is not checked) */
    OK(ag_cat(&r, (ag_tensor *[]){e0, e0}, 2, 5));
    check_shape("cat of empties", r, s0, 1);
    ag_tensor_release(r);
    /* grad_fn and gradients, the skipped input's included (tensor([]) in PyTorch) */
    ag_tensor *x, *y, *s, *gx, *gy;
    OK(ag_zeros(&x, AG_FLOAT64, s0, 1));
    y = mk(AG_FLOAT32, s22, 2, (double[]){1, 2, 3, 4});
    OK(ag_tensor_set_requires_grad(x, 1));
    OK(ag_tensor_set_requires_grad(y, 1));
    OK(ag_cat(&r, (ag_tensor *[]){y, x, y}, 3, -1));
    CHECK_STR(grad_fn_name(r), "CatBackward0");
    check_dtype(r, AG_FLOAT64);
    ag_tensor *w = mk(AG_FLOAT64, (int64_t[]){2, 4}, 2, (double[]){1, 2, 3, 4, 5, 6, 7, 8}), *rw;
    OK(ag_mul(&rw, r, w));
    OK(ag_sum(&s, rw));
    OK(ag_backward(s, NULL, 0));
    OK(ag_tensor_grad(&gx, x));
    OK(ag_tensor_grad(&gy, y));
    CHECK(gx != NULL);
    if (gx) check_shape("skipped grad", gx, s0, 1);
    check_values("cat grad", gy, (double[]){4, 6, 12, 14}, 4, 0);
    ag_tensor_release(gx);
    ag_tensor_release(gy);
    ag_tensor_release(s);
    ag_tensor_release(rw);
    ag_tensor_release(w);
    ag_tensor_release(r);
    ag_tensor_release(x);
    ag_tensor_release(y);
    ag_tensor_release(at);
    ag_tensor_release(e0);
    ag_tensor_release(e64);
    ag_tensor_release(a);
    ag_tensor_release(b);
}

static void cat_errors(void)
{
    int64_t s22[2] = {2, 2}, s23[2] = {2, 3}, s2[1] = {2};
    ag_tensor *a, *b, *v, *z, *r = NULL, *e0;
    OK(ag_zeros(&a, AG_FLOAT32, s22, 2));
    OK(ag_zeros(&b, AG_FLOAT32, s23, 2));
    OK(ag_zeros(&v, AG_FLOAT32, s2, 1));
    OK(ag_zeros(&e0, AG_FLOAT32, (int64_t[]){0}, 1));
    OK(ag_tensor_scalar(&z, 1.0, AG_FLOAT32));
    FAILS(AG_ESHAPE, ag_cat(&r, (ag_tensor *[]){a, b}, 2, 0));
    ERR_HAS("Sizes of tensors must match except in dimension 0. Expected size 2 but got size 3 "
            "for tensor number 1 in the list.");
    FAILS(AG_ESHAPE, ag_cat(&r, (ag_tensor *[]){e0, a, b}, 3, 0));
    ERR_HAS("for tensor number 2 in the list.");
    FAILS(AG_ESHAPE, ag_cat(&r, (ag_tensor *[]){a, v}, 2, 0));
    ERR_HAS("Tensors must have same number of dimensions: got 2 and 1");
    FAILS(AG_ESHAPE, ag_cat(&r, (ag_tensor *[]){a, z}, 2, 0));
    ERR_HAS("zero-dimensional tensor (at position 1) cannot be concatenated");
    FAILS(AG_ERANGE, ag_cat(&r, (ag_tensor *[]){a, a}, 2, 2));
    FAILS(AG_ERANGE, ag_cat(&r, (ag_tensor *[]){e0, a}, 2, -3));
    FAILS(AG_EINVAL, ag_cat(&r, (ag_tensor *[]){a}, 0, 0));
    /* stack */
    FAILS(AG_ESHAPE, ag_stack(&r, (ag_tensor *[]){a, b}, 2, 0));
    ERR_HAS("stack expects each tensor to be equal size, but got [2, 2] at entry 0 and [2, 3] at "
            "entry 1");
    FAILS(AG_ERANGE, ag_stack(&r, (ag_tensor *[]){a, a}, 2, 3));
    CHECK(r == NULL);
    ag_tensor_release(a);
    ag_tensor_release(b);
    ag_tensor_release(v);
    ag_tensor_release(z);
    ag_tensor_release(e0);
}

static void stack_values(void)
{
    int64_t s22[2] = {2, 2};
    ag_tensor *a = mk(AG_FLOAT32, s22, 2, (double[]){0, 1, 2, 3}), *at, *ai, *r;
    OK(ag_transpose(&at, a, 0, 1));
    /* torch.stack([a, a.t()], -1) */
    OK(ag_stack(&r, (ag_tensor *[]){a, at}, 2, -1));
    int64_t s222[3] = {2, 2, 2};
    check_shape("stack -1", r, s222, 3);
    check_values("stack -1", r, (double[]){0, 0, 1, 2, 2, 1, 3, 3}, 8, 0);
    ag_tensor_release(r);
    /* torch.stack([a, a.t().long()], 1): promotes to float32 */
    OK(ag_to_dtype(&ai, at, AG_INT64));
    OK(ag_stack(&r, (ag_tensor *[]){a, ai}, 2, 1));
    check_dtype(r, AG_FLOAT32);
    check_values("stack 1", r, (double[]){0, 1, 0, 2, 2, 3, 1, 3}, 8, 0);
    ag_tensor_release(r);
    /* stack of 0-d tensors, and grad_fn */
    ag_tensor *p, *q;
    OK(ag_tensor_scalar(&p, 1.0, AG_FLOAT64));
    OK(ag_tensor_scalar(&q, 2.0, AG_FLOAT64));
    OK(ag_tensor_set_requires_grad(q, 1));
    OK(ag_stack(&r, (ag_tensor *[]){p, q, p}, 3, 0));
    CHECK_STR(grad_fn_name(r), "StackBackward0");
    check_values("stack 0-d", r, (double[]){1, 2, 1}, 3, 0);
    ag_tensor_release(r);
    ag_tensor_release(p);
    ag_tensor_release(q);
    ag_tensor_release(ai);
    ag_tensor_release(at);
    ag_tensor_release(a);
}

/* ---- split / chunk ---- */
static void split_values(void)
{
    int64_t s35[2] = {3, 5};
    double d[15];
    for (int k = 0; k < 15; k++) d[k] = k;
    ag_tensor *x = mk(AG_FLOAT32, s35, 2, d), *p[8];
    OK(ag_tensor_set_requires_grad(x, 1));
    size_t n;
    /* x.split(2, 1): [3, 2], [3, 2], [3, 1], views sharing one SplitBackward0 */
    OK(ag_split_count(&n, x, 2, 1));
    CHECK(n == 3);
    OK(ag_split(p, 3, x, 2, 1));
    int64_t s32[2] = {3, 2}, s31[2] = {3, 1};
    check_shape("split 0", p[0], s32, 2);
    check_shape("split 2", p[2], s31, 2);
    check_values("split 1", p[1], (double[]){2, 3, 7, 8, 12, 13}, 6, 0);
    check_values("split 2", p[2], (double[]){4, 9, 14}, 3, 0);
    for (int k = 0; k < 3; k++) {
        int shares;
        OK(ag_tensor_shares_storage(&shares, p[k], x));
        CHECK(shares);
        CHECK_STR(grad_fn_name(p[k]), "SplitBackward0");
    }
    ag_node *n0, *n2;
    OK(ag_tensor_grad_fn(&n0, p[0]));
    OK(ag_tensor_grad_fn(&n2, p[2]));
    CHECK(n0 == n2);
    ag_node_release(n0);
    ag_node_release(n2);
    /* only piece 1 used: p[1].sum().backward() gives ones in columns 2..3 */
    ag_tensor *s, *g;
    OK(ag_sum(&s, p[1]));
    OK(ag_backward(s, NULL, 0));
    OK(ag_tensor_grad(&g, x));
    check_values("split grad", g, (double[]){0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0}, 15, 0);
    ag_tensor_release(g);
    ag_tensor_release(s);
    for (int k = 0; k < 3; k++) ag_tensor_release(p[k]);
    /* split_size larger than the dim: one piece; split of an empty dim: one piece */
    OK(ag_split_count(&n, x, 7, 1));
    CHECK(n == 1);
    FAILS(AG_EINVAL, ag_split(p, 2, x, 7, 1));
    OK(ag_split(p, 1, x, 7, -1));
    check_shape("split whole", p[0], s35, 2);
    ag_tensor_release(p[0]);
    ag_tensor *e;
    int64_t s30[2] = {3, 0};
    OK(ag_zeros(&e, AG_FLOAT32, s30, 2));
    OK(ag_split_count(&n, e, 0, 1));
    CHECK(n == 1);
    /* x.chunk(2, 1): [3, 3], [3, 2]; x.chunk(4, 1): 3 pieces; x.chunk(6, 1): 5 pieces */
    OK(ag_chunk_count(&n, x, 2, 1));
    CHECK(n == 2);
    FAILS(AG_EINVAL, ag_chunk(p, ((size_t)1 << 32) + 2, x, 2, 1)); /* not cut to an int */
    CHECK(strstr(ag_last_error(), "n_outs is 4294967298: at most"));
    OK(ag_chunk(p, 2, x, 2, 1));
    check_values("chunk 1", p[1], (double[]){3, 4, 8, 9, 13, 14}, 6, 0);
    CHECK_STR(grad_fn_name(p[1]), "SplitBackward0");
    ag_tensor_release(p[0]);
    ag_tensor_release(p[1]);
    OK(ag_chunk_count(&n, x, 4, 1));
    CHECK(n == 3);
    OK(ag_chunk_count(&n, x, 6, 1));
    CHECK(n == 5);
    OK(ag_chunk_count(&n, x, 3, 0));
    CHECK(n == 3);
    /* zeros(3, 0).chunk(3, 1): three empty pieces under SplitWithSizesBackward0 */
    OK(ag_tensor_set_requires_grad(e, 1));
    OK(ag_chunk_count(&n, e, 3, 1));
    CHECK(n == 3);
    OK(ag_chunk(p, 3, e, 3, 1));
    check_shape("empty chunk", p[2], s30, 2);
    CHECK_STR(grad_fn_name(p[2]), "SplitWithSizesBackward0");
    for (int k = 0; k < 3; k++) ag_tensor_release(p[k]);
    /* errors */
    ag_tensor *z;
    OK(ag_tensor_scalar(&z, 1.0, AG_FLOAT32));
    FAILS(AG_ESHAPE, ag_split_count(&n, z, 1, 0));
    ERR_HAS("split expects at least a 1-dimensional tensor");
    FAILS(AG_ESHAPE, ag_chunk_count(&n, z, 1, 0));
    FAILS(AG_EINVAL, ag_split_count(&n, x, 0, 1));
    ERR_HAS("split_size can only be 0 if dimension size is 0, but got dimension size of 5");
    FAILS(AG_EINVAL, ag_split_count(&n, x, -1, 1));
    FAILS(AG_EINVAL, ag_chunk_count(&n, x, 0, 1));
    ERR_HAS("chunk expects `chunks` to be greater than 0, got: 0");
    FAILS(AG_ERANGE, ag_split_count(&n, x, 2, 2));
    FAILS(AG_EINVAL, ag_chunk(p, 3, x, 2, 1));
    ag_tensor_release(z);
    ag_tensor_release(e);
    ag_tensor_release(x);
}

/* ---- gradient checks ---- */
typedef struct op_ctx {
    int which;
    int64_t dim, arg;
    int square; /* square the result: makes the second-order check non-trivial */
} op_ctx;

enum { OP_INDEX_SELECT, OP_GATHER, OP_SCATTER_ADD, OP_CAT, OP_STACK, OP_SPLIT, OP_CHUNK,
       OP_INDEX_SELECT_T };

/* Sums pieces 0 and 2 of a split/chunk into one output (piece 1 and any later unused). */
static int use_pieces(ag_tensor **out, ag_tensor **p, size_t n)
{
    ag_tensor *f0, *f2;
    if (ag_flatten(&f0, p[0], 0, -1)) return 1;
    if (ag_flatten(&f2, p[n - 1], 0, -1)) return 1;
    int rc = ag_cat(out, (ag_tensor *[]){f0, f2}, 2, 0);
    ag_tensor_release(f0);
    ag_tensor_release(f2);
    return rc;
}

static int call_op(ag_tensor **out, ag_tensor *const *in, void *vctx)
{
    const op_ctx *c = vctx;
    ag_tensor *r = NULL, *p[8], *t = NULL;
    int rc = 0;
    size_t n;
    switch (c->which) {
    case OP_INDEX_SELECT: rc = ag_index_select(&r, in[0], c->dim, in[1]); break;
    case OP_INDEX_SELECT_T: /* through a transpose: a non-contiguous self */
        if ((rc = ag_transpose(&t, in[0], 0, 1))) return rc;
        rc = ag_index_select(&r, t, c->dim, in[1]);
        ag_tensor_release(t);
        break;
    case OP_GATHER: rc = ag_gather(&r, in[0], c->dim, in[1]); break;
    case OP_SCATTER_ADD: rc = ag_scatter_add(&r, in[0], c->dim, in[1], in[2]); break;
    case OP_CAT: rc = ag_cat(&r, in, (size_t)c->arg, c->dim); break;
    case OP_STACK: rc = ag_stack(&r, in, (size_t)c->arg, c->dim); break;
    case OP_SPLIT:
    case OP_CHUNK:
        rc = c->which == OP_SPLIT ? ag_split_count(&n, in[0], c->arg, c->dim)
                                  : ag_chunk_count(&n, in[0], c->arg, c->dim);
        if (rc || n > 8) return rc ? rc : 1;
        rc = c->which == OP_SPLIT ? ag_split(p, n, in[0], c->arg, c->dim)
                                  : ag_chunk(p, n, in[0], c->arg, c->dim);
        if (rc) return rc;
        rc = use_pieces(&r, p, n);
        for (size_t k = 0; k < n; k++) ag_tensor_release(p[k]);
        break;
    }
    if (rc) return rc;
    if (!c->square) {
        *out = r;
        return 0;
    }
    rc = ag_mul(out, r, r);
    ag_tensor_release(r);
    return rc;
}

static void grads(void)
{
    int64_t s34[2] = {3, 4}, s5[1] = {5}, s32[2] = {3, 2}, s23[2] = {2, 3}, s25[2] = {2, 5};
    int64_t s22[2] = {2, 2}, s0[1] = {0}, s24[2] = {2, 4}, s36[2] = {3, 6}, s43[2] = {4, 3};
    double isel[5] = {3, 0, 3, 1, 0};
    double igat[6] = {0, 0, 3, 1, 2, 2};
    double isct[6] = {0, 0, 3, 1, 0, 1};

    gc_input sel[2] = {{s34, 2, NULL, 0, 0, 1, 0}, {s5, 1, isel, 0, 0, 0, AG_INT64}};
    for (int sq = 0; sq < 2; sq++) {
        op_ctx c1 = {OP_INDEX_SELECT, 1, 0, sq}, c0 = {OP_INDEX_SELECT, 0, 0, sq};
        double i0[5] = {2, 2, 0, 1, 0};
        gc_input sel0[2] = {{s34, 2, NULL, 0, 0, 1, 0}, {s5, 1, i0, 0, 0, 0, AG_INT64}};
        CHECK(gradcheck("index_select dim 1", call_op, sel, 2, &c1));
        CHECK(gradcheck("index_select dim 0", call_op, sel0, 2, &c0));
        CHECK(gradgradcheck("index_select", call_op, sel, 2, &c1));
        op_ctx ct = {OP_INDEX_SELECT_T, 1, 0, sq};
        gc_input selt[2] = {{s43, 2, NULL, 0, 0, 1, 0}, {s5, 1, isel, 0, 0, 0, AG_INT64}};
        CHECK(gradcheck("index_select transposed", call_op, selt, 2, &ct));

        op_ctx cg = {OP_GATHER, 1, 0, sq};
        gc_input gat[2] = {{s34, 2, NULL, 0, 0, 1, 0}, {s32, 2, igat, 0, 0, 0, AG_INT64}};
        CHECK(gradcheck("gather", call_op, gat, 2, &cg));
        CHECK(gradgradcheck("gather", call_op, gat, 2, &cg));

        /* src [2, 5] larger than the index [2, 3] */
        op_ctx cs = {OP_SCATTER_ADD, 1, 0, sq};
        gc_input sct[3] = {{s24, 2, NULL, 0, 0, 1, 0},
                           {s23, 2, isct, 0, 0, 0, AG_INT64},
                           {s25, 2, NULL, 0, 0, 1, 0}};
        CHECK(gradcheck("scatter_add", call_op, sct, 3, &cs));
        CHECK(gradgradcheck("scatter_add", call_op, sct, 3, &cs));

        /* cat of three along dims 0 and 1, with a skipped 1-d empty input */
        op_ctx cc1 = {OP_CAT, 1, 3, sq}, cc0 = {OP_CAT, 0, 4, sq};
        gc_input cat1[3] = {{s22, 2, NULL, 0, 0, 1, 0}, {s23, 2, NULL, 0, 0, 1, 0},
                            {s22, 2, NULL, 0, 0, 1, 0}};
        gc_input cat0[4] = {{s23, 2, NULL, 0, 0, 1, 0}, {s0, 1, NULL, 0, 0, 1, 0},
                            {s23, 2, NULL, 0, 0, 0, 0}, {s23, 2, NULL, 0, 0, 1, 0}};
        CHECK(gradcheck("cat dim 1", call_op, cat1, 3, &cc1));
        CHECK(gradcheck("cat dim 0 skip", call_op, cat0, 4, &cc0));
        CHECK(gradgradcheck("cat", call_op, cat1, 3, &cc1));

        op_ctx cst = {OP_STACK, -1, 3, sq};
        gc_input stk[3] = {{s23, 2, NULL, 0, 0, 1, 0}, {s23, 2, NULL, 0, 0, 0, 0},
                           {s23, 2, NULL, 0, 0, 1, 0}};
        CHECK(gradcheck("stack", call_op, stk, 3, &cst));
        CHECK(gradgradcheck("stack", call_op, stk, 3, &cst));

        /* 0-d operands index as [1]: tensor(x).index_select(0, [0]), tensor(x).gather(0, [0, 0]) */
        double z1[1] = {0}, z2[2] = {0, 0};
        int64_t s1[1] = {1}, s2[1] = {2};
        gc_input sel00[2] = {{NULL, 0, NULL, 0, 0, 1, 0}, {s1, 1, z1, 0, 0, 0, AG_INT64}};
        gc_input gat00[2] = {{NULL, 0, NULL, 0, 0, 1, 0}, {s2, 1, z2, 0, 0, 0, AG_INT64}};
        op_ctx c00 = {OP_INDEX_SELECT, 0, 0, sq}, cg00 = {OP_GATHER, 0, 0, sq};
        CHECK(gradcheck("index_select 0-d", call_op, sel00, 2, &c00));
        CHECK(gradgradcheck("index_select 0-d", call_op, sel00, 2, &c00));
        CHECK(gradcheck("gather 0-d", call_op, gat00, 2, &cg00));
        CHECK(gradgradcheck("gather 0-d", call_op, gat00, 2, &cg00));

        /* pieces 0 and last used, the middle ones not: their gradients are zeros */
        op_ctx csp = {OP_SPLIT, 1, 2, sq}, cch = {OP_CHUNK, 1, 4, sq}, csp0 = {OP_SPLIT, 0, 1, sq};
        gc_input spl[1] = {{s36, 2, NULL, 0, 0, 1, 0}};
        CHECK(gradcheck("split", call_op, spl, 1, &csp));
        CHECK(gradcheck("split dim 0", call_op, spl, 1, &csp0));
        CHECK(gradcheck("chunk", call_op, spl, 1, &cch));
        CHECK(gradgradcheck("split", call_op, spl, 1, &csp));
    }
}

int main(void)
{
    index_select_values();
    index_select_errors();
    gather_values();
    gather_errors();
    scatter_add_values();
    scatter_add_errors();
    scatter_determinism();
    large_gathers();
    cat_values();
    cat_errors();
    stack_values();
    split_values();
    grads();
    return harness_finish("test_index");
}
