/* TEMPORARY stubs, deleted as the real implementations land. */
#include "../ops.h"

eng_err op_matmul(tensor **out, tensor *a, tensor *b)
{
    (void)out;
    (void)a;
    (void)b;
    return err_set(E_INTERNAL, "matmul is not implemented yet");
}

eng_err op_mm(tensor **out, tensor *a, tensor *b)
{
    (void)out;
    (void)a;
    (void)b;
    return err_set(E_INTERNAL, "mm is not implemented yet");
}

eng_err op_linear(tensor **out, tensor *x, tensor *w, tensor *b)
{
    (void)out;
    (void)x;
    (void)w;
    (void)b;
    return err_set(E_INTERNAL, "linear is not implemented yet");
}
