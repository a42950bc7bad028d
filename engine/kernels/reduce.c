/*
 * reduce.c: the reduction kernel (see reduce.h for the determinism rule).
 */
#include "reduce.h"

#include <math.h>
#include <string.h>

#include "../alloc.h"
#include "../parallel.h"
#include "ew.h"

typedef struct group {
    int nd;
    int64_t shape[MAX_DIMS];
    int64_t stride[MAX_DIMS]; /* elements */
    int64_t n;
} group;

/* Dims of x split into kept and reduced groups, size-1 dims dropped and neighbours merged when
 * contiguous within the group. Kept dims stay in their order (it is the output's). Reduced
 * dims too when `by_stride` is false; when true (sums, whose order is free), they go in memory
 * order, outermost first (expanded dims, stride 0, outside all), so a permuted tensor is
 * summed in contiguous runs as a contiguous one is: its dims are then those of the
 * contiguous tensor it is a permutation of, so the order still depends only on the layout.
 * A contiguous input's order does not change. */
static void split_dims(const tensor *x, const bool *mask, group *kept, group *red, bool by_stride)
{
    int order[MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) order[d] = d;
    if (by_stride) {
        /* stable insertion sort of the reduced dims among themselves, by decreasing stride */
        int rd[MAX_DIMS], n = 0;
        for (int d = 0; d < x->ndim; d++)
            if (mask[d]) rd[n++] = d;
        for (int i = 1; i < n; i++)
            for (int j = i; j > 0; j--) {
                uint64_t a = (uint64_t)x->strides[rd[j - 1]] - 1, b = (uint64_t)x->strides[rd[j]] - 1;
                if (a >= b) break; /* (stride 0 wraps to the largest) */
                int t = rd[j - 1];
                rd[j - 1] = rd[j];
                rd[j] = t;
            }
        for (int d = 0, k = 0; d < x->ndim; d++)
            if (mask[d]) order[d] = rd[k++];
    }
    kept->nd = red->nd = 0;
    kept->n = red->n = 1;
    for (int i = 0; i < x->ndim; i++) {
        int d = order[i];
        group *g = mask[d] ? red : kept;
        g->n *= x->shape[d];
        if (x->shape[d] == 1) continue;
        if (g->nd && g->stride[g->nd - 1] == x->strides[d] * x->shape[d]) {
            g->shape[g->nd - 1] *= x->shape[d];
            g->stride[g->nd - 1] = x->strides[d];
            continue;
        }
        g->shape[g->nd] = x->shape[d];
        g->stride[g->nd++] = x->strides[d];
    }
}

/* Offset (elements) of flat index i within a group. */
static inline int64_t group_offset(const group *g, int64_t i)
{
    int64_t off = 0;
    for (int d = g->nd - 1; d >= 0; d--) {
        off += (i % g->shape[d]) * g->stride[d];
        i /= g->shape[d];
    }
    return off;
}

/* ---- contiguous-run sums: 16 accumulators, combined pairwise in a fixed tree ----
 * float32 accumulates in double throughout (runs, chunks, rows): summed in float, a column of
 * 1e6 values 0.1 came to 100958 and 1e7 contiguous ones to 999987; PyTorch's cascade sums
 * stay within ~1e-6. */
#define RUN_SUM(NAME, T, TA)                                                               \
    EW_MULTIVERSION static TA NAME(const T *p, int64_t n)                                  \
    {                                                                                      \
        TA acc[16] = {0};                                                                  \
        int64_t i = 0;                                                                     \
        for (; i + 16 <= n; i += 16)                                                       \
            for (int j = 0; j < 16; j++) acc[j] += p[i + j];                               \
        for (int j = 0; i + j < n; j++) acc[j] += p[i + j];                                \
        for (int w = 8; w >= 1; w /= 2)                                                    \
            for (int j = 0; j < w; j++) acc[j] += acc[j + w];                              \
        return acc[0];                                                                     \
    }
RUN_SUM(run_sum_f32, float, double)
RUN_SUM(run_sum_f64, double, double)
RUN_SUM(run_sum_i64, int64_t, uint64_t) /* int64 wraps, as PyTorch's (ewise.h) */

static int64_t run_sum_b(const uint8_t *p, int64_t n)
{
    int64_t s = 0;
    for (int64_t i = 0; i < n; i++) s += p[i];
    return s;
}

typedef struct rctx {
    const tensor *x;
    tensor *vals, *idx;
    reduce_kind k;
    group kept, red;
    int64_t inner;   /* length of the contiguous innermost reduced run (1 if none); for
                        max/min, of the innermost reduced dim, `istride` apart */
    int64_t istride;
    group outer;     /* the reduced dims outside that run */
    int64_t nchunks; /* chunks of the reduced space per output (sum over runs) */
    void *partials;  /* [output][chunk] partial sums for the split mode */
} rctx;

/* Sum of reduced-space chunk c of output o. Chunks cover whole runs, or pieces of one long
 * run: chunk boundaries depend only on the shape. */
static void chunk_bounds(const rctx *c, int64_t ch, int64_t *r0, int64_t *r1)
{
    int64_t total = c->red.n;
    *r0 = ch * REDUCE_CHUNK;
    *r1 = *r0 + REDUCE_CHUNK < total ? *r0 + REDUCE_CHUNK : total;
}

#define SUM_RANGE(NAME, T, TI, RUN)                                                        \
    static T NAME(const rctx *c, const TI *base, int64_t r0, int64_t r1)                   \
    {                                                                                      \
        /* flat reduced index r = outer_index * inner + within-run offset */               \
        T acc = 0;                                                                         \
        int64_t r = r0;                                                                    \
        bool first = true;                                                                 \
        while (r < r1) {                                                                   \
            int64_t o = r / c->inner, w = r % c->inner;                                    \
            int64_t len = c->inner - w;                                                    \
            if (len > r1 - r) len = r1 - r;                                                \
            T s = RUN(base + group_offset(&c->outer, o) + w, len);                         \
            acc = first ? s : acc + s;                                                     \
            first = false;                                                                 \
            r += len;                                                                      \
        }                                                                                  \
        return acc;                                                                        \
    }
SUM_RANGE(sum_range_f32, double, float, run_sum_f32)
SUM_RANGE(sum_range_f64, double, double, run_sum_f64)
SUM_RANGE(sum_range_i64, uint64_t, int64_t, run_sum_i64)
SUM_RANGE(sum_range_b, int64_t, uint8_t, run_sum_b)

/* One output's sum: chunks summed separately, then combined in order. */
static void sum_output(const rctx *c, int64_t o, int64_t ch_lo, int64_t ch_hi, void *dst)
{
    const char *xb = (const char *)tensor_data(c->x);
    int64_t off = group_offset(&c->kept, o);
    for (int64_t ch = ch_lo; ch < ch_hi; ch++) {
        int64_t r0, r1;
        chunk_bounds(c, ch, &r0, &r1);
        switch ((dtype)c->x->dtype) {
        case DT_F32: /* (partials in double) */
            ((double *)dst)[ch - ch_lo] = sum_range_f32(c, (const float *)xb + off, r0, r1);
            break;
        case DT_F64:
            ((double *)dst)[ch - ch_lo] = sum_range_f64(c, (const double *)xb + off, r0, r1);
            break;
        case DT_I64:
            ((int64_t *)dst)[ch - ch_lo] = sum_range_i64(c, (const int64_t *)xb + off, r0, r1);
            break;
        case DT_BOOL:
            ((int64_t *)dst)[ch - ch_lo] = sum_range_b(c, (const uint8_t *)xb + off, r0, r1);
            break;
        }
    }
}

static void combine(const rctx *c, int64_t o, const void *parts)
{
    int64_t n = c->nchunks;
    switch ((dtype)c->vals->dtype) {
    case DT_F32: {
        const double *p = parts;
        double s = n ? p[0] : 0;
        for (int64_t i = 1; i < n; i++) s += p[i];
        ((float *)tensor_data(c->vals))[o] = (float)s;
        break;
    }
    case DT_F64: {
        const double *p = parts;
        double s = n ? p[0] : 0;
        for (int64_t i = 1; i < n; i++) s += p[i];
        ((double *)tensor_data(c->vals))[o] = s;
        break;
    }
    default: {
        const int64_t *p = parts;
        uint64_t s = 0; /* (wrapping) */
        for (int64_t i = 0; i < n; i++) s += (uint64_t)p[i];
        ((int64_t *)tensor_data(c->vals))[o] = (int64_t)s;
        break;
    }
    }
}

static size_t part_size(const rctx *c) { (void)c; return 8; } /* double or int64 */

/* Parallel over outputs: each output reduced entirely by one chunk of work. */
static void sum_outputs(void *p, int64_t lo, int64_t hi)
{
    const rctx *c = p;
    double buf_small[64];
    for (int64_t o = lo; o < hi; o++) {
        void *dst = c->partials ? (char *)c->partials + (size_t)o * c->nchunks * part_size(c)
                                : (void *)buf_small;
        sum_output(c, o, 0, c->nchunks, dst);
        combine(c, o, dst);
    }
}

/* Parallel over (output, chunk) pairs when there are few outputs: partials first. */
static void sum_chunks(void *p, int64_t lo, int64_t hi)
{
    const rctx *c = p;
    for (int64_t j = lo; j < hi; j++) {
        int64_t o = j / c->nchunks, ch = j % c->nchunks;
        sum_output(c, o, ch, ch + 1,
                   (char *)c->partials + (size_t)(o * c->nchunks + ch) * part_size(c));
    }
}

/* ---- outer-layout sums: outputs contiguous, accumulate reduced rows in order ---- */
#define OUTER_SUM(NAME, T, TI)                                                             \
    EW_MULTIVERSION static void NAME(T *out, const TI *x, int64_t n, const rctx *c,        \
                                     int64_t kstride)                                      \
    {                                                                                      \
        for (int64_t j = 0; j < n; j++) out[j] = 0;                                        \
        for (int64_t r = 0; r < c->red.n; r++) {                                           \
            const TI *row = x + group_offset(&c->red, r);                                  \
            if (kstride == 1) {                                                            \
                for (int64_t j = 0; j < n; j++) out[j] += (T)row[j];                       \
            } else {                                                                       \
                for (int64_t j = 0; j < n; j++) out[j] += (T)row[j * kstride];             \
            }                                                                              \
        }                                                                                  \
    }
OUTER_SUM(outer_sum_f64, double, double)

/* float32: the same order, in double, OUTER_BLOCK outputs at a time. */
enum { OUTER_BLOCK = 256 };
EW_MULTIVERSION static void outer_sum_f32(float *out, const float *x, int64_t n, const rctx *c,
                                          int64_t kstride)
{
    double acc[OUTER_BLOCK];
    for (int64_t j0 = 0; j0 < n; j0 += OUTER_BLOCK) {
        int64_t m = n - j0 < OUTER_BLOCK ? n - j0 : OUTER_BLOCK;
        for (int64_t j = 0; j < m; j++) acc[j] = 0;
        for (int64_t r = 0; r < c->red.n; r++) {
            const float *row = x + group_offset(&c->red, r) + j0 * kstride;
            if (kstride == 1) {
                for (int64_t j = 0; j < m; j++) acc[j] += row[j];
            } else {
                for (int64_t j = 0; j < m; j++) acc[j] += row[j * kstride];
            }
        }
        for (int64_t j = 0; j < m; j++) out[j0 + j] = (float)acc[j];
    }
}
OUTER_SUM(outer_sum_i64, uint64_t, int64_t) /* (wrapping) */
OUTER_SUM(outer_sum_b, int64_t, uint8_t)

/* Kept space walked as rows of the innermost kept dim; chunk [lo, hi) of outputs. */
static void outer_outputs(void *p, int64_t lo, int64_t hi)
{
    const rctx *c = p;
    int64_t row = c->kept.nd ? c->kept.shape[c->kept.nd - 1] : 1;
    int64_t ks = c->kept.nd ? c->kept.stride[c->kept.nd - 1] : 1;
    const char *xb = (const char *)tensor_data(c->x);
    size_t es = dtype_size((dtype)c->x->dtype);
    for (int64_t o = lo; o < hi;) {
        int64_t w = o % row, n = row - w;
        if (n > hi - o) n = hi - o;
        const char *src = xb + (size_t)group_offset(&c->kept, o) * es;
        char *dst = (char *)tensor_data(c->vals) + (size_t)o * dtype_size((dtype)c->vals->dtype);
        switch ((dtype)c->x->dtype) {
        case DT_F32: outer_sum_f32((float *)dst, (const float *)src, n, c, ks); break;
        case DT_F64: outer_sum_f64((double *)dst, (const double *)src, n, c, ks); break;
        case DT_I64: outer_sum_i64((uint64_t *)dst, (const int64_t *)src, n, c, ks); break;
        case DT_BOOL: outer_sum_b((int64_t *)dst, (const uint8_t *)src, n, c, ks); break;
        }
        o += n;
    }
}

/* ---- max / min / arg: sequential per output, in row-major reduced order ---- */
/* Walks runs along the innermost reduced dim (no offset arithmetic per element); stops at
 * the first NaN. */
#define EXTREME(NAME, T, CMP)                                                              \
    static void NAME(const rctx *c, int64_t o)                                             \
    {                                                                                      \
        const T *x = (const T *)tensor_data(c->x) + group_offset(&c->kept, o);             \
        T best = x[0];                                                                     \
        int64_t bi = 0, len = c->inner, st = c->istride, nrun = len ? c->red.n / len : 0;  \
        for (int64_t ro = 0; ro < nrun && best == best; ro++) {                            \
            const T *p = x + group_offset(&c->outer, ro);                                  \
            for (int64_t j = (ro == 0); j < len; j++) {                                    \
                T v = p[j * st];                                                           \
                if (v != v || (v CMP best)) {                                              \
                    best = v;                                                              \
                    bi = ro * len + j;                                                     \
                    if (v != v) break;                                                     \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
        if (c->vals) ((T *)tensor_data(c->vals))[o] = best;                                \
        if (c->idx) ((int64_t *)tensor_data(c->idx))[o] = bi;                              \
    }
EXTREME(max_f32, float, >)
EXTREME(max_f64, double, >)
EXTREME(max_i64, int64_t, >)
EXTREME(max_b, uint8_t, >)
EXTREME(min_f32, float, <)
EXTREME(min_f64, double, <)
EXTREME(min_i64, int64_t, <)
EXTREME(min_b, uint8_t, <)

static void extreme_outputs(void *p, int64_t lo, int64_t hi)
{
    const rctx *c = p;
    bool mx = c->k == RK_MAX || c->k == RK_ARGMAX;
    static void (*const fns[2][DT_COUNT])(const rctx *, int64_t) = {
        {min_f32, min_f64, min_i64, min_b}, {max_f32, max_f64, max_i64, max_b}};
    void (*f)(const rctx *, int64_t) = fns[mx][c->x->dtype];
    for (int64_t o = lo; o < hi; o++) f(c, o);
}

eng_err reduce_kernel(tensor *vals, tensor *idx, const tensor *x, const bool *mask, reduce_kind k)
{
    rctx c;
    memset(&c, 0, sizeof c);
    c.x = x;
    c.vals = vals;
    c.idx = idx;
    c.k = k;
    split_dims(x, mask, &c.kept, &c.red, k == RK_SUM);
    int64_t M = c.kept.n;
    if (M == 0) return E_OK;
    if (k != RK_SUM) {
        c.inner = c.red.nd ? c.red.shape[c.red.nd - 1] : 1;
        c.istride = c.red.nd ? c.red.stride[c.red.nd - 1] : 0;
        c.outer = c.red;
        if (c.outer.nd) c.outer.nd--;
        int64_t grain = c.red.n > 0 ? (PAR_GRAIN_CHEAP + c.red.n - 1) / c.red.n : M;
        par_for(M, grain, extreme_outputs, &c);
        return E_OK;
    }
    /* Sums. Innermost reduced dim contiguous (or everything reduced): runs + chunks. */
    bool inner = c.red.nd == 0 || c.red.stride[c.red.nd - 1] == 1 || c.kept.nd == 0;
    if (!inner) {
        int64_t grain = c.red.n ? (PAR_GRAIN_CHEAP + c.red.n - 1) / c.red.n : M;
        /* Chunks of up to OUTER_BLOCK outputs (4 a thread, if there are that many): each
         * chunk streams through every reduced row, so narrow chunks read one cache line a
         * row (a 2048 x 2048 column sum in chunks of 16: 8 ms, in chunks of 256: ~2 ms).
         * Chunks never change a result: each output is summed whole, in one order. */
        int64_t nt = par_plan_threads(), want = (M + 4 * nt - 1) / (4 * nt);
        if (want > OUTER_BLOCK) want = OUTER_BLOCK;
        if (grain < want) grain = want;
        if (grain < 16) grain = 16;
        par_for(M, grain, outer_outputs, &c);
        return E_OK;
    }
    if (c.red.nd && c.red.stride[c.red.nd - 1] == 1) {
        c.inner = c.red.shape[c.red.nd - 1];
        c.outer = c.red;
        c.outer.nd--;
    } else {
        c.inner = 1;
        c.outer = c.red;
    }
    c.nchunks = (c.red.n + REDUCE_CHUNK - 1) / REDUCE_CHUNK;
    if (c.nchunks == 0) {
        /* empty reduction: zeros */
        memset(tensor_data(vals), 0, (size_t)M * dtype_size((dtype)vals->dtype));
        return E_OK;
    }
    int nt = par_plan_threads();
    bool split = M < 2 * nt && c.nchunks > 1;
    if (split || c.nchunks > 64) {
        c.partials = mem_alloc((size_t)M * (size_t)c.nchunks * part_size(&c));
        if (!c.partials) return err_nomem();
    }
    if (!split) {
        int64_t grain = (PAR_GRAIN_CHEAP + c.red.n - 1) / c.red.n;
        par_for(M, grain < 1 ? 1 : grain, sum_outputs, &c);
    } else {
        par_for(M * c.nchunks, 1, sum_chunks, &c);
        for (int64_t o = 0; o < M; o++)
            combine(&c, o, (char *)c.partials + (size_t)o * c.nchunks * part_size(&c));
    }
    mem_free(c.partials);
    return E_OK;
}
