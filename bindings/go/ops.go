// ops.go: the tensor operations, one method or function per C op (arithmetic, unary,
// reductions, views, indexing, linear algebra, losses, in-place ops).

package autograd

import (
	"math"
	"runtime"
	"slices"

	"libautograd.dev/autograd/internal/capi"
)

// The operations. Each returns a new tensor and records a grad_fn when grad mode is on and an
// input requires grad. Binary operations broadcast by NumPy rules and promote dtypes as
// PyTorch does. Scalars (float64 arguments) act as Python scalars in type promotion: an
// integral value is an int (int64 + 2 stays int64), others a float.

// ---- elementwise, two tensors ----

// Add returns t + o.
func (t *Tensor) Add(o *Tensor) (*Tensor, error) { return result(capi.Ag_add(t.c(), o.c()), t, o) }

// Sub returns t - o.
func (t *Tensor) Sub(o *Tensor) (*Tensor, error) { return result(capi.Ag_sub(t.c(), o.c()), t, o) }

// Mul returns t * o.
func (t *Tensor) Mul(o *Tensor) (*Tensor, error) { return result(capi.Ag_mul(t.c(), o.c()), t, o) }

// Div returns t / o, true division (int64 / int64 gives float32).
func (t *Tensor) Div(o *Tensor) (*Tensor, error) { return result(capi.Ag_div(t.c(), o.c()), t, o) }

// Pow returns t ** o.
func (t *Tensor) Pow(o *Tensor) (*Tensor, error) { return result(capi.Ag_pow(t.c(), o.c()), t, o) }

// Maximum returns the elementwise maximum of t and o (NaN propagates; the gradient of ties is
// split evenly).
func (t *Tensor) Maximum(o *Tensor) (*Tensor, error) {
	return result(capi.Ag_maximum(t.c(), o.c()), t, o)
}

// Minimum returns the elementwise minimum of t and o.
func (t *Tensor) Minimum(o *Tensor) (*Tensor, error) {
	return result(capi.Ag_minimum(t.c(), o.c()), t, o)
}

// ---- elementwise with a scalar ----

// AddScalar returns t + s.
func (t *Tensor) AddScalar(s float64) (*Tensor, error) {
	return result(capi.Ag_add_scalar(t.c(), s), t)
}

// SubScalar returns t - s.
func (t *Tensor) SubScalar(s float64) (*Tensor, error) {
	return result(capi.Ag_sub_scalar(t.c(), s), t)
}

// RSubScalar returns s - t.
func (t *Tensor) RSubScalar(s float64) (*Tensor, error) {
	return result(capi.Ag_rsub_scalar(t.c(), s), t)
}

// MulScalar returns t * s.
func (t *Tensor) MulScalar(s float64) (*Tensor, error) {
	return result(capi.Ag_mul_scalar(t.c(), s), t)
}

// DivScalar returns t / s.
func (t *Tensor) DivScalar(s float64) (*Tensor, error) {
	return result(capi.Ag_div_scalar(t.c(), s), t)
}

// RDivScalar returns s / t.
func (t *Tensor) RDivScalar(s float64) (*Tensor, error) {
	return result(capi.Ag_rdiv_scalar(t.c(), s), t)
}

// PowScalar returns t ** s.
func (t *Tensor) PowScalar(s float64) (*Tensor, error) {
	return result(capi.Ag_pow_scalar(t.c(), s), t)
}

// RPowScalar returns s ** t.
func (t *Tensor) RPowScalar(s float64) (*Tensor, error) {
	return result(capi.Ag_rpow_scalar(t.c(), s), t)
}

// ---- elementwise, one tensor ----

// Neg returns -t.
func (t *Tensor) Neg() (*Tensor, error) { return result(capi.Ag_neg(t.c()), t) }

// Exp returns e ** t.
func (t *Tensor) Exp() (*Tensor, error) { return result(capi.Ag_exp(t.c()), t) }

// Log returns the natural logarithm of t.
func (t *Tensor) Log() (*Tensor, error) { return result(capi.Ag_log(t.c()), t) }

// Log1p returns log(1 + t).
func (t *Tensor) Log1p() (*Tensor, error) { return result(capi.Ag_log1p(t.c()), t) }

// Expm1 returns exp(t) - 1.
func (t *Tensor) Expm1() (*Tensor, error) { return result(capi.Ag_expm1(t.c()), t) }

// Sqrt returns the square root of t.
func (t *Tensor) Sqrt() (*Tensor, error) { return result(capi.Ag_sqrt(t.c()), t) }

// Rsqrt returns 1 / sqrt(t).
func (t *Tensor) Rsqrt() (*Tensor, error) { return result(capi.Ag_rsqrt(t.c()), t) }

// Abs returns |t|.
func (t *Tensor) Abs() (*Tensor, error) { return result(capi.Ag_abs(t.c()), t) }

// Sin returns sin(t).
func (t *Tensor) Sin() (*Tensor, error) { return result(capi.Ag_sin(t.c()), t) }

// Cos returns cos(t).
func (t *Tensor) Cos() (*Tensor, error) { return result(capi.Ag_cos(t.c()), t) }

// Tanh returns tanh(t).
func (t *Tensor) Tanh() (*Tensor, error) { return result(capi.Ag_tanh(t.c()), t) }

// Sigmoid returns 1 / (1 + exp(-t)).
func (t *Tensor) Sigmoid() (*Tensor, error) { return result(capi.Ag_sigmoid(t.c()), t) }

// Relu returns max(t, 0).
func (t *Tensor) Relu() (*Tensor, error) { return result(capi.Ag_relu(t.c()), t) }

// LeakyRelu returns t where t > 0, else negativeSlope * t (PyTorch's default slope: 0.01).
func (t *Tensor) LeakyRelu(negativeSlope float64) (*Tensor, error) {
	return result(capi.Ag_leaky_relu(t.c(), negativeSlope), t)
}

// Gelu returns the GELU of t: the exact erf form, or PyTorch's approximate='tanh' form.
func (t *Tensor) Gelu(approximateTanh bool) (*Tensor, error) {
	return result(capi.Ag_gelu(t.c(), approximateTanh), t)
}

// Silu returns t * sigmoid(t).
func (t *Tensor) Silu() (*Tensor, error) { return result(capi.Ag_silu(t.c()), t) }

// Softplus returns log(1 + exp(beta t)) / beta, linear where beta t > threshold (PyTorch's
// defaults: beta 1, threshold 20).
func (t *Tensor) Softplus(beta, threshold float64) (*Tensor, error) {
	return result(capi.Ag_softplus(t.c(), beta, threshold), t)
}

// Clamp returns min(max(t, lo), hi).
func (t *Tensor) Clamp(lo, hi float64) (*Tensor, error) {
	return result(capi.Ag_clamp(t.c(), lo, hi), t)
}

// ClampMin returns max(t, lo).
func (t *Tensor) ClampMin(lo float64) (*Tensor, error) {
	return result(capi.Ag_clamp_min(t.c(), lo), t)
}

// ClampMax returns min(t, hi).
func (t *Tensor) ClampMax(hi float64) (*Tensor, error) {
	return result(capi.Ag_clamp_max(t.c(), hi), t)
}

// Where returns cond ? a : b elementwise, broadcasting all three; cond is Bool (or Int64,
// nonzero is true).
func Where(cond, a, b *Tensor) (*Tensor, error) {
	return result(capi.Ag_where(cond.c(), a.c(), b.c()), cond, a, b)
}

// ---- comparisons (Bool results, never a grad_fn) ----

// Eq returns t == o.
func (t *Tensor) Eq(o *Tensor) (*Tensor, error) { return result(capi.Ag_eq(t.c(), o.c()), t, o) }

// Ne returns t != o.
func (t *Tensor) Ne(o *Tensor) (*Tensor, error) { return result(capi.Ag_ne(t.c(), o.c()), t, o) }

// Lt returns t < o.
func (t *Tensor) Lt(o *Tensor) (*Tensor, error) { return result(capi.Ag_lt(t.c(), o.c()), t, o) }

// Le returns t <= o.
func (t *Tensor) Le(o *Tensor) (*Tensor, error) { return result(capi.Ag_le(t.c(), o.c()), t, o) }

// Gt returns t > o.
func (t *Tensor) Gt(o *Tensor) (*Tensor, error) { return result(capi.Ag_gt(t.c(), o.c()), t, o) }

// Ge returns t >= o.
func (t *Tensor) Ge(o *Tensor) (*Tensor, error) { return result(capi.Ag_ge(t.c(), o.c()), t, o) }

// EqScalar returns t == s.
func (t *Tensor) EqScalar(s float64) (*Tensor, error) {
	return result(capi.Ag_eq_scalar(t.c(), s), t)
}

// NeScalar returns t != s.
func (t *Tensor) NeScalar(s float64) (*Tensor, error) {
	return result(capi.Ag_ne_scalar(t.c(), s), t)
}

// LtScalar returns t < s.
func (t *Tensor) LtScalar(s float64) (*Tensor, error) {
	return result(capi.Ag_lt_scalar(t.c(), s), t)
}

// LeScalar returns t <= s.
func (t *Tensor) LeScalar(s float64) (*Tensor, error) {
	return result(capi.Ag_le_scalar(t.c(), s), t)
}

// GtScalar returns t > s.
func (t *Tensor) GtScalar(s float64) (*Tensor, error) {
	return result(capi.Ag_gt_scalar(t.c(), s), t)
}

// GeScalar returns t >= s.
func (t *Tensor) GeScalar(s float64) (*Tensor, error) {
	return result(capi.Ag_ge_scalar(t.c(), s), t)
}

// ---- reductions ----
// dims lists the dimensions to reduce (no repeats); nil or empty reduces over all of them.
// keepdim keeps reduced dimensions with size 1.

// Sum returns the sum of all elements (Int64 for Int64 and Bool tensors).
func (t *Tensor) Sum() (*Tensor, error) { return result(capi.Ag_sum(t.c()), t) }

// SumDims returns the sum over dims.
func (t *Tensor) SumDims(dims []int64, keepdim bool) (*Tensor, error) {
	return result(capi.Ag_sum_dims(t.c(), dims, keepdim), t)
}

// Mean returns the mean of all elements (float dtypes).
func (t *Tensor) Mean() (*Tensor, error) { return result(capi.Ag_mean(t.c()), t) }

// MeanDims returns the mean over dims.
func (t *Tensor) MeanDims(dims []int64, keepdim bool) (*Tensor, error) {
	return result(capi.Ag_mean_dims(t.c(), dims, keepdim), t)
}

// Max returns the largest element (NaN propagates; the gradient is shared among ties).
func (t *Tensor) Max() (*Tensor, error) { return result(capi.Ag_max(t.c()), t) }

// Min returns the smallest element.
func (t *Tensor) Min() (*Tensor, error) { return result(capi.Ag_min(t.c()), t) }

// MaxDim returns the largest values along dim and their Int64 indices (first occurrence).
func (t *Tensor) MaxDim(dim int64, keepdim bool) (values, indices *Tensor, err error) {
	return pair(capi.Ag_max_dim(t.c(), dim, keepdim), t)
}

// MinDim returns the smallest values along dim and their Int64 indices (first occurrence).
func (t *Tensor) MinDim(dim int64, keepdim bool) (values, indices *Tensor, err error) {
	return pair(capi.Ag_min_dim(t.c(), dim, keepdim), t)
}

func pair(r capi.Ret, t *Tensor) (*Tensor, *Tensor, error) {
	runtime.KeepAlive(t)
	if !r.OK() {
		return nil, nil, failure(r, t)
	}
	return newTensor(r.Handle()), newTensor(r.Handle2()), nil
}

// Amax returns the maximum over dims (the gradient is split evenly among ties).
func (t *Tensor) Amax(dims []int64, keepdim bool) (*Tensor, error) {
	return result(capi.Ag_amax(t.c(), dims, keepdim), t)
}

// Amin returns the minimum over dims.
func (t *Tensor) Amin(dims []int64, keepdim bool) (*Tensor, error) {
	return result(capi.Ag_amin(t.c(), dims, keepdim), t)
}

// Var returns the variance over dims with the given correction (1 = unbiased, PyTorch's
// default).
func (t *Tensor) Var(dims []int64, correction int64, keepdim bool) (*Tensor, error) {
	return result(capi.Ag_var(t.c(), dims, correction, keepdim), t)
}

// Std returns the standard deviation over dims with the given correction.
func (t *Tensor) Std(dims []int64, correction int64, keepdim bool) (*Tensor, error) {
	return result(capi.Ag_std(t.c(), dims, correction, keepdim), t)
}

// LogSumExp returns log(sum(exp(t))) over dims, computed stably.
func (t *Tensor) LogSumExp(dims []int64, keepdim bool) (*Tensor, error) {
	return result(capi.Ag_logsumexp(t.c(), dims, keepdim), t)
}

// Norm returns the vector p-norm over dims: p = 2, 1, math.Inf(1), math.Inf(-1), 0 (count
// of nonzeros) or any other real p.
func (t *Tensor) Norm(p float64, dims []int64, keepdim bool) (*Tensor, error) {
	return result(capi.Ag_norm(t.c(), p, dims, keepdim), t)
}

// Argmax returns the Int64 index of the largest element along dim (first occurrence).
func (t *Tensor) Argmax(dim int64, keepdim bool) (*Tensor, error) {
	return result(capi.Ag_argmax(t.c(), dim, keepdim), t)
}

// Argmin returns the Int64 index of the smallest element along dim (first occurrence).
func (t *Tensor) Argmin(dim int64, keepdim bool) (*Tensor, error) {
	return result(capi.Ag_argmin(t.c(), dim, keepdim), t)
}

// ArgmaxAll returns the index into the flattened tensor of its largest element.
func (t *Tensor) ArgmaxAll() (*Tensor, error) { return result(capi.Ag_argmax_all(t.c()), t) }

// ArgminAll returns the index into the flattened tensor of its smallest element.
func (t *Tensor) ArgminAll() (*Tensor, error) { return result(capi.Ag_argmin_all(t.c()), t) }

// ---- linear algebra ----

// Matmul returns the matrix product with torch.matmul's rules: 1-d @ 1-d is a dot product,
// 1-d operands are promoted to matrices and the added dimension removed, batch dimensions
// broadcast.
func (t *Tensor) Matmul(o *Tensor) (*Tensor, error) {
	return result(capi.Ag_matmul(t.c(), o.c()), t, o)
}

// Linear returns t @ w^T + b for t [..., in], w [out, in], b [out] (b may be nil), like
// F.linear.
func (t *Tensor) Linear(w, b *Tensor) (*Tensor, error) {
	if err := live("Linear", operand{"b", b}); err != nil {
		return nil, err
	}
	return result(capi.Ag_linear(t.c(), w.c(), b.c()), t, w, b)
}

// ---- views and shapes ----
// Views share storage and the version counter with their base.

// Reshape returns a view with a new shape (one entry may be -1), or a copy when t's strides
// do not allow a view, like torch.reshape.
func (t *Tensor) Reshape(shape ...int64) (*Tensor, error) {
	return result(capi.Ag_reshape(t.c(), shape), t)
}

// View returns a view with a new shape; it never copies.
func (t *Tensor) View(shape ...int64) (*Tensor, error) {
	return result(capi.Ag_view(t.c(), shape), t)
}

// Transpose swaps two dimensions (a view).
func (t *Tensor) Transpose(dim0, dim1 int64) (*Tensor, error) {
	return result(capi.Ag_transpose(t.c(), dim0, dim1), t)
}

// T returns the transpose of a matrix (ndim <= 2), like Tensor.t().
func (t *Tensor) T() (*Tensor, error) { return result(capi.Ag_t(t.c()), t) }

// Permute reorders the dimensions (a view); dims is a permutation of 0..ndim-1.
func (t *Tensor) Permute(dims ...int64) (*Tensor, error) {
	return result(capi.Ag_permute(t.c(), dims), t)
}

// Expand broadcasts size-1 dimensions to shape without copying (-1 keeps a size).
func (t *Tensor) Expand(shape ...int64) (*Tensor, error) {
	return result(capi.Ag_expand(t.c(), shape), t)
}

// Slice returns the elements start, start+step, ... before end along dim (a view), like
// t[start:end:step]; start and end are clamped as Python slicing does.
func (t *Tensor) Slice(dim, start, end, step int64) (*Tensor, error) {
	return result(capi.Ag_slice(t.c(), dim, start, end, step), t)
}

// Narrow returns length elements from start along dim (a view).
func (t *Tensor) Narrow(dim, start, length int64) (*Tensor, error) {
	return result(capi.Ag_narrow(t.c(), dim, start, length), t)
}

// Select returns the slice at index along dim, removing dim (a view).
func (t *Tensor) Select(dim, index int64) (*Tensor, error) {
	return result(capi.Ag_select(t.c(), dim, index), t)
}

// Squeeze removes every size-1 dimension (a view).
func (t *Tensor) Squeeze() (*Tensor, error) { return result(capi.Ag_squeeze(t.c()), t) }

// SqueezeDim removes dim if its size is 1 (a view; unchanged otherwise).
func (t *Tensor) SqueezeDim(dim int64) (*Tensor, error) {
	return result(capi.Ag_squeeze_dim(t.c(), dim), t)
}

// Unsqueeze inserts a size-1 dimension at dim.
func (t *Tensor) Unsqueeze(dim int64) (*Tensor, error) {
	return result(capi.Ag_unsqueeze(t.c(), dim), t)
}

// Flatten merges dimensions startDim..endDim into one, like torch.flatten.
func (t *Tensor) Flatten(startDim, endDim int64) (*Tensor, error) {
	return result(capi.Ag_flatten(t.c(), startDim, endDim), t)
}

// Contiguous returns t itself (a new reference) if contiguous, else a contiguous copy.
func (t *Tensor) Contiguous() (*Tensor, error) { return result(capi.Ag_contiguous(t.c()), t) }

// Clone returns a contiguous, differentiable copy (CloneBackward0).
func (t *Tensor) Clone() (*Tensor, error) { return result(capi.Ag_clone(t.c()), t) }

// To returns a copy converted to dtype, differentiable between float dtypes.
func (t *Tensor) To(dtype DType) (*Tensor, error) {
	return result(capi.Ag_to_dtype(t.c(), int(dtype)), t)
}

// ---- indexing and joining ----

// IndexSelect returns the entries of t along dim at the Int64 1-d index.
func (t *Tensor) IndexSelect(dim int64, index *Tensor) (*Tensor, error) {
	return result(capi.Ag_index_select(t.c(), dim, index.c()), t, index)
}

// Gather returns out[i][j] = t[index[i][j]][j] (for dim 0), like torch.gather.
func (t *Tensor) Gather(dim int64, index *Tensor) (*Tensor, error) {
	return result(capi.Ag_gather(t.c(), dim, index.c()), t, index)
}

// ScatterAdd returns a copy of t with src added at index along dim, like Tensor.scatter_add.
func (t *Tensor) ScatterAdd(dim int64, index, src *Tensor) (*Tensor, error) {
	return result(capi.Ag_scatter_add(t.c(), dim, index.c(), src.c()), t, index, src)
}

// MaskedFill returns a copy of t with value where mask (Bool, broadcastable) is true.
func (t *Tensor) MaskedFill(mask *Tensor, value float64) (*Tensor, error) {
	return result(capi.Ag_masked_fill(t.c(), mask.c(), value), t, mask)
}

// Cat concatenates tensors along dim (shapes equal elsewhere; dtypes promote).
func Cat(tensors []*Tensor, dim int64) (*Tensor, error) {
	r := capi.Ag_cat(handles(tensors), dim)
	keepAll(tensors)
	return result(r, tensors...)
}

// Stack stacks tensors of equal shape along a new dimension dim.
func Stack(tensors []*Tensor, dim int64) (*Tensor, error) {
	r := capi.Ag_stack(handles(tensors), dim)
	keepAll(tensors)
	return result(r, tensors...)
}

// SplitCount returns the number of pieces Split makes: ceil(size(dim) / splitSize).
func (t *Tensor) SplitCount(splitSize, dim int64) (int64, error) {
	r := capi.Ag_split_count(t.c(), splitSize, dim)
	return r.Int(), done(r, t)
}

// Split splits t along dim into views of splitSize elements (the last may be smaller), like
// torch.split. A count beyond the library's 2^31 - 1 pieces is an EInval error, one whose
// pieces could not fit in this machine's memory an ENoMem error (see pieceBuf).
func (t *Tensor) Split(splitSize, dim int64) ([]*Tensor, error) {
	n, err := t.SplitCount(splitSize, dim)
	if err != nil {
		return nil, err
	}
	hs, err := pieceBuf("Split", n)
	if err != nil {
		return nil, err
	}
	if err := done(capi.Ag_split(hs, t.c(), splitSize, dim), t); err != nil {
		return nil, err
	}
	return newTensors(hs), nil
}

// SplitInto is Split into dst, whose length must be SplitCount (EInval otherwise). On
// failure dst is unchanged.
func (t *Tensor) SplitInto(dst []*Tensor, splitSize, dim int64) error {
	hs, err := pieceBuf("SplitInto", int64(len(dst)))
	if err != nil {
		return err
	}
	if err := done(capi.Ag_split(hs, t.c(), splitSize, dim), t); err != nil {
		return err
	}
	copy(dst, newTensors(hs))
	return nil
}

// ChunkCount returns the number of pieces Chunk makes (torch.chunk may make fewer than
// asked).
func (t *Tensor) ChunkCount(chunks, dim int64) (int64, error) {
	r := capi.Ag_chunk_count(t.c(), chunks, dim)
	return r.Int(), done(r, t)
}

// Chunk splits t into views, like torch.chunk. Its count is bounded as Split's.
func (t *Tensor) Chunk(chunks, dim int64) ([]*Tensor, error) {
	n, err := t.ChunkCount(chunks, dim)
	if err != nil {
		return nil, err
	}
	hs, err := pieceBuf("Chunk", n)
	if err != nil {
		return nil, err
	}
	if err := done(capi.Ag_chunk(hs, t.c(), chunks, dim), t); err != nil {
		return nil, err
	}
	return newTensors(hs), nil
}

// ChunkInto is Chunk into dst, whose length must be ChunkCount (EInval otherwise). On
// failure dst is unchanged.
func (t *Tensor) ChunkInto(dst []*Tensor, chunks, dim int64) error {
	hs, err := pieceBuf("ChunkInto", int64(len(dst)))
	if err != nil {
		return err
	}
	if err := done(capi.Ag_chunk(hs, t.c(), chunks, dim), t); err != nil {
		return err
	}
	copy(dst, newTensors(hs))
	return nil
}

// pieceBytes is less than what one piece of Split or Chunk takes: its C tensor header with
// one size and stride (112 bytes, engine/tensor.h) plus its handle here; the *Tensor, and
// malloc's own overhead, come on top.
const pieceBytes = 128

// pieceBuf makes the array C writes n pieces' handles into. SplitCount of an expanded view
// counts pieces that take no memory yet, up to its 2^63 - 1 elements, and a Go allocation
// that cannot be satisfied kills the process (it is no panic, and no error): so a count the
// library refuses anyway (ag_split's n_outs is at most INT32_MAX: EInval, as there) or whose
// pieces could never fit in this machine's memory (ENoMem, as outBuf) is refused first.
func pieceBuf(fn string, n int64) ([]capi.Tensor, error) {
	if n > math.MaxInt32 {
		return nil, errorf(EInval, "%s: %d pieces: at most %d are supported", fn, n,
			math.MaxInt32)
	}
	if limit := memoryLimit(); uint64(n) > limit/pieceBytes {
		return nil, errorf(ENoMem, "%s: %d pieces of at least %d bytes each are more than "+
			"this machine's memory (%d bytes)", fn, n, pieceBytes, limit)
	}
	return make([]capi.Tensor, n), nil
}

// ---- neural-network functions ----

// Softmax returns softmax along dim, computed stably.
func (t *Tensor) Softmax(dim int64) (*Tensor, error) {
	return result(capi.Ag_softmax(t.c(), dim), t)
}

// LogSoftmax returns log_softmax along dim, computed stably.
func (t *Tensor) LogSoftmax(dim int64) (*Tensor, error) {
	return result(capi.Ag_log_softmax(t.c(), dim), t)
}

// LossOption sets an optional argument of a loss function.
type LossOption func(*lossArgs)

type lossArgs struct {
	weight, posWeight *Tensor
	reduction         Reduction
	ignoreIndex       int64
	labelSmoothing    float64
	set               []string // the options given, by name
}

func (a *lossArgs) mark(name string) { a.set = append(a.set, name) }

// WithWeight rescales each class (CrossEntropy, NLLLoss) or each element
// (BinaryCrossEntropyWithLogits).
func WithWeight(w *Tensor) LossOption {
	return func(a *lossArgs) { a.weight = w; a.mark("WithWeight") }
}

// WithPosWeight weights positive examples (BinaryCrossEntropyWithLogits).
func WithPosWeight(w *Tensor) LossOption {
	return func(a *lossArgs) { a.posWeight = w; a.mark("WithPosWeight") }
}

// WithReduction sets the reduction (default ReduceMean).
func WithReduction(r Reduction) LossOption {
	return func(a *lossArgs) { a.reduction = r; a.mark("WithReduction") }
}

// WithIgnoreIndex skips targets equal to i (CrossEntropy, NLLLoss; default -100).
func WithIgnoreIndex(i int64) LossOption {
	return func(a *lossArgs) { a.ignoreIndex = i; a.mark("WithIgnoreIndex") }
}

// WithLabelSmoothing sets label smoothing in [0, 1] (CrossEntropy; default 0).
func WithLabelSmoothing(s float64) LossOption {
	return func(a *lossArgs) { a.labelSmoothing = s; a.mark("WithLabelSmoothing") }
}

// lossOptions applies opts over PyTorch's defaults; an option the loss does not take is an
// error rather than silently ignored, and so is a released WithWeight or WithPosWeight (C
// would take it for none).
func lossOptions(fn string, opts []LossOption, allowed ...string) (lossArgs, error) {
	a := lossArgs{reduction: ReduceMean, ignoreIndex: -100}
	for _, o := range opts {
		if o != nil {
			o(&a)
		}
	}
	for _, name := range a.set {
		if !slices.Contains(allowed, name) {
			return a, errorf(EInval, "%s: %s does not apply", fn, name)
		}
	}
	return a, live(fn, operand{"the WithWeight tensor", a.weight},
		operand{"the WithPosWeight tensor", a.posWeight})
}

// CrossEntropy returns the cross-entropy between logits t ([N, C], or [C]) and Int64 class
// indices target ([N], or []), like F.cross_entropy. Options: WithWeight, WithReduction,
// WithIgnoreIndex, WithLabelSmoothing.
func (t *Tensor) CrossEntropy(target *Tensor, opts ...LossOption) (*Tensor, error) {
	a, err := lossOptions("CrossEntropy", opts, "WithWeight", "WithReduction",
		"WithIgnoreIndex", "WithLabelSmoothing")
	if err != nil {
		return nil, err
	}
	return result(capi.Ag_cross_entropy(t.c(), target.c(), a.weight.c(), int(a.reduction),
		a.ignoreIndex, a.labelSmoothing), t, target, a.weight)
}

// NLLLoss returns the negative log-likelihood of log-probabilities t ([N, C], or [C]) at
// Int64 target. Options: WithWeight, WithReduction, WithIgnoreIndex.
func (t *Tensor) NLLLoss(target *Tensor, opts ...LossOption) (*Tensor, error) {
	a, err := lossOptions("NLLLoss", opts, "WithWeight", "WithReduction", "WithIgnoreIndex")
	if err != nil {
		return nil, err
	}
	return result(capi.Ag_nll_loss(t.c(), target.c(), a.weight.c(), int(a.reduction),
		a.ignoreIndex), t, target, a.weight)
}

// MSELoss returns the mean squared error between t and target (shapes broadcast). Option:
// WithReduction.
func (t *Tensor) MSELoss(target *Tensor, opts ...LossOption) (*Tensor, error) {
	a, err := lossOptions("MSELoss", opts, "WithReduction")
	if err != nil {
		return nil, err
	}
	return result(capi.Ag_mse_loss(t.c(), target.c(), int(a.reduction)), t, target)
}

// BinaryCrossEntropyWithLogits returns the binary cross-entropy of logits t against target,
// computed stably. Options: WithWeight, WithPosWeight, WithReduction.
func (t *Tensor) BinaryCrossEntropyWithLogits(target *Tensor, opts ...LossOption) (*Tensor, error) {
	a, err := lossOptions("BinaryCrossEntropyWithLogits", opts, "WithWeight", "WithPosWeight",
		"WithReduction")
	if err != nil {
		return nil, err
	}
	return result(capi.Ag_binary_cross_entropy_with_logits(t.c(), target.c(), a.weight.c(),
		a.posWeight.c(), int(a.reduction)), t, target, a.weight, a.posWeight)
}

// Dropout zeroes each element with probability p and scales the others by 1/(1-p) when
// training; otherwise it returns t itself (a new reference). Draws come from g (nil: the
// default generator).
func (t *Tensor) Dropout(g *Generator, p float64, training bool) (*Tensor, error) {
	gh, err := g.use()
	if err != nil {
		return nil, err
	}
	defer runtime.KeepAlive(g)
	return result(capi.Ag_dropout(gh, t.c(), p, training), t)
}

// LayerNorm normalises t over its last len(normalizedShape) dimensions, which must equal
// normalizedShape; weight and bias (shape normalizedShape) may be nil. PyTorch's eps: 1e-5.
func (t *Tensor) LayerNorm(normalizedShape []int64, weight, bias *Tensor, eps float64) (*Tensor, error) {
	if err := live("LayerNorm", operand{"weight", weight}, operand{"bias", bias}); err != nil {
		return nil, err
	}
	return result(capi.Ag_layer_norm(t.c(), normalizedShape, weight.c(), bias.c(), eps),
		t, weight, bias)
}

// Embedding returns the rows of weight [num, dim] at the Int64 indices (any shape): the
// result has shape indices.shape + [dim].
func Embedding(weight, indices *Tensor) (*Tensor, error) {
	return result(capi.Ag_embedding(weight.c(), indices.c()), weight, indices)
}

// ---- in-place operations ----
// Each bumps t's version counter. Under grad mode, an in-place operation on a leaf that
// requires grad (or a view of one) is an ELeaf error.

// AddInPlace adds o to t in place (t += o).
func (t *Tensor) AddInPlace(o *Tensor) error { return done(capi.Ag_add_(t.c(), o.c()), t, o) }

// SubInPlace subtracts o from t in place.
func (t *Tensor) SubInPlace(o *Tensor) error { return done(capi.Ag_sub_(t.c(), o.c()), t, o) }

// MulInPlace multiplies t by o in place.
func (t *Tensor) MulInPlace(o *Tensor) error { return done(capi.Ag_mul_(t.c(), o.c()), t, o) }

// AddScalarInPlace adds s to t in place.
func (t *Tensor) AddScalarInPlace(s float64) error {
	return done(capi.Ag_add_scalar_(t.c(), s), t)
}

// MulScalarInPlace multiplies t by s in place.
func (t *Tensor) MulScalarInPlace(s float64) error {
	return done(capi.Ag_mul_scalar_(t.c(), s), t)
}

// ZeroInPlace fills t with zeros.
func (t *Tensor) ZeroInPlace() error { return done(capi.Ag_zero_(t.c()), t) }

// FillInPlace fills t with value.
func (t *Tensor) FillInPlace(value float64) error { return done(capi.Ag_fill_(t.c(), value), t) }

// CopyFrom copies src (broadcast to t's shape, converted to t's dtype) into t.
func (t *Tensor) CopyFrom(src *Tensor) error { return done(capi.Ag_copy_(t.c(), src.c()), t, src) }
