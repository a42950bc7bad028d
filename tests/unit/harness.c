/*
 * harness.c: checks and finite-difference gradient checks for the C unit tests.
 */
#include "harness.h"

#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

int harness_failures;
char harness_sentinel;

int harness_finish(const char *suite)
{
    if (harness_failures) {
        printf("%s: %d check(s) failed\n", suite, harness_failures);
        return 1;
    }
    printf("%s: all checks passed\n", suite);
    return 0;
}

static void die(const char *what)
{
    fprintf(stderr, "fatal: %s: %s\n", what, ag_last_error());
    exit(2);
}

ag_tensor *tensor_f64(const double *data, const int64_t *shape, size_t ndim, ag_dtype dt)
{
    ag_tensor *t;
    if (ag_tensor_from_f64(&t, data, dt, shape, ndim)) die("ag_tensor_from_f64");
    return t;
}

ag_tensor *vec(ag_dtype dt, size_t n, const double *data)
{
    int64_t shape[1] = {(int64_t)n};
    return tensor_f64(data, shape, 1, dt);
}

double *values(const ag_tensor *t, int64_t *numel)
{
    int64_t n;
    if (ag_tensor_numel(&n, t)) die("ag_tensor_numel");
    double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    if (!v || ag_tensor_copy_f64(v, (size_t)n, t)) die("ag_tensor_copy_f64");
    if (numel) *numel = n;
    return v;
}

const char *grad_fn_name(const ag_tensor *t)
{
    /* Names are static strings for built-in nodes; custom ones live in their node, so the
     * copy below keeps the answer valid after the release. */
    static _Thread_local char buf[128];
    ag_node *n;
    if (ag_tensor_grad_fn(&n, t)) die("ag_tensor_grad_fn");
    if (!n) return "";
    const char *name;
    ag_node_name(&name, n);
    snprintf(buf, sizeof buf, "%s", name);
    ag_node_release(n);
    return buf;
}

void check_values(const char *what, const ag_tensor *t, const double *want, size_t n, double tol)
{
    int64_t got_n;
    double *got = values(t, &got_n);
    if ((size_t)got_n != n) {
        fprintf(stderr, "%s: %lld elements, expected %zu\n", what, (long long)got_n, n);
        harness_failures++;
    } else {
        for (size_t i = 0; i < n; i++) {
            bool both_nan = isnan(got[i]) && isnan(want[i]);
            if (!both_nan && got[i] != want[i] && /* (equal infinities included) */
                !(fabs(got[i] - want[i]) <= tol * (1 + fabs(want[i])))) {
                fprintf(stderr, "%s: element %zu = %.17g, expected %.17g\n", what, i, got[i],
                        want[i]);
                harness_failures++;
                break;
            }
        }
    }
    free(got);
}

void check_two_orders(const char *what, ag_tensor *x, ag_tensor *y, const double *d1,
                      const double *d2, size_t n, double tol1, double tol2, const char *bw_name)
{
    ag_tensor *s, *g, *gs, *gg;
    OK(ag_sum(&s, y));
    OK(ag_grad(&g, &s, NULL, 1, &x, 1, AG_CREATE_GRAPH));
    check_values(what, g, d1, n, tol1);
    if (bw_name) CHECK_STR(grad_fn_name(g), bw_name);
    OK(ag_sum(&gs, g));
    OK(ag_grad(&gg, &gs, NULL, 1, &x, 1, 0));
    check_values(what, gg, d2, n, tol2);
    ag_tensor_release(gg);
    ag_tensor_release(gs);
    ag_tensor_release(g);
    ag_tensor_release(s);
}

/* ---- gradient checks ---- */
static uint64_t lcg_state;
static double lcg_uniform(void)
{
    lcg_state = lcg_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(lcg_state >> 11) / 9007199254740992.0;
}

typedef struct gc_state {
    const gc_input *in;
    size_t n;
    double **host;
    int64_t *numel;
    gc_fn f;
    void *ctx;
} gc_state;

static void gc_setup(gc_state *s, const gc_input *in, size_t n, gc_fn f, void *ctx)
{
    s->in = in;
    s->n = n;
    s->f = f;
    s->ctx = ctx;
    s->host = calloc(n, sizeof *s->host);
    s->numel = calloc(n, sizeof *s->numel);
    lcg_state = 0x5eed;
    for (size_t i = 0; i < n; i++) {
        int64_t m = 1;
        for (size_t d = 0; d < in[i].ndim; d++) m *= in[i].shape[d];
        s->numel[i] = m;
        s->host[i] = malloc((size_t)(m ? m : 1) * sizeof(double));
        double lo = in[i].lo < in[i].hi ? in[i].lo : -1, hi = in[i].lo < in[i].hi ? in[i].hi : 1;
        for (int64_t k = 0; k < m; k++)
            s->host[i][k] = in[i].data ? in[i].data[k] : lo + (hi - lo) * lcg_uniform();
    }
}

static void gc_teardown(gc_state *s)
{
    for (size_t i = 0; i < s->n; i++) free(s->host[i]);
    free(s->host);
    free(s->numel);
}

static void make_inputs(const gc_state *s, ag_tensor **t)
{
    for (size_t i = 0; i < s->n; i++) {
        ag_dtype dt = s->in[i].dtype ? s->in[i].dtype : AG_FLOAT64;
        t[i] = tensor_f64(s->host[i], s->in[i].shape, s->in[i].ndim, dt);
        if (s->in[i].requires_grad && ag_tensor_set_requires_grad(t[i], 1))
            die("ag_tensor_set_requires_grad");
    }
}

static void free_inputs(const gc_state *s, ag_tensor **t)
{
    for (size_t i = 0; i < s->n; i++) ag_tensor_release(t[i]);
}

/* L = sum(y * w) as a double, evaluated without recording. */
static double eval_dot(const gc_state *s, const double *w)
{
    ag_tensor *t[16], *y;
    int prev = ag_set_grad_enabled(0);
    make_inputs(s, t);
    if (s->f(&y, t, s->ctx)) die("function under test");
    int64_t m;
    double *v = values(y, &m), acc = 0;
    for (int64_t k = 0; k < m; k++) acc += v[k] * w[k];
    free(v);
    ag_tensor_release(y);
    free_inputs(s, t);
    ag_set_grad_enabled(prev);
    return acc;
}

/* First-order gradients dL/dx_i (each a malloc'd array, zeros where unused), computed by
 * ag_grad; with create_graph, also returns the graph-carrying gradient tensors. */
static void analytic_grads(const gc_state *s, const double *w, double **g, ag_tensor **inputs,
                           ag_tensor **grads, unsigned flags)
{
    ag_tensor *y, *wt, *yw, *L;
    if (s->f(&y, inputs, s->ctx)) die("function under test");
    int64_t shape[8];
    size_t nd;
    ag_tensor_ndim(&nd, y);
    ag_tensor_shape(shape, 8, y);
    wt = tensor_f64(w, shape, nd, AG_FLOAT64);
    if (ag_mul(&yw, y, wt) || ag_sum(&L, yw)) die("building the loss");
    ag_tensor *diff[16];
    size_t nd_in = 0;
    size_t map[16];
    for (size_t i = 0; i < s->n; i++)
        if (s->in[i].requires_grad) {
            map[nd_in] = i;
            diff[nd_in++] = inputs[i];
        }
    ag_tensor *res[16] = {0};
    int req;
    ag_tensor_requires_grad(&req, L);
    if (req && ag_grad(res, &L, NULL, 1, diff, nd_in, flags | AG_ALLOW_UNUSED)) die("ag_grad");
    for (size_t k = 0; k < nd_in; k++) {
        size_t i = map[k];
        if (res[k]) {
            int64_t m;
            double *v = values(res[k], &m);
            memcpy(g[i], v, (size_t)m * sizeof(double));
            free(v);
        } else {
            memset(g[i], 0, (size_t)s->numel[i] * sizeof(double));
        }
        if (grads) grads[i] = res[k];
        else ag_tensor_release(res[k]);
    }
    ag_tensor_release(L);
    ag_tensor_release(yw);
    ag_tensor_release(wt);
    ag_tensor_release(y);
}

static double *output_weights(const gc_state *s)
{
    ag_tensor *t[16], *y;
    int prev = ag_set_grad_enabled(0);
    make_inputs(s, t);
    if (s->f(&y, t, s->ctx)) die("function under test");
    int64_t m;
    ag_tensor_numel(&m, y);
    ag_tensor_release(y);
    free_inputs(s, t);
    ag_set_grad_enabled(prev);
    double *w = malloc((size_t)(m ? m : 1) * sizeof *w);
    for (int64_t k = 0; k < m; k++) w[k] = 0.5 + lcg_uniform();
    return w;
}

static int compare(const char *name, const char *order, size_t i, int64_t k, double a, double n)
{
    if (fabs(a - n) <= 1e-5 + 1e-3 * fabs(n)) return 1;
    fprintf(stderr, "%s: %s gradient of input %zu element %lld: analytical %.10g, numerical %.10g\n",
            name, order, i, (long long)k, a, n);
    harness_failures++;
    return 0;
}

int gradcheck(const char *name, gc_fn f, const gc_input *inputs, size_t n, void *ctx)
{
    gc_state s;
    gc_setup(&s, inputs, n, f, ctx);
    double *w = output_weights(&s);
    double *g[16];
    for (size_t i = 0; i < n; i++) g[i] = calloc((size_t)(s.numel[i] ? s.numel[i] : 1), sizeof(double));
    ag_tensor *t[16];
    make_inputs(&s, t);
    analytic_grads(&s, w, g, t, NULL, 0);
    free_inputs(&s, t);
    int ok = 1;
    const double eps = 1e-6;
    for (size_t i = 0; i < n && ok; i++) {
        if (!inputs[i].requires_grad) continue;
        for (int64_t k = 0; k < s.numel[i] && ok; k++) {
            double keep = s.host[i][k];
            s.host[i][k] = keep + eps;
            double lp = eval_dot(&s, w);
            s.host[i][k] = keep - eps;
            double lm = eval_dot(&s, w);
            s.host[i][k] = keep;
            ok = compare(name, "first-order", i, k, g[i][k], (lp - lm) / (2 * eps));
        }
    }
    for (size_t i = 0; i < n; i++) free(g[i]);
    free(w);
    gc_teardown(&s);
    return ok;
}

int gradgradcheck(const char *name, gc_fn f, const gc_input *inputs, size_t n, void *ctx)
{
    gc_state s;
    gc_setup(&s, inputs, n, f, ctx);
    double *w = output_weights(&s);
    double *g[16], *v[16], *gp[16], *gm[16], *h[16];
    for (size_t i = 0; i < n; i++) {
        size_t m = (size_t)(s.numel[i] ? s.numel[i] : 1);
        g[i] = calloc(m, sizeof(double));
        gp[i] = calloc(m, sizeof(double));
        gm[i] = calloc(m, sizeof(double));
        h[i] = calloc(m, sizeof(double));
        v[i] = malloc(m * sizeof(double));
        for (size_t k = 0; k < m; k++) v[i][k] = 0.5 + lcg_uniform();
    }
    /* Analytical: S = sum_i <dL/dx_i, v_i>, differentiated again. */
    ag_tensor *t[16], *grads[16] = {0};
    make_inputs(&s, t);
    analytic_grads(&s, w, g, t, grads, AG_CREATE_GRAPH);
    ag_tensor *S = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!grads[i]) continue;
        int64_t shape[8];
        size_t nd;
        ag_tensor_ndim(&nd, grads[i]);
        ag_tensor_shape(shape, 8, grads[i]);
        ag_tensor *vt = tensor_f64(v[i], shape, nd, AG_FLOAT64), *p, *ps;
        if (ag_mul(&p, grads[i], vt) || ag_sum(&ps, p)) die("building S");
        ag_tensor_release(vt);
        ag_tensor_release(p);
        if (S) {
            ag_tensor *sum;
            if (ag_add(&sum, S, ps)) die("building S");
            ag_tensor_release(S);
            ag_tensor_release(ps);
            S = sum;
        } else {
            S = ps;
        }
    }
    int req = 0;
    if (S) ag_tensor_requires_grad(&req, S);
    if (req) {
        ag_tensor *diff[16], *res[16] = {0};
        size_t map[16], nd_in = 0;
        for (size_t i = 0; i < n; i++)
            if (inputs[i].requires_grad) {
                map[nd_in] = i;
                diff[nd_in++] = t[i];
            }
        if (ag_grad(res, &S, NULL, 1, diff, nd_in, AG_ALLOW_UNUSED)) die("second ag_grad");
        for (size_t k = 0; k < nd_in; k++) {
            if (!res[k]) continue;
            double *vals = values(res[k], NULL);
            memcpy(h[map[k]], vals, (size_t)s.numel[map[k]] * sizeof(double));
            free(vals);
            ag_tensor_release(res[k]);
        }
    }
    ag_tensor_release(S);
    for (size_t i = 0; i < n; i++) ag_tensor_release(grads[i]);
    free_inputs(&s, t);
    /* Numerical: central differences of S through first-order gradients. */
    int ok = 1;
    const double eps = 1e-6;
    for (size_t i = 0; i < n && ok; i++) {
        if (!inputs[i].requires_grad) continue;
        for (int64_t k = 0; k < s.numel[i] && ok; k++) {
            double keep = s.host[i][k];
            double sp = 0, sm = 0;
            s.host[i][k] = keep + eps;
            make_inputs(&s, t);
            analytic_grads(&s, w, gp, t, NULL, 0);
            free_inputs(&s, t);
            s.host[i][k] = keep - eps;
            make_inputs(&s, t);
            analytic_grads(&s, w, gm, t, NULL, 0);
            free_inputs(&s, t);
            s.host[i][k] = keep;
            for (size_t j = 0; j < n; j++) {
                if (!inputs[j].requires_grad) continue;
                for (int64_t q = 0; q < s.numel[j]; q++) {
                    sp += gp[j][q] * v[j][q];
                    sm += gm[j][q] * v[j][q];
                }
            }
            ok = compare(name, "second-order", i, k, h[i][k], (sp - sm) / (2 * eps));
        }
    }
    for (size_t i = 0; i < n; i++) {
        free(g[i]);
        free(gp[i]);
        free(gm[i]);
        free(h[i]);
        free(v[i]);
    }
    free(w);
    gc_teardown(&s);
    return ok;
}

/* ---- a test allocator ---- */
static atomic_long alloc_live, alloc_countdown = -1;
static atomic_size_t alloc_refuse_from;

static void *harness_alloc(size_t n, void *ud)
{
    (void)ud;
    /* (the countdown passes 0 once: exactly one allocation is refused) */
    if (atomic_fetch_sub(&alloc_countdown, 1) == 0) return NULL;
    size_t from = atomic_load(&alloc_refuse_from);
    if (from && n >= from) return NULL;
    void *p = malloc(n);
    if (p) atomic_fetch_add(&alloc_live, 1);
    return p;
}

static void harness_free(void *p, void *ud)
{
    (void)ud;
    if (p) {
        atomic_fetch_sub(&alloc_live, 1);
        free(p);
    }
}

const ag_allocator harness_allocator = {harness_alloc, harness_free, NULL};

long harness_alloc_live(void) { return atomic_load(&alloc_live); }
void harness_alloc_fail_nth(long n) { atomic_store(&alloc_countdown, n); }
void harness_alloc_refuse_from(size_t bytes) { atomic_store(&alloc_refuse_from, bytes); }
