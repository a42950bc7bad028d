// activation.go: the modules without parameters: activations, Identity, Softmax and
// LogSoftmax, Flatten, Dropout. Each keeps only its training mode.

package nn

import (
	"strconv"

	"libautograd.dev/autograd"
)

// apply runs op on x, which must not be nil, and prefixes its error with the module.
func apply(m Module, x *autograd.Tensor,
	op func() (*autograd.Tensor, error)) (*autograd.Tensor, error) {
	name := "nn." + moduleString(m)
	if x == nil {
		return nil, nilInput(name)
	}
	y, err := op()
	return y, wrap(name, err)
}

// newRef returns x itself as a new reference (ag_dropout in evaluation mode returns its
// input, retained: the only call of the library's API that does, whatever x's layout).
func newRef(x *autograd.Tensor, who string) (*autograd.Tensor, error) {
	var y *autograd.Tensor
	var err error
	if x.DType() == autograd.NoDType { // (nil or released; the message would name ag_dropout)
		err = errorf(autograd.EInval, "the input is nil or was released")
	} else {
		y, err = x.Dropout(nil, 0, false)
	}
	if who != "" {
		err = wrap(who, err)
	}
	return y, err
}

// ReLU is torch.nn.ReLU: max(x, 0). The zero value is ready to use.
type ReLU struct {
	eval bool
}

// NewReLU makes a ReLU.
func NewReLU() *ReLU { return &ReLU{} }

// Forward returns max(x, 0).
func (m *ReLU) Forward(x *autograd.Tensor) (*autograd.Tensor, error) {
	if m == nil {
		return nil, nilModule("ReLU", "Forward")
	}
	return apply(m, x, x.Relu)
}

// Parameters returns nil: ReLU has none.
func (m *ReLU) Parameters() []*autograd.Tensor { return nil }

// NamedParameters returns nil: ReLU has no parameters.
func (m *ReLU) NamedParameters() []NamedParameter { return nil }

// Train sets training (true) or evaluation (false) mode.
func (m *ReLU) Train(mode bool) {
	if m != nil {
		m.eval = !mode
	}
}

// Training reports whether m is in training mode (false for a nil ReLU).
func (m *ReLU) Training() bool { return m != nil && !m.eval }

// ZeroGrad does nothing (ReLU has no parameters); on a nil ReLU it is an EInval error.
func (m *ReLU) ZeroGrad(setToNone bool) error {
	if m == nil {
		return nilModule("ReLU", "ZeroGrad")
	}
	return nil
}

// Release does nothing: ReLU owns no tensors.
func (m *ReLU) Release() {}

// String returns PyTorch's representation of the module.
func (m *ReLU) String() string {
	if m == nil {
		return "ReLU(nil)"
	}
	return "ReLU()"
}

// Tanh is torch.nn.Tanh: tanh(x). The zero value is ready to use.
type Tanh struct {
	eval bool
}

// NewTanh makes a Tanh.
func NewTanh() *Tanh { return &Tanh{} }

// Forward returns tanh(x).
func (m *Tanh) Forward(x *autograd.Tensor) (*autograd.Tensor, error) {
	if m == nil {
		return nil, nilModule("Tanh", "Forward")
	}
	return apply(m, x, x.Tanh)
}

// Parameters returns nil: Tanh has none.
func (m *Tanh) Parameters() []*autograd.Tensor { return nil }

// NamedParameters returns nil: Tanh has no parameters.
func (m *Tanh) NamedParameters() []NamedParameter { return nil }

// Train sets training (true) or evaluation (false) mode.
func (m *Tanh) Train(mode bool) {
	if m != nil {
		m.eval = !mode
	}
}

// Training reports whether m is in training mode (false for a nil Tanh).
func (m *Tanh) Training() bool { return m != nil && !m.eval }

// ZeroGrad does nothing (Tanh has no parameters); on a nil Tanh it is an EInval error.
func (m *Tanh) ZeroGrad(setToNone bool) error {
	if m == nil {
		return nilModule("Tanh", "ZeroGrad")
	}
	return nil
}

// Release does nothing: Tanh owns no tensors.
func (m *Tanh) Release() {}

// String returns PyTorch's representation of the module.
func (m *Tanh) String() string {
	if m == nil {
		return "Tanh(nil)"
	}
	return "Tanh()"
}

// Sigmoid is torch.nn.Sigmoid: 1 / (1 + exp(-x)). The zero value is ready to use.
type Sigmoid struct {
	eval bool
}

// NewSigmoid makes a Sigmoid.
func NewSigmoid() *Sigmoid { return &Sigmoid{} }

// Forward returns 1 / (1 + exp(-x)).
func (m *Sigmoid) Forward(x *autograd.Tensor) (*autograd.Tensor, error) {
	if m == nil {
		return nil, nilModule("Sigmoid", "Forward")
	}
	return apply(m, x, x.Sigmoid)
}

// Parameters returns nil: Sigmoid has none.
func (m *Sigmoid) Parameters() []*autograd.Tensor { return nil }

// NamedParameters returns nil: Sigmoid has no parameters.
func (m *Sigmoid) NamedParameters() []NamedParameter { return nil }

// Train sets training (true) or evaluation (false) mode.
func (m *Sigmoid) Train(mode bool) {
	if m != nil {
		m.eval = !mode
	}
}

// Training reports whether m is in training mode (false for a nil Sigmoid).
func (m *Sigmoid) Training() bool { return m != nil && !m.eval }

// ZeroGrad does nothing (Sigmoid has no parameters); on a nil Sigmoid it is an EInval error.
func (m *Sigmoid) ZeroGrad(setToNone bool) error {
	if m == nil {
		return nilModule("Sigmoid", "ZeroGrad")
	}
	return nil
}

// Release does nothing: Sigmoid owns no tensors.
func (m *Sigmoid) Release() {}

// String returns PyTorch's representation of the module.
func (m *Sigmoid) String() string {
	if m == nil {
		return "Sigmoid(nil)"
	}
	return "Sigmoid()"
}

// SiLU is torch.nn.SiLU: x * sigmoid(x). The zero value is ready to use.
type SiLU struct {
	eval bool
}

// NewSiLU makes a SiLU.
func NewSiLU() *SiLU { return &SiLU{} }

// Forward returns x * sigmoid(x).
func (m *SiLU) Forward(x *autograd.Tensor) (*autograd.Tensor, error) {
	if m == nil {
		return nil, nilModule("SiLU", "Forward")
	}
	return apply(m, x, x.Silu)
}

// Parameters returns nil: SiLU has none.
func (m *SiLU) Parameters() []*autograd.Tensor { return nil }

// NamedParameters returns nil: SiLU has no parameters.
func (m *SiLU) NamedParameters() []NamedParameter { return nil }

// Train sets training (true) or evaluation (false) mode.
func (m *SiLU) Train(mode bool) {
	if m != nil {
		m.eval = !mode
	}
}

// Training reports whether m is in training mode (false for a nil SiLU).
func (m *SiLU) Training() bool { return m != nil && !m.eval }

// ZeroGrad does nothing (SiLU has no parameters); on a nil SiLU it is an EInval error.
func (m *SiLU) ZeroGrad(setToNone bool) error {
	if m == nil {
		return nilModule("SiLU", "ZeroGrad")
	}
	return nil
}

// Release does nothing: SiLU owns no tensors.
func (m *SiLU) Release() {}

// String returns PyTorch's representation of the module.
func (m *SiLU) String() string {
	if m == nil {
		return "SiLU(nil)"
	}
	return "SiLU()"
}

// GELU is torch.nn.GELU: x * Phi(x), exact (the erf form) or with PyTorch's tanh
// approximation. The zero value is the exact form.
type GELU struct {
	// Approximate is "none" (or ""): the erf form, or "tanh": the tanh approximation.
	Approximate string
	eval        bool
}

// NewGELU makes a GELU with approximate "none" (the erf form, PyTorch's default) or "tanh";
// another value is an EInval error.
func NewGELU(approximate string) (*GELU, error) {
	m := &GELU{Approximate: approximate}
	if _, err := m.tanh(); err != nil {
		return nil, wrap("nn.NewGELU", err)
	}
	return m, nil
}

// tanh reports whether Approximate asks for the tanh form (an error for another value).
func (m *GELU) tanh() (bool, error) {
	switch m.Approximate {
	case "", "none":
		return false, nil
	case "tanh":
		return true, nil
	}
	return false, errorf(autograd.EInval, "approximate argument must be either none or tanh, "+
		"got %q", m.Approximate)
}

// Forward returns GELU(x).
func (m *GELU) Forward(x *autograd.Tensor) (*autograd.Tensor, error) {
	if m == nil {
		return nil, nilModule("GELU", "Forward")
	}
	tanh, err := m.tanh()
	if err != nil {
		return nil, wrap("nn."+m.String(), err)
	}
	return apply(m, x, func() (*autograd.Tensor, error) { return x.Gelu(tanh) })
}

// Parameters returns nil: GELU has none.
func (m *GELU) Parameters() []*autograd.Tensor { return nil }

// NamedParameters returns nil: GELU has no parameters.
func (m *GELU) NamedParameters() []NamedParameter { return nil }

// Train sets training (true) or evaluation (false) mode.
func (m *GELU) Train(mode bool) {
	if m != nil {
		m.eval = !mode
	}
}

// Training reports whether m is in training mode (false for a nil GELU).
func (m *GELU) Training() bool { return m != nil && !m.eval }

// ZeroGrad does nothing (GELU has no parameters); on a nil GELU it is an EInval error.
func (m *GELU) ZeroGrad(setToNone bool) error {
	if m == nil {
		return nilModule("GELU", "ZeroGrad")
	}
	return nil
}

// Release does nothing: GELU owns no tensors.
func (m *GELU) Release() {}

// String returns PyTorch's representation of the module.
func (m *GELU) String() string {
	if m == nil {
		return "GELU(nil)"
	}
	a := m.Approximate
	if a == "" {
		a = "none"
	}
	return "GELU(approximate='" + a + "')"
}

// LeakyReLU is torch.nn.LeakyReLU: x where x > 0, else NegativeSlope * x.
type LeakyReLU struct {
	// NegativeSlope is the slope for x < 0 (PyTorch's default: 0.01).
	NegativeSlope float64
	eval          bool
}

// NewLeakyReLU makes a LeakyReLU with the given slope for x < 0 (PyTorch's default: 0.01).
func NewLeakyReLU(negativeSlope float64) *LeakyReLU {
	return &LeakyReLU{NegativeSlope: negativeSlope}
}

// Forward returns x where x > 0, else NegativeSlope * x.
func (m *LeakyReLU) Forward(x *autograd.Tensor) (*autograd.Tensor, error) {
	if m == nil {
		return nil, nilModule("LeakyReLU", "Forward")
	}
	return apply(m, x, func() (*autograd.Tensor, error) { return x.LeakyRelu(m.NegativeSlope) })
}

// Parameters returns nil: LeakyReLU has none.
func (m *LeakyReLU) Parameters() []*autograd.Tensor { return nil }

// NamedParameters returns nil: LeakyReLU has no parameters.
func (m *LeakyReLU) NamedParameters() []NamedParameter { return nil }

// Train sets training (true) or evaluation (false) mode.
func (m *LeakyReLU) Train(mode bool) {
	if m != nil {
		m.eval = !mode
	}
}

// Training reports whether m is in training mode (false for a nil LeakyReLU).
func (m *LeakyReLU) Training() bool { return m != nil && !m.eval }

// ZeroGrad does nothing (LeakyReLU has no parameters); on a nil LeakyReLU it is an EInval error.
func (m *LeakyReLU) ZeroGrad(setToNone bool) error {
	if m == nil {
		return nilModule("LeakyReLU", "ZeroGrad")
	}
	return nil
}

// Release does nothing: LeakyReLU owns no tensors.
func (m *LeakyReLU) Release() {}

// String returns PyTorch's representation of the module.
func (m *LeakyReLU) String() string {
	if m == nil {
		return "LeakyReLU(nil)"
	}
	return "LeakyReLU(negative_slope=" + pyFloat(m.NegativeSlope) + ")"
}

// Softplus is torch.nn.Softplus: log(1 + exp(Beta x)) / Beta, linear (x) where Beta x >
// Threshold.
type Softplus struct {
	// Beta scales x (PyTorch's default: 1).
	Beta float64
	// Threshold is where the function turns linear (PyTorch's default: 20).
	Threshold float64
	eval      bool
}

// NewSoftplus makes a Softplus (PyTorch's defaults: beta 1, threshold 20).
func NewSoftplus(beta, threshold float64) *Softplus {
	return &Softplus{Beta: beta, Threshold: threshold}
}

// Forward returns softplus(x).
func (m *Softplus) Forward(x *autograd.Tensor) (*autograd.Tensor, error) {
	if m == nil {
		return nil, nilModule("Softplus", "Forward")
	}
	return apply(m, x, func() (*autograd.Tensor, error) { return x.Softplus(m.Beta, m.Threshold) })
}

// Parameters returns nil: Softplus has none.
func (m *Softplus) Parameters() []*autograd.Tensor { return nil }

// NamedParameters returns nil: Softplus has no parameters.
func (m *Softplus) NamedParameters() []NamedParameter { return nil }

// Train sets training (true) or evaluation (false) mode.
func (m *Softplus) Train(mode bool) {
	if m != nil {
		m.eval = !mode
	}
}

// Training reports whether m is in training mode (false for a nil Softplus).
func (m *Softplus) Training() bool { return m != nil && !m.eval }

// ZeroGrad does nothing (Softplus has no parameters); on a nil Softplus it is an EInval error.
func (m *Softplus) ZeroGrad(setToNone bool) error {
	if m == nil {
		return nilModule("Softplus", "ZeroGrad")
	}
	return nil
}

// Release does nothing: Softplus owns no tensors.
func (m *Softplus) Release() {}

// String returns PyTorch's representation of the module.
func (m *Softplus) String() string {
	if m == nil {
		return "Softplus(nil)"
	}
	return "Softplus(beta=" + pyFloat(m.Beta) + ", threshold=" + pyFloat(m.Threshold) + ")"
}

// Identity is torch.nn.Identity: it returns its input (as a new reference, so that the
// output can be released like any other). The zero value is ready to use.
type Identity struct {
	eval bool
}

// NewIdentity makes an Identity.
func NewIdentity() *Identity { return &Identity{} }

// Forward returns x itself, as a new *autograd.Tensor the caller owns (same
// tensor, same grad_fn: releasing one does not release the other).
func (m *Identity) Forward(x *autograd.Tensor) (*autograd.Tensor, error) {
	if m == nil {
		return nil, nilModule("Identity", "Forward")
	}
	return apply(m, x, func() (*autograd.Tensor, error) { return newRef(x, "") })
}

// Parameters returns nil: Identity has none.
func (m *Identity) Parameters() []*autograd.Tensor { return nil }

// NamedParameters returns nil: Identity has no parameters.
func (m *Identity) NamedParameters() []NamedParameter { return nil }

// Train sets training (true) or evaluation (false) mode.
func (m *Identity) Train(mode bool) {
	if m != nil {
		m.eval = !mode
	}
}

// Training reports whether m is in training mode (false for a nil Identity).
func (m *Identity) Training() bool { return m != nil && !m.eval }

// ZeroGrad does nothing (Identity has no parameters); on a nil Identity it is an EInval error.
func (m *Identity) ZeroGrad(setToNone bool) error {
	if m == nil {
		return nilModule("Identity", "ZeroGrad")
	}
	return nil
}

// Release does nothing: Identity owns no tensors.
func (m *Identity) Release() {}

// String returns PyTorch's representation of the module.
func (m *Identity) String() string {
	if m == nil {
		return "Identity(nil)"
	}
	return "Identity()"
}

// Softmax is torch.nn.Softmax: softmax along Dim, computed stably.
type Softmax struct {
	// Dim is the dimension that sums to 1 (0-based; negative counts from the end).
	Dim  int64
	eval bool
}

// NewSoftmax makes a Softmax along dim (0-based; -1 is the last dimension).
func NewSoftmax(dim int64) *Softmax { return &Softmax{Dim: dim} }

// Forward returns softmax(x) along Dim.
func (m *Softmax) Forward(x *autograd.Tensor) (*autograd.Tensor, error) {
	if m == nil {
		return nil, nilModule("Softmax", "Forward")
	}
	return apply(m, x, func() (*autograd.Tensor, error) { return x.Softmax(m.Dim) })
}

// Parameters returns nil: Softmax has none.
func (m *Softmax) Parameters() []*autograd.Tensor { return nil }

// NamedParameters returns nil: Softmax has no parameters.
func (m *Softmax) NamedParameters() []NamedParameter { return nil }

// Train sets training (true) or evaluation (false) mode.
func (m *Softmax) Train(mode bool) {
	if m != nil {
		m.eval = !mode
	}
}

// Training reports whether m is in training mode (false for a nil Softmax).
func (m *Softmax) Training() bool { return m != nil && !m.eval }

// ZeroGrad does nothing (Softmax has no parameters); on a nil Softmax it is an EInval error.
func (m *Softmax) ZeroGrad(setToNone bool) error {
	if m == nil {
		return nilModule("Softmax", "ZeroGrad")
	}
	return nil
}

// Release does nothing: Softmax owns no tensors.
func (m *Softmax) Release() {}

// String returns PyTorch's representation of the module.
func (m *Softmax) String() string {
	if m == nil {
		return "Softmax(nil)"
	}
	return "Softmax(dim=" + strconv.FormatInt(m.Dim, 10) + ")"
}

// LogSoftmax is torch.nn.LogSoftmax: log(softmax(x)) along Dim, computed stably.
type LogSoftmax struct {
	// Dim is the dimension normalised over (0-based; negative counts from the end).
	Dim  int64
	eval bool
}

// NewLogSoftmax makes a LogSoftmax along dim (0-based; -1 is the last dimension).
func NewLogSoftmax(dim int64) *LogSoftmax { return &LogSoftmax{Dim: dim} }

// Forward returns log_softmax(x) along Dim.
func (m *LogSoftmax) Forward(x *autograd.Tensor) (*autograd.Tensor, error) {
	if m == nil {
		return nil, nilModule("LogSoftmax", "Forward")
	}
	return apply(m, x, func() (*autograd.Tensor, error) { return x.LogSoftmax(m.Dim) })
}

// Parameters returns nil: LogSoftmax has none.
func (m *LogSoftmax) Parameters() []*autograd.Tensor { return nil }

// NamedParameters returns nil: LogSoftmax has no parameters.
func (m *LogSoftmax) NamedParameters() []NamedParameter { return nil }

// Train sets training (true) or evaluation (false) mode.
func (m *LogSoftmax) Train(mode bool) {
	if m != nil {
		m.eval = !mode
	}
}

// Training reports whether m is in training mode (false for a nil LogSoftmax).
func (m *LogSoftmax) Training() bool { return m != nil && !m.eval }

// ZeroGrad does nothing (LogSoftmax has no parameters); on a nil LogSoftmax it is an EInval error.
func (m *LogSoftmax) ZeroGrad(setToNone bool) error {
	if m == nil {
		return nilModule("LogSoftmax", "ZeroGrad")
	}
	return nil
}

// Release does nothing: LogSoftmax owns no tensors.
func (m *LogSoftmax) Release() {}

// String returns PyTorch's representation of the module.
func (m *LogSoftmax) String() string {
	if m == nil {
		return "LogSoftmax(nil)"
	}
	return "LogSoftmax(dim=" + strconv.FormatInt(m.Dim, 10) + ")"
}

// Flatten is torch.nn.Flatten: it merges dimensions StartDim..EndDim into one. Make it with
// NewFlatten(1, -1) for PyTorch's nn.Flatten() (the zero value merges dimension 0 alone, a
// no-op).
type Flatten struct {
	// StartDim and EndDim are the first and last dimensions merged (0-based; negative
	// counts from the end).
	StartDim, EndDim int64
	eval             bool
}

// NewFlatten makes a Flatten of dimensions startDim..endDim; NewFlatten(1, -1) is PyTorch's
// default, which keeps the batch dimension.
func NewFlatten(startDim, endDim int64) *Flatten {
	return &Flatten{StartDim: startDim, EndDim: endDim}
}

// Forward returns x with dimensions StartDim..EndDim merged (a view where
// possible).
func (m *Flatten) Forward(x *autograd.Tensor) (*autograd.Tensor, error) {
	if m == nil {
		return nil, nilModule("Flatten", "Forward")
	}
	return apply(m, x, func() (*autograd.Tensor, error) { return x.Flatten(m.StartDim, m.EndDim) })
}

// Parameters returns nil: Flatten has none.
func (m *Flatten) Parameters() []*autograd.Tensor { return nil }

// NamedParameters returns nil: Flatten has no parameters.
func (m *Flatten) NamedParameters() []NamedParameter { return nil }

// Train sets training (true) or evaluation (false) mode.
func (m *Flatten) Train(mode bool) {
	if m != nil {
		m.eval = !mode
	}
}

// Training reports whether m is in training mode (false for a nil Flatten).
func (m *Flatten) Training() bool { return m != nil && !m.eval }

// ZeroGrad does nothing (Flatten has no parameters); on a nil Flatten it is an EInval error.
func (m *Flatten) ZeroGrad(setToNone bool) error {
	if m == nil {
		return nilModule("Flatten", "ZeroGrad")
	}
	return nil
}

// Release does nothing: Flatten owns no tensors.
func (m *Flatten) Release() {}

// String returns PyTorch's representation of the module.
func (m *Flatten) String() string {
	if m == nil {
		return "Flatten(nil)"
	}
	return "Flatten(start_dim=" + strconv.FormatInt(m.StartDim, 10) + ", end_dim=" +
		strconv.FormatInt(m.EndDim, 10) + ")"
}

// Dropout is torch.nn.Dropout: in training mode it zeroes each element with probability P
// and scales the others by 1/(1-P); in evaluation mode (Train(false)) it returns its input.
type Dropout struct {
	// P is the probability of an element being zeroed, in [0, 1].
	P float64
	// Generator is what the masks are drawn from (nil: autograd's default generator). The
	// Dropout does not own it.
	Generator *autograd.Generator
	eval      bool
}

// NewDropout makes a Dropout zeroing with probability p (PyTorch's default: 0.5), which must
// be in [0, 1] (EInval otherwise). Option: WithGenerator.
func NewDropout(p float64, opts ...Option) (*Dropout, error) {
	o, err := parseOptions("nn.NewDropout", options{}, opts, "WithGenerator")
	if err != nil {
		return nil, err
	}
	if !(p >= 0 && p <= 1) {
		return nil, errorf(autograd.EInval, "nn.NewDropout: dropout probability has to be "+
			"between 0 and 1, but got %g", p)
	}
	return &Dropout{P: p, Generator: o.gen}, nil
}

// Forward returns x with dropout applied in training mode, and x itself (a new
// reference) in evaluation mode.
func (m *Dropout) Forward(x *autograd.Tensor) (*autograd.Tensor, error) {
	if m == nil {
		return nil, nilModule("Dropout", "Forward")
	}
	return apply(m, x, func() (*autograd.Tensor, error) {
		return x.Dropout(m.Generator, m.P, !m.eval)
	})
}

// Parameters returns nil: Dropout has none.
func (m *Dropout) Parameters() []*autograd.Tensor { return nil }

// NamedParameters returns nil: Dropout has no parameters.
func (m *Dropout) NamedParameters() []NamedParameter { return nil }

// Train sets training (true) or evaluation (false) mode.
func (m *Dropout) Train(mode bool) {
	if m != nil {
		m.eval = !mode
	}
}

// Training reports whether m is in training mode (false for a nil Dropout).
func (m *Dropout) Training() bool { return m != nil && !m.eval }

// ZeroGrad does nothing (Dropout has no parameters); on a nil Dropout it is an EInval error.
func (m *Dropout) ZeroGrad(setToNone bool) error {
	if m == nil {
		return nilModule("Dropout", "ZeroGrad")
	}
	return nil
}

// Release does nothing: Dropout owns no tensors.
func (m *Dropout) Release() {}

// String returns PyTorch's representation of the module.
func (m *Dropout) String() string {
	if m == nil {
		return "Dropout(nil)"
	}
	return "Dropout(p=" + pyFloat(m.P) + ", inplace=False)"
}
