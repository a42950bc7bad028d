// tensor.go: Tensor, the handle of a library tensor: creation, release, its data and
// geometry, and the conversion of C results into (*Tensor, error).

package autograd

import (
	"runtime"
	"sync/atomic"
	"unsafe"

	"libautograd.dev/autograd/internal/capi"
)

// Tensor is an n-d tensor of the library: a strided view of a reference-counted storage,
// plus autograd metadata (requires_grad, grad_fn, .grad). A *Tensor owns one reference to
// it; see Release. The nil *Tensor stands for "no tensor" (C's NULL).
type Tensor struct {
	// h is the handle, with armedBit set once a cleanup is attached (cleanup.go); 0 once
	// released.
	h atomic.Uintptr
	// cell is the armed tensor's cell, which its cleanup owns (cleanup.go).
	cell *cell
	// No padding. The Tensor was padded to 128 bytes when Release stopped the cleanup and
	// cleanups were attached in address order: runtime.AddCleanup and Cleanup.Stop walk the
	// span's address-sorted list of cleanups, so fewer tensors per span made both cheaper.
	// Now Release never stops a cleanup, and armPending attaches them last-made first (most
	// insertions stop near the head of the list); the 112 bytes of padding cost more in
	// allocation and collections than they saved (the scalar workload from Go: 3.16 -> 2.66
	// times C's time per node, alternated runs). The pointer field also keeps the Tensor out
	// of the tiny allocator (pointer-free objects under 16 bytes), whose objects may share a
	// block and then never run their cleanups.
}

func releaseTensor(h uintptr) { capi.Ag_tensor_release(capi.Tensor(h)) }

// newTensor takes ownership of a new reference (nil for 0).
func newTensor(h uintptr) *Tensor {
	if h == 0 {
		return nil
	}
	t := &Tensor{}
	// A plain store: t is not shared yet (atomic.Uintptr.Store is an XCHG on amd64, a
	// locked instruction, and this runs for every tensor made).
	*(*uintptr)(unsafe.Pointer(&t.h)) = h
	track(t) // its cleanup comes after the next collection, if it is still unreleased
	return t
}

// borrowTensor wraps a reference the library lends (to a callback) as a Tensor of its own.
func borrowTensor(h capi.Tensor) *Tensor {
	if h == 0 || !capi.Ag_tensor_retain(h).OK() {
		return nil
	}
	return newTensor(uintptr(h))
}

// c returns the handle to pass to C (0 for nil or released).
func (t *Tensor) c() capi.Tensor {
	if t == nil {
		return 0
	}
	return capi.Tensor(t.h.Load() &^ armedBit)
}

// Release drops the tensor's reference now rather than at garbage collection. The tensor
// must not be used afterwards (doing so is an EInval error). That includes an optional
// argument, where nil means none (the bias of Linear, a loss's WithWeight, the Grad of
// BackwardWith, SetGrad's g): a released tensor there is an EInval error too, not taken for
// nil. Releasing twice, or a nil tensor, does nothing. Tensors made from this one (results,
// views, gradients) stay valid.
func (t *Tensor) Release() {
	if t == nil {
		return
	}
	if h := t.h.Swap(0); h&armedBit != 0 {
		t.cell.drop() // the cleanup, when it runs, finds the cell empty (cleanup.go)
	} else if h != 0 {
		releaseTensor(h)
	}
}

// result turns the Ret of a C call that made one tensor into (*Tensor, error). The operands
// are passed here so that they stay reachable, and their cleanups cannot release them, until
// the C call has returned.
func result(r capi.Ret, operands ...*Tensor) (*Tensor, error) {
	for _, o := range operands {
		runtime.KeepAlive(o)
	}
	if !r.OK() {
		return nil, failure(r, operands...)
	}
	return newTensor(r.Handle()), nil
}

// done is result for calls that make nothing.
func done(r capi.Ret, operands ...*Tensor) error {
	for _, o := range operands {
		runtime.KeepAlive(o)
	}
	if !r.OK() {
		return failure(r, operands...)
	}
	return nil
}

// operand names a tensor argument for live.
type operand struct {
	name string
	t    *Tensor
}

// live refuses released tensors among the optional arguments of a call, before it is made.
// A released tensor passes to C as NULL, which the library refuses where a tensor is
// required (failure then says it was released) but takes as "none" where one is optional:
// the call would succeed with another meaning (a Linear without its bias, a loss without its
// weights, SetGrad dropping .grad). A nil *Tensor stays "none".
func live(fn string, args ...operand) error {
	for _, a := range args {
		if a.t.released() {
			return usedAfterRelease(fn, a.name)
		}
	}
	return nil
}

// released reports whether t is a released tensor (not nil, which means none).
func (t *Tensor) released() bool { return t != nil && t.h.Load() == 0 }

// usedAfterRelease is live's error: fn's argument name is a released tensor.
func usedAfterRelease(fn, name string) error {
	return errorf(EInval, "%s: %s was released (a tensor was used after Release)", fn, name)
}

// failure is the error of a failed call; a NULL that came from a released tensor says so.
func failure(r capi.Ret, operands ...*Tensor) error {
	err := &Error{Code: Code(r.Status), Message: r.Msg}
	if err.Code == EInval {
		for _, o := range operands {
			if o != nil && o.h.Load() == 0 {
				err.Message += " (a tensor was used after Release)"
				break
			}
		}
	}
	return err
}

func handles(ts []*Tensor) []capi.Tensor {
	hs := make([]capi.Tensor, len(ts))
	for i, t := range ts {
		hs[i] = t.c()
	}
	return hs
}

func keepAll(ts []*Tensor) {
	for _, t := range ts {
		runtime.KeepAlive(t)
	}
}

// newTensors wraps the handles C wrote into hs.
func newTensors(hs []capi.Tensor) []*Tensor {
	ts := make([]*Tensor, len(hs))
	for i, h := range hs {
		ts[i] = newTensor(uintptr(h))
	}
	return ts
}

// ---- creation ----

// Element is a Go element type with a dtype: float32, float64, int64 or bool.
type Element interface {
	float32 | float64 | int64 | bool
}

func dtypeOf[T Element]() DType {
	var z T
	switch any(z).(type) {
	case float32:
		return Float32
	case float64:
		return Float64
	case int64:
		return Int64
	}
	return Bool
}

// checkData is the memory-safety precondition of the creation calls: data must hold exactly
// prod(shape) elements. Negative sizes are left to the library to report.
func checkData(fn string, n int, shape []int64) error {
	numel := int64(1)
	for _, s := range shape {
		if s < 0 {
			return nil
		}
		if s != 0 && numel > (1<<62)/s {
			return errorf(EInval, "%s: shape %v is too large", fn, shape)
		}
		numel *= s
	}
	if int64(n) != numel {
		return errorf(EShape, "%s: %d values given for shape %v, which holds %d", fn, n,
			shape, numel)
	}
	return nil
}

// FromSlice creates a contiguous tensor holding a copy of data, with T's dtype and the given
// shape (row-major). Without a shape the tensor is 1-d; an empty shape with one value makes
// a 0-d tensor.
func FromSlice[T Element](data []T, shape ...int64) (*Tensor, error) {
	if versionErr != nil {
		return nil, versionErr
	}
	if shape == nil {
		shape = []int64{int64(len(data))}
	}
	if err := checkData("FromSlice", len(data), shape); err != nil {
		return nil, err
	}
	dt := dtypeOf[T]()
	b := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(data))), len(data)*dt.size())
	return result(capi.Ag_tensor_from_data(b, int(dt), shape))
}

// FromFloat64s creates a tensor of dtype from float64 values, converted (int64 values must
// be integral; for Bool, nonzero is true), like ag_tensor_from_f64.
func FromFloat64s(data []float64, dtype DType, shape ...int64) (*Tensor, error) {
	if versionErr != nil {
		return nil, versionErr
	}
	if shape == nil {
		shape = []int64{int64(len(data))}
	}
	if err := checkData("FromFloat64s", len(data), shape); err != nil {
		return nil, err
	}
	return result(capi.Ag_tensor_from_f64(data, int(dtype), shape))
}

// Scalar creates a 0-d tensor holding value converted to dtype.
func Scalar(value float64, dtype DType) (*Tensor, error) {
	if versionErr != nil {
		return nil, versionErr
	}
	return result(capi.Ag_tensor_scalar(value, int(dtype)))
}

// ScalarRequiresGrad creates a 0-d leaf holding value converted to dtype that requires grad
// or not, in one call (torch.tensor(value, requires_grad=True)): Scalar followed by
// SetRequiresGrad, with one crossing into the library instead of two. An integer or bool
// dtype cannot require grad (EDType); nothing is created then.
func ScalarRequiresGrad(value float64, dtype DType, requiresGrad bool) (*Tensor, error) {
	if versionErr != nil {
		return nil, versionErr
	}
	return result(capi.Ag_tensor_scalar_requires_grad(value, int(dtype), requiresGrad))
}

// Empty creates a tensor with unspecified contents.
func Empty(dtype DType, shape ...int64) (*Tensor, error) {
	if versionErr != nil {
		return nil, versionErr
	}
	return result(capi.Ag_empty(int(dtype), shape))
}

// Zeros creates a tensor of zeros.
func Zeros(dtype DType, shape ...int64) (*Tensor, error) {
	if versionErr != nil {
		return nil, versionErr
	}
	return result(capi.Ag_zeros(int(dtype), shape))
}

// Ones creates a tensor of ones.
func Ones(dtype DType, shape ...int64) (*Tensor, error) {
	if versionErr != nil {
		return nil, versionErr
	}
	return result(capi.Ag_ones(int(dtype), shape))
}

// Full creates a tensor filled with value.
func Full(dtype DType, value float64, shape ...int64) (*Tensor, error) {
	if versionErr != nil {
		return nil, versionErr
	}
	return result(capi.Ag_full(int(dtype), shape, value))
}

// Arange creates the 1-d tensor [start, start+step, ...) stopping before end, like
// torch.arange.
func Arange(dtype DType, start, end, step float64) (*Tensor, error) {
	if versionErr != nil {
		return nil, versionErr
	}
	return result(capi.Ag_arange(int(dtype), start, end, step))
}

// Eye creates an n x m matrix with ones on the diagonal.
func Eye(dtype DType, n, m int64) (*Tensor, error) {
	if versionErr != nil {
		return nil, versionErr
	}
	return result(capi.Ag_eye(int(dtype), n, m))
}

// Rand creates uniform samples in [0, 1) (float dtypes) drawn from g (nil: the package's
// default generator, see ManualSeed).
func Rand(g *Generator, dtype DType, shape ...int64) (*Tensor, error) {
	gh, err := g.use()
	if err != nil {
		return nil, err
	}
	defer runtime.KeepAlive(g)
	return result(capi.Ag_rand(gh, int(dtype), shape))
}

// Randn creates standard normal samples (float dtypes) drawn from g (nil: the default).
func Randn(g *Generator, dtype DType, shape ...int64) (*Tensor, error) {
	gh, err := g.use()
	if err != nil {
		return nil, err
	}
	defer runtime.KeepAlive(g)
	return result(capi.Ag_randn(gh, int(dtype), shape))
}

// Randint creates uniform integers in [low, high) (any dtype but Bool) drawn from g (nil:
// the default).
func Randint(g *Generator, low, high int64, dtype DType, shape ...int64) (*Tensor, error) {
	gh, err := g.use()
	if err != nil {
		return nil, err
	}
	defer runtime.KeepAlive(g)
	return result(capi.Ag_randint(gh, low, high, int(dtype), shape))
}

// EmptyLike creates an uninitialised tensor with t's shape and dtype.
func EmptyLike(t *Tensor) (*Tensor, error) { return result(capi.Ag_empty_like(t.c()), t) }

// ZerosLike creates a tensor of zeros with t's shape and dtype.
func ZerosLike(t *Tensor) (*Tensor, error) { return result(capi.Ag_zeros_like(t.c()), t) }

// OnesLike creates a tensor of ones with t's shape and dtype.
func OnesLike(t *Tensor) (*Tensor, error) { return result(capi.Ag_ones_like(t.c()), t) }

// FullLike creates a tensor filled with value, with t's shape and dtype.
func FullLike(t *Tensor, value float64) (*Tensor, error) {
	return result(capi.Ag_full_like(t.c(), value), t)
}

// RandLike creates uniform samples in [0, 1) with t's shape and dtype, drawn from g (nil:
// the default).
func RandLike(g *Generator, t *Tensor) (*Tensor, error) {
	gh, err := g.use()
	if err != nil {
		return nil, err
	}
	defer runtime.KeepAlive(g)
	return result(capi.Ag_rand_like(gh, t.c()), t)
}

// RandnLike creates standard normal samples with t's shape and dtype, drawn from g (nil:
// the default).
func RandnLike(g *Generator, t *Tensor) (*Tensor, error) {
	gh, err := g.use()
	if err != nil {
		return nil, err
	}
	defer runtime.KeepAlive(g)
	return result(capi.Ag_randn_like(gh, t.c()), t)
}

// ---- queries ----
// Queries that can only fail on a NULL handle return zero values for a nil or released
// tensor instead of an error (DType returns NoDType, not Float32).

// DType returns the element type, or NoDType for a nil or released tensor.
func (t *Tensor) DType() DType {
	r := capi.Ag_tensor_dtype(t.c())
	runtime.KeepAlive(t)
	if !r.OK() {
		return NoDType
	}
	return DType(r.Int())
}

// Dim returns the number of dimensions (0 for a scalar).
func (t *Tensor) Dim() int {
	r := capi.Ag_tensor_ndim(t.c())
	runtime.KeepAlive(t)
	return int(r.Int())
}

// Numel returns the number of elements.
func (t *Tensor) Numel() int64 {
	r := capi.Ag_tensor_numel(t.c())
	runtime.KeepAlive(t)
	return r.Int()
}

// Shape returns the sizes of the dimensions ([] for a scalar; nil for a nil or released
// tensor).
func (t *Tensor) Shape() []int64 {
	n := t.Dim()
	shape := make([]int64, n)
	r := capi.Ag_tensor_shape(shape, t.c())
	runtime.KeepAlive(t)
	if !r.OK() {
		return nil
	}
	return shape
}

// Strides returns the strides, in elements.
func (t *Tensor) Strides() []int64 {
	n := t.Dim()
	strides := make([]int64, n)
	r := capi.Ag_tensor_strides(strides, t.c())
	runtime.KeepAlive(t)
	if !r.OK() {
		return nil
	}
	return strides
}

// Size returns the size of dimension dim (negative counts from the end).
func (t *Tensor) Size(dim int64) (int64, error) {
	r := capi.Ag_tensor_size(t.c(), dim)
	return r.Int(), done(r, t)
}

// StorageOffset returns the offset of the first element in the storage, in elements.
func (t *Tensor) StorageOffset() int64 {
	r := capi.Ag_tensor_storage_offset(t.c())
	runtime.KeepAlive(t)
	return r.Int()
}

// IsContiguous reports whether t is laid out contiguously in row-major order.
func (t *Tensor) IsContiguous() bool {
	r := capi.Ag_tensor_is_contiguous(t.c())
	runtime.KeepAlive(t)
	return r.Int() != 0
}

// SharesStorage reports whether t and o are views of the same storage.
func (t *Tensor) SharesStorage(o *Tensor) bool {
	r := capi.Ag_tensor_shares_storage(t.c(), o.c())
	runtime.KeepAlive(t)
	runtime.KeepAlive(o)
	return r.Int() != 0
}

// Version returns the version counter shared by t and its views; every in-place change
// bumps it.
func (t *Tensor) Version() int64 {
	r := capi.Ag_tensor_version(t.c())
	runtime.KeepAlive(t)
	return r.Int()
}

// String formats t as PyTorch prints it, e.g. "tensor(2., requires_grad=True)". A nil
// tensor prints as "<nil>"; a failure prints as "<error: message>".
func (t *Tensor) String() string {
	if t == nil {
		return "<nil>"
	}
	if t.c() == 0 {
		return "<released tensor>"
	}
	r := capi.Ag_tensor_to_string(t.c())
	runtime.KeepAlive(t)
	if !r.OK() {
		return "<error: " + r.Msg + ">"
	}
	return r.Str()
}

// ---- values ----

// Item returns the value of a one-element tensor, converted to float64.
func (t *Tensor) Item() (float64, error) {
	r := capi.Ag_tensor_item(t.c())
	return r.Float(), done(r, t)
}

// ItemInt64 returns the value of a one-element tensor, converted to int64 (floats truncate
// toward zero).
func (t *Tensor) ItemInt64() (int64, error) {
	r := capi.Ag_tensor_item_int64(t.c())
	return r.Int(), done(r, t)
}

// memoryLimit bounds what one allocation of the package may ask for: the machine's physical
// memory, and never more than the Go runtime's own limit on one allocation (2^48 on amd64).
func memoryLimit() uint64 {
	limit := physicalMemory()
	if limit == 0 || limit > 1<<47 {
		limit = 1 << 47
	}
	return limit
}

// outBuf makes the slice that a copy of t's elements goes into. A view can have far more
// elements than memory behind it (an expanded tensor has stride 0), and a Go allocation that
// cannot be satisfied is a fatal error, not a panic or an error: so a copy larger than the
// machine's memory, which could never succeed, is refused with ENoMem first.
func outBuf[T any](fn string, t *Tensor) ([]T, error) {
	n := max(t.Numel(), 0)
	size := uint64(unsafe.Sizeof(*new(T)))
	if limit := memoryLimit(); uint64(n) > limit/size {
		return nil, errorf(ENoMem, "%s: the tensor has %d elements of %d bytes, more than this "+
			"machine's memory (%d bytes)", fn, n, size, limit)
	}
	return make([]T, n), nil
}

// Float64s returns a copy of the elements converted to float64, in row-major order.
func (t *Tensor) Float64s() ([]float64, error) {
	buf, err := outBuf[float64]("Float64s", t)
	if err != nil {
		return nil, err
	}
	return buf, done(capi.Ag_tensor_copy_f64(buf, t.c()), t)
}

// Int64s returns a copy of the elements converted to int64 (floats truncate), in row-major
// order.
func (t *Tensor) Int64s() ([]int64, error) {
	buf, err := outBuf[int64]("Int64s", t)
	if err != nil {
		return nil, err
	}
	return buf, done(capi.Ag_tensor_copy_i64(buf, t.c()), t)
}

// Data returns a copy of t's elements in row-major order; T must be t's element type.
func Data[T Element](t *Tensor) ([]T, error) {
	dt := dtypeOf[T]()
	if t.c() != 0 && t.DType() != dt {
		return nil, errorf(EDType, "Data: the tensor holds %v, not %v", t.DType(), dt)
	}
	buf, err := outBuf[T]("Data", t)
	if err != nil {
		return nil, err
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(buf))), len(buf)*dt.size())
	return buf, done(capi.Ag_tensor_copy_data(b, t.c()), t)
}
