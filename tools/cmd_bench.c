/* cmd_bench.c: `hylo bench`: prefill and decode speed of a model on a backend, set against the
 * sgemm peak and the memory bandwidth measured in the same run; decode speed and cache memory
 * per context (--sweep-context), teacher and hybrid; single ops (--op). A benchmark, not a
 * test: numbers depend on the machine and on what else runs on it (best of --repeat runs).
 *
 * Counting: prefill FLOPs = 2 T x (matrix parameters; the LM head once, for the last row)
 * + the causal attention products (scores and values, T (T + 1) / 2 pairs per head); decode
 * bytes = the matrices streamed per token (4 or 2 bytes each) + the cache rows read (fp32) +
 * the recurrent states read and written. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../backend_cpu/layers/cpu_layers.h"
#include "cli.h"
#include "core/clock.h"
#include "io/json.h"
#include "layers/layers.h"
#include "model/model.h"

#define COMMAND "bench"
#define MAX_POINTS 16

bool cli_backend(const char *command, const cli_option *opts, size_t n, hylo_backend fallback,
                 hylo_backend *backend, hylo_weights *weights)
{
    const char *b = cli_get(opts, n, "--backend"), *w = cli_get(opts, n, "--weights");
    *backend = fallback;
    *weights = HYLO_WEIGHTS_F32;
    if (b && !hylo_backend_parse(b, backend)) {
        fprintf(stderr, "hylo %s: --backend must be ref, cpu or hip, got '%s'\n", command, b);
        return false;
    }
    if (w && !hylo_weights_parse(w, weights)) {
        fprintf(stderr, "hylo %s: --weights must be f32 or bf16, got '%s'\n", command, w);
        return false;
    }
    if (*weights == HYLO_WEIGHTS_BF16 && *backend == HYLO_BACKEND_REF) {
        fprintf(stderr, "hylo %s: --weights bf16 needs --backend cpu or hip\n", command);
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------------------------------ */
/* Clock, memory, output                                                                       */
/* ------------------------------------------------------------------------------------------ */

/* The run's results, printed as a table or as one JSON object. */
typedef struct {
    hylo_text json;
    bool first, as_json;
} report;

static void put_number(report *r, const char *key, double v)
{
    hylo_json_put_double(&r->json, &r->first, 2, key, v);
}

static void put_string(report *r, const char *key, const char *v)
{
    hylo_json_put_string(&r->json, &r->first, 2, key, v);
}

/* "1K,8K,32K" or "512,1024" -> values (K = 1024); false on a bad list. */
static bool parse_sizes(const char *text, int64_t *values, int *count)
{
    *count = 0;
    for (const char *p = text; *p;) {
        char *end;
        long long v = strtoll(p, &end, 10);
        if (end == p || v <= 0 || *count == MAX_POINTS) return false;
        if (*end == 'K' || *end == 'k') {
            v *= 1024;
            end++;
        }
        values[(*count)++] = v;
        if (*end == ',') end++;
        else if (*end) return false;
        p = end;
    }
    return *count > 0;
}

static float *random_buffer(int64_t n, uint64_t seed, double mean, double std)
{
    float *x = malloc((size_t)(n > 0 ? n : 1) * sizeof *x);
    if (!x) return NULL;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < (n + 65535) / 65536; c++) {
        uint64_t s = seed * 0x9e3779b97f4a7c15ull + (uint64_t)c;
        for (int64_t i = c * 65536; i < n && i < (c + 1) * 65536; i++) {
            uint64_t z = (s += 0x9e3779b97f4a7c15ull);
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
            z ^= z >> 31;
            /* uniform with the given standard deviation */
            x[i] = (float)(mean + std * sqrt(3.0) * ((double)(z >> 11) * 0x1p-52 - 1.0));
        }
    }
    return x;
}

/* ------------------------------------------------------------------------------------------ */
/* The machine: sgemm peak and streaming bandwidth                                            */
/* ------------------------------------------------------------------------------------------ */

/* GFLOP/s of the backend's threaded GEMM (the one prefill projections use), the best of
 * `repeat` + 4 runs on each of [512, 2048] x [2048, 8192] and [1024, 2048] x [2048, 4096] after
 * a warm-up run. */
static double sgemm_peak(int repeat)
{
    const int64_t K = 2048, shapes[2][2] = {{512, 8192}, {1024, 4096}};
    float *X = random_buffer(1024 * K, 1, 0.0, 1.0), *W = random_buffer(8192 * K, 2, 0.0, 0.02);
    float *Y = malloc((size_t)(1024 * 8192) * sizeof *Y);
    double best = 0.0;
    hylo_cpu_blas_init();
    for (int k = 0; X && W && Y && k < 2; k++) {
        const int64_t M = shapes[k][0], N = shapes[k][1];
        for (int r = 0; r <= repeat + 4; r++) {
            const double t0 = hylo_seconds();
            hylo_cpu_gemm_xwt(X, W, NULL, Y, M, K, N);
            const double gflops = 2.0 * (double)(M * N * K) / (hylo_seconds() - t0) / 1e9;
            if (r > 0 && gflops > best) best = gflops;
        }
    }
    free(X);
    free(W);
    free(Y);
    return best;
}

/* Sum of squares of four streams at once (x, x + n, x + 2n, x + 3n): independent accumulator
 * chains and prefetch streams, as a GEMV reads four weight rows. */
HYLO_CPU_CLONES
static float read_four_streams(const float *x, int64_t n)
{
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
    for (int64_t i = 0; i < n; i++) {
        s0 += x[i] * x[i];
        s1 += x[n + i] * x[n + i];
        s2 += x[2 * n + i] * x[2 * n + i];
        s3 += x[3 * n + i] * x[3 * n + i];
    }
    return s0 + s1 + s2 + s3;
}

/* GB/s of reading 512 MiB (far beyond the caches) with every thread, in blocks of four
 * streams of 64 KiB, best of `repeat` + 2. */
static double stream_bandwidth(int repeat)
{
    const int64_t n = (int64_t)1 << 27, block = (int64_t)1 << 16;
    float *x = random_buffer(n, 3, 0.0, 1.0);
    double best = 0.0, sink = 0.0;
    for (int r = 0; x && r < repeat + 2; r++) {
        double sum = 0.0;
        const double t0 = hylo_seconds();
#pragma omp parallel for schedule(static) reduction(+ : sum)
        for (int64_t b = 0; b < n / (4 * block); b++) sum += read_four_streams(x + 4 * b * block, block);
        const double gbs = (double)n * sizeof(float) / (hylo_seconds() - t0) / 1e9;
        sink += sum;
        if (gbs > best) best = gbs;
    }
    free(x);
    return sink == sink ? best : 0.0; /* keeps the sums alive */
}

/* ------------------------------------------------------------------------------------------ */
/* Model runs                                                                                  */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    double matrix_params;   /* parameters streamed by a decode step (matrices, LM head)     */
    double kv_bytes;        /* fp32 cache bytes per position, all layers                    */
    double state_bytes;     /* recurrent states per sequence                                */
} model_sizes;

static hylo_status sizes_of(const hylo_model *m, model_sizes *s, hylo_error *err)
{
    const hylo_config *c = hylo_model_config(m);
    hylo_model_stats st;
    hylo_status rc = hylo_model_stats_of(c, hylo_model_hybrid(m), 4, &st, err);
    if (rc != HYLO_OK) return rc;
    /* the embedding is a lookup; the LM head (the embedding when tied) is streamed */
    s->matrix_params = (double)st.params_total -
                       (c->tie_word_embeddings ? 0.0 : (double)(c->vocab_size * c->hidden_size));
    s->kv_bytes = (double)st.kv_bytes_per_token;
    s->state_bytes = (double)st.state_bytes_per_sequence;
    return HYLO_OK;
}

/* FLOPs of a prefill of T tokens: every matrix once per token (LM head once), and per
 * attention / MLA layer the causal products of scores and values. */
static double prefill_flops(const hylo_model *m, const model_sizes *s, int64_t T)
{
    const hylo_config *c = hylo_model_config(m);
    const hylo_hybrid_config *hy = hylo_model_hybrid(m);
    const double head = (double)(c->vocab_size * c->hidden_size), pairs = 0.5 * (double)T * (double)(T + 1);
    double flops = 2.0 * (double)T * (s->matrix_params - head) + 2.0 * head;
    for (int64_t i = 0; i < c->num_layers; i++) {
        if (hy->mixers[i] == HYLO_MIXER_ATTENTION)
            flops += 2.0 * pairs * (double)(c->num_heads * 2 * c->head_dim);
        else if (hy->mixers[i] == HYLO_MIXER_MLA)
            flops += 2.0 * pairs * (double)(c->num_heads * (hy->mla.nope + hy->mla.rope + hy->mla.v));
    }
    return flops;
}

static void random_tokens(int32_t *tokens, int64_t n, int64_t V, uint64_t seed)
{
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        tokens[i] = (int32_t)((seed >> 33) % (uint64_t)V);
    }
}

/* Seconds of a prefill of T tokens on a fresh state (best of `repeat`), the time to the first
 * token's logits. */
static hylo_status time_prefill(const hylo_model *m, int64_t T, int repeat, double *seconds,
                                hylo_error *err)
{
    const int64_t V = hylo_model_config(m)->vocab_size;
    int32_t *tokens = malloc((size_t)T * sizeof *tokens);
    float *logits = malloc((size_t)V * sizeof *logits);
    hylo_status st = tokens && logits ? HYLO_OK : hylo_error_set(err, HYLO_ERR_NOMEM, "out of memory");
    *seconds = INFINITY;
    for (int r = 0; st == HYLO_OK && r < repeat; r++) {
        hylo_state *s = NULL;
        random_tokens(tokens, T, V, (uint64_t)r + 1);
        st = hylo_state_create(m, T + 1, &s, err);
        const double t0 = hylo_seconds();
        if (st == HYLO_OK) st = hylo_forward(m, s, tokens, T, HYLO_LOGITS_LAST, logits, err);
        const double dt = hylo_seconds() - t0;
        if (st == HYLO_OK && dt < *seconds) *seconds = dt;
        hylo_state_free(s);
    }
    free(tokens);
    free(logits);
    return st;
}

/* Seconds per decode step at `context` positions (a cache of random rows), the mean of
 * `steps` steps after one warm-up step, best of `repeat`. */
static hylo_status time_decode(const hylo_model *m, int64_t context, int64_t steps, int repeat,
                               double *seconds, hylo_error *err)
{
    const int64_t V = hylo_model_config(m)->vocab_size;
    float *logits = malloc((size_t)V * sizeof *logits);
    hylo_status st = logits ? HYLO_OK : hylo_error_set(err, HYLO_ERR_NOMEM, "out of memory");
    *seconds = INFINITY;
    for (int r = 0; st == HYLO_OK && r < repeat; r++) {
        hylo_state *s = NULL;
        st = hylo_state_create(m, context + steps + 1, &s, err);
        if (st == HYLO_OK) st = hylo_state_fill_random(s, context, (uint64_t)r + 7, err);
        int32_t token = 1;
        if (st == HYLO_OK) st = hylo_forward(m, s, &token, 1, HYLO_LOGITS_LAST, logits, err);
        const double t0 = hylo_seconds();
        for (int64_t i = 0; st == HYLO_OK && i < steps; i++) {
            random_tokens(&token, 1, V, (uint64_t)i + 11);
            st = hylo_forward(m, s, &token, 1, HYLO_LOGITS_LAST, logits, err);
        }
        const double dt = (hylo_seconds() - t0) / (double)steps;
        if (st == HYLO_OK && dt < *seconds) *seconds = dt;
        hylo_state_free(s);
    }
    free(logits);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* Models: made from a preset in a temporary directory, or loaded                             */
/* ------------------------------------------------------------------------------------------ */

/* A random checkpoint of preset + layout (bf16, as `hylo init` writes it), written to a
 * temporary directory, loaded and deleted. */
static hylo_status random_model(const char *preset, const char *layout, hylo_model **out,
                                hylo_error *err)
{
    hylo_config cfg;
    hylo_hybrid_config hy;
    bool is_hybrid;
    hylo_status st = cli_preset_model(preset, layout, &cfg, &hy, &is_hybrid, err);
    if (st != HYLO_OK) return st;
    const char *tmp = getenv("TMPDIR");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/hylo-bench-XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) return hylo_error_set(err, HYLO_ERR_IO, "cannot create %s", dir);
    fprintf(stderr, "hylo %s: random %s%s%s weights in %s\n", COMMAND, preset, layout ? " " : "",
            layout ? layout : "", dir);
    st = hylo_init_random(&cfg, is_hybrid ? &hy : NULL, 0, dir, 0, err);
    if (st == HYLO_OK) st = hylo_model_load(dir, out, err);
    /* the weights are widened copies or mapped: the files can go */
    const char *files[] = {"model.safetensors", "config.json", "hybrid_config.json"};
    for (size_t i = 0; i < 3; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
    return st;
}

/* The model of --model, or of --preset [--layout]; the teacher of a preset hybrid when
 * `teacher` (NULL layout). */
static hylo_status open_model(const char *dir, const char *preset, const char *layout,
                              hylo_model **out, hylo_error *err)
{
    *out = NULL;
    return dir ? hylo_model_load(dir, out, err) : random_model(preset, layout, out, err);
}

/* ------------------------------------------------------------------------------------------ */
/* The model benchmark                                                                         */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    hylo_backend backend;
    hylo_weights weights;
    int64_t prompt, steps, ref_tokens;
    int repeat;
    int64_t contexts[MAX_POINTS];
    int n_contexts;
} bench_options;

typedef struct {
    double sgemm_gflops, stream_gbs;
} machine;

static void describe(report *r, const char *label, const hylo_model *m, const model_sizes *s)
{
    const hylo_config *c = hylo_model_config(m);
    const hylo_hybrid_config *hy = hylo_model_hybrid(m);
    int64_t counts[4] = {0, 0, 0, 0};
    for (int64_t i = 0; i < c->num_layers; i++) counts[hy->mixers[i]]++;
    char mixers[128];
    snprintf(mixers, sizeof mixers, "%lld attention, %lld mla, %lld mamba2, %lld gdn",
             (long long)counts[0], (long long)counts[1], (long long)counts[2], (long long)counts[3]);
    if (r->as_json) {
        put_string(r, label, mixers);
        return;
    }
    printf("%s: %lld layers (%s), D %lld, %.3f B matrix parameters\n", label,
           (long long)c->num_layers, mixers, (long long)c->hidden_size, s->matrix_params / 1e9);
}

/* The machine again after a figure: the peak and the bandwidth are the best seen, so that a
 * moment of contention at the start (another process on the machine) does not flatter the
 * figures. */
static void remeasure(machine *mc, const report *r)
{
    const double peak = sgemm_peak(1), stream = stream_bandwidth(1);
    mc->sgemm_gflops = peak > mc->sgemm_gflops ? peak : mc->sgemm_gflops;
    mc->stream_gbs = stream > mc->stream_gbs ? stream : mc->stream_gbs;
    if (!r->as_json)
        printf("machine, best of before and after: sgemm peak %.1f GFLOP/s, stream read %.1f GB/s\n",
               mc->sgemm_gflops, mc->stream_gbs);
}

/* Prefill, decode, and the cpu / ref ratio of one model. */
static hylo_status bench_model(hylo_model *m, const bench_options *o, machine *mc, report *r,
                               hylo_error *err)
{
    model_sizes s;
    hylo_status st = sizes_of(m, &s, err);
    if (st == HYLO_OK) st = hylo_model_set_backend(m, o->backend, o->weights, err);
    double prefill = 0.0, decode = 0.0;
    if (st == HYLO_OK) st = time_prefill(m, o->prompt, o->repeat, &prefill, err);
    if (st == HYLO_OK) st = time_decode(m, o->prompt, o->steps, o->repeat, &decode, err);
    if (st != HYLO_OK) return st;
    const double rss = hylo_peak_rss_bytes(); /* load, prefill and decode */
    remeasure(mc, r);
    const double flops = prefill_flops(m, &s, o->prompt);
    const double matrix_bytes = s.matrix_params * (o->weights == HYLO_WEIGHTS_BF16 ? 2.0 : 4.0);
    const double bytes = matrix_bytes + s.kv_bytes * (double)o->prompt + 2.0 * s.state_bytes;
    const double gflops = flops / prefill / 1e9, gbs = bytes / decode / 1e9;
    describe(r, "model", m, &s);
    if (r->as_json) {
        put_number(r, "prefill_tokens", (double)o->prompt);
        put_number(r, "prefill_seconds", prefill);
        put_number(r, "prefill_tokens_per_second", (double)o->prompt / prefill);
        put_number(r, "ttft_seconds", prefill);
        put_number(r, "prefill_gflops", gflops);
        put_number(r, "prefill_fraction_of_sgemm_peak", gflops / mc->sgemm_gflops);
        put_number(r, "decode_context", (double)o->prompt);
        put_number(r, "decode_seconds_per_token", decode);
        put_number(r, "decode_tokens_per_second", 1.0 / decode);
        put_number(r, "decode_bytes_per_token", bytes);
        put_number(r, "decode_gbs", gbs);
        put_number(r, "decode_fraction_of_stream", gbs / mc->stream_gbs);
        put_number(r, "model_peak_rss_bytes", rss);
    } else {
        printf("prefill %lld tokens: %.3f s = %.1f tokens/s, TTFT %.3f s; %.3f TFLOP -> %.1f "
               "GFLOP/s = %.0f%% of the sgemm peak\n",
               (long long)o->prompt, prefill, (double)o->prompt / prefill, prefill, flops / 1e12,
               gflops, 100.0 * gflops / mc->sgemm_gflops);
        printf("decode at %lld: %.1f ms/token = %.2f tokens/s; %.3f GB/token -> %.1f GB/s = "
               "%.0f%% of the stream bandwidth\n",
               (long long)o->prompt, 1e3 * decode, 1.0 / decode, bytes / 1e9, gbs,
               100.0 * gbs / mc->stream_gbs);
        printf("peak RSS of load, prefill and decode: %.2f GiB\n", rss / 1073741824.0);
    }
    if (o->ref_tokens <= 0 || o->backend == HYLO_BACKEND_REF) return HYLO_OK;
    /* the reference on a short schedule: a prefill of ref_tokens and one decode step */
    double ref_prefill, ref_decode, cpu_prefill, cpu_decode;
    st = hylo_model_set_backend(m, HYLO_BACKEND_REF, HYLO_WEIGHTS_F32, err);
    if (st == HYLO_OK) st = time_prefill(m, o->ref_tokens, 1, &ref_prefill, err);
    if (st == HYLO_OK) st = time_decode(m, o->ref_tokens, 1, 1, &ref_decode, err);
    if (st == HYLO_OK) st = hylo_model_set_backend(m, o->backend, o->weights, err);
    if (st == HYLO_OK) st = time_prefill(m, o->ref_tokens, o->repeat, &cpu_prefill, err);
    if (st == HYLO_OK) st = time_decode(m, o->ref_tokens, 1, o->repeat, &cpu_decode, err);
    if (st != HYLO_OK) return st;
    if (r->as_json) {
        put_number(r, "ref_tokens", (double)o->ref_tokens);
        put_number(r, "cpu_over_ref_prefill", ref_prefill / cpu_prefill);
        put_number(r, "cpu_over_ref_decode", ref_decode / cpu_decode);
    } else {
        printf("vs ref (prefill of %lld, 1 decode step): prefill %.2f s vs %.3f s = %.0fx, decode "
               "%.2f s vs %.3f s = %.0fx\n",
               (long long)o->ref_tokens, ref_prefill, cpu_prefill, ref_prefill / cpu_prefill,
               ref_decode, cpu_decode, ref_decode / cpu_decode);
    }
    return HYLO_OK;
}

/* Decode speed and cache memory at each context. */
static hylo_status sweep(hylo_model *m, const char *label, const bench_options *o, report *r,
                         hylo_error *err)
{
    model_sizes s;
    hylo_status st = sizes_of(m, &s, err);
    if (st == HYLO_OK) st = hylo_model_set_backend(m, o->backend, o->weights, err);
    if (st != HYLO_OK) return st;
    if (!r->as_json) {
        describe(r, label, m, &s);
        printf("  %10s %12s %12s %14s\n", "context", "tokens/s", "ms/token", "cache MiB");
    }
    for (int i = 0; i < o->n_contexts && st == HYLO_OK; i++) {
        double seconds;
        st = time_decode(m, o->contexts[i], o->steps, o->repeat, &seconds, err);
        if (st != HYLO_OK) break;
        const double cache = s.kv_bytes * (double)o->contexts[i] + s.state_bytes;
        if (r->as_json) {
            char key[96];
            snprintf(key, sizeof key, "%s_context_%lld_tokens_per_second", label,
                     (long long)o->contexts[i]);
            put_number(r, key, 1.0 / seconds);
            snprintf(key, sizeof key, "%s_context_%lld_cache_bytes", label,
                     (long long)o->contexts[i]);
            put_number(r, key, cache);
        } else {
            printf("  %10lld %12.2f %12.1f %14.1f\n", (long long)o->contexts[i], 1.0 / seconds,
                   1e3 * seconds, cache / 1048576.0);
        }
    }
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* Single ops                                                                                  */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    const char *name;
    int64_t T, context;
    double flops;
} op_point;

/* The op's dims from the preset: its teacher's attention, and the MLA / Mamba2 / GDN sizes of
 * its all-mla / all-mamba2 / all-gdn layouts. */
typedef struct {
    hylo_config cfg;
    hylo_hybrid_config mla, mamba2, gdn;
} op_shapes;

/* Owned random tensors of one op benchmark. */
typedef struct {
    float *items[24];
    int count;
    bool ok;
} op_tensors;

static float *tensor(op_tensors *t, int64_t n, double mean, double std)
{
    float *x = random_buffer(n, (uint64_t)t->count + 100, mean, std);
    if (!x || t->count == 24) {
        t->ok = false;
        free(x);
        return NULL;
    }
    t->items[t->count++] = x;
    return x;
}

static void tensors_free(op_tensors *t)
{
    for (int i = 0; i < t->count; i++) free(t->items[i]);
}

/* One call of the op on T tokens at context `context` (prefill when T > 1, decode when 1),
 * on the backend `cpu` or the reference; seconds of the best of `repeat`. */
static hylo_status run_op(const char *op, const op_shapes *sh, int64_t T, int64_t context,
                          bool cpu, int repeat, double *seconds, double *flops, hylo_error *err);

static hylo_status bench_ops(const char *op, const op_shapes *sh, const int64_t *Ts, int nT,
                             int64_t context, bool with_ref, int repeat, report *r,
                             hylo_error *err)
{
    if (!r->as_json)
        printf("op %s (context %lld):\n  %8s %12s %10s %12s %12s\n", op, (long long)context,
               "tokens", "cpu ms", "GFLOP/s", "x previous", with_ref ? "ref / cpu" : "");
    double previous = 0.0;
    hylo_status st = HYLO_OK;
    for (int i = 0; i < nT && st == HYLO_OK; i++) {
        double cpu_s, ref_s = 0.0, flops;
        st = run_op(op, sh, Ts[i], context, true, repeat, &cpu_s, &flops, err);
        if (st == HYLO_OK && with_ref) st = run_op(op, sh, Ts[i], context, false, 1, &ref_s, &flops, err);
        if (st != HYLO_OK) break;
        if (r->as_json) {
            char key[96];
            snprintf(key, sizeof key, "op_%s_T%lld_cpu_seconds", op, (long long)Ts[i]);
            put_number(r, key, cpu_s);
            snprintf(key, sizeof key, "op_%s_T%lld_gflops", op, (long long)Ts[i]);
            put_number(r, key, flops / cpu_s / 1e9);
            if (with_ref) {
                snprintf(key, sizeof key, "op_%s_T%lld_ref_seconds", op, (long long)Ts[i]);
                put_number(r, key, ref_s);
            }
        } else {
            char ratio[32] = "", vs_ref[32] = "";
            if (previous > 0.0) snprintf(ratio, sizeof ratio, "%.2f", cpu_s / previous);
            if (with_ref) snprintf(vs_ref, sizeof vs_ref, "%.0fx", ref_s / cpu_s);
            printf("  %8lld %12.3f %10.1f %12s %12s\n", (long long)Ts[i], 1e3 * cpu_s,
                   flops / cpu_s / 1e9, ratio, vs_ref);
        }
        previous = cpu_s;
    }
    return st;
}

/* Times `call` (best of repeat, one untimed warm-up). */
#define TIME_BEST(repeat, seconds, status, call)                                               \
    do {                                                                                       \
        *(seconds) = INFINITY;                                                                 \
        for (int r_ = 0; (status) == HYLO_OK && r_ <= (repeat); r_++) {                        \
            const double t0_ = hylo_seconds();                                                  \
            (status) = (call);                                                                 \
            const double dt_ = hylo_seconds() - t0_;                                            \
            if (r_ > 0 && dt_ < *(seconds)) *(seconds) = dt_;                                  \
        }                                                                                      \
    } while (0)

static hylo_status gemm_op(int64_t M, int64_t N, int64_t K, bool cpu, void *ctx, op_tensors *t)
{
    const float *X = t->items[0], *W = t->items[1];
    float *Y = t->items[2];
    if (cpu) hylo_cpu_linear(ctx, X, W, NULL, Y, M, K, N);
    else hylo_ref_linear(X, W, NULL, Y, M, K, N);
    return HYLO_OK;
}

static hylo_status run_op(const char *op, const op_shapes *sh, int64_t T, int64_t context,
                          bool cpu, int repeat, double *seconds, double *flops, hylo_error *err)
{
    const hylo_config *c = &sh->cfg;
    const int64_t D = c->hidden_size, len = context + T;
    hylo_cpu_ctx *ctx = NULL;
    hylo_status st = hylo_cpu_context_new(NULL, NULL, &ctx, err);
    op_tensors t = {.ok = true};
    const double pairs = (double)T * (double)context + 0.5 * (double)T * (double)(T + 1);
    if (st != HYLO_OK) return st;
    if (strcmp(op, "gemm") == 0) {
        /* [T, D] x [D, 4D]^T */
        tensor(&t, T * D, 0.0, 1.0), tensor(&t, 4 * D * D, 0.0, 0.02), tensor(&t, T * 4 * D, 0.0, 0.0);
        *flops = 2.0 * (double)(T * D * 4 * D);
        if (t.ok) TIME_BEST(repeat, seconds, st, gemm_op(T, 4 * D, D, cpu, ctx, &t));
    } else if (strcmp(op, "attention") == 0) {
        const int64_t H = c->num_heads, Hkv = c->num_kv_heads, hd = c->head_dim;
        const float *q = tensor(&t, T * H * hd, 0.0, 1.0), *k = tensor(&t, len * Hkv * hd, 0.0, 1.0);
        const float *v = tensor(&t, len * Hkv * hd, 0.0, 1.0);
        float *o = tensor(&t, T * H * hd, 0.0, 0.0);
        const double scale = 1.0 / sqrt((double)hd);
        *flops = 4.0 * pairs * (double)(H * hd);
        if (t.ok)
            TIME_BEST(repeat, seconds, st,
                      cpu ? hylo_cpu_gqa_attention(ctx, q, k, v, o, T, len, H, Hkv, hd, scale, err)
                          : hylo_ref_attention(q, k, v, o, T, len, H, Hkv, hd, scale, err));
    } else if (strcmp(op, "conv") == 0) {
        const hylo_mamba2_dims d = hylo_mamba2_dims_of(c, &sh->mamba2);
        const int64_t C = hylo_mamba2_conv_dim(&d), K = d.d_conv;
        const float *x = tensor(&t, T * C, 0.0, 1.0), *w = tensor(&t, C * K, 0.0, 0.5);
        float *state = tensor(&t, C * (K - 1), 0.0, 1.0), *y = tensor(&t, T * C, 0.0, 0.0);
        *flops = 2.0 * (double)(T * C * K);
        if (t.ok && cpu)
            TIME_BEST(repeat, seconds, st,
                      hylo_cpu_causal_conv1d_silu(ctx, x, w, NULL, state, y, T, C, K, err));
        else if (t.ok)
            TIME_BEST(repeat, seconds, st,
                      (hylo_ref_causal_conv1d_silu(x, w, NULL, state, y, T, C, K), HYLO_OK));
    } else if (strcmp(op, "mla") == 0) {
        const hylo_mla_config *mc = &sh->mla.mla;
        hylo_mla_layer L = {0};
        L.dims = hylo_mla_dims_of(c, &sh->mla);
        const int64_t H = c->num_heads, dq = mc->nope + mc->rope;
        L.w.q_a = mc->q_rank ? tensor(&t, mc->q_rank * D, 0.0, 1.0 / sqrt((double)D)) : NULL;
        L.w.q_b = mc->q_rank ? tensor(&t, H * dq * mc->q_rank, 0.0, 0.02) : NULL;
        L.w.q_proj = mc->q_rank ? NULL : tensor(&t, H * dq * D, 0.0, 0.02);
        L.w.kv_a = tensor(&t, (mc->kv_rank + mc->rope) * D, 0.0, 1.0 / sqrt((double)D));
        L.w.kv_b = tensor(&t, mc->kv_heads * (mc->nope + mc->v) * mc->kv_rank, 0.0, 0.05);
        L.w.out = tensor(&t, D * H * mc->v, 0.0, 0.02);
        double inv_freq[256];
        hylo_ref_rope_frequencies(&mc->rope_scaling, mc->rope, inv_freq, &L.rope_scale);
        L.rope_inv_freq = inv_freq;
        L.softmax_scale = 1.0 / sqrt((double)dq);
        hylo_mla_cache cache = {tensor(&t, len * mc->kv_rank, 0.0, 1.0), tensor(&t, len * mc->rope, 0.0, 1.0)};
        const float *x = tensor(&t, T * D, 0.0, 1.0);
        float *y = tensor(&t, T * D, 0.0, 0.0);
        *flops = 2.0 * pairs * (double)(H * (T > 1 ? dq + mc->v : 2 * mc->kv_rank + mc->rope));
        if (t.ok && cpu)
            TIME_BEST(repeat, seconds, st,
                      (T > 1 ? hylo_cpu_mla_prefill : hylo_cpu_mla_decode)(ctx, &L, &cache, context, x,
                                                                           T, y, NULL, err));
        else if (t.ok)
            TIME_BEST(repeat, seconds, st,
                      (T > 1 ? hylo_ref_mla_forward : hylo_ref_mla_forward_absorbed)(
                          &L, &cache, context, x, T, y, NULL, err));
    } else if (strcmp(op, "mamba2") == 0) {
        const hylo_mamba2_dims d = hylo_mamba2_dims_of(c, &sh->mamba2);
        const int64_t H = d.nheads, P = d.headdim, N = d.d_state;
        const float *x = tensor(&t, T * d.x_heads * P, 0.0, 1.0);
        const float *B = tensor(&t, T * d.b_groups * N, 0.0, 1.0), *C = tensor(&t, T * d.c_groups * N, 0.0, 1.0);
        const float *dt = tensor(&t, T * H, 0.05, 0.02), *A = tensor(&t, H, -4.0, 1.0);
        const float *Dv = tensor(&t, H, 1.0, 0.0);
        float *S = tensor(&t, H * P * N, 0.0, 0.1), *y = tensor(&t, T * H * P, 0.0, 0.0);
        const hylo_scan scan = T > 1 ? HYLO_SCAN_CHUNKED : HYLO_SCAN_RECURRENT;
        const double q = (double)(T < d.chunk ? T : d.chunk);
        *flops = 2.0 * (double)(T * H) * (q * (double)N + q * (double)P / 2 + 2.0 * (double)(P * N));
        if (t.ok)
            TIME_BEST(repeat, seconds, st,
                      cpu ? hylo_cpu_ssd_scan(ctx, &d, x, dt, A, B, C, Dv, S, y, T, scan, err)
                          : hylo_ref_ssd_scan(&d, x, dt, A, B, C, Dv, S, y, T, scan, err));
    } else if (strcmp(op, "gdn") == 0) {
        const hylo_gdn_dims d = hylo_gdn_dims_of(c, &sh->gdn);
        const int64_t Hk = d.k_heads, Hv = d.v_heads, dk = d.head_k, dv = d.head_v;
        float *q = tensor(&t, T * Hk * dk, 0.0, 1.0), *k = tensor(&t, T * Hk * dk, 0.0, 1.0);
        if (t.ok) {
            hylo_ref_l2norm(q, T * Hk, dk, 1e-6, 1.0 / sqrt((double)dk));
            hylo_ref_l2norm(k, T * Hk, dk, 1e-6, 1.0);
        }
        const float *v = tensor(&t, T * Hv * dv, 0.0, 1.0), *g = tensor(&t, T * Hv, -0.1, 0.02);
        const float *beta = tensor(&t, T * Hv, 0.5, 0.1);
        float *S = tensor(&t, Hv * dk * dv, 0.0, 0.1), *o = tensor(&t, T * Hv * dv, 0.0, 0.0);
        const hylo_scan scan = T > 1 ? HYLO_SCAN_CHUNKED : HYLO_SCAN_RECURRENT;
        const double n = (double)(T < d.chunk ? T : d.chunk);
        *flops = 2.0 * (double)(T * Hv) * (3.0 * (double)(dk * dv) + n * (double)(dk + dv) * 1.5);
        if (t.ok)
            TIME_BEST(repeat, seconds, st,
                      cpu ? hylo_cpu_gated_delta_rule(ctx, &d, q, k, v, g, beta, S, o, T, scan, err)
                          : hylo_ref_gated_delta_rule(&d, q, k, v, g, beta, S, o, T, scan, err));
    } else {
        st = hylo_error_set(err, HYLO_ERR_USAGE,
                            "--op must be gemm, attention, mla, mamba2, gdn or conv, got '%s'", op);
    }
    if (st == HYLO_OK && !t.ok) st = hylo_error_set(err, HYLO_ERR_NOMEM, "%s: out of memory", op);
    tensors_free(&t);
    hylo_cpu_context_free(ctx);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* The command                                                                                 */
/* ------------------------------------------------------------------------------------------ */

static hylo_status op_shapes_of(const char *preset, op_shapes *sh, hylo_error *err)
{
    hylo_status st = hylo_preset(preset, &sh->cfg, err);
    if (st == HYLO_OK) st = hylo_hybrid_layout(&sh->cfg, "all-mla", &sh->mla, err);
    if (st == HYLO_OK) st = hylo_hybrid_layout(&sh->cfg, "all-mamba2", &sh->mamba2, err);
    if (st == HYLO_OK) st = hylo_hybrid_layout(&sh->cfg, "all-gdn", &sh->gdn, err);
    return st;
}

int cmd_bench(int argc, char **argv)
{
    cli_option opts[] = {
        {"--model", "DIR", "checkpoint to benchmark", NULL},
        {"--preset", "P", "or random weights of a preset (default llama-3.2-1b)", NULL},
        {"--layout", "L", "with --preset: a hybrid layout (4MLA12GDN, ...); the sweep adds its teacher", NULL},
        {"--backend", "ref|cpu", "the implementation (default cpu)", NULL},
        {"--weights", "f32|bf16", "cpu backend: decode weight storage (default f32)", NULL},
        {"--prompt", "N", "prefill tokens, and the context of the decode figure (default 512)", NULL},
        {"--steps", "N", "decode steps timed per figure (default 16)", NULL},
        {"--ref-tokens", "N", "prefill of N tokens and a decode step on ref and cpu for the speed ratio (default 8, 0: skip)", NULL},
        {"--sweep-context", "LIST", "decode speed and cache memory at each context (e.g. 1K,8K,32K)", NULL},
        {"--op", "NAME", "time one op instead: gemm|attention|mla|mamba2|gdn|conv (dims of --preset)", NULL},
        {"--tokens", "LIST", "with --op: tokens per call (default 1,512; 1 is a decode step)", NULL},
        {"--context", "N", "with --op: cached positions before the call (default 0)", NULL},
        {"--vs-ref", NULL, "with --op: time the reference too", NULL},
        {"--repeat", "N", "best of N runs (default 3)", NULL},
        {"--json", NULL, "print one JSON object", NULL},
        {"--help", NULL, "show this help", NULL},
    };
    const size_t n = sizeof opts / sizeof opts[0];
    int rc = cli_begin(COMMAND, "Benchmarks prefill, decode and ops against the sgemm peak and "
                                "memory bandwidth measured in the same run.",
                       argc, argv, opts, n);
    if (rc != CLI_CONTINUE) return rc;
    bench_options o = {0};
    int64_t repeat, context;
    const char *dir = cli_get(opts, n, "--model"), *layout = cli_get(opts, n, "--layout");
    const char *preset = cli_get(opts, n, "--preset"), *op = cli_get(opts, n, "--op");
    const char *contexts = cli_get(opts, n, "--sweep-context");
    const char *tokens_list = cli_get(opts, n, "--tokens");
    int64_t Ts[MAX_POINTS] = {1, 512};
    int nT = 2;
    if (!cli_backend(COMMAND, opts, n, HYLO_BACKEND_CPU, &o.backend, &o.weights) ||
        !cli_int(COMMAND, opts, n, "--prompt", 1, 1 << 20, 512, &o.prompt) ||
        !cli_int(COMMAND, opts, n, "--steps", 1, 1 << 20, 16, &o.steps) ||
        !cli_int(COMMAND, opts, n, "--ref-tokens", 0, 1 << 16, 8, &o.ref_tokens) ||
        !cli_int(COMMAND, opts, n, "--repeat", 1, 1000, 3, &repeat) ||
        !cli_int(COMMAND, opts, n, "--context", 0, 1 << 24, 0, &context))
        return CLI_USAGE;
    o.repeat = (int)repeat;
    if ((contexts && !parse_sizes(contexts, o.contexts, &o.n_contexts)) ||
        (tokens_list && !parse_sizes(tokens_list, Ts, &nT))) {
        fprintf(stderr, "hylo %s: --sweep-context and --tokens take sizes like 512,1K,32K\n", COMMAND);
        return CLI_USAGE;
    }
    if (dir && (preset || layout)) {
        fprintf(stderr, "hylo %s: give --model or --preset [--layout], not both\n", COMMAND);
        return CLI_USAGE;
    }
    if (!preset) preset = "llama-3.2-1b";
    report r = {.first = true, .as_json = cli_get(opts, n, "--json") != NULL};
    hylo_text_printf(&r.json, "{\n");
    hylo_error err = {0};
    hylo_cpu_blas_init();
    machine mc = {sgemm_peak(o.repeat), stream_bandwidth(o.repeat)};
    put_string(&r, "backend", hylo_backend_name(o.backend));
    put_string(&r, "weights", hylo_weights_name(o.weights));
    put_number(&r, "threads", omp_get_max_threads());
    if (!r.as_json)
        printf("hylo bench: backend %s, weights %s, %d threads\nmachine: sgemm peak %.1f GFLOP/s, "
               "stream read %.1f GB/s (512 MiB)\n",
               hylo_backend_name(o.backend), hylo_weights_name(o.weights), omp_get_max_threads(),
               mc.sgemm_gflops, mc.stream_gbs);
    hylo_status st = HYLO_OK;
    if (op) {
        op_shapes sh;
        st = op_shapes_of(preset, &sh, &err);
        if (st == HYLO_OK)
            st = bench_ops(op, &sh, Ts, nT, context, cli_get(opts, n, "--vs-ref") != NULL, o.repeat,
                           &r, &err);
    } else {
        hylo_model *m = NULL;
        st = open_model(dir, preset, layout, &m, &err);
        if (st == HYLO_OK) st = bench_model(m, &o, &mc, &r, &err);
        if (st == HYLO_OK && o.n_contexts > 0) st = sweep(m, "model", &o, &r, &err);
        hylo_model_free(m);
        if (st == HYLO_OK && o.n_contexts > 0 && !dir && layout) {
            hylo_model *teacher = NULL;
            st = open_model(NULL, preset, NULL, &teacher, &err);
            if (st == HYLO_OK) st = sweep(teacher, "teacher", &o, &r, &err);
            hylo_model_free(teacher);
        }
    }
    put_number(&r, "sgemm_peak_gflops", mc.sgemm_gflops);
    put_number(&r, "stream_gbs", mc.stream_gbs);
    put_number(&r, "peak_rss_bytes", hylo_peak_rss_bytes());
    if (st != HYLO_OK) {
        hylo_text_free(&r.json);
        return cli_fail(COMMAND, &err);
    }
    if (r.as_json) printf("%s\n}\n", r.json.data);
    else printf("peak RSS %.2f GiB\n", hylo_peak_rss_bytes() / 1073741824.0);
    hylo_text_free(&r.json);
    return CLI_OK;
}
