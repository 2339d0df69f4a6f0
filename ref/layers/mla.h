/* mla.h: Multi-head Latent Attention (spec sec. 3 and 6), reference form (internal). */
#ifndef HYLO_REF_MLA_H
#define HYLO_REF_MLA_H

#include <stdint.h>

#include "core/trace.h"
#include "hylo.h"

typedef struct {
    int64_t hidden;    /* D                                                    */
    int64_t heads;     /* H query heads                                        */
    int64_t kv_heads;  /* Hm MLA KV heads (H % Hm == 0): Hkv (GQA form) or H   */
    int64_t q_rank;    /* r_q; 0 = a full q_proj [H*(nope+rope), D]            */
    int64_t kv_rank;   /* r_kv                                                 */
    int64_t nope;      /* per-head no-position q/k dims                        */
    int64_t rope;      /* the rope slice (one k_pe shared by all heads)        */
    int64_t v;         /* per-head value dims                                  */
    double eps;        /* of the optional latent norms and q/k norms           */
} hylo_mla_dims;

/* Weights in nn.Linear layout; NULL where the layer has no such tensor. */
typedef struct {
    const float *q_a;        /* [r_q, D]             (q_rank > 0)  */
    const float *q_a_norm;   /* [r_q] or NULL                       */
    const float *q_b;        /* [H*(nope+rope), r_q] (q_rank > 0)  */
    const float *q_proj;     /* [H*(nope+rope), D]   (q_rank == 0) */
    const float *kv_a;       /* [r_kv + rope, D]: rows [c_kv | k_pe] */
    const float *kv_a_norm;  /* [r_kv] or NULL                      */
    const float *kv_b;       /* [Hm*(nope+v), r_kv]: per KV head [k_nope | v] rows */
    const float *out;        /* [D, H*v]                            */
    const float *q_norm;     /* [nope+rope] or NULL (Qwen3 bases)   */
    const float *k_norm;     /* [nope+rope] or NULL                 */
} hylo_mla_weights;

typedef struct {
    hylo_mla_dims dims;
    hylo_mla_weights w;
    const double *rope_inv_freq; /* [rope/2] (YaRN frequencies of spec sec. 6)  */
    double rope_scale;           /* multiplies cos and sin (YaRN mscale)        */
    double softmax_scale;        /* (nope+rope)^-0.5 in HyLo                    */
} hylo_mla_layer;

/* The per-sequence cache of one MLA layer: per position only the (normalized) latent and the
 * rotated shared k_pe, r_kv + rope floats. The caller owns and sizes the buffers. */
typedef struct {
    float *latent;  /* [capacity, r_kv]: kv_a_norm(c_kv) (c_kv itself without the norm) */
    float *k_pe;    /* [capacity, rope]: RoPE(k_pe, p)                                   */
} hylo_mla_cache;
/* With a k_norm (per-head RMSNorm over [k_nope | k_pe] before RoPE) the normalized k_pe differs
 * per KV head and must be rotated after the norm, so such a layer caches the raw k_pe (neither
 * normalized nor rotated), still rope floats per position, and rebuilds every cached key at
 * attention time: k(j, g) = k_norm([W_UK[g] latent_j | k_pe_j]), rope slice rotated to j. */

/* T tokens at positions pos0 .. pos0+T-1: appends their latent and k_pe rows to the cache at
 * pos0, then attends causally over positions 0 .. pos0+t.
 * x [T, D], y [T, D]; the cache must hold pos0 + T positions.
 *   naive:    K and V of every cached position are decompressed through kv_b
 *   absorbed: q~ = W_UK^T q_nope scores the latents directly, o = W_UV sum_t p_t c_t
 * The two must agree to rounding. With a k_norm (Qwen3 bases) keys are not linear in the
 * latent, so the absorbed form decompresses keys as the naive one does. */
hylo_status hylo_ref_mla_forward(const hylo_mla_layer *layer, hylo_mla_cache *cache,
                                 int64_t pos0, const float *x, int64_t T, float *y,
                                 const hylo_tracer *tr, hylo_error *err);
hylo_status hylo_ref_mla_forward_absorbed(const hylo_mla_layer *layer, hylo_mla_cache *cache,
                                          int64_t pos0, const float *x, int64_t T, float *y,
                                          const hylo_tracer *tr, hylo_error *err);

#endif
