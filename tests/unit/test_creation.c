/*
 * test_creation.c: tensors from data, constants, ranges, identity, the _like functions and
 * random numbers (seeding, streams, thread-count independence, ranges, rough statistics),
 * and the queries that read a tensor back (item, copy_*, shape, strides, size ...).
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "harness.h"

static void check_shape(const char *what, const ag_tensor *t, ag_dtype dt, const int64_t *shape,
                        size_t nd)
{
    ag_dtype got_dt;
    size_t got_nd = 99;
    int64_t sh[AG_MAX_DIMS], numel = -1, want_numel = 1;
    OK(ag_tensor_dtype(&got_dt, t));
    OK(ag_tensor_ndim(&got_nd, t));
    OK(ag_tensor_shape(sh, AG_MAX_DIMS, t));
    OK(ag_tensor_numel(&numel, t));
    int bad = got_dt != dt || got_nd != nd;
    for (size_t i = 0; i < nd; i++) {
        want_numel *= shape[i];
        if (!bad) bad = sh[i] != shape[i];
    }
    if (bad || numel != want_numel) {
        fprintf(stderr, "%s: dtype %d ndim %zu numel %lld, expected dtype %d ndim %zu numel %lld\n",
                what, (int)got_dt, got_nd, (long long)numel, (int)dt, nd, (long long)want_numel);
        harness_failures++;
    }
}

static int requires_grad(const ag_tensor *t)
{
    int r = -1;
    OK(ag_tensor_requires_grad(&r, t));
    return r;
}

/* ---- from data ---- */
static void from_data(void)
{
    int64_t s23[2] = {2, 3};
    ag_tensor *t;
    float f[6] = {1.5f, -2, 3, 0.25f, 5, 6};
    double d[6] = {1.5, -2, 3, 0.25, 5, 6};
    int64_t i[6] = {1, -2, 3, INT64_MAX, INT64_MIN, 6};
    uint8_t b[6] = {1, 0, 1, 1, 0, 0};
    const void *data[4] = {f, d, i, b};
    const size_t es[4] = {4, 8, 8, 1};
    for (int dt = 0; dt < 4; dt++) {
        OK(ag_tensor_from_data(&t, data[dt], (ag_dtype)dt, s23, 2));
        check_shape("from_data", t, (ag_dtype)dt, s23, 2);
        unsigned char back[48];
        OK(ag_tensor_copy_data(back, sizeof back, t));
        CHECK(memcmp(back, data[dt], 6 * es[dt]) == 0);
        int req = requires_grad(t), leaf = 0;
        OK(ag_tensor_is_leaf(&leaf, t));
        CHECK(req == 0 && leaf == 1);
        ag_tensor_release(t);
    }
    /* the data are copied */
    OK(ag_tensor_from_data(&t, d, AG_FLOAT64, s23, 2));
    d[0] = 100;
    double got[6], v;
    OK(ag_tensor_copy_f64(got, 6, t));
    CHECK(got[0] == 1.5);
    d[0] = 1.5;
    ag_tensor_release(t);

    /* from_f64 converts: all four dtypes */
    double src[4] = {1.0, -2.0, 0.0, 3.0};
    int64_t s4[1] = {4};
    for (int dt = 0; dt < 4; dt++) {
        OK(ag_tensor_from_f64(&t, src, (ag_dtype)dt, s4, 1));
        check_shape("from_f64", t, (ag_dtype)dt, s4, 1);
        double want_b[4] = {1, 1, 0, 1};
        check_values("from_f64", t, dt == AG_BOOL ? want_b : src, 4, 0);
        ag_tensor_release(t);
    }
    double frac[3] = {0.1, -0.5, 1e-30};
    int64_t s3[1] = {3};
    OK(ag_tensor_from_f64(&t, frac, AG_FLOAT32, s3, 1));
    float fb[3];
    OK(ag_tensor_copy_data(fb, sizeof fb, t));
    CHECK(fb[0] == 0.1f && fb[1] == -0.5f && fb[2] == 1e-30f);
    ag_tensor_release(t);
    OK(ag_tensor_from_f64(&t, frac, AG_BOOL, s3, 1)); /* nonzero is true */
    double ones[3] = {1, 1, 1};
    check_values("from_f64 bool", t, ones, 3, 0);
    ag_tensor_release(t);
    double big[2] = {9007199254740992.0, -9007199254740992.0}; /* +-2^53 are exact */
    int64_t s2[1] = {2};
    OK(ag_tensor_from_f64(&t, big, AG_INT64, s2, 1));
    int64_t ib[2];
    OK(ag_tensor_copy_i64(ib, 2, t));
    CHECK(ib[0] == 9007199254740992LL && ib[1] == -9007199254740992LL);
    ag_tensor_release(t);

    /* bool bytes other than 0 and 1 are true, stored as 1: the tensor sums, compares and
     * converts as one of true values (a byte 2 summed to 2 and compared unequal to true) */
    {
        uint8_t raw[3] = {2, 0, 255};
        ag_tensor *bt, *sum, *eq;
        int64_t s3b[1] = {3};
        OK(ag_tensor_from_data(&bt, raw, AG_BOOL, s3b, 1));
        check_values("bool bytes", bt, (double[]){1, 0, 1}, 3, 0);
        OK(ag_sum(&sum, bt));
        check_values("bool bytes summed", sum, (double[]){2}, 1, 0);
        OK(ag_eq_scalar(&eq, bt, 1.0));
        check_values("bool bytes == true", eq, (double[]){1, 0, 1}, 3, 0);
        ag_tensor_release(eq);
        ag_tensor_release(sum);
        ag_tensor_release(bt);
    }
    /* a double that is not an int64 shows all its digits (2^63 is not 9.22337e+18) */
    {
        double two63[1] = {9223372036854775808.0};
        int64_t s1[1] = {1};
        FAILS_OUT(AG_EINVAL, ag_tensor_from_f64, two63, AG_INT64, s1, 1);
        CHECK(strstr(ag_last_error(), "(9223372036854775808)"));
    }

    /* errors: int64 must be integral; sizes; dtypes; NULLs */
    double nonint[2] = {1.0, 2.5}, nan2[2] = {1.0, NAN};
    FAILS_OUT(AG_EINVAL, ag_tensor_from_f64, nonint, AG_INT64, s2, 1);
    CHECK(strstr(ag_last_error(), "ag_tensor_from_f64: ") == ag_last_error());
    FAILS_OUT(AG_EINVAL, ag_tensor_from_f64, nan2, AG_INT64, s2, 1);
    int64_t neg[2] = {2, -1}, nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    FAILS_OUT(AG_EINVAL, ag_tensor_from_f64, d, AG_FLOAT64, neg, 2);
    FAILS_OUT(AG_EINVAL, ag_tensor_from_data, d, AG_FLOAT64, neg, 2);
    FAILS_OUT(AG_ERANGE, ag_tensor_from_f64, d, AG_FLOAT64, nine, 9);
    FAILS_OUT(AG_ERANGE, ag_tensor_from_data, d, AG_FLOAT64, nine, 9);
    FAILS_OUT(AG_EDTYPE, ag_tensor_from_f64, d, (ag_dtype)4, s2, 1);
    FAILS_OUT(AG_EDTYPE, ag_tensor_from_data, d, (ag_dtype)-1, s2, 1);
    FAILS_OUT(AG_EINVAL, ag_tensor_from_f64, NULL, AG_FLOAT64, s2, 1);
    FAILS_OUT(AG_EINVAL, ag_tensor_from_data, d, AG_FLOAT64, NULL, 1);
    FAILS(AG_EINVAL, ag_tensor_from_data(NULL, d, AG_FLOAT64, s2, 1));

    /* 0-d (shape may be NULL) and empty shapes */
    double seven = 7;
    OK(ag_tensor_from_f64(&t, &seven, AG_INT64, NULL, 0));
    check_shape("0-d", t, AG_INT64, NULL, 0);
    int64_t iv = 0;
    OK(ag_tensor_item_int64(&iv, t));
    CHECK(iv == 7);
    ag_tensor_release(t);
    int64_t s03[2] = {0, 3}, s200[3] = {2, 0, 0};
    OK(ag_tensor_from_f64(&t, d, AG_FLOAT32, s03, 2));
    check_shape("empty", t, AG_FLOAT32, s03, 2);
    OK(ag_tensor_copy_f64(NULL, 0, t)); /* nothing to copy */
    ag_tensor_release(t);
    OK(ag_tensor_from_data(&t, d, AG_INT64, s200, 3));
    check_shape("empty", t, AG_INT64, s200, 3);
    ag_tensor_release(t);

    /* ag_tensor_scalar */
    static const struct {
        ag_dtype dt;
        double in, out;
    } sc[] = {{AG_FLOAT32, 0.1, (float)0.1}, {AG_FLOAT64, -2.5, -2.5}, {AG_INT64, 2.7, 2},
              {AG_INT64, -2.7, -2}, {AG_BOOL, 0.5, 1}, {AG_BOOL, 0, 0}};
    for (size_t k = 0; k < sizeof sc / sizeof sc[0]; k++) {
        OK(ag_tensor_scalar(&t, sc[k].in, sc[k].dt));
        check_shape("scalar", t, sc[k].dt, NULL, 0);
        OK(ag_tensor_item(&v, t));
        CHECK_CLOSE(v, sc[k].out, 0);
        ag_tensor_release(t);
    }
    FAILS_OUT(AG_EDTYPE, ag_tensor_scalar, 1.0, (ag_dtype)9);
    FAILS(AG_EINVAL, ag_tensor_scalar(NULL, 1.0, AG_FLOAT32));

    /* ag_tensor_scalar_requires_grad: the same tensor, requiring grad or not */
    for (size_t k = 0; k < sizeof sc / sizeof sc[0]; k++) {
        for (int rg = 0; rg < 2; rg++) {
            int is_float = sc[k].dt == AG_FLOAT32 || sc[k].dt == AG_FLOAT64, flag = -1, leaf = -1;
            if (rg && !is_float) continue;
            OK(ag_tensor_scalar_requires_grad(&t, sc[k].in, sc[k].dt, rg ? 7 : 0));
            check_shape("scalar leaf", t, sc[k].dt, NULL, 0);
            OK(ag_tensor_item(&v, t));
            CHECK_CLOSE(v, sc[k].out, 0);
            OK(ag_tensor_requires_grad(&flag, t));
            CHECK(flag == rg);
            OK(ag_tensor_is_leaf(&leaf, t));
            CHECK(leaf == 1);
            ag_tensor_release(t);
        }
    }
    /* a leaf like any other: y = t * t accumulates 2t into t's .grad, twice over two passes */
    {
        ag_tensor *y, *g;
        OK(ag_tensor_scalar_requires_grad(&t, 1.5, AG_FLOAT64, 1));
        for (int pass = 1; pass <= 2; pass++) {
            OK(ag_mul(&y, t, t));
            OK(ag_backward(y, NULL, 0));
            ag_tensor_release(y);
            OK(ag_tensor_grad(&g, t));
            CHECK(g != NULL);
            if (g) {
                OK(ag_tensor_item(&v, g));
                CHECK_CLOSE(v, 3.0 * pass, 0);
                ag_tensor_release(g);
            }
        }
        ag_tensor_release(t);
    }
    /* Such a leaf shares one block with its meta (where .grad and its AccumulateGrad node
     * live): each part may outlive the others (the sanitizers and valgrind runs would see a
     * block freed too early, the leak checks one never freed). */
    {
        ag_tensor *d, *y, *g = NULL;
        OK(ag_tensor_scalar_requires_grad(&t, 1.5, AG_FLOAT32, 1));
        OK(ag_tensor_detach(&d, t)); /* a view of its memory outlives the leaf */
        ag_tensor_release(t);
        OK(ag_tensor_item(&v, d));
        CHECK(v == 1.5);
        ag_tensor_release(d);
        OK(ag_tensor_scalar_requires_grad(&t, 1.5, AG_FLOAT64, 1));
        OK(ag_mul(&y, t, t));
        OK(ag_backward(y, NULL, AG_RETAIN_GRAPH));
        OK(ag_tensor_grad(&g, t));
        ag_tensor_release(t); /* the graph holds the leaf, .grad its own reference */
        OK(ag_backward(y, NULL, 0)); /* accumulates into the leaf no handle names */
        ag_tensor_release(y);
        CHECK(g != NULL);
        if (g) {
            OK(ag_tensor_item(&v, g)); /* .grad was a sum taken in place: 3 + 3 */
            CHECK(v == 6.0);
            ag_tensor_release(g);
        }
        /* Its .grad, made in that block too (the room for one), may also outlive the leaf,
         * and a view of it the .grad; while one lives, the next .grad is made elsewhere. */
        ag_tensor *g1 = NULL, *g2 = NULL, *g3 = NULL, *gv = NULL;
        int64_t ver = -1;
        int rg = -1;
        OK(ag_tensor_scalar_requires_grad(&t, 2.0, AG_FLOAT32, 1));
        for (int pass = 0; pass < 3; pass++) {
            OK(ag_mul(&y, t, t)); /* d(t*t)/dt = 4 */
            OK(ag_backward(y, NULL, 0));
            ag_tensor_release(y);
            ag_tensor **slot = pass == 0 ? &g1 : pass == 1 ? &g2 : &g3;
            OK(ag_tensor_grad(slot, t));
            OK(ag_tensor_set_grad(t, NULL)); /* the next pass makes a new .grad */
            CHECK(*slot != NULL);
            if (!*slot) continue;
            OK(ag_tensor_item(&v, *slot));
            OK(ag_tensor_version(&ver, *slot));
            OK(ag_tensor_requires_grad(&rg, *slot));
            CHECK(v == 4.0 && ver == 0 && rg == 0);
            if (pass == 0) {
                OK(ag_tensor_detach(&gv, g1));
                ag_tensor_release(g1); /* the view keeps the room taken */
            }
            if (pass == 1) {
                ag_tensor_release(gv); /* the room is free again for pass 2 */
                OK(ag_mul_scalar_(g2, 2.0)); /* a .grad made elsewhere is a tensor as any */
                OK(ag_tensor_item(&v, g2));
                CHECK(v == 8.0);
            }
        }
        ag_tensor_release(t); /* g2 and g3 outlive it */
        OK(ag_tensor_item(&v, g3));
        CHECK(v == 4.0);
        ag_tensor_release(g3);
        ag_tensor_release(g2);
    }
    /* integer and bool leaves cannot require grad: nothing made, out untouched */
    FAILS_OUT(AG_EDTYPE, ag_tensor_scalar_requires_grad, 1.0, AG_INT64, 1);
    CHECK(strstr(ag_last_error(), "ag_tensor_scalar_requires_grad") != NULL);
    CHECK(strstr(ag_last_error(), "only Tensors of floating point dtype can require gradients "
                                  "(got int64)") != NULL);
    FAILS_OUT(AG_EDTYPE, ag_tensor_scalar_requires_grad, 1.0, AG_BOOL, 1);
    FAILS_OUT(AG_EDTYPE, ag_tensor_scalar_requires_grad, 1.0, (ag_dtype)9, 1);
    FAILS_OUT(AG_EDTYPE, ag_tensor_scalar_requires_grad, 1.0, (ag_dtype)9, 0);
    FAILS_OUT(AG_EINVAL, ag_tensor_scalar_requires_grad, NAN, AG_INT64, 0);
    /* the conversion is refused before requires_grad, as in torch.tensor(nan, dtype=int64,
     * requires_grad=True) */
    FAILS_OUT(AG_EINVAL, ag_tensor_scalar_requires_grad, NAN, AG_INT64, 1);
    FAILS(AG_EINVAL, ag_tensor_scalar_requires_grad(NULL, 1.0, AG_FLOAT32, 1));
}

static int freed_userdata;
static void count_free(void *userdata) { freed_userdata += *(int *)userdata; }
static int keep_grad(ag_tensor **new_grad, ag_tensor *grad, void *userdata)
{
    (void)new_grad, (void)grad, (void)userdata;
    return AG_OK;
}

/* A 0-d leaf requiring grad whose .grad a backward of t * t made (2 * value). */
static ag_tensor *squared_leaf(double value, ag_dtype dt)
{
    ag_tensor *t, *y;
    OK(ag_tensor_scalar_requires_grad(&t, value, dt, 1));
    OK(ag_mul(&y, t, t));
    OK(ag_backward(y, NULL, 0));
    ag_tensor_release(y);
    return t;
}

/* The last release of a 0-d leaf whose block nothing else holds frees the block at once
 * (tensor.c: leaf_block_free); anything else in or on the block keeps it, and each part
 * goes when its last holder does (the sanitizers and valgrind runs see a part freed early,
 * the leak checks one never freed). */
static void scalar_leaf_release(void)
{
    ag_tensor *t, *y, *g;
    double v;
    int one = 1;
    uint64_t h;
    /* its hooks go with it, once: after the graph that holds it, not before */
    OK(ag_tensor_scalar_requires_grad(&t, 2.0, AG_FLOAT32, 1));
    OK(ag_tensor_register_hook(&h, t, keep_grad, 0, &one, count_free));
    freed_userdata = 0;
    OK(ag_mul(&y, t, t));
    OK(ag_backward(y, NULL, 0)); /* .grad in the block's room */
    ag_tensor_release(t);
    CHECK(freed_userdata == 0); /* y's graph holds the leaf */
    ag_tensor_release(y);
    CHECK(freed_userdata == 1);
    /* a .grad held elsewhere, in the room or not, outlives the leaf */
    for (int elsewhere = 0; elsewhere < 2; elsewhere++) {
        t = squared_leaf(2.0, AG_FLOAT64);
        if (elsewhere) { /* a .grad of its own block, which only the meta holds */
            OK(ag_tensor_scalar(&g, 5.0, AG_FLOAT64));
            OK(ag_tensor_set_grad(t, g));
            ag_tensor_release(g);
            ag_tensor_release(t);
            continue;
        }
        OK(ag_tensor_grad(&g, t));
        ag_tensor_release(t);
        OK(ag_tensor_item(&v, g));
        CHECK(v == 4.0);
        ag_tensor_release(g);
    }
    /* a view of the leaf's .grad holds the room, and so the block, after leaf and .grad */
    t = squared_leaf(3.0, AG_FLOAT32);
    OK(ag_tensor_grad(&g, t));
    ag_tensor *gv;
    OK(ag_tensor_detach(&gv, g));
    ag_tensor_release(g);
    ag_tensor_release(t);
    OK(ag_tensor_item(&v, gv));
    CHECK(v == 6.0);
    ag_tensor_release(gv);
}

/* ag_memory_in_use follows the large blocks in use: up by a 1 MiB tensor, back down when it is
 * released (kept for reuse, the block no longer counts). */
static void memory_in_use(void)
{
    int64_t s[2] = {256, 1024};
    ag_tensor *t;
    uint64_t before = ag_memory_in_use();
    OK(ag_zeros(&t, AG_FLOAT32, s, 2));
    uint64_t during = ag_memory_in_use();
    CHECK(during >= before + (1u << 20) && during < before + (2u << 20));
    ag_tensor_release(t);
    CHECK(ag_memory_in_use() == before);
}

/* ---- constants ---- */
static void constants(void)
{
    int64_t s23[2] = {2, 3};
    ag_tensor *t;
    for (int dt = 0; dt < 4; dt++) {
        OK(ag_empty(&t, (ag_dtype)dt, s23, 2));
        check_shape("empty", t, (ag_dtype)dt, s23, 2);
        int c = 0;
        OK(ag_tensor_is_contiguous(&c, t));
        CHECK(c == 1);
        if (dt == AG_BOOL) { /* every byte a valid bool: all false */
            uint8_t raw[6] = {9, 9, 9, 9, 9, 9};
            OK(ag_tensor_copy_data(raw, sizeof raw, t));
            for (int k = 0; k < 6; k++) CHECK(raw[k] == 0);
        }
        ag_tensor_release(t);
        OK(ag_zeros(&t, (ag_dtype)dt, s23, 2));
        check_shape("zeros", t, (ag_dtype)dt, s23, 2);
        double z[6] = {0}, o[6] = {1, 1, 1, 1, 1, 1};
        check_values("zeros", t, z, 6, 0);
        ag_tensor_release(t);
        OK(ag_ones(&t, (ag_dtype)dt, s23, 2));
        check_values("ones", t, o, 6, 0);
        ag_tensor_release(t);
    }
    static const struct {
        ag_dtype dt;
        double in, out;
    } fc[] = {{AG_FLOAT32, 1.0 / 3, (float)(1.0 / 3)}, {AG_FLOAT64, -1e300, -1e300},
              {AG_FLOAT64, 5e-324, 5e-324},            {AG_INT64, -2.7, -2},
              {AG_BOOL, -0.5, 1},                      {AG_BOOL, 0.0, 0}};
    for (size_t k = 0; k < sizeof fc / sizeof fc[0]; k++) {
        OK(ag_full(&t, fc[k].dt, s23, 2, fc[k].in));
        double w[6];
        for (int i = 0; i < 6; i++) w[i] = fc[k].out;
        check_values("full", t, w, 6, 0);
        ag_tensor_release(t);
    }
    OK(ag_full(&t, AG_FLOAT32, NULL, 0, -INFINITY)); /* 0-d */
    check_shape("full 0-d", t, AG_FLOAT32, NULL, 0);
    double v = 0;
    OK(ag_tensor_item(&v, t));
    CHECK(isinf(v) && v < 0);
    ag_tensor_release(t);
    int64_t s0[1] = {0};
    OK(ag_ones(&t, AG_FLOAT64, s0, 1));
    check_shape("ones empty", t, AG_FLOAT64, s0, 1);
    ag_tensor_release(t);
    int64_t neg[2] = {2, -3}, nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    FAILS_OUT(AG_EINVAL, ag_zeros, AG_FLOAT32, neg, 2);
    FAILS_OUT(AG_EINVAL, ag_empty, AG_FLOAT32, neg, 2);
    FAILS_OUT(AG_EINVAL, ag_full, AG_FLOAT32, neg, 2, 1.0);
    FAILS_OUT(AG_ERANGE, ag_ones, AG_FLOAT32, nine, 9);
    FAILS_OUT(AG_EDTYPE, ag_ones, (ag_dtype)5, s23, 2);
    FAILS_OUT(AG_EINVAL, ag_ones, AG_FLOAT32, NULL, 2);

    /* _like: t's shape and dtype, never requiring grad */
    ag_tensor *src, *r;
    OK(ag_ones(&src, AG_FLOAT32, s23, 2));
    OK(ag_tensor_set_requires_grad(src, 1));
    OK(ag_zeros_like(&r, src));
    check_shape("zeros_like", r, AG_FLOAT32, s23, 2);
    CHECK(requires_grad(r) == 0);
    double z[6] = {0};
    check_values("zeros_like", r, z, 6, 0);
    ag_tensor_release(r);
    OK(ag_ones_like(&r, src));
    CHECK(requires_grad(r) == 0);
    ag_tensor_release(r);
    OK(ag_empty_like(&r, src));
    check_shape("empty_like", r, AG_FLOAT32, s23, 2);
    CHECK(requires_grad(r) == 0);
    ag_tensor_release(r);
    OK(ag_full_like(&r, src, 2.5));
    double w25[6] = {2.5, 2.5, 2.5, 2.5, 2.5, 2.5};
    check_values("full_like", r, w25, 6, 0);
    CHECK(requires_grad(r) == 0);
    ag_tensor_release(r);
    ag_tensor *tt; /* a transposed source gives a result laid out as it, as in PyTorch */
    OK(ag_t(&tt, src));
    OK(ag_ones_like(&r, tt));
    int64_t s32[2] = {3, 2}, st[2] = {0, 0};
    check_shape("ones_like of t", r, AG_FLOAT32, s32, 2);
    int c = 1;
    OK(ag_tensor_is_contiguous(&c, r));
    CHECK(c == 0);
    OK(ag_tensor_strides(st, 2, r));
    CHECK(st[0] == 1 && st[1] == 3);
    ag_tensor_release(r);
    ag_tensor_release(tt);
    ag_tensor_release(src);
    OK(ag_ones(&src, AG_INT64, s23, 2));
    OK(ag_full_like(&r, src, 3.9));
    double w3[6] = {3, 3, 3, 3, 3, 3};
    check_shape("full_like int64", r, AG_INT64, s23, 2);
    check_values("full_like int64", r, w3, 6, 0);
    ag_tensor_release(r);
    FAILS_OUT(AG_EINVAL, ag_zeros_like, NULL);
    ag_tensor_release(src);
}

/* ---- arange and eye ---- */
static void ranges(void)
{
    static const struct {
        ag_dtype dt;
        double start, end, step;
        int64_t n;
        double first, last;
    } cases[] = {
        {AG_FLOAT64, 0, 1, 0.3, 4, 0, 0.9},      /* torch.arange(0, 1, 0.3) */
        {AG_FLOAT64, 0, 1, 0.1, 10, 0, 0.9},     /* ceil(1 / 0.1) = 10 */
        {AG_FLOAT64, 1, 2.5, 0.5, 3, 1, 2},
        {AG_INT64, 5, 0, -2, 3, 5, 1},           /* [5, 3, 1] */
        {AG_INT64, 10, 0, -3, 4, 10, 1},         /* [10, 7, 4, 1] */
        {AG_FLOAT32, -1, 1, 0.5, 4, -1, 0.5},
        {AG_FLOAT32, 0, 5, 1, 5, 0, 4},
        {AG_INT64, 3, 3, 1, 0, 0, 0},            /* empty */
        {AG_FLOAT64, 3, 3, -1, 0, 0, 0},
        /* int64 ranges are computed in int64, as PyTorch does: bounds and step truncate */
        {AG_INT64, 0.5, 3.2, 1, 3, 0, 2},        /* [0, 1, 2] */
        {AG_INT64, -0.5, 3, 1, 3, 0, 2},         /* [0, 1, 2] */
        {AG_INT64, 0.5, 5, 1.5, 5, 0, 4},        /* [0, 1, 2, 3, 4] */
        {AG_INT64, 3.9, 0.2, -1.5, 3, 3, 1},     /* [3, 2, 1] */
        {AG_INT64, 0, -0.5, -1, 0, 0, 0},        /* [] */
        /* wide int64 ranges: PyTorch counts them in int64, wrapping around */
        {AG_INT64, -3e18, 4e18, 2e18, 4, -3e18, 3e18},
        {AG_INT64, -9e18, 9e18, 3e18, 0, 0, 0},  /* the count wraps to 0: [] */
        {AG_INT64, 9e18, -9e18, -3e18, 0, 0, 0},
    };
    ag_tensor *t;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char what[64];
        snprintf(what, sizeof what, "arange case %zu", k);
        int rc = ag_arange(&t, cases[k].dt, cases[k].start, cases[k].end, cases[k].step);
        if (rc) {
            fprintf(stderr, "%s: %s\n", what, ag_last_error());
            harness_failures++;
            continue;
        }
        check_shape(what, t, cases[k].dt, &cases[k].n, 1);
        int64_t n = 0;
        double *v = values(t, &n);
        if (n > 0 && n == cases[k].n) {
            double tol = cases[k].dt == AG_FLOAT32 ? 1e-7 : 1e-15;
            CHECK_CLOSE(v[0], cases[k].first, tol);
            CHECK_CLOSE(v[n - 1], cases[k].last, tol);
            for (int64_t i = 0; i < n; i++) {
                double want = cases[k].start + (double)i * cases[k].step;
                if (cases[k].dt == AG_INT64)
                    want = trunc(cases[k].start) + (double)i * trunc(cases[k].step);
                if (fabs(v[i] - want) > tol * (1 + fabs(want))) {
                    fprintf(stderr, "%s: element %lld = %g, expected %g\n", what, (long long)i, v[i],
                            want);
                    harness_failures++;
                    break;
                }
            }
        }
        free(v);
        ag_tensor_release(t);
    }
    FAILS_OUT(AG_EINVAL, ag_arange, AG_FLOAT32, 0, 5, 0);
    CHECK(strstr(ag_last_error(), "step must be nonzero"));
    FAILS_OUT(AG_EINVAL, ag_arange, AG_INT64, 0, 2, 0.5); /* the step truncates to 0 */
    FAILS_OUT(AG_EINVAL, ag_arange, AG_FLOAT32, 0, 5, -1);
    FAILS_OUT(AG_EINVAL, ag_arange, AG_FLOAT64, 5, 0, 1);
    FAILS_OUT(AG_EINVAL, ag_arange, AG_FLOAT64, 0, INFINITY, 1);
    FAILS_OUT(AG_EINVAL, ag_arange, AG_FLOAT64, -INFINITY, 0, 1);
    FAILS_OUT(AG_EINVAL, ag_arange, AG_FLOAT64, 0, NAN, 1);
    FAILS_OUT(AG_EINVAL, ag_arange, AG_FLOAT64, 0, 1, NAN);
    FAILS_OUT(AG_EINVAL, ag_arange, AG_INT64, 0, 1e19, 1);
    FAILS_OUT(AG_EINVAL, ag_arange, AG_INT64, 0, 9e18, 3e18); /* the count wraps negative */
    CHECK(strstr(ag_last_error(), "invalid size, possible overflow?"));
    FAILS_OUT(AG_EINVAL, ag_arange, AG_INT64, -4e18, 4e18, 2e18);
    FAILS_OUT(AG_EDTYPE, ag_arange, AG_BOOL, 0, 2, 1); /* "arange_cpu" not implemented for 'Bool' */
    FAILS_OUT(AG_EDTYPE, ag_arange, (ag_dtype)6, 0, 2, 1);

    /* eye: torch.eye(2, 3), torch.eye(3, 2), torch.eye(0, 2) */
    int64_t s23[2] = {2, 3}, s32[2] = {3, 2}, s02[2] = {0, 2};
    double e23[6] = {1, 0, 0, 0, 1, 0}, e32[6] = {1, 0, 0, 1, 0, 0};
    OK(ag_eye(&t, AG_FLOAT32, 2, 3));
    check_shape("eye(2,3)", t, AG_FLOAT32, s23, 2);
    check_values("eye(2,3)", t, e23, 6, 0);
    ag_tensor_release(t);
    OK(ag_eye(&t, AG_INT64, 3, 2));
    check_shape("eye(3,2)", t, AG_INT64, s32, 2);
    check_values("eye(3,2)", t, e32, 6, 0);
    ag_tensor_release(t);
    OK(ag_eye(&t, AG_BOOL, 3, 2));
    check_values("eye bool", t, e32, 6, 0);
    ag_tensor_release(t);
    OK(ag_eye(&t, AG_FLOAT64, 0, 2));
    check_shape("eye(0,2)", t, AG_FLOAT64, s02, 2);
    ag_tensor_release(t);
    double e33[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    OK(ag_eye(&t, AG_FLOAT64, 3, 3));
    check_values("eye(3,3)", t, e33, 9, 0);
    ag_tensor_release(t);
    FAILS_OUT(AG_EINVAL, ag_eye, AG_FLOAT64, -1, 2);
    FAILS_OUT(AG_EINVAL, ag_eye, AG_FLOAT64, 2, -1);
    FAILS_OUT(AG_EDTYPE, ag_eye, (ag_dtype)8, 2, 2);
}

/* ---- random numbers ---- */
typedef enum { R_RAND, R_RANDN, R_RANDINT } rkind;

static ag_tensor *draw(rkind k, ag_generator *g, ag_dtype dt, int64_t n)
{
    ag_tensor *t = NULL;
    int rc = k == R_RAND    ? ag_rand(&t, g, dt, &n, 1)
             : k == R_RANDN ? ag_randn(&t, g, dt, &n, 1)
                            : ag_randint(&t, g, -5, 1000, dt, &n, 1);
    if (rc) {
        fprintf(stderr, "fatal: draw: %s\n", ag_last_error());
        exit(2);
    }
    return t;
}

/* 1 if a and b hold bitwise-identical data */
static int same_bits(const ag_tensor *a, const ag_tensor *b)
{
    int64_t na, nb;
    ag_dtype da, db;
    OK(ag_tensor_numel(&na, a));
    OK(ag_tensor_numel(&nb, b));
    OK(ag_tensor_dtype(&da, a));
    OK(ag_tensor_dtype(&db, b));
    if (na != nb || da != db) return 0;
    size_t bytes = (size_t)na * 8 + 1;
    unsigned char *x = calloc(bytes, 1), *y = calloc(bytes, 1);
    OK(ag_tensor_copy_data(x, bytes, a));
    OK(ag_tensor_copy_data(y, bytes, b));
    int same = memcmp(x, y, bytes) == 0;
    free(x);
    free(y);
    return same;
}

/* number of positions where a and b differ (as doubles) */
static int64_t n_differ(const ag_tensor *a, const ag_tensor *b)
{
    int64_t n, m, d = 0;
    double *x = values(a, &n), *y = values(b, &m);
    for (int64_t i = 0; i < n && i < m; i++) d += x[i] != y[i];
    free(x);
    free(y);
    return d;
}

static void seeding(void)
{
    static const ag_dtype dts[3][2] = {{AG_FLOAT32, AG_FLOAT64}, {AG_FLOAT32, AG_FLOAT64},
                                       {AG_INT64, AG_FLOAT64}};
    for (int k = 0; k < 3; k++)
        for (int j = 0; j < 2; j++) {
            ag_dtype dt = dts[k][j];
            ag_generator *a, *b, *c;
            OK(ag_generator_new(&a, 42));
            OK(ag_generator_new(&b, 42));
            OK(ag_generator_new(&c, 43));
            ag_tensor *a1 = draw((rkind)k, a, dt, 1001), *b1 = draw((rkind)k, b, dt, 1001);
            ag_tensor *c1 = draw((rkind)k, c, dt, 1001);
            CHECK(same_bits(a1, b1));     /* same seed, same numbers */
            CHECK(n_differ(a1, c1) > 900); /* another seed, other numbers */
            /* the stream goes on across calls ... */
            ag_tensor *a2 = draw((rkind)k, a, dt, 1001);
            CHECK(n_differ(a1, a2) > 900);
            /* ... and manual_seed restarts it */
            OK(ag_generator_manual_seed(a, 42));
            ag_tensor *a3 = draw((rkind)k, a, dt, 1001), *a4 = draw((rkind)k, a, dt, 1001);
            CHECK(same_bits(a1, a3));
            CHECK(same_bits(a2, a4));
            /* the thread's default generator (NULL) follows ag_manual_seed */
            OK(ag_manual_seed(42));
            ag_tensor *d1 = draw((rkind)k, NULL, dt, 1001), *d2 = draw((rkind)k, NULL, dt, 1001);
            CHECK(same_bits(a1, d1));
            CHECK(same_bits(a2, d2));
            OK(ag_manual_seed(42));
            ag_tensor *d3 = draw((rkind)k, NULL, dt, 1001);
            CHECK(same_bits(d1, d3));
            ag_tensor *rel[] = {a1, b1, c1, a2, a3, a4, d1, d2, d3};
            for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) ag_tensor_release(rel[i]);
            ag_generator_release(a);
            ag_generator_release(b);
            ag_generator_release(c);
        }
    FAILS(AG_EINVAL, ag_generator_new(NULL, 1));
    FAILS(AG_EINVAL, ag_generator_manual_seed(NULL, 1));
    ag_generator_release(NULL);

    /* _like: shape and dtype of t, never requiring grad, same stream as rand/randn */
    int64_t s23[2] = {2, 3};
    ag_tensor *src, *r, *r2;
    OK(ag_zeros(&src, AG_FLOAT64, s23, 2));
    OK(ag_tensor_set_requires_grad(src, 1));
    ag_generator *g;
    OK(ag_generator_new(&g, 5));
    OK(ag_rand_like(&r, g, src));
    check_shape("rand_like", r, AG_FLOAT64, s23, 2);
    CHECK(requires_grad(r) == 0);
    OK(ag_generator_manual_seed(g, 5));
    OK(ag_rand(&r2, g, AG_FLOAT64, s23, 2));
    CHECK(same_bits(r, r2));
    ag_tensor_release(r);
    ag_tensor_release(r2);
    OK(ag_randn_like(&r, g, src));
    check_shape("randn_like", r, AG_FLOAT64, s23, 2);
    CHECK(requires_grad(r) == 0);
    ag_tensor_release(r);
    ag_tensor_release(src);
    OK(ag_ones(&src, AG_INT64, s23, 2));
    FAILS_OUT(AG_EDTYPE, ag_rand_like, g, src);
    FAILS_OUT(AG_EDTYPE, ag_randn_like, NULL, src);
    ag_tensor_release(src);

    /* dtype, range and shape errors */
    int64_t s10[1] = {10}, neg[1] = {-1};
    FAILS_OUT(AG_EDTYPE, ag_rand, g, AG_INT64, s10, 1);
    CHECK(strstr(ag_last_error(), "ag_rand: ") == ag_last_error());
    FAILS_OUT(AG_EDTYPE, ag_rand, g, AG_BOOL, s10, 1);
    FAILS_OUT(AG_EDTYPE, ag_randn, g, AG_INT64, s10, 1);
    FAILS_OUT(AG_EDTYPE, ag_randint, g, 0, 2, AG_BOOL, s10, 1);
    FAILS_OUT(AG_EINVAL, ag_randint, g, 5, 5, AG_INT64, s10, 1);
    CHECK(strstr(ag_last_error(), "from=5 >= to=5"));
    FAILS_OUT(AG_EINVAL, ag_randint, g, 6, 5, AG_INT64, s10, 1);
    FAILS_OUT(AG_EINVAL, ag_rand, g, AG_FLOAT32, neg, 1);
    /* a failed draw does not advance the stream */
    OK(ag_generator_manual_seed(g, 9));
    FAILS_OUT(AG_EINVAL, ag_randint, g, 6, 5, AG_INT64, s10, 1);
    OK(ag_rand(&r, g, AG_FLOAT64, s10, 1));
    OK(ag_generator_manual_seed(g, 9));
    OK(ag_rand(&r2, g, AG_FLOAT64, s10, 1));
    CHECK(same_bits(r, r2));
    ag_tensor_release(r);
    ag_tensor_release(r2);
    /* 0-d and empty draws */
    OK(ag_randn(&r, g, AG_FLOAT32, NULL, 0));
    check_shape("randn 0-d", r, AG_FLOAT32, NULL, 0);
    ag_tensor_release(r);
    int64_t s0[1] = {0};
    OK(ag_rand(&r, g, AG_FLOAT32, s0, 1));
    check_shape("rand empty", r, AG_FLOAT32, s0, 1);
    ag_tensor_release(r);
    ag_generator_release(g);
}

/* Results are bitwise identical for 1 and 4 threads. */
static void thread_independence(void)
{
    int prev = ag_get_num_threads();
    static const ag_dtype dts[3] = {AG_FLOAT32, AG_FLOAT64, AG_INT64};
    for (int k = 0; k < 3; k++) {
        ag_generator *g;
        OK(ag_generator_new(&g, 1234));
        OK(ag_set_num_threads(1));
        ag_tensor *one = draw((rkind)k, g, dts[k], 50001);
        OK(ag_generator_manual_seed(g, 1234));
        OK(ag_set_num_threads(4));
        ag_tensor *four = draw((rkind)k, g, dts[k], 50001);
        CHECK(same_bits(one, four));
        ag_tensor_release(one);
        ag_tensor_release(four);
        ag_generator_release(g);
    }
    OK(ag_set_num_threads(prev));
}

static void statistics(void)
{
    const int64_t n = 100000;
    ag_generator *g;
    OK(ag_generator_new(&g, 2024));
    for (int dt = 0; dt < 2; dt++) {
        /* uniform in [0, 1): mean 1/2, variance 1/12 */
        ag_tensor *t = draw(R_RAND, g, (ag_dtype)dt, n);
        int64_t m;
        double *v = values(t, &m), s = 0, s2 = 0, lo = 1, hi = 0;
        for (int64_t i = 0; i < m; i++) {
            s += v[i];
            s2 += v[i] * v[i];
            lo = v[i] < lo ? v[i] : lo;
            hi = v[i] > hi ? v[i] : hi;
        }
        double mean = s / (double)m, var = s2 / (double)m - mean * mean;
        CHECK(lo >= 0 && hi < 1);
        CHECK(lo < 1e-3 && hi > 1 - 1e-3);
        CHECK(fabs(mean - 0.5) < 0.005);
        CHECK(fabs(var - 1.0 / 12) < 0.003);
        free(v);
        ag_tensor_release(t);
        /* standard normal: mean 0, variance 1, a few beyond 3 sigma */
        t = draw(R_RANDN, g, (ag_dtype)dt, n);
        v = values(t, &m);
        s = s2 = 0;
        int64_t tail = 0, finite = 1;
        for (int64_t i = 0; i < m; i++) {
            s += v[i];
            s2 += v[i] * v[i];
            tail += fabs(v[i]) > 3;
            finite &= isfinite(v[i]) != 0;
        }
        mean = s / (double)m;
        var = s2 / (double)m - mean * mean;
        CHECK(finite);
        CHECK(fabs(mean) < 0.015);
        CHECK(fabs(var - 1) < 0.03);
        CHECK(tail > 150 && tail < 400); /* expected 270 */
        free(v);
        ag_tensor_release(t);
    }
    /* randint in [low, high): every value hit, roughly evenly, in every dtype */
    static const ag_dtype idts[3] = {AG_INT64, AG_FLOAT32, AG_FLOAT64};
    for (int k = 0; k < 3; k++) {
        ag_tensor *t;
        OK(ag_randint(&t, g, -3, 7, idts[k], &n, 1));
        int64_t m, count[10] = {0}, bad = 0;
        double *v = values(t, &m);
        for (int64_t i = 0; i < m; i++) {
            if (v[i] < -3 || v[i] > 6 || v[i] != trunc(v[i])) bad++;
            else count[(int)v[i] + 3]++;
        }
        CHECK(bad == 0);
        for (int j = 0; j < 10; j++) CHECK(count[j] > 9500 && count[j] < 10500);
        free(v);
        ag_tensor_release(t);
    }
    /* a one-value range, and the extremes of int64 */
    int64_t s100[1] = {100};
    ag_tensor *t;
    OK(ag_randint(&t, g, 41, 42, AG_INT64, s100, 1));
    int64_t iv[100];
    OK(ag_tensor_copy_i64(iv, 100, t));
    int all = 1;
    for (int i = 0; i < 100; i++) all &= iv[i] == 41;
    CHECK(all);
    ag_tensor_release(t);
    OK(ag_randint(&t, g, INT64_MIN, INT64_MAX, AG_INT64, s100, 1));
    OK(ag_tensor_copy_i64(iv, 100, t));
    int neg = 0, pos = 0;
    for (int i = 0; i < 100; i++) {
        neg += iv[i] < 0;
        pos += iv[i] > 0;
    }
    CHECK(neg > 20 && pos > 20);
    CHECK(iv[0] != INT64_MAX);
    ag_tensor_release(t);
    ag_generator_release(g);
}

/* ---- reading tensors back ---- */
static void queries(void)
{
    int64_t s23[2] = {2, 3}, s11[2] = {1, 1};
    double d[6] = {1.5, -2.7, 3, 4, 5, 6};
    ag_tensor *x = tensor_f64(d, s23, 2, AG_FLOAT64), *xt, *one = tensor_f64(d + 1, s11, 2, AG_FLOAT32);
    OK(ag_t(&xt, x));

    /* item */
    double v = 99;
    int64_t iv = 99;
    OK(ag_tensor_item(&v, one));
    CHECK(v == (double)(float)-2.7);
    OK(ag_tensor_item_int64(&iv, one)); /* truncates toward zero */
    CHECK(iv == -2);
    v = 99;
    iv = 99;
    FAILS(AG_ESHAPE, ag_tensor_item(&v, x));
    CHECK(strstr(ag_last_error(), "a Tensor with 6 elements cannot be converted to Scalar"));
    FAILS(AG_ESHAPE, ag_tensor_item_int64(&iv, x));
    CHECK(v == 99 && iv == 99);
    ag_tensor *e;
    int64_t s0[1] = {0};
    OK(ag_zeros(&e, AG_FLOAT64, s0, 1));
    FAILS(AG_ESHAPE, ag_tensor_item(&v, e));
    FAILS(AG_EINVAL, ag_tensor_item(NULL, one));
    FAILS(AG_EINVAL, ag_tensor_item(&v, NULL));
    ag_tensor *b;
    OK(ag_tensor_scalar(&b, 1, AG_BOOL));
    OK(ag_tensor_item(&v, b));
    CHECK(v == 1);
    ag_tensor_release(b);

    /* copy_data / copy_f64 / copy_i64: row-major order of the (non-contiguous) view */
    double buf[8] = {0};
    OK(ag_tensor_copy_f64(buf, 6, xt));
    double want_t[6] = {1.5, 4, -2.7, 5, 3, 6};
    CHECK(memcmp(buf, want_t, sizeof want_t) == 0);
    memset(buf, 0, sizeof buf);
    OK(ag_tensor_copy_data(buf, 6 * sizeof(double), xt));
    CHECK(memcmp(buf, want_t, sizeof want_t) == 0);
    int64_t ib[6];
    OK(ag_tensor_copy_i64(ib, 6, xt));
    int64_t want_i[6] = {1, 4, -2, 5, 3, 6};
    CHECK(memcmp(ib, want_i, sizeof want_i) == 0);
    double keep[8] = {9, 9, 9, 9, 9, 9, 9, 9};
    memcpy(buf, keep, sizeof buf);
    FAILS(AG_ERANGE, ag_tensor_copy_f64(buf, 5, xt));
    CHECK(strstr(ag_last_error(), "buffer holds 5 elements, 6 needed")); /* counted as given */
    FAILS(AG_ERANGE, ag_tensor_copy_f64(buf, 0, xt));
    FAILS(AG_ERANGE, ag_tensor_copy_data(buf, 6 * sizeof(double) - 1, xt));
    FAILS(AG_ERANGE, ag_tensor_copy_i64(ib, 5, xt));
    CHECK(memcmp(buf, keep, sizeof buf) == 0);
    FAILS(AG_EINVAL, ag_tensor_copy_f64(NULL, 6, xt));
    FAILS(AG_EINVAL, ag_tensor_copy_f64(buf, 6, NULL));
    OK(ag_tensor_copy_data(NULL, 0, e)); /* nothing to copy */
    ag_tensor *sl; /* a strided slice of the transpose: xt[::2] = [[1.5, 4], [3, 6]] */
    OK(ag_slice(&sl, xt, 0, 0, 3, 2));
    float fb[4];
    ag_tensor *sf;
    OK(ag_to_dtype(&sf, sl, AG_FLOAT32));
    OK(ag_tensor_copy_data(fb, sizeof fb, sf));
    CHECK(fb[0] == 1.5f && fb[1] == 4 && fb[2] == 3 && fb[3] == 6);
    ag_tensor_release(sf);
    OK(ag_tensor_copy_f64(buf, 4, sl));
    CHECK(buf[0] == 1.5 && buf[1] == 4 && buf[2] == 3 && buf[3] == 6);
    ag_tensor_release(sl);

    /* shape, strides, size, ndim, numel, is_contiguous */
    int64_t sh[4] = {-7, -7, -7, -7}, st[4] = {-7, -7, -7, -7};
    OK(ag_tensor_shape(sh, 2, xt));
    OK(ag_tensor_strides(st, 2, xt));
    CHECK(sh[0] == 3 && sh[1] == 2 && sh[2] == -7);
    CHECK(st[0] == 1 && st[1] == 3 && st[2] == -7);
    sh[0] = -7;
    FAILS(AG_ERANGE, ag_tensor_shape(sh, 1, xt));
    FAILS(AG_ERANGE, ag_tensor_strides(st + 2, 1, xt));
    CHECK(sh[0] == -7 && st[2] == -7);
    FAILS(AG_EINVAL, ag_tensor_shape(NULL, 2, xt));
    FAILS(AG_EINVAL, ag_tensor_shape(sh, 2, NULL));
    ag_tensor *sc;
    OK(ag_tensor_scalar(&sc, 1, AG_FLOAT64));
    OK(ag_tensor_shape(NULL, 0, sc)); /* a 0-d tensor has no dimensions to copy */
    OK(ag_tensor_strides(NULL, 0, sc));
    int64_t sz = -7;
    OK(ag_tensor_size(&sz, xt, 0));
    CHECK(sz == 3);
    OK(ag_tensor_size(&sz, xt, -1));
    CHECK(sz == 2);
    sz = -7;
    FAILS(AG_ERANGE, ag_tensor_size(&sz, xt, 2));
    FAILS(AG_ERANGE, ag_tensor_size(&sz, xt, -3));
    CHECK(sz == -7);
    CHECK(strstr(ag_last_error(), "ag_tensor_size: Dimension out of range"));
    size_t nd = 0;
    OK(ag_tensor_ndim(&nd, xt));
    CHECK(nd == 2);
    OK(ag_tensor_ndim(&nd, sc));
    CHECK(nd == 0);
    int64_t numel = 0;
    OK(ag_tensor_numel(&numel, xt));
    CHECK(numel == 6);
    OK(ag_tensor_numel(&numel, sc));
    CHECK(numel == 1);
    OK(ag_tensor_numel(&numel, e));
    CHECK(numel == 0);
    int c = -1;
    OK(ag_tensor_is_contiguous(&c, x));
    CHECK(c == 1);
    OK(ag_tensor_is_contiguous(&c, xt));
    CHECK(c == 0);
    OK(ag_tensor_is_contiguous(&c, sc));
    CHECK(c == 1);
    FAILS(AG_EINVAL, ag_tensor_ndim(NULL, xt));
    FAILS(AG_EINVAL, ag_tensor_numel(&numel, NULL));
    FAILS(AG_EINVAL, ag_tensor_is_contiguous(&c, NULL));
    ag_tensor_release(sc);
    ag_tensor_release(e);
    ag_tensor_release(one);
    ag_tensor_release(xt);
    ag_tensor_release(x);
}

#define FAILS_OUT_MSG(status, msg, fn, ...)                                                \
    do {                                                                                   \
        FAILS_OUT(status, fn, __VA_ARGS__);                                                \
        CHECK_STR(ag_last_error(), msg);                                                   \
    } while (0)

/* arange's checks in PyTorch 1.13's order and words, non-finite arguments included
 * (torch.arange(start, end, step, dtype=...) gave each expected result and message). */
static void arange_non_finite(void)
{
    static const ag_dtype floats[2] = {AG_FLOAT32, AG_FLOAT64};
    const int64_t zero = 0;
    for (int k = 0; k < 2; k++) {
        ag_dtype dt = floats[k];
        ag_tensor *t;
        /* arange(0., 1., inf), arange(0., 0., inf), arange(1., 0., -inf): tensor([]) */
        OK(ag_arange(&t, dt, 0, 1, INFINITY));
        check_shape("arange(0, 1, inf)", t, dt, &zero, 1);
        ag_tensor_release(t);
        OK(ag_arange(&t, dt, 0, 0, INFINITY));
        check_shape("arange(0, 0, inf)", t, dt, &zero, 1);
        ag_tensor_release(t);
        OK(ag_arange(&t, dt, 1, 0, -INFINITY));
        check_shape("arange(1, 0, -inf)", t, dt, &zero, 1);
        ag_tensor_release(t);
        FAILS_OUT_MSG(AG_EINVAL, "ag_arange: upper bound and larger bound inconsistent with step "
                      "sign", ag_arange, dt, 0, 1, -INFINITY);
        FAILS_OUT_MSG(AG_EINVAL, "ag_arange: step must be nonzero", ag_arange, dt, 0, 1, NAN);
        FAILS_OUT_MSG(AG_EINVAL, "ag_arange: step must be nonzero", ag_arange, dt, 0, INFINITY,
                      NAN);
        FAILS_OUT_MSG(AG_EINVAL, "ag_arange: unsupported range: 0 -> inf", ag_arange, dt, 0,
                      INFINITY, 1);
        FAILS_OUT_MSG(AG_EINVAL, "ag_arange: unsupported range: 0 -> nan", ag_arange, dt, 0, NAN,
                      1);
        FAILS_OUT_MSG(AG_EINVAL, "ag_arange: unsupported range: -inf -> 0", ag_arange, dt,
                      -INFINITY, 0, 1);
        FAILS_OUT_MSG(AG_EINVAL, "ag_arange: unsupported range: inf -> 1", ag_arange, dt,
                      INFINITY, 1, 1);
        FAILS_OUT_MSG(AG_EINVAL, "ag_arange: invalid size, possible overflow?", ag_arange, dt,
                      -1e308, 1e308, INFINITY);
    }
    /* int64: every argument converts first, "value cannot be converted to type int64_t
     * without overflow" (ours adds the value). */
    static const double bad[4] = {INFINITY, -INFINITY, NAN, 1e19};
    for (int k = 0; k < 4; k++) {
        FAILS_OUT(AG_EINVAL, ag_arange, AG_INT64, 0, 1, bad[k]);
        CHECK(strstr(ag_last_error(), "value cannot be converted to type int64_t without overflow"));
        FAILS_OUT(AG_EINVAL, ag_arange, AG_INT64, bad[k], 1, 1);
        CHECK(strstr(ag_last_error(), "value cannot be converted to type int64_t without overflow"));
        FAILS_OUT(AG_EINVAL, ag_arange, AG_INT64, 0, bad[k], 1);
        CHECK(strstr(ag_last_error(), "value cannot be converted to type int64_t without overflow"));
    }
}

/* A fill value float32 cannot hold: torch.full([2], 3.5e38), torch.full_like(x, 3.5e38) and
 * x.fill_(3.5e38) raise "value cannot be converted to type float without overflow" (also
 * 3.4028235677973366e38, which would round to FLT_MAX); inf and NaN fill, and
 * torch.tensor(3.5e38) (ag_tensor_scalar) rounds to inf. bool and float64 take any value;
 * int64 refuses 2^63 (PyTorch: INT64_MIN), see ag_full. */
static void check_exact(const char *what, const ag_tensor *t, const double *want, int64_t n)
{
    int64_t got_n = 0;
    double *got = values(t, &got_n);
    CHECK(got_n == n);
    for (int64_t i = 0; i < n && i < got_n; i++)
        if (got[i] != want[i]) {
            fprintf(stderr, "%s: element %lld = %g, expected %g\n", what, (long long)i, got[i],
                    want[i]);
            harness_failures++;
        }
    free(got);
}

static void fill_value_limits(void)
{
    static const double over[3] = {3.5e38, -3.5e38, 3.4028235677973366e38};
    const int64_t s2[1] = {2};
    ag_tensor *x, *t;
    OK(ag_zeros(&x, AG_FLOAT32, s2, 1));
    for (int k = 0; k < 3; k++) {
        char msg[128];
        snprintf(msg, sizeof msg, "value cannot be converted to type float without overflow: %.9g",
                 over[k]);
        FAILS_OUT(AG_EINVAL, ag_full, AG_FLOAT32, s2, 1, over[k]);
        CHECK(strstr(ag_last_error(), msg) != NULL);
        FAILS_OUT(AG_EINVAL, ag_full_like, x, over[k]);
        CHECK(strstr(ag_last_error(), msg) != NULL);
        FAILS(AG_EINVAL, ag_fill_(x, over[k]));
        CHECK(strstr(ag_last_error(), msg) != NULL);
    }
    CHECK_STR(ag_last_error(), "ag_fill_: value cannot be converted to type float without "
                               "overflow: 3.40282357e+38");
    int64_t v = -1;
    OK(ag_tensor_version(&v, x));
    CHECK(v == 0); /* the failed fill_ changed nothing */
    static const double fine[4] = {FLT_MAX, INFINITY, -INFINITY, 1e-50};
    for (int k = 0; k < 4; k++) {
        double want[2] = {(double)(float)fine[k], (double)(float)fine[k]};
        OK(ag_full(&t, AG_FLOAT32, s2, 1, fine[k]));
        check_exact("full f32", t, want, 2);
        ag_tensor_release(t);
        OK(ag_fill_(x, fine[k]));
        check_exact("fill_ f32", x, want, 2);
    }
    OK(ag_full(&t, AG_FLOAT32, s2, 1, NAN));
    int64_t n = 0;
    double *nv = values(t, &n);
    CHECK(isnan(nv[0]) && isnan(nv[1]));
    free(nv);
    ag_tensor_release(t);
    OK(ag_tensor_scalar(&t, 3.5e38, AG_FLOAT32)); /* torch.tensor(3.5e38) */
    double inf1[1] = {INFINITY};
    check_exact("scalar f32", t, inf1, 1);
    ag_tensor_release(t);
    OK(ag_full(&t, AG_FLOAT64, s2, 1, 3.5e38));
    ag_tensor_release(t);
    OK(ag_full(&t, AG_BOOL, s2, 1, 3.5e38));
    double ones[2] = {1, 1};
    check_exact("full bool", t, ones, 2);
    ag_tensor_release(t);
    FAILS_OUT(AG_EINVAL, ag_full, AG_INT64, s2, 1, 0x1p63);
    ag_tensor_release(x);
}

int main(void)
{
    memory_in_use();
    from_data();
    scalar_leaf_release();
    constants();
    ranges();
    arange_non_finite();
    fill_value_limits();
    seeding();
    thread_independence();
    statistics();
    queries();
    return harness_finish("test_creation");
}
