/*
 * test_autograd.c: PyTorch's autograd semantics through the ABI: .grad accumulation,
 * retain_graph, create_graph, autograd.grad, no_grad, detach, retain_grad, hooks, custom
 * functions, version-counter checks, in-place ops and views, anomaly mode.
 */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "harness.h"

static ag_tensor *leaf(double v)
{
    ag_tensor *t;
    OK(ag_tensor_scalar(&t, v, AG_FLOAT64));
    OK(ag_tensor_set_requires_grad(t, 1));
    return t;
}

static double item(const ag_tensor *t)
{
    double v = NAN;
    OK(ag_tensor_item(&v, t));
    return v;
}

static double grad_of(const ag_tensor *t)
{
    ag_tensor *g;
    OK(ag_tensor_grad(&g, t));
    if (!g) return NAN;
    double v = item(g);
    ag_tensor_release(g);
    return v;
}

/* The seed walkthrough, then .grad accumulation over a second backward. */
static void seed_and_accumulation(void)
{
    ag_tensor *x = leaf(2.0), *y, *z1, *z;
    OK(ag_mul(&y, x, x));
    OK(ag_mul_scalar(&z1, y, 2.0));
    OK(ag_add_scalar(&z, z1, 5.0));
    CHECK_CLOSE(item(z), 13.0, 0);
    CHECK_STR(grad_fn_name(y), "MulBackward0");
    CHECK_STR(grad_fn_name(z), "AddBackward0");
    OK(ag_backward(z, NULL, AG_RETAIN_GRAPH));
    CHECK_CLOSE(grad_of(x), 8.0, 0);
    OK(ag_backward(z, NULL, 0)); /* accumulates */
    CHECK_CLOSE(grad_of(x), 16.0, 0);
    /* The graph is now freed: PyTorch's error, and nothing changes. */
    FAILS(AG_EGRAPH, ag_backward(z, NULL, 0));
    CHECK(strstr(ag_last_error(), "backward through the graph a second time"));
    CHECK_CLOSE(grad_of(x), 16.0, 0);
    /* zero and drop */
    OK(ag_tensor_zero_grad(x));
    CHECK_CLOSE(grad_of(x), 0.0, 0);
    OK(ag_tensor_set_grad(x, NULL));
    ag_tensor *g;
    OK(ag_tensor_grad(&g, x));
    CHECK(g == NULL);
    ag_tensor_release(z);
    ag_tensor_release(z1);
    ag_tensor_release(y);
    ag_tensor_release(x);
}

static void backward_errors(void)
{
    int64_t s3[1] = {3};
    ag_tensor *a, *b, *c, *i;
    OK(ag_ones(&a, AG_FLOAT32, s3, 1));
    FAILS(AG_ENOGRAD, ag_backward(a, NULL, 0)); /* does not require grad */
    CHECK(strstr(ag_last_error(), "does not require grad"));
    OK(ag_tensor_set_requires_grad(a, 1));
    OK(ag_mul_scalar(&b, a, 2.0));
    FAILS(AG_ESHAPE, ag_backward(b, NULL, 0)); /* non-scalar root without a gradient */
    CHECK(strstr(ag_last_error(), "only for scalar outputs"));
    int64_t s2[1] = {2};
    OK(ag_ones(&c, AG_FLOAT32, s2, 1));
    FAILS(AG_ESHAPE, ag_backward(b, c, 0)); /* gradient of the wrong shape */
    ag_tensor_release(c);
    /* a gradient of another dtype is cast to the root's, as PyTorch's engine casts it (torch:
     * (x * 2).backward(torch.ones(3, dtype=torch.float64)) gives a float32 x.grad [2, 2, 2]) */
    ag_tensor *g;
    ag_dtype gdt = AG_FLOAT64;
    OK(ag_ones(&c, AG_FLOAT64, s3, 1));
    OK(ag_backward(b, c, AG_RETAIN_GRAPH));
    OK(ag_tensor_grad(&g, a));
    OK(ag_tensor_dtype(&gdt, g));
    CHECK(gdt == AG_FLOAT32);
    check_values("grad from a float64 root gradient", g, (const double[]){2, 2, 2}, 3, 0);
    ag_tensor_release(g);
    OK(ag_tensor_set_grad(a, NULL));
    ag_tensor_release(c);
    OK(ag_ones(&c, AG_FLOAT32, s3, 1));
    OK(ag_backward(b, c, 0)); /* an explicit gradient for a non-scalar root */
    OK(ag_tensor_grad(&g, a));
    double want[3] = {2, 2, 2};
    check_values("grad with explicit root gradient", g, want, 3, 0);
    ag_tensor_release(g);
    OK(ag_ones(&i, AG_INT64, s3, 1));
    FAILS(AG_EDTYPE, ag_tensor_set_requires_grad(i, 1));
    CHECK(strstr(ag_last_error(), "floating point"));
    FAILS(AG_ELEAF, ag_tensor_set_requires_grad(b, 0));
    FAILS(AG_EINVAL, ag_backward(NULL, NULL, 0));
    FAILS(AG_EINVAL, ag_backward(b, NULL, 1u << 7));
    ag_tensor_release(i);
    ag_tensor_release(c);
    ag_tensor_release(b);
    ag_tensor_release(a);
}

/* d/dx (x^3) = 3x^2, d2/dx2 = 6x, through ag_grad with AG_CREATE_GRAPH. */
/* The second derivative of |x / y| with y = [0, 1] (PyTorch 1.13, checked): the first is
 * [inf, -2]; in the second, abs's part is SgnBackward0's ZeroTensor, divided by y on its way
 * to x, and PyTorch's ZeroTensor over anything is a ZeroTensor: [0, 0], not NaN where y is
 * 0; the result times inf is 0 again. */
static void zerotensor_arithmetic(void)
{
    ag_tensor *x = vec(AG_FLOAT32, 2, (double[]){2.0, -3.0}), *y = vec(AG_FLOAT32, 2,
                                                                     (double[]){0.0, 1.0});
    ag_tensor *w = vec(AG_FLOAT32, 2, (double[]){1.5, 2.0}), *q, *a, *aw, *s, *g, *gs, *g2, *z;
    OK(ag_tensor_set_requires_grad(x, 1));
    OK(ag_div(&q, x, y));
    OK(ag_abs(&a, q));
    OK(ag_mul(&aw, a, w));
    OK(ag_sum(&s, aw));
    OK(ag_grad(&g, &s, NULL, 1, &x, 1, AG_CREATE_GRAPH));
    check_values("d|x/y|", g, (double[]){INFINITY, -2.0}, 2, 0);
    OK(ag_sum(&gs, g));
    OK(ag_grad(&g2, &gs, NULL, 1, &x, 1, 0));
    check_values("d2|x/y|", g2, (double[]){0.0, 0.0}, 2, 0);
    OK(ag_mul_scalar(&z, g2, INFINITY));
    check_values("d2|x/y| * inf", z, (double[]){0.0, 0.0}, 2, 0);
    ag_tensor *all[] = {x, y, w, q, a, aw, s, g, gs, g2, z};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) ag_tensor_release(all[i]);
}

static void higher_order(void)
{
    ag_tensor *x = leaf(2.0), *y, *g1, *g2;
    OK(ag_pow_scalar(&y, x, 3.0));
    OK(ag_grad(&g1, &y, NULL, 1, &x, 1, AG_CREATE_GRAPH));
    CHECK_CLOSE(item(g1), 12.0, 1e-12);
    int req;
    OK(ag_tensor_requires_grad(&req, g1));
    CHECK(req);
    OK(ag_grad(&g2, &g1, NULL, 1, &x, 1, 0));
    CHECK_CLOSE(item(g2), 12.0, 1e-12);
    /* ag_grad leaves .grad alone */
    ag_tensor *g;
    OK(ag_tensor_grad(&g, x));
    CHECK(g == NULL);
    /* backward with create_graph: x.grad carries a graph */
    ag_tensor *y2;
    OK(ag_pow_scalar(&y2, x, 3.0));
    OK(ag_backward(y2, NULL, AG_CREATE_GRAPH));
    OK(ag_tensor_grad(&g, x));
    OK(ag_tensor_requires_grad(&req, g));
    CHECK(req);
    CHECK_CLOSE(item(g), 12.0, 1e-12);
    ag_tensor_release(g);
    OK(ag_tensor_set_grad(x, NULL));
    ag_tensor_release(y2);
    ag_tensor_release(g2);
    ag_tensor_release(g1);
    ag_tensor_release(y);
    ag_tensor_release(x);
}

/* AG_FREE_GRAPH: create_graph=True, retain_graph=False. The recorded backward graph keeps
 * what it needs (x.grad can be differentiated: 6x = 12), while the original graph is freed
 * (a second backward through it fails, as in PyTorch); without AG_FREE_GRAPH it is kept. */
static void create_graph_free_graph(void)
{
    ag_tensor *x = leaf(2.0), *y, *g, *g1;
    OK(ag_pow_scalar(&y, x, 3.0));
    FAILS(AG_EINVAL, ag_backward(y, NULL, AG_CREATE_GRAPH | AG_FREE_GRAPH | AG_RETAIN_GRAPH));
    CHECK(strstr(ag_last_error(), "contradict"));
    OK(ag_backward(y, NULL, AG_CREATE_GRAPH | AG_FREE_GRAPH));
    OK(ag_tensor_grad(&g, x));
    CHECK_CLOSE(item(g), 12.0, 1e-12);
    OK(ag_tensor_set_grad(x, NULL));
    OK(ag_backward(g, NULL, 0));
    OK(ag_tensor_grad(&g1, x));
    CHECK_CLOSE(item(g1), 12.0, 1e-12);
    ag_tensor_release(g1);
    ag_tensor_release(g);
    FAILS(AG_EGRAPH, ag_backward(y, NULL, 0));
    /* the same through ag_grad */
    ag_tensor *y2, *d1, *d2;
    OK(ag_pow_scalar(&y2, x, 3.0));
    OK(ag_grad(&d1, &y2, NULL, 1, &x, 1, AG_CREATE_GRAPH | AG_FREE_GRAPH));
    OK(ag_grad(&d2, &d1, NULL, 1, &x, 1, 0));
    CHECK_CLOSE(item(d2), 12.0, 1e-12);
    FAILS(AG_EGRAPH, ag_grad(&d2, &y2, NULL, 1, &x, 1, 0));
    ag_tensor_release(d2);
    ag_tensor_release(d1);
    ag_tensor_release(y2);
    /* without it, create_graph keeps the graph */
    OK(ag_pow_scalar(&y2, x, 3.0));
    OK(ag_grad(&d1, &y2, NULL, 1, &x, 1, AG_CREATE_GRAPH));
    OK(ag_grad(&d2, &y2, NULL, 1, &x, 1, 0));
    ag_tensor_release(d2);
    ag_tensor_release(d1);
    ag_tensor_release(y2);
    OK(ag_tensor_set_grad(x, NULL));
    ag_tensor_release(y);
    ag_tensor_release(x);
}

/* A backward that fails while writing .grad writes none: here w2's .grad, set by the user to
 * an expanded tensor, cannot take an in-place addition (it failed after w1's .grad had been
 * written). Whatever the order in which the leaves come, whether w1 had no .grad (set from
 * none) or one (in-place addition), with an intermediate that retains its gradient: after
 * the failure everything is as before, and the same pass then succeeds once w2's .grad is a
 * plain tensor. (Under create_graph .grad is replaced by a sum, which an expanded .grad
 * does not prevent; test_oom fails that path at every allocation.) */
static void failed_commit_writes_nothing(void)
{
    for (int variant = 0; variant < 4; variant++) {
        bool w2_first = variant & 1, w1_has_grad = variant & 2;
        int64_t s3[1] = {3}, s1[1] = {1};
        double d[3] = {1, 2, 3};
        ag_tensor *w1, *w2, *one, *bad, *p, *q, *l, *g1 = NULL;
        OK(ag_tensor_from_f64(&w1, d, AG_FLOAT32, s3, 1));
        OK(ag_tensor_from_f64(&w2, d, AG_FLOAT32, s3, 1));
        OK(ag_tensor_set_requires_grad(w1, 1));
        OK(ag_tensor_set_requires_grad(w2, 1));
        if (w1_has_grad) {
            OK(ag_zeros(&g1, AG_FLOAT32, s3, 1));
            OK(ag_tensor_set_grad(w1, g1));
        }
        OK(ag_zeros(&one, AG_FLOAT32, s1, 1));
        OK(ag_expand(&bad, one, s3, 1)); /* stride 0 */
        OK(ag_tensor_set_grad(w2, bad));
        OK(w2_first ? ag_mul(&p, w2, w1) : ag_mul(&p, w1, w2));
        OK(ag_mul_scalar(&q, p, 2.0));
        OK(ag_tensor_retain_grad(p));
        OK(ag_sum(&l, q));
        FAILS(AG_EINVAL, ag_backward(l, NULL, AG_RETAIN_GRAPH));
        CHECK(strstr(ag_last_error(), "cannot accumulate into the .grad (shape [3]) of a leaf"));
        ag_tensor *now;
        OK(ag_tensor_grad(&now, w1));
        CHECK(now == g1); /* the same tensor, or still none */
        if (now) {
            double v[3];
            int64_t ver;
            OK(ag_tensor_copy_f64(v, 3, now));
            OK(ag_tensor_version(&ver, now));
            CHECK(v[0] == 0 && v[1] == 0 && v[2] == 0 && ver == 0);
            ag_tensor_release(now);
        }
        OK(ag_tensor_grad(&now, p));
        CHECK(now == NULL); /* the retained gradient was not written either */
        OK(ag_tensor_grad(&now, w2));
        CHECK(now == bad);
        ag_tensor_release(now);
        /* With a plain .grad on w2, the pass runs: d/dw1 = 2 w2 (+ 0). */
        OK(ag_tensor_set_grad(w2, NULL));
        OK(ag_backward(l, NULL, 0));
        OK(ag_tensor_grad(&now, w1));
        double v[3];
        OK(ag_tensor_copy_f64(v, 3, now));
        CHECK(v[0] == 2 && v[1] == 4 && v[2] == 6);
        ag_tensor_release(now);
        OK(ag_tensor_grad(&now, p));
        OK(ag_tensor_copy_f64(v, 3, now));
        CHECK(v[0] == 2 && v[1] == 2 && v[2] == 2);
        ag_tensor_release(now);
        ag_tensor *all[] = {w1, w2, one, bad, p, q, l, g1};
        for (int k = 0; k < 8; k++) ag_tensor_release(all[k]);
    }
}

static void grad_function(void)
{
    ag_tensor *a = leaf(3.0), *b = leaf(4.0), *c = leaf(5.0), *p, *r[2];
    OK(ag_mul(&p, a, b));
    ag_tensor *ins[2] = {a, b};
    OK(ag_grad(r, &p, NULL, 1, ins, 2, AG_RETAIN_GRAPH));
    CHECK_CLOSE(item(r[0]), 4.0, 0);
    CHECK_CLOSE(item(r[1]), 3.0, 0);
    ag_tensor_release(r[0]);
    ag_tensor_release(r[1]);
    ag_tensor *unused[2] = {a, c};
    FAILS(AG_ENOGRAD, ag_grad(r, &p, NULL, 1, unused, 2, AG_RETAIN_GRAPH));
    /* no inputs (a binding's empty list comes as NULL): the count is what is reported */
    FAILS(AG_EINVAL, ag_grad(r, &p, NULL, 1, NULL, 0, 0));
    CHECK_STR(ag_last_error(), "ag_grad: grad requires at least one output and one input (got 1 "
                               "and 0)");
    OK(ag_grad(r, &p, NULL, 1, unused, 2, AG_RETAIN_GRAPH | AG_ALLOW_UNUSED));
    CHECK(r[1] == NULL);
    CHECK_CLOSE(item(r[0]), 4.0, 0);
    ag_tensor_release(r[0]);
    /* a non-leaf input: the gradient flowing into it */
    ag_tensor *q;
    OK(ag_mul_scalar(&q, p, 3.0));
    OK(ag_grad(r, &q, NULL, 1, &p, 1, 0));
    CHECK_CLOSE(item(r[0]), 3.0, 0);
    ag_tensor_release(r[0]);
    ag_tensor_release(q);
    ag_tensor_release(p);
    ag_tensor_release(a);
    ag_tensor_release(b);
    ag_tensor_release(c);
}

/* An input's own grad_fn only hands over what reaches it: it does not run, so its saved
 * tensors are neither checked nor freed (torch: grad(y, y) then y.sum().backward() works). */
static void grad_input_node_does_not_run(void)
{
    ag_tensor *x = leaf(3.0), *y, *r, *g;
    OK(ag_mul(&y, x, x));
    OK(ag_grad(&r, &y, NULL, 1, &y, 1, 0)); /* no AG_RETAIN_GRAPH */
    CHECK_CLOSE(item(r), 1.0, 0);
    ag_tensor_release(r);
    OK(ag_backward(y, NULL, 0)); /* MulBackward0 still has x, twice */
    OK(ag_tensor_grad(&g, x));
    CHECK_CLOSE(item(g), 6.0, 0);
    ag_tensor_release(g);
    /* ... and a saved tensor modified in place does not fail a pass that does not need it */
    ag_tensor *a = leaf(2.0), *b, *c, *d;
    OK(ag_mul_scalar(&b, a, 1.0));
    OK(ag_mul(&c, b, b)); /* saves b */
    OK(ag_mul_scalar(&d, c, 5.0));
    OK(ag_mul_scalar_(b, 2.0));
    OK(ag_grad(&r, &d, NULL, 1, &c, 1, AG_RETAIN_GRAPH));
    CHECK_CLOSE(item(r), 5.0, 0);
    ag_tensor_release(r);
    FAILS(AG_EVERSION, ag_backward(d, NULL, 0)); /* through MulBackward0: now it is needed */
    ag_tensor_release(d);
    ag_tensor_release(c);
    ag_tensor_release(b);
    ag_tensor_release(a);
    ag_tensor_release(y);
    ag_tensor_release(x);
}

/* autograd.grad does not reach the hooks of an output none of the inputs lies behind (with
 * AG_ALLOW_UNUSED): PyTorch runs neither that output's grad_fn nor its hooks. They ran, and a
 * failing one made the call fail. */
static int count_hook(ag_tensor **new_grad, ag_tensor *grad, void *ud);
static int failing_hook(ag_tensor **new_grad, ag_tensor *grad, void *ud);

static void grad_skips_hooks_of_unreached_outputs(void)
{
    ag_tensor *x = leaf(3.0), *y, *z, *r = SENT;
    int calls = 0;
    uint64_t h;
    OK(ag_mul_scalar(&y, x, 2.0));
    OK(ag_tensor_register_hook(&h, y, count_hook, 0, &calls, NULL));
    OK(ag_tensor_register_hook(&h, x, count_hook, 0, &calls, NULL));
    OK(ag_mul_scalar(&z, y, 1.0)); /* made from y: not behind it */
    OK(ag_grad(&r, &y, NULL, 1, &z, 1, AG_ALLOW_UNUSED | AG_RETAIN_GRAPH));
    CHECK(r == NULL && calls == 0);
    r = SENT;
    OK(ag_grad(&r, &x, NULL, 1, &z, 1, AG_ALLOW_UNUSED | AG_RETAIN_GRAPH)); /* a hooked leaf */
    CHECK(r == NULL && calls == 0);
    OK(ag_tensor_register_hook(&h, y, failing_hook, 0, NULL, NULL));
    r = SENT;
    OK(ag_grad(&r, &y, NULL, 1, &z, 1, AG_ALLOW_UNUSED | AG_RETAIN_GRAPH));
    CHECK(r == NULL);
    /* ... and when the output's grad_fn runs, its hooks do (the failing one included) */
    FAILS(AG_ECALLBACK, ag_grad(&r, &y, NULL, 1, &x, 1, AG_RETAIN_GRAPH));
    CHECK(calls == 1);
    ag_tensor_release(z);
    ag_tensor_release(y);
    ag_tensor_release(x);
}

/* requires_grad set to 0 on a leaf a graph already recorded: torch's AccumulateGrad leaves
 * .grad alone (y = x * 2; x.requires_grad_(False); y.sum().backward(): x.grad is None). */
static int count_hook(ag_tensor **new_grad, ag_tensor *grad, void *ud);

static void leaf_requires_grad_cleared(void)
{
    ag_tensor *x = leaf(3.0), *y, *g = SENT;
    int calls = 0;
    uint64_t h;
    OK(ag_tensor_register_hook(&h, x, count_hook, 0, &calls, NULL));
    OK(ag_mul_scalar(&y, x, 2.0));
    OK(ag_tensor_set_requires_grad(x, 0));
    OK(ag_backward(y, NULL, AG_RETAIN_GRAPH));
    OK(ag_tensor_grad(&g, x));
    CHECK(g == NULL);
    CHECK(calls == 0); /* nor do its hooks run (torch returns before them) */
    OK(ag_tensor_set_requires_grad(x, 1)); /* the same graph accumulates again */
    OK(ag_backward(y, NULL, AG_RETAIN_GRAPH));
    OK(ag_backward(y, NULL, 0));
    OK(ag_tensor_grad(&g, x));
    CHECK(g != NULL && item(g) == 4.0);
    CHECK(calls == 2);
    ag_tensor_release(g);
    ag_tensor_release(y);
    ag_tensor_release(x);
}

/* c.mul_(b) with c not requiring grad saves only what b's gradient needs (c's old value), as
 * PyTorch does: changing b in place afterwards is no error. */
static void mul_inplace_saves_what_is_needed(void)
{
    ag_tensor *a = leaf(3.0), *b, *c, *g;
    OK(ag_mul_scalar(&b, a, 1.0));
    OK(ag_tensor_scalar(&c, 5.0, AG_FLOAT64));
    OK(ag_mul_(c, b));
    OK(ag_mul_scalar_(b, 2.0));
    OK(ag_backward(c, NULL, 0));
    OK(ag_tensor_grad(&g, a));
    CHECK_CLOSE(item(g), 5.0, 0);
    ag_tensor_release(g);
    /* ... while a c that requires grad needs b: then it is an error, as in PyTorch */
    ag_tensor *d, *e;
    OK(ag_mul_scalar(&d, a, 1.0));
    OK(ag_mul_scalar(&e, a, 1.0));
    OK(ag_mul_(d, e));
    OK(ag_mul_scalar_(e, 2.0));
    FAILS(AG_EVERSION, ag_backward(d, NULL, 0));
    ag_tensor_release(e);
    ag_tensor_release(d);
    ag_tensor_release(c);
    ag_tensor_release(b);
    ag_tensor_release(a);
}

static void no_grad_and_detach(void)
{
    ag_tensor *x = leaf(2.0), *y, *d;
    CHECK(ag_is_grad_enabled());
    int prev = ag_set_grad_enabled(0);
    CHECK(prev == 1);
    OK(ag_mul(&y, x, x));
    int req;
    OK(ag_tensor_requires_grad(&req, y));
    CHECK(!req);
    CHECK_STR(grad_fn_name(y), "");
    ag_set_grad_enabled(prev);
    ag_tensor_release(y);
    OK(ag_tensor_detach(&d, x));
    OK(ag_tensor_requires_grad(&req, d));
    CHECK(!req);
    int shares;
    OK(ag_tensor_shares_storage(&shares, d, x));
    CHECK(shares);
    ag_tensor_release(d);
    ag_tensor_release(x);
}

static void retain_grad(void)
{
    ag_tensor *x = leaf(3.0), *y, *z;
    OK(ag_mul_scalar(&y, x, 2.0));
    OK(ag_tensor_retain_grad(y));
    int r;
    OK(ag_tensor_retains_grad(&r, y));
    CHECK(r);
    OK(ag_mul(&z, y, y));
    OK(ag_backward(z, NULL, 0));
    CHECK_CLOSE(grad_of(y), 12.0, 0); /* dz/dy = 2y = 12 */
    CHECK_CLOSE(grad_of(x), 24.0, 0);
    ag_tensor_release(z);
    ag_tensor_release(y);
    ag_tensor_release(x);
}

/* A gradient a non-leaf retains under create_graph has a graph leading back to the node the
 * tensor was an output of, which keeps the tensor's metadata (for its hooks). Once every
 * handle is gone, everything goes: the retained gradient with its tensor, as PyTorch's
 * retain_grad (a weak reference) lets it. It used to stay in a cycle with that node, holding
 * the graph and its leaves (17 blocks here), through backward and ag_grad alike. A tensor
 * released before backward retains nothing. */
static int noop_hook(ag_tensor **new_grad, ag_tensor *grad, void *ud)
{
    (void)new_grad;
    (void)grad;
    (void)ud;
    return 0;
}

static void retained_under_create_graph_freed(void)
{
    for (int variant = 0; variant < 3; variant++) {
        OK(ag_set_allocator(&harness_allocator));
        long before = harness_alloc_live();
        ag_tensor *x = leaf(0.5), *y, *z, *s, *g = NULL;
        uint64_t h;
        OK(ag_mul(&y, x, x));
        OK(ag_tensor_retain_grad(y));
        OK(ag_tensor_register_hook(&h, y, noop_hook, 0, NULL, NULL)); /* keeps y's meta */
        OK(ag_tanh(&z, y));
        OK(ag_sum(&s, z));
        if (variant == 2) {
            ag_tensor_release(y); /* dropped before backward: nothing to retain */
            y = NULL;
        }
        if (variant == 1) {
            OK(ag_grad(&g, &s, NULL, 1, &x, 1, AG_CREATE_GRAPH));
        } else {
            OK(ag_backward(s, NULL, AG_CREATE_GRAPH));
            OK(ag_tensor_set_grad(x, NULL)); /* the leaf's own, documented cycle */
        }
        if (y) {
            double t = tanh(0.25), want = 1 - t * t;
            CHECK_CLOSE(grad_of(y), want, 1e-15);
        }
        ag_tensor_release(g);
        ag_tensor_release(s);
        ag_tensor_release(z);
        ag_tensor_release(y);
        ag_tensor_release(x);
        OK(ag_synchronize());
        CHECK(harness_alloc_live() == before);
        if (harness_alloc_live() != before)
            fprintf(stderr, "retained under create_graph, variant %d: %ld block(s) left\n",
                    variant, harness_alloc_live() - before);
        OK(ag_set_allocator(NULL));
    }
}

/* retain_grad called by a hook while backward runs, on a tensor whose node has not run yet:
 * the pass found no hooked node when it indexed the graph. PyTorch fills y.grad (a leaf's
 * hook runs before y's node there too), and so do we. */
static int retain_from_hook(ag_tensor **new_grad, ag_tensor *grad, void *ud)
{
    (void)new_grad;
    (void)grad;
    return ag_tensor_retain_grad((ag_tensor *)ud);
}

static void retain_grad_during_backward(void)
{
    ag_tensor *x = leaf(1.0), *a = leaf(5.0), *y, *z;
    OK(ag_mul_scalar(&y, x, 2.0));
    OK(ag_mul(&z, y, a));
    uint64_t h;
    OK(ag_tensor_register_hook(&h, a, retain_from_hook, 0, y, NULL));
    OK(ag_backward(z, NULL, 0));
    CHECK_CLOSE(grad_of(y), 5.0, 0);
    CHECK_CLOSE(grad_of(x), 10.0, 0);
    CHECK_CLOSE(grad_of(a), 2.0, 0);
    ag_tensor_release(z);
    ag_tensor_release(y);
    ag_tensor_release(a);
    ag_tensor_release(x);
}

/* ---- hooks ---- */
static int times_ten(ag_tensor **new_grad, ag_tensor *grad, void *ud)
{
    (*(int *)ud)++;
    return ag_mul_scalar(new_grad, grad, 10.0);
}

static int failing_hook(ag_tensor **new_grad, ag_tensor *grad, void *ud)
{
    (void)new_grad;
    (void)grad;
    (void)ud;
    return ag_set_error(AG_ECALLBACK, "the hook says no");
}

/* Fails without a message of its own (status 42, not one of the library's). */
static int silent_failing_hook(ag_tensor **new_grad, ag_tensor *grad, void *ud)
{
    (void)new_grad;
    (void)grad;
    (void)ud;
    return 42;
}

/* Returns a tensor of the wrong shape that only the library then holds. */
static int wrong_shape_hook(ag_tensor **new_grad, ag_tensor *grad, void *ud)
{
    (void)grad;
    (void)ud;
    int64_t shape[2] = {5, 7};
    return ag_zeros(new_grad, AG_FLOAT32, shape, 2);
}

static int freed_count;
static void count_free(void *ud)
{
    (void)ud;
    freed_count++;
}

/* many_hooks: each hook notes its number in a shared log. */
enum { MANY_HOOKS = 40 };
static int many_log[MANY_HOOKS], many_n;
static int note_hook(ag_tensor **new_grad, ag_tensor *grad, void *ud)
{
    (void)new_grad;
    (void)grad;
    if (many_n < MANY_HOOKS) many_log[many_n++] = (int)(intptr_t)ud;
    return AG_OK;
}

/* Runs backward through x * 3 and checks that exactly the hooks marked in `live` ran, in
 * registration order. */
static void check_hooks_run(ag_tensor *x, const bool *live, const char *what)
{
    ag_tensor *y;
    many_n = 0;
    OK(ag_mul_scalar(&y, x, 3.0));
    OK(ag_backward(y, NULL, 0));
    ag_tensor_release(y);
    int k = 0;
    bool ok = true;
    for (int i = 0; i < MANY_HOOKS; i++)
        if (live[i]) ok &= k < many_n && many_log[k++] == i;
    ok &= k == many_n;
    if (!ok) {
        fprintf(stderr, "many_hooks (%s): %d hooks ran:", what, many_n);
        for (int i = 0; i < many_n; i++) fprintf(stderr, " %d", many_log[i]);
        fprintf(stderr, "\n");
    }
    CHECK(ok);
}

/* Registration appends and removal unlinks from either end or the middle (the list keeps
 * its last hook at hand): whatever the order of removals, the hooks left run in registration
 * order, each once, and a handle removed once is unknown after. */
static void many_hooks(void)
{
    ag_tensor *x = leaf(1.0);
    uint64_t id[MANY_HOOKS];
    bool live[MANY_HOOKS];
    for (int i = 0; i < MANY_HOOKS; i++) {
        /* every third must run on the caller's thread: the count of those goes up and down */
        OK(ag_tensor_register_hook(&id[i], x, note_hook, i % 3 ? 0 : AG_CALLBACK_CALLER_THREAD,
                                   (void *)(intptr_t)i, NULL));
        live[i] = true;
    }
    check_hooks_run(x, live, "all");
    /* newest, oldest, then from the middle, then every fourth */
    static const int order[] = {39, 0, 38, 1, 20, 19, 21, 2, 37};
    for (size_t k = 0; k < sizeof order / sizeof order[0]; k++) {
        OK(ag_tensor_remove_hook(x, id[order[k]]));
        live[order[k]] = false;
        FAILS(AG_EINVAL, ag_tensor_remove_hook(x, id[order[k]]));
    }
    check_hooks_run(x, live, "some removed");
    for (int i = 3; i < MANY_HOOKS; i += 4)
        if (live[i]) {
            OK(ag_tensor_remove_hook(x, id[i]));
            live[i] = false;
        }
    check_hooks_run(x, live, "every fourth removed");
    /* all of them, then one more: it is first and last at once */
    for (int i = 0; i < MANY_HOOKS; i++)
        if (live[i]) {
            OK(ag_tensor_remove_hook(x, id[i]));
            live[i] = false;
        }
    check_hooks_run(x, live, "none left");
    OK(ag_tensor_register_hook(&id[5], x, note_hook, 0, (void *)(intptr_t)5, NULL));
    live[5] = true;
    check_hooks_run(x, live, "one registered after");
    OK(ag_tensor_remove_hook(x, id[5]));
    live[5] = false;
    check_hooks_run(x, live, "none again");
    ag_tensor_release(x);
}

static void hooks(void)
{
    ag_tensor *x = leaf(2.0), *y, *z;
    int calls = 0;
    uint64_t h;
    OK(ag_tensor_register_hook(&h, x, times_ten, 0, &calls, count_free));
    OK(ag_mul(&y, x, x));
    OK(ag_backward(y, NULL, 0));
    CHECK(calls == 1);
    CHECK_CLOSE(grad_of(x), 40.0, 0);
    OK(ag_tensor_remove_hook(x, h));
    CHECK(freed_count == 1);
    ag_tensor_release(y);
    FAILS(AG_EINVAL, ag_tensor_remove_hook(x, h));
    /* a hook on a non-leaf, and a failing hook that must leave .grad untouched */
    OK(ag_mul(&y, x, x));
    OK(ag_mul_scalar(&z, y, 1.0));
    OK(ag_tensor_register_hook(&h, y, failing_hook, 0, NULL, NULL));
    FAILS(AG_ECALLBACK, ag_backward(z, NULL, 0));
    CHECK(strstr(ag_last_error(), "the hook says no"));
    CHECK(strstr(ag_last_error(), "hook on a gradient of MulBackward0 (shape []) failed with "
                                  "status 11 (AG_ECALLBACK): the hook says no"));
    CHECK_CLOSE(grad_of(x), 40.0, 0);
    ag_tensor_release(z);
    ag_tensor_release(y);
    /* a hook on a leaf that fails without a message: the leaf's shape, no stale message from
     * an earlier failure, no dangling ": " */
    {
        ag_tensor *lf, *s;
        int64_t sh[1] = {2};
        OK(ag_ones(&lf, AG_FLOAT32, sh, 1));
        OK(ag_tensor_set_requires_grad(lf, 1));
        OK(ag_sum(&s, lf));
        OK(ag_tensor_register_hook(&h, lf, silent_failing_hook, 0, NULL, NULL));
        FAILS(AG_EINVAL, ag_tensor_remove_hook(lf, 12345)); /* leaves a message behind */
        FAILS(AG_ECALLBACK, ag_backward(s, NULL, 0));
        CHECK(strcmp(ag_last_error(), "ag_backward: hook on the gradient of a leaf (shape [2]) "
                                      "failed with status 42") == 0);
        ag_tensor_release(s);
        ag_tensor_release(lf);
    }
    /* a pass whose hook succeeds leaves the thread's last failure as it was */
    {
        ag_tensor *lf = leaf(2.0), *s;
        int n = 0;
        OK(ag_tensor_register_hook(&h, lf, times_ten, 0, &n, NULL));
        OK(ag_mul(&s, lf, lf));
        FAILS(AG_EINVAL, ag_tensor_remove_hook(lf, 12345));
        char before[512];
        snprintf(before, sizeof before, "%s", ag_last_error());
        OK(ag_backward(s, NULL, 0));
        CHECK(n == 1 && ag_last_status() == AG_EINVAL && strcmp(ag_last_error(), before) == 0);
        ag_tensor_release(s);
        ag_tensor_release(lf);
    }
    /* ag_set_error(AG_OK, ...) records no failure */
    CHECK(ag_set_error(AG_EINVAL, "x") == AG_EINVAL && ag_last_status() == AG_EINVAL);
    CHECK(ag_set_error(AG_OK, "not a failure") == AG_OK);
    CHECK(ag_last_status() == AG_OK && strcmp(ag_last_error(), "") == 0);
    /* a replacement of the wrong shape: the message names both (it read the replacement
     * after releasing it, the last reference) */
    OK(ag_mul(&y, x, x));
    OK(ag_mul_scalar(&z, y, 1.0));
    OK(ag_tensor_register_hook(&h, y, wrong_shape_hook, 0, NULL, NULL));
    FAILS(AG_ECALLBACK, ag_backward(z, NULL, 0));
    CHECK(strstr(ag_last_error(), "returned a float32 [5, 7] tensor; expected float64 []"));
    ag_tensor_release(z);
    ag_tensor_release(y);
    ag_tensor *c;
    OK(ag_tensor_scalar(&c, 1.0, AG_FLOAT32));
    FAILS(AG_ENOGRAD, ag_tensor_register_hook(&h, c, times_ten, 0, NULL, NULL));
    ag_tensor_release(c);
    ag_tensor_release(x);
    /* a leaf used once: its single gradient (which backward otherwise moves straight to
     * .grad) still goes through the hook */
    ag_tensor *w = leaf(3.0);
    int w_calls = 0;
    OK(ag_tensor_register_hook(&h, w, times_ten, 0, &w_calls, NULL));
    OK(ag_mul_scalar(&y, w, 2.0));
    OK(ag_backward(y, NULL, 0));
    CHECK(w_calls == 1);
    CHECK_CLOSE(grad_of(w), 20.0, 0);
    ag_tensor_release(y);
    ag_tensor_release(w);
}

/* A one-shot hook removes itself from inside (PyTorch: handle.remove() in the hook). It runs
 * once; the hooks registered after it still run on every pass; its userdata is freed once,
 * after it returned. (It used to stop the walk, and free itself while still running.) */
typedef struct oneshot_state {
    ag_tensor *t;
    uint64_t handle;
    int calls, running, freed, freed_while_running;
} oneshot_state;

static int oneshot_hook(ag_tensor **new_grad, ag_tensor *grad, void *ud)
{
    (void)new_grad;
    (void)grad;
    oneshot_state *s = ud;
    s->running = 1;
    s->calls++;
    int rc = ag_tensor_remove_hook(s->t, s->handle);
    s->running = 0;
    return rc;
}

static void oneshot_free(void *ud)
{
    oneshot_state *s = ud;
    s->freed++;
    s->freed_while_running += s->running;
}

static int count_hook(ag_tensor **new_grad, ag_tensor *grad, void *ud)
{
    (void)new_grad;
    (void)grad;
    (*(int *)ud)++;
    return AG_OK;
}

static void hook_removes_itself(void)
{
    ag_tensor *w = leaf(3.0), *y;
    oneshot_state s = {w, 0, 0, 0, 0, 0};
    int later = 0;
    uint64_t h2;
    OK(ag_tensor_register_hook(&s.handle, w, oneshot_hook, 0, &s, oneshot_free));
    OK(ag_tensor_register_hook(&h2, w, count_hook, 0, &later, NULL));
    for (int pass = 0; pass < 3; pass++) {
        OK(ag_mul_scalar(&y, w, 2.0));
        OK(ag_backward(y, NULL, 0));
        ag_tensor_release(y);
    }
    CHECK(s.calls == 1);
    CHECK(later == 3);
    CHECK(s.freed == 1 && s.freed_while_running == 0);
    CHECK_CLOSE(grad_of(w), 6.0, 0);
    FAILS(AG_EINVAL, ag_tensor_remove_hook(w, s.handle));
    ag_tensor_release(w);
}

/* A hook that removes itself and registers another: the new hook runs from the next pass
 * on, whether or not hooks followed the first one (it ran in the same pass when one did,
 * not when the first was last: the walk went on from the removed hook's old successor). */
typedef struct swapper {
    ag_tensor *t;
    uint64_t handle;
    int swaps, new_calls;
} swapper;

static int counted_hook(ag_tensor **new_grad, ag_tensor *grad, void *ud)
{
    (void)new_grad, (void)grad;
    (*(int *)ud)++;
    return AG_OK;
}

static int swapping_hook(ag_tensor **new_grad, ag_tensor *grad, void *ud)
{
    (void)new_grad, (void)grad;
    swapper *s = ud;
    uint64_t h;
    s->swaps++;
    int rc = ag_tensor_remove_hook(s->t, s->handle);
    return rc ? rc : ag_tensor_register_hook(&h, s->t, counted_hook, 0, &s->new_calls, NULL);
}

static void hook_added_during_backward(void)
{
    for (int followers = 0; followers < 2; followers++) {
        ag_tensor *w = leaf(1.0), *y;
        swapper s = {w, 0, 0, 0};
        int other = 0;
        uint64_t h;
        OK(ag_tensor_register_hook(&s.handle, w, swapping_hook, 0, &s, NULL));
        if (followers) OK(ag_tensor_register_hook(&h, w, counted_hook, 0, &other, NULL));
        int after_first = -1;
        for (int pass = 0; pass < 2; pass++) {
            OK(ag_mul_scalar(&y, w, 2.0));
            OK(ag_backward(y, NULL, 0));
            ag_tensor_release(y);
            if (pass == 0) after_first = s.new_calls;
        }
        CHECK(s.swaps == 1);
        CHECK(after_first == 0);
        CHECK(s.new_calls == 1);
        CHECK(other == 2 * followers);
        ag_tensor_release(w);
    }
}

/* A custom function whose backward runs a backward through its own node (with
 * retain_graph), once: the node's lock (held across a formula, for passes sharing a graph)
 * is the calling thread's already, so the nested pass goes on instead of waiting for
 * itself. */
static ag_tensor *reentrant_out;
static int reentrant_depth, reentrant_nested_rc = -1;

static int reentrant_forward(ag_function_ctx *ctx, ag_tensor **outs, size_t n_out,
                             ag_tensor *const *ins, size_t n_in, void *ud)
{
    (void)n_out, (void)n_in, (void)ud;
    int rc = ag_function_ctx_save(ctx, ins[0]);
    return rc ? rc : ag_clone(&outs[0], ins[0]);
}

static int reentrant_backward(ag_function_ctx *ctx, ag_tensor **grad_ins, size_t n_in,
                              ag_tensor *const *grad_outs, size_t n_out, void *ud)
{
    (void)ctx, (void)n_in, (void)n_out, (void)ud;
    if (reentrant_depth++ == 0) {
        ag_tensor *s;
        int64_t one = 1;
        OK(ag_full(&s, AG_FLOAT64, &one, 1, 1.0));
        reentrant_nested_rc = ag_backward(reentrant_out, s, AG_RETAIN_GRAPH);
        ag_tensor_release(s);
    }
    return ag_clone(&grad_ins[0], grad_outs[0]);
}

static void reentrant_backward_through_own_node(void)
{
    int64_t one = 1;
    ag_tensor *x, *sum;
    OK(ag_full(&x, AG_FLOAT64, &one, 1, 1.0));
    OK(ag_tensor_set_requires_grad(x, 1));
    OK(ag_function_apply(&reentrant_out, 1, &x, 1, "Reentrant", reentrant_forward,
                         reentrant_backward, 0, NULL, NULL));
    OK(ag_sum(&sum, reentrant_out));
    OK(ag_backward(sum, NULL, AG_RETAIN_GRAPH));
    CHECK(reentrant_nested_rc == AG_OK);
    CHECK(reentrant_depth == 2);
    CHECK_CLOSE(grad_of(x), 2.0, 0); /* the nested pass's 1 and the outer one's */
    ag_tensor_release(sum);
    ag_tensor_release(reentrant_out);
    ag_tensor_release(x);
}

/* ---- custom functions: y = exp(x) computed "by hand", saving the output ---- */
static int myexp_forward(ag_function_ctx *ctx, ag_tensor **outs, size_t n_out,
                         ag_tensor *const *ins, size_t n_in, void *ud)
{
    (void)n_out;
    (void)n_in;
    (void)ud;
    double v;
    int rc = ag_tensor_item(&v, ins[0]);
    if (rc) return rc;
    if ((rc = ag_tensor_scalar(&outs[0], exp(v), AG_FLOAT64))) return rc;
    return ag_function_ctx_save(ctx, outs[0]);
}

static int myexp_backward(ag_function_ctx *ctx, ag_tensor **gins, size_t n_in,
                          ag_tensor *const *gouts, size_t n_out, void *ud)
{
    (void)n_in;
    (void)n_out;
    (*(int *)ud)++;
    ag_tensor *y;
    int rc = ag_function_ctx_saved(&y, ctx, 0);
    if (rc) return rc;
    rc = ag_mul(&gins[0], gouts[0], y);
    ag_tensor_release(y);
    return rc;
}

/* A custom function whose outputs receive no gradient still has its backward called, with
 * zeros, as PyTorch calls it: F's backward below returns ones whatever it gets, so x.grad is
 * ones behind a function (Drop) that passes no gradient on, directly or through a mul. It
 * was skipped, and x.grad stayed unset. */
static int twice_forward(ag_function_ctx *ctx, ag_tensor **outs, size_t n_out,
                         ag_tensor *const *ins, size_t n_in, void *ud)
{
    (void)ctx;
    (void)n_out;
    (void)n_in;
    (void)ud;
    return ag_mul_scalar(&outs[0], ins[0], 2.0);
}
static int ones_backward(ag_function_ctx *ctx, ag_tensor **gins, size_t n_in,
                         ag_tensor *const *gouts, size_t n_out, void *ud)
{
    (void)ctx;
    (void)n_in;
    (void)n_out;
    double *seen = ud;
    OK(ag_tensor_item(seen, gouts[0])); /* (one element in the tests below) */
    return ag_ones_like(&gins[0], gouts[0]);
}
static int drop_backward(ag_function_ctx *ctx, ag_tensor **gins, size_t n_in,
                         ag_tensor *const *gouts, size_t n_out, void *ud)
{
    (void)ctx;
    (void)gins;
    (void)n_in;
    (void)gouts;
    (void)n_out;
    (void)ud;
    return AG_OK; /* no gradient for the input */
}

static void custom_backward_without_gradients(void)
{
    for (int via_mul = 0; via_mul < 2; via_mul++) {
        ag_tensor *x = leaf(1.5), *y, *m, *z, *g = NULL;
        double seen = -1;
        OK(ag_function_apply(&y, 1, &x, 1, "F", twice_forward, ones_backward, 0, &seen, NULL));
        if (via_mul) OK(ag_mul_scalar(&m, y, 1.0));
        else m = y;
        OK(ag_function_apply(&z, 1, &m, 1, "Drop", twice_forward, drop_backward, 0, NULL, NULL));
        OK(ag_backward(z, NULL, 0));
        CHECK(seen == 0.0); /* F's backward ran, with zeros */
        OK(ag_tensor_grad(&g, x));
        CHECK(g && item(g) == 1.0);
        ag_tensor_release(g);
        ag_tensor_release(z);
        if (via_mul) ag_tensor_release(m);
        ag_tensor_release(y);
        ag_tensor_release(x);
    }
}

/* A node a pass reaches without any gradient (behind a custom function whose backward gives
 * none) does not run its formula, but its saved tensors are checked all the same, as
 * PyTorch's formula unpacks them before it looks at the gradients: tanh's output changed in
 * place fails the pass, naming it; unchanged, the pass succeeds and x gets no gradient. */
static void saved_checked_without_gradient(void)
{
    for (int changed = 0; changed < 2; changed++) {
        ag_tensor *x = leaf(0.5), *y, *c, *z, *g = NULL;
        OK(ag_tanh(&y, x));
        if (changed) OK(ag_mul_scalar_(y, 2.0));
        OK(ag_clone(&c, y));
        OK(ag_function_apply(&z, 1, &c, 1, "Drop", twice_forward, drop_backward, 0, NULL, NULL));
        if (changed) {
            FAILS(AG_EVERSION, ag_backward(z, NULL, 0));
            CHECK(strstr(ag_last_error(), "[torch.DoubleTensor []], which is output 0 of "
                                          "TanhBackward0, is at version 1; expected version 0"));
        } else {
            OK(ag_backward(z, NULL, 0));
        }
        OK(ag_tensor_grad(&g, x));
        CHECK(!g);
        ag_tensor_release(z);
        ag_tensor_release(c);
        ag_tensor_release(y);
        ag_tensor_release(x);
    }
}

/* ctx.needs_input_grad read in forward, as PyTorch sets it before forward runs: the inputs
 * that require grad, none under no_grad; index out of range refused. (It was backward's
 * only.) */
static int needs_forward(ag_function_ctx *ctx, ag_tensor **outs, size_t n_out,
                         ag_tensor *const *ins, size_t n_in, void *ud)
{
    (void)n_out;
    int *seen = ud, v = -1;
    for (size_t i = 0; i < n_in; i++) {
        int rc = ag_function_ctx_needs_input_grad(&v, ctx, i);
        if (rc) return rc;
        seen[i] = v;
    }
    seen[n_in] = ag_function_ctx_needs_input_grad(&v, ctx, n_in); /* AG_ERANGE */
    return ag_mul(&outs[0], ins[0], ins[1]);
}

static int needs_backward(ag_function_ctx *ctx, ag_tensor **gins, size_t n_in,
                          ag_tensor *const *gouts, size_t n_out, void *ud)
{
    (void)ctx;
    (void)n_in;
    (void)n_out;
    (void)ud;
    return ag_mul_scalar(&gins[0], gouts[0], 1.0);
}

static void needs_input_grad_in_forward(void)
{
    ag_tensor *x = leaf(2.0), *c, *y, *ins[2];
    OK(ag_tensor_scalar(&c, 3.0, AG_FLOAT64));
    ins[0] = x;
    ins[1] = c;
    int seen[3] = {-1, -1, -1};
    OK(ag_function_apply(&y, 1, ins, 2, "Needs", needs_forward, needs_backward, 0, seen, NULL));
    CHECK(seen[0] == 1 && seen[1] == 0 && seen[2] == AG_ERANGE);
    ag_tensor_release(y);
    int prev = ag_set_grad_enabled(0);
    OK(ag_function_apply(&y, 1, ins, 2, "Needs", needs_forward, needs_backward, 0, seen, NULL));
    ag_set_grad_enabled(prev);
    CHECK(seen[0] == 0 && seen[1] == 0);
    ag_tensor_release(y);
    ag_tensor_release(c);
    ag_tensor_release(x);
}

static void custom_function(void)
{
    ag_tensor *x = leaf(1.5), *y, *z;
    int calls = 0;
    freed_count = 0;
    OK(ag_function_apply(&y, 1, &x, 1, "MyExp", myexp_forward, myexp_backward, 0, &calls,
                         count_free));
    CHECK_STR(grad_fn_name(y), "MyExpBackward");
    CHECK_CLOSE(item(y), exp(1.5), 1e-15);
    OK(ag_mul_scalar(&z, y, 2.0));
    OK(ag_backward(z, NULL, 0));
    CHECK(calls == 1);
    CHECK_CLOSE(grad_of(x), 2 * exp(1.5), 1e-14);
    ag_tensor_release(z);
    ag_tensor_release(y);
    CHECK(freed_count == 1); /* the node died with its outputs */
    /* a custom function whose forward and backward succeed leaves the thread's last failure
     * as it was: ag_last_error stays valid until the next failing call (the callbacks'
     * caller cleared it) */
    FAILS(AG_EINVAL, ag_tensor_remove_hook(x, 12345));
    char before[512];
    snprintf(before, sizeof before, "%s", ag_last_error());
    OK(ag_function_apply(&y, 1, &x, 1, "MyExp", myexp_forward, myexp_backward, 0, &calls, NULL));
    OK(ag_backward(y, NULL, 0));
    CHECK(ag_last_status() == AG_EINVAL && strcmp(ag_last_error(), before) == 0);
    ag_tensor_release(y);
    /* a saved output modified in place: the version check fires in the user's backward */
    OK(ag_function_apply(&y, 1, &x, 1, "MyExp", myexp_forward, myexp_backward, 0, &calls, NULL));
    int prev = ag_set_grad_enabled(0);
    OK(ag_add_scalar_(y, 1.0));
    ag_set_grad_enabled(prev);
    FAILS(AG_EVERSION, ag_backward(y, NULL, 0));
    ag_tensor_release(y);
    /* counts beyond the limits are refused before the arrays are read: here inputs has one
     * entry (reading a 65th overflowed it, which the sanitizer build reports) */
    y = SENT;
    FAILS(AG_EINVAL, ag_function_apply(&y, 1, &x, 65, "MyExp", myexp_forward, myexp_backward,
                                       0, &calls, NULL));
    CHECK(strstr(ag_last_error(), "ag_function_apply") && strstr(ag_last_error(), "65"));
    FAILS(AG_EINVAL, ag_function_apply(&y, 0, &x, 1, "MyExp", myexp_forward, myexp_backward,
                                       0, &calls, NULL));
    FAILS(AG_EINVAL, ag_function_apply(&y, 65, &x, 1, "MyExp", myexp_forward, myexp_backward,
                                       0, &calls, NULL));
    CHECK(y == SENT);
    ag_tensor_release(x);
}

/* ---- hooks and retain_grad across an in-place op (PyTorch's rules since 2.0): a hook
 * belongs to the grad_fn the tensor had when it was registered, a retained gradient follows
 * the tensor to its newest grad_fn. Each ran at both grad_fns before, so hooks fired twice and
 * .grad held both gradients (18 below instead of 3; PyTorch 1.13 also gives 3). ---- */
typedef struct seen {
    int calls;
    double last;
} seen;

static int seen_hook(ag_tensor **new_grad, ag_tensor *grad, void *ud)
{
    (void)new_grad;
    seen *s = ud;
    s->calls++;
    return ag_tensor_item(&s->last, grad);
}

static void hooks_across_inplace(void)
{
    ag_tensor *x = leaf(1.0), *y, *z;
    seen before = {0, 0}, after = {0, 0};
    uint64_t id;
    OK(ag_mul_scalar(&y, x, 2.0));                  /* MulBackward0 */
    OK(ag_tensor_register_hook(&id, y, seen_hook, 0, &before, NULL));
    OK(ag_tensor_retain_grad(y));
    OK(ag_mul_scalar_(y, 5.0));                     /* y's grad_fn: a new MulBackward0 */
    OK(ag_tensor_register_hook(&id, y, seen_hook, 0, &after, NULL));
    OK(ag_mul_scalar(&z, y, 3.0));
    OK(ag_backward(z, NULL, 0));
    CHECK(before.calls == 1 && after.calls == 1);
    CHECK_CLOSE(before.last, 15.0, 0); /* d z / d (y before mul_) */
    CHECK_CLOSE(after.last, 3.0, 0);   /* d z / d y */
    CHECK_CLOSE(grad_of(y), 3.0, 0);
    CHECK_CLOSE(grad_of(x), 30.0, 0);
    ag_tensor_release(z);
    ag_tensor_release(y);
    ag_tensor_release(x);
}

/* A custom function whose output is a view written in place inside its forward (under
 * no_grad there): the output's grad_fn is the function's node, current for its storage, and
 * using it neither regenerates nor refuses it (it did, once views tracked their version). */
static int fill_forward(ag_function_ctx *ctx, ag_tensor **outs, size_t n_out,
                        ag_tensor *const *ins, size_t n_in, void *ud)
{
    (void)ctx;
    (void)n_out;
    (void)n_in;
    (void)ud;
    ag_tensor *buf, *t;
    int64_t n = 4;
    int rc = ag_zeros(&buf, AG_FLOAT64, &n, 1);
    if (!rc) rc = ag_narrow(&outs[0], buf, 0, 0, 2);
    ag_tensor_release(buf);
    if (!rc) rc = ag_mul_scalar(&t, ins[0], 3.0);
    if (!rc) {
        rc = ag_copy_(outs[0], t);
        ag_tensor_release(t);
    }
    return rc;
}

static int fill_backward(ag_function_ctx *ctx, ag_tensor **gins, size_t n_in,
                         ag_tensor *const *gouts, size_t n_out, void *ud)
{
    (void)ctx;
    (void)n_in;
    (void)n_out;
    (void)ud;
    return ag_mul_scalar(&gins[0], gouts[0], 3.0);
}

/* A custom function with an int64 second output: backward gets int64 zeros of its shape for
 * it (PyTorch materialises missing gradients so; it got a float32 0-d zero). */
static int intout_forward(ag_function_ctx *ctx, ag_tensor **outs, size_t n_out,
                          ag_tensor *const *ins, size_t n_in, void *ud)
{
    (void)ctx;
    (void)n_out;
    (void)n_in;
    (void)ud;
    int64_t n = 3;
    int rc = ag_mul_scalar(&outs[0], ins[0], 2.0);
    if (!rc) rc = ag_tensor_from_f64(&outs[1], (const double[]){1, 2, 3}, AG_INT64, &n, 1);
    return rc;
}

static int intout_backward(ag_function_ctx *ctx, ag_tensor **gins, size_t n_in,
                           ag_tensor *const *gouts, size_t n_out, void *ud)
{
    (void)ctx;
    (void)n_in;
    (void)n_out;
    ag_dtype dt = AG_FLOAT32;
    int64_t shape[AG_MAX_DIMS] = {0};
    size_t nd = 0;
    OK(ag_tensor_dtype(&dt, gouts[1]));
    OK(ag_tensor_ndim(&nd, gouts[1]));
    OK(ag_tensor_shape(shape, AG_MAX_DIMS, gouts[1]));
    *(int *)ud = dt == AG_INT64 && nd == 1 && shape[0] == 3;
    return ag_mul_scalar(&gins[0], gouts[0], 2.0);
}

static void custom_int_output(void)
{
    ag_tensor *x = vec(AG_FLOAT64, 3, (const double[]){1, 2, 3}), *y[2], *s, *g;
    OK(ag_tensor_set_requires_grad(x, 1));
    int seen = 0;
    OK(ag_function_apply(y, 2, &x, 1, "IntOut", intout_forward, intout_backward, 0, &seen, NULL));
    OK(ag_sum(&s, y[0]));
    OK(ag_backward(s, NULL, 0));
    CHECK(seen == 1);
    OK(ag_tensor_grad(&g, x));
    check_values("x.grad with an int64 output", g, (const double[]){2, 2, 2}, 3, 0);
    ag_tensor_release(g);
    ag_tensor_release(s);
    ag_tensor_release(y[0]);
    ag_tensor_release(y[1]);
    ag_tensor_release(x);
}

static void custom_view_output(void)
{
    ag_tensor *x = vec(AG_FLOAT64, 2, (const double[]){1, 2}), *y, *z, *s, *g;
    OK(ag_tensor_set_requires_grad(x, 1));
    OK(ag_function_apply(&y, 1, &x, 1, "Fill", fill_forward, fill_backward, 0, NULL, NULL));
    CHECK_STR(grad_fn_name(y), "FillBackward");
    OK(ag_mul_scalar(&z, y, 5.0));
    OK(ag_sum(&s, z));
    OK(ag_backward(s, NULL, 0));
    OK(ag_tensor_grad(&g, x));
    check_values("x.grad through a custom view output", g, (const double[]){15, 15}, 2, 0);
    ag_tensor_release(g);
    ag_tensor_release(s);
    ag_tensor_release(z);
    ag_tensor_release(y);
    ag_tensor_release(x);
}

/* ---- custom functions and PyTorch's rules for what forward returns and saves ----
 * Expected values from torch 1.13 (torch.autograd.Function with the same forward/backward). */
typedef struct cf_case {
    int mode;       /* what forward does, below */
    int needs[2];   /* needs_input_grad seen by backward (-1: not called) */
} cf_case;

enum {
    CF_SAVE_INPUT_RETURN_IT,   /* ctx.save_for_backward(x); return x     ; backward g * x */
    CF_SAVE_T_OF_OUTPUT,       /* y = x * 1; save(y.t()); return y       ; backward g * s */
    CF_RETURN_INPUT,           /* return x                               ; backward g     */
    CF_TWO_INPUTS_BAD_SECOND,  /* return a * b; backward (g, ones(5))                     */
    CF_INT_GRAD,               /* return x * 2; backward int64 ones                        */
};

static int cf_forward(ag_function_ctx *ctx, ag_tensor **outs, size_t n_out,
                      ag_tensor *const *ins, size_t n_in, void *ud)
{
    (void)n_out;
    (void)n_in;
    cf_case *c = ud;
    int rc = AG_OK;
    ag_tensor *t = NULL;
    switch (c->mode) {
    case CF_SAVE_INPUT_RETURN_IT:
        if (!(rc = ag_function_ctx_save(ctx, ins[0])) && !(rc = ag_tensor_retain(ins[0])))
            outs[0] = ins[0];
        break;
    case CF_SAVE_T_OF_OUTPUT:
        if (!(rc = ag_mul_scalar(&outs[0], ins[0], 1.0)) && !(rc = ag_t(&t, outs[0])))
            rc = ag_function_ctx_save(ctx, t);
        ag_tensor_release(t);
        break;
    case CF_RETURN_INPUT:
        if (!(rc = ag_tensor_retain(ins[0]))) outs[0] = ins[0];
        break;
    case CF_TWO_INPUTS_BAD_SECOND: rc = ag_mul(&outs[0], ins[0], ins[1]); break;
    case CF_INT_GRAD: rc = ag_mul_scalar(&outs[0], ins[0], 2.0); break;
    }
    return rc;
}

static int cf_backward(ag_function_ctx *ctx, ag_tensor **gins, size_t n_in,
                       ag_tensor *const *gouts, size_t n_out, void *ud)
{
    (void)n_out;
    cf_case *c = ud;
    for (size_t i = 0; i < n_in && i < 2; i++) OK(ag_function_ctx_needs_input_grad(&c->needs[i], ctx, i));
    ag_tensor *s = NULL;
    int64_t five = 5, three = 3;
    int rc = AG_OK;
    switch (c->mode) {
    case CF_SAVE_INPUT_RETURN_IT:
    case CF_SAVE_T_OF_OUTPUT:
        if (!(rc = ag_function_ctx_saved(&s, ctx, 0))) rc = ag_mul(&gins[0], gouts[0], s);
        ag_tensor_release(s);
        break;
    case CF_RETURN_INPUT: rc = ag_clone(&gins[0], gouts[0]); break;
    case CF_TWO_INPUTS_BAD_SECOND:
        if (!(rc = ag_clone(&gins[0], gouts[0]))) rc = ag_ones(&gins[1], AG_FLOAT64, &five, 1);
        break;
    case CF_INT_GRAD: rc = ag_ones(&gins[0], AG_INT64, &three, 1); break;
    }
    return rc;
}

static ag_tensor *cf_apply(cf_case *c, ag_tensor *const *ins, size_t n_in)
{
    ag_tensor *y = NULL;
    OK(ag_function_apply(&y, 1, ins, n_in, "F", cf_forward, cf_backward, 0, c, NULL));
    return y;
}

static void custom_function_rules(void)
{
    /* A saved input that forward also returns stays the input: its own history, so the
     * second derivative of sum(F(x)) with backward g * x is 1 (it was 2, 3: the saved tensor
     * came back as the output, whose history is F's node). */
    {
        ag_tensor *x = vec(AG_FLOAT64, 2, (const double[]){2, 3}), *s, *g1, *s1, *g2;
        OK(ag_tensor_set_requires_grad(x, 1));
        cf_case c = {CF_SAVE_INPUT_RETURN_IT, {-1, -1}};
        ag_tensor *y = cf_apply(&c, &x, 1);
        OK(ag_sum(&s, y));
        OK(ag_grad(&g1, &s, NULL, 1, &x, 1, AG_CREATE_GRAPH));
        check_values("g1", g1, (const double[]){2, 3}, 2, 0);
        OK(ag_sum(&s1, g1));
        OK(ag_grad(&g2, &s1, NULL, 1, &x, 1, 0));
        check_values("g2 of a saved input returned as is", g2, (const double[]){1, 1}, 2, 0);
        ag_tensor *all[] = {x, s, g1, s1, g2, y};
        for (size_t k = 0; k < 6; k++) ag_tensor_release(all[k]);
    }
    /* A saved transpose of a square output is that transpose, not the output (same storage,
     * offset and shape, other strides): x.grad = y^T = [[1, 3], [2, 4]]. */
    {
        int64_t shape[2] = {2, 2};
        ag_tensor *x, *s, *g;
        OK(ag_tensor_from_f64(&x, (const double[]){1, 2, 3, 4}, AG_FLOAT64, shape, 2));
        OK(ag_tensor_set_requires_grad(x, 1));
        cf_case c = {CF_SAVE_T_OF_OUTPUT, {-1, -1}};
        ag_tensor *y = cf_apply(&c, &x, 1);
        OK(ag_sum(&s, y));
        OK(ag_backward(s, NULL, 0));
        OK(ag_tensor_grad(&g, x));
        check_values("x.grad with a saved transposed output", g, (const double[]){1, 3, 2, 4}, 4, 0);
        ag_tensor *all[] = {x, s, g, y};
        for (size_t k = 0; k < 4; k++) ag_tensor_release(all[k]);
    }
    /* An input returned as is becomes a view of it (PyTorch's view_as): an in-place op on the
     * output, or on the input behind it, is refused, as in PyTorch; it changed the input's
     * data (a leaf's too) and left its gradient wrong. */
    {
        ag_tensor *x = vec(AG_FLOAT64, 2, (const double[]){1, 2}), *xx, *y, *s;
        OK(ag_tensor_set_requires_grad(x, 1));
        OK(ag_mul_scalar(&xx, x, 1.0));
        cf_case c = {CF_RETURN_INPUT, {-1, -1}};
        y = cf_apply(&c, &xx, 1);
        FAILS(AG_EINVAL, ag_mul_scalar_(y, 5.0));
        CHECK(strstr(ag_last_error(), "Output 0 of FBackward is a view and is being modified "
                     "inplace. This view was created inside a custom Function") != NULL);
        check_values("the input after a refused in-place op", xx, (const double[]){1, 2}, 2, 0);
        ag_tensor_release(y);
        y = cf_apply(&c, &x, 1); /* a leaf returned as is */
        FAILS(AG_EINVAL, ag_mul_scalar_(y, 5.0));
        check_values("the leaf after a refused in-place op", x, (const double[]){1, 2}, 2, 0);
        ag_tensor_release(y);
        y = cf_apply(&c, &xx, 1);
        OK(ag_mul_scalar_(xx, 3.0)); /* behind the output */
        FAILS_OUT(AG_EINVAL, ag_sum, y);
        CHECK(strstr(ag_last_error(), "its base or another view of its base has been modified "
                     "inplace. This view was created inside a custom Function") != NULL);
        /* out of place it is an ordinary output */
        ag_tensor_release(y);
        y = cf_apply(&c, &xx, 1);
        OK(ag_sum(&s, y));
        OK(ag_backward(s, NULL, 0));
        ag_tensor *g;
        OK(ag_tensor_grad(&g, x));
        check_values("x.grad through an input returned as is", g, (const double[]){3, 3}, 2, 0);
        ag_tensor *all[] = {x, xx, y, s, g};
        for (size_t k = 0; k < 5; k++) ag_tensor_release(all[k]);
    }
    /* needs_input_grad is fixed when the function is applied (torch: (True, True) under
     * autograd.grad for a only), and a wrong-shape gradient for an input this pass does not
     * need is still an error, with PyTorch's message. */
    {
        ag_tensor *ab[2] = {vec(AG_FLOAT64, 2, (const double[]){1, 2}),
                            vec(AG_FLOAT64, 2, (const double[]){3, 4})}, *s, *g = SENT;
        OK(ag_tensor_set_requires_grad(ab[0], 1));
        OK(ag_tensor_set_requires_grad(ab[1], 1));
        cf_case c = {CF_TWO_INPUTS_BAD_SECOND, {-1, -1}};
        ag_tensor *y = cf_apply(&c, ab, 2);
        OK(ag_sum(&s, y));
        FAILS(AG_ESHAPE, ag_grad(&g, &s, NULL, 1, ab, 1, 0));
        CHECK_STR(ag_last_error(), "ag_grad: Function FBackward returned an invalid gradient at "
                  "index 1 - got [5] but expected shape compatible with [2]");
        CHECK(c.needs[0] == 1 && c.needs[1] == 1);
        ag_tensor *all[] = {ab[0], ab[1], s, y};
        for (size_t k = 0; k < 4; k++) ag_tensor_release(all[k]);
    }
    /* An int64 gradient is cast to the input's dtype (torch: x.grad = [1., 1., 1.]). */
    {
        ag_tensor *x = vec(AG_FLOAT64, 3, (const double[]){1, 2, 3}), *s, *g;
        OK(ag_tensor_set_requires_grad(x, 1));
        cf_case c = {CF_INT_GRAD, {-1, -1}};
        ag_tensor *y = cf_apply(&c, &x, 1);
        OK(ag_sum(&s, y));
        OK(ag_backward(s, NULL, 0));
        OK(ag_tensor_grad(&g, x));
        ag_dtype dt = AG_INT64;
        OK(ag_tensor_dtype(&dt, g));
        CHECK(dt == AG_FLOAT64);
        check_values("x.grad from an int64 custom gradient", g, (const double[]){1, 1, 1}, 3, 0);
        ag_tensor *all[] = {x, s, g, y};
        for (size_t k = 0; k < 4; k++) ag_tensor_release(all[k]);
    }
}

/* A view whose base changed in place behind it follows the base's new history (PyTorch
 * gives it a fresh AsStridedBackward0 when next used): hooks registered on it before stay
 * with its old grad_fn and do not run, hooks registered after do. Also a base that is not
 * contiguous (a detached transpose, stepped under no_grad as an optimizer would), where the
 * fresh node must scatter into the base's own strides. */
/* A view changed in place while nothing required grad takes its base's history once the base
 * is set to require grad, whether or not something looked at the view in between (torch:
 * x = [1,2,3]; v = x[0:2]; v.add_(1); x.requires_grad_(True); (v*2).sum().backward() gives
 * x.grad [2,2,0], v.grad_fn AsStridedBackward0). */
static void view_follows_base_requiring_grad_later(void)
{
    for (int look = 0; look < 2; look++) {
        ag_tensor *x = vec(AG_FLOAT64, 3, (double[]){1, 2, 3}), *v, *y, *s, *g;
        int req;
        OK(ag_slice(&v, x, 0, 0, 2, 1));
        OK(ag_add_scalar_(v, 1.0));
        if (look) OK(ag_tensor_is_leaf(&req, v)); /* (this used to mark it current) */
        OK(ag_tensor_set_requires_grad(x, 1));
        OK(ag_tensor_is_leaf(&req, v));
        CHECK(req == 0);
        OK(ag_mul_scalar(&y, v, 2.0));
        CHECK_STR(grad_fn_name(v), "AsStridedBackward0");
        OK(ag_sum(&s, y));
        OK(ag_backward(s, NULL, 0));
        OK(ag_tensor_grad(&g, x));
        CHECK(g != NULL);
        if (g) check_values("x.grad", g, (double[]){2, 2, 0}, 3, 0);
        ag_tensor *ts[] = {g, s, y, v, x};
        for (size_t i = 0; i < 5; i++) ag_tensor_release(ts[i]);
    }
}

static void views_behind_inplace(void)
{
    const double xs[3] = {1, 2, 3};
    ag_tensor *x = vec(AG_FLOAT64, 3, xs), *b, *v, *y, *g;
    OK(ag_tensor_set_requires_grad(x, 1));
    OK(ag_mul_scalar(&b, x, 1.0));
    OK(ag_select(&v, b, 0, 1));
    seen before = {0, 0}, after = {0, 0};
    uint64_t id;
    OK(ag_tensor_register_hook(&id, v, seen_hook, 0, &before, NULL));
    OK(ag_mul_scalar_(b, 2.0));
    CHECK_STR(grad_fn_name(v), "AsStridedBackward0");
    OK(ag_tensor_register_hook(&id, v, seen_hook, 0, &after, NULL));
    OK(ag_mul_scalar(&y, v, 3.0));
    OK(ag_backward(y, NULL, 0));
    CHECK(before.calls == 0 && after.calls == 1);
    CHECK_CLOSE(after.last, 3.0, 0);
    OK(ag_tensor_grad(&g, x));
    check_values("x.grad through the regenerated view", g, (const double[]){0, 6, 0}, 3, 0);
    ag_tensor_release(g);
    ag_tensor_release(y);
    ag_tensor_release(v);
    ag_tensor_release(b);
    ag_tensor_release(x);

    const double ms[6] = {1, 2, 3, 4, 5, 6};
    ag_tensor *m = tensor_f64(ms, (const int64_t[]){2, 3}, 2, AG_FLOAT64), *mt, *p, *rows, *s;
    OK(ag_t(&mt, m));
    OK(ag_tensor_detach(&p, mt)); /* [3, 2], strides [1, 3]: a root that is not contiguous */
    OK(ag_tensor_set_requires_grad(p, 1));
    OK(ag_narrow(&rows, p, 0, 1, 2));
    int prev = ag_set_grad_enabled(0);
    OK(ag_add_scalar_(p, 1.0));
    ag_set_grad_enabled(prev);
    const double ws[4] = {10, 20, 30, 40};
    ag_tensor *w = tensor_f64(ws, (const int64_t[]){2, 2}, 2, AG_FLOAT64);
    OK(ag_mul(&y, rows, w));
    OK(ag_sum(&s, y));
    CHECK_STR(grad_fn_name(rows), "AsStridedBackward0");
    OK(ag_backward(s, NULL, 0));
    OK(ag_tensor_grad(&g, p));
    check_values("grad of a non-contiguous base", g, (const double[]){0, 0, 10, 20, 30, 40}, 6,
                 0);
    ag_tensor_release(g);
    ag_tensor_release(s);
    ag_tensor_release(y);
    ag_tensor_release(w);
    ag_tensor_release(rows);

    /* A view made under no_grad of p, then p stepped under no_grad: PyTorch still answers
     * requires_grad (from the base) and prints it, but refuses the view's grad_fn. */
    prev = ag_set_grad_enabled(0);
    OK(ag_narrow(&rows, p, 0, 0, 1));
    OK(ag_add_scalar_(p, 1.0));
    ag_set_grad_enabled(prev);
    int rg = 0;
    OK(ag_tensor_requires_grad(&rg, rows));
    CHECK(rg == 1);
    ag_node *fn = NULL;
    FAILS(AG_EINVAL, ag_tensor_grad_fn(&fn, rows));
    CHECK(strstr(ag_last_error(), "A view was created in no_grad mode"));
    ag_tensor_release(rows);
    prev = ag_set_grad_enabled(0);
    OK(ag_narrow(&rows, p, 0, 0, 1));
    ag_set_grad_enabled(prev);
    char *str = NULL;
    OK(ag_tensor_to_string(&str, rows));
    CHECK(str && strstr(str, "requires_grad=True"));
    ag_string_free(str);
    ag_tensor_release(rows);
    ag_tensor_release(p);
    ag_tensor_release(mt);
    ag_tensor_release(m);
}

/* A saved output unpacked under create_graph is a second tensor that is the same node output.
 * Hooks on both run, and neither tensor's meta is dropped while a backward may use it (the
 * node kept one meta per output, so the alias's hook replaced y's: y's hook no longer ran, and
 * releasing y then freed a meta a backward could still be reading). */
typedef struct alias_state {
    int calls;
    bool retain;       /* the first call retains the alias's grad (else hooks it) */
    seen on_alias;
    ag_tensor *alias;  /* kept when retained */
} alias_state;

static int alias_backward(ag_function_ctx *ctx, ag_tensor **gins, size_t n_in,
                          ag_tensor *const *gouts, size_t n_out, void *ud)
{
    (void)n_in;
    (void)n_out;
    alias_state *st = ud;
    ag_tensor *y;
    int rc = ag_function_ctx_saved(&y, ctx, 0);
    if (rc) return rc;
    uint64_t id;
    bool first = st->calls++ == 0;
    if (first && st->retain) {
        rc = ag_tensor_retain_grad(y);
        if (!rc) rc = ag_tensor_retain(y);
        if (!rc) st->alias = y;
    } else if (first) {
        rc = ag_tensor_register_hook(&id, y, seen_hook, 0, &st->on_alias, NULL);
    }
    if (!rc) rc = ag_mul(&gins[0], gouts[0], y);
    ag_tensor_release(y);
    return rc;
}

static void saved_output_alias_hooks(void)
{
    ag_tensor *x = leaf(0.5), *y, *z;
    alias_state st = {0, false, {0, 0}, NULL};
    seen on_y = {0, 0};
    uint64_t id;
    OK(ag_function_apply(&y, 1, &x, 1, "MyExp", myexp_forward, alias_backward, 0, &st, NULL));
    OK(ag_tensor_register_hook(&id, y, seen_hook, 0, &on_y, NULL));
    OK(ag_mul_scalar(&z, y, 2.0));
    OK(ag_backward(z, NULL, AG_CREATE_GRAPH)); /* registers the alias's hook */
    CHECK(on_y.calls == 1 && st.on_alias.calls == 0);
    OK(ag_backward(z, NULL, AG_RETAIN_GRAPH));
    CHECK(on_y.calls == 2);        /* y's hook is still there */
    CHECK(st.on_alias.calls == 1); /* and the alias's runs too */
    CHECK_CLOSE(on_y.last, 2.0, 0);
    CHECK_CLOSE(st.on_alias.last, 2.0, 0);
    ag_tensor_release(y); /* the node keeps y's meta for the next pass */
    OK(ag_backward(z, NULL, 0));
    CHECK(on_y.calls == 3 && st.on_alias.calls == 2);
    CHECK_CLOSE(grad_of(x), 3 * 2 * exp(0.5), 1e-12);
    ag_tensor_release(z);
    ag_tensor_release(x);
}

/* retain_grad on the alias while its node runs: the alias's .grad starts with the next pass,
 * whether or not y (the same output) retains too (it got this pass's gradient when y did). */
static void alias_retained_during_pass(void)
{
    for (int y_retains = 0; y_retains <= 1; y_retains++) {
        ag_tensor *x = leaf(0.5), *y, *z;
        alias_state st = {0, true, {0, 0}, NULL};
        OK(ag_function_apply(&y, 1, &x, 1, "MyExp", myexp_forward, alias_backward, 0, &st, NULL));
        if (y_retains) OK(ag_tensor_retain_grad(y));
        OK(ag_mul_scalar(&z, y, 2.0));
        OK(ag_backward(z, NULL, AG_CREATE_GRAPH));
        CHECK(isnan(grad_of(st.alias)));
        OK(ag_backward(z, NULL, AG_RETAIN_GRAPH));
        CHECK_CLOSE(grad_of(st.alias), 2.0, 0);
        if (y_retains) CHECK_CLOSE(grad_of(y), 4.0, 0);
        ag_tensor_release(st.alias);
        ag_tensor_release(z);
        ag_tensor_release(y);
        ag_tensor_release(x);
    }
}

/* ---- version counter and in-place ops ---- */
static void inplace_semantics(void)
{
    int64_t s3[1] = {3};
    double d[3] = {1, 2, 3};
    ag_tensor *x = vec(AG_FLOAT64, 3, d), *y, *z, *s;
    OK(ag_tensor_set_requires_grad(x, 1));
    FAILS(AG_ELEAF, ag_add_scalar_(x, 1.0));
    CHECK(strstr(ag_last_error(), "a leaf Variable that requires grad"));
    int64_t v0, v1;
    OK(ag_tensor_version(&v0, x));
    /* in-place on a saved tensor: backward refuses, naming the versions */
    OK(ag_mul_scalar(&y, x, 1.0)); /* y = x * 1 (non-leaf) */
    OK(ag_mul(&z, y, y));          /* saves y */
    OK(ag_add_scalar_(y, 1.0));
    OK(ag_tensor_version(&v1, y));
    CHECK(v1 == 1);
    OK(ag_sum(&s, z));
    FAILS(AG_EVERSION, ag_backward(s, NULL, 0));
    CHECK(strstr(ag_last_error(), "modified by an inplace operation"));
    CHECK(strstr(ag_last_error(), "is at version 1; expected version 0"));
    ag_tensor_release(s);
    ag_tensor_release(z);
    /* in-place on a non-leaf is recorded: y = (x*1) + 1, then z = y * 3 */
    CHECK_STR(grad_fn_name(y), "AddBackward0");
    OK(ag_mul_scalar(&z, y, 3.0));
    OK(ag_sum(&s, z));
    OK(ag_backward(s, NULL, 0));
    ag_tensor *g;
    OK(ag_tensor_grad(&g, x));
    double want[3] = {3, 3, 3};
    check_values("grad through add_", g, want, 3, 0);
    ag_tensor_release(g);
    OK(ag_tensor_set_grad(x, NULL));
    ag_tensor_release(s);
    ag_tensor_release(z);
    ag_tensor_release(y);
    /* in-place on a view of a non-leaf rewrites the base's history (CopySlices) */
    ag_tensor *b, *v;
    OK(ag_mul_scalar(&b, x, 2.0));           /* b = 2x */
    OK(ag_slice(&v, b, 0, 1, 3, 1));         /* v = b[1:] */
    OK(ag_mul_scalar_(v, 5.0));              /* b[1:] *= 5 */
    CHECK_STR(grad_fn_name(b), "CopySlices");
    CHECK_STR(grad_fn_name(v), "AsStridedBackward0");
    double wb[3] = {2, 20, 30};
    check_values("base after in-place on view", b, wb, 3, 0);
    OK(ag_sum(&s, b));
    OK(ag_backward(s, NULL, 0));
    OK(ag_tensor_grad(&g, x));
    double wg[3] = {2, 10, 10};
    check_values("grad through CopySlices", g, wg, 3, 0);
    ag_tensor_release(g);
    ag_tensor_release(s);
    ag_tensor_release(v);
    ag_tensor_release(b);
    /* a view of a leaf */
    OK(ag_slice(&v, x, 0, 0, 2, 1));
    FAILS(AG_ELEAF, ag_zero_(v));
    CHECK(strstr(ag_last_error(), "view of a leaf Variable"));
    ag_tensor_release(v);
    /* a view that is a leaf requiring grad, of a base that requires none: it and a view of
     * it are refused as views of a leaf (PyTorch: the base is a leaf, requiring grad or not).
     * The view of it was let through, and made the leaf a non-leaf. */
    {
        ag_tensor *big, *a, *a0;
        int is_leaf = 0;
        int64_t s4[1] = {4};
        OK(ag_ones(&big, AG_FLOAT64, s4, 1));
        OK(ag_slice(&a, big, 0, 0, 2, 1));
        OK(ag_tensor_set_requires_grad(a, 1));
        OK(ag_slice(&a0, a, 0, 0, 1, 1));
        FAILS(AG_ELEAF, ag_mul_scalar_(a0, 2.0));
        CHECK(strstr(ag_last_error(), "a view of a leaf Variable"));
        FAILS(AG_ELEAF, ag_mul_scalar_(a, 2.0));
        CHECK(strstr(ag_last_error(), "a view of a leaf Variable"));
        OK(ag_tensor_is_leaf(&is_leaf, a));
        CHECK(is_leaf && grad_fn_name(a)[0] == 0);
        double ones[4] = {1, 1, 1, 1};
        check_values("base untouched", big, ones, 4, 0);
        /* the base itself takes in-place ops: it requires no grad */
        OK(ag_mul_scalar_(big, 2.0));
        ag_tensor_release(a0);
        ag_tensor_release(a);
        ag_tensor_release(big);
    }
    /* shape and dtype checks of in-place ops change nothing */
    ag_tensor *wrong, *i;
    int64_t s2[1] = {2};
    OK(ag_ones(&wrong, AG_FLOAT64, s2, 1));
    OK(ag_zeros(&y, AG_FLOAT64, s3, 1));
    FAILS(AG_ESHAPE, ag_add_(y, wrong));
    OK(ag_ones(&i, AG_INT64, s3, 1));
    FAILS(AG_EDTYPE, ag_add_(i, y));
    OK(ag_tensor_version(&v1, y));
    CHECK(v1 == 0);
    ag_tensor_release(i);
    ag_tensor_release(wrong);
    ag_tensor_release(y);
    ag_tensor_release(x);
}

static void anomaly(void)
{
    double d[2] = {0.0, 1.0};
    ag_tensor *x = vec(AG_FLOAT64, 2, d), *y, *s;
    OK(ag_tensor_set_requires_grad(x, 1));
    int prev = ag_set_anomaly_enabled(1);
    OK(ag_sqrt(&y, x));
    OK(ag_sum(&s, y));
    FAILS(AG_EANOMALY, ag_backward(s, NULL, 0)); /* d sqrt(x)/dx at 0 is inf */
    CHECK(strstr(ag_last_error(), "SqrtBackward0"));
    ag_tensor *g;
    OK(ag_tensor_grad(&g, x));
    CHECK(g == NULL); /* nothing committed */
    ag_set_anomaly_enabled(prev);
    ag_tensor_release(s);
    ag_tensor_release(y);
    ag_tensor_release(x);
}

/* A graph 100 000 nodes deep: backward and release must not recurse. */
static void deep_graph(void)
{
    ag_tensor *x = leaf(1.0), *s;
    OK(ag_mul_scalar(&s, x, 1.0));
    for (int i = 0; i < 100000; i++) {
        ag_tensor *n;
        OK(ag_add_scalar(&n, s, 0.0));
        ag_tensor_release(s);
        s = n;
    }
    OK(ag_backward(s, NULL, 0));
    CHECK_CLOSE(grad_of(x), 1.0, 0);
    ag_tensor_release(s);
    ag_tensor_release(x);
}

static void graph_inspection(void)
{
    ag_tensor *a, *b = leaf(2.0), *c;
    OK(ag_tensor_scalar_requires_grad(&a, 1.0, AG_FLOAT64, 1)); /* (one block: see below) */
    OK(ag_mul(&c, a, b));
    ag_node *n, *nx;
    OK(ag_tensor_grad_fn(&n, c));
    size_t k;
    OK(ag_node_num_next(&k, n));
    CHECK(k == 2);
    int64_t nr;
    OK(ag_node_next(&nx, &nr, n, 0));
    const char *name;
    OK(ag_node_name(&name, nx));
    CHECK_STR(name, "AccumulateGrad");
    ag_tensor *var;
    OK(ag_node_variable(&var, nx));
    CHECK(var == a);
    ag_tensor_release(var);
    ag_node *nx2;
    FAILS(AG_ERANGE, ag_node_next(&nx2, &nr, n, 2));
    FAILS(AG_EINVAL, ag_node_variable(&var, n));
    ag_node_release(n);
    ag_tensor_release(c);
    ag_tensor_release(a);
    ag_tensor_release(b);
    /* A handle on the AccumulateGrad node holds its leaf, as PyTorch's node holds its
     * variable, after every other handle and the graph are gone. */
    OK(ag_node_variable(&var, nx));
    double v;
    OK(ag_tensor_item(&v, var));
    CHECK(v == 1.0);
    ag_tensor_release(var);
    ag_node_release(nx); /* frees the leaf (the leak checks see it otherwise) */
}

/* A hook that replaces a leaf's gradient with a leaf requiring grad, of which it hands over
 * the only reference: PyTorch's AccumulateGrad keeps new_grad.detach(), so .grad requires no
 * grad and shares the tensor's memory (version 0). Made in one block with its meta
 * (ag_tensor_scalar_requires_grad) or not, the replacement is handled alike. */
static int hosted_replacement;
static int replace_with_leaf(ag_tensor **new_grad, ag_tensor *grad, void *ud)
{
    (void)grad;
    (void)ud;
    if (hosted_replacement) return ag_tensor_scalar_requires_grad(new_grad, 3.0, AG_FLOAT32, 1);
    int rc = ag_tensor_scalar(new_grad, 3.0, AG_FLOAT32);
    return rc ? rc : ag_tensor_set_requires_grad(*new_grad, 1);
}

/* 0-d leaves made requiring grad get their gradient copied into their block's room for a
 * .grad as their AccumulateGrad node runs (prepare_leaf_grad), and commit publishes it. A
 * pass that fails after those nodes ran publishes nothing: no .grad, and the room is free
 * again for the next pass. Here the failing hook is on u, which discovery indexes after the
 * leaves a and b (root -> w -> v -> u is one step deeper than root -> p -> a, b), so a and
 * b still run once u failed (only nodes after the failed one in discovery order skip). */
/* backward of a * b, then a's and b's .grad against what they should now hold. */
static void backward_of_product(ag_tensor *a, ag_tensor *b, double grad_a, double grad_b)
{
    ag_tensor *p;
    OK(ag_mul(&p, a, b));
    OK(ag_backward(p, NULL, 0));
    CHECK_CLOSE(grad_of(a), grad_a, 0);
    CHECK_CLOSE(grad_of(b), grad_b, 0);
    ag_tensor_release(p);
}

static void prepared_leaf_grad_unpublished_on_failure(void)
{
    for (int dt = 0; dt < 2; dt++) {
        ag_dtype d = dt ? AG_FLOAT64 : AG_FLOAT32;
        ag_tensor *a, *b, *x, *p, *u, *v, *w, *root;
        OK(ag_tensor_scalar_requires_grad(&a, 2.0, d, 1));
        OK(ag_tensor_scalar_requires_grad(&b, 3.0, d, 1));
        OK(ag_tensor_scalar_requires_grad(&x, 5.0, d, 1));
        OK(ag_mul(&p, a, b));
        OK(ag_mul_scalar(&u, x, 2.0));
        OK(ag_mul_scalar(&v, u, 1.0));
        OK(ag_mul_scalar(&w, v, 1.0));
        OK(ag_add(&root, p, w));
        uint64_t h;
        OK(ag_tensor_register_hook(&h, u, failing_hook, 0, NULL, NULL));
        FAILS(AG_ECALLBACK, ag_backward(root, NULL, 0));
        CHECK(isnan(grad_of(a)) && isnan(grad_of(b)) && isnan(grad_of(x)));
        ag_tensor_release(root);
        ag_tensor_release(p);
        /* the next pass takes the rooms again */
        backward_of_product(a, b, 3.0, 2.0);
        ag_tensor *g;
        OK(ag_tensor_grad(&g, a));
        int64_t ver;
        int rg;
        OK(ag_tensor_version(&ver, g));
        OK(ag_tensor_requires_grad(&rg, g));
        CHECK(ver == 0 && !rg);
        ag_tensor_release(g);
        /* and a second pass adds into those .grad tensors */
        backward_of_product(a, b, 6.0, 4.0);
        ag_tensor_release(w);
        ag_tensor_release(v);
        ag_tensor_release(u);
        ag_tensor_release(x);
        ag_tensor_release(b);
        ag_tensor_release(a);
    }
}

static void hook_replaces_grad_with_leaf(void)
{
    for (hosted_replacement = 0; hosted_replacement < 2; hosted_replacement++) {
        ag_tensor *x, *y, *g = NULL;
        uint64_t h;
        int rg = -1, leaf = -1;
        int64_t v = -1;
        double val = 0;
        OK(ag_tensor_scalar_requires_grad(&x, 2.0, AG_FLOAT32, 1));
        OK(ag_tensor_register_hook(&h, x, replace_with_leaf, 0, NULL, NULL));
        OK(ag_mul_scalar(&y, x, 5.0));
        OK(ag_backward(y, NULL, 0));
        OK(ag_tensor_grad(&g, x));
        CHECK(g != NULL);
        if (g) {
            OK(ag_tensor_requires_grad(&rg, g));
            OK(ag_tensor_is_leaf(&leaf, g));
            OK(ag_tensor_version(&v, g));
            OK(ag_tensor_item(&val, g));
            CHECK(rg == 0 && leaf == 1 && v == 0 && val == 3.0);
            ag_tensor_release(g);
        }
        ag_tensor_release(y);
        ag_tensor_release(x);
    }
}

/* A gradient handed out (.grad set from none, an ag_grad result) is at version 0 however many
 * contributions it took in place during the pass (PyTorch gives 0 too): its version must not
 * depend on the thread count, and whether a contribution was added in place depends on timing
 * in a parallel pass. */
static void handed_out_gradients_at_version_0(void)
{
    for (int threads = 1; threads <= 3; threads++) {
        OK(ag_set_num_threads(threads));
        ag_tensor *x = NULL, *t[6] = {0}, *s = NULL, *g = NULL;
        OK(ag_rand(&x, NULL, AG_FLOAT32, (int64_t[]){1000}, 1));
        OK(ag_tensor_set_requires_grad(x, 1));
        for (int pass = 0; pass < 3; pass++) {
            OK(ag_mul_scalar(&t[0], x, 2.0));
            OK(ag_mul_scalar(&t[1], x, 3.0));
            OK(ag_mul_scalar(&t[2], x, 4.0));
            OK(ag_add(&t[3], t[0], t[1]));
            OK(ag_add(&t[4], t[3], t[2]));
            OK(ag_sum(&s, t[4]));
            int64_t v = -1;
            if (pass == 0) {
                OK(ag_backward(s, NULL, 0));
                OK(ag_tensor_grad(&g, x));
            } else if (pass == 1) {
                OK(ag_grad(&g, &s, NULL, 1, &x, 1, 0));
            } else {
                /* the same input three times: one gradient, three handles, version 0 (as
                 * PyTorch's [0, 0, 0]; the handles kept it from being reset) */
                ag_tensor *in[3] = {x, x, x}, *out[3] = {NULL, NULL, NULL};
                OK(ag_grad(out, &s, NULL, 1, in, 3, 0));
                for (int k = 1; k < 3; k++) {
                    OK(ag_tensor_version(&v, out[k]));
                    CHECK(v == 0);
                    ag_tensor_release(out[k]);
                }
                g = out[0];
            }
            OK(ag_tensor_version(&v, g));
            CHECK(v == 0);
            static double buf[1000];
            OK(ag_tensor_copy_f64(buf, 1000, g)); /* (and the value is the sum) */
            CHECK(buf[0] == 9.0 && buf[999] == 9.0);
            ag_tensor_release(g);
            ag_tensor_release(s);
            for (int k = 0; k < 5; k++) ag_tensor_release(t[k]);
        }
        ag_tensor_release(x);
    }
    OK(ag_set_num_threads(0));
}

/* A .grad that must be a copy of the pass's gradient (here: the one gradient AddBackward0
 * hands to both operands) is made as PyTorch's AccumulateGrad makes it: for a dense leaf,
 * copy_ into an empty tensor with the leaf's strides (version 1; CopyBackwards, with edges
 * (none, the gradient's grad_fn), under create_graph); for a leaf that is not dense, a
 * contiguous clone (version 0; CloneBackward0). PyTorch 1.13 gives the same. */
static void copied_grad_as_pytorch_makes_it(void)
{
    for (int cg = 0; cg < 2; cg++)
        for (int dense = 0; dense < 2; dense++) {
            ag_tensor *base = NULL, *x = NULL, *w = NULL, *y = NULL, *p = NULL, *s = NULL,
                      *g = NULL;
            OK(ag_rand(&base, NULL, AG_FLOAT64, (int64_t[]){4, 6}, 2));
            if (dense) {
                OK(ag_tensor_detach(&x, base));
            } else { /* x = base[:, ::2].detach(): strides (6, 2) */
                ag_tensor *v = NULL;
                OK(ag_slice(&v, base, 1, 0, 6, 2));
                OK(ag_tensor_detach(&x, v));
                ag_tensor_release(v);
            }
            OK(ag_tensor_set_requires_grad(x, 1));
            OK(ag_rand(&w, NULL, AG_FLOAT64, (int64_t[]){4, dense ? 6 : 3}, 2));
            OK(ag_tensor_set_requires_grad(w, 1));
            /* cg: (x * w + x) gives x two contributions, summed by AddBackward0 of the pass
             * (a tensor that requires grad); else (x + w): one gradient shared by both. */
            if (cg) {
                OK(ag_mul(&p, x, w));
                OK(ag_add(&y, p, x));
            } else {
                OK(ag_add(&y, x, w));
            }
            OK(ag_sum(&s, y));
            OK(ag_backward(s, NULL, cg ? AG_CREATE_GRAPH : 0));
            OK(ag_tensor_grad(&g, x));
            int64_t v = -1, st[2] = {0, 0};
            OK(ag_tensor_version(&v, g));
            OK(ag_tensor_strides(st, 2, g));
            CHECK(v == (dense ? 1 : 0));
            CHECK(st[0] == (dense ? 6 : 3) && st[1] == 1);
            if (cg) {
                CHECK_STR(grad_fn_name(g), dense ? "CopyBackwards" : "CloneBackward0");
                ag_node *fn = NULL, *next = NULL;
                int64_t nr = -1;
                OK(ag_tensor_grad_fn(&fn, g));
                if (dense && fn) {
                    size_t n = 0;
                    OK(ag_node_num_next(&n, fn));
                    CHECK(n == 2);
                    OK(ag_node_next(&next, &nr, fn, 0));
                    CHECK(next == NULL);
                    OK(ag_node_next(&next, &nr, fn, 1));
                    const char *name = NULL;
                    if (next) OK(ag_node_name(&name, next));
                    CHECK_STR(name, "AddBackward0");
                    ag_node_release(next);
                }
                ag_node_release(fn);
            } else {
                CHECK_STR(grad_fn_name(g), "");
            }
            ag_tensor_release(g);
            OK(ag_tensor_set_grad(x, NULL));
            OK(ag_tensor_set_grad(w, NULL)); /* (create_graph: .grad holds the graph) */
            ag_tensor_release(s);
            ag_tensor_release(y);
            ag_tensor_release(p);
            ag_tensor_release(w);
            ag_tensor_release(x);
            ag_tensor_release(base);
        }
}

/* y = x * x (of x, or of x transposed: a base laid out as a transpose), then an in-place op
 * with w on a view of y; returns y. */
typedef struct view_inplace_ctx {
    int op;        /* 0: add_, 1: mul_ */
    int transpose; /* y made from x.t() */
    int select;    /* the view: row 1 (select) or every other row (slice) */
} view_inplace_ctx;

static int call_view_inplace(ag_tensor **out, ag_tensor *const *in, void *ctx)
{
    const view_inplace_ctx *c = ctx;
    ag_tensor *xt = NULL, *y = NULL, *v = NULL;
    int rc = c->transpose ? ag_t(&xt, in[0]) : ag_tensor_retain(xt = in[0]);
    if (!rc) rc = ag_mul(&y, xt, xt);
    if (!rc) rc = c->select ? ag_select(&v, y, 0, 1) : ag_slice(&v, y, 0, 0, 3, 2);
    if (!rc) rc = c->op ? ag_mul_(v, in[1]) : ag_add_(v, in[1]);
    ag_tensor_release(v);
    ag_tensor_release(xt);
    if (rc) {
        ag_tensor_release(y);
        return rc;
    }
    *out = y;
    return AG_OK;
}

/* Second order through CopySlices, against central differences, for x and for the op's other
 * operand w. PyTorch 1.13 gets w's second-order gradient wrong here (y[0:3].add_(w);
 * s = (y * y).sum(); gw = grad(s, w, create_graph); (gw * gw).sum().backward() gives w.grad
 * = 10 y where 8 y is right), so the conformance suite cannot check it. */
static void inplace_on_view_second_order(void)
{
    static const int64_t s34[2] = {3, 4}, s43[2] = {4, 3}, s4[1] = {4}, s24[2] = {2, 4};
    for (int op = 0; op < 2; op++)
        for (int tr = 0; tr < 2; tr++)
            for (int sel = 0; sel < 2; sel++) {
                view_inplace_ctx c = {op, tr, sel};
                gc_input in[2] = {{tr ? s43 : s34, 2, NULL, 0, 0, 1, 0},
                                  {sel ? s4 : s24, sel ? 1 : 2, NULL, 0, 0, 1, 0}};
                char name[96];
                snprintf(name, sizeof name, "%s on a %s of %s", op ? "mul_" : "add_",
                         sel ? "select" : "slice", tr ? "a transposed base" : "a base");
                CHECK(gradcheck(name, call_view_inplace, in, 2, &c));
                CHECK(gradgradcheck(name, call_view_inplace, in, 2, &c));
            }
}

/* ---- in-place ops on views of a tensor with gaps (the detach of a strided view), as PyTorch
 * allows them: the base's gradient is laid out with the gaps (CopySlices' empty_strided), and
 * other views of it regenerate their grad_fn over it. Values from PyTorch 1.13. ---- */

/* e = arange(16).reshape(4, 4)[:, ::2].detach(): [4, 2], strides (4, 2). */
static ag_tensor *gapped(void)
{
    double v[16];
    for (int i = 0; i < 16; i++) v[i] = i;
    static const int64_t s44[2] = {4, 4};
    ag_tensor *a, *s, *e;
    OK(ag_tensor_from_f64(&a, v, AG_FLOAT64, s44, 2));
    OK(ag_slice(&s, a, 1, 0, 4, 2));
    OK(ag_tensor_detach(&e, s));
    ag_tensor_release(s);
    ag_tensor_release(a);
    return e;
}

static double square_sum(ag_tensor *t, int backward)
{
    ag_tensor *sq, *s;
    OK(ag_mul(&sq, t, t));
    OK(ag_sum(&s, sq));
    double v = item(s);
    if (backward) OK(ag_backward(s, NULL, 0));
    ag_tensor_release(sq);
    ag_tensor_release(s);
    return v;
}

/* A custom identity whose output has gaps: a non-dense base with a history of its own, so
 * that CopySlices must hand a gradient laid out with gaps to that history. */
static int gapped_forward(ag_function_ctx *ctx, ag_tensor **outs, size_t n_out,
                          ag_tensor *const *ins, size_t n_in, void *ud)
{
    (void)ctx, (void)n_out, (void)n_in, (void)ud;
    static const int64_t s44[2] = {4, 4};
    ag_tensor *big, *cols;
    int rc = ag_zeros(&big, AG_FLOAT64, s44, 2);
    if (!rc) rc = ag_slice(&cols, big, 1, 0, 4, 2);
    if (!rc) {
        rc = ag_copy_(cols, ins[0]);
        if (!rc) rc = ag_tensor_detach(&outs[0], cols);
        ag_tensor_release(cols);
    }
    ag_tensor_release(big);
    return rc;
}

static int gapped_backward(ag_function_ctx *ctx, ag_tensor **gins, size_t n_in,
                           ag_tensor *const *gouts, size_t n_out, void *ud)
{
    (void)ctx, (void)n_in, (void)n_out, (void)ud;
    return ag_mul_scalar(&gins[0], gouts[0], 1.0);
}

/* y = Gapped(x); y[1] *= w; y * y + y[1] (y[1]'s grad_fn regenerated over the gapped base) */
static int call_gapped_inplace(ag_tensor **out, ag_tensor *const *in, void *ctx)
{
    (void)ctx;
    ag_tensor *y = NULL, *v = NULL, *sq = NULL, *x = in[0];
    int rc = ag_function_apply(&y, 1, &x, 1, "Gapped", gapped_forward, gapped_backward, 0, NULL,
                               NULL);
    if (!rc) rc = ag_select(&v, y, 0, 1);
    if (!rc) rc = ag_mul_(v, in[1]);
    if (!rc) rc = ag_mul(&sq, y, y);
    if (!rc) rc = ag_add(out, sq, v);
    ag_tensor_release(sq);
    ag_tensor_release(v);
    ag_tensor_release(y);
    return rc;
}

static void inplace_on_view_of_gapped_tensor(void)
{
    /* A: e[1] *= w; e.sum() */
    ag_tensor *e = gapped(), *w = leaf(2.0), *v, *s;
    OK(ag_select(&v, e, 0, 1));
    OK(ag_mul_(v, w));
    CHECK_STR(grad_fn_name(e), "CopySlices");
    CHECK_STR(grad_fn_name(v), "AsStridedBackward0");
    static const double want_e[8] = {0, 2, 8, 12, 8, 10, 12, 14};
    check_values("e after e[1] *= w", e, want_e, 8, 0);
    OK(ag_sum(&s, e));
    OK(ag_backward(s, NULL, 0));
    CHECK_CLOSE(grad_of(w), 10.0, 1e-15);
    ag_tensor_release(s);
    ag_tensor_release(v);
    ag_tensor_release(e);
    ag_tensor_release(w);

    /* B: (e * e).sum(); F: (v * v).sum() through v's regenerated grad_fn */
    for (int through_v = 0; through_v < 2; through_v++) {
        e = gapped(), w = leaf(2.0);
        OK(ag_select(&v, e, 0, 1));
        OK(ag_mul_(v, w));
        square_sum(through_v ? v : e, 1);
        CHECK_CLOSE(grad_of(w), 208.0, 1e-15);
        ag_tensor_release(v);
        ag_tensor_release(e);
        ag_tensor_release(w);
    }

    /* C: a column view made before the in-place op on a row follows it (AsStridedBackward0
     * over the gapped base) */
    ag_tensor *u;
    e = gapped(), w = leaf(2.0);
    OK(ag_select(&u, e, 1, 1));
    OK(ag_select(&v, e, 0, 1));
    OK(ag_mul_(v, w));
    static const double want_u[4] = {2, 12, 10, 14};
    check_values("column 1 after e[1] *= w", u, want_u, 4, 0);
    CHECK_STR(grad_fn_name(u), "AsStridedBackward0");
    OK(ag_sum(&s, u));
    OK(ag_backward(s, NULL, 0));
    CHECK_CLOSE(grad_of(w), 6.0, 1e-15);
    ag_tensor_release(s);
    ag_tensor_release(u);
    ag_tensor_release(v);
    ag_tensor_release(e);
    ag_tensor_release(w);

    /* D: e[1] += w2; G: e[:, 0] = 3 * w4 (copy_) */
    static const int64_t s2[1] = {2}, s4[1] = {4};
    static const double d2[2] = {0.5, -1.5}, d4[4] = {1, 2, 3, 4};
    ag_tensor *w2 = tensor_f64(d2, s2, 1, AG_FLOAT64), *w4 = tensor_f64(d4, s4, 1, AG_FLOAT64);
    OK(ag_tensor_set_requires_grad(w2, 1));
    OK(ag_tensor_set_requires_grad(w4, 1));
    e = gapped();
    OK(ag_select(&v, e, 0, 1));
    OK(ag_add_(v, w2));
    square_sum(e, 1);
    ag_tensor *g;
    OK(ag_tensor_grad(&g, w2));
    static const double want_w2[2] = {9, 9};
    check_values("w2.grad", g, want_w2, 2, 1e-15);
    ag_tensor_release(g);
    ag_tensor_release(v);
    ag_tensor_release(e);
    e = gapped();
    ag_tensor *c, *w43;
    OK(ag_select(&c, e, 1, 0));
    OK(ag_mul_scalar(&w43, w4, 3.0));
    OK(ag_copy_(c, w43));
    static const double want_e2[8] = {3, 2, 6, 6, 9, 10, 12, 14};
    check_values("e after e[:, 0] = 3 * w4", e, want_e2, 8, 0);
    square_sum(e, 1);
    OK(ag_tensor_grad(&g, w4));
    static const double want_w4[4] = {18, 36, 54, 72};
    check_values("w4.grad", g, want_w4, 4, 1e-15);
    ag_tensor_release(g);
    ag_tensor_release(w43);
    ag_tensor_release(c);
    ag_tensor_release(e);
    ag_tensor_release(w2);
    ag_tensor_release(w4);

    /* E: second order. (e * e).sum() = const + 52 w^2, so gw = 104 w = 208 and
     * d(gw^2)/dw = 2 * 104^2 * w = 43264. PyTorch 1.13 gives 43472 (its double backward
     * through CopySlices, see inplace_on_view_second_order). */
    e = gapped(), w = leaf(2.0);
    OK(ag_select(&v, e, 0, 1));
    OK(ag_mul_(v, w));
    ag_tensor *sq, *y, *gw, *gg;
    OK(ag_mul(&sq, e, e));
    OK(ag_sum(&y, sq));
    OK(ag_grad(&gw, &y, NULL, 1, &w, 1, AG_CREATE_GRAPH));
    CHECK_CLOSE(item(gw), 208.0, 1e-15);
    OK(ag_mul(&gg, gw, gw));
    OK(ag_backward(gg, NULL, 0));
    CHECK_CLOSE(grad_of(w), 43264.0, 1e-15);
    ag_tensor_release(gg);
    ag_tensor_release(gw);
    ag_tensor_release(y);
    ag_tensor_release(sq);
    ag_tensor_release(v);
    ag_tensor_release(e);
    ag_tensor_release(w);

    /* A gapped base with a history: its gradient goes to that history with the gaps, first
     * and second order against central differences. */
    static const int64_t s42[2] = {4, 2}, s2b[1] = {2};
    gc_input in[2] = {{s42, 2, NULL, 0, 0, 1, 0}, {s2b, 1, NULL, 0, 0, 1, 0}};
    CHECK(gradcheck("mul_ on a row of a gapped custom output", call_gapped_inplace, in, 2,
                    NULL));
    CHECK(gradgradcheck("mul_ on a row of a gapped custom output", call_gapped_inplace, in, 2,
                        NULL));
}

/* A contiguous output an op saves for backward (tanh's) is kept as a reference to its memory,
 * unpacked into a header of the formula's (graph.h, saved_var.by_storage): the version check
 * and its message, a second pass through the freed graph, retain_graph, create_graph, a
 * formula outliving the output's handle, and the same for a 0-d output. */
static void saved_output_by_storage(void)
{
    static const int64_t s23[2] = {2, 3};
    double d[6] = {-1.5, -0.25, 0, 0.5, 1, 2};
    for (int zero_d = 0; zero_d < 2; zero_d++) {
        ag_tensor *x, *y, *s, *g;
        OK(ag_tensor_from_f64(&x, zero_d ? d + 3 : d, AG_FLOAT64, s23, zero_d ? 0 : 2));
        OK(ag_tensor_set_requires_grad(x, 1));
        size_t n = zero_d ? 1 : 6;
        double y0[6], g1[6], g2[6];
        for (size_t i = 0; i < n; i++) {
            double xi = zero_d ? d[3] : d[i], t = tanh(xi);
            y0[i] = t;
            g1[i] = 1 - t * t;
            g2[i] = -2 * t * (1 - t * t);
        }
        /* modified in place after it was saved: backward refuses, naming it as PyTorch does */
        OK(ag_tanh(&y, x));
        OK(ag_mul_scalar_(y, 2.0));
        OK(ag_sum(&s, y));
        FAILS(AG_EVERSION, ag_backward(s, NULL, 0));
        CHECK(strstr(ag_last_error(), zero_d ? "[torch.DoubleTensor []], which is output 0 of "
                                               "TanhBackward0, is at version 1; expected "
                                               "version 0 instead"
                                             : "[torch.DoubleTensor [2, 3]], which is output 0 "
                                               "of TanhBackward0, is at version 1; expected "
                                               "version 0 instead"));
        ag_tensor_release(s);
        ag_tensor_release(y);
        /* the output's handle dropped before backward; retain_graph twice, then a pass that
         * frees the graph, then one that finds it freed */
        OK(ag_tanh(&y, x));
        check_values("tanh", y, y0, n, 1e-15);
        OK(ag_sum(&s, y));
        ag_tensor_release(y);
        for (int pass = 1; pass <= 3; pass++) {
            OK(ag_backward(s, NULL, pass < 3 ? AG_RETAIN_GRAPH : 0));
            OK(ag_tensor_grad(&g, x));
            double want[6];
            for (size_t i = 0; i < n; i++) want[i] = pass * g1[i];
            check_values("tanh grad, accumulated", g, want, n, 1e-14);
            ag_tensor_release(g);
        }
        FAILS(AG_EGRAPH, ag_backward(s, NULL, 0));
        CHECK(strstr(ag_last_error(), "backward through the graph a second time"));
        ag_tensor_release(s);
        OK(ag_tensor_set_grad(x, NULL));
        /* create_graph: the unpacked output has TanhBackward0 back as grad_fn, so the gradient
         * differentiates again: d2/dx2 tanh = -2 tanh (1 - tanh^2) */
        OK(ag_tanh(&y, x));
        check_two_orders("tanh, first and second order", x, y, g1, g2, n, 1e-14, 1e-14,
                         "TanhBackwardBackward0");
        ag_tensor_release(y);
        ag_tensor_release(x);
    }
}

/* abi/autograd.h, in-place operations: a backward through zero_ or fill_ of an expanded view of
 * a tensor that requires grad gives the gradient, zero where the view wrote, where PyTorch
 * 1.13 fails (its CopySlices copies the gradient into the expanded region in place). y = x * x
 * (x [2, 3]), its first row expanded to [3, 3] and filled: x.grad is 0 on that row, 2x on the
 * other; through the view itself, every gradient reaching x is 0. */
static void fill_of_expanded_view_backward(void)
{
    static const int64_t s23[2] = {2, 3}, s33[2] = {3, 3};
    double d[6] = {1, 2, 3, 4, 5, 6};
    for (int through_view = 0; through_view < 2; through_view++)
        for (int fill = 0; fill < 2; fill++) {
            ag_tensor *x, *y, *row, *e, *s, *g;
            OK(ag_tensor_from_f64(&x, d, AG_FLOAT64, s23, 2));
            OK(ag_tensor_set_requires_grad(x, 1));
            OK(ag_mul(&y, x, x));
            OK(ag_narrow(&row, y, 0, 0, 1));
            OK(ag_expand(&e, row, s33, 2));
            if (fill) OK(ag_fill_(e, 7.0));
            else OK(ag_zero_(e));
            OK(ag_sum(&s, through_view ? e : y));
            OK(ag_backward(s, NULL, 0));
            OK(ag_tensor_grad(&g, x));
            double want[6] = {0, 0, 0, 8, 10, 12};
            if (through_view) want[3] = want[4] = want[5] = 0;
            check_values("x.grad through fill_/zero_ of an expanded view", g, want, 6, 0);
            ag_tensor_release(g);
            ag_tensor_release(s);
            ag_tensor_release(e);
            ag_tensor_release(row);
            ag_tensor_release(y);
            ag_tensor_release(x);
        }
}

int main(void)
{
    saved_checked_without_gradient();
    fill_of_expanded_view_backward();
    saved_output_by_storage();
    retained_under_create_graph_freed();
    needs_input_grad_in_forward();
    inplace_on_view_second_order();
    inplace_on_view_of_gapped_tensor();
    handed_out_gradients_at_version_0();
    hook_replaces_grad_with_leaf();
    prepared_leaf_grad_unpublished_on_failure();
    copied_grad_as_pytorch_makes_it();
    seed_and_accumulation();
    backward_errors();
    higher_order();
    zerotensor_arithmetic();
    create_graph_free_graph();
    failed_commit_writes_nothing();
    grad_function();
    grad_input_node_does_not_run();
    grad_skips_hooks_of_unreached_outputs();
    custom_backward_without_gradients();
    leaf_requires_grad_cleared();
    mul_inplace_saves_what_is_needed();
    no_grad_and_detach();
    retain_grad();
    retain_grad_during_backward();
    hooks();
    many_hooks();
    hook_removes_itself();
    hook_added_during_backward();
    reentrant_backward_through_own_node();
    custom_function();
    hooks_across_inplace();
    views_behind_inplace();
    view_follows_base_requiring_grad_later();
    custom_view_output();
    custom_function_rules();
    custom_int_output();
    saved_output_alias_hooks();
    alias_retained_during_pass();
    inplace_semantics();
    anomaly();
    deep_graph();
    graph_inspection();
    return harness_finish("test_autograd");
}
