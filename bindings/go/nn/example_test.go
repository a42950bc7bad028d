package nn_test

import (
	"fmt"
	"log"

	"libautograd.dev/autograd"
	"libautograd.dev/autograd/nn"
)

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

// A 4-8-2 network, its parameters, and a few steps of SGD on one batch.
func ExampleSequential() {
	g, err := autograd.NewGenerator(0)
	check(err)
	defer g.Release()
	fc1, err := nn.NewLinear(4, 8, nn.WithGenerator(g))
	check(err)
	fc2, err := nn.NewLinear(8, 2, nn.WithGenerator(g))
	check(err)
	model, err := nn.NewSequential(fc1, nn.NewReLU(), fc2)
	check(err)
	defer model.Release() // releases fc1 and fc2
	fmt.Println(model)
	for _, p := range model.NamedParameters() {
		fmt.Println(p.Name, p.Tensor.Shape())
	}

	x, err := autograd.Randn(g, autograd.Float32, 16, 4)
	check(err)
	defer x.Release()
	y, err := autograd.Randint(g, 0, 2, autograd.Int64, 16)
	check(err)
	defer y.Release()
	opt, err := autograd.NewSGD(model.Parameters(), 0.1)
	check(err)
	defer opt.Release()
	var losses []float64
	for range 20 {
		var tp autograd.Tape
		tp.Check(opt.ZeroGrad(true))
		loss := tp.T(tp.T(model.Forward(x)).CrossEntropy(y))
		tp.Check(loss.Backward())
		tp.Check(opt.Step())
		l, err := loss.Item()
		tp.Check(err)
		check(tp.Err())
		tp.Release()
		losses = append(losses, l)
	}
	fmt.Println("the loss fell:", losses[len(losses)-1] < losses[0])
	// Output:
	// Sequential(
	//   (0): Linear(in_features=4, out_features=8, bias=True)
	//   (1): ReLU()
	//   (2): Linear(in_features=8, out_features=2, bias=True)
	// )
	// 0.weight [8 4]
	// 0.bias [8]
	// 2.weight [2 8]
	// 2.bias [2]
	// the loss fell: true
}

// Classifier is a module of one's own: Base provides every method of nn.Module but Forward.
type Classifier struct {
	nn.Base
	hidden, out *nn.Linear
	drop        *nn.Dropout
}

// NewClassifier makes a 64-32-10 classifier with dropout, drawing its weights from g.
func NewClassifier(g *autograd.Generator) (c *Classifier, err error) {
	c = &Classifier{}
	defer func() {
		if err != nil { // (Release does nothing on a nil module, or twice)
			c.hidden.Release()
			c.out.Release()
			c = nil
		}
	}()
	if c.hidden, err = nn.NewLinear(64, 32, nn.WithGenerator(g)); err != nil {
		return
	}
	if c.drop, err = nn.NewDropout(0.2, nn.WithGenerator(g)); err != nil {
		return
	}
	if c.out, err = nn.NewLinear(32, 10, nn.WithGenerator(g)); err != nil {
		return
	}
	// Registered, the children are reached by NamedParameters, Train, ZeroGrad and Release.
	for _, m := range []nn.NamedModule{{"hidden", c.hidden}, {"drop", c.drop}, {"out", c.out}} {
		if err = c.RegisterModule(m.Name, m.Module); err != nil {
			return
		}
	}
	return c, nil
}

// Forward returns the logits: out(drop(gelu(hidden(x)))).
func (c *Classifier) Forward(x *autograd.Tensor) (*autograd.Tensor, error) {
	var tp autograd.Tape
	defer tp.Release()
	h := tp.T(c.hidden.Forward(x))
	h = tp.T(h.Gelu(false))
	h = tp.T(c.drop.Forward(h))
	logits := tp.Keep(tp.T(c.out.Forward(h))) // the result is the caller's
	return logits, tp.Err()
}

func ExampleBase() {
	g, err := autograd.NewGenerator(0)
	check(err)
	defer g.Release()
	c, err := NewClassifier(g)
	check(err)
	defer c.Release()
	c.Train(false) // evaluation mode reaches the Dropout
	fmt.Println(c.drop.Training())
	for _, p := range c.NamedParameters() {
		fmt.Println(p.Name, p.Tensor.Shape())
	}
	x, err := autograd.Zeros(autograd.Float32, 5, 64)
	check(err)
	defer x.Release()
	logits, err := c.Forward(x)
	check(err)
	defer logits.Release()
	fmt.Println(logits.Shape())
	// Output:
	// false
	// hidden.weight [32 64]
	// hidden.bias [32]
	// out.weight [10 32]
	// out.bias [10]
	// [5 10]
}
