/* upcycle.c: hylo_upcycle, a teacher checkpoint -> a hybrid checkpoint (spec sec. 7):
 *   1. open the teacher (every tensor of its table present, of its shape) and check that the
 *      target's MLA / Mamba2 sizes can take its attention, and that the output may be written;
 *   2. with dynamic ranks, the singular values of every MLA layer choose r_q / r_kv;
 *   3. the SVDs of every MLA layer (double precision);
 *   4. the checkpoint, tensor by tensor in table order: shared tensors copied, every other one
 *      its fresh init with the teacher's mapped parts written over it;
 *   5. the report and the probe.
 * Copies go through fp32 and back: widening is exact and narrowing an exactly representable
 * value returns its bits, so a copy in the teacher's own dtype is bit for bit. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/progress.h"
#include "upcycle/upcycle.h"

hylo_upcycle_options hylo_upcycle_options_default(void)
{
    return (hylo_upcycle_options){.rope_init = HYLO_ROPE_INIT_SVD, .keep_dtype = true,
                                  .dtype = HYLO_BF16, .max_shard_bytes = (uint64_t)5000 << 20,
                                  .probe_tokens = 64};
}

int64_t hylo_repeated_row(int64_t r, int64_t hd, int64_t rep)
{
    return (r / hd) / rep * hd + r % hd;
}

void hylo_upcycle_fresh(const hylo_upcycler *u, const hylo_param *p, float *dst)
{
    hylo_param fresh = *p; /* same name: same random stream */
    /* the CONV kind draws U(-1/sqrt(fan_in), 1/sqrt(fan_in)), nn.Linear's default too */
    if (p->kind == HYLO_PARAM_LINEAR) fresh.kind = HYLO_PARAM_CONV;
    else if (p->kind == HYLO_PARAM_NORM) fresh.kind = HYLO_PARAM_ONES;
    hylo_param_draw(&fresh, u->seed, u->cfg.hidden_size, dst);
}

static bool uses(const hylo_hybrid_config *hy, hylo_mixer mixer)
{
    for (int64_t i = 0; i < hy->num_layers; i++)
        if (hy->mixers[i] == mixer) return true;
    return false;
}

static hylo_status check_options(const hylo_upcycle_options *o, hylo_error *err)
{
    if (!(o->q_energy >= 0.0 && o->q_energy <= 1.0) || !(o->kv_energy >= 0.0 && o->kv_energy <= 1.0))
        return hylo_error_set(err, HYLO_ERR_RANGE,
                              "the energies of the dynamic ranks must be in (0, 1] (0: off), got "
                              "q %g, kv %g", o->q_energy, o->kv_energy);
    if (o->probe_tokens < 0 || (o->rope_init != HYLO_ROPE_INIT_SVD && o->rope_init != HYLO_ROPE_INIT_FRESH) ||
        (o->dtype != HYLO_F32 && o->dtype != HYLO_F16 && o->dtype != HYLO_BF16))
        return hylo_error_set(err, HYLO_ERR_RANGE,
                              "upcycle options: probe_tokens must be >= 0, rope_init and dtype "
                              "known values");
    return HYLO_OK;
}

/* The hybrid's config and target, checked against the teacher (dynamic ranks still open). */
static hylo_status plan(hylo_upcycler *u, const hylo_hybrid_config *target,
                        const hylo_upcycle_options *o, hylo_error *err)
{
    const hylo_source *t = u->teacher;
    if (t->is_hybrid)
        return hylo_error_set(err, HYLO_ERR_CONFIG,
                              "%s has a hybrid_config.json: upcycling starts from a Transformer",
                              t->dir);
    u->cfg = t->cfg;
    u->cfg.tie_word_embeddings = false; /* lm_head written explicitly (spec sec. 7) */
    if (!o->keep_dtype) u->cfg.dtype = o->dtype;
    u->hybrid = *target;
    u->hybrid.mla.rope_scaling.theta = t->cfg.rope.theta; /* the slice rotates at the teacher's base */
    /* provisional ranks where the energies will choose them */
    if (o->q_energy > 0.0) u->hybrid.mla.q_rank = 1;
    if (o->kv_energy > 0.0) u->hybrid.mla.kv_rank = 1;
    hylo_status st = hylo_hybrid_config_validate(&u->hybrid, &u->cfg, "target hybrid", err);
    if (st == HYLO_OK && uses(&u->hybrid, HYLO_MIXER_MLA))
        st = hylo_mla_check(&t->cfg, &u->hybrid.mla, err);
    if (st == HYLO_OK && uses(&u->hybrid, HYLO_MIXER_MAMBA2))
        st = hylo_mamba2_check(&t->cfg, &u->hybrid.mamba2, err);
    return st;
}

/* Progress over the MLA layers, shown for real-size teachers only (W_Q of a million entries
 * or more: the SVDs take seconds there, microseconds on the tiny presets). */
static void begin_layers(hylo_progress *p, const hylo_upcycler *u, const char *label)
{
    int64_t n = 0;
    for (int64_t i = 0; i < u->hybrid.num_layers; i++) n += u->hybrid.mixers[i] == HYLO_MIXER_MLA;
    bool big = u->cfg.num_heads * u->cfg.head_dim * u->cfg.hidden_size >= (1 << 20);
    hylo_progress_begin(p, big ? label : NULL, (uint64_t)n, "layers", 1);
}

/* Dynamic ranks: the largest over the MLA layers of each layer's rank for the energy. */
static hylo_status choose_ranks(hylo_upcycler *u, const hylo_upcycle_options *o,
                                hylo_error *err)
{
    if (o->q_energy <= 0.0 && o->kv_energy <= 0.0) return HYLO_OK;
    hylo_progress progress;
    begin_layers(&progress, u, "MLA ranks (singular values)");
    int64_t r_q = 0, r_kv = 0, done = 0;
    hylo_status st = HYLO_OK;
    for (int64_t i = 0; i < u->hybrid.num_layers && st == HYLO_OK; i++) {
        if (u->hybrid.mixers[i] != HYLO_MIXER_MLA) continue;
        int64_t q = 0, kv = 0;
        st = hylo_mla_dynamic_ranks(u, i, o->q_energy, o->kv_energy, &q, &kv, err);
        r_q = q > r_q ? q : r_q;
        r_kv = kv > r_kv ? kv : r_kv;
        hylo_progress_update(&progress, (uint64_t)++done);
    }
    hylo_progress_end(&progress);
    if (o->q_energy > 0.0 && r_q > 0) u->hybrid.mla.q_rank = r_q;
    if (o->kv_energy > 0.0 && r_kv > 0) u->hybrid.mla.kv_rank = r_kv;
    return st;
}

/* The SVD-derived tensors of every MLA layer, into mla[layer]. */
static hylo_status factorize(const hylo_upcycler *u, hylo_mla_init *mla, hylo_error *err)
{
    hylo_progress progress;
    begin_layers(&progress, u, "MLA SVD init");
    hylo_status st = HYLO_OK;
    int64_t done = 0;
    for (int64_t i = 0; i < u->hybrid.num_layers && st == HYLO_OK; i++) {
        if (u->hybrid.mixers[i] != HYLO_MIXER_MLA) continue;
        st = hylo_mla_init_layer(u, i, &mla[i], err);
        hylo_progress_update(&progress, (uint64_t)++done);
    }
    hylo_progress_end(&progress);
    return st;
}

/* Whether a teacher mixer tensor at `slot` of a layer that becomes `mixer` is read. */
static bool teacher_slot_mapped(const hylo_upcycler *u, hylo_mixer mixer, size_t slot)
{
    if (mixer == HYLO_MIXER_ATTENTION || slot == HYLO_LAYER_SLOT(attn.wq) ||
        slot == HYLO_LAYER_SLOT(attn.wk) || slot == HYLO_LAYER_SLOT(attn.wv) ||
        slot == HYLO_LAYER_SLOT(attn.wo))
        return true;
    return mixer == HYLO_MIXER_MLA && u->hybrid.mla.qk_norm &&
           (slot == HYLO_LAYER_SLOT(attn.q_norm) || slot == HYLO_LAYER_SLOT(attn.k_norm));
}

/* Warns about the teacher tensors no hybrid slot takes (spec sec. 7: Qwen2's q/k/v biases;
 * likewise o_proj biases, and q/k norms outside MLA layers); returns their number. */
static int64_t warn_dropped(const hylo_upcycler *u)
{
    const hylo_source *t = u->teacher;
    char names[512] = "";
    size_t len = 0;
    int64_t n = 0;
    for (size_t i = 0; i < t->count; i++) {
        const hylo_param *p = &t->params[i];
        if (p->layer < 0 || p->is_mlp || teacher_slot_mapped(u, u->hybrid.mixers[p->layer], p->slot))
            continue;
        if (n++ < 3 && len < sizeof names)
            len += (size_t)snprintf(names + len, sizeof names - len, "%s%s", len ? ", " : "", p->name);
    }
    if (n > 0)
        fprintf(stderr, "hylo upcycle: warning: %lld teacher tensors have no slot in the hybrid "
                        "and are dropped (%s%s)\n", (long long)n, names, n > 3 ? ", ..." : "");
    return n;
}

typedef struct {
    const hylo_upcycler *u;
    const hylo_mla_init *mla; /* [L] */
} fill_job;

/* The teacher tensor a shared hybrid tensor copies: the same (layer, slot), except lm_head,
 * which is the embedding of a tied teacher. */
static const hylo_param *teacher_twin(const hylo_upcycler *u, const hylo_param *p)
{
    const hylo_source *t = u->teacher;
    size_t slot = p->slot;
    if (p->layer < 0 && slot == HYLO_MODEL_SLOT(lm_head) && t->cfg.tie_word_embeddings)
        slot = HYLO_MODEL_SLOT(embed);
    return hylo_param_at(t->params, t->count, p->layer, slot);
}

/* f [numel(p)] <- hybrid parameter p in fp32. */
static hylo_status produce(const fill_job *job, const hylo_param *p, float *f, hylo_error *err)
{
    const hylo_upcycler *u = job->u;
    if (p->layer < 0 || p->is_mlp || p->mixer == HYLO_MIXER_ATTENTION)
        return hylo_source_read(u->teacher, teacher_twin(u, p), f, err);
    hylo_upcycle_fresh(u, p, f);
    switch (p->mixer) {
    case HYLO_MIXER_MLA: return hylo_mla_overlay(u, &job->mla[p->layer], p, f, err);
    case HYLO_MIXER_MAMBA2: return hylo_mamba2_overlay(u, p, f, err);
    case HYLO_MIXER_GDN: return hylo_gdn_overlay(u, p, f, err);
    case HYLO_MIXER_ATTENTION: break;
    }
    return HYLO_OK;
}

static hylo_status fill(void *user, size_t i, void *dst, size_t nbytes, hylo_error *err)
{
    const fill_job *job = user;
    const hylo_param *p = &job->u->params[i];
    const hylo_dtype dtype = job->u->cfg.dtype;
    const size_t n = nbytes / hylo_dtype_size(dtype);
    const bool direct = dtype == HYLO_F32 && (uintptr_t)dst % _Alignof(float) == 0;
    float *f = direct ? dst : malloc(n * sizeof *f);
    if (!f) return hylo_error_set(err, HYLO_ERR_NOMEM, "cannot allocate %zu floats", n);
    hylo_status st = produce(job, p, f, err);
    if (!direct) {
        if (st == HYLO_OK) st = hylo_output_narrow(dtype, f, dst, n, p->name, err);
        free(f);
    }
    return st;
}

/* The per-layer report, the dropped count and the energies of the MLA layers. */
static hylo_status report_upcycle(const hylo_upcycler *u, const hylo_mla_init *mla,
                                  int64_t dropped, hylo_upcycle_report *r, hylo_error *err)
{
    hylo_status st = hylo_report_fill(r, &u->cfg, &u->hybrid, err);
    if (st != HYLO_OK) return st;
    r->dropped_tensors = dropped;
    for (int64_t i = 0; i < u->hybrid.num_layers; i++) {
        if (u->hybrid.mixers[i] != HYLO_MIXER_MLA) continue;
        r->layers[i].q_energy = mla[i].q_energy;
        r->layers[i].kv_energy = mla[i].kv_energy;
    }
    return HYLO_OK;
}

hylo_status hylo_upcycle(const char *teacher_dir, const hylo_hybrid_config *target,
                         const hylo_upcycle_options *opts, const char *out_dir,
                         hylo_upcycle_report *report, hylo_error *err)
{
    if (!teacher_dir || !target || !opts || !out_dir)
        return hylo_error_set(err, HYLO_ERR_USAGE, "hylo_upcycle: NULL argument");
    hylo_source teacher;
    hylo_upcycler u = {.teacher = &teacher, .seed = opts->seed, .rope_init = opts->rope_init};
    hylo_status st = check_options(opts, err);
    if (st == HYLO_OK) st = hylo_source_open(teacher_dir, &teacher, err);
    if (st != HYLO_OK) return st;
    hylo_mla_init *mla = calloc((size_t)teacher.cfg.num_layers, sizeof *mla);
    if (!mla) st = hylo_error_set(err, HYLO_ERR_NOMEM, "cannot allocate the MLA layer table");
    if (st == HYLO_OK) st = plan(&u, target, opts, err);
    if (st == HYLO_OK) st = hylo_output_check(out_dir, opts->force, &teacher_dir, 1, err);
    if (st == HYLO_OK) st = choose_ranks(&u, opts, err);
    if (st == HYLO_OK) st = hylo_hybrid_config_validate(&u.hybrid, &u.cfg, "target hybrid", err);
    if (st == HYLO_OK) st = hylo_model_params(&u.cfg, &u.hybrid, &u.params, &u.count, err);
    if (st == HYLO_OK) st = factorize(&u, mla, err);
    int64_t dropped = st == HYLO_OK ? warn_dropped(&u) : 0;
    fill_job job = {&u, mla};
    if (st == HYLO_OK) st = hylo_output_prepare(out_dir, err);
    if (st == HYLO_OK)
        st = hylo_output_write(out_dir, &u.cfg, &u.hybrid, u.params, u.count, fill, &job,
                               opts->max_shard_bytes, err);
    if (st == HYLO_OK && report) st = report_upcycle(&u, mla, dropped, report, err);
    for (int64_t i = 0; mla && i < teacher.cfg.num_layers; i++) hylo_mla_init_free(&mla[i]);
    hylo_source_close(&teacher);
    if (st == HYLO_OK && report && opts->probe_tokens > 0)
        st = hylo_probe_agreement(teacher_dir, out_dir, opts->probe_tokens, &report->probe, err);
    free(mla);
    free(u.params);
    return st;
}
