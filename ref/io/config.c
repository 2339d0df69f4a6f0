/*
 * config.c: reads, checks and writes the HF config.json of llama, qwen2 and qwen3 models.
 *
 * Reading follows HF transformers' LlamaConfig / Qwen2Config / Qwen3Config (4.x and 5.x):
 *   - absent fields take the defaults of the model_type (table `ARCHS`). As in HF, Qwen2/Qwen3
 *     default num_key_value_heads to 32 when the key is absent and to num_attention_heads when it
 *     is null; Llama uses num_attention_heads for both. Qwen3 defaults head_dim to 128 when the
 *     key is absent; otherwise a missing or null head_dim is hidden_size / num_attention_heads
 *     and must divide exactly. JSON null counts as absent everywhere else.
 *   - Qwen2 always has q/k/v biases and no o bias; Llama and Qwen3 apply attention_bias to q, k,
 *     v and o; only Llama reads mlp_bias; Qwen3 always has q_norm/k_norm.
 *   - RoPE settings come from "rope_scaling" (4.x) and/or "rope_parameters" (5.x), with the type
 *     under "rope_type" or "type"; rope_theta (default 10000) may sit at the top level or inside
 *     either object. Every source given must agree. Supported types: default, linear, llama3,
 *     yarn.
 *   - "torch_dtype" (4.x) or "dtype" (5.x) gives the weight type; when absent the weights are
 *     taken to be float32 (HF's own default: torch_dtype None loads in fp32).
 *   - Decision: a field present with the wrong JSON type is an error (HF would often coerce);
 *     numbers for integer fields must be integral and at most 2^53 in magnitude; a key that
 *     appears twice in one object is an error (Python keeps the last, cJSON the first).
 *   - Bytes that are not one JSON value (including an empty file) are HYLO_ERR_FORMAT; valid
 *     JSON that is not an acceptable config is HYLO_ERR_CONFIG.
 *
 * Canonical form: the parser fills rope fields that the type does not use with fixed values
 * (factor 1, beta_fast 32, beta_slow 1, truncate true, the rest 0), so a parsed config compares
 * equal field by field with a preset written the same way and with itself after a save + load.
 *
 * Writing produces HF-style JSON (2-space indent, sorted keys, floats spelled as floats) with
 * rope_theta at the top level and rope_scaling (null for default), which both HF 4.x and 5.x
 * read, through a temporary file that is fsynced and renamed over the target.
 *
 * The JSON plumbing (typed reads, parsing, the text builder, atomic files) is json.c's. The rope
 * object itself is read and written here (hylo_json_read_rope, hylo_json_put_rope, declared in
 * json.h) since its canonical form is config logic; hybrid_config.json uses the same two.
 */
#include "io/json.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SIZE INT32_MAX                      /* bound of every size and position field   */
#define MAX_CONFIG_BYTES ((size_t)16 << 20)     /* config.json files are a few KB          */
#define DEFAULT_THETA 10000.0
#define DEFAULT_BETA_FAST 32.0
#define DEFAULT_BETA_SLOW 1.0

/* ------------------------------------------------------------------------------------------ */
/* Names and per-architecture defaults                                                          */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    const char *model_type;
    const char *architecture;
    int64_t vocab_size;
    int64_t intermediate_size;
    int64_t max_position_embeddings;
    int64_t kv_heads_if_absent;   /* 0: num_attention_heads */
    int64_t head_dim_if_absent;   /* 0: hidden_size / num_attention_heads */
} arch_info;

/* Indexed by hylo_arch. Shared HF defaults: hidden 4096, 32 layers, 32 heads, eps 1e-6,
 * rope_theta 10000, untied embeddings, no attention bias. */
static const arch_info ARCHS[] = {
    [HYLO_ARCH_LLAMA] = {"llama", "LlamaForCausalLM", 32000, 11008, 2048, 0, 0},
    [HYLO_ARCH_QWEN2] = {"qwen2", "Qwen2ForCausalLM", 151936, 22016, 32768, 32, 0},
    [HYLO_ARCH_QWEN3] = {"qwen3", "Qwen3ForCausalLM", 151936, 22016, 32768, 32, 128},
};
#define N_ARCHS (sizeof ARCHS / sizeof ARCHS[0])

static const char *const ROPE_NAMES[] = {
    [HYLO_ROPE_DEFAULT] = "default",
    [HYLO_ROPE_LINEAR] = "linear",
    [HYLO_ROPE_LLAMA3] = "llama3",
    [HYLO_ROPE_YARN] = "yarn",
};
#define N_ROPES (sizeof ROPE_NAMES / sizeof ROPE_NAMES[0])

static const struct {
    const char *name;
    hylo_dtype dtype;
} DTYPES[] = {{"float32", HYLO_F32}, {"float16", HYLO_F16}, {"bfloat16", HYLO_BF16}};
#define N_DTYPES (sizeof DTYPES / sizeof DTYPES[0])

const char *hylo_arch_name(hylo_arch arch)
{
    return (unsigned)arch < N_ARCHS ? ARCHS[arch].model_type : "unknown";
}

const char *hylo_rope_type_name(hylo_rope_type type)
{
    return (unsigned)type < N_ROPES ? ROPE_NAMES[type] : "unknown";
}

/* The config.json spelling of a dtype, or NULL for a value outside the enum. */
static const char *dtype_json_name(hylo_dtype dtype)
{
    for (size_t i = 0; i < N_DTYPES; i++)
        if (DTYPES[i].dtype == dtype) return DTYPES[i].name;
    return NULL;
}

/* The rope settings before any field of the config is read (see "Canonical form"). */
static hylo_rope_config rope_defaults(void)
{
    hylo_rope_config r;
    memset(&r, 0, sizeof r);
    r.type = HYLO_ROPE_DEFAULT;
    r.theta = DEFAULT_THETA;
    r.factor = 1.0;
    r.beta_fast = DEFAULT_BETA_FAST;
    r.beta_slow = DEFAULT_BETA_SLOW;
    r.truncate = true;
    return r;
}

/* ------------------------------------------------------------------------------------------ */
/* Top-level fields                                                                             */
/* ------------------------------------------------------------------------------------------ */

static hylo_status read_arch(const hylo_json_reader *r, hylo_arch *out)
{
    const char *name = NULL;
    hylo_status st = hylo_json_read_string(r, "model_type", &name, NULL);
    if (st != HYLO_OK) return st;
    if (!name)
        return hylo_error_set(r->err, HYLO_ERR_CONFIG,
                              "%s: field 'model_type' is missing; accepted values: llama, qwen2, "
                              "qwen3", r->label);
    for (size_t i = 0; i < N_ARCHS; i++) {
        if (strcmp(name, ARCHS[i].model_type) == 0) {
            *out = (hylo_arch)i;
            return HYLO_OK;
        }
    }
    return hylo_error_set(r->err, HYLO_ERR_CONFIG,
                          "%s: field 'model_type': \"%.64s\" is not supported; accepted values: "
                          "llama, qwen2, qwen3", r->label, name);
}

/* vocab, hidden, FFN, layers, heads, max positions and eps, over the defaults of the arch. */
static hylo_status read_sizes(const hylo_json_reader *r, hylo_config *c)
{
    const arch_info *a = &ARCHS[c->arch];
    c->vocab_size = a->vocab_size;
    c->hidden_size = 4096;
    c->intermediate_size = a->intermediate_size;
    c->num_layers = 32;
    c->num_heads = 32;
    c->max_position_embeddings = a->max_position_embeddings;
    c->rms_norm_eps = 1e-6;
    hylo_status st = hylo_json_read_int(r, "vocab_size", &c->vocab_size, NULL);
    if (st == HYLO_OK) st = hylo_json_read_int(r, "hidden_size", &c->hidden_size, NULL);
    if (st == HYLO_OK) st = hylo_json_read_int(r, "intermediate_size", &c->intermediate_size, NULL);
    if (st == HYLO_OK) st = hylo_json_read_int(r, "num_hidden_layers", &c->num_layers, NULL);
    if (st == HYLO_OK) st = hylo_json_read_int(r, "num_attention_heads", &c->num_heads, NULL);
    if (st == HYLO_OK)
        st = hylo_json_read_int(r, "max_position_embeddings", &c->max_position_embeddings, NULL);
    if (st == HYLO_OK) st = hylo_json_read_double(r, "rms_norm_eps", &c->rms_norm_eps, NULL);
    return st;
}

/* num_key_value_heads: absent -> the arch's default, null -> num_attention_heads. */
static hylo_status read_kv_heads(const hylo_json_reader *r, hylo_config *c)
{
    const cJSON *raw;
    hylo_status st = hylo_json_lookup(r, "num_key_value_heads", &raw);
    if (st != HYLO_OK) return st;
    int64_t if_absent = ARCHS[c->arch].kv_heads_if_absent;
    c->num_kv_heads = !raw && if_absent ? if_absent : c->num_heads;
    st = hylo_json_read_int(r, "num_key_value_heads", &c->num_kv_heads, NULL);
    if (st != HYLO_OK || raw || !if_absent || c->num_heads < 1) return st;
    if (c->num_heads % c->num_kv_heads != 0)
        return hylo_error_set(r->err, HYLO_ERR_CONFIG,
                              "%s: field 'num_key_value_heads' is absent, and %s's default "
                              "(%" PRId64 ") does not divide num_attention_heads (%" PRId64 "); "
                              "give num_key_value_heads explicitly", r->label,
                              ARCHS[c->arch].model_type, c->num_kv_heads, c->num_heads);
    return HYLO_OK;
}

/* head_dim: explicit, or the arch's default when absent (Qwen3: 128), or hidden / heads. */
static hylo_status read_head_dim(const hylo_json_reader *r, hylo_config *c)
{
    const cJSON *raw;
    bool found;
    hylo_status st = hylo_json_lookup(r, "head_dim", &raw);
    if (st == HYLO_OK) st = hylo_json_read_int(r, "head_dim", &c->head_dim, &found);
    if (st != HYLO_OK || found) return st;
    int64_t if_absent = ARCHS[c->arch].head_dim_if_absent;
    if (!raw && if_absent) {
        c->head_dim = if_absent;
        return HYLO_OK;
    }
    if (c->num_heads < 1) return HYLO_OK; /* hylo_config_validate names num_attention_heads */
    if (c->hidden_size % c->num_heads != 0)
        return hylo_error_set(r->err, HYLO_ERR_CONFIG,
                              "%s: field 'head_dim' is %s and hidden_size (%" PRId64 ") is not "
                              "divisible by num_attention_heads (%" PRId64 "); give head_dim "
                              "explicitly", r->label, raw ? "null" : "absent", c->hidden_size,
                              c->num_heads);
    c->head_dim = c->hidden_size / c->num_heads;
    return HYLO_OK;
}

/* Biases and q/k norms, fixed or chosen per arch (see the top of this file). */
static hylo_status read_block_flags(const hylo_json_reader *r, hylo_config *c)
{
    c->tie_word_embeddings = false;
    hylo_status st = hylo_json_read_bool(r, "tie_word_embeddings", &c->tie_word_embeddings, NULL);
    if (st != HYLO_OK) return st;
    c->qk_norm = c->arch == HYLO_ARCH_QWEN3;
    if (c->arch == HYLO_ARCH_QWEN2) {
        c->qkv_bias = true;
        return HYLO_OK;
    }
    bool attention_bias = false;
    st = hylo_json_read_bool(r, "attention_bias", &attention_bias, NULL);
    c->qkv_bias = c->o_bias = attention_bias;
    if (st == HYLO_OK && c->arch == HYLO_ARCH_LLAMA)
        st = hylo_json_read_bool(r, "mlp_bias", &c->mlp_bias, NULL);
    return st;
}

/* hidden_act must be silu; sliding windows are refused. */
static hylo_status read_attention_kind(const hylo_json_reader *r, int64_t num_layers)
{
    const char *act = NULL;
    hylo_status st = hylo_json_read_string(r, "hidden_act", &act, NULL);
    if (st != HYLO_OK) return st;
    if (act && strcmp(act, "silu") != 0)
        return hylo_error_set(r->err, HYLO_ERR_CONFIG,
                              "%s: field 'hidden_act': \"%.64s\" is not supported; only "
                              "\"silu\" is", r->label, act);
    bool sliding = false;
    st = hylo_json_read_bool(r, "use_sliding_window", &sliding, NULL);
    if (st != HYLO_OK) return st;
    if (sliding)
        return hylo_error_set(r->err, HYLO_ERR_CONFIG,
                              "%s: field 'use_sliding_window': sliding-window attention is not "
                              "supported", r->label);
    const cJSON *types;
    st = hylo_json_member(r, "layer_types", &types);
    if (st != HYLO_OK || !types) return st;
    if (!cJSON_IsArray(types))
        return hylo_json_type_error(r, "layer_types", "an array of strings", types);
    int64_t i = 0;
    for (const cJSON *t = types->child; t; t = t->next, i++) {
        if (!cJSON_IsString(t) || strcmp(t->valuestring, "full_attention") != 0) {
            char got[128];
            hylo_json_describe(t, got, sizeof got);
            return hylo_error_set(r->err, HYLO_ERR_CONFIG,
                                  "%s: field 'layer_types[%" PRId64 "]': got %s; only "
                                  "\"full_attention\" layers are supported", r->label, i, got);
        }
    }
    if (i != num_layers)
        return hylo_error_set(r->err, HYLO_ERR_CONFIG,
                              "%s: field 'layer_types' has %" PRId64 " entries but "
                              "num_hidden_layers is %" PRId64, r->label, i, num_layers);
    return HYLO_OK;
}

static hylo_status parse_dtype_name(const hylo_json_reader *r, const char *key, const char *name,
                                    hylo_dtype *out)
{
    for (size_t i = 0; i < N_DTYPES; i++) {
        if (strcmp(name, DTYPES[i].name) == 0) {
            *out = DTYPES[i].dtype;
            return HYLO_OK;
        }
    }
    return hylo_error_set(r->err, HYLO_ERR_CONFIG,
                          "%s: field '%s': \"%.64s\" is not supported; accepted values: float32, "
                          "float16, bfloat16", r->label, key, name);
}

/* torch_dtype (4.x) or dtype (5.x); both given must agree; float32 when neither is. */
static hylo_status read_dtype(const hylo_json_reader *r, hylo_dtype *out)
{
    const char *old_name = NULL, *new_name = NULL;
    hylo_status st = hylo_json_read_string(r, "torch_dtype", &old_name, NULL);
    if (st == HYLO_OK) st = hylo_json_read_string(r, "dtype", &new_name, NULL);
    if (st != HYLO_OK) return st;
    if (old_name && new_name && strcmp(old_name, new_name) != 0)
        return hylo_error_set(r->err, HYLO_ERR_CONFIG,
                              "%s: fields 'torch_dtype' (\"%.64s\") and 'dtype' (\"%.64s\") "
                              "disagree", r->label, old_name, new_name);
    *out = HYLO_F32;
    if (old_name) return parse_dtype_name(r, "torch_dtype", old_name, out);
    if (new_name) return parse_dtype_name(r, "dtype", new_name, out);
    return HYLO_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* RoPE                                                                                         */
/* ------------------------------------------------------------------------------------------ */

/* What one of rope_scaling / rope_parameters says. */
typedef struct {
    bool present;
    hylo_rope_config rope;   /* theta left at 0 */
    bool has_theta;
    double theta;
} rope_source;

static hylo_status read_rope_type(const hylo_json_reader *r, hylo_rope_type *out)
{
    const char *by_rope_type = NULL, *by_type = NULL;
    hylo_status st = hylo_json_read_string(r, "rope_type", &by_rope_type, NULL);
    if (st == HYLO_OK) st = hylo_json_read_string(r, "type", &by_type, NULL);
    if (st != HYLO_OK) return st;
    if (by_rope_type && by_type && strcmp(by_rope_type, by_type) != 0)
        return hylo_error_set(r->err, HYLO_ERR_CONFIG,
                              "%s: fields '%srope_type' (\"%.64s\") and '%stype' (\"%.64s\") "
                              "disagree", r->label, r->where, by_rope_type, r->where, by_type);
    const char *name = by_rope_type ? by_rope_type : by_type ? by_type : "default";
    for (size_t i = 0; i < N_ROPES; i++) {
        if (strcmp(name, ROPE_NAMES[i]) == 0) {
            *out = (hylo_rope_type)i;
            return HYLO_OK;
        }
    }
    return hylo_error_set(r->err, HYLO_ERR_CONFIG,
                          "%s: field '%s%s': rope type \"%.64s\" is not supported; supported: "
                          "default, linear, llama3, yarn", r->label, r->where,
                          by_rope_type ? "rope_type" : "type", name);
}

static hylo_status missing_rope_field(const hylo_json_reader *r, const char *key,
                                      hylo_rope_type type)
{
    return hylo_error_set(r->err, HYLO_ERR_CONFIG,
                          "%s: field '%s%s' is required for rope type \"%s\"", r->label, r->where,
                          key, ROPE_NAMES[type]);
}

static hylo_status read_required_double(const hylo_json_reader *r, const char *key,
                                        hylo_rope_type type, double *out)
{
    bool found;
    hylo_status st = hylo_json_read_double(r, key, out, &found);
    if (st == HYLO_OK && !found) st = missing_rope_field(r, key, type);
    return st;
}

static hylo_status read_llama3(const hylo_json_reader *r, hylo_rope_config *rope)
{
    const hylo_rope_type t = HYLO_ROPE_LLAMA3;
    bool found;
    hylo_status st = read_required_double(r, "factor", t, &rope->factor);
    if (st == HYLO_OK) st = read_required_double(r, "low_freq_factor", t, &rope->low_freq_factor);
    if (st == HYLO_OK)
        st = read_required_double(r, "high_freq_factor", t, &rope->high_freq_factor);
    if (st == HYLO_OK)
        st = hylo_json_read_int(r, "original_max_position_embeddings",
                                &rope->original_max_position, &found);
    if (st == HYLO_OK && !found) st = missing_rope_field(r, "original_max_position_embeddings", t);
    return st;
}

/* An optional positive number where HF treats absence (not zero) as "derive". */
static hylo_status read_positive(const hylo_json_reader *r, const char *key, double *out)
{
    bool found;
    hylo_status st = hylo_json_read_double(r, key, out, &found);
    if (st == HYLO_OK && found && !(*out > 0.0))
        return hylo_error_set(r->err, HYLO_ERR_CONFIG, "%s: field '%s%s': %g must be positive",
                              r->label, r->where, key, *out);
    return st;
}

static hylo_status read_yarn(const hylo_json_reader *r, int64_t max_position,
                             hylo_rope_config *rope)
{
    hylo_status st = read_required_double(r, "factor", HYLO_ROPE_YARN, &rope->factor);
    rope->original_max_position = max_position;
    if (st == HYLO_OK)
        st = hylo_json_read_int(r, "original_max_position_embeddings",
                                &rope->original_max_position, NULL);
    if (st == HYLO_OK) st = hylo_json_read_double(r, "beta_fast", &rope->beta_fast, NULL);
    if (st == HYLO_OK) st = hylo_json_read_double(r, "beta_slow", &rope->beta_slow, NULL);
    if (st == HYLO_OK) st = read_positive(r, "attention_factor", &rope->attention_factor);
    if (st == HYLO_OK) st = hylo_json_read_double(r, "mscale", &rope->mscale, NULL);
    if (st == HYLO_OK) st = hylo_json_read_double(r, "mscale_all_dim", &rope->mscale_all_dim, NULL);
    if (st == HYLO_OK) st = hylo_json_read_bool(r, "truncate", &rope->truncate, NULL);
    return st;
}

/* The type first (it decides which fields are required), then that type's fields over the
 * canonical defaults; out->theta is kept. */
hylo_status hylo_json_read_rope(const hylo_json_reader *r, int64_t max_position,
                                hylo_rope_config *out)
{
    double theta = out->theta;
    *out = rope_defaults();
    out->theta = theta;
    hylo_status st = read_rope_type(r, &out->type);
    if (st != HYLO_OK) return st;
    switch (out->type) {
    case HYLO_ROPE_LINEAR: return read_required_double(r, "factor", HYLO_ROPE_LINEAR, &out->factor);
    case HYLO_ROPE_LLAMA3: return read_llama3(r, out);
    case HYLO_ROPE_YARN: return read_yarn(r, max_position, out);
    case HYLO_ROPE_DEFAULT: break;
    }
    return HYLO_OK;
}

/* Reads the object `key` ("rope_scaling" or "rope_parameters") of the top-level reader. */
static hylo_status read_rope_source(const hylo_json_reader *top, const char *key, const char *where,
                                    int64_t max_position, rope_source *src)
{
    memset(src, 0, sizeof *src);
    const cJSON *item;
    hylo_status st = hylo_json_member(top, key, &item);
    if (st != HYLO_OK || !item) return st;
    if (!cJSON_IsObject(item)) return hylo_json_type_error(top, key, "an object or null", item);
    const hylo_json_reader r = {item, where, top->label, top->err};
    src->present = true;
    st = hylo_json_read_rope(&r, max_position, &src->rope);
    if (st == HYLO_OK) st = hylo_json_read_double(&r, "rope_theta", &src->theta, &src->has_theta);
    return st;
}

/* The first rope field in which a and b differ (theta aside), or NULL. */
static const char *rope_difference(const hylo_rope_config *a, const hylo_rope_config *b)
{
    if (a->type != b->type) return "rope_type";
    if (a->factor != b->factor) return "factor";
    if (a->low_freq_factor != b->low_freq_factor) return "low_freq_factor";
    if (a->high_freq_factor != b->high_freq_factor) return "high_freq_factor";
    if (a->original_max_position != b->original_max_position)
        return "original_max_position_embeddings";
    if (a->beta_fast != b->beta_fast) return "beta_fast";
    if (a->beta_slow != b->beta_slow) return "beta_slow";
    if (a->attention_factor != b->attention_factor) return "attention_factor";
    if (a->mscale != b->mscale) return "mscale";
    if (a->mscale_all_dim != b->mscale_all_dim) return "mscale_all_dim";
    if (a->truncate != b->truncate) return "truncate";
    return NULL;
}

/* rope_theta from the top level, rope_scaling or rope_parameters: all given must agree. */
static hylo_status merge_theta(const hylo_json_reader *r, const rope_source *scaling,
                               const rope_source *params, double *theta)
{
    bool has_top;
    double top = 0.0;
    hylo_status st = hylo_json_read_double(r, "rope_theta", &top, &has_top);
    if (st != HYLO_OK) return st;
    const struct {
        const char *name;
        bool has;
        double value;
    } given[] = {{"rope_theta", has_top, top},
                 {"rope_scaling.rope_theta", scaling->has_theta, scaling->theta},
                 {"rope_parameters.rope_theta", params->has_theta, params->theta}};
    const char *first = NULL;
    *theta = DEFAULT_THETA;
    for (size_t i = 0; i < sizeof given / sizeof given[0]; i++) {
        if (!given[i].has) continue;
        if (!first) {
            first = given[i].name;
            *theta = given[i].value;
        } else if (given[i].value != *theta) {
            return hylo_error_set(r->err, HYLO_ERR_CONFIG,
                                  "%s: field '%s' (%.17g) disagrees with '%s' (%.17g)", r->label,
                                  given[i].name, given[i].value, first, *theta);
        }
    }
    return HYLO_OK;
}

static hylo_status read_rope(const hylo_json_reader *r, hylo_config *c)
{
    rope_source scaling, params;
    int64_t max_pos = c->max_position_embeddings;
    hylo_status st = read_rope_source(r, "rope_scaling", "rope_scaling.", max_pos, &scaling);
    if (st == HYLO_OK)
        st = read_rope_source(r, "rope_parameters", "rope_parameters.", max_pos, &params);
    if (st != HYLO_OK) return st;
    if (scaling.present && params.present) {
        const char *diff = rope_difference(&scaling.rope, &params.rope);
        if (diff)
            return hylo_error_set(r->err, HYLO_ERR_CONFIG,
                                  "%s: fields 'rope_scaling' and 'rope_parameters' disagree on "
                                  "'%s'", r->label, diff);
    }
    c->rope = params.present ? params.rope : scaling.present ? scaling.rope : rope_defaults();
    return merge_theta(r, &scaling, &params, &c->rope.theta);
}

/* ------------------------------------------------------------------------------------------ */
/* Parsing                                                                                      */
/* ------------------------------------------------------------------------------------------ */

static hylo_status read_config(const hylo_json_reader *r, hylo_config *c)
{
    hylo_status st = read_arch(r, &c->arch);
    if (st == HYLO_OK) st = read_sizes(r, c);
    if (st == HYLO_OK) st = read_kv_heads(r, c);
    if (st == HYLO_OK) st = read_head_dim(r, c);
    if (st == HYLO_OK) st = read_block_flags(r, c);
    if (st == HYLO_OK) st = read_attention_kind(r, c->num_layers);
    if (st == HYLO_OK) st = read_dtype(r, &c->dtype);
    if (st == HYLO_OK) st = read_rope(r, c);
    return st;
}

hylo_status hylo_config_parse(const char *json, size_t len, const char *label, hylo_config *out,
                              hylo_error *err)
{
    if (!label) label = "config.json";
    if ((!json && len) || !out)
        return hylo_error_set(err, HYLO_ERR_USAGE, "%s: hylo_config_parse: NULL argument", label);
    cJSON *root;
    hylo_status st =
        hylo_json_parse_object(json, len, label, "fields such as 'model_type'", &root, err);
    if (st != HYLO_OK) return st;
    hylo_config cfg;
    memset(&cfg, 0, sizeof cfg);
    const hylo_json_reader r = {root, "", label, err};
    st = read_config(&r, &cfg);
    cJSON_Delete(root);
    if (st == HYLO_OK) st = hylo_config_validate(&cfg, label, err);
    if (st == HYLO_OK) *out = cfg;
    return st;
}

hylo_status hylo_config_load(const char *path, hylo_config *out, hylo_error *err)
{
    if (!path || !out)
        return hylo_error_set(err, HYLO_ERR_USAGE, "hylo_config_load: NULL argument");
    char *text;
    size_t len = 0;
    hylo_status st = hylo_json_read_file(path, MAX_CONFIG_BYTES, &text, &len, err);
    if (st != HYLO_OK) return st;
    st = hylo_config_parse(text, len, path, out, err);
    free(text);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* Validation                                                                                   */
/* ------------------------------------------------------------------------------------------ */

static hylo_status check_size(const char *label, const char *field, int64_t v, hylo_error *err)
{
    if (v >= 1 && v <= MAX_SIZE) return HYLO_OK;
    return hylo_error_set(err, HYLO_ERR_CONFIG,
                          "%s: field '%s': %" PRId64 " is out of range (expected 1 to %d)", label,
                          field, v, MAX_SIZE);
}

static hylo_status check_shape(const hylo_config *c, const char *label, hylo_error *err)
{
    const struct {
        const char *field;
        int64_t value;
    } sizes[] = {{"vocab_size", c->vocab_size},
                 {"hidden_size", c->hidden_size},
                 {"intermediate_size", c->intermediate_size},
                 {"num_hidden_layers", c->num_layers},
                 {"num_attention_heads", c->num_heads},
                 {"num_key_value_heads", c->num_kv_heads},
                 {"head_dim", c->head_dim},
                 {"max_position_embeddings", c->max_position_embeddings}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        hylo_status st = check_size(label, sizes[i].field, sizes[i].value, err);
        if (st != HYLO_OK) return st;
    }
    if (c->num_layers > HYLO_MAX_LAYERS)
        return hylo_error_set(err, HYLO_ERR_CONFIG,
                              "%s: field 'num_hidden_layers': %" PRId64 " layers; at most %d are "
                              "supported", label, c->num_layers, HYLO_MAX_LAYERS);
    if (c->num_heads % c->num_kv_heads != 0)
        return hylo_error_set(err, HYLO_ERR_CONFIG,
                              "%s: field 'num_key_value_heads': %" PRId64 " does not divide "
                              "num_attention_heads (%" PRId64 ")", label, c->num_kv_heads,
                              c->num_heads);
    if (c->head_dim % 2 != 0)
        return hylo_error_set(err, HYLO_ERR_CONFIG,
                              "%s: field 'head_dim': %" PRId64 " is odd; RoPE needs pairs", label,
                              c->head_dim);
    if (!(isfinite(c->rms_norm_eps) && c->rms_norm_eps > 0.0))
        return hylo_error_set(err, HYLO_ERR_CONFIG,
                              "%s: field 'rms_norm_eps': %g must be positive and finite", label,
                              c->rms_norm_eps);
    return HYLO_OK;
}

/* The bias / norm flags must be ones config.json can express for the arch. */
static hylo_status check_flags(const hylo_config *c, const char *label, hylo_error *err)
{
    const char *arch = ARCHS[c->arch].model_type;
    bool qk_norm = c->arch == HYLO_ARCH_QWEN3;
    if (c->qk_norm != qk_norm)
        return hylo_error_set(err, HYLO_ERR_CONFIG, "%s: field 'qk_norm': %s %s q_norm/k_norm",
                              label, arch, qk_norm ? "always has" : "has no");
    if (c->mlp_bias && c->arch != HYLO_ARCH_LLAMA)
        return hylo_error_set(err, HYLO_ERR_CONFIG, "%s: field 'mlp_bias': %s has no MLP biases",
                              label, arch);
    if (c->arch == HYLO_ARCH_QWEN2 && (!c->qkv_bias || c->o_bias))
        return hylo_error_set(err, HYLO_ERR_CONFIG,
                              "%s: fields 'qkv_bias' and 'o_bias': qwen2 always has q/k/v biases "
                              "and no o bias", label);
    if (c->arch != HYLO_ARCH_QWEN2 && c->qkv_bias != c->o_bias)
        return hylo_error_set(err, HYLO_ERR_CONFIG,
                              "%s: field 'attention_bias': %s sets the q, k, v and o biases "
                              "together, but qkv_bias is %s and o_bias is %s", label, arch,
                              c->qkv_bias ? "true" : "false", c->o_bias ? "true" : "false");
    return HYLO_OK;
}

static hylo_status rope_range_error(const char *label, const char *field, double v,
                                    const char *expected, hylo_error *err)
{
    return hylo_error_set(err, HYLO_ERR_CONFIG, "%s: field 'rope_scaling.%s': %g %s", label,
                          field, v, expected);
}

static hylo_status check_llama3(const hylo_rope_config *r, const char *label, hylo_error *err)
{
    if (!(isfinite(r->factor) && r->factor >= 1.0))
        return rope_range_error(label, "factor", r->factor, "must be at least 1", err);
    if (!(isfinite(r->low_freq_factor) && r->low_freq_factor > 0.0))
        return rope_range_error(label, "low_freq_factor", r->low_freq_factor, "must be positive",
                                err);
    if (!(isfinite(r->high_freq_factor) && r->high_freq_factor > r->low_freq_factor))
        return rope_range_error(label, "high_freq_factor", r->high_freq_factor,
                                "must be greater than low_freq_factor", err);
    return check_size(label, "rope_scaling.original_max_position_embeddings",
                      r->original_max_position, err);
}

static hylo_status check_yarn(const hylo_rope_config *r, const char *label, hylo_error *err)
{
    if (!(isfinite(r->factor) && r->factor >= 1.0))
        return rope_range_error(label, "factor", r->factor, "must be at least 1", err);
    if (!(isfinite(r->beta_slow) && r->beta_slow > 0.0))
        return rope_range_error(label, "beta_slow", r->beta_slow, "must be positive", err);
    if (!(isfinite(r->beta_fast) && r->beta_fast > r->beta_slow))
        return rope_range_error(label, "beta_fast", r->beta_fast,
                                "must be greater than beta_slow", err);
    const struct {
        const char *field;
        double value;
    } optional[] = {{"attention_factor", r->attention_factor},
                    {"mscale", r->mscale},
                    {"mscale_all_dim", r->mscale_all_dim}};
    for (size_t i = 0; i < sizeof optional / sizeof optional[0]; i++)
        if (!(isfinite(optional[i].value) && optional[i].value >= 0.0))
            return rope_range_error(label, optional[i].field, optional[i].value,
                                    "must be positive, or 0 for absent", err);
    return check_size(label, "rope_scaling.original_max_position_embeddings",
                      r->original_max_position, err);
}

hylo_status hylo_rope_check(const hylo_rope_config *r, const char *label, hylo_error *err)
{
    if (!(isfinite(r->theta) && r->theta > 0.0))
        return hylo_error_set(err, HYLO_ERR_CONFIG,
                              "%s: field 'rope_theta': %g must be positive and finite", label,
                              r->theta);
    switch (r->type) {
    case HYLO_ROPE_DEFAULT: return HYLO_OK;
    case HYLO_ROPE_LINEAR:
        if (!(isfinite(r->factor) && r->factor > 0.0))
            return rope_range_error(label, "factor", r->factor, "must be positive", err);
        return HYLO_OK;
    case HYLO_ROPE_LLAMA3: return check_llama3(r, label, err);
    case HYLO_ROPE_YARN: return check_yarn(r, label, err);
    }
    return hylo_error_set(err, HYLO_ERR_CONFIG, "%s: field 'rope_scaling.rope_type': unknown "
                          "type %d", label, (int)r->type);
}

hylo_status hylo_config_validate(const hylo_config *cfg, const char *label, hylo_error *err)
{
    if (!label) label = "config";
    if (!cfg)
        return hylo_error_set(err, HYLO_ERR_USAGE, "%s: hylo_config_validate: NULL config", label);
    if ((unsigned)cfg->arch >= N_ARCHS)
        return hylo_error_set(err, HYLO_ERR_CONFIG, "%s: field 'model_type': unknown arch %d",
                              label, (int)cfg->arch);
    if (!dtype_json_name(cfg->dtype))
        return hylo_error_set(err, HYLO_ERR_CONFIG, "%s: field 'torch_dtype': unknown dtype %d",
                              label, (int)cfg->dtype);
    hylo_status st = check_shape(cfg, label, err);
    if (st == HYLO_OK) st = check_flags(cfg, label, err);
    if (st == HYLO_OK) st = hylo_rope_check(&cfg->rope, label, err);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* Writing                                                                                      */
/* ------------------------------------------------------------------------------------------ */

/* Only the fields of the type; yarn omits what reads back the same when absent. */
void hylo_json_put_rope(hylo_text *t, int indent, const hylo_rope_config *rope,
                        int64_t max_position)
{
    const hylo_rope_config *r = rope;
    if (r->type == HYLO_ROPE_DEFAULT) {
        hylo_text_put(t, "null", 4);
        return;
    }
    const int in = indent + 2;
    bool first = true;
    hylo_text_put(t, "{\n", 2);
    if (r->type == HYLO_ROPE_YARN && r->attention_factor > 0.0)
        hylo_json_put_double(t, &first, in, "attention_factor", r->attention_factor);
    if (r->type == HYLO_ROPE_YARN) {
        hylo_json_put_double(t, &first, in, "beta_fast", r->beta_fast);
        hylo_json_put_double(t, &first, in, "beta_slow", r->beta_slow);
    }
    hylo_json_put_double(t, &first, in, "factor", r->factor);
    if (r->type == HYLO_ROPE_LLAMA3) {
        hylo_json_put_double(t, &first, in, "high_freq_factor", r->high_freq_factor);
        hylo_json_put_double(t, &first, in, "low_freq_factor", r->low_freq_factor);
    }
    if (r->type == HYLO_ROPE_YARN && r->mscale > 0.0)
        hylo_json_put_double(t, &first, in, "mscale", r->mscale);
    if (r->type == HYLO_ROPE_YARN && r->mscale_all_dim > 0.0)
        hylo_json_put_double(t, &first, in, "mscale_all_dim", r->mscale_all_dim);
    /* yarn: HF 4.x reads an explicit original_max_position_embeddings as a request to replace
     * factor by max_position_embeddings / original, so it is written only when it differs. */
    if (r->type == HYLO_ROPE_LLAMA3 ||
        (r->type == HYLO_ROPE_YARN && r->original_max_position != max_position))
        hylo_json_put_int(t, &first, in, "original_max_position_embeddings",
                          r->original_max_position);
    hylo_json_put_string(t, &first, in, "rope_type", hylo_rope_type_name(r->type));
    if (r->type == HYLO_ROPE_YARN && !r->truncate)
        hylo_json_put_bool(t, &first, in, "truncate", false);
    hylo_text_printf(t, "\n%*s}", indent, "");
}

static void format_config(const hylo_config *c, hylo_text *t)
{
    const arch_info *a = &ARCHS[c->arch];
    bool first = true;
    hylo_text_printf(t, "{\n");
    hylo_json_put_key(t, &first, 2, "architectures");
    hylo_text_printf(t, "[\n    \"%s\"\n  ]", a->architecture);
    if (c->arch != HYLO_ARCH_QWEN2) hylo_json_put_bool(t, &first, 2, "attention_bias", c->o_bias);
    hylo_json_put_int(t, &first, 2, "head_dim", c->head_dim);
    hylo_json_put_string(t, &first, 2, "hidden_act", "silu");
    hylo_json_put_int(t, &first, 2, "hidden_size", c->hidden_size);
    hylo_json_put_int(t, &first, 2, "intermediate_size", c->intermediate_size);
    hylo_json_put_int(t, &first, 2, "max_position_embeddings", c->max_position_embeddings);
    if (c->arch == HYLO_ARCH_LLAMA) hylo_json_put_bool(t, &first, 2, "mlp_bias", c->mlp_bias);
    hylo_json_put_string(t, &first, 2, "model_type", a->model_type);
    hylo_json_put_int(t, &first, 2, "num_attention_heads", c->num_heads);
    hylo_json_put_int(t, &first, 2, "num_hidden_layers", c->num_layers);
    hylo_json_put_int(t, &first, 2, "num_key_value_heads", c->num_kv_heads);
    hylo_json_put_double(t, &first, 2, "rms_norm_eps", c->rms_norm_eps);
    hylo_json_put_key(t, &first, 2, "rope_scaling");
    hylo_json_put_rope(t, 2, &c->rope, c->max_position_embeddings);
    hylo_json_put_double(t, &first, 2, "rope_theta", c->rope.theta);
    hylo_json_put_bool(t, &first, 2, "tie_word_embeddings", c->tie_word_embeddings);
    hylo_json_put_string(t, &first, 2, "torch_dtype", dtype_json_name(c->dtype));
    hylo_json_put_int(t, &first, 2, "vocab_size", c->vocab_size);
    hylo_text_printf(t, "\n}\n");
}

hylo_status hylo_config_save(const hylo_config *cfg, const char *path, hylo_error *err)
{
    if (!cfg || !path)
        return hylo_error_set(err, HYLO_ERR_USAGE, "hylo_config_save: NULL argument");
    hylo_status st = hylo_config_validate(cfg, path, err);
    if (st != HYLO_OK) return st;
    hylo_text t = {NULL, 0, 0, false};
    format_config(cfg, &t);
    st = hylo_atomic_write_text(path, &t, err);
    hylo_text_free(&t);
    return st;
}
