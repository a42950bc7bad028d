/*
 * reduce_common.h: what reduction ops share: which dims to reduce, the output shape, and how
 * to broadcast a gradient back over the reduced dims.
 */
#ifndef AG_REDUCE_COMMON_H
#define AG_REDUCE_COMMON_H

#include "../ops.h"

typedef struct reduce_plan {
    bool mask[MAX_DIMS]; /* dims reduced */
    bool keepdim;
    bool all;            /* no dims given: everything */
    int in_ndim, out_ndim;
    int64_t in_shape[MAX_DIMS];
    int64_t out_shape[MAX_DIMS];
    int64_t count;       /* elements reduced into each output */
} reduce_plan;

/** Validates dims (negative allowed, no repeats; NULL/0 = all) and fills the plan. */
eng_err reduce_dims_prepare(const tensor *a, const int64_t *dims, int ndims, bool keepdim,
                            reduce_plan *p);
/** g (the output's gradient) reshaped with the reduced dims as 1 and expanded to the input's
 *  shape: a view, differentiable. */
eng_err reduce_expand_grad(tensor **out, tensor *g, const reduce_plan *p);
/** Raw sum over the plan (float stays float; int64/bool give int64). No autograd. */
eng_err sum_raw(tensor **out, tensor *a, const reduce_plan *p);

#endif
