/*
 * iter.h: walks an output tensor and inputs broadcast to its shape, one inner run at a time.
 *
 * Dimensions are reordered by the output's strides (innermost first) and merged wherever
 * every operand is contiguous across them, so a contiguous op becomes one flat run and the
 * inner loop can vectorise. The element range is cut into chunks by a grain (par_for), so the
 * work done for each element never depends on the thread count.
 */
#ifndef AG_ITER_H
#define AG_ITER_H

#include "../tensor.h"

#define ITER_MAX_ARGS 4

typedef struct iter {
    int nargs;   /* operand 0 is the output */
    int ndim;    /* >= 1; dim 0 is the innermost */
    int64_t numel;
    int64_t shape[MAX_DIMS];
    int64_t strides[ITER_MAX_ARGS][MAX_DIMS]; /* in bytes; 0 on broadcast dims */
    char *data[ITER_MAX_ARGS];
} iter;

/** Sets up out = f(ins...) with every input broadcast to out's shape (the caller has checked
 *  that they broadcast). */
void iter_init(iter *it, tensor *out, tensor *const *ins, int nin);

/** An inner loop: n elements; data[k] advances by strides[k] bytes per element. */
typedef void (*iter_loop)(char **data, const int64_t *strides, int64_t n, void *ctx);

/** Runs loop over every element, in parallel chunks of `grain` elements. */
void iter_run(const iter *it, iter_loop loop, void *ctx, int64_t grain);

/** True when every operand is one contiguous run with its own element size as stride. */
bool iter_is_flat(const iter *it, const size_t *elem_sizes);

#endif
