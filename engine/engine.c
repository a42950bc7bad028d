/*
 * engine.c: the backward scheduler.
 *
 * 1. Discover: an iterative depth-first walk from the roots indexes every node (each node
 *    records which pass indexes it, so no hash map is needed), the edges between them, and
 *    how many gradients each node will receive.
 * 2. Prune (autograd.grad only): keep the nodes on a path to a requested input.
 * 3. Check: every node that will run still has its saved tensors (a freed graph fails before
 *    anything runs); versions are checked as formulas read them (saved_get).
 * 4. Number the contributions: each edge gets a fixed slot in its target's input buffer, in
 *    discovery order. A node sums its slots in slot order, so the result does not depend on
 *    which producer finished first: gradients are bitwise identical for any schedule.
 * 5. Run: a node whose slots are all filled is ready, and goes on its thread's stack (the
 *    last one a node makes ready runs next, without the stack). In a parallel pass, a thread
 *    about to run a costly node first hands what waits on its stack to the team as OpenMP
 *    tasks, so independent branches run at once while each costly node stays with the
 *    thread that holds its inputs (see run_from).
 * 6. Commit: leaves' .grad and retained gradients are written only after every node
 *    succeeded, in discovery order (walking the AccumulateGrad nodes discovery listed).
 */
#include "engine.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "defer.h"
#include "ops.h"
#include "parallel.h"

#define NONE UINT32_MAX
/* A node whose gradients hold at least this many elements is worth an OpenMP task
 * (~0.1-1 us each); below it, running inline is cheaper than any handoff. */
#define TASK_MIN_ELEMS 8192
/* How many nodes (in discovery order) ahead of the current one execute and commit prefetch:
 * the node (and an AccumulateGrad node's leaf) FAR ahead, then its saved tensors NEAR ahead.
 * Tuned on the scalar workload at 20 000 triples (backward, ns per node: 16 ahead 153-158,
 * 24 142-147, 32 118-126, 44 122-129, 64 129-134; saved tensors 16 ahead no better). */
#define RUN_AHEAD_FAR 32
#define RUN_AHEAD_NEAR 8
/* A graph of this many nodes (AccumulateGrad ones included) or more does not fit in the
 * caches: with its leaves and saved tensors a node takes ~300 bytes or more (the scalar
 * workload's take 330), so ~15 MB, half of this host's 32 MiB L3. Its release, which
 * usually follows on the same thread, then prefetches along its walk (mem_walk_enable):
 * in the scalar workload that paid at 20 000 triples (140 000 nodes, release 71 -> 31
 * ns/node) and cost at 5 000 and less (release 15 -> 21). */
#define BIG_GRAPH 50000
/* How many leaves ahead commit fetches a leaf's meta and gradient. Each leaf takes its
 * meta's lock, a locked exchange that waits for the line and lets no later load start early,
 * so the fetches must be issued well ahead: the scalar workload's commit at 20 000 triples
 * took 1.13-1.16 ms per pass 8 ahead, 0.91-0.95 16 ahead, 0.87-1.02 24 ahead (four pairs). */
#define COMMIT_AHEAD 16

/* A node's entry in the pass, 32 bytes: discovery, numbering, the run and cleanup each
 * stream through the array (commit through its AccumulateGrad entries), which for a scalar
 * graph of 20 000 triples is 140 000 entries (at 64 bytes, padding it to 128 cost 9% of the
 * workload). What only some nodes
 * need lives elsewhere: an AccumulateGrad's gradient to commit stays in its first
 * contribution slot (s->cgrad[slot0], every other slot being empty once its node ran), and
 * retained gradients in s->retained. */
typedef struct gnode {
    node *fn;
    atomic_int deps;       /* contributions arrived (zeroed with the entry: none to set) */
    uint32_t nslots;       /* contributions expected */
    uint32_t slot0;        /* first contribution slot */
    uint32_t edge0;        /* first entry in edges */
    bool needed;           /* runs or is captured in this pass */
    bool runs;             /* its formula runs: it leads to a needed node (backward: all) */
    bool heavy;            /* its gradients hold >= TASK_MIN_ELEMS elements */
    bool ran;              /* executed (and released its scratch claim) */
    bool grad_set;         /* commit: this leaf's .grad was set from none (undone on failure) */
    bool grad_deferred;    /* commit: its in-place addition into .grad waits for the rest */
    bool leaf;             /* an AccumulateGrad node */
    bool prepared;         /* its gradient was copied into its 0-d leaf's room for a .grad
                              (prepare_leaf_grad): commit only publishes it */
} gnode;
_Static_assert(sizeof(gnode) <= 32, "gnode stays half a cache line");

/* A gradient a tensor retains, kept for commit, and the last of its node output's meta links
 * when the node ran: commit stores it into the metas of those links that retain it, not into
 * those attached meanwhile (which get the next pass's). */
typedef struct retained_out {
    tensor *grad;
    const meta_link *last;
} retained_out;

/* An edge of a gnode: its target and its place among the target's contributions, side by
 * side (sending reads both). */
typedef struct gedge {
    uint32_t target; /* gnode, or NONE */
    uint32_t local;  /* its slot among the target's contributions */
} gedge;

typedef struct sched {
    uint64_t id;
    gnode *nodes;
    uint32_t n, cap;
    gedge *edges;          /* per edge of every node, in discovery order */
    uint32_t n_edges, edge_cap;
    uint32_t *leaves;      /* the AccumulateGrad gnodes, in discovery order (commit's walk) */
    uint32_t n_leaves, leaf_cap;
    tensor **cgrad;        /* contribution slots */
    uint32_t cgrad_cap, cpos_cap;
    uint32_t *cpos;        /* gradient position (forward output index), written on send */
    uint32_t n_slots;
    /* nodes another concurrent pass had already claimed (two threads sharing leaves or part
     * of a graph): an open-addressing map from node to index */
    node **foreign;
    uint32_t *foreign_idx;
    uint32_t n_foreign, foreign_cap; /* cap is 0 or a power of two */
    /* roots and captures */
    uint32_t *root_target;
    uint32_t *root_pos;
    uint32_t *root_local;  /* slot of each root gradient among its node's contributions */
    tensor **root_grad;
    int n_roots;
    uint32_t *cap_target;  /* per requested input: gnode or NONE */
    uint32_t *cap_pos;
    node **cap_node;       /* the (possibly fresh) node of each input, held for the pass */
    tensor **captured;
    int n_inputs;
    bool accumulate;
    bool retain_graph, create_graph, anomaly;
    bool parallel;
    bool caller_thread;    /* a callback must stay on this thread */
    bool claims_alone;     /* no other pass was in flight: claims nodes with plain stores */
    bool claims_none;      /* another pass claims alone: this one indexes every node aside */
    bool tidy;             /* every node ran and every slot is empty: cleanup skips the walk */
    uint32_t n_run;        /* serial passes: nodes taken off the run's stacks */
    /* per node: gradients to commit to the tensors that retain them (an array per output,
     * allocated by the node's own run); made by the first node that needs it */
    _Atomic(retained_out **) retained;
    int heavy;             /* needed nodes worth a task */
    /* Failure: the node of lowest index that fails is reported, whatever the thread count.
     * After a failure, nodes of higher index than the lowest failed so far skip their work
     * (hooks, formula) and pass nothing on; nodes of lower index still run, as any of them
     * could fail too and take its place. Which nodes fail then does not depend on the
     * schedule: a serial pass (depth first) and a parallel one report the same node. */
    atomic_flag err_lock;
    atomic_bool failed;
    _Atomic uint32_t err_node; /* the lowest index that failed (valid once failed is set) */
    err_saved err;
} sched;

static _Atomic uint64_t next_pass_id = 1;

/* Passes in flight (x2), and PASS_ALONE while one of them discovers with plain claims. A
 * pass claims each node it discovers (sched_owner) with a compare-and-swap, as another pass
 * may be walking the same nodes (two threads sharing leaves, a pass started by a hook). When
 * no other pass is in flight, every claim is free (a pass gives its claims back before it
 * leaves), so the pass claims with plain stores until its discovery ends: a scalar graph's
 * seven compare-and-swaps per triple, each a full barrier, were an eighth of its atomics.
 * A pass that starts meanwhile leaves every claim alone and indexes its nodes in the
 * foreign map instead: no pass ever waits for another. */
#define PASS_ALONE 1u
static _Atomic uint32_t passes_in_flight;

static void pass_enter(sched *s)
{
    uint32_t w = atomic_load_explicit(&passes_in_flight, memory_order_relaxed), nw;
    do nw = w == 0 ? 2 | PASS_ALONE : w + 2;
    while (!atomic_compare_exchange_weak_explicit(&passes_in_flight, &w, nw, memory_order_acq_rel,
                                                  memory_order_relaxed));
    s->claims_alone = w == 0;
    s->claims_none = (w & PASS_ALONE) != 0;
}

/* Discovery is over: later passes may claim again (they then meet this pass's claims). */
static void pass_discovered(sched *s)
{
    if (!s->claims_alone) return;
    s->claims_alone = false;
    atomic_fetch_and_explicit(&passes_in_flight, ~PASS_ALONE, memory_order_release);
}

/* After cleanup, which gave back every claim of the pass. */
static void pass_leave(sched *s)
{
    pass_discovered(s);
    atomic_fetch_sub_explicit(&passes_in_flight, 2, memory_order_release);
}

/* ---- small growable arrays ---------------------------------------------------------------- */
static bool grow_slow(void **p, uint32_t *cap, uint32_t need, size_t elem);

static inline bool grow(void **p, uint32_t *cap, uint32_t need, size_t elem)
{
    return need <= *cap || grow_slow(p, cap, need, elem);
}

static bool grow_slow(void **p, uint32_t *cap, uint32_t need, size_t elem)
{
    uint32_t nc = *cap ? *cap : 64;
    while (nc < need) nc *= 2;
    void *q = mem_alloc((size_t)nc * elem);
    if (!q) return false;
    if (*p) {
        memcpy(q, *p, (size_t)*cap * elem);
        mem_free(*p);
    }
    *p = q;
    *cap = nc;
    return true;
}

/* ---- node indexing -------------------------------------------------------------------------- */
static uint32_t hash_ptr(const void *p, uint32_t cap)
{
    uint64_t h = (uint64_t)(uintptr_t)p * 0x9E3779B97F4A7C15ull;
    return (uint32_t)(h >> 32) & (cap - 1);
}

/* fn's index in the foreign map, or NONE. */
static uint32_t lookup_foreign(const sched *s, node *fn)
{
    if (!s->n_foreign) return NONE;
    for (uint32_t h = hash_ptr(fn, s->foreign_cap);; h = (h + 1) & (s->foreign_cap - 1)) {
        if (s->foreign[h] == fn) return s->foreign_idx[h];
        if (!s->foreign[h]) return NONE;
    }
}

static uint32_t lookup(sched *s, node *fn)
{
    if (atomic_load_explicit(&fn->sched_owner, memory_order_relaxed) == s->id) return fn->sched_idx;
    return lookup_foreign(s, fn);
}

static bool foreign_put(sched *s, node *fn, uint32_t idx)
{
    if (2 * (s->n_foreign + 1) > s->foreign_cap) {
        uint32_t nc = s->foreign_cap ? 2 * s->foreign_cap : 64;
        node **keys = mem_calloc((size_t)nc * sizeof *keys);
        uint32_t *vals = mem_alloc((size_t)nc * sizeof *vals);
        if (!keys || !vals) {
            mem_free(keys);
            mem_free(vals);
            return false;
        }
        for (uint32_t i = 0; i < s->foreign_cap; i++) {
            if (!s->foreign[i]) continue;
            uint32_t h = hash_ptr(s->foreign[i], nc);
            while (keys[h]) h = (h + 1) & (nc - 1);
            keys[h] = s->foreign[i];
            vals[h] = s->foreign_idx[i];
        }
        mem_free(s->foreign);
        mem_free(s->foreign_idx);
        s->foreign = keys;
        s->foreign_idx = vals;
        s->foreign_cap = nc;
    }
    uint32_t h = hash_ptr(fn, s->foreign_cap);
    while (s->foreign[h]) h = (h + 1) & (s->foreign_cap - 1);
    s->foreign[h] = fn;
    s->foreign_idx[h] = idx;
    s->n_foreign++;
    return true;
}

/* Makes fn gnode idx, claiming it (the caller made room for it, and counts it in s->n and,
 * for an AccumulateGrad node, in s->leaves once this succeeds: discover keeps those counts in
 * registers); false on allocation failure. (Inline, with the pass's constants passed in:
 * called for every node a pass discovers, where the call itself cost a fifth of the
 * function.) */
static inline __attribute__((always_inline)) bool add_node(sched *s, gnode *g, uint32_t idx,
                                                           node *fn, bool accumulate,
                                                           bool alone)
{
    /* (backward runs every reachable node) */
    *g = (gnode){.fn = fn, .needed = accumulate, .runs = accumulate};
    uint64_t expected = 0;
    if (alone) { /* (every claim is free: see passes_in_flight) */
        atomic_store_explicit(&fn->sched_owner, s->id, memory_order_relaxed);
        fn->sched_idx = idx;
    } else if (!s->claims_none &&
               atomic_compare_exchange_strong(&fn->sched_owner, &expected, s->id)) {
        fn->sched_idx = idx;
    } else {
        /* Another backward pass is walking this node right now: keep our index aside. */
        if (!foreign_put(s, fn, idx)) return false;
    }
    return true;
}

/* add_node for a root, outside discover: room and counts here. NONE on allocation failure. */
static uint32_t add_root(sched *s, node *fn)
{
    if (!grow((void **)&s->nodes, &s->cap, s->n + 1, sizeof(gnode)) ||
        !grow((void **)&s->leaves, &s->leaf_cap, s->n_leaves + 1, sizeof(uint32_t)) ||
        !add_node(s, &s->nodes[s->n], s->n, fn, s->accumulate, s->claims_alone))
        return NONE;
    if (fn->variable) {
        s->leaves[s->n_leaves++] = s->n;
        s->nodes[s->n].leaf = true;
    }
    return s->n++;
}

/* What the walk learns from a node the moment it is popped (its memory is in cache then):
 * cost class, callback affinity, and (for backward) the saved-tensor checks. */
static eng_err visit(sched *s, gnode *g)
{
    node *fn = g->fn;
    unsigned fl = atomic_load_explicit(&fn->flags, memory_order_relaxed);
    if (fl & NODE_CALLER_THREAD) s->caller_thread = true;
    if (fn->variable) return E_OK; /* its flags say all (the leaf's meta is not read) */
    g->heavy = fn->elems >= TASK_MIN_ELEMS && fn->type->backward;
    s->heavy += g->heavy; /* (autograd.grad counts again those that run, after pruning) */
    /* autograd.grad checks only the nodes that will run, after pruning. (saved_check fails
     * only on a node whose saved variables were freed: called only then.) */
    return s->accumulate && (fl & NODE_RELEASED) ? saved_check(fn) : E_OK;
}

/* Discovers every node reachable from `start` (already indexed). Each edge gets its target
 * and its position among the target's contributions, in walk order: the fixed order in which
 * the target will sum them.
 *
 * The walk is depth first, DISCOVER_BATCH nodes at a time: the top entries of the stack are
 * visited together, so the cache misses on their edge targets overlap. One node at a time, a
 * chain of side branches (s = s + tanh(a * b + c)) is a chain of dependent misses: in a
 * graph larger than the caches each node waited for the one before (discovery of the scalar
 * workload: 40 -> 30 ns per node). The order depends only on the graph. */
#define DISCOVER_BATCH 8

static eng_err discover(sched *s, uint32_t start)
{
    size_t bytes;
    uint32_t *stack = mem_scratch_take(SCRATCH_SCHED_STACK, &bytes), sp = 0;
    uint32_t scap = (uint32_t)(bytes / sizeof *stack);
    if (!grow((void **)&stack, &scap, 1, sizeof *stack)) return err_nomem();
    stack[sp++] = start;
    /* The pass's arrays and counts live in locals, written back to *s around each growth and
     * at the end: every store through the arrays would otherwise make the compiler load them
     * again from *s (discovery cost ~125 instructions per node and edge that way). */
    const uint64_t id = s->id;
    const bool accumulate = s->accumulate, alone = s->claims_alone;
    gnode *nodes = s->nodes;
    gedge *edges = s->edges;
    uint32_t *leaves = s->leaves;
    uint32_t n = s->n, n_edges = s->n_edges, n_leaves = s->n_leaves;
    eng_err rc = E_OK;
    while (sp && !rc) {
        uint32_t batch[DISCOVER_BATCH];
        int nb = sp < DISCOVER_BATCH ? (int)sp : DISCOVER_BATCH;
        for (int b = 0; b < nb; b++) batch[b] = stack[--sp];
        /* Ask for every target's line at once: the lookups and claims that follow (atomics,
         * which let no later load start early) would otherwise wait for one miss after
         * another. */
        uint32_t more = 0;
        for (int b = 0; b < nb; b++) {
            const node *fn = nodes[batch[b]].fn;
            more += fn->n_next;
            for (int e = 0; e < fn->n_next; e++)
                if (fn->next[e].fn) __builtin_prefetch(&fn->next[e].fn->sched_owner, 1);
        }
        /* Room for what the batch can add (a new node, leaf and stack entry per edge at
         * most), made once here rather than checked per node and per edge. */
        if (n + more > s->cap || n_edges + more > s->edge_cap || n_leaves + more > s->leaf_cap) {
            if (!grow((void **)&s->nodes, &s->cap, n + more, sizeof(gnode)) ||
                !grow((void **)&s->edges, &s->edge_cap, n_edges + more, sizeof(gedge)) ||
                !grow((void **)&s->leaves, &s->leaf_cap, n_leaves + more, sizeof(uint32_t))) {
                rc = err_nomem();
                break;
            }
            nodes = s->nodes;
            edges = s->edges;
            leaves = s->leaves;
        }
        if (!grow((void **)&stack, &scap, sp + more, sizeof *stack)) {
            rc = err_nomem();
            break;
        }
        for (int b = 0; b < nb && !rc; b++) {
            gnode *g = &nodes[batch[b]];
            node_hint(g->fn);
            if ((rc = visit(s, g))) break;
            /* Its edges: each gets its target and its position among the target's
             * contributions; new targets are indexed and pushed. */
            const node *fn = g->fn;
            const int n_next = fn->n_next;
            gedge *ge = edges + n_edges;
            g->edge0 = n_edges;
            n_edges += (uint32_t)n_next;
            for (int e = 0; e < n_next; e++) {
                node *t = fn->next[e].fn;
                uint32_t ti = NONE;
                if (t) {
                    if (atomic_load_explicit(&t->sched_owner, memory_order_relaxed) == id)
                        ti = t->sched_idx;
                    /* (A pass that claims alone has no foreign map.) */
                    else if (alone || (ti = lookup_foreign(s, t)) == NONE) {
                        if (!add_node(s, &nodes[n], n, t, accumulate, alone)) {
                            rc = err_nomem();
                            break;
                        }
                        ti = n++;
                        if (t->variable) {
                            leaves[n_leaves++] = ti;
                            nodes[ti].leaf = true;
                        }
                        stack[sp++] = ti;
                        /* The rest of its block, where its edges are, is what visiting it
                         * will read. */
                        node_prefetch(t);
                    }
                    ge[e].local = nodes[ti].nslots++;
                }
                ge[e].target = ti;
            }
        }
    }
    s->n = n;
    s->n_edges = n_edges;
    s->n_leaves = n_leaves;
    mem_scratch_give(SCRATCH_SCHED_STACK, stack, (size_t)scap * sizeof *stack);
    return rc;
}

/* autograd.grad: a node is needed if it is captured or leads to a needed node, and its formula
 * runs only in the second case: a captured node only hands over what flows into it, as in
 * PyTorch, so its saved tensors are neither checked nor freed (grad(y, y) followed by a
 * backward through y's node works). Nodes are indexed in discovery order, which is not
 * topological for a DAG, so iterate to a fixed point over the reverse order (converges in one
 * or two sweeps for typical graphs). */
static void mark_needed(sched *s)
{
    for (int k = 0; k < s->n_inputs; k++)
        if (s->cap_target[k] != NONE) s->nodes[s->cap_target[k]].needed = true;
    bool changed = true;
    while (changed) {
        changed = false;
        for (uint32_t i = s->n; i-- > 0;) {
            gnode *g = &s->nodes[i];
            if (g->runs) continue;
            for (int e = 0; e < g->fn->n_next; e++) {
                uint32_t t = s->edges[g->edge0 + e].target;
                if (t != NONE && s->nodes[t].needed) {
                    g->needed = g->runs = true;
                    changed = true;
                    break;
                }
            }
        }
    }
    /* Edges into unneeded nodes carry nothing. */
    for (uint32_t i = 0; i < s->n; i++)
        for (int e = 0; e < s->nodes[i].fn->n_next; e++) {
            uint32_t *t = &s->edges[s->nodes[i].edge0 + e].target;
            if (*t != NONE && !s->nodes[*t].needed) *t = NONE;
        }
}


/* Lays the contribution slots out: each node's slots follow the previous node's. (Only that:
 * a node's arrivals count up from the 0 its entry was made with, and discovery counted the
 * costly nodes.) */
static eng_err number_slots(sched *s)
{
    uint32_t total = 0;
    gnode *const nodes = s->nodes;
    for (uint32_t i = 0, n = s->n; i < n; i++) {
        nodes[i].slot0 = total;
        total += nodes[i].nslots;
    }
    if (!grow((void **)&s->cgrad, &s->cgrad_cap, total + 1, sizeof(tensor *)) ||
        !grow((void **)&s->cpos, &s->cpos_cap, total + 1, sizeof(uint32_t)))
        return err_nomem();
    memset(s->cgrad, 0, (size_t)total * sizeof(tensor *));
    s->n_slots = total; /* cleanup releases slots [0, n_slots) */
    for (int r = 0; r < s->n_roots; r++) {
        uint32_t slot = s->nodes[s->root_target[r]].slot0 + s->root_local[r];
        s->cpos[slot] = s->root_pos[r];
        s->cgrad[slot] = s->root_grad[r];
        s->root_grad[r] = NULL; /* moved */
    }
    return E_OK;
}

/* ---- running one node --------------------------------------------------------------------- */
/* The hook after h (for h NULL, the first, and *limit the id the next registered hook will
 * get), retained, or NULL: read under the meta's lock, as hooks may be removed or added
 * meanwhile, by another thread or by a hook itself. */
static hook *hook_next(tmeta *m, hook *h, uint64_t *limit)
{
    tmeta_lock(m);
    hook *n = h ? h->next : m->hooks;
    if (!h) *limit = m->next_hook_id;
    if (n) hook_retain(n);
    tmeta_unlock(m);
    return n;
}

/* What messages about a failed hook call its gradient (made only when one fails). */
static const char *hook_whom(char *buf, size_t cap, const char *where)
{
    if (strcmp(where, "AccumulateGrad") == 0) snprintf(buf, cap, "the gradient of a leaf");
    else snprintf(buf, cap, "a gradient of %s", where);
    return buf;
}

/* Calls hook h on *grad, which it may replace (same dtype and shape as the output). */
static eng_err run_one_hook(hook *h, tensor **grad, const out_meta *om, const char *where)
{
    tensor *repl = NULL;
    unsigned mark = err_mark(); /* what the callback says, if it fails */
    int rc = h->fn(&repl, *grad, h->userdata);
    char whom[160];
    if (rc) {
        tensor_release(repl);
        char tail[400], sh[120], st[48];
        return err_set(err_of_callback(rc), "hook on %s (shape %s) failed with %s%s",
                       hook_whom(whom, sizeof whom, where),
                       fmt_shape(sh, sizeof sh, om->shape, om->ndim),
                       err_callback_status(st, sizeof st, rc),
                       err_callback_tail(tail, sizeof tail, mark));
    }
    if (!repl) return E_OK;
    bool ok = repl->dtype == om->dtype && repl->ndim == om->ndim &&
              memcmp(repl->shape, om->shape, om->ndim * sizeof(int64_t)) == 0;
    if (!ok) {
        char a[160], b[160];
        eng_err e = err_set(E_CALLBACK,
                            "hook on %s returned a %s %s tensor; expected %s %s",
                            hook_whom(whom, sizeof whom, where), dtype_name((dtype)repl->dtype),
                            fmt_shape(a, sizeof a, repl->shape, repl->ndim),
                            dtype_name((dtype)om->dtype),
                            fmt_shape(b, sizeof b, om->shape, om->ndim));
        tensor_release(repl); /* after the message: it may hold the last reference */
        return e;
    }
    tensor_release(*grad);
    *grad = repl;
    return E_OK;
}

/* Runs m's hooks in order on *grad. Each is held while it runs and the next is taken under
 * the lock (see hook_next), so a hook removed meanwhile is skipped if not yet reached, and
 * finishes, then is freed, if it was running; a hook registered meanwhile runs from the
 * next pass on. Only hooks registered in history `hist` run: the others belong to another
 * grad_fn of the tensor (tensor_history_moved). */
static eng_err run_hooks(tmeta *m, uint32_t hist, tensor **grad, const out_meta *om,
                         const char *where, bool parallel)
{
    eng_err rc = E_OK;
    uint64_t limit = 0;
    for (hook *h = hook_next(m, NULL, &limit); h;) {
        /* Hooks registered during this walk (ids from `limit` on, at the end of the list)
         * take effect from the next pass, whatever became of the hooks before them. So does
         * a hook that must run on the caller's thread met in a pass that runs on several: it
         * was registered after the walk that decided how the pass runs (which would
         * have kept the pass on the caller's thread), and this may be another thread. */
        bool done = h->id >= limit;
        if (!done && h->hist == hist && !(parallel && h->caller_thread) &&
            !atomic_load_explicit(&h->removed, memory_order_relaxed))
            rc = run_one_hook(h, grad, om, where);
        hook *next = rc || done ? NULL : hook_next(m, h, &limit);
        hook_release(h);
        h = next;
    }
    return rc;
}

/* Adds `add` into *acc (both gradients for the same position), in place when *acc is a
 * private temporary: same values as an out-of-place add, one allocation fewer. */
static eng_err accumulate_into(tensor **acc, tensor *add, bool create_graph)
{
    tensor *a = *acc;
    if (tensor_is_zeros(a)) {
        /* PyTorch's InputBuffer::accumulate with a ZeroTensor as the old term: it cannot
         * take the sum in place, so the new one does (when private), else ZeroTensor's add
         * gives a copy of the new one: either way the sum is in the new term's layout. */
        if (tensor_is_zeros(add) || !shapes_equal(a, add) || a->dtype != add->dtype) {
            /* both ZeroTensors (the sum is one too), or a broadcast the plain path handles */
            if (tensor_is_zeros(add) && shapes_equal(a, add) && a->dtype == add->dtype) {
                tensor_release(add);
                return E_OK;
            }
        } else if (!create_graph && atomic_load(&add->refs) == 1 &&
                   storage_users(add->st) == 1 && !add->grad_fn && tensor_is_dense(add)) {
            eng_err e = op_binary_(add, a, IP_ADD);
            tensor_release(a);
            *acc = add;
            return e;
        } else {
            tensor *sum = NULL;
            eng_err e = op_add(&sum, add, a); /* (the first operand decides the layout) */
            tensor_release(add);
            if (e) return e;
            tensor_release(a);
            *acc = sum;
            return E_OK;
        }
    }
    if (!create_graph && !tensor_is_zeros(a) && atomic_load(&a->refs) == 1 &&
        storage_users(a->st) == 1 && !a->grad_fn && shapes_equal(a, add) &&
        a->dtype == add->dtype && tensor_is_dense(a)) {
        eng_err e = op_binary_(a, add, IP_ADD);
        tensor_release(add);
        return e;
    }
    tensor *sum = NULL;
    eng_err e = op_add(&sum, a, add);
    tensor_release(add);
    if (e) return e;
    tensor_release(a);
    *acc = sum;
    return E_OK;
}

/* Like PyTorch's validate_outputs: a formula may return a gradient in the broadcast shape or
 * the computation dtype; it is summed down to the input's shape and cast to its dtype here,
 * once, instead of in every formula. A 0-d gradient of a 0-d input of its dtype (the common
 * case by count) needs nothing: callers test that inline (conform_fits). */
static inline bool conform_fits(const edge *ed, const tensor *t)
{
    return ed->ndim == 0 && t->ndim == 0 && t->dtype == ed->dtype;
}

/* *gp, the gradient for edge ed into gnode ti, conformed (replaced; left as it is on
 * failure). */
static __attribute__((noinline)) eng_err conform_one(sched *s, const edge *ed, uint32_t ti,
                                                     tensor **gp)
{
    tensor *t = *gp;
    const out_meta *m = &node_outs(s->nodes[ti].fn)[ed->input_nr];
    bool same = t->ndim == m->ndim;
    for (int d = 0; same && d < m->ndim; d++) same = t->shape[d] == m->shape[d];
    if (!same) {
        tensor *r;
        eng_err err = op_sum_to(&r, t, m->shape, m->ndim);
        if (err) return err;
        tensor_release(t);
        *gp = t = r;
    }
    if (t->dtype != m->dtype) {
        tensor *r;
        eng_err err = op_to_dtype(&r, t, (dtype)m->dtype);
        if (err) return err;
        tensor_release(t);
        *gp = r;
    }
    return E_OK;
}

/* Every gradient node g's formula returned, conformed (the general path: before the anomaly
 * check, which must see what will be sent). */
static eng_err conform(sched *s, gnode *g, tensor **gout)
{
    node *fn = g->fn;
    for (int e = 0; e < fn->n_next; e++) {
        tensor *t = gout[e];
        uint32_t ti = s->edges[g->edge0 + e].target;
        if (!t || ti == NONE || conform_fits(&fn->next[e], t)) continue;
        eng_err err = conform_one(s, &fn->next[e], ti, &gout[e]);
        if (err) return err;
    }
    return E_OK;
}

static eng_err check_anomaly(node *fn, tensor **gout)
{
    for (int e = 0; e < fn->n_next; e++) {
        tensor *g = gout[e];
        if (!g || !dtype_is_float((dtype)g->dtype)) continue;
        for (int64_t i = 0; i < g->numel; i++) {
            double v = tensor_get_f64(g, i);
            if (isnan(v) || isinf(v))
                return err_set(E_ANOMALY, "Function '%s' returned %s values in its %dth output.",
                               node_name(fn), isnan(v) ? "nan" : "inf", e);
        }
    }
    return E_OK;
}

/* What running gnode i starts with, on either path. Discovery is over: give the node's
 * scratch claim back while it is in cache. Only this pass can hold it, so a store suffices; a
 * releasing one (a plain store on x86), so the next pass to claim the node sees our writes to
 * sched_idx as done before its own. Discovery and the run both take a node's last input first
 * (see run_from), so nodes indexed shortly after this one usually run shortly after it: the
 * node far ahead is fetched now (in a graph larger than the caches, each would otherwise be a
 * miss taken in turn). */
static void run_begin(sched *s, uint32_t i)
{
    node *fn = s->nodes[i].fn;
    if (atomic_load_explicit(&fn->sched_owner, memory_order_relaxed) == s->id)
        atomic_store_explicit(&fn->sched_owner, 0, memory_order_release);
    s->nodes[i].ran = true;
    if (i + RUN_AHEAD_FAR < s->n) {
        const gnode *a = &s->nodes[i + RUN_AHEAD_FAR];
        node_prefetch(a->fn);
        /* (the lines prepare_leaf_grad reads and writes besides the node's) */
        if (a->leaf) tensor_leaf_prefetch(node_leaf_meta(a->fn));
    }
}

/* Whether node i skips its work: a node of lower index already failed (see sched). */
static inline bool skips(sched *s, uint32_t i)
{
    return atomic_load_explicit(&s->failed, memory_order_acquire) &&
           i > atomic_load_explicit(&s->err_node, memory_order_relaxed);
}

static inline bool grad_is_private(const tensor *g, const tensor *var);

/* Gnode g's gradient, for a 0-d leaf made with room for its .grad (tensor_new_scalar_leaf)
 * that has none: copied into that room now, while the leaf's lines are in cache (run_begin
 * fetched them), and left in the slot for commit, which then only publishes it, reading the
 * leaf's meta and not five lines of its block, each a miss in a graph larger than the
 * caches (`bench scalar`, four alternated pairs: commit 35-45 -> 9 ns per pass entry;
 * backward at 20 000 triples 214-225 -> 180-187 ns per graph node). Nobody sees the copy
 * before commit; a failing pass releases it with the other slots, which frees the room.
 * Under create_graph commit makes a copy with a graph instead (clone_obeying): not here. */
static inline void prepare_leaf_grad(sched *s, gnode *g)
{
    tensor **slot = &s->cgrad[g->slot0];
    tensor *r = *slot;
    if (!r || r->ndim != 0) return;
    tmeta *m = node_leaf_meta(g->fn);
    if (!m->hosted || !grad_is_private(r, g->fn->variable)) return;
    tmeta_lock(m);
    /* (a leaf with a .grad takes the sum in place at commit: no copy for it) */
    tensor *t = m->grad ? NULL : tensor_grad_in_leaf(m, r);
    tmeta_unlock(m);
    if (!t) return;
    tensor_release(r);
    *slot = t;
    g->prepared = true;
}

/* The common AccumulateGrad node of a backward pass: one contribution, no hooks on its leaf.
 * Its gradient is kept for commit (prepared in its leaf's room where it fits); nothing else
 * happens, and the general path (execute) spent ~250 instructions finding that out (a
 * scalar graph has three such nodes for every four others). False if the node needs the
 * general path. */
static inline __attribute__((always_inline)) bool execute_leaf(sched *s, uint32_t i, bool plain)
{
    gnode *g = &s->nodes[i];
    node *fn = g->fn;
    if (!fn->variable || !(plain || s->accumulate) || g->nslots != 1 ||
        (atomic_load_explicit(&fn->flags, memory_order_relaxed) &
         (NODE_LEAF_HOOKS | NODE_LEAF_MOVED | NODE_LEAF_NOGRAD)) ||
        skips(s, i))
        return false;
    run_begin(s, i); /* its gradient stays in its slot for commit */
    if (plain || !s->create_graph) prepare_leaf_grad(s, g);
    return true;
}

/* Starts fetching n's k-th saved tensor. Read without the node's lock, so atomically: another
 * pass may be releasing it (saved_release); a stale pointer is harmless to a prefetch. */
static inline void prefetch_saved(node *n, int k)
{
    tensor *t = __atomic_load_n(&n->saved[k].t, __ATOMIC_RELAXED);
    if (t) __builtin_prefetch(t);
}

/* Where node i keeps the gradients of its outputs that tensors retain; NULL (E_NOMEM set) if
 * the per-pass array cannot be made. Nodes on several threads may ask at once. */
static retained_out **retained_of(sched *s, uint32_t i)
{
    retained_out **r = atomic_load_explicit(&s->retained, memory_order_acquire);
    if (!r) {
        retained_out **fresh = mem_calloc((size_t)s->n * sizeof *fresh);
        if (!fresh) {
            err_nomem();
            return NULL;
        }
        if (atomic_compare_exchange_strong(&s->retained, &r, fresh)) r = fresh;
        else mem_free(fresh);
    }
    return &r[i];
}

/* Runs gnode i. On return every contribution it received is consumed and every outgoing slot
 * is filled (possibly with NULL) and counted down, even on failure, so the pass drains.
 *
 * `plain` (a constant: execute and run_from are made twice, see run_from) says the pass is
 * serial, accumulates into .grad, and has neither create_graph nor anomaly mode: the
 * commonest pass, whose per-pass answers the compiler then folds away. The pass's arrays are
 * read into locals once: every store through them (slots, counts) would otherwise make the
 * compiler load them again from *s. */
static inline __attribute__((always_inline)) eng_err execute(sched *s, uint32_t i,
                                                             uint32_t *ready, int *n_ready,
                                                             bool plain)
{
    gnode *const nodes = s->nodes;
    tensor **const cgrad = s->cgrad;
    uint32_t *const cpos = s->cpos;
    const bool parallel = !plain && s->parallel;
    const bool accumulate = plain || s->accumulate;
    const bool create_graph = !plain && s->create_graph;
    gnode *g = &nodes[i];
    node *fn = g->fn;
    const gedge *const edges = s->edges + g->edge0;
    tensor *gin_small[4] = {NULL, NULL, NULL, NULL};
    tensor *gout_small[4] = {NULL, NULL, NULL, NULL};
    uint8_t need_small[4];
    tensor **gin = gin_small, **gout = gout_small;
    uint8_t *needed = need_small;
    eng_err rc = E_OK;
    bool failed = skips(s, i);
    *n_ready = 0;

    run_begin(s, i);
    /* The node nearer ahead has arrived by now (run_begin fetched it earlier): its saved
     * tensors next. */
    if (!parallel && i + RUN_AHEAD_NEAR < s->n) {
        /* (Serial passes only: in a parallel one that node may be running, and releasing its
         * saved tensors, on another thread.) */
        node *near = nodes[i + RUN_AHEAD_NEAR].fn;
        for (int k = 0; k < near->n_saved; k++) prefetch_saved(near, k);
    }
    /* The formula will read the saved tensors: fetch them together, not one by one. */
    for (int k = 0; k < fn->n_saved; k++) prefetch_saved(fn, k);
    if (fn->n_out > 4) gin = mem_calloc(fn->n_out * sizeof *gin);
    if (fn->n_next > 4) {
        gout = mem_calloc(fn->n_next * sizeof *gout);
        needed = mem_alloc(fn->n_next);
    }
    if (!gin || !gout || !needed) {
        rc = err_nomem();
        failed = true;
    }

    /* Gather: sum the contributions of each position in slot order. A single one (most
     * nodes) is taken as it is: that slot was filled (perhaps with NULL) and its position
     * written by its producer, or by number_slots for a root. */
    if (g->nslots == 1 && !failed) {
        gin[cpos[g->slot0]] = cgrad[g->slot0];
        cgrad[g->slot0] = NULL;
    } else for (uint32_t k = 0; k < g->nslots; k++) {
        uint32_t slot = g->slot0 + k;
        tensor *t = cgrad[slot];
        cgrad[slot] = NULL;
        if (!t) continue;
        if (failed) {
            tensor_release(t);
            continue;
        }
        uint32_t pos = cpos[slot];
        if (!gin[pos]) {
            gin[pos] = t;
        } else if ((rc = accumulate_into(&gin[pos], t, create_graph))) {
            failed = true;
        }
    }

    if (!failed && fn->variable && accumulate &&
        (atomic_load_explicit(&fn->flags, memory_order_relaxed) & NODE_LEAF_MOVED)) {
        /* An in-place op made the leaf a non-leaf since this graph was recorded. */
        rc = err_set(E_LEAF, "leaf variable has been moved into the graph interior");
        failed = true;
    }
    if (!failed && (accumulate || g->needed) &&
        (__atomic_load_n(&fn->hooked, __ATOMIC_RELAXED) || fn->variable)) {
        /* Hooks of leaves, and hooks and retain_grad of non-leaf outputs (retained last, as
         * PyTorch does since 2.0: the retained gradient is what the hooks made of it). Not
         * for a node autograd.grad neither runs nor captures (an output none of the inputs
         * lies behind, with AG_ALLOW_UNUSED): PyTorch does not reach its hooks. */
        for (int p = 0; p < fn->n_out && !rc; p++) {
            if (!gin[p]) continue;
            if (fn->variable) {
                /* (Not for a leaf set not to require grad: PyTorch's AccumulateGrad returns
                 * before its hooks then.) */
                unsigned fl = atomic_load_explicit(&fn->flags, memory_order_relaxed);
                tmeta *m = (fl & (NODE_LEAF_HOOKS | NODE_LEAF_NOGRAD)) == NODE_LEAF_HOOKS
                               ? node_leaf_meta(fn) : NULL;
                /* An AccumulateGrad node is its leaf's first history: hooks registered
                 * after an in-place op moved the tensor into the graph belong elsewhere. */
                if (m && __atomic_load_n(&m->hooks, __ATOMIC_ACQUIRE))
                    rc = run_hooks(m, 0, &gin[p], &node_outs(fn)[p], node_name(fn), parallel);
                continue;
            }
            bool retain = false;
            const meta_link *last = NULL;
            for (meta_link *l = node_links(fn, p); l && !rc; l = link_next(l)) {
                if (__atomic_load_n(&l->m->hooks, __ATOMIC_ACQUIRE))
                    rc = run_hooks(l->m, l->hist, &gin[p], &node_outs(fn)[p], node_name(fn), parallel);
                retain |= __atomic_load_n(&l->m->retains_grad, __ATOMIC_ACQUIRE) &&
                          meta_hist(l->m) == l->hist;
                last = l;
            }
            /* (autograd.grad too, for nodes whose formula runs: PyTorch 1.13's retain_grad
             * is a hook of the node, which a node only captured does not call) */
            if (!rc && retain && (accumulate || g->runs)) {
                retained_out **ret = retained_of(s, i);
                if (ret && !*ret) *ret = mem_calloc(fn->n_out * sizeof(retained_out));
                if (!ret || !*ret) {
                    rc = err_nomem();
                } else {
                    tensor_retain(gin[p]);
                    (*ret)[p].grad = gin[p];
                    (*ret)[p].last = last;
                }
            }
        }
        if (rc) failed = true;
    }
    if (!failed && !plain && s->n_inputs) {
        /* autograd.grad: capture what flows into the requested inputs. */
        for (int k = 0; k < s->n_inputs && !rc; k++) {
            if (s->cap_target[k] == i && gin[s->cap_pos[k]]) {
                tensor_retain(gin[s->cap_pos[k]]);
                tensor_release(s->captured[k]);
                s->captured[k] = gin[s->cap_pos[k]];
            }
        }
        if (rc) failed = true;
    }

    bool runs = !failed && fn->type->backward && (accumulate || g->runs);
    if (!failed && fn->variable && accumulate) {
        /* committed after the whole pass succeeds; the slots are empty now. A leaf set not
         * to require grad since the graph was recorded takes nothing (PyTorch's
         * AccumulateGrad returns early too): its gradient is released below. */
        if (!(atomic_load_explicit(&fn->flags, memory_order_relaxed) & NODE_LEAF_NOGRAD)) {
            cgrad[g->slot0] = gin[0];
            gin[0] = NULL;
        }
    } else if (runs) {
        bool any = gin[0] != NULL; /* (gin has at least one entry, and four up to 4 outputs) */
        for (int p = 1; p < fn->n_out; p++) any |= gin[p] != NULL;
        for (int e = 0; e < fn->n_next; e++)
            needed[e] = edges[e].target != NONE;
        unsigned fl = atomic_load_explicit(&fn->flags, memory_order_relaxed);
        bool user = (fl & NODE_USER_FORMULA) && fn->n_saved > 0;
        bool locked = fn->n_saved > 0 && !user && node_lock(fn);
        saved_var *own = NULL;
        if (user && !s->retain_graph) {
            /* A custom function's backward (user code, which may run passes of its own)
             * runs unlocked: its saved variables are taken out of the node first, under the
             * lock, so that another pass finds them freed, as it would after this one. */
            own = mem_alloc(fn->n_saved * sizeof *own);
            if (!own) {
                rc = err_nomem();
                failed = true;
                any = false;
            } else {
                bool l = node_lock(fn);
                bool taken = saved_take(fn, own);
                if (l) node_unlock(fn);
                if (!taken) { /* freed already: the formula's reads will say so */
                    mem_free(own);
                    own = NULL;
                }
            }
        }
        /* A node that received no gradient at all passes none on, except a custom function:
         * PyTorch calls its backward even then, with zeros for every output (it may return
         * gradients that do not depend on them). */
        if ((any || (fl & NODE_USER_FORMULA)) && !failed) {
            /* (Not an initializer: that would zero temps[], 64 bytes, for every formula.) */
            bwd_ctx c;
            c.create_graph = create_graph;
            c.take_saved = !s->retain_graph && !user;
            c.needed = needed;
            c.node = fn;
            c.ntemps = 0;
            c.own_saved = own;
            rc = fn->type->backward(fn, &c, gin, gout);
            for (int k = 0; k < c.ntemps; k++) tensor_release(c.temps[k]);
            /* (A plain pass conforms as it sends, below: one walk over the edges, not two.) */
            if (!rc && !plain) rc = conform(s, g, gout);
            if (!rc && !plain && s->anomaly) rc = check_anomaly(fn, gout);
            if (rc) failed = true;
        } else if (!failed && fn->n_saved && !(fl & NODE_USER_FORMULA)) {
            /* PyTorch calls it all the same, with undefined gradients, and its formula
             * unpacks every saved variable first: one changed in place fails the pass. */
            if ((rc = saved_check_versions(fn))) failed = true;
        }
        if (own) {
            for (int k = 0; k < fn->n_saved; k++) saved_var_drop(&own[k]);
            mem_free(own);
        } else if (!s->retain_graph && fn->n_saved) {
            bool l = user && node_lock(fn);
            saved_release(fn);
            if (l) node_unlock(fn);
        }
        if (!s->retain_graph &&
            (atomic_load_explicit(&fn->flags, memory_order_relaxed) & NODE_RELEASABLE))
            atomic_fetch_or(&fn->flags, NODE_RELEASED);
        if (locked) node_unlock(fn);
    }
    for (int p = 0; gin && p < fn->n_out; p++) tensor_release(gin[p]);

    /* Send: fill each outgoing slot and count the target down. */
    const edge *const next = fn->next;
    for (int e = 0, n_next = fn->n_next; e < n_next; e++) {
        uint32_t t = edges[e].target;
        tensor *ge = gout ? gout[e] : NULL;
        if (t == NONE || !(accumulate || g->needed)) {
            tensor_release(ge);
            continue;
        }
        if (plain && ge && !failed && !conform_fits(&next[e], ge) &&
            (rc = conform_one(s, &next[e], t, &ge))) {
            /* As if conform had failed before anything was sent: the gradients already sent
             * along edges before this one are withdrawn (their targets cannot have run: they
             * run after this returns), and this one and the rest send nothing. */
            failed = true;
            for (int k = 0; k < e; k++) {
                if (edges[k].target == NONE) continue;
                uint32_t ks = nodes[edges[k].target].slot0 + edges[k].local;
                tensor_release(cgrad[ks]);
                cgrad[ks] = NULL;
            }
        }
        uint32_t slot = nodes[t].slot0 + edges[e].local;
        cpos[slot] = next[e].input_nr;
        cgrad[slot] = failed ? NULL : ge;
        if (failed) tensor_release(ge);
        /* One thread alone needs no atomic read-modify-write (~20 cycles each). */
        atomic_int *deps = &nodes[t].deps;
        int got = parallel ? atomic_fetch_add_explicit(deps, 1, memory_order_acq_rel) + 1
                           : atomic_load_explicit(deps, memory_order_relaxed) + 1;
        if (!parallel) atomic_store_explicit(deps, got, memory_order_relaxed);
        if ((uint32_t)got == nodes[t].nslots) ready[(*n_ready)++] = t;
    }
    if (gin != gin_small) mem_free(gin);
    if (gout != gout_small) {
        mem_free(gout);
        mem_free(needed);
    }
    return rc;
}

static void record_failure(sched *s, uint32_t i)
{
    while (atomic_flag_test_and_set_explicit(&s->err_lock, memory_order_acquire)) ;
    if (!atomic_load(&s->failed) || i < atomic_load_explicit(&s->err_node, memory_order_relaxed)) {
        err_capture(&s->err);
        atomic_store_explicit(&s->err_node, i, memory_order_relaxed);
        atomic_store(&s->failed, true);
    }
    atomic_flag_clear_explicit(&s->err_lock, memory_order_release);
}

/* Runs node i and then, depth-first, every node it makes ready. In the parallel mode, before
 * a costly node runs, the rest of this thread's stack becomes tasks of the team. `ready`
 * scratch is sized for the node with the most edges. Made twice (run_from_plain,
 * run_from_general), with `plain` a constant: see execute. */
static void run_from_general(sched *s, uint32_t first);

static void spawn(sched *s, uint32_t i)
{
#pragma omp task default(none) firstprivate(s, i)
    run_from_general(s, i);
}

static inline __attribute__((always_inline)) void run_from_impl(sched *s, uint32_t first,
                                                                bool plain)
{
    uint32_t stack_small[64], *stack = stack_small, cap = 64, sp = 0;
    uint32_t ready_small[16], *ready = ready_small, rcap = 16;
    bool prev_mode = grad_mode_set(s->create_graph);
    bool prev_serial = par_set_serial(s->parallel);
    uint32_t popped = 0;
    uint32_t next = first; /* the node that runs next, if not NONE: it skips the stack */
    while (next != NONE || sp) {
        uint32_t i = next != NONE ? next : stack[--sp];
        next = NONE;
        node *fn = s->nodes[i].fn;
        popped++;
        if (execute_leaf(s, i, plain)) continue;
        if (!plain && s->parallel && s->nodes[i].heavy && sp) {
            /* Work first: a costly node runs here, on the thread that made its gradient
             * (still in this core's cache), and what waited under it on this stack is
             * handed to the team. Handing the costly node over instead (as this did before)
             * had another core fetch its inputs: in `wide`, TanhBackward ran 2.4x slower at
             * 2 threads than at 1, and backward scaled 1.62x instead of ~1.8x. */
            for (uint32_t k = 0; k < sp; k++) spawn(s, stack[k]);
            sp = 0;
        }
        if (fn->n_next > rcap) {
            uint32_t *r = mem_alloc(fn->n_next * sizeof *r);
            if (!r) {
                err_nomem();
                record_failure(s, i);
                /* Without scratch we cannot count successors down; the pass is failing
                 * anyway, and cleanup releases whatever is left in the slots. */
                continue;
            }
            if (ready != ready_small) mem_free(ready);
            ready = r;
            rcap = fn->n_next;
        }
        int nr;
        if (execute(s, i, ready, &nr, plain)) record_failure(s, i);
        /* The ready nodes would be pushed in order and the last popped first: those at the
         * end that execute_leaf takes (a scalar graph's leaves, three of every seven nodes)
         * are taken now, in the order they would be popped, without the round trip through
         * the stack. The first it refuses stays last and is popped next, as it would be. */
        while (nr && execute_leaf(s, ready[nr - 1], plain)) {
            nr--;
            popped++;
        }
        /* The last ready node runs next (pushed last, it would be popped first: it skips the
         * stack), the others wait on the stack: for a node with an input chain and a side
         * branch (s = s + f(x)), the side branch's few nodes run while the chain's next node,
         * prefetched below, arrives from memory. */
        if (nr) next = ready[--nr];
        for (int k = 0; k < nr; k++) {
            uint32_t r = ready[k];
            if (sp == cap) {
                uint32_t *ns = mem_alloc(2 * cap * sizeof *ns);
                if (!ns) {
                    if (!plain && s->parallel) {
                        spawn(s, r);
                        continue;
                    }
                    err_nomem();
                    record_failure(s, r);
                    continue;
                }
                memcpy(ns, stack, cap * sizeof *ns);
                if (stack != stack_small) mem_free(stack);
                stack = ns;
                cap *= 2;
            }
            stack[sp++] = r;
            /* Usually run much later (below every node pushed after it): start fetching. */
            node_prefetch(s->nodes[r].fn);
        }
    }
    if (!s->parallel) s->n_run += popped;
    grad_mode_set(prev_mode);
    par_set_serial(prev_serial);
    if (stack != stack_small) mem_free(stack);
    if (ready != ready_small) mem_free(ready);
}

static void run_from_general(sched *s, uint32_t first) { run_from_impl(s, first, false); }
static void run_from_plain(sched *s, uint32_t first) { run_from_impl(s, first, true); }

/* ---- commit ---------------------------------------------------------------------------------- */
/* g, a gradient about to be handed to the user, as PyTorch hands it: if it is a view of a
 * tensor nothing else holds (the transpose of a weight's product, say), a plain tensor on the
 * same memory instead, as PyTorch's AccumulateGrad keeps new_grad.detach(). A view made during
 * backward counts as made under no_grad, and in-place ops with operands that require grad
 * would then refuse it. Takes g's reference; g itself if it is not such a view, or if the
 * alias cannot be made (it is still the right value). */
static tensor *unview_private_slow(tensor *g)
{
    if (g->grad_fn || g->base->grad_fn || atomic_load(&g->refs) != 1 ||
        atomic_load(&g->base->refs) != 1 || storage_users(g->st) != 2)
        return g;
    err_saved before;
    err_capture(&before);
    tensor *a = tensor_alias(g, g->shape, g->strides, g->ndim, g->offset);
    if (!a) {
        err_restore(&before); /* (no failure to report: the thread's last one stays) */
        return g;
    }
    tensor_release(g);
    return a;
}

/* (A tensor that is no view, the common case, needs no call.) */
static inline tensor *unview_private(tensor *g) { return g->base ? unview_private_slow(g) : g; }

/* A gradient handed to the user (a .grad set from none, an ag_grad result) that nobody else
 * can see (it has `holders` references: one, or one for each time ag_grad was given the same
 * input) starts at version 0, as a new tensor does. During the pass it may have taken
 * contributions in place (accumulate_into), or not, depending on whether another node still
 * held it at that moment, which in a parallel pass is a matter of timing: its version
 * counter would then depend on the thread count, though its values do not. */
static tensor *fresh_version_held(tensor *g, long holders)
{
    if (atomic_load_explicit(&g->st->version, memory_order_relaxed) != 0 &&
        atomic_load(&g->refs) == holders && storage_users(g->st) == 1 && !g->grad_fn) {
        /* Something wrote it (a hook, in place): a ZeroTensor mark no longer holds, and
         * version 0 would make tensor_is_zeros trust it again. */
        g->zeros = 0;
        atomic_store_explicit(&g->st->version, 0, memory_order_relaxed); /* (nobody else sees it) */
    }
    return g;
}
static tensor *fresh_version(tensor *g) { return fresh_version_held(g, 1); }

/* PyTorch's gradient layout contract: a leaf's .grad has the leaf's strides where the leaf
 * is dense (those of size-1 dimensions aside, unless 0), and is contiguous otherwise. */
static bool obeys_layout(const tensor *g, const tensor *var)
{
    if (g->ndim == 0) return true; /* (0-d: scalar graphs, the common case by count) */
    if (!tensor_is_dense(var)) return tensor_is_contiguous(g);
    for (int d = 0; d < g->ndim; d++)
        if (g->shape[d] != 1 ? g->strides[d] != var->strides[d] : g->strides[d] == 0)
            return false;
    return true;
}

/* The copy of g a leaf (var) gets as its .grad: laid out by the contract above, made as
 * PyTorch's clone_obeying_layout_contract makes it. For a dense leaf that is an empty tensor
 * with the leaf's strides and copy_ into it: under create_graph its grad_fn is CopyBackwards,
 * and its version 1, as PyTorch's. Otherwise a contiguous clone (CloneBackward0, version
 * 0). */
static eng_err clone_obeying(tensor **out, tensor *g, const tensor *var)
{
    if (!tensor_is_dense(var)) return op_clone_contiguous(out, g);
    tensor *c = tensor_new_strided((dtype)g->dtype, g->shape, g->ndim, var->strides);
    if (!c) return err_kind();
    eng_err e = op_copy_(c, g);
    if (e) {
        tensor_release(c);
        return e;
    }
    *out = c;
    return E_OK;
}

/* Whether the gradient g may become the .grad of the leaf var as it is: nobody else can see
 * it (PyTorch's AccumulateGrad rule) and it is laid out as the contract says; otherwise the
 * leaf gets a copy (clone_obeying), so that later in-place accumulation cannot leak into
 * others. */
static inline __attribute__((always_inline)) bool grad_is_private(const tensor *g,
                                                                   const tensor *var)
{
    return atomic_load(&g->refs) == 1 && !g->grad_fn && obeys_layout(g, var) &&
           (storage_users(g->st) == 1 ||
            /* a contiguous view whose base only this view still holds, such as the transpose
             * of a transposed product (TBackward0 of a weight) */
            (g->base && atomic_load(&g->base->refs) == 1 && storage_users(g->st) == 2 &&
             !g->base->grad_fn));
}

/* A private gradient g (grad_is_private) as the new .grad of the leaf whose meta m is,
 * taking g's reference. A 0-d leaf made with room for it gets a copy in its own block, where
 * release finds it beside the leaf (tensor_grad_in_leaf); else g itself. PyTorch keeps
 * new_grad.detach(): a tensor that requires grad (a leaf a hook returned) is kept as a plain
 * tensor on its memory. NULL (g untouched) for want of memory. m is locked. */
static tensor *grad_take_private(tmeta *m, tensor *g)
{
    tensor *in_leaf = tensor_grad_in_leaf(m, g);
    if (in_leaf) {
        tensor_release(g);
        return in_leaf;
    }
    if (__builtin_expect(tensor_requires_grad(g), 0)) {
        tensor *d = tensor_alias(g, g->shape, g->strides, g->ndim, g->offset);
        if (!d) return NULL;
        tensor_release(g);
        g = d;
    }
    return fresh_version(unview_private(g));
}

/* Adds g into the .grad of the leaf var (meta m), whatever it holds now. Takes g's
 * reference. */
static eng_err accumulate_leaf(tmeta *m, const tensor *var, tensor *g, bool create_graph)
{
    eng_err rc = E_OK;
    tmeta_lock(m);
    if (!m->grad) {
        if (!create_graph && grad_is_private(g, var)) {
            tensor *kept = grad_take_private(m, g);
            if (kept) {
                m->grad = kept;
                g = NULL;
            } else {
                rc = err_kind();
            }
        } else {
            tensor *c = NULL;
            rc = clone_obeying(&c, g, var);
            if (!rc) m->grad = c;
        }
    } else if (!create_graph) {
        rc = op_binary_(m->grad, g, IP_ADD);
    } else {
        tensor *sum = NULL;
        rc = op_add(&sum, m->grad, g);
        if (!rc) {
            tensor_release(m->grad);
            m->grad = sum;
        }
    }
    tmeta_unlock(m);
    tensor_release(g);
    return rc;
}

/* Commit writes every .grad or none (ag_backward's promise): a failure part-way (a .grad the
 * user set that cannot take an in-place addition, a copy that finds no memory) undoes what
 * was written. Writes that cannot be undone exactly, the in-place additions into existing
 * .grad tensors, are checked as they come and made only once everything else succeeded. What
 * the undo needs: a flag in the gnode for a .grad set from none (the common case, kept
 * cheap), and a journal entry, with the value it replaced, for every other replacement. */
typedef struct journal_entry {
    tmeta *m;
    tensor *old; /* .grad before (a reference), or NULL */
} journal_entry;

typedef struct journal {
    journal_entry *v;
    uint32_t n, cap;
} journal;

/* Sets m's .grad to value (a new tensor, whose reference it takes), recording the value it
 * replaces; m is locked. Fails (writing nothing, value released) only for want of memory. */
static eng_err journal_replace(journal *jl, tmeta *m, tensor *value)
{
    if (!grow((void **)&jl->v, &jl->cap, jl->n + 1, sizeof *jl->v)) {
        tensor_release(value);
        return err_nomem();
    }
    jl->v[jl->n++] = (journal_entry){m, m->grad};
    m->grad = value;
    return E_OK;
}

/* Gnode i's leaf gradient r (in its first slot), first step: set .grad if it has none,
 * replace it with the sum under create_graph, or check the in-place addition and defer it. */
static eng_err commit_leaf(sched *s, uint32_t i, journal *jl, uint32_t *deferred)
{
    gnode *g = &s->nodes[i];
    tensor *r = s->cgrad[g->slot0];
    tmeta *m = node_leaf_meta(g->fn);
    eng_err e = E_OK;
    tmeta_lock(m);
    tensor *cur = m->grad;
    if (!cur && g->prepared) {
        /* (made for this: a fresh 0-d tensor in the leaf's block, which nobody else holds) */
        m->grad = r;
        s->cgrad[g->slot0] = NULL;
        g->grad_set = true;
    } else if (!cur) {
        if (!s->create_graph && grad_is_private(r, g->fn->variable)) {
            tensor *kept = grad_take_private(m, r);
            if (kept) {
                m->grad = kept;
                s->cgrad[g->slot0] = NULL;
            } else {
                e = err_kind(); /* (r stays in its slot: cleanup releases it) */
            }
        } else {
            /* (on failure r stays in its slot: cleanup releases it) */
            e = clone_obeying(&m->grad, r, g->fn->variable);
            if (!e) {
                tensor_release(r);
                s->cgrad[g->slot0] = NULL;
            }
        }
        g->grad_set = !e;
    } else if (!s->create_graph) {
        e = op_binary_check(cur, r, IP_ADD);
        if (!e) {
            g->grad_deferred = true;
            (*deferred)++;
        } else if (e != E_NOMEM) {
            /* Say where: a .grad the user set cannot take the accumulation. */
            char msg[400], sh[160];
            snprintf(msg, sizeof msg, "%s", err_message());
            e = err_set(e, "cannot accumulate into the .grad (shape %s) of a leaf: %s",
                        fmt_shape(sh, sizeof sh, cur->shape, cur->ndim), msg);
        }
    } else {
        tensor *sum = NULL;
        e = op_add(&sum, cur, r);
        if (!e) e = journal_replace(jl, m, sum);
        if (!e) {
            tensor_release(r);
            s->cgrad[g->slot0] = NULL;
        }
    }
    tmeta_unlock(m);
    return e;
}

/* The gradients node i's outputs retain, into every tensor that is that output and retains
 * its gradient in this history (usually one), among those attached when the node ran. */
static eng_err commit_retained(sched *s, uint32_t i, retained_out *ret, journal *jl)
{
    node *fn = s->nodes[i].fn;
    for (int p = 0; p < fn->n_out; p++) {
        tensor *r = ret[p].grad; /* (released by cleanup) */
        if (!r) continue;
        const meta_link *end = link_next(ret[p].last);
        for (const meta_link *l = node_links(fn, p); l != end; l = link_next(l)) {
            tmeta *m = l->m;
            if (!__atomic_load_n(&m->retains_grad, __ATOMIC_ACQUIRE) || meta_hist(m) != l->hist)
                continue;
            tmeta_lock(m);
            if (!__atomic_load_n(&m->retains_grad, __ATOMIC_ACQUIRE)) { /* its tensor died */
                tmeta_unlock(m);
                continue;
            }
            tensor *value = NULL;
            /* (a contiguous copy, as PyTorch's retain_grad makes) */
            eng_err e = m->grad ? op_add(&value, m->grad, r) : op_clone_contiguous(&value, r);
            if (!e) e = journal_replace(jl, m, value);
            tmeta_unlock(m);
            if (e) return e;
        }
    }
    return E_OK;
}

/* Undoes the writes of the first `upto` gnodes of commit's walk (`order`, or all gnodes if
 * NULL): .grad set from none goes back to none, replaced values come back, newest first. */
static void commit_undo(sched *s, const uint32_t *order, uint32_t upto, journal *jl)
{
    for (uint32_t k = jl->n; k-- > 0;) {
        tmeta *m = jl->v[k].m;
        tmeta_lock(m);
        tensor *x = m->grad;
        m->grad = jl->v[k].old;
        tmeta_unlock(m);
        tensor_release(x);
    }
    jl->n = 0;
    for (uint32_t k = 0; k < upto; k++) {
        gnode *g = &s->nodes[order ? order[k] : k];
        if (!g->grad_set) continue;
        tmeta *m = node_leaf_meta(g->fn);
        tmeta_lock(m);
        tensor *x = m->grad;
        m->grad = NULL;
        tmeta_unlock(m);
        tensor_release(x);
    }
}

static eng_err commit(sched *s)
{
    bool prev = grad_mode_set(s->create_graph);
    eng_err rc = E_OK;
    retained_out **retained = atomic_load_explicit(&s->retained, memory_order_relaxed);
    journal jl = {0};
    /* The walk, in discovery order: with retained gradients every gnode, else only the
     * AccumulateGrad ones (after a successful run only they hold a gradient in their first
     * slot), listed by discovery: a scalar graph has four other nodes for every three. */
    const uint32_t *order = retained ? NULL : s->leaves;
    const uint32_t m = order ? s->n_leaves : s->n;
    uint32_t deferred = 0, k;
    for (k = 0; k < m && !rc; k++) {
        /* A few leaves ahead, fetch the gradients and the metas they will be stored in. */
        if (k + COMMIT_AHEAD < m) {
            const gnode *a = &s->nodes[order ? order[k + COMMIT_AHEAD] : k + COMMIT_AHEAD];
            if (a->prepared) {
                __builtin_prefetch(node_leaf_meta(a->fn), 1);
            } else if (s->cgrad[a->slot0]) {
                tensor_leaf_prefetch(node_leaf_meta(a->fn));
                __builtin_prefetch(s->cgrad[a->slot0], 1);
            }
        }
        uint32_t i = order ? order[k] : k;
        if (s->cgrad[s->nodes[i].slot0]) rc = commit_leaf(s, i, &jl, &deferred);
        if (!rc && retained && retained[i]) rc = commit_retained(s, i, retained[i], &jl);
    }
    if (rc) {
        /* (the gradients left in the slots: cleanup releases them) */
        commit_undo(s, order, k, &jl);
    } else {
        /* The in-place additions, checked above. (They can fail now only if another thread
         * changed that .grad meanwhile.) */
        for (k = 0; deferred && k < m; k++) {
            gnode *g = &s->nodes[order ? order[k] : k];
            if (!g->grad_deferred) continue;
            deferred--;
            tensor *r = s->cgrad[g->slot0];
            s->cgrad[g->slot0] = NULL;
            eng_err e = accumulate_leaf(node_leaf_meta(g->fn), g->fn->variable, r,
                                        s->create_graph);
            if (e && !rc) rc = e;
        }
        for (uint32_t j = 0; j < jl.n; j++) tensor_release(jl.v[j].old);
    }
    mem_free(jl.v);
    grad_mode_set(prev);
    return rc;
}

/* ---- the pass -------------------------------------------------------------------------------- */
static eng_err root_gradient(sched *s, int r, tensor *root, tensor *given)
{
    if (given) {
        if (!shapes_equal(given, root)) {
            char a[160], b[160];
            return err_set(E_SHAPE,
                           "Mismatch in shape: grad_output[%d] has a shape of %s and output[%d] "
                           "has a shape of %s.",
                           r, fmt_shape(a, sizeof a, given->shape, given->ndim), r,
                           fmt_shape(b, sizeof b, root->shape, root->ndim));
        }
        if (given->dtype != root->dtype) {
            /* Cast to the root's dtype, as PyTorch's engine casts every gradient it is given
             * (recorded under create_graph, as its validate_outputs' cast is). */
            bool prev = grad_mode_set(s->create_graph);
            eng_err e = op_to_dtype(&s->root_grad[r], given, (dtype)root->dtype);
            grad_mode_set(prev);
            return e;
        }
        tensor_retain(given);
        s->root_grad[r] = given;
        return E_OK;
    }
    if (root->numel != 1)
        return err_set(E_SHAPE, "grad can be implicitly created only for scalar outputs");
    return op_full_like(&s->root_grad[r], root, 1.0);
}

/* Gives back the claims of nodes that did not run, releases what the slots still hold and
 * frees the pass's arrays. After a successful serial pass that accumulated, with no retained
 * gradients (s->tidy), every node ran (a node runs once all its producers sent, even nothing,
 * and only a failure stops a producer), so run_begin gave its claim back; every slot was
 * emptied by the node it fed, and commit emptied the AccumulateGrad nodes' slots: the walks
 * over every node and every slot would find nothing to do. */
static void cleanup(sched *s)
{
    retained_out **retained = atomic_load_explicit(&s->retained, memory_order_relaxed);
    for (uint32_t i = 0; !s->tidy && i < s->n; i++) {
        gnode *g = &s->nodes[i];
        retained_out *ret = retained ? retained[i] : NULL;
        if (ret) {
            for (int p = 0; p < g->fn->n_out; p++) tensor_release(ret[p].grad);
            mem_free(ret);
        }
        if (!g->ran) {
            uint64_t mine = s->id;
            atomic_compare_exchange_strong(&g->fn->sched_owner, &mine, 0);
        }
    }
    if (s->cgrad && !s->tidy)
        for (uint32_t k = 0; k < s->n_slots; k++) tensor_release(s->cgrad[k]);
    for (int r = 0; s->root_grad && r < s->n_roots; r++) tensor_release(s->root_grad[r]);
    for (int k = 0; s->cap_node && k < s->n_inputs; k++) node_release(s->cap_node[k]);
    /* Node references last: releasing may free nodes we indexed. */
    /* The work arrays stay with the thread for its next pass. */
    mem_scratch_give(SCRATCH_SCHED_NODES, s->nodes, (size_t)s->cap * sizeof(gnode));
    mem_scratch_give(SCRATCH_SCHED_EDGES, s->edges, (size_t)s->edge_cap * sizeof(gedge));
    mem_scratch_give(SCRATCH_SCHED_LEAVES, s->leaves, (size_t)s->leaf_cap * sizeof(uint32_t));
    mem_scratch_give(SCRATCH_SCHED_GRADS, s->cgrad, (size_t)s->cgrad_cap * sizeof(tensor *));
    mem_scratch_give(SCRATCH_SCHED_POS, s->cpos, (size_t)s->cpos_cap * sizeof(uint32_t));
    mem_free(s->foreign);
    mem_free(s->foreign_idx);
    mem_free(s->root_target);
    mem_free(s->root_pos);
    mem_free(s->root_local);
    mem_free(s->root_grad);
    mem_free(s->cap_target);
    mem_free(s->cap_pos);
    mem_free(s->cap_node);
    mem_free(retained);
}

/* Two ways to use the team: run independent costly nodes at once (each kernel on one
 * thread), or run nodes one after another with every kernel split across the team. Nested
 * splitting (a taskloop inside a task) idles threads: a thread waiting for its taskloop may
 * only run that taskloop's chunks, not the other ready nodes. So pick per pass: node-level
 * parallelism when the costly work is spread over enough independent branches, that is when
 * total costly work is at least 1.5 x threads times the critical path's share of it (32
 * independent heads: ~32; an MLP's chain: ~1). One pass over the index arrays, in
 * topological order (Kahn), costs far less than the work it decides on. */
static bool wide_enough(sched *s, int nt)
{
    uint32_t n = s->n, head = 0, tail = 0;
    int *deps = mem_alloc((size_t)n * sizeof *deps);
    uint32_t *queue = mem_alloc((size_t)n * sizeof *queue);
    int64_t *path = mem_calloc((size_t)n * sizeof *path);
    bool wide = false;
    if (deps && queue && path) {
        for (uint32_t i = 0; i < n; i++) deps[i] = (int)s->nodes[i].nslots;
        for (int r = 0; r < s->n_roots; r++)
            if (--deps[s->root_target[r]] == 0) queue[tail++] = s->root_target[r];
        int64_t total = 0, critical = 0;
        while (head < tail) {
            uint32_t i = queue[head++];
            gnode *g = &s->nodes[i];
            int64_t c = g->runs && g->heavy ? g->fn->elems : 0, here = path[i] + c;
            total += c;
            if (here > critical) critical = here;
            if (!g->needed) continue;
            for (uint32_t e = 0; e < g->fn->n_next; e++) {
                uint32_t t = s->edges[g->edge0 + e].target;
                if (t == NONE) continue;
                if (here > path[t]) path[t] = here;
                if (--deps[t] == 0) queue[tail++] = t;
            }
        }
        wide = critical > 0 && 2 * total >= 3 * (int64_t)nt * critical;
    }
    mem_free(deps);
    mem_free(queue);
    mem_free(path);
    return wide;
}

static eng_err prepare(sched *s, const bwd_request *r, node **root_nodes)
{
    for (int k = 0; k < r->n_roots; k++) {
        tensor *root = r->roots[k];
        if (!tensor_requires_grad(root))
            return err_set(E_NOGRAD,
                           "element %d of tensors does not require grad and does not have a "
                           "grad_fn", k);
        edge ed;
        eng_err e = gradient_edge(root, &ed);
        if (e) return e;
        root_nodes[k] = ed.fn; /* held until cleanup */
        s->root_pos[k] = ed.input_nr;
        /* A view made under no_grad of a tensor that requires grad reports requires_grad but
         * has no edge: nothing to differentiate, as in PyTorch. */
        if (!ed.fn)
            return err_set(E_NOGRAD,
                           "element %d of tensors does not require grad and does not have a "
                           "grad_fn", k);
        if ((e = root_gradient(s, k, root, r->root_grads ? r->root_grads[k] : NULL))) return e;
    }
    for (int k = 0; k < r->n_inputs; k++) {
        tensor *in = r->inputs[k];
        if (!tensor_requires_grad(in))
            return err_set(E_NOGRAD, "One of the differentiated Tensors does not require grad");
        edge ed;
        eng_err e = gradient_edge(in, &ed);
        if (e) return e;
        s->cap_node[k] = ed.fn;
        s->cap_pos[k] = ed.input_nr;
    }
    for (int k = 0; k < r->n_roots; k++) {
        uint32_t idx = lookup(s, root_nodes[k]);
        bool fresh = idx == NONE;
        if (fresh && (idx = add_root(s, root_nodes[k])) == NONE) return err_nomem();
        s->root_target[k] = idx;
        s->root_local[k] = s->nodes[idx].nslots++;
        if (fresh) {
            eng_err e = discover(s, idx);
            if (e) return e;
        }
    }
    for (int k = 0; k < r->n_inputs; k++) {
        /* An input without an edge (a no_grad view, as above) is not in the graph. */
        s->cap_target[k] = s->cap_node[k] ? lookup(s, s->cap_node[k]) : NONE;
        if (s->cap_target[k] == NONE && !r->allow_unused)
            return err_set(E_NOGRAD,
                           "One of the differentiated Tensors appears to not have been used in "
                           "the graph. Set allow_unused=True if this is the desired behavior.");
    }
    if (!s->accumulate) {
        /* autograd.grad: prune, then check what will run, and count the costly nodes among
         * it. */
        mark_needed(s);
        s->heavy = 0;
        for (uint32_t i = 0; i < s->n; i++) {
            gnode *g = &s->nodes[i];
            if (!g->runs || g->fn->variable) continue;
            s->heavy += g->heavy;
            eng_err e = saved_check(g->fn);
            if (e) return e;
        }
    }
    eng_err e = number_slots(s);
    if (e) return e;
    int nt = par_num_threads();
    s->parallel = !s->caller_thread && s->heavy >= 2 && nt > 1 && wide_enough(s, nt);
    return E_OK;
}

static eng_err backward_pass(const bwd_request *r)
{
    sched s;
    memset(&s, 0, sizeof s);
    s.id = atomic_fetch_add(&next_pass_id, 1);
    pass_enter(&s);
    s.n_roots = r->n_roots;
    s.n_inputs = r->n_inputs;
    s.accumulate = r->n_inputs == 0;
    s.create_graph = r->create_graph;
    s.retain_graph = r->retain_graph || (r->create_graph && !r->free_graph);
    s.anomaly = anomaly_mode_enabled();
    atomic_flag_clear(&s.err_lock);
    atomic_init(&s.failed, false);
    atomic_init(&s.err_node, 0);
    atomic_init(&s.retained, NULL);
    size_t bytes;
    s.nodes = mem_scratch_take(SCRATCH_SCHED_NODES, &bytes);
    s.cap = (uint32_t)(bytes / sizeof(gnode));
    s.edges = mem_scratch_take(SCRATCH_SCHED_EDGES, &bytes);
    s.edge_cap = (uint32_t)(bytes / sizeof(gedge));
    s.leaves = mem_scratch_take(SCRATCH_SCHED_LEAVES, &bytes);
    s.leaf_cap = (uint32_t)(bytes / sizeof(uint32_t));
    s.cgrad = mem_scratch_take(SCRATCH_SCHED_GRADS, &bytes);
    s.cgrad_cap = (uint32_t)(bytes / sizeof(tensor *));
    s.cpos = mem_scratch_take(SCRATCH_SCHED_POS, &bytes);
    s.cpos_cap = (uint32_t)(bytes / sizeof(uint32_t));

    node *root_nodes_small[4] = {0}, **root_nodes = root_nodes_small;
    int nr = r->n_roots, ni = r->n_inputs;
    s.root_target = mem_alloc((size_t)nr * sizeof(uint32_t));
    s.root_pos = mem_alloc((size_t)nr * sizeof(uint32_t));
    s.root_local = mem_alloc((size_t)nr * sizeof(uint32_t));
    s.root_grad = mem_calloc((size_t)nr * sizeof(tensor *));
    if (nr > 4) root_nodes = mem_calloc((size_t)nr * sizeof(node *));
    if (ni) {
        s.cap_target = mem_alloc((size_t)ni * sizeof(uint32_t));
        s.cap_pos = mem_alloc((size_t)ni * sizeof(uint32_t));
        s.cap_node = mem_calloc((size_t)ni * sizeof(node *));
        s.captured = mem_calloc((size_t)ni * sizeof(tensor *));
    }
    eng_err rc;
    if (!s.root_target || !s.root_pos || !s.root_local || !s.root_grad || !root_nodes ||
        (ni && (!s.cap_target || !s.cap_pos || !s.cap_node || !s.captured))) {
        rc = err_nomem();
        goto done;
    }
    rc = prepare(&s, r, root_nodes);
    mem_walk_enable(s.n >= BIG_GRAPH);
    pass_discovered(&s);
    if (rc) goto done;

    /* Ready at the start: nodes whose only contributions are root gradients. */
    uint32_t *start = mem_alloc((size_t)nr * sizeof *start);
    int n_start = 0;
    if (!start) {
        rc = err_nomem();
        goto done;
    }
    for (int k = 0; k < nr; k++) {
        uint32_t t = s.root_target[k];
        if ((uint32_t)atomic_fetch_add(&s.nodes[t].deps, 1) + 1 == s.nodes[t].nslots)
            start[n_start++] = t;
    }
    if (s.parallel) {
        int nt = par_num_threads();
        par_team_begins();
#pragma omp parallel num_threads(nt) default(none) shared(s, start, n_start)
#pragma omp single
        for (int k = 0; k < n_start; k++) spawn(&s, start[k]);
    } else {
        /* The commonest pass gets the run made for it (see execute). */
        bool plain = s.accumulate && !s.create_graph && !s.anomaly;
        for (int k = 0; k < n_start; k++)
            if (plain) run_from_plain(&s, start[k]);
            else run_from_general(&s, start[k]);
    }
    mem_free(start);
    if (atomic_load(&s.failed)) {
        rc = err_restore(&s.err);
        goto done;
    }
    /* (autograd.grad commits only retained gradients: its pass leaves no gradient in an
     * AccumulateGrad node's slot) */
    if (s.accumulate || atomic_load_explicit(&s.retained, memory_order_relaxed)) rc = commit(&s);
    s.tidy = !rc && s.accumulate && !s.parallel && s.n_run == s.n &&
             !atomic_load_explicit(&s.retained, memory_order_relaxed);
    if (!rc && !s.accumulate) {
        for (int k = 0; k < ni; k++) {
            /* (An input named several times gets one gradient, held once for each.) */
            long holders = 0;
            for (int j = 0; j < ni; j++) holders += s.captured[j] && s.captured[j] == s.captured[k];
            r->captured[k] = !s.captured[k]   ? NULL
                             : holders == 1 ? fresh_version(unview_private(s.captured[k]))
                                            : fresh_version_held(s.captured[k], holders);
        }
        for (int k = 0; k < ni; k++) s.captured[k] = NULL;
    }
done:
    if (s.captured)
        for (int k = 0; k < ni; k++) tensor_release(s.captured[k]);
    mem_free(s.captured);
    {
        /* Keep the root nodes alive until after cleanup has reset their scratch. */
        cleanup(&s);
        pass_leave(&s);
        for (int k = 0; k < nr && root_nodes; k++) node_release(root_nodes[k]);
        if (root_nodes != root_nodes_small) mem_free(root_nodes);
    }
    return rc;
}

eng_err run_backward(const bwd_request *r)
{
    /* The forward's queued kernels run first, as one batch (their independent kernels side by
     * side), and the formulas run eagerly: they run where the pass's scheduler puts them. */
    defer_flush_queued();
    bool prev = defer_suspend(true);
    eng_err rc = backward_pass(r);
    defer_suspend(prev);
    return rc;
}
