/*
 * custom.h: user-defined differentiable functions (see ops/custom.c).
 */
#ifndef AG_CUSTOM_H
#define AG_CUSTOM_H

#include "graph.h"

typedef struct fn_ctx fn_ctx;

typedef struct custom_fn_def {
    const char *name;
    int (*forward)(fn_ctx *ctx, tensor **outs, int n_out, tensor *const *ins, int n_in, void *ud);
    int (*backward)(fn_ctx *ctx, tensor **grad_ins, int n_in, tensor *const *grad_outs, int n_out,
                    void *ud);
    void *userdata;
    void (*free_userdata)(void *ud);
    bool caller_thread;
} custom_fn_def;

/** Runs forward and, when recording, attaches the custom node. On success the node owns
 *  userdata (freed with it), or it was freed at once if no node was made; on failure the
 *  caller keeps it. */
eng_err op_custom_apply(tensor **outs, int n_out, tensor *const *ins, int n_in,
                        const custom_fn_def *def);

eng_err fn_ctx_save(fn_ctx *c, tensor *t);
eng_err fn_ctx_num_saved(const fn_ctx *c, size_t *out);
eng_err fn_ctx_saved(fn_ctx *c, size_t i, tensor **out);
eng_err fn_ctx_needs_input_grad(const fn_ctx *c, size_t i, bool *out);

#endif
