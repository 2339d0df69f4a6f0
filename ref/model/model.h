/* model.h: the parameters and in-memory form of teachers and hybrids (internal). One table of
 * parameters drives the loader, the random initializer and `hylo info`, so they cannot
 * disagree. */
#ifndef HYLO_MODEL_H
#define HYLO_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "hylo.h"
#include "layers/gdn.h"
#include "layers/mamba2.h"
#include "layers/mla.h"

/* The teacher's GQA self-attention (NULL where the architecture has no such tensor). */
typedef struct {
    const float *wq, *bq;          /* [H*hd, D], [H*hd]  */
    const float *wk, *bk;          /* [Hkv*hd, D]        */
    const float *wv, *bv;          /* [Hkv*hd, D]        */
    const float *wo, *bo;          /* [D, H*hd], [D]     */
    const float *q_norm, *k_norm;  /* [hd] (Qwen3)       */
} hylo_attention_weights;

/* The fp32 weights of one decoder layer: the norms and MLP of every layer, and the weights of
 * the layer's token mixer. */
typedef struct {
    hylo_mixer mixer;
    const float *input_norm;          /* [D]          */
    hylo_attention_weights attn;      /* HYLO_MIXER_ATTENTION */
    hylo_mla_weights mla;             /* HYLO_MIXER_MLA       */
    hylo_mamba2_weights mamba2;       /* HYLO_MIXER_MAMBA2    */
    hylo_gdn_weights gdn;             /* HYLO_MIXER_GDN       */
    const float *post_norm;           /* [D]          */
    const float *w_gate, *b_gate;     /* [F, D], [F]  */
    const float *w_up, *b_up;         /* [F, D], [F]  */
    const float *w_down, *b_down;     /* [D, F], [D]  */
} hylo_layer_weights;

/* How `hylo init` draws a parameter (the fresh inits of spec sec. 4, 5 and 7 included). */
typedef enum {
    HYLO_PARAM_EMBEDDING, /* N(0, (2/sqrt(D))^2): O(1) logits through a tied head        */
    HYLO_PARAM_LINEAR,    /* N(0, 1/fan_in), fan_in = the last dimension                */
    HYLO_PARAM_BIAS,      /* N(0, 0.02^2)                                               */
    HYLO_PARAM_NORM,      /* 1 + N(0, 0.1^2): near one, but every entry matters         */
    HYLO_PARAM_CONV,      /* U(-1/sqrt(K), 1/sqrt(K)), PyTorch's conv1d default          */
    HYLO_PARAM_DT_BIAS,   /* dt ~ logU[1e-3, 0.1] floored at 1e-4; dt + log(-expm1(-dt)) */
    HYLO_PARAM_A_LOG,     /* log(U[1, 16])                                              */
    HYLO_PARAM_ONES       /* exactly 1 (Mamba2 D, GDN o_norm)                            */
} hylo_param_kind;

typedef struct {
    char name[128];
    int ndim;
    int64_t shape[3];
    hylo_param_kind kind;
    int64_t fan_in;       /* inputs per output (the last dimension; K for a conv bias)           */
    hylo_mixer mixer;     /* the block it belongs to; ATTENTION also for norms, MLP, embeddings */
    bool is_mlp;          /* part of the SwiGLU MLP or the two layer norms                       */
    int64_t layer;        /* -1 for model-level tensors                                          */
    size_t slot;          /* offsetof the pointer in hylo_layer_weights, or in hylo_model for
                             model-level tensors                                                 */
} hylo_param;

/* The per-sequence cache or state of one layer, by its mixer. The growing caches (k, v, mla)
 * hold values of the state's backend's cache type (hylo_ops.cache_value_bytes). */
typedef struct {
    float *k, *v;                 /* attention: [capacity, Hkv, hd]         */
    hylo_mla_cache mla;           /* MLA: [capacity, r_kv], [capacity, rope] */
    hylo_mamba2_state mamba2;     /* Mamba2: fixed size                      */
    hylo_gdn_state gdn;           /* GDN: fixed size                         */
} hylo_layer_state;

struct hylo_model {
    hylo_config cfg;
    hylo_hybrid_config hybrid;   /* all attention for a teacher */
    hylo_checkpoint *ckpt;       /* kept open: F32 weights point into its mapping */
    const float *embed;          /* [V, D] */
    const float *final_norm;     /* [D]    */
    const float *lm_head;        /* [V, D]; == embed when tied */
    hylo_layer_weights *layers;  /* [L]    */
    double *rope_inv_freq;       /* [hd/2]   teacher attention           */
    double rope_scale;           /* multiplies cos/sin                   */
    double *mla_inv_freq;        /* [rope/2] MLA rope slice (YaRN)       */
    double mla_rope_scale;       /* YaRN mscale on cos/sin               */
    float **owned;               /* widened copies to free */
    size_t n_owned;
    const struct hylo_ops *ops;  /* the backend of states created from now on (ref by default) */
    hylo_weights weights;        /* the cpu backend's weight storage for decode           */
    void *backend_weights;       /* what that backend keeps per model (bf16 copies), or NULL */
    void (*backend_weights_free)(void *backend_weights);
    void *device_weights;        /* a device-resident backend's uploaded copies, or NULL  */
    void (*device_weights_free)(void *device_weights);
};

struct hylo_state {
    const hylo_model *model;
    int64_t length;            /* positions processed              */
    int64_t capacity;          /* positions the growing caches hold */
    hylo_layer_state *layers;  /* [L]                               */
    hylo_trace *trace;         /* records the forwards when not NULL */
    const struct hylo_ops *ops; /* its backend, fixed at creation   */
    void *ctx;                 /* that backend's context (workspace), NULL for ref */
    float *decode_act;         /* the forward's activations for one token (decode steps);
                                  a device backend's also holds the V logits after them */
    char broken[160];          /* why a forward failed half-way (caches and states then
                                  disagree with length): "" while consistent */
};

/* ------------------------------------------------------------------------------------------ */
/* Backends. forward.c is the one model definition: it computes every op through the state's  */
/* table. hylo_ref_ops (forward.c) calls ref/layers; hylo_cpu_ops (backend_cpu/model/ops.c)     */
/* the optimized layers of backend_cpu/layers. `ctx` is the state's backend context.          */
/* Shapes and equations are those of the ref functions each entry is named after.            */
/* A device-resident backend (hip) also fills the memory entries at the end of the table.     */
/* ------------------------------------------------------------------------------------------ */

/* The direction of a device-resident backend's copy. */
typedef enum { HYLO_COPY_TO_DEVICE = 0, HYLO_COPY_TO_HOST, HYLO_COPY_ON_DEVICE } hylo_copy_kind;

typedef struct hylo_ops {
    hylo_backend backend;
    /* Per model, when it selects this backend (NULL: nothing to prepare): fills
     * backend_weights and backend_weights_free. */
    hylo_status (*model_prepare)(hylo_model *model, hylo_error *err);
    /* Per state: the context its ops receive, with the workspace of a decode step already
     * allocated (NULL: the backend needs none). */
    hylo_status (*context_create)(const hylo_model *model, void **ctx, hylo_error *err);
    void (*context_free)(void *ctx);

    /* hylo_ref_linear */
    void (*linear)(void *ctx, const float *x, const float *W, const float *b, float *y,
                   int64_t T, int64_t in, int64_t out);
    /* hylo_ref_rmsnorm */
    void (*rmsnorm)(void *ctx, const float *x, const float *w, float *y, int64_t rows,
                    int64_t n, double eps);
    /* hylo_ref_rope_rotate_half on T tokens x [T, heads, dim] at positions pos0 .. */
    void (*rope_rotate_half)(void *ctx, float *x, int64_t T, int64_t heads, int64_t dim,
                             int64_t pos0, const double *inv_freq, double scale);
    /* hylo_ref_attention */
    hylo_status (*attention)(void *ctx, const float *q, const float *k_cache,
                             const float *v_cache, float *out, int64_t T, int64_t len,
                             int64_t H, int64_t Hkv, int64_t hd, double scale, hylo_error *err);
    /* hylo_ref_swiglu_mlp */
    hylo_status (*swiglu_mlp)(void *ctx, const float *x, const float *Wg, const float *bg,
                              const float *Wu, const float *bu, const float *Wd,
                              const float *bd, float *y, int64_t T, int64_t D, int64_t F,
                              hylo_error *err);
    /* hylo_ref_mla_forward (prefill) and hylo_ref_mla_forward_absorbed (decode) */
    hylo_status (*mla_prefill)(void *ctx, const hylo_mla_layer *layer, hylo_mla_cache *cache,
                               int64_t pos0, const float *x, int64_t T, float *y,
                               const hylo_tracer *tr, hylo_error *err);
    hylo_status (*mla_decode)(void *ctx, const hylo_mla_layer *layer, hylo_mla_cache *cache,
                              int64_t pos0, const float *x, int64_t T, float *y,
                              const hylo_tracer *tr, hylo_error *err);
    /* hylo_ref_mamba2_forward */
    hylo_status (*mamba2)(void *ctx, const hylo_mamba2_dims *d, const hylo_mamba2_weights *w,
                          hylo_mamba2_state *state, const float *x, int64_t T, float *y,
                          hylo_scan scan, const hylo_tracer *tr, hylo_error *err);
    /* hylo_ref_gdn_forward */
    hylo_status (*gdn)(void *ctx, const hylo_gdn_dims *d, const hylo_gdn_weights *w,
                       hylo_gdn_state *state, const float *x, int64_t T, float *y,
                       hylo_scan scan, const hylo_tracer *tr, hylo_error *err);

    /* Device-resident backends keep activations, caches and recurrent states in device memory:
     * forward.c and state.c allocate, copy, add and gather through these entries, and every op
     * above then receives device pointers for all but the weights and rope tables, which stay
     * the model's host pointers (the backend maps them onto the copies it uploaded in
     * model_prepare). Traced tensors are copied to the host only while tracing. All NULL for
     * host backends (ref, cpu), whose memory is malloc'd and read directly. */
    void *(*mem_alloc)(void *ctx, size_t bytes); /* zero-filled; NULL when out of memory */
    void (*mem_free)(void *ctx, void *p);
    hylo_status (*mem_copy)(void *ctx, void *dst, const void *src, size_t bytes,
                            hylo_copy_kind kind, hylo_error *err);
    /* The attention and MLA caches hold values of the backend's cache type: fp32 unless
     * cache_value_bytes says otherwise (a HIP bf16 context keeps bf16, 2 bytes). The buffers
     * keep the type float * of the ref layers; a backend with another cache type reads them as
     * its own, and forward.c never indexes them itself but appends through cache_store:
     * cache rows [row, row + rows) of `width` values <- src [rows, width] (activations). Both
     * NULL for fp32 caches in host memory (cpu, ref). */
    size_t (*cache_value_bytes)(const void *ctx);
    void (*cache_store)(void *ctx, float *cache, int64_t row, int64_t width, const float *src,
                        int64_t rows);
    /* x [n] += y [n] */
    void (*add)(void *ctx, float *x, const float *y, int64_t n);

    /* Optional fusions (NULL: forward.c calls the entries above one after the other).
     * y_i [T, out_i] = x [T, in] W_i^T + b_i for i < n (b_i may be NULL): a layer's
     * projections of one input, as n linear calls compute them */
    void (*linears)(void *ctx, const float *x, int64_t T, int64_t in, int n,
                    const float *const *W, const float *const *b, float *const *y,
                    const int64_t *out);
    /* x [rows, n] += y ; xn = hylo_ref_rmsnorm(x, w), as add then rmsnorm compute them */
    void (*add_rmsnorm)(void *ctx, float *x, const float *y, const float *w, float *xn,
                        int64_t rows, int64_t n, double eps);
    /* q [T, H, hd], k [T, Hkv, hd] <- rope_rotate_half of each at positions pos0 ..; then
     * cache_store of k and v [T, Hkv, hd] at rows pos0 .. of k_cache and v_cache: the
     * attention block's four ops before it attends */
    void (*rope_store)(void *ctx, float *q, float *k, const float *v, int64_t T, int64_t H,
                       int64_t Hkv, int64_t hd, int64_t pos0, const double *inv_freq,
                       double scale, float *k_cache, float *v_cache);
    /* x [T, D] = table rows tokens[t] (host ids, already checked), table [V, D] */
    void (*embed)(void *ctx, const float *table, const int32_t *tokens, int64_t T, int64_t D,
                  float *x);
    /* Optional: decode steps replayed from a recording (NULL: every step runs its ops).
     * forward.c brackets an untraced decode step (T = 1, its logits row wanted) with them.
     * step_begin(token, pos, layout) true: the backend replayed its recording of the step for
     * `token` at `pos` (the activations and logits are where the ops would have put them).
     * false: forward.c runs the step's ops, then step_end, which ends what the backend may have
     * recorded of them and runs it; or, when that recording failed before anything ran, sets
     * *again, and forward.c runs the ops once more. `layout` (the state's capacity) changes
     * whenever the state's buffers move. */
    bool (*step_begin)(void *ctx, int32_t token, int64_t pos, int64_t layout);
    hylo_status (*step_end)(void *ctx, bool *again, hylo_error *err);
    /* Waits for the queued work; the first failure of an op since the last call, if any. */
    hylo_status (*finish)(void *ctx, hylo_error *err);
} hylo_ops;

extern const hylo_ops hylo_ref_ops;
extern const hylo_ops hylo_cpu_ops;
/* Defined only in builds with the HIP backend (`make hip`: backend_hip/model/ops.c); a weak
 * reference, NULL elsewhere. */
extern const hylo_ops hylo_hip_ops __attribute__((weak));

/* Floats of the forward's activations for T tokens (forward.c carves them from one block;
 * a state keeps one for T = 1). */
int64_t hylo_activation_floats(const hylo_config *cfg, int64_t T);

/* Every parameter of the model `cfg` + `hybrid` (NULL: the teacher), in checkpoint order.
 * *out is malloc'd. */
hylo_status hylo_model_params(const hylo_config *cfg, const hylo_hybrid_config *hybrid,
                              hylo_param **out, size_t *count, hylo_error *err);
int64_t hylo_param_numel(const hylo_param *param);
/* dst [numel] <- the values hylo_init_random draws for `param` with `seed` (its kind's
 * distribution; `hidden_size` is D, for the embedding's). */
void hylo_param_draw(const hylo_param *param, uint64_t seed, int64_t hidden_size, float *dst);

/* The sizes of each mixer, as the layers take them. */
hylo_mla_dims hylo_mla_dims_of(const hylo_config *cfg, const hylo_hybrid_config *hybrid);
hylo_mamba2_dims hylo_mamba2_dims_of(const hylo_config *cfg, const hylo_hybrid_config *hybrid);
hylo_gdn_dims hylo_gdn_dims_of(const hylo_config *cfg, const hylo_hybrid_config *hybrid);
/* Layer `layer`'s MLA with its weights and rope tables. */
hylo_mla_layer hylo_model_mla_layer(const hylo_model *model, int64_t layer);

/* Makes room for `needed` positions in every cache of `state`, keeping its contents. */
hylo_status hylo_state_reserve(hylo_state *state, int64_t needed, hylo_error *err);

/* The address of a parameter's pointer slot inside `model`. */
const float **hylo_param_slot(hylo_model *model, const hylo_param *param);

#endif
