/*
 * engine.h: the backward pass (Tensor.backward and torch.autograd.grad).
 */
#ifndef AG_ENGINE_H
#define AG_ENGINE_H

#include "graph.h"

typedef struct bwd_request {
    tensor *const *roots;      /* outputs to differentiate */
    tensor *const *root_grads; /* may be NULL, or hold NULLs for one-element roots */
    int n_roots;
    tensor *const *inputs;     /* autograd.grad: capture these gradients instead of .grad */
    int n_inputs;
    tensor **captured;         /* out: n_inputs new references (or NULL) */
    bool retain_graph;
    bool create_graph;
    bool free_graph;           /* with create_graph: do not imply retain_graph */
    bool allow_unused;
} bwd_request;

/** Runs backward. With n_inputs == 0 accumulates into leaves' .grad (and retained grads);
 *  otherwise fills captured[] and touches no .grad. */
eng_err run_backward(const bwd_request *r);

#endif
