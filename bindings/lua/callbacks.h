/*
 * callbacks.h: the C side of Lua callbacks (hooks, custom functions). callbacks.c holds the
 * trampolines the library calls; the generated wrapper (typemaps.i) provides the helpers
 * that move tensors between Lua and C with SWIG's runtime.
 */
#ifndef AG_LUA_CALLBACKS_H
#define AG_LUA_CALLBACKS_H

#include <lua.h>

#include "autograd.h"

/* A Lua value (a function, or a table of functions) held by a registry reference. */
typedef struct ag_lua_cb ag_lua_cb;

/* References the value at idx; NULL when out of memory. */
ag_lua_cb *ag_lua_cb_new(lua_State *L, int idx);
/* Drops the reference (the library's free_userdata). NULL is ignored. */
void ag_lua_cb_free(void *cb);

/* The trampolines: userdata is an ag_lua_cb. */
int ag_lua_hook(ag_tensor **new_grad, ag_tensor *grad, void *userdata);
int ag_lua_forward(ag_function_ctx *ctx, ag_tensor **outputs, size_t n_outputs,
                   ag_tensor *const *inputs, size_t n_inputs, void *userdata);
int ag_lua_backward(ag_function_ctx *ctx, ag_tensor **grad_inputs, size_t n_inputs,
                    ag_tensor *const *grad_outputs, size_t n_outputs, void *userdata);

/* Around a library call that may run callbacks: callbacks then run on L (the calling
 * coroutine). Returns the previous state for ag_lua_leave. */
lua_State *ag_lua_enter(lua_State *L);
void ag_lua_leave(lua_State *prev);

/* Defined in the generated wrapper, where SWIG's runtime is. */
void ag_lua_push_tensor(lua_State *L, ag_tensor *t);     /* takes over a reference */
ag_tensor *ag_lua_to_tensor(lua_State *L, int idx);      /* borrowed; NULL if not a tensor */
void ag_lua_push_ctx(lua_State *L, ag_function_ctx *ctx); /* borrowed, not owned by Lua */
void ag_lua_invalidate(lua_State *L, int idx);            /* clears a pushed handle */

#endif
