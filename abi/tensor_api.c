/*
 * tensor_api.c: the public functions that create, inspect and release tensors and
 * generators, and that read or change a tensor's autograd state (grad, hooks).
 */
#include <string.h>

#include "../engine/alloc.h"
#include "../engine/format.h"
#include "../engine/optim.h"
#include "../engine/rng.h"
#include "boundary.h"

#define G(h) ((generator *)(h))

/* ---- generators ---- */
AG_API int ag_generator_new(ag_generator **out, uint64_t seed)
{
    CHECK_NOT_NULL("ag_generator_new", out, "out");
    generator *g = generator_new(seed);
    if (!g) return api_error("ag_generator_new", AG_ENOMEM, "out of memory");
    *out = (ag_generator *)g;
    return AG_OK;
}

AG_API int ag_generator_manual_seed(ag_generator *gen, uint64_t seed)
{
    CHECK_NOT_NULL("ag_generator_manual_seed", gen, "gen");
    generator_seed(G(gen), seed);
    return AG_OK;
}

AG_API void ag_generator_release(ag_generator *gen) { generator_release(G(gen)); }

AG_API int ag_manual_seed(uint64_t seed)
{
    generator_seed(generator_default(), seed);
    return AG_OK;
}

/* ---- creation ---- */
AG_API int ag_tensor_from_data(ag_tensor **out, const void *data, ag_dtype dtype,
                               const int64_t *shape, size_t ndim)
{
    const char *fn = "ag_tensor_from_data";
    CHECK_NOT_NULL(fn, out, "out");
    CHECK_NOT_NULL(fn, data, "data");
    CHECK_SHAPE(fn, shape, ndim);
    RETURN_TENSOR(fn, out, op_from_data(&r_, data, (enum dtype)dtype, shape, (int)ndim));
}

AG_API int ag_tensor_from_f64(ag_tensor **out, const double *data, ag_dtype dtype,
                              const int64_t *shape, size_t ndim)
{
    const char *fn = "ag_tensor_from_f64";
    CHECK_NOT_NULL(fn, out, "out");
    CHECK_NOT_NULL(fn, data, "data");
    CHECK_SHAPE(fn, shape, ndim);
    RETURN_TENSOR(fn, out, op_from_f64(&r_, data, (enum dtype)dtype, shape, (int)ndim));
}

/* Stores value into t, a fresh 0-d tensor of a float dtype; returns t. */
static inline tensor *scalar_fill(tensor *t, double value)
{
    if (t->dtype == DT_F32) *(float *)tensor_data_unchecked(t) = (float)value;
    else *(double *)tensor_data_unchecked(t) = value;
    return t;
}

/* A new 0-d tensor holding value (ag_tensor_scalar's conversions); fn names the caller in
 * errors. */
static inline int scalar_make(const char *fn, tensor **out, double value, ag_dtype dtype)
{
    /* The float dtypes, which scalar graphs make by the hundred thousand, without the layers
     * of op_scalar (op_empty, tensor_new, kernel_fill): the same tensor, the value converted
     * as kernel_fill converts it, and for them op_scalar checks nothing. */
    if (dtype == AG_FLOAT32 || dtype == AG_FLOAT64) {
        tensor *t = tensor_new_scalar((enum dtype)dtype);
        if (!t) return api_fail(fn, err_kind());
        *out = scalar_fill(t, value);
        return AG_OK;
    }
    eng_err e = op_scalar(out, value, (enum dtype)dtype);
    return e ? api_fail(fn, e) : AG_OK;
}

AG_API int ag_tensor_scalar(ag_tensor **out, double value, ag_dtype dtype)
{
    CHECK_NOT_NULL("ag_tensor_scalar", out, "out");
    tensor *t;
    int rc = scalar_make("ag_tensor_scalar", &t, value, dtype);
    if (!rc) *out = TH(t);
    return rc;
}

AG_API int ag_tensor_scalar_requires_grad(ag_tensor **out, double value, ag_dtype dtype,
                                          int requires_grad)
{
    const char *fn = "ag_tensor_scalar_requires_grad";
    CHECK_NOT_NULL(fn, out, "out");
    tensor *t;
    if (requires_grad && (dtype == AG_FLOAT32 || dtype == AG_FLOAT64)) {
        /* As ag_tensor_set_requires_grad on a fresh leaf: its meta (where .grad lives) now,
         * so that backward never has to allocate it halfway through, made in the leaf's own
         * block; t is this call's own until it returns. */
        if (!(t = tensor_new_scalar_leaf((enum dtype)dtype))) return api_fail(fn, err_kind());
        leaf_set_requires_grad(scalar_fill(t, value), true);
        *out = TH(t);
        return AG_OK;
    }
    int rc = scalar_make(fn, &t, value, dtype);
    if (rc) return rc; /* (the value's conversion is refused first, as torch.tensor refuses) */
    if (requires_grad) {
        tensor_release(t);
        return api_error(fn, AG_EDTYPE, "only Tensors of floating point dtype can require "
                         "gradients (got %s)", dtype_name((enum dtype)dtype));
    }
    *out = TH(t);
    return AG_OK;
}

#define SHAPED(NAME, CALL)                                                                 \
    AG_API int NAME(ag_tensor **out, ag_dtype dtype, const int64_t *shape, size_t ndim)   \
    {                                                                                      \
        CHECK_NOT_NULL(#NAME, out, "out");                                                 \
        CHECK_SHAPE(#NAME, shape, ndim);                                                   \
        RETURN_TENSOR(#NAME, out, CALL);                                                   \
    }
SHAPED(ag_empty, op_empty(&r_, (enum dtype)dtype, shape, (int)ndim))
SHAPED(ag_zeros, op_full(&r_, (enum dtype)dtype, shape, (int)ndim, 0.0))
SHAPED(ag_ones, op_full(&r_, (enum dtype)dtype, shape, (int)ndim, 1.0))

AG_API int ag_full(ag_tensor **out, ag_dtype dtype, const int64_t *shape, size_t ndim,
                   double value)
{
    CHECK_NOT_NULL("ag_full", out, "out");
    CHECK_SHAPE("ag_full", shape, ndim);
    RETURN_TENSOR("ag_full", out, op_full(&r_, (enum dtype)dtype, shape, (int)ndim, value));
}

AG_API int ag_arange(ag_tensor **out, ag_dtype dtype, double start, double end, double step)
{
    CHECK_NOT_NULL("ag_arange", out, "out");
    RETURN_TENSOR("ag_arange", out, op_arange(&r_, (enum dtype)dtype, start, end, step));
}

AG_API int ag_eye(ag_tensor **out, ag_dtype dtype, int64_t n, int64_t m)
{
    CHECK_NOT_NULL("ag_eye", out, "out");
    RETURN_TENSOR("ag_eye", out, op_eye(&r_, (enum dtype)dtype, n, m));
}

AG_API int ag_rand(ag_tensor **out, ag_generator *gen, ag_dtype dtype, const int64_t *shape,
                   size_t ndim)
{
    CHECK_NOT_NULL("ag_rand", out, "out");
    CHECK_SHAPE("ag_rand", shape, ndim);
    RETURN_TENSOR("ag_rand", out, op_rand(&r_, G(gen), (enum dtype)dtype, shape, (int)ndim));
}

AG_API int ag_randn(ag_tensor **out, ag_generator *gen, ag_dtype dtype, const int64_t *shape,
                    size_t ndim)
{
    CHECK_NOT_NULL("ag_randn", out, "out");
    CHECK_SHAPE("ag_randn", shape, ndim);
    RETURN_TENSOR("ag_randn", out, op_randn(&r_, G(gen), (enum dtype)dtype, shape, (int)ndim));
}

AG_API int ag_randint(ag_tensor **out, ag_generator *gen, int64_t low, int64_t high,
                      ag_dtype dtype, const int64_t *shape, size_t ndim)
{
    CHECK_NOT_NULL("ag_randint", out, "out");
    CHECK_SHAPE("ag_randint", shape, ndim);
    RETURN_TENSOR("ag_randint", out,
                  op_randint(&r_, G(gen), low, high, (enum dtype)dtype, shape, (int)ndim));
}

#define LIKE(NAME, CALL)                                                                   \
    AG_API int NAME(ag_tensor **out, const ag_tensor *t)                                   \
    {                                                                                      \
        CHECK_NOT_NULL(#NAME, out, "out");                                                 \
        CHECK_NOT_NULL(#NAME, t, "t");                                                     \
        RETURN_TENSOR(#NAME, out, CALL);                                                   \
    }
LIKE(ag_empty_like, op_empty_like(&r_, T(t)))
LIKE(ag_zeros_like, op_full_like(&r_, T(t), 0.0))
LIKE(ag_ones_like, op_full_like(&r_, T(t), 1.0))

AG_API int ag_full_like(ag_tensor **out, const ag_tensor *t, double value)
{
    CHECK_NOT_NULL("ag_full_like", out, "out");
    CHECK_NOT_NULL("ag_full_like", t, "t");
    RETURN_TENSOR("ag_full_like", out, op_full_like(&r_, T(t), value));
}

AG_API int ag_rand_like(ag_tensor **out, ag_generator *gen, const ag_tensor *t)
{
    CHECK_NOT_NULL("ag_rand_like", out, "out");
    CHECK_NOT_NULL("ag_rand_like", t, "t");
    RETURN_TENSOR("ag_rand_like", out, op_rand_like(&r_, G(gen), T(t)));
}

AG_API int ag_randn_like(ag_tensor **out, ag_generator *gen, const ag_tensor *t)
{
    CHECK_NOT_NULL("ag_randn_like", out, "out");
    CHECK_NOT_NULL("ag_randn_like", t, "t");
    RETURN_TENSOR("ag_randn_like", out, op_randn_like(&r_, G(gen), T(t)));
}

/* ---- lifetime and queries ---- */
AG_API int ag_tensor_retain(ag_tensor *t)
{
    CHECK_NOT_NULL("ag_tensor_retain", t, "t");
    tensor_retain(T(t));
    return AG_OK;
}

AG_API void ag_tensor_release(ag_tensor *t) { tensor_release(T(t)); }

#define QUERY(NAME, TYPE, EXPR)                                                            \
    AG_API int NAME(TYPE *out, const ag_tensor *t)                                         \
    {                                                                                      \
        CHECK_NOT_NULL(#NAME, out, "out");                                                 \
        CHECK_NOT_NULL(#NAME, t, "t");                                                     \
        *out = (EXPR);                                                                     \
        return AG_OK;                                                                      \
    }
QUERY(ag_tensor_dtype, ag_dtype, (ag_dtype)T(t)->dtype)
QUERY(ag_tensor_ndim, size_t, T(t)->ndim)
QUERY(ag_tensor_numel, int64_t, T(t)->numel)
QUERY(ag_tensor_storage_offset, int64_t, T(t)->offset)
QUERY(ag_tensor_is_contiguous, int, tensor_is_contiguous(T(t)))
QUERY(ag_tensor_version, int64_t, tensor_version(T(t)))
/* requires_grad needs no fresh grad_fn (it counts the base), and PyTorch answers it for a
 * view it would refuse to regenerate. */
QUERY(ag_tensor_requires_grad, int, tensor_requires_grad(T(t)))

/* A view whose base changed in place behind it gets its fresh grad_fn before anything reads
 * its grad_fn (view_sync; this can fail, with PyTorch's error for refused views). */
#define SYNC_VIEW(NAME, t)                                                                 \
    do {                                                                                   \
        eng_err e_ = view_sync(T(t));                                                      \
        if (e_) return api_fail(NAME, e_);                                                 \
    } while (0)

AG_API int ag_tensor_is_leaf(int *out, const ag_tensor *t)
{
    CHECK_NOT_NULL("ag_tensor_is_leaf", out, "out");
    CHECK_NOT_NULL("ag_tensor_is_leaf", t, "t");
    SYNC_VIEW("ag_tensor_is_leaf", t);
    *out = tensor_is_leaf(T(t));
    return AG_OK;
}

static int copy_dims(const char *fn, int64_t *out, size_t cap, const ag_tensor *t, bool strides)
{
    CHECK_NOT_NULL(fn, t, "t");
    size_t nd = T(t)->ndim;
    if (nd && !out) return api_error(fn, AG_EINVAL, "argument 'out' is NULL");
    if (cap < nd)
        return api_error(fn, AG_ERANGE, "buffer holds %zu entries, tensor has %zu dimensions",
                         cap, nd);
    if (nd) /* a 0-d tensor may be asked with out == NULL, and memcpy(NULL, ..) is UB */
        memcpy(out, strides ? T(t)->strides : T(t)->shape, nd * sizeof *out);
    return AG_OK;
}

AG_API int ag_tensor_shape(int64_t *out, size_t cap, const ag_tensor *t)
{
    return copy_dims("ag_tensor_shape", out, cap, t, false);
}

AG_API int ag_tensor_strides(int64_t *out, size_t cap, const ag_tensor *t)
{
    return copy_dims("ag_tensor_strides", out, cap, t, true);
}

AG_API int ag_tensor_size(int64_t *out, const ag_tensor *t, int64_t dim)
{
    CHECK_NOT_NULL("ag_tensor_size", out, "out");
    CHECK_NOT_NULL("ag_tensor_size", t, "t");
    /* (Not wrap_dim's scalar rule, which ops use: PyTorch's t.size(0) of a 0-d tensor is an
     * IndexError.) */
    if (T(t)->ndim == 0)
        return api_error("ag_tensor_size", AG_ERANGE,
                         "Dimension specified as %lld but tensor has no dimensions",
                         (long long)dim);
    int d;
    eng_err e = wrap_dim(dim, T(t)->ndim, &d);
    if (e) return api_fail("ag_tensor_size", e);
    *out = T(t)->shape[d];
    return AG_OK;
}

AG_API int ag_tensor_shares_storage(int *out, const ag_tensor *a, const ag_tensor *b)
{
    CHECK_NOT_NULL("ag_tensor_shares_storage", out, "out");
    CHECK_NOT_NULL("ag_tensor_shares_storage", a, "a");
    CHECK_NOT_NULL("ag_tensor_shares_storage", b, "b");
    *out = T(a)->st == T(b)->st;
    return AG_OK;
}

static int item_check(const char *fn, const void *out, const ag_tensor *t)
{
    CHECK_NOT_NULL(fn, out, "out");
    CHECK_NOT_NULL(fn, t, "t");
    if (T(t)->numel != 1)
        return api_error(fn, AG_ESHAPE, "a Tensor with %lld elements cannot be converted to Scalar",
                         (long long)T(t)->numel);
    return AG_OK;
}

AG_API int ag_tensor_item(double *out, const ag_tensor *t)
{
    int rc = item_check("ag_tensor_item", out, t);
    if (rc) return rc;
    *out = tensor_get_f64(T(t), 0);
    return AG_OK;
}

AG_API int ag_tensor_item_int64(int64_t *out, const ag_tensor *t)
{
    int rc = item_check("ag_tensor_item_int64", out, t);
    if (rc) return rc;
    tensor_copy_out(T(t), out, DT_I64);
    return AG_OK;
}

/* have: the buffer's size in bytes (in_bytes) or in elements, as the caller gave it. */
static int copy_out(const char *fn, void *buf, size_t have, bool in_bytes, size_t elem,
                    const ag_tensor *t, dtype dt)
{
    CHECK_NOT_NULL(fn, t, "t");
    size_t need = (size_t)T(t)->numel * (in_bytes ? elem : 1);
    if (need && !buf) return api_error(fn, AG_EINVAL, "argument 'buf' is NULL");
    if (have < need)
        return api_error(fn, AG_ERANGE, "buffer holds %zu %s, %zu needed", have,
                         in_bytes ? "bytes" : "elements", need);
    if (need) tensor_copy_out(T(t), buf, dt);
    return AG_OK;
}

AG_API int ag_tensor_copy_data(void *buf, size_t nbytes, const ag_tensor *t)
{
    if (!t) return api_error("ag_tensor_copy_data", AG_EINVAL, "argument 't' is NULL");
    size_t es = dtype_size((dtype)T(t)->dtype);
    return copy_out("ag_tensor_copy_data", buf, nbytes, true, es, t, (dtype)T(t)->dtype);
}

AG_API int ag_tensor_copy_f64(double *buf, size_t cap, const ag_tensor *t)
{
    return copy_out("ag_tensor_copy_f64", buf, cap, false, sizeof(double), t, DT_F64);
}

AG_API int ag_tensor_copy_i64(int64_t *buf, size_t cap, const ag_tensor *t)
{
    return copy_out("ag_tensor_copy_i64", buf, cap, false, sizeof(int64_t), t, DT_I64);
}

AG_API int ag_tensor_to_string(char **out, const ag_tensor *t)
{
    CHECK_NOT_NULL("ag_tensor_to_string", out, "out");
    CHECK_NOT_NULL("ag_tensor_to_string", t, "t");
    SYNC_VIEW("ag_tensor_to_string", t);
    char *s;
    eng_err e = tensor_format(&s, T(t));
    if (e) return api_fail("ag_tensor_to_string", e);
    *out = s;
    return AG_OK;
}

AG_API void ag_string_free(char *s) { mem_free(s); }

/* ---- autograd state ---- */
AG_API int ag_tensor_set_requires_grad(ag_tensor *h, int requires_grad)
{
    const char *fn = "ag_tensor_set_requires_grad";
    CHECK_NOT_NULL(fn, h, "t");
    tensor *t = T(h);
    bool want = requires_grad != 0;
    SYNC_VIEW(fn, t);
    if (t->grad_fn) {
        if (want) return AG_OK;
        return api_error(fn, AG_ELEAF, "you can only change requires_grad flags of leaf variables. "
                         "If you want to use a computed variable in a subgraph that doesn't require "
                         "differentiation use var_no_grad = var.detach().");
    }
    if (want && !dtype_is_float((dtype)t->dtype))
        return api_error(fn, AG_EDTYPE, "only Tensors of floating point dtype can require "
                         "gradients (got %s)", dtype_name((dtype)t->dtype));
    /* A leaf that requires grad gets its meta (where .grad lives) now, so that backward
     * never has to allocate it halfway through. */
    if (want && !tensor_meta(t)) return api_error(fn, AG_ENOMEM, "out of memory");
    leaf_set_requires_grad(t, want);
    return AG_OK;
}

AG_API int ag_tensor_grad(ag_tensor **out, const ag_tensor *t)
{
    CHECK_NOT_NULL("ag_tensor_grad", out, "out");
    CHECK_NOT_NULL("ag_tensor_grad", t, "t");
    *out = TH(tensor_grad_get(T(t)));
    return AG_OK;
}

AG_API int ag_tensor_set_grad(ag_tensor *h, ag_tensor *g)
{
    const char *fn = "ag_tensor_set_grad";
    CHECK_NOT_NULL(fn, h, "t");
    tensor *t = T(h);
    if (g) {
        /* (backward would then add gradients into the tensor itself) */
        if (T(g) == t) return api_error(fn, AG_EINVAL, "can't assign Variable as its own grad");
        if (T(g)->dtype != t->dtype)
            return api_error(fn, AG_EDTYPE, "assigned grad has data of a different type (%s vs %s)",
                             dtype_name((dtype)T(g)->dtype), dtype_name((dtype)t->dtype));
        if (!shapes_equal(T(g), t)) {
            char a[160], b[160];
            return api_error(fn, AG_ESHAPE, "assigned grad has data of a different size (%s vs %s)",
                             fmt_shape(a, sizeof a, T(g)->shape, T(g)->ndim),
                             fmt_shape(b, sizeof b, t->shape, t->ndim));
        }
    }
    tmeta *m = g ? tensor_meta(t) : tensor_meta_peek(t);
    if (!m) {
        if (g) return api_error(fn, AG_ENOMEM, "out of memory");
        return AG_OK;
    }
    if (g) tensor_retain(T(g));
    tmeta_lock(m);
    tensor *old = m->grad;
    m->grad = T(g);
    tmeta_unlock(m);
    tensor_release(old);
    return AG_OK;
}

AG_API int ag_tensor_zero_grad(ag_tensor *h)
{
    CHECK_NOT_NULL("ag_tensor_zero_grad", h, "t");
    tensor *g = tensor_grad_get(T(h));
    if (!g) return AG_OK;
    /* As ag_optimizer_zero_grad(opt, 0) (and nn.Module.zero_grad) does to each .grad. */
    eng_err e = grad_zero_check(g);
    if (!e) grad_zero_apply(g, tensor_meta_peek(T(h)));
    tensor_release(g);
    return e ? api_fail("ag_tensor_zero_grad", e) : AG_OK;
}

AG_API int ag_tensor_grad_fn(ag_node **out, const ag_tensor *t)
{
    CHECK_NOT_NULL("ag_tensor_grad_fn", out, "out");
    CHECK_NOT_NULL("ag_tensor_grad_fn", t, "t");
    SYNC_VIEW("ag_tensor_grad_fn", t);
    node *n = T(t)->grad_fn;
    if (n) node_retain(n);
    *out = NH(n);
    return AG_OK;
}

AG_API int ag_tensor_retain_grad(ag_tensor *h)
{
    const char *fn = "ag_tensor_retain_grad";
    CHECK_NOT_NULL(fn, h, "t");
    tensor *t = T(h);
    SYNC_VIEW(fn, t);
    if (!tensor_requires_grad(t))
        return api_error(fn, AG_ENOGRAD, "can't retain_grad on Tensor that has requires_grad=False");
    if (!t->grad_fn) return AG_OK;
    tmeta *m = tensor_meta(t);
    if (!m) return api_error(fn, AG_ENOMEM, "out of memory");
    eng_err e = node_attach_meta(t->grad_fn, t->output_nr, m, meta_hist(m));
    if (e) return api_fail(fn, e);
    __atomic_store_n(&m->retains_grad, true, __ATOMIC_RELEASE); /* backward may be reading it */
    return AG_OK;
}

AG_API int ag_tensor_retains_grad(int *out, const ag_tensor *t)
{
    CHECK_NOT_NULL("ag_tensor_retains_grad", out, "out");
    CHECK_NOT_NULL("ag_tensor_retains_grad", t, "t");
    tmeta *m = tensor_meta_peek(T(t));
    *out = T(t)->grad_fn && m && __atomic_load_n(&m->retains_grad, __ATOMIC_ACQUIRE);
    return AG_OK;
}

AG_API int ag_tensor_detach(ag_tensor **out, const ag_tensor *t)
{
    CHECK_NOT_NULL("ag_tensor_detach", out, "out");
    CHECK_NOT_NULL("ag_tensor_detach", t, "t");
    RETURN_TENSOR("ag_tensor_detach", out, op_detach(&r_, T(t)));
}

/* The engine calls hooks with its own types; a trampoline per hook converts, so no function
 * is ever called through a pointer of the wrong type. */
typedef struct api_hook {
    ag_tensor_hook_fn fn;
    void *userdata;
    void (*free_userdata)(void *);
} api_hook;

static int hook_trampoline(tensor **new_grad, tensor *grad, void *p)
{
    api_hook *h = p;
    ag_tensor *repl = NULL;
    int rc = h->fn(&repl, TH(grad), h->userdata);
    *new_grad = T(repl);
    return rc;
}

static void hook_free(void *p)
{
    api_hook *h = p;
    if (h->free_userdata) h->free_userdata(h->userdata);
    mem_free(h);
}

AG_API int ag_tensor_register_hook(uint64_t *handle_out, ag_tensor *h, ag_tensor_hook_fn fnp,
                                   unsigned flags, void *userdata,
                                   void (*free_userdata)(void *userdata))
{
    const char *fn = "ag_tensor_register_hook";
    CHECK_NOT_NULL(fn, handle_out, "handle_out");
    CHECK_NOT_NULL(fn, h, "t");
    CHECK_NOT_NULL(fn, fnp, "fn");
    if (flags & ~(unsigned)AG_CALLBACK_CALLER_THREAD)
        return api_error(fn, AG_EINVAL, "unknown flags 0x%x", flags);
    tensor *t = T(h);
    SYNC_VIEW(fn, t);
    if (!tensor_requires_grad(t))
        return api_error(fn, AG_ENOGRAD, "cannot register a hook on a tensor that doesn't require "
                         "gradient");
    tmeta *m = tensor_meta(t);
    hook *k = mem_alloc(sizeof *k);
    api_hook *ah = mem_alloc(sizeof *ah);
    if (!m || !k || !ah) {
        mem_free(k);
        mem_free(ah);
        return api_error(fn, AG_ENOMEM, "out of memory");
    }
    /* The hook belongs to the tensor's present history: after an in-place op it still runs
     * at the grad_fn the tensor had when it was registered (tensor_history_moved). */
    uint32_t hist = meta_hist(m);
    if (t->grad_fn) {
        eng_err e = node_attach_meta(t->grad_fn, t->output_nr, m, hist);
        if (e) {
            mem_free(k);
            mem_free(ah);
            return api_fail(fn, e);
        }
    }
    ah->fn = fnp;
    ah->userdata = userdata;
    ah->free_userdata = free_userdata;
    k->next = NULL;
    k->fn = hook_trampoline;
    k->userdata = ah;
    k->free_userdata = hook_free;
    k->caller_thread = flags & AG_CALLBACK_CALLER_THREAD;
    k->hist = hist;
    atomic_init(&k->removed, false);
    atomic_init(&k->refs, 1); /* the link that will point to it */
    tmeta_lock(m);
    k->id = m->next_hook_id++;
    hook *first = m->hooks;
    if (first) {
        k->prev = first->prev;
        first->prev = k;
    } else {
        k->prev = k;
    }
    /* (atomic: backward peeks at m->hooks without the lock to skip metas without hooks) */
    __atomic_store_n(first ? &k->prev->next : &m->hooks, k, __ATOMIC_RELEASE);
    atomic_fetch_or(&m->acc->flags, NODE_LEAF_HOOKS);
    if (k->caller_thread) {
        m->caller_hooks++;
        /* (atomic: node_attach_meta and grad_accumulator read it without the lock) */
        __atomic_store_n(&m->caller_thread, true, __ATOMIC_RELEASE);
        if (t->grad_fn) atomic_fetch_or(&t->grad_fn->flags, NODE_CALLER_THREAD);
        atomic_fetch_or(&m->acc->flags, NODE_CALLER_THREAD);
    }
    tmeta_unlock(m);
    *handle_out = k->id;
    return AG_OK;
}

AG_API int ag_tensor_remove_hook(ag_tensor *h, uint64_t handle)
{
    const char *fn = "ag_tensor_remove_hook";
    CHECK_NOT_NULL(fn, h, "t");
    tmeta *m = tensor_meta_peek(T(h));
    hook *found = NULL;
    if (m) {
        tmeta_lock(m);
        /* From both ends at once: removing the newest or the oldest of many hooks (a stack of
         * temporary hooks, a sliding window) finds it at once; 40 000 hooks removed newest
         * first took 4 s walking from the head. */
        hook *first = m->hooks;
        for (hook *a = first, *b = first ? first->prev : NULL; a; a = a->next, b = b->prev) {
            if (a->id == handle || b->id == handle) {
                found = a->id == handle ? a : b;
                break;
            }
            if (a == b || a->next == b) break; /* every hook looked at */
        }
        if (found) {
            /* Unlinked, but its own `next` stays: a backward running it (or about to) goes on
             * from it to the hooks that followed (see hook in tensor.h). */
            hook *after = found->next;
            if (after) {
                hook_retain(after); /* the reference of the link before it */
                after->prev = found->prev;
            } else if (found != first) {
                first->prev = found->prev; /* the new last */
            }
            __atomic_store_n(found == first ? &m->hooks : &found->prev->next, after,
                             __ATOMIC_RELEASE);
            atomic_store_explicit(&found->removed, true, memory_order_relaxed);
        }
        if (found && found->caller_thread && --m->caller_hooks == 0) {
            /* The last hook that needed the caller's thread gone, a leaf's backward may use
             * the team again (its AccumulateGrad node is its own; a non-leaf's grad_fn may
             * carry the flag for other tensors or a custom function, and keeps it). One
             * temporary hook from Lua, where every hook needs the caller's thread, left every
             * later backward through the leaf on one thread. */
            __atomic_store_n(&m->caller_thread, false, __ATOMIC_RELEASE);
            atomic_fetch_and(&m->acc->flags, (unsigned char)~NODE_CALLER_THREAD);
        }
        tmeta_unlock(m);
    }
    if (!found)
        return api_error(fn, AG_EINVAL, "tensor has no hook with handle %llu",
                         (unsigned long long)handle);
    hook_release(found); /* the link's reference; a running walk holds its own */
    return AG_OK;
}
