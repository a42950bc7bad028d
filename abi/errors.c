/*
 * errors.c: status codes, the per-thread last-error message, versions and process settings.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../engine/alloc.h"
#include "../engine/defer.h"
#include "../engine/parallel.h"
#include "boundary.h"

/* The engine's kinds and the public codes are kept in step. */
_Static_assert((int)E_INVAL == AG_EINVAL && (int)E_DTYPE == AG_EDTYPE && (int)E_SHAPE == AG_ESHAPE &&
                   (int)E_RANGE == AG_ERANGE && (int)E_NOGRAD == AG_ENOGRAD &&
                   (int)E_GRAPH == AG_EGRAPH && (int)E_VERSION == AG_EVERSION &&
                   (int)E_LEAF == AG_ELEAF && (int)E_NOMEM == AG_ENOMEM &&
                   (int)E_ANOMALY == AG_EANOMALY && (int)E_CALLBACK == AG_ECALLBACK &&
                   (int)E_INTERNAL == AG_EINTERNAL,
               "engine error kinds must match the public status codes");
_Static_assert(AG_MAX_DIMS == MAX_DIMS, "AG_MAX_DIMS must match the engine");
_Static_assert((int)AG_FLOAT32 == (int)DT_F32 && (int)AG_FLOAT64 == (int)DT_F64 &&
                   (int)AG_INT64 == (int)DT_I64 && (int)AG_BOOL == (int)DT_BOOL,
               "dtype values must match the engine");

int api_status(eng_err e) { return (int)e; }

int api_fail(const char *fn, eng_err e)
{
    char msg[512];
    snprintf(msg, sizeof msg, "%s", err_message());
    if (e == E_NOMEM && !msg[0]) snprintf(msg, sizeof msg, "out of memory");
    /* Already prefixed by a nested public call (a callback's failure): keep it whole. */
    if (strncmp(msg, fn, strlen(fn)) == 0 && msg[strlen(fn)] == ':')
        err_set(e, "%s", msg);
    else
        err_set(e, "%s: %s", fn, msg);
    return api_status(e);
}

int api_error(const char *fn, int status, const char *fmt, ...)
{
    char msg[448];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    err_set((eng_err)status, "%s: %s", fn, msg);
    return status;
}

AG_API int ag_version_number(void) { return AG_VERSION_NUMBER; }
AG_API const char *ag_version_string(void) { return AG_VERSION_STRING; }

AG_API const char *ag_last_error(void) { return err_kind() ? err_message() : ""; }
AG_API int ag_last_status(void) { return api_status(err_kind()); }
AG_API void ag_clear_error(void) { err_clear(); }

AG_API const char *ag_status_name(int status)
{
    const char *name = err_status_name(status);
    return name ? name : "AG_UNKNOWN";
}

AG_API int ag_set_error(int status, const char *message)
{
    if (status == AG_OK) { /* not a failure: there is nothing to record */
        err_clear();
        return AG_OK;
    }
    err_set(status > AG_OK && status <= AG_EINTERNAL ? (eng_err)status : E_CALLBACK, "%s",
            message ? message : "");
    return status;
}

AG_API int ag_set_allocator(const ag_allocator *a)
{
    if (!a) {
        defer_flush();
        mem_set_allocator(NULL, NULL, NULL);
        return AG_OK;
    }
    if (!a->alloc || !a->free)
        return api_error("ag_set_allocator", AG_EINVAL, "alloc and free must both be set");
    defer_flush(); /* queued kernels allocate through the allocator they were queued under */
    if (!mem_set_allocator(a->alloc, a->free, a->userdata))
        return api_error("ag_set_allocator", AG_ENOMEM, "out of memory");
    return AG_OK;
}

AG_API int ag_set_num_threads(int n)
{
    if (n < 0 || n > 1024)
        return api_error("ag_set_num_threads", AG_EINVAL, "thread count %d is outside [0, 1024]", n);
    par_set_num_threads(n);
    return AG_OK;
}

AG_API int ag_get_num_threads(void) { return par_num_threads(); }

AG_API int ag_set_deferral_enabled(int enabled)
{
    bool prev = defer_enabled();
    defer_enable(enabled != 0);
    return prev;
}

AG_API int ag_is_deferral_enabled(void) { return defer_enabled(); }

AG_API int ag_synchronize(void)
{
    defer_flush();
    return AG_OK;
}

AG_API uint64_t ag_memory_in_use(void) { return (uint64_t)mem_large_in_use(); }

AG_API int ag_set_grad_enabled(int enabled) { return grad_mode_set(enabled != 0); }
AG_API int ag_is_grad_enabled(void) { return grad_mode_enabled(); }
AG_API int ag_set_anomaly_enabled(int enabled) { return anomaly_mode_set(enabled != 0); }
AG_API int ag_is_anomaly_enabled(void) { return anomaly_mode_enabled(); }
