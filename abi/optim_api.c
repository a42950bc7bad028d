/*
 * optim_api.c: the public optimizer functions.
 */
#include "../engine/optim.h"
#include "boundary.h"

#define O(h) ((optimizer *)(h))

static int create(const char *fn, ag_optimizer **out, ag_tensor *const *params, size_t n,
                  const opt_config *cfg)
{
    CHECK_NOT_NULL(fn, out, "out");
    if (n == 0) return api_error(fn, AG_EINVAL, "optimizer got an empty parameter list");
    CHECK_NOT_NULL(fn, params, "params");
    if (n > 1u << 24) return api_error(fn, AG_EINVAL, "too many parameters (%zu)", n);
    for (size_t i = 0; i < n; i++)
        if (!params[i]) return api_error(fn, AG_EINVAL, "params[%zu] is NULL", i);
    optimizer *o;
    eng_err e = optimizer_new(&o, (tensor *const *)params, (int)n, cfg);
    if (e) return api_fail(fn, e);
    *out = (ag_optimizer *)o;
    return AG_OK;
}

AG_API int ag_optimizer_sgd(ag_optimizer **out, ag_tensor *const *params, size_t n, double lr,
                            double momentum, double dampening, double weight_decay, int nesterov)
{
    opt_config c = {.kind = OPT_SGD, .lr = lr, .momentum = momentum, .dampening = dampening,
                    .weight_decay = weight_decay, .nesterov = nesterov != 0};
    return create("ag_optimizer_sgd", out, params, n, &c);
}

AG_API int ag_optimizer_adam(ag_optimizer **out, ag_tensor *const *params, size_t n, double lr,
                             double beta1, double beta2, double eps, double weight_decay,
                             int amsgrad)
{
    opt_config c = {.kind = OPT_ADAM, .lr = lr, .beta1 = beta1, .beta2 = beta2, .eps = eps,
                    .weight_decay = weight_decay, .amsgrad = amsgrad != 0};
    return create("ag_optimizer_adam", out, params, n, &c);
}

AG_API int ag_optimizer_adamw(ag_optimizer **out, ag_tensor *const *params, size_t n, double lr,
                              double beta1, double beta2, double eps, double weight_decay,
                              int amsgrad)
{
    opt_config c = {.kind = OPT_ADAMW, .lr = lr, .beta1 = beta1, .beta2 = beta2, .eps = eps,
                    .weight_decay = weight_decay, .amsgrad = amsgrad != 0};
    return create("ag_optimizer_adamw", out, params, n, &c);
}

AG_API int ag_optimizer_step(ag_optimizer *opt)
{
    CHECK_NOT_NULL("ag_optimizer_step", opt, "opt");
    eng_err e = optimizer_step(O(opt));
    return e ? api_fail("ag_optimizer_step", e) : AG_OK;
}

AG_API int ag_optimizer_zero_grad(ag_optimizer *opt, int set_to_none)
{
    CHECK_NOT_NULL("ag_optimizer_zero_grad", opt, "opt");
    eng_err e = optimizer_zero_grad(O(opt), set_to_none != 0);
    return e ? api_fail("ag_optimizer_zero_grad", e) : AG_OK;
}

AG_API int ag_optimizer_get_lr(double *out, const ag_optimizer *opt)
{
    CHECK_NOT_NULL("ag_optimizer_get_lr", out, "out");
    CHECK_NOT_NULL("ag_optimizer_get_lr", opt, "opt");
    *out = optimizer_get_lr(O(opt));
    return AG_OK;
}

AG_API int ag_optimizer_set_lr(ag_optimizer *opt, double lr)
{
    CHECK_NOT_NULL("ag_optimizer_set_lr", opt, "opt");
    eng_err e = optimizer_set_lr(O(opt), lr);
    return e ? api_fail("ag_optimizer_set_lr", e) : AG_OK;
}

AG_API int ag_optimizer_retain(ag_optimizer *opt)
{
    CHECK_NOT_NULL("ag_optimizer_retain", opt, "opt");
    optimizer_retain(O(opt));
    return AG_OK;
}

AG_API void ag_optimizer_release(ag_optimizer *opt) { optimizer_release(O(opt)); }
