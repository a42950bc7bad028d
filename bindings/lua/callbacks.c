/*
 * callbacks.c: the trampolines through which the library calls Lua hooks and custom
 * functions. Everything that can raise a Lua error (allocation included) runs under
 * lua_pcall, so no Lua error ever unwinds through the library; a failure becomes
 * AG_ECALLBACK carrying the Lua message, and backward reports it.
 */
#include <stdlib.h>

#include <lauxlib.h>

#include "callbacks.h"

struct ag_lua_cb {
    lua_State *main; /* the state's main thread: valid as long as the state is open */
    int ref;         /* registry reference to the Lua function (or table of functions) */
};

/* The Lua thread inside the library call that runs the callbacks (see ag_lua_enter). */
static _Thread_local lua_State *current;

lua_State *ag_lua_enter(lua_State *L)
{
    lua_State *prev = current;
    current = L;
    return prev;
}

void ag_lua_leave(lua_State *prev)
{
    current = prev;
}

ag_lua_cb *ag_lua_cb_new(lua_State *L, int idx)
{
    lua_pushvalue(L, idx);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    ag_lua_cb *cb = malloc(sizeof *cb);
    if (!cb) {
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
        return NULL;
    }
    cb->ref = ref;
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    cb->main = lua_tothread(L, -1);
    lua_pop(L, 1);
    return cb;
}

void ag_lua_cb_free(void *p)
{
    ag_lua_cb *cb = p;
    if (!cb) return;
    /* May run from a __gc (the hook's tensor collected): unref only touches the registry. */
    luaL_unref(cb->main, LUA_REGISTRYINDEX, cb->ref);
    free(cb);
}

/* One call into Lua: fn(ctx?, args...) -> n_res results stored (new references) in res. */
typedef struct call {
    ag_lua_cb *cb;
    const char *field;       /* the function is cb's value, or this field of it */
    ag_function_ctx *ctx;    /* passed first when not NULL */
    ag_tensor *const *args;
    size_t n_args;
    ag_tensor **res;
    size_t n_res;
    int nil_ok;              /* a nil result leaves its slot NULL */
    const char *what;        /* for messages */
} call;

static int call_body(lua_State *L)
{
    call *c = lua_touserdata(L, 1);
    luaL_checkstack(L, (int)(c->n_args + c->n_res) + 4, "too many values for a Lua callback");
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->cb->ref);
    if (c->field) lua_getfield(L, -1, c->field);
    int fn = lua_gettop(L), keep = 0;
    if (c->ctx) {
        ag_lua_push_ctx(L, c->ctx);
        keep = lua_gettop(L);
    }
    lua_pushvalue(L, fn);
    if (c->ctx) lua_pushvalue(L, keep);
    for (size_t i = 0; i < c->n_args; i++) {
        if (!c->args[i]) {
            lua_pushnil(L);
            continue;
        }
        ag_lua_push_tensor(L, c->args[i]); /* the Lua object owns the reference taken next */
        ag_tensor_retain(c->args[i]);
    }
    int r = lua_pcall(L, (int)c->n_args + (c->ctx ? 1 : 0), (int)c->n_res, 0);
    if (keep) ag_lua_invalidate(L, keep); /* the context dies with the callback */
    if (r != LUA_OK) return lua_error(L);
    int first = lua_gettop(L) - (int)c->n_res + 1;
    for (size_t i = 0; i < c->n_res; i++) {
        int idx = first + (int)i;
        if (lua_isnil(L, idx)) {
            if (!c->nil_ok)
                return luaL_error(L, "%s must return %d tensor(s); result %d is nil", c->what,
                                  (int)c->n_res, (int)i + 1);
        } else if (!ag_lua_to_tensor(L, idx)) {
            return luaL_error(L, "%s: result %d is not a tensor (got %s)", c->what, (int)i + 1,
                              luaL_typename(L, idx));
        }
    }
    for (size_t i = 0; i < c->n_res; i++) {
        ag_tensor *t = ag_lua_to_tensor(L, first + (int)i);
        if (t) ag_tensor_retain(t);
        c->res[i] = t;
    }
    return 0;
}

static int run(call *c)
{
    lua_State *L = current ? current : c->cb->main;
    int top = lua_gettop(L);
    if (!lua_checkstack(L, 4)) return ag_set_error(AG_ECALLBACK, "Lua stack overflow");
    lua_pushcfunction(L, call_body);
    lua_pushlightuserdata(L, c);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        /* lua_tostring would convert a number in place (and may allocate): strings only. */
        const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                                         : "a Lua callback raised a non-string error";
        ag_set_error(AG_ECALLBACK, msg);
        lua_settop(L, top);
        return AG_ECALLBACK;
    }
    lua_settop(L, top);
    return AG_OK;
}

int ag_lua_hook(ag_tensor **new_grad, ag_tensor *grad, void *userdata)
{
    ag_tensor *args[1] = {grad};
    call c = {userdata, NULL, NULL, args, 1, new_grad, 1, 1, "a hook"};
    return run(&c);
}

int ag_lua_forward(ag_function_ctx *ctx, ag_tensor **outputs, size_t n_outputs,
                   ag_tensor *const *inputs, size_t n_inputs, void *userdata)
{
    call c = {userdata, "forward", ctx, inputs, n_inputs, outputs, n_outputs, 0, "forward"};
    return run(&c);
}

int ag_lua_backward(ag_function_ctx *ctx, ag_tensor **grad_inputs, size_t n_inputs,
                    ag_tensor *const *grad_outputs, size_t n_outputs, void *userdata)
{
    call c = {userdata, "backward", ctx, grad_outputs, n_outputs, grad_inputs, n_inputs, 1,
              "backward"};
    return run(&c);
}
