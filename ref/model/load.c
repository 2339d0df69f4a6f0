/* load.c: hylo_model_load: config.json (+ hybrid_config.json) + checkpoint -> fp32 weights,
 * every tensor checked; the backend a model's states use. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/progress.h"
#include "io/json.h"
#include "layers/layers.h"
#include "model/checkpoint_dir.h"
#include "model/model.h"

/* The index of the first NaN/Inf in w[0 .. n), or n when all are finite. */
static int64_t first_non_finite(const float *w, int64_t n)
{
    int64_t first = n;
#pragma omp parallel for reduction(min : first) schedule(static)
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(w[i]) && i < first) first = i;
    return first;
}

/* Stores an fp32 pointer to `param` (present with its shape: hylo_checkpoint_check_params) in
 * its slot: into the mapping for aligned F32 data, else into a widened copy; the values must be
 * finite. */
static hylo_status bind_param(hylo_model *model, const char *dir, const hylo_param *param,
                              hylo_error *err)
{
    const hylo_tensor_view *view = hylo_checkpoint_find(model->ckpt, param->name);
    const float *w = view->data;
    if (view->dtype != HYLO_F32 || (uintptr_t)view->data % sizeof(float) != 0) {
        float *copy = malloc((size_t)view->numel * sizeof *copy);
        if (!copy)
            return hylo_error_set(err, HYLO_ERR_NOMEM, "%s: cannot allocate %lld floats for '%s'",
                                  dir, (long long)view->numel, param->name);
        hylo_convert_to_f32(view->dtype, view->data, copy, (size_t)view->numel);
        model->owned[model->n_owned++] = copy;
        w = copy;
    }
    int64_t bad = first_non_finite(w, view->numel);
    if (bad < view->numel)
        return hylo_error_set(err, HYLO_ERR_NUMERIC,
                              "%s: tensor '%s' holds %g at flat index %lld (weights must be finite)",
                              dir, param->name, (double)w[bad], (long long)bad);
    *hylo_param_slot(model, param) = w;
    return HYLO_OK;
}

/* Checks the checkpoint against the parameter table (nothing missing, misshapen or left over)
 * before any weight is widened, then binds every parameter. */
static hylo_status bind_all(hylo_model *model, const char *dir, hylo_error *err)
{
    hylo_param *params = NULL;
    size_t count = 0;
    hylo_status st = hylo_model_params(&model->cfg, &model->hybrid, &params, &count, err);
    if (st != HYLO_OK) return st;
    st = hylo_checkpoint_check_params(model->ckpt, dir, &model->cfg, &model->hybrid, params,
                                      count, err);
    if (st == HYLO_OK && !(model->owned = calloc(count, sizeof *model->owned)))
        st = hylo_error_set(err, HYLO_ERR_NOMEM, "cannot allocate weight table");
    /* Widening a real-size checkpoint takes seconds: report progress above 256 MiB of fp32. */
    uint64_t total = 0, done = 0;
    for (size_t i = 0; i < count; i++) total += (uint64_t)hylo_param_numel(&params[i]) * sizeof(float);
    hylo_progress progress;
    hylo_progress_begin(&progress, st == HYLO_OK ? "loading weights" : NULL, total, "B",
                        256u << 20);
    for (size_t i = 0; i < count && st == HYLO_OK; i++) {
        st = bind_param(model, dir, &params[i], err);
        done += (uint64_t)hylo_param_numel(&params[i]) * sizeof(float);
        hylo_progress_update(&progress, done);
    }
    hylo_progress_end(&progress);
    free(params);
    for (int64_t i = 0; i < model->cfg.num_layers; i++) model->layers[i].mixer = model->hybrid.mixers[i];
    if (st == HYLO_OK && model->cfg.tie_word_embeddings) model->lm_head = model->embed;
    return st;
}

/* The rotary tables: the teacher's over head_dim, and the MLA rope slice's (YaRN). */
static hylo_status prepare_rope(hylo_model *model, hylo_error *err)
{
    const hylo_config *c = &model->cfg;
    const hylo_mla_config *m = &model->hybrid.mla;
    model->rope_inv_freq = malloc((size_t)(c->head_dim / 2) * sizeof *model->rope_inv_freq);
    model->mla_inv_freq = malloc((size_t)(m->rope / 2 + 1) * sizeof *model->mla_inv_freq);
    if (!model->rope_inv_freq || !model->mla_inv_freq)
        return hylo_error_set(err, HYLO_ERR_NOMEM, "cannot allocate rope tables");
    hylo_ref_rope_frequencies(&c->rope, c->head_dim, model->rope_inv_freq, &model->rope_scale);
    hylo_ref_rope_frequencies(&m->rope_scaling, m->rope, model->mla_inv_freq,
                              &model->mla_rope_scale);
    return HYLO_OK;
}

hylo_status hylo_model_load(const char *dir, hylo_model **out, hylo_error *err)
{
    *out = NULL;
    hylo_model *model = calloc(1, sizeof *model);
    if (!model) return hylo_error_set(err, HYLO_ERR_NOMEM, "cannot allocate model");
    model->ops = &hylo_ref_ops;
    model->weights = HYLO_WEIGHTS_F32;
    hylo_status st = hylo_dir_configs_load(dir, &model->cfg, &model->hybrid, NULL, err);
    if (st == HYLO_OK) {
        model->layers = calloc((size_t)model->cfg.num_layers, sizeof *model->layers);
        if (!model->layers) st = hylo_error_set(err, HYLO_ERR_NOMEM, "cannot allocate layers");
    }
    if (st == HYLO_OK) st = hylo_checkpoint_open(dir, &model->ckpt, err);
    if (st == HYLO_OK) st = bind_all(model, dir, err);
    if (st == HYLO_OK) st = prepare_rope(model, err);
    if (st != HYLO_OK) {
        hylo_model_free(model);
        return st;
    }
    *out = model;
    return HYLO_OK;
}

void hylo_model_free(hylo_model *model)
{
    if (!model) return;
    for (size_t i = 0; i < model->n_owned; i++) free(model->owned[i]);
    free(model->owned);
    free(model->layers);
    free(model->rope_inv_freq);
    free(model->mla_inv_freq);
    if (model->backend_weights) model->backend_weights_free(model->backend_weights);
    if (model->device_weights) model->device_weights_free(model->device_weights);
    hylo_checkpoint_close(model->ckpt);
    free(model);
}

static const char *const backend_names[] = {"ref", "cpu", "hip"};
static const char *const weights_names[] = {"f32", "bf16"};

const char *hylo_backend_name(hylo_backend backend)
{
    return (unsigned)backend < 3 ? backend_names[backend] : "?";
}

bool hylo_backend_parse(const char *name, hylo_backend *out)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(name, backend_names[i]) == 0) {
            *out = (hylo_backend)i;
            return true;
        }
    return false;
}

const char *hylo_weights_name(hylo_weights weights)
{
    return (unsigned)weights < 2 ? weights_names[weights] : "?";
}

bool hylo_weights_parse(const char *name, hylo_weights *out)
{
    for (int i = 0; i < 2; i++)
        if (strcmp(name, weights_names[i]) == 0) {
            *out = (hylo_weights)i;
            return true;
        }
    return false;
}

hylo_status hylo_model_set_backend(hylo_model *model, hylo_backend backend,
                                   hylo_weights weights, hylo_error *err)
{
    if (backend == HYLO_BACKEND_HIP && !&hylo_hip_ops)
        return hylo_error_set(err, HYLO_ERR_USAGE,
                              "this build has no hip backend (build it with `make hip`)");
    const hylo_ops *ops = backend == HYLO_BACKEND_REF   ? &hylo_ref_ops
                          : backend == HYLO_BACKEND_CPU ? &hylo_cpu_ops
                          : backend == HYLO_BACKEND_HIP ? &hylo_hip_ops
                                                        : NULL;
    if (!ops || (weights != HYLO_WEIGHTS_F32 && weights != HYLO_WEIGHTS_BF16))
        return hylo_error_set(err, HYLO_ERR_USAGE, "unknown backend %d or weight storage %d",
                              (int)backend, (int)weights);
    if (weights == HYLO_WEIGHTS_BF16 && backend == HYLO_BACKEND_REF)
        return hylo_error_set(err, HYLO_ERR_USAGE,
                              "bf16 weights need the cpu or hip backend, not %s",
                              hylo_backend_name(backend));
    const hylo_weights previous = model->weights;
    model->weights = weights;
    hylo_status st = ops->model_prepare ? ops->model_prepare(model, err) : HYLO_OK;
    if (st != HYLO_OK) {
        model->weights = previous;
        return st;
    }
    model->ops = ops;
    return HYLO_OK;
}

const hylo_config *hylo_model_config(const hylo_model *model)
{
    return &model->cfg;
}

const hylo_hybrid_config *hylo_model_hybrid(const hylo_model *model)
{
    return &model->hybrid;
}

hylo_mla_layer hylo_model_mla_layer(const hylo_model *model, int64_t layer)
{
    const hylo_mla_config *m = &model->hybrid.mla;
    return (hylo_mla_layer){hylo_mla_dims_of(&model->cfg, &model->hybrid),
                            model->layers[layer].mla, model->mla_inv_freq, model->mla_rope_scale,
                            1.0 / sqrt((double)(m->nope + m->rope))};
}
