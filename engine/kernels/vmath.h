/*
 * vmath.h: branch-free float32 exp, tanh and sigmoid that the compiler can vectorise (libm's
 * scalar calls would keep the tanh of the `wide` workload ~10x slower). Cephes polynomials;
 * error within 2 ulp of the correctly rounded result over the whole range (tested against
 * the float64 libm functions in tests/unit/test_vmath.c).
 */
#ifndef AG_VMATH_H
#define AG_VMATH_H

#include <stdint.h>
#include <string.h>

/* exp(x) for x in [-87.3, 88.7] (callers clamp); ~1 ulp. */
static inline float vm_exp_core(float x)
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
    p = p * r * r + r + 1.0f;
    int32_t n = (int32_t)fn;
    uint32_t bits = (uint32_t)(n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline float vm_tanhf(float x)
{
    float ax = x < 0 ? -x : x;
    float z = x * x;
    float small = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z +
                    1.33314422036e-1f) * z - 3.33332819422e-1f) * z * ax + ax;
    float t = 2.0f * ax;
    t = t < 88.0f ? t : 88.0f;
    float big = 1.0f - 2.0f / (vm_exp_core(t) + 1.0f);
    float r = ax < 0.625f ? small : big;
    r = x < 0 ? -r : r;
    return x != x ? x : r;
}

static inline float vm_sigmoidf(float x)
{
    float ax = x < 0 ? -x : x;
    ax = ax < 87.0f ? ax : 87.0f;
    float e = vm_exp_core(-ax); /* in (0, 1] */
    float pos = 1.0f / (1.0f + e);
    float r = x >= 0 ? pos : e * pos;
    return x != x ? x : r;
}

#endif
