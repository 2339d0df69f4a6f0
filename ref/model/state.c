/* state.c: the per-sequence KV cache of every layer, grown geometrically on demand. */
#include <stdlib.h>

#include "model/model.h"

void hylo_state_free(hylo_state *state)
{
    if (!state) return;
    for (int64_t i = 0; state->k && state->v && i < state->model->cfg.num_layers; i++) {
        free(state->k[i]);
        free(state->v[i]);
    }
    free(state->k);
    free(state->v);
    free(state);
}

int64_t hylo_state_length(const hylo_state *state)
{
    return state->length;
}

/* Makes room for `needed` positions in every layer's cache; contents are kept. */
hylo_status hylo_state_reserve(hylo_state *state, int64_t needed, hylo_error *err)
{
    if (needed <= state->capacity) return HYLO_OK;
    int64_t cap = state->capacity > 0 ? state->capacity : 16;
    while (cap < needed) cap *= 2;
    const hylo_config *cfg = &state->model->cfg;
    size_t row = (size_t)(cfg->num_kv_heads * cfg->head_dim) * sizeof(float);
    for (int64_t i = 0; i < cfg->num_layers; i++) {
        float *k = realloc(state->k[i], (size_t)cap * row);
        if (k) state->k[i] = k;
        float *v = k ? realloc(state->v[i], (size_t)cap * row) : NULL;
        if (v) state->v[i] = v;
        if (!k || !v)
            return hylo_error_set(err, HYLO_ERR_NOMEM,
                                  "cannot grow the KV cache to %lld positions (%.1f MiB)",
                                  (long long)cap,
                                  (double)cap * (double)row * 2.0 * (double)cfg->num_layers / 1048576.0);
    }
    state->capacity = cap;
    return HYLO_OK;
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
    size_t L = (size_t)model->cfg.num_layers;
    state->k = calloc(L, sizeof *state->k);
    state->v = calloc(L, sizeof *state->v);
    hylo_status st = (state->k && state->v)
                         ? hylo_state_reserve(state, capacity, err)
                         : hylo_error_set(err, HYLO_ERR_NOMEM, "cannot allocate state");
    if (st != HYLO_OK) {
        hylo_state_free(state);
        return st;
    }
    *out = state;
    return HYLO_OK;
}
