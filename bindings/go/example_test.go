// example_test.go: the package's runnable examples (go doc shows them).

package autograd_test

import (
	"errors"
	"fmt"
	"log"

	"libautograd.dev/autograd"
)

// The seed walkthrough: y = x * x, z = 2y + 5, z.backward(); dz/dx = 4x = 8. It prints what
// PyTorch prints for the same four expressions.
func Example() {
	x, err := autograd.Scalar(2, autograd.Float32)
	if err != nil {
		log.Fatal(err)
	}
	defer x.Release()
	if err := x.SetRequiresGrad(true); err != nil {
		log.Fatal(err)
	}

	// A Tape keeps the first error, so the arithmetic needs no check per step.
	var tp autograd.Tape
	defer tp.Release()
	y := tp.T(x.Mul(x))                          // y = x * x
	z := tp.T(tp.T(y.MulScalar(2)).AddScalar(5)) // z = 2 * y + 5
	tp.Check(z.Backward())                       // z.backward()
	grad := tp.T(x.Grad())
	if err := tp.Err(); err != nil {
		log.Fatal(err)
	}

	fmt.Println("x =", x)
	fmt.Println("y =", y)
	fmt.Println("z =", z)
	fmt.Println("x.grad =", grad)
	// Output:
	// x = tensor(2., requires_grad=True)
	// y = tensor(4., grad_fn=<MulBackward0>)
	// z = tensor(13., grad_fn=<AddBackward0>)
	// x.grad = tensor(8.)
}

// Errors carry the library's status code and message; nothing panics.
func ExampleError() {
	a, _ := autograd.Zeros(autograd.Float32, 2, 3)
	b, _ := autograd.Zeros(autograd.Float32, 4)
	_, err := a.Add(b)
	fmt.Println(err)
	fmt.Println(errors.Is(err, autograd.EShape))
	var e *autograd.Error
	if errors.As(err, &e) {
		fmt.Println(e.Code)
	}
	// Output:
	// ag_add: shapes [2, 3] and [4] cannot be broadcast (size 3 vs 4 at non-singleton dimension 1)
	// true
	// AG_ESHAPE
}

// NoGrad runs a function with graph recording off.
func ExampleNoGrad() {
	w, _ := autograd.FromSlice([]float32{1, 2, 3})
	w.SetRequiresGrad(true)
	var y *autograd.Tensor
	err := autograd.NoGrad(func() (err error) {
		y, err = w.MulScalar(2)
		return err
	})
	fmt.Println(y, err)
	// Output:
	// tensor([2., 4., 6.]) <nil>
}
