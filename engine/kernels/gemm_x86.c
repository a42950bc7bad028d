/*
 * gemm_x86.c: the AVX2+FMA and AVX-512F paths of gemm.c: register-tile microkernels, packing
 * and direct (unpacked) kernels. The file is built for generic x86-64; every function that
 * holds intrinsics carries its own target attribute and is only called after gemm.c checked
 * the CPU. f32 and f64 share one body per kernel through the DEF_* macros.
 */
#if defined(__x86_64__) || defined(__i386__)

#include "gemm_impl.h"

#include <immintrin.h>
#include <stdint.h>

#define AVX2 __attribute__((target("avx2,fma")))
#define AVX512 __attribute__((target("avx512f,avx2,fma")))
#define INLINE static inline __attribute__((always_inline))

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* ---------------------------------------------------------------------------------------- */
/* AVX-512                                                                                  */
/* ---------------------------------------------------------------------------------------- */

/* Register tile: 14 rows x 2 vectors (14x32 f32, 14x16 f64) = 28 accumulators, 2 B vectors,
 * A broadcast straight from memory by the FMA: 28 FMAs per 2 loads + 14 broadcasts. C tiles
 * are row-major, so the common row-major C is written with whole (masked) vector stores. */
enum { MR512 = 14 };

/* Lanes [0, n) of a mask of `vl` lanes (n may be <= 0 or >= vl). */
INLINE uint32_t lanes(int64_t n, int vl)
{
    return n <= 0 ? 0 : n >= vl ? (1u << vl) - 1 : (1u << n) - 1;
}

/* Microkernel instantiated for every row count R <= 14 and NV in {1, 2} vectors, so an edge
 * tile costs what it computes and reads no row of A past mr. */
#define DEF_UKR512(SUF, T, V, VL, MASK, PS)                                                    \
    INLINE AVX512 void ukr512_##SUF(const int R, const int NV, int64_t kc, const T *a,        \
                                    int64_t ars, int64_t acs, const T *b, int64_t brs, T *c,  \
                                    int64_t rsc, int64_t csc, int64_t nr, int load_c)          \
    {                                                                                          \
        V acc[MR512][2];                                                                       \
        MASK m0 = (MASK)lanes(nr, VL), m1 = (MASK)lanes(nr - VL, VL);                          \
        _Pragma("GCC unroll 14") for (int i = 0; i < R; i++)                                   \
        {                                                                                      \
            acc[i][0] = acc[i][1] = _mm512_setzero_##PS();                                     \
            /* C comes from L2/L3 once per k-block: fetch it while the FMAs run. */            \
            if (load_c && csc == 1) {                                                          \
                _mm_prefetch((const char *)(c + i * rsc), _MM_HINT_T0);                        \
                _mm_prefetch((const char *)(c + i * rsc + NV * VL - 1), _MM_HINT_T0);          \
            }                                                                                  \
        }                                                                                      \
        /* Row i of A at byte offset (i / 7) * 7 * s1 + i % 7 * s1 from two bases, with i % 7 \
         * * s1 spelt as an x86 addressing mode over s1, s3 = 3 s1 and s5 = 5 s1: 5 registers \
         * instead of 14 row offsets that spill. */                                            \
        const char *a0 = (const char *)a;                                                      \
        int64_t s1 = ars * (int64_t)sizeof(T), s3 = 3 * s1, s5 = 5 * s1;                       \
        int full = nr == NV * VL;                                                              \
        for (int64_t k = 0; k < kc; k++, a0 += acs * (int64_t)sizeof(T), b += brs) {           \
            const char *a7 = a0 + 7 * s1;                                                      \
            V b0 = full ? _mm512_loadu_##PS(b) : _mm512_maskz_loadu_##PS(m0, b);               \
            V b1 = NV < 2 ? b0 : full ? _mm512_loadu_##PS(b + VL)                              \
                                      : _mm512_maskz_loadu_##PS(m1, b + VL);                   \
            _Pragma("GCC unroll 14") for (int i = 0; i < R; i++)                               \
            {                                                                                  \
                const char *base = i < 7 ? a0 : a7;                                            \
                int r = i % 7;                                                                 \
                int64_t off = r == 0 ? 0 : r == 1 ? s1 : r == 2 ? 2 * s1 : r == 3 ? s3         \
                            : r == 4 ? 4 * s1 : r == 5 ? s5 : 2 * s3;                          \
                V ai = _mm512_set1_##PS(*(const T *)(base + off));                             \
                acc[i][0] = _mm512_fmadd_##PS(ai, b0, acc[i][0]);                              \
                if (NV > 1) acc[i][1] = _mm512_fmadd_##PS(ai, b1, acc[i][1]);                  \
            }                                                                                  \
        }                                                                                      \
        if (csc == 1) {                                                                        \
            _Pragma("GCC unroll 14") for (int i = 0; i < R; i++)                               \
            {                                                                                  \
                T *p = c + i * rsc;                                                            \
                V v0 = acc[i][0];                                                              \
                if (load_c) v0 = _mm512_add_##PS(_mm512_maskz_loadu_##PS(m0, p), v0);          \
                _mm512_mask_storeu_##PS(p, m0, v0);                                            \
                if (NV > 1) {                                                                  \
                    V v1 = acc[i][1];                                                          \
                    if (load_c) v1 = _mm512_add_##PS(_mm512_maskz_loadu_##PS(m1, p + VL), v1); \
                    _mm512_mask_storeu_##PS(p + VL, m1, v1);                                   \
                }                                                                              \
            }                                                                                  \
        } else {                                                                               \
            T t[MR512][2 * VL];                                                                \
            _Pragma("GCC unroll 14") for (int i = 0; i < R; i++)                               \
            {                                                                                  \
                _mm512_storeu_##PS(t[i], acc[i][0]);                                           \
                /* (zeros when NV == 1, never read: nr <= VL then; gcc cannot tell) */         \
                _mm512_storeu_##PS(t[i] + VL, NV > 1 ? acc[i][NV - 1] : _mm512_setzero_##PS()); \
            }                                                                                  \
            for (int64_t i = 0; i < R; i++)                                                    \
                for (int64_t j = 0; j < nr; j++) {                                             \
                    T *p = c + i * rsc + j * csc;                                              \
                    *p = load_c ? *p + t[i][j] : t[i][j];                                      \
                }                                                                              \
        }                                                                                      \
    }                                                                                          \
    static AVX512 void kern512_##SUF(int64_t kc, const void *a_, int64_t ars, int64_t acs,    \
                                     const void *b_, int64_t brs, void *c_, int64_t rsc,      \
                                     int64_t csc, int64_t mr, int64_t nr, int load_c)          \
    {                                                                                          \
        const T *a = a_, *b = b_;                                                              \
        T *c = c_;                                                                             \
        switch (mr * 2 + (nr > VL)) {                                                          \
        UKR_CASE(SUF, 14) UKR_CASE(SUF, 13) UKR_CASE(SUF, 12) UKR_CASE(SUF, 11)                \
        UKR_CASE(SUF, 10) UKR_CASE(SUF, 9) UKR_CASE(SUF, 8) UKR_CASE(SUF, 7)                   \
        UKR_CASE(SUF, 6) UKR_CASE(SUF, 5) UKR_CASE(SUF, 4) UKR_CASE(SUF, 3)                    \
        UKR_CASE(SUF, 2) UKR_CASE(SUF, 1)                                                      \
        }                                                                                      \
    }
#define UKR_CASE(SUF, R)                                                                       \
    case 2 * R: ukr512_##SUF(R, 1, kc, a, ars, acs, b, brs, c, rsc, csc, nr, load_c); return;  \
    case 2 * R + 1: ukr512_##SUF(R, 2, kc, a, ars, acs, b, brs, c, rsc, csc, nr, load_c); return;

DEF_UKR512(f32, float, __m512, 16, __mmask16, ps)
DEF_UKR512(f64, double, __m512d, 8, __mmask8, pd)

/* In-register transposes for packing: r[q] (line q, VL elements along k) becomes r[kk]
 * (step kk, VL lines). Unpack within 128-bit lanes, then shuffle the lanes. */
INLINE AVX512 void transpose16_f32(__m512 r[16])
{
    __m512 t[16];
    #pragma GCC unroll 16
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    #pragma GCC unroll 16
    for (int i = 0; i < 4; i++) { /* r[4i+q], lane L: lines 4i..4i+3 of column 4L+q */
        r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    #pragma GCC unroll 16
    for (int q = 0; q < 4; q++) {
        __m512 x0 = _mm512_shuffle_f32x4(r[q], r[4 + q], 0x88);
        __m512 x1 = _mm512_shuffle_f32x4(r[q], r[4 + q], 0xDD);
        __m512 y0 = _mm512_shuffle_f32x4(r[8 + q], r[12 + q], 0x88);
        __m512 y1 = _mm512_shuffle_f32x4(r[8 + q], r[12 + q], 0xDD);
        t[q] = _mm512_shuffle_f32x4(x0, y0, 0x88);
        t[8 + q] = _mm512_shuffle_f32x4(x0, y0, 0xDD);
        t[4 + q] = _mm512_shuffle_f32x4(x1, y1, 0x88);
        t[12 + q] = _mm512_shuffle_f32x4(x1, y1, 0xDD);
    }
    #pragma GCC unroll 16
    for (int i = 0; i < 16; i++) r[i] = t[i];
}

INLINE AVX512 void transpose8_f64(__m512d r[8])
{
    __m512d t[8], u[8];
    #pragma GCC unroll 16
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm512_unpacklo_pd(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_pd(r[2 * i], r[2 * i + 1]);
    }
    #pragma GCC unroll 16
    for (int g = 0; g < 2; g++) { /* u[4g+q]: lines 4g..4g+3, columns q, q+4 (q: 0,2,1,3) */
        u[4 * g] = _mm512_shuffle_f64x2(t[4 * g], t[4 * g + 2], 0x88);
        u[4 * g + 1] = _mm512_shuffle_f64x2(t[4 * g], t[4 * g + 2], 0xDD);
        u[4 * g + 2] = _mm512_shuffle_f64x2(t[4 * g + 1], t[4 * g + 3], 0x88);
        u[4 * g + 3] = _mm512_shuffle_f64x2(t[4 * g + 1], t[4 * g + 3], 0xDD);
    }
    static const int col[4] = {0, 2, 1, 3};
    #pragma GCC unroll 16
    for (int q = 0; q < 4; q++) {
        r[col[q]] = _mm512_shuffle_f64x2(u[q], u[4 + q], 0x88);
        r[col[q] + 4] = _mm512_shuffle_f64x2(u[q], u[4 + q], 0xDD);
    }
}

/* Packing (layout in gemm_impl.h). Unit stride across the panel (row-major B, column-major A):
 * masked vector copies. Unit stride along k (transposed B, row-major A): VL x VL blocks
 * transposed in registers, ~4x faster than an element-wise copy, which matters when M or N
 * is ~128 and packing is a tenth of the flops. Other strides: the portable loop. */
#define DEF_PACK512(SUF, T, V, VL, MASK, PS, TRANSPOSE)                                        \
    static AVX512 void pack512_##SUF(int64_t k, const void *src, int64_t sw, int64_t sk,      \
                                     int64_t w, int64_t W, void *dst)                          \
    {                                                                                          \
        const T *s = src;                                                                      \
        T *d = dst;                                                                            \
        if (sw == 1) {                                                                         \
            /* A step's last vector may spill past W into the next step's slot, which that    \
             * step then overwrites: whole stores, masked only at the end. */                  \
            for (int64_t kk = 0; kk < k; kk++)                                                 \
                for (int64_t v = 0; v < W; v += VL) {                                          \
                    V x = _mm512_maskz_loadu_##PS((MASK)lanes(w - v, VL), s + kk * sk + v);    \
                    if (kk + 1 < k) _mm512_storeu_##PS(d + kk * W + v, x);                     \
                    else _mm512_mask_storeu_##PS(d + kk * W + v, (MASK)lanes(W - v, VL), x);   \
                }                                                                              \
        } else if (sk == 1) {                                                                  \
            for (int64_t kk = 0; kk < k; kk += VL) {                                           \
                MASK km = (MASK)lanes(k - kk, VL);                                             \
                int64_t nk = min64(VL, k - kk);                                                \
                for (int64_t v = 0; v < W; v += VL) {                                          \
                    V r[VL];                                                                   \
                    _Pragma("GCC unroll 16") for (int q = 0; q < VL; q++)                      \
                        r[q] = v + q < w ? _mm512_maskz_loadu_##PS(km, s + (v + q) * sw + kk)  \
                                         : _mm512_setzero_##PS();                              \
                    TRANSPOSE(r);                                                              \
                    MASK st = (MASK)lanes(W - v, VL);                                          \
                    if (nk == VL) /* constant trip count: r stays in registers */              \
                        _Pragma("GCC unroll 16") for (int q = 0; q < VL; q++)                  \
                            _mm512_mask_storeu_##PS(d + (kk + q) * W + v, st, r[q]);           \
                    else                                                                       \
                        for (int64_t q = 0; q < nk; q++)                                       \
                            _mm512_mask_storeu_##PS(d + (kk + q) * W + v, st, r[q]);           \
                }                                                                              \
            }                                                                                  \
        } else {                                                                               \
            gemm_pack_generic_##SUF(k, src, sw, sk, w, W, dst);                                \
        }                                                                                      \
    }
DEF_PACK512(f32, float, __m512, 16, __mmask16, ps, transpose16_f32)
DEF_PACK512(f64, double, __m512d, 8, __mmask8, pd, transpose8_f64)

/* B row segment p[0], p[s], ... (lanes in m) for the direct kernels: a load, or a gather. */
INLINE AVX512 __m512 ld512_f32(const float *p, int64_t s, __m512i idx, __mmask16 m)
{
    if (s == 1) return _mm512_maskz_loadu_ps(m, p);
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, p, 4);
}
INLINE AVX512 __m512d ld512_f64(const double *p, int64_t s, __m512i idx, __mmask8 m)
{
    if (s == 1) return _mm512_maskz_loadu_pd(m, p);
    return _mm512_mask_i32gather_pd(_mm512_setzero_pd(), m, _mm512_castsi512_si256(idx), p, 8);
}

/* Direct kernel block: R rows x NV vectors of C straight from A and B, VL k-steps at a time,
 * in k-blocks of DIRECT_KB whose sums are added to C in order (as the blocked path's k-blocks
 * are): one FMA chain over all of K lost ~10x PyTorch's accuracy at K = 4096.
 * A is broadcast from its strided rows; rows past i1 repeat the last row (computed, never
 * stored). B's VL x VL block is loaded row by row (gathered if its rows are strided), or,
 * when its columns are contiguous, loaded column by column and transposed in registers
 * (5x faster than gathers for x·w with w a column). Each C element is one FMA chain over k,
 * as in a single k-block of the microkernel. */
#define DEF_DIRECT512(SUF, T, V, VL, MASK, PS, TRANSPOSE)                                      \
    INLINE AVX512 void dblk512_##SUF(const int R, const int NV, const gemm_args *g, int64_t i, \
                                     int64_t i1, int64_t j, int64_t j1, __m512i idx)           \
    {                                                                                          \
        const T *B = g->B, *a[4];                                                              \
        int64_t rsb = g->rsb, csb = g->csb, csa = g->csa;                                      \
        int tr = csb != 1 && rsb == 1;                                                         \
        V acc[4][4], bt[4][VL];                                                                \
        MASK m[4];                                                                             \
        for (int r = 0; r < R; r++) a[r] = (const T *)g->A + min64(i + r, i1 - 1) * g->rsa;   \
        for (int v = 0; v < NV; v++) m[v] = (MASK)lanes(j1 - j - v * VL, VL);                  \
        for (int64_t kb = 0; kb < g->K || kb == 0; kb += DIRECT_KB) {                          \
        int64_t ke = min64(g->K, kb + DIRECT_KB);                                              \
        int ld = g->acc || kb > 0; /* later k-blocks add to C */                               \
        for (int v = 0; v < NV; v++)                                                           \
            for (int r = 0; r < R; r++) acc[r][v] = _mm512_setzero_##PS();                     \
        for (int64_t k0 = kb; k0 < ke; k0 += VL) {                                             \
            int nk = (int)min64(VL, ke - k0);                                                  \
            for (int v = 0; v < NV; v++) {                                                     \
                const T *b = B + k0 * rsb + (j + v * VL) * csb;                                \
                if (tr) {                                                                      \
                    MASK km = (MASK)lanes(nk, VL);                                             \
                    for (int q = 0; q < VL; q++)                                               \
                        bt[v][q] = m[v] >> q & 1 ? _mm512_maskz_loadu_##PS(km, b + q * csb)    \
                                                 : _mm512_setzero_##PS();                      \
                    TRANSPOSE(bt[v]);                                                          \
                } else {                                                                       \
                    for (int kk = 0; kk < nk; kk++)                                            \
                        bt[v][kk] = ld512_##SUF(b + kk * rsb, csb, idx, m[v]);                 \
                }                                                                              \
            }                                                                                  \
            for (int kk = 0; kk < nk; kk++)                                                    \
                _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)                            \
                {                                                                              \
                    V ar = _mm512_set1_##PS(a[r][(k0 + kk) * csa]);                            \
                    _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                       \
                        acc[r][v] = _mm512_fmadd_##PS(ar, bt[v][kk], acc[r][v]);               \
                }                                                                              \
        }                                                                                      \
        for (int r = 0; r < R && i + r < i1; r++)                                              \
            for (int v = 0; v < NV; v++) {                                                     \
                T *p = (T *)g->C + (i + r) * g->rsc + (j + v * VL) * g->csc;                   \
                if (g->csc == 1) {                                                             \
                    V x = acc[r][v];                                                           \
                    if (ld) x = _mm512_add_##PS(_mm512_maskz_loadu_##PS(m[v], p), x);          \
                    _mm512_mask_storeu_##PS(p, m[v], x);                                       \
                } else {                                                                       \
                    T t[VL];                                                                   \
                    _mm512_storeu_##PS(t, acc[r][v]);                                          \
                    for (int64_t q = 0; q < min64(VL, j1 - j - v * VL); q++) {                 \
                        T *e = p + q * g->csc;                                                 \
                        *e = ld ? *e + t[q] : t[q];                                            \
                    }                                                                          \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
    }                                                                                          \
    /* 4 rows x 2 vectors (8 FMA chains hide the FMA latency); a single row takes 4 vectors;    \
     * edges instantiate only the vectors that have columns. */                               \
    static AVX512 void direct512_##SUF(const gemm_args *g, int64_t i0, int64_t i1, int64_t j0, \
                                       int64_t j1)                                             \
    {                                                                                          \
        int64_t csb = g->csb;                                                                  \
        if (csb != 1 && g->rsb != 1 && (min64(VL, j1 - j0) - 1) * csb > INT32_MAX) {           \
            for (int64_t j = j0; j < j1; j++) /* one lane: offset 0 */                         \
                direct512_##SUF(g, i0, i1, j, j + 1);                                          \
            return;                                                                            \
        }                                                                                      \
        __m512i idx = _mm512_mullo_epi32(                                                      \
            _mm512_set1_epi32((int32_t)csb),                                                   \
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));          \
        for (int64_t j = j0; j < j1; j += (i1 - i0 == 1 ? 4 : 2) * VL) {                     \
            int64_t nv = (j1 - j + VL - 1) / VL; /* vectors with columns left */               \
            if (i1 - i0 == 1) {                                                                \
                if (nv >= 4) dblk512_##SUF(1, 4, g, i0, i1, j, j1, idx);                       \
                else if (nv == 3) dblk512_##SUF(1, 3, g, i0, i1, j, j1, idx);                  \
                else if (nv == 2) dblk512_##SUF(1, 2, g, i0, i1, j, j1, idx);                  \
                else dblk512_##SUF(1, 1, g, i0, i1, j, j1, idx);                               \
            } else {                                                                           \
                for (int64_t i = i0; i < i1; i += 4)                                           \
                    if (nv >= 2) dblk512_##SUF(4, 2, g, i, i1, j, j1, idx);                    \
                    else dblk512_##SUF(4, 1, g, i, i1, j, j1, idx);                            \
            }                                                                                  \
        }                                                                                      \
    }
DEF_DIRECT512(f32, float, __m512, 16, __mmask16, ps, transpose16_f32)
DEF_DIRECT512(f64, double, __m512d, 8, __mmask8, pd, transpose8_f64)

/* KC = 256: the kc x 2VL B micro-panel is 32 KiB (f32 and f64), within the 48 KiB L1. */
const gemm_impl gemm_impl_avx512_f32 = {MR512, 32, 256, sizeof(float), 1, kern512_f32,
                                        pack512_f32, pack512_f32, direct512_f32};
const gemm_impl gemm_impl_avx512_f64 = {MR512, 16, 256, sizeof(double), 1, kern512_f64,
                                        pack512_f64, pack512_f64, direct512_f64};

/* ---------------------------------------------------------------------------------------- */
/* AVX2 + FMA                                                                               */
/* ---------------------------------------------------------------------------------------- */

/* Register tile 6 rows x 2 vectors (6x16 f32, 6x8 f64): 12 accumulators + 2 B vectors + 1
 * broadcast of the 16 ymm registers (the classic Haswell shape). Edge tiles go through a
 * small buffer; packing uses the portable loops. */
enum { MR256 = 6 };

#define DEF_AVX2(SUF, T, V, VL, PS)                                                            \
    static AVX2 void kern256_##SUF(int64_t kc, const void *a_, int64_t ars, int64_t acs,      \
                                   const void *b_, int64_t brs, void *c_, int64_t rsc,        \
                                   int64_t csc, int64_t mr, int64_t nr, int load_c)            \
    {                                                                                          \
        const T *a = a_, *b = b_;                                                              \
        T *c = c_;                                                                             \
        V acc[MR256][2];                                                                       \
        int64_t off[MR256]; /* rows past mr re-read the last one (computed, not stored) */     \
        _Pragma("GCC unroll 6") for (int i = 0; i < MR256; i++)                                \
        {                                                                                      \
            acc[i][0] = acc[i][1] = _mm256_setzero_##PS();                                     \
            off[i] = min64(i, mr - 1) * ars;                                                   \
        }                                                                                      \
        for (int64_t k = 0; k < kc; k++, a += acs, b += brs) {                                 \
            V b0 = _mm256_load_##PS(b), b1 = _mm256_load_##PS(b + VL);                         \
            _Pragma("GCC unroll 6") for (int i = 0; i < MR256; i++)                            \
            {                                                                                  \
                V ai = _mm256_set1_##PS(a[off[i]]);                                            \
                acc[i][0] = _mm256_fmadd_##PS(ai, b0, acc[i][0]);                              \
                acc[i][1] = _mm256_fmadd_##PS(ai, b1, acc[i][1]);                              \
            }                                                                                  \
        }                                                                                      \
        if (mr == MR256 && nr == 2 * VL && csc == 1) {                                         \
            _Pragma("GCC unroll 6") for (int i = 0; i < MR256; i++)                            \
            {                                                                                  \
                T *p = c + i * rsc;                                                            \
                V v0 = acc[i][0], v1 = acc[i][1];                                              \
                if (load_c) {                                                                  \
                    v0 = _mm256_add_##PS(_mm256_loadu_##PS(p), v0);                            \
                    v1 = _mm256_add_##PS(_mm256_loadu_##PS(p + VL), v1);                       \
                }                                                                              \
                _mm256_storeu_##PS(p, v0);                                                     \
                _mm256_storeu_##PS(p + VL, v1);                                                \
            }                                                                                  \
            return;                                                                            \
        }                                                                                      \
        T t[MR256][2 * VL];                                                                    \
        _Pragma("GCC unroll 6") for (int i = 0; i < MR256; i++)                                \
        {                                                                                      \
            _mm256_storeu_##PS(t[i], acc[i][0]);                                               \
            _mm256_storeu_##PS(t[i] + VL, acc[i][1]);                                          \
        }                                                                                      \
        for (int64_t i = 0; i < mr; i++)                                                       \
            for (int64_t j = 0; j < nr; j++) {                                                 \
                T *p = c + i * rsc + j * csc;                                                  \
                *p = load_c ? *p + t[i][j] : t[i][j];                                          \
            }                                                                                  \
    }                                                                                          \
    /* Direct kernel: 4 rows x 1 vector; B segments gathered through a buffer when strided or \
     * partial, partial C segments likewise. */                                               \
    static AVX2 void direct256_##SUF(const gemm_args *g, int64_t i0, int64_t i1, int64_t j0,   \
                                     int64_t j1)                                               \
    {                                                                                          \
        const T *A = g->A, *B = g->B;                                                          \
        T *C = g->C;                                                                           \
        for (int64_t j = j0; j < j1; j += VL) {                                                \
            int64_t nj = min64(VL, j1 - j);                                                    \
            int direct_b = g->csb == 1 && nj == VL;                                            \
            for (int64_t i = i0; i < i1; i += 4) {                                             \
                const T *a[4];                                                                 \
                V acc[4];                                                                      \
                for (int r = 0; r < 4; r++) a[r] = A + min64(i + r, i1 - 1) * g->rsa;          \
                for (int64_t kb = 0; kb < g->K || kb == 0; kb += DIRECT_KB) {                  \
                int64_t ke = min64(g->K, kb + DIRECT_KB);                                      \
                int ld = g->acc || kb > 0; /* later k-blocks add to C */                       \
                for (int r = 0; r < 4; r++) acc[r] = _mm256_setzero_##PS();                    \
                for (int64_t k = kb; k < ke; k++) {                                            \
                    const T *bk = B + k * g->rsb + j * g->csb;                                 \
                    V bv;                                                                      \
                    if (direct_b) {                                                            \
                        bv = _mm256_loadu_##PS(bk);                                            \
                    } else {                                                                   \
                        T t[VL] = {0};                                                         \
                        for (int64_t jj = 0; jj < nj; jj++) t[jj] = bk[jj * g->csb];           \
                        bv = _mm256_loadu_##PS(t);                                             \
                    }                                                                          \
                    for (int r = 0; r < 4; r++)                                                \
                        acc[r] = _mm256_fmadd_##PS(_mm256_set1_##PS(a[r][k * g->csa]), bv,     \
                                                   acc[r]);                                    \
                }                                                                              \
                for (int r = 0; r < 4 && i + r < i1; r++) {                                    \
                    T t[VL];                                                                   \
                    _mm256_storeu_##PS(t, acc[r]);                                             \
                    for (int64_t jj = 0; jj < nj; jj++) {                                      \
                        T *q = C + (i + r) * g->rsc + (j + jj) * g->csc;                       \
                        *q = ld ? *q + t[jj] : t[jj];                                          \
                    }                                                                          \
                }                                                                              \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
    }
DEF_AVX2(f32, float, __m256, 8, ps)
DEF_AVX2(f64, double, __m256d, 4, pd)

const gemm_impl gemm_impl_avx2_f32 = {MR256, 16, 256, sizeof(float), 0, kern256_f32,
                                      gemm_pack_generic_f32, gemm_pack_generic_f32, direct256_f32};
const gemm_impl gemm_impl_avx2_f64 = {MR256, 8, 256, sizeof(double), 0, kern256_f64,
                                      gemm_pack_generic_f64, gemm_pack_generic_f64, direct256_f64};

#else
typedef int gemm_x86_unused; /* ISO C forbids an empty translation unit */
#endif
