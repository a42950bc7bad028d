/*
 * scalar_sweep.c: the `scalar` workload at several graph sizes, timing building the graph,
 * backward and releasing it separately. It shows where the `scalar` time goes: the cost per
 * node grows with the graph once its objects no longer fit in the caches (docs/performance.md).
 *
 * usage: scalar_sweep [--reps R] [TRIPLES ...]     (default: 500 2000 5000 20000)
 * Runs on one thread (OMP_NUM_THREADS or ag_set_num_threads do not matter: a chain of 0-d
 * nodes never runs in parallel). Prints ns per node (4 nodes per triple), medians.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "autograd.h"

#define CK(call)                                                                           \
    do {                                                                                   \
        if ((call) != AG_OK) {                                                             \
            fprintf(stderr, "scalar_sweep: %s failed: %s\n", #call, ag_last_error());      \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* One repetition with n triples: phase times in ns, into t[0..2]. */
static void rep(int n, const float *vals, ag_tensor **leaf, double t[3])
{
    double t0 = now_ns();
    ag_tensor *s, *p, *q, *r, *s2;
    CK(ag_tensor_scalar(&s, 0.0, AG_FLOAT32));
    for (int i = 0; i < n; i++) {
        ag_tensor **l = &leaf[3 * i];
        for (int j = 0; j < 3; j++) {
            CK(ag_tensor_scalar(&l[j], vals[3 * i + j], AG_FLOAT32));
            CK(ag_tensor_set_requires_grad(l[j], 1));
        }
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
    double t1 = now_ns();
    CK(ag_backward(s, NULL, 0));
    double t2 = now_ns();
    ag_tensor_release(s);
    for (int i = 0; i < 3 * n; i++) ag_tensor_release(leaf[i]);
    double t3 = now_ns();
    t[0] = t1 - t0;
    t[1] = t2 - t1;
    t[2] = t3 - t2;
}

int main(int argc, char **argv)
{
    int reps = 15, sizes[32], nsizes = 0;
    for (int a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--reps") && a + 1 < argc) reps = atoi(argv[++a]);
        else if (nsizes < 32 && atoi(argv[a]) > 0) sizes[nsizes++] = atoi(argv[a]);
        else {
            fprintf(stderr, "usage: scalar_sweep [--reps R] [TRIPLES ...]\n");
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    if (!nsizes) {
        static const int def[] = {500, 2000, 5000, 20000};
        for (nsizes = 0; nsizes < 4; nsizes++) sizes[nsizes] = def[nsizes];
    }
    CK(ag_set_num_threads(1));
    printf("%8s %10s %10s %10s %10s   (ns per node, medians of %d)\n", "triples", "forward",
           "backward", "release", "total", reps);
    for (int k = 0; k < nsizes; k++) {
        int n = sizes[k];
        float *vals = malloc((size_t)n * 3 * sizeof *vals);
        ag_tensor **leaf = malloc((size_t)n * 3 * sizeof *leaf);
        double *ph[4];
        for (int p = 0; p < 4; p++) ph[p] = malloc((size_t)reps * sizeof(double));
        if (!vals || !leaf || !ph[0] || !ph[1] || !ph[2] || !ph[3]) {
            fprintf(stderr, "scalar_sweep: out of memory\n");
            return 1;
        }
        for (int i = 0; i < 3 * n; i++) vals[i] = (float)((i % 17) - 8) / 8.0f;
        double t[3];
        rep(n, vals, leaf, t); /* warm-up: fills the allocator's pools */
        for (int r = 0; r < reps; r++) {
            rep(n, vals, leaf, t);
            double per = 1.0 / (4.0 * n);
            ph[0][r] = t[0] * per;
            ph[1][r] = t[1] * per;
            ph[2][r] = t[2] * per;
            ph[3][r] = (t[0] + t[1] + t[2]) * per;
        }
        printf("%8d %10.0f %10.0f %10.0f %10.0f\n", n, median(ph[0], reps), median(ph[1], reps),
               median(ph[2], reps), median(ph[3], reps));
        for (int p = 0; p < 4; p++) free(ph[p]);
        free(leaf);
        free(vals);
    }
    return 0;
}
