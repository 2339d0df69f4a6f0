/* checkpoint.c: opens a Hugging Face checkpoint directory, either one model.safetensors or the
 * shards that model.safetensors.index.json names in its "weight_map" (tensor name -> shard file).
 * The index and the shards must agree exactly: every listed tensor is in its shard, every shard
 * tensor is listed, and no name is in two shards; a checkpoint that disagrees with its own index
 * is rejected rather than guessed at. */
#include "io/json.h"
#include "io/safetensors_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SINGLE_NAME "model.safetensors"
#define INDEX_NAME "model.safetensors.index.json"
/* An index lists a few hundred names; anything near this is not an index. */
#define MAX_INDEX_BYTES 100000000u

struct hylo_checkpoint {
    hylo_safetensors **shards;
    size_t nshards;
    const hylo_tensor_view **views;     /* shard after shard, each in data-offset order */
    const hylo_tensor_view **by_name;   /* sorted by name, for bsearch                  */
    size_t count;
};

/* One weight_map entry. */
typedef struct {
    const char *tensor;
    const char *shard;
    size_t shard_index;
} map_entry;

/* The parsed index: entries sorted by tensor name, distinct shard names sorted. */
typedef struct {
    const char *path;
    cJSON *root;
    map_entry *entries;
    size_t nentries;
    const char **shard_names;
    size_t nshards;
} index_info;

void hylo_checkpoint_close(hylo_checkpoint *ckpt)
{
    if (!ckpt) return;
    for (size_t i = 0; i < ckpt->nshards; i++) hylo_safetensors_close(ckpt->shards[i]);
    free(ckpt->shards);
    free(ckpt->views);
    free(ckpt->by_name);
    free(ckpt);
}

static void index_free(index_info *ix)
{
    cJSON_Delete(ix->root);
    free(ix->entries);
    free(ix->shard_names);
}

/* ---- Reading the index ------------------------------------------------------------------ */

/* Shard names come from the file and are joined to the directory: only plain file names in
 * the checkpoint directory itself are allowed (no "../" escapes, no absolute paths). */
static const char *shard_name_problem(const char *name)
{
    const char *problem = hylo_st_name_problem(name);
    if (problem) return problem;
    if (strchr(name, '/')) return "is not a plain file name";
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) return "is not a file name";
    return NULL;
}

static int compare_entries(const void *a, const void *b)
{
    return strcmp(((const map_entry *)a)->tensor, ((const map_entry *)b)->tensor);
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Each member of weight_map: a fit tensor name -> a plain shard file name. `r` reads the
 * weight_map object, so that messages name the field "weight_map.<tensor>". */
static hylo_status collect_entries(index_info *ix, const hylo_json_reader *r, hylo_error *err)
{
    size_t n = 0;
    for (const cJSON *e = r->obj->child; e; e = e->next) n++;
    ix->entries = malloc((n ? n : 1) * sizeof *ix->entries);
    if (!ix->entries) return hylo_error_set(err, HYLO_ERR_NOMEM, "%s: out of memory", ix->path);
    char q[80];
    for (const cJSON *e = r->obj->child; e; e = e->next) {
        const char *problem = hylo_st_name_problem(e->string);
        if (problem)
            return hylo_error_set(err, HYLO_ERR_FORMAT, "%s: weight_map tensor name '%s' %s",
                                  ix->path, hylo_st_quote(q, sizeof q, e->string), problem);
        if (!cJSON_IsString(e) || !e->valuestring)
            return hylo_json_type_error(r, e->string, "a shard file name (a string)", e);
        problem = shard_name_problem(e->valuestring);
        if (problem)
            return hylo_error_set(err, HYLO_ERR_FORMAT, "%s: field 'weight_map.%s': shard '%s' %s",
                                  ix->path, e->string, hylo_st_quote(q, sizeof q, e->valuestring),
                                  problem);
        ix->entries[ix->nentries++] = (map_entry){e->string, e->valuestring, 0};
    }
    qsort(ix->entries, n, sizeof *ix->entries, compare_entries);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(ix->entries[i - 1].tensor, ix->entries[i].tensor) == 0)
            return hylo_error_set(err, HYLO_ERR_FORMAT, "%s: tensor '%s' is listed twice in "
                                  "weight_map", ix->path, ix->entries[i].tensor);
    }
    return HYLO_OK;
}

/* The distinct shard names, sorted, and each entry's index among them. */
static hylo_status collect_shards(index_info *ix, hylo_error *err)
{
    ix->shard_names = malloc((ix->nentries ? ix->nentries : 1) * sizeof *ix->shard_names);
    if (!ix->shard_names) return hylo_error_set(err, HYLO_ERR_NOMEM, "%s: out of memory", ix->path);
    for (size_t i = 0; i < ix->nentries; i++) ix->shard_names[i] = ix->entries[i].shard;
    qsort(ix->shard_names, ix->nentries, sizeof *ix->shard_names, compare_strings);
    for (size_t i = 0; i < ix->nentries; i++) {
        if (ix->nshards == 0 || strcmp(ix->shard_names[ix->nshards - 1], ix->shard_names[i]) != 0)
            ix->shard_names[ix->nshards++] = ix->shard_names[i];
    }
    for (size_t i = 0; i < ix->nentries; i++) {
        const char **hit = bsearch(&ix->entries[i].shard, ix->shard_names, ix->nshards,
                                   sizeof *ix->shard_names, compare_strings);
        ix->entries[i].shard_index = (size_t)(hit - ix->shard_names);
    }
    return HYLO_OK;
}

/* The index through the shared JSON readers: exactly one JSON object filling the file, and
 * "weight_map" an object, given once. Other members ("metadata") are not read. */
static hylo_status read_index(index_info *ix, const char *text, size_t len, hylo_error *err)
{
    hylo_status st = hylo_json_parse_object(text, len, ix->path,
                                            "a \"weight_map\" of tensor name -> shard file",
                                            &ix->root, err);
    if (st != HYLO_OK) return st;
    const hylo_json_reader top = {ix->root, "", ix->path, err};
    const cJSON *map = NULL;
    st = hylo_json_lookup(&top, "weight_map", &map);
    if (st != HYLO_OK) return st;
    if (!map)
        return hylo_error_set(err, HYLO_ERR_FORMAT, "%s: field 'weight_map' is missing (expected "
                              "an object of tensor name -> shard file)", ix->path);
    if (!cJSON_IsObject(map))
        return hylo_json_type_error(&top, "weight_map", "an object of tensor name -> shard file",
                                    map);
    const hylo_json_reader entries = {map, "weight_map.", ix->path, err};
    st = collect_entries(ix, &entries, err);
    if (st == HYLO_OK) st = collect_shards(ix, err);
    return st;
}

/* Every fault of an index is a fault of the checkpoint's format (HYLO_ERR_FORMAT), also where
 * the JSON readers, written for configuration files, report HYLO_ERR_CONFIG. */
static hylo_status parse_index(index_info *ix, const char *text, size_t len, hylo_error *err)
{
    hylo_status st = read_index(ix, text, len, err);
    if (st == HYLO_ERR_CONFIG) {
        if (err) err->status = HYLO_ERR_FORMAT;
        st = HYLO_ERR_FORMAT;
    }
    return st;
}

/* ---- Checking the shards against the index ---------------------------------------------- */

static int compare_entry_key(const void *key, const void *elem)
{
    return strcmp((const char *)key, ((const map_entry *)elem)->tensor);
}

static hylo_status check_shards(const index_info *ix, hylo_checkpoint *ck, hylo_error *err)
{
    for (size_t i = 0; i < ix->nentries; i++) {
        const map_entry *e = &ix->entries[i];
        if (!hylo_safetensors_find(ck->shards[e->shard_index], e->tensor))
            return hylo_error_set(err, HYLO_ERR_SHAPE, "%s: weight_map puts tensor '%s' in shard "
                                  "'%s', which does not hold it", ix->path, e->tensor, e->shard);
    }
    for (size_t s = 0; s < ck->nshards; s++) {
        for (size_t i = 0; i < hylo_safetensors_count(ck->shards[s]); i++) {
            const char *name = hylo_safetensors_at(ck->shards[s], i)->name;
            const map_entry *e = bsearch(name, ix->entries, ix->nentries, sizeof *ix->entries,
                                         compare_entry_key);
            if (!e)
                return hylo_error_set(err, HYLO_ERR_FORMAT, "%s: shard '%s' holds tensor '%s', "
                                      "which weight_map does not list", ix->path,
                                      ix->shard_names[s], name);
            if (e->shard_index != s) /* listed and present elsewhere: it is in two shards */
                return hylo_error_set(err, HYLO_ERR_FORMAT, "%s: tensor '%s' is in shard '%s' and "
                                      "in shard '%s'", ix->path, name, e->shard, ix->shard_names[s]);
        }
    }
    return HYLO_OK;
}

static hylo_status open_shards(const char *dir, const index_info *ix, hylo_checkpoint *ck,
                               hylo_error *err)
{
    ck->shards = calloc(ix->nshards ? ix->nshards : 1, sizeof *ck->shards);
    if (!ck->shards) return hylo_error_set(err, HYLO_ERR_NOMEM, "%s: out of memory", ix->path);
    for (size_t s = 0; s < ix->nshards; s++) {
        char *path = hylo_st_path_join(dir, ix->shard_names[s]);
        if (!path) return hylo_error_set(err, HYLO_ERR_NOMEM, "%s: out of memory", ix->path);
        hylo_status st = hylo_safetensors_open(path, &ck->shards[s], err);
        free(path);
        if (st != HYLO_OK) {
            hylo_error_wrap(err, "%s: shard '%s'", ix->path, ix->shard_names[s]);
            return st;
        }
        ck->nshards++;
    }
    return check_shards(ix, ck, err);
}

/* ---- The combined view ------------------------------------------------------------------ */

static int compare_view_names(const void *a, const void *b)
{
    return strcmp((*(const hylo_tensor_view *const *)a)->name,
                  (*(const hylo_tensor_view *const *)b)->name);
}

static hylo_status build_views(const char *dir, hylo_checkpoint *ck, hylo_error *err)
{
    size_t n = 0;
    for (size_t s = 0; s < ck->nshards; s++) n += hylo_safetensors_count(ck->shards[s]);
    ck->views = malloc((n ? n : 1) * sizeof *ck->views);
    ck->by_name = malloc((n ? n : 1) * sizeof *ck->by_name);
    if (!ck->views || !ck->by_name)
        return hylo_error_set(err, HYLO_ERR_NOMEM, "%s: out of memory for %zu tensors", dir, n);
    for (size_t s = 0; s < ck->nshards; s++) {
        for (size_t i = 0; i < hylo_safetensors_count(ck->shards[s]); i++)
            ck->views[ck->count++] = hylo_safetensors_at(ck->shards[s], i);
    }
    memcpy(ck->by_name, ck->views, n * sizeof *ck->views);
    qsort(ck->by_name, n, sizeof *ck->by_name, compare_view_names);
    return HYLO_OK;
}

static hylo_status open_single(const char *path, hylo_checkpoint *ck, hylo_error *err)
{
    ck->shards = calloc(1, sizeof *ck->shards);
    if (!ck->shards) return hylo_error_set(err, HYLO_ERR_NOMEM, "%s: out of memory", path);
    hylo_status st = hylo_safetensors_open(path, &ck->shards[0], err);
    if (st == HYLO_OK) ck->nshards = 1;
    return st;
}

static hylo_status open_indexed(const char *dir, const char *path, hylo_checkpoint *ck,
                                hylo_error *err)
{
    char *text = NULL;
    size_t len = 0;
    hylo_status st = hylo_json_read_file(path, MAX_INDEX_BYTES, &text, &len, err);
    if (st != HYLO_OK) return st;
    index_info ix = {.path = path};
    st = parse_index(&ix, text, len, err);
    if (st == HYLO_OK) st = open_shards(dir, &ix, ck, err);
    index_free(&ix);
    free(text);
    return st;
}

/* model.safetensors wins when both exist, as in transformers; with neither, the message says
 * which files were looked for. */
static hylo_status open_any(const char *dir, const char *single, const char *index,
                            hylo_checkpoint *ck, hylo_error *err)
{
    struct stat sb;
    hylo_status st;
    if (stat(single, &sb) == 0) st = open_single(single, ck, err);
    else if (errno != ENOENT) st = hylo_error_set(err, HYLO_ERR_IO, "%s: %s", single, strerror(errno));
    else if (stat(index, &sb) != 0 && errno == ENOENT)
        st = hylo_error_set(err, HYLO_ERR_IO, "%s: not a checkpoint: neither %s nor %s exists",
                            dir, SINGLE_NAME, INDEX_NAME);
    else st = open_indexed(dir, index, ck, err);
    if (st == HYLO_OK) st = build_views(dir, ck, err);
    return st;
}

hylo_status hylo_checkpoint_open(const char *dir, hylo_checkpoint **out, hylo_error *err)
{
    if (!dir || !out) return hylo_error_set(err, HYLO_ERR_USAGE, "hylo_checkpoint_open: NULL argument");
    *out = NULL;
    hylo_checkpoint *ck = calloc(1, sizeof *ck);
    char *single = hylo_st_path_join(dir, SINGLE_NAME);
    char *index = hylo_st_path_join(dir, INDEX_NAME);
    hylo_status st = HYLO_OK;
    if (!ck || !single || !index) st = hylo_error_set(err, HYLO_ERR_NOMEM, "%s: out of memory", dir);
    if (st == HYLO_OK) st = open_any(dir, single, index, ck, err);
    free(single);
    free(index);
    if (st != HYLO_OK) {
        hylo_checkpoint_close(ck);
        return st;
    }
    *out = ck;
    return HYLO_OK;
}

const char *hylo_st_checkpoint_file(const hylo_checkpoint *ckpt, size_t i)
{
    if (!ckpt || i >= ckpt->count) return NULL;
    for (size_t s = 0; s < ckpt->nshards; s++) { /* views run shard after shard */
        size_t n = hylo_safetensors_count(ckpt->shards[s]);
        if (i < n) return hylo_st_label(ckpt->shards[s]);
        i -= n;
    }
    return NULL;
}

size_t hylo_checkpoint_count(const hylo_checkpoint *ckpt)
{
    return ckpt ? ckpt->count : 0;
}

const hylo_tensor_view *hylo_checkpoint_at(const hylo_checkpoint *ckpt, size_t i)
{
    return ckpt && i < ckpt->count ? ckpt->views[i] : NULL;
}

static int compare_view_key(const void *key, const void *elem)
{
    return strcmp((const char *)key, (*(const hylo_tensor_view *const *)elem)->name);
}

const hylo_tensor_view *hylo_checkpoint_find(const hylo_checkpoint *ckpt, const char *name)
{
    if (!ckpt || !name || ckpt->count == 0) return NULL;
    const hylo_tensor_view *const *hit =
        bsearch(name, ckpt->by_name, ckpt->count, sizeof *ckpt->by_name, compare_view_key);
    return hit ? *hit : NULL;
}
