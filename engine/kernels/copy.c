/*
 * copy.c: element copies with broadcasting and dtype conversion, fills, and element reads.
 */
#include <math.h>
#include <string.h>

#include "../ops.h"
#include "../parallel.h"
#include "iter.h"

/* float -> int64 as x86 does for out-of-range values, without undefined behaviour. */
static inline int64_t f2i(double v)
{
    if (!(v >= -9223372036854775808.0 && v < 9223372036854775808.0)) return INT64_MIN;
    return (int64_t)v;
}

#define CONV_f32(x) ((float)(x))
#define CONV_f64(x) ((double)(x))
#define CONV_i64(x) (f2i((double)(x)))
#define CONV_b(x) ((uint8_t)((x) != 0))

#define COPY_LOOP(NAME, TO, FROM, CONV)                                                    \
    static void NAME(char **d, const int64_t *s, int64_t n, void *ctx)                     \
    {                                                                                      \
        (void)ctx;                                                                         \
        for (int64_t i = 0; i < n; i++)                                                    \
            *(TO *)(d[0] + i * s[0]) = CONV(*(const FROM *)(d[1] + i * s[1]));             \
    }

#define COPY_FROM(FROM, SUF)                                                               \
    COPY_LOOP(copy_f32_##SUF, float, FROM, CONV_f32)                                       \
    COPY_LOOP(copy_f64_##SUF, double, FROM, CONV_f64)                                      \
    COPY_LOOP(copy_i64_##SUF, int64_t, FROM, CONV_i64)                                     \
    COPY_LOOP(copy_b_##SUF, uint8_t, FROM, CONV_b)

COPY_FROM(float, f32)
COPY_FROM(double, f64)
COPY_FROM(uint8_t, b)
/* int64 sources convert exactly except to bool. */
COPY_LOOP(copy_f32_i64, float, int64_t, CONV_f32)
COPY_LOOP(copy_f64_i64, double, int64_t, CONV_f64)
COPY_LOOP(copy_i64_i64, int64_t, int64_t, (int64_t))
COPY_LOOP(copy_b_i64, uint8_t, int64_t, CONV_b)

/* [to][from] */
static const iter_loop copy_loops[DT_COUNT][DT_COUNT] = {
    {copy_f32_f32, copy_f32_f64, copy_f32_i64, copy_f32_b},
    {copy_f64_f32, copy_f64_f64, copy_f64_i64, copy_f64_b},
    {copy_i64_f32, copy_i64_f64, copy_i64_i64, copy_i64_b},
    {copy_b_f32, copy_b_f64, copy_b_i64, copy_b_b},
};

static void memcpy_loop(char **d, const int64_t *s, int64_t n, void *ctx)
{
    size_t es = *(const size_t *)ctx;
    if (s[0] == (int64_t)es && s[1] == (int64_t)es) {
        memcpy(d[0], d[1], (size_t)n * es);
        return;
    }
    /* Strided (transposes, broadcasts): typed moves, not a memcpy call per element. */
    if (es == 8) {
        for (int64_t i = 0; i < n; i++) *(uint64_t *)(d[0] + i * s[0]) = *(const uint64_t *)(d[1] + i * s[1]);
    } else if (es == 4) {
        for (int64_t i = 0; i < n; i++) *(uint32_t *)(d[0] + i * s[0]) = *(const uint32_t *)(d[1] + i * s[1]);
    } else {
        for (int64_t i = 0; i < n; i++) d[0][i * s[0]] = d[1][i * s[1]];
    }
}

/* Transposing copies, tile by tile. A copy whose destination runs along one dim and whose
 * source runs along another (contiguous() of a transpose, or of a result laid out as one)
 * walked element by element reads one element per cache line, in a stride that defeats the
 * prefetcher. In TILE x TILE tiles (2048 x 2048 float32, 1 thread: 22.6 -> 17.7 ms; the rest is
 * TLB misses, a new page per row on one side or the other; PyTorch takes ~12 ms). */
enum { TILE = 32 };

typedef struct tcopy {
    const iter *it;
    size_t es;
    int64_t n0, n1, t0, t1; /* the plane (iterator dims 0 and 1) and its tiles along each */
} tcopy;

static void tcopy_tiles(void *p, int64_t lo, int64_t hi)
{
    const tcopy *c = p;
    const iter *it = c->it;
    for (int64_t t = lo; t < hi; t++) {
        int64_t plane = t / (c->t0 * c->t1), r = t % (c->t0 * c->t1);
        int64_t i0 = r % c->t0 * TILE, i1 = r / c->t0 * TILE;
        char *d = it->data[0], *s = it->data[1];
        int64_t q = plane;
        for (int k = 2; k < it->ndim; k++) { /* (outer dims, innermost first) */
            int64_t idx = q % it->shape[k];
            q /= it->shape[k];
            d += idx * it->strides[0][k];
            s += idx * it->strides[1][k];
        }
        int64_t e0 = i0 + TILE < c->n0 ? i0 + TILE : c->n0, e1 = i1 + TILE < c->n1 ? i1 + TILE : c->n1;
        int64_t ds0 = it->strides[0][0], ds1 = it->strides[0][1];
        int64_t ss0 = it->strides[1][0], ss1 = it->strides[1][1];
        if (c->es == 4) {
            for (int64_t a = i0; a < e0; a++)
                for (int64_t b = i1; b < e1; b++)
                    *(uint32_t *)(d + a * ds0 + b * ds1) = *(const uint32_t *)(s + a * ss0 + b * ss1);
        } else {
            for (int64_t a = i0; a < e0; a++)
                for (int64_t b = i1; b < e1; b++)
                    *(uint64_t *)(d + a * ds0 + b * ds1) = *(const uint64_t *)(s + a * ss0 + b * ss1);
        }
    }
}

/* Whether the same-dtype copy `it` is a transpose worth tiling, and if so does it. */
static bool copy_transposed(const iter *it, size_t es)
{
    if (it->ndim < 2 || (es != 4 && es != 8)) return false;
    /* destination contiguous along dim 0, source along dim 1, both planes large */
    if (it->strides[0][0] != (int64_t)es || it->strides[1][1] != (int64_t)es ||
        it->strides[1][0] == (int64_t)es || it->shape[0] < TILE || it->shape[1] < TILE)
        return false;
    int64_t planes = 1;
    for (int k = 2; k < it->ndim; k++) planes *= it->shape[k];
    tcopy c = {it, es, it->shape[0], it->shape[1], (it->shape[0] + TILE - 1) / TILE,
               (it->shape[1] + TILE - 1) / TILE};
    par_for(planes * c.t0 * c.t1, (PAR_GRAIN_CHEAP + TILE * TILE - 1) / (TILE * TILE),
            tcopy_tiles, &c);
    return true;
}

eng_err kernel_copy(tensor *dst, const tensor *src)
{
    iter it;
    tensor *in = (tensor *)src;
    iter_init(&it, dst, &in, 1);
    if (dst->dtype == src->dtype && it.numel > 0 &&
        copy_transposed(&it, dtype_size((dtype)dst->dtype)))
        return E_OK;
    if (dst->dtype == src->dtype) {
        size_t es = dtype_size((dtype)dst->dtype);
        iter_run(&it, memcpy_loop, &es, PAR_GRAIN_CHEAP);
    } else {
        iter_run(&it, copy_loops[dst->dtype][src->dtype], NULL, PAR_GRAIN_CHEAP);
    }
    return E_OK;
}

typedef struct fill_ctx {
    unsigned char bytes[8];
    size_t es;
} fill_ctx;

static void fill_loop(char **d, const int64_t *s, int64_t n, void *p)
{
    const fill_ctx *c = p;
    if (c->es == 4 && s[0] == 4) {
        float v;
        memcpy(&v, c->bytes, 4);
        float *o = (float *)d[0];
#pragma omp simd
        for (int64_t i = 0; i < n; i++) o[i] = v;
        return;
    }
    if (c->es == 8 && s[0] == 8) {
        uint64_t v;
        memcpy(&v, c->bytes, 8);
        uint64_t *o = (uint64_t *)d[0];
#pragma omp simd
        for (int64_t i = 0; i < n; i++) o[i] = v;
        return;
    }
    for (int64_t i = 0; i < n; i++) memcpy(d[0] + i * s[0], c->bytes, c->es);
}

void kernel_fill(tensor *t, double v)
{
    fill_ctx c;
    c.es = dtype_size((dtype)t->dtype);
    switch ((dtype)t->dtype) {
    case DT_F32: { float f = (float)v; memcpy(c.bytes, &f, 4); break; }
    case DT_F64: memcpy(c.bytes, &v, 8); break;
    case DT_I64: { int64_t i = f2i(v); memcpy(c.bytes, &i, 8); break; }
    case DT_BOOL: c.bytes[0] = v != 0; break;
    }
    if (t->numel == 1) {
        memcpy(tensor_data(t), c.bytes, c.es);
        return;
    }
    iter it;
    iter_init(&it, t, NULL, 0);
    iter_run(&it, fill_loop, &c, PAR_GRAIN_CHEAP);
}

double tensor_get_f64(const tensor *t, int64_t i)
{
    int64_t off = 0;
    for (int d = t->ndim - 1; d >= 0; d--) {
        off += (i % t->shape[d]) * t->strides[d];
        i /= t->shape[d];
    }
    const char *p = (const char *)tensor_data(t) + off * (int64_t)dtype_size((dtype)t->dtype);
    switch ((dtype)t->dtype) {
    case DT_F32: return *(const float *)p;
    case DT_F64: return *(const double *)p;
    case DT_I64: return (double)*(const int64_t *)p;
    case DT_BOOL: return *(const uint8_t *)p;
    }
    return 0;
}

void tensor_copy_out(const tensor *t, void *buf, dtype dt)
{
    /* A header over the caller's buffer, living on the stack for this call only. */
    storage st;
    memset(&st, 0, sizeof st);
    st.data = buf;
    tensor view;
    memset(&view, 0, sizeof view);
    view.st = &st;
    view.dtype = (uint8_t)dt;
    view.ndim = t->ndim;
    view.numel = t->numel;
    int64_t strides[MAX_DIMS];
    view.shape = t->shape;
    view.strides = strides;
    contiguous_strides(t->shape, t->ndim, view.strides);
    kernel_copy(&view, t);
}
