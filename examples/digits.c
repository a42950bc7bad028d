/*
 * digits.c: trains a 64-128-10 ReLU network on the 8x8 handwritten digits (data/digits.csv.gz)
 * with the full loop (zero_grad, forward, loss, backward, step) and reports test accuracy.
 * The Lua and Go versions (examples/digits.lua, examples/digits/) follow the same steps with
 * the same seeds, so all three print the same numbers.
 *
 * usage: digits [path/to/digits.csv.gz]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "autograd.h"

#ifndef AG_DATA_DIR
#define AG_DATA_DIR "data"
#endif

enum { ROWS = 1797, PIXELS = 64, CLASSES = 10, TRAIN = 1500, HIDDEN = 128, EPOCHS = 60, BATCH = 32 };

static void check(int rc, const char *what)
{
    if (rc != AG_OK) {
        fprintf(stderr, "digits: %s failed: %s\n", what, ag_last_error());
        exit(1);
    }
}

/* The shuffle: a 64-bit LCG (Knuth's MMIX constants) and Fisher-Yates, written the same way
 * in every language so the three demos see the same batches. */
static uint64_t lcg = 0;
static uint64_t rand_below(uint64_t n)
{
    lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
    return (lcg >> 33) % n;
}
static void shuffle(int64_t *a, int64_t n)
{
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)rand_below((uint64_t)i + 1), t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

static void load(const char *path, float *x, int64_t *y)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "gzip -dc '%s'", path);
    FILE *f = popen(cmd, "r");
    if (!f) {
        perror("digits: gzip");
        exit(1);
    }
    for (int r = 0; r < ROWS; r++) {
        for (int c = 0; c <= PIXELS; c++) {
            double v;
            if (fscanf(f, "%lf%*[,\n]", &v) != 1) {
                fprintf(stderr, "digits: %s: bad data at row %d\n", path, r);
                exit(1);
            }
            if (c < PIXELS) x[r * PIXELS + c] = (float)(v / 16.0);
            else y[r] = (int64_t)v;
        }
    }
    if (pclose(f) != 0) {
        fprintf(stderr, "digits: could not read %s\n", path);
        exit(1);
    }
}

/* torch.nn.Linear's initialisation: weight and bias uniform in +-1/sqrt(fan_in). */
static ag_tensor *uniform_param(ag_generator *g, const int64_t *shape, size_t ndim, int64_t fan_in)
{
    ag_tensor *u, *centred, *p;
    double bound = 1.0 / sqrt((double)fan_in);
    check(ag_rand(&u, g, AG_FLOAT32, shape, ndim), "ag_rand");
    check(ag_sub_scalar(&centred, u, 0.5), "ag_sub_scalar");
    check(ag_mul_scalar(&p, centred, 2.0 * bound), "ag_mul_scalar");
    check(ag_tensor_set_requires_grad(p, 1), "ag_tensor_set_requires_grad");
    ag_tensor_release(u);
    ag_tensor_release(centred);
    return p;
}

static ag_tensor *index_tensor(const int64_t *idx, int64_t n)
{
    ag_tensor *t;
    check(ag_tensor_from_data(&t, idx, AG_INT64, &n, 1), "ag_tensor_from_data");
    return t;
}

static ag_tensor *rows(ag_tensor *all, const int64_t *idx, int64_t n)
{
    ag_tensor *i = index_tensor(idx, n), *r;
    check(ag_index_select(&r, all, 0, i), "ag_index_select");
    ag_tensor_release(i);
    return r;
}

typedef struct model {
    ag_tensor *w1, *b1, *w2, *b2;
} model;

static ag_tensor *forward(const model *m, ag_tensor *x)
{
    ag_tensor *h, *a, *logits;
    check(ag_linear(&h, x, m->w1, m->b1), "ag_linear");
    check(ag_relu(&a, h), "ag_relu");
    check(ag_linear(&logits, a, m->w2, m->b2), "ag_linear");
    ag_tensor_release(h);
    ag_tensor_release(a);
    return logits;
}

static double accuracy(const model *m, ag_tensor *x, ag_tensor *y)
{
    int prev = ag_set_grad_enabled(0);
    ag_tensor *logits = forward(m, x), *pred, *hit, *count;
    check(ag_argmax(&pred, logits, 1, 0), "ag_argmax");
    check(ag_eq(&hit, pred, y), "ag_eq");
    check(ag_sum(&count, hit), "ag_sum");
    double c, n;
    int64_t numel;
    check(ag_tensor_item(&c, count), "ag_tensor_item");
    check(ag_tensor_numel(&numel, y), "ag_tensor_numel");
    n = (double)numel;
    ag_tensor_release(count);
    ag_tensor_release(hit);
    ag_tensor_release(pred);
    ag_tensor_release(logits);
    ag_set_grad_enabled(prev);
    return c / n;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : AG_DATA_DIR "/digits.csv.gz";
    static float xs[ROWS * PIXELS];
    static int64_t ys[ROWS];
    load(path, xs, ys);

    int64_t xshape[2] = {ROWS, PIXELS}, yshape[1] = {ROWS};
    ag_tensor *x_all, *y_all;
    check(ag_tensor_from_data(&x_all, xs, AG_FLOAT32, xshape, 2), "ag_tensor_from_data");
    check(ag_tensor_from_data(&y_all, ys, AG_INT64, yshape, 1), "ag_tensor_from_data");

    int64_t perm[ROWS];
    for (int i = 0; i < ROWS; i++) perm[i] = i;
    shuffle(perm, ROWS);
    ag_tensor *x_train = rows(x_all, perm, TRAIN), *y_train = rows(y_all, perm, TRAIN);
    ag_tensor *x_test = rows(x_all, perm + TRAIN, ROWS - TRAIN);
    ag_tensor *y_test = rows(y_all, perm + TRAIN, ROWS - TRAIN);

    ag_generator *gen;
    check(ag_generator_new(&gen, 0), "ag_generator_new");
    int64_t s_w1[2] = {HIDDEN, PIXELS}, s_b1[1] = {HIDDEN}, s_w2[2] = {CLASSES, HIDDEN},
            s_b2[1] = {CLASSES};
    model m = {uniform_param(gen, s_w1, 2, PIXELS), uniform_param(gen, s_b1, 1, PIXELS),
               uniform_param(gen, s_w2, 2, HIDDEN), uniform_param(gen, s_b2, 1, HIDDEN)};
    ag_tensor *params[4] = {m.w1, m.b1, m.w2, m.b2};
    ag_optimizer *opt;
    check(ag_optimizer_adam(&opt, params, 4, 3e-3, 0.9, 0.999, 1e-8, 0.0, 0), "ag_optimizer_adam");

    printf("digits: %d training and %d test images, %d-%d-%d ReLU network, Adam lr 3e-3, batch %d\n",
           TRAIN, ROWS - TRAIN, PIXELS, HIDDEN, CLASSES, BATCH);
    int64_t order[TRAIN];
    for (int i = 0; i < TRAIN; i++) order[i] = i;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int epoch = 1; epoch <= EPOCHS; epoch++) {
        shuffle(order, TRAIN);
        double loss_sum = 0;
        int batches = 0;
        for (int b = 0; b < TRAIN; b += BATCH) {
            int64_t n = TRAIN - b < BATCH ? TRAIN - b : BATCH;
            ag_tensor *xb = rows(x_train, order + b, n), *yb = rows(y_train, order + b, n);
            check(ag_optimizer_zero_grad(opt, 1), "ag_optimizer_zero_grad");
            ag_tensor *logits = forward(&m, xb), *loss;
            check(ag_cross_entropy(&loss, logits, yb, NULL, AG_REDUCTION_MEAN, -100, 0.0),
                  "ag_cross_entropy");
            check(ag_backward(loss, NULL, 0), "ag_backward");
            check(ag_optimizer_step(opt), "ag_optimizer_step");
            double l;
            check(ag_tensor_item(&l, loss), "ag_tensor_item");
            loss_sum += l;
            batches++;
            ag_tensor_release(loss);
            ag_tensor_release(logits);
            ag_tensor_release(xb);
            ag_tensor_release(yb);
        }
        if (epoch == 1 || epoch % 10 == 0) {
            clock_gettime(CLOCK_MONOTONIC, &t1);
            printf("epoch %2d/%d  loss %.4f  train_accuracy %.4f  (%.2f s)\n", epoch, EPOCHS,
                   loss_sum / batches, accuracy(&m, x_train, y_train),
                   (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
        }
        fflush(stdout);
    }
    printf("test_accuracy=%.4f\n", accuracy(&m, x_test, y_test));

    ag_optimizer_release(opt);
    for (int i = 0; i < 4; i++) ag_tensor_release(params[i]);
    ag_generator_release(gen);
    ag_tensor *all[] = {x_all, y_all, x_train, y_train, x_test, y_test};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) ag_tensor_release(all[i]);
    return 0;
}
