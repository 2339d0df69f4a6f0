/* test_mla.c: the MLA reference mixer (spec sec. 3 and 6). The naive and absorbed forms
 * against each other, against split calls (prefill / decode / continued prefill), against a
 * one-token closed form, against an explicit-K/V formulation run through hylo_ref_attention,
 * with a check of the rope pairing, and against HF transformers' DeepseekV3Attention
 * (golden/hf_blocks/mla-*.safetensors, see README_mla.md there). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers/layers.h"
#include "layers/mla.h"
#include "testutil.h"

/* The random layers: H query heads, Hm = 2 (GQA form) or H, r_q = R_Q or 0 (q_proj). */
enum { D = 24, H = 4, R_Q = 16, R_KV = 10, NOPE = 6, ROPE = 8, V = 5, DQ = NOPE + ROPE };
enum { T_MAX = 11, N_VARIANTS = 16 };

typedef hylo_status (*mla_fn)(const hylo_mla_layer *, hylo_mla_cache *, int64_t, const float *,
                              int64_t, float *, const hylo_tracer *, hylo_error *);
static const mla_fn forms[2] = {hylo_ref_mla_forward, hylo_ref_mla_forward_absorbed};
static const char *const form_names[2] = {"naive", "absorbed"};

/* Variant bits: 1 Hm < H, 2 q_rank > 0 (q_a/q_b), 4 latent norms, 8 q/k norms. */
typedef struct {
    hylo_mla_layer layer;
    float *kv_b;                   /* the layer's kv_b, writable for the rope test    */
    float *owned[10];              /* every tensor of the layer, freed by fixture_free */
    int n_owned;
    double inv_freq[ROPE / 2];
    char name[64];
} fixture;

static float *tensor(fixture *f, hylo_test_rng *rng, int64_t n, double mean, double std)
{
    float *p = malloc((size_t)n * sizeof *p);
    ck_assert_ptr_nonnull(p);
    hylo_test_fill_normal(rng, p, (size_t)n, std);
    for (int64_t i = 0; i < n; i++) p[i] += (float)mean;
    f->owned[f->n_owned++] = p;
    return p;
}

/* Linear weights N(0, 1/in), so that activations and scores are O(1); norm weights 1 + N(0,
 * 0.04). YaRN rope (theta 1e4, factor 4, L0 8): at the test's positions every pair regime
 * (kept, blended, interpolated) turns, and the cos/sin factor is 1.1386. */
static void fixture_make(fixture *f, int variant)
{
    memset(f, 0, sizeof *f);
    hylo_test_rng rng = {1000 + (uint64_t)variant};
    const int64_t Hm = variant & 1 ? 2 : H;
    hylo_mla_dims *d = &f->layer.dims;
    hylo_mla_weights *w = &f->layer.w;
    *d = (hylo_mla_dims){D, H, Hm, variant & 2 ? R_Q : 0, R_KV, NOPE, ROPE, V, 1e-6};
    if (d->q_rank > 0) {
        w->q_a = tensor(f, &rng, R_Q * D, 0.0, 1.0 / sqrt(D));
        w->q_b = tensor(f, &rng, H * DQ * R_Q, 0.0, 1.0 / sqrt(R_Q));
        if (variant & 4) w->q_a_norm = tensor(f, &rng, R_Q, 1.0, 0.2);
    } else {
        w->q_proj = tensor(f, &rng, H * DQ * D, 0.0, 1.0 / sqrt(D));
    }
    w->kv_a = tensor(f, &rng, (R_KV + ROPE) * D, 0.0, 1.0 / sqrt(D));
    if (variant & 4) w->kv_a_norm = tensor(f, &rng, R_KV, 1.0, 0.2);
    f->kv_b = tensor(f, &rng, Hm * (NOPE + V) * R_KV, 0.0, 1.0 / sqrt(R_KV));
    w->kv_b = f->kv_b;
    w->out = tensor(f, &rng, D * H * V, 0.0, 1.0 / sqrt(H * V));
    if (variant & 8) {
        w->q_norm = tensor(f, &rng, DQ, 1.0, 0.2);
        w->k_norm = tensor(f, &rng, DQ, 1.0, 0.2);
    }
    hylo_rope_config rope = {.type = HYLO_ROPE_YARN, .theta = 1e4, .factor = 4.0,
                             .original_max_position = 8, .beta_fast = 32, .beta_slow = 1,
                             .truncate = true};
    hylo_ref_rope_frequencies(&rope, ROPE, f->inv_freq, &f->layer.rope_scale);
    f->layer.rope_inv_freq = f->inv_freq;
    f->layer.softmax_scale = 1.0 / sqrt(DQ);
    snprintf(f->name, sizeof f->name, "Hm=%lld %s%s%s", (long long)Hm,
             d->q_rank ? "q_a/q_b" : "q_proj", variant & 4 ? " latent-norms" : "",
             variant & 8 ? " qk-norms" : "");
}

static void fixture_free(fixture *f)
{
    for (int i = 0; i < f->n_owned; i++) free(f->owned[i]);
}

static void random_input(float *x, int64_t T, uint64_t seed)
{
    hylo_test_rng rng = {seed};
    hylo_test_fill_normal(&rng, x, (size_t)(T * D), 1.0);
}

/* Runs x through `form` in consecutive calls of pieces[i] tokens on one fresh cache. */
static void run_pieces(const fixture *f, int form, const float *x, const int *pieces,
                       int n_pieces, float *y)
{
    float latent[T_MAX * R_KV], k_pe[T_MAX * ROPE];
    hylo_mla_cache cache = {latent, k_pe};
    hylo_error err = {0};
    int64_t pos = 0;
    for (int i = 0; i < n_pieces; i++) {
        ck_assert_int_le(pos + pieces[i], T_MAX);
        ck_assert_ok(forms[form](&f->layer, &cache, pos, x + pos * D, pieces[i], y + pos * D,
                                 NULL, &err), &err);
        pos += pieces[i];
    }
}

/* Prefill of 7 tokens then 4 decode steps, naive against absorbed. Both store fp32 and
 * accumulate in double, only the association of the r_kv and nope sums differs (plus the fp32
 * rounding of q~ vs of k_nope, v): NMSE ~1e-15 expected, measured <= 3e-15; 1e-12 keeps a wide
 * margin while a wrong head mapping or a dropped term gives > 1e-3. */
START_TEST(absorbed_matches_naive)
{
    fixture f;
    fixture_make(&f, _i);
    float x[T_MAX * D], y_naive[T_MAX * D], y_abs[T_MAX * D];
    random_input(x, T_MAX, 7);
    const int pieces[] = {7, 1, 1, 1, 1};
    run_pieces(&f, 0, x, pieces, 5, y_naive);
    run_pieces(&f, 1, x, pieces, 5, y_abs);
    printf("mla absorbed vs naive [%s]: NMSE %.3e\n", f.name,
           hylo_nmse(y_abs, y_naive, T_MAX * D));
    ck_assert_nmse(y_abs, y_naive, T_MAX * D, 1e-12, f.name);
    fixture_free(&f);
}
END_TEST

/* One prefill against token-by-token decode and continued prefills, both forms. Every output
 * row goes through the same operations whatever the split (per-row linears, the same cached
 * rows, one thread per (token, head)), so the results must be bitwise equal. */
START_TEST(split_calls_match_one_prefill)
{
    fixture f;
    fixture_make(&f, _i);
    float x[T_MAX * D], whole[T_MAX * D], split[T_MAX * D];
    random_input(x, T_MAX, 8);
    const int all[] = {T_MAX}, ones[] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    const int two[] = {4, 7}, three[] = {4, 5, 2};
    const struct { const int *pieces; int n; } splits[] = {{ones, 11}, {two, 2}, {three, 3}};
    for (int form = 0; form < 2; form++) {
        run_pieces(&f, form, x, all, 1, whole);
        for (size_t s = 0; s < sizeof splits / sizeof splits[0]; s++) {
            run_pieces(&f, form, x, splits[s].pieces, splits[s].n, split);
            ck_assert_msg(memcmp(whole, split, sizeof whole) == 0,
                          "%s %s: split %zu differs from one prefill (NMSE %.3e)", f.name,
                          form_names[form], s, hylo_nmse(split, whole, T_MAX * D));
        }
    }
    fixture_free(&f);
}
END_TEST

/* With one token at position 0 the softmax weight is 1, so every head returns its value:
 *   y = out(concat_h W_UV[g(h)] latent),  latent = kv_a_norm?(first r_kv rows of kv_a x).
 * Written out in double here, sharing no code with the layer. The layer rounds the latent and
 * the per-head outputs to fp32: NMSE ~1e-15, measured <= 6e-15; 1e-12 flags any real error. */
START_TEST(one_token_returns_its_value_path)
{
    fixture f;
    fixture_make(&f, _i);
    const hylo_mla_weights *w = &f.layer.w;
    const int64_t group = H / f.layer.dims.kv_heads;
    float x[D], want[D], y[D];
    random_input(x, 1, 9);
    double latent[R_KV], v[H][V], sum_sq = 0.0;
    for (int c = 0; c < R_KV; c++) {
        latent[c] = 0.0;
        for (int k = 0; k < D; k++) latent[c] += (double)w->kv_a[c * D + k] * x[k];
        sum_sq += latent[c] * latent[c];
    }
    for (int c = 0; c < R_KV && w->kv_a_norm; c++)
        latent[c] *= w->kv_a_norm[c] / sqrt(sum_sq / R_KV + f.layer.dims.eps);
    for (int h = 0; h < H; h++)
        for (int e = 0; e < V; e++) {
            const float *row = w->kv_b + ((h / group) * (NOPE + V) + NOPE + e) * R_KV;
            v[h][e] = 0.0;
            for (int c = 0; c < R_KV; c++) v[h][e] += (double)row[c] * latent[c];
        }
    for (int o = 0; o < D; o++) {
        double acc = 0.0;
        for (int h = 0; h < H; h++)
            for (int e = 0; e < V; e++) acc += (double)w->out[o * H * V + h * V + e] * v[h][e];
        want[o] = (float)acc;
    }
    const int one[] = {1};
    double nmse[2];
    for (int form = 0; form < 2; form++) {
        run_pieces(&f, form, x, one, 1, y);
        nmse[form] = hylo_nmse(y, want, D);
        ck_assert_nmse(y, want, D, 1e-12, form_names[form]);
    }
    printf("mla one token vs its value path [%s]: NMSE naive %.3e, absorbed %.3e\n", f.name,
           nmse[0], nmse[1]);
    fixture_free(&f);
}
END_TEST

/* Rotates x[0 .. ROPE) to position pos: pairs (2i, 2i + 1), as MLA must, or (i, i + ROPE/2),
 * the teacher's rotate-half pairing. Written out here, independent of rope.c. */
static void rotate(float *x, int64_t pos, const double *inv_freq, double scale, bool adjacent)
{
    for (int i = 0; i < ROPE / 2; i++) {
        int a = adjacent ? 2 * i : i, b = adjacent ? 2 * i + 1 : i + ROPE / 2;
        double c = scale * cos((double)pos * inv_freq[i]), s = scale * sin((double)pos * inv_freq[i]);
        double xa = x[a], xb = x[b];
        x[a] = (float)(xa * c - xb * s);
        x[b] = (float)(xb * c + xa * s);
    }
}

static float *zeros(int64_t n)
{
    float *p = calloc((size_t)n, sizeof *p);
    ck_assert_ptr_nonnull(p);
    return p;
}

/* The layer as plain GQA attention (Hkv = Hm) over explicit per-head keys and values, zero
 * padded to hd = max(dq, v), through hylo_ref_attention; tokens at positions 0 .. T-1:
 *   Q[t, h] = [q_nope | R_t q_pe]                 after q_norm over [q_nope | q_pe]
 *   K[j, g] = [W_UK[g] latent_j | R_j k_pe_j]     after k_norm over both; k_pe_j broadcast
 *   V[j, g] = W_UV[g] latent_j                    y = out(concat_h O[t, h][0 .. v))      */
static void explicit_mla(const fixture *f, const float *x, int64_t T, bool adjacent, float *y)
{
    const hylo_mla_layer *L = &f->layer;
    const hylo_mla_weights *w = &L->w;
    const int64_t Hm = L->dims.kv_heads, HD = DQ > V ? DQ : V, DKV = NOPE + V;
    const double eps = L->dims.eps;
    float *q = zeros(T * H * DQ), *qa = zeros(T * R_Q), *ckv = zeros(T * (R_KV + ROPE));
    float *latent = zeros(T * R_KV), *kv = zeros(T * Hm * DKV), *o = zeros(T * H * V);
    float *Q = zeros(T * H * HD), *K = zeros(T * Hm * HD), *Vs = zeros(T * Hm * HD);
    float *O = zeros(T * H * HD);
    if (L->dims.q_rank > 0) {
        hylo_ref_linear(x, w->q_a, NULL, qa, T, D, R_Q);
        if (w->q_a_norm) hylo_ref_rmsnorm(qa, w->q_a_norm, qa, T, R_Q, eps);
        hylo_ref_linear(qa, w->q_b, NULL, q, T, R_Q, H * DQ);
    } else {
        hylo_ref_linear(x, w->q_proj, NULL, q, T, D, H * DQ);
    }
    if (w->q_norm) hylo_ref_rmsnorm(q, w->q_norm, q, T * H, DQ, eps);
    hylo_ref_linear(x, w->kv_a, NULL, ckv, T, D, R_KV + ROPE);
    for (int64_t j = 0; j < T; j++)
        memcpy(latent + j * R_KV, ckv + j * (R_KV + ROPE), R_KV * sizeof(float));
    if (w->kv_a_norm) hylo_ref_rmsnorm(latent, w->kv_a_norm, latent, T, R_KV, eps);
    hylo_ref_linear(latent, w->kv_b, NULL, kv, T, R_KV, Hm * DKV);
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < H; h++) {
            float *qh = Q + (t * H + h) * HD;
            memcpy(qh, q + (t * H + h) * DQ, DQ * sizeof(float));
            rotate(qh + NOPE, t, L->rope_inv_freq, L->rope_scale, adjacent);
        }
    for (int64_t j = 0; j < T; j++)
        for (int64_t g = 0; g < Hm; g++) {
            float *k = K + (j * Hm + g) * HD;
            memcpy(k, kv + (j * Hm + g) * DKV, NOPE * sizeof(float));
            memcpy(k + NOPE, ckv + j * (R_KV + ROPE) + R_KV, ROPE * sizeof(float));
            if (w->k_norm) hylo_ref_rmsnorm(k, w->k_norm, k, 1, DQ, eps);
            rotate(k + NOPE, j, L->rope_inv_freq, L->rope_scale, adjacent);
            memcpy(Vs + (j * Hm + g) * HD, kv + (j * Hm + g) * DKV + NOPE, V * sizeof(float));
        }
    hylo_error err = {0};
    ck_assert_ok(hylo_ref_attention(Q, K, Vs, O, T, T, H, Hm, HD, L->softmax_scale, &err), &err);
    for (int64_t t = 0; t < T * H; t++) memcpy(o + t * V, O + t * HD, V * sizeof(float));
    hylo_ref_linear(o, w->out, NULL, y, T, H * V, D);
    float *bufs[] = {q, qa, ckv, latent, kv, o, Q, K, Vs, O};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
}

/* Both forms, a prefill of 6 then one of 5 tokens, against the explicit formulation. Same
 * fp32 storage / double sums, different association (explicit keys vs the latent split):
 * NMSE ~1e-15 expected, measured 0 (naive: the fp32 results come out bitwise equal) and
 * <= 4e-15 (absorbed); 1e-12 leaves a wide margin. */
START_TEST(matches_explicit_attention)
{
    fixture f;
    fixture_make(&f, _i);
    float x[T_MAX * D], want[T_MAX * D], y[T_MAX * D];
    random_input(x, T_MAX, 10);
    explicit_mla(&f, x, T_MAX, true, want);
    const int pieces[] = {6, 5};
    double nmse[2];
    for (int form = 0; form < 2; form++) {
        run_pieces(&f, form, x, pieces, 2, y);
        nmse[form] = hylo_nmse(y, want, T_MAX * D);
        ck_assert_nmse(y, want, T_MAX * D, 1e-12, form_names[form]);
    }
    printf("mla vs explicit K/V attention [%s]: NMSE naive %.3e, absorbed %.3e\n", f.name,
           nmse[0], nmse[1]);
    fixture_free(&f);
}
END_TEST

/* With W_UK = 0 the scores are q_pe . k_pe only: the output depends on the content of the
 * tokens only through the rope slices and their positions. The layer must match the explicit
 * formulation with adjacent pairs (to rounding, as above) and be far from the rotate-half
 * pairing (NMSE > 1e-4, measured 0.15-0.16), so that a wrong pairing cannot pass. */
START_TEST(rope_slice_rotates_adjacent_pairs)
{
    const int variants[] = {1, 15};
    for (int v = 0; v < 2; v++) {
        fixture f;
        fixture_make(&f, variants[v]);
        for (int64_t g = 0; g < f.layer.dims.kv_heads; g++)
            memset(f.kv_b + g * (NOPE + V) * R_KV, 0, NOPE * R_KV * sizeof(float));
        float x[T_MAX * D], adjacent[T_MAX * D], half[T_MAX * D], y[T_MAX * D];
        random_input(x, T_MAX, 11);
        explicit_mla(&f, x, T_MAX, true, adjacent);
        explicit_mla(&f, x, T_MAX, false, half);
        const int all[] = {T_MAX};
        for (int form = 0; form < 2; form++) {
            run_pieces(&f, form, x, all, 1, y);
            ck_assert_nmse(y, adjacent, T_MAX * D, 1e-12, form_names[form]);
            double wrong = hylo_nmse(y, half, T_MAX * D);
            printf("mla %s [%s, W_UK = 0]: NMSE %.3e vs adjacent pairs, %.3e vs rotate-half\n",
                   form_names[form], f.name, hylo_nmse(y, adjacent, T_MAX * D), wrong);
            ck_assert_msg(wrong > 1e-4, "%s: rotate-half pairing indistinguishable (NMSE %.3e)",
                          f.name, wrong);
        }
        fixture_free(&f);
    }
}
END_TEST

START_TEST(bad_arguments_are_rejected)
{
    fixture f;
    fixture_make(&f, 3);
    float x[D], y[D], latent[R_KV], k_pe[ROPE];
    hylo_mla_cache cache = {latent, k_pe};
    hylo_error err = {0};
    random_input(x, 1, 12);
    hylo_mla_layer bad = f.layer;
    bad.dims.kv_heads = 3; /* does not divide H = 4 */
    ck_assert_int_eq(hylo_ref_mla_forward(&bad, &cache, 0, x, 1, y, NULL, &err), HYLO_ERR_USAGE);
    ck_assert_ptr_nonnull(strstr(err.message, "Hm must divide H"));
    bad = f.layer;
    bad.dims.rope = 7;
    ck_assert_int_eq(hylo_ref_mla_forward_absorbed(&bad, &cache, 0, x, 1, y, NULL, &err),
                     HYLO_ERR_USAGE);
    bad = f.layer;
    bad.w.q_b = NULL;
    ck_assert_int_eq(hylo_ref_mla_forward(&bad, &cache, 0, x, 1, y, NULL, &err), HYLO_ERR_USAGE);
    ck_assert_ptr_nonnull(strstr(err.message, "q_b"));
    ck_assert_int_eq(hylo_ref_mla_forward(&f.layer, &cache, -1, x, 1, y, NULL, &err), HYLO_ERR_RANGE);
    fixture_free(&f);
}
END_TEST

/* ---- HF transformers DeepseekV3Attention (tools/hf_blocks/mla.py) ---- */

static const char *const hf_cases[] = {"yarn-dsv3", "yarn-mscale"};

static const char *meta_str(const hylo_safetensors *st, const char *key)
{
    const char *s = hylo_safetensors_metadata(st, key);
    ck_assert_msg(s != NULL, "golden file lacks metadata %s", key);
    return s;
}

static double meta_num(const hylo_safetensors *st, const char *key)
{
    return strtod(meta_str(st, key), NULL);
}

/* A copy of an F32 tensor of `numel` elements (views into the mapping are not aligned). */
static float *load(const hylo_safetensors *st, const char *name, int64_t numel)
{
    const hylo_tensor_view *v = hylo_safetensors_find(st, name);
    ck_assert_msg(v != NULL, "golden file lacks %s", name);
    ck_assert_int_eq(v->dtype, HYLO_F32);
    ck_assert_int_eq(v->numel, numel);
    float *p = malloc(v->nbytes);
    ck_assert_ptr_nonnull(p);
    memcpy(p, v->data, v->nbytes);
    return p;
}

/* HF's frequencies are fp32 (relative rounding 6e-8): 1e-6 checks our double YaRN against
 * them, including the cos/sin attention factor and the softmax scale
 *   scaling = (nope + rope)^-0.5 * yarn_get_mscale(factor, mscale_all_dim)^2,
 * yarn_get_mscale(s, m) = 0.1 m ln(s) + 1. The outputs: HF runs in fp32 (its own fp32 vs fp64
 * gap is NMSE ~1e-13), hylo in fp32 storage with double sums: measured NMSE ~1e-13 against
 * HF fp32 and ~1e-14 against HF fp64; 1e-10 (as for the teacher golden cases) keeps a margin
 * while any formula slip (pairing, mscale^2, the cos/sin factor, a norm) gives > 1e-4. */
START_TEST(matches_transformers_deepseek_v3)
{
    const char *root = getenv("HYLO_TEST_ROOT");
    char path[1024];
    snprintf(path, sizeof path, "%s/golden/hf_blocks/mla-%s.safetensors", root ? root : ".",
             hf_cases[_i]);
    hylo_error err = {0};
    hylo_safetensors *st = NULL;
    ck_assert_ok(hylo_safetensors_open(path, &st, &err), &err);
    hylo_mla_layer L = {0};
    hylo_mla_dims *d = &L.dims;
    const int64_t T = (int64_t)meta_num(st, "T");
    d->hidden = (int64_t)meta_num(st, "hidden_size");
    d->heads = (int64_t)meta_num(st, "num_attention_heads");
    d->kv_heads = (int64_t)meta_num(st, "num_key_value_heads");
    d->q_rank = (int64_t)meta_num(st, "q_lora_rank");
    d->kv_rank = (int64_t)meta_num(st, "kv_lora_rank");
    d->nope = (int64_t)meta_num(st, "qk_nope_head_dim");
    d->rope = (int64_t)meta_num(st, "qk_rope_head_dim");
    d->v = (int64_t)meta_num(st, "v_head_dim");
    d->eps = meta_num(st, "rms_norm_eps");
    ck_assert_str_eq(meta_str(st, "rope_type"), "yarn");
    hylo_rope_config rope = {.type = HYLO_ROPE_YARN, .theta = meta_num(st, "rope_theta"),
                             .factor = meta_num(st, "factor"),
                             .original_max_position =
                                 (int64_t)meta_num(st, "original_max_position_embeddings"),
                             .beta_fast = meta_num(st, "beta_fast"),
                             .beta_slow = meta_num(st, "beta_slow"),
                             .mscale = meta_num(st, "mscale"),
                             .mscale_all_dim = meta_num(st, "mscale_all_dim"), .truncate = true};
    double inv_freq[64];
    ck_assert_int_le(d->rope / 2, 64);
    hylo_ref_rope_frequencies(&rope, d->rope, inv_freq, &L.rope_scale);
    L.rope_inv_freq = inv_freq;
    float *hf_freq = load(st, "inv_freq", d->rope / 2), *hf_factor = load(st, "attention_scaling", 1);
    float *hf_scale = load(st, "softmax_scale", 1);
    for (int64_t i = 0; i < d->rope / 2; i++)
        ck_assert_double_eq_tol(inv_freq[i] / hf_freq[i], 1.0, 1e-6);
    ck_assert_double_eq_tol(L.rope_scale / hf_factor[0], 1.0, 1e-6);
    double m_all = 0.1 * rope.mscale_all_dim * log(rope.factor) + 1.0;
    L.softmax_scale = m_all * m_all / sqrt((double)(d->nope + d->rope));
    ck_assert_double_eq_tol(L.softmax_scale / hf_scale[0], 1.0, 1e-6);

    const int64_t dq = d->nope + d->rope;
    float *x = load(st, "x", T * d->hidden), *want = load(st, "y", T * d->hidden);
    float *want64 = load(st, "y_f64", T * d->hidden);
    float *w[7];
    w[0] = load(st, "q_a_proj.weight", d->q_rank * d->hidden);
    w[1] = load(st, "q_a_layernorm.weight", d->q_rank);
    w[2] = load(st, "q_b_proj.weight", d->heads * dq * d->q_rank);
    w[3] = load(st, "kv_a_proj_with_mqa.weight", (d->kv_rank + d->rope) * d->hidden);
    w[4] = load(st, "kv_a_layernorm.weight", d->kv_rank);
    w[5] = load(st, "kv_b_proj.weight", d->kv_heads * (d->nope + d->v) * d->kv_rank);
    w[6] = load(st, "o_proj.weight", d->hidden * d->heads * d->v);
    L.w = (hylo_mla_weights){.q_a = w[0], .q_a_norm = w[1], .q_b = w[2], .kv_a = w[3],
                             .kv_a_norm = w[4], .kv_b = w[5], .out = w[6]};
    float *y = malloc((size_t)(T * d->hidden) * sizeof *y);
    float *latent = malloc((size_t)(T * d->kv_rank) * sizeof *latent);
    float *k_pe = malloc((size_t)(T * d->rope) * sizeof *k_pe);
    ck_assert(y && latent && k_pe);
    for (int form = 0; form < 2; form++) {
        hylo_mla_cache cache = {latent, k_pe};
        ck_assert_ok(forms[form](&L, &cache, 0, x, T, y, NULL, &err), &err);
        printf("mla %s vs transformers DeepseekV3Attention [%s]: NMSE %.3e (HF fp32), "
               "%.3e (HF fp64), max abs %.3e\n", form_names[form], hf_cases[_i],
               hylo_nmse(y, want, (size_t)(T * d->hidden)),
               hylo_nmse(y, want64, (size_t)(T * d->hidden)),
               hylo_max_abs_diff(y, want, (size_t)(T * d->hidden)));
        ck_assert_nmse(y, want, (size_t)(T * d->hidden), 1e-10, hf_cases[_i]);
        ck_assert_nmse(y, want64, (size_t)(T * d->hidden), 1e-10, hf_cases[_i]);
    }
    float *bufs[] = {hf_freq, hf_factor, hf_scale, x, want, want64, y, latent, k_pe};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    for (int i = 0; i < 7; i++) free(w[i]);
    hylo_safetensors_close(st);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("mla");
    TCase *tc = tcase_create("reference");
    tcase_add_loop_test(tc, absorbed_matches_naive, 0, N_VARIANTS);
    tcase_add_loop_test(tc, split_calls_match_one_prefill, 0, N_VARIANTS);
    tcase_add_loop_test(tc, one_token_returns_its_value_path, 0, N_VARIANTS);
    tcase_add_loop_test(tc, matches_explicit_attention, 0, N_VARIANTS);
    tcase_add_test(tc, rope_slice_rotates_adjacent_pairs);
    tcase_add_test(tc, bad_arguments_are_rejected);
    suite_add_tcase(s, tc);
    TCase *hf = tcase_create("transformers");
    tcase_add_loop_test(hf, matches_transformers_deepseek_v3, 0,
                        sizeof hf_cases / sizeof hf_cases[0]);
    suite_add_tcase(s, hf);
    return s;
}

HYLO_TEST_MAIN
