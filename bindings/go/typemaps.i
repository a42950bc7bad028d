/*
 * go/typemaps.i: how abi/autograd.h crosses into Go. Included by bindings/autograd.i when SWIG
 * runs with -go (the go command runs it for internal/capi/capi.swig); every wrapper of package
 * capi is generated from these rules, none is written by hand. The rules:
 *  - Handles are Go integer types: Tensor, Node, Generator, Optimizer, FunctionCtx (0 is NULL).
 *    Reference counting stays explicit at this level; package autograd owns the references.
 *  - Status: every `int` result is a status, except the functions listed below. A failing C
 *    wrapper reads ag_last_error() at once, inside the same C call: a goroutine may move to
 *    another OS thread between two cgo calls, and the message is per thread. Nothing panics.
 *  - Out-parameters become results: a status function returns Ret, which holds the status,
 *    the message and the values of the out-parameters (a handle, a number or a string, plus a
 *    second handle for ag_max_dim/ag_min_dim/ag_node_next). Arrays whose length the caller
 *    chooses (shape/strides, data buffers, split pieces, ag_grad's results, a custom
 *    function's outputs) are Go slices that C fills in place.
 *  - (pointer, count) inputs are Go slices; an empty slice passes (NULL, 0). int flags
 *    (keepdim, training, amsgrad ...) are bools.
 *  - Go integers wider than the C parameter (enums, int counts, unsigned flags) are checked
 *    on the Go side of the wrapper and refused, never truncated (see "Enums" below).
 *  - Callbacks: hooks and custom functions always go through the fixed C trampolines of
 *    internal/capi/callbacks.c; their userdata is a runtime/cgo.Handle (a uintptr), deleted
 *    by the library through ago_handle_delete when it lets the callback go.
 * Dimensions and indices are 0-based, as in C and Go.
 */

/* int64_t is long on the LP64 platforms Go runs on: tell stdint.i, so casts match. */
#define SWIGWORDSIZE64
%include <stdint.i>

/* Not for Go: an allocator cannot be written in Go (it would run on any thread, at any time,
 * under the library's locks). */
%ignore ag_allocator;
%ignore ag_set_allocator;
/* The header's constants (AG_OK, AG_FLOAT32, AG_RETAIN_GRAPH, AG_VERSION_NUMBER ...) are read
 * by cgo in capi.go instead: SWIG would give #define'd ints the status typemaps below. */
%rename("$ignore", regexmatch$name="^AG_") "";

/* Enums are plain ints in Go (package autograd types them). Go's int has 64 bits and C's
 * enums 32: converted as is, 1<<32 | AG_FLOAT64 became AG_FLOAT64 and made a float64 tensor.
 * So the Go side of the wrapper refuses a value C's int cannot hold, before the call, with the
 * code and message the library gives any other unknown value (swigRangeFail, capi.go). In Go,
 * because there an early return is safe: nothing is allocated yet, while the C side has no
 * failure path before its call (and a string argument malloc'd before it would leak). */
%typemap(gotype) ag_dtype, ag_reduction "int"
%typemap(imtype) ag_dtype, ag_reduction "int"
%typemap(goin) ag_dtype %{
	if $input != int(int32($input)) {
		return swigRangeFail(EDtype, "%s: unknown dtype %d", $input)
	}
	$result = $input
%}
%typemap(goin) ag_reduction %{
	if $input != int(int32($input)) {
		return swigRangeFail(EInval, "%s: %d is not a valid value for reduction", $input)
	}
	$result = $input
%}
%typemap(in) ag_dtype, ag_reduction %{ $1 = ($1_ltype)$input; %}

%insert(runtime) %{
#include <stdbool.h>
%}

%{
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The trampolines of internal/capi/callbacks.c. */
int ago_hook_trampoline(ag_tensor **new_grad, ag_tensor *grad, void *userdata);
int ago_forward_trampoline(ag_function_ctx *ctx, ag_tensor **outputs, size_t n_outputs,
                           ag_tensor *const *inputs, size_t n_inputs, void *userdata);
int ago_backward_trampoline(ag_function_ctx *ctx, ag_tensor **grad_inputs, size_t n_inputs,
                            ag_tensor *const *grad_outputs, size_t n_outputs, void *userdata);
void ago_handle_delete(void *userdata);

/* Passed for the data of a tensor with no elements (the library rejects NULL data). */
static const double ago_no_data[1];

/* A status function's wrapper returns a _gostring_ {p, n}: two words, returned by value, so
 * the status, its message and the out-values cross in the one cgo call with no allocation on
 * success. On success p is the second out-value (a pointer, or NULL) and n the first (a
 * handle, an integer, a double's bits, or a string's length with p its bytes). On failure p is
 * a malloc'd [status byte][message][NUL] and n = -(its length); if that allocation fails, p
 * points at a static status byte and n = -1. Go decodes it in swigRet (internal/capi/capi.go). */
static const char ago_status_bytes[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

static _gostring_ ago_fail(int status)
{
    _gostring_ r;
    const char *msg = ag_last_error();
    size_t len = strlen(msg);
    char *buf = (char *)malloc(len + 2);
    if (!buf) {
        r.p = (char *)&ago_status_bytes[status & 15];
        r.n = -1;
        return r;
    }
    buf[0] = (char)status;
    memcpy(buf + 1, msg, len + 1);
    r.p = buf;
    r.n = -(intgo)(len + 2);
    return r;
}
%}

/* ---------------------------------------------------------------------------------------- */
/* Status results                                                                            */
/* ---------------------------------------------------------------------------------------- */
%typemap(gotype) int "Ret"
%typemap(imtype) int "string"
%typemap(out) int %{
  if ($1 != AG_OK) {
    $result = ago_fail($1);
  } else {
    $result.p = NULL;
    $result.n = 0;
  }
%}
%typemap(goout) int %{ $result = swigRet($input) %}

/* ...but these return plain values. */
%typemap(gotype) int ag_version_number, int ag_get_num_threads, int ag_last_status,
                 int ag_set_error "int"
%typemap(imtype) int ag_version_number, int ag_get_num_threads, int ag_last_status,
                 int ag_set_error "int"
%typemap(out) int ag_version_number, int ag_get_num_threads, int ag_last_status,
              int ag_set_error %{ $result = (intgo)$1; %}
%typemap(goout) int ag_version_number, int ag_get_num_threads, int ag_last_status,
                int ag_set_error ""

%typemap(gotype) int ag_set_grad_enabled, int ag_is_grad_enabled, int ag_set_anomaly_enabled,
                 int ag_is_anomaly_enabled, int ag_set_deferral_enabled,
                 int ag_is_deferral_enabled "bool"
%typemap(imtype) int ag_set_grad_enabled, int ag_is_grad_enabled, int ag_set_anomaly_enabled,
                 int ag_is_anomaly_enabled, int ag_set_deferral_enabled,
                 int ag_is_deferral_enabled "bool"
%typemap(out) int ag_set_grad_enabled, int ag_is_grad_enabled, int ag_set_anomaly_enabled,
              int ag_is_anomaly_enabled, int ag_set_deferral_enabled,
              int ag_is_deferral_enabled %{ $result = $1 != 0; %}
%typemap(goout) int ag_set_grad_enabled, int ag_is_grad_enabled, int ag_set_anomaly_enabled,
                int ag_is_anomaly_enabled, int ag_set_deferral_enabled,
                int ag_is_deferral_enabled ""

/* int parameters: flags are bools, the others plain ints. */
%typemap(gotype) int keepdim, int training, int nesterov, int amsgrad, int set_to_none,
                 int requires_grad, int approximate_tanh, int enabled "bool"
%typemap(imtype) int keepdim, int training, int nesterov, int amsgrad, int set_to_none,
                 int requires_grad, int approximate_tanh, int enabled "bool"
%typemap(in) int keepdim, int training, int nesterov, int amsgrad, int set_to_none,
             int requires_grad, int approximate_tanh, int enabled %{ $1 = $input ? 1 : 0; %}
%typemap(gotype) int n, int status "int"
%typemap(imtype) int n, int status "int"
%typemap(in) int n, int status %{ $1 = (int)$input; %}
/* ...checked first in Go, as the enums above: C's int would truncate them (1<<32 | 3 named
 * AG_ESHAPE). A count that does not fit fails; a status that does not fit is no status, and
 * becomes one no code has (ag_status_name: "AG_UNKNOWN"; ag_set_error: reported as
 * AG_ECALLBACK), since neither function can fail. */
%typemap(goin) int n %{
	if $input != int(int32($input)) {
		return swigRangeFail(EInval, "%s: %d does not fit in C's int", $input)
	}
	$result = $input
%}
%typemap(goin) int status %{
	$result = $input
	if $input != int(int32($input)) {
		$result = -1 << 31
	}
%}
/* unsigned flags are a Go uint (64 bits): bits above C's 32 would be dropped, not refused. */
%typemap(goin) unsigned flags %{
	if $input>>32 != 0 {
		return swigRangeFail(EInval, "%s: unknown flags %#x", $input)
	}
	$result = $input
%}

/* String results are static (ag_version_string, ag_status_name) and copied to Go memory;
 * ag_last_error's is per thread and may change as soon as the C call returns, so it is copied
 * inside the call. */
%typemap(out) const char * %{
  $result.p = (char *)$1;
  $result.n = $1 ? (intgo)strlen($1) : 0;
%}
%typemap(goout) const char * %{ $result = swigCloneString($1) %}
%typemap(out) const char *ag_last_error %{
  {
    size_t len = strlen($1);
    $result.p = (char *)malloc(len ? len : 1);
    $result.n = $result.p ? (intgo)len : 0;
    if ($result.p) memcpy($result.p, $1, len);
  }
%}
%typemap(goout) const char *ag_last_error %{ $result = swigTakeString($1) %}

/* ---------------------------------------------------------------------------------------- */
/* Handles                                                                                   */
/* ---------------------------------------------------------------------------------------- */
%define AGO_HANDLE(CTYPE, GOTYPE)
%typemap(gotype) CTYPE *, const CTYPE * "GOTYPE"
%typemap(imtype) CTYPE *, const CTYPE * "uintptr"
%typemap(goin) CTYPE *, const CTYPE * "$result = uintptr($input)"
%typemap(in) CTYPE *, const CTYPE * %{ $1 = ($1_ltype)$input; %}
%enddef
AGO_HANDLE(ag_tensor, Tensor)
AGO_HANDLE(ag_node, Node)
AGO_HANDLE(ag_generator, Generator)
AGO_HANDLE(ag_optimizer, Optimizer)
AGO_HANDLE(ag_function_ctx, FunctionCtx)

/* ---------------------------------------------------------------------------------------- */
/* Out-parameters carried in the result (see ago_fail above)                                  */
/* ---------------------------------------------------------------------------------------- */
/* argout code runs after the "out" typemap above: `result` is the C status and
 * _swig_go_result the wrapper's return value (SWIG's Go module names it so; in argout $result
 * means `result`). Out-values are stored only on success. */

/* First out-value: Ret.Handle / Ret.Int / Ret.Float. */
%define AGO_OUT_N(DECL, TMPTYPE, STORE)
%typemap(in, numinputs=0) DECL (TMPTYPE tmp = 0) %{ $1 = &tmp; %}
%typemap(argout) DECL %{ if (result == AG_OK) _swig_go_result.n = STORE; %}
%enddef
AGO_OUT_N(ag_tensor **out, ag_tensor *, (intgo)(uintptr_t)tmp$argnum)
AGO_OUT_N(ag_tensor **values_out, ag_tensor *, (intgo)(uintptr_t)tmp$argnum)
AGO_OUT_N(ag_node **out, ag_node *, (intgo)(uintptr_t)tmp$argnum)
AGO_OUT_N(ag_generator **out, ag_generator *, (intgo)(uintptr_t)tmp$argnum)
AGO_OUT_N(ag_optimizer **out, ag_optimizer *, (intgo)(uintptr_t)tmp$argnum)
AGO_OUT_N(int64_t *out, int64_t, (intgo)tmp$argnum)
AGO_OUT_N(int64_t *input_nr_out, int64_t, (intgo)tmp$argnum)
AGO_OUT_N(uint64_t *handle_out, uint64_t, (intgo)tmp$argnum)
AGO_OUT_N(size_t *out, size_t, (intgo)tmp$argnum)
AGO_OUT_N(int *out, int, (intgo)tmp$argnum)
AGO_OUT_N(ag_dtype *out, ag_dtype, (intgo)tmp$argnum)
%typemap(in, numinputs=0) double *out (double tmp = 0) %{ $1 = &tmp; %}
%typemap(argout) double *out %{
  if (result == AG_OK) memcpy(&_swig_go_result.n, &tmp$argnum, sizeof tmp$argnum);
%}

/* Second out-value, a pointer: Ret.Handle2. */
%define AGO_OUT_P(DECL, TMPTYPE)
%typemap(in, numinputs=0) DECL (TMPTYPE tmp = NULL) %{ $1 = &tmp; %}
%typemap(argout) DECL %{ if (result == AG_OK) _swig_go_result.p = (char *)tmp$argnum; %}
%enddef
AGO_OUT_P(ag_tensor **indices_out, ag_tensor *)
AGO_OUT_P(ag_node **fn_out, ag_node *)

/* Strings: Ret.Str. ag_tensor_to_string's is the caller's to free with ag_string_free. */
%typemap(in, numinputs=0) const char **out (const char *tmp = NULL), char **out (char *tmp = NULL)
%{ $1 = ($1_ltype)&tmp; %}
%typemap(argout) const char **out, char **out %{
  if (result == AG_OK) {
    _swig_go_result.p = (char *)tmp$argnum;
    _swig_go_result.n = tmp$argnum ? (intgo)strlen(tmp$argnum) : 0;
  }
%}
%typemap(goargout) const char **out %{ $result = swigOutString($result, false) %}
%typemap(goargout) char **out %{ $result = swigOutString($result, true) %}
/* ag_string_free(char *s) takes back the library's pointer as it came. */
%typemap(gotype) char *s "unsafe.Pointer"
%typemap(imtype) char *s "unsafe.Pointer"
%typemap(in) char *s %{ $1 = (char *)$input; %}
%typemap(freearg) char *s ""

/* ---------------------------------------------------------------------------------------- */
/* Arrays                                                                                    */
/* ---------------------------------------------------------------------------------------- */
/* (pointer, count) inputs from one slice; an empty slice is (NULL, 0). */
%define AGO_IN_SLICE(GOTYPE, ...)
%typemap(gotype) (__VA_ARGS__) "GOTYPE"
%typemap(imtype) (__VA_ARGS__) "GOTYPE"
%typemap(in) (__VA_ARGS__) %{
  $1 = $input.len ? ($1_ltype)$input.array : NULL;
  $2 = (size_t)$input.len;
%}
%enddef
AGO_IN_SLICE([]int64, const int64_t *shape, size_t ndim)
AGO_IN_SLICE([]int64, const int64_t *dims, size_t ndims)
AGO_IN_SLICE([]int64, const int64_t *normalized_shape, size_t ndim)
AGO_IN_SLICE([]Tensor, ag_tensor *const *tensors, size_t n)
AGO_IN_SLICE([]Tensor, ag_tensor *const *params, size_t n)
AGO_IN_SLICE([]Tensor, ag_tensor *const *inputs, size_t n_inputs)

/* Arrays whose length another argument gives: the caller passes matching lengths (package
 * autograd checks them before calling). */
%define AGO_IN_ARRAY(DECL, GOTYPE)
%typemap(gotype) DECL "GOTYPE"
%typemap(imtype) DECL "GOTYPE"
%typemap(in) DECL %{ $1 = $input.len ? ($1_ltype)$input.array : NULL; %}
%enddef
AGO_IN_ARRAY(ag_tensor *const *outputs, []Tensor)
AGO_IN_ARRAY(ag_tensor *const *grad_outputs, []Tensor)
/* Element data: never NULL, even for a tensor with no elements (the library rejects NULL). */
%typemap(gotype) const double *data "[]float64"
%typemap(imtype) const double *data "[]float64"
%typemap(gotype) const void *data "[]byte"
%typemap(imtype) const void *data "[]byte"
%typemap(in) const double *data, const void *data
%{ $1 = $input.array ? ($1_ltype)$input.array : ($1_ltype)ago_no_data; %}

/* Out-arrays: C fills the caller's slice (its length is the count, or at least n_inputs for
 * ag_grad's grads_out). */
%define AGO_OUT_SLICE(GOTYPE, ...)
%typemap(gotype) (__VA_ARGS__) "GOTYPE"
%typemap(imtype) (__VA_ARGS__) "GOTYPE"
%typemap(in) (__VA_ARGS__) %{
  $1 = ($1_ltype)$input.array;
  $2 = ($2_ltype)$input.len;
%}
%typemap(argout) (__VA_ARGS__) ""
%enddef
AGO_OUT_SLICE([]Tensor, ag_tensor **outs, size_t n_outs)
AGO_OUT_SLICE([]Tensor, ag_tensor **outputs, size_t n_outputs)
AGO_OUT_SLICE([]int64, int64_t *out, size_t cap)
AGO_OUT_SLICE([]float64, double *buf, size_t cap)
AGO_OUT_SLICE([]int64, int64_t *buf, size_t cap)
AGO_OUT_SLICE([]byte, void *buf, size_t nbytes)
%typemap(gotype) ag_tensor **grads_out "[]Tensor"
%typemap(imtype) ag_tensor **grads_out "[]Tensor"
%typemap(in) ag_tensor **grads_out %{ $1 = (ag_tensor **)$input.array; %}

/* ---------------------------------------------------------------------------------------- */
/* Callbacks                                                                                  */
/* ---------------------------------------------------------------------------------------- */
%typemap(in, numinputs=0) ag_tensor_hook_fn fn %{ $1 = ago_hook_trampoline; %}
%typemap(in, numinputs=0) ag_function_forward_fn forward %{ $1 = ago_forward_trampoline; %}
%typemap(in, numinputs=0) ag_function_backward_fn backward %{ $1 = ago_backward_trampoline; %}
%typemap(in, numinputs=0) void (*free_userdata)(void *userdata) %{ $1 = ago_handle_delete; %}
%typemap(gotype) void *userdata "uintptr"
%typemap(imtype) void *userdata "uintptr"
%typemap(in) void *userdata %{ $1 = (void *)$input; %}
