/* hip_layers.h: the layers of the HIP backend (internal), one source per ref/layers file. The
 * entries named after an ops-table entry take its arguments (void *ctx a hylo_hip_ctx, weights
 * and rope tables as the model's host pointers, every activation, cache and state in device
 * memory) and compute what the ref function of the same name computes; the launchers below
 * them work on device pointers only and are shared between layers. */
#ifndef HYLO_HIP_LAYERS_H
#define HYLO_HIP_LAYERS_H

#include "core/hip.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* The ops of the table (ref/layers equivalents)                                               */
/* ------------------------------------------------------------------------------------------ */

/* linear.hip: y [T, out] = x [T, in] W^T + b (bf16 W and x rounded to bf16 in a bf16
 * context) */
void hylo_hip_linear(void *ctx, const float *x, const float *W, const float *b, float *y,
                     int64_t T, int64_t in, int64_t out);
/* linear.hip: y_i [T, out_i] = x [T, in] W_i^T + b_i for i < n (one launch for all of them
 * when T = 1: a layer's projections of one input) */
void hylo_hip_linears(void *ctx, const float *x, int64_t T, int64_t in, int n,
                      const float *const *W, const float *const *b, float *const *y,
                      const int64_t *out);
/* rmsnorm.hip; and x += y, xn = rmsnorm(x) in one kernel */
void hylo_hip_rmsnorm(void *ctx, const float *x, const float *w, float *y, int64_t rows,
                      int64_t n, double eps);
void hylo_hip_add_rmsnorm(void *ctx, float *x, const float *y, const float *w, float *xn,
                          int64_t rows, int64_t n, double eps);
/* rope.hip: x [T, heads, dim] at positions pos0 .., rotate-half pairs */
void hylo_hip_rope_rotate_half(void *ctx, float *x, int64_t T, int64_t heads, int64_t dim,
                               int64_t pos0, const double *inv_freq, double scale);
/* rope.hip: the fusion rope_store of the ops table */
void hylo_hip_rope_store(void *ctx, float *q, float *k, const float *v, int64_t T, int64_t H,
                         int64_t Hkv, int64_t hd, int64_t pos0, const double *inv_freq,
                         double scale, float *k_cache, float *v_cache);
/* attention.hip */
hylo_status hylo_hip_attention(void *ctx, const float *q, const float *k_cache,
                               const float *v_cache, float *out, int64_t T, int64_t len,
                               int64_t H, int64_t Hkv, int64_t hd, double scale, hylo_error *err);
/* mlp.hip */
hylo_status hylo_hip_swiglu_mlp(void *ctx, const float *x, const float *Wg, const float *bg,
                                const float *Wu, const float *bu, const float *Wd,
                                const float *bd, float *y, int64_t T, int64_t D, int64_t F,
                                hylo_error *err);
/* mla.hip: the naive form (prefill) and the absorbed one (decode steps, T = 1; a T > 1 call
 * and a layer with a k_norm take the naive form, equal to rounding) */
hylo_status hylo_hip_mla_prefill(void *ctx, const hylo_mla_layer *layer, hylo_mla_cache *cache,
                                 int64_t pos0, const float *x, int64_t T, float *y,
                                 const hylo_tracer *tr, hylo_error *err);
hylo_status hylo_hip_mla_decode(void *ctx, const hylo_mla_layer *layer, hylo_mla_cache *cache,
                                int64_t pos0, const float *x, int64_t T, float *y,
                                const hylo_tracer *tr, hylo_error *err);
/* mamba2.hip */
hylo_status hylo_hip_mamba2_forward(void *ctx, const hylo_mamba2_dims *d,
                                    const hylo_mamba2_weights *w, hylo_mamba2_state *state,
                                    const float *x, int64_t T, float *y, hylo_scan scan,
                                    const hylo_tracer *tr, hylo_error *err);
/* gdn.hip */
hylo_status hylo_hip_gdn_forward(void *ctx, const hylo_gdn_dims *d, const hylo_gdn_weights *w,
                                 hylo_gdn_state *state, const float *x, int64_t T, float *y,
                                 hylo_scan scan, const hylo_tracer *tr, hylo_error *err);
/* core/kernels.hip: x [n] += y [n]; x [T, D] = table rows of the host token ids */
void hylo_hip_add(void *ctx, float *x, const float *y, int64_t n);
void hylo_hip_embed(void *ctx, const float *table, const int32_t *tokens, int64_t T, int64_t D,
                    float *x);
/* core/kernels.hip: the caches' value type (2 bytes, bf16, in a bf16 context; else 4, fp32)
 * and the ops table's append: cache rows [row, row + rows) of `width` values <- src */
size_t hylo_hip_cache_value_bytes(const void *ctx);
void hylo_hip_cache_store(void *ctx, float *cache, int64_t row, int64_t width, const float *src,
                          int64_t rows);

/* ------------------------------------------------------------------------------------------ */
/* Launchers on device pointers                                                                */
/* ------------------------------------------------------------------------------------------ */

/* linear.hip: one token through SwiGLU's gate and up, h [F] = silu(x Wg^T) * (x Wu^T); and
 * y [T, out] = x W^T for x [T, in] in a cache (the caches' type). Weights: host pointers. */
void hylo_hip_gated_gemv(hylo_hip_ctx *ctx, const float *x, const float *Wg, const float *Wu,
                         float *h, int64_t D, int64_t F);
void hylo_hip_linear_cache(hylo_hip_ctx *ctx, const void *x, const float *W, float *y, int64_t T,
                           int64_t in, int64_t out);

/* dst [rows, width] (row stride dst_stride) = src [rows, width] (row stride src_stride) */
void hylo_hip_copy_rows(hylo_hip_ctx *ctx, float *dst, int64_t dst_stride, const float *src,
                        int64_t src_stride, int64_t rows, int64_t width);
/* cache rows [first, first + rows) of `width` values (row stride cache_stride, the cache's
 * type; first a step's position through hylo_hip_pos_of) <- src fp32 rows, and dst fp32 rows
 * <- cache rows 0 .. rows - 1. */
void hylo_hip_cache_write_rows(hylo_hip_ctx *ctx, void *cache, hylo_hip_pos first,
                               int64_t cache_stride, const float *src, int64_t src_stride,
                               int64_t rows, int64_t width);
void hylo_hip_cache_read_rows(hylo_hip_ctx *ctx, float *dst, int64_t dst_stride,
                              const void *cache, int64_t cache_stride, int64_t rows,
                              int64_t width);
/* y [rows, n] = w * x / sqrt(mean(x^2) + eps), w device [n] (y may alias x) */
void hylo_hip_rmsnorm_rows(hylo_hip_ctx *ctx, const float *x, const float *w, float *y,
                           int64_t rows, int64_t n, double eps);
/* Rotates the `dim`-channel slices x + t row_stride + h head_stride (t < T, h < heads) to
 * position pos0 + t (pos0 a step's position through hylo_hip_pos_of, or a fixed one):
 * rotate-half pairs (i, i + dim/2), or adjacent pairs (2i, 2i + 1) when `interleaved`; angles
 * pos inv_freq_i in double, cos and sin times `scale`. inv_freq device [dim/2]. */
void hylo_hip_rope_rows(hylo_hip_ctx *ctx, float *x, int64_t T, int64_t heads, int64_t dim,
                        int64_t row_stride, int64_t head_stride, hylo_hip_pos pos0,
                        const double *inv_freq, double scale, bool interleaved);
/* RoPE and the cache append of a layer's step in one launch, tokens t < T at positions
 * pos0 + t (pos0 a step's position through hylo_hip_pos_of): the query slices
 * q + (t H + h) q_head (h < H) and the keys k [T, Hkv, dim] rotated in place (rotate-half
 * pairs, or adjacent pairs when `interleaved`; keys left as they are when `raw_k`), then the
 * caches' rows pos0 + t <- the keys [Hkv dim] and the values v [T, v_width] (the caches' type:
 * bf16 in a bf16 context). Angles and inv_freq (device, [dim/2]) as hylo_hip_rope_rows.
 * With q_cat (one token: MLA's absorbed queries) also, for each head h, its rotated slice
 * after a product of the q_off values before it (a head's q_h = q + h q_head - q_off):
 *   q_cat [H, w_cols + dim] ;  q_cat[h, c] = sum_{i < q_off} q_h[i] W[i, c]  (c < w_cols),
 *   W = w + (h / w_group) w_head [q_off, w_cols] (device, fp32) ;  q_cat[h, w_cols:] = slice */
typedef struct {
    float *q;
    int64_t H, q_head;
    float *k;
    int64_t Hkv;
    const float *v;
    int64_t v_width;
    void *k_cache, *v_cache;
    int64_t T, dim;
    bool interleaved, raw_k;
    hylo_hip_pos pos0;
    const double *inv_freq;
    double scale;
    float *q_cat;
    const float *w;
    int64_t q_off, w_cols, w_head, w_group;
} hylo_hip_rope_append_args;
void hylo_hip_rope_append(hylo_hip_ctx *ctx, const hylo_hip_rope_append_args *a);
/* Causal depthwise conv + SiLU carrying the state, as hylo_ref_causal_conv1d_silu: x rows of
 * C channels x_stride apart, w [C, K], b [C] or NULL, state [C, K-1] (in/out), y [T, C]. */
void hylo_hip_conv_silu(hylo_hip_ctx *ctx, const float *x, int64_t x_stride, const float *w,
                        const float *b, float *state, float *y, int64_t T, int64_t C, int64_t K);
/* The same for one token (T = 1) through n <= HYLO_HIP_CONV_PARTS convs in one launch (a
 * layer's convs of a decode step): conv p takes the next C[p] channels of x and y (x, y
 * [sum_p C[p]]), with w[p] [C[p], K], b[p] [C[p]] (b NULL: no biases) and state[p]
 * [C[p], K-1]. */
#define HYLO_HIP_CONV_PARTS 3
void hylo_hip_conv_silu_step(hylo_hip_ctx *ctx, int n, const float *x, const float *const *w,
                             const float *const *b, float *const *state, float *y,
                             const int64_t *C, int64_t K);

/* ssd.hip: the selective scan of hylo_ref_ssd_scan. x, B and C are column ranges of xbc
 * [T, stride] (x first, B after x_heads P columns, C after b_groups N more); dt [T, H] after
 * softplus, A [H] (-exp(A_log)), D [H], ssm_state [H, P, N] (in/out), y [T, H, P]. */
void hylo_hip_ssd_scan(hylo_hip_ctx *ctx, const hylo_mamba2_dims *d, const float *xbc,
                       int64_t stride, const float *dt, const float *A, const float *D,
                       float *ssm_state, float *y, int64_t T, hylo_scan scan);
/* delta_rule.hip: the gated delta rule of hylo_ref_gated_delta_rule: q, k [T, Hk, dk]
 * (normalized, q scaled), v [T, Hv, dv], g, beta [T, Hv], S [Hv, dk, dv] (in/out),
 * o [T, Hv, dv]. */
void hylo_hip_gated_delta_rule(hylo_hip_ctx *ctx, const hylo_gdn_dims *d, const float *q,
                               const float *k, const float *v, const float *g, const float *beta,
                               float *S, float *o, int64_t T, hylo_scan scan);

/* Causal attention of T queries over `len` positions (query t at position len - T + t), each
 * key made of two parts, content and position (nb may be 0), for H query heads over Hkv
 * groups (query head h reads group h / (H / Hkv)):
 *   s_j = scale (q_a . ka(j, g) + q_b . kb(j, g)) ;  out[t, h] = sum_j softmax(s)_j v(j, g)
 * q [T, H, na + nb] (q_a first), out [T, H, nv]; part X of position j in group g at
 * X + j X_row + g X_head, values of one type for ka, kb and v: bf16 when `bf16` (a bf16
 * context's caches, or bf16 copies of MLA's decompressed parts), else fp32. T = 1 runs split over the positions (flash decoding, fp32
 * arithmetic); a prefill of T >= 64 goes through GEMMs (scores, a softmax row kernel, P V:
 * bf16 operands with fp32 accumulation over bf16 caches, else fp32), a shorter one through
 * tiles with an online softmax (fp32). With `wo` (T = 1 only: MLA's absorbed form) each head's
 * output is projected as it is merged: out [H, wo_rows], out[h] = W_x (attention output of h)
 * with W_x = wo + x wo_head [wo_rows, nv], rows wo_row apart, x = h / wo_group (fp32). */
typedef struct {
    const float *q;
    int64_t na, nb, nv;
    const void *ka, *kb, *v;
    bool bf16;
    int64_t ka_row, ka_head, kb_row, kb_head, v_row, v_head;
    float *out;
    int64_t T, len, H, Hkv;
    double scale;
    const float *wo;
    int64_t wo_rows, wo_row, wo_head, wo_group;
} hylo_hip_attend_args;
void hylo_hip_attend(hylo_hip_ctx *ctx, const hylo_hip_attend_args *a);
/* flash.hip: the same for a bf16 prefill in one kernel on the tensor cores, no scores in
 * memory (queries rounded to bf16, probabilities rounded for the value product, fp32
 * accumulation and softmax statistics). Returns false, with nothing queued and no failure
 * recorded, when it does not handle the case: fp32 parts, query/key dims over 192 or value
 * dims over 128, parts not in 16-byte chunks on 16-byte boundaries, no tensor-core
 * primitives (AMD), or too little shared memory. */
bool hylo_hip_attend_flash(hylo_hip_ctx *ctx, const hylo_hip_attend_args *a);

#ifdef __cplusplus
}
#endif

#endif
