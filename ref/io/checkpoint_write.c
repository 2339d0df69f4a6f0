/* checkpoint_write.c: writes a checkpoint directory the way Hugging Face lays it out: one
 * model.safetensors, or model-0000K-of-0000N.safetensors shards plus
 * model.safetensors.index.json ({"metadata": {"total_size": N}, "weight_map": {...}}).
 *
 * Every shard is written and synced under a temporary name first; only when all of them (and
 * the index) are complete are they renamed into place, index last. A failing fill callback or a
 * full disk therefore leaves the directory as it was; only a failing rename, midway through
 * publishing, can leave some shards replaced and the old index (if any) in place. Each file carries the metadata
 * {"format": "pt"}, which transformers checks before loading a safetensors file. */
#include "core/progress.h"
#include "io/json.h"
#include "io/safetensors_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SINGLE_NAME "model.safetensors"
#define INDEX_NAME "model.safetensors.index.json"
/* Byte counts below this write too fast to be worth a progress display. */
#define PROGRESS_QUIET_BELOW ((uint64_t)64 << 20)

static const char *const file_metadata[] = {"format", "pt", NULL};

/* What the shards will be: shard k holds specs [first[k], first[k + 1]). */
typedef struct {
    size_t *first;      /* nshards + 1 entries */
    size_t nshards;
    uint64_t total;
} shard_plan;

/* Greedy in spec order: a shard takes tensors while it stays within the limit; a tensor larger
 * than the limit gets a shard of its own. */
static hylo_status plan_shards(const uint64_t *nbytes, size_t count, uint64_t max_bytes,
                               shard_plan *plan, const char *dir, hylo_error *err)
{
    plan->first = malloc((count + 1) * sizeof *plan->first);
    if (!plan->first) return hylo_error_set(err, HYLO_ERR_NOMEM, "%s: out of memory", dir);
    plan->nshards = 0;
    plan->total = 0;
    uint64_t in_shard = 0;
    for (size_t i = 0; i < count; i++) {
        bool fits = max_bytes == 0 || in_shard + nbytes[i] <= max_bytes;
        if (plan->nshards == 0 || (!fits && in_shard > 0)) {
            plan->first[plan->nshards++] = i;
            in_shard = 0;
        }
        in_shard += nbytes[i];
        plan->total += nbytes[i];
    }
    plan->first[plan->nshards] = count;
    return HYLO_OK;
}

/* Everything one call needs, to keep the argument lists short. */
typedef struct {
    const char *dir;
    const hylo_tensor_spec *specs;
    const uint64_t *nbytes;
    hylo_tensor_fill_fn fill;
    void *user;
    hylo_progress progress;
    uint64_t written;
} write_job;

/* Produces tensor i through the callback into a buffer of its own and appends it. */
static hylo_status write_tensor(write_job *job, hylo_safetensors_writer *w, size_t i,
                                hylo_error *err)
{
    size_t n = (size_t)job->nbytes[i];
    void *buf = malloc(n ? n : 1);
    if (!buf)
        return hylo_error_set(err, HYLO_ERR_NOMEM, "%s: out of memory for tensor '%s' (%zu bytes)",
                              job->dir, job->specs[i].name, n);
    hylo_status st = job->fill(job->user, i, buf, n, err);
    if (st != HYLO_OK) hylo_error_wrap(err, "%s: tensor '%s'", job->dir, job->specs[i].name);
    else st = hylo_safetensors_writer_append(w, buf, n, err);
    free(buf);
    if (st == HYLO_OK) {
        job->written += n;
        hylo_progress_update(&job->progress, job->written);
    }
    return st;
}

/* Writes specs [first, end) to a temporary file for `path`, synced but not yet published. */
static hylo_status write_shard(write_job *job, const char *path, size_t first, size_t end,
                               hylo_safetensors_writer **out, hylo_error *err)
{
    hylo_safetensors_writer *w;
    hylo_status st = hylo_safetensors_writer_open(path, job->specs + first, end - first,
                                                  file_metadata, &w, err);
    if (st != HYLO_OK) return st;
    for (size_t i = first; i < end && st == HYLO_OK; i++) st = write_tensor(job, w, i, err);
    if (st == HYLO_OK) st = hylo_st_writer_finish(w, err);
    if (st != HYLO_OK) {
        hylo_safetensors_writer_abort(w);
        return st;
    }
    *out = w;
    return HYLO_OK;
}

static char *shard_name(size_t k, size_t n)
{
    char name[64];
    snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", k + 1, n);
    return strdup(name);
}

static hylo_status build_index(const write_job *job, const shard_plan *plan, char **names,
                               hylo_text *b, hylo_error *err)
{
    hylo_text_printf(b, "{\n  \"metadata\": {\n    \"total_size\": %llu\n  },\n"
                       "  \"weight_map\": {", (unsigned long long)plan->total);
    for (size_t k = 0; k < plan->nshards; k++) {
        for (size_t i = plan->first[k]; i < plan->first[k + 1]; i++) {
            hylo_text_printf(b, "%s\n    ", i ? "," : "");
            hylo_text_json_string(b, job->specs[i].name);
            hylo_text_put(b, ": ", 2);
            hylo_text_json_string(b, names[k]);
        }
    }
    hylo_text_put(b, "\n  }\n}\n", 7);
    if (b->failed) return hylo_error_set(err, HYLO_ERR_NOMEM, "%s: out of memory", job->dir);
    return HYLO_OK;
}

/* The index as a synced temporary file, to be published after the shards. */
static hylo_status stage_index(const write_job *job, const shard_plan *plan, char **names,
                               const char *path, hylo_atomic_file *f, hylo_error *err)
{
    hylo_text text = {0};
    hylo_status st = build_index(job, plan, names, &text, err);
    if (st == HYLO_OK) st = hylo_atomic_open(f, path, err);
    if (st == HYLO_OK) {
        st = hylo_atomic_write(f, text.data, text.len, err);
        if (st == HYLO_OK) st = hylo_atomic_sync(f, err);
        if (st != HYLO_OK) hylo_atomic_abort(f);
    }
    hylo_text_free(&text);
    return st;
}

/* A model.safetensors beside the index would win over it when the checkpoint is opened, so
 * the new shards would silently go unread. */
static hylo_status refuse_shadowing_file(const char *dir, hylo_error *err)
{
    char *single = hylo_st_path_join(dir, SINGLE_NAME);
    if (!single) return hylo_error_set(err, HYLO_ERR_NOMEM, "%s: out of memory", dir);
    struct stat sb;
    hylo_status st = HYLO_OK;
    if (lstat(single, &sb) == 0)
        st = hylo_error_set(err, HYLO_ERR_USAGE, "%s: already holds %s, which would shadow the "
                            "sharded checkpoint being written; remove it first", dir, SINGLE_NAME);
    free(single);
    return st;
}

/* All shards and the index as temporary files; then renamed into place, index last. */
static hylo_status write_sharded(write_job *job, const shard_plan *plan, hylo_error *err)
{
    hylo_status st = refuse_shadowing_file(job->dir, err);
    if (st != HYLO_OK) return st;
    size_t n = plan->nshards;
    char **names = calloc(n, sizeof *names);
    hylo_safetensors_writer **writers = calloc(n, sizeof *writers);
    char *index_path = hylo_st_path_join(job->dir, INDEX_NAME);
    if (!names || !writers || !index_path)
        st = hylo_error_set(err, HYLO_ERR_NOMEM, "%s: out of memory", job->dir);
    for (size_t k = 0; k < n && st == HYLO_OK; k++) {
        char *path = NULL;
        names[k] = shard_name(k, n);
        if (names[k]) path = hylo_st_path_join(job->dir, names[k]);
        if (!path) st = hylo_error_set(err, HYLO_ERR_NOMEM, "%s: out of memory", job->dir);
        else st = write_shard(job, path, plan->first[k], plan->first[k + 1], &writers[k], err);
        free(path);
    }
    hylo_atomic_file index_file;
    bool staged = false;
    if (st == HYLO_OK) {
        st = stage_index(job, plan, names, index_path, &index_file, err);
        staged = st == HYLO_OK;
    }
    /* Publishing: each publish frees its writer; the ones after a failure are aborted. */
    for (size_t k = 0; k < n && writers; k++) {
        if (!writers[k]) continue;
        if (st == HYLO_OK) st = hylo_st_writer_publish(writers[k], err);
        else hylo_safetensors_writer_abort(writers[k]);
    }
    if (staged) {
        if (st == HYLO_OK) st = hylo_atomic_publish(&index_file, err);
        else hylo_atomic_abort(&index_file);
    }
    for (size_t k = 0; k < n && names; k++) free(names[k]);
    free(names);
    free(writers);
    free(index_path);
    return st;
}

static hylo_status write_single(write_job *job, size_t count, hylo_error *err)
{
    char *path = hylo_st_path_join(job->dir, SINGLE_NAME);
    if (!path) return hylo_error_set(err, HYLO_ERR_NOMEM, "%s: out of memory", job->dir);
    hylo_safetensors_writer *w;
    hylo_status st = write_shard(job, path, 0, count, &w, err);
    if (st == HYLO_OK) st = hylo_st_writer_publish(w, err);
    free(path);
    return st;
}

hylo_status hylo_checkpoint_write(const char *dir, const hylo_tensor_spec *specs, size_t count,
                                  hylo_tensor_fill_fn fill, void *user, uint64_t max_shard_bytes,
                                  const char *progress_label, hylo_error *err)
{
    if (!dir || !fill || (!specs && count))
        return hylo_error_set(err, HYLO_ERR_USAGE, "hylo_checkpoint_write: NULL argument");
    uint64_t *nbytes = calloc(count ? count : 1, sizeof *nbytes);
    if (!nbytes) return hylo_error_set(err, HYLO_ERR_NOMEM, "%s: out of memory", dir);
    /* Checked over all specs at once: names must be unique across shards, not just within. */
    hylo_status st = hylo_st_check_specs(specs, count, dir, nbytes, err);
    shard_plan plan = {0};
    if (st == HYLO_OK) st = plan_shards(nbytes, count, max_shard_bytes, &plan, dir, err);
    if (st == HYLO_OK) {
        write_job job = {dir, specs, nbytes, fill, user, {0}, 0};
        hylo_progress_begin(&job.progress, progress_label, plan.total, "B", PROGRESS_QUIET_BELOW);
        st = plan.nshards <= 1 ? write_single(&job, count, err) : write_sharded(&job, &plan, err);
        hylo_progress_end(&job.progress);
    }
    free(plan.first);
    free(nbytes);
    return st;
}
