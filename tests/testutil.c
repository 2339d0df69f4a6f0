/* testutil.c: shared helpers of the Check test programs. */
#include "testutil.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>
#include <sys/wait.h>
#include <unistd.h>

int hylo_test_run(Suite *suite)
{
    SRunner *runner = srunner_create(suite);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

double hylo_nmse(const float *a, const float *r, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i]) && isfinite(r[i])) return INFINITY;
        if (isnan(a[i]) || isnan(r[i])) return INFINITY;
        double d = (double)a[i] - (double)r[i];
        num += d * d;
        den += (double)r[i] * (double)r[i];
    }
    if (den == 0.0) return num == 0.0 ? 0.0 : INFINITY;
    return num / den;
}

double hylo_max_abs_diff(const float *a, const float *r, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)r[i]);
        if (isnan(d)) return INFINITY;
        if (d > m) m = d;
    }
    return m;
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double hylo_test_uniform(hylo_test_rng *rng)
{
    return (double)(splitmix64(&rng->s) >> 11) * 0x1p-53;
}

double hylo_test_normal(hylo_test_rng *rng)
{
    double u1 = hylo_test_uniform(rng), u2 = hylo_test_uniform(rng);
    return sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2);
}

void hylo_test_fill_normal(hylo_test_rng *rng, float *x, size_t n, double std)
{
    for (size_t i = 0; i < n; i++) x[i] = (float)(std * hylo_test_normal(rng));
}

void hylo_test_random_tokens(int32_t *tokens, int64_t T, int64_t V, uint64_t seed)
{
    hylo_test_rng rng = {seed};
    for (int64_t t = 0; t < T; t++) tokens[t] = (int32_t)(hylo_test_uniform(&rng) * (double)V);
}

char *hylo_test_tmpdir(const char *stem)
{
    static unsigned counter; /* tests are single-threaded per process */
    char buf[512];
    for (;;) {
        snprintf(buf, sizeof buf, "%s-%d-%u", stem, (int)getpid(), counter++);
        if (mkdir(buf, 0755) == 0) break;
    }
    char *out = strdup(buf);
    ck_assert_ptr_nonnull(out);
    return out;
}

const char *hylo_test_cli(void)
{
    static char path[1024];
    const char *build = getenv("HYLO_TEST_BUILD");
    snprintf(path, sizeof path, "%s/hylo", build ? build : "build");
    return path;
}

unsigned char *hylo_test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)size + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(fread(buf, 1, (size_t)size, f), (size_t)size);
    buf[size] = 0;
    fclose(f);
    *len = (size_t)size;
    return buf;
}

void hylo_test_write_file(const char *path, const void *bytes, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot create %s", path);
    ck_assert_uint_eq(fwrite(bytes, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

bool hylo_test_same_file(const char *dir_a, const char *dir_b, const char *name)
{
    char *pa = hylo_test_join(dir_a, name), *pb = hylo_test_join(dir_b, name);
    size_t la, lb;
    unsigned char *a = hylo_test_read_file(pa, &la), *b = hylo_test_read_file(pb, &lb);
    bool same = la == lb && memcmp(a, b, la) == 0;
    free(a);
    free(b);
    free(pa);
    free(pb);
    return same;
}

char *hylo_test_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    ck_assert_ptr_nonnull(p);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

size_t hylo_test_dir_entries(const char *dir, char *first, size_t first_size)
{
    DIR *d = opendir(dir);
    ck_assert_msg(d != NULL, "cannot open directory %s", dir);
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (n == 0 && first) snprintf(first, first_size, "%s", e->d_name);
        n++;
    }
    closedir(d);
    return n;
}

hylo_cli_result hylo_test_cli_run(const char *fmt, ...)
{
    char args[2048], cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s %s >cli.out 2>cli.err", hylo_test_cli(), args);
    int raw = system(cmd);
    ck_assert_msg(raw != -1 && WIFEXITED(raw), "could not run: %s", cmd);
    hylo_cli_result r = {WEXITSTATUS(raw), NULL, NULL};
    size_t len;
    r.out = (char *)hylo_test_read_file("cli.out", &len);
    r.err = (char *)hylo_test_read_file("cli.err", &len);
    return r;
}

void hylo_test_cli_expect(hylo_cli_result r, int status, const char *in_stderr)
{
    ck_assert_msg(r.status == status, "exit %d, expected %d; stderr: %s", r.status, status, r.err);
    if (in_stderr)
        ck_assert_msg(strstr(r.err, in_stderr) != NULL, "stderr lacks '%s': %s", in_stderr, r.err);
    free(r.out);
    free(r.err);
}

/* Copies the file `name` of directory `src` into `dst` when it exists. */
static void copy_if_present(const char *src, const char *dst, const char *name)
{
    char *from = hylo_test_join(src, name), *to = hylo_test_join(dst, name);
    if (access(from, F_OK) == 0) {
        size_t len;
        unsigned char *bytes = hylo_test_read_file(from, &len);
        hylo_test_write_file(to, bytes, len);
        free(bytes);
    }
    free(from);
    free(to);
}

typedef struct {
    const void **data;
} edit_fill;

static hylo_status fill_copy(void *user, size_t i, void *dst, size_t nbytes, hylo_error *err)
{
    (void)err;
    memcpy(dst, ((const edit_fill *)user)->data[i], nbytes);
    return HYLO_OK;
}

char *hylo_test_edit_checkpoint(const char *src, const char *target, hylo_test_tensor_edit edit,
                                const char *copy_as, uint64_t max_shard_bytes)
{
    hylo_error err = {0};
    hylo_checkpoint *ck = NULL;
    ck_assert_ok(hylo_checkpoint_open(src, &ck, &err), &err);
    const size_t n = hylo_checkpoint_count(ck);
    size_t kept = 0;
    hylo_tensor_spec *specs = calloc(n + 1, sizeof *specs);
    const void **data = calloc(n + 1, sizeof *data);
    void **copies = calloc(n + 1, sizeof *copies);
    ck_assert(specs && data && copies);
    const hylo_tensor_view *found = NULL;
    for (size_t i = 0; i < n; i++) {
        const hylo_tensor_view *v = hylo_checkpoint_at(ck, i);
        hylo_tensor_spec s = {v->name, v->dtype, v->ndim, {0}};
        memcpy(s.shape, v->shape, sizeof s.shape);
        if (strcmp(v->name, target) == 0) {
            found = v;
            if (!copy_as && !edit) continue;
            if (!copy_as) {
                ck_assert_int_eq(v->dtype, HYLO_F32);
                copies[i] = malloc(v->nbytes + 64);
                ck_assert_ptr_nonnull(copies[i]);
                memcpy(copies[i], v->data, v->nbytes);
                edit(&s, copies[i]);
            }
        }
        specs[kept] = s;
        data[kept++] = copies[i] ? copies[i] : v->data;
    }
    ck_assert_msg(found != NULL, "%s has no tensor '%s'", src, target);
    if (copy_as) {
        hylo_tensor_spec s = {copy_as, found->dtype, found->ndim, {0}};
        memcpy(s.shape, found->shape, sizeof s.shape);
        copies[n] = malloc(found->nbytes + 64);
        ck_assert_ptr_nonnull(copies[n]);
        memcpy(copies[n], found->data, found->nbytes);
        if (edit) {
            ck_assert_int_eq(found->dtype, HYLO_F32);
            edit(&s, copies[n]);
        }
        specs[kept] = s;
        data[kept++] = copies[n];
    }
    char *dir = hylo_test_tmpdir("edited");
    edit_fill fill = {data};
    ck_assert_ok(hylo_checkpoint_write(dir, specs, kept, fill_copy, &fill, max_shard_bytes, NULL,
                                       &err), &err);
    copy_if_present(src, dir, "config.json");
    copy_if_present(src, dir, "hybrid_config.json");
    for (size_t i = 0; i <= n; i++) free(copies[i]);
    free(copies);
    free(specs);
    free(data);
    hylo_checkpoint_close(ck);
    return dir;
}
