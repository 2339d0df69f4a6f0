/* attention.c: tiled causal attention with online softmax for the CPU backend (GQA of the
 * teacher; MLA reuses the core with a second, positional key part). */
#include <math.h>
#include <omp.h>

#include "cpu_layers.h"

#define ROWS_PER_TASK 64 /* query rows (token, head) gathered into one block          */
#define KEY_TILE 256     /* keys per tile: the tile's keys and values stay in L2       */
#define MIN_SPLIT 2048   /* keys per split at least                                   */

/* How the work is cut into tasks: all the heads of one group for a block of `tokens`
 * consecutive tokens, over a range of keys. The key range is split when groups and token
 * blocks give fewer tasks than threads (a decode step of few groups: MLA's absorbed form has
 * one): each split keeps its own running max, sum and output, merged at the end
 * (flash-decoding), so every thread streams its own part of the cache. */
typedef struct {
    int64_t groups, tokens, token_blocks, splits, count, rows, keys;
} task_plan;

static task_plan plan_tasks(const hylo_cpu_attention *p, int threads)
{
    task_plan s;
    s.groups = p->H / p->group;
    s.tokens = ROWS_PER_TASK / p->group > 0 ? ROWS_PER_TASK / p->group : 1;
    s.tokens = s.tokens < p->T ? s.tokens : p->T;
    s.token_blocks = (p->T + s.tokens - 1) / s.tokens;
    s.rows = s.tokens * p->group;
    s.keys = p->pos0 + p->T;
    const int64_t blocks = s.groups * s.token_blocks;
    s.splits = blocks < threads ? (threads + blocks - 1) / blocks : 1;
    if (s.splits > 1 && s.keys / s.splits < MIN_SPLIT) s.splits = s.keys / MIN_SPLIT > 1 ? s.keys / MIN_SPLIT : 1;
    s.count = blocks * s.splits;
    return s;
}

/* Per thread: Qa [rows, n_a], Qpe [rows, n_pe], S [rows, KEY_TILE], O [rows, n_val], and the
 * running max m and sum l [rows]. */
static int64_t task_floats(const hylo_cpu_attention *p, const task_plan *s)
{
    return hylo_cpu_round16(s->rows * (p->n_a + p->n_pe + KEY_TILE + p->n_val + 2));
}

/* With splits: every task's O, m, l [rows, n_val + 2], merged after the tasks. */
static int64_t partial_floats(const hylo_cpu_attention *p, const task_plan *s)
{
    return s->splits > 1 ? s->count * s->rows * (p->n_val + 2) : 0;
}

hylo_cpu_need hylo_cpu_attend_need(const hylo_cpu_attention *p)
{
    const int threads = hylo_cpu_threads();
    const task_plan s = plan_tasks(p, threads);
    hylo_cpu_need need = {{0, threads * task_floats(p, &s) + partial_floats(p, &s)}};
    return need;
}

typedef struct {
    float *qa, *qpe, *S, *O, *m, *l;
} task_buffers;

/* Rows r = (t - t0) * nh + (h - h0) for heads h0 .. h0+nh-1 (absolute head indices):
 * Qa, Qpe <- the query parts; m = -inf, l = 0, O = 0. */
static void gather_queries(const hylo_cpu_attention *p, int64_t t0, int64_t nt, int64_t h0,
                           int64_t nh, const task_buffers *b)
{
    for (int64_t t = 0; t < nt; t++)
        for (int64_t h = 0; h < nh; h++) {
            const int64_t r = t * nh + h;
            memcpy(b->qa + r * p->n_a,
                   p->qa.base + (t0 + t) * p->qa.t_stride + (h0 + h) * p->qa.h_stride,
                   (size_t)p->n_a * sizeof(float));
            if (p->n_pe > 0)
                memcpy(b->qpe + r * p->n_pe,
                       p->qpe.base + (t0 + t) * p->qpe.t_stride + (h0 + h) * p->qpe.h_stride,
                       (size_t)p->n_pe * sizeof(float));
            b->m[r] = -INFINITY;
            b->l[r] = 0.0f;
        }
    memset(b->O, 0, (size_t)(nt * nh * p->n_val) * sizeof(float));
}

/* Online softmax of one tile for row r, whose first `visible` of nk scores count (the others
 * lie beyond its position): with m' = max(m, max_j s_j),
 *   p_j = e^(s_j - m') (0 for hidden keys) ;  l <- l e^(m - m') + sum_j p_j ;  O <- O e^(m - m')
 * and the caller adds P V to O. */
static void softmax_tile_row(float *s, int64_t nk, int64_t visible, float *m, float *l, float *O,
                             int64_t n_val)
{
    if (visible <= 0) {
        memset(s, 0, (size_t)nk * sizeof *s);
        return;
    }
    const float tile_max = hylo_cpu_max(s, visible);
    const float m_new = tile_max > *m ? tile_max : *m;
    const float alpha = *m == -INFINITY ? 0.0f : hylo_cpu_expf(*m - m_new);
    const float sum = hylo_cpu_exp_shift_sum(s, m_new, visible);
    if (visible < nk) memset(s + visible, 0, (size_t)(nk - visible) * sizeof *s);
    if (alpha != 1.0f) hylo_cpu_scale(O, alpha, n_val);
    *l = *l * alpha + sum;
    *m = m_new;
}

/* One task: tokens t0 .. t0+nt-1, every head of group g (rows r = t * group + h), keys
 * [j_begin, j_end) in tiles. For each tile j0 (GEMMs even for a decode step's few rows: they
 * beat vector loops, whose dot products each end in a horizontal sum):
 *   S = scale (Qa Ka[j0:]^T + Qpe Kpe[j0:]^T)     [rows, nk]
 *   online softmax of each row over its visible keys (j <= pos0 + t)
 *   O += P V[j0:]                                [rows, n_val]
 * Leaves O, m, l in b (unnormalized). */
static void run_task(const hylo_cpu_attention *p, int64_t g, int64_t t0, int64_t nt,
                     int64_t j_begin, int64_t j_end, const task_buffers *b)
{
    const int64_t nh = p->group, rows = nt * nh;
    const float *ka = p->ka.base + g * p->ka.g_stride;
    const float *kpe = p->n_pe > 0 ? p->kpe.base + g * p->kpe.g_stride : NULL;
    const float *val = p->val.base + g * p->val.g_stride;
    const int64_t last = p->pos0 + t0 + nt - 1; /* the last key any row sees */
    gather_queries(p, t0, nt, g * p->group, nh, b);
    for (int64_t j0 = j_begin; j0 < j_end && j0 <= last; j0 += KEY_TILE) {
        int64_t nk = (j_end < last + 1 ? j_end : last + 1) - j0;
        nk = nk < KEY_TILE ? nk : KEY_TILE;
        hylo_cpu_gemm(false, true, rows, nk, p->n_a, p->scale, b->qa, p->n_a,
                      ka + j0 * p->ka.j_stride, p->ka.j_stride, 0.0f, b->S, KEY_TILE);
        if (kpe)
            hylo_cpu_gemm(false, true, rows, nk, p->n_pe, p->scale, b->qpe, p->n_pe,
                          kpe + j0 * p->kpe.j_stride, p->kpe.j_stride, 1.0f, b->S, KEY_TILE);
        for (int64_t r = 0; r < rows; r++) {
            const int64_t visible = p->pos0 + t0 + r / nh - j0 + 1;
            softmax_tile_row(b->S + r * KEY_TILE, nk, visible < nk ? visible : nk, &b->m[r],
                             &b->l[r], b->O + r * p->n_val, p->n_val);
        }
        hylo_cpu_gemm(false, false, rows, p->n_val, nk, 1.0f, b->S, KEY_TILE,
                      val + j0 * p->val.j_stride, p->val.j_stride, 1.0f, b->O, p->n_val);
    }
}

/* out row (t, h) = O / l, rows of the task (tokens t0 .., heads of group g). */
static void write_rows(const hylo_cpu_attention *p, int64_t g, int64_t t0, int64_t nt,
                       const float *O, const float *l)
{
    for (int64_t r = 0; r < nt * p->group; r++) {
        const int64_t t = t0 + r / p->group, h = g * p->group + r % p->group;
        float *out = p->out + t * p->out_t_stride + h * p->out_h_stride;
        const float inv = 1.0f / l[r];
        for (int64_t i = 0; i < p->n_val; i++) out[i] = O[r * p->n_val + i] * inv;
    }
}

/* Merges the splits of one block's `rows` rows: with m* = max_s m_s and w_s = e^(m_s - m*),
 *   O = sum_s w_s O_s ,  l = sum_s w_s l_s                                            */
static void merge_splits(const hylo_cpu_attention *p, const task_plan *s, const float *partial,
                         int64_t block, int64_t rows, float *O, float *l)
{
    const int64_t stride = s->rows * (p->n_val + 2);
    for (int64_t r = 0; r < rows; r++) {
        float m = -INFINITY;
        for (int64_t k = 0; k < s->splits; k++) {
            const float mk = partial[(block * s->splits + k) * stride + s->rows * p->n_val + r];
            m = mk > m ? mk : m;
        }
        l[r] = 0.0f;
        memset(O + r * p->n_val, 0, (size_t)p->n_val * sizeof *O);
        for (int64_t k = 0; k < s->splits; k++) {
            const float *part = partial + (block * s->splits + k) * stride;
            const float mk = part[s->rows * p->n_val + r];
            if (mk == -INFINITY) continue;
            const float w = hylo_cpu_expf(mk - m);
            l[r] += w * part[s->rows * (p->n_val + 1) + r];
            hylo_cpu_axpy(O + r * p->n_val, w, part + r * p->n_val, p->n_val);
        }
    }
}

/* Tasks in parallel, the last token blocks (the longest rows of keys) first; with splits,
 * each task leaves O, m, l in the partial buffer and each block's splits are merged after. */
hylo_status hylo_cpu_attend(hylo_cpu_ctx *ctx, const hylo_cpu_attention *p, hylo_error *err)
{
    if (p->T <= 0) return HYLO_OK;
    const int threads = hylo_cpu_threads();
    const task_plan s = plan_tasks(p, threads);
    const int64_t per_thread = task_floats(p, &s);
    float *work = hylo_cpu_workspace(ctx, HYLO_CPU_OP,
                                     threads * per_thread + partial_floats(p, &s), err);
    if (!work) return HYLO_ERR_NOMEM;
    float *partial = work + threads * per_thread;
#pragma omp parallel num_threads(threads)
    {
        float *mine = work + omp_get_thread_num() * per_thread;
        task_buffers b;
        b.qa = mine;
        b.qpe = b.qa + s.rows * p->n_a;
        b.S = b.qpe + s.rows * p->n_pe;
        b.O = b.S + s.rows * KEY_TILE;
        b.m = b.O + s.rows * p->n_val;
        b.l = b.m + s.rows;
#pragma omp for schedule(dynamic, 1)
        for (int64_t i = 0; i < s.count; i++) {
            const int64_t task = s.count - 1 - i, split = task % s.splits;
            const int64_t block = task / s.splits, g = block % s.groups, tb = block / s.groups;
            const int64_t t0 = tb * s.tokens, nt = p->T - t0 < s.tokens ? p->T - t0 : s.tokens;
            run_task(p, g, t0, nt, s.keys * split / s.splits, s.keys * (split + 1) / s.splits, &b);
            if (s.splits == 1) {
                write_rows(p, g, t0, nt, b.O, b.l);
            } else { /* O, m, l of the task, in that order */
                float *part = partial + task * s.rows * (p->n_val + 2);
                memcpy(part, b.O, (size_t)(s.rows * (p->n_val + 2)) * sizeof *part);
            }
        }
        if (s.splits > 1) {
#pragma omp for schedule(static)
            for (int64_t block = 0; block < s.groups * s.token_blocks; block++) {
                const int64_t g = block % s.groups, t0 = block / s.groups * s.tokens;
                const int64_t nt = p->T - t0 < s.tokens ? p->T - t0 : s.tokens;
                merge_splits(p, &s, partial, block, nt * p->group, b.O, b.l);
                write_rows(p, g, t0, nt, b.O, b.l);
            }
        }
    }
    return HYLO_OK;
}

/* The teacher's GQA: one content part (n_pe = 0); query head h reads KV head h / (H / Hkv). */
static hylo_cpu_attention gqa_problem(const float *q, const float *k_cache, const float *v_cache,
                                      float *out, int64_t T, int64_t len, int64_t H,
                                      int64_t Hkv, int64_t hd, double scale)
{
    hylo_cpu_attention p = {0};
    p.T = T;
    p.H = H;
    p.group = H / Hkv;
    p.pos0 = len - T;
    p.n_a = hd;
    p.n_val = hd;
    p.qa = (hylo_cpu_query_part){q, H * hd, hd};
    p.ka = (hylo_cpu_key_part){k_cache, hd, Hkv * hd};
    p.val = (hylo_cpu_key_part){v_cache, hd, Hkv * hd};
    p.out = out;
    p.out_t_stride = H * hd;
    p.out_h_stride = hd;
    p.scale = (float)scale;
    return p;
}

hylo_cpu_need hylo_cpu_gqa_attention_need(int64_t T, int64_t H, int64_t Hkv, int64_t hd)
{
    const hylo_cpu_attention p = gqa_problem(NULL, NULL, NULL, NULL, T, T, H, Hkv, hd, 1.0);
    return hylo_cpu_attend_need(&p);
}

/* q [T, H, hd], k_cache, v_cache [len, Hkv, hd], out [T, H, hd]; query t at p = len - T + t:
 *   out[t, h] = sum_{j <= p} softmax_j(scale q[t, h] . k[j, g]) v[j, g],  g = h / (H / Hkv) */
hylo_status hylo_cpu_gqa_attention(void *ctx, const float *q, const float *k_cache,
                                   const float *v_cache, float *out, int64_t T, int64_t len,
                                   int64_t H, int64_t Hkv, int64_t hd, double scale,
                                   hylo_error *err)
{
    const hylo_cpu_attention p = gqa_problem(q, k_cache, v_cache, out, T, len, H, Hkv, hd, scale);
    return hylo_cpu_attend(ctx, &p, err);
}
