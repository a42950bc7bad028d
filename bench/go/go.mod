module libautograd.dev/autograd/bench

go 1.24

require libautograd.dev/autograd v0.0.0

replace libautograd.dev/autograd => ../../bindings/go
