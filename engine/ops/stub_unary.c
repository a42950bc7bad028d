/* TEMPORARY stubs, deleted as the real implementations land. */
#include "../ops.h"

eng_err op_exp(tensor **out, tensor *a)
{
    (void)out;
    (void)a;
    return err_set(E_INTERNAL, "exp is not implemented yet");
}

eng_err op_log(tensor **out, tensor *a)
{
    (void)out;
    (void)a;
    return err_set(E_INTERNAL, "log is not implemented yet");
}

eng_err op_log1p(tensor **out, tensor *a)
{
    (void)out;
    (void)a;
    return err_set(E_INTERNAL, "log1p is not implemented yet");
}

eng_err op_expm1(tensor **out, tensor *a)
{
    (void)out;
    (void)a;
    return err_set(E_INTERNAL, "expm1 is not implemented yet");
}

eng_err op_sqrt(tensor **out, tensor *a)
{
    (void)out;
    (void)a;
    return err_set(E_INTERNAL, "sqrt is not implemented yet");
}

eng_err op_rsqrt(tensor **out, tensor *a)
{
    (void)out;
    (void)a;
    return err_set(E_INTERNAL, "rsqrt is not implemented yet");
}

eng_err op_abs(tensor **out, tensor *a)
{
    (void)out;
    (void)a;
    return err_set(E_INTERNAL, "abs is not implemented yet");
}

eng_err op_sign(tensor **out, tensor *a)
{
    (void)out;
    (void)a;
    return err_set(E_INTERNAL, "sign is not implemented yet");
}

eng_err op_sin(tensor **out, tensor *a)
{
    (void)out;
    (void)a;
    return err_set(E_INTERNAL, "sin is not implemented yet");
}

eng_err op_cos(tensor **out, tensor *a)
{
    (void)out;
    (void)a;
    return err_set(E_INTERNAL, "cos is not implemented yet");
}

eng_err op_tanh(tensor **out, tensor *a)
{
    (void)out;
    (void)a;
    return err_set(E_INTERNAL, "tanh is not implemented yet");
}

eng_err op_sigmoid(tensor **out, tensor *a)
{
    (void)out;
    (void)a;
    return err_set(E_INTERNAL, "sigmoid is not implemented yet");
}

eng_err op_relu(tensor **out, tensor *a)
{
    (void)out;
    (void)a;
    return err_set(E_INTERNAL, "relu is not implemented yet");
}

eng_err op_leaky_relu(tensor **out, tensor *a, double slope)
{
    (void)out;
    (void)a;
    (void)slope;
    return err_set(E_INTERNAL, "leaky_relu is not implemented yet");
}

eng_err op_gelu(tensor **out, tensor *a, bool approximate_tanh)
{
    (void)out;
    (void)a;
    (void)approximate_tanh;
    return err_set(E_INTERNAL, "gelu is not implemented yet");
}

eng_err op_silu(tensor **out, tensor *a)
{
    (void)out;
    (void)a;
    return err_set(E_INTERNAL, "silu is not implemented yet");
}

eng_err op_softplus(tensor **out, tensor *a, double beta, double threshold)
{
    (void)out;
    (void)a;
    (void)beta;
    (void)threshold;
    return err_set(E_INTERNAL, "softplus is not implemented yet");
}

eng_err op_clamp(tensor **out, tensor *a, bool has_lo, double lo, bool has_hi, double hi)
{
    (void)out;
    (void)a;
    (void)has_lo;
    (void)lo;
    (void)has_hi;
    (void)hi;
    return err_set(E_INTERNAL, "clamp is not implemented yet");
}
