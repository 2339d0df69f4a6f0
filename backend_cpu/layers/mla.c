/* mla.c: Multi-head Latent Attention for the CPU backend: the naive and absorbed forms of
 * ref/layers/mla.c (see its top comment for the notation: dq = nope + rope, dkv = nope + v,
 * W_UK[g], W_UV[g] the blocks of kv_b) on the tiled attention core of attention.c.
 *   naive (prefill):   K, V decompressed for every cached position by one GEMM; per KV head,
 *                      s_j = q_nope . k_nope(j, g) + q_pe . k_pe_j as two GEMMs per tile
 *   absorbed (decode): q~ = W_UK[g]^T q_nope, and every head scores the latent cache itself,
 *                      s_j = q~ . latent_j + q_pe . k_pe_j, all heads in one GEMM per tile;
 *                      o~ = sum_j p_j latent_j, o = W_UV[g] o~
 * A layer with a k_norm caches the raw k_pe and rebuilds its keys (not linear in the latent),
 * so it runs the naive form for both. */
#include <stdbool.h>

#include "cpu_layers.h"

typedef enum { MLA_NAIVE, MLA_REBUILT_KEYS, MLA_ABSORBED } mla_form;

static mla_form form_of(const hylo_mla_layer *L, bool absorbed)
{
    if (L->w.k_norm) return MLA_REBUILT_KEYS;
    return absorbed ? MLA_ABSORBED : MLA_NAIVE;
}

/* The arena of one call (LAYER level); a buffer the form does not use has size 0. */
typedef struct {
    float *q_a;    /* [T, r_q]          q_a x                                  */
    float *q;      /* [T, H, dq]        queries, rope slices rotated            */
    float *ckv;    /* [T, r_kv + rope]  kv_a x                                  */
    float *kv;     /* [len, Hm, dkv]    decompressed [k_nope | v]               */
    float *keys;   /* [len, Hm, dq]     rebuilt keys                            */
    float *q_abs;  /* [T, H, r_kv]      absorbed queries                        */
    float *o_lat;  /* [T, H, r_kv]      softmax-weighted latents                */
    float *o;      /* [T, H * v]        per-head outputs                        */
} mla_buffers;

static int64_t arena_floats(const hylo_mla_layer *L, int64_t T, int64_t len, mla_form form,
                            mla_buffers *b, float *base)
{
    const hylo_mla_dims *d = &L->dims;
    const int64_t H = d->heads, Hm = d->kv_heads, r = d->kv_rank, dq = d->nope + d->rope;
    const int64_t sizes[8] = {T * d->q_rank,
                              T * H * dq,
                              T * (r + d->rope),
                              form != MLA_ABSORBED ? len * Hm * (d->nope + d->v) : 0,
                              form == MLA_REBUILT_KEYS ? len * Hm * dq : 0,
                              form == MLA_ABSORBED ? T * H * r : 0,
                              form == MLA_ABSORBED ? T * H * r : 0,
                              T * H * d->v};
    float **slots[8] = {&b->q_a, &b->q, &b->ckv, &b->kv, &b->keys, &b->q_abs, &b->o_lat, &b->o};
    int64_t total = 0;
    for (int i = 0; i < 8; i++) {
        if (base) *slots[i] = base + total;
        total += hylo_cpu_round16(sizes[i]);
    }
    return total;
}

/* The attention of the form over the buffers (pointers may be NULL when only sizing). */
static hylo_cpu_attention mla_problem(const hylo_mla_layer *L, const hylo_mla_cache *cache,
                                      const mla_buffers *b, int64_t T, int64_t pos0,
                                      mla_form form)
{
    const hylo_mla_dims *d = &L->dims;
    const int64_t H = d->heads, Hm = d->kv_heads, r = d->kv_rank, nope = d->nope;
    const int64_t dq = nope + d->rope, dkv = nope + d->v;
    hylo_cpu_attention p = {0};
    p.T = T;
    p.H = H;
    p.group = H / Hm;
    p.pos0 = pos0;
    p.scale = (float)L->softmax_scale;
    p.qa = (hylo_cpu_query_part){b->q, H * dq, dq};
    p.n_a = nope;
    p.qpe = (hylo_cpu_query_part){b->q ? b->q + nope : NULL, H * dq, dq};
    p.n_pe = d->rope;
    p.ka = (hylo_cpu_key_part){b->kv, dkv, Hm * dkv};
    p.kpe = (hylo_cpu_key_part){cache ? cache->k_pe : NULL, 0, d->rope};
    p.val = (hylo_cpu_key_part){b->kv ? b->kv + nope : NULL, dkv, Hm * dkv};
    p.n_val = d->v;
    p.out = b->o;
    p.out_t_stride = H * d->v;
    p.out_h_stride = d->v;
    if (form == MLA_REBUILT_KEYS) {
        p.n_a = dq;
        p.n_pe = 0;
        p.ka = (hylo_cpu_key_part){b->keys, dq, Hm * dq};
    } else if (form == MLA_ABSORBED) {
        const float *latent = cache ? cache->latent : NULL;
        p.group = H; /* every head reads the one latent cache */
        p.qa = (hylo_cpu_query_part){b->q_abs, H * r, r};
        p.n_a = r;
        p.ka = (hylo_cpu_key_part){latent, 0, r};
        p.val = (hylo_cpu_key_part){latent, 0, r};
        p.n_val = r;
        p.out = b->o_lat;
        p.out_t_stride = H * r;
        p.out_h_stride = r;
    }
    return p;
}

hylo_cpu_need hylo_cpu_mla_need(const hylo_mla_layer *L, int64_t T, int64_t len, bool absorbed)
{
    const hylo_mla_dims *d = &L->dims;
    const mla_form form = form_of(L, absorbed);
    mla_buffers b = {0};
    hylo_cpu_need need = {{arena_floats(L, T, len, form, &b, NULL), 0}};
    int64_t widest = d->hidden > d->q_rank ? d->hidden : d->q_rank;
    widest = widest > d->heads * d->v ? widest : d->heads * d->v;
    const hylo_cpu_attention p = mla_problem(L, NULL, &b, T, len - T, form);
    const hylo_cpu_need parts[3] = {hylo_cpu_linear_need(T, widest),
                                    hylo_cpu_linear_need(len, d->kv_rank),
                                    hylo_cpu_attend_need(&p)};
    for (int i = 0; i < 3; i++) hylo_cpu_need_max(&need, &parts[i]);
    return need;
}

/* q [T, H, dq] = q_b(q_a_norm?(q_a x)) or q_proj x ;  q_norm? per head ;  q_pe rotated. */
static void mla_queries(void *ctx, const hylo_mla_layer *L, const float *x, int64_t T,
                        int64_t pos0, const mla_buffers *b)
{
    const hylo_mla_dims *d = &L->dims;
    const int64_t H = d->heads, dq = d->nope + d->rope;
    if (d->q_rank > 0) {
        hylo_cpu_linear(ctx, x, L->w.q_a, NULL, b->q_a, T, d->hidden, d->q_rank);
        if (L->w.q_a_norm)
            hylo_cpu_rmsnorm(ctx, b->q_a, L->w.q_a_norm, b->q_a, T, d->q_rank, d->eps);
        hylo_cpu_linear(ctx, b->q_a, L->w.q_b, NULL, b->q, T, d->q_rank, H * dq);
    } else {
        hylo_cpu_linear(ctx, x, L->w.q_proj, NULL, b->q, T, d->hidden, H * dq);
    }
    if (L->w.q_norm) hylo_cpu_rmsnorm(ctx, b->q, L->w.q_norm, b->q, T * H, dq, d->eps);
    hylo_cpu_rope_interleaved(b->q + d->nope, T, H * dq, H, dq, d->rope, pos0, L->rope_inv_freq,
                              L->rope_scale);
}

/* Cache rows pos0 ..: [c_kv | k_pe] = kv_a x ; latent = kv_a_norm?(c_kv) ; k_pe rotated
 * (kept raw with a k_norm). */
static void mla_append(void *ctx, const hylo_mla_layer *L, hylo_mla_cache *cache,
                       const float *x, int64_t T, int64_t pos0, const mla_buffers *b)
{
    const hylo_mla_dims *d = &L->dims;
    const int64_t r = d->kv_rank, rope = d->rope;
    float *latent = cache->latent + pos0 * r, *k_pe = cache->k_pe + pos0 * rope;
    hylo_cpu_linear(ctx, x, L->w.kv_a, NULL, b->ckv, T, d->hidden, r + rope);
    for (int64_t t = 0; t < T; t++) {
        memcpy(latent + t * r, b->ckv + t * (r + rope), (size_t)r * sizeof(float));
        memcpy(k_pe + t * rope, b->ckv + t * (r + rope) + r, (size_t)rope * sizeof(float));
    }
    if (L->w.kv_a_norm) hylo_cpu_rmsnorm(ctx, latent, L->w.kv_a_norm, latent, T, r, d->eps);
    if (!L->w.k_norm)
        hylo_cpu_rope_interleaved(k_pe, T, rope, 1, rope, rope, pos0, L->rope_inv_freq,
                                  L->rope_scale);
}

/* keys [len, Hm, dq]: k(j, g) = k_norm([k_nope(j, g) | raw k_pe_j]), rope slice rotated to j. */
static void mla_rebuild_keys(void *ctx, const hylo_mla_layer *L, const hylo_mla_cache *cache,
                             int64_t len, const mla_buffers *b)
{
    const hylo_mla_dims *d = &L->dims;
    const int64_t Hm = d->kv_heads, nope = d->nope, rope = d->rope, dq = nope + rope;
    const int64_t dkv = nope + d->v;
    for (int64_t j = 0; j < len; j++)
        for (int64_t g = 0; g < Hm; g++) {
            float *k = b->keys + (j * Hm + g) * dq;
            memcpy(k, b->kv + (j * Hm + g) * dkv, (size_t)nope * sizeof(float));
            memcpy(k + nope, cache->k_pe + j * rope, (size_t)rope * sizeof(float));
        }
    hylo_cpu_rmsnorm(ctx, b->keys, L->w.k_norm, b->keys, len * Hm, dq, d->eps);
    hylo_cpu_rope_interleaved(b->keys + nope, len, Hm * dq, Hm, dq, rope, 0, L->rope_inv_freq,
                              L->rope_scale);
}

/* q_abs[t, h] = W_UK[g]^T q_nope[t, h] = sum_i q_nope_i W_UK[g][i, :]            [r_kv] */
static void mla_absorb_queries(const hylo_mla_layer *L, int64_t T, const mla_buffers *b)
{
    const hylo_mla_dims *d = &L->dims;
    const int64_t H = d->heads, group = H / d->kv_heads, r = d->kv_rank;
    const int64_t dq = d->nope + d->rope, dkv = d->nope + d->v;
#pragma omp parallel for schedule(static) if (T * H * d->nope * r >= 65536)
    for (int64_t th = 0; th < T * H; th++) {
        const float *q_nope = b->q + th * dq, *W_UK = L->w.kv_b + (th % H / group) * dkv * r;
        float *q_abs = b->q_abs + th * r;
        memset(q_abs, 0, (size_t)r * sizeof *q_abs);
        for (int64_t i = 0; i < d->nope; i++) hylo_cpu_axpy(q_abs, q_nope[i], W_UK + i * r, r);
    }
}

/* o[t, h] = W_UV[g] o_lat[t, h]                                                       [v] */
static void mla_expand_values(const hylo_mla_layer *L, int64_t T, const mla_buffers *b)
{
    const hylo_mla_dims *d = &L->dims;
    const int64_t H = d->heads, group = H / d->kv_heads, r = d->kv_rank, dkv = d->nope + d->v;
#pragma omp parallel for schedule(static) if (T * H * d->v * r >= 65536)
    for (int64_t th = 0; th < T * H; th++) {
        const float *W_UV = L->w.kv_b + ((th % H / group) * dkv + d->nope) * r;
        hylo_cpu_gemv(W_UV, b->o_lat + th * r, b->o + th * d->v, d->v, r, false);
    }
}

static hylo_status mla_check(const hylo_mla_layer *L, int64_t pos0, int64_t T, hylo_error *err)
{
    const hylo_mla_dims *d = &L->dims;
    if (pos0 < 0 || T < 0 || d->heads <= 0 || d->kv_heads <= 0 || d->heads % d->kv_heads != 0 ||
        d->rope % 2 != 0)
        return hylo_error_set(err, HYLO_ERR_USAGE,
                              "mla: pos0 %lld, T %lld, H %lld, Hm %lld, rope %lld: expected "
                              "pos0, T >= 0, Hm dividing H and an even rope",
                              (long long)pos0, (long long)T, (long long)d->heads,
                              (long long)d->kv_heads, (long long)d->rope);
    return HYLO_OK;
}

/* x [T, D], y [T, D]; the cache must hold pos0 + T positions. */
static hylo_status mla_forward(void *ctx, const hylo_mla_layer *L, hylo_mla_cache *cache,
                               int64_t pos0, const float *x, int64_t T, float *y, bool absorbed,
                               const hylo_tracer *tr, hylo_error *err)
{
    hylo_status st = mla_check(L, pos0, T, err);
    if (st != HYLO_OK || T == 0) return st;
    const hylo_mla_dims *d = &L->dims;
    const int64_t len = pos0 + T, H = d->heads, dq = d->nope + d->rope;
    const mla_form form = form_of(L, absorbed);
    mla_buffers b = {0};
    float *arena = hylo_cpu_workspace(ctx, HYLO_CPU_LAYER, arena_floats(L, T, len, form, &b, NULL),
                                      err);
    if (!arena) return HYLO_ERR_NOMEM;
    arena_floats(L, T, len, form, &b, arena);
    mla_queries(ctx, L, x, T, pos0, &b);
    mla_append(ctx, L, cache, x, T, pos0, &b);
    if (form != MLA_ABSORBED)
        hylo_cpu_linear(ctx, cache->latent, L->w.kv_b, NULL, b.kv, len, d->kv_rank,
                        d->kv_heads * (d->nope + d->v));
    if (form == MLA_REBUILT_KEYS) mla_rebuild_keys(ctx, L, cache, len, &b);
    if (form == MLA_ABSORBED) mla_absorb_queries(L, T, &b);
    const hylo_cpu_attention p = mla_problem(L, cache, &b, T, pos0, form);
    st = hylo_cpu_attend(ctx, &p, err);
    if (st != HYLO_OK) return st;
    if (form == MLA_ABSORBED) mla_expand_values(L, T, &b);
    /* trace: the names and shapes of ref/layers/mla.c */
    if (hylo_tracer_on(tr)) {
        hylo_trace_emit_slice(tr, "mla.q_nope", b.q, T * H, dq, 0, d->nope, 3,
                              (int64_t[]){T, H, d->nope});
        hylo_trace_emit_slice(tr, "mla.q_pe", b.q, T * H, dq, d->nope, d->rope, 3,
                              (int64_t[]){T, H, d->rope});
        hylo_trace_emit(tr, "mla.latent", cache->latent + pos0 * d->kv_rank, 2,
                        (int64_t[]){T, d->kv_rank});
        hylo_trace_emit(tr, "mla.k_pe", cache->k_pe + pos0 * d->rope, 2, (int64_t[]){T, d->rope});
        hylo_trace_emit(tr, "mla.o", b.o, 3, (int64_t[]){T, H, d->v});
    }
    hylo_cpu_linear(ctx, b.o, L->w.out, NULL, y, T, H * d->v, d->hidden);
    return HYLO_OK;
}

hylo_status hylo_cpu_mla_prefill(void *ctx, const hylo_mla_layer *layer, hylo_mla_cache *cache,
                                 int64_t pos0, const float *x, int64_t T, float *y,
                                 const hylo_tracer *tr, hylo_error *err)
{
    return mla_forward(ctx, layer, cache, pos0, x, T, y, false, tr, err);
}

hylo_status hylo_cpu_mla_decode(void *ctx, const hylo_mla_layer *layer, hylo_mla_cache *cache,
                                int64_t pos0, const float *x, int64_t T, float *y,
                                const hylo_tracer *tr, hylo_error *err)
{
    return mla_forward(ctx, layer, cache, pos0, x, T, y, true, tr, err);
}
