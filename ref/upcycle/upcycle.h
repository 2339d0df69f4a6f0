/* upcycle.h: internals of upcycling (spec sec. 7) and of assembling hybrids (internal).
 *
 * Every checkpoint is read through its parameter table (hylo_model_params): a tensor is named
 * by (layer, slot), the slot being the offset of its pointer in hylo_layer_weights (or in
 * struct hylo_model for the model-level tensors), so no list of tensor names is written twice.
 * Every hybrid tensor starts from its fresh init and the parts the teacher maps are then
 * written over it ("overlays"); tensors the hybrid shares with the teacher are copied. */
#ifndef HYLO_UPCYCLE_H
#define HYLO_UPCYCLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/checkpoint_dir.h"
#include "model/model.h"

#define HYLO_LAYER_SLOT(field) offsetof(hylo_layer_weights, field)
#define HYLO_MODEL_SLOT(field) offsetof(struct hylo_model, field)

/* ---- reading checkpoints (source.c) --------------------------------------------------------- */

/* A checkpoint directory opened for reading: its configs, its parameter table, and the mapped
 * safetensors with every tensor of the table present and of the table's shape. */
typedef struct {
    const char *dir;
    hylo_config cfg;
    hylo_hybrid_config hybrid;  /* all attention when there is no hybrid_config.json */
    bool is_hybrid;             /* the directory has a hybrid_config.json            */
    hylo_param *params;
    size_t count;
    hylo_checkpoint *ckpt;
} hylo_source;

hylo_status hylo_source_open(const char *dir, hylo_source *src, hylo_error *err);
void hylo_source_close(hylo_source *src);
/* The entry of `params` at (layer, slot), or NULL. */
const hylo_param *hylo_param_at(const hylo_param *params, size_t count, int64_t layer,
                                size_t slot);
/* The stored tensor of `param`, an entry of src's table. */
const hylo_tensor_view *hylo_source_view(const hylo_source *src, const hylo_param *param);
/* dst [numel] <- param's values widened to fp32; HYLO_ERR_NUMERIC names a NaN or Inf. */
hylo_status hylo_source_read(const hylo_source *src, const hylo_param *param, float *dst,
                             hylo_error *err);
/* The same into *out, malloc'd; the tensor at (layer, slot) must be in the table. */
hylo_status hylo_source_load(const hylo_source *src, int64_t layer, size_t slot, float **out,
                             hylo_error *err);

/* ---- the upcycler's common state (upcycle.c) ------------------------------------------------ */

typedef struct {
    const hylo_source *teacher;
    hylo_config cfg;            /* the hybrid's config.json: the teacher's, untied, output dtype */
    hylo_hybrid_config hybrid;  /* the target, ranks resolved                                   */
    hylo_param *params;         /* the hybrid's parameter table                                 */
    size_t count;
    uint64_t seed;
    hylo_rope_init rope_init;
} hylo_upcycler;

/* dst [numel(p)] <- the fresh init of hybrid parameter p (spec sec. 4, 5, 7): hylo init's draw
 * from u->seed and p's name, except that fresh projections take PyTorch's nn.Linear default
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (spec sec. 4) and fresh norm weights are exactly 1. */
void hylo_upcycle_fresh(const hylo_upcycler *u, const hylo_param *p, float *dst);

/* Row r of a matrix whose heads of `hd` rows are each repeated `rep` times (GQA -> more KV
 * heads: head g reads head g / rep) is row hylo_repeated_row(r, hd, rep) of the original. */
int64_t hylo_repeated_row(int64_t r, int64_t hd, int64_t rep);

/* ---- SVD in double precision (svd.c) -------------------------------------------------------- */

/* A = U diag(s) Vt, k = min(m, n); row-major U [m, k] and Vt [k, n] (NULL for values only),
 * s [k] descending. */
typedef struct {
    int64_t m, n, k;
    double *U, *s, *Vt;
} hylo_svd;

/* Thin SVD of the row-major A [m, n] (LAPACK dgesdd); A is overwritten. */
hylo_status hylo_svd_compute(double *A, int64_t m, int64_t n, bool vectors, hylo_svd *out,
                             hylo_error *err);
void hylo_svd_free(hylo_svd *svd);
/* sum_{i<r} s_i^2 / sum_i s_i^2 (1 for a zero matrix). */
double hylo_svd_energy(const double *s, int64_t k, int64_t r);
/* The dynamic rank of spec sec. 7: the smallest r >= 1 with hylo_svd_energy(s, k, r) >= delta,
 * rounded up to a multiple of 8 and capped at k. */
int64_t hylo_rank_for_energy(const double *s, int64_t k, double delta);

/* ---- MLA from GQA (mla_init.c) -------------------------------------------------------------- */

/* Checks that the teacher's attention can seed MLA of sizes m (v = hd, nope + rope <= hd, MLA
 * KV heads a multiple of the teacher's, ranks within the matrices' ranks). */
hylo_status hylo_mla_check(const hylo_config *teacher, const hylo_mla_config *m,
                           hylo_error *err);
/* The dynamic ranks of one layer: *r_q (when q_energy > 0) and *r_kv (when kv_energy > 0). */
hylo_status hylo_mla_dynamic_ranks(const hylo_upcycler *u, int64_t layer, double q_energy,
                                   double kv_energy, int64_t *r_q, int64_t *r_kv,
                                   hylo_error *err);

/* The SVD-derived tensors of one MLA layer, fp32, in the hybrid's shapes; NULL where the layer
 * has no such tensor. Overlays take the rows the rope_init option maps. */
typedef struct {
    float *q_a;      /* [r_q, D]               diag(S[:r_q]) V^T[:r_q] of W_Q              */
    float *q_b;      /* [H*(nope+rope), r_q]   the kept rows of U[:, :r_q]                 */
    float *q_proj;   /* [H*(nope+rope), D]     the kept rows of W_Q (r_q = 0)              */
    float *kv_a;     /* [r_kv + rope, D]       diag(S[:r_kv]) V^T[:r_kv] ; mean k rope rows */
    float *kv_b;     /* [Hm*(nope+v), r_kv]    per KV head [U_K nope rows ; U_V rows]      */
    double q_energy, kv_energy; /* share of sigma^2 kept                                   */
} hylo_mla_init;

hylo_status hylo_mla_init_layer(const hylo_upcycler *u, int64_t layer, hylo_mla_init *out,
                                hylo_error *err);
void hylo_mla_init_free(hylo_mla_init *m);
/* Writes what the teacher maps into MLA parameter p (dst holds its fresh init). */
hylo_status hylo_mla_overlay(const hylo_upcycler *u, const hylo_mla_init *init,
                             const hylo_param *p, float *dst, hylo_error *err);

/* ---- Mamba2 and GDN from attention (mamba2_init.c, gdn_init.c) ----------------------------- */

/* Checks the upcycled layout: nheads = c_groups = H, x_heads = b_groups = Hkv,
 * headdim = d_state = hd. */
hylo_status hylo_mamba2_check(const hylo_config *teacher, const hylo_mamba2_config *m,
                              hylo_error *err);
hylo_status hylo_mamba2_overlay(const hylo_upcycler *u, const hylo_param *p, float *dst,
                                hylo_error *err);
hylo_status hylo_gdn_overlay(const hylo_upcycler *u, const hylo_param *p, float *dst,
                             hylo_error *err);

/* ---- output values (output.c; output directories: model/checkpoint_dir.h) ------------------ */

/* dst <- f [n] in `dtype`; HYLO_ERR_RANGE names tensor `name` when a value would overflow. */
hylo_status hylo_output_narrow(hylo_dtype dtype, const float *f, void *dst, size_t n,
                               const char *name, hylo_error *err);

/* ---- reports (report.c) and the probe (probe.c) --------------------------------------------- */

/* Fills the per-layer mixers, parameter counts and KV shares, the totals and the configs of
 * r; energies are NaN (unknown) and the probe empty until the caller sets them. */
hylo_status hylo_report_fill(hylo_upcycle_report *r, const hylo_config *cfg,
                             const hylo_hybrid_config *hybrid, hylo_error *err);
/* KL(p || q) in nats of p = softmax(a), q = softmax(b), a and b [V] logits, with
 * log-sum-exp in double. */
double hylo_logits_kl(const float *a, const float *b, int64_t V);

#endif
