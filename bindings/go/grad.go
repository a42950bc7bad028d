// grad.go: autograd on tensors: requires_grad, .grad, grad_fn nodes, backward, Grad, hooks,
// retain_grad, grad mode and anomaly mode.

package autograd

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync/atomic"

	"libautograd.dev/autograd/internal/capi"
)

// ---- autograd metadata of a tensor ----

// RequiresGrad reports whether operations on t are recorded for backward.
func (t *Tensor) RequiresGrad() bool {
	r := capi.Ag_tensor_requires_grad(t.c())
	runtime.KeepAlive(t)
	return r.Int() != 0
}

// SetRequiresGrad sets requires_grad on a leaf. Only float tensors can require gradients
// (EDType); requires_grad cannot be changed on a non-leaf (ELeaf).
func (t *Tensor) SetRequiresGrad(requiresGrad bool) error {
	return done(capi.Ag_tensor_set_requires_grad(t.c(), requiresGrad), t)
}

// IsLeaf reports whether t has no grad_fn (created by the user, or not requiring grad).
func (t *Tensor) IsLeaf() bool {
	r := capi.Ag_tensor_is_leaf(t.c())
	runtime.KeepAlive(t)
	return r.Int() != 0
}

// Grad returns the accumulated gradient of t (a tensor of its own), or nil if there is none
// yet. Leaves get .grad from backward; non-leaves only after RetainGrad.
func (t *Tensor) Grad() (*Tensor, error) { return result(capi.Ag_tensor_grad(t.c()), t) }

// SetGrad replaces t's .grad with g (same shape and dtype), or drops it when g is nil.
func (t *Tensor) SetGrad(g *Tensor) error {
	if err := live("SetGrad", operand{"g", g}); err != nil {
		return err
	}
	return done(capi.Ag_tensor_set_grad(t.c(), g.c()), t, g)
}

// ZeroGrad zeroes t's .grad in place if it has one.
func (t *Tensor) ZeroGrad() error { return done(capi.Ag_tensor_zero_grad(t.c()), t) }

// GradFn returns t's grad_fn, or nil for a leaf.
func (t *Tensor) GradFn() (*Node, error) {
	r := capi.Ag_tensor_grad_fn(t.c())
	runtime.KeepAlive(t)
	if !r.OK() {
		return nil, failure(r, t)
	}
	return newNode(r.Handle()), nil
}

// RetainGrad makes backward keep the gradient of a non-leaf in its .grad (a no-op on
// leaves).
func (t *Tensor) RetainGrad() error { return done(capi.Ag_tensor_retain_grad(t.c()), t) }

// RetainsGrad reports whether t is a non-leaf that retains its gradient.
func (t *Tensor) RetainsGrad() bool {
	r := capi.Ag_tensor_retains_grad(t.c())
	runtime.KeepAlive(t)
	return r.Int() != 0
}

// Detach returns a tensor sharing t's storage and version counter, cut from the graph.
func (t *Tensor) Detach() (*Tensor, error) { return result(capi.Ag_tensor_detach(t.c()), t) }

// ---- backward ----

// BackwardOptions are the optional arguments of BackwardWith.
type BackwardOptions struct {
	// Grad is the gradient of some scalar with respect to the root, of the root's shape and
	// dtype; nil is allowed for a one-element root.
	Grad *Tensor
	// RetainGraph keeps the saved tensors so backward can run again.
	RetainGraph bool
	// CreateGraph records the backward pass itself, for higher-order gradients (implies
	// RetainGraph unless FreeGraph is set).
	CreateGraph bool
	// FreeGraph, with CreateGraph, frees the saved tensors all the same, as PyTorch's
	// create_graph=True, retain_graph=False; an EInval error with RetainGraph.
	FreeGraph bool
}

func gradFlags(retain, create, allowUnused, free bool) uint {
	var f uint
	if retain {
		f |= capi.RetainGraph
	}
	if create {
		f |= capi.CreateGraph
	}
	if allowUnused {
		f |= capi.AllowUnused
	}
	if free {
		f |= capi.FreeGraph
	}
	return f
}

// Backward computes the gradient of the one-element tensor t with respect to every leaf of
// its graph and accumulates it into their .grad, like Tensor.backward().
func (t *Tensor) Backward() error { return t.BackwardWith(BackwardOptions{}) }

// BackwardWith is Backward with a gradient for a non-scalar root and graph options. If it
// fails, no .grad has changed.
func (t *Tensor) BackwardWith(o BackwardOptions) error {
	if err := live("BackwardWith", operand{"Grad", o.Grad}); err != nil {
		return err
	}
	err := done(capi.Ag_backward(t.c(), o.Grad.c(), gradFlags(o.RetainGraph, o.CreateGraph,
		false, o.FreeGraph)), t, o.Grad)
	yieldIfDue()
	return err
}

// GradOptions are the optional arguments of Grad.
type GradOptions struct {
	// GradOutputs holds one gradient per output (entries may be nil for one-element
	// outputs); nil means all nil.
	GradOutputs []*Tensor
	// RetainGraph keeps the saved tensors so backward can run again.
	RetainGraph bool
	// CreateGraph records the computation, so the results can be differentiated again
	// (implies RetainGraph unless FreeGraph is set).
	CreateGraph bool
	// FreeGraph: as in BackwardOptions.
	FreeGraph bool
	// AllowUnused gives nil for an input unreachable from the outputs instead of an ENoGrad
	// error.
	AllowUnused bool
}

// Grad computes and returns the gradients of the outputs with respect to the inputs, like
// torch.autograd.grad, without touching any .grad: result i is
// d(sum_j <outputs[j], GradOutputs[j]>)/d(inputs[i]).
func Grad(outputs, inputs []*Tensor, o GradOptions) ([]*Tensor, error) {
	if versionErr != nil { // (with empty lists, no tensor has passed the check)
		return nil, versionErr
	}
	var gradOutputs []capi.Tensor
	if o.GradOutputs != nil {
		if len(o.GradOutputs) != len(outputs) {
			return nil, errorf(EInval, "Grad: %d grad outputs for %d outputs",
				len(o.GradOutputs), len(outputs))
		}
		for i, g := range o.GradOutputs {
			if g.released() { // (C would take it for none, as nil)
				return nil, usedAfterRelease("Grad", fmt.Sprintf("GradOutputs[%d]", i))
			}
		}
		gradOutputs = handles(o.GradOutputs)
	}
	grads := make([]capi.Tensor, len(inputs))
	r := capi.Ag_grad(grads, handles(outputs), gradOutputs, int64(len(outputs)),
		handles(inputs), gradFlags(o.RetainGraph, o.CreateGraph, o.AllowUnused, o.FreeGraph))
	keepAll(outputs)
	keepAll(inputs)
	keepAll(o.GradOutputs)
	yieldIfDue()
	if !r.OK() {
		return nil, failure(r, slices.Concat(outputs, inputs, o.GradOutputs)...)
	}
	return newTensors(grads), nil
}

// ---- graph nodes ----

// Node is a node of the backward graph (PyTorch's grad_fn), e.g. "MulBackward0" or
// "AccumulateGrad". A *Node owns one reference; see Release.
type Node struct {
	h       atomic.Uintptr
	cleanup runtime.Cleanup
}

func releaseNode(h uintptr) { capi.Ag_node_release(capi.Node(h)) }

func newNode(h uintptr) *Node {
	if h == 0 {
		return nil
	}
	n := &Node{}
	n.h.Store(h)
	n.cleanup = runtime.AddCleanup(n, releaseNode, h)
	return n
}

func (n *Node) c() capi.Node {
	if n == nil {
		return 0
	}
	return capi.Node(n.h.Load())
}

// Release drops the node's reference now rather than at garbage collection.
func (n *Node) Release() {
	if n == nil {
		return
	}
	if h := n.h.Swap(0); h != 0 {
		n.cleanup.Stop()
		releaseNode(h)
	}
}

// Name returns the node's name as PyTorch spells it ("MulBackward0"); "" for nil.
func (n *Node) Name() string {
	r := capi.Ag_node_name(n.c())
	runtime.KeepAlive(n)
	return r.Str()
}

// String returns the node's name.
func (n *Node) String() string { return n.Name() }

// NumNext returns the number of next functions (one per input of the forward operation).
func (n *Node) NumNext() int {
	r := capi.Ag_node_num_next(n.c())
	runtime.KeepAlive(n)
	return int(r.Int())
}

// Next returns the i-th next function, like grad_fn.next_functions[i]: the node (nil where
// that input needs no gradient) and the output index of that node it feeds.
func (n *Node) Next(i int) (fn *Node, inputNr int64, err error) {
	if i < 0 {
		return nil, 0, errorf(ERange, "Next: index %d out of range", i)
	}
	r := capi.Ag_node_next(n.c(), int64(i))
	runtime.KeepAlive(n)
	if err := errOf(r); err != nil {
		return nil, 0, err
	}
	return newNode(r.Handle2()), r.Int(), nil
}

// Edge is one entry of NextFunctions.
type Edge struct {
	Fn      *Node // nil where the input needs no gradient
	InputNr int64 // the output index of Fn that the edge feeds
}

// NextFunctions returns all next functions, like grad_fn.next_functions.
func (n *Node) NextFunctions() ([]Edge, error) {
	k := n.NumNext()
	edges := make([]Edge, k)
	for i := range edges {
		fn, nr, err := n.Next(i)
		if err != nil {
			return nil, err
		}
		edges[i] = Edge{fn, nr}
	}
	return edges, nil
}

// Variable returns the leaf an AccumulateGrad node accumulates into (EInval for other
// nodes).
func (n *Node) Variable() (*Tensor, error) {
	r := capi.Ag_node_variable(n.c())
	runtime.KeepAlive(n)
	return result(r)
}

// ---- hooks ----

// HookHandle identifies a registered hook, for RemoveHook.
type HookHandle uint64

// statusOf is the status a failing callback reports: the code of an *Error or of a bare Code
// (return nil, autograd.EVersion) it wraps, as a C callback returns its status; else ECallback.
func statusOf(err error) int {
	var e *Error
	if errors.As(err, &e) && e.Code != OK {
		return int(e.Code)
	}
	var c Code
	if errors.As(err, &c) && c != OK {
		return int(c)
	}
	return int(ECallback)
}

// RegisterHook registers fn to be called with the gradient flowing into t during backward
// (t must require grad), like Tensor.register_hook. fn returns a replacement gradient of the
// same shape and dtype, or nil to keep it; an error aborts backward with its message and the
// status it carries (an *Error's or a Code's), or ECallback for any other error. Hooks run in registration order, possibly on a library worker
// thread, and may run concurrently with other hooks.
func (t *Tensor) RegisterHook(fn func(grad *Tensor) (*Tensor, error)) (HookHandle, error) {
	if fn == nil {
		return 0, errorf(EInval, "RegisterHook: nil hook")
	}
	hook := capi.HookFunc(func(grad capi.Tensor) (capi.Tensor, int, string) {
		ng, err := fn(borrowTensor(grad))
		if err != nil {
			return 0, statusOf(err), err.Error()
		}
		h := ng.c()
		if h == 0 {
			if ng != nil {
				return 0, int(EInval), "hook returned a released tensor"
			}
			return 0, 0, ""
		}
		capi.Ag_tensor_retain(h) // the library takes this reference
		runtime.KeepAlive(ng)
		return h, 0, ""
	})
	ud := capi.NewHandle(hook)
	r := capi.Ag_tensor_register_hook(t.c(), 0, ud)
	runtime.KeepAlive(t)
	if !r.OK() {
		capi.DeleteHandle(ud)
		return 0, failure(r, t)
	}
	return HookHandle(r.Int()), nil
}

// RemoveHook removes a hook registered on t.
//
// t must still be held: remove a tensor's hooks before releasing it. (PyTorch's handle can
// remove its hook after the tensor is gone; here a hook left on a released tensor stays for
// as long as the graph that reaches it, and runs in each backward through it.)
func (t *Tensor) RemoveHook(h HookHandle) error {
	return done(capi.Ag_tensor_remove_hook(t.c(), uint64(h)), t)
}

// ---- grad mode and anomaly mode ----

// withMode runs f on a locked OS thread with a per-thread mode set, restoring it after.
func withMode(name string, set func(bool) bool, on bool, f func() error) error {
	if versionErr != nil {
		return versionErr
	}
	if f == nil {
		return errorf(EInval, "%s: the function to run is nil", name)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	prev := set(on)
	defer set(prev)
	return f()
}

// NoGrad runs f with graph recording disabled, like `with torch.no_grad():`, and returns
// its error. The library's grad mode is per OS thread, so f runs on a locked thread and the
// mode applies to the goroutine running f only, not to goroutines f starts.
func NoGrad(f func() error) error {
	return withMode("NoGrad", capi.Ag_set_grad_enabled, false, f)
}

// EnableGrad runs f with graph recording enabled (inside NoGrad, say), like
// torch.enable_grad.
func EnableGrad(f func() error) error {
	return withMode("EnableGrad", capi.Ag_set_grad_enabled, true, f)
}

// DetectAnomaly runs f with anomaly detection on: a backward inside it fails with EAnomaly,
// naming the node, when a backward function produces NaN or Inf. Like NoGrad, it applies to
// the goroutine running f.
func DetectAnomaly(f func() error) error {
	return withMode("DetectAnomaly", capi.Ag_set_anomaly_enabled, true, f)
}

// IsGradEnabled reports whether graphs are recorded: false inside NoGrad and inside a custom
// function's Forward, and inside hooks and Backward functions unless the backward records
// itself (CreateGraph); true otherwise (EnableGrad turns it back on anywhere).
func IsGradEnabled() bool {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return capi.Ag_is_grad_enabled()
}

// IsAnomalyEnabled reports whether anomaly detection is on (inside DetectAnomaly).
func IsAnomalyEnabled() bool {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return capi.Ag_is_anomaly_enabled()
}
