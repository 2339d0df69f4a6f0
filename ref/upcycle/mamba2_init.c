/* mamba2_init.c: Mamba2 from attention (MambaInLlama, spec sec. 7). In the upcycled layout
 * (nheads = c_groups = H, x_heads = b_groups = Hkv, headdim = d_state = hd) the attention
 * projections fit in_proj's row blocks [z | x | B | C | dt] exactly:
 *   in_proj rows x [Hkv hd, D] <- W_V,   B [Hkv hd, D] <- W_K,   C [H hd, D] <- W_Q
 *   out_proj [D, H hd] <- W_O
 * so that C plays the query, B the key and x the value of each head (y_h = S_h C_h with
 * S_h accumulating x_h B_h^T). z and dt rows, the conv, dt_bias, A_log, D and the norm keep
 * their fresh init. */
#include "upcycle/upcycle.h"

hylo_status hylo_mamba2_check(const hylo_config *t, const hylo_mamba2_config *m,
                              hylo_error *err)
{
    const int64_t H = t->num_heads, Hkv = t->num_kv_heads, hd = t->head_dim;
    if (m->nheads == H && m->c_groups == H && m->x_heads == Hkv && m->b_groups == Hkv &&
        m->headdim == hd && m->d_state == hd)
        return HYLO_OK;
    return hylo_error_set(err, HYLO_ERR_CONFIG,
                          "mamba2 sizes num_heads %lld, c_groups %lld, x_heads %lld, b_groups "
                          "%lld, head_dim %lld, d_state %lld do not take the teacher's attention "
                          "(MambaInLlama init needs the upcycled layout: num_heads = c_groups = "
                          "H = %lld, x_heads = b_groups = Hkv = %lld, head_dim = d_state = hd = "
                          "%lld)", (long long)m->nheads, (long long)m->c_groups,
                          (long long)m->x_heads, (long long)m->b_groups, (long long)m->headdim,
                          (long long)m->d_state, (long long)H, (long long)Hkv, (long long)hd);
}

hylo_status hylo_mamba2_overlay(const hylo_upcycler *u, const hylo_param *p, float *dst,
                                hylo_error *err)
{
    const hylo_source *t = u->teacher;
    const int64_t D = u->cfg.hidden_size, hd = u->cfg.head_dim;
    const int64_t q_rows = u->cfg.num_heads * hd, kv_rows = u->cfg.num_kv_heads * hd;
    if (p->slot == HYLO_LAYER_SLOT(mamba2.out_proj))
        return hylo_source_read(
            t, hylo_param_at(t->params, t->count, p->layer, HYLO_LAYER_SLOT(attn.wo)), dst, err);
    if (p->slot != HYLO_LAYER_SLOT(mamba2.in_proj)) return HYLO_OK;
    /* row offsets of the blocks: z [0, H hd), x, B, C, then dt */
    const int64_t x_row = q_rows, b_row = x_row + kv_rows, c_row = b_row + kv_rows;
    const struct { size_t slot; int64_t row; } blocks[] = {
        {HYLO_LAYER_SLOT(attn.wv), x_row},
        {HYLO_LAYER_SLOT(attn.wk), b_row},
        {HYLO_LAYER_SLOT(attn.wq), c_row},
    };
    for (size_t b = 0; b < sizeof blocks / sizeof blocks[0]; b++) {
        const hylo_param *w = hylo_param_at(t->params, t->count, p->layer, blocks[b].slot);
        hylo_status st = hylo_source_read(t, w, dst + blocks[b].row * D, err);
        if (st != HYLO_OK) return st;
    }
    return HYLO_OK;
}
