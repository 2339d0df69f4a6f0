/* test_golden.c: golden-file regression. Every case of golden/cases/ (made by `make golden`)
 * is rerun through the `hylo` CLI as its manifest says, once per backend the manifest lists
 * (--backend ref and --backend cpu), and each trace is compared with the expected one by
 * `hylo diff` under the manifest's tolerances; on a mismatch the diff table, which names the
 * first divergent tensor in forward order, is printed. */
#include <dirent.h>
#include <math.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "io/json.h"
#include "testutil.h"

static const char *golden_dir(void)
{
    static char path[1024];
    const char *root = getenv("HYLO_TEST_ROOT");
    snprintf(path, sizeof path, "%s/golden/cases", root ? root : ".");
    return path;
}

#define MAX_BACKENDS 4

/* The manifest's "generate" count and "backends" list (names copied into backends). */
static int64_t read_manifest(const char *manifest, char backends[MAX_BACKENDS][16], int *count)
{
    char *text;
    size_t len;
    cJSON *root = NULL;
    hylo_error err = {0};
    ck_assert_ok(hylo_json_read_file(manifest, 1 << 20, &text, &len, &err), &err);
    ck_assert_ok(hylo_json_parse_object(text, len, manifest, "a golden manifest", &root, &err), &err);
    free(text);
    const hylo_json_reader r = {root, "", manifest, &err};
    int64_t generate = -1;
    ck_assert_ok(hylo_json_read_int(&r, "generate", &generate, NULL), &err);
    const cJSON *list = NULL;
    ck_assert_ok(hylo_json_member(&r, "backends", &list), &err);
    ck_assert_msg(cJSON_IsArray(list), "%s: 'backends' is not an array", manifest);
    *count = 0;
    for (const cJSON *e = list->child; e; e = e->next) {
        ck_assert_msg(cJSON_IsString(e) && *count < MAX_BACKENDS, "%s: bad 'backends'", manifest);
        snprintf(backends[(*count)++], 16, "%s", e->valuestring);
    }
    cJSON_Delete(root);
    ck_assert_int_ge(generate, 0);
    ck_assert_int_ge(*count, 2);
    return generate;
}

static int run(const char *cmd)
{
    int raw = system(cmd);
    ck_assert_msg(raw != -1 && WIFEXITED(raw), "could not run: %s", cmd);
    return WEXITSTATUS(raw);
}

/* One case on one backend: run, then diff against the expected trace. */
static void check_case_on(const char *name, const char *dir, const char *manifest,
                          int64_t generate, const char *backend)
{
    char cmd[6000], stem[300];
    snprintf(stem, sizeof stem, "%s.%s", name, backend);
    snprintf(cmd, sizeof cmd,
             "%s run --backend %s --model %s/model --tokens-file %s/tokens.txt --generate %lld "
             "--trace %s.trace.safetensors > %s.run.txt 2>&1",
             hylo_test_cli(), backend, dir, dir, (long long)generate, stem, stem);
    ck_assert_msg(run(cmd) == 0, "golden case %s: hylo run failed (see %s.run.txt)", stem, stem);
    snprintf(cmd, sizeof cmd,
             "%s diff %s/trace.safetensors %s.trace.safetensors --tolerances %s > %s.diff.txt",
             hylo_test_cli(), dir, stem, manifest, stem);
    int rc = run(cmd);
    if (rc != 0) {
        size_t len;
        char diff_path[320];
        snprintf(diff_path, sizeof diff_path, "%s.diff.txt", stem);
        char *table = (char *)hylo_test_read_file(diff_path, &len);
        printf("golden case %s on the %s backend differs from the reference:\n%s", name, backend,
               table);
        free(table);
    }
    ck_assert_msg(rc == 0, "golden case %s: hylo diff exit %d (table above)", stem, rc);
}

/* The manifest's optional section `key` ("upcycle", "losses") as a string field `field`;
 * false when the section is absent. */
static bool manifest_field(const char *manifest, const char *key, const char *field, char *out,
                           size_t size)
{
    char *text;
    size_t len;
    cJSON *root = NULL;
    hylo_error err = {0};
    ck_assert_ok(hylo_json_read_file(manifest, 1 << 20, &text, &len, &err), &err);
    ck_assert_ok(hylo_json_parse_object(text, len, manifest, "a golden manifest", &root, &err), &err);
    free(text);
    const cJSON *section = cJSON_GetObjectItemCaseSensitive(root, key);
    const cJSON *value = section ? cJSON_GetObjectItemCaseSensitive(section, field) : NULL;
    bool found = cJSON_IsString(value);
    if (found) snprintf(out, size, "%s", value->valuestring);
    cJSON_Delete(root);
    return found;
}

/* Reruns `hylo upcycle` on the teacher case and compares the weights it writes with the
 * stored ones under the manifest's tolerances. */
static void check_upcycle(const char *name, const char *dir, const char *manifest)
{
    char teacher[256], args[512], cmd[6000];
    if (!manifest_field(manifest, "upcycle", "teacher_case", teacher, sizeof teacher)) return;
    ck_assert(manifest_field(manifest, "upcycle", "args", args, sizeof args));
    snprintf(cmd, sizeof cmd,
             "rm -rf %s.upcycled && %s upcycle --teacher %s/%s/model --out %s.upcycled %s "
             "> %s.upcycle.txt 2>&1 && %s diff %s/model/model.safetensors "
             "%s.upcycled/model.safetensors --tolerances %s > %s.weights.txt",
             name, hylo_test_cli(), golden_dir(), teacher, name, args, name, hylo_test_cli(), dir,
             name, manifest, name);
    int rc = run(cmd);
    if (rc != 0) {
        size_t len;
        char path[256];
        snprintf(path, sizeof path, "%s.weights.txt", name);
        char *table = (char *)hylo_test_read_file(path, &len);
        printf("golden case %s: the upcycled weights differ:\n%s", name, table);
        free(table);
    }
    ck_assert_msg(rc == 0, "golden case %s: upcycle or weight diff failed (exit %d)", name, rc);
}

/* Every number of `got` within relative `rtol` of the same-placed number of `want`, and the
 * text between numbers identical. */
static void assert_same_numbers(const char *want, const char *got, double rtol, const char *what)
{
    const char *a = want, *b = got;
    while (*a && *b) {
        char *ea = (char *)a, *eb = (char *)b;
        double x = 0.0, y = 0.0;
        if (strchr("-0123456789", *a) && strchr("-0123456789", *b)) {
            x = strtod(a, &ea);
            y = strtod(b, &eb);
        }
        if (ea != a && eb != b) { /* a number on both sides ("-" alone is text) */
            ck_assert_msg(fabs(x - y) <= rtol * fmax(fabs(x), 1e-300) || x == y,
                          "%s: %.17g vs expected %.17g", what, y, x);
            a = ea;
            b = eb;
            continue;
        }
        ck_assert_msg(*a == *b, "%s: the text differs near '%.40s'", what, b);
        a++;
        b++;
    }
    ck_assert_msg(*a == *b, "%s: lengths differ", what);
}

/* Reruns `hylo kd-eval` (from golden/cases, as the manifest says) and compares its numbers. */
static void check_losses(const char *name, const char *dir, const char *manifest)
{
    char teacher[256], expected[256], cmd[6000], out[1400];
    if (!manifest_field(manifest, "losses", "teacher_case", teacher, sizeof teacher)) return;
    ck_assert(manifest_field(manifest, "losses", "expected", expected, sizeof expected));
    char cwd[1024];
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
    snprintf(out, sizeof out, "%s/%s.losses.json", cwd, name);
    snprintf(cmd, sizeof cmd,
             "cd %s && %s kd-eval --teacher %s/model --student %s/model --tokens-file "
             "%s/tokens.txt --json > %s",
             golden_dir(), hylo_test_cli(), teacher, name, name, out);
    ck_assert_msg(run(cmd) == 0, "golden case %s: kd-eval failed", name);
    char path[1500];
    snprintf(path, sizeof path, "%s/%s", dir, expected);
    size_t len;
    char *want = (char *)hylo_test_read_file(path, &len);
    char *got = (char *)hylo_test_read_file(out, &len);
    assert_same_numbers(want, got, 1e-9, name);
    free(want);
    free(got);
}

static void check_case(const char *name)
{
    char dir[1200], manifest[1300], backends[MAX_BACKENDS][16];
    int count;
    snprintf(dir, sizeof dir, "%s/%s", golden_dir(), name);
    snprintf(manifest, sizeof manifest, "%s/manifest.json", dir);
    int64_t generate = read_manifest(manifest, backends, &count);
    for (int b = 0; b < count; b++) check_case_on(name, dir, manifest, generate, backends[b]);
    check_upcycle(name, dir, manifest);
    check_losses(name, dir, manifest);
}

START_TEST(every_golden_case_matches)
{
    DIR *d = opendir(golden_dir());
    ck_assert_msg(d != NULL, "no golden cases in %s (run make golden)", golden_dir());
    int cases = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        check_case(e->d_name);
        cases++;
    }
    closedir(d);
    ck_assert_int_ge(cases, 4);
}
END_TEST

/* The comparison itself must be able to fail: a perturbed trace is caught and the first
 * divergent tensor is named. */
START_TEST(diff_names_the_first_divergent_tensor)
{
    char expected[1300];
    snprintf(expected, sizeof expected, "%s/tiny-hybrid-m2/trace.safetensors", golden_dir());
    hylo_error err = {0};
    hylo_safetensors *st = NULL;
    ck_assert_ok(hylo_safetensors_open(expected, &st, &err), &err);
    size_t n = hylo_safetensors_count(st);
    hylo_tensor_spec *specs = calloc(n, sizeof *specs);
    const void **data = calloc(n, sizeof *data);
    float **copies = calloc(n, sizeof *copies);
    const char *victim = "pos0.layers.1.mamba.y";
    for (size_t i = 0; i < n; i++) {
        const hylo_tensor_view *v = hylo_safetensors_at(st, i);
        specs[i] = (hylo_tensor_spec){v->name, v->dtype, v->ndim, {0}};
        memcpy(specs[i].shape, v->shape, sizeof specs[i].shape);
        copies[i] = malloc(v->nbytes + 4);
        memcpy(copies[i], v->data, v->nbytes);
        if (strcmp(v->name, victim) == 0) copies[i][3] += 0.01f; /* one element */
        data[i] = copies[i];
    }
    ck_assert_ok(hylo_safetensors_write("perturbed.safetensors", specs, data, n, NULL, &err), &err);
    char cmd[4000];
    snprintf(cmd, sizeof cmd, "%s diff %s perturbed.safetensors > perturbed.txt", hylo_test_cli(),
             expected);
    ck_assert_int_eq(run(cmd), 1);
    size_t len;
    char *table = (char *)hylo_test_read_file("perturbed.txt", &len);
    char want[256];
    snprintf(want, sizeof want, "first divergent tensor: %s\n", victim);
    ck_assert_msg(strstr(table, want) != NULL, "%s", table);
    free(table);
    for (size_t i = 0; i < n; i++) free(copies[i]);
    free(copies);
    free(specs);
    free(data);
    hylo_safetensors_close(st);
}
END_TEST

/* The README's last bisection step: one layer rerun on the traced input of a golden case gives
 * that layer's part of the expected trace (run-layer, then diff --subset). */
START_TEST(one_layer_reruns_in_isolation)
{
    char dir[1200], cmd[6000];
    snprintf(dir, sizeof dir, "%s/tiny-hybrid-gdn", golden_dir());
    snprintf(cmd, sizeof cmd,
             "%s run-layer --model %s/model --layer 1 --input %s/trace.safetensors "
             "--input-name pos0.layers.0.out --trace layer1.safetensors > /dev/null && "
             "%s diff layer1.safetensors %s/trace.safetensors --subset --tolerances %s/manifest.json "
             "> layer1.txt",
             hylo_test_cli(), dir, dir, hylo_test_cli(), dir, dir);
    ck_assert_int_eq(run(cmd), 0);
    size_t len;
    char *table = (char *)hylo_test_read_file("layer1.txt", &len);
    ck_assert_ptr_nonnull(strstr(table, "pos0.layers.1.gdn.state"));
    ck_assert_ptr_nonnull(strstr(table, "diff: 13 passed, 0 failed"));
    free(table);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("golden");
    TCase *tc = tcase_create("regression");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, every_golden_case_matches);
    tcase_add_test(tc, diff_names_the_first_divergent_tensor);
    tcase_add_test(tc, one_layer_reruns_in_isolation);
    suite_add_tcase(s, tc);
    return s;
}

HYLO_TEST_MAIN
