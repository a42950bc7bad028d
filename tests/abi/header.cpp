// header.cpp: the public header compiles as C++ (warnings are errors for this file).
#include "autograd.h"

int main()
{
    ag_tensor *t = nullptr;
    int rc = ag_tensor_scalar(&t, 1.0, AG_FLOAT32);
    ag_tensor_release(t);
    return rc == AG_OK ? 0 : 1;
}
