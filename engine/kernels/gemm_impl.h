/*
 * gemm_impl.h: what the GEMM driver (gemm.c) needs from an ISA path (gemm_x86.c): register
 * tile shape, microkernel, packing and direct-path functions. Internal to engine/kernels.
 */
#ifndef AG_GEMM_IMPL_H
#define AG_GEMM_IMPL_H

#include <stddef.h>
#include <stdint.h>

/* One product; strides in elements, pointers untyped so one driver serves f32 and f64. */
typedef struct gemm_args {
    int64_t M, N, K;
    const void *A, *B;
    void *C;
    int64_t rsa, csa, rsb, csb, rsc, csc;
    int acc;
    void *spare; /* NULL, or gemm_spare_bytes of memory for the packing buffers when their
                    allocation fails */
} gemm_args;

/* Computes the mr x nr (<= MR x NR) corner of a register tile over kc steps from A's rows
 * a[i*ars + k*acs] (a packed panel: ars = 1, acs = MR; or A itself) and B's rows b[k*brs + j]
 * (a packed panel: brs = NR; or, if the path has b_in_place, a row-major B itself), and stores
 * it to C (load_c: adds it to C). Reads only rows i < mr of A and, in place, columns j < nr
 * of B. */
typedef void (*gemm_kern_fn)(int64_t kc, const void *a, int64_t ars, int64_t acs,
                             const void *b, int64_t brs, void *c, int64_t rsc, int64_t csc,
                             int64_t mr, int64_t nr, int load_c);
/* Packs w <= W lines of k elements: dst[kk*W + j] = src[j*sw + kk*sk], zero for j >= w. */
typedef void (*gemm_pack_fn)(int64_t k, const void *src, int64_t sw, int64_t sk, int64_t w,
                             int64_t W, void *dst);
/* The direct kernels sum K in blocks of DIRECT_KB, each block one multiply-add chain, the
 * blocks added to C in order, as the blocked path adds its k-blocks: one chain over all of K
 * made a product's error grow with K (10x PyTorch's at K = 4096, measured). */
#define DIRECT_KB 256

/* Computes C[i0:i1, j0:j1] straight from A and B, in k-blocks of DIRECT_KB. */
typedef void (*gemm_direct_fn)(const gemm_args *g, int64_t i0, int64_t i1, int64_t j0,
                               int64_t j1);

typedef struct gemm_impl {
    int64_t mr, nr, kc_max;
    size_t es;       /* element size */
    int b_in_place;  /* the kernel can read a row-major B without packing */
    gemm_kern_fn kernel;
    gemm_pack_fn pack_a, pack_b;
    gemm_direct_fn direct;
} gemm_impl;

/* C = A·B <=> Cᵀ = Bᵀ·Aᵀ: swaps the problem in place (same products, same k order). */
void gemm_transpose_args(gemm_args *g);

void gemm_pack_generic_f32(int64_t k, const void *src, int64_t sw, int64_t sk, int64_t w,
                           int64_t W, void *dst);
void gemm_pack_generic_f64(int64_t k, const void *src, int64_t sw, int64_t sk, int64_t w,
                           int64_t W, void *dst);

#if defined(__x86_64__) || defined(__i386__)
extern const gemm_impl gemm_impl_avx2_f32, gemm_impl_avx2_f64;
extern const gemm_impl gemm_impl_avx512_f32, gemm_impl_avx512_f64;
#endif

#endif
