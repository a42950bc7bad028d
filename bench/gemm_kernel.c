/*
 * gemm_kernel.c: GFLOP/s of gemm_f32/gemm_f64 against OpenBLAS cblas_sgemm/dgemm, 1 and 2
 * threads, on the shapes of an MLP training step (784-512-256-10, batch 128) and 1024^3.
 * Median of 7 timed reps after a warm-up; a rep repeats small products to last >= 2 ms.
 * Operand forms: N = row-major, T = transposed view of a row-major matrix (what backward
 * passes), 1 = broadcast (strides 0,0; OpenBLAS gets a materialised matrix of ones).
 *
 * gcc -std=gnu11 -O2 -fopenmp -Iengine engine/parallel.c engine/alloc.c engine/kernels/gemm*.c \
 *     bench/gemm_kernel.c -lopenblas -lm -o /tmp/gemm_kernel && /tmp/gemm_kernel [f64]
 * OpenBLAS picks its kernel by CPU model and prints which: Debian 12's 0.3.21 does not know
 * this Xeon (family 6 model 207) and falls back to Prescott (SSE3, ~32 GFLOP/s a core);
 * OPENBLAS_CORETYPE=SkylakeX selects its AVX-512 kernels, the fair comparison.
 */
#include "alloc.h"
#include "kernels/gemm.h"
#include "parallel.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "timing.h"

char *openblas_get_corename(void);

typedef struct bshape {
    int64_t M, N, K;
    char ta, tb; /* 'N', 'T' or '1' */
} bshape;

static const bshape shapes[] = {
    {1024, 1024, 1024, 'N', 'N'}, {1024, 1024, 1024, 'N', 'T'}, {1024, 1024, 1024, 'T', 'N'},
    {1024, 1024, 1024, '1', 'T'},
    /* MLP forward, x·W (W stored in x out) */
    {128, 512, 784, 'N', 'N'}, {128, 256, 512, 'N', 'N'}, {128, 10, 256, 'N', 'N'},
    /* dX = G·Wᵀ */
    {128, 784, 512, 'N', 'T'}, {128, 512, 256, 'N', 'T'}, {128, 256, 10, 'N', 'T'},
    /* dW = Xᵀ·G, and with G = ones (loss = sum()) */
    {784, 512, 128, 'T', 'N'}, {512, 256, 128, 'T', 'N'}, {256, 10, 128, 'T', 'N'},
    {784, 512, 128, 'T', '1'},
    {64, 256, 256, 'N', 'N'}, {256, 256, 64, 'N', 'N'}, {256, 256, 64, 'T', 'N'},
    {64, 1, 256, 'N', 'N'}, {1, 1, 1, 'N', 'N'}};


typedef struct bcase {
    const bshape *s;
    int f64, ours;
    void *A, *B, *C, *ones; /* ones: materialised broadcast operand for OpenBLAS */
} bcase;

static void run_once(const bcase *c)
{
    const bshape *s = c->s;
    int64_t M = s->M, N = s->N, K = s->K;
    /* Storage: 'N' row-major (M x K, K x N); 'T' the transpose is row-major (K x M, N x K). */
    int64_t rsa = s->ta == 'N' ? K : s->ta == 'T' ? 1 : 0, csa = s->ta == 'N' ? 1 : s->ta == 'T' ? M : 0;
    int64_t rsb = s->tb == 'N' ? N : s->tb == 'T' ? 1 : 0, csb = s->tb == 'N' ? 1 : s->tb == 'T' ? K : 0;
    if (c->ours) {
        int rc = c->f64 ? gemm_f64(M, N, K, c->A, rsa, csa, c->B, rsb, csb, c->C, N, 1, 0)
                        : gemm_f32(M, N, K, c->A, rsa, csa, c->B, rsb, csb, c->C, N, 1, 0);
        if (rc) abort();
        return;
    }
    const void *A = s->ta == '1' ? c->ones : c->A, *B = s->tb == '1' ? c->ones : c->B;
    enum CBLAS_TRANSPOSE ta = s->ta == 'T' ? CblasTrans : CblasNoTrans;
    enum CBLAS_TRANSPOSE tb = s->tb == 'T' ? CblasTrans : CblasNoTrans;
    int lda = s->ta == 'T' ? (int)M : (int)K, ldb = s->tb == 'T' ? (int)K : (int)N;
    if (c->f64)
        cblas_dgemm(CblasRowMajor, ta, tb, (int)M, (int)N, (int)K, 1.0, A, lda, B, ldb, 0.0,
                    c->C, (int)N);
    else
        cblas_sgemm(CblasRowMajor, ta, tb, (int)M, (int)N, (int)K, 1.0f, A, lda, B, ldb, 0.0f,
                    c->C, (int)N);
}

/* Median GFLOP/s over 7 reps. */
static double measure(const bcase *c)
{
    double flops = 2.0 * (double)c->s->M * (double)c->s->N * (double)c->s->K;
    run_once(c);
    double t = now();
    int reps = 0;
    do run_once(c), reps++;
    while (now() - t < 0.002);
    double g[7];
    for (int r = 0; r < 7; r++) {
        t = now();
        for (int i = 0; i < reps; i++) run_once(c);
        g[r] = flops * reps / (now() - t) * 1e-9;
    }
    qsort(g, 7, sizeof g[0], cmp_double);
    return g[3];
}

int main(int argc, char **argv)
{
    int f64 = argc > 1 && !strcmp(argv[1], "f64");
    size_t es = f64 ? sizeof(double) : sizeof(float);
    static const char *isa[] = {"", "generic", "avx2", "avx512"};
    printf("%s, ours: %s path; OpenBLAS %s kernel\n", f64 ? "float64" : "float32", isa[gemm_isa()],
           openblas_get_corename());
    printf("%-16s %-5s | %9s %9s %6s | %9s %9s %6s\n", "M x N x K", "op", "ours 1t", "blas 1t",
           "ratio", "ours 2t", "blas 2t", "ratio");
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const bshape *s = &shapes[si];
        size_t big = (size_t)(s->M > s->N ? s->M : s->N) * (size_t)(s->K > s->N ? s->K : s->N);
        bcase c = {s, f64, 0, mem_alloc_aligned(big * es, 64), mem_alloc_aligned(big * es, 64),
                   mem_alloc_aligned((size_t)(s->M * s->N) * es, 64),
                   mem_alloc_aligned(big * es, 64)};
        for (size_t i = 0; i < big; i++) {
            double a = (double)(rand() % 2001 - 1000) / 1000, b = (double)(rand() % 2001 - 1000) / 1000;
            if (f64) ((double *)c.A)[i] = a, ((double *)c.B)[i] = b, ((double *)c.ones)[i] = 1;
            else ((float *)c.A)[i] = (float)a, ((float *)c.B)[i] = (float)b, ((float *)c.ones)[i] = 1;
        }
        double g[2][2];
        for (int t = 1; t <= 2; t++) {
            par_set_num_threads(t);
            openblas_set_num_threads(t);
            for (c.ours = 1; c.ours >= 0; c.ours--) g[t - 1][!c.ours] = measure(&c);
        }
        char name[32], op[8];
        snprintf(name, sizeof name, "%lldx%lldx%lld", (long long)s->M, (long long)s->N, (long long)s->K);
        snprintf(op, sizeof op, "%c%c", s->ta, s->tb);
        printf("%-16s %-5s | %9.2f %9.2f %6.2f | %9.2f %9.2f %6.2f\n", name, op, g[0][0], g[0][1],
               g[0][0] / g[0][1], g[1][0], g[1][1], g[1][0] / g[1][1]);
        fflush(stdout);
        mem_free_aligned(c.A), mem_free_aligned(c.B), mem_free_aligned(c.C), mem_free_aligned(c.ones);
    }
    return 0;
}
