/* TEMPORARY stubs, deleted as the real implementations land. */
#include "../ops.h"

eng_err op_index_select(tensor **out, tensor *t, int64_t dim, tensor *index)
{
    (void)out;
    (void)t;
    (void)dim;
    (void)index;
    return err_set(E_INTERNAL, "index_select is not implemented yet");
}

eng_err op_index_add(tensor **out, tensor *t, int64_t dim, tensor *index, tensor *src)
{
    (void)out;
    (void)t;
    (void)dim;
    (void)index;
    (void)src;
    return err_set(E_INTERNAL, "index_add is not implemented yet");
}

eng_err op_gather(tensor **out, tensor *t, int64_t dim, tensor *index)
{
    (void)out;
    (void)t;
    (void)dim;
    (void)index;
    return err_set(E_INTERNAL, "gather is not implemented yet");
}

eng_err op_scatter_add(tensor **out, tensor *t, int64_t dim, tensor *index, tensor *src)
{
    (void)out;
    (void)t;
    (void)dim;
    (void)index;
    (void)src;
    return err_set(E_INTERNAL, "scatter_add is not implemented yet");
}

eng_err op_cat(tensor **out, tensor *const *ts, int n, int64_t dim)
{
    (void)out;
    (void)ts;
    (void)n;
    (void)dim;
    return err_set(E_INTERNAL, "cat is not implemented yet");
}

eng_err op_stack(tensor **out, tensor *const *ts, int n, int64_t dim)
{
    (void)out;
    (void)ts;
    (void)n;
    (void)dim;
    return err_set(E_INTERNAL, "stack is not implemented yet");
}

eng_err op_split_count(int64_t *count, tensor *t, int64_t split_size, int64_t dim)
{
    (void)count;
    (void)t;
    (void)split_size;
    (void)dim;
    return err_set(E_INTERNAL, "split_count is not implemented yet");
}

eng_err op_split(tensor **outs, int n_outs, tensor *t, int64_t split_size, int64_t dim)
{
    (void)outs;
    (void)n_outs;
    (void)t;
    (void)split_size;
    (void)dim;
    return err_set(E_INTERNAL, "split is not implemented yet");
}

eng_err op_chunk_count(int64_t *count, tensor *t, int64_t chunks, int64_t dim)
{
    (void)count;
    (void)t;
    (void)chunks;
    (void)dim;
    return err_set(E_INTERNAL, "chunk_count is not implemented yet");
}

eng_err op_chunk(tensor **outs, int n_outs, tensor *t, int64_t chunks, int64_t dim)
{
    (void)outs;
    (void)n_outs;
    (void)t;
    (void)chunks;
    (void)dim;
    return err_set(E_INTERNAL, "chunk is not implemented yet");
}
