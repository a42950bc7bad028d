// conformance_test.go: the conformance suite's runner in Go: replays tests/conformance/cases
// through the package and checks every expectation (docs: tests/conformance/FORMAT.md).

package autograd

// The Go runner of the conformance suite (tests/conformance/FORMAT.md): every case of
// tests/conformance/cases/*.json runs through this package's API, and the test prints one
// FAIL line per failing case and the closing line "N passed, M failed, K skipped".
// AG_CONFORMANCE_CASES may name another directory of case files.
//
// It is a white-box test only so that, after an expected failure, it can also check the
// library's per-thread error state (ag_last_status, ag_last_error) on the thread that failed.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"libautograd.dev/autograd/internal/capi"
)

type cfTol struct{ Rtol, Atol float64 }

type cfFile struct {
	Format     int
	Family     string
	Tolerances map[string]cfTol
	Cases      []cfCase
}

type cfCase struct {
	Name       string
	Tolerances map[string]cfTol
	Steps      []cfStep
}

type cfError struct {
	Status          string
	MessageContains string `json:"message_contains"`
}

type cfStep struct {
	Op    string
	Out   json.RawMessage // a name, or a list of names and nulls
	DType string
	Shape []int64
	Data  []json.RawMessage

	RequiresGrad  *bool `json:"requires_grad"`
	Fn            string
	Args          []map[string]json.RawMessage
	Error         *cfError
	Value         json.RawMessage
	T             string
	None          bool
	GradFn        json.RawMessage `json:"grad_fn"`
	IsLeaf        *bool           `json:"is_leaf"`
	Version       *int64
	Strides       []int64
	StorageOffset *int64 `json:"storage_offset"`
	IsContiguous  *bool  `json:"is_contiguous"`
	Steps         []cfStep
	Name          string
}

// cfRun is the state of one case: the named handles (*Tensor, *Optimizer, *Generator; a
// name bound to none holds nil) and where messages point.
type cfRun struct {
	file, name, step, op string
	tols                 [2]cfTol
	env                  map[string]any
	failed               bool
}

func (r *cfRun) fail(format string, args ...any) error {
	fn := ""
	if r.op != "" {
		fn = " " + r.op
	}
	msg := fmt.Sprintf(format, args...)
	fmt.Printf("FAIL %s [%s] step %s%s: %s\n", r.name, r.file, r.step, fn, msg)
	r.failed = true
	return errors.New(msg)
}

func (r *cfRun) bind(name string, v any) {
	r.unbind(name)
	r.env[name] = v
}

func (r *cfRun) unbind(name string) {
	switch h := r.env[name].(type) {
	case *Tensor:
		h.Release()
	case *Optimizer:
		h.Release()
	case *Generator:
		h.Release()
	}
	delete(r.env, name)
}

func cfNumber(raw json.RawMessage) (float64, error) {
	s := strings.TrimSpace(string(raw))
	switch s {
	case `"nan"`:
		return math.NaN(), nil
	case `"inf"`:
		return math.Inf(1), nil
	case `"-inf"`:
		return math.Inf(-1), nil
	case "true":
		return 1, nil
	case "false":
		return 0, nil
	}
	return strconv.ParseFloat(s, 64)
}

func cfNumbers(raw []json.RawMessage) ([]float64, error) {
	v := make([]float64, len(raw))
	for i, x := range raw {
		var err error
		if v[i], err = cfNumber(x); err != nil {
			return nil, err
		}
	}
	return v, nil
}

var cfDTypes = map[string]DType{"float32": Float32, "float64": Float64, "int64": Int64,
	"bool": Bool}

func (r *cfRun) closeEnough(got, want float64, dt DType) bool {
	if math.IsNaN(want) {
		return math.IsNaN(got)
	}
	if dt != Float32 && dt != Float64 {
		return got == want
	}
	if math.IsInf(want, 0) {
		return got == want
	}
	t := r.tols[dt]
	return math.Abs(got-want) <= t.Atol+t.Rtol*math.Abs(want)
}

func (r *cfRun) tensor(name string) (*Tensor, error) {
	v, ok := r.env[name]
	if !ok {
		return nil, r.fail("bad case: no handle named '%s'", name)
	}
	if v == nil {
		return nil, nil
	}
	t, ok := v.(*Tensor)
	if !ok {
		return nil, r.fail("bad case: '%s' is not a tensor", name)
	}
	return t, nil
}

// ---- arguments ----

type cfArgs struct {
	r    *cfRun
	list []map[string]json.RawMessage
	err  error
}

func (a *cfArgs) get(i int, key string) json.RawMessage {
	if a.err != nil {
		return nil
	}
	if i >= len(a.list) {
		a.err = a.r.fail("bad case: argument %d missing", i+1)
		return nil
	}
	if _, ok := a.list[i]["null"]; ok {
		return nil
	}
	v, ok := a.list[i][key]
	if !ok {
		a.err = a.r.fail("bad case: argument %d is not {%q: ...}", i+1, key)
	}
	return v
}

func (a *cfArgs) decode(i int, key string, v any) {
	if raw := a.get(i, key); raw != nil {
		if err := json.Unmarshal(raw, v); err != nil && a.err == nil {
			a.err = a.r.fail("bad case: argument %d: %v", i+1, err)
		}
	}
}

func (a *cfArgs) t(i int) *Tensor {
	var name *string
	a.decode(i, "t", &name)
	if name == nil || a.err != nil {
		return nil
	}
	t, err := a.r.tensor(*name)
	if err != nil {
		a.err = err
	}
	return t
}

func (a *cfArgs) ts(i int) []*Tensor {
	var names []*string
	if raw := a.get(i, "ts"); raw == nil {
		return nil
	}
	a.decode(i, "ts", &names)
	ts := make([]*Tensor, len(names))
	for k, n := range names {
		if n != nil && a.err == nil {
			ts[k], a.err = a.r.tensor(*n)
		}
	}
	return ts
}

func (a *cfArgs) f(i int) float64 {
	raw := a.get(i, "f")
	if raw == nil {
		return 0
	}
	v, err := cfNumber(raw)
	if err != nil && a.err == nil {
		a.err = a.r.fail("bad case: argument %d: %v", i+1, err)
	}
	return v
}

func (a *cfArgs) i(i int) int64 {
	var v int64
	a.decode(i, "i", &v)
	return v
}

func (a *cfArgs) b(i int) bool { return a.i(i) != 0 }

func (a *cfArgs) ints(i int) []int64 {
	var v []int64
	a.decode(i, "ints", &v)
	return v
}

func (a *cfArgs) dtype(i int) DType {
	var s string
	a.decode(i, "dtype", &s)
	d, ok := cfDTypes[s]
	if !ok && a.err == nil {
		a.err = a.r.fail("bad case: dtype %q", s)
	}
	return d
}

func (a *cfArgs) reduction(i int) Reduction {
	var s string
	a.decode(i, "reduction", &s)
	switch s {
	case "none":
		return ReduceNone
	case "mean":
		return ReduceMean
	case "sum":
		return ReduceSum
	}
	if a.err == nil {
		a.err = a.r.fail("bad case: reduction %q", s)
	}
	return 0
}

// flags returns retain_graph, create_graph, allow_unused.
func (a *cfArgs) flags(i int) (retain, create, unused bool) {
	var names []string
	a.decode(i, "flags", &names)
	for _, n := range names {
		switch n {
		case "retain_graph":
			retain = true
		case "create_graph":
			create = true
		case "allow_unused":
			unused = true
		default:
			if a.err == nil {
				a.err = a.r.fail("bad case: flag %q", n)
			}
		}
	}
	return
}

func (a *cfArgs) gen(i int) *Generator {
	var name *string
	a.decode(i, "gen", &name)
	if name == nil || a.err != nil {
		return nil
	}
	g, ok := a.r.env[*name].(*Generator)
	if !ok {
		a.err = a.r.fail("bad case: '%s' is not a generator", *name)
	}
	return g
}

func (a *cfArgs) opt(i int) *Optimizer {
	var name *string
	a.decode(i, "opt", &name)
	if name == nil || a.err != nil {
		return nil
	}
	o, ok := a.r.env[*name].(*Optimizer)
	if !ok {
		a.err = a.r.fail("bad case: '%s' is not an optimizer", *name)
	}
	return o
}

// ---- calls ----

// cfResult is what a call gave: its handle outputs in ABI order, and a number checked by
// "value".
type cfResult struct {
	outs  []any
	value any
}

func one[T any](v T, err error) (cfResult, error) { return cfResult{outs: []any{v}}, err }
func num[T any](v T, err error) (cfResult, error) { return cfResult{value: v}, err }
func none(err error) (cfResult, error)            { return cfResult{}, err }

var cfUnary = map[string]func(*Tensor) (*Tensor, error){
	"ag_neg": (*Tensor).Neg, "ag_exp": (*Tensor).Exp, "ag_log": (*Tensor).Log,
	"ag_log1p": (*Tensor).Log1p, "ag_expm1": (*Tensor).Expm1, "ag_sqrt": (*Tensor).Sqrt,
	"ag_rsqrt": (*Tensor).Rsqrt, "ag_abs": (*Tensor).Abs, "ag_sin": (*Tensor).Sin,
	"ag_cos": (*Tensor).Cos, "ag_tanh": (*Tensor).Tanh, "ag_sigmoid": (*Tensor).Sigmoid,
	"ag_relu": (*Tensor).Relu, "ag_silu": (*Tensor).Silu, "ag_sum": (*Tensor).Sum,
	"ag_mean": (*Tensor).Mean, "ag_max": (*Tensor).Max, "ag_min": (*Tensor).Min,
	"ag_argmax_all": (*Tensor).ArgmaxAll, "ag_argmin_all": (*Tensor).ArgminAll,
	"ag_t": (*Tensor).T, "ag_squeeze": (*Tensor).Squeeze, "ag_contiguous": (*Tensor).Contiguous,
	"ag_clone": (*Tensor).Clone, "ag_tensor_detach": (*Tensor).Detach,
	"ag_tensor_grad": (*Tensor).Grad, "ag_empty_like": EmptyLike, "ag_zeros_like": ZerosLike,
	"ag_ones_like": OnesLike,
}

var cfBinary = map[string]func(*Tensor, *Tensor) (*Tensor, error){
	"ag_add": (*Tensor).Add, "ag_sub": (*Tensor).Sub, "ag_mul": (*Tensor).Mul,
	"ag_div": (*Tensor).Div, "ag_pow": (*Tensor).Pow, "ag_maximum": (*Tensor).Maximum,
	"ag_minimum": (*Tensor).Minimum, "ag_eq": (*Tensor).Eq, "ag_ne": (*Tensor).Ne,
	"ag_lt": (*Tensor).Lt, "ag_le": (*Tensor).Le, "ag_gt": (*Tensor).Gt, "ag_ge": (*Tensor).Ge,
	"ag_matmul": (*Tensor).Matmul, "ag_embedding": Embedding,
}

var cfScalar = map[string]func(*Tensor, float64) (*Tensor, error){
	"ag_add_scalar": (*Tensor).AddScalar, "ag_sub_scalar": (*Tensor).SubScalar,
	"ag_rsub_scalar": (*Tensor).RSubScalar, "ag_mul_scalar": (*Tensor).MulScalar,
	"ag_div_scalar": (*Tensor).DivScalar, "ag_rdiv_scalar": (*Tensor).RDivScalar,
	"ag_pow_scalar": (*Tensor).PowScalar, "ag_rpow_scalar": (*Tensor).RPowScalar,
	"ag_eq_scalar": (*Tensor).EqScalar, "ag_ne_scalar": (*Tensor).NeScalar,
	"ag_lt_scalar": (*Tensor).LtScalar, "ag_le_scalar": (*Tensor).LeScalar,
	"ag_gt_scalar": (*Tensor).GtScalar, "ag_ge_scalar": (*Tensor).GeScalar,
	"ag_leaky_relu": (*Tensor).LeakyRelu, "ag_clamp_min": (*Tensor).ClampMin,
	"ag_clamp_max": (*Tensor).ClampMax, "ag_full_like": FullLike,
}

var cfInPlace = map[string]func(*Tensor, *Tensor) error{
	"ag_add_": (*Tensor).AddInPlace, "ag_sub_": (*Tensor).SubInPlace,
	"ag_mul_": (*Tensor).MulInPlace, "ag_copy_": (*Tensor).CopyFrom,
	"ag_tensor_set_grad": (*Tensor).SetGrad,
}

var cfDims = map[string]func(*Tensor, []int64, bool) (*Tensor, error){
	"ag_sum_dims": (*Tensor).SumDims, "ag_mean_dims": (*Tensor).MeanDims,
	"ag_amax": (*Tensor).Amax, "ag_amin": (*Tensor).Amin, "ag_logsumexp": (*Tensor).LogSumExp,
}

var cfDim = map[string]func(*Tensor, int64) (*Tensor, error){
	"ag_softmax": (*Tensor).Softmax, "ag_log_softmax": (*Tensor).LogSoftmax,
	"ag_squeeze_dim": (*Tensor).SqueezeDim, "ag_unsqueeze": (*Tensor).Unsqueeze,
}

var cfShape = map[string]func(*Tensor, ...int64) (*Tensor, error){
	"ag_reshape": (*Tensor).Reshape, "ag_view": (*Tensor).View, "ag_expand": (*Tensor).Expand,
	"ag_permute": (*Tensor).Permute,
}

var cfCreate = map[string]func(DType, ...int64) (*Tensor, error){
	"ag_empty": Empty, "ag_zeros": Zeros, "ag_ones": Ones,
}

// call maps one ABI function onto the package's API.
func (r *cfRun) call(fn string, a *cfArgs, nOut int) (cfResult, error) {
	if f, ok := cfUnary[fn]; ok {
		return one(f(a.t(0)))
	}
	if f, ok := cfBinary[fn]; ok {
		return one(f(a.t(0), a.t(1)))
	}
	if f, ok := cfScalar[fn]; ok {
		return one(f(a.t(0), a.f(1)))
	}
	if f, ok := cfInPlace[fn]; ok {
		return none(f(a.t(0), a.t(1)))
	}
	if f, ok := cfDims[fn]; ok {
		return one(f(a.t(0), a.ints(1), a.b(2)))
	}
	if f, ok := cfDim[fn]; ok {
		return one(f(a.t(0), a.i(1)))
	}
	if f, ok := cfShape[fn]; ok {
		return one(f(a.t(0), a.ints(1)...))
	}
	if f, ok := cfCreate[fn]; ok {
		return one(f(a.dtype(0), a.ints(1)...))
	}
	switch fn {
	case "ag_tensor_scalar":
		return one(Scalar(a.f(0), a.dtype(1)))
	case "ag_tensor_scalar_requires_grad":
		return one(ScalarRequiresGrad(a.f(0), a.dtype(1), a.b(2)))
	case "ag_full":
		return one(Full(a.dtype(0), a.f(2), a.ints(1)...))
	case "ag_arange":
		return one(Arange(a.dtype(0), a.f(1), a.f(2), a.f(3)))
	case "ag_eye":
		return one(Eye(a.dtype(0), a.i(1), a.i(2)))
	case "ag_rand":
		return one(Rand(a.gen(0), a.dtype(1), a.ints(2)...))
	case "ag_randn":
		return one(Randn(a.gen(0), a.dtype(1), a.ints(2)...))
	case "ag_randint":
		return one(Randint(a.gen(0), a.i(1), a.i(2), a.dtype(3), a.ints(4)...))
	case "ag_rand_like":
		return one(RandLike(a.gen(0), a.t(1)))
	case "ag_randn_like":
		return one(RandnLike(a.gen(0), a.t(1)))
	case "ag_generator_new":
		return one(NewGenerator(uint64(a.i(0))))
	case "ag_gelu":
		return one(a.t(0).Gelu(a.b(1)))
	case "ag_softplus":
		return one(a.t(0).Softplus(a.f(1), a.f(2)))
	case "ag_clamp":
		return one(a.t(0).Clamp(a.f(1), a.f(2)))
	case "ag_where":
		return one(Where(a.t(0), a.t(1), a.t(2)))
	case "ag_max_dim", "ag_min_dim":
		f := (*Tensor).MaxDim
		if fn == "ag_min_dim" {
			f = (*Tensor).MinDim
		}
		v, i, err := f(a.t(0), a.i(1), a.b(2))
		return cfResult{outs: []any{v, i}}, err
	case "ag_var":
		return one(a.t(0).Var(a.ints(1), a.i(2), a.b(3)))
	case "ag_std":
		return one(a.t(0).Std(a.ints(1), a.i(2), a.b(3)))
	case "ag_norm":
		return one(a.t(0).Norm(a.f(1), a.ints(2), a.b(3)))
	case "ag_argmax":
		return one(a.t(0).Argmax(a.i(1), a.b(2)))
	case "ag_argmin":
		return one(a.t(0).Argmin(a.i(1), a.b(2)))
	case "ag_linear":
		return one(a.t(0).Linear(a.t(1), a.t(2)))
	case "ag_transpose":
		return one(a.t(0).Transpose(a.i(1), a.i(2)))
	case "ag_slice":
		return one(a.t(0).Slice(a.i(1), a.i(2), a.i(3), a.i(4)))
	case "ag_narrow":
		return one(a.t(0).Narrow(a.i(1), a.i(2), a.i(3)))
	case "ag_select":
		return one(a.t(0).Select(a.i(1), a.i(2)))
	case "ag_flatten":
		return one(a.t(0).Flatten(a.i(1), a.i(2)))
	case "ag_to_dtype":
		return one(a.t(0).To(a.dtype(1)))
	case "ag_index_select":
		return one(a.t(0).IndexSelect(a.i(1), a.t(2)))
	case "ag_gather":
		return one(a.t(0).Gather(a.i(1), a.t(2)))
	case "ag_scatter_add":
		return one(a.t(0).ScatterAdd(a.i(1), a.t(2), a.t(3)))
	case "ag_masked_fill":
		return one(a.t(0).MaskedFill(a.t(1), a.f(2)))
	case "ag_cat":
		return one(Cat(a.ts(0), a.i(1)))
	case "ag_stack":
		return one(Stack(a.ts(0), a.i(1)))
	case "ag_split_count":
		return num(a.t(0).SplitCount(a.i(1), a.i(2)))
	case "ag_chunk_count":
		return num(a.t(0).ChunkCount(a.i(1), a.i(2)))
	case "ag_split", "ag_chunk":
		f := (*Tensor).SplitInto
		if fn == "ag_chunk" {
			f = (*Tensor).ChunkInto
		}
		pieces := make([]*Tensor, nOut)
		err := f(a.t(0), pieces, a.i(1), a.i(2))
		outs := make([]any, nOut)
		for i, p := range pieces {
			outs[i] = p
		}
		return cfResult{outs: outs}, err
	case "ag_cross_entropy":
		return one(a.t(0).CrossEntropy(a.t(1), WithWeight(a.t(2)), WithReduction(a.reduction(3)),
			WithIgnoreIndex(a.i(4)), WithLabelSmoothing(a.f(5))))
	case "ag_nll_loss":
		return one(a.t(0).NLLLoss(a.t(1), WithWeight(a.t(2)), WithReduction(a.reduction(3)),
			WithIgnoreIndex(a.i(4))))
	case "ag_mse_loss":
		return one(a.t(0).MSELoss(a.t(1), WithReduction(a.reduction(2))))
	case "ag_binary_cross_entropy_with_logits":
		return one(a.t(0).BinaryCrossEntropyWithLogits(a.t(1), WithWeight(a.t(2)),
			WithPosWeight(a.t(3)), WithReduction(a.reduction(4))))
	case "ag_dropout":
		return one(a.t(1).Dropout(a.gen(0), a.f(2), a.b(3)))
	case "ag_layer_norm":
		return one(a.t(0).LayerNorm(a.ints(1), a.t(2), a.t(3), a.f(4)))
	case "ag_add_scalar_":
		return none(a.t(0).AddScalarInPlace(a.f(1)))
	case "ag_mul_scalar_":
		return none(a.t(0).MulScalarInPlace(a.f(1)))
	case "ag_zero_":
		return none(a.t(0).ZeroInPlace())
	case "ag_fill_":
		return none(a.t(0).FillInPlace(a.f(1)))
	case "ag_tensor_item":
		return num(a.t(0).Item())
	case "ag_tensor_item_int64":
		return num(a.t(0).ItemInt64())
	case "ag_tensor_numel":
		t := a.t(0)
		if t == nil { // the query methods give zero values for nil: ask the library
			return num(int64(0), errOf(capi.Ag_tensor_numel(0)))
		}
		return num(t.Numel(), nil)
	case "ag_tensor_size":
		return num(a.t(0).Size(a.i(1)))
	case "ag_tensor_retain_grad":
		return none(a.t(0).RetainGrad())
	case "ag_tensor_zero_grad":
		return none(a.t(0).ZeroGrad())
	case "ag_tensor_set_requires_grad":
		return none(a.t(0).SetRequiresGrad(a.b(1)))
	case "ag_backward":
		retain, create, _ := a.flags(2)
		return none(a.t(0).BackwardWith(BackwardOptions{Grad: a.t(1), RetainGraph: retain,
			CreateGraph: create}))
	case "ag_grad":
		retain, create, unused := a.flags(3)
		grads, err := Grad(a.ts(0), a.ts(2), GradOptions{GradOutputs: a.ts(1),
			RetainGraph: retain, CreateGraph: create, AllowUnused: unused})
		outs := make([]any, len(grads))
		for i, g := range grads {
			outs[i] = g
		}
		return cfResult{outs: outs}, err
	case "ag_optimizer_sgd":
		return one(NewSGD(a.ts(0), a.f(1), WithMomentum(a.f(2)), WithDampening(a.f(3)),
			WithWeightDecay(a.f(4)), WithNesterov(a.b(5))))
	case "ag_optimizer_adam", "ag_optimizer_adamw":
		f := NewAdam
		if fn == "ag_optimizer_adamw" {
			f = NewAdamW
		}
		return one(f(a.ts(0), a.f(1), WithBetas(a.f(2), a.f(3)), WithEps(a.f(4)),
			WithWeightDecay(a.f(5)), WithAMSGrad(a.b(6))))
	case "ag_optimizer_step":
		return none(a.opt(0).Step())
	case "ag_optimizer_zero_grad":
		return none(a.opt(0).ZeroGrad(a.b(1)))
	case "ag_optimizer_get_lr":
		return num(a.opt(0).LR(), nil)
	case "ag_optimizer_set_lr":
		return none(a.opt(0).SetLR(a.f(1)))
	}
	return cfResult{}, r.fail("bad case: the Go runner does not know %s", fn)
}

func (r *cfRun) stepCall(s *cfStep) error {
	r.op = "call " + s.Fn
	var outNames []*string
	if len(s.Out) > 0 {
		var single string
		if err := json.Unmarshal(s.Out, &single); err == nil {
			outNames = []*string{&single}
		} else if err := json.Unmarshal(s.Out, &outNames); err != nil {
			return r.fail("bad case: out")
		}
	}
	a := &cfArgs{r: r, list: s.Args}
	// The call runs on a locked thread, so the library's per-thread error state can be
	// compared with the error the binding captured.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	capi.Ag_clear_error()
	res, err := r.call(s.Fn, a, len(outNames))
	lastStatus, lastError := capi.Ag_last_status(), capi.Ag_last_error()
	releaseAll := func() {
		for _, o := range res.outs {
			if t, ok := o.(interface{ Release() }); ok {
				t.Release()
			}
		}
	}
	if a.err != nil {
		releaseAll()
		return a.err
	}
	if s.Error != nil {
		defer releaseAll()
		if err == nil {
			return r.fail("expected %s, got AG_OK", s.Error.Status)
		}
		var e *Error
		if !errors.As(err, &e) {
			return r.fail("expected %s, got a Go error: %v", s.Error.Status, err)
		}
		if e.Code.String() != s.Error.Status {
			return r.fail("expected %s, got %s: %s", s.Error.Status, e.Code, e.Message)
		}
		if e.Message == "" {
			return r.fail("failed with %s but the message is empty", e.Code)
		}
		if !strings.Contains(e.Message, s.Error.MessageContains) {
			return r.fail("message %q does not contain %q", e.Message, s.Error.MessageContains)
		}
		if Code(lastStatus) != e.Code || lastError != e.Message {
			return r.fail("the error (%s: %s) is not the library's (%s: %s)", e.Code,
				e.Message, Code(lastStatus), lastError)
		}
		for i, o := range res.outs {
			if t, ok := o.(*Tensor); ok && t != nil {
				return r.fail("output %d was written although the call failed", i+1)
			}
		}
		return nil
	}
	if err != nil {
		releaseAll()
		return r.fail("returned %v", err)
	}
	if len(outNames) > len(res.outs) {
		releaseAll()
		return r.fail("bad case: %d out names, %d outputs", len(outNames), len(res.outs))
	}
	for i, o := range res.outs {
		if i < len(outNames) && outNames[i] != nil {
			r.bind(*outNames[i], o)
		} else if h, ok := o.(interface{ Release() }); ok {
			h.Release()
		}
	}
	if len(s.Value) > 0 {
		want, err := cfNumber(s.Value)
		if err != nil {
			return r.fail("bad case: value")
		}
		switch v := res.value.(type) {
		case float64:
			if !r.closeEnough(v, want, Float64) {
				return r.fail("value: expected %.17g, got %.17g", want, v)
			}
		case int64:
			if float64(v) != want {
				return r.fail("value: expected %v, got %d", want, v)
			}
		default:
			return r.fail("bad case: %s gives no value", s.Fn)
		}
	}
	return nil
}

func (r *cfRun) stepTensor(s *cfStep) error {
	r.op = "tensor"
	dt, ok := cfDTypes[s.DType]
	var name string
	if !ok || json.Unmarshal(s.Out, &name) != nil || s.Shape == nil {
		return r.fail("bad case: tensor step")
	}
	data, err := cfNumbers(s.Data)
	if err != nil {
		return r.fail("bad case: tensor data")
	}
	t, err := FromFloat64s(data, dt, s.Shape...)
	if err != nil {
		return r.fail("FromFloat64s: %v", err)
	}
	if s.RequiresGrad != nil && *s.RequiresGrad {
		if err := t.SetRequiresGrad(true); err != nil {
			t.Release()
			return r.fail("SetRequiresGrad: %v", err)
		}
	}
	r.bind(name, t)
	return nil
}

// check compares tensor t (nil for none) with the expectation fields of s.
func (r *cfRun) check(t *Tensor, s *cfStep, what string) error {
	if s.None {
		if t != nil {
			return r.fail("%s: expected none, got a tensor", what)
		}
		return nil
	}
	if t == nil {
		return r.fail("%s: expected a tensor, got none", what)
	}
	dt := t.DType()
	if s.DType != "" && cfDTypes[s.DType] != dt {
		return r.fail("%s: dtype: expected %s, got %v", what, s.DType, dt)
	}
	if s.Shape != nil && !slices.Equal(s.Shape, t.Shape()) {
		return r.fail("%s: shape: expected %v, got %v", what, s.Shape, t.Shape())
	}
	if s.Data != nil {
		want, err := cfNumbers(s.Data)
		if err != nil {
			return r.fail("bad case: data")
		}
		got, err := t.Float64s()
		if err != nil {
			return r.fail("%s: Float64s: %v", what, err)
		}
		if len(got) != len(want) {
			return r.fail("%s: expected %d elements, got %d", what, len(want), len(got))
		}
		for i := range got {
			if !r.closeEnough(got[i], want[i], dt) {
				return r.fail("%s: element %d: expected %.17g, got %.17g (%v)\n    expected %v\n"+
					"    got      %v", what, i, want[i], got[i], dt, want, got)
			}
		}
	}
	flags := []struct {
		name string
		want *bool
		got  func() bool
	}{
		{"requires_grad", s.RequiresGrad, t.RequiresGrad},
		{"is_leaf", s.IsLeaf, t.IsLeaf},
		{"is_contiguous", s.IsContiguous, t.IsContiguous},
	}
	for _, f := range flags {
		if f.want != nil && *f.want != f.got() {
			return r.fail("%s: %s: expected %v, got %v", what, f.name, *f.want, f.got())
		}
	}
	if s.Version != nil && *s.Version != t.Version() {
		return r.fail("%s: version: expected %d, got %d", what, *s.Version, t.Version())
	}
	if s.StorageOffset != nil && *s.StorageOffset != t.StorageOffset() {
		return r.fail("%s: storage_offset: expected %d, got %d", what, *s.StorageOffset,
			t.StorageOffset())
	}
	if s.Strides != nil && !slices.Equal(s.Strides, t.Strides()) {
		return r.fail("%s: strides: expected %v, got %v", what, s.Strides, t.Strides())
	}
	if len(s.GradFn) > 0 {
		var want *string
		if err := json.Unmarshal(s.GradFn, &want); err != nil {
			return r.fail("bad case: grad_fn")
		}
		node, err := t.GradFn()
		if err != nil {
			return r.fail("%s: GradFn: %v", what, err)
		}
		defer node.Release()
		got := "none"
		if node != nil {
			got = node.Name()
		}
		if (want == nil && node != nil) || (want != nil && got != *want) {
			w := "none"
			if want != nil {
				w = *want
			}
			return r.fail("%s: grad_fn: expected %s, got %s", what, w, got)
		}
	}
	return nil
}

func (r *cfRun) stepExpect(s *cfStep, ofGrad bool) error {
	r.op = s.Op
	t, err := r.tensor(s.T)
	if err != nil {
		return err
	}
	if !ofGrad {
		return r.check(t, s, s.T)
	}
	if t == nil {
		return r.fail("bad case: '%s' is none", s.T)
	}
	g, err := t.Grad()
	if err != nil {
		return r.fail("Grad: %v", err)
	}
	defer g.Release()
	return r.check(g, s, s.T+".grad")
}

func (r *cfRun) steps(steps []cfStep, prefix string) error {
	for i := range steps {
		s := &steps[i]
		r.step, r.op = prefix+strconv.Itoa(i+1), s.Op
		var err error
		switch s.Op {
		case "tensor":
			err = r.stepTensor(s)
		case "call":
			err = r.stepCall(s)
		case "expect":
			err = r.stepExpect(s, false)
		case "expect_grad":
			err = r.stepExpect(s, true)
		case "release":
			if _, ok := r.env[s.Name]; !ok {
				err = r.fail("bad case: release of an unknown name")
			}
			r.unbind(s.Name)
		case "no_grad":
			step := r.step
			err = NoGrad(func() error { return r.steps(s.Steps, step+".") })
		default:
			err = r.fail("bad case: unknown op %q", s.Op)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func TestConformance(t *testing.T) {
	dir := os.Getenv("AG_CONFORMANCE_CASES")
	if dir == "" {
		dir = filepath.Join("..", "..", "tests", "conformance", "cases")
	}
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no case files in %s", dir)
	}
	slices.Sort(paths)
	passed, failed, skipped := 0, 0, 0
	for _, path := range paths {
		file := filepath.Base(path)
		text, err := os.ReadFile(path)
		var cf cfFile
		if err == nil {
			dec := json.NewDecoder(bytes.NewReader(text))
			err = dec.Decode(&cf)
		}
		if err != nil || cf.Format != 1 {
			fmt.Printf("FAIL %s: cannot read a format-1 case file (%v)\n", path, err)
			failed++
			continue
		}
		for _, c := range cf.Cases {
			r := &cfRun{file: file, name: c.Name, env: map[string]any{}}
			for k, dt := range []string{"float32", "float64"} {
				r.tols[k] = cf.Tolerances[dt]
				if tl, ok := c.Tolerances[dt]; ok {
					r.tols[k] = tl
				}
			}
			r.steps(c.Steps, "")
			for name := range r.env {
				r.unbind(name)
			}
			if !r.failed && !IsGradEnabled() {
				r.step, r.op = "end", ""
				r.fail("grad mode left disabled")
			}
			if r.failed {
				failed++
			} else {
				passed++
			}
		}
	}
	fmt.Printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped)
	if failed > 0 {
		t.Fail()
	}
}
