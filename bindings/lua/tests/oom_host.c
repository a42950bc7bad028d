/*
 * oom_host.c: runs Lua code that uses the binding while Lua's allocator fails, at every
 * allocation in turn, and checks that no tensor, node or other library object is stranded:
 * after each run the state is closed, and every block the library allocated must have come
 * back (counted through ag_set_allocator). A Lua memory error is a longjmp past the wrapper;
 * a handle made before it and not yet owned by a Lua object would be leaked, or released
 * twice (see ag_lua_reserve in typemaps.i).
 *
 * usage: oom_host   (LUA_PATH / LUA_CPATH must find autograd.lua and autograd_core.so)
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>

#include "autograd.h"

/* ---- the library's allocations, counted --------------------------------------------------- */
static long ag_live;
static void *ag_count_alloc(size_t n, void *ud)
{
    (void)ud;
    void *p = malloc(n);
    if (p) ag_live++;
    return p;
}
static void ag_count_free(void *p, void *ud)
{
    (void)ud;
    if (p) ag_live--;
    free(p);
}
static const ag_allocator counting = {ag_count_alloc, ag_count_free, NULL};

/* ---- Lua's allocator: once armed, the fail_at-th growing allocation and every later one
 * fail (a single failure would be retried after an emergency collection) until disarmed. */
static int armed;
static long seen, fail_at;
static int failed;

static void *lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    if (armed && (!ptr || nsize > osize) && ++seen >= fail_at) {
        failed = 1;
        return NULL;
    }
    return realloc(ptr, nsize);
}

static int l_arm(lua_State *L)
{
    (void)L;
    seen = 0;
    failed = 0;
    armed = 1;
    return 0;
}

static int l_disarm(lua_State *L)
{
    (void)L;
    armed = 0;
    return 0;
}

/* Every wrapper shape that returns handles: operators and 0-d leaves (natives), one result,
 * two results (max over a dim), a list (split), autograd.grad's table, a string, a copy out,
 * callbacks that receive and return tensors (a hook, a custom function), int64 data, the
 * second handle a hook's handle holds (ag_lua_retain_tensor), let go when it is removed. */
static const char script[] =
    "local ag = require('autograd')\n"
    "local x = ag.tensor({1.0, 2.0, 3.0, 4.0}, {requires_grad = true})\n"
    "local w = ag.tensor(0.5, {requires_grad = true})\n"
    "local Exp = ag.Function{name = 'MyExp',\n"
    "  forward = function(ctx, a) local y = a:exp(); ctx:save_for_backward(y); return y end,\n"
    "  backward = function(ctx, gy) return gy * ctx.saved_tensors[1] end}\n"
    "local function body()\n"
    "  local s = ag.tensor(2.0, {requires_grad = true})\n"
    "  local y = (x * w + s):tanh()\n"
    "  local v, i = y:max(1)\n"
    "  local parts = y:split(2)\n"
    "  local txt = tostring(y)\n"
    "  local g = ag.grad({y:sum()}, {x, w}, {retain_graph = true})\n"
    "  local h = y:register_hook(function(gr) return gr * 2 end)\n"
    "  local z = Exp(y)\n"
    "  z:sum():backward()\n"
    "  h.remove()\n"
    "  local l = y:tolist()\n"
    "  local n = ag.tensor({1, 2, 3}, {dtype = 'int64'})\n"
    /* argument errors raised after another array argument was converted */
    "  assert(not pcall(ag.grad, {y:sum()}, {x, 5}))\n"
    "  assert(not pcall(ag.cat, {x, x, 'x'}, 0))\n"
    "  assert(not pcall(ag.zeros, {2, 'a'}))\n"
    "  return #l + #parts + n:numel()\n"
    "end\n"
    "arm()\n"
    "local ok, err = pcall(body)\n"
    "disarm()\n"
    "assert(ok, err)\n";

/* Runs the script with Lua's fail_at-th allocation failing. 1 if an allocation failed (so a
 * later fail_at may reach further), 0 once the script ran through, -1 on a stranded block or
 * an unexpected error. */
static int run(long at)
{
    fail_at = at;
    lua_State *L = lua_newstate(lua_alloc, NULL);
    if (!L) return -1;
    luaL_openlibs(L);
    lua_register(L, "arm", l_arm);
    lua_register(L, "disarm", l_disarm);
    int rc = luaL_loadstring(L, script) || lua_pcall(L, 0, 0, 0);
    armed = 0;
    int went_wrong = rc && !failed; /* (an error is expected only from a failed allocation) */
    if (went_wrong) fprintf(stderr, "oom_host: at %ld: %s\n", at, lua_tostring(L, -1));
    lua_close(L);
    if (ag_live != 0) {
        fprintf(stderr, "oom_host: failing Lua's allocation %ld left %ld library block(s)\n", at,
                ag_live);
        return -1;
    }
    return went_wrong ? -1 : failed;
}

int main(void)
{
    if (ag_set_num_threads(1) != AG_OK || ag_set_allocator(&counting) != AG_OK) {
        fprintf(stderr, "oom_host: %s\n", ag_last_error());
        return 1;
    }
    long at = 1;
    int r;
    while ((r = run(at)) == 1) at++;
    if (r < 0) return 1;
    if (at < 50) {
        fprintf(stderr, "oom_host: the script allocated only %ld times: not exercised\n", at);
        return 1;
    }
    printf("oom_host: %ld failure points, no library block stranded\n", at - 1);
    return 0;
}
