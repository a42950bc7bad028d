/*
 * creation.c: tensors from data, constants, ranges, identity and random numbers. Nothing here
 * is recorded: new tensors are leaves that do not require grad.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "../rng.h"
#include "ewise.h"

static eng_err check_dtype(dtype dt)
{
    if (!dtype_valid(dt)) return err_set(E_DTYPE, "unknown dtype %d", (int)dt);
    return E_OK;
}

eng_err op_empty(tensor **out, dtype dt, const int64_t *shape, int ndim)
{
    eng_err e = check_dtype(dt);
    if (e) return e;
    tensor *t = tensor_new(dt, shape, ndim);
    if (!t) return err_kind();
    /* Uninitialised bool bytes could be anything but the 0 and 1 every kernel, and every
     * binding's copy out, relies on (Go's Data[bool] handed out bools that were neither
     * true nor false). */
    if (dt == DT_BOOL) memset(tensor_data(t), 0, (size_t)t->numel);
    *out = t;
    return E_OK;
}

eng_err op_from_data(tensor **out, const void *data, dtype dt, const int64_t *shape, int ndim)
{
    tensor *t = NULL;
    eng_err e = op_empty(&t, dt, shape, ndim);
    if (e) return e;
    memcpy(tensor_data(t), data, (size_t)t->numel * dtype_size(dt));
    if (dt == DT_BOOL) {
        /* A bool byte is 0 or 1 everywhere else (kernels add and compare them as such): any
         * other nonzero byte the caller gives is true. */
        uint8_t *b = tensor_data(t);
        for (int64_t i = 0; i < t->numel; i++) b[i] = b[i] != 0;
    }
    *out = t;
    return E_OK;
}

eng_err op_from_f64(tensor **out, const double *data, dtype dt, const int64_t *shape, int ndim)
{
    eng_err e = check_dtype(dt);
    if (e) return e;
    int64_t numel;
    if ((e = shape_check(shape, ndim, &numel))) return e;
    if (dt == DT_I64)
        for (int64_t i = 0; i < numel; i++)
            if (data[i] != trunc(data[i]) || !(data[i] >= -0x1p63 && data[i] < 0x1p63))
                /* (an integral value in full, 2^63 as 9223372036854775808, not 9.22337e+18) */
                return err_set(E_INVAL,
                               fabs(data[i]) < 1e21 && data[i] == trunc(data[i])
                                   ? "element %lld (%.0f) is not an integer exactly "
                                     "representable as int64"
                                   : "element %lld (%.17g) is not an integer exactly "
                                     "representable as int64",
                               (long long)i, data[i]);
    tensor *t = tensor_new(dt, shape, ndim);
    if (!t) return err_kind();
    /* Convert through a header over the caller's doubles. */
    storage st;
    memset(&st, 0, sizeof st);
    st.data = (void *)data;
    tensor src;
    memset(&src, 0, sizeof src);
    src.st = &st;
    src.dtype = DT_F64;
    src.ndim = (uint8_t)ndim;
    src.numel = numel;
    src.shape = t->shape;
    src.strides = t->strides;
    kernel_copy(t, &src);
    *out = t;
    return E_OK;
}

eng_err int64_value_check(double v)
{
    if (v >= -0x1p63 && v < 0x1p63) return E_OK;
    return err_set(E_INVAL, "value cannot be converted to type int64_t without overflow: %g", v);
}

eng_err fill_value_check(dtype dt, double v)
{
    /* PyTorch converts a fill value with c10::checked_convert: for float32, a finite value
     * beyond FLT_MAX is an error (even one that would round to FLT_MAX), inf and NaN are not.
     * int64: see int64_value_check (2^63 is refused, where PyTorch lets it through to become
     * INT64_MIN). bool and float64 take any double. */
    if (dt == DT_I64) return int64_value_check(v);
    if (dt == DT_F32 && isfinite(v) && fabs(v) > FLT_MAX)
        return err_set(E_INVAL, "value cannot be converted to type float without overflow: %.9g",
                       v);
    return E_OK;
}

static eng_err fill_new(tensor **out, dtype dt, const int64_t *shape, int ndim, double v)
{
    tensor *t = NULL;
    eng_err e = op_empty(&t, dt, shape, ndim);
    if (e) return e;
    kernel_fill(t, v);
    *out = t;
    return E_OK;
}

eng_err op_full(tensor **out, dtype dt, const int64_t *shape, int ndim, double v)
{
    eng_err e = fill_value_check(dt, v);
    return e ? e : fill_new(out, dt, shape, ndim, v);
}

/* As torch.tensor(v, dtype=dt), which rounds a float32 overflow to inf (torch.full refuses
 * it) but refuses an int64 overflow. */
eng_err op_scalar(tensor **out, double v, dtype dt)
{
    eng_err e = dt == DT_I64 ? int64_value_check(v) : E_OK;
    return e ? e : fill_new(out, dt, NULL, 0, v);
}

/* ---- *_like: t's shape, dtype and layout (PyTorch's preserve_format) ---- */
eng_err op_empty_like(tensor **out, const tensor *t)
{
    tensor *r = tensor_new_preserve(t, (dtype)t->dtype);
    if (!r) return err_kind();
    if (r->dtype == DT_BOOL) memset(tensor_data(r), 0, (size_t)r->numel); /* (see op_empty) */
    *out = r;
    return E_OK;
}

eng_err op_full_like(tensor **out, const tensor *t, double v)
{
    eng_err e = fill_value_check((dtype)t->dtype, v);
    if (!e) e = op_empty_like(out, t);
    if (!e) kernel_fill(*out, v);
    return e;
}

/* r (fresh, contiguous, of t's shape) in t's layout: the values keep their logical places,
 * so rand_like(t) draws what rand(t's shape) draws. Takes r's reference. */
static eng_err in_layout_of(tensor **out, tensor *r, const tensor *t)
{
    int64_t st[MAX_DIMS];
    if (dense_strides_like(t, st) ||
        !memcmp(st, r->strides, (size_t)r->ndim * sizeof *st)) {
        *out = r;
        return E_OK;
    }
    tensor *c = tensor_new_strided((dtype)r->dtype, r->shape, r->ndim, st);
    if (!c) {
        tensor_release(r);
        return err_kind();
    }
    kernel_copy(c, r);
    tensor_release(r);
    *out = c;
    return E_OK;
}

eng_err op_arange(tensor **out, dtype dt, double start, double end, double step)
{
    eng_err e = check_dtype(dt);
    if (e) return e;
    if (dt == DT_BOOL) return err_set(E_DTYPE, "arange is not implemented for bool");
    /* PyTorch's checks, in its order (RangeFactories.cpp). */
    if (dt == DT_I64) {
        /* PyTorch computes an int64 range in int64: bounds and step convert (checked: NaN
         * and infinities too) and truncate first, so arange(0.5, 5, 1.5) is [0, 1, 2, 3, 4]
         * and arange(0, 2, 0.5) has a zero step. */
        if ((e = int64_value_check(start)) || (e = int64_value_check(end)) ||
            (e = int64_value_check(step)))
            return e;
        start = trunc(start);
        end = trunc(end);
        step = trunc(step);
    }
    if (!(step > 0 || step < 0)) return err_set(E_INVAL, "step must be nonzero"); /* NaN too */
    /* (%g: PyTorch writes the bounds with C++'s default stream format, which is %g's) */
    if (!isfinite(start) || !isfinite(end))
        return err_set(E_INVAL, "unsupported range: %g -> %g", start, end);
    if ((step > 0 && end < start) || (step < 0 && end > start))
        return err_set(E_INVAL, "upper bound and larger bound inconsistent with step sign");
    /* An infinite step gives ceil(0) = 0 elements, not even start, as in PyTorch. */
    double n = ceil((end - start) / step);
    int64_t i0 = 0, i1 = 0, istep = 0;
    if (dt == DT_I64) {
        /* PyTorch counts an int64 range in int64 (end - start + step - sign(step), truncated
         * by step), wrapping around where that overflows: arange(-9e18, 9e18, 3e18) is empty
         * there, where the span in double would give 6 elements. (In unsigned arithmetic
         * here: signed overflow is undefined in C.) */
        i0 = (int64_t)start;
        i1 = (int64_t)end;
        istep = (int64_t)step;
        uint64_t sgn = istep > 0 ? 1 : UINT64_MAX;
        int64_t num = (int64_t)((uint64_t)i1 - (uint64_t)i0 + (uint64_t)istep - sgn);
        n = num == INT64_MIN && istep == -1 ? 0x1p63 : (double)(num / istep);
    }
    if (!(n >= 0 && n <= 0x1p63)) /* NaN: an infinite step over an infinite span */
        return err_set(E_INVAL, "invalid size, possible overflow?");
    if (n > 1e12) return err_set(E_INVAL, "arange: too many elements (%g)", n);
    int64_t len = (int64_t)n;
    tensor *t = tensor_new(dt, &len, 1);
    if (!t) return err_kind();
    for (int64_t i = 0; i < len; i++) {
        double v = start + (double)i * step;
        switch (dt) {
        case DT_F32: ((float *)tensor_data(t))[i] = (float)v; break;
        case DT_F64: ((double *)tensor_data(t))[i] = v; break;
        case DT_I64: /* (wrapping, as PyTorch's kernel does in practice) */
            ((int64_t *)tensor_data(t))[i] =
                (int64_t)((uint64_t)i0 + (uint64_t)i * (uint64_t)istep);
            break;
        case DT_BOOL: break; /* rejected above */
        }
    }
    *out = t;
    return E_OK;
}

eng_err op_eye(tensor **out, dtype dt, int64_t n, int64_t m)
{
    if (n < 0 || m < 0) return err_set(E_INVAL, "n and m must be non-negative, got %lld and %lld",
                                       (long long)n, (long long)m);
    int64_t shape[2] = {n, m};
    tensor *t = NULL;
    eng_err e = op_full(&t, dt, shape, 2, 0.0);
    if (e) return e;
    size_t es = dtype_size(dt);
    tensor *one;
    if ((e = op_scalar(&one, 1.0, dt))) {
        tensor_release(t);
        return e;
    }
    for (int64_t i = 0; i < n && i < m; i++)
        memcpy((char *)tensor_data(t) + (size_t)(i * m + i) * es, tensor_data(one), es);
    tensor_release(one);
    *out = t;
    return E_OK;
}

/* ---- random ---- */
typedef enum rkind { R_UNIFORM, R_NORMAL, R_INT } rkind;

typedef struct rand_ctx {
    tensor *t;
    uint64_t seed, base;
    rkind kind;
    int64_t lo;
    uint64_t range;
} rand_ctx;

static inline double u53(uint32_t hi, uint32_t lo)
{
    return (double)(((uint64_t)hi << 21) ^ (lo >> 11)) * (1.0 / 9007199254740992.0);
}

/* Element i uses counter block base + i/2 and the half (i % 2) of its four words, so any
 * chunking gives the same numbers. */
static void rand_chunk(void *p, int64_t lo, int64_t hi)
{
    const rand_ctx *c = p;
    tensor *t = c->t;
    for (int64_t i = lo; i < hi; i++) {
        uint32_t w[4];
        philox(c->seed, c->base + (uint64_t)(i / 2), w);
        int h = (int)(i % 2) * 2;
        double v;
        if (c->kind == R_UNIFORM) {
            v = u53(w[h], w[h + 1]);
            if (t->dtype == DT_F32) {
                float f = (float)v;
                if (f >= 1.0f) f = 0x1.fffffep-1f; /* rounding must not reach 1 */
                ((float *)tensor_data(t))[i] = f;
                continue;
            }
        } else if (c->kind == R_NORMAL) {
            /* Box-Muller on the pair's block: element 2j takes the cosine, 2j+1 the sine. */
            double u1 = u53(w[0], w[1]), u2 = u53(w[2], w[3]);
            double r = sqrt(-2.0 * log(1.0 - u1));
            v = h ? r * sin(2 * M_PI * u2) : r * cos(2 * M_PI * u2);
        } else {
            uint64_t x = ((uint64_t)w[h] << 32) | w[h + 1];
            uint64_t k = (uint64_t)(((unsigned __int128)x * c->range) >> 64);
            int64_t iv = (int64_t)((uint64_t)c->lo + k);
            switch ((dtype)t->dtype) {
            case DT_I64: ((int64_t *)tensor_data(t))[i] = iv; break;
            case DT_F32: ((float *)tensor_data(t))[i] = (float)iv; break;
            case DT_F64: ((double *)tensor_data(t))[i] = (double)iv; break;
            case DT_BOOL: ((uint8_t *)tensor_data(t))[i] = iv != 0; break;
            }
            continue;
        }
        if (t->dtype == DT_F32)
            ((float *)tensor_data(t))[i] = (float)v;
        else
            ((double *)tensor_data(t))[i] = v;
    }
}

static eng_err random_fill(tensor **out, generator *g, dtype dt, const int64_t *shape, int ndim,
                           rkind kind, int64_t lo, int64_t hi)
{
    eng_err e = check_dtype(dt);
    if (e) return e;
    if (kind != R_INT && !dtype_is_float(dt))
        return err_set(E_DTYPE, "%s is only defined for float32 and float64, got %s",
                       kind == R_UNIFORM ? "rand" : "randn", dtype_name(dt));
    if (kind == R_INT && dt == DT_BOOL) return err_set(E_DTYPE, "randint is not defined for bool");
    if (kind == R_INT && lo >= hi)
        return err_set(E_INVAL, "random_ expects 'from' to be less than 'to', but got from=%lld "
                       ">= to=%lld", (long long)lo, (long long)hi);
    tensor *t = NULL;
    if ((e = op_empty(&t, dt, shape, ndim))) return e;
    if (!g) g = generator_default();
    rand_ctx c = {t, 0, 0, kind, lo, (uint64_t)hi - (uint64_t)lo};
    uint64_t blocks = (uint64_t)(t->numel + 1) / 2;
    c.base = generator_reserve(g, blocks, &c.seed);
    par_for(t->numel, PAR_GRAIN_COSTLY, rand_chunk, &c);
    *out = t;
    return E_OK;
}

eng_err op_rand(tensor **out, generator *g, dtype dt, const int64_t *shape, int ndim)
{
    return random_fill(out, g, dt, shape, ndim, R_UNIFORM, 0, 0);
}
eng_err op_randn(tensor **out, generator *g, dtype dt, const int64_t *shape, int ndim)
{
    return random_fill(out, g, dt, shape, ndim, R_NORMAL, 0, 0);
}
eng_err op_rand_like(tensor **out, generator *g, const tensor *t)
{
    tensor *r = NULL;
    eng_err e = op_rand(&r, g, (dtype)t->dtype, t->shape, t->ndim);
    return e ? e : in_layout_of(out, r, t);
}
eng_err op_randn_like(tensor **out, generator *g, const tensor *t)
{
    tensor *r = NULL;
    eng_err e = op_randn(&r, g, (dtype)t->dtype, t->shape, t->ndim);
    return e ? e : in_layout_of(out, r, t);
}
eng_err op_randint(tensor **out, generator *g, int64_t lo, int64_t hi, dtype dt,
                   const int64_t *shape, int ndim)
{
    return random_fill(out, g, dt, shape, ndim, R_INT, lo, hi);
}
