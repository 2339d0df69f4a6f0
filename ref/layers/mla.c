/* mla.c: Multi-head Latent Attention (spec sec. 3 and 6), the naive and the absorbed forms, in
 * fp32 storage with double accumulation.
 *
 * Notation: H query heads, Hm MLA KV heads, query head h reads KV head g = h / (H / Hm);
 * dq = nope + rope (one query head), dkv = nope + v (the rows of kv_b per KV head):
 *   W_UK[g] = kv_b rows [g dkv, g dkv + nope)         [nope, r_kv]
 *   W_UV[g] = kv_b rows [g dkv + nope, (g + 1) dkv)   [v, r_kv]
 * Cache row j holds position j.
 *
 * The k_norm (spec sec. 3 Decision, Qwen3 bases) is a per-head RMSNorm over [k_nope | k_pe]
 * applied before RoPE. Its statistics mix k_nope, which differs per KV head, into k_pe: after
 * the norm every KV head has its own k_pe, and the rotation has to follow the norm. To keep the
 * cache at r_kv + rope floats per position, a layer with a k_norm caches the raw k_pe (neither
 * normalized nor rotated) and rebuilds the keys of every cached position at attention time:
 *   k[j, g] = [k_nope | k_pe](j, g) after k_norm, its rope slice then rotated to position j.
 * Without a k_norm the cache holds RoPE(k_pe, j), the spec's layout. Such keys are not linear in
 * the latent, so the absorbed form cannot fold W_UK into the query there: it scores with the
 * rebuilt keys like the naive form, and still folds W_UV (values stay linear in the latent). */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "layers/layers.h"
#include "layers/mla.h"

/* Row j of a per-position table lies at base + j * stride. */
typedef struct {
    const float *base;
    int64_t stride;
} mla_rows;

/* What one query head reads: with n_a content and n_pe position dims,
 *   s_j = scale (qa . ka_j + qpe . kpe_j),    out = sum_j softmax(s)_j val_j  (n_val dims). */
typedef struct {
    const float *qa, *qpe;
    mla_rows ka, kpe, val;
    int64_t n_a, n_pe, n_val;
} mla_head;

/* Scratch of one forward call; NULL where the form or the layer does not need it. */
typedef struct {
    float *q_a;   /* [T, r_q]                     q_a x                                   */
    float *q;     /* [T, H, dq]                   queries, rope slices rotated            */
    float *ckv;   /* [T, r_kv + rope]             kv_a x                                  */
    float *kv;    /* [len, Hm, dkv]               decompressed [k_nope | v]               */
    float *keys;  /* [len, Hm, dq]                rebuilt keys (k_norm)                   */
    float *q_abs; /* [T, H, r_kv]                 absorbed queries W_UK^T q_nope          */
    double *acc;  /* [T, H, v] or [T, H, r_kv]    softmax-weighted sums of values/latents */
    float *o;     /* [T, H * v]                   per-head outputs                        */
} mla_scratch;

static double dot(const float *a, const float *b, int64_t n)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * (double)b[i];
    return s;
}

static hylo_status mla_check(const hylo_mla_layer *L, const hylo_mla_cache *cache,
                             int64_t pos0, const float *x, int64_t T, const float *y,
                             hylo_error *err)
{
    const hylo_mla_dims *d = &L->dims;
    const hylo_mla_weights *w = &L->w;
    if (pos0 < 0 || T < 0)
        return hylo_error_set(err, HYLO_ERR_RANGE, "mla: pos0 (%lld) and T (%lld) must be >= 0",
                              (long long)pos0, (long long)T);
    if (d->hidden <= 0 || d->heads <= 0 || d->kv_heads <= 0 || d->kv_rank <= 0 ||
        d->rope <= 0 || d->v <= 0 || d->nope < 0 || d->q_rank < 0 || d->rope % 2 != 0 ||
        d->heads % d->kv_heads != 0)
        return hylo_error_set(err, HYLO_ERR_USAGE,
                              "mla: dims D %lld H %lld Hm %lld r_q %lld r_kv %lld nope %lld "
                              "rope %lld v %lld: sizes must be positive (nope, r_q >= 0), rope "
                              "even and Hm must divide H",
                              (long long)d->hidden, (long long)d->heads, (long long)d->kv_heads,
                              (long long)d->q_rank, (long long)d->kv_rank, (long long)d->nope,
                              (long long)d->rope, (long long)d->v);
    bool q_ok = d->q_rank > 0 ? w->q_a && w->q_b : w->q_proj != NULL;
    if (!q_ok || !w->kv_a || !w->kv_b || !w->out || !L->rope_inv_freq)
        return hylo_error_set(err, HYLO_ERR_USAGE,
                              "mla: missing a weight (%s, kv_a, kv_b, out) or the rope "
                              "frequencies", d->q_rank > 0 ? "q_a, q_b" : "q_proj");
    if (T > 0 && (!x || !y || !cache || !cache->latent || !cache->k_pe))
        return hylo_error_set(err, HYLO_ERR_USAGE, "mla: NULL input, output or cache buffer");
    return HYLO_OK;
}

static void *alloc_if(bool need, int64_t n, size_t size, bool *ok)
{
    if (!need) return NULL;
    void *p = malloc((size_t)n * size);
    if (!p) *ok = false;
    return p;
}

static void free_scratch(mla_scratch *s)
{
    free(s->q_a);
    free(s->q);
    free(s->ckv);
    free(s->kv);
    free(s->keys);
    free(s->q_abs);
    free(s->acc);
    free(s->o);
}

/* The naive form decompresses the whole cache; the absorbed one only rebuilds keys, and only
 * with a k_norm, and otherwise scores latents with absorbed queries. */
static hylo_status alloc_scratch(mla_scratch *s, const hylo_mla_layer *L, int64_t T,
                                 int64_t len, bool absorbed, hylo_error *err)
{
    const hylo_mla_dims *d = &L->dims;
    const int64_t H = d->heads, Hm = d->kv_heads, dq = d->nope + d->rope;
    const bool k_norm = L->w.k_norm != NULL;
    const int64_t n_acc = absorbed ? d->kv_rank : d->v;
    bool ok = true;
    s->q_a = alloc_if(d->q_rank > 0, T * d->q_rank, sizeof(float), &ok);
    s->q = alloc_if(true, T * H * dq, sizeof(float), &ok);
    s->ckv = alloc_if(true, T * (d->kv_rank + d->rope), sizeof(float), &ok);
    s->kv = alloc_if(!absorbed || k_norm, len * Hm * (d->nope + d->v), sizeof(float), &ok);
    s->keys = alloc_if(k_norm, len * Hm * dq, sizeof(float), &ok);
    s->q_abs = alloc_if(absorbed && !k_norm, T * H * d->kv_rank, sizeof(float), &ok);
    s->acc = alloc_if(true, T * H * n_acc, sizeof(double), &ok);
    s->o = alloc_if(true, T * H * d->v, sizeof(float), &ok);
    if (ok) return HYLO_OK;
    free_scratch(s);
    return hylo_error_set(err, HYLO_ERR_NOMEM,
                          "mla: cannot allocate scratch for %lld tokens over %lld positions",
                          (long long)T, (long long)len);
}

/* Rotates `count` rope slices, `stride` floats apart starting at `first`, to position `pos`:
 * adjacent pairs (2i, 2i+1), YaRN frequencies, cos and sin multiplied by rope_scale. */
static void rope_slices(const hylo_mla_layer *L, float *first, int64_t count, int64_t stride,
                        int64_t pos)
{
    for (int64_t i = 0; i < count; i++)
        hylo_ref_rope_interleaved(first + i * stride, 1, L->dims.rope, pos, L->rope_inv_freq,
                                  L->rope_scale);
}

/* x [T, D] -> s->q [T, H, dq], tokens at positions pos0 ..:
 *   q = q_b(q_a_norm?(q_a x))  (r_q > 0)   or   q = q_proj x
 *   q_h <- q_norm?(q_h)                    per head over [q_nope | q_pe]
 *   q_pe_h <- RoPE(q_pe_h, pos0 + t)                                                     */
static void mla_queries(const hylo_mla_layer *L, const float *x, int64_t T, int64_t pos0,
                        mla_scratch *s)
{
    const hylo_mla_dims *d = &L->dims;
    const int64_t H = d->heads, dq = d->nope + d->rope;
    if (d->q_rank > 0) {
        hylo_ref_linear(x, L->w.q_a, NULL, s->q_a, T, d->hidden, d->q_rank);
        if (L->w.q_a_norm) hylo_ref_rmsnorm(s->q_a, L->w.q_a_norm, s->q_a, T, d->q_rank, d->eps);
        hylo_ref_linear(s->q_a, L->w.q_b, NULL, s->q, T, d->q_rank, H * dq);
    } else {
        hylo_ref_linear(x, L->w.q_proj, NULL, s->q, T, d->hidden, H * dq);
    }
    if (L->w.q_norm) hylo_ref_rmsnorm(s->q, L->w.q_norm, s->q, T * H, dq, d->eps);
    for (int64_t t = 0; t < T; t++) rope_slices(L, s->q + t * H * dq + d->nope, H, dq, pos0 + t);
}

/* x [T, D]; writes cache rows pos0 .. pos0 + T - 1:
 *   [c_kv | k_pe] = kv_a x
 *   latent = kv_a_norm?(c_kv)
 *   k_pe <- RoPE(k_pe, p)        (kept raw with a k_norm: see the top of this file)      */
static void mla_append(const hylo_mla_layer *L, hylo_mla_cache *cache, const float *x,
                       int64_t T, int64_t pos0, mla_scratch *s)
{
    const hylo_mla_dims *d = &L->dims;
    const int64_t r = d->kv_rank, rope = d->rope;
    float *latent = cache->latent + pos0 * r, *k_pe = cache->k_pe + pos0 * rope;
    hylo_ref_linear(x, L->w.kv_a, NULL, s->ckv, T, d->hidden, r + rope);
    for (int64_t t = 0; t < T; t++) {
        memcpy(latent + t * r, s->ckv + t * (r + rope), (size_t)r * sizeof(float));
        memcpy(k_pe + t * rope, s->ckv + t * (r + rope) + r, (size_t)rope * sizeof(float));
    }
    if (L->w.kv_a_norm) hylo_ref_rmsnorm(latent, L->w.kv_a_norm, latent, T, r, d->eps);
    if (!L->w.k_norm)
        for (int64_t t = 0; t < T; t++) rope_slices(L, k_pe + t * rope, 1, rope, pos0 + t);
}

/* s->kv [len, Hm, nope + v] = latent kv_b^T: per KV head [k_nope | v] of every position. */
static void mla_decompress(const hylo_mla_layer *L, const hylo_mla_cache *cache, int64_t len,
                           mla_scratch *s)
{
    const hylo_mla_dims *d = &L->dims;
    hylo_ref_linear(cache->latent, L->w.kv_b, NULL, s->kv, len, d->kv_rank,
                    d->kv_heads * (d->nope + d->v));
}

/* s->keys [len, Hm, dq] from s->kv and the raw cached k_pe (k_norm layers only):
 *   k[j, g] = k_norm([k_nope(j, g) | k_pe_j]) ;  k_pe(j, g) <- RoPE(k_pe(j, g), j)        */
static void mla_rebuild_keys(const hylo_mla_layer *L, const hylo_mla_cache *cache,
                             int64_t len, mla_scratch *s)
{
    const hylo_mla_dims *d = &L->dims;
    const int64_t Hm = d->kv_heads, nope = d->nope, rope = d->rope, dq = nope + rope;
    const int64_t dkv = nope + d->v;
    for (int64_t j = 0; j < len; j++)
        for (int64_t g = 0; g < Hm; g++) {
            float *k = s->keys + (j * Hm + g) * dq;
            memcpy(k, s->kv + (j * Hm + g) * dkv, (size_t)nope * sizeof(float));
            memcpy(k + nope, cache->k_pe + j * rope, (size_t)rope * sizeof(float));
        }
    hylo_ref_rmsnorm(s->keys, L->w.k_norm, s->keys, len * Hm, dq, d->eps);
    for (int64_t j = 0; j < len; j++) rope_slices(L, s->keys + j * Hm * dq + nope, Hm, dq, j);
}

/* s->q_abs [T, H, r_kv]: q~ = W_UK[g]^T q_nope, i.e. q~_c = sum_d kv_b[g dkv + d, c] q_nope_d,
 * so that q~ . latent = q_nope . (W_UK[g] latent) = q_nope . k_nope. */
static void mla_absorb_queries(const hylo_mla_layer *L, int64_t T, mla_scratch *s)
{
    const hylo_mla_dims *d = &L->dims;
    const int64_t H = d->heads, group = d->heads / d->kv_heads, r = d->kv_rank;
    const int64_t dq = d->nope + d->rope, dkv = d->nope + d->v;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t t = 0; t < T; t++) {
        for (int64_t h = 0; h < H; h++) {
            const float *q_nope = s->q + (t * H + h) * dq;
            const float *W_UK = L->w.kv_b + (h / group) * dkv * r;
            float *q_abs = s->q_abs + (t * H + h) * r;
            for (int64_t c = 0; c < r; c++) {
                double acc = 0.0;
                for (int64_t i = 0; i < d->nope; i++)
                    acc += (double)W_UK[i * r + c] * (double)q_nope[i];
                q_abs[c] = (float)acc;
            }
        }
    }
}

/* The view of query head h of token t. Keys: the rebuilt keys with a k_norm; otherwise the
 * latents against absorbed queries (absorbed form) or the decompressed k_nope (naive form),
 * and the shared cached k_pe. Values: latents (absorbed) or decompressed v (naive). */
static mla_head head_view(const hylo_mla_layer *L, const hylo_mla_cache *cache,
                          const mla_scratch *s, bool absorbed, int64_t t, int64_t h)
{
    const hylo_mla_dims *d = &L->dims;
    const int64_t H = d->heads, Hm = d->kv_heads, g = h / (d->heads / d->kv_heads);
    const int64_t nope = d->nope, r = d->kv_rank, dq = nope + d->rope, dkv = nope + d->v;
    mla_head m;
    m.qa = s->q + (t * H + h) * dq;
    m.qpe = m.qa + nope;
    m.n_a = nope;
    m.n_pe = d->rope;
    if (s->keys) {
        m.ka = (mla_rows){s->keys + g * dq, Hm * dq};
        m.kpe = (mla_rows){s->keys + g * dq + nope, Hm * dq};
    } else if (absorbed) {
        m.qa = s->q_abs + (t * H + h) * r;
        m.n_a = r;
        m.ka = (mla_rows){cache->latent, r};
        m.kpe = (mla_rows){cache->k_pe, d->rope};
    } else {
        m.ka = (mla_rows){s->kv + g * dkv, Hm * dkv};
        m.kpe = (mla_rows){cache->k_pe, d->rope};
    }
    if (absorbed) {
        m.val = (mla_rows){cache->latent, r};
        m.n_val = r;
    } else {
        m.val = (mla_rows){s->kv + g * dkv + nope, Hm * dkv};
        m.n_val = d->v;
    }
    return m;
}

static double head_score(const mla_head *m, int64_t j, double scale)
{
    return scale * (dot(m->qa, m->ka.base + j * m->ka.stride, m->n_a) +
                    dot(m->qpe, m->kpe.base + j * m->kpe.stride, m->n_pe));
}

/* Causal softmax over positions 0 .. last, in double; acc [n_val]:
 *   acc = sum_j exp(s_j - max s) val_j / sum_j exp(s_j - max s)                          */
static void head_attend(const mla_head *m, int64_t last, double scale, double *acc)
{
    double max_score = -INFINITY;
    for (int64_t j = 0; j <= last; j++) max_score = fmax(max_score, head_score(m, j, scale));
    double denom = 0.0;
    for (int64_t i = 0; i < m->n_val; i++) acc[i] = 0.0;
    for (int64_t j = 0; j <= last; j++) {
        double w = exp(head_score(m, j, scale) - max_score);
        const float *val = m->val.base + j * m->val.stride;
        denom += w;
        for (int64_t i = 0; i < m->n_val; i++) acc[i] += w * (double)val[i];
    }
    for (int64_t i = 0; i < m->n_val; i++) acc[i] /= denom;
}

/* o [v] = W_UV[g] o~, o~ [r_kv] the softmax-weighted latent sum (absorbed form). */
static void expand_value(const hylo_mla_layer *L, int64_t g, const double *o_latent, float *o)
{
    const hylo_mla_dims *d = &L->dims;
    const int64_t r = d->kv_rank;
    const float *W_UV = L->w.kv_b + (g * (d->nope + d->v) + d->nope) * r;
    for (int64_t i = 0; i < d->v; i++) {
        double acc = 0.0;
        for (int64_t c = 0; c < r; c++) acc += (double)W_UV[i * r + c] * o_latent[c];
        o[i] = (float)acc;
    }
}

/* Every query head of every token; o [T, H * v]. Each (t, h) is computed by one thread in a
 * fixed order, so results do not depend on the thread count. */
static void attend_all(const hylo_mla_layer *L, const hylo_mla_cache *cache,
                       const mla_scratch *s, bool absorbed, int64_t pos0, int64_t T)
{
    const hylo_mla_dims *d = &L->dims;
    const int64_t H = d->heads, group = d->heads / d->kv_heads;
    const int64_t n_acc = absorbed ? d->kv_rank : d->v;
#pragma omp parallel for collapse(2) schedule(dynamic)
    for (int64_t t = 0; t < T; t++) {
        for (int64_t h = 0; h < H; h++) {
            mla_head m = head_view(L, cache, s, absorbed, t, h);
            double *acc = s->acc + (t * H + h) * n_acc;
            float *o = s->o + (t * H + h) * d->v;
            head_attend(&m, pos0 + t, L->softmax_scale, acc);
            if (absorbed) {
                expand_value(L, h / group, acc, o);
            } else {
                for (int64_t i = 0; i < d->v; i++) o[i] = (float)acc[i];
            }
        }
    }
}

/* The steps both forms share; `absorbed` picks how keys and values are read. */
/* Trace names (see README "Traces"): mla.q_nope [T, H, nope], mla.q_pe [T, H, rope] (rotated),
 * mla.latent [T, r_kv] and mla.k_pe [T, rope] (the new cache rows), mla.o [T, H, v]. */
static void trace_mla(const hylo_tracer *tr, const hylo_mla_layer *L,
                      const hylo_mla_cache *cache, int64_t pos0, int64_t T, const mla_scratch *s)
{
    if (!hylo_tracer_on(tr)) return;
    const hylo_mla_dims *d = &L->dims;
    const int64_t H = d->heads, dq = d->nope + d->rope;
    hylo_trace_emit_slice(tr, "mla.q_nope", s->q, T * H, dq, 0, d->nope, 3,
                          (int64_t[]){T, H, d->nope});
    hylo_trace_emit_slice(tr, "mla.q_pe", s->q, T * H, dq, d->nope, d->rope, 3,
                          (int64_t[]){T, H, d->rope});
    hylo_trace_emit(tr, "mla.latent", cache->latent + pos0 * d->kv_rank, 2,
                    (int64_t[]){T, d->kv_rank});
    hylo_trace_emit(tr, "mla.k_pe", cache->k_pe + pos0 * d->rope, 2, (int64_t[]){T, d->rope});
    hylo_trace_emit(tr, "mla.o", s->o, 3, (int64_t[]){T, H, d->v});
}

static hylo_status mla_forward(const hylo_mla_layer *L, hylo_mla_cache *cache, int64_t pos0,
                               const float *x, int64_t T, float *y, bool absorbed,
                               const hylo_tracer *tr, hylo_error *err)
{
    hylo_status st = mla_check(L, cache, pos0, x, T, y, err);
    if (st != HYLO_OK || T == 0) return st;
    const int64_t len = pos0 + T;
    mla_scratch s = {0};
    st = alloc_scratch(&s, L, T, len, absorbed, err);
    if (st != HYLO_OK) return st;
    mla_queries(L, x, T, pos0, &s);
    mla_append(L, cache, x, T, pos0, &s);
    if (s.kv) mla_decompress(L, cache, len, &s);
    if (s.keys) mla_rebuild_keys(L, cache, len, &s);
    if (s.q_abs) mla_absorb_queries(L, T, &s);
    attend_all(L, cache, &s, absorbed, pos0, T);
    trace_mla(tr, L, cache, pos0, T, &s);
    /* y = out(concat_h o_h) */
    hylo_ref_linear(s.o, L->w.out, NULL, y, T, L->dims.heads * L->dims.v, L->dims.hidden);
    free_scratch(&s);
    return HYLO_OK;
}

/* x [T, D], y [T, D]; cache latent [pos0 + T, r_kv], k_pe [pos0 + T, rope].
 * Naive form, for query head h of token t at position p = pos0 + t, g = h / (H / Hm):
 *   k_nope(j, g) = W_UK[g] latent_j ,  v(j, g) = W_UV[g] latent_j          (j = 0 .. p)
 *   s_j = (q_nope . k_nope(j, g) + q_pe . k_pe_j) * softmax_scale
 *   o_h = sum_j softmax(s)_j v(j, g) ;  y = out(concat_h o_h)                            */
hylo_status hylo_ref_mla_forward(const hylo_mla_layer *layer, hylo_mla_cache *cache,
                                 int64_t pos0, const float *x, int64_t T, float *y,
                                 const hylo_tracer *tr, hylo_error *err)
{
    return mla_forward(layer, cache, pos0, x, T, y, false, tr, err);
}

/* x [T, D], y [T, D]; cache latent [pos0 + T, r_kv], k_pe [pos0 + T, rope].
 * Absorbed form (no k_nope or v is ever materialized without a k_norm):
 *   q~ = W_UK[g]^T q_nope                                                    [r_kv]
 *   s_j = (q~ . latent_j + q_pe . k_pe_j) * softmax_scale
 *   o~ = sum_j softmax(s)_j latent_j ;  o_h = W_UV[g] o~ ;  y = out(concat_h o_h)
 * With a k_norm, s_j uses the rebuilt keys as in the naive form (see the top of this file). */
hylo_status hylo_ref_mla_forward_absorbed(const hylo_mla_layer *layer, hylo_mla_cache *cache,
                                          int64_t pos0, const float *x, int64_t T, float *y,
                                          const hylo_tracer *tr, hylo_error *err)
{
    return mla_forward(layer, cache, pos0, x, T, y, true, tr, err);
}
