/*
 * test_oom.c: allocation failure at every allocation point (SQLite's OOM testing). Each
 * scenario runs with an allocator that fails its n-th allocation, for n = 0, 1, 2, ... until
 * the scenario succeeds; every failure must return AG_ENOMEM, leave the inputs as they were
 * (values, .grad, version counters) and leak nothing.
 */
#include <math.h>
#include <string.h>

#include "harness.h"

static long live, countdown = -1;

static void *failing_alloc(size_t n, void *ud)
{
    (void)ud;
    if (countdown == 0) return NULL;
    if (countdown > 0) countdown--;
    void *p = malloc(n);
    if (p) live++;
    return p;
}

static void counting_free(void *p, void *ud)
{
    (void)ud;
    if (p) {
        live--;
        free(p);
    }
}

static const ag_allocator allocator = {failing_alloc, counting_free, NULL};

typedef int (*scenario)(void *ctx);

/* Runs s with failure injected at each point in turn; returns the number of failure points. */
static int inject(const char *name, scenario s, void *ctx, int (*unchanged)(void *ctx))
{
    for (long n = 0; n < 100000; n++) {
        long before = live;
        countdown = n;
        int rc = s(ctx);
        countdown = -1;
        if (rc == AG_OK) return (int)n;
        if (rc != AG_ENOMEM) {
            fprintf(stderr, "%s: failure point %ld returned %s (%s), expected AG_ENOMEM\n", name,
                    n, ag_status_name(rc), ag_last_error());
            harness_failures++;
            return -1;
        }
        if (live != before) {
            fprintf(stderr, "%s: failure point %ld leaked %ld allocation(s)\n", name, n,
                    live - before);
            harness_failures++;
            return -1;
        }
        if (unchanged && !unchanged(ctx)) {
            fprintf(stderr, "%s: failure point %ld changed its inputs\n", name, n);
            harness_failures++;
            return -1;
        }
    }
    fprintf(stderr, "%s: never succeeded\n", name);
    harness_failures++;
    return -1;
}

typedef struct fixture {
    ag_tensor *x, *w, *root;
    ag_tensor *out;
    double grad0; /* x.grad[0] before the scenario (NaN: none) */
    int64_t version;
} fixture;

static double first_grad(ag_tensor *t)
{
    ag_tensor *g;
    if (ag_tensor_grad(&g, t) || !g) return NAN;
    double *v = values(g, NULL), r = v[0];
    free(v);
    ag_tensor_release(g);
    return r;
}

static int forward(void *p)
{
    fixture *f = p;
    ag_tensor *a, *b, *c;
    int rc = ag_mul(&a, f->x, f->w);
    if (rc) return rc;
    rc = ag_add_scalar(&b, a, 1.0);
    ag_tensor_release(a);
    if (rc) return rc;
    rc = ag_sum(&c, b);
    ag_tensor_release(b);
    if (rc) return rc;
    ag_tensor_release(c);
    return AG_OK;
}

static int backward(void *p)
{
    fixture *f = p;
    return ag_backward(f->root, NULL, AG_RETAIN_GRAPH);
}

static int grad_unchanged(void *p)
{
    fixture *f = p;
    double g = first_grad(f->x);
    return (isnan(g) && isnan(f->grad0)) || g == f->grad0;
}

static int inplace(void *p)
{
    fixture *f = p;
    return ag_mul_(f->out, f->w);
}

static int inplace_scalar(void *p)
{
    fixture *f = p;
    return ag_mul_scalar_(f->out, 5.0);
}

/* A pass that writes several .grad: x1's (which has one: added in place, or with
 * create_graph replaced by a sum), x2's (none yet: set) and r's (retained). A failure at
 * any allocation, commit's included, must leave all three as they were. */
typedef struct multi {
    ag_tensor *x1, *x2, *r, *root, *g1;
    unsigned flags;
} multi;

static int multi_backward(void *p)
{
    multi *m = p;
    return ag_backward(m->root, NULL, AG_RETAIN_GRAPH | m->flags);
}

static int multi_unchanged(void *p)
{
    multi *m = p;
    ag_tensor *g1, *g2, *gr;
    OK(ag_tensor_grad(&g1, m->x1));
    OK(ag_tensor_grad(&g2, m->x2));
    OK(ag_tensor_grad(&gr, m->r));
    double *v = g1 ? values(g1, NULL) : NULL;
    int64_t ver = -1;
    if (g1) OK(ag_tensor_version(&ver, g1));
    int same = g1 == m->g1 && v && v[0] == 10 && v[1] == 20 && ver == 0 && !g2 && !gr;
    free(v);
    ag_tensor_release(g1);
    ag_tensor_release(g2);
    ag_tensor_release(gr);
    return same;
}

static void multi_commit(unsigned flags, const char *name)
{
    multi m = {.flags = flags};
    double d[2] = {1, 2}, g[2] = {10, 20};
    m.x1 = vec(AG_FLOAT64, 2, d);
    m.x2 = vec(AG_FLOAT64, 2, d);
    m.g1 = vec(AG_FLOAT64, 2, g);
    OK(ag_tensor_set_requires_grad(m.x1, 1));
    OK(ag_tensor_set_requires_grad(m.x2, 1));
    OK(ag_tensor_set_grad(m.x1, m.g1));
    ag_tensor *rr;
    OK(ag_mul(&m.r, m.x1, m.x2));
    OK(ag_tensor_retain_grad(m.r));
    OK(ag_mul(&rr, m.r, m.r));
    OK(ag_sum(&m.root, rr));
    ag_tensor_release(rr);
    CHECK(inject(name, multi_backward, &m, multi_unchanged) > 0);
    CHECK_CLOSE(first_grad(m.x2), 2.0, 0); /* d/dx2 sum((x1 x2)^2) = 2 x1^2 x2 at 1, 1 */
    OK(ag_tensor_set_grad(m.x1, NULL)); /* (create_graph: break the cycles) */
    OK(ag_tensor_set_grad(m.x2, NULL));
    OK(ag_tensor_set_grad(m.r, NULL));
    ag_tensor *all[] = {m.x1, m.x2, m.r, m.root, m.g1};
    for (int k = 0; k < 5; k++) ag_tensor_release(all[k]);
}

/* A formula's gradient that must be summed down to its input's shape (b's, broadcast in
 * x * b): a serial pass sums it as it sends, after x's gradient went out along the edge
 * before, which a failure there must take back. */
typedef struct bcast {
    ag_tensor *x, *b, *root;
} bcast;

static int bcast_backward(void *p)
{
    return ag_backward(((bcast *)p)->root, NULL, AG_RETAIN_GRAPH);
}

static int bcast_unchanged(void *p)
{
    bcast *c = p;
    return isnan(first_grad(c->x)) && isnan(first_grad(c->b));
}

static void broadcast_backward(void)
{
    bcast c;
    double xd[6] = {1, 2, 3, 4, 5, 6}, bd[3] = {1, 1, 1};
    int64_t s23[2] = {2, 3};
    ag_tensor *x1 = vec(AG_FLOAT64, 6, xd), *y;
    OK(ag_reshape(&c.x, x1, s23, 2));
    ag_tensor_release(x1);
    c.b = vec(AG_FLOAT64, 3, bd);
    OK(ag_tensor_set_requires_grad(c.x, 1));
    OK(ag_tensor_set_requires_grad(c.b, 1));
    OK(ag_mul(&y, c.x, c.b));
    OK(ag_sum(&c.root, y));
    ag_tensor_release(y);
    CHECK(inject("broadcast backward", bcast_backward, &c, bcast_unchanged) > 0);
    CHECK_CLOSE(first_grad(c.x), 1.0, 0); /* b */
    CHECK_CLOSE(first_grad(c.b), 5.0, 0); /* x summed over its rows: 1 + 4 */
    ag_tensor_release(c.x);
    ag_tensor_release(c.b);
    ag_tensor_release(c.root);
}

/* 3 everywhere: the gradient of sum(t * 3) with respect to t's present value. */
static int retained_is_three(ag_tensor *t, ag_tensor *root_of)
{
    ag_tensor *z, *s, *g;
    OK(ag_mul_scalar(&z, root_of, 3.0));
    OK(ag_sum(&s, z));
    OK(ag_backward(s, NULL, 0));
    ag_tensor_release(s);
    ag_tensor_release(z);
    if (ag_tensor_grad(&g, t) || !g) return 0;
    int64_t n;
    double *v = values(g, &n);
    int ok = 1;
    for (int64_t i = 0; i < n; i++) ok &= v[i] == 3.0;
    free(v);
    ag_tensor_release(g);
    return ok;
}

static int version_unchanged(void *p)
{
    fixture *f = p;
    int64_t v;
    ag_tensor_version(&v, f->out);
    return v == f->version;
}

static int views(void *p)
{
    fixture *f = p;
    ag_tensor *a, *b, *c;
    int64_t shape[2] = {4, 2};
    int rc = ag_reshape(&a, f->x, shape, 2);
    if (rc) return rc;
    rc = ag_transpose(&b, a, 0, 1);
    ag_tensor_release(a);
    if (rc) return rc;
    rc = ag_contiguous(&c, b);
    ag_tensor_release(b);
    if (rc) return rc;
    ag_tensor_release(c);
    return AG_OK;
}

static int to_string(void *p)
{
    fixture *f = p;
    char *s;
    int rc = ag_tensor_to_string(&s, f->x);
    if (!rc) ag_string_free(s);
    return rc;
}

static int creation(void *p)
{
    (void)p;
    double d[3] = {1, 2, 3};
    int64_t shape[1] = {3};
    ag_tensor *t;
    int rc = ag_tensor_from_f64(&t, d, AG_FLOAT32, shape, 1);
    if (!rc) ag_tensor_release(t);
    return rc;
}

/* A leaf that requires grad in one call: the tensor and its meta in one block (a float dtype,
 * tensor_new_scalar_leaf); a failure leaves out as it was. */
static int scalar_leaf(void *p)
{
    (void)p;
    ag_tensor *t = NULL;
    int rc = ag_tensor_scalar_requires_grad(&t, 2.5, AG_FLOAT32, 1);
    if (rc && t) {
        fprintf(stderr, "scalar leaf: a failed call wrote its out-parameter\n");
        harness_failures++;
    }
    if (!rc) ag_tensor_release(t);
    return rc;
}

/* Blocks go back to the allocator that made them, whichever is installed when they die: 40
 * distinct allocators (one per userdata), each making a tensor that outlives the switch to
 * the next, and one installed twice (its record reused). Each counts its own blocks. (Up to
 * now the library kept 16 allocator slots in a ring: the 17th reused the first one's, and
 * the first one's blocks were freed through the 17th.) */
enum { N_ALLOCATORS = 40 };
static long owned[N_ALLOCATORS];

static void *owning_alloc(size_t n, void *ud)
{
    void *p = malloc(n);
    if (p) owned[(long *)ud - owned]++;
    return p;
}

static void owning_free(void *p, void *ud)
{
    if (p) {
        owned[(long *)ud - owned]--;
        free(p);
    }
}

static void many_allocators(void)
{
    ag_tensor *t[N_ALLOCATORS + 1];
    for (int k = 0; k <= N_ALLOCATORS; k++) {
        int which = k < N_ALLOCATORS ? k : 3; /* the last one again */
        ag_allocator a = {owning_alloc, owning_free, &owned[which]};
        OK(ag_set_allocator(&a));
        OK(ag_tensor_scalar(&t[k], k, AG_FLOAT32));
        CHECK(owned[which] > 0);
    }
    OK(ag_set_allocator(NULL));
    ag_tensor *u;
    OK(ag_tensor_scalar(&u, 1, AG_FLOAT32)); /* the default allocator's */
    /* Released after every switch, in reverse: each block must reach its own allocator. */
    for (int k = N_ALLOCATORS; k >= 0; k--) ag_tensor_release(t[k]);
    ag_tensor_release(u);
    for (int k = 0; k < N_ALLOCATORS; k++) {
        CHECK(owned[k] == 0);
        if (owned[k]) fprintf(stderr, "allocator %d: %ld block(s) not given back to it\n", k, owned[k]);
    }
    ag_allocator bad = {owning_alloc, NULL, NULL};
    FAILS(AG_EINVAL, ag_set_allocator(&bad));
}

/* An allocator whose blocks are 8 bytes off 16-byte alignment: the library aligns its own
 * (nodes are alignas(16): such blocks crashed in node_layout, misaligned vector stores). */
static long odd_live;
static void *odd_alloc(size_t n, void *ud)
{
    (void)ud;
    char *p = malloc(n + 8);
    if (!p) return NULL;
    odd_live++;
    return p + 8;
}
static void odd_free(void *p, void *ud)
{
    (void)ud;
    if (p) {
        odd_live--;
        free((char *)p - 8);
    }
}

static void misaligned_allocator(void)
{
    ag_allocator a = {odd_alloc, odd_free, NULL};
    OK(ag_set_allocator(&a));
    double xd[5] = {1, 2, 3, 4, 5};
    ag_tensor *x = vec(AG_FLOAT64, 5, xd), *y, *s, *g;
    OK(ag_tensor_set_requires_grad(x, 1));
    OK(ag_mul(&y, x, x));
    OK(ag_sum(&s, y));
    OK(ag_backward(s, NULL, 0));
    OK(ag_tensor_grad(&g, x));
    double got[5];
    OK(ag_tensor_copy_f64(got, 5, g));
    for (int i = 0; i < 5; i++) CHECK(got[i] == 2 * xd[i]);
    ag_tensor_release(g);
    ag_tensor_release(s);
    ag_tensor_release(y);
    ag_tensor_release(x);
    OK(ag_set_allocator(NULL));
    CHECK(odd_live == 0);
}

int main(void)
{
    OK(ag_set_num_threads(1)); /* one allocation order */
    many_allocators();
    misaligned_allocator();
    OK(ag_set_allocator(&allocator));
    fixture f;
    double xd[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    f.x = vec(AG_FLOAT64, 8, xd);
    f.w = vec(AG_FLOAT64, 8, xd);
    OK(ag_tensor_set_requires_grad(f.x, 1));
    ag_tensor *a, *b;
    OK(ag_mul(&a, f.x, f.w));
    OK(ag_mul(&b, a, a));
    OK(ag_sum(&f.root, b));
    ag_tensor_release(a);
    ag_tensor_release(b);

    CHECK(inject("creation", creation, &f, NULL) > 0);
    CHECK(inject("scalar leaf", scalar_leaf, NULL, NULL) == 1); /* one block for both */
    CHECK(inject("forward", forward, &f, NULL) > 0);
    CHECK(inject("views", views, &f, NULL) > 0);
    CHECK(inject("to_string", to_string, &f, NULL) > 0);
    /* backward into a leaf without .grad, then into one with .grad */
    f.grad0 = first_grad(f.x);
    CHECK(inject("first backward", backward, &f, grad_unchanged) > 0);
    CHECK_CLOSE(first_grad(f.x), 2.0, 0); /* d/dx sum((xw)^2) = 2 x w^2 at x = w = 1 */
    f.grad0 = first_grad(f.x);
    CHECK(inject("accumulating backward", backward, &f, grad_unchanged) > 0);
    CHECK_CLOSE(first_grad(f.x), 4.0, 0);
    multi_commit(0, "backward writing several .grad");
    multi_commit(AG_CREATE_GRAPH, "backward writing several .grad, create_graph");
    broadcast_backward();
    /* in-place with history: the version must not move on failure */
    ag_tensor *y;
    OK(ag_mul_scalar(&y, f.x, 1.0));
    f.out = y;
    ag_tensor_version(&f.version, y);
    CHECK(inject("in-place", inplace, &f, version_unchanged) > 0);
    /* in-place on a tensor that retains its gradient, and through a view of one: what the
     * retained gradient needs at the new grad_fn is allocated before the data changes (it
     * was allocated after, so a failure there changed the data and lost the retained grad) */
    ag_tensor *r, *base, *view;
    OK(ag_mul_scalar(&r, f.x, 1.0));
    OK(ag_tensor_retain_grad(r));
    f.out = r;
    ag_tensor_version(&f.version, r);
    CHECK(inject("in-place, retained", inplace_scalar, &f, version_unchanged) > 0);
    CHECK(retained_is_three(r, r));
    OK(ag_mul_scalar(&base, f.x, 1.0));
    OK(ag_tensor_retain_grad(base));
    OK(ag_narrow(&view, base, 0, 2, 3));
    OK(ag_tensor_retain_grad(view));
    f.out = view;
    ag_tensor_version(&f.version, view);
    CHECK(inject("in-place through a view, retained", inplace_scalar, &f, version_unchanged) > 0);
    CHECK(retained_is_three(base, base));
    ag_tensor_release(view);
    ag_tensor_release(base);
    ag_tensor_release(r);

    ag_tensor_release(y);
    ag_tensor_release(f.root);
    ag_tensor_release(f.x);
    ag_tensor_release(f.w);
    CHECK(live == 0);
    if (live) fprintf(stderr, "%ld allocation(s) still live at exit\n", live);
    OK(ag_set_allocator(NULL));
    return harness_finish("test_oom");
}
