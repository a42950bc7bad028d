/* TEMPORARY stubs, deleted as the real implementations land. */
#include "../ops.h"

eng_err op_softmax(tensor **out, tensor *t, int64_t dim)
{
    (void)out;
    (void)t;
    (void)dim;
    return err_set(E_INTERNAL, "softmax is not implemented yet");
}

eng_err op_log_softmax(tensor **out, tensor *t, int64_t dim)
{
    (void)out;
    (void)t;
    (void)dim;
    return err_set(E_INTERNAL, "log_softmax is not implemented yet");
}

eng_err op_cross_entropy(tensor **out, tensor *input, tensor *target, tensor *weight,
                         int reduction, int64_t ignore_index, double label_smoothing)
{
    (void)out;
    (void)input;
    (void)target;
    (void)weight;
    (void)reduction;
    (void)ignore_index;
    (void)label_smoothing;
    return err_set(E_INTERNAL, "cross_entropy is not implemented yet");
}

eng_err op_nll_loss(tensor **out, tensor *input, tensor *target, tensor *weight, int reduction,
                    int64_t ignore_index)
{
    (void)out;
    (void)input;
    (void)target;
    (void)weight;
    (void)reduction;
    (void)ignore_index;
    return err_set(E_INTERNAL, "nll_loss is not implemented yet");
}

eng_err op_mse_loss(tensor **out, tensor *input, tensor *target, int reduction)
{
    (void)out;
    (void)input;
    (void)target;
    (void)reduction;
    return err_set(E_INTERNAL, "mse_loss is not implemented yet");
}

eng_err op_bce_with_logits(tensor **out, tensor *input, tensor *target, tensor *weight,
                           tensor *pos_weight, int reduction)
{
    (void)out;
    (void)input;
    (void)target;
    (void)weight;
    (void)pos_weight;
    (void)reduction;
    return err_set(E_INTERNAL, "bce_with_logits is not implemented yet");
}

eng_err op_dropout(tensor **out, struct generator *g, tensor *t, double p, bool training)
{
    (void)out;
    (void)g;
    (void)t;
    (void)p;
    (void)training;
    return err_set(E_INTERNAL, "dropout is not implemented yet");
}

eng_err op_layer_norm(tensor **out, tensor *x, const int64_t *nshape, int nd, tensor *w,
                      tensor *b, double eps)
{
    (void)out;
    (void)x;
    (void)nshape;
    (void)nd;
    (void)w;
    (void)b;
    (void)eps;
    return err_set(E_INTERNAL, "layer_norm is not implemented yet");
}

eng_err op_embedding(tensor **out, tensor *weight, tensor *indices)
{
    (void)out;
    (void)weight;
    (void)indices;
    return err_set(E_INTERNAL, "embedding is not implemented yet");
}
