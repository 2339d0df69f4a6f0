/*
 * hybrid_config.c: which token mixer each layer of a hybrid uses, and the sizes of MLA, Mamba2
 * and Gated DeltaNet (spec sec. 1, 3-5): paper layouts, hybrid_config.json reading (hylo's
 * schema and Zebra-Llama's), validation and writing, and the two configs of a checkpoint
 * directory (a teacher's has no hybrid_config.json).
 *
 * hylo's schema (every section optional unless a layer uses it):
 *   {
 *     "hylo_hybrid": 1,
 *     "layer_types": ["mla", "gdn", ...],          one of attention | mla | mamba2 | gdn per layer
 *     "mla":    {"q_lora_rank": 1344 (0 or null: a full q_proj), "kv_lora_rank": 128,
 *                "qk_nope_head_dim": 32, "qk_rope_head_dim": 32, "v_head_dim": 64,
 *                "num_kv_heads": 8 (default: the teacher's), "q_latent_norm": false,
 *                "kv_latent_norm": false, "qk_norm": false,
 *                "rope_scaling": {"rope_type": "yarn", "factor": 32.0, ...} or null},
 *     "mamba2": {"num_heads": 32, "head_dim": 64, "d_state": 64, "ngroups": 1 (default of
 *                b_groups, c_groups, norm_groups), "x_heads" (default num_heads), "b_groups",
 *                "c_groups", "norm_groups", "d_conv": 4, "chunk_size": 256, "norm_eps": 1e-5},
 *     "gdn":    {"num_k_heads": 6, "num_v_heads": 6 (default num_k_heads), "head_k_dim": 256,
 *                "head_v_dim": 512, "conv_size": 4, "chunk_size": 64, "norm_eps": 1e-5}
 *   }
 * Zebra-Llama's files (recognized by "mla_layers" and no "layer_types") list the MLA layers;
 * every other layer is Mamba2 in the upcycled layout: "d_inner", "d_xb" and "ssm_cfg"
 * {"d_state", "d_conv", "ngroups", "headdim" (default d_state), "chunk_size"}, with the MLA
 * sizes at the top level ("q_lora_rank", "kv_lora_rank", "qk_rope_head_dim",
 * "qk_nope_head_dim", "v_head_dim", "use_full_kv_head", "rope_scaling").
 * The MLA rope slice uses the teacher's rope_theta.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hylo.h"
#include "io/json.h"

#define MAX_HYBRID_BYTES ((size_t)16 << 20)

static const char *const MIXER_NAMES[] = {"attention", "mla", "mamba2", "gdn"};
#define N_MIXERS (sizeof MIXER_NAMES / sizeof MIXER_NAMES[0])

const char *hylo_mixer_name(hylo_mixer mixer)
{
    return (size_t)mixer < N_MIXERS ? MIXER_NAMES[mixer] : "?";
}

/* ------------------------------------------------------------------------------------------ */
/* Sizes derived from the teacher (spec sec. 3-6)                                               */
/* ------------------------------------------------------------------------------------------ */

/* The MLA sizes the paper gives for its three bases. */
typedef struct {
    hylo_arch arch;
    int64_t hidden, head_dim;
    int64_t q_rank, kv_rank, nope, rope, v;
} mla_sizes;

static const mla_sizes PAPER_MLA[] = {
    {HYLO_ARCH_LLAMA, 2048, 64, 1344, 128, 32, 32, 64},   /* Llama-3.2-1B */
    {HYLO_ARCH_LLAMA, 3072, 128, 1536, 128, 64, 64, 128}, /* Llama-3.2-3B */
    {HYLO_ARCH_QWEN3, 2048, 128, 1344, 256, 64, 64, 128}, /* Qwen3-1.7B   */
};

static int64_t round_up8(int64_t x)
{
    return (x + 7) / 8 * 8;
}

/* MLA: the paper's sizes for its bases; otherwise nope = rope = hd/2 (rope even), v = hd,
 * r_kv = 2 hd, r_q = D/2 rounded up to a multiple of 8. KV heads Hm = Hkv. Qwen3 bases keep
 * per-head q/k norms (spec sec. 3 Decision). YaRN as the paper trains at 64K: Llama s 32,
 * L0 2048; Qwen s 2, L0 32768 (spec sec. 6). */
static void default_mla(const hylo_config *b, hylo_mla_config *m)
{
    int64_t rope = b->head_dim / 2 / 2 * 2;
    *m = (hylo_mla_config){round_up8(b->hidden_size / 2), 2 * b->head_dim, b->head_dim - rope,
                           rope, b->head_dim, b->num_kv_heads, false, false, b->qk_norm, {0}};
    for (size_t i = 0; i < sizeof PAPER_MLA / sizeof PAPER_MLA[0]; i++) {
        const mla_sizes *p = &PAPER_MLA[i];
        if (p->arch == b->arch && p->hidden == b->hidden_size && p->head_dim == b->head_dim) {
            m->q_rank = p->q_rank;
            m->kv_rank = p->kv_rank;
            m->nope = p->nope;
            m->rope = p->rope;
            m->v = p->v;
        }
    }
    hylo_rope_config *r = &m->rope_scaling;
    r->type = HYLO_ROPE_YARN;
    r->theta = b->rope.theta;
    r->factor = b->arch == HYLO_ARCH_LLAMA ? 32.0 : 2.0;
    r->original_max_position = b->arch == HYLO_ARCH_LLAMA ? 2048 : 32768;
    r->low_freq_factor = 0.0;
    r->high_freq_factor = 0.0;
    r->beta_fast = 32.0;
    r->beta_slow = 1.0;
    r->truncate = true;
}

/* Mamba2 in the upcycled layout (spec sec. 4): H heads of P = N = hd; x and B at width
 * Hkv*hd, repeated to heads; C at width H*hd; norm groups of hd channels. */
static void default_mamba2(const hylo_config *b, hylo_mamba2_config *m)
{
    *m = (hylo_mamba2_config){b->num_heads, b->head_dim, b->head_dim, b->num_kv_heads,
                              b->num_kv_heads, b->num_heads, b->num_heads, 4, 256, 1e-5};
}

/* GDN (spec sec. 5): the paper's bases have 3D/1024 heads (6 for D 2048, 9 for D 3072) with
 * H_k dk = 3D/4, dk 256 and dv = 2 dk; other teachers keep those proportions with H/2 heads. */
static void default_gdn(const hylo_config *b, hylo_gdn_config *g)
{
    int64_t D = b->hidden_size;
    int64_t heads = (3 * D) % 1024 == 0 ? 3 * D / 1024 : b->num_heads / 2;
    if (heads < 1) heads = 1;
    int64_t head_k = (3 * D / 4) / heads;
    *g = (hylo_gdn_config){heads, heads, head_k, 2 * head_k, 4, 64, 1e-5};
}

void hylo_hybrid_teacher(const hylo_config *base, hylo_hybrid_config *out)
{
    memset(out, 0, sizeof *out);
    out->num_layers = base->num_layers;
    for (int64_t i = 0; i < base->num_layers && i < HYLO_MAX_LAYERS; i++)
        out->mixers[i] = HYLO_MIXER_ATTENTION;
    default_mla(base, &out->mla);
    default_mamba2(base, &out->mamba2);
    default_gdn(base, &out->gdn);
}

/* ------------------------------------------------------------------------------------------ */
/* Layouts (spec sec. 1)                                                                        */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    int64_t layers, n_mla;
    int64_t index[16];
} mla_placement;

/* The MLA layers of the released HyLo models, by depth and MLA count. */
static const mla_placement PAPER_PLACEMENTS[] = {
    {16, 4, {1, 5, 10, 14}},
    {16, 8, {0, 2, 4, 6, 8, 10, 12, 14}},
    {28, 6, {0, 5, 10, 16, 21, 26}},
    {28, 7, {1, 5, 9, 13, 17, 21, 25}},
    {28, 14, {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26}},
};

/* Marks n_mla of the layers as MLA: the paper's choice where it has one, else evenly spread
 * with the first and the last layer included (i (L - 1) / (n - 1), rounded). */
static void place_mla(hylo_hybrid_config *hy, int64_t n_mla)
{
    int64_t L = hy->num_layers;
    for (size_t p = 0; p < sizeof PAPER_PLACEMENTS / sizeof PAPER_PLACEMENTS[0]; p++) {
        const mla_placement *pl = &PAPER_PLACEMENTS[p];
        if (pl->layers != L || pl->n_mla != n_mla) continue;
        for (int64_t i = 0; i < n_mla; i++) hy->mixers[pl->index[i]] = HYLO_MIXER_MLA;
        return;
    }
    for (int64_t i = 0; i < n_mla; i++) {
        int64_t at = n_mla == 1 ? 0 : (2 * i * (L - 1) + (n_mla - 1)) / (2 * (n_mla - 1));
        hy->mixers[at] = HYLO_MIXER_MLA;
    }
}

static bool parse_linear_name(const char *name, hylo_mixer *out)
{
    if (strcmp(name, "GDN") == 0 || strcmp(name, "gdn") == 0) *out = HYLO_MIXER_GDN;
    else if (strcmp(name, "M2") == 0 || strcmp(name, "mamba2") == 0) *out = HYLO_MIXER_MAMBA2;
    else if (strcmp(name, "mla") == 0) *out = HYLO_MIXER_MLA;
    else return false;
    return true;
}

hylo_status hylo_hybrid_layout(const hylo_config *base, const char *layout,
                               hylo_hybrid_config *out, hylo_error *err)
{
    if (base->num_layers < 1 || base->num_layers > HYLO_MAX_LAYERS)
        return hylo_error_set(err, HYLO_ERR_CONFIG, "layout '%s': the teacher has %lld layers; "
                              "1 to %d are supported", layout, (long long)base->num_layers,
                              HYLO_MAX_LAYERS);
    hylo_hybrid_config hy;
    hylo_hybrid_teacher(base, &hy);
    const int64_t L = base->num_layers;
    hylo_mixer linear;
    long long n_mla = 0, n_linear = 0;
    char kind[8] = "";
    int used = 0;
    if (strncmp(layout, "all-", 4) == 0 && parse_linear_name(layout + 4, &linear)) {
        for (int64_t i = 0; i < L; i++) hy.mixers[i] = linear;
    } else if (sscanf(layout, "%lldMLA%lld%7[A-Z2]%n", &n_mla, &n_linear, kind, &used) == 3 &&
               layout[used] == '\0' && parse_linear_name(kind, &linear) &&
               linear != HYLO_MIXER_MLA && n_mla >= 0 && n_linear >= 0) {
        if (n_mla > L || n_linear > L || n_mla + n_linear != L)
            return hylo_error_set(err, HYLO_ERR_CONFIG,
                                  "layout '%s' has %lld MLA + %lld linear layers but the teacher "
                                  "has %lld", layout, n_mla, n_linear, (long long)L);
        for (int64_t i = 0; i < L; i++) hy.mixers[i] = linear;
        place_mla(&hy, n_mla);
    } else {
        return hylo_error_set(err, HYLO_ERR_CONFIG,
                              "layout '%s' is not understood (expected NMLAM{GDN,M2} such as "
                              "4MLA12GDN or 8MLA8M2, or all-mla, all-gdn, all-mamba2)", layout);
    }
    hylo_status st = hylo_hybrid_config_validate(&hy, base, layout, err);
    if (st == HYLO_OK) *out = hy;
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* Reading                                                                                      */
/* ------------------------------------------------------------------------------------------ */

/* Reads an integer that must be present. */
static hylo_status read_required(const hylo_json_reader *r, const char *key, int64_t *out)
{
    bool found;
    hylo_status st = hylo_json_read_int(r, key, out, &found);
    if (st == HYLO_OK && !found)
        st = hylo_error_set(r->err, HYLO_ERR_CONFIG, "%s: field '%s%s' is required", r->label,
                            r->where, key);
    return st;
}

/* The object `key` of r as a reader (absent: *present = false). */
static hylo_status section(const hylo_json_reader *r, const char *key, const char *where,
                           hylo_json_reader *out, bool *present)
{
    const cJSON *item;
    hylo_status st = hylo_json_member(r, key, &item);
    *present = st == HYLO_OK && item;
    if (st != HYLO_OK || !item) return st;
    if (!cJSON_IsObject(item)) return hylo_json_type_error(r, key, "an object", item);
    *out = (hylo_json_reader){item, where, r->label, r->err};
    return HYLO_OK;
}

/* The MLA rope scaling of `r` (key "rope_scaling"); theta comes from the teacher. */
static hylo_status read_mla_rope(const hylo_json_reader *r, const char *where,
                                 const hylo_config *base, hylo_rope_config *rope)
{
    hylo_json_reader sub;
    bool present;
    hylo_status st = section(r, "rope_scaling", where, &sub, &present);
    if (st != HYLO_OK) return st;
    if (!present) {
        memset(rope, 0, sizeof *rope);
        rope->type = HYLO_ROPE_DEFAULT;
        rope->factor = 1.0;
        rope->beta_fast = 32.0;
        rope->beta_slow = 1.0;
        rope->truncate = true;
    } else {
        st = hylo_json_read_rope(&sub, base->max_position_embeddings, rope);
    }
    rope->theta = base->rope.theta;
    return st;
}

static hylo_status read_mla(const hylo_json_reader *r, const hylo_config *base,
                            hylo_mla_config *m)
{
    hylo_status st = hylo_json_read_int(r, "q_lora_rank", &m->q_rank, NULL);
    if (st == HYLO_OK) st = read_required(r, "kv_lora_rank", &m->kv_rank);
    if (st == HYLO_OK) st = read_required(r, "qk_nope_head_dim", &m->nope);
    if (st == HYLO_OK) st = read_required(r, "qk_rope_head_dim", &m->rope);
    if (st == HYLO_OK) st = read_required(r, "v_head_dim", &m->v);
    if (st == HYLO_OK) st = hylo_json_read_int(r, "num_kv_heads", &m->kv_heads, NULL);
    if (st == HYLO_OK) st = hylo_json_read_bool(r, "q_latent_norm", &m->q_latent_norm, NULL);
    if (st == HYLO_OK) st = hylo_json_read_bool(r, "kv_latent_norm", &m->kv_latent_norm, NULL);
    if (st == HYLO_OK) st = hylo_json_read_bool(r, "qk_norm", &m->qk_norm, NULL);
    if (st == HYLO_OK) st = read_mla_rope(r, r->where, base, &m->rope_scaling);
    return st;
}

static hylo_status read_mamba2(const hylo_json_reader *r, hylo_mamba2_config *m)
{
    int64_t ngroups = 1;
    hylo_status st = read_required(r, "num_heads", &m->nheads);
    if (st == HYLO_OK) st = read_required(r, "head_dim", &m->headdim);
    if (st == HYLO_OK) st = read_required(r, "d_state", &m->d_state);
    if (st == HYLO_OK) st = hylo_json_read_int(r, "ngroups", &ngroups, NULL);
    m->x_heads = m->nheads;
    m->b_groups = m->c_groups = m->norm_groups = ngroups;
    if (st == HYLO_OK) st = hylo_json_read_int(r, "x_heads", &m->x_heads, NULL);
    if (st == HYLO_OK) st = hylo_json_read_int(r, "b_groups", &m->b_groups, NULL);
    if (st == HYLO_OK) st = hylo_json_read_int(r, "c_groups", &m->c_groups, NULL);
    if (st == HYLO_OK) st = hylo_json_read_int(r, "norm_groups", &m->norm_groups, NULL);
    if (st == HYLO_OK) st = hylo_json_read_int(r, "d_conv", &m->d_conv, NULL);
    if (st == HYLO_OK) st = hylo_json_read_int(r, "chunk_size", &m->chunk, NULL);
    if (st == HYLO_OK) st = hylo_json_read_double(r, "norm_eps", &m->norm_eps, NULL);
    return st;
}

static hylo_status read_gdn(const hylo_json_reader *r, hylo_gdn_config *g)
{
    hylo_status st = read_required(r, "num_k_heads", &g->k_heads);
    g->v_heads = g->k_heads;
    if (st == HYLO_OK) st = hylo_json_read_int(r, "num_v_heads", &g->v_heads, NULL);
    if (st == HYLO_OK) st = read_required(r, "head_k_dim", &g->head_k);
    if (st == HYLO_OK) st = read_required(r, "head_v_dim", &g->head_v);
    if (st == HYLO_OK) st = hylo_json_read_int(r, "conv_size", &g->d_conv, NULL);
    if (st == HYLO_OK) st = hylo_json_read_int(r, "chunk_size", &g->chunk, NULL);
    if (st == HYLO_OK) st = hylo_json_read_double(r, "norm_eps", &g->norm_eps, NULL);
    return st;
}

static hylo_status read_layer_types(const hylo_json_reader *r, const cJSON *types,
                                    hylo_hybrid_config *hy)
{
    if (!cJSON_IsArray(types)) return hylo_json_type_error(r, "layer_types", "an array", types);
    int64_t n = cJSON_GetArraySize(types);
    if (n != hy->num_layers)
        return hylo_error_set(r->err, HYLO_ERR_CONFIG,
                              "%s: field 'layer_types' lists %lld layers but config.json has %lld",
                              r->label, (long long)n, (long long)hy->num_layers);
    int64_t i = 0;
    for (const cJSON *t = types->child; t; t = t->next, i++) {
        size_t k = 0;
        while (k < N_MIXERS && !(cJSON_IsString(t) && strcmp(t->valuestring, MIXER_NAMES[k]) == 0))
            k++;
        if (k == N_MIXERS) {
            char got[128];
            hylo_json_describe(t, got, sizeof got);
            return hylo_error_set(r->err, HYLO_ERR_CONFIG,
                                  "%s: field 'layer_types[%lld]': expected one of \"attention\", "
                                  "\"mla\", \"mamba2\", \"gdn\", got %s", r->label, (long long)i, got);
        }
        hy->mixers[i] = (hylo_mixer)k;
    }
    return HYLO_OK;
}

/* Reads the section `key` into its config when present; required when a layer uses it. */
static hylo_status read_section(const hylo_json_reader *r, const char *key, const char *where,
                                bool needed, const hylo_config *base, hylo_hybrid_config *hy)
{
    hylo_json_reader sub;
    bool present;
    hylo_status st = section(r, key, where, &sub, &present);
    if (st != HYLO_OK) return st;
    if (!present)
        return needed ? hylo_error_set(r->err, HYLO_ERR_CONFIG,
                                       "%s: layers of type \"%s\" need the section '%s'",
                                       r->label, key, key)
                      : HYLO_OK;
    if (strcmp(key, "mla") == 0) return read_mla(&sub, base, &hy->mla);
    if (strcmp(key, "mamba2") == 0) return read_mamba2(&sub, &hy->mamba2);
    return read_gdn(&sub, &hy->gdn);
}

static bool uses(const hylo_hybrid_config *hy, hylo_mixer mixer)
{
    for (int64_t i = 0; i < hy->num_layers; i++)
        if (hy->mixers[i] == mixer) return true;
    return false;
}

static hylo_status read_hylo_schema(const hylo_json_reader *r, const cJSON *types,
                                    const hylo_config *base, hylo_hybrid_config *hy)
{
    hylo_status st = read_layer_types(r, types, hy);
    if (st == HYLO_OK)
        st = read_section(r, "mla", "mla.", uses(hy, HYLO_MIXER_MLA), base, hy);
    if (st == HYLO_OK)
        st = read_section(r, "mamba2", "mamba2.", uses(hy, HYLO_MIXER_MAMBA2), base, hy);
    if (st == HYLO_OK) st = read_section(r, "gdn", "gdn.", uses(hy, HYLO_MIXER_GDN), base, hy);
    return st;
}

/* Zebra-Llama: "mla_layers" [indices]; the rest Mamba2 in the upcycled layout. */
static hylo_status read_zebra_layers(const hylo_json_reader *r, const cJSON *list,
                                     hylo_hybrid_config *hy)
{
    if (!cJSON_IsArray(list))
        return hylo_json_type_error(r, "mla_layers", "an array of layer indices", list);
    for (int64_t i = 0; i < hy->num_layers; i++) hy->mixers[i] = HYLO_MIXER_MAMBA2;
    for (const cJSON *e = list->child; e; e = e->next) {
        double v = cJSON_IsNumber(e) ? e->valuedouble : -1.0;
        if (v != floor(v) || v < 0 || v >= (double)hy->num_layers) {
            char got[128];
            hylo_json_describe(e, got, sizeof got);
            return hylo_error_set(r->err, HYLO_ERR_CONFIG,
                                  "%s: field 'mla_layers': expected layer indices in [0, %lld), got %s",
                                  r->label, (long long)hy->num_layers, got);
        }
        hy->mixers[(int64_t)v] = HYLO_MIXER_MLA;
    }
    return HYLO_OK;
}

static hylo_status read_zebra_mamba2(const hylo_json_reader *r, hylo_mamba2_config *m)
{
    int64_t d_inner = 0, d_xb = 0;
    hylo_json_reader ssm;
    bool present;
    hylo_status st = read_required(r, "d_inner", &d_inner);
    if (st == HYLO_OK) st = read_required(r, "d_xb", &d_xb);
    if (st == HYLO_OK) st = section(r, "ssm_cfg", "ssm_cfg.", &ssm, &present);
    if (st == HYLO_OK && !present)
        st = hylo_error_set(r->err, HYLO_ERR_CONFIG, "%s: field 'ssm_cfg' is required", r->label);
    if (st == HYLO_OK) st = read_required(&ssm, "d_state", &m->d_state);
    m->headdim = m->d_state;
    if (st == HYLO_OK) st = hylo_json_read_int(&ssm, "headdim", &m->headdim, NULL);
    if (st == HYLO_OK) st = hylo_json_read_int(&ssm, "d_conv", &m->d_conv, NULL);
    if (st == HYLO_OK) st = hylo_json_read_int(&ssm, "chunk_size", &m->chunk, NULL);
    if (st != HYLO_OK) return st;
    if (m->headdim <= 0 || m->d_state <= 0 || d_inner % m->headdim || d_xb % m->headdim ||
        d_xb % m->d_state)
        return hylo_error_set(r->err, HYLO_ERR_CONFIG,
                              "%s: d_inner %lld and d_xb %lld must be multiples of headdim %lld "
                              "and d_state %lld", r->label, (long long)d_inner, (long long)d_xb,
                              (long long)m->headdim, (long long)m->d_state);
    m->nheads = d_inner / m->headdim;
    m->x_heads = d_xb / m->headdim;
    m->b_groups = d_xb / m->d_state;
    m->c_groups = m->norm_groups = m->nheads;
    st = hylo_json_read_int(&ssm, "ngroups", &m->c_groups, NULL);
    m->norm_groups = m->c_groups;
    return st;
}

static hylo_status read_zebra_schema(const hylo_json_reader *r, const cJSON *list,
                                     const hylo_config *base, hylo_hybrid_config *hy)
{
    bool full_kv = false;
    hylo_status st = read_zebra_layers(r, list, hy);
    if (st == HYLO_OK && uses(hy, HYLO_MIXER_MLA)) {
        st = read_mla(r, base, &hy->mla);
        if (st == HYLO_OK) st = hylo_json_read_bool(r, "use_full_kv_head", &full_kv, NULL);
        if (full_kv) hy->mla.kv_heads = base->num_heads;
    }
    if (st == HYLO_OK && uses(hy, HYLO_MIXER_MAMBA2)) st = read_zebra_mamba2(r, &hy->mamba2);
    return st;
}

hylo_status hylo_hybrid_config_parse(const char *json, size_t len, const char *label,
                                     const hylo_config *base, hylo_hybrid_config *out,
                                     hylo_error *err)
{
    if (!label) label = "hybrid_config.json";
    cJSON *root;
    hylo_status st = hylo_json_parse_object(json, len, label,
                                            "fields such as 'layer_types' or 'mla_layers'",
                                            &root, err);
    if (st != HYLO_OK) return st;
    hylo_hybrid_config hy;
    hylo_hybrid_teacher(base, &hy); /* defaults of fields a file may leave out */
    const hylo_json_reader r = {root, "", label, err};
    const cJSON *types = NULL, *mla_layers = NULL;
    st = hylo_json_member(&r, "layer_types", &types);
    if (st == HYLO_OK) st = hylo_json_member(&r, "mla_layers", &mla_layers);
    if (st == HYLO_OK && base->num_layers > HYLO_MAX_LAYERS)
        st = hylo_error_set(err, HYLO_ERR_CONFIG, "%s: %lld layers; at most %d are supported",
                            label, (long long)base->num_layers, HYLO_MAX_LAYERS);
    if (st == HYLO_OK) {
        if (types) st = read_hylo_schema(&r, types, base, &hy);
        else if (mla_layers) st = read_zebra_schema(&r, mla_layers, base, &hy);
        else
            st = hylo_error_set(err, HYLO_ERR_CONFIG,
                                "%s: neither 'layer_types' (hylo) nor 'mla_layers' (Zebra-Llama) "
                                "says which mixer each layer uses", label);
    }
    cJSON_Delete(root);
    if (st == HYLO_OK) st = hylo_hybrid_config_validate(&hy, base, label, err);
    if (st == HYLO_OK) *out = hy;
    return st;
}

hylo_status hylo_hybrid_config_load(const char *path, const hylo_config *base,
                                    hylo_hybrid_config *out, hylo_error *err)
{
    char *text;
    size_t len;
    hylo_status st = hylo_json_read_file(path, MAX_HYBRID_BYTES, &text, &len, err);
    if (st != HYLO_OK) return st;
    st = hylo_hybrid_config_parse(text, len, path, base, out, err);
    free(text);
    return st;
}

hylo_status hylo_dir_config_load(const char *dir, hylo_config *cfg, hylo_error *err)
{
    char path[HYLO_PATH_MAX];
    hylo_status st = hylo_path_join(path, sizeof path, dir, "config.json", err);
    return st == HYLO_OK ? hylo_config_load(path, cfg, err) : st;
}

hylo_status hylo_dir_configs_load(const char *dir, hylo_config *cfg, hylo_hybrid_config *hybrid,
                                  bool *is_hybrid, hylo_error *err)
{
    if (is_hybrid) *is_hybrid = false;
    char path[HYLO_PATH_MAX];
    hylo_status st = hylo_dir_config_load(dir, cfg, err);
    if (st == HYLO_OK) st = hylo_path_join(path, sizeof path, dir, "hybrid_config.json", err);
    if (st != HYLO_OK) return st;
    if (access(path, F_OK) != 0) {
        if (errno != ENOENT)
            return hylo_error_set(err, HYLO_ERR_IO, "%s: %s", path, strerror(errno));
        hylo_hybrid_teacher(cfg, hybrid);
        return HYLO_OK;
    }
    if (is_hybrid) *is_hybrid = true;
    return hylo_hybrid_config_load(path, cfg, hybrid, err);
}

/* ------------------------------------------------------------------------------------------ */
/* Validation                                                                                   */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    const char *label;
    hylo_error *err;
    hylo_status st;
} checker;

/* Records the first failed condition. */
static void require(checker *c, bool ok, const char *field, const char *expected, int64_t value)
{
    if (c->st != HYLO_OK || ok) return;
    c->st = hylo_error_set(c->err, HYLO_ERR_CONFIG, "%s: field '%s' is %lld; expected %s",
                           c->label, field, (long long)value, expected);
}

static bool divides(int64_t a, int64_t b)
{
    return a > 0 && b % a == 0;
}

/* Every size is bounded by INT32_MAX, like the teacher's, so that products of a few of them
 * cannot overflow int64. */
#define MAX_SIZE ((int64_t)INT32_MAX)

static void check_size(checker *c, const char *field, int64_t v)
{
    require(c, v > 0 && v <= MAX_SIZE, field, "in [1, 2^31 - 1]", v);
}

static void check_mla(checker *c, const hylo_mla_config *m, const hylo_config *b)
{
    const int64_t MAX = MAX_SIZE;
    require(c, m->q_rank >= 0 && m->q_rank <= MAX, "mla.q_lora_rank", ">= 0 (0: full q_proj)", m->q_rank);
    require(c, m->kv_rank > 0 && m->kv_rank <= MAX, "mla.kv_lora_rank", "> 0", m->kv_rank);
    require(c, m->nope >= 0 && m->nope <= MAX, "mla.qk_nope_head_dim", ">= 0", m->nope);
    require(c, m->rope > 0 && m->rope % 2 == 0 && m->rope <= MAX, "mla.qk_rope_head_dim",
            "positive and even (rotated in pairs)", m->rope);
    require(c, m->v > 0 && m->v <= MAX, "mla.v_head_dim", "> 0", m->v);
    require(c, divides(m->kv_heads, b->num_heads), "mla.num_kv_heads",
            "a divisor of num_attention_heads", m->kv_heads);
    if (c->st == HYLO_OK) {
        char label[256];
        snprintf(label, sizeof label, "%s: section 'mla'", c->label);
        c->st = hylo_rope_check(&m->rope_scaling, label, c->err);
    }
}

static void check_mamba2(checker *c, const hylo_mamba2_config *m)
{
    check_size(c, "mamba2.num_heads", m->nheads);
    check_size(c, "mamba2.head_dim", m->headdim);
    check_size(c, "mamba2.d_state", m->d_state);
    if (c->st != HYLO_OK) return; /* the products below need bounded sizes */
    require(c, divides(m->x_heads, m->nheads), "mamba2.x_heads", "a divisor of num_heads", m->x_heads);
    require(c, divides(m->b_groups, m->nheads), "mamba2.b_groups", "a divisor of num_heads", m->b_groups);
    require(c, divides(m->c_groups, m->nheads), "mamba2.c_groups", "a divisor of num_heads", m->c_groups);
    require(c, divides(m->norm_groups, m->nheads * m->headdim), "mamba2.norm_groups",
            "a divisor of num_heads * head_dim", m->norm_groups);
    require(c, m->d_conv >= 1 && m->d_conv <= 64, "mamba2.d_conv", "in [1, 64]", m->d_conv);
    check_size(c, "mamba2.chunk_size", m->chunk);
    require(c, m->norm_eps > 0.0 && isfinite(m->norm_eps), "mamba2.norm_eps", "> 0", 0);
}

static void check_gdn(checker *c, const hylo_gdn_config *g)
{
    check_size(c, "gdn.num_k_heads", g->k_heads);
    check_size(c, "gdn.num_v_heads", g->v_heads);
    require(c, divides(g->k_heads, g->v_heads), "gdn.num_v_heads", "a multiple of num_k_heads",
            g->v_heads);
    check_size(c, "gdn.head_k_dim", g->head_k);
    check_size(c, "gdn.head_v_dim", g->head_v);
    require(c, g->d_conv >= 1 && g->d_conv <= 64, "gdn.conv_size", "in [1, 64]", g->d_conv);
    check_size(c, "gdn.chunk_size", g->chunk);
    require(c, g->norm_eps > 0.0 && isfinite(g->norm_eps), "gdn.norm_eps", "> 0", 0);
}

hylo_status hylo_hybrid_config_validate(const hylo_hybrid_config *hy, const hylo_config *base,
                                        const char *label, hylo_error *err)
{
    checker c = {label ? label : "hybrid config", err, HYLO_OK};
    require(&c, hy->num_layers == base->num_layers, "num_layers",
            "the teacher's num_hidden_layers", hy->num_layers);
    require(&c, hy->num_layers <= HYLO_MAX_LAYERS, "num_layers", "at most 256", hy->num_layers);
    for (int64_t i = 0; i < hy->num_layers && c.st == HYLO_OK; i++)
        require(&c, (size_t)hy->mixers[i] < N_MIXERS, "layer_types", "a known mixer", i);
    if (c.st == HYLO_OK && uses(hy, HYLO_MIXER_MLA)) check_mla(&c, &hy->mla, base);
    if (c.st == HYLO_OK && uses(hy, HYLO_MIXER_MAMBA2)) check_mamba2(&c, &hy->mamba2);
    if (c.st == HYLO_OK && uses(hy, HYLO_MIXER_GDN)) check_gdn(&c, &hy->gdn);
    return c.st;
}

/* ------------------------------------------------------------------------------------------ */
/* Writing                                                                                      */
/* ------------------------------------------------------------------------------------------ */

static void put_mla(hylo_text *t, const hylo_mla_config *m)
{
    bool first = true;
    hylo_text_printf(t, "{\n");
    hylo_json_put_bool(t, &first, 4, "kv_latent_norm", m->kv_latent_norm);
    hylo_json_put_int(t, &first, 4, "kv_lora_rank", m->kv_rank);
    hylo_json_put_int(t, &first, 4, "num_kv_heads", m->kv_heads);
    hylo_json_put_int(t, &first, 4, "q_lora_rank", m->q_rank);
    hylo_json_put_bool(t, &first, 4, "q_latent_norm", m->q_latent_norm);
    hylo_json_put_bool(t, &first, 4, "qk_norm", m->qk_norm);
    hylo_json_put_int(t, &first, 4, "qk_nope_head_dim", m->nope);
    hylo_json_put_int(t, &first, 4, "qk_rope_head_dim", m->rope);
    hylo_json_put_key(t, &first, 4, "rope_scaling");
    /* max_position -1: original_max_position_embeddings is always written (no HF reader, and
     * its quirk about that key, is involved here) */
    hylo_json_put_rope(t, 4, &m->rope_scaling, -1);
    hylo_json_put_int(t, &first, 4, "v_head_dim", m->v);
    hylo_text_printf(t, "\n  }");
}

static void put_mamba2(hylo_text *t, const hylo_mamba2_config *m)
{
    bool first = true;
    hylo_text_printf(t, "{\n");
    hylo_json_put_int(t, &first, 4, "b_groups", m->b_groups);
    hylo_json_put_int(t, &first, 4, "c_groups", m->c_groups);
    hylo_json_put_int(t, &first, 4, "chunk_size", m->chunk);
    hylo_json_put_int(t, &first, 4, "d_conv", m->d_conv);
    hylo_json_put_int(t, &first, 4, "d_state", m->d_state);
    hylo_json_put_int(t, &first, 4, "head_dim", m->headdim);
    hylo_json_put_int(t, &first, 4, "norm_groups", m->norm_groups);
    hylo_json_put_double(t, &first, 4, "norm_eps", m->norm_eps);
    hylo_json_put_int(t, &first, 4, "num_heads", m->nheads);
    hylo_json_put_int(t, &first, 4, "x_heads", m->x_heads);
    hylo_text_printf(t, "\n  }");
}

static void put_gdn(hylo_text *t, const hylo_gdn_config *g)
{
    bool first = true;
    hylo_text_printf(t, "{\n");
    hylo_json_put_int(t, &first, 4, "chunk_size", g->chunk);
    hylo_json_put_int(t, &first, 4, "conv_size", g->d_conv);
    hylo_json_put_int(t, &first, 4, "head_k_dim", g->head_k);
    hylo_json_put_int(t, &first, 4, "head_v_dim", g->head_v);
    hylo_json_put_double(t, &first, 4, "norm_eps", g->norm_eps);
    hylo_json_put_int(t, &first, 4, "num_k_heads", g->k_heads);
    hylo_json_put_int(t, &first, 4, "num_v_heads", g->v_heads);
    hylo_text_printf(t, "\n  }");
}

hylo_status hylo_hybrid_config_save(const hylo_hybrid_config *hy, const char *path,
                                    hylo_error *err)
{
    hylo_text t = {0};
    bool first = true;
    hylo_text_printf(&t, "{\n");
    if (uses(hy, HYLO_MIXER_GDN)) {
        hylo_json_put_key(&t, &first, 2, "gdn");
        put_gdn(&t, &hy->gdn);
    }
    hylo_json_put_int(&t, &first, 2, "hylo_hybrid", 1);
    hylo_json_put_key(&t, &first, 2, "layer_types");
    hylo_text_printf(&t, "[");
    for (int64_t i = 0; i < hy->num_layers; i++)
        hylo_text_printf(&t, "%s\"%s\"", i ? ", " : "", hylo_mixer_name(hy->mixers[i]));
    hylo_text_printf(&t, "]");
    if (uses(hy, HYLO_MIXER_MAMBA2)) {
        hylo_json_put_key(&t, &first, 2, "mamba2");
        put_mamba2(&t, &hy->mamba2);
    }
    if (uses(hy, HYLO_MIXER_MLA)) {
        hylo_json_put_key(&t, &first, 2, "mla");
        put_mla(&t, &hy->mla);
    }
    hylo_text_printf(&t, "\n}\n");
    hylo_status st = hylo_atomic_write_text(path, &t, err);
    hylo_text_free(&t);
    return st;
}
