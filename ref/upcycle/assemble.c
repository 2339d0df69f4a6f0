/* assemble.c: a hybrid built layer by layer from two models of one base, an all-MLA one and an
 * all-linear one (stage 0 / I of the recipe, spec sec. 9): layer i's mixer tensors come from the
 * MLA model where i is chosen, else from the linear model; the tensors every model shares
 * (embeddings, norms, MLPs, lm_head) come from the MLA model, and those that differ in the
 * linear model are counted and reported. Tensors are copied through fp32, bit for bit when the
 * two dtypes agree (see upcycle.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "upcycle/upcycle.h"

/* The two models must share the base: every size and setting outside the mixers. */
static hylo_status check_same_base(const hylo_source *a, const hylo_source *b, hylo_error *err)
{
    const hylo_config *x = &a->cfg, *y = &b->cfg;
    const struct { const char *field; double a, b; } f[] = {
        {"model_type", x->arch, y->arch},
        {"vocab_size", (double)x->vocab_size, (double)y->vocab_size},
        {"hidden_size", (double)x->hidden_size, (double)y->hidden_size},
        {"intermediate_size", (double)x->intermediate_size, (double)y->intermediate_size},
        {"num_hidden_layers", (double)x->num_layers, (double)y->num_layers},
        {"num_attention_heads", (double)x->num_heads, (double)y->num_heads},
        {"num_key_value_heads", (double)x->num_kv_heads, (double)y->num_kv_heads},
        {"head_dim", (double)x->head_dim, (double)y->head_dim},
        {"rms_norm_eps", x->rms_norm_eps, y->rms_norm_eps},
        {"rope_theta", x->rope.theta, y->rope.theta},
        {"tie_word_embeddings", x->tie_word_embeddings, y->tie_word_embeddings},
        {"mlp_bias", x->mlp_bias, y->mlp_bias},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (f[i].a != f[i].b)
            return hylo_error_set(err, HYLO_ERR_CONFIG,
                                  "%s and %s are not of one base: %s is %g in one and %g in the "
                                  "other", a->dir, b->dir, f[i].field, f[i].a, f[i].b);
    return HYLO_OK;
}

/* Layer i's mixer: MLA from `a` where mla[i], else the linear block of `b`. */
static hylo_status merge_layers(const hylo_source *a, const hylo_source *b, const bool *mla,
                                hylo_hybrid_config *hy, hylo_error *err)
{
    *hy = a->hybrid;
    hy->mamba2 = b->hybrid.mamba2;
    hy->gdn = b->hybrid.gdn;
    for (int64_t i = 0; i < hy->num_layers; i++) {
        const hylo_mixer from_a = a->hybrid.mixers[i], from_b = b->hybrid.mixers[i];
        if (mla[i] && from_a != HYLO_MIXER_MLA)
            return hylo_error_set(err, HYLO_ERR_CONFIG, "%s: layer %lld is %s, not mla", a->dir,
                                  (long long)i, hylo_mixer_name(from_a));
        if (!mla[i] && from_b != HYLO_MIXER_MAMBA2 && from_b != HYLO_MIXER_GDN)
            return hylo_error_set(err, HYLO_ERR_CONFIG,
                                  "%s: layer %lld is %s, not a linear block (mamba2 or gdn)",
                                  b->dir, (long long)i, hylo_mixer_name(from_b));
        hy->mixers[i] = mla[i] ? HYLO_MIXER_MLA : from_b;
    }
    return hylo_hybrid_config_validate(hy, &a->cfg, "assembled hybrid", err);
}

/* *equal <- whether p holds the same values in a and b (bytes when the dtypes agree). */
static hylo_status same_tensor(const hylo_source *a, const hylo_source *b, const hylo_param *p,
                               bool *equal, hylo_error *err)
{
    const hylo_tensor_view *va = hylo_source_view(a, p), *vb = hylo_source_view(b, p);
    if (va->dtype == vb->dtype) {
        *equal = memcmp(va->data, vb->data, va->nbytes) == 0;
        return HYLO_OK;
    }
    const size_t n = (size_t)va->numel;
    float *fa = malloc(n * sizeof *fa), *fb = malloc(n * sizeof *fb);
    hylo_status st = fa && fb ? HYLO_OK : hylo_error_set(err, HYLO_ERR_NOMEM, "cannot compare '%s'", p->name);
    if (st == HYLO_OK) {
        hylo_convert_to_f32(va->dtype, va->data, fa, n);
        hylo_convert_to_f32(vb->dtype, vb->data, fb, n);
        *equal = memcmp(fa, fb, n * sizeof *fa) == 0;
    }
    free(fa);
    free(fb);
    return st;
}

/* The number of shared tensors that differ between a and b, with a warning naming the first. */
static hylo_status count_differing(const hylo_source *a, const hylo_source *b, int64_t *out,
                                   hylo_error *err)
{
    const hylo_param *first = NULL;
    *out = 0;
    for (size_t i = 0; i < a->count; i++) {
        const hylo_param *p = &a->params[i];
        if (p->layer >= 0 && !p->is_mlp) continue;
        bool equal = true;
        hylo_status st = same_tensor(a, b, p, &equal, err);
        if (st != HYLO_OK) return st;
        if (!equal && !first) first = p;
        *out += !equal;
    }
    if (first)
        fprintf(stderr, "hylo assemble: warning: %lld shared tensors (embeddings, norms, MLPs, "
                        "lm_head) differ between %s and %s, first '%s'; taking %s's\n",
                (long long)*out, a->dir, b->dir, first->name, a->dir);
    return HYLO_OK;
}

typedef struct {
    const hylo_source *mla, *linear;
    const bool *mla_layers;
    const hylo_param *params; /* the assembled table */
    hylo_dtype dtype;
} assemble_job;

static hylo_status fill(void *user, size_t i, void *dst, size_t nbytes, hylo_error *err)
{
    const assemble_job *job = user;
    const hylo_param *p = &job->params[i];
    const bool linear = p->layer >= 0 && !p->is_mlp && !job->mla_layers[p->layer];
    const hylo_source *src = linear ? job->linear : job->mla;
    const size_t n = nbytes / hylo_dtype_size(job->dtype);
    float *f = malloc(n * sizeof *f);
    if (!f) return hylo_error_set(err, HYLO_ERR_NOMEM, "cannot allocate %zu floats", n);
    hylo_status st = hylo_source_read(src, hylo_param_at(src->params, src->count, p->layer, p->slot),
                                      f, err);
    if (st == HYLO_OK) st = hylo_output_narrow(job->dtype, f, dst, n, p->name, err);
    free(f);
    return st;
}

hylo_status hylo_assemble(const char *mla_dir, const char *linear_dir, const bool *mla_layers,
                          const char *out_dir, uint64_t max_shard_bytes, bool force,
                          hylo_upcycle_report *report, hylo_error *err)
{
    if (!mla_dir || !linear_dir || !mla_layers || !out_dir)
        return hylo_error_set(err, HYLO_ERR_USAGE, "hylo_assemble: NULL argument");
    hylo_source a, b;
    hylo_status st = hylo_source_open(mla_dir, &a, err);
    if (st != HYLO_OK) return st;
    st = hylo_source_open(linear_dir, &b, err);
    if (st != HYLO_OK) {
        hylo_source_close(&a);
        return st;
    }
    const char *inputs[] = {mla_dir, linear_dir};
    hylo_hybrid_config hy;
    hylo_param *params = NULL;
    size_t count = 0;
    int64_t differing = 0;
    st = check_same_base(&a, &b, err);
    if (st == HYLO_OK) st = merge_layers(&a, &b, mla_layers, &hy, err);
    if (st == HYLO_OK) st = hylo_output_check(out_dir, force, inputs, 2, err);
    if (st == HYLO_OK) st = hylo_model_params(&a.cfg, &hy, &params, &count, err);
    if (st == HYLO_OK) st = count_differing(&a, &b, &differing, err);
    assemble_job job = {&a, &b, mla_layers, params, a.cfg.dtype};
    if (st == HYLO_OK) st = hylo_output_prepare(out_dir, err);
    if (st == HYLO_OK)
        st = hylo_output_write(out_dir, &a.cfg, &hy, params, count, fill, &job, max_shard_bytes,
                               err);
    if (st == HYLO_OK && report) st = hylo_report_fill(report, &a.cfg, &hy, err);
    if (st == HYLO_OK && report) report->differing_shared = differing;
    free(params);
    hylo_source_close(&a);
    hylo_source_close(&b);
    return st;
}
