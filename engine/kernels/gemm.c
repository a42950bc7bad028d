/*
 * gemm.c: the GEMM driver, the portable C kernels and the run-time ISA dispatch; the x86
 * kernels live in gemm_x86.c.
 *
 * Blocked path (BLIS-style): C is cut into register tiles (AVX-512: 14 x 32 f32, 14 x 16 f64)
 * that a microkernel computes over k-blocks of <= 256. Operands are read in place when the
 * layout allows (A with a unit stride, row-major B with short rows), else packed into panels.
 * M <= 256: one parallel loop over N-chunks that pack what they use. Larger M with A read in
 * place, on several threads: the same, one N-chunk per thread, each going through its A
 * panels a block at a time. Otherwise: per k-block, a parallel pass packs the shared B
 * panels, then a parallel loop over M-block x N-chunk tiles.
 * Thin products (C narrower than 5 columns) and tiny ones take a direct path instead.
 *
 * Determinism: every C element is one FMA (generic: multiply-add) chain over k inside each
 * k-block (the direct path's too: DIRECT_KB), and the k-blocks are added to C in increasing
 * order. k-blocks and the choice of
 * path depend only on (M, N, K) and the ISA; K is never split across threads; everything else
 * (tiling, packing, transposing the problem) moves data but not arithmetic. So any thread
 * count, schedule or operand layout gives the same bits.
 */
#include "gemm.h"
#include "gemm_impl.h"

#include "../alloc.h"
#include "../parallel.h"

#include <stdatomic.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------- */
/* Portable C path                                                                          */
/* ---------------------------------------------------------------------------------------- */

/* Packing: dst[kk*W + j] = src[j*sw + kk*sk] for j < w, 0 for w <= j < W. The loop order
 * follows whichever side is contiguous; the AVX-512 path uses it for odd strides only. */
#define DEF_PACK(NAME, T)                                                                      \
    void NAME(int64_t k, const void *src_, int64_t sw, int64_t sk, int64_t w, int64_t W,     \
              void *dst_)                                                                      \
    {                                                                                          \
        const T *s = src_;                                                                     \
        T *d = dst_;                                                                           \
        if (sk == 1 && sw != 1) {                                                              \
            for (int64_t j = 0; j < w; j++)                                                    \
                for (int64_t kk = 0; kk < k; kk++) d[kk * W + j] = s[j * sw + kk];             \
        } else {                                                                               \
            for (int64_t kk = 0; kk < k; kk++)                                                 \
                for (int64_t j = 0; j < w; j++) d[kk * W + j] = s[j * sw + kk * sk];           \
        }                                                                                      \
        if (w < W)                                                                             \
            for (int64_t kk = 0; kk < k; kk++)                                                 \
                for (int64_t j = w; j < W; j++) d[kk * W + j] = 0;                             \
    }
DEF_PACK(gemm_pack_generic_f32, float)
DEF_PACK(gemm_pack_generic_f64, double)

/* 4x8 (f32) and 4x4 (f64) register tiles: 8 SSE2 accumulators, so the x86-64 baseline keeps
 * them in registers (4x8 f64 spilled: 3.5 vs 7 GFLOP/s). Plain mul + add: the baseline has
 * no FMA. */
enum { GEN_MR = 4 };
#define DEF_GENERIC(T, SUF, GEN_NR)                                                            \
    static void kern_generic_##SUF(int64_t kc, const void *a_, int64_t ars, int64_t acs,      \
                                   const void *b_, int64_t brs, void *c_, int64_t rsc,        \
                                   int64_t csc, int64_t mr, int64_t nr, int load_c)            \
    {                                                                                          \
        const T *b = b_, *a[GEN_MR];                                                           \
        T *c = c_, acc[GEN_MR][GEN_NR] = {{0}};                                                \
        for (int i = 0; i < GEN_MR; i++) /* rows past mr repeat the last (never stored) */     \
            a[i] = (const T *)a_ + (i < mr ? i : mr - 1) * ars;                                \
        for (int64_t k = 0; k < kc; k++, b += brs)                                             \
            for (int i = 0; i < GEN_MR; i++) {                                                 \
                T x = a[i][k * acs];                                                           \
                for (int j = 0; j < GEN_NR; j++) acc[i][j] += x * b[j];                        \
            }                                                                                  \
        for (int64_t i = 0; i < mr; i++)                                                       \
            for (int64_t j = 0; j < nr; j++) {                                                 \
                T *p = c + i * rsc + j * csc;                                                  \
                *p = load_c ? *p + acc[i][j] : acc[i][j];                                      \
            }                                                                                  \
    }                                                                                          \
    static void direct_generic_##SUF(const gemm_args *g, int64_t i0, int64_t i1, int64_t j0,  \
                                     int64_t j1)                                               \
    {                                                                                          \
        const T *A = g->A, *B = g->B;                                                          \
        T *C = g->C;                                                                           \
        for (int64_t i = i0; i < i1; i++)                                                      \
            for (int64_t j = j0; j < j1; j++) {                                                \
                T *p = C + i * g->rsc + j * g->csc;                                            \
                for (int64_t kb = 0; kb < g->K || kb == 0; kb += DIRECT_KB) {                  \
                    T s = 0; /* a k-block's sum, added to C in order (see DIRECT_KB) */        \
                    for (int64_t k = kb; k < g->K && k < kb + DIRECT_KB; k++)                  \
                        s += A[i * g->rsa + k * g->csa] * B[k * g->rsb + j * g->csb];          \
                    *p = g->acc || kb > 0 ? *p + s : s;                                        \
                }                                                                              \
            }                                                                                  \
    }
DEF_GENERIC(float, f32, 8)
DEF_GENERIC(double, f64, 4)

static const gemm_impl impl_generic_f32 = {GEN_MR, 8, 256, sizeof(float), 0, kern_generic_f32,
                                           gemm_pack_generic_f32, gemm_pack_generic_f32,
                                           direct_generic_f32};
static const gemm_impl impl_generic_f64 = {GEN_MR, 4, 256, sizeof(double), 0, kern_generic_f64,
                                           gemm_pack_generic_f64, gemm_pack_generic_f64,
                                           direct_generic_f64};

/* ---------------------------------------------------------------------------------------- */
/* Dispatch                                                                                 */
/* ---------------------------------------------------------------------------------------- */

static atomic_int forced_isa;

static int cpu_isa(void)
{
    static atomic_int cached;
    int isa = atomic_load_explicit(&cached, memory_order_relaxed);
    if (isa) return isa;
    isa = GEMM_ISA_GENERIC;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) isa = GEMM_ISA_AVX2;
    if (isa == GEMM_ISA_AVX2 && __builtin_cpu_supports("avx512f")) isa = GEMM_ISA_AVX512;
#endif
    atomic_store_explicit(&cached, isa, memory_order_relaxed);
    return isa;
}

void gemm_force_isa(int isa) { atomic_store(&forced_isa, isa); }

int gemm_isa(void)
{
    int f = atomic_load(&forced_isa), c = cpu_isa();
    return f > 0 && f < c ? f : c;
}

static const gemm_impl *pick(int f64)
{
    switch (gemm_isa()) {
#if defined(__x86_64__) || defined(__i386__)
    case GEMM_ISA_AVX512: return f64 ? &gemm_impl_avx512_f64 : &gemm_impl_avx512_f32;
    case GEMM_ISA_AVX2: return f64 ? &gemm_impl_avx2_f64 : &gemm_impl_avx2_f32;
#endif
    default: return f64 ? &impl_generic_f64 : &impl_generic_f32;
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Driver                                                                                   */
/* ---------------------------------------------------------------------------------------- */

/* Direct path: for C with fewer columns than a vector and more rows than columns (x·w with w
 * a column, or its backward Xᵀ·g) the register tiles would mostly compute padding; the
 * direct kernels vectorise along M instead (64x1x256: 16 vs 8 GFLOP/s). Below 8x8x8 they
 * also cost less to set up (4x4x4: 70 vs 100 ns). The blocked path, which reads row-major
 * operands in place, wins everywhere else (16x16x16: 170 vs 220 ns). Sizes only, for
 * determinism. */
static int use_direct(int64_t M, int64_t N, int64_t K)
{
    return (N <= 4 && M > N) || M * N * K <= 512;
}

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

typedef struct direct_job {
    const gemm_impl *im;
    const gemm_args *g;
    int64_t rows, cols, ntn; /* tile shape and tiles across N */
} direct_job;

static void direct_chunk(void *ctx, int64_t lo, int64_t hi)
{
    const direct_job *d = ctx;
    for (int64_t t = lo; t < hi; t++) {
        int64_t i0 = t / d->ntn * d->rows, j0 = t % d->ntn * d->cols;
        d->im->direct(d->g, i0, min64(i0 + d->rows, d->g->M), j0, min64(j0 + d->cols, d->g->N));
    }
}

static void run_direct(const gemm_impl *im, gemm_args g)
{
    /* The kernels vectorise along N: put the longer side there (results do not change, since
     * products commute and the k order is the same). */
    if (g.M > g.N || (g.M == g.N && g.csc != 1 && g.rsc == 1)) gemm_transpose_args(&g);
    /* Tiles of ~64K multiply-adds: far above the cost of a task, small enough to balance. */
    int64_t cols = min64(g.N, 256);
    int64_t rows = min64(g.M, cdiv(65536, cols * g.K) < 4 ? 4 : cdiv(65536, cols * g.K));
    direct_job d = {im, &g, rows, cols, cdiv(g.N, cols)};
    par_for(cdiv(g.M, rows) * d.ntn, 1, direct_chunk, &d);
}

enum { PACK_KSLICE = 64 };

typedef struct packed_job {
    const gemm_impl *im;
    const gemm_args *g;
    char *Ap, *Bp;                  /* packed panels; NULL: that operand is read in place */
    int a_own, b_own;               /* each tile packs its own A / B panels, a k-block at a time */
    int64_t i0, ms, j0, ns, p0, ks; /* the super-block being computed */
    int64_t kc;                     /* k-block */
    int64_t nbp;                    /* B panels packed by this pack pass (0: reuse) */
    int spare;                      /* Ap and Bp are the caller's spare memory */
    int64_t ntm, ntn;               /* tiles across M and N (see plan_tiles) */
    int64_t mcb;                    /* A panels per block inside a tile (0: the whole tile) */
} packed_job;

/* Packs B panels [jp0, jp1) of k-block [k, k + kc) to dst, panel after panel. */
static void pack_b_panels(const packed_job *p, int64_t jp0, int64_t jp1, int64_t k, int64_t kc,
                          int64_t ld, char *dst)
{
    const gemm_impl *im = p->im;
    const gemm_args *g = p->g;
    size_t es = im->es;
    /* k slices outside the panel loop: when B is row-major each slice reads whole row
     * segments instead of one 128-byte piece per row (and page). */
    for (int64_t k0 = 0; k0 < kc; k0 += PACK_KSLICE)
        for (int64_t jp = jp0; jp < jp1; jp++) {
            int64_t j = p->j0 + jp * im->nr, kk = k + k0;
            im->pack_b(min64(PACK_KSLICE, kc - k0),
                       (const char *)g->B + (kk * g->rsb + j * g->csb) * es, g->csb, g->rsb,
                       min64(im->nr, p->j0 + p->ns - j), im->nr,
                       dst + ((jp - jp0) * ld + k0) * im->nr * es);
        }
}

/* Packs A panels [ip0, ip1) of k-block [k, k + kc) to dst, panel after panel. */
static void pack_a_panels(const packed_job *p, int64_t ip0, int64_t ip1, int64_t k, int64_t kc,
                          int64_t ld, char *dst)
{
    const gemm_impl *im = p->im;
    const gemm_args *g = p->g;
    size_t es = im->es;
    for (int64_t k0 = 0; k0 < kc; k0 += PACK_KSLICE)
        for (int64_t ip = ip0; ip < ip1; ip++) {
            int64_t i = p->i0 + ip * im->mr, kk = k + k0;
            im->pack_a(min64(PACK_KSLICE, kc - k0),
                       (const char *)g->A + (i * g->rsa + kk * g->csa) * es, g->rsa, g->csa,
                       min64(im->mr, p->i0 + p->ms - i), im->mr,
                       dst + ((ip - ip0) * ld + k0) * im->mr * es);
        }
}

/* Packing pass, jobs [lo, hi): B panels (nbp of them) first, then A panels. */
static void pack_chunk(void *ctx, int64_t lo, int64_t hi)
{
    const packed_job *p = ctx;
    size_t es = p->im->es;
    if (lo < p->nbp)
        pack_b_panels(p, lo, min64(hi, p->nbp), p->p0, p->ks, p->ks,
                      p->Bp + lo * p->ks * p->im->nr * es);
    if (hi > p->nbp) {
        lo = lo > p->nbp ? lo - p->nbp : 0;
        pack_a_panels(p, lo, hi - p->nbp, p->p0, p->ks, p->ks, p->Ap + lo * p->ks * p->im->mr * es);
    }
}

static void tile_chunk(void *ctx, int64_t lo, int64_t hi)
{
    const packed_job *p = ctx;
    const gemm_impl *im = p->im;
    const gemm_args *g = p->g;
    size_t es = im->es;
    int64_t mr = im->mr, nr = im->nr, npm = cdiv(p->ms, mr), npn = cdiv(p->ns, nr);
    int64_t ars = p->Ap ? 1 : g->rsa, acs = p->Ap ? mr : g->csa, brs = p->Bp ? nr : g->rsb;
    for (int64_t t = lo; t < hi; t++) {
        int64_t tm = t / p->ntn, tn = t % p->ntn;
        int64_t ip0 = tm * npm / p->ntm, ip1 = (tm + 1) * npm / p->ntm;
        int64_t jp0 = tn * npn / p->ntn, jp1 = (tn + 1) * npn / p->ntn;
        for (int64_t pc = 0; pc < p->ks; pc += p->kc) {
            int64_t kc = min64(p->kc, p->ks - pc), k = p->p0 + pc;
            int load_c = g->acc || k > 0;
            /* Panel slots are p->kc deep: tiles may be at different k-blocks. */
            if (p->a_own) pack_a_panels(p, ip0, ip1, k, kc, p->kc, p->Ap + ip0 * p->kc * mr * es);
            if (p->b_own) pack_b_panels(p, jp0, jp1, k, kc, p->kc, p->Bp + jp0 * p->kc * nr * es);
            /* The B micro-panel (kc x nr) stays in L1 while the tile's A panels stream from
             * L2 (a tall tile goes through them mcb panels at a time, so that they fit). */
            for (int64_t ib0 = ip0, ib1; ib0 < ip1; ib0 = ib1) {
                ib1 = p->mcb ? min64(ib0 + p->mcb, ip1) : ip1;
                for (int64_t jp = jp0; jp < jp1; jp++) {
                    int64_t j = p->j0 + jp * nr;
                    const char *b = p->b_own ? p->Bp + jp * p->kc * nr * es
                                    : p->Bp  ? p->Bp + (jp * p->ks + pc) * nr * es
                                             : (const char *)g->B + (k * g->rsb + j) * es;
                    for (int64_t ip = ib0; ip < ib1; ip++) {
                        int64_t i = p->i0 + ip * mr;
                        const char *a =
                            p->a_own ? p->Ap + ip * p->kc * mr * es
                            : p->Ap  ? p->Ap + (ip * p->ks + pc) * mr * es
                                     : (const char *)g->A + (i * g->rsa + k * g->csa) * es;
                        im->kernel(kc, a, ars, acs, b, brs,
                                   (char *)g->C + (i * g->rsc + j * g->csc) * es, g->rsc,
                                   g->csc, min64(mr, p->i0 + p->ms - i),
                                   min64(nr, p->j0 + p->ns - j), load_c);
                    }
                }
            }
        }
    }
}

/* Block sizes. KC: a kc x nr B micro-panel must stay in L1 (48 KiB here; 256 x 32 floats is
 * 32 KiB). Tiles: at most MC_PANELS x NC_PANELS micro-tiles (~112 x 256 floats of C, so the
 * tile's A panels stay in L2), cut further until there are MIN_TILES tiles (or one per
 * thread, when there are more threads) unless that would make a tile cheaper than
 * TILE_MIN_FMAS; then, while the last round of tiles would leave over 15% of the threads'
 * time idle, cut once more where that is allowed (16 threads: 40 tiles run in 3 rounds of 16,
 * 80 in 5). Tile shapes never change a result: tiles are whole register tiles of one fixed
 * grid, and each element's sum runs over the same k-blocks in the same order. Super-blocks
 * bound each packing buffer to PACK_LIMIT elements. */
enum { MC_PANELS = 8, NC_PANELS = 8, MIN_TILES = 8, FUSED_M_MAX = 256, MC_PANELS_OWN_A = 6 };
#define TILE_MIN_FMAS (1 << 19)
#define PACK_LIMIT ((int64_t)1 << 20)

/* Splits npm x npn micro-tiles into p->ntm x p->ntn tiles of at most mcp x ncp each. Tile
 * (tm, tn) spans panels [tm * npm / ntm, (tm + 1) * npm / ntm) and likewise across N, so
 * tiles differ by one panel at most: 74 panels in tiles of <= 8 are 10 tiles of 7 or 8, not
 * 9 of 8 and one of 2, which left the thread given the short tile row 8% idle (1024^3 at 2
 * threads: static schedule, 20 tiles each). */
static void plan_tiles(packed_job *p, int64_t npm, int64_t npn, int64_t mcp, int64_t ncp, int64_t k)
{
    int64_t mr = p->im->mr, nr = p->im->nr;
    int64_t nt = par_plan_threads(), want = nt > MIN_TILES ? nt : MIN_TILES;
    for (;;) {
        int64_t tiles = cdiv(npm, mcp) * cdiv(npn, ncp);
        /* Share of the threads' time the last round uses: tiles / (rounds * nt). */
        bool balanced = tiles * 100 >= cdiv(tiles, nt) * nt * 85;
        if (tiles >= want && (nt == 1 || balanced)) break;
        int64_t m2 = mcp, n2 = ncp;
        /* A tile that packs its own A (B) panels owns all of them: never split that way. */
        if (ncp > 1 && !p->a_own && (ncp * nr >= mcp * mr || p->b_own)) n2 = cdiv(ncp, 2);
        else if (mcp > 1 && !p->b_own) m2 = cdiv(mcp, 2);
        if ((m2 == mcp && n2 == ncp) || m2 * mr * n2 * nr * k < TILE_MIN_FMAS) break;
        mcp = m2;
        ncp = n2;
    }
    int64_t ntm = cdiv(npm, mcp), ntn = cdiv(npn, ncp);
    /* par_for's static schedule gives each thread a run of consecutive tiles: with a tile
     * count that is not a multiple of the thread count, some threads get one tile more (13
     * tiles at 2 threads: 7 against 6). Add the fewest tile rows or columns (up to twice as
     * many) that make it a multiple, where tiles may be split that way and stay above
     * TILE_MIN_FMAS. */
    if (nt > 1 && ntm * ntn % nt) {
        int64_t bm = 0, bn = 0;
        for (int64_t m = ntm + 1; !p->b_own && m <= npm && m <= 2 * ntm && !bm; m++)
            if (m * ntn % nt == 0 && npm / m * mr * cdiv(npn, ntn) * nr * k >= TILE_MIN_FMAS) bm = m;
        for (int64_t n = ntn + 1; !p->a_own && n <= npn && n <= 2 * ntn && !bn; n++)
            if (ntm * n % nt == 0 && cdiv(npm, ntm) * mr * (npn / n) * nr * k >= TILE_MIN_FMAS) bn = n;
        if (bm && (!bn || bm * ntn <= ntm * bn)) ntm = bm;
        else if (bn) ntn = bn;
    }
    p->ntm = ntm;
    p->ntn = ntn;
}

/* Allocates the packing buffers (a_bytes, b_bytes; 0: none), or carves them from the caller's
 * spare memory when that fails (a deferred product reserved it when it was queued, so that it
 * cannot fail when it runs). Returns -1 if neither is possible. */
static int take_buffers(const gemm_args *g, packed_job *p, size_t a_bytes, size_t b_bytes)
{
    p->Ap = a_bytes ? mem_alloc_aligned(a_bytes, MEM_DATA_ALIGN) : NULL;
    p->Bp = b_bytes ? mem_alloc_aligned(b_bytes, MEM_DATA_ALIGN) : NULL;
    if ((!a_bytes || p->Ap) && (!b_bytes || p->Bp)) return 0;
    mem_free_aligned(p->Ap);
    mem_free_aligned(p->Bp);
    p->Ap = p->Bp = NULL;
    if (!g->spare) return -1;
    p->spare = 1;
    p->Ap = a_bytes ? (char *)g->spare : NULL;
    p->Bp = b_bytes ? (char *)g->spare + ((a_bytes + MEM_DATA_ALIGN - 1) & ~(size_t)(MEM_DATA_ALIGN - 1))
                    : NULL;
    return 0;
}

static void drop_buffers(packed_job *p)
{
    if (p->spare) return;
    mem_free_aligned(p->Ap);
    mem_free_aligned(p->Bp);
}

/* The three ways of run_packed (see there). */
enum { WAY_FUSED, WAY_A_IN_PLACE, WAY_BLOCKS };

/* How run_packed computes a product: its orientation, what it packs, which way it goes and the
 * packing buffers that takes. Apart from run_packed so that a queued product reserves exactly
 * what it may allocate (gemm_spare_bytes). */
typedef struct packed_plan {
    gemm_args g; /* transposed where that pays */
    int pack_a, b_in_place, way;
    int64_t kc, ks, ms, ns, pn_max;
    size_t a_bytes, b_bytes;
} packed_plan;

/* The buffers of way w (WAY_A_IN_PLACE only if A is not packed). */
static void plan_bytes(const gemm_impl *im, packed_plan *pl, int w)
{
    int64_t mr = im->mr, nr = im->nr, M = pl->g.M, N = pl->g.N, K = pl->g.K;
    size_t es = im->es;
    int64_t npm = cdiv(M, mr), npn = cdiv(N, nr);
    pl->way = w;
    if (w == WAY_FUSED) {
        pl->a_bytes = pl->pack_a ? (size_t)(npm * mr * K) * es : 0;
        pl->b_bytes = !pl->b_in_place ? (size_t)(npn * nr * pl->kc) * es : 0;
    } else if (w == WAY_A_IN_PLACE) {
        pl->a_bytes = 0;
        pl->b_bytes = !pl->b_in_place ? (size_t)(pl->pn_max * nr * pl->kc) * es : 0;
    } else {
        pl->a_bytes = pl->pack_a ? (size_t)(pl->ms * pl->ks) * es : 0;
        pl->b_bytes = (size_t)(pl->ns * pl->ks) * es;
    }
}

static void plan_packed(const gemm_impl *im, gemm_args g, int64_t nt, packed_plan *pl)
{
    /* The microkernels write row-major register tiles: make C's unit stride the column one. A
     * C narrower than half a register tile wastes most lanes; if A is column-major, Cᵀ = Bᵀ·Aᵀ
     * reads Aᵀ in place and vectorises along M instead, writing C through the kernels'
     * scatter path (256x10x128 TN, 1 thread: 71 -> 99 GFLOP/s). */
    if ((g.csc != 1 && g.rsc == 1) ||
        (im->b_in_place && g.N < im->nr / 2 && g.N <= im->mr && g.M > g.N && g.rsa == 1 &&
         g.csa != 1))
        gemm_transpose_args(&g);
    pl->g = g;
    int64_t mr = im->mr, nr = im->nr, M = g.M, N = g.N, K = g.K;
    size_t es = im->es;
    /* The kernels read A in place when its rows or columns are contiguous (or constant along
     * k): packing A (a transpose for row-major A) costs as much as the FMAs when N ~ 32 and
     * ~10% at 128x512x784. A column-major A is still packed when reused across many B panels
     * over several k-blocks: its k-steps are up to a page apart and TLB misses cost more
     * (1024^3: -15%; 200x300x1000: -40%; but 256x256x64, 2 threads: +25% in place). */
    pl->pack_a = !(g.csa <= 1 ||
                   (g.rsa <= 1 && (N <= 4 * nr || (M <= FUSED_M_MAX && K <= im->kc_max))));
    /* k-blocks of equal size (K = 300 gives 2 x 150 rather than 256 + 44). */
    pl->kc = cdiv(K, cdiv(K, im->kc_max));
    int64_t npm = cdiv(M, mr), npn = cdiv(N, nr);
    pl->b_in_place = im->b_in_place && g.csb == 1 && g.rsb * (int64_t)es < 4096;
    if (M <= FUSED_M_MAX && (!pl->pack_a || npm * mr * K <= PACK_LIMIT) &&
        (pl->b_in_place || npn * nr * pl->kc <= PACK_LIMIT)) {
        plan_bytes(im, pl, WAY_FUSED);
        return;
    }
    /* Packing goes one k-block at a time: small buffers stay in cache (a whole-K 4 MiB buffer
     * at 1024^3 was 8% slower). */
    pl->ks = pl->kc;
    int64_t msmax = PACK_LIMIT / pl->ks / mr * mr, nsmax = PACK_LIMIT / pl->ks / nr * nr;
    pl->ns = min64(npn * nr, nsmax < nr ? nr : nsmax); /* columns of a super-block */
    pl->pn_max = cdiv(pl->ns, nr);
    pl->ms = pl->pack_a ? min64(npm * mr, msmax < mr ? mr : msmax) : M;
    /* (Each thread reads all of A, where the shared pass split it: so only while A's k-block
     * fits in an L2 or each thread has 4 panels or more to reuse it over.) */
    int64_t pn = pl->pn_max;
    if (!pl->pack_a && nt > 1 && cdiv(pn, nt) * nt * 100 <= pn * 110 &&
        (pn >= 4 * nt || M * pl->kc * (int64_t)es <= ((int64_t)2 << 20)))
        plan_bytes(im, pl, WAY_A_IN_PLACE);
    else
        plan_bytes(im, pl, WAY_BLOCKS);
}

size_t gemm_spare_bytes(int64_t M, int64_t N, int64_t K, int64_t rsa, int64_t csa, int64_t rsb,
                        int64_t csb, int64_t rsc, int64_t csc, int f64)
{
    if (M <= 0 || N <= 0 || K <= 0 || use_direct(M, N, K)) return 0;
    const gemm_impl *im = pick(f64);
    gemm_args g = {M, N, K, NULL, NULL, NULL, rsa, csa, rsb, csb, rsc, csc, 0, NULL};
    packed_plan pl;
    /* The way taken depends on the thread count when the product runs (one, in a batch that
     * runs heads side by side; the team's, otherwise; and that may change meanwhile): the
     * larger of the ways it may take. */
    plan_packed(im, g, 1, &pl);
    size_t most = 0;
    for (int w = WAY_FUSED; w <= WAY_BLOCKS; w++) {
        /* fused or not does not depend on the thread count; A in place needs A unpacked */
        if ((w == WAY_FUSED) != (pl.way == WAY_FUSED) || (w == WAY_A_IN_PLACE && pl.pack_a))
            continue;
        plan_bytes(im, &pl, w);
        size_t b = ((pl.a_bytes + MEM_DATA_ALIGN - 1) & ~(size_t)(MEM_DATA_ALIGN - 1)) + pl.b_bytes;
        if (b > most) most = b;
    }
    return most;
}

static int run_packed(const gemm_impl *im, gemm_args g0)
{
    packed_plan pl;
    plan_packed(im, g0, par_plan_threads(), &pl);
    gemm_args g = pl.g;
    int64_t mr = im->mr, nr = im->nr, M = g.M, N = g.N, K = g.K, kc = pl.kc;
    int64_t npm = cdiv(M, mr), npn = cdiv(N, nr);
    int pack_a = pl.pack_a;
    packed_job p = {.im = im, .g = &g, .kc = kc, .ms = M, .ns = N, .ks = K};
    if (pl.way == WAY_FUSED) {
        /* One pass over all of K in a single parallel loop over N-chunks: with few A panels a
         * packed B panel is not reused enough to repay a separate packing pass, the barrier
         * after it, and moving the packed data to the core that computes with it (2 threads:
         * 64x256x256 went from 115 to 260 GFLOP/s). A row-major B is read in place while its
         * rows are less than 4 KiB apart (beyond, L1 set conflicts between the rows of a
         * micro-panel cost ~20%); otherwise each tile packs its own panels, a k-block at a
         * time. */
        p.b_own = !pl.b_in_place;
        if (take_buffers(&g, &p, pl.a_bytes, pl.b_bytes)) return -1;
        par_for(pack_a ? npm : 0, cdiv(65536, K * mr), pack_chunk, &p);
        plan_tiles(&p, npm, npn, npm, NC_PANELS, K);
        par_for(p.ntm * p.ntn, 1, tile_chunk, &p);
        drop_buffers(&p);
        return 0;
    }
    int64_t ks = pl.ks, ns = pl.ns, ms = pl.ms, nt = par_plan_threads();
    if (pl.way == WAY_A_IN_PLACE) {
        /* A read in place, several threads and enough B panels to share evenly: each thread
         * takes a run of B's panels, with all of M, and goes through every k-block on its
         * own: packs its panels (when B needs packing), then computes its columns of C,
         * MC_PANELS A panels at a time. No barrier between k-blocks, and no packed panel is
         * read by another core. With a pass packing B for all tiles, each k-block ended
         * with the team waiting for its slowest thread, and each thread read the panels the
         * other had packed: at 1024^3 on 2 threads, ~15% of the threads' time went to
         * spinning in libgomp. At most 32 panels a tile (1 MiB packed per k-block: an L2). */
        p.b_own = !pl.b_in_place;
        p.mcb = MC_PANELS;
        p.ntm = 1;
        if (take_buffers(&g, &p, pl.a_bytes, pl.b_bytes)) return -1;
        for (p.j0 = 0; p.j0 < N; p.j0 += ns) {
            p.ns = min64(ns, N - p.j0);
            int64_t pn = cdiv(p.ns, nr);
            p.ntn = min64(pn, nt * cdiv(pn, nt * 32));
            par_for(p.ntn, 1, tile_chunk, &p);
        }
        drop_buffers(&p);
        return 0;
    }
    /* B panels are shared by all tiles: packed in a pass. A panels are packed by the tile
     * that uses them, tiles then spanning all of N: packed A stays in the cache of its core
     * and packing overlaps the other threads' FMAs. Such tiles are a little shorter
     * (MC_PANELS_OWN_A) for balance: TN 1024^3, 2 threads, 262 -> 278 GFLOP/s. */
    p.a_own = pack_a;
    if (take_buffers(&g, &p, pl.a_bytes, pl.b_bytes)) return -1;
    for (p.j0 = 0; p.j0 < N; p.j0 += ns) {
        p.ns = min64(ns, N - p.j0);
        for (p.p0 = 0; p.p0 < K; p.p0 += ks) {
            p.ks = min64(ks, K - p.p0);
            for (p.i0 = 0; p.i0 < M; p.i0 += ms) {
                p.ms = min64(ms, M - p.i0);
                int64_t pm = cdiv(p.ms, mr), pn = cdiv(p.ns, nr);
                /* Packing chunks of >= 64K elements (~10 us): smaller ones are not worth
                 * waking a thread for. */
                p.nbp = p.i0 == 0 ? pn : 0;
                par_for(p.nbp, cdiv(65536, p.ks * nr), pack_chunk, &p);
                if (pack_a) plan_tiles(&p, pm, pn, MC_PANELS_OWN_A, pn, p.ks);
                else plan_tiles(&p, pm, pn, MC_PANELS, NC_PANELS, p.ks);
                par_for(p.ntm * p.ntn, 1, tile_chunk, &p);
            }
        }
    }
    drop_buffers(&p);
    return 0;
}

static int gemm_run(const gemm_impl *im, gemm_args g)
{
    if (g.M <= 0 || g.N <= 0) return 0;
    if (g.K <= 0) {
        if (!g.acc)
            for (int64_t i = 0; i < g.M; i++)
                for (int64_t j = 0; j < g.N; j++)
                    memset((char *)g.C + (i * g.rsc + j * g.csc) * im->es, 0, im->es);
        return 0;
    }
    if (use_direct(g.M, g.N, g.K)) {
        run_direct(im, g);
        return 0;
    }
    return run_packed(im, g);
}

void gemm_transpose_args(gemm_args *g)
{
    gemm_args t = *g;
    g->M = t.N;
    g->N = t.M;
    g->A = t.B;
    g->rsa = t.csb;
    g->csa = t.rsb;
    g->B = t.A;
    g->rsb = t.csa;
    g->csb = t.rsa;
    g->rsc = t.csc;
    g->csc = t.rsc;
}

int gemm_f32(int64_t M, int64_t N, int64_t K, const float *A, int64_t rsa, int64_t csa,
             const float *B, int64_t rsb, int64_t csb, float *C, int64_t rsc, int64_t csc,
             int accumulate)
{
    return gemm_f32_spare(M, N, K, A, rsa, csa, B, rsb, csb, C, rsc, csc, accumulate, NULL);
}

int gemm_f64(int64_t M, int64_t N, int64_t K, const double *A, int64_t rsa, int64_t csa,
             const double *B, int64_t rsb, int64_t csb, double *C, int64_t rsc, int64_t csc,
             int accumulate)
{
    return gemm_f64_spare(M, N, K, A, rsa, csa, B, rsb, csb, C, rsc, csc, accumulate, NULL);
}

int gemm_f32_spare(int64_t M, int64_t N, int64_t K, const float *A, int64_t rsa, int64_t csa,
                   const float *B, int64_t rsb, int64_t csb, float *C, int64_t rsc, int64_t csc,
                   int accumulate, void *spare)
{
    gemm_args g = {M, N, K, A, B, C, rsa, csa, rsb, csb, rsc, csc, accumulate != 0, spare};
    return gemm_run(pick(0), g);
}

int gemm_f64_spare(int64_t M, int64_t N, int64_t K, const double *A, int64_t rsa, int64_t csa,
                   const double *B, int64_t rsb, int64_t csb, double *C, int64_t rsc,
                   int64_t csc, int accumulate, void *spare)
{
    gemm_args g = {M, N, K, A, B, C, rsa, csa, rsb, csb, rsc, csc, accumulate != 0, spare};
    return gemm_run(pick(1), g);
}
