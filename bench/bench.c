/*
 * bench.c: the four reference workloads of docs/workloads.md (mlp, wide, scalar, gemm)
 * through the public ABI, plus mlp's peak resident memory. bench/run drives it, alongside
 * bench/torch_bench.py, which implements the same workloads the same way in PyTorch.
 *
 * usage: bench mlp|wide|scalar|gemm [--threads 1,2] [--reps R] [--warmup W] [--defer on|off]
 *        bench wide-linear [same options]  (wide with each head two linear layers with biases)
 *        bench bmm [--threads 1,2] [--reps R]  (batched products of small matrices)
 *        bench mlp-rss --steps N [--threads T]
 *        bench scalar-sweep [--reps R]   (scalar at 500 ... 20000 triples, phase by phase)
 *        bench wide-split [--reps R]     (wide at 1 and 2 threads, step by step)
 *        bench wide-heads [--reps R]     (wide at 2 threads with the heads' forward split)
 *        bench layout [--reps R]         (ops on a transposed matrix and results laid out so)
 *        bench blas-info      (the OpenBLAS kernel family picked for this CPU)
 * Each configuration prints one line, parsed by bench/run:
 *   result <side> <workload> threads=<t> unit=<unit> median=<m> samples=<s1>,<s2>,...
 * Repetitions of different thread counts are interleaved, so drift hits them alike.
 */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "autograd.h"
#include "timing.h"

#ifdef AG_BENCH_OPENBLAS
#include <cblas.h>
char *openblas_get_corename(void);
#endif

#define CK(call)                                                                                 \
    do {                                                                                         \
        if ((call) != AG_OK) {                                                                   \
            fprintf(stderr, "bench: %s failed: %s\n", #call, ag_last_error());                   \
            exit(1);                                                                             \
        }                                                                                        \
    } while (0)

/* ---------------------------------------------------------------------------------------- */
/* Timing and statistics: shared by every workload                                          */
/* ---------------------------------------------------------------------------------------- */

enum { MAX_THREADS = 16, MAX_REPS = 1000 };


static double median(const double *v, int n)
{
    double s[MAX_REPS];
    memcpy(s, v, (size_t)n * sizeof *v);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

typedef struct options {
    int threads[MAX_THREADS], nthreads; /* thread counts to try */
    int reps, warmup;
    long steps; /* mlp-rss */
} options;

/* What a repetition measures, and how its seconds become the reported unit:
 * value = seconds * scale, or scale / seconds when `rate` (GFLOP/s). */
typedef struct workload {
    const char *side, *name, *unit;
    double scale;
    int rate;
    void (*run)(void *ctx);            /* one timed repetition */
    void (*set_threads)(int threads);  /* applies a thread count to this side */
    void *ctx;
    int backward_part; /* also report the seconds spent in backward, as <name>_backward */
} workload;

/* Seconds spent inside ag_backward since the last reset (timed_backward adds to it): the
 * backward part of a repetition, for the scaling table. The forward's queued kernels run
 * first, outside it (ag_backward would run them itself: they are the forward's work). */
static double backward_seconds;

static void timed_backward(ag_tensor *root)
{
    CK(ag_synchronize());
    double t0 = now();
    CK(ag_backward(root, NULL, 0));
    backward_seconds += now() - t0;
}

static void ours_threads(int n) { CK(ag_set_num_threads(n)); }

/* Runs warm-up and timed repetitions of w, the thread counts interleaved within each
 * repetition, and prints one result line per thread count. */
static void print_result(const char *side, const char *name, const char *suffix, int threads,
                         const char *unit, const double *v, int reps)
{
    printf("result %s %s%s threads=%d unit=%s median=%.6g samples=", side, name, suffix, threads,
           unit, median(v, reps));
    for (int r = 0; r < reps; r++) printf("%s%.6g", r ? "," : "", v[r]);
    printf("\n");
    fflush(stdout);
}

static void measure(const workload *w, const options *o)
{
    static double samples[MAX_THREADS][MAX_REPS], backward[MAX_THREADS][MAX_REPS];
    for (int r = -o->warmup; r < o->reps; r++) {
        for (int i = 0; i < o->nthreads; i++) {
            w->set_threads(o->threads[i]);
            backward_seconds = 0;
            double t0 = now();
            w->run(w->ctx);
            double s = now() - t0;
            if (r >= 0) {
                samples[i][r] = w->rate ? w->scale / s : s * w->scale;
                backward[i][r] = backward_seconds * w->scale;
            }
        }
    }
    for (int i = 0; i < o->nthreads; i++) {
        print_result(w->side, w->name, "", o->threads[i], w->unit, samples[i], o->reps);
        if (w->backward_part)
            print_result(w->side, w->name, "_backward", o->threads[i], w->unit, backward[i],
                         o->reps);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Helpers                                                                                  */
/* ---------------------------------------------------------------------------------------- */

static void release_all(ag_tensor **t, size_t n)
{
    for (size_t i = 0; i < n; i++) ag_tensor_release(t[i]);
}

static ag_tensor *randn(ag_generator *g, int64_t d0, int64_t d1, int requires_grad)
{
    int64_t shape[2] = {d0, d1};
    ag_tensor *t;
    CK(ag_randn(&t, g, AG_FLOAT32, shape, d1 ? 2 : 1));
    if (requires_grad) CK(ag_tensor_set_requires_grad(t, 1));
    return t;
}

/* torch.nn.Linear's initialisation: uniform in +-1/sqrt(fan_in). */
static ag_tensor *uniform_param(ag_generator *g, int64_t d0, int64_t d1, int64_t fan_in)
{
    int64_t shape[2] = {d0, d1};
    ag_tensor *u, *c, *p;
    double bound = 1.0 / sqrt((double)fan_in);
    CK(ag_rand(&u, g, AG_FLOAT32, shape, d1 ? 2 : 1));
    CK(ag_sub_scalar(&c, u, 0.5));
    CK(ag_mul_scalar(&p, c, 2.0 * bound));
    CK(ag_tensor_set_requires_grad(p, 1));
    ag_tensor_release(u);
    ag_tensor_release(c);
    return p;
}

/* ---------------------------------------------------------------------------------------- */
/* mlp: 784-512-256-10 ReLU, batch 128, cross-entropy, SGD lr 0.01; one step = zero_grad,  */
/* forward, loss, backward, optimizer step. A repetition is MLP_INNER steps.               */
/* ---------------------------------------------------------------------------------------- */

enum { MLP_BATCH = 128, MLP_INNER = 10 };

typedef struct mlp {
    ag_tensor *x, *y, *p[6]; /* p: w1, b1, w2, b2, w3, b3 */
    ag_optimizer *opt;
} mlp;

static void mlp_init(mlp *m, uint64_t seed)
{
    static const int64_t sizes[4] = {784, 512, 256, 10};
    ag_generator *g;
    CK(ag_generator_new(&g, seed));
    for (int l = 0; l < 3; l++) {
        m->p[2 * l] = uniform_param(g, sizes[l + 1], sizes[l], sizes[l]);
        m->p[2 * l + 1] = uniform_param(g, sizes[l + 1], 0, sizes[l]);
    }
    m->x = randn(g, MLP_BATCH, 784, 0);
    int64_t n = MLP_BATCH;
    CK(ag_randint(&m->y, g, 0, 10, AG_INT64, &n, 1));
    CK(ag_optimizer_sgd(&m->opt, m->p, 6, 0.01, 0, 0, 0, 0));
    ag_generator_release(g);
}

static void mlp_free(mlp *m)
{
    ag_optimizer_release(m->opt);
    release_all(m->p, 6);
    ag_tensor_release(m->x);
    ag_tensor_release(m->y);
}

static void mlp_step(mlp *m)
{
    ag_tensor *t[7];
    CK(ag_optimizer_zero_grad(m->opt, 1));
    CK(ag_linear(&t[0], m->x, m->p[0], m->p[1]));
    CK(ag_relu(&t[1], t[0]));
    CK(ag_linear(&t[2], t[1], m->p[2], m->p[3]));
    CK(ag_relu(&t[3], t[2]));
    CK(ag_linear(&t[4], t[3], m->p[4], m->p[5]));
    CK(ag_cross_entropy(&t[5], t[4], m->y, NULL, AG_REDUCTION_MEAN, -100, 0.0));
    timed_backward(t[5]);
    CK(ag_optimizer_step(m->opt));
    release_all(t, 6);
}

static void mlp_rep(void *ctx)
{
    for (int i = 0; i < MLP_INNER; i++) mlp_step(ctx);
}

/* ---------------------------------------------------------------------------------------- */
/* wide: 32 heads h_k = tanh(0.05 * x @ W1_k^T), o_k = h_k @ W2_k^T,                        */
/* loss = sum_k mean((o_k - t)^2); one iteration = forward + backward, grads cleared.       */
/* As written in Python, 0.05 * x @ W is (0.05 * x) @ W.                                   */
/* ---------------------------------------------------------------------------------------- */

enum { WIDE_HEADS = 32, WIDE_INNER = 4 };

typedef struct wide {
    ag_tensor *x, *t, *w1[WIDE_HEADS], *w2[WIDE_HEADS];
    /* wide-linear only (else NULL): biases, the heads then being linear layers */
    ag_tensor *b1[WIDE_HEADS], *b2[WIDE_HEADS];
} wide;

/* With biases, each head is two linear layers (wide-linear); the weights are the same. */
static void wide_init(wide *w, uint64_t seed, int biases)
{
    ag_generator *g;
    CK(ag_generator_new(&g, seed));
    w->x = randn(g, 64, 256, 0);
    w->t = randn(g, 64, 1, 0);
    for (int k = 0; k < WIDE_HEADS; k++) {
        w->w1[k] = randn(g, 256, 256, 1);
        w->w2[k] = randn(g, 1, 256, 1);
    }
    for (int k = 0; k < WIDE_HEADS; k++) {
        w->b1[k] = biases ? randn(g, 256, 0, 1) : NULL;
        w->b2[k] = biases ? randn(g, 1, 0, 1) : NULL;
    }
    ag_generator_release(g);
}

static void wide_free(wide *w)
{
    release_all(w->w1, WIDE_HEADS);
    release_all(w->w2, WIDE_HEADS);
    release_all(w->b1, WIDE_HEADS);
    release_all(w->b2, WIDE_HEADS);
    ag_tensor_release(w->x);
    ag_tensor_release(w->t);
}

/* Steps of a wide iteration, for wide-split. */
enum { W_CLEAR, W_SCALE, W_MM1, W_TANH, W_MM2, W_LOSS, W_BACKWARD, W_STEPS };
static const char *const wide_step_name[W_STEPS] = {
    "clear grads", "0.05 * x", "x' @ W1_k^T", "tanh", "h @ W2_k^T", "loss terms", "backward"};

/* With split, adds the seconds since *t0 to split[step] and restarts *t0. */
static void wide_step(double *split, double *t0, int step)
{
    if (!split) return;
    double t1 = now();
    split[step] += t1 - *t0;
    *t0 = t1;
}

/* Head k's loss term mean((o_k - t)^2), a new reference; its steps timed as wide_step says
 * (the last one, the loss terms, is left to the caller). */
static ag_tensor *wide_head(wide *w, int k, double *split, double *t0)
{
    ag_tensor *t[9] = {NULL};
    CK(ag_mul_scalar(&t[0], w->x, 0.05));
    wide_step(split, t0, W_SCALE);
    if (w->b1[k]) {
        /* wide-linear: h_k = tanh(linear(0.05 x, W1_k, b1_k)), o_k = linear(h_k, W2_k, b2_k)
         * (its steps are not timed apart) */
        CK(ag_linear(&t[2], t[0], w->w1[k], w->b1[k]));
        CK(ag_tanh(&t[3], t[2]));
        CK(ag_linear(&t[5], t[3], w->w2[k], w->b2[k]));
    } else {
        CK(ag_t(&t[1], w->w1[k]));
        CK(ag_matmul(&t[2], t[0], t[1]));
        wide_step(split, t0, W_MM1);
        CK(ag_tanh(&t[3], t[2]));
        wide_step(split, t0, W_TANH);
        CK(ag_t(&t[4], w->w2[k]));
        CK(ag_matmul(&t[5], t[3], t[4]));
        wide_step(split, t0, W_MM2);
    }
    CK(ag_sub(&t[6], t[5], w->t));
    CK(ag_pow_scalar(&t[7], t[6], 2.0));
    CK(ag_mean(&t[8], t[7]));
    release_all(t, 8);
    return t[8];
}

/* One iteration; with `split`, the seconds of each step are added to split[step]. */
static void wide_iter_timed(wide *w, double *split)
{
    double t0 = split ? now() : 0;
    for (int k = 0; k < WIDE_HEADS; k++) {
        CK(ag_tensor_set_grad(w->w1[k], NULL));
        CK(ag_tensor_set_grad(w->w2[k], NULL));
        if (w->b1[k]) {
            CK(ag_tensor_set_grad(w->b1[k], NULL));
            CK(ag_tensor_set_grad(w->b2[k], NULL));
        }
    }
    wide_step(split, &t0, W_CLEAR);
    ag_tensor *loss = NULL;
    for (int k = 0; k < WIDE_HEADS; k++) {
        ag_tensor *term = wide_head(w, k, split, &t0);
        if (loss) {
            ag_tensor *sum;
            CK(ag_add(&sum, loss, term));
            ag_tensor_release(loss);
            ag_tensor_release(term);
            loss = sum;
        } else {
            loss = term;
        }
        wide_step(split, &t0, W_LOSS);
    }
    timed_backward(loss);
    ag_tensor_release(loss);
    wide_step(split, &t0, W_BACKWARD);
}

static void wide_iter(wide *w) { wide_iter_timed(w, NULL); }

/* wide-heads: an experiment on the ceiling of `wide` at 2 threads, not part of bench/run.
 * The workload issues its forward one operation at a time from one thread; the library
 * queues the kernels and runs each head's on one thread (deferred kernels), or, with
 * deferral off, splits each operation across the team. Here the driver instead computes
 * each head's forward on one of two OpenMP threads of its own (the library at 1 thread
 * meanwhile, so every operation of a head runs on the core that made its operands), sums
 * the 32 loss terms in head order on the caller, and runs backward at 2 threads as `wide`
 * does. Prints medians (us per iteration) of 1 thread, 2 threads as `wide` runs (deferred
 * kernels), 2 threads with the heads' forward split this way, and 2 threads with deferral
 * off, alternating iteration by iteration. Same values: only the thread that computes each
 * head changes. (With deferral, "forward" is the time to queue it: its kernels run when
 * backward starts.)
 *
 * One iteration; heads_split: the heads' forward on two driver threads. Returns seconds,
 * and the forward's in *fwd. */
static double wide_heads_iter(wide *w, int threads, int heads_split, double *fwd)
{
    CK(ag_set_num_threads(threads));
    for (int k = 0; k < WIDE_HEADS; k++) {
        CK(ag_tensor_set_grad(w->w1[k], NULL));
        CK(ag_tensor_set_grad(w->w2[k], NULL));
        if (w->b1[k]) {
            CK(ag_tensor_set_grad(w->b1[k], NULL));
            CK(ag_tensor_set_grad(w->b2[k], NULL));
        }
    }
    double t0 = now();
    ag_tensor *l[WIDE_HEADS];
    if (heads_split) {
        CK(ag_set_num_threads(1));
#pragma omp parallel num_threads(2)
        {
            int id = omp_get_thread_num(), n = omp_get_num_threads();
            for (int k = id * WIDE_HEADS / n; k < (id + 1) * WIDE_HEADS / n; k++)
                l[k] = wide_head(w, k, NULL, NULL);
        }
        CK(ag_set_num_threads(threads));
    } else {
        for (int k = 0; k < WIDE_HEADS; k++) l[k] = wide_head(w, k, NULL, NULL);
    }
    ag_tensor *loss = l[0];
    for (int k = 1; k < WIDE_HEADS; k++) {
        ag_tensor *sum;
        CK(ag_add(&sum, loss, l[k]));
        if (k > 1) ag_tensor_release(loss);
        loss = sum;
    }
    *fwd = now() - t0;
    CK(ag_backward(loss, NULL, 0));
    ag_tensor_release(loss);
    release_all(l, WIDE_HEADS);
    return now() - t0;
}

static void wide_heads(wide *w, int reps)
{
    static double it[4][MAX_REPS], fw[4][MAX_REPS];
    static const int threads[4] = {1, 2, 2, 2}, split[4] = {0, 0, 1, 0};
    for (int r = -3; r < reps; r++)
        for (int c = 0; c < 4; c++) {
            ag_set_deferral_enabled(c != 3); /* the last configuration: eager kernels */
            double f, t = wide_heads_iter(w, threads[c], split[c], &f);
            ag_set_deferral_enabled(1);
            if (r < 0) continue;
            it[c][r] = t * 1e6;
            fw[c][r] = f * 1e6;
        }
    static const char *const label[4] = {"1 thread", "2 threads (deferred)",
                                         "2 threads, heads split", "2 threads, eager"};
    printf("%-24s %10s %10s %9s   (us, medians of %d)\n", "", "iteration", "forward", "speedup",
           reps);
    double base = median(it[0], reps);
    for (int c = 0; c < 4; c++) {
        double m = median(it[c], reps);
        printf("%-24s %10.0f %10.0f %8.2fx\n", label[c], m, median(fw[c], reps), base / m);
    }
}

/* wide-split: where a wide iteration's time goes at 1 and 2 threads, step by step (us per
 * iteration, medians; the thread counts alternate iteration by iteration). Shows which steps
 * gain from a second thread (docs/performance.md). Not part of bench/run. */
static void wide_split(wide *w, int reps)
{
    static double per[2][W_STEPS + 1][MAX_REPS];
    /* Eager kernels: each step's time is then its own work (queued, it would all land in
     * backward's). */
    int deferral = ag_set_deferral_enabled(0);
    for (int r = -3; r < reps; r++) {
        for (int th = 1; th <= 2; th++) {
            double split[W_STEPS] = {0}, total = 0;
            CK(ag_set_num_threads(th));
            wide_iter_timed(w, split);
            if (r < 0) continue;
            for (int k = 0; k < W_STEPS; k++) {
                per[th - 1][k][r] = split[k] * 1e6;
                total += split[k] * 1e6;
            }
            per[th - 1][W_STEPS][r] = total;
        }
    }
    printf("%-14s %10s %10s %8s   (us per iteration, medians of %d)\n", "step", "1 thread",
           "2 threads", "speedup", reps);
    for (int k = 0; k <= W_STEPS; k++) {
        double a = median(per[0][k], reps), b = median(per[1][k], reps);
        printf("%-14s %10.0f %10.0f %7.2fx\n", k < W_STEPS ? wide_step_name[k] : "iteration", a,
               b, a / b);
    }
    ag_set_deferral_enabled(deferral);
}

static void wide_rep(void *ctx)
{
    for (int i = 0; i < WIDE_INNER; i++) wide_iter(ctx);
}

/* ---------------------------------------------------------------------------------------- */
/* scalar: 20000 triples of 0-d leaves, s = sum_i tanh(a_i * b_i + c_i) by s = s + ...,     */
/* then s.backward(). Timed: creating the leaves, forward, backward, releasing everything.  */
/* ---------------------------------------------------------------------------------------- */

enum { SCALAR_N = 20000 };

typedef struct scalar {
    float v[3 * SCALAR_N];    /* the leaves' values, drawn once */
    ag_tensor *leaf[3 * SCALAR_N];
} scalar;

static void scalar_init(scalar *s, uint64_t seed)
{
    ag_generator *g;
    ag_tensor *t;
    CK(ag_generator_new(&g, seed));
    t = randn(g, 3 * SCALAR_N, 0, 0);
    CK(ag_tensor_copy_data(s->v, sizeof s->v, t));
    ag_tensor_release(t);
    ag_generator_release(g);
}

/* Builds, differentiates and frees the graph of the first n triples; phase[0..2], when given,
 * receive the seconds spent building (forward), in backward and releasing. */
static void scalar_graph(int n, const float *v, ag_tensor **leaf, double *phase)
{
    double t0 = now();
    ag_tensor *s, *p, *q, *r, *s2;
    CK(ag_tensor_scalar(&s, 0.0, AG_FLOAT32));
    for (int i = 0; i < n; i++) {
        ag_tensor **l = &leaf[3 * i];
        /* torch.tensor(v, requires_grad=True), as torch_bench.py makes them */
        for (int j = 0; j < 3; j++)
            CK(ag_tensor_scalar_requires_grad(&l[j], v[3 * i + j], AG_FLOAT32, 1));
        CK(ag_mul(&p, l[0], l[1]));
        CK(ag_add(&q, p, l[2]));
        CK(ag_tanh(&r, q));
        CK(ag_add(&s2, s, r));
        ag_tensor_release(p);
        ag_tensor_release(q);
        ag_tensor_release(r);
        ag_tensor_release(s);
        s = s2;
    }
    double t1 = now();
    CK(ag_backward(s, NULL, 0));
    double t2 = now();
    ag_tensor_release(s);
    release_all(leaf, 3 * n);
    if (phase) {
        phase[0] = t1 - t0;
        phase[1] = t2 - t1;
        phase[2] = now() - t2;
    }
}

static void scalar_rep(void *ctx)
{
    scalar *sc = ctx;
    scalar_graph(SCALAR_N, sc->v, sc->leaf, NULL);
}

/* scalar-sweep: the same graph at several sizes, one thread, phases timed apart. Shows how
 * the cost per node grows once the graph's objects no longer fit in the caches
 * (docs/performance.md). Not part of bench/run. */
static void scalar_sweep(scalar *sc, int reps)
{
    static const int sizes[] = {500, 2000, 5000, 10000, SCALAR_N};
    CK(ag_set_num_threads(1));
    printf("%8s %10s %10s %10s %10s   (ns per node, medians of %d)\n", "triples", "forward",
           "backward", "release", "total", reps);
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        int n = sizes[k];
        double ph[4][MAX_REPS], t[3], per = 1e9 / (4.0 * n);
        scalar_graph(n, sc->v, sc->leaf, NULL); /* warm-up: fills the allocator's pools */
        for (int r = 0; r < reps; r++) {
            scalar_graph(n, sc->v, sc->leaf, t);
            for (int p = 0; p < 3; p++) ph[p][r] = t[p] * per;
            ph[3][r] = (t[0] + t[1] + t[2]) * per;
        }
        printf("%8d %10.0f %10.0f %10.0f %10.0f\n", n, median(ph[0], reps), median(ph[1], reps),
               median(ph[2], reps), median(ph[3], reps));
    }
}

/* ---------------------------------------------------------------------------------------- */
/* gemm: loss = sum(A @ B), A, B [1024, 1024] requiring grad, backward: three products.     */
/* Also, for information: the forward product alone (no grad) and OpenBLAS cblas_sgemm.    */
/* ---------------------------------------------------------------------------------------- */

enum { GEMM_N = 1024 };

typedef struct gemm {
    ag_tensor *a, *b;
    float *fa, *fb, *fc; /* the same operands for OpenBLAS */
} gemm;

static void gemm_init(gemm *g, uint64_t seed)
{
    ag_generator *gen;
    CK(ag_generator_new(&gen, seed));
    g->a = randn(gen, GEMM_N, GEMM_N, 1);
    g->b = randn(gen, GEMM_N, GEMM_N, 1);
    ag_generator_release(gen);
    size_t bytes = (size_t)GEMM_N * GEMM_N * sizeof(float);
    g->fa = aligned_alloc(64, bytes);
    g->fb = aligned_alloc(64, bytes);
    g->fc = aligned_alloc(64, bytes);
    if (!g->fa || !g->fb || !g->fc) {
        fprintf(stderr, "bench: out of memory\n");
        exit(1);
    }
    CK(ag_tensor_copy_data(g->fa, bytes, g->a));
    CK(ag_tensor_copy_data(g->fb, bytes, g->b));
}

static void gemm_free(gemm *g)
{
    ag_tensor_release(g->a);
    ag_tensor_release(g->b);
    free(g->fa);
    free(g->fb);
    free(g->fc);
}

static void gemm_rep(void *ctx)
{
    gemm *g = ctx;
    ag_tensor *p, *l;
    CK(ag_tensor_set_grad(g->a, NULL));
    CK(ag_tensor_set_grad(g->b, NULL));
    CK(ag_matmul(&p, g->a, g->b));
    CK(ag_sum(&l, p));
    CK(ag_backward(l, NULL, 0));
    ag_tensor_release(l);
    ag_tensor_release(p);
}

/* bmm: batched products [B, n, n] @ [B, n, n], forward only, repeated to about 0.2 GFLOP
 * of work per repetition: how a batch of small products uses the team (not part of bench/run;
 * no workload of docs/workloads.md has one). */
typedef struct bmm {
    ag_tensor *a, *b;
    int inner;
} bmm;

static void bmm_rep(void *ctx)
{
    bmm *m = ctx;
    for (int i = 0; i < m->inner; i++) {
        ag_tensor *p;
        CK(ag_matmul(&p, m->a, m->b));
        CK(ag_synchronize());
        ag_tensor_release(p);
    }
}

static void bmm_bench(const options *o)
{
    static const int64_t sizes[][2] = {{32, 32}, {32, 64}, {32, 96}, {32, 128}, {8, 160},
                                       {8, 256}};
    ag_generator *g;
    CK(ag_generator_new(&g, 0));
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        int64_t B = sizes[k][0], n = sizes[k][1], shape[3] = {B, n, n};
        bmm m;
        CK(ag_randn(&m.a, g, AG_FLOAT32, shape, 3));
        CK(ag_randn(&m.b, g, AG_FLOAT32, shape, 3));
        double flop = 2.0 * (double)B * n * n * n;
        m.inner = (int)(2e8 / flop) + 1;
        char name[32];
        snprintf(name, sizeof name, "bmm_%lldx%lld", (long long)B, (long long)n);
        workload w = {"ours", name, "gflops", flop * m.inner * 1e-9, 1, bmm_rep, ours_threads,
                      &m, 0};
        measure(&w, o);
        ag_tensor_release(m.a);
        ag_tensor_release(m.b);
    }
    ag_generator_release(g);
}

static void gemm_kernel_rep(void *ctx)
{
    gemm *g = ctx;
    ag_tensor *p;
    int prev = ag_set_grad_enabled(0);
    CK(ag_matmul(&p, g->a, g->b));
    CK(ag_synchronize()); /* (a queued product runs here, within the repetition) */
    ag_tensor_release(p);
    ag_set_grad_enabled(prev);
}

#ifdef AG_BENCH_OPENBLAS
static void openblas_threads(int n) { openblas_set_num_threads(n); }
static void openblas_rep(void *ctx)
{
    gemm *g = ctx;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, GEMM_N, GEMM_N, GEMM_N, 1.0f, g->fa,
                GEMM_N, g->fb, GEMM_N, 0.0f, g->fc, GEMM_N);
}
#endif

/* ---------------------------------------------------------------------------------------- */
/* layout: operations on a transposed 2048 x 2048 float32 matrix and on the result of an     */
/* elementwise op on it (laid out as the transpose, as in PyTorch), one thread. Not part of  */
/* bench/run: it shows what following the inputs' layout costs or saves (performance.md).   */
/* ---------------------------------------------------------------------------------------- */

enum { LAYOUT_N = 2048 };

static void layout_bench(int reps)
{
    static const char *const names[] = {"y = x.t() * 2", "sum(y)", "sum(y, dim 1)", "exp(y)",
                                        "softmax(y, 1)", "contiguous(x.t())",
                                        "mse(x.t(), t.t())"};
    enum { K = sizeof names / sizeof names[0] };
    static double ms[K][MAX_REPS];
    int64_t sh[2] = {LAYOUT_N, LAYOUT_N}, one = 1;
    ag_generator *g;
    ag_tensor *x, *t, *xt, *tt;
    CK(ag_set_num_threads(1));
    CK(ag_generator_new(&g, 1));
    CK(ag_randn(&x, g, AG_FLOAT32, sh, 2));
    CK(ag_randn(&t, g, AG_FLOAT32, sh, 2));
    CK(ag_t(&xt, x));
    CK(ag_t(&tt, t));
    for (int r = -1; r < reps; r++) {
        ag_tensor *out[K];
        double t0 = now(), tk[K];
        CK(ag_mul_scalar(&out[0], xt, 2.0));
        tk[0] = now();
        CK(ag_sum(&out[1], out[0]));
        tk[1] = now();
        CK(ag_sum_dims(&out[2], out[0], &one, 1, 0));
        tk[2] = now();
        CK(ag_exp(&out[3], out[0]));
        tk[3] = now();
        CK(ag_softmax(&out[4], out[0], 1));
        tk[4] = now();
        CK(ag_contiguous(&out[5], xt));
        tk[5] = now();
        CK(ag_mse_loss(&out[6], xt, tt, AG_REDUCTION_MEAN));
        tk[6] = now();
        for (int k = 0; k < K; k++) {
            if (r >= 0) ms[k][r] = (tk[k] - (k ? tk[k - 1] : t0)) * 1e3;
            ag_tensor_release(out[k]);
        }
    }
    printf("%-20s %10s   (ms, 1 thread, medians of %d)\n", "operation", "time", reps);
    for (int k = 0; k < K; k++) printf("%-20s %10.2f\n", names[k], median(ms[k], reps));
    ag_tensor_release(tt);
    ag_tensor_release(xt);
    ag_tensor_release(t);
    ag_tensor_release(x);
    ag_generator_release(g);
}

/* ---------------------------------------------------------------------------------------- */
/* mlp-rss: peak resident memory after N mlp steps (run 100 and 1000 in separate processes) */
/* ---------------------------------------------------------------------------------------- */

static double peak_rss_mb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kb = strtol(line + 6, NULL, 10);
    if (f) fclose(f);
    if (kb < 0) { /* no procfs: ru_maxrss is in kB on Linux */
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        kb = ru.ru_maxrss;
    }
    return (double)kb / 1024.0;
}

/* ---------------------------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr, "usage: bench mlp|wide|scalar|gemm [--threads 1,2] [--reps R] [--warmup W]"
                    " [--defer on|off]\n"
                    "       bench wide-linear [the options of wide]\n"
                    "       bench bmm [--threads 1,2] [--reps R]\n"
                    "       bench mlp-rss --steps N [--threads T]\n"
                    "       bench scalar-sweep [--reps R]\n"
                    "       bench wide-split [--reps R]\n"
                    "       bench wide-heads [--reps R]\n"
                    "       bench layout [--reps R]\n"
                    "       bench blas-info\n");
    exit(2);
}

static void parse(options *o, int argc, char **argv)
{
    o->nthreads = 0;
    for (int i = 2; i < argc; i++) {
        if (i + 1 >= argc) usage();
        const char *k = argv[i], *v = argv[++i];
        if (!strcmp(k, "--threads")) {
            for (char *s = (char *)v, *end; *s; s = *end ? end + 1 : end) {
                long t = strtol(s, &end, 10);
                if (end == s || t < 1 || t > 1024 || o->nthreads == MAX_THREADS) usage();
                o->threads[o->nthreads++] = (int)t;
            }
        } else if (!strcmp(k, "--reps")) {
            o->reps = atoi(v);
        } else if (!strcmp(k, "--warmup")) {
            o->warmup = atoi(v);
        } else if (!strcmp(k, "--steps")) {
            o->steps = atol(v);
        } else if (!strcmp(k, "--defer") && (!strcmp(v, "on") || !strcmp(v, "off"))) {
            ag_set_deferral_enabled(!strcmp(v, "on")); /* (on by default) */
        } else {
            usage();
        }
    }
    if (o->nthreads == 0) o->threads[o->nthreads++] = ag_get_num_threads();
    if (o->reps < 1 || o->reps > MAX_REPS || o->warmup < 0 || o->steps < 0) usage();
}

int main(int argc, char **argv)
{
    if (argc < 2) usage();
    const char *cmd = argv[1];
    options o = {.reps = 5, .warmup = 1, .steps = 100};
    parse(&o, argc, argv);
    printf("info version=%s default_threads=%d\n", ag_version_string(), ag_get_num_threads());

    if (!strcmp(cmd, "mlp")) {
        mlp m;
        mlp_init(&m, 0);
        workload w = {"ours", "mlp", "ms", 1e3 / MLP_INNER, 0, mlp_rep, ours_threads, &m, 1};
        measure(&w, &o);
        mlp_free(&m);
    } else if (!strcmp(cmd, "wide") || !strcmp(cmd, "wide-linear")) {
        wide wd;
        wide_init(&wd, 0, !strcmp(cmd, "wide-linear"));
        workload w = {"ours", cmd, "ms", 1e3 / WIDE_INNER, 0, wide_rep, ours_threads, &wd, 1};
        measure(&w, &o);
        wide_free(&wd);
    } else if (!strcmp(cmd, "scalar")) {
        static scalar sc;
        scalar_init(&sc, 0);
        workload w = {"ours", "scalar", "ns_per_node", 1e9 / (4.0 * SCALAR_N), 0, scalar_rep,
                      ours_threads, &sc, 0};
        measure(&w, &o);
    } else if (!strcmp(cmd, "bmm")) {
        bmm_bench(&o);
    } else if (!strcmp(cmd, "scalar-sweep")) {
        static scalar sc;
        scalar_init(&sc, 0);
        scalar_sweep(&sc, o.reps);
    } else if (!strcmp(cmd, "layout")) {
        layout_bench(o.reps);
    } else if (!strcmp(cmd, "wide-split")) {
        wide wd;
        wide_init(&wd, 0, 0);
        wide_split(&wd, o.reps);
        wide_free(&wd);
    } else if (!strcmp(cmd, "wide-heads")) {
        wide wd;
        wide_init(&wd, 0, 0);
        wide_heads(&wd, o.reps);
        wide_free(&wd);
    } else if (!strcmp(cmd, "gemm")) {
        gemm g;
        gemm_init(&g, 0);
        double flop = 2.0 * GEMM_N * GEMM_N * GEMM_N * 1e-9; /* GFLOP of one product */
        workload w = {"ours", "gemm", "gflops", 3 * flop, 1, gemm_rep, ours_threads, &g, 0};
        measure(&w, &o);
        workload k = {"ours", "gemm_kernel", "gflops", flop, 1, gemm_kernel_rep, ours_threads,
                      &g, 0};
        measure(&k, &o);
#ifdef AG_BENCH_OPENBLAS
        printf("info openblas_core=%s\n", openblas_get_corename());
        workload b = {"openblas", "sgemm", "gflops", flop, 1, openblas_rep, openblas_threads, &g,
                      0};
        measure(&b, &o);
#else
        printf("info openblas=missing\n");
#endif
        gemm_free(&g);
    } else if (!strcmp(cmd, "blas-info")) {
#ifdef AG_BENCH_OPENBLAS
        printf("info openblas_core=%s\n", openblas_get_corename());
#else
        printf("info openblas=missing\n");
#endif
    } else if (!strcmp(cmd, "mlp-rss")) {
        mlp m;
        ours_threads(o.threads[0]);
        mlp_init(&m, 0);
        for (long i = 0; i < o.steps; i++) mlp_step(&m);
        mlp_free(&m);
        printf("rss mlp steps=%ld threads=%d peak_rss_mb=%.1f\n", o.steps, o.threads[0],
               peak_rss_mb());
    } else {
        usage();
    }
    return 0;
}
