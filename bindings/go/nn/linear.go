package nn

import (
	"fmt"
	"math"
	"slices"

	"libautograd.dev/autograd"
)

// Option sets an optional argument of a module's constructor. An option a constructor does
// not take is an EInval error, not ignored.
type Option func(*options)

// options are the optional arguments of the constructors.
type options struct {
	bias   bool
	dtype  autograd.DType
	gen    *autograd.Generator
	eps    float64
	affine bool
	set    []string // the options given, by name
}

// WithBias sets whether Linear or LayerNorm has a bias (default true). LayerNorm's
// WithBias(false) is PyTorch 2.1's bias=False: a weight and no bias.
func WithBias(on bool) Option {
	return func(o *options) { o.bias = on; o.set = append(o.set, "WithBias") }
}

// WithDType sets the dtype of the parameters of Linear, Embedding or LayerNorm (default
// autograd.Float32).
func WithDType(dtype autograd.DType) Option {
	return func(o *options) { o.dtype = dtype; o.set = append(o.set, "WithDType") }
}

// WithGenerator sets the generator that the initial values of Linear or Embedding, or
// Dropout's masks, are drawn from (default nil: package autograd's default generator, see
// autograd.ManualSeed). The module does not own it.
func WithGenerator(g *autograd.Generator) Option {
	return func(o *options) { o.gen = g; o.set = append(o.set, "WithGenerator") }
}

// WithEps sets LayerNorm's eps, the value added to the variance for stability (default
// 1e-5).
func WithEps(eps float64) Option {
	return func(o *options) { o.eps = eps; o.set = append(o.set, "WithEps") }
}

// WithElementwiseAffine sets whether LayerNorm has parameters, a weight and a bias (default
// true); false gives none, whatever WithBias says (PyTorch's elementwise_affine=False).
func WithElementwiseAffine(on bool) Option {
	return func(o *options) { o.affine = on; o.set = append(o.set, "WithElementwiseAffine") }
}

// parseOptions applies opts to the defaults o; an option not in allowed is an EInval error.
func parseOptions(fn string, o options, opts []Option, allowed ...string) (options, error) {
	for _, f := range opts {
		if f != nil {
			f(&o)
		}
	}
	for _, name := range o.set {
		if !slices.Contains(allowed, name) {
			return o, errorf(autograd.EInval, "%s: %s does not apply", fn, name)
		}
	}
	return o, nil
}

// Linear is torch.nn.Linear: y = x W^T + b, for x of shape [..., InFeatures].
type Linear struct {
	InFeatures, OutFeatures int64
	// Weight is the [OutFeatures, InFeatures] weight, a leaf that requires grad.
	Weight *autograd.Tensor
	// Bias is the [OutFeatures] bias, or nil for a Linear without one.
	Bias *autograd.Tensor
	eval bool
}

// NewLinear makes a Linear initialised as torch.nn.Linear: the weight, then the bias, each
// uniform in ±1/sqrt(inFeatures) (0 when inFeatures is 0), drawn as the Lua binding's
// nn.Linear draws them: (autograd.Rand(g) - 0.5) * 2/sqrt(inFeatures). The same generator
// state therefore gives the same values in Go, Lua and C. Options: WithBias (default true),
// WithDType (default Float32), WithGenerator (default: autograd's default generator).
func NewLinear(inFeatures, outFeatures int64, opts ...Option) (*Linear, error) {
	fn := fmt.Sprintf("nn.NewLinear(%d, %d)", inFeatures, outFeatures)
	o, err := parseOptions(fn, options{bias: true, dtype: autograd.Float32}, opts,
		"WithBias", "WithDType", "WithGenerator")
	if err != nil {
		return nil, err
	}
	if inFeatures < 0 || outFeatures < 0 {
		return nil, errorf(autograd.EInval, "%s: the feature counts must be >= 0", fn)
	}
	bound := 0.0
	if inFeatures > 0 {
		bound = 1 / math.Sqrt(float64(inFeatures))
	}
	l := &Linear{InFeatures: inFeatures, OutFeatures: outFeatures}
	if l.Weight, err = uniform(o.gen, o.dtype, bound, outFeatures, inFeatures); err != nil {
		return nil, wrap(fn, err)
	}
	if o.bias {
		if l.Bias, err = uniform(o.gen, o.dtype, bound, outFeatures); err != nil {
			l.Weight.Release()
			return nil, wrap(fn, err)
		}
	}
	return l, nil
}

// uniform draws a parameter uniform in ±bound: (rand - 0.5) * 2 bound, requiring grad.
func uniform(g *autograd.Generator, dtype autograd.DType, bound float64,
	shape ...int64) (*autograd.Tensor, error) {
	u, err := autograd.Rand(g, dtype, shape...)
	if err != nil {
		return nil, err
	}
	defer u.Release()
	var p *autograd.Tensor
	if bound == 0 { // (inFeatures 0) PyTorch's uniform_(-0, 0): zeros, after the draw
		p, err = autograd.ZerosLike(u)
	} else {
		var c *autograd.Tensor
		if c, err = u.SubScalar(0.5); err == nil {
			p, err = c.MulScalar(2 * bound)
			c.Release()
		}
	}
	if err == nil {
		if err = p.SetRequiresGrad(true); err != nil {
			p.Release()
		}
	}
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Forward returns x W^T + b (F.linear). x's last dimension must be InFeatures.
func (l *Linear) Forward(x *autograd.Tensor) (*autograd.Tensor, error) {
	if l == nil {
		return nil, nilModule("Linear", "Forward")
	}
	if x == nil {
		return nil, nilInput("nn." + l.String())
	}
	y, err := x.Linear(l.Weight, l.Bias)
	return y, wrap("nn."+l.String(), err)
}

// Parameters returns Weight and, if there is one, Bias.
func (l *Linear) Parameters() []*autograd.Tensor { return tensorsOf(l.NamedParameters()) }

// NamedParameters returns "weight" and, if there is one, "bias".
func (l *Linear) NamedParameters() []NamedParameter {
	if l == nil {
		return nil
	}
	return collect([]NamedParameter{{"weight", l.Weight}, {"bias", l.Bias}}, nil)
}

// Train sets training (true) or evaluation (false) mode; Linear computes the same in both.
func (l *Linear) Train(mode bool) {
	if l != nil {
		l.eval = !mode
	}
}

// Training reports whether l is in training mode (false for a nil Linear).
func (l *Linear) Training() bool { return l != nil && !l.eval }

// ZeroGrad zeroes the .grad of Weight and Bias, or drops them when setToNone is true.
func (l *Linear) ZeroGrad(setToNone bool) error {
	return zeroGrad("Linear", l == nil, l.NamedParameters(), setToNone)
}

// Release releases Weight and Bias.
func (l *Linear) Release() {
	if l != nil {
		l.Weight.Release()
		l.Bias.Release()
	}
}

// String returns PyTorch's representation, e.g. "Linear(in_features=4, out_features=3,
// bias=True)".
func (l *Linear) String() string {
	if l == nil {
		return "Linear(nil)"
	}
	return fmt.Sprintf("Linear(in_features=%d, out_features=%d, bias=%s)", l.InFeatures,
		l.OutFeatures, pyBool(l.Bias != nil))
}
