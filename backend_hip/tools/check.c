/* check.c: hylo-hip-check, every op of the HIP backend against the reference of ref/ on fresh
 * random inputs (tools/validate_hip.sh runs it on the device machine).
 *
 *   hylo-hip-check [--seed N] [--models DIR...]
 *
 * Each case draws its inputs, weights and states from the seed and its name, uploads them,
 * fills every device output with NaN (so that an element a kernel never writes fails), runs
 * the HIP op and the ref function on the same values, and compares each output and updated
 * state by NMSE = sum (a - r)^2 / sum r^2 (spec sec. 11; a NaN or Inf where the reference is
 * finite fails). The cases run under every GEMM engine of the build (hipBLAS / cuBLAS and the
 * built-in tiled kernel). Limits: fp32 computation 1e-9 (the reference accumulates in double:
 * a different reduction order costs ~1e-14 per op, a wrong index > 1e-3); bf16 weights with
 * bf16-rounded activations 1e-4 for one projection and 1e-3 for a layer (a relative rounding
 * of 2^-9 per operand, over a few chained GEMMs); a bf16 GEMM against the reference on the same
 * rounded operands 1e-9. Each model directory given is run whole (prefill of 12 tokens, 3
 * decode steps) on hip and ref, logits compared: fp32 1e-8, bf16 weights 1e-2 (random tiny
 * models amplify rounding through every layer).
 * Prints one table; exit status 0 when every row passes, 1 otherwise. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "layers/hip_layers.h"
#include "layers/layers.h"
#include "losses/hip_losses.h"

#define LIMIT_F32 1e-9
#define LIMIT_BF16_OP 1e-4
#define LIMIT_BF16_LAYER 1e-3
#define MAX_ITEMS 512

/* ------------------------------------------------------------------------------------------ */
/* Results                                                                                     */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    char op[20], variant[64], dtype[6];
    double nmse, max_abs, limit;
} result;

static result *results; /* every check's row, printed as the table at the end */
static int n_results, n_capacity, n_failed;
static const char *engine = "builtin"; /* the GEMM engine of the cases running */

static void record(const char *op, const char *variant, const char *dtype, double nmse,
                   double max_abs, double limit)
{
    const bool ok = nmse <= limit;
    if (!ok) n_failed++;
    if (n_results == n_capacity) {
        const int capacity = n_capacity ? 2 * n_capacity : 1024;
        result *grown = realloc(results, (size_t)capacity * sizeof *grown);
        if (!grown) {
            fprintf(stderr, "hylo-hip-check: out of memory for %d result rows\n", capacity);
            exit(1);
        }
        results = grown;
        n_capacity = capacity;
    }
    result *r = &results[n_results++];
    snprintf(r->op, sizeof r->op, "%s", op);
    snprintf(r->variant, sizeof r->variant, "%s [%s]", variant, engine);
    snprintf(r->dtype, sizeof r->dtype, "%s", dtype);
    r->nmse = nmse;
    r->max_abs = max_abs;
    r->limit = limit;
}

/* NMSE and max abs error of got against want (n values). */
static void compare(const char *op, const char *variant, const char *dtype, const float *got,
                    const float *want, int64_t n, double limit)
{
    double num = 0.0, den = 0.0, max_abs = 0.0;
    bool broken = false;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) {
            broken = broken || isfinite(want[i]);
            continue;
        }
        const double d = (double)got[i] - (double)want[i];
        num += d * d;
        den += (double)want[i] * (double)want[i];
        max_abs = fmax(max_abs, fabs(d));
    }
    record(op, variant, dtype, broken ? INFINITY : den > 0.0 ? num / den : num,
           broken ? INFINITY : max_abs, limit);
}

static void failed(const char *op, const char *variant, const char *message)
{
    fprintf(stderr, "hylo-hip-check: %s %s: %s\n", op, variant, message);
    record(op, variant, "-", INFINITY, INFINITY, 0.0);
}

/* ------------------------------------------------------------------------------------------ */
/* One case: host arrays, uploaded weights, a context, device buffers                          */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    hylo_rng rng;
    hylo_hip_array weights[MAX_ITEMS];
    size_t n_weights;
    void *host[MAX_ITEMS];
    int n_host;
    void *dev[MAX_ITEMS];
    int n_dev;
    hylo_hip_weights *w;
    hylo_hip_ctx *ctx;
    bool bf16;
    hylo_error err;
} tcase;

static void start(tcase *c, uint64_t seed, const char *name, bool bf16)
{
    memset(c, 0, sizeof *c);
    hylo_rng_seed(&c->rng, seed, hylo_hash_string(name));
    c->bf16 = bf16;
}

static void *host_alloc(tcase *c, size_t bytes)
{
    void *p = calloc(1, bytes > 0 ? bytes : 1);
    if (!p || c->n_host == MAX_ITEMS) {
        fprintf(stderr, "hylo-hip-check: out of host memory\n");
        exit(2);
    }
    return c->host[c->n_host++] = p;
}

/* n values N(0, scale^2) */
static float *rnd(tcase *c, int64_t n, double scale)
{
    float *x = host_alloc(c, (size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) x[i] = (float)(scale * hylo_rng_normal(&c->rng));
    return x;
}

/* n values uniform in [lo, hi) */
static float *uni(tcase *c, int64_t n, double lo, double hi)
{
    float *x = host_alloc(c, (size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * hylo_rng_uniform(&c->rng));
    return x;
}

static float *copy_of(tcase *c, const float *src, int64_t n)
{
    float *x = host_alloc(c, (size_t)n * sizeof(float));
    memcpy(x, src, (size_t)n * sizeof(float));
    return x;
}

/* A weight to upload: a matrix [rows, cols] N(0, 1/cols) (with a bf16 copy in bf16 cases),
 * or any other array. */
static const float *weight(tcase *c, float *host, int64_t n, bool matrix)
{
    c->weights[c->n_weights++] = (hylo_hip_array){host, n, sizeof(float), matrix};
    return host;
}

static const float *matrix(tcase *c, int64_t rows, int64_t cols)
{
    return weight(c, rnd(c, rows * cols, 1.0 / sqrt((double)cols)), rows * cols, true);
}

static const double *freq_table(tcase *c, int64_t dim, double theta)
{
    double *f = host_alloc(c, (size_t)(dim / 2) * sizeof(double));
    for (int64_t i = 0; i < dim / 2; i++) f[i] = pow(theta, -2.0 * (double)i / (double)dim);
    c->weights[c->n_weights++] = (hylo_hip_array){f, dim / 2, sizeof(double), false};
    return f;
}

/* Uploads the weights and opens a context; false (reported) on failure. */
static bool open_case(tcase *c, const char *op, const char *variant)
{
    if (hylo_hip_weights_new(c->weights, c->n_weights, c->bf16, &c->w, &c->err) != HYLO_OK ||
        hylo_hip_context_new(c->w, c->bf16, &c->ctx, &c->err) != HYLO_OK) {
        failed(op, variant, c->err.message);
        return false;
    }
    return true;
}

static float *dev_alloc(tcase *c, int64_t n)
{
    float *p = hylo_hip_alloc(c->ctx, (size_t)(n > 0 ? n : 1) * sizeof(float));
    if (p) c->dev[c->n_dev++] = p;
    return p;
}

/* A device copy of host [n]. */
static float *dev_of(tcase *c, const float *host, int64_t n)
{
    float *p = dev_alloc(c, n);
    if (p) hylo_hip_copy(c->ctx, p, host, (size_t)n * sizeof(float), HYLO_COPY_TO_DEVICE, &c->err);
    return p;
}

/* A device output [n] poisoned with NaN. */
static float *dev_nan(tcase *c, int64_t n)
{
    float *nan = host_alloc(c, (size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) nan[i] = NAN;
    return dev_of(c, nan, n);
}

/* The device buffer's values after the queued work (NaN-filled if anything failed). */
static float *host_of(tcase *c, const float *dev, int64_t n)
{
    float *x = host_alloc(c, (size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) x[i] = NAN;
    if (hylo_hip_finish(c->ctx, &c->err) != HYLO_OK ||
        hylo_hip_copy(c->ctx, x, dev, (size_t)n * sizeof(float), HYLO_COPY_TO_HOST, &c->err) != HYLO_OK)
        fprintf(stderr, "hylo-hip-check: %s\n", c->err.message);
    return x;
}

static void close_case(tcase *c)
{
    for (int i = 0; i < c->n_dev; i++) hylo_hip_release(c->ctx, c->dev[i]);
    hylo_hip_context_free(c->ctx);
    hylo_hip_weights_free(c->w);
    for (int i = 0; i < c->n_host; i++) free(c->host[i]);
}

static const char *dtype_of(const tcase *c)
{
    return c->bf16 ? "bf16" : "f32";
}

/* ------------------------------------------------------------------------------------------ */
/* GEMM, linear, norms, rope, conv, attention, MLP                                             */
/* ------------------------------------------------------------------------------------------ */

/* The GEMM alone, every transpose combination, against a double-precision product of the same
 * (bf16-rounded) operands. */
static void check_gemm(uint64_t seed, bool bf16)
{
    const int64_t M = 37, N = 45, K = 29;
    for (int tr = 0; tr < 4; tr++) {
        const bool ta = tr & 1, tb = tr & 2;
        char variant[64];
        snprintf(variant, sizeof variant, "M%lld N%lld K%lld %s%s", (long long)M, (long long)N,
                 (long long)K, ta ? "A^T" : "A", tb ? " B^T" : " B");
        tcase c;
        start(&c, seed, variant, false);
        float *A = rnd(&c, M * K, 1.0), *B = rnd(&c, K * N, 1.0), *C0 = rnd(&c, M * N, 1.0);
        if (bf16)
            for (int64_t i = 0; i < M * K + K * N; i++) {
                float *x = i < M * K ? A + i : B + i - M * K;
                *x = hylo_bf16_to_f32(hylo_f32_to_bf16(*x));
            }
        const int64_t lda = ta ? M : K, ldb = tb ? K : N;
        const float alpha = 0.75f, beta = bf16 ? 0.0f : 0.5f;
        float *want = host_alloc(&c, (size_t)(M * N) * sizeof(float));
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) {
                double acc = 0.0;
                for (int64_t k = 0; k < K; k++)
                    acc += (double)A[ta ? k * lda + m : m * lda + k] *
                           (double)B[tb ? n * ldb + k : k * ldb + n];
                want[m * N + n] = (float)(alpha * acc + beta * C0[m * N + n]);
            }
        if (!open_case(&c, "gemm", variant)) {
            close_case(&c);
            continue;
        }
        const void *Ad = dev_of(&c, A, M * K), *Bd = dev_of(&c, B, K * N);
        float *Cd = beta != 0.0f ? dev_of(&c, C0, M * N) : dev_nan(&c, M * N);
        if (bf16) { /* the device rounds the (already representable) operands to bf16 storage */
            uint16_t *A16 = (uint16_t *)dev_alloc(&c, M * K), *B16 = (uint16_t *)dev_alloc(&c, K * N);
            hylo_hip_to_bf16(c.ctx, Ad, A16, M * K);
            hylo_hip_to_bf16(c.ctx, Bd, B16, K * N);
            Ad = A16;
            Bd = B16;
        }
        hylo_hip_gemm(c.ctx, bf16 ? HYLO_BF16 : HYLO_F32, ta, tb, M, N, K, alpha, Ad, lda, Bd,
                      ldb, beta, Cd, N);
        compare("gemm", variant, bf16 ? "bf16" : "f32", host_of(&c, Cd, M * N), want, M * N,
                LIMIT_F32);
        close_case(&c);
    }
}

/* T tokens: a GEMM, or for one token the matrix-vector kernel (16-byte loads when `in` allows
 * them). */
static void check_linear(uint64_t seed, bool bf16, int64_t T, int64_t in)
{
    const int64_t out = 80;
    char variant[64];
    snprintf(variant, sizeof variant, "T%lld %lld->%lld bias", (long long)T, (long long)in,
             (long long)out);
    tcase c;
    start(&c, seed, variant, bf16);
    const float *x = rnd(&c, T * in, 1.0), *W = matrix(&c, out, in);
    const float *b = weight(&c, rnd(&c, out, 0.1), out, false);
    float *want = host_alloc(&c, (size_t)(T * out) * sizeof(float));
    hylo_ref_linear(x, W, b, want, T, in, out);
    if (open_case(&c, "linear", variant)) {
        float *y = dev_nan(&c, T * out);
        hylo_hip_linear(c.ctx, dev_of(&c, x, T * in), W, b, y, T, in, out);
        compare("linear", variant, dtype_of(&c), host_of(&c, y, T * out), want, T * out,
                bf16 ? LIMIT_BF16_OP : LIMIT_F32);
    }
    close_case(&c);
}

/* Three projections of one input (the first and last with biases) through one call, against
 * one reference linear each: one matrix-vector launch for a token, GEMMs for more. */
static void check_linears(uint64_t seed, bool bf16, int64_t T, int64_t in)
{
    const int64_t out[3] = {48, 16, 24}, total = 48 + 16 + 24;
    char variant[64];
    snprintf(variant, sizeof variant, "T%lld %lld->48/16/24, 2 biases", (long long)T,
             (long long)in);
    tcase c;
    start(&c, seed, variant, bf16);
    const float *x = rnd(&c, T * in, 1.0);
    const float *W[3], *b[3] = {weight(&c, rnd(&c, out[0], 0.1), out[0], false), NULL,
                                weight(&c, rnd(&c, out[2], 0.1), out[2], false)};
    float *want = host_alloc(&c, (size_t)(T * total) * sizeof(float));
    for (int i = 0, off = 0; i < 3; off += (int)(T * out[i]), i++) {
        W[i] = matrix(&c, out[i], in);
        hylo_ref_linear(x, W[i], b[i], want + off, T, in, out[i]);
    }
    if (open_case(&c, "linears", variant)) {
        float *y = dev_nan(&c, T * total);
        float *const ys[3] = {y, y + T * out[0], y + T * (out[0] + out[1])};
        hylo_hip_linears(c.ctx, dev_of(&c, x, T * in), T, in, 3, W, b, ys, out);
        compare("linears", variant, dtype_of(&c), host_of(&c, y, T * total), want, T * total,
                bf16 ? LIMIT_BF16_OP : LIMIT_F32);
    }
    close_case(&c);
}

/* x += y, then RMSNorm, in one kernel. Few rows keep a row in registers, with as many threads
 * as n needs (n 200: 64, 2048: 128, 3000: 256); many rows, or a row too long to hold, take the
 * looping kernel. */
static void check_add_rmsnorm(uint64_t seed, int64_t rows, int64_t n)
{
    char variant[64];
    snprintf(variant, sizeof variant, "%lld x %lld", (long long)rows, (long long)n);
    tcase c;
    start(&c, seed, variant, false);
    const float *x = rnd(&c, rows * n, 2.0), *y = rnd(&c, rows * n, 1.0);
    const float *w = weight(&c, uni(&c, n, 0.5, 1.5), n, false);
    float *sum = copy_of(&c, x, rows * n), *want = host_alloc(&c, (size_t)(rows * n) * sizeof(float));
    for (int64_t i = 0; i < rows * n; i++) sum[i] += y[i];
    hylo_ref_rmsnorm(sum, w, want, rows, n, 1e-5);
    if (open_case(&c, "add+rmsnorm", variant)) {
        float *xd = dev_of(&c, x, rows * n), *xn = dev_nan(&c, rows * n);
        hylo_hip_add_rmsnorm(c.ctx, xd, dev_of(&c, y, rows * n), w, xn, rows, n, 1e-5);
        compare("add+rmsnorm", variant, "f32", host_of(&c, xn, rows * n), want, rows * n,
                LIMIT_F32);
        compare("add+rmsnorm x", variant, "f32", host_of(&c, xd, rows * n), sum, rows * n, 0.0);
    }
    close_case(&c);
}

static void check_rmsnorm(uint64_t seed)
{
    const int64_t rows = 9, n = 200;
    tcase c;
    start(&c, seed, "rmsnorm", false);
    const float *x = rnd(&c, rows * n, 2.0), *w = weight(&c, uni(&c, n, 0.5, 1.5), n, false);
    float *want = host_alloc(&c, (size_t)(rows * n) * sizeof(float));
    hylo_ref_rmsnorm(x, w, want, rows, n, 1e-5);
    if (open_case(&c, "rmsnorm", "9 x 200 in place")) {
        float *xd = dev_of(&c, x, rows * n);
        hylo_hip_rmsnorm(c.ctx, xd, w, xd, rows, n, 1e-5);
        compare("rmsnorm", "9 x 200 in place", "f32", host_of(&c, xd, rows * n), want, rows * n,
                LIMIT_F32);
    }
    close_case(&c);
}

static void check_rope(uint64_t seed)
{
    const int64_t T = 5, heads = 3, dim = 64, pos0 = 100000;
    tcase c;
    start(&c, seed, "rope", false);
    const float *x = rnd(&c, T * heads * dim, 1.0);
    const double *f = freq_table(&c, dim, 5e5);
    float *half = copy_of(&c, x, T * heads * dim), *inter = copy_of(&c, x, T * heads * dim);
    for (int64_t t = 0; t < T; t++) {
        hylo_ref_rope_rotate_half(half + t * heads * dim, heads, dim, pos0 + t, f, 1.0);
        hylo_ref_rope_interleaved(inter + t * heads * dim, heads, dim, pos0 + t, f, 1.25);
    }
    if (open_case(&c, "rope", "rotate-half")) {
        float *a = dev_of(&c, x, T * heads * dim), *b = dev_of(&c, x, T * heads * dim);
        hylo_hip_rope_rotate_half(c.ctx, a, T, heads, dim, pos0, f, 1.0);
        hylo_hip_rope_rows(c.ctx, b, T, heads, dim, heads * dim, dim,
                           hylo_hip_pos_of(c.ctx, pos0), hylo_hip_find_f64(c.ctx, f, "rope"),
                           1.25, true);
        compare("rope", "rotate-half, pos 1e5", "f32", host_of(&c, a, T * heads * dim), half,
                T * heads * dim, LIMIT_F32);
        compare("rope", "interleaved, scale 1.25", "f32", host_of(&c, b, T * heads * dim), inter,
                T * heads * dim, LIMIT_F32);
    }
    close_case(&c);
}

static void check_conv(uint64_t seed, int64_t T)
{
    const int64_t C = 40, K = 4;
    char variant[64];
    snprintf(variant, sizeof variant, "T%lld C%lld K%lld, state", (long long)T, (long long)C,
             (long long)K);
    tcase c;
    start(&c, seed, variant, false);
    const float *x = rnd(&c, T * C, 1.0), *w = weight(&c, rnd(&c, C * K, 0.5), C * K, false);
    const float *b = weight(&c, rnd(&c, C, 0.1), C, false);
    float *state0 = rnd(&c, C * (K - 1), 1.0), *state = copy_of(&c, state0, C * (K - 1));
    float *want = host_alloc(&c, (size_t)(T * C) * sizeof(float));
    hylo_ref_causal_conv1d_silu(x, w, b, state, want, T, C, K);
    if (open_case(&c, "conv", variant)) {
        float *y = dev_nan(&c, T * C), *sd = dev_of(&c, state0, C * (K - 1));
        hylo_hip_conv_silu(c.ctx, dev_of(&c, x, T * C), C, hylo_hip_find(c.ctx, w, "w"),
                           hylo_hip_find(c.ctx, b, "b"), sd, y, T, C, K);
        compare("conv", variant, "f32", host_of(&c, y, T * C), want, T * C, LIMIT_F32);
        compare("conv state", variant, "f32", host_of(&c, sd, C * (K - 1)), state, C * (K - 1),
                LIMIT_F32);
    }
    close_case(&c);
}

/* One token through three convs in one launch (hylo_hip_conv_silu_step, a GDN decode step's
 * q, k, v convs), against three reference convs; the middle one without bias. */
static void check_conv_step(uint64_t seed)
{
    enum { N = 3 };
    const int64_t C[N] = {40, 24, 56}, K = 4, total = 40 + 24 + 56;
    tcase c;
    start(&c, seed, "3 parts, C 40 + 24 + 56, K4", false);
    const float *x = rnd(&c, total, 1.0);
    const float *w[N], *b[N], *w_dev[N], *b_dev[N];
    float *state0[N], *state[N], *sd[N];
    float *want = host_alloc(&c, (size_t)total * sizeof(float));
    for (int p = 0, first = 0; p < N; first += (int)C[p], p++) {
        w[p] = weight(&c, rnd(&c, C[p] * K, 0.5), C[p] * K, false);
        b[p] = p == 1 ? NULL : weight(&c, rnd(&c, C[p], 0.1), C[p], false);
        state0[p] = rnd(&c, C[p] * (K - 1), 1.0);
        state[p] = copy_of(&c, state0[p], C[p] * (K - 1));
        hylo_ref_causal_conv1d_silu(x + first, w[p], b[p], state[p], want + first, 1, C[p], K);
    }
    if (open_case(&c, "conv step", "3 parts, C 40 + 24 + 56, K4")) {
        for (int p = 0; p < N; p++) {
            w_dev[p] = hylo_hip_find(c.ctx, w[p], "w");
            b_dev[p] = b[p] ? hylo_hip_find(c.ctx, b[p], "b") : NULL;
            sd[p] = dev_of(&c, state0[p], C[p] * (K - 1));
        }
        float *y = dev_nan(&c, total);
        hylo_hip_conv_silu_step(c.ctx, N, dev_of(&c, x, total), w_dev, b_dev, sd, y, C, K);
        compare("conv step", "3 parts", "f32", host_of(&c, y, total), want, total, LIMIT_F32);
        for (int p = 0; p < N; p++) {
            char variant[64];
            snprintf(variant, sizeof variant, "3 parts, state of part %d", p);
            compare("conv step", variant, "f32", host_of(&c, sd[p], C[p] * (K - 1)), state[p],
                    C[p] * (K - 1), LIMIT_F32);
        }
    }
    close_case(&c);
}

/* The values a bf16 cache keeps: x [n] rounded to bf16 in place (the reference then sees
 * exactly what the device stores). */
static void round_to_bf16(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) x[i] = hylo_bf16_to_f32(hylo_f32_to_bf16(x[i]));
}

/* A device cache of the case's type holding host [n] (bf16 values converted on the host). */
static float *dev_cache_of(tcase *c, const float *host, int64_t n)
{
    if (!c->bf16) return dev_of(c, host, n);
    uint16_t *h = host_alloc(c, (size_t)n * sizeof(uint16_t));
    for (int64_t i = 0; i < n; i++) h[i] = hylo_f32_to_bf16(host[i]);
    float *p = dev_alloc(c, n);
    if (p) hylo_hip_copy(c->ctx, p, h, (size_t)n * sizeof(uint16_t), HYLO_COPY_TO_DEVICE, &c->err);
    return p;
}

/* A device cache's n values, widened to fp32 on the host. */
static float *host_of_cache(tcase *c, const float *dev, int64_t n)
{
    if (!c->bf16) return host_of(c, dev, n);
    float *x = host_alloc(c, (size_t)n * sizeof(float));
    uint16_t *h = host_alloc(c, (size_t)n * sizeof(uint16_t));
    for (int64_t i = 0; i < n; i++) x[i] = NAN;
    if (hylo_hip_finish(c->ctx, &c->err) == HYLO_OK &&
        hylo_hip_copy(c->ctx, h, dev, (size_t)n * sizeof(uint16_t), HYLO_COPY_TO_HOST,
                      &c->err) == HYLO_OK)
        for (int64_t i = 0; i < n; i++) x[i] = hylo_bf16_to_f32(h[i]);
    else
        fprintf(stderr, "hylo-hip-check: %s\n", c->err.message);
    return x;
}

/* A layer's fused RoPE and cache append against the reference's ops: q and k rotated, their
 * rows of both caches written (in the caches' type) and no other row touched. The teacher's
 * layout through the ops table's rope_store (rotate-half, q and k heads of dim); MLA's through
 * hylo_hip_rope_append (the rope slice at q_off of each head of q_head values rotated in
 * adjacent pairs, scaled, one shared k_pe, the latents as the values; a k_norm layer keeps
 * k_pe raw), for one token with the absorbed queries too: q_cat[h] = [the q_off values before
 * the slice times W of the head's group (w_cols columns), in double | the rotated slice]. */
typedef struct {
    const char *name;
    int64_t H, Hkv, dim, q_head, q_off, v_width;
    bool mla, raw_k;
    int64_t w_cols, w_group; /* absorbed queries (one token) when w_cols > 0 */
} rope_case;

static void check_rope_store(uint64_t seed, const rope_case *rc, bool bf16)
{
    const int64_t T = rc->w_cols > 0 ? 1 : 3, H = rc->H, Hkv = rc->Hkv, dim = rc->dim;
    const int64_t pos0 = 4000, row = Hkv * dim, nq = T * H * rc->q_head, vw = rc->v_width;
    const int64_t rows = pos0 + T + 5, cat = rc->w_cols + dim, wn = rc->q_off * rc->w_cols;
    const double scale = rc->mla ? 1.25 : 1.0;
    tcase c;
    start(&c, seed, rc->name, bf16);
    const float *q = rnd(&c, nq, 1.0), *k = rnd(&c, T * row, 1.0), *v = rnd(&c, T * vw, 1.0);
    float *kc = rnd(&c, rows * row, 1.0), *vc = rnd(&c, rows * vw, 1.0);
    if (bf16) {
        round_to_bf16(kc, rows * row);
        round_to_bf16(vc, rows * vw);
    }
    const double *f = freq_table(&c, dim, 5e5);
    float *q_want = copy_of(&c, q, nq), *k_want = copy_of(&c, k, T * row);
    float *kc_want = copy_of(&c, kc, rows * row), *vc_want = copy_of(&c, vc, rows * vw);
    const float *W = rnd(&c, H / (rc->w_group > 0 ? rc->w_group : 1) * wn, 0.2);
    float *cat_want = host_alloc(&c, (size_t)(H * cat) * sizeof(float));
    void (*rotate)(float *, int64_t, int64_t, int64_t, const double *, double) =
        rc->mla ? hylo_ref_rope_interleaved : hylo_ref_rope_rotate_half;
    for (int64_t t = 0; t < T; t++) {
        for (int64_t h = 0; h < H; h++)
            rotate(q_want + (t * H + h) * rc->q_head + rc->q_off, 1, dim, pos0 + t, f, scale);
        if (!rc->raw_k) rotate(k_want + t * row, Hkv, dim, pos0 + t, f, scale);
    }
    for (int64_t h = 0; h < H && rc->w_cols > 0; h++) {
        const float *qh = q_want + h * rc->q_head, *w = W + h / rc->w_group * wn;
        for (int64_t col = 0; col < rc->w_cols; col++) {
            double acc = 0.0;
            for (int64_t i = 0; i < rc->q_off; i++) acc += (double)qh[i] * w[i * rc->w_cols + col];
            cat_want[h * cat + col] = (float)acc;
        }
        memcpy(cat_want + h * cat + rc->w_cols, qh + rc->q_off, (size_t)dim * sizeof(float));
    }
    memcpy(kc_want + pos0 * row, k_want, (size_t)(T * row) * sizeof(float));
    memcpy(vc_want + pos0 * vw, v, (size_t)(T * vw) * sizeof(float));
    if (bf16) {
        round_to_bf16(kc_want + pos0 * row, T * row);
        round_to_bf16(vc_want + pos0 * vw, T * vw);
    }
    if (open_case(&c, "rope_store", rc->name)) {
        float *dq = dev_of(&c, q, nq), *dk = dev_of(&c, k, T * row), *dv = dev_of(&c, v, T * vw);
        float *dkc = dev_cache_of(&c, kc, rows * row), *dvc = dev_cache_of(&c, vc, rows * vw);
        float *dcat = dev_nan(&c, H * cat);
        if (rc->mla) {
            hylo_hip_rope_append_args a = {0};
            a.q = dq + rc->q_off;
            a.H = H;
            a.q_head = rc->q_head;
            a.k = dk;
            a.Hkv = Hkv;
            a.v = dv;
            a.v_width = vw;
            a.k_cache = dkc;
            a.v_cache = dvc;
            a.T = T;
            a.dim = dim;
            a.interleaved = true;
            a.raw_k = rc->raw_k;
            a.pos0 = hylo_hip_pos_of(c.ctx, pos0);
            a.inv_freq = hylo_hip_find_f64(c.ctx, f, "rope");
            a.scale = scale;
            if (rc->w_cols > 0) {
                a.q_cat = dcat;
                a.w = dev_of(&c, W, H / rc->w_group * wn);
                a.q_off = rc->q_off;
                a.w_cols = rc->w_cols;
                a.w_head = wn;
                a.w_group = rc->w_group;
            }
            hylo_hip_rope_append(c.ctx, &a);
        } else {
            hylo_hip_rope_store(c.ctx, dq, dk, dv, T, H, Hkv, dim, pos0, f, 1.0, dkc, dvc);
        }
        const char *type = dtype_of(&c);
        char variant[4][64];
        snprintf(variant[0], sizeof variant[0], "%s q, pos 4000", rc->name);
        snprintf(variant[1], sizeof variant[1], "%s k", rc->name);
        snprintf(variant[2], sizeof variant[2], "%s k cache, every row", rc->name);
        snprintf(variant[3], sizeof variant[3], "%s v cache, every row", rc->name);
        compare("rope_store", variant[0], type, host_of(&c, dq, nq), q_want, nq, LIMIT_F32);
        compare("rope_store", variant[1], type, host_of(&c, dk, T * row), k_want, T * row,
                LIMIT_F32);
        compare("rope_store", variant[2], type, host_of_cache(&c, dkc, rows * row), kc_want,
                rows * row, LIMIT_F32);
        compare("rope_store", variant[3], type, host_of_cache(&c, dvc, rows * vw), vc_want,
                rows * vw, LIMIT_F32);
        if (rc->w_cols > 0) {
            snprintf(variant[0], sizeof variant[0], "%s q_cat", rc->name);
            compare("rope_store", variant[0], type, host_of(&c, dcat, H * cat), cat_want,
                    H * cat, LIMIT_F32);
        }
    }
    close_case(&c);
}

/* Attention over a cache of fp32, or of bf16 in a bf16 context: the reference attends over the
 * same rounded keys and values, so both dtypes meet the fp32 limit, except where a bf16
 * context's prefill goes through the flash kernel or the GEMMs (T >= ATTENTION_GEMM_T,
 * attention.hip's GEMM_MIN_T): there the queries and probabilities are rounded to bf16 once
 * (an op's limit). */
#define ATTENTION_GEMM_T 64
static void check_attention(uint64_t seed, int64_t T, int64_t len, int64_t H, int64_t Hkv,
                            int64_t hd, bool bf16)
{
    char variant[64];
    snprintf(variant, sizeof variant, "T%lld len%lld H%lld/%lld hd%lld%s", (long long)T,
             (long long)len, (long long)H, (long long)Hkv, (long long)hd,
             bf16 ? " bf16 cache" : "");
    tcase c;
    start(&c, seed, variant, bf16);
    const float *q = rnd(&c, T * H * hd, 1.0);
    float *k = rnd(&c, len * Hkv * hd, 1.0), *v = rnd(&c, len * Hkv * hd, 1.0);
    if (bf16) {
        round_to_bf16(k, len * Hkv * hd);
        round_to_bf16(v, len * Hkv * hd);
    }
    float *want = host_alloc(&c, (size_t)(T * H * hd) * sizeof(float));
    const double scale = 1.0 / sqrt((double)hd);
    hylo_ref_attention(q, k, v, want, T, len, H, Hkv, hd, scale, &c.err);
    if (open_case(&c, "attention", variant)) {
        float *out = dev_nan(&c, T * H * hd);
        hylo_hip_attention(c.ctx, dev_of(&c, q, T * H * hd), dev_cache_of(&c, k, len * Hkv * hd),
                           dev_cache_of(&c, v, len * Hkv * hd), out, T, len, H, Hkv, hd, scale,
                           &c.err);
        compare("attention", variant, dtype_of(&c), host_of(&c, out, T * H * hd), want,
                T * H * hd, bf16 && T >= ATTENTION_GEMM_T ? LIMIT_BF16_OP : LIMIT_F32);
    }
    close_case(&c);
}

/* A bf16 prefill through the flash kernel (HYLO_HIP_ATTENTION=flash, any T > 1) in the layout
 * of MLA's naive form: kv [len, Hkv, na + nv] holds each group's key part ka then its values,
 * kb [len, nb] the key part every group shares (none when nb = 0). The reference attends over
 * the same bf16 values, keys [ka | kb] and values zero-padded to one width
 * (hylo_ref_attention's); the device rounds the queries to bf16 (an op's limit, as the GEMM
 * path). */
typedef struct {
    int64_t T, len, H, Hkv, na, nb, nv;
} attend_case;

static void check_attend_flash(uint64_t seed, const attend_case *ac)
{
    const int64_t T = ac->T, len = ac->len, H = ac->H, Hkv = ac->Hkv, na = ac->na, nb = ac->nb;
    const int64_t nv = ac->nv, nq = na + nb, dkv = na + nv, wide = nq > nv ? nq : nv;
    char variant[64];
    snprintf(variant, sizeof variant, "flash T%lld len%lld H%lld/%lld %lld+%lld/%lld",
             (long long)T, (long long)len, (long long)H, (long long)Hkv, (long long)na,
             (long long)nb, (long long)nv);
    tcase c;
    start(&c, seed, variant, true);
    const float *q = rnd(&c, T * H * nq, 1.0);
    float *kv = rnd(&c, len * Hkv * dkv, 1.0), *kb = rnd(&c, len * nb, 1.0);
    round_to_bf16(kv, len * Hkv * dkv);
    round_to_bf16(kb, len * nb);
    float *qw = host_alloc(&c, (size_t)(T * H * wide) * sizeof(float));
    float *kw = host_alloc(&c, (size_t)(len * Hkv * wide) * sizeof(float));
    float *vw = host_alloc(&c, (size_t)(len * Hkv * wide) * sizeof(float));
    float *outw = host_alloc(&c, (size_t)(T * H * wide) * sizeof(float));
    float *want = host_alloc(&c, (size_t)(T * H * nv) * sizeof(float));
    for (int64_t i = 0; i < T * H; i++)
        memcpy(qw + i * wide, q + i * nq, (size_t)nq * sizeof(float));
    for (int64_t j = 0; j < len; j++)
        for (int64_t g = 0; g < Hkv; g++) {
            const float *src = kv + (j * Hkv + g) * dkv;
            float *k = kw + (j * Hkv + g) * wide, *v = vw + (j * Hkv + g) * wide;
            memcpy(k, src, (size_t)na * sizeof(float));
            memcpy(k + na, kb + j * nb, (size_t)nb * sizeof(float));
            memcpy(v, src + na, (size_t)nv * sizeof(float));
        }
    hylo_ref_attention(qw, kw, vw, outw, T, len, H, Hkv, wide, 1.0 / sqrt((double)nq), &c.err);
    for (int64_t i = 0; i < T * H; i++)
        memcpy(want + i * nv, outw + i * wide, (size_t)nv * sizeof(float));
    if (open_case(&c, "attention", variant)) {
        float *out = dev_nan(&c, T * H * nv);
        const uint16_t *kv16 = (const uint16_t *)dev_cache_of(&c, kv, len * Hkv * dkv);
        hylo_hip_attend_args a = {0};
        a.q = dev_of(&c, q, T * H * nq);
        a.na = na;
        a.nb = nb;
        a.nv = nv;
        a.ka = kv16;
        a.v = kv16 + na;
        a.ka_row = a.v_row = Hkv * dkv;
        a.ka_head = a.v_head = dkv;
        a.kb = nb > 0 ? dev_cache_of(&c, kb, len * nb) : NULL;
        a.kb_row = nb;
        a.bf16 = true;
        a.out = out;
        a.T = T;
        a.len = len;
        a.H = H;
        a.Hkv = Hkv;
        a.scale = 1.0 / sqrt((double)nq);
        setenv("HYLO_HIP_ATTENTION", "flash", 1);
        hylo_hip_attend(c.ctx, &a);
        unsetenv("HYLO_HIP_ATTENTION");
        compare("attention", variant, "bf16", host_of(&c, out, T * H * nv), want, T * H * nv,
                LIMIT_BF16_OP);
    }
    close_case(&c);
}

/* One query over an MLA latent cache in the absorbed form's layout: keys [latent | k_pe]
 * (latent [len, na], k_pe [len, nb], Hkv = 1), values the latents themselves, and each head's
 * output projected by its group's W [nout, na] (the attention's wo) as the splits are merged.
 * The reference attends over the same cache values, keys and values zero-padded to one width,
 * and projects in double; fp32 arithmetic on both sides (the fp32 limit for either cache). */
typedef struct {
    int64_t len, H, groups, na, nb, nout;
} decode_case;

static void check_attend_decode(uint64_t seed, const decode_case *dc, bool bf16)
{
    const int64_t len = dc->len, H = dc->H, na = dc->na, nb = dc->nb, nq = na + nb;
    const int64_t nout = dc->nout, per_group = H / dc->groups;
    char variant[64];
    snprintf(variant, sizeof variant, "absorbed len%lld H%lld %lld+%lld -> %lld%s",
             (long long)len, (long long)H, (long long)na, (long long)nb, (long long)nout,
             bf16 ? " bf16 cache" : "");
    tcase c;
    start(&c, seed, variant, bf16);
    const float *q = rnd(&c, H * nq, 1.0), *W = rnd(&c, dc->groups * nout * na, 0.1);
    float *latent = rnd(&c, len * na, 1.0), *k_pe = rnd(&c, len * nb, 1.0);
    if (bf16) {
        round_to_bf16(latent, len * na);
        round_to_bf16(k_pe, len * nb);
    }
    float *keys = host_alloc(&c, (size_t)(len * nq) * sizeof(float));
    float *values = host_alloc(&c, (size_t)(len * nq) * sizeof(float)); /* zeros past na */
    float *o = host_alloc(&c, (size_t)(H * nq) * sizeof(float));
    float *want = host_alloc(&c, (size_t)(H * nout) * sizeof(float));
    for (int64_t j = 0; j < len; j++) {
        memcpy(keys + j * nq, latent + j * na, (size_t)na * sizeof(float));
        memcpy(keys + j * nq + na, k_pe + j * nb, (size_t)nb * sizeof(float));
        memcpy(values + j * nq, latent + j * na, (size_t)na * sizeof(float));
    }
    const double scale = 1.0 / sqrt((double)nq);
    hylo_ref_attention(q, keys, values, o, 1, len, H, 1, nq, scale, &c.err);
    for (int64_t h = 0; h < H; h++)
        for (int64_t i = 0; i < nout; i++) {
            const float *w = W + (h / per_group * nout + i) * na;
            double acc = 0.0;
            for (int64_t d = 0; d < na; d++) acc += (double)w[d] * o[h * nq + d];
            want[h * nout + i] = (float)acc;
        }
    if (open_case(&c, "attention", variant)) {
        float *out = dev_nan(&c, H * nout);
        const void *dl = dev_cache_of(&c, latent, len * na);
        hylo_hip_attend_args a = {0};
        a.q = dev_of(&c, q, H * nq);
        a.na = a.nv = na;
        a.nb = nb;
        a.ka = a.v = dl;
        a.kb = dev_cache_of(&c, k_pe, len * nb);
        a.bf16 = bf16;
        a.ka_row = a.v_row = na;
        a.kb_row = nb;
        a.out = out;
        a.T = 1;
        a.len = len;
        a.H = H;
        a.Hkv = 1;
        a.scale = scale;
        a.wo = dev_of(&c, W, dc->groups * nout * na);
        a.wo_rows = nout;
        a.wo_row = na;
        a.wo_head = nout * na;
        a.wo_group = per_group;
        hylo_hip_attend(c.ctx, &a);
        compare("attention", variant, dtype_of(&c), host_of(&c, out, H * nout), want, H * nout,
                LIMIT_F32);
    }
    close_case(&c);
}

static void check_mlp(uint64_t seed, bool bf16)
{
    const int64_t T = 6, D = 64, F = 160;
    tcase c;
    start(&c, seed, "mlp", bf16);
    const float *x = rnd(&c, T * D, 1.0);
    const float *Wg = matrix(&c, F, D), *Wu = matrix(&c, F, D), *Wd = matrix(&c, D, F);
    const float *bg = weight(&c, rnd(&c, F, 0.1), F, false);
    const float *bu = weight(&c, rnd(&c, F, 0.1), F, false);
    const float *bd = weight(&c, rnd(&c, D, 0.1), D, false);
    float *want = host_alloc(&c, (size_t)(T * D) * sizeof(float));
    hylo_ref_swiglu_mlp(x, Wg, bg, Wu, bu, Wd, bd, want, T, D, F, &c.err);
    if (open_case(&c, "swiglu", "T6 D64 F160 bias")) {
        float *y = dev_nan(&c, T * D);
        hylo_hip_swiglu_mlp(c.ctx, dev_of(&c, x, T * D), Wg, bg, Wu, bu, Wd, bd, y, T, D, F,
                            &c.err);
        compare("swiglu", "T6 D64 F160 bias", dtype_of(&c), host_of(&c, y, T * D), want, T * D,
                bf16 ? LIMIT_BF16_LAYER : LIMIT_F32);
    }
    close_case(&c);
}

/* ------------------------------------------------------------------------------------------ */
/* MLA                                                                                         */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    const char *name;
    hylo_mla_dims d;
    bool latent_norms, qk_norms;
    int64_t steps[4]; /* tokens per call: a prefill, a continued prefill, decode steps */
} mla_case;

static void check_mla(uint64_t seed, const mla_case *mc, bool bf16)
{
    const hylo_mla_dims *d = &mc->d;
    const int64_t H = d->heads, D = d->hidden, r = d->kv_rank, rope = d->rope;
    const int64_t dq = d->nope + rope;
    int64_t total = 0;
    for (int s = 0; s < 4; s++) total += mc->steps[s];
    tcase c;
    start(&c, seed, mc->name, bf16);
    hylo_mla_layer L = {*d, {0}, NULL, 1.2, 1.0 / sqrt((double)dq)};
    if (d->q_rank > 0) {
        L.w.q_a = matrix(&c, d->q_rank, D);
        L.w.q_b = matrix(&c, H * dq, d->q_rank);
    } else {
        L.w.q_proj = matrix(&c, H * dq, D);
    }
    L.w.kv_a = matrix(&c, r + rope, D);
    L.w.kv_b = matrix(&c, d->kv_heads * (d->nope + d->v), r);
    L.w.out = matrix(&c, D, H * d->v);
    if (mc->latent_norms) {
        if (d->q_rank > 0) L.w.q_a_norm = weight(&c, uni(&c, d->q_rank, 0.5, 1.5), d->q_rank, false);
        L.w.kv_a_norm = weight(&c, uni(&c, r, 0.5, 1.5), r, false);
    }
    if (mc->qk_norms) {
        L.w.q_norm = weight(&c, uni(&c, dq, 0.5, 1.5), dq, false);
        L.w.k_norm = weight(&c, uni(&c, dq, 0.5, 1.5), dq, false);
    }
    L.rope_inv_freq = freq_table(&c, rope, 5e5);
    const float *x = rnd(&c, total * D, 1.0);
    hylo_mla_cache ref = {host_alloc(&c, (size_t)(total * r) * sizeof(float)),
                          host_alloc(&c, (size_t)(total * rope) * sizeof(float))};
    if (!open_case(&c, "mla", mc->name)) {
        close_case(&c);
        return;
    }
    hylo_mla_cache dev = {dev_alloc(&c, total * r), dev_alloc(&c, total * rope)};
    int64_t pos = 0;
    for (int s = 0; s < 4 && mc->steps[s] > 0; s++) {
        const int64_t T = mc->steps[s];
        const bool decode = s >= 2;
        float *want = host_alloc(&c, (size_t)(T * D) * sizeof(float)), *y = dev_nan(&c, T * D);
        const float *xs = x + pos * D;
        (decode ? hylo_ref_mla_forward_absorbed : hylo_ref_mla_forward)(&L, &ref, pos, xs, T, want,
                                                                        NULL, &c.err);
        (decode ? hylo_hip_mla_decode : hylo_hip_mla_prefill)(c.ctx, &L, &dev, pos,
                                                              dev_of(&c, xs, T * D), T, y, NULL,
                                                              &c.err);
        char variant[64];
        snprintf(variant, sizeof variant, "%s %s T%lld at %lld", mc->name,
                 decode ? "absorbed" : "naive", (long long)T, (long long)pos);
        const double limit = bf16 ? LIMIT_BF16_LAYER : LIMIT_F32;
        compare("mla", variant, dtype_of(&c), host_of(&c, y, T * D), want, T * D, limit);
        pos += T;
        compare("mla cache", variant, dtype_of(&c), host_of_cache(&c, dev.latent, pos * r),
                ref.latent, pos * r, limit);
        compare("mla k_pe", variant, dtype_of(&c), host_of_cache(&c, dev.k_pe, pos * rope),
                ref.k_pe, pos * rope, limit);
    }
    close_case(&c);
}

/* ------------------------------------------------------------------------------------------ */
/* Mamba2 and GDN                                                                              */
/* ------------------------------------------------------------------------------------------ */

/* A chunked prefill of `first` tokens, then recurrent steps of 1, 1 and 3 tokens. */
static void check_mamba2(uint64_t seed, const char *name, hylo_mamba2_dims d, int64_t first,
                         bool bf16)
{
    const int64_t H = d.nheads, D = d.hidden, di = H * d.headdim;
    const int64_t conv_dim = hylo_mamba2_conv_dim(&d), rows = hylo_mamba2_in_proj_rows(&d);
    const int64_t conv_n = conv_dim * (d.d_conv - 1), ssm_n = H * d.headdim * d.d_state;
    tcase c;
    start(&c, seed, name, bf16);
    hylo_mamba2_weights w = {matrix(&c, rows, D),
                             weight(&c, rnd(&c, conv_dim * d.d_conv, 0.5), conv_dim * d.d_conv, false),
                             weight(&c, rnd(&c, conv_dim, 0.1), conv_dim, false),
                             weight(&c, uni(&c, H, -4.0, -1.0), H, false),
                             weight(&c, uni(&c, H, 0.0, 2.5), H, false),
                             weight(&c, uni(&c, H, 0.5, 1.5), H, false),
                             weight(&c, uni(&c, di, 0.5, 1.5), di, false),
                             matrix(&c, D, di)};
    int64_t steps[4] = {first, 1, 1, 3}, total = 0;
    for (int s = 0; s < 4; s++) total += steps[s];
    const float *x = rnd(&c, total * D, 1.0);
    hylo_mamba2_state ref = {rnd(&c, conv_n, 1.0), rnd(&c, ssm_n, 0.5)};
    if (!open_case(&c, "mamba2", name)) {
        close_case(&c);
        return;
    }
    hylo_mamba2_state dev = {dev_of(&c, ref.conv, conv_n), dev_of(&c, ref.ssm, ssm_n)};
    int64_t pos = 0;
    for (int s = 0; s < 4; s++) {
        const int64_t T = steps[s];
        const hylo_scan scan = s == 0 ? HYLO_SCAN_CHUNKED : HYLO_SCAN_RECURRENT;
        float *want = host_alloc(&c, (size_t)(T * D) * sizeof(float)), *y = dev_nan(&c, T * D);
        hylo_ref_mamba2_forward(&d, &w, &ref, x + pos * D, T, want, scan, NULL, &c.err);
        hylo_hip_mamba2_forward(c.ctx, &d, &w, &dev, dev_of(&c, x + pos * D, T * D), T, y, scan,
                                NULL, &c.err);
        char variant[64];
        snprintf(variant, sizeof variant, "%s %s T%lld", name,
                 s == 0 ? "chunked" : "recurrent", (long long)T);
        const double limit = bf16 ? LIMIT_BF16_LAYER : LIMIT_F32;
        compare("mamba2", variant, dtype_of(&c), host_of(&c, y, T * D), want, T * D, limit);
        compare("mamba2 ssm", variant, dtype_of(&c), host_of(&c, dev.ssm, ssm_n), ref.ssm, ssm_n,
                limit);
        compare("mamba2 conv", variant, dtype_of(&c), host_of(&c, dev.conv, conv_n), ref.conv,
                conv_n, limit);
        pos += T;
    }
    close_case(&c);
}

/* As check_mamba2. */
static void check_gdn(uint64_t seed, const char *name, hylo_gdn_dims d, int64_t first, bool bf16)
{
    const int64_t D = d.hidden, nk = d.k_heads * d.head_k, nv = d.v_heads * d.head_v;
    const int64_t Hv = d.v_heads, K = d.d_conv, S_n = Hv * d.head_k * d.head_v;
    tcase c;
    start(&c, seed, name, bf16);
    hylo_gdn_weights w = {matrix(&c, nk, D),
                          matrix(&c, nk, D),
                          matrix(&c, nv, D),
                          matrix(&c, nv, D),
                          matrix(&c, Hv, D),
                          matrix(&c, Hv, D),
                          weight(&c, uni(&c, Hv, -1.0, 1.0), Hv, false),
                          weight(&c, uni(&c, Hv, -3.0, 0.0), Hv, false),
                          weight(&c, rnd(&c, nk * K, 0.5), nk * K, false),
                          weight(&c, rnd(&c, nk * K, 0.5), nk * K, false),
                          weight(&c, rnd(&c, nv * K, 0.5), nv * K, false),
                          weight(&c, uni(&c, d.head_v, 0.5, 1.5), d.head_v, false),
                          matrix(&c, D, nv)};
    int64_t steps[4] = {first, 1, 1, 3}, total = 0;
    for (int s = 0; s < 4; s++) total += steps[s];
    const float *x = rnd(&c, total * D, 1.0);
    hylo_gdn_state ref = {rnd(&c, nk * (K - 1), 1.0), rnd(&c, nk * (K - 1), 1.0),
                          rnd(&c, nv * (K - 1), 1.0), rnd(&c, S_n, 0.1)};
    if (!open_case(&c, "gdn", name)) {
        close_case(&c);
        return;
    }
    hylo_gdn_state dev = {dev_of(&c, ref.q_conv, nk * (K - 1)), dev_of(&c, ref.k_conv, nk * (K - 1)),
                          dev_of(&c, ref.v_conv, nv * (K - 1)), dev_of(&c, ref.S, S_n)};
    int64_t pos = 0;
    for (int s = 0; s < 4; s++) {
        const int64_t T = steps[s];
        const hylo_scan scan = s == 0 ? HYLO_SCAN_CHUNKED : HYLO_SCAN_RECURRENT;
        float *want = host_alloc(&c, (size_t)(T * D) * sizeof(float)), *y = dev_nan(&c, T * D);
        hylo_ref_gdn_forward(&d, &w, &ref, x + pos * D, T, want, scan, NULL, &c.err);
        hylo_hip_gdn_forward(c.ctx, &d, &w, &dev, dev_of(&c, x + pos * D, T * D), T, y, scan,
                             NULL, &c.err);
        char variant[64];
        snprintf(variant, sizeof variant, "%s %s T%lld", name,
                 s == 0 ? "chunked" : "recurrent", (long long)T);
        const double limit = bf16 ? LIMIT_BF16_LAYER : LIMIT_F32;
        compare("gdn", variant, dtype_of(&c), host_of(&c, y, T * D), want, T * D, limit);
        compare("gdn state", variant, dtype_of(&c), host_of(&c, dev.S, S_n), ref.S, S_n, limit);
        compare("gdn v_conv", variant, dtype_of(&c), host_of(&c, dev.v_conv, nv * (K - 1)),
                ref.v_conv, nv * (K - 1), limit);
        pos += T;
    }
    close_case(&c);
}

/* ------------------------------------------------------------------------------------------ */
/* Distillation loss: KD + CE fused over the vocabulary (losses/kd.hip)                        */
/* ------------------------------------------------------------------------------------------ */

/* One case: sizes, rows per chunk and vocabulary tile, options; hidden states N(0, h_scale^2),
 * heads N(0, 1/D); labels uniform in [0, V), each -100 with probability `ignore` (no labels
 * when ignore < 0); grads: 2 both gradients, 1 dL/dh_S only, 0 the values only. */
typedef struct {
    const char *name;
    int64_t N, V, Ds, Dt, chunk, tile, batch;
    hylo_kl_reduction reduction;
    double tau, kl_weight, ce_weight, h_scale, ignore;
    int grads;
} kd_case;

/* |got - want| / |want|; +Inf when got is not finite and want is (0 when they are equal). */
static double kd_rel(double got, double want)
{
    if (got == want) return 0.0;
    if (!isfinite(got)) return INFINITY;
    return want != 0.0 ? fabs(got - want) / fabs(want) : fabs(got - want);
}

/* hylo_hip_kd_loss_logit_free against hylo_kd_loss_logit_free on the same operands: in a bf16
 * context the hidden states and heads are rounded to bf16 on the host first, so that both
 * multiply the same values (the head's bf16 copy made by the op, or given when head_bf16).
 * Limits. Values (the largest relative error of loss, kl and ce; the target counts must match):
 * fp32 1e-6: the logits are fp32 sums of D products (~1e-7 relative to ref's double sums) and
 * the row statistics fp32 (a CPU emulation of the kernels measured <= 1.4e-7); bf16 1e-5 (the
 * same operands, accumulated by the tensor cores). Gradients dL/dh_S and dL/dW_S by NMSE: fp32
 * LIMIT_F32 (emulated ~1e-12); bf16 LIMIT_BF16_OP: G = dL/dZ_S is rounded to bf16 for the two
 * gradient GEMMs, 2^-9 relative per entry (emulated ~3e-6). */
static void check_kd(uint64_t seed, const kd_case *k, bool bf16, bool head_bf16)
{
    const int64_t N = k->N, V = k->V, Ds = k->Ds, Dt = k->Dt;
    char variant[64];
    snprintf(variant, sizeof variant, "%s%s", k->name, head_bf16 ? ", W bf16" : "");
    tcase c;
    start(&c, seed, k->name, bf16);
    float *x[4] = {rnd(&c, N * Ds, k->h_scale), rnd(&c, V * Ds, 1.0 / sqrt((double)Ds)),
                   rnd(&c, N * Dt, k->h_scale), rnd(&c, V * Dt, 1.0 / sqrt((double)Dt))};
    const int64_t len[4] = {N * Ds, V * Ds, N * Dt, V * Dt};
    for (int a = 0; bf16 && a < 4; a++)
        for (int64_t i = 0; i < len[a]; i++) x[a][i] = hylo_bf16_to_f32(hylo_f32_to_bf16(x[a][i]));
    int32_t *labels = NULL;
    if (k->ignore >= 0) {
        labels = host_alloc(&c, (size_t)N * sizeof(int32_t));
        for (int64_t r = 0; r < N; r++) {
            const int64_t y = (int64_t)(hylo_rng_uniform(&c.rng) * (double)V);
            labels[r] = hylo_rng_uniform(&c.rng) < k->ignore ? -100 : (int32_t)(y < V ? y : V - 1);
        }
    }
    hylo_kd_options opt = hylo_kd_options_default();
    opt.batch = k->batch;
    opt.reduction = k->reduction;
    opt.temperature = k->tau;
    opt.kl_weight = k->kl_weight;
    opt.ce_weight = k->ce_weight;
    const hylo_kd_side S = {x[0], x[1], Ds}, T = {x[2], x[3], Dt};
    float *dh_want = k->grads >= 1 ? host_alloc(&c, (size_t)(N * Ds) * sizeof(float)) : NULL;
    float *dw_want = k->grads >= 2 ? host_alloc(&c, (size_t)(V * Ds) * sizeof(float)) : NULL;
    hylo_kd_result want;
    if (hylo_kd_loss_logit_free(&S, &T, labels, N, V, k->chunk, k->tile, &opt, &want, dh_want,
                                dw_want, &c.err) != HYLO_OK) {
        failed("kd", variant, c.err.message);
        close_case(&c);
        return;
    }
    if (!open_case(&c, "kd", variant)) {
        close_case(&c);
        return;
    }
    hylo_hip_kd_side dS = {dev_of(&c, x[0], len[0]), dev_of(&c, x[1], len[1]), NULL, Ds};
    hylo_hip_kd_side dT = {dev_of(&c, x[2], len[2]), dev_of(&c, x[3], len[3]), NULL, Dt};
    if (head_bf16) {
        uint16_t *ws = (uint16_t *)dev_alloc(&c, len[1]), *wt = (uint16_t *)dev_alloc(&c, len[3]);
        hylo_hip_to_bf16(c.ctx, dS.lm_head, ws, len[1]);
        hylo_hip_to_bf16(c.ctx, dT.lm_head, wt, len[3]);
        dS = (hylo_hip_kd_side){dS.hidden, NULL, ws, Ds};
        dT = (hylo_hip_kd_side){dT.hidden, NULL, wt, Dt};
    }
    float *dh = dh_want ? dev_nan(&c, N * Ds) : NULL, *dw = dw_want ? dev_nan(&c, V * Ds) : NULL;
    hylo_kd_result got = {NAN, NAN, NAN, -1};
    if (hylo_hip_kd_loss_logit_free(c.ctx, &dS, &dT, labels, N, V, k->chunk, k->tile, &opt, &got,
                                    dh, dw, &c.err) != HYLO_OK) {
        failed("kd", variant, c.err.message);
        close_case(&c);
        return;
    }
    const double rel = fmax(fmax(kd_rel(got.loss, want.loss), kd_rel(got.kl, want.kl)),
                            got.targets == want.targets ? kd_rel(got.ce, want.ce) : INFINITY);
    record("kd values", variant, dtype_of(&c), rel, fabs(got.loss - want.loss), bf16 ? 1e-5 : 1e-6);
    const double limit = bf16 ? LIMIT_BF16_OP : LIMIT_F32;
    if (dh)
        compare("kd dL/dh_S", variant, dtype_of(&c), host_of(&c, dh, N * Ds), dh_want, N * Ds, limit);
    if (dw)
        compare("kd dL/dW_S", variant, dtype_of(&c), host_of(&c, dw, V * Ds), dw_want, V * Ds, limit);
    close_case(&c);
}

/* V prime and not a multiple of the tile, N prime or odd multiples of B, tau != 1, ignored
 * labels, D_S != D_T, several chunks of rows, each gradient subset; fp32 and bf16 (heads
 * rounded by the op, or given as bf16 copies on alternate cases). */
static void check_kd_losses(uint64_t seed)
{
    const kd_case cases[] = {
        {"N37 V1009 t256 c16 KL", 37, 1009, 64, 64, 16, 256, 1, HYLO_KL_BATCHMEAN, 1.0, 1.0, 0.0, 1.0, -1.0, 2},
        {"N39 V1031 D48/80 tau2 CE tokmean", 39, 1031, 48, 80, 39, 128, 3, HYLO_KL_TOKEN_MEAN, 2.0, 1.0, 0.5, 1.0, 0.25, 2},
        {"N51 V2003 D96/64 tau.5 c20 CE", 51, 2003, 96, 64, 20, 512, 3, HYLO_KL_BATCHMEAN, 0.5, 0.7, 0.3, 2.0, 0.1, 2},
        {"N64 V32003 D256/384 t4096 CE", 64, 32003, 256, 384, 64, 4096, 2, HYLO_KL_BATCHMEAN, 1.0, 1.0, 0.1, 1.0, 0.05, 2},
        {"N13 V499 tau1.5 c5 dh only", 13, 499, 32, 40, 5, 100, 1, HYLO_KL_TOKEN_MEAN, 1.5, 1.0, 1.0, 1.0, 0.2, 1},
        {"N13 V499 CE only, values", 13, 499, 32, 40, 13, 499, 1, HYLO_KL_BATCHMEAN, 1.0, 0.0, 1.0, 1.0, 0.2, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int bf16 = 0; bf16 < 2; bf16++) check_kd(seed, &cases[i], bf16, bf16 && i % 2 == 1);
}

/* ------------------------------------------------------------------------------------------ */
/* Whole models                                                                                */
/* ------------------------------------------------------------------------------------------ */

/* The logits of a prefill of 12 tokens and 3 greedy decode steps ([4, V]; the decode tokens
 * are the reference's, fed to both). */
static hylo_status run_model(hylo_model *m, hylo_backend backend, hylo_weights weights,
                             int32_t *tokens, float *logits, hylo_error *err)
{
    const int64_t V = hylo_model_config(m)->vocab_size;
    hylo_state *s = NULL;
    hylo_status st = hylo_model_set_backend(m, backend, weights, err);
    if (st == HYLO_OK) st = hylo_state_create(m, 16, &s, err);
    if (st == HYLO_OK) st = hylo_forward(m, s, tokens, 12, HYLO_LOGITS_LAST, logits, err);
    for (int64_t g = 0; g < 3 && st == HYLO_OK; g++) {
        if (backend == HYLO_BACKEND_REF) {
            int64_t best = 0;
            for (int64_t i = 1; i < V; i++)
                if (logits[g * V + i] > logits[g * V + best]) best = i;
            tokens[12 + g] = (int32_t)best;
        }
        st = hylo_forward(m, s, tokens + 12 + g, 1, HYLO_LOGITS_LAST, logits + (g + 1) * V, err);
    }
    hylo_state_free(s);
    return st;
}

static void check_model(const char *dir, bool bf16)
{
    hylo_error err = {0};
    hylo_model *m = NULL;
    int32_t tokens[15] = {7, 1, 42, 3, 99, 5, 17, 250, 11, 64, 2, 128};
    if (hylo_model_load(dir, &m, &err) != HYLO_OK) {
        failed("model", dir, err.message);
        return;
    }
    const int64_t V = hylo_model_config(m)->vocab_size;
    float *want = calloc((size_t)(4 * V), sizeof(float)), *got = calloc((size_t)(4 * V), sizeof(float));
    for (int64_t i = 0; got && i < 4 * V; i++) got[i] = NAN;
    if (!want || !got) {
        failed("model", dir, "out of memory");
    } else if (run_model(m, HYLO_BACKEND_REF, HYLO_WEIGHTS_F32, tokens, want, &err) != HYLO_OK ||
               run_model(m, HYLO_BACKEND_HIP, bf16 ? HYLO_WEIGHTS_BF16 : HYLO_WEIGHTS_F32, tokens,
                         got, &err) != HYLO_OK) {
        failed("model", dir, err.message);
    } else {
        const size_t len = strlen(dir);
        compare("model logits", len > 40 ? dir + len - 40 : dir, bf16 ? "bf16" : "f32", got,
                want, 4 * V, bf16 ? 1e-2 : 1e-8);
    }
    free(want);
    free(got);
    hylo_model_free(m);
}

/* Decode steps replayed from recordings (core/step.hip) against the same steps run op by op
 * (HYLO_HIP_GRAPH=0): a prefill of 12 tokens into a state of capacity 16, then REPLAY_STEPS
 * steps, across the state's growth and the decode attention's changes of plan (each a new
 * recording), must give the same logits bit for bit (the same kernels on the same inputs), and
 * most steps must have been replays; none for a model with MLA k_norms, whose naive decode
 * refuses to be recorded (its failed recordings then rerun the ops). Fills logits
 * [1 + REPLAY_STEPS, V]. */
#define REPLAY_STEPS 150

static hylo_status run_steps(hylo_model *m, bool bf16, bool record, float *logits,
                             int64_t *recordings, int64_t *replays, hylo_error *err)
{
    const int64_t V = hylo_model_config(m)->vocab_size;
    int32_t tokens[12 + REPLAY_STEPS];
    for (int64_t i = 0; i < 12 + REPLAY_STEPS; i++) tokens[i] = (int32_t)((i * 37 + 11) % V);
    if (record) unsetenv("HYLO_HIP_GRAPH");
    else setenv("HYLO_HIP_GRAPH", "0", 1);
    hylo_state *s = NULL;
    hylo_status st = hylo_model_set_backend(m, HYLO_BACKEND_HIP,
                                            bf16 ? HYLO_WEIGHTS_BF16 : HYLO_WEIGHTS_F32, err);
    if (st == HYLO_OK) st = hylo_state_create(m, 16, &s, err);
    unsetenv("HYLO_HIP_GRAPH");
    if (st == HYLO_OK) st = hylo_forward(m, s, tokens, 12, HYLO_LOGITS_LAST, logits, err);
    for (int64_t t = 0; t < REPLAY_STEPS && st == HYLO_OK; t++)
        st = hylo_forward(m, s, tokens + 12 + t, 1, HYLO_LOGITS_LAST, logits + (t + 1) * V, err);
    if (s) {
        const hylo_hip_steps *steps = &((const hylo_hip_ctx *)s->ctx)->steps;
        *recordings = steps->recordings;
        *replays = steps->replays;
    }
    hylo_state_free(s);
    return st;
}

/* Whether the model's decode steps can be recorded: no MLA layer with a k_norm. */
static bool steps_recordable(const hylo_model *m)
{
    for (int64_t li = 0; li < hylo_model_config(m)->num_layers; li++)
        if (m->layers[li].mixer == HYLO_MIXER_MLA && hylo_model_mla_layer(m, li).w.k_norm)
            return false;
    return true;
}

static void check_replays(const char *dir, bool bf16)
{
    hylo_error err = {0};
    hylo_model *m = NULL;
    if (hylo_model_load(dir, &m, &err) != HYLO_OK) {
        failed("replays", dir, err.message);
        return;
    }
    const int64_t n = (1 + REPLAY_STEPS) * hylo_model_config(m)->vocab_size;
    float *want = malloc((size_t)n * sizeof(float)), *got = malloc((size_t)n * sizeof(float));
    int64_t recordings = 0, replays = 0, none = 0;
    const size_t len = strlen(dir);
    char variant[96];
    if (!want || !got) {
        failed("replays", dir, "out of memory");
    } else if (run_steps(m, bf16, false, want, &none, &none, &err) != HYLO_OK ||
               run_steps(m, bf16, true, got, &recordings, &replays, &err) != HYLO_OK) {
        failed("replays", dir, err.message);
    } else if (steps_recordable(m) ? replays < REPLAY_STEPS / 2 : replays > 0) {
        snprintf(variant, sizeof variant, "%s: %lld replays of %d steps",
                 len > 30 ? dir + len - 30 : dir, (long long)replays, REPLAY_STEPS);
        failed("replays", variant, steps_recordable(m) ? "fewer than half the steps replayed"
                                                       : "a naive MLA decode was replayed");
    } else {
        snprintf(variant, sizeof variant, "%s: %lld rec, %lld replays",
                 len > 24 ? dir + len - 24 : dir, (long long)recordings, (long long)replays);
        /* bit for bit: memcmp, then the NMSE row (0) for the table */
        if (memcmp(got, want, (size_t)n * sizeof(float)) != 0)
            failed("replays", variant, "logits differ from the steps run op by op");
        else
            compare("replays", variant, bf16 ? "bf16" : "f32", got, want, n, 0.0);
    }
    free(want);
    free(got);
    hylo_model_free(m);
}

/* ------------------------------------------------------------------------------------------ */

static void run_ops(uint64_t seed)
{
    for (int bf16 = 0; bf16 < 2; bf16++) {
        check_gemm(seed, bf16);
        check_linear(seed, bf16, 7, 96);
        check_linear(seed, bf16, 1, 96);
        check_linear(seed, bf16, 1, 97);
        check_linears(seed, bf16, 1, 96);
        check_linears(seed, bf16, 5, 96);
        check_linears(seed, bf16, 1, 97);
        check_mlp(seed, bf16);
    }
    check_rmsnorm(seed);
    check_add_rmsnorm(seed, 3, 200);
    check_add_rmsnorm(seed, 300, 200);
    check_add_rmsnorm(seed, 1, 2048);
    check_add_rmsnorm(seed, 2, 3000);
    check_add_rmsnorm(seed, 2, 20000);
    check_rope(seed);
    const rope_case ropes[] = {
        {"teacher", 8, 2, 64, 64, 0, 128, false, false, 0, 0}, /* the ops table's       */
        {"mla", 4, 1, 32, 48, 16, 64, true, false, 0, 0},    /* q_pe slices, k_pe, latent */
        {"mla raw k_pe", 4, 1, 32, 48, 16, 64, true, true, 0, 0}, /* a k_norm layer's     */
        {"mla absorbed", 4, 1, 32, 48, 16, 64, true, false, 24, 2}, /* a decode step's    */
    };
    for (size_t i = 0; i < sizeof ropes / sizeof ropes[0]; i++)
        for (int bf16 = 0; bf16 < 2; bf16++) check_rope_store(seed, &ropes[i], bf16);
    check_conv(seed, 11);
    check_conv(seed, 2);
    check_conv(seed, 1);
    check_conv_step(seed);
    for (int bf16 = 0; bf16 < 2; bf16++) {
        check_attention(seed, 37, 37, 8, 2, 64, bf16);   /* prefill, several query and key tiles */
        check_attention(seed, 9, 50, 4, 4, 128, bf16);   /* continued prefill, hd 128             */
        check_attention(seed, 1, 700, 8, 2, 64, bf16);   /* decode over three splits              */
        check_attention(seed, 1, 1, 32, 8, 64, bf16);    /* decode of the first position          */
        check_attention(seed, 1, 77, 12, 4, 12, bf16);   /* rows not of whole 16-byte chunks      */
        check_attention(seed, 1, 9000, 32, 8, 64, bf16); /* decode, several tiles a block         */
        check_attention(seed, 300, 300, 8, 2, 64, bf16); /* GEMM prefill: a group's heads batched */
        check_attention(seed, 200, 520, 4, 2, 128, bf16); /* GEMM continued prefill, hd 128       */
        check_attention(seed, 96, 130, 12, 4, 12, bf16); /* GEMM, head hh of each group batched   */
        check_attention(seed, 80, 80, 4, 4, 64, bf16);   /* GEMM, one head per group              */
        setenv("HYLO_HIP_ATTENTION_BUDGET", "1048576", 1); /* a 1 MiB workspace: query blocks */
        setenv("HYLO_HIP_ATTENTION", "gemm", 1);         /* of 192 + 128 rows (bf16 128, 128, */
        check_attention(seed, 320, 340, 8, 2, 64, bf16); /* 64), bf16 kept off the flash kernel */
        unsetenv("HYLO_HIP_ATTENTION");
        unsetenv("HYLO_HIP_ATTENTION_BUDGET");
    }
    const attend_case flash[] = {
        {37, 37, 8, 2, 64, 0, 64},      /* query and key tiles cut short, group 4        */
        {2, 70, 4, 2, 64, 0, 64},       /* two queries over two key tiles                */
        {100, 333, 4, 4, 128, 0, 128},  /* continued prefill, group 1, hd 128            */
        {150, 150, 16, 2, 64, 0, 64},   /* group 8: a block of 8 heads x 8 positions     */
        {65, 65, 6, 3, 96, 0, 96},      /* dims zero-padded to 128, group 2              */
        {77, 200, 8, 2, 128, 64, 128},  /* MLA: key parts 128 + 64 (shared), values 128  */
        {130, 130, 12, 12, 32, 32, 64}, /* MLA, parts 32 + 32, values 64, group 1        */
        {1000, 1500, 8, 1, 128, 0, 128}, /* long continued prefill, group 8              */
    };
    for (size_t i = 0; i < sizeof flash / sizeof flash[0]; i++) check_attend_flash(seed, &flash[i]);
    const decode_case decode[] = {
        {1, 32, 8, 128, 32, 64},     /* the first position                                */
        {77, 32, 8, 128, 32, 64},    /* Llama-1B MLA sizes: short spans, sliced heads      */
        {700, 32, 8, 128, 32, 64},
        {40000, 32, 8, 128, 32, 64}, /* several tiles a block                              */
        {9000, 16, 4, 512, 64, 128}, /* wide rows: short tiles (bf16), staged value by     */
                                     /* value (fp32), heads sliced for the value threads,  */
                                     /* the projection's weights loaded in several rounds  */
    };
    for (size_t i = 0; i < sizeof decode / sizeof decode[0]; i++)
        for (int bf16 = 0; bf16 < 2; bf16++) check_attend_decode(seed, &decode[i], bf16);
    const mla_case mla[] = {
        {"q_rank, latent norms", {64, 4, 2, 48, 32, 16, 8, 16, 1e-6}, true, false, {21, 5, 1, 1}},
        {"q_proj, Hm = H", {64, 4, 4, 0, 32, 16, 8, 16, 1e-6}, false, false, {21, 5, 1, 1}},
        {"q/k norms (Qwen3)", {64, 4, 2, 48, 32, 16, 8, 16, 1e-6}, false, true, {21, 5, 1, 1}},
        {"Llama-1B sizes", {2048, 32, 8, 1344, 128, 32, 32, 64, 1e-6}, false, false, {200, 99, 1, 1}},
        {"Qwen-1.7B sizes", {2048, 16, 8, 1344, 256, 64, 64, 128, 1e-6}, false, true, {150, 1, 1, 1}},
    };
    for (size_t i = 0; i < sizeof mla / sizeof mla[0]; i++)
        for (int bf16 = 0; bf16 < 2; bf16++) check_mla(seed, &mla[i], bf16);
    const hylo_mamba2_dims stock = {64, 4, 8, 16, 4, 2, 2, 2, 4, 16, 1e-5};
    const hylo_mamba2_dims upcycled = {64, 4, 8, 8, 2, 2, 4, 4, 4, 16, 1e-5};
    const hylo_mamba2_dims llama1b = {2048, 32, 64, 64, 8, 8, 32, 32, 4, 256, 1e-5};
    const hylo_gdn_dims small = {64, 2, 4, 32, 48, 4, 16, 1e-5};
    const hylo_gdn_dims hylo1b = {2048, 6, 6, 256, 512, 4, 64, 1e-5};
    const hylo_gdn_dims odd = {64, 1, 3, 20, 37, 4, 16, 1e-5}; /* a part-empty column block */
    for (int bf16 = 0; bf16 < 2; bf16++) {
        check_mamba2(seed, "stock layout", stock, 37, bf16);
        check_mamba2(seed, "upcycled layout", upcycled, 37, bf16);
        check_mamba2(seed, "Llama-1B sizes", llama1b, 300, bf16);
        setenv("HYLO_HIP_SSD_BUDGET", "50000", 1); /* chunks of the SSD in slabs of 2 + 1 */
        check_mamba2(seed, "stock layout, slabs", stock, 37, bf16);
        setenv("HYLO_HIP_SSD_BUDGET", "1", 1); /* one chunk a slab, the last one of 88 tokens */
        check_mamba2(seed, "Llama-1B sizes, slabs", llama1b, 600, bf16);
        unsetenv("HYLO_HIP_SSD_BUDGET");
        check_gdn(seed, "Hk 2 Hv 4", small, 37, bf16);
        check_gdn(seed, "Hk 1 Hv 3, dk 20 dv 37", odd, 37, bf16);
        check_gdn(seed, "HyLo-1B sizes", hylo1b, 150, bf16);
        check_gdn(seed, "HyLo-1B sizes, 5 chunks", hylo1b, 300, bf16); /* last of 44 tokens */
        setenv("HYLO_HIP_GDN_BUDGET", "1", 1); /* the chunked rule one chunk a segment */
        check_gdn(seed, "Hk 2 Hv 4, segments", small, 37, bf16);
        setenv("HYLO_HIP_GDN_BUDGET", "10485760", 1); /* segments of 2 + 2 + 1 chunks */
        check_gdn(seed, "HyLo-1B sizes, segments", hylo1b, 300, bf16);
        unsetenv("HYLO_HIP_GDN_BUDGET");
    }
    check_kd_losses(seed);
}

int main(int argc, char **argv)
{
    uint64_t seed = 1;
    int first_model = argc;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            seed = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--models") == 0) {
            first_model = i + 1;
            break;
        } else {
            fprintf(stderr, "usage: hylo-hip-check [--seed N] [--models DIR...]\n");
            return 2;
        }
    }
    const int engines = hylo_hip_has_blas() ? 2 : 1;
    for (int e = 0; e < engines; e++) {
        engine = e == 0 && engines == 2 ? "blas" : "builtin";
        setenv("HYLO_HIP_GEMM", engine, 1);
        run_ops(seed);
        for (int i = first_model; i < argc; i++)
            for (int bf16 = 0; bf16 < 2; bf16++) {
                check_model(argv[i], bf16);
                check_replays(argv[i], bf16);
            }
    }
    printf("%-14s %-46s %-5s %10s %10s %8s  %s\n", "op", "case [gemm]", "type", "nmse",
           "max_abs", "limit", "");
    for (int i = 0; i < n_results; i++) {
        const result *r = &results[i];
        printf("%-14s %-46s %-5s %10.2e %10.2e %8.0e  %s\n", r->op, r->variant, r->dtype, r->nmse,
               r->max_abs, r->limit, r->nmse <= r->limit ? "ok" : "FAIL");
    }
    printf("hylo-hip-check: %d checks, %d failed (seed %llu)\n", n_results, n_failed,
           (unsigned long long)seed);
    free(results);
    return n_failed == 0 ? 0 : 1;
}
