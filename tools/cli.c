/* cli.c: option parsing shared by the subcommands. */
#include "cli.h"
#include "io/json.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cli_option *find_option(cli_option *opts, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(opts[i].name, name) == 0) return &opts[i];
    return NULL;
}

bool cli_parse(const char *command, int argc, char **argv, cli_option *opts, size_t n)
{
    for (int i = 0; i < argc; i++) {
        cli_option *o = find_option(opts, n, argv[i]);
        if (!o) {
            fprintf(stderr, "hylo %s: unknown argument '%s' (see 'hylo %s --help')\n", command,
                    argv[i], command);
            return false;
        }
        if (!o->arg) {
            o->value = "1";
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "hylo %s: option %s needs a value %s\n", command, o->name, o->arg);
            return false;
        }
        o->value = argv[++i];
    }
    return true;
}

void cli_usage(const char *command, const char *summary, const cli_option *opts, size_t n)
{
    printf("usage: hylo %s [options]\n%s\n\noptions:\n", command, summary);
    for (size_t i = 0; i < n; i++) {
        char left[64];
        snprintf(left, sizeof left, "%s%s%s", opts[i].name, opts[i].arg ? " " : "",
                 opts[i].arg ? opts[i].arg : "");
        printf("  %-24s %s\n", left, opts[i].help);
    }
}

int cli_begin(const char *command, const char *summary, int argc, char **argv, cli_option *opts,
              size_t n)
{
    if (!cli_parse(command, argc, argv, opts, n)) return CLI_USAGE;
    if (cli_get(opts, n, "--help")) {
        cli_usage(command, summary, opts, n);
        return CLI_OK;
    }
    return CLI_CONTINUE;
}

const char *cli_get(const cli_option *opts, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(opts[i].name, name) == 0) return opts[i].value;
    return NULL;
}

static bool parse_int(const char *text, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || *end != '\0') return false;
    *out = v;
    return true;
}

bool cli_int(const char *command, const cli_option *opts, size_t n, const char *name,
             int64_t lo, int64_t hi, int64_t fallback, int64_t *out)
{
    const char *text = cli_get(opts, n, name);
    if (!text) {
        *out = fallback;
        return true;
    }
    if (!parse_int(text, out) || *out < lo || *out > hi) {
        fprintf(stderr, "hylo %s: %s must be an integer in [%" PRId64 ", %" PRId64 "], got '%s'\n",
                command, name, lo, hi, text);
        return false;
    }
    return true;
}

bool cli_parse_tokens(const char *command, const char *text, const char *source, int32_t **out,
                      int64_t *count)
{
    *out = NULL;
    *count = 0;
    size_t cap = 0;
    const char *p = text;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == ',') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno || v < INT32_MIN || v > INT32_MAX ||
            !(*end == '\0' || strchr(" \t\r\n,", *end))) {
            fprintf(stderr, "hylo %s: %s: token %lld is not an integer id near '%.20s'\n",
                    command, source, (long long)*count, p);
            free(*out);
            *out = NULL;
            return false;
        }
        if ((size_t)*count == cap) {
            cap = cap ? 2 * cap : 256;
            int32_t *grown = realloc(*out, cap * sizeof *grown);
            if (!grown) {
                fprintf(stderr, "hylo %s: out of memory reading tokens\n", command);
                free(*out);
                *out = NULL;
                return false;
            }
            *out = grown;
        }
        (*out)[(*count)++] = (int32_t)v;
        p = end;
    }
    if (*count == 0) {
        fprintf(stderr, "hylo %s: %s holds no token ids\n", command, source);
        return false;
    }
    return true;
}

int cli_fail(const char *command, const hylo_error *err)
{
    fprintf(stderr, "hylo %s: %s\n", command, err->message);
    return CLI_FAIL;
}

hylo_status cli_preset_model(const char *preset, const char *layout, hylo_config *cfg,
                             hylo_hybrid_config *hybrid, bool *is_hybrid, hylo_error *err)
{
    *is_hybrid = true;
    if (hylo_hybrid_preset(preset, cfg, hybrid, NULL) == HYLO_OK)
        return layout ? hylo_error_set(err, HYLO_ERR_USAGE, "%s is already a hybrid: drop --layout",
                                       preset)
                      : HYLO_OK;
    hylo_status st = hylo_preset(preset, cfg, err);
    if (st != HYLO_OK) return st;
    *is_hybrid = layout != NULL;
    if (!layout) {
        hylo_hybrid_teacher(cfg, hybrid);
        return HYLO_OK;
    }
    return hylo_hybrid_layout(cfg, layout, hybrid, err);
}

bool cli_load_tokens(const char *command, const cli_option *opts, size_t n, int32_t **tokens,
                     int64_t *count)
{
    const char *inline_tokens = cli_get(opts, n, "--tokens");
    const char *file = cli_get(opts, n, "--tokens-file");
    if (!inline_tokens == !file) {
        fprintf(stderr, "hylo %s: give exactly one of --tokens and --tokens-file\n", command);
        return false;
    }
    if (inline_tokens) return cli_parse_tokens(command, inline_tokens, "--tokens", tokens, count);
    char *text;
    size_t len;
    hylo_error err = {0};
    /* 256 MiB of text is tens of millions of ids: far past any context */
    if (hylo_json_read_file(file, (size_t)256 << 20, &text, &len, &err) != HYLO_OK) {
        fprintf(stderr, "hylo %s: --tokens-file: %s\n", command, err.message);
        return false;
    }
    bool ok = cli_parse_tokens(command, text, file, tokens, count);
    free(text);
    return ok;
}
