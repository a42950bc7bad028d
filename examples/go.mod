module libautograd.dev/examples

go 1.24

require libautograd.dev/autograd v0.0.0

// The binding is used from this source tree, not from a module proxy.
replace libautograd.dev/autograd => ../bindings/go
