/* trace.c: a list of named fp32 tensors recorded during forwards, in the order they were
 * computed, saved as one safetensors file (tensor order = forward order). */
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/trace.h"

typedef struct {
    char *name;
    int ndim;
    int64_t shape[HYLO_MAX_DIMS];
    int64_t numel;
    float *data;
} trace_entry;

struct hylo_trace {
    char *filter;           /* glob on full names, NULL = everything */
    trace_entry *entries;
    size_t count, capacity;
    bool failed;            /* an emit could not allocate */
};

hylo_status hylo_trace_create(const char *filter, hylo_trace **out, hylo_error *err)
{
    *out = NULL;
    hylo_trace *t = calloc(1, sizeof *t);
    if (t && filter && !(t->filter = strdup(filter))) {
        free(t);
        t = NULL;
    }
    if (!t) return hylo_error_set(err, HYLO_ERR_NOMEM, "cannot allocate a trace");
    *out = t;
    return HYLO_OK;
}

void hylo_trace_free(hylo_trace *t)
{
    if (!t) return;
    for (size_t i = 0; i < t->count; i++) {
        free(t->entries[i].name);
        free(t->entries[i].data);
    }
    free(t->entries);
    free(t->filter);
    free(t);
}

size_t hylo_trace_count(const hylo_trace *t)
{
    return t->count;
}

hylo_tracer hylo_tracer_child(const hylo_tracer *parent, const char *fmt, ...)
{
    hylo_tracer child = {parent ? parent->trace : NULL, ""};
    char part[32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(part, sizeof part, fmt, ap);
    va_end(ap);
    if (parent && parent->scope[0])
        snprintf(child.scope, sizeof child.scope, "%.90s.%s", parent->scope, part);
    else snprintf(child.scope, sizeof child.scope, "%s", part);
    return child;
}

bool hylo_tracer_on(const hylo_tracer *tr)
{
    return tr && tr->trace;
}

static bool grow(hylo_trace *t)
{
    if (t->count < t->capacity) return true;
    size_t cap = t->capacity ? 2 * t->capacity : 64;
    trace_entry *e = realloc(t->entries, cap * sizeof *e);
    if (!e) return false;
    t->entries = e;
    t->capacity = cap;
    return true;
}

void hylo_trace_emit_slice(const hylo_tracer *tr, const char *name, const float *src,
                           int64_t rows, int64_t stride, int64_t offset, int64_t width,
                           int ndim, const int64_t *shape)
{
    if (!hylo_tracer_on(tr)) return;
    hylo_trace *t = tr->trace;
    char full[192];
    snprintf(full, sizeof full, "%s%s%s", tr->scope, tr->scope[0] ? "." : "", name);
    if (t->filter && fnmatch(t->filter, full, 0) != 0) return;
    trace_entry e = {strdup(full), ndim, {0}, rows * width, NULL};
    memcpy(e.shape, shape, (size_t)ndim * sizeof *shape);
    e.data = malloc((size_t)(e.numel > 0 ? e.numel : 1) * sizeof(float));
    if (!e.name || !e.data || !grow(t)) {
        free(e.name);
        free(e.data);
        t->failed = true;
        return;
    }
    for (int64_t r = 0; r < rows; r++)
        memcpy(e.data + r * width, src + r * stride + offset, (size_t)width * sizeof(float));
    t->entries[t->count++] = e;
}

void hylo_trace_emit(const hylo_tracer *tr, const char *name, const float *src, int ndim,
                     const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    hylo_trace_emit_slice(tr, name, src, 1, n, 0, n, ndim, shape);
}

hylo_status hylo_trace_save(const hylo_trace *t, const char *path, const char *const *metadata,
                            hylo_error *err)
{
    if (t->failed)
        return hylo_error_set(err, HYLO_ERR_NOMEM,
                              "%s: the trace lost tensors (out of memory while recording)", path);
    hylo_tensor_spec *specs = calloc(t->count + 1, sizeof *specs);
    const void **data = calloc(t->count + 1, sizeof *data);
    hylo_status st = HYLO_OK;
    if (!specs || !data) st = hylo_error_set(err, HYLO_ERR_NOMEM, "%s: out of memory", path);
    for (size_t i = 0; st == HYLO_OK && i < t->count; i++) {
        const trace_entry *e = &t->entries[i];
        specs[i].name = e->name;
        specs[i].dtype = HYLO_F32;
        specs[i].ndim = e->ndim;
        memcpy(specs[i].shape, e->shape, sizeof e->shape);
        data[i] = e->data;
    }
    if (st == HYLO_OK) st = hylo_safetensors_write(path, specs, data, t->count, metadata, err);
    free(specs);
    free(data);
    return st;
}
