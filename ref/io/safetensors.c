/* safetensors.c: maps a safetensors file read-only and validates every byte of its header before
 * handing out views. The format: an 8-byte little-endian header length N, N bytes of JSON
 * (an object of tensor entries {dtype, shape, data_offsets} plus an optional "__metadata__"
 * object of strings), then the data buffer that the offsets index. The file may come from
 * anywhere, so nothing in it is trusted: lengths, numbers, names and offsets are all checked,
 * and every message names the file and the tensor or field at fault. */
#include "io/safetensors_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct hylo_safetensors {
    char *label;
    void *map;                          /* the file mapping, NULL for in-memory images */
    size_t map_len;
    cJSON *root;                        /* the parsed header: owns names and metadata   */
    const cJSON *metadata;              /* "__metadata__", or NULL                       */
    hylo_tensor_view *views;            /* in data-offset order                          */
    const hylo_tensor_view **by_name;   /* sorted by name, for bsearch                   */
    size_t count;
};

/* ---- Names and text ----------------------------------------------------------------------- */

/* Length of the UTF-8 sequence at s (n bytes left), or 0 when it is malformed: overlong forms,
 * surrogates and code points past U+10FFFF are rejected as the JSON RFC requires. */
static size_t utf8_sequence(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    uint32_t cp, min;
    if (c >= 0xc2 && c <= 0xdf) { len = 2; cp = c & 0x1fu; min = 0x80; }
    else if ((c & 0xf0u) == 0xe0) { len = 3; cp = c & 0x0fu; min = 0x800; }
    else if (c >= 0xf0 && c <= 0xf4) { len = 4; cp = c & 0x07u; min = 0x10000; }
    else return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0u) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

size_t hylo_st_utf8_prefix(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t k = utf8_sequence(u + i, n - i);
        if (k == 0) return i;
        i += k;
    }
    return n;
}

const char *hylo_st_name_problem(const char *name)
{
    size_t n = strlen(name);
    if (n == 0) return "is empty";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        /* Names end up in messages and on terminals: no escape sequences. */
        if (c < 0x20 || c == 0x7f) return "contains a control character";
    }
    if (hylo_st_utf8_prefix(name, n) != n) return "is not valid UTF-8";
    return NULL;
}

const char *hylo_st_quote(char *out, size_t size, const char *name)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        if (o + 8 >= size) { /* room for one escape, "..." and the NUL */
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (*p < 0x20 || *p >= 0x7f) o += (size_t)snprintf(out + o, size - o, "\\x%02x", *p);
        else out[o++] = (char)*p;
    }
    out[o] = '\0';
    return out;
}

static const char *json_type_name(const cJSON *item)
{
    if (cJSON_IsObject(item)) return "object";
    if (cJSON_IsArray(item)) return "array";
    if (cJSON_IsString(item)) return "string";
    if (cJSON_IsNumber(item)) return "number";
    if (cJSON_IsBool(item)) return "boolean";
    if (cJSON_IsNull(item)) return "null";
    return "invalid value";
}

/* ---- Errors ------------------------------------------------------------------------------- */

typedef struct {
    const char *label;
    hylo_error *err;
    const unsigned char *data;   /* start of the data buffer */
    uint64_t data_len;
} parse_ctx;

/* Records "label: message" and returns status. */
__attribute__((format(printf, 3, 4)))
static hylo_status fail(const parse_ctx *c, hylo_status status, const char *fmt, ...)
{
    char msg[sizeof c->err->message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return hylo_error_set(c->err, status, "%s: %s", c->label, msg);
}

/* ---- Numbers ------------------------------------------------------------------------------ */

/* A JSON number that is a whole number in [0, 2^53): cJSON keeps numbers as doubles, so the
 * range check comes first (it also rejects the infinities of huge literals like 1e999). */
static bool json_uint(const cJSON *item, uint64_t *out)
{
    if (!cJSON_IsNumber(item)) return false;
    double v = item->valuedouble;
    if (!(v >= 0.0 && v < HYLO_ST_MAX_INT)) return false;
    uint64_t u = (uint64_t)v;
    if ((double)u != v) return false;
    *out = u;
    return true;
}

void hylo_st_format_shape(char *out, size_t size, int ndim, const int64_t *shape)
{
    if (size == 0) return;
    size_t o = (size_t)snprintf(out, size, "[");
    for (int d = 0; d < ndim && o < size; d++)
        o += (size_t)snprintf(out + o, size - o, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (o < size) snprintf(out + o, size - o, "]");
}

/* ---- One tensor entry --------------------------------------------------------------------- */

typedef struct {
    const cJSON *dtype, *shape, *offsets;
} tensor_fields;

/* Sorts the entry's members into fields; unknown and repeated members are errors, so that a
 * file cannot say two different things about one tensor. */
static hylo_status collect_fields(const parse_ctx *c, const cJSON *entry, tensor_fields *f)
{
    const char *name = entry->string;
    memset(f, 0, sizeof *f);
    for (const cJSON *m = entry->child; m; m = m->next) {
        const cJSON **slot = NULL;
        if (strcmp(m->string, "dtype") == 0) slot = &f->dtype;
        else if (strcmp(m->string, "shape") == 0) slot = &f->shape;
        else if (strcmp(m->string, "data_offsets") == 0) slot = &f->offsets;
        char q[80];
        if (!slot)
            return fail(c, HYLO_ERR_FORMAT,
                        "tensor '%s': unknown field '%s' (expected dtype, shape, data_offsets)",
                        name, hylo_st_quote(q, sizeof q, m->string));
        if (*slot) return fail(c, HYLO_ERR_FORMAT, "tensor '%s': field '%s' appears twice", name,
                               m->string);
        *slot = m;
    }
    if (!f->dtype) return fail(c, HYLO_ERR_FORMAT, "tensor '%s': missing field 'dtype'", name);
    if (!f->shape) return fail(c, HYLO_ERR_FORMAT, "tensor '%s': missing field 'shape'", name);
    if (!f->offsets)
        return fail(c, HYLO_ERR_FORMAT, "tensor '%s': missing field 'data_offsets'", name);
    return HYLO_OK;
}

static hylo_status parse_dtype(const parse_ctx *c, const char *name, const cJSON *item,
                               hylo_dtype *out)
{
    if (!cJSON_IsString(item))
        return fail(c, HYLO_ERR_FORMAT, "tensor '%s': dtype is a JSON %s, expected a string",
                    name, json_type_name(item));
    if (!hylo_dtype_parse(item->valuestring, out)) {
        char q[80];
        return fail(c, HYLO_ERR_FORMAT,
                    "tensor '%s': dtype '%s' is not supported (expected F32, F16 or BF16)", name,
                    hylo_st_quote(q, sizeof q, item->valuestring));
    }
    return HYLO_OK;
}

static hylo_status parse_shape(const parse_ctx *c, const char *name, const cJSON *item,
                               hylo_tensor_view *v)
{
    if (!cJSON_IsArray(item))
        return fail(c, HYLO_ERR_FORMAT, "tensor '%s': shape is a JSON %s, expected an array",
                    name, json_type_name(item));
    int ndim = cJSON_GetArraySize(item);
    if (ndim > HYLO_MAX_DIMS)
        return fail(c, HYLO_ERR_FORMAT, "tensor '%s': shape has %d dimensions, at most %d allowed",
                    name, ndim, HYLO_MAX_DIMS);
    int64_t numel = 1;
    int d = 0;
    for (const cJSON *e = item->child; e; e = e->next, d++) {
        uint64_t dim;
        if (!cJSON_IsNumber(e))
            return fail(c, HYLO_ERR_FORMAT, "tensor '%s': shape[%d] is a JSON %s, expected a "
                        "non-negative integer", name, d, json_type_name(e));
        if (!json_uint(e, &dim))
            return fail(c, HYLO_ERR_FORMAT, "tensor '%s': shape[%d] = %g is not an integer in "
                        "[0, 2^53)", name, d, e->valuedouble);
        v->shape[d] = (int64_t)dim;
        if (__builtin_mul_overflow(numel, (int64_t)dim, &numel))
            return fail(c, HYLO_ERR_FORMAT,
                        "tensor '%s': shape has more elements than fit in 64 bits", name);
    }
    v->ndim = ndim;
    v->numel = numel;
    return HYLO_OK;
}

static hylo_status parse_offsets(const parse_ctx *c, const char *name, const cJSON *item,
                                 uint64_t *begin, uint64_t *end)
{
    if (!cJSON_IsArray(item) || cJSON_GetArraySize(item) != 2)
        return fail(c, HYLO_ERR_FORMAT,
                    "tensor '%s': data_offsets must be an array [begin, end] of 2 numbers", name);
    if (!json_uint(item->child, begin) || !json_uint(item->child->next, end))
        return fail(c, HYLO_ERR_FORMAT,
                    "tensor '%s': data_offsets must be whole numbers in [0, 2^53)", name);
    if (*begin > *end)
        return fail(c, HYLO_ERR_FORMAT, "tensor '%s': data_offsets [%llu, %llu] end before they "
                    "begin", name, (unsigned long long)*begin, (unsigned long long)*end);
    if (*end > c->data_len)
        return fail(c, HYLO_ERR_FORMAT, "tensor '%s': data_offsets [%llu, %llu] run past the end "
                    "of the %llu-byte data buffer", name, (unsigned long long)*begin,
                    (unsigned long long)*end, (unsigned long long)c->data_len);
    return HYLO_OK;
}

static hylo_status parse_tensor(const parse_ctx *c, const cJSON *entry, hylo_tensor_view *v)
{
    const char *name = entry->string;
    const char *problem = hylo_st_name_problem(name);
    char q[80];
    if (problem) return fail(c, HYLO_ERR_FORMAT, "tensor name '%s' %s",
                             hylo_st_quote(q, sizeof q, name), problem);
    if (!cJSON_IsObject(entry))
        return fail(c, HYLO_ERR_FORMAT, "tensor '%s': entry is a JSON %s, expected an object",
                    name, json_type_name(entry));
    tensor_fields f;
    uint64_t begin = 0, end = 0;
    hylo_status st = collect_fields(c, entry, &f);
    if (st == HYLO_OK) st = parse_dtype(c, name, f.dtype, &v->dtype);
    if (st == HYLO_OK) st = parse_shape(c, name, f.shape, v);
    if (st == HYLO_OK) st = parse_offsets(c, name, f.offsets, &begin, &end);
    if (st != HYLO_OK) return st;

    uint64_t need;
    if (__builtin_mul_overflow((uint64_t)v->numel, (uint64_t)hylo_dtype_size(v->dtype), &need))
        return fail(c, HYLO_ERR_FORMAT, "tensor '%s': shape has more bytes than fit in 64 bits",
                    name);
    if (end - begin != need) {
        char shape[160];
        hylo_st_format_shape(shape, sizeof shape, v->ndim, v->shape);
        return fail(c, HYLO_ERR_SHAPE, "tensor '%s': data_offsets [%llu, %llu] span %llu bytes but "
                    "shape %s of %s needs %llu", name, (unsigned long long)begin,
                    (unsigned long long)end, (unsigned long long)(end - begin), shape,
                    hylo_dtype_name(v->dtype), (unsigned long long)need);
    }
    v->name = name;
    v->data = c->data + begin;
    v->nbytes = (size_t)need;
    return HYLO_OK;
}

/* ---- The header as a whole ---------------------------------------------------------------- */

/* JSON text is UTF-8 with no raw control characters; cJSON tolerates both, so check first. */
static hylo_status check_header_text(const parse_ctx *c, const char *text, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)text[i];
        if (b < 0x20 && b != '\t' && b != '\n' && b != '\r')
            return fail(c, HYLO_ERR_FORMAT, "header holds control byte 0x%02x at offset %zu "
                        "(the header must be JSON text)", b, 8 + i);
    }
    size_t ok = hylo_st_utf8_prefix(text, n);
    if (ok != n)
        return fail(c, HYLO_ERR_FORMAT, "header is not valid UTF-8 at offset %zu", 8 + ok);
    return HYLO_OK;
}

static hylo_status parse_json(const parse_ctx *c, const char *text, size_t n, cJSON **out)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, n, &end, 0);
    if (!root) {
        size_t at = end && end >= text && end <= text + n ? (size_t)(end - text) : 0;
        return fail(c, HYLO_ERR_FORMAT, "header is not valid JSON (error near offset %zu)", 8 + at);
    }
    *out = root;
    /* cJSON stops after the value; anything but the writer's space padding is garbage. */
    for (const char *p = end; p < text + n; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            return fail(c, HYLO_ERR_FORMAT, "header has bytes after its JSON object at offset %zu",
                        8 + (size_t)(p - text));
    }
    if (!cJSON_IsObject(root))
        return fail(c, HYLO_ERR_FORMAT, "header is a JSON %s, expected an object",
                    json_type_name(root));
    return HYLO_OK;
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static hylo_status parse_metadata(const parse_ctx *c, const cJSON *meta)
{
    if (!cJSON_IsObject(meta))
        return fail(c, HYLO_ERR_FORMAT, "__metadata__ is a JSON %s, expected an object of strings",
                    json_type_name(meta));
    size_t n = 0;
    char q[80];
    for (const cJSON *m = meta->child; m; m = m->next, n++) {
        if (!cJSON_IsString(m))
            return fail(c, HYLO_ERR_FORMAT, "__metadata__ key '%s' is a JSON %s, expected a string",
                        hylo_st_quote(q, sizeof q, m->string), json_type_name(m));
    }
    /* Duplicate keys would make lookups ambiguous; sorting finds them in n log n. */
    const char **keys = malloc((n ? n : 1) * sizeof *keys);
    if (!keys) return fail(c, HYLO_ERR_NOMEM, "out of memory reading __metadata__");
    size_t i = 0;
    for (const cJSON *m = meta->child; m; m = m->next) keys[i++] = m->string;
    qsort(keys, n, sizeof *keys, compare_strings);
    hylo_status st = HYLO_OK;
    for (i = 1; i < n && st == HYLO_OK; i++) {
        if (strcmp(keys[i - 1], keys[i]) == 0)
            st = fail(c, HYLO_ERR_FORMAT, "__metadata__ key '%s' appears twice",
                      hylo_st_quote(q, sizeof q, keys[i]));
    }
    free(keys);
    return st;
}

static int compare_offsets(const void *a, const void *b)
{
    const hylo_tensor_view *x = a, *y = b;
    uintptr_t px = (uintptr_t)x->data, py = (uintptr_t)y->data;
    if (px != py) return px < py ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int compare_view_names(const void *a, const void *b)
{
    const hylo_tensor_view *x = *(const hylo_tensor_view *const *)a;
    const hylo_tensor_view *y = *(const hylo_tensor_view *const *)b;
    return strcmp(x->name, y->name);
}

/* In offset order, each non-empty tensor must start at or after the end of the previous one;
 * gaps are allowed, and empty tensors occupy no bytes so they cannot overlap anything. */
static hylo_status check_overlaps(const parse_ctx *c, const hylo_tensor_view *views, size_t n)
{
    const hylo_tensor_view *last = NULL;
    for (size_t i = 0; i < n; i++) {
        const hylo_tensor_view *v = &views[i];
        if (v->nbytes == 0) continue;
        if (last && (const unsigned char *)v->data < (const unsigned char *)last->data + last->nbytes) {
            unsigned long long vb = (unsigned long long)((const unsigned char *)v->data - c->data);
            unsigned long long lb = (unsigned long long)((const unsigned char *)last->data - c->data);
            return fail(c, HYLO_ERR_FORMAT,
                        "tensor '%s': data_offsets [%llu, %llu] overlap tensor '%s' [%llu, %llu]",
                        v->name, vb, vb + v->nbytes, last->name, lb, lb + last->nbytes);
        }
        last = v;
    }
    return HYLO_OK;
}

static hylo_status index_tensors(const parse_ctx *c, hylo_safetensors *st)
{
    qsort(st->views, st->count, sizeof *st->views, compare_offsets);
    hylo_status status = check_overlaps(c, st->views, st->count);
    if (status != HYLO_OK) return status;
    st->by_name = malloc((st->count ? st->count : 1) * sizeof *st->by_name);
    if (!st->by_name) return fail(c, HYLO_ERR_NOMEM, "out of memory indexing %zu tensors", st->count);
    for (size_t i = 0; i < st->count; i++) st->by_name[i] = &st->views[i];
    qsort(st->by_name, st->count, sizeof *st->by_name, compare_view_names);
    for (size_t i = 1; i < st->count; i++) {
        if (strcmp(st->by_name[i - 1]->name, st->by_name[i]->name) == 0)
            return fail(c, HYLO_ERR_FORMAT, "tensor '%s' appears twice in the header",
                        st->by_name[i]->name);
    }
    return HYLO_OK;
}

/* Walks the header object: "__metadata__" once at most, every other member a tensor. */
static hylo_status parse_entries(const parse_ctx *c, hylo_safetensors *st)
{
    size_t members = 0;
    for (const cJSON *e = st->root->child; e; e = e->next) members++;
    st->views = calloc(members ? members : 1, sizeof *st->views);
    if (!st->views) return fail(c, HYLO_ERR_NOMEM, "out of memory for %zu tensors", members);
    for (const cJSON *e = st->root->child; e; e = e->next) {
        hylo_status status;
        if (strcmp(e->string, "__metadata__") == 0) {
            if (st->metadata) return fail(c, HYLO_ERR_FORMAT, "__metadata__ appears twice");
            st->metadata = e;
            status = parse_metadata(c, e);
        } else {
            status = parse_tensor(c, e, &st->views[st->count]);
            st->count++;
        }
        if (status != HYLO_OK) return status;
    }
    return index_tensors(c, st);
}

static hylo_status parse_image(hylo_safetensors *st, const unsigned char *bytes, size_t len,
                               hylo_error *err)
{
    parse_ctx c = {st->label, err, NULL, 0};
    if (len < 8)
        return fail(&c, HYLO_ERR_FORMAT, "file is %zu bytes, too short for the 8-byte header "
                    "length", len);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | bytes[i];
    if (n > HYLO_ST_MAX_HEADER)
        return fail(&c, HYLO_ERR_FORMAT, "header length %llu exceeds the limit of %u bytes",
                    (unsigned long long)n, HYLO_ST_MAX_HEADER);
    if (n > len - 8)
        return fail(&c, HYLO_ERR_FORMAT, "header length %llu runs past the end of the %zu-byte "
                    "file", (unsigned long long)n, len);
    c.data = bytes + 8 + n;
    c.data_len = len - 8 - n;
    const char *text = (const char *)bytes + 8;
    hylo_status status = check_header_text(&c, text, (size_t)n);
    if (status == HYLO_OK) status = parse_json(&c, text, (size_t)n, &st->root);
    if (status == HYLO_OK) status = parse_entries(&c, st);
    return status;
}

/* ---- Public API --------------------------------------------------------------------------- */

void hylo_safetensors_close(hylo_safetensors *st)
{
    if (!st) return;
    if (st->map) munmap(st->map, st->map_len);
    cJSON_Delete(st->root);
    free(st->views);
    free(st->by_name);
    free(st->label);
    free(st);
}

/* Builds a handle over bytes; on failure frees it (but not the mapping, which the caller owns
 * until success). */
static hylo_status open_image(const void *bytes, size_t len, const char *label,
                              hylo_safetensors **out, hylo_error *err)
{
    hylo_safetensors *st = calloc(1, sizeof *st);
    if (st) st->label = strdup(label);
    if (!st || !st->label) {
        free(st);
        return hylo_error_set(err, HYLO_ERR_NOMEM, "%s: out of memory", label);
    }
    hylo_status status = parse_image(st, bytes, len, err);
    if (status != HYLO_OK) {
        hylo_safetensors_close(st);
        return status;
    }
    *out = st;
    return HYLO_OK;
}

hylo_status hylo_safetensors_open_memory(const void *bytes, size_t len, const char *label,
                                         hylo_safetensors **out, hylo_error *err)
{
    if (!out) return hylo_error_set(err, HYLO_ERR_USAGE, "hylo_safetensors_open_memory: out is NULL");
    *out = NULL;
    if (!label) label = "<memory>";
    if (!bytes && len) return hylo_error_set(err, HYLO_ERR_USAGE, "%s: bytes is NULL", label);
    return open_image(len ? bytes : "", len, label, out, err);
}

hylo_status hylo_safetensors_open(const char *path, hylo_safetensors **out, hylo_error *err)
{
    if (!out || !path)
        return hylo_error_set(err, HYLO_ERR_USAGE, "hylo_safetensors_open: NULL argument");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return hylo_error_set(err, HYLO_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return hylo_error_set(err, HYLO_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return hylo_error_set(err, HYLO_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)sb.st_size > SIZE_MAX) {
        close(fd);
        return hylo_error_set(err, HYLO_ERR_IO, "%s: too large to map", path);
    }
    size_t len = (size_t)sb.st_size;
    void *map = NULL;
    if (len > 0) { /* mmap refuses empty lengths; an empty file fails validation below */
        map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            int e = errno;
            close(fd);
            return hylo_error_set(err, HYLO_ERR_IO, "%s: cannot map: %s", path, strerror(e));
        }
    }
    close(fd); /* the mapping keeps the file's pages */
    hylo_status status = open_image(map, len, path, out, err);
    if (status != HYLO_OK) {
        if (map) munmap(map, len);
        return status;
    }
    (*out)->map = map;
    (*out)->map_len = len;
    return HYLO_OK;
}

size_t hylo_safetensors_count(const hylo_safetensors *st)
{
    return st ? st->count : 0;
}

const hylo_tensor_view *hylo_safetensors_at(const hylo_safetensors *st, size_t i)
{
    return st && i < st->count ? &st->views[i] : NULL;
}

static int compare_name_key(const void *key, const void *elem)
{
    return strcmp((const char *)key, (*(const hylo_tensor_view *const *)elem)->name);
}

const hylo_tensor_view *hylo_safetensors_find(const hylo_safetensors *st, const char *name)
{
    if (!st || !name || st->count == 0) return NULL;
    const hylo_tensor_view *const *hit =
        bsearch(name, st->by_name, st->count, sizeof *st->by_name, compare_name_key);
    return hit ? *hit : NULL;
}

const char *hylo_safetensors_metadata(const hylo_safetensors *st, const char *key)
{
    if (!st || !st->metadata || !key) return NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(st->metadata, key);
    return v ? v->valuestring : NULL;
}

const char *hylo_st_label(const hylo_safetensors *st)
{
    return st ? st->label : NULL;
}
