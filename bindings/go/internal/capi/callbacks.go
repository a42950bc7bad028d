// callbacks.go: the Go side of the C trampolines (callbacks.c): hooks and custom functions
// called from C.

package capi

// Callbacks from C into Go: the exported functions the trampolines of callbacks.c call. The
// Go function to run travels as a runtime/cgo.Handle in the callback's userdata. A callback
// runs on the C thread that called it (for backward, possibly an OpenMP worker), so failures
// are recorded there with ag_set_error, as the library asks of callbacks; a panic is
// recovered and reported the same way, since it must not unwind through C frames.

/*
#include <stdint.h>
#include <stdlib.h>
#include "autograd.h"
*/
import "C"

import (
	"fmt"
	"runtime/cgo"
	"unsafe"
)

// HookFunc is a gradient hook: it receives the gradient flowing into a tensor (borrowed) and
// returns a replacement (a new reference, which the library takes) or 0 to keep it. A
// nonzero status aborts backward with msg.
type HookFunc func(grad Tensor) (newGrad Tensor, status int, msg string)

// ForwardFunc computes a custom function's outputs (new references) from its inputs
// (borrowed).
type ForwardFunc func(ctx FunctionCtx, outputs []Tensor, inputs []Tensor) (status int, msg string)

// BackwardFunc computes a custom function's input gradients (new references, or 0 for none)
// from its output gradients (borrowed).
type BackwardFunc func(ctx FunctionCtx, gradInputs []Tensor, gradOutputs []Tensor) (status int, msg string)

// Function is the userdata of ag_function_apply.
type Function struct {
	Forward  ForwardFunc
	Backward BackwardFunc
}

// NewHandle wraps a HookFunc or a *Function as userdata. The library deletes it (through
// ago_handle_delete) once it lets the callback go; if the call that would take it fails,
// the caller deletes it with DeleteHandle.
func NewHandle(v any) uintptr { return uintptr(cgo.NewHandle(v)) }

// DeleteHandle deletes a handle that the library did not take.
func DeleteHandle(h uintptr) { cgo.Handle(h).Delete() }

// fail records a callback's failure on the calling thread and returns its status. A status
// that C's int cannot hold is no code of the library's: it fails as ECallback, as C reports
// any other such status, instead of being truncated into one (1<<32 became 0, a success, and
// 1<<32 | 3 became AG_ESHAPE).
func fail(status int, msg string) C.int {
	if status == 0 || status != int(int32(status)) {
		status = ECallback
	}
	cs := C.CString(msg)
	C.ag_set_error(C.int(status), cs)
	C.free(unsafe.Pointer(cs))
	return C.int(status)
}

// recovered turns a panic in a callback into a failure.
func recovered(rc *C.int) {
	if r := recover(); r != nil {
		*rc = fail(ECallback, fmt.Sprint("panic in a Go callback: ", r))
	}
}

func tensors(p *C.uintptr_t, n C.size_t) []Tensor {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*Tensor)(unsafe.Pointer(p)), int(n))
}

//export agoHook
func agoHook(h C.uintptr_t, grad C.uintptr_t, newGrad *C.uintptr_t) (rc C.int) {
	defer recovered(&rc)
	ng, status, msg := cgo.Handle(h).Value().(HookFunc)(Tensor(grad))
	if status != 0 {
		return fail(status, msg)
	}
	*newGrad = C.uintptr_t(ng)
	return 0
}

//export agoForward
func agoForward(h, ctx C.uintptr_t, outputs *C.uintptr_t, nOut C.size_t, inputs *C.uintptr_t,
	nIn C.size_t) (rc C.int) {
	defer recovered(&rc)
	f := cgo.Handle(h).Value().(*Function)
	if status, msg := f.Forward(FunctionCtx(ctx), tensors(outputs, nOut), tensors(inputs, nIn)); status != 0 {
		return fail(status, msg)
	}
	return 0
}

//export agoBackward
func agoBackward(h, ctx C.uintptr_t, gradInputs *C.uintptr_t, nIn C.size_t,
	gradOutputs *C.uintptr_t, nOut C.size_t) (rc C.int) {
	defer recovered(&rc)
	f := cgo.Handle(h).Value().(*Function)
	if status, msg := f.Backward(FunctionCtx(ctx), tensors(gradInputs, nIn), tensors(gradOutputs, nOut)); status != 0 {
		return fail(status, msg)
	}
	return 0
}

//export agoHandleDelete
func agoHandleDelete(h C.uintptr_t) {
	cgo.Handle(h).Delete()
}
