/* source.c: checkpoints read by the upcycler and the assembler, through their parameter
 * tables: every tensor of the table is checked for presence and shape, and every tensor of the
 * checkpoint for being in the table, when the checkpoint is opened; values are checked for
 * being finite when they are read. */
#include <math.h>
#include <stdlib.h>

#include "io/json.h"
#include "upcycle/upcycle.h"

hylo_status hylo_source_open(const char *dir, hylo_source *src, hylo_error *err)
{
    *src = (hylo_source){.dir = dir};
    hylo_status st = hylo_dir_configs_load(dir, &src->cfg, &src->hybrid, &src->is_hybrid, err);
    if (st == HYLO_OK)
        st = hylo_model_params(&src->cfg, &src->hybrid, &src->params, &src->count, err);
    if (st == HYLO_OK) st = hylo_checkpoint_open(dir, &src->ckpt, err);
    if (st == HYLO_OK)
        st = hylo_checkpoint_check_params(src->ckpt, dir, &src->cfg, &src->hybrid, src->params,
                                          src->count, err);
    if (st != HYLO_OK) hylo_source_close(src);
    return st;
}

void hylo_source_close(hylo_source *src)
{
    free(src->params);
    hylo_checkpoint_close(src->ckpt);
    src->params = NULL;
    src->ckpt = NULL;
}

const hylo_param *hylo_param_at(const hylo_param *params, size_t count, int64_t layer,
                                size_t slot)
{
    for (size_t i = 0; i < count; i++)
        if (params[i].layer == layer && params[i].slot == slot) return &params[i];
    return NULL;
}

const hylo_tensor_view *hylo_source_view(const hylo_source *src, const hylo_param *param)
{
    return hylo_checkpoint_find(src->ckpt, param->name);
}

hylo_status hylo_source_read(const hylo_source *src, const hylo_param *param, float *dst,
                             hylo_error *err)
{
    const hylo_tensor_view *v = hylo_source_view(src, param);
    hylo_convert_to_f32(v->dtype, v->data, dst, (size_t)v->numel);
    for (int64_t i = 0; i < v->numel; i++)
        if (!isfinite(dst[i]))
            return hylo_error_set(err, HYLO_ERR_NUMERIC,
                                  "%s: tensor '%s' holds %g at flat index %lld (weights must be "
                                  "finite)", src->dir, param->name, (double)dst[i], (long long)i);
    return HYLO_OK;
}

hylo_status hylo_source_load(const hylo_source *src, int64_t layer, size_t slot, float **out,
                             hylo_error *err)
{
    *out = NULL;
    const hylo_param *p = hylo_param_at(src->params, src->count, layer, slot);
    if (!p)
        return hylo_error_set(err, HYLO_ERR_USAGE, "%s: layer %lld has no tensor at slot %zu",
                              src->dir, (long long)layer, slot);
    float *buf = malloc((size_t)hylo_param_numel(p) * sizeof *buf);
    if (!buf)
        return hylo_error_set(err, HYLO_ERR_NOMEM, "%s: cannot allocate %lld floats for '%s'",
                              src->dir, (long long)hylo_param_numel(p), p->name);
    hylo_status st = hylo_source_read(src, p, buf, err);
    if (st != HYLO_OK) {
        free(buf);
        return st;
    }
    *out = buf;
    return HYLO_OK;
}
