/*
 * test_shape.c: views and shape operations (reshape, view, transpose, t, permute, expand,
 * slice, narrow, select, squeeze, unsqueeze, flatten) and copies (contiguous, clone,
 * to_dtype, detach): geometry, storage and version sharing, grad_fn names as torch 1.13
 * gives them, errors that leave *out untouched, and gradient checks on non-contiguous inputs.
 */
#include <math.h>
#include <string.h>

#include "harness.h"

/* 0, 1, ..., numel-1 in float64 with the given shape; requires grad if asked. */
static ag_tensor *iota(const int64_t *shape, size_t nd, int requires_grad)
{
    int64_t n = 1;
    for (size_t i = 0; i < nd; i++) n *= shape[i];
    double *d = malloc((size_t)(n ? n : 1) * sizeof *d);
    for (int64_t i = 0; i < n; i++) d[i] = (double)i;
    ag_tensor *t = tensor_f64(d, shape, nd, AG_FLOAT64);
    free(d);
    if (requires_grad) OK(ag_tensor_set_requires_grad(t, 1));
    return t;
}

/* Compares the first n elements of t (row-major) with want. */
static void check_first(const char *what, const ag_tensor *t, const double *want, size_t n)
{
    int64_t m;
    double *got = values(t, &m);
    for (size_t i = 0; i < n; i++)
        if ((int64_t)i >= m || got[i] != want[i]) {
            fprintf(stderr, "%s: element %zu = %g, expected %g\n", what, i,
                    (int64_t)i < m ? got[i] : NAN, want[i]);
            harness_failures++;
            break;
        }
    free(got);
}

static int64_t version(const ag_tensor *t)
{
    int64_t v = -1;
    OK(ag_tensor_version(&v, t));
    return v;
}

static int shares(const ag_tensor *a, const ag_tensor *b)
{
    int s = -1;
    OK(ag_tensor_shares_storage(&s, a, b));
    return s;
}

/* Checks shape, strides and storage offset of t. */
static void check_geom(const char *what, const ag_tensor *t, const int64_t *shape,
                       const int64_t *strides, size_t nd, int64_t offset)
{
    size_t got_nd = 99;
    int64_t sh[AG_MAX_DIMS], st[AG_MAX_DIMS], off = -1;
    OK(ag_tensor_ndim(&got_nd, t));
    OK(ag_tensor_shape(sh, AG_MAX_DIMS, t));
    OK(ag_tensor_strides(st, AG_MAX_DIMS, t));
    OK(ag_tensor_storage_offset(&off, t));
    int bad = got_nd != nd || off != offset;
    for (size_t i = 0; !bad && i < nd; i++) bad = sh[i] != shape[i] || (strides && st[i] != strides[i]);
    if (bad) {
        fprintf(stderr, "%s: geometry ndim %zu offset %lld:", what, got_nd, (long long)off);
        for (size_t i = 0; i < got_nd && i < AG_MAX_DIMS; i++)
            fprintf(stderr, " %lld/%lld", (long long)sh[i], (long long)st[i]);
        fprintf(stderr, " (shape/stride), expected ndim %zu offset %lld\n", nd, (long long)offset);
        harness_failures++;
    }
}

/* v is a view of `base`: same storage, and an in-place change through either bumps the
 * version counter both see. Done with grad mode off, which in-place ops on views of leaves
 * that require grad need; adding 0 keeps the values. A view that reaches an element twice
 * (expand) refuses the add, as PyTorch does, and changes nothing; the base is written
 * twice then. */
static void check_view_of(const char *what, ag_tensor *v, ag_tensor *base)
{
    if (shares(v, base) != 1) {
        fprintf(stderr, "%s: the view does not share its base's storage\n", what);
        harness_failures++;
    }
    int64_t sh[AG_MAX_DIMS], st[AG_MAX_DIMS];
    size_t nd = 0;
    OK(ag_tensor_ndim(&nd, v));
    OK(ag_tensor_shape(sh, AG_MAX_DIMS, v));
    OK(ag_tensor_strides(st, AG_MAX_DIMS, v));
    int repeats = 0;
    for (size_t i = 0; i < nd; i++) repeats |= st[i] == 0 && sh[i] > 1;
    int prev = ag_set_grad_enabled(0);
    int64_t v0 = version(base);
    CHECK(version(v) == v0);
    if (repeats) {
        FAILS(AG_EINVAL, ag_add_scalar_(v, 0.0));
        CHECK(version(v) == v0);
        OK(ag_mul_scalar_(base, 1.0));
    } else {
        OK(ag_add_scalar_(v, 0.0));
    }
    if (version(base) != v0 + 1 || version(v) != v0 + 1) {
        fprintf(stderr, "%s: in-place on the view: versions %lld/%lld, expected %lld\n", what,
                (long long)version(v), (long long)version(base), (long long)v0 + 1);
        harness_failures++;
    }
    OK(ag_mul_scalar_(base, 1.0));
    if (version(base) != v0 + 2 || version(v) != v0 + 2) {
        fprintf(stderr, "%s: in-place on the base: versions %lld/%lld, expected %lld\n", what,
                (long long)version(v), (long long)version(base), (long long)v0 + 2);
        harness_failures++;
    }
    ag_set_grad_enabled(prev);
}

/* c is a copy of t: its own storage and version counter. */
static void check_copy_of(const char *what, ag_tensor *c, ag_tensor *t)
{
    if (shares(c, t) != 0) {
        fprintf(stderr, "%s: the copy shares its input's storage\n", what);
        harness_failures++;
    }
    int prev = ag_set_grad_enabled(0);
    int64_t vt = version(t), vc = version(c);
    OK(ag_add_scalar_(c, 0.0));
    CHECK(version(c) == vc + 1);
    CHECK(version(t) == vt);
    ag_set_grad_enabled(prev);
}

/* ---- a small interpreter of shape-op pipelines, for gradient checks ---- */
enum {
    S_END, S_RESHAPE, S_VIEW, S_TRANSPOSE, S_T, S_PERMUTE, S_EXPAND, S_SLICE, S_NARROW,
    S_SELECT, S_SQUEEZE, S_SQUEEZE_DIM, S_UNSQUEEZE, S_FLATTEN, S_CONTIGUOUS, S_CLONE
};

typedef struct step {
    int op;
    size_t n;      /* entries of a used as a shape or permutation */
    int64_t a[8];  /* the op's arguments */
} step;

static int apply_step(ag_tensor **out, const ag_tensor *t, const step *s)
{
    const int64_t *a = s->a;
    switch (s->op) {
    case S_RESHAPE: return ag_reshape(out, t, a, s->n);
    case S_VIEW: return ag_view(out, t, a, s->n);
    case S_TRANSPOSE: return ag_transpose(out, t, a[0], a[1]);
    case S_T: return ag_t(out, t);
    case S_PERMUTE: return ag_permute(out, t, a, s->n);
    case S_EXPAND: return ag_expand(out, t, a, s->n);
    case S_SLICE: return ag_slice(out, t, a[0], a[1], a[2], a[3]);
    case S_NARROW: return ag_narrow(out, t, a[0], a[1], a[2]);
    case S_SELECT: return ag_select(out, t, a[0], a[1]);
    case S_SQUEEZE: return ag_squeeze(out, t);
    case S_SQUEEZE_DIM: return ag_squeeze_dim(out, t, a[0]);
    case S_UNSQUEEZE: return ag_unsqueeze(out, t, a[0]);
    case S_FLATTEN: return ag_flatten(out, t, a[0], a[1]);
    case S_CONTIGUOUS: return ag_contiguous(out, t);
    case S_CLONE: return ag_clone(out, t);
    }
    return AG_EINTERNAL;
}

static int run_steps(ag_tensor **out, ag_tensor *const *in, void *ctx)
{
    const step *s = ctx;
    ag_tensor *cur = in[0];
    int rc = ag_tensor_retain(cur);
    for (; !rc && s->op != S_END; s++) {
        ag_tensor *next;
        rc = apply_step(&next, cur, s);
        ag_tensor_release(cur);
        cur = rc ? NULL : next;
    }
    if (rc) return rc;
    *out = cur;
    return AG_OK;
}

/* ---- reshape and view ---- */
static void reshape_view(void)
{
    int64_t s234[3] = {2, 3, 4};
    ag_tensor *x = iota(s234, 3, 1), *r, *xt;

    /* contiguous input: a view; x.reshape(4, -1).grad_fn -> ReshapeAliasBackward0 */
    int64_t s4m[2] = {4, -1}, s46[2] = {4, 6}, st46[2] = {6, 1};
    OK(ag_reshape(&r, x, s4m, 2));
    check_geom("reshape(4,-1)", r, s46, st46, 2, 0);
    CHECK_STR(grad_fn_name(r), "ReshapeAliasBackward0");
    check_view_of("reshape(4,-1)", r, x);
    double w0[3] = {0, 1, 2};
    check_first("reshape values", r, w0, 3);
    ag_tensor_release(r);

    /* a non-viewable input is copied: x.transpose(0, 1).reshape(6, 4).grad_fn ->
     * UnsafeViewBackward0, whose next function is CloneBackward0 */
    OK(ag_transpose(&xt, x, 0, 1));
    int64_t s64[2] = {6, 4}, st64[2] = {4, 1};
    OK(ag_reshape(&r, xt, s64, 2));
    check_geom("reshape of transpose", r, s64, st64, 2, 0);
    CHECK_STR(grad_fn_name(r), "UnsafeViewBackward0");
    ag_node *fn, *next;
    int64_t nr;
    OK(ag_tensor_grad_fn(&fn, r));
    OK(ag_node_next(&next, &nr, fn, 0));
    const char *nm = NULL;
    OK(ag_node_name(&nm, next));
    CHECK_STR(nm, "CloneBackward0");
    ag_node_release(next);
    ag_node_release(fn);
    /* x.transpose(0, 1).reshape(-1).tolist() */
    double wt[24] = {0, 1, 2, 3, 12, 13, 14, 15, 4, 5, 6, 7, 16, 17, 18, 19, 8, 9, 10, 11, 20, 21, 22, 23};
    check_values("reshape of transpose", r, wt, 24, 0);
    check_copy_of("reshape of transpose", r, xt);
    ag_tensor_release(r);

    /* splitting the last dim of a transpose is still a view: stride (4, 12, 2, 1) */
    int64_t s3222[4] = {3, 2, 2, 2}, st3222[4] = {4, 12, 2, 1};
    OK(ag_reshape(&r, xt, s3222, 4));
    check_geom("reshape of transpose, split", r, s3222, st3222, 4, 0);
    CHECK_STR(grad_fn_name(r), "ReshapeAliasBackward0");
    check_view_of("reshape of transpose, split", r, x);
    ag_tensor_release(r);

    /* view: x.view(6, 4).grad_fn -> ViewBackward0 */
    OK(ag_view(&r, x, s64, 2));
    check_geom("view(6,4)", r, s64, st64, 2, 0);
    CHECK_STR(grad_fn_name(r), "ViewBackward0");
    check_view_of("view(6,4)", r, x);
    ag_tensor_release(r);
    OK(ag_view(&r, xt, s3222, 4));
    check_geom("view of transpose", r, s3222, st3222, 4, 0);
    CHECK_STR(grad_fn_name(r), "ViewBackward0");
    ag_tensor_release(r);
    int64_t s24[1] = {24};
    FAILS_OUT(AG_ESHAPE, ag_view, xt, s24, 1); /* spans two contiguous subspaces */
    CHECK(strstr(ag_last_error(), "ag_view: view size is not compatible") == ag_last_error());

    /* a slice x[:, :, 1:3] (strides 12, 4, 1): (6, 2) is a view, (2, 6) a copy */
    ag_tensor *sl;
    OK(ag_slice(&sl, x, 2, 1, 3, 1));
    int64_t s62[2] = {6, 2}, st62[2] = {4, 1}, s26[2] = {2, 6}, st26[2] = {6, 1};
    OK(ag_reshape(&r, sl, s62, 2));
    check_geom("reshape of slice (view)", r, s62, st62, 2, 1);
    CHECK_STR(grad_fn_name(r), "ReshapeAliasBackward0"); /* x[:, :, 1:3].reshape(6, 2) */
    ag_tensor_release(r);
    OK(ag_reshape(&r, sl, s26, 2));
    check_geom("reshape of slice (copy)", r, s26, st26, 2, 0);
    CHECK_STR(grad_fn_name(r), "UnsafeViewBackward0"); /* x[:, :, 1:3].reshape(2, 6) */
    double wsl[12] = {1, 2, 5, 6, 9, 10, 13, 14, 17, 18, 21, 22};
    check_values("reshape of slice (copy)", r, wsl, 12, 0);
    ag_tensor_release(r);
    ag_tensor_release(sl);

    /* an expanded tensor: reshape(3, 2, 2) keeps the zero strides, reshape(12) copies */
    int64_t s31[2] = {3, 1}, s34[2] = {3, 4}, s322[3] = {3, 2, 2}, st322[3] = {1, 0, 0};
    ag_tensor *y = iota(s31, 2, 1), *ye;
    OK(ag_expand(&ye, y, s34, 2));
    OK(ag_reshape(&r, ye, s322, 3));
    check_geom("reshape of expand (view)", r, s322, st322, 3, 0);
    CHECK_STR(grad_fn_name(r), "ReshapeAliasBackward0");
    ag_tensor_release(r);
    int64_t s12[1] = {12};
    OK(ag_reshape(&r, ye, s12, 1));
    CHECK_STR(grad_fn_name(r), "UnsafeViewBackward0");
    double wye[12] = {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2};
    check_values("reshape of expand (copy)", r, wye, 12, 0);
    ag_tensor_release(r);
    ag_tensor_release(ye);
    ag_tensor_release(y);

    /* 0-d and empty tensors */
    ag_tensor *sc;
    OK(ag_tensor_scalar(&sc, 3.0, AG_FLOAT64));
    int64_t s11m[3] = {1, 1, -1}, s111[3] = {1, 1, 1}, st111[3] = {1, 1, 1};
    OK(ag_reshape(&r, sc, s11m, 3));
    check_geom("reshape of 0-d", r, s111, st111, 3, 0);
    ag_tensor_release(r);
    OK(ag_reshape(&r, sc, NULL, 0));
    check_geom("reshape 0-d to 0-d", r, NULL, NULL, 0, 0);
    ag_tensor_release(r);
    ag_tensor_release(sc);
    int64_t s03[2] = {0, 3}, s30[2] = {3, 0}, st30[2] = {1, 1}, sm0[2] = {-1, 0};
    ag_tensor *e;
    OK(ag_zeros(&e, AG_FLOAT64, s03, 2));
    OK(ag_reshape(&r, e, s30, 2));
    check_geom("reshape of empty", r, s30, st30, 2, 0);
    ag_tensor_release(r);
    FAILS_OUT(AG_ESHAPE, ag_reshape, e, sm0, 2); /* -1 is ambiguous with 0 elements */
    CHECK(strstr(ag_last_error(), "cannot reshape tensor of 0 elements into shape [-1, 0] "
                                  "because the unspecified dimension size -1 can be any value "
                                  "and is ambiguous"));
    FAILS_OUT(AG_ESHAPE, ag_view, e, sm0, 2);
    CHECK(strstr(ag_last_error(), "into shape [-1, 0] because"));
    ag_tensor_release(e);

    /* errors */
    int64_t s55[2] = {5, 5}, smm[2] = {-1, -1}, sneg[2] = {-2, -12}, s5m[2] = {5, -1};
    int64_t s9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 24};
    FAILS_OUT(AG_ESHAPE, ag_reshape, x, s55, 2);
    CHECK(strstr(ag_last_error(), "shape '[5, 5]' is invalid for input of size 24"));
    FAILS_OUT(AG_ESHAPE, ag_reshape, x, s5m, 2);
    FAILS_OUT(AG_EINVAL, ag_reshape, x, smm, 2);
    FAILS_OUT(AG_EINVAL, ag_reshape, x, sneg, 2);
    FAILS_OUT(AG_ERANGE, ag_reshape, x, s9, 9);
    FAILS_OUT(AG_EINVAL, ag_reshape, x, NULL, 2);
    FAILS_OUT(AG_ESHAPE, ag_view, x, s55, 2);
    FAILS_OUT(AG_EINVAL, ag_view, x, smm, 2);
    FAILS(AG_EINVAL, ag_reshape(NULL, x, s46, 2));
    FAILS_OUT(AG_EINVAL, ag_reshape, NULL, s46, 2);
    ag_tensor_release(xt);
    ag_tensor_release(x);
}

/* ---- transpose, t, permute ---- */
static void transpose_permute(void)
{
    int64_t s234[3] = {2, 3, 4};
    ag_tensor *x = iota(s234, 3, 1), *r;

    /* x.transpose(0, 2).grad_fn -> TransposeBackward0 */
    int64_t s432[3] = {4, 3, 2}, st432[3] = {1, 4, 12};
    OK(ag_transpose(&r, x, 0, -1));
    check_geom("transpose(0,-1)", r, s432, st432, 3, 0);
    CHECK_STR(grad_fn_name(r), "TransposeBackward0");
    check_view_of("transpose", r, x);
    int c = 1;
    OK(ag_tensor_is_contiguous(&c, r));
    CHECK(c == 0);
    double w[6] = {0, 12, 4, 16, 8, 20}; /* x.transpose(0, 2)[0].flatten() */
    check_first("transpose values (first 6)", r, w, 6);
    ag_tensor_release(r);
    OK(ag_transpose(&r, x, 1, 1));
    check_geom("transpose(1,1)", r, s234, NULL, 3, 0);
    ag_tensor_release(r);
    FAILS_OUT(AG_ERANGE, ag_transpose, x, 0, 3);
    FAILS_OUT(AG_ERANGE, ag_transpose, x, -4, 0);
    CHECK(strstr(ag_last_error(), "Dimension out of range"));

    /* t: torch.zeros(2, 3, requires_grad=True).t().grad_fn -> TBackward0 */
    int64_t s23[2] = {2, 3}, s32[2] = {3, 2}, st32[2] = {1, 3}, s5[1] = {5}, st1[1] = {1};
    ag_tensor *m = iota(s23, 2, 1), *v = iota(s5, 1, 1);
    OK(ag_t(&r, m));
    check_geom("t", r, s32, st32, 2, 0);
    CHECK_STR(grad_fn_name(r), "TBackward0");
    check_view_of("t", r, m);
    double wtm[6] = {0, 3, 1, 4, 2, 5};
    check_values("t values", r, wtm, 6, 0);
    ag_tensor_release(r);
    OK(ag_t(&r, v)); /* 1-d: unchanged shape */
    check_geom("t of 1-d", r, s5, st1, 1, 0);
    CHECK_STR(grad_fn_name(r), "TBackward0");
    ag_tensor_release(r);
    FAILS_OUT(AG_ESHAPE, ag_t, x);

    /* permute: x.permute(2, 0, 1).grad_fn -> PermuteBackward0, stride (1, 12, 4) */
    int64_t p201[3] = {2, 0, 1}, pn[3] = {-1, 0, -2}, s423[3] = {4, 2, 3}, st423[3] = {1, 12, 4};
    OK(ag_permute(&r, x, p201, 3));
    check_geom("permute(2,0,1)", r, s423, st423, 3, 0);
    CHECK_STR(grad_fn_name(r), "PermuteBackward0");
    check_view_of("permute", r, x);
    double wp[6] = {0, 4, 8, 12, 16, 20}; /* x.permute(2, 0, 1)[0].flatten() */
    check_first("permute values (first 6)", r, wp, 6);
    ag_tensor_release(r);
    OK(ag_permute(&r, x, pn, 3)); /* negative dims count from the end */
    check_geom("permute(-1,0,-2)", r, s423, st423, 3, 0);
    ag_tensor_release(r);
    int64_t dup[3] = {0, 0, 1}, two[2] = {0, 1}, oor[3] = {0, 1, 3};
    FAILS_OUT(AG_EINVAL, ag_permute, x, dup, 3);
    CHECK(strstr(ag_last_error(), "duplicate dims"));
    FAILS_OUT(AG_EINVAL, ag_permute, x, two, 2);
    FAILS_OUT(AG_ERANGE, ag_permute, x, oor, 3);
    FAILS_OUT(AG_EINVAL, ag_permute, x, NULL, 3);
    ag_tensor *sc;
    OK(ag_tensor_scalar(&sc, 1.0, AG_FLOAT64));
    OK(ag_permute(&r, sc, NULL, 0));
    check_geom("permute of 0-d", r, NULL, NULL, 0, 0);
    ag_tensor_release(r);
    ag_tensor_release(sc);
    ag_tensor_release(m);
    ag_tensor_release(v);
    ag_tensor_release(x);
}

/* ---- expand ---- */
static void expand(void)
{
    int64_t s31[2] = {3, 1};
    ag_tensor *y = iota(s31, 2, 1), *r;
    /* y.expand(2, 3, 4): stride (0, 1, 0), ExpandBackward0 */
    int64_t s234[3] = {2, 3, 4}, st234[3] = {0, 1, 0};
    OK(ag_expand(&r, y, s234, 3));
    check_geom("expand(2,3,4)", r, s234, st234, 3, 0);
    CHECK_STR(grad_fn_name(r), "ExpandBackward0");
    check_view_of("expand", r, y);
    double w[8] = {0, 0, 0, 0, 1, 1, 1, 1};
    check_first("expand values (first 8)", r, w, 8);
    ag_tensor_release(r);
    /* -1 keeps a size: y.expand(-1, 5) stride (1, 0) */
    int64_t sm5[2] = {-1, 5}, s35[2] = {3, 5}, st35[2] = {1, 0};
    OK(ag_expand(&r, y, sm5, 2));
    check_geom("expand(-1,5)", r, s35, st35, 2, 0);
    ag_tensor_release(r);
    /* a 0-d tensor expands to anything */
    ag_tensor *sc;
    OK(ag_tensor_scalar(&sc, 2.0, AG_FLOAT64));
    int64_t s32[2] = {3, 2}, st00[2] = {0, 0};
    OK(ag_expand(&r, sc, s32, 2));
    check_geom("expand of 0-d", r, s32, st00, 2, 0);
    double w2[6] = {2, 2, 2, 2, 2, 2};
    check_values("expand of 0-d", r, w2, 6, 0);
    ag_tensor_release(r);
    ag_tensor_release(sc);
    /* a size-1 dim may expand to 0 */
    int64_t s30[2] = {3, 0};
    OK(ag_expand(&r, y, s30, 2));
    check_geom("expand to 0", r, s30, NULL, 2, 0);
    ag_tensor_release(r);
    /* errors */
    int64_t bad[3] = {2, 4, 4}, few[1] = {4}, lead[3] = {-1, 3, 1}, many[9] = {1, 1, 1, 1, 1, 1, 1, 3, 1};
    int64_t neg[2] = {3, -2};
    FAILS_OUT(AG_ESHAPE, ag_expand, y, bad, 3);
    CHECK(strstr(ag_last_error(), "The expanded size of the tensor (4) must match the existing "
                                  "size (3) at non-singleton dimension 1"));
    FAILS_OUT(AG_ESHAPE, ag_expand, y, few, 1);
    FAILS_OUT(AG_EINVAL, ag_expand, y, lead, 3);
    FAILS_OUT(AG_ERANGE, ag_expand, y, many, 9);
    FAILS_OUT(AG_ESHAPE, ag_expand, y, neg, 2);
    ag_tensor_release(y);
}

/* ---- slice, narrow, select ---- */
static void slice_narrow_select(void)
{
    int64_t s10[1] = {10};
    ag_tensor *a = iota(s10, 1, 1), *r;
    static const struct {
        int64_t start, end, step;
        int64_t len, stride, offset;
        double first;
    } cases[] = {
        {-3, 10, 1, 3, 1, 7, 7},          /* a[-3:]      -> [7, 8, 9] */
        {-100, 3, 1, 3, 1, 0, 0},         /* a[-100:3]   -> [0, 1, 2] */
        {2, 100, 1, 8, 1, 2, 2},          /* a[2:100]    -> [2 .. 9] */
        {2, INT64_MAX, 1, 8, 1, 2, 2},    /* a[2:]       */
        {7, 2, 1, 0, 1, 7, 0},            /* a[7:2]      -> [] */
        {1, 9, 3, 3, 3, 1, 1},            /* a[1:9:3]    -> [1, 4, 7] */
        {-1, -5, 1, 0, 1, 9, 0},          /* a[-1:-5]    -> [] */
        {0, 10, 4, 3, 4, 0, 0},           /* a[::4]      -> [0, 4, 8] */
        {-4, -1, 2, 2, 2, 6, 6},          /* a[-4:-1:2]  -> [6, 8] */
        {INT64_MIN, 2, 1, 2, 1, 0, 0},    /* a[:2]       */
        {20, 30, 1, 0, 1, 10, 0},         /* a[20:30]    -> [] */
        {3, 10, INT64_MAX, 1, INT64_MAX, 3, 3}, /* a[3::huge] -> [3] (the length was -1),
                                               stride 1 * huge as PyTorch's */
        {0, 1, 2, 1, 2, 0, 0},            /* a[0:1:2]    -> [0], stride 2 as PyTorch's */
        {0, 10, 9, 2, 9, 0, 0},           /* a[::9]      -> [0, 9] */
        {0, 10, 10, 1, 10, 0, 0},         /* a[::10]     -> [0], stride 10 as in PyTorch */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char what[64];
        snprintf(what, sizeof what, "slice case %zu", k);
        OK(ag_slice(&r, a, 0, cases[k].start, cases[k].end, cases[k].step));
        int64_t sh[1] = {cases[k].len}, st[1] = {cases[k].stride};
        check_geom(what, r, sh, st, 1, cases[k].offset);
        if (cases[k].len) {
            double v;
            ag_tensor *e0;
            OK(ag_select(&e0, r, 0, 0));
            OK(ag_tensor_item(&v, e0));
            CHECK_CLOSE(v, cases[k].first, 0);
            ag_tensor_release(e0);
        }
        CHECK_STR(grad_fn_name(r), "SliceBackward0"); /* a[1:9:3].grad_fn */
        ag_tensor_release(r);
    }
    /* a slice of a slice: a[2:9][1:5:2] -> [3, 5], offset 3, stride 2 */
    ag_tensor *s1;
    OK(ag_slice(&s1, a, 0, 2, 9, 1));
    OK(ag_slice(&r, s1, -1, 1, 5, 2));
    int64_t s2[1] = {2}, st2[1] = {2};
    check_geom("slice of slice", r, s2, st2, 1, 3);
    double w35[2] = {3, 5};
    check_values("slice of slice", r, w35, 2, 0);
    check_view_of("slice of slice", r, a);
    ag_tensor_release(r);
    ag_tensor_release(s1);
    /* one element whose stride * step does not fit: the step counts as the size (a[::2] has
     * stride 2: a[::2][1::huge] -> [2], stride 2 * 5) */
    OK(ag_slice(&s1, a, 0, 0, 10, 2));
    OK(ag_slice(&r, s1, 0, 1, 5, INT64_MAX));
    int64_t one[1] = {1}, st10[1] = {10};
    check_geom("slice, stride * step beyond int64", r, one, st10, 1, 2);
    double w2[1] = {2};
    check_values("slice, stride * step beyond int64", r, w2, 1, 0);
    ag_tensor_release(r);
    ag_tensor_release(s1);
    FAILS_OUT(AG_EINVAL, ag_slice, a, 0, 0, 10, 0);
    CHECK(strstr(ag_last_error(), "ag_slice: ") == ag_last_error());
    FAILS_OUT(AG_EINVAL, ag_slice, a, 0, 0, 10, -1);
    FAILS_OUT(AG_ERANGE, ag_slice, a, 1, 0, 10, 1);
    ag_tensor *sc;
    OK(ag_tensor_scalar(&sc, 1.0, AG_FLOAT64));
    FAILS_OUT(AG_ERANGE, ag_slice, sc, 0, 0, 1, 1);
    FAILS_OUT(AG_ERANGE, ag_select, sc, 0, 0);
    FAILS_OUT(AG_ERANGE, ag_narrow, sc, 0, 0, 1);
    ag_tensor_release(sc);
    ag_tensor_release(a);

    /* a slice with a step of a permute: x.permute(2, 0, 1)[1:4:2, :, 1:3] */
    int64_t s234[3] = {2, 3, 4}, p201[3] = {2, 0, 1};
    ag_tensor *x = iota(s234, 3, 1), *p, *q;
    OK(ag_permute(&p, x, p201, 3));
    OK(ag_slice(&q, p, 0, 1, 4, 2));
    OK(ag_slice(&r, q, 2, 1, 3, 1));
    int64_t s222[3] = {2, 2, 2}, st222[3] = {2, 12, 4};
    check_geom("slice of permute", r, s222, st222, 3, 5);
    double wsp[8] = {5, 9, 17, 21, 7, 11, 19, 23};
    check_values("slice of permute", r, wsp, 8, 0);
    check_view_of("slice of permute", r, x);
    ag_tensor_release(r);
    ag_tensor_release(q);
    ag_tensor_release(p);

    /* narrow: x.narrow(1, -2, 2) has offset 4 and grad_fn SliceBackward0 */
    int64_t s224[3] = {2, 2, 4}, st224[3] = {12, 4, 1};
    OK(ag_narrow(&r, x, 1, -2, 2));
    check_geom("narrow(1,-2,2)", r, s224, st224, 3, 4);
    CHECK_STR(grad_fn_name(r), "SliceBackward0");
    check_view_of("narrow", r, x);
    ag_tensor_release(r);
    OK(ag_narrow(&r, x, -1, 4, 0)); /* empty at the end is allowed */
    int64_t s230[3] = {2, 3, 0};
    check_geom("narrow empty", r, s230, NULL, 3, 4);
    ag_tensor_release(r);
    FAILS_OUT(AG_ERANGE, ag_narrow, x, 1, 2, 2); /* start (2) + length (2) exceeds 3 */
    CHECK(strstr(ag_last_error(), "start (2) + length (2) exceeds dimension size (3)"));
    FAILS_OUT(AG_ERANGE, ag_narrow, x, 1, -4, 1);
    CHECK(strstr(ag_last_error(), "Dimension out of range (expected to be in range of [-3, 2], "
                                  "but got -4)"));
    FAILS_OUT(AG_ERANGE, ag_narrow, x, 1, 4, 0);
    CHECK(strstr(ag_last_error(), "Dimension out of range (expected to be in range of [-3, 2], "
                                  "but got 4)"));
    FAILS_OUT(AG_ERANGE, ag_narrow, x, 1, 0, -1);
    CHECK(strstr(ag_last_error(), "start (0) + length (-1) exceeds dimension size (3)."));
    FAILS_OUT(AG_ERANGE, ag_narrow, x, 1, 3, -1);
    CHECK(strstr(ag_last_error(), "start (3) + length (-1) exceeds dimension size (3)."));
    FAILS_OUT(AG_ERANGE, ag_narrow, x, 3, 0, 1);
    /* a size-0 dim takes start -1 and 0 (maybe_wrap_dim treats size 0 as 1), as PyTorch */
    {
        int64_t s20[2] = {2, 0};
        ag_tensor *z, *n;
        OK(ag_zeros(&z, AG_FLOAT64, s20, 2));
        OK(ag_narrow(&n, z, -1, -1, 0));
        check_geom("narrow(-1, -1, 0) of [2, 0]", n, s20, NULL, 2, 0);
        ag_tensor_release(n);
        OK(ag_narrow(&n, z, 1, 0, 0));
        check_geom("narrow(1, 0, 0) of [2, 0]", n, s20, NULL, 2, 0);
        ag_tensor_release(n);
        FAILS_OUT(AG_ERANGE, ag_narrow, z, 1, 1, 0);
        CHECK(strstr(ag_last_error(), "Dimension out of range (expected to be in range of "
                                      "[-1, 0], but got 1)"));
        FAILS_OUT(AG_ERANGE, ag_narrow, z, 1, -2, 0);
        CHECK(strstr(ag_last_error(), "Dimension out of range (expected to be in range of "
                                      "[-1, 0], but got -2)"));
        FAILS_OUT(AG_ERANGE, ag_narrow, z, 1, -1, 1);
        CHECK(strstr(ag_last_error(), "start (0) + length (1) exceeds dimension size (0)."));
        ag_tensor_release(z);
        /* a 0-d tensor: PyTorch checks that before the dim */
        OK(ag_tensor_scalar(&z, 1.0, AG_FLOAT64));
        FAILS_OUT(AG_ERANGE, ag_narrow, z, 1, 0, 0);
        CHECK(strstr(ag_last_error(), "narrow() cannot be applied to a 0-dim tensor."));
        ag_tensor_release(z);
    }

    /* select: x.select(1, -1) has offset 8, stride (12, 1), grad_fn SelectBackward0 */
    int64_t s24[2] = {2, 4}, st24[2] = {12, 1};
    OK(ag_select(&r, x, 1, -1));
    check_geom("select(1,-1)", r, s24, st24, 2, 8);
    CHECK_STR(grad_fn_name(r), "SelectBackward0");
    check_view_of("select", r, x);
    double wsel[8] = {8, 9, 10, 11, 20, 21, 22, 23};
    check_values("select values", r, wsel, 8, 0);
    ag_tensor_release(r);
    OK(ag_select(&r, x, -3, 1)); /* x[1] */
    check_geom("select(-3,1)", r, s234 + 1, st224 + 1, 2, 12);
    ag_tensor_release(r);
    FAILS_OUT(AG_ERANGE, ag_select, x, 1, 3);
    CHECK(strstr(ag_last_error(), "index 3 out of range"));
    FAILS_OUT(AG_ERANGE, ag_select, x, 1, -4);
    FAILS_OUT(AG_ERANGE, ag_select, x, 3, 0);
    ag_tensor_release(x);
}

/* ---- squeeze, unsqueeze, flatten ---- */
static void squeeze_unsqueeze_flatten(void)
{
    int64_t s2131[4] = {2, 1, 3, 1};
    ag_tensor *z = iota(s2131, 4, 1), *r;
    /* z.squeeze().grad_fn -> SqueezeBackward0; z.squeeze(1) -> SqueezeBackward1 */
    int64_t s23[2] = {2, 3}, st23[2] = {3, 1};
    OK(ag_squeeze(&r, z));
    check_geom("squeeze", r, s23, st23, 2, 0);
    CHECK_STR(grad_fn_name(r), "SqueezeBackward0");
    check_view_of("squeeze", r, z);
    ag_tensor_release(r);
    int64_t s231[3] = {2, 3, 1}, st231[3] = {3, 1, 1}, s213[3] = {2, 1, 3};
    OK(ag_squeeze_dim(&r, z, 1));
    check_geom("squeeze(1)", r, s231, st231, 3, 0);
    CHECK_STR(grad_fn_name(r), "SqueezeBackward1");
    check_view_of("squeeze(1)", r, z);
    ag_tensor_release(r);
    OK(ag_squeeze_dim(&r, z, -1));
    check_geom("squeeze(-1)", r, s213, NULL, 3, 0);
    ag_tensor_release(r);
    OK(ag_squeeze_dim(&r, z, 0)); /* size 2: unchanged, still a view (SqueezeBackward1) */
    check_geom("squeeze(0)", r, s2131, NULL, 4, 0);
    CHECK_STR(grad_fn_name(r), "SqueezeBackward1");
    check_view_of("squeeze(0)", r, z);
    ag_tensor_release(r);
    FAILS_OUT(AG_ERANGE, ag_squeeze_dim, z, 4);
    FAILS_OUT(AG_ERANGE, ag_squeeze_dim, z, -5);
    ag_tensor *sc;
    OK(ag_tensor_scalar(&sc, 1.0, AG_FLOAT64));
    OK(ag_squeeze(&r, sc));
    check_geom("squeeze of 0-d", r, NULL, NULL, 0, 0);
    ag_tensor_release(r);
    OK(ag_squeeze_dim(&r, sc, -1));
    check_geom("squeeze(-1) of 0-d", r, NULL, NULL, 0, 0);
    ag_tensor_release(r);

    /* unsqueeze: range -ndim-1 .. ndim; x.unsqueeze(1).stride() -> (12, 12, 4, 1) */
    int64_t s234[3] = {2, 3, 4};
    ag_tensor *x = iota(s234, 3, 1);
    static const struct {
        int64_t dim;
        int64_t shape[4], strides[4];
    } uc[] = {
        {0, {1, 2, 3, 4}, {24, 12, 4, 1}},  {1, {2, 1, 3, 4}, {12, 12, 4, 1}},
        {3, {2, 3, 4, 1}, {12, 4, 1, 1}},   {-1, {2, 3, 4, 1}, {12, 4, 1, 1}},
        {-4, {1, 2, 3, 4}, {24, 12, 4, 1}},
    };
    for (size_t k = 0; k < sizeof uc / sizeof uc[0]; k++) {
        char what[64];
        snprintf(what, sizeof what, "unsqueeze(%lld)", (long long)uc[k].dim);
        OK(ag_unsqueeze(&r, x, uc[k].dim));
        check_geom(what, r, uc[k].shape, uc[k].strides, 4, 0);
        CHECK_STR(grad_fn_name(r), "UnsqueezeBackward0");
        check_view_of(what, r, x);
        ag_tensor_release(r);
    }
    FAILS_OUT(AG_ERANGE, ag_unsqueeze, x, 4);
    FAILS_OUT(AG_ERANGE, ag_unsqueeze, x, -5);
    int64_t s1[1] = {1};
    OK(ag_unsqueeze(&r, sc, 0));
    check_geom("unsqueeze of 0-d", r, s1, NULL, 1, 0);
    ag_tensor_release(r);
    OK(ag_unsqueeze(&r, sc, -1));
    check_geom("unsqueeze(-1) of 0-d", r, s1, NULL, 1, 0);
    ag_tensor_release(r);
    FAILS_OUT(AG_ERANGE, ag_unsqueeze, sc, 1);
    int64_t s8[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    ag_tensor *big;
    OK(ag_zeros(&big, AG_FLOAT64, s8, 8));
    FAILS_OUT(AG_ERANGE, ag_unsqueeze, big, 0); /* would exceed AG_MAX_DIMS */
    ag_tensor_release(big);

    /* flatten: x.flatten().grad_fn -> ReshapeAliasBackward0 */
    int64_t s24[1] = {24}, st1[1] = {1}, s2_12[2] = {2, 12}, st2_12[2] = {12, 1};
    OK(ag_flatten(&r, x, 0, -1));
    check_geom("flatten", r, s24, st1, 1, 0);
    CHECK_STR(grad_fn_name(r), "ReshapeAliasBackward0");
    check_view_of("flatten", r, x);
    ag_tensor_release(r);
    OK(ag_flatten(&r, x, 1, 2));
    check_geom("flatten(1)", r, s2_12, st2_12, 2, 0);
    ag_tensor_release(r);
    OK(ag_flatten(&r, x, 1, 1)); /* x.flatten(1, 1) is x */
    CHECK(r == x);
    ag_tensor_release(r);
    ag_tensor *xt;
    OK(ag_transpose(&xt, x, 0, 1)); /* x.transpose(0, 1).flatten().grad_fn -> UnsafeViewBackward0 */
    OK(ag_flatten(&r, xt, 0, -1));
    check_geom("flatten of transpose", r, s24, st1, 1, 0);
    CHECK_STR(grad_fn_name(r), "UnsafeViewBackward0");
    check_copy_of("flatten of transpose", r, x);
    double wt[8] = {0, 1, 2, 3, 12, 13, 14, 15};
    check_first("flatten of transpose (first 8)", r, wt, 8);
    ag_tensor_release(r);
    ag_tensor_release(xt);
    ag_tensor *scg;
    OK(ag_tensor_scalar(&scg, 3.0, AG_FLOAT64));
    OK(ag_tensor_set_requires_grad(scg, 1));
    OK(ag_flatten(&r, scg, 0, -1)); /* torch.tensor(3.).flatten() has shape [1] */
    check_geom("flatten of 0-d", r, s1, NULL, 1, 0);
    CHECK_STR(grad_fn_name(r), "ReshapeAliasBackward0");
    ag_tensor_release(r);
    ag_tensor_release(scg);
    FAILS_OUT(AG_EINVAL, ag_flatten, x, 2, 0);
    CHECK(strstr(ag_last_error(), "start_dim cannot come after end_dim"));
    FAILS_OUT(AG_ERANGE, ag_flatten, x, 0, 3);
    FAILS_OUT(AG_ERANGE, ag_flatten, x, -4, 1);
    ag_tensor_release(sc);
    ag_tensor_release(x);
    ag_tensor_release(z);
}

/* ---- contiguous, clone, to_dtype, detach ---- */
static void copies(void)
{
    int64_t s23[2] = {2, 3}, s32[2] = {3, 2}, st32[2] = {2, 1};
    ag_tensor *x = iota(s23, 2, 1), *xt, *r;
    OK(ag_t(&xt, x));
    /* contiguous: the same tensor when already contiguous */
    OK(ag_contiguous(&r, x));
    CHECK(r == x);
    ag_tensor_release(r);
    /* x.t().contiguous().grad_fn -> CloneBackward0 */
    OK(ag_contiguous(&r, xt));
    check_geom("contiguous of t", r, s32, st32, 2, 0);
    CHECK_STR(grad_fn_name(r), "CloneBackward0");
    double wt[6] = {0, 3, 1, 4, 2, 5};
    check_values("contiguous of t", r, wt, 6, 0);
    check_copy_of("contiguous of t", r, x);
    ag_tensor_release(r);
    /* clone: a copy in the source's layout (PyTorch's preserve_format); x.clone().grad_fn ->
     * CloneBackward0 */
    OK(ag_clone(&r, x));
    CHECK(r != x);
    CHECK_STR(grad_fn_name(r), "CloneBackward0");
    check_copy_of("clone", r, x);
    ag_tensor_release(r);
    OK(ag_clone(&r, xt));
    int64_t st32t[2] = {1, 3}; /* x.t().clone().stride() == (1, 3) */
    check_geom("clone of t", r, s32, st32t, 2, 0);
    check_values("clone of t", r, wt, 6, 0);
    ag_tensor_release(r);

    /* to_dtype: x.to(torch.float32).grad_fn -> ToCopyBackward0 */
    ag_dtype dt;
    int req;
    OK(ag_to_dtype(&r, xt, AG_FLOAT32));
    OK(ag_tensor_dtype(&dt, r));
    CHECK(dt == AG_FLOAT32);
    CHECK_STR(grad_fn_name(r), "ToCopyBackward0");
    check_values("to float32", r, wt, 6, 0);
    check_copy_of("to float32", r, x);
    /* back to float64: differentiable too, and the gradient reaches x in float64 */
    ag_tensor *r64, *wv, *p, *L, *g;
    OK(ag_to_dtype(&r64, r, AG_FLOAT64));
    CHECK_STR(grad_fn_name(r64), "ToCopyBackward0");
    double wd[6] = {1, 2, 3, 4, 5, 6};
    wv = tensor_f64(wd, s32, 2, AG_FLOAT64);
    OK(ag_mul(&p, r64, wv));
    OK(ag_sum(&L, p));
    OK(ag_backward(L, NULL, 0));
    OK(ag_tensor_grad(&g, x));
    OK(ag_tensor_dtype(&dt, g));
    CHECK(dt == AG_FLOAT64);
    double wg[6] = {1, 3, 5, 2, 4, 6}; /* w transposed back */
    check_values("grad through to_dtype", g, wg, 6, 0);
    ag_tensor_release(g);
    ag_tensor_release(L);
    ag_tensor_release(p);
    ag_tensor_release(wv);
    ag_tensor_release(r64);
    ag_tensor_release(r);
    /* float32 leaf through float64: its grad stays float32 */
    ag_tensor *f = tensor_f64(wd, s23, 2, AG_FLOAT32);
    OK(ag_tensor_set_requires_grad(f, 1));
    OK(ag_to_dtype(&r, f, AG_FLOAT64));
    OK(ag_sum(&L, r));
    OK(ag_backward(L, NULL, 0));
    OK(ag_tensor_grad(&g, f));
    OK(ag_tensor_dtype(&dt, g));
    CHECK(dt == AG_FLOAT32);
    double ones[6] = {1, 1, 1, 1, 1, 1};
    check_values("float32 grad through to_dtype", g, ones, 6, 0);
    ag_tensor_release(g);
    ag_tensor_release(L);
    ag_tensor_release(r);
    ag_tensor_release(f);
    /* to int64: not recorded (x.to(torch.int64).grad_fn is None); floats truncate */
    double fr[4] = {2.7, -2.7, 0.5, -0.5};
    int64_t s4[1] = {4};
    ag_tensor *fl = tensor_f64(fr, s4, 1, AG_FLOAT64);
    OK(ag_tensor_set_requires_grad(fl, 1));
    OK(ag_to_dtype(&r, fl, AG_INT64));
    OK(ag_tensor_dtype(&dt, r));
    CHECK(dt == AG_INT64);
    CHECK_STR(grad_fn_name(r), "");
    OK(ag_tensor_requires_grad(&req, r));
    CHECK(req == 0);
    double wi[4] = {2, -2, 0, 0};
    check_values("to int64", r, wi, 4, 0);
    ag_tensor_release(r);
    ag_tensor_release(fl);
    /* same dtype: the same tensor (x.to(torch.float64) is x) */
    OK(ag_to_dtype(&r, x, AG_FLOAT64));
    CHECK(r == x);
    ag_tensor_release(r);
    FAILS_OUT(AG_EDTYPE, ag_to_dtype, x, (ag_dtype)7);

    /* detach: shares storage and version, cut from the graph */
    ag_tensor *y;
    OK(ag_mul_scalar(&y, x, 2.0));
    OK(ag_tensor_detach(&r, y));
    CHECK_STR(grad_fn_name(r), "");
    OK(ag_tensor_requires_grad(&req, r));
    CHECK(req == 0);
    int leaf = 0;
    OK(ag_tensor_is_leaf(&leaf, r));
    CHECK(leaf == 1);
    CHECK(shares(r, y) == 1);
    int64_t vy = version(y);
    OK(ag_fill_(r, 7.0)); /* allowed: r does not require grad */
    CHECK(version(y) == vy + 1);
    double sevens[6] = {7, 7, 7, 7, 7, 7};
    check_values("write through detach", y, sevens, 6, 0);
    ag_tensor_release(r);
    OK(ag_tensor_detach(&r, xt)); /* keeps the geometry */
    check_geom("detach of t", r, s32, NULL, 2, 0);
    check_values("detach of t", r, wt, 6, 0);
    ag_tensor_release(r);
    FAILS_OUT(AG_EINVAL, ag_tensor_detach, NULL);
    ag_tensor_release(y);
    ag_tensor_release(xt);
    ag_tensor_release(x);
}

/* ---- gradients flow from a view into its base ---- */
static void view_backward(void)
{
    int64_t s23[2] = {2, 3};
    ag_tensor *x = iota(s23, 2, 1), *v, *p, *L, *g;
    OK(ag_select(&v, x, 1, 2)); /* x[:, 2] */
    OK(ag_mul(&p, v, v));
    OK(ag_sum(&L, p));
    OK(ag_backward(L, NULL, 0));
    OK(ag_tensor_grad(&g, x));
    double want[6] = {0, 0, 4, 0, 0, 10};
    check_values("grad of x[:, 2]^2", g, want, 6, 0);
    ag_tensor_release(g);
    ag_tensor_release(L);
    ag_tensor_release(p);
    ag_tensor_release(v);
    ag_tensor_release(x);
}

/* ---- gradient checks, including views of non-contiguous inputs ---- */
static void grads(void)
{
    int64_t s234[3] = {2, 3, 4}, s31[2] = {3, 1}, s2131[4] = {2, 1, 3, 1}, s23[2] = {2, 3};
    gc_input in234[1] = {{s234, 3, NULL, 0, 0, 1, 0}};
    gc_input in31[1] = {{s31, 2, NULL, 0, 0, 1, 0}};
    gc_input in2131[1] = {{s2131, 4, NULL, 0, 0, 1, 0}};
    gc_input in23[1] = {{s23, 2, NULL, 0, 0, 1, 0}};
    gc_input in0[1] = {{NULL, 0, NULL, 0, 0, 1, 0}};
#define E {S_END, 0, {0}}
    static const struct {
        const char *name;
        int input; /* 0: [2,3,4], 1: [3,1], 2: [2,1,3,1], 3: [2,3], 4: 0-d */
        int second; /* also gradgradcheck */
        step steps[4];
    } cases[] = {
        {"reshape", 0, 1, {{S_RESHAPE, 2, {4, -1}}, E}},
        {"reshape of transpose (copy)", 0, 1, {{S_TRANSPOSE, 0, {0, 1}}, {S_RESHAPE, 2, {6, 4}}, E}},
        {"reshape of transpose (view)", 0, 0, {{S_TRANSPOSE, 0, {0, 1}}, {S_RESHAPE, 4, {3, 2, 2, 2}}, E}},
        {"view", 0, 0, {{S_VIEW, 3, {3, 2, 4}}, E}},
        {"view of permute", 0, 0, {{S_PERMUTE, 3, {1, 0, 2}}, {S_VIEW, 4, {3, 2, 2, 2}}, E}},
        {"transpose", 0, 0, {{S_TRANSPOSE, 0, {0, 2}}, E}},
        {"t", 3, 0, {{S_T, 0, {0}}, E}},
        {"permute", 0, 1, {{S_PERMUTE, 3, {2, 0, 1}}, E}},
        {"permute of transpose", 0, 0, {{S_TRANSPOSE, 0, {1, 2}}, {S_PERMUTE, 3, {1, 2, 0}}, E}},
        {"expand", 1, 1, {{S_EXPAND, 3, {2, 3, 4}}, E}},
        {"expand of t", 1, 0, {{S_T, 0, {0}}, {S_EXPAND, 2, {3, 3}}, E}},
        {"expand of 0-d", 4, 0, {{S_EXPAND, 2, {2, 3}}, E}},
        {"slice", 0, 1, {{S_SLICE, 0, {2, 1, 4, 2}}, E}},
        {"slice of permute, step", 0, 1, {{S_PERMUTE, 3, {2, 0, 1}}, {S_SLICE, 0, {0, 1, 4, 2}}, E}},
        {"slice of slice", 0, 0, {{S_SLICE, 0, {1, 1, 3, 1}}, {S_SLICE, 0, {-1, 0, 4, 3}}, E}},
        {"narrow of transpose", 0, 0, {{S_TRANSPOSE, 0, {0, 2}}, {S_NARROW, 0, {0, 1, 2}}, E}},
        {"select", 0, 1, {{S_SELECT, 0, {1, -1}}, E}},
        {"select of transpose", 0, 1, {{S_TRANSPOSE, 0, {0, 2}}, {S_SELECT, 0, {2, 1}}, E}},
        {"select of slice", 0, 0, {{S_SLICE, 0, {2, 1, 4, 2}}, {S_SELECT, 0, {0, 1}}, E}},
        {"squeeze", 2, 0, {{S_SQUEEZE, 0, {0}}, E}},
        {"squeeze_dim", 2, 0, {{S_SQUEEZE_DIM, 0, {-1}}, E}},
        {"unsqueeze of transpose", 0, 0, {{S_TRANSPOSE, 0, {0, 1}}, {S_UNSQUEEZE, 0, {1}}, E}},
        {"flatten", 0, 0, {{S_FLATTEN, 0, {1, 2}}, E}},
        {"flatten of permute", 0, 0, {{S_PERMUTE, 3, {2, 1, 0}}, {S_FLATTEN, 0, {0, 1}}, E}},
        {"flatten of 0-d", 4, 0, {{S_FLATTEN, 0, {0, -1}}, E}},
        {"contiguous of permute", 0, 0, {{S_PERMUTE, 3, {2, 0, 1}}, {S_CONTIGUOUS, 0, {0}}, E}},
        {"clone of transpose", 0, 1, {{S_TRANSPOSE, 0, {0, 1}}, {S_CLONE, 0, {0}}, E}},
        {"expand, slice, reshape", 1, 1,
         {{S_EXPAND, 3, {2, 3, 4}}, {S_SLICE, 0, {2, 0, 4, 2}}, {S_RESHAPE, 2, {3, 4}}, E}},
    };
#undef E
    const gc_input *inputs[5] = {in234, in31, in2131, in23, in0};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        void *ctx = (void *)cases[k].steps;
        CHECK(gradcheck(cases[k].name, run_steps, inputs[cases[k].input], 1, ctx));
        if (cases[k].second)
            CHECK(gradgradcheck(cases[k].name, run_steps, inputs[cases[k].input], 1, ctx));
    }
}

/* A reshape that copies (and flatten, through it) returns torch 1.13's _unsafe_view of its
 * private copy: UnsafeViewBackward0, but not a view. Made under no_grad it takes in-place
 * ops under grad mode, and an in-place op gives it the op's own grad_fn. */
static void copying_reshape_is_not_a_view(void)
{
    int64_t s22[2] = {2, 2}, m1[1] = {-1}, s4[1] = {4};
    double wd[4] = {1, 2, 3, 4};
    for (int flat = 0; flat < 2; flat++) {
        const char *what = flat ? "w.t().flatten()" : "w.t().reshape(-1)";
        /* with torch.no_grad(): y = w.t().reshape(-1); y.add_(z), z = ones(4) requiring grad */
        ag_tensor *w = tensor_f64(wd, s22, 2, AG_FLOAT64), *wt, *y, *z, *s, *g = NULL;
        OK(ag_t(&wt, w));
        int prev = ag_set_grad_enabled(0);
        if (flat) OK(ag_flatten(&y, wt, 0, -1));
        else OK(ag_reshape(&y, wt, m1, 1));
        ag_set_grad_enabled(prev);
        CHECK(version(y) == 0);
        CHECK(!shares(y, w));
        OK(ag_ones(&z, AG_FLOAT64, s4, 1));
        OK(ag_tensor_set_requires_grad(z, 1));
        OK(ag_add_(y, z));
        CHECK_STR(grad_fn_name(y), "AddBackward0");
        double want[4] = {2, 4, 3, 5}, w_same[4] = {1, 2, 3, 4};
        check_values(what, y, want, 4, 0);
        check_values("w unchanged", w, w_same, 4, 0);
        ag_tensor_release(y);
        ag_tensor_release(wt);

        /* w requiring grad: y = w.t().reshape(-1) (UnsafeViewBackward0); y.mul_(2) is
         * MulBackward0, y.sum().backward() gives w.grad = 2 */
        OK(ag_tensor_set_requires_grad(w, 1));
        OK(ag_t(&wt, w));
        if (flat) OK(ag_flatten(&y, wt, 0, -1));
        else OK(ag_reshape(&y, wt, m1, 1));
        CHECK_STR(grad_fn_name(y), "UnsafeViewBackward0");
        OK(ag_mul_scalar_(y, 2));
        CHECK_STR(grad_fn_name(y), "MulBackward0");
        CHECK(version(y) == 1);
        OK(ag_sum(&s, y));
        OK(ag_backward(s, NULL, 0));
        OK(ag_tensor_grad(&g, w));
        double twos[4] = {2, 2, 2, 2};
        check_values("w.grad", g, twos, 4, 0);
        ag_tensor_release(s);
        ag_tensor_release(y);
        /* under no_grad, an in-place op leaves the grad_fn as it was */
        if (flat) OK(ag_flatten(&y, wt, 0, -1));
        else OK(ag_reshape(&y, wt, m1, 1));
        prev = ag_set_grad_enabled(0);
        OK(ag_mul_scalar_(y, 2));
        ag_set_grad_enabled(prev);
        CHECK_STR(grad_fn_name(y), "UnsafeViewBackward0");
        ag_tensor *ts[] = {g, y, z, wt, w};
        for (size_t i = 0; i < 5; i++) ag_tensor_release(ts[i]);
    }

    /* a reshape that is a view stays one: made under no_grad, it refuses y.add_(z) */
    ag_tensor *w = tensor_f64(wd, s22, 2, AG_FLOAT64), *y, *z;
    int prev = ag_set_grad_enabled(0);
    OK(ag_reshape(&y, w, m1, 1));
    ag_set_grad_enabled(prev);
    OK(ag_ones(&z, AG_FLOAT64, s4, 1));
    OK(ag_tensor_set_requires_grad(z, 1));
    FAILS(AG_EINVAL, ag_add_(y, z));
    ag_tensor_release(z);
    ag_tensor_release(y);
    ag_tensor_release(w);
}

/* Sizes whose product overflows int64 are refused everywhere a shape is made, even with a 0
 * among them (an empty tensor's strides must fit too; they overflowed, undefined behaviour
 * that UBSan caught); a 0 beside the largest size whose strides do fit is a valid empty
 * tensor, as in PyTorch. */
static void huge_shapes(void)
{
    ag_tensor *z, *o = NULL, *one;
    const int64_t big = INT64_C(1) << 62;
    int64_t s1[3] = {0, big, 4}, s2[2] = {0, INT64_MAX}, zero[1] = {0}, ones[2] = {1, 1};
    FAILS(AG_EINVAL, ag_empty(&o, AG_FLOAT32, s1, 3));
    CHECK(strstr(ag_last_error(), "shape [0, 4611686018427387904, 4] is too large"));
    CHECK(o == NULL);
    OK(ag_zeros(&z, AG_FLOAT32, s2, 2));
    int64_t st[2];
    OK(ag_tensor_strides(st, 2, z));
    CHECK(st[0] == INT64_MAX && st[1] == 1);
    ag_tensor *sum;
    OK(ag_sum(&sum, z));
    double v = -1;
    OK(ag_tensor_item(&v, sum));
    CHECK(v == 0.0);
    ag_tensor_release(sum);
    ag_tensor_release(z);
    OK(ag_zeros(&z, AG_FLOAT32, zero, 1));
    int64_t r1[3] = {big, 4, 0}, r2[3] = {INT64_C(1) << 40, INT64_C(1) << 40, -1};
    FAILS(AG_EINVAL, ag_reshape(&o, z, r1, 3));
    FAILS(AG_EINVAL, ag_view(&o, z, r1, 3));
    /* a -1 beside sizes whose product overflows: a count that does not match, as PyTorch
     * says it (not a size too large), naming the shape as given */
    FAILS(AG_ESHAPE, ag_reshape(&o, z, r2, 3));
    CHECK(strstr(ag_last_error(), "shape '[1099511627776, 1099511627776, -1]' is invalid for "
                                  "input of size 0"));
    CHECK(o == NULL);
    {
        ag_tensor *m;
        int64_t m_shape[2] = {2, 3}, r3[2] = {-1, big}, r4[2] = {-1, INT64_C(1) << 61};
        OK(ag_zeros(&m, AG_FLOAT32, m_shape, 2));
        FAILS(AG_ESHAPE, ag_reshape(&o, m, r3, 2));
        CHECK(strstr(ag_last_error(), "shape '[-1, 4611686018427387904]' is invalid for input "
                                      "of size 6"));
        FAILS(AG_ESHAPE, ag_view(&o, m, r4, 2));
        CHECK(o == NULL);
        ag_tensor_release(m);
    }
    OK(ag_ones(&one, AG_FLOAT32, ones, 2));
    int64_t e1[2] = {INT64_MAX, INT64_MAX}, e2[3] = {big, 4, 4};
    FAILS(AG_EINVAL, ag_expand(&o, one, e1, 2));
    FAILS(AG_EINVAL, ag_expand(&o, one, e2, 3));
    ag_tensor *w, *ws[2];
    int64_t s3[2] = {0, big};
    OK(ag_zeros(&w, AG_FLOAT32, s3, 2));
    ws[0] = ws[1] = w;
    FAILS(AG_EINVAL, ag_cat(&o, ws, 2, 1));
    CHECK(strstr(ag_last_error(), "overflows"));
    OK(ag_cat(&o, ws, 2, 0)); /* [0, 2^62]: fine */
    ag_tensor_release(o);
    ag_tensor_release(w);
    ag_tensor_release(one);
    ag_tensor_release(z);
}

/* Copies of permuted tensors large enough for the tiled transpose (kernel_copy), sizes not
 * multiples of the tile, with outer dims, both element sizes, at 1 and 2 threads: every
 * element where index arithmetic puts it. */
static void transposing_copies(void)
{
    static const int64_t shape[3] = {3, 40, 70};
    static const int64_t perms[4][3] = {{0, 2, 1}, {2, 1, 0}, {1, 2, 0}, {2, 0, 1}};
    enum { N = 3 * 40 * 70 };
    static double data[N], got[N];
    for (int i = 0; i < N; i++) data[i] = i;
    for (int threads = 1; threads <= 2; threads++) {
        OK(ag_set_num_threads(threads));
        for (int dt = 0; dt < 2; dt++)
            for (int p = 0; p < 4; p++) {
                ag_tensor *x = tensor_f64(data, shape, 3, dt ? AG_FLOAT64 : AG_FLOAT32), *v, *c;
                OK(ag_permute(&v, x, perms[p], 3));
                OK(ag_contiguous(&c, v));
                OK(ag_tensor_copy_f64(got, N, c));
                int64_t vs[3], idx[3], bad = -1;
                for (int d = 0; d < 3; d++) vs[d] = shape[perms[p][d]];
                for (int64_t k = 0; k < N && bad < 0; k++) {
                    idx[2] = k % vs[2];
                    idx[1] = k / vs[2] % vs[1];
                    idx[0] = k / (vs[1] * vs[2]);
                    int64_t src[3];
                    for (int d = 0; d < 3; d++) src[perms[p][d]] = idx[d];
                    if (got[k] != (double)((src[0] * 40 + src[1]) * 70 + src[2])) bad = k;
                }
                if (bad >= 0) printf("transposing copy: perm %d, %s, %d threads: element %lld\n", p,
                                     dt ? "float64" : "float32", threads, (long long)bad);
                CHECK(bad < 0);
                ag_tensor_release(c);
                ag_tensor_release(v);
                ag_tensor_release(x);
            }
    }
    OK(ag_set_num_threads(0));
}

int main(void)
{
    transposing_copies();
    huge_shapes();
    reshape_view();
    transpose_permute();
    expand();
    slice_narrow_select();
    squeeze_unsqueeze_flatten();
    copies();
    view_backward();
    grads();
    copying_reshape_is_not_a_view();
    return harness_finish("test_shape");
}
