/* ssd.c: the selective scan of Mamba2 (spec sec. 4), as a token recurrence and in the chunked
 * SSD ("state space duality") form of the Mamba2 paper, in double precision per head. */
#include <math.h>
#include <stdlib.h>

#include "layers/mamba2.h"

/* One head's view of the scan inputs: token t's vectors sit at base + t * stride. */
typedef struct {
    const float *x;   /* [P] at x + t * x_stride  (the head's x block)  */
    const float *B;   /* [N] at B + t * B_stride  (the head's B group)  */
    const float *C;   /* [N] at C + t * C_stride  (the head's C group)  */
    const float *dt;  /* scalar at dt + t * dt_stride                   */
    float *y;         /* [P] at y + t * y_stride                        */
    int64_t x_stride, B_stride, C_stride, dt_stride, y_stride;
    int64_t P, N;
    double A, D;
} ssd_head;

/* Head h reads x block h / (H / x_heads), B group h / (H / b_groups), C group h / (H / c_groups).
 * x [T, x_heads, P], dt [T, H], A [H], B [T, b_groups, N], C [T, c_groups, N], D [H],
 * y [T, H, P]. */
static ssd_head head_view(const hylo_mamba2_dims *d, int64_t h, const float *x, const float *dt,
                          const float *A, const float *B, const float *C, const float *D,
                          float *y)
{
    const int64_t H = d->nheads, P = d->headdim, N = d->d_state;
    ssd_head v;
    v.x = x + (h / (H / d->x_heads)) * P;
    v.B = B + (h / (H / d->b_groups)) * N;
    v.C = C + (h / (H / d->c_groups)) * N;
    v.dt = dt + h;
    v.y = y + h * P;
    v.x_stride = d->x_heads * P;
    v.B_stride = d->b_groups * N;
    v.C_stride = d->c_groups * N;
    v.dt_stride = H;
    v.y_stride = H * P;
    v.P = P;
    v.N = N;
    v.A = A[h];
    v.D = D[h];
    return v;
}

/* S [P, N], in/out. For t = 0 .. T-1:
 *   S <- exp(dt_t A) S + dt_t x_t (x) B_t          (x) the outer product, [P] x [N] -> [P, N]
 *   y_t = S C_t + D x_t                                                                     */
static void scan_recurrent(const ssd_head *hd, double *S, int64_t T)
{
    const int64_t P = hd->P, N = hd->N;
    for (int64_t t = 0; t < T; t++) {
        const float *xt = hd->x + t * hd->x_stride;
        const float *Bt = hd->B + t * hd->B_stride;
        const float *Ct = hd->C + t * hd->C_stride;
        float *yt = hd->y + t * hd->y_stride;
        const double dt = hd->dt[t * hd->dt_stride];
        const double decay = exp(dt * hd->A);
        for (int64_t p = 0; p < P; p++) {
            double *Sp = S + p * N;
            const double dtx = dt * (double)xt[p];
            double acc = hd->D * (double)xt[p];
            for (int64_t n = 0; n < N; n++) {
                Sp[n] = decay * Sp[n] + dtx * (double)Bt[n];
                acc += Sp[n] * (double)Ct[n];
            }
            yt[p] = (float)acc;
        }
    }
}

/* The work buffers of one head's chunked scan, for chunks of at most Q tokens. */
typedef struct {
    double *a;        /* [Q]    cumulative log-decay inside the chunk */
    double *M;        /* [Q, Q] masked, decayed C.B of the chunk      */
    double *Y;        /* [Q, P] output accumulators of the chunk      */
    double *S_chunk;  /* [P, N] the chunk's own final state           */
} ssd_chunk_work;

/* a_i = sum_{j <= i} dt_{t0+j} A, i = 0 .. q-1: the chunk's cumulative log-decay, from which
 * every segment sum is a difference: sum_{j < r <= i} dt_r A = a_i - a_j. */
static void chunk_log_decay(const ssd_head *hd, int64_t t0, int64_t q, double *a)
{
    double acc = 0.0;
    for (int64_t i = 0; i < q; i++) {
        acc += (double)hd->dt[(t0 + i) * hd->dt_stride] * hd->A;
        a[i] = acc;
    }
}

/* Step 1, the diagonal block (the intra-chunk quadratic form, a masked linear attention):
 *   G = C B^T                                   [q, N] x [N, q]
 *   M[i, j] = G[i, j] L[i, j] dt_j,  L[i, j] = exp(a_i - a_j) for j <= i, 0 above
 *   Y = M X                                     [q, q] x [q, P]                             */
static void ssd_diagonal_block(const ssd_head *hd, int64_t t0, int64_t q,
                               const ssd_chunk_work *w)
{
    const int64_t P = hd->P, N = hd->N;
    for (int64_t i = 0; i < q; i++) {
        const float *Ci = hd->C + (t0 + i) * hd->C_stride;
        for (int64_t j = 0; j <= i; j++) {
            const float *Bj = hd->B + (t0 + j) * hd->B_stride;
            double g = 0.0;
            for (int64_t n = 0; n < N; n++) g += (double)Ci[n] * (double)Bj[n];
            w->M[i * q + j] = g * exp(w->a[i] - w->a[j]) * (double)hd->dt[(t0 + j) * hd->dt_stride];
        }
    }
    for (int64_t i = 0; i < q; i++) {
        double *Yi = w->Y + i * P;
        for (int64_t p = 0; p < P; p++) {
            double acc = 0.0;
            for (int64_t j = 0; j <= i; j++)
                acc += w->M[i * q + j] * (double)hd->x[(t0 + j) * hd->x_stride + p];
            Yi[p] = acc;
        }
    }
}

/* Step 2, the chunk's own state (what the chunk adds to a zero state):
 *   S_chunk = sum_j exp(a_last - a_j) dt_j x_j (x) B_j       [P, q] x [q, N]               */
static void ssd_chunk_state(const ssd_head *hd, int64_t t0, int64_t q, const ssd_chunk_work *w)
{
    const int64_t P = hd->P, N = hd->N;
    const double a_last = w->a[q - 1];
    for (int64_t p = 0; p < P; p++) {
        for (int64_t n = 0; n < N; n++) {
            double acc = 0.0;
            for (int64_t j = 0; j < q; j++) {
                double wj = exp(a_last - w->a[j]) * (double)hd->dt[(t0 + j) * hd->dt_stride];
                acc += wj * (double)hd->x[(t0 + j) * hd->x_stride + p] *
                       (double)hd->B[(t0 + j) * hd->B_stride + n];
            }
            w->S_chunk[p * N + n] = acc;
        }
    }
}

/* Step 3, state passing between chunks:  S <- exp(a_last) S + S_chunk.  S [P, N]. */
static void ssd_pass_state(int64_t q, const ssd_chunk_work *w, double *S, int64_t PN)
{
    const double decay = exp(w->a[q - 1]);
    for (int64_t k = 0; k < PN; k++) S[k] = decay * S[k] + w->S_chunk[k];
}

/* Step 4, state to output (the contribution of everything before the chunk):
 *   Y[i] += exp(a_i) S_prev C_i                               [q, N] x [N, P]               */
static void ssd_state_to_output(const ssd_head *hd, int64_t t0, int64_t q, const double *S,
                                const ssd_chunk_work *w)
{
    const int64_t P = hd->P, N = hd->N;
    for (int64_t i = 0; i < q; i++) {
        const float *Ci = hd->C + (t0 + i) * hd->C_stride;
        const double decay = exp(w->a[i]);
        for (int64_t p = 0; p < P; p++) {
            double acc = 0.0;
            for (int64_t n = 0; n < N; n++) acc += S[p * N + n] * (double)Ci[n];
            w->Y[i * P + p] += decay * acc;
        }
    }
}

/* S [P, N], in/out; chunks of `chunk` tokens, the last one possibly shorter. Per chunk, with
 * a_i its cumulative log-decay and S_prev the state entering it:
 *   y_i = sum_{j <= i} (C_i . B_j) exp(a_i - a_j) dt_j x_j      step 1 (diagonal block)
 *       + exp(a_i) S_prev C_i                                   step 4 (state to output)
 *       + D x_i
 *   S   = exp(a_last) S_prev + sum_j exp(a_last - a_j) dt_j x_j (x) B_j    steps 2 and 3
 * The paper computes steps 1, 2 and 4 of all chunks in parallel around a sequential step 3;
 * a chunk only needs the state passed out of the chunk before it, so the reference walks the
 * chunks in order with one running state. */
static void scan_chunked(const ssd_head *hd, double *S, int64_t T, int64_t chunk,
                         const ssd_chunk_work *w)
{
    const int64_t P = hd->P;
    for (int64_t t0 = 0; t0 < T; t0 += chunk) {
        const int64_t q = T - t0 < chunk ? T - t0 : chunk;
        chunk_log_decay(hd, t0, q, w->a);
        ssd_diagonal_block(hd, t0, q, w);
        ssd_state_to_output(hd, t0, q, S, w);
        ssd_chunk_state(hd, t0, q, w);
        ssd_pass_state(q, w, S, P * hd->N);
        for (int64_t i = 0; i < q; i++) {
            const float *xi = hd->x + (t0 + i) * hd->x_stride;
            float *yi = hd->y + (t0 + i) * hd->y_stride;
            for (int64_t p = 0; p < P; p++)
                yi[p] = (float)(w->Y[i * P + p] + hd->D * (double)xi[p]);
        }
    }
}

/* x [T, x_heads, P], dt [T, H], A [H], B [T, b_groups, N], C [T, c_groups, N], D [H],
 * ssm_state [H, P, N] (in/out), y [T, H, P]. Each head runs on one thread in token order, so
 * results do not depend on the thread count. */
hylo_status hylo_ref_ssd_scan(const hylo_mamba2_dims *d, const float *x, const float *dt,
                              const float *A, const float *B, const float *C, const float *D,
                              float *ssm_state, float *y, int64_t T, hylo_scan scan,
                              hylo_error *err)
{
    hylo_status st = hylo_mamba2_check_dims(d, err);
    if (st != HYLO_OK) return st;
    if (T < 0) return hylo_error_set(err, HYLO_ERR_USAGE, "ssd scan: T = %lld", (long long)T);
    if (scan != HYLO_SCAN_CHUNKED && scan != HYLO_SCAN_RECURRENT)
        return hylo_error_set(err, HYLO_ERR_USAGE, "ssd scan: unknown scan form %d", (int)scan);
    if (T == 0) return HYLO_OK;
    const int64_t H = d->nheads, P = d->headdim, N = d->d_state;
    const int64_t Q = scan == HYLO_SCAN_CHUNKED ? (T < d->chunk ? T : d->chunk) : 0;
    /* per head: the running state S [P, N], then the chunk work a [Q], M [Q, Q], Y [Q, P],
     * S_chunk [P, N] (chunked form only) */
    const int64_t per_head = P * N + (Q > 0 ? Q + Q * Q + Q * P + P * N : 0);
    double *work = malloc((size_t)(H * per_head) * sizeof *work);
    if (!work)
        return hylo_error_set(err, HYLO_ERR_NOMEM, "ssd scan: cannot allocate %lld doubles",
                              (long long)(H * per_head));
#pragma omp parallel for schedule(static)
    for (int64_t h = 0; h < H; h++) {
        const ssd_head hd = head_view(d, h, x, dt, A, B, C, D, y);
        double *S = work + h * per_head;
        float *state_h = ssm_state + h * P * N;
        for (int64_t k = 0; k < P * N; k++) S[k] = state_h[k];
        if (scan == HYLO_SCAN_CHUNKED) {
            ssd_chunk_work w;
            w.a = S + P * N;
            w.M = w.a + Q;
            w.Y = w.M + Q * Q;
            w.S_chunk = w.Y + Q * P;
            scan_chunked(&hd, S, T, d->chunk, &w);
        } else {
            scan_recurrent(&hd, S, T);
        }
        for (int64_t k = 0; k < P * N; k++) state_h[k] = (float)S[k];
    }
    free(work);
    return HYLO_OK;
}
