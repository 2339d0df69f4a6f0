/* test_safetensors.c: the safetensors writer and reader together (round trips of every dtype,
 * 0-d and empty tensors, metadata, the byte layout), atomic writes (abort, wrong byte counts,
 * failed commits leave the destination alone), checkpoints single and sharded, and the progress
 * reporter's plain-text mode. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/progress.h"
#include "testutil.h"

/* ---- helpers ------------------------------------------------------------------------------ */

static hylo_tensor_spec spec(const char *name, hylo_dtype dtype, int ndim, int64_t d0, int64_t d1,
                             int64_t d2)
{
    hylo_tensor_spec s = {name, dtype, ndim, {d0, d1, d2}};
    return s;
}

static size_t spec_bytes(const hylo_tensor_spec *s)
{
    size_t n = hylo_dtype_size(s->dtype);
    for (int d = 0; d < s->ndim; d++) n *= (size_t)s->shape[d];
    return n;
}

/* Deterministic bytes of tensor i. */
static unsigned char pattern(size_t i, size_t k)
{
    return (unsigned char)(i * 31 + k * 7 + (k >> 8) + 3);
}

static void *pattern_bytes(size_t i, size_t n)
{
    unsigned char *p = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(p);
    for (size_t k = 0; k < n; k++) p[k] = pattern(i, k);
    return p;
}

/* Entries of dir other than . and .., as a count; the first name goes to `first` if given. */
static uint64_t le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* ---- round trips ---------------------------------------------------------------------------- */

START_TEST(round_trip_dtypes_and_shapes)
{
    hylo_tensor_spec specs[] = {
        spec("a.f32", HYLO_F32, 2, 3, 5, 0),
        spec("b.f16", HYLO_F16, 1, 7, 0, 0),
        spec("c.bf16", HYLO_BF16, 3, 2, 3, 4),
        spec("scalar", HYLO_F32, 0, 0, 0, 0),
        spec("empty", HYLO_F16, 2, 0, 4, 0),
        spec("unicode.\xc3\xa9t\xc3\xa9 \"q\"", HYLO_BF16, 1, 1, 0, 0),
    };
    enum { N = sizeof specs / sizeof specs[0] };
    void *data[N];
    for (size_t i = 0; i < N; i++) data[i] = pattern_bytes(i, spec_bytes(&specs[i]));
    const char *meta[] = {"format", "pt", "note", "quote \" backslash \\ newline \n tab \t", NULL};
    char *dir = hylo_test_tmpdir("rt");
    char *path = hylo_test_join(dir, "m.safetensors");
    hylo_error err;
    ck_assert_ok(hylo_safetensors_write(path, specs, (const void *const *)data, N, meta, &err), &err);

    hylo_safetensors *st;
    ck_assert_ok(hylo_safetensors_open(path, &st, &err), &err);
    ck_assert_uint_eq(hylo_safetensors_count(st), N);
    for (size_t i = 0; i < N; i++) {
        const hylo_tensor_view *v = hylo_safetensors_find(st, specs[i].name);
        ck_assert_msg(v != NULL, "tensor %s not found", specs[i].name);
        ck_assert_str_eq(v->name, specs[i].name);
        ck_assert_int_eq(v->dtype, specs[i].dtype);
        ck_assert_int_eq(v->ndim, specs[i].ndim);
        int64_t numel = 1;
        for (int d = 0; d < v->ndim; d++) {
            ck_assert_int_eq(v->shape[d], specs[i].shape[d]);
            numel *= specs[i].shape[d];
        }
        ck_assert_int_eq(v->numel, numel);
        ck_assert_uint_eq(v->nbytes, spec_bytes(&specs[i]));
        if (v->nbytes) ck_assert_mem_eq(v->data, data[i], v->nbytes);
        /* Written in spec order with no gaps, so offset order is spec order. */
        ck_assert_ptr_eq(hylo_safetensors_at(st, i), v);
    }
    ck_assert_ptr_null(hylo_safetensors_at(st, N));
    ck_assert_ptr_null(hylo_safetensors_find(st, "a.f3"));
    ck_assert_ptr_null(hylo_safetensors_find(st, "__metadata__"));
    ck_assert_str_eq(hylo_safetensors_metadata(st, "format"), "pt");
    ck_assert_str_eq(hylo_safetensors_metadata(st, "note"), meta[3]);
    ck_assert_ptr_null(hylo_safetensors_metadata(st, "absent"));
    hylo_safetensors_close(st);

    /* The same bytes through open_memory. */
    size_t len;
    unsigned char *bytes = hylo_test_read_file(path, &len);
    ck_assert_ok(hylo_safetensors_open_memory(bytes, len, "mem", &st, &err), &err);
    ck_assert_uint_eq(hylo_safetensors_count(st), N);
    const hylo_tensor_view *v = hylo_safetensors_find(st, "c.bf16");
    ck_assert(v->data > (const void *)bytes && (const unsigned char *)v->data < bytes + len);
    ck_assert_mem_eq(v->data, data[2], v->nbytes);
    hylo_safetensors_close(st);

    free(bytes);
    for (size_t i = 0; i < N; i++) free(data[i]);
    free(path);
    free(dir);
}
END_TEST

START_TEST(values_of_each_dtype)
{
    const float values[6] = {1.0f, -2.5f, 0.0f, 3.140625f, 65504.0f, -0.0078125f};
    hylo_dtype dtypes[3] = {HYLO_F32, HYLO_F16, HYLO_BF16};
    hylo_tensor_spec specs[3];
    unsigned char raw[3][24];
    const void *data[3];
    for (int k = 0; k < 3; k++) {
        specs[k] = spec(hylo_dtype_name(dtypes[k]), dtypes[k], 2, 2, 3, 0);
        hylo_convert_from_f32(dtypes[k], values, raw[k], 6);
        data[k] = raw[k];
    }
    char *dir = hylo_test_tmpdir("vals");
    char *path = hylo_test_join(dir, "v.safetensors");
    hylo_error err;
    ck_assert_ok(hylo_safetensors_write(path, specs, data, 3, NULL, &err), &err);
    hylo_safetensors *st;
    ck_assert_ok(hylo_safetensors_open(path, &st, &err), &err);
    ck_assert_ptr_null(hylo_safetensors_metadata(st, "format"));
    for (int k = 0; k < 3; k++) {
        const hylo_tensor_view *v = hylo_safetensors_find(st, hylo_dtype_name(dtypes[k]));
        float back[6];
        hylo_convert_to_f32(v->dtype, v->data, back, 6);
        /* Every value is exact in all three types except 65504 (bf16 rounds it to 65536). */
        for (int j = 0; j < 6; j++) {
            float want = dtypes[k] == HYLO_BF16 && j == 4 ? 65536.0f : values[j];
            ck_assert_msg(back[j] == want, "%s[%d] = %g", hylo_dtype_name(dtypes[k]), j,
                          (double)back[j]);
        }
    }
    /* F16 little-endian encoding of 1.0 is 00 3c. */
    const unsigned char *h = hylo_safetensors_find(st, "F16")->data;
    ck_assert_uint_eq(h[0], 0x00);
    ck_assert_uint_eq(h[1], 0x3c);
    hylo_safetensors_close(st);
    free(path);
    free(dir);
}
END_TEST

START_TEST(layout_header_and_alignment)
{
    /* 64, 64, 12, 64 bytes: the first three start 64-byte aligned in the file, the last right
     * after the 12-byte tensor (the data has no gaps). */
    hylo_tensor_spec specs[] = {
        spec("w1", HYLO_F32, 2, 4, 4, 0),
        spec("w2", HYLO_BF16, 1, 32, 0, 0),
        spec("bias", HYLO_F32, 1, 3, 0, 0),
        spec("w3", HYLO_F16, 1, 32, 0, 0),
    };
    const void *data[4];
    for (size_t i = 0; i < 4; i++) data[i] = pattern_bytes(i, spec_bytes(&specs[i]));
    const char *meta[] = {"k", "v", NULL};
    char *dir = hylo_test_tmpdir("layout");
    char *path = hylo_test_join(dir, "l.safetensors");
    hylo_error err;
    ck_assert_ok(hylo_safetensors_write(path, specs, data, 4, meta, &err), &err);

    size_t len;
    unsigned char *bytes = hylo_test_read_file(path, &len);
    uint64_t n = le64(bytes);
    ck_assert_uint_eq(n % 8, 0);
    ck_assert_uint_eq((8 + n) % 64, 0);
    ck_assert_uint_eq(8 + n + 64 + 64 + 12 + 64, len);
    /* The JSON ends with its closing brace; only spaces pad it. */
    size_t end = 8 + n;
    while (bytes[end - 1] == ' ') end--;
    ck_assert_uint_eq(bytes[end - 1], '}');
    ck_assert_uint_eq(bytes[8], '{');
    ck_assert_uint_lt(8 + n - end, 64);

    /* The offsets in the header, read with cJSON independently of the reader. */
    cJSON *root = cJSON_ParseWithLength((const char *)bytes + 8, n);
    ck_assert_ptr_nonnull(root);
    const uint64_t want[4][2] = {{0, 64}, {64, 128}, {128, 140}, {140, 204}};
    for (size_t i = 0; i < 4; i++) {
        const cJSON *off = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(root, specs[i].name), "data_offsets");
        ck_assert_uint_eq((uint64_t)cJSON_GetArrayItem(off, 0)->valuedouble, want[i][0]);
        ck_assert_uint_eq((uint64_t)cJSON_GetArrayItem(off, 1)->valuedouble, want[i][1]);
        ck_assert_mem_eq(bytes + 8 + n + want[i][0], data[i], spec_bytes(&specs[i]));
        if (i < 3) ck_assert_uint_eq((8 + n + want[i][0]) % 64, 0);
    }
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(
                         cJSON_GetObjectItemCaseSensitive(root, "__metadata__"), "k")->valuestring,
                     "v");
    cJSON_Delete(root);
    free(bytes);
    for (size_t i = 0; i < 4; i++) free((void *)data[i]);
    free(path);
    free(dir);
}
END_TEST

START_TEST(empty_file_round_trip)
{
    char *dir = hylo_test_tmpdir("empty");
    char *path = hylo_test_join(dir, "e.safetensors");
    hylo_error err;
    ck_assert_ok(hylo_safetensors_write(path, NULL, NULL, 0, NULL, &err), &err);
    hylo_safetensors *st;
    ck_assert_ok(hylo_safetensors_open(path, &st, &err), &err);
    ck_assert_uint_eq(hylo_safetensors_count(st), 0);
    ck_assert_ptr_null(hylo_safetensors_at(st, 0));
    ck_assert_ptr_null(hylo_safetensors_find(st, "x"));
    hylo_safetensors_close(st);
    free(path);
    free(dir);
}
END_TEST

/* ---- atomic writes ---------------------------------------------------------------------------- */

START_TEST(abort_leaves_nothing)
{
    hylo_tensor_spec specs[] = {spec("a", HYLO_F32, 1, 16, 0, 0), spec("b", HYLO_F16, 1, 8, 0, 0)};
    char *dir = hylo_test_tmpdir("abort");
    char *path = hylo_test_join(dir, "x.safetensors");
    hylo_safetensors_writer *w;
    hylo_error err;
    ck_assert_ok(hylo_safetensors_writer_open(path, specs, 2, NULL, &w, &err), &err);
    ck_assert_uint_eq(hylo_test_dir_entries(dir, NULL, 0), 1); /* the temporary file */
    unsigned char buf[64] = {0};
    ck_assert_ok(hylo_safetensors_writer_append(w, buf, 40, &err), &err);
    hylo_safetensors_writer_abort(w);
    ck_assert_uint_eq(hylo_test_dir_entries(dir, NULL, 0), 0);
    ck_assert_int_ne(access(path, F_OK), 0);
    hylo_safetensors_writer_abort(NULL);
    free(path);
    free(dir);
}
END_TEST

START_TEST(pieces_and_zero_size_tensors)
{
    /* Bytes may arrive in arbitrary pieces across tensor boundaries; empty tensors are skipped. */
    hylo_tensor_spec specs[] = {
        spec("z0", HYLO_F32, 1, 0, 0, 0), spec("a", HYLO_F32, 1, 5, 0, 0),
        spec("z1", HYLO_BF16, 2, 3, 0, 0), spec("b", HYLO_BF16, 1, 9, 0, 0),
        spec("z2", HYLO_F16, 1, 0, 0, 0),
    };
    unsigned char all[38];
    for (size_t k = 0; k < sizeof all; k++) all[k] = (unsigned char)(k + 1);
    char *dir = hylo_test_tmpdir("pieces");
    char *path = hylo_test_join(dir, "p.safetensors");
    hylo_safetensors_writer *w;
    hylo_error err;
    ck_assert_ok(hylo_safetensors_writer_open(path, specs, 5, NULL, &w, &err), &err);
    size_t cuts[] = {0, 3, 19, 20, 20, 37, 38};
    for (size_t c = 1; c < sizeof cuts / sizeof cuts[0]; c++)
        ck_assert_ok(hylo_safetensors_writer_append(w, all + cuts[c - 1], cuts[c] - cuts[c - 1],
                                                    &err), &err);
    ck_assert_ok(hylo_safetensors_writer_commit(w, &err), &err);
    hylo_safetensors *st;
    ck_assert_ok(hylo_safetensors_open(path, &st, &err), &err);
    ck_assert_mem_eq(hylo_safetensors_find(st, "a")->data, all, 20);
    ck_assert_mem_eq(hylo_safetensors_find(st, "b")->data, all + 20, 18);
    ck_assert_uint_eq(hylo_safetensors_find(st, "z1")->nbytes, 0);
    ck_assert_int_eq(hylo_safetensors_find(st, "z1")->numel, 0);
    hylo_safetensors_close(st);
    ck_assert_uint_eq(hylo_test_dir_entries(dir, NULL, 0), 1);
    free(path);
    free(dir);
}
END_TEST

START_TEST(append_too_many_bytes_fails)
{
    hylo_tensor_spec specs[] = {spec("first", HYLO_F32, 1, 4, 0, 0),
                                spec("second", HYLO_F32, 1, 2, 0, 0)};
    char *dir = hylo_test_tmpdir("toomany");
    char *path = hylo_test_join(dir, "t.safetensors");
    unsigned char buf[64] = {0};
    hylo_safetensors_writer *w;
    hylo_error err;
    ck_assert_ok(hylo_safetensors_writer_open(path, specs, 2, NULL, &w, &err), &err);
    ck_assert_ok(hylo_safetensors_writer_append(w, buf, 10, &err), &err);
    ck_assert_int_eq(hylo_safetensors_writer_append(w, buf, 15, &err), HYLO_ERR_SHAPE);
    ck_assert_msg(strstr(err.message, path) && strstr(err.message, "15 bytes appended") &&
                  strstr(err.message, "only 14 remain") && strstr(err.message, "'first'"),
                  "%s", err.message);
    /* The writer is unusable after a failed append: commit refuses and removes the file. */
    ck_assert_int_ne(hylo_safetensors_writer_commit(w, &err), HYLO_OK);
    ck_assert_uint_eq(hylo_test_dir_entries(dir, NULL, 0), 0);

    /* Bytes after the last tensor is complete. */
    ck_assert_ok(hylo_safetensors_writer_open(path, specs, 2, NULL, &w, &err), &err);
    ck_assert_ok(hylo_safetensors_writer_append(w, buf, 24, &err), &err);
    ck_assert_int_eq(hylo_safetensors_writer_append(w, buf, 1, &err), HYLO_ERR_SHAPE);
    ck_assert_msg(strstr(err.message, "after the last tensor"), "%s", err.message);
    hylo_safetensors_writer_abort(w);
    ck_assert_uint_eq(hylo_test_dir_entries(dir, NULL, 0), 0);
    free(path);
    free(dir);
}
END_TEST

START_TEST(failed_commit_keeps_destination)
{
    char *dir = hylo_test_tmpdir("keep");
    char *path = hylo_test_join(dir, "model.safetensors");
    hylo_tensor_spec old_spec = spec("old", HYLO_F32, 1, 8, 0, 0);
    void *old_data = pattern_bytes(9, 32);
    hylo_error err;
    ck_assert_ok(hylo_safetensors_write(path, &old_spec, (const void *const *)&old_data, 1, NULL,
                                        &err), &err);
    size_t before_len;
    unsigned char *before = hylo_test_read_file(path, &before_len);

    hylo_tensor_spec specs[] = {spec("x", HYLO_F32, 1, 4, 0, 0), spec("y", HYLO_BF16, 1, 6, 0, 0)};
    hylo_safetensors_writer *w;
    unsigned char buf[32] = {0};
    ck_assert_ok(hylo_safetensors_writer_open(path, specs, 2, NULL, &w, &err), &err);
    ck_assert_ok(hylo_safetensors_writer_append(w, buf, 20, &err), &err);
    ck_assert_int_eq(hylo_safetensors_writer_commit(w, &err), HYLO_ERR_SHAPE);
    ck_assert_msg(strstr(err.message, "tensor 'y' received 4 of its 12 bytes") &&
                  strstr(err.message, path), "%s", err.message);

    size_t after_len;
    unsigned char *after = hylo_test_read_file(path, &after_len);
    ck_assert_uint_eq(after_len, before_len);
    ck_assert_mem_eq(after, before, before_len);
    char first[256];
    ck_assert_uint_eq(hylo_test_dir_entries(dir, first, sizeof first), 1);
    ck_assert_str_eq(first, "model.safetensors");
    free(after);
    free(before);
    free(old_data);
    free(path);
    free(dir);
}
END_TEST

START_TEST(invalid_specs_write_nothing)
{
    char *dir = hylo_test_tmpdir("specs");
    char *path = hylo_test_join(dir, "s.safetensors");
    hylo_safetensors_writer *w = (hylo_safetensors_writer *)&dir; /* must be reset to NULL */
    hylo_error err;
    struct {
        hylo_tensor_spec specs[2];
        size_t count;
        hylo_status status;
        const char *message;
    } cases[] = {
        {{spec("a", HYLO_F32, 1, 4, 0, 0), spec("a", HYLO_F16, 1, 4, 0, 0)}, 2, HYLO_ERR_USAGE,
         "tensor 'a' appears twice"},
        {{spec("", HYLO_F32, 1, 4, 0, 0)}, 1, HYLO_ERR_USAGE, "is empty"},
        {{spec(NULL, HYLO_F32, 1, 4, 0, 0)}, 1, HYLO_ERR_USAGE, "tensor 0 has no name"},
        {{spec("__metadata__", HYLO_F32, 1, 4, 0, 0)}, 1, HYLO_ERR_USAGE, "reserved"},
        {{spec("a\nb", HYLO_F32, 1, 4, 0, 0)}, 1, HYLO_ERR_USAGE, "control character"},
        {{spec("a", HYLO_F32, HYLO_MAX_DIMS + 1, 4, 0, 0)}, 1, HYLO_ERR_USAGE, "ndim 9"},
        {{spec("a", HYLO_F32, -1, 4, 0, 0)}, 1, HYLO_ERR_USAGE, "ndim -1"},
        {{spec("a", (hylo_dtype)7, 1, 4, 0, 0)}, 1, HYLO_ERR_USAGE, "unknown dtype 7"},
        {{spec("b", HYLO_F32, 2, 4, -3, 0)}, 1, HYLO_ERR_SHAPE, "shape[1] = -3"},
        {{spec("c", HYLO_F32, 3, INT64_MAX, INT64_MAX, 2)}, 1, HYLO_ERR_RANGE, "too large"},
        {{spec("d", HYLO_BF16, 2, (int64_t)1 << 31, (int64_t)1 << 31, 0)}, 1, HYLO_ERR_RANGE,
         "too large"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        hylo_status st = hylo_safetensors_writer_open(path, cases[i].specs, cases[i].count, NULL,
                                                      &w, &err);
        ck_assert_msg(st == cases[i].status, "case %zu: %s (%s)", i, hylo_status_name(st),
                      err.message);
        ck_assert_ptr_null(w);
        ck_assert_msg(strstr(err.message, cases[i].message) && strstr(err.message, path),
                      "case %zu: %s", i, err.message);
    }
    hylo_tensor_spec ok = spec("a", HYLO_F32, 1, 1, 0, 0);
    const char *odd[] = {"key", NULL};
    ck_assert_int_eq(hylo_safetensors_writer_open(path, &ok, 1, odd, &w, &err), HYLO_ERR_USAGE);
    ck_assert_msg(strstr(err.message, "'key' has no value"), "%s", err.message);
    const char *dup[] = {"k", "1", "k", "2", NULL};
    ck_assert_int_eq(hylo_safetensors_writer_open(path, &ok, 1, dup, &w, &err), HYLO_ERR_USAGE);
    ck_assert_msg(strstr(err.message, "'k' appears twice"), "%s", err.message);
    ck_assert_uint_eq(hylo_test_dir_entries(dir, NULL, 0), 0);
    /* A directory that does not exist: an I/O error naming the path. */
    ck_assert_int_eq(hylo_safetensors_writer_open("no-such-dir/x.safetensors", &ok, 1, NULL, &w,
                                                  &err), HYLO_ERR_IO);
    ck_assert_msg(strstr(err.message, "no-such-dir/x.safetensors"), "%s", err.message);
    free(path);
    free(dir);
}
END_TEST

/* ---- checkpoints ------------------------------------------------------------------------------ */

typedef struct {
    const hylo_tensor_spec *specs;
    size_t fail_at;   /* index whose fill fails, or SIZE_MAX */
    size_t calls;
} fill_state;

static hylo_status fill_pattern(void *user, size_t i, void *dst, size_t nbytes, hylo_error *err)
{
    fill_state *fs = user;
    fs->calls++;
    ck_assert_uint_eq(nbytes, spec_bytes(&fs->specs[i]));
    if (i == fs->fail_at) return hylo_error_set(err, HYLO_ERR_NUMERIC, "fill refused");
    for (size_t k = 0; k < nbytes; k++) ((unsigned char *)dst)[k] = pattern(i, k);
    return HYLO_OK;
}

static void check_checkpoint_content(const char *dir, const hylo_tensor_spec *specs, size_t n)
{
    hylo_checkpoint *ck;
    hylo_error err;
    ck_assert_ok(hylo_checkpoint_open(dir, &ck, &err), &err);
    ck_assert_uint_eq(hylo_checkpoint_count(ck), n);
    for (size_t i = 0; i < n; i++) {
        const hylo_tensor_view *v = hylo_checkpoint_find(ck, specs[i].name);
        ck_assert_msg(v != NULL, "%s not found", specs[i].name);
        ck_assert_int_eq(v->dtype, specs[i].dtype);
        ck_assert_uint_eq(v->nbytes, spec_bytes(&specs[i]));
        for (size_t k = 0; k < v->nbytes; k++)
            ck_assert_uint_eq(((const unsigned char *)v->data)[k], pattern(i, k));
        /* Shards are in file-name order and each in offset order: spec order here. */
        ck_assert_ptr_eq(hylo_checkpoint_at(ck, i), v);
    }
    ck_assert_ptr_null(hylo_checkpoint_at(ck, n));
    ck_assert_ptr_null(hylo_checkpoint_find(ck, "missing"));
    hylo_checkpoint_close(ck);
}

START_TEST(sharded_round_trip)
{
    /* Sizes 256, 256, 128, 600, 40, 1000 (over the 600-byte limit: its own shard), 4, 0 and
     * 512 bytes. */
    hylo_tensor_spec specs[] = {
        spec("model.a", HYLO_F32, 1, 64, 0, 0), spec("model.b", HYLO_F32, 2, 8, 8, 0),
        spec("model.c", HYLO_BF16, 1, 64, 0, 0), spec("model.d", HYLO_F16, 2, 10, 30, 0),
        spec("model.e", HYLO_F32, 1, 10, 0, 0), spec("model.big", HYLO_BF16, 1, 500, 0, 0),
        spec("model.f", HYLO_F32, 0, 0, 0, 0), spec("model.g", HYLO_F16, 1, 0, 0, 0),
        spec("model.h", HYLO_F32, 2, 16, 8, 0),
    };
    enum { N = sizeof specs / sizeof specs[0] };
    /* Greedy in spec order: {a, b} 512 | {c} 128 (+600 > 600) | {d} 600 | {e} 40 | {big} 1000 |
     * {f, g, h} 516. */
    static const size_t want_shard[N] = {1, 1, 2, 3, 4, 5, 6, 6, 6};
    const size_t nshards = 6;
    char *dir = hylo_test_tmpdir("sharded");
    fill_state fs = {specs, SIZE_MAX, 0};
    hylo_error err;
    ck_assert_ok(hylo_checkpoint_write(dir, specs, N, fill_pattern, &fs, 600, "writing", &err), &err);
    ck_assert_uint_eq(fs.calls, N);

    /* Exactly the shards and the index, nothing else (no model.safetensors, no temp files). */
    ck_assert_uint_eq(hylo_test_dir_entries(dir, NULL, 0), nshards + 1);
    for (size_t k = 1; k <= nshards; k++) {
        char name[64];
        snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", k, nshards);
        char *p = hylo_test_join(dir, name);
        ck_assert_msg(access(p, F_OK) == 0, "%s missing", name);
        free(p);
    }
    char *index_path = hylo_test_join(dir, "model.safetensors.index.json");
    size_t len;
    char *text = (char *)hylo_test_read_file(index_path, &len);
    cJSON *root = cJSON_ParseWithLength(text, len);
    ck_assert_ptr_nonnull(root);
    uint64_t total = 0;
    for (size_t i = 0; i < N; i++) total += spec_bytes(&specs[i]);
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "metadata");
    ck_assert_uint_eq((uint64_t)cJSON_GetObjectItemCaseSensitive(meta, "total_size")->valuedouble,
                      total);
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    ck_assert_int_eq(cJSON_GetArraySize(map), N);
    for (size_t i = 0; i < N; i++) {
        char want[64];
        snprintf(want, sizeof want, "model-%05zu-of-%05zu.safetensors", want_shard[i], nshards);
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(map, specs[i].name);
        ck_assert_msg(cJSON_IsString(e) && strcmp(e->valuestring, want) == 0, "%s -> %s, want %s",
                      specs[i].name, e ? e->valuestring : "(none)", want);
    }
    cJSON_Delete(root);
    free(text);

    /* Each shard says format pt, as transformers requires. */
    char *shard1 = hylo_test_join(dir, "model-00001-of-00006.safetensors");
    hylo_safetensors *st;
    ck_assert_ok(hylo_safetensors_open(shard1, &st, &err), &err);
    ck_assert_str_eq(hylo_safetensors_metadata(st, "format"), "pt");
    ck_assert_uint_eq(hylo_safetensors_count(st), 2);
    hylo_safetensors_close(st);
    free(shard1);

    check_checkpoint_content(dir, specs, N);
    free(index_path);
    free(dir);
}
END_TEST

START_TEST(single_file_checkpoint)
{
    hylo_tensor_spec specs[] = {spec("x", HYLO_F32, 2, 3, 3, 0), spec("y", HYLO_BF16, 1, 5, 0, 0)};
    /* No limit, and a limit the total fits in exactly: one model.safetensors either way. */
    const uint64_t limits[] = {0, 36 + 10};
    for (size_t l = 0; l < 2; l++) {
        char *dir = hylo_test_tmpdir("single");
        fill_state fs = {specs, SIZE_MAX, 0};
        hylo_error err;
        ck_assert_ok(hylo_checkpoint_write(dir, specs, 2, fill_pattern, &fs, limits[l], NULL, &err),
                     &err);
        char first[256];
        ck_assert_uint_eq(hylo_test_dir_entries(dir, first, sizeof first), 1);
        ck_assert_str_eq(first, "model.safetensors");
        check_checkpoint_content(dir, specs, 2);
        free(dir);
    }
}
END_TEST

START_TEST(failed_fill_leaves_directory_untouched)
{
    hylo_tensor_spec specs[] = {spec("p", HYLO_F32, 1, 16, 0, 0), spec("q", HYLO_F32, 1, 16, 0, 0),
                                spec("r", HYLO_F32, 1, 16, 0, 0)};
    const uint64_t limits[] = {0, 64}; /* single file, then three shards */
    for (size_t l = 0; l < 2; l++) {
        char *dir = hylo_test_tmpdir("fillfail");
        fill_state fs = {specs, 2, 0};
        hylo_error err;
        ck_assert_int_eq(hylo_checkpoint_write(dir, specs, 3, fill_pattern, &fs, limits[l],
                                               "progress", &err), HYLO_ERR_NUMERIC);
        ck_assert_msg(strstr(err.message, "tensor 'r'") && strstr(err.message, "fill refused") &&
                      strstr(err.message, dir), "%s", err.message);
        ck_assert_uint_eq(hylo_test_dir_entries(dir, NULL, 0), 0);
        free(dir);
    }
}
END_TEST

START_TEST(sharded_write_refuses_shadowing_single_file)
{
    hylo_tensor_spec specs[] = {spec("p", HYLO_F32, 1, 16, 0, 0), spec("q", HYLO_F32, 1, 16, 0, 0)};
    char *dir = hylo_test_tmpdir("shadow");
    char *single = hylo_test_join(dir, "model.safetensors");
    hylo_test_write_file(single, "old", 3);
    fill_state fs = {specs, SIZE_MAX, 0};
    hylo_error err;
    ck_assert_int_eq(hylo_checkpoint_write(dir, specs, 2, fill_pattern, &fs, 64, NULL, &err),
                     HYLO_ERR_USAGE);
    ck_assert_msg(strstr(err.message, "shadow"), "%s", err.message);
    ck_assert_uint_eq(hylo_test_dir_entries(dir, NULL, 0), 1);
    free(single);
    free(dir);
}
END_TEST

/* A checkpoint directory with shards written from `names` and an index from `index_json`. */
static char *make_sharded_dir(const char *shard_a_tensors[], const char *shard_b_tensors[],
                              const char *index_json)
{
    char *dir = hylo_test_tmpdir("badckpt");
    const char **lists[2] = {shard_a_tensors, shard_b_tensors};
    const char *files[2] = {"s1.safetensors", "s2.safetensors"};
    float zero[2] = {0, 0};
    for (int s = 0; s < 2; s++) {
        if (!lists[s]) continue;
        hylo_tensor_spec specs[4];
        const void *data[4];
        size_t n = 0;
        for (; lists[s][n]; n++) {
            specs[n] = spec(lists[s][n], HYLO_F32, 1, 2, 0, 0);
            data[n] = zero;
        }
        char *p = hylo_test_join(dir, files[s]);
        hylo_error err;
        ck_assert_ok(hylo_safetensors_write(p, specs, data, n, NULL, &err), &err);
        free(p);
    }
    char *ip = hylo_test_join(dir, "model.safetensors.index.json");
    hylo_test_write_file(ip, index_json, strlen(index_json));
    free(ip);
    return dir;
}

static void expect_checkpoint_failure(const char *dir, hylo_status want, const char *s1,
                                      const char *s2)
{
    hylo_checkpoint *ck = (hylo_checkpoint *)&want; /* must be reset to NULL */
    hylo_error err;
    hylo_status got = hylo_checkpoint_open(dir, &ck, &err);
    ck_assert_msg(got == want, "status %s, expected %s: %s", hylo_status_name(got),
                  hylo_status_name(want), err.message);
    ck_assert_ptr_null(ck);
    ck_assert_msg(strstr(err.message, s1) && (!s2 || strstr(err.message, s2)), "%s", err.message);
}

START_TEST(checkpoint_errors)
{
    const char *a[] = {"t.a", "t.b", NULL};
    const char *b[] = {"t.c", NULL};
    const char *b_extra[] = {"t.c", "t.d", NULL};
    const char *b_dup[] = {"t.c", "t.a", NULL};
    char *dir;

    /* A consistent pair first, to show the cases below fail for their stated reason only. */
    dir = make_sharded_dir(a, b, "{\"weight_map\":{\"t.a\":\"s1.safetensors\","
                                 "\"t.b\":\"s1.safetensors\",\"t.c\":\"s2.safetensors\"}}");
    hylo_checkpoint *ck;
    hylo_error err;
    ck_assert_ok(hylo_checkpoint_open(dir, &ck, &err), &err);
    ck_assert_uint_eq(hylo_checkpoint_count(ck), 3);
    ck_assert_ptr_nonnull(hylo_checkpoint_find(ck, "t.c"));
    hylo_checkpoint_close(ck);
    free(dir);

    dir = hylo_test_tmpdir("notckpt");
    expect_checkpoint_failure(dir, HYLO_ERR_IO, "neither model.safetensors nor "
                              "model.safetensors.index.json exists", dir);
    free(dir);

    dir = make_sharded_dir(a, NULL, "{\"weight_map\":{\"t.a\":\"s1.safetensors\","
                                    "\"t.b\":\"s1.safetensors\",\"t.c\":\"s2.safetensors\"}}");
    expect_checkpoint_failure(dir, HYLO_ERR_IO, "s2.safetensors", "cannot open");
    free(dir);

    dir = make_sharded_dir(a, b, "{\"weight_map\":{\"t.a\":\"s1.safetensors\","
                                 "\"t.b\":\"s2.safetensors\",\"t.c\":\"s2.safetensors\"}}");
    expect_checkpoint_failure(dir, HYLO_ERR_SHAPE, "tensor 't.b' in shard 's2.safetensors'",
                              "does not hold it");
    free(dir);

    dir = make_sharded_dir(a, b_extra, "{\"weight_map\":{\"t.a\":\"s1.safetensors\","
                                       "\"t.b\":\"s1.safetensors\",\"t.c\":\"s2.safetensors\"}}");
    expect_checkpoint_failure(dir, HYLO_ERR_FORMAT, "shard 's2.safetensors' holds tensor 't.d'",
                              "does not list");
    free(dir);

    dir = make_sharded_dir(a, b_dup, "{\"weight_map\":{\"t.a\":\"s1.safetensors\","
                                     "\"t.b\":\"s1.safetensors\",\"t.c\":\"s2.safetensors\"}}");
    expect_checkpoint_failure(dir, HYLO_ERR_FORMAT, "tensor 't.a' is in shard 's1.safetensors'",
                              "s2.safetensors");
    free(dir);

    dir = make_sharded_dir(a, b, "{\"weight_map\":{\"t.a\":\"s1.safetensors\","
                                 "\"t.a\":\"s1.safetensors\",\"t.c\":\"s2.safetensors\"}}");
    expect_checkpoint_failure(dir, HYLO_ERR_FORMAT, "'t.a' is listed twice", NULL);
    free(dir);

    dir = make_sharded_dir(a, b, "{\"weight_map\":{\"t.a\":\"../s1.safetensors\"}}");
    expect_checkpoint_failure(dir, HYLO_ERR_FORMAT, "'../s1.safetensors'", "plain file name");
    free(dir);

    dir = make_sharded_dir(a, b, "{\"weight_map\":{\"t.a\":3}}");
    expect_checkpoint_failure(dir, HYLO_ERR_FORMAT, "field 'weight_map.t.a'",
                              "expected a shard file name (a string), got the number 3");
    free(dir);

    dir = make_sharded_dir(a, b, "{\"metadata\":{}}");
    expect_checkpoint_failure(dir, HYLO_ERR_FORMAT, "field 'weight_map' is missing", NULL);
    free(dir);

    dir = make_sharded_dir(a, b, "{\"weight_map\":");
    expect_checkpoint_failure(dir, HYLO_ERR_FORMAT, "model.safetensors.index.json",
                              "invalid JSON at byte");
    free(dir);

    /* A broken shard's own message comes through, with the index that led to it. */
    dir = make_sharded_dir(a, NULL, "{\"weight_map\":{\"t.c\":\"s2.safetensors\"}}");
    char *bad = hylo_test_join(dir, "s2.safetensors");
    hylo_test_write_file(bad, "\x04\0\0\0\0\0\0\0[1] ", 12);
    expect_checkpoint_failure(dir, HYLO_ERR_FORMAT, "s2.safetensors: header is a JSON array",
                              "index.json");
    free(bad);
    free(dir);
}
END_TEST

/* The index is read like the config files: one JSON object and nothing after it, weight_map an
 * object given once, every shard a plain file name in the checkpoint's own directory. */
START_TEST(index_is_read_strictly)
{
    const char *a[] = {"t.a", "t.b", NULL};
    const char *b[] = {"t.c", NULL};
    const char *const good = "{\"metadata\":{\"total_size\":24},\"weight_map\":{"
                             "\"t.a\":\"s1.safetensors\",\"t.b\":\"s1.safetensors\","
                             "\"t.c\":\"s2.safetensors\"}}";
    char json[512];
    char *dir;
    hylo_checkpoint *ck;
    hylo_error err;

    /* The well-formed index, with trailing white space, opens: each refusal below is the
     * change it makes. */
    snprintf(json, sizeof json, "%s \n\t\r\n", good);
    dir = make_sharded_dir(a, b, json);
    ck_assert_ok(hylo_checkpoint_open(dir, &ck, &err), &err);
    ck_assert_uint_eq(hylo_checkpoint_count(ck), 3);
    hylo_checkpoint_close(ck);
    free(dir);

    const struct { const char *suffix, *want; } trailing[] = {
        {" x", "unexpected data after the JSON value at byte"},
        {"{}", "unexpected data after the JSON value at byte"},
        {"\n,", "(line 2)"},
    };
    for (size_t i = 0; i < sizeof trailing / sizeof trailing[0]; i++) {
        snprintf(json, sizeof json, "%s%s", good, trailing[i].suffix);
        dir = make_sharded_dir(a, b, json);
        expect_checkpoint_failure(dir, HYLO_ERR_FORMAT, "model.safetensors.index.json: ",
                                  trailing[i].want);
        free(dir);
    }
    /* A NUL byte after the object is not white space either. */
    dir = make_sharded_dir(a, b, good);
    char *ip = hylo_test_join(dir, "model.safetensors.index.json");
    size_t len;
    unsigned char *bytes = hylo_test_read_file(ip, &len);
    unsigned char *padded = calloc(len + 2, 1);
    memcpy(padded, bytes, len);
    padded[len] = '\n';
    hylo_test_write_file(ip, padded, len + 2);
    expect_checkpoint_failure(dir, HYLO_ERR_FORMAT, "after the JSON value", NULL);
    free(padded);
    free(bytes);
    free(ip);
    free(dir);

    const struct { const char *json, *want1, *want2; } bad[] = {
        {"[]", "expected a JSON object", "weight_map"},
        {"{\"weight_map\":[\"s1.safetensors\"]}", "field 'weight_map': expected an object",
         "got an array"},
        {"{\"weight_map\":\"s1.safetensors\"}", "field 'weight_map': expected an object",
         "got the string"},
        {"{\"weight_map\":null}", "field 'weight_map': expected an object", "got null"},
        {"{\"weight_map\":{\"t.c\":\"s2.safetensors\"},\"weight_map\":{}}",
         "field 'weight_map' appears twice", NULL},
        {"{\"weight_map\":{\"t.c\":[\"s2.safetensors\"]}}", "field 'weight_map.t.c'",
         "got an array"},
        {"{\"weight_map\":{\"t.a\":\"sub/s1.safetensors\"}}", "'sub/s1.safetensors'",
         "is not a plain file name"},
        {"{\"weight_map\":{\"t.a\":\"/tmp/s1.safetensors\"}}", "'/tmp/s1.safetensors'",
         "is not a plain file name"},
        {"{\"weight_map\":{\"t.a\":\"..\"}}", "shard '..'", "is not a file name"},
        {"{\"weight_map\":{\"t.a\":\".\"}}", "shard '.'", "is not a file name"},
        {"{\"weight_map\":{\"t.a\":\"\"}}", "field 'weight_map.t.a'", "is empty"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dir = make_sharded_dir(a, b, bad[i].json);
        expect_checkpoint_failure(dir, HYLO_ERR_FORMAT, bad[i].want1, bad[i].want2);
        expect_checkpoint_failure(dir, HYLO_ERR_FORMAT, "model.safetensors.index.json: ", NULL);
        free(dir);
    }

    /* "../" escapes are refused even where the file they name exists and is a fine shard. */
    char *outside = make_sharded_dir(a, b, good);
    snprintf(json, sizeof json, "{\"weight_map\":{\"t.a\":\"../%s/s1.safetensors\","
             "\"t.b\":\"../%s/s1.safetensors\",\"t.c\":\"s2.safetensors\"}}", outside, outside);
    dir = make_sharded_dir(NULL, b, json);
    expect_checkpoint_failure(dir, HYLO_ERR_FORMAT, "field 'weight_map.t.a'",
                              "is not a plain file name");
    free(dir);
    free(outside);
}
END_TEST

/* ---- progress --------------------------------------------------------------------------------- */

/* Runs a reporter with stderr sent to a file (so not a terminal) and returns what it printed. */
static char *capture_progress(uint64_t total, uint64_t quiet_below, const char *unit)
{
    fflush(stderr);
    int saved = dup(2);
    FILE *tmp = tmpfile();
    ck_assert_ptr_nonnull(tmp);
    dup2(fileno(tmp), 2);
    hylo_progress p;
    hylo_progress_begin(&p, "job", total, unit, quiet_below);
    for (uint64_t d = 0; d <= total; d += total / 40 ? total / 40 : 1) hylo_progress_update(&p, d);
    hylo_progress_update(&p, total);
    hylo_progress_end(&p);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    long size = ftell(tmp);
    char *out = calloc((size_t)size + 1, 1);
    ck_assert_ptr_nonnull(out);
    rewind(tmp);
    ck_assert_uint_eq(fread(out, 1, (size_t)size, tmp), (size_t)size);
    fclose(tmp);
    return out;
}

START_TEST(progress_plain_lines)
{
    char *out = capture_progress((uint64_t)5 << 30, 64u << 20, "B");
    size_t lines = 0;
    for (const char *c = out; *c; c++) lines += *c == '\n';
    /* 10%, 20%, ..., 90% and the closing line: nothing redrawn, no terminal escapes. */
    ck_assert_msg(lines == 10, "%zu lines:\n%s", lines, out);
    ck_assert_msg(strstr(out, "job:  50% (2.50 GiB of 5.00 GiB") && strstr(out, "job: done, 5.00 GiB"),
                  "%s", out);
    ck_assert_ptr_null(strchr(out, '\r'));
    ck_assert_ptr_null(strchr(out, '\033'));
    free(out);

    out = capture_progress(1000, 0, "tokens");
    ck_assert_msg(strstr(out, "job:  30% (300 tokens of 1000 tokens"), "%s", out);
    free(out);

    out = capture_progress(1u << 20, 64u << 20, "B"); /* small: quiet */
    ck_assert_str_eq(out, "");
    free(out);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("safetensors");
    TCase *rt = tcase_create("round_trip");
    tcase_add_test(rt, round_trip_dtypes_and_shapes);
    tcase_add_test(rt, values_of_each_dtype);
    tcase_add_test(rt, layout_header_and_alignment);
    tcase_add_test(rt, empty_file_round_trip);
    suite_add_tcase(s, rt);
    TCase *at = tcase_create("atomic");
    tcase_add_test(at, abort_leaves_nothing);
    tcase_add_test(at, pieces_and_zero_size_tensors);
    tcase_add_test(at, append_too_many_bytes_fails);
    tcase_add_test(at, failed_commit_keeps_destination);
    tcase_add_test(at, invalid_specs_write_nothing);
    suite_add_tcase(s, at);
    TCase *ck = tcase_create("checkpoint");
    tcase_add_test(ck, sharded_round_trip);
    tcase_add_test(ck, single_file_checkpoint);
    tcase_add_test(ck, failed_fill_leaves_directory_untouched);
    tcase_add_test(ck, sharded_write_refuses_shadowing_single_file);
    tcase_add_test(ck, checkpoint_errors);
    tcase_add_test(ck, index_is_read_strictly);
    suite_add_tcase(s, ck);
    TCase *pg = tcase_create("progress");
    tcase_add_test(pg, progress_plain_lines);
    suite_add_tcase(s, pg);
    return s;
}

HYLO_TEST_MAIN
