/*
 * inplace.c: add_, sub_, mul_ (tensor and scalar), fill_, zero_, copy_.
 *
 * Each bumps the version counter shared by the tensor's views, which is how backward notices
 * that a saved tensor was overwritten. Under grad mode the op is recorded by rewriting the
 * tensor's history: its grad_fn becomes the op's node, whose first edge is the old grad_fn.
 * On a view, the base's history is rewritten instead (CopySlices, as in PyTorch) and the
 * view's grad_fn becomes AsStridedBackward0 of the base.
 */
#include <string.h>

#include "ewise.h"

typedef enum ip_op { OP_ADD, OP_SUB, OP_MUL, OP_ADDS, OP_MULS, OP_FILL, OP_COPY } ip_op;

typedef struct ip_attr {
    ip_op op;
    double s;
} ip_attr;

/* gin[0] is the gradient of the tensor after the op; gout[0] goes to its old value, gout[1]
 * to the other operand. Saved: 0 = other, 1 = the tensor's old value (mul_). */
static eng_err ip_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    const ip_attr *a = node_attrs(n);
    tensor *g = gin[0], *other = NULL, *old = NULL;
    eng_err e = E_OK;
    if (a->op == OP_MUL) {
        if ((e = saved_get(n, c, 0, &other)) || (e = saved_get(n, c, 1, &old))) return e;
    }
    if (c->needed[0]) {
        switch (a->op) {
        case OP_ADD: case OP_SUB: case OP_ADDS:
            tensor_retain(g);
            gout[0] = g;
            break;
        case OP_MUL: e = op_mul(&gout[0], g, other); break;
        case OP_MULS: e = op_mul_scalar(&gout[0], g, a->s); break;
        case OP_FILL: case OP_COPY: e = op_full_like(&gout[0], g, 0.0); break;
        }
        if (e) return e;
    }
    if (n->n_next > 1 && c->needed[1]) {
        switch (a->op) {
        case OP_ADD: case OP_COPY:
            tensor_retain(g);
            gout[1] = g;
            break;
        case OP_SUB: e = op_neg(&gout[1], g); break;
        case OP_MUL: e = op_mul(&gout[1], g, old); break;
        default: break;
        }
    }
    return e;
}

static const node_type ADD_BW = {"AddBackward0", ip_backward, NULL};
static const node_type SUB_BW = {"SubBackward0", ip_backward, NULL};
static const node_type MUL_BW = {"MulBackward0", ip_backward, NULL};
static const node_type FILL_BW = {"FillBackward2", ip_backward, NULL};
static const node_type ZERO_BW = {"ZeroBackward0", ip_backward, NULL};
static const node_type COPY_BW = {"CopyBackwards", ip_backward, NULL};

/* ---- CopySlices: the base's node after an in-place op on one of its views ---- */
typedef struct cs_attr {
    node *fn;              /* the op's own node (edges unused; strong reference) */
    int ndim;              /* the view's geometry in storage positions from the base's first */
    int64_t shape[MAX_DIMS];
    int64_t strides[MAX_DIMS];
    int64_t offset;
    int64_t base_strides[MAX_DIMS]; /* the base's layout (dense, or with gaps: the detach of
                                       a strided view), which the geometry assumes */
} cs_attr;

static eng_err copy_slices_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    cs_attr *a = node_attrs(n);
    node *fn = a->fn;
    tensor *g = NULL, *slice = NULL;
    tensor *res[2] = {NULL, NULL};
    /* (A pass that found the node before another freed it: as its saved variables would.) */
    eng_err e = saved_check(n);
    /* The base's gradient laid out as the base, as PyTorch's CopySlices makes it
     * (empty_strided(base.sizes(), base.strides())): the view's geometry is in its terms. */
    if (!e) e = op_with_strides(&g, gin[0], a->base_strides);
    if (!e) e = op_as_strided(&slice, g, a->shape, a->strides, a->ndim, a->offset);
    if (!e) {
        uint8_t needed[2] = {1, (uint8_t)(n->n_next > 1 && c->needed[1])};
        /* The op's saved tensors are the CopySlices node's own (see prepare_record). */
        bwd_ctx c2 = {.create_graph = c->create_graph, .needed = needed, .node = fn,
                      .own_saved = n->saved};
        /* (a contiguous copy, as PyTorch's CopySlices hands its fn: the results' layouts are
         * its, and the other operand's gradient is no view of the base's) */
        tensor *gslice = NULL;
        e = op_clone_contiguous(&gslice, slice);
        if (!e) e = fn->type->backward(fn, &c2, &gslice, res);
        for (int k = 0; k < c2.ntemps; k++) tensor_release(c2.temps[k]);
        tensor_release(gslice);
    }
    if (!e && c->needed[0]) {
        /* The region the op wrote takes the op's gradient; the rest passes through. */
        tensor *src = res[0];
        if (!src) e = op_full_like(&src, slice, 0.0);
        if (!e) e = op_as_strided_scatter(&gout[0], g, src, a->shape, a->strides, a->ndim,
                                          a->offset);
        if (src != res[0]) tensor_release(src);
    }
    if (!e && n->n_next > 1 && c->needed[1]) {
        gout[1] = res[1];
        res[1] = NULL;
    }
    tensor_release(res[0]);
    tensor_release(res[1]);
    tensor_release(slice);
    tensor_release(g);
    return e;
}

static void copy_slices_destroy(node *n) { node_release(((cs_attr *)node_attrs(n))->fn); }
static const node_type COPY_SLICES = {"CopySlices", copy_slices_backward, copy_slices_destroy};

/* ---- checks and recording ---- */
static eng_err inplace_check(const tensor *t, const tensor *other)
{
    if (!grad_mode_enabled()) return E_OK;
    /* A view made under no_grad or by split/chunk cannot take a history (PyTorch refuses,
     * before its leaf checks). */
    if (t->base && t->view_kind != VK_DEFAULT && dtype_is_float((dtype)t->dtype) &&
        (tensor_requires_grad(t) || (other && tensor_requires_grad(other))))
        return view_refused(t, false);
    /* PyTorch's check_inplace, in its order: a view that requires grad whose base is a leaf
     * (no grad_fn), whether or not that base requires grad itself (v = big[:2], made under
     * no requirement, then v.requires_grad_(): v[0:1].mul_(2) would give the leaf v a
     * history; it was let through, and v became a non-leaf); then a leaf that requires grad. */
    if (t->base && !t->base->grad_fn && tensor_requires_grad(t))
        return err_set(E_LEAF, "a view of a leaf Variable that requires grad is being used in an "
                       "in-place operation.");
    if (t->requires_grad && !t->grad_fn)
        return err_set(E_LEAF, "a leaf Variable that requires grad is being used in an in-place "
                       "operation.");
    return E_OK;
}

/* Everything that can fail before the data changes: node allocation, the old value's copy. */
typedef struct ip_rec {
    node *fn;  /* the op node */
    node *cs;  /* CopySlices (views) */
    node *vn;  /* the view's next grad_fn (views) */
} ip_rec;

static void discard_record(ip_rec *r)
{
    node_release(r->vn);
    node_release(r->cs);
    node_release(r->fn);
    memset(r, 0, sizeof *r);
}

static eng_err prepare_record(ip_rec *r, tensor *t, tensor *other, const node_type *type,
                              ip_attr attr)
{
    memset(r, 0, sizeof *r);
    tensor *ins[2] = {t, other};
    /* An integer tensor has no gradient, whatever is copied into it (PyTorch). */
    if (!dtype_is_float((dtype)t->dtype) || !should_record(ins, other ? 2 : 1)) return E_OK;
    bool view = t->base != NULL;
    int n_next = other ? 2 : 1;
    int n_saved = attr.op == OP_MUL ? 2 : 0;
    node *fn = node_new(type, n_next, n_saved, 1, t->ndim, sizeof(ip_attr));
    if (!fn) return err_nomem();
    *(ip_attr *)node_attrs(fn) = attr;
    if (attr.op == OP_MULS) atomic_fetch_or(&fn->flags, NODE_RELEASABLE); /* (as x * s) */
    eng_err e = E_OK;
    /* `other`, for self's gradient, only when self has one (PyTorch's _saved_other is None
     * otherwise, and changing other in place before backward is then no error). A view keeps
     * it: CopySlices always asks the op's formula for self's part. */
    bool save_other = attr.op == OP_MUL && (view || tensor_requires_grad(t));
    if (save_other) {
        if (other->st == t->st) {
            /* t.mul_(t) or a view of t: saving `other` itself would make a cycle (t's new
             * grad_fn holds other, which is t or holds t as its base). Its bumped version
             * makes backward fail anyway (as in PyTorch): a bare alias keeps that check. */
            tensor *alias = tensor_alias(other, other->shape, other->strides, other->ndim,
                                         other->offset);
            if (!alias) {
                node_release(fn);
                return E_NOMEM;
            }
            node_save(fn, 0, alias);
            tensor_release(alias);
        } else {
            node_save(fn, 0, other);
        }
    }
    if (attr.op == OP_MUL && tensor_requires_grad(other)) {
        /* The old value, for other's gradient. Cloned with its history (a CloneBackward0
         * while grad mode is on): a double backward differentiates through it (it was a
         * detached copy, so d/da of a*a*a built by mul_ missed the old value's share). */
        tensor *copy;
        e = op_clone(&copy, t);
        if (!e) {
            node_save(fn, 1, copy);
            tensor_release(copy);
        }
    }
    if (!e && !view) {
        e = node_set_edge(fn, 0, t);
        if (!e && other) e = node_set_edge(fn, 1, other);
    }
    if (!e && view) {
        /* The op's saved tensors move into the CopySlices node, the one backward runs, locks
         * and frees: a pass without retain_graph frees them, and marks the node released
         * even if the op saved nothing, so that a second pass fails as in PyTorch (whose
         * CopySlices drops its op's node then); it summed the gradient twice. */
        node *cs = node_new(&COPY_SLICES, n_next, n_saved, 1, t->base->ndim, sizeof(cs_attr));
        if (!cs) {
            e = err_nomem();
        } else {
            atomic_fetch_or(&cs->flags, NODE_RELEASABLE);
            for (int k = 0; k < n_saved; k++) {
                cs->saved[k] = fn->saved[k];
                fn->saved[k].t = NULL;
            }
            cs_attr *a = node_attrs(cs);
            node_retain(fn);
            a->fn = fn;
            a->ndim = t->ndim;
            memcpy(a->shape, t->shape, (size_t)t->ndim * sizeof(int64_t));
            memcpy(a->strides, t->strides, (size_t)t->ndim * sizeof(int64_t));
            a->offset = t->offset - t->base->offset;
            memcpy(a->base_strides, t->base->strides, (size_t)t->base->ndim * sizeof(int64_t));
            e = node_set_edge(cs, 0, t->base);
            if (!e && other) e = node_set_edge(cs, 1, other);
            r->cs = cs;
        }
        if (!e && !(r->vn = view_rebase_prepare(t))) e = E_NOMEM;
        if (!e) e = tensor_history_reserve(t->base, r->cs, 0);
        if (!e) e = tensor_history_reserve(t, r->vn, 0);
    }
    if (!e && !view) e = tensor_history_reserve(t, fn, 0);
    r->fn = fn;
    if (e) discard_record(r);
    return e;
}

/* After the data changed: install the new history (nothing here can fail). */
static void commit_record(ip_rec *r, tensor *t)
{
    if (r->cs) {
        tensor *base = t->base;
        node_set_output(r->cs, 0, base);
        /* The op's node sees the view's shape as its output. */
        node_out_meta(r->fn, 0, t);
        tensor_history_moved(base);
        view_rebase_commit(r->vn, t);
        tensor_history_moved(t);
    } else if (r->fn) {
        node_set_output(r->fn, 0, t);
        tensor_history_moved(t);
    }
    node_release(r->cs);
    node_release(r->fn);
}

/* What PyTorch's TensorIterator refuses before writing into t from other (add_, sub_, mul_,
 * copy_; fill_ and zero_ may write an element twice, it gets one value): t reaching an
 * element twice, and other partly aliasing t. PyTorch judges the alias on other as it is,
 * only where both are dense, and runs the rest element by element, in order; our kernels run
 * in parallel, so other is also judged exactly, as broadcast to t's shape: an element of t
 * that other reads at another position than its own (x.add_(x[:, 1:2]), a column of x
 * broadcast over x) is refused as well. */
static eng_err overlap_check(const tensor *t, const tensor *other)
{
    if (tensor_internal_overlap(t) == OVERLAP_YES)
        return err_set(E_INVAL, "unsupported operation: more than one element of the written-to "
                       "tensor refers to a single memory location. Please clone() the tensor "
                       "before performing the operation.");
    if (!other) return E_OK;
    mem_overlap o = tensor_overlap(t, other);
    if (o == OVERLAP_TOO_HARD && (o = tensor_overlap_elementwise(t, other)) == OVERLAP_TOO_HARD)
        return err_nomem();
    if (o == OVERLAP_PARTIAL)
        return err_set(E_INVAL, "unsupported operation: some elements of the input tensor and "
                       "the written-to tensor refer to a single memory location. Please clone() "
                       "the tensor before performing the operation.");
    return E_OK;
}

static eng_err check_into(tensor *t, tensor *other, dtype compute)
{
    if (!dtype_valid(compute) || (dtype_category(compute) > dtype_category((dtype)t->dtype)))
        return err_set(E_DTYPE, "result type %s can't be cast to the desired output type %s",
                       dtype_name(compute), dtype_name((dtype)t->dtype));
    if (!other) return E_OK;
    int64_t shape[MAX_DIMS];
    int nd;
    eng_err e = broadcast_shapes(t->shape, t->ndim, other->shape, other->ndim, shape, &nd);
    if (e) return e;
    bool same = nd == t->ndim;
    for (int i = 0; same && i < nd; i++) same = shape[i] == t->shape[i];
    if (!same) {
        char a[160], b[160];
        return err_set(E_SHAPE, "output with shape %s doesn't match the broadcast shape %s",
                       fmt_shape(a, sizeof a, t->shape, t->ndim), fmt_shape(b, sizeof b, shape, nd));
    }
    return E_OK;
}

/* ---- kernels (in the tensor's dtype) ---- */
#define IP_LOOPS(T, S, ADD, SUB, MUL)                                                      \
    EW_BINARY_LOOP(ip_add_##S, T, T, ADD(x, y))                                            \
    EW_BINARY_LOOP(ip_sub_##S, T, T, SUB(x, y))                                            \
    EW_BINARY_LOOP(ip_mul_##S, T, T, MUL(x, y))                                            \
    EW_UNARY_LOOP(ip_adds_##S, T, T, ADD(x, (T)P[0]))                                      \
    EW_UNARY_LOOP(ip_muls_##S, T, T, MUL(x, (T)P[0]))
IP_LOOPS(float, f32, ADD_OP, SUB_OP, MUL_OP)
IP_LOOPS(double, f64, ADD_OP, SUB_OP, MUL_OP)
IP_LOOPS(int64_t, i64, i64_add, i64_sub, i64_mul) /* (wrapping: ewise.h) */
/* bool += bool is logical or, bool *= bool logical and, as in PyTorch (a scalar operand, or
 * any other dtype, promotes past bool: check_into refuses it before a loop is needed). */
EW_BINARY_LOOP(ip_or_b, uint8_t, uint8_t, (uint8_t)(x | y))
EW_BINARY_LOOP(ip_and_b, uint8_t, uint8_t, (uint8_t)(x & y))

/* [op][t's dtype: f32, f64, i64, bool] */
static const iter_loop ip_loops[5][DT_COUNT] = {
    {ip_add_f32, ip_add_f64, ip_add_i64, ip_or_b}, {ip_sub_f32, ip_sub_f64, ip_sub_i64, NULL},
    {ip_mul_f32, ip_mul_f64, ip_mul_i64, ip_and_b}, {ip_adds_f32, ip_adds_f64, ip_adds_i64, NULL},
    {ip_muls_f32, ip_muls_f64, ip_muls_i64, NULL},
};

/* Everything that can refuse t op= other (or t op= s) before anything is written. */
static eng_err apply_check(tensor *t, tensor *other, ip_op op, double s)
{
    if (op == OP_SUB && (t->dtype == DT_BOOL || other->dtype == DT_BOOL))
        return bool_sub_error(t->dtype == DT_BOOL && other->dtype == DT_BOOL);
    promo p;
    promo_init(&p);
    promo_add_tensor(&p, (dtype)t->dtype, t->ndim);
    if (other) promo_add_tensor(&p, (dtype)other->dtype, other->ndim);
    else promo_add_scalar(&p, s);
    eng_err e = check_into(t, other, promo_result(&p));
    if (!e && !ip_loops[op][t->dtype]) /* (not reached: check_into refuses these) */
        e = err_set(E_DTYPE, "in-place arithmetic is not supported for %s tensors",
                    dtype_name((dtype)t->dtype));
    if (!e) e = overlap_check(t, other);
    if (!e) e = inplace_check(t, other);
    return e;
}

static eng_err apply(tensor *t, tensor *other, ip_op op, double s, const node_type *type)
{
    eng_err e = apply_check(t, other, op, s);
    ip_rec r;
    if (!e) e = prepare_record(&r, t, other, type, (ip_attr){op, s});
    if (e) return e;
    double param = s;
    if (other) {
        tensor *in[2] = {t, other};
        e = ew_map_into(t, (dtype)t->dtype, in, 2, ip_loops[op][t->dtype], NULL, PAR_GRAIN_CHEAP);
    } else {
        e = ew_map_into(t, (dtype)t->dtype, &t, 1, ip_loops[op][t->dtype], &param, PAR_GRAIN_CHEAP);
    }
    if (e) {
        discard_record(&r);
        return e;
    }
    tensor_bump_version(t);
    commit_record(&r, t);
    return E_OK;
}

static const ip_op binary_ops[] = {OP_ADD, OP_SUB, OP_MUL};

eng_err op_binary_(tensor *t, tensor *other, inplace_kind k)
{
    static const node_type *types[] = {&ADD_BW, &SUB_BW, &MUL_BW};
    return apply(t, other, binary_ops[k], 0, types[k]);
}

eng_err op_binary_check(tensor *t, tensor *other, inplace_kind k)
{
    return apply_check(t, other, binary_ops[k], 0);
}

eng_err op_scalar_(tensor *t, double s, inplace_kind k)
{
    if (k == IP_SUB && t->dtype == DT_BOOL) return bool_sub_error(false);
    if (k == IP_SUB) return apply(t, NULL, OP_ADDS, -s, &ADD_BW);
    return apply(t, NULL, k == IP_ADD ? OP_ADDS : OP_MULS, s, k == IP_ADD ? &ADD_BW : &MUL_BW);
}

static eng_err overwrite(tensor *t, tensor *src, double v, ip_op op, const node_type *type)
{
    eng_err e = E_OK;
    /* t.copy_(t) copies nothing (PyTorch returns early, before its overlap checks: an
     * expanded t is fine), but it is still an in-place op: version bumped, recorded. */
    bool self = src == t;
    if (src) {
        e = check_into(t, src, (dtype)t->dtype);
        if (!e && !self) e = overlap_check(t, src);
    } else {
        e = fill_value_check((dtype)t->dtype, v);
    }
    if (!e) e = inplace_check(t, src);
    ip_rec r;
    if (!e) e = prepare_record(&r, t, src, type, (ip_attr){op, v});
    if (e) return e;
    if (src) {
        if (!self) kernel_copy(t, src);
    } else {
        kernel_fill(t, v);
    }
    tensor_bump_version(t);
    commit_record(&r, t);
    return E_OK;
}

eng_err op_fill_(tensor *t, double v) { return overwrite(t, NULL, v, OP_FILL, &FILL_BW); }
eng_err op_zero_(tensor *t) { return overwrite(t, NULL, 0.0, OP_FILL, &ZERO_BW); }

eng_err op_copy_(tensor *t, tensor *src) { return overwrite(t, src, 0, OP_COPY, &COPY_BW); }
