/*
 * dtype.h: element types, their sizes and names, and PyTorch's type-promotion rules.
 */
#ifndef AG_DTYPE_H
#define AG_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum dtype { DT_F32 = 0, DT_F64 = 1, DT_I64 = 2, DT_BOOL = 3 } dtype;
#define DT_COUNT 4

static inline bool dtype_valid(int d) { return d >= 0 && d < DT_COUNT; }
static inline bool dtype_is_float(dtype d) { return d == DT_F32 || d == DT_F64; }
static inline size_t dtype_size(dtype d)
{
    static const size_t sz[DT_COUNT] = {4, 8, 8, 1};
    return sz[d];
}
/** "float32", "float64", "int64", "bool" (as torch.<name>). */
const char *dtype_name(dtype d);

/** Promotion category: bool < integer < floating. */
static inline int dtype_category(dtype d) { return d == DT_BOOL ? 0 : d == DT_I64 ? 1 : 2; }

/** PyTorch's promote_types for two dtypes. */
dtype dtype_promote(dtype a, dtype b);

/** The operands of an op as PyTorch's result_type sees them: dimensioned tensors outrank
 *  zero-dim tensors, which outrank Python scalars, unless a lower-priority operand belongs to a
 *  higher category (an int tensor times 2.5 is float). */
typedef struct promo {
    int have[3];    /* per priority: 0 dim tensors, 1 zero-dim tensors, 2 scalars */
    dtype dt[3];
} promo;
static inline void promo_init(promo *p) { p->have[0] = p->have[1] = p->have[2] = 0; }
void promo_add_tensor(promo *p, dtype d, int ndim);
/** A double scalar counts as an integer scalar when it is integral, else as a float scalar. */
void promo_add_scalar(promo *p, double v);
dtype promo_result(const promo *p);

/** The default float dtype (torch.get_default_dtype()). */
#define DT_DEFAULT_FLOAT DT_F32

#endif
