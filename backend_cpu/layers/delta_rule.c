/* delta_rule.c: the gated delta rule of Gated DeltaNet for the CPU backend: the chunked WY /
 * UT-transform form (equations (1)-(4) of ref/layers/delta_rule.c) with its products as GEMMs,
 * value heads in parallel; the token recurrence split across heads and column blocks (the
 * columns of S evolve independently). fp32, the state updated in place. */
#include <math.h>
#include <omp.h>

#include "cpu_layers.h"

#define COLUMN_BLOCK 64 /* state columns per work item of the recurrence */

/* ------------------------------------------------------------------------------------------ */
/* Token recurrence                                                                            */
/* ------------------------------------------------------------------------------------------ */

/* Columns [0, n) of S [dk, ld] (a block of the head's state), one token:
 *   S <- e^g S ;  u = beta (v - S^T k) ;  S <- S + k u^T ;  o = S^T q
 * in two sweeps over S (decay with S^T k; update with S^T q); u, o [n]. */
HYLO_CPU_CLONES
static void recurrent_step(float *S, int64_t ld, int64_t dk, int64_t n, const float *k,
                           const float *q, const float *v, float beta, float decay, float *u,
                           float *o)
{
    for (int64_t e = 0; e < n; e++) u[e] = 0.0f;
    for (int64_t d = 0; d < dk; d++) {
        float *Sd = S + d * ld;
        const float kd = k[d];
#pragma omp simd
        for (int64_t e = 0; e < n; e++) {
            Sd[e] *= decay;
            u[e] += kd * Sd[e];
        }
    }
#pragma omp simd
    for (int64_t e = 0; e < n; e++) {
        u[e] = beta * (v[e] - u[e]);
        o[e] = 0.0f;
    }
    for (int64_t d = 0; d < dk; d++) {
        float *Sd = S + d * ld;
        const float kd = k[d], qd = q[d];
#pragma omp simd
        for (int64_t e = 0; e < n; e++) {
            Sd[e] += kd * u[e];
            o[e] += qd * Sd[e];
        }
    }
}

static void recurrent(const hylo_gdn_dims *d, const float *q, const float *k, const float *v,
                      const float *g, const float *beta, float *S, float *o, int64_t T)
{
    const int64_t Hk = d->k_heads, Hv = d->v_heads, dk = d->head_k, dv = d->head_v;
    const int64_t blocks = (dv + COLUMN_BLOCK - 1) / COLUMN_BLOCK;
#pragma omp parallel for collapse(2) schedule(static) if (Hv * dk * dv >= 65536)
    for (int64_t hv = 0; hv < Hv; hv++)
        for (int64_t blk = 0; blk < blocks; blk++) {
            const int64_t hk = hv / (Hv / Hk), e0 = blk * COLUMN_BLOCK;
            const int64_t n = dv - e0 < COLUMN_BLOCK ? dv - e0 : COLUMN_BLOCK;
            float u[COLUMN_BLOCK];
            for (int64_t t = 0; t < T; t++) {
                const int64_t i = t * Hv + hv;
                recurrent_step(S + hv * dk * dv + e0, dv, dk, n, k + (t * Hk + hk) * dk,
                               q + (t * Hk + hk) * dk, v + i * dv + e0, beta[i], expf(g[i]), u,
                               o + i * dv + e0);
            }
        }
}

/* ------------------------------------------------------------------------------------------ */
/* Chunked WY / UT-transform form                                                              */
/* ------------------------------------------------------------------------------------------ */

/* Per-thread buffers for chunks of at most C tokens. */
typedef struct {
    float *G;    /* [C]      cumulative log-decays                           */
    float *f;    /* [C]      column factors beta_j, then beta_j e^(G_j)       */
    float *A;    /* [C, C]   K K^T, then Q K^T                               */
    float *Tm;   /* [C, C]   T = (I + A)^-1                                   */
    float *Tb;   /* [C, C]   T diag(beta) (U), then T diag(beta e^G) (W)     */
    float *W;    /* [C, dk]  W, then rows e^(G_i) q_i, then e^(G_last - G_j) k_j */
    float *U;    /* [C, dv]  U, then U~ = U - W S                              */
} chunk_buffers;

static int64_t chunk_floats(int64_t C, int64_t dk, int64_t dv)
{
    return 2 * hylo_cpu_round16(C) + 3 * hylo_cpu_round16(C * C) + hylo_cpu_round16(C * dk) +
           hylo_cpu_round16(C * dv);
}

/* Row i of the masked, decayed matrix: row_j <- row_j f_i e^(G_i - G_j) for j < i + diag
 * (diag = 1 keeps j = i, 0 drops it), 0 for the rest of the n entries. */
HYLO_CPU_CLONES
static void decay_row(float *row, float f_i, float G_i, const float *G, int64_t i, int64_t diag,
                      int64_t n)
{
#pragma omp simd
    for (int64_t j = 0; j < i + diag; j++) row[j] *= f_i * hylo_cpu_expf(G_i - G[j]);
    for (int64_t j = i + diag; j < n; j++) row[j] = 0.0f;
}

/* T = (I + A)^-1 for the strictly lower A [n, n] (leading dimension C), row by row:
 *   T_i = e_i - sum_{m < i} A_im T_m      (T_m is zero beyond column m)                      */
static void ut_transform(const float *A, float *Tm, int64_t n, int64_t C)
{
    for (int64_t i = 0; i < n; i++) {
        float *Ti = Tm + i * C;
        memset(Ti, 0, (size_t)C * sizeof *Ti);
        for (int64_t m = 0; m < i; m++) hylo_cpu_axpy(Ti, -A[i * C + m], Tm + m * C, m + 1);
        Ti[i] = 1.0f;
    }
}

/* dst [n, n] (leading dimension C) = the lower triangular src scaled by column:
 * dst_ij = src_ij f_j (j <= i, 0 above) */
static void scale_columns(const float *src, float *dst, const float *f, int64_t n, int64_t C)
{
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j <= i; j++) dst[i * C + j] = src[i * C + j] * f[j];
        for (int64_t j = i + 1; j < n; j++) dst[i * C + j] = 0.0f;
    }
}

/* One chunk of n tokens from t0 for value head hv (q/k head hk), S [dk, dv] updated:
 *   A = diag(beta) (K K^T o D)_strict,  D_ij = e^(G_i - G_j) ;  T = (I + A)^-1
 *   W = T diag(beta e^G) K ;  U = T diag(beta) V ;  U~ = U - W S
 *   O = diag(e^G) Q S + (Q K^T o D)_lower U~
 *   S <- e^(G_last) S + (diag(e^(G_last - G)) K)^T U~                                        */
static void rule_chunk(const hylo_gdn_dims *d, const float *q, const float *k, const float *v,
                       const float *g, const float *beta, float *S, float *o, int64_t hv,
                       int64_t t0, int64_t n, int64_t C, const chunk_buffers *w)
{
    const int64_t Hk = d->k_heads, Hv = d->v_heads, dk = d->head_k, dv = d->head_v;
    const int64_t hk = hv / (Hv / Hk), kq_stride = Hk * dk, v_stride = Hv * dv;
    const float *K = k + (t0 * Hk + hk) * dk, *Q = q + (t0 * Hk + hk) * dk;
    const float *V = v + (t0 * Hv + hv) * dv, *bt = beta + t0 * Hv + hv;
    float *O = o + (t0 * Hv + hv) * dv;
    double acc = 0.0;
    for (int64_t i = 0; i < n; i++) {
        acc += g[(t0 + i) * Hv + hv];
        w->G[i] = (float)acc;
    }
    const float G_last = w->G[n - 1];
    hylo_cpu_gemm(false, true, n, n, dk, 1.0f, K, kq_stride, K, kq_stride, 0.0f, w->A, C);
    for (int64_t i = 0; i < n; i++) decay_row(w->A + i * C, bt[i * Hv], w->G[i], w->G, i, 0, n);
    ut_transform(w->A, w->Tm, n, C);
    for (int64_t j = 0; j < n; j++) w->f[j] = bt[j * Hv];
    scale_columns(w->Tm, w->Tb, w->f, n, C);
    hylo_cpu_gemm(false, false, n, dv, n, 1.0f, w->Tb, C, V, v_stride, 0.0f, w->U, dv);
    for (int64_t j = 0; j < n; j++) w->f[j] *= hylo_cpu_expf(w->G[j]);
    scale_columns(w->Tm, w->Tb, w->f, n, C);
    hylo_cpu_gemm(false, false, n, dk, n, 1.0f, w->Tb, C, K, kq_stride, 0.0f, w->W, dk);
    hylo_cpu_gemm(false, false, n, dv, dk, -1.0f, w->W, dk, S, dv, 1.0f, w->U, dv);
    /* output: W now holds e^(G_i) q_i, A the decayed lower Q K^T */
    for (int64_t i = 0; i < n; i++) {
        const float e = hylo_cpu_expf(w->G[i]);
        for (int64_t c = 0; c < dk; c++) w->W[i * dk + c] = e * Q[i * kq_stride + c];
    }
    hylo_cpu_gemm(false, true, n, n, dk, 1.0f, Q, kq_stride, K, kq_stride, 0.0f, w->A, C);
    for (int64_t i = 0; i < n; i++) decay_row(w->A + i * C, 1.0f, w->G[i], w->G, i, 1, n);
    hylo_cpu_gemm(false, false, n, dv, dk, 1.0f, w->W, dk, S, dv, 0.0f, O, v_stride);
    hylo_cpu_gemm(false, false, n, dv, n, 1.0f, w->A, C, w->U, dv, 1.0f, O, v_stride);
    /* state: W now holds e^(G_last - G_j) k_j */
    for (int64_t j = 0; j < n; j++) {
        const float e = hylo_cpu_expf(G_last - w->G[j]);
        for (int64_t c = 0; c < dk; c++) w->W[j * dk + c] = e * K[j * kq_stride + c];
    }
    hylo_cpu_gemm(true, false, dk, dv, n, 1.0f, w->W, dk, w->U, dv, hylo_cpu_expf(G_last), S, dv);
}

hylo_cpu_need hylo_cpu_gated_delta_rule_need(const hylo_gdn_dims *d, int64_t T, hylo_scan scan)
{
    const int64_t C = d->chunk < T ? d->chunk : T;
    hylo_cpu_need need = {{0, scan == HYLO_SCAN_CHUNKED
                                  ? hylo_cpu_threads() * chunk_floats(C, d->head_k, d->head_v)
                                  : 0}};
    return need;
}

/* q, k [T, Hk, dk] (normalized, q scaled), v [T, Hv, dv], g, beta [T, Hv], S [Hv, dk, dv]
 * (in/out), o [T, Hv, dv]. The only failure (workspace) comes before anything is written. */
hylo_status hylo_cpu_gated_delta_rule(void *ctx, const hylo_gdn_dims *d, const float *q,
                                      const float *k, const float *v, const float *g,
                                      const float *beta, float *S, float *o, int64_t T,
                                      hylo_scan scan, hylo_error *err)
{
    if (T < 0)
        return hylo_error_set(err, HYLO_ERR_USAGE, "gated delta rule: T %lld < 0", (long long)T);
    hylo_status st = hylo_ref_gated_delta_rule_check(d, scan, err);
    if (st != HYLO_OK || T == 0) return st;
    if (scan == HYLO_SCAN_RECURRENT) {
        recurrent(d, q, k, v, g, beta, S, o, T);
        return HYLO_OK;
    }
    const int64_t Hv = d->v_heads, dk = d->head_k, dv = d->head_v;
    const int64_t C = d->chunk < T ? d->chunk : T, per_thread = chunk_floats(C, dk, dv);
    float *work = hylo_cpu_workspace(
        ctx, HYLO_CPU_OP, hylo_cpu_gated_delta_rule_need(d, T, scan).floats[HYLO_CPU_OP], err);
    if (!work) return HYLO_ERR_NOMEM;
    /* chunk by chunk, the value heads of a chunk in parallel (its rows of q, k, v stay in
     * cache for all heads) */
    for (int64_t t0 = 0; t0 < T; t0 += C) {
        const int64_t n = T - t0 < C ? T - t0 : C;
#pragma omp parallel for schedule(dynamic, 1)
        for (int64_t hv = 0; hv < Hv; hv++) {
            float *mine = work + omp_get_thread_num() * per_thread;
            chunk_buffers w;
            w.G = mine;
            w.f = w.G + hylo_cpu_round16(C);
            w.A = w.f + hylo_cpu_round16(C);
            w.Tm = w.A + hylo_cpu_round16(C * C);
            w.Tb = w.Tm + hylo_cpu_round16(C * C);
            w.W = w.Tb + hylo_cpu_round16(C * C);
            w.U = w.W + hylo_cpu_round16(C * dk);
            rule_chunk(d, q, k, v, g, beta, S + hv * dk * dv, o, hv, t0, n, C, &w);
        }
    }
    return HYLO_OK;
}
