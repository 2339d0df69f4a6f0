/* cmd_bench.c: `hylo bench`: prefill and decode speed of a model on a backend, against the
 * sgemm peak and memory bandwidth measured in the same run; context sweeps; single ops. */
#include <stdio.h>

#include "cli.h"

#define COMMAND "bench"

bool cli_backend(const char *command, const cli_option *opts, size_t n, hylo_backend *backend,
                 hylo_weights *weights)
{
    const char *b = cli_get(opts, n, "--backend"), *w = cli_get(opts, n, "--weights");
    *backend = HYLO_BACKEND_CPU;
    *weights = HYLO_WEIGHTS_F32;
    if (b && !hylo_backend_parse(b, backend)) {
        fprintf(stderr, "hylo %s: --backend must be ref or cpu, got '%s'\n", command, b);
        return false;
    }
    if (w && !hylo_weights_parse(w, weights)) {
        fprintf(stderr, "hylo %s: --weights must be f32 or bf16, got '%s'\n", command, w);
        return false;
    }
    if (*weights == HYLO_WEIGHTS_BF16 && *backend != HYLO_BACKEND_CPU) {
        fprintf(stderr, "hylo %s: --weights bf16 needs --backend cpu\n", command);
        return false;
    }
    return true;
}

int cmd_bench(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return CLI_USAGE;
}
