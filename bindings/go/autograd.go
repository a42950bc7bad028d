// Package autograd is the Go binding of libautograd, a reverse-mode automatic differentiation
// engine with PyTorch's semantics: n-d tensors, graphs recorded as operations run, and a
// backward pass giving bitwise-identical gradients for any thread count.
//
//	x, _ := autograd.Scalar(2, autograd.Float32)
//	x.SetRequiresGrad(true)
//	y, _ := x.Mul(x)          // y = x * x
//	z, _ := y.MulScalar(2)    // z = 2y + 5
//	z, _ = z.AddScalar(5)
//	z.Backward()              // dz/dx = 4x
//	g, _ := x.Grad()
//	fmt.Println(g)            // tensor(8.)
//
// # Errors
//
// Every operation returns (result, error); nothing panics on a mistake of the caller. An
// error from the library is an *Error carrying the library's status Code and its message,
// e.g. "ag_matmul: shapes [2, 3] and [4, 5] cannot be multiplied"; test the code with
// errors.Is(err, autograd.EShape). A nil *Tensor is the C library's NULL: passing one where a
// tensor is required is an EInval error, and methods called on a nil *Tensor return errors
// rather than panicking. For terse math, a Tape keeps the first error and lets a chain of
// operations run on without checks (see Tape).
//
// # Memory
//
// A Tensor (and a Node, Optimizer, Generator) holds one reference to a library object.
// Release drops it at once; otherwise a cleanup registered with runtime.AddCleanup drops it
// after the Go object becomes unreachable (for a Tensor, the cleanup is attached at the first
// collection after the Tensor was made, so one made and dropped between two collections is
// released at the second: see cleanup.go). Large or many tensors should be released
// explicitly: the Go collector does not see the memory held by the library. Release must not
// race with another use of the same Tensor; using a released Tensor is an error, not a crash,
// also as an optional argument where nil means none (a released bias is not taken for nil).
//
// # Goroutines
//
// Independent graphs may be built and differentiated on many goroutines at once. One tensor
// may be read concurrently, but writing it (in-place operations, optimizer steps) while
// another goroutine reads it is a data race, as in PyTorch. Grad mode and anomaly mode are
// per OS thread in the library while goroutines move between threads, so they are only
// changed for the duration of a function run on a locked thread: NoGrad, EnableGrad,
// DetectAnomaly. Hooks and custom functions may be called on the library's worker threads,
// several at once.
//
// # Versions
//
// The package checks at initialization that the loaded libautograd has the major version it
// was built against and a minor version at least as recent. If it does not, every function that would reach the
// library (the constructors: FromSlice, Zeros, NewGenerator, ..., and the settings) returns
// an error wrapping ErrLibraryVersion, with both versions in the message, instead of calling
// it; see CheckVersion. Nothing panics at initialization.
//
// Dimensions and indices are 0-based and may be negative (counting from the end), as in
// PyTorch.
package autograd

import (
	"errors"
	"fmt"
	"math"
	"strconv"

	"libautograd.dev/autograd/internal/capi"
)

// Code is a status of the library (the C header's AG_E* values). It is an error, so that
// errors.Is(err, autograd.EShape) tests an error's code.
type Code int

// The library's status codes.
const (
	OK        Code = capi.OK        // AG_OK: no error
	EInval    Code = capi.EInval    // AG_EINVAL: invalid argument (NULL handle, bad option, negative size)
	EDType    Code = capi.EDtype    // AG_EDTYPE: wrong dtype
	EShape    Code = capi.EShape    // AG_ESHAPE: shapes that do not broadcast or multiply
	ERange    Code = capi.ERange    // AG_ERANGE: dimension or index out of range
	ENoGrad   Code = capi.ENoGrad   // AG_ENOGRAD: backward/grad on a tensor that does not require grad
	EGraph    Code = capi.EGraph    // AG_EGRAPH: backward through a graph whose saved tensors were freed
	EVersion  Code = capi.EVersion  // AG_EVERSION: a tensor saved for backward was modified in place
	ELeaf     Code = capi.ELeaf     // AG_ELEAF: in-place operation on a leaf that requires grad
	ENoMem    Code = capi.ENoMem    // AG_ENOMEM: allocation failed
	EAnomaly  Code = capi.EAnomaly  // AG_EANOMALY: anomaly mode found NaN or Inf
	ECallback Code = capi.ECallback // AG_ECALLBACK: a hook or custom function failed
	EInternal Code = capi.EInternal // AG_EINTERNAL: a bug in the library
)

// String returns the C name of the code, e.g. "AG_ESHAPE".
func (c Code) String() string { return capi.Ag_status_name(int(c)) }

// Error returns the C name of the code.
func (c Code) Error() string { return c.String() }

// Error is a failure reported by the library: its status code and the message it recorded,
// which names the function and the offending values.
type Error struct {
	Code    Code
	Message string
}

// Error returns the library's message.
func (e *Error) Error() string { return e.Message }

// Is reports whether target is e's Code, so that errors.Is(err, autograd.EShape) works.
func (e *Error) Is(target error) bool {
	c, ok := target.(Code)
	return ok && c == e.Code
}

// errorf makes an Error detected on the Go side (a precondition of the C call that a Go
// caller could get wrong), worded as the library words its own.
func errorf(code Code, format string, args ...any) error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// errOf turns a call's Ret into an error.
func errOf(r capi.Ret) error {
	if r.OK() {
		return nil
	}
	return &Error{Code: Code(r.Status), Message: r.Msg}
}

// ErrLibraryVersion is wrapped by the error every constructor returns when the loaded
// libautograd is incompatible with the one this package was built against.
var ErrLibraryVersion = errors.New("autograd: incompatible libautograd")

// versionErr is set once at initialization: nil, or why the library is refused.
var versionErr = checkVersion(capi.Ag_version_number(), capi.VersionNumber)

func checkVersion(loaded, built int) error {
	// As abi/autograd.h asks: the same major version, and a minor version at least the one
	// built against (patch releases do not change the ABI).
	if loaded/10000 == built/10000 && loaded/100%100 >= built/100%100 {
		return nil
	}
	return fmt.Errorf("%w: built against %s, loaded %s (%s); the major version must match and "+
		"the minor version must not be older", ErrLibraryVersion, versionString(built),
		versionString(loaded), capi.Ag_version_string())
}

func versionString(n int) string {
	return strconv.Itoa(n/10000) + "." + strconv.Itoa(n/100%100) + "." + strconv.Itoa(n%100)
}

// CheckVersion reports whether the loaded libautograd can be used: nil, or an error
// wrapping ErrLibraryVersion.
func CheckVersion() error { return versionErr }

// Version returns the loaded library's version, e.g. "0.1.0".
func Version() string { return capi.Ag_version_string() }

// DType is an element type.
type DType int

// The element types. Float32 and Float64 are differentiable; Int64 holds indices and labels;
// Bool holds comparison results and masks.
const (
	Float32 DType = capi.Float32
	Float64 DType = capi.Float64
	Int64   DType = capi.Int64
	Bool    DType = capi.Bool
	// NoDType is what DType reports for a nil or released tensor.
	NoDType DType = -1
)

// String returns the dtype's name as PyTorch spells it ("float32").
func (d DType) String() string {
	switch d {
	case Float32:
		return "float32"
	case Float64:
		return "float64"
	case Int64:
		return "int64"
	case Bool:
		return "bool"
	case NoDType:
		return "no dtype"
	}
	return "DType(" + strconv.Itoa(int(d)) + ")"
}

// size is the size of one element in bytes.
func (d DType) size() int {
	switch d {
	case Float32:
		return 4
	case Float64, Int64:
		return 8
	}
	return 1
}

// Reduction says how a loss reduces its elements.
type Reduction int

// The reductions, with PyTorch's names ("none", "mean", "sum").
const (
	ReduceNone Reduction = capi.ReductionNone
	ReduceMean Reduction = capi.ReductionMean
	ReduceSum  Reduction = capi.ReductionSum
)

// SetNumThreads sets the number of threads kernels and backward use, for the whole process;
// 0 restores the default (OMP_NUM_THREADS, else the number of cores). Results are bitwise
// identical for every thread count.
func SetNumThreads(n int) error {
	if versionErr != nil {
		return versionErr
	}
	if n < math.MinInt32 || n > math.MaxInt32 { // (C's int would truncate it: 1<<32 + 3 set 3)
		return errorf(EInval, "ag_set_num_threads: thread count %d is outside [0, 1024]", n)
	}
	return errOf(capi.Ag_set_num_threads(n))
}

// SetDeferralEnabled turns deferred kernels on or off for the whole process (on by default)
// and returns the previous setting. With more than one thread, ops may queue their kernels and
// run them when a result is needed, independent ones side by side; values, errors and
// gradients are those of eager execution (see ag_set_deferral_enabled in autograd.h).
func SetDeferralEnabled(on bool) bool {
	if versionErr != nil {
		return false
	}
	return capi.Ag_set_deferral_enabled(on)
}

// IsDeferralEnabled reports whether deferred kernels are on (false if the library was refused,
// see CheckVersion).
func IsDeferralEnabled() bool {
	if versionErr != nil {
		return false
	}
	return capi.Ag_is_deferral_enabled()
}

// Synchronize runs every queued kernel (see SetDeferralEnabled) and returns once they have run.
// Values never need it (reading one waits for it): it is for timing, and for an exact memory
// reading after releasing tensors that queued kernels still used.
func Synchronize() {
	if versionErr != nil {
		return
	}
	capi.Ag_synchronize()
}

// NumThreads returns the number of threads kernels and backward use (0 if the library was
// refused, see CheckVersion).
func NumThreads() int {
	if versionErr != nil {
		return 0
	}
	return capi.Ag_get_num_threads()
}
