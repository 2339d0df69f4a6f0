/* safetensors_write.c: writes safetensors files atomically (temporary file, fsync, rename, fsync
 * of the directory), plus the small helpers the checkpoint writer shares with it.
 *
 * Layout: the header is built by hand (integers printed exactly, never in exponent form) and
 * padded with spaces so that the data buffer starts at a file offset that is a multiple of 64;
 * the header length is then a multiple of 8 as the format asks. Tensor data follows in spec
 * order with no gaps: the reference reader (huggingface/safetensors) rejects a file whose
 * data_offsets are not contiguous from 0 to the end of the file, so padding between tensors
 * would make files that PyTorch/transformers cannot load. A tensor therefore starts 64-byte
 * aligned whenever the tensors before it have sizes that are multiples of 64, which holds for
 * the weight matrices of every model shape hylo knows. */
#include "io/safetensors_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- Text buffer ------------------------------------------------------------------------ */

static bool buf_reserve(hylo_st_buf *b, size_t extra)
{
    if (b->failed) return false;
    if (extra < b->cap - b->len) return true; /* keeps room for a NUL */
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len <= extra) {
        if (cap > SIZE_MAX / 2) { b->failed = true; return false; }
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p) { b->failed = true; return false; }
    b->data = p;
    b->cap = cap;
    return true;
}

void hylo_st_buf_put(hylo_st_buf *b, const char *s, size_t n)
{
    if (!buf_reserve(b, n)) return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void hylo_st_buf_printf(hylo_st_buf *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) { b->failed = true; return; }
    if ((size_t)n < sizeof small) { hylo_st_buf_put(b, small, (size_t)n); return; }
    if (!buf_reserve(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* UTF-8 passes through; quotes, backslashes and control characters are escaped. */
void hylo_st_buf_json_string(hylo_st_buf *b, const char *s)
{
    hylo_st_buf_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            char esc[2] = {'\\', (char)*p};
            hylo_st_buf_put(b, esc, 2);
        } else if (*p < 0x20 || *p == 0x7f) {
            hylo_st_buf_printf(b, "\\u%04x", *p);
        } else {
            hylo_st_buf_put(b, (const char *)p, 1);
        }
    }
    hylo_st_buf_put(b, "\"", 1);
}

void hylo_st_buf_free(hylo_st_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

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

/* ---- Atomic files ----------------------------------------------------------------------- */

/* The directory part of path ("." when it has none), or NULL when out of memory. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

/* Creates "<dir>/.<name>.tmp.<pid>.<n>" exclusively. Unlike mkstemp this honours the umask
 * (mkstemp forces 0600, which would make checkpoints unreadable to other users). */
static hylo_status create_temp(hylo_st_atomic *f, hylo_error *err)
{
    const char *slash = strrchr(f->path, '/');
    size_t dir_len = slash ? (size_t)(slash - f->path) + 1 : 0;
    const char *base = f->path + dir_len;
    if (*base == '\0')
        return hylo_error_set(err, HYLO_ERR_USAGE, "%s: path names a directory, not a file", f->path);
    size_t size = strlen(f->path) + 64;
    f->tmp = malloc(size);
    if (!f->tmp) return hylo_error_set(err, HYLO_ERR_NOMEM, "%s: out of memory", f->path);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    unsigned long seed = (unsigned long)ts.tv_nsec ^ ((unsigned long)ts.tv_sec << 20);
    for (unsigned attempt = 0; attempt < 100; attempt++) {
        snprintf(f->tmp, size, "%.*s.%s.tmp.%ld.%lx", (int)dir_len, f->path, base, (long)getpid(),
                 seed + attempt);
        f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (f->fd >= 0) return HYLO_OK;
        if (errno != EEXIST) break;
    }
    hylo_status st = hylo_error_set(err, HYLO_ERR_IO, "%s: cannot create temporary file %s: %s",
                                    f->path, f->tmp, strerror(errno));
    free(f->tmp);
    f->tmp = NULL;
    return st;
}

hylo_status hylo_st_atomic_open(hylo_st_atomic *f, const char *path, hylo_error *err)
{
    f->fd = -1;
    f->tmp = NULL;
    f->path = strdup(path);
    if (!f->path) return hylo_error_set(err, HYLO_ERR_NOMEM, "%s: out of memory", path);
    hylo_status st = create_temp(f, err);
    if (st != HYLO_OK) {
        free(f->path);
        f->path = NULL;
    }
    return st;
}

hylo_status hylo_st_atomic_write(hylo_st_atomic *f, const void *bytes, size_t n, hylo_error *err)
{
    const unsigned char *p = bytes;
    while (n > 0) {
        /* Linux writes at most ~2 GiB per call; ask for 1 GiB at a time. */
        size_t chunk = n < ((size_t)1 << 30) ? n : ((size_t)1 << 30);
        ssize_t k = write(f->fd, p, chunk);
        if (k < 0) {
            if (errno == EINTR) continue;
            return hylo_error_set(err, HYLO_ERR_IO, "%s: write failed: %s", f->tmp, strerror(errno));
        }
        if (k == 0)
            return hylo_error_set(err, HYLO_ERR_IO, "%s: write made no progress", f->tmp);
        p += k;
        n -= (size_t)k;
    }
    return HYLO_OK;
}

hylo_status hylo_st_atomic_sync(hylo_st_atomic *f, hylo_error *err)
{
    if (fsync(f->fd) != 0)
        return hylo_error_set(err, HYLO_ERR_IO, "%s: fsync failed: %s", f->tmp, strerror(errno));
    int rc = close(f->fd);
    f->fd = -1; /* closed even when close reports an error */
    if (rc != 0)
        return hylo_error_set(err, HYLO_ERR_IO, "%s: close failed: %s", f->tmp, strerror(errno));
    return HYLO_OK;
}

/* Makes the rename itself durable. */
static hylo_status sync_dir(const char *path, hylo_error *err)
{
    char *dir = dir_of(path);
    if (!dir) return hylo_error_set(err, HYLO_ERR_NOMEM, "%s: out of memory", path);
    hylo_status st = HYLO_OK;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0)
        st = hylo_error_set(err, HYLO_ERR_IO, "%s: renamed, but syncing directory %s failed: %s",
                            path, dir, strerror(errno));
    if (fd >= 0) close(fd);
    free(dir);
    return st;
}

hylo_status hylo_st_atomic_publish(hylo_st_atomic *f, hylo_error *err)
{
    hylo_status st;
    if (rename(f->tmp, f->path) != 0) {
        st = hylo_error_set(err, HYLO_ERR_IO, "%s: cannot rename %s over it: %s", f->path, f->tmp,
                            strerror(errno));
        hylo_st_atomic_abort(f);
        return st;
    }
    free(f->tmp);
    f->tmp = NULL;
    st = sync_dir(f->path, err);
    free(f->path);
    f->path = NULL;
    return st;
}

void hylo_st_atomic_abort(hylo_st_atomic *f)
{
    if (f->fd >= 0) close(f->fd);
    f->fd = -1;
    if (f->tmp) unlink(f->tmp);
    free(f->tmp);
    free(f->path);
    f->tmp = NULL;
    f->path = NULL;
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
static void build_header(hylo_st_buf *b, const hylo_tensor_spec *specs, size_t count,
                         const uint64_t *nbytes, const char *const *metadata)
{
    hylo_st_buf_put(b, "        {", 9); /* the length is filled in last */
    bool first = true;
    if (metadata && metadata[0]) {
        hylo_st_buf_put(b, "\"__metadata__\":{", 16);
        for (size_t i = 0; metadata[i]; i += 2) {
            if (i) hylo_st_buf_put(b, ",", 1);
            hylo_st_buf_json_string(b, metadata[i]);
            hylo_st_buf_put(b, ":", 1);
            hylo_st_buf_json_string(b, metadata[i + 1]);
        }
        hylo_st_buf_put(b, "}", 1);
        first = false;
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < count; i++) {
        if (!first) hylo_st_buf_put(b, ",", 1);
        first = false;
        hylo_st_buf_json_string(b, specs[i].name);
        hylo_st_buf_printf(b, ":{\"dtype\":\"%s\",\"shape\":[", hylo_dtype_name(specs[i].dtype));
        for (int d = 0; d < specs[i].ndim; d++)
            hylo_st_buf_printf(b, "%s%lld", d ? "," : "", (long long)specs[i].shape[d]);
        hylo_st_buf_printf(b, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)offset,
                           (unsigned long long)(offset + nbytes[i]));
        offset += nbytes[i];
    }
    hylo_st_buf_put(b, "}", 1);
    while (!b->failed && b->len % HYLO_ST_DATA_ALIGN != 0) hylo_st_buf_put(b, " ", 1);
    if (b->failed) return;
    uint64_t n = b->len - 8;
    for (int i = 0; i < 8; i++) b->data[i] = (char)(unsigned char)(n >> (8 * i));
}

/* ---- Writer ----------------------------------------------------------------------------- */

struct hylo_safetensors_writer {
    hylo_st_atomic file;
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
    hylo_st_atomic_abort(&w->file);
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
    hylo_st_buf header = {0};
    if (st == HYLO_OK) {
        build_header(&header, specs, count, w->nbytes, metadata);
        if (header.failed) st = hylo_error_set(err, HYLO_ERR_NOMEM, "%s: out of memory", path);
    }
    if (st == HYLO_OK && header.len - 8 > HYLO_ST_MAX_HEADER)
        st = hylo_error_set(err, HYLO_ERR_RANGE, "%s: the header would be %zu bytes, over the "
                            "limit of %u", path, header.len - 8, HYLO_ST_MAX_HEADER);
    if (st == HYLO_OK) st = hylo_st_atomic_open(&w->file, path, err);
    if (st == HYLO_OK) {
        st = hylo_st_atomic_write(&w->file, header.data, header.len, err);
        if (st != HYLO_OK) hylo_st_atomic_abort(&w->file);
    }
    hylo_st_buf_free(&header);
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
    hylo_status st = hylo_st_atomic_write(&w->file, bytes, nbytes, err);
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
    return hylo_st_atomic_sync(&w->file, err);
}

hylo_status hylo_st_writer_publish(hylo_safetensors_writer *w, hylo_error *err)
{
    hylo_status st = hylo_st_atomic_publish(&w->file, err);
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
