package nn_test

import (
	"slices"
	"testing"

	"libautograd.dev/autograd"
	"libautograd.dev/autograd/nn"
)

func indices(t *testing.T, data []int64, shape ...int64) *autograd.Tensor {
	x := must(autograd.FromSlice(data, shape...))
	t.Cleanup(x.Release)
	return x
}

// The weight is autograd.Randn's draw from the generator: the same seed gives the same table.
func TestEmbeddingInit(t *testing.T) {
	e := must(nn.NewEmbedding(10, 3, nn.WithGenerator(gen(t, 7))))
	defer e.Release()
	w := e.Weight
	if !slices.Equal(w.Shape(), []int64{10, 3}) || !w.RequiresGrad() || !w.IsLeaf() ||
		w.DType() != autograd.Float32 {
		t.Fatalf("weight %v: want a [10 3] float32 leaf requiring grad", w)
	}
	if e.NumEmbeddings != 10 || e.EmbeddingDim != 3 {
		t.Fatalf("sizes %d %d", e.NumEmbeddings, e.EmbeddingDim)
	}
	want := must(autograd.Randn(gen(t, 7), autograd.Float32, 10, 3))
	defer want.Release()
	got := must(autograd.Data[float32](w))
	if !slices.Equal(got, must(autograd.Data[float32](want))) {
		t.Fatalf("weight %v, Randn's %v", got, want)
	}
	// N(0, 1): not all equal, none huge.
	if slices.Min(got) == slices.Max(got) || slices.Min(got) < -6 || slices.Max(got) > 6 {
		t.Fatalf("weight %v", got)
	}
	same := must(nn.NewEmbedding(10, 3, nn.WithGenerator(gen(t, 7))))
	defer same.Release()
	if !slices.Equal(must(autograd.Data[float32](same.Weight)), got) {
		t.Fatal("the same seed gave another weight")
	}
	other := must(nn.NewEmbedding(10, 3, nn.WithGenerator(gen(t, 8))))
	defer other.Release()
	if slices.Equal(must(autograd.Data[float32](other.Weight)), got) {
		t.Fatal("another seed gave the same weight")
	}

	// Without a generator: the package's default one, as autograd.ManualSeed sets it.
	ok(t, autograd.ManualSeed(7))
	d := must(nn.NewEmbedding(10, 3))
	defer d.Release()
	if !slices.Equal(must(autograd.Data[float32](d.Weight)), got) {
		t.Fatal("default generator after ManualSeed(7): another weight")
	}

	e64 := must(nn.NewEmbedding(4, 2, nn.WithDType(autograd.Float64), nn.WithGenerator(gen(t, 1))))
	defer e64.Release()
	want64 := must(autograd.Randn(gen(t, 1), autograd.Float64, 4, 2))
	defer want64.Release()
	if e64.Weight.DType() != autograd.Float64 || !slices.Equal(values(e64.Weight), values(want64)) {
		t.Fatalf("float64 weight %v, Randn's %v", e64.Weight, want64)
	}

	// Empty tables are allowed, as in PyTorch.
	z := must(nn.NewEmbedding(0, 3))
	defer z.Release()
	if !slices.Equal(z.Weight.Shape(), []int64{0, 3}) {
		t.Fatalf("Embedding(0, 3): weight %v", z.Weight)
	}

	if got := names(e.NamedParameters()); !slices.Equal(got, []string{"weight"}) {
		t.Fatalf("names %v", got)
	}
	if ps := e.Parameters(); len(ps) != 1 || ps[0] != e.Weight {
		t.Fatal("Parameters is not [Weight]")
	}
	if e.String() != "Embedding(10, 3)" {
		t.Fatal(e.String())
	}
	if !e.Training() {
		t.Fatal("an Embedding starts in training mode")
	}
	e.Train(false)
	if e.Training() {
		t.Fatal("Training after Train(false)")
	}
}

func TestEmbeddingForwardAndGradient(t *testing.T) {
	e := must(nn.NewEmbedding(10, 3, nn.WithGenerator(gen(t, 3))))
	defer e.Release()
	w := values(e.Weight)
	row := func(i int64) []float64 { return w[3*i : 3*i+3] }

	// A 1-d index tensor, with a repeated index.
	y := must(e.Forward(indices(t, []int64{3, 0, 3, 9})))
	defer y.Release()
	want := slices.Concat(row(3), row(0), row(3), row(9))
	if !slices.Equal(y.Shape(), []int64{4, 3}) || !slices.Equal(values(y), want) {
		t.Fatalf("y %v, want the rows %v", y, want)
	}

	// A 2-d index tensor: the result is indices.shape + [3].
	idx := []int64{1, 2, 2, 1, 5, 5}
	y2 := must(e.Forward(indices(t, idx, 3, 2)))
	defer y2.Release()
	want = nil
	for _, i := range idx {
		want = append(want, row(i)...)
	}
	if !slices.Equal(y2.Shape(), []int64{3, 2, 3}) || !slices.Equal(values(y2), want) {
		t.Fatalf("y %v, want the rows %v", y2, want)
	}
	if fn := must(y2.GradFn()); fn.Name() != "EmbeddingBackward0" {
		t.Fatalf("grad_fn %s", fn.Name())
	}

	// The gradient of a row is the sum of the output gradients at its uses (the weights r
	// are exact in float32).
	r := make([]float64, 18)
	for i := range r {
		r[i] = float64(i%7) - 2.75
	}
	rt := must(autograd.FromFloat64s(r, autograd.Float32, 3, 2, 3))
	defer rt.Release()
	ok(t, must(must(y2.Mul(rt)).Sum()).Backward())
	wantGrad := make([]float64, 30)
	for p, i := range idx {
		for j := range 3 {
			wantGrad[3*i+int64(j)] += r[3*p+j]
		}
	}
	g := must(e.Weight.Grad())
	if !slices.Equal(g.Shape(), []int64{10, 3}) || !slices.Equal(values(g), wantGrad) {
		t.Fatalf("weight grad %v, want %v", values(g), wantGrad)
	}

	// ZeroGrad in place, then dropped.
	ok(t, e.ZeroGrad(false))
	if g := values(must(e.Weight.Grad())); slices.Max(g) != 0 || slices.Min(g) != 0 {
		t.Fatalf("ZeroGrad(false): %v", g)
	}
	ok(t, e.ZeroGrad(true))
	if g := must(e.Weight.Grad()); g != nil {
		t.Fatalf("ZeroGrad(true): %v", g)
	}

	// In a Sequential: an embedding followed by a Linear, PyTorch's names.
	s := must(nn.NewSequential(must(nn.NewEmbedding(10, 3)), must(nn.NewLinear(3, 2))))
	defer s.Release()
	if got := names(s.NamedParameters()); !slices.Equal(got, []string{"0.weight", "1.weight", "1.bias"}) {
		t.Fatalf("names %v", got)
	}
	out := must(s.Forward(indices(t, []int64{4, 7})))
	defer out.Release()
	if !slices.Equal(out.Shape(), []int64{2, 2}) {
		t.Fatalf("Sequential output %v", out)
	}
}

func TestEmbeddingErrors(t *testing.T) {
	e := must(nn.NewEmbedding(10, 3))
	defer e.Release()
	for _, bad := range []int64{10, -1} {
		y, err := e.Forward(indices(t, []int64{0, bad, 2}))
		if y != nil {
			t.Fatalf("index %d: a result", bad)
		}
		wantErr(t, err, autograd.ERange, "nn.Embedding(10, 3): ag_embedding:", "index out of range")
	}
	_, err := e.Forward(tensor(t, []float64{0, 1}))
	wantErr(t, err, autograd.EDType, "nn.Embedding(10, 3)", "Long")
	_, err = e.Forward(nil)
	wantErr(t, err, autograd.EInval, "nn.Embedding(10, 3): the input is nil")

	_, err = nn.NewEmbedding(-1, 3)
	wantErr(t, err, autograd.EInval, "nn.NewEmbedding(-1, 3): the sizes must be >= 0")
	_, err = nn.NewEmbedding(2, -3)
	wantErr(t, err, autograd.EInval, "nn.NewEmbedding(2, -3)")
	_, err = nn.NewEmbedding(2, 3, nn.WithBias(false))
	wantErr(t, err, autograd.EInval, "nn.NewEmbedding(2, 3): WithBias does not apply")
	_, err = nn.NewEmbedding(2, 3, nn.WithEps(1e-3))
	wantErr(t, err, autograd.EInval, "nn.NewEmbedding(2, 3): WithEps does not apply")
	_, err = nn.NewEmbedding(2, 3, nn.WithElementwiseAffine(false))
	wantErr(t, err, autograd.EInval, "WithElementwiseAffine does not apply")
	_, err = nn.NewEmbedding(2, 3, nn.WithDType(autograd.Int64))
	wantErr(t, err, autograd.EDType, "nn.NewEmbedding(2, 3): ag_randn")

	dead := must(nn.NewEmbedding(4, 2))
	dead.Release()
	dead.Release() // twice: nothing
	_, err = dead.Forward(indices(t, []int64{1}))
	wantErr(t, err, autograd.EInval, "used after Release")
	wantErr(t, dead.ZeroGrad(false), autograd.EInval, "nn.Embedding.ZeroGrad: weight")
}
