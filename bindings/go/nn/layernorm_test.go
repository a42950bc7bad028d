package nn_test

import (
	"slices"
	"testing"

	"libautograd.dev/autograd"
	"libautograd.dev/autograd/nn"
)

// The input x [2, 3, 4] and the output weights r of the loss sum(LayerNorm(x) * r), and what
// PyTorch 1.13 computes for them (float32, printed with %.9g), by
//
//	X = torch.tensor(lnX, dtype=torch.float32).reshape(2, 3, 4).requires_grad_()
//	R = torch.tensor(lnR, dtype=torch.float32).reshape(2, 3, 4)
//	ln = torch.nn.LayerNorm(shape, eps=eps, elementwise_affine=affine)
//	with torch.no_grad(): ln.weight.copy_(w); ln.bias.copy_(b)   # (or ln.bias = None)
//	y = ln(X); (y * R).sum().backward()   # then y, X.grad, ln.weight.grad, ln.bias.grad
var (
	lnX = []float64{0.59, 1.92, -0.86, -1.25, 1.86, 1.67, -1.16, -0.02, 2.74, 1.12, -1.0, 1.4,
		3.12, 0.5, -0.32, 2.74, 3.0, 0.1, 0.81, 3.75, 2.51, 0.12, 2.2, 4.28}
	lnR = []float64{1.0, 0.62, -0.23, -0.9, -0.9, -0.21, 0.63, 1.0, 0.61, -0.24, -0.91, -0.89,
		-0.19, 0.65, 1.0, 0.59, -0.26, -0.92, -0.88, -0.18, 0.66, 1.0, 0.58, -0.28}
)

// A layer norm case: the module's arguments, the parameters' values and PyTorch's results.
type lnCase struct {
	shape         []int64
	opts          []nn.Option
	w, b          []float64 // set into Weight and Bias (nil: no such parameter)
	repr          string
	params        []string
	y, gx, gw, gb []float64
}

var lnCases = []lnCase{
	{ // LayerNorm(4), non-default weight and bias
		shape:  []int64{4},
		w:      []float64{0.5, -1, 2, 1.5},
		b:      []float64{0.1, 0.2, -0.3, 0},
		repr:   "LayerNorm((4,), eps=1e-05, elementwise_affine=True)",
		params: []string{"weight", "bias"},
		y: []float64{0.295272768, -1.2505976, -1.83030081, -1.61398923, 0.610475779,
			-0.668510795, -3.10410643, -0.731113613, 0.724880815, 0.158963114, -3.38150191,
			0.374928385, 0.653070629, 0.8939147, -2.81458187, 1.26759672, 0.460472286,
			1.40600395, -1.76846766, 1.82894003, 0.178712189, 1.66083181, -0.404949844,
			2.03382301},
		gx: []float64{0.697446465, -0.427672684, 0.185712144, -0.455485821, -0.298287034,
			0.146401823, -0.274861693, 0.426746845, 0.047341466, 0.644013882, -0.0487091541,
			-0.642646074, -0.162908852, -0.983481765, 0.699706137, 0.446684539, 0.148370728,
			0.769170165, -0.992771506, 0.0752306283, 0.188076988, -0.470733583, 0.781418979,
			-0.498762369},
		gw: []float64{-0.0596685, -0.0952181816, 0.0531738363, 0.157995149},
		gb: []float64{0.920000076, 0.899999976, 0.189999938, -0.659999967},
	},
	{ // LayerNorm((3, 4), eps=1e-3)
		shape: []int64{3, 4},
		opts:  []nn.Option{nn.WithEps(1e-3)},
		w:     []float64{1.0, 1.21, 1.23, 1.04, 0.81, 0.76, 0.93, 1.16, 1.25, 1.1, 0.86, 0.75},
		b: []float64{0.1, -0.04, -0.07, 0.1, -0.01, -0.08, 0.08, 0.01, -0.1, 0.07, 0.04,
			-0.1},
		repr:   "LayerNorm((3, 4), eps=0.001, elementwise_affine=True)",
		params: []string{"weight", "bias"},
		y: []float64{0.104350924, 1.1655972, -1.394912, -1.32277656, 0.760803282, 0.535518825,
			-1.129861, -0.512732267, 1.909971, 0.509629726, -0.976164222, 0.356380731,
			0.906089664, -1.160707, -1.87609816, 0.677034616, 0.578665853, -0.984914064,
			-0.59075141, 1.42825496, 0.403461695, -1.22519827, 0.210110873, 1.07979476},
		gx: []float64{0.718205035, 0.416692436, -0.113087662, -0.566438317, -0.681405485,
			-0.24024944, 0.560909927, 0.89037782, 0.354844987, -0.270482033, -0.473674506,
			-0.595692933, -0.163068071, 0.241342038, 0.459075302, 0.333268851, -0.187737226,
			-0.777803838, -0.791244268, -0.117491856, 0.451865584, 0.41363427, 0.207645506,
			-0.0694862008},
		gw: []float64{-0.14880611, 0.015711356, -1.22062469, 1.55860519, -1.04540253,
			0.925344765, -0.184893787, -0.670705318, 1.24669373, -1.27337217, 1.18996942,
			-0.982028484},
		gb: []float64{0.810000002, 1.26999998, 0.769999981, -0.310000002, -1.15999997, -1.13,
			-0.25, 0.819999993, 1.26999998, 0.75999999, -0.330000043, -1.16999996},
	},
	{ // LayerNorm(4, elementwise_affine=False): no parameters
		shape: []int64{4},
		opts:  []nn.Option{nn.WithElementwiseAffine(false)},
		repr:  "LayerNorm((4,), eps=1e-05, elementwise_affine=False)",
		y: []float64{0.390545547, 1.45059764, -0.765150428, -1.07599282, 1.02095151,
			0.868510783, -1.40205324, -0.487409085, 1.24976158, 0.0410368927, -1.54075098,
			0.249952257, 1.10614121, -0.693914711, -1.25729096, 0.845064461, 0.720944583,
			-1.2060039, -0.734233797, 1.21929336, 0.15742439, -1.46083176, -0.0524749085,
			1.35588205},
		gx: []float64{0.509960294, -0.307092607, 0.0901843607, -0.293052018, -0.320178151,
			0.157838702, -0.294010013, 0.456349492, 0.271458656, 0.0728799999, 0.143057376,
			-0.487396002, -0.212876201, -0.07476753, 0.0282984376, 0.259345353, 0.0378146768,
			0.0309931636, -0.0481265187, -0.020681262, 0.16219312, -0.0916295648,
			0.0452427864, -0.11580646},
	},
	{ // LayerNorm(4, bias=False) (PyTorch 2.1; 1.13 computed it with ln.bias = None)
		shape:  []int64{4},
		opts:   []nn.Option{nn.WithBias(false)},
		w:      []float64{0.5, -1, 2, 1.5},
		repr:   "LayerNorm((4,), eps=1e-05, elementwise_affine=True)",
		params: []string{"weight"},
		y: []float64{0.195272774, -1.45059764, -1.53030086, -1.61398923, 0.510475755,
			-0.868510783, -2.80410647, -0.731113613, 0.624880791, -0.0410368927, -3.08150196,
			0.374928385, 0.553070605, 0.693914711, -2.51458192, 1.26759672, 0.360472292,
			1.2060039, -1.46846759, 1.82894003, 0.0787121952, 1.46083176, -0.104949817,
			2.03382301},
		gx: []float64{0.697446465, -0.427672684, 0.185712144, -0.455485821, -0.298287034,
			0.146401823, -0.274861693, 0.426746845, 0.047341466, 0.644013882, -0.0487091541,
			-0.642646074, -0.162908852, -0.983481765, 0.699706137, 0.446684539, 0.148370728,
			0.769170165, -0.992771506, 0.0752306283, 0.188076988, -0.470733583, 0.781418979,
			-0.498762369},
		gw: []float64{-0.0596685, -0.0952181816, 0.0531738363, 0.157995149},
	},
}

// float32 against PyTorch's float32: the differences are about 1e-7 (one unit in the last
// place of values near 1); a wrong eps (1e-5 for 1e-3) would be 2e-4.
const lnTol = 2e-6

func TestLayerNormMatchesPyTorch(t *testing.T) {
	for _, c := range lnCases {
		t.Run(c.repr, func(t *testing.T) {
			l := must(nn.NewLayerNorm(c.shape, c.opts...))
			defer l.Release()
			if got := l.String(); got != c.repr {
				t.Fatalf("String %q, want %q", got, c.repr)
			}
			if got := names(l.NamedParameters()); !slices.Equal(got, c.params) {
				t.Fatalf("parameters %v, want %v", got, c.params)
			}
			if (l.Weight != nil) != (c.w != nil) || (l.Bias != nil) != (c.b != nil) {
				t.Fatalf("weight %v, bias %v", l.Weight, l.Bias)
			}
			if c.w != nil {
				set(t, l.Weight, c.w...)
			}
			if c.b != nil {
				set(t, l.Bias, c.b...)
			}
			x := must(autograd.FromFloat64s(lnX, autograd.Float32, 2, 3, 4))
			defer x.Release()
			ok(t, x.SetRequiresGrad(true))
			r := must(autograd.FromFloat64s(lnR, autograd.Float32, 2, 3, 4))
			defer r.Release()

			y := must(l.Forward(x))
			defer y.Release()
			if !slices.Equal(y.Shape(), []int64{2, 3, 4}) || y.DType() != autograd.Float32 {
				t.Fatalf("y %v", y)
			}
			if !near(values(y), c.y, lnTol) {
				t.Fatalf("y %v,\nPyTorch's %v", values(y), c.y)
			}
			ok(t, must(must(y.Mul(r)).Sum()).Backward())
			if g := values(must(x.Grad())); !near(g, c.gx, lnTol) {
				t.Fatalf("input grad %v,\nPyTorch's %v", g, c.gx)
			}
			if c.gw != nil {
				if g := values(must(l.Weight.Grad())); !near(g, c.gw, lnTol) {
					t.Fatalf("weight grad %v,\nPyTorch's %v", g, c.gw)
				}
			}
			if c.gb != nil {
				if g := values(must(l.Bias.Grad())); !near(g, c.gb, lnTol) {
					t.Fatalf("bias grad %v,\nPyTorch's %v", g, c.gb)
				}
			}
		})
	}
}

func TestLayerNormInit(t *testing.T) {
	shape := []int64{3, 4}
	l := must(nn.NewLayerNorm(shape))
	defer l.Release()
	shape[0] = 7 // the module keeps its own copy
	if !slices.Equal(l.NormalizedShape, []int64{3, 4}) || l.Eps != 1e-5 {
		t.Fatalf("normalized shape %v, eps %v", l.NormalizedShape, l.Eps)
	}
	for i, p := range l.Parameters() {
		if !slices.Equal(p.Shape(), []int64{3, 4}) || !p.RequiresGrad() || !p.IsLeaf() ||
			p.DType() != autograd.Float32 {
			t.Fatalf("parameter %d %v: want a [3 4] float32 leaf requiring grad", i, p)
		}
		want := float64(1 - i) // weight ones, bias zeros
		for _, v := range values(p) {
			if v != want {
				t.Fatalf("parameter %d: %v, want all %v", i, values(p), want)
			}
		}
	}
	if ps := l.Parameters(); len(ps) != 2 || ps[0] != l.Weight || ps[1] != l.Bias {
		t.Fatal("Parameters is not [Weight, Bias]")
	}
	if l.String() != "LayerNorm((3, 4), eps=1e-05, elementwise_affine=True)" {
		t.Fatal(l.String())
	}

	// The initial module is the plain normalisation: mean 0, variance 1 per row.
	x := must(autograd.FromFloat64s(lnX, autograd.Float64, 2, 12))
	defer x.Release()
	l64 := must(nn.NewLayerNorm([]int64{12}, nn.WithDType(autograd.Float64)))
	defer l64.Release()
	if l64.Weight.DType() != autograd.Float64 || l64.Bias.DType() != autograd.Float64 {
		t.Fatal("WithDType(Float64): the parameters' dtype")
	}
	y := values(must(l64.Forward(x)))
	for row := range 2 {
		var sum, sq float64
		for _, v := range y[12*row : 12*row+12] {
			sum += v
			sq += v * v
		}
		// (the variance is var/(var + eps): 1 - 6e-6 here)
		if !near([]float64{sum / 12, sq / 12}, []float64{0, 1}, 1e-5) {
			t.Fatalf("row %d: mean %v, variance %v", row, sum/12, sq/12)
		}
	}

	// WithElementwiseAffine(false) has no parameters, whatever WithBias says.
	n := must(nn.NewLayerNorm([]int64{4}, nn.WithElementwiseAffine(false), nn.WithBias(true)))
	defer n.Release()
	if n.Weight != nil || n.Bias != nil || n.Parameters() != nil || n.NamedParameters() != nil {
		t.Fatal("WithElementwiseAffine(false): parameters")
	}
	ok(t, n.ZeroGrad(false))

	// Train, ZeroGrad.
	if !l.Training() {
		t.Fatal("a LayerNorm starts in training mode")
	}
	l.Train(false)
	if l.Training() {
		t.Fatal("Training after Train(false)")
	}
	x34 := must(autograd.FromFloat64s(lnX, autograd.Float32, 2, 3, 4))
	defer x34.Release()
	ok(t, must(must(l.Forward(x34)).Sum()).Backward())
	ok(t, l.ZeroGrad(false))
	for _, p := range l.Parameters() {
		if g := values(must(p.Grad())); slices.Max(g) != 0 || slices.Min(g) != 0 {
			t.Fatalf("ZeroGrad(false): %v", g)
		}
	}
	ok(t, l.ZeroGrad(true))
	for _, p := range l.Parameters() {
		if g := must(p.Grad()); g != nil {
			t.Fatalf("ZeroGrad(true): %v", g)
		}
	}

	// In a Sequential, PyTorch's names.
	s := must(nn.NewSequential(must(nn.NewLinear(4, 4)), must(nn.NewLayerNorm([]int64{4})),
		must(nn.NewLayerNorm([]int64{4}, nn.WithBias(false)))))
	defer s.Release()
	if got := names(s.NamedParameters()); !slices.Equal(got,
		[]string{"0.weight", "0.bias", "1.weight", "1.bias", "2.weight"}) {
		t.Fatalf("names %v", got)
	}
}

func TestLayerNormErrors(t *testing.T) {
	l := must(nn.NewLayerNorm([]int64{4}))
	defer l.Release()
	x := must(autograd.Ones(autograd.Float32, 2, 3))
	defer x.Release()
	_, err := l.Forward(x)
	wantErr(t, err, autograd.EShape, "nn.LayerNorm((4,), eps=1e-05, elementwise_affine=True): ag_layer_norm")
	_, err = l.Forward(nil)
	wantErr(t, err, autograd.EInval, "nn.LayerNorm((4,), eps=1e-05, elementwise_affine=True): the input is nil")
	// A dtype mismatch (float64 input, float32 weight).
	x64 := must(autograd.Ones(autograd.Float64, 2, 4))
	defer x64.Release()
	_, err = l.Forward(x64)
	wantErr(t, err, autograd.EDType, "nn.LayerNorm")

	// An empty normalized shape is an error at Forward, as in PyTorch.
	e := must(nn.NewLayerNorm(nil, nn.WithElementwiseAffine(false)))
	if e.String() != "LayerNorm((), eps=1e-05, elementwise_affine=False)" {
		t.Fatal(e.String())
	}
	_, err = e.Forward(x)
	wantErr(t, err, autograd.EInval, "normalized_shape must be a non-empty list")

	_, err = nn.NewLayerNorm([]int64{3, -4})
	wantErr(t, err, autograd.EInval, "nn.NewLayerNorm([3, -4]): the sizes must be >= 0")
	_, err = nn.NewLayerNorm([]int64{4}, nn.WithGenerator(nil))
	wantErr(t, err, autograd.EInval, "nn.NewLayerNorm([4]): WithGenerator does not apply")
	_, err = nn.NewLayerNorm([]int64{4}, nn.WithDType(autograd.Int64))
	wantErr(t, err, autograd.EDType, "nn.NewLayerNorm([4]): ag_tensor_set_requires_grad")
	// The new options are refused by the constructors that do not take them.
	_, err = nn.NewLinear(2, 2, nn.WithEps(1e-3))
	wantErr(t, err, autograd.EInval, "nn.NewLinear(2, 2): WithEps does not apply")
	_, err = nn.NewLinear(2, 2, nn.WithElementwiseAffine(false))
	wantErr(t, err, autograd.EInval, "nn.NewLinear(2, 2): WithElementwiseAffine does not apply")
	_, err = nn.NewDropout(0.5, nn.WithEps(1e-3))
	wantErr(t, err, autograd.EInval, "nn.NewDropout: WithEps does not apply")

	dead := must(nn.NewLayerNorm([]int64{4}))
	dead.Release()
	dead.Release() // twice: nothing
	x4 := must(autograd.Ones(autograd.Float32, 2, 4))
	defer x4.Release()
	_, err = dead.Forward(x4)
	wantErr(t, err, autograd.EInval, "nn.LayerNorm((4,), eps=1e-05, elementwise_affine=True): "+
		"weight was released", "used after Release")
	wantErr(t, dead.ZeroGrad(false), autograd.EInval, "nn.LayerNorm.ZeroGrad: weight")
	// A bias released alone is an error too, not a LayerNorm without bias.
	half := must(nn.NewLayerNorm([]int64{4}))
	defer half.Release()
	half.Bias.Release()
	_, err = half.Forward(x4)
	wantErr(t, err, autograd.EInval, "bias was released")
}
