/*
 * error.c: the calling thread's last engine failure (thread-local by design).
 */
#include <stdint.h>
#include "error.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The kind and a pointer are thread-local; the message itself is on the heap, made at the
 * thread's first failure and freed when the thread exits. A 512-byte buffer in thread-local
 * storage would sit in the static TLS block that the library's initial-exec variables (the
 * allocator's and the reclaim list's, read on every call) impose on all of its TLS: a
 * program that dlopens the library late (Lua's require, Python's ctypes) gets it from a
 * surplus of ~1.6 KB that every such library shares, and dlopen fails when it runs out.
 * The buffers are also on a process-wide list, as the allocator's pools are: in a child
 * made by fork() the other threads are gone, their exit never comes, and only the list
 * still reaches their buffers (leak checkers called them lost there). */
typedef struct msg_block {
    struct msg_block *prev, *next;
    char text[ERR_MSG_CAP];
} msg_block;

static _Thread_local eng_err last_kind;
static _Thread_local char *last_msg;
static _Thread_local unsigned last_gen; /* bumped by every message set (err_mark) */
static pthread_key_t msg_key;
static pthread_once_t msg_once = PTHREAD_ONCE_INIT;
static msg_block *all_msgs;
static pthread_mutex_t all_msgs_lock = PTHREAD_MUTEX_INITIALIZER;

/* Runs at thread exit. A destructor of another key that fails after this one (glibc runs
 * them in rounds) makes a new buffer and registers it again. */
static void msg_free(void *p)
{
    msg_block *b = p;
    last_msg = NULL;
    pthread_mutex_lock(&all_msgs_lock);
    if (b->prev) b->prev->next = b->next;
    else all_msgs = b->next;
    if (b->next) b->next->prev = b->prev;
    pthread_mutex_unlock(&all_msgs_lock);
    free(b);
}
/* (A fork while another thread holds the list's lock would leave it held in the child.) */
static void msgs_lock(void) { pthread_mutex_lock(&all_msgs_lock); }
static void msgs_unlock(void) { pthread_mutex_unlock(&all_msgs_lock); }
static void msg_key_init(void)
{
    (void)pthread_key_create(&msg_key, msg_free);
    (void)pthread_atfork(msgs_lock, msgs_unlock, msgs_unlock);
}

/* The calling thread's message buffer, made on first use; NULL if memory ran out (the kind
 * is still recorded, and err_message says that the text was lost). */
static char *msg_buf(void)
{
    if (last_msg) return last_msg;
    pthread_once(&msg_once, msg_key_init);
    msg_block *b = malloc(sizeof *b);
    if (!b) return NULL;
    if (pthread_setspecific(msg_key, b)) {
        free(b);
        return NULL;
    }
    pthread_mutex_lock(&all_msgs_lock);
    b->prev = NULL;
    b->next = all_msgs;
    if (all_msgs) all_msgs->prev = b;
    all_msgs = b;
    pthread_mutex_unlock(&all_msgs_lock);
    b->text[0] = 0;
    return last_msg = b->text;
}

static void set_message(eng_err kind, const char *text)
{
    last_kind = kind;
    last_gen++;
    char *b = msg_buf();
    if (b) snprintf(b, ERR_MSG_CAP, "%s", text);
}

eng_err err_set(eng_err kind, const char *fmt, ...)
{
    /* Format into a scratch buffer first: the arguments may point into the current message
     * (a message wrapping the previous one). */
    char buf[ERR_MSG_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    set_message(kind, buf);
    return kind;
}

eng_err err_nomem(void) { return err_set(E_NOMEM, "out of memory"); }
eng_err err_kind(void) { return last_kind; }
const char *err_message(void)
{
    if (last_msg) return last_msg;
    return last_kind ? "(the message was lost: no memory to store it)" : "";
}

void err_clear(void)
{
    last_kind = E_OK;
    if (last_msg) last_msg[0] = 0;
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

unsigned err_mark(void) { return last_gen; }

const char *err_callback_tail(char *buf, size_t cap, unsigned mark)
{
    if (last_gen == mark || !last_msg || !last_msg[0]) return "";
    snprintf(buf, cap, ": %s", last_msg);
    return buf;
}

void err_capture(err_saved *s)
{
    s->kind = last_kind;
    snprintf(s->msg, sizeof s->msg, "%s", err_message());
}

eng_err err_restore(const err_saved *s)
{
    set_message(s->kind, s->msg);
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
