/* test_model.c: the teacher forward against an independent double-precision formulation,
 * prefill against token-by-token decode, continued prefill, and bad checkpoints. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "layers/layers.h"
#include "model/model.h"
#include "testutil.h"

/* ---- an independent forward: whole sequence at once, double precision, no cache ---------- */

typedef struct {
    hylo_checkpoint *ckpt;
    const hylo_config *cfg;
} naive_model;

/* The tensor with the printf-formatted name, widened to double; NULL when absent. */
static double *naive_tensor(const naive_model *m, const char *fmt, ...)
{
    char name[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    const hylo_tensor_view *v = hylo_checkpoint_find(m->ckpt, name);
    if (!v) return NULL;
    float *f = malloc((size_t)v->numel * sizeof *f);
    double *d = malloc((size_t)v->numel * sizeof *d);
    ck_assert(f && d);
    hylo_convert_to_f32(v->dtype, v->data, f, (size_t)v->numel);
    for (int64_t i = 0; i < v->numel; i++) d[i] = f[i];
    free(f);
    return d;
}

/* y [T, out] = x [T, in] W^T (+ b) */
static double *naive_linear(const double *x, const double *W, const double *b, int64_t T,
                            int64_t in, int64_t out)
{
    double *y = calloc((size_t)(T * out), sizeof *y);
    ck_assert_ptr_nonnull(y);
    for (int64_t t = 0; t < T; t++)
        for (int64_t o = 0; o < out; o++) {
            double s = b ? b[o] : 0.0;
            for (int64_t i = 0; i < in; i++) s += x[t * in + i] * W[o * in + i];
            y[t * out + o] = s;
        }
    return y;
}

static void naive_rmsnorm(double *x, const double *w, int64_t rows, int64_t n, double eps)
{
    for (int64_t r = 0; r < rows; r++) {
        double ss = 0;
        for (int64_t i = 0; i < n; i++) ss += x[r * n + i] * x[r * n + i];
        double inv = 1.0 / sqrt(ss / n + eps);
        for (int64_t i = 0; i < n; i++) x[r * n + i] *= inv * w[i];
    }
}

/* RoPE as complex multiplication: (x_i + j x_{i+hd/2}) * scale * e^{j p f_i}. */
static void naive_rope(double *x, int64_t T, int64_t heads, int64_t hd, const double *f,
                       double scale)
{
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < heads; h++)
            for (int64_t i = 0; i < hd / 2; i++) {
                double *re = &x[(t * heads + h) * hd + i], *im = re + hd / 2;
                double c = scale * cos(t * f[i]), s = scale * sin(t * f[i]);
                double a = *re, b = *im;
                *re = a * c - b * s;
                *im = a * s + b * c;
            }
}

static void naive_add(double *x, double *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) x[i] += y[i];
    free(y);
}

static void naive_forward(const naive_model *m, const int32_t *tokens, int64_t T, float *logits)
{
    const hylo_config *c = m->cfg;
    const int64_t D = c->hidden_size, H = c->num_heads, Hkv = c->num_kv_heads, hd = c->head_dim;
    const int64_t F = c->intermediate_size, V = c->vocab_size;
    double *embed = naive_tensor(m, "model.embed_tokens.weight");
    double *x = malloc((size_t)(T * D) * sizeof *x), *xn = malloc((size_t)(T * D) * sizeof *xn);
    double f[512], scale;
    ck_assert(x && xn && hd / 2 <= 512);
    hylo_ref_rope_frequencies(&c->rope, hd, f, &scale);
    for (int64_t t = 0; t < T; t++) memcpy(x + t * D, embed + tokens[t] * D, (size_t)D * sizeof *x);
    for (int64_t l = 0; l < c->num_layers; l++) {
#define LT(name) naive_tensor(m, "model.layers.%lld." name, (long long)l)
        double *w_in = LT("input_layernorm.weight"), *w_post = LT("post_attention_layernorm.weight");
        double *wq = LT("self_attn.q_proj.weight"), *bq = LT("self_attn.q_proj.bias");
        double *wk = LT("self_attn.k_proj.weight"), *bk = LT("self_attn.k_proj.bias");
        double *wv = LT("self_attn.v_proj.weight"), *bv = LT("self_attn.v_proj.bias");
        double *wo = LT("self_attn.o_proj.weight"), *bo = LT("self_attn.o_proj.bias");
        double *qn = LT("self_attn.q_norm.weight"), *kn = LT("self_attn.k_norm.weight");
        double *wg = LT("mlp.gate_proj.weight"), *wu = LT("mlp.up_proj.weight");
        double *wd = LT("mlp.down_proj.weight");
#undef LT
        memcpy(xn, x, (size_t)(T * D) * sizeof *x);
        naive_rmsnorm(xn, w_in, T, D, c->rms_norm_eps);
        double *q = naive_linear(xn, wq, bq, T, D, H * hd);
        double *k = naive_linear(xn, wk, bk, T, D, Hkv * hd);
        double *v = naive_linear(xn, wv, bv, T, D, Hkv * hd);
        if (qn) naive_rmsnorm(q, qn, T * H, hd, c->rms_norm_eps);
        if (kn) naive_rmsnorm(k, kn, T * Hkv, hd, c->rms_norm_eps);
        naive_rope(q, T, H, hd, f, scale);
        naive_rope(k, T, Hkv, hd, f, scale);
        double *o = calloc((size_t)(T * H * hd), sizeof *o), *p = calloc((size_t)T, sizeof *p);
        ck_assert(o && p);
        for (int64_t h = 0; h < H; h++) {
            int64_t g = h / (H / Hkv);
            for (int64_t i = 0; i < T; i++) {
                double z = 0;
                for (int64_t j = 0; j <= i; j++) {
                    double s = 0;
                    for (int64_t d = 0; d < hd; d++) s += q[(i * H + h) * hd + d] * k[(j * Hkv + g) * hd + d];
                    p[j] = exp(s / sqrt((double)hd));
                    z += p[j];
                }
                for (int64_t j = 0; j <= i; j++)
                    for (int64_t d = 0; d < hd; d++)
                        o[(i * H + h) * hd + d] += p[j] / z * v[(j * Hkv + g) * hd + d];
            }
        }
        naive_add(x, naive_linear(o, wo, bo, T, H * hd, D), T * D);
        memcpy(xn, x, (size_t)(T * D) * sizeof *x);
        naive_rmsnorm(xn, w_post, T, D, c->rms_norm_eps);
        double *gt = naive_linear(xn, wg, NULL, T, D, F), *ut = naive_linear(xn, wu, NULL, T, D, F);
        for (int64_t i = 0; i < T * F; i++) gt[i] = gt[i] / (1 + exp(-gt[i])) * ut[i];
        naive_add(x, naive_linear(gt, wd, NULL, T, F, D), T * D);
        double *all[] = {w_in, w_post, wq, bq, wk, bk, wv, bv, wo, bo, qn, kn, wg, wu, wd, q, k, v, o, p, gt, ut};
        for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
    }
    double *norm = naive_tensor(m, "model.norm.weight");
    double *head = c->tie_word_embeddings ? NULL : naive_tensor(m, "lm_head.weight");
    naive_rmsnorm(x, norm, T, D, c->rms_norm_eps);
    double *out = naive_linear(x, head ? head : embed, NULL, T, D, V);
    for (int64_t i = 0; i < T * V; i++) logits[i] = (float)out[i];
    free(out);
    free(head);
    free(norm);
    free(embed);
    free(x);
    free(xn);
}

/* ---- fixtures ----------------------------------------------------------------------------- */

static char *make_checkpoint(const char *preset, hylo_dtype dtype, uint64_t seed)
{
    char *dir = hylo_test_tmpdir(preset);
    hylo_config cfg;
    hylo_error err = {0};
    ck_assert_ok(hylo_preset(preset, &cfg, &err), &err);
    cfg.dtype = dtype;
    ck_assert_ok(hylo_init_random(&cfg, NULL, seed, dir, 0, &err), &err);
    return dir;
}

static float *forward_all(const hylo_model *model, hylo_state *state, const int32_t *tokens,
                          int64_t T)
{
    float *logits = malloc((size_t)(T * hylo_model_config(model)->vocab_size) * sizeof *logits);
    hylo_error err = {0};
    ck_assert_ptr_nonnull(logits);
    ck_assert_ok(hylo_forward(model, state, tokens, T, HYLO_LOGITS_ALL, logits, &err), &err);
    return logits;
}

/* The two directories' models give the same logits, bit for bit, on a few tokens. */
static void assert_same_logits(const char *dir_a, const char *dir_b)
{
    hylo_error err = {0};
    hylo_model *m1 = NULL, *m2 = NULL;
    hylo_state *s1 = NULL, *s2 = NULL;
    ck_assert_ok(hylo_model_load(dir_a, &m1, &err), &err);
    ck_assert_ok(hylo_model_load(dir_b, &m2, &err), &err);
    ck_assert_ok(hylo_state_create(m1, 0, &s1, &err), &err);
    ck_assert_ok(hylo_state_create(m2, 0, &s2, &err), &err);
    int32_t tokens[5] = {1, 2, 3, 4, 5};
    float *l1 = forward_all(m1, s1, tokens, 5), *l2 = forward_all(m2, s2, tokens, 5);
    ck_assert_mem_eq(l1, l2, (size_t)(5 * hylo_model_config(m1)->vocab_size) * sizeof(float));
    free(l1);
    free(l2);
    hylo_state_free(s1);
    hylo_state_free(s2);
    hylo_model_free(m1);
    hylo_model_free(m2);
}

/* ---- tests -------------------------------------------------------------------------------- */

static const char *const presets[] = {"tiny-llama", "tiny-qwen3"};
static const hylo_dtype dtypes[] = {HYLO_F32, HYLO_BF16};

/* fp32 activations against double ones: each of ~10 rounding steps per layer adds relative
 * error ~6e-8, so the logits NMSE should stay near 1e-13; 1e-10 leaves a wide margin while
 * any formula error (a wrong norm, rope pairing, mask or bias) gives NMSE > 1e-3. */
START_TEST(forward_matches_independent_double_formulation)
{
    const char *preset = presets[_i / 2];
    char *dir = make_checkpoint(preset, dtypes[_i % 2], 42);
    hylo_error err = {0};
    hylo_model *model = NULL;
    hylo_state *state = NULL;
    ck_assert_ok(hylo_model_load(dir, &model, &err), &err);
    ck_assert_ok(hylo_state_create(model, 0, &state, &err), &err);
    const hylo_config *cfg = hylo_model_config(model);
    enum { T = 23 };
    int32_t tokens[T];
    hylo_test_random_tokens(tokens, T, cfg->vocab_size, 1 + _i);
    float *got = forward_all(model, state, tokens, T);
    float *want = malloc((size_t)(T * cfg->vocab_size) * sizeof *want);
    naive_model naive = {NULL, cfg};
    ck_assert_ok(hylo_checkpoint_open(dir, &naive.ckpt, &err), &err);
    naive_forward(&naive, tokens, T, want);
    ck_assert_nmse(got, want, (size_t)(T * cfg->vocab_size), 1e-10, preset);
    /* the logits must carry signal: not all equal */
    ck_assert(hylo_max_abs_diff(want, want + cfg->vocab_size, (size_t)cfg->vocab_size) > 1e-3);
    hylo_checkpoint_close(naive.ckpt);
    free(got);
    free(want);
    hylo_state_free(state);
    hylo_model_free(model);
    free(dir);
}
END_TEST

/* Prefill computes every row with the same arithmetic as decode, so the two agree exactly up
 * to reduction order (none differs here); 1e-12 allows for a future change of summation. */
START_TEST(prefill_equals_token_by_token_decode)
{
    char *dir = make_checkpoint(presets[_i], HYLO_F32, 7);
    hylo_error err = {0};
    hylo_model *model = NULL;
    hylo_state *a = NULL, *b = NULL;
    ck_assert_ok(hylo_model_load(dir, &model, &err), &err);
    ck_assert_ok(hylo_state_create(model, 4, &a, &err), &err);
    ck_assert_ok(hylo_state_create(model, 4, &b, &err), &err);
    const int64_t V = hylo_model_config(model)->vocab_size;
    enum { T = 37 };
    int32_t tokens[T];
    hylo_test_random_tokens(tokens, T, V, 99);
    float *prefill = forward_all(model, a, tokens, T);
    float *decode = malloc((size_t)(T * V) * sizeof *decode);
    for (int64_t t = 0; t < T; t++)
        ck_assert_ok(hylo_forward(model, b, tokens + t, 1, HYLO_LOGITS_LAST, decode + t * V, &err), &err);
    ck_assert_int_eq(hylo_state_length(a), T);
    ck_assert_int_eq(hylo_state_length(b), T);
    ck_assert_nmse(decode, prefill, (size_t)(T * V), 1e-12, "decode vs prefill");
    free(prefill);
    free(decode);
    hylo_state_free(a);
    hylo_state_free(b);
    hylo_model_free(model);
    free(dir);
}
END_TEST

START_TEST(continued_prefill_equals_single_prefill)
{
    char *dir = make_checkpoint("tiny-qwen3", HYLO_F32, 3);
    hylo_error err = {0};
    hylo_model *model = NULL;
    hylo_state *a = NULL, *b = NULL;
    ck_assert_ok(hylo_model_load(dir, &model, &err), &err);
    ck_assert_ok(hylo_state_create(model, 0, &a, &err), &err);
    ck_assert_ok(hylo_state_create(model, 0, &b, &err), &err);
    const int64_t V = hylo_model_config(model)->vocab_size;
    enum { T1 = 100, T2 = 50 };
    int32_t tokens[T1 + T2];
    hylo_test_random_tokens(tokens, T1 + T2, V, 5);
    float *whole = forward_all(model, a, tokens, T1 + T2);
    float *first = forward_all(model, b, tokens, T1);
    float *second = forward_all(model, b, tokens + T1, T2);
    ck_assert_nmse(first, whole, (size_t)(T1 * V), 1e-12, "prefill(100)");
    ck_assert_nmse(second, whole + T1 * V, (size_t)(T2 * V), 1e-12, "prefill(50) after prefill(100)");
    free(whole);
    free(first);
    free(second);
    hylo_state_free(a);
    hylo_state_free(b);
    hylo_model_free(model);
    free(dir);
}
END_TEST

START_TEST(init_is_deterministic)
{
    char *a = make_checkpoint("tiny-llama", HYLO_BF16, 1);
    char *b = make_checkpoint("tiny-llama", HYLO_BF16, 1);
    char *c = make_checkpoint("tiny-llama", HYLO_BF16, 2);
    char pa[512], pb[512], pc[512];
    snprintf(pa, sizeof pa, "%s/model.safetensors", a);
    snprintf(pb, sizeof pb, "%s/model.safetensors", b);
    snprintf(pc, sizeof pc, "%s/model.safetensors", c);
    size_t la, lb, lc;
    unsigned char *da = hylo_test_read_file(pa, &la), *db = hylo_test_read_file(pb, &lb);
    unsigned char *dc = hylo_test_read_file(pc, &lc);
    ck_assert_uint_eq(la, lb);
    ck_assert_mem_eq(da, db, la);
    ck_assert(la == lc && memcmp(da, dc, la) != 0);
    free(da);
    free(db);
    free(dc);
    free(a);
    free(b);
    free(c);
}
END_TEST

START_TEST(sharded_checkpoint_loads_like_single_file)
{
    char *single = make_checkpoint("tiny-llama", HYLO_F32, 8);
    char *sharded = hylo_test_tmpdir("sharded");
    hylo_config cfg;
    hylo_error err = {0};
    ck_assert_ok(hylo_preset("tiny-llama", &cfg, &err), &err);
    cfg.dtype = HYLO_F32;
    ck_assert_ok(hylo_init_random(&cfg, NULL, 8, sharded, 64 * 1024, &err), &err);
    assert_same_logits(single, sharded);
    free(single);
    free(sharded);
}
END_TEST

START_TEST(bad_tokens_are_rejected_without_side_effects)
{
    char *dir = make_checkpoint("tiny-llama", HYLO_F32, 1);
    hylo_error err = {0};
    hylo_model *model = NULL;
    hylo_state *state = NULL;
    ck_assert_ok(hylo_model_load(dir, &model, &err), &err);
    ck_assert_ok(hylo_state_create(model, 0, &state, &err), &err);
    const int64_t V = hylo_model_config(model)->vocab_size;
    int32_t tokens[3] = {1, (int32_t)V, 2};
    float logits[4096];
    ck_assert_int_eq(hylo_forward(model, state, tokens, 3, HYLO_LOGITS_LAST, logits, &err), HYLO_ERR_RANGE);
    ck_assert_ptr_nonnull(strstr(err.message, "outside the vocabulary"));
    tokens[1] = -1;
    ck_assert_int_eq(hylo_forward(model, state, tokens, 3, HYLO_LOGITS_LAST, logits, &err), HYLO_ERR_RANGE);
    ck_assert_int_eq(hylo_forward(model, state, tokens, 0, HYLO_LOGITS_LAST, logits, &err), HYLO_ERR_RANGE);
    ck_assert_int_eq(hylo_state_length(state), 0);
    hylo_state_free(state);
    hylo_model_free(model);
    free(dir);
}
END_TEST

/* The reference backend with an MLP that fails from call fail_at on (a device fault, say, in
 * the middle of a forward whose first layers have run and changed their caches). */
static int mlp_calls, fail_at;

static hylo_status failing_mlp(void *ctx, const float *x, const float *Wg, const float *bg,
                               const float *Wu, const float *bu, const float *Wd,
                               const float *bd, float *y, int64_t T, int64_t D, int64_t F,
                               hylo_error *err)
{
    if (++mlp_calls >= fail_at)
        return hylo_error_set(err, HYLO_ERR_NOMEM, "injected fault %d", mlp_calls);
    return hylo_ref_ops.swiglu_mlp(ctx, x, Wg, bg, Wu, bu, Wd, bd, y, T, D, F, err);
}

/* A forward that fails half-way leaves the state marked inconsistent: every later forward and
 * layer forward on it fails, naming the first failure, while a fresh state works. */
START_TEST(half_done_forward_poisons_the_state)
{
    char *dir = make_checkpoint("tiny-llama", HYLO_F32, 1);
    hylo_error err = {0};
    hylo_model *model = NULL;
    hylo_state *state = NULL, *fresh = NULL;
    ck_assert_ok(hylo_model_load(dir, &model, &err), &err);
    hylo_ops faulty = hylo_ref_ops;
    faulty.swiglu_mlp = failing_mlp;
    model->ops = &faulty;
    /* the second forward fails in its second layer's MLP */
    const int64_t layers = hylo_model_config(model)->num_layers;
    mlp_calls = 0;
    fail_at = (int)layers + 2;
    ck_assert_ok(hylo_state_create(model, 0, &state, &err), &err);
    const int32_t tokens[4] = {1, 2, 3, 4};
    float logits[4096], x[4 * 4096];
    ck_assert_ok(hylo_forward(model, state, tokens, 1, HYLO_LOGITS_LAST, logits, &err), &err);
    ck_assert_int_eq(hylo_forward(model, state, tokens, 4, HYLO_LOGITS_LAST, logits, &err),
                     HYLO_ERR_NOMEM);
    ck_assert_int_eq(hylo_state_length(state), 1);
    ck_assert_int_eq(hylo_forward(model, state, tokens, 1, HYLO_LOGITS_LAST, logits, &err),
                     HYLO_ERR_USAGE);
    char first[64];
    snprintf(first, sizeof first, "injected fault %d", fail_at);
    ck_assert_msg(strstr(err.message, "inconsistent") && strstr(err.message, first), "%s",
                  err.message);
    ck_assert_int_eq(hylo_layer_forward(model, state, 0, x, 1, NULL, x, &err), HYLO_ERR_USAGE);
    /* refusals before anything runs (bad tokens) do not mark a state */
    model->ops = &hylo_ref_ops;
    ck_assert_ok(hylo_state_create(model, 0, &fresh, &err), &err);
    const int32_t bad[2] = {1, -5};
    ck_assert_int_eq(hylo_forward(model, fresh, bad, 2, HYLO_LOGITS_LAST, logits, &err),
                     HYLO_ERR_RANGE);
    ck_assert_ok(hylo_forward(model, fresh, tokens, 4, HYLO_LOGITS_LAST, logits, &err), &err);
    ck_assert_int_eq(hylo_state_length(fresh), 4);
    hylo_state_free(fresh);
    hylo_state_free(state);
    hylo_model_free(model);
    free(dir);
}
END_TEST

/* A stand-in device backend: the reference ops over "device" memory that is host memory
 * (calloc'd, copied with memcpy), so that forward.c's and state.c's device paths (activations
 * and logits in the backend's memory, copies in and out, cache growth by copy) run without a
 * GPU. Copies fail from copy number copy_fail_at on (0: never). */
static int copies, copy_fail_at;

static void *fake_alloc(void *ctx, size_t bytes)
{
    (void)ctx;
    return calloc(1, bytes > 0 ? bytes : 1);
}

static void fake_free(void *ctx, void *p)
{
    (void)ctx;
    free(p);
}

static hylo_status fake_copy(void *ctx, void *dst, const void *src, size_t bytes,
                             hylo_copy_kind kind, hylo_error *err)
{
    (void)ctx;
    (void)kind;
    if (copy_fail_at > 0 && ++copies >= copy_fail_at)
        return hylo_error_set(err, HYLO_ERR_NOMEM, "injected copy fault %d", copies);
    memcpy(dst, src, bytes);
    return HYLO_OK;
}

/* Its decode-step entries log their calls; step_end reports a failed recording on the steps
 * listed in again_at (forward.c must then run the step's ops once more). */
#define MAX_STEP_CALLS 32
static struct {
    int begins, ends, again_at[2];
    int32_t token[MAX_STEP_CALLS];
    int64_t pos[MAX_STEP_CALLS], layout[MAX_STEP_CALLS];
} steps;

static bool fake_step_begin(void *ctx, int32_t token, int64_t pos, int64_t layout)
{
    (void)ctx;
    if (steps.begins < MAX_STEP_CALLS) {
        steps.token[steps.begins] = token;
        steps.pos[steps.begins] = pos;
        steps.layout[steps.begins] = layout;
    }
    steps.begins++;
    return false;
}

static hylo_status fake_step_end(void *ctx, bool *again, hylo_error *err)
{
    (void)ctx;
    (void)err;
    *again = steps.ends == steps.again_at[0] || steps.ends == steps.again_at[1];
    steps.ends++;
    return HYLO_OK;
}

static hylo_ops fake_device_ops(void)
{
    hylo_ops ops = hylo_ref_ops;
    ops.mem_alloc = fake_alloc;
    ops.mem_free = fake_free;
    ops.mem_copy = fake_copy;
    ops.step_begin = fake_step_begin;
    ops.step_end = fake_step_end;
    return ops;
}

/* The device paths give the reference's logits bit for bit (same ops, same order), through a
 * prefill, cache growth and decode steps; a random fill that fails half-way marks its state. */
START_TEST(device_paths_match_ref_and_failed_fill_poisons)
{
    char *dir = make_checkpoint("tiny-llama", HYLO_F32, 2);
    hylo_error err = {0};
    hylo_model *model = NULL;
    ck_assert_ok(hylo_model_load(dir, &model, &err), &err);
    const int64_t V = hylo_model_config(model)->vocab_size;
    const int32_t tokens[20] = {5, 1, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4, 6, 2, 6};
    float want[20][256], got[20][256];
    ck_assert_int_le(V, 256);
    hylo_ops device = fake_device_ops();
    copy_fail_at = 0;
    memset(&steps, 0, sizeof steps);
    steps.again_at[0] = 2;
    steps.again_at[1] = 5;
    for (int pass = 0; pass < 2; pass++) {
        model->ops = pass == 0 ? &hylo_ref_ops : &device;
        float (*out)[256] = pass == 0 ? want : got;
        hylo_state *state = NULL;
        ck_assert_ok(hylo_state_create(model, 4, &state, &err), &err); /* grows twice */
        ck_assert_ok(hylo_forward(model, state, tokens, 12, HYLO_LOGITS_LAST, out[0], &err), &err);
        for (int t = 12; t < 20; t++)
            ck_assert_ok(hylo_forward(model, state, tokens + t, 1, HYLO_LOGITS_LAST, out[t], &err),
                         &err);
        hylo_state_free(state);
    }
    ck_assert_mem_eq(got[0], want[0], (size_t)V * sizeof(float));
    for (int t = 12; t < 20; t++) ck_assert_mem_eq(got[t], want[t], (size_t)V * sizeof(float));
    /* each decode step, and only those, bracketed once with its token, its position and the
     * state's capacity (room for the step); steps 2 and 5 ran their ops twice */
    ck_assert_int_eq(steps.begins, 8);
    ck_assert_int_eq(steps.ends, 8);
    for (int t = 12; t < 20; t++) {
        ck_assert_int_eq(steps.token[t - 12], tokens[t]);
        ck_assert_int_eq(steps.pos[t - 12], t);
        ck_assert_int_ge(steps.layout[t - 12], t + 1);
    }
    /* a traced step runs its ops without the backend's steps */
    hylo_trace *trace = NULL;
    ck_assert_ok(hylo_trace_create(NULL, &trace, &err), &err);
    hylo_state *traced = NULL;
    ck_assert_ok(hylo_state_create(model, 4, &traced, &err), &err);
    hylo_state_set_trace(traced, trace);
    ck_assert_ok(hylo_forward(model, traced, tokens, 1, HYLO_LOGITS_LAST, got[0], &err), &err);
    ck_assert_int_eq(steps.begins, 8);
    hylo_state_free(traced);
    hylo_trace_free(trace);
    /* the third copy of the fill (layer 1's keys) fails: layer 0 holds random rows already */
    model->ops = &device;
    hylo_state *state = NULL;
    ck_assert_ok(hylo_state_create(model, 64, &state, &err), &err);
    copies = 0;
    copy_fail_at = 3;
    ck_assert_int_eq(hylo_state_fill_random(state, 50, 1, &err), HYLO_ERR_NOMEM);
    copy_fail_at = 0;
    ck_assert_int_eq(hylo_forward(model, state, tokens, 1, HYLO_LOGITS_LAST, got[0], &err),
                     HYLO_ERR_USAGE);
    ck_assert_msg(strstr(err.message, "injected copy fault 3"), "%s", err.message);
    hylo_state_free(state);
    model->ops = &hylo_ref_ops;
    hylo_model_free(model);
    free(dir);
}
END_TEST

static void put_nan(hylo_tensor_spec *spec, float *data)
{
    (void)spec;
    data[3] = NAN;
}

static void shrink_rows(hylo_tensor_spec *spec, float *data)
{
    (void)data;
    spec->shape[0] -= 1;
}

START_TEST(bad_weights_are_named)
{
    char *dir = make_checkpoint("tiny-llama", HYLO_F32, 1);
    const char *name = "model.layers.1.self_attn.k_proj.weight";
    char *missing = hylo_test_edit_checkpoint(dir, name, NULL, NULL, 0);
    char *nan = hylo_test_edit_checkpoint(dir, name, put_nan, NULL, 0);
    char *shape = hylo_test_edit_checkpoint(dir, name, shrink_rows, NULL, 0);
    hylo_error err = {0};
    hylo_model *model = NULL;
    ck_assert_int_eq(hylo_model_load(missing, &model, &err), HYLO_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(err.message, name));
    ck_assert_ptr_nonnull(strstr(err.message, "missing"));
    ck_assert_int_eq(hylo_model_load(nan, &model, &err), HYLO_ERR_NUMERIC);
    ck_assert_ptr_nonnull(strstr(err.message, name));
    ck_assert_int_eq(hylo_model_load(shape, &model, &err), HYLO_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(err.message, "the configuration implies"));
    ck_assert_ptr_null(model);
    ck_assert_int_ne(hylo_model_load("no-such-dir", &model, &err), HYLO_OK);
    ck_assert_ptr_nonnull(strstr(err.message, "no-such-dir"));
    free(dir);
    free(missing);
    free(nan);
    free(shape);
}
END_TEST

static void keep(hylo_tensor_spec *spec, float *data)
{
    (void)spec;
    (void)data;
}

static void bump_fourth(hylo_tensor_spec *spec, float *data)
{
    (void)spec;
    data[3] += 0.5f;
}

/* Loading `dir` fails with `want`, leaves no model, and the message (left in *err) holds s1
 * and, when not NULL, s2. */
static void expect_load_failure(const char *dir, hylo_status want, const char *s1, const char *s2,
                                hylo_error *err)
{
    hylo_model *model = (hylo_model *)&want; /* must be reset to NULL */
    hylo_status got = hylo_model_load(dir, &model, err);
    ck_assert_msg(got == want, "%s: status %s, expected %s: %s", dir, hylo_status_name(got),
                  hylo_status_name(want), err->message);
    ck_assert_ptr_null(model);
    ck_assert_msg(strstr(err->message, s1) && (!s2 || strstr(err->message, s2)), "%s",
                  err->message);
}

/* A tensor the model has no parameter for is refused, naming the file that holds it (the
 * shard when sharded), the tensor and the model; a rewrite that adds nothing loads. */
START_TEST(load_refuses_tensors_outside_the_model)
{
    char *dir = make_checkpoint("tiny-llama", HYLO_F32, 1);
    char *same = hylo_test_edit_checkpoint(dir, "model.norm.weight", keep, NULL, 0);
    assert_same_logits(dir, same);
    hylo_config cfg;
    hylo_error err = {0};
    ck_assert_ok(hylo_preset("tiny-llama", &cfg, &err), &err);

    const char *foo = "model.layers.3.foo";
    char *extra = hylo_test_edit_checkpoint(dir, "model.norm.weight", NULL, foo, 0);
    char want[512];
    snprintf(want, sizeof want, "%s/model.safetensors: tensor '%s' is not a parameter of this "
             "model (llama, %lld layers)", extra, foo, (long long)cfg.num_layers);
    expect_load_failure(extra, HYLO_ERR_SHAPE, want, NULL, &err);

    /* sharded: the message names the shard that holds the tensor */
    char *sharded = hylo_test_edit_checkpoint(dir, "model.norm.weight", NULL, foo, 64 << 10);
    expect_load_failure(sharded, HYLO_ERR_SHAPE, "-of-", "is not a parameter", &err);
    const char *end = strstr(err.message, ": tensor '");
    ck_assert_ptr_nonnull(end);
    char *file = strndup(err.message, (size_t)(end - err.message));
    hylo_safetensors *shard = NULL;
    ck_assert_ok(hylo_safetensors_open(file, &shard, &err), &err);
    ck_assert_ptr_nonnull(hylo_safetensors_find(shard, foo));
    hylo_safetensors_close(shard);

    /* a layer the configuration does not have */
    char *deeper = hylo_test_edit_checkpoint(dir, "model.layers.0.input_layernorm.weight", NULL,
                                             "model.layers.9.input_layernorm.weight", 0);
    expect_load_failure(deeper, HYLO_ERR_SHAPE,
                        "'model.layers.9.input_layernorm.weight' is not a parameter", NULL, &err);

    /* a hybrid's weights without its hybrid_config.json: the message says what is missing */
    char *hybrid = hylo_test_tmpdir("hybrid");
    hylo_hybrid_config hy;
    ck_assert_ok(hylo_hybrid_preset("tiny-hybrid-gdn", &cfg, &hy, &err), &err);
    ck_assert_ok(hylo_init_random(&cfg, &hy, 1, hybrid, 0, &err), &err);
    char *hy_path = hylo_test_join(hybrid, "hybrid_config.json");
    ck_assert_int_eq(unlink(hy_path), 0);
    expect_load_failure(hybrid, HYLO_ERR_SHAPE, "is not a parameter",
                        "/hybrid_config.json missing?", &err);
    free(hy_path);
    free(hybrid);
    free(deeper);
    free(file);
    free(sharded);
    free(extra);
    free(same);
    free(dir);
}
END_TEST

/* Tied embeddings: an lm_head.weight saved beside them (as transformers may do) is accepted
 * when it is the embedding, and the model still uses the embedding; one that differs in any
 * value or in shape is refused, since the tied model would silently ignore it. */
START_TEST(tied_head_in_the_checkpoint_must_equal_the_embedding)
{
    char *dir = make_checkpoint("tiny-qwen3", HYLO_F32, 4);
    hylo_error err = {0};
    hylo_config cfg;
    ck_assert_ok(hylo_preset("tiny-qwen3", &cfg, &err), &err);
    ck_assert(cfg.tie_word_embeddings);
    const char *embed = "model.embed_tokens.weight";
    char *equal = hylo_test_edit_checkpoint(dir, embed, NULL, "lm_head.weight", 0);
    assert_same_logits(dir, equal);
    char *differs = hylo_test_edit_checkpoint(dir, embed, bump_fourth, "lm_head.weight", 0);
    expect_load_failure(differs, HYLO_ERR_SHAPE, "model.safetensors: tensor 'lm_head.weight' "
                        "differs from 'model.embed_tokens.weight' at flat index 3", NULL, &err);
    char *shorter = hylo_test_edit_checkpoint(dir, embed, shrink_rows, "lm_head.weight", 0);
    expect_load_failure(shorter, HYLO_ERR_SHAPE, "'lm_head.weight' has shape",
                        "ties it to 'model.embed_tokens.weight'", &err);
    free(shorter);
    free(differs);
    free(equal);
    free(dir);
}
END_TEST

/* A directory whose config path would not fit in a path buffer is refused as such, not read
 * under a truncated name (which here would be the directory itself). */
START_TEST(overlong_paths_are_refused)
{
    char dir[5000] = ".";
    while (strlen(dir) < 4500) strcat(dir, "/.");
    char want[128];
    snprintf(want, sizeof want, "/config.json: path too long (%zu bytes, at most 4095)",
             strlen(dir) + strlen("/config.json"));
    hylo_error err = {0};
    expect_load_failure(dir, HYLO_ERR_IO, want, NULL, &err);
}
END_TEST

/* The real checkpoints' published parameter counts (tied embeddings counted once). */
START_TEST(real_shapes_have_the_published_parameter_counts)
{
    const struct { const char *preset; int64_t params; } cases[] = {
        {"llama-3.2-1b", 1235814400}, {"llama-3.2-3b", 3212749824}, {"qwen3-1.7b", 1720574976}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        hylo_config cfg;
        hylo_error err = {0};
        hylo_param *params = NULL;
        size_t count = 0;
        ck_assert_ok(hylo_preset(cases[c].preset, &cfg, &err), &err);
        ck_assert_ok(hylo_model_params(&cfg, NULL, &params, &count, &err), &err);
        int64_t total = 0;
        for (size_t i = 0; i < count; i++)
            total += hylo_param_numel(&params[i]);
        ck_assert_msg(total == cases[c].params, "%s: %lld parameters, expected %lld",
                      cases[c].preset, (long long)total, (long long)cases[c].params);
        free(params);
    }
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("teacher");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, forward_matches_independent_double_formulation, 0, 4);
    tcase_add_loop_test(tc, prefill_equals_token_by_token_decode, 0, 2);
    tcase_add_test(tc, continued_prefill_equals_single_prefill);
    tcase_add_test(tc, init_is_deterministic);
    tcase_add_test(tc, sharded_checkpoint_loads_like_single_file);
    tcase_add_test(tc, bad_tokens_are_rejected_without_side_effects);
    tcase_add_test(tc, half_done_forward_poisons_the_state);
    tcase_add_test(tc, device_paths_match_ref_and_failed_fill_poisons);
    tcase_add_test(tc, bad_weights_are_named);
    tcase_add_test(tc, load_refuses_tensors_outside_the_model);
    tcase_add_test(tc, tied_head_in_the_checkpoint_must_equal_the_embedding);
    tcase_add_test(tc, overlong_paths_are_refused);
    tcase_add_test(tc, real_shapes_have_the_published_parameter_counts);
    suite_add_tcase(s, tc);
    return s;
}

HYLO_TEST_MAIN
