/*
 * compare.c: comparisons (bool results, never recorded), where, masked_fill, and elementwise
 * maximum / minimum with their grad_fns.
 */
#include <math.h>
#include <string.h>

#include "ewise.h"

/* ---- kernels ---- */
#define CMP_LOOPS(T, S)                                                                    \
    EW_BINARY_LOOP(eq_##S, uint8_t, T, x == y)                                             \
    EW_BINARY_LOOP(ne_##S, uint8_t, T, x != y)                                             \
    EW_BINARY_LOOP(lt_##S, uint8_t, T, x < y)                                              \
    EW_BINARY_LOOP(le_##S, uint8_t, T, x <= y)                                             \
    EW_BINARY_LOOP(gt_##S, uint8_t, T, x > y)                                              \
    EW_BINARY_LOOP(ge_##S, uint8_t, T, x >= y)                                             \
    EW_UNARY_LOOP(eqs_##S, uint8_t, T, x == (T)P[0])                                       \
    EW_UNARY_LOOP(nes_##S, uint8_t, T, x != (T)P[0])                                       \
    EW_UNARY_LOOP(lts_##S, uint8_t, T, x < (T)P[0])                                        \
    EW_UNARY_LOOP(les_##S, uint8_t, T, x <= (T)P[0])                                       \
    EW_UNARY_LOOP(gts_##S, uint8_t, T, x > (T)P[0])                                        \
    EW_UNARY_LOOP(ges_##S, uint8_t, T, x >= (T)P[0])                                       \
    /* NaN propagates from either side */                                                  \
    EW_BINARY_LOOP(max_##S, T, T, (x > y || x != x) ? x : y)                               \
    EW_BINARY_LOOP(min_##S, T, T, (x < y || x != x) ? x : y)                               \
    EW_TERNARY_LOOP(where_##S, T, uint8_t, T, T, x ? y : z)
CMP_LOOPS(float, f32)
CMP_LOOPS(double, f64)
CMP_LOOPS(int64_t, i64)
CMP_LOOPS(uint8_t, b)

/* [kind][dtype] */
static const iter_loop cmp_loops[6][DT_COUNT] = {
    {eq_f32, eq_f64, eq_i64, eq_b}, {ne_f32, ne_f64, ne_i64, ne_b},
    {lt_f32, lt_f64, lt_i64, lt_b}, {le_f32, le_f64, le_i64, le_b},
    {gt_f32, gt_f64, gt_i64, gt_b}, {ge_f32, ge_f64, ge_i64, ge_b},
};
/* A scalar promotes a bool tensor to at least int64, so the bool column is never used. */
static const iter_loop cmps_loops[6][DT_COUNT] = {
    {eqs_f32, eqs_f64, eqs_i64, eqs_b}, {nes_f32, nes_f64, nes_i64, nes_b},
    {lts_f32, lts_f64, lts_i64, lts_b}, {les_f32, les_f64, les_i64, les_b},
    {gts_f32, gts_f64, gts_i64, gts_b}, {ges_f32, ges_f64, ges_i64, ges_b},
};
static const iter_loop max_loops[DT_COUNT] = {max_f32, max_f64, max_i64, max_b};
static const iter_loop min_loops[DT_COUNT] = {min_f32, min_f64, min_i64, min_b};
static const iter_loop where_loops[DT_COUNT] = {where_f32, where_f64, where_i64, where_b};

static dtype promote2(const tensor *a, const tensor *b)
{
    promo p;
    promo_init(&p);
    promo_add_tensor(&p, (dtype)a->dtype, a->ndim);
    promo_add_tensor(&p, (dtype)b->dtype, b->ndim);
    return promo_result(&p);
}

/* ---- comparisons ---- */
eng_err op_compare(tensor **out, tensor *a, tensor *b, cmp_kind k)
{
    dtype dt = promote2(a, b);
    tensor *ins[2] = {a, b};
    return ew_map(out, DT_BOOL, dt, ins, 2, cmp_loops[k][dt], NULL, 0, PAR_GRAIN_CHEAP);
}

eng_err op_compare_scalar(tensor **out, tensor *a, double s, cmp_kind k)
{
    /* Compared in the promoted dtype, the scalar converted to it (float32 x == 0.1 is true,
     * as in PyTorch). */
    promo p;
    promo_init(&p);
    promo_add_tensor(&p, (dtype)a->dtype, a->ndim);
    promo_add_scalar(&p, s);
    dtype dt = promo_result(&p);
    return ew_map_wrapped(out, DT_BOOL, dt, a, cmps_loops[k][dt], &s, 1, PAR_GRAIN_CHEAP);
}

/* ---- where ---- */
/* cond as bool: int64 conditions are tested for nonzero (a retained cond if already bool). */
static eng_err bool_mask(tensor **out, tensor *m, const char *what)
{
    if (m->dtype == DT_BOOL) {
        tensor_retain(m);
        *out = m;
        return E_OK;
    }
    if (m->dtype != DT_I64)
        return err_set(E_DTYPE, "%s must be a bool (or int64) tensor, got %s", what,
                       dtype_name((dtype)m->dtype));
    return op_compare_scalar(out, m, 0.0, CMP_NE);
}

/* How where_raw lays its result out: contiguous (masked_fill, which clones contiguous
 * first), by TensorIterator's rules over (cond, a, b) (where), or as b when b is dense and of
 * the result's shape (b.masked_fill_(cond, a) on a fresh b: its layout stays). */
typedef enum where_layout { WL_CONTIGUOUS, WL_FOLLOW, WL_AS_B } where_layout;

/* cond ? a : b in dtype dt, everything broadcast, laid out as wl says; no autograd. */
static eng_err where_raw(tensor **out, tensor *cond, tensor *a, tensor *b, dtype dt,
                         where_layout wl)
{
    int64_t shape[MAX_DIMS];
    int nd;
    eng_err e;
    if ((e = broadcast_shapes(cond->shape, cond->ndim, a->shape, a->ndim, shape, &nd)) ||
        (e = broadcast_shapes(shape, nd, b->shape, b->ndim, shape, &nd)))
        return e;
    tensor *ca = NULL, *cb = NULL, *r = NULL;
    int64_t st[MAX_DIMS];
    bool contiguous = true;
    if (wl == WL_FOLLOW) {
        /* (a and b as where's .to() copies lay them out) */
        int64_t sa[MAX_DIMS], sb[MAX_DIMS];
        tensor sha, shb;
        tensor *lay[3] = {cond, ew_layout_operand(&sha, sa, a, dt),
                          ew_layout_operand(&shb, sb, b, dt)};
        contiguous = ew_layout(st, shape, nd, lay, 3, false);
    } else if (wl == WL_AS_B && b->ndim == nd && tensor_is_dense(b) &&
               !memcmp(b->shape, shape, (size_t)nd * sizeof *shape)) {
        memcpy(st, b->strides, (size_t)nd * sizeof *st);
        contiguous = false;
    }
    if (!(e = cast_raw(&ca, a, dt)) && !(e = cast_raw(&cb, b, dt))) {
        if (!(r = tensor_new_strided(dt, shape, nd, contiguous ? NULL : st))) {
            e = err_kind();
        } else {
            tensor *ins[3] = {cond, ca, cb};
            iter it;
            iter_init(&it, r, ins, 3);
            iter_run(&it, where_loops[dt], NULL, PAR_GRAIN_CHEAP);
            *out = r;
        }
    }
    tensor_release(ca);
    tensor_release(cb);
    return e;
}

eng_err op_where_zero(tensor **out, tensor *cond, tensor *g, bool flip)
{
    tensor *z = NULL;
    eng_err e = op_scalar(&z, 0.0, (dtype)g->dtype);
    if (!e) e = flip ? op_where(out, cond, z, g) : op_where(out, cond, g, z);
    tensor_release(z);
    return e;
}

static eng_err where_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    tensor *cond;
    eng_err e = saved_get(n, c, 0, &cond);
    if (!e && c->needed[0]) e = op_where_zero(&gout[0], cond, gin[0], false);
    if (!e && c->needed[1]) e = op_where_zero(&gout[1], cond, gin[0], true);
    return e;
}
static const node_type WHERE_BW = {"WhereBackward0", where_backward, NULL};

static eng_err where(tensor **out, tensor *cond, tensor *a, tensor *b, where_layout wl)
{
    tensor *cb = NULL, *r = NULL;
    eng_err e = bool_mask(&cb, cond, "condition");
    if (e) return e;
    if (!(e = where_raw(&r, cb, a, b, promote2(a, b), wl)) &&
        dtype_is_float((dtype)r->dtype)) {
        tensor *ins[2] = {a, b};
        node *n = record(&WHERE_BW, ins, 2, &r, 1, 1, 0, &e);
        if (n) node_save(n, 0, cb);
        if (e) tensor_release(r);
    }
    tensor_release(cb);
    if (!e) *out = r;
    return e;
}

eng_err op_where(tensor **out, tensor *cond, tensor *a, tensor *b)
{
    return where(out, cond, a, b, WL_FOLLOW);
}

eng_err op_where_contiguous(tensor **out, tensor *cond, tensor *a, tensor *b)
{
    return where(out, cond, a, b, WL_CONTIGUOUS);
}

/* ---- masked_fill ---- */
static eng_err masked_fill_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    if (!c->needed[0]) return E_OK;
    tensor *mask;
    eng_err e = saved_get(n, c, 0, &mask);
    return e ? e : op_masked_fill(&gout[0], gin[0], mask, 0.0);
}
static const node_type MASKED_FILL_BW = {"MaskedFillBackward0", masked_fill_backward, NULL};

/* An int64 mask of masked_fill holds only 0 and 1 (PyTorch checks; where does not). */
static eng_err int_mask_check(tensor *m)
{
    tensor *c = NULL;
    eng_err e = op_contiguous(&c, m);
    if (e) return e;
    const int64_t *v = tensor_data(c);
    for (int64_t i = 0; i < c->numel && !e; i++)
        if (v[i] != 0 && v[i] != 1)
            e = err_set(E_INVAL, "Mask tensor can take 0 and 1 values only");
    tensor_release(c);
    return e;
}

static eng_err masked_fill(tensor **out, tensor *t, tensor *mask, double v, where_layout wl)
{
    /* The value takes t's dtype (PyTorch: 2.5 into int64 is 2; out of range, a finite float32
     * value beyond FLT_MAX included, is an error: fill_value_check). */
    dtype dt = (dtype)t->dtype;
    if (dt == DT_BOOL) v = v != 0;
    tensor *mb = NULL, *val = NULL, *r = NULL;
    eng_err e = mask->dtype == DT_I64 ? int_mask_check(mask) : E_OK;
    if (!e) e = fill_value_check(dt, v);
    if (!e) e = bool_mask(&mb, mask, "mask");
    if (e) return e;
    /* out of place, the result has the broadcast shape of t and mask, as torch.masked_fill */
    if (!(e = op_scalar(&val, v, dt)) && !(e = where_raw(&r, mb, val, t, dt, wl)) &&
        dtype_is_float(dt)) {
        node *n = record(&MASKED_FILL_BW, &t, 1, &r, 1, 1, 0, &e);
        if (n) node_save(n, 0, mb);
        if (e) tensor_release(r);
    }
    tensor_release(mb);
    tensor_release(val);
    if (!e) *out = r;
    return e;
}

eng_err op_masked_fill(tensor **out, tensor *t, tensor *mask, double v)
{
    return masked_fill(out, t, mask, v, WL_CONTIGUOUS);
}

eng_err op_masked_fill_kept(tensor **out, tensor *t, tensor *mask, double v)
{
    return masked_fill(out, t, mask, v, WL_AS_B);
}

/* ---- maximum / minimum ---- */
/* PyTorch 1.13: a gets where(a == b, g / 2, g) masked to 0 where a loses (a < b for maximum),
 * b the same masked where b loses; with a NaN neither loses and both get g. */
static eng_err extremum_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout, bool is_max)
{
    tensor *a, *b, *t[4] = {0};
    eng_err e;
    if ((e = saved_get(n, c, 0, &a)) || (e = saved_get(n, c, 1, &b))) return e;
    if (!(e = op_compare(&t[0], a, b, CMP_EQ)) && !(e = op_mul_scalar(&t[1], gin[0], 0.5)) &&
        !(e = op_where(&t[2], t[0], t[1], gin[0]))) {
        for (int i = 0; i < 2 && !e; i++) {
            if (!c->needed[i]) continue;
            tensor_release(t[3]);
            t[3] = NULL;
            cmp_kind loses = (i == 0) == is_max ? CMP_LT : CMP_GT;
            if (!(e = op_compare(&t[3], a, b, loses)))
                e = op_masked_fill_kept(&gout[i], t[2], t[3], 0);
        }
    }
    for (int i = 0; i < 4; i++) tensor_release(t[i]);
    return e;
}
static eng_err maximum_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    return extremum_backward(n, c, gin, gout, true);
}
static eng_err minimum_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    return extremum_backward(n, c, gin, gout, false);
}
static const node_type MAXIMUM_BW = {"MaximumBackward0", maximum_backward, NULL};
static const node_type MINIMUM_BW = {"MinimumBackward0", minimum_backward, NULL};

static eng_err extremum(tensor **out, tensor *a, tensor *b, const iter_loop *loops,
                        const node_type *bw)
{
    dtype dt = promote2(a, b);
    tensor *ins[2] = {a, b}, *r = NULL;
    eng_err e = ew_map(&r, dt, dt, ins, 2, loops[dt], NULL, 0, PAR_GRAIN_CHEAP);
    if (e) return e;
    if (dtype_is_float(dt)) {
        node *n = record(bw, ins, 2, &r, 1, 2, 0, &e);
        if (n) {
            node_save(n, 0, a);
            node_save(n, 1, b);
        }
        if (e) {
            tensor_release(r);
            return e;
        }
    }
    *out = r;
    return E_OK;
}

eng_err op_maximum(tensor **out, tensor *a, tensor *b)
{
    return extremum(out, a, b, max_loops, &MAXIMUM_BW);
}

eng_err op_minimum(tensor **out, tensor *a, tensor *b)
{
    return extremum(out, a, b, min_loops, &MINIMUM_BW);
}
