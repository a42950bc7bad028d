/*
 * error.c: the calling thread's last engine failure (thread-local by design).
 */
#include <stdint.h>
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local err_saved last;

eng_err err_set(eng_err kind, const char *fmt, ...)
{
    /* Format into a scratch buffer first: the arguments may point into last.msg (a message
     * wrapping the previous one). */
    char buf[sizeof last.msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    memcpy(last.msg, buf, sizeof buf);
    last.kind = kind;
    return kind;
}

eng_err err_nomem(void) { return err_set(E_NOMEM, "out of memory"); }
eng_err err_kind(void) { return last.kind; }
const char *err_message(void) { return last.msg; }

void err_clear(void)
{
    last.kind = E_OK;
    last.msg[0] = 0;
}

const char *err_status_name(int status)
{
    static const char *names[] = {"AG_OK",      "AG_EINVAL",   "AG_EDTYPE",   "AG_ESHAPE",
                                  "AG_ERANGE",  "AG_ENOGRAD",  "AG_EGRAPH",   "AG_EVERSION",
                                  "AG_ELEAF",   "AG_ENOMEM",   "AG_EANOMALY", "AG_ECALLBACK",
                                  "AG_EINTERNAL"};
    _Static_assert(sizeof names / sizeof names[0] == E_INTERNAL + 1, "one name per kind");
    if (status < 0 || status > E_INTERNAL) return NULL;
    return names[status];
}

const char *err_callback_status(char *buf, size_t cap, int status)
{
    const char *name = err_status_name(status);
    if (name) snprintf(buf, cap, "status %d (%s)", status, name);
    else snprintf(buf, cap, "status %d", status);
    return buf;
}

const char *err_callback_tail(char *buf, size_t cap)
{
    if (!last.msg[0]) return "";
    snprintf(buf, cap, ": %s", last.msg);
    return buf;
}

void err_capture(err_saved *s) { *s = last; }

eng_err err_restore(const err_saved *s)
{
    last = *s;
    return s->kind;
}

const char *fmt_shape(char *buf, size_t cap, const int64_t *shape, int ndim)
{
    size_t n = 0;
    n += (size_t)snprintf(buf + n, cap - n, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}
