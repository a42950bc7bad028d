package nn_test

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"libautograd.dev/autograd"
	"libautograd.dev/autograd/nn"
)

// End to end against PyTorch, as the Lua binding's tests/test_model.lua: a one-block
// causal-attention model built from the nn modules (Embedding, LayerNorm, Linear with and
// without bias, GELU, a parameter of the module's own), trained for 6 Adam steps. The loss and
// the gradients' sizes at each step must match PyTorch's to float32 rounding.

// modelExpected reads the loss, then sum |grad| of E, P, g1, Wq, Wk, Wv, bo, Wout, per step,
// as PyTorch 1.13 computes them: tests/model/expected.json, written by tests/model/generate.py,
// which builds the same model from the same formula-made values (the Lua binding's model test
// reads the same file).
func modelExpected(t *testing.T) [][]float64 {
	text, err := os.ReadFile(filepath.Join("..", "..", "..", "tests", "model", "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var table struct{ Steps [][]float64 }
	if err := json.Unmarshal(text, &table); err != nil || len(table.Steps) == 0 {
		t.Fatalf("tests/model/expected.json: %v", err)
	}
	for i, row := range table.Steps {
		if len(row) != 9 {
			t.Fatalf("tests/model/expected.json: step %d has %d figures, not 9", i+1, len(row))
		}
	}
	return table.Steps
}

// The model's sizes: vocabulary, width, sequence length, batch.
const (
	blockV = 11
	blockD = 8
	blockL = 5
	blockB = 3
)

// formula is the value of every parameter: 0.3 sin(1.7 i + seed), i = 0, 1, ... in row-major
// order over n elements (the init of tests/model/generate.py).
func formula(n int64, seed float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = 0.3 * math.Sin(1.7*float64(i)+seed)
	}
	return v
}

// block is the model of test_model.lua:
//
//	h = emb(tok) + pos
//	x = ln1(h)
//	att = softmax(masked_fill(q(x) k(x)^T / sqrt(D), mask, -inf), -1)
//	logits = out(gelu(ln2(h + o(att v(x)))))
//
// Forward takes the tokens only (nn.Module's Forward has one input): the causal mask is held
// by the module, as a buffer would be in PyTorch; it belongs to the caller.
type block struct {
	nn.Base
	emb        *nn.Embedding
	pos        *autograd.Tensor
	ln1, ln2   *nn.LayerNorm
	q, k, v, o *nn.Linear
	gelu       *nn.GELU
	out        *nn.Linear
	mask       *autograd.Tensor // [L, L] bool, true where attention is cut
}

func newBlock(t *testing.T, mask *autograd.Tensor) *block {
	t.Helper()
	m := &block{mask: mask}
	m.pos = must(autograd.Zeros(autograd.Float32, blockL, blockD))
	ok(t, m.pos.SetRequiresGrad(true))
	ok(t, m.RegisterParameter("pos", m.pos))
	noBias := nn.WithBias(false)
	m.emb = must(nn.NewEmbedding(blockV, blockD))
	m.ln1 = must(nn.NewLayerNorm([]int64{blockD}))
	m.q = must(nn.NewLinear(blockD, blockD, noBias))
	m.k = must(nn.NewLinear(blockD, blockD, noBias))
	m.v = must(nn.NewLinear(blockD, blockD, noBias))
	m.o = must(nn.NewLinear(blockD, blockD))
	m.ln2 = must(nn.NewLayerNorm([]int64{blockD}))
	m.gelu = must(nn.NewGELU("none"))
	m.out = must(nn.NewLinear(blockD, blockV, noBias))
	for _, c := range []nn.NamedModule{{"emb", m.emb}, {"ln1", m.ln1}, {"q", m.q}, {"k", m.k},
		{"v", m.v}, {"o", m.o}, {"ln2", m.ln2}, {"gelu", m.gelu}, {"out", m.out}} {
		ok(t, m.RegisterModule(c.Name, c.Module))
	}
	return m
}

func (m *block) Forward(tok *autograd.Tensor) (*autograd.Tensor, error) {
	var tp autograd.Tape
	defer tp.Release()
	h := tp.T(tp.T(m.emb.Forward(tok)).Add(m.pos))
	x := tp.T(m.ln1.Forward(h))
	q, k, v := tp.T(m.q.Forward(x)), tp.T(m.k.Forward(x)), tp.T(m.v.Forward(x))
	s := tp.T(tp.T(q.Matmul(tp.T(k.Transpose(1, 2)))).DivScalar(math.Sqrt(blockD)))
	att := tp.T(tp.T(s.MaskedFill(m.mask, math.Inf(-1))).Softmax(-1))
	h2 := tp.T(h.Add(tp.T(m.o.Forward(tp.T(att.Matmul(v))))))
	y := tp.T(m.gelu.Forward(tp.T(m.ln2.Forward(h2))))
	logits := tp.Keep(tp.T(m.out.Forward(y)))
	return logits, tp.Err()
}

// sumAbs is sum |g| of the .grad of p.
func sumAbs(p *autograd.Tensor) (float64, error) {
	var tp autograd.Tape
	defer tp.Release()
	g := tp.T(p.Grad())
	if g == nil && tp.Err() == nil {
		return 0, fmt.Errorf("no .grad")
	}
	v, err := tp.T(tp.T(g.Abs()).Sum()).Item()
	tp.Check(err)
	return v, tp.Err()
}

func TestModelTrainingMatchesPyTorch(t *testing.T) {
	var tok, tgt []int64
	for b := range int64(blockB) {
		for l := range int64(blockL) {
			tok = append(tok, (b*7+l*3)%blockV)
			tgt = append(tgt, (b*5+l*2+1)%blockV)
		}
	}
	var causal []bool
	for i := range blockL {
		for j := range blockL {
			causal = append(causal, j > i)
		}
	}
	mask := must(autograd.FromSlice(causal, blockL, blockL))
	t.Cleanup(mask.Release)
	tokens := indices(t, tok, blockB, blockL)
	targets := indices(t, tgt, blockB*blockL)

	m := newBlock(t, mask)
	defer m.Release()
	var _ nn.Module = m
	wantNames := []string{"pos", "emb.weight", "ln1.weight", "ln1.bias", "q.weight", "k.weight",
		"v.weight", "o.weight", "o.bias", "ln2.weight", "ln2.bias", "out.weight"}
	if got := names(m.NamedParameters()); !slices.Equal(got, wantNames) {
		t.Fatalf("names %v: want pos, then the children's in registration order", got)
	}
	// The seeds of tests/model/generate.py, in its order of the parameters (E, P, g1, b1, Wq,
	// Wk, Wv, Wo, bo, g2, b2, Wout).
	for _, p := range []struct {
		t    *autograd.Tensor
		seed float64
	}{{m.emb.Weight, 1}, {m.pos, 2}, {m.ln1.Weight, 3}, {m.ln1.Bias, 4}, {m.q.Weight, 5},
		{m.k.Weight, 6}, {m.v.Weight, 7}, {m.o.Weight, 8}, {m.o.Bias, 9}, {m.ln2.Weight, 10},
		{m.ln2.Bias, 11}, {m.out.Weight, 12}} {
		set(t, p.t, formula(p.t.Numel(), p.seed)...)
		if !p.t.IsLeaf() || !p.t.RequiresGrad() {
			t.Fatalf("%v: no longer a leaf requiring grad after set", p.t)
		}
	}

	opt := must(autograd.NewAdam(m.Parameters(), 0.01))
	defer opt.Release()
	what := []string{"loss", "E", "P", "g1", "Wq", "Wk", "Wv", "bo", "Wout"}
	watched := []*autograd.Tensor{m.emb.Weight, m.pos, m.ln1.Weight, m.q.Weight, m.k.Weight,
		m.v.Weight, m.o.Bias, m.out.Weight}
	for step, want := range modelExpected(t) {
		var tp autograd.Tape
		tp.Check(opt.ZeroGrad(true))
		logits := tp.T(m.Forward(tokens))
		loss := tp.T(tp.T(logits.Reshape(blockB*blockL, blockV)).CrossEntropy(targets))
		tp.Check(loss.Backward())
		got := make([]float64, 0, len(want))
		v, err := loss.Item()
		tp.Check(err)
		got = append(got, v)
		for _, p := range watched {
			v, err := sumAbs(p)
			tp.Check(err)
			got = append(got, v)
		}
		ok(t, tp.Err())
		if !slices.Equal(logits.Shape(), []int64{blockB, blockL, blockV}) {
			t.Fatalf("logits %v", logits.Shape())
		}
		tp.Check(opt.Step())
		ok(t, tp.Err())
		tp.Release()
		// |got - want| <= tol |want|: the small gradients (Wq's is ~4e-6 at first) count too.
		// (Written so that a NaN fails.)
		for i := range want {
			if !(math.Abs(got[i]-want[i]) <= 2e-5*math.Abs(want[i])) {
				t.Errorf("step %d %s: %.9g, PyTorch %.9g", step+1, what[i], got[i], want[i])
			}
		}
	}
}
