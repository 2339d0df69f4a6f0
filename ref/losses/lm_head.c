/* lm_head.c: a loaded model's LM head, for the hidden-state forms of the distillation loss. */
#include "model/model.h"

/* [V, D]; the embedding when the model ties them. */
const float *hylo_model_lm_head(const hylo_model *model)
{
    return model->lm_head;
}
