// Package nn is the module layer of libautograd's Go binding, after torch.nn and the Lua
// binding's ag.nn: layers that own their parameters (Linear, Embedding, LayerNorm), containers
// (Sequential, and Base for modules of one's own), activations, Softmax and LogSoftmax,
// Flatten and Dropout.
//
//	g, _ := autograd.NewGenerator(0)
//	fc1, _ := nn.NewLinear(64, 128, nn.WithGenerator(g))
//	fc2, _ := nn.NewLinear(128, 10, nn.WithGenerator(g))
//	model, _ := nn.NewSequential(fc1, nn.NewReLU(), fc2)
//	defer model.Release()
//	opt, _ := autograd.NewAdam(model.Parameters(), 3e-3)
//	logits, err := model.Forward(x)      // x: [batch, 64]
//	...
//	for _, p := range model.NamedParameters() {
//		fmt.Println(p.Name, p.Tensor.Shape()) // 0.weight [128 64], 0.bias [128], 2.weight ...
//	}
//
// Linear draws its initial weights exactly as torch.nn.Linear's formula and as the Lua
// binding's nn.Linear (weight, then bias, uniform in ±1/sqrt(in_features), with the same
// library calls), so the same seed gives the same network in C, Lua and Go. Embedding draws its
// weight N(0, 1) with autograd.Randn, as the Lua binding's nn.Embedding does; LayerNorm starts
// with a weight of ones and a bias of zeros.
//
// # Errors
//
// As in package autograd, nothing panics on a caller's mistake. A nil module, a nil or
// released input, or an input of the wrong shape is an error; errors from the library keep
// its *autograd.Error (errors.Is(err, autograd.EShape) works) and are prefixed with the
// module, e.g. "nn.Linear(in_features=4, out_features=3, bias=True): ag_linear: ...";
// Sequential adds the position of the module that failed ("nn.Sequential[2]: ...").
//
// # Ownership
//
// Forward returns a new *autograd.Tensor that the caller owns (Release it, or hand it to an
// autograd.Tape), even where the module computes nothing (Identity, Dropout in evaluation
// mode): releasing a module's output never releases its input. A module owns the parameters
// it made, and a container owns its children: Release releases them all (Release of a
// Sequential releases its modules). Generators passed as options are not owned: their owner
// releases them. Parameters and NamedParameters return the module's own *autograd.Tensor
// values, not new references: do not release them separately.
//
// Modules are not safe for concurrent modification (Train, Append, RegisterModule ...), but
// Forward may run on several goroutines at once, as the operations it calls may.
package nn

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"

	"libautograd.dev/autograd"
)

// Module is a layer or a network: torch.nn.Module. The modules of this package implement it;
// a module of one's own embeds Base, which provides every method but Forward.
type Module interface {
	// Forward computes the module's output for input x (module(x) in PyTorch). The result
	// is a new tensor owned by the caller.
	Forward(x *autograd.Tensor) (*autograd.Tensor, error)
	// Parameters returns the module's parameters: its own, then its children's, each once,
	// in the order of NamedParameters.
	Parameters() []*autograd.Tensor
	// NamedParameters returns the parameters with PyTorch's names ("weight", "0.bias",
	// "fc1.weight" ...): the module's own in the order they were made or registered, then
	// each child's, prefixed with the child's name, in the order the children were added.
	// A parameter reachable twice (a module used in two places) is listed once, under its
	// first name.
	NamedParameters() []NamedParameter
	// Train sets training mode (true, the initial mode) or evaluation mode (false, PyTorch's
	// eval()) on the module and its children. Only Dropout behaves differently here.
	Train(mode bool)
	// Training reports whether the module is in training mode.
	Training() bool
	// ZeroGrad zeroes the .grad of every parameter in place (PyTorch 1.13's default), or
	// drops them when setToNone is true (PyTorch 2's default).
	ZeroGrad(setToNone bool) error
	// Release releases the tensors the module owns (its parameters) and its children.
	// Forward through released parameters is an error, not a crash; releasing twice does
	// nothing.
	Release()
}

// NamedParameter is a parameter and its name, as PyTorch's named_parameters() yields them.
type NamedParameter struct {
	Name   string           // "weight", "0.bias", "fc1.weight" ...
	Tensor *autograd.Tensor // the module's own tensor (not a new reference)
}

// NamedModule is a child module and its name ("0", "fc1" ...), as named_children() yields
// them.
type NamedModule struct {
	Name   string // "0", "1" ... in a Sequential; the registered name in a Base
	Module Module
}

// ---- errors ----

// errorf makes an *autograd.Error detected on the Go side, worded as the library's.
func errorf(code autograd.Code, format string, args ...any) error {
	return &autograd.Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// wrap prefixes err (from the library, or a child) with what failed; errors.Is and
// errors.As still reach the *autograd.Error inside.
func wrap(prefix string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", prefix, err)
}

// nilModule is the error of Forward or ZeroGrad on a nil module.
func nilModule(name, method string) error {
	return errorf(autograd.EInval, "nn.%s.%s: nil module", name, method)
}

// nilInput is the error of Forward on a nil input, before the library is called (its message
// would name the library function the module happens to use).
func nilInput(module string) error {
	return errorf(autograd.EInval, "%s: the input is nil", module)
}

// isNil reports whether m is nil or holds a nil pointer (a typed nil, such as a nil *Linear
// stored in a Module).
func isNil(m Module) bool {
	if m == nil {
		return true
	}
	v := reflect.ValueOf(m)
	switch v.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Func, reflect.Interface, reflect.Chan:
		return v.IsNil()
	}
	return false
}

// same reports whether a and b are the same module (false for modules whose dynamic type
// cannot be compared).
func same(a, b Module) bool {
	ta, tb := reflect.TypeOf(a), reflect.TypeOf(b)
	if ta != tb || ta == nil || !ta.Comparable() {
		return false
	}
	// A comparable type may still hold an uncomparable value (an interface field holding a
	// slice), on which == panics: Value.Comparable looks at the values themselves.
	return reflect.ValueOf(a).Comparable() && reflect.ValueOf(b).Comparable() && a == b
}

// childLister is implemented by the containers (Sequential, Base): the modules they hold.
type childLister interface {
	NamedChildren() []NamedModule
}

// contains reports whether target(m') holds for m or a module reachable from m through the
// children of containers: adding m to that container would then make a cycle, and every
// walk of the tree (Parameters, Train, Release) would recurse forever.
func contains(m Module, target func(Module) bool) bool {
	var seen []Module
	var walk func(Module) bool
	walk = func(m Module) bool {
		if isNil(m) {
			return false
		}
		if target(m) {
			return true
		}
		for _, s := range seen {
			if same(s, m) {
				return false
			}
		}
		seen = append(seen, m)
		if c, ok := m.(childLister); ok {
			for _, ch := range c.NamedChildren() {
				if walk(ch.Module) {
					return true
				}
			}
		}
		return false
	}
	return walk(m)
}

// ---- walks shared by the containers ----

// collect lists own, then each child's parameters under "name.", each tensor once.
func collect(own []NamedParameter, children []NamedModule) []NamedParameter {
	var out []NamedParameter
	seen := map[*autograd.Tensor]bool{}
	add := func(name string, p *autograd.Tensor) {
		if p != nil && !seen[p] {
			seen[p] = true
			out = append(out, NamedParameter{name, p})
		}
	}
	for _, p := range own {
		add(p.Name, p.Tensor)
	}
	for _, c := range children {
		if isNil(c.Module) {
			continue
		}
		for _, p := range c.Module.NamedParameters() {
			add(c.Name+"."+p.Name, p.Tensor)
		}
	}
	return out
}

// tensorsOf returns the tensors of ps, in order.
func tensorsOf(ps []NamedParameter) []*autograd.Tensor {
	if len(ps) == 0 {
		return nil
	}
	ts := make([]*autograd.Tensor, len(ps))
	for i, p := range ps {
		ts[i] = p.Tensor
	}
	return ts
}

// zeroGrad is the ZeroGrad of a module with parameters (Linear, Sequential, Base): it zeroes
// (or drops) the .grad of each of ps, the module's NamedParameters. A nil module (missing) is
// an EInval error; the first failure stops it and names the parameter.
func zeroGrad(module string, missing bool, ps []NamedParameter, setToNone bool) error {
	if missing {
		return nilModule(module, "ZeroGrad")
	}
	for _, p := range ps {
		var err error
		if setToNone {
			err = p.Tensor.SetGrad(nil)
		} else {
			err = p.Tensor.ZeroGrad()
		}
		if err != nil {
			return wrap("nn."+module+".ZeroGrad: "+p.Name, err)
		}
	}
	return nil
}

// trainChildren sets the mode of each child.
func trainChildren(children []NamedModule, mode bool) {
	for _, c := range children {
		if !isNil(c.Module) {
			c.Module.Train(mode)
		}
	}
}

// releaseChildren releases each distinct child once.
func releaseChildren(children []NamedModule) {
	var done []Module
outer:
	for _, c := range children {
		if isNil(c.Module) {
			continue
		}
		for _, d := range done {
			if same(d, c.Module) {
				continue outer
			}
		}
		done = append(done, c.Module)
		c.Module.Release()
	}
}

// moduleString is m's representation: its String method, or its type's name with "()".
func moduleString(m Module) string {
	if isNil(m) {
		return "None"
	}
	if s, ok := m.(fmt.Stringer); ok {
		return s.String()
	}
	t := reflect.TypeOf(m)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if c, ok := m.(childLister); ok { // a module of one's own, embedding Base
		return containerString(t.Name(), c.NamedChildren())
	}
	return t.Name() + "()"
}

// containerString is PyTorch's repr of a module with children:
//
//	Sequential(
//	  (0): Linear(in_features=4, out_features=8, bias=True)
//	  (1): ReLU()
//	)
func containerString(name string, children []NamedModule) string {
	if len(children) == 0 {
		return name + "()"
	}
	var b strings.Builder
	b.WriteString(name + "(\n")
	for _, c := range children {
		s := strings.ReplaceAll(moduleString(c.Module), "\n", "\n  ")
		fmt.Fprintf(&b, "  (%s): %s\n", c.Name, s)
	}
	b.WriteString(")")
	return b.String()
}

// pyFloat formats v as Python's repr of a float: 0.01, 1.0, 1e-05, inf.
func pyFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "inf"
	case math.IsInf(v, -1):
		return "-inf"
	case math.IsNaN(v):
		return "nan"
	case v != 0 && (math.Abs(v) < 1e-4 || math.Abs(v) >= 1e16):
		return strconv.FormatFloat(v, 'e', -1, 64) // 1e-05, as Python
	}
	s := strconv.FormatFloat(v, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}

// pyBool formats b as Python does.
func pyBool(b bool) string {
	if b {
		return "True"
	}
	return "False"
}
