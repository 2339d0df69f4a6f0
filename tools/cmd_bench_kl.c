/* cmd_bench_kl.c: `hylo bench-kl`: times the logit-free KL (values and both student gradients)
 * on random hidden states and heads, and reports its peak memory against the [T, V] fp32 logit
 * matrix it never builds. A benchmark, not a test. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "core/clock.h"

#define COMMAND "bench-kl"

/* x [n] uniform in [-1, 1) from a splitmix64 stream: logits h.W then have a standard
 * deviation of sqrt(D) / 3 (2.7 at D = 64), a realistic spread for softmaxes. */
static void fill_uniform(float *x, size_t n, uint64_t seed)
{
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        uint64_t z = (s += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        x[i] = (float)((double)(z >> 11) * 0x1p-52 - 1.0);
    }
}

typedef struct {
    float *hs, *ht, *ws, *wt;   /* [T, D], [T, D], [V, D], [V, D] */
    float *grad_h, *grad_w;     /* [T, D], [V, D]                 */
} bench_buffers;

/* Frees every buffer (NULL ones included). */
static void free_buffers(bench_buffers *b)
{
    free(b->hs);
    free(b->ht);
    free(b->ws);
    free(b->wt);
    free(b->grad_h);
    free(b->grad_w);
}

/* hs, ht [T, D] and ws, wt [V, D] random; grad_h [T, D] and grad_w [V, D] for the outputs. */
static bool alloc_buffers(bench_buffers *b, int64_t T, int64_t V, int64_t D, uint64_t seed)
{
    const size_t td = (size_t)(T * D), vd = (size_t)(V * D);
    b->hs = malloc(td * sizeof(float));
    b->ht = malloc(td * sizeof(float));
    b->ws = malloc(vd * sizeof(float));
    b->wt = malloc(vd * sizeof(float));
    b->grad_h = malloc(td * sizeof(float));
    b->grad_w = malloc(vd * sizeof(float));
    if (!b->hs || !b->ht || !b->ws || !b->wt || !b->grad_h || !b->grad_w) {
        free_buffers(b);
        return false;
    }
    fill_uniform(b->hs, td, seed * 4 + 1);
    fill_uniform(b->ht, td, seed * 4 + 2);
    fill_uniform(b->ws, vd, seed * 4 + 3);
    fill_uniform(b->wt, vd, seed * 4 + 4);
    return true;
}

/* hylo bench-kl: one timed call of hylo_kd_loss_logit_free with both gradients. */
int cmd_bench_kl(int argc, char **argv)
{
    cli_option opts[] = {
        {"--T", "N", "rows (tokens), default 65536", NULL},
        {"--V", "N", "vocabulary, default 128256", NULL},
        {"--D", "N", "hidden size of student and teacher, default 64", NULL},
        {"--chunk", "N", "rows per chunk, default 256", NULL},
        {"--tile", "N", "vocabulary entries per tile, default 2000", NULL},
        {"--seed", "S", "random seed of the inputs, default 0", NULL},
        {"--help", NULL, "show this help", NULL},
    };
    const size_t n = sizeof opts / sizeof opts[0];
    int rc = cli_begin(COMMAND,
                       "Times the logit-free KL with gradients (hylo_kd_loss_logit_free) on "
                       "random inputs; threads: OMP_NUM_THREADS.",
                       argc, argv, opts, n);
    if (rc != CLI_CONTINUE) return rc;
    int64_t T, V, D, chunk, tile, seed;
    if (!cli_int(COMMAND, opts, n, "--T", 1, INT32_MAX, 65536, &T) ||
        !cli_int(COMMAND, opts, n, "--V", 1, INT32_MAX, 128256, &V) ||
        !cli_int(COMMAND, opts, n, "--D", 1, 1 << 16, 64, &D) ||
        !cli_int(COMMAND, opts, n, "--chunk", 1, INT32_MAX, 256, &chunk) ||
        !cli_int(COMMAND, opts, n, "--tile", 1, INT32_MAX, 2000, &tile) ||
        !cli_int(COMMAND, opts, n, "--seed", 0, INT32_MAX, 0, &seed))
        return CLI_USAGE;
    bench_buffers b = {0};
    if (!alloc_buffers(&b, T, V, D, (uint64_t)seed)) {
        fprintf(stderr, "hylo %s: cannot allocate inputs of T %lld, V %lld, D %lld\n", COMMAND,
                (long long)T, (long long)V, (long long)D);
        return CLI_FAIL;
    }
    const double MiB = 1024.0 * 1024.0, logit_bytes = 4.0 * (double)T * (double)V;
    const double io_bytes = 4.0 * (double)D * (3.0 * (double)T + 3.0 * (double)V);
    printf("logit-free KL with dL/dh_S and dL/dW_S: T %lld, V %lld, D %lld (student and "
           "teacher), chunk %lld, tile %lld, %d threads\n",
           (long long)T, (long long)V, (long long)D, (long long)chunk, (long long)tile,
           omp_get_max_threads());
    printf("inputs + gradient outputs: %.1f MiB; a [T, V] fp32 logit matrix would take %.1f GiB\n",
           io_bytes / MiB, logit_bytes / (1024.0 * MiB));
    fflush(stdout);
    hylo_kd_side student = {b.hs, b.ws, D}, teacher = {b.ht, b.wt, D};
    hylo_kd_options opt = hylo_kd_options_default();
    opt.progress = "logit-free KL";
    hylo_kd_result res;
    hylo_error err = {0};
    const double t0 = hylo_seconds();
    hylo_status st = hylo_kd_loss_logit_free(&student, &teacher, NULL, T, V, chunk, tile, &opt,
                                             &res, b.grad_h, b.grad_w, &err);
    const double seconds = hylo_seconds() - t0;
    if (st != HYLO_OK) {
        free_buffers(&b);
        return cli_fail(COMMAND, &err);
    }
    /* each logit of both models is made twice (2 D flops), G goes back through two products */
    const double flops = 2.0 * (double)T * (double)V * (double)D * (2.0 * 2.0 + 2.0);
    const double rss = hylo_peak_rss_bytes();
    printf("KL (batchmean, B = 1) = %.6f\n", res.kl);
    printf("time %.1f s: %.3g logits/s per model, %.0f rows/s, %.2f GFLOP/s (double)\n", seconds,
           (double)T * (double)V / seconds, (double)T / seconds, flops / seconds * 1e-9);
    printf("peak RSS %.1f MiB = %.2f%% of the [T, V] fp32 logit matrix (%.1f GiB)\n", rss / MiB,
           100.0 * rss / logit_bytes, logit_bytes / (1024.0 * MiB));
    free_buffers(&b);
    return CLI_OK;
}
