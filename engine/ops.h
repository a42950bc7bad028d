/*
 * ops.h: the engine's operations. Each takes its inputs (borrowed), stores a new reference in
 * *out, records its backward node when grad mode is on and an input requires grad, and
 * returns E_OK or an eng_err with a message (and no side effect). The ABI calls these; so do
 * backward formulas, which is what makes higher-order gradients work.
 *
 * Where an op lives: ops/creation.c, ops/arith.c (add..pow, scalar forms), ops/unary.c
 * (exp..softplus, clamp), ops/compare.c (comparisons, where, masked_fill, maximum/minimum),
 * ops/reduce.c, ops/linalg.c, ops/shape.c (views), ops/index.c (index_select..chunk),
 * ops/nn.c (softmax, losses, dropout, layer_norm, embedding), ops/inplace.c, ops/custom.c.
 */
#ifndef AG_OPS_H
#define AG_OPS_H

#include "graph.h"

struct generator;

/* ---- creation (never recorded) ---- */
eng_err op_from_data(tensor **out, const void *data, dtype dt, const int64_t *shape, int ndim);
eng_err op_from_f64(tensor **out, const double *data, dtype dt, const int64_t *shape, int ndim);
eng_err op_scalar(tensor **out, double v, dtype dt);
eng_err op_empty(tensor **out, dtype dt, const int64_t *shape, int ndim);
eng_err op_full(tensor **out, dtype dt, const int64_t *shape, int ndim, double v);
/** E_INVAL (PyTorch's message) unless v is within int64's range (NaN is not). */
eng_err int64_value_check(double v);
/** E_INVAL (PyTorch's message) unless v fills a tensor of dtype dt as torch.full/fill_ allow:
 *  int64 as int64_value_check, float32 refuses a finite |v| > FLT_MAX. */
eng_err fill_value_check(dtype dt, double v);
eng_err op_arange(tensor **out, dtype dt, double start, double end, double step);
eng_err op_eye(tensor **out, dtype dt, int64_t n, int64_t m);
eng_err op_rand(tensor **out, struct generator *g, dtype dt, const int64_t *shape, int ndim);
eng_err op_randn(tensor **out, struct generator *g, dtype dt, const int64_t *shape, int ndim);
/* rand / randn of t's shape and dtype, laid out as t (the values where rand would put them) */
eng_err op_rand_like(tensor **out, struct generator *g, const tensor *t);
eng_err op_randn_like(tensor **out, struct generator *g, const tensor *t);
eng_err op_randint(tensor **out, struct generator *g, int64_t lo, int64_t hi, dtype dt,
                   const int64_t *shape, int ndim);
/** zeros/ones shaped like t. */
/* t's shape, dtype and layout (PyTorch's preserve_format) */
eng_err op_full_like(tensor **out, const tensor *t, double v);
eng_err op_empty_like(tensor **out, const tensor *t);

/* ---- data movement (never recorded) ---- */
/** Writes src (broadcast to dst's shape, converted to dst's dtype) into dst's elements. */
eng_err kernel_copy(tensor *dst, const tensor *src);
/** Fills t's elements with v. */
void kernel_fill(tensor *t, double v);
/** Reads element i (row-major index) of t as double. */
double tensor_get_f64(const tensor *t, int64_t i);
/** Copies t's elements in row-major order, converted to `dt`, into buf. */
void tensor_copy_out(const tensor *t, void *buf, dtype dt);

/* ---- arithmetic (ops/arith.c) ---- */
eng_err op_add(tensor **out, tensor *a, tensor *b);
eng_err op_sub(tensor **out, tensor *a, tensor *b);
eng_err op_mul(tensor **out, tensor *a, tensor *b);
eng_err op_div(tensor **out, tensor *a, tensor *b);
eng_err op_pow(tensor **out, tensor *a, tensor *b);
eng_err op_add_scalar(tensor **out, tensor *a, double s);
eng_err op_sub_scalar(tensor **out, tensor *a, double s);
eng_err op_rsub_scalar(tensor **out, tensor *a, double s);
eng_err op_mul_scalar(tensor **out, tensor *a, double s);
eng_err op_div_scalar(tensor **out, tensor *a, double s);
/* For backward formulas, as PyTorch's C++ writes them (tensor op Scalar): the same results,
 * nodes AddBackward1, MulBackward1, DivBackward1. */
eng_err op_add_scalar1(tensor **out, tensor *a, double s);
eng_err op_mul_scalar1(tensor **out, tensor *a, double s);
eng_err op_div_scalar1(tensor **out, tensor *a, double s);
eng_err op_rdiv_scalar(tensor **out, tensor *a, double s);
eng_err op_pow_scalar(tensor **out, tensor *a, double s);
eng_err op_rpow_scalar(tensor **out, tensor *a, double s);
eng_err op_neg(tensor **out, tensor *a);

/* ---- unary math and activations (ops/unary.c) ---- */
eng_err op_exp(tensor **out, tensor *a);
eng_err op_log(tensor **out, tensor *a);
eng_err op_log1p(tensor **out, tensor *a);
eng_err op_expm1(tensor **out, tensor *a);
eng_err op_sqrt(tensor **out, tensor *a);
eng_err op_rsqrt(tensor **out, tensor *a);
eng_err op_abs(tensor **out, tensor *a);
/* sgn (sign for real tensors), for formulas PyTorch writes with self.sgn(): its node,
 * SgnBackward0, gives contiguous zeros (not in the public API) */
eng_err op_sgn(tensor **out, tensor *a);
eng_err op_sin(tensor **out, tensor *a);
eng_err op_cos(tensor **out, tensor *a);
eng_err op_tanh(tensor **out, tensor *a);
eng_err op_sigmoid(tensor **out, tensor *a);
eng_err op_relu(tensor **out, tensor *a);
eng_err op_leaky_relu(tensor **out, tensor *a, double slope);
eng_err op_gelu(tensor **out, tensor *a, bool approximate_tanh);
eng_err op_silu(tensor **out, tensor *a);
eng_err op_softplus(tensor **out, tensor *a, double beta, double threshold);
/** has_lo / has_hi select which bounds apply. */
eng_err op_clamp(tensor **out, tensor *a, bool has_lo, double lo, bool has_hi, double hi);

/* ---- comparisons and selection (ops/compare.c) ---- */
typedef enum cmp_kind { CMP_EQ, CMP_NE, CMP_LT, CMP_LE, CMP_GT, CMP_GE } cmp_kind;
eng_err op_compare(tensor **out, tensor *a, tensor *b, cmp_kind k);
eng_err op_compare_scalar(tensor **out, tensor *a, double s, cmp_kind k);
eng_err op_where(tensor **out, tensor *cond, tensor *a, tensor *b);
/* where(cond, g, 0), or where(cond, 0, g) when `flip` (0 a 0-d tensor of g's dtype): the
 * masking PyTorch's formulas write with where and at::zeros({}). */
eng_err op_where_zero(tensor **out, tensor *cond, tensor *g, bool flip);
/* op_where with a contiguous result: what a formula's new_zeros(sizes).masked_fill_(mask,
 * value) gives (values and WhereBackward0 as op_where's). */
eng_err op_where_contiguous(tensor **out, tensor *cond, tensor *a, tensor *b);
eng_err op_masked_fill(tensor **out, tensor *t, tensor *mask, double v);
/* What masked_fill_ in place on t, a fresh result of a formula's own, gives: t's layout
 * where t is dense and of the result's shape (op_masked_fill's is contiguous), the same
 * values and MaskedFillBackward0. For backward formulas that PyTorch writes with
 * masked_fill_. */
eng_err op_masked_fill_kept(tensor **out, tensor *t, tensor *mask, double v);
eng_err op_maximum(tensor **out, tensor *a, tensor *b);
eng_err op_minimum(tensor **out, tensor *a, tensor *b);

/* ---- reductions (ops/reduce.c); dims NULL/0 = all ---- */
eng_err op_sum(tensor **out, tensor *a);
eng_err op_sum_dims(tensor **out, tensor *a, const int64_t *dims, int ndims, bool keepdim);
eng_err op_mean(tensor **out, tensor *a);
eng_err op_mean_dims(tensor **out, tensor *a, const int64_t *dims, int ndims, bool keepdim);
eng_err op_max_all(tensor **out, tensor *a);
eng_err op_min_all(tensor **out, tensor *a);
eng_err op_max_dim(tensor **values, tensor **indices, tensor *a, int64_t dim, bool keepdim);
eng_err op_min_dim(tensor **values, tensor **indices, tensor *a, int64_t dim, bool keepdim);
eng_err op_amax(tensor **out, tensor *a, const int64_t *dims, int ndims, bool keepdim);
eng_err op_amin(tensor **out, tensor *a, const int64_t *dims, int ndims, bool keepdim);
eng_err op_var(tensor **out, tensor *a, const int64_t *dims, int ndims, int64_t correction,
               bool keepdim);
eng_err op_std(tensor **out, tensor *a, const int64_t *dims, int ndims, int64_t correction,
               bool keepdim);
eng_err op_logsumexp(tensor **out, tensor *a, const int64_t *dims, int ndims, bool keepdim);
eng_err op_norm(tensor **out, tensor *a, double p, const int64_t *dims, int ndims,
                bool keepdim);
eng_err op_argmax(tensor **out, tensor *a, int64_t dim, bool keepdim);
eng_err op_argmin(tensor **out, tensor *a, int64_t dim, bool keepdim);
eng_err op_argmax_all(tensor **out, tensor *a);
eng_err op_argmin_all(tensor **out, tensor *a);
/** Sums grad down to `shape` (the inverse of broadcasting), as backward formulas need. */
eng_err op_sum_to(tensor **out, tensor *grad, const int64_t *shape, int ndim);

/* ---- linear algebra (ops/linalg.c) ---- */
eng_err op_matmul(tensor **out, tensor *a, tensor *b);
eng_err op_mm(tensor **out, tensor *a, tensor *b);   /* 2-d only (MmBackward0) */
eng_err op_linear(tensor **out, tensor *x, tensor *w, tensor *b);

/* ---- views and shapes (ops/shape.c) ---- */
eng_err op_reshape(tensor **out, tensor *t, const int64_t *shape, int ndim);
eng_err op_view(tensor **out, tensor *t, const int64_t *shape, int ndim);
eng_err op_transpose(tensor **out, tensor *t, int64_t d0, int64_t d1);
eng_err op_t(tensor **out, tensor *t);
eng_err op_permute(tensor **out, tensor *t, const int64_t *dims, int ndims);
/* op_expand's geometry (sizes sh, strides st) of t expanded to shape, as PyTorch's
 * inferExpandGeometry gives it, with op_expand's errors; no view made */
eng_err expand_geometry(const tensor *t, const int64_t *shape, int ndim, int64_t *sh,
                        int64_t *st);
eng_err op_expand(tensor **out, tensor *t, const int64_t *shape, int ndim);
eng_err op_slice(tensor **out, tensor *t, int64_t dim, int64_t start, int64_t end, int64_t step);
eng_err op_narrow(tensor **out, tensor *t, int64_t dim, int64_t start, int64_t length);
eng_err op_select(tensor **out, tensor *t, int64_t dim, int64_t index);
eng_err op_squeeze(tensor **out, tensor *t);
eng_err op_squeeze_dim(tensor **out, tensor *t, int64_t dim);
eng_err op_unsqueeze(tensor **out, tensor *t, int64_t dim);
eng_err op_flatten(tensor **out, tensor *t, int64_t start, int64_t end);
eng_err op_contiguous(tensor **out, tensor *t);
eng_err op_clone(tensor **out, tensor *t);            /* in t's layout (preserve_format) */
eng_err op_clone_contiguous(tensor **out, tensor *t); /* clone(memory_format=contiguous) */
/* A clone with the given strides, which must describe a dense layout of t's shape. */
eng_err op_clone_strided(tensor **out, tensor *t, const int64_t *strides);
/* t itself (a new reference) if laid out with these strides (size-1 dims aside), else
 * op_clone_strided: a gradient put in its tensor's layout before storage-level geometry
 * (as_strided) is applied to it. */
eng_err op_with_strides(tensor **out, tensor *t, const int64_t *strides);
eng_err op_to_dtype(tensor **out, tensor *t, dtype dt);
eng_err op_detach(tensor **out, tensor *t);
/** A view with explicit geometry (storage offset absolute), and its inverse for backward:
 *  a copy of `base` whose region (shape, strides, offset) is replaced by src. */
eng_err op_as_strided(tensor **out, tensor *t, const int64_t *shape, const int64_t *strides,
                      int ndim, int64_t offset);
eng_err op_as_strided_scatter(tensor **out, tensor *base, tensor *src, const int64_t *shape,
                              const int64_t *strides, int ndim, int64_t offset);

/* ---- indexing and joining (ops/index.c) ---- */
eng_err op_index_select(tensor **out, tensor *t, int64_t dim, tensor *index);
eng_err op_index_add(tensor **out, tensor *t, int64_t dim, tensor *index, tensor *src);
eng_err op_gather(tensor **out, tensor *t, int64_t dim, tensor *index);
eng_err op_scatter_add(tensor **out, tensor *t, int64_t dim, tensor *index, tensor *src);
eng_err op_cat(tensor **out, tensor *const *ts, int n, int64_t dim);
eng_err op_stack(tensor **out, tensor *const *ts, int n, int64_t dim);
eng_err op_split_count(int64_t *count, tensor *t, int64_t split_size, int64_t dim);
eng_err op_split(tensor **outs, int n_outs, tensor *t, int64_t split_size, int64_t dim);
eng_err op_chunk_count(int64_t *count, tensor *t, int64_t chunks, int64_t dim);
eng_err op_chunk(tensor **outs, int n_outs, tensor *t, int64_t chunks, int64_t dim);

/* ---- neural-network functions (ops/nn.c) ---- */
eng_err op_softmax(tensor **out, tensor *t, int64_t dim);
eng_err op_log_softmax(tensor **out, tensor *t, int64_t dim);
eng_err op_cross_entropy(tensor **out, tensor *input, tensor *target, tensor *weight,
                         int reduction, int64_t ignore_index, double label_smoothing);
eng_err op_nll_loss(tensor **out, tensor *input, tensor *target, tensor *weight, int reduction,
                    int64_t ignore_index);
eng_err op_mse_loss(tensor **out, tensor *input, tensor *target, int reduction);
eng_err op_bce_with_logits(tensor **out, tensor *input, tensor *target, tensor *weight,
                           tensor *pos_weight, int reduction);
eng_err op_dropout(tensor **out, struct generator *g, tensor *t, double p, bool training);
eng_err op_layer_norm(tensor **out, tensor *x, const int64_t *nshape, int nd, tensor *w,
                      tensor *b, double eps);
eng_err op_embedding(tensor **out, tensor *weight, tensor *indices);

/* ---- in place (ops/inplace.c) ---- */
typedef enum inplace_kind { IP_ADD, IP_SUB, IP_MUL } inplace_kind;
eng_err op_binary_(tensor *t, tensor *other, inplace_kind k);
/** What op_binary_(t, other, k) would refuse (same status and message), writing nothing; in
 *  the same grad mode, a call that passes it fails afterwards only for want of memory. */
eng_err op_binary_check(tensor *t, tensor *other, inplace_kind k);
eng_err op_scalar_(tensor *t, double s, inplace_kind k);
eng_err op_fill_(tensor *t, double v);
eng_err op_zero_(tensor *t);
eng_err op_copy_(tensor *t, tensor *src);

/* ---- plumbing shared between op files ---- */
/** After an in-place op on view v rewrote its base's history (CopySlices), v's grad_fn
 *  becomes AsStridedBackward0 of the base's new grad_fn: view_rebase_prepare makes that node
 *  before the data changes (NULL, E_NOMEM set, on failure); view_rebase_commit, after the
 *  base got its CopySlices, connects it, makes it v's grad_fn and drops the caller's
 *  reference. It cannot fail. */
node *view_rebase_prepare(const tensor *v);
void view_rebase_commit(node *n, tensor *v);
/** PyTorch's _unsafe_view: t, a contiguous tensor the caller has just made and holds alone,
 *  with a new shape, recorded as UnsafeViewBackward0. The result shares t's (private)
 *  storage but is not a view (no base): in-place ops and no_grad treat it as a fresh tensor,
 *  as in PyTorch. An op whose result is its own intermediate reshaped uses this, not
 *  view_alias or a view op, unless PyTorch's result is a view too (linear of a contiguous
 *  3-d input with a bias: addmm(...).view(...)). */
eng_err op_unsafe_view(tensor **out, tensor *t, const int64_t *shape, int ndim);
/** t.squeeze_(dim) on such a tensor (t->shape[dim] == 1): the same, recorded as
 *  SqueezeBackward3, and t's version bumped once, as by PyTorch's in-place squeeze_. */
eng_err op_squeeze_fresh_(tensor **out, tensor *t, int dim);
/** A view of t with the given geometry (storage offset absolute) and its base set, recording
 *  nothing: for multi-output view ops (split, chunk), which record one node for all their
 *  views. NULL (E_NOMEM set) on failure. */
tensor *view_alias(tensor *t, const int64_t *shape, const int64_t *strides, int ndim,
                   int64_t offset);

/* Reduction enum values (as PyTorch's). */
enum { RED_NONE = 0, RED_MEAN = 1, RED_SUM = 2 };

#endif
