/*
 * ops_api.c: the public operations. Each checks its handles and counts, calls the engine op
 * of the same name, and turns a failure into a status (see boundary.h).
 */
#include "boundary.h"

#define ARG(fn, p, name) CHECK_NOT_NULL(fn, p, name)

/* out = op(a) */
#define UNARY(NAME) UNARY_ARG(NAME, a)
/* (with the argument named as the header names it) */
#define UNARY_ARG(NAME, A)                                                                 \
    AG_API int ag_##NAME(ag_tensor **out, const ag_tensor *A)                              \
    {                                                                                      \
        ARG("ag_" #NAME, out, "out");                                                      \
        ARG("ag_" #NAME, A, #A);                                                           \
        RETURN_TENSOR("ag_" #NAME, out, op_##NAME(&r_, T(A)));                             \
    }

/* out = op(a, b) */
#define BINARY(NAME, CALL)                                                                 \
    AG_API int ag_##NAME(ag_tensor **out, const ag_tensor *a, const ag_tensor *b)          \
    {                                                                                      \
        ARG("ag_" #NAME, out, "out");                                                      \
        ARG("ag_" #NAME, a, "a");                                                          \
        ARG("ag_" #NAME, b, "b");                                                          \
        RETURN_TENSOR("ag_" #NAME, out, CALL);                                             \
    }

/* out = op(a, s) */
#define WITH_SCALAR(NAME, CALL)                                                            \
    AG_API int ag_##NAME(ag_tensor **out, const ag_tensor *a, double s)                    \
    {                                                                                      \
        ARG("ag_" #NAME, out, "out");                                                      \
        ARG("ag_" #NAME, a, "a");                                                          \
        RETURN_TENSOR("ag_" #NAME, out, CALL);                                             \
    }

BINARY(add, op_add(&r_, T(a), T(b)))
BINARY(sub, op_sub(&r_, T(a), T(b)))
BINARY(mul, op_mul(&r_, T(a), T(b)))
BINARY(div, op_div(&r_, T(a), T(b)))
BINARY(pow, op_pow(&r_, T(a), T(b)))
BINARY(maximum, op_maximum(&r_, T(a), T(b)))
BINARY(minimum, op_minimum(&r_, T(a), T(b)))
BINARY(matmul, op_matmul(&r_, T(a), T(b)))
BINARY(eq, op_compare(&r_, T(a), T(b), CMP_EQ))
BINARY(ne, op_compare(&r_, T(a), T(b), CMP_NE))
BINARY(lt, op_compare(&r_, T(a), T(b), CMP_LT))
BINARY(le, op_compare(&r_, T(a), T(b), CMP_LE))
BINARY(gt, op_compare(&r_, T(a), T(b), CMP_GT))
BINARY(ge, op_compare(&r_, T(a), T(b), CMP_GE))

WITH_SCALAR(add_scalar, op_add_scalar(&r_, T(a), s))
WITH_SCALAR(sub_scalar, op_sub_scalar(&r_, T(a), s))
WITH_SCALAR(rsub_scalar, op_rsub_scalar(&r_, T(a), s))
WITH_SCALAR(mul_scalar, op_mul_scalar(&r_, T(a), s))
WITH_SCALAR(div_scalar, op_div_scalar(&r_, T(a), s))
WITH_SCALAR(rdiv_scalar, op_rdiv_scalar(&r_, T(a), s))
WITH_SCALAR(pow_scalar, op_pow_scalar(&r_, T(a), s))
WITH_SCALAR(rpow_scalar, op_rpow_scalar(&r_, T(a), s))
WITH_SCALAR(eq_scalar, op_compare_scalar(&r_, T(a), s, CMP_EQ))
WITH_SCALAR(ne_scalar, op_compare_scalar(&r_, T(a), s, CMP_NE))
WITH_SCALAR(lt_scalar, op_compare_scalar(&r_, T(a), s, CMP_LT))
WITH_SCALAR(le_scalar, op_compare_scalar(&r_, T(a), s, CMP_LE))
WITH_SCALAR(gt_scalar, op_compare_scalar(&r_, T(a), s, CMP_GT))
WITH_SCALAR(ge_scalar, op_compare_scalar(&r_, T(a), s, CMP_GE))
WITH_SCALAR(leaky_relu, op_leaky_relu(&r_, T(a), s))
WITH_SCALAR(clamp_min, op_clamp(&r_, T(a), true, s, false, 0))
WITH_SCALAR(clamp_max, op_clamp(&r_, T(a), false, 0, true, s))

UNARY(neg)
UNARY(exp)
UNARY(log)
UNARY(log1p)
UNARY(expm1)
UNARY(sqrt)
UNARY(rsqrt)
UNARY(abs)
UNARY(sin)
UNARY(cos)
UNARY(tanh)
UNARY(sigmoid)
UNARY(relu)
UNARY(silu)
UNARY(sum)
UNARY(mean)
UNARY_ARG(t, t)
UNARY_ARG(squeeze, t)
UNARY_ARG(contiguous, t)
UNARY_ARG(clone, t)

AG_API int ag_max(ag_tensor **out, const ag_tensor *a)
{
    ARG("ag_max", out, "out");
    ARG("ag_max", a, "a");
    RETURN_TENSOR("ag_max", out, op_max_all(&r_, T(a)));
}

AG_API int ag_min(ag_tensor **out, const ag_tensor *a)
{
    ARG("ag_min", out, "out");
    ARG("ag_min", a, "a");
    RETURN_TENSOR("ag_min", out, op_min_all(&r_, T(a)));
}

AG_API int ag_argmax_all(ag_tensor **out, const ag_tensor *a)
{
    ARG("ag_argmax_all", out, "out");
    ARG("ag_argmax_all", a, "a");
    RETURN_TENSOR("ag_argmax_all", out, op_argmax_all(&r_, T(a)));
}

AG_API int ag_argmin_all(ag_tensor **out, const ag_tensor *a)
{
    ARG("ag_argmin_all", out, "out");
    ARG("ag_argmin_all", a, "a");
    RETURN_TENSOR("ag_argmin_all", out, op_argmin_all(&r_, T(a)));
}

AG_API int ag_gelu(ag_tensor **out, const ag_tensor *a, int approximate_tanh)
{
    ARG("ag_gelu", out, "out");
    ARG("ag_gelu", a, "a");
    RETURN_TENSOR("ag_gelu", out, op_gelu(&r_, T(a), approximate_tanh != 0));
}

AG_API int ag_softplus(ag_tensor **out, const ag_tensor *a, double beta, double threshold)
{
    ARG("ag_softplus", out, "out");
    ARG("ag_softplus", a, "a");
    RETURN_TENSOR("ag_softplus", out, op_softplus(&r_, T(a), beta, threshold));
}

AG_API int ag_clamp(ag_tensor **out, const ag_tensor *a, double lo, double hi)
{
    ARG("ag_clamp", out, "out");
    ARG("ag_clamp", a, "a");
    RETURN_TENSOR("ag_clamp", out, op_clamp(&r_, T(a), true, lo, true, hi));
}

AG_API int ag_where(ag_tensor **out, const ag_tensor *cond, const ag_tensor *a, const ag_tensor *b)
{
    ARG("ag_where", out, "out");
    ARG("ag_where", cond, "cond");
    ARG("ag_where", a, "a");
    ARG("ag_where", b, "b");
    RETURN_TENSOR("ag_where", out, op_where(&r_, T(cond), T(a), T(b)));
}

/* ---- reductions ---- */
#define DIMS_CHECK(fn, dims, ndims)                                                        \
    do {                                                                                   \
        CHECK_DIMS(fn, ndims, "dims");                                                     \
        if ((ndims) && !(dims)) return api_error(fn, AG_EINVAL, "argument 'dims' is NULL");  \
    } while (0)

#define REDUCE_DIMS(NAME, CALL)                                                            \
    AG_API int ag_##NAME(ag_tensor **out, const ag_tensor *a, const int64_t *dims,          \
                         size_t ndims, int keepdim)                                        \
    {                                                                                      \
        ARG("ag_" #NAME, out, "out");                                                      \
        ARG("ag_" #NAME, a, "a");                                                          \
        DIMS_CHECK("ag_" #NAME, dims, ndims);                                              \
        RETURN_TENSOR("ag_" #NAME, out, CALL);                                             \
    }
REDUCE_DIMS(sum_dims, op_sum_dims(&r_, T(a), dims, (int)ndims, keepdim != 0))
REDUCE_DIMS(mean_dims, op_mean_dims(&r_, T(a), dims, (int)ndims, keepdim != 0))
REDUCE_DIMS(amax, op_amax(&r_, T(a), dims, (int)ndims, keepdim != 0))
REDUCE_DIMS(amin, op_amin(&r_, T(a), dims, (int)ndims, keepdim != 0))
REDUCE_DIMS(logsumexp, op_logsumexp(&r_, T(a), dims, (int)ndims, keepdim != 0))

AG_API int ag_var(ag_tensor **out, const ag_tensor *a, const int64_t *dims, size_t ndims,
                  int64_t correction, int keepdim)
{
    ARG("ag_var", out, "out");
    ARG("ag_var", a, "a");
    DIMS_CHECK("ag_var", dims, ndims);
    RETURN_TENSOR("ag_var", out, op_var(&r_, T(a), dims, (int)ndims, correction, keepdim != 0));
}

AG_API int ag_std(ag_tensor **out, const ag_tensor *a, const int64_t *dims, size_t ndims,
                  int64_t correction, int keepdim)
{
    ARG("ag_std", out, "out");
    ARG("ag_std", a, "a");
    DIMS_CHECK("ag_std", dims, ndims);
    RETURN_TENSOR("ag_std", out, op_std(&r_, T(a), dims, (int)ndims, correction, keepdim != 0));
}

AG_API int ag_norm(ag_tensor **out, const ag_tensor *a, double p, const int64_t *dims,
                   size_t ndims, int keepdim)
{
    ARG("ag_norm", out, "out");
    ARG("ag_norm", a, "a");
    DIMS_CHECK("ag_norm", dims, ndims);
    RETURN_TENSOR("ag_norm", out, op_norm(&r_, T(a), p, dims, (int)ndims, keepdim != 0));
}

static int extreme_dim(const char *fn, ag_tensor **values_out, ag_tensor **indices_out,
                       const ag_tensor *a, int64_t dim, int keepdim, bool is_max)
{
    ARG(fn, a, "a");
    if (!values_out && !indices_out)
        return api_error(fn, AG_EINVAL, "values_out and indices_out are both NULL");
    tensor *v = NULL, *i = NULL;
    eng_err e = is_max ? op_max_dim(&v, &i, T(a), dim, keepdim != 0)
                       : op_min_dim(&v, &i, T(a), dim, keepdim != 0);
    if (e) return api_fail(fn, e);
    if (values_out) *values_out = TH(v);
    else tensor_release(v);
    if (indices_out) *indices_out = TH(i);
    else tensor_release(i);
    return AG_OK;
}

AG_API int ag_max_dim(ag_tensor **values_out, ag_tensor **indices_out, const ag_tensor *a,
                      int64_t dim, int keepdim)
{
    return extreme_dim("ag_max_dim", values_out, indices_out, a, dim, keepdim, true);
}

AG_API int ag_min_dim(ag_tensor **values_out, ag_tensor **indices_out, const ag_tensor *a,
                      int64_t dim, int keepdim)
{
    return extreme_dim("ag_min_dim", values_out, indices_out, a, dim, keepdim, false);
}

#define DIM_KEEP(NAME, CALL)                                                               \
    AG_API int ag_##NAME(ag_tensor **out, const ag_tensor *a, int64_t dim, int keepdim)    \
    {                                                                                      \
        ARG("ag_" #NAME, out, "out");                                                      \
        ARG("ag_" #NAME, a, "a");                                                          \
        RETURN_TENSOR("ag_" #NAME, out, CALL);                                             \
    }
DIM_KEEP(argmax, op_argmax(&r_, T(a), dim, keepdim != 0))
DIM_KEEP(argmin, op_argmin(&r_, T(a), dim, keepdim != 0))

/* ---- linear algebra ---- */
AG_API int ag_linear(ag_tensor **out, const ag_tensor *x, const ag_tensor *w, const ag_tensor *b)
{
    ARG("ag_linear", out, "out");
    ARG("ag_linear", x, "x");
    ARG("ag_linear", w, "w");
    RETURN_TENSOR("ag_linear", out, op_linear(&r_, T(x), T(w), T(b)));
}

/* ---- views and shapes ---- */
#define SHAPE_ARG(NAME, CALL)                                                              \
    AG_API int ag_##NAME(ag_tensor **out, const ag_tensor *t, const int64_t *shape,         \
                         size_t ndim)                                                      \
    {                                                                                      \
        ARG("ag_" #NAME, out, "out");                                                      \
        ARG("ag_" #NAME, t, "t");                                                          \
        CHECK_SHAPE("ag_" #NAME, shape, ndim);                                             \
        RETURN_TENSOR("ag_" #NAME, out, CALL);                                             \
    }
SHAPE_ARG(reshape, op_reshape(&r_, T(t), shape, (int)ndim))
SHAPE_ARG(view, op_view(&r_, T(t), shape, (int)ndim))
SHAPE_ARG(expand, op_expand(&r_, T(t), shape, (int)ndim))

AG_API int ag_permute(ag_tensor **out, const ag_tensor *t, const int64_t *dims, size_t ndims)
{
    ARG("ag_permute", out, "out");
    ARG("ag_permute", t, "t");
    DIMS_CHECK("ag_permute", dims, ndims);
    RETURN_TENSOR("ag_permute", out, op_permute(&r_, T(t), dims, (int)ndims));
}

AG_API int ag_transpose(ag_tensor **out, const ag_tensor *t, int64_t dim0, int64_t dim1)
{
    ARG("ag_transpose", out, "out");
    ARG("ag_transpose", t, "t");
    RETURN_TENSOR("ag_transpose", out, op_transpose(&r_, T(t), dim0, dim1));
}

AG_API int ag_slice(ag_tensor **out, const ag_tensor *t, int64_t dim, int64_t start, int64_t end,
                    int64_t step)
{
    ARG("ag_slice", out, "out");
    ARG("ag_slice", t, "t");
    RETURN_TENSOR("ag_slice", out, op_slice(&r_, T(t), dim, start, end, step));
}

AG_API int ag_narrow(ag_tensor **out, const ag_tensor *t, int64_t dim, int64_t start,
                     int64_t length)
{
    ARG("ag_narrow", out, "out");
    ARG("ag_narrow", t, "t");
    RETURN_TENSOR("ag_narrow", out, op_narrow(&r_, T(t), dim, start, length));
}

#define DIM_ARG(NAME, CALL)                                                                \
    AG_API int ag_##NAME(ag_tensor **out, const ag_tensor *t, int64_t dim)                 \
    {                                                                                      \
        ARG("ag_" #NAME, out, "out");                                                      \
        ARG("ag_" #NAME, t, "t");                                                          \
        RETURN_TENSOR("ag_" #NAME, out, CALL);                                             \
    }
DIM_ARG(squeeze_dim, op_squeeze_dim(&r_, T(t), dim))
DIM_ARG(unsqueeze, op_unsqueeze(&r_, T(t), dim))
DIM_ARG(softmax, op_softmax(&r_, T(t), dim))
DIM_ARG(log_softmax, op_log_softmax(&r_, T(t), dim))

AG_API int ag_select(ag_tensor **out, const ag_tensor *t, int64_t dim, int64_t index)
{
    ARG("ag_select", out, "out");
    ARG("ag_select", t, "t");
    RETURN_TENSOR("ag_select", out, op_select(&r_, T(t), dim, index));
}

AG_API int ag_flatten(ag_tensor **out, const ag_tensor *t, int64_t start_dim, int64_t end_dim)
{
    ARG("ag_flatten", out, "out");
    ARG("ag_flatten", t, "t");
    RETURN_TENSOR("ag_flatten", out, op_flatten(&r_, T(t), start_dim, end_dim));
}

AG_API int ag_to_dtype(ag_tensor **out, const ag_tensor *t, ag_dtype dtype)
{
    ARG("ag_to_dtype", out, "out");
    ARG("ag_to_dtype", t, "t");
    RETURN_TENSOR("ag_to_dtype", out, op_to_dtype(&r_, T(t), (enum dtype)dtype));
}

/* ---- indexing and joining ---- */
AG_API int ag_index_select(ag_tensor **out, const ag_tensor *t, int64_t dim, const ag_tensor *index)
{
    ARG("ag_index_select", out, "out");
    ARG("ag_index_select", t, "t");
    ARG("ag_index_select", index, "index");
    RETURN_TENSOR("ag_index_select", out, op_index_select(&r_, T(t), dim, T(index)));
}

AG_API int ag_gather(ag_tensor **out, const ag_tensor *t, int64_t dim, const ag_tensor *index)
{
    ARG("ag_gather", out, "out");
    ARG("ag_gather", t, "t");
    ARG("ag_gather", index, "index");
    RETURN_TENSOR("ag_gather", out, op_gather(&r_, T(t), dim, T(index)));
}

AG_API int ag_scatter_add(ag_tensor **out, const ag_tensor *t, int64_t dim, const ag_tensor *index,
                          const ag_tensor *src)
{
    ARG("ag_scatter_add", out, "out");
    ARG("ag_scatter_add", t, "t");
    ARG("ag_scatter_add", index, "index");
    ARG("ag_scatter_add", src, "src");
    RETURN_TENSOR("ag_scatter_add", out, op_scatter_add(&r_, T(t), dim, T(index), T(src)));
}

AG_API int ag_masked_fill(ag_tensor **out, const ag_tensor *t, const ag_tensor *mask, double value)
{
    ARG("ag_masked_fill", out, "out");
    ARG("ag_masked_fill", t, "t");
    ARG("ag_masked_fill", mask, "mask");
    RETURN_TENSOR("ag_masked_fill", out, op_masked_fill(&r_, T(t), T(mask), value));
}

static int list_check(const char *fn, ag_tensor *const *ts, size_t n)
{
    if (n == 0) return api_error(fn, AG_EINVAL, "expected a non-empty list of Tensors");
    if (!ts) return api_error(fn, AG_EINVAL, "argument 'tensors' is NULL");
    if (n > 1u << 20) return api_error(fn, AG_EINVAL, "too many tensors (%zu)", n);
    for (size_t i = 0; i < n; i++)
        if (!ts[i]) return api_error(fn, AG_EINVAL, "tensors[%zu] is NULL", i);
    return AG_OK;
}

AG_API int ag_cat(ag_tensor **out, ag_tensor *const *tensors, size_t n, int64_t dim)
{
    ARG("ag_cat", out, "out");
    int rc = list_check("ag_cat", tensors, n);
    if (rc) return rc;
    RETURN_TENSOR("ag_cat", out, op_cat(&r_, (tensor *const *)tensors, (int)n, dim));
}

AG_API int ag_stack(ag_tensor **out, ag_tensor *const *tensors, size_t n, int64_t dim)
{
    ARG("ag_stack", out, "out");
    int rc = list_check("ag_stack", tensors, n);
    if (rc) return rc;
    RETURN_TENSOR("ag_stack", out, op_stack(&r_, (tensor *const *)tensors, (int)n, dim));
}

AG_API int ag_split_count(size_t *out, const ag_tensor *t, int64_t split_size, int64_t dim)
{
    ARG("ag_split_count", out, "out");
    ARG("ag_split_count", t, "t");
    int64_t c;
    eng_err e = op_split_count(&c, T(t), split_size, dim);
    if (e) return api_fail("ag_split_count", e);
    *out = (size_t)c;
    return AG_OK;
}

AG_API int ag_chunk_count(size_t *out, const ag_tensor *t, int64_t chunks, int64_t dim)
{
    ARG("ag_chunk_count", out, "out");
    ARG("ag_chunk_count", t, "t");
    int64_t c;
    eng_err e = op_chunk_count(&c, T(t), chunks, dim);
    if (e) return api_fail("ag_chunk_count", e);
    *out = (size_t)c;
    return AG_OK;
}

static int pieces(const char *fn, ag_tensor **outs, size_t n_outs, const ag_tensor *t,
                  int64_t arg, int64_t dim, bool chunk)
{
    ARG(fn, outs, "outs");
    ARG(fn, t, "t");
    int64_t want;
    eng_err e = chunk ? op_chunk_count(&want, T(t), arg, dim) : op_split_count(&want, T(t), arg, dim);
    if (e) return api_fail(fn, e);
    if (n_outs > (size_t)INT32_MAX)
        return api_error(fn, AG_EINVAL, "n_outs is %zu: at most %d pieces are supported", n_outs,
                         INT32_MAX);
    if ((int64_t)n_outs != want)
        return api_error(fn, AG_EINVAL, "n_outs is %zu but the tensor splits into %lld pieces",
                         n_outs, (long long)want);
    e = chunk ? op_chunk((tensor **)outs, (int)n_outs, T(t), arg, dim)
              : op_split((tensor **)outs, (int)n_outs, T(t), arg, dim);
    return e ? api_fail(fn, e) : AG_OK;
}

AG_API int ag_split(ag_tensor **outs, size_t n_outs, const ag_tensor *t, int64_t split_size,
                    int64_t dim)
{
    return pieces("ag_split", outs, n_outs, t, split_size, dim, false);
}

AG_API int ag_chunk(ag_tensor **outs, size_t n_outs, const ag_tensor *t, int64_t chunks,
                    int64_t dim)
{
    return pieces("ag_chunk", outs, n_outs, t, chunks, dim, true);
}

/* ---- neural-network functions ---- */
static int reduction_check(const char *fn, int reduction)
{
    if (reduction < AG_REDUCTION_NONE || reduction > AG_REDUCTION_SUM)
        return api_error(fn, AG_EINVAL, "%d is not a valid value for reduction", reduction);
    return AG_OK;
}

AG_API int ag_cross_entropy(ag_tensor **out, const ag_tensor *input, const ag_tensor *target,
                            const ag_tensor *weight, ag_reduction reduction, int64_t ignore_index,
                            double label_smoothing)
{
    const char *fn = "ag_cross_entropy";
    ARG(fn, out, "out");
    ARG(fn, input, "input");
    ARG(fn, target, "target");
    int rc = reduction_check(fn, reduction);
    if (rc) return rc;
    RETURN_TENSOR(fn, out, op_cross_entropy(&r_, T(input), T(target), T(weight), (int)reduction,
                                            ignore_index, label_smoothing));
}

AG_API int ag_nll_loss(ag_tensor **out, const ag_tensor *input, const ag_tensor *target,
                       const ag_tensor *weight, ag_reduction reduction, int64_t ignore_index)
{
    const char *fn = "ag_nll_loss";
    ARG(fn, out, "out");
    ARG(fn, input, "input");
    ARG(fn, target, "target");
    int rc = reduction_check(fn, reduction);
    if (rc) return rc;
    RETURN_TENSOR(fn, out, op_nll_loss(&r_, T(input), T(target), T(weight), (int)reduction,
                                       ignore_index));
}

AG_API int ag_mse_loss(ag_tensor **out, const ag_tensor *input, const ag_tensor *target,
                       ag_reduction reduction)
{
    const char *fn = "ag_mse_loss";
    ARG(fn, out, "out");
    ARG(fn, input, "input");
    ARG(fn, target, "target");
    int rc = reduction_check(fn, reduction);
    if (rc) return rc;
    RETURN_TENSOR(fn, out, op_mse_loss(&r_, T(input), T(target), (int)reduction));
}

AG_API int ag_binary_cross_entropy_with_logits(ag_tensor **out, const ag_tensor *input,
                                               const ag_tensor *target, const ag_tensor *weight,
                                               const ag_tensor *pos_weight, ag_reduction reduction)
{
    const char *fn = "ag_binary_cross_entropy_with_logits";
    ARG(fn, out, "out");
    ARG(fn, input, "input");
    ARG(fn, target, "target");
    int rc = reduction_check(fn, reduction);
    if (rc) return rc;
    RETURN_TENSOR(fn, out, op_bce_with_logits(&r_, T(input), T(target), T(weight), T(pos_weight),
                                              (int)reduction));
}

AG_API int ag_dropout(ag_tensor **out, ag_generator *gen, const ag_tensor *t, double p, int training)
{
    ARG("ag_dropout", out, "out");
    ARG("ag_dropout", t, "t");
    RETURN_TENSOR("ag_dropout", out,
                  op_dropout(&r_, (struct generator *)gen, T(t), p, training != 0));
}

AG_API int ag_layer_norm(ag_tensor **out, const ag_tensor *x, const int64_t *normalized_shape,
                         size_t ndim, const ag_tensor *weight, const ag_tensor *bias, double eps)
{
    const char *fn = "ag_layer_norm";
    ARG(fn, out, "out");
    ARG(fn, x, "x");
    CHECK_DIMS(fn, ndim, "normalized_shape");
    if (ndim == 0 || !normalized_shape)
        return api_error(fn, AG_EINVAL, "normalized_shape must be a non-empty list");
    RETURN_TENSOR(fn, out, op_layer_norm(&r_, T(x), normalized_shape, (int)ndim, T(weight),
                                         T(bias), eps));
}

AG_API int ag_embedding(ag_tensor **out, const ag_tensor *weight, const ag_tensor *indices)
{
    ARG("ag_embedding", out, "out");
    ARG("ag_embedding", weight, "weight");
    ARG("ag_embedding", indices, "indices");
    RETURN_TENSOR("ag_embedding", out, op_embedding(&r_, T(weight), T(indices)));
}

/* ---- in place ---- */
#define INPLACE_T(NAME, KIND)                                                              \
    AG_API int ag_##NAME(ag_tensor *t, const ag_tensor *other)                             \
    {                                                                                      \
        ARG("ag_" #NAME, t, "t");                                                          \
        ARG("ag_" #NAME, other, "other");                                                  \
        eng_err e = op_binary_(T(t), T(other), KIND);                                      \
        return e ? api_fail("ag_" #NAME, e) : AG_OK;                                       \
    }
INPLACE_T(add_, IP_ADD)
INPLACE_T(sub_, IP_SUB)
INPLACE_T(mul_, IP_MUL)

AG_API int ag_add_scalar_(ag_tensor *t, double s)
{
    ARG("ag_add_scalar_", t, "t");
    eng_err e = op_scalar_(T(t), s, IP_ADD);
    return e ? api_fail("ag_add_scalar_", e) : AG_OK;
}

AG_API int ag_mul_scalar_(ag_tensor *t, double s)
{
    ARG("ag_mul_scalar_", t, "t");
    eng_err e = op_scalar_(T(t), s, IP_MUL);
    return e ? api_fail("ag_mul_scalar_", e) : AG_OK;
}

AG_API int ag_zero_(ag_tensor *t)
{
    ARG("ag_zero_", t, "t");
    eng_err e = op_zero_(T(t));
    return e ? api_fail("ag_zero_", e) : AG_OK;
}

AG_API int ag_fill_(ag_tensor *t, double value)
{
    ARG("ag_fill_", t, "t");
    eng_err e = op_fill_(T(t), value);
    return e ? api_fail("ag_fill_", e) : AG_OK;
}

AG_API int ag_copy_(ag_tensor *t, const ag_tensor *src)
{
    ARG("ag_copy_", t, "t");
    ARG("ag_copy_", src, "src");
    eng_err e = op_copy_(T(t), T(src));
    return e ? api_fail("ag_copy_", e) : AG_OK;
}
