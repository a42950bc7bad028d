/*
 * format.h: tensors printed the way PyTorch prints them (torch/_tensor_str.py).
 */
#ifndef AG_FORMAT_H
#define AG_FORMAT_H

#include "tensor.h"

/** A new string (free with mem_free) such as "tensor([[1., 2.],\n        [3., 4.]],
 *  grad_fn=<AddBackward0>)". */
eng_err tensor_format(char **out, const tensor *t);

#endif
