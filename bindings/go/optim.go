// optim.go: the optimizers (SGD, Adam, AdamW) and their options.

package autograd

import (
	"runtime"
	"slices"
	"sync/atomic"

	"libautograd.dev/autograd/internal/capi"
)

// Optimizer updates a list of parameters (leaf float tensors requiring grad) from their
// .grad with PyTorch's formulas; it keeps its own reference to each parameter. A *Optimizer
// owns one reference to the library's optimizer; see Release.
type Optimizer struct {
	h       atomic.Uintptr
	cleanup runtime.Cleanup
}

func releaseOptimizer(h uintptr) { capi.Ag_optimizer_release(capi.Optimizer(h)) }

// OptimizerOption sets an optional hyper-parameter of an optimizer.
type OptimizerOption func(*optArgs)

type optArgs struct {
	momentum, dampening, weightDecay, beta1, beta2, eps float64
	nesterov, amsgrad                                   bool
	set                                                 []string // the options given
}

// WithMomentum sets SGD's momentum (default 0).
func WithMomentum(m float64) OptimizerOption {
	return func(a *optArgs) { a.momentum = m; a.set = append(a.set, "WithMomentum") }
}

// WithDampening sets SGD's dampening (default 0).
func WithDampening(d float64) OptimizerOption {
	return func(a *optArgs) { a.dampening = d; a.set = append(a.set, "WithDampening") }
}

// WithNesterov enables Nesterov momentum for SGD (needs momentum > 0 and dampening 0).
func WithNesterov(on bool) OptimizerOption {
	return func(a *optArgs) { a.nesterov = on; a.set = append(a.set, "WithNesterov") }
}

// WithWeightDecay sets the weight decay: L2 added to the gradient for SGD and Adam (default
// 0), decoupled for AdamW (default 1e-2).
func WithWeightDecay(w float64) OptimizerOption {
	return func(a *optArgs) { a.weightDecay = w; a.set = append(a.set, "WithWeightDecay") }
}

// WithBetas sets Adam's and AdamW's betas (default 0.9, 0.999).
func WithBetas(beta1, beta2 float64) OptimizerOption {
	return func(a *optArgs) { a.beta1, a.beta2 = beta1, beta2; a.set = append(a.set, "WithBetas") }
}

// WithEps sets Adam's and AdamW's eps (default 1e-8).
func WithEps(eps float64) OptimizerOption {
	return func(a *optArgs) { a.eps = eps; a.set = append(a.set, "WithEps") }
}

// WithAMSGrad enables the AMSGrad variant of Adam and AdamW.
func WithAMSGrad(on bool) OptimizerOption {
	return func(a *optArgs) { a.amsgrad = on; a.set = append(a.set, "WithAMSGrad") }
}

func optOptions(fn string, a optArgs, opts []OptimizerOption, allowed ...string) (optArgs, error) {
	for _, o := range opts {
		if o != nil {
			o(&a)
		}
	}
	for _, name := range a.set {
		if !slices.Contains(allowed, name) {
			return a, errorf(EInval, "%s: %s does not apply", fn, name)
		}
	}
	return a, nil
}

func newOptimizer(r capi.Ret, params []*Tensor) (*Optimizer, error) {
	keepAll(params)
	if !r.OK() {
		return nil, failure(r, params...)
	}
	o := &Optimizer{}
	o.h.Store(r.Handle())
	o.cleanup = runtime.AddCleanup(o, releaseOptimizer, r.Handle())
	return o, nil
}

// NewSGD creates torch.optim.SGD over params with learning rate lr. Options: WithMomentum,
// WithDampening, WithWeightDecay, WithNesterov.
func NewSGD(params []*Tensor, lr float64, opts ...OptimizerOption) (*Optimizer, error) {
	if versionErr != nil {
		return nil, versionErr
	}
	a, err := optOptions("NewSGD", optArgs{}, opts, "WithMomentum", "WithDampening",
		"WithWeightDecay", "WithNesterov")
	if err != nil {
		return nil, err
	}
	return newOptimizer(capi.Ag_optimizer_sgd(handles(params), lr, a.momentum, a.dampening,
		a.weightDecay, a.nesterov), params)
}

// NewAdam creates torch.optim.Adam over params with learning rate lr (PyTorch's default:
// 1e-3). Options: WithBetas, WithEps, WithWeightDecay, WithAMSGrad.
func NewAdam(params []*Tensor, lr float64, opts ...OptimizerOption) (*Optimizer, error) {
	if versionErr != nil {
		return nil, versionErr
	}
	a, err := optOptions("NewAdam", optArgs{beta1: 0.9, beta2: 0.999, eps: 1e-8}, opts,
		"WithBetas", "WithEps", "WithWeightDecay", "WithAMSGrad")
	if err != nil {
		return nil, err
	}
	return newOptimizer(capi.Ag_optimizer_adam(handles(params), lr, a.beta1, a.beta2, a.eps,
		a.weightDecay, a.amsgrad), params)
}

// NewAdamW creates torch.optim.AdamW (Adam with decoupled weight decay, default 1e-2) over
// params with learning rate lr. Options: WithBetas, WithEps, WithWeightDecay, WithAMSGrad.
func NewAdamW(params []*Tensor, lr float64, opts ...OptimizerOption) (*Optimizer, error) {
	if versionErr != nil {
		return nil, versionErr
	}
	a, err := optOptions("NewAdamW", optArgs{beta1: 0.9, beta2: 0.999, eps: 1e-8,
		weightDecay: 1e-2}, opts, "WithBetas", "WithEps", "WithWeightDecay", "WithAMSGrad")
	if err != nil {
		return nil, err
	}
	return newOptimizer(capi.Ag_optimizer_adamw(handles(params), lr, a.beta1, a.beta2, a.eps,
		a.weightDecay, a.amsgrad), params)
}

func (o *Optimizer) c() capi.Optimizer {
	if o == nil {
		return 0
	}
	return capi.Optimizer(o.h.Load())
}

func (o *Optimizer) done(r capi.Ret) error {
	runtime.KeepAlive(o)
	if !r.OK() && o != nil && o.h.Load() == 0 {
		r.Msg += " (an optimizer was used after Release)"
	}
	return errOf(r)
}

// Step applies one update to the parameters that have a .grad, with grad mode off. If a
// .grad no longer matches its parameter, nothing is updated.
func (o *Optimizer) Step() error {
	err := o.done(capi.Ag_optimizer_step(o.c()))
	yieldIfDue()
	return err
}

// ZeroGrad zeroes every parameter's .grad in place, or drops them when setToNone is true.
func (o *Optimizer) ZeroGrad(setToNone bool) error {
	return o.done(capi.Ag_optimizer_zero_grad(o.c(), setToNone))
}

// LR returns the learning rate (0 for a nil or released optimizer).
func (o *Optimizer) LR() float64 {
	r := capi.Ag_optimizer_get_lr(o.c())
	runtime.KeepAlive(o)
	return r.Float()
}

// SetLR sets the learning rate (finite and >= 0).
func (o *Optimizer) SetLR(lr float64) error { return o.done(capi.Ag_optimizer_set_lr(o.c(), lr)) }

// Release drops the optimizer's reference (and with the last one its state and its
// references to the parameters) now rather than at garbage collection.
func (o *Optimizer) Release() {
	if o == nil {
		return
	}
	if h := o.h.Swap(0); h != 0 {
		o.cleanup.Stop()
		releaseOptimizer(h)
	}
}
