/* hip_losses.h: the distillation losses of the HIP backend (internal), one source per ref/losses
 * form. hylo_hip_kd_loss_logit_free computes what hylo_kd_loss_logit_free computes (hylo.h
 * "Distillation losses"), on device memory, without a [N, V] logit matrix. */
#ifndef HYLO_HIP_LOSSES_H
#define HYLO_HIP_LOSSES_H

#include "core/hip.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One side of the loss in device memory: final-norm outputs and LM head. In a bf16 context the
 * GEMMs read bf16 operands: the hidden states rounded to bf16 (into the workspace), and
 * lm_head_bf16 when given, else lm_head rounded (into the workspace, V D 2 bytes). lm_head may
 * be NULL when lm_head_bf16 is given in a bf16 context; an fp32 context needs lm_head. */
typedef struct {
    const float *hidden;           /* [N, D] fp32                                         */
    const float *lm_head;          /* [V, D] fp32, or NULL (see above)                    */
    const uint16_t *lm_head_bf16;  /* [V, D] bf16 copy, or NULL                           */
    int64_t dim;                   /* D; student and teacher may differ                   */
} hylo_hip_kd_side;

/* kd.hip: hylo_kd_loss_logit_free on the device. labels: HOST [N] or NULL (checked and turned
 * into next-token targets on the host, as ref does); grad_hidden [N, D_S] and grad_head
 * [V, D_S]: device, each may be NULL; out: host. Per chunk of `chunk` rows and vocabulary tile
 * of `tile` entries (each >= 1, clamped to N and V; the GEMMs are [chunk, tile, D]):
 *   pass 1:  Z_S = h_S W_S[tile]^T, Z_T = h_T W_T[tile]^T (GEMMs into [chunk, tile] fp32
 *            tiles), online max / sum of exp per row of Z_T / tau, Z_S / tau and Z_S (fp32)
 *   pass 2:  the same GEMMs again; per row the KL terms (summed in double) and
 *            G = dL/dZ_S = c_kl (p_S - p_T) + c_ce (softmax(Z_S) - onehot(y))  (bf16 in a bf16
 *            context, else fp32); dL/dh_S[chunk] += G W_S[tile], dL/dW_S[tile] += G^T h_S[chunk]
 *            by GEMMs accumulating in fp32 into the outputs.
 * Memory: the LAYER workspace (rows' statistics, three [chunk, tile] tiles, the bf16 copies);
 * nothing of size N x V. Waits for the device (the values come back to the host).
 * Errors: those of hylo_kd_loss_logit_free (options, labels, sizes, non-finite hidden states or
 * heads, possible fp32 overflow of the logits), checked on the operands the GEMMs read; also
 * HYLO_ERR_NUMERIC when a logit divided by tau, or a difference of two, could overflow the
 * fp32 statistics (2 max ||h|| max ||W|| max(1, 1/tau) > FLT_MAX), and the context's recorded
 * failure (kept recorded, as the other ops do). opt->progress is ignored. */
hylo_status hylo_hip_kd_loss_logit_free(void *ctx, const hylo_hip_kd_side *student,
                                        const hylo_hip_kd_side *teacher, const int32_t *labels,
                                        int64_t N, int64_t V, int64_t chunk, int64_t tile,
                                        const hylo_kd_options *opt, hylo_kd_result *out,
                                        float *grad_hidden, float *grad_head, hylo_error *err);

#ifdef __cplusplus
}
#endif

#endif
