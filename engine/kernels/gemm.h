/*
 * gemm.h: dense matrix multiply for float32/float64 over arbitrary strided views, with run-time
 * ISA dispatch (AVX-512F, AVX2+FMA, portable C) and results that do not depend on threads.
 */
#ifndef AG_GEMM_H
#define AG_GEMM_H

#include <stddef.h>
#include <stdint.h>

/* C = A·B (accumulate == 0: C is not read, so NaN/garbage in C is overwritten) or
 * C += A·B (accumulate != 0). A is MxK, B is KxN, C is MxN; every matrix is given by a base
 * pointer and row/column strides in ELEMENTS (any non-negative values, including 0 for
 * broadcast operands and non-unit strides for transposed/sliced views). C never aliases A or B,
 * and distinct (i, j) address distinct elements of C.
 *
 * Every element of C is bitwise identical for any thread count and schedule: K is never split
 * across threads and the order in which k-terms are summed depends only on (M, N, K) and the
 * ISA path. K == 0 gives C = 0 (accumulate == 0) or leaves C unchanged.
 *
 * Returns 0, or -1 if a packing buffer could not be allocated; everything is allocated before
 * C is touched, so C is then unchanged. */
int gemm_f32(int64_t M, int64_t N, int64_t K, const float *A, int64_t rsa, int64_t csa,
             const float *B, int64_t rsb, int64_t csb, float *C, int64_t rsc, int64_t csc,
             int accumulate);
int gemm_f64(int64_t M, int64_t N, int64_t K, const double *A, int64_t rsa, int64_t csa,
             const double *B, int64_t rsb, int64_t csb, double *C, int64_t rsc, int64_t csc,
             int accumulate);

/* The same, given `spare`: NULL, or gemm_spare_bytes(M, N, K, element size) bytes aligned to
 * 64, which the packing buffers use if they cannot be allocated: then the call cannot fail.
 * (A deferred product reserves them when it is queued: it has no caller to fail to.) */
int gemm_f32_spare(int64_t M, int64_t N, int64_t K, const float *A, int64_t rsa, int64_t csa,
                   const float *B, int64_t rsb, int64_t csb, float *C, int64_t rsc, int64_t csc,
                   int accumulate, void *spare);
int gemm_f64_spare(int64_t M, int64_t N, int64_t K, const double *A, int64_t rsa, int64_t csa,
                   const double *B, int64_t rsb, int64_t csb, double *C, int64_t rsc,
                   int64_t csc, int accumulate, void *spare);
/** Bytes of spare memory a product of these sizes and strides (elements, as gemm_f32's) may
 *  need for its packing buffers, whatever the thread count when it runs (0: none). */
size_t gemm_spare_bytes(int64_t M, int64_t N, int64_t K, int64_t rsa, int64_t csa, int64_t rsb,
                        int64_t csb, int64_t rsc, int64_t csc, int f64);

/* ISA paths; GEMM_ISA_AUTO picks the best the CPU supports. */
enum { GEMM_ISA_AUTO = 0, GEMM_ISA_GENERIC = 1, GEMM_ISA_AVX2 = 2, GEMM_ISA_AVX512 = 3 };

/** TEST-ONLY: forces an ISA path for later calls (process-wide; not for concurrent use with
 *  gemm calls). A path the CPU lacks falls back to the best one it has. */
void gemm_force_isa(int isa);
/** The path the next call will use (GEMM_ISA_GENERIC..GEMM_ISA_AVX512). */
int gemm_isa(void);

#endif
