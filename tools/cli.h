/* cli.h: option parsing and shared helpers of the `hylo` subcommands. */
#ifndef HYLO_CLI_H
#define HYLO_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hylo.h"

/* Exit codes of every subcommand. */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

typedef struct {
    const char *name;   /* "--model"                                    */
    const char *arg;    /* placeholder of its value ("DIR"), NULL = flag */
    const char *help;
    const char *value;  /* parsed value; "1" for a flag that was given   */
} cli_option;

/* Parses argv[0..argc) (after the subcommand name) into opts; prints a message naming the
 * offending argument and returns false on an unknown option or a missing value. */
bool cli_parse(const char *command, int argc, char **argv, cli_option *opts, size_t n);
void cli_usage(const char *command, const char *summary, const cli_option *opts, size_t n);
/* cli_parse, then --help (which every command's table lists last): returns CLI_CONTINUE to go
 * on, or the exit code the command should return. */
enum { CLI_CONTINUE = -1 };
int cli_begin(const char *command, const char *summary, int argc, char **argv, cli_option *opts,
              size_t n);
const char *cli_get(const cli_option *opts, size_t n, const char *name);
/* Parses an integer option in [lo, hi] (absent: *out = fallback). */
bool cli_int(const char *command, const cli_option *opts, size_t n, const char *name,
             int64_t lo, int64_t hi, int64_t fallback, int64_t *out);
/* Parses whitespace- or comma-separated token ids; *out is malloc'd. */
bool cli_parse_tokens(const char *command, const char *text, const char *source, int32_t **out,
                      int64_t *count);
/* A preset as a model: a teacher preset (all attention; a hybrid of it with `layout`), or a
 * built-in hybrid preset (with `layout` NULL). */
hylo_status cli_preset_model(const char *preset, const char *layout, hylo_config *cfg,
                             hylo_hybrid_config *hybrid, bool *is_hybrid, hylo_error *err);
/* The prompt: --tokens "1 2 3" or --tokens-file F (exactly one); *tokens is malloc'd; false
 * after a message naming the problem. */
bool cli_load_tokens(const char *command, const cli_option *opts, size_t n, int32_t **tokens,
                     int64_t *count);
/* Prints "hylo COMMAND: message" for a failed call; returns CLI_FAIL. */
int cli_fail(const char *command, const hylo_error *err);

int cmd_init(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_upcycle(int argc, char **argv);
int cmd_assemble(int argc, char **argv);
int cmd_bench_kl(int argc, char **argv);
int cmd_kd_eval(int argc, char **argv);
int cmd_diff(int argc, char **argv);
int cmd_run_layer(int argc, char **argv);
int cmd_bench(int argc, char **argv);
/* --backend ref|cpu|hip (default `fallback`) and --weights f32|bf16 (default f32) of run,
 * bench and kd-eval */
bool cli_backend(const char *command, const cli_option *opts, size_t n, hylo_backend fallback,
                 hylo_backend *backend, hylo_weights *weights);

#endif
