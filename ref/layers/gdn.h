/* gdn.h: the Gated DeltaNet mixer (spec sec. 5, flash-linear-attention semantics), reference
 * form (internal). Value head hv reads q/k head hv / (H_v / H_k). */
#ifndef HYLO_REF_GDN_H
#define HYLO_REF_GDN_H

#include <stdint.h>

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

/* T tokens continuing from `state` (updated in place); x [T, D], y [T, D].
 *   q, k, v = silu(conv(q_proj x)), silu(conv(k_proj x)), silu(conv(v_proj x))
 *   q^ = q / sqrt(sum q^2 + 1e-6) * dk^-0.5 ; k^ = k / sqrt(sum k^2 + 1e-6)
 *   g = -exp(A_log) softplus(a_proj x + dt_bias) ; beta = sigmoid(b_proj x)
 *   S <- S exp(g) ; u = beta (v - k^T S) ; S <- S + k^ (x) u ; o = q^T S
 *   y = o_proj( RMSNorm_dv(o) * o_norm * silu(g_proj x) )
 * `scan` chooses the chunked (WY / UT transform) form or the token recurrence. */
hylo_status hylo_ref_gdn_forward(const hylo_gdn_dims *d, const hylo_gdn_weights *w,
                                 hylo_gdn_state *state, const float *x, int64_t T, float *y,
                                 hylo_scan scan, hylo_error *err);

#endif
