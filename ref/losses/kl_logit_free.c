/* kl_logit_free.c: the distillation loss from hidden states and LM heads without a logit
 * matrix. For each chunk of C rows and each vocabulary tile [v0, v0 + n):
 *   pass 1:  z_S = fp32(h_S W_S[tile]^T), z_T = fp32(h_T W_T[tile]^T)       [C, n]
 *            lse(z_T / tau), lse(z_S / tau), lse(z_S) updated online (kd_row.c)
 *   pass 2:  the same tile logits again; KL terms added; G = dL/dz_S [C, n]
 *            dL/dh_S[chunk] += G W_S[tile],   dL/dW_S[tile] += G^T h_S[chunk]
 * Working memory: two float and one double [C, n] tiles, a double [max(D_S, D_T), n] transposed
 * head tile, C row states, a double [C, D_S] for dL/dh_S of the chunk and, when grad_head is
 * wanted, a double [V, D_S] accumulator. The logits are bitwise those of hylo_lm_head, so values
 * and gradients equal the full form's up to the order in which row sums are added. */
#include <stdlib.h>
#include <string.h>

#include "core/progress.h"
#include "losses/losses.h"

typedef struct {
    float *zs, *zt;      /* [chunk, tile] logits of a tile; zs becomes G in pass 2 */
    double *acc;         /* [chunk, tile] their double sums                        */
    double *wt;          /* [max(D_S, D_T), tile] a head tile, transposed          */
    hylo_kd_row *rows;   /* [chunk]                                                */
    double *dh;          /* [chunk, D_S] dL/dh_S of the chunk, or NULL             */
    double *dW;          /* [V, D_S] dL/dW_S, or NULL                              */
} tile_scratch;

/* Frees every buffer (NULL ones included). */
static void free_scratch(tile_scratch *s)
{
    free(s->zs);
    free(s->zt);
    free(s->acc);
    free(s->wt);
    free(s->rows);
    free(s->dh);
    free(s->dW);
}

/* zs, zt, acc [chunk, tile]; wt [max(Ds, Dt), tile]; rows [chunk]; dh [chunk, Ds] when
 * want_dh; dW [V, Ds] (zeroed) when want_dW. */
static hylo_status alloc_scratch(tile_scratch *s, int64_t chunk, int64_t tile, int64_t V,
                                 int64_t Ds, int64_t Dt, bool want_dh, bool want_dW,
                                 hylo_error *err)
{
    const size_t ct = (size_t)(chunk * tile);
    s->zs = malloc(ct * sizeof(float));
    s->zt = malloc(ct * sizeof(float));
    s->acc = malloc(ct * sizeof(double));
    s->wt = malloc((size_t)((Ds > Dt ? Ds : Dt) * tile) * sizeof(double));
    s->rows = malloc((size_t)chunk * sizeof(hylo_kd_row));
    s->dh = want_dh ? malloc((size_t)(chunk * Ds) * sizeof(double)) : NULL;
    s->dW = want_dW ? calloc((size_t)(V * Ds), sizeof(double)) : NULL;
    if (s->zs && s->zt && s->acc && s->wt && s->rows && (s->dh || !want_dh) &&
        (s->dW || !want_dW))
        return HYLO_OK;
    free_scratch(s);
    return hylo_error_set(err, HYLO_ERR_NOMEM,
                          "cannot allocate the tiles of the logit-free KL (chunk %lld x tile "
                          "%lld)",
                          (long long)chunk, (long long)tile);
}

/* Both sides' logits of rows r0 .. r0 + C - 1 and vocabulary v0 .. v0 + n - 1 into s->zs,
 * s->zt [C, n]. */
static void tile_logits(const hylo_kd_side *student, const hylo_kd_side *teacher, int64_t r0,
                        int64_t C, int64_t v0, int64_t n, tile_scratch *s)
{
    const int64_t Ds = student->dim, Dt = teacher->dim;
    hylo_kd_logits_tile(student->hidden + r0 * Ds, student->lm_head + v0 * Ds, C, n, Ds, s->wt,
                        s->acc, s->zs);
    hylo_kd_logits_tile(teacher->hidden + r0 * Dt, teacher->lm_head + v0 * Dt, C, n, Dt, s->wt,
                        s->acc, s->zt);
}

/* Rows r0 .. r0 + C - 1: both passes over every tile; their dL/dh_S goes to grad_hidden
 * [C, D_S] (if not NULL) and their dL/dW_S is added to s->dW (if not NULL). */
static void run_chunk(const hylo_kd_plan *plan, const hylo_kd_side *student,
                      const hylo_kd_side *teacher, int64_t r0, int64_t C, int64_t tile,
                      tile_scratch *s, float *grad_hidden, hylo_kd_sums *sums)
{
    const int64_t V = plan->V, Ds = student->dim;
    const bool backprop = s->dh || s->dW;
    for (int64_t i = 0; i < C; i++) hylo_kd_row_init(&s->rows[i], plan, r0 + i);
    for (int64_t v0 = 0; v0 < V; v0 += tile) {
        const int64_t n = V - v0 < tile ? V - v0 : tile;
        tile_logits(student, teacher, r0, C, v0, n, s);
#pragma omp parallel for schedule(dynamic, 8) if (C * n >= HYLO_KD_PARALLEL_MIN)
        for (int64_t i = 0; i < C; i++)
            hylo_kd_row_scan(&s->rows[i], plan, s->zs + i * n, s->zt + i * n, v0, n);
    }
    for (int64_t i = 0; i < C; i++) hylo_kd_row_close(&s->rows[i]);
    if (s->dh) memset(s->dh, 0, (size_t)(C * Ds) * sizeof(double));
    for (int64_t v0 = 0; v0 < V; v0 += tile) {
        const int64_t n = V - v0 < tile ? V - v0 : tile;
        tile_logits(student, teacher, r0, C, v0, n, s);
#pragma omp parallel for schedule(dynamic, 8) if (C * n >= HYLO_KD_PARALLEL_MIN)
        for (int64_t i = 0; i < C; i++)
            hylo_kd_row_grad(&s->rows[i], plan, s->zs + i * n, s->zt + i * n, v0, n,
                             backprop ? s->zs + i * n : NULL);
        if (backprop)
            hylo_kd_backprop_tile(s->zs, student->hidden + r0 * Ds, student->lm_head + v0 * Ds,
                                  C, n, Ds, s->dh, s->dW ? s->dW + v0 * Ds : NULL);
    }
    hylo_kd_sums_add(sums, s->rows, C);
    for (int64_t i = 0; s->dh && i < C * Ds; i++) grad_hidden[i] = (float)s->dh[i];
}

/* student h_S [N, D_S], W_S [V, D_S]; teacher h_T [N, D_T], W_T [V, D_T]; labels [N] or NULL;
 * grad_hidden [N, D_S] or NULL; grad_head [V, D_S] or NULL. */
hylo_status hylo_kd_loss_logit_free(const hylo_kd_side *student, const hylo_kd_side *teacher,
                                    const int32_t *labels, int64_t N, int64_t V, int64_t chunk,
                                    int64_t tile, const hylo_kd_options *opt,
                                    hylo_kd_result *out, float *grad_hidden, float *grad_head,
                                    hylo_error *err)
{
    hylo_kd_plan plan;
    hylo_status st = hylo_kd_plan_make(opt, labels, N, V, &plan, err);
    if (st == HYLO_OK && (chunk < 1 || tile < 1))
        st = hylo_error_set(err, HYLO_ERR_RANGE, "chunk %lld, tile %lld: each must be >= 1",
                            (long long)chunk, (long long)tile);
    if (st == HYLO_OK && !out)
        st = hylo_error_set(err, HYLO_ERR_USAGE, "hylo_kd_loss_logit_free: out is required");
    if (st == HYLO_OK) st = hylo_kd_check_sides(student, teacher, N, V, err);
    if (st != HYLO_OK) return st;
    const int64_t Ds = student->dim;
    if (chunk > N) chunk = N;
    if (tile > V) tile = V;
    tile_scratch s = {0};
    st = alloc_scratch(&s, chunk, tile, V, Ds, teacher->dim, grad_hidden != NULL,
                       grad_head != NULL, err);
    if (st != HYLO_OK) return st;
    hylo_kd_sums sums = {0};
    hylo_progress progress;
    hylo_progress_begin(&progress, plan.progress, (uint64_t)N, "rows", 0);
    for (int64_t r0 = 0; r0 < N; r0 += chunk) {
        const int64_t C = N - r0 < chunk ? N - r0 : chunk;
        run_chunk(&plan, student, teacher, r0, C, tile, &s,
                  grad_hidden ? grad_hidden + r0 * Ds : NULL, &sums);
        hylo_progress_update(&progress, (uint64_t)(r0 + C));
    }
    hylo_progress_end(&progress);
    for (int64_t i = 0; s.dW && i < V * Ds; i++) grad_head[i] = (float)s.dW[i];
    hylo_kd_finish(&plan, &sums, out);
    free_scratch(&s);
    return HYLO_OK;
}
