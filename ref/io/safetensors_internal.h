/* safetensors_internal.h: internals shared by the safetensors reader, writer and the checkpoint
 * files (not part of the public API; every symbol carries the prefix hylo_st_). */
#ifndef HYLO_SAFETENSORS_INTERNAL_H
#define HYLO_SAFETENSORS_INTERNAL_H

#include "hylo.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The largest header a reader accepts: the limit of the reference implementation. */
#define HYLO_ST_MAX_HEADER 100000000u
/* Header lengths, shape dimensions and offsets must stay below 2^53 so that a JSON number (a
 * double to cJSON and to many other readers) holds them exactly. */
#define HYLO_ST_MAX_INT 9007199254740992.0
/* Writers pad the header so that the data buffer starts at a multiple of this file offset. */
#define HYLO_ST_DATA_ALIGN 64u

/* --- Names, shapes and labels (safetensors.c) ----------------------------------------------- */

/* NULL when `name` is fit to be a tensor name (non-empty, valid UTF-8, no control characters),
 * else a phrase saying what is wrong with it ("is empty", ...). */
const char *hylo_st_name_problem(const char *name);
/* Offset of the first byte of s[0..n) that is not valid UTF-8, or n when all of it is. */
size_t hylo_st_utf8_prefix(const char *s, size_t n);
/* Copies `name` into out (size >= 16) with non-printable bytes as \xNN, cut with "..." when long:
 * safe to put in a message even when the name came from a hostile file. */
const char *hylo_st_quote(char *out, size_t size, const char *name);

/* "[2, 3]": the shape in messages, cut short (but NUL-terminated) when `size` is too small. */
void hylo_st_format_shape(char *out, size_t size, int ndim, const int64_t *shape);
/* The path (or the in-memory label) an open file was opened under. */
const char *hylo_st_label(const hylo_safetensors *st);

/* --- Checkpoints (checkpoint.c) ------------------------------------------------------------- */

/* The path of the file that holds tensor i (in hylo_checkpoint_at's order), or NULL when i is
 * out of range: model.safetensors or the shard. */
const char *hylo_st_checkpoint_file(const hylo_checkpoint *ckpt, size_t i);

/* --- Paths (safetensors_write.c) ----------------------------------------------------------- */

/* "dir/name", or NULL when out of memory. */
char *hylo_st_path_join(const char *dir, const char *name);

/* --- Specs and the writer's two phases (safetensors_write.c) -------------------------------- */

/* Checks specs (names unique, non-empty and printable; dtype known; 0 <= ndim <= HYLO_MAX_DIMS;
 * dims non-negative; sizes without overflow) and stores each tensor's byte size in nbytes.
 * `label` names the destination in messages. */
hylo_status hylo_st_check_specs(const hylo_tensor_spec *specs, size_t count, const char *label,
                                uint64_t *nbytes, hylo_error *err);
/* First half of commit: checks that every byte arrived and syncs the temporary file. On failure
 * w stays allocated (the caller aborts it). */
hylo_status hylo_st_writer_finish(hylo_safetensors_writer *w, hylo_error *err);
/* Second half of commit: renames the finished file over its path and frees w, whatever the
 * outcome. Splitting the two lets a checkpoint write every shard before publishing any. */
hylo_status hylo_st_writer_publish(hylo_safetensors_writer *w, hylo_error *err);

#endif
