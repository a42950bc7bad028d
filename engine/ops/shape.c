/*
 * shape.c: views (reshape, view, transpose, permute, expand, slice, narrow, select, squeeze,
 * unsqueeze, flatten, as_strided), copies (contiguous, clone, to_dtype), and detach.
 * A view shares its input's storage and version counter; its `base` is the root tensor that
 * owns the memory, which in-place ops on the view need (see inplace.c).
 */
#include <assert.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

#include "ewise.h"

typedef struct geom {
    int ndim;
    int64_t shape[MAX_DIMS];
    int64_t strides[MAX_DIMS];
    int64_t offset;
} geom;

/* What view backward formulas need: the input's shape and the op's parameters. */
typedef struct view_attr {
    geom in;        /* input geometry (shape is what matters for most) */
    geom view;      /* the view's geometry relative to a contiguous input (slice, select) */
    int64_t d0, d1; /* transpose dims */
    int64_t perm[MAX_DIMS];
} view_attr;

static void geom_of(const tensor *t, geom *g)
{
    g->ndim = t->ndim;
    memcpy(g->shape, t->shape, (size_t)t->ndim * sizeof(int64_t));
    memcpy(g->strides, t->strides, (size_t)t->ndim * sizeof(int64_t));
    g->offset = t->offset;
}

tensor *view_alias(tensor *t, const int64_t *shape, const int64_t *strides, int ndim,
                   int64_t offset)
{
    tensor *v = tensor_alias(t, shape, strides, ndim, offset);
    if (!v) return NULL;
    tensor *base = t->base ? t->base : t;
    tensor_retain(base);
    v->base = base;
    /* A view of a refused view stays refused (PyTorch propagates its CreationMeta too). */
    v->view_kind = t->base && t->view_kind != VK_DEFAULT ? t->view_kind
                   : grad_mode_enabled()                 ? VK_DEFAULT
                                                         : VK_NO_GRAD;
    atomic_init(&v->view_version, (uint32_t)tensor_version(t));
    return v;
}

/* Creates the view and records its node; *n receives the node (or NULL). */
static eng_err make_view(tensor **out, tensor *t, const int64_t *shape, const int64_t *strides,
                         int ndim, int64_t offset, const node_type *bw, node **n)
{
    tensor *v = view_alias(t, shape, strides, ndim, offset);
    if (!v) return E_NOMEM;
    eng_err e = E_OK;
    node *nd = record(bw, &t, 1, &v, 1, 0, sizeof(view_attr), &e);
    if (e) {
        tensor_release(v);
        return e;
    }
    if (nd) geom_of(t, &((view_attr *)node_attrs(nd))->in);
    if (n) *n = nd;
    *out = v;
    return E_OK;
}

static view_attr *attr(node *n) { return (view_attr *)node_attrs(n); }

/* PyTorch's _unsafe_view, and the in-place squeeze_ torch.matmul applies to its own product:
 * `t`, a contiguous tensor the calling op has just made and holds alone, seen with another
 * contiguous shape and recorded under `bw`. The result shares t's storage, which nothing else
 * can reach, but it is not a view: no base, so in-place ops, no_grad and version checks treat
 * it as the fresh tensor it is in PyTorch (a view would be refused when made under no_grad, and
 * take AsStridedBackward0 after an in-place op). Every op that reshapes a private intermediate
 * for its result goes through here, never through make_view / view_alias. */
static eng_err fresh_reshape(tensor **out, tensor *t, const int64_t *shape, int ndim,
                             const node_type *bw)
{
    assert(!t->base && tensor_is_contiguous(t));
    int64_t st[MAX_DIMS];
    contiguous_strides(shape, ndim, st);
    tensor *r = tensor_alias(t, shape, st, ndim, t->offset);
    if (!r) return E_NOMEM;
    eng_err e = E_OK;
    node *n = record(bw, &t, 1, &r, 1, 0, sizeof(view_attr), &e);
    if (e) {
        tensor_release(r);
        return e;
    }
    if (n) geom_of(t, &attr(n)->in);
    *out = r;
    return E_OK;
}

/* ---- reshape family ---- */
static eng_err reshape_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    if (!c->needed[0]) return E_OK;
    geom *in = &attr(n)->in;
    return op_reshape(&gout[0], gin[0], in->shape, in->ndim);
}
static const node_type VIEW_BW = {"ViewBackward0", reshape_backward, NULL};
static const node_type RESHAPE_ALIAS_BW = {"ReshapeAliasBackward0", reshape_backward, NULL};
static const node_type UNSAFE_VIEW_BW = {"UnsafeViewBackward0", reshape_backward, NULL};
static const node_type SQUEEZE0_BW = {"SqueezeBackward0", reshape_backward, NULL};
static const node_type SQUEEZE1_BW = {"SqueezeBackward1", reshape_backward, NULL};
static const node_type UNSQUEEZE_BW = {"UnsqueezeBackward0", reshape_backward, NULL};
static const node_type SQUEEZE_INPLACE_BW = {"SqueezeBackward3", reshape_backward, NULL};

eng_err op_unsafe_view(tensor **out, tensor *t, const int64_t *shape, int ndim)
{
    return fresh_reshape(out, t, shape, ndim, &UNSAFE_VIEW_BW);
}

eng_err op_squeeze_fresh_(tensor **out, tensor *t, int dim)
{
    assert(dim >= 0 && dim < t->ndim && t->shape[dim] == 1);
    int64_t sh[MAX_DIMS];
    int nd = 0;
    for (int d = 0; d < t->ndim; d++)
        if (d != dim) sh[nd++] = t->shape[d];
    eng_err e = fresh_reshape(out, t, sh, nd, &SQUEEZE_INPLACE_BW);
    /* squeeze_ is an in-place op: PyTorch's result has version 1. Nothing saved t's storage
     * (it is private to the caller), so no saved-tensor check can see this: inplace_epoch
     * stays. */
    if (!e) atomic_fetch_add(&t->st->version, 1);
    return e;
}

/* Resolves one -1 and checks the element count. */
static eng_err infer_shape(const tensor *t, const int64_t *shape, int ndim, int64_t *res)
{
    if (ndim < 0 || ndim > MAX_DIMS)
        return err_set(E_RANGE, "tensors have at most %d dimensions, got %d", MAX_DIMS, ndim);
    int infer = -1;
    int64_t known = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] == -1) {
            if (infer >= 0) return err_set(E_INVAL, "only one dimension can be inferred");
            infer = i;
            res[i] = 1;
        } else if (shape[i] < 0) {
            return err_set(E_INVAL, "invalid shape dimension %lld", (long long)shape[i]);
        } else {
            res[i] = shape[i];
        }
    }
    /* The count first, as PyTorch checks it: sizes whose product overflows hold more elements
     * than any tensor (unless a 0 is among them). */
    bool zero = false, over = false;
    for (int i = 0; i < ndim; i++) {
        if (i == infer) continue;
        if (res[i] == 0) zero = true;
        else over |= __builtin_mul_overflow(known, res[i], &known);
    }
    if (zero) known = 0;
    else if (over) goto bad;
    if (infer >= 0) {
        if (known == 0 && t->numel == 0) {
            char s[160];
            return err_set(E_SHAPE,
                           "cannot reshape tensor of 0 elements into shape %s because the "
                           "unspecified dimension size -1 can be any value and is ambiguous",
                           fmt_shape(s, sizeof s, shape, ndim));
        }
        if (known == 0 || t->numel % known) goto bad;
        res[infer] = t->numel / known;
    } else if (known != t->numel) {
        goto bad;
    }
    /* An empty tensor takes any shape with a 0, but its strides must still fit. */
    return shape_check(res, ndim, NULL);
bad:;
    char s[160];
    return err_set(E_SHAPE, "shape '%s' is invalid for input of size %lld",
                   fmt_shape(s, sizeof s, shape, ndim), (long long)t->numel);
}

/* PyTorch's computeStride: strides for viewing t as `shape`, or false if impossible. */
static bool view_strides(const tensor *t, const int64_t *shape, int ndim, int64_t *strides)
{
    if (t->numel == 0 || t->ndim == 0) {
        contiguous_strides(shape, ndim, strides);
        return true;
    }
    int64_t view_d = ndim - 1;
    int64_t chunk_base_stride = t->strides[t->ndim - 1];
    int64_t tensor_numel = 1, view_numel = 1;
    for (int64_t d = t->ndim - 1; d >= 0; d--) {
        tensor_numel *= t->shape[d];
        if (d == 0 || (t->shape[d - 1] != 1 && t->strides[d - 1] != tensor_numel * chunk_base_stride)) {
            while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
                strides[view_d] = view_numel * chunk_base_stride;
                view_numel *= shape[view_d];
                view_d--;
            }
            if (view_numel != tensor_numel) return false;
            if (d > 0) {
                chunk_base_stride = t->strides[d - 1];
                tensor_numel = 1;
                view_numel = 1;
            }
        }
    }
    return view_d == -1;
}

eng_err op_view(tensor **out, tensor *t, const int64_t *shape, int ndim)
{
    int64_t res[MAX_DIMS], st[MAX_DIMS];
    eng_err e = infer_shape(t, shape, ndim, res);
    if (e) return e;
    if (!view_strides(t, res, ndim, st))
        return err_set(E_SHAPE, "view size is not compatible with input tensor's size and stride "
                       "(at least one dimension spans across two contiguous subspaces). Use "
                       ".reshape(...) instead.");
    return make_view(out, t, res, st, ndim, t->offset, &VIEW_BW, NULL);
}

static eng_err reshape_as(tensor **out, tensor *t, const int64_t *res, int ndim)
{
    int64_t st[MAX_DIMS];
    if (view_strides(t, res, ndim, st))
        return make_view(out, t, res, st, ndim, t->offset, &RESHAPE_ALIAS_BW, NULL);
    /* Not viewable: a contiguous copy with the new shape, as PyTorch's _unsafe_view(clone)
     * (CloneBackward0 under UnsafeViewBackward0); the result is not a view. */
    tensor *c = NULL;
    eng_err e = op_clone_contiguous(&c, t);
    if (e) return e;
    e = op_unsafe_view(out, c, res, ndim);
    tensor_release(c);
    return e;
}

eng_err op_reshape(tensor **out, tensor *t, const int64_t *shape, int ndim)
{
    int64_t res[MAX_DIMS];
    eng_err e = infer_shape(t, shape, ndim, res);
    if (e) return e;
    return reshape_as(out, t, res, ndim);
}

eng_err op_flatten(tensor **out, tensor *t, int64_t start, int64_t end)
{
    int s, en;
    eng_err e;
    if ((e = wrap_dim(start, t->ndim, &s)) || (e = wrap_dim(end, t->ndim, &en))) return e;
    if (s > en) return err_set(E_INVAL, "flatten() has invalid args: start_dim cannot come after "
                               "end_dim");
    if (t->ndim == 0) {
        int64_t one = 1;
        return reshape_as(out, t, &one, 1);
    }
    if (s == en) {
        tensor_retain(t);
        *out = t;
        return E_OK;
    }
    int64_t res[MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < s; i++) res[nd++] = t->shape[i];
    int64_t m = 1;
    for (int i = s; i <= en; i++) m *= t->shape[i];
    res[nd++] = m;
    for (int i = en + 1; i < t->ndim; i++) res[nd++] = t->shape[i];
    return reshape_as(out, t, res, nd);
}

eng_err op_squeeze(tensor **out, tensor *t)
{
    int64_t sh[MAX_DIMS], st[MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] != 1) {
            sh[nd] = t->shape[i];
            st[nd++] = t->strides[i];
        }
    return make_view(out, t, sh, st, nd, t->offset, &SQUEEZE0_BW, NULL);
}

eng_err op_squeeze_dim(tensor **out, tensor *t, int64_t dim)
{
    int d;
    eng_err e = wrap_dim(dim, t->ndim, &d);
    if (e) return e;
    int64_t sh[MAX_DIMS], st[MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < t->ndim; i++)
        if (i != d || t->shape[i] != 1) {
            sh[nd] = t->shape[i];
            st[nd++] = t->strides[i];
        }
    return make_view(out, t, sh, st, nd, t->offset, &SQUEEZE1_BW, NULL);
}

eng_err op_unsqueeze(tensor **out, tensor *t, int64_t dim)
{
    int d;
    eng_err e = wrap_dim(dim, t->ndim + 1, &d);
    if (e) return e;
    if (t->ndim == MAX_DIMS)
        return err_set(E_RANGE, "tensors have at most %d dimensions", MAX_DIMS);
    int64_t sh[MAX_DIMS], st[MAX_DIMS];
    int nd = 0;
    for (int i = 0; i <= t->ndim; i++) {
        if (i == d) {
            sh[nd] = 1;
            st[nd++] = i < t->ndim ? t->strides[i] * t->shape[i] : 1;
        }
        if (i < t->ndim) {
            sh[nd] = t->shape[i];
            st[nd++] = t->strides[i];
        }
    }
    return make_view(out, t, sh, st, nd, t->offset, &UNSQUEEZE_BW, NULL);
}

/* ---- transpose, t, permute ---- */
static eng_err transpose_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    if (!c->needed[0]) return E_OK;
    return op_transpose(&gout[0], gin[0], attr(n)->d0, attr(n)->d1);
}
static const node_type TRANSPOSE_BW = {"TransposeBackward0", transpose_backward, NULL};

static eng_err swap_view(tensor **out, tensor *t, int d0, int d1, const node_type *bw)
{
    int64_t sh[MAX_DIMS], st[MAX_DIMS];
    memcpy(sh, t->shape, (size_t)t->ndim * sizeof(int64_t));
    memcpy(st, t->strides, (size_t)t->ndim * sizeof(int64_t));
    if (t->ndim > 0) {
        sh[d0] = t->shape[d1];
        sh[d1] = t->shape[d0];
        st[d0] = t->strides[d1];
        st[d1] = t->strides[d0];
    }
    node *n = NULL;
    eng_err e = make_view(out, t, sh, st, t->ndim, t->offset, bw, &n);
    if (!e && n) {
        attr(n)->d0 = d0;
        attr(n)->d1 = d1;
    }
    return e;
}

eng_err op_transpose(tensor **out, tensor *t, int64_t d0, int64_t d1)
{
    int a, b;
    eng_err e;
    if ((e = wrap_dim(d0, t->ndim, &a)) || (e = wrap_dim(d1, t->ndim, &b))) return e;
    return swap_view(out, t, a, b, &TRANSPOSE_BW);
}

static eng_err t_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    (void)n;
    return c->needed[0] ? op_t(&gout[0], gin[0]) : E_OK;
}
static const node_type T_BW = {"TBackward0", t_backward, NULL};

eng_err op_t(tensor **out, tensor *t)
{
    if (t->ndim > 2)
        return err_set(E_SHAPE, "t() expects a tensor with <= 2 dimensions, but self is %dD",
                       t->ndim);
    return swap_view(out, t, 0, t->ndim == 2 ? 1 : 0, &T_BW);
}

static eng_err permute_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    if (!c->needed[0]) return E_OK;
    int64_t inv[MAX_DIMS];
    int nd = attr(n)->in.ndim;
    for (int i = 0; i < nd; i++) inv[attr(n)->perm[i]] = i;
    return op_permute(&gout[0], gin[0], inv, nd);
}
static const node_type PERMUTE_BW = {"PermuteBackward0", permute_backward, NULL};

eng_err op_permute(tensor **out, tensor *t, const int64_t *dims, int ndims)
{
    if (ndims != t->ndim)
        return err_set(E_INVAL, "permute(sparse_coo): number of dimensions in the tensor input does "
                       "not match the length of the desired ordering of dimensions i.e. input.dim() "
                       "= %d is not equal to len(dims) = %d", t->ndim, ndims);
    int64_t sh[MAX_DIMS], st[MAX_DIMS], perm[MAX_DIMS];
    bool seen[MAX_DIMS] = {false};
    for (int i = 0; i < ndims; i++) {
        int d;
        eng_err e = wrap_dim(dims[i], t->ndim, &d);
        if (e) return e;
        if (seen[d]) return err_set(E_INVAL, "permute(): duplicate dims are not allowed.");
        seen[d] = true;
        perm[i] = d;
        sh[i] = t->shape[d];
        st[i] = t->strides[d];
    }
    node *n = NULL;
    eng_err e = make_view(out, t, sh, st, ndims, t->offset, &PERMUTE_BW, &n);
    if (!e && n) memcpy(attr(n)->perm, perm, sizeof perm);
    return e;
}

/* ---- expand ---- */
static eng_err pass_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    (void)n;
    pass_gradient(c, gin, gout, 1); /* the engine sums it down to the input's shape */
    return E_OK;
}
static const node_type EXPAND_BW = {"ExpandBackward0", pass_backward, NULL};

eng_err expand_geometry(const tensor *t, const int64_t *shape, int ndim, int64_t *sh,
                        int64_t *st)
{
    if (ndim < t->ndim) {
        char a[160], b[160];
        return err_set(E_SHAPE, "the number of sizes provided (%d) must be greater or equal to the "
                       "number of dimensions in the tensor (%d): %s vs %s", ndim, t->ndim,
                       fmt_shape(a, sizeof a, shape, ndim), fmt_shape(b, sizeof b, t->shape, t->ndim));
    }
    if (ndim > MAX_DIMS) return err_set(E_RANGE, "tensors have at most %d dimensions", MAX_DIMS);
    /* A new leading dim of size 1 gets the stride of a contiguous one over the dims after it
     * (0 below an expanded dim), as PyTorch's inferExpandGeometry; other new dims 0. The
     * errors name the first bad dim, so they are checked first. */
    for (int i = 0; i < ndim - t->ndim; i++)
        if (shape[i] < 0)
            return err_set(E_INVAL, "The expanded size of the tensor (%lld) isn't allowed in a "
                           "leading, non-existing dimension %d", (long long)shape[i], i);
    for (int i = ndim - t->ndim; i < ndim; i++) {
        int ti = i - (ndim - t->ndim);
        int64_t want = shape[i];
        int64_t have = t->shape[ti];
        if (want == -1) want = have;
        if (have == want) {
            sh[i] = have;
            st[i] = t->strides[ti];
        } else if (have == 1 && want >= 0) {
            sh[i] = want;
            st[i] = 0;
        } else {
            return err_set(E_SHAPE, "The expanded size of the tensor (%lld) must match the existing "
                           "size (%lld) at non-singleton dimension %d.", (long long)want,
                           (long long)have, i);
        }
    }
    for (int i = ndim - t->ndim - 1; i >= 0; i--) {
        sh[i] = shape[i];
        st[i] = shape[i] != 1 || !t->ndim ? 0 : i + 1 < ndim ? sh[i + 1] * st[i + 1] : 1;
    }
    return shape_check(sh, ndim, NULL); /* the element count must fit, as PyTorch checks */
}

eng_err op_expand(tensor **out, tensor *t, const int64_t *shape, int ndim)
{
    int64_t sh[MAX_DIMS], st[MAX_DIMS];
    eng_err e = expand_geometry(t, shape, ndim, sh, st);
    if (e) return e;
    return make_view(out, t, sh, st, ndim, t->offset, &EXPAND_BW, NULL);
}

/* ---- slice, narrow, select ---- */
/* Gradient of a view taken at geometry `view` of a contiguous input: zeros of the input's
 * shape with the view's region set to the gradient. */
static eng_err scatter_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    if (!c->needed[0]) return E_OK;
    view_attr *a = attr(n);
    tensor *z;
    eng_err e = op_full(&z, (dtype)gin[0]->dtype, a->in.shape, a->in.ndim, 0.0);
    if (e) return e;
    e = op_as_strided_scatter(&gout[0], z, gin[0], a->view.shape, a->view.strides, a->view.ndim,
                              a->view.offset);
    tensor_release(z);
    return e;
}
static const node_type SLICE_BW = {"SliceBackward0", scatter_backward, NULL};
static const node_type SELECT_BW = {"SelectBackward0", scatter_backward, NULL};

/* geometry of the view in a contiguous tensor of t's shape */
static void contiguous_geom(const tensor *t, geom *g)
{
    g->ndim = t->ndim;
    memcpy(g->shape, t->shape, (size_t)t->ndim * sizeof(int64_t));
    contiguous_strides(t->shape, t->ndim, g->strides);
    g->offset = 0;
}

eng_err op_slice(tensor **out, tensor *t, int64_t dim, int64_t start, int64_t end, int64_t step)
{
    int d;
    eng_err e = wrap_dim(dim, t->ndim, &d);
    if (e) return e;
    if (t->ndim == 0) return err_set(E_RANGE, "slice() cannot be applied to a 0-dim tensor.");
    if (step <= 0) return err_set(E_INVAL, "slice step must be positive, got %lld", (long long)step);
    int64_t size = t->shape[d];
    if (start < 0) start += size;
    if (end < 0) end += size;
    if (start < 0) start = 0;
    if (start > size) start = size;
    if (end < start) end = start;
    if (end > size) end = size;
    /* (without overflow for any step: INT64_MAX once gave a length of -1) */
    int64_t len = end > start ? 1 + (end - start - 1) / step : 0;
    /* The stride is PyTorch's, stride * step, even where one element or none makes any
     * stride do (x[0:100:2] of one row: PyTorch's overlap checks compare such strides). With
     * one element or none and a product that does not fit, a step beyond the size counts as
     * the size (PyTorch fails there, or wraps). */
    int64_t step_eff = len <= 1 && step > size ? (size > 1 ? size : 1) : step;
    int64_t sh[MAX_DIMS], st[MAX_DIMS];
    memcpy(sh, t->shape, (size_t)t->ndim * sizeof(int64_t));
    memcpy(st, t->strides, (size_t)t->ndim * sizeof(int64_t));
    sh[d] = len;
    if (__builtin_mul_overflow(t->strides[d], step, &st[d])) st[d] = t->strides[d] * step_eff;
    node *n = NULL;
    e = make_view(out, t, sh, st, t->ndim, t->offset + start * t->strides[d], &SLICE_BW, &n);
    if (!e && n) {
        geom *g = &attr(n)->view;
        contiguous_geom(t, g);
        g->offset = start * g->strides[d];
        g->shape[d] = len;
        int64_t gs;
        g->strides[d] = __builtin_mul_overflow(g->strides[d], step, &gs)
                            ? g->strides[d] * step_eff
                            : gs;
    }
    return e;
}

eng_err op_narrow(tensor **out, tensor *t, int64_t dim, int64_t start, int64_t length)
{
    /* PyTorch 1.13's checks, in its order: the 0-d check comes before the dim's. */
    if (t->ndim == 0) return err_set(E_RANGE, "narrow() cannot be applied to a 0-dim tensor.");
    int d;
    eng_err e = wrap_dim(dim, t->ndim, &d);
    if (e) return e;
    int64_t size = t->shape[d];
    /* start == size is the end, valid with length 0; any other start is wrapped like a dim
     * index (maybe_wrap_dim), so a size-0 dim takes -1 and 0 (both meaning 0) */
    if (start != size) {
        int64_t n = size > 0 ? size : 1;
        if (start < -n || start >= n)
            return err_set(E_RANGE, "Dimension out of range (expected to be in range of [%lld, "
                           "%lld], but got %lld)", (long long)-n, (long long)(n - 1),
                           (long long)start);
        if (start < 0) start += n;
    }
    if (length < 0 || start > size - length)
        return err_set(E_RANGE, "start (%lld) + length (%lld) exceeds dimension size (%lld).",
                       (long long)start, (long long)length, (long long)size);
    return op_slice(out, t, d, start, start + length, 1);
}

eng_err op_select(tensor **out, tensor *t, int64_t dim, int64_t index)
{
    if (t->ndim == 0) return err_set(E_RANGE, "select() cannot be applied to a 0-dim tensor.");
    int d;
    eng_err e = wrap_dim(dim, t->ndim, &d);
    if (e) return e;
    int64_t size = t->shape[d];
    if (index < -size || index >= size)
        return err_set(E_RANGE, "select(): index %lld out of range for tensor of size %lld at "
                       "dimension %d", (long long)index, (long long)size, d);
    if (index < 0) index += size;
    int64_t sh[MAX_DIMS], st[MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < t->ndim; i++)
        if (i != d) {
            sh[nd] = t->shape[i];
            st[nd++] = t->strides[i];
        }
    node *n = NULL;
    e = make_view(out, t, sh, st, nd, t->offset + index * t->strides[d], &SELECT_BW, &n);
    if (!e && n) {
        geom full, *g = &attr(n)->view;
        contiguous_geom(t, &full);
        g->ndim = 0;
        for (int i = 0; i < t->ndim; i++)
            if (i != d) {
                g->shape[g->ndim] = full.shape[i];
                g->strides[g->ndim++] = full.strides[i];
            }
        g->offset = index * full.strides[d];
    }
    return e;
}

/* ---- as_strided and its scatter (used by backward of views and by CopySlices) ---- */

/* True if no two elements of the geometry share a position (dims of size 1 aside): sorted by
 * stride, each stride must clear the span of the smaller ones. */
static bool geom_non_overlapping(const geom *g)
{
    int idx[MAX_DIMS], n = 0;
    for (int i = 0; i < g->ndim; i++) {
        if (g->shape[i] == 0) return true;
        if (g->shape[i] > 1) idx[n++] = i;
    }
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && g->strides[idx[j]] < g->strides[idx[j - 1]]; j--) {
            int k = idx[j];
            idx[j] = idx[j - 1];
            idx[j - 1] = k;
        }
    int64_t span = 0; /* the largest position reached by the dims so far, plus one */
    for (int i = 0; i < n; i++) {
        if (g->strides[idx[i]] < span + (span == 0)) return false;
        span += (g->shape[idx[i]] - 1) * g->strides[idx[i]];
    }
    return true;
}

/* Whether t reaches no storage position twice (dense, or with gaps). */
static bool tensor_non_overlapping(const tensor *t)
{
    geom g;
    geom_of(t, &g);
    return geom_non_overlapping(&g);
}

/* How many elements of geometry g (offset ignored) sit at each of the span positions. */
static tensor *use_counts(const geom *g, int64_t span, dtype dt)
{
    tensor *c = tensor_new(DT_F64, &span, 1);
    if (!c) return NULL;
    double *n = tensor_data(c);
    memset(n, 0, (size_t)span * sizeof *n);
    int64_t idx[MAX_DIMS] = {0}, numel = 1;
    for (int i = 0; i < g->ndim; i++) numel *= g->shape[i];
    for (int64_t k = 0; k < numel; k++) {
        int64_t pos = 0;
        for (int i = 0; i < g->ndim; i++) pos += idx[i] * g->strides[i];
        n[pos] += 1;
        for (int i = g->ndim - 1; i >= 0 && ++idx[i] == g->shape[i]; i--) idx[i] = 0;
    }
    if (dt == DT_F64) return c;
    tensor *r = NULL;
    eng_err e = cast_raw(&r, c, dt);
    tensor_release(c);
    return e ? NULL : r;
}

/* The gradient of a view of geometry `view` (offset relative to the input's first element)
 * into an input of geometry `in`, which may be strided (a view regenerated over a
 * non-contiguous base): the view's gradient is scattered into a zero buffer covering the
 * input's storage span, and the input's elements are gathered from it, as PyTorch's
 * as_strided_backward does. Positions the view repeats (expand's stride 0) take the sum of
 * their gradients. Built from recorded ops, so create_graph differentiates through it. */
static eng_err as_strided_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    if (!c->needed[0]) return E_OK;
    const view_attr *a = attr(n);
    geom v = a->view;
    const geom *in = &a->in;
    tensor *g = gin[0];
    eng_err e = E_OK;
    int64_t rep[MAX_DIMS];
    int n_rep = 0;
    for (int i = 0; i < v.ndim; i++)
        if (v.strides[i] == 0 && v.shape[i] > 1) {
            rep[n_rep++] = i;
            v.shape[i] = 1;
        }
    if (n_rep) {
        if ((e = op_sum_dims(&g, g, rep, n_rep, true))) return e;
    } else {
        tensor_retain(g);
    }
    if (!geom_non_overlapping(&v)) {
        tensor_release(g);
        return err_set(E_INTERNAL, "%s: the view overlaps itself other than by expansion",
                       node_name(n));
    }
    int64_t span = 1;
    for (int i = 0; i < in->ndim; i++) {
        if (in->shape[i] == 0) span = 0;
        if (span) span += (in->shape[i] - 1) * in->strides[i];
    }
    tensor *z = NULL, *scattered = NULL;
    e = op_full(&z, (dtype)g->dtype, &span, 1, 0.0);
    if (!e) e = op_as_strided_scatter(&scattered, z, g, v.shape, v.strides, v.ndim, v.offset);
    if (!e && !geom_non_overlapping(in)) {
        /* The input repeats positions itself (a detached expand made a leaf): each of its
         * elements takes its share, as in PyTorch. */
        tensor *count = NULL, *shared = NULL;
        if (!(count = use_counts(in, span, (dtype)g->dtype))) e = err_kind();
        if (!e) e = op_div(&shared, scattered, count);
        tensor_release(count);
        if (!e) {
            tensor_release(scattered);
            scattered = shared;
        }
    }
    /* (the gradient keeps the input's strides, a view of the buffer, as PyTorch's does) */
    if (!e) e = op_as_strided(&gout[0], scattered, in->shape, in->strides, in->ndim, 0);
    tensor_release(scattered);
    tensor_release(z);
    tensor_release(g);
    return e;
}
static const node_type AS_STRIDED_BW = {"AsStridedBackward0", as_strided_backward, NULL};

static eng_err check_geom(const tensor *t, const int64_t *shape, const int64_t *strides, int ndim,
                          int64_t offset)
{
    if (ndim < 0 || ndim > MAX_DIMS) return err_set(E_RANGE, "too many dimensions (%d)", ndim);
    int64_t lo = offset, hi = offset;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || strides[i] < 0) return err_set(E_INVAL, "negative size or stride");
        if (shape[i] == 0) return E_OK;
        hi += (shape[i] - 1) * strides[i];
    }
    int64_t cap = (int64_t)(t->st->nbytes / dtype_size((dtype)t->dtype));
    if (t->offset + lo < 0 || t->offset + hi >= cap)
        return err_set(E_RANGE, "as_strided: geometry exceeds the storage (%lld elements)",
                       (long long)cap);
    return E_OK;
}

/* Offsets and strides are storage positions relative to the input's first element. The
 * input must not overlap itself (dense, or with gaps: a strided view's detach, or the
 * gradient CopySlices lays out as one): its backward gathers the input's elements from the
 * positions the view's gradient was scattered to. */
eng_err op_as_strided(tensor **out, tensor *t, const int64_t *shape, const int64_t *strides,
                      int ndim, int64_t offset)
{
    eng_err e = check_geom(t, shape, strides, ndim, offset);
    if (e) return e;
    if (!tensor_non_overlapping(t))
        return err_set(E_INVAL, "as_strided: the input overlaps itself");
    node *n = NULL;
    e = make_view(out, t, shape, strides, ndim, t->offset + offset, &AS_STRIDED_BW, &n);
    if (!e && n) {
        geom *g = &attr(n)->view;
        g->ndim = ndim;
        memcpy(g->shape, shape, (size_t)ndim * sizeof *shape);
        memcpy(g->strides, strides, (size_t)ndim * sizeof *strides);
        g->offset = offset;
    }
    return e;
}

static eng_err ass_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    view_attr *a = attr(n);
    eng_err e = E_OK;
    if (c->needed[0]) {
        tensor *z;
        if ((e = op_full(&z, (dtype)gin[0]->dtype, a->view.shape, a->view.ndim, 0.0))) return e;
        tensor *g = NULL; /* (laid out as the result was: the geometry is in its terms) */
        if ((e = op_with_strides(&g, gin[0], a->in.strides))) {
            tensor_release(z);
            return e;
        }
        e = op_as_strided_scatter(&gout[0], g, z, a->view.shape, a->view.strides, a->view.ndim,
                                  a->view.offset);
        tensor_release(z);
        tensor_release(g);
        if (e) return e;
    }
    if (c->needed[1]) {
        tensor *g, *v;
        if ((e = op_with_strides(&g, gin[0], a->in.strides))) return e;
        e = op_as_strided(&v, g, a->view.shape, a->view.strides, a->view.ndim, a->view.offset);
        tensor_release(g);
        if (e) return e;
        gout[1] = v;
    }
    return E_OK;
}
static const node_type AS_STRIDED_SCATTER_BW = {"AsStridedScatterBackward0", ass_backward, NULL};

eng_err op_as_strided_scatter(tensor **out, tensor *base, tensor *src, const int64_t *shape,
                              const int64_t *strides, int ndim, int64_t offset)
{
    /* (laid out as base when it does not overlap itself, gaps included, so that the
     * geometry means the same in both) */
    tensor *r = tensor_new_strided((dtype)base->dtype, base->shape, base->ndim,
                                   tensor_non_overlapping(base) ? base->strides : NULL);
    if (!r) return err_kind();
    kernel_copy(r, base);
    eng_err e = check_geom(r, shape, strides, ndim, offset);
    if (e) {
        tensor_release(r);
        return e;
    }
    tensor *region = tensor_alias(r, shape, strides, ndim, offset);
    if (!region) {
        tensor_release(r);
        return E_NOMEM;
    }
    kernel_copy(region, src);
    tensor_release(region);
    tensor *ins[2] = {base, src};
    node *n = record(&AS_STRIDED_SCATTER_BW, ins, 2, &r, 1, 0, sizeof(view_attr), &e);
    if (e) {
        tensor_release(r);
        return e;
    }
    if (n) {
        geom *g = &attr(n)->view;
        g->ndim = ndim;
        memcpy(g->shape, shape, (size_t)ndim * sizeof *shape);
        memcpy(g->strides, strides, (size_t)ndim * sizeof *strides);
        g->offset = offset;
        geom_of(r, &attr(n)->in); /* (the result's layout, for ass_backward) */
    }
    *out = r;
    return E_OK;
}

/* ---- copies ---- */
static const node_type CLONE_BW = {"CloneBackward0", pass_backward, NULL};
static const node_type TO_COPY_BW = {"ToCopyBackward0", pass_backward, NULL};

/* t copied into r, a new tensor of t's shape (NULL: it could not be made), with node bw. */
static eng_err copy_op(tensor **out, tensor *t, tensor *r, const node_type *bw)
{
    if (!r) return err_kind();
    kernel_copy(r, t);
    eng_err e = E_OK;
    if (dtype_is_float((dtype)r->dtype)) record(bw, &t, 1, &r, 1, 0, 0, &e);
    if (e) {
        tensor_release(r);
        return e;
    }
    *out = r;
    return E_OK;
}

eng_err op_clone(tensor **out, tensor *t)
{
    return copy_op(out, t, tensor_new_preserve(t, (dtype)t->dtype), &CLONE_BW);
}

eng_err op_clone_contiguous(tensor **out, tensor *t)
{
    return copy_op(out, t, tensor_new((dtype)t->dtype, t->shape, t->ndim), &CLONE_BW);
}

eng_err op_clone_strided(tensor **out, tensor *t, const int64_t *strides)
{
    return copy_op(out, t, tensor_new_strided((dtype)t->dtype, t->shape, t->ndim, strides),
                   &CLONE_BW);
}

eng_err op_with_strides(tensor **out, tensor *t, const int64_t *strides)
{
    bool same = true;
    for (int i = 0; i < t->ndim && same; i++) same = t->shape[i] <= 1 || t->strides[i] == strides[i];
    if (!same) return op_clone_strided(out, t, strides);
    tensor_retain(t);
    *out = t;
    return E_OK;
}

eng_err op_contiguous(tensor **out, tensor *t)
{
    if (tensor_is_contiguous(t)) {
        tensor_retain(t);
        *out = t;
        return E_OK;
    }
    return op_clone_contiguous(out, t);
}

eng_err op_to_dtype(tensor **out, tensor *t, dtype dt)
{
    if (!dtype_valid(dt)) return err_set(E_DTYPE, "unknown dtype %d", (int)dt);
    if (t->dtype == dt) {
        tensor_retain(t);
        *out = t;
        return E_OK;
    }
    return copy_op(out, t, tensor_new_preserve(t, dt), &TO_COPY_BW);
}

eng_err op_detach(tensor **out, tensor *t)
{
    tensor *r = tensor_alias(t, t->shape, t->strides, t->ndim, t->offset);
    if (!r) return E_NOMEM;
    *out = r;
    return E_OK;
}

node *view_rebase_prepare(const tensor *v)
{
    node *n = node_new(&AS_STRIDED_BW, 1, 0, 1, v->ndim, sizeof(view_attr));
    if (!n) {
        err_nomem();
        return NULL;
    }
    const tensor *base = v->base;
    view_attr *a = attr(n);
    geom_of(base, &a->in);
    a->view.ndim = v->ndim;
    memcpy(a->view.shape, v->shape, (size_t)v->ndim * sizeof(int64_t));
    memcpy(a->view.strides, v->strides, (size_t)v->ndim * sizeof(int64_t));
    a->view.offset = v->offset - base->offset;
    return n;
}

void view_rebase_commit(node *n, tensor *v)
{
    /* Cannot fail: the base has a grad_fn now (its CopySlices), so the edge only retains it. */
    eng_err e = node_set_edge(n, 0, v->base);
    (void)e;
    node_set_output(n, 0, v); /* (the view's version is current from here: attach_output) */
    node_release(n);
}

eng_err view_refused(const tensor *t, bool indirect)
{
    char head[160];
    const char *what = indirect ? "its base or another view of its base has been" : "is being";
    if (t->grad_fn)
        snprintf(head, sizeof head, "Output %u of %s is a view and %s modified inplace.",
                 t->output_nr, node_name(t->grad_fn), what);
    else
        snprintf(head, sizeof head,
                 "A view was created in no_grad mode and %s modified inplace with grad mode "
                 "enabled.", what);
    if (t->view_kind == VK_MULTI)
        return err_set(E_INVAL, "%s This view is the output of a function that returns multiple "
                       "views. Such functions do not allow the output views to be modified "
                       "inplace. You should replace the inplace operation by an out-of-place one.",
                       head);
    if (t->view_kind == VK_CUSTOM)
        return err_set(E_INVAL, "%s This view was created inside a custom Function (or because "
                       "an input was returned as-is) and the autograd logic to handle "
                       "view+inplace would override the custom backward associated with the "
                       "custom Function, leading to incorrect gradients. This behavior is "
                       "forbidden. You can fix this by cloning the output of the custom "
                       "Function.", head);
    return err_set(E_INVAL, "%s Given that this use case is ambiguous and error-prone, it is "
                   "forbidden. You can clarify your code by moving both the view and the inplace "
                   "either both inside the no_grad block (if you don't want the inplace to be "
                   "tracked) or both outside (if you want the inplace to be tracked).", head);
}

static eng_err regenerate(tensor *t)
{
    if (t->view_kind != VK_DEFAULT) return view_refused(t, true);
    node *n = view_rebase_prepare(t);
    if (!n) return E_NOMEM;
    eng_err e = node_set_edge(n, 0, t->base);
    if (!e) e = tensor_history_reserve(t, n, 0);
    if (e) {
        node_release(n);
        return e;
    }
    /* The history moves first: a thread that sees the view current (the version, stored
     * last by node_set_output) sees the new grad_fn and the new history; one that does not
     * waits for the lock. */
    tensor_history_moved(t);
    node_set_output(n, 0, t);
    node_release(n);
    return E_OK;
}

eng_err view_sync_slow(tensor *t)
{
    while (atomic_flag_test_and_set_explicit(&t->view_lock, memory_order_acquire)) sched_yield();
    eng_err e = E_OK;
    if (view_stale(t)) {
        /* Nothing differentiable: nothing to follow yet, but the view stays stale. The base
         * may be set to require grad later without an in-place op (no version bump), and
         * the view must then take the history, as in PyTorch: marking it current here made
         * that depend on whether anything had looked at the view meanwhile. */
        if (t->grad_fn || tensor_requires_grad(t->base)) e = regenerate(t);
    }
    atomic_flag_clear_explicit(&t->view_lock, memory_order_release);
    return e;
}
