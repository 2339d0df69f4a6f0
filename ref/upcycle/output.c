/* output.c: the output directory of upcycle and assemble: refusing to overwrite a checkpoint
 * (or an input) without force, clearing a replaced checkpoint, and writing weights and
 * configs. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "upcycle/upcycle.h"

/* Files a checkpoint directory may hold: those a forced write replaces. */
static bool is_checkpoint_file(const char *name)
{
    size_t n = strlen(name);
    return strcmp(name, "config.json") == 0 || strcmp(name, "hybrid_config.json") == 0 ||
           strcmp(name, "model.safetensors.index.json") == 0 ||
           (strncmp(name, "model", 5) == 0 && n > 12 && strcmp(name + n - 12, ".safetensors") == 0);
}

/* The first checkpoint file in `dir` into `name` (empty when none, or when dir is absent). */
static hylo_status find_checkpoint_file(const char *dir, char *name, size_t size,
                                        hylo_error *err)
{
    name[0] = '\0';
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT) return HYLO_OK;
        return hylo_error_set(err, HYLO_ERR_IO, "%s exists and is not a readable directory: %s",
                              dir, strerror(errno));
    }
    for (struct dirent *e; !name[0] && (e = readdir(d));)
        if (is_checkpoint_file(e->d_name)) snprintf(name, size, "%s", e->d_name);
    closedir(d);
    return HYLO_OK;
}

hylo_status hylo_output_check(const char *out, bool force, const char *const *inputs, size_t n,
                              hylo_error *err)
{
    char out_real[PATH_MAX], in_real[PATH_MAX];
    if (realpath(out, out_real))
        for (size_t i = 0; i < n; i++)
            if (realpath(inputs[i], in_real) && strcmp(out_real, in_real) == 0)
                return hylo_error_set(err, HYLO_ERR_USAGE,
                                      "the output directory %s is the input %s: inputs are never "
                                      "overwritten, not even with force", out, inputs[i]);
    char name[256];
    hylo_status st = find_checkpoint_file(out, name, sizeof name, err);
    if (st == HYLO_OK && name[0] && !force)
        st = hylo_error_set(err, HYLO_ERR_USAGE,
                            "%s already holds a checkpoint (%s); use --force to replace it", out,
                            name);
    return st;
}

hylo_status hylo_output_prepare(const char *out, hylo_error *err)
{
    if (mkdir(out, 0755) == 0) return HYLO_OK;
    if (errno != EEXIST)
        return hylo_error_set(err, HYLO_ERR_IO, "cannot create %s: %s", out, strerror(errno));
    char name[256], path[4096];
    hylo_status st;
    while ((st = find_checkpoint_file(out, name, sizeof name, err)) == HYLO_OK && name[0]) {
        snprintf(path, sizeof path, "%s/%s", out, name);
        if (unlink(path) != 0)
            return hylo_error_set(err, HYLO_ERR_IO, "cannot remove %s: %s", path, strerror(errno));
    }
    return st;
}

hylo_status hylo_output_write(const char *out, const hylo_config *cfg,
                              const hylo_hybrid_config *hybrid, const hylo_param *params,
                              size_t count, hylo_tensor_fill_fn fill, void *user,
                              uint64_t max_shard_bytes, hylo_error *err)
{
    hylo_tensor_spec *specs = calloc(count, sizeof *specs);
    if (!specs) return hylo_error_set(err, HYLO_ERR_NOMEM, "cannot allocate %zu specs", count);
    for (size_t i = 0; i < count; i++) {
        specs[i] = (hylo_tensor_spec){.name = params[i].name, .dtype = cfg->dtype,
                                      .ndim = params[i].ndim};
        for (int d = 0; d < params[i].ndim; d++) specs[i].shape[d] = params[i].shape[d];
    }
    hylo_status st = hylo_checkpoint_write(out, specs, count, fill, user, max_shard_bytes,
                                           "writing weights", err);
    free(specs);
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", out);
    if (st == HYLO_OK) st = hylo_config_save(cfg, path, err);
    snprintf(path, sizeof path, "%s/hybrid_config.json", out);
    if (st == HYLO_OK) st = hylo_hybrid_config_save(hybrid, path, err);
    return st;
}

hylo_status hylo_output_narrow(hylo_dtype dtype, const float *f, void *dst, size_t n,
                               const char *name, hylo_error *err)
{
    /* F16 tops out at 65504 (65520 and beyond round to Inf); BF16 and F32 cover fp32's range */
    for (size_t i = 0; dtype == HYLO_F16 && i < n; i++)
        if (fabsf(f[i]) >= 65520.0f)
            return hylo_error_set(err, HYLO_ERR_RANGE,
                                  "tensor '%s' holds %g at flat index %zu, beyond the range of F16",
                                  name, (double)f[i], i);
    hylo_convert_from_f32(dtype, f, dst, n);
    return HYLO_OK;
}
