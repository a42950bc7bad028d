/*
 * test_threads.c: determinism and concurrency. The same graphs, forward and backward, give
 * bitwise-identical values and gradients with 1, 2, 3 and 4 threads, and with as many threads
 * as the machine has processors where that is more; independent graphs run
 * on several threads at once, sharing leaves whose .grad accumulates safely, and passes
 * through shared nodes start while another discovers a long graph, edges to a shared leaf's
 * AccumulateGrad node come and go on several threads at once, and a 0-d leaf's last
 * holders are graphs released on several threads at once; a hook removed
 * by one thread while another's backward runs it is freed only once it has returned; two
 * passes through one graph without retain_graph give one result and one AG_EGRAPH; hooks and
 * retain_grad may be attached to a node while a backward runs through it; threads that
 * first use one stale view at once share its one regenerated grad_fn; custom functions whose
 * backward runs a pass through each other's node, on two threads, do not deadlock; a hook
 * that needs the caller's thread, registered during a pass on several, waits for the next
 * pass; zero_grad and optimizer steps do not interleave with a backward adding into .grad;
 * a child made by fork() after the parent ran thread teams runs (on one thread), as the parent,
 * and one made before keeps the thread count.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define MAX_LEAVES 8

typedef struct result {
    double *vals[MAX_LEAVES + 1];
    int64_t n[MAX_LEAVES + 1];
} result;

static ag_tensor *randn(ag_generator *g, int64_t r, int64_t c)
{
    int64_t shape[2] = {r, c};
    ag_tensor *t;
    OK(ag_randn(&t, g, AG_FLOAT32, shape, 2));
    return t;
}

/* A 1-d leaf of n elements equal to v that requires grad. */
static ag_tensor *full_leaf(int64_t n, ag_dtype dt, double v)
{
    ag_tensor *t;
    OK(ag_full(&t, dt, &n, 1, v));
    OK(ag_tensor_set_requires_grad(t, 1));
    return t;
}

static int has(const char *op)
{
    /* Ops land family by family; a graph uses an op only once it exists. */
    int64_t s[1] = {2};
    ag_tensor *a, *r = NULL;
    ag_ones(&a, AG_FLOAT32, s, 1);
    int rc = AG_OK;
    if (!strcmp(op, "tanh")) rc = ag_tanh(&r, a);
    else if (!strcmp(op, "matmul")) rc = ag_matmul(&r, a, a);
    ag_tensor_release(a);
    ag_tensor_release(r);
    ag_clear_error();
    return rc == AG_OK;
}

/* A `wide`-like graph: 16 heads on one input, each a chain of big elementwise ops (and
 * matmul / tanh where available), summed into one loss. */
static void run_graph(result *res)
{
    ag_generator *g;
    OK(ag_generator_new(&g, 1234));
    ag_tensor *x = randn(g, 64, 256), *leaves[MAX_LEAVES], *loss = NULL;
    int use_mm = has("matmul"), use_tanh = has("tanh");
    for (int k = 0; k < MAX_LEAVES; k++) {
        leaves[k] = randn(g, use_mm ? 256 : 64, 256);
        OK(ag_tensor_set_requires_grad(leaves[k], 1));
    }
    for (int h = 0; h < 16; h++) {
        ag_tensor *w = leaves[h % MAX_LEAVES], *a, *b, *c, *d, *s;
        if (use_mm) {
            ag_tensor *wt;
            OK(ag_t(&wt, w));
            OK(ag_matmul(&a, x, wt));
            ag_tensor_release(wt);
        } else {
            OK(ag_mul(&a, x, w));
        }
        OK(ag_mul_scalar(&b, a, 0.05));
        if (use_tanh) OK(ag_tanh(&c, b));
        else OK(ag_mul(&c, b, b));
        OK(ag_mul(&d, c, c));
        OK(ag_mean(&s, d));
        if (loss) {
            ag_tensor *l2;
            OK(ag_add(&l2, loss, s));
            ag_tensor_release(loss);
            ag_tensor_release(s);
            loss = l2;
        } else {
            loss = s;
        }
        ag_tensor_release(a);
        ag_tensor_release(b);
        ag_tensor_release(c);
        ag_tensor_release(d);
    }
    OK(ag_backward(loss, NULL, 0));
    res->vals[0] = values(loss, &res->n[0]);
    for (int k = 0; k < MAX_LEAVES; k++) {
        ag_tensor *gr;
        OK(ag_tensor_grad(&gr, leaves[k]));
        res->vals[k + 1] = values(gr, &res->n[k + 1]);
        ag_tensor_release(gr);
        ag_tensor_release(leaves[k]);
    }
    ag_tensor_release(loss);
    ag_tensor_release(x);
    ag_generator_release(g);
}

static void free_result(result *r)
{
    for (int k = 0; k <= MAX_LEAVES; k++) free(r->vals[k]);
}

static void determinism(void)
{
    int saved = ag_get_num_threads();
    result base;
    OK(ag_set_num_threads(1));
    run_graph(&base);
    /* Past 4, the machine's own processor count (16 on the device machine), where the team's
     * chunking and the scheduler's interleavings differ most from 1 thread. */
    long procs = sysconf(_SC_NPROCESSORS_ONLN);
    int counts[4] = {2, 3, 4, procs > 4 && procs <= 256 ? (int)procs : 0};
    for (int c = 0; c < 4 && counts[c]; c++) {
        result r;
        OK(ag_set_num_threads(counts[c]));
        run_graph(&r);
        for (int k = 0; k <= MAX_LEAVES; k++) {
            if (r.n[k] != base.n[k] ||
                memcmp(r.vals[k], base.vals[k], (size_t)r.n[k] * sizeof(double)) != 0) {
                fprintf(stderr, "%d threads: %s %d differs from 1 thread\n", counts[c],
                        k ? "gradient of leaf" : "loss", k - 1);
                harness_failures++;
            }
        }
        free_result(&r);
    }
    free_result(&base);
    OK(ag_set_num_threads(0));
    CHECK(ag_get_num_threads() >= 1);
    OK(ag_set_num_threads(saved));
    FAILS(AG_EINVAL, ag_set_num_threads(-1));
}

/* ---- independent graphs on several threads, sharing one leaf ---- */
typedef struct worker {
    ag_tensor *shared;
    int iters;
    int failures;
} worker;

static void *work(void *p)
{
    worker *w = p;
    int64_t shape[1] = {1000};
    for (int i = 0; i < w->iters; i++) {
        ag_tensor *own, *a, *b, *s;
        if (ag_ones(&own, AG_FLOAT64, shape, 1) || ag_tensor_set_requires_grad(own, 1) ||
            ag_mul(&a, w->shared, own) || ag_mul_scalar(&b, a, 2.0) || ag_sum(&s, b) ||
            ag_backward(s, NULL, 0)) {
            w->failures++;
            fprintf(stderr, "worker: %s\n", ag_last_error());
            return NULL;
        }
        ag_tensor *g;
        ag_tensor_grad(&g, own);
        int64_t n;
        double *v = values(g, &n);
        if (v[0] != 2.0 * 3.0 || v[n - 1] != 2.0 * 3.0) w->failures++;
        free(v);
        ag_tensor_release(g);
        ag_tensor_release(s);
        ag_tensor_release(b);
        ag_tensor_release(a);
        ag_tensor_release(own);
    }
    return NULL;
}

static void concurrent_graphs(void)
{
    ag_tensor *shared = full_leaf(1000, AG_FLOAT64, 3.0);
    enum { NT = 4, ITERS = 200 };
    pthread_t th[NT];
    worker w[NT];
    for (int i = 0; i < NT; i++) {
        w[i] = (worker){shared, ITERS, 0};
        pthread_create(&th[i], NULL, work, &w[i]);
    }
    for (int i = 0; i < NT; i++) {
        pthread_join(th[i], NULL);
        CHECK(w[i].failures == 0);
    }
    /* every backward added 2 * 1 to each element of the shared leaf's .grad */
    ag_tensor *g;
    OK(ag_tensor_grad(&g, shared));
    int64_t n;
    double *v = values(g, &n);
    for (int64_t k = 0; k < n; k++)
        if (v[k] != 2.0 * NT * ITERS) {
            fprintf(stderr, "shared grad[%lld] = %g, expected %g\n", (long long)k, v[k],
                    2.0 * NT * ITERS);
            harness_failures++;
            break;
        }
    free(v);
    ag_tensor_release(g);
    ag_tensor_release(shared);
}

/* A thread's backward passes through a root: how many failed, or the status of one;
 * backward_many runs `passes` of them. */
typedef struct pass_job {
    ag_tensor *root;
    int failures, rc, passes;
} pass_job;

/* Backward through root `passes` times (retain_graph), counting failures. */
static void *backward_many(void *p)
{
    pass_job *s = p;
    for (int i = 0; i < s->passes; i++)
        if (ag_backward(s->root, NULL, AG_RETAIN_GRAPH)) s->failures++;
    return NULL;
}

static void shared_nodes(void)
{
    ag_tensor *x = full_leaf(64, AG_FLOAT64, 1.0), *y, *r1, *r2, *s1, *s2;
    OK(ag_mul_scalar(&y, x, 3.0)); /* shared by both graphs */
    OK(ag_mul_scalar(&r1, y, 1.0));
    OK(ag_mul_scalar(&r2, y, 2.0));
    OK(ag_sum(&s1, r1));
    OK(ag_sum(&s2, r2));
    /* Two threads run backward through graphs that share intermediate nodes. */
    pass_job a = {.root = s1, .passes = 100}, b = {.root = s2, .passes = 100};
    pthread_t t1, t2;
    pthread_create(&t1, NULL, backward_many, &a);
    pthread_create(&t2, NULL, backward_many, &b);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    CHECK(a.failures == 0 && b.failures == 0);
    ag_tensor *g;
    OK(ag_tensor_grad(&g, x));
    double *v = values(g, NULL);
    CHECK_CLOSE(v[0], 100 * 3.0 + 100 * 6.0, 0);
    free(v);
    ag_tensor_release(g);
    ag_tensor *ts[] = {s2, s1, r2, r1, y, x};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) ag_tensor_release(ts[i]);
}

/* Passes that start while another discovers a long graph alone. A pass that finds no other
 * in flight claims nodes with plain stores until its discovery ends; passes that start
 * meanwhile leave claims alone and index their nodes aside (engine.c, passes_in_flight).
 * One thread runs backward through a 2 000-node chain over a shared node y again and again,
 * so that it often discovers alone; two others run short passes through y at the same
 * time. Every pass must succeed and x.grad must sum all of them. */
static void passes_during_lone_discovery(void)
{
    ag_tensor *x = full_leaf(4, AG_FLOAT64, 1.0), *y, *c, *s_long, *r[2], *s_short[2];
    OK(ag_mul_scalar(&y, x, 2.0)); /* the node every pass walks */
    c = y;
    ag_tensor_retain(c);
    for (int i = 0; i < 2000; i++) { /* d(c)/d(y) stays 1 */
        ag_tensor *n;
        OK(ag_add_scalar(&n, c, 1.0));
        ag_tensor_release(c);
        c = n;
    }
    OK(ag_sum(&s_long, c));
    ag_tensor_release(c);
    for (int k = 0; k < 2; k++) {
        OK(ag_mul_scalar(&r[k], y, 1.0 + k));
        OK(ag_sum(&s_short[k], r[k]));
    }
    pass_job jobs[3] = {{.root = s_long, .passes = 20},
                        {.root = s_short[0], .passes = 200},
                        {.root = s_short[1], .passes = 200}};
    pthread_t th[3];
    for (int k = 0; k < 3; k++) pthread_create(&th[k], NULL, backward_many, &jobs[k]);
    for (int k = 0; k < 3; k++) {
        pthread_join(th[k], NULL);
        CHECK(jobs[k].failures == 0);
    }
    /* each pass adds 2 * (1, 1, 2) per element: the chain, then y * 1 and y * 2 */
    ag_tensor *g;
    OK(ag_tensor_grad(&g, x));
    double *v = values(g, NULL);
    CHECK_CLOSE(v[0], 2.0 * 20 + 2.0 * 200 + 4.0 * 200, 0);
    free(v);
    ag_tensor_release(g);
    ag_tensor *ts[] = {s_short[1], s_short[0], r[1], r[0], s_long, y, x};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) ag_tensor_release(ts[i]);
}

/* Every edge to a leaf's AccumulateGrad node holds the leaf (graph.h, node_retain), and the
 * node lives in the leaf's meta block. Four threads record ops on one shared leaf and drop
 * them again and again, so edges to its node come and go at once on several threads; now
 * and then a thread runs backward through its graph. Every backward must land in .grad,
 * and nothing may leak (ASan, valgrind) or race (TSan). */
typedef struct acc_job {
    ag_tensor *x;
    int iters, backwards, failures;
} acc_job;

static void *edges_come_and_go(void *p)
{
    acc_job *j = p;
    for (int i = 0; i < j->iters; i++) {
        ag_tensor *y, *s = NULL;
        if (ag_mul_scalar(&y, j->x, 2.0)) {
            j->failures++;
            continue;
        }
        if (i % 64 == 0) {
            if (ag_sum(&s, y) || ag_backward(s, NULL, 0)) j->failures++;
            else j->backwards++;
        }
        ag_tensor_release(s);
        ag_tensor_release(y);
    }
    return NULL;
}

static void edges_to_a_shared_leaf(void)
{
    ag_tensor *x = full_leaf(3, AG_FLOAT32, 1.0);
    enum { NT = 4 };
    acc_job jobs[NT];
    pthread_t th[NT];
    for (int k = 0; k < NT; k++) {
        jobs[k] = (acc_job){x, 3000, 0, 0};
        pthread_create(&th[k], NULL, edges_come_and_go, &jobs[k]);
    }
    int backwards = 0;
    for (int k = 0; k < NT; k++) {
        pthread_join(th[k], NULL);
        CHECK(jobs[k].failures == 0);
        backwards += jobs[k].backwards;
    }
    ag_tensor *g;
    OK(ag_tensor_grad(&g, x));
    double *v = values(g, NULL);
    CHECK_CLOSE(v[2], 2.0 * backwards, 0);
    free(v);
    ag_tensor_release(g);
    ag_tensor_release(x);
}

/* A 0-d leaf whose last holders are graphs on other threads: the program drops its handle
 * while four threads each hold a graph over it, then the threads run backward through their
 * graphs and release them at once. The thread whose release is last frees the leaf's block,
 * with its .grad (made in the block) and its hook; free_userdata runs once (ASan and
 * valgrind see a block freed twice or never, TSan a race between the releases). */
typedef struct last_job {
    ag_tensor *y;
    pthread_barrier_t *go;
    int failures;
} last_job;

static atomic_int leaf_hook_freed;
static void leaf_hook_free(void *p)
{
    (void)p;
    atomic_fetch_add(&leaf_hook_freed, 1);
}
static int leaf_hook(ag_tensor **new_grad, ag_tensor *grad, void *p)
{
    (void)new_grad, (void)grad, (void)p;
    return AG_OK;
}

static void *release_last(void *p)
{
    last_job *j = p;
    ag_tensor *s;
    pthread_barrier_wait(j->go);
    if (ag_sum(&s, j->y) || ag_backward(s, NULL, 0)) j->failures++;
    else ag_tensor_release(s);
    ag_tensor_release(j->y);
    return NULL;
}

static void leaf_released_last_by_graphs(void)
{
    enum { NT = 4, ROUNDS = 50 };
    for (int r = 0; r < ROUNDS; r++) {
        ag_tensor *x;
        uint64_t h;
        OK(ag_tensor_scalar_requires_grad(&x, 1.5, r % 2 ? AG_FLOAT64 : AG_FLOAT32, 1));
        atomic_store(&leaf_hook_freed, 0);
        OK(ag_tensor_register_hook(&h, x, leaf_hook, 0, NULL, leaf_hook_free));
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, NT);
        last_job jobs[NT];
        pthread_t th[NT];
        for (int k = 0; k < NT; k++) {
            jobs[k] = (last_job){NULL, &go, 0};
            OK(ag_mul_scalar(&jobs[k].y, x, 2.0));
        }
        ag_tensor_release(x); /* the graphs hold it now */
        CHECK(atomic_load(&leaf_hook_freed) == 0);
        for (int k = 0; k < NT; k++) pthread_create(&th[k], NULL, release_last, &jobs[k]);
        for (int k = 0; k < NT; k++) {
            pthread_join(th[k], NULL);
            CHECK(jobs[k].failures == 0);
        }
        pthread_barrier_destroy(&go);
        CHECK(atomic_load(&leaf_hook_freed) == 1);
    }
}

/* ---- a hook removed while another thread's backward runs it ---- */
/* ag_tensor_register_hook promises free_userdata "once the hook is removed and no longer
 * running": one thread registers and removes hooks on a leaf while another runs backward
 * through it. (Removal used to free the hook at once: the running backward then called
 * freed memory, or walked on from it.) */
typedef struct watched {
    atomic_int running, freed;
} watched;

static atomic_int hook_violations, hook_calls, hook_stop;

static int watched_hook(ag_tensor **new_grad, ag_tensor *grad, void *p)
{
    (void)new_grad;
    (void)grad;
    watched *w = p;
    atomic_fetch_add(&w->running, 1);
    atomic_fetch_add(&hook_calls, 1);
    if (atomic_load(&w->freed)) atomic_fetch_add(&hook_violations, 1);
    for (volatile int i = 0; i < 2000; i++) ; /* some work, so removals land mid-call */
    if (atomic_load(&w->freed)) atomic_fetch_add(&hook_violations, 1);
    atomic_fetch_sub(&w->running, 1);
    return AG_OK;
}

static void watched_free(void *p)
{
    watched *w = p;
    if (atomic_load(&w->running)) atomic_fetch_add(&hook_violations, 1);
    atomic_store(&w->freed, 1); /* the memory is kept (below), so a late call is seen, not a crash */
}

static void *backward_loop(void *p)
{
    ag_tensor *w = p, *y, *s;
    while (!atomic_load(&hook_stop)) {
        OK(ag_mul_scalar(&y, w, 2.0));
        OK(ag_sum(&s, y));
        OK(ag_backward(s, NULL, 0));
        ag_tensor_release(s);
        ag_tensor_release(y);
    }
    return NULL;
}

static void hook_removed_while_running(void)
{
    enum { ROUNDS = 400 };
    ag_tensor *w = full_leaf(4, AG_FLOAT64, 0.0);
    watched *ws = calloc(ROUNDS, sizeof *ws);
    CHECK(ws != NULL);
    if (!ws) return;
    pthread_t t;
    pthread_create(&t, NULL, backward_loop, w);
    for (int k = 0; k < ROUNDS; k++) {
        uint64_t h;
        OK(ag_tensor_register_hook(&h, w, watched_hook, 0, &ws[k], watched_free));
        for (volatile int i = 0; i < 3000; i++) ;
        OK(ag_tensor_remove_hook(w, h));
    }
    atomic_store(&hook_stop, 1);
    pthread_join(t, NULL);
    int unfreed = 0;
    for (int k = 0; k < ROUNDS; k++) unfreed += !atomic_load(&ws[k].freed);
    CHECK(atomic_load(&hook_violations) == 0);
    CHECK(unfreed == 0);
    if (atomic_load(&hook_violations) || unfreed)
        fprintf(stderr, "hooks: %d calls, %d used or freed wrongly, %d never freed\n",
                atomic_load(&hook_calls), atomic_load(&hook_violations), unfreed);
    ag_tensor_release(w);
    free(ws);
}

/* ---- two passes at once through one graph, without retain_graph ---- */
/* Both threads call backward on the same root. One pass frees the saved tensors of the nodes
 * it runs; the other must then fail with AG_EGRAPH, as PyTorch's second backward through a
 * graph does, rather than read freed tensors or free them again. A custom function whose
 * backward sleeps makes both passes reach the nodes with saved tensors together. (Before
 * nodes were locked across formula and release: crashes, double frees, wrong gradients.) */
static pthread_barrier_t pass_bar;

static int slow_forward(ag_function_ctx *ctx, ag_tensor **outs, size_t n_out,
                        ag_tensor *const *ins, size_t n_in, void *ud)
{
    (void)ctx, (void)n_out, (void)n_in, (void)ud;
    return ag_clone(&outs[0], ins[0]);
}

static int slow_backward(ag_function_ctx *ctx, ag_tensor **grad_ins, size_t n_in,
                         ag_tensor *const *grad_outs, size_t n_out, void *ud)
{
    (void)ctx, (void)n_in, (void)n_out, (void)ud;
    struct timespec pause = {0, 500000};
    nanosleep(&pause, NULL);
    return ag_clone(&grad_ins[0], grad_outs[0]);
}

static void *one_pass(void *p)
{
    pass_job *j = p;
    pthread_barrier_wait(&pass_bar);
    j->rc = ag_backward(j->root, NULL, 0);
    return NULL;
}

static void shared_graph_without_retain(void)
{
    enum { N = 4096, ITERS = 60 };
    int64_t shape[1] = {N};
    ag_tensor *w = full_leaf(N, AG_FLOAT64, 0.5), *x;
    OK(ag_full(&x, AG_FLOAT64, shape, 1, 2.0));
    pthread_barrier_init(&pass_bar, NULL, 2);
    int bad_status = 0, bad_grad = 0;
    for (int it = 0; it < ITERS; it++) {
        ag_tensor *m, *e, *c, *root;
        OK(ag_tensor_set_grad(w, NULL));
        OK(ag_mul(&m, w, x));
        OK(ag_exp(&e, m));
        OK(ag_function_apply(&c, 1, &e, 1, "Slow", slow_forward, slow_backward, 0, NULL, NULL));
        OK(ag_sum(&root, c));
        pass_job a = {.root = root, .rc = -1}, b = {.root = root, .rc = -1};
        pthread_t t1, t2;
        pthread_create(&t1, NULL, one_pass, &a);
        pthread_create(&t2, NULL, one_pass, &b);
        pthread_join(t1, NULL);
        pthread_join(t2, NULL);
        ag_clear_error();
        /* exactly one pass ran; the gradient of sum(exp(w x)) is x exp(w x) = 2e */
        if (!((a.rc == AG_OK && b.rc == AG_EGRAPH) || (a.rc == AG_EGRAPH && b.rc == AG_OK))) bad_status++;
        ag_tensor *g;
        OK(ag_tensor_grad(&g, w));
        int64_t n = 0;
        double *v = g ? values(g, &n) : NULL;
        for (int64_t i = 0; i < n; i++)
            if (fabs(v[i] - 2.0 * exp(1.0)) > 1e-12) {
                bad_grad++;
                break;
            }
        if (!v) bad_grad++;
        free(v);
        ag_tensor_release(g);
        ag_tensor *ts[] = {root, c, e, m};
        for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) ag_tensor_release(ts[i]);
    }
    pthread_barrier_destroy(&pass_bar);
    CHECK(bad_status == 0);
    CHECK(bad_grad == 0);
    if (bad_status || bad_grad)
        fprintf(stderr, "shared graph: %d of %d iterations without exactly one AG_EGRAPH, %d "
                "with a wrong gradient\n", bad_status, ITERS, bad_grad);
    ag_tensor_release(x);
    ag_tensor_release(w);
}

/* ---- hooks and retain_grad attached to a node while a backward runs through it ---- */
/* One thread runs backward (retain_graph) through a fresh non-leaf while another calls
 * retain_grad and registers a hook on it: the node's list of attached metas is published
 * while the pass reads it. Either the pass sees them or not; nothing else may happen (and
 * ThreadSanitizer checks the accesses). */
typedef struct attach_job {
    ag_tensor *y;
    int rc;
    uint64_t hook;
} attach_job;

static int noop_hook(ag_tensor **new_grad, ag_tensor *grad, void *ud)
{
    (void)new_grad, (void)grad, (void)ud;
    return AG_OK;
}

static void *attach_to(void *p)
{
    attach_job *j = p;
    pthread_barrier_wait(&pass_bar);
    j->rc = ag_tensor_retain_grad(j->y);
    if (!j->rc) j->rc = ag_tensor_register_hook(&j->hook, j->y, noop_hook, 0, NULL, NULL);
    return NULL;
}

static void attach_during_backward(void)
{
    ag_tensor *x = full_leaf(256, AG_FLOAT32, 1.0);
    pthread_barrier_init(&pass_bar, NULL, 2);
    int bad = 0;
    for (int it = 0; it < 200; it++) {
        ag_tensor *y, *root;
        OK(ag_mul_scalar(&y, x, 3.0));
        OK(ag_sum(&root, y));
        pass_job pass = {.root = root, .rc = -1};
        attach_job att = {y, -1, 0};
        pthread_t t1, t2;
        pthread_create(&t1, NULL, one_pass, &pass);
        pthread_create(&t2, NULL, attach_to, &att);
        pthread_join(t1, NULL);
        pthread_join(t2, NULL);
        if (pass.rc != AG_OK || att.rc != AG_OK) bad++;
        ag_tensor_release(root);
        ag_tensor_release(y);
    }
    pthread_barrier_destroy(&pass_bar);
    CHECK(bad == 0);
    ag_tensor *g;
    OK(ag_tensor_grad(&g, x));
    double *v = values(g, NULL);
    CHECK_CLOSE(v[0], 200 * 3.0, 0);
    free(v);
    ag_tensor_release(g);
    ag_tensor_release(x);
}

/* Threads that first use one stale view at the same time (its base changed in place behind
 * it) all get the one fresh grad_fn made under the view's lock, and their gradients add up. */
enum { VIEW_THREADS = 4, VIEW_ROUNDS = 50 };

typedef struct view_user {
    ag_tensor *v;
    pthread_barrier_t *bar;
    ag_node *fn; /* the grad_fn this thread saw */
} view_user;

static void *use_view(void *p)
{
    view_user *u = p;
    ag_tensor *y, *s;
    pthread_barrier_wait(u->bar);
    OK(ag_mul_scalar(&y, u->v, 2.0));
    OK(ag_tensor_grad_fn(&u->fn, u->v));
    OK(ag_sum(&s, y));
    /* (the passes share the nodes from x to v, which keep the scalars 1 and 3 as saved
     * values: PyTorch frees them after a pass without retain_graph too) */
    OK(ag_backward(s, NULL, AG_RETAIN_GRAPH));
    ag_tensor_release(s);
    ag_tensor_release(y);
    return NULL;
}

static void stale_view_shared(void)
{
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, VIEW_THREADS);
    for (int r = 0; r < VIEW_ROUNDS; r++) {
        ag_tensor *x = full_leaf(4, AG_FLOAT64, 1.0), *b, *v, *g;
        OK(ag_mul_scalar(&b, x, 1.0));
        OK(ag_narrow(&v, b, 0, 1, 2));
        OK(ag_mul_scalar_(b, 3.0));
        view_user u[VIEW_THREADS];
        pthread_t th[VIEW_THREADS];
        for (int i = 0; i < VIEW_THREADS; i++) {
            u[i] = (view_user){v, &bar, NULL};
            pthread_create(&th[i], NULL, use_view, &u[i]);
        }
        for (int i = 0; i < VIEW_THREADS; i++) pthread_join(th[i], NULL);
        for (int i = 1; i < VIEW_THREADS; i++) CHECK(u[i].fn == u[0].fn);
        const char *name = NULL;
        OK(ag_node_name(&name, u[0].fn));
        CHECK_STR(name, "AsStridedBackward0");
        for (int i = 0; i < VIEW_THREADS; i++) ag_node_release(u[i].fn);
        OK(ag_tensor_grad(&g, x));
        const double want = 2.0 * 3.0 * VIEW_THREADS;
        check_values("x.grad", g, (const double[]){0, want, want, 0}, 4, 0);
        ag_tensor_release(g);
        ag_tensor_release(v);
        ag_tensor_release(b);
        ag_tensor_release(x);
    }
    pthread_barrier_destroy(&bar);
}

/* ---- custom functions whose backward runs a pass through each other's node ---- */
/* Two threads each differentiate one branch; each branch's custom function, in its
 * backward, runs ag_grad through the other branch's custom node (retain_graph). When the
 * node stayed locked across the user's backward, each thread held its own node and waited
 * for the other's: a deadlock (ctest's timeout ends the test then). Each custom function
 * saves its input, so that its node has something to lock. */
static ag_tensor *cross_y[2], *cross_x;
static _Thread_local int cross_depth;
static pthread_barrier_t cross_bar;

static int cross_forward(ag_function_ctx *ctx, ag_tensor **outs, size_t n_out,
                         ag_tensor *const *ins, size_t n_in, void *ud)
{
    (void)n_out, (void)n_in, (void)ud;
    int rc = ag_tanh(&outs[0], ins[0]);
    return rc ? rc : ag_function_ctx_save(ctx, ins[0]);
}

static int cross_backward(ag_function_ctx *ctx, ag_tensor **grad_ins, size_t n_in,
                          ag_tensor *const *grad_outs, size_t n_out, void *ud)
{
    (void)n_in, (void)n_out;
    int me = (int)(intptr_t)ud;
    ag_tensor *x = NULL;
    int rc = ag_function_ctx_saved(&x, ctx, 0);
    ag_tensor_release(x);
    if (rc) return rc;
    if (!cross_depth) {
        /* both threads inside their own node's backward before either goes on */
        pthread_barrier_wait(&cross_bar);
        ag_tensor *s = NULL, *g = NULL;
        int prev = ag_set_grad_enabled(1);
        rc = ag_sum(&s, cross_y[1 - me]);
        ag_set_grad_enabled(prev);
        cross_depth++;
        if (!rc) rc = ag_grad(&g, &s, NULL, 1, &cross_x, 1, AG_RETAIN_GRAPH);
        cross_depth--;
        ag_tensor_release(g);
        ag_tensor_release(s);
        if (rc) return rc;
    }
    return ag_mul_scalar(&grad_ins[0], grad_outs[0], 1.0);
}

static void *cross_pass(void *p)
{
    pass_job *j = p;
    j->rc = ag_backward(j->root, NULL, AG_RETAIN_GRAPH);
    return NULL;
}

static void cross_reentrant_backward(void)
{
    int64_t shape[1] = {64};
    OK(ag_ones(&cross_x, AG_FLOAT64, shape, 1));
    OK(ag_tensor_set_requires_grad(cross_x, 1));
    ag_tensor *root[2];
    for (int j = 0; j < 2; j++) {
        ag_tensor *m;
        OK(ag_mul_scalar(&m, cross_x, 0.5 * (j + 1)));
        OK(ag_function_apply(&cross_y[j], 1, &m, 1, "Cross", cross_forward, cross_backward, 0,
                             (void *)(intptr_t)j, NULL));
        OK(ag_sum(&root[j], cross_y[j]));
        ag_tensor_release(m);
    }
    pthread_barrier_init(&cross_bar, NULL, 2);
    pass_job a = {.root = root[0], .rc = -1}, b = {.root = root[1], .rc = -1};
    pthread_t t1, t2;
    pthread_create(&t1, NULL, cross_pass, &a);
    pthread_create(&t2, NULL, cross_pass, &b);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    pthread_barrier_destroy(&cross_bar);
    CHECK(a.rc == AG_OK && b.rc == AG_OK);
    /* .grad holds both passes; each custom backward passes its gradient through as is, so
     * d/dx of branch k is its scale k: 0.5 + 1 */
    ag_tensor *g;
    OK(ag_tensor_grad(&g, cross_x));
    int64_t n = 0;
    double *v = values(g, &n), want = 1.5;
    CHECK(n == 64 && fabs(v[0] - want) < 1e-12 && fabs(v[63] - want) < 1e-12);
    free(v);
    ag_tensor *ts[] = {g, root[0], root[1], cross_y[0], cross_y[1], cross_x};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) ag_tensor_release(ts[i]);
}

/* ---- a caller-thread hook registered while a multi-threaded pass runs ---- */
/* A plain hook on u_j = sigmoid(t_j) registers a hook flagged AG_CALLBACK_CALLER_THREAD on
 * t_j during the pass. The pass was set to use the team before that hook existed, so it must
 * not call it (it did, on whichever thread ran branch j: a Lua state entered from another
 * thread); the next pass, which knows of it, runs on the caller's thread and calls it. */
static pthread_t ct_caller;
static atomic_int ct_calls, ct_wrong;
static ag_tensor *ct_t[8];

static int ct_hook(ag_tensor **new_grad, ag_tensor *grad, void *ud)
{
    (void)new_grad, (void)grad, (void)ud;
    atomic_fetch_add(&ct_calls, 1);
    if (!pthread_equal(pthread_self(), ct_caller)) atomic_fetch_add(&ct_wrong, 1);
    return AG_OK;
}

static int ct_register(ag_tensor **new_grad, ag_tensor *grad, void *ud)
{
    (void)new_grad, (void)grad;
    uint64_t id;
    return ag_tensor_register_hook(&id, ct_t[(intptr_t)ud], ct_hook, AG_CALLBACK_CALLER_THREAD,
                                   NULL, NULL);
}

static void caller_thread_hook_registered_mid_pass(void)
{
    ct_caller = pthread_self();
    int prev = ag_get_num_threads();
    OK(ag_set_num_threads(4));
    int64_t shape[2] = {512, 128};
    ag_tensor *x, *u[8], *acc = NULL;
    OK(ag_ones(&x, AG_FLOAT32, shape, 2));
    OK(ag_tensor_set_requires_grad(x, 1));
    for (intptr_t j = 0; j < 8; j++) {
        ag_tensor *m, *s, *r;
        uint64_t id;
        OK(ag_mul_scalar(&m, x, 0.1 * (double)(j + 1)));
        OK(ag_tanh(&ct_t[j], m));
        OK(ag_sigmoid(&u[j], ct_t[j]));
        OK(ag_tensor_register_hook(&id, u[j], ct_register, 0, (void *)j, NULL));
        OK(ag_sum(&s, u[j]));
        ag_tensor_release(m);
        if (!acc) {
            acc = s;
        } else {
            OK(ag_add(&r, acc, s));
            ag_tensor_release(acc);
            ag_tensor_release(s);
            acc = r;
        }
    }
    OK(ag_backward(acc, NULL, AG_RETAIN_GRAPH));
    CHECK(atomic_load(&ct_calls) == 0);
    OK(ag_backward(acc, NULL, 0)); /* 8 hooks from the first pass (+ 8 more this pass makes) */
    CHECK(atomic_load(&ct_calls) >= 8 && atomic_load(&ct_wrong) == 0);
    ag_tensor_release(acc);
    for (int j = 0; j < 8; j++) {
        ag_tensor_release(ct_t[j]);
        ag_tensor_release(u[j]);
    }
    ag_tensor_release(x);
    OK(ag_set_num_threads(prev));
}

/* ---- zero_grad and an optimizer step while a backward adds into .grad ---- */
/* W.grad = 5, then one thread zeroes it (ag_tensor_zero_grad) or steps SGD while another
 * runs backward of sum(W), which adds 1: .grad ends all 1 (zeroed first) or all 0 (zeroed
 * last), W all 1 - 0.1 * 5 or all 1 - 0.1 * 6. Zeroing and stepping did not take the lock a
 * backward holds while it adds into .grad, and left it, or W, part one and part the other. */
static ag_tensor *zg_w, *zg_root;
static ag_optimizer *zg_opt;
static pthread_barrier_t zg_bar;

static void *zg_backward(void *p)
{
    (void)p;
    pthread_barrier_wait(&zg_bar);
    OK(ag_backward(zg_root, NULL, AG_RETAIN_GRAPH));
    return NULL;
}

static void *zg_other(void *p)
{
    pthread_barrier_wait(&zg_bar);
    if (p) OK(ag_optimizer_step(zg_opt));
    else OK(ag_tensor_zero_grad(zg_w));
    return NULL;
}

static void grad_writes_vs_backward(void)
{
    enum { N = 1 << 20, TRIALS = 30 };
    int64_t shape[1] = {N};
    int mixed = 0;
    OK(ag_ones(&zg_w, AG_FLOAT32, shape, 1));
    OK(ag_tensor_set_requires_grad(zg_w, 1));
    OK(ag_sum(&zg_root, zg_w));
    OK(ag_optimizer_sgd(&zg_opt, &zg_w, 1, 0.1, 0, 0, 0, 0));
    for (int t = 0; t < 2 * TRIALS; t++) {
        bool step = t & 1;
        ag_tensor *five, *g;
        int prev = ag_set_grad_enabled(0);
        if (step) OK(ag_fill_(zg_w, 1.0));
        ag_set_grad_enabled(prev);
        OK(ag_full(&five, AG_FLOAT32, shape, 1, 5.0));
        OK(ag_tensor_set_grad(zg_w, five));
        ag_tensor_release(five);
        pthread_barrier_init(&zg_bar, NULL, 2);
        pthread_t a, b;
        pthread_create(&a, NULL, zg_backward, NULL);
        pthread_create(&b, NULL, zg_other, step ? (void *)1 : NULL);
        pthread_join(a, NULL);
        pthread_join(b, NULL);
        pthread_barrier_destroy(&zg_bar);
        OK(ag_tensor_grad(&g, zg_w));
        int64_t n = 0;
        double *v = values(step ? zg_w : g, &n);
        for (int64_t i = 1; i < n; i++)
            if (v[i] != v[0]) {
                mixed++;
                break;
            }
        free(v);
        ag_tensor_release(g);
    }
    CHECK(mixed == 0);
    if (mixed) fprintf(stderr, "%d of %d trials left .grad or W part old, part new\n", mixed,
                       2 * TRIALS);
    ag_optimizer_release(zg_opt);
    ag_tensor_release(zg_root);
    ag_tensor_release(zg_w);
}

/* Each thread has its own last error: a failure on one does not show on another, a thread's
 * message outlives the failures of threads that come and go (each frees its buffer when it
 * ends), and a long message is cut, not overrun. */
typedef struct err_probe {
    int64_t rows; /* the shape the thread asks ag_reshape for: its message names it */
    int status;
    char msg[600];
} err_probe;

static void *fail_reshape(void *p)
{
    err_probe *e = p;
    ag_tensor *t = NULL, *r = NULL;
    CHECK(ag_last_error()[0] == 0); /* a fresh thread has no error */
    OK(ag_zeros(&t, AG_FLOAT32, (int64_t[]){6}, 1));
    e->status = ag_reshape(&r, t, (int64_t[]){e->rows, 5}, 2);
    snprintf(e->msg, sizeof e->msg, "%s", ag_last_error());
    ag_tensor_release(t);
    return NULL;
}

static void errors_per_thread(void)
{
    ag_tensor *t = NULL, *r = NULL;
    OK(ag_zeros(&t, AG_FLOAT32, (int64_t[]){6}, 1));
    FAILS(AG_ESHAPE, ag_reshape(&r, t, (int64_t[]){7, 5}, 2));
    char mine[600];
    snprintf(mine, sizeof mine, "%s", ag_last_error());
    CHECK(strstr(mine, "[7, 5]") != NULL);
    for (int round = 0; round < 3; round++) {
        pthread_t th[4];
        err_probe e[4];
        for (int k = 0; k < 4; k++) {
            e[k].rows = 11 + k + 4 * round;
            pthread_create(&th[k], NULL, fail_reshape, &e[k]);
        }
        for (int k = 0; k < 4; k++) {
            pthread_join(th[k], NULL);
            char want[32];
            snprintf(want, sizeof want, "[%lld, 5]", (long long)e[k].rows);
            CHECK(e[k].status == AG_ESHAPE);
            CHECK(strstr(e[k].msg, want) != NULL);
        }
    }
    CHECK_STR(ag_last_error(), mine);
    /* Longer than the buffer: cut to 511 characters, NUL-terminated. */
    char big[2048];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    FAILS(AG_EINVAL, ag_set_error(AG_EINVAL, big));
    size_t n = strlen(ag_last_error());
    CHECK(n >= 400 && n < 512);
    ag_tensor_release(t);
}

/* Two independent branches of one pass fail (a NaN under anomaly mode in one, a failing hook
 * in the other, or both of a kind): the same failure is reported for every thread count, and
 * run after run. It depended on the schedule: a serial pass stopped at the first failure it
 * met, a parallel one at whichever branch a thread reached first. */
enum { FB_K = 40, FB_N = 20000 };

static int fb_hook(ag_tensor **new_grad, ag_tensor *grad, void *ud)
{
    (void)new_grad;
    (void)grad;
    char msg[64];
    snprintf(msg, sizeof msg, "hook of branch %d failed", (int)(intptr_t)ud);
    return ag_set_error(AG_EGRAPH, msg);
}

static void fb_pass(int nt, int nan_a, int nan_b, int hook_a, int hook_b, char *out, size_t cap)
{
    OK(ag_set_num_threads(nt));
    ag_set_anomaly_enabled(1);
    ag_tensor *x[FB_K], *y[FB_K], *s[FB_K], *st = NULL, *loss = NULL;
    static float d[FB_N];
    for (int b = 0; b < FB_K; b++) {
        for (int i = 0; i < FB_N; i++) d[i] = (float)((i * 37 + b * 11) % 200) / 100.0f - 1.0f;
        if ((b == 5 && nan_a) || (b == 30 && nan_b)) d[0] = NAN;
        OK(ag_tensor_from_data(&x[b], d, AG_FLOAT32, (int64_t[]){FB_N}, 1));
        OK(ag_tensor_set_requires_grad(x[b], 1));
        if (b % 3 == 0) OK(ag_tanh(&y[b], x[b]));
        else if (b % 3 == 1) OK(ag_sin(&y[b], x[b]));
        else OK(ag_exp(&y[b], x[b]));
        if ((b == 5 && hook_a) || (b == 30 && hook_b)) {
            uint64_t h;
            OK(ag_tensor_register_hook(&h, y[b], fb_hook, 0, (void *)(intptr_t)b, NULL));
        }
        OK(ag_sum(&s[b], y[b]));
    }
    OK(ag_stack(&st, s, FB_K, 0));
    OK(ag_sum(&loss, st));
    int rc = ag_backward(loss, NULL, 0);
    snprintf(out, cap, "%s %s", ag_status_name(rc), ag_last_error());
    CHECK(rc != AG_OK);
    ag_set_anomaly_enabled(0);
    for (int b = 0; b < FB_K; b++) {
        ag_tensor_release(x[b]);
        ag_tensor_release(y[b]);
        ag_tensor_release(s[b]);
    }
    ag_tensor_release(st);
    ag_tensor_release(loss);
}

static void failure_reported_whatever_the_threads(void)
{
    static const int modes[3][4] = {{1, 0, 0, 1}, {1, 1, 0, 0}, {0, 0, 1, 1}};
    for (int m = 0; m < 3; m++) {
        char first[600], got[600];
        fb_pass(1, modes[m][0], modes[m][1], modes[m][2], modes[m][3], first, sizeof first);
        const int nts[] = {2, 3, 4, 7, 2, 1};
        for (int k = 0; k < 6; k++) {
            fb_pass(nts[k], modes[m][0], modes[m][1], modes[m][2], modes[m][3], got, sizeof got);
            if (strcmp(got, first)) {
                fprintf(stderr, "failure at %d threads: \"%s\", at 1: \"%s\"\n", nts[k], got,
                        first);
                harness_failures++;
            }
        }
    }
    OK(ag_set_num_threads(0));
}

/* A child made by fork() after the parent ran thread teams runs on one thread, and so does
 * not hang: GCC's OpenMP runtime cannot start a team there (the child's first parallel op
 * used to wait forever). The child's product and gradients are those of the parent, bit for
 * bit; the parent keeps its thread count. A watchdog alarm turns a hang into a failure. */
/* A child of a process that has not run a team yet keeps the thread count. */
static void forked_before_teams(void)
{
    OK(ag_set_num_threads(3));
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) _exit(ag_get_num_threads() == 3 ? 0 : 1);
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
          WEXITSTATUS(status) == 0);
    OK(ag_set_num_threads(0));
}

static void forked_child_runs(void)
{
    OK(ag_set_num_threads(2));
    ag_generator *g;
    OK(ag_generator_new(&g, 7));
    ag_tensor *a = randn(g, 256, 256), *b = randn(g, 256, 256), *c, *loss, *ga;
    OK(ag_tensor_set_requires_grad(a, 1));
    OK(ag_matmul(&c, a, b));
    OK(ag_sum(&loss, c));
    OK(ag_backward(loss, NULL, 0)); /* the parent's teams are up now */
    OK(ag_tensor_grad(&ga, a));
    enum { N = 256 * 256 };
    static float want_c[N], want_g[N], got_c[N], got_g[N];
    OK(ag_tensor_copy_data(want_c, sizeof want_c, c));
    OK(ag_tensor_copy_data(want_g, sizeof want_g, ga));
    ag_tensor_release(c);
    ag_tensor_release(loss);
    ag_tensor_release(ga);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        alarm(60);
        int bad = ag_get_num_threads() != 1;
        bad |= ag_set_num_threads(0) != AG_OK || ag_get_num_threads() != 1;
        OK(ag_tensor_set_grad(a, NULL));
        if (ag_matmul(&c, a, b) || ag_sum(&loss, c) || ag_backward(loss, NULL, 0) ||
            ag_tensor_grad(&ga, a) || ag_tensor_copy_data(got_c, sizeof got_c, c) ||
            ag_tensor_copy_data(got_g, sizeof got_g, ga))
            bad |= 2;
        else
            bad |= (memcmp(got_c, want_c, sizeof got_c) || memcmp(got_g, want_g, sizeof got_g)) << 2;
        _exit(bad);
    }
    CHECK(pid > 0);
    int status = 0;
    if (pid > 0 && waitpid(pid, &status, 0) == pid) {
        if (WIFSIGNALED(status))
            fprintf(stderr, "forked child: killed by signal %d (hung?)\n", WTERMSIG(status));
        else if (WEXITSTATUS(status))
            fprintf(stderr, "forked child: %s%s%s\n",
                    WEXITSTATUS(status) & 1 ? "not on one thread; " : "",
                    WEXITSTATUS(status) & 2 ? "an op failed; " : "",
                    WEXITSTATUS(status) & 4 ? "results differ from the parent's" : "");
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    CHECK(ag_get_num_threads() == 2); /* the parent's own setting */
    ag_tensor_release(a);
    ag_tensor_release(b);
    ag_generator_release(g);
    OK(ag_set_num_threads(0));
}

int main(void)
{
    forked_before_teams(); /* (first: nothing has run on several threads yet) */
    failure_reported_whatever_the_threads();
    errors_per_thread();
    determinism();
    concurrent_graphs();
    shared_nodes();
    passes_during_lone_discovery();
    edges_to_a_shared_leaf();
    leaf_released_last_by_graphs();
    hook_removed_while_running();
    shared_graph_without_retain();
    attach_during_backward();
    stale_view_shared();
    cross_reentrant_backward();
    caller_thread_hook_registered_mid_pass();
    grad_writes_vs_backward();
    forked_child_runs();
    return harness_finish("test_threads");
}
