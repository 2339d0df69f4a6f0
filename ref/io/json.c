/*
 * json.c: the JSON plumbing shared by every file hylo reads or writes (see json.h).
 *
 * Reading: typed reads of the members of one cJSON object, with messages that name the file and
 * the field ("config.json: field 'rope_scaling.factor': expected a finite number, got ..."); a
 * key given twice is an error (Python keeps the last, cJSON the first, so the two would
 * disagree); integers must be integral and at most 2^53 in magnitude so that a double holds
 * them exactly. hylo_json_parse_object accepts exactly one JSON value filling its input and
 * reports where the bytes go wrong by byte and line.
 *
 * Writing: a growing text buffer that records an allocation failure once instead of at every
 * call, numbers spelled the way Python's json module spells them, and `"key": value` members
 * of indented objects.
 *
 * Atomic files: the bytes go to an exclusive temporary file beside the destination (mode 0666
 * less the umask), which is fsynced and renamed over the destination, and the directory is then
 * fsynced so that the rename itself is durable. Readers see the old file or the new one, never
 * a partial one.
 */
#include "io/json.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_EXACT_INT 9007199254740992.0 /* 2^53: larger JSON numbers are not exact */

/* ------------------------------------------------------------------------------------------ */
/* Typed reads of JSON members                                                                  */
/* ------------------------------------------------------------------------------------------ */

void hylo_json_describe(const cJSON *item, char *buf, size_t size)
{
    if (cJSON_IsString(item)) snprintf(buf, size, "the string \"%.64s\"", item->valuestring);
    else if (cJSON_IsNumber(item)) snprintf(buf, size, "the number %.17g", item->valuedouble);
    else if (cJSON_IsBool(item)) snprintf(buf, size, "%s", cJSON_IsTrue(item) ? "true" : "false");
    else if (cJSON_IsArray(item)) snprintf(buf, size, "an array");
    else if (cJSON_IsObject(item)) snprintf(buf, size, "an object");
    else snprintf(buf, size, "null");
}

hylo_status hylo_json_type_error(const hylo_json_reader *r, const char *key,
                                 const char *expected, const cJSON *item)
{
    char got[128];
    hylo_json_describe(item, got, sizeof got);
    return hylo_error_set(r->err, HYLO_ERR_CONFIG, "%s: field '%s%s': expected %s, got %s",
                          r->label, r->where, key, expected, got);
}

hylo_status hylo_json_lookup(const hylo_json_reader *r, const char *key, const cJSON **out)
{
    *out = NULL;
    for (const cJSON *c = r->obj->child; c; c = c->next) {
        if (!c->string || strcmp(c->string, key) != 0) continue;
        if (*out)
            return hylo_error_set(r->err, HYLO_ERR_CONFIG, "%s: field '%s%s' appears twice",
                                  r->label, r->where, key);
        *out = c;
    }
    return HYLO_OK;
}

hylo_status hylo_json_member(const hylo_json_reader *r, const char *key, const cJSON **out)
{
    hylo_status st = hylo_json_lookup(r, key, out);
    if (st == HYLO_OK && cJSON_IsNull(*out)) *out = NULL;
    return st;
}

hylo_status hylo_json_read_int(const hylo_json_reader *r, const char *key, int64_t *out,
                               bool *found)
{
    const cJSON *item;
    hylo_status st = hylo_json_member(r, key, &item);
    if (found) *found = item != NULL;
    if (st != HYLO_OK || !item) return st;
    double v = item->valuedouble;
    if (!cJSON_IsNumber(item) || !(fabs(v) <= MAX_EXACT_INT) || v != floor(v))
        return hylo_json_type_error(r, key, "an integer (at most 2^53 in magnitude)", item);
    *out = (int64_t)v;
    return HYLO_OK;
}

hylo_status hylo_json_read_double(const hylo_json_reader *r, const char *key, double *out,
                                  bool *found)
{
    const cJSON *item;
    hylo_status st = hylo_json_member(r, key, &item);
    if (found) *found = item != NULL;
    if (st != HYLO_OK || !item) return st;
    if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble))
        return hylo_json_type_error(r, key, "a finite number", item);
    *out = item->valuedouble;
    return HYLO_OK;
}

hylo_status hylo_json_read_bool(const hylo_json_reader *r, const char *key, bool *out,
                                bool *found)
{
    const cJSON *item;
    hylo_status st = hylo_json_member(r, key, &item);
    if (found) *found = item != NULL;
    if (st != HYLO_OK || !item) return st;
    if (!cJSON_IsBool(item)) return hylo_json_type_error(r, key, "true or false", item);
    *out = cJSON_IsTrue(item);
    return HYLO_OK;
}

hylo_status hylo_json_read_string(const hylo_json_reader *r, const char *key, const char **out,
                                  bool *found)
{
    const cJSON *item;
    hylo_status st = hylo_json_member(r, key, &item);
    if (found) *found = item != NULL;
    if (st != HYLO_OK || !item) return st;
    if (!cJSON_IsString(item) || !item->valuestring)
        return hylo_json_type_error(r, key, "a string", item);
    *out = item->valuestring;
    return HYLO_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Parsing and reading files                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* The 1-based line of json[offset]. */
static size_t line_of(const char *json, size_t offset)
{
    size_t line = 1;
    for (size_t i = 0; i < offset; i++) line += json[i] == '\n';
    return line;
}

hylo_status hylo_json_parse_object(const char *json, size_t len, const char *label,
                                   const char *what, cJSON **out, hylo_error *err)
{
    *out = NULL;
    if (len == 0) return hylo_error_set(err, HYLO_ERR_FORMAT, "%s: empty, not JSON", label);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, false);
    size_t at = end && end >= json && end <= json + len ? (size_t)(end - json) : len;
    if (!root)
        return hylo_error_set(err, HYLO_ERR_FORMAT, "%s: invalid JSON at byte %zu (line %zu)",
                              label, at, line_of(json, at));
    /* A NUL byte is not whitespace (strchr would find the terminator). */
    while (at < len && json[at] != '\0' && strchr(" \t\r\n", json[at])) at++;
    if (at < len) {
        cJSON_Delete(root);
        return hylo_error_set(err, HYLO_ERR_FORMAT,
                              "%s: unexpected data after the JSON value at byte %zu (line %zu)",
                              label, at, line_of(json, at));
    }
    if (!cJSON_IsObject(root)) {
        char got[128];
        hylo_json_describe(root, got, sizeof got);
        cJSON_Delete(root);
        return hylo_error_set(err, HYLO_ERR_CONFIG, "%s: expected a JSON object with %s, got %s",
                              label, what, got);
    }
    *out = root;
    return HYLO_OK;
}

/* Reads until end of file rather than trusting st_size, so that pipes work too; at most
 * max_bytes + 1 bytes are ever held, enough to tell that the file is too large. */
hylo_status hylo_json_read_file(const char *path, size_t max_bytes, char **out, size_t *len,
                                hylo_error *err)
{
    *out = NULL;
    *len = 0;
    if (max_bytes > SIZE_MAX - 2) max_bytes = SIZE_MAX - 2;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return hylo_error_set(err, HYLO_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    hylo_status st = HYLO_OK;
    if (fstat(fd, &sb) != 0)
        st = hylo_error_set(err, HYLO_ERR_IO, "%s: %s", path, strerror(errno));
    else if (S_ISDIR(sb.st_mode))
        st = hylo_error_set(err, HYLO_ERR_IO, "%s: is a directory, not a file", path);
    char *buf = NULL;
    size_t cap = 0, n = 0;
    while (st == HYLO_OK) {
        if (n > max_bytes) {
            st = hylo_error_set(err, HYLO_ERR_FORMAT, "%s: more than %zu bytes, too large for "
                                "this kind of file", path, max_bytes);
            break;
        }
        if (cap - n < 2) { /* room for one more byte and the NUL */
            size_t grown_cap = cap ? cap * 2 : 4096;
            if (grown_cap > max_bytes + 2 || grown_cap < cap) grown_cap = max_bytes + 2;
            char *grown = realloc(buf, grown_cap);
            if (!grown) {
                st = hylo_error_set(err, HYLO_ERR_NOMEM, "%s: out of memory", path);
                break;
            }
            buf = grown;
            cap = grown_cap;
        }
        ssize_t k = read(fd, buf + n, cap - 1 - n);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0)
            st = hylo_error_set(err, HYLO_ERR_IO, "%s: read failed: %s", path, strerror(errno));
        if (k <= 0) break;
        n += (size_t)k;
    }
    close(fd);
    if (st != HYLO_OK) {
        free(buf);
        return st;
    }
    if (!buf && !(buf = malloc(1))) /* an empty pipe: nothing was allocated */
        return hylo_error_set(err, HYLO_ERR_NOMEM, "%s: out of memory", path);
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return HYLO_OK;
}

hylo_status hylo_path_join(char *out, size_t size, const char *dir, const char *name,
                           hylo_error *err)
{
    int n = snprintf(out, size, "%s/%s", dir, name);
    if (n >= 0 && (size_t)n < size) return HYLO_OK;
    if (size > 0) out[0] = '\0';
    size_t dir_len = strlen(dir), len = dir_len + 1 + strlen(name);
    return hylo_error_set(err, HYLO_ERR_IO, "%.200s%s/%s: path too long (%zu bytes, at most %zu)",
                          dir, dir_len > 200 ? "..." : "", name, len, size ? size - 1 : 0);
}

/* ------------------------------------------------------------------------------------------ */
/* Text buffer                                                                                  */
/* ------------------------------------------------------------------------------------------ */

/* Makes room for `extra` more bytes and a NUL; false (and t->failed) when it cannot. */
static bool text_reserve(hylo_text *t, size_t extra)
{
    if (t->failed) return false;
    if (extra < t->cap - t->len) return true; /* keeps room for a NUL */
    size_t cap = t->cap ? t->cap : 256;
    while (cap - t->len <= extra) {
        if (cap > SIZE_MAX / 2) {
            t->failed = true;
            return false;
        }
        cap *= 2;
    }
    char *p = realloc(t->data, cap);
    if (!p) {
        t->failed = true;
        return false;
    }
    t->data = p;
    t->cap = cap;
    return true;
}

/* Appends n bytes of s; the text stays NUL-terminated. */
void hylo_text_put(hylo_text *t, const char *s, size_t n)
{
    if (!text_reserve(t, n)) return;
    memcpy(t->data + t->len, s, n);
    t->len += n;
    t->data[t->len] = '\0';
}

/* Short results go through a stack buffer; longer ones are formatted a second time in place. */
void hylo_text_printf(hylo_text *t, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        t->failed = true;
        return;
    }
    if ((size_t)n < sizeof small) {
        hylo_text_put(t, small, (size_t)n);
        return;
    }
    if (!text_reserve(t, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(t->data + t->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

/* UTF-8 passes through; quotes, backslashes and control characters are escaped. */
void hylo_text_json_string(hylo_text *t, const char *s)
{
    hylo_text_put(t, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            char esc[2] = {'\\', (char)*p};
            hylo_text_put(t, esc, 2);
        } else if (*p < 0x20 || *p == 0x7f) {
            hylo_text_printf(t, "\\u%04x", *p);
        } else {
            hylo_text_put(t, (const char *)p, 1);
        }
    }
    hylo_text_put(t, "\"", 1);
}

void hylo_text_free(hylo_text *t)
{
    free(t->data);
    memset(t, 0, sizeof *t);
}

/* ------------------------------------------------------------------------------------------ */
/* JSON values and members                                                                      */
/* ------------------------------------------------------------------------------------------ */

/* Plain digits below 1e16, an exponent only where %g chooses one, as Python's repr does. The
 * non-finite values (never written by hylo, which validates first) get Python json's spellings
 * rather than undefined behaviour. */
void hylo_json_format_double(double v, char *out, size_t size)
{
    if (!isfinite(v)) {
        snprintf(out, size, "%s", isnan(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity");
        return;
    }
    int p = 1;
    for (; p < 17; p++) {
        snprintf(out, size, "%.*g", p, v);
        if (strtod(out, NULL) == v) break;
    }
    int exponent = v == 0.0 ? 0 : (int)floor(log10(fabs(v)));
    if (exponent >= p && exponent < 16) p = exponent + 1;
    snprintf(out, size, "%.*g", p, v);
    if (strtod(out, NULL) != v) snprintf(out, size, "%.17g", v);
    if (!strpbrk(out, ".eEn")) strncat(out, ".0", size - strlen(out) - 1);
}

void hylo_json_put_key(hylo_text *t, bool *first, int indent, const char *key)
{
    hylo_text_printf(t, "%s%*s", *first ? "" : ",\n", indent, "");
    hylo_text_json_string(t, key);
    hylo_text_put(t, ": ", 2);
    *first = false;
}

void hylo_json_put_int(hylo_text *t, bool *first, int indent, const char *key, int64_t v)
{
    hylo_json_put_key(t, first, indent, key);
    hylo_text_printf(t, "%" PRId64, v);
}

void hylo_json_put_double(hylo_text *t, bool *first, int indent, const char *key, double v)
{
    char num[48];
    hylo_json_format_double(v, num, sizeof num);
    hylo_json_put_key(t, first, indent, key);
    hylo_text_printf(t, "%s", num);
}

void hylo_json_put_bool(hylo_text *t, bool *first, int indent, const char *key, bool v)
{
    hylo_json_put_key(t, first, indent, key);
    hylo_text_printf(t, "%s", v ? "true" : "false");
}

void hylo_json_put_string(hylo_text *t, bool *first, int indent, const char *key,
                          const char *v)
{
    hylo_json_put_key(t, first, indent, key);
    hylo_text_json_string(t, v);
}

/* ------------------------------------------------------------------------------------------ */
/* Atomic files                                                                                 */
/* ------------------------------------------------------------------------------------------ */

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
static hylo_status create_temp(hylo_atomic_file *f, hylo_error *err)
{
    const char *slash = strrchr(f->path, '/');
    size_t dir_len = slash ? (size_t)(slash - f->path) + 1 : 0;
    const char *base = f->path + dir_len;
    if (*base == '\0')
        return hylo_error_set(err, HYLO_ERR_USAGE, "%s: path names a directory, not a file",
                              f->path);
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

hylo_status hylo_atomic_open(hylo_atomic_file *f, const char *path, hylo_error *err)
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

hylo_status hylo_atomic_write(hylo_atomic_file *f, const void *bytes, size_t n, hylo_error *err)
{
    const unsigned char *p = bytes;
    while (n > 0) {
        /* Linux writes at most ~2 GiB per call; ask for 1 GiB at a time. */
        size_t chunk = n < ((size_t)1 << 30) ? n : ((size_t)1 << 30);
        ssize_t k = write(f->fd, p, chunk);
        if (k < 0) {
            if (errno == EINTR) continue;
            return hylo_error_set(err, HYLO_ERR_IO, "%s: write failed: %s", f->tmp,
                                  strerror(errno));
        }
        if (k == 0)
            return hylo_error_set(err, HYLO_ERR_IO, "%s: write made no progress", f->tmp);
        p += k;
        n -= (size_t)k;
    }
    return HYLO_OK;
}

hylo_status hylo_atomic_sync(hylo_atomic_file *f, hylo_error *err)
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

hylo_status hylo_atomic_publish(hylo_atomic_file *f, hylo_error *err)
{
    hylo_status st;
    if (rename(f->tmp, f->path) != 0) {
        st = hylo_error_set(err, HYLO_ERR_IO, "%s: cannot rename %s over it: %s", f->path, f->tmp,
                            strerror(errno));
        hylo_atomic_abort(f);
        return st;
    }
    free(f->tmp);
    f->tmp = NULL;
    st = sync_dir(f->path, err);
    free(f->path);
    f->path = NULL;
    return st;
}

void hylo_atomic_abort(hylo_atomic_file *f)
{
    if (f->fd >= 0) close(f->fd);
    f->fd = -1;
    if (f->tmp) unlink(f->tmp);
    free(f->tmp);
    free(f->path);
    f->tmp = NULL;
    f->path = NULL;
}

hylo_status hylo_atomic_write_text(const char *path, const hylo_text *t, hylo_error *err)
{
    if (t->failed) return hylo_error_set(err, HYLO_ERR_NOMEM, "%s: out of memory", path);
    hylo_atomic_file f;
    hylo_status st = hylo_atomic_open(&f, path, err);
    if (st != HYLO_OK) return st;
    st = hylo_atomic_write(&f, t->data, t->len, err);
    if (st == HYLO_OK) st = hylo_atomic_sync(&f, err);
    if (st != HYLO_OK) {
        hylo_atomic_abort(&f);
        return st;
    }
    return hylo_atomic_publish(&f, err);
}
