/* kl_chunked.c: the distillation loss chunked over the sequence. For each chunk of C rows:
 *   z_S = fp32(h_S W_S^T), z_T = fp32(h_T W_T^T)            [C, V] each (as hylo_lm_head)
 *   G   = dL/dz_S of those rows                             (the full form's row kernel)
 *   dL/dh_S[chunk] = G W_S,   dL/dW_S += G^T h_S[chunk]     (double accumulators)
 * so the values and gradients are those of hylo_kd_loss on the whole [N, V] logits. */
#include <stdlib.h>
#include <string.h>

#include "core/progress.h"
#include "layers/layers.h"
#include "losses/losses.h"

typedef struct {
    float *zs, *zt;   /* [chunk, V] logits; zs becomes G                 */
    double *dh;       /* [chunk, D_S] dL/dh_S of the chunk, or NULL      */
    double *dW;       /* [V, D_S]     dL/dW_S over all chunks, or NULL   */
} chunk_scratch;

/* Frees every buffer (NULL ones included). */
static void free_scratch(chunk_scratch *s)
{
    free(s->zs);
    free(s->zt);
    free(s->dh);
    free(s->dW);
}

/* zs, zt [chunk, V]; dh [chunk, D] when want_dh; dW [V, D] (zeroed) when want_dW. */
static hylo_status alloc_scratch(chunk_scratch *s, int64_t chunk, int64_t V, int64_t D,
                                 bool want_dh, bool want_dW, hylo_error *err)
{
    s->zs = malloc((size_t)(chunk * V) * sizeof(float));
    s->zt = malloc((size_t)(chunk * V) * sizeof(float));
    s->dh = want_dh ? malloc((size_t)(chunk * D) * sizeof(double)) : NULL;
    s->dW = want_dW ? calloc((size_t)(V * D), sizeof(double)) : NULL;
    if (s->zs && s->zt && (s->dh || !want_dh) && (s->dW || !want_dW)) return HYLO_OK;
    free_scratch(s);
    return hylo_error_set(err, HYLO_ERR_NOMEM,
                          "cannot allocate the logits of a chunk ([%lld, %lld] x 2 floats)",
                          (long long)chunk, (long long)V);
}

/* student h_S [N, D_S], W_S [V, D_S]; teacher h_T [N, D_T], W_T [V, D_T]; labels [N] or NULL;
 * grad_hidden [N, D_S] or NULL; grad_head [V, D_S] or NULL. */
hylo_status hylo_kd_loss_chunked(const hylo_kd_side *student, const hylo_kd_side *teacher,
                                 const int32_t *labels, int64_t N, int64_t V, int64_t chunk,
                                 const hylo_kd_options *opt, hylo_kd_result *out,
                                 float *grad_hidden, float *grad_head, hylo_error *err)
{
    hylo_kd_plan plan;
    hylo_status st = hylo_kd_plan_make(opt, labels, N, V, &plan, err);
    if (st == HYLO_OK && chunk < 1)
        st = hylo_error_set(err, HYLO_ERR_RANGE, "chunk %lld: must be >= 1", (long long)chunk);
    if (st == HYLO_OK && !out)
        st = hylo_error_set(err, HYLO_ERR_USAGE, "hylo_kd_loss_chunked: out is required");
    if (st == HYLO_OK) st = hylo_kd_check_sides(student, teacher, N, V, err);
    if (st != HYLO_OK) return st;
    const int64_t Ds = student->dim, Dt = teacher->dim;
    if (chunk > N) chunk = N;
    chunk_scratch s = {0};
    st = alloc_scratch(&s, chunk, V, Ds, grad_hidden != NULL, grad_head != NULL, err);
    if (st != HYLO_OK) return st;
    hylo_kd_sums sums = {0};
    hylo_progress progress;
    hylo_progress_begin(&progress, plan.progress, (uint64_t)N, "rows", 0);
    for (int64_t r0 = 0; r0 < N && st == HYLO_OK; r0 += chunk) {
        const int64_t C = N - r0 < chunk ? N - r0 : chunk;
        const float *hs = student->hidden + r0 * Ds;
        hylo_ref_linear(hs, student->lm_head, NULL, s.zs, C, Ds, V);
        hylo_ref_linear(teacher->hidden + r0 * Dt, teacher->lm_head, NULL, s.zt, C, Dt, V);
        const bool backprop = grad_hidden || grad_head;
        st = hylo_kd_rows(&plan, s.zs, s.zt, r0, C, backprop ? s.zs : NULL, &sums, err);
        if (st == HYLO_OK && backprop) {
            if (s.dh) memset(s.dh, 0, (size_t)(C * Ds) * sizeof(double));
            hylo_kd_backprop_tile(s.zs, hs, student->lm_head, C, V, Ds, s.dh, s.dW);
            for (int64_t i = 0; s.dh && i < C * Ds; i++) grad_hidden[r0 * Ds + i] = (float)s.dh[i];
        }
        hylo_progress_update(&progress, (uint64_t)(r0 + C));
    }
    hylo_progress_end(&progress);
    for (int64_t i = 0; st == HYLO_OK && s.dW && i < V * Ds; i++) grad_head[i] = (float)s.dW[i];
    if (st == HYLO_OK) hylo_kd_finish(&plan, &sums, out);
    free_scratch(&s);
    return st;
}
