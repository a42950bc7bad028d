package nn_test

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"libautograd.dev/autograd"
	"libautograd.dev/autograd/nn"
)

// must returns v, or panics on an error (which fails the test with its stack).
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

func values(x *autograd.Tensor) []float64 { return must(x.Float64s()) }

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

func gen(t *testing.T, seed uint64) *autograd.Generator {
	g := must(autograd.NewGenerator(seed))
	t.Cleanup(g.Release)
	return g
}

func tensor(t *testing.T, data []float64, shape ...int64) *autograd.Tensor {
	x := must(autograd.FromSlice(data, shape...))
	t.Cleanup(x.Release)
	return x
}

// set copies data into a parameter (under NoGrad: an in-place change of a leaf that requires
// grad is an error otherwise).
func set(t *testing.T, p *autograd.Tensor, data ...float64) {
	t.Helper()
	src := must(autograd.FromFloat64s(data, p.DType(), p.Shape()...))
	defer src.Release()
	ok(t, autograd.NoGrad(func() error { return p.CopyFrom(src) }))
}

func names(ps []nn.NamedParameter) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name)
	}
	return out
}

// wantErr checks that err is an *autograd.Error with code, whose message holds each part.
func wantErr(t *testing.T, err error, code autograd.Code, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want %v with %q", code, parts)
	}
	var ae *autograd.Error
	if !errors.As(err, &ae) || !errors.Is(err, code) {
		t.Fatalf("error %q (%T): want an *autograd.Error with %v", err, err, code)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("error %q does not contain %q", err, p)
		}
	}
}

// ---- Linear's initialisation ----

// The Lua binding's nn.Linear for the same seeds, printed by
//
//	local l = ag.nn.Linear(4, 3, ag.generator(7))  -- then l.weight, l.bias (%.9g)
//	ag.nn.Linear(3, 2, {generator = ag.generator(42), dtype = "float64"})   -- (%.17g)
//	ag.nn.Linear(2, 2, {bias = false, generator = ag.generator(7)})
//
// (LUA_PATH=bindings/lua/?.lua LUA_CPATH=<build>/bindings/lua/?.so lua5.4). Both bindings
// call ag_rand, ag_sub_scalar and ag_mul_scalar, so the values agree to the bit.
var (
	luaW7 = []float32{0.454597116, -0.385822654, -0.093039602, -0.328201324, -0.493924856,
		0.307655096, -0.109800935, -0.352225006, -0.210071385, 0.197370827, -0.161387056,
		0.393676341}
	luaB7  = []float32{0.302705348, -0.359215319, -0.22935313}
	luaW42 = []float64{0.13043483562467473, -0.49278954253938095, 0.56316898878858757,
		0.016057435394329321, 0.37627860080321673, 0.11863850531210229}
	luaB42  = []float64{0.26511839472147475, 0.099766525758997138}
	luaNoB7 = []float32{0.642897367, -0.545635641, -0.131577864, -0.464146763}
)

func TestLinearInitMatchesLua(t *testing.T) {
	l := must(nn.NewLinear(4, 3, nn.WithGenerator(gen(t, 7))))
	defer l.Release()
	if w := must(autograd.Data[float32](l.Weight)); !slices.Equal(w, luaW7) {
		t.Fatalf("weight %v, Lua's %v", w, luaW7)
	}
	if b := must(autograd.Data[float32](l.Bias)); !slices.Equal(b, luaB7) {
		t.Fatalf("bias %v, Lua's %v", b, luaB7)
	}
	if !slices.Equal(l.Weight.Shape(), []int64{3, 4}) || !slices.Equal(l.Bias.Shape(), []int64{3}) {
		t.Fatalf("shapes %v %v", l.Weight.Shape(), l.Bias.Shape())
	}
	for _, p := range l.Parameters() {
		if !p.RequiresGrad() || !p.IsLeaf() || p.DType() != autograd.Float32 {
			t.Fatalf("%v: want a float32 leaf requiring grad", p)
		}
	}

	l64 := must(nn.NewLinear(3, 2, nn.WithGenerator(gen(t, 42)), nn.WithDType(autograd.Float64)))
	defer l64.Release()
	if w := must(autograd.Data[float64](l64.Weight)); !slices.Equal(w, luaW42) {
		t.Fatalf("float64 weight %v, Lua's %v", w, luaW42)
	}
	if b := must(autograd.Data[float64](l64.Bias)); !slices.Equal(b, luaB42) {
		t.Fatalf("float64 bias %v, Lua's %v", b, luaB42)
	}

	nb := must(nn.NewLinear(2, 2, nn.WithBias(false), nn.WithGenerator(gen(t, 7))))
	defer nb.Release()
	if nb.Bias != nil || len(nb.Parameters()) != 1 {
		t.Fatalf("WithBias(false): bias %v, %d parameters", nb.Bias, len(nb.Parameters()))
	}
	if w := must(autograd.Data[float32](nb.Weight)); !slices.Equal(w, luaNoB7) {
		t.Fatalf("weight %v, Lua's %v", w, luaNoB7)
	}

	// Without a generator: the package's default one, as autograd.ManualSeed sets it.
	ok(t, autograd.ManualSeed(7))
	d := must(nn.NewLinear(4, 3))
	defer d.Release()
	if w := must(autograd.Data[float32](d.Weight)); !slices.Equal(w, luaW7) {
		t.Fatalf("default generator: weight %v, want %v", w, luaW7)
	}
}

// The initialisation is torch.nn.Linear's formula: weight, then bias, each (rand - 0.5) * 2 /
// sqrt(in) from the same stream (as test_nn.lua checks it), within the bound.
func TestLinearInitFormula(t *testing.T) {
	for _, in := range []int64{1, 5, 64} {
		l := must(nn.NewLinear(in, 7, nn.WithGenerator(gen(t, 11))))
		g := gen(t, 11)
		bound := 1 / math.Sqrt(float64(in))
		for i, shape := range [][]int64{{7, in}, {7}} {
			u := must(autograd.Rand(g, autograd.Float32, shape...))
			want := must(must(u.SubScalar(0.5)).MulScalar(2 * bound))
			got := l.Parameters()[i]
			if !slices.Equal(must(autograd.Data[float32](got)), must(autograd.Data[float32](want))) {
				t.Fatalf("in=%d parameter %d differs from the formula", in, i)
			}
			for _, v := range values(got) {
				if math.Abs(v) > bound {
					t.Fatalf("in=%d: %g outside ±%g", in, v, bound)
				}
			}
		}
		l.Release()
	}
	// in_features 0: PyTorch's bound 0 gives a zero bias (and an empty weight).
	z := must(nn.NewLinear(0, 3, nn.WithGenerator(gen(t, 1))))
	defer z.Release()
	if !slices.Equal(z.Weight.Shape(), []int64{3, 0}) || !slices.Equal(values(z.Bias), []float64{0, 0, 0}) ||
		math.Signbit(values(z.Bias)[0]) {
		t.Fatalf("in_features 0: weight %v, bias %v", z.Weight, z.Bias)
	}
}

// ---- forward values and gradients ----

func TestLinearForwardAndGradients(t *testing.T) {
	l := must(nn.NewLinear(2, 3, nn.WithDType(autograd.Float64)))
	defer l.Release()
	set(t, l.Weight, 1, 0, 0, 1, 1, 1)
	set(t, l.Bias, 0.5, -0.5, 0)
	x := tensor(t, []float64{1, 2, 3, 4}, 2, 2)
	ok(t, x.SetRequiresGrad(true))
	y := must(l.Forward(x))
	defer y.Release()
	if !slices.Equal(y.Shape(), []int64{2, 3}) ||
		!slices.Equal(values(y), []float64{1.5, 1.5, 3, 3.5, 3.5, 7}) {
		t.Fatalf("y = %v", y)
	}
	if fn := must(y.GradFn()); fn.Name() != "AddmmBackward0" {
		t.Fatalf("grad_fn %s", fn.Name())
	}
	ok(t, must(y.Sum()).Backward())
	// d sum(y) / dW[j] = sum over the batch of x = [4, 6]; / db = batch size; / dx = sum_j W[j].
	if g := values(must(l.Weight.Grad())); !slices.Equal(g, []float64{4, 6, 4, 6, 4, 6}) {
		t.Fatalf("weight grad %v", g)
	}
	if g := values(must(l.Bias.Grad())); !slices.Equal(g, []float64{2, 2, 2}) {
		t.Fatalf("bias grad %v", g)
	}
	if g := values(must(x.Grad())); !slices.Equal(g, []float64{2, 2, 2, 2}) {
		t.Fatalf("input grad %v", g)
	}

	// A 1-d input and a Linear built by hand from its fields.
	w := tensor(t, []float64{2, -1}, 1, 2)
	hand := &nn.Linear{InFeatures: 2, OutFeatures: 1, Weight: w}
	v := must(hand.Forward(tensor(t, []float64{3, 4})))
	if !slices.Equal(v.Shape(), []int64{1}) || values(v)[0] != 2 {
		t.Fatalf("hand-made Linear: %v", v)
	}
	if hand.String() != "Linear(in_features=2, out_features=1, bias=False)" {
		t.Fatal(hand.String())
	}
}

func TestActivations(t *testing.T) {
	xs := []float64{-2, -0.5, 0, 0.5, 2, 25}
	x := tensor(t, xs, 2, 3)
	each := func(f func(float64) float64) []float64 {
		out := make([]float64, len(xs))
		for i, v := range xs {
			out[i] = f(v)
		}
		return out
	}
	sigmoid := func(v float64) float64 { return 1 / (1 + math.Exp(-v)) }
	cases := []struct {
		m    nn.Module
		want []float64
	}{
		{nn.NewReLU(), each(func(v float64) float64 { return math.Max(v, 0) })},
		{&nn.ReLU{}, each(func(v float64) float64 { return math.Max(v, 0) })},
		{nn.NewTanh(), each(math.Tanh)},
		{nn.NewSigmoid(), each(sigmoid)},
		{nn.NewSiLU(), each(func(v float64) float64 { return v * sigmoid(v) })},
		{must(nn.NewGELU("none")), each(func(v float64) float64 { return 0.5 * v * (1 + math.Erf(v/math.Sqrt2)) })},
		{&nn.GELU{}, each(func(v float64) float64 { return 0.5 * v * (1 + math.Erf(v/math.Sqrt2)) })},
		{must(nn.NewGELU("tanh")), each(func(v float64) float64 {
			return 0.5 * v * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(v+0.044715*v*v*v)))
		})},
		{nn.NewLeakyReLU(0.1), each(func(v float64) float64 { return map[bool]float64{true: v, false: 0.1 * v}[v > 0] })},
		// log1p(exp(x)), and x itself beyond the threshold (25 > 20).
		{nn.NewSoftplus(1, 20), []float64{math.Log1p(math.Exp(-2)), math.Log1p(math.Exp(-0.5)),
			math.Ln2, math.Log1p(math.Exp(0.5)), math.Log1p(math.Exp(2)), 25}},
		{nn.NewSoftplus(2, 20), []float64{math.Log1p(math.Exp(-4)) / 2, math.Log1p(math.Exp(-1)) / 2,
			math.Ln2 / 2, math.Log1p(math.Exp(1)) / 2, math.Log1p(math.Exp(4)) / 2, 25}},
		{nn.NewIdentity(), xs},
	}
	for _, c := range cases {
		y, err := c.m.Forward(x)
		ok(t, err)
		if !near(values(y), c.want, 1e-12) {
			t.Errorf("%v: %v, want %v", c.m, values(y), c.want)
		}
		if !slices.Equal(y.Shape(), []int64{2, 3}) {
			t.Errorf("%v: shape %v", c.m, y.Shape())
		}
		y.Release()
	}
	// The output of Identity is a reference of its own: releasing it keeps x.
	id := must(nn.NewIdentity().Forward(x))
	if !id.SharesStorage(x) {
		t.Fatal("Identity copied its input")
	}
	id.Release()
	if !slices.Equal(values(x), xs) {
		t.Fatal("releasing Identity's output released its input")
	}
}

func TestSoftmaxLogSoftmaxFlatten(t *testing.T) {
	x := tensor(t, []float64{1, 2, 3, 1, 1, 1}, 2, 3)
	lse := math.Log(math.Exp(1) + math.Exp(2) + math.Exp(3))
	wantLog := []float64{1 - lse, 2 - lse, 3 - lse, -math.Log(3), -math.Log(3), -math.Log(3)}
	if got := values(must(nn.NewLogSoftmax(1).Forward(x))); !near(got, wantLog, 1e-12) {
		t.Fatalf("LogSoftmax(1): %v, want %v", got, wantLog)
	}
	if got := values(must(nn.NewLogSoftmax(-1).Forward(x))); !near(got, wantLog, 1e-12) {
		t.Fatalf("LogSoftmax(-1): %v", got)
	}
	wantSm := make([]float64, 6)
	for i, v := range wantLog {
		wantSm[i] = math.Exp(v)
	}
	if got := values(must(nn.NewSoftmax(1).Forward(x))); !near(got, wantSm, 1e-12) {
		t.Fatalf("Softmax(1): %v, want %v", got, wantSm)
	}
	// Along dim 0 the columns sum to 1.
	col := values(must(nn.NewSoftmax(0).Forward(x)))
	for j := range 3 {
		if math.Abs(col[j]+col[3+j]-1) > 1e-12 {
			t.Fatalf("Softmax(0): %v", col)
		}
	}

	z := must(autograd.Arange(autograd.Float32, 0, 24, 1))
	defer z.Release()
	z3 := must(z.Reshape(2, 3, 4))
	defer z3.Release()
	for _, c := range []struct {
		f     *nn.Flatten
		shape []int64
	}{
		{nn.NewFlatten(1, -1), []int64{2, 12}},
		{nn.NewFlatten(0, 1), []int64{6, 4}},
		{nn.NewFlatten(0, -1), []int64{24}},
		{&nn.Flatten{}, []int64{2, 3, 4}},
	} {
		y := must(c.f.Forward(z3))
		if !slices.Equal(y.Shape(), c.shape) || !slices.Equal(values(y), values(z)) {
			t.Fatalf("%v: shape %v", c.f, y.Shape())
		}
		y.Release()
	}
}

// ---- containers ----

func mlp(t *testing.T, seed uint64) (*nn.Sequential, *nn.Linear, *nn.Linear) {
	g := gen(t, seed)
	l1 := must(nn.NewLinear(4, 8, nn.WithGenerator(g)))
	l2 := must(nn.NewLinear(8, 2, nn.WithGenerator(g)))
	s := must(nn.NewSequential(l1, nn.NewReLU(), l2, nn.NewTanh()))
	t.Cleanup(s.Release)
	return s, l1, l2
}

func TestSequential(t *testing.T) {
	s, l1, l2 := mlp(t, 1)
	ps := s.NamedParameters()
	if got := names(ps); !slices.Equal(got, []string{"0.weight", "0.bias", "2.weight", "2.bias"}) {
		t.Fatalf("names %v", got)
	}
	want := []*autograd.Tensor{l1.Weight, l1.Bias, l2.Weight, l2.Bias}
	if !slices.Equal(s.Parameters(), want) {
		t.Fatal("Parameters are not the Linears' tensors, in order")
	}
	for i, p := range ps {
		if p.Tensor != want[i] {
			t.Fatalf("%s is not parameter %d", p.Name, i)
		}
	}
	if s.Len() != 4 || s.At(0) != nn.Module(l1) || s.At(-1).(*nn.Tanh) == nil || s.At(4) != nil ||
		s.At(-5) != nil {
		t.Fatal("Len/At")
	}

	// The forward pass is the composition of the modules.
	x := tensor(t, []float64{0.5, -1, 2, 0, 1, 1, -1, 3}, 2, 4)
	x32 := must(x.To(autograd.Float32))
	defer x32.Release()
	y := must(s.Forward(x32))
	defer y.Release()
	h := must(l1.Forward(x32))
	want2 := must(must(must(h.Relu()).Linear(l2.Weight, l2.Bias)).Tanh())
	if !slices.Equal(y.Shape(), []int64{2, 2}) || !slices.Equal(values(y), values(want2)) {
		t.Fatalf("Sequential %v, composition %v", y, want2)
	}

	// The intermediate outputs are released (the graph keeps what backward needs); the
	// caller's input is not.
	sp := &spy{}
	withSpy := must(nn.NewSequential(l1, sp, nn.NewReLU()))
	must(withSpy.Forward(x32)).Release()
	if sp.seen == nil || sp.seen == x32 || sp.seen.DType() != autograd.NoDType {
		t.Fatal("the intermediate output was not released")
	}
	first := must(nn.NewSequential(sp, nn.NewReLU()))
	must(first.Forward(x32)).Release()
	if sp.seen != x32 || x32.DType() != autograd.Float32 {
		t.Fatal("the input was released")
	}

	// A module held twice is listed once, under its first name; nesting prefixes names.
	shared := must(nn.NewSequential(l1, nn.NewReLU(), l1))
	if got := names(shared.NamedParameters()); !slices.Equal(got, []string{"0.weight", "0.bias"}) {
		t.Fatalf("shared: %v", got)
	}
	inner := must(nn.NewSequential(l2))
	nested := must(nn.NewSequential(inner, l1))
	if got := names(nested.NamedParameters()); !slices.Equal(got,
		[]string{"0.0.weight", "0.0.bias", "1.weight", "1.bias"}) {
		t.Fatalf("nested: %v", got)
	}

	// Append, and an empty Sequential (its output is its input, as a new reference).
	e := must(nn.NewSequential())
	out := must(e.Forward(x))
	if out == x || !out.SharesStorage(x) || len(e.Parameters()) != 0 {
		t.Fatal("empty Sequential")
	}
	out.Release()
	ok(t, e.Append(nn.NewSigmoid()))
	if got := values(must(e.Forward(x)))[3]; got != 0.5 {
		t.Fatalf("after Append: sigmoid(0) = %v", got)
	}
}

// spy remembers its input and returns a copy.
type spy struct {
	nn.Base
	seen *autograd.Tensor
}

func (s *spy) Forward(x *autograd.Tensor) (*autograd.Tensor, error) {
	s.seen = x
	return x.Clone()
}

// MLP is a module of one's own: Base gives it everything but Forward.
type MLP struct {
	nn.Base
	fc1, fc2 *nn.Linear
	drop     *nn.Dropout
	gain     *autograd.Tensor
}

func newMLP(t *testing.T) *MLP {
	m := &MLP{}
	m.fc1 = must(nn.NewLinear(4, 8, nn.WithGenerator(gen(t, 1))))
	m.drop = must(nn.NewDropout(0.5, nn.WithGenerator(gen(t, 2))))
	m.fc2 = must(nn.NewLinear(8, 2, nn.WithGenerator(gen(t, 3))))
	m.gain = must(autograd.Scalar(1, autograd.Float32))
	ok(t, m.gain.SetRequiresGrad(true))
	ok(t, m.RegisterModule("fc1", m.fc1))
	ok(t, m.RegisterModule("drop", m.drop))
	ok(t, m.RegisterModule("fc2", m.fc2))
	ok(t, m.RegisterParameter("gain", m.gain)) // registered last, listed first (own parameters)
	return m
}

func (m *MLP) Forward(x *autograd.Tensor) (*autograd.Tensor, error) {
	var tp autograd.Tape
	defer tp.Release()
	h := tp.T(m.fc1.Forward(x))
	h = tp.T(h.Relu())
	h = tp.T(m.drop.Forward(h))
	h = tp.T(m.fc2.Forward(h))
	y := tp.Keep(tp.T(h.Mul(m.gain)))
	return y, tp.Err()
}

func TestBase(t *testing.T) {
	m := newMLP(t)
	defer m.Release()
	var _ nn.Module = m
	if got := names(m.NamedParameters()); !slices.Equal(got,
		[]string{"gain", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}) {
		t.Fatalf("names %v", got)
	}
	if ps := m.Parameters(); ps[0] != m.gain || ps[1] != m.fc1.Weight || ps[4] != m.fc2.Bias {
		t.Fatal("Parameters are not the registered tensors, in order")
	}
	if c := m.NamedChildren(); len(c) != 3 || c[1].Name != "drop" || c[1].Module != nn.Module(m.drop) {
		t.Fatalf("children %v", c)
	}

	// Train(false) reaches the Dropout inside: the output is then deterministic.
	if !m.Training() || !m.drop.Training() {
		t.Fatal("modules start in training mode")
	}
	m.Train(false)
	if m.Training() || m.drop.Training() || m.fc1.Training() {
		t.Fatal("Train(false) did not reach the children")
	}
	x := must(autograd.Ones(autograd.Float32, 3, 4))
	defer x.Release()
	a, b := must(m.Forward(x)), must(m.Forward(x))
	if !slices.Equal(values(a), values(b)) {
		t.Fatal("evaluation mode is not deterministic")
	}

	// Gradients reach every parameter, the own one included.
	ok(t, must(a.Sum()).Backward())
	for _, p := range m.NamedParameters() {
		if g := must(p.Tensor.Grad()); g == nil || !slices.Equal(g.Shape(), p.Tensor.Shape()) {
			t.Fatalf("%s: grad %v", p.Name, g)
		}
	}

	// Registering a name again replaces the entry in place; a parameter and a module
	// cannot share a name.
	fc3 := must(nn.NewLinear(8, 3))
	defer fc3.Release()
	m.fc2 = fc3
	ok(t, m.RegisterModule("fc2", fc3))
	if ps := m.Parameters(); len(ps) != 5 || ps[3] != fc3.Weight {
		t.Fatal("the replaced child is not the one listed")
	}
	if y := must(m.Forward(x)); !slices.Equal(y.Shape(), []int64{3, 3}) {
		t.Fatalf("shape %v", y.Shape())
	}
	wantErr(t, m.RegisterModule("gain", nn.NewReLU()), autograd.EInval, "already a parameter")
	wantErr(t, m.RegisterParameter("fc1", m.gain), autograd.EInval, "already a child module")
	wantErr(t, m.RegisterParameter("", m.gain), autograd.EInval, "can't be empty")
	wantErr(t, m.RegisterModule("a.b", nn.NewReLU()), autograd.EInval, `can't contain "."`)
	wantErr(t, m.RegisterModule("none", nil), autograd.EInval, `module "none" is nil`)
	gain2 := must(autograd.Scalar(2, autograd.Float32))
	defer gain2.Release()
	ok(t, m.RegisterParameter("gain", gain2))
	if ps := m.NamedParameters(); len(ps) != 5 || ps[0].Tensor != gain2 || ps[0].Name != "gain" {
		t.Fatal("the replaced parameter is not the one listed")
	}
	ok(t, m.RegisterParameter("gain", m.gain))
	// A nil parameter (an optional one) is allowed and lists nothing.
	ok(t, m.RegisterParameter("extra", nil))
	if len(m.Parameters()) != 5 {
		t.Fatal("a nil parameter is listed")
	}

	// String: PyTorch's layout, with the type's name.
	want := "MLP(\n  (fc1): Linear(in_features=4, out_features=8, bias=True)\n" +
		"  (drop): Dropout(p=0.5, inplace=False)\n" +
		"  (fc2): Linear(in_features=8, out_features=3, bias=True)\n)"
	s := must(nn.NewSequential(m, nn.NewSoftmax(-1)))
	if got := s.String(); got != "Sequential(\n  (0): "+strings.ReplaceAll(want, "\n", "\n  ")+
		"\n  (1): Softmax(dim=-1)\n)" {
		t.Fatalf("String:\n%s", got)
	}
}

func TestCycles(t *testing.T) {
	s := must(nn.NewSequential(nn.NewReLU()))
	wantErr(t, s.Append(s), autograd.EInval, "contains the Sequential itself")
	outer := must(nn.NewSequential(s))
	wantErr(t, s.Append(outer), autograd.EInval, "module 1 contains")
	m := &MLP{}
	wantErr(t, m.RegisterModule("self", m), autograd.EInval, "contains the module")
	ok(t, m.RegisterModule("seq", s))
	wrapper := must(nn.NewSequential(m))
	wantErr(t, m.RegisterModule("up", wrapper), autograd.EInval, "contains the module")
	wantErr(t, s.Append(wrapper), autograd.EInval, "contains the Sequential")
	// The walks still end.
	if len(wrapper.Parameters()) != 0 || s.Len() != 1 {
		t.Fatal("a refused module was added")
	}
	wrapper.Train(false)
}

// byValue is a module used by value whose comparable type holds an uncomparable value (a
// slice in an interface field): comparing two of them with == panics at run time.
type byValue struct {
	*nn.Base
	Act any
}

func (v byValue) Forward(x *autograd.Tensor) (*autograd.Tensor, error) { return x.Relu() }

// The walks that tell modules apart (cycle checks, Release) compare such modules without
// panicking ("comparing uncomparable type []int" from Sequential.Release).
func TestUncomparableModules(t *testing.T) {
	a := byValue{Base: &nn.Base{}, Act: []int{1}}
	b := byValue{Base: a.Base, Act: []int{2}}
	s := must(nn.NewSequential(a, b))
	if s.Len() != 2 {
		t.Fatalf("Len = %d, want 2", s.Len())
	}
	s.Release()
}

// ---- training mode ----

func TestDropoutTrainEval(t *testing.T) {
	d := must(nn.NewDropout(0.5, nn.WithGenerator(gen(t, 3))))
	x := must(autograd.Ones(autograd.Float32, 1000))
	defer x.Release()
	y := must(d.Forward(x))
	zeros := 0
	for _, v := range values(y) {
		switch v {
		case 0:
			zeros++
		case 2: // kept, scaled by 1/(1-p)
		default:
			t.Fatalf("dropout value %v", v)
		}
	}
	if zeros < 400 || zeros > 600 {
		t.Fatalf("%d of 1000 zeroed with p = 0.5", zeros)
	}
	// The same seed gives the same mask; the gradient is the mask.
	ok(t, x.SetRequiresGrad(true))
	d2 := must(nn.NewDropout(0.5, nn.WithGenerator(gen(t, 3))))
	y2 := must(d2.Forward(x))
	if !slices.Equal(values(y), values(y2)) {
		t.Fatal("the same seed gave another mask")
	}
	ok(t, must(y2.Sum()).Backward())
	if !slices.Equal(values(must(x.Grad())), values(y)) {
		t.Fatal("the gradient is not the mask")
	}

	// Evaluation mode: the input itself, as a new reference.
	d.Train(false)
	if d.Training() {
		t.Fatal("Training after Train(false)")
	}
	e := must(d.Forward(x))
	if e == x || !e.SharesStorage(x) || must(must(e.Sum()).Item()) != 1000 {
		t.Fatal("evaluation mode changed the input")
	}
	e.Release()
	d.Train(true)
	if must(must(must(d.Forward(x)).Sum()).Item()) == 1000 {
		t.Fatal("training mode again: no dropout")
	}

	// A Sequential's Train reaches its Dropout.
	s := must(nn.NewSequential(nn.NewIdentity(), d))
	s.Train(false)
	if d.Training() || s.Training() {
		t.Fatal("Sequential.Train(false) did not reach the Dropout")
	}
	if must(must(must(s.Forward(x)).Sum()).Item()) != 1000 {
		t.Fatal("Sequential in evaluation mode dropped")
	}
	s.Train(true)
	if !d.Training() {
		t.Fatal("Sequential.Train(true)")
	}

	// p = 0 keeps everything, p = 1 zeroes everything.
	for _, c := range []struct{ p, sum float64 }{{0, 1000}, {1, 0}} {
		dp := must(nn.NewDropout(c.p))
		if got := must(must(must(dp.Forward(x)).Sum()).Item()); got != c.sum {
			t.Fatalf("p = %v: sum %v", c.p, got)
		}
	}
	if d.String() != "Dropout(p=0.5, inplace=False)" {
		t.Fatal(d.String())
	}
}

// ---- gradients and training ----

// The gradients of a Sequential agree with central differences of its loss.
func TestGradientsReachParameters(t *testing.T) {
	g := gen(t, 5)
	l1 := must(nn.NewLinear(3, 4, nn.WithGenerator(g), nn.WithDType(autograd.Float64)))
	l2 := must(nn.NewLinear(4, 2, nn.WithGenerator(g), nn.WithDType(autograd.Float64)))
	s := must(nn.NewSequential(l1, nn.NewTanh(), l2, must(nn.NewGELU("tanh"))))
	defer s.Release()
	x := tensor(t, []float64{0.3, -1.2, 0.7, 2, 0.1, -0.4}, 2, 3)
	target := tensor(t, []float64{0.5, -0.25, 1, 0}, 2, 2)
	loss := func() float64 {
		var v float64
		ok(t, autograd.NoGrad(func() error {
			y, err := s.Forward(x)
			if err != nil {
				return err
			}
			v = must(must(y.MSELoss(target)).Item())
			return nil
		}))
		return v
	}
	y := must(s.Forward(x))
	ok(t, must(y.MSELoss(target)).Backward())
	const h = 1e-6
	for _, p := range s.NamedParameters() {
		grad := values(must(p.Tensor.Grad()))
		vals := values(p.Tensor)
		if len(grad) != len(vals) {
			t.Fatalf("%s: grad of %d elements", p.Name, len(grad))
		}
		for i := range vals {
			plus, minus := slices.Clone(vals), slices.Clone(vals)
			plus[i] += h
			minus[i] -= h
			set(t, p.Tensor, plus...)
			lp := loss()
			set(t, p.Tensor, minus...)
			lm := loss()
			set(t, p.Tensor, vals...)
			if fd := (lp - lm) / (2 * h); math.Abs(fd-grad[i]) > 1e-6*(1+math.Abs(fd)) {
				t.Fatalf("%s[%d]: grad %v, central difference %v", p.Name, i, grad[i], fd)
			}
		}
	}

	// ZeroGrad zeroes in place, or drops the gradients.
	ok(t, s.ZeroGrad(false))
	for _, p := range s.Parameters() {
		if g := must(p.Grad()); g == nil || must(must(g.Abs()).Max()).String() != "tensor(0., dtype=torch.float64)" {
			t.Fatalf("ZeroGrad(false): %v", g)
		}
	}
	ok(t, s.ZeroGrad(true))
	for _, p := range s.Parameters() {
		if g := must(p.Grad()); g != nil {
			t.Fatalf("ZeroGrad(true): %v", g)
		}
	}
}

// fit takes steps of opt on the MSE loss of m(x) against y, dropping the gradients first with
// zeroGrad (the module's or the optimizer's), and returns the first and the last loss.
func fit(t *testing.T, m nn.Module, opt *autograd.Optimizer, zeroGrad func(setToNone bool) error,
	x, y *autograd.Tensor, steps int) (first, last float64) {
	t.Helper()
	for step := range steps {
		var tp autograd.Tape
		tp.Check(zeroGrad(true))
		loss := tp.T(tp.T(m.Forward(x)).MSELoss(y))
		tp.Check(loss.Backward())
		tp.Check(opt.Step())
		v, err := loss.Item()
		tp.Check(err)
		ok(t, tp.Err())
		tp.Release()
		if step == 0 {
			first = v
		}
		last = v
	}
	return first, last
}

// A linear regression with SGD finds its coefficients.
func TestTrainingSGD(t *testing.T) {
	l := must(nn.NewLinear(2, 1, nn.WithGenerator(gen(t, 0)), nn.WithDType(autograd.Float64)))
	defer l.Release()
	// y = 2 x0 - 3 x1 + 1
	xs := []float64{0, 0, 1, 0, 0, 1, 1, 1, -1, 2, 0.5, -0.5, 2, 1, -1, -1}
	var ys []float64
	for i := 0; i < len(xs); i += 2 {
		ys = append(ys, 2*xs[i]-3*xs[i+1]+1)
	}
	x, y := tensor(t, xs, 8, 2), tensor(t, ys, 8, 1)
	opt := must(autograd.NewSGD(l.Parameters(), 0.1))
	defer opt.Release()
	first, last := fit(t, l, opt, l.ZeroGrad, x, y, 500) // (the module's ZeroGrad)
	if !(last < 1e-10 && last < first) {
		t.Fatalf("loss %g -> %g", first, last)
	}
	if w, b := values(l.Weight), values(l.Bias); !near(w, []float64{2, -3}, 1e-5) || !near(b, []float64{1}, 1e-5) {
		t.Fatalf("w %v b %v", w, b)
	}
}

// XOR with a two-layer network and Adam (the loss must fall by far).
func TestTrainingAdam(t *testing.T) {
	g := gen(t, 0)
	model := must(nn.NewSequential(must(nn.NewLinear(2, 8, nn.WithGenerator(g))), nn.NewTanh(),
		must(nn.NewLinear(8, 1, nn.WithGenerator(g)))))
	defer model.Release()
	x := must(autograd.FromSlice([]float32{0, 0, 0, 1, 1, 0, 1, 1}, 4, 2))
	y := must(autograd.FromSlice([]float32{0, 1, 1, 0}, 4, 1))
	defer x.Release()
	defer y.Release()
	opt := must(autograd.NewAdam(model.Parameters(), 0.05))
	defer opt.Release()
	first, last := fit(t, model, opt, opt.ZeroGrad, x, y, 300) // (the optimizer's)
	if !(first > 0.1 && last < 0.01) {
		t.Fatalf("XOR loss %g -> %g", first, last)
	}
	pred := values(must(model.Forward(x)))
	for i, want := range []float64{0, 1, 1, 0} {
		if math.Abs(pred[i]-want) > 0.25 {
			t.Fatalf("prediction %v", pred)
		}
	}
}

// ---- errors ----

func TestErrors(t *testing.T) {
	l := must(nn.NewLinear(4, 3))
	defer l.Release()
	x := tensor(t, []float64{1, 2, 3, 4, 5, 6}, 2, 3)
	x32 := must(x.To(autograd.Float32))
	defer x32.Release()

	// The wrong feature count: the library's message, prefixed with the module.
	_, err := l.Forward(x32)
	wantErr(t, err, autograd.EShape, "nn.Linear(in_features=4, out_features=3, bias=True): ag_linear:",
		"[2, 3]", "in_features 4")
	s, _, _ := mlp(t, 1)
	_, err = s.Forward(x32)
	wantErr(t, err, autograd.EShape, "nn.Sequential[0]: nn.Linear(in_features=4", "ag_linear")
	ok4 := must(autograd.Ones(autograd.Float32, 2, 4))
	defer ok4.Release()
	bad := must(nn.NewSequential(l, nn.NewReLU(), must(nn.NewLinear(2, 1))))
	_, err = bad.Forward(ok4)
	wantErr(t, err, autograd.EShape, "nn.Sequential[2]: nn.Linear(in_features=2, out_features=1")
	_, err = nn.NewSoftmax(2).Forward(x32)
	wantErr(t, err, autograd.ERange, "nn.Softmax(dim=2): ag_softmax")
	// A dtype mismatch (float64 input, float32 weight).
	_, err = l.Forward(must(autograd.Ones(autograd.Float64, 2, 4)))
	wantErr(t, err, autograd.EDType, "nn.Linear")

	// Constructors.
	_, err = nn.NewLinear(4, 3, nn.WithDType(autograd.Int64))
	wantErr(t, err, autograd.EDType, "nn.NewLinear(4, 3): ag_rand")
	_, err = nn.NewLinear(-1, 3)
	wantErr(t, err, autograd.EInval, "nn.NewLinear(-1, 3)")
	_, err = nn.NewDropout(1.5)
	wantErr(t, err, autograd.EInval, "between 0 and 1, but got 1.5")
	_, err = nn.NewDropout(math.NaN())
	wantErr(t, err, autograd.EInval, "between 0 and 1")
	_, err = nn.NewDropout(0.5, nn.WithBias(false))
	wantErr(t, err, autograd.EInval, "nn.NewDropout: WithBias does not apply")
	_, err = nn.NewGELU("fast")
	wantErr(t, err, autograd.EInval, `approximate argument must be either none or tanh, got "fast"`)
	_, err = (&nn.GELU{Config: nn.GELUConfig{Approximate: "fast"}}).Forward(x32)
	wantErr(t, err, autograd.EInval, "nn.GELU(approximate='fast')")
	_, err = nn.NewSequential(nn.NewReLU(), nil)
	wantErr(t, err, autograd.EInval, "nn.NewSequential: nn.Sequential.Append: module 1 is nil")
	_, err = nn.NewSequential((*nn.Linear)(nil))
	wantErr(t, err, autograd.EInval, "module 0 is nil")

	// A released input or module.
	gone := must(autograd.Ones(autograd.Float32, 2, 4))
	gone.Release()
	_, err = l.Forward(gone)
	wantErr(t, err, autograd.EInval, "used after Release")
	_, err = nn.NewIdentity().Forward(gone)
	wantErr(t, err, autograd.EInval, "nn.Identity(): the input is nil or was released")
	_, err = must(nn.NewSequential()).Forward(gone)
	wantErr(t, err, autograd.EInval, "nn.Sequential: the input is nil or was released")
	dead := must(nn.NewLinear(4, 3))
	dead.Release()
	dead.Release() // twice: nothing
	_, err = dead.Forward(ok4)
	wantErr(t, err, autograd.EInval, "used after Release")
	wantErr(t, dead.ZeroGrad(false), autograd.EInval, "nn.Linear.ZeroGrad: weight")
	noBias := must(nn.NewLinear(4, 3)) // its Bias alone released: not a Linear without bias
	defer noBias.Release()
	noBias.Bias.Release()
	_, err = noBias.Forward(ok4)
	wantErr(t, err, autograd.EInval, "used after Release")

	// A module of one's own that returns its input is refused by Sequential (the
	// ownership of the result would be the input's).
	_, err = must(nn.NewSequential(&echo{})).Forward(ok4)
	wantErr(t, err, autograd.EInval, "nn.Sequential[0]: Forward returned its input")
	if got := values(ok4); got[0] != 1 {
		t.Fatal("the input was released")
	}
}

// echo returns its input (a mistake: Forward must return a new tensor).
type echo struct{ nn.Base }

func (*echo) Forward(x *autograd.Tensor) (*autograd.Tensor, error) { return x, nil }

// Nil modules and nil inputs are errors, never panics.
func TestNil(t *testing.T) {
	x := must(autograd.Ones(autograd.Float32, 2, 4))
	defer x.Release()
	live := []nn.Module{must(nn.NewLinear(4, 3)), must(nn.NewSequential()), nn.NewReLU(),
		nn.NewTanh(), nn.NewSigmoid(), nn.NewSiLU(), must(nn.NewGELU("none")),
		nn.NewLeakyReLU(0.01), nn.NewSoftplus(1, 20), nn.NewIdentity(), nn.NewSoftmax(-1),
		nn.NewLogSoftmax(-1), nn.NewFlatten(1, -1), must(nn.NewDropout(0.5)),
		must(nn.NewEmbedding(4, 2)), must(nn.NewLayerNorm([]int64{4}))}
	nils := []nn.Module{(*nn.Linear)(nil), (*nn.Sequential)(nil), (*nn.ReLU)(nil),
		(*nn.Tanh)(nil), (*nn.Sigmoid)(nil), (*nn.SiLU)(nil), (*nn.GELU)(nil),
		(*nn.LeakyReLU)(nil), (*nn.Softplus)(nil), (*nn.Identity)(nil), (*nn.Softmax)(nil),
		(*nn.LogSoftmax)(nil), (*nn.Flatten)(nil), (*nn.Dropout)(nil), (*nn.Embedding)(nil),
		(*nn.LayerNorm)(nil)}
	for i, m := range live {
		_, err := m.Forward(nil)
		wantErr(t, err, autograd.EInval, "the input is nil")
		ok(t, m.ZeroGrad(false))

		n := nils[i]
		name, _, _ := strings.Cut(m.(fmt.Stringer).String(), "(")
		_, err = n.Forward(x)
		wantErr(t, err, autograd.EInval, "nn."+name+".Forward: nil module")
		wantErr(t, n.ZeroGrad(true), autograd.EInval, "nn."+name+".ZeroGrad: nil module")
		if n.Parameters() != nil || n.NamedParameters() != nil || n.Training() {
			t.Fatalf("%T: nil module with parameters or training", n)
		}
		n.Train(true)
		n.Release()
		// (a nil Sequential prints as an empty one, checked below)
		if got := n.(fmt.Stringer).String(); got != name+"(nil)" && name != "Sequential" {
			t.Fatalf("String of a nil %s: %q", name, got)
		}
		m.Release()
	}
	var b *nn.Base
	wantErr(t, b.RegisterModule("a", nn.NewReLU()), autograd.EInval, "nil module")
	wantErr(t, b.ZeroGrad(false), autograd.EInval, "nil module")
	var s *nn.Sequential
	wantErr(t, s.Append(nn.NewReLU()), autograd.EInval, "nil module")
	if s.Len() != 0 || s.At(0) != nil || s.NamedChildren() != nil || s.String() != "Sequential()" {
		t.Fatal("nil Sequential")
	}
}

func TestRelease(t *testing.T) {
	s, l1, l2 := mlp(t, 1)
	shared := must(nn.NewSequential(s, nn.NewIdentity()))
	x := must(autograd.Ones(autograd.Float32, 2, 4))
	defer x.Release()
	must(shared.Forward(x)).Release()
	shared.Release()
	shared.Release()
	must(nn.NewSequential(l1, l1)).Release() // released again, twice: nothing happens
	for _, p := range []*autograd.Tensor{l1.Weight, l1.Bias, l2.Weight, l2.Bias} {
		if p.DType() != autograd.NoDType {
			t.Fatal("a parameter survived Release")
		}
	}
	_, err := shared.Forward(x)
	wantErr(t, err, autograd.EInval, "used after Release")
}

func TestString(t *testing.T) {
	g := must(nn.NewGELU("tanh"))
	model := must(nn.NewSequential(nn.NewFlatten(1, -1), must(nn.NewLinear(4, 3)), g,
		must(nn.NewSequential(nn.NewLeakyReLU(0.01), must(nn.NewDropout(0.25)))),
		nn.NewSoftplus(1, 20), nn.NewLogSoftmax(1), nn.NewIdentity(), nn.NewSiLU()))
	defer model.Release()
	want := `Sequential(
  (0): Flatten(start_dim=1, end_dim=-1)
  (1): Linear(in_features=4, out_features=3, bias=True)
  (2): GELU(approximate='tanh')
  (3): Sequential(
    (0): LeakyReLU(negative_slope=0.01)
    (1): Dropout(p=0.25, inplace=False)
  )
  (4): Softplus(beta=1.0, threshold=20.0)
  (5): LogSoftmax(dim=1)
  (6): Identity()
  (7): SiLU()
)`
	if got := model.String(); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if got := nn.NewSoftplus(1e-5, math.Inf(1)).String(); got != "Softplus(beta=1e-05, threshold=inf)" {
		t.Fatal(got)
	}

	// The arguments are in Config, and a module can be written as a composite literal.
	lr := nn.NewLeakyReLU(0.01)
	lr.Config.NegativeSlope = 0.2
	d := must(nn.NewDropout(0.25))
	for _, c := range []struct {
		m    fmt.Stringer
		want string
	}{
		{lr, "LeakyReLU(negative_slope=0.2)"},
		{&nn.Softmax{Config: nn.SoftmaxConfig{Dim: -1}}, "Softmax(dim=-1)"},
		{&nn.LogSoftmax{Config: nn.LogSoftmaxConfig{Dim: 1}}, "LogSoftmax(dim=1)"},
		{&nn.Flatten{Config: nn.FlattenConfig{StartDim: 1, EndDim: 2}}, "Flatten(start_dim=1, end_dim=2)"},
		{&nn.GELU{}, "GELU(approximate='none')"},
		{&nn.Dropout{Config: nn.DropoutConfig{P: d.Config.P}}, "Dropout(p=0.25, inplace=False)"},
		{&nn.Tanh{}, "Tanh()"},
	} {
		if got := c.m.String(); got != c.want {
			t.Errorf("%q, want %q", got, c.want)
		}
	}
}

// Forward may run on several goroutines at once (go test -race checks the modules' part).
func TestConcurrentForward(t *testing.T) {
	x := tensor(t, []float64{-1, 0.5, 2, -3}, 2, 2)
	d := must(nn.NewDropout(0.5))
	d.Train(false)
	s := must(nn.NewSequential(must(nn.NewLinear(2, 2, nn.WithDType(autograd.Float64))),
		must(nn.NewLayerNorm([]int64{2}, nn.WithDType(autograd.Float64))), nn.NewReLU(),
		must(nn.NewGELU("tanh")), d, nn.NewLogSoftmax(-1)))
	defer s.Release()
	want := values(must(s.Forward(x)))
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			for range 50 {
				y, err := s.Forward(x)
				if err == nil && !slices.Equal(values(y), want) {
					err = fmt.Errorf("%v, want %v", values(y), want)
				}
				y.Release()
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		ok(t, <-errs)
	}
}
