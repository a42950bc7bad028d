/*
 * dtype.c: dtype names and PyTorch's promotion rules (c10/core/ScalarType.h, result_type).
 */
#include "dtype.h"

#include <math.h>

const char *dtype_name(dtype d)
{
    static const char *names[DT_COUNT] = {"float32", "float64", "int64", "bool"};
    return dtype_valid(d) ? names[d] : "unknown";
}

dtype dtype_promote(dtype a, dtype b)
{
    if (a == b) return a;
    int ca = dtype_category(a), cb = dtype_category(b);
    if (ca != cb) return ca > cb ? a : b;
    /* Same category, different dtypes: only floats have two members. */
    return DT_F64;
}

void promo_add_tensor(promo *p, dtype d, int ndim)
{
    int lvl = ndim > 0 ? 0 : 1;
    p->dt[lvl] = p->have[lvl] ? dtype_promote(p->dt[lvl], d) : d;
    p->have[lvl] = 1;
}

void promo_add_scalar(promo *p, double v)
{
    /* Python scalars: float -> default float dtype, int -> int64 (their "wrapped" dtypes).
     * An integral value outside int64's range can only have been a float (1e30). */
    dtype d = (v == trunc(v) && v >= -0x1p63 && v < 0x1p63) ? DT_I64 : DT_DEFAULT_FLOAT;
    p->dt[2] = p->have[2] ? dtype_promote(p->dt[2], d) : d;
    p->have[2] = 1;
}

dtype promo_result(const promo *p)
{
    /* Walk from the highest priority down; a lower level only matters when it is of a
     * strictly higher category, and then it contributes its category's default dtype
     * (scalars) or its own dtype (zero-dim tensors). */
    int started = 0;
    dtype r = DT_BOOL;
    for (int lvl = 0; lvl < 3; lvl++) {
        if (!p->have[lvl]) continue;
        dtype d = p->dt[lvl];
        if (!started) {
            r = d;
            started = 1;
        } else if (dtype_category(d) > dtype_category(r)) {
            r = (lvl == 2 && dtype_category(d) == 2) ? DT_DEFAULT_FLOAT : d;
        }
    }
    return r;
}
