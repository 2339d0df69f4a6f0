/* delta_rule.c: the gated delta rule of Gated DeltaNet (spec sec. 5), token recurrence and
 * chunked WY / UT-transform form, in double. */
#include <math.h>
#include <stdlib.h>

#include "layers/gdn.h"

/* One value head's view of the rule's inputs: value head hv reads q/k head hk. */
typedef struct {
    const float *q, *k, *v, *g, *beta;
    int64_t Hk, Hv, dk, dv, hk, hv;
} rule_head;

static const float *head_q(const rule_head *h, int64_t t)
{
    return h->q + (t * h->Hk + h->hk) * h->dk;
}

static const float *head_k(const rule_head *h, int64_t t)
{
    return h->k + (t * h->Hk + h->hk) * h->dk;
}

static const float *head_v(const rule_head *h, int64_t t)
{
    return h->v + (t * h->Hv + h->hv) * h->dv;
}

static double head_g(const rule_head *h, int64_t t) { return h->g[t * h->Hv + h->hv]; }
static double head_beta(const rule_head *h, int64_t t) { return h->beta[t * h->Hv + h->hv]; }

/* a . b over n floats, double accumulator. */
static double dot(const float *a, const float *b, int64_t n)
{
    double acc = 0.0;
    for (int64_t i = 0; i < n; i++) acc += (double)a[i] * (double)b[i];
    return acc;
}

/* out[e] = sum_d x[d] S[d, e]: x [dk] (float), S [dk, dv], out [dv]. */
static void row_times_state(const float *x, const double *S, double *out, int64_t dk,
                            int64_t dv)
{
    for (int64_t e = 0; e < dv; e++) out[e] = 0.0;
    for (int64_t d = 0; d < dk; d++)
        for (int64_t e = 0; e < dv; e++) out[e] += (double)x[d] * S[d * dv + e];
}

/* ------------------------------------------------------------------------------------------ */
/* Token recurrence                                                                            */
/* ------------------------------------------------------------------------------------------ */

/* S [dk, dv], u [dv] scratch, o [T, Hv, dv]. For t = 0 .. T-1:
 *   S <- exp(g_t) S
 *   u = beta_t (v_t - S^T k_t)
 *   S <- S + k_t u^T
 *   o_t = S^T q_t                                                                          */
static void recurrent_head(const rule_head *h, int64_t T, double *S, double *u, float *o)
{
    const int64_t dk = h->dk, dv = h->dv;
    for (int64_t t = 0; t < T; t++) {
        const float *kt = head_k(h, t), *vt = head_v(h, t);
        /* S <- exp(g_t) S */
        double decay = exp(head_g(h, t));
        for (int64_t i = 0; i < dk * dv; i++) S[i] *= decay;
        /* u = beta_t (v_t - S^T k_t) */
        row_times_state(kt, S, u, dk, dv);
        double beta = head_beta(h, t);
        for (int64_t e = 0; e < dv; e++) u[e] = beta * ((double)vt[e] - u[e]);
        /* S <- S + k_t u^T */
        for (int64_t d = 0; d < dk; d++)
            for (int64_t e = 0; e < dv; e++) S[d * dv + e] += (double)kt[d] * u[e];
        /* o_t = S^T q_t (u is free again and holds it) */
        row_times_state(head_q(h, t), S, u, dk, dv);
        float *ot = o + (t * h->Hv + h->hv) * dv;
        for (int64_t e = 0; e < dv; e++) ot[e] = (float)u[e];
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Chunked WY / UT-transform form                                                              */
/* ------------------------------------------------------------------------------------------ */
/* Within a chunk of n tokens (local index i = 0 .. n-1) starting from state S_0, let
 * G_i = sum_{s <= i} g_s (cumulative log-decay) and write u_i for the recurrence's u at token
 * i. Unrolling the recurrence gives, by induction on i,
 *   S_i = exp(G_i) S_0 + sum_{j <= i} exp(G_i - G_j) k_j u_j^T                          (1)
 * The decayed state that token i reads before its own write is exp(g_i) S_{i-1}
 *   = exp(G_i) S_0 + sum_{j < i} exp(G_i - G_j) k_j u_j^T, so
 *   u_i = beta_i v_i - beta_i exp(G_i) S_0^T k_i
 *         - sum_{j < i} beta_i (k_i . k_j) exp(G_i - G_j) u_j
 * i.e. with the strictly lower n x n matrix A_ij = beta_i (k_i . k_j) exp(G_i - G_j), j < i,
 * and rows of U~ = [u_i], V = [v_i], K = [k_i]:
 *   (I + A) U~ = diag(beta) V - diag(beta exp(G)) K S_0
 * With T = (I + A)^-1 (unit lower triangular, by forward substitution) this is the WY form
 *   U~ = U - W S_0 ,  U = T diag(beta) V ,  W = T diag(beta exp(G)) K                     (2)
 * where U and W do not depend on S_0. Then o_i = S_i^T q_i and (1) give
 *   o_i = exp(G_i) S_0^T q_i + sum_{j <= i} (q_i . k_j) exp(G_i - G_j) u_j                 (3)
 *   S_n-1 = exp(G_n-1) S_0 + sum_j exp(G_n-1 - G_j) k_j u_j^T                              (4)
 * With g <= 0 every exponent above is <= 0; exp(G_i - G_j) is only formed for j <= i. */

/* Scratch of one head's chunked scan, C = chunk length. */
typedef struct {
    double *G;    /* [C]      cumulative log-decays   */
    double *A;    /* [C, C]   strictly lower A        */
    double *Tm;   /* [C, C]   T = (I + A)^-1           */
    double *W;    /* [C, dk]                           */
    double *U;    /* [C, dv]  U, then U~ = U - W S_0   */
    double *P;    /* [C]      one row of (3)'s masked scores, or (4)'s decays */
} chunk_work;

static size_t chunk_work_doubles(int64_t C, int64_t dk, int64_t dv)
{
    return (size_t)(2 * C + 2 * C * C + C * dk + C * dv);
}

static chunk_work chunk_work_at(double *base, int64_t C, int64_t dk, int64_t dv)
{
    chunk_work w;
    w.G = base;
    w.A = w.G + C;
    w.Tm = w.A + C * C;
    w.W = w.Tm + C * C;
    w.U = w.W + C * dk;
    w.P = w.U + C * dv;
    return w;
}

/* G_i = sum_{s <= i} g_{t0 + s}, i = 0 .. n-1. */
static void chunk_decays(const rule_head *h, int64_t t0, int64_t n, double *G)
{
    double acc = 0.0;
    for (int64_t i = 0; i < n; i++) {
        acc += head_g(h, t0 + i);
        G[i] = acc;
    }
}

/* A_ij = beta_i (k_i . k_j) exp(G_i - G_j) for j < i (0 elsewhere), then T = (I + A)^-1 by
 * forward substitution on (I + A) T = I, row by row:
 *   T_ii = 1 ;  T_ij = - sum_{m=j}^{i-1} A_im T_mj  (j < i) ;  T_ij = 0  (j > i)           */
static void chunk_ut_transform(const rule_head *h, int64_t t0, int64_t n, int64_t C,
                               const double *G, double *A, double *Tm)
{
    for (int64_t i = 0; i < n; i++) {
        double beta = head_beta(h, t0 + i);
        for (int64_t j = 0; j < n; j++)
            A[i * C + j] = j < i ? beta * dot(head_k(h, t0 + i), head_k(h, t0 + j), h->dk) *
                                       exp(G[i] - G[j])
                                 : 0.0;
    }
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < i; j++) {
            double acc = 0.0;
            for (int64_t m = j; m < i; m++) acc -= A[i * C + m] * Tm[m * C + j];
            Tm[i * C + j] = acc;
        }
        Tm[i * C + i] = 1.0;
        for (int64_t j = i + 1; j < n; j++) Tm[i * C + j] = 0.0;
    }
}

/* Equation (2) without S_0:
 *   W_i = sum_{j <= i} T_ij beta_j exp(G_j) k_j ;  U_i = sum_{j <= i} T_ij beta_j v_j       */
static void chunk_wy(const rule_head *h, int64_t t0, int64_t n, int64_t C, const double *G,
                     const double *Tm, double *W, double *U)
{
    const int64_t dk = h->dk, dv = h->dv;
    for (int64_t i = 0; i < n; i++) {
        double *Wi = W + i * dk, *Ui = U + i * dv;
        for (int64_t d = 0; d < dk; d++) Wi[d] = 0.0;
        for (int64_t e = 0; e < dv; e++) Ui[e] = 0.0;
        for (int64_t j = 0; j <= i; j++) {
            double tb = Tm[i * C + j] * head_beta(h, t0 + j);
            double tbg = tb * exp(G[j]);
            const float *kj = head_k(h, t0 + j), *vj = head_v(h, t0 + j);
            for (int64_t d = 0; d < dk; d++) Wi[d] += tbg * (double)kj[d];
            for (int64_t e = 0; e < dv; e++) Ui[e] += tb * (double)vj[e];
        }
    }
}

/* U~_i = U_i - W_i S_0 (in place), i = 0 .. n-1; W [n, dk], S_0 [dk, dv], U [n, dv]. */
static void chunk_correct(int64_t n, int64_t dk, int64_t dv, const double *W, const double *S,
                          double *U)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t e = 0; e < dv; e++) {
            double acc = U[i * dv + e];
            for (int64_t d = 0; d < dk; d++) acc -= W[i * dk + d] * S[d * dv + e];
            U[i * dv + e] = acc;
        }
}

/* Equation (3), with the masked scores P_j = (q_i . k_j) exp(G_i - G_j), j <= i:
 *   o_i = exp(G_i) S_0^T q_i + sum_{j <= i} P_j U~_j                                       */
static void chunk_output(const rule_head *h, int64_t t0, int64_t n, const double *G,
                         const double *S, const double *U, double *P, float *o)
{
    const int64_t dk = h->dk, dv = h->dv;
    for (int64_t i = 0; i < n; i++) {
        const float *qi = head_q(h, t0 + i);
        for (int64_t j = 0; j <= i; j++)
            P[j] = dot(qi, head_k(h, t0 + j), dk) * exp(G[i] - G[j]);
        float *oi = o + ((t0 + i) * h->Hv + h->hv) * dv;
        double decay = exp(G[i]);
        for (int64_t e = 0; e < dv; e++) {
            double acc = 0.0;
            for (int64_t d = 0; d < dk; d++) acc += (double)qi[d] * S[d * dv + e];
            acc *= decay;
            for (int64_t j = 0; j <= i; j++) acc += P[j] * U[j * dv + e];
            oi[e] = (float)acc;
        }
    }
}

/* Equation (4), with the decays P_j = exp(G_n-1 - G_j):
 *   S <- exp(G_n-1) S + sum_j P_j k_j U~_j^T                                                */
static void chunk_state(const rule_head *h, int64_t t0, int64_t n, const double *G, double *S,
                        const double *U, double *P)
{
    const int64_t dk = h->dk, dv = h->dv;
    const double last = G[n - 1];
    for (int64_t j = 0; j < n; j++) P[j] = exp(last - G[j]);
    for (int64_t i = 0; i < dk * dv; i++) S[i] *= exp(last);
    for (int64_t j = 0; j < n; j++) {
        const float *kj = head_k(h, t0 + j);
        for (int64_t d = 0; d < dk; d++)
            for (int64_t e = 0; e < dv; e++)
                S[d * dv + e] += P[j] * (double)kj[d] * U[j * dv + e];
    }
}

/* S [dk, dv], scratch for chunks of C tokens, o [T, Hv, dv]: equations (2)-(4) chunk by
 * chunk, the state passed from each chunk to the next. */
static void chunked_head(const rule_head *h, int64_t T, int64_t C, double *S, chunk_work *w,
                         float *o)
{
    for (int64_t t0 = 0; t0 < T; t0 += C) {
        int64_t n = T - t0 < C ? T - t0 : C;
        chunk_decays(h, t0, n, w->G);
        chunk_ut_transform(h, t0, n, C, w->G, w->A, w->Tm);
        chunk_wy(h, t0, n, C, w->G, w->Tm, w->W, w->U);
        chunk_correct(n, h->dk, h->dv, w->W, S, w->U);
        chunk_output(h, t0, n, w->G, S, w->U, w->P, o);
        chunk_state(h, t0, n, w->G, S, w->U, w->P);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Entry point                                                                                 */
/* ------------------------------------------------------------------------------------------ */

/* The head sizes must be positive with Hv a multiple of Hk; the chunked form needs C >= 1. */
hylo_status hylo_ref_gated_delta_rule_check(const hylo_gdn_dims *d, hylo_scan scan,
                                            hylo_error *err)
{
    if (d->k_heads < 1 || d->v_heads < 1 || d->head_k < 1 || d->head_v < 1)
        return hylo_error_set(err, HYLO_ERR_USAGE,
                              "gated delta rule: H_k %lld, H_v %lld, dk %lld, dv %lld: expected "
                              "positive sizes",
                              (long long)d->k_heads, (long long)d->v_heads,
                              (long long)d->head_k, (long long)d->head_v);
    if (d->v_heads % d->k_heads != 0)
        return hylo_error_set(err, HYLO_ERR_USAGE,
                              "gated delta rule: H_v %lld is not a multiple of H_k %lld",
                              (long long)d->v_heads, (long long)d->k_heads);
    if (scan == HYLO_SCAN_CHUNKED && d->chunk < 1)
        return hylo_error_set(err, HYLO_ERR_USAGE, "gated delta rule: chunk %lld < 1",
                              (long long)d->chunk);
    return HYLO_OK;
}

/* q, k [T, Hk, dk], v [T, Hv, dv], g, beta [T, Hv], S [Hv, dk, dv] (in/out), o [T, Hv, dv].
 * Each value head runs on one thread with its own double copy of its state. The only failure
 * (allocation) comes before anything is written, so a failed call leaves S and o untouched. */
hylo_status hylo_ref_gated_delta_rule(const hylo_gdn_dims *d, const float *q, const float *k,
                                      const float *v, const float *g, const float *beta,
                                      float *S, float *o, int64_t T, hylo_scan scan,
                                      hylo_error *err)
{
    if (T < 0)
        return hylo_error_set(err, HYLO_ERR_USAGE, "gated delta rule: T %lld < 0", (long long)T);
    hylo_status st = hylo_ref_gated_delta_rule_check(d, scan, err);
    if (st != HYLO_OK || T == 0) return st;
    const int64_t Hk = d->k_heads, Hv = d->v_heads, dk = d->head_k, dv = d->head_v;
    const int64_t C = d->chunk < T ? d->chunk : T;
    /* per head: the state, then the recurrence's u [dv] or the chunk scratch */
    const size_t state_n = (size_t)(dk * dv);
    const size_t per_head = state_n + (scan == HYLO_SCAN_CHUNKED
                                           ? chunk_work_doubles(C, dk, dv)
                                           : (size_t)dv);
    double *work = malloc((size_t)Hv * per_head * sizeof *work);
    if (!work)
        return hylo_error_set(err, HYLO_ERR_NOMEM,
                              "gated delta rule: cannot allocate %lld x %zu doubles",
                              (long long)Hv, per_head);
#pragma omp parallel for schedule(dynamic)
    for (int64_t hv = 0; hv < Hv; hv++) {
        rule_head h = {q, k, v, g, beta, Hk, Hv, dk, dv, hv / (Hv / Hk), hv};
        double *Sd = work + (size_t)hv * per_head, *scratch = Sd + state_n;
        float *Sh = S + (size_t)hv * state_n;
        for (size_t i = 0; i < state_n; i++) Sd[i] = Sh[i];
        if (scan == HYLO_SCAN_CHUNKED) {
            chunk_work w = chunk_work_at(scratch, C, dk, dv);
            chunked_head(&h, T, C, Sd, &w, o);
        } else {
            recurrent_head(&h, T, Sd, scratch, o);
        }
        for (size_t i = 0; i < state_n; i++) Sh[i] = (float)Sd[i];
    }
    free(work);
    return HYLO_OK;
}
