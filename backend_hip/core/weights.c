/* weights.c: a model's weights on the device, uploaded once, found again by their host
 * pointers: a table of host ranges sorted by address, each with its fp32 (or double) copy and,
 * for matrices of bf16 weights, a bf16 copy. */
#include <stdlib.h>

#include "core/hip.h"

typedef struct {
    const char *host;   /* the host array (bytes)   */
    size_t bytes;
    void *dev;          /* its device copy           */
    uint16_t *bf16;     /* bf16 copy of a matrix, or NULL */
    bool matrix;
} entry;

struct hylo_hip_weights {
    entry *entries;     /* sorted by host address, no duplicates */
    size_t count;
    bool bf16;
    int64_t bytes;
};

static int by_host(const void *a, const void *b)
{
    const char *x = ((const entry *)a)->host, *y = ((const entry *)b)->host;
    return x < y ? -1 : x > y;
}

static hylo_status add_bf16_copy(hylo_hip_weights *w, entry *e, hylo_error *err)
{
    const int64_t n = (int64_t)(e->bytes / sizeof(float));
    void *p = NULL;
    hylo_status st = hylo_hip_device_alloc(&p, (size_t)n * sizeof(uint16_t), err);
    if (st == HYLO_OK) st = hylo_hip_device_to_bf16(e->dev, p, n, err);
    if (st != HYLO_OK) {
        hylo_hip_device_free(p);
        return st;
    }
    e->bf16 = p;
    w->bytes += n * (int64_t)sizeof(uint16_t);
    return HYLO_OK;
}

hylo_status hylo_hip_weights_new(const hylo_hip_array *arrays, size_t count, bool bf16,
                                 hylo_hip_weights **out, hylo_error *err)
{
    *out = NULL;
    hylo_hip_weights *w = calloc(1, sizeof *w);
    entry *all = calloc(count + 1, sizeof *all);
    if (!w || !all) {
        free(w);
        free(all);
        return hylo_error_set(err, HYLO_ERR_NOMEM, "hip backend: cannot list %zu weights", count);
    }
    size_t n = 0;
    for (size_t i = 0; i < count; i++)
        if (arrays[i].host && arrays[i].numel > 0)
            all[n++] = (entry){arrays[i].host, (size_t)arrays[i].numel * arrays[i].elem_size, NULL,
                               NULL, arrays[i].matrix};
    qsort(all, n, sizeof *all, by_host);
    size_t kept = 0; /* the same array listed twice (a tied LM head) is uploaded once */
    for (size_t i = 0; i < n; i++) {
        if (kept > 0 && all[kept - 1].host == all[i].host) {
            all[kept - 1].matrix = all[kept - 1].matrix || all[i].matrix;
            continue;
        }
        all[kept++] = all[i];
    }
    w->entries = all;
    w->count = kept;
    hylo_status st = HYLO_OK;
    for (size_t i = 0; i < kept && st == HYLO_OK; i++) {
        entry *e = &all[i];
        st = hylo_hip_device_alloc(&e->dev, e->bytes, err);
        if (st == HYLO_OK) st = hylo_hip_device_upload(e->dev, e->host, e->bytes, err);
        if (st == HYLO_OK) w->bytes += (int64_t)e->bytes;
    }
    if (st == HYLO_OK && bf16) st = hylo_hip_weights_add_bf16(w, err);
    if (st != HYLO_OK) {
        hylo_hip_weights_free(w);
        return st;
    }
    *out = w;
    return HYLO_OK;
}

hylo_status hylo_hip_weights_add_bf16(hylo_hip_weights *w, hylo_error *err)
{
    for (size_t i = 0; i < w->count; i++) {
        entry *e = &w->entries[i];
        if (!e->matrix || e->bf16) continue;
        hylo_status st = add_bf16_copy(w, e, err);
        if (st != HYLO_OK) return st;
    }
    w->bf16 = true;
    return HYLO_OK;
}

void hylo_hip_weights_free(void *weights)
{
    hylo_hip_weights *w = weights;
    if (!w) return;
    for (size_t i = 0; i < w->count; i++) {
        hylo_hip_device_free(w->entries[i].dev);
        hylo_hip_device_free(w->entries[i].bf16);
    }
    free(w->entries);
    free(w);
}

int64_t hylo_hip_weights_bytes(const hylo_hip_weights *w)
{
    return w ? w->bytes : 0;
}

/* The entry whose host range holds p, or NULL. */
static const entry *find(const hylo_hip_weights *w, const void *p)
{
    if (!w || !p) return NULL;
    const char *c = p;
    size_t lo = 0, hi = w->count; /* the last entry starting at or before p */
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        if (w->entries[mid].host <= c) lo = mid + 1;
        else hi = mid;
    }
    if (lo == 0) return NULL;
    const entry *e = &w->entries[lo - 1];
    return c < e->host + e->bytes ? e : NULL;
}

static const void *find_checked(hylo_hip_ctx *ctx, const void *host, const char *what)
{
    const entry *e = find(ctx->weights, host);
    if (!e) {
        hylo_hip_fail(ctx, HYLO_ERR_USAGE, "hip backend: %s (host %p) was not uploaded", what, host);
        return NULL;
    }
    return (const char *)e->dev + ((const char *)host - e->host);
}

const float *hylo_hip_find(hylo_hip_ctx *ctx, const float *host, const char *what)
{
    return find_checked(ctx, host, what);
}

const double *hylo_hip_find_f64(hylo_hip_ctx *ctx, const double *host, const char *what)
{
    return find_checked(ctx, host, what);
}

const uint16_t *hylo_hip_find_bf16(hylo_hip_ctx *ctx, const float *host)
{
    if (!ctx->bf16) return NULL;
    const entry *e = find(ctx->weights, host);
    if (!e || !e->bf16) return NULL;
    return e->bf16 + ((const char *)host - e->host) / (ptrdiff_t)sizeof(float);
}
