/*
 * alloc.c: the library's single allocation point. The allocator is process-wide by design
 * (like libgit2's git_allocator). Small blocks from the default allocator are recycled through
 * per-thread free stacks: a graph allocates and frees hundreds of thousands of headers and
 * nodes in bulk, a pattern on which glibc's malloc spends ~280 instructions a pair. Fresh
 * small blocks are carved in allocation order from regions backed by transparent huge pages
 * where the system allows them (see carve).
 */
#include "alloc.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif
#if defined(__SANITIZE_ADDRESS__)
#define AG_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define AG_ASAN 1
#endif
#endif
#ifndef AG_ASAN
#define AG_ASAN 0
#endif

typedef struct allocator {
    void *(*alloc)(size_t, void *);
    void (*free_)(void *, void *);
    void *ud;
} allocator;

static void *std_alloc(size_t n, void *ud) { (void)ud; return malloc(n); }
static void std_free(void *p, void *ud) { (void)ud; free(p); }

static const allocator std_allocator = {std_alloc, std_free, NULL};
/* Every block names the allocator that made it (block_hdr.owner), so it goes back to that one
 * even after ag_set_allocator switched to another. So allocator records are never freed: each
 * distinct (alloc, free, userdata) gets one, on a list (which keeps it reachable for leak
 * checkers); installing the same triple again reuses its record. */
typedef struct allocator_rec {
    allocator a;
    struct allocator_rec *next;
} allocator_rec;
static allocator_rec *custom_list;
static pthread_mutex_t custom_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic(const allocator *) current = &std_allocator;

bool mem_set_allocator(void *(*alloc)(size_t, void *), void (*free_)(void *, void *), void *ud)
{
    if (!alloc || !free_) {
        atomic_store(&current, &std_allocator);
        return true;
    }
    pthread_mutex_lock(&custom_lock);
    allocator_rec *r = custom_list;
    while (r && (r->a.alloc != alloc || r->a.free_ != free_ || r->a.ud != ud)) r = r->next;
    if (!r && (r = malloc(sizeof *r))) {
        r->a = (allocator){alloc, free_, ud};
        r->next = custom_list;
        custom_list = r;
    }
    pthread_mutex_unlock(&custom_lock);
    if (!r) return false;
    atomic_store(&current, &r->a);
    return true;
}

/* ---- block header and per-thread pools ------------------------------------------------ */
/* Every block starts with 16 bytes naming its allocator and, for pooled blocks, its class. */
typedef struct block_hdr {
    const allocator *owner;
    uint32_t cls; /* < POOL_CLASSES: pooled; LARGE: cacheable; NOT_POOLED */
    uint32_t pad; /* LARGE: the block's size in pages; pooled: CARVED or 0 (malloc'd);
                     NOT_POOLED: how far the header is from the allocation's start */
} block_hdr;
#define CARVED 1u
_Static_assert(sizeof(block_hdr) == 16 && sizeof(block_hdr) == MEM_BLOCK_HEADER,
               "block header keeps 16-byte alignment (and mem_prefetch_block knows it)");

#define POOL_CLASSES 18
#define NOT_POOLED 0xffffffffu
#define LARGE 0xfffffffeu /* default allocator, >= LARGE_MIN bytes: cacheable */

/* Large blocks (gradients, activations, GEMM packing buffers) come back with the same sizes
 * every training step; handing them to glibc returns them to the kernel, and every step then
 * pays page faults on fresh zeroed pages (a quarter of an MLP step, measured). A few are kept
 * per thread, bounded in count and bytes, so peak memory does not grow with step count. */
#define LARGE_MIN (64u << 10)
#define LARGE_SLOTS 256
#define LARGE_BYTES ((size_t)128 << 20)
#define PAGE 4096u
/* 16-byte steps up to 256 bytes, where tensor headers and nodes fall: a scalar graph's
 * objects (152, 176, 208 bytes) wasted 16-48 bytes each in the coarser classes, ~10% of the
 * memory a large graph walks through. 480, not 448: a 0-d leaf made with its meta and room
 * for its .grad (tensor_new_scalar_leaf) is 480 bytes, which took 512 (scalar-sweep at
 * 20 000 triples, four alternated pairs: 1-5% less time). */
static const size_t class_size[POOL_CLASSES] = {48,  64,  80,  96,  112, 128, 144, 160, 176,
                                                192, 208, 224, 240, 256, 320, 384, 480, 512};

/* Scratch buffers kept per thread (mem_scratch_take); freed when the thread exits. */
#define SCRATCH_SLOTS 8

typedef struct scratch {
    block_hdr *h; /* the block's start (so leak checkers see it as reachable) */
    size_t cap;
} scratch;

typedef struct large_slot {
    block_hdr *h;
    size_t cap;     /* usable bytes */
    const void *by; /* the thread that gave it back (thread_tag's address) */
} large_slot;

/* Names the calling thread by the address of its copy (a hint: an exited thread's address
 * may come back for a new one). */
static _Thread_local char thread_tag;

/* A class's free blocks, as an array rather than a list threaded through the blocks: popping
 * from a list reads the block it hands out, and in a graph of 20 000 scalar triples those
 * blocks are long out of cache, so every allocation waited for one miss after another. From
 * an array, the blocks about to be handed out are known in advance and fetched while the
 * caller works (see mem_alloc). */
typedef struct freestack {
    block_hdr **v; /* top at n - 1 */
    uint32_t n, cap;
    uint32_t sorted; /* v[0, sorted) is in address order, lowest on top (see restack) */
    uint32_t keep;   /* blocks kept at most (see KEEP_SLACK), saturating */
    uint32_t lim;    /* mem_free pushes without the slow path while n < lim (<= cap) */
} freestack;
/* 32 bytes: the fast paths find a class's stack with one shift (or a table of offsets) and
 * two stacks share a line; what only restack needs is kept apart (pool.span). */
_Static_assert(sizeof(freestack) == 32, "a free stack is 32 bytes");

/* A thread keeps at most as many free blocks of a class as it carved plus KEEP_SLACK; a free
 * beyond that gives ORPHAN_BATCH blocks to the shared list, which threads whose stacks are
 * empty draw from (ORPHAN_BATCH at a time). Without the bound, a thread that frees what
 * another allocates (a consumer of a producer's tensors) kept every block while its producer
 * carved new ones: memory grew without end (35 MB per round of 200 000 0-d tensors,
 * measured). Only carving counts: blocks taken from the list do not raise the bound, or a
 * long-lived producer that later turned consumer would hoard again. A thread that frees
 * what it allocated never reaches the bound, so nothing changes for it. */
#define KEEP_SLACK 1024u
#define ORPHAN_BATCH 256u

/* How many allocations ahead a block is prefetched. */
#define PREFETCH_AHEAD 4

static void freestack_set_lim(freestack *f)
{
    uint64_t k = (uint64_t)f->keep + ORPHAN_BATCH;
    f->lim = k < f->cap ? (uint32_t)k : f->cap;
}

/* Doubles a free stack (with malloc: the pool's own bookkeeping is not pooled). */
static bool freestack_grow(freestack *f)
{
    uint32_t nc = f->cap ? 2 * f->cap : 256;
    block_hdr **v = realloc(f->v, (size_t)nc * sizeof *v);
    if (!v) return false;
    f->v = v;
    f->cap = nc;
    freestack_set_lim(f);
    return true;
}

/* The stack's thread carved (or malloc'd) one more block of its class. */
static void freestack_carved(freestack *f)
{
    if (f->keep < UINT32_MAX) f->keep++;
    freestack_set_lim(f);
}

/* The unused end of the region a thread carves from. */
typedef struct cursor {
    char *next, *end;
} cursor;

typedef struct pool {
    freestack fs[POOL_CLASSES]; /* first: mem_alloc finds them by offset from the pool */
    uintptr_t span[POOL_CLASSES][2]; /* the highest and lowest block at a class's last restack */
    cursor cur;
    bool carved_before; /* the thread has had a region: the next ones are huge pages */
    scratch sc[SCRATCH_SLOTS];
    mem_recent recent;        /* mem_recent_ring points here */
    struct pool *prev, *next; /* every live thread's pool, so leak checkers can reach them */
} pool;
_Static_assert(offsetof(pool, fs) == 0, "mem_alloc finds the stacks by offset");

static _Thread_local pool *tls_pool __attribute__((tls_model("initial-exec")));
_Thread_local mem_recent *mem_recent_ring __attribute__((tls_model("initial-exec")));
static pthread_key_t pool_key;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static pool *all_pools;
static pthread_mutex_t all_pools_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- regions: where fresh small blocks come from ---------------------------------------
 * A thread carves the blocks it needs one after another from a region of its own, so the
 * objects of one graph lie together in the order they were made, and backward, walking the
 * graph, meets them in nearly the reverse order. Regions after a thread's first are 2 MiB
 * and aligned, and asked for transparent huge pages (madvise): a graph of 20 000 scalar
 * triples spans ~60 MB, and with 4 KiB pages nearly every node visited missed the TLB (the
 * scalar workload ran ~25% slower). The first region is small so that small programs stay
 * small.
 *
 * Carved blocks never go back to the system: blocks freed by a thread without a pool, an
 * exiting thread's blocks and a thread's surplus (see KEEP_SLACK) go to a shared list per
 * class that allocating threads draw from, and the rest of an exiting thread's region is
 * kept for the next thread. A thread carves only when its own array and the shared list are
 * both empty, that is when every free block of the class sits in another thread's array,
 * within that thread's bound (see KEEP_SLACK): so each thread carves at most the peak of
 * blocks live at once plus the other threads' slack, and memory held is bounded by the
 * number of threads times that peak (two threads trading blocks settle at ~2x).
 *
 * Under AddressSanitizer and valgrind every fresh block is malloc'd instead, so that their
 * leak checkers and bounds checks see each block as its own allocation. */
#define REGION_FIRST ((size_t)256 << 10)
#define REGION_HUGE ((size_t)2 << 20)
#define SPARE_SLOTS 64

static struct {
    pthread_mutex_t lock;
    block_hdr *orphans[POOL_CLASSES]; /* chains (see orphan_chain) */
    atomic_uint n_orphans[POOL_CLASSES]; /* blocks in them (a hint read without the lock) */
    cursor spare[SPARE_SLOTS];        /* unused ends of exited threads' regions */
    int n_spare;
} shared = {.lock = PTHREAD_MUTEX_INITIALIZER};

bool mem_carving(void)
{
    static atomic_int allowed = -1; /* decided once: valgrind is there from the start or never */
    int a = atomic_load_explicit(&allowed, memory_order_relaxed);
    if (a < 0) {
        a = !AG_ASAN && !RUNNING_ON_VALGRIND;
        atomic_store_explicit(&allowed, a, memory_order_relaxed);
    }
    return a;
}

/* A new region of `size` bytes; huge-page aligned and advised when size is REGION_HUGE. */
static char *region_map(size_t size)
{
    if (size < REGION_HUGE) {
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return p == MAP_FAILED ? NULL : p;
    }
    char *p = mmap(NULL, size + REGION_HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    if (p == MAP_FAILED) return NULL;
    char *a = (char *)(((uintptr_t)p + REGION_HUGE - 1) & ~(uintptr_t)(REGION_HUGE - 1));
    if (a > p) munmap(p, (size_t)(a - p));
    munmap(a + size, (size_t)(p + REGION_HUGE - a)); /* the tail: never empty */
#ifdef MADV_HUGEPAGE
    madvise(a, size, MADV_HUGEPAGE); /* a hint: without it the region still works */
#endif
    return a;
}

/* The shared list of a class is a list of chains of blocks: the blocks of a chain are
 * linked through their first word, and the chain's first block holds this in its payload
 * (every class has at least 48 bytes). Pushing or taking a chain under the lock touches one
 * block, not every block of it: the chains are built and walked outside the lock. */
typedef struct orphan_chain {
    block_hdr *next_chain;
    uint32_t count;
} orphan_chain;
_Static_assert(sizeof(orphan_chain) <= 48, "fits the smallest class");

static orphan_chain *chain_of(block_hdr *head) { return (orphan_chain *)(head + 1); }

/* Pushes the chain head..(count blocks, linked) of class c; the lock is held. */
static void orphan_push_chain_locked(int c, block_hdr *head, uint32_t count)
{
    chain_of(head)->next_chain = shared.orphans[c];
    chain_of(head)->count = count;
    shared.orphans[c] = head;
    atomic_fetch_add_explicit(&shared.n_orphans[c], count, memory_order_relaxed);
}

static void orphan_push_locked(block_hdr *h)
{
    *(block_hdr **)h = NULL;
    orphan_push_chain_locked((int)h->cls, h, 1);
}

/* A carved block that no free stack will take goes to the shared list. */
static void orphan_push(block_hdr *h)
{
    pthread_mutex_lock(&shared.lock);
    orphan_push_locked(h);
    pthread_mutex_unlock(&shared.lock);
}

/* Moves chains of class c's shared list, ORPHAN_BATCH blocks or a little more, to this
 * thread's (empty) stack, grown beforehand so nothing can fail half-way. True if any came.
 * Taken blocks do not raise the stack's bound (see KEEP_SLACK). */
static bool orphans_take(pool *pl, int c)
{
    if (!atomic_load_explicit(&shared.n_orphans[c], memory_order_relaxed)) return false;
    freestack *f = &pl->fs[c];
    /* chains hold at most ORPHAN_BATCH blocks: room for the batch and one more chain */
    while (f->cap - f->n < 2 * ORPHAN_BATCH)
        if (!freestack_grow(f)) return false;
    block_hdr *first = NULL, *last = NULL;
    uint32_t taken = 0;
    pthread_mutex_lock(&shared.lock);
    while (shared.orphans[c] && taken < ORPHAN_BATCH) {
        block_hdr *head = shared.orphans[c];
        shared.orphans[c] = chain_of(head)->next_chain;
        taken += chain_of(head)->count;
        chain_of(head)->next_chain = NULL;
        if (last) chain_of(last)->next_chain = head;
        else first = head;
        last = head;
    }
    atomic_fetch_sub_explicit(&shared.n_orphans[c], taken, memory_order_relaxed);
    pthread_mutex_unlock(&shared.lock);
    for (block_hdr *head = first; head;) {
        block_hdr *next_chain = chain_of(head)->next_chain;
        for (block_hdr *h = head, *next; h; h = next) {
            next = *(block_hdr **)h;
            h->owner = &std_allocator; /* (the link was written over it) */
            f->v[f->n++] = h;
        }
        head = next_chain;
    }
    return f->n > 0;
}

/* Gives ORPHAN_BATCH blocks from the top of class c's free stack to the shared list (see
 * KEEP_SLACK), as one chain linked before the lock is taken; malloc'd blocks (sanitizer
 * builds) go back to malloc. */
static void give_surplus(freestack *f, int c)
{
    block_hdr *head = NULL;
    uint32_t count = 0;
    for (uint32_t k = 0; k < ORPHAN_BATCH && f->n; k++) {
        block_hdr *h = f->v[--f->n];
        if (h->pad != CARVED) {
            free(h);
            continue;
        }
        *(block_hdr **)h = head;
        head = h;
        count++;
    }
    if (f->n < f->sorted) f->sorted = f->n;
    if (!head) return;
    pthread_mutex_lock(&shared.lock);
    orphan_push_chain_locked(c, head, count);
    pthread_mutex_unlock(&shared.lock);
}

static atomic_size_t carved_bytes; /* mem_carved_bytes */

size_t mem_carved_bytes(void) { return atomic_load_explicit(&carved_bytes, memory_order_relaxed); }

/* A fresh block of class c from this thread's region (NULL if no region can be had). */
static block_hdr *carve(pool *pl, int c)
{
    size_t need = sizeof(block_hdr) + class_size[c];
    if ((size_t)(pl->cur.end - pl->cur.next) < need) {
        cursor fresh = {NULL, NULL};
        pthread_mutex_lock(&shared.lock);
        if (shared.n_spare) fresh = shared.spare[--shared.n_spare];
        pthread_mutex_unlock(&shared.lock);
        if (!fresh.next) {
            size_t size = pl->carved_before ? REGION_HUGE : REGION_FIRST;
            fresh.next = region_map(size);
            if (!fresh.next) return NULL;
            fresh.end = fresh.next + size;
            pl->carved_before = true;
        }
        pl->cur = fresh; /* what was left of the old one (< one block) is given up */
    }
    block_hdr *h = (block_hdr *)pl->cur.next;
    pl->cur.next += need;
    atomic_fetch_add_explicit(&carved_bytes, need, memory_order_relaxed);
    h->cls = (uint32_t)c;
    h->pad = CARVED;
    return h;
}

static void pool_drain(void *p)
{
    pool *pl = p;
    tls_pool = NULL; /* later frees on this exiting thread bypass the pool */
    mem_recent_ring = NULL;
    for (int k = 0; k < SCRATCH_SLOTS; k++)
        if (pl->sc[k].h) mem_free(pl->sc[k].h + 1);
    pthread_mutex_lock(&shared.lock);
    for (int c = 0; c < POOL_CLASSES; c++) {
        for (uint32_t k = 0; k < pl->fs[c].n; k++) {
            block_hdr *h = pl->fs[c].v[k];
            if (h->pad == CARVED) orphan_push_locked(h);
            else free(h);
        }
    }
    if (pl->cur.end - pl->cur.next >= (ptrdiff_t)PAGE && shared.n_spare < SPARE_SLOTS)
        shared.spare[shared.n_spare++] = pl->cur;
    pthread_mutex_unlock(&shared.lock);
    for (int c = 0; c < POOL_CLASSES; c++) free(pl->fs[c].v);
    pthread_mutex_lock(&all_pools_lock);
    if (pl->prev) pl->prev->next = pl->next;
    else all_pools = pl->next;
    if (pl->next) pl->next->prev = pl->prev;
    pthread_mutex_unlock(&all_pools_lock);
    free(pl);
}

static void pool_key_init(void) { pthread_key_create(&pool_key, pool_drain); }

/* This thread's pool, created on first use (NULL if that fails: then nothing is pooled). */
static pool *my_pool(void)
{
    pool *pl = tls_pool;
    if (pl) return pl;
    pl = calloc(1, sizeof *pl);
    if (!pl) return NULL;
    for (int c = 0; c < POOL_CLASSES; c++) pl->fs[c].keep = KEEP_SLACK;
    pthread_once(&pool_once, pool_key_init);
    pthread_setspecific(pool_key, pl);
    pthread_mutex_lock(&all_pools_lock);
    pl->next = all_pools;
    if (all_pools) all_pools->prev = pl;
    all_pools = pl;
    pthread_mutex_unlock(&all_pools_lock);
    tls_pool = pl;
    mem_recent_ring = &pl->recent;
    return pl;
}

/* Class of a request, by 16-byte steps (a table instead of a search: this runs on every
 * allocation). */
static const int8_t class_by_16[33] = {0,  0,  0,  0,  1,  2,  3,  4,  5,  6,  7,
                                       8,  9,  10, 11, 12, 13, 14, 14, 14, 14, 15,
                                       15, 15, 15, 16, 16, 16, 16, 16, 16, 17, 17};

/* The same, as the offset of the class's free stack in a pool (mem_alloc's fast path). */
#define FS(c) (uint16_t)((c) * sizeof(freestack))
static const uint16_t fs_by_16[33] = {
    FS(0),  FS(0),  FS(0),  FS(0),  FS(1),  FS(2),  FS(3),  FS(4),  FS(5),  FS(6),  FS(7),
    FS(8),  FS(9),  FS(10), FS(11), FS(12), FS(13), FS(14), FS(14), FS(14), FS(14), FS(15),
    FS(15), FS(15), FS(15), FS(16), FS(16), FS(16), FS(16), FS(16), FS(16), FS(17), FS(17)};
#undef FS

static int class_of(size_t n)
{
    return n <= 512 ? class_by_16[(n + 15) >> 4] : -1;
}

void *mem_scratch_take(int slot, size_t *cap)
{
    *cap = 0;
    if (!tls_pool) return NULL;
    scratch *sc = &tls_pool->sc[slot];
    if (!sc->h) return NULL;
    void *p = sc->h + 1;
    *cap = sc->cap;
    sc->h = NULL;
    return p;
}

void mem_scratch_give(int slot, void *p, size_t cap)
{
    if (!p) return;
    /* Only the default allocator's blocks are kept: a custom allocator sees every block
     * come back (tests count them). */
    const allocator *a = atomic_load_explicit(&current, memory_order_acquire);
    pool *pl = a == &std_allocator ? my_pool() : NULL;
    if (!pl || ((block_hdr *)p - 1)->owner != &std_allocator) {
        mem_free(p);
        return;
    }
    scratch *sc = &pl->sc[slot];
    if (sc->h && sc->cap >= cap) {
        mem_free(p);
        return;
    }
    if (sc->h) mem_free(sc->h + 1);
    sc->h = (block_hdr *)p - 1;
    sc->cap = cap;
}

/* The large-block cache is process-wide: a gradient allocated on one thread is often freed
 * on another (backward tasks), and per-thread caches would fill on one side and miss on the
 * other. Large allocations are rare enough for a mutex. */
static struct {
    pthread_mutex_t lock;
    large_slot slot[LARGE_SLOTS];
    size_t bytes;
} large_cache = {PTHREAD_MUTEX_INITIALIZER, {{0}}, 0};

/* The smallest cached block that fits without wasting more than half of it, among those
 * this thread gave back if any fits. Its lines may still be in this core's cache; a block
 * the other core wrote last is fetched from there line by line as it is overwritten: in
 * `wide` at 2 threads, where backward branches free on both threads, taking any block made
 * TanhBackward twice as slow and backward ~8% slower. */
/* Large blocks handed out, in bytes (ag_memory_in_use: a binding's collector paces itself by
 * it). Large allocations are rare: one atomic each costs nothing measurable. */
static atomic_size_t large_in_use;

size_t mem_large_in_use(void) { return atomic_load_explicit(&large_in_use, memory_order_relaxed); }

static block_hdr *large_take(size_t size)
{
    pthread_mutex_lock(&large_cache.lock);
    large_slot *sl = large_cache.slot;
    int best = -1;
    bool mine = false;
    for (int k = 0; k < LARGE_SLOTS; k++) {
        size_t cap = sl[k].cap;
        if (!sl[k].h || cap < size || cap / 2 > size) continue;
        bool m = sl[k].by == &thread_tag;
        if (best < 0 || (m && !mine) || (m == mine && cap < sl[best].cap)) {
            best = k;
            mine = m;
        }
    }
    block_hdr *h = NULL;
    if (best >= 0) {
        h = sl[best].h;
        large_cache.bytes -= sl[best].cap;
        sl[best].h = NULL;
    }
    pthread_mutex_unlock(&large_cache.lock);
    return h;
}

static void large_give(block_hdr *h, size_t cap)
{
    if (cap > LARGE_BYTES) {
        free(h);
        return;
    }
    block_hdr *evicted[LARGE_SLOTS];
    int ne = 0;
    pthread_mutex_lock(&large_cache.lock);
    large_slot *sl = large_cache.slot;
    /* Make room: evict blocks (largest first) until this one fits the byte budget. */
    while (large_cache.bytes + cap > LARGE_BYTES) {
        int big = -1;
        for (int k = 0; k < LARGE_SLOTS; k++)
            if (sl[k].h && (big < 0 || sl[k].cap > sl[big].cap)) big = k;
        evicted[ne++] = sl[big].h;
        large_cache.bytes -= sl[big].cap;
        sl[big].h = NULL;
    }
    int slot = -1;
    for (int k = 0; k < LARGE_SLOTS && slot < 0; k++)
        if (!sl[k].h) slot = k;
    if (slot < 0) {
        /* every slot taken: replace the smallest */
        slot = 0;
        for (int k = 1; k < LARGE_SLOTS; k++)
            if (sl[k].cap < sl[slot].cap) slot = k;
        evicted[ne++] = sl[slot].h;
        large_cache.bytes -= sl[slot].cap;
    }
    sl[slot].h = h;
    sl[slot].cap = cap;
    sl[slot].by = &thread_tag;
    large_cache.bytes += cap;
    pthread_mutex_unlock(&large_cache.lock);
    for (int k = 0; k < ne; k++) free(evicted[k]);
}

/* ---- address order ----------------------------------------------------------------------
 * A stack hands blocks out in the reverse of the order they came back. A graph's blocks come
 * back in the order backward and the program release them, not the order they were made, and
 * each graph built from them inherits that permutation and adds its own: after twenty builds
 * of the scalar workload its objects lay scattered and a node cost 60% more than on the
 * first build (the objects of one step no longer shared lines and pages). So when a stack has
 * taken back many blocks since it was last ordered, it is put in address order before it
 * hands one out: the next graph is then laid out as the first one was, carved in order.
 * Triggered only when the unordered part is at least a quarter of the stack, so each block
 * is sorted a bounded number of times per trip; a radix sort, linear in the blocks, skipped
 * when the stack is in order already (blocks freed from the highest down). */
#define RESTACK_MIN 4096u
#define RADIX_BITS 11
#define RADIX (1u << RADIX_BITS)
#define RADIX_PASSES 6 /* 6 x 11 + KEY_SHIFT bits: any two addresses */
#define KEY_SHIFT 8

/* The digits for keys below `range`: as few passes of at most RADIX_BITS bits as cover it,
 * the bits spread evenly among them. */
static void radix_layout(uintptr_t range, int *passes, int *dbits)
{
    int bits = 1;
    while (bits < 64 && (range >> bits)) bits++;
    *passes = (bits + RADIX_BITS - 1) / RADIX_BITS;
    *dbits = (bits + *passes - 1) / *passes;
}

/* The keys are the distance below the highest block in 256-byte units (blocks sharing a
 * span are left in any order: the lines and pages are what matter); ascending keys put the
 * highest address at the bottom and the lowest on top. A stack's blocks are the same ones
 * trip after trip, so the range they span is taken from the last restack (span): then one
 * pass over the array finds the range, the ascents and the digits' counts at once, where a
 * pass to find the range had to come before the counting (bench/count: the scalar workload
 * went from 2206 to 2172 instructions per node). If a block falls outside the guessed range
 * its digits were counted wrong (masked, so never out of bounds), and they are counted again
 * from the range just found. */
__attribute__((noinline)) static void restack(freestack *f, uintptr_t span[2])
{
    uint32_t n = f->n;
    f->sorted = n; /* also when the sort cannot run: retried after the next RESTACK_MIN frees */
    uint32_t *count = malloc(sizeof(uint32_t) * RADIX * RADIX_PASSES);
    if (!count) return;
    block_hdr **v = f->v;
    uintptr_t top = span[0], hi = 0, lo = UINTPTR_MAX, prev = UINTPTR_MAX;
    uint32_t ascents = 0; /* 0: already in order (blocks freed from the top down) */
    int passes, dbits;
    radix_layout((top - span[1]) >> KEY_SHIFT, &passes, &dbits); /* (a fresh pool: 0 - 0) */
    bool guessed = passes <= 2;
    uintptr_t mask = ((uintptr_t)1 << dbits) - 1;
    if (guessed) {
        memset(count, 0, sizeof(uint32_t) * RADIX * 2);
        uint32_t *c1 = count + RADIX;
        for (uint32_t k = 0; k < n; k++) {
            uintptr_t a = (uintptr_t)v[k], key = (top - a) >> KEY_SHIFT;
            ascents += (a >> KEY_SHIFT) > (prev >> KEY_SHIFT);
            prev = a;
            hi = a > hi ? a : hi;
            lo = a < lo ? a : lo;
            count[key & mask]++;
            c1[(key >> dbits) & mask]++;
        }
    } else {
        for (uint32_t k = 0; k < n; k++) {
            uintptr_t a = (uintptr_t)v[k];
            ascents += (a >> KEY_SHIFT) > (prev >> KEY_SHIFT);
            prev = a;
            hi = a > hi ? a : hi;
            lo = a < lo ? a : lo;
        }
    }
    bool fits = guessed && hi <= top && lo >= span[1];
    span[0] = hi;
    span[1] = lo;
    block_hdr **tmp = ascents ? malloc((size_t)n * sizeof *tmp) : NULL;
    if (!tmp) {
        free(count);
        return;
    }
    if (!fits) {
        top = hi;
        radix_layout((hi - lo) >> KEY_SHIFT, &passes, &dbits);
        mask = ((uintptr_t)1 << dbits) - 1;
        memset(count, 0, sizeof(uint32_t) * RADIX * RADIX_PASSES);
        for (uint32_t k = 0; k < n; k++) {
            uintptr_t key = (top - (uintptr_t)v[k]) >> KEY_SHIFT;
            for (int p = 0; p < passes; p++) count[p * RADIX + ((key >> (dbits * p)) & mask)]++;
        }
    }
    block_hdr **src = v, **dst = tmp;
    for (int p = 0; p < passes; p++) {
        uint32_t *c = count + p * RADIX, sum = 0;
        for (uint32_t d = 0; d <= mask; d++) {
            uint32_t x = c[d];
            c[d] = sum;
            sum += x;
        }
        for (uint32_t k = 0; k < n; k++) {
            uintptr_t key = (top - (uintptr_t)src[k]) >> KEY_SHIFT;
            dst[c[(key >> (dbits * p)) & mask]++] = src[k];
        }
        block_hdr **t = src;
        src = dst;
        dst = t;
    }
    if (src != v) memcpy(v, src, (size_t)n * sizeof *tmp);
    free(tmp);
    free(count);
}

/* Hands out the top block of the non-empty free array f. Its header is already right: a
 * block on a class's array has that class, and the default allocator as owner (pooled blocks
 * are only made for it; orphans_take restores the owner that linking orphans overwrote), so
 * the fast path stores nothing into the block it hands out. */
static inline void *freestack_pop(freestack *f)
{
    block_hdr *h = f->v[--f->n];
    if (f->n < f->sorted) f->sorted = f->n;
    if (f->n >= PREFETCH_AHEAD) {
        /* The block handed out PREFETCH_AHEAD allocations from now: its first lines (blocks
         * of the hot classes span up to four). */
        const char *next = (const char *)f->v[f->n - PREFETCH_AHEAD];
        __builtin_prefetch(next, 1);
        __builtin_prefetch(next + 64, 1);
        __builtin_prefetch(next + 128, 1);
        __builtin_prefetch(next + 192, 1);
    }
    return h + 1;
}

/* Everything but a pooled block from a free array that needs no ordering first. Kept out of
 * line, with restack, so that the fast path below saves and restores no registers: it runs
 * ~20 times per node of a scalar graph. */
__attribute__((noinline)) static void *mem_alloc_slow(size_t size, const allocator *a, pool *pl)
{
    if (!size) size = 1;
    if (size > SIZE_MAX - sizeof(block_hdr) - PAGE) return NULL;
    int c = a == &std_allocator ? class_of(size) : -1;
    if (c >= 0 && pl && pl->fs[c].n) {
        restack(&pl->fs[c], pl->span[c]); /* why the fast path declined */
        return freestack_pop(&pl->fs[c]);
    }
    block_hdr *h;
    if (c < 0 && a == &std_allocator && size >= LARGE_MIN) {
        size_t cap = (size + sizeof(block_hdr) + PAGE - 1) / PAGE * PAGE - sizeof(block_hdr);
        h = large_take(size);
        if (!h) {
            h = malloc(sizeof(block_hdr) + cap);
            if (!h) return NULL;
            h->pad = (uint32_t)((cap + sizeof(block_hdr)) / PAGE);
        }
        h->owner = a;
        h->cls = LARGE;
        atomic_fetch_add_explicit(&large_in_use, (size_t)h->pad * PAGE, memory_order_relaxed);
        return h + 1;
    }
    if (c >= 0 && (pl = my_pool())) {
        /* The pool's stack for this class is empty: blocks other threads gave up, else a
         * fresh block (pooled when freed). */
        if (orphans_take(pl, c)) return mem_alloc(size);
        h = mem_carving() ? carve(pl, c) : NULL;
        if (!h) {
            h = malloc(sizeof(block_hdr) + class_size[c]);
            if (!h) return NULL;
            h->cls = (uint32_t)c;
            h->pad = 0;
        }
        freestack_carved(&pl->fs[c]);
    } else {
        /* A custom allocator need not align as malloc does; the library's objects want 16
         * bytes (nodes are alignas(16)): its blocks are aligned here, and pad keeps how far
         * the header moved, for free. */
        size_t slack = a == &std_allocator ? 0 : 15;
        char *raw = a->alloc(sizeof(block_hdr) + size + slack, a->ud);
        if (!raw) return NULL;
        h = (block_hdr *)(raw + ((16 - ((uintptr_t)raw & 15)) & 15));
        h->cls = NOT_POOLED;
        h->pad = (uint32_t)((char *)h - raw);
    }
    h->owner = a;
    return h + 1;
}

void *mem_alloc(size_t size)
{
    const allocator *a = atomic_load_explicit(&current, memory_order_acquire);
    pool *pl = tls_pool;
    /* The fast path: a small block from this thread's pool, whose free array does not need
     * to be put in address order first (restack). */
    if (size - 1 < 512) {
        if (pl && a == &std_allocator) {
            freestack *f = (freestack *)((char *)pl + fs_by_16[(size + 15) >> 4]);
            uint32_t n = f->n, unsorted = n - f->sorted;
            if (n && (unsorted < RESTACK_MIN || unsorted < n / 4)) return freestack_pop(f);
        }
    }
    return mem_alloc_slow(size, a, pl);
}

void *mem_calloc(size_t size)
{
    void *p = mem_alloc(size);
    if (p) memset(p, 0, size);
    return p;
}

__attribute__((noinline)) static void mem_free_slow(block_hdr *h)
{
    if (h->cls < POOL_CLASSES) {
        pool *pl = tls_pool;
        freestack *f = pl ? &pl->fs[h->cls] : NULL;
        if (f && f->n >= (uint64_t)f->keep + ORPHAN_BATCH) give_surplus(f, (int)h->cls);
        if (f && (f->n < f->cap || freestack_grow(f))) {
            f->v[f->n++] = h;
            return;
        }
        /* A thread that never allocated from the pool, is exiting, or cannot grow its
         * stack: a carved block goes to the shared list, a malloc'd one back to malloc. */
        if (h->pad == CARVED) orphan_push(h);
        else free(h);
        return;
    }
    if (h->cls == LARGE) {
        atomic_fetch_sub_explicit(&large_in_use, (size_t)h->pad * PAGE, memory_order_relaxed);
        large_give(h, (size_t)h->pad * PAGE - sizeof(block_hdr));
        return;
    }
    h->owner->free_((char *)h - h->pad, h->owner->ud);
}

/* mem_walk: bytes fetched ahead of the walk's front; a step longer than WALK_GAP starts a
 * new walk; lines fetched per step at most (the front moves in jumps: the scalar workload's
 * breadth-first release moves it ~37 lines every fourth node). 32 KB was measured against 8,
 * 16, 24, 48 and 64 KB (docs/performance.md): 8 and 16 KB fell behind. */
#define WALK_AHEAD 32768
#define WALK_GAP 16384
#define WALK_LINES 64

void mem_walk(const void *p)
{
    mem_recent *r = mem_recent_ring;
    if (!r) return;
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)63, f = r->walk_edge;
    intptr_t d = (intptr_t)(a - r->walk_last);
    r->walk_last = a;
    if (d > WALK_GAP || d < -WALK_GAP) {
        r->walk_drift = 0;
        r->walk_edge = a;
        return;
    }
    intptr_t was = r->walk_drift;
    r->walk_drift = was + d - was / 32;
    if ((was ^ r->walk_drift) < 0) { /* the walk turned: its front starts here */
        r->walk_edge = a;
        return;
    }
    if (r->walk_drift < 0 && a < f) {
        /* the front moved down from f to a: [a - AHEAD, f - AHEAD) is new */
        uintptr_t n = (f - a) >> 6, q = f - WALK_AHEAD;
        if (n > WALK_LINES) n = WALK_LINES;
        for (uintptr_t k = 1; k <= n; k++) __builtin_prefetch((const void *)(q - 64 * k), 1);
        r->walk_edge = a;
    } else if (r->walk_drift > 0 && a > f) {
        uintptr_t n = (a - f) >> 6, q = f + WALK_AHEAD;
        if (n > WALK_LINES) n = WALK_LINES;
        for (uintptr_t k = 0; k < n; k++) __builtin_prefetch((const void *)(q + 64 * k), 1);
        r->walk_edge = a;
    }
}

void mem_free(void *p)
{
    if (!p) return;
    block_hdr *h = (block_hdr *)p - 1;
    pool *pl = tls_pool;
    if (h->cls < POOL_CLASSES && pl) {
        freestack *f = &pl->fs[h->cls];
        if (f->n < f->lim) {
            f->v[f->n++] = h;
            return;
        }
    }
    mem_free_slow(h);
}

/* The raw block's address is kept just before the aligned pointer. */
void *mem_alloc_aligned(size_t size, size_t align)
{
    if (size > SIZE_MAX - align - sizeof(void *)) return NULL;
    char *raw = mem_alloc(size + align + sizeof(void *));
    if (!raw) return NULL;
    uintptr_t p = ((uintptr_t)(raw + sizeof(void *)) + align - 1) & ~(uintptr_t)(align - 1);
    ((void **)p)[-1] = raw;
    return (void *)p;
}

void mem_free_aligned(void *p)
{
    if (p) mem_free(((void **)p)[-1]);
}
