/* checkpoint_dir.h: the checkpoint directory of a teacher or hybrid (internal): checking a
 * checkpoint against the model's parameter table before any weight is read (hylo_model_load,
 * the upcycler's sources), and preparing and writing output directories (hylo_init_random,
 * hylo upcycle, hylo assemble, hylo init). */
#ifndef HYLO_CHECKPOINT_DIR_H
#define HYLO_CHECKPOINT_DIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/model.h"

/* ---- reading -------------------------------------------------------------------------------- */

/* Checks `ckpt` (opened from `dir`) against `params`, the table of cfg + hybrid, both ways:
 *   - every tensor of the checkpoint is a parameter (HYLO_ERR_SHAPE: "FILE: tensor 'N' is not a
 *     parameter of this model (llama, 4 layers)", FILE being model.safetensors or the shard;
 *     checked first, and naming the first such tensor in file order);
 *   - every parameter is there with the table's shape (HYLO_ERR_SHAPE: "DIR: tensor 'N' is
 *     missing (expected [..])", "... has shape [..] but the configuration implies [..]").
 * The one tensor accepted outside the table: with tied embeddings, an lm_head.weight equal to
 * model.embed_tokens.weight (transformers saves it at times); it is never read, and one that
 * differs in shape or in any value is refused, since a tied head would silently ignore it.
 * Values are not checked for finiteness here (the readers do that). */
hylo_status hylo_checkpoint_check_params(const hylo_checkpoint *ckpt, const char *dir,
                                         const hylo_config *cfg,
                                         const hylo_hybrid_config *hybrid,
                                         const hylo_param *params, size_t count, hylo_error *err);

/* ---- writing -------------------------------------------------------------------------------- */

/* Refuses `out` when it is one of the `n` directories `inputs` (even with `force`), or when it
 * holds a checkpoint and `force` is false ("use --force to replace it"). Nothing is changed. */
hylo_status hylo_output_check(const char *out, bool force, const char *const *inputs, size_t n,
                              hylo_error *err);
/* Creates `out`, or removes the checkpoint files it holds (config.json, hybrid_config.json,
 * model*.safetensors, the index) so that no stale shard survives. */
hylo_status hylo_output_prepare(const char *out, hylo_error *err);
/* Writes the weights (each tensor from `fill`, in table order, in cfg->dtype; see
 * hylo_checkpoint_write), then config.json, then hybrid_config.json, each file atomically.
 * With `hybrid` NULL (a teacher) a hybrid_config.json already in `out` is removed instead, so
 * that the directory never pairs the new weights with an old hybrid's mixers. */
hylo_status hylo_output_write(const char *out, const hylo_config *cfg,
                              const hylo_hybrid_config *hybrid, const hylo_param *params,
                              size_t count, hylo_tensor_fill_fn fill, void *user,
                              uint64_t max_shard_bytes, hylo_error *err);

#endif
