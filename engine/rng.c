/*
 * rng.c: Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", 2011).
 */
#include "rng.h"

#include <string.h>

#include "alloc.h"

void philox(uint64_t seed, uint64_t ctr, uint32_t out[4])
{
    uint32_t c0 = (uint32_t)ctr, c1 = (uint32_t)(ctr >> 32), c2 = 0, c3 = 0;
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c1 = (uint32_t)p1;
        c3 = (uint32_t)p0;
        c0 = n0;
        c2 = n2;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

generator *generator_new(uint64_t seed)
{
    generator *g = mem_alloc(sizeof *g);
    if (!g) return NULL;
    atomic_init(&g->refs, 1);
    atomic_flag_clear(&g->lock);
    g->seed = seed;
    g->offset = 0;
    return g;
}

void generator_release(generator *g)
{
    if (g && atomic_fetch_sub(&g->refs, 1) == 1) mem_free(g);
}

static void lock(generator *g) { while (atomic_flag_test_and_set_explicit(&g->lock, memory_order_acquire)) ; }
static void unlock(generator *g) { atomic_flag_clear_explicit(&g->lock, memory_order_release); }

void generator_seed(generator *g, uint64_t seed)
{
    lock(g);
    g->seed = seed;
    g->offset = 0;
    unlock(g);
}

uint64_t generator_reserve(generator *g, uint64_t blocks, uint64_t *seed)
{
    lock(g);
    uint64_t base = g->offset;
    *seed = g->seed;
    g->offset += blocks;
    unlock(g);
    return base;
}

/* Per thread by design: a thread-local default, like a per-thread torch.manual_seed. Static
 * storage, so nothing leaks when the thread ends. */
static _Thread_local generator tls_gen;
static _Thread_local int tls_gen_ready;

generator *generator_default(void)
{
    if (!tls_gen_ready) {
        atomic_init(&tls_gen.refs, 1);
        atomic_flag_clear(&tls_gen.lock);
        tls_gen.seed = RNG_DEFAULT_SEED;
        tls_gen.offset = 0;
        tls_gen_ready = 1;
    }
    return &tls_gen;
}
