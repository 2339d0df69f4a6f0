/* init.c: deterministic random checkpoints of teachers and hybrids (`hylo init`). Values
 * depend only on the seed and each tensor's name: the same seed gives byte-identical files
 * whatever the thread count or sharding. */
#include <math.h>
#include <stdlib.h>

#include "core/rng.h"
#include "model/checkpoint_dir.h"
#include "model/model.h"

typedef struct {
    const hylo_param *params;
    uint64_t seed;
    hylo_dtype dtype;
    int64_t hidden_size;
} init_job;

enum { CHUNK = 1 << 14 }; /* elements drawn from one random stream */

/* One draw of a parameter's distribution (see hylo_param_kind). */
static float param_value(const hylo_param *p, int64_t hidden_size, hylo_rng *rng)
{
    switch (p->kind) {
    case HYLO_PARAM_EMBEDDING: return (float)(hylo_rng_normal(rng) * 2.0 / sqrt((double)hidden_size));
    case HYLO_PARAM_LINEAR: return (float)(hylo_rng_normal(rng) / sqrt((double)p->fan_in));
    case HYLO_PARAM_BIAS: return (float)(hylo_rng_normal(rng) * 0.02);
    case HYLO_PARAM_NORM: return (float)(1.0 + 0.1 * hylo_rng_normal(rng));
    case HYLO_PARAM_CONV:
        return (float)((2.0 * hylo_rng_uniform(rng) - 1.0) / sqrt((double)p->fan_in));
    case HYLO_PARAM_DT_BIAS: {
        /* mamba_ssm: dt log-uniform in [1e-3, 0.1], floored at 1e-4; the bias is its inverse
         * softplus so that softplus(dt_bias) = dt */
        double dt = exp(log(1e-3) + hylo_rng_uniform(rng) * (log(0.1) - log(1e-3)));
        dt = fmax(dt, 1e-4);
        return (float)(dt + log(-expm1(-dt)));
    }
    case HYLO_PARAM_A_LOG: return (float)log(1.0 + 15.0 * hylo_rng_uniform(rng));
    case HYLO_PARAM_ONES: return 1.0f;
    }
    return 0.0f;
}

/* Elements [c CHUNK, c CHUNK + count) of parameter p: chunk c draws from its own stream,
 * named by the seed, the parameter's name and c. */
static void draw_chunk(const hylo_param *p, uint64_t seed, int64_t hidden_size, int64_t c,
                       int64_t count, float *values)
{
    hylo_rng rng;
    hylo_rng_seed(&rng, seed, hylo_hash_string(p->name) + 0x9e3779b97f4a7c15ull * (uint64_t)c);
    for (int64_t j = 0; j < count; j++) values[j] = param_value(p, hidden_size, &rng);
}

static hylo_status fill_param(void *user, size_t i, void *dst, size_t nbytes, hylo_error *err)
{
    (void)err;
    const init_job *job = user;
    const hylo_param *p = &job->params[i];
    size_t esize = hylo_dtype_size(job->dtype);
    int64_t n = (int64_t)(nbytes / esize);
    int64_t chunks = (n + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(dynamic)
    for (int64_t c = 0; c < chunks; c++) {
        float values[CHUNK];
        int64_t begin = c * CHUNK, count = n - begin < CHUNK ? n - begin : CHUNK;
        draw_chunk(p, job->seed, job->hidden_size, c, count, values);
        hylo_convert_from_f32(job->dtype, values, (char *)dst + (size_t)begin * esize,
                              (size_t)count);
    }
    return HYLO_OK;
}

void hylo_param_draw(const hylo_param *p, uint64_t seed, int64_t hidden_size, float *dst)
{
    int64_t n = hylo_param_numel(p), chunks = (n + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(dynamic)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t begin = c * CHUNK, count = n - begin < CHUNK ? n - begin : CHUNK;
        draw_chunk(p, seed, hidden_size, c, count, dst + begin);
    }
}

hylo_status hylo_init_random(const hylo_config *cfg, const hylo_hybrid_config *hybrid,
                             uint64_t seed, const char *dir, uint64_t max_shard_bytes,
                             hylo_error *err)
{
    hylo_config base = *cfg;
    if (hybrid) base.tie_word_embeddings = false; /* hybrids carry lm_head (spec sec. 7) */
    hylo_status st = hylo_config_validate(&base, "init", err);
    if (st == HYLO_OK && hybrid) st = hylo_hybrid_config_validate(hybrid, &base, "init", err);
    if (st != HYLO_OK) return st;
    hylo_param *params = NULL;
    size_t count = 0;
    st = hylo_model_params(&base, hybrid, &params, &count, err);
    if (st != HYLO_OK) return st;
    init_job job = {params, seed, base.dtype, base.hidden_size};
    /* a teacher written over a hybrid loses the hybrid's hybrid_config.json */
    st = hylo_output_write(dir, &base, hybrid, params, count, fill_param, &job, max_shard_bytes,
                           err);
    free(params);
    return st;
}
