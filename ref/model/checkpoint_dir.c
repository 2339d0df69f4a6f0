/* checkpoint_dir.c: a checkpoint directory against the model's parameter table (no tensor
 * missing, none of another shape, none left over), and the output directories that
 * hylo_init_random, the upcycler and the assembler write: refusing to overwrite a checkpoint
 * (or an input) without force, clearing a replaced checkpoint, writing weights and configs. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/json.h"
#include "io/safetensors_internal.h"
#include "model/checkpoint_dir.h"

#define EMBED_NAME "model.embed_tokens.weight"
#define HEAD_NAME "lm_head.weight"

/* ---- reading -------------------------------------------------------------------------------- */

static hylo_status check_param(const hylo_checkpoint *ckpt, const char *dir, const hylo_param *p,
                               hylo_error *err)
{
    const hylo_tensor_view *v = hylo_checkpoint_find(ckpt, p->name);
    char want[64], got[64];
    hylo_st_format_shape(want, sizeof want, p->ndim, p->shape);
    if (!v)
        return hylo_error_set(err, HYLO_ERR_SHAPE, "%s: tensor '%s' is missing (expected %s)",
                              dir, p->name, want);
    bool same = v->ndim == p->ndim;
    for (int d = 0; same && d < p->ndim; d++) same = v->shape[d] == p->shape[d];
    if (same) return HYLO_OK;
    hylo_st_format_shape(got, sizeof got, v->ndim, v->shape);
    return hylo_error_set(err, HYLO_ERR_SHAPE,
                          "%s: tensor '%s' has shape %s but the configuration implies %s",
                          dir, p->name, got, want);
}

/* A head stored beside tied embeddings must be the embedding, value for value (both widened
 * to fp32, so the two may differ in dtype; NaNs are left to the readers). */
static hylo_status check_tied_head(const hylo_checkpoint *ckpt, const char *file,
                                   const hylo_tensor_view *head, hylo_error *err)
{
    const hylo_tensor_view *embed = hylo_checkpoint_find(ckpt, EMBED_NAME);
    if (!embed) return HYLO_OK; /* reported as missing */
    bool same = embed->ndim == head->ndim;
    for (int d = 0; same && d < head->ndim; d++) same = embed->shape[d] == head->shape[d];
    if (!same) {
        char got[64], want[64];
        hylo_st_format_shape(got, sizeof got, head->ndim, head->shape);
        hylo_st_format_shape(want, sizeof want, embed->ndim, embed->shape);
        return hylo_error_set(err, HYLO_ERR_SHAPE,
                              "%s: tensor '" HEAD_NAME "' has shape %s but config.json ties it to "
                              "'" EMBED_NAME "' (%s): a tied head must equal the embedding",
                              file, got, want);
    }
    enum { CHUNK = 4096 };
    float a[CHUNK], b[CHUNK];
    const size_t ea = hylo_dtype_size(head->dtype), eb = hylo_dtype_size(embed->dtype);
    for (int64_t begin = 0; begin < head->numel; begin += CHUNK) {
        size_t n = (size_t)(head->numel - begin < CHUNK ? head->numel - begin : CHUNK);
        hylo_convert_to_f32(head->dtype, (const char *)head->data + (size_t)begin * ea, a, n);
        hylo_convert_to_f32(embed->dtype, (const char *)embed->data + (size_t)begin * eb, b, n);
        for (size_t i = 0; i < n; i++)
            if (a[i] != b[i] && !(isnan(a[i]) && isnan(b[i])))
                return hylo_error_set(err, HYLO_ERR_SHAPE,
                                      "%s: tensor '" HEAD_NAME "' differs from '" EMBED_NAME "' "
                                      "at flat index %lld (%g vs %g), but config.json ties them "
                                      "(tie_word_embeddings): the model would ignore this head",
                                      file, (long long)begin + (long long)i, (double)a[i],
                                      (double)b[i]);
    }
    return HYLO_OK;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool is_hybrid_model(const hylo_hybrid_config *hybrid)
{
    for (int64_t i = 0; hybrid && i < hybrid->num_layers; i++)
        if (hybrid->mixers[i] != HYLO_MIXER_ATTENTION) return true;
    return false;
}

/* "FILE: tensor 'N' is not a parameter of this model (llama, 4 layers)", with a hint when a
 * teacher meets a hybrid block's tensor (hybrid_config.json lost). */
static hylo_status unused_tensor(const char *dir, const char *file, const char *name,
                                 const hylo_config *cfg, const hylo_hybrid_config *hybrid,
                                 hylo_error *err)
{
    bool hybrid_model = is_hybrid_model(hybrid);
    bool hint = !hybrid_model &&
                (strstr(name, ".mla.") || strstr(name, ".mamba.") || strstr(name, ".gdn."));
    return hylo_error_set(err, HYLO_ERR_SHAPE,
                          "%s: tensor '%s' is not a parameter of this model (%s%s, %lld "
                          "layers)%s%s%s", file ? file : dir, name, hylo_arch_name(cfg->arch),
                          hybrid_model ? " hybrid" : "", (long long)cfg->num_layers,
                          hint ? "; a hybrid block's tensor: is " : "", hint ? dir : "",
                          hint ? "/hybrid_config.json missing?" : "");
}

hylo_status hylo_checkpoint_check_params(const hylo_checkpoint *ckpt, const char *dir,
                                         const hylo_config *cfg,
                                         const hylo_hybrid_config *hybrid,
                                         const hylo_param *params, size_t count, hylo_error *err)
{
    /* Left-over tensors first: a checkpoint of another model (more layers, a hybrid without
     * its hybrid_config.json) then says what it holds rather than what it lacks. */
    hylo_status st = HYLO_OK;
    const char **names = malloc((count ? count : 1) * sizeof *names);
    if (!names) return hylo_error_set(err, HYLO_ERR_NOMEM, "%s: out of memory", dir);
    for (size_t i = 0; i < count; i++) names[i] = params[i].name;
    qsort(names, count, sizeof *names, compare_names);
    for (size_t i = 0; st == HYLO_OK && i < hylo_checkpoint_count(ckpt); i++) {
        const hylo_tensor_view *v = hylo_checkpoint_at(ckpt, i);
        if (bsearch(&v->name, names, count, sizeof *names, compare_names)) continue;
        const char *file = hylo_st_checkpoint_file(ckpt, i);
        if (cfg->tie_word_embeddings && strcmp(v->name, HEAD_NAME) == 0)
            st = check_tied_head(ckpt, file, v, err);
        else
            st = unused_tensor(dir, file, v->name, cfg, hybrid, err);
    }
    free(names);
    for (size_t i = 0; st == HYLO_OK && i < count; i++)
        st = check_param(ckpt, dir, &params[i], err);
    return st;
}

/* ---- writing -------------------------------------------------------------------------------- */

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
    char name[256], path[HYLO_PATH_MAX];
    hylo_status st;
    while ((st = find_checkpoint_file(out, name, sizeof name, err)) == HYLO_OK && name[0]) {
        st = hylo_path_join(path, sizeof path, out, name, err);
        if (st != HYLO_OK) return st;
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
    char config[HYLO_PATH_MAX], hybrid_config[HYLO_PATH_MAX];
    hylo_status st = hylo_path_join(config, sizeof config, out, "config.json", err);
    if (st == HYLO_OK)
        st = hylo_path_join(hybrid_config, sizeof hybrid_config, out, "hybrid_config.json", err);
    if (st != HYLO_OK) return st;
    hylo_tensor_spec *specs = calloc(count ? count : 1, sizeof *specs);
    if (!specs) return hylo_error_set(err, HYLO_ERR_NOMEM, "cannot allocate %zu specs", count);
    for (size_t i = 0; i < count; i++) {
        specs[i] = (hylo_tensor_spec){.name = params[i].name, .dtype = cfg->dtype,
                                      .ndim = params[i].ndim};
        for (int d = 0; d < params[i].ndim; d++) specs[i].shape[d] = params[i].shape[d];
    }
    st = hylo_checkpoint_write(out, specs, count, fill, user, max_shard_bytes, "writing weights",
                               err);
    free(specs);
    if (st == HYLO_OK) st = hylo_config_save(cfg, config, err);
    if (st != HYLO_OK) return st;
    if (hybrid) return hylo_hybrid_config_save(hybrid, hybrid_config, err);
    if (unlink(hybrid_config) != 0 && errno != ENOENT)
        return hylo_error_set(err, HYLO_ERR_IO, "%s: cannot remove the stale hybrid config: %s",
                              hybrid_config, strerror(errno));
    return HYLO_OK;
}
