/* TEMPORARY stubs, deleted as the real implementations land. */
#include "../ops.h"

eng_err op_max_all(tensor **out, tensor *a)
{
    (void)out;
    (void)a;
    return err_set(E_INTERNAL, "max_all is not implemented yet");
}

eng_err op_min_all(tensor **out, tensor *a)
{
    (void)out;
    (void)a;
    return err_set(E_INTERNAL, "min_all is not implemented yet");
}

eng_err op_max_dim(tensor **values, tensor **indices, tensor *a, int64_t dim, bool keepdim)
{
    (void)values;
    (void)indices;
    (void)a;
    (void)dim;
    (void)keepdim;
    return err_set(E_INTERNAL, "max_dim is not implemented yet");
}

eng_err op_min_dim(tensor **values, tensor **indices, tensor *a, int64_t dim, bool keepdim)
{
    (void)values;
    (void)indices;
    (void)a;
    (void)dim;
    (void)keepdim;
    return err_set(E_INTERNAL, "min_dim is not implemented yet");
}

eng_err op_amax(tensor **out, tensor *a, const int64_t *dims, int ndims, bool keepdim)
{
    (void)out;
    (void)a;
    (void)dims;
    (void)ndims;
    (void)keepdim;
    return err_set(E_INTERNAL, "amax is not implemented yet");
}

eng_err op_amin(tensor **out, tensor *a, const int64_t *dims, int ndims, bool keepdim)
{
    (void)out;
    (void)a;
    (void)dims;
    (void)ndims;
    (void)keepdim;
    return err_set(E_INTERNAL, "amin is not implemented yet");
}

eng_err op_var(tensor **out, tensor *a, const int64_t *dims, int ndims, int64_t correction,
               bool keepdim)
{
    (void)out;
    (void)a;
    (void)dims;
    (void)ndims;
    (void)correction;
    (void)keepdim;
    return err_set(E_INTERNAL, "var is not implemented yet");
}

eng_err op_std(tensor **out, tensor *a, const int64_t *dims, int ndims, int64_t correction,
               bool keepdim)
{
    (void)out;
    (void)a;
    (void)dims;
    (void)ndims;
    (void)correction;
    (void)keepdim;
    return err_set(E_INTERNAL, "std is not implemented yet");
}

eng_err op_logsumexp(tensor **out, tensor *a, const int64_t *dims, int ndims, bool keepdim)
{
    (void)out;
    (void)a;
    (void)dims;
    (void)ndims;
    (void)keepdim;
    return err_set(E_INTERNAL, "logsumexp is not implemented yet");
}

eng_err op_norm(tensor **out, tensor *a, double p, const int64_t *dims, int ndims,
                bool keepdim)
{
    (void)out;
    (void)a;
    (void)p;
    (void)dims;
    (void)ndims;
    (void)keepdim;
    return err_set(E_INTERNAL, "norm is not implemented yet");
}

eng_err op_argmax(tensor **out, tensor *a, int64_t dim, bool keepdim)
{
    (void)out;
    (void)a;
    (void)dim;
    (void)keepdim;
    return err_set(E_INTERNAL, "argmax is not implemented yet");
}

eng_err op_argmin(tensor **out, tensor *a, int64_t dim, bool keepdim)
{
    (void)out;
    (void)a;
    (void)dim;
    (void)keepdim;
    return err_set(E_INTERNAL, "argmin is not implemented yet");
}

eng_err op_argmax_all(tensor **out, tensor *a)
{
    (void)out;
    (void)a;
    return err_set(E_INTERNAL, "argmax_all is not implemented yet");
}

eng_err op_argmin_all(tensor **out, tensor *a)
{
    (void)out;
    (void)a;
    return err_set(E_INTERNAL, "argmin_all is not implemented yet");
}
