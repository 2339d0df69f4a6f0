/* model.h: the teacher model's parameters and in-memory form (internal). One table of
 * parameters drives both the loader and the random initializer, so the two cannot disagree. */
#ifndef HYLO_MODEL_H
#define HYLO_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "hylo.h"

/* The fp32 weights of one decoder layer (NULL where the architecture has no such tensor). */
typedef struct {
    const float *input_norm;                 /* [D]                */
    const float *wq, *bq;                    /* [H*hd, D], [H*hd]  */
    const float *wk, *bk;                    /* [Hkv*hd, D]        */
    const float *wv, *bv;                    /* [Hkv*hd, D]        */
    const float *wo, *bo;                    /* [D, H*hd], [D]     */
    const float *q_norm, *k_norm;            /* [hd] (Qwen3)       */
    const float *post_norm;                  /* [D]                */
    const float *w_gate, *b_gate;            /* [F, D], [F]        */
    const float *w_up, *b_up;                /* [F, D], [F]        */
    const float *w_down, *b_down;            /* [D, F], [D]        */
} hylo_layer_weights;

/* How a parameter is initialized by `hylo init`. */
typedef enum {
    HYLO_PARAM_EMBEDDING, /* N(0, 1/sqrt(D))-scaled token vectors        */
    HYLO_PARAM_LINEAR,    /* N(0, 1/fan_in) entries                       */
    HYLO_PARAM_BIAS,      /* N(0, 0.02)                                   */
    HYLO_PARAM_NORM       /* 1 + N(0, 0.1): near one, but every entry matters */
} hylo_param_kind;

typedef struct {
    char name[128];
    int ndim;
    int64_t shape[2];
    hylo_param_kind kind;
    int64_t layer;        /* -1 for model-level tensors                     */
    size_t slot;          /* offsetof the pointer in hylo_layer_weights, or
                             in hylo_model for model-level tensors          */
} hylo_param;

struct hylo_model {
    hylo_config cfg;
    hylo_checkpoint *ckpt;       /* kept open: F32 weights point into its mapping */
    const float *embed;          /* [V, D] */
    const float *final_norm;     /* [D]    */
    const float *lm_head;        /* [V, D]; == embed when tied */
    hylo_layer_weights *layers;  /* [L]    */
    double *rope_inv_freq;       /* [hd/2] */
    double rope_scale;           /* multiplies cos/sin (YaRN) */
    float **owned;               /* widened copies to free */
    size_t n_owned;
};

struct hylo_state {
    const hylo_model *model;
    int64_t length;    /* positions in the caches        */
    int64_t capacity;  /* positions allocated            */
    float **k, **v;    /* per layer [capacity, Hkv, hd]  */
};

/* Every parameter of a teacher with this config, in checkpoint order. *out is malloc'd. */
hylo_status hylo_teacher_params(const hylo_config *cfg, hylo_param **out, size_t *count,
                                hylo_error *err);

/* Makes room for `needed` positions in every cache of `state`, keeping its contents. */
hylo_status hylo_state_reserve(hylo_state *state, int64_t needed, hylo_error *err);

int64_t hylo_param_numel(const hylo_param *param);

/* The address of a parameter's pointer slot inside `model`. */
const float **hylo_param_slot(hylo_model *model, const hylo_param *param);

#endif
