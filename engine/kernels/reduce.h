/*
 * reduce.h: deterministic reductions over any set of dimensions of a strided tensor.
 *
 * Each output element is reduced by one fixed procedure chosen from the layout alone:
 * contiguous runs are summed in fixed-size chunks (REDUCE_CHUNK elements, 16 accumulators
 * each) whose partials are combined in chunk order; other layouts accumulate in row-major
 * order of the reduced index. Threads split outputs, or chunks of one output, but never
 * change that procedure: results are bitwise identical for every thread count. float32
 * sums accumulate in double and round once.
 */
#ifndef AG_REDUCE_H
#define AG_REDUCE_H

#include "../tensor.h"

#define REDUCE_CHUNK 16384

typedef enum reduce_kind {
    RK_SUM,    /* float/int64 sum; bool input counts as int64 */
    RK_MAX,    /* NaN propagates */
    RK_MIN,
    RK_ARGMAX, /* index of the first maximum (NaN counts as maximal); values too */
    RK_ARGMIN
} reduce_kind;

/** Reduces x over the dims with mask[d] set. `vals` (may be NULL for arg kinds) and `idx`
 *  (int64, arg kinds only) are contiguous tensors holding prod(kept sizes) elements in
 *  row-major order of the kept dims (their own shape may include keepdim 1s). vals has x's
 *  dtype, or int64 for RK_SUM over int64/bool. Indices count in the flattened reduced space.
 *  Reductions over zero elements give 0 for sums; callers refuse them for max/min.
 *  Fails only with E_NOMEM (partial-sum buffers). */
eng_err reduce_kernel(tensor *vals, tensor *idx, const tensor *x, const bool *mask, reduce_kind k);

#endif
