/* safetensors_write.c: writes safetensors files atomically (through json.c's atomic files:
 * temporary file, fsync, rename, fsync of the directory), plus the spec checks and two-phase
 * commit the checkpoint writer shares with it.
 *
 * Layout: the header is built by hand (integers printed exactly, never in exponent form) and
 * padded with spaces so that the data buffer starts at a file offset that is a multiple of 64;
 * the header length is then a multiple of 8 as the format asks. Tensor data follows in spec
 * order with no gaps: the reference reader (huggingface/safetensors) rejects a file whose
 * data_offsets are not contiguous from 0 to the end of the file, so padding between tensors
 * would make files that PyTorch/transformers cannot load. A tensor therefore starts 64-byte
 * aligned whenever the tensors before it have sizes that are multiples of 64, which holds for
 * the weight matrices of every model shape hylo knows. */
#include "io/json.h"
#include "io/safetensors_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- Paths -------------------------------------------------------------------------------- */

char *hylo_st_path_join(const char *dir, const char *name)
{
    size_t dn = strlen(dir), nn = strlen(name);
    bool slash = dn > 0 && dir[dn - 1] != '/';
    char *p = malloc(dn + slash + nn + 1);
    if (!p) return NULL;
    memcpy(p, dir, dn);
    if (slash) p[dn] = '/';
    memcpy(p + dn + slash, name, nn + 1);
    return p;
}

/* ---- Spec checks ------------------------------------------------------------------------ */

static hylo_status check_spec(const hylo_tensor_spec *s, size_t i, const char *label,
                              uint64_t *nbytes, hylo_error *err)
{
    if (!s->name) return hylo_error_set(err, HYLO_ERR_USAGE, "%s: tensor %zu has no name", label, i);
    const char *problem = hylo_st_name_problem(s->name);
    char q[80];
    if (problem)
        return hylo_error_set(err, HYLO_ERR_USAGE, "%s: tensor %zu: name '%s' %s", label, i,
                              hylo_st_quote(q, sizeof q, s->name), problem);
    if (strcmp(s->name, "__metadata__") == 0)
        return hylo_error_set(err, HYLO_ERR_USAGE, "%s: '__metadata__' is reserved, not a tensor "
                              "name", label);
    if (s->dtype != HYLO_F32 && s->dtype != HYLO_F16 && s->dtype != HYLO_BF16)
        return hylo_error_set(err, HYLO_ERR_USAGE, "%s: tensor '%s': unknown dtype %d", label,
                              s->name, (int)s->dtype);
    if (s->ndim < 0 || s->ndim > HYLO_MAX_DIMS)
        return hylo_error_set(err, HYLO_ERR_USAGE, "%s: tensor '%s': ndim %d is outside [0, %d]",
                              label, s->name, s->ndim, HYLO_MAX_DIMS);
    uint64_t numel = 1;
    for (int d = 0; d < s->ndim; d++) {
        if (s->shape[d] < 0)
            return hylo_error_set(err, HYLO_ERR_SHAPE, "%s: tensor '%s': shape[%d] = %lld is "
                                  "negative", label, s->name, d, (long long)s->shape[d]);
        /* Readers hold JSON numbers as doubles: keep every number below 2^53. */
        if ((double)s->shape[d] >= HYLO_ST_MAX_INT ||
            __builtin_mul_overflow(numel, (uint64_t)s->shape[d], &numel))
            return hylo_error_set(err, HYLO_ERR_RANGE, "%s: tensor '%s': shape is too large",
                                  label, s->name);
    }
    if (__builtin_mul_overflow(numel, (uint64_t)hylo_dtype_size(s->dtype), nbytes) ||
        (double)*nbytes >= HYLO_ST_MAX_INT)
        return hylo_error_set(err, HYLO_ERR_RANGE, "%s: tensor '%s': shape is too large", label,
                              s->name);
    return HYLO_OK;
}

static int compare_spec_names(const void *a, const void *b)
{
    return strcmp((*(const hylo_tensor_spec *const *)a)->name,
                  (*(const hylo_tensor_spec *const *)b)->name);
}

static hylo_status check_unique_names(const hylo_tensor_spec *specs, size_t count,
                                      const char *label, hylo_error *err)
{
    const hylo_tensor_spec **sorted = malloc((count ? count : 1) * sizeof *sorted);
    if (!sorted) return hylo_error_set(err, HYLO_ERR_NOMEM, "%s: out of memory", label);
    for (size_t i = 0; i < count; i++) sorted[i] = &specs[i];
    qsort(sorted, count, sizeof *sorted, compare_spec_names);
    hylo_status st = HYLO_OK;
    for (size_t i = 1; i < count && st == HYLO_OK; i++) {
        if (strcmp(sorted[i - 1]->name, sorted[i]->name) == 0)
            st = hylo_error_set(err, HYLO_ERR_USAGE, "%s: tensor '%s' appears twice", label,
                                sorted[i]->name);
    }
    free(sorted);
    return st;
}

hylo_status hylo_st_check_specs(const hylo_tensor_spec *specs, size_t count, const char *label,
                                uint64_t *nbytes, hylo_error *err)
{
    if (!specs && count) return hylo_error_set(err, HYLO_ERR_USAGE, "%s: specs is NULL", label);
    uint64_t total = 0;
    for (size_t i = 0; i < count; i++) {
        hylo_status st = check_spec(&specs[i], i, label, &nbytes[i], err);
        if (st != HYLO_OK) return st;
        if (__builtin_add_overflow(total, nbytes[i], &total) || (double)total >= HYLO_ST_MAX_INT)
            return hylo_error_set(err, HYLO_ERR_RANGE, "%s: the tensors' total size is too large",
                                  label);
    }
    return check_unique_names(specs, count, label, err);
}

/* ---- Header ----------------------------------------------------------------------------- */

/* metadata is NULL or key, value, ..., NULL: an odd list, a repeated key or text that is not
 * UTF-8 would give a header no reader accepts. */
static hylo_status check_metadata(const char *const *metadata, const char *label, hylo_error *err)
{
    if (!metadata) return HYLO_OK;
    char q[80];
    for (size_t i = 0; metadata[i]; i += 2) {
        const char *key = metadata[i], *value = metadata[i + 1];
        if (!value)
            return hylo_error_set(err, HYLO_ERR_USAGE, "%s: metadata key '%s' has no value", label,
                                  hylo_st_quote(q, sizeof q, key));
        if (hylo_st_utf8_prefix(key, strlen(key)) != strlen(key) ||
            hylo_st_utf8_prefix(value, strlen(value)) != strlen(value))
            return hylo_error_set(err, HYLO_ERR_USAGE, "%s: metadata '%s' is not valid UTF-8",
                                  label, hylo_st_quote(q, sizeof q, key));
        for (size_t j = 0; j < i; j += 2) {
            if (strcmp(metadata[j], key) == 0)
                return hylo_error_set(err, HYLO_ERR_USAGE, "%s: metadata key '%s' appears twice",
                                      label, hylo_st_quote(q, sizeof q, key));
        }
    }
    return HYLO_OK;
}

/* The 8-byte length followed by the padded JSON header. */
static void build_header(hylo_text *b, const hylo_tensor_spec *specs, size_t count,
                         const uint64_t *nbytes, const char *const *metadata)
{
    hylo_text_put(b, "        {", 9); /* the length is filled in last */
    bool first = true;
    if (metadata && metadata[0]) {
        hylo_text_put(b, "\"__metadata__\":{", 16);
        for (size_t i = 0; metadata[i]; i += 2) {
            if (i) hylo_text_put(b, ",", 1);
            hylo_text_json_string(b, metadata[i]);
            hylo_text_put(b, ":", 1);
            hylo_text_json_string(b, metadata[i + 1]);
        }
        hylo_text_put(b, "}", 1);
        first = false;
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < count; i++) {
        if (!first) hylo_text_put(b, ",", 1);
        first = false;
        hylo_text_json_string(b, specs[i].name);
        hylo_text_printf(b, ":{\"dtype\":\"%s\",\"shape\":[", hylo_dtype_name(specs[i].dtype));
        for (int d = 0; d < specs[i].ndim; d++)
            hylo_text_printf(b, "%s%lld", d ? "," : "", (long long)specs[i].shape[d]);
        hylo_text_printf(b, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)offset,
                           (unsigned long long)(offset + nbytes[i]));
        offset += nbytes[i];
    }
    hylo_text_put(b, "}", 1);
    while (!b->failed && b->len % HYLO_ST_DATA_ALIGN != 0) hylo_text_put(b, " ", 1);
    if (b->failed) return;
    uint64_t n = b->len - 8;
    for (int i = 0; i < 8; i++) b->data[i] = (char)(unsigned char)(n >> (8 * i));
}

/* ---- Writer ----------------------------------------------------------------------------- */

struct hylo_safetensors_writer {
    hylo_atomic_file file;
    size_t count;
    char **names;          /* copies, for messages                                  */
    uint64_t *nbytes;      /* each tensor's size                                    */
    size_t current;        /* first tensor still missing bytes (count when all done) */
    uint64_t received;     /* bytes of tensor `current` received so far             */
    uint64_t left;         /* bytes still expected in all                           */
    bool failed;           /* an append failed: the temporary file is unusable      */
};

static void writer_free(hylo_safetensors_writer *w)
{
    if (w->names)
        for (size_t i = 0; i < w->count; i++) free(w->names[i]);
    free(w->names);
    free(w->nbytes);
    free(w);
}

void hylo_safetensors_writer_abort(hylo_safetensors_writer *w)
{
    if (!w) return;
    hylo_atomic_abort(&w->file);
    writer_free(w);
}

/* Everything a writer needs besides its file: sizes, name copies and the first tensor due. */
static hylo_status writer_init(hylo_safetensors_writer *w, const char *path,
                               const hylo_tensor_spec *specs, size_t count,
                               const char *const *metadata, hylo_error *err)
{
    w->count = count;
    w->nbytes = calloc(count ? count : 1, sizeof *w->nbytes);
    w->names = calloc(count ? count : 1, sizeof *w->names);
    if (!w->nbytes || !w->names) return hylo_error_set(err, HYLO_ERR_NOMEM, "%s: out of memory", path);
    hylo_status st = hylo_st_check_specs(specs, count, path, w->nbytes, err);
    if (st == HYLO_OK) st = check_metadata(metadata, path, err);
    if (st != HYLO_OK) return st;
    for (size_t i = 0; i < count; i++) {
        w->names[i] = strdup(specs[i].name);
        if (!w->names[i]) return hylo_error_set(err, HYLO_ERR_NOMEM, "%s: out of memory", path);
        w->left += w->nbytes[i];
    }
    while (w->current < count && w->nbytes[w->current] == 0) w->current++;
    return HYLO_OK;
}

hylo_status hylo_safetensors_writer_open(const char *path, const hylo_tensor_spec *specs,
                                         size_t count, const char *const *metadata,
                                         hylo_safetensors_writer **out, hylo_error *err)
{
    if (!out || !path)
        return hylo_error_set(err, HYLO_ERR_USAGE, "hylo_safetensors_writer_open: NULL argument");
    *out = NULL;
    hylo_safetensors_writer *w = calloc(1, sizeof *w);
    if (!w) return hylo_error_set(err, HYLO_ERR_NOMEM, "%s: out of memory", path);
    w->file.fd = -1;
    hylo_status st = writer_init(w, path, specs, count, metadata, err);
    hylo_text header = {0};
    if (st == HYLO_OK) {
        build_header(&header, specs, count, w->nbytes, metadata);
        if (header.failed) st = hylo_error_set(err, HYLO_ERR_NOMEM, "%s: out of memory", path);
    }
    if (st == HYLO_OK && header.len - 8 > HYLO_ST_MAX_HEADER)
        st = hylo_error_set(err, HYLO_ERR_RANGE, "%s: the header would be %zu bytes, over the "
                            "limit of %u", path, header.len - 8, HYLO_ST_MAX_HEADER);
    if (st == HYLO_OK) st = hylo_atomic_open(&w->file, path, err);
    if (st == HYLO_OK) {
        st = hylo_atomic_write(&w->file, header.data, header.len, err);
        if (st != HYLO_OK) hylo_atomic_abort(&w->file);
    }
    hylo_text_free(&header);
    if (st != HYLO_OK) {
        writer_free(w);
        return st;
    }
    *out = w;
    return HYLO_OK;
}

/* Moves the cursor over n received bytes, skipping empty tensors. */
static void advance(hylo_safetensors_writer *w, uint64_t n)
{
    w->left -= n;
    while (w->current < w->count) {
        uint64_t need = w->nbytes[w->current] - w->received;
        if (n < need) {
            w->received += n;
            return;
        }
        n -= need;
        w->received = 0;
        w->current++;
    }
}

hylo_status hylo_safetensors_writer_append(hylo_safetensors_writer *w, const void *bytes,
                                           size_t nbytes, hylo_error *err)
{
    if (!w) return hylo_error_set(err, HYLO_ERR_USAGE, "hylo_safetensors_writer_append: NULL writer");
    const char *path = w->file.path;
    if (w->failed)
        return hylo_error_set(err, HYLO_ERR_USAGE, "%s: an earlier append failed; abort the writer",
                              path);
    if (nbytes == 0) return HYLO_OK;
    if (!bytes) return hylo_error_set(err, HYLO_ERR_USAGE, "%s: bytes is NULL", path);
    if (nbytes > w->left) {
        w->failed = true;
        if (w->current == w->count)
            return hylo_error_set(err, HYLO_ERR_SHAPE, "%s: %zu bytes appended after the last "
                                  "tensor was complete", path, nbytes);
        return hylo_error_set(err, HYLO_ERR_SHAPE, "%s: %zu bytes appended but only %llu remain "
                              "(tensor '%s' needs %llu more and is followed by %zu tensors)",
                              path, nbytes, (unsigned long long)w->left, w->names[w->current],
                              (unsigned long long)(w->nbytes[w->current] - w->received),
                              w->count - w->current - 1);
    }
    hylo_status st = hylo_atomic_write(&w->file, bytes, nbytes, err);
    if (st != HYLO_OK) {
        w->failed = true;
        return st;
    }
    advance(w, nbytes);
    return HYLO_OK;
}

hylo_status hylo_st_writer_finish(hylo_safetensors_writer *w, hylo_error *err)
{
    const char *path = w->file.path;
    if (w->failed)
        return hylo_error_set(err, HYLO_ERR_USAGE, "%s: an earlier append failed; nothing written",
                              path);
    if (w->current < w->count)
        return hylo_error_set(err, HYLO_ERR_SHAPE, "%s: tensor '%s' received %llu of its %llu "
                              "bytes (%llu bytes missing in all); nothing written", path,
                              w->names[w->current], (unsigned long long)w->received,
                              (unsigned long long)w->nbytes[w->current],
                              (unsigned long long)w->left);
    return hylo_atomic_sync(&w->file, err);
}

hylo_status hylo_st_writer_publish(hylo_safetensors_writer *w, hylo_error *err)
{
    hylo_status st = hylo_atomic_publish(&w->file, err);
    writer_free(w);
    return st;
}

hylo_status hylo_safetensors_writer_commit(hylo_safetensors_writer *w, hylo_error *err)
{
    if (!w) return hylo_error_set(err, HYLO_ERR_USAGE, "hylo_safetensors_writer_commit: NULL writer");
    hylo_status st = hylo_st_writer_finish(w, err);
    if (st != HYLO_OK) {
        hylo_safetensors_writer_abort(w);
        return st;
    }
    return hylo_st_writer_publish(w, err);
}

hylo_status hylo_safetensors_write(const char *path, const hylo_tensor_spec *specs,
                                   const void *const *data, size_t count,
                                   const char *const *metadata, hylo_error *err)
{
    if (!data && count)
        return hylo_error_set(err, HYLO_ERR_USAGE, "%s: data is NULL", path ? path : "(null)");
    hylo_safetensors_writer *w;
    hylo_status st = hylo_safetensors_writer_open(path, specs, count, metadata, &w, err);
    if (st != HYLO_OK) return st;
    for (size_t i = 0; i < count && st == HYLO_OK; i++)
        st = hylo_safetensors_writer_append(w, data[i], (size_t)w->nbytes[i], err);
    if (st != HYLO_OK) {
        hylo_safetensors_writer_abort(w);
        return st;
    }
    return hylo_safetensors_writer_commit(w, err);
}
