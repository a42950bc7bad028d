/*
 * linalg.c: dot, mv, mm, bmm, matmul (torch.matmul's rules) and linear, all on the strided
 * GEMM kernel (kernels/gemm.c), which reads transposed and broadcast operands in place: a
 * backward product such as g @ w^T never copies w.
 */
#include <stdatomic.h>
#include <string.h>

#include "../defer.h"
#include "../kernels/gemm.h"
#include "../parallel.h"
#include "ewise.h"

/* ---- raw products (no autograd) ---- */
static eng_err gemm_spare(tensor *c, const tensor *a, const tensor *b, int64_t off_a,
                          int64_t off_b, int64_t off_c, int accumulate, void *spare)
{
    /* a: [M, K] and b: [K, N] given by their last two dims' strides (elements). */
    int64_t M = a->shape[a->ndim - 2], K = a->shape[a->ndim - 1], N = b->shape[b->ndim - 1];
    int64_t rsa = a->strides[a->ndim - 2], csa = a->strides[a->ndim - 1];
    int64_t rsb = b->strides[b->ndim - 2], csb = b->strides[b->ndim - 1];
    int64_t rsc = c->strides[c->ndim - 2], csc = c->strides[c->ndim - 1];
    int rc;
    if (a->dtype == DT_F32)
        rc = gemm_f32_spare(M, N, K, (const float *)tensor_data(a) + off_a, rsa, csa,
                            (const float *)tensor_data(b) + off_b, rsb, csb,
                            (float *)tensor_data(c) + off_c, rsc, csc, accumulate, spare);
    else
        rc = gemm_f64_spare(M, N, K, (const double *)tensor_data(a) + off_a, rsa, csa,
                            (const double *)tensor_data(b) + off_b, rsb, csb,
                            (double *)tensor_data(c) + off_c, rsc, csc, accumulate, spare);
    return rc ? err_nomem() : E_OK;
}

static eng_err gemm(tensor *c, const tensor *a, const tensor *b, int64_t off_a, int64_t off_b,
                    int64_t off_c, int accumulate)
{
    return gemm_spare(c, a, b, off_a, off_b, off_c, accumulate, NULL);
}

static eng_err same_float(const tensor *a, const tensor *b)
{
    if (!dtype_is_float((dtype)a->dtype) || !dtype_is_float((dtype)b->dtype))
        return err_set(E_DTYPE, "matrix products are defined for float32 and float64, got %s and %s",
                       dtype_name((dtype)a->dtype), dtype_name((dtype)b->dtype));
    if (a->dtype != b->dtype)
        return err_set(E_DTYPE, "expected both operands to have the same dtype, but got: %s != %s",
                       dtype_name((dtype)a->dtype), dtype_name((dtype)b->dtype));
    return E_OK;
}

static eng_err cannot_multiply(const tensor *a, const tensor *b)
{
    char s1[160], s2[160];
    return err_set(E_SHAPE, "shapes %s and %s cannot be multiplied",
                   fmt_shape(s1, sizeof s1, a->shape, a->ndim), fmt_shape(s2, sizeof s2, b->shape, b->ndim));
}

/* mm's attributes: whether each operand was column-major (a transposed contiguous matrix):
 * its gradient takes the same layout, as PyTorch's mm_mat1_backward / mm_mat2_backward give
 * it (so that after TBackward0 a transposed leaf's gradient is contiguous). */
typedef struct mm_attr {
    bool a_colmajor, b_colmajor;
} mm_attr;

/* PyTorch's test (strides[0] == 1 && strides[1] == sizes[0]) for a 2-d operand. */
static bool col_major(const tensor *t)
{
    return t->ndim == 2 && t->strides[0] == 1 && t->strides[1] == t->shape[0];
}

static eng_err finish(tensor **out, tensor *r, const node_type *bw, tensor *a, tensor *b)
{
    eng_err e = E_OK;
    tensor *ins[2] = {a, b};
    node *n = record(bw, ins, 2, &r, 1, 2, sizeof(mm_attr), &e);
    if (e) {
        tensor_release(r);
        return e;
    }
    if (n) {
        /* (By the edges just made, which backward's needs follow: see op_mul.) */
        if (n->next[1].fn) node_save(n, 0, a);
        if (n->next[0].fn) node_save(n, 1, b);
        mm_attr *at = (mm_attr *)node_attrs(n);
        at->a_colmajor = col_major(a);
        at->b_colmajor = col_major(b);
    }
    *out = r;
    return E_OK;
}

/* ---- mm ---- */
/* The spare memory a product c = a @ b may need (see gemm_spare). */
static size_t gemm_spare_bytes_for(const tensor *c, const tensor *a, const tensor *b)
{
    int na = a->ndim, nb = b->ndim, nc = c->ndim;
    return gemm_spare_bytes(a->shape[na - 2], b->shape[nb - 1], a->shape[na - 1],
                            a->strides[na - 2], a->strides[na - 1], b->strides[nb - 2],
                            b->strides[nb - 1], c->strides[nc - 2], c->strides[nc - 1],
                            a->dtype == DT_F64);
}

/* A queued product (defer.h): its packing buffers fall back on the memory reserved with it,
 * so it cannot fail. */
static void mm_task(dtask *t, tensor *out, tensor *const *ins)
{
    (void)gemm_spare(out, ins[0], ins[1], 0, 0, 0, 0, t->reserve);
}

static eng_err mm_raw(tensor **out, tensor *a, tensor *b)
{
    int64_t shape[2] = {a->shape[0], b->shape[1]};
    tensor *r = tensor_new((dtype)a->dtype, shape, 2);
    if (!r) return err_kind();
    int64_t M = shape[0], N = shape[1], K = a->shape[1];
    tensor *ins[2] = {a, b};
    int64_t work = M * N * (K / 8 + 1);
    if (defer_wanted(ins, 2, work)) {
        dtask *t = defer_task(r, ins, 2, mm_task, work, gemm_spare_bytes_for(r, a, b));
        if (t) {
            defer_submit(t);
            *out = r;
            return E_OK;
        }
        defer_flush(); /* no task: eagerly, as without deferral */
    }
    eng_err e = gemm(r, a, b, 0, 0, 0, 0);
    if (e) {
        tensor_release(r);
        return e;
    }
    *out = r;
    return E_OK;
}

/* x^T @ y (t_first) or x @ y^T, transposed when t_result: a product with one transposed view
 * operand, which the GEMM reads in place (no copies). */
static eng_err mm_one_t(tensor **out, tensor *x, tensor *y, bool t_first, bool t_result)
{
    tensor *t = NULL, *p = NULL;
    eng_err e = op_t(&t, t_first ? x : y);
    if (!e) e = op_mm(t_result ? &p : out, t_first ? t : x, t_first ? y : t);
    if (!e && t_result) e = op_t(out, p);
    tensor_release(t);
    tensor_release(p);
    return e;
}

/* The gradient of a product's first factor, g @ b^T, or (b @ g^T)^T when the factor was
 * column-major (PyTorch's mm_mat1_backward). */
static eng_err mat1_grad(tensor **out, tensor *g, tensor *b, bool colmajor)
{
    return colmajor ? mm_one_t(out, b, g, false, true) : mm_one_t(out, g, b, false, false);
}

/* The second factor's, a^T @ g, or (g^T @ a)^T when it was column-major (x @ w.t(): the
 * weight's gradient is then contiguous after TBackward0, and AccumulateGrad takes it without a
 * copy), as PyTorch's mm_mat2_backward. */
static eng_err mat2_grad(tensor **out, tensor *g, tensor *a, bool colmajor)
{
    return colmajor ? mm_one_t(out, g, a, true, true) : mm_one_t(out, a, g, true, false);
}

static eng_err mm_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    tensor *a, *b;
    eng_err e;
    if ((e = saved_get(n, c, 0, &a)) || (e = saved_get(n, c, 1, &b))) return e;
    const mm_attr *at = (const mm_attr *)node_attrs(n);
    if (c->needed[0] && (e = mat1_grad(&gout[0], gin[0], b, at->a_colmajor))) return e;
    if (c->needed[1]) e = mat2_grad(&gout[1], gin[0], a, at->b_colmajor);
    return e;
}
static const node_type MM_BW = {"MmBackward0", mm_backward, NULL};

eng_err op_mm(tensor **out, tensor *a, tensor *b)
{
    eng_err e = same_float(a, b);
    if (e) return e;
    if (a->ndim != 2 || b->ndim != 2 || a->shape[1] != b->shape[0]) return cannot_multiply(a, b);
    tensor *r = NULL;
    if ((e = mm_raw(&r, a, b))) return e;
    return finish(out, r, &MM_BW, a, b);
}

/* ---- dot ---- */
static eng_err dot_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    tensor *a, *b;
    eng_err e;
    if ((e = saved_get(n, c, 0, &a)) || (e = saved_get(n, c, 1, &b))) return e;
    if (c->needed[0] && (e = op_mul(&gout[0], gin[0], b))) return e;
    if (c->needed[1]) e = op_mul(&gout[1], gin[0], a);
    return e;
}
static const node_type DOT_BW = {"DotBackward0", dot_backward, NULL};

static eng_err op_dot(tensor **out, tensor *a, tensor *b)
{
    if (a->shape[0] != b->shape[0])
        return err_set(E_SHAPE, "inconsistent tensor size, expected tensor [%lld] and src [%lld] to "
                       "have the same number of elements, but got %lld and %lld elements "
                       "respectively", (long long)a->shape[0], (long long)b->shape[0],
                       (long long)a->shape[0], (long long)b->shape[0]);
    /* A 1 x K by K x 1 product: the GEMM kernel's fixed summation order. */
    tensor *r = tensor_new((dtype)a->dtype, NULL, 0);
    if (!r) return err_kind();
    int64_t K = a->shape[0];
    int rc = a->dtype == DT_F32
                 ? gemm_f32(1, 1, K, tensor_data(a), 0, a->strides[0], tensor_data(b), b->strides[0],
                            0, tensor_data(r), 1, 1, 0)
                 : gemm_f64(1, 1, K, tensor_data(a), 0, a->strides[0], tensor_data(b), b->strides[0],
                            0, tensor_data(r), 1, 1, 0);
    if (rc) {
        tensor_release(r);
        return err_nomem();
    }
    return finish(out, r, &DOT_BW, a, b);
}

/* ---- mv ---- */
static eng_err mv_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    tensor *a, *v;
    eng_err e;
    if ((e = saved_get(n, c, 0, &a)) || (e = saved_get(n, c, 1, &v))) return e;
    tensor *g2 = NULL, *v2 = NULL, *at = NULL, *gv = NULL;
    if (c->needed[0]) {
        /* outer(g, v) */
        if (!(e = op_unsqueeze(&g2, gin[0], 1)) && !(e = op_unsqueeze(&v2, v, 0)))
            e = op_mm(&gout[0], g2, v2);
    }
    if (!e && c->needed[1]) {
        if (!(e = op_t(&at, a)) && !(e = op_unsqueeze(&gv, gin[0], 1))) {
            tensor *p = NULL;
            if (!(e = op_mm(&p, at, gv))) e = op_squeeze_dim(&gout[1], p, 1);
            tensor_release(p);
        }
    }
    tensor_release(g2);
    tensor_release(v2);
    tensor_release(at);
    tensor_release(gv);
    return e;
}
static const node_type MV_BW = {"MvBackward0", mv_backward, NULL};

static eng_err op_mv(tensor **out, tensor *a, tensor *v)
{
    if (a->shape[1] != v->shape[0]) return cannot_multiply(a, v);
    int64_t M = a->shape[0];
    tensor *r = tensor_new((dtype)a->dtype, &M, 1);
    if (!r) return err_kind();
    int64_t K = a->shape[1];
    int rc = a->dtype == DT_F32
                 ? gemm_f32(M, 1, K, tensor_data(a), a->strides[0], a->strides[1], tensor_data(v),
                            v->strides[0], 0, tensor_data(r), 1, 1, 0)
                 : gemm_f64(M, 1, K, tensor_data(a), a->strides[0], a->strides[1], tensor_data(v),
                            v->strides[0], 0, tensor_data(r), 1, 1, 0);
    if (rc) {
        tensor_release(r);
        return err_nomem();
    }
    return finish(out, r, &MV_BW, a, v);
}

/* ---- bmm ---- */
/* A batch's products run each whole on one thread, the batch shared out across the team,
 * rather than one after another each split across the team, when:
 * - they are small (up to BMM_WHOLE_MAX multiply-adds: split in two, a 64^3 product spent
 *   more on the split, a region per product and its output's tiles crossing cores, than it
 *   saved; 32 of them ran 1.5-2.6x faster on 2 threads whole);
 * - or the batch shares out evenly (the threads at least 90% busy on average over its
 *   rounds: 8 products of 256^3 on 2 threads ran as fast or faster whole);
 * - or at least half the threads get a product and a split would give each thread at most
 *   BMM_SPLIT_SMALL multiply-adds of each: on 16 cores 8 products of 160^3, each split 16
 *   ways, ran at 182 GFLOP/s, against 381 for the same batch whole on 8 threads.
 * Consecutive products are grouped into chunks of at least BMM_CHUNK_MACS, so that a batch
 * of tiny products is not one task or chunk each. */
#define BMM_WHOLE_MAX ((int64_t)1 << 21)
#define BMM_SPLIT_SMALL ((int64_t)1 << 20)
#define BMM_CHUNK_MACS ((int64_t)1 << 16)

static bool bmm_whole(int64_t B, int64_t macs, int nt)
{
    if (B < 2 || nt < 2) return false;
    int64_t rounds = (B + nt - 1) / nt;
    return macs <= BMM_WHOLE_MAX || 10 * B >= 9 * rounds * nt ||
           (2 * B >= rounds * nt && macs / nt <= BMM_SPLIT_SMALL);
}

typedef struct bmm_ctx {
    tensor *r, *a, *b;
    atomic_bool failed;
} bmm_ctx;

/* Products lo..hi of the batch, each on this thread. */
static void bmm_items(void *p, int64_t lo, int64_t hi)
{
    bmm_ctx *c = p;
    bool prev = par_set_serial(true);
    for (int64_t i = lo; i < hi; i++)
        if (gemm(c->r, c->a, c->b, i * c->a->strides[0], i * c->b->strides[0],
                 i * c->r->strides[0], 0))
            atomic_store_explicit(&c->failed, true, memory_order_relaxed);
    par_set_serial(prev);
}

static eng_err bmm_raw(tensor **out, tensor *a, tensor *b)
{
    int64_t B = a->shape[0], shape[3] = {B, a->shape[1], b->shape[2]};
    tensor *r = tensor_new((dtype)a->dtype, shape, 3);
    if (!r) return err_kind();
    /* (each product's bits are the same on any thread, so the split changes no result) */
    int64_t macs = shape[1] * shape[2] * a->shape[2];
    if (bmm_whole(B, macs, par_plan_threads())) {
        bmm_ctx c = {r, a, b, false};
        par_for(B, macs < BMM_CHUNK_MACS ? BMM_CHUNK_MACS / (macs ? macs : 1) : 1, bmm_items, &c);
        if (atomic_load_explicit(&c.failed, memory_order_relaxed)) {
            tensor_release(r);
            return err_nomem();
        }
        *out = r;
        return E_OK;
    }
    for (int64_t i = 0; i < B; i++) {
        eng_err e = gemm(r, a, b, i * a->strides[0], i * b->strides[0], i * r->strides[0], 0);
        if (e) {
            tensor_release(r);
            return e;
        }
    }
    *out = r;
    return E_OK;
}

static eng_err op_bmm(tensor **out, tensor *a, tensor *b);

static eng_err bmm_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    tensor *a, *b, *t = NULL;
    eng_err e;
    if ((e = saved_get(n, c, 0, &a)) || (e = saved_get(n, c, 1, &b))) return e;
    if (c->needed[0]) {
        if (!(e = op_transpose(&t, b, 1, 2))) e = op_bmm(&gout[0], gin[0], t);
        tensor_release(t);
        t = NULL;
        if (e) return e;
    }
    if (c->needed[1]) {
        if (!(e = op_transpose(&t, a, 1, 2))) e = op_bmm(&gout[1], t, gin[0]);
        tensor_release(t);
    }
    return e;
}
static const node_type BMM_BW = {"BmmBackward0", bmm_backward, NULL};

static eng_err op_bmm(tensor **out, tensor *a, tensor *b)
{
    tensor *r = NULL;
    eng_err e = bmm_raw(&r, a, b);
    if (e) return e;
    return finish(out, r, &BMM_BW, a, b);
}

/* ---- matmul ---- */
eng_err op_matmul(tensor **out, tensor *a, tensor *b)
{
    eng_err e = same_float(a, b);
    if (e) return e;
    int na = a->ndim, nb = b->ndim;
    if (na == 0 || nb == 0)
        return err_set(E_SHAPE, "both arguments to matmul need to be at least 1D, but they are %dD "
                       "and %dD", na, nb);
    if (na == 1 && nb == 1) return op_dot(out, a, b);
    if (na == 2 && nb == 1) return op_mv(out, a, b);
    if (na == 2 && nb == 2) return op_mm(out, a, b);
    if (na == 1 && nb == 2) {
        /* [K] @ [K, N]: as a 1 x K matrix, then the added dim removed. */
        if (a->shape[0] != b->shape[0]) return cannot_multiply(a, b);
        tensor *a2 = NULL, *p = NULL;
        if (!(e = op_unsqueeze(&a2, a, 0)) && !(e = op_mm(&p, a2, b))) {
            e = op_squeeze_fresh_(out, p, 0); /* torch: mm(...).squeeze_(0) */
        }
        tensor_release(a2);
        tensor_release(p);
        return e;
    }
    if (na >= 3 && nb <= 2) {
        /* Fold a's batch dims into rows: one mm. */
        int64_t K = a->shape[na - 1];
        if (K != b->shape[0]) return cannot_multiply(a, b);
        int64_t rows = a->numel / (K ? K : 1), shape2[2] = {K ? rows : 0, K};
        if (!K) {
            int64_t r = 1;
            for (int d = 0; d < na - 1; d++) r *= a->shape[d];
            shape2[0] = r;
        }
        tensor *a2 = NULL, *b2 = NULL, *p = NULL;
        if (!(e = op_reshape(&a2, a, shape2, 2))) {
            if (nb == 1) e = op_unsqueeze(&b2, b, 1);
            else {
                tensor_retain(b);
                b2 = b;
            }
        }
        if (!e && !(e = op_mm(&p, a2, b2))) {
            int64_t shape[MAX_DIMS];
            int nd = 0;
            for (int d = 0; d < na - 1; d++) shape[nd++] = a->shape[d];
            if (nb == 2) shape[nd++] = b->shape[1];
            e = op_unsafe_view(out, p, shape, nd);
        }
        tensor_release(a2);
        tensor_release(b2);
        tensor_release(p);
        return e;
    }
    if (na == 1 && nb >= 3) {
        /* As torch 1.13 (should_fold): b^T's batch folded into rows, [rows, K] @ a by mv,
         * viewed back (UnsafeViewBackward0 over MvBackward0); b's gradient is then a
         * transposed view, as PyTorch's. */
        int64_t K = a->shape[0];
        if (K != b->shape[nb - 2]) return cannot_multiply(a, b);
        int64_t shape[MAX_DIMS], rows = 1;
        int nd = 0;
        for (int d = 0; d < nb; d++) {
            if (d == nb - 2) continue;
            shape[nd++] = b->shape[d];
            rows *= b->shape[d];
        }
        int64_t s2[2] = {rows, K};
        tensor *bt = NULL, *bf = NULL, *p = NULL;
        if (!(e = op_transpose(&bt, b, -1, -2)) && !(e = op_reshape(&bf, bt, s2, 2)) &&
            !(e = op_mv(&p, bf, a)))
            e = op_unsafe_view(out, p, shape, nd);
        tensor_release(bt);
        tensor_release(bf);
        tensor_release(p);
        return e;
    }
    /* torch 1.13's should_fold declines a 3-d b whose last two dims are transposed
     * (permute(0, 2, 1) of a contiguous tensor): that goes through bmm (UnsafeViewBackward0). */
    bool b_transposed = nb == 3 && b->strides[2] != 1 && b->strides[0] == b->shape[1] * b->shape[2];
    if (na == 2 && nb >= 3 && !b_transposed) {
        /* As torch 1.13: a @ b = (b^T @ a^T)^T, folding b's batch into rows, made contiguous
         * (hence CloneBackward0 on top). */
        if (a->shape[1] != b->shape[nb - 2]) return cannot_multiply(a, b);
        tensor *bt = NULL, *at = NULL, *p = NULL, *pt = NULL;
        if (!(e = op_transpose(&bt, b, -1, -2)) && !(e = op_t(&at, a)) &&
            !(e = op_matmul(&p, bt, at)) && !(e = op_transpose(&pt, p, -1, -2)))
            e = op_contiguous(out, pt);
        tensor *tmp[] = {bt, at, p, pt};
        for (size_t i = 0; i < 4; i++) tensor_release(tmp[i]);
        return e;
    }
    /* General batched case: promote 1-d operands, broadcast the batch dims, bmm, view. */
    tensor *a3 = NULL, *b3 = NULL;
    if (na == 1) e = op_unsqueeze(&a3, a, 0);
    else {
        tensor_retain(a);
        a3 = a;
    }
    if (!e) {
        if (nb == 1) e = op_unsqueeze(&b3, b, 1);
        else {
            tensor_retain(b);
            b3 = b;
        }
    }
    if (e) {
        tensor_release(a3);
        return e;
    }
    int64_t n = a3->shape[a3->ndim - 2], k = a3->shape[a3->ndim - 1];
    int64_t k2 = b3->shape[b3->ndim - 2], m = b3->shape[b3->ndim - 1];
    int64_t batch[MAX_DIMS];
    int nbatch = 0;
    if (k != k2) e = cannot_multiply(a, b);
    else e = broadcast_shapes(a3->shape, a3->ndim - 2, b3->shape, b3->ndim - 2, batch, &nbatch);
    tensor *ae = NULL, *be = NULL, *af = NULL, *bf = NULL, *p = NULL;
    if (!e) {
        int64_t sa[MAX_DIMS], sb[MAX_DIMS], B = 1;
        for (int d = 0; d < nbatch; d++) {
            sa[d] = sb[d] = batch[d];
            B *= batch[d];
        }
        sa[nbatch] = n;
        sa[nbatch + 1] = k;
        sb[nbatch] = k;
        sb[nbatch + 1] = m;
        int64_t fa[3] = {B, n, k}, fb[3] = {B, k, m};
        if (!(e = op_expand(&ae, a3, sa, nbatch + 2)) && !(e = op_expand(&be, b3, sb, nbatch + 2)) &&
            !(e = op_reshape(&af, ae, fa, 3)) && !(e = op_reshape(&bf, be, fb, 3)) &&
            !(e = op_bmm(&p, af, bf))) {
            int64_t shape[MAX_DIMS];
            int nd = 0;
            for (int d = 0; d < nbatch; d++) shape[nd++] = batch[d];
            if (na > 1) shape[nd++] = n;
            if (nb > 1) shape[nd++] = m;
            e = op_unsafe_view(out, p, shape, nd);
        }
    }
    tensor *tmp[] = {a3, b3, ae, be, af, bf, p};
    for (size_t i = 0; i < sizeof tmp / sizeof tmp[0]; i++) tensor_release(tmp[i]);
    return e;
}

/* ---- linear: x @ w^T + b, fused for 2-d input (AddmmBackward0) ---- */
static eng_err addmm_backward(node *n, bwd_ctx *c, tensor **gin, tensor **gout)
{
    /* edges: 0 bias, 1 input, 2 weight (as torch's addmm(bias, input, weight.t())) */
    tensor *x, *w;
    eng_err e;
    if ((e = saved_get(n, c, 0, &x)) || (e = saved_get(n, c, 1, &w))) return e;
    if (c->needed[0]) {
        int64_t dim0 = 0;
        if ((e = op_sum_dims(&gout[0], gin[0], &dim0, 1, false))) return e;
    }
    /* The layouts are PyTorch's: mm_mat1_backward / mm_mat2_backward of addmm(b, x, w.t()),
     * the latter transposed back by TBackward0. */
    const mm_attr *at = (const mm_attr *)node_attrs(n);
    if (c->needed[1]) {
        tensor *wt = NULL;
        if (!(e = op_t(&wt, w))) e = mat1_grad(&gout[1], gin[0], wt, at->a_colmajor);
        tensor_release(wt);
        if (e) return e;
    }
    if (c->needed[2]) {
        /* (g^T x)^T^T when w^T was column-major (w row-major, the usual case), else (x^T g)^T */
        tensor *t = NULL, *p = NULL;
        if (at->b_colmajor) {
            if (!(e = op_t(&t, gin[0]))) e = op_mm(&gout[2], t, x);
        } else if (!(e = op_t(&t, x)) && !(e = op_mm(&p, t, gin[0]))) {
            e = op_t(&gout[2], p);
        }
        tensor_release(t);
        tensor_release(p);
    }
    return e;
}
static const node_type ADDMM_BW = {"AddmmBackward0", addmm_backward, NULL};

/* r = b broadcast over r's rows, then r += x @ w^T, w read through swapped strides: linear's
 * kernel with a bias (addmm), eager or queued. spare as gemm_f32_spare's. Fails (-1) only if
 * a packing buffer cannot be allocated and spare is NULL. */
static int addmm_xwt(tensor *r, tensor *x, tensor *w, tensor *b, void *spare)
{
    kernel_copy(r, b); /* (cannot fail) */
    int64_t B = x->shape[0], O = w->shape[0], K = x->shape[1];
    return x->dtype == DT_F32
               ? gemm_f32_spare(B, O, K, tensor_data(x), x->strides[0], x->strides[1],
                                tensor_data(w), w->strides[1], w->strides[0], tensor_data(r), O, 1,
                                1, spare)
               : gemm_f64_spare(B, O, K, tensor_data(x), x->strides[0], x->strides[1],
                                tensor_data(w), w->strides[1], w->strides[0], tensor_data(r), O, 1,
                                1, spare);
}

/* A queued linear with a bias (defer.h): ins are x, w, b (x first: the task follows the one
 * that makes its input, as a layer follows the layer before it); the reserve makes it
 * unable to fail. */
static void addmm_task(dtask *t, tensor *out, tensor *const *ins)
{
    (void)addmm_xwt(out, ins[0], ins[1], ins[2], t->reserve);
}

static eng_err linear_2d(tensor **out, tensor *x, tensor *w, tensor *b)
{
    int64_t B = x->shape[0], O = w->shape[0], shape[2] = {B, O};
    if (!b) {
        tensor *wt = NULL;
        eng_err e = op_t(&wt, w);
        if (!e) e = op_mm(out, x, wt);
        tensor_release(wt);
        return e;
    }
    tensor *r = tensor_new((dtype)x->dtype, shape, 2);
    if (!r) return err_kind();
    int64_t K = x->shape[1];
    tensor *ops[3] = {x, w, b};
    int64_t work = B * O * (K / 8 + 1) + B * O;
    bool queued = false;
    if (defer_wanted(ops, 3, work)) {
        dtask *t = defer_task(r, ops, 3, addmm_task, work,
                              gemm_spare_bytes(B, O, K, x->strides[0], x->strides[1],
                                               w->strides[1], w->strides[0], O, 1,
                                               x->dtype == DT_F64));
        if (t) {
            defer_submit(t);
            queued = true;
        } else {
            defer_flush(); /* no task: eagerly, as without deferral */
        }
    }
    if (!queued && addmm_xwt(r, x, w, b, NULL)) {
        tensor_release(r);
        return err_nomem();
    }
    eng_err e = E_OK;
    tensor *ins[3] = {b, x, w};
    node *n = record(&ADDMM_BW, ins, 3, &r, 1, 2, sizeof(mm_attr), &e);
    if (e) {
        tensor_release(r);
        return e;
    }
    if (n) {
        if (n->next[2].fn) node_save(n, 0, x); /* (edges: 0 b, 1 x, 2 w; see op_mul) */
        if (n->next[1].fn) node_save(n, 1, w);
        /* the factors of addmm: x and w^T (column-major when w is row-major) */
        mm_attr *at = (mm_attr *)node_attrs(n);
        at->a_colmajor = col_major(x);
        at->b_colmajor = w->strides[1] == 1 && w->strides[0] == w->shape[1];
    }
    *out = r;
    return E_OK;
}

eng_err op_linear(tensor **out, tensor *x, tensor *w, tensor *b)
{
    eng_err e = same_float(x, w);
    if (!e && b) e = same_float(x, b);
    if (e) return e;
    if (w->ndim < 1 || w->ndim > 2 || x->ndim < 1) {
        char s1[160], s2[160];
        return err_set(E_SHAPE, "linear expects input [..., in] and weight [out, in] or [in], got %s and %s",
                       fmt_shape(s1, sizeof s1, x->shape, x->ndim), fmt_shape(s2, sizeof s2, w->shape, w->ndim));
    }
    int64_t in = w->shape[w->ndim - 1], O = w->ndim == 2 ? w->shape[0] : 1;
    if (x->shape[x->ndim - 1] != in) {
        char s1[160], s2[160];
        return err_set(E_SHAPE, "shapes %s and %s cannot be multiplied (input's last dim %lld, weight's "
                       "in_features %lld)", fmt_shape(s1, sizeof s1, x->shape, x->ndim),
                       fmt_shape(s2, sizeof s2, w->shape, w->ndim), (long long)x->shape[x->ndim - 1],
                       (long long)in);
    }
    /* As torch 1.13's linear: with a bias, a 2-d input (or a contiguous 3-d one, folded into
     * rows) is addmm(b, x, w^T), whose bias broadcasts to [.., out] (0-d, [1] or [out]; a
     * 1-d weight is no matrix there); anything else is matmul(x, w^T) plus the bias, which
     * broadcasts as an add does. */
    bool fused = b && (x->ndim == 2 || (x->ndim == 3 && tensor_is_contiguous(x)));
    if (fused && w->ndim == 1)
        return err_set(E_SHAPE, "mat2 must be a matrix, got 1-D tensor (a 1-d weight takes no bias "
                       "with a 2-d or contiguous 3-d input, as in PyTorch)");
    if (fused && !(b->ndim == 0 || (b->ndim == 1 && (b->shape[0] == O || b->shape[0] == 1)))) {
        char s1[160];
        return err_set(E_SHAPE, "bias of shape %s does not match out_features %lld",
                       fmt_shape(s1, sizeof s1, b->shape, b->ndim), (long long)O);
    }
    if (!fused && b) {
        /* PyTorch adds the bias in place: it broadcasts to the product, not the product to it */
        int64_t ys[MAX_DIMS], bs[MAX_DIMS];
        int yn = 0, bn = 0;
        for (int d = 0; d < x->ndim - 1; d++) ys[yn++] = x->shape[d];
        if (w->ndim == 2) ys[yn++] = O;
        if ((e = broadcast_shapes(ys, yn, b->shape, b->ndim, bs, &bn))) return e;
        if (bn != yn || memcmp(bs, ys, (size_t)yn * sizeof *ys)) {
            char s1[160], s2[160];
            return err_set(E_SHAPE, "bias of shape %s does not broadcast to the output's %s",
                           fmt_shape(s1, sizeof s1, b->shape, b->ndim), fmt_shape(s2, sizeof s2, ys, yn));
        }
    }
    if (x->ndim == 2 && w->ndim == 2) return linear_2d(out, x, w, b);
    /* Other ranks: a contiguous 3-d input with a bias folds into rows and back (ViewBackward0
     * around the 2-d product, below); anything else is matmul(x, w^T) (a 1-d weight: MvBackward0
     * for a 2-d input, as PyTorch's), plus the bias (AddBackward0; without one, matmul's own
     * grad_fn). */
    if (!fused) {
        tensor *wt = NULL, *y = NULL;
        if (!(e = op_t(&wt, w)) && !(e = op_matmul(&y, x, wt))) {
            if (b) e = op_add(out, y, b);
            else {
                *out = y;
                y = NULL;
            }
        }
        tensor_release(wt);
        tensor_release(y);
        return e;
    }
    int64_t rows = 1;
    for (int d = 0; d < x->ndim - 1; d++) rows *= x->shape[d];
    int64_t s2[2] = {rows, in};
    tensor *x2 = NULL, *y2 = NULL;
    if (!(e = op_reshape(&x2, x, s2, 2)) && !(e = linear_2d(&y2, x2, w, b))) {
        int64_t shape[MAX_DIMS];
        int nd = 0;
        for (int d = 0; d < x->ndim - 1; d++) shape[nd++] = x->shape[d];
        shape[nd++] = O;
        e = op_view(out, y2, shape, nd);
    }
    tensor_release(x2);
    tensor_release(y2);
    return e;
}
