/* state.c: the per-sequence state of every layer: growing caches for attention (K, V) and MLA
 * (latent, k_pe), fixed-size recurrent states for Mamba2 and GDN (zero at the start), and the
 * state's backend with its context. A device-resident backend holds all of it in its memory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "model/model.h"

/* Values per position of a layer's growing caches (0 for recurrent mixers). */
static size_t cache_row(const hylo_model *m, int64_t layer, size_t *second)
{
    const hylo_config *c = &m->cfg;
    switch (m->layers[layer].mixer) {
    case HYLO_MIXER_ATTENTION: *second = (size_t)(c->num_kv_heads * c->head_dim); return *second;
    case HYLO_MIXER_MLA: *second = (size_t)m->hybrid.mla.rope; return (size_t)m->hybrid.mla.kv_rank;
    case HYLO_MIXER_MAMBA2:
    case HYLO_MIXER_GDN: break;
    }
    *second = 0;
    return 0;
}

/* The two growing buffers of a layer's state. */
static float **cache_buffers(hylo_layer_state *ls, hylo_mixer mixer, float ***second)
{
    if (mixer == HYLO_MIXER_MLA) {
        *second = &ls->mla.k_pe;
        return &ls->mla.latent;
    }
    *second = &ls->v;
    return &ls->k;
}

/* Zero-filled memory of n floats where the state's backend computes (NULL when out of
 * memory), and its release. */
static float *state_alloc(const hylo_state *s, size_t n)
{
    if (s->ops->mem_alloc) return s->ops->mem_alloc(s->ctx, n * sizeof(float));
    return calloc(n, sizeof(float));
}

static void state_release(const hylo_state *s, void *p)
{
    if (s->ops->mem_free) s->ops->mem_free(s->ctx, p);
    else free(p);
}

/* Bytes of one value of the state's caches. */
static size_t cache_value_bytes(const hylo_state *s)
{
    return s->ops->cache_value_bytes ? s->ops->cache_value_bytes(s->ctx) : sizeof(float);
}

/* *buf [old_bytes] grows to new_bytes keeping its contents; false when out of memory (*buf is
 * then unchanged). */
static bool state_grow(const hylo_state *s, float **buf, size_t old_bytes, size_t new_bytes)
{
    if (!s->ops->mem_alloc) {
        float *grown = realloc(*buf, new_bytes);
        if (grown) *buf = grown;
        return grown != NULL;
    }
    float *grown = s->ops->mem_alloc(s->ctx, new_bytes);
    hylo_error ignored = {0};
    if (!grown || (old_bytes > 0 && s->ops->mem_copy(s->ctx, grown, *buf, old_bytes,
                                                     HYLO_COPY_ON_DEVICE, &ignored) != HYLO_OK)) {
        s->ops->mem_free(s->ctx, grown);
        return false;
    }
    s->ops->mem_free(s->ctx, *buf);
    *buf = grown;
    return true;
}

static void free_layer(const hylo_state *s, hylo_layer_state *ls)
{
    void *const buffers[] = {ls->k,           ls->v,         ls->mla.latent, ls->mla.k_pe,
                             ls->mamba2.conv, ls->mamba2.ssm, ls->gdn.q_conv, ls->gdn.k_conv,
                             ls->gdn.v_conv,  ls->gdn.S};
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++)
        if (buffers[i]) state_release(s, buffers[i]);
}

void hylo_state_free(hylo_state *state)
{
    if (!state) return;
    for (int64_t i = 0; state->layers && i < state->model->cfg.num_layers; i++)
        free_layer(state, &state->layers[i]);
    free(state->layers);
    if (state->decode_act) state_release(state, state->decode_act);
    if (state->ctx) state->ops->context_free(state->ctx);
    free(state);
}

hylo_backend hylo_state_backend(const hylo_state *state)
{
    return state->ops->backend;
}

void hylo_state_set_trace(hylo_state *state, hylo_trace *trace)
{
    state->trace = trace;
}

int64_t hylo_state_length(const hylo_state *state)
{
    return state->length;
}

/* Positions a state may hold: far beyond any real context, and small enough that positions x
 * values per position x value bytes is checked below rather than able to wrap. */
#define MAX_POSITIONS ((int64_t)1 << 40)

hylo_status hylo_state_reserve(hylo_state *state, int64_t needed, hylo_error *err)
{
    if (needed <= state->capacity) return HYLO_OK;
    if (needed > MAX_POSITIONS)
        return hylo_error_set(err, HYLO_ERR_RANGE, "%lld positions exceed the limit of 2^40",
                              (long long)needed);
    /* exactly what the first reservation asks for (a state created for N positions holds N,
     * as `hylo info` counts them), then at least doubling, so appends cost O(1) each */
    int64_t cap = state->capacity > 0 ? 2 * state->capacity : needed;
    if (cap < needed) cap = needed;
    if (cap > MAX_POSITIONS) cap = MAX_POSITIONS;
    const hylo_model *m = state->model;
    const size_t value = cache_value_bytes(state);
    for (int64_t i = 0; i < m->cfg.num_layers; i++) {
        size_t second_row;
        size_t first_row = cache_row(m, i, &second_row);
        if (first_row == 0) continue;
        float **second;
        float **first = cache_buffers(&state->layers[i], m->layers[i].mixer, &second);
        size_t bytes;
        if (__builtin_mul_overflow((size_t)cap, first_row + second_row, &bytes) ||
            __builtin_mul_overflow(bytes, value, &bytes))
            return hylo_error_set(err, HYLO_ERR_RANGE,
                                  "the cache of layer %lld at %lld positions does not fit in memory",
                                  (long long)i, (long long)cap);
        /* bytes per value of a row, before and after */
        const size_t old_unit = (size_t)state->capacity * value, unit = (size_t)cap * value;
        if (!state_grow(state, first, old_unit * first_row, unit * first_row) ||
            !state_grow(state, second, old_unit * second_row, unit * second_row))
            return hylo_error_set(err, HYLO_ERR_NOMEM,
                                  "cannot grow the cache of layer %lld to %lld positions",
                                  (long long)i, (long long)cap);
    }
    state->capacity = cap;
    return HYLO_OK;
}

/* Zeroed recurrent state of a Mamba2 or GDN layer. */
static hylo_status alloc_recurrent(const hylo_state *s, int64_t i, hylo_layer_state *ls,
                                   hylo_error *err)
{
    const hylo_model *m = s->model;
    bool ok = true;
    if (m->layers[i].mixer == HYLO_MIXER_MAMBA2) {
        hylo_mamba2_dims d = hylo_mamba2_dims_of(&m->cfg, &m->hybrid);
        ls->mamba2.conv = state_alloc(s, (size_t)(hylo_mamba2_conv_dim(&d) * (d.d_conv - 1)) + 1);
        ls->mamba2.ssm = state_alloc(s, (size_t)(d.nheads * d.headdim * d.d_state));
        ok = ls->mamba2.conv && ls->mamba2.ssm;
    } else if (m->layers[i].mixer == HYLO_MIXER_GDN) {
        hylo_gdn_dims d = hylo_gdn_dims_of(&m->cfg, &m->hybrid);
        size_t qk = (size_t)(d.k_heads * d.head_k), v = (size_t)(d.v_heads * d.head_v);
        size_t taps = (size_t)(d.d_conv - 1);
        ls->gdn.q_conv = state_alloc(s, qk * taps + 1);
        ls->gdn.k_conv = state_alloc(s, qk * taps + 1);
        ls->gdn.v_conv = state_alloc(s, v * taps + 1);
        ls->gdn.S = state_alloc(s, (size_t)(d.v_heads * d.head_k * d.head_v));
        ok = ls->gdn.q_conv && ls->gdn.k_conv && ls->gdn.v_conv && ls->gdn.S;
    }
    return ok ? HYLO_OK
              : hylo_error_set(err, HYLO_ERR_NOMEM, "cannot allocate the state of layer %lld",
                               (long long)i);
}

hylo_status hylo_state_create(const hylo_model *model, int64_t capacity, hylo_state **out,
                              hylo_error *err)
{
    *out = NULL;
    if (capacity < 0)
        return hylo_error_set(err, HYLO_ERR_RANGE, "state capacity %lld is negative",
                              (long long)capacity);
    hylo_state *state = calloc(1, sizeof *state);
    if (!state) return hylo_error_set(err, HYLO_ERR_NOMEM, "cannot allocate state");
    state->model = model;
    state->ops = model->ops ? model->ops : &hylo_ref_ops;
    /* the context first: a device backend allocates everything below through it */
    hylo_status st = state->ops->context_create
                         ? state->ops->context_create(model, &state->ctx, err)
                         : HYLO_OK;
    if (st != HYLO_OK) {
        free(state);
        return st;
    }
    state->layers = calloc((size_t)model->cfg.num_layers, sizeof *state->layers);
    /* a device backend's decode block also holds the logits of the step */
    const int64_t logits = state->ops->mem_alloc ? model->cfg.vocab_size : 0;
    state->decode_act =
        state_alloc(state, (size_t)(hylo_activation_floats(&model->cfg, 1) + logits));
    st = state->layers && state->decode_act
             ? HYLO_OK
             : hylo_error_set(err, HYLO_ERR_NOMEM, "cannot allocate state");
    for (int64_t i = 0; i < model->cfg.num_layers && st == HYLO_OK; i++)
        st = alloc_recurrent(state, i, &state->layers[i], err);
    if (st == HYLO_OK) st = hylo_state_reserve(state, capacity, err);
    if (st != HYLO_OK) {
        hylo_state_free(state);
        return st;
    }
    *out = state;
    return HYLO_OK;
}

/* x [n] <- N(0, 1) draws, chunk c of 65536 values from stream (stream, c): the values do not
 * depend on the thread count. */
static void fill_normal_host(float *x, int64_t n, uint64_t seed, uint64_t stream)
{
    const int64_t chunk = 65536, chunks = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < chunks; c++) {
        hylo_rng rng;
        hylo_rng_seed(&rng, seed, stream * 0x9e3779b97f4a7c15ull + (uint64_t)c);
        const int64_t end = (c + 1) * chunk < n ? (c + 1) * chunk : n;
        for (int64_t i = c * chunk; i < end; i++) x[i] = (float)hylo_rng_normal(&rng);
    }
}

/* fill_normal_host into the state's memory (drawn on the host, then copied to a device); a
 * `cache` buffer receives them in the cache's type, through fp32 device scratch. */
static hylo_status fill_normal(const hylo_state *s, float *x, int64_t n, bool cache,
                               uint64_t seed, uint64_t stream, hylo_error *err)
{
    if (!s->ops->mem_alloc) {
        fill_normal_host(x, n, seed, stream);
        return HYLO_OK;
    }
    const size_t bytes = (size_t)(n > 0 ? n : 1) * sizeof(float);
    const bool convert = cache && cache_value_bytes(s) != sizeof(float);
    float *host = malloc(bytes), *dev = convert ? s->ops->mem_alloc(s->ctx, bytes) : x;
    hylo_status st = HYLO_OK;
    if (!host || !dev)
        st = hylo_error_set(err, HYLO_ERR_NOMEM, "cannot allocate %lld floats", (long long)n);
    if (st == HYLO_OK) {
        fill_normal_host(host, n, seed, stream);
        st = s->ops->mem_copy(s->ctx, dev, host, (size_t)n * sizeof(float), HYLO_COPY_TO_DEVICE,
                              err);
    }
    if (st == HYLO_OK && convert) s->ops->cache_store(s->ctx, x, 0, n, dev, 1);
    if (st == HYLO_OK && s->ops->finish) st = s->ops->finish(s->ctx, err);
    if (convert && dev) s->ops->mem_free(s->ctx, dev);
    free(host);
    return st;
}

hylo_status hylo_state_fill_random(hylo_state *state, int64_t length, uint64_t seed,
                                   hylo_error *err)
{
    if (state->length != 0 || length < 0)
        return hylo_error_set(err, HYLO_ERR_USAGE,
                              "fill_random needs a fresh state and length >= 0 (length %lld, "
                              "state at %lld)", (long long)length, (long long)state->length);
    hylo_status st = hylo_state_reserve(state, length, err);
    if (st != HYLO_OK) return st;
    const hylo_model *m = state->model;
    uint64_t stream = 0;
    for (int64_t i = 0; i < m->cfg.num_layers && st == HYLO_OK; i++) {
        hylo_layer_state *ls = &state->layers[i];
        size_t second_row, first_row = cache_row(m, i, &second_row);
        if (first_row > 0) {
            float **second, **first = cache_buffers(ls, m->layers[i].mixer, &second);
            st = fill_normal(state, *first, length * (int64_t)first_row, true, seed, stream++,
                             err);
            if (st == HYLO_OK)
                st = fill_normal(state, *second, length * (int64_t)second_row, true, seed,
                                 stream++, err);
        } else if (m->layers[i].mixer == HYLO_MIXER_MAMBA2) {
            hylo_mamba2_dims d = hylo_mamba2_dims_of(&m->cfg, &m->hybrid);
            st = fill_normal(state, ls->mamba2.ssm, d.nheads * d.headdim * d.d_state, false, seed,
                             stream++, err);
            if (st == HYLO_OK)
                st = fill_normal(state, ls->mamba2.conv, hylo_mamba2_conv_dim(&d) * (d.d_conv - 1),
                                 false, seed, stream++, err);
        } else {
            hylo_gdn_dims d = hylo_gdn_dims_of(&m->cfg, &m->hybrid);
            const int64_t taps = d.d_conv - 1;
            float *const bufs[] = {ls->gdn.S, ls->gdn.q_conv, ls->gdn.k_conv, ls->gdn.v_conv};
            const int64_t sizes[] = {d.v_heads * d.head_k * d.head_v, d.k_heads * d.head_k * taps,
                                     d.k_heads * d.head_k * taps, d.v_heads * d.head_v * taps};
            for (int b = 0; b < 4 && st == HYLO_OK; b++)
                st = fill_normal(state, bufs[b], sizes[b], false, seed, stream++, err);
        }
    }
    if (st != HYLO_OK) {
        /* earlier layers hold random values already: the state is no longer usable */
        snprintf(state->broken, sizeof state->broken, "%.*s", (int)sizeof state->broken - 1,
                 err && err->message[0] ? err->message : "?");
        return st;
    }
    state->length = length;
    return HYLO_OK;
}
