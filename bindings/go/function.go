// function.go: custom functions (Function, Context), torch.autograd.Function's counterpart:
// a Go Forward and Backward run by the library's graph.

package autograd

import (
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"

	"libautograd.dev/autograd/internal/capi"
)

// Function is a custom differentiable function, like a subclass of torch.autograd.Function:
// Forward computes the outputs from the inputs (with grad mode off), Backward the gradients
// of the inputs from those of the outputs. Both may run on a library worker thread.
type Function struct {
	// Name names the grad_fn of the outputs: "MyExp" gives "MyExpBackward".
	Name string
	// NumOutputs is the number of outputs Forward returns (0 means 1), at most 64.
	NumOutputs int
	// Forward returns NumOutputs tensors computed from the inputs. Tensors it wants in
	// Backward are saved with ctx.SaveForBackward.
	Forward func(ctx *Context, inputs []*Tensor) ([]*Tensor, error)
	// Backward returns one gradient per input (nil for none) from one gradient per output
	// (a tensor of zeros for an output that received none).
	Backward func(ctx *Context, gradOutputs []*Tensor) ([]*Tensor, error)
}

// Context is what a custom function's Forward and Backward receive, like ctx in PyTorch. It
// is valid only during the call it was passed to.
type Context struct {
	h atomic.Uintptr
}

func (c *Context) handle(fn string) (capi.FunctionCtx, error) {
	if c == nil {
		return 0, errorf(EInval, "%s: the context is nil", fn)
	}
	h := capi.FunctionCtx(c.h.Load())
	if h == 0 {
		return 0, errorf(EInval, "%s: the context is used outside its Forward or Backward", fn)
	}
	return h, nil
}

// SaveForBackward saves tensors for Backward (ctx.save_for_backward); call it from Forward.
// Their versions are recorded, and Backward's SavedTensors fails with EVersion if one was
// modified in place since.
func (c *Context) SaveForBackward(ts ...*Tensor) error {
	h, err := c.handle("SaveForBackward")
	if err != nil {
		return err
	}
	for _, t := range ts {
		if err := done(capi.Ag_function_ctx_save(h, t.c()), t); err != nil {
			return err
		}
	}
	return nil
}

// SavedTensors returns the tensors saved by Forward (ctx.saved_tensors); call it from
// Backward.
func (c *Context) SavedTensors() ([]*Tensor, error) {
	h, err := c.handle("SavedTensors")
	if err != nil {
		return nil, err
	}
	r := capi.Ag_function_ctx_num_saved(h)
	if err := errOf(r); err != nil {
		return nil, err
	}
	ts := make([]*Tensor, r.Int())
	for i := range ts {
		if ts[i], err = result(capi.Ag_function_ctx_saved(h, int64(i))); err != nil {
			return nil, err
		}
	}
	return ts, nil
}

// NeedsInputGrad reports whether input i needs a gradient (ctx.needs_input_grad[i]): it
// required grad, with grad mode on, when the function was applied. Call it from Forward or
// Backward.
func (c *Context) NeedsInputGrad(i int) bool {
	h, err := c.handle("NeedsInputGrad")
	if err != nil || i < 0 {
		return false
	}
	return capi.Ag_function_ctx_needs_input_grad(h, int64(i)).Int() != 0
}

// callback runs a custom function's half: borrowed tensors in, new references out.
func (f *Function) callback(half string, run func(*Context, []*Tensor) ([]*Tensor, error),
	ctx capi.FunctionCtx, outs, ins []capi.Tensor, nilOK bool) (int, string) {
	c := &Context{}
	c.h.Store(uintptr(ctx))
	defer c.h.Store(0)
	in := make([]*Tensor, len(ins))
	for i, h := range ins {
		in[i] = borrowTensor(h)
	}
	res, err := run(c, in)
	if err != nil {
		return statusOf(err), err.Error()
	}
	if len(res) != len(outs) {
		return int(ECallback), fmt.Sprintf("%s.%s returned %d tensors, want %d", f.Name, half,
			len(res), len(outs))
	}
	for i, t := range res {
		h := t.c()
		if h == 0 && (t != nil || !nilOK) {
			return int(ECallback), fmt.Sprintf("%s.%s: result %d is nil or released", f.Name,
				half, i)
		}
		if h != 0 {
			capi.Ag_tensor_retain(h) // the library takes this reference
		}
		outs[i] = h
	}
	keepAll(res)
	return 0, ""
}

// maxFunctionArity is ag_function_apply's bound on both counts, outputs and inputs.
const maxFunctionArity = 64

// Apply runs the function on inputs, like Function.apply: Forward runs now, and if grad mode
// is on and an input requires grad, the outputs get a grad_fn named Name + "Backward" that
// calls Backward. It takes at most 64 inputs (EInval otherwise, as NumOutputs above 64).
func (f *Function) Apply(inputs ...*Tensor) ([]*Tensor, error) {
	if versionErr != nil { // (with no inputs, no tensor has passed the check)
		return nil, versionErr
	}
	if f == nil || f.Forward == nil || f.Backward == nil {
		return nil, errorf(EInval, "Apply: a Function needs Forward and Backward")
	}
	n := f.NumOutputs
	if n == 0 {
		n = 1
	}
	// Both counts are checked before anything is allocated for them: NumOutputs 1<<40 made a
	// slice the process died allocating (1<<62: a makeslice panic) before C could refuse it.
	if n < 0 || n > maxFunctionArity {
		return nil, errorf(EInval, "Apply: NumOutputs is %d: a custom function has 1 to %d "+
			"outputs", n, maxFunctionArity)
	}
	if len(inputs) > maxFunctionArity {
		return nil, errorf(EInval, "Apply: %d inputs: a custom function takes at most %d",
			len(inputs), maxFunctionArity)
	}
	if strings.IndexByte(f.Name, 0) >= 0 { // (C would read the name up to it)
		return nil, errorf(EInval, "Apply: the Name %q holds a NUL byte", f.Name)
	}
	fn := &capi.Function{
		Forward: func(ctx capi.FunctionCtx, outs, ins []capi.Tensor) (int, string) {
			return f.callback("Forward", f.Forward, ctx, outs, ins, false)
		},
		Backward: func(ctx capi.FunctionCtx, gradIns, gradOuts []capi.Tensor) (int, string) {
			return f.callback("Backward", f.Backward, ctx, gradIns, gradOuts, true)
		},
	}
	ud := capi.NewHandle(fn)
	outs := make([]capi.Tensor, n)
	r := capi.Ag_function_apply(outs, handles(inputs), f.Name, 0, ud)
	keepAll(inputs)
	runtime.KeepAlive(f)
	if !r.OK() {
		capi.DeleteHandle(ud) // the library did not take it
		return nil, failure(r, inputs...)
	}
	return newTensors(outs), nil
}
