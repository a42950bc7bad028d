// bench_test.go: go test benchmarks of the per-call cost of the binding (one scalar op, one
// scalar graph).

package autograd_test

import (
	"testing"

	"libautograd.dev/autograd"
)

// The cost of one small operation through the binding: a cgo call, a result object and its
// cleanup.
func BenchmarkScalarMul(b *testing.B) {
	x, _ := autograd.Scalar(2, autograd.Float32)
	for b.Loop() {
		y, err := x.Mul(x)
		if err != nil {
			b.Fatal(err)
		}
		y.Release()
	}
}

// A scalar graph forward and backward, the seed walkthrough's shape.
func BenchmarkScalarGraph(b *testing.B) {
	x, _ := autograd.Scalar(2, autograd.Float32)
	x.SetRequiresGrad(true)
	for b.Loop() {
		var tp autograd.Tape
		y := tp.T(x.Mul(x))
		z := tp.T(tp.T(y.MulScalar(2)).AddScalar(5))
		tp.Check(z.Backward())
		if tp.Err() != nil {
			b.Fatal(tp.Err())
		}
		tp.Release()
	}
}
