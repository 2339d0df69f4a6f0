/*
 * hylo.h: the public C API of hylo, a reference implementation of HyLo hybrid upcycling.
 *
 * Conventions, which hold for every function below:
 *   - Every name carries the prefix `hylo_` (types) / `HYLO_` (constants).
 *   - Functions that can fail return a hylo_status and, when `err` is not NULL, fill it with a
 *     message naming the file, tensor or field at fault and what was expected. On failure no
 *     output argument is left half-built: pointers are set to NULL, files are not written.
 *   - Weights use the PyTorch nn.Linear layout: W is [out, in] and y = x W^T (+ b).
 *   - Activations are row-major fp32: a [T, D] matrix holds token t's vector at x + t*D.
 *   - There is no hidden global mutable state; objects are independent and may be used from
 *     different threads as long as one object is not used by two threads at once.
 */
#ifndef HYLO_H
#define HYLO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HYLO_VERSION "0.1.0"

/* ------------------------------------------------------------------------------------------ */
/* Errors                                                                                      */
/* ------------------------------------------------------------------------------------------ */

typedef enum {
    HYLO_OK = 0,
    HYLO_ERR_IO,      /* a file could not be opened, read, written or renamed          */
    HYLO_ERR_FORMAT,  /* a file's bytes are not valid safetensors / JSON               */
    HYLO_ERR_CONFIG,  /* a configuration field is missing, of the wrong type or invalid */
    HYLO_ERR_SHAPE,   /* a tensor is missing or has the wrong shape or dtype           */
    HYLO_ERR_RANGE,   /* an argument is out of range (token id, position, size)        */
    HYLO_ERR_NUMERIC, /* a NaN or Inf where finite values are required                 */
    HYLO_ERR_NOMEM,   /* an allocation failed                                          */
    HYLO_ERR_USAGE    /* the caller broke an API contract                              */
} hylo_status;

typedef struct {
    hylo_status status;
    char message[1024];
} hylo_error;

/* Records `status` and a printf-style message in err (if not NULL); returns `status`. */
hylo_status hylo_error_set(hylo_error *err, hylo_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prepends "context: " to the message already in err (to add a file or tensor name). */
hylo_status hylo_error_wrap(hylo_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
const char *hylo_status_name(hylo_status status);

/* ------------------------------------------------------------------------------------------ */
/* Element types and conversions                                                               */
/* ------------------------------------------------------------------------------------------ */

typedef enum { HYLO_F32 = 0, HYLO_F16, HYLO_BF16 } hylo_dtype;

const char *hylo_dtype_name(hylo_dtype dtype);  /* safetensors spelling: "F32", "F16", "BF16" */
size_t hylo_dtype_size(hylo_dtype dtype);
/* Parses a safetensors dtype string; false for anything but F32, F16, BF16. */
bool hylo_dtype_parse(const char *name, hylo_dtype *out);

float hylo_bf16_to_f32(uint16_t h);
uint16_t hylo_f32_to_bf16(float f);  /* round to nearest even; NaN stays NaN */
float hylo_f16_to_f32(uint16_t h);
uint16_t hylo_f32_to_f16(float f);   /* round to nearest even; overflow to Inf */
/* Converts n little-endian elements of `dtype` to/from fp32. */
void hylo_convert_to_f32(hylo_dtype dtype, const void *src, float *dst, size_t n);
void hylo_convert_from_f32(hylo_dtype dtype, const float *src, void *dst, size_t n);

/* ------------------------------------------------------------------------------------------ */
/* safetensors                                                                                 */
/* ------------------------------------------------------------------------------------------ */

#define HYLO_MAX_DIMS 8

/* A tensor inside a mapped safetensors file; `data` points into the mapping (not aligned). */
typedef struct {
    const char *name;
    hylo_dtype dtype;
    int ndim;
    int64_t shape[HYLO_MAX_DIMS];
    int64_t numel;
    const void *data;
    size_t nbytes;
} hylo_tensor_view;

typedef struct hylo_safetensors hylo_safetensors;

/* Maps and validates a whole file (see README "safetensors" for every rule checked). */
hylo_status hylo_safetensors_open(const char *path, hylo_safetensors **out, hylo_error *err);
/* Validates an in-memory image; `label` names it in messages. The buffer must outlive the
 * handle. */
hylo_status hylo_safetensors_open_memory(const void *bytes, size_t len, const char *label,
                                         hylo_safetensors **out, hylo_error *err);
void hylo_safetensors_close(hylo_safetensors *st);
size_t hylo_safetensors_count(const hylo_safetensors *st);
/* Tensors in the order of their data offsets. */
const hylo_tensor_view *hylo_safetensors_at(const hylo_safetensors *st, size_t i);
const hylo_tensor_view *hylo_safetensors_find(const hylo_safetensors *st, const char *name);
/* A string value of the "__metadata__" object, or NULL. */
const char *hylo_safetensors_metadata(const hylo_safetensors *st, const char *key);

/* What a writer is told about each tensor before any data arrives. */
typedef struct {
    const char *name;
    hylo_dtype dtype;
    int ndim;
    int64_t shape[HYLO_MAX_DIMS];
} hylo_tensor_spec;

typedef struct hylo_safetensors_writer hylo_safetensors_writer;

/* Starts writing `path` through a temporary file in the same directory. The header is padded
 * with spaces so that the data buffer starts 64-byte aligned (a multiple of 8, as the format
 * asks); tensors follow back to back in the given order, since HF's safetensors rejects gaps
 * between tensors.
 * `metadata` is NULL or a NULL-terminated list of key, value string pairs. */
hylo_status hylo_safetensors_writer_open(const char *path, const hylo_tensor_spec *specs,
                                         size_t count, const char *const *metadata,
                                         hylo_safetensors_writer **out, hylo_error *err);
/* Appends raw little-endian bytes, in spec order; a tensor may arrive in several pieces. */
hylo_status hylo_safetensors_writer_append(hylo_safetensors_writer *w, const void *bytes,
                                           size_t nbytes, hylo_error *err);
/* Checks that every byte arrived, fsyncs, renames over `path`, fsyncs the directory, frees w.
 * On failure the temporary file is removed and `path` is untouched. */
hylo_status hylo_safetensors_writer_commit(hylo_safetensors_writer *w, hylo_error *err);
/* Removes the temporary file and frees w. */
void hylo_safetensors_writer_abort(hylo_safetensors_writer *w);
/* One-call form: data[i] holds tensor i's bytes. */
hylo_status hylo_safetensors_write(const char *path, const hylo_tensor_spec *specs,
                                   const void *const *data, size_t count,
                                   const char *const *metadata, hylo_error *err);

/* ------------------------------------------------------------------------------------------ */
/* Checkpoints: a directory with model.safetensors or model.safetensors.index.json + shards     */
/* ------------------------------------------------------------------------------------------ */

typedef struct hylo_checkpoint hylo_checkpoint;

hylo_status hylo_checkpoint_open(const char *dir, hylo_checkpoint **out, hylo_error *err);
void hylo_checkpoint_close(hylo_checkpoint *ckpt);
size_t hylo_checkpoint_count(const hylo_checkpoint *ckpt);
const hylo_tensor_view *hylo_checkpoint_at(const hylo_checkpoint *ckpt, size_t i);
const hylo_tensor_view *hylo_checkpoint_find(const hylo_checkpoint *ckpt, const char *name);

/* Produces the bytes of tensor i (in spec order) into `dst`, `nbytes` long. */
typedef hylo_status (*hylo_tensor_fill_fn)(void *user, size_t i, void *dst, size_t nbytes,
                                           hylo_error *err);

/* Writes every tensor into `dir` (which must exist): one model.safetensors when the total is at
 * most `max_shard_bytes` (0 = no limit), otherwise model-0000K-of-0000N.safetensors shards and
 * model.safetensors.index.json, each file written atomically. Progress goes to stderr when
 * `progress_label` is not NULL. */
hylo_status hylo_checkpoint_write(const char *dir, const hylo_tensor_spec *specs, size_t count,
                                  hylo_tensor_fill_fn fill, void *user, uint64_t max_shard_bytes,
                                  const char *progress_label, hylo_error *err);

/* ------------------------------------------------------------------------------------------ */
/* Model configuration (HF config.json of llama, qwen2, qwen3)                                  */
/* ------------------------------------------------------------------------------------------ */

typedef enum { HYLO_ARCH_LLAMA = 0, HYLO_ARCH_QWEN2, HYLO_ARCH_QWEN3 } hylo_arch;

typedef enum {
    HYLO_ROPE_DEFAULT = 0,
    HYLO_ROPE_LINEAR,
    HYLO_ROPE_LLAMA3,
    HYLO_ROPE_YARN
} hylo_rope_type;

/* Rotary position settings. Fields not used by `type` are ignored. */
typedef struct {
    hylo_rope_type type;
    double theta;                     /* base                                              */
    double factor;                    /* linear, llama3, yarn                              */
    double low_freq_factor;           /* llama3                                            */
    double high_freq_factor;          /* llama3                                            */
    int64_t original_max_position;    /* llama3, yarn (L0)                                 */
    double beta_fast, beta_slow;      /* yarn, defaults 32 and 1                           */
    double attention_factor;          /* yarn: multiplies cos/sin; 0 = derive from factor  */
    double mscale, mscale_all_dim;    /* yarn (DeepSeek form); 0 = absent                  */
    bool truncate;                    /* yarn: floor/ceil the correction range (default)   */
} hylo_rope_config;

typedef struct {
    hylo_arch arch;
    int64_t vocab_size;
    int64_t hidden_size;              /* D                                                 */
    int64_t intermediate_size;        /* FFN                                               */
    int64_t num_layers;               /* L                                                 */
    int64_t num_heads;                /* H                                                 */
    int64_t num_kv_heads;             /* Hkv                                               */
    int64_t head_dim;                 /* hd                                                */
    int64_t max_position_embeddings;
    double rms_norm_eps;
    hylo_rope_config rope;
    bool tie_word_embeddings;
    bool qkv_bias;                    /* bias on q, k, v projections (Qwen2; attention_bias) */
    bool o_bias;                      /* bias on o_proj (Llama/Qwen3 attention_bias)       */
    bool mlp_bias;                    /* bias on gate/up/down (Llama mlp_bias)             */
    bool qk_norm;                     /* per-head q_norm / k_norm (Qwen3)                  */
    hylo_dtype dtype;                 /* torch_dtype / dtype of the stored weights         */
} hylo_config;

const char *hylo_arch_name(hylo_arch arch);  /* the HF model_type: "llama", "qwen2", "qwen3" */
const char *hylo_rope_type_name(hylo_rope_type type);

/* Parses config.json text; `label` names the source in messages. Applies HF's defaults. */
hylo_status hylo_config_parse(const char *json, size_t len, const char *label, hylo_config *out,
                              hylo_error *err);
hylo_status hylo_config_load(const char *path, hylo_config *out, hylo_error *err);
/* Checks internal consistency (positive sizes, heads dividing, rope fields present). */
hylo_status hylo_config_validate(const hylo_config *cfg, const char *label, hylo_error *err);
/* Writes an HF-style config.json (atomically) that hylo_config_load reads back identically. */
hylo_status hylo_config_save(const hylo_config *cfg, const char *path, hylo_error *err);

/* Built-in shapes: "tiny-llama", "tiny-qwen3", "llama-3.2-1b", "llama-3.2-3b", "qwen3-1.7b". */
hylo_status hylo_preset(const char *name, hylo_config *out, hylo_error *err);
/* NULL-terminated list of preset names. */
const char *const *hylo_preset_names(void);

/* ------------------------------------------------------------------------------------------ */
/* Hybrid models (hybrid_config.json): which token mixer each layer uses, and their sizes       */
/* ------------------------------------------------------------------------------------------ */

#define HYLO_MAX_LAYERS 256

typedef enum {
    HYLO_MIXER_ATTENTION = 0, /* the teacher's GQA self-attention  */
    HYLO_MIXER_MLA,           /* multi-head latent attention (sec. 3) */
    HYLO_MIXER_MAMBA2,        /* Mamba2 (sec. 4)                    */
    HYLO_MIXER_GDN            /* Gated DeltaNet (sec. 5)            */
} hylo_mixer;

typedef struct {
    int64_t q_rank;          /* q_lora_rank; 0 = a full q_proj                        */
    int64_t kv_rank;         /* kv_lora_rank                                          */
    int64_t nope, rope, v;   /* qk_nope_head_dim, qk_rope_head_dim, v_head_dim        */
    int64_t kv_heads;        /* Hm: Hkv (GQA form) or H ("full KV head")              */
    bool q_latent_norm;      /* q_a_layernorm                                         */
    bool kv_latent_norm;     /* kv_a_layernorm                                        */
    bool qk_norm;            /* per-head q_norm / k_norm (Qwen3 bases)                */
    hylo_rope_config rope_scaling; /* of the rope slice; theta is the teacher's (sec. 6) */
} hylo_mla_config;

typedef struct {
    int64_t nheads, headdim, d_state;   /* H, P, N; d_inner = H * P                       */
    int64_t x_heads;                    /* blocks of P in x  (Hkv upcycled, H stock)       */
    int64_t b_groups;                   /* blocks of N in B  (Hkv upcycled, ngroups stock) */
    int64_t c_groups;                   /* blocks of N in C  (H upcycled, ngroups stock)   */
    int64_t norm_groups;                /* groups of the gated RMSNorm                     */
    int64_t d_conv;                     /* 4                                               */
    int64_t chunk;                      /* SSD chunk of the prefill (256)                  */
    double norm_eps;                    /* 1e-5                                            */
} hylo_mamba2_config;

typedef struct {
    int64_t k_heads, v_heads;           /* H_k, H_v (a multiple of H_k)                    */
    int64_t head_k, head_v;             /* dk, dv                                          */
    int64_t d_conv;                     /* 4                                               */
    int64_t chunk;                      /* chunk of the prefill (64)                       */
    double norm_eps;                    /* of the output RMSNorm (1e-5)                    */
} hylo_gdn_config;

typedef struct {
    int64_t num_layers;
    hylo_mixer mixers[HYLO_MAX_LAYERS]; /* per layer                                       */
    hylo_mla_config mla;                /* used when a layer is MLA                        */
    hylo_mamba2_config mamba2;          /* used when a layer is Mamba2                     */
    hylo_gdn_config gdn;                /* used when a layer is GDN                        */
} hylo_hybrid_config;

const char *hylo_mixer_name(hylo_mixer mixer); /* "attention", "mla", "mamba2", "gdn" */

/* Every layer of `base` keeps its attention: the teacher as a (trivial) hybrid. */
void hylo_hybrid_teacher(const hylo_config *base, hylo_hybrid_config *out);
/* A layout of spec sec. 1 ("4MLA12GDN", "8MLA8M2", ...) or "all-mla", "all-gdn", "all-mamba2"
 * over `base`, with the MLA layer indices of the released models where the paper gives them
 * (else spread evenly, first and last layer included) and the MLA / Mamba2 / GDN sizes of
 * spec sec. 3-5 for the paper's bases (derived from the teacher's shape for others). */
hylo_status hylo_hybrid_layout(const hylo_config *base, const char *layout,
                               hylo_hybrid_config *out, hylo_error *err);
/* Reads hybrid_config.json (hylo's schema, or Zebra-Llama's mla_layers / kv_lora_rank /
 * d_inner / d_xb / ssm_cfg fields); `base` supplies the teacher's sizes. */
hylo_status hylo_hybrid_config_load(const char *path, const hylo_config *base,
                                    hylo_hybrid_config *out, hylo_error *err);
hylo_status hylo_hybrid_config_parse(const char *json, size_t len, const char *label,
                                     const hylo_config *base, hylo_hybrid_config *out,
                                     hylo_error *err);
hylo_status hylo_hybrid_config_validate(const hylo_hybrid_config *hy, const hylo_config *base,
                                        const char *label, hylo_error *err);
/* Built-in tiny hybrids for tests and the demo: "tiny-hybrid-m2" (tiny-llama, 2MLA2M2) and
 * "tiny-hybrid-gdn" (tiny-qwen3, 2MLA2GDN); NULL-terminated names. */
hylo_status hylo_hybrid_preset(const char *name, hylo_config *base, hylo_hybrid_config *hybrid,
                               hylo_error *err);
const char *const *hylo_hybrid_preset_names(void);

/* Sizes that `hylo info` reports (spec sec. 10). Cache bytes use `cache_bytes` per element
 * (2 for bf16); recurrent states are fp32. */
typedef struct {
    int64_t params_total;
    int64_t params_embedding;            /* embed_tokens + lm_head (once when tied)      */
    int64_t params_mlp;                  /* MLPs, layer norms and the final norm         */
    int64_t params_mixer[4];             /* per hylo_mixer, all layers of that kind      */
    int64_t layers_of[4];                /* layers per hylo_mixer                        */
    int64_t kv_bytes_per_token;          /* growing caches: attention K, V; MLA latent, k_pe */
    int64_t teacher_kv_bytes_per_token;  /* the same model with attention everywhere     */
    int64_t state_bytes_per_sequence;    /* Mamba2 / GDN recurrent and conv states       */
} hylo_model_stats;

hylo_status hylo_model_stats_of(const hylo_config *base, const hylo_hybrid_config *hybrid,
                                int64_t cache_bytes, hylo_model_stats *out, hylo_error *err);

/* Writes hybrid_config.json in hylo's schema (atomically). */
hylo_status hylo_hybrid_config_save(const hylo_hybrid_config *hy, const char *path,
                                    hylo_error *err);

/* ------------------------------------------------------------------------------------------ */
/* Models and inference                                                                        */
/* ------------------------------------------------------------------------------------------ */

typedef struct hylo_model hylo_model;
typedef struct hylo_state hylo_state;  /* per-sequence caches (KV cache of every layer) */

/* Loads config.json (and hybrid_config.json when present) and the weights of a checkpoint
 * directory. Weights stored as F16/BF16 are widened to fp32; every tensor's name, shape and
 * finiteness is checked, and a tensor the model has no parameter for is an error
 * (HYLO_ERR_SHAPE), except lm_head.weight beside tied embeddings when it equals them. */
hylo_status hylo_model_load(const char *dir, hylo_model **out, hylo_error *err);
void hylo_model_free(hylo_model *model);
const hylo_config *hylo_model_config(const hylo_model *model);
/* The model's mixers: all attention for a teacher checkpoint (no hybrid_config.json). */
const hylo_hybrid_config *hylo_model_hybrid(const hylo_model *model);

/* Writes a deterministic random checkpoint of `cfg` (config.json + safetensors in cfg->dtype)
 * into the existing directory `dir`; with `hybrid` not NULL the layers get its mixers and a
 * hybrid_config.json is written too, and with `hybrid` NULL a hybrid_config.json already in
 * `dir` is removed (the directory then holds a teacher); see hylo_checkpoint_write for
 * `max_shard_bytes`. The same seed always gives the same bytes. */
hylo_status hylo_init_random(const hylo_config *cfg, const hylo_hybrid_config *hybrid,
                             uint64_t seed, const char *dir, uint64_t max_shard_bytes,
                             hylo_error *err);

/* `capacity` is a hint for the number of positions to reserve; caches grow beyond it. */
hylo_status hylo_state_create(const hylo_model *model, int64_t capacity, hylo_state **out,
                              hylo_error *err);
void hylo_state_free(hylo_state *state);
int64_t hylo_state_length(const hylo_state *state);  /* positions already processed */

typedef enum {
    HYLO_LOGITS_NONE = 0,  /* logits is ignored                        */
    HYLO_LOGITS_LAST,      /* logits is [V]: the last position's        */
    HYLO_LOGITS_ALL        /* logits is [T, V]: every position's        */
} hylo_logits_mode;

/* Runs T tokens at positions state.length ... state.length + T - 1 and appends them to the
 * caches: T > 1 is a prefill (or a continued prefill), T = 1 a decode step. A call refused
 * before it computes (bad token ids, a state that cannot grow, no memory for activations)
 * leaves the state as it was. One that fails half-way (a device fault, say) may have advanced
 * some layers' caches and recurrent states: the state is then marked inconsistent, and every
 * later forward on it fails (HYLO_ERR_USAGE, naming the first failure) until it is freed. */
hylo_status hylo_forward(const hylo_model *model, hylo_state *state, const int32_t *tokens,
                         int64_t T, hylo_logits_mode mode, float *logits, hylo_error *err);

/* ------------------------------------------------------------------------------------------ */
/* Traces: named intermediate tensors of every forward of a state, for kernel debugging       */
/* ------------------------------------------------------------------------------------------ */

/* Names are "pos{P}.{tensor}" with P the first position of the forward call (so a prefill and
 * each decode step get their own), e.g. pos0.embed, pos0.layers.3.mla.q_pe,
 * pos8.layers.7.mamba.ssm_state, pos8.layers.9.mlp.out, pos8.norm.out, pos8.logits; the full
 * list is in README "Traces". Every backend emits the same names in the same order. */
typedef struct hylo_trace hylo_trace;

/* `filter` is a glob (fnmatch) on full names; NULL records everything. */
hylo_status hylo_trace_create(const char *filter, hylo_trace **out, hylo_error *err);
void hylo_trace_free(hylo_trace *trace);
size_t hylo_trace_count(const hylo_trace *trace);
/* Records the forwards of `state` into `trace` from now on (NULL stops recording). The trace
 * must outlive its use by the state. */
void hylo_state_set_trace(hylo_state *state, hylo_trace *trace);
/* Writes the recorded tensors (F32, in forward order) as one safetensors file (atomically);
 * `metadata` as in hylo_safetensors_writer_open. */
hylo_status hylo_trace_save(const hylo_trace *trace, const char *path,
                            const char *const *metadata, hylo_error *err);

/* The pieces of hylo_forward, for teacher forcing, distillation losses and running one layer
 * in isolation. Activations are [T, D] fp32. */
hylo_status hylo_embed(const hylo_model *model, const int32_t *tokens, int64_t T, float *x,
                       hylo_error *err);
/* Decoder layer `layer` on x at positions state.length .. state.length + T - 1: extends that
 * layer's cache or state but not the state's length. `mixer_out` (may be NULL) receives the
 * mixer output before the residual, `out` the layer output. */
hylo_status hylo_layer_forward(const hylo_model *model, hylo_state *state, int64_t layer,
                               const float *x, int64_t T, float *mixer_out, float *out,
                               hylo_error *err);
/* out = RMSNorm_final(x) */
void hylo_final_norm(const hylo_model *model, const float *x, int64_t T, float *out);
/* logits [T, V] = h lm_head^T, h the final-norm output */
void hylo_lm_head(const hylo_model *model, const float *h, int64_t T, float *logits);

/* ------------------------------------------------------------------------------------------ */
/* Distillation losses (spec sec. 8)                                                           */
/* ------------------------------------------------------------------------------------------ */

/*
 * Knowledge distillation from logits z [N, V], row r = b T + t of B sequences of T tokens.
 * With a = z / tau and p = softmax(a) per row (log-sum-exp, all sums in double):
 *   KL   = tau^2 / den * sum_r sum_v p_T (log p_T - log p_S)      den = B (batchmean) or N
 *   CE   = 1 / M * sum_{r with a target} (logsumexp(z_S[r]) - z_S[r, y_r])     (tau = 1)
 *          y_r = labels[r + 1] when t < T - 1 and labels[r + 1] != ignore_index (the next token
 *          of the same sequence, HF's shifted labels); M = the number of such rows
 *   loss = kl_weight KL + ce_weight CE          (a term of weight 0 adds nothing, even if +Inf)
 * Gradient with respect to the student logits, from d/dz_S [tau^2 KL(softmax(z_T/tau) ||
 * softmax(z_S/tau))] = tau (p_S - p_T):
 *   dL/dz_S[r, v] = kl_weight tau / den (p_S - p_T) + ce_weight / M (softmax(z_S)[v] - [v = y_r])
 * Masks and extremes: a logit may be -Inf (masked out). Where z_T = -Inf, p_T = 0 and the term
 * is 0 whatever z_S is (0 log 0 = 0), so -Inf at the same index of both adds nothing. Where
 * z_S = -Inf but p_T > 0 the KL is +Inf (the student rules out what the teacher allows): kl and
 * loss are +Inf, status HYLO_OK, and the gradient stays finite (p_S = 0 there: the limit of the
 * gradient as z_S -> -Inf); a target with z_S[y] = -Inf makes ce +Inf the same way. Finite
 * logits of any size (+-1e4) give finite results; nothing returned is ever NaN.
 * Errors: HYLO_ERR_NUMERIC for a NaN or +Inf logit or a row without a finite entry;
 * HYLO_ERR_RANGE for an empty batch (N, V or B < 1), N not a multiple of B, tau not finite and
 * > 0, a weight not finite and >= 0, a label outside [0, V) other than ignore_index, or labels
 * without any target (T = 1 or all ignored); HYLO_ERR_USAGE for ce_weight != 0 without labels.
 */
typedef enum {
    HYLO_KL_BATCHMEAN = 0, /* sum over rows / B (PyTorch's reduction="batchmean") */
    HYLO_KL_TOKEN_MEAN     /* sum over rows / N = B T                             */
} hylo_kl_reduction;

typedef struct {
    int64_t batch;                /* B: the N rows are B sequences of N / B tokens            */
    hylo_kl_reduction reduction;
    double temperature;           /* tau: KL of softmax(z / tau), times tau^2                 */
    double kl_weight;
    double ce_weight;             /* nonzero needs labels                                    */
    int32_t ignore_index;
    const char *progress;         /* memory-bounded forms: a progress line on stderr under this
                                     label, or NULL (silent)                                 */
} hylo_kd_options;

/* batch 1, batchmean, temperature 1, kl_weight 1, ce_weight 0, ignore_index -100, silent.
 * Every function below takes NULL options to mean these. */
hylo_kd_options hylo_kd_options_default(void);

typedef struct {
    double loss;      /* kl_weight * kl + ce_weight * ce                                     */
    double kl;        /* tau^2 sum_r KL_r / den; +Inf when the student rules out a teacher event */
    double ce;        /* mean next-token cross-entropy of the student; 0 without labels      */
    int64_t targets;  /* M, the rows ce averages over; 0 without labels                      */
} hylo_kd_result;

/* The full form. student, teacher: logits [N, V]; labels [N] or NULL; grad [N, V] receives
 * dL/dz_S (or NULL for the values only). */
hylo_status hylo_kd_loss(const float *student, const float *teacher, const int32_t *labels,
                         int64_t N, int64_t V, const hylo_kd_options *opt, hylo_kd_result *out,
                         float *grad, hylo_error *err);

/* One side of the memory-bounded forms: final-norm outputs and LM head, whose logits are
 * z = fp32(hidden lm_head^T) with double accumulation (bitwise what hylo_lm_head gives). */
typedef struct {
    const float *hidden;   /* [N, D]                                                         */
    const float *lm_head;  /* [V, D]                                                         */
    int64_t dim;           /* D; student and teacher may differ                              */
} hylo_kd_side;

/* The same loss and gradients as hylo_kd_loss on those logits, from hidden states, with the
 * gradients carried to the student's hidden states and head:
 *   dL/dhidden_S = G lm_head_S [N, D_S],   dL/dlm_head_S = G^T hidden_S [V, D_S],   G = dL/dz_S.
 * grad_hidden, grad_head may each be NULL. Besides the errors above (the logits are finite by
 * construction): HYLO_ERR_NUMERIC for non-finite hidden states or heads, or heads so large that
 * a logit could overflow fp32 (max row norm of hidden x max row norm of head > FLT_MAX);
 * HYLO_ERR_RANGE for D, chunk or tile < 1.
 *
 * Chunked over the sequence: `chunk` rows at a time, holding their [chunk, V] logits of both
 * models (as the paper does with C = 4096). */
hylo_status hylo_kd_loss_chunked(const hylo_kd_side *student, const hylo_kd_side *teacher,
                                 const int32_t *labels, int64_t N, int64_t V, int64_t chunk,
                                 const hylo_kd_options *opt, hylo_kd_result *out,
                                 float *grad_hidden, float *grad_head, hylo_error *err);
/* Logit-free: per chunk of rows, pass 1 runs the log-sum-exps online over vocabulary tiles of
 * `tile` entries; pass 2 recomputes each tile's logits to add its KL terms and push its
 * gradient into the hidden states and head. Working memory O(chunk x tile) plus a double
 * accumulator of dL/dlm_head_S [V, D_S] when grad_head is wanted; never a chunk x V matrix. */
hylo_status hylo_kd_loss_logit_free(const hylo_kd_side *student, const hylo_kd_side *teacher,
                                    const int32_t *labels, int64_t N, int64_t V, int64_t chunk,
                                    int64_t tile, const hylo_kd_options *opt,
                                    hylo_kd_result *out, float *grad_hidden, float *grad_head,
                                    hylo_error *err);

/* The LM head [V, D] of a loaded model (its embedding when tied), valid while the model lives:
 * with hylo_final_norm outputs it makes the hylo_kd_side of a model. */
const float *hylo_model_lm_head(const hylo_model *model);

/*
 * Enhanced ILD (stage I): each student layer is fed the teacher's input to that layer, and
 *   L = sum_l [ mean_t ||h_S[l,t] - h_T[l,t]||_2 + mean_t ||a_S[l,t] - a_T[l,t]||_2 ]
 *       + mean_t ||f_S[t] - f_T[t]||_2
 * with h the layer output, a the mixer output before the residual, f the final-norm output, and
 * un-squared L2 norms over D (in double: no fp32 input can overflow or underflow them). For one
 * term mean_t ||d_t||, d = s - t, the gradient with respect to s_t is d_t / (T ||d_t||), and 0
 * where d_t = 0: the norm has no derivative there and 0 is its subgradient of least norm (what
 * PyTorch's norm backward returns too). Errors: HYLO_ERR_RANGE for T, D < 1 or L outside
 * [1, HYLO_MAX_LAYERS]; HYLO_ERR_NUMERIC for a non-finite input.
 */
/* mean_t ||student_t - teacher_t||_2 of two [T, D] tensors; grad [T, D] or NULL. */
hylo_status hylo_ild_distance(const float *student, const float *teacher, int64_t T, int64_t D,
                              double *out, float *grad, hylo_error *err);

typedef struct {
    const float *hidden;  /* [L, T, D] layer outputs                                         */
    const float *mixer;   /* [L, T, D] mixer outputs before the residual                     */
    const float *final;   /* [T, D]    final-norm output of the last layer's output          */
} hylo_ild_tensors;

typedef struct {
    float *hidden, *mixer, *final;  /* dL/d of the student's tensors (same shapes), or NULL     */
} hylo_ild_grads;

typedef struct {
    double loss;                       /* the sum of every term below                        */
    double hidden[HYLO_MAX_LAYERS];    /* mean_t ||h_S - h_T|| of each layer                 */
    double mixer[HYLO_MAX_LAYERS];     /* mean_t ||a_S - a_T|| of each layer                 */
    double final;                      /* mean_t ||f_S - f_T||                               */
} hylo_ild_result;

/* grad may be NULL. */
hylo_status hylo_ild_loss(const hylo_ild_tensors *student, const hylo_ild_tensors *teacher,
                          int64_t L, int64_t T, int64_t D, hylo_ild_result *out,
                          const hylo_ild_grads *grad, hylo_error *err);

/* ------------------------------------------------------------------------------------------ */
/* Backends: which implementation computes a state's forwards                                  */
/* ------------------------------------------------------------------------------------------ */

/* HYLO_BACKEND_REF is the reference of ref/ (fp32 storage, double accumulation, for reading).
 * HYLO_BACKEND_CPU (backend_cpu/) computes the same function fast: OpenBLAS GEMMs, tiled
 * attention with online softmax, chunked scans with GEMM-shaped inner products, fp32
 * accumulation; every traced tensor within the NMSE of README "CPU backend" of the
 * reference's. Both emit the same trace names. */
typedef enum { HYLO_BACKEND_REF = 0, HYLO_BACKEND_CPU, HYLO_BACKEND_HIP } hylo_backend;

/* How the cpu backend stores the projection matrices that decode steps stream:
 * HYLO_WEIGHTS_F32 the loaded fp32 weights; HYLO_WEIGHTS_BF16 bf16 copies (half the bytes to
 * read per token), multiplied with fp32 accumulation: AVX512-BF16 dot products with the
 * activation split into two bf16 terms (16 significant bits) where the CPU has them, widened
 * weights against the fp32 activation elsewhere. Projections of more than 4 rows (prefill
 * GEMMs) keep the fp32 weights. On a bf16 checkpoint the copies are exact, and the results
 * differ from fp32 weights by rounding only. */
typedef enum { HYLO_WEIGHTS_F32 = 0, HYLO_WEIGHTS_BF16 } hylo_weights;

const char *hylo_backend_name(hylo_backend backend);  /* "ref", "cpu" */
bool hylo_backend_parse(const char *name, hylo_backend *out);
const char *hylo_weights_name(hylo_weights weights);  /* "f32", "bf16" */
bool hylo_weights_parse(const char *name, hylo_weights *out);

/* Selects the backend of the states created from now on (a loaded model starts with
 * HYLO_BACKEND_REF, HYLO_WEIGHTS_F32); states already created keep theirs. BF16 weights need
 * the cpu backend (HYLO_ERR_USAGE otherwise) and add a bf16 copy of every projection matrix
 * (half the fp32 size) that lives as long as the model. hylo_embed, hylo_final_norm and
 * hylo_lm_head always compute with the reference; hylo_forward and hylo_layer_forward with the
 * state's backend. Not thread-safe against other uses of the model. */
hylo_status hylo_model_set_backend(hylo_model *model, hylo_backend backend,
                                   hylo_weights weights, hylo_error *err);
hylo_backend hylo_state_backend(const hylo_state *state);

/* OpenBLAS chooses its kernels when the library loads and can misdetect an AVX-512 CPU
 * (Debian's 0.3.21 takes AMD Zen 4 for an AVX2 "Haswell" or reports a core it has no tuned
 * sgemm for). Returns "SkylakeX" when this CPU has AVX-512F, the loaded kernels are not
 * OpenBLAS's AVX-512 ones, and OPENBLAS_CORETYPE is unset; otherwise NULL. Since the variable
 * is read only at load time, a program that wants the faster kernels restarts itself with
 * OPENBLAS_CORETYPE set to the returned name (the hylo CLI does, first thing in main()). */
const char *hylo_blas_coretype_hint(void);

/* For benchmarks of decode at long context: makes `state` (fresh, length 0) look as if
 * `length` positions had been processed, without running them: attention K/V and MLA latent /
 * k_pe caches get `length` rows and the Mamba2 / GDN states values, all drawn from a normal
 * distribution of standard deviation 1 seeded by `seed`. The contents mean nothing; the cost
 * of each later decode step is that of a real sequence of that length. A failure once filling
 * has begun (out of memory) marks the state inconsistent, as a failed forward does. */
hylo_status hylo_state_fill_random(hylo_state *state, int64_t length, uint64_t seed,
                                   hylo_error *err);

/* ------------------------------------------------------------------------------------------ */
/* Upcycling (spec sec. 7): a teacher Transformer checkpoint becomes a hybrid checkpoint       */
/* ------------------------------------------------------------------------------------------ */

/* Parses comma-separated 0-based layer indices ("1,5,10,14"; "" selects none) into
 * selected[0 .. num_layers); out-of-range, repeated or malformed entries are errors. */
hylo_status hylo_parse_layer_list(const char *text, int64_t num_layers, bool *selected,
                                  hylo_error *err);
/* Explicit choices: layer i is MLA where mla[i], else `linear` (HYLO_MIXER_GDN or
 * HYLO_MIXER_MAMBA2), with the sizes hylo_hybrid_layout derives from `base`. */
hylo_status hylo_hybrid_choose(const hylo_config *base, const bool *mla, hylo_mixer linear,
                               hylo_hybrid_config *out, hylo_error *err);

typedef enum {
    HYLO_ROPE_INIT_SVD = 0, /* q rope rows from the SVD; k_pe rows = mean of W_K's rope rows */
    HYLO_ROPE_INIT_FRESH    /* both left at their fresh init (as the HyLo code port does)     */
} hylo_rope_init;

typedef struct {
    uint64_t seed;             /* of every parameter the teacher does not map                 */
    hylo_rope_init rope_init;
    /* Dynamic MLA ranks: in (0, 1], the smallest rank whose factors keep this share of the
     * sigma^2 of W_Q (q) or [W_K; W_V] (kv), rounded up to a multiple of 8 and capped at the
     * matrix's rank; the largest over the MLA layers (one rank serves all). 0: the target's
     * q_rank / kv_rank. */
    double q_energy, kv_energy;
    bool keep_dtype;           /* write in the teacher's dtype; else in `dtype`               */
    hylo_dtype dtype;
    uint64_t max_shard_bytes;  /* as hylo_checkpoint_write (0: one file)                      */
    int64_t probe_tokens;      /* length of the teacher <-> student probe; 0: no probe        */
    bool force;                /* replace a checkpoint already in the output directory        */
} hylo_upcycle_options;

/* seed 0, SVD rope init, the target's ranks, the teacher's dtype, 5000 MiB shards (as HF),
 * 64 probe tokens, no force. */
hylo_upcycle_options hylo_upcycle_options_default(void);

typedef struct {
    hylo_mixer mixer;
    double q_energy;       /* MLA: share of W_Q's sigma^2 that q_b q_a keeps (1: full q_proj) */
    double kv_energy;      /* MLA: share of [W_K; W_V]'s sigma^2 that the rank-r_kv factors keep;
                              both NaN for other mixers and when unknown (assembled layers)   */
    double kv_share;       /* KV-cache bytes per token / the teacher layer's (2 Hkv hd):
                              1 attention, (r_kv + rope) / (2 Hkv hd) MLA, 0 Mamba2 and GDN
                              (which keep a fixed-size state instead)                         */
    int64_t mixer_params;
    int64_t params;        /* mixer, both norms and the MLP                                   */
} hylo_layer_report;

/* Teacher <-> student agreement on a fixed pseudo-random token sequence. */
typedef struct {
    int64_t tokens;        /* T; 0: not measured                                              */
    double kl_mean;        /* mean over positions of KL(p_teacher || p_student), nats          */
    double kl_max;         /* the largest position's KL                                       */
    double top1;           /* share of positions whose most likely next tokens agree          */
} hylo_probe_result;

typedef struct {
    hylo_config config;                     /* config.json as written                      */
    hylo_hybrid_config hybrid;              /* hybrid_config.json (dynamic ranks resolved)  */
    hylo_layer_report layers[HYLO_MAX_LAYERS];
    int64_t params_total;
    double kv_share;                        /* KV cache of the model / the teacher's (sec. 10) */
    int64_t state_bytes_per_sequence;       /* Mamba2 / GDN states, fp32                   */
    int64_t dropped_tensors;                /* teacher tensors without a slot (biases, norms) */
    int64_t differing_shared;               /* assemble: shared tensors the two sources disagree on */
    hylo_probe_result probe;
} hylo_upcycle_report;

/* Upcycles the teacher checkpoint in `teacher_dir` (a Llama / Qwen2 / Qwen3 Transformer, never
 * modified) into `target` and writes it to `out_dir` (created; config.json, hybrid_config.json
 * and safetensors, each written atomically; an existing checkpoint there is refused unless
 * opts->force, and the teacher's directory always):
 *   MLA from GQA by SVD in double precision, Mamba2 and GDN from the attention weights
 *   (spec sec. 7); MLP, both norms, embeddings and the final norm copied (bit for bit when the
 *   output dtype is the teacher's); lm_head.weight written explicitly (the embedding when the
 *   teacher is tied) and tie_word_embeddings false; attention layers copied. Every other
 *   parameter takes its fresh init from opts->seed and its name (spec sec. 4): projections
 *   U(-1/sqrt(fan_in), 1/sqrt(fan_in)) and norm weights 1 (PyTorch's defaults), convs
 *   U(-1/sqrt(K), 1/sqrt(K)), dt_bias, A_log and D as mamba_ssm, GDN's o_norm 1. The MLA
 *   rope slice rotates at the teacher's rope_theta. Teacher tensors without a slot in the
 *   hybrid (Qwen2's q/k/v biases, o_proj biases, q/k norms outside MLA) are dropped with a
 *   warning on stderr. Target sizes the initializations cannot take (MLA v != head_dim,
 *   nope + rope > head_dim, ranks above a matrix's rank, Mamba2 outside the upcycled layout)
 *   are HYLO_ERR_CONFIG before anything is written.
 * Progress goes to stderr. `report` (may be NULL) receives the per-layer energies, shares and
 * counts and, with opts->probe_tokens > 0, the probe agreement (hylo_probe_agreement). */
hylo_status hylo_upcycle(const char *teacher_dir, const hylo_hybrid_config *target,
                         const hylo_upcycle_options *opts, const char *out_dir,
                         hylo_upcycle_report *report, hylo_error *err);

/* Builds a hybrid layer by layer from two upcycled models of one base (stage 0/I of the
 * recipe, spec sec. 9): layer i's mixer from `mla_dir` where mla_layers[i], else from
 * `linear_dir`; embeddings, norms, MLPs and lm_head from `mla_dir` (report->differing_shared
 * counts those that differ in `linear_dir`, with a warning). Written in mla_dir's dtype into
 * `out_dir` as hylo_upcycle does (`force`, `max_shard_bytes` likewise). */
hylo_status hylo_assemble(const char *mla_dir, const char *linear_dir, const bool *mla_layers,
                          const char *out_dir, uint64_t max_shard_bytes, bool force,
                          hylo_upcycle_report *report, hylo_error *err);

/* Runs both checkpoints on the same `tokens` pseudo-random token ids (a fixed sequence, the
 * same for every call) and compares their next-token distributions at every position. The
 * models are loaded one after the other, so only one is in memory at a time, and run on the
 * cpu backend in fp32. */
hylo_status hylo_probe_agreement(const char *teacher_dir, const char *student_dir,
                                 int64_t tokens, hylo_probe_result *out, hylo_error *err);

/* Writes the report as JSON (atomically); `teacher` and `out` name the directories in it. */
hylo_status hylo_upcycle_report_save(const hylo_upcycle_report *report, const char *teacher,
                                     const char *out, const char *path, hylo_error *err);

/* ------------------------------------------------------------------------------------------ */
/* The HIP backend                                                                             */
/* ------------------------------------------------------------------------------------------ */

/* HYLO_BACKEND_HIP (backend_hip/, built by `make hip` for AMD or NVIDIA GPUs; "hip" in the CLI)
 * computes the forward on one GPU: weights uploaded once when a model selects it, caches,
 * recurrent states and activations in device memory per state, GEMMs through hipBLAS / cuBLAS
 * or a built-in tiled kernel, fp32 accumulation; with HYLO_WEIGHTS_BF16 every projection
 * (prefill and decode) multiplies bf16 weights with the activations rounded to bf16. The
 * traces carry the names of the other backends, copied to the host only while tracing.
 * hylo_model_set_backend answers HYLO_ERR_USAGE in a build without it. */

#ifdef __cplusplus
}
#endif
#endif /* HYLO_H */
