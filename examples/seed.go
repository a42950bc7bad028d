// seed.go: the seed walkthrough in Go. y = x * x, z = 2 * y + 5, z.backward(): dz/dx = 4x = 8.
// Prints exactly what PyTorch prints for the same four expressions (seed.expected).
//
// Run from this directory: go run seed.go (see bindings/go/README.md for PKG_CONFIG_PATH).
package main

import (
	"fmt"
	"os"

	"libautograd.dev/autograd"
)

func check(err error, what string) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s failed: %v\n", what, err)
		os.Exit(1)
	}
}

func main() {
	x, err := autograd.Scalar(2, autograd.Float32)
	check(err, "Scalar")
	check(x.SetRequiresGrad(true), "SetRequiresGrad")
	y, err := x.Mul(x) // y = x * x
	check(err, "Mul")
	twoY, err := y.MulScalar(2)
	check(err, "MulScalar")
	z, err := twoY.AddScalar(5) // z = 2 * y + 5
	check(err, "AddScalar")
	check(z.Backward(), "Backward") // z.backward()
	grad, err := x.Grad()
	check(err, "Grad")

	fmt.Println("x =", x)
	fmt.Println("y =", y)
	fmt.Println("z =", z)
	fmt.Println("x.grad =", grad)

	for _, t := range []*autograd.Tensor{grad, z, twoY, y, x} {
		t.Release()
	}
}
