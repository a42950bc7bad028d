/*
 * test_gemm.c: gemm_f32/gemm_f64 against a long-double reference over many shapes, stride
 * layouts, accumulate modes and every ISA path the CPU has; bitwise equality across thread
 * counts (and inside an OpenMP task, where par_for becomes a taskloop) and across layouts of
 * the same values; C untouched outside the matrix; -1 and C unchanged when allocation fails.
 *
 * gcc -std=gnu11 -O2 -Wall -Wextra -fopenmp -Iengine engine/parallel.c engine/alloc.c \
 *     engine/kernels/gemm*.c tests/unit/test_gemm.c -lm -o /tmp/test_gemm && /tmp/test_gemm
 */
#include "alloc.h"
#include "kernels/gemm.h"
#include "parallel.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures, checks;

#define FAIL(...)                                                                              \
    do {                                                                                       \
        if (failures++ < 30) {                                                                 \
            printf("FAIL: " __VA_ARGS__);                                                      \
            printf("\n");                                                                      \
        }                                                                                      \
    } while (0)

/* ---- layouts ---------------------------------------------------------------------------- */

enum { L_ROW, L_COL, L_PAD, L_COLPAD, L_STRIDED, L_BCAST, L_ROWBCAST, L_NKINDS };
static const char *lname[] = {"row", "col", "rowpad", "colpad", "strided", "bcast00", "bcast0x"};

typedef struct layout {
    int kind;
    int64_t rs, cs, size; /* size: elements spanned (without guard) */
} layout;

static layout make_layout(int kind, int64_t rows, int64_t cols)
{
    layout l = {kind, 0, 0, 0};
    switch (kind) {
    case L_ROW: l.rs = cols, l.cs = 1; break;
    case L_COL: l.rs = 1, l.cs = rows; break;
    case L_PAD: l.rs = cols + 3, l.cs = 1; break;
    case L_COLPAD: l.rs = 1, l.cs = rows + 5; break;
    case L_STRIDED: l.rs = 2 * cols + 1, l.cs = 2; break; /* neither stride is 1 */
    case L_BCAST: l.rs = 0, l.cs = 0; break;
    case L_ROWBCAST: l.rs = 0, l.cs = 1; break; /* every row the same (expanded bias) */
    }
    l.size = rows && cols ? (rows - 1) * l.rs + (cols - 1) * l.cs + 1 : 0;
    return l;
}

enum { GUARD = 16 };

static uint64_t rng = 88172645463325252ull;
static double urand(void) /* uniform in [-1, 1) */
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (double)(rng >> 11) / (double)(1ull << 52) - 1.0;
}

/* ---- one test per element type ---------------------------------------------------------- */

typedef struct shape {
    int64_t M, N, K;
} shape;

#define DEF_TYPE(T, SUF, EPS)                                                                  \
    typedef int (*gemm_##SUF##_fn)(int64_t, int64_t, int64_t, const T *, int64_t, int64_t,    \
                                   const T *, int64_t, int64_t, T *, int64_t, int64_t, int);   \
                                                                                               \
    /* A buffer holding a rows x cols matrix in layout l, filled with random values, GUARD    \
     * sentinel elements after it. */                                                          \
    static T *mat_##SUF(layout l, T sentinel)                                                  \
    {                                                                                          \
        T *p = mem_alloc((size_t)(l.size + GUARD) * sizeof(T));                                \
        for (int64_t i = 0; i < l.size; i++) p[i] = (T)urand();                                \
        for (int64_t i = l.size; i < l.size + GUARD; i++) p[i] = sentinel;                     \
        return p;                                                                              \
    }                                                                                          \
    /* Copy of a strided matrix into a fresh row-major one. */                                 \
    static T *dense_##SUF(const T *p, layout l, int64_t rows, int64_t cols)                    \
    {                                                                                          \
        T *d = mem_alloc((size_t)(rows * cols + 1) * sizeof(T));                               \
        for (int64_t i = 0; i < rows; i++)                                                     \
            for (int64_t j = 0; j < cols; j++) d[i * cols + j] = p[i * l.rs + j * l.cs];       \
        return d;                                                                              \
    }                                                                                          \
                                                                                               \
    /* Runs one case; returns 0 if it passed. Checks against the reference, C's untouched     \
     * elements, bitwise equality with dense row-major operands holding the same values, and  \
     * (if threads) bitwise equality for 1, 2, 3, 4 threads and inside an OpenMP task. */      \
    static int case_##SUF(gemm_##SUF##_fn f, const char *tn, shape s, int la, int lb, int lc,  \
                          int acc, int threads)                                                \
    {                                                                                          \
        int64_t M = s.M, N = s.N, K = s.K;                                                     \
        layout LA = make_layout(la, M, K), LB = make_layout(lb, K, N),                         \
               LC = make_layout(lc, M, N);                                                     \
        T sentinel = (T)12345.0;                                                               \
        T *A = mat_##SUF(LA, sentinel), *B = mat_##SUF(LB, sentinel);                          \
        T *C0 = mat_##SUF(LC, sentinel), *C = mem_alloc((size_t)(LC.size + GUARD) * sizeof(T)); \
        /* accumulate == 0 must not read C: fill the matrix part with NaN. */                  \
        if (!acc)                                                                              \
            for (int64_t i = 0; i < M; i++)                                                    \
                for (int64_t j = 0; j < N; j++) C0[i * LC.rs + j * LC.cs] = (T)NAN;            \
        memcpy(C, C0, (size_t)(LC.size + GUARD) * sizeof(T));                                  \
        int bad = 0;                                                                           \
        char what[200];                                                                        \
        snprintf(what, sizeof what, "%s %s M=%lld N=%lld K=%lld A=%s B=%s C=%s acc=%d", #SUF,  \
                 tn, (long long)M, (long long)N, (long long)K, lname[la], lname[lb], lname[lc], \
                 acc);                                                                         \
        par_set_num_threads(threads ? 1 : 0);                                                  \
        int rc = f(M, N, K, A, LA.rs, LA.cs, B, LB.rs, LB.cs, C, LC.rs, LC.cs, acc);           \
        checks++;                                                                              \
        if (rc != 0) {                                                                         \
            FAIL("%s: returned %d", what, rc);                                                 \
            bad = 1;                                                                           \
        }                                                                                      \
        /* Reference: error bound of a length-(K+1) sum, gamma_{K+2} * sum |terms|. */         \
        for (int64_t i = 0; i < M && !bad; i++)                                                \
            for (int64_t j = 0; j < N && !bad; j++) {                                          \
                long double r = 0, mag = 0;                                                    \
                for (int64_t k = 0; k < K; k++) {                                              \
                    long double t = (long double)A[i * LA.rs + k * LA.cs] *                    \
                                    B[k * LB.rs + j * LB.cs];                                  \
                    r += t;                                                                    \
                    mag += fabsl(t);                                                           \
                }                                                                              \
                if (acc) {                                                                     \
                    r += C0[i * LC.rs + j * LC.cs];                                            \
                    mag += fabsl((long double)C0[i * LC.rs + j * LC.cs]);                      \
                }                                                                              \
                T got = C[i * LC.rs + j * LC.cs];                                              \
                long double tol = (K + 2) * (long double)EPS * mag;                            \
                if (!(fabsl(got - r) <= tol)) {                                                \
                    FAIL("%s: C[%lld][%lld] expected %.17Lg got %.17g (tol %.3Lg)", what,      \
                         (long long)i, (long long)j, r, (double)got, tol);                     \
                    bad = 1;                                                                   \
                }                                                                              \
            }                                                                                  \
        /* Elements of C's buffer outside the matrix are untouched. */                         \
        char *inside = mem_calloc((size_t)(LC.size + GUARD));                                  \
        for (int64_t i = 0; i < M; i++)                                                        \
            for (int64_t j = 0; j < N; j++) inside[i * LC.rs + j * LC.cs] = 1;                 \
        for (int64_t p = 0; p < LC.size + GUARD && !bad; p++)                                  \
            if (!inside[p] && memcmp(&C[p], &C0[p], sizeof(T))) {                              \
                FAIL("%s: element %lld outside C was written", what, (long long)p);            \
                bad = 1;                                                                       \
            }                                                                                  \
        mem_free(inside);                                                                      \
        /* Same values in dense row-major operands: the same bits. */                          \
        if (!bad && M && N) {                                                                  \
            T *dA = dense_##SUF(A, LA, M, K), *dB = dense_##SUF(B, LB, K, N);                  \
            T *dC = dense_##SUF(C0, LC, M, N), *rC = dense_##SUF(C, LC, M, N);                 \
            f(M, N, K, dA, K, 1, dB, N, 1, dC, N, 1, acc);                                     \
            if (memcmp(dC, rC, (size_t)(M * N) * sizeof(T))) {                                 \
                FAIL("%s: result differs from the one with dense operands", what);             \
                bad = 1;                                                                       \
            }                                                                                  \
            /* Thread counts and nesting: the same bits. */                                    \
            for (int nt = 2; threads && nt <= 5 && !bad; nt++) {                               \
                T *C2 = mem_alloc((size_t)(LC.size + GUARD) * sizeof(T));                      \
                memcpy(C2, C0, (size_t)(LC.size + GUARD) * sizeof(T));                         \
                par_set_num_threads(nt == 5 ? 2 : nt);                                         \
                if (nt < 5) {                                                                  \
                    f(M, N, K, A, LA.rs, LA.cs, B, LB.rs, LB.cs, C2, LC.rs, LC.cs, acc);       \
                } else {                                                                       \
                    _Pragma("omp parallel num_threads(2)") _Pragma("omp single")               \
                    {                                                                          \
                        _Pragma("omp task")                                                    \
                        f(M, N, K, A, LA.rs, LA.cs, B, LB.rs, LB.cs, C2, LC.rs, LC.cs, acc);   \
                    }                                                                          \
                }                                                                              \
                if (memcmp(C2, C, (size_t)(LC.size + GUARD) * sizeof(T))) {                    \
                    FAIL("%s: %s differs bitwise from 1 thread", what,                         \
                         nt < 5 ? (nt == 2 ? "2 threads" : nt == 3 ? "3 threads" : "4 threads") \
                                : "a call inside an OpenMP task");                             \
                    bad = 1;                                                                   \
                }                                                                              \
                mem_free(C2);                                                                  \
            }                                                                                  \
            par_set_num_threads(0);                                                            \
            mem_free(dA), mem_free(dB), mem_free(dC), mem_free(rC);                            \
        }                                                                                      \
        mem_free(A), mem_free(B), mem_free(C0), mem_free(C);                                   \
        return bad;                                                                            \
    }
DEF_TYPE(float, f32, FLT_EPSILON / 2)
DEF_TYPE(double, f64, DBL_EPSILON / 2)

/* ---- allocation failure ------------------------------------------------------------------ */

static int allocs_left; /* allocations that still succeed; < 0: all succeed */

static void *failing_alloc(size_t n, void *ud)
{
    (void)ud;
    if (allocs_left == 0) return NULL;
    if (allocs_left > 0) allocs_left--;
    return malloc(n);
}
static void plain_free(void *p, void *ud) { (void)ud, free(p); }

/* Fails the n-th allocation onward for n = 0, 1, 2, ...: each call either succeeds with the
 * right result or returns -1 with C unchanged; failing the first allocation of a product
 * that packs must give -1. */
#define DEF_ALLOC_TEST(T, SUF)                                                                 \
    static void alloc_failure_##SUF(int64_t M, int64_t N, int64_t K, int ta, int tb)          \
    {                                                                                          \
        T *A = mem_alloc(sizeof(T) * M * K), *B = mem_alloc(sizeof(T) * K * N);                \
        T *C0 = mem_alloc(sizeof(T) * M * N), *C = mem_alloc(sizeof(T) * M * N);               \
        T *R = mem_alloc(sizeof(T) * M * N);                                                   \
        int64_t rsa = ta ? 1 : K, csa = ta ? M : 1, rsb = tb ? 1 : N, csb = tb ? K : 1;        \
        for (int64_t i = 0; i < M * K; i++) A[i] = (T)urand();                                 \
        for (int64_t i = 0; i < K * N; i++) B[i] = (T)urand();                                 \
        for (int64_t i = 0; i < M * N; i++) C0[i] = (T)urand();                                \
        for (int acc = 0; acc < 2; acc++) {                                                    \
            memcpy(R, C0, sizeof(T) * M * N);                                                  \
            gemm_##SUF(M, N, K, A, rsa, csa, B, rsb, csb, R, N, 1, acc);                       \
            for (int n = 0; n < 4; n++) {                                                      \
                memcpy(C, C0, sizeof(T) * M * N);                                              \
                allocs_left = n;                                                               \
                mem_set_allocator(failing_alloc, plain_free, NULL);                            \
                int rc = gemm_##SUF(M, N, K, A, rsa, csa, B, rsb, csb, C, N, 1, acc);          \
                mem_set_allocator(NULL, NULL, NULL);                                           \
                checks++;                                                                      \
                if (rc == 0 && memcmp(C, R, sizeof(T) * M * N))                                \
                    FAIL("%s %lldx%lldx%lld allocations failing from #%d, acc=%d: returned "   \
                         "0 with a wrong result", #SUF, (long long)M, (long long)N,             \
                         (long long)K, n, acc);                                                \
                if (rc != 0 && (rc != -1 || memcmp(C, C0, sizeof(T) * M * N)))                 \
                    FAIL("%s %lldx%lldx%lld allocations failing from #%d, acc=%d: returned "   \
                         "%d and C %s", #SUF, (long long)M, (long long)N, (long long)K, n, acc, \
                         rc, memcmp(C, C0, sizeof(T) * M * N) ? "was modified" : "unchanged"); \
                if (n == 0 && rc != -1)                                                        \
                    FAIL("%s %lldx%lldx%lld with no memory: returned %d, expected -1", #SUF,   \
                         (long long)M, (long long)N, (long long)K, rc);                        \
            }                                                                                  \
        }                                                                                      \
        mem_free(A), mem_free(B), mem_free(C0), mem_free(C), mem_free(R);                      \
    }
DEF_ALLOC_TEST(float, f32)
DEF_ALLOC_TEST(double, f64)

static void test_alloc_failure(void)
{
    /* Packed paths that allocate one or two buffers (transposed operands get packed). */
    alloc_failure_f32(300, 200, 300, 1, 1);
    alloc_failure_f64(300, 200, 300, 1, 1);
    alloc_failure_f32(100, 2000, 300, 1, 1);
    alloc_failure_f64(40, 300, 600, 0, 1);
    /* Tiny products take the direct path and allocate nothing. */
    float a[64] = {0}, c[64];
    allocs_left = 0;
    mem_set_allocator(failing_alloc, plain_free, NULL);
    int r = gemm_f32(8, 8, 8, a, 8, 1, a, 8, 1, c, 8, 1, 0);
    mem_set_allocator(NULL, NULL, NULL);
    checks++;
    if (r != 0) FAIL("8x8x8 product with failing allocator: returned %d, expected 0", r);
}

/* ---- driver ------------------------------------------------------------------------------ */

static const shape shapes[] = {
    {1, 1, 1},     {0, 5, 3},     {5, 0, 3},     {5, 3, 0},      {0, 0, 0},      {1, 1, 7},
    {2, 3, 4},     {3, 2, 1},     {64, 1, 256},  {1, 64, 256},   {256, 1, 64},   {64, 256, 1},
    {7, 13, 5},    {17, 33, 65},  {33, 17, 65},  {14, 32, 256},  {15, 33, 257},  {13, 31, 255},
    {28, 64, 300}, {29, 97, 513}, {128, 10, 256}, {10, 128, 256}, {100, 100, 100}, {131, 67, 37},
    {3, 200, 41},  {200, 3, 41},  {47, 53, 59},  {61, 1, 1000},  {127, 129, 600}, {16, 16, 16},
    {257, 71, 19}, {45, 61, 1000}, {512, 40, 64}, {40, 512, 64}, {40, 1, 100}, {45, 3, 17},
    {8, 8, 8},     {9, 8, 8}};

/* Many k-blocks, and shapes past the 1M-element packing buffer limit (M or N super-blocks);
 * layouts chosen so that the operand gets packed. */
static const struct {
    shape s;
    int la, lb, lc;
} big_shapes[] = {{{545, 24, 4100}, L_ROW, L_COL, L_ROW},   {{24, 545, 4100}, L_COL, L_ROW, L_ROW},
                  {{2100, 1100, 3}, L_COL, L_ROW, L_COL},   {{4500, 20, 512}, L_STRIDED, L_ROW, L_ROW},
                  {{260, 4200, 256}, L_ROW, L_ROW, L_PAD}, {{200, 4200, 300}, L_STRIDED, L_COL, L_ROW}};

static void run_isa(int isa, const char *tn)
{
    gemm_force_isa(isa);
    int ns = (int)(sizeof shapes / sizeof shapes[0]);
    for (int si = 0; si < ns; si++) {
        shape s = shapes[si];
        int big = s.M * s.N * s.K > 2000000;
        for (int la = 0; la < L_NKINDS; la++)
            for (int lb = 0; lb < L_NKINDS; lb++)
                for (int lc = 0; lc < 5; lc++) {
                    /* Every A x B layout pair with row-major C, every C layout with every
                     * 8th pair; a quarter of that for big shapes. Threads: a third. */
                    if (lc != L_ROW && (la * L_NKINDS + lb) % 8 != 0) continue;
                    if (big && (la + lb + lc) % 4 != 0) continue;
                    for (int acc = 0; acc < 2; acc++) {
                        int threads = (la + 2 * lb + lc + acc) % 3 == 0;
                        case_f32(gemm_f32, tn, s, la, lb, lc, acc, threads);
                        case_f64(gemm_f64, tn, s, la, lb, lc, acc, threads);
                    }
                }
    }
    for (int i = 0; i < (int)(sizeof big_shapes / sizeof big_shapes[0]); i++) {
        case_f32(gemm_f32, tn, big_shapes[i].s, big_shapes[i].la, big_shapes[i].lb,
                 big_shapes[i].lc, i & 1, 1);
        case_f64(gemm_f64, tn, big_shapes[i].s, big_shapes[i].la, big_shapes[i].lb,
                 big_shapes[i].lc, !(i & 1), 1);
    }
    gemm_force_isa(GEMM_ISA_AUTO);
}

int main(void)
{
    static const struct {
        int isa;
        const char *name, *feature;
    } isas[] = {{GEMM_ISA_GENERIC, "generic", NULL},
                {GEMM_ISA_AVX2, "avx2", "avx2"},
                {GEMM_ISA_AVX512, "avx512", "avx512f"}};
    __builtin_cpu_init();
    for (int i = 0; i < 3; i++) {
        int have = 1;
        if (isas[i].isa == GEMM_ISA_AVX2)
            have = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        if (isas[i].isa == GEMM_ISA_AVX512) have = __builtin_cpu_supports("avx512f");
        if (!have) {
            printf("skip %s: the CPU lacks %s\n", isas[i].name, isas[i].feature);
            continue;
        }
        int before = failures, cbefore = checks;
        run_isa(isas[i].isa, isas[i].name);
        printf("%s: %d cases, %d failures\n", isas[i].name, checks - cbefore, failures - before);
    }
    test_alloc_failure();
    printf("%s: %d checks, %d failures\n", failures ? "FAILED" : "OK", checks, failures);
    return failures != 0;
}
