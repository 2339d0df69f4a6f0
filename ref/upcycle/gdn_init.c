/* gdn_init.c: Gated DeltaNet from attention (HyLo, spec sec. 7). K and V heads are repeated to
 * H (head h reads teacher KV head h / (H / Hkv)), giving W_K', W_V' [H hd, D]; then the
 * overlapping sub-matrices are copied:
 *   q_proj [H_k dk, D]  rows [0, n_qk) <- W_Q rows [0, n_qk)      n_qk = min(H_k dk, H hd)
 *   k_proj [H_k dk, D]  rows [0, n_qk) <- W_K' rows [0, n_qk)
 *   v_proj [H_v dv, D]  rows [0, n_v)  <- W_V' rows [0, n_v)       n_v = min(H_v dv, H hd)
 *   o_proj [D, H_v dv]  columns [0, n_v) <- W_O columns [0, n_v)
 * The spec states the HyLo sizes (H_k dk <= H hd <= H_v dv: Llama-1B 1536 <= 2048 <= 3072);
 * taking the min also covers teachers where GDN is narrower (the rest of W_* is then dropped)
 * or wider (the rest of the GDN tensor keeps its fresh init). g_proj, a_proj, b_proj, A_log,
 * dt_bias, the convs and o_norm keep their fresh init (o_norm = 1). */
#include <stdlib.h>
#include <string.h>

#include "upcycle/upcycle.h"

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* dst rows [0, n) <- rows of the teacher matrix at `slot` [heads hd, D] with its heads
 * repeated `rep` times. */
static hylo_status copy_rows(const hylo_upcycler *u, int64_t layer, size_t slot, int64_t rep,
                             int64_t n, float *dst, hylo_error *err)
{
    const int64_t D = u->cfg.hidden_size, hd = u->cfg.head_dim;
    float *w;
    hylo_status st = hylo_source_load(u->teacher, layer, slot, &w, err);
    if (st != HYLO_OK) return st;
    for (int64_t r = 0; r < n; r++)
        memcpy(dst + r * D, w + hylo_repeated_row(r, hd, rep) * D, (size_t)D * sizeof *dst);
    free(w);
    return HYLO_OK;
}

/* dst [D, cols] columns [0, n) <- W_O [D, H hd] columns [0, n). */
static hylo_status copy_o_columns(const hylo_upcycler *u, int64_t layer, int64_t cols,
                                  int64_t n, float *dst, hylo_error *err)
{
    const int64_t D = u->cfg.hidden_size, in = u->cfg.num_heads * u->cfg.head_dim;
    float *wo;
    hylo_status st = hylo_source_load(u->teacher, layer, HYLO_LAYER_SLOT(attn.wo), &wo, err);
    if (st != HYLO_OK) return st;
    for (int64_t o = 0; o < D; o++) memcpy(dst + o * cols, wo + o * in, (size_t)n * sizeof *dst);
    free(wo);
    return HYLO_OK;
}

hylo_status hylo_gdn_overlay(const hylo_upcycler *u, const hylo_param *p, float *dst,
                             hylo_error *err)
{
    const hylo_gdn_config *g = &u->hybrid.gdn;
    const int64_t Hhd = u->cfg.num_heads * u->cfg.head_dim;
    const int64_t rep = u->cfg.num_heads / u->cfg.num_kv_heads;
    const int64_t n_qk = min64(g->k_heads * g->head_k, Hhd), n_v = min64(g->v_heads * g->head_v, Hhd);
    const size_t s = p->slot;
    if (s == HYLO_LAYER_SLOT(gdn.q_proj))
        return copy_rows(u, p->layer, HYLO_LAYER_SLOT(attn.wq), 1, n_qk, dst, err);
    if (s == HYLO_LAYER_SLOT(gdn.k_proj))
        return copy_rows(u, p->layer, HYLO_LAYER_SLOT(attn.wk), rep, n_qk, dst, err);
    if (s == HYLO_LAYER_SLOT(gdn.v_proj))
        return copy_rows(u, p->layer, HYLO_LAYER_SLOT(attn.wv), rep, n_v, dst, err);
    if (s == HYLO_LAYER_SLOT(gdn.o_proj))
        return copy_o_columns(u, p->layer, g->v_heads * g->head_v, n_v, dst, err);
    return HYLO_OK;
}
