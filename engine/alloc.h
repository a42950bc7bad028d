/*
 * alloc.h: every allocation of the library goes through here, so a caller can install its own
 * allocator (ag_set_allocator) and tests can inject failures at every allocation point.
 */
#ifndef AG_ALLOC_H
#define AG_ALLOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** malloc-like; returns NULL on failure (never aborts). */
void *mem_alloc(size_t size);
/** calloc-like (zeroed). */
void *mem_calloc(size_t size);
void mem_free(void *p);
/** Memory aligned to `align` (a power of two, at most 4096); free with mem_free_aligned. */
void *mem_alloc_aligned(size_t size, size_t align);
void mem_free_aligned(void *p);

/** Per-thread scratch buffers for work arrays reused from call to call (the backward
 *  scheduler's): take hands over the slot's buffer (NULL if none) and its capacity in bytes;
 *  give returns a buffer (mem_alloc'd), keeping the larger of it and the slot's. At most one
 *  buffer per slot is kept; all are freed when the thread exits. */
enum { SCRATCH_SCHED_NODES, SCRATCH_SCHED_EDGES, SCRATCH_SCHED_LEAVES, SCRATCH_SCHED_GRADS,
       SCRATCH_SCHED_POS, SCRATCH_SCHED_STACK };
void *mem_scratch_take(int slot, size_t *cap);
void mem_scratch_give(int slot, void *p, size_t cap);

/** The last MEM_RECENT graph nodes this thread made, in a ring (graph.h's node_header notes
 *  each): the hints that let backward's discovery, and a graph's release, fetch nodes
 *  before they reach them (node_hint). Part of the thread's pool, so it goes with the
 *  thread; NULL before the thread's first allocation and after its pool is gone. 64: the
 *  scalar workload's discovery at 20 000 triples took 1.96-2.22 ms per pass, against
 *  2.36-2.41 with 32 (three pairs; 128 was no better than 64). */
#define MEM_RECENT 64
typedef struct mem_recent {
    void *v[MEM_RECENT];
    unsigned pos;
    /* mem_walk's state: the last block noted, the walk's front (the farthest block it
     * reached, whose memory WALK_AHEAD beyond is fetched), its drift (about 32 steps' sum,
     * signed), and whether the thread's graph releases walk at all (mem_walk_enable) */
    uintptr_t walk_last, walk_edge;
    intptr_t walk_drift;
    bool walk_on;
} mem_recent;
/* (a pointer, not the ring: the library's thread-local storage stays small, see
 * tests/abi/check_tls.sh) */
extern _Thread_local mem_recent *mem_recent_ring __attribute__((tls_model("initial-exec")));

/** Notes that the calling thread has reached block p in a walk over a graph's memory (its
 *  release: each node drain destroys, each 0-d leaf that dies), and fetches the memory up to
 *  WALK_AHEAD bytes beyond the walk's front, in the direction it drifts, as the front moves.
 *  The pool lays a graph out in the order it was made and a release goes through it in
 *  about the reverse order, but hopping back and forth within a few KB (a breadth-first
 *  release destroys the chain's node three triples ahead of the branches' in the scalar
 *  workload): no hardware prefetcher followed that, and node_hint fetches one node per step,
 *  so in a graph larger than the caches the release waited for line after line (71 ns per
 *  node of the scalar workload at 20 000 triples, 46 MB; 31 with this). A hint: it computes
 *  addresses and prefetches them, which never faults. Callers walk only while
 *  mem_walk_enabled(): in a graph the caches hold, the same prefetches cost more than they
 *  saved (release 13 -> 21 ns/node at 500 triples). */
void mem_walk(const void *p);
/** Whether the calling thread's graph releases walk (mem_walk): backward turns it on for a
 *  graph too large for the caches, and off for one they hold (engine.c, BIG_GRAPH); a
 *  release usually follows its graph's backward on the same thread. */
static inline void mem_walk_enable(bool on)
{
    mem_recent *r = mem_recent_ring;
    if (r) r->walk_on = on;
}
static inline bool mem_walk_enabled(void)
{
    mem_recent *r = mem_recent_ring;
    return r && r->walk_on;
}

/** Bytes before each block mem_alloc hands out: its header (alloc.c's block_hdr). */
#define MEM_BLOCK_HEADER 16
/** Starts fetching `lines` cache lines of the block p from its header on (which freeing it
 *  reads; with 16-byte alignment it may lie on the line before p's). Asked for writing, but
 *  for the baseline x86-64 target gcc emits the same prefetcht0 as for reading. A hint: p
 *  may be stale, nothing is read. */
static inline void mem_prefetch_block(const void *p, int lines)
{
    const char *h = (const char *)p - MEM_BLOCK_HEADER;
    for (int k = 0; k < lines; k++) __builtin_prefetch(h + 64 * k, 1);
}

/** Whether fresh small blocks are carved from the pool's own regions (false under
 *  AddressSanitizer and valgrind, where each is malloc'd so their checkers see it). */
bool mem_carving(void);

/** Bytes of large blocks (>= 64 KiB, default allocator) handed out and not yet freed: the
 *  memory tensors' data and work buffers hold now, blocks kept for reuse not counted. */
size_t mem_large_in_use(void);

/** Bytes of small blocks carved from regions so far, all threads together: the memory the
 *  pools hold, since carved blocks are never returned (tests check it stays bounded). */
size_t mem_carved_bytes(void);

/** Installs alloc/free (NULL for both restores malloc/free). Blocks made before go back to
 *  the allocator that made them. False (nothing changed) if its record cannot be made. */
bool mem_set_allocator(void *(*alloc)(size_t, void *), void (*free_)(void *, void *), void *ud);

/** Alignment of tensor data: one AVX-512 vector / cache line. */
#define MEM_DATA_ALIGN 64

#endif
