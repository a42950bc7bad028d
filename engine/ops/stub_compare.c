/* TEMPORARY stubs, deleted as the real implementations land. */
#include "../ops.h"

eng_err op_compare(tensor **out, tensor *a, tensor *b, cmp_kind k)
{
    (void)out;
    (void)a;
    (void)b;
    (void)k;
    return err_set(E_INTERNAL, "compare is not implemented yet");
}

eng_err op_compare_scalar(tensor **out, tensor *a, double s, cmp_kind k)
{
    (void)out;
    (void)a;
    (void)s;
    (void)k;
    return err_set(E_INTERNAL, "compare_scalar is not implemented yet");
}

eng_err op_where(tensor **out, tensor *cond, tensor *a, tensor *b)
{
    (void)out;
    (void)cond;
    (void)a;
    (void)b;
    return err_set(E_INTERNAL, "where is not implemented yet");
}

eng_err op_masked_fill(tensor **out, tensor *t, tensor *mask, double v)
{
    (void)out;
    (void)t;
    (void)mask;
    (void)v;
    return err_set(E_INTERNAL, "masked_fill is not implemented yet");
}

eng_err op_maximum(tensor **out, tensor *a, tensor *b)
{
    (void)out;
    (void)a;
    (void)b;
    return err_set(E_INTERNAL, "maximum is not implemented yet");
}

eng_err op_minimum(tensor **out, tensor *a, tensor *b)
{
    (void)out;
    (void)a;
    (void)b;
    return err_set(E_INTERNAL, "minimum is not implemented yet");
}
