/*
 * rng.h: a counter-based generator (Philox4x32-10, as cuRAND and PyTorch's CUDA backend use).
 * A draw of n numbers reserves a range of counters, and element i is a pure function of
 * (seed, counter base, i): the numbers are the same whether one thread or sixteen fill them.
 */
#ifndef AG_RNG_H
#define AG_RNG_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct generator {
    atomic_long refs;
    atomic_flag lock;
    uint64_t seed;
    uint64_t offset; /* next unused 128-bit counter block */
} generator;

/** PyTorch's default seed (torch.initial_seed() in a fresh process). */
#define RNG_DEFAULT_SEED 67280421310721ull

generator *generator_new(uint64_t seed);
void generator_release(generator *g);
void generator_seed(generator *g, uint64_t seed);
/** The calling thread's default generator (never NULL; lives as long as the thread). */
generator *generator_default(void);
/** Reserves `blocks` counter blocks; returns the first, and the seed they belong to. */
uint64_t generator_reserve(generator *g, uint64_t blocks, uint64_t *seed);

/** Philox4x32-10 of counter block `ctr` under key `seed`: four 32-bit outputs. */
void philox(uint64_t seed, uint64_t ctr, uint32_t out[4]);

#endif
