/*
 * optim.c: SGD, Adam and AdamW with the update formulas of PyTorch 1.13's single-tensor
 * (for-loop) implementations, one fused elementwise kernel per parameter.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "kernels/iter.h"
#include "ops.h"
#include "optim.h"
#include "parallel.h"

/* Per parameter. The k state tensors (SGD: momentum_buffer; Adam: exp_avg, exp_avg_sq and
 * max_exp_avg_sq) live back to back in one contiguous storage, so one iter operand reaches
 * all of them: buffer j of element x is at x's address + j * (numel * element size). */
typedef struct pstate {
    tensor *buf;  /* buffer 0, shaped as the parameter; NULL until the first update */
    int64_t step; /* updates applied; SGD's buffer holds nothing while it is 0 */
} pstate;

struct optimizer {
    atomic_long refs;
    opt_config cfg;
    int n;
    tensor **params; /* strong */
    tensor **tmp;    /* per-call scratch (step's .grad snapshot, zero_grad's detached grads) */
    tensor **copy;   /* step's scratch: a copy of a .grad that shares the parameter's memory */
    pstate *st;
};

/* ---- kernels -------------------------------------------------------------------------------- */
/* Every scalar is rounded to the parameter's dtype, and every multiply-add that PyTorch's CPU
 * kernels fuse (add(alpha), addcmul) is an explicit fma, the others are not: results then
 * equal PyTorch's bit for bit (float32 and float64, checked on the test cases), whatever the
 * CPU. This file is compiled with -ffp-contract=off (CMakeLists.txt): otherwise GCC fuses
 * AdamW's `p * decay` into the final add (at -O3, with FMA), where PyTorch rounds
 * param.mul_(1 - lr * wd) first. With no contraction left to the compiler, the FMA build and
 * the baseline build below agree. */
typedef struct kctx {
    double nlr;           /* SGD: -lr; Adam: -lr / bias_correction1 */
    double wd;            /* L2 term added to the gradient; 0 = off (AdamW: 0) */
    double decay;         /* the parameter is first multiplied by this: AdamW 1 - lr * wd, Adam 1 */
    double mom, damp1;    /* SGD: momentum, 1 - dampening */
    double b1, c1, b2, c2; /* Adam: beta1, 1 - beta1, beta2, 1 - beta2 */
    double bc2s, eps;     /* Adam: sqrt(bias_correction2), eps */
    int64_t blk;          /* bytes between two state buffers */
    bool first, nesterov;
} kctx;

#define INLINE static inline __attribute__((always_inline))

/* d = grad (+ wd * p); buf = d on the first step, else momentum * buf + (1 - dampening) * d;
 * d = nesterov ? d + momentum * buf : buf; p -= lr * d. */
#define SGD_STEP(FMA, P, G, B)                                                             \
    do {                                                                                   \
        T d_ = (G);                                                                        \
        d_ = wd_on ? FMA(wd, (P), d_) : d_;                                                \
        if (has_buf) {                                                                     \
            T b_ = (B);                                                                    \
            b_ = first ? d_ : FMA(damp1, d_, b_ * mom);                                    \
            (B) = b_;                                                                      \
            d_ = nesterov ? FMA(mom, b_, d_) : b_;                                         \
        }                                                                                  \
        (P) = FMA(nlr, d_, (P));                                                           \
    } while (0)

/* m = beta1 m + (1 - beta1) g; v = beta2 v + (1 - beta2) g g; v_max = max(v_max, v);
 * p += -step_size * m / (sqrt(v) / sqrt(bias_correction2) + eps). */
#define ADAM_STEP(FMA, SQRT, P, G, M, V, X)                                                \
    do {                                                                                   \
        T p_ = (P), g_ = (G);                                                              \
        p_ = p_ * decay; /* exactly p_ for Adam, whose decay is 1 */                       \
        g_ = wd_on ? FMA(wd, p_, g_) : g_;                                                 \
        T m_ = FMA(c1, g_, (M) * b1);                                                      \
        T v_ = FMA(c2 * g_, g_, (V) * b2);                                                 \
        (M) = m_;                                                                          \
        (V) = v_;                                                                          \
        if (ams) {                                                                         \
            T x_ = (X);                                                                    \
            x_ = ((x_ < v_) | (v_ != v_)) ? v_ : x_; /* torch.maximum propagates NaN */    \
            (X) = x_;                                                                      \
            v_ = x_;                                                                       \
        }                                                                                  \
        (P) = p_ + (nlr * m_) / (SQRT(v_) / bc2s + eps);                                   \
    } while (0)

/* sqrt() may set errno, and that path keeps GCC and clang from vectorising Adam's loop
 * unless the library is built with -fno-math-errno (clang would warn that it could not). */
#ifdef __NO_MATH_ERRNO__
#define ADAM_SIMD _Pragma("omp simd")
#else
#define ADAM_SIMD
#endif

/* Operands: 0 the parameter, 1 its gradient, 2 state buffer 0 (absent for plain SGD). */
#define DEFINE_KERNELS(TY, SFX, FMA, SQRT)                                                 \
    INLINE void sgd_##SFX(char **d, const int64_t *s, int64_t n, const kctx *c, bool has_buf, \
                          bool first, bool nesterov)                                       \
    {                                                                                      \
        typedef TY T;                                                                      \
        const int64_t es = sizeof(T);                                                      \
        const T nlr = (T)c->nlr, wd = (T)c->wd, mom = (T)c->mom, damp1 = (T)c->damp1;      \
        const bool wd_on = c->wd != 0;                                                     \
        if (s[0] == es && s[1] == es && (!has_buf || s[2] == es)) {                        \
            T *p = (T *)d[0], *b = has_buf ? (T *)d[2] : NULL;                             \
            const T *g = (const T *)d[1];                                                  \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++)                            \
                SGD_STEP(FMA, p[i], g[i], b[i]);                                           \
        } else {                                                                           \
            for (int64_t i = 0; i < n; i++)                                                \
                SGD_STEP(FMA, *(T *)(d[0] + i * s[0]), *(const T *)(d[1] + i * s[1]),      \
                         *(T *)(d[2] + i * s[2]));                                         \
        }                                                                                  \
    }                                                                                      \
    INLINE void adam_##SFX(char **d, const int64_t *s, int64_t n, const kctx *c, bool ams) \
    {                                                                                      \
        typedef TY T;                                                                      \
        const int64_t es = sizeof(T), blk = c->blk;                                        \
        const T nlr = (T)c->nlr, wd = (T)c->wd, decay = (T)c->decay, b1 = (T)c->b1,        \
                c1 = (T)c->c1, b2 = (T)c->b2, c2 = (T)c->c2, bc2s = (T)c->bc2s,            \
                eps = (T)c->eps;                                                           \
        const bool wd_on = c->wd != 0;                                                     \
        if (s[0] == es && s[1] == es && s[2] == es) {                                      \
            T *p = (T *)d[0], *m = (T *)d[2], *v = (T *)(d[2] + blk);                      \
            T *x = ams ? (T *)(d[2] + 2 * blk) : NULL;                                     \
            const T *g = (const T *)d[1];                                                  \
            ADAM_SIMD for (int64_t i = 0; i < n; i++)                                      \
                ADAM_STEP(FMA, SQRT, p[i], g[i], m[i], v[i], x[i]);                        \
        } else {                                                                           \
            for (int64_t i = 0; i < n; i++) {                                              \
                char *m = d[2] + i * s[2];                                                 \
                ADAM_STEP(FMA, SQRT, *(T *)(d[0] + i * s[0]), *(const T *)(d[1] + i * s[1]), \
                          *(T *)m, *(T *)(m + blk), *(T *)(m + 2 * blk));                  \
            }                                                                              \
        }                                                                                  \
    }

DEFINE_KERNELS(float, f32, fmaf, sqrtf)
DEFINE_KERNELS(double, f64, fma, sqrt)

/* The entry points, compiled once for the baseline ISA (fma() is then libm's, correctly
 * rounded) and once with FMA instructions; both give the same bits. */
enum { K_SGD, K_SGD_BUF, K_ADAM, K_ADAM_AMS, K_COUNT };

/* The flags become constants in each specialisation, which the vectoriser needs. */
#define DEFINE_DT_ENTRIES(ATTR, SFX, DT)                                                   \
    ATTR static void sgd_##DT##_##SFX(char **d, const int64_t *s, int64_t n, void *c)      \
    {                                                                                      \
        sgd_##DT(d, s, n, c, false, false, false);                                         \
    }                                                                                      \
    ATTR static void sgdb_##DT##_##SFX(char **d, const int64_t *s, int64_t n, void *v)     \
    {                                                                                      \
        const kctx *c = v;                                                                 \
        if (c->first && c->nesterov) sgd_##DT(d, s, n, c, true, true, true);               \
        else if (c->first) sgd_##DT(d, s, n, c, true, true, false);                        \
        else if (c->nesterov) sgd_##DT(d, s, n, c, true, false, true);                     \
        else sgd_##DT(d, s, n, c, true, false, false);                                     \
    }                                                                                      \
    ATTR static void adam_##DT##_##SFX(char **d, const int64_t *s, int64_t n, void *c)     \
    {                                                                                      \
        adam_##DT(d, s, n, c, false);                                                      \
    }                                                                                      \
    ATTR static void adama_##DT##_##SFX(char **d, const int64_t *s, int64_t n, void *c)    \
    {                                                                                      \
        adam_##DT(d, s, n, c, true);                                                       \
    }

#define DEFINE_ENTRIES(ATTR, SFX)                                                          \
    DEFINE_DT_ENTRIES(ATTR, SFX, f32)                                                      \
    DEFINE_DT_ENTRIES(ATTR, SFX, f64)                                                      \
    static const iter_loop loops_##SFX[K_COUNT][2] = {                                     \
        {sgd_f32_##SFX, sgd_f64_##SFX}, {sgdb_f32_##SFX, sgdb_f64_##SFX},                  \
        {adam_f32_##SFX, adam_f64_##SFX}, {adama_f32_##SFX, adama_f64_##SFX}};

DEFINE_ENTRIES(, base)
#if defined(__x86_64__)
DEFINE_ENTRIES(__attribute__((target("avx2,fma"))), fma)
#endif

/* AdamW's decay on its own, when it must come before the gradient is read: p *= decay. */
#define DEFINE_DECAY(TY, SFX)                                                              \
    static void decay_##SFX(char **d, const int64_t *s, int64_t n, void *c)                \
    {                                                                                      \
        const TY k = (TY)((const kctx *)c)->decay;                                         \
        for (int64_t i = 0; i < n; i++) {                                                  \
            TY *x = (TY *)(d[0] + i * s[0]);                                               \
            *x = *x * k;                                                                   \
        }                                                                                  \
    }
DEFINE_DECAY(float, f32)
DEFINE_DECAY(double, f64)

static iter_loop pick_loop(int kind, dtype dt)
{
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return loops_fma[kind][dt];
#endif
    return loops_base[kind][dt];
}

/* ---- creation ------------------------------------------------------------------------------- */
/* v as Python's repr(float) writes it, as PyTorch's messages show a hyper-parameter
 * ("Invalid learning rate: -0.123456789", "...: 1.0"): the fewest significant digits that
 * read back as v, positional for exponents -4 to 15 (with ".0" if no fraction is left), else
 * scientific. buf: 32 bytes. */
static const char *py_repr(char *buf, double v)
{
    if (!isfinite(v)) return isnan(v) ? "nan" : v > 0 ? "inf" : "-inf";
    int p = 1;
    for (; p < 17; p++) { /* 17 digits always read back */
        snprintf(buf, 32, "%.*e", p - 1, v);
        if (strtod(buf, NULL) == v) break;
    }
    snprintf(buf, 32, "%.*e", p - 1, v);
    int exp = atoi(strchr(buf, 'e') + 1), frac = p - 1 - exp;
    if (exp < -4 || exp >= 16) return buf;
    snprintf(buf, 32, "%.*f%s", frac > 0 ? frac : 0, v, frac > 0 ? "" : ".0");
    return buf;
}
#define REPR(v) py_repr((char[32]){0}, (v))

static eng_err check_config(const opt_config *c)
{
    /* PyTorch's checks and messages; NaN and infinities are refused too (its `x < 0` tests let
     * NaN through, which would silently turn every parameter into NaN). */
    if (!(c->lr >= 0 && isfinite(c->lr)))
        return err_set(E_INVAL, "Invalid learning rate: %s", REPR(c->lr));
    if (c->kind == OPT_SGD) {
        if (!(c->momentum >= 0 && isfinite(c->momentum)))
            return err_set(E_INVAL, "Invalid momentum value: %s", REPR(c->momentum));
        if (!(c->weight_decay >= 0 && isfinite(c->weight_decay)))
            return err_set(E_INVAL, "Invalid weight_decay value: %s", REPR(c->weight_decay));
        if (!isfinite(c->dampening))
            return err_set(E_INVAL, "Invalid dampening value: %s", REPR(c->dampening));
        if (c->nesterov && (c->momentum <= 0 || c->dampening != 0))
            return err_set(E_INVAL, "Nesterov momentum requires a momentum and zero dampening");
        return E_OK;
    }
    if (c->kind != OPT_ADAM && c->kind != OPT_ADAMW)
        return err_set(E_INVAL, "unknown optimizer kind %d", (int)c->kind);
    if (!(c->eps >= 0 && isfinite(c->eps)))
        return err_set(E_INVAL, "Invalid epsilon value: %s", REPR(c->eps));
    if (!(c->beta1 >= 0 && c->beta1 < 1))
        return err_set(E_INVAL, "Invalid beta parameter at index 0: %s", REPR(c->beta1));
    if (!(c->beta2 >= 0 && c->beta2 < 1))
        return err_set(E_INVAL, "Invalid beta parameter at index 1: %s", REPR(c->beta2));
    if (!(c->weight_decay >= 0 && isfinite(c->weight_decay)))
        return err_set(E_INVAL, "Invalid weight_decay value: %s", REPR(c->weight_decay));
    return E_OK;
}

typedef struct pidx {
    const tensor *t;
    int i;
} pidx;

static int pidx_cmp(const void *a, const void *b)
{
    const pidx *x = a, *y = b;
    if (x->t != y->t) return (uintptr_t)x->t < (uintptr_t)y->t ? -1 : 1;
    return x->i - y->i;
}

static eng_err check_params(tensor *const *params, int n)
{
    for (int i = 0; i < n; i++) {
        const tensor *p = params[i];
        if (!dtype_is_float((dtype)p->dtype))
            return err_set(E_DTYPE, "optimizer can only optimize Tensors of floating point dtype, "
                           "but params[%d] is %s", i, dtype_name((dtype)p->dtype));
        if (!tensor_is_leaf(p))
            return err_set(E_LEAF, "can't optimize a non-leaf Tensor (params[%d])", i);
        for (int d = 0; d < p->ndim; d++)
            if (p->strides[d] == 0 && p->shape[d] > 1)
                return err_set(E_INVAL, "unsupported operation: more than one element of the "
                               "written-to tensor refers to a single memory location (params[%d]). "
                               "Please clone() the tensor first.", i);
    }
    /* Duplicates would each get their own state, where PyTorch shares one: refuse them. */
    pidx *s = mem_alloc((size_t)n * sizeof *s);
    if (!s) return err_nomem();
    for (int i = 0; i < n; i++) s[i] = (pidx){params[i], i};
    qsort(s, (size_t)n, sizeof *s, pidx_cmp);
    eng_err e = E_OK;
    for (int i = 1; i < n && !e; i++)
        if (s[i].t == s[i - 1].t)
            e = err_set(E_INVAL, "params[%d] and params[%d] are the same tensor", s[i - 1].i,
                        s[i].i);
    mem_free(s);
    return e;
}

eng_err optimizer_new(optimizer **out, tensor *const *params, int n, const opt_config *cfg)
{
    if (n <= 0) return err_set(E_INVAL, "optimizer got an empty parameter list");
    eng_err e = check_config(cfg);
    if (!e) e = check_params(params, n);
    if (e) return e;
    optimizer *o = mem_calloc(sizeof *o + (size_t)n * (3 * sizeof(tensor *) + sizeof(pstate)));
    if (!o) return err_nomem();
    atomic_init(&o->refs, 1);
    o->cfg = *cfg;
    o->n = n;
    o->params = (tensor **)(o + 1);
    o->tmp = o->params + n;
    o->copy = o->tmp + n;
    o->st = (pstate *)(o->copy + n);
    for (int i = 0; i < n; i++) {
        tensor_retain(params[i]);
        o->params[i] = params[i];
    }
    *out = o;
    return E_OK;
}

void optimizer_retain(optimizer *o)
{
    atomic_fetch_add_explicit(&o->refs, 1, memory_order_relaxed);
}

void optimizer_release(optimizer *o)
{
    if (!o || atomic_fetch_sub_explicit(&o->refs, 1, memory_order_acq_rel) != 1) return;
    for (int i = 0; i < o->n; i++) {
        tensor_release(o->st[i].buf);
        tensor_release(o->params[i]);
    }
    mem_free(o);
}

double optimizer_get_lr(const optimizer *o) { return o->cfg.lr; }

eng_err optimizer_set_lr(optimizer *o, double lr)
{
    if (!(lr >= 0 && isfinite(lr)))
        return err_set(E_INVAL, "Invalid learning rate: %s", REPR(lr));
    o->cfg.lr = lr;
    return E_OK;
}

/* ---- step ----------------------------------------------------------------------------------- */
static int state_count(const opt_config *c)
{
    if (c->kind == OPT_SGD) return c->momentum != 0 ? 1 : 0;
    return c->amsgrad ? 3 : 2;
}

/* Whether t's elements fill numel consecutive slots in some order of its dimensions
 * (PyTorch's is_non_overlapping_and_dense). */
static bool dense(const tensor *t)
{
    int perm[MAX_DIMS], n = 0;
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] == 1) continue;
        int j = n++;
        for (; j > 0 && t->strides[perm[j - 1]] > t->strides[d]; j--) perm[j] = perm[j - 1];
        perm[j] = d;
    }
    int64_t expect = 1;
    for (int j = 0; j < n && expect; j++)
        expect = t->strides[perm[j]] == expect ? expect * t->shape[perm[j]] : 0;
    return expect && t->numel > 0;
}

/* The state's strides: the parameter's when they lay its elements out densely (PyTorch's
 * preserve_format, so a transposed parameter and its state are walked in the same memory
 * order), else contiguous ones. */
static void state_strides(const tensor *p, int64_t *strides)
{
    if (dense(p)) memcpy(strides, p->strides, (size_t)p->ndim * sizeof(int64_t));
    else contiguous_strides(p->shape, p->ndim, strides);
}

/* A .grad in the parameter's own memory (set to p.detach(), or to a view of p) is read by
 * PyTorch after AdamW's param.mul_() and, element by element, before any other write to p.
 * The fused kernel reads each element just before writing it, so it gives the same result
 * when g's element i is p's element i (no AdamW decay), and needs the decay done first and/or
 * a copy of g otherwise. Only checked by pointer, once per step: the common case pays nothing. */
enum { GRAD_OWN, GRAD_SAME, GRAD_OVERLAP };

static int grad_alias(const tensor *p, const tensor *g)
{
    if (g->st != p->st || p->numel == 0) return GRAD_OWN;
    bool same = g->offset == p->offset;
    for (int d = 0; d < p->ndim && same; d++)
        same = p->shape[d] == 1 || g->strides[d] == p->strides[d];
    return same ? GRAD_SAME : GRAD_OVERLAP;
}

/* PyTorch's get_overlap_status(p, g) == PARTIAL: its in-place ops refuse such an input. */
static bool partial_overlap(const tensor *p, const tensor *g)
{
    if (g->st != p->st || !dense(p) || !dense(g)) return false;
    int64_t pb = p->offset, pe = pb + p->numel, gb = g->offset, ge = gb + g->numel;
    if (pb == gb && pe == ge)
        return memcmp(p->strides, g->strides, (size_t)p->ndim * sizeof(int64_t)) != 0;
    return pb < ge && gb < pe;
}

/* Allocates (zeroed) the state of parameter p on its first update. */
static eng_err state_ensure(pstate *st, const tensor *p, int k)
{
    if (st->buf || k == 0) return E_OK;
    int64_t total = k * p->numel, strides[MAX_DIMS];
    tensor *flat = tensor_new((dtype)p->dtype, &total, 1);
    if (!flat) return err_kind();
    state_strides(p, strides);
    st->buf = tensor_alias(flat, p->shape, strides, p->ndim, 0);
    if (st->buf) memset(tensor_data(flat), 0, (size_t)total * dtype_size((dtype)p->dtype));
    tensor_release(flat);
    return st->buf ? E_OK : err_nomem();
}

/* copy: NULL, or a scratch tensor shaped as p that takes g's values before the update. */
static void update(const optimizer *o, tensor *p, tensor *g, tensor *copy, pstate *st)
{
    const opt_config *c = &o->cfg;
    kctx k = {.blk = p->numel * (int64_t)dtype_size((dtype)p->dtype)};
    int kind;
    int64_t grain = PAR_GRAIN_COSTLY;
    st->step++;
    if (c->kind == OPT_SGD) {
        kind = st->buf ? K_SGD_BUF : K_SGD;
        grain = PAR_GRAIN_CHEAP;
        k.nlr = -c->lr;
        k.wd = c->weight_decay;
        k.mom = c->momentum;
        k.damp1 = 1 - c->dampening;
        k.first = st->step == 1;
        k.nesterov = c->nesterov;
    } else {
        /* As PyTorch: bias corrections and step size in double (its step count is a float32
         * tensor, which is the same number up to 2^24 steps). */
        double step = (double)st->step;
        double bc1 = 1 - pow(c->beta1, step), bc2 = 1 - pow(c->beta2, step);
        kind = c->amsgrad ? K_ADAM_AMS : K_ADAM;
        k.nlr = -(c->lr / bc1);
        k.bc2s = sqrt(bc2);
        k.eps = c->eps;
        k.b1 = c->beta1;
        k.c1 = 1 - c->beta1;
        k.b2 = c->beta2;
        k.c2 = 1 - c->beta2;
        bool adamw = c->kind == OPT_ADAMW;
        k.decay = adamw ? 1 - c->lr * c->weight_decay : 1;
        k.wd = adamw ? 0 : c->weight_decay;
    }
    tensor *ins[2] = {g, st->buf};
    iter it;
    if (c->kind == OPT_ADAMW && g->st == p->st) {
        /* PyTorch's order: param.mul_(1 - lr * wd) first, which the grad then reads. */
        iter_init(&it, p, NULL, 0);
        iter_run(&it, p->dtype == DT_F32 ? decay_f32 : decay_f64, &k, PAR_GRAIN_CHEAP);
        k.decay = 1;
    }
    if (copy) {
        kernel_copy(copy, g); /* cannot fail: same shape and dtype */
        ins[0] = copy;
    }
    iter_init(&it, p, ins, st->buf ? 2 : 1);
    iter_run(&it, pick_loop(kind, (dtype)p->dtype), &k, grain);
    tensor_bump_version(p);
}

eng_err optimizer_step(optimizer *o)
{
    /* Snapshot and check every .grad, then allocate the missing state, and only then write:
     * a failing step changes nothing. The kernels write the data directly, so nothing is
     * recorded whatever the grad mode. */
    eng_err e = E_OK;
    int k = state_count(&o->cfg);
    for (int i = 0; i < o->n; i++) {
        tensor *p = o->params[i], *g = tensor_grad_get(p);
        o->tmp[i] = g;
        if (!g || e) continue;
        char a[160], b[160];
        if (g->dtype != p->dtype)
            e = err_set(E_DTYPE, "params[%d] has a gradient of dtype %s, expected %s", i,
                        dtype_name((dtype)g->dtype), dtype_name((dtype)p->dtype));
        else if (!shapes_equal(g, p))
            e = err_set(E_SHAPE, "params[%d] has a gradient of shape %s, expected %s", i,
                        fmt_shape(a, sizeof a, g->shape, g->ndim),
                        fmt_shape(b, sizeof b, p->shape, p->ndim));
        /* Plain SGD is PyTorch's param.add_(grad, alpha=-lr), which refuses this grad. */
        else if (o->cfg.kind == OPT_SGD && o->cfg.momentum == 0 && o->cfg.weight_decay == 0 &&
                 partial_overlap(p, g))
            e = err_set(E_INVAL, "unsupported operation: some elements of the input tensor and "
                        "the written-to tensor refer to a single memory location (params[%d] "
                        "and its gradient). Please clone() the tensor before performing the "
                        "operation.", i);
    }
    for (int i = 0; i < o->n && !e; i++) {
        tensor *g = o->tmp[i];
        if (!g) continue;
        e = state_ensure(&o->st[i], o->params[i], k);
        if (!e && grad_alias(o->params[i], g) == GRAD_OVERLAP &&
            !(o->copy[i] = tensor_new_like(g, (dtype)g->dtype)))
            e = err_kind();
    }
    for (int i = 0; i < o->n; i++) {
        if (o->tmp[i] && !e) {
            /* Under the parameter's meta lock, which a backward holds while it adds into
             * .grad: a step at the same time read a half-accumulated gradient. */
            tmeta *m = tensor_meta_peek(o->params[i]);
            if (m) tmeta_lock(m);
            update(o, o->params[i], o->tmp[i], o->copy[i], &o->st[i]);
            if (m) tmeta_unlock(m);
        }
        tensor_release(o->tmp[i]);
        tensor_release(o->copy[i]);
        o->tmp[i] = o->copy[i] = NULL;
    }
    return e;
}

/* ---- zero_grad ------------------------------------------------------------------------------ */
eng_err grad_zero_check(tensor *g)
{
    eng_err e = view_sync(g); /* a stale view's grad_fn must not be read */
    if (e) return e;
    if (g->grad_fn && g->base)
        return err_set(E_INVAL, "Can't detach views in-place. Use detach() instead.");
    if (g->grad_fn || !g->base || !grad_mode_enabled()) return E_OK;
    /* What g.zero_() refuses under grad mode once g itself requires no grad: a view of a
     * tensor that does (inplace.c's checks). PyTorch fails there after detaching; checking
     * first keeps a failing call from changing anything. */
    const tensor *b = g->base;
    if (!b->requires_grad && !b->grad_fn) return E_OK;
    if (g->view_kind != VK_DEFAULT) return view_refused(g, false);
    if (!b->grad_fn)
        return err_set(E_LEAF, "a view of a leaf Variable that requires grad is being used in an "
                       "in-place operation.");
    return E_OK;
}

void grad_zero_apply(tensor *g, tmeta *owner)
{
    node *fn = g->grad_fn;
    if (fn) {
        /* detach_(): g itself leaves its graph, so a handle to it no longer reaches that
         * graph (nor keeps it alive). Hooks registered on g so far stay with the old grad_fn,
         * as after any change of history (its meta's history moves on; its AccumulateGrad
         * node is not marked moved: g becomes a leaf, which may require grad again). */
        tmeta *m = tensor_meta_peek(g);
        if (m) __atomic_add_fetch(&m->hist, 1, __ATOMIC_ACQ_REL);
        g->grad_fn = NULL;
        g->output_nr = 0;
    }
    leaf_set_requires_grad(g, false); /* requires_grad_(False), also for a user's leaf */
    /* grad_zero_check left nothing that zero_ would record under grad mode: off, it cannot
     * fail. Under the owner's lock, which a backward holds while it adds into .grad: zeroing
     * at the same time left half of it zero. */
    bool prev = grad_mode_set(false);
    if (owner) tmeta_lock(owner);
    op_zero_(g);
    if (owner) tmeta_unlock(owner);
    grad_mode_set(prev);
    node_release(fn); /* last: it may free a graph */
}

eng_err optimizer_zero_grad(optimizer *o, bool set_to_none)
{
    if (set_to_none) {
        for (int i = 0; i < o->n; i++) {
            tmeta *m = tensor_meta_peek(o->params[i]);
            if (!m) continue;
            tmeta_lock(m);
            tensor *g = m->grad;
            m->grad = NULL;
            tmeta_unlock(m);
            tensor_release(g);
        }
        return E_OK;
    }
    /* PyTorch's zero_grad(set_to_none=False) works on each .grad itself, in place; every one
     * is checked before any changes, so a failing call changes nothing (PyTorch stops at the
     * failing parameter, the earlier ones zeroed). */
    eng_err e = E_OK;
    for (int i = 0; i < o->n; i++) {
        tensor *g = tensor_grad_get(o->params[i]);
        o->tmp[i] = g;
        if (g && !e) {
            e = grad_zero_check(g);
            if (e && e != E_NOMEM) {
                char msg[512];
                snprintf(msg, sizeof msg, "%s", err_message());
                e = err_set(e, "%s (the .grad of params[%d])", msg, i);
            }
        }
    }
    for (int i = 0; i < o->n; i++) {
        if (o->tmp[i] && !e) grad_zero_apply(o->tmp[i], tensor_meta_peek(o->params[i]));
        tensor_release(o->tmp[i]);
        o->tmp[i] = NULL;
    }
    return e;
}
