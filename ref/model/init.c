/* init.c: deterministic random teacher checkpoints (`hylo init`). Values depend only on the
 * seed and each tensor's name: the same seed gives byte-identical files whatever the thread
 * count, dtype order or sharding. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/rng.h"
#include "model/model.h"

typedef struct {
    const hylo_param *params;
    uint64_t seed;
    hylo_dtype dtype;
    int64_t hidden_size;
} init_job;

enum { CHUNK = 1 << 14 }; /* elements drawn from one random stream */

/* Entry j of a parameter; `normal` is a standard normal draw. */
static float param_value(const hylo_param *p, int64_t hidden_size, double normal)
{
    switch (p->kind) {
    case HYLO_PARAM_EMBEDDING: return (float)(normal * 2.0 / sqrt((double)hidden_size));
    case HYLO_PARAM_LINEAR: return (float)(normal / sqrt((double)p->shape[1]));
    case HYLO_PARAM_BIAS: return (float)(normal * 0.02);
    case HYLO_PARAM_NORM: return (float)(1.0 + 0.1 * normal);
    }
    return 0.0f;
}

static hylo_status fill_param(void *user, size_t i, void *dst, size_t nbytes, hylo_error *err)
{
    (void)err;
    const init_job *job = user;
    const hylo_param *p = &job->params[i];
    size_t esize = hylo_dtype_size(job->dtype);
    int64_t n = (int64_t)(nbytes / esize);
    int64_t chunks = (n + CHUNK - 1) / CHUNK;
    uint64_t stream = hylo_hash_string(p->name);
#pragma omp parallel for schedule(dynamic)
    for (int64_t c = 0; c < chunks; c++) {
        float values[CHUNK];
        hylo_rng rng;
        hylo_rng_seed(&rng, job->seed, stream + 0x9e3779b97f4a7c15ull * (uint64_t)c);
        int64_t begin = c * CHUNK, count = n - begin < CHUNK ? n - begin : CHUNK;
        for (int64_t j = 0; j < count; j++)
            values[j] = param_value(p, job->hidden_size, hylo_rng_normal(&rng));
        hylo_convert_from_f32(job->dtype, values, (char *)dst + (size_t)begin * esize,
                              (size_t)count);
    }
    return HYLO_OK;
}

hylo_status hylo_init_random(const hylo_config *cfg, uint64_t seed, const char *dir,
                             uint64_t max_shard_bytes, hylo_error *err)
{
    hylo_status st = hylo_config_validate(cfg, "init", err);
    if (st != HYLO_OK) return st;
    hylo_param *params = NULL;
    size_t count = 0;
    st = hylo_teacher_params(cfg, &params, &count, err);
    if (st != HYLO_OK) return st;
    hylo_tensor_spec *specs = calloc(count, sizeof *specs);
    if (!specs) {
        free(params);
        return hylo_error_set(err, HYLO_ERR_NOMEM, "cannot allocate %zu tensor specs", count);
    }
    for (size_t i = 0; i < count; i++) {
        specs[i].name = params[i].name;
        specs[i].dtype = cfg->dtype;
        specs[i].ndim = params[i].ndim;
        specs[i].shape[0] = params[i].shape[0];
        specs[i].shape[1] = params[i].shape[1];
    }
    init_job job = {params, seed, cfg->dtype, cfg->hidden_size};
    st = hylo_checkpoint_write(dir, specs, count, fill_param, &job, max_shard_bytes,
                               "writing weights", err);
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (st == HYLO_OK) st = hylo_config_save(cfg, path, err);
    free(specs);
    free(params);
    return st;
}
