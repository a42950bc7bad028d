/*
 * index.c: indexing and joining: index_select, index_add, gather, scatter_add, cat, stack,
 * split and chunk. The index kernels walk strided operands with iter.h; scatters add into
 * each destination in index order, so their results never depend on the thread count.
 */
#include <string.h>

#include "../alloc.h"
#include "ewise.h"

/* ---- helpers ---- */

/* A header over t's storage with another geometry, living on the caller's stack: how the
 * kernels see a window or a restrided operand without allocating (it never escapes). */
static void hdr_init(tensor *h, int64_t *dims, const tensor *t, const int64_t *shape,
                     const int64_t *strides, int ndim, int64_t offset)
{
    memset(h, 0, sizeof *h);
    h->shape = dims;
    h->strides = dims + MAX_DIMS;
    h->st = t->st;
    h->dtype = t->dtype;
    h->ndim = (uint8_t)ndim;
    h->offset = offset;
    h->numel = 1;
    for (int i = 0; i < ndim; i++) {
        h->shape[i] = shape[i];
        h->strides[i] = strides[i];
        h->numel *= shape[i];
    }
}

/* PyTorch's ensure_nonempty_dim: a 0-d tensor indexes as shape [1]. Return the ndim. */
static int ens_shape(const int64_t *shape, int ndim, int64_t *out)
{
    if (ndim == 0) {
        out[0] = 1;
        return 1;
    }
    memcpy(out, shape, (size_t)ndim * sizeof *out);
    return ndim;
}

static int geom1(const tensor *t, int64_t *shape, int64_t *strides)
{
    strides[0] = 1;
    if (t->ndim) memcpy(strides, t->strides, (size_t)t->ndim * sizeof *strides);
    return ens_shape(t->shape, t->ndim, shape);
}

static eng_err index_dtype(const tensor *index, const char *op)
{
    if (index->dtype == DT_I64) return E_OK;
    return err_set(E_DTYPE, "%s(): Expected dtype int64 for index, got %s", op,
                   dtype_name((dtype)index->dtype));
}

/* Every index must lie in [0, size) (negative ones too are refused, as PyTorch's gather and
 * index_select do). Rows along the last dim are checked branch-free; a row with a bad value
 * is then searched for the first one, so the message names it. */
static eng_err index_bounds(const tensor *index, int64_t size, int dim)
{
    if (index->numel == 0) return E_OK;
    const int64_t *p = tensor_data(index);
    int last = index->ndim - 1;
    int64_t len = last >= 0 ? index->shape[last] : 1, st = last >= 0 ? index->strides[last] : 0;
    int64_t pos[MAX_DIMS] = {0}, off = 0;
    for (int64_t row = 0; row < index->numel / len; row++) {
        bool bad = false;
        int64_t m = st ? len : 1; /* a broadcast row holds one value */
        for (int64_t j = 0; j < m; j++) bad |= (uint64_t)p[off + j * st] >= (uint64_t)size;
        for (int64_t j = 0; bad && j < m; j++) {
            int64_t v = p[off + j * st];
            if (v < 0 || v >= size)
                return err_set(E_RANGE, "index %lld is out of bounds for dimension %d with size "
                               "%lld", (long long)v, dim, (long long)size);
        }
        for (int d = last - 1; d >= 0; d--) {
            off += index->strides[d];
            if (++pos[d] < index->shape[d]) break;
            off -= index->shape[d] * index->strides[d];
            pos[d] = 0;
        }
    }
    return E_OK;
}

/* A fresh copy of t (the out-of-place scatters write into it). */
static eng_err clone_raw(tensor **out, tensor *t)
{
    tensor *r = tensor_new((dtype)t->dtype, t->shape, t->ndim);
    if (!r) return err_kind();
    kernel_copy(r, t);
    *out = r;
    return E_OK;
}

/* ---- kernels ---- */

/* out[p] = self[p with coordinate `dim` replaced by index[p]]: iterated over out's shape with
 * self's stride along dim zeroed; the loop adds index * that stride (ctx, bytes). Element
 * copies only depend on the size, so one loop per size serves every dtype. */
#define GATHER_LOOP(NAME, T)                                                               \
    static void NAME(char **d, const int64_t *s, int64_t n, void *ctx)                     \
    {                                                                                      \
        const int64_t sd = *(const int64_t *)ctx;                                          \
        for (int64_t i = 0; i < n; i++) {                                                  \
            int64_t k = *(const int64_t *)(d[2] + i * s[2]);                               \
            *(T *)(d[0] + i * s[0]) = *(const T *)(d[1] + i * s[1] + k * sd);              \
        }                                                                                  \
    }
GATHER_LOOP(gather_1, uint8_t)
GATHER_LOOP(gather_4, uint32_t)
GATHER_LOOP(gather_8, uint64_t)

/* out: fresh and contiguous, numel equal to prod(sh). self and index are described over the
 * nd-dim shape sh with the given strides (index's broadcast ones zero). */
static void gather_kernel(tensor *out, const tensor *self, const int64_t *self_st,
                          const tensor *index, const int64_t *index_st, const int64_t *sh,
                          int nd, int dim)
{
    int64_t es = (int64_t)dtype_size((dtype)self->dtype);
    int64_t ost[MAX_DIMS], sst[MAX_DIMS];
    contiguous_strides(sh, nd, ost);
    memcpy(sst, self_st, (size_t)nd * sizeof *sst);
    int64_t sd = sst[dim] * es;
    sst[dim] = 0;
    tensor ho, hs, hi;
    int64_t dims[3][2 * MAX_DIMS];
    hdr_init(&ho, dims[0], out, sh, ost, nd, out->offset);
    hdr_init(&hs, dims[1], self, sh, sst, nd, self->offset);
    hdr_init(&hi, dims[2], index, sh, index_st, nd, index->offset);
    iter it;
    tensor *ins[2] = {&hs, &hi};
    iter_init(&it, &ho, ins, 2);
    iter_run(&it, es == 1 ? gather_1 : es == 4 ? gather_4 : gather_8, &sd, PAR_GRAIN_CHEAP);
}

/* dst[p with coordinate dim = index[p]] += src[p]. The iteration runs over "columns" (every
 * coordinate but dim); each column walks its K entries along dim in order. Columns write
 * disjoint destinations, so each destination's additions happen in index order. */
typedef struct scatter_ctx {
    int64_t K, isd, ssd, dsd; /* count along dim; index, src, dst strides along dim (bytes) */
} scatter_ctx;

#define SCATTER_LOOP(NAME, T, OP)                                                          \
    static void NAME(char **d, const int64_t *s, int64_t n, void *ctx)                     \
    {                                                                                      \
        const scatter_ctx c = *(const scatter_ctx *)ctx; /* a copy: stores can't alias */ \
        for (int64_t k = 0; k < c.K; k++)                                                  \
            for (int64_t i = 0; i < n; i++) {                                              \
                int64_t j = *(const int64_t *)(d[2] + i * s[2] + k * c.isd);               \
                T *o = (T *)(d[0] + i * s[0] + j * c.dsd);                                 \
                T v = *(const T *)(d[1] + i * s[1] + k * c.ssd);                           \
                *o = OP;                                                                   \
            }                                                                              \
    }
SCATTER_LOOP(scatter_f32, float, *o + v)
SCATTER_LOOP(scatter_f64, double, *o + v)
SCATTER_LOOP(scatter_i64, int64_t, (int64_t)((uint64_t)*o + (uint64_t)v))
SCATTER_LOOP(scatter_b, uint8_t, (uint8_t)(*o | v)) /* bool + bool is logical or */

/* dst: fresh and contiguous (t's clone); src and index described over the nd-dim shape sh. */
static void scatter_add_kernel(tensor *dst, const tensor *src, const int64_t *src_st,
                               const tensor *index, const int64_t *index_st, const int64_t *sh,
                               int nd, int dim)
{
    static const iter_loop loops[DT_COUNT] = {scatter_f32, scatter_f64, scatter_i64, scatter_b};
    int64_t es = (int64_t)dtype_size((dtype)dst->dtype);
    int64_t dsh[MAX_DIMS], dst_st[MAX_DIMS], col[MAX_DIMS];
    geom1(dst, dsh, dst_st);
    memcpy(col, sh, (size_t)nd * sizeof *col);
    col[dim] = 1;
    scatter_ctx c = {sh[dim], index_st[dim] * 8, src_st[dim] * es, dst_st[dim] * es};
    tensor hd, hs, hi;
    int64_t dims[3][2 * MAX_DIMS];
    hdr_init(&hd, dims[0], dst, col, dst_st, nd, dst->offset);
    hdr_init(&hs, dims[1], src, col, src_st, nd, src->offset);
    hdr_init(&hi, dims[2], index, col, index_st, nd, index->offset);
    iter it;
    tensor *ins[2] = {&hs, &hi};
    iter_init(&it, &hd, ins, 2);
    /* A chunk holds at least 16 neighbouring columns, so that walking along dim reads whole
     * cache lines rather than one element of each. */
    int64_t grain = PAR_GRAIN_CHEAP / (c.K > 1 ? c.K : 1);
    iter_run(&it, loops[dst->dtype], &c, grain > 16 ? grain : 16);
}

/* ---- shared attributes of the index ops: the dim and a shape the backward rebuilds ---- */
typedef struct idx_attr {
    int dim;
    int ndim;
    int64_t shape[MAX_DIMS];
} idx_attr;

static void idx_attr_set(node *n, int dim, const tensor *shaped)
{
    idx_attr *a = node_attrs(n);
    a->dim = dim;
    a->ndim = shaped->ndim;
    memcpy(a->shape, shaped->shape, (size_t)shaped->ndim * sizeof(int64_t));
}

/* g (a gradient over an index's region at the origin of a tensor of `shape`) made that
 * tensor's gradient: reshaped where only 0-d vs [1] differ, zero-padded where the region is
 * smaller (scatter_add's src may be larger than its index). */
static eng_err fit_grad(tensor **out, tensor *g, const idx_attr *a)
{
    int64_t gsh[MAX_DIMS], tsh[MAX_DIMS], tst[MAX_DIMS];
    int gn = ens_shape(g->shape, g->ndim, gsh), tn = ens_shape(a->shape, a->ndim, tsh);
    if (gn == tn && !memcmp(gsh, tsh, (size_t)tn * sizeof *tsh)) {
        if (g->ndim == a->ndim) {
            tensor_retain(g);
            *out = g;
            return E_OK;
        }
        return op_reshape(out, g, a->shape, a->ndim);
    }
    tensor *z;
    eng_err e = op_full(&z, (dtype)g->dtype, a->shape, a->ndim, 0.0);
    if (e) return e;
    if (!g->numel) { /* an empty index (its shape unchecked): no gradient flows */
        *out = z;
        return E_OK;
    }
    contiguous_strides(tsh, tn, tst);
    e = op_as_strided_scatter(out, z, g, gsh, tst, gn, 0);
    tensor_release(z);
    return e;
}

/* The two pairs (index_select, index_add) and (gather, scatter_add) are each other's
 * backward: a selection's gradient adds into zeros, an addition's source gradient selects. */
typedef eng_err (*select_op)(tensor **out, tensor *t, int64_t dim, tensor *index);
typedef eng_err (*add_op)(tensor **out, tensor *t, int64_t dim, tensor *index, tensor *src);

static eng_err selection_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout, add_op add)
{
    if (!c->needed[0]) return E_OK;
    const idx_attr *a = node_attrs(n);
    tensor *index, *z;
    eng_err e = saved_get(n, c, 0, &index);
    if (e || (e = op_full(&z, (dtype)gin[0]->dtype, a->shape, a->ndim, 0.0))) return e;
    e = add(&gout[0], z, a->dim, index, gin[0]);
    tensor_release(z);
    return e;
}

static eng_err addition_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout,
                                 select_op select)
{
    const idx_attr *a = node_attrs(n);
    if (c->needed[0]) {
        tensor_retain(gin[0]);
        gout[0] = gin[0];
    }
    if (!c->needed[1]) return E_OK;
    tensor *index, *g;
    eng_err e = saved_get(n, c, 0, &index);
    if (e || (e = select(&g, gin[0], a->dim, index))) return e;
    e = fit_grad(&gout[1], g, a);
    tensor_release(g);
    return e;
}

/* Records the node of an indexed op whose result r is made (src NULL: a selection from t;
 * else an addition of src into t), and hands r out; r is released on failure. The index is
 * saved only where a backward reads it. */
static eng_err finish_indexed(tensor **out, tensor *r, const node_type *type, tensor *t,
                              tensor *src, int d, tensor *index)
{
    eng_err e;
    tensor *ins[2] = {t, src};
    node *nd_ = record(type, ins, src ? 2 : 1, &r, 1, 1, sizeof(idx_attr), &e);
    if (e) {
        tensor_release(r);
        return e;
    }
    if (nd_) {
        idx_attr_set(nd_, d, src ? src : t);
        if (!src || nd_->next[1].fn) node_save(nd_, 0, index); /* (by the edge: see op_mul) */
    }
    *out = r;
    return E_OK;
}

/* ---- index_select / index_add ---- */
static eng_err index_select_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    return selection_backward(n, c, gin, gout, op_index_add);
}
static const node_type INDEX_SELECT_BW = {"IndexSelectBackward0", index_select_backward, NULL};

/* The index of index_select / index_add: int64, a vector or a scalar. */
static eng_err index_vector(const tensor *index, const char *op)
{
    eng_err e = index_dtype(index, op);
    if (e) return e;
    if (index->ndim > 1) {
        char s[160];
        return err_set(E_SHAPE, "%s(): Index is supposed to be a vector, but got dim: %d with "
                       "size: %s", op, index->ndim,
                       fmt_shape(s, sizeof s, index->shape, index->ndim));
    }
    return E_OK;
}

eng_err op_index_select(tensor **out, tensor *t, int64_t dim, tensor *index)
{
    int d;
    eng_err e = wrap_dim(dim, t->ndim, &d);
    if (e || (e = index_vector(index, "index_select"))) return e;
    int64_t n = index->numel;
    if (t->ndim == 0 && n != 1)
        return err_set(E_SHAPE, "index_select(): a 0-dim self takes exactly one index, got %lld",
                       (long long)n);
    int64_t sh[MAX_DIMS], st[MAX_DIMS], ist[MAX_DIMS] = {0};
    int nd = geom1(t, sh, st);
    if ((e = index_bounds(index, sh[d], d))) return e;
    sh[d] = n;
    ist[d] = index->ndim ? index->strides[0] : 0; /* the index broadcast over the other dims */
    tensor *r = tensor_new((dtype)t->dtype, sh, t->ndim);
    if (!r) return err_kind();
    gather_kernel(r, t, st, index, ist, sh, nd, d);
    return finish_indexed(out, r, &INDEX_SELECT_BW, t, NULL, d, index);
}

static eng_err index_add_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    return addition_backward(n, c, gin, gout, op_index_select);
}
static const node_type INDEX_ADD_BW = {"IndexAddBackward0", index_add_backward, NULL};

eng_err op_index_add(tensor **out, tensor *t, int64_t dim, tensor *index, tensor *src)
{
    int d;
    eng_err e = wrap_dim(dim, t->ndim, &d);
    if (e || (e = index_vector(index, "index_add"))) return e;
    if (src->dtype != t->dtype)
        return err_set(E_DTYPE, "index_add(): self (%s) and source (%s) must have the same "
                       "scalar type", dtype_name((dtype)t->dtype), dtype_name((dtype)src->dtype));
    int64_t tsh[MAX_DIMS], tst[MAX_DIMS], ssh[MAX_DIMS], sst[MAX_DIMS], ist[MAX_DIMS] = {0};
    int nt = geom1(t, tsh, tst), ns = geom1(src, ssh, sst);
    int64_t n = index->numel;
    bool ok = ns == nt;
    for (int i = 0; i < nt && ok; i++) ok = ssh[i] == (i == d ? n : tsh[i]);
    if (!ok) {
        char a[160], b[160];
        return err_set(E_SHAPE, "index_add(): source %s must have self's shape %s except at "
                       "dimension %d, where its size must be the number of indices (%lld)",
                       fmt_shape(a, sizeof a, src->shape, src->ndim),
                       fmt_shape(b, sizeof b, t->shape, t->ndim), d, (long long)n);
    }
    if ((e = index_bounds(index, tsh[d], d))) return e;
    tensor *r = NULL;
    if ((e = clone_raw(&r, t))) return e;
    ist[d] = index->ndim ? index->strides[0] : 0;
    scatter_add_kernel(r, src, sst, index, ist, ssh, ns, d);
    return finish_indexed(out, r, &INDEX_ADD_BW, t, src, d, index);
}

/* ---- gather / scatter_add ---- */
static eng_err gather_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    return selection_backward(n, c, gin, gout, op_scatter_add);
}
static const node_type GATHER_BW = {"GatherBackward0", gather_backward, NULL};

eng_err op_gather(tensor **out, tensor *t, int64_t dim, tensor *index)
{
    int d;
    eng_err e = wrap_dim(dim, t->ndim, &d);
    if (e || (e = index_dtype(index, "gather"))) return e;
    int64_t tsh[MAX_DIMS], tst[MAX_DIMS], ish[MAX_DIMS], ist[MAX_DIMS];
    int nt = geom1(t, tsh, tst), ni = geom1(index, ish, ist);
    /* As PyTorch: an empty index is taken as is, unchecked. */
    if (index->numel) {
        if (ni != nt)
            return err_set(E_SHAPE, "Index tensor must have the same number of dimensions as "
                           "input tensor");
        for (int i = 0; i < nt; i++)
            if (i != d && ish[i] > tsh[i]) {
                char a[160], b[160];
                return err_set(E_SHAPE, "Size does not match at dimension %d expected index %s "
                               "to be smaller than self %s apart from dimension %d", i,
                               fmt_shape(a, sizeof a, index->shape, index->ndim),
                               fmt_shape(b, sizeof b, t->shape, t->ndim), d);
            }
        if ((e = index_bounds(index, tsh[d], d))) return e;
    }
    tensor *r = tensor_new((dtype)t->dtype, index->shape, index->ndim);
    if (!r) return err_kind();
    if (r->numel) gather_kernel(r, t, tst, index, ist, ish, ni, d);
    return finish_indexed(out, r, &GATHER_BW, t, NULL, d, index);
}

static eng_err scatter_add_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    return addition_backward(n, c, gin, gout, op_gather);
}
static const node_type SCATTER_ADD_BW = {"ScatterAddBackward0", scatter_add_backward, NULL};

eng_err op_scatter_add(tensor **out, tensor *t, int64_t dim, tensor *index, tensor *src)
{
    int d;
    eng_err e = wrap_dim(dim, t->ndim, &d);
    if (e || (e = index_dtype(index, "scatter_add"))) return e;
    if (src->dtype != t->dtype)
        return err_set(E_DTYPE, "scatter_add(): Expected self.dtype to be equal to src.dtype, "
                       "got %s and %s", dtype_name((dtype)t->dtype),
                       dtype_name((dtype)src->dtype));
    int64_t tsh[MAX_DIMS], tst[MAX_DIMS], ish[MAX_DIMS], ist[MAX_DIMS];
    int64_t ssh[MAX_DIMS], sst[MAX_DIMS];
    int nt = geom1(t, tsh, tst), ni = geom1(index, ish, ist), ns = geom1(src, ssh, sst);
    if (index->numel) {
        if (ni != nt)
            return err_set(E_SHAPE, "Index tensor must have the same number of dimensions as "
                           "self tensor");
        if (ni != ns)
            return err_set(E_SHAPE, "Index tensor must have the same number of dimensions as "
                           "src tensor");
        for (int i = 0; i < nt; i++)
            if (ish[i] > ssh[i] || (i != d && ish[i] > tsh[i])) {
                char a[160], b[160], c[160];
                return err_set(E_SHAPE, "Expected index %s to be smaller than self %s apart from "
                               "dimension %d and to be smaller size than src %s",
                               fmt_shape(a, sizeof a, index->shape, index->ndim),
                               fmt_shape(b, sizeof b, t->shape, t->ndim), d,
                               fmt_shape(c, sizeof c, src->shape, src->ndim));
            }
        if ((e = index_bounds(index, tsh[d], d))) return e;
    }
    tensor *r = NULL;
    if ((e = clone_raw(&r, t))) return e;
    if (index->numel) scatter_add_kernel(r, src, sst, index, ist, ish, ni, d);
    return finish_indexed(out, r, &SCATTER_ADD_BW, t, src, d, index);
}

/* ---- cat / stack ---- */

/* Graph nodes hold at most this many edges or outputs (node counts are 16-bit). */
#define MAX_NODE_ARITY 65535

/* The legacy rule PyTorch 1.13 keeps: 1-d empty tensors are skipped, whatever their shape
 * elsewhere would need to be. */
static bool cat_skipped(const tensor *t) { return t->ndim == 1 && t->shape[0] == 0; }

typedef struct cat_attr {
    int dim, n;
    int64_t sizes[]; /* each input's size along dim; -1 for a skipped input */
} cat_attr;

static eng_err cat_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    const cat_attr *a = node_attrs(n);
    int64_t off = 0, empty = 0;
    eng_err e = E_OK;
    for (int i = 0; i < a->n && !e; i++) {
        int64_t sz = a->sizes[i];
        if (!c->needed[i]) {
            off += sz > 0 ? sz : 0;
            continue;
        }
        if (sz < 0) {
            e = op_full(&gout[i], (dtype)gin[0]->dtype, &empty, 1, 0.0);
        } else {
            e = op_narrow(&gout[i], gin[0], a->dim, off, sz);
            off += sz;
        }
    }
    return e;
}
static const node_type CAT_BW = {"CatBackward0", cat_backward, NULL};

static eng_err arity_check(tensor *const *ts, int n, const char *op)
{
    if (n > MAX_NODE_ARITY && should_record(ts, n))
        return err_set(E_INVAL, "%s of %d tensors that require grad: at most %d are supported", op,
                       n, MAX_NODE_ARITY);
    return E_OK;
}

eng_err op_cat(tensor **out, tensor *const *ts, int n, int64_t dim)
{
    if (n <= 0) return err_set(E_INVAL, "expected a non-empty list of Tensors");
    dtype dt = (dtype)ts[0]->dtype;
    int ref = -1;
    for (int i = 0; i < n; i++) {
        if (ts[i]->ndim == 0)
            return err_set(E_SHAPE, "zero-dimensional tensor (at position %d) cannot be "
                           "concatenated", i);
        dt = dtype_promote(dt, (dtype)ts[i]->dtype);
        if (ref < 0 && !cat_skipped(ts[i])) ref = i;
    }
    int64_t shape[MAX_DIMS] = {0};
    int nd = 1, d = 0;
    eng_err e;
    if (ref >= 0) {
        if ((e = wrap_dim(dim, ts[ref]->ndim, &d))) return e;
        nd = ts[ref]->ndim;
        memcpy(shape, ts[ref]->shape, (size_t)ts[ref]->ndim * sizeof(int64_t));
        shape[d] = 0;
        for (int i = ref; i < n; i++) {
            const tensor *t = ts[i];
            if (cat_skipped(t)) continue;
            if (t->ndim != nd)
                return err_set(E_SHAPE, "Tensors must have same number of dimensions: got %d and "
                               "%d", nd, t->ndim);
            for (int k = 0; k < nd; k++)
                if (k != d && t->shape[k] != shape[k])
                    return err_set(E_SHAPE, "Sizes of tensors must match except in dimension %d. "
                                   "Expected size %lld but got size %lld for tensor number %d in "
                                   "the list.", d, (long long)shape[k], (long long)t->shape[k], i);
            if (__builtin_add_overflow(shape[d], t->shape[d], &shape[d]))
                return err_set(E_INVAL, "cat: the size of dimension %d overflows", d);
        }
    }
    if ((e = arity_check(ts, n, "cat"))) return e;
    tensor *r = tensor_new(dt, shape, nd);
    if (!r) return err_kind();
    /* Each input is copied (converted) into its window of the result. */
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        if (cat_skipped(ts[i])) continue;
        tensor w;
        int64_t wdims[2 * MAX_DIMS];
        hdr_init(&w, wdims, r, ts[i]->shape, r->strides, nd, r->offset + off * r->strides[d]);
        kernel_copy(&w, ts[i]);
        off += ts[i]->shape[d];
    }
    node *nd_ = record(&CAT_BW, ts, n, &r, 1, 0, sizeof(cat_attr) + (size_t)n * sizeof(int64_t),
                       &e);
    if (e) {
        tensor_release(r);
        return e;
    }
    if (nd_) {
        cat_attr *a = node_attrs(nd_);
        a->dim = d;
        a->n = n;
        for (int i = 0; i < n; i++) a->sizes[i] = cat_skipped(ts[i]) ? -1 : ts[i]->shape[d];
    }
    *out = r;
    return E_OK;
}

typedef struct stack_attr {
    int dim;
} stack_attr;

static eng_err stack_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    int dim = ((const stack_attr *)node_attrs(n))->dim;
    eng_err e = E_OK;
    for (int i = 0; i < n->n_next && !e; i++)
        if (c->needed[i]) e = op_select(&gout[i], gin[0], dim, i);
    return e;
}
static const node_type STACK_BW = {"StackBackward0", stack_backward, NULL};

eng_err op_stack(tensor **out, tensor *const *ts, int n, int64_t dim)
{
    if (n <= 0) return err_set(E_INVAL, "expected a non-empty list of Tensors");
    dtype dt = (dtype)ts[0]->dtype;
    for (int i = 1; i < n; i++) {
        if (!shapes_equal(ts[0], ts[i])) {
            char a[160], b[160];
            return err_set(E_SHAPE, "stack expects each tensor to be equal size, but got %s at "
                           "entry 0 and %s at entry %d",
                           fmt_shape(a, sizeof a, ts[0]->shape, ts[0]->ndim),
                           fmt_shape(b, sizeof b, ts[i]->shape, ts[i]->ndim), i);
        }
        dt = dtype_promote(dt, (dtype)ts[i]->dtype);
    }
    int nd = ts[0]->ndim, d;
    eng_err e = wrap_dim(dim, nd + 1, &d);
    if (e) return e;
    if (nd == MAX_DIMS) return err_set(E_RANGE, "tensors have at most %d dimensions", MAX_DIMS);
    if ((e = arity_check(ts, n, "stack"))) return e;
    int64_t shape[MAX_DIMS];
    for (int k = 0, j = 0; k <= nd; k++) shape[k] = k == d ? n : ts[0]->shape[j++];
    tensor *r = tensor_new(dt, shape, nd + 1);
    if (!r) return err_kind();
    /* Input i goes to the slice i along d: the result's strides without d. */
    int64_t st[MAX_DIMS];
    for (int k = 0, j = 0; k <= nd; k++)
        if (k != d) st[j++] = r->strides[k];
    for (int i = 0; i < n; i++) {
        tensor w;
        int64_t wdims[2 * MAX_DIMS];
        hdr_init(&w, wdims, r, ts[i]->shape, st, nd, r->offset + i * r->strides[d]);
        kernel_copy(&w, ts[i]);
    }
    node *nd_ = record(&STACK_BW, ts, n, &r, 1, 0, sizeof(stack_attr), &e);
    if (e) {
        tensor_release(r);
        return e;
    }
    if (nd_) ((stack_attr *)node_attrs(nd_))->dim = d;
    *out = r;
    return E_OK;
}

/* ---- split / chunk: views, one node for all of them ---- */
typedef struct split_attr {
    int dim;
} split_attr;

/* The input's gradient: the outputs' gradients concatenated, zeros for those that got none. */
static eng_err split_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    if (!c->needed[0]) return E_OK;
    int k = n->n_out;
    tensor *small[8], **parts = k <= 8 ? small : mem_alloc((size_t)k * sizeof *parts);
    if (!parts) return err_nomem();
    eng_err e = E_OK;
    int i;
    for (i = 0; i < k; i++) {
        if (gin[i]) {
            tensor_retain(gin[i]);
            parts[i] = gin[i];
        } else {
            const out_meta *m = &node_outs(n)[i];
            e = op_full(&parts[i], (dtype)m->dtype, m->shape, m->ndim, 0.0);
            if (e) break;
        }
    }
    if (!e) e = op_cat(&gout[0], parts, k, ((const split_attr *)node_attrs(n))->dim);
    while (i-- > 0) tensor_release(parts[i]);
    if (parts != small) mem_free(parts);
    return e;
}
static const node_type SPLIT_BW = {"SplitBackward0", split_backward, NULL};
/* torch.chunk of an empty dim goes through split_with_sizes */
static const node_type SPLIT_WITH_SIZES_BW = {"SplitWithSizesBackward0", split_backward, NULL};

static eng_err split_dim(const tensor *t, int64_t dim, const char *op, int *d)
{
    if (t->ndim == 0) return err_set(E_SHAPE, "%s expects at least a 1-dimensional tensor", op);
    return wrap_dim(dim, t->ndim, d);
}

static eng_err split_plan(tensor *t, int64_t split_size, int64_t dim, int *d, int64_t *count)
{
    eng_err e = split_dim(t, dim, "split", d);
    if (e) return e;
    if (split_size < 0)
        return err_set(E_INVAL, "split expects split_size be non-negative, but got split_size=%lld",
                       (long long)split_size);
    int64_t size = t->shape[*d];
    if (size == 0) {
        *count = 1;
        return E_OK;
    }
    if (split_size == 0)
        return err_set(E_INVAL, "split_size can only be 0 if dimension size is 0, but got "
                       "dimension size of %lld", (long long)size);
    *count = size / split_size + (size % split_size != 0);
    return E_OK;
}

eng_err op_split_count(int64_t *count, tensor *t, int64_t split_size, int64_t dim)
{
    int d;
    return split_plan(t, split_size, dim, &d, count);
}

/* n_outs views of split_size along d (the last shorter), recorded under one node `bw`. */
static eng_err split_views(tensor **outs, int n_outs, tensor *t, int64_t split_size, int d,
                           const node_type *bw)
{
    if (n_outs > MAX_NODE_ARITY && should_record(&t, 1))
        return err_set(E_INVAL, "split into %d pieces of a tensor that requires grad: at most %d "
                       "are supported", n_outs, MAX_NODE_ARITY);
    tensor *small[8], **v = n_outs <= 8 ? small : mem_alloc((size_t)n_outs * sizeof *v);
    if (!v) return err_nomem();
    int64_t sh[MAX_DIMS], size = t->shape[d];
    memcpy(sh, t->shape, (size_t)t->ndim * sizeof(int64_t));
    eng_err e = E_OK;
    int i;
    for (i = 0; i < n_outs; i++) {
        int64_t start = i * split_size, len = size - start < split_size ? size - start : split_size;
        sh[d] = len > 0 ? len : 0;
        v[i] = view_alias(t, sh, t->strides, t->ndim, t->offset + start * t->strides[d]);
        if (!v[i]) {
            e = err_kind();
            break;
        }
        /* One node for all the pieces: none can take a history of its own (view_sync). */
        if (v[i]->view_kind == VK_DEFAULT) v[i]->view_kind = VK_MULTI;
    }
    if (!e) {
        node *n = record(bw, &t, 1, v, n_outs, 0, sizeof(split_attr), &e);
        if (n) ((split_attr *)node_attrs(n))->dim = d;
    }
    if (e) {
        while (i-- > 0) tensor_release(v[i]);
    } else {
        memcpy(outs, v, (size_t)n_outs * sizeof *v);
    }
    if (v != small) mem_free(v);
    return e;
}

eng_err op_split(tensor **outs, int n_outs, tensor *t, int64_t split_size, int64_t dim)
{
    int d = 0;
    int64_t count = 0;
    eng_err e = split_plan(t, split_size, dim, &d, &count);
    if (e) return e;
    if (count != n_outs)
        return err_set(E_INVAL, "n_outs is %d but the tensor splits into %lld pieces", n_outs,
                       (long long)count);
    return split_views(outs, n_outs, t, split_size, d, &SPLIT_BW);
}

/* torch.chunk: pieces of ceil(size / chunks), so possibly fewer than asked; an empty dim
 * gives `chunks` empty pieces. */
static eng_err chunk_plan(tensor *t, int64_t chunks, int64_t dim, int *d, int64_t *split_size,
                          int64_t *count)
{
    eng_err e = split_dim(t, dim, "chunk", d);
    if (e) return e;
    if (chunks <= 0)
        return err_set(E_INVAL, "chunk expects `chunks` to be greater than 0, got: %lld",
                       (long long)chunks);
    int64_t size = t->shape[*d];
    if (size == 0) {
        *split_size = 0;
        *count = chunks;
        return E_OK;
    }
    *split_size = size / chunks + (size % chunks != 0);
    *count = size / *split_size + (size % *split_size != 0);
    return E_OK;
}

eng_err op_chunk_count(int64_t *count, tensor *t, int64_t chunks, int64_t dim)
{
    int d;
    int64_t split_size;
    return chunk_plan(t, chunks, dim, &d, &split_size, count);
}

eng_err op_chunk(tensor **outs, int n_outs, tensor *t, int64_t chunks, int64_t dim)
{
    int d;
    int64_t split_size = 0, count = 0;
    eng_err e = chunk_plan(t, chunks, dim, &d, &split_size, &count);
    if (e) return e;
    if (count != n_outs)
        return err_set(E_INVAL, "n_outs is %d but the tensor splits into %lld pieces", n_outs,
                       (long long)count);
    return split_views(outs, n_outs, t, split_size, d,
                       split_size == 0 ? &SPLIT_WITH_SIZES_BW : &SPLIT_BW);
}
