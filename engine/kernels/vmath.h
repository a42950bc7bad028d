/*
 * vmath.h: branch-free float32 exp, tanh and sigmoid that the compiler can vectorise (libm's
 * scalar calls would keep the tanh of the `wide` workload ~10x slower). Cephes polynomials;
 * over the whole float range the error is below 1 ulp (exp), 1.5 ulp (tanh) and 2.5 ulp
 * (sigmoid) of the exact value, denormal results included (checked against the float64 libm
 * functions in tests/internal/test_vmath.c).
 */
#ifndef AG_VMATH_H
#define AG_VMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* c ? a : b as a blend of the bits. With a plain conditional GCC threads the constant side
 * (a clamp bound) through, leaves the arithmetic on one branch only, and then cannot
 * vectorise it without masked vectors (it may raise FP exceptions): AVX2 and SSE would lose
 * the vector loop. */
static inline float vm_select(int c, float a, float b)
{
    uint32_t ia, ib, m = (uint32_t)0 - (uint32_t)(c != 0);
    memcpy(&ia, &a, sizeof ia);
    memcpy(&ib, &b, sizeof ib);
    uint32_t r = (ia & m) | (ib & ~m);
    float f;
    memcpy(&f, &r, sizeof f);
    return f;
}

/* 2^n as a float, for n in [-126, 127]. */
static inline float vm_pow2i(int32_t n)
{
    uint32_t bits = (uint32_t)(n + 127) << 23;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* e^r for |r| <= ln(2)/2 (+ rounding slack), and the n of x = n ln2 + r. */
static inline float vm_exp_reduce(float x, float *fn_out)
{
    const float log2e = 1.44269504088896341f, c1 = 0.693359375f, c2 = -2.12194440e-4f;
    float fn = (x * log2e + 12582912.0f) - 12582912.0f; /* round to nearest */
    float r = x - fn * c1 - fn * c2;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    *fn_out = fn;
    return p * r * r + r + 1.0f;
}

/* exp(x) for x in [-87.3, 88.7] (callers clamp); ~1 ulp. */
static inline float vm_exp_core(float x)
{
    float fn;
    float p = vm_exp_reduce(x, &fn);
    return p * vm_pow2i((int32_t)fn);
}

/* exp(x) over the whole float range: inf above ~88.72, gradual underflow to denormals and 0
 * below -87.3 (2^n is applied in two halves so neither leaves the normal range); NaN stays. */
static inline float vm_expf(float x)
{
    float c = vm_select(x >= -104.0f, x, -104.0f); /* NaN too: float -> int stays defined */
    c = vm_select(c > 89.0f, 89.0f, c);
    float fn;
    float p = vm_exp_reduce(c, &fn);
    int32_t n = (int32_t)fn, h = n / 2;
    float r = p * vm_pow2i(h) * vm_pow2i(n - h);
    return vm_select(x != x, x, r);
}

static inline float vm_tanhf(float x)
{
    float ax = fabsf(x);
    float z = x * x;
    float small = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z +
                    1.33314422036e-1f) * z - 3.33332819422e-1f) * z * ax + ax;
    float t = 2.0f * ax;
    t = vm_select(t < 88.0f, t, 88.0f);
    float big = 1.0f - 2.0f / (vm_exp_core(t) + 1.0f);
    float r = copysignf(vm_select(ax < 0.625f, small, big), x); /* tanh(-0) = -0 */
    return vm_select(x != x, x, r);
}

/* 1 / (1 + e^-x), as e^-|x| / (1 + e^-|x|) for x < 0 so tiny results keep their precision
 * down to the denormals. */
static inline float vm_sigmoidf(float x)
{
    float e = vm_expf(-fabsf(x)); /* in [0, 1]; NaN stays */
    return vm_select(x < 0, e, 1.0f) / (1.0f + e);
}

#endif
