/*
 * alloc.c: the library's single allocation point. The allocator is process-wide by design
 * (like libgit2's git_allocator): stored as one immutable struct swapped atomically.
 */
#include "alloc.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct allocator {
    void *(*alloc)(size_t, void *);
    void (*free_)(void *, void *);
    void *ud;
} allocator;

static void *std_alloc(size_t n, void *ud) { (void)ud; return malloc(n); }
static void std_free(void *p, void *ud) { (void)ud; free(p); }

static const allocator std_allocator = {std_alloc, std_free, NULL};
/* Two slots so a swap never frees a struct another thread may be reading. */
static allocator custom_slots[2];
static atomic_int custom_next;
static _Atomic(const allocator *) current = &std_allocator;

void mem_set_allocator(void *(*alloc)(size_t, void *), void (*free_)(void *, void *), void *ud)
{
    if (!alloc || !free_) {
        atomic_store(&current, &std_allocator);
        return;
    }
    int slot = atomic_fetch_add(&custom_next, 1) & 1;
    custom_slots[slot].alloc = alloc;
    custom_slots[slot].free_ = free_;
    custom_slots[slot].ud = ud;
    atomic_store(&current, &custom_slots[slot]);
}

void *mem_alloc(size_t size)
{
    const allocator *a = atomic_load_explicit(&current, memory_order_acquire);
    return a->alloc(size ? size : 1, a->ud);
}

void *mem_calloc(size_t size)
{
    void *p = mem_alloc(size);
    if (p) memset(p, 0, size);
    return p;
}

void mem_free(void *p)
{
    if (!p) return;
    const allocator *a = atomic_load_explicit(&current, memory_order_acquire);
    a->free_(p, a->ud);
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
