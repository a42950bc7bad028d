/*
 * callbacks.c: the C side of hooks and custom functions. The SWIG wrappers always hand the
 * library these trampolines (see bindings/go/typemaps.i); each forwards to a Go function
 * exported by callbacks.go, with the runtime/cgo.Handle that travels as userdata. Handles are
 * passed as uintptr_t: Go sees them as its Tensor/FunctionCtx integer types.
 */
#include "_cgo_export.h"

int ago_hook_trampoline(ag_tensor **new_grad, ag_tensor *grad, void *userdata)
{
    return agoHook((uintptr_t)userdata, (uintptr_t)grad, (uintptr_t *)new_grad);
}

int ago_forward_trampoline(ag_function_ctx *ctx, ag_tensor **outputs, size_t n_outputs,
                           ag_tensor *const *inputs, size_t n_inputs, void *userdata)
{
    return agoForward((uintptr_t)userdata, (uintptr_t)ctx, (uintptr_t *)outputs, n_outputs,
                      (uintptr_t *)inputs, n_inputs);
}

int ago_backward_trampoline(ag_function_ctx *ctx, ag_tensor **grad_inputs, size_t n_inputs,
                            ag_tensor *const *grad_outputs, size_t n_outputs, void *userdata)
{
    return agoBackward((uintptr_t)userdata, (uintptr_t)ctx, (uintptr_t *)grad_inputs, n_inputs,
                       (uintptr_t *)grad_outputs, n_outputs);
}

void ago_handle_delete(void *userdata)
{
    agoHandleDelete((uintptr_t)userdata);
}
