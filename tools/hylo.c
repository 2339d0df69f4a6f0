/* hylo.c: the command line: `hylo COMMAND [options]`, one tools/cmd_*.c per command. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"init", cmd_init, "write a deterministic random checkpoint of a built-in preset"},
    {"run", cmd_run, "run a checkpoint on token ids: prefill, greedy decode, logits"},
    {"info", cmd_info, "parameters, KV cache and state memory of a teacher or hybrid"},
    {"upcycle", cmd_upcycle, "turn a teacher checkpoint into a HyLo hybrid (SVD / MambaInLlama init)"},
    {"assemble", cmd_assemble, "build a hybrid layer by layer from an all-MLA and an all-linear model"},
    {"bench-kl", cmd_bench_kl, "time the logit-free KL at long context; peak memory"},
    {"kd-eval", cmd_kd_eval, "KD, CE and per-layer ILD of a student against its teacher"},
    {"diff", cmd_diff, "compare two traces (or any safetensors) tensor by tensor"},
    {"run-layer", cmd_run_layer, "rerun one layer on a traced input, tracing it"},
    {"bench", cmd_bench, "prefill / decode speed vs the measured sgemm peak and bandwidth"},
};

static void usage(void)
{
    printf("hylo %s: reference implementation of HyLo hybrid upcycling\n\n"
           "usage: hylo COMMAND [options]   (hylo COMMAND --help for its options)\n\n",
           HYLO_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        printf("  %-8s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv)
{
    /* OpenBLAS reads OPENBLAS_CORETYPE once, when it loads (before main): where it misdetected
     * an AVX-512 CPU, restart once with its AVX-512 kernels named (execv returns on failure
     * only, and then we go on with the kernels we have). */
    const char *core = hylo_blas_coretype_hint();
    if (core && setenv("OPENBLAS_CORETYPE", core, 1) == 0) execv("/proc/self/exe", argv);
    if (argc < 2) {
        usage();
        return CLI_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        usage();
        return CLI_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("hylo %s\n", HYLO_VERSION);
        return CLI_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 2, argv + 2);
    fprintf(stderr, "hylo: unknown command '%s' (see 'hylo --help')\n", argv[1]);
    return CLI_USAGE;
}
