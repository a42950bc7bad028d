/*
 * error.h: how the engine reports failure. Engine functions return an eng_err (0 = success)
 * and leave a message for the calling thread; the ABI layer maps kinds to its public status
 * codes and prefixes the message with the public function's name.
 */
#ifndef AG_ERROR_H
#define AG_ERROR_H

#include <stddef.h>

typedef enum eng_err {
    E_OK = 0,
    E_INVAL,    /* invalid argument or option */
    E_DTYPE,    /* dtype not supported / mismatched */
    E_SHAPE,    /* shapes incompatible */
    E_RANGE,    /* dim or index out of range, buffer too small */
    E_NOGRAD,   /* tensor does not require grad */
    E_GRAPH,    /* graph already freed */
    E_VERSION,  /* saved tensor modified in place */
    E_LEAF,     /* in-place on leaf requiring grad / requires_grad on non-leaf */
    E_NOMEM,    /* allocation failed */
    E_ANOMALY,  /* NaN/Inf produced in backward under anomaly mode */
    E_CALLBACK, /* user callback failed */
    E_INTERNAL  /* library bug */
} eng_err;

/** Records a failure for the calling thread (printf-style message) and returns `kind`. */
eng_err err_set(eng_err kind, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/** The kind to report when a user callback returned status rc: the library's own kinds pass
 *  through (a callback that forwards AG_EVERSION from a library call reports AG_EVERSION),
 *  anything else becomes E_CALLBACK. */
static inline eng_err err_of_callback(int rc)
{
    return rc > E_OK && rc <= E_INTERNAL ? (eng_err)rc : E_CALLBACK;
}

/** The public name of a status ("AG_ESHAPE"; the engine's kinds have the same numbers), or
 *  NULL for a number that is not one. */
const char *err_status_name(int status);
/** "status 3 (AG_ESHAPE)", or "status 42" for a number that is not a status: how messages
 *  about a failed user callback name what it returned. */
const char *err_callback_status(char *buf, size_t cap, int status);
/** Where the calling thread's messages stand: taken before a user callback runs, so that
 *  err_callback_tail can tell a message the callback left from an earlier one. (The last
 *  failure is not cleared for that: a callback that succeeds leaves it as it was, as
 *  ag_last_error promises.) */
unsigned err_mark(void);
/** ": message" for a message a user callback left since err_mark() gave `mark`, or "" if it
 *  left none: the tail of the library's own message about the failure. */
const char *err_callback_tail(char *buf, size_t cap, unsigned mark);

/** Records an out-of-memory failure. */
eng_err err_nomem(void);
/** The calling thread's last failure. */
eng_err err_kind(void);
const char *err_message(void);
void err_clear(void);

/** A failure captured on one thread (a backward worker) to be re-raised on another. */
/** Room for a message, its terminating NUL included; longer ones are cut. */
#define ERR_MSG_CAP 512
typedef struct err_saved {
    eng_err kind;
    char msg[ERR_MSG_CAP];
} err_saved;
void err_capture(err_saved *s);
eng_err err_restore(const err_saved *s);

/** Formats a shape as "[2, 3]" into buf. */
const char *fmt_shape(char *buf, size_t cap, const int64_t *shape, int ndim);

#endif
