/*
 * test_fuzz.c: random graphs give bitwise-identical results for any thread count. Each seed
 * makes one program: elementwise and broadcasting ops, matrix products, reductions, views
 * (transposed ones among them, read strided), in-place ops on non-leaves and through views,
 * custom functions, gradient hooks that change the gradient, retained gradients, tensors used
 * many times (so gradients meet and are summed), over tensors large enough for parallel
 * kernels and for the concurrent scheduler. The program runs at 1, 2, 3 and 4 threads,
 * differentiated by ag_backward, by ag_grad, by two passes with retain_graph (the second
 * adding into .grad in place) or to second order (ag_grad with create_graph, then backward
 * through the gradients), some seeds with a custom allocator installed; every output value,
 * .grad, ag_grad result, retained gradient and hook call count must equal the 1-thread run's
 * bit for bit. The program depends only on the seed, never on computed values.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* Square, so that a transposed operand broadcasts with the others (and reads strided); 9216
 * elements, above the scheduler's threshold for a costly node. */
enum { R = 96, C = 96, MAX_POOL = 96, MAX_LEAVES = 6, MAX_WATCH = 8, SEEDS = 32 };

/* splitmix64: the program's only source of choices. */
static uint64_t next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static int pick(uint64_t *s, int n) { return (int)(next(s) % (uint64_t)n); }

/* ---- what a run produces: every result's bytes, in order ---- */
typedef struct record {
    unsigned char *b;
    size_t n, cap;
    char what[64][48]; /* names of the first items, to say which one differs */
    size_t at[64];
    int items;
} record;

static void put(record *r, const void *p, size_t n)
{
    if (r->n + n > r->cap) {
        r->cap = 2 * (r->n + n);
        r->b = realloc(r->b, r->cap);
        if (!r->b) abort();
    }
    memcpy(r->b + r->n, p, n);
    r->n += n;
}

static void put_item(record *r, const char *what, int k, const ag_tensor *t)
{
    if (r->items < 64) {
        snprintf(r->what[r->items], sizeof r->what[0], "%s %d", what, k);
        r->at[r->items++] = r->n;
    }
    unsigned char none = t == NULL;
    put(r, &none, 1);
    if (!t) return;
    int64_t numel = 0;
    ag_dtype dt = AG_FLOAT32;
    OK(ag_tensor_numel(&numel, t));
    OK(ag_tensor_dtype(&dt, t));
    size_t bytes = (size_t)numel * (dt == AG_FLOAT64 ? 8 : 4);
    unsigned char *buf = malloc(bytes ? bytes : 1);
    if (!buf) abort();
    OK(ag_tensor_copy_data(buf, bytes, t));
    put(r, &numel, sizeof numel);
    put(r, buf, bytes);
    free(buf);
}

/* ---- a custom function: y = 0.5 * x * x, backward g * x ---- */
static int half_square_forward(ag_function_ctx *ctx, ag_tensor **outs, size_t n_out,
                               ag_tensor *const *ins, size_t n_in, void *ud)
{
    (void)n_out;
    (void)n_in;
    (void)ud;
    ag_tensor *sq;
    int rc = ag_mul(&sq, ins[0], ins[0]);
    if (rc) return rc;
    rc = ag_mul_scalar(&outs[0], sq, 0.5);
    ag_tensor_release(sq);
    return rc ? rc : ag_function_ctx_save(ctx, ins[0]);
}

static int half_square_backward(ag_function_ctx *ctx, ag_tensor **gins, size_t n_in,
                                ag_tensor *const *gouts, size_t n_out, void *ud)
{
    (void)n_in;
    (void)n_out;
    atomic_fetch_add((atomic_int *)ud, 1);
    ag_tensor *x;
    int rc = ag_function_ctx_saved(&x, ctx, 0);
    if (rc) return rc;
    rc = ag_mul(&gins[0], gouts[0], x);
    ag_tensor_release(x);
    return rc;
}

/* ---- a hook that scales the gradient it sees and counts its calls ---- */
static int scale_hook(ag_tensor **new_grad, ag_tensor *grad, void *ud)
{
    atomic_fetch_add((atomic_int *)ud, 1);
    return ag_mul_scalar(new_grad, grad, 0.75);
}

/* ---- a counting allocator (some seeds run entirely through it) ---- */
static atomic_long allocs;
static void *count_alloc(size_t n, void *ud)
{
    (void)ud;
    atomic_fetch_add(&allocs, 1);
    return malloc(n);
}
static void count_free(void *p, void *ud)
{
    (void)ud;
    free(p);
}

/* ---- the program ---- */
typedef struct pool {
    ag_tensor *t[MAX_POOL];
    int n;
} pool;

static void push(pool *p, ag_tensor *t)
{
    if (p->n == MAX_POOL) { /* (the program never gets there; keep it total anyway) */
        ag_tensor_release(t);
        return;
    }
    p->t[p->n++] = t;
}

static int is_full(const ag_tensor *t)
{
    size_t nd = 0;
    int64_t sh[2] = {0, 0};
    OK(ag_tensor_ndim(&nd, t));
    if (nd != 2) return 0;
    OK(ag_tensor_shape(sh, 2, t));
    return sh[0] == R && sh[1] == C;
}

static int requires_grad(const ag_tensor *t)
{
    int rg = 0;
    OK(ag_tensor_requires_grad(&rg, t));
    return rg;
}

/* One operation on operands drawn from the pool; its result joins the pool. */
static void step(uint64_t *s, pool *p, ag_tensor *w, atomic_int *custom_calls,
                 atomic_int *hook_calls, ag_tensor **watch, int *n_watch)
{
    ag_tensor *a = p->t[pick(s, p->n)], *b = p->t[pick(s, p->n)], *r = NULL;
    int op = pick(s, 20);
    switch (op) {
    case 0: OK(ag_add(&r, a, b)); break;
    case 1: OK(ag_sub(&r, a, b)); break;
    case 2: OK(ag_mul(&r, a, b)); break;
    case 3: OK(ag_maximum(&r, a, b)); break;
    case 4: OK(ag_tanh(&r, a)); break;
    case 5: OK(ag_sigmoid(&r, a)); break;
    case 6: OK(ag_mul_scalar(&r, a, 0.5 + pick(s, 4) * 0.5)); break;
    case 7: OK(ag_relu(&r, a)); break;
    case 8: { /* tanh(a)^2: bounded */
        ag_tensor *t;
        OK(ag_tanh(&t, a));
        OK(ag_pow_scalar(&r, t, 2.0));
        ag_tensor_release(t);
        break;
    }
    case 9:   /* a @ W^T (a full [R, C] operand), else a + b */
    case 10: {
        if (!is_full(a)) {
            OK(ag_add(&r, a, b));
            break;
        }
        ag_tensor *wt, *m;
        OK(ag_t(&wt, w));
        OK(ag_matmul(&m, a, wt));
        OK(ag_mul_scalar(&r, m, 0.05));
        ag_tensor_release(wt);
        ag_tensor_release(m);
        break;
    }
    case 11: { /* a reduction that broadcasts back: sum over rows or mean over columns */
        int64_t d = pick(s, 2);
        if (is_full(a) && d == 0) OK(ag_sum_dims(&r, a, &d, 1, 1));
        else if (is_full(a)) OK(ag_mean_dims(&r, a, &d, 1, 1));
        else OK(ag_mean(&r, a));
        break;
    }
    case 12:
        OK(ag_function_apply(&r, 1, &a, 1, "HalfSquare", half_square_forward,
                             half_square_backward, 0, custom_calls, NULL));
        break;
    case 13: { /* in place on a non-leaf: c = a + 0; c *= b (b broadcasts to c) */
        if (!is_full(a)) {
            OK(ag_mul(&r, a, b));
            break;
        }
        OK(ag_add_scalar(&r, a, 0.0));
        OK(ag_mul_(r, b));
        break;
    }
    case 14: { /* in place through a view: rows [8, 24) of a copy of a, scaled */
        if (!is_full(a)) {
            OK(ag_sigmoid(&r, a));
            break;
        }
        ag_tensor *v;
        OK(ag_clone(&r, a));
        OK(ag_narrow(&v, r, 0, 8, 16));
        OK(ag_mul_scalar_(v, 1.5));
        ag_tensor_release(v);
        break;
    }
    case 15: { /* a view's sum: a 0-d result */
        ag_tensor *v;
        if (is_full(a)) OK(ag_narrow(&v, a, 1, 32, 64));
        else OK(ag_clone(&v, a));
        OK(ag_sum(&r, v));
        ag_tensor_release(v);
        break;
    }
    case 16: /* a hook on an operand that requires grad */
        if (requires_grad(a)) {
            uint64_t h;
            OK(ag_tensor_register_hook(&h, a, scale_hook, 0, hook_calls, NULL));
        }
        OK(ag_add(&r, a, b));
        break;
    case 18: /* a transposed view: later ops read it strided, in place included */
    case 19:
        if (is_full(a)) OK(ag_t(&r, a));
        else OK(ag_relu(&r, a));
        break;
    default: /* 17: keep a non-leaf's gradient */
        OK(ag_tanh(&r, a));
        if (*n_watch < MAX_WATCH) {
            OK(ag_tensor_retain_grad(r));
            OK(ag_tensor_retain(r));
            watch[(*n_watch)++] = r;
        }
        break;
    }
    if (r) push(p, r);
}

/* Builds, differentiates and records the program of `seed`. */
static void run(uint64_t seed, record *out)
{
    uint64_t s = seed * 0x2545F4914F6CDD1Dull + 1;
    ag_dtype dt = pick(&s, 4) == 0 ? AG_FLOAT64 : AG_FLOAT32;
    /* how it is differentiated: backward; ag_grad; backward twice with retain_graph (the
     * second adds into .grad in place); ag_grad with create_graph, then backward through
     * a function of those gradients (second order) */
    enum { BACKWARD, GRAD, TWICE, SECOND_ORDER } mode = pick(&s, 4);
    ag_generator *g;
    OK(ag_generator_new(&g, seed));
    pool p = {{0}, 0};
    ag_tensor *leaves[MAX_LEAVES], *watch[MAX_WATCH], *w;
    int n_leaves = 2 + pick(&s, MAX_LEAVES - 1), n_watch = 0;
    atomic_int custom_calls = 0, hook_calls = 0;
    /* leaves of the shapes that broadcast to [R, C]: full, a row, a column, a vector, 0-d */
    for (int k = 0; k < n_leaves; k++) {
        static const int64_t shapes[5][2] = {{R, C}, {1, C}, {R, 1}, {C, 0}, {0, 0}};
        static const size_t ndims[5] = {2, 2, 2, 1, 0};
        int kind = k == 0 ? 0 : pick(&s, 5);
        OK(ag_randn(&leaves[k], g, dt, shapes[kind], ndims[kind]));
        OK(ag_tensor_set_requires_grad(leaves[k], 1));
        OK(ag_tensor_retain(leaves[k]));
        push(&p, leaves[k]);
    }
    int64_t wshape[2] = {C, C};
    OK(ag_randn(&w, g, dt, wshape, 2));
    OK(ag_tensor_set_requires_grad(w, 1));
    int steps = 12 + pick(&s, 24);
    for (int k = 0; k < steps; k++)
        step(&s, &p, w, &custom_calls, &hook_calls, watch, &n_watch);
    /* loss = sum of the means of the pool's last tensors (and of a few others) */
    ag_tensor *loss = NULL;
    for (int k = p.n - 1; k >= 0; k--) {
        if (k < p.n - 6 && pick(&s, 3)) continue;
        ag_tensor *m, *l2;
        OK(ag_mean(&m, p.t[k]));
        if (!loss) {
            loss = m;
            continue;
        }
        OK(ag_add(&l2, loss, m));
        ag_tensor_release(loss);
        ag_tensor_release(m);
        loss = l2;
    }
    ag_tensor *ins[MAX_LEAVES + 1];
    for (int k = 0; k < n_leaves; k++) ins[k] = leaves[k];
    ins[n_leaves] = w;
    if (mode == GRAD) {
        ag_tensor *grads[MAX_LEAVES + 1];
        OK(ag_grad(grads, &loss, NULL, 1, ins, (size_t)n_leaves + 1, AG_ALLOW_UNUSED));
        for (int k = 0; k <= n_leaves; k++) {
            put_item(out, "ag_grad result", k, grads[k]);
            ag_tensor_release(grads[k]);
        }
    } else {
        if (mode == BACKWARD) OK(ag_backward(loss, NULL, 0));
        if (mode == TWICE) {
            OK(ag_backward(loss, NULL, AG_RETAIN_GRAPH));
            OK(ag_backward(loss, NULL, 0));
        }
        if (mode == SECOND_ORDER) {
            /* loss2 = sum over the first-order gradients of mean(g * g) */
            ag_tensor *grads[MAX_LEAVES + 1], *loss2 = NULL;
            OK(ag_grad(grads, &loss, NULL, 1, ins, (size_t)n_leaves + 1,
                       AG_ALLOW_UNUSED | AG_CREATE_GRAPH));
            for (int k = 0; k <= n_leaves; k++) {
                if (!grads[k]) continue;
                int rg = requires_grad(grads[k]);
                ag_tensor *sq = NULL, *m = NULL, *l2 = NULL;
                if (rg) {
                    OK(ag_mul(&sq, grads[k], grads[k]));
                    OK(ag_mean(&m, sq));
                    if (loss2) {
                        OK(ag_add(&l2, loss2, m));
                        ag_tensor_release(loss2);
                        ag_tensor_release(m);
                        m = l2;
                    }
                    loss2 = m;
                }
                put_item(out, "first-order gradient", k, grads[k]);
                ag_tensor_release(sq);
                ag_tensor_release(grads[k]);
            }
            if (loss2) OK(ag_backward(loss2, NULL, 0));
            put_item(out, "second-order loss", 0, loss2);
            ag_tensor_release(loss2);
        }
        for (int k = 0; k <= n_leaves; k++) {
            ag_tensor *gr = NULL;
            OK(ag_tensor_grad(&gr, k < n_leaves ? leaves[k] : w));
            put_item(out, ".grad of leaf", k, gr);
            ag_tensor_release(gr);
        }
    }
    put_item(out, "loss", 0, loss);
    for (int k = 0; k < n_watch; k++) {
        ag_tensor *gr = NULL;
        OK(ag_tensor_grad(&gr, watch[k]));
        put_item(out, "retained gradient", k, gr);
        ag_tensor_release(gr);
        ag_tensor_release(watch[k]);
    }
    int counts[2] = {atomic_load(&custom_calls), atomic_load(&hook_calls)};
    put(out, counts, sizeof counts);
    ag_tensor_release(loss);
    for (int k = 0; k < p.n; k++) ag_tensor_release(p.t[k]);
    for (int k = 0; k < n_leaves; k++) ag_tensor_release(leaves[k]);
    ag_tensor_release(w);
    ag_generator_release(g);
}

static void same_bits_for_any_thread_count(void)
{
    int saved = ag_get_num_threads();
    for (uint64_t seed = 1; seed <= SEEDS; seed++) {
        int custom_alloc = seed % 4 == 1;
        ag_allocator counting = {count_alloc, count_free, NULL};
        long allocs0 = atomic_load(&allocs);
        if (custom_alloc) OK(ag_set_allocator(&counting));
        record base = {0};
        OK(ag_set_num_threads(1));
        run(seed, &base);
        for (int nt = 2; nt <= 4; nt++) {
            record r = {0};
            OK(ag_set_num_threads(nt));
            run(seed, &r);
            if (r.n != base.n || memcmp(r.b, base.b, r.n) != 0) {
                size_t at = 0;
                while (at < r.n && at < base.n && r.b[at] == base.b[at]) at++;
                const char *what = "hook or custom-function call counts";
                for (int k = 0; k < base.items && base.at[k] <= at; k++) what = base.what[k];
                fprintf(stderr, "seed %llu: %d threads: %s differs from 1 thread (byte %zu)\n",
                        (unsigned long long)seed, nt, what, at);
                harness_failures++;
            }
            free(r.b);
        }
        free(base.b);
        if (custom_alloc) {
            OK(ag_set_allocator(NULL));
            CHECK(atomic_load(&allocs) > allocs0); /* the runs went through it */
        }
    }
    OK(ag_set_num_threads(saved));
}

int main(void)
{
    same_bits_for_any_thread_count();
    return harness_finish("fuzz");
}
