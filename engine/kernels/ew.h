/*
 * ew.h: macros that generate elementwise inner loops (see iter.h for the loop signature).
 *
 * Each loop has a unit-stride fast path the compiler vectorises and a strided fallback; the
 * binary form also special-cases one operand broadcast as a scalar. Loops are compiled three
 * times (AVX-512, AVX2, baseline x86-64) and the CPU's best clone is picked at load time, so
 * the library runs on any x86-64 without -march=native. Inside EXPR, `x` (and `y`) is the
 * element and `P` the loop's double* parameters.
 */
#ifndef AG_EW_H
#define AG_EW_H

#include <stdint.h>

/* `omp simd` is a request: loops that call libm (pow, erf) stay scalar, which clang reports
 * as a failed pass. That is expected here, not a defect. */
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wpass-failed"
#endif

/* clang 14 gives the resolvers of static target_clones functions global names, so equally
 * named loops in two files would clash at link time: clang builds keep the baseline loops. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define EW_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define EW_MULTIVERSION
#endif

#define EW_UNARY_LOOP(NAME, TO, TI, EXPR)                                                  \
    EW_MULTIVERSION static void NAME(char **d, const int64_t *s, int64_t n, void *ctx)     \
    {                                                                                      \
        const double *P = (const double *)ctx;                                             \
        (void)P;                                                                           \
        if (n == 1) { /* one element: scalar graphs */                                     \
            TI x = *(const TI *)d[1];                                                      \
            *(TO *)d[0] = (EXPR);                                                          \
            return;                                                                        \
        }                                                                                  \
        if (s[0] == (int64_t)sizeof(TO) && s[1] == (int64_t)sizeof(TI)) {                  \
            TO *o = (TO *)d[0];                                                            \
            const TI *a = (const TI *)d[1];                                                \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++)                            \
            {                                                                              \
                TI x = a[i];                                                               \
                o[i] = (EXPR);                                                             \
            }                                                                              \
        } else {                                                                           \
            for (int64_t i = 0; i < n; i++) {                                              \
                TI x = *(const TI *)(d[1] + i * s[1]);                                     \
                *(TO *)(d[0] + i * s[0]) = (EXPR);                                         \
            }                                                                              \
        }                                                                                  \
    }

#define EW_BINARY_LOOP(NAME, TO, TI, EXPR)                                                 \
    EW_MULTIVERSION static void NAME(char **d, const int64_t *s, int64_t n, void *ctx)     \
    {                                                                                      \
        const double *P = (const double *)ctx;                                             \
        (void)P;                                                                           \
        const int64_t es = (int64_t)sizeof(TI);                                            \
        if (n == 1) {                                                                      \
            TI x = *(const TI *)d[1], y = *(const TI *)d[2];                               \
            *(TO *)d[0] = (EXPR);                                                          \
            return;                                                                        \
        }                                                                                  \
        if (s[0] == (int64_t)sizeof(TO) && s[1] == es && s[2] == es) {                     \
            TO *o = (TO *)d[0];                                                            \
            const TI *a = (const TI *)d[1], *b = (const TI *)d[2];                         \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++)                            \
            {                                                                              \
                TI x = a[i], y = b[i];                                                     \
                o[i] = (EXPR);                                                             \
            }                                                                              \
        } else if (s[0] == (int64_t)sizeof(TO) && s[1] == es && s[2] == 0) {               \
            TO *o = (TO *)d[0];                                                            \
            const TI *a = (const TI *)d[1];                                                \
            const TI y = *(const TI *)d[2];                                                \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++)                            \
            {                                                                              \
                TI x = a[i];                                                               \
                o[i] = (EXPR);                                                             \
            }                                                                              \
        } else if (s[0] == (int64_t)sizeof(TO) && s[1] == 0 && s[2] == es) {               \
            TO *o = (TO *)d[0];                                                            \
            const TI x = *(const TI *)d[1];                                                \
            const TI *b = (const TI *)d[2];                                                \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++)                            \
            {                                                                              \
                TI y = b[i];                                                               \
                o[i] = (EXPR);                                                             \
            }                                                                              \
        } else {                                                                           \
            for (int64_t i = 0; i < n; i++) {                                              \
                TI x = *(const TI *)(d[1] + i * s[1]);                                     \
                TI y = *(const TI *)(d[2] + i * s[2]);                                     \
                *(TO *)(d[0] + i * s[0]) = (EXPR);                                         \
            }                                                                              \
        }                                                                                  \
    }

/* Ternary: x, y, z (e.g. where(cond, a, b), fused backward formulas). */
#define EW_TERNARY_LOOP(NAME, TO, TX, TY, TZ, EXPR)                                        \
    EW_MULTIVERSION static void NAME(char **d, const int64_t *s, int64_t n, void *ctx)     \
    {                                                                                      \
        const double *P = (const double *)ctx;                                             \
        (void)P;                                                                           \
        if (s[0] == (int64_t)sizeof(TO) && s[1] == (int64_t)sizeof(TX) &&                  \
            s[2] == (int64_t)sizeof(TY) && s[3] == (int64_t)sizeof(TZ)) {                  \
            TO *o = (TO *)d[0];                                                            \
            const TX *a = (const TX *)d[1];                                                \
            const TY *b = (const TY *)d[2];                                                \
            const TZ *c = (const TZ *)d[3];                                                \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++)                            \
            {                                                                              \
                TX x = a[i];                                                               \
                TY y = b[i];                                                               \
                TZ z = c[i];                                                               \
                o[i] = (EXPR);                                                             \
            }                                                                              \
        } else {                                                                           \
            for (int64_t i = 0; i < n; i++) {                                              \
                TX x = *(const TX *)(d[1] + i * s[1]);                                     \
                TY y = *(const TY *)(d[2] + i * s[2]);                                     \
                TZ z = *(const TZ *)(d[3] + i * s[3]);                                     \
                *(TO *)(d[0] + i * s[0]) = (EXPR);                                         \
            }                                                                              \
        }                                                                                  \
    }

#endif
