/*
 * nn_common.h: what nn.c and loss.c share: a tensor seen as rows along one dim, raw contiguous
 * copies, and the row loops (max, sum of exp) of softmax and cross_entropy.
 */
#ifndef AG_NN_COMMON_H
#define AG_NN_COMMON_H

#include <math.h>

#include "../alloc.h"
#include "../kernels/vmath.h"
#include "ewise.h"

/* A contiguous tensor as [outer, n, inner] around dim d: row r (of outer * inner) holds n
 * elements `inner` apart, starting at lay_row(r). */
typedef struct lay {
    int64_t outer, n, inner;
} lay;

static inline lay lay_of(const tensor *t, int d)
{
    lay L = {1, 1, 1};
    if (t->ndim == 0) return L;
    for (int k = 0; k < d; k++) L.outer *= t->shape[k];
    L.n = t->shape[d];
    for (int k = d + 1; k < t->ndim; k++) L.inner *= t->shape[k];
    return L;
}
static inline int64_t lay_rows(const lay *L) { return L->outer * L->inner; }
static inline int64_t lay_row(const lay *L, int64_t r)
{
    /* The common last-dim case skips two 64-bit divisions, which cost as much as a short row. */
    if (L->inner == 1) return r * L->n;
    return r / L->inner * L->n * L->inner + r % L->inner;
}
/* Rows per parallel chunk: a few thousand exp()s, fixed by the row length alone. */
static inline int64_t lay_grain(const lay *L)
{
    return PAR_GRAIN_COSTLY / (L->n > 0 ? L->n : 1) + 1;
}

/** t as a contiguous tensor of dtype dt (no autograd): t itself, retained, if it is one. */
static inline eng_err contig_raw(tensor **out, tensor *t, dtype dt)
{
    if (t->dtype == dt && tensor_is_contiguous(t)) {
        tensor_retain(t);
        *out = t;
        return E_OK;
    }
    tensor *r = tensor_new(dt, t->shape, t->ndim);
    if (!r) return err_kind();
    kernel_copy(r, t);
    *out = r;
    return E_OK;
}

/* PyTorch's scalar type names, for its "expected scalar type Long but found Float". */
static inline const char *torch_scalar_name(dtype d)
{
    static const char *names[DT_COUNT] = {"Float", "Double", "Long", "Bool"};
    return names[d];
}

/* exp(d) for d <= 0 (NaN passes through), vectorisable, with gradual underflow: flushing
 * below -87 (as this did) made softmax 0 where exp(-87.3) is still a normal float and PyTorch
 * gives the value to 1 ulp. */
static inline float nn_expf(float d) { return vm_expf(d); }

/* Loops over a row's n elements `st` apart; unit stride gets its own copy that vectorises.
 * BODY indexes with k * s_. Reductions vectorise only on long rows: GCC combines the lanes of
 * an `omp simd reduction` through the stack, which costs more than a short row itself. The
 * choice depends on n alone, so results stay the same for any thread count. */
#define NN_PRAGMA(x) _Pragma(#x)
#define ROW_LOOP(n, st, ...)                                                               \
    do {                                                                                   \
        if ((st) == 1) {                                                                   \
            const int64_t s_ = 1;                                                          \
            (void)s_;                                                                      \
            _Pragma("omp simd") for (int64_t k = 0; k < (n); k++) { __VA_ARGS__ }          \
        } else {                                                                           \
            const int64_t s_ = (st);                                                       \
            (void)s_;                                                                      \
            for (int64_t k = 0; k < (n); k++) { __VA_ARGS__ }                              \
        }                                                                                  \
    } while (0)
#define ROW_REDUCE(OP, acc, n, st, ...)                                                    \
    do {                                                                                   \
        if ((st) == 1 && (n) >= 128) {                                                     \
            const int64_t s_ = 1;                                                          \
            (void)s_;                                                                      \
            NN_PRAGMA(omp simd reduction(OP : acc))                                        \
            for (int64_t k = 0; k < (n); k++) { __VA_ARGS__ }                              \
        } else {                                                                           \
            const int64_t s_ = (st);                                                       \
            (void)s_;                                                                      \
            for (int64_t k = 0; k < (n); k++) { __VA_ARGS__ }                              \
        }                                                                                  \
    } while (0)

/* Last-dim rows (inner == 1) are contiguous: their exps run as one loop over a group of rows
 * of at most NN_GROUP elements (one row if longer), which vectorises even when the rows are
 * shorter than a vector (10 classes). */
#define NN_GROUP 2048
static inline int64_t nn_group_rows(int64_t n) { return n > 0 && n < NN_GROUP ? NN_GROUP / n : 1; }

#define NN_AI static inline __attribute__((always_inline))
#define NN_ROW_HELPERS(S, T, EXP, LOG)                                                     \
    /* The row's max; a NaN is skipped here but reaches every output through the exps. */ \
    NN_AI T row_max_##S(const T *x, int64_t n, int64_t st)                                 \
    {                                                                                      \
        T m = -INFINITY;                                                                   \
        ROW_REDUCE(max, m, n, st, T v = x[k * s_]; m = v > m ? v : m;);                    \
        return m;                                                                          \
    }                                                                                      \
    NN_AI T row_sum_##S(const T *x, int64_t n)                                             \
    {                                                                                      \
        T s = 0;                                                                           \
        ROW_REDUCE(+, s, n, 1, s += x[k];);                                                \
        return s;                                                                          \
    }                                                                                      \
    /* t = exp(x - the row's max) for `rows` contiguous rows of n; mx[r] = row r's max. */  \
    NN_AI void rows_exp_##S(const T *x, int64_t n, int64_t rows, T *mx, T *t)              \
    {                                                                                      \
        for (int64_t r = 0; r < rows; r++) {                                               \
            const T *xr = x + r * n;                                                       \
            T *tr = t + r * n, m = mx[r] = row_max_##S(xr, n, 1);                          \
            ROW_LOOP(n, 1, tr[k] = xr[k] - m;);                                            \
        }                                                                                  \
        _Pragma("omp simd") for (int64_t j = 0; j < rows * n; j++) t[j] = EXP(t[j]);       \
    }                                                                                      \
    /* log(sum(exp(x))) of one row, any stride, as its max m and log(sum(exp(x - m))): the \
     * caller subtracts them one at a time ((x - m) - ls, as PyTorch does), since m + ls   \
     * drops the low bits of ls once m is large (logits ~1e3 in float32). The exps go     \
     * through a stack block. */                                                           \
    NN_AI void row_lse_##S(const T *x, int64_t n, int64_t st, T *m_out, T *ls_out)         \
    {                                                                                      \
        T m = row_max_##S(x, n, st), s = 0, buf[256];                                      \
        for (int64_t k0 = 0; k0 < n; k0 += 256) {                                          \
            int64_t len = n - k0 < 256 ? n - k0 : 256;                                     \
            const T *xb = x + k0 * st;                                                     \
            ROW_LOOP(len, st, buf[k] = EXP(xb[k * s_] - m););                              \
            s += row_sum_##S(buf, len);                                                    \
        }                                                                                  \
        *m_out = m;                                                                        \
        *ls_out = LOG(s);                                                                  \
    }
NN_ROW_HELPERS(f32, float, nn_expf, logf)
NN_ROW_HELPERS(f64, double, exp, log)

#endif
