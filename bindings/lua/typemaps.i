/*
 * lua/typemaps.i: how abi/autograd.h crosses into Lua 5.4. Included by bindings/autograd.i
 * when SWIG runs with -lua; every wrapper is generated from these rules, none is written by
 * hand. The rules:
 *  - Status: a nonzero `int` status raises a Lua error carrying ag_last_error(), read inside
 *    the wrapper right after the failing call; functions returning a plain int are listed.
 *  - Out-parameters become return values, in order; handles that come back are owned by the
 *    Lua object (a SWIG object with own = 1) and released by its __gc (the %extend
 *    destructors below), or, for tensors, by the sweep after the collection that finds the
 *    handle dead (see ag_lua_track). NULL handles come back as nil. The objects are made
 *    before the call and filled after it (ag_lua_reserve), so that a Lua memory error
 *    cannot strand a handle.
 *  - (pointer, count) inputs take Lua tables; integers are Lua integers both ways (SWIG's
 *    defaults push every number as a float, swig #1918: int64_t, uint64_t and size_t are
 *    matched by name, so SWIG writes them as they are); int flags also accept booleans.
 *  - Callbacks take Lua functions; the trampolines are in callbacks.c.
 * Dimensions and indices are 0-based here, as in C: the idiomatic layer (autograd.lua)
 * converts its 1-based ones.
 */

%{
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>
#include "callbacks.h"

/* Every error a wrapper raises also sets the calling thread's status and message, so that
 * ag.last_status() names the latest failure whichever side found it. A failure of the
 * library has set them already and is raised with `goto fail`; one found here (a wrong Lua
 * type, a bad count: its message on top of the Lua stack) reaches SWIG_fail, which records
 * it as AG_EINVAL, and running out of memory here as AG_ENOMEM. */
static void ag_lua_note_error(lua_State *L, int status)
{
    const char *msg = lua_tostring(L, -1);
    ag_set_error(status, msg ? msg : "invalid argument");
}
#undef SWIG_fail
#define SWIG_fail { ag_lua_note_error(L, AG_EINVAL); goto fail; }
#undef SWIG_fail_arg
#define SWIG_fail_arg(func_name, argnum, type)                                                  \
    { SWIG_Lua_pushferrstring(L, "Error in %s (arg %d), expected '%s' got '%s'", func_name,      \
                              argnum, type, SWIG_Lua_typename(L, argnum));                      \
      SWIG_fail; }
/* The objects of the handles a function returns are pushed before its arguments are read
 * (ag_lua_reserve), by typemaps that run before this check: each counts itself in SWIG_arg
 * (-1 each), which the check takes off the stack's size and then resets for the results. */
#undef SWIG_check_num_args
#define SWIG_check_num_args(func_name, a, b)                                                    \
    if (lua_gettop(L) + SWIG_arg < a || lua_gettop(L) + SWIG_arg > b) {                         \
        SWIG_Lua_pushferrstring(L, "Error in %s expected %d..%d args, got %d", func_name, a, b, \
                                lua_gettop(L) + SWIG_arg);                                      \
        SWIG_fail;                                                                              \
    }                                                                                           \
    SWIG_arg = 0;
#define AG_LUA_NOMEM { lua_pushstring(L, "out of memory"); ag_lua_note_error(L, AG_ENOMEM); goto fail; }

/* Pushes ag_last_error() for a failed call, without raising: `fail:` has arrays and
 * callbacks to free before the error is raised. If copying the message runs out of memory,
 * Lua's memory error is pushed instead. */
static int ag_lua_push_error_body(lua_State *L)
{
    lua_pushstring(L, ag_last_error());
    return 1;
}
static void ag_lua_push_error(lua_State *L)
{
    lua_pushcfunction(L, ag_lua_push_error_body);
    lua_pcall(L, 0, 1, 0);
}
%}

/* Reference counting is the garbage collector's job; a process-wide allocator cannot be
 * written in Lua; from_data/copy_data take raw buffers (from_f64/copy_f64/copy_i64 cover
 * them); ag_set_error is for C callbacks (the trampolines report Lua errors themselves). */
%ignore ag_tensor_retain;
%ignore ag_tensor_release;
%ignore ag_node_retain;
%ignore ag_node_release;
%ignore ag_optimizer_retain;
%ignore ag_optimizer_release;
%ignore ag_generator_release;
%ignore ag_allocator;
%ignore ag_set_allocator;
%ignore ag_tensor_from_data;
%ignore ag_tensor_copy_data;
%ignore ag_string_free;

/* ---------------------------------------------------------------------------------------- */
/* Helpers shared by the typemaps and callbacks.c                                             */
/* ---------------------------------------------------------------------------------------- */
%{
/* Reads Lua value idx as an integer: a Lua integer, a float with an integral value, or a
 * boolean (1/0). Returns 0 with a message pushed otherwise, naming a number given (a float
 * that lua_tointegerx refuses is either not integral or beyond the 64-bit integers). */
static int ag_lua_int(lua_State *L, int idx, lua_Integer *out, const char *fn)
{
    int ok = 0;
    if (lua_isboolean(L, idx)) {
        *out = lua_toboolean(L, idx);
        return 1;
    }
    *out = lua_tointegerx(L, idx, &ok);
    if (!ok && lua_type(L, idx) == LUA_TNUMBER) {
        lua_Number x = lua_tonumber(L, idx);
        lua_pushfstring(L, "%s: argument %d: expected an integer, got %f (%s)", fn, idx, x,
                        x >= 0x1p63 || x < -0x1p63 ? "beyond the 64-bit integers"
                                                   : "not integral");
    } else if (!ok) {
        lua_pushfstring(L, "%s: argument %d: expected an integer, got %s", fn, idx,
                        luaL_typename(L, idx));
    }
    return ok;
}
static int ag_lua_istable_or_nil(lua_State *L, int idx)
{
    return lua_istable(L, idx) || lua_isnil(L, idx);
}

/* ---- tensor handles: no finalizer each, one sweep per collection ----------------------
 * A scalar graph from Lua makes a tensor handle per operation. With a __gc on each, Lua keeps
 * every handle on its list of objects to finalize, walks that list each collection, and
 * frees a dead handle only one collection after calling its finalizer, in an order that
 * scatters its heap more each time: the `scalar` workload ran ~1900 ns/node from Lua, and
 * ~1060 with the same handles pushed without __gc (measured, with every tensor released
 * explicitly so that nothing leaked). So tensor handles have no __gc. Instead a tracker, one
 * per Lua state (in the registry), holds the tensor of each live handle in a slot, and a
 * table with weak values maps slot -> handle: the collector clears an entry when its handle
 * dies. One object, the sentinel, has a finalizer; it runs after each collection, releases
 * the tensors of the slots whose handle is gone, and re-arms itself. A dropped tensor is
 * thus released after the collection that found its handle dead, as a __gc would have been.
 *
 * Looking at every slot after every collection cost ~5% of a scalar graph (60 000 live leaves,
 * ~30 collections per graph). But a collection of the generational mode frees only objects
 * made during the last two cycles: older ones become old and wait for a major collection.
 * So the sentinel looks only at the slots pushed during the last two cycles. Old sentinels
 * look at every slot: each cycle makes one, which the tracker keeps reachable for two cycles,
 * until it is old itself; let go, it dies with the next major collection (in the incremental
 * mode, with the next cycle). One is always let go and waiting, so every major collection,
 * `collectgarbage()` included, releases every tensor whose handle it found dead.
 *
 * A handle the collector resurrects (reachable only from an object being finalized) is
 * cleared from weak values before that object's finalizer runs, so the sweep may release its
 * tensor while the handle can still be used: handles therefore name their slot and its
 * generation, which the sweep bumps, and a stale handle reads as released (an error, never a
 * freed tensor). When the state closes, the tracker's own finalizer releases every tensor
 * still held. */
typedef struct ag_lua_slot {
    ag_tensor *t;    /* NULL: free */
    size_t bytes;    /* what the collector's pacing was told t holds (ag_lua_gc_account) */
    uint32_t gen;    /* bumped each time the slot is emptied */
    uint32_t taken;  /* reserved for a handle (t still NULL until its call returns) or in use */
} ag_lua_slot;

/* Slots pushed during one cycle. */
typedef struct ag_lua_ids {
    uint32_t *v;
    uint32_t n, cap;
    int lost; /* an id could not be kept: the next sweep looks at every slot */
} ag_lua_ids;

typedef struct ag_lua_track {
    const void *magic;   /* &ag_lua_track_key: tells the tracker from other userdata */
    ag_lua_slot *slot;   /* NULL once the state closed */
    uint32_t *free_ids;  /* a stack of free slots; room for every slot, so pushing can't fail */
    uint32_t n, cap, nfree;
    ag_lua_ids young[2]; /* pushed during this cycle (young[cur]) and the one before */
    int cur;
    int swept_all;       /* an old sentinel looked at every slot since the last young sweep */
    int closed;          /* the state is closing: every tensor was released */
    size_t gc_live, gc_debt, gc_base; /* the collector's pacing (ag_lua_gc_account) */
    const void *weak;    /* the weak table's address (lua_topointer): ag_lua_up_track */
} ag_lua_track;

typedef struct ag_lua_tensor_ud {
    swig_lua_userdata u; /* what SWIG's functions read: type, own, ptr */
    ag_lua_track *track; /* lives as long as the state (its userdata is anchored) */
    uint32_t slot, gen;
} ag_lua_tensor_ud;

/* registry[&ag_lua_track_key] = the tracker (user values: 1 the weak table, 2 the sentinel's
 * metatable) */
static char ag_lua_track_key;

/* The tensor a tensor handle owns; NULL if it was released, swept or the state is closing. */
static ag_tensor *ag_lua_tensor_of(const ag_lua_tensor_ud *h)
{
    const ag_lua_track *tr = h->track;
    if (!h->u.ptr || !tr || tr->closed || tr->slot[h->slot].gen != h->gen) return NULL;
    return (ag_tensor *)h->u.ptr;
}

/* The tensor handle at idx (a SWIG object of ag_tensor), or NULL for anything else. The
 * hot paths (operators, release) read their tensors with it first and leave the rest, and
 * every message, to the general path. */
static ag_lua_tensor_ud *ag_lua_tensor_ud_at(lua_State *L, int idx)
{
    /* (rawlen: a full userdata's size, or a string's or table's length, whose touserdata
     * is NULL; 0 for a light userdata.) */
    if (lua_rawlen(L, idx) != sizeof(ag_lua_tensor_ud)) return NULL;
    ag_lua_tensor_ud *h = (ag_lua_tensor_ud *)lua_touserdata(L, idx);
    return h && h->u.type == SWIGTYPE_p_ag_tensor ? h : NULL;
}

/* The handle held by the SWIG object at idx, if it is one of `type`: 1 with *out set (NULL for
 * nil, or for a handle that was released or a callback context that has expired), else 0.
 * Faster than SWIG_ConvertPtr (a pointer comparison instead of a string one: handles cross
 * the boundary on every operation) and safe with foreign userdata, which SWIG would read as
 * its own. */
static int ag_lua_handle(lua_State *L, int idx, swig_type_info *type, void **out)
{
    if (lua_type(L, idx) == LUA_TUSERDATA) {
        swig_lua_userdata *u = (swig_lua_userdata *)lua_touserdata(L, idx);
        size_t len = lua_rawlen(L, idx);
        if (type == SWIGTYPE_p_ag_tensor) {
            if (len != sizeof(ag_lua_tensor_ud) || u->type != type) return 0;
            *out = ag_lua_tensor_of((const ag_lua_tensor_ud *)u);
            return 1;
        }
        if (len != sizeof *u || u->type != type) return 0;
        *out = u->ptr;
        return 1;
    }
    *out = NULL;
    return lua_isnoneornil(L, idx);
}
/* Pushes "fn: argument 2: expected ag_tensor, got ag_node" for the value at idx (__name of a
 * metatable, if any); argno is its place among fn's arguments. */
static void ag_lua_arg_error(lua_State *L, int idx, int argno, const char *fn,
                             const char *expected)
{
    const char *got = luaL_typename(L, idx);
    if (luaL_getmetafield(L, idx, "__name") == LUA_TSTRING) got = lua_tostring(L, -1);
    lua_pushfstring(L, "%s: argument %d: expected %s, got %s", fn, argno, expected, got);
}

/* A handle argument as the wrappers take it (the value at idx, argument argno of C function
 * fn): 1 with *out set (NULL for nil, which fn reports), or 0 with the message pushed when it
 * is not a `tname`, or one that was released or has expired. */
static int ag_lua_handle_arg(lua_State *L, int idx, int argno, swig_type_info *type,
                             const char *tname, const char *fn, void **out)
{
    if (type == SWIGTYPE_p_ag_tensor) { /* (a valid tensor: the commonest case) */
        ag_lua_tensor_ud *h = ag_lua_tensor_ud_at(L, idx);
        if (h && (*out = ag_lua_tensor_of(h))) return 1;
    }
    if (!ag_lua_handle(L, idx, type, out)) {
        ag_lua_arg_error(L, idx, argno, fn, tname);
        return 0;
    }
    if (!*out && !lua_isnoneornil(L, idx)) {
        lua_pushfstring(L, "%s: argument %d: this %s is no longer valid (released or expired)",
                        fn, argno, tname);
        return 0;
    }
    return 1;
}

/* A tensor at idx (borrowed), or NULL with an error message pushed. nil is not a tensor. */
static ag_tensor *ag_lua_check_tensor(lua_State *L, int idx, const char *what)
{
    void *p = NULL;
    if (ag_lua_handle(L, idx, SWIGTYPE_p_ag_tensor, &p)) {
        if (p) return (ag_tensor *)p;
        if (!lua_isnoneornil(L, idx)) {
            lua_pushfstring(L, "%s: this tensor is no longer valid (released)", what);
            return NULL;
        }
    }
    lua_pushfstring(L, "%s: expected a tensor, got %s", what, luaL_typename(L, idx));
    return NULL;
}

/* The C arrays made from Lua tables (tensors, integers, numbers) are Lua userdata left on
 * the stack until the wrapper returns, not malloc'd blocks: a memory error raised by a later
 * Lua call of the same wrapper (converting or reporting a bad argument) is a longjmp past
 * any cleanup, which would leak them. Made before any element is read, so the collection
 * their allocation may run cannot release a tensor already borrowed. */
static void *ag_lua_array(lua_State *L, size_t n, size_t elem)
{
    void *a = lua_newuserdatauv(L, (n ? n : 1) * elem, 0);
    memset(a, 0, (n ? n : 1) * elem);
    return a;
}

/* Reads the Lua array at idx (1..n) into a new C array of tensors (ag_lua_array). Returns 0
 * with a message pushed on a wrong element. *n_out receives the count; holes (nil) are
 * allowed only when allow_nil is set, and then n must be given (n >= 0) because #t is
 * unreliable with holes. */
static int ag_lua_tensor_array(lua_State *L, int idx, ag_tensor ***arr, size_t *n_out,
                               lua_Integer n, int allow_nil, const char *what)
{
    *arr = NULL;
    *n_out = 0;
    idx = lua_absindex(L, idx);
    if (!lua_istable(L, idx)) {
        lua_pushfstring(L, "%s: expected a table of tensors, got %s", what, luaL_typename(L, idx));
        return 0;
    }
    if (n < 0) n = (lua_Integer)lua_rawlen(L, idx);
    ag_tensor **a = (ag_tensor **)ag_lua_array(L, (size_t)n, sizeof *a);
    for (lua_Integer i = 0; i < n; i++) {
        lua_rawgeti(L, idx, i + 1);
        if (lua_isnil(L, -1) && allow_nil) {
            lua_pop(L, 1);
            continue;
        }
        void *p = NULL;
        int is_tensor = ag_lua_handle(L, -1, SWIGTYPE_p_ag_tensor, &p);
        if (!is_tensor || !p) {
            /* A released tensor (an empty handle) says so, as a handle argument does. */
            int released = is_tensor && lua_type(L, -1) == LUA_TUSERDATA;
            const char *tn = luaL_typename(L, -1);
            lua_pop(L, 1);
            if (released)
                lua_pushfstring(L, "%s: element %d: this ag_tensor is no longer valid (released)",
                                what, (int)(i + 1));
            else
                lua_pushfstring(L, "%s: element %d is not a tensor (got %s)", what, (int)(i + 1),
                                tn);
            return 0;
        }
        lua_pop(L, 1);
        a[i] = (ag_tensor *)p;
    }
    *arr = a;
    *n_out = (size_t)n;
    return 1;
}

/* Checks that the table at idx holds nothing but entries 1..n (which a reader of n entries
 * reads): the rest was ignored, silently (ag.grad's grad_outputs = {g, "junk", 42} for one
 * output). Returns 0 with a message pushed otherwise, naming `what` and how many `of` there
 * are. Raw (lua_next): no metamethod runs. */
static int ag_lua_only_first(lua_State *L, int idx, lua_Integer n, const char *what,
                             const char *of)
{
    idx = lua_absindex(L, idx);
    lua_Integer last = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1) {
            const char *kind = luaL_typename(L, -1);
            lua_pop(L, 1);
            lua_pushfstring(L, "%s: a %s key, where a list of at most %I entries (one per "
                            "%s) is expected", what, kind, n, of);
            return 0;
        }
        if (lua_tointeger(L, -1) > last) last = lua_tointeger(L, -1);
    }
    if (last > n) {
        lua_pushfstring(L, "%s: %I entries for %I %s", what, last, n, of);
        return 0;
    }
    return 1;
}

/* This machine's physical memory in bytes, or 0 if unknown: the bound of the copies and
 * arrays refused up front below. */
static uint64_t ag_lua_memory(void)
{
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0) return (uint64_t)pages * (uint64_t)page;
#endif
    return 0;
}

/* Whether a copy of numel elements of elem bytes each, into a buffer and then a Lua table of
 * as many values, can be made: a table holds at most INT_MAX (lua_createtable's count), and
 * the two together must fit in the machine's memory. Returns 0 with a message pushed, naming
 * fn, otherwise. */
static int ag_lua_copy_fits(lua_State *L, int64_t numel, size_t elem, const char *fn)
{
    if (numel > INT_MAX) {
        lua_pushfstring(L, "%s: the tensor has %I elements, more than a Lua table holds (%d)",
                        fn, (lua_Integer)numel, INT_MAX);
        return 0;
    }
    uint64_t need = (uint64_t)numel * (elem + sizeof(lua_Number) * 2), have = ag_lua_memory();
    if (have && need > have) {
        lua_pushfstring(L, "%s: the tensor has %I elements, whose copy into a Lua table takes "
                        "more than this machine's memory (%I bytes)", fn, (lua_Integer)numel,
                        (lua_Integer)have);
        return 0;
    }
    return 1;
}

/* A count of pieces (ag_split, ag_chunk; ag_function_apply's outputs, which C bounds at 64)
 * that C accepts and memory can hold: more than 2^31 - 1 (C's limit, which a large expanded
 * view reaches) is refused as AG_EINVAL, and more than this machine's memory can hold (each
 * piece is at least its C header with one size and stride, 112 bytes, its pointer here and
 * its Lua object) as AG_ENOMEM, as Go's Split refuses them, before any array is made (Lua's
 * allocator raised a bare "not enough memory"). The error is noted; 0 on refusal. */
static int ag_lua_pieces_fit(lua_State *L, lua_Integer n, const char *fn)
{
    if (n > INT32_MAX) {
        lua_pushfstring(L, "%s: %I pieces: at most %d are supported", fn, n, (int)INT32_MAX);
        ag_lua_note_error(L, AG_EINVAL);
        return 0;
    }
    uint64_t need = (uint64_t)n * (112 + sizeof(void *) + 2 * sizeof(lua_Number));
    uint64_t have = ag_lua_memory();
    if (have && need > have) {
        lua_pushfstring(L, "%s: %I pieces take more than this machine's memory (%I bytes)", fn,
                        n, (lua_Integer)have);
        ag_lua_note_error(L, AG_ENOMEM);
        return 0;
    }
    return 1;
}

/* Reads the Lua array of integers at idx into a new int64 array (ag_lua_array; nil gives an
 * empty one). */
static int ag_lua_int64_array(lua_State *L, int idx, int64_t **arr, size_t *n_out,
                              const char *what)
{
    *arr = NULL;
    *n_out = 0;
    idx = lua_absindex(L, idx);
    if (lua_isnoneornil(L, idx)) return 1;
    if (!lua_istable(L, idx)) {
        lua_pushfstring(L, "%s: expected a table of integers, got %s", what,
                        luaL_typename(L, idx));
        return 0;
    }
    size_t n = lua_rawlen(L, idx);
    int64_t *a = (int64_t *)ag_lua_array(L, n, sizeof *a);
    for (size_t i = 0; i < n; i++) {
        int ok = 0;
        lua_rawgeti(L, idx, (lua_Integer)i + 1);
        a[i] = (int64_t)lua_tointegerx(L, -1, &ok);
        lua_pop(L, 1);
        if (!ok) {
            lua_pushfstring(L, "%s: element %d is not an integer", what, (int)i + 1);
            return 0;
        }
    }
    *arr = a;
    *n_out = n;
    return 1;
}

/* The collector sees only the small userdata of a tensor, not the memory the library holds
 * for it, and would let big tensors pile up between cycles. So the bytes behind the tensors
 * Lua owns are counted (`live`: pushed minus finalized). Every AG_LUA_GC_STEP bytes pushed
 * (or an eighth of `live`, if more) buy an incremental step, as if Lua had allocated them;
 * and when `live` has grown by AG_LUA_GC_FULL (or doubled, if more) since its lowest point
 * after a collection, a full collection runs: in the generational mode (lua.c's default)
 * steps are young collections, which never free tensors that lived long enough to become
 * old. Nothing is done while the user has stopped the collector.
 * Only the elements are counted (those a view's memory spans: ag_lua_tensor_bytes). Counting
 * each tensor's header and node too (256 bytes) made
 * a scalar graph collect ~5x as often as Lua's own allocations would, 10% of its time from
 * Lua; uncounted, the headers of dead handles stay within a small multiple of Lua's own
 * garbage (2 million dropped 0-d tensors: peak RSS 7 MB, against 5 MB counted). */
#define AG_LUA_GC_STEP ((size_t)1 << 18)
#define AG_LUA_GC_FULL ((size_t)64 << 20)
/* (The counts are the state's, in its tracker: live, debt and base. They were thread-local,
 * which in a shared object costs a call to __tls_get_addr at every access, ~3% of a scalar
 * graph's binding overhead.) */

/* The elements t's memory spans: at most its element count, less for a view that reads
 * memory more than once (an expanded tensor, stride 0), whose count can be far beyond any
 * memory (x:expand(1e6, 1e3) of a [1, 1000] tensor counted 4 GB, and every such view ran a
 * full collection). */
static size_t ag_lua_tensor_bytes(const ag_tensor *t)
{
    int64_t n = 0;
    size_t nd = 0;
    ag_dtype dt = AG_FLOAT32;
    if (ag_tensor_numel(&n, t) != AG_OK || ag_tensor_dtype(&dt, t) != AG_OK) return 0;
    if (n > 1 && ag_tensor_ndim(&nd, t) == AG_OK && nd > 0) {
        int64_t shape[AG_MAX_DIMS], strides[AG_MAX_DIMS], span = 1;
        if (ag_tensor_shape(shape, AG_MAX_DIMS, t) == AG_OK &&
            ag_tensor_strides(strides, AG_MAX_DIMS, t) == AG_OK) {
            for (size_t d = 0; d < nd; d++)
                span += (shape[d] - 1) * (strides[d] < 0 ? -strides[d] : strides[d]);
            if (span < n) n = span;
        }
    }
    return (size_t)n * (dt == AG_FLOAT32 ? 4 : dt == AG_BOOL ? 1 : 8);
}

/* Counts b more bytes behind the state's tensors. The collection they buy runs at the next
 * ag_lua_gc_pace, where nothing is held that a Lua error could strand (see ag_lua_reserve). */
static void ag_lua_gc_account(ag_lua_track *tr, size_t b)
{
    tr->gc_live += b;
    tr->gc_debt += b;
}

/* Runs the collection step or full collection the bytes counted so far have bought. */
static void ag_lua_gc_pace(lua_State *L, ag_lua_track *tr)
{
    if (tr->gc_debt < AG_LUA_GC_STEP || tr->gc_debt < tr->gc_live / 8
        || !lua_gc(L, LUA_GCISRUNNING))
        return;
    size_t grown = tr->gc_live - tr->gc_base; /* base <= live always */
    int kb = (int)(tr->gc_debt >> 10);
    tr->gc_debt = 0;
    if (grown >= AG_LUA_GC_FULL && grown >= tr->gc_base) {
        lua_gc(L, LUA_GCCOLLECT);
        tr->gc_base = tr->gc_live;
    } else {
        lua_gc(L, LUA_GCSTEP, kb);
    }
}

/* Releases t, which was counted as b bytes. */
static void ag_lua_gc_release(ag_lua_track *tr, ag_tensor *t, size_t b)
{
    tr->gc_live = tr->gc_live > b ? tr->gc_live - b : 0;
    if (tr->gc_live < tr->gc_base) tr->gc_base = tr->gc_live;
    ag_tensor_release(t);
}

static uint32_t ag_lua_slot_find(ag_lua_track *tr);

/* Empties slot s and releases its tensor (if it got one). */
static void ag_lua_slot_release(ag_lua_track *tr, uint32_t s)
{
    ag_lua_slot *sl = &tr->slot[s];
    ag_tensor *t = sl->t;
    size_t b = sl->bytes;
    sl->t = NULL;
    sl->gen++;
    sl->taken = 0;
    tr->free_ids[tr->nfree++] = s;
    if (t) ag_lua_gc_release(tr, t, b);
}

/* A free slot, now taken and empty, or UINT32_MAX when the arrays cannot grow. */
static uint32_t ag_lua_slot_take(ag_lua_track *tr)
{
    uint32_t s = ag_lua_slot_find(tr);
    if (s != UINT32_MAX) {
        tr->slot[s].t = NULL;
        tr->slot[s].bytes = 0;
        tr->slot[s].taken = 1;
    }
    return s;
}

static uint32_t ag_lua_slot_find(ag_lua_track *tr)
{
    if (tr->nfree) return tr->free_ids[--tr->nfree];
    if (tr->n == tr->cap) {
        uint32_t nc = tr->cap ? 2 * tr->cap : 1024;
        if (nc <= tr->cap) return UINT32_MAX;
        ag_lua_slot *sl = (ag_lua_slot *)realloc(tr->slot, nc * sizeof *sl);
        if (!sl) return UINT32_MAX;
        tr->slot = sl;
        uint32_t *f = (uint32_t *)realloc(tr->free_ids, nc * sizeof *f);
        if (!f) return UINT32_MAX; /* the larger slot array is kept; cap still says the old */
        tr->free_ids = f;
        tr->cap = nc;
    }
    tr->slot[tr->n].gen = 0;
    return tr->n++;
}

/* Pushes the tracker (user values: 1 the weak table, 2 and 3 the metatables of the young and
 * the old sentinels, 4 and 5 the old sentinels it still keeps, made by the sweep before last
 * and by the last one); NULL (and nil pushed) if the module was never opened in this state. */
static ag_lua_track *ag_lua_track_get(lua_State *L)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &ag_lua_track_key) != LUA_TUSERDATA) return NULL;
    return (ag_lua_track *)lua_touserdata(L, -1);
}

/* Makes a new young sentinel from the tracker at the top of the stack: an unreachable object
 * whose finalizer (ag_lua_sweep_young) runs after the next collection. */
static void ag_lua_arm(lua_State *L)
{
    lua_newuserdatauv(L, 0, 0);
    lua_getiuservalue(L, -2, 2);
    lua_setmetatable(L, -2);
    lua_pop(L, 1);
}

/* Makes a new old sentinel, kept by the tracker (at the top of the stack) for two sweeps, and
 * lets go of the one the sweep before last made, which has lived through two collections. */
static void ag_lua_arm_old(lua_State *L)
{
    lua_getiuservalue(L, -1, 5);
    lua_setiuservalue(L, -2, 4);
    lua_newuserdatauv(L, 0, 0);
    lua_getiuservalue(L, -2, 3);
    lua_setmetatable(L, -2);
    lua_setiuservalue(L, -2, 5);
}

/* Records that slot s was pushed in this cycle. */
static void ag_lua_young_add(ag_lua_track *tr, uint32_t s)
{
    ag_lua_ids *y = &tr->young[tr->cur];
    if (y->n == y->cap) {
        uint32_t nc = y->cap ? 2 * y->cap : 1024;
        uint32_t *v = nc > y->cap ? (uint32_t *)realloc(y->v, nc * sizeof *v) : NULL;
        if (!v) {
            y->lost = 1;
            return;
        }
        y->v = v;
        y->cap = nc;
    }
    y->v[y->n++] = s;
}

/* Releases the tensors of the slots ids[0 .. n-1] (ids NULL: slots 0 .. n-1) whose handle is
 * gone (the weak table at index w); a slot reserved for a handle that never got its tensor
 * (see ag_lua_reserve) is freed too. The entries read are popped 32 at a time. */
static void ag_lua_sweep_slots(lua_State *L, ag_lua_track *tr, int w, const uint32_t *ids,
                               uint32_t n)
{
    int top = lua_gettop(L), room = lua_checkstack(L, 40) ? 32 : 1, pushed = 0;
    for (uint32_t k = 0; k < n; k++) {
        uint32_t s = ids ? ids[k] : k;
        if (!tr->slot[s].taken) continue;
        if (lua_rawgeti(L, w, (lua_Integer)s + 1) == LUA_TNIL) ag_lua_slot_release(tr, s);
        if (++pushed == room) {
            lua_settop(L, top);
            pushed = 0;
        }
    }
    lua_settop(L, top);
}

/* The young sentinel's finalizer: releases the tensors of the handles pushed during the last
 * two cycles that the collection found dead (all of them if some slot was not recorded). */
static int ag_lua_sweep_young(lua_State *L)
{
    ag_lua_track *tr = ag_lua_track_get(L);
    if (!tr || tr->closed) return 0; /* closing: ag_lua_track_close releases everything */
    lua_getiuservalue(L, -1, 1);
    int w = lua_gettop(L);
    ag_lua_ids *prev = &tr->young[tr->cur ^ 1], *now = &tr->young[tr->cur];
    if (prev->lost || now->lost) {
        ag_lua_sweep_slots(L, tr, w, NULL, tr->n);
    } else {
        ag_lua_sweep_slots(L, tr, w, prev->v, prev->n);
        ag_lua_sweep_slots(L, tr, w, now->v, now->n);
    }
    lua_pop(L, 1);
    /* What was pushed before this cycle is old from now on (if still alive). */
    prev->n = 0;
    prev->lost = 0;
    tr->cur ^= 1;
    tr->swept_all = 0;
    ag_lua_arm(L);
    ag_lua_arm_old(L);
    return 0;
}

/* An old sentinel's finalizer, after a major collection: looks at every slot (once, when
 * several die in one collection). */
static int ag_lua_sweep_all(lua_State *L)
{
    ag_lua_track *tr = ag_lua_track_get(L);
    if (!tr || tr->closed || tr->swept_all) return 0;
    tr->swept_all = 1;
    lua_getiuservalue(L, -1, 1);
    ag_lua_sweep_slots(L, tr, lua_gettop(L), NULL, tr->n);
    lua_pop(L, 1);
    return 0;
}

/* The tracker's finalizer, run when the state closes (the registry holds it until then):
 * releases every tensor still held and empties the handles, which later finalizers may still
 * reach. */
static int ag_lua_track_close(lua_State *L)
{
    ag_lua_track *tr = (ag_lua_track *)lua_touserdata(L, 1);
    if (tr->closed) return 0;
    tr->closed = 1;
    lua_getiuservalue(L, 1, 1);
    for (uint32_t s = 0; s < tr->n; s++) {
        if (!tr->slot[s].t) continue;
        if (lua_rawgeti(L, -1, (lua_Integer)s + 1) == LUA_TUSERDATA) {
            ag_lua_tensor_ud *h = (ag_lua_tensor_ud *)lua_touserdata(L, -1);
            if (h->slot == s && h->gen == tr->slot[s].gen) {
                h->u.ptr = NULL;
                h->u.own = 0;
            }
        }
        lua_pop(L, 1);
        ag_lua_slot_release(tr, s);
    }
    lua_pop(L, 1);
    free(tr->slot);
    free(tr->free_ids);
    free(tr->young[0].v);
    free(tr->young[1].v);
    memset(tr->young, 0, sizeof tr->young);
    tr->slot = NULL;
    tr->free_ids = NULL;
    tr->n = tr->cap = tr->nfree = 0;
    return 0;
}

/* luaopen: makes the tracker (once per state) and takes the finalizer off the tensor class:
 * SWIG gave it one (the %extend destructor below), which the sweep replaces. */
/* __gc of node, optimizer and generator handles: SWIG's (SWIG_Lua_class_destruct), which
 * calls the class's destructor (the %extend below), then empties the handle. SWIG's left the
 * pointer in place, so a finalizer that reached the handle afterwards (an object resurrected
 * by another finalizer; lua_close runs finalizers newest first) used freed memory, or
 * another object made since at the same address. An emptied handle reads as "no longer
 * valid" (ag_lua_handle_arg). */
static int ag_lua_gc_handle(lua_State *L)
{
    swig_lua_userdata *u = (swig_lua_userdata *)lua_touserdata(L, 1);
    if (!u) return 0;
    const swig_lua_class *cls = u->type ? (const swig_lua_class *)u->type->clientdata : NULL;
    if (u->own && u->ptr && cls && cls->destructor) cls->destructor(u->ptr);
    u->ptr = NULL;
    u->own = 0;
    return 0;
}

static void ag_lua_track_init(lua_State *L)
{
    static const char *const emptied[] = {"ag_node", "ag_optimizer", "ag_generator"};
    if (lua_getfield(L, LUA_REGISTRYINDEX, "SWIG") == LUA_TTABLE) {
        if (lua_getfield(L, -1, "ag_tensor") == LUA_TTABLE) {
            lua_pushnil(L);
            lua_setfield(L, -2, "__gc");
        }
        lua_pop(L, 1);
        for (size_t k = 0; k < sizeof emptied / sizeof emptied[0]; k++) {
            if (lua_getfield(L, -1, emptied[k]) == LUA_TTABLE) {
                lua_pushcfunction(L, ag_lua_gc_handle);
                lua_setfield(L, -2, "__gc");
            }
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    if (ag_lua_track_get(L)) {
        lua_pop(L, 1);
        return; /* opened before in this state */
    }
    lua_pop(L, 1);
    ag_lua_track *tr = (ag_lua_track *)lua_newuserdatauv(L, sizeof *tr, 5);
    memset(tr, 0, sizeof *tr);
    tr->magic = &ag_lua_track_key;
    lua_newtable(L); /* the weak table */
    tr->weak = lua_topointer(L, -1); /* (objects do not move; the tracker anchors it) */
    lua_newtable(L);
    lua_pushliteral(L, "v");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_setiuservalue(L, -2, 1);
    lua_newtable(L); /* the sentinels' metatables */
    lua_pushcfunction(L, ag_lua_sweep_young);
    lua_setfield(L, -2, "__gc");
    lua_setiuservalue(L, -2, 2);
    lua_newtable(L);
    lua_pushcfunction(L, ag_lua_sweep_all);
    lua_setfield(L, -2, "__gc");
    lua_setiuservalue(L, -2, 3);
    lua_newtable(L); /* the tracker's own */
    lua_pushcfunction(L, ag_lua_track_close);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &ag_lua_track_key);
    ag_lua_arm(L);
    ag_lua_arm_old(L);
    lua_pop(L, 1);
}

/* ---- handles that come back: reserved before the call, filled after ----------------------
 * Every Lua allocation may raise a memory error (a longjmp past the wrapper). Had the Lua
 * object of a handle been made after the C call that returned the handle, such an error left
 * the handle owned by nothing: leaked, or (a tensor already in its slot) released twice when
 * the state closed. So the object is made first, empty (ag_lua_reserve: the only step that
 * allocates), before the wrapper borrows any argument, since the collection an allocation may
 * run can finalize objects, and a finalizer may release a tensor; and the handle goes into it
 * after the call (ag_lua_fill), which allocates nothing in Lua. An error in between (the call
 * failed, a later argument was wrong) leaves empty objects for the collector; a tensor
 * object's reserved slot is freed by the sweep when it finds the object dead, as for any
 * handle. */

/* ---- the state's tracker, tensor metatable and weak table as upvalues ----------------------
 * Every function of the module table is a C closure over three values of its state (made at
 * luaopen, ag_lua_close_over): 1 the tracker, 2 the tensor class metatable, 3 the tracker's
 * weak table. A tensor handle made inside one of them takes them from there. Looking them up
 * in the registry (lua_rawgetp, a hash lookup of a light userdata, twice per handle) was ~2000
 * instructions per triple of the `scalar` workload, about 9% of the binding's cost there. */
#define AG_LUA_UP_TRACK lua_upvalueindex(1)
#define AG_LUA_UP_MT lua_upvalueindex(2)
#define AG_LUA_UP_WEAK lua_upvalueindex(3)

/* The tracker in the upvalues of the running C function, if it is one of the module's
 * closures; NULL otherwise (a helper run by lua_pcall, a callback's body: the caller then
 * looks in the registry). The upvalues are checked, not trusted: debug.setupvalue can change
 * them. The weak table must be the tracker's own, not merely a table: a handle entered in
 * another would be swept as dead while alive (its tensor released under it). Another
 * metatable only changes how the object behaves, and the registry path sets whatever
 * metatable the class has then. */
static ag_lua_track *ag_lua_up_track(lua_State *L)
{
    ag_lua_track *tr = (ag_lua_track *)lua_touserdata(L, AG_LUA_UP_TRACK);
    if (!tr || lua_rawlen(L, AG_LUA_UP_TRACK) != sizeof *tr || tr->magic != &ag_lua_track_key ||
        lua_type(L, AG_LUA_UP_MT) != LUA_TTABLE || lua_type(L, AG_LUA_UP_WEAK) != LUA_TTABLE ||
        lua_topointer(L, AG_LUA_UP_WEAK) != tr->weak)
        return NULL;
    return tr;
}

/* Pushes the class metatable of `type` (cached in the registry under the type's address
 * instead of looked up by name each time); nil if it has none. */
static void ag_lua_push_class(lua_State *L, swig_type_info *type)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, type) == LUA_TTABLE) return;
    lua_pop(L, 1);
    if (type->clientdata)
        SWIG_Lua_get_class_metatable(L, ((swig_lua_class *)type->clientdata)->fqname);
    else
        lua_pushnil(L);
    if (lua_istable(L, -1)) {
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, type);
    } else {
        lua_pop(L, 1);
        lua_pushnil(L);
    }
}

/* Pushes an empty tensor object for tracker tr (NULL: none), with the tensor metatable at
 * mt and the weak table at weak (absolute or upvalue indices), and returns its index. */
static int ag_lua_reserve_tensor(lua_State *L, ag_lua_track *tr, int mt, int weak, void **udp)
{
    if (tr) ag_lua_gc_pace(L, tr);
    ag_lua_tensor_ud *h = (ag_lua_tensor_ud *)lua_newuserdatauv(L, sizeof *h, 0);
    h->u.type = SWIGTYPE_p_ag_tensor;
    h->u.own = 0;
    h->u.ptr = NULL;
    h->track = NULL;
    h->slot = h->gen = 0;
    lua_pushvalue(L, mt);
    lua_setmetatable(L, -2);
    uint32_t s = tr && !tr->closed ? ag_lua_slot_take(tr) : UINT32_MAX;
    if (s == UINT32_MAX) {
        /* (A state that is closing has released its tensors already: nothing would release
         * a new one.) */
        luaL_error(L, "autograd: %s", tr && tr->closed ? "the Lua state is closing"
                                                       : "out of memory");
        return 0;
    }
    /* From here to the end nothing runs a finalizer (so no sweep): setting the weak entry may
     * raise a memory error, but an emergency collection calls no finalizers. If it raises,
     * the slot has no entry, and the next sweep frees it. */
    ag_lua_young_add(tr, s);
    h->track = tr;
    h->slot = s;
    h->gen = tr->slot[s].gen;
    lua_pushvalue(L, -1);
    lua_rawseti(L, weak, (lua_Integer)s + 1);
    *udp = h;
    return lua_gettop(L);
}

/* Pushes an empty object for a handle of `type` and returns its stack index; *udp receives
 * its address (for ag_lua_fill_p). */
static int ag_lua_reserve_p(lua_State *L, swig_type_info *type, void **udp)
{
    if (type != SWIGTYPE_p_ag_tensor) {
        swig_lua_userdata *u = (swig_lua_userdata *)lua_newuserdatauv(L, sizeof *u, 0);
        u->ptr = NULL;
        u->type = type;
        u->own = 0;
        ag_lua_push_class(L, type);
        lua_setmetatable(L, -2);
        *udp = u;
        return lua_gettop(L);
    }
    ag_lua_track *tr = ag_lua_up_track(L);
    if (tr) return ag_lua_reserve_tensor(L, tr, AG_LUA_UP_MT, AG_LUA_UP_WEAK, udp);
    /* Not in one of the module's closures: the tracker, its weak table and the metatable from
     * the registry, below the object, which then takes their place. */
    int base = lua_gettop(L) + 1;
    tr = ag_lua_track_get(L);
    if (tr) lua_getiuservalue(L, -1, 1);
    else lua_pushnil(L);
    ag_lua_push_class(L, SWIGTYPE_p_ag_tensor);
    ag_lua_reserve_tensor(L, tr, base + 2, base + 1, udp);
    lua_replace(L, base);
    lua_settop(L, base);
    return base;
}
static int ag_lua_reserve(lua_State *L, swig_type_info *type)
{
    void *u;
    return ag_lua_reserve_p(L, type, &u);
}

/* Puts handle p (owned; NULL: nil) into the object ag_lua_reserve made at idx. Allocates
 * nothing in Lua, so it cannot raise. */
static void ag_lua_fill_p(lua_State *L, int idx, void *ud, void *p, swig_type_info *type)
{
    swig_lua_userdata *u = (swig_lua_userdata *)ud;
    if (type == SWIGTYPE_p_ag_tensor) {
        ag_lua_tensor_ud *h = (ag_lua_tensor_ud *)u;
        ag_lua_track *tr = h->track;
        if (!p || tr->closed) {
            /* (Closed: a callback closed the state during the call; nothing could release
             * the tensor later.) */
            if (!tr->closed) ag_lua_slot_release(tr, h->slot);
            else ag_tensor_release((ag_tensor *)p);
            p = NULL;
        } else {
            size_t bytes = ag_lua_tensor_bytes((ag_tensor *)p);
            tr->slot[h->slot].t = (ag_tensor *)p;
            tr->slot[h->slot].bytes = bytes;
            ag_lua_gc_account(tr, bytes);
        }
    }
    if (!p) {
        lua_pushnil(L);
        lua_replace(L, idx);
        return;
    }
    u->ptr = p;
    u->own = 1;
}
/* The same with the object's address read from the stack. */
static void ag_lua_fill(lua_State *L, int idx, void *p, swig_type_info *type)
{
    ag_lua_fill_p(L, idx, lua_touserdata(L, idx), p, type);
}

/* Pushes a table of n reserved tensor objects (for a list of results) and returns its index. */
static int ag_lua_reserve_table(lua_State *L, size_t n)
{
    lua_createtable(L, (int)n, 0);
    int tab = lua_gettop(L);
    for (size_t i = 0; i < n; i++) {
        ag_lua_reserve(L, SWIGTYPE_p_ag_tensor);
        lua_rawseti(L, tab, (lua_Integer)i + 1);
    }
    return tab;
}

/* Fills the table ag_lua_reserve_table made with arr's n tensors (owned; NULL: nil) and
 * empties arr. Allocates nothing: setting an existing entry, to nil included, does not. */
static void ag_lua_fill_table(lua_State *L, int tab, ag_tensor **arr, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, tab, (lua_Integer)i + 1);
        ag_lua_fill(L, lua_gettop(L), arr[i], SWIGTYPE_p_ag_tensor);
        arr[i] = NULL;
        lua_rawseti(L, tab, (lua_Integer)i + 1);
    }
}

/* Pushes string s (from the library: owned) and frees it. Copying it into Lua may raise a
 * memory error, which must not strand it: the copy runs protected, and an error is raised
 * again once s is freed. */
static int ag_lua_push_string_body(lua_State *L)
{
    lua_pushstring(L, (const char *)lua_touserdata(L, 1));
    return 1;
}
static void ag_lua_push_string_owned(lua_State *L, char *s)
{
    lua_pushcfunction(L, ag_lua_push_string_body);
    lua_pushlightuserdata(L, s);
    int rc = lua_pcall(L, 1, 1, 0);
    ag_string_free(s);
    if (rc != LUA_OK) lua_error(L);
}

/* Pushes an owned handle (nil for NULL) where no argument is borrowed and nothing else is
 * held (callbacks' arguments). */
static void ag_lua_push_owned(lua_State *L, void *p, swig_type_info *type)
{
    if (!p) {
        lua_pushnil(L);
        return;
    }
    ag_lua_fill(L, ag_lua_reserve(L, type), p, type);
}

/* ---- for callbacks.c (see callbacks.h) ---- */
void ag_lua_push_tensor(lua_State *L, ag_tensor *t)
{
    ag_lua_push_owned(L, t, SWIGTYPE_p_ag_tensor);
}
ag_tensor *ag_lua_to_tensor(lua_State *L, int idx)
{
    void *p = NULL;
    return ag_lua_handle(L, idx, SWIGTYPE_p_ag_tensor, &p) ? (ag_tensor *)p : NULL;
}
void ag_lua_push_ctx(lua_State *L, ag_function_ctx *ctx)
{
    SWIG_NewPointerObj(L, ctx, SWIGTYPE_p_ag_function_ctx, 0);
}
void ag_lua_invalidate(lua_State *L, int idx)
{
    /* The context lives only during the callback: a Lua reference kept beyond it must not
     * reach freed memory, so its pointer is cleared (later calls see NULL: AG_EINVAL). */
    swig_lua_userdata *u = (swig_lua_userdata *)lua_touserdata(L, idx);
    if (u) u->ptr = NULL;
}

/* t:release() and `local t <close> = ...`: drops the tensor's reference now instead of at
 * collection (the collector sees only a small userdata, so a loop that makes large or many
 * tensors holds them until it runs). The handle is emptied: the sweep then passes it over, and a
 * later call that takes it raises an error. Releasing twice, or nil, does nothing (a
 * to-be-closed variable may hold nil). */
static int ag_lua_release_tensor(lua_State *L)
{
    ag_lua_tensor_ud *h = ag_lua_tensor_ud_at(L, 1);
    if (!h) {
        if (lua_isnoneornil(L, 1)) return 0;
        ag_lua_arg_error(L, 1, 1, "release", "ag_tensor");
        ag_lua_note_error(L, AG_EINVAL);
        return lua_error(L);
    }
    ag_tensor *t = ag_lua_tensor_of(h);
    if (h->u.own && t) ag_lua_slot_release(h->track, h->slot);
    h->u.ptr = NULL;
    h->u.own = 0;
    return 0;
}
%}
%native(ag_lua_release_tensor) int ag_lua_release_tensor(lua_State *L);
%{
/* ag_lua_retain_tensor(t): a new handle to t's tensor, holding a reference of its own (the
 * handle of a hook: the user's handle may be released or closed while the library keeps the
 * hook, and removing it needs the tensor). Releasing either handle leaves the other valid.
 * The object is reserved before t is borrowed (see ag_lua_reserve). */
static int ag_lua_retain_tensor(lua_State *L)
{
    lua_settop(L, 1); /* (no argument reads as nil, not as the object reserved next) */
    int ud = ag_lua_reserve(L, SWIGTYPE_p_ag_tensor);
    void *p = NULL;
    if (!ag_lua_handle_arg(L, 1, 1, SWIGTYPE_p_ag_tensor, "ag_tensor", "retain", &p)) {
        ag_lua_note_error(L, AG_EINVAL);
        return lua_error(L);
    }
    if (!p) {
        lua_pushstring(L, "retain: argument 1: expected ag_tensor, got nil");
        ag_lua_note_error(L, AG_EINVAL);
        return lua_error(L);
    }
    if (ag_tensor_retain((ag_tensor *)p) != AG_OK) {
        lua_pushstring(L, ag_last_error());
        return lua_error(L);
    }
    ag_lua_fill(L, ud, p, SWIGTYPE_p_ag_tensor);
    lua_settop(L, ud);
    return 1;
}
%}
%native(ag_lua_retain_tensor) int ag_lua_retain_tensor(lua_State *L);
%{
/* ---- operators and 0-d leaves without a Lua function in between ---------------------------
 * `a * b` on tensors calls the __mul metamethod: a Lua closure that sorted out numbers and
 * tensors cost ~80 ns a call over the C function it then called, and `ag.tensor(v, opts)`
 * ~130 ns over ag_tensor_scalar + ag_tensor_set_requires_grad (scalar graphs make one leaf
 * and one operator per node). These natives do the same in C, with the messages the
 * wrappers give (the argument numbers are those of the C function called). */
typedef int (*ag_lua_tt_fn)(ag_tensor **, const ag_tensor *, const ag_tensor *);
typedef int (*ag_lua_ts_fn)(ag_tensor **, const ag_tensor *, double);

/* The tensor at Lua index idx, argument argno of C function fn (nil: NULL, which fn
 * reports); raises as the wrappers do otherwise. */
static ag_tensor *ag_lua_tensor_arg(lua_State *L, int idx, const char *fn, int argno)
{
    void *p = NULL;
    if (!ag_lua_handle_arg(L, idx, argno, SWIGTYPE_p_ag_tensor, "ag_tensor", fn, &p)) {
        ag_lua_note_error(L, AG_EINVAL);
        lua_error(L);
    }
    return (ag_tensor *)p;
}

/* t op s with s a Lua float: a float to PyTorch even when integral (int64 [1] + 2.0 is
 * float32 [3.]), where the C call takes any integral double as an integer. So an integer or
 * bool t goes float32 first; bool - s is left to C, which refuses it as PyTorch does. */
static int ag_lua_scalar_op(ag_tensor **out, ag_lua_ts_fn fn, ag_tensor *t, lua_State *L,
                            int idx, int is_sub)
{
    double s = lua_tonumber(L, idx);
    ag_dtype dt;
    if (lua_isinteger(L, idx) || !t || ag_tensor_dtype(&dt, t) != AG_OK ||
        dt == AG_FLOAT32 || dt == AG_FLOAT64 || (dt == AG_BOOL && is_sub))
        return fn(out, t, s);
    ag_tensor *f = NULL;
    int rc = ag_to_dtype(&f, t, AG_FLOAT32);
    if (rc == AG_OK) rc = fn(out, f, s);
    ag_tensor_release(f);
    return rc;
}

/* A Lua integer at idx beyond 2^53 in magnitude, which the scalar functions (they take a
 * double) cannot hold exactly, as a new 0-d int64 tensor: it promotes as the integer would
 * (int64 with int64 and bool tensors, the tensor's dtype with float ones). NULL otherwise, or
 * if it cannot be made (the scalar path then reports what it reports). */
static ag_tensor *ag_lua_big_int(lua_State *L, int idx)
{
    if (!lua_isinteger(L, idx)) return NULL;
    int64_t v = (int64_t)lua_tointeger(L, idx);
    if (v <= ((int64_t)1 << 53) && v >= -((int64_t)1 << 53)) return NULL;
    ag_tensor *t = NULL;
    return ag_tensor_from_data(&t, &v, AG_INT64, NULL, 0) == AG_OK ? t : NULL;
}

/* tensor op tensor, tensor op number (ts), number op tensor (st, with the tensor first). */
static int ag_lua_binop(lua_State *L, const char *tt_name, ag_lua_tt_fn tt, const char *ts_name,
                        ag_lua_ts_fn ts, const char *st_name, ag_lua_ts_fn st, int is_sub)
{
    ag_tensor *out = NULL, *big = NULL;
    void *udp;
    int rc, ud = ag_lua_reserve_p(L, SWIGTYPE_p_ag_tensor, &udp); /* before any operand is borrowed */
    ag_lua_tensor_ud *ha = ag_lua_tensor_ud_at(L, 1), *hb = ha ? ag_lua_tensor_ud_at(L, 2) : NULL;
    ag_tensor *ta = ha ? ag_lua_tensor_of(ha) : NULL, *tb = hb ? ag_lua_tensor_of(hb) : NULL;
    if (ta && tb) { /* two valid tensors: the commonest case */
        rc = tt(&out, ta, tb);
    } else if (lua_type(L, 2) == LUA_TNUMBER) {
        ag_tensor *a = ag_lua_tensor_arg(L, 1, ts_name, 1);
        if ((big = ag_lua_big_int(L, 2))) rc = tt(&out, a, big);
        else rc = ag_lua_scalar_op(&out, ts, a, L, 2, is_sub);
    } else if (lua_type(L, 1) == LUA_TNUMBER) {
        ag_tensor *b = ag_lua_tensor_arg(L, 2, st_name, 1);
        if ((big = ag_lua_big_int(L, 1))) rc = tt(&out, big, b);
        else rc = ag_lua_scalar_op(&out, st, b, L, 1, is_sub);
    } else {
        if (lua_isnil(L, 1) || lua_isnil(L, 2)) { /* (C would say "argument 'b' is NULL") */
            lua_pushfstring(L, "%s: argument %d: expected ag_tensor, got nil", tt_name,
                            lua_isnil(L, 1) ? 1 : 2);
            ag_lua_note_error(L, AG_EINVAL);
            return lua_error(L);
        }
        ag_tensor *a = ag_lua_tensor_arg(L, 1, tt_name, 1);
        ag_tensor *b = ag_lua_tensor_arg(L, 2, tt_name, 2);
        rc = tt(&out, a, b);
    }
    ag_tensor_release(big);
    if (rc != AG_OK) {
        lua_pushstring(L, ag_last_error());
        return lua_error(L);
    }
    ag_lua_fill_p(L, ud, udp, out, SWIGTYPE_p_ag_tensor);
    return 1;
}
static int ag_lua_add(lua_State *L)
{
    return ag_lua_binop(L, "ag_add", ag_add, "ag_add_scalar", ag_add_scalar, "ag_add_scalar",
                        ag_add_scalar, 0);
}
static int ag_lua_sub(lua_State *L)
{
    return ag_lua_binop(L, "ag_sub", ag_sub, "ag_sub_scalar", ag_sub_scalar, "ag_rsub_scalar",
                        ag_rsub_scalar, 1);
}
static int ag_lua_mul(lua_State *L)
{
    return ag_lua_binop(L, "ag_mul", ag_mul, "ag_mul_scalar", ag_mul_scalar, "ag_mul_scalar",
                        ag_mul_scalar, 0);
}
static int ag_lua_div(lua_State *L)
{
    return ag_lua_binop(L, "ag_div", ag_div, "ag_div_scalar", ag_div_scalar, "ag_rdiv_scalar",
                        ag_rdiv_scalar, 0);
}
static int ag_lua_pow(lua_State *L)
{
    return ag_lua_binop(L, "ag_pow", ag_pow, "ag_pow_scalar", ag_pow_scalar, "ag_rpow_scalar",
                        ag_rpow_scalar, 0);
}

/* ag.tensor's commonest case: ag.tensor(v [, opts]) with v a number and opts nil or a table
 * with no dtype, shape or [1] (requires_grad is honoured): the 0-d tensor, float32 for a
 * float and int64 for an integer. ag_lua_scalar_try pushes the tensor and returns 1, or, for
 * anything else, returns 0 with the stack as it was, and ag.tensor's closure (below) hands
 * the call to autograd.lua's general path, the one place that reads dtypes and shapes. It
 * runs in that closure, which holds the string "requires_grad" as upvalue 5. */
/* Whether the arguments from..top are all nil. */
static int ag_lua_nils_from(lua_State *L, int from, int top)
{
    for (int i = from; i <= top; i++)
        if (!lua_isnil(L, i)) return 0;
    return 1;
}
static int ag_lua_scalar_try(lua_State *L)
{
    int top = lua_gettop(L), grad = 0;
    /* (Any argument past the second that is not nil goes the general way, to be refused.) */
    if (lua_type(L, 1) != LUA_TNUMBER || (top >= 3 && !ag_lua_nils_from(L, 3, top))) return 0;
    int t2 = lua_type(L, 2);
    if (t2 == LUA_TTABLE) {
        /* {requires_grad = ...} only: anything else (a dtype, a shape, array entries, a
         * misspelt option, which the general path refuses) goes the general way. */
        lua_pushnil(L);
        while (lua_next(L, 2)) {
            /* (one comparison with the interned string, upvalue 5) */
            if (!lua_rawequal(L, -2, lua_upvalueindex(5))) {
                lua_settop(L, top);
                return 0;
            }
            grad = lua_toboolean(L, -1);
            lua_pop(L, 1);
        }
    } else if (t2 != LUA_TNIL && t2 != LUA_TNONE) {
        return 0;
    }
    ag_tensor *t = NULL;
    void *udp;
    int rc, ud = ag_lua_reserve_p(L, SWIGTYPE_p_ag_tensor, &udp);
    if (lua_isinteger(L, 1)) { /* exact, beyond 2^53 too */
        int64_t v = (int64_t)lua_tointeger(L, 1);
        rc = ag_tensor_from_data(&t, &v, AG_INT64, NULL, 0);
        /* (refused: an int64 tensor cannot require grad, with set_requires_grad's message) */
        if (rc == AG_OK && grad && (rc = ag_tensor_set_requires_grad(t, 1)) != AG_OK)
            ag_tensor_release(t);
    } else { /* a leaf: one call, torch.tensor(v, requires_grad=...) */
        rc = ag_tensor_scalar_requires_grad(&t, lua_tonumber(L, 1), AG_FLOAT32, grad);
    }
    if (rc != AG_OK) {
        lua_pushstring(L, ag_last_error());
        return lua_error(L);
    }
    ag_lua_fill_p(L, ud, udp, t, SWIGTYPE_p_ag_tensor);
    return 1;
}
/* The continuation of a Lua function called from ag.tensor's and __index's closures (below):
 * its result is at the top (lua_callk, so that a coroutine may yield inside it, as it could
 * when the function calling it was a Lua one). */
static int ag_lua_return_top(lua_State *L, int status, lua_KContext ctx)
{
    (void)L;
    (void)status;
    (void)ctx;
    return 1;
}
/* ag.tensor itself: the case above in C, anything else by the Lua function of autograd.lua
 * (upvalue 4) as general(data, a, b, 1), the 1 telling it that it runs one level deeper
 * than its caller's code, for the levels of its errors. A Lua function that called a C
 * function for this case first cost ~390 instructions a leaf more (a Lua call and its
 * frame). Arguments past the third are none of ag.tensor's: the first that is not nil is
 * passed on as general(data, a, b, 1, position, value), which refuses it (they were
 * dropped here, silently). */
static int ag_lua_tensor_body(lua_State *L)
{
    if (ag_lua_scalar_try(L)) return 1;
    int top = lua_gettop(L), extra = 0;
    for (int i = 4; i <= top && !extra; i++)
        if (!lua_isnil(L, i)) extra = i;
    if (extra) {
        lua_pushvalue(L, extra);
        lua_replace(L, 4);
    }
    lua_settop(L, 4);                      /* data, a, b, value (or nil) */
    lua_pushvalue(L, lua_upvalueindex(4));
    lua_insert(L, 1);                      /* general, data, a, b, value */
    lua_pushinteger(L, 1);
    lua_insert(L, 5);                      /* general, data, a, b, 1, value */
    if (extra) lua_pushinteger(L, extra);
    else lua_pushnil(L);
    lua_insert(L, 6);                      /* general, data, a, b, 1, position, value */
    lua_callk(L, 6, 1, 0, ag_lua_return_top);
    return 1;
}
/* ag_lua_tensor_fn(general): the closure above, over this closure's own upvalues, general and
 * the string "requires_grad" (upvalue 5, compared with the keys of an options table). */
static int ag_lua_tensor_fn(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    if (!ag_lua_up_track(L)) return luaL_error(L, "ag_lua_tensor_fn: not a closure of the module");
    lua_settop(L, 1);
    lua_pushvalue(L, AG_LUA_UP_TRACK);
    lua_pushvalue(L, AG_LUA_UP_MT);
    lua_pushvalue(L, AG_LUA_UP_WEAK);
    lua_pushvalue(L, 1);
    lua_pushliteral(L, "requires_grad");
    lua_pushcclosure(L, ag_lua_tensor_body, 5);
    return 1;
}
%}
%native(ag_lua_add) int ag_lua_add(lua_State *L);
%native(ag_lua_sub) int ag_lua_sub(lua_State *L);
%native(ag_lua_mul) int ag_lua_mul(lua_State *L);
%native(ag_lua_div) int ag_lua_div(lua_State *L);
%native(ag_lua_pow) int ag_lua_pow(lua_State *L);
%native(ag_lua_tensor_fn) int ag_lua_tensor_fn(lua_State *L);
%{
/* ag_lua_from_i64(flat, shape): an int64 tensor from Lua integers, exactly (ag_tensor_from_f64
 * goes through doubles, which round integers beyond 2^53). */
static int ag_lua_from_i64(lua_State *L)
{
    int64_t *data = NULL, *shape = NULL;
    size_t n = 0, nd = 0;
    ag_tensor *t = NULL;
    int rc = AG_OK, ud = ag_lua_reserve(L, SWIGTYPE_p_ag_tensor);
    int ok = ag_lua_int64_array(L, 1, &data, &n, "ag_tensor_from_data") &&
             ag_lua_int64_array(L, 2, &shape, &nd, "ag_tensor_from_data");
    int64_t numel = 1;
    if (ok) {
        /* (A negative size: C's message names it, which a count of 0 elements hid.) */
        int negative = 0;
        for (size_t i = 0; i < nd; i++) {
            numel *= shape[i] < 0 ? 0 : shape[i];
            negative |= shape[i] < 0;
        }
        ok = negative || (size_t)numel == n;
        if (ok) rc = ag_tensor_from_data(&t, data, AG_INT64, shape, nd);
        else numel = -numel - 1; /* (the message is pushed below) */
    }
    if (!ok) {
        if (numel < 0)
            lua_pushfstring(L, "ag_tensor_from_data: %I values given for a shape of %I elements",
                            (lua_Integer)n, (lua_Integer)(-numel - 1));
        ag_lua_note_error(L, AG_EINVAL);
        return lua_error(L);
    }
    if (rc != AG_OK) {
        lua_pushstring(L, ag_last_error());
        return lua_error(L);
    }
    ag_lua_fill(L, ud, t, SWIGTYPE_p_ag_tensor);
    lua_settop(L, ud);
    return 1;
}
%}
%native(ag_lua_from_i64) int ag_lua_from_i64(lua_State *L);
%{
/* a == b for two handles of the module (the __eq of their metatables): true when both hold
 * the same C object. SWIG's own __eq compared the pointers the userdata hold, which are NULL
 * in every released or emptied handle, so two released tensors were equal. Lua calls __eq
 * only for two distinct userdata, so a released handle equals only itself. */
static int ag_lua_handle_eq(lua_State *L)
{
    void *a = NULL, *b = NULL;
    ag_lua_tensor_ud *ha = ag_lua_tensor_ud_at(L, 1), *hb = ag_lua_tensor_ud_at(L, 2);
    if (ha && hb) {
        a = ag_lua_tensor_of(ha);
        b = ag_lua_tensor_of(hb);
    } else if (!ha && !hb && lua_rawlen(L, 1) == sizeof(swig_lua_userdata) &&
               lua_rawlen(L, 2) == sizeof(swig_lua_userdata)) {
        swig_lua_userdata *u1 = (swig_lua_userdata *)lua_touserdata(L, 1);
        swig_lua_userdata *u2 = (swig_lua_userdata *)lua_touserdata(L, 2);
        if (u1 && u2 && u1->type == u2->type) {
            a = u1->ptr;
            b = u2->ptr;
        }
    }
    lua_pushboolean(L, a != NULL && a == b);
    return 1;
}
%}
%native(ag_lua_handle_eq) int ag_lua_handle_eq(lua_State *L);
%{
/* ---- t.field and t:method() -------------------------------------------------------------
 * Every method call on a tensor (`q:tanh()`, `t:release()`) reads the method through the
 * metatable's __index. A Lua function there cost ~400 instructions a lookup (a Lua call and
 * its frame); this C closure reads the methods table, then the getters, itself, and leaves
 * everything else (integer indices, wrong keys) to a Lua function, which runs one level
 * deeper than the Lua __index did and reports its errors one level up accordingly. Upvalues:
 * 1 the methods table, 2 the getters (functions of the tensor), 3 the rest. */
static int ag_lua_index_body(lua_State *L)
{
    /* (Upvalue 1 through lua_gettable, as the Lua __index read T[k]: a metatable set on
     * ag.Tensor is honoured, and a non-table there, put by debug.setupvalue, is an ordinary
     * Lua error; upvalue 2 is read raw, so it is checked first: lua_rawget on a non-table
     * reads it as one.) */
    lua_pushvalue(L, 2); /* (nil if absent) */
    if (lua_gettable(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
    if (lua_type(L, lua_upvalueindex(2)) != LUA_TTABLE)
        return luaL_error(L, "autograd: the tensor __index closure's getters were replaced");
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(2)) != LUA_TNIL) {
        lua_pushvalue(L, 1);
        lua_callk(L, 1, 1, 0, ag_lua_return_top);
        return 1;
    }
    lua_settop(L, 2);
    lua_pushvalue(L, lua_upvalueindex(3));
    lua_insert(L, 1);
    lua_callk(L, 2, 1, 0, ag_lua_return_top);
    return 1;
}
/* ag_lua_tensor_index(methods, getters, rest): the __index closure above. */
static int ag_lua_tensor_index(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checktype(L, 3, LUA_TFUNCTION);
    lua_settop(L, 3);
    lua_pushcclosure(L, ag_lua_index_body, 3);
    return 1;
}
%}
%native(ag_lua_tensor_index) int ag_lua_tensor_index(lua_State *L);
%{
/* Makes every C function of the module table at idx a closure over the state's tracker, the
 * tensor metatable and the weak table (see AG_LUA_UP_TRACK), which the module's functions
 * then read instead of the registry. */
static void ag_lua_close_over(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    if (!lua_istable(L, idx)) return;
    if (!ag_lua_track_get(L)) {
        lua_pop(L, 1);
        return;
    }
    int up = lua_gettop(L);
    ag_lua_push_class(L, SWIGTYPE_p_ag_tensor);
    lua_getiuservalue(L, up, 1);
    if (!lua_istable(L, up + 1) || !lua_istable(L, up + 2)) {
        lua_settop(L, up - 1);
        return;
    }
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_CFunction f = lua_tocfunction(L, -1);
        if (f && !lua_getupvalue(L, -1, 1)) { /* (a C function without upvalues) */
            lua_pop(L, 1);
            lua_pushvalue(L, -1); /* the key */
            lua_pushvalue(L, up);
            lua_pushvalue(L, up + 1);
            lua_pushvalue(L, up + 2);
            lua_pushcclosure(L, f, 3);
            lua_rawset(L, idx); /* (an existing key: lua_next may go on) */
        } else {
            lua_pop(L, f ? 2 : 1);
        }
    }
    lua_settop(L, up - 1);
}
%}
%init %{
    ag_lua_track_init(L);
    /* (SWIG_init leaves the module table at the top.) */
    ag_lua_close_over(L, -1);
%}

/* ---------------------------------------------------------------------------------------- */
/* The handle types become classes so owned objects get a __gc. The library's header only     */
/* declares them (opaque), and SWIG skips %extend on an incomplete type (swig #3174), so SWIG  */
/* is shown an empty definition; the C compiler never sees it.                                */
/* ---------------------------------------------------------------------------------------- */
%nodefaultctor ag_tensor;
%nodefaultctor ag_node;
%nodefaultctor ag_optimizer;
%nodefaultctor ag_generator;
%nodefaultctor ag_function_ctx;
%nodefaultdtor ag_function_ctx;
struct ag_tensor {};
struct ag_node {};
struct ag_optimizer {};
struct ag_generator {};
struct ag_function_ctx {};  /* borrowed during a callback only: no destructor */
/* (At luaopen the tensor class loses its __gc, its handles being swept, and the others get
 * ag_lua_gc_handle, which calls these destructors, see ag_lua_track_init. SWIG still wants
 * the tensor's to make the class.) */
%extend ag_tensor { ~ag_tensor() { ag_tensor_release($self); } }
%extend ag_node { ~ag_node() { ag_node_release($self); } }
%extend ag_optimizer { ~ag_optimizer() { ag_optimizer_release($self); } }
%extend ag_generator { ~ag_generator() { ag_generator_release($self); } }

/* ---------------------------------------------------------------------------------------- */
/* Status codes                                                                               */
/* ---------------------------------------------------------------------------------------- */
/* Every `int` result is a status unless listed below. On failure the message is read at once
 * (before anything else can overwrite it) and raised; `fail:` runs the freearg cleanups. */
%typemap(out) int
%{ if ($1 != AG_OK) {
    ag_lua_push_error(L);
    goto fail; /* (the library set the status) */
  } %}

/* ...these return values, not statuses. */
%typemap(out) int ag_version_number, int ag_get_num_threads, int ag_set_grad_enabled,
              int ag_is_grad_enabled, int ag_set_anomaly_enabled, int ag_is_anomaly_enabled,
              int ag_last_status, int ag_set_error, int ag_manual_seed,
              int ag_set_deferral_enabled, int ag_is_deferral_enabled
%{ lua_pushinteger(L, (lua_Integer)$1); SWIG_arg++; %}

/* Scalars in: integers are checked integers (a float 2.0 is accepted, 2.5 is not); the C
 * int and unsigned parameters (keepdim, flags, booleans) also accept true/false. A Lua
 * integer is 64 bits: one the C type cannot hold is refused, not cast (ag_set_num_threads
 * given 2^32 + 2 set 2 threads; a negative count or index became a huge size_t). int64_t
 * takes every Lua integer, and uint64_t (seeds) takes negative ones modulo 2^64, as
 * torch.manual_seed does. */
%typemap(in) int64_t, uint64_t
%{ { lua_Integer v;
     if (!ag_lua_int(L, $input, &v, "$symname")) SWIG_fail;
     $1 = ($1_ltype)v; } %}
%typemap(in) int, ag_dtype, ag_reduction
%{ { lua_Integer v;
     if (!ag_lua_int(L, $input, &v, "$symname")) SWIG_fail;
     if (v < INT_MIN || v > INT_MAX) {
         lua_pushfstring(L, "$symname: argument %d: %I is out of range for a C int (%d to %d)",
                         $input, v, INT_MIN, INT_MAX);
         SWIG_fail;
     }
     $1 = ($1_ltype)v; } %}
%typemap(in) unsigned
%{ { lua_Integer v;
     if (!ag_lua_int(L, $input, &v, "$symname")) SWIG_fail;
     if (v < 0 || (lua_Unsigned)v > UINT_MAX) {
         lua_pushfstring(L, "$symname: argument %d: %I is out of range for a C unsigned int "
                         "(0 to %I)", $input, v, (lua_Integer)UINT_MAX);
         SWIG_fail;
     }
     $1 = ($1_ltype)v; } %}
%typemap(in) size_t
%{ { lua_Integer v;
     if (!ag_lua_int(L, $input, &v, "$symname")) SWIG_fail;
     if (v < 0) {
         lua_pushfstring(L, "$symname: argument %d: %I is out of range for a C size_t "
                         "(0 or more)", $input, v);
         SWIG_fail;
     }
     $1 = ($1_ltype)v; } %}

/* Doubles: one API call converts and checks. */
%typemap(in) double
%{ { int ok;
     $1 = lua_tonumberx(L, $input, &ok);
     if (!ok) {
         lua_pushfstring(L, "$symname: argument %d: expected a number, got %s", $input,
                         luaL_typename(L, $input));
         SWIG_fail;
     } } %}

/* Any integer result that is not a status: a Lua integer. */
%typemap(out) int64_t, uint64_t, size_t, long, unsigned long, long long, unsigned long long,
              unsigned, ag_dtype
%{ lua_pushinteger(L, (lua_Integer)$1); SWIG_arg++; %}
%typemap(out) enum SWIGTYPE %{ lua_pushinteger(L, (lua_Integer)$1); SWIG_arg++; %}

/* Handles in: the SWIG object of that type, or nil (NULL: the library reports it). */
%define AG_LUA_HANDLE_IN(TYPE)
%typemap(in) TYPE *, const TYPE *
%{ if (!ag_lua_handle_arg(L, $input, $input, $descriptor, "TYPE", "$symname", (void **)&$1))
     SWIG_fail; %}
%enddef
AG_LUA_HANDLE_IN(ag_tensor)
AG_LUA_HANDLE_IN(ag_node)
AG_LUA_HANDLE_IN(ag_optimizer)
AG_LUA_HANDLE_IN(ag_generator)
AG_LUA_HANDLE_IN(ag_function_ctx)

/* ---------------------------------------------------------------------------------------- */
/* Scalar out-parameters                                                                      */
/* ---------------------------------------------------------------------------------------- */
%define AG_LUA_INT_OUT(TYPE)
%typemap(in, numinputs=0) TYPE *out (TYPE tmp = 0), TYPE *handle_out (TYPE tmp = 0),
                          TYPE *input_nr_out (TYPE tmp = 0)
%{ $1 = &tmp; %}
%typemap(argout) TYPE *out, TYPE *handle_out, TYPE *input_nr_out
%{ lua_pushinteger(L, (lua_Integer)*$1); SWIG_arg++; %}
%enddef
AG_LUA_INT_OUT(int64_t)
AG_LUA_INT_OUT(uint64_t)
AG_LUA_INT_OUT(size_t)
AG_LUA_INT_OUT(ag_dtype)

/* int *out are yes/no queries (requires_grad, is_leaf, is_contiguous ...): booleans. */
%typemap(in, numinputs=0) int *out (int tmp = 0) %{ $1 = &tmp; %}
%typemap(argout) int *out %{ lua_pushboolean(L, *$1); SWIG_arg++; %}

%typemap(in, numinputs=0) double *out (double tmp = 0) %{ $1 = &tmp; %}
%typemap(argout) double *out %{ lua_pushnumber(L, *$1); SWIG_arg++; %}

/* A static string (node names). */
%typemap(in, numinputs=0) const char **out (const char *tmp = NULL) %{ $1 = ($1_ltype)&tmp; %}
%typemap(argout) const char **out %{ lua_pushstring(L, *$1); SWIG_arg++; %}
%typemap(freearg) const char **out "";

/* A string the caller owns: copied into Lua, then freed with ag_string_free. */
%typemap(in, numinputs=0) char **out (char *tmp = NULL) %{ $1 = &tmp; %}
%typemap(argout) char **out %{ ag_lua_push_string_owned(L, *$1); *$1 = NULL; SWIG_arg++; %}
%typemap(freearg) char **out %{ ag_string_free(tmp$argnum); %}

/* ---------------------------------------------------------------------------------------- */
/* Handle out-parameters: owned by the Lua object                                             */
/* ---------------------------------------------------------------------------------------- */
/* Matched by name: a bare `TYPE **` rule would also catch `TYPE *const *` input arrays. */
%define AG_LUA_HANDLE_OUT(TYPE)
%typemap(in, numinputs=0) TYPE **out (TYPE *tmp = NULL, int ud = 0, void *udp = NULL),
                          TYPE **values_out (TYPE *tmp = NULL, int ud = 0, void *udp = NULL),
                          TYPE **indices_out (TYPE *tmp = NULL, int ud = 0, void *udp = NULL),
                          TYPE **fn_out (TYPE *tmp = NULL, int ud = 0, void *udp = NULL)
%{ $1 = &tmp; ud = ag_lua_reserve_p(L, $*1_descriptor, &udp); SWIG_arg--; %}
%typemap(argout) TYPE **out, TYPE **values_out, TYPE **indices_out, TYPE **fn_out
%{ ag_lua_fill_p(L, ud$argnum, udp$argnum, *$1, $*1_descriptor);
   lua_pushvalue(L, ud$argnum); SWIG_arg++; %}
%enddef
AG_LUA_HANDLE_OUT(ag_tensor)
AG_LUA_HANDLE_OUT(ag_node)
AG_LUA_HANDLE_OUT(ag_optimizer)
AG_LUA_HANDLE_OUT(ag_generator)

/* ---------------------------------------------------------------------------------------- */
/* Arrays in                                                                                  */
/* ---------------------------------------------------------------------------------------- */
/* Shapes and dim lists: a table of integers (nil: none). */
%typemap(in, checkfn="ag_lua_istable_or_nil")
    (const int64_t *shape, size_t ndim) (int64_t *arr = NULL, size_t n = 0),
    (const int64_t *dims, size_t ndims) (int64_t *arr = NULL, size_t n = 0),
    (const int64_t *normalized_shape, size_t ndim) (int64_t *arr = NULL, size_t n = 0)
%{ if (!ag_lua_int64_array(L, $input, &arr, &n, "$symname")) SWIG_fail;
   $1 = arr; $2 = n; %}

/* Tensor lists: a table of tensors. */
%typemap(in, checkfn="lua_istable")
    (ag_tensor *const *tensors, size_t n) (ag_tensor **arr = NULL, size_t n = 0),
    (ag_tensor *const *params, size_t n) (ag_tensor **arr = NULL, size_t n = 0),
    (ag_tensor *const *inputs, size_t n_inputs) (ag_tensor **arr = NULL, size_t n = 0)
%{ if (!ag_lua_tensor_array(L, $input, &arr, &n, -1, 0, "$symname")) SWIG_fail;
   $1 = arr; $2 = n; %}


/* ag_tensor_from_f64(data, dtype, shape): data is a flat table of numbers (booleans allowed
 * for bool tensors). Its length is checked against the shape, so C never reads past it. */
%typemap(in, checkfn="lua_istable") const double *data (double *buf = NULL, size_t len = 0)
%{ len = lua_rawlen(L, $input);
   buf = (double *)ag_lua_array(L, len, sizeof *buf);
   for (size_t i = 0; i < len; i++) {
       int ok = 1;
       lua_rawgeti(L, $input, (lua_Integer)i + 1);
       /* (A numeric string is not a number here, as ag.tensor's nested tables refuse it:
        * lua_tonumberx converted "2".) */
       if (lua_isboolean(L, -1)) buf[i] = lua_toboolean(L, -1);
       else if (lua_type(L, -1) == LUA_TNUMBER) buf[i] = lua_tonumber(L, -1);
       else ok = 0;
       if (!ok) {
           lua_pushfstring(L, "$symname: element %d of data is not a number or a boolean "
                           "(got %s)", (int)i + 1, luaL_typename(L, -1));
           lua_remove(L, -2);
           SWIG_fail;
       }
       lua_pop(L, 1);
   }
   $1 = buf; %}
%typemap(check) (const double *data, ag_dtype dtype, const int64_t *shape, size_t ndim)
%{ {
    int64_t numel = 1;
    int negative = 0; /* (C refuses a negative size, naming it: a count of 0 hid it) */
    for (size_t i = 0; i < $4; i++) {
        numel *= $3[i] > 0 ? $3[i] : 0;
        negative |= $3[i] < 0;
    }
    if (!negative && (int64_t)len$argnum != numel) {
        lua_pushfstring(L, "$symname: %I values given for a shape of %I elements",
                        (lua_Integer)len$argnum, (lua_Integer)numel);
        SWIG_fail;
    }
} %}

/* ---------------------------------------------------------------------------------------- */
/* Arrays out                                                                                 */
/* ---------------------------------------------------------------------------------------- */
/* Shape and strides: a table of ndim integers. */
%typemap(in, checkfn="lua_isuserdata") (int64_t *out, size_t cap, const ag_tensor *t)
    (int64_t buf[AG_MAX_DIMS], size_t nd = 0)
%{ if (!($3 = ag_lua_check_tensor(L, $input, "$symname"))) SWIG_fail;
   if (ag_tensor_ndim(&nd, $3) != AG_OK) { lua_pushstring(L, ag_last_error()); goto fail; }
   $1 = buf; $2 = AG_MAX_DIMS; %}
%typemap(argout) (int64_t *out, size_t cap, const ag_tensor *t)
%{ lua_createtable(L, (int)nd$argnum, 0);
   for (size_t i = 0; i < nd$argnum; i++) {
       lua_pushinteger(L, (lua_Integer)$1[i]);
       lua_rawseti(L, -2, (lua_Integer)i + 1);
   }
   SWIG_arg++; %}

/* Elements: a flat table of numel numbers (copy_f64) or integers (copy_i64), row-major. */
%define AG_LUA_COPY_OUT(CTYPE, PUSH)
%typemap(in, checkfn="lua_isuserdata") (CTYPE *buf, size_t cap, const ag_tensor *t)
    (CTYPE *arr = NULL, int64_t numel = 0)
%{ if (!($3 = ag_lua_check_tensor(L, $input, "$symname"))) SWIG_fail;
   if (ag_tensor_numel(&numel, $3) != AG_OK) { lua_pushstring(L, ag_last_error()); goto fail; }
   /* A view can have far more elements than memory behind it (an expanded tensor has stride
    * 0): a copy that no Lua table can hold, or larger than the machine's memory, could never
    * succeed and is refused first, named, with AG_ENOMEM, as Go's Float64s refuses it (Lua's
    * allocator raised a bare "not enough memory"). */
   if (!ag_lua_copy_fits(L, numel, sizeof *arr, "$symname")) {
       ag_lua_note_error(L, AG_ENOMEM);
       goto fail;
   }
   /* A Lua object, so that a memory error while the table is built cannot strand it. Making
    * it may run finalizers, which may release the tensor: it is looked up again after. */
   arr = (CTYPE *)lua_newuserdatauv(L, (numel ? (size_t)numel : 1) * sizeof *arr, 0);
   if (!($3 = ag_lua_check_tensor(L, $input, "$symname"))) SWIG_fail;
   $1 = arr; $2 = (size_t)numel; %}
%typemap(argout) (CTYPE *buf, size_t cap, const ag_tensor *t)
%{ lua_createtable(L, (int)numel$argnum, 0);
   for (int64_t i = 0; i < numel$argnum; i++) {
       PUSH(L, $1[i]);
       lua_rawseti(L, -2, (lua_Integer)i + 1);
   }
   SWIG_arg++; %}

%enddef
AG_LUA_COPY_OUT(double, lua_pushnumber)
AG_LUA_COPY_OUT(int64_t, lua_pushinteger)

/* ag_split, ag_chunk, ag_function_apply: the caller gives the count (ag_split_count ...);
 * the pieces come back as a table of owned tensors. */
%typemap(in, checkfn="lua_isnumber")
    (ag_tensor **outs, size_t n_outs) (ag_tensor **arr = NULL, lua_Integer n = 0, int tab = 0),
    (ag_tensor **outputs, size_t n_outputs) (ag_tensor **arr = NULL, lua_Integer n = 0, int tab = 0)
%{ if (!ag_lua_int(L, $input, &n, "$symname")) SWIG_fail;
   if (n < 0) { lua_pushfstring(L, "$symname: bad count %I", n); SWIG_fail; }
   if (!ag_lua_pieces_fit(L, n, "$symname")) goto fail;
   /* (Both Lua objects, made before any argument is read: see ag_lua_reserve.) */
   arr = (ag_tensor **)lua_newuserdatauv(L, (n ? (size_t)n : 1) * sizeof *arr, 0);
   memset(arr, 0, (n ? (size_t)n : 1) * sizeof *arr);
   tab = ag_lua_reserve_table(L, (size_t)n);
   $1 = arr; $2 = (size_t)n; %}
%typemap(argout) (ag_tensor **outs, size_t n_outs), (ag_tensor **outputs, size_t n_outputs)
%{ ag_lua_fill_table(L, tab$argnum, $1, $2);
   lua_pushvalue(L, tab$argnum); SWIG_arg++; %}

/* ag_grad(spec, flags): C's six array arguments come from one table
 * {outputs = {...}, grad_outputs = {...} or nil (entries may be nil), inputs = {...}};
 * the gradients come back as a table with one entry per input (nil where unused). */
%typemap(in, checkfn="lua_istable") (ag_tensor **grads_out, ag_tensor *const *outputs,
    ag_tensor *const *grad_outputs, size_t n_outputs, ag_tensor *const *inputs, size_t n_inputs)
    (ag_tensor **gout = NULL, ag_tensor **outs = NULL, ag_tensor **gouts = NULL,
     ag_tensor **ins = NULL, size_t n_out = 0, size_t n_in = 0, size_t n_g = 0, int tab = 0)
%{ {
    /* All three fields are read before any is converted: a metamethod of the spec runs Lua
     * code, which could release a tensor already turned into a borrowed pointer. The tables
     * then stay on the stack, keeping their tensors alive, until the wrapper returns. */
    int top = lua_gettop(L);
    lua_getfield(L, $input, "outputs");
    lua_getfield(L, $input, "inputs");
    int has_g = lua_getfield(L, $input, "grad_outputs") != LUA_TNIL;
    /* The result's objects before any tensor is borrowed (see ag_lua_reserve). */
    size_t n_res = lua_istable(L, top + 2) ? lua_rawlen(L, top + 2) : 0;
    gout = (ag_tensor **)lua_newuserdatauv(L, (n_res ? n_res : 1) * sizeof *gout, 0);
    memset(gout, 0, (n_res ? n_res : 1) * sizeof *gout);
    tab = ag_lua_reserve_table(L, n_res);
    if (!ag_lua_tensor_array(L, top + 1, &outs, &n_out, -1, 0, "$symname: outputs") ||
        !ag_lua_tensor_array(L, top + 2, &ins, &n_in, -1, 0, "$symname: inputs") ||
        (has_g && (!ag_lua_tensor_array(L, top + 3, &gouts, &n_g, (lua_Integer)n_out, 1,
                                        "$symname: grad_outputs") ||
                   !ag_lua_only_first(L, top + 3, (lua_Integer)n_out, "$symname: grad_outputs",
                                      "outputs"))))
        SWIG_fail;
    $1 = gout; $2 = outs; $3 = gouts; $4 = n_out; $5 = ins; $6 = n_in;
} %}
%typemap(argout) (ag_tensor **grads_out, ag_tensor *const *outputs,
    ag_tensor *const *grad_outputs, size_t n_outputs, ag_tensor *const *inputs, size_t n_inputs)
%{ ag_lua_fill_table(L, tab$argnum, $1, $6);
   lua_pushvalue(L, tab$argnum); SWIG_arg++; %}

/* ---------------------------------------------------------------------------------------- */
/* Callbacks: Lua functions behind the trampolines of callbacks.c                             */
/* ---------------------------------------------------------------------------------------- */
/* Registered with AG_CALLBACK_CALLER_THREAD, so the library calls them only on the thread
 * that called backward: a Lua state is never entered from another thread. The Lua value is
 * held by a registry reference until the library frees the userdata; if the call fails the
 * library did not take it, and freearg drops it. */
%typemap(in, checkfn="lua_isfunction") (ag_tensor_hook_fn fn, unsigned flags, void *userdata,
                                        void (*free_userdata)(void *userdata))
    (ag_lua_cb *cb = NULL)
%{ if (!(cb = ag_lua_cb_new(L, $input))) AG_LUA_NOMEM
   $1 = ag_lua_hook; $2 = AG_CALLBACK_CALLER_THREAD; $3 = cb; $4 = ag_lua_cb_free; %}
%typemap(argout) (ag_tensor_hook_fn fn, unsigned flags, void *userdata,
                  void (*free_userdata)(void *userdata))
%{ cb$argnum = NULL; /* the library owns it now */ %}
%typemap(freearg) (ag_tensor_hook_fn fn, unsigned flags, void *userdata,
                   void (*free_userdata)(void *userdata))
%{ ag_lua_cb_free(cb$argnum); %}

/* A custom function: a table {forward = function(ctx, inputs...) return outputs... end,
 * backward = function(ctx, grad_outputs...) return grad_inputs... end}. */
%typemap(in, checkfn="lua_istable") (ag_function_forward_fn forward,
    ag_function_backward_fn backward, unsigned flags, void *userdata,
    void (*free_userdata)(void *userdata)) (ag_lua_cb *cb = NULL)
%{ if (!(cb = ag_lua_cb_new(L, $input))) AG_LUA_NOMEM
   $1 = ag_lua_forward; $2 = ag_lua_backward; $3 = AG_CALLBACK_CALLER_THREAD; $4 = cb;
   $5 = ag_lua_cb_free; %}
%typemap(argout) (ag_function_forward_fn forward, ag_function_backward_fn backward,
    unsigned flags, void *userdata, void (*free_userdata)(void *userdata))
%{ cb$argnum = NULL; %}
%typemap(freearg) (ag_function_forward_fn forward, ag_function_backward_fn backward,
    unsigned flags, void *userdata, void (*free_userdata)(void *userdata))
%{ ag_lua_cb_free(cb$argnum); %}

/* The calls that may run callbacks tell the trampolines which Lua thread (coroutine) is
 * calling, so a callback runs on the caller's stack. */
%define AG_LUA_ENTERS(FN)
%exception FN %{ {
    lua_State *ag_prev_state = ag_lua_enter(L);
    $action
    ag_lua_leave(ag_prev_state);
} %}
%enddef
AG_LUA_ENTERS(ag_backward)
AG_LUA_ENTERS(ag_grad)
AG_LUA_ENTERS(ag_function_apply)
