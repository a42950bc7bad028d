/*
 * format.c: tensors printed exactly as PyTorch 1.13's str(t) prints them (torch/_tensor_str.py
 * with the default print options), so bindings and logs read the same as Python.
 */
#include "format.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "graph.h"

/* PyTorch's default print options. */
#define PRECISION 4
#define THRESHOLD 1000
#define EDGEITEMS 3
#define LINEWIDTH 80

/* ---- a growing string (mem_alloc only: ag_string_free calls mem_free) ---- */
typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool fail;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->fail) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->len + n + 1 > cap) cap *= 2;
        char *p = mem_alloc(cap);
        if (!p) {
            b->fail = true;
            return;
        }
        if (b->len) memcpy(p, b->p, b->len);
        mem_free(b->p);
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_chars(sbuf *b, char c, int64_t n)
{
    char run[64];
    memset(run, c, sizeof run);
    for (; n > 0; n -= (int64_t)sizeof run)
        sb_put(b, run, n < (int64_t)sizeof run ? (size_t)n : sizeof run);
}

/* ---- the formatter (torch._tensor_str._Formatter) ---- */
typedef struct fmt {
    const tensor *t;
    const char *base; /* first element */
    size_t esz;
    bool summarize;   /* numel > THRESHOLD: only EDGEITEMS at each end of every dim */
    bool is_float, int_mode, sci;
    int width;        /* every element is right-aligned to this */
} fmt;

/* How many entries of dim d are shown, and the index of the k-th one. */
static int64_t shown_count(const fmt *f, int d)
{
    int64_t n = f->t->shape[d];
    return f->summarize && n > 2 * EDGEITEMS ? 2 * EDGEITEMS : n;
}

static int64_t shown_index(const fmt *f, int d, int64_t k)
{
    int64_t n = f->t->shape[d];
    return f->summarize && n > 2 * EDGEITEMS && k >= EDGEITEMS ? n - 2 * EDGEITEMS + k : k;
}

static double elem_f(const fmt *f, int64_t off)
{
    const char *p = f->base + off * (int64_t)f->esz;
    switch ((dtype)f->t->dtype) {
    case DT_F32: return *(const float *)p;
    case DT_F64: return *(const double *)p;
    case DT_I64: return (double)*(const int64_t *)p;
    default: return *(const uint8_t *)p ? 1.0 : 0.0;
    }
}

/* Python's '{:.<prec>f}' / '{:.<prec>e}' of a float: glibc rounds the exact binary value
 * half-to-even as Python does; only the spelling of non-finite values differs ("nan" whatever
 * its sign bit). Enough room for the widest double in fixed point (309 digits). */
#define ELEM_CAP 352
static void py_float(char *buf, double v, char conv, int prec)
{
    if (isnan(v)) strcpy(buf, "nan");
    else if (isinf(v)) strcpy(buf, v < 0 ? "-inf" : "inf");
    else snprintf(buf, ELEM_CAP, conv == 'e' ? "%.*e" : "%.*f", prec, v);
}

/* The element at offset `off` as Formatter.format writes it, before padding. */
static void elem_text(char *buf, const fmt *f, int64_t off)
{
    const char *p = f->base + off * (int64_t)f->esz;
    if (f->t->dtype == DT_I64) {
        snprintf(buf, ELEM_CAP, "%" PRId64, *(const int64_t *)p);
    } else if (f->t->dtype == DT_BOOL) {
        strcpy(buf, *(const uint8_t *)p ? "True" : "False");
    } else {
        double v = elem_f(f, off);
        if (f->sci) {
            py_float(buf, v, 'e', PRECISION);
        } else if (f->int_mode) {
            py_float(buf, v, 'f', 0);
            if (isfinite(v)) strcat(buf, ".");
        } else {
            py_float(buf, v, 'f', PRECISION);
        }
    }
}

/* Visits the shown elements (the summarised data when summarising) in row-major order. */
typedef void (*visit_fn)(fmt *f, int64_t off, void *ctx);
static void for_each_shown(fmt *f, visit_fn fn, void *ctx)
{
    const tensor *t = f->t;
    int64_t k[MAX_DIMS] = {0};
    for (;;) {
        int64_t off = 0;
        for (int d = 0; d < t->ndim; d++) off += shown_index(f, d, k[d]) * t->strides[d];
        fn(f, off, ctx);
        int d = t->ndim - 1;
        for (; d >= 0; d--) {
            if (++k[d] < shown_count(f, d)) break;
            k[d] = 0;
        }
        if (d < 0) return;
    }
}

typedef struct stats {
    bool any;          /* some nonzero finite value */
    double min, max;   /* of their absolute values */
} stats;

static void visit_stats(fmt *f, int64_t off, void *ctx)
{
    stats *s = ctx;
    double v = elem_f(f, off);
    if (!isfinite(v) || v == 0) return;
    double a = fabs(v);
    if (!s->any || a < s->min) s->min = a;
    if (!s->any || a > s->max) s->max = a;
    s->any = true;
    if (v != ceil(v)) f->int_mode = false;
}

/* Width: integers and bools over every shown value; floats over the nonzero finite ones only
 * (zeros, nan and inf may come out wider, unpadded, exactly as in PyTorch). */
static void visit_width(fmt *f, int64_t off, void *ctx)
{
    (void)ctx;
    char buf[ELEM_CAP];
    if (f->is_float) {
        double v = elem_f(f, off);
        if (!isfinite(v) || v == 0) return;
    }
    elem_text(buf, f, off);
    int w = (int)strlen(buf);
    if (w > f->width) f->width = w;
}

static void fmt_init(fmt *f, const tensor *t)
{
    f->t = t;
    f->base = tensor_data(t);
    f->esz = dtype_size((dtype)t->dtype);
    f->summarize = t->numel > THRESHOLD;
    f->is_float = dtype_is_float((dtype)t->dtype);
    f->int_mode = true;
    f->sci = false;
    f->width = 1;
    if (f->is_float) {
        stats s = {false, 0, 0};
        for_each_shown(f, visit_stats, &s);
        if (!s.any) return;
        f->sci = s.max / s.min > 1000.0 || s.max > 1.0e8 || (!f->int_mode && s.min < 1.0e-4);
    }
    for_each_shown(f, visit_width, NULL);
}

static void put_elem(sbuf *b, const fmt *f, int64_t off)
{
    char buf[ELEM_CAP];
    elem_text(buf, f, off);
    int64_t len = (int64_t)strlen(buf);
    sb_chars(b, ' ', f->width - len);
    sb_put(b, buf, (size_t)len);
}

/* Before item i of a row: lines of per_line items joined with ",\n" and the row's indent. */
static void item_sep(sbuf *b, int64_t i, int64_t per_line, int indent)
{
    if (i == 0) return;
    if (i % per_line) {
        sb_puts(b, ", ");
    } else {
        sb_puts(b, ",\n");
        sb_chars(b, ' ', indent + 1);
    }
}

/* _vector_str: rows wrap after as many elements as fit in LINEWIDTH - indent. */
static void put_vector(sbuf *b, const fmt *f, int64_t off, int indent)
{
    int d = f->t->ndim - 1;
    int64_t el = f->width + 2, room = LINEWIDTH - indent;
    int64_t per_line = room > 0 ? room / el : 0;
    if (per_line < 1) per_line = 1;
    int64_t n = shown_count(f, d);
    bool dots = n < f->t->shape[d];
    sb_puts(b, "[");
    for (int64_t j = 0, item = 0; j < n; j++) {
        if (dots && j == EDGEITEMS) {
            item_sep(b, item++, per_line, indent);
            sb_puts(b, " ..."); /* one more item of the row, unpadded */
        }
        item_sep(b, item++, per_line, indent);
        put_elem(b, f, off + shown_index(f, d, j) * f->t->strides[d]);
    }
    sb_puts(b, "]");
}

/* Between the slices of a dim-dims subtensor: ",", dim - 1 newlines, the inner indent. */
static void slice_sep(sbuf *b, int dim, int indent)
{
    sb_puts(b, ",");
    sb_chars(b, '\n', dim - 1);
    sb_chars(b, ' ', indent + 1);
}

/* _tensor_str_with_formatter from dim d on; summarised dims show "..." between the ends. */
static void put_tensor(sbuf *b, const fmt *f, int d, int64_t off, int indent)
{
    const tensor *t = f->t;
    if (d == t->ndim) {
        put_elem(b, f, off);
        return;
    }
    if (d == t->ndim - 1) {
        put_vector(b, f, off, indent);
        return;
    }
    int64_t n = shown_count(f, d);
    bool dots = n < t->shape[d];
    sb_puts(b, "[");
    for (int64_t j = 0; j < n; j++) {
        if (j > 0) slice_sep(b, t->ndim - d, indent);
        if (dots && j == EDGEITEMS) {
            sb_puts(b, "...");
            slice_sep(b, t->ndim - d, indent);
        }
        put_tensor(b, f, d + 1, off + shown_index(f, d, j) * t->strides[d], indent + 1);
    }
    sb_puts(b, "]");
}

/* _add_suffixes: a suffix (written as head + name + tail) moves to its own line when the
 * current one would pass LINEWIDTH. *last is PyTorch's running length, which counts two more
 * than the line's characters. */
static void add_suffix(sbuf *b, int64_t *last, int indent, const char *head, const char *name,
                       const char *tail)
{
    int64_t n = (int64_t)(strlen(head) + strlen(name) + strlen(tail));
    if (*last + n + 2 > LINEWIDTH) {
        sb_puts(b, ",\n");
        sb_chars(b, ' ', indent);
        *last = indent + n;
    } else {
        sb_puts(b, ", ");
        *last += n + 2;
    }
    sb_puts(b, head);
    sb_puts(b, name);
    sb_puts(b, tail);
}

eng_err tensor_format(char **out, const tensor *t)
{
    static const char prefix[] = "tensor(";
    const int indent = (int)sizeof prefix - 1;
    sbuf b = {NULL, 0, 0, false};
    sb_puts(&b, prefix);
    if (t->numel == 0) {
        sb_puts(&b, "[]");
    } else {
        fmt f;
        fmt_init(&f, t);
        put_tensor(&b, &f, 0, 0, indent);
    }
    if (b.fail) {
        mem_free(b.p);
        return err_nomem();
    }

    const char *nl = strrchr(b.p, '\n');
    int64_t last = (int64_t)b.len - (nl ? nl - b.p : -1) + 1;
    if (t->numel == 0 && t->ndim != 1) {
        /* str(tuple(shape)): "(0, 3)" */
        char shape[24 * MAX_DIMS + 8];
        size_t k = 0;
        for (int d = 0; d < t->ndim; d++)
            k += (size_t)snprintf(shape + k, sizeof shape - k, "%s%" PRId64, d ? ", " : "",
                                  t->shape[d]);
        add_suffix(&b, &last, indent, "size=(", shape, ")");
    }
    /* Non-empty int64 and bool tensors show their dtype through their values. */
    if (t->dtype != DT_DEFAULT_FLOAT && (t->numel == 0 || t->dtype == DT_F64))
        add_suffix(&b, &last, indent, "dtype=torch.", dtype_name((dtype)t->dtype), "");
    if (t->grad_fn)
        add_suffix(&b, &last, indent, "grad_fn=<", node_name(t->grad_fn), ">");
    else if (tensor_requires_grad(t)) /* (a no_grad view of such a tensor, too) */
        add_suffix(&b, &last, indent, "requires_grad=True", "", "");
    sb_puts(&b, ")");
    if (b.fail) {
        mem_free(b.p);
        return err_nomem();
    }
    *out = b.p;
    return E_OK;
}
