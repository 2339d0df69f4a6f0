/* layers.h: the reference layers of the teacher Transformer (spec sec. 2), in fp32 with double
 * accumulation. Every function documents its tensors' shapes; activations are row-major.
 * This header is internal to hylo (tests include it); the public API is hylo.h. */
#ifndef HYLO_REF_LAYERS_H
#define HYLO_REF_LAYERS_H

#include <stdint.h>

#include "hylo.h"

/* y = x W^T + b.
 * x [T, in], W [out, in], b [out] or NULL, y [T, out] (y must not alias x). */
void hylo_ref_linear(const float *x, const float *W, const float *b, float *y, int64_t T,
                     int64_t in, int64_t out);

/* y = w * x / sqrt(mean(x^2) + eps), row by row.
 * x [rows, n], w [n], y [rows, n] (y may alias x). */
void hylo_ref_rmsnorm(const float *x, const float *w, float *y, int64_t rows, int64_t n,
                      double eps);

/* The rotary frequencies of `rope` for a head slice of `dim` channels (dim even):
 * inv_freq [dim/2], and the factor that multiplies cos and sin (YaRN's attention factor;
 * 1 for the other types). Spec sec. 2 (default, linear, llama3) and sec. 6 (yarn). */
void hylo_ref_rope_frequencies(const hylo_rope_config *rope, int64_t dim, double *inv_freq,
                               double *cos_sin_scale);

/* Rotates `heads` vectors of one token at position `pos` in place, pairs (i, i + dim/2)
 * ("rotate_half"): [x_i, x_{i+dim/2}] <- scale * R(pos * inv_freq_i) [x_i, x_{i+dim/2}].
 * x [heads, dim], inv_freq [dim/2]. */
void hylo_ref_rope_rotate_half(float *x, int64_t heads, int64_t dim, int64_t pos,
                               const double *inv_freq, double scale);

/* The same rotation on adjacent pairs (2i, 2i + 1), as the MLA rope slice uses (spec sec. 3).
 * x [heads, dim], inv_freq [dim/2]. */
void hylo_ref_rope_interleaved(float *x, int64_t heads, int64_t dim, int64_t pos,
                               const double *inv_freq, double scale);

/* Causal grouped-query attention of T new queries against a cache of `len` positions, the
 * last T of which belong to the new tokens (query t sits at position len - T + t and sees
 * positions 0 .. len - T + t). Query head h reads KV head h / (H / Hkv).
 * q [T, H, hd], k_cache, v_cache [len, Hkv, hd], out [T, H, hd]; scale multiplies q.k. */
hylo_status hylo_ref_attention(const float *q, const float *k_cache, const float *v_cache,
                               float *out, int64_t T, int64_t len, int64_t H, int64_t Hkv,
                               int64_t hd, double scale, hylo_error *err);

/* SwiGLU: h = silu(x Wg^T + bg) * (x Wu^T + bu); y = h Wd^T + bd.
 * x [T, D], Wg, Wu [F, D], Wd [D, F], biases [F] / [D] or NULL, y [T, D]. */
hylo_status hylo_ref_swiglu_mlp(const float *x, const float *Wg, const float *bg,
                                const float *Wu, const float *bu, const float *Wd,
                                const float *bd, float *y, int64_t T, int64_t D, int64_t F,
                                hylo_error *err);

/* Causal depthwise conv over time followed by SiLU, carrying the last K - 1 inputs:
 * x [T, C], w [C, K], b [C] or NULL, state [C, K-1] (in/out, oldest first), y [T, C].
 * Prefill and decode are the same call with T > 1 and T = 1. */
void hylo_ref_causal_conv1d_silu(const float *x, const float *w, const float *b, float *state,
                                 float *y, int64_t T, int64_t C, int64_t K);

#endif
