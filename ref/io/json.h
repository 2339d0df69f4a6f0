/* json.h: typed reads and writes of the small JSON files hylo handles (config.json,
 * hybrid_config.json, model.safetensors.index.json, safetensors headers), the paths and configs
 * of checkpoint directories, and the atomic file writer every output goes through (internal). */
#ifndef HYLO_JSON_H
#define HYLO_JSON_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hylo.h"

/* ---- reading ------------------------------------------------------------------------------ */

/* One JSON object being read. `where` prefixes field names in messages ("rope_scaling."),
 * `label` names the file. Every read_* below leaves *out untouched when the member is absent
 * or null; *found (if not NULL) tells whether it was there. A key given twice is an error. */
typedef struct {
    const cJSON *obj;
    const char *where;
    const char *label;
    hylo_error *err;
} hylo_json_reader;

/* What a JSON item is, for messages: `the string "2048"`, `the number 2048.5`, `an array`. */
void hylo_json_describe(const cJSON *item, char *buf, size_t size);
/* "LABEL: field 'WHEREkey': expected EXPECTED, got <description>" (HYLO_ERR_CONFIG). */
hylo_status hylo_json_type_error(const hylo_json_reader *r, const char *key,
                                 const char *expected, const cJSON *item);
/* The member `key`, NULL when absent; JSON null is returned as is. */
hylo_status hylo_json_lookup(const hylo_json_reader *r, const char *key, const cJSON **out);
/* Like hylo_json_lookup, but JSON null reads as absent. */
hylo_status hylo_json_member(const hylo_json_reader *r, const char *key, const cJSON **out);
/* Integers must be integral and at most 2^53 in magnitude; doubles finite. */
hylo_status hylo_json_read_int(const hylo_json_reader *r, const char *key, int64_t *out,
                               bool *found);
hylo_status hylo_json_read_double(const hylo_json_reader *r, const char *key, double *out,
                                  bool *found);
hylo_status hylo_json_read_bool(const hylo_json_reader *r, const char *key, bool *out,
                                bool *found);
hylo_status hylo_json_read_string(const hylo_json_reader *r, const char *key, const char **out,
                                  bool *found);

/* Parses exactly one JSON value filling json[0, len) (bad bytes: HYLO_ERR_FORMAT with byte and
 * line) and requires an object (else HYLO_ERR_CONFIG; `what` completes "expected a JSON object
 * with ...", e.g. "fields such as 'model_type'"). */
hylo_status hylo_json_parse_object(const char *json, size_t len, const char *label,
                                   const char *what, cJSON **out, hylo_error *err);
/* Reads a whole file of at most max_bytes into a malloc'd, NUL-terminated buffer. */
hylo_status hylo_json_read_file(const char *path, size_t max_bytes, char **out, size_t *len,
                                hylo_error *err);

/* ---- paths and the configs of a checkpoint directory ------------------------------------- */

/* The size of the path buffers below (Linux's PATH_MAX). */
#define HYLO_PATH_MAX 4096
/* out[size] <- "dir/name"; a path that does not fit is an error (HYLO_ERR_IO, naming dir and
 * name), never cut short. */
hylo_status hylo_path_join(char *out, size_t size, const char *dir, const char *name,
                           hylo_error *err);
/* The config.json of a checkpoint directory (hybrid_config.c). */
hylo_status hylo_dir_config_load(const char *dir, hylo_config *cfg, hylo_error *err);
/* config.json and, when the directory has one, hybrid_config.json (else the teacher's all
 * attention mixers, and *is_hybrid false; is_hybrid may be NULL) (hybrid_config.c). */
hylo_status hylo_dir_configs_load(const char *dir, hylo_config *cfg, hylo_hybrid_config *hybrid,
                                  bool *is_hybrid, hylo_error *err);

/* ---- writing ------------------------------------------------------------------------------ */

/* A growing text buffer; `failed` records an allocation failure instead of reporting each. */
typedef struct {
    char *data;
    size_t len, cap;
    bool failed;
} hylo_text;

void hylo_text_put(hylo_text *t, const char *s, size_t n);
void hylo_text_printf(hylo_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a quoted, escaped JSON string. */
void hylo_text_json_string(hylo_text *t, const char *s);
void hylo_text_free(hylo_text *t);

/* The shortest text that reads back as v, spelled as a float the way Python does ("32.0",
 * "500000.0", "1e-05"). */
void hylo_json_format_double(double v, char *out, size_t size);
/* Members of an object indented by `indent` spaces: `"key": value`, with the separating ",\n"
 * written before all but the first (tracked in *first). */
void hylo_json_put_key(hylo_text *t, bool *first, int indent, const char *key);
void hylo_json_put_int(hylo_text *t, bool *first, int indent, const char *key, int64_t v);
void hylo_json_put_double(hylo_text *t, bool *first, int indent, const char *key, double v);
void hylo_json_put_bool(hylo_text *t, bool *first, int indent, const char *key, bool v);
void hylo_json_put_string(hylo_text *t, bool *first, int indent, const char *key,
                          const char *v);

/* ---- atomic files ------------------------------------------------------------------------- */

/* A file written under a temporary name in the destination's directory and renamed over the
 * destination only once complete and synced, so that readers never see a partial file. */
typedef struct {
    int fd;     /* -1 once synced and closed */
    char *path; /* destination */
    char *tmp;  /* temporary file, NULL once renamed */
} hylo_atomic_file;

hylo_status hylo_atomic_open(hylo_atomic_file *f, const char *path, hylo_error *err);
/* Writes all n bytes, retrying short writes and EINTR. */
hylo_status hylo_atomic_write(hylo_atomic_file *f, const void *bytes, size_t n, hylo_error *err);
/* fsyncs and closes the temporary file; it is not yet visible under its destination name. */
hylo_status hylo_atomic_sync(hylo_atomic_file *f, hylo_error *err);
/* Renames a synced file over its destination, fsyncs the directory and frees f's strings. On
 * failure the temporary file is removed. */
hylo_status hylo_atomic_publish(hylo_atomic_file *f, hylo_error *err);
/* Closes and removes the temporary file (if any) and frees f's strings. */
void hylo_atomic_abort(hylo_atomic_file *f);
/* open + write + sync + publish of a text buffer (HYLO_ERR_NOMEM when t->failed). */
hylo_status hylo_atomic_write_text(const char *path, const hylo_text *t, hylo_error *err);

/* ---- rope settings (config.c) ------------------------------------------------------------- */

/* Reads a rope scaling object ({"rope_type" or "type": ..., "factor": ..., ...}) into `out`,
 * with the canonical defaults of config.c for fields the type does not use; theta is left to
 * the caller (out->theta is kept as it was; "rope_theta" is not read). `max_position` is yarn's
 * default original_max_position_embeddings. */
hylo_status hylo_json_read_rope(const hylo_json_reader *r, int64_t max_position,
                                hylo_rope_config *out);
/* Checks rope settings (theta, and the fields of its type); messages name "rope_scaling.<field>"
 * after `label`. */
hylo_status hylo_rope_check(const hylo_rope_config *rope, const char *label, hylo_error *err);
/* Writes the rope scaling object of `rope` (keys sorted; null for the default type) as the
 * value of the key just put at `indent` spaces: its members go at indent + 2, its closing
 * brace at indent. `max_position` is the model's max_position_embeddings: yarn writes
 * original_max_position_embeddings only when it differs. */
void hylo_json_put_rope(hylo_text *t, int indent, const hylo_rope_config *rope,
                        int64_t max_position);

#endif
