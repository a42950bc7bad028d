/*
 * boundary.h: the thin layer between the public ABI and the engine: handle casts, argument
 * checks, and the translation of engine failures into status codes and messages that name
 * the public function ("ag_matmul: shapes [2, 3] and [4, 5] cannot be multiplied").
 */
#ifndef AG_BOUNDARY_H
#define AG_BOUNDARY_H

#include "autograd.h"
#include "../engine/engine.h"
#include "../engine/ops.h"

/* Handles are the engine's objects seen through opaque types. */
#define T(h) ((tensor *)(h))
#define TH(t) ((ag_tensor *)(t))
#define N(h) ((node *)(h))
#define NH(n) ((ag_node *)(n))

/** Turns the engine's last failure into a status, prefixing the message with `fn`. */
int api_fail(const char *fn, eng_err e);
/** Records a failure detected at the boundary (printf-style message after "fn: "). */
int api_error(const char *fn, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/** The public code of an engine error kind. */
int api_status(eng_err e);

#define CHECK_NOT_NULL(fn, p, name)                                                        \
    do {                                                                                   \
        if (!(p)) return api_error(fn, AG_EINVAL, "argument '%s' is NULL", name);          \
    } while (0)

#define CHECK_DIMS(fn, n, name)                                                            \
    do {                                                                                   \
        if ((n) > AG_MAX_DIMS)                                                             \
            return api_error(fn, AG_ERANGE, "%s has %zu entries; at most %d dimensions",   \
                             name, (size_t)(n), AG_MAX_DIMS);                              \
    } while (0)

/* A shape argument: pointer may be NULL only when ndim is 0. */
#define CHECK_SHAPE(fn, shape, ndim)                                                       \
    do {                                                                                   \
        CHECK_DIMS(fn, ndim, "shape");                                                     \
        if ((ndim) && !(shape)) return api_error(fn, AG_EINVAL, "argument 'shape' is NULL"); \
    } while (0)

/* Returns the status of an engine call that produced a tensor into *out. */
#define RETURN_TENSOR(fn, out, call)                                                       \
    do {                                                                                   \
        tensor *r_;                                                                        \
        eng_err e_ = (call);                                                               \
        if (e_) return api_fail(fn, e_);                                                   \
        *(out) = TH(r_);                                                                   \
        return AG_OK;                                                                      \
    } while (0)

#endif
