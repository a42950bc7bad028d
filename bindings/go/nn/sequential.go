package nn

import (
	"strconv"

	"libautograd.dev/autograd"
)

// Sequential is torch.nn.Sequential: it runs its modules in order, each on the output of the
// one before. Its children are named "0", "1", ... as in PyTorch, so its parameters are
// "0.weight", "0.bias", "2.weight" ... It owns its modules: Release releases them.
type Sequential struct {
	modules []Module
	eval    bool
}

// NewSequential makes a Sequential of modules, run in the order given. A nil module, or one
// that contains the Sequential being made, is an EInval error.
func NewSequential(modules ...Module) (*Sequential, error) {
	s := &Sequential{}
	for _, m := range modules {
		if err := s.Append(m); err != nil {
			s.modules = nil
			return nil, wrap("nn.NewSequential", err)
		}
	}
	return s, nil
}

// Append adds m at the end (torch's Sequential.append). A nil module (or a nil pointer in a
// Module) is an EInval error, and so is a module that contains s, which would make a cycle.
func (s *Sequential) Append(m Module) error {
	if s == nil {
		return nilModule("Sequential", "Append")
	}
	if isNil(m) {
		return errorf(autograd.EInval, "nn.Sequential.Append: module %d is nil", len(s.modules))
	}
	if contains(m, func(c Module) bool { return same(c, s) }) {
		return errorf(autograd.EInval, "nn.Sequential.Append: module %d contains the "+
			"Sequential itself", len(s.modules))
	}
	s.modules = append(s.modules, m)
	return nil
}

// Len returns the number of modules.
func (s *Sequential) Len() int {
	if s == nil {
		return 0
	}
	return len(s.modules)
}

// At returns module i (0-based, as torch's seq[i]; negative counts from the end), or nil
// when i is out of range.
func (s *Sequential) At(i int) Module {
	n := s.Len()
	if i < 0 {
		i += n
	}
	if i < 0 || i >= n {
		return nil
	}
	return s.modules[i]
}

// NamedChildren returns the modules named "0", "1", ...
func (s *Sequential) NamedChildren() []NamedModule {
	if s == nil {
		return nil
	}
	out := make([]NamedModule, len(s.modules))
	for i, m := range s.modules {
		out[i] = NamedModule{strconv.Itoa(i), m}
	}
	return out
}

// Forward runs the modules in order on x. The intermediate outputs are released (the graph
// keeps what backward needs); the result is the last module's output. An empty Sequential
// returns x itself as a new reference. An error names the position of the module that
// failed: "nn.Sequential[2]: ...".
func (s *Sequential) Forward(x *autograd.Tensor) (*autograd.Tensor, error) {
	if s == nil {
		return nil, nilModule("Sequential", "Forward")
	}
	if x == nil {
		return nil, nilInput("nn.Sequential")
	}
	if len(s.modules) == 0 {
		y, err := newRef(x)
		return y, wrap("nn.Sequential", err)
	}
	h := x
	for i, m := range s.modules {
		var next *autograd.Tensor
		var err error
		if isNil(m) {
			err = errorf(autograd.EInval, "nil module")
		} else if next, err = m.Forward(h); err == nil && next == h {
			// A module of one's own returned its input rather than a new reference: h
			// would be released below (or, for x, handed back to a caller who owns it).
			next, err = nil, errorf(autograd.EInval, "Forward returned its input, not a new tensor")
		}
		if h != x {
			h.Release()
		}
		if err != nil {
			next.Release()
			return nil, wrap("nn.Sequential["+strconv.Itoa(i)+"]", err)
		}
		h = next
	}
	return h, nil
}

// Parameters returns the modules' parameters in order, each once.
func (s *Sequential) Parameters() []*autograd.Tensor { return tensorsOf(s.NamedParameters()) }

// NamedParameters returns the modules' parameters named "<position>.<name>" ("0.weight",
// "0.bias", "2.weight" ...), each once, under its first name.
func (s *Sequential) NamedParameters() []NamedParameter {
	return collect(nil, s.NamedChildren())
}

// Train sets training (true) or evaluation (false) mode on s and every module in it.
func (s *Sequential) Train(mode bool) {
	if s != nil {
		s.eval = !mode
		trainChildren(s.NamedChildren(), mode)
	}
}

// Training reports whether s is in training mode (false for a nil Sequential).
func (s *Sequential) Training() bool { return s != nil && !s.eval }

// ZeroGrad zeroes every parameter's .grad, or drops them when setToNone is true.
func (s *Sequential) ZeroGrad(setToNone bool) error {
	return zeroGrad("Sequential", s == nil, s.NamedParameters(), setToNone)
}

// Release releases every module (a module held twice is released once).
func (s *Sequential) Release() {
	if s != nil {
		releaseChildren(s.NamedChildren())
	}
}

// String returns PyTorch's representation: "Sequential(", a line "(i): <module>" per module,
// ")".
func (s *Sequential) String() string { return containerString("Sequential", s.NamedChildren()) }
