/*
 * tensor.c: creation, reference counting and geometry of tensors and storages.
 */
#include "tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "graph.h"

static void guest_grad_gone(storage *s);

void storage_release(storage *s)
{
    if (!s || !refs_drop(&s->refs)) return;
    if (s->block_kind == BLOCK_GUEST) guest_grad_gone(s);
    else if (s->block_kind == BLOCK_ALIGNED) mem_free_aligned(s->block);
    else mem_free(s->block);
}

eng_err shape_check(const int64_t *shape, int ndim, int64_t *numel_out)
{
    if (ndim < 0 || ndim > MAX_DIMS)
        return err_set(E_RANGE, "tensors have at most %d dimensions, got %d", MAX_DIMS, ndim);
    /* The product of the sizes, a size 0 counting as 1, bounds every contiguous stride: it
     * must fit even when a size is 0 (an empty [0, 2^62, 4] would have a stride that
     * overflows). The element count must fit in bytes too (8 an element at most). */
    int64_t n = 1, span = 1;
    bool empty = false;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) { /* PyTorch's words: the whole shape, no 0-based position */
            char b[256];
            return err_set(E_INVAL, "Trying to create tensor with negative dimension %lld: %s",
                           (long long)shape[i], fmt_shape(b, sizeof b, shape, ndim));
        }
        empty |= shape[i] == 0;
        if (shape[i] > 1 && __builtin_mul_overflow(span, shape[i], &span)) goto too_large;
    }
    if (!empty) {
        if (span > INT64_MAX / 8) goto too_large;
        n = span;
    } else {
        n = 0;
    }
    if (numel_out) *numel_out = n;
    return E_OK;
too_large:;
    char s[256];
    return err_set(E_INVAL, "shape %s is too large (the product of its sizes overflows)",
                   fmt_shape(s, sizeof s, shape, ndim));
}

void contiguous_strides(const int64_t *shape, int ndim, int64_t *strides)
{
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        strides[i] = s;
        s *= shape[i] > 1 ? shape[i] : 1;
    }
}

/* A new tensor is one allocation: its header, its storage, then the data (64-byte aligned
 * when larger than a cache line). The header outlives its own release while views keep the
 * storage alive; the storage frees the whole block. */
tensor *tensor_new(dtype dt, const int64_t *shape, int ndim)
{
    return tensor_new_strided(dt, shape, ndim, NULL);
}

tensor *tensor_new_strided(dtype dt, const int64_t *shape, int ndim, const int64_t *strides)
{
    if (ndim == 0) return tensor_new_scalar(dt);
    int64_t numel = 0;
    if (shape_check(shape, ndim, &numel)) return NULL;
    /* Strides with gaps (the layout of a strided view's detach, which CopySlices gives the
     * gradient of such a base, as PyTorch's empty_strided does) need storage for the whole
     * extent; the gaps are zeroed below, so no copy of the storage reads undefined bytes. */
    int64_t extent = numel;
    if (strides && numel) {
        int64_t x = 1, step;
        bool over = false;
        for (int i = 0; i < ndim; i++)
            over |= __builtin_mul_overflow(shape[i] - 1, strides[i], &step) ||
                    __builtin_add_overflow(x, step, &x);
        if (over || x > INT64_MAX / 8) {
            err_nomem();
            return NULL;
        }
        if (x > numel) extent = x; /* (overlapping strides: numel is enough) */
    }
    size_t nbytes = (size_t)extent * dtype_size(dt);
    bool big = nbytes > 64;
    size_t dims = 2 * (size_t)ndim * sizeof(int64_t);
    size_t hdr = sizeof(tensor) + dims + sizeof(storage);
    size_t off = big ? (hdr + MEM_DATA_ALIGN - 1) & ~(size_t)(MEM_DATA_ALIGN - 1) : (hdr + 15) & ~(size_t)15;
    if (nbytes > SIZE_MAX - off - MEM_DATA_ALIGN) {
        err_nomem();
        return NULL;
    }
    char *block = big ? mem_alloc_aligned(off + nbytes, MEM_DATA_ALIGN) : mem_alloc(off + nbytes);
    if (!block) {
        err_nomem();
        return NULL;
    }
    tensor *t = (tensor *)block;
    storage *st = (storage *)((char *)(t + 1) + dims);
    header_init(t, st, dt, ndim, numel, 0);
    storage_init(st, block, nbytes, off, big);
    if (ndim) memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    if (strides) memcpy(t->strides, strides, (size_t)ndim * sizeof *strides);
    else contiguous_strides(shape, ndim, t->strides);
    if (extent > numel) memset(st->data, 0, nbytes);
    return t;
}

tensor *tensor_new_like(const tensor *t, dtype dt) { return tensor_new(dt, t->shape, t->ndim); }

tensor *tensor_new_preserve(const tensor *t, dtype dt)
{
    int64_t st[MAX_DIMS];
    return tensor_new_strided(dt, t->shape, t->ndim, dense_strides_like(t, st) ? NULL : st);
}

/* A new header over st with the given geometry (strides NULL: contiguous), in a block of its
 * own; st gains no reference (the callers' business). */
static tensor *header_over(storage *st, int dt, const int64_t *shape, const int64_t *strides,
                           int ndim, int64_t offset)
{
    tensor *t = mem_alloc(sizeof *t + 2 * (size_t)ndim * sizeof(int64_t));
    if (!t) {
        err_nomem();
        return NULL;
    }
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    header_init(t, st, dt, ndim, n, offset);
    if (ndim) memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    if (strides) memcpy(t->strides, strides, (size_t)ndim * sizeof *strides);
    else contiguous_strides(shape, ndim, t->strides);
    return t;
}

tensor *tensor_alias(const tensor *src, const int64_t *shape, const int64_t *strides, int ndim,
                     int64_t offset)
{
    tensor *t = header_over(src->st, src->dtype, shape, strides, ndim, offset);
    if (t) atomic_fetch_add_explicit(&src->st->refs, 1, memory_order_relaxed);
    return t;
}

tensor *tensor_on_storage(storage *st, dtype dt, const int64_t *shape, int ndim, bool adopt)
{
    tensor *t = header_over(st, dt, shape, NULL, ndim, 0);
    if (t && !adopt) atomic_fetch_add_explicit(&st->refs, 1, memory_order_relaxed);
    return t;
}

atomic_uint inplace_epoch;

/* ---- deferred destruction --------------------------------------------------------------- */
/* Releasing the last handle on a graph frees a chain of tensors and nodes. Doing it
 * recursively would need stack proportional to the graph's depth (the `scalar` workload
 * chains 80 000 nodes), so the first release on a thread drains a worklist and nested
 * releases only append to it. The links live in the dying objects themselves: no allocation,
 * so destruction cannot fail. */
static _Thread_local struct {
    bool draining;
    tensor *tensors;                     /* a stack */
    struct node *nodes, *nodes_tail;     /* a queue, see drain */
} reclaim __attribute__((tls_model("initial-exec")));

static void meta_free(tmeta *m);

/* tensor_release while draining: a tensor whose last reference this was joins the list. */
static inline void release_draining(tensor *t)
{
    if (t && refs_drop(&t->refs)) {
        t->dead_next = reclaim.tensors;
        reclaim.tensors = t;
    }
}

/* t is dying and its meta lives on (the nodes t was an output of keep it, for its hooks):
 * nobody can read t's .grad any more, so it goes now, and t retains no more gradients. A
 * gradient retained under create_graph has a graph that leads back to those nodes: kept by
 * the meta, it made a cycle that outlived every handle (PyTorch's retain_grad holds the
 * tensor weakly). */
static void meta_orphaned(tmeta *m)
{
    tmeta_lock(m);
    tensor *g = m->grad;
    m->grad = NULL;
    __atomic_store_n(&m->retains_grad, false, __ATOMIC_RELEASE);
    tmeta_unlock(m);
    tensor_release(g);
}

/* t's meta, as t dies (out of line: most tensors have none, and tensor_release keeps fewer
 * registers without it). (reclaim.draining is set) */
static __attribute__((noinline)) void meta_drop(tmeta *m)
{
    /* (No link can be added now: attaching one takes the tensor.) */
    if (atomic_load_explicit(&m->refs, memory_order_acquire) > 1) {
        meta_orphaned(m);
        tmeta_release(m);
        return;
    }
    /* The only reference (a leaf's meta, no node output linked to it): tmeta_release's work
     * without its second look at the count, the gradient pushed as tensor_release would push
     * it while draining, and no call for the hooks that most metas lack. */
    release_draining(m->grad);
    if (m->hooks) hook_release(m->hooks);
    meta_free(m);
}

static bool leaf_block_free(tensor *t, tmeta *m);

/* (reclaim.draining is set) */
static inline __attribute__((always_inline)) void tensor_destroy(tensor *t)
{
    tmeta *m = atomic_load_explicit(&t->meta, memory_order_acquire);
    if (m && m->hosted) {
        if (mem_walk_enabled()) mem_walk(t);
        if (leaf_block_free(t, m)) return;
    }
    if (m) meta_drop(m);
    node_release(t->grad_fn);
    release_draining(t->base);
    /* A header made with its storage lives in the storage's block: the storage frees it. */
    bool embedded = t->st->block == (void *)t;
    storage_release(t->st);
    if (!embedded) mem_free(t);
}

/* Dying nodes are destroyed first in, first out, so the node destroyed next is known while
 * the current one is: its saved tensors and edge targets (each released with an atomic
 * that waits for its line) are fetched one node ahead. In a graph larger than the caches
 * this overlaps misses that a depth-first order would take one after another. */
static void prefetch_dying(const struct node *n)
{
    for (int i = 0; i < n->n_next; i++)
        if (n->next[i].fn) mem_prefetch_block(n->next[i].fn, 2); /* (its count on) */
    for (int i = 0; i < n->n_saved; i++)
        if (n->saved[i].t) __builtin_prefetch(n->saved[i].t, 1);
}

/* Destroys what the lists hold (the caller set `draining`). */
static void drain(void)
{
    const bool walk = mem_walk_enabled();
    for (;;) {
        if (reclaim.tensors) {
            tensor *t = reclaim.tensors;
            reclaim.tensors = t->dead_next;
            tensor_destroy(t);
        } else if (reclaim.nodes) {
            struct node *n = reclaim.nodes;
            reclaim.nodes = node_dead_next(n);
            if (!reclaim.nodes) reclaim.nodes_tail = NULL;
            else prefetch_dying(reclaim.nodes);
            /* (a graph dies in about the order backward walks it: the node made MEM_RECENT
             * nodes before n dies soon after it; a walk fetches that memory already) */
            if (walk) mem_walk(n);
            else node_hint(n);
            node_destroy(n);
        } else {
            break;
        }
    }
}

/* The first release on a thread destroys its object at once, as drain would pop it first,
 * and drains only if that released more (a tensor whose grad_fn lives on, a gradient, a
 * leaf: most releases free one block): drain's loop kept six registers that every release
 * saved and restored. */
void tensor_release(tensor *t)
{
    if (!t || !refs_drop(&t->refs)) return;
    if (reclaim.draining) {
        t->dead_next = reclaim.tensors;
        reclaim.tensors = t;
        return;
    }
    reclaim.draining = true;
    tensor_destroy(t);
    if (reclaim.tensors || reclaim.nodes) drain();
    reclaim.draining = false;
}

void reclaim_node(struct node *n)
{
    if (!reclaim.draining) {
        reclaim.draining = true;
        node_destroy(n);
        if (reclaim.tensors || reclaim.nodes) drain();
        reclaim.draining = false;
        return;
    }
    /* n's first line is in cache (its count just dropped); its edges and saved slots are
     * what prefetch_dying will read. */
    __builtin_prefetch(n->next);
    node_set_dead_next(n, NULL);
    if (reclaim.nodes_tail) node_set_dead_next(reclaim.nodes_tail, n);
    else reclaim.nodes = n;
    reclaim.nodes_tail = n;
}

/* ---- geometry ---------------------------------------------------------------------------- */
bool tensor_is_contiguous(const tensor *t)
{
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] == 1) continue;
        if (t->strides[i] != s) return t->numel == 0;
        s *= t->shape[i];
    }
    return true;
}

/* PyTorch's is_non_overlapping_and_dense: some order of the dims makes t contiguous. */
bool tensor_is_dense(const tensor *t)
{
    if (t->numel <= 1) return true;
    int idx[MAX_DIMS], n = 0;
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] != 1) idx[n++] = i;
    for (int i = 1; i < n; i++) /* by stride, ties by size */
        for (int j = i; j > 0; j--) {
            int a = idx[j - 1], b = idx[j];
            if (t->strides[a] < t->strides[b] ||
                (t->strides[a] == t->strides[b] && t->shape[a] <= t->shape[b]))
                break;
            idx[j - 1] = b;
            idx[j] = a;
        }
    int64_t expect = 1;
    for (int i = 0; i < n; i++) {
        if (t->strides[idx[i]] != expect) return false;
        expect *= t->shape[idx[i]];
    }
    return true;
}

/* ---- layouts of new tensors (PyTorch's memory-format rules) ----------------------------- */
void layout_sort(int *perm, int nd, const int64_t *shape, const int64_t *const *strides, int n)
{
    /* perm[0] is the innermost dimension; start from the contiguous order and let insertion
     * sort move a dimension inwards past every one that some operand strides more widely
     * (TensorIterator::reorder_dimensions and infer_dense_strides, which this mirrors). */
    for (int i = 0; i < nd; i++) perm[i] = nd - 1 - i;
    for (int i = 1; i < nd; i++) {
        int d1 = i;
        for (int d0 = i - 1; d0 >= 0; d0--) {
            int cmp = 0, a = perm[d0], b = perm[d1];
            for (int k = 0; k < n && !cmp; k++) {
                int64_t sa = strides[k][a], sb = strides[k][b];
                if (sa == 0 || sb == 0) continue; /* broadcast: this operand cannot tell */
                if (sa < sb) cmp = -1;
                else if (sa > sb) cmp = 1;
                else if (shape[a] > shape[b]) cmp = 1; /* equal strides: smaller size inside */
            }
            if (cmp > 0) {
                perm[d0] = b;
                perm[d1] = a;
                d1 = d0;
            } else if (cmp < 0) {
                break;
            }
        }
    }
}

bool dense_strides_like(const tensor *t, int64_t *strides)
{
    if (tensor_is_dense(t)) { /* (contiguous ones too: their size-1 dims keep their strides) */
        memcpy(strides, t->strides, (size_t)t->ndim * sizeof *strides);
        return false;
    }
    int perm[MAX_DIMS];
    const int64_t *ts = t->strides;
    layout_sort(perm, t->ndim, t->shape, &ts, 1);
    int64_t s = 1;
    bool contiguous = true;
    for (int i = 0; i < t->ndim; i++) {
        contiguous &= perm[i] == t->ndim - 1 - i;
        strides[perm[i]] = s;
        s *= t->shape[perm[i]] > 1 ? t->shape[perm[i]] : 1;
    }
    return contiguous;
}

mem_overlap tensor_internal_overlap(const tensor *t)
{
    if (tensor_is_dense(t)) return OVERLAP_NO;
    for (int i = 0; i < t->ndim; i++)
        if (t->strides[i] == 0 && t->shape[i] > 1) return OVERLAP_YES;
    return OVERLAP_TOO_HARD;
}

mem_overlap tensor_overlap(const tensor *a, const tensor *b)
{
    if (a == b) return OVERLAP_FULL;
    if (a->numel == 0 || b->numel == 0 || a->st != b->st) return OVERLAP_NO;
    if (!tensor_is_dense(a) || !tensor_is_dense(b)) return OVERLAP_TOO_HARD;
    const char *a0 = tensor_data(a), *b0 = tensor_data(b);
    const char *a1 = a0 + a->numel * (int64_t)dtype_size((dtype)a->dtype);
    const char *b1 = b0 + b->numel * (int64_t)dtype_size((dtype)b->dtype);
    if (a0 == b0 && a1 == b1) {
        bool same = a->ndim == b->ndim;
        for (int i = 0; same && i < a->ndim; i++)
            same = a->shape[i] == b->shape[i] && a->strides[i] == b->strides[i];
        return same ? OVERLAP_FULL : OVERLAP_PARTIAL;
    }
    return a0 < b1 && b0 < a1 ? OVERLAP_PARTIAL : OVERLAP_NO;
}

/* Walks the index space of `shape` in row-major order, keeping the offsets of two tensors
 * (strides sa, sb) in step. */
typedef struct walk2 {
    int nd;
    const int64_t *shape, *sa, *sb;
    int64_t idx[MAX_DIMS], oa, ob;
} walk2;

static void walk2_next(walk2 *w)
{
    for (int d = w->nd - 1; d >= 0; d--) {
        w->oa += w->sa[d];
        w->ob += w->sb[d];
        if (++w->idx[d] < w->shape[d]) return;
        w->oa -= w->sa[d] * w->shape[d];
        w->ob -= w->sb[d] * w->shape[d];
        w->idx[d] = 0;
    }
}

static void walk2_init(walk2 *w, int nd, const int64_t *shape, const int64_t *sa, int64_t oa,
                       const int64_t *sb, int64_t ob)
{
    *w = (walk2){.nd = nd, .shape = shape, .sa = sa, .sb = sb, .oa = oa, .ob = ob};
}

static void extent(const int64_t *shape, const int64_t *strides, int nd, int64_t off,
                   int64_t *lo, int64_t *hi)
{
    *lo = *hi = off;
    for (int i = 0; i < nd; i++) {
        int64_t d = (shape[i] - 1) * strides[i];
        if (d < 0) *lo += d;
        else *hi += d;
    }
}

typedef struct off_pos {
    int64_t off, pos;
} off_pos;

static int off_pos_cmp(const void *x, const void *y)
{
    const off_pos *a = x, *b = y;
    return a->off < b->off ? -1 : a->off > b->off;
}

mem_overlap tensor_overlap_elementwise(const tensor *out, const tensor *in)
{
    if (out->numel == 0 || in->numel == 0 || out->st != in->st) return OVERLAP_NO;
    int nd = out->ndim;
    int64_t so[MAX_DIMS], si[MAX_DIMS]; /* strides; 0 where a dim has one index */
    for (int i = 0; i < nd; i++) {
        int j = i - (nd - in->ndim);
        so[i] = out->shape[i] > 1 ? out->strides[i] : 0;
        si[i] = j >= 0 && in->shape[j] > 1 ? in->strides[j] : 0;
    }
    int64_t olo, ohi, ilo, ihi;
    extent(out->shape, so, nd, out->offset, &olo, &ohi);
    extent(out->shape, si, nd, in->offset, &ilo, &ihi);
    if (dtype_size((dtype)out->dtype) != dtype_size((dtype)in->dtype)) {
        /* (views of one storage share its dtype; compare bytes if they ever do not) */
        int64_t ao = (int64_t)dtype_size((dtype)out->dtype), ai = (int64_t)dtype_size((dtype)in->dtype);
        return olo * ao < (ihi + 1) * ai && ilo * ai < (ohi + 1) * ao ? OVERLAP_PARTIAL
                                                                      : OVERLAP_NO;
    }
    if (ohi < ilo || ihi < olo) return OVERLAP_NO;
    bool same = out->offset == in->offset;
    for (int i = 0; same && i < nd; i++) same = so[i] == si[i];
    if (same) return OVERLAP_FULL;
    /* Exact: the position of each of out's elements within the common range, then each read
     * of `in` there must be of the element at its own position. A direct map when the range
     * is not much sparser than out, else a sorted list. */
    int64_t lo = olo > ilo ? olo : ilo, hi = ohi < ihi ? ohi : ihi, len = hi - lo + 1;
    int64_t n = out->numel;
    bool found = false;
    walk2 w;
    if (len <= 2 * n + 4096) {
        int64_t *map = mem_alloc((size_t)len * sizeof *map);
        if (!map) return OVERLAP_TOO_HARD;
        for (int64_t k = 0; k < len; k++) map[k] = -1;
        walk2_init(&w, nd, out->shape, so, out->offset, si, in->offset);
        for (int64_t k = 0; k < n; k++, walk2_next(&w))
            if (w.oa >= lo && w.oa <= hi) map[w.oa - lo] = map[w.oa - lo] == -1 ? k : -2;
        walk2_init(&w, nd, out->shape, so, out->offset, si, in->offset);
        mem_overlap r = OVERLAP_NO;
        for (int64_t k = 0; k < n; k++, walk2_next(&w)) {
            if (w.ob < lo || w.ob > hi || map[w.ob - lo] == -1) continue;
            if (map[w.ob - lo] != k) {
                r = OVERLAP_PARTIAL;
                break;
            }
            found = true;
        }
        mem_free(map);
        return r == OVERLAP_PARTIAL ? r : found ? OVERLAP_FULL : OVERLAP_NO;
    }
    off_pos *list = mem_alloc((size_t)n * sizeof *list);
    if (!list) return OVERLAP_TOO_HARD;
    int64_t m = 0;
    walk2_init(&w, nd, out->shape, so, out->offset, si, in->offset);
    for (int64_t k = 0; k < n; k++, walk2_next(&w))
        if (w.oa >= lo && w.oa <= hi) list[m++] = (off_pos){w.oa, k};
    qsort(list, (size_t)m, sizeof *list, off_pos_cmp);
    mem_overlap r = OVERLAP_NO;
    walk2_init(&w, nd, out->shape, so, out->offset, si, in->offset);
    for (int64_t k = 0; k < n && r == OVERLAP_NO; k++, walk2_next(&w)) {
        if (w.ob < lo || w.ob > hi) continue;
        int64_t a = 0, b = m; /* the first entry at or after w.ob */
        while (a < b) {
            int64_t c = a + (b - a) / 2;
            if (list[c].off < w.ob) a = c + 1;
            else b = c;
        }
        if (a == m || list[a].off != w.ob) continue;
        if (list[a].pos != k || (a + 1 < m && list[a + 1].off == w.ob)) r = OVERLAP_PARTIAL;
        else found = true;
    }
    mem_free(list);
    return r == OVERLAP_PARTIAL ? r : found ? OVERLAP_FULL : OVERLAP_NO;
}

eng_err wrap_dim(int64_t dim, int ndim, int *out)
{
    int64_t n = ndim > 0 ? ndim : 1;
    if (dim < -n || dim >= n)
        return err_set(E_RANGE,
                       "Dimension out of range (expected to be in range of [%lld, %lld], but got %lld)",
                       (long long)-n, (long long)(n - 1), (long long)dim);
    *out = (int)(dim < 0 ? dim + n : dim);
    return E_OK;
}

bool shapes_equal(const tensor *a, const tensor *b)
{
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

eng_err broadcast_shapes(const int64_t *a, int na, const int64_t *b, int nb, int64_t *out,
                         int *nout)
{
    /* Built in res: out may alias a or b (ew_map folds shapes in place). */
    int64_t res[MAX_DIMS];
    int n = na > nb ? na : nb;
    for (int i = 0; i < n; i++) {
        int ia = na - n + i, ib = nb - n + i;
        int64_t sa = ia >= 0 ? a[ia] : 1, sb = ib >= 0 ? b[ib] : 1;
        if (sa != sb && sa != 1 && sb != 1) {
            char s1[160], s2[160];
            return err_set(E_SHAPE,
                           "shapes %s and %s cannot be broadcast (size %lld vs %lld at "
                           "non-singleton dimension %d)",
                           fmt_shape(s1, sizeof s1, a, na), fmt_shape(s2, sizeof s2, b, nb),
                           (long long)sa, (long long)sb, i);
        }
        res[i] = sa == 1 ? sb : sa;
    }
    memcpy(out, res, (size_t)n * sizeof *res);
    *nout = n;
    return E_OK;
}

/* ---- autograd meta ----------------------------------------------------------------------- */
/* A meta for t laid out at mem (TMETA_HEAD + meta_node_bytes(t)), not yet published. */
static inline size_t meta_node_bytes(const tensor *t) { return node_bytes(0, 0, 1, t->ndim, 0); }
static tmeta *meta_init(void *mem, tensor *t, bool hosted)
{
    /* Not cleared as a whole first: the head is written here once, and node_init_embedded
     * clears the node's part itself (every leaf that requires grad comes through here: a
     * memset of the block before either cost a tenth of ag_tensor_set_requires_grad). */
    tmeta *fresh = mem;
    *fresh = (tmeta){.next_hook_id = 1, .hosted = hosted};
    atomic_init(&fresh->refs, 1);
    atomic_flag_clear_explicit(&fresh->lock, memory_order_relaxed); /* (unpublished) */
    fresh->acc = node_init_embedded((char *)fresh + TMETA_HEAD, &ACCUMULATE_GRAD, t);
    return fresh;
}

/* A new meta for t, not yet published. */
static tmeta *meta_new(tensor *t)
{
    /* The block also holds the AccumulateGrad node the tensor gets if it is a leaf that
     * requires grad: one allocation, no weak pointer to keep in step. */
    void *mem = mem_alloc(TMETA_HEAD + meta_node_bytes(t));
    if (!mem) {
        err_nomem();
        return NULL;
    }
    return meta_init(mem, t, false);
}

/* The block tensor_new_scalar_leaf makes, 480 bytes (a pooled class of its own): the leaf's
 * header, storage and data, its .grad's data, its meta and AccumulateGrad node, and room
 * for its .grad's header and storage (tensor_grad_in_leaf). Each part is 16-byte aligned
 * (data 8 bytes: either float dtype). */
enum { LEAF_GRAD_DATA_OFF = SCALAR_DATA_OFF + 8,
       LEAF_META_OFF = (LEAF_GRAD_DATA_OFF + 8 + 15) & ~(size_t)15,
       /* (the AccumulateGrad node is node_bytes(0, 0, 1, 0, 0), its header and one output
        * meta: spelled out, as an enum needs a constant) */
       LEAF_GRAD_OFF = LEAF_META_OFF + TMETA_HEAD + (((sizeof(node) + sizeof(out_meta)) + 15) &
                                                     ~(size_t)15),
       LEAF_BLOCK = LEAF_GRAD_OFF + sizeof(tensor) + sizeof(storage) };
_Static_assert(LEAF_BLOCK == 480, "a 0-d leaf's block fills its pooled class (alloc.c)");
_Static_assert(LEAF_STORAGE_BEFORE_META == LEAF_META_OFF - sizeof(tensor) &&
                   LEAF_ROOM_AFTER_META == LEAF_GRAD_OFF - LEAF_META_OFF &&
                   LEAF_ROOM_BYTES == LEAF_BLOCK - LEAF_GRAD_OFF && LEAF_ROOM_BYTES <= 192,
               "tensor_leaf_prefetch knows the leaf's layout");

/* The storage of the leaf whose block holds `guest` at offset off. */
static inline storage *leaf_host(const void *guest, size_t off)
{
    return (storage *)((char *)guest - off + sizeof(tensor));
}

tensor *tensor_new_scalar_leaf(dtype dt)
{
    tensor *t = scalar_in_block(dt, LEAF_BLOCK);
    if (!t) return NULL;
    char *block = (char *)t;
    storage *st = t->st;
    /* (the meta's reference: no other thread can see either yet) */
    atomic_init(&st->refs, 2);
    atomic_init(&st->guests, GUEST_META);
    atomic_init(&t->meta, meta_init(block + LEAF_META_OFF, t, true));
    return t;
}

tensor *tensor_grad_in_leaf(tmeta *m, const tensor *g)
{
    if (!m->hosted || g->ndim != 0 || g->dtype != node_outs(m->acc)[0].dtype) return NULL;
    storage *host = leaf_host(m, LEAF_META_OFF);
    if (atomic_load_explicit(&host->guests, memory_order_acquire) & GUEST_GRAD) return NULL;
    /* The room is free: the last .grad made there, and every view of it, is gone. */
    char *block = (char *)host - sizeof(tensor);
    tensor *t = (tensor *)(block + LEAF_GRAD_OFF);
    storage *st = (storage *)(t + 1);
    size_t n = dtype_size((dtype)g->dtype);
    header_init(t, st, g->dtype, 0, 1, 0);
    storage_init(st, t, n, 0, false); /* (block: the header, so tensor_destroy frees nothing) */
    st->block_kind = BLOCK_GUEST;
    st->data = block + LEAF_GRAD_DATA_OFF;
    memcpy(st->data, tensor_data(g), n);
    t->zeros = tensor_is_zeros(g);
    atomic_fetch_add_explicit(&host->refs, 1, memory_order_relaxed);
    /* (A store, not a read-modify-write: no other thread changes `guests` now. The meta's
     * bit stays, as the pass holds the leaf, which holds its meta; the .grad's bit is clear,
     * and only the death of the .grad storage it stands for clears it.) */
    atomic_store_explicit(&host->guests,
                          atomic_load_explicit(&host->guests, memory_order_relaxed) | GUEST_GRAD,
                          memory_order_relaxed);
    return t;
}

/* The storage of a .grad made by tensor_grad_in_leaf has died: its room is free again, and
 * its reference to the leaf's storage goes. */
static void guest_grad_gone(storage *s)
{
    storage *host = leaf_host(s, LEAF_GRAD_OFF + sizeof(tensor));
    atomic_fetch_and_explicit(&host->guests, (uint8_t)~GUEST_GRAD, memory_order_release);
    storage_release(host);
}

/* A dying 0-d leaf made by tensor_new_scalar_leaf, whose block nothing outside it holds:
 * only t itself holds its meta, only its meta its .grad (if that lies in the block's room),
 * and only those three its storage (no view, no detached alias, no queued kernel). Then no
 * other thread can reach anything in the block, and it is freed at once, with no atomic
 * read-modify-write: the general path (the meta and the .grad each dropping their bit of
 * `guests` and their reference to the storage) paid four per leaf, each a full barrier on
 * x86 that waited for the stores before it, cold lines in a graph larger than the caches.
 * False, having done nothing, for any other case. The loads pair with the other holders'
 * releasing decrements, as the atomics would. (reclaim.draining is set) */
static __attribute__((noinline)) bool leaf_block_free(tensor *t, tmeta *m)
{
    char *block = (char *)t;
    storage *st = t->st;
    if ((char *)m != block + LEAF_META_OFF || st != leaf_host(m, LEAF_META_OFF) ||
        st->block != block || st->block_kind != BLOCK_MALLOC || t->base ||
        atomic_load_explicit(&m->refs, memory_order_acquire) != 1)
        return false;
    unsigned guests = atomic_load_explicit(&st->guests, memory_order_acquire);
    tensor *g = m->grad;
    if (guests == (GUEST_META | GUEST_GRAD)) {
        /* (the room's .grad must be the leaf's .grad, held by nothing else: one the
         * program kept after replacing the leaf's .grad leaves the block to it) */
        if (g != (tensor *)(block + LEAF_GRAD_OFF) || g->st != (storage *)(g + 1) ||
            atomic_load_explicit(&g->refs, memory_order_acquire) != 1 ||
            atomic_load_explicit(&g->st->refs, memory_order_acquire) != 1 ||
            atomic_load_explicit(&g->meta, memory_order_relaxed) || g->grad_fn || g->base)
            return false;
        g = NULL; /* (freed with the block) */
    } else if (guests != GUEST_META) {
        return false;
    }
    if (atomic_load_explicit(&st->refs, memory_order_acquire) != 1 + (long)(guests >> 1) + 1)
        return false;
    release_draining(g); /* (a .grad of its own block, not in the room) */
    if (m->hooks) hook_release(m->hooks);
    node_release(t->grad_fn);
    mem_free(block);
    return true;
}

/* Frees m's memory: its own block, or its reference to the storage whose block it lives in. */
static void meta_free(tmeta *m)
{
    if (!m->hosted) {
        mem_free(m);
        return;
    }
    storage *st = leaf_host(m, LEAF_META_OFF);
    atomic_fetch_and_explicit(&st->guests, (uint8_t)~GUEST_META, memory_order_relaxed);
    storage_release(st);
}

tmeta *tensor_meta(tensor *t)
{
    tmeta *m = atomic_load_explicit(&t->meta, memory_order_acquire);
    if (m) return m;
    tmeta *fresh = meta_new(t);
    if (!fresh) return NULL;
    tmeta *expected = NULL;
    if (!atomic_compare_exchange_strong(&t->meta, &expected, fresh)) {
        mem_free(fresh);
        return expected;
    }
    return fresh;
}

tmeta *tensor_meta_private(tensor *t)
{
    tmeta *m = atomic_load_explicit(&t->meta, memory_order_relaxed);
    if (m) return m;
    /* No other thread can race to make one, nor read the pointer before whatever hands t
     * over to it: a plain store, where the compare-and-swap is a locked instruction (one
     * per leaf of a scalar graph, each a full barrier). */
    if ((m = meta_new(t))) atomic_store_explicit(&t->meta, m, memory_order_relaxed);
    return m;
}

void tmeta_release(tmeta *m)
{
    if (!m || !refs_drop(&m->refs)) return;
    tensor_release(m->grad);
    hook_release(m->hooks);
    meta_free(m);
}

tensor *tensor_grad_get(const tensor *t)
{
    tmeta *m = tensor_meta_peek(t);
    if (!m) return NULL;
    tmeta_lock(m);
    tensor *g = m->grad;
    if (g) tensor_retain(g);
    tmeta_unlock(m);
    return g;
}

void hook_release(hook *h)
{
    /* Iterative: dropping a long list's head frees it hook by hook. */
    while (h && atomic_fetch_sub_explicit(&h->refs, 1, memory_order_acq_rel) == 1) {
        hook *next = h->next;
        if (h->free_userdata) h->free_userdata(h->userdata);
        mem_free(h);
        h = next;
    }
}
