/*
 * ewise.h: shared plumbing for elementwise ops (no autograd here; the ops record their nodes).
 */
#ifndef AG_EWISE_H
#define AG_EWISE_H

#include "../kernels/ew.h"
#include "../kernels/iter.h"
#include "../ops.h"
#include "../parallel.h"

/* int64 arithmetic that wraps on overflow (two's complement), as PyTorch's does: C leaves
 * signed overflow undefined, so it goes through uint64_t (the conversion back is gcc's and
 * clang's modulo one). The float kernels use the operators; these stand in for int64. */
static inline int64_t i64_add(int64_t a, int64_t b) { return (int64_t)((uint64_t)a + (uint64_t)b); }
static inline int64_t i64_sub(int64_t a, int64_t b) { return (int64_t)((uint64_t)a - (uint64_t)b); }
static inline int64_t i64_mul(int64_t a, int64_t b) { return (int64_t)((uint64_t)a * (uint64_t)b); }
static inline int64_t i64_neg(int64_t a) { return (int64_t)(0 - (uint64_t)a); }
#define NEG_OP(a) (-(a))
#define ADD_OP(a, b) ((a) + (b))
#define SUB_OP(a, b) ((a) - (b))
#define MUL_OP(a, b) ((a) * (b))

/** t converted to dt: t itself (retained) if it already is dt, else a contiguous copy
 *  (internal: for kernels that read the data directly). */
eng_err cast_raw(tensor **out, tensor *t, dtype dt);

/** A new tensor of dtype odt, shaped as the broadcast of ins[0..nin), computed by `loop` over
 *  the inputs converted to idt. params[0..np) (np <= 4; params may be NULL when np is 0)
 *  reach the loop as P. Laid out as PyTorch lays out a TensorIterator's result: contiguous
 *  for contiguous operands, else following the operands' layout (permuted inputs give a
 *  permuted result). The kernel may be deferred (defer.h): it then runs, with a copy of
 *  the parameters, when the result or an operand is next accessed. */
eng_err ew_map(tensor **out, dtype odt, dtype idt, tensor *const *ins, int nin, iter_loop loop,
               const double *params, int np, int64_t grain);
/** ew_map's 0-d case, inline for the ops that scalar graphs make several of per node (forward
 *  and backward): when ins[0..nin) (nin <= ITER_MAX_ARGS - 1) are all 0-d, of dtype idt and
 *  with no pending work (defer.h), runs `loop` on their elements at once into a fresh 0-d
 *  tensor of dtype odt (*out; *e says whether that allocation failed) and returns true. It
 *  returns false, having done nothing, otherwise: ew_map then takes the operands (a pending
 *  one is queued behind, out of line). ew_map's generic dispatch costs more than the rest of
 *  such an op; this gives the same tensor, dtype and bits. */
static inline bool ew_scalar_now(eng_err *e, tensor **out, dtype odt, dtype idt,
                                 tensor *const *ins, int nin, iter_loop loop,
                                 const double *params)
{
    for (int k = 0; k < nin; k++)
        if (ins[k]->ndim != 0 || ins[k]->dtype != idt ||
            atomic_load_explicit(&ins[k]->st->pend, memory_order_acquire) != 0)
            return false;
    tensor *r = tensor_new_scalar(odt);
    if (!r) {
        *e = err_kind();
        return true;
    }
    static const int64_t st[ITER_MAX_ARGS];
    char *d[ITER_MAX_ARGS];
    d[0] = tensor_data_unchecked(r); /* fresh */
    for (int k = 0; k < nin; k++) d[k + 1] = tensor_data_unchecked(ins[k]);
    loop(d, st, 1, (void *)params);
    *out = r;
    *e = E_OK;
    return true;
}

/** ew_map of `a` and a scalar in params, laid out as PyTorch lays out a + 2 (the scalar is an
 *  operand of another shape there: no fast layout path, which matters for the strides of
 *  size-1 dimensions only). */
eng_err ew_map_wrapped(tensor **out, dtype odt, dtype idt, tensor *a, iter_loop loop,
                       const double *params, int np, int64_t grain);

/** The strides PyTorch's TensorIterator gives a result of `shape` computed from ins[0..nin)
 *  (`wrapped`: with a scalar operand besides them, as in x + 2). Returns true for the
 *  contiguous layout (st untouched), else writes the strides to st. */
bool ew_layout(int64_t *st, const int64_t *shape, int nd, tensor *const *ins, int nin,
               bool wrapped);

/** The operand that lays out a result in t's place when the op computes in dtype idt:
 *  PyTorch 1.13 converts an operand of another dtype with .to() before its TensorIterator
 *  (and where, before its own) orders the result's dimensions, and that copy has t's strides
 *  if t is dense, else dense strides in t's order (infer_dense_strides: stride-0 dimensions
 *  unordered). So an expanded int64 operand, which orders nothing itself, becomes a
 *  contiguous one that orders every dimension. Returns t itself, or `shadow` (sizes shared
 *  with t, strides in st[ndim]) standing for that copy: for ew_layout only. */
tensor *ew_layout_operand(tensor *shadow, int64_t *st, tensor *t, dtype idt);

/** Same, writing into an existing tensor `out` (in-place ops); ins broadcast to out's shape. */
eng_err ew_map_into(tensor *out, dtype idt, tensor *const *ins, int nin, iter_loop loop,
                    const double *params, int64_t grain);

/** A float32 and a float64 loop, picked by dtype. */
typedef struct loop_pair {
    iter_loop f32, f64;
} loop_pair;
static inline iter_loop pick(const loop_pair *p, dtype dt) { return dt == DT_F32 ? p->f32 : p->f64; }

/** The dtype for an op on float tensors only: E_DTYPE naming `op` otherwise. */
eng_err require_float(const tensor *t, const char *op);
/** PyTorch's refusal of subtraction with bool operands (`two`: both are bool). */
eng_err bool_sub_error(bool two);

/** The dtype of a unary float function applied to t: t's dtype if float, else the default
 *  float (torch.exp(int_tensor) is float32). Bool is refused. */
eng_err unary_float_dtype(const tensor *t, const char *op, dtype *out);

#endif
