/*
 * test_defer.c: deferred kernels (engine/defer.c) change nothing a program can see but the
 * time: big ops queue their kernels and small ones on queued operands follow, while a scalar
 * op, one thread or deferral turned off compute at once; values and gradients of a multi-head
 * graph, of products or of linear layers with biases, are bitwise those of eager execution
 * at 2 and 3 threads; reads, in-place changes of an operand or of a result, reads from
 * another thread and backward all run the queue first; results released before their kernel
 * ran are freed when it has; the queue runs by itself before it holds much memory; two
 * threads queue at once; a queued product or linear layer whose packing buffers cannot be
 * allocated when it runs uses the memory reserved with it (an allocation failure when it is
 * queued makes it run eagerly instead); and releasing a tensor a queued kernel reads runs its
 * hooks' free_userdata at once, as without deferral.
 * White-box: it reads whether a result's storage is still pending.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "defer.h"
#include "harness.h"
#include "tensor.h"

/* Whether a kernel that writes t's storage is still queued or running. */
static bool pending(const ag_tensor *h)
{
    const tensor *t = (const tensor *)h;
    return (atomic_load(&t->st->pend) & PEND_WRITER) != 0;
}

static ag_tensor *randn(ag_generator *g, int64_t r, int64_t c, bool grad)
{
    int64_t shape[2] = {r, c};
    ag_tensor *t;
    OK(ag_randn(&t, g, AG_FLOAT32, shape, 2));
    if (grad) OK(ag_tensor_set_requires_grad(t, 1));
    return t;
}

static float *floats(const ag_tensor *t, int64_t *n)
{
    OK(ag_tensor_numel(n, t));
    float *v = malloc((size_t)*n * sizeof *v + 1);
    OK(ag_tensor_copy_data(v, (size_t)*n * sizeof *v, t));
    return v;
}

/* Big ops queue, small ones on queued operands follow them, scalar ops and reads do not. */
static void what_queues(void)
{
    ag_generator *g;
    OK(ag_generator_new(&g, 1));
    ag_tensor *x = randn(g, 128, 128, false), *y, *z, *s, *a, *b, *c;
    OK(ag_mul_scalar(&y, x, 2.0));
    CHECK(pending(y));
    OK(ag_sum(&s, y)); /* 16384 elements: queued behind y */
    CHECK(pending(s));
    OK(ag_mul_scalar(&z, s, 0.5)); /* a 0-d op on a queued operand: queued too */
    CHECK(pending(z));
    int64_t n;
    float *xv = floats(x, &n), *yv = floats(y, &n);
    CHECK(!pending(y) && !pending(s) && !pending(z));
    bool same = true;
    for (int64_t i = 0; i < n; i++) same &= yv[i] == 2 * xv[i];
    CHECK(same);
    double zs, ss;
    OK(ag_tensor_item(&zs, z));
    OK(ag_tensor_item(&ss, s));
    CHECK(zs == (double)(float)(ss * 0.5));
    /* 0-d operands that are ready: computed at once */
    OK(ag_tensor_scalar(&a, 3.0, AG_FLOAT32));
    OK(ag_mul(&b, a, a));
    CHECK(!pending(b));
    /* one thread, or deferral off: computed at once */
    OK(ag_set_num_threads(1));
    OK(ag_mul_scalar(&c, x, 3.0));
    CHECK(!pending(c));
    ag_tensor_release(c);
    OK(ag_set_num_threads(2));
    CHECK(ag_set_deferral_enabled(0) == 1 && !ag_is_deferral_enabled());
    OK(ag_mul_scalar(&c, x, 3.0));
    CHECK(!pending(c));
    ag_tensor_release(c);
    CHECK(ag_set_deferral_enabled(1) == 0 && ag_is_deferral_enabled());
    free(xv);
    free(yv);
    ag_tensor *all[] = {x, y, z, s, a, b};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) ag_tensor_release(all[i]);
    ag_generator_release(g);
}

/* A multi-head graph (wide's shape, smaller), its heads of matmul or of linear with a bias:
 * loss and the gradients of the weights (and biases), as float arrays. */
#define HEADS 6
#define PARAMS (4 * HEADS)
typedef struct run {
    float loss;
    float *grad[PARAMS];
    int64_t n[PARAMS];
    int nparams;
    bool queued; /* every head's first product (or linear layer) was still pending when it
                    returned */
} run;

static ag_tensor *bias(ag_generator *g, int64_t n)
{
    ag_tensor *t;
    OK(ag_randn(&t, g, AG_FLOAT32, &n, 1));
    OK(ag_tensor_set_requires_grad(t, 1));
    return t;
}

static run multi_head(int threads, bool defer, bool linear)
{
    OK(ag_set_num_threads(threads));
    ag_set_deferral_enabled(defer);
    ag_generator *g;
    OK(ag_generator_new(&g, 7));
    ag_tensor *x = randn(g, 64, 96, false), *t = randn(g, 64, 1, false), *w[PARAMS];
    run r = {0};
    r.nparams = linear ? 4 * HEADS : 2 * HEADS;
    for (int k = 0; k < HEADS; k++) {
        w[2 * k] = randn(g, 80, 96, true);
        w[2 * k + 1] = randn(g, 1, 80, true);
        if (linear) {
            w[2 * HEADS + 2 * k] = bias(g, 80);
            w[2 * HEADS + 2 * k + 1] = bias(g, 1);
        }
    }
    ag_tensor *loss = NULL;
    r.queued = true;
    for (int k = 0; k < HEADS; k++) {
        ag_tensor *v[9] = {NULL};
        OK(ag_mul_scalar(&v[0], x, 0.05));
        if (linear) {
            OK(ag_linear(&v[2], v[0], w[2 * k], w[2 * HEADS + 2 * k]));
            r.queued &= pending(v[2]);
            OK(ag_tanh(&v[3], v[2]));
            OK(ag_linear(&v[5], v[3], w[2 * k + 1], w[2 * HEADS + 2 * k + 1]));
        } else {
            OK(ag_t(&v[1], w[2 * k]));
            OK(ag_matmul(&v[2], v[0], v[1]));
            r.queued &= pending(v[2]);
            OK(ag_tanh(&v[3], v[2]));
            OK(ag_t(&v[4], w[2 * k + 1]));
            OK(ag_matmul(&v[5], v[3], v[4]));
        }
        OK(ag_sub(&v[6], v[5], t));
        OK(ag_pow_scalar(&v[7], v[6], 2.0));
        OK(ag_mean(&v[8], v[7]));
        for (int i = 0; i < 8; i++) ag_tensor_release(v[i]);
        if (loss) {
            ag_tensor *sum;
            OK(ag_add(&sum, loss, v[8]));
            ag_tensor_release(loss);
            ag_tensor_release(v[8]);
            loss = sum;
        } else {
            loss = v[8];
        }
    }
    OK(ag_backward(loss, NULL, 0));
    double l;
    OK(ag_tensor_item(&l, loss));
    r.loss = (float)l;
    for (int k = 0; k < r.nparams; k++) {
        ag_tensor *gr;
        OK(ag_tensor_grad(&gr, w[k]));
        r.grad[k] = floats(gr, &r.n[k]);
        ag_tensor_release(gr);
        ag_tensor_release(w[k]);
    }
    ag_tensor_release(loss);
    ag_tensor_release(x);
    ag_tensor_release(t);
    ag_generator_release(g);
    ag_set_deferral_enabled(1);
    OK(ag_set_num_threads(2));
    return r;
}

static void free_run(run *r)
{
    for (int k = 0; k < r->nparams; k++) free(r->grad[k]);
}

static void same_as_eager(void)
{
    for (int linear = 0; linear < 2; linear++) {
        run eager = multi_head(1, false, linear);
        int threads[] = {2, 3};
        for (int i = 0; i < 2; i++) {
            run d = multi_head(threads[i], true, linear);
            CHECK(d.queued);
            CHECK(memcmp(&d.loss, &eager.loss, sizeof d.loss) == 0);
            for (int k = 0; k < eager.nparams; k++)
                CHECK(d.n[k] == eager.n[k] &&
                      memcmp(d.grad[k], eager.grad[k], (size_t)d.n[k] * sizeof(float)) == 0);
            free_run(&d);
        }
        free_run(&eager);
    }
}

/* Writing a queued kernel's operand in place waits for it; so does writing its result. */
static void in_place(void)
{
    ag_generator *g;
    OK(ag_generator_new(&g, 2));
    ag_tensor *x = randn(g, 100, 100, false), *y;
    int64_t n;
    float *x0 = floats(x, &n);
    OK(ag_mul_scalar(&y, x, 2.0));
    CHECK(pending(y));
    OK(ag_add_scalar_(x, 1.0)); /* y must still be 2 x0 */
    OK(ag_mul_scalar_(y, 3.0)); /* 6 x0, with version 1 */
    float *yv = floats(y, &n), *xv = floats(x, &n);
    bool ok = true;
    for (int64_t i = 0; i < n; i++) ok &= yv[i] == (x0[i] * 2) * 3 && xv[i] == x0[i] + 1;
    CHECK(ok);
    int64_t vy = -1, vx = -1;
    OK(ag_tensor_version(&vy, y));
    OK(ag_tensor_version(&vx, x));
    CHECK(vy == 1 && vx == 1);
    free(x0);
    free(xv);
    free(yv);
    ag_tensor_release(x);
    ag_tensor_release(y);
    ag_generator_release(g);
}

/* Another thread reads a result this one queued. */
typedef struct reader {
    ag_tensor *y;
    double sum;
} reader;

static void *read_sum(void *p)
{
    reader *r = p;
    int64_t n;
    float *v = floats(r->y, &n);
    for (int64_t i = 0; i < n; i++) r->sum += v[i];
    free(v);
    return NULL;
}

static void other_thread(void)
{
    int64_t shape[2] = {64, 256};
    ag_tensor *x, *y;
    OK(ag_full(&x, AG_FLOAT32, shape, 2, 0.5));
    OK(ag_add_scalar(&y, x, 1.0));
    CHECK(pending(y));
    reader r = {y, 0};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, read_sum, &r) == 0);
    pthread_join(th, NULL);
    CHECK(r.sum == 1.5 * 64 * 256);
    ag_tensor_release(x);
    ag_tensor_release(y);
}

/* Results dropped before their kernels ran are freed once they have; the queue runs by
 * itself before it holds much (16 MiB of results). */
static void memory(void)
{
    OK(ag_synchronize());
    uint64_t base = ag_memory_in_use(), peak = base;
    int64_t shape[2] = {512, 1024}; /* 2 MiB */
    ag_tensor *x;
    OK(ag_zeros(&x, AG_FLOAT32, shape, 2));
    for (int i = 0; i < 100; i++) {
        ag_tensor *y;
        OK(ag_add_scalar(&y, x, (double)i));
        ag_tensor_release(y);
        uint64_t now = ag_memory_in_use();
        if (now > peak) peak = now;
    }
    CHECK(peak - base < ((uint64_t)40 << 20));
    ag_tensor_release(x);
    OK(ag_synchronize());
    CHECK(ag_memory_in_use() == base);
}

/* Two threads queue and read at once (TSan's view of the queue and the storages' counts). */
static void *queue_and_read(void *p)
{
    int seed = *(int *)p;
    ag_generator *g;
    OK(ag_generator_new(&g, (uint64_t)seed));
    for (int it = 0; it < 20; it++) {
        ag_tensor *a = randn(g, 64, 64, false), *b, *c, *s;
        OK(ag_matmul(&b, a, a));
        OK(ag_tanh(&c, b));
        OK(ag_sum(&s, c));
        double got, want = 0;
        OK(ag_tensor_item(&got, s));
        int64_t n;
        float *cv = floats(c, &n);
        for (int64_t i = 0; i < n; i++) want += cv[i];
        CHECK(fabs(got - want) <= 1e-3 * (1 + fabs(want)));
        free(cv);
        ag_tensor_release(a);
        ag_tensor_release(b);
        ag_tensor_release(c);
        ag_tensor_release(s);
    }
    ag_generator_release(g);
    return NULL;
}

static void two_threads(void)
{
    pthread_t th[2];
    int seeds[2] = {11, 12};
    for (int i = 0; i < 2; i++) CHECK(pthread_create(&th[i], NULL, queue_and_read, &seeds[i]) == 0);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
}

/* The product of a and b (= bt^T), or linear(a, bt, bias): both pack b's panels. */
static int product(ag_tensor **y, ag_tensor *a, ag_tensor *b, ag_tensor *bt, ag_tensor *bias_)
{
    return bias_ ? ag_linear(y, a, bt, bias_) : ag_matmul(y, a, b);
}

static void product_cannot_fail(void)
{
    /* (refusing blocks of 256 KiB and more refuses the product's packing buffer, 512 x 256
     * floats, 512 KiB, not its result, 64 x 512, 128 KiB) */
    OK(ag_set_allocator(&harness_allocator));
    ag_generator *g;
    OK(ag_generator_new(&g, 3));
    /* (b column-major, as a weight's transpose: the product packs its panels) */
    ag_tensor *a = randn(g, 64, 1024, false), *bt = randn(g, 512, 1024, false), *b, *bs, *a32;
    int64_t nb = 512;
    OK(ag_randn(&bs, g, AG_FLOAT32, &nb, 1));
    OK(ag_t(&b, bt));
    /* float64 linear: 32 rows (a result under 256 KiB), the packed weight 4 MiB */
    ag_tensor *a64, *bt64, *b64, *bs64;
    OK(ag_narrow(&a32, a, 0, 0, 32));
    OK(ag_to_dtype(&a64, a32, AG_FLOAT64));
    OK(ag_to_dtype(&bt64, bt, AG_FLOAT64));
    OK(ag_t(&b64, bt64));
    OK(ag_to_dtype(&bs64, bs, AG_FLOAT64));
    for (int v = 0; v < 3; v++) {
        /* a product, a linear layer, a float64 linear layer */
        ag_tensor *x = v == 2 ? a64 : a, *w = v == 2 ? b64 : b, *wt = v == 2 ? bt64 : bt;
        ag_tensor *want, *y, *bias_ = v == 0 ? NULL : v == 1 ? bs : bs64;
        ag_set_deferral_enabled(0);
        OK(product(&want, x, w, wt, bias_));
        ag_set_deferral_enabled(1);
        /* refused when queued (the reserve): it runs eagerly, and fails as eager execution
         * does (its packing buffer refused too): AG_ENOMEM, out untouched, nothing kept */
        long before = harness_alloc_live();
        harness_alloc_refuse_from(256u << 10);
        for (int defer = 1; defer >= 0; defer--) {
            ag_set_deferral_enabled(defer);
            y = (ag_tensor *)&before;
            CHECK(product(&y, x, w, wt, bias_) == AG_ENOMEM);
            CHECK(y == (ag_tensor *)&before);
            CHECK(harness_alloc_live() == before);
        }
        ag_set_deferral_enabled(1);
        harness_alloc_refuse_from(0);
        /* refused when it runs: it packs into the reserved memory */
        OK(product(&y, x, w, wt, bias_));
        CHECK(pending(y));
        harness_alloc_refuse_from(256u << 10);
        int64_t n, m;
        double *yv = values(y, &n), *wv = values(want, &m);
        harness_alloc_refuse_from(0);
        CHECK(n == m && memcmp(yv, wv, (size_t)n * sizeof *yv) == 0);
        free(yv);
        free(wv);
        ag_tensor_release(want);
        ag_tensor_release(y);
    }
    ag_tensor *all[] = {a, bt, b, bs, a32, a64, bt64, b64, bs64};
    for (int i = 0; i < 9; i++) ag_tensor_release(all[i]);
    ag_generator_release(g);
    OK(ag_synchronize());
    CHECK(harness_alloc_live() == 0);
    OK(ag_set_allocator(NULL));
}

/* A queued kernel keeps its operands' and result's storages, not the tensors: releasing a
 * tensor runs its hooks' free_userdata at once, as without deferral, even while a queued
 * kernel still reads its elements; and that user code may call the library, also what takes
 * locks a queued kernel's run is reached under (an optimizer step holds a parameter's lock
 * while it reads it, and reading runs the queue). */
static ag_tensor *param;
static int freed;

static int keep_grad(ag_tensor **new_grad, ag_tensor *grad, void *ud)
{
    (void)grad;
    (void)ud;
    *new_grad = NULL;
    return AG_OK;
}

static void note_freed(void *ud)
{
    (void)ud;
    ag_tensor *g = NULL;
    OK(ag_tensor_grad(&g, param)); /* takes the parameter's lock */
    ag_tensor_release(g);
    freed++;
}

static void user_code_on_release(void)
{
    int64_t shape[2] = {64, 128};
    ag_tensor *y, *z, *l;
    OK(ag_full(&param, AG_FLOAT32, shape, 2, 1.0));
    OK(ag_tensor_set_requires_grad(param, 1));
    OK(ag_sum(&l, param));
    OK(ag_backward(l, NULL, 0)); /* param.grad = 1 */
    ag_tensor_release(l);
    OK(ag_mul_scalar(&y, param, 2.0));
    CHECK(pending(y));
    uint64_t id;
    OK(ag_tensor_register_hook(&id, y, keep_grad, 0, NULL, note_freed));
    int grad = ag_set_grad_enabled(0);
    OK(ag_add_scalar(&z, y, 1.0)); /* queued, reads y; no graph keeps y's node and hook */
    ag_set_grad_enabled(grad);
    ag_tensor_release(y);
    CHECK(freed == 1); /* at the release, as in eager execution */
    ag_optimizer *sgd;
    OK(ag_optimizer_sgd(&sgd, &param, 1, 0.5, 0, 0, 0, 0));
    OK(ag_optimizer_step(sgd)); /* runs the queue under param's lock: param = 0.5 after */
    int64_t n;
    float *zv = floats(z, &n), *pv = floats(param, &n);
    bool ok = true;
    for (int64_t i = 0; i < n; i++) ok &= zv[i] == 3.0f && pv[i] == 0.5f;
    CHECK(ok);
    free(zv);
    free(pv);
    ag_optimizer_release(sgd);
    ag_tensor_release(z);
    ag_tensor_release(param);
}

int main(void)
{
    OK(ag_set_num_threads(2));
    product_cannot_fail(); /* first: the allocator is installed before any object exists */
    what_queues();
    same_as_eager();
    in_place();
    other_thread();
    memory();
    two_threads();
    user_code_on_release();
    return harness_finish("test_defer");
}
