/*
 * iter.c: broadcast-aware strided iteration (see iter.h).
 */
#include "iter.h"

#include <string.h>

#include "../parallel.h"

void iter_init(iter *it, tensor *out, tensor *const *ins, int nin)
{
    int nd = out->ndim;
    it->nargs = nin + 1;
    it->numel = out->numel;
    if (it->numel == 0) {
        /* Nothing to visit; an empty tensor's strides may be too large to scale to bytes. */
        it->ndim = 1;
        it->shape[0] = 0;
        for (int k = 0; k < it->nargs; k++) {
            it->data[k] = NULL;
            it->strides[k][0] = 0;
        }
        return;
    }
    /* Gather per-operand byte strides in the output's dim order (outermost first). */
    int64_t st[ITER_MAX_ARGS][MAX_DIMS];
    tensor *ops[ITER_MAX_ARGS];
    ops[0] = out;
    for (int k = 0; k < nin; k++) ops[k + 1] = ins[k];
    for (int k = 0; k < it->nargs; k++) {
        tensor *t = ops[k];
        int64_t es = (int64_t)dtype_size((dtype)t->dtype);
        it->data[k] = (char *)tensor_data(t);
        for (int d = 0; d < nd; d++) {
            int td = t->ndim - nd + d;
            st[k][d] = (td < 0 || t->shape[td] == 1) ? 0 : t->strides[td] * es;
        }
    }
    /* Order dims innermost-first by the output's stride (stable: ties keep the row-major
     * order), so in-place ops on transposed views still walk memory forward. */
    int perm[MAX_DIMS], n = 0;
    for (int d = nd - 1; d >= 0; d--) {
        int64_t s = st[0][d] < 0 ? -st[0][d] : st[0][d];
        int j = n++;
        while (j > 0) {
            int p = perm[j - 1];
            int64_t ps = st[0][p] < 0 ? -st[0][p] : st[0][p];
            if (ps <= s) break;
            perm[j] = p;
            j--;
        }
        perm[j] = d;
    }
    /* Drop size-1 dims and merge dims that are contiguous for every operand. */
    it->ndim = 0;
    for (int j = 0; j < nd; j++) {
        int d = perm[j];
        int64_t sz = out->shape[d];
        if (sz == 1) continue;
        if (it->ndim > 0) {
            int m = it->ndim - 1;
            bool merge = true;
            for (int k = 0; k < it->nargs && merge; k++)
                merge = st[k][d] == it->strides[k][m] * it->shape[m];
            if (merge) {
                it->shape[m] *= sz;
                continue;
            }
        }
        it->shape[it->ndim] = sz;
        for (int k = 0; k < it->nargs; k++) it->strides[k][it->ndim] = st[k][d];
        it->ndim++;
    }
    if (it->ndim == 0) {
        it->ndim = 1;
        it->shape[0] = 1;
        for (int k = 0; k < it->nargs; k++) it->strides[k][0] = 0;
    }
}

bool iter_is_flat(const iter *it, const size_t *elem_sizes)
{
    if (it->ndim != 1) return false;
    for (int k = 0; k < it->nargs; k++)
        if (it->strides[k][0] != (int64_t)elem_sizes[k]) return false;
    return true;
}

typedef struct run_ctx {
    const iter *it;
    iter_loop loop;
    void *ctx;
} run_ctx;

static void run_range(void *p, int64_t lo, int64_t hi)
{
    const run_ctx *rc = p;
    const iter *it = rc->it;
    int64_t idx[MAX_DIMS];
    char *ptr[ITER_MAX_ARGS];
    int64_t inner[ITER_MAX_ARGS];
    /* Multi-index of lo. */
    int64_t rem = lo;
    for (int d = 0; d < it->ndim; d++) {
        idx[d] = rem % it->shape[d];
        rem /= it->shape[d];
    }
    for (int k = 0; k < it->nargs; k++) {
        char *p0 = it->data[k];
        for (int d = 0; d < it->ndim; d++) p0 += idx[d] * it->strides[k][d];
        ptr[k] = p0;
        inner[k] = it->strides[k][0];
    }
    int64_t cur = lo;
    while (cur < hi) {
        int64_t n = it->shape[0] - idx[0];
        if (n > hi - cur) n = hi - cur;
        rc->loop(ptr, inner, n, rc->ctx);
        cur += n;
        if (cur >= hi) break;
        /* Advance to the start of the next inner run. */
        for (int k = 0; k < it->nargs; k++) ptr[k] += (it->shape[0] - idx[0]) * it->strides[k][0];
        idx[0] = 0;
        for (int k = 0; k < it->nargs; k++) ptr[k] -= it->shape[0] * it->strides[k][0];
        for (int d = 1; d < it->ndim; d++) {
            idx[d]++;
            for (int k = 0; k < it->nargs; k++) ptr[k] += it->strides[k][d];
            if (idx[d] < it->shape[d]) break;
            for (int k = 0; k < it->nargs; k++) ptr[k] -= it->shape[d] * it->strides[k][d];
            idx[d] = 0;
        }
    }
}

void iter_run(const iter *it, iter_loop loop, void *ctx, int64_t grain)
{
    if (it->numel == 0) return;
    run_ctx rc = {it, loop, ctx};
    par_for(it->numel, grain, run_range, &rc);
}
