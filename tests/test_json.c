/* test_json.c: the shared JSON plumbing of ref/io/json.c: Python's float spellings, typed reads
 * (integers, duplicates, null), parse errors with their line, whole-file reads with a size
 * limit, the text builder's escaping, rope objects both ways, and atomic files (no temporary
 * left behind; a failed text buffer leaves the destination alone). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/json.h"
#include "testutil.h"

/* ---- helpers ------------------------------------------------------------------------------ */

static cJSON *parse(const char *json)
{
    cJSON *root = NULL;
    hylo_error err = {0};
    ck_assert_ok(hylo_json_parse_object(json, strlen(json), "t.json", "fields", &root, &err),
                 &err);
    return root;
}

/* Fails unless `st` is `want` with a message holding `needle`. */
static void expect_error(hylo_status st, const hylo_error *err, hylo_status want,
                         const char *needle)
{
    ck_assert_msg(st == want, "status %s, expected %s: %s", hylo_status_name(st),
                  hylo_status_name(want), err->message);
    ck_assert_msg(strstr(err->message, needle), "message \"%s\" lacks \"%s\"", err->message,
                  needle);
}

/* Field by field: the structs' padding bytes are unspecified. */
static void ck_assert_rope_eq(const hylo_rope_config *a, const hylo_rope_config *b)
{
    ck_assert_int_eq(a->type, b->type);
    ck_assert(a->theta == b->theta && a->factor == b->factor);
    ck_assert(a->low_freq_factor == b->low_freq_factor);
    ck_assert(a->high_freq_factor == b->high_freq_factor);
    ck_assert_int_eq(a->original_max_position, b->original_max_position);
    ck_assert(a->beta_fast == b->beta_fast && a->beta_slow == b->beta_slow);
    ck_assert(a->attention_factor == b->attention_factor);
    ck_assert(a->mscale == b->mscale && a->mscale_all_dim == b->mscale_all_dim);
    ck_assert(a->truncate == b->truncate);
}

/* Fails unless the file at `path` holds exactly `text`. */
static void ck_assert_file_is(const char *path, const char *text)
{
    size_t len;
    char *got = (char *)hylo_test_read_file(path, &len);
    ck_assert_uint_eq(len, strlen(text));
    ck_assert_str_eq(got, text);
    free(got);
}

/* ---- writing numbers and members ---------------------------------------------------------- */

START_TEST(format_double_like_python)
{
    /* repr() of each value in CPython 3. */
    static const struct {
        double v;
        const char *text;
    } cases[] = {
        {32.0, "32.0"},
        {500000.0, "500000.0"},
        {1e-05, "1e-05"},
        {0.1, "0.1"},
        {0.3, "0.3"},
        {1e20, "1e+20"},
        {1e16, "1e+16"},
        {1e15, "1000000000000000.0"},
        {9007199254740992.0, "9007199254740992.0"},
        {0.0001, "0.0001"},
        {1.5e-7, "1.5e-07"},
        {1.234567890123e-7, "1.234567890123e-07"},
        {123456.789, "123456.789"},
        {-2.5, "-2.5"},
        {0.0, "0.0"},
        {-0.0, "-0.0"},
        {5e-324, "5e-324"},
        {1.7976931348623157e308, "1.7976931348623157e+308"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[48];
        hylo_json_format_double(cases[i].v, out, sizeof out);
        ck_assert_msg(strcmp(out, cases[i].text) == 0, "%.17g: got \"%s\", expected \"%s\"",
                      cases[i].v, out, cases[i].text);
        ck_assert(strtod(out, NULL) == cases[i].v);
    }
}
END_TEST

START_TEST(members_and_escapes)
{
    hylo_text t = {0};
    bool first = true;
    hylo_text_put(&t, "{\n", 2);
    hylo_json_put_int(&t, &first, 2, "n", -9007199254740992LL);
    hylo_json_put_double(&t, &first, 2, "x", 1e-6);
    hylo_json_put_bool(&t, &first, 2, "b", true);
    hylo_json_put_string(&t, &first, 2, "s", "q\"\\\n\x01\x7f\xc3\xa9");
    hylo_json_put_key(&t, &first, 2, "o");
    hylo_text_printf(&t, "%s", "null");
    hylo_text_put(&t, "\n}\n", 3);
    ck_assert(!t.failed);
    ck_assert_str_eq(t.data, "{\n"
                             "  \"n\": -9007199254740992,\n"
                             "  \"x\": 1e-06,\n"
                             "  \"b\": true,\n"
                             "  \"s\": \"q\\\"\\\\\\u000a\\u0001\\u007f\xc3\xa9\",\n"
                             "  \"o\": null\n"
                             "}\n");
    ck_assert_uint_eq(t.len, strlen(t.data));
    /* The result is JSON that reads back. */
    cJSON *root = parse(t.data);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(root, "s");
    ck_assert_str_eq(s->valuestring, "q\"\\\n\x01\x7f\xc3\xa9");
    cJSON_Delete(root);
    /* Long output goes past the printf fast path and the first allocation. */
    hylo_text_free(&t);
    ck_assert_ptr_null(t.data);
    char big[1000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    hylo_text_printf(&t, "<%s>", big);
    ck_assert_uint_eq(t.len, sizeof big + 1);
    ck_assert(t.data[0] == '<' && t.data[t.len - 1] == '>' && t.data[t.len] == '\0');
    hylo_text_free(&t);
}
END_TEST

/* ---- typed reads -------------------------------------------------------------------------- */

START_TEST(read_int_rules)
{
    cJSON *root = parse("{\"frac\": 2048.5, \"str\": \"2048\", \"big\": 1152921504606846976,"
                        " \"whole\": 2048.0, \"limit\": 9007199254740992, \"neg\": -3,"
                        " \"nul\": null, \"bool\": true}");
    hylo_error err = {0};
    const hylo_json_reader r = {root, "rope_scaling.", "t.json", &err};
    int64_t v = 7;
    bool found = false;
    expect_error(hylo_json_read_int(&r, "frac", &v, &found), &err, HYLO_ERR_CONFIG,
                 "t.json: field 'rope_scaling.frac': expected an integer (at most 2^53 in "
                 "magnitude), got the number 2048.5");
    expect_error(hylo_json_read_int(&r, "str", &v, NULL), &err, HYLO_ERR_CONFIG,
                 "got the string \"2048\"");
    expect_error(hylo_json_read_int(&r, "big", &v, NULL), &err, HYLO_ERR_CONFIG,
                 "'rope_scaling.big': expected an integer");
    expect_error(hylo_json_read_int(&r, "bool", &v, NULL), &err, HYLO_ERR_CONFIG, "got true");
    ck_assert_int_eq(v, 7); /* untouched by failures */
    ck_assert_ok(hylo_json_read_int(&r, "whole", &v, &found), &err);
    ck_assert(found);
    ck_assert_int_eq(v, 2048);
    ck_assert_ok(hylo_json_read_int(&r, "limit", &v, NULL), &err);
    ck_assert_int_eq(v, 9007199254740992LL);
    ck_assert_ok(hylo_json_read_int(&r, "neg", &v, NULL), &err);
    ck_assert_int_eq(v, -3);
    /* null and absent both read as absent and leave the value alone */
    ck_assert_ok(hylo_json_read_int(&r, "nul", &v, &found), &err);
    ck_assert(!found);
    ck_assert_ok(hylo_json_read_int(&r, "missing", &v, &found), &err);
    ck_assert(!found);
    ck_assert_int_eq(v, -3);
    /* ... but lookup returns the null as is */
    const cJSON *item;
    ck_assert_ok(hylo_json_lookup(&r, "nul", &item), &err);
    ck_assert(cJSON_IsNull(item));
    ck_assert_ok(hylo_json_member(&r, "nul", &item), &err);
    ck_assert_ptr_null(item);
    cJSON_Delete(root);
}
END_TEST

START_TEST(read_other_types)
{
    cJSON *root = parse("{\"d\": 1e-5, \"b\": false, \"s\": \"silu\", \"n\": 3, \"arr\": [1],"
                        " \"obj\": {}}");
    hylo_error err = {0};
    const hylo_json_reader r = {root, "", "t.json", &err};
    double d = 0.0;
    bool b = true, found = false;
    const char *s = NULL;
    ck_assert_ok(hylo_json_read_double(&r, "d", &d, &found), &err);
    ck_assert(found && d == 1e-5);
    ck_assert_ok(hylo_json_read_bool(&r, "b", &b, &found), &err);
    ck_assert(found && !b);
    ck_assert_ok(hylo_json_read_string(&r, "s", &s, &found), &err);
    ck_assert(found);
    ck_assert_str_eq(s, "silu");
    ck_assert_ok(hylo_json_read_double(&r, "n", &d, NULL), &err);
    ck_assert(d == 3.0);
    expect_error(hylo_json_read_double(&r, "s", &d, NULL), &err, HYLO_ERR_CONFIG,
                 "field 's': expected a finite number, got the string \"silu\"");
    expect_error(hylo_json_read_bool(&r, "n", &b, NULL), &err, HYLO_ERR_CONFIG,
                 "expected true or false, got the number 3");
    expect_error(hylo_json_read_string(&r, "arr", &s, NULL), &err, HYLO_ERR_CONFIG,
                 "expected a string, got an array");
    expect_error(hylo_json_read_string(&r, "obj", &s, NULL), &err, HYLO_ERR_CONFIG,
                 "got an object");
    cJSON_Delete(root);
}
END_TEST

START_TEST(duplicate_keys_rejected)
{
    cJSON *root = parse("{\"a\": 1, \"b\": 2, \"a\": 1}");
    hylo_error err = {0};
    const hylo_json_reader r = {root, "x.", "t.json", &err};
    int64_t v = 0;
    expect_error(hylo_json_read_int(&r, "a", &v, NULL), &err, HYLO_ERR_CONFIG,
                 "t.json: field 'x.a' appears twice");
    const cJSON *item;
    expect_error(hylo_json_lookup(&r, "a", &item), &err, HYLO_ERR_CONFIG, "appears twice");
    ck_assert_ok(hylo_json_read_int(&r, "b", &v, NULL), &err);
    ck_assert_int_eq(v, 2);
    cJSON_Delete(root);
}
END_TEST

/* ---- parsing and files -------------------------------------------------------------------- */

START_TEST(parse_errors_name_the_line)
{
    cJSON *root = (cJSON *)1;
    hylo_error err = {0};
    const char *bad = "{\n  \"a\": 1,\n  \"b\": ?\n}\n";
    expect_error(hylo_json_parse_object(bad, strlen(bad), "c.json", "fields", &root, &err), &err,
                 HYLO_ERR_FORMAT, "c.json: invalid JSON at byte 19 (line 3)");
    ck_assert_ptr_null(root);
    const char *trailing = "{}\n\n  x";
    expect_error(hylo_json_parse_object(trailing, strlen(trailing), "c.json", "fields", &root,
                                        &err),
                 &err, HYLO_ERR_FORMAT, "unexpected data after the JSON value at byte 6 (line 3)");
    expect_error(hylo_json_parse_object("", 0, "c.json", "fields", &root, &err), &err,
                 HYLO_ERR_FORMAT, "c.json: empty, not JSON");
    expect_error(hylo_json_parse_object("[1]", 3, "c.json", "fields such as 'model_type'", &root,
                                        &err),
                 &err, HYLO_ERR_CONFIG,
                 "c.json: expected a JSON object with fields such as 'model_type', got an array");
    /* Only the first len bytes count; trailing whitespace is fine. */
    ck_assert_ok(hylo_json_parse_object("{\"a\": 1} \r\n\tjunk", 12, "c.json", "fields", &root,
                                        &err),
                 &err);
    ck_assert(cJSON_IsObject(root));
    cJSON_Delete(root);
}
END_TEST

START_TEST(read_file_limits)
{
    char *dir = hylo_test_tmpdir("read");
    char *path = hylo_test_join(dir, "a.json");
    char *text = (char *)1;
    size_t len = 99;
    hylo_error err = {0};
    expect_error(hylo_json_read_file(path, 100, &text, &len, &err), &err, HYLO_ERR_IO,
                 "cannot open");
    ck_assert_ptr_null(text);
    expect_error(hylo_json_read_file(dir, 100, &text, &len, &err), &err, HYLO_ERR_IO, dir);
    hylo_test_write_file(path, "", 0);
    ck_assert_ok(hylo_json_read_file(path, 100, &text, &len, &err), &err);
    ck_assert_uint_eq(len, 0);
    ck_assert_str_eq(text, "");
    free(text);
    /* exactly at the limit, over several reads */
    char body[10000];
    memset(body, 'x', sizeof body);
    hylo_test_write_file(path, body, sizeof body);
    ck_assert_ok(hylo_json_read_file(path, sizeof body, &text, &len, &err), &err);
    ck_assert_uint_eq(len, sizeof body);
    ck_assert(memcmp(text, body, sizeof body) == 0 && text[len] == '\0');
    free(text);
    expect_error(hylo_json_read_file(path, sizeof body - 1, &text, &len, &err), &err,
                 HYLO_ERR_FORMAT, "more than 9999 bytes");
    ck_assert_ptr_null(text);
    free(path);
    free(dir);
}
END_TEST

/* ---- rope objects ------------------------------------------------------------------------- */

/* Writes `rope` as the value of "rope_scaling" and reads it back through hylo_json_read_rope. */
static hylo_rope_config rope_round_trip(const hylo_rope_config *rope, int64_t max_position,
                                        char **text)
{
    hylo_text t = {0};
    bool first = true;
    hylo_text_put(&t, "{\n", 2);
    hylo_json_put_key(&t, &first, 2, "rope_scaling");
    hylo_json_put_rope(&t, 2, rope, max_position);
    hylo_text_put(&t, "\n}\n", 3);
    ck_assert(!t.failed);
    cJSON *root = parse(t.data);
    hylo_error err = {0};
    const hylo_json_reader top = {root, "", "t.json", &err};
    hylo_rope_config back;
    memset(&back, 0, sizeof back);
    back.theta = 123.0;
    const cJSON *obj;
    ck_assert_ok(hylo_json_member(&top, "rope_scaling", &obj), &err);
    if (obj) {
        const hylo_json_reader r = {obj, "rope_scaling.", "t.json", &err};
        ck_assert_ok(hylo_json_read_rope(&r, max_position, &back), &err);
        ck_assert(back.theta == 123.0); /* theta is the caller's */
    }
    cJSON_Delete(root);
    *text = t.data;
    return back;
}

START_TEST(rope_both_ways)
{
    char *text;
    hylo_rope_config def = {.type = HYLO_ROPE_DEFAULT, .theta = 1e4, .factor = 1.0};
    rope_round_trip(&def, 2048, &text);
    ck_assert_str_eq(text, "{\n  \"rope_scaling\": null\n}\n");
    free(text);

    hylo_rope_config llama3 = {.type = HYLO_ROPE_LLAMA3, .theta = 123.0, .factor = 32.0,
                               .low_freq_factor = 1.0, .high_freq_factor = 4.0,
                               .original_max_position = 8192, .beta_fast = 32.0,
                               .beta_slow = 1.0, .truncate = true};
    hylo_rope_config back = rope_round_trip(&llama3, 131072, &text);
    ck_assert_str_eq(text, "{\n  \"rope_scaling\": {\n"
                           "    \"factor\": 32.0,\n"
                           "    \"high_freq_factor\": 4.0,\n"
                           "    \"low_freq_factor\": 1.0,\n"
                           "    \"original_max_position_embeddings\": 8192,\n"
                           "    \"rope_type\": \"llama3\"\n"
                           "  }\n}\n");
    ck_assert_rope_eq(&back, &llama3);
    free(text);

    /* yarn leaves out original_max_position_embeddings when it equals max_position */
    hylo_rope_config yarn = {.type = HYLO_ROPE_YARN, .theta = 123.0, .factor = 4.0,
                             .original_max_position = 32768, .beta_fast = 32.0,
                             .beta_slow = 1.0, .mscale = 0.707, .truncate = false};
    back = rope_round_trip(&yarn, 32768, &text);
    ck_assert_ptr_null(strstr(text, "original_max_position_embeddings"));
    ck_assert_ptr_nonnull(strstr(text, "\"truncate\": false"));
    ck_assert_rope_eq(&back, &yarn);
    free(text);
    back = rope_round_trip(&yarn, 131072, &text);
    ck_assert_ptr_nonnull(strstr(text, "\"original_max_position_embeddings\": 32768"));
    ck_assert_int_eq(back.original_max_position, 32768);
    free(text);

    /* a missing required field names the prefix */
    cJSON *root = parse("{\"type\": \"linear\"}");
    hylo_error err = {0};
    const hylo_json_reader r = {root, "mla.rope_scaling.", "h.json", &err};
    expect_error(hylo_json_read_rope(&r, 2048, &back), &err, HYLO_ERR_CONFIG,
                 "h.json: field 'mla.rope_scaling.factor' is required for rope type \"linear\"");
    cJSON_Delete(root);
}
END_TEST

/* ---- atomic files ------------------------------------------------------------------------- */

START_TEST(atomic_write_text)
{
    char *dir = hylo_test_tmpdir("atomic");
    char *path = hylo_test_join(dir, "out.json");
    hylo_error err = {0};
    hylo_text t = {0};
    hylo_text_printf(&t, "{\"v\": %d}\n", 1);
    ck_assert_ok(hylo_atomic_write_text(path, &t, &err), &err);
    char first[64];
    ck_assert_uint_eq(hylo_test_dir_entries(dir, first, sizeof first), 1); /* no temporary */
    ck_assert_str_eq(first, "out.json");
    ck_assert_file_is(path, "{\"v\": 1}\n");
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    mode_t mask = umask(0);
    umask(mask);
    ck_assert_int_eq(sb.st_mode & 0777, 0666 & ~mask);

    /* A buffer that failed to grow writes nothing and leaves the old file in place. */
    t.failed = true;
    expect_error(hylo_atomic_write_text(path, &t, &err), &err, HYLO_ERR_NOMEM, path);
    ck_assert_uint_eq(hylo_test_dir_entries(dir, NULL, 0), 1);
    ck_assert_file_is(path, "{\"v\": 1}\n");
    hylo_text_free(&t);

    /* An empty buffer makes an empty file. */
    ck_assert_ok(hylo_atomic_write_text(path, &t, &err), &err);
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_int_eq(sb.st_size, 0);
    free(path);
    free(dir);
}
END_TEST

START_TEST(atomic_abort_and_failures)
{
    char *dir = hylo_test_tmpdir("abort");
    char *path = hylo_test_join(dir, "f.bin");
    hylo_error err = {0};
    hylo_test_write_file(path, "old", 3);
    hylo_atomic_file f;
    ck_assert_ok(hylo_atomic_open(&f, path, &err), &err);
    ck_assert_uint_eq(hylo_test_dir_entries(dir, NULL, 0), 2); /* the temporary beside it */
    ck_assert_ok(hylo_atomic_write(&f, "new", 3, &err), &err);
    ck_assert_ok(hylo_atomic_sync(&f, &err), &err);
    hylo_atomic_abort(&f);
    ck_assert_uint_eq(hylo_test_dir_entries(dir, NULL, 0), 1);
    ck_assert_file_is(path, "old");

    /* publish replaces the old file */
    ck_assert_ok(hylo_atomic_open(&f, path, &err), &err);
    ck_assert_ok(hylo_atomic_write(&f, "new", 3, &err), &err);
    ck_assert_ok(hylo_atomic_sync(&f, &err), &err);
    ck_assert_ok(hylo_atomic_publish(&f, &err), &err);
    ck_assert_ptr_null(f.path);
    ck_assert_ptr_null(f.tmp);
    ck_assert_file_is(path, "new");
    ck_assert_uint_eq(hylo_test_dir_entries(dir, NULL, 0), 1);

    /* a missing directory, a path naming a directory, a rename over a directory */
    char *missing = hylo_test_join(dir, "nope/f.bin");
    hylo_text t = {0};
    hylo_text_put(&t, "x", 1);
    expect_error(hylo_atomic_write_text(missing, &t, &err), &err, HYLO_ERR_IO, missing);
    char *slash = hylo_test_join(dir, "sub/");
    expect_error(hylo_atomic_write_text(slash, &t, &err), &err, HYLO_ERR_USAGE,
                 "names a directory");
    char *blocked = hylo_test_join(dir, "blocked");
    ck_assert_int_eq(mkdir(blocked, 0755), 0);
    expect_error(hylo_atomic_write_text(blocked, &t, &err), &err, HYLO_ERR_IO, "cannot rename");
    ck_assert_uint_eq(hylo_test_dir_entries(dir, NULL, 0), 2);
    hylo_text_free(&t);
    free(blocked);
    free(slash);
    free(missing);
    free(path);
    free(dir);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("json");
    TCase *write = tcase_create("write");
    tcase_add_test(write, format_double_like_python);
    tcase_add_test(write, members_and_escapes);
    suite_add_tcase(s, write);
    TCase *read = tcase_create("read");
    tcase_add_test(read, read_int_rules);
    tcase_add_test(read, read_other_types);
    tcase_add_test(read, duplicate_keys_rejected);
    tcase_add_test(read, parse_errors_name_the_line);
    tcase_add_test(read, read_file_limits);
    tcase_add_test(read, rope_both_ways);
    suite_add_tcase(s, read);
    TCase *atomic = tcase_create("atomic");
    tcase_add_test(atomic, atomic_write_text);
    tcase_add_test(atomic, atomic_abort_and_failures);
    suite_add_tcase(s, atomic);
    return s;
}

HYLO_TEST_MAIN
