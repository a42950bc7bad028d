/*
 * lua_clock.c: the Lua module bench_clock, whose now() returns a monotonic wall clock in
 * seconds. Lua 5.4 itself has only os.clock (CPU time of all threads) and os.time (seconds),
 * neither of which can time a multi-threaded repetition of a few milliseconds.
 */
#include <lauxlib.h>
#include <lua.h>
#include <time.h>

static int now(lua_State *L)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    lua_pushnumber(L, (lua_Number)t.tv_sec + 1e-9 * (lua_Number)t.tv_nsec);
    return 1;
}

__attribute__((visibility("default"))) int luaopen_bench_clock(lua_State *L)
{
    static const luaL_Reg fns[] = {{"now", now}, {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
