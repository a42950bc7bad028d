/*
 * harness.h: the C unit tests' toolkit: checks that say what was expected and what came, and
 * finite-difference gradient checks (first and second order) through the public ABI.
 */
#ifndef AG_TEST_HARNESS_H
#define AG_TEST_HARNESS_H

#include <stdio.h>
#include <stdlib.h>

#include "autograd.h"

extern int harness_failures;

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);       \
            harness_failures++;                                                            \
        }                                                                                  \
    } while (0)

/* A call that must succeed. */
#define OK(call)                                                                           \
    do {                                                                                   \
        int rc_ = (call);                                                                  \
        if (rc_ != AG_OK) {                                                                \
            fprintf(stderr, "%s:%d: %s returned %s: %s\n", __FILE__, __LINE__, #call,      \
                    ag_status_name(rc_), ag_last_error());                                 \
            harness_failures++;                                                            \
        }                                                                                  \
    } while (0)

/* A call that must fail with `status`. */
#define FAILS(status, call)                                                                \
    do {                                                                                   \
        int rc_ = (call);                                                                  \
        if (rc_ != (status)) {                                                             \
            fprintf(stderr, "%s:%d: %s returned %s, expected %s (%s)\n", __FILE__, __LINE__, \
                    #call, ag_status_name(rc_), ag_status_name(status), ag_last_error());  \
            harness_failures++;                                                            \
        }                                                                                  \
    } while (0)

/* An out-parameter value no call may overwrite when it fails (harness.c owns the object). */
extern char harness_sentinel;
#define SENT ((ag_tensor *)(void *)&harness_sentinel)

/* A call ag_fn(&out, args...) that must fail with `status` and leave out as it was. */
#define FAILS_OUT(status, fn, ...)                                                         \
    do {                                                                                   \
        ag_tensor *o_ = SENT;                                                              \
        FAILS(status, fn(&o_, __VA_ARGS__));                                               \
        CHECK(o_ == SENT);                                                                 \
    } while (0)

#define CHECK_CLOSE(got, want, tol)                                                        \
    do {                                                                                   \
        double g_ = (got), w_ = (want);                                                    \
        if (!(fabs(g_ - w_) <= (tol) * (1 + fabs(w_)))) {                                   \
            fprintf(stderr, "%s:%d: %s = %.17g, expected %.17g\n", __FILE__, __LINE__, #got, \
                    g_, w_);                                                               \
            harness_failures++;                                                            \
        }                                                                                  \
    } while (0)

#define CHECK_STR(got, want)                                                               \
    do {                                                                                   \
        const char *g_ = (got), *w_ = (want);                                              \
        if (!g_ || strcmp(g_, w_) != 0) {                                                  \
            fprintf(stderr, "%s:%d: %s = \"%s\", expected \"%s\"\n", __FILE__, __LINE__,   \
                    #got, g_ ? g_ : "(null)", w_);                                         \
            harness_failures++;                                                            \
        }                                                                                  \
    } while (0)

/** Prints the summary and returns the process status. */
int harness_finish(const char *suite);

/* ---- tensors from literals ---- */
/** A float64 (or other dtype) tensor from doubles; aborts the test on failure. */
ag_tensor *tensor_f64(const double *data, const int64_t *shape, size_t ndim, ag_dtype dt);
/** A tensor of `n` values (1-d). */
ag_tensor *vec(ag_dtype dt, size_t n, const double *data);
/** Reads all elements as doubles into a malloc'd array. */
double *values(const ag_tensor *t, int64_t *numel);
/** The grad_fn name of t ("" for leaves). */
const char *grad_fn_name(const ag_tensor *t);
/** Asserts that t's values equal want[0..n) within tol (relative + absolute). */
void check_values(const char *what, const ag_tensor *t, const double *want, size_t n, double tol);
/** Asserts that d sum(y) / dx, taken under AG_CREATE_GRAPH, equals d1[0..n) within tol1 (and
 *  that its grad_fn is bw_name, unless NULL), and that the derivative of its sum equals
 *  d2[0..n) within tol2: first and second order of y = f(x), x a leaf of n elements. */
void check_two_orders(const char *what, ag_tensor *x, ag_tensor *y, const double *d1,
                      const double *d2, size_t n, double tol1, double tol2, const char *bw_name);

/* ---- gradient checks (float64) ---- */
/** A differentiable function of n inputs (borrowed); stores its output in *out. */
typedef int (*gc_fn)(ag_tensor **out, ag_tensor *const *in, void *ctx);

typedef struct gc_input {
    const int64_t *shape;
    size_t ndim;
    const double *data; /* NULL: random in [-1, 1] (or [lo, hi]) from a fixed seed */
    double lo, hi;      /* range for random data when lo < hi */
    int requires_grad;  /* 0: a constant input (e.g. a target) */
    ag_dtype dtype;     /* 0 = float64; AG_INT64 for index inputs (never differentiated) */
} gc_input;

/** Compares the analytical gradient of sum(f(x) * w) (w random) with central differences,
 *  for every input that requires grad. Returns 1 if it matches, printing the first mismatch
 *  otherwise. `name` labels failures. */
int gradcheck(const char *name, gc_fn f, const gc_input *inputs, size_t n, void *ctx);
/** Second order: the gradient of the first-order gradients (built with AG_CREATE_GRAPH)
 *  against central differences of the first-order gradients. */
int gradgradcheck(const char *name, gc_fn f, const gc_input *inputs, size_t n, void *ctx);

/* ---- a test allocator (for ag_set_allocator) ---- */
/** Over malloc; counts its live blocks and refuses what the two settings below say. Safe to
 *  use from several threads (the library allocates on its worker threads too). */
extern const ag_allocator harness_allocator;
/** Blocks harness_allocator has handed out and not yet taken back. */
long harness_alloc_live(void);
/** Refuses the n-th allocation from now (0: the next one), then none; -1: none. */
void harness_alloc_fail_nth(long n);
/** Refuses every block of at least `bytes` bytes while set; 0: none. */
void harness_alloc_refuse_from(size_t bytes);

#endif
