/* mla_init.c: MLA from GQA by SVD (X-EcoMLA / Zebra-Llama init, spec sec. 7), in double.
 *
 * Teacher: W_Q [H hd, D], W_K, W_V [Hkv hd, D], W_O [D, H hd]; MLA: Hm KV heads (a multiple of
 * Hkv), per head nope + rope query/key dims, v = hd value dims, qk = nope + rope.
 * Each MLA head keeps hd - (nope + rope) of the teacher's hd query/key dims: rows [0, nope) give
 * its no-position part and rows [hd - rope, hd) its rope slice ("kept rows"; all of them when
 * nope + rope = hd).
 *
 * Query:  W_Q = U S V^T (thin, k = min(H hd, D));
 *         q_a_proj [r_q, D]  = diag(S[:r_q]) V^T[:r_q]
 *         q_b_proj [H qk, r_q] = per head h, the kept rows of U[h hd .. (h+1) hd, :r_q]
 *         so q_b q_a = the kept rows of the best rank-r_q approximation of W_Q.
 *         With r_q = 0 (a full q_proj) q_proj [H qk, D] = the kept rows of W_Q itself.
 * Key/value, jointly: W_K, W_V with each head repeated Hm / Hkv times (KV head g reads teacher
 *         head g / (Hm / Hkv)); M = [W_K; W_V] [2 Hm hd, D] = U S V^T;
 *         kv_a_proj_with_mqa [r_kv + rope, D] = [diag(S[:r_kv]) V^T[:r_kv] ;
 *                                                mean over KV heads of W_K's rows [hd-rope, hd)]
 *         kv_b_proj [Hm (nope + v), r_kv] = per KV head g [U rows g hd + [0, nope) ;
 *                                                          U rows Hm hd + g hd + [0, v)]
 * out_proj [D, H v] = W_O (v = hd).
 * Qwen3 bases (spec sec. 3 Decision): the MLA q_norm / k_norm [qk] take the teacher's
 * q_norm / k_norm [hd] entries of the kept rows. They are not exact copies in effect: the MLA
 * norms take their statistics over qk dims, the teacher's over hd (equal when qk = hd).
 * With HYLO_ROPE_INIT_FRESH the q rope rows of q_b_proj (q_proj) and the k_pe rows of
 * kv_a_proj_with_mqa keep their fresh init.
 * Exactness: with Hkv = Hm = 1, full ranks, nope + rope = hd and rotations that are the
 * identity (one token at position 0), q and k, hence scores, and v equal the teacher's to
 * rounding. With more KV heads the single shared k_pe is only the heads' mean. */
#include <stdlib.h>
#include <string.h>

#include "upcycle/upcycle.h"

/* The teacher row (within a head) of MLA query/key dim i in [0, nope + rope). */
static int64_t kept_row(const hylo_mla_config *m, int64_t hd, int64_t i)
{
    return i < m->nope ? i : hd - m->rope + (i - m->nope);
}

hylo_status hylo_mla_check(const hylo_config *t, const hylo_mla_config *m, hylo_error *err)
{
    const int64_t hd = t->head_dim, D = t->hidden_size;
    const int64_t q_max = t->num_heads * hd < D ? t->num_heads * hd : D;
    const int64_t kv_max = 2 * m->kv_heads * hd < D ? 2 * m->kv_heads * hd : D;
    if (m->v != hd)
        return hylo_error_set(err, HYLO_ERR_CONFIG,
                              "mla.v_head_dim is %lld but the SVD init copies whole teacher value "
                              "heads: it must equal the teacher's head_dim %lld",
                              (long long)m->v, (long long)hd);
    if (m->nope + m->rope > hd)
        return hylo_error_set(err, HYLO_ERR_CONFIG,
                              "mla.qk_nope_head_dim + qk_rope_head_dim = %lld + %lld exceeds the "
                              "teacher's head_dim %lld (the MLA dims are rows of teacher heads)",
                              (long long)m->nope, (long long)m->rope, (long long)hd);
    if (m->kv_heads % t->num_kv_heads != 0)
        return hylo_error_set(err, HYLO_ERR_CONFIG,
                              "mla.num_kv_heads %lld must be a multiple of the teacher's "
                              "num_key_value_heads %lld (KV heads are repeated, never merged)",
                              (long long)m->kv_heads, (long long)t->num_kv_heads);
    if (m->q_rank > q_max)
        return hylo_error_set(err, HYLO_ERR_CONFIG,
                              "mla.q_lora_rank %lld exceeds the rank of W_Q [%lld, %lld]: at "
                              "most %lld", (long long)m->q_rank, (long long)(t->num_heads * hd),
                              (long long)D, (long long)q_max);
    if (m->kv_rank > kv_max)
        return hylo_error_set(err, HYLO_ERR_CONFIG,
                              "mla.kv_lora_rank %lld exceeds the rank of [W_K; W_V] [%lld, %lld] "
                              "(%lld KV heads): at most %lld", (long long)m->kv_rank,
                              (long long)(2 * m->kv_heads * hd), (long long)D,
                              (long long)m->kv_heads, (long long)kv_max);
    return HYLO_OK;
}

static double *alloc_doubles(int64_t n, hylo_error *err)
{
    double *p = malloc((size_t)n * sizeof *p);
    if (!p) hylo_error_set(err, HYLO_ERR_NOMEM, "cannot allocate %lld doubles", (long long)n);
    return p;
}

/* *out [H hd, D] <- W_Q of `layer`, in double. */
static hylo_status q_matrix(const hylo_upcycler *u, int64_t layer, double **out, hylo_error *err)
{
    const int64_t n = u->cfg.num_heads * u->cfg.head_dim * u->cfg.hidden_size;
    float *wq;
    hylo_status st = hylo_source_load(u->teacher, layer, HYLO_LAYER_SLOT(attn.wq), &wq, err);
    *out = st == HYLO_OK ? alloc_doubles(n, err) : NULL;
    if (st == HYLO_OK && !*out) st = HYLO_ERR_NOMEM;
    for (int64_t i = 0; st == HYLO_OK && i < n; i++) (*out)[i] = wq[i];
    free(wq);
    return st;
}

/* *out [2 Hm hd, D] <- M = [W_K; W_V] of `layer` with heads repeated Hm / Hkv times, in double. */
static hylo_status kv_matrix(const hylo_upcycler *u, int64_t layer, double **out,
                             hylo_error *err)
{
    const int64_t hd = u->cfg.head_dim, D = u->cfg.hidden_size, Hm = u->hybrid.mla.kv_heads;
    const int64_t rep = Hm / u->cfg.num_kv_heads;
    float *wk = NULL, *wv = NULL;
    hylo_status st = hylo_source_load(u->teacher, layer, HYLO_LAYER_SLOT(attn.wk), &wk, err);
    if (st == HYLO_OK) st = hylo_source_load(u->teacher, layer, HYLO_LAYER_SLOT(attn.wv), &wv, err);
    *out = st == HYLO_OK ? alloc_doubles(2 * Hm * hd * D, err) : NULL;
    if (st == HYLO_OK && !*out) st = HYLO_ERR_NOMEM;
    for (int64_t r = 0; st == HYLO_OK && r < Hm * hd; r++) {
        const int64_t src = hylo_repeated_row(r, hd, rep);
        for (int64_t j = 0; j < D; j++) {
            (*out)[r * D + j] = wk[src * D + j];
            (*out)[(Hm * hd + r) * D + j] = wv[src * D + j];
        }
    }
    free(wk);
    free(wv);
    return st;
}

hylo_status hylo_mla_dynamic_ranks(const hylo_upcycler *u, int64_t layer, double q_energy,
                                   double kv_energy, int64_t *r_q, int64_t *r_kv,
                                   hylo_error *err)
{
    const int64_t D = u->cfg.hidden_size, hd = u->cfg.head_dim;
    const int64_t rows[2] = {u->cfg.num_heads * hd, 2 * u->hybrid.mla.kv_heads * hd};
    const double energy[2] = {q_energy, kv_energy};
    int64_t *rank[2] = {r_q, r_kv};
    hylo_status st = HYLO_OK;
    for (int which = 0; which < 2 && st == HYLO_OK; which++) {
        if (energy[which] <= 0.0) continue;
        double *A = NULL;
        hylo_svd svd = {0};
        st = which == 0 ? q_matrix(u, layer, &A, err) : kv_matrix(u, layer, &A, err);
        if (st == HYLO_OK) st = hylo_svd_compute(A, rows[which], D, false, &svd, err);
        if (st == HYLO_OK) *rank[which] = hylo_rank_for_energy(svd.s, svd.k, energy[which]);
        hylo_svd_free(&svd);
        free(A);
    }
    return st;
}

void hylo_mla_init_free(hylo_mla_init *m)
{
    free(m->q_a);
    free(m->q_b);
    free(m->q_proj);
    free(m->kv_a);
    free(m->kv_b);
    *m = (hylo_mla_init){0};
}

static float *alloc_floats(int64_t n, bool *ok)
{
    float *p = malloc((size_t)n * sizeof *p);
    if (!p) *ok = false;
    return p;
}

/* Q: q_a, q_b from the SVD of W_Q, or q_proj (r_q = 0). Q [H hd, D] is overwritten. */
static hylo_status init_query(const hylo_upcycler *u, double *Q, hylo_mla_init *out,
                              hylo_error *err)
{
    const hylo_mla_config *m = &u->hybrid.mla;
    const int64_t H = u->cfg.num_heads, hd = u->cfg.head_dim, D = u->cfg.hidden_size;
    const int64_t qk = m->nope + m->rope, r = m->q_rank;
    bool ok = true;
    if (r == 0) {
        out->q_proj = alloc_floats(H * qk * D, &ok);
        if (!ok) return hylo_error_set(err, HYLO_ERR_NOMEM, "cannot allocate q_proj");
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < qk; i++)
                for (int64_t j = 0; j < D; j++)
                    out->q_proj[(h * qk + i) * D + j] = (float)Q[(h * hd + kept_row(m, hd, i)) * D + j];
        out->q_energy = 1.0;
        return HYLO_OK;
    }
    hylo_svd svd;
    hylo_status st = hylo_svd_compute(Q, H * hd, D, true, &svd, err);
    if (st != HYLO_OK) return st;
    out->q_a = alloc_floats(r * D, &ok);
    out->q_b = alloc_floats(H * qk * r, &ok);
    if (ok) {
        for (int64_t a = 0; a < r; a++)
            for (int64_t j = 0; j < D; j++) out->q_a[a * D + j] = (float)(svd.s[a] * svd.Vt[a * D + j]);
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < qk; i++)
                for (int64_t a = 0; a < r; a++)
                    out->q_b[(h * qk + i) * r + a] = (float)svd.U[(h * hd + kept_row(m, hd, i)) * svd.k + a];
        out->q_energy = hylo_svd_energy(svd.s, svd.k, r);
    }
    hylo_svd_free(&svd);
    return ok ? HYLO_OK : hylo_error_set(err, HYLO_ERR_NOMEM, "cannot allocate q_a, q_b");
}

/* KV: kv_a, kv_b from the SVD of M [2 Hm hd, D] (overwritten). */
static hylo_status init_kv(const hylo_upcycler *u, double *M, hylo_mla_init *out,
                           hylo_error *err)
{
    const hylo_mla_config *m = &u->hybrid.mla;
    const int64_t hd = u->cfg.head_dim, D = u->cfg.hidden_size, Hm = m->kv_heads;
    const int64_t r = m->kv_rank, dkv = m->nope + m->v;
    bool ok = true;
    out->kv_a = alloc_floats((r + m->rope) * D, &ok);
    out->kv_b = alloc_floats(Hm * dkv * r, &ok);
    if (!ok) return hylo_error_set(err, HYLO_ERR_NOMEM, "cannot allocate kv_a, kv_b");
    /* k_pe rows, before the SVD overwrites M: the mean over the (repeated) KV heads of each
     * head's last rope rows of W_K; repeating every head equally leaves the mean unchanged */
    for (int64_t i = 0; i < m->rope; i++)
        for (int64_t j = 0; j < D; j++) {
            double sum = 0.0;
            for (int64_t g = 0; g < Hm; g++) sum += M[(g * hd + hd - m->rope + i) * D + j];
            out->kv_a[(r + i) * D + j] = (float)(sum / (double)Hm);
        }
    hylo_svd svd;
    hylo_status st = hylo_svd_compute(M, 2 * Hm * hd, D, true, &svd, err);
    if (st != HYLO_OK) return st;
    for (int64_t a = 0; a < r; a++)
        for (int64_t j = 0; j < D; j++) out->kv_a[a * D + j] = (float)(svd.s[a] * svd.Vt[a * D + j]);
    for (int64_t g = 0; g < Hm; g++)
        for (int64_t i = 0; i < dkv; i++) {
            /* k_nope rows from the U_K block of head g, then its v rows from the U_V block */
            int64_t row = i < m->nope ? g * hd + i : Hm * hd + g * hd + (i - m->nope);
            for (int64_t a = 0; a < r; a++)
                out->kv_b[(g * dkv + i) * r + a] = (float)svd.U[row * svd.k + a];
        }
    out->kv_energy = hylo_svd_energy(svd.s, svd.k, r);
    hylo_svd_free(&svd);
    return HYLO_OK;
}

hylo_status hylo_mla_init_layer(const hylo_upcycler *u, int64_t layer, hylo_mla_init *out,
                                hylo_error *err)
{
    *out = (hylo_mla_init){0};
    double *Q = NULL, *M = NULL;
    hylo_status st = q_matrix(u, layer, &Q, err);
    if (st == HYLO_OK) st = init_query(u, Q, out, err);
    free(Q);
    if (st == HYLO_OK) st = kv_matrix(u, layer, &M, err);
    if (st == HYLO_OK) st = init_kv(u, M, out, err);
    free(M);
    if (st != HYLO_OK) {
        hylo_mla_init_free(out);
        hylo_error_wrap(err, "MLA init of layer %lld", (long long)layer);
    }
    return st;
}

/* dst [rows, cols] <- src, row by row where keep(row). */
static void copy_rows(float *dst, const float *src, int64_t rows, int64_t cols,
                      const hylo_upcycler *u, bool (*keep)(const hylo_upcycler *, int64_t))
{
    for (int64_t i = 0; i < rows; i++)
        if (keep(u, i)) memcpy(dst + i * cols, src + i * cols, (size_t)cols * sizeof *dst);
}

/* Rows of q_b / q_proj [H qk, .]: the rope rows only with the SVD rope init. */
static bool query_row_mapped(const hylo_upcycler *u, int64_t row)
{
    const hylo_mla_config *m = &u->hybrid.mla;
    return u->rope_init == HYLO_ROPE_INIT_SVD || row % (m->nope + m->rope) < m->nope;
}

/* Rows of kv_a [r_kv + rope, .]: the k_pe rows only with the SVD rope init. */
static bool kv_a_row_mapped(const hylo_upcycler *u, int64_t row)
{
    return u->rope_init == HYLO_ROPE_INIT_SVD || row < u->hybrid.mla.kv_rank;
}

static bool every_row(const hylo_upcycler *u, int64_t row)
{
    (void)u;
    (void)row;
    return true;
}

/* dst [qk] <- the kept entries of the teacher's q_norm or k_norm [hd] (`slot`). */
static hylo_status kept_norm(const hylo_upcycler *u, int64_t layer, size_t slot, float *dst,
                             hylo_error *err)
{
    const hylo_mla_config *m = &u->hybrid.mla;
    float *w;
    hylo_status st = hylo_source_load(u->teacher, layer, slot, &w, err);
    if (st != HYLO_OK) return st;
    for (int64_t i = 0; i < m->nope + m->rope; i++) dst[i] = w[kept_row(m, u->cfg.head_dim, i)];
    free(w);
    return HYLO_OK;
}

hylo_status hylo_mla_overlay(const hylo_upcycler *u, const hylo_mla_init *init,
                             const hylo_param *p, float *dst, hylo_error *err)
{
    const size_t s = p->slot;
    const int64_t rows = p->shape[0], cols = p->ndim == 2 ? p->shape[1] : 1;
    if (s == HYLO_LAYER_SLOT(mla.q_a)) copy_rows(dst, init->q_a, rows, cols, u, every_row);
    else if (s == HYLO_LAYER_SLOT(mla.q_b)) copy_rows(dst, init->q_b, rows, cols, u, query_row_mapped);
    else if (s == HYLO_LAYER_SLOT(mla.q_proj))
        copy_rows(dst, init->q_proj, rows, cols, u, query_row_mapped);
    else if (s == HYLO_LAYER_SLOT(mla.kv_a)) copy_rows(dst, init->kv_a, rows, cols, u, kv_a_row_mapped);
    else if (s == HYLO_LAYER_SLOT(mla.kv_b)) copy_rows(dst, init->kv_b, rows, cols, u, every_row);
    else if (s == HYLO_LAYER_SLOT(mla.out)) {
        /* out_proj [D, H v] = o_proj [D, H hd] (v = hd) */
        const hylo_param *wo = hylo_param_at(u->teacher->params, u->teacher->count, p->layer,
                                             HYLO_LAYER_SLOT(attn.wo));
        return hylo_source_read(u->teacher, wo, dst, err);
    } else if (u->teacher->cfg.qk_norm && s == HYLO_LAYER_SLOT(mla.q_norm))
        return kept_norm(u, p->layer, HYLO_LAYER_SLOT(attn.q_norm), dst, err);
    else if (u->teacher->cfg.qk_norm && s == HYLO_LAYER_SLOT(mla.k_norm))
        return kept_norm(u, p->layer, HYLO_LAYER_SLOT(attn.k_norm), dst, err);
    /* the latent norms (and q/k norms of a teacher without them) keep their fresh init */
    return HYLO_OK;
}
