/*
 * autograd.h: the one public header of libautograd, and its reference manual.
 *
 * libautograd is a reverse-mode automatic differentiation engine with PyTorch's semantics:
 * n-d tensors, graphs recorded as operations run, and a backward pass that runs independent
 * graph nodes concurrently on an OpenMP team while giving bitwise-identical gradients for any
 * thread count.
 *
 * Conventions (they hold for every function below unless its comment says otherwise)
 * -----------------------------------------------------------------------------------
 * Names      ag_<noun>_<verb> for object functions (ag_tensor_release), ag_<op> for operations.
 * Status     Every fallible function returns an int status: AG_OK (0) on success, or one of the
 *            AG_E* codes. On failure a message naming the function and the offending values is
 *            stored for the calling thread (ag_last_error), and no object visible to the caller
 *            has changed: out-parameters are left as they were, no reference is taken or
 *            dropped, no tensor, gradient or optimizer state is modified. User mistakes never
 *            abort, exit or print.
 * Ownership  ONE RULE: a handle that comes back through an out-parameter is a new reference
 *            owned by the caller, who releases it exactly once (ag_tensor_release,
 *            ag_node_release, ...). Handles passed in are borrowed: the library takes its own
 *            reference to whatever it keeps. Reference counts are atomic, so handles may cross
 *            threads and may be released from any thread (e.g. a garbage collector's).
 * Arguments  Out-parameters first, inputs after, callback userdata last. Dimensions may be
 *            negative and count from the end (-1 is the last dimension), as in PyTorch.
 *            Shapes are given as (const int64_t *shape, size_t ndim).
 * Threads    Objects may be used from several threads; one tensor may be read concurrently,
 *            but writing a tensor (in-place ops, optimizer steps, and its autograd settings:
 *            ag_tensor_set_requires_grad, ag_tensor_set_grad) while another thread reads it
 *            (an op taking it as an input) is a data race, as in PyTorch: whether such an
 *            op records the tensor's part of the graph is then a matter of timing. Grad
 *            mode and anomaly mode are per thread; the thread count and the allocator are per
 *            process. A child made by fork() after the library ran work on several threads
 *            runs on one thread (ag_get_num_threads() is 1 there, and n = 0 means 1): GCC's
 *            OpenMP runtime cannot start a thread team in a forked child of a process that
 *            had one (the first parallel op would hang, as in any libgomp program). With an
 *            OpenMP runtime that can, ag_set_num_threads raises it again. A child of a
 *            process that never did keeps the default.
 * Dtypes     float32 and float64 are differentiable; int64 holds indices and labels; bool holds
 *            comparison results and masks. Mixed dtypes follow PyTorch's type promotion.
 *
 * This header compiles as C11 and as C++.
 */
#ifndef AUTOGRAD_H
#define AUTOGRAD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* Versions                                                                                   */
/* ------------------------------------------------------------------------------------------ */

/** Compile-time version of this header. The SONAME carries the major version
 *  (libautograd.so.0); an incompatible change bumps it. */
#define AG_VERSION_MAJOR 0
#define AG_VERSION_MINOR 1
#define AG_VERSION_PATCH 0
/** MAJOR * 10000 + MINOR * 100 + PATCH, as sqlite3's SQLITE_VERSION_NUMBER. */
#define AG_VERSION_NUMBER (AG_VERSION_MAJOR * 10000 + AG_VERSION_MINOR * 100 + AG_VERSION_PATCH)
#define AG_VERSION_STRING "0.1.0"

/** Every public function carries this macro; everything else in the library is hidden. */
#if defined(_WIN32)
#  define AG_API __declspec(dllimport)
#elif defined(__GNUC__)
#  define AG_API __attribute__((visibility("default")))
#else
#  define AG_API
#endif

/** Returns AG_VERSION_NUMBER of the library actually loaded. Bindings compare it with the
 *  AG_VERSION_NUMBER they were compiled against and refuse a library with another major
 *  version or an older minor version. Never fails. */
AG_API int ag_version_number(void);

/** Returns the loaded library's version as a static string such as "0.1.0". Never fails. */
AG_API const char *ag_version_string(void);

/* ------------------------------------------------------------------------------------------ */
/* Status codes and errors                                                                    */
/* ------------------------------------------------------------------------------------------ */

/** Status codes. Values are part of the ABI and never change meaning. */
enum {
    AG_OK = 0,
    AG_EINVAL = 1,     /**< invalid argument: NULL handle, bad option, negative size ... */
    AG_EDTYPE = 2,     /**< wrong dtype: int64 asked to require grad, float index ... */
    AG_ESHAPE = 3,     /**< shapes that don't broadcast or multiply; non-scalar root
                            without a gradient; size mismatch */
    AG_ERANGE = 4,     /**< dimension or index out of range; buffer too small */
    AG_ENOGRAD = 5,    /**< backward/grad on a tensor that does not require grad */
    AG_EGRAPH = 6,     /**< backward through a graph whose saved tensors were freed */
    AG_EVERSION = 7,   /**< a tensor saved for backward was modified by an in-place op */
    AG_ELEAF = 8,      /**< in-place op on a leaf that requires grad (or on a view of one);
                            requires_grad changed on a non-leaf; backward reaching a leaf
                            that an in-place op has since made a non-leaf */
    AG_ENOMEM = 9,     /**< allocation failed */
    AG_EANOMALY = 10,  /**< anomaly mode: a backward function produced NaN or Inf */
    AG_ECALLBACK = 11, /**< a user callback (hook, custom function) reported failure with a
                            status that is not one of these codes (a callback that returns one
                            of these codes, e.g. forwarding AG_EVERSION from a library call,
                            has it reported as is) */
    AG_EINTERNAL = 12  /**< a bug in the library; please report it */
};

/** Returns the message of the last failure on the calling thread, e.g.
 *  "ag_matmul: shapes [2, 3] and [4, 5] cannot be multiplied". The string stays valid until
 *  the next failing call on this thread. Returns "" when no call has failed. Never fails. */
AG_API const char *ag_last_error(void);

/** Returns the status of the last failure on the calling thread (AG_OK if none). */
AG_API int ag_last_status(void);

/** Forgets the calling thread's last failure. */
AG_API void ag_clear_error(void);

/** Returns a static name for a status code ("AG_ESHAPE"), or "AG_UNKNOWN". Never fails. */
AG_API const char *ag_status_name(int status);

/** Records a failure on the calling thread, as library functions do. For user callbacks
 *  (hooks, custom functions): set a message, then return the status; the library reports
 *  that status if it is one of the AG_E* codes, else AG_ECALLBACK, with this message
 *  appended to its own. Returns status. AG_OK is no failure: it clears the thread's last
 *  failure, as ag_clear_error, and records nothing. */
AG_API int ag_set_error(int status, const char *message);

/* ------------------------------------------------------------------------------------------ */
/* Process-wide settings                                                                      */
/* ------------------------------------------------------------------------------------------ */

/** A custom allocator. alloc returns NULL on failure; it may return memory of any alignment
 *  (the library aligns its blocks and tensor data itself). free accepts NULL. */
typedef struct ag_allocator {
    void *(*alloc)(size_t size, void *userdata);
    void (*free)(void *ptr, void *userdata);
    void *userdata;
} ag_allocator;

/** Routes every allocation of the library through `allocator` (copied), or back to the
 *  default when NULL. The default keeps per-thread pools of small blocks (carved from
 *  regions the library maps itself and keeps for reuse) and a bounded cache of large blocks
 *  on top of malloc/free; with a custom allocator every block goes through it. Process-wide.
 *  Switching while objects are alive is valid: every block goes back to the allocator that
 *  made it (its `free`, with its `userdata`), whichever is installed then, so an allocator
 *  must keep working for as long as blocks it made are alive. The library keeps a small
 *  record (about 32 bytes) per distinct allocator installed, for the life of the process;
 *  installing the same one again reuses it. Not to be called concurrently with other
 *  library calls. Errors: AG_EINVAL if alloc or free is NULL; AG_ENOMEM if its record cannot
 *  be made (the allocator in place stays). */
AG_API int ag_set_allocator(const ag_allocator *allocator);

/** Sets the number of threads used by kernels and by backward (process-wide). n = 0 restores
 *  the default: OMP_NUM_THREADS if set, else the number of cores (1 in a child made by
 *  fork() after work on several threads: see Threads above). Results are bitwise
 *  identical for every thread count. Errors: AG_EINVAL if n < 0 or n > 1024. */
AG_API int ag_set_num_threads(int n);

/** Returns the number of threads kernels and backward use. Never fails. */
AG_API int ag_get_num_threads(void);

/** Turns deferred kernels on or off (process-wide; on by default); returns the previous
 *  setting (1 or 0). Never fails.
 *
 *  With more than one thread, an elementwise op, a matrix product (mm, matmul of two
 *  matrices), a linear layer with a bias (ag_linear of a 2-d input, or a contiguous 3-d one)
 *  or a sum or mean of up to 16384 elements, called from a program's own thread,
 *  may queue its kernel and return its result before computing it: when the op is big
 *  (4096 elements or more) or an operand is itself still queued. Everything else runs the
 *  queue first, as soon as it touches a queued result or an operand of a queued kernel:
 *  reading values (ag_tensor_item, ag_tensor_copy_data, printing), an op that does not
 *  queue, an in-place change, an optimizer step, backward. The queue then runs level by
 *  level, the independent kernels of a level side by side on the thread team, each whole on
 *  one thread: the heads of a multi-head model run at once, each on the core that made its
 *  operands, as they would from a thread per head. Values, errors, gradients and version
 *  counters are exactly those of eager execution (kernels give the same bits on any thread),
 *  and queued kernels cannot fail: what they may allocate is reserved when they are queued
 *  (if it cannot be, the op runs eagerly). A queued kernel keeps the memory of its operands
 *  and result until it has run, not the tensors: releasing one still frees it (and runs its
 *  hooks' free_userdata) at once. The queue runs by itself once its results and reserves
 *  take 16 MiB (or 1024 kernels are queued). Off, every op computes its result before it
 *  returns. */
AG_API int ag_set_deferral_enabled(int enabled);

/** Whether deferred kernels are on (1) or off (0). Never fails. */
AG_API int ag_is_deferral_enabled(void);

/** Runs every queued kernel (see ag_set_deferral_enabled), from whichever thread queued it,
 *  and returns once they have run. Values never need it (reading one waits for it): it is
 *  for timing a forward pass, and for an exact ag_memory_in_use after releasing tensors that
 *  queued kernels still used. Never fails: returns AG_OK. */
AG_API int ag_synchronize(void);

/** Bytes the library holds now in large blocks (64 KiB and more, from the default
 *  allocator): tensor data and work buffers in use, not the blocks it keeps for reuse.
 *  Tensors released while a queued kernel still uses them count until it has run (see
 *  ag_synchronize).
 *  Small objects (0-d tensors, graph nodes) are not counted. For a binding whose garbage
 *  collector cannot see the library's memory: the Go binding collects when it grows. Never
 *  fails. */
AG_API uint64_t ag_memory_in_use(void);

/* ------------------------------------------------------------------------------------------ */
/* Grad mode and anomaly mode (per thread)                                                    */
/* ------------------------------------------------------------------------------------------ */

/** Enables (1) or disables (0) graph recording on the calling thread, like torch.no_grad /
 *  torch.enable_grad; returns the previous mode so scopes nest:
 *  `int prev = ag_set_grad_enabled(0); ...; ag_set_grad_enabled(prev);`. Never fails. */
AG_API int ag_set_grad_enabled(int enabled);

/** Returns 1 if the calling thread records graphs, else 0. Enabled by default. */
AG_API int ag_is_grad_enabled(void);

/** Enables anomaly detection on the calling thread (returns the previous mode): backward then
 *  checks every gradient a node produces and fails with AG_EANOMALY naming the node:
 *  "Function 'LogBackward0' returned nan values in its 0th output". Never fails. */
AG_API int ag_set_anomaly_enabled(int enabled);

/** Returns 1 if anomaly detection is on for the calling thread. */
AG_API int ag_is_anomaly_enabled(void);

/* ------------------------------------------------------------------------------------------ */
/* Handles and enums                                                                          */
/* ------------------------------------------------------------------------------------------ */

/** An n-d tensor: a strided view of a reference-counted storage, plus autograd metadata. */
typedef struct ag_tensor ag_tensor;
/** A node of the backward graph (PyTorch's grad_fn), e.g. "MulBackward0", "AccumulateGrad". */
typedef struct ag_node ag_node;
/** An optimizer over a list of parameters. */
typedef struct ag_optimizer ag_optimizer;
/** A seedable random number generator (counter-based Philox4x32-10). */
typedef struct ag_generator ag_generator;
/** The context handed to a custom function's forward and backward. */
typedef struct ag_function_ctx ag_function_ctx;

/** Element types. Values are part of the ABI. */
typedef enum ag_dtype {
    AG_FLOAT32 = 0,
    AG_FLOAT64 = 1,
    AG_INT64 = 2,
    AG_BOOL = 3
} ag_dtype;

/** Maximum number of dimensions of a tensor. */
#define AG_MAX_DIMS 8

/** Loss reductions (values as PyTorch's enum). */
typedef enum ag_reduction {
    AG_REDUCTION_NONE = 0,
    AG_REDUCTION_MEAN = 1,
    AG_REDUCTION_SUM = 2
} ag_reduction;

/** Flags for ag_backward and ag_grad. */
enum {
    AG_RETAIN_GRAPH = 1, /**< keep saved tensors so backward can run again */
    AG_CREATE_GRAPH = 2, /**< record the backward pass itself, for higher-order gradients;
                              implies AG_RETAIN_GRAPH unless AG_FREE_GRAPH is given */
    AG_ALLOW_UNUSED = 4, /**< ag_grad: an input unreachable from the outputs gets NULL
                              instead of an AG_ENOGRAD failure */
    AG_FREE_GRAPH = 8    /**< with AG_CREATE_GRAPH: free the saved tensors all the same, as
                              PyTorch's create_graph=True, retain_graph=False (the graph the
                              pass records holds what it needs); AG_EINVAL with
                              AG_RETAIN_GRAPH; without AG_CREATE_GRAPH it changes nothing */
};

/** Flags for callbacks (hooks and custom functions). */
enum {
    /** Call this callback only on the thread that called backward. A graph holding such a
     *  callback runs its backward on that one thread. Bindings to single-threaded
     *  interpreters (Lua) set it. */
    AG_CALLBACK_CALLER_THREAD = 1
};

/* ------------------------------------------------------------------------------------------ */
/* Generators                                                                                 */
/* ------------------------------------------------------------------------------------------ */

/** Creates a generator seeded with `seed`. Same seed, same numbers, for any thread count.
 *  A generator may be shared between threads (draws are serialised).
 *  Errors: AG_EINVAL (out NULL), AG_ENOMEM. */
AG_API int ag_generator_new(ag_generator **out, uint64_t seed);

/** Reseeds a generator, restarting its stream. Errors: AG_EINVAL. */
AG_API int ag_generator_manual_seed(ag_generator *gen, uint64_t seed);

/** Releases a reference to a generator. NULL is ignored. */
AG_API void ag_generator_release(ag_generator *gen);

/** Reseeds the calling thread's default generator, used wherever a function takes a NULL
 *  generator (like torch.manual_seed, but per thread). Never fails. */
AG_API int ag_manual_seed(uint64_t seed);

/* ------------------------------------------------------------------------------------------ */
/* Tensor creation                                                                            */
/* ------------------------------------------------------------------------------------------ */

/** Creates a contiguous tensor holding a copy of `data`, which has prod(shape) elements of
 *  `dtype` in row-major order (ndim 0 makes a scalar; shape may then be NULL). bool elements
 *  are bytes: any nonzero byte is true (stored as 1).
 *  Errors: AG_EINVAL (NULL out/data/shape, negative size), AG_ERANGE (ndim > AG_MAX_DIMS),
 *  AG_EDTYPE (unknown dtype), AG_ENOMEM. */
AG_API int ag_tensor_from_data(ag_tensor **out, const void *data, ag_dtype dtype,
                               const int64_t *shape, size_t ndim);

/** As ag_tensor_from_data, but the data are doubles converted to `dtype` (int64 values
 *  must be integral and within int64's range, else AG_EINVAL; bool: nonzero is true).
 *  Convenient for bindings. */
AG_API int ag_tensor_from_f64(ag_tensor **out, const double *data, ag_dtype dtype,
                              const int64_t *shape, size_t ndim);

/** Creates a 0-d tensor holding `value` converted to `dtype` (int64 truncates toward zero;
 *  bool is value != 0; float32 rounds, a finite value beyond FLT_MAX to inf as torch.tensor
 *  does). Errors: AG_EINVAL (out NULL; int64 from NaN or |value| >= 2^63), AG_EDTYPE
 *  (unknown dtype). */
AG_API int ag_tensor_scalar(ag_tensor **out, double value, ag_dtype dtype);

/** As ag_tensor_scalar followed by ag_tensor_set_requires_grad(*out, requires_grad), in one
 *  call: torch.tensor(value, dtype=..., requires_grad=...). A leaf that requires grad comes
 *  with its autograd metadata made (where .grad will live), as ag_tensor_set_requires_grad
 *  makes it. For bindings, one crossing per leaf instead of two (a scalar graph makes its
 *  leaves by the thousand). Errors: those of ag_tensor_scalar, checked first (a value dtype
 *  cannot hold is AG_EINVAL whatever requires_grad says, as torch.tensor refuses it), then
 *  AG_EDTYPE when requires_grad is nonzero and dtype is int64 or bool ("only Tensors of
 *  floating point dtype can require gradients"), and AG_ENOMEM; on any error nothing is
 *  created and *out is left as it was. */
AG_API int ag_tensor_scalar_requires_grad(ag_tensor **out, double value, ag_dtype dtype,
                                          int requires_grad);

/** Creates an uninitialised contiguous tensor (contents unspecified; a bool tensor is all
 *  false, so that every byte is a valid bool). */
AG_API int ag_empty(ag_tensor **out, ag_dtype dtype, const int64_t *shape, size_t ndim);
/** Creates a tensor of zeros. */
AG_API int ag_zeros(ag_tensor **out, ag_dtype dtype, const int64_t *shape, size_t ndim);
/** Creates a tensor of ones. */
AG_API int ag_ones(ag_tensor **out, ag_dtype dtype, const int64_t *shape, size_t ndim);
/** Creates a tensor filled with `value`. Errors: AG_EINVAL, with PyTorch's "value cannot be
 *  converted to type float without overflow", for a finite float32 value beyond FLT_MAX in
 *  magnitude (even one that would round to FLT_MAX; inf and NaN fill as given, and
 *  ag_tensor_scalar rounds such a value to inf, as torch.tensor does); AG_EINVAL for an int64
 *  value that is NaN or outside [-2^63, 2^63), where PyTorch 1.13 lets 2^63 through as
 *  INT64_MIN. */
AG_API int ag_full(ag_tensor **out, ag_dtype dtype, const int64_t *shape, size_t ndim,
                   double value);

/** Creates the 1-d tensor [start, start+step, ...) stopping before `end`, like torch.arange.
 *  Errors (PyTorch's checks, order and messages): AG_EINVAL if step is 0 or NaN ("step must be
 *  nonzero"), a bound is not finite ("unsupported range: 0 -> inf"), or step's sign cannot
 *  reach end. An infinite step gives an empty tensor, as in PyTorch. int64: start, end and step
 *  must convert to int64 (AG_EINVAL "value cannot be converted to type int64_t without
 *  overflow" for NaN, infinities, |x| >= 2^63) and are truncated first; the length is then
 *  counted in int64 as PyTorch counts it, wrapping around where end - start overflows (so
 *  arange(-9e18, 9e18, 3e18) is empty, and a count that wraps negative is AG_EINVAL "invalid
 *  size, possible overflow?"). AG_EDTYPE for bool ("arange is not implemented for bool", as
 *  PyTorch). */
AG_API int ag_arange(ag_tensor **out, ag_dtype dtype, double start, double end, double step);

/** Creates an n x m matrix with ones on the diagonal. Errors: AG_EINVAL if n or m < 0. */
AG_API int ag_eye(ag_tensor **out, ag_dtype dtype, int64_t n, int64_t m);

/** Uniform samples in [0, 1). gen NULL uses the thread's default. Errors: AG_EDTYPE for
 *  int64 and bool (as torch.rand). */
AG_API int ag_rand(ag_tensor **out, ag_generator *gen, ag_dtype dtype, const int64_t *shape,
                   size_t ndim);
/** Standard normal samples. Errors: AG_EDTYPE for int64 and bool (as torch.randn). */
AG_API int ag_randn(ag_tensor **out, ag_generator *gen, ag_dtype dtype, const int64_t *shape,
                    size_t ndim);
/** Uniform integers in [low, high). Errors: AG_EINVAL if low >= high; AG_EDTYPE for bool
 *  (which torch.randint accepts: a difference from PyTorch). */
AG_API int ag_randint(ag_tensor **out, ag_generator *gen, int64_t low, int64_t high,
                      ag_dtype dtype, const int64_t *shape, size_t ndim);

/** The _like variants create a tensor with t's shape and dtype (never requiring grad),
 *  laid out as t, as PyTorch's preserve_format: t's own strides if t is dense (a transpose
 *  gives a transposed result), else dense strides in the order of t's. ag_rand_like and
 *  ag_randn_like draw what ag_rand and ag_randn draw for t's shape, each value at the same
 *  index. ag_full_like checks value as ag_full does. */
AG_API int ag_empty_like(ag_tensor **out, const ag_tensor *t);
AG_API int ag_zeros_like(ag_tensor **out, const ag_tensor *t);
AG_API int ag_ones_like(ag_tensor **out, const ag_tensor *t);
AG_API int ag_full_like(ag_tensor **out, const ag_tensor *t, double value);
AG_API int ag_rand_like(ag_tensor **out, ag_generator *gen, const ag_tensor *t);
AG_API int ag_randn_like(ag_tensor **out, ag_generator *gen, const ag_tensor *t);

/* ------------------------------------------------------------------------------------------ */
/* Tensor lifetime and queries                                                                */
/* ------------------------------------------------------------------------------------------ */

/** Takes one more reference to t. Errors: AG_EINVAL (t NULL). */
AG_API int ag_tensor_retain(ag_tensor *t);

/** Drops one reference; the tensor is freed with the last one. NULL is ignored. Safe from
 *  any thread; never takes a lock the caller could hold. Releasing a long chain of graph
 *  nodes does not recurse. */
AG_API void ag_tensor_release(ag_tensor *t);

/** The dtype of t. */
AG_API int ag_tensor_dtype(ag_dtype *out, const ag_tensor *t);
/** The number of dimensions of t (0 for a scalar). */
AG_API int ag_tensor_ndim(size_t *out, const ag_tensor *t);
/** The number of elements of t. */
AG_API int ag_tensor_numel(int64_t *out, const ag_tensor *t);
/** Copies t's shape into out[0..ndim). Errors: AG_ERANGE if cap < ndim. */
AG_API int ag_tensor_shape(int64_t *out, size_t cap, const ag_tensor *t);
/** Copies t's strides (in elements) into out[0..ndim). Errors: AG_ERANGE if cap < ndim. */
AG_API int ag_tensor_strides(int64_t *out, size_t cap, const ag_tensor *t);
/** The size of one dimension. Errors: AG_ERANGE (dim out of range; any dim of a 0-d tensor,
 *  as PyTorch's t.size(0)). */
AG_API int ag_tensor_size(int64_t *out, const ag_tensor *t, int64_t dim);
/** The offset of t's first element in its storage, in elements. */
AG_API int ag_tensor_storage_offset(int64_t *out, const ag_tensor *t);
/** 1 if t is laid out contiguously in row-major order, else 0. */
AG_API int ag_tensor_is_contiguous(int *out, const ag_tensor *t);
/** 1 if a and b are views of the same storage. */
AG_API int ag_tensor_shares_storage(int *out, const ag_tensor *a, const ag_tensor *b);
/** The version counter shared by t and its views; every in-place change bumps it. */
AG_API int ag_tensor_version(int64_t *out, const ag_tensor *t);

/** The value of a one-element tensor, converted to double. Errors: AG_ESHAPE if numel != 1. */
AG_API int ag_tensor_item(double *out, const ag_tensor *t);
/** The value of a one-element tensor, converted to int64 as Tensor.long() converts it:
 *  floats truncate toward zero, and NaN or a value outside int64's range gives INT64_MIN (what
 *  x86's conversion, and so PyTorch, gives). Errors: AG_ESHAPE if numel != 1. */
AG_API int ag_tensor_item_int64(int64_t *out, const ag_tensor *t);

/** Copies t's elements, in t's dtype and in row-major order, into buf.
 *  Errors: AG_ERANGE if nbytes < numel * element size. */
AG_API int ag_tensor_copy_data(void *buf, size_t nbytes, const ag_tensor *t);
/** Copies t's elements converted to double, in row-major order, into buf[0..numel).
 *  Errors: AG_ERANGE if cap < numel. */
AG_API int ag_tensor_copy_f64(double *buf, size_t cap, const ag_tensor *t);
/** Copies t's elements converted to int64 as ag_tensor_item_int64 converts one, row-major,
 *  into buf[0..numel). Errors: AG_ERANGE if cap < numel. */
AG_API int ag_tensor_copy_i64(int64_t *buf, size_t cap, const ag_tensor *t);

/** Formats t as PyTorch prints it: "tensor(2., requires_grad=True)",
 *  "tensor([[1., 2.],\n        [3., 4.]], grad_fn=<AddBackward0>)". *out receives a
 *  NUL-terminated string owned by the caller, to be freed with ag_string_free. */
AG_API int ag_tensor_to_string(char **out, const ag_tensor *t);

/** Frees a string returned by the library. NULL is ignored. */
AG_API void ag_string_free(char *s);

/* ------------------------------------------------------------------------------------------ */
/* Autograd metadata of a tensor                                                              */
/* ------------------------------------------------------------------------------------------ */

/** 1 if operations on t are recorded for backward. */
AG_API int ag_tensor_requires_grad(int *out, const ag_tensor *t);

/** Sets requires_grad on a leaf. Errors: AG_EDTYPE (int64 or bool tensor: "only Tensors of
 *  floating point dtype can require gradients"), AG_ELEAF (t is not a leaf: "you can only
 *  change requires_grad flags of leaf variables"). Setting the current value on a non-leaf
 *  succeeds, as in PyTorch. A leaf set not to require grad after graphs used it stays in
 *  those graphs, but a backward through them leaves its .grad as it is (PyTorch's
 *  AccumulateGrad does the same); setting it again makes them accumulate into it again. */
AG_API int ag_tensor_set_requires_grad(ag_tensor *t, int requires_grad);

/** 1 if t is a leaf: it has no grad_fn (created by the user, or not requiring grad). */
AG_API int ag_tensor_is_leaf(int *out, const ag_tensor *t);

/** The accumulated gradient of t (a new reference), or *out = NULL if there is none yet.
 *  Leaves get .grad from backward; non-leaves only after ag_tensor_retain_grad. Its layout is
 *  PyTorch's: a leaf's .grad, when backward creates it, has the leaf's strides if the leaf is
 *  dense (a transposed leaf gets a transposed .grad), else is contiguous (PyTorch's gradient
 *  layout contract); a retained gradient is a contiguous copy. */
AG_API int ag_tensor_grad(ag_tensor **out, const ag_tensor *t);

/** Replaces t's .grad with g (borrowed; the library keeps its own reference), or drops it
 *  when g is NULL ("set_to_none"). Errors: AG_ESHAPE / AG_EDTYPE if g does not match t;
 *  AG_EINVAL if g is t itself (backward would add gradients into t). */
AG_API int ag_tensor_set_grad(ag_tensor *t, ag_tensor *g);

/** Zeroes t's .grad in place if it has one, as ag_optimizer_zero_grad(opt, 0) does to each
 *  parameter's .grad (PyTorch's zero_grad(set_to_none=False)): the .grad tensor itself is
 *  detached (a handle to it no longer reaches its graph) or, if a leaf, set not to require
 *  grad, then zeroed. Errors (nothing changed): AG_EINVAL "Can't detach views in-place. Use
 *  detach() instead." for a .grad that is a view with a grad_fn; under grad mode, PyTorch's
 *  zero_() errors for a .grad that is a view of a tensor requiring grad (one made under
 *  no_grad: AG_EINVAL; of a leaf: AG_ELEAF). */
AG_API int ag_tensor_zero_grad(ag_tensor *t);

/** t's grad_fn (a new reference), or *out = NULL for leaves. */
AG_API int ag_tensor_grad_fn(ag_node **out, const ag_tensor *t);

/** Makes backward keep the gradient of a non-leaf in its .grad (a no-op on leaves). The
 *  gradient kept is that of t's present value: after an in-place op on t (directly, or
 *  through a view of t, or on t's base through t), .grad comes from t's new grad_fn, as in
 *  PyTorch. The gradient kept is what all of t's hooks made of it, whenever they were
 *  registered (PyTorch's rule since 2.0; in 1.13 retain_grad was one more hook, and hooks
 *  registered after it were not seen). Errors: AG_ENOGRAD if t does not require grad. */
AG_API int ag_tensor_retain_grad(ag_tensor *t);

/** 1 if t is a non-leaf that retains its gradient. */
AG_API int ag_tensor_retains_grad(int *out, const ag_tensor *t);

/** A new tensor sharing t's storage and version counter, cut from the graph
 *  (requires_grad false, no grad_fn). */
AG_API int ag_tensor_detach(ag_tensor **out, const ag_tensor *t);

/** A gradient hook: called with the gradient flowing into t during backward (borrowed).
 *  To replace it, store a new reference in *new_grad (same shape and dtype); leave it NULL
 *  to keep it. Return AG_OK, or a status to abort backward (see ag_set_error). */
typedef int (*ag_tensor_hook_fn)(ag_tensor **new_grad, ag_tensor *grad, void *userdata);

/** Registers a gradient hook on t (t must require grad), like Tensor.register_hook. Hooks run
 *  in registration order; on a leaf they run before .grad is accumulated. A hook belongs to
 *  the grad_fn t has when it is registered: after an in-place op gives t a new grad_fn, hooks
 *  registered before it get the gradient of t's old value, those registered after it the
 *  gradient of the new one (PyTorch's rule since 2.0). free_userdata (may be NULL) is called
 *  with userdata once the hook is removed and no longer running, or when t and every graph
 *  node that can run its hooks are freed. *handle_out receives an id for
 *  ag_tensor_remove_hook. Hooks may be
 *  registered and removed at any time, from any thread or from inside a hook: while
 *  backward runs t's hooks, one removed is skipped if not yet reached, and one registered
 *  runs from the next pass on. A hook with AG_CALLBACK_CALLER_THREAD registered while a pass
 *  that runs on several threads is under way also runs from the next pass on (such a pass
 *  cannot promise it the caller's thread; passes that know of it run on that thread).
 *  flags: AG_CALLBACK_CALLER_THREAD or 0. Errors: AG_ENOGRAD, AG_EINVAL, AG_ENOMEM; on
 *  failure free_userdata is not called, and userdata stays the caller's. */
AG_API int ag_tensor_register_hook(uint64_t *handle_out, ag_tensor *t, ag_tensor_hook_fn fn,
                                   unsigned flags, void *userdata,
                                   void (*free_userdata)(void *userdata));

/** Removes a hook. Registering takes constant time, and so does removing the newest or the
 *  oldest of t's hooks; removing another takes time in its distance from either end.
 *  Errors: AG_EINVAL if t has no hook with that handle. */
AG_API int ag_tensor_remove_hook(ag_tensor *t, uint64_t handle);

/* ------------------------------------------------------------------------------------------ */
/* Backward                                                                                   */
/* ------------------------------------------------------------------------------------------ */

/** Computes the gradient of `root` with respect to every leaf of its graph and accumulates
 *  it into their .grad, like Tensor.backward. grad (may be NULL for a one-element root) is
 *  the gradient of some scalar with respect to root; it must match root's shape, and is cast
 *  to root's dtype if it has another (as PyTorch casts it).
 *  Nodes whose inputs are complete run concurrently on ag_get_num_threads() threads;
 *  gradients arriving at a node from several consumers are summed in a fixed order, so the
 *  result is bitwise identical for every thread count and schedule.
 *  flags: AG_RETAIN_GRAPH, AG_CREATE_GRAPH, AG_FREE_GRAPH (AG_ALLOW_UNUSED is ag_grad's
 *  only). With AG_CREATE_GRAPH a leaf's .grad carries a
 *  graph that reaches the leaf itself: a reference cycle (PyTorch warns of the same one),
 *  which ag_tensor_set_grad(leaf, NULL) breaks; ag_grad, which writes no leaf's .grad, makes
 *  none. A non-leaf's retained .grad (ag_tensor_retain_grad) makes none either: it goes
 *  with the tensor's last handle, as PyTorch's does.
 *  The root, its gradient and whether the graph was already freed are checked before
 *  anything runs, and fail with nothing changed. .grad of leaves is written only after every
 *  node succeeded, so a failure during the pass (a saved tensor found modified in place, a
 *  failing hook, an anomaly) leaves every .grad untouched; saved tensors of nodes that
 *  already ran may have been freed then (without AG_RETAIN_GRAPH), as in PyTorch. When
 *  several nodes would fail, the one reported is the same for every thread count: the first
 *  in the pass's discovery order (depth first from the root); after a failure only the
 *  nodes before it in that order still run, and hooks of later ones are not called. A .grad
 *  set from none is the pass's gradient itself when nothing else holds it and it has the
 *  leaf's layout (version 0, as ag_grad's results, whatever the thread count), else a copy
 *  in that layout: for a dense leaf made as PyTorch makes it, by copy_ into an empty tensor
 *  (version 1; with AG_CREATE_GRAPH its grad_fn is CopyBackwards), for another a
 *  contiguous clone (version 0; CloneBackward0). Each later accumulation into it bumps its
 *  version by one.
 *  Several threads may call backward at once, on separate graphs or on graphs that share
 *  nodes or leaves (.grad of a shared leaf receives every pass's sum). Through a shared node
 *  without AG_RETAIN_GRAPH, the pass that runs it second fails with AG_EGRAPH, as a second
 *  backward would.
 *  Errors: AG_EINVAL (root NULL, unknown flags, AG_FREE_GRAPH with AG_RETAIN_GRAPH),
 *  AG_ENOGRAD ("element 0 of tensors does not require grad and does not have a
 *  grad_fn"), AG_ESHAPE (non-scalar root without grad, or grad of the wrong shape),
 *  AG_EGRAPH (second backward through a freed graph), AG_EVERSION (saved tensor
 *  modified in place; checked at every node the pass reaches, one that gets no gradient
 *  included, as PyTorch's formulas unpack their saved tensors first), AG_EANOMALY,
 *  AG_ECALLBACK, AG_ENOMEM. */
AG_API int ag_backward(ag_tensor *root, ag_tensor *grad, unsigned flags);

/** Computes and returns the gradients of the outputs with respect to the inputs, like
 *  torch.autograd.grad, without touching the .grad of any leaf. As in PyTorch (1.13), a
 *  non-leaf that retains its gradient (ag_tensor_retain_grad) and whose grad_fn runs in the
 *  pass (it lies on a path to an input) accumulates it in its .grad; one that is only an
 *  input of the call does not. grads_out[i] receives a new reference to
 *  d(sum_j <outputs[j], grad_outputs[j]>)/d(inputs[i]). grad_outputs may be NULL (or hold
 *  NULLs) for one-element outputs. With AG_CREATE_GRAPH the results carry a graph and can be
 *  differentiated again. An input unreachable from the outputs is an AG_ENOGRAD failure
 *  unless AG_ALLOW_UNUSED is set, in which case its entry is NULL. Only the nodes between
 *  the outputs and the inputs run: an input's own grad_fn does not (unless it leads to another
 *  input), so its saved tensors are neither checked nor freed (ag_grad(y, y) leaves y's graph
 *  whole for a later backward, as in PyTorch). A result has the layout that PyTorch's
 *  formula gives it: sum's gradient is a stride-0 expanded view (in-place ops on it fail with
 *  AG_EINVAL), mean's a fresh contiguous tensor; a matrix product's column-major factor gets a
 *  column-major gradient; where gradients of several paths meet, their sum's layout is that
 *  of the additions in the engine's fixed order, which may differ from PyTorch's order (as
 *  may the last bits of the sum of three or more). Hooks: an input's hooks run before its
 *  gradient is captured, and the result is what they made of it (PyTorch's rule since 2.0;
 *  1.13 captured first); an output none of the inputs lies behind (AG_ALLOW_UNUSED) runs no
 *  hook. Zeros that PyTorch's formulas make as a ZeroTensor (the derivative of sign, so the
 *  second derivative of abs and norm) act as one until something writes them: a product
 *  with them, or a quotient of them, is zeros whatever the other operand holds (inf and NaN
 *  included), x over them is inf, and a sum takes the other term's layout. So the second
 *  derivative of |x / y| where y is 0 is 0, as in PyTorch, not NaN.
 *  Errors: as ag_backward; AG_EINVAL if n_outputs or n_inputs is 0. */
AG_API int ag_grad(ag_tensor **grads_out, ag_tensor *const *outputs,
                   ag_tensor *const *grad_outputs, size_t n_outputs, ag_tensor *const *inputs,
                   size_t n_inputs, unsigned flags);

/* ------------------------------------------------------------------------------------------ */
/* Graph nodes (grad_fn)                                                                      */
/* ------------------------------------------------------------------------------------------ */

/** Takes one more reference to a node. */
AG_API int ag_node_retain(ag_node *node);
/** Drops a reference to a node. NULL is ignored. */
AG_API void ag_node_release(ag_node *node);
/** The node's name as PyTorch spells it ("MulBackward0", "AccumulateGrad"). The string lives
 *  as long as the node. */
AG_API int ag_node_name(const char **out, const ag_node *node);
/** The number of next functions (one per input of the forward operation). */
AG_API int ag_node_num_next(size_t *out, const ag_node *node);
/** The i-th next function, like grad_fn.next_functions[i]: *fn_out receives a new reference
 *  (or NULL where that input needs no gradient) and *input_nr_out the output index of that
 *  node it feeds. Errors: AG_ERANGE if i >= ag_node_num_next. */
AG_API int ag_node_next(ag_node **fn_out, int64_t *input_nr_out, const ag_node *node,
                        size_t i);
/** For an AccumulateGrad node, the leaf it accumulates into (a new reference).
 *  Errors: AG_EINVAL for other nodes. */
AG_API int ag_node_variable(ag_tensor **out, const ag_node *node);

/* ------------------------------------------------------------------------------------------ */
/* Custom functions                                                                           */
/* ------------------------------------------------------------------------------------------ */

/** Forward of a custom function: compute outputs[0..n_outputs) (store new references) from
 *  the inputs (borrowed). Runs with grad mode off. Return AG_OK or a failure status. */
typedef int (*ag_function_forward_fn)(ag_function_ctx *ctx, ag_tensor **outputs,
                                      size_t n_outputs, ag_tensor *const *inputs,
                                      size_t n_inputs, void *userdata);
/** Backward of a custom function: from grad_outputs (borrowed; an entry is a tensor of zeros
 *  if that output received no gradient) compute grad_inputs[0..n_inputs) (store new
 *  references, or leave NULL for no gradient). It runs in every pass that reaches its node,
 *  even when none of the outputs received a gradient (all zeros then), as PyTorch calls it.
 *  Runs with grad mode on only under AG_CREATE_GRAPH. */
typedef int (*ag_function_backward_fn)(ag_function_ctx *ctx, ag_tensor **grad_inputs,
                                       size_t n_inputs, ag_tensor *const *grad_outputs,
                                       size_t n_outputs, void *userdata);

/** Applies a custom function, like torch.autograd.Function.apply. forward runs now; if grad
 *  mode is on and an input requires grad, the outputs get a grad_fn named name + "Backward"
 *  ("MyExp" gives "MyExpBackward") whose backward calls `backward`. free_userdata (may be
 *  NULL) is called once the graph node is freed (or at once if the call succeeded without
 *  making one); if ag_function_apply fails it is not called, and userdata stays the
 *  caller's.
 *  As in PyTorch, an input that forward returns as is comes back as a view of that input,
 *  and an output that is a view stays one; with a grad_fn, an in-place op on such an output,
 *  or on its base behind it, fails (AG_EINVAL, "... This view was created inside a custom
 *  Function ..."): the history it would get would bypass `backward`. Clone it first.
 *  flags: AG_CALLBACK_CALLER_THREAD or 0.
 *  Errors: AG_EINVAL (NULL arguments, n_outputs 0 or above 64, n_inputs above 64, a name
 *  longer than 200 characters), AG_ECALLBACK (forward left an output NULL, or failed with a
 *  status that is not an AG_E* code; one that is, e.g. AG_ESHAPE, is reported as is),
 *  AG_ENOMEM. */
AG_API int ag_function_apply(ag_tensor **outputs, size_t n_outputs, ag_tensor *const *inputs,
                             size_t n_inputs, const char *name, ag_function_forward_fn forward,
                             ag_function_backward_fn backward, unsigned flags, void *userdata,
                             void (*free_userdata)(void *userdata));

/** From forward: saves t for backward (ctx.save_for_backward). Its version is recorded and
 *  checked when backward reads it. A saved tensor counts as an output (and comes back in
 *  backward with the function's node as its grad_fn) only if it is the very tensor forward
 *  returned, not an input returned as is nor another view of an output's memory.
 *  Errors: AG_EINVAL if called outside forward. */
AG_API int ag_function_ctx_save(ag_function_ctx *ctx, ag_tensor *t);
/** From backward: the number of saved tensors. */
AG_API int ag_function_ctx_num_saved(size_t *out, const ag_function_ctx *ctx);
/** From backward: the i-th saved tensor (a new reference).
 *  Errors: AG_ERANGE, AG_EVERSION (modified in place since saved), AG_EGRAPH (freed). */
AG_API int ag_function_ctx_saved(ag_tensor **out, ag_function_ctx *ctx, size_t i);
/** From forward or backward: 1 if input i required grad when the function was applied, with
 *  grad mode on (ctx.needs_input_grad[i], as PyTorch sets it before forward runs; all 0
 *  under no_grad), whichever inputs the running pass differentiates. backward may
 *  return gradients for any input: each one for an input that requires grad must have the
 *  input's shape or one it broadcasts to (AG_ESHAPE, as PyTorch, even if the pass does not
 *  need it) and is cast to the input's dtype; those the pass does not need are dropped. */
AG_API int ag_function_ctx_needs_input_grad(int *out, const ag_function_ctx *ctx, size_t i);

/* ------------------------------------------------------------------------------------------ */
/* Elementwise operations                                                                     */
/* ------------------------------------------------------------------------------------------ */
/* Binary operations broadcast by NumPy rules and promote dtypes as PyTorch does; their
 * gradients are reduced back to each input's shape. Every function below that returns a
 * tensor stores a new reference in *out and records a grad_fn when grad mode is on and an
 * input requires grad. Results are laid out as PyTorch's TensorIterator lays them out:
 * contiguous when the inputs are; with the inputs' strides when they share one dense layout
 * (exp of a transposed matrix is transposed, and a view of it fails where one of a
 * contiguous result would not); otherwise dense, with the dimensions in the order of the
 * inputs' strides, the first input deciding where they disagree. Values never depend on the
 * layout. Common errors: AG_EINVAL (NULL handle), AG_ESHAPE (shapes that do not broadcast),
 * AG_EDTYPE (an op not defined for the dtype, e.g. neg or abs of a bool tensor), AG_ENOMEM. */

AG_API int ag_add(ag_tensor **out, const ag_tensor *a, const ag_tensor *b); /**< a + b */
AG_API int ag_sub(ag_tensor **out, const ag_tensor *a, const ag_tensor *b); /**< a - b */
AG_API int ag_mul(ag_tensor **out, const ag_tensor *a, const ag_tensor *b); /**< a * b */
/** a / b, true division (int64 / int64 gives float32). */
AG_API int ag_div(ag_tensor **out, const ag_tensor *a, const ag_tensor *b);
AG_API int ag_pow(ag_tensor **out, const ag_tensor *a, const ag_tensor *b); /**< a ** b */
/** Elementwise max / min; NaN propagates. Where a == b the gradient is split evenly between
 *  a and b, as PyTorch does. */
AG_API int ag_maximum(ag_tensor **out, const ag_tensor *a, const ag_tensor *b);
AG_API int ag_minimum(ag_tensor **out, const ag_tensor *a, const ag_tensor *b);

/* Scalars promote as Python numbers do in PyTorch: an integral s keeps an int64 or bool
 * tensor integral (a bool tensor becomes int64: True + 2 is 3), a fractional one makes it
 * float32. Subtracting with a bool tensor (ag_sub, ag_sub_scalar, ag_rsub_scalar, ag_sub_) is
 * AG_EDTYPE, and an integer tensor to a negative scalar power AG_EINVAL, as in PyTorch.
 * s / a is true division for every dtype (s / bool tensor: float32, 2 / False is inf). */
AG_API int ag_add_scalar(ag_tensor **out, const ag_tensor *a, double s);  /**< a + s */
AG_API int ag_sub_scalar(ag_tensor **out, const ag_tensor *a, double s);  /**< a - s */
AG_API int ag_rsub_scalar(ag_tensor **out, const ag_tensor *a, double s); /**< s - a */
AG_API int ag_mul_scalar(ag_tensor **out, const ag_tensor *a, double s);  /**< a * s */
AG_API int ag_div_scalar(ag_tensor **out, const ag_tensor *a, double s);  /**< a / s */
AG_API int ag_rdiv_scalar(ag_tensor **out, const ag_tensor *a, double s); /**< s / a */
AG_API int ag_pow_scalar(ag_tensor **out, const ag_tensor *a, double s);  /**< a ** s */
AG_API int ag_rpow_scalar(ag_tensor **out, const ag_tensor *a, double s); /**< s ** a */

AG_API int ag_neg(ag_tensor **out, const ag_tensor *a);
AG_API int ag_exp(ag_tensor **out, const ag_tensor *a);
AG_API int ag_log(ag_tensor **out, const ag_tensor *a);
AG_API int ag_log1p(ag_tensor **out, const ag_tensor *a);
AG_API int ag_expm1(ag_tensor **out, const ag_tensor *a);
AG_API int ag_sqrt(ag_tensor **out, const ag_tensor *a);
AG_API int ag_rsqrt(ag_tensor **out, const ag_tensor *a);
AG_API int ag_abs(ag_tensor **out, const ag_tensor *a);
AG_API int ag_sin(ag_tensor **out, const ag_tensor *a);
AG_API int ag_cos(ag_tensor **out, const ag_tensor *a);
AG_API int ag_tanh(ag_tensor **out, const ag_tensor *a);
AG_API int ag_sigmoid(ag_tensor **out, const ag_tensor *a);
AG_API int ag_relu(ag_tensor **out, const ag_tensor *a);
/** x if x > 0 else negative_slope * x. Errors: AG_EINVAL if negative_slope does not fit a
 *  float32 input (finite and beyond float32's range, as in PyTorch). */
AG_API int ag_leaky_relu(ag_tensor **out, const ag_tensor *a, double negative_slope);
/** GELU; approximate_tanh = 1 selects PyTorch's approximate='tanh', 0 the exact erf form. */
AG_API int ag_gelu(ag_tensor **out, const ag_tensor *a, int approximate_tanh);
AG_API int ag_silu(ag_tensor **out, const ag_tensor *a);
/** log(1 + exp(beta x)) / beta, linear where beta x > threshold (PyTorch: beta 1,
 *  threshold 20). beta 0 gives inf, as in PyTorch. Errors: AG_EINVAL if beta or threshold
 *  does not fit a float32 input's dtype (finite and beyond its range, as in PyTorch). */
AG_API int ag_softplus(ag_tensor **out, const ag_tensor *a, double beta, double threshold);
/** min(max(a, lo), hi). Errors: AG_EINVAL if lo or hi is NaN, or does not fit the result's
 *  dtype (a finite bound beyond float32's range for a float32 result, as in PyTorch). */
AG_API int ag_clamp(ag_tensor **out, const ag_tensor *a, double lo, double hi);
/** max(a, lo) / min(a, hi), as torch.clamp(a, min=lo) / torch.clamp(a, max=hi) (grad_fn
 *  ClampBackward1, not Tensor.clamp_min's ClampMinBackward0); errors as ag_clamp. */
AG_API int ag_clamp_min(ag_tensor **out, const ag_tensor *a, double lo);
AG_API int ag_clamp_max(ag_tensor **out, const ag_tensor *a, double hi);
/** cond ? a : b, broadcasting all three; cond is bool (or int64, nonzero is true). */
AG_API int ag_where(ag_tensor **out, const ag_tensor *cond, const ag_tensor *a,
                    const ag_tensor *b);

/** Comparisons give bool tensors and never a grad_fn. */
AG_API int ag_eq(ag_tensor **out, const ag_tensor *a, const ag_tensor *b);
AG_API int ag_ne(ag_tensor **out, const ag_tensor *a, const ag_tensor *b);
AG_API int ag_lt(ag_tensor **out, const ag_tensor *a, const ag_tensor *b);
AG_API int ag_le(ag_tensor **out, const ag_tensor *a, const ag_tensor *b);
AG_API int ag_gt(ag_tensor **out, const ag_tensor *a, const ag_tensor *b);
AG_API int ag_ge(ag_tensor **out, const ag_tensor *a, const ag_tensor *b);
AG_API int ag_eq_scalar(ag_tensor **out, const ag_tensor *a, double s);
AG_API int ag_ne_scalar(ag_tensor **out, const ag_tensor *a, double s);
AG_API int ag_lt_scalar(ag_tensor **out, const ag_tensor *a, double s);
AG_API int ag_le_scalar(ag_tensor **out, const ag_tensor *a, double s);
AG_API int ag_gt_scalar(ag_tensor **out, const ag_tensor *a, double s);
AG_API int ag_ge_scalar(ag_tensor **out, const ag_tensor *a, double s);

/* ------------------------------------------------------------------------------------------ */
/* Reductions                                                                                 */
/* ------------------------------------------------------------------------------------------ */
/* `dims` lists the dimensions to reduce (negative allowed, no repeats); dims == NULL with
 * ndims == 0 reduces over all dimensions. keepdim keeps reduced dimensions with size 1.
 * Errors: AG_ERANGE (dim out of range), AG_EINVAL (repeated dim), AG_EDTYPE. Sum of int64 or
 * bool gives int64; mean, var, std, norm need a float dtype; logsumexp of int64 or bool
 * gives float32, as PyTorch's. */

AG_API int ag_sum(ag_tensor **out, const ag_tensor *a); /**< sum of all elements */
AG_API int ag_sum_dims(ag_tensor **out, const ag_tensor *a, const int64_t *dims, size_t ndims,
                       int keepdim);
AG_API int ag_mean(ag_tensor **out, const ag_tensor *a);
/** Mean over dims. Its backward node (MeanBackward1) keeps the input, as PyTorch 1.13's does:
 *  changing the input in place before backward is AG_EVERSION, and a second backward without
 *  AG_RETAIN_GRAPH AG_EGRAPH (ag_mean keeps nothing). */
AG_API int ag_mean_dims(ag_tensor **out, const ag_tensor *a, const int64_t *dims, size_t ndims,
                        int keepdim);
/** Largest / smallest element (NaN propagates). Errors: AG_ESHAPE on an empty tensor. The
 *  gradient is shared evenly among tied maxima, as PyTorch's max() does. */
AG_API int ag_max(ag_tensor **out, const ag_tensor *a);
AG_API int ag_min(ag_tensor **out, const ag_tensor *a);
/** Max / min along one dim: values and int64 indices (first occurrence). Either out may be
 *  NULL if not wanted, not both (AG_EINVAL). Errors: AG_ESHAPE if the dim is empty,
 *  AG_ERANGE for a dim out of range. */
AG_API int ag_max_dim(ag_tensor **values_out, ag_tensor **indices_out, const ag_tensor *a,
                      int64_t dim, int keepdim);
AG_API int ag_min_dim(ag_tensor **values_out, ag_tensor **indices_out, const ag_tensor *a,
                      int64_t dim, int keepdim);
/** Max / min over dims (gradient split evenly among ties). */
AG_API int ag_amax(ag_tensor **out, const ag_tensor *a, const int64_t *dims, size_t ndims,
                   int keepdim);
AG_API int ag_amin(ag_tensor **out, const ag_tensor *a, const int64_t *dims, size_t ndims,
                   int keepdim);
/** Variance / standard deviation with `correction` (1 = unbiased, PyTorch's default). Where
 *  the correction leaves no degree of freedom the value is NaN, and the gradient follows
 *  PyTorch 1.13: NaN, except var of a 0-d tensor, whose gradient is inf * grad. */
AG_API int ag_var(ag_tensor **out, const ag_tensor *a, const int64_t *dims, size_t ndims,
                  int64_t correction, int keepdim);
AG_API int ag_std(ag_tensor **out, const ag_tensor *a, const int64_t *dims, size_t ndims,
                  int64_t correction, int keepdim);
/** log(sum(exp(a))) computed stably. */
AG_API int ag_logsumexp(ag_tensor **out, const ag_tensor *a, const int64_t *dims, size_t ndims,
                        int keepdim);
/** Vector p-norm over dims: p = 2 (Euclidean), 1, INFINITY, -INFINITY, 0 (count of nonzeros)
 *  or any other real p. p = 0 has no gradient (a's is none, or unused for ag_grad), but its
 *  backward still checks that a and the result were not changed in place, as PyTorch's. */
AG_API int ag_norm(ag_tensor **out, const ag_tensor *a, double p, const int64_t *dims,
                   size_t ndims, int keepdim);
/** Index (int64) of the largest / smallest element along dim (first occurrence).
 *  Errors: AG_ESHAPE if the dim is empty, AG_ERANGE for a dim out of range. */
AG_API int ag_argmax(ag_tensor **out, const ag_tensor *a, int64_t dim, int keepdim);
AG_API int ag_argmin(ag_tensor **out, const ag_tensor *a, int64_t dim, int keepdim);
/** Index into the flattened tensor of its largest / smallest element. */
AG_API int ag_argmax_all(ag_tensor **out, const ag_tensor *a);
AG_API int ag_argmin_all(ag_tensor **out, const ag_tensor *a);

/* ------------------------------------------------------------------------------------------ */
/* Linear algebra                                                                             */
/* ------------------------------------------------------------------------------------------ */

/** Matrix product with torch.matmul's rules: 1-d @ 1-d is a dot product, 1-d operands are
 *  promoted to matrices and the added dimension removed, batch dimensions broadcast.
 *  Errors: AG_ESHAPE ("ag_matmul: shapes [2, 3] and [4, 5] cannot be multiplied"),
 *  AG_EDTYPE (mixed or non-float dtypes). */
AG_API int ag_matmul(ag_tensor **out, const ag_tensor *a, const ag_tensor *b);
/** x @ w^T + b for x [..., in], w [out, in] or [in], b (may be NULL) broadcasting to the
 *  output, like F.linear in torch 1.13: a 2-d input with a bias (or a contiguous 3-d one) is
 *  addmm(b, x, w^T), where b is 0-d, [1] or [out] and w must be 2-d; anything else is
 *  matmul(x, w^T) plus b, which must broadcast to that product's shape (PyTorch adds it in
 *  place). Errors: AG_ESHAPE for shapes that do not fit these rules, AG_EDTYPE (mixed or
 *  non-float dtypes). */
AG_API int ag_linear(ag_tensor **out, const ag_tensor *x, const ag_tensor *w,
                     const ag_tensor *b);

/* ------------------------------------------------------------------------------------------ */
/* Views and shape operations                                                                 */
/* ------------------------------------------------------------------------------------------ */
/* Views share storage and the version counter with their base: writing through one is seen
 * by the other. As in PyTorch, a view whose base was changed in place after it was made (on
 * the base itself or through another view) follows the base's new history: its grad_fn
 * becomes AsStridedBackward0 the next time it is used or asked for its grad_fn or
 * is_leaf; hooks registered on it before stay with its old grad_fn. Views
 * made under no_grad, or by ag_split / ag_chunk, cannot follow: using one after such a change
 * under grad mode fails with AG_EINVAL (PyTorch's message), and so does an in-place op on
 * one under grad mode when it or its base requires grad. A view made under no_grad of a
 * tensor that requires grad reports requires_grad = 1, but no gradient flows through it
 * (PyTorch's behaviour): as a root of ag_backward it fails with AG_ENOGRAD, and as an input
 * of ag_grad it counts as unused. */

/** A view with a new shape (one entry may be -1, inferred), or a copy when t's strides
 *  do not allow a view, like torch.reshape. Errors: AG_ESHAPE (numel mismatch), AG_EINVAL
 *  (more than one -1, or a size below -1). */
AG_API int ag_reshape(ag_tensor **out, const ag_tensor *t, const int64_t *shape, size_t ndim);
/** As ag_reshape but never copies. Errors: AG_ESHAPE when the strides do not allow a view. */
AG_API int ag_view(ag_tensor **out, const ag_tensor *t, const int64_t *shape, size_t ndim);
/** Swaps two dimensions (a view). */
AG_API int ag_transpose(ag_tensor **out, const ag_tensor *t, int64_t dim0, int64_t dim1);
/** The transpose of a matrix (t of ndim <= 2), like Tensor.t(). */
AG_API int ag_t(ag_tensor **out, const ag_tensor *t);
/** Reorders dimensions (a view); dims is a permutation of 0..ndim-1. */
AG_API int ag_permute(ag_tensor **out, const ag_tensor *t, const int64_t *dims, size_t ndims);
/** Broadcasts size-1 dimensions to `shape` without copying (-1 keeps a size). */
AG_API int ag_expand(ag_tensor **out, const ag_tensor *t, const int64_t *shape, size_t ndim);
/** Elements start, start+step, ... before end along dim (a view), like t[start:end:step].
 *  start and end are clamped to the dimension as Python slicing does; negative values
 *  count from the end. The view's stride along dim is t's times step, as in PyTorch, even
 *  when it holds one element or none (which in-place ops' overlap checks compare); where
 *  that product does not fit in int64 (PyTorch fails or wraps), a step beyond the size
 *  counts as the size. Errors: AG_EINVAL if step <= 0. */
AG_API int ag_slice(ag_tensor **out, const ag_tensor *t, int64_t dim, int64_t start,
                    int64_t end, int64_t step);
/** length elements from start along dim (a view). start may be negative (from the end) or
 *  equal to the size (an empty view with length 0); a size-0 dim takes start -1 or 0.
 *  Errors: AG_ERANGE if out of bounds, or if t is 0-d. */
AG_API int ag_narrow(ag_tensor **out, const ag_tensor *t, int64_t dim, int64_t start,
                     int64_t length);
/** The slice at `index` along dim (negative counts from the end), removing dim (a view).
 *  Errors: AG_ERANGE if dim or index is out of range, or t is 0-d. */
AG_API int ag_select(ag_tensor **out, const ag_tensor *t, int64_t dim, int64_t index);
/** Removes every size-1 dimension (a view). */
AG_API int ag_squeeze(ag_tensor **out, const ag_tensor *t);
/** Removes dim if its size is 1 (a view; unchanged otherwise). */
AG_API int ag_squeeze_dim(ag_tensor **out, const ag_tensor *t, int64_t dim);
/** Inserts a size-1 dimension at dim (range -ndim-1 .. ndim; else AG_ERANGE). */
AG_API int ag_unsqueeze(ag_tensor **out, const ag_tensor *t, int64_t dim);
/** Merges dims start..end into one, like torch.flatten (a view when possible). */
AG_API int ag_flatten(ag_tensor **out, const ag_tensor *t, int64_t start_dim, int64_t end_dim);
/** t itself (a new reference) if contiguous, else a contiguous copy. */
AG_API int ag_contiguous(ag_tensor **out, const ag_tensor *t);
/** A copy, differentiable (CloneBackward0), laid out as t as PyTorch's clone does: t's own
 *  strides if t is dense, else dense strides in the order of t's (use ag_contiguous for a
 *  contiguous one). */
AG_API int ag_clone(ag_tensor **out, const ag_tensor *t);
/** t converted to dtype, like Tensor.to(dtype): a new tensor laid out as t (as ag_clone),
 *  differentiable between float dtypes (ToCopyBackward0), or t itself (a new reference,
 *  sharing its memory) when t already has that dtype; clone it before writing to it in
 *  place. */
AG_API int ag_to_dtype(ag_tensor **out, const ag_tensor *t, ag_dtype dtype);

/* ------------------------------------------------------------------------------------------ */
/* Indexing and joining                                                                       */
/* ------------------------------------------------------------------------------------------ */

/** Entries of t along dim at the int64 1-d `index`. Errors: AG_ERANGE (index out of range). */
AG_API int ag_index_select(ag_tensor **out, const ag_tensor *t, int64_t dim,
                           const ag_tensor *index);
/** out[i][j] = t[index[i][j]][j] (for dim 0), like torch.gather. Backward keeps t's shape,
 *  not t: changing t in place before backward is no error, and the gradient is the same
 *  (PyTorch 1.13 saves t and reports AG_EVERSION's error then). */
AG_API int ag_gather(ag_tensor **out, const ag_tensor *t, int64_t dim, const ag_tensor *index);
/** A copy of t with src added at index along dim, like Tensor.scatter_add (out of place).
 *  src may be larger than index (only its part that index covers is read); its gradient is
 *  then zero beyond that part, where PyTorch 1.13's backward fails ("returned an invalid
 *  gradient"). */
AG_API int ag_scatter_add(ag_tensor **out, const ag_tensor *t, int64_t dim,
                          const ag_tensor *index, const ag_tensor *src);
/** A copy of t with `value` where mask (bool) is true; t and mask broadcast together, so the
 *  result has their broadcast shape, as torch.masked_fill's, and is contiguous (PyTorch
 *  clones contiguous first: unlike where's, its layout does not follow t). An int64 mask
 *  counts as bool if it holds only 0 and 1 (else AG_EINVAL, as in PyTorch); other dtypes
 *  are AG_EDTYPE. A value that does not fit t's dtype (beyond int64's range, or finite and
 *  beyond float32's) is AG_EINVAL, as in PyTorch. */
AG_API int ag_masked_fill(ag_tensor **out, const ag_tensor *t, const ag_tensor *mask,
                          double value);
/** Concatenates n tensors along dim (shapes equal elsewhere; dtypes promote). Recorded for
 *  backward, at most 65535 tensors (a node counts its edges in 16 bits): more, where one
 *  requires grad under grad mode, is AG_EINVAL (PyTorch has no such limit). */
AG_API int ag_cat(ag_tensor **out, ag_tensor *const *tensors, size_t n, int64_t dim);
/** Stacks n tensors of equal shape along a new dim. At most 65535 when recorded, as ag_cat. */
AG_API int ag_stack(ag_tensor **out, ag_tensor *const *tensors, size_t n, int64_t dim);
/** The number of pieces ag_split makes: ceil(size(dim) / split_size) (at least 1). */
AG_API int ag_split_count(size_t *out, const ag_tensor *t, int64_t split_size, int64_t dim);
/** Splits t along dim into views of split_size (the last may be smaller), like torch.split.
 *  n_outs must equal ag_split_count. Errors: AG_EINVAL (split_size < 0, or 0 on a non-empty
 *  dim; wrong n_outs; more than 2^31 - 1 pieces, which ag_split_count may report for a large
 *  expanded view; more than 65535 pieces of a tensor that requires grad under grad mode: a
 *  node counts its outputs in 16 bits, where PyTorch has no such limit). */
AG_API int ag_split(ag_tensor **outs, size_t n_outs, const ag_tensor *t, int64_t split_size,
                    int64_t dim);
/** The number of pieces ag_chunk makes (torch.chunk may return fewer than asked). */
AG_API int ag_chunk_count(size_t *out, const ag_tensor *t, int64_t chunks, int64_t dim);
/** Splits t into views, like torch.chunk. n_outs must equal ag_chunk_count (at most
 *  2^31 - 1 pieces, and 65535 of a tensor that requires grad, else AG_EINVAL, as ag_split). */
AG_API int ag_chunk(ag_tensor **outs, size_t n_outs, const ag_tensor *t, int64_t chunks,
                    int64_t dim);

/* ------------------------------------------------------------------------------------------ */
/* Neural-network functions                                                                   */
/* ------------------------------------------------------------------------------------------ */

/** softmax / log_softmax along dim, computed stably. */
AG_API int ag_softmax(ag_tensor **out, const ag_tensor *t, int64_t dim);
AG_API int ag_log_softmax(ag_tensor **out, const ag_tensor *t, int64_t dim);
/** Cross-entropy between logits `input` ([N, C], [C], or [N, C, d1, ...]) and int64 class
 *  indices `target` ([N], [], or [N, d1, ...]), like F.cross_entropy. weight (may be NULL)
 *  rescales classes; targets equal to ignore_index (PyTorch's default: -100) are skipped;
 *  label_smoothing in [0, 1] (else AG_EINVAL; NaN passes PyTorch's check and acts as 0, here
 *  too). Inputs of 3 or more dims take ag_nll_loss's path for them.
 *  Errors: AG_EDTYPE (target not int64), AG_ESHAPE, AG_ERANGE (class out of range). */
AG_API int ag_cross_entropy(ag_tensor **out, const ag_tensor *input, const ag_tensor *target,
                            const ag_tensor *weight, ag_reduction reduction,
                            int64_t ignore_index, double label_smoothing);
/** Negative log-likelihood of log-probabilities `input` [N, C] (or [C], or [N, C, d1, ...]
 *  with `target` [N, d1, ...]) at int64 `target`. As in PyTorch 1.13, inputs of 3 or more
 *  dims go through nll_loss2d (grad_fn NllLoss2DBackward0): a 4-d input as it is, others
 *  viewed as [N, C, 1, -1], the loss without reduction then being a view of the 4-d loss
 *  (grad_fn ViewBackward0); their checks and messages are nll_loss2d's. */
AG_API int ag_nll_loss(ag_tensor **out, const ag_tensor *input, const ag_tensor *target,
                       const ag_tensor *weight, ag_reduction reduction, int64_t ignore_index);
/** Mean squared error (shapes and dtypes broadcast and promote). Input and target of two
 *  float dtypes give the promoted dtype and gradients in each one's own dtype; PyTorch 1.13
 *  computes the same forward but its backward fails ("Found dtype Float but expected
 *  Double"), a bug of its own. */
AG_API int ag_mse_loss(ag_tensor **out, const ag_tensor *input, const ag_tensor *target,
                       ag_reduction reduction);
/** Binary cross-entropy on logits, computed stably; weight and pos_weight may be NULL. The
 *  loss has the target's dtype, as PyTorch's; non-finite values are PyTorch 1.13's (its
 *  formula operation by operation: a logit of -inf gives NaN). */
AG_API int ag_binary_cross_entropy_with_logits(ag_tensor **out, const ag_tensor *input,
                                               const ag_tensor *target, const ag_tensor *weight,
                                               const ag_tensor *pos_weight,
                                               ag_reduction reduction);
/** Zeroes each element with probability p and scales the rest by 1/(1-p) when training is
 *  nonzero; returns t itself (a new reference) otherwise. gen NULL uses the thread's
 *  default generator. Errors: AG_EINVAL if p is outside [0, 1]. */
AG_API int ag_dropout(ag_tensor **out, ag_generator *gen, const ag_tensor *t, double p,
                      int training);
/** Layer normalisation over the last ndim dims, which must equal normalized_shape; weight and
 *  bias (shape normalized_shape) may be NULL. Under AG_CREATE_GRAPH all its gradients require
 *  grad (the outputs of one NativeLayerNormBackwardBackward0, as in PyTorch), the bias's
 *  included; a derivative of one in an input it does not depend on is none. */
AG_API int ag_layer_norm(ag_tensor **out, const ag_tensor *x, const int64_t *normalized_shape,
                         size_t ndim, const ag_tensor *weight, const ag_tensor *bias,
                         double eps);
/** Rows of weight [num, dim] at the int64 `indices` (any shape): out has shape
 *  indices.shape + [dim]. Backward keeps weight's shape, not weight: changing weight in place
 *  before backward is no error, and the gradient is the same (PyTorch 1.13 saves weight and
 *  reports AG_EVERSION's error then). Errors: AG_ERANGE (index out of range). */
AG_API int ag_embedding(ag_tensor **out, const ag_tensor *weight, const ag_tensor *indices);

/* ------------------------------------------------------------------------------------------ */
/* In-place operations                                                                        */
/* ------------------------------------------------------------------------------------------ */
/* Each bumps t's version counter. Under grad mode an in-place op on a non-leaf is recorded
 * (t's grad_fn becomes the op's node, as in PyTorch); on a view of a tensor that requires
 * grad, the base's history is rewritten (CopySlices), also when that base has gaps (the
 * detach of a strided slice): its gradient then comes laid out with the same gaps, as
 * PyTorch lays it out. Errors: AG_ELEAF ("a leaf Variable that
 * requires grad is being used in an in-place operation") unless grad mode is off;
 * AG_ESHAPE if the other operand does not broadcast to t's shape; AG_EDTYPE if the result
 * dtype cannot be stored in t (float into int64, or anything but a bool tensor into bool:
 * on bool tensors add_ is logical or and mul_ logical and; a double scalar is int64 or
 * float32, so the scalar forms fail)
 * or if either operand of ag_sub_ is bool; AG_EINVAL, as in PyTorch, if t reaches one
 * element twice (an expanded view: add_, sub_, mul_ and copy_; fill_ and zero_ may) or if
 * the other operand partly shares t's memory (a shifted slice of the same storage), where
 * the result would depend on the order of the writes. The other operand is judged as
 * broadcast to t's shape, whatever its strides: it may share memory with t only by reading
 * each of t's elements at that element's own position (x.add_(x), disjoint slices or
 * columns of one storage are fine; x.add_(x.narrow(1, 1, 1)), a column of x broadcast
 * over x, is AG_EINVAL, where PyTorch, which leaves strided operands unchecked, computes it
 * element by element). ag_copy_(t, t) copies nothing, even for an expanded t (as PyTorch),
 * but still counts as an in-place op. A backward through fill_ or zero_ of an expanded view
 * of a tensor that requires grad gives the gradient (zero where the view wrote), where
 * PyTorch 1.13's fails (its CopySlices writes the expanded gradient in place).
 * A node keeps the inputs it saved for backward by reference, as PyTorch's do. So an in-place
 * op on t under grad mode whose other operand was computed from t by an op that saved t
 * (t.sub_(minimum(t, w).to(float64)), w requiring grad) gives t a history that holds t
 * itself: a reference cycle, which keeps t (and what that history holds) alive after the
 * last handle is released, as in PyTorch 1.13. A backward through it fails anyway (the saved
 * t was modified: AG_EVERSION); writing under ag_set_grad_enabled(0), or into a copy, makes
 * no cycle. */

AG_API int ag_add_(ag_tensor *t, const ag_tensor *other);
AG_API int ag_sub_(ag_tensor *t, const ag_tensor *other);
AG_API int ag_mul_(ag_tensor *t, const ag_tensor *other);
AG_API int ag_add_scalar_(ag_tensor *t, double s);
AG_API int ag_mul_scalar_(ag_tensor *t, double s);
AG_API int ag_zero_(ag_tensor *t);
/** Errors as ag_full's for a value t's dtype cannot hold (float32: beyond FLT_MAX). */
AG_API int ag_fill_(ag_tensor *t, double value);
/** Copies src (broadcast to t's shape, converted to t's dtype) into t. */
AG_API int ag_copy_(ag_tensor *t, const ag_tensor *src);

/* ------------------------------------------------------------------------------------------ */
/* Optimizers                                                                                 */
/* ------------------------------------------------------------------------------------------ */
/* An optimizer keeps a reference to each parameter (leaf float tensors). step() updates the
 * parameters in place with grad mode off, using PyTorch's formulas; parameters without .grad
 * are skipped. Errors on creation: AG_EINVAL (n == 0, a bad hyper-parameter, with the
 * message PyTorch gives, numbers as Python's repr writes them: "Invalid learning rate:
 * -1.0"), AG_ELEAF (non-leaf parameter), AG_EDTYPE (non-float parameter). Also AG_EINVAL,
 * where PyTorch 1.13 accepts them: a tensor listed twice ("params[0] and params[2] are the
 * same tensor"; PyTorch warns, then updates it twice per step, a likely mistake) and an
 * expanded parameter (stride 0 over a dimension of size > 1; PyTorch's in-place update then
 * fails at step()), and a NaN or infinite hyper-parameter (PyTorch's SGD lets a NaN lr,
 * momentum or weight_decay through, and then writes NaN into every parameter). */

/** torch.optim.SGD: defaults lr required, momentum 0, dampening 0, weight_decay 0,
 *  nesterov 0 (nesterov needs momentum > 0 and dampening 0). */
AG_API int ag_optimizer_sgd(ag_optimizer **out, ag_tensor *const *params, size_t n, double lr,
                            double momentum, double dampening, double weight_decay,
                            int nesterov);
/** torch.optim.Adam: defaults lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 0
 *  (L2, added to the gradient), amsgrad 0. */
AG_API int ag_optimizer_adam(ag_optimizer **out, ag_tensor *const *params, size_t n,
                             double lr, double beta1, double beta2, double eps,
                             double weight_decay, int amsgrad);
/** torch.optim.AdamW: as Adam with decoupled weight decay (default 1e-2). */
AG_API int ag_optimizer_adamw(ag_optimizer **out, ag_tensor *const *params, size_t n,
                              double lr, double beta1, double beta2, double eps,
                              double weight_decay, int amsgrad);
/** Applies one update. Errors: AG_ESHAPE/AG_EDTYPE if a .grad no longer matches its
 *  parameter (checked for all parameters before any is updated). A .grad in its parameter's
 *  memory (p.detach(), a view of p) is read as PyTorch reads it: after AdamW's decay of p, and
 *  all of it before p is written; plain SGD (no momentum, no weight decay) refuses a dense one
 *  that overlaps p other than element for element, with PyTorch's AG_EINVAL "unsupported
 *  operation: some elements of the input tensor and the written-to tensor refer to a single
 *  memory location ...". */
AG_API int ag_optimizer_step(ag_optimizer *opt);
/** Drops every parameter's .grad when set_to_none is nonzero; else zeroes each in place, on
 *  the .grad tensor itself, as PyTorch's zero_grad(set_to_none=False): detached first if it has
 *  a grad_fn, else set not to require grad (see ag_tensor_zero_grad, also for the errors).
 *  Every .grad is checked before any changes: a failing call changes nothing. */
AG_API int ag_optimizer_zero_grad(ag_optimizer *opt, int set_to_none);
/** The learning rate. */
AG_API int ag_optimizer_get_lr(double *out, const ag_optimizer *opt);
/** Sets the learning rate. Errors: AG_EINVAL if lr < 0 or not finite. */
AG_API int ag_optimizer_set_lr(ag_optimizer *opt, double lr);
/** Takes one more reference to an optimizer. */
AG_API int ag_optimizer_retain(ag_optimizer *opt);
/** Drops a reference; the last one frees the optimizer's state. NULL is ignored. */
AG_API void ag_optimizer_release(ag_optimizer *opt);

#ifdef __cplusplus
}
#endif
#endif /* AUTOGRAD_H */
