/* mamba2.h: the Mamba2 mixer (spec sec. 4, state-spaces/mamba semantics), reference form
 * (internal). One description covers both layouts:
 *   stock mamba_ssm:  x_heads = nheads, b_groups = c_groups = ngroups
 *   upcycled (MambaInLlama / Zebra):  x_heads = b_groups = Hkv, c_groups = nheads = H,
 *                     headdim = d_state = hd, norm_groups = H
 * Head h reads x block h / (nheads / x_heads), B group h / (nheads / b_groups) and C group
 * h / (nheads / c_groups): the upcycled x and B are repeated to heads after the conv. */
#ifndef HYLO_REF_MAMBA2_H
#define HYLO_REF_MAMBA2_H

#include <stdint.h>

#include "core/trace.h"
#include "hylo.h"

typedef struct {
    int64_t hidden;       /* D                                                   */
    int64_t nheads;       /* H                                                   */
    int64_t headdim;      /* P; d_inner = nheads * P                             */
    int64_t d_state;      /* N                                                   */
    int64_t x_heads;      /* blocks of P in x   (divides nheads)                 */
    int64_t b_groups;     /* blocks of N in B   (divides nheads)                 */
    int64_t c_groups;     /* blocks of N in C   (divides nheads)                 */
    int64_t norm_groups;  /* groups of the gated RMSNorm over d_inner            */
    int64_t d_conv;       /* conv taps (4)                                       */
    int64_t chunk;        /* SSD chunk length of the chunked scan (256)          */
    double eps;           /* gated RMSNorm eps (1e-5)                            */
} hylo_mamba2_dims;

/* in_proj rows are [z (d_inner) | x (x_heads*P) | B (b_groups*N) | C (c_groups*N) | dt (H)];
 * the conv runs over the xBC rows, conv_dim = x_heads*P + b_groups*N + c_groups*N. */
typedef struct {
    const float *in_proj;   /* [2*d_inner... see above, D]        */
    const float *conv_w;    /* [conv_dim, d_conv]                  */
    const float *conv_b;    /* [conv_dim]                          */
    const float *dt_bias;   /* [H]                                 */
    const float *A_log;     /* [H]                                 */
    const float *D;         /* [H]                                 */
    const float *norm;      /* [d_inner]                           */
    const float *out_proj;  /* [D, d_inner]                        */
} hylo_mamba2_weights;

/* The per-sequence state (zeros at the start of a sequence). */
typedef struct {
    float *conv;  /* [conv_dim, d_conv - 1] */
    float *ssm;   /* [H, P, N]               */
} hylo_mamba2_state;

typedef enum { HYLO_SCAN_CHUNKED = 0, HYLO_SCAN_RECURRENT } hylo_scan;

int64_t hylo_mamba2_conv_dim(const hylo_mamba2_dims *d);
int64_t hylo_mamba2_in_proj_rows(const hylo_mamba2_dims *d);

/* HYLO_OK when every size is positive, x_heads, b_groups and c_groups divide nheads and
 * norm_groups divides d_inner; otherwise HYLO_ERR_USAGE naming the field. */
hylo_status hylo_mamba2_check_dims(const hylo_mamba2_dims *d, hylo_error *err);

/* The selective scan of T tokens (spec sec. 4) continuing from `ssm_state` (updated in place).
 * x [T, x_heads, P], dt [T, H] (after softplus), A [H], B [T, b_groups, N], C [T, c_groups, N],
 * D [H], ssm_state [H, P, N], y [T, H, P]. Head h reads x block h / (H / x_heads), B group
 * h / (H / b_groups) and C group h / (H / c_groups) (the blocks are not repeated in memory):
 *   S_h <- exp(dt_h A_h) S_h + dt_h x_h (x) B_g ;  y_h = S_h C_g + D_h x_h
 * HYLO_SCAN_RECURRENT runs this token by token; HYLO_SCAN_CHUNKED runs the SSD form over
 * chunks of d->chunk tokens (the last one may be shorter). Both accumulate in double within a
 * call (the state is rounded to fp32 when the call returns) and agree to rounding. `d` must pass
 * hylo_mamba2_check_dims; hidden, norm_groups, d_conv and eps are not used. */
hylo_status hylo_ref_ssd_scan(const hylo_mamba2_dims *d, const float *x, const float *dt,
                              const float *A, const float *B, const float *C, const float *D,
                              float *ssm_state, float *y, int64_t T, hylo_scan scan,
                              hylo_error *err);

/* T tokens continuing from `state` (updated in place); x [T, D], y [T, D].
 *   [z, xBC, dt] = split(x in_proj^T) ; xBC = silu(conv(xBC) + b) ; x, B, C = split(xBC)
 *   dt_h = softplus(dt_h + dt_bias_h) ; A_h = -exp(A_log_h)
 *   S_h <- exp(dt_h A_h) S_h + dt_h x_h (x) B_g ;  y_h = S_h C_g + D_h x_h
 *   y = out_proj( norm * GroupRMS(y * silu(z)) )
 * `scan` chooses the chunked SSD form (prefill) or the token recurrence (decode); they must
 * agree to rounding. */
hylo_status hylo_ref_mamba2_forward(const hylo_mamba2_dims *d, const hylo_mamba2_weights *w,
                                    hylo_mamba2_state *state, const float *x, int64_t T,
                                    float *y, hylo_scan scan, const hylo_tracer *tr,
                                    hylo_error *err);

#endif
