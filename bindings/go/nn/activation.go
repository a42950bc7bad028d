// activation.go: the modules without parameters: activations, Identity, Softmax and
// LogSoftmax, Flatten, Dropout. They are one generic type, Func, whose methods are written
// once; each module is an alias of Func for one kind of function (ReLU = Func[relu]), and the
// kind supplies the computation and PyTorch's representation.

package nn

import (
	"strconv"
	"strings"

	"libautograd.dev/autograd"
)

// kind is what distinguishes the modules without parameters: the computation and PyTorch's
// representation. Its methods are unexported, so the kinds are this file's.
type kind interface {
	// repr is PyTorch's representation of the module: "ReLU()",
	// "LeakyReLU(negative_slope=0.01)" (its class name, then its arguments in parentheses).
	repr() string
	// forward computes the output for x, which is not nil; training is the module's mode.
	forward(x *autograd.Tensor, training bool) (*autograd.Tensor, error)
}

// Func is a module without parameters: a function of its input (and, for Dropout, of the
// training mode). Its instances are the modules ReLU, Tanh, Sigmoid, SiLU, GELU, LeakyReLU,
// Softplus, Identity, Softmax, LogSoftmax, Flatten and Dropout; make them with their
// constructors (NewReLU, NewGELU ...) or as composite literals (&nn.ReLU{}, &nn.Softmax{Config:
// nn.SoftmaxConfig{Dim: -1}}). Config holds the module's arguments (GELUConfig,
// LeakyReLUConfig ...; an unexported empty struct for the modules that take none), e.g.
// m.Config.NegativeSlope of a *LeakyReLU. The zero value is in training mode.
//
// Every method works on a nil *Func as on a module that is missing: Forward and ZeroGrad
// return an EInval error, Train and Release do nothing, Training is false, Parameters and
// NamedParameters are nil, and String is "ReLU(nil)".
type Func[K kind] struct {
	// Config is the function and its arguments.
	Config K
	eval   bool
}

// kindName is PyTorch's class name of kind K, "ReLU": its representation up to "(" (a nil
// *Func[K] has no Config to ask; the zero K stands in).
func kindName[K kind]() string {
	var k K
	name, _, _ := strings.Cut(k.repr(), "(")
	return name
}

// Forward applies the module's function to x. The result is a new tensor the caller owns,
// even where it is x itself (Identity, and Dropout in evaluation mode). An error is prefixed
// with the module: "nn.Softmax(dim=2): ag_softmax: ...".
func (m *Func[K]) Forward(x *autograd.Tensor) (*autograd.Tensor, error) {
	if m == nil {
		return nil, nilModule(kindName[K](), "Forward")
	}
	name := "nn." + m.String()
	if x == nil {
		return nil, nilInput(name)
	}
	y, err := m.Config.forward(x, !m.eval)
	return y, wrap(name, err)
}

// Parameters returns nil: the module has none.
func (m *Func[K]) Parameters() []*autograd.Tensor { return nil }

// NamedParameters returns nil: the module has no parameters.
func (m *Func[K]) NamedParameters() []NamedParameter { return nil }

// Train sets training (true) or evaluation (false) mode; only Dropout computes differently.
func (m *Func[K]) Train(mode bool) {
	if m != nil {
		m.eval = !mode
	}
}

// Training reports whether m is in training mode (false for a nil module).
func (m *Func[K]) Training() bool { return m != nil && !m.eval }

// ZeroGrad does nothing (there are no parameters); on a nil module it is an EInval error.
func (m *Func[K]) ZeroGrad(setToNone bool) error {
	if m == nil {
		return nilModule(kindName[K](), "ZeroGrad")
	}
	return nil
}

// Release does nothing: the module owns no tensors.
func (m *Func[K]) Release() {}

// String returns PyTorch's representation of the module: "ReLU()",
// "LeakyReLU(negative_slope=0.01)"; "ReLU(nil)" for a nil module.
func (m *Func[K]) String() string {
	if m == nil {
		return kindName[K]() + "(nil)"
	}
	return m.Config.repr()
}

// ---- the modules without arguments ----

// ReLU, Tanh, Sigmoid, SiLU and Identity take no arguments: their zero values are ready to
// use (&ReLU{} is NewReLU()).
type (
	// ReLU is torch.nn.ReLU: max(x, 0).
	ReLU = Func[relu]
	// Tanh is torch.nn.Tanh: tanh(x).
	Tanh = Func[tanh]
	// Sigmoid is torch.nn.Sigmoid: 1 / (1 + exp(-x)).
	Sigmoid = Func[sigmoid]
	// SiLU is torch.nn.SiLU: x * sigmoid(x).
	SiLU = Func[silu]
	// Identity is torch.nn.Identity: it returns its input, as a new reference (same tensor,
	// same grad_fn: releasing the output does not release the input).
	Identity = Func[identity]
)

// NewReLU makes a ReLU.
func NewReLU() *ReLU { return &ReLU{} }

// NewTanh makes a Tanh.
func NewTanh() *Tanh { return &Tanh{} }

// NewSigmoid makes a Sigmoid.
func NewSigmoid() *Sigmoid { return &Sigmoid{} }

// NewSiLU makes a SiLU.
func NewSiLU() *SiLU { return &SiLU{} }

// NewIdentity makes an Identity.
func NewIdentity() *Identity { return &Identity{} }

// The kinds of the modules without arguments.
type (
	relu     struct{}
	tanh     struct{}
	sigmoid  struct{}
	silu     struct{}
	identity struct{}
)

func (relu) repr() string     { return "ReLU()" }
func (tanh) repr() string     { return "Tanh()" }
func (sigmoid) repr() string  { return "Sigmoid()" }
func (silu) repr() string     { return "SiLU()" }
func (identity) repr() string { return "Identity()" }

func (relu) forward(x *autograd.Tensor, _ bool) (*autograd.Tensor, error)     { return x.Relu() }
func (tanh) forward(x *autograd.Tensor, _ bool) (*autograd.Tensor, error)     { return x.Tanh() }
func (sigmoid) forward(x *autograd.Tensor, _ bool) (*autograd.Tensor, error)  { return x.Sigmoid() }
func (silu) forward(x *autograd.Tensor, _ bool) (*autograd.Tensor, error)     { return x.Silu() }
func (identity) forward(x *autograd.Tensor, _ bool) (*autograd.Tensor, error) { return newRef(x) }

// newRef returns x itself as a new reference (ag_dropout in evaluation mode returns its
// input, retained: the only call of the library's API that does, whatever x's layout).
func newRef(x *autograd.Tensor) (*autograd.Tensor, error) {
	if x.DType() == autograd.NoDType { // (nil or released; the message would name ag_dropout)
		return nil, errorf(autograd.EInval, "the input is nil or was released")
	}
	return x.Dropout(nil, 0, false)
}

// ---- the modules with arguments, in Config ----

// GELU is torch.nn.GELU: x * Phi(x), exact (the erf form) or with PyTorch's tanh
// approximation. The zero value is the exact form.
type GELU = Func[GELUConfig]

// GELUConfig is the argument of a GELU.
type GELUConfig struct {
	// Approximate is "none" (or ""): the erf form, or "tanh": the tanh approximation.
	Approximate string
}

// NewGELU makes a GELU with approximate "none" (the erf form, PyTorch's default) or "tanh";
// another value is an EInval error.
func NewGELU(approximate string) (*GELU, error) {
	c := GELUConfig{Approximate: approximate}
	if _, err := c.useTanh(); err != nil {
		return nil, wrap("nn.NewGELU", err)
	}
	return &GELU{Config: c}, nil
}

// useTanh reports whether Approximate asks for the tanh form (an error for another value).
func (c GELUConfig) useTanh() (bool, error) {
	switch c.Approximate {
	case "", "none":
		return false, nil
	case "tanh":
		return true, nil
	}
	return false, errorf(autograd.EInval, "approximate argument must be either none or tanh, "+
		"got %q", c.Approximate)
}

func (c GELUConfig) repr() string {
	a := c.Approximate
	if a == "" {
		a = "none"
	}
	return "GELU(approximate='" + a + "')"
}

func (c GELUConfig) forward(x *autograd.Tensor, _ bool) (*autograd.Tensor, error) {
	useTanh, err := c.useTanh()
	if err != nil {
		return nil, err
	}
	return x.Gelu(useTanh)
}

// LeakyReLU is torch.nn.LeakyReLU: x where x > 0, else Config.NegativeSlope * x. (The zero
// value has slope 0; PyTorch's default is NewLeakyReLU(0.01).)
type LeakyReLU = Func[LeakyReLUConfig]

// LeakyReLUConfig is the argument of a LeakyReLU.
type LeakyReLUConfig struct {
	// NegativeSlope is the slope for x < 0 (PyTorch's default: 0.01).
	NegativeSlope float64
}

// NewLeakyReLU makes a LeakyReLU with the given slope for x < 0 (PyTorch's default: 0.01).
func NewLeakyReLU(negativeSlope float64) *LeakyReLU {
	return &LeakyReLU{Config: LeakyReLUConfig{NegativeSlope: negativeSlope}}
}

func (c LeakyReLUConfig) repr() string {
	return "LeakyReLU(negative_slope=" + pyFloat(c.NegativeSlope) + ")"
}

func (c LeakyReLUConfig) forward(x *autograd.Tensor, _ bool) (*autograd.Tensor, error) {
	return x.LeakyRelu(c.NegativeSlope)
}

// Softplus is torch.nn.Softplus: log(1 + exp(Beta x)) / Beta, linear (x) where Beta x >
// Threshold (Beta and Threshold are in Config).
type Softplus = Func[SoftplusConfig]

// SoftplusConfig holds the arguments of a Softplus.
type SoftplusConfig struct {
	// Beta scales x (PyTorch's default: 1).
	Beta float64
	// Threshold is where the function turns linear (PyTorch's default: 20).
	Threshold float64
}

// NewSoftplus makes a Softplus (PyTorch's defaults: beta 1, threshold 20).
func NewSoftplus(beta, threshold float64) *Softplus {
	return &Softplus{Config: SoftplusConfig{Beta: beta, Threshold: threshold}}
}

func (c SoftplusConfig) repr() string {
	return "Softplus(beta=" + pyFloat(c.Beta) + ", threshold=" + pyFloat(c.Threshold) + ")"
}

func (c SoftplusConfig) forward(x *autograd.Tensor, _ bool) (*autograd.Tensor, error) {
	return x.Softplus(c.Beta, c.Threshold)
}

// Softmax is torch.nn.Softmax: softmax along Config.Dim, computed stably.
type Softmax = Func[SoftmaxConfig]

// SoftmaxConfig is the argument of a Softmax.
type SoftmaxConfig struct {
	// Dim is the dimension that sums to 1 (0-based; negative counts from the end).
	Dim int64
}

// NewSoftmax makes a Softmax along dim (0-based; -1 is the last dimension).
func NewSoftmax(dim int64) *Softmax { return &Softmax{Config: SoftmaxConfig{Dim: dim}} }

func (c SoftmaxConfig) repr() string { return dimRepr("Softmax", c.Dim) }

func (c SoftmaxConfig) forward(x *autograd.Tensor, _ bool) (*autograd.Tensor, error) {
	return x.Softmax(c.Dim)
}

// LogSoftmax is torch.nn.LogSoftmax: log(softmax(x)) along Config.Dim, computed stably.
type LogSoftmax = Func[LogSoftmaxConfig]

// LogSoftmaxConfig is the argument of a LogSoftmax, as of a Softmax: Dim, the dimension
// normalised over (0-based; negative counts from the end).
type LogSoftmaxConfig SoftmaxConfig

// NewLogSoftmax makes a LogSoftmax along dim (0-based; -1 is the last dimension).
func NewLogSoftmax(dim int64) *LogSoftmax {
	return &LogSoftmax{Config: LogSoftmaxConfig{Dim: dim}}
}

func (c LogSoftmaxConfig) repr() string { return dimRepr("LogSoftmax", c.Dim) }

func (c LogSoftmaxConfig) forward(x *autograd.Tensor, _ bool) (*autograd.Tensor, error) {
	return x.LogSoftmax(c.Dim)
}

// dimRepr is the representation of Softmax and LogSoftmax: "Softmax(dim=-1)".
func dimRepr(name string, dim int64) string {
	return name + "(dim=" + strconv.FormatInt(dim, 10) + ")"
}

// Flatten is torch.nn.Flatten: it merges dimensions Config.StartDim..Config.EndDim into one.
// Make it with NewFlatten(1, -1) for PyTorch's nn.Flatten() (the zero value merges dimension
// 0 alone, a no-op). The result is a view where possible.
type Flatten = Func[FlattenConfig]

// FlattenConfig holds the arguments of a Flatten.
type FlattenConfig struct {
	// StartDim and EndDim are the first and last dimensions merged (0-based; negative
	// counts from the end).
	StartDim, EndDim int64
}

// NewFlatten makes a Flatten of dimensions startDim..endDim; NewFlatten(1, -1) is PyTorch's
// default, which keeps the batch dimension.
func NewFlatten(startDim, endDim int64) *Flatten {
	return &Flatten{Config: FlattenConfig{StartDim: startDim, EndDim: endDim}}
}

func (c FlattenConfig) repr() string {
	return "Flatten(start_dim=" + strconv.FormatInt(c.StartDim, 10) + ", end_dim=" +
		strconv.FormatInt(c.EndDim, 10) + ")"
}

func (c FlattenConfig) forward(x *autograd.Tensor, _ bool) (*autograd.Tensor, error) {
	return x.Flatten(c.StartDim, c.EndDim)
}

// Dropout is torch.nn.Dropout: in training mode it zeroes each element with probability
// Config.P and scales the others by 1/(1-P); in evaluation mode (Train(false)) it returns its
// input (as a new reference).
type Dropout = Func[DropoutConfig]

// DropoutConfig holds the arguments of a Dropout.
type DropoutConfig struct {
	// P is the probability of an element being zeroed, in [0, 1].
	P float64
	// Generator is what the masks are drawn from (nil: autograd's default generator). The
	// Dropout does not own it.
	Generator *autograd.Generator
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
	return &Dropout{Config: DropoutConfig{P: p, Generator: o.gen}}, nil
}

func (c DropoutConfig) repr() string { return "Dropout(p=" + pyFloat(c.P) + ", inplace=False)" }

func (c DropoutConfig) forward(x *autograd.Tensor, training bool) (*autograd.Tensor, error) {
	return x.Dropout(c.Generator, c.P, training)
}
