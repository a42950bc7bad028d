package nn

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"libautograd.dev/autograd"
)

// LayerNorm is torch.nn.LayerNorm: it normalises its input over the last
// len(NormalizedShape) dimensions, which must equal NormalizedShape, to mean 0 and variance 1
// (the biased variance, plus Eps), then scales by Weight and adds Bias where they are set:
// y = (x - mean) / sqrt(var + Eps) * Weight + Bias.
type LayerNorm struct {
	// NormalizedShape is the shape of the dimensions normalised over (the module's own copy).
	NormalizedShape []int64
	// Eps is added to the variance for numerical stability (PyTorch's default: 1e-5).
	Eps float64
	// Weight is the NormalizedShape-shaped scale (ones initially), a leaf that requires
	// grad; nil without elementwise affine parameters.
	Weight *autograd.Tensor
	// Bias is the NormalizedShape-shaped shift (zeros initially), a leaf that requires grad;
	// nil without elementwise affine parameters or with WithBias(false).
	Bias *autograd.Tensor
	eval bool
}

// NewLayerNorm makes a LayerNorm over the trailing dimensions normalizedShape (copied: the
// caller may reuse the slice), as torch.nn.LayerNorm makes it: with elementwise affine
// parameters, the weight is ones and the bias zeros. Options: WithEps (default 1e-5),
// WithElementwiseAffine (default true; false: no parameters), WithBias (default true; false,
// as PyTorch 2.1's bias=False: the weight alone), WithDType (default Float32). A negative size
// is an EInval error; an empty normalizedShape is one at Forward, as in PyTorch.
func NewLayerNorm(normalizedShape []int64, opts ...Option) (*LayerNorm, error) {
	fn := "nn.NewLayerNorm(" + intList(normalizedShape) + ")"
	o, err := parseOptions(fn, options{eps: 1e-5, affine: true, bias: true,
		dtype: autograd.Float32}, opts, "WithEps", "WithElementwiseAffine", "WithBias",
		"WithDType")
	if err != nil {
		return nil, err
	}
	for _, s := range normalizedShape {
		if s < 0 {
			return nil, errorf(autograd.EInval, "%s: the sizes must be >= 0", fn)
		}
	}
	l := &LayerNorm{NormalizedShape: slices.Clone(normalizedShape), Eps: o.eps}
	if !o.affine {
		return l, nil
	}
	if l.Weight, err = constant(autograd.Ones, o.dtype, l.NormalizedShape); err != nil {
		return nil, wrap(fn, err)
	}
	if o.bias {
		if l.Bias, err = constant(autograd.Zeros, o.dtype, l.NormalizedShape); err != nil {
			l.Weight.Release()
			return nil, wrap(fn, err)
		}
	}
	return l, nil
}

// constant makes a parameter with fill (autograd.Ones, autograd.Zeros), requiring grad.
func constant(fill func(autograd.DType, ...int64) (*autograd.Tensor, error),
	dtype autograd.DType, shape []int64) (*autograd.Tensor, error) {
	p, err := fill(dtype, shape...)
	if err != nil {
		return nil, err
	}
	return requireGrad(p)
}

// Forward returns the layer normalisation of x (F.layer_norm): x's last dimensions must be
// NormalizedShape; the result has x's shape. A released Weight or Bias is an EInval error
// (not one left out).
func (l *LayerNorm) Forward(x *autograd.Tensor) (*autograd.Tensor, error) {
	if l == nil {
		return nil, nilModule("LayerNorm", "Forward")
	}
	name := "nn." + l.String()
	if x == nil {
		return nil, nilInput(name)
	}
	// The library takes a NULL weight or bias as none, and a released tensor passes as NULL:
	// a released parameter would silently drop out of the computation.
	for _, p := range l.NamedParameters() {
		if p.Tensor.DType() == autograd.NoDType {
			return nil, errorf(autograd.EInval, "%s: %s was released (a tensor was used after "+
				"Release)", name, p.Name)
		}
	}
	y, err := x.LayerNorm(l.NormalizedShape, l.Weight, l.Bias, l.Eps)
	return y, wrap(name, err)
}

// Parameters returns Weight and Bias, those that are set.
func (l *LayerNorm) Parameters() []*autograd.Tensor { return tensorsOf(l.NamedParameters()) }

// NamedParameters returns "weight" and "bias", those that are set (none without elementwise
// affine parameters).
func (l *LayerNorm) NamedParameters() []NamedParameter {
	if l == nil {
		return nil
	}
	return collect([]NamedParameter{{"weight", l.Weight}, {"bias", l.Bias}}, nil)
}

// Train sets training (true) or evaluation (false) mode; LayerNorm computes the same in both.
func (l *LayerNorm) Train(mode bool) {
	if l != nil {
		l.eval = !mode
	}
}

// Training reports whether l is in training mode (false for a nil LayerNorm).
func (l *LayerNorm) Training() bool { return l != nil && !l.eval }

// ZeroGrad zeroes the .grad of Weight and Bias, or drops them when setToNone is true.
func (l *LayerNorm) ZeroGrad(setToNone bool) error {
	return zeroGrad("LayerNorm", l == nil, l.NamedParameters(), setToNone)
}

// Release releases Weight and Bias.
func (l *LayerNorm) Release() {
	if l != nil {
		l.Weight.Release()
		l.Bias.Release()
	}
}

// String returns PyTorch's representation, e.g. "LayerNorm((4,), eps=1e-05,
// elementwise_affine=True)"; elementwise_affine is True when Weight or Bias is set (PyTorch
// 2.1 does not print bias=False).
func (l *LayerNorm) String() string {
	if l == nil {
		return "LayerNorm(nil)"
	}
	return fmt.Sprintf("LayerNorm(%s, eps=%s, elementwise_affine=%s)",
		pyTuple(l.NormalizedShape), pyFloat(l.Eps), pyBool(l.Weight != nil || l.Bias != nil))
}

// intList formats s as the library formats shapes: "[3, 4]".
func intList(s []int64) string { return "[" + joinInts(s) + "]" }

// pyTuple formats s as Python's repr of a tuple of ints: "()", "(4,)", "(3, 4)".
func pyTuple(s []int64) string {
	if len(s) == 1 {
		return "(" + strconv.FormatInt(s[0], 10) + ",)"
	}
	return "(" + joinInts(s) + ")"
}

// joinInts joins the decimal forms of s with ", ".
func joinInts(s []int64) string {
	parts := make([]string, len(s))
	for i, v := range s {
		parts[i] = strconv.FormatInt(v, 10)
	}
	return strings.Join(parts, ", ")
}
