/* cpu_layers.h: the optimized layers of the CPU backend (internal). Each entry point computes
 * the function of the ref/layers function it is named after (same tensors, shapes, trace names
 * and errors; see the headers of ref/layers), with fp32 accumulation; `ctx` is the state's hylo_cpu_ctx.
 * Every layer has a companion *_need giving the workspace a call of T tokens takes, from which
 * a context is sized for its model's decode steps. */
#ifndef HYLO_CPU_LAYERS_H
#define HYLO_CPU_LAYERS_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/cpu.h"
#include "core/trace.h"
#include "layers/gdn.h"
#include "layers/mamba2.h"
#include "layers/mla.h"

/* ------------------------------------------------------------------------------------------ */
/* Teacher layers (ref/layers/layers.h)                                                        */
/* ------------------------------------------------------------------------------------------ */

/* Up to this many rows a linear map streams its weights as a GEMV (fp32 or bf16); above it,
 * an OpenBLAS GEMM. */
#define HYLO_CPU_GEMV_ROWS 4

/* y [T, out] = x [T, in] W^T + b (hylo_ref_linear). With the context's bf16 copy of W and
 * T <= HYLO_CPU_GEMV_ROWS, x is rounded to bf16 and the copy is streamed. */
void hylo_cpu_linear(void *ctx, const float *x, const float *W, const float *b, float *y,
                     int64_t T, int64_t in, int64_t out);
hylo_cpu_need hylo_cpu_linear_need(int64_t T, int64_t in);

/* hylo_ref_rmsnorm: x [rows, n], w [n], y [rows, n] (y may alias x). */
void hylo_cpu_rmsnorm(void *ctx, const float *x, const float *w, float *y, int64_t rows,
                      int64_t n, double eps);

/* hylo_ref_rope_rotate_half on T tokens: x [T, heads, dim] at positions pos0 .. pos0+T-1. */
void hylo_cpu_rope_rotate_half(void *ctx, float *x, int64_t T, int64_t heads, int64_t dim,
                               int64_t pos0, const double *inv_freq, double scale);
/* hylo_ref_rope_interleaved on strided slices: slice (t, h) of `dim` floats at
 * x + t * t_stride + h * h_stride is rotated to position pos0 + t. */
void hylo_cpu_rope_interleaved(float *x, int64_t T, int64_t t_stride, int64_t heads,
                               int64_t h_stride, int64_t dim, int64_t pos0,
                               const double *inv_freq, double scale);

/* hylo_ref_swiglu_mlp */
hylo_status hylo_cpu_swiglu_mlp(void *ctx, const float *x, const float *Wg, const float *bg,
                                const float *Wu, const float *bu, const float *Wd,
                                const float *bd, float *y, int64_t T, int64_t D, int64_t F,
                                hylo_error *err);
hylo_cpu_need hylo_cpu_swiglu_mlp_need(int64_t T, int64_t D, int64_t F);

/* hylo_ref_causal_conv1d_silu: x [T, C], w [C, K], b [C] or NULL, state [C, K-1], y [T, C]. */
hylo_status hylo_cpu_causal_conv1d_silu(void *ctx, const float *x, const float *w,
                                        const float *b, float *state, float *y, int64_t T,
                                        int64_t C, int64_t K, hylo_error *err);
hylo_cpu_need hylo_cpu_conv_need(int64_t C, int64_t K);

/* ------------------------------------------------------------------------------------------ */
/* Tiled causal attention with online softmax (attention.c), shared by GQA and MLA             */
/* ------------------------------------------------------------------------------------------ */

/* Query heads h of tokens t (t < T, h < H) at positions pos0 + t, in groups of `group` heads
 * that read the same keys and values (group g = h / group). Row (t, h) of a query part lies at
 * base + t * t_stride + h * h_stride; row j of group g of a key or value part at
 * base + g * g_stride + j * j_stride. With a content part (n_a) and an optional position part
 * (n_pe, 0 for none), for query row (t, h) and keys j = 0 .. pos0 + t:
 *   s_j = scale (qa . ka_j + qpe . kpe_j) ;  out = sum_j softmax(s)_j val_j      [n_val]
 * Keys are visited in tiles: S = Qa Ka^T + Qpe Kpe^T and O += P V are GEMMs over a block of
 * query rows, with the running max and sum of each row rescaling O (online softmax). */
typedef struct {
    const float *base;
    int64_t t_stride, h_stride;
} hylo_cpu_query_part;

typedef struct {
    const float *base;
    int64_t g_stride, j_stride;
} hylo_cpu_key_part;

typedef struct {
    int64_t T, H, group, pos0;
    int64_t n_a, n_pe, n_val;
    hylo_cpu_query_part qa, qpe;
    hylo_cpu_key_part ka, kpe, val;
    float *out;
    int64_t out_t_stride, out_h_stride;
    float scale;
} hylo_cpu_attention;

hylo_status hylo_cpu_attend(hylo_cpu_ctx *ctx, const hylo_cpu_attention *p, hylo_error *err);
hylo_cpu_need hylo_cpu_attend_need(const hylo_cpu_attention *p);

/* hylo_ref_attention: q [T, H, hd], caches [len, Hkv, hd], out [T, H, hd]. */
hylo_status hylo_cpu_gqa_attention(void *ctx, const float *q, const float *k_cache,
                                   const float *v_cache, float *out, int64_t T, int64_t len,
                                   int64_t H, int64_t Hkv, int64_t hd, double scale,
                                   hylo_error *err);
hylo_cpu_need hylo_cpu_gqa_attention_need(int64_t T, int64_t H, int64_t Hkv, int64_t hd);

/* ------------------------------------------------------------------------------------------ */
/* Hybrid mixers                                                                               */
/* ------------------------------------------------------------------------------------------ */

/* hylo_ref_mla_forward (naive: K and V decompressed, tiled attention per KV head) and
 * hylo_ref_mla_forward_absorbed (all heads score the latent cache with absorbed queries, as
 * one GEMM per tile). A layer with a k_norm runs the naive form for both (its keys are not
 * linear in the latent). */
hylo_status hylo_cpu_mla_prefill(void *ctx, const hylo_mla_layer *layer, hylo_mla_cache *cache,
                                 int64_t pos0, const float *x, int64_t T, float *y,
                                 const hylo_tracer *tr, hylo_error *err);
hylo_status hylo_cpu_mla_decode(void *ctx, const hylo_mla_layer *layer, hylo_mla_cache *cache,
                                int64_t pos0, const float *x, int64_t T, float *y,
                                const hylo_tracer *tr, hylo_error *err);
hylo_cpu_need hylo_cpu_mla_need(const hylo_mla_layer *layer, int64_t T, int64_t len,
                                bool absorbed);

/* hylo_ref_ssd_scan: the chunked form runs per head and chunk as GEMMs (C B^T, M X, C S^T,
 * X^T B); the recurrent form updates the fp32 state in place. */
hylo_status hylo_cpu_ssd_scan(void *ctx, const hylo_mamba2_dims *d, const float *x,
                              const float *dt, const float *A, const float *B, const float *C,
                              const float *D, float *ssm_state, float *y, int64_t T,
                              hylo_scan scan, hylo_error *err);
hylo_cpu_need hylo_cpu_ssd_scan_need(const hylo_mamba2_dims *d, int64_t T, hylo_scan scan);

/* hylo_ref_mamba2_forward */
hylo_status hylo_cpu_mamba2_forward(void *ctx, const hylo_mamba2_dims *d,
                                    const hylo_mamba2_weights *w, hylo_mamba2_state *state,
                                    const float *x, int64_t T, float *y, hylo_scan scan,
                                    const hylo_tracer *tr, hylo_error *err);
hylo_cpu_need hylo_cpu_mamba2_need(const hylo_mamba2_dims *d, int64_t T, hylo_scan scan);

/* hylo_ref_gated_delta_rule: the chunked form runs per value head and chunk as GEMMs (K K^T,
 * the UT transform by forward substitution, W = T K, U = T V, U - W S, Q S + P U, K^T U); the
 * recurrent form updates the fp32 state in place, split across heads and column blocks. */
hylo_status hylo_cpu_gated_delta_rule(void *ctx, const hylo_gdn_dims *d, const float *q,
                                      const float *k, const float *v, const float *g,
                                      const float *beta, float *S, float *o, int64_t T,
                                      hylo_scan scan, hylo_error *err);
hylo_cpu_need hylo_cpu_gated_delta_rule_need(const hylo_gdn_dims *d, int64_t T, hylo_scan scan);

/* hylo_ref_gdn_forward */
hylo_status hylo_cpu_gdn_forward(void *ctx, const hylo_gdn_dims *d, const hylo_gdn_weights *w,
                                 hylo_gdn_state *state, const float *x, int64_t T, float *y,
                                 hylo_scan scan, const hylo_tracer *tr, hylo_error *err);
hylo_cpu_need hylo_cpu_gdn_need(const hylo_gdn_dims *d, int64_t T, hylo_scan scan);

#endif
