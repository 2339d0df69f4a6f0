/* testutil.h: shared helpers of the Check test programs. */
#ifndef HYLO_TESTUTIL_H
#define HYLO_TESTUTIL_H

#include <check.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hylo.h"

/* Each tests/test_*.c defines `Suite *make_suite(void)` and ends with HYLO_TEST_MAIN. */
#define HYLO_TEST_MAIN                                                                          \
    int main(void) { return hylo_test_run(make_suite()); }
int hylo_test_run(Suite *suite);

/* NMSE = sum (a - r)^2 / sum r^2 (spec sec. 11); +Inf when any a is NaN/Inf where r is finite,
 * and when r is all zero but a is not. */
double hylo_nmse(const float *a, const float *r, size_t n);
double hylo_max_abs_diff(const float *a, const float *r, size_t n);
/* Fails the test unless NMSE(a, r) <= tol, printing both metrics and `what`. */
#define ck_assert_nmse(a, r, n, tol, what)                                                      \
    do {                                                                                        \
        double nmse_ = hylo_nmse((a), (r), (n));                                                \
        ck_assert_msg(nmse_ <= (tol), "%s: NMSE %.3e > %.1e (max abs %.3e)", (what), nmse_,     \
                      (double)(tol), hylo_max_abs_diff((a), (r), (n)));                         \
    } while (0)
/* Fails with the error message when `call` does not return HYLO_OK. */
#define ck_assert_ok(call, err)                                                                 \
    do {                                                                                        \
        hylo_status st_ = (call);                                                               \
        ck_assert_msg(st_ == HYLO_OK, "%s failed: %s", #call, (err)->message);                  \
    } while (0)

/* Deterministic test randomness (splitmix64). */
typedef struct { uint64_t s; } hylo_test_rng;
double hylo_test_uniform(hylo_test_rng *rng);                 /* [0, 1) */
double hylo_test_normal(hylo_test_rng *rng);
void hylo_test_fill_normal(hylo_test_rng *rng, float *x, size_t n, double std);

/* tokens[T] uniform in [0, V), from `seed`. */
void hylo_test_random_tokens(int32_t *tokens, int64_t T, int64_t V, uint64_t seed);

/* A fresh empty directory under the current (scratch) directory; caller frees the string. */
char *hylo_test_tmpdir(const char *stem);
/* "dir/name", malloc'd. */
char *hylo_test_join(const char *dir, const char *name);
/* The number of entries of `dir` (without . and ..); the first one's name goes to `first`. */
size_t hylo_test_dir_entries(const char *dir, char *first, size_t first_size);
/* Path of the hylo binary built with the tests (for CLI tests). */
const char *hylo_test_cli(void);
/* `hylo ARGS` run through the shell from the current directory: exit status and the captured
 * stdout and stderr (malloc'd). */
typedef struct {
    int status;
    char *out, *err;
} hylo_cli_result;
hylo_cli_result hylo_test_cli_run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Fails unless the run exited with `status` and (if given) stderr contains `in_stderr`; frees
 * the captured output. */
void hylo_test_cli_expect(hylo_cli_result r, int status, const char *in_stderr);
/* A copy of checkpoint directory `src` in a fresh directory (its config.json and
 * hybrid_config.json, and its tensors through hylo_checkpoint_write with `max_shard_bytes`)
 * with one change to the tensor `target`: without `copy_as`, `edit` changes its spec or its
 * (F32) data, or it is dropped when `edit` is NULL; with `copy_as`, it is kept as it is and a
 * copy named `copy_as`, passed through `edit` when not NULL, is added after every other
 * tensor. Returns the new directory (malloc'd). */
typedef void (*hylo_test_tensor_edit)(hylo_tensor_spec *spec, float *data);
char *hylo_test_edit_checkpoint(const char *src, const char *target, hylo_test_tensor_edit edit,
                                const char *copy_as, uint64_t max_shard_bytes);
/* Whether the file `name` has the same bytes in directories a and b (both must exist). */
bool hylo_test_same_file(const char *dir_a, const char *dir_b, const char *name);
/* Reads a whole file; returns malloc'd bytes (NUL-terminated) and sets *len. */
unsigned char *hylo_test_read_file(const char *path, size_t *len);
void hylo_test_write_file(const char *path, const void *bytes, size_t len);

#endif
