/* test_malformed.c: the safetensors reader against a corpus of broken files: every truncation
 * and every single-bit flip of the header of a valid file, plus hand-written cases that each
 * break one rule. Each must fail cleanly with the right status and a message that names the file
 * and what is wrong (or, for some bit flips, still be a valid file whose views stay in bounds).
 * Images are copied into buffers of their exact size so that AddressSanitizer sees overreads. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define LABEL "bad.safetensors"

/* A valid header: metadata, a gap-free layout of three tensors of the three dtypes (one 0-d). */
static const char VALID_JSON[] =
    "{\"__metadata__\":{\"format\":\"pt\"},"
    "\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
    "\"b\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[16,22]},"
    "\"c\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[22,24]}}";
#define VALID_DATA 24

/* 8-byte length + json + data_len pattern bytes, in a buffer of exactly that size. */
static unsigned char *image_with_length(const char *json, uint64_t declared, size_t data_len,
                                        size_t *len)
{
    size_t n = strlen(json);
    *len = 8 + n + data_len;
    unsigned char *buf = malloc(*len);
    ck_assert_ptr_nonnull(buf);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(declared >> (8 * i));
    memcpy(buf + 8, json, n);
    for (size_t i = 0; i < data_len; i++) buf[8 + n + i] = (unsigned char)(i * 7 + 1);
    return buf;
}

static unsigned char *image(const char *json, size_t data_len, size_t *len)
{
    return image_with_length(json, strlen(json), data_len, len);
}

/* The first `len` bytes of src in a buffer of exactly that size (1 for len 0, untouched). */
static unsigned char *exact_copy(const unsigned char *src, size_t len)
{
    unsigned char *p = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(p);
    if (len) memcpy(p, src, len);
    return p;
}

/* Opens bytes and checks: status `want`, err filled alike, message naming the file and
 * containing every substring of the NULL-terminated list. */
static void expect_failure_bytes(const unsigned char *bytes, size_t len, hylo_status want,
                                 const char *what, ...)
{
    hylo_error err = {0};
    hylo_safetensors *st = (hylo_safetensors *)&err; /* must be reset to NULL */
    hylo_status got = hylo_safetensors_open_memory(bytes, len, LABEL, &st, &err);
    ck_assert_msg(got == want, "%s: status %s, expected %s (%s)", what, hylo_status_name(got),
                  hylo_status_name(want), err.message);
    ck_assert_ptr_null(st);
    ck_assert_int_eq(err.status, want);
    ck_assert_msg(strncmp(err.message, LABEL ": ", strlen(LABEL) + 2) == 0,
                  "%s: message does not start with the file name: %s", what, err.message);
    va_list ap;
    va_start(ap, what);
    for (const char *s = va_arg(ap, const char *); s; s = va_arg(ap, const char *))
        ck_assert_msg(strstr(err.message, s), "%s: message lacks \"%s\": %s", what, s, err.message);
    va_end(ap);
}

#define expect_failure(json, data_len, want, ...)                                               \
    do {                                                                                        \
        size_t len_;                                                                            \
        unsigned char *img_ = image((json), (data_len), &len_);                                 \
        expect_failure_bytes(img_, len_, (want), (json), __VA_ARGS__, (const char *)NULL);     \
        free(img_);                                                                             \
    } while (0)

/* Every view of an opened file lies inside [bytes, bytes + len), sizes agree with shapes,
 * non-empty views do not overlap, and find returns each view. */
static void check_views_in_bounds(const hylo_safetensors *st, const unsigned char *bytes,
                                  size_t len)
{
    const unsigned char *end_prev = NULL;
    for (size_t i = 0; i < hylo_safetensors_count(st); i++) {
        const hylo_tensor_view *v = hylo_safetensors_at(st, i);
        const unsigned char *d = v->data;
        ck_assert(d >= bytes && d <= bytes + len && v->nbytes <= (size_t)(bytes + len - d));
        ck_assert_uint_eq(v->nbytes, (uint64_t)v->numel * hylo_dtype_size(v->dtype));
        ck_assert(v->ndim >= 0 && v->ndim <= HYLO_MAX_DIMS);
        if (v->nbytes) {
            ck_assert(end_prev == NULL || d >= end_prev);
            end_prev = d + v->nbytes;
        }
        ck_assert_ptr_eq(hylo_safetensors_find(st, v->name), v);
    }
}

START_TEST(valid_base_opens)
{
    size_t len;
    unsigned char *img = image(VALID_JSON, VALID_DATA, &len);
    hylo_safetensors *st;
    hylo_error err;
    ck_assert_ok(hylo_safetensors_open_memory(img, len, LABEL, &st, &err), &err);
    ck_assert_uint_eq(hylo_safetensors_count(st), 3);
    ck_assert_str_eq(hylo_safetensors_metadata(st, "format"), "pt");
    ck_assert_int_eq(hylo_safetensors_find(st, "c")->ndim, 0);
    ck_assert_int_eq(hylo_safetensors_find(st, "c")->numel, 1);
    check_views_in_bounds(st, img, len);
    hylo_safetensors_close(st);
    free(img);
}
END_TEST

START_TEST(every_truncation_fails)
{
    size_t len;
    unsigned char *img = image(VALID_JSON, VALID_DATA, &len);
    char *dir = hylo_test_tmpdir("trunc");
    char path[512];
    snprintf(path, sizeof path, "%s/t.safetensors", dir);
    for (size_t cut = 0; cut < len; cut++) {
        unsigned char *p = exact_copy(img, cut);
        hylo_error err = {0};
        hylo_safetensors *st = NULL;
        hylo_status s = hylo_safetensors_open_memory(p, cut, LABEL, &st, &err);
        ck_assert_msg(s != HYLO_OK && st == NULL, "truncated to %zu bytes opened", cut);
        ck_assert_msg(err.message[0] != '\0', "no message at %zu bytes", cut);
        free(p);

        /* The same through a real file and mmap (which the first 8 lengths cannot use). */
        hylo_test_write_file(path, img, cut);
        memset(&err, 0, sizeof err);
        s = hylo_safetensors_open(path, &st, &err);
        ck_assert_msg(s != HYLO_OK && st == NULL, "file truncated to %zu bytes opened", cut);
        ck_assert_msg(strstr(err.message, path), "message lacks the path: %s", err.message);
    }
    free(dir);
    free(img);
}
END_TEST

START_TEST(every_header_bit_flip_is_handled)
{
    size_t len;
    unsigned char *img = image(VALID_JSON, VALID_DATA, &len);
    size_t header_end = 8 + strlen(VALID_JSON);
    size_t opened = 0, failed = 0;
    for (size_t byte = 0; byte < header_end; byte++) {
        for (int bit = 0; bit < 8; bit++) {
            unsigned char *p = exact_copy(img, len);
            p[byte] ^= (unsigned char)(1u << bit);
            hylo_error err = {0};
            hylo_safetensors *st = NULL;
            hylo_status s = hylo_safetensors_open_memory(p, len, LABEL, &st, &err);
            if (s == HYLO_OK) {
                check_views_in_bounds(st, p, len);
                hylo_safetensors_close(st);
                opened++;
            } else {
                ck_assert_ptr_null(st);
                ck_assert_msg(s == HYLO_ERR_FORMAT || s == HYLO_ERR_SHAPE,
                              "flip %zu.%d: status %s", byte, bit, hylo_status_name(s));
                ck_assert_msg(strncmp(err.message, LABEL ": ", strlen(LABEL) + 2) == 0 &&
                              strlen(err.message) > strlen(LABEL) + 2,
                              "flip %zu.%d: message %s", byte, bit, err.message);
                failed++;
            }
            free(p);
        }
    }
    /* Most flips break the file; a few (a name's letter, e.g.) leave a valid one. */
    ck_assert_uint_gt(failed, opened);
    ck_assert_uint_gt(opened, 0);
    free(img);
}
END_TEST

START_TEST(header_length_out_of_range)
{
    size_t len;
    unsigned char *img;
    img = image_with_length(VALID_JSON, (uint64_t)1 << 63, VALID_DATA, &len);
    expect_failure_bytes(img, len, HYLO_ERR_FORMAT, "2^63", "9223372036854775808",
                         "exceeds the limit", (const char *)NULL);
    free(img);
    img = image_with_length(VALID_JSON, (uint64_t)1 << 40, VALID_DATA, &len);
    expect_failure_bytes(img, len, HYLO_ERR_FORMAT, "2^40", "exceeds the limit", (const char *)NULL);
    free(img);
    img = image_with_length(VALID_JSON, 100000001, VALID_DATA, &len);
    expect_failure_bytes(img, len, HYLO_ERR_FORMAT, "limit+1", "exceeds the limit",
                         (const char *)NULL);
    free(img);
    /* Within the limit but past the end of the file: one byte too many. */
    img = image_with_length(VALID_JSON, strlen(VALID_JSON) + VALID_DATA + 1, VALID_DATA, &len);
    expect_failure_bytes(img, len, HYLO_ERR_FORMAT, "N > file", "runs past the end",
                         (const char *)NULL);
    free(img);
    /* A header length that swallows the data leaves garbage after the JSON. */
    img = image_with_length(VALID_JSON, strlen(VALID_JSON) + VALID_DATA, VALID_DATA, &len);
    expect_failure_bytes(img, len, HYLO_ERR_FORMAT, "N = whole file", (const char *)NULL);
    free(img);
}
END_TEST

START_TEST(offsets)
{
    expect_failure("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                   "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
                   16, HYLO_ERR_FORMAT, "'b'", "overlap", "'a'");
    /* The overlap is found whatever the order of the entries. */
    expect_failure("{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]},"
                   "\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
                   16, HYLO_ERR_FORMAT, "'b'", "overlap", "'a' [0, 16]");
    expect_failure("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
                   16, HYLO_ERR_FORMAT, "'a'", "[8, 24]", "past the end", "16-byte");
    expect_failure("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[17,17]}}",
                   16, HYLO_ERR_FORMAT, "'a'", "past the end");
    expect_failure("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[16,12]}}",
                   16, HYLO_ERR_FORMAT, "'a'", "[16, 12]", "end before");
    expect_failure("{\"a\":{\"dtype\":\"F32\",\"shape\":[4]}}", 16, HYLO_ERR_FORMAT, "'a'",
                   "missing field 'data_offsets'");
    expect_failure("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,8,16]}}", 16,
                   HYLO_ERR_FORMAT, "'a'", "data_offsets must be an array [begin, end]");
    expect_failure("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0]}}", 16,
                   HYLO_ERR_FORMAT, "'a'", "data_offsets must be an array");
    expect_failure("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":{\"0\":16}}}", 16,
                   HYLO_ERR_FORMAT, "'a'", "data_offsets must be an array");
    expect_failure("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[-16,0]}}", 16,
                   HYLO_ERR_FORMAT, "'a'", "whole numbers");
    expect_failure("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0.5,4.5]}}", 16,
                   HYLO_ERR_FORMAT, "'a'", "whole numbers");
    expect_failure("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[\"0\",\"4\"]}}", 16,
                   HYLO_ERR_FORMAT, "'a'", "whole numbers");
    expect_failure("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[1e300,1e300]}}",
                   16, HYLO_ERR_FORMAT, "'a'", "whole numbers");
}
END_TEST

START_TEST(shapes)
{
    expect_failure("{\"a\":{\"dtype\":\"F32\",\"shape\":[3037000500,3037000500],"
                   "\"data_offsets\":[0,16]}}", 16, HYLO_ERR_FORMAT, "'a'", "more elements");
    expect_failure("{\"a\":{\"dtype\":\"F32\",\"shape\":[4503599627370495,4503599627370495,4],"
                   "\"data_offsets\":[0,16]}}", 16, HYLO_ERR_FORMAT, "'a'", "more elements");
    /* 2^62 elements fit in int64 but 2^64 bytes do not fit in 64 bits. */
    expect_failure("{\"a\":{\"dtype\":\"F32\",\"shape\":[2147483648,2147483648],"
                   "\"data_offsets\":[0,16]}}", 16, HYLO_ERR_FORMAT, "'a'", "more bytes");
    expect_failure("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1,4],\"data_offsets\":[0,16]}}", 16,
                   HYLO_ERR_FORMAT, "'a'", "shape[0] = -1");
    expect_failure("{\"a\":{\"dtype\":\"F32\",\"shape\":[4,-4],\"data_offsets\":[0,16]}}", 16,
                   HYLO_ERR_FORMAT, "'a'", "shape[1] = -4");
    expect_failure("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,10]}}", 16,
                   HYLO_ERR_FORMAT, "'a'", "shape[0] = 2.5", "not an integer");
    expect_failure("{\"a\":{\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,16]}}", 16,
                   HYLO_ERR_FORMAT, "'a'", "shape[0]", "not an integer");
    expect_failure("{\"a\":{\"dtype\":\"F32\",\"shape\":[9007199254740992],"
                   "\"data_offsets\":[0,16]}}", 16, HYLO_ERR_FORMAT, "'a'", "[0, 2^53)");
    expect_failure("{\"a\":{\"dtype\":\"F32\",\"shape\":[\"4\"],\"data_offsets\":[0,16]}}", 16,
                   HYLO_ERR_FORMAT, "'a'", "shape[0] is a JSON string");
    expect_failure("{\"a\":{\"dtype\":\"F32\",\"shape\":[[4]],\"data_offsets\":[0,16]}}", 16,
                   HYLO_ERR_FORMAT, "'a'", "shape[0] is a JSON array");
    expect_failure("{\"a\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,16]}}", 16,
                   HYLO_ERR_FORMAT, "'a'", "shape is a JSON number");
    expect_failure("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,4],"
                   "\"data_offsets\":[0,16]}}", 16, HYLO_ERR_FORMAT, "'a'", "9 dimensions");
    expect_failure("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,16]}}", 16, HYLO_ERR_FORMAT,
                   "'a'", "missing field 'shape'");
    /* Byte size mismatches are shape errors. */
    expect_failure("{\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[64],"
                   "\"data_offsets\":[0,100]}}", 100, HYLO_ERR_SHAPE,
                   LABEL ": tensor 'model.norm.weight': data_offsets [0, 100] span 100 bytes but "
                   "shape [64] of F32 needs 256");
    expect_failure("{\"a\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,16]}}", 16,
                   HYLO_ERR_SHAPE, "'a'", "shape [2, 3] of BF16 needs 12");
    expect_failure("{\"a\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[0,4]}}", 16,
                   HYLO_ERR_SHAPE, "'a'", "shape [] of F16 needs 2");
}
END_TEST

START_TEST(dtypes)
{
    static const char *const bad[] = {"I8", "F64", "bf16", "f32", "BF16 ", "", "U8", "F8_E4M3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char json[256], want[128];
        snprintf(json, sizeof json,
                 "{\"x\":{\"dtype\":\"%s\",\"shape\":[4],\"data_offsets\":[0,4]}}", bad[i]);
        snprintf(want, sizeof want,
                 "tensor 'x': dtype '%s' is not supported (expected F32, F16 or BF16)", bad[i]);
        expect_failure(json, 16, HYLO_ERR_FORMAT, want);
    }
    expect_failure("{\"x\":{\"dtype\":12,\"shape\":[4],\"data_offsets\":[0,16]}}", 16,
                   HYLO_ERR_FORMAT, "'x'", "dtype is a JSON number");
    expect_failure("{\"x\":{\"dtype\":null,\"shape\":[4],\"data_offsets\":[0,16]}}", 16,
                   HYLO_ERR_FORMAT, "'x'", "dtype is a JSON null");
    expect_failure("{\"x\":{\"shape\":[4],\"data_offsets\":[0,16]}}", 16, HYLO_ERR_FORMAT, "'x'",
                   "missing field 'dtype'");
}
END_TEST

START_TEST(names_and_entries)
{
    expect_failure("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                   "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
                   HYLO_ERR_FORMAT, "'a' appears twice");
    expect_failure("{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8,
                   HYLO_ERR_FORMAT, "is empty");
    expect_failure("{\"a\\u001b[31m\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                   8, HYLO_ERR_FORMAT, "a\\x1b[31m", "control character");
    expect_failure("{\"a\":5}", 8, HYLO_ERR_FORMAT, "'a'", "JSON number, expected an object");
    expect_failure("{\"a\":[0,4]}", 8, HYLO_ERR_FORMAT, "'a'", "JSON array, expected an object");
    expect_failure("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[1],"
                   "\"data_offsets\":[0,4]}}", 8, HYLO_ERR_FORMAT, "'a'", "'dtype' appears twice");
    expect_failure("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 8,
                   HYLO_ERR_FORMAT, "'a'", "unknown field 'x'");
}
END_TEST

START_TEST(header_structure)
{
    expect_failure("[1,2]", 0, HYLO_ERR_FORMAT, "header is a JSON array, expected an object");
    expect_failure("\"model\"", 0, HYLO_ERR_FORMAT, "header is a JSON string");
    expect_failure("null", 0, HYLO_ERR_FORMAT, "header is a JSON null");
    expect_failure("", 0, HYLO_ERR_FORMAT, "not valid JSON");
    expect_failure("{\"a\":", 0, HYLO_ERR_FORMAT, "not valid JSON");
    expect_failure("{} x", 0, HYLO_ERR_FORMAT, "after its JSON object");
    expect_failure("{}{}", 0, HYLO_ERR_FORMAT, "after its JSON object");
    expect_failure("{}\n\t\x01", 0, HYLO_ERR_FORMAT, "control byte 0x01");
    expect_failure("{\"\xc3\x28\":1}", 0, HYLO_ERR_FORMAT, "not valid UTF-8 at offset 10");
    expect_failure("{\"\xed\xa0\x80\":1}", 0, HYLO_ERR_FORMAT, "not valid UTF-8");  /* surrogate */
    expect_failure("{\"\xc0\xaf\":1}", 0, HYLO_ERR_FORMAT, "not valid UTF-8");      /* overlong */
    expect_failure("{\"__metadata__\":\"x\"}", 0, HYLO_ERR_FORMAT,
                   "__metadata__ is a JSON string, expected an object");
    expect_failure("{\"__metadata__\":[\"x\"]}", 0, HYLO_ERR_FORMAT, "__metadata__ is a JSON array");
    expect_failure("{\"__metadata__\":{\"k\":1}}", 0, HYLO_ERR_FORMAT,
                   "__metadata__ key 'k' is a JSON number");
    expect_failure("{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", 0, HYLO_ERR_FORMAT,
                   "__metadata__ key 'k' appears twice");
    expect_failure("{\"__metadata__\":{},\"__metadata__\":{}}", 0, HYLO_ERR_FORMAT,
                   "__metadata__ appears twice");
    /* Nesting beyond cJSON's limit fails as invalid JSON instead of exhausting the stack. */
    char deep[4200];
    size_t o = 0;
    o += (size_t)snprintf(deep, sizeof deep, "{\"a\":");
    for (int i = 0; i < 2000; i++) deep[o++] = '[';
    for (int i = 0; i < 2000; i++) deep[o++] = ']';
    deep[o++] = '}';
    deep[o] = '\0';
    expect_failure(deep, 0, HYLO_ERR_FORMAT, "not valid JSON");
}
END_TEST

/* What the reader must accept: gaps between tensors, trailing bytes, empty tensors sharing an
 * offset, an empty header object, padding whitespace. */
START_TEST(lenient_where_harmless)
{
    static const char *const ok[] = {
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[4,4]},"
        "\"c\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
        "{}",
        "{\"__metadata__\":{}}    \n",
        "  {\"a\":{\"data_offsets\":[0,4],\"shape\":[1],\"dtype\":\"F32\"}}  ",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4e0]}}",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        size_t len;
        unsigned char *img = image(ok[i], 16, &len);
        hylo_safetensors *st;
        hylo_error err;
        ck_assert_msg(hylo_safetensors_open_memory(img, len, LABEL, &st, &err) == HYLO_OK,
                      "%s: %s", ok[i], err.message);
        check_views_in_bounds(st, img, len);
        hylo_safetensors_close(st);
        free(img);
    }
}
END_TEST

/* cJSON turns \u0000 into an early end of string; it must neither crash nor read wrongly. */
START_TEST(embedded_nul_in_name)
{
    size_t len;
    unsigned char *img = image("{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[1],"
                               "\"data_offsets\":[0,4]}}", 4, &len);
    hylo_safetensors *st = NULL;
    hylo_error err = {0};
    if (hylo_safetensors_open_memory(img, len, LABEL, &st, &err) == HYLO_OK) {
        check_views_in_bounds(st, img, len);
        hylo_safetensors_close(st);
    } else {
        ck_assert(err.message[0] != '\0');
    }
    free(img);
}
END_TEST

START_TEST(file_errors)
{
    hylo_safetensors *st;
    hylo_error err;
    ck_assert_int_eq(hylo_safetensors_open("no-such.safetensors", &st, &err), HYLO_ERR_IO);
    ck_assert_ptr_null(st);
    ck_assert(strstr(err.message, "no-such.safetensors") && strstr(err.message, "cannot open"));
    char *dir = hylo_test_tmpdir("dir");
    ck_assert_int_eq(hylo_safetensors_open(dir, &st, &err), HYLO_ERR_IO);
    ck_assert(strstr(err.message, dir) && strstr(err.message, "not a regular file"));
    free(dir);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("malformed");
    TCase *tc = tcase_create("corpus");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, valid_base_opens);
    tcase_add_test(tc, every_truncation_fails);
    tcase_add_test(tc, every_header_bit_flip_is_handled);
    tcase_add_test(tc, header_length_out_of_range);
    tcase_add_test(tc, offsets);
    tcase_add_test(tc, shapes);
    tcase_add_test(tc, dtypes);
    tcase_add_test(tc, names_and_entries);
    tcase_add_test(tc, header_structure);
    tcase_add_test(tc, lenient_where_harmless);
    tcase_add_test(tc, embedded_nul_in_name);
    tcase_add_test(tc, file_errors);
    suite_add_tcase(s, tc);
    return s;
}

HYLO_TEST_MAIN
