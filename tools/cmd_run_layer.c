/* cmd_run_layer.c: `hylo run-layer`: reruns one decoder layer in isolation on an input taken
 * from a trace (the previous layer's output, or the embedding for layer 0), as a prefill from
 * position 0, and writes that layer's trace: the last step of bisecting a divergence. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define COMMAND "run-layer"

/* The [T, D] tensor `name` of `path`, widened to a malloc'd fp32 copy. */
static hylo_status read_input(const char *path, const char *name, int64_t D, float **out,
                              int64_t *T, hylo_error *err)
{
    hylo_safetensors *st = NULL;
    hylo_status s = hylo_safetensors_open(path, &st, err);
    if (s != HYLO_OK) return s;
    const hylo_tensor_view *v = hylo_safetensors_find(st, name);
    if (!v) s = hylo_error_set(err, HYLO_ERR_SHAPE, "%s: no tensor '%s'", path, name);
    else if (v->ndim != 2 || v->shape[1] != D || v->shape[0] < 1)
        s = hylo_error_set(err, HYLO_ERR_SHAPE, "%s: tensor '%s' is not [T, %lld]", path, name,
                           (long long)D);
    if (s == HYLO_OK) {
        *T = v->shape[0];
        *out = malloc((size_t)v->numel * sizeof **out);
        if (!*out) s = hylo_error_set(err, HYLO_ERR_NOMEM, "out of memory");
        else hylo_convert_to_f32(v->dtype, v->data, *out, (size_t)v->numel);
    }
    hylo_safetensors_close(st);
    return s;
}

int cmd_run_layer(int argc, char **argv)
{
    cli_option opts[] = {
        {"--model", "DIR", "checkpoint directory", NULL},
        {"--layer", "I", "the decoder layer to run", NULL},
        {"--input", "FILE", "safetensors holding the layer's input", NULL},
        {"--input-name", "NAME", "its tensor, e.g. pos0.layers.2.out for layer 3, pos0.embed for 0", NULL},
        {"--trace", "FILE", "where to write the layer's trace (names pos0.layers.I.*)", NULL},
        {"--help", NULL, "show this help", NULL},
    };
    const size_t n = sizeof opts / sizeof opts[0];
    int rc = cli_begin(COMMAND, "Reruns one layer on a traced input and traces it.", argc, argv,
                       opts, n);
    if (rc != CLI_CONTINUE) return rc;
    const char *dir = cli_get(opts, n, "--model"), *input = cli_get(opts, n, "--input");
    const char *name = cli_get(opts, n, "--input-name"), *trace_path = cli_get(opts, n, "--trace");
    int64_t layer;
    if (!dir || !input || !name || !trace_path || !cli_get(opts, n, "--layer")) {
        fprintf(stderr, "hylo %s: --model, --layer, --input, --input-name and --trace are required\n",
                COMMAND);
        return CLI_USAGE;
    }
    if (!cli_int(COMMAND, opts, n, "--layer", 0, HYLO_MAX_LAYERS - 1, 0, &layer)) return CLI_USAGE;
    hylo_error err = {0};
    hylo_model *model = NULL;
    hylo_state *state = NULL;
    hylo_trace *trace = NULL;
    float *x = NULL, *y = NULL;
    int64_t T = 0;
    hylo_status st = hylo_model_load(dir, &model, &err);
    if (st == HYLO_OK)
        st = read_input(input, name, hylo_model_config(model)->hidden_size, &x, &T, &err);
    if (st == HYLO_OK) st = hylo_state_create(model, T, &state, &err);
    if (st == HYLO_OK) st = hylo_trace_create(NULL, &trace, &err);
    if (st == HYLO_OK) {
        hylo_state_set_trace(state, trace);
        y = malloc((size_t)(T * hylo_model_config(model)->hidden_size) * sizeof *y);
        if (!y) st = hylo_error_set(&err, HYLO_ERR_NOMEM, "out of memory");
    }
    if (st == HYLO_OK) st = hylo_layer_forward(model, state, layer, x, T, NULL, y, &err);
    const char *metadata[] = {"model", dir, "input", name, NULL};
    if (st == HYLO_OK) st = hylo_trace_save(trace, trace_path, metadata, &err);
    if (st == HYLO_OK)
        printf("layer %lld on %lld tokens: %zu tensors in %s\n", (long long)layer, (long long)T,
               hylo_trace_count(trace), trace_path);
    else rc = cli_fail(COMMAND, &err);
    free(x);
    free(y);
    hylo_trace_free(trace);
    hylo_state_free(state);
    hylo_model_free(model);
    return st == HYLO_OK ? CLI_OK : rc;
}
