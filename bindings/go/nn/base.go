package nn

import (
	"slices"
	"strings"

	"libautograd.dev/autograd"
)

// Base gives a module of one's own every method of Module but Forward, as subclassing
// torch.nn.Module does: embed it, register the parameters and child modules, and write
// Forward (see the example of Base).
//
//	type MLP struct {
//		nn.Base
//		fc1, fc2 *nn.Linear
//	}
//
//	func (m *MLP) Forward(x *autograd.Tensor) (*autograd.Tensor, error) { ... }
//
//	m := &MLP{}
//	m.fc1, err = nn.NewLinear(4, 8)
//	err = m.RegisterModule("fc1", m.fc1) // its parameters: "fc1.weight", "fc1.bias"
//
// NamedParameters lists the parameters registered on the module itself first, then each
// child's (prefixed "name."), in registration order, as PyTorch does. Registering a name
// again replaces the entry in place (PyTorch's attribute assignment): keep the field and the
// registration in step when replacing a child or a parameter. Release releases the registered
// parameters and children; a replaced entry is no longer released by it. The zero Base is
// ready to use (in training mode).
type Base struct {
	params   []NamedParameter
	children []NamedModule
	eval     bool
}

// baser finds the Base inside a module that embeds one (its method is promoted).
type baser interface{ base() *Base }

// base returns b (promoted to the module embedding it, see baser).
func (b *Base) base() *Base { return b }

// checkName applies PyTorch's rules to the name of a parameter or child module (kind): not
// empty, without ".", and not already the name of an entry of the other kind.
func (b *Base) checkName(fn, kind, name string) error {
	if b == nil {
		return errorf(autograd.EInval, "nn.Base.%s: nil module", fn)
	}
	if name == "" {
		return errorf(autograd.EInval, "nn.Base.%s: %s name can't be empty string", fn, kind)
	}
	if strings.Contains(name, ".") {
		return errorf(autograd.EInval, "nn.Base.%s: %s name can't contain \".\", got %q", fn,
			kind, name)
	}
	switch {
	case kind == "parameter" && b.childIndex(name) >= 0:
		return errorf(autograd.EInval, "nn.Base.%s: %q is already a child module", fn, name)
	case kind == "module" && b.paramIndex(name) >= 0:
		return errorf(autograd.EInval, "nn.Base.%s: %q is already a parameter", fn, name)
	}
	return nil
}

// paramIndex is the position of the parameter registered as name, or -1.
func (b *Base) paramIndex(name string) int {
	return slices.IndexFunc(b.params, func(p NamedParameter) bool { return p.Name == name })
}

// childIndex is the position of the child module registered as name, or -1.
func (b *Base) childIndex(name string) int {
	return slices.IndexFunc(b.children, func(c NamedModule) bool { return c.Name == name })
}

// RegisterParameter registers p as a parameter of the module under name (torch's
// register_parameter): p is listed by Parameters and NamedParameters, zeroed by ZeroGrad and
// released by Release. It should be a leaf that requires grad (the optimizers insist). A nil
// p is allowed and lists nothing, as PyTorch's None parameter (an optional bias). The name
// must be non-empty, without ".", and not that of a child module.
func (b *Base) RegisterParameter(name string, p *autograd.Tensor) error {
	if err := b.checkName("RegisterParameter", "parameter", name); err != nil {
		return err
	}
	if i := b.paramIndex(name); i >= 0 {
		b.params[i].Tensor = p
	} else {
		b.params = append(b.params, NamedParameter{name, p})
	}
	return nil
}

// RegisterModule registers m as a child module under name (torch's add_module): its
// parameters are listed after the module's own as "name.<its name>", and Train, ZeroGrad and
// Release reach it. A nil m, a name that is empty, holds ".", or names a parameter, and a
// module that contains this one (a cycle) are EInval errors.
func (b *Base) RegisterModule(name string, m Module) error {
	if err := b.checkName("RegisterModule", "module", name); err != nil {
		return err
	}
	if isNil(m) {
		return errorf(autograd.EInval, "nn.Base.RegisterModule: module %q is nil", name)
	}
	if contains(m, func(c Module) bool { bc, ok := c.(baser); return ok && bc.base() == b }) {
		return errorf(autograd.EInval, "nn.Base.RegisterModule: module %q contains the "+
			"module it is registered on", name)
	}
	if i := b.childIndex(name); i >= 0 {
		b.children[i].Module = m
	} else {
		b.children = append(b.children, NamedModule{name, m})
	}
	return nil
}

// NamedChildren returns the registered child modules, in registration order.
func (b *Base) NamedChildren() []NamedModule {
	if b == nil {
		return nil
	}
	return append([]NamedModule(nil), b.children...)
}

// Parameters returns the registered parameters, then the children's, each once.
func (b *Base) Parameters() []*autograd.Tensor { return tensorsOf(b.NamedParameters()) }

// NamedParameters returns the registered parameters under their names, then each child's
// under "child.name", each once, under its first name.
func (b *Base) NamedParameters() []NamedParameter {
	if b == nil {
		return nil
	}
	return collect(b.params, b.children)
}

// Train sets training (true) or evaluation (false) mode on the module and its children.
func (b *Base) Train(mode bool) {
	if b != nil {
		b.eval = !mode
		trainChildren(b.children, mode)
	}
}

// Training reports whether the module is in training mode (false for a nil Base).
func (b *Base) Training() bool { return b != nil && !b.eval }

// ZeroGrad zeroes the .grad of every parameter (the children's included), or drops them when
// setToNone is true.
func (b *Base) ZeroGrad(setToNone bool) error {
	return zeroGrad("Base", b == nil, b.NamedParameters(), setToNone)
}

// Release releases the registered parameters and children (each once).
func (b *Base) Release() {
	if b == nil {
		return
	}
	for _, p := range b.params {
		p.Tensor.Release()
	}
	releaseChildren(b.children)
}
