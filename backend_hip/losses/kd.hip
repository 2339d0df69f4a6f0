/* kd.hip: the logit-free distillation loss (ref/losses/kl_logit_free.c) on the device: KL of
 * softmax(Z_T / tau) || softmax(Z_S / tau) times tau^2, shifted next-token CE, their gradient
 * carried to the student's hidden states and head, from hidden states and LM heads without a
 * [N, V] logit matrix. Per chunk of C rows and vocabulary tile [v0, v0 + n):
 *   pass 1:  Z_S = h_S W_S[tile]^T, Z_T = h_T W_T[tile]^T             GEMMs into [C, n] fp32
 *            per row, online (max, sum of exp) of Z_T / tau, Z_S / tau, and Z_S (rows with a
 *            target), and Z_S[y]: kd_scan_kernel
 *   pass 2:  the same GEMMs again; per row the KL terms (double) and
 *            G = c_kl (p_S - p_T) + c_ce (softmax(Z_S) - onehot(y)): kd_grad_kernel
 *            dL/dh_S[chunk] (+)= G W_S[tile],  dL/dW_S[tile] (+)= G^T h_S[chunk]    GEMMs
 * The constants c_kl = kl_weight tau / den and c_ce = ce_weight / M, the targets and the final
 * reduction are ref's (hylo_kd_plan_make, hylo_kd_row_init, hylo_kd_finish). Row statistics are
 * fp32 (max and sum of exp relative to it, rescaled when the max grows); each p is
 * exp(x - max) / sum, each KL term p_T ((Z_T - Z_S) / tau - (lse_T - lse_S)) with the row
 * constant lse_T - lse_S formed in double; the KL and CE sums are double, added in a fixed
 * order (the result does not depend on the run). Row kernels take one block per row and reduce
 * through shared memory: nothing assumes a warp size. */
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "core/device.h"
#include "losses/hip_losses.h"

extern "C" {
#include "losses/losses.h"
}

#define NORM_BLOCKS 256 /* blocks of the row-norm pass: each keeps the largest of its rows */

/* The rows' state, indexed by the global row r (device arrays [N]). */
typedef struct {
    float *mt, *st;        /* max and sum of exp(Z_T / tau - max) over the tiles seen */
    float *ms, *ss;        /* the same of Z_S / tau                                   */
    float *m1, *s1;        /* the same of Z_S (the CE softmax, tau 1), target rows    */
    float *tl;             /* Z_S[y], target rows                                     */
    double *kl;            /* sum_v p_T (log p_T - log p_S) over the tiles seen       */
    const int32_t *target; /* y_r, or -1                                              */
} kd_rows;

__device__ inline float kd_widen(float v)
{
    return v;
}

__device__ inline float kd_widen(uint16_t v)
{
    return hylo_bf16_widen(v);
}

__device__ inline void kd_put(float *p, float v)
{
    *p = v;
}

__device__ inline void kd_put(uint16_t *p, float v)
{
    *p = hylo_bf16_round(v);
}

/* hylo_block_sum in double. */
__device__ inline double kd_block_sum(double v, double *red)
{
    red[threadIdx.x] = v;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
        __syncthreads();
    }
    const double total = red[0];
    __syncthreads();
    return total;
}

/* (m, s) <- the statistics of the values seen and x: s = sum exp(value - m), m their max. */
__device__ inline void lse_push(float &m, float &s, float x)
{
    if (x > m) {
        s = s * expf(m - x) + 1.0f; /* m = -Inf (nothing yet): s = 0 */
        m = x;
    } else {
        s += expf(x - m);
    }
}

/* (m, s) <- the statistics of the union of (m, s) and (m2, s2); (-Inf, 0) is empty. */
__device__ inline void lse_merge(float &m, float &s, float m2, float s2)
{
    const float mm = fmaxf(m, m2);
    if (mm == -INFINITY) return;
    s = s * expf(m - mm) + s2 * expf(m2 - mm);
    m = mm;
}

/* Every row before its first tile: no statistics, no KL. */
__global__ void kd_init_kernel(kd_rows rows, int64_t N)
{
    for (int64_t r = hylo_first(); r < N; r += hylo_stride()) {
        rows.mt[r] = rows.ms[r] = rows.m1[r] = rows.tl[r] = -INFINITY;
        rows.st[r] = rows.ss[r] = rows.s1[r] = 0.0f;
        rows.kl[r] = 0.0;
    }
}

/* Pass 1, block i = row r0 + i of the chunk over entries v0 .. v0 + n - 1: zs, zt [C, ld]. Each
 * thread keeps the statistics of its entries (j = thread, + blockDim, ...), the block merges
 * them in a tree and thread 0 merges the tile's into the row's. */
__global__ void __launch_bounds__(HYLO_HIP_THREADS)
    kd_scan_kernel(const float *zs, const float *zt, int64_t ld, int64_t n, int64_t v0,
                   int64_t r0, float inv_tau, kd_rows rows)
{
    __shared__ float red[6][HYLO_HIP_THREADS];
    const int64_t r = r0 + blockIdx.x;
    const int32_t y = rows.target[r];
    const float *s = zs + (int64_t)blockIdx.x * ld, *t = zt + (int64_t)blockIdx.x * ld;
    float mt = -INFINITY, st = 0.0f, ms = -INFINITY, ss = 0.0f, m1 = -INFINITY, s1 = 0.0f;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
        const float a = s[j];
        lse_push(mt, st, t[j] * inv_tau);
        lse_push(ms, ss, a * inv_tau);
        if (y >= 0) lse_push(m1, s1, a);
    }
    const unsigned i = threadIdx.x;
    red[0][i] = mt;
    red[1][i] = st;
    red[2][i] = ms;
    red[3][i] = ss;
    red[4][i] = m1;
    red[5][i] = s1;
    __syncthreads();
    for (unsigned k = blockDim.x / 2; k > 0; k >>= 1) {
        if (i < k)
            for (int q = 0; q < 6; q += 2)
                lse_merge(red[q][i], red[q + 1][i], red[q][i + k], red[q + 1][i + k]);
        __syncthreads();
    }
    if (i != 0) return;
    lse_merge(rows.mt[r], rows.st[r], red[0][0], red[1][0]);
    lse_merge(rows.ms[r], rows.ss[r], red[2][0], red[3][0]);
    if (y < 0) return;
    lse_merge(rows.m1[r], rows.s1[r], red[4][0], red[5][0]);
    if (y >= v0 && y < v0 + n) rows.tl[r] = s[y - v0];
}

/* Pass 2, the same blocks over the same entries, the row statistics complete:
 *   p_T = exp(Z_T / tau - mt) / st,  p_S = exp(Z_S / tau - ms) / ss,  p_1 = exp(Z_S - m1) / s1
 *   KL += p_T ((Z_T - Z_S) / tau - dl),   dl = lse_T - lse_S = mt - ms + log(st / ss)
 *   g [C, ld] = c_kl (p_S - p_T) + c_ce (p_1 - [v = y])     (when g is not NULL; g may be zs:
 *   each entry is read by the thread that writes it, before it is written) */
template <typename G>
__global__ void __launch_bounds__(HYLO_HIP_THREADS)
    kd_grad_kernel(const float *zs, const float *zt, int64_t ld, int64_t n, int64_t v0,
                   int64_t r0, float inv_tau, float c_kl, float c_ce, kd_rows rows, G *g)
{
    __shared__ double red[HYLO_HIP_THREADS];
    __shared__ float row[7];
    const int64_t r = r0 + blockIdx.x;
    const int32_t y = rows.target[r];
    if (threadIdx.x == 0) {
        const float mt = rows.mt[r], st = rows.st[r], ms = rows.ms[r], ss = rows.ss[r];
        row[0] = mt;
        row[1] = 1.0f / st;
        row[2] = ms;
        row[3] = 1.0f / ss;
        row[4] = (float)((double)mt - (double)ms + log((double)st / (double)ss));
        row[5] = y >= 0 ? rows.m1[r] : 0.0f;
        row[6] = y >= 0 ? 1.0f / rows.s1[r] : 0.0f;
    }
    __syncthreads();
    const float mt = row[0], inv_st = row[1], ms = row[2], inv_ss = row[3], dl = row[4];
    const float m1 = row[5], inv_s1 = row[6];
    const float *s = zs + (int64_t)blockIdx.x * ld, *t = zt + (int64_t)blockIdx.x * ld;
    G *gr = g ? g + (int64_t)blockIdx.x * ld : NULL;
    double kl = 0.0;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
        const float a = s[j], b = t[j];
        const float pt = expf(b * inv_tau - mt) * inv_st;
        kl += (double)pt * (double)((b - a) * inv_tau - dl);
        if (!gr) continue;
        const float ps = expf(a * inv_tau - ms) * inv_ss;
        float gv = c_kl * (ps - pt);
        if (y >= 0) gv += c_ce * (expf(a - m1) * inv_s1 - (v0 + j == y ? 1.0f : 0.0f));
        kd_put(gr + j, gv);
    }
    kl = kd_block_sum(kl, red);
    if (threadIdx.x == 0) rows.kl[r] += kl;
}

/* sums [2] = sum_r KL_r, sum over target rows of CE_r = m1 + log(s1) - Z_S[y]; one block, each
 * thread's rows in increasing r, then a fixed tree. */
__global__ void __launch_bounds__(HYLO_HIP_THREADS) kd_sums_kernel(kd_rows rows, int64_t N,
                                                                   double *sums)
{
    __shared__ double red[HYLO_HIP_THREADS];
    double kl = 0.0, ce = 0.0;
    for (int64_t r = threadIdx.x; r < N; r += blockDim.x) {
        kl += rows.kl[r];
        if (rows.target[r] >= 0)
            ce += rows.tl[r] == -INFINITY
                      ? INFINITY
                      : (double)rows.m1[r] + log((double)rows.s1[r]) - (double)rows.tl[r];
    }
    kl = kd_block_sum(kl, red);
    ce = kd_block_sum(ce, red);
    if (threadIdx.x == 0) {
        sums[0] = kl;
        sums[1] = ce;
    }
}

/* x [rows, D]: out [NORM_BLOCKS] = per block the largest row norm ||x_r||_2 (double) of its rows
 * (r = block, + NORM_BLOCKS, ...; 0 when it has none), +Inf where a row holds a NaN or Inf. */
template <typename T>
__global__ void __launch_bounds__(HYLO_HIP_THREADS)
    kd_norms_kernel(const T *x, int64_t rows, int64_t D, double *out)
{
    __shared__ double red[HYLO_HIP_THREADS];
    double worst = 0.0;
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        double ss = 0.0;
        for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
            const double v = kd_widen(x[r * D + d]);
            ss += v * v;
        }
        ss = kd_block_sum(ss, red);
        worst = fmax(worst, isfinite(ss) ? sqrt(ss) : INFINITY); /* NaN counts as Inf */
    }
    if (threadIdx.x == 0) out[blockIdx.x] = worst;
}

/* ------------------------------------------------------------------------------------------ */
/* Host side                                                                                   */
/* ------------------------------------------------------------------------------------------ */

static size_t carve(size_t bytes)
{
    return (bytes + 255) / 256 * 256;
}

/* The pointers and size of one side: hidden states, a head the context can read, D >= 1. */
static hylo_status check_side(const hylo_hip_kd_side *s, const char *what, bool bf16,
                              hylo_error *err)
{
    if (!s || !s->hidden || (!s->lm_head && !(bf16 && s->lm_head_bf16)))
        return hylo_error_set(err, HYLO_ERR_USAGE,
                              "%s: hidden states and LM head are required (fp32 lm_head, or "
                              "lm_head_bf16 in a bf16 context)",
                              what);
    if (s->dim < 1)
        return hylo_error_set(err, HYLO_ERR_RANGE, "%s: hidden size D = %lld (must be >= 1)",
                              what, (long long)s->dim);
    return HYLO_OK;
}

/* The GEMMs' operands of one side: hidden [N, D] and head [V, D], fp32 or bf16. */
typedef struct {
    const void *h, *W;
    int64_t D;
} operands;

/* out [NORM_BLOCKS] for x [rows, D] of the context's type. */
static void launch_norms(hylo_hip_ctx *ctx, const void *x, int64_t rows, int64_t D, double *out)
{
    if (!hylo_hip_ok(ctx)) return;
    if (ctx->bf16)
        kd_norms_kernel<uint16_t><<<NORM_BLOCKS, HYLO_HIP_THREADS, 0, hylo_hip_stream(ctx)>>>(
            (const uint16_t *)x, rows, D, out);
    else
        kd_norms_kernel<float><<<NORM_BLOCKS, HYLO_HIP_THREADS, 0, hylo_hip_stream(ctx)>>>(
            (const float *)x, rows, D, out);
    hylo_hip_launched(ctx, "kd row norms");
}

/* ref's hylo_kd_check_sides on the operands the GEMMs read, plus the bound of the fp32 row
 * statistics: |Z| <= max ||h|| max ||W|| (Cauchy-Schwarz), and the kernels form Z / tau and
 * Z_T - Z_S in fp32. */
static hylo_status check_norms(hylo_hip_ctx *ctx, const operands side[2], int64_t N, int64_t V,
                               double inv_tau, double *norms_dev, hylo_error *err)
{
    double blocks[4 * NORM_BLOCKS], worst[4] = {0.0, 0.0, 0.0, 0.0};
    for (int k = 0; k < 2; k++) {
        launch_norms(ctx, side[k].h, N, side[k].D, norms_dev + (2 * k) * NORM_BLOCKS);
        launch_norms(ctx, side[k].W, V, side[k].D, norms_dev + (2 * k + 1) * NORM_BLOCKS);
    }
    if (!hylo_hip_ok(ctx)) return hylo_hip_status(ctx, err);
    hylo_status st = hylo_hip_copy(ctx, blocks, norms_dev, sizeof blocks, HYLO_COPY_TO_HOST, err);
    if (st != HYLO_OK) return st;
    for (int q = 0; q < 4; q++)
        for (int b = 0; b < NORM_BLOCKS; b++) worst[q] = fmax(worst[q], blocks[q * NORM_BLOCKS + b]);
    const char *what[2] = {"student", "teacher"};
    double bound = 0.0;
    for (int k = 0; k < 2; k++) {
        const double h = worst[2 * k], w = worst[2 * k + 1];
        if (!isfinite(h) || !isfinite(w))
            return hylo_error_set(err, HYLO_ERR_NUMERIC, "%s: %s holds a NaN or Inf", what[k],
                                  !isfinite(h) ? "hidden [N, D]" : "lm_head [V, D]");
        if (h * w > FLT_MAX)
            return hylo_error_set(err, HYLO_ERR_NUMERIC,
                                  "%s: logits could overflow fp32 (max ||hidden|| %.3e x max "
                                  "||lm_head row|| %.3e > %.3e)",
                                  what[k], h, w, (double)FLT_MAX);
        bound = fmax(bound, h * w);
    }
    if (2.0 * bound * fmax(1.0, inv_tau) > FLT_MAX)
        return hylo_error_set(err, HYLO_ERR_NUMERIC,
                              "logits bounded by %.3e at 1/tau = %.3e could overflow the fp32 "
                              "statistics of the HIP backend",
                              bound, inv_tau);
    return HYLO_OK;
}

/* z [c, ld] = h[rows] W[tile]^T for both sides. */
static void tile_logits(hylo_hip_ctx *ctx, hylo_dtype type, size_t esz, const operands side[2],
                        int64_t r0, int64_t c, int64_t v0, int64_t n, float *z[2], int64_t ld)
{
    for (int k = 0; k < 2; k++) {
        const int64_t D = side[k].D;
        hylo_hip_gemm(ctx, type, false, true, c, n, D, 1.0f,
                      (const char *)side[k].h + (size_t)(r0 * D) * esz, D,
                      (const char *)side[k].W + (size_t)(v0 * D) * esz, D, 0.0f, z[k], ld);
    }
}

hylo_status hylo_hip_kd_loss_logit_free(void *vctx, const hylo_hip_kd_side *student,
                                        const hylo_hip_kd_side *teacher, const int32_t *labels,
                                        int64_t N, int64_t V, int64_t chunk, int64_t tile,
                                        const hylo_kd_options *opt, hylo_kd_result *out,
                                        float *grad_hidden, float *grad_head, hylo_error *err)
{
    hylo_hip_ctx *ctx = (hylo_hip_ctx *)vctx;
    if (!hylo_hip_ok(ctx)) return hylo_hip_status(ctx, err);
    const bool bf16 = ctx->bf16;
    hylo_kd_plan plan;
    hylo_status st = hylo_kd_plan_make(opt, labels, N, V, &plan, err);
    if (st == HYLO_OK && (chunk < 1 || tile < 1))
        st = hylo_error_set(err, HYLO_ERR_RANGE, "chunk %lld, tile %lld: each must be >= 1",
                            (long long)chunk, (long long)tile);
    if (st == HYLO_OK && !out)
        st = hylo_error_set(err, HYLO_ERR_USAGE, "hylo_hip_kd_loss_logit_free: out is required");
    if (st == HYLO_OK) st = check_side(student, "student", bf16, err);
    if (st == HYLO_OK) st = check_side(teacher, "teacher", bf16, err);
    if (st != HYLO_OK) return st;
    const int64_t C = chunk < N ? chunk : N, ld = tile < V ? tile : V;
    const int64_t Ds = student->dim, Dt = teacher->dim;
    const bool backprop = grad_hidden || grad_head;
    const bool round_ws = bf16 && !student->lm_head_bf16, round_wt = bf16 && !teacher->lm_head_bf16;

    /* LAYER workspace: rows' state, norms, sums, the tiles, the bf16 operands */
    const size_t o_stats = 0, o_kl = o_stats + carve((size_t)(7 * N) * sizeof(float));
    const size_t o_target = o_kl + carve((size_t)N * sizeof(double));
    const size_t o_norms = o_target + carve((size_t)N * sizeof(int32_t));
    const size_t o_sums = o_norms + carve(4 * NORM_BLOCKS * sizeof(double));
    const size_t o_zs = o_sums + carve(2 * sizeof(double));
    const size_t o_zt = o_zs + carve((size_t)(C * ld) * sizeof(float));
    const size_t o_g16 = o_zt + carve((size_t)(C * ld) * sizeof(float));
    const size_t o_hs16 = o_g16 + (bf16 && backprop ? carve((size_t)(C * ld) * sizeof(uint16_t)) : 0);
    const size_t o_ht16 = o_hs16 + (bf16 ? carve((size_t)(N * Ds) * sizeof(uint16_t)) : 0);
    const size_t o_ws16 = o_ht16 + (bf16 ? carve((size_t)(N * Dt) * sizeof(uint16_t)) : 0);
    const size_t o_wt16 = o_ws16 + (round_ws ? carve((size_t)(V * Ds) * sizeof(uint16_t)) : 0);
    const size_t total = o_wt16 + (round_wt ? carve((size_t)(V * Dt) * sizeof(uint16_t)) : 0);
    char *base = (char *)hylo_hip_workspace(ctx, HYLO_HIP_LAYER, total);
    if (!base) return hylo_hip_status(ctx, err);
    float *stats = (float *)(base + o_stats);
    const kd_rows rows = {stats,         stats + N,     stats + 2 * N,
                          stats + 3 * N, stats + 4 * N, stats + 5 * N,
                          stats + 6 * N, (double *)(base + o_kl), (const int32_t *)(base + o_target)};
    double *norms = (double *)(base + o_norms), *sums = (double *)(base + o_sums);
    float *zs = (float *)(base + o_zs), *zt = (float *)(base + o_zt);
    uint16_t *g16 = (uint16_t *)(base + o_g16);

    /* next-token targets, as ref finds them */
    int32_t *targets = (int32_t *)malloc((size_t)N * sizeof(int32_t));
    if (!targets)
        return hylo_error_set(err, HYLO_ERR_NOMEM, "cannot allocate the targets of %lld rows",
                              (long long)N);
    for (int64_t r = 0; r < N; r++) {
        hylo_kd_row row;
        hylo_kd_row_init(&row, &plan, r);
        targets[r] = (int32_t)row.target;
    }
    st = hylo_hip_copy(ctx, base + o_target, targets, (size_t)N * sizeof(int32_t),
                       HYLO_COPY_TO_DEVICE, err);
    free(targets);
    if (st != HYLO_OK) return st;

    /* the operands: fp32 as given, or bf16 (hidden states rounded, heads given or rounded) */
    const hylo_dtype type = bf16 ? HYLO_BF16 : HYLO_F32;
    const size_t esz = bf16 ? sizeof(uint16_t) : sizeof(float);
    operands side[2] = {{student->hidden, student->lm_head, Ds}, {teacher->hidden, teacher->lm_head, Dt}};
    if (bf16) {
        uint16_t *hs16 = (uint16_t *)(base + o_hs16), *ht16 = (uint16_t *)(base + o_ht16);
        hylo_hip_to_bf16(ctx, student->hidden, hs16, N * Ds);
        hylo_hip_to_bf16(ctx, teacher->hidden, ht16, N * Dt);
        side[0].h = hs16;
        side[1].h = ht16;
        side[0].W = student->lm_head_bf16;
        side[1].W = teacher->lm_head_bf16;
        if (round_ws) {
            hylo_hip_to_bf16(ctx, student->lm_head, (uint16_t *)(base + o_ws16), V * Ds);
            side[0].W = base + o_ws16;
        }
        if (round_wt) {
            hylo_hip_to_bf16(ctx, teacher->lm_head, (uint16_t *)(base + o_wt16), V * Dt);
            side[1].W = base + o_wt16;
        }
    }
    st = check_norms(ctx, side, N, V, plan.inv_tau, norms, err);
    if (st != HYLO_OK) return st;

    const hipStream_t stream = hylo_hip_stream(ctx);
    const float inv_tau = (float)plan.inv_tau, c_kl = (float)plan.c_kl, c_ce = (float)plan.c_ce;
    kd_init_kernel<<<hylo_hip_blocks(N), HYLO_HIP_THREADS, 0, stream>>>(rows, N);
    hylo_hip_launched(ctx, "kd init");
    float *z[2] = {zs, zt};
    for (int64_t r0 = 0; r0 < N && hylo_hip_ok(ctx); r0 += C) {
        const int64_t c = N - r0 < C ? N - r0 : C;
        for (int64_t v0 = 0; v0 < V && hylo_hip_ok(ctx); v0 += ld) {
            const int64_t n = V - v0 < ld ? V - v0 : ld;
            tile_logits(ctx, type, esz, side, r0, c, v0, n, z, ld);
            if (!hylo_hip_ok(ctx)) break;
            kd_scan_kernel<<<(unsigned)c, HYLO_HIP_THREADS, 0, stream>>>(zs, zt, ld, n, v0, r0,
                                                                         inv_tau, rows);
            hylo_hip_launched(ctx, "kd scan");
        }
        for (int64_t v0 = 0; v0 < V && hylo_hip_ok(ctx); v0 += ld) {
            const int64_t n = V - v0 < ld ? V - v0 : ld;
            tile_logits(ctx, type, esz, side, r0, c, v0, n, z, ld);
            if (!hylo_hip_ok(ctx)) break;
            const void *G = bf16 ? (const void *)g16 : (const void *)zs;
            if (!backprop)
                kd_grad_kernel<float><<<(unsigned)c, HYLO_HIP_THREADS, 0, stream>>>(
                    zs, zt, ld, n, v0, r0, inv_tau, c_kl, c_ce, rows, (float *)NULL);
            else if (bf16)
                kd_grad_kernel<uint16_t><<<(unsigned)c, HYLO_HIP_THREADS, 0, stream>>>(
                    zs, zt, ld, n, v0, r0, inv_tau, c_kl, c_ce, rows, g16);
            else
                kd_grad_kernel<float><<<(unsigned)c, HYLO_HIP_THREADS, 0, stream>>>(
                    zs, zt, ld, n, v0, r0, inv_tau, c_kl, c_ce, rows, zs);
            if (!hylo_hip_launched(ctx, "kd grad") || !backprop) continue;
            /* dL/dh_S [c, Ds] (+)= G [c, n] W_S[tile] [n, Ds]: the first tile writes */
            if (grad_hidden)
                hylo_hip_gemm(ctx, type, false, false, c, Ds, n, 1.0f, G, ld,
                              (const char *)side[0].W + (size_t)(v0 * Ds) * esz, Ds,
                              v0 == 0 ? 0.0f : 1.0f, grad_hidden + r0 * Ds, Ds);
            /* dL/dW_S[tile] [n, Ds] (+)= G^T [n, c] h_S[chunk] [c, Ds]: the first chunk writes */
            if (grad_head)
                hylo_hip_gemm(ctx, type, true, false, n, Ds, c, 1.0f, G, ld,
                              (const char *)side[0].h + (size_t)(r0 * Ds) * esz, Ds,
                              r0 == 0 ? 0.0f : 1.0f, grad_head + v0 * Ds, Ds);
        }
    }
    if (!hylo_hip_ok(ctx)) return hylo_hip_status(ctx, err);
    kd_sums_kernel<<<1, HYLO_HIP_THREADS, 0, stream>>>(rows, N, sums);
    if (!hylo_hip_launched(ctx, "kd sums")) return hylo_hip_status(ctx, err);
    double host[2];
    st = hylo_hip_copy(ctx, host, sums, sizeof host, HYLO_COPY_TO_HOST, err);
    if (st != HYLO_OK) return st;
    const hylo_kd_sums total_sums = {host[0], host[1]};
    hylo_kd_finish(&plan, &total_sums, out);
    return HYLO_OK;
}
