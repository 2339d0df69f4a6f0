/* ssd.c: the selective scan of Mamba2 for the CPU backend: the chunked SSD form with its inner
 * products as GEMMs, heads in parallel, and the token recurrence on the fp32 state. */
#include <math.h>
#include <omp.h>

#include "cpu_layers.h"

/* One head's view: token t's vectors at base + t * stride (the reference's ssd_head). */
typedef struct {
    const float *x, *B, *C, *dt;
    float *y;
    int64_t x_stride, B_stride, C_stride, dt_stride, y_stride;
    int64_t P, N;
    float A, D;
} ssd_head;

static ssd_head head_view(const hylo_mamba2_dims *d, int64_t h, const float *x, const float *dt,
                          const float *A, const float *B, const float *C, const float *D,
                          float *y)
{
    const int64_t H = d->nheads, P = d->headdim, N = d->d_state;
    return (ssd_head){x + (h / (H / d->x_heads)) * P,
                      B + (h / (H / d->b_groups)) * N,
                      C + (h / (H / d->c_groups)) * N,
                      dt + h,
                      y + h * P,
                      d->x_heads * P,
                      d->b_groups * N,
                      d->c_groups * N,
                      H,
                      H * P,
                      P,
                      N,
                      A[h],
                      D[h]};
}

/* S [P, N] in place. For each token:
 *   S <- e^(dt A) S + dt x (x) B ;  y = S C + D x                                           */
HYLO_CPU_CLONES
static void scan_recurrent(const ssd_head *hd, float *S, int64_t T)
{
    const int64_t P = hd->P, N = hd->N;
    for (int64_t t = 0; t < T; t++) {
        const float *xt = hd->x + t * hd->x_stride, *Bt = hd->B + t * hd->B_stride;
        const float *Ct = hd->C + t * hd->C_stride;
        const float dt = hd->dt[t * hd->dt_stride], decay = expf(dt * hd->A);
        for (int64_t p = 0; p < P; p++) {
            float *Sp = S + p * N;
            const float dtx = dt * xt[p];
            float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
            for (int64_t n = 0; n < N; n++) {
                Sp[n] = decay * Sp[n] + dtx * Bt[n];
                acc += Sp[n] * Ct[n];
            }
            hd->y[t * hd->y_stride + p] = acc + hd->D * xt[p];
        }
    }
}

/* Per-thread buffers of the chunked scan, chunks of at most Q tokens. */
typedef struct {
    float *a;   /* [Q]    cumulative log-decay                   */
    float *M;   /* [Q, Q] C B^T, masked and decayed               */
    float *Y;   /* [Q, P] chunk output                            */
    float *Xw;  /* [Q, P] e^(a_last - a_j) dt_j x_j               */
    float *Cw;  /* [Q, N] e^(a_i) C_i                             */
} chunk_buffers;

static int64_t chunk_floats(int64_t Q, int64_t P, int64_t N)
{
    return hylo_cpu_round16(Q) + hylo_cpu_round16(Q * Q) + 2 * hylo_cpu_round16(Q * P) +
           hylo_cpu_round16(Q * N);
}

/* row [i + 1] <- row_j e^(a_i - a_j) dt_j for j <= i; the rest of the row [q] is zeroed. */
HYLO_CPU_CLONES
static void decay_row(float *row, float a_i, const float *a, const float *dt, int64_t dt_stride,
                      int64_t i, int64_t q)
{
#pragma omp simd
    for (int64_t j = 0; j <= i; j++) row[j] *= hylo_cpu_expf(a_i - a[j]) * dt[j * dt_stride];
    for (int64_t j = i + 1; j < q; j++) row[j] = 0.0f;
}

/* One chunk of q tokens from t0, S [P, N] the state entering it (updated). With a_i the
 * cumulative log-decay:
 *   M = (C B^T) o L,  L[i, j] = e^(a_i - a_j) dt_j (j <= i)      GEMM [q, N] x [N, q]
 *   Y = M X + diag(e^a) C S^T                                    GEMMs [q, q] x [q, P], [q, N] x [N, P]
 *   S <- e^(a_last) S + (diag(e^(a_last - a) dt) X)^T B           GEMM [P, q] x [q, N]
 *   y = Y + D x                                                                             */
static void scan_chunk(const ssd_head *hd, int64_t t0, int64_t q, int64_t Q, float *S,
                       const chunk_buffers *w)
{
    const int64_t P = hd->P, N = hd->N;
    const float *x = hd->x + t0 * hd->x_stride, *B = hd->B + t0 * hd->B_stride;
    const float *C = hd->C + t0 * hd->C_stride, *dt = hd->dt + t0 * hd->dt_stride;
    double acc = 0.0;
    for (int64_t i = 0; i < q; i++) {
        acc += (double)dt[i * hd->dt_stride] * hd->A;
        w->a[i] = (float)acc;
    }
    const float a_last = w->a[q - 1];
    hylo_cpu_gemm(false, true, q, q, N, 1.0f, C, hd->C_stride, B, hd->B_stride, 0.0f, w->M, Q);
    for (int64_t i = 0; i < q; i++)
        decay_row(w->M + i * Q, w->a[i], w->a, dt, hd->dt_stride, i, q);
    hylo_cpu_gemm(false, false, q, P, q, 1.0f, w->M, Q, x, hd->x_stride, 0.0f, w->Y, P);
    for (int64_t i = 0; i < q; i++) {
        const float *Ci = C + i * hd->C_stride;
        const float e = hylo_cpu_expf(w->a[i]);
        for (int64_t n = 0; n < N; n++) w->Cw[i * N + n] = e * Ci[n];
        const float s = hylo_cpu_expf(a_last - w->a[i]) * dt[i * hd->dt_stride];
        const float *xi = x + i * hd->x_stride;
        for (int64_t p = 0; p < P; p++) w->Xw[i * P + p] = s * xi[p];
    }
    hylo_cpu_gemm(false, true, q, P, N, 1.0f, w->Cw, N, S, N, 1.0f, w->Y, P);
    hylo_cpu_gemm(true, false, P, N, q, 1.0f, w->Xw, P, B, hd->B_stride, hylo_cpu_expf(a_last), S, N);
    for (int64_t i = 0; i < q; i++) {
        float *yi = hd->y + (t0 + i) * hd->y_stride;
        const float *xi = x + i * hd->x_stride;
        for (int64_t p = 0; p < P; p++) yi[p] = w->Y[i * P + p] + hd->D * xi[p];
    }
}

hylo_cpu_need hylo_cpu_ssd_scan_need(const hylo_mamba2_dims *d, int64_t T, hylo_scan scan)
{
    const int64_t Q = T < d->chunk ? T : d->chunk;
    hylo_cpu_need need = {{0, scan == HYLO_SCAN_CHUNKED
                                  ? hylo_cpu_threads() * chunk_floats(Q, d->headdim, d->d_state)
                                  : 0}};
    return need;
}

/* x [T, x_heads, P], dt [T, H], A [H], B [T, b_groups, N], C [T, c_groups, N], D [H],
 * ssm_state [H, P, N] (in/out), y [T, H, P]. Heads in parallel; the state is updated in place
 * (the only failure, a workspace allocation, comes before any write). */
hylo_status hylo_cpu_ssd_scan(void *ctx, const hylo_mamba2_dims *d, const float *x,
                              const float *dt, const float *A, const float *B, const float *C,
                              const float *D, float *ssm_state, float *y, int64_t T,
                              hylo_scan scan, hylo_error *err)
{
    hylo_status st = hylo_mamba2_check_dims(d, err);
    if (st != HYLO_OK) return st;
    if (T < 0 || (scan != HYLO_SCAN_CHUNKED && scan != HYLO_SCAN_RECURRENT))
        return hylo_error_set(err, HYLO_ERR_USAGE, "ssd scan: T = %lld, scan form %d",
                              (long long)T, (int)scan);
    if (T == 0) return HYLO_OK;
    const int64_t H = d->nheads, P = d->headdim, N = d->d_state;
    const int64_t Q = T < d->chunk ? T : d->chunk, per_thread = chunk_floats(Q, P, N);
    float *work = NULL;
    if (scan == HYLO_SCAN_CHUNKED) {
        work = hylo_cpu_workspace(ctx, HYLO_CPU_OP,
                                  hylo_cpu_ssd_scan_need(d, T, scan).floats[HYLO_CPU_OP], err);
        if (!work) return HYLO_ERR_NOMEM;
    }
    if (scan == HYLO_SCAN_RECURRENT) {
#pragma omp parallel for schedule(static) if (T * H * P * N >= 65536)
        for (int64_t h = 0; h < H; h++) {
            const ssd_head hd = head_view(d, h, x, dt, A, B, C, D, y);
            scan_recurrent(&hd, ssm_state + h * P * N, T);
        }
        return HYLO_OK;
    }
    /* chunk by chunk, the heads of a chunk in parallel: the chunk's rows of x, B and C stay in
     * cache while every head reads its slice of them (head by head over the whole sequence,
     * those slices would be fetched from memory once per head when T is long) */
    for (int64_t t0 = 0; t0 < T; t0 += Q) {
        const int64_t q = T - t0 < Q ? T - t0 : Q;
#pragma omp parallel for schedule(dynamic, 1)
        for (int64_t h = 0; h < H; h++) {
            const ssd_head hd = head_view(d, h, x, dt, A, B, C, D, y);
            float *mine = work + omp_get_thread_num() * per_thread;
            chunk_buffers w;
            w.a = mine;
            w.M = w.a + hylo_cpu_round16(Q);
            w.Y = w.M + hylo_cpu_round16(Q * Q);
            w.Xw = w.Y + hylo_cpu_round16(Q * P);
            w.Cw = w.Xw + hylo_cpu_round16(Q * P);
            scan_chunk(&hd, t0, q, Q, ssm_state + h * P * N, &w);
        }
    }
    return HYLO_OK;
}
