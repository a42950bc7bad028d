/*
 * optim.h: SGD, Adam and AdamW with PyTorch's update formulas and defaults.
 */
#ifndef AG_OPTIM_H
#define AG_OPTIM_H

#include "tensor.h"

typedef struct optimizer optimizer;

typedef enum opt_kind { OPT_SGD, OPT_ADAM, OPT_ADAMW } opt_kind;

typedef struct opt_config {
    opt_kind kind;
    double lr;
    double momentum, dampening; /* SGD */
    bool nesterov;              /* SGD */
    double beta1, beta2, eps;   /* Adam, AdamW */
    bool amsgrad;               /* Adam, AdamW */
    double weight_decay;
} opt_config;

/** Validates the configuration (PyTorch's messages) and the parameters (float leaves). */
eng_err optimizer_new(optimizer **out, tensor *const *params, int n, const opt_config *cfg);
/** One update of every parameter that has a .grad, under no_grad; checks all grads first. */
eng_err optimizer_step(optimizer *o);
eng_err optimizer_zero_grad(optimizer *o, bool set_to_none);
/** PyTorch's zero_grad(set_to_none=False) for one .grad g, in two steps so that a caller can
 *  check every .grad before changing any: grad_zero_check fails (changing nothing) where
 *  PyTorch would, e.g. "Can't detach views in-place" for a view with a grad_fn;
 *  grad_zero_apply then cannot fail: g.detach_() if g has a grad_fn, else
 *  g.requires_grad_(False), then g.zero_(), all on g itself (whoever holds g sees it).
 *  owner: the meta of the tensor whose .grad g is (may be NULL), locked while g is zeroed. */
eng_err grad_zero_check(tensor *g);
void grad_zero_apply(tensor *g, tmeta *owner);
double optimizer_get_lr(const optimizer *o);
eng_err optimizer_set_lr(optimizer *o, double lr);
void optimizer_retain(optimizer *o);
void optimizer_release(optimizer *o);

#endif
