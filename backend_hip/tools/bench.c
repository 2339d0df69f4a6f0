/* bench.c: hylo-hip-bench, prefill and decode speed of checkpoints on the HIP backend, set
 * against the copy bandwidth and the bf16 GEMM rate measured in the same run.
 *
 *   hylo-hip-bench [--contexts 1024,8192,32768] [--steps N] [--weights f32|bf16]
 *                  [--long N [--long-prefill C]] MODEL_DIR...
 *   hylo-hip-bench --kd [N,N,...]      (the fused KD/CE loss alone; see bench_kd)
 *
 * Per model and context L: time to first token (a prefill of L random tokens, logits of the
 * last row, timed to the logits on the host) and the median time per output token of --steps
 * decode steps after it (the mean beside it counts the steps that recorded a graph). --long N is the long-context probe: decode steps at context N over
 * a cache filled with random values (hylo_state_fill_random); with --long-prefill C the cache
 * is filled by a real prefill of N tokens instead, fed C tokens per forward call (one call's
 * activations take ~45 KB per token in a 1B model, so millions of tokens never go in one),
 * its time to first token the sum of the calls. Counting (what the model
 * must do at least): prefill FLOPs = 2 L (matrix parameters) + 2 D V (LM head, last row) + the
 * causal attention products (2 L (L + 1) / 2 per head and query/key/value dim); the Mamba2 and
 * GDN scans are left out. Decode bytes = the matrices streamed (2 bytes each in bf16, 4 in
 * f32) + the cache rows read (bf16 caches with bf16 weights, else fp32) + the recurrent
 * states read and written (fp32). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/progress.h"
#include "core/rng.h"
#include "layers/hip_layers.h"
#include "losses/hip_losses.h"

#define MAX_CONTEXTS 8
#define MAX_STEPS 64

static int die(const char *what, const hylo_error *err)
{
    fprintf(stderr, "hylo-hip-bench: %s: %s\n", what, err->message);
    return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* The two ceilings                                                                            */
/* ------------------------------------------------------------------------------------------ */

/* n floats of N(0, 1) on the device. */
static float *random_device(hylo_hip_ctx *ctx, int64_t n, hylo_error *err)
{
    float *host = malloc((size_t)n * sizeof(float));
    float *dev = host ? hylo_hip_alloc(ctx, (size_t)n * sizeof(float)) : NULL;
    if (dev) {
        hylo_rng rng;
        hylo_rng_seed(&rng, 1, 2);
        for (int64_t i = 0; i < n; i++) host[i] = (float)hylo_rng_normal(&rng);
        if (hylo_hip_copy(ctx, dev, host, (size_t)n * sizeof(float), HYLO_COPY_TO_DEVICE, err) !=
            HYLO_OK) {
            hylo_hip_release(ctx, dev);
            dev = NULL;
        }
    }
    free(host);
    return dev;
}

/* Device-to-device copy of 1 GiB, counting the bytes read and written: GB/s (best of 10). */
static double copy_bandwidth(hylo_hip_ctx *ctx, hylo_error *err)
{
    const int64_t n = (int64_t)1 << 28;
    float *src = random_device(ctx, n, err), *dst = hylo_hip_alloc(ctx, (size_t)n * sizeof(float));
    double best = 0.0;
    for (int rep = 0; src && dst && rep < 11; rep++) {
        const double t0 = hylo_seconds();
        if (hylo_hip_copy(ctx, dst, src, (size_t)n * sizeof(float), HYLO_COPY_ON_DEVICE, err) !=
                HYLO_OK ||
            hylo_hip_finish(ctx, err) != HYLO_OK)
            break;
        const double rate = 2.0 * (double)n * sizeof(float) / (hylo_seconds() - t0) / 1e9;
        if (rep > 0 && rate > best) best = rate;
    }
    hylo_hip_release(ctx, src);
    hylo_hip_release(ctx, dst);
    return best;
}

/* bf16 GEMM [8192, 8192] x [8192, 8192] on random operands: TFLOP/s (best of 10). */
static double gemm_rate(hylo_hip_ctx *ctx, hylo_error *err)
{
    const int64_t n = 8192;
    float *a = random_device(ctx, n * n, err), *c = hylo_hip_alloc(ctx, (size_t)(n * n) * sizeof(float));
    uint16_t *a16 = hylo_hip_alloc(ctx, (size_t)(n * n) * sizeof(uint16_t));
    double best = 0.0;
    if (a && c && a16) hylo_hip_to_bf16(ctx, a, a16, n * n);
    for (int rep = 0; a && c && a16 && rep < 11; rep++) {
        const double t0 = hylo_seconds();
        hylo_hip_gemm(ctx, HYLO_BF16, false, true, n, n, n, 1.0f, a16, n, a16, n, 0.0f, c, n);
        if (hylo_hip_finish(ctx, err) != HYLO_OK) break;
        const double rate = 2.0 * (double)n * n * n / (hylo_seconds() - t0) / 1e12;
        if (rep > 0 && rate > best) best = rate;
    }
    hylo_hip_release(ctx, a);
    hylo_hip_release(ctx, c);
    hylo_hip_release(ctx, a16);
    return best;
}

/* ------------------------------------------------------------------------------------------ */
/* Counting                                                                                    */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    double matrix_params;   /* projection matrices, LM head excluded */
    double head_params;     /* V D                                    */
    double attn_dims;       /* sum over attention/MLA layers of H (q.k dims + v dims) */
    double cache_per_token; /* bytes of cache rows per position (the caches' type)    */
    double state_bytes;     /* recurrent states, fp32                                 */
} counts;

static hylo_status count_model(const hylo_model *m, double cache_value, counts *k,
                               hylo_error *err)
{
    const hylo_config *c = &m->cfg;
    const hylo_hybrid_config *hy = &m->hybrid;
    hylo_param *params = NULL;
    size_t n = 0;
    hylo_status st = hylo_model_params(c, hy, &params, &n, err);
    if (st != HYLO_OK) return st;
    memset(k, 0, sizeof *k);
    k->head_params = (double)c->vocab_size * (double)c->hidden_size;
    for (size_t i = 0; i < n; i++)
        if (params[i].kind == HYLO_PARAM_LINEAR && params[i].ndim == 2 &&
            *hylo_param_slot((hylo_model *)m, &params[i]) != m->lm_head)
            k->matrix_params += (double)hylo_param_numel(&params[i]);
    free(params);
    const hylo_mla_dims md = hylo_mla_dims_of(c, hy);
    const hylo_mamba2_dims d2 = hylo_mamba2_dims_of(c, hy);
    const hylo_gdn_dims dg = hylo_gdn_dims_of(c, hy);
    for (int64_t i = 0; i < c->num_layers; i++) {
        switch (m->layers[i].mixer) {
        case HYLO_MIXER_ATTENTION:
            k->attn_dims += (double)(c->num_heads * 2 * c->head_dim);
            k->cache_per_token += (double)(2 * c->num_kv_heads * c->head_dim) * cache_value;
            break;
        case HYLO_MIXER_MLA:
            k->attn_dims += (double)(md.heads * (md.nope + md.rope + md.v));
            k->cache_per_token += (double)(md.kv_rank + md.rope) * cache_value;
            break;
        case HYLO_MIXER_MAMBA2:
            k->state_bytes += (double)(d2.nheads * d2.headdim * d2.d_state) * 4.0;
            break;
        case HYLO_MIXER_GDN:
            k->state_bytes += (double)(dg.v_heads * dg.head_k * dg.head_v) * 4.0;
            break;
        }
    }
    return HYLO_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Runs                                                                                        */
/* ------------------------------------------------------------------------------------------ */

static int compare_doubles(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* What `steps` decode steps took: the median step (the speed of a replayed step), the mean
 * (with the steps that recorded a graph, as a generation sees it), and how many of them
 * replayed a recording (core/step.hip). */
typedef struct {
    double median, mean;
    int64_t replayed;
} decode_figures;

/* Decode steps on state s (greedy tokens from random ids). */
static hylo_status decode_steps(const hylo_model *m, hylo_state *s, int64_t steps,
                                float *logits, decode_figures *f, hylo_error *err)
{
    double t[MAX_STEPS];
    int32_t token = 17;
    const hylo_hip_steps *rec = &((const hylo_hip_ctx *)s->ctx)->steps;
    const int64_t replays_before = rec->replays;
    for (int64_t i = 0; i < steps; i++) {
        const double t0 = hylo_seconds();
        hylo_status st = hylo_forward(m, s, &token, 1, HYLO_LOGITS_LAST, logits, err);
        if (st != HYLO_OK) return st;
        t[i] = hylo_seconds() - t0;
        f->mean += t[i] / (double)steps;
        token = (int32_t)((token * 7919 + 13) % m->cfg.vocab_size);
    }
    qsort(t, (size_t)steps, sizeof t[0], compare_doubles);
    f->median = t[steps / 2];
    f->replayed = rec->replays - replays_before;
    return HYLO_OK;
}

typedef struct {
    double copy_gbs, gemm_tflops;
    int64_t steps;
    bool bf16;
    int64_t long_ctx;     /* the long-context probe's N, 0 for none           */
    int64_t long_chunk;   /* its prefill's tokens per call, 0: a random cache */
} setup;

static void print_row(const char *model, const char *kind, int64_t L, double ttft, double flops,
                      const decode_figures *f, double bytes, const setup *u)
{
    const double tpot = f->median;
    char prefill[64] = "-";
    if (ttft > 0.0)
        snprintf(prefill, sizeof prefill, "%9.3f s %6.1f TF/s %4.0f%%", ttft, flops / ttft / 1e12,
                 100.0 * flops / ttft / 1e12 / u->gemm_tflops);
    printf("%-26s %-7s %8lld  %-34s %8.3f ms %7.0f GB/s %4.0f%% %8.3f ms %4lld/%lld\n", model,
           kind, (long long)L, prefill, 1e3 * tpot, bytes / tpot / 1e9,
           100.0 * bytes / tpot / 1e9 / u->copy_gbs, 1e3 * f->mean, (long long)f->replayed,
           (long long)u->steps);
}

/* The bench's token at position i of a vocabulary of V. */
static int32_t bench_token(int64_t i, int64_t V)
{
    return (int32_t)((uint64_t)i * 2654435761u % (uint64_t)V);
}

static double prefill_flops(const counts *k, int64_t L)
{
    const double Ld = (double)L;
    return 2.0 * Ld * k->matrix_params + 2.0 * k->head_params +
           2.0 * Ld * (Ld + 1.0) / 2.0 * k->attn_dims;
}

static double decode_bytes(const counts *k, double weight_bytes, int64_t L)
{
    return weight_bytes + (double)L * k->cache_per_token + 2.0 * k->state_bytes;
}

/* Prefills the empty state s with L tokens, `chunk` per forward call (the last call gives the
 * logits of the last row): the total seconds, and those of the first and the last call.
 * Progress on stderr. */
static hylo_status chunked_prefill(const hylo_model *m, hylo_state *s, int64_t L, int64_t chunk,
                                   float *logits, double *total, double *first, double *last,
                                   hylo_error *err)
{
    const int64_t n_max = chunk < L ? chunk : L;
    int32_t *tokens = malloc((size_t)n_max * sizeof *tokens);
    if (!tokens) return hylo_error_set(err, HYLO_ERR_NOMEM, "cannot allocate %lld tokens",
                                       (long long)n_max);
    hylo_progress bar;
    hylo_progress_begin(&bar, "prefill", (uint64_t)L, "tokens", 0);
    hylo_status st = HYLO_OK;
    *total = 0.0;
    for (int64_t done = 0; done < L && st == HYLO_OK;) {
        const int64_t n = L - done < n_max ? L - done : n_max;
        for (int64_t i = 0; i < n; i++) tokens[i] = bench_token(done + i, m->cfg.vocab_size);
        const double t0 = hylo_seconds();
        st = hylo_forward(m, s, tokens, n, done + n == L ? HYLO_LOGITS_LAST : HYLO_LOGITS_NONE,
                          logits, err);
        const double t = hylo_seconds() - t0; /* the call ends synchronized (ops finish) */
        if (done == 0) *first = t;
        *last = t;
        *total += t;
        done += n;
        hylo_progress_update(&bar, (uint64_t)done);
    }
    hylo_progress_end(&bar);
    free(tokens);
    return st;
}

/* The long-context probe of setup u: decode steps at context u->long_ctx over a cache filled
 * with random values or by a chunked prefill, with the device memory the state takes. */
static int long_probe(const hylo_model *m, const char *name, const counts *k,
                      double weight_bytes, float *logits, const setup *u)
{
    hylo_error err = {0};
    hylo_state *s = NULL;
    const int64_t L = u->long_ctx;
    double ttft = 0.0, first = 0.0, last = 0.0;
    decode_figures f = {0};
    /* the device memory the state takes: caches, recurrent states, its context */
    const int64_t used_before = hylo_hip_device_used();
    hylo_status st = hylo_state_create(m, L + u->steps + 1, &s, &err);
    const int64_t state_bytes = hylo_hip_device_used() - used_before;
    if (st == HYLO_OK)
        st = u->long_chunk > 0
                 ? chunked_prefill(m, s, L, u->long_chunk, logits, &ttft, &first, &last, &err)
                 : hylo_state_fill_random(s, L, 7, &err);
    for (int64_t i = 0; st == HYLO_OK && u->long_chunk > 0 && i < m->cfg.vocab_size; i++)
        if (!isfinite(logits[i]))
            st = hylo_error_set(&err, HYLO_ERR_NUMERIC, "logit %lld of the prefill is %g",
                                (long long)i, (double)logits[i]);
    const int64_t peak_bytes = hylo_hip_device_used() - used_before;
    if (st == HYLO_OK) st = decode_steps(m, s, u->steps, logits, &f, &err);
    hylo_state_free(s);
    if (st != HYLO_OK) {
        fprintf(stderr, "hylo-hip-bench: %s at %lld positions: %s\n", name, (long long)L,
                err.message);
        printf("%-26s %-7s %8lld  %s\n", name, "long", (long long)L,
               st == HYLO_ERR_NOMEM ? "does not fit (see stderr)" : "fails (see stderr)");
        return st == HYLO_ERR_NOMEM ? 0 : 1; /* not fitting is a finding, not a failure */
    }
    print_row(name, "long", L, ttft, prefill_flops(k, L), &f, decode_bytes(k, weight_bytes, L), u);
    printf("%-26s cache %.1f MB at %lld positions (%s), states %.1f MB; the state takes %.1f MB "
           "of device memory (with its context's workspaces)\n",
           name, (double)L * k->cache_per_token / 1e6, (long long)L, u->bf16 ? "bf16" : "fp32",
           k->state_bytes / 1e6, (double)state_bytes / 1e6);
    if (u->long_chunk > 0)
        printf("%-26s prefill in calls of %lld tokens: the first took %.3f s, the last %.3f s; "
               "%.1f MB of device memory in use after it (state and workspaces)\n",
               name, (long long)u->long_chunk, first, last, (double)peak_bytes / 1e6);
    return 0;
}

static int bench_model(const char *dir, const int64_t *contexts, int n_contexts, const setup *u)
{
    hylo_error err = {0};
    hylo_model *m = NULL;
    counts k;
    if (hylo_model_load(dir, &m, &err) != HYLO_OK) return die(dir, &err);
    if (hylo_model_set_backend(m, HYLO_BACKEND_HIP, u->bf16 ? HYLO_WEIGHTS_BF16 : HYLO_WEIGHTS_F32,
                               &err) != HYLO_OK ||
        count_model(m, u->bf16 ? 2.0 : 4.0, &k, &err) != HYLO_OK) {
        hylo_model_free(m);
        return die(dir, &err);
    }
    const char *name = strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir;
    const int64_t V = m->cfg.vocab_size;
    const double weight_bytes = (k.matrix_params + k.head_params) * (u->bf16 ? 2.0 : 4.0);
    int32_t *tokens = NULL;
    float *logits = malloc((size_t)V * sizeof(float));
    int rc = logits ? 0 : 1;
    for (int ci = 0; ci < n_contexts && rc == 0; ci++) {
        const int64_t L = contexts[ci];
        hylo_state *s = NULL;
        free(tokens);
        tokens = malloc((size_t)L * sizeof *tokens);
        if (!tokens) {
            rc = 1;
            break;
        }
        for (int64_t i = 0; i < L; i++) tokens[i] = bench_token(i, V);
        double ttft = 0.0;
        decode_figures f = {0};
        hylo_status st = hylo_state_create(m, L + u->steps + 1, &s, &err);
        if (st == HYLO_OK && ci == 0) { /* warm-up: module load, BLAS handle, workspaces */
            st = hylo_forward(m, s, tokens, L < 256 ? L : 256, HYLO_LOGITS_LAST, logits, &err);
            hylo_state_free(s);
            s = NULL;
            if (st == HYLO_OK) st = hylo_state_create(m, L + u->steps + 1, &s, &err);
        }
        if (st == HYLO_OK) {
            const double t0 = hylo_seconds();
            st = hylo_forward(m, s, tokens, L, HYLO_LOGITS_LAST, logits, &err);
            ttft = hylo_seconds() - t0;
        }
        if (st == HYLO_OK) st = decode_steps(m, s, u->steps, logits, &f, &err);
        hylo_state_free(s);
        if (st != HYLO_OK) {
            rc = die(name, &err);
            break;
        }
        print_row(name, "context", L, ttft, prefill_flops(&k, L), &f,
                  decode_bytes(&k, weight_bytes, L), u);
    }
    if (rc == 0 && u->long_ctx > 0) rc = long_probe(m, name, &k, weight_bytes, logits, u);
    free(tokens);
    free(logits);
    hylo_model_free(m);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* The fused distillation loss                                                                 */
/* ------------------------------------------------------------------------------------------ */

/* hylo-hip-bench --kd [N,N,...] (default 4096,8192): hylo_hip_kd_loss_logit_free in a bf16
 * context at V = 128256, D_S = D_T = 2048 (Llama-3 vocabulary, 1B hidden size): hidden states
 * N(0, 1/D), one random N(0, 1) head given as a bf16 copy to both sides, KL + CE (weights 1 and
 * 0.5, random labels), both gradients, all N rows in one chunk, tiles of 8192 entries; the
 * median of 5 calls after a warm-up, timed to the values on the host. Counted: 2 N V D per GEMM
 * for the four the loss needs (both models' logits, dL/dh_S, dL/dW_S); pass 2 recomputes both
 * logit tiles, so six run, and the executed rate (1.5 x) is set against the GEMM ceiling. */
static int bench_kd(int argc, char **argv)
{
    int64_t rows[MAX_CONTEXTS] = {4096, 8192};
    int n_rows = 2;
    if (argc > 1) {
        fprintf(stderr, "usage: hylo-hip-bench --kd [N,N,...]\n");
        return 2;
    }
    if (argc == 1) {
        n_rows = 0;
        for (char *p = argv[0]; *p && n_rows < MAX_CONTEXTS; p += *p == ',')
            if ((rows[n_rows++] = strtoll(p, &p, 10)) < 1 || (*p && *p != ',')) {
                fprintf(stderr, "hylo-hip-bench: --kd takes row counts N,N,...\n");
                return 2;
            }
    }
    const int64_t V = 128256, D = 2048, tile = 8192;
    hylo_error err = {0};
    hylo_hip_ctx *ctx = NULL;
    if (hylo_hip_context_new(NULL, true, &ctx, &err) != HYLO_OK) return die("context", &err);
    const double ceiling = gemm_rate(ctx, &err);
    float *head = random_device(ctx, V * D, &err);
    uint16_t *head16 = head ? hylo_hip_alloc(ctx, (size_t)(V * D) * sizeof(uint16_t)) : NULL;
    if (head16) hylo_hip_to_bf16(ctx, head, head16, V * D);
    hylo_hip_release(ctx, head);
    float *dW = head16 ? hylo_hip_alloc(ctx, (size_t)(V * D) * sizeof(float)) : NULL;
    if (hylo_hip_finish(ctx, &err) != HYLO_OK || !dW) {
        hylo_hip_release(ctx, head16);
        hylo_hip_context_free(ctx);
        return die("the LM heads of the loss", &err);
    }
    printf("fused KD/CE loss: V %lld, D_S = D_T %lld, bf16, KL + CE, tile %lld, both gradients; "
           "bf16 GEMM ceiling %.0f TFLOP/s\n",
           (long long)V, (long long)D, (long long)tile, ceiling);
    printf("%8s %10s %22s %22s\n", "N", "ms", "TFLOP/s (4 GEMMs)", "executed (6), % ceil");
    int rc = 0;
    hylo_rng rng;
    hylo_rng_seed(&rng, 3, 4);
    for (int i = 0; i < n_rows; i++) {
        const int64_t N = rows[i];
        float *host = malloc((size_t)(2 * N * D) * sizeof(float));
        int32_t *labels = malloc((size_t)N * sizeof(int32_t));
        float *h = host && labels ? hylo_hip_alloc(ctx, (size_t)(2 * N * D) * sizeof(float)) : NULL;
        float *dh = h ? hylo_hip_alloc(ctx, (size_t)(N * D) * sizeof(float)) : NULL;
        double t[6] = {0};
        hylo_status st = dh ? HYLO_OK : HYLO_ERR_NOMEM;
        if (st == HYLO_OK) {
            for (int64_t j = 0; j < 2 * N * D; j++)
                host[j] = (float)(hylo_rng_normal(&rng) / sqrt((double)D));
            for (int64_t r = 0; r < N; r++) labels[r] = (int32_t)((r * 2654435761u) % (uint64_t)V);
            st = hylo_hip_copy(ctx, h, host, (size_t)(2 * N * D) * sizeof(float),
                               HYLO_COPY_TO_DEVICE, &err);
        }
        hylo_kd_options opt = hylo_kd_options_default();
        opt.ce_weight = 0.5;
        const hylo_hip_kd_side S = {h, NULL, head16, D}, T = {h + N * D, NULL, head16, D};
        hylo_kd_result res;
        for (int rep = 0; rep < 6 && st == HYLO_OK; rep++) {
            const double t0 = hylo_seconds();
            st = hylo_hip_kd_loss_logit_free(ctx, &S, &T, labels, N, V, N, tile, &opt, &res, dh,
                                             dW, &err);
            t[rep] = hylo_seconds() - t0;
        }
        if (st != HYLO_OK) {
            hylo_hip_finish(ctx, &err);
            printf("%8lld  does not fit / fails: %s\n", (long long)N, err.message);
        } else {
            qsort(t + 1, 5, sizeof t[0], compare_doubles);
            const double flops = 4.0 * 2.0 * (double)N * (double)V * (double)D;
            printf("%8lld %10.2f %22.0f %15.0f %5.0f%%   (kl %.4f, ce %.4f)\n", (long long)N,
                   1e3 * t[3], flops / t[3] / 1e12, 1.5 * flops / t[3] / 1e12,
                   100.0 * 1.5 * flops / t[3] / 1e12 / ceiling, res.kl, res.ce);
        }
        hylo_hip_release(ctx, h);
        hylo_hip_release(ctx, dh);
        hylo_hip_finish(ctx, NULL);
        free(host);
        free(labels);
        rc |= st != HYLO_OK;
    }
    hylo_hip_release(ctx, head16);
    hylo_hip_release(ctx, dW);
    hylo_hip_context_free(ctx);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "--kd") == 0) return bench_kd(argc - 2, argv + 2);
    int64_t contexts[MAX_CONTEXTS] = {1024, 8192, 32768};
    int n_contexts = 3, first = argc;
    setup u = {0.0, 0.0, 16, true, 0, 0};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--contexts") == 0 && i + 1 < argc) {
            n_contexts = 0;
            for (char *p = argv[++i]; *p && n_contexts < MAX_CONTEXTS; p += *p == ',')
                contexts[n_contexts++] = strtoll(p, &p, 10);
        } else if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc) {
            u.steps = strtoll(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--weights") == 0 && i + 1 < argc) {
            u.bf16 = strcmp(argv[++i], "f32") != 0;
        } else if (strcmp(argv[i], "--long") == 0 && i + 1 < argc) {
            u.long_ctx = strtoll(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--long-prefill") == 0 && i + 1 < argc) {
            u.long_chunk = strtoll(argv[++i], NULL, 10);
        } else if (argv[i][0] != '-') {
            first = i;
            break;
        } else {
            first = argc;
            break;
        }
    }
    if (first == argc || u.steps < 1 || u.steps > MAX_STEPS || u.long_ctx < 0 ||
        u.long_chunk < 0 || (u.long_chunk > 0 && u.long_ctx == 0)) {
        fprintf(stderr, "usage: hylo-hip-bench [--contexts L,L,...] [--steps N<=%d] "
                        "[--weights f32|bf16] [--long N [--long-prefill TOKENS_PER_CALL]] "
                        "MODEL_DIR...\n", MAX_STEPS);
        return 2;
    }
    hylo_error err = {0};
    hylo_hip_ctx *ctx = NULL;
    if (hylo_hip_context_new(NULL, false, &ctx, &err) != HYLO_OK) return die("context", &err);
    u.copy_gbs = copy_bandwidth(ctx, &err);
    u.gemm_tflops = gemm_rate(ctx, &err);
    hylo_hip_context_free(ctx);
    if (u.copy_gbs <= 0.0 || u.gemm_tflops <= 0.0) return die("measuring the ceilings", &err);
    printf("ceilings measured: device copy %.0f GB/s (read + write), bf16 GEMM %.0f TFLOP/s; "
           "weights %s, %lld decode steps per figure (median)\n",
           u.copy_gbs, u.gemm_tflops, u.bf16 ? "bf16" : "f32", (long long)u.steps);
    printf("%-26s %-7s %8s  %-34s %11s %12s %5s %11s %s\n", "model", "run", "context",
           "prefill (TTFT, rate, % GEMM)", "decode/tok", "decode BW", "%cp", "mean/tok",
           "replayed");
    int rc = 0;
    for (int i = first; i < argc; i++)
        rc |= bench_model(argv[i], contexts, n_contexts, &u);
    return rc;
}
