/*
 * seed.c: the seed walkthrough. y = x * x, z = 2 * y + 5, z.backward(): dz/dx = 4x = 8.
 * Prints exactly what PyTorch prints for the same four expressions.
 */
#include <stdio.h>
#include <stdlib.h>

#include "autograd.h"

static void check(int rc, const char *what)
{
    if (rc != AG_OK) {
        fprintf(stderr, "%s failed: %s\n", what, ag_last_error());
        exit(1);
    }
}

static void show(const char *label, const ag_tensor *t)
{
    char *s;
    check(ag_tensor_to_string(&s, t), "ag_tensor_to_string");
    printf("%s = %s\n", label, s);
    ag_string_free(s);
}

int main(void)
{
    ag_tensor *x, *y, *two_y, *z, *grad;
    check(ag_tensor_scalar(&x, 2.0, AG_FLOAT32), "ag_tensor_scalar");
    check(ag_tensor_set_requires_grad(x, 1), "ag_tensor_set_requires_grad");
    check(ag_mul(&y, x, x), "ag_mul");                /* y = x * x */
    check(ag_mul_scalar(&two_y, y, 2.0), "ag_mul_scalar");
    check(ag_add_scalar(&z, two_y, 5.0), "ag_add_scalar"); /* z = 2 * y + 5 */
    check(ag_backward(z, NULL, 0), "ag_backward");    /* z.backward() */
    check(ag_tensor_grad(&grad, x), "ag_tensor_grad");
    show("x", x);
    show("y", y);
    show("z", z);
    show("x.grad", grad);
    ag_tensor_release(grad);
    ag_tensor_release(z);
    ag_tensor_release(two_y);
    ag_tensor_release(y);
    ag_tensor_release(x);
    return 0;
}
