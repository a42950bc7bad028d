// autograd_test.go: the package's behaviour through its public API: creation, ops, gradients,
// hooks, custom functions, optimizers, errors and the bounds on what crosses into C.

package autograd_test

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"libautograd.dev/autograd"
)

// must returns v, or panics on an error (which fails the test with its stack): a Go call
// cannot pass a multi-value result alongside another argument, so it cannot take t.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func ok(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func values(t *testing.T, x *autograd.Tensor) []float64 {
	t.Helper()
	return must(x.Float64s())
}

func near(a, b []float64, tol float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(a[i]-b[i]) > tol*(1+math.Abs(b[i])) {
			return false
		}
	}
	return true
}

func param(t *testing.T, data []float32, shape ...int64) *autograd.Tensor {
	t.Helper()
	x := must(autograd.FromSlice(data, shape...))
	ok(t, x.SetRequiresGrad(true))
	return x
}

// A leaf made requiring grad in one call is a leaf like any other: its flags, its value, and
// a gradient accumulated into it by two passes.
func TestScalarRequiresGrad(t *testing.T) {
	x := must(autograd.ScalarRequiresGrad(1.5, autograd.Float64, true))
	defer x.Release()
	if !x.RequiresGrad() || !x.IsLeaf() || x.DType() != autograd.Float64 || x.Dim() != 0 {
		t.Fatalf("flags %v %v %v %d", x.RequiresGrad(), x.IsLeaf(), x.DType(), x.Dim())
	}
	for pass := 1; pass <= 2; pass++ {
		y := must(x.Mul(x))
		ok(t, y.Backward())
		y.Release()
		g := must(x.Grad())
		if v := must(g.Item()); v != 3*float64(pass) {
			t.Fatalf("pass %d: grad %v, want %v", pass, v, 3*float64(pass))
		}
		g.Release()
	}
	z := must(autograd.ScalarRequiresGrad(2, autograd.Int64, false))
	defer z.Release()
	if z.RequiresGrad() || must(z.Item()) != 2 {
		t.Fatal("int64 leaf not requiring grad")
	}
}

func TestCreation(t *testing.T) {
	x := must(autograd.FromSlice([]float32{1, 2, 3, 4, 5, 6}, 2, 3))
	if x.DType() != autograd.Float32 || !slices.Equal(x.Shape(), []int64{2, 3}) ||
		x.Numel() != 6 || x.Dim() != 2 {
		t.Fatalf("got %v %v", x.DType(), x.Shape())
	}
	if got := must(autograd.Data[float32](x)); !slices.Equal(got, []float32{1, 2, 3, 4, 5, 6}) {
		t.Fatalf("data %v", got)
	}
	if s := must(x.Size(-1)); s != 3 {
		t.Fatalf("size %d", s)
	}
	if !slices.Equal(x.Strides(), []int64{3, 1}) || !x.IsContiguous() {
		t.Fatal("strides")
	}

	i := must(autograd.FromSlice([]int64{3, -1, 7}))
	if i.DType() != autograd.Int64 || !slices.Equal(must(i.Int64s()), []int64{3, -1, 7}) {
		t.Fatal("int64")
	}
	b := must(autograd.FromSlice([]bool{true, false}))
	if b.DType() != autograd.Bool || !slices.Equal(must(autograd.Data[bool](b)), []bool{true, false}) {
		t.Fatal("bool")
	}
	d := must(autograd.FromFloat64s([]float64{1.5, 2.5}, autograd.Float64, 2, 1))
	if !slices.Equal(d.Shape(), []int64{2, 1}) || !slices.Equal(values(t, d), []float64{1.5, 2.5}) {
		t.Fatal("float64")
	}
	s := must(autograd.Scalar(3, autograd.Int64))
	if s.Dim() != 0 || must(s.ItemInt64()) != 3 {
		t.Fatal("scalar")
	}
	empty := must(autograd.FromSlice([]float32{}, 0, 3))
	if empty.Numel() != 0 || len(values(t, empty)) != 0 {
		t.Fatal("empty")
	}
	if _, err := autograd.Data[float64](x); !errors.Is(err, autograd.EDType) {
		t.Fatalf("Data of the wrong type: %v", err)
	}

	z := must(autograd.Zeros(autograd.Float64, 2, 2))
	o := must(autograd.Ones(autograd.Float32, 3))
	f := must(autograd.Full(autograd.Float32, 7, 2))
	e := must(autograd.Eye(autograd.Float32, 2, 2))
	r := must(autograd.Arange(autograd.Int64, 0, 5, 2))
	if !slices.Equal(values(t, z), []float64{0, 0, 0, 0}) || !slices.Equal(values(t, o), []float64{1, 1, 1}) ||
		!slices.Equal(values(t, f), []float64{7, 7}) || !slices.Equal(values(t, e), []float64{1, 0, 0, 1}) ||
		!slices.Equal(values(t, r), []float64{0, 2, 4}) {
		t.Fatal("factories")
	}
	zl := must(autograd.ZerosLike(x))
	fl := must(autograd.FullLike(x, 2))
	if !slices.Equal(zl.Shape(), x.Shape()) || values(t, fl)[5] != 2 {
		t.Fatal("like")
	}
	if _, err := autograd.Empty(autograd.Float32, 2, 3); err != nil {
		t.Fatal(err)
	}
	if _, err := autograd.OnesLike(x); err != nil {
		t.Fatal(err)
	}
	if _, err := autograd.EmptyLike(x); err != nil {
		t.Fatal(err)
	}
	if _, err := autograd.Arange(autograd.Float32, 0, 1, 0); !errors.Is(err, autograd.EInval) {
		t.Fatalf("arange step 0: %v", err)
	}
}

func TestMistakesAreErrors(t *testing.T) {
	// Wrong data length, nil tensors, nil receivers, released tensors: errors, not panics.
	if _, err := autograd.FromSlice([]float32{1, 2, 3}, 2, 2); !errors.Is(err, autograd.EShape) {
		t.Fatalf("length: %v", err)
	}
	var nilT *autograd.Tensor
	if _, err := nilT.Exp(); !errors.Is(err, autograd.EInval) {
		t.Fatalf("nil receiver: %v", err)
	}
	x := must(autograd.FromSlice([]float32{1, 2}))
	if _, err := x.Add(nil); !errors.Is(err, autograd.EInval) {
		t.Fatalf("nil operand: %v", err)
	}
	y := must(x.Exp())
	y.Release()
	y.Release()
	_, err := y.Add(x)
	if !errors.Is(err, autograd.EInval) || !strings.Contains(err.Error(), "after Release") {
		t.Fatalf("released: %v", err)
	}
	// list operands too (Cat and Stack used to leave the hint out)
	for name, f := range map[string]func([]*autograd.Tensor, int64) (*autograd.Tensor, error){
		"Cat": autograd.Cat, "Stack": autograd.Stack} {
		if _, err := f([]*autograd.Tensor{x, y}, 0); !errors.Is(err, autograd.EInval) ||
			!strings.Contains(err.Error(), "after Release") {
			t.Fatalf("%s with a released tensor: %v", name, err)
		}
	}
	if y.Shape() != nil || y.Numel() != 0 || y.String() == "" {
		t.Fatal("queries of a released tensor")
	}
	if nilT.String() != "<nil>" {
		t.Fatal("nil String")
	}
	if _, err := x.Item(); !errors.Is(err, autograd.EShape) {
		t.Fatalf("item: %v", err)
	}
	if _, err := autograd.ScalarRequiresGrad(1, autograd.Int64, true); !errors.Is(err, autograd.EDType) ||
		!strings.Contains(err.Error(), "ag_tensor_scalar_requires_grad") {
		t.Fatalf("int64 scalar requiring grad: %v", err)
	}
	i := must(autograd.FromSlice([]int64{1}))
	err = i.SetRequiresGrad(true)
	var e *autograd.Error
	if !errors.As(err, &e) || e.Code != autograd.EDType ||
		!strings.Contains(e.Message, "floating point") {
		t.Fatalf("int64 requires_grad: %v", err)
	}
	if _, err := x.CrossEntropy(i, autograd.WithPosWeight(x)); !errors.Is(err, autograd.EInval) {
		t.Fatalf("option that does not apply: %v", err)
	}
	if autograd.EShape.String() != "AG_ESHAPE" {
		t.Fatal(autograd.EShape.String())
	}
	// A copy out of a view larger than any memory: an error, where the allocation used to be
	// a fatal out-of-memory of the whole process.
	one := must(autograd.FromSlice([]float32{1}, 1, 1, 1))
	huge := must(one.Expand(1<<15, 1<<15, 1<<15))
	if _, err := huge.Float64s(); !errors.Is(err, autograd.ENoMem) ||
		!strings.Contains(err.Error(), "Float64s: the tensor has 35184372088832 elements") {
		t.Fatalf("Float64s of a huge view: %v", err)
	}
	if _, err := huge.Int64s(); !errors.Is(err, autograd.ENoMem) {
		t.Fatalf("Int64s of a huge view: %v", err)
	}
	if _, err := autograd.Data[float32](huge); !errors.Is(err, autograd.ENoMem) {
		t.Fatalf("Data of a huge view: %v", err)
	}
	if v, err := must(one.Expand(2, 3, 1)).Float64s(); err != nil || len(v) != 6 || v[5] != 1 {
		t.Fatalf("Float64s of a small view: %v %v", v, err)
	}
}

// Values C cannot hold are refused with the error C gives a value it knows to be wrong,
// before anything is made. Go's int has 64 bits and C's enums 32: DType(1<<32 | Float64)
// made a float64 tensor, Reduction(1<<32 | ReduceSum) summed, Code(1<<32 | 3) printed as
// "AG_ESHAPE".
func TestOutOfRangeEnums(t *testing.T) {
	f32 := must(autograd.Zeros(autograd.Float32, 2))
	for _, dt := range []autograd.DType{1<<32 | autograd.Float64, 1 << 32, 1<<33 | autograd.Int64,
		-1<<32 | autograd.Bool, 7} {
		type made = func() (*autograd.Tensor, error)
		want := fmt.Sprintf("unknown dtype %d", int(dt))
		for name, f := range map[string]made{
			"ag_zeros":           func() (*autograd.Tensor, error) { return autograd.Zeros(dt, 2) },
			"ag_ones":            func() (*autograd.Tensor, error) { return autograd.Ones(dt, 2) },
			"ag_empty":           func() (*autograd.Tensor, error) { return autograd.Empty(dt, 2) },
			"ag_full":            func() (*autograd.Tensor, error) { return autograd.Full(dt, 1, 2) },
			"ag_arange":          func() (*autograd.Tensor, error) { return autograd.Arange(dt, 0, 3, 1) },
			"ag_eye":             func() (*autograd.Tensor, error) { return autograd.Eye(dt, 2, 2) },
			"ag_rand":            func() (*autograd.Tensor, error) { return autograd.Rand(nil, dt, 2) },
			"ag_randn":           func() (*autograd.Tensor, error) { return autograd.Randn(nil, dt, 2) },
			"ag_randint":         func() (*autograd.Tensor, error) { return autograd.Randint(nil, 0, 5, dt, 2) },
			"ag_to_dtype":        func() (*autograd.Tensor, error) { return f32.To(dt) },
			"ag_tensor_scalar":   func() (*autograd.Tensor, error) { return autograd.Scalar(1, dt) },
			"ag_tensor_from_f64": func() (*autograd.Tensor, error) { return autograd.FromFloat64s([]float64{1}, dt) },
			"ag_tensor_scalar_requires_grad": func() (*autograd.Tensor, error) {
				return autograd.ScalarRequiresGrad(1, dt, false)
			},
		} {
			x, err := f()
			if x != nil || !errors.Is(err, autograd.EDType) || err.Error() != name+": "+want {
				t.Errorf("%s with DType(%d): %v, %v; want EDType %q", name, int(dt), x, err,
					name+": "+want)
			}
		}
	}

	x := must(autograd.FromSlice([]float32{1, 2}))
	cls := must(autograd.FromSlice([]int64{1}))
	for _, r := range []autograd.Reduction{1<<32 | autograd.ReduceSum, 1 << 32, 7} {
		want := fmt.Sprintf("%d is not a valid value for reduction", int(r))
		for name, f := range map[string]func() (*autograd.Tensor, error){
			"ag_mse_loss": func() (*autograd.Tensor, error) {
				return x.MSELoss(x, autograd.WithReduction(r))
			},
			"ag_binary_cross_entropy_with_logits": func() (*autograd.Tensor, error) {
				return x.BinaryCrossEntropyWithLogits(x, autograd.WithReduction(r))
			},
			"ag_cross_entropy": func() (*autograd.Tensor, error) {
				return must(x.Unsqueeze(0)).CrossEntropy(cls, autograd.WithReduction(r))
			},
		} {
			l, err := f()
			if l != nil || !errors.Is(err, autograd.EInval) || err.Error() != name+": "+want {
				t.Errorf("%s with Reduction(%d): %v, %v; want EInval %q", name, int(r), l, err,
					name+": "+want)
			}
		}
	}

	for c, want := range map[autograd.Code]string{autograd.EShape: "AG_ESHAPE",
		1<<32 | autograd.EShape: "AG_UNKNOWN", 1 << 32: "AG_UNKNOWN", -1 << 40: "AG_UNKNOWN"} {
		if got := c.String(); got != want {
			t.Errorf("Code(%d).String() = %q, want %q", int(c), got, want)
		}
	}
}

// Counts that nothing could hold are errors: Split of a 2^40-element expanded view (one float
// behind it) made a 2^40-entry slice first, and the process died of it (a Go allocation that
// fails is fatal); so did a custom function with NumOutputs 1<<40 (1<<62: a makeslice panic).
func TestHugeCounts(t *testing.T) {
	one := must(autograd.Zeros(autograd.Float32, 1))
	big := must(one.Expand(1 << 40))
	if n := must(big.SplitCount(1, 0)); n != 1<<40 {
		t.Fatalf("SplitCount = %d", n)
	}
	if p, err := big.Split(1, 0); p != nil || !errors.Is(err, autograd.EInval) ||
		!strings.Contains(err.Error(), "Split: 1099511627776 pieces: at most 2147483647") {
		t.Errorf("Split into 2^40 pieces: %d pieces, %v", len(p), err)
	}
	if p, err := big.Chunk(1<<40, 0); p != nil || !errors.Is(err, autograd.EInval) ||
		!strings.Contains(err.Error(), "Chunk: 1099511627776 pieces") {
		t.Errorf("Chunk into 2^40 pieces: %d pieces, %v", len(p), err)
	}
	// (Counts the library takes still split.)
	if p, err := must(one.Expand(5)).Split(2, 0); err != nil || len(p) != 3 ||
		!slices.Equal(p[2].Shape(), []int64{1}) {
		t.Errorf("Split of 5 by 2: %v %v", p, err)
	}

	x := param(t, []float32{1, 2})
	for _, n := range []int{1 << 40, 1 << 62, 65, -1} {
		called := false
		f := &autograd.Function{Name: "F", NumOutputs: n,
			Forward: func(_ *autograd.Context, in []*autograd.Tensor) ([]*autograd.Tensor, error) {
				called = true
				return in, nil
			},
			Backward: func(_ *autograd.Context, g []*autograd.Tensor) ([]*autograd.Tensor, error) { return g, nil },
		}
		out, err := f.Apply(x)
		if out != nil || called || !errors.Is(err, autograd.EInval) ||
			!strings.Contains(err.Error(), fmt.Sprintf("Apply: NumOutputs is %d", n)) {
			t.Errorf("Apply with NumOutputs %d: %v, %v (Forward called: %v)", n, out, err, called)
		}
	}
	// The bounds themselves, 64 outputs and 64 inputs, pass; 65 inputs do not.
	ins := make([]*autograd.Tensor, 65)
	for i := range ins {
		ins[i] = x
	}
	wide := &autograd.Function{Name: "Wide", NumOutputs: 64,
		Forward: func(_ *autograd.Context, in []*autograd.Tensor) ([]*autograd.Tensor, error) {
			out := make([]*autograd.Tensor, 64)
			for i := range out {
				out[i] = must(in[i].MulScalar(float64(i)))
			}
			return out, nil
		},
		Backward: func(_ *autograd.Context, g []*autograd.Tensor) ([]*autograd.Tensor, error) {
			return g, nil
		},
	}
	if out, err := wide.Apply(ins[:64]...); err != nil || len(out) != 64 ||
		!slices.Equal(values(t, out[63]), []float64{63, 126}) {
		t.Errorf("Apply with 64 inputs and outputs: %d outputs, %v", len(out), err)
	}
	if out, err := wide.Apply(ins...); out != nil || !errors.Is(err, autograd.EInval) ||
		!strings.Contains(err.Error(), "Apply: 65 inputs") {
		t.Errorf("Apply with 65 inputs: %v, %v", out, err)
	}
}

func TestOps(t *testing.T) {
	a := must(autograd.FromSlice([]float64{1, 2, 3, 4}, 2, 2))
	b := must(autograd.FromSlice([]float64{10, 20}, 2))
	cases := []struct {
		name string
		got  func() (*autograd.Tensor, error)
		want []float64
	}{
		{"add broadcast", func() (*autograd.Tensor, error) { return a.Add(b) }, []float64{11, 22, 13, 24}},
		{"sub", func() (*autograd.Tensor, error) { return a.Sub(a) }, []float64{0, 0, 0, 0}},
		{"mul", func() (*autograd.Tensor, error) { return a.Mul(a) }, []float64{1, 4, 9, 16}},
		{"div", func() (*autograd.Tensor, error) { return b.Div(b) }, []float64{1, 1}},
		{"pow", func() (*autograd.Tensor, error) { return a.PowScalar(2) }, []float64{1, 4, 9, 16}},
		{"rsub", func() (*autograd.Tensor, error) { return a.RSubScalar(1) }, []float64{0, -1, -2, -3}},
		{"rdiv", func() (*autograd.Tensor, error) { return b.RDivScalar(20) }, []float64{2, 1}},
		{"rpow", func() (*autograd.Tensor, error) { return a.RPowScalar(2) }, []float64{2, 4, 8, 16}},
		{"matmul", func() (*autograd.Tensor, error) { return a.Matmul(a) }, []float64{7, 10, 15, 22}},
		{"t", func() (*autograd.Tensor, error) { return a.T() }, []float64{1, 3, 2, 4}},
		{"sum dims", func() (*autograd.Tensor, error) { return a.SumDims([]int64{0}, false) }, []float64{4, 6}},
		{"mean", func() (*autograd.Tensor, error) { return a.Mean() }, []float64{2.5}},
		{"amax", func() (*autograd.Tensor, error) { return a.Amax([]int64{1}, true) }, []float64{2, 4}},
		{"var", func() (*autograd.Tensor, error) { return a.Var(nil, 1, false) }, []float64{5.0 / 3}},
		{"norm", func() (*autograd.Tensor, error) { return b.Norm(1, nil, false) }, []float64{30}},
		{"argmax", func() (*autograd.Tensor, error) { return a.Argmax(1, false) }, []float64{1, 1}},
		{"clamp", func() (*autograd.Tensor, error) { return a.Clamp(2, 3) }, []float64{2, 2, 3, 3}},
		{"relu", func() (*autograd.Tensor, error) { return must(a.SubScalar(2)).Relu() }, []float64{0, 0, 1, 2}},
		{"gt", func() (*autograd.Tensor, error) { return a.GtScalar(2) }, []float64{0, 0, 1, 1}},
		{"where", func() (*autograd.Tensor, error) {
			return autograd.Where(must(a.GtScalar(2)), a, must(a.Neg()))
		}, []float64{-1, -2, 3, 4}},
		{"reshape", func() (*autograd.Tensor, error) { return a.Reshape(-1) }, []float64{1, 2, 3, 4}},
		{"select", func() (*autograd.Tensor, error) { return a.Select(0, 1) }, []float64{3, 4}},
		{"slice", func() (*autograd.Tensor, error) { return a.Slice(1, 1, 2, 1) }, []float64{2, 4}},
		{"cat", func() (*autograd.Tensor, error) { return autograd.Cat([]*autograd.Tensor{b, b}, 0) }, []float64{10, 20, 10, 20}},
		{"stack", func() (*autograd.Tensor, error) { return autograd.Stack([]*autograd.Tensor{b, b}, 1) }, []float64{10, 10, 20, 20}},
		{"index_select", func() (*autograd.Tensor, error) {
			return a.IndexSelect(0, must(autograd.FromSlice([]int64{1, 0})))
		}, []float64{3, 4, 1, 2}},
		{"sub scalar", func() (*autograd.Tensor, error) { return b.SubScalar(10) }, []float64{0, 10}},
		{"softmax", func() (*autograd.Tensor, error) { return b.Softmax(0) }, []float64{1 / (1 + math.Exp(10)), 1 / (1 + math.Exp(-10))}},
		{"logsumexp", func() (*autograd.Tensor, error) {
			return must(autograd.Zeros(autograd.Float64, 2)).LogSumExp(nil, false)
		}, []float64{math.Ln2}},
		{"mse", func() (*autograd.Tensor, error) { return a.MSELoss(must(autograd.ZerosLike(a))) }, []float64{7.5}},
		{"to", func() (*autograd.Tensor, error) { return must(a.To(autograd.Int64)).To(autograd.Float32) }, []float64{1, 2, 3, 4}},
	}
	for _, c := range cases {
		got, err := c.got()
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if g := values(t, got); !near(g, c.want, 1e-12) {
			t.Errorf("%s: got %v, want %v", c.name, g, c.want)
		}
	}

	v, i, err := a.MaxDim(1, false)
	if err != nil || !slices.Equal(values(t, v), []float64{2, 4}) || !slices.Equal(must(i.Int64s()), []int64{1, 1}) {
		t.Fatalf("max_dim: %v", err)
	}
	pieces := must(must(autograd.Arange(autograd.Float32, 0, 5, 1)).Split(2, 0))
	if len(pieces) != 3 || !slices.Equal(values(t, pieces[2]), []float64{4}) {
		t.Fatal("split")
	}
	chunks := must(a.Chunk(2, 1))
	if len(chunks) != 2 || !slices.Equal(values(t, chunks[1]), []float64{2, 4}) {
		t.Fatal("chunk")
	}
	if err := a.SplitInto(make([]*autograd.Tensor, 3), 1, 0); !errors.Is(err, autograd.EInval) {
		t.Fatalf("split into a wrong count: %v", err)
	}

	// In place.
	c := must(a.Clone())
	ok(t, c.AddScalarInPlace(1))
	ok(t, c.MulInPlace(a))
	if !slices.Equal(values(t, c), []float64{2, 6, 12, 20}) || c.Version() != 2 {
		t.Fatalf("in place: %v version %d", values(t, c), c.Version())
	}
	ok(t, c.FillInPlace(3))
	ok(t, c.CopyFrom(b))
	if !slices.Equal(values(t, c), []float64{10, 20, 10, 20}) {
		t.Fatal("copy")
	}
	ok(t, c.ZeroInPlace())
	p := param(t, []float32{1})
	if err := p.AddScalarInPlace(1); !errors.Is(err, autograd.ELeaf) {
		t.Fatalf("in-place on a leaf: %v", err)
	}
}

func TestBackwardAndGrad(t *testing.T) {
	x := param(t, []float32{1, 2, 3})
	y := must(x.Mul(x))
	if !y.RequiresGrad() || y.IsLeaf() {
		t.Fatal("y")
	}
	ok(t, y.RetainGrad())
	// A non-scalar root needs a gradient.
	if err := y.Backward(); !errors.Is(err, autograd.EShape) {
		t.Fatalf("backward without grad: %v", err)
	}
	g := must(autograd.Ones(autograd.Float32, 3))
	ok(t, y.BackwardWith(autograd.BackwardOptions{Grad: g, RetainGraph: true}))
	if !slices.Equal(values(t, must(x.Grad())), []float64{2, 4, 6}) ||
		!slices.Equal(values(t, must(y.Grad())), []float64{1, 1, 1}) {
		t.Fatal("grads")
	}
	// Retained: a second backward accumulates.
	ok(t, y.BackwardWith(autograd.BackwardOptions{Grad: g}))
	if !slices.Equal(values(t, must(x.Grad())), []float64{4, 8, 12}) {
		t.Fatal("accumulated")
	}
	// Without retain_graph, the graph is freed.
	if err := y.BackwardWith(autograd.BackwardOptions{Grad: g}); !errors.Is(err, autograd.EGraph) {
		t.Fatalf("third backward: %v", err)
	}
	ok(t, x.ZeroGrad())
	ok(t, x.SetGrad(nil))
	if gr := must(x.Grad()); gr != nil {
		t.Fatal("grad not dropped")
	}

	// torch.autograd.grad with create_graph: d2/dx2 of x^3 = 6x.
	s := must(must(must(x.PowScalar(3)).Sum()).MulScalar(1))
	d1 := must(autograd.Grad([]*autograd.Tensor{s}, []*autograd.Tensor{x},
		autograd.GradOptions{CreateGraph: true}))
	if !slices.Equal(values(t, d1[0]), []float64{3, 12, 27}) {
		t.Fatal("first derivative")
	}
	d2 := must(autograd.Grad([]*autograd.Tensor{must(d1[0].Sum())}, []*autograd.Tensor{x},
		autograd.GradOptions{}))
	if !slices.Equal(values(t, d2[0]), []float64{6, 12, 18}) {
		t.Fatal("second derivative")
	}
	// create_graph with FreeGraph (PyTorch's retain_graph=False): the first graph is freed,
	// the recorded one differentiates.
	f := must(must(x.PowScalar(3)).Sum())
	e1 := must(autograd.Grad([]*autograd.Tensor{f}, []*autograd.Tensor{x},
		autograd.GradOptions{CreateGraph: true, FreeGraph: true}))
	e2 := must(autograd.Grad([]*autograd.Tensor{must(e1[0].Sum())}, []*autograd.Tensor{x},
		autograd.GradOptions{}))
	if !slices.Equal(values(t, e2[0]), []float64{6, 12, 18}) {
		t.Fatal("second derivative with FreeGraph")
	}
	if _, err := autograd.Grad([]*autograd.Tensor{f}, []*autograd.Tensor{x}, autograd.GradOptions{}); !errors.Is(err, autograd.EGraph) {
		t.Fatalf("FreeGraph should free the graph: %v", err)
	}
	if err := f.BackwardWith(autograd.BackwardOptions{CreateGraph: true, FreeGraph: true, RetainGraph: true}); !errors.Is(err, autograd.EInval) {
		t.Fatalf("FreeGraph with RetainGraph: %v", err)
	}

	// allow_unused.
	u := param(t, []float32{1})
	s2 := must(x.Sum())
	r := must(autograd.Grad([]*autograd.Tensor{s2}, []*autograd.Tensor{x, u},
		autograd.GradOptions{AllowUnused: true, RetainGraph: true}))
	if r[1] != nil {
		t.Fatal("unused input should give nil")
	}
	if _, err := autograd.Grad([]*autograd.Tensor{s2}, []*autograd.Tensor{u}, autograd.GradOptions{}); !errors.Is(err, autograd.ENoGrad) {
		t.Fatalf("unused without allow_unused: %v", err)
	}
	if _, err := autograd.Grad([]*autograd.Tensor{s2}, []*autograd.Tensor{x},
		autograd.GradOptions{GradOutputs: []*autograd.Tensor{nil, nil}}); !errors.Is(err, autograd.EInval) {
		t.Fatalf("grad outputs count: %v", err)
	}
	det := must(y.Detach())
	if det.RequiresGrad() || !det.SharesStorage(y) {
		t.Fatal("detach")
	}
}

func TestGradFnAndNextFunctions(t *testing.T) {
	x := param(t, []float32{2})
	w := must(autograd.FromSlice([]float32{3}))
	y := must(x.Mul(w))
	z := must(y.AddScalar(1))
	fn := must(z.GradFn())
	if fn.Name() != "AddBackward1" && fn.Name() != "AddBackward0" {
		t.Fatalf("grad_fn %s", fn.Name())
	}
	next := must(fn.NextFunctions())
	if len(next) != 1 || next[0].Fn.Name() != "MulBackward0" {
		t.Fatalf("next of add: %v", next)
	}
	mul := must(next[0].Fn.NextFunctions())
	if len(mul) != 2 || mul[0].Fn.Name() != "AccumulateGrad" || mul[1].Fn != nil {
		t.Fatalf("next of mul: %v", mul)
	}
	leaf := must(mul[0].Fn.Variable())
	if !leaf.SharesStorage(x) {
		t.Fatal("AccumulateGrad variable")
	}
	if _, err := fn.Variable(); !errors.Is(err, autograd.EInval) {
		t.Fatalf("variable of a non-AccumulateGrad node: %v", err)
	}
	if _, _, err := fn.Next(5); !errors.Is(err, autograd.ERange) {
		t.Fatalf("next out of range: %v", err)
	}
	if gf := must(x.GradFn()); gf != nil {
		t.Fatal("leaf grad_fn")
	}
	fn.Release()
}

func TestHooks(t *testing.T) {
	x := param(t, []float32{1, 2})
	var seen []float64
	h := must(x.RegisterHook(func(g *autograd.Tensor) (*autograd.Tensor, error) {
		seen = values(t, g)
		return g.MulScalar(10)
	}))
	s := must(must(x.Mul(x)).Sum())
	ok(t, s.BackwardWith(autograd.BackwardOptions{RetainGraph: true}))
	if !slices.Equal(seen, []float64{2, 4}) || !slices.Equal(values(t, must(x.Grad())), []float64{20, 40}) {
		t.Fatalf("hook saw %v, grad %v", seen, values(t, must(x.Grad())))
	}
	ok(t, x.RemoveHook(h))
	if err := x.RemoveHook(h); !errors.Is(err, autograd.EInval) {
		t.Fatalf("second remove: %v", err)
	}

	// A failing hook aborts backward and leaves .grad untouched.
	ok(t, x.SetGrad(nil))
	must(x.RegisterHook(func(*autograd.Tensor) (*autograd.Tensor, error) {
		return nil, fmt.Errorf("no gradients today")
	}))
	err := s.BackwardWith(autograd.BackwardOptions{RetainGraph: true})
	if !errors.Is(err, autograd.ECallback) || !strings.Contains(err.Error(), "no gradients today") {
		t.Fatalf("failing hook: %v", err)
	}
	if g := must(x.Grad()); g != nil {
		t.Fatal(".grad changed by a failed backward")
	}

	// A hook that fails with a bare Code reports that code, as a C hook returns its status.
	z := param(t, []float32{1})
	must(z.RegisterHook(func(*autograd.Tensor) (*autograd.Tensor, error) {
		return nil, autograd.EVersion
	}))
	if err := must(z.MulScalar(2)).Backward(); !errors.Is(err, autograd.EVersion) {
		t.Fatalf("hook failing with a Code: %v", err)
	}

	// A hook's Code that C's int cannot hold is no code of the library's: ECallback, as for
	// any other error. Truncated, 1<<32 was 0 (the hook's failure was lost: backward
	// succeeded) and 1<<32 | EVersion was EVersion.
	for _, c := range []autograd.Code{1 << 32, 1<<32 | autograd.EVersion} {
		w := param(t, []float32{1})
		must(w.RegisterHook(func(*autograd.Tensor) (*autograd.Tensor, error) {
			return nil, &autograd.Error{Code: c, Message: "odd code"}
		}))
		err := must(w.MulScalar(2)).Backward()
		if !errors.Is(err, autograd.ECallback) || !strings.Contains(err.Error(), "odd code") {
			t.Fatalf("hook failing with Code(%d): %v", int(c), err)
		}
		if g := must(w.Grad()); g != nil {
			t.Fatalf("hook failing with Code(%d): .grad set", int(c))
		}
	}

	// A panicking hook is an error too.
	y := param(t, []float32{1})
	must(y.RegisterHook(func(*autograd.Tensor) (*autograd.Tensor, error) { panic("boom") }))
	err = must(y.MulScalar(2)).Backward()
	if !errors.Is(err, autograd.ECallback) || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("panicking hook: %v", err)
	}
	// No hook on a tensor that does not require grad.
	c := must(autograd.FromSlice([]float32{1}))
	if _, err := c.RegisterHook(func(g *autograd.Tensor) (*autograd.Tensor, error) { return nil, nil }); !errors.Is(err, autograd.ENoGrad) {
		t.Fatalf("hook without grad: %v", err)
	}
}

// A custom exp: forward saves its output, backward multiplies by it.
func myExp() *autograd.Function {
	return &autograd.Function{
		Name: "MyExp",
		Forward: func(ctx *autograd.Context, in []*autograd.Tensor) ([]*autograd.Tensor, error) {
			y, err := in[0].Exp()
			if err != nil {
				return nil, err
			}
			return []*autograd.Tensor{y}, ctx.SaveForBackward(y)
		},
		Backward: func(ctx *autograd.Context, gout []*autograd.Tensor) ([]*autograd.Tensor, error) {
			saved, err := ctx.SavedTensors()
			if err != nil {
				return nil, err
			}
			if !ctx.NeedsInputGrad(0) {
				return []*autograd.Tensor{nil}, nil
			}
			g, err := gout[0].Mul(saved[0])
			return []*autograd.Tensor{g}, err
		},
	}
}

func TestCustomFunction(t *testing.T) {
	x := param(t, []float32{0, 1})
	out := must(myExp().Apply(x))
	fn := must(out[0].GradFn())
	if fn.Name() != "MyExpBackward" {
		t.Fatalf("grad_fn %s", fn.Name())
	}
	ok(t, must(out[0].Sum()).Backward())
	if g := values(t, must(x.Grad())); !near(g, []float64{1, math.E}, 1e-6) {
		t.Fatalf("grad %v", g)
	}

	// Errors from Forward and wrong results are errors of Apply.
	bad := &autograd.Function{Name: "Bad",
		Forward: func(*autograd.Context, []*autograd.Tensor) ([]*autograd.Tensor, error) {
			return nil, errors.New("forward refused")
		},
		Backward: func(*autograd.Context, []*autograd.Tensor) ([]*autograd.Tensor, error) { return nil, nil },
	}
	if _, err := bad.Apply(x); !errors.Is(err, autograd.ECallback) || !strings.Contains(err.Error(), "forward refused") {
		t.Fatalf("failing forward: %v", err)
	}
	two := &autograd.Function{Name: "Two", NumOutputs: 2, Forward: myExp().Forward, Backward: myExp().Backward}
	if _, err := two.Apply(x); !errors.Is(err, autograd.ECallback) {
		t.Fatalf("wrong output count: %v", err)
	}
	if _, err := (&autograd.Function{}).Apply(x); !errors.Is(err, autograd.EInval) {
		t.Fatalf("empty function: %v", err)
	}
	// A context kept past its call is an error, not a crash.
	var kept *autograd.Context
	leak := &autograd.Function{Name: "Leak",
		Forward: func(ctx *autograd.Context, in []*autograd.Tensor) ([]*autograd.Tensor, error) {
			kept = ctx
			return []*autograd.Tensor{in[0]}, nil
		},
		Backward: myExp().Backward,
	}
	must(leak.Apply(x))
	if err := kept.SaveForBackward(x); !errors.Is(err, autograd.EInval) {
		t.Fatalf("kept context: %v", err)
	}
	// ctx.needs_input_grad is set before Forward runs, as in PyTorch.
	var seen []bool
	probe := &autograd.Function{Name: "Probe",
		Forward: func(ctx *autograd.Context, in []*autograd.Tensor) ([]*autograd.Tensor, error) {
			seen = []bool{ctx.NeedsInputGrad(0), ctx.NeedsInputGrad(1)}
			y, err := in[0].Mul(in[1])
			return []*autograd.Tensor{y}, err
		},
		Backward: myExp().Backward,
	}
	c := must(autograd.FromFloat64s([]float64{2, 3}, autograd.Float32, 2))
	must(probe.Apply(x, c))
	if len(seen) != 2 || !seen[0] || seen[1] {
		t.Fatalf("needs_input_grad in Forward: %v, want [true false]", seen)
	}
}

func TestOptimizers(t *testing.T) {
	for _, name := range []string{"sgd", "adam", "adamw"} {
		w := param(t, []float32{1, -2})
		var opt *autograd.Optimizer
		var err error
		switch name {
		case "sgd":
			opt, err = autograd.NewSGD([]*autograd.Tensor{w}, 0.1, autograd.WithMomentum(0.9))
		case "adam":
			opt, err = autograd.NewAdam([]*autograd.Tensor{w}, 0.1)
		case "adamw":
			opt, err = autograd.NewAdamW([]*autograd.Tensor{w}, 0.1, autograd.WithWeightDecay(0))
		}
		ok(t, err)
		for range 50 {
			ok(t, opt.ZeroGrad(true))
			loss := must(must(w.Mul(w)).Sum())
			ok(t, loss.Backward())
			ok(t, opt.Step())
		}
		if v := values(t, w); math.Abs(v[0]) > 0.5 || math.Abs(v[1]) > 0.5 {
			t.Errorf("%s did not minimise: %v", name, v)
		}
		ok(t, opt.SetLR(0.01))
		if opt.LR() != 0.01 {
			t.Errorf("%s lr %v", name, opt.LR())
		}
		opt.Release()
		if err := opt.Step(); !errors.Is(err, autograd.EInval) {
			t.Errorf("released optimizer: %v", err)
		}
	}
	w := param(t, []float32{1})
	if _, err := autograd.NewSGD([]*autograd.Tensor{w}, -1); !errors.Is(err, autograd.EInval) ||
		!strings.Contains(err.Error(), "Invalid learning rate") {
		t.Fatalf("negative lr: %v", err)
	}
	if _, err := autograd.NewAdam([]*autograd.Tensor{w}, 1e-3, autograd.WithMomentum(0.9)); !errors.Is(err, autograd.EInval) {
		t.Fatalf("momentum for Adam: %v", err)
	}
}

func TestGenerators(t *testing.T) {
	g1 := must(autograd.NewGenerator(42))
	g2 := must(autograd.NewGenerator(42))
	a := values(t, must(autograd.Rand(g1, autograd.Float32, 4)))
	b := values(t, must(autograd.Rand(g2, autograd.Float32, 4)))
	if !slices.Equal(a, b) {
		t.Fatal("same seed, different numbers")
	}
	ok(t, g1.ManualSeed(42))
	if c := values(t, must(autograd.Rand(g1, autograd.Float32, 4))); !slices.Equal(a, c) {
		t.Fatal("reseed")
	}
	n := must(autograd.Randn(g1, autograd.Float64, 1000))
	if m := must(must(n.Mean()).Item()); math.Abs(m) > 0.2 {
		t.Fatalf("randn mean %v", m)
	}
	ri := must(autograd.Randint(g1, 3, 5, autograd.Int64, 100))
	for _, v := range must(ri.Int64s()) {
		if v < 3 || v >= 5 {
			t.Fatalf("randint %d", v)
		}
	}
	// The package default generator is reseeded by ManualSeed.
	ok(t, autograd.ManualSeed(7))
	d1 := values(t, must(autograd.Rand(nil, autograd.Float32, 3)))
	ok(t, autograd.ManualSeed(7))
	d2 := values(t, must(autograd.RandLike(nil, must(autograd.Zeros(autograd.Float32, 3)))))
	if !slices.Equal(d1, d2) {
		t.Fatal("default generator")
	}
	x := must(autograd.Ones(autograd.Float32, 1000))
	dr := must(x.Dropout(g1, 0.5, true))
	if s := must(must(dr.Sum()).Item()); s < 700 || s > 1300 {
		t.Fatalf("dropout sum %v", s)
	}
	if _, err := x.Dropout(nil, 1.5, true); !errors.Is(err, autograd.EInval) {
		t.Fatalf("dropout p: %v", err)
	}
	g1.Release()
	if _, err := autograd.Rand(g1, autograd.Float32, 2); !errors.Is(err, autograd.EInval) {
		t.Fatalf("released generator: %v", err)
	}
}

func TestNoGradAndAnomaly(t *testing.T) {
	// A nil function is an error, not a panic (grad mode untouched).
	for name, f := range map[string]func(func() error) error{"NoGrad": autograd.NoGrad,
		"EnableGrad": autograd.EnableGrad, "DetectAnomaly": autograd.DetectAnomaly} {
		if err := f(nil); !errors.Is(err, autograd.EInval) || !strings.Contains(err.Error(), name) {
			t.Fatalf("%s(nil): %v", name, err)
		}
	}
	if !autograd.IsGradEnabled() || autograd.IsAnomalyEnabled() {
		t.Fatal("modes changed by a nil function")
	}
	x := param(t, []float32{1})
	var y *autograd.Tensor
	err := autograd.NoGrad(func() (err error) {
		if autograd.IsGradEnabled() {
			t.Error("grad enabled inside NoGrad")
		}
		y, err = x.MulScalar(2)
		return autograd.EnableGrad(func() error {
			if !autograd.IsGradEnabled() {
				t.Error("grad disabled inside EnableGrad")
			}
			return nil
		})
	})
	ok(t, err)
	if y.RequiresGrad() || !autograd.IsGradEnabled() {
		t.Fatal("no_grad")
	}
	if err := autograd.NoGrad(func() error { return errors.New("inner") }); err == nil || err.Error() != "inner" {
		t.Fatal("NoGrad's error")
	}

	// Anomaly mode names the node that produced NaN.
	z := param(t, []float32{-1})
	err = autograd.DetectAnomaly(func() error {
		if !autograd.IsAnomalyEnabled() {
			t.Error("anomaly mode off")
		}
		return must(must(z.Sqrt()).Sum()).Backward()
	})
	if !errors.Is(err, autograd.EAnomaly) || !strings.Contains(err.Error(), "SqrtBackward0") {
		t.Fatalf("anomaly: %v", err)
	}
	if autograd.IsAnomalyEnabled() {
		t.Fatal("anomaly mode left on")
	}
}

func TestTape(t *testing.T) {
	var tp autograd.Tape
	x := tp.T(autograd.FromSlice([]float32{1, 2}))
	y := tp.T(tp.T(x.Exp()).Matmul(must(autograd.Zeros(autograd.Float32, 3, 3)))) // fails
	z := tp.T(y.AddScalar(1))                                                     // runs on nil: no panic
	if z != nil || !errors.Is(tp.Err(), autograd.EShape) {
		t.Fatalf("sticky error: %v", tp.Err())
	}
	if tp.Check(nil) {
		t.Fatal("Check after an error")
	}
	kept := tp.Keep(x)
	tp.Release()
	if kept.Numel() != 2 {
		t.Fatal("kept tensor released")
	}
	// Keep, then record again: released again; kept twice over, recorded twice: kept.
	a := tp.T(autograd.FromSlice([]float32{1}))
	b := tp.T(autograd.FromSlice([]float32{2}))
	tp.T(b, nil)
	tp.Keep(a)
	tp.Keep(b)
	tp.T(a, nil)
	tp.Release()
	if a.Numel() != 0 || b.Numel() != 1 {
		t.Fatalf("after Keep and T again: a has %d elements (want 0: released), b %d (want 1: kept)",
			a.Numel(), b.Numel())
	}
	b.Release()
	tp.Reset()
	if tp.Err() != nil {
		t.Fatal("reset")
	}
}

// Independent graphs on many goroutines at once give the same results as alone.
func TestConcurrentGraphs(t *testing.T) {
	const workers, rounds = 16, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				v := float32(w*rounds + r)
				x, err := autograd.FromSlice([]float32{v, 1})
				if err == nil {
					err = x.SetRequiresGrad(true)
				}
				var tp autograd.Tape
				y := tp.T(x.Mul(x))
				s := tp.T(tp.T(y.Sum()).MulScalar(3))
				tp.Check(s.Backward())
				g := tp.T(x.Grad())
				if err == nil {
					err = tp.Err()
				}
				if err != nil {
					errs <- err
					return
				}
				got, _ := g.Float64s()
				if got[0] != float64(6*v) || got[1] != 6 {
					errs <- fmt.Errorf("worker %d round %d: grad %v", w, r, got)
					return
				}
				// NoGrad on one goroutine does not leak into the others.
				autograd.NoGrad(func() error { runtime.Gosched(); return nil })
				tp.Release()
				x.Release()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Tensors left to the garbage collector are released by their cleanups (a smoke test: the
// cleanups call into C from the runtime's cleanup goroutine).
func TestCleanup(t *testing.T) {
	for range 1000 {
		x, _ := autograd.Zeros(autograd.Float32, 64)
		_, _ = x.Exp()
	}
	runtime.GC()
	runtime.GC()
}

// hookedTensor makes a leaf with a hook whose Go closure captures an object that reports
// its collection on freed (with i): a tensor's hooks are freed with it, so that report says
// the library released the tensor.
func hookedTensor(t *testing.T, i int, freed chan<- int) *autograd.Tensor {
	x, err := autograd.Zeros(autograd.Float32, 4)
	ok(t, err)
	ok(t, x.SetRequiresGrad(true))
	marker := new([16]byte)
	runtime.AddCleanup(marker, func(i int) { freed <- i }, i)
	_, err = x.RegisterHook(func(g *autograd.Tensor) (*autograd.Tensor, error) {
		_ = marker[0]
		return nil, nil
	})
	ok(t, err)
	return x
}

// waitFreed collects until the n tensors of hookedTensor have all reported (or fails).
func waitFreed(t *testing.T, freed <-chan int, n int) {
	seen := make(map[int]bool)
	deadline := time.Now().Add(20 * time.Second)
	for len(seen) < n && time.Now().Before(deadline) {
		runtime.GC()
		select {
		case i := <-freed:
			seen[i] = true
		case <-time.After(10 * time.Millisecond):
		}
	}
	if len(seen) != n {
		t.Fatalf("%d of %d tensors' hooks were freed (the rest were never released)", len(seen), n)
	}
}

// Dropped tensors are released by the library in the end, though their cleanups are attached
// only after a collection (cleanup.go); released ones are not released again. Observed
// through hooks (hookedTensor).
func TestDroppedTensorsReleased(t *testing.T) {
	const n = 200
	freed := make(chan int, 2*n)
	for i := range n {
		x := hookedTensor(t, i, freed)
		if i%2 == 0 {
			x.Release() // half released now, half dropped
			x.Release() // twice: nothing
		}
	}
	waitFreed(t, freed, n)
}

// Tensors that got their cleanup (they lived through a collection) and were then released
// are released once: Release empties the cleanup's cell, and the cleanup, which runs when
// the Tensor is collected, finds it empty (cleanup.go). The dropped ones are released by
// their cleanups. A double release would free a tensor, and its hook, twice
// (TestArmedTensorReleasedOnce, inside the package, checks the cell itself).
func TestReleaseAfterArming(t *testing.T) {
	const n = 200
	freed := make(chan int, 2*n)
	xs := make([]*autograd.Tensor, n)
	for i := range xs {
		xs[i] = hookedTensor(t, i, freed)
	}
	for range 3 { // (cleanups are attached on the runtime's cleanup goroutine after each)
		runtime.GC()
		time.Sleep(5 * time.Millisecond)
	}
	for i, x := range xs {
		if i%2 == 0 {
			x.Release()
			x.Release()
		}
	}
	xs = nil
	waitFreed(t, freed, n)
}

// Release racing the collection that arms cleanups (run with -race to check the protocol in
// cleanup.go; a double release would free a tensor twice).
func TestReleaseWhileArming(t *testing.T) {
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				x, err := autograd.Scalar(float64(i), autograd.Float32)
				if err != nil {
					t.Error(err)
					return
				}
				if i%100 == g {
					runtime.GC()
				}
				if i%3 != 0 {
					x.Release()
				}
			}
		}()
	}
	wg.Wait()
	for range 3 {
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
}

func TestVersion(t *testing.T) {
	if err := autograd.CheckVersion(); err != nil {
		t.Fatal(err)
	}
	if autograd.Version() == "" || autograd.NumThreads() < 1 {
		t.Fatal("version or threads")
	}
	ok(t, autograd.SetNumThreads(2))
	if autograd.NumThreads() != 2 {
		t.Fatal("threads")
	}
	ok(t, autograd.SetNumThreads(0))
	if err := autograd.SetNumThreads(1<<32 + 3); !errors.Is(err, autograd.EInval) ||
		autograd.NumThreads() == 3 {
		t.Errorf("SetNumThreads(1<<32 + 3) = %v (threads now %d), want EInval and no change",
			err, autograd.NumThreads())
	}
	if err := autograd.SetNumThreads(-1); !errors.Is(err, autograd.EInval) {
		t.Fatalf("threads -1: %v", err)
	}
}

// Deferred kernels: on by default, the setter returns the previous setting, and a big op's
// result reads the same either way (with a Synchronize between).
func TestDeferral(t *testing.T) {
	ok(t, autograd.SetNumThreads(2))
	defer autograd.SetNumThreads(0)
	if !autograd.IsDeferralEnabled() {
		t.Fatal("deferral should be on by default")
	}
	sum := func() float64 {
		x, err := autograd.Full(autograd.Float32, 0.5, 64, 128)
		ok(t, err)
		y, err := x.AddScalar(1)
		ok(t, err)
		autograd.Synchronize()
		s, err := y.Sum()
		ok(t, err)
		v, err := s.Item()
		ok(t, err)
		return v
	}
	if v := sum(); v != 1.5*64*128 {
		t.Fatalf("deferred: %v", v)
	}
	if !autograd.SetDeferralEnabled(false) || autograd.IsDeferralEnabled() {
		t.Fatal("SetDeferralEnabled(false)")
	}
	if v := sum(); v != 1.5*64*128 {
		t.Fatalf("eager: %v", v)
	}
	if autograd.SetDeferralEnabled(true) {
		t.Fatal("SetDeferralEnabled(true) should return false")
	}
}

// Hooks and custom functions on the costly branches of one graph run on the library's
// worker threads, several at once: Go callbacks from threads Go did not start.
func TestCallbacksOnWorkerThreads(t *testing.T) {
	ok(t, autograd.SetNumThreads(4))
	defer autograd.SetNumThreads(0)
	const n = 1 << 15
	x := must(autograd.Ones(autograd.Float32, n))
	ok(t, x.SetRequiresGrad(true))
	var mu sync.Mutex
	calls := 0
	var total *autograd.Tensor
	for i := 1; i <= 8; i++ {
		b := must(x.MulScalar(float64(i)))
		must(b.RegisterHook(func(g *autograd.Tensor) (*autograd.Tensor, error) {
			mu.Lock()
			calls++
			mu.Unlock()
			return g.MulScalar(2)
		}))
		e := must(myExp().Apply(must(b.MulScalar(0))))[0]
		c := must(b.Mul(e))
		if total == nil {
			total = c
		} else {
			total = must(total.Add(c))
		}
	}
	ok(t, must(total.Sum()).Backward())
	if calls != 8 {
		t.Fatalf("%d hook calls", calls)
	}
	// d/dx sum_i 2 * i * x * exp(0) = 2 * 36.
	if g := values(t, must(x.Grad())); g[0] != 72 || g[n-1] != 72 {
		t.Fatalf("grad %v %v", g[0], g[n-1])
	}
}

// A released tensor's queries say so: no dtype (not float32), and String names it.
func TestReleasedQueries(t *testing.T) {
	x := must(autograd.Zeros(autograd.Int64, 2))
	x.Release()
	if d := x.DType(); d != autograd.NoDType || d.String() != "no dtype" {
		t.Fatalf("dtype of a released tensor: %v", d)
	}
	if s := x.String(); s != "<released tensor>" {
		t.Fatalf("String of a released tensor: %q", s)
	}
	var c *autograd.Context
	if err := c.SaveForBackward(x); !errors.Is(err, autograd.EInval) {
		t.Fatalf("a nil Context: %v", err)
	}
	f := &autograd.Function{Name: "A\x00B",
		Forward:  func(*autograd.Context, []*autograd.Tensor) ([]*autograd.Tensor, error) { return nil, nil },
		Backward: func(*autograd.Context, []*autograd.Tensor) ([]*autograd.Tensor, error) { return nil, nil }}
	if _, err := f.Apply(); !errors.Is(err, autograd.EInval) {
		t.Fatalf("a NUL in a Function's name: %v", err)
	}
}

// A released tensor passed where C takes an optional one (NULL: none) is an error, made
// before the call, not a call that succeeds without it; nil still means none.
func TestReleasedOptionalArguments(t *testing.T) {
	dead := func() *autograd.Tensor {
		d := must(autograd.FromSlice([]float32{1, 2}))
		d.Release()
		return d
	}
	released := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, autograd.EInval) || !strings.Contains(err.Error(), "after Release") {
			t.Fatalf("%s with a released tensor: %v", what, err)
		}
	}

	x := param(t, []float32{1, 2, 3, 4}, 2, 2)
	w := param(t, []float32{1, 0, 0, 1}, 2, 2)
	_, err := x.Linear(w, dead())
	released("Linear's bias", err)
	if err == nil || !strings.Contains(err.Error(), "Linear: b was released") {
		t.Fatalf("the message names neither the function nor the argument: %v", err)
	}
	if got := values(t, must(x.Linear(w, nil))); !slices.Equal(got, []float64{1, 2, 3, 4}) {
		t.Fatalf("Linear with a nil bias (none): %v", got)
	}
	_, err = x.LayerNorm([]int64{2}, dead(), nil, 1e-5)
	released("LayerNorm's weight", err)
	_, err = x.LayerNorm([]int64{2}, nil, dead(), 1e-5)
	released("LayerNorm's bias", err)
	must(x.LayerNorm([]int64{2}, nil, nil, 1e-5))

	target := must(autograd.FromSlice([]int64{0, 1}))
	_, err = x.CrossEntropy(target, autograd.WithWeight(dead()))
	released("CrossEntropy's WithWeight", err)
	_, err = x.NLLLoss(target, autograd.WithWeight(dead()))
	released("NLLLoss's WithWeight", err)
	probs := must(autograd.FromSlice([]float32{0, 1, 1, 0}, 2, 2))
	_, err = x.BinaryCrossEntropyWithLogits(probs, autograd.WithWeight(dead()))
	released("BinaryCrossEntropyWithLogits's WithWeight", err)
	_, err = x.BinaryCrossEntropyWithLogits(probs, autograd.WithPosWeight(dead()))
	released("BinaryCrossEntropyWithLogits's WithPosWeight", err)
	must(x.CrossEntropy(target, autograd.WithWeight(nil)))

	// Backward with a released gradient: no backward with the implicit gradient 1 instead.
	ok(t, x.SetGrad(nil))
	y := must(x.Sum())
	released("BackwardWith's Grad", y.BackwardWith(autograd.BackwardOptions{Grad: dead()}))
	if g := must(x.Grad()); g != nil {
		t.Fatalf("a failed backward wrote .grad: %v", g)
	}
	_, err = autograd.Grad([]*autograd.Tensor{y}, []*autograd.Tensor{x},
		autograd.GradOptions{GradOutputs: []*autograd.Tensor{dead()}})
	released("Grad's GradOutputs", err)
	ok(t, y.Backward()) // the graph is whole: nothing ran

	// SetGrad with a released tensor: not SetGrad(nil), which drops .grad.
	before := values(t, must(x.Grad()))
	released("SetGrad", x.SetGrad(dead()))
	if g := must(x.Grad()); g == nil || !slices.Equal(values(t, g), before) {
		t.Fatalf(".grad after SetGrad of a released tensor: %v", g)
	}
}
