/* gdn.h: the Gated DeltaNet mixer (spec sec. 5, flash-linear-attention semantics), reference
 * form (internal). Value head hv reads q/k head hv / (H_v / H_k). */
#ifndef HYLO_REF_GDN_H
#define HYLO_REF_GDN_H

#include <stdint.h>

#include "core/trace.h"
#include "hylo.h"
#include "layers/mamba2.h" /* hylo_scan */

typedef struct {
    int64_t hidden;   /* D                                  */
    int64_t k_heads;  /* H_k                                */
    int64_t v_heads;  /* H_v (a multiple of H_k)            */
    int64_t head_k;   /* dk                                 */
    int64_t head_v;   /* dv                                 */
    int64_t d_conv;   /* short conv taps (4)                */
    int64_t chunk;    /* chunk length of the chunked form (64) */
    double eps;       /* of the output RMSNorm over dv      */
} hylo_gdn_dims;

typedef struct {
    const float *q_proj;   /* [H_k*dk, D] */
    const float *k_proj;   /* [H_k*dk, D] */
    const float *v_proj;   /* [H_v*dv, D] */
    const float *g_proj;   /* [H_v*dv, D] output gate */
    const float *a_proj;   /* [H_v, D]    */
    const float *b_proj;   /* [H_v, D]    */
    const float *A_log;    /* [H_v]       */
    const float *dt_bias;  /* [H_v]       */
    const float *q_conv;   /* [H_k*dk, d_conv] (no bias) */
    const float *k_conv;   /* [H_k*dk, d_conv] */
    const float *v_conv;   /* [H_v*dv, d_conv] */
    const float *o_norm;   /* [dv]        */
    const float *o_proj;   /* [D, H_v*dv] */
} hylo_gdn_weights;

/* The per-sequence state (zeros at the start of a sequence). */
typedef struct {
    float *q_conv;  /* [H_k*dk, d_conv - 1] */
    float *k_conv;  /* [H_k*dk, d_conv - 1] */
    float *v_conv;  /* [H_v*dv, d_conv - 1] */
    float *S;       /* [H_v, dk, dv]         */
} hylo_gdn_state;

/* x <- scale * x / sqrt(sum x^2 + eps), row by row: the q/k normalization of sec. 5
 * (eps 1e-6; scale dk^-0.5 for q, 1 for k). x [rows, n]. */
void hylo_ref_l2norm(float *x, int64_t rows, int64_t n, double eps, double scale);

/* The per-token decay and write strength of sec. 5, per value head:
 *   g = -exp(A_log) * softplus(a + dt_bias) ;  beta = sigmoid(b)
 * a, b, g, beta [T, H_v]; A_log, dt_bias [H_v]. */
void hylo_ref_gdn_gates(const float *a, const float *b, const float *A_log,
                        const float *dt_bias, float *g, float *beta, int64_t T, int64_t H_v);

/* HYLO_OK when d's head sizes suit the gated delta rule (positive, H_v a multiple of H_k, and
 * chunk >= 1 for the chunked scan); otherwise HYLO_ERR_USAGE with a message. */
hylo_status hylo_ref_gated_delta_rule_check(const hylo_gdn_dims *d, hylo_scan scan,
                                            hylo_error *err);

/* The gated delta rule on T tokens continuing from S (updated in place). Reads k_heads,
 * v_heads, head_k, head_v and (for the chunked form) chunk from d; value head hv reads q/k
 * head hv / (H_v / H_k). q, k [T, H_k, dk] (already normalized; q already scaled), v [T, H_v,
 * dv], g, beta [T, H_v] (g <= 0), S [H_v, dk, dv], o [T, H_v, dv]. Per value head:
 *   S <- S exp(g_t) ;  u = beta_t (v_t - k_t^T S) ;  S <- S + k_t (x) u ;  o_t = q_t^T S
 * HYLO_SCAN_RECURRENT runs this token by token; HYLO_SCAN_CHUNKED runs the equivalent
 * WY / UT-transform form over chunks of `chunk` tokens (the last one may be shorter). Both
 * keep S in double within the call; on failure S is left as it was. */
hylo_status hylo_ref_gated_delta_rule(const hylo_gdn_dims *d, const float *q, const float *k,
                                      const float *v, const float *g, const float *beta,
                                      float *S, float *o, int64_t T, hylo_scan scan,
                                      hylo_error *err);

/* T tokens continuing from `state` (updated in place); x [T, D], y [T, D].
 *   q, k, v = silu(conv(q_proj x)), silu(conv(k_proj x)), silu(conv(v_proj x))
 *   q^ = q / sqrt(sum q^2 + 1e-6) * dk^-0.5 ; k^ = k / sqrt(sum k^2 + 1e-6)
 *   g = -exp(A_log) softplus(a_proj x + dt_bias) ; beta = sigmoid(b_proj x)
 *   S <- S exp(g) ; u = beta (v - k^T S) ; S <- S + k^ (x) u ; o = q^T S
 *   y = o_proj( RMSNorm_dv(o) * o_norm * silu(g_proj x) )
 * `scan` chooses the chunked (WY / UT transform) form or the token recurrence. */
hylo_status hylo_ref_gdn_forward(const hylo_gdn_dims *d, const hylo_gdn_weights *w,
                                 hylo_gdn_state *state, const float *x, int64_t T, float *y,
                                 hylo_scan scan, const hylo_tracer *tr, hylo_error *err);

#endif
