/*
 * ewise.c: broadcasting, dtype conversion and dispatch for elementwise kernels.
 */
#include "ewise.h"

#include "../defer.h"

#include <string.h>

eng_err cast_raw(tensor **out, tensor *t, dtype dt)
{
    if (t->dtype == dt) {
        tensor_retain(t);
        *out = t;
        return E_OK;
    }
    tensor *r = tensor_new(dt, t->shape, t->ndim);
    if (!r) return err_kind();
    kernel_copy(r, t);
    *out = r;
    return E_OK;
}

eng_err require_float(const tensor *t, const char *op)
{
    if (dtype_is_float((dtype)t->dtype)) return E_OK;
    return err_set(E_DTYPE, "%s is only defined for float32 and float64 tensors, got %s", op,
                   dtype_name((dtype)t->dtype));
}

eng_err bool_sub_error(bool two)
{
    if (two)
        return err_set(E_DTYPE, "Subtraction, the `-` operator, with two bool tensors is not "
                       "supported. Use the `^` or `logical_xor()` operator instead.");
    return err_set(E_DTYPE, "Subtraction, the `-` operator, with a bool tensor is not supported. "
                   "If you are trying to invert a mask, use the `~` or `logical_not()` operator "
                   "instead.");
}

eng_err unary_float_dtype(const tensor *t, const char *op, dtype *out)
{
    if (t->dtype == DT_BOOL)
        return err_set(E_DTYPE, "%s is not defined for bool tensors", op);
    *out = dtype_is_float((dtype)t->dtype) ? (dtype)t->dtype : DT_DEFAULT_FLOAT;
    return E_OK;
}

/* Inputs converted to idt. Those already of idt are used as they are (borrowed: no
 * reference traffic on the hot path); conversions are new tensors, released by uncast. */
static eng_err cast_all(tensor **cast, tensor *const *ins, int nin, dtype idt)
{
    for (int k = 0; k < nin; k++) {
        if (ins[k]->dtype == idt) {
            cast[k] = ins[k];
            continue;
        }
        tensor *c = tensor_new(idt, ins[k]->shape, ins[k]->ndim);
        if (!c) {
            while (k-- > 0)
                if (cast[k] != ins[k]) tensor_release(cast[k]);
            return err_kind();
        }
        kernel_copy(c, ins[k]);
        cast[k] = c;
    }
    return E_OK;
}

static void uncast(tensor **cast, tensor *const *ins, int nin)
{
    for (int k = 0; k < nin; k++)
        if (cast[k] != ins[k]) tensor_release(cast[k]);
}

static void run(tensor *r, tensor *const *cast, int nin, iter_loop loop, const double *params,
                int64_t grain)
{
    bool tiny = r->numel == 1;
    for (int k = 0; k < nin && tiny; k++) tiny = cast[k]->numel == 1;
    if (tiny) {
        /* One element everywhere (scalar graphs): skip the iterator. */
        char *d[ITER_MAX_ARGS];
        int64_t s[ITER_MAX_ARGS];
        d[0] = tensor_data(r);
        s[0] = (int64_t)dtype_size((dtype)r->dtype);
        for (int k = 0; k < nin; k++) {
            d[k + 1] = tensor_data(cast[k]);
            s[k + 1] = (int64_t)dtype_size((dtype)cast[k]->dtype);
        }
        loop(d, s, 1, (void *)params);
        return;
    }
    iter it;
    iter_init(&it, r, (tensor *const *)cast, nin);
    iter_run(&it, loop, (void *)params, grain);
}

/* A queued elementwise kernel (defer.h): run() later, with a copy of the parameters. */
typedef struct ew_args {
    iter_loop loop;
    int64_t grain;
    int np;
    double params[4];
} ew_args;
_Static_assert(sizeof(ew_args) <= sizeof(((dtask *)0)->args), "ew_args fits a task");

static void ew_task(dtask *t, tensor *out, tensor *const *ins)
{
    const ew_args *a = (const ew_args *)t->args;
    run(out, ins, t->nin, a->loop, a->np ? a->params : NULL, a->grain);
}

/* Queues the kernel that computes r from ins when deferral wants it and a task can be made
 * (true), else false: the caller computes r itself. */
static bool ew_defer(tensor *r, tensor *const *ins, int nin, iter_loop loop, const double *params,
                     int np, int64_t grain)
{
    /* (costly loops, those with a smaller grain, count as more work per element) */
    int64_t work = r->numel * (grain > 0 && grain < PAR_GRAIN_CHEAP ? PAR_GRAIN_CHEAP / grain : 1);
    if (nin > 3 || np > 4 || !defer_wanted(ins, nin, work))
        return false;
    dtask *t = defer_task(r, ins, nin, ew_task, work, 0);
    if (!t) {
        defer_flush(); /* (then eagerly, as without deferral) */
        return false;
    }
    ew_args *a = (ew_args *)t->args;
    a->loop = loop;
    a->grain = grain;
    a->np = np;
    for (int k = 0; k < np; k++) a->params[k] = params[k];
    defer_submit(t);
    return true;
}

/* PyTorch's is_contiguous(memory_format=channels_last), for 4-d tensors. */
static bool channels_last(const tensor *t)
{
    static const int order[4] = {1, 3, 2, 0};
    if (t->ndim != 4) return false;
    int64_t expect = 1;
    for (int i = 0; i < 4; i++) {
        int d = order[i];
        if (t->shape[d] == 1) continue;
        if (t->strides[d] != expect) return false;
        expect *= t->shape[d];
    }
    return true;
}

/* Whether t has exactly the contiguous strides of its shape (contiguous_strides'). */
static inline bool canonical(const tensor *t)
{
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->strides[i] != s) return false;
        s *= t->shape[i] > 1 ? t->shape[i] : 1;
    }
    return true;
}

/* PyTorch's layout for a TensorIterator's result (see ewise.h): values never depend on it,
 * but strides and what view() then accepts do, and a result laid out as its operands are is
 * walked in one flat sweep. When every operand has the result's shape (a scalar operand, as
 * in x * 2, has not: `wrapped`), the result is contiguous if they all are, channels-last if
 * they all are, and has their strides if they share one dense layout. Otherwise it is dense
 * with its dimensions in the order of the operands' strides (layout_sort, broadcast
 * dimensions counting as unordered). */
bool ew_layout(int64_t *st, const int64_t *shape, int nd, tensor *const *ins, int nin,
               bool wrapped)
{
    if (nd == 0) return true;
    /* The common case, first and cheaply: operands with exactly contiguous strides give a
     * contiguous result by every rule below (they order no dimension against the contiguous
     * order, broadcast or not), unless the result is empty. */
    bool all = true;
    for (int k = 0; k < nin && all; k++) all = canonical(ins[k]);
    if (all) {
        bool empty = false;
        for (int d = 0; d < nd; d++) empty |= shape[d] == 0;
        if (!empty) return true;
    }
    bool same = !wrapped;
    for (int k = 0; k < nin && same; k++)
        same = ins[k]->ndim == nd && !memcmp(ins[k]->shape, shape, (size_t)nd * sizeof *shape);
    if (same) {
        bool contig = true, cl = nd == 4, dense = true;
        for (int k = 0; k < nin; k++) contig &= tensor_is_contiguous(ins[k]);
        if (contig) return true;
        for (int k = 0; k < nin; k++) cl &= channels_last(ins[k]);
        if (cl) {
            st[1] = 1;
            st[3] = shape[1];
            st[2] = st[3] * shape[3];
            st[0] = st[2] * shape[2];
            return false;
        }
        for (int k = 0; k < nin && dense; k++)
            dense = tensor_is_dense(ins[k]) &&
                    !memcmp(ins[k]->strides, ins[0]->strides, (size_t)nd * sizeof *st);
        if (dense) {
            memcpy(st, ins[0]->strides, (size_t)nd * sizeof *st);
            return false;
        }
    }
    int64_t bs[ITER_MAX_ARGS][MAX_DIMS];
    const int64_t *ps[ITER_MAX_ARGS];
    for (int k = 0; k < nin; k++) {
        int off = nd - ins[k]->ndim;
        for (int d = 0; d < nd; d++) {
            int64_t sz = d < off ? 1 : ins[k]->shape[d - off];
            bs[k][d] = d < off || (sz == 1 && shape[d] != 1) ? 0 : ins[k]->strides[d - off];
        }
        ps[k] = bs[k];
    }
    int perm[MAX_DIMS];
    layout_sort(perm, nd, shape, ps, nin);
    bool contiguous = true;
    int64_t s = 1;
    for (int i = 0; i < nd; i++) {
        contiguous &= perm[i] == nd - 1 - i;
        st[perm[i]] = s;
        s *= shape[perm[i]]; /* (as TensorIterator: an empty dim makes the outer strides 0) */
    }
    return contiguous;
}

tensor *ew_layout_operand(tensor *shadow, int64_t *st, tensor *t, dtype idt)
{
    if (t->dtype == idt || tensor_is_dense(t)) return t;
    dense_strides_like(t, st);
    memset(shadow, 0, sizeof *shadow); /* (read as a plain header by ew_layout only) */
    shadow->dtype = (uint8_t)idt;
    shadow->ndim = t->ndim;
    shadow->numel = t->numel;
    shadow->shape = t->shape;
    shadow->strides = st;
    return shadow;
}

/* (Kept out of line: inlined into ew_map, its frame was set up for the 0-d case too.) */
__attribute__((noinline)) static eng_err ew_map_layout(tensor **out, dtype odt, dtype idt,
                                                       tensor *const *ins, int nin,
                                                       iter_loop loop, const double *params,
                                                       int np, int64_t grain, bool wrapped);

/* Operands that are all 0-d and of the loop's dtype: no broadcasting, no conversion, no
 * iterator. Checked before ew_map_layout is entered: that function's frame (shapes, casts,
 * the iterator) cost more to set up than this case costs to run. */
static inline bool all_scalar(tensor *const *ins, int nin, dtype idt)
{
    for (int k = 0; k < nin; k++)
        if (ins[k]->ndim != 0 || ins[k]->dtype != idt) return false;
    return true;
}

/* The 0-d case that ew_scalar_now leaves, an operand still pending (defer.h): queued behind
 * it, or computed once it is ready. (Out of line: the common case keeps a small frame.) */
__attribute__((noinline)) static eng_err ew_map_scalar_pending(tensor **out, dtype odt,
                                                               tensor *const *ins, int nin,
                                                               iter_loop loop,
                                                               const double *params, int np)
{
    tensor *r = tensor_new_scalar(odt);
    if (!r) return err_kind();
    if (!ew_defer(r, ins, nin, loop, params, np, PAR_GRAIN_CHEAP))
        run(r, ins, nin, loop, params, PAR_GRAIN_CHEAP);
    *out = r;
    return E_OK;
}

eng_err ew_map(tensor **out, dtype odt, dtype idt, tensor *const *ins, int nin, iter_loop loop,
               const double *params, int np, int64_t grain)
{
    eng_err e;
    if (ew_scalar_now(&e, out, odt, idt, ins, nin, loop, params)) return e;
    if (all_scalar(ins, nin, idt))
        return ew_map_scalar_pending(out, odt, ins, nin, loop, params, np);
    return ew_map_layout(out, odt, idt, ins, nin, loop, params, np, grain, false);
}

eng_err ew_map_wrapped(tensor **out, dtype odt, dtype idt, tensor *a, iter_loop loop,
                       const double *params, int np, int64_t grain)
{
    eng_err e;
    if (ew_scalar_now(&e, out, odt, idt, &a, 1, loop, params)) return e;
    if (all_scalar(&a, 1, idt)) return ew_map_scalar_pending(out, odt, &a, 1, loop, params, np);
    return ew_map_layout(out, odt, idt, &a, 1, loop, params, np, grain, true);
}

static eng_err ew_map_layout(tensor **out, dtype odt, dtype idt, tensor *const *ins, int nin,
                             iter_loop loop, const double *params, int np, int64_t grain,
                             bool wrapped)
{
    int64_t shape[MAX_DIMS];
    int nd = ins[0]->ndim;
    memcpy(shape, ins[0]->shape, (size_t)nd * sizeof *shape);
    for (int k = 1; k < nin; k++) {
        if (ins[k]->ndim == 0 && nd == 0) continue; /* scalars: nothing to broadcast */
        eng_err e = broadcast_shapes(shape, nd, ins[k]->shape, ins[k]->ndim, shape, &nd);
        if (e) return e;
    }
    tensor *cast[ITER_MAX_ARGS - 1];
    eng_err e = cast_all(cast, ins, nin, idt);
    if (e) return e;
    int64_t st[MAX_DIMS], shadow_st[ITER_MAX_ARGS][MAX_DIMS];
    tensor shadow[ITER_MAX_ARGS], *lay[ITER_MAX_ARGS] = {0};
    for (int k = 0; k < nin; k++)
        lay[k] = ew_layout_operand(&shadow[k], shadow_st[k], ins[k], idt);
    tensor *r = tensor_new_strided(odt, shape, nd,
                                   ew_layout(st, shape, nd, lay, nin, wrapped) ? NULL : st);
    bool converted = false;
    for (int k = 0; k < nin; k++) converted |= cast[k] != ins[k];
    if (!r) {
        e = err_kind();
    } else if (!converted && ew_defer(r, cast, nin, loop, params, np, grain)) {
        *out = r;
    } else {
        run(r, cast, nin, loop, params, grain);
        *out = r;
    }
    uncast(cast, ins, nin);
    return e;
}

eng_err ew_map_into(tensor *out, dtype idt, tensor *const *ins, int nin, iter_loop loop,
                    const double *params, int64_t grain)
{
    tensor *cast[ITER_MAX_ARGS - 1];
    eng_err e = cast_all(cast, ins, nin, idt);
    if (e) return e;
    run(out, cast, nin, loop, params, grain);
    uncast(cast, ins, nin);
    return E_OK;
}
