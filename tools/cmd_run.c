/* cmd_run.c: `hylo run`: prefill a prompt, decode greedily, print or save logits. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define COMMAND "run"

typedef struct {
    int32_t *tokens;     /* prompt, then generated tokens                       */
    int64_t n_prompt;
    int64_t n_total;
    float *logits;       /* [rows, V]: row r predicts the token after position r */
    int64_t rows;
} run_result;

static int32_t argmax(const float *x, int64_t n)
{
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return (int32_t)best;
}

/* Prefill the prompt, then feed back `generate` greedy tokens one decode step at a time.
 * Logits of every position are kept when `keep_all`, else only the last row. */
static hylo_status run_model(const hylo_model *model, int64_t generate, bool keep_all,
                             hylo_trace *trace, run_result *r, hylo_error *err)
{
    const int64_t V = hylo_model_config(model)->vocab_size;
    const int64_t total_rows = r->n_prompt + (generate > 0 ? generate - 1 : 0);
    r->rows = keep_all ? total_rows : 1;
    r->logits = malloc((size_t)(r->rows * V) * sizeof(float));
    if (!r->logits)
        return hylo_error_set(err, HYLO_ERR_NOMEM, "cannot allocate logits [%lld, %lld]",
                              (long long)r->rows, (long long)V);
    hylo_state *state = NULL;
    hylo_status st = hylo_state_create(model, r->n_prompt + generate, &state, err);
    if (st == HYLO_OK) hylo_state_set_trace(state, trace);
    if (st == HYLO_OK)
        st = hylo_forward(model, state, r->tokens, r->n_prompt,
                          keep_all ? HYLO_LOGITS_ALL : HYLO_LOGITS_LAST, r->logits, err);
    r->n_total = r->n_prompt;
    for (int64_t g = 0; g < generate && st == HYLO_OK; g++) {
        const float *last = r->logits + (keep_all ? r->n_total - 1 : 0) * V;
        r->tokens[r->n_total++] = argmax(last, V);
        if (g + 1 == generate) break; /* the last token needs no forward of its own */
        float *row = r->logits + (keep_all ? r->n_total - 1 : 0) * V;
        st = hylo_forward(model, state, r->tokens + r->n_total - 1, 1, HYLO_LOGITS_LAST, row, err);
    }
    hylo_state_free(state);
    return st;
}

static void print_top_k(const float *logits, int64_t V, int64_t k)
{
    /* softmax in double for the probabilities */
    double max = -INFINITY, sum = 0.0;
    for (int64_t i = 0; i < V; i++) max = fmax(max, logits[i]);
    for (int64_t i = 0; i < V; i++) sum += exp((double)logits[i] - max);
    int64_t *top = malloc((size_t)k * sizeof *top);
    if (!top) return;
    for (int64_t r = 0; r < k; r++) {
        int64_t best = -1;
        for (int64_t i = 0; i < V; i++) {
            bool taken = false;
            for (int64_t j = 0; j < r && !taken; j++) taken = top[j] == i;
            if (!taken && (best < 0 || logits[i] > logits[best])) best = i;
        }
        top[r] = best;
    }
    printf("top-%lld of the last position:\n  rank     token        logit         prob\n",
           (long long)k);
    for (int64_t r = 0; r < k; r++)
        printf("  %4lld  %8lld  %11.6f  %11.6e\n", (long long)r + 1, (long long)top[r],
               (double)logits[top[r]], exp((double)logits[top[r]] - max) / sum);
    free(top);
}

/* The token ids fed to the model, space-separated (malloc'd), for files' metadata. */
static char *token_list(const run_result *r)
{
    size_t cap = (size_t)r->n_total * 12 + 1, len = 0;
    char *ids = malloc(cap);
    if (!ids) return NULL;
    ids[0] = '\0';
    for (int64_t i = 0; i < r->n_total; i++)
        len += (size_t)snprintf(ids + len, cap - len, i ? " %d" : "%d", r->tokens[i]);
    return ids;
}

/* Logits and traces carry the fed token ids and the model in their metadata, so each file
 * says how it was made. */
static hylo_status save_outputs(const char *logits_path, const char *trace_path,
                                const hylo_trace *trace, const char *model_dir,
                                const run_result *r, int64_t V, hylo_error *err)
{
    char *ids = token_list(r);
    if (!ids) return hylo_error_set(err, HYLO_ERR_NOMEM, "cannot allocate token list");
    hylo_status st = HYLO_OK;
    if (logits_path) {
        hylo_tensor_spec spec = {"logits", HYLO_F32, 2, {r->rows, V}};
        const char *metadata[] = {"tokens", ids, "model", model_dir, "rows",
                                  "row r predicts the token after position r", NULL};
        const void *data[] = {r->logits};
        st = hylo_safetensors_write(logits_path, &spec, data, 1, metadata, err);
    }
    if (st == HYLO_OK && trace_path) {
        const char *metadata[] = {"tokens", ids, "model", model_dir, "names",
                                  "pos{P}.<tensor>, P = first position of each forward call", NULL};
        st = hylo_trace_save(trace, trace_path, metadata, err);
    }
    free(ids);
    return st;
}

int cmd_run(int argc, char **argv)
{
    cli_option opts[] = {
        {"--model", "DIR", "checkpoint directory (config.json + safetensors)", NULL},
        {"--tokens", "\"1 2 3\"", "prompt token ids", NULL},
        {"--tokens-file", "FILE", "prompt token ids from a file (whitespace or commas)", NULL},
        {"--generate", "N", "greedy-decode N tokens after the prompt (default 0)", NULL},
        {"--top-k", "K", "print the K largest logits of the last position", NULL},
        {"--logits", "FILE", "save the logits of every position as safetensors ('logits' [rows, V])", NULL},
        {"--trace", "FILE", "save the named intermediate tensors of every forward (safetensors)", NULL},
        {"--trace-filter", "GLOB", "with --trace: only names matching GLOB (e.g. '*.mla.*')", NULL},
        {"--backend", "ref|cpu|hip", "the implementation that computes (default cpu; hip in `make hip` builds)", NULL},
        {"--weights", "f32|bf16", "cpu and hip backends: weight storage (cpu: of decode steps; hip: bf16 weights and caches; default f32)", NULL},
        {"--help", NULL, "show this help", NULL},
    };
    const size_t n = sizeof opts / sizeof opts[0];
    int rc = cli_begin(COMMAND, "Runs a checkpoint with the reference or the optimized CPU backend.",
                       argc, argv, opts, n);
    if (rc != CLI_CONTINUE) return rc;
    const char *dir = cli_get(opts, n, "--model"), *logits_path = cli_get(opts, n, "--logits");
    int64_t generate, top_k;
    run_result r = {0};
    if (!dir) {
        fprintf(stderr, "hylo %s: --model DIR is required\n", COMMAND);
        return CLI_USAGE;
    }
    hylo_backend backend;
    hylo_weights weights;
    if (!cli_int(COMMAND, opts, n, "--generate", 0, 1 << 20, 0, &generate) ||
        !cli_int(COMMAND, opts, n, "--top-k", 0, INT32_MAX, 0, &top_k) ||
        !cli_backend(COMMAND, opts, n, HYLO_BACKEND_CPU, &backend, &weights) ||
        !cli_load_tokens(COMMAND, opts, n, &r.tokens, &r.n_prompt))
        return CLI_USAGE;
    int32_t *grown = realloc(r.tokens, (size_t)(r.n_prompt + generate) * sizeof *grown);
    if (!grown) {
        free(r.tokens);
        fprintf(stderr, "hylo %s: out of memory\n", COMMAND);
        return CLI_FAIL;
    }
    r.tokens = grown;
    hylo_error err = {0};
    hylo_model *model = NULL;
    hylo_trace *trace = NULL;
    const char *trace_path = cli_get(opts, n, "--trace");
    rc = CLI_OK;
    if ((trace_path && hylo_trace_create(cli_get(opts, n, "--trace-filter"), &trace, &err) != HYLO_OK) ||
        hylo_model_load(dir, &model, &err) != HYLO_OK ||
        hylo_model_set_backend(model, backend, weights, &err) != HYLO_OK ||
        run_model(model, generate, logits_path != NULL, trace, &r, &err) != HYLO_OK ||
        save_outputs(logits_path, trace_path, trace, dir, &r,
                     hylo_model_config(model)->vocab_size, &err) != HYLO_OK) {
        rc = cli_fail(COMMAND, &err);
    } else {
        const hylo_config *cfg = hylo_model_config(model);
        const hylo_hybrid_config *hy = hylo_model_hybrid(model);
        printf("model: %s (%s, %lld layers, D %lld, V %lld)\nmixers:", dir,
               hylo_arch_name(cfg->arch), (long long)cfg->num_layers, (long long)cfg->hidden_size,
               (long long)cfg->vocab_size);
        for (int64_t i = 0; i < hy->num_layers; i++) printf(" %s", hylo_mixer_name(hy->mixers[i]));
        printf("\nprompt: %lld tokens\n", (long long)r.n_prompt);
        if (generate > 0) {
            printf("generated:");
            for (int64_t i = r.n_prompt; i < r.n_total; i++) printf(" %d", r.tokens[i]);
            printf("\n");
        }
        if (top_k > 0) {
            int64_t V = cfg->vocab_size;
            print_top_k(r.logits + (r.rows - 1) * V, V, top_k < V ? top_k : V);
        }
        if (logits_path) printf("logits: %s [%lld, %lld]\n", logits_path, (long long)r.rows, (long long)cfg->vocab_size);
        if (trace_path) printf("trace: %s (%zu tensors)\n", trace_path, hylo_trace_count(trace));
    }
    hylo_trace_free(trace);
    hylo_model_free(model);
    free(r.tokens);
    free(r.logits);
    return rc;
}
