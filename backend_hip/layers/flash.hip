/* flash.hip: causal attention of a bf16 prefill on the matrix cores (flash attention), the
 * semantics of hylo_hip_attend_args (hip_layers.h): a block holds a tile of query rows, walks
 * the keys in tiles staged in shared memory (double buffered, asynchronous 16-byte copies) and
 * keeps its scores, probabilities and output in registers under an online softmax, so that no
 * score reaches memory. bf16 operands (queries rounded once when staged, probabilities rounded
 * for the value product), fp32 accumulation and fp32 softmax statistics. Built on core/mma.h:
 * on AMD, where that header has no matrix-core primitives (HYLO_MMA 0), the launcher declines
 * and the GEMM path runs. */
#include <math.h>

#include "core/device.h"
#include "core/mma.h"
#include "layers/hip_layers.h"

#if HYLO_MMA

#define FLASH_WARPS 4                 /* warps of a block, 16 query rows each              */
#define FLASH_ROWS (16 * FLASH_WARPS) /* query rows of a block, (position, head) pairs     */
#define FLASH_THREADS (FLASH_WARPS * HYLO_MMA_WARP)
#define FLASH_KEYS 64                 /* keys of a tile                                    */
#define FLASH_HEADS 8                 /* heads of a KV group a block holds, at most        */
#define CHUNK 8                       /* bf16 values of a 16-byte copy                     */
#define ROW_PAD 8                     /* bf16 values after each key, value and query row   */
#define LOG2E 1.4426950408889634      /* e^x = 2^(x log2 e)                                */
#define RAISE_SLACK 8.0f              /* P <= 2^8: a row's reference max may lag its max   */
#define LANE_ROWS HYLO_MMA_LANE_ROWS  /* rows a lane holds values of                       */

/* Shared memory of a block for query and key dims DQ, value dims DV (multiples of 16): key
 * tiles K [2][FLASH_KEYS][kld] and value tiles V [2][FLASH_KEYS][vld] (bf16, one being filled
 * while the other is used; the second key tile holds the block's queries, FLASH_KEYS rows
 * at a time, while they are staged). Rows are padded by 16 bytes so that the 16-byte reads of 8
 * consecutive rows hit distinct banks. */
template <int DQ, int DV>
struct flash_layout {
    static constexpr int kld = DQ + ROW_PAD, vld = DV + ROW_PAD;
    static constexpr int k_tile = FLASH_KEYS * kld, v_tile = FLASH_KEYS * vld; /* bf16 */
    static constexpr size_t bytes = (size_t)2 * (k_tile + v_tile) * sizeof(uint16_t);
    static_assert(FLASH_ROWS % FLASH_KEYS == 0, "the queries are staged a key tile at a time");
};

/* How the blocks split the work (chosen on the host, see hylo_hip_attend_flash). */
typedef struct {
    int64_t heads;  /* query heads of a block: a power of two dividing the group's   */
    int64_t span;   /* query positions of a block: FLASH_ROWS / heads                */
    int64_t slices; /* blocks across the heads: H / heads                            */
    int64_t spans;  /* blocks across the positions: T / span rounded up              */
    float scale2;   /* the softmax scale times log2 e (exponentials in base 2)       */
} flash_plan;

/* One part of the key or value rows: part of position j in group g at base + j row + g head,
 * n values (a multiple of CHUNK; 0: no part). */
typedef struct {
    const uint16_t *base;
    int64_t row, head, n;
} flash_part;

/* A thread's share of staging tiles of group g's rows [x(j) | y(j)], WIDTH columns (zeros
 * past x.n + y.n and past position len - 1): column chunk d .. d + CHUNK - 1 of tile rows
 * jj, jj + rows_per_pass, ... (none when jj >= FLASH_KEYS), read from src + j row at position
 * j (src: the chunk of position 0, in part x or y; any valid address when the chunk lies past
 * both parts). */
template <int WIDTH>
struct flash_stager {
    static constexpr int chunks = WIDTH / CHUNK, rows_per_pass = FLASH_THREADS / chunks;
    const uint16_t *src;
    int64_t row;
    int jj, d;
    bool in_part;

    __device__ flash_stager(const flash_part &x, const flash_part &y, int64_t g)
    {
        d = (int)(threadIdx.x % chunks) * CHUNK;
        jj = threadIdx.x < chunks * rows_per_pass ? (int)(threadIdx.x / chunks) : FLASH_KEYS;
        const bool in_x = d < x.n;
        const int64_t col = in_x ? d : d - x.n;
        in_part = col < (in_x ? x.n : y.n);
        src = !in_part ? x.base : in_x ? x.base + g * x.head + col : y.base + g * y.head + col;
        row = in_x ? x.row : y.row;
    }

    /* Tile rows k0 .. k0 + FLASH_KEYS - 1 into dst [FLASH_KEYS][ld], in flight until waited
     * for. */
    __device__ void copy(uint16_t *dst, int ld, int64_t k0, int64_t len) const
    {
        for (int r = jj; r < FLASH_KEYS; r += rows_per_pass) {
            const int64_t j = k0 + r;
            const bool valid = in_part && j < len;
            hylo_mma_copy16(dst + r * ld + d, valid ? src + j * row : src, valid);
        }
    }
};

/* The warp's 16 query rows (rows r0 .. r0 + 15 of the block: position t0 + r / heads, head
 * h0 + r % heads) rounded to bf16 into Qs [16][ld], DQ columns, zeros past nq and past T. */
template <int DQ>
__device__ inline void stage_queries(uint16_t *Qs, int ld, const hylo_hip_attend_args &a,
                                     const flash_plan &p, int64_t t0, int64_t h0, int r0)
{
    const int64_t nq = a.na + a.nb;
    for (int e = hylo_mma_lane(); e < 16 * DQ; e += HYLO_MMA_WARP) {
        const int rr = e / DQ, d = e % DQ, r = r0 + rr;
        const int64_t t = t0 + r / p.heads, h = h0 + r % p.heads;
        Qs[rr * ld + d] = t < a.T && d < nq ? hylo_bf16_round(a.q[(t * a.H + h) * nq + d]) : 0;
    }
}

/* The online softmax of one tile for the lane's rows (mma.h): s [FLASH_KEYS / 16] the warp's
 * scores S of keys k0 .. k0 + FLASH_KEYS - 1 (unscaled), masked (when `diagonal`) past
 * last[i], the last key the lane's row i sees. With x = scale2 S (base 2), updates each row's
 * reference m (raised to the tile's max only when that exceeds it by more than RAISE_SLACK, so
 * that most tiles keep it) and sum l, turns s into P = 2^(x - m) and leaves 2^(m_old - m_new)
 * in factor; true when some m was raised. A row that has seen no key yet keeps m = -inf,
 * l = 0 and gets P = 0. */
__device__ inline bool softmax_tile(hylo_mma_acc (&s)[FLASH_KEYS / 16], int64_t k0,
                                    const int64_t (&last)[LANE_ROWS], bool diagonal, float scale2,
                                    float (&m)[LANE_ROWS], float (&l)[LANE_ROWS],
                                    float (&factor)[LANE_ROWS])
{
    float mx[LANE_ROWS], base[LANE_ROWS], sum[LANE_ROWS];
#pragma unroll
    for (int i = 0; i < LANE_ROWS; i++) {
        mx[i] = -INFINITY;
        sum[i] = 0.0f;
    }
#pragma unroll
    for (int n = 0; n < FLASH_KEYS / 16; n++)
#pragma unroll
        for (int e = 0; e < HYLO_MMA_VALUES; e++) {
            const int i = hylo_mma_value_row(e);
            if (diagonal && k0 + 16 * n + hylo_mma_value_col(e) > last[i]) s[n].c[e] = -INFINITY;
            mx[i] = fmaxf(mx[i], s[n].c[e]);
        }
    bool raised = false;
#pragma unroll
    for (int i = 0; i < LANE_ROWS; i++) {
        mx[i] = hylo_mma_row_max(mx[i]) * scale2;
        const float m_new = mx[i] > m[i] + RAISE_SLACK ? mx[i] : m[i];
        base[i] = m_new == -INFINITY ? 0.0f : m_new; /* keeps -inf - -inf out */
        factor[i] = hylo_mma_exp2(m[i] - base[i]);
        raised = raised || m_new != m[i];
        m[i] = m_new;
    }
#pragma unroll
    for (int n = 0; n < FLASH_KEYS / 16; n++)
#pragma unroll
        for (int e = 0; e < HYLO_MMA_VALUES; e++) {
            const int i = hylo_mma_value_row(e);
            s[n].c[e] = hylo_mma_exp2(fmaf(s[n].c[e], scale2, -base[i]));
            sum[i] += s[n].c[e];
        }
#pragma unroll
    for (int i = 0; i < LANE_ROWS; i++) l[i] = l[i] * factor[i] + hylo_mma_row_sum(sum[i]);
    return raised;
}

/* Block (head slice, query tile): heads h0 .. h0 + heads - 1 of group g = h0 / (H / Hkv) and
 * positions t0 .. t0 + span - 1, query row r = (position t0 + r / heads, head h0 + r % heads),
 * 16 rows per warp. Shapes: q [T, H, na + nb] fp32, keys [ka(j, g) | kb(j, g)] (na + nb) and
 * values v(j, g) (nv) bf16 (hip_layers.h), out [T, H, nv] fp32; query t (position first + t,
 * first = len - T) sees keys j <= first + t. For each key tile (FLASH_KEYS keys, up to the
 * last key the block's queries see), per warp, with S the scaled scores of its rows:
 *   S_ij = scale q_i . k_j  (masked to -inf past the row's last key)
 *   m' = max(m, max_j S_ij) ;  P_ij = e^(S_ij - m') ;  l = l e^(m - m') + sum_j P_ij
 *   O_i = O_i e^(m - m') + sum_j P_ij v_j                        and finally out_i = O_i / l,
 * except that m' keeps m while max_j S_ij <= m + RAISE_SLACK ln 2 (P <= 2^8; out does not
 * depend on m), which spares most tiles the rescaling of O. Q (bf16) stays in operand
 * registers; S = Q K^T, the softmax and O += P V all stay in registers (S's accumulators
 * become P's operands). A warp skips the tiles past its rows' last key; blocks run the latest
 * (longest) query tiles first. Shared memory: flash_layout. */
template <int DQ, int DV>
__global__ void __launch_bounds__(FLASH_THREADS)
    attend_flash(hylo_hip_attend_args a, flash_plan p)
{
    typedef flash_layout<DQ, DV> L;
    extern __shared__ __align__(128) unsigned char flash_smem[];
    uint16_t *Kt = (uint16_t *)flash_smem, *Vt = Kt + 2 * L::k_tile;
    const int warp = (int)(threadIdx.x / HYLO_MMA_WARP), r0 = 16 * warp;
    const int64_t h0 = blockIdx.x % p.slices * p.heads, g = h0 / (a.H / a.Hkv);
    const int64_t t0 = (p.spans - 1 - blockIdx.x / p.slices) * p.span, first = a.len - a.T;
    const flash_part ka = {(const uint16_t *)a.ka, a.ka_row, a.ka_head, a.na};
    const flash_part kb = {(const uint16_t *)a.kb, a.kb_row, a.kb_head, a.nb};
    const flash_part v = {(const uint16_t *)a.v, a.v_row, a.v_head, a.nv};
    const flash_part none = {0, 0, 0, 0};
    const flash_stager<DQ> keys(ka, kb, g);
    const flash_stager<DV> values(v, none, g);
    keys.copy(Kt, L::kld, 0, a.len);
    values.copy(Vt, L::vld, 0, a.len);
    hylo_mma_commit();

    /* the queries through the second key tile, FLASH_KEYS rows at a time */
    hylo_mma_a q[DQ / 16];
    uint16_t *Qs = Kt + L::k_tile + r0 % FLASH_KEYS * L::kld;
    for (int round = 0; round < FLASH_ROWS / FLASH_KEYS; round++) {
        if (r0 / FLASH_KEYS == round) {
            stage_queries<DQ>(Qs, L::kld, a, p, t0, h0, r0);
            hylo_mma_sync();
#pragma unroll
            for (int k = 0; k < DQ / 16; k++) hylo_mma_load_a(q[k], Qs + 16 * k, L::kld);
        }
        __syncthreads(); /* the tile is free for the next round, or for tile 1's copies */
    }

    hylo_mma_acc o[DV / 16];
#pragma unroll
    for (int n = 0; n < DV / 16; n++) hylo_mma_zero(o[n]);
    float m[LANE_ROWS], l[LANE_ROWS];
    int64_t last[LANE_ROWS]; /* the last key the lane's rows see */
#pragma unroll
    for (int i = 0; i < LANE_ROWS; i++) {
        m[i] = -INFINITY;
        l[i] = 0.0f;
        last[i] = first + t0 + (r0 + hylo_mma_row(i)) / p.heads;
    }
    /* key tiles up to the last key the block's queries see; the last keys the warp's first
     * and last queries see (warp_last -1: the warp has no query) */
    const int64_t t_end = t0 + p.span < a.T ? t0 + p.span : a.T;
    const int64_t tiles = (first + t_end - 1) / FLASH_KEYS + 1;
    const int64_t warp_first = first + t0 + r0 / p.heads, t_warp = t0 + (r0 + 15) / p.heads;
    const int64_t warp_last = warp_first >= first + a.T ? -1
                              : first + (t_warp < t_end ? t_warp : t_end - 1);

    for (int64_t it = 0; it < tiles; it++) {
        const int64_t k0 = it * FLASH_KEYS, buf = it % 2;
        if (it + 1 < tiles) {
            keys.copy(Kt + (1 - buf) * L::k_tile, L::kld, k0 + FLASH_KEYS, a.len);
            values.copy(Vt + (1 - buf) * L::v_tile, L::vld, k0 + FLASH_KEYS, a.len);
        }
        hylo_mma_commit();
        hylo_mma_wait(1); /* this tile's copies are done (the next tile's may be in flight) */
        __syncthreads();
        if (k0 <= warp_last) {
            const uint16_t *K = Kt + buf * L::k_tile, *V = Vt + buf * L::v_tile;
            hylo_mma_acc s[FLASH_KEYS / 16];
#pragma unroll
            for (int n = 0; n < FLASH_KEYS / 16; n++) {
                hylo_mma_zero(s[n]);
#pragma unroll
                for (int k = 0; k < DQ / 16; k++) {
                    hylo_mma_b kf;
                    hylo_mma_load_bt(kf, K + 16 * n * L::kld + 16 * k, L::kld);
                    hylo_mma(s[n], q[k], kf);
                }
            }
            float factor[LANE_ROWS];
            const bool diagonal = k0 + FLASH_KEYS - 1 > warp_first;
            if (hylo_mma_any(softmax_tile(s, k0, last, diagonal, p.scale2, m, l, factor)))
#pragma unroll
                for (int n = 0; n < DV / 16; n++)
#pragma unroll
                    for (int e = 0; e < HYLO_MMA_VALUES; e++)
                        o[n].c[e] *= factor[hylo_mma_value_row(e)];
#pragma unroll
            for (int k = 0; k < FLASH_KEYS / 16; k++) {
                hylo_mma_a pf;
                hylo_mma_a_of(pf, s[k]);
#pragma unroll
                for (int n = 0; n < DV / 16; n++) {
                    hylo_mma_b vf;
                    hylo_mma_load_b(vf, V + 16 * k * L::vld + 16 * n, L::vld);
                    hylo_mma(o[n], pf, vf);
                }
            }
        }
        __syncthreads(); /* the tile's buffers are free for the copies of tile it + 2 */
    }

    /* out = O / l */
#pragma unroll
    for (int n = 0; n < DV / 16; n++)
#pragma unroll
        for (int e = 0; e < HYLO_MMA_VALUES; e++) {
            const int i = hylo_mma_value_row(e), r = r0 + hylo_mma_row(i);
            const int64_t t = t0 + r / p.heads, col = 16 * n + hylo_mma_value_col(e);
            if (t < a.T && col < a.nv)
                a.out[(t * a.H + h0 + r % p.heads) * a.nv + col] = o[n].c[e] / l[i];
        }
}

/* Whether rows of n values, `row` and `head` apart from base, are whole 16-byte chunks on
 * 16-byte boundaries. */
static bool in_chunks(const void *base, int64_t n, int64_t row, int64_t head)
{
    return n % CHUNK == 0 && row % CHUNK == 0 && head % CHUNK == 0 && (uintptr_t)base % 16 == 0;
}

/* The smallest multiple of 64 up to `max` that holds n values, or 0. */
static int padded_dims(int64_t n, int max)
{
    for (int d = 64; d <= max; d += 64)
        if (n <= d) return d;
    return 0;
}

template <int DQ, int DV>
static bool launch_flash(hylo_hip_ctx *ctx, const hylo_hip_attend_args *a, const flash_plan &p)
{
    const size_t shared = flash_layout<DQ, DV>::bytes;
    if (hipFuncSetAttribute((const void *)attend_flash<DQ, DV>,
                            hipFuncAttributeMaxDynamicSharedMemorySize,
                            (int)shared) != hipSuccess) {
        (void)hipGetLastError(); /* a device with less shared memory: the caller's paths run */
        return false;
    }
    const unsigned blocks = (unsigned)(p.slices * p.spans);
    attend_flash<DQ, DV><<<blocks, FLASH_THREADS, shared, hylo_hip_stream(ctx)>>>(*a, p);
    hylo_hip_launched(ctx, "attention (flash)");
    return true;
}

template <int DQ>
static bool launch_flash_dv(hylo_hip_ctx *ctx, const hylo_hip_attend_args *a, const flash_plan &p,
                            int dv)
{
    return dv == 64 ? launch_flash<DQ, 64>(ctx, a, p) : launch_flash<DQ, 128>(ctx, a, p);
}

#endif

bool hylo_hip_attend_flash(hylo_hip_ctx *ctx, const hylo_hip_attend_args *a)
{
#if HYLO_MMA
    const int dq = padded_dims(a->na + a->nb, 192), dv = padded_dims(a->nv, 128);
    if (!a->bf16 || a->T < 1 || dq == 0 || dv == 0 ||
        !in_chunks(a->ka, a->na, a->ka_row, a->ka_head) ||
        (a->nb > 0 && !in_chunks(a->kb, a->nb, a->kb_row, a->kb_head)) ||
        !in_chunks(a->v, a->nv, a->v_row, a->v_head))
        return false;
    const int64_t group = a->H / a->Hkv;
    flash_plan p;
    p.heads = 1;
    while (2 * p.heads <= FLASH_HEADS && group % (2 * p.heads) == 0) p.heads *= 2;
    p.span = FLASH_ROWS / p.heads;
    p.slices = a->H / p.heads;
    p.spans = (a->T + p.span - 1) / p.span;
    p.scale2 = (float)(a->scale * LOG2E);
    return dq == 64    ? launch_flash_dv<64>(ctx, a, p, dv)
           : dq == 128 ? launch_flash_dv<128>(ctx, a, p, dv)
                       : launch_flash_dv<192>(ctx, a, p, dv);
#else
    (void)ctx;
    (void)a;
    return false;
#endif
}
