/*
 * test_vmath.c: the vectorisable float32 exp / tanh / sigmoid of kernels/vmath.h against the
 * float64 libm functions: the largest error in ulps over a dense sweep of float bit patterns,
 * every float near the kernels' internal boundaries, and the special values.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "kernels/vmath.h"

static int failures;

/* |got - want| in units of the float spacing at want (the spacing of the smallest denormal
 * below FLT_MIN); 0 when both are the same NaN/infinity/zero, huge for a wrong sign of zero. */
static double ulp_error(float got, double want)
{
    if (isnan(want) || isnan(got)) return isnan(want) && isnan(got) ? 0 : INFINITY;
    float w = (float)want;
    if (isinf(w) || isinf(got)) return w == got ? 0 : INFINITY;
    if (want == 0 && got == 0) return !signbit(want) == !signbit(got) ? 0 : INFINITY;
    float aw = fabsf(w);
    double spacing = aw < 0x1p-126f ? 0x1p-149 : (double)(nextafterf(aw, INFINITY) - aw);
    return fabs((double)got - want) / spacing;
}

static double ref_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

typedef struct fn {
    const char *name;
    float (*f)(float);
    double (*ref)(double);
    double worst;
    float worst_x;
} fn;

static float f_exp(float x) { return vm_expf(x); }
static float f_tanh(float x) { return vm_tanhf(x); }
static float f_sigmoid(float x) { return vm_sigmoidf(x); }

static void probe(fn *f, float x)
{
    double e = ulp_error(f->f(x), f->ref((double)x));
    if (e > f->worst || isnan(e)) {
        f->worst = isnan(e) ? INFINITY : e;
        f->worst_x = x;
    }
}

static float from_bits(uint32_t b)
{
    float x;
    memcpy(&x, &b, sizeof x);
    return x;
}
static uint32_t to_bits(float x)
{
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    return b;
}

int main(void)
{
    fn fns[3] = {{"vm_expf", f_exp, exp, 0, 0},
                 {"vm_tanhf", f_tanh, tanh, 0, 0},
                 {"vm_sigmoidf", f_sigmoid, ref_sigmoid, 0, 0}};
    /* every 331st bit pattern (both signs, denormals, infinities and NaNs included) ... */
    for (uint64_t b = 0; b <= 0xffffffffu; b += 331)
        for (int k = 0; k < 3; k++) probe(&fns[k], from_bits((uint32_t)b));
    /* ... and every float within 2^16 patterns of each boundary the kernels have: tanh's
     * switch from polynomial to exp at 0.625, the clamps of the exp argument, the normal
     * range's end (exp results turn denormal), and around 0 and 1 */
    static const float edges[] = {0.625f, 44.0f, 87.0f, 88.0f, 88.72f, 89.0f, 103.0f, 104.0f,
                                  87.33f, 0x1p-126f, 1.0f, 0.0f, 9.0f};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        for (int s = 0; s < 2; s++) {
            uint32_t c = to_bits(s ? -edges[i] : edges[i]);
            for (uint32_t d = 0; d < 65536; d++) {
                uint32_t b = c - 32768 + d;
                if ((b ^ c) >> 31) continue; /* stay on the edge's side of zero */
                for (int k = 0; k < 3; k++) probe(&fns[k], from_bits(b));
            }
        }
    }
    for (int k = 0; k < 3; k++) {
        printf("%-12s max error %.3f ulp at %a\n", fns[k].name, fns[k].worst,
               (double)fns[k].worst_x);
        if (!(fns[k].worst <= 3.0)) {
            fprintf(stderr, "%s: error %.3f ulp at %a exceeds 3 ulp\n", fns[k].name,
                    fns[k].worst, (double)fns[k].worst_x);
            failures++;
        }
    }
    /* special values, exactly */
    struct {
        float got, want;
    } sv[] = {
        {vm_tanhf(0.0f), 0.0f},          {vm_tanhf(-0.0f), -0.0f},
        {vm_tanhf(INFINITY), 1.0f},      {vm_tanhf(-INFINITY), -1.0f},
        {vm_tanhf(1e30f), 1.0f},         {vm_tanhf(-1e30f), -1.0f},
        {vm_sigmoidf(0.0f), 0.5f},       {vm_sigmoidf(-0.0f), 0.5f},
        {vm_sigmoidf(INFINITY), 1.0f},   {vm_sigmoidf(-INFINITY), 0.0f},
        {vm_sigmoidf(1e30f), 1.0f},      {vm_sigmoidf(-1e30f), 0.0f},
        {vm_expf(0.0f), 1.0f},           {vm_expf(-0.0f), 1.0f},
        {vm_expf(INFINITY), INFINITY},   {vm_expf(-INFINITY), 0.0f},
        {vm_expf(89.0f), INFINITY},      {vm_expf(-104.0f), 0.0f},
    };
    for (size_t i = 0; i < sizeof sv / sizeof sv[0]; i++) {
        if (memcmp(&sv[i].got, &sv[i].want, sizeof(float)) != 0) {
            fprintf(stderr, "special value %zu: got %a, expected %a\n", i, (double)sv[i].got,
                    (double)sv[i].want);
            failures++;
        }
    }
    if (!isnan(vm_tanhf(NAN)) || !isnan(vm_sigmoidf(NAN)) || !isnan(vm_expf(NAN))) {
        fprintf(stderr, "NaN does not propagate\n");
        failures++;
    }
    if (!(vm_sigmoidf(-100.0f) > 0 && vm_expf(-100.0f) > 0)) { /* denormal, not flushed */
        fprintf(stderr, "tiny results flushed to zero\n");
        failures++;
    }
    printf("test_vmath: %s\n", failures ? "FAILED" : "all checks passed");
    return failures != 0;
}
