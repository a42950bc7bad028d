/*
 * scalar_floor.c: a floor for the `scalar` workload, to read its target against. The least an
 * autograd engine does for s = sum_i tanh(a_i * b_i + c_i) and s.backward(), written out for
 * this one graph and nothing else: 0-d float values, reference counts, a node per operation
 * with edges and saved values, an accumulator per leaf, dependency counting and a ready
 * stack for backward, .grad on the leaves, then everything freed. No dtypes, shapes, views,
 * threads, atomics, version counters, hooks, error handling or library boundary; objects are
 * carved in creation order from an arena that is reset after each repetition (the best
 * layout there is, and freeing costs nothing but the reference counts).
 *
 * usage: scalar_floor [--reps R]
 * Prints ns per graph node (4 per triple), phase by phase, at the sizes of
 * `bench scalar-sweep`, so the two tables compare line by line. Not part of bench/run.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timing.h"

typedef struct val val;
typedef struct nod nod;
struct val {
    long refs;
    float v;
    val *grad; /* a leaf's .grad */
    nod *fn;   /* its node: the operation that made it, or a leaf's accumulator */
    int leaf;
};
enum { MUL, ADD, TANH, ACC };
struct nod {
    long refs;
    int op, n_next, deps;
    nod *next[2];
    val *saved[2];
    val *leaf; /* ACC: the leaf it accumulates into (held) */
    val *gin;  /* the gradient gathered so far (backward) */
};

/* The arena: objects in creation order. */
static char *arena, *top;
static void *carve(size_t n)
{
    void *p = top;
    top += (n + 15) & ~(size_t)15;
    return p;
}
static val *val_new(float v)
{
    val *t = carve(sizeof *t);
    *t = (val){.refs = 1, .v = v};
    return t;
}
static nod *nod_new(int op, int n_next)
{
    nod *n = carve(sizeof *n);
    *n = (nod){.refs = 1, .op = op, .n_next = n_next};
    return n;
}

/* Releasing: iterative, as a real engine must be for deep graphs (80 000 nodes here). */
static nod **dying;
static int n_dying;
static void nod_release(nod *n)
{
    if (n && --n->refs == 0) dying[n_dying++] = n;
}
static void val_release(val *t)
{
    if (!t || --t->refs) return;
    val_release(t->grad);
    if (!t->leaf) nod_release(t->fn); /* (a leaf's accumulator does not hold it) */
}
static void drain(void)
{
    while (n_dying) {
        nod *n = dying[--n_dying];
        for (int i = 0; i < 2; i++) {
            val_release(n->saved[i]);
            nod_release(n->next[i]);
        }
        val_release(n->leaf);
        val_release(n->gin);
    }
}

/* The node that receives the gradient of t: its history, or its accumulator. */
static nod *edge_of(val *t)
{
    if (!t->fn) {
        t->fn = nod_new(ACC, 0);
        t->fn->leaf = t;
        t->refs++;
        t->fn->refs = 0; /* held by the nodes that use it (and the leaf, weakly) */
    }
    t->fn->refs++;
    return t->fn;
}

static val *op(int k, val *a, val *b)
{
    val *r = val_new(k == MUL ? a->v * b->v : k == ADD ? a->v + b->v : tanhf(a->v));
    nod *n = nod_new(k, k == TANH ? 1 : 2);
    n->next[0] = edge_of(a);
    if (k != TANH) n->next[1] = edge_of(b);
    if (k == MUL) { /* saves its inputs */
        a->refs++;
        b->refs++;
        n->saved[0] = a;
        n->saved[1] = b;
    } else if (k == TANH) { /* saves its output (a copy: the output holds the node) */
        n->saved[0] = val_new(r->v);
    }
    r->fn = n;
    return r;
}

static nod **stack;
static void backward(val *root)
{
    /* count each node's incoming edges */
    int sp = 0;
    nod *r = root->fn;
    r->deps = 0;
    stack[sp++] = r;
    while (sp) {
        nod *n = stack[--sp];
        for (int i = 0; i < n->n_next; i++) {
            nod *m = n->next[i];
            if (m->deps++ == 0) stack[sp++] = m;
        }
    }
    /* run every node whose gradients are all in */
    r->gin = val_new(1);
    stack[sp++] = r;
    while (sp) {
        nod *n = stack[--sp];
        val *g = n->gin, *out[2] = {NULL, NULL};
        n->gin = NULL;
        if (n->op == ACC) {
            val *l = n->leaf;
            if (l->grad) {
                l->grad->v += g->v;
                val_release(g);
            } else {
                l->grad = g;
            }
            continue;
        }
        if (n->op == ADD) {
            out[0] = out[1] = g;
            g->refs++;
        } else if (n->op == MUL) {
            out[0] = val_new(g->v * n->saved[1]->v);
            out[1] = val_new(g->v * n->saved[0]->v);
            val_release(g);
        } else {
            float y = n->saved[0]->v;
            out[0] = val_new(g->v * (1 - y * y));
            val_release(g);
        }
        for (int i = 0; i < 2; i++) { /* the graph is freed as it runs (no retain_graph) */
            val_release(n->saved[i]);
            n->saved[i] = NULL;
        }
        drain();
        for (int i = 0; i < n->n_next; i++) {
            nod *m = n->next[i];
            if (m->gin) {
                m->gin->v += out[i]->v;
                val_release(out[i]);
            } else {
                m->gin = out[i];
            }
            if (--m->deps == 0) stack[sp++] = m;
        }
    }
}

/* One graph of n triples; phase[0..2]: seconds in forward, backward, release. */
static void graph(int n, const float *v, val **leaf, double *phase)
{
    top = arena;
    double t0 = now();
    val *s = val_new(0);
    for (int i = 0; i < n; i++) {
        val **l = &leaf[3 * i];
        for (int j = 0; j < 3; j++) {
            l[j] = val_new(v[3 * i + j]);
            l[j]->leaf = 1;
        }
        val *p = op(MUL, l[0], l[1]), *q = op(ADD, p, l[2]), *r = op(TANH, q, NULL);
        val *s2 = op(ADD, s, r);
        val_release(p);
        val_release(q);
        val_release(r);
        val_release(s);
        drain();
        s = s2;
    }
    double t1 = now();
    backward(s);
    double t2 = now();
    val_release(s);
    drain();
    for (int i = 0; i < 3 * n; i++) {
        val_release(leaf[i]);
        drain();
    }
    phase[0] = t1 - t0;
    phase[1] = t2 - t1;
    phase[2] = now() - t2;
}

int main(int argc, char **argv)
{
    int reps = 15;
    if (argc == 3 && !strcmp(argv[1], "--reps")) reps = atoi(argv[2]);
    else if (argc != 1) {
        fprintf(stderr, "usage: scalar_floor [--reps R]\n");
        return 2;
    }
    if (reps < 1 || reps > 1000) reps = 15;
    enum { N_MAX = 20000 };
    static const int sizes[] = {500, 2000, 5000, 10000, N_MAX};
    arena = malloc((size_t)N_MAX * 2048);
    dying = malloc(sizeof *dying * 16 * N_MAX);
    stack = malloc(sizeof *stack * 16 * N_MAX);
    val **leaf = malloc(sizeof *leaf * 3 * N_MAX);
    float *v = malloc(sizeof *v * 3 * N_MAX);
    double *ph[4];
    for (int p = 0; p < 4; p++) ph[p] = malloc(sizeof(double) * (size_t)reps);
    if (!arena || !dying || !stack || !leaf || !v || !ph[0] || !ph[1] || !ph[2] || !ph[3]) {
        fprintf(stderr, "scalar_floor: out of memory\n");
        return 1;
    }
    memset(arena, 0, (size_t)N_MAX * 2048); /* (no page faults in the timed runs) */
    for (int i = 0; i < 3 * N_MAX; i++) v[i] = (float)rand() / (float)RAND_MAX - 0.5f;
    printf("%8s %10s %10s %10s %10s   (ns per node, medians of %d)\n", "triples", "forward",
           "backward", "release", "total", reps);
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        int n = sizes[k];
        double t[3], per = 1e9 / (4.0 * n);
        graph(n, v, leaf, t); /* warm-up */
        for (int r = 0; r < reps; r++) {
            graph(n, v, leaf, t);
            for (int p = 0; p < 3; p++) ph[p][r] = t[p] * per;
            ph[3][r] = (t[0] + t[1] + t[2]) * per;
        }
        for (int p = 0; p < 4; p++) qsort(ph[p], (size_t)reps, sizeof(double), cmp_double);
        printf("%8d %10.0f %10.0f %10.0f %10.0f\n", n, ph[0][reps / 2], ph[1][reps / 2],
               ph[2][reps / 2], ph[3][reps / 2]);
    }
    return 0;
}
