/* cmd_kd_eval.c: `hylo kd-eval`: the quantities the two distillation stages optimize, measured
 * for a student against its teacher on one token sequence (spec sec. 8):
 *   KD   KL(p_T || p_S) of the two models' own forwards (batchmean over the one sequence)
 *   CE   the student's next-token cross-entropy on the same tokens
 *   ILD  per layer, the student layer fed the teacher's input to that layer (teacher forcing):
 *        mean_t ||h_S - h_T|| of the outputs and mean_t ||a_S - a_T|| of the mixer outputs,
 *        plus the final-norm term, summed as hylo_ild_loss sums them. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define COMMAND "kd-eval"

/* Scratch activations [T, D] of one evaluation. */
typedef struct {
    float *x, *y;      /* the teacher's residual stream: input and output of a layer       */
    float *a_t;        /* the teacher layer's mixer output                                  */
    float *h_s, *a_s;  /* the student layer's output and mixer output on the teacher's input */
    float *f_t, *f_s;  /* final-norm outputs: teacher's, student's (teacher-forced or own)  */
} activations;

typedef struct {
    hylo_kd_result kd;
    hylo_ild_result ild;
} kd_eval_result;

/* How the KL is computed: the full logits, chunks of rows, or chunks x vocabulary tiles. */
typedef struct {
    int64_t chunk;   /* 0: full [T, V] logits */
    int64_t tile;    /* 0: no tiles           */
    double temperature;
} kl_form;

/* Frees every buffer (NULL ones included). */
static void free_activations(activations *a)
{
    free(a->x);
    free(a->y);
    free(a->a_t);
    free(a->h_s);
    free(a->a_s);
    free(a->f_t);
    free(a->f_s);
}

/* Every buffer [T, D]. */
static hylo_status alloc_activations(activations *a, int64_t T, int64_t D, hylo_error *err)
{
    float **all[] = {&a->x, &a->y, &a->a_t, &a->h_s, &a->a_s, &a->f_t, &a->f_s};
    bool ok = true;
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        *all[i] = malloc((size_t)(T * D) * sizeof(float));
        ok = ok && *all[i];
    }
    if (ok) return HYLO_OK;
    free_activations(a);
    return hylo_error_set(err, HYLO_ERR_NOMEM, "cannot allocate activations [%lld, %lld]",
                          (long long)T, (long long)D);
}

/* The losses compare [T, V] logits and [T, D] activations layer by layer: V, D and L must match. */
static hylo_status check_compatible(const hylo_config *t, const hylo_config *s, hylo_error *err)
{
    const struct {
        const char *name;
        int64_t teacher, student;
    } sizes[] = {{"vocab_size", t->vocab_size, s->vocab_size},
                 {"hidden_size", t->hidden_size, s->hidden_size},
                 {"num_hidden_layers", t->num_layers, s->num_layers}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (sizes[i].teacher != sizes[i].student)
            return hylo_error_set(err, HYLO_ERR_CONFIG,
                                  "teacher and student differ in %s (%lld vs %lld); kd-eval "
                                  "needs the same vocabulary, hidden size and depth",
                                  sizes[i].name, (long long)sizes[i].teacher,
                                  (long long)sizes[i].student);
    return HYLO_OK;
}

/* Teacher layer by layer; each student layer on the teacher's input to it, with a fresh state
 * (each layer keeps its own cache, so one state serves every layer at positions 0 .. T-1).
 * Leaves the teacher's final-norm output in a->f_t. */
static hylo_status teacher_forced_ild(const hylo_model *teacher, const hylo_model *student,
                                      const int32_t *tokens, int64_t T, activations *a,
                                      hylo_ild_result *ild, hylo_error *err)
{
    const int64_t L = hylo_model_config(teacher)->num_layers;
    const int64_t D = hylo_model_config(teacher)->hidden_size;
    hylo_state *st_t = NULL, *st_s = NULL;
    hylo_status st = hylo_state_create(teacher, T, &st_t, err);
    if (st == HYLO_OK) st = hylo_state_create(student, T, &st_s, err);
    if (st == HYLO_OK) st = hylo_embed(teacher, tokens, T, a->x, err);
    *ild = (hylo_ild_result){0};
    for (int64_t l = 0; l < L && st == HYLO_OK; l++) {
        st = hylo_layer_forward(teacher, st_t, l, a->x, T, a->a_t, a->y, err);
        if (st == HYLO_OK) st = hylo_layer_forward(student, st_s, l, a->x, T, a->a_s, a->h_s, err);
        if (st == HYLO_OK) st = hylo_ild_distance(a->h_s, a->y, T, D, &ild->hidden[l], NULL, err);
        if (st == HYLO_OK) st = hylo_ild_distance(a->a_s, a->a_t, T, D, &ild->mixer[l], NULL, err);
        if (st != HYLO_OK) hylo_error_wrap(err, "layer %lld", (long long)l);
        else ild->loss += ild->hidden[l] + ild->mixer[l];
        float *swap = a->x; /* the teacher's output is the next layer's input */
        a->x = a->y;
        a->y = swap;
    }
    if (st == HYLO_OK) {
        hylo_final_norm(teacher, a->x, T, a->f_t);
        hylo_final_norm(student, a->h_s, T, a->f_s);
        st = hylo_ild_distance(a->f_s, a->f_t, T, D, &ild->final, NULL, err);
        ild->loss += ild->final;
    }
    hylo_state_free(st_t);
    hylo_state_free(st_s);
    return st;
}

/* The student's own forward up to the final norm, into a->f_s. */
static hylo_status student_forward(const hylo_model *student, const int32_t *tokens, int64_t T,
                                   activations *a, hylo_error *err)
{
    const int64_t L = hylo_model_config(student)->num_layers;
    hylo_state *state = NULL;
    hylo_status st = hylo_state_create(student, T, &state, err);
    if (st == HYLO_OK) st = hylo_embed(student, tokens, T, a->x, err);
    for (int64_t l = 0; l < L && st == HYLO_OK; l++) {
        st = hylo_layer_forward(student, state, l, a->x, T, NULL, a->y, err);
        float *swap = a->x;
        a->x = a->y;
        a->y = swap;
    }
    if (st == HYLO_OK) hylo_final_norm(student, a->x, T, a->f_s);
    hylo_state_free(state);
    return st;
}

/* KL and CE of the student's and the teacher's final-norm outputs f_s, f_t [T, D]. */
static hylo_status kd_terms(const hylo_model *teacher, const hylo_model *student,
                            const int32_t *tokens, int64_t T, const activations *a,
                            const kl_form *form, hylo_kd_result *out, hylo_error *err)
{
    const int64_t V = hylo_model_config(teacher)->vocab_size;
    const int64_t D = hylo_model_config(teacher)->hidden_size;
    hylo_kd_options opt = hylo_kd_options_default();
    opt.temperature = form->temperature;
    const int32_t *labels = T > 1 ? tokens : NULL; /* one token has no next one: no CE */
    hylo_kd_side s = {a->f_s, hylo_model_lm_head(student), D};
    hylo_kd_side t = {a->f_t, hylo_model_lm_head(teacher), D};
    if (form->tile > 0)
        return hylo_kd_loss_logit_free(&s, &t, labels, T, V, form->chunk, form->tile, &opt, out,
                                       NULL, NULL, err);
    if (form->chunk > 0)
        return hylo_kd_loss_chunked(&s, &t, labels, T, V, form->chunk, &opt, out, NULL, NULL,
                                    err);
    float *zs = malloc((size_t)(T * V) * sizeof(float));
    float *zt = malloc((size_t)(T * V) * sizeof(float));
    hylo_status st = HYLO_OK;
    if (!zs || !zt)
        st = hylo_error_set(err, HYLO_ERR_NOMEM, "cannot allocate logits [%lld, %lld] x 2",
                            (long long)T, (long long)V);
    if (st == HYLO_OK) {
        hylo_lm_head(student, a->f_s, T, zs);
        hylo_lm_head(teacher, a->f_t, T, zt);
        st = hylo_kd_loss(zs, zt, labels, T, V, &opt, out, NULL, err);
    }
    free(zs);
    free(zt);
    return st;
}

/* tokens [T]: the ILD with teacher forcing, then the student's own forward and the KD terms. */
static hylo_status evaluate(const hylo_model *teacher, const hylo_model *student,
                            const int32_t *tokens, int64_t T, const kl_form *form,
                            kd_eval_result *r, hylo_error *err)
{
    hylo_status st = check_compatible(hylo_model_config(teacher), hylo_model_config(student), err);
    activations a = {0};
    if (st == HYLO_OK) st = alloc_activations(&a, T, hylo_model_config(teacher)->hidden_size, err);
    if (st != HYLO_OK) return st;
    st = teacher_forced_ild(teacher, student, tokens, T, &a, &r->ild, err);
    if (st == HYLO_OK) st = student_forward(student, tokens, T, &a, err);
    if (st == HYLO_OK) st = kd_terms(teacher, student, tokens, T, &a, form, &r->kd, err);
    free_activations(&a);
    return st;
}

/* ---- input ------------------------------------------------------------------------------- */

/* --temperature: a finite tau > 0, 1 when absent; false after a message. */
static bool parse_temperature(const char *text, double *out)
{
    *out = 1.0;
    if (!text) return true;
    char *end;
    errno = 0;
    *out = strtod(text, &end);
    if (errno || end == text || *end || !isfinite(*out) || *out <= 0) {
        fprintf(stderr, "hylo %s: --temperature must be a finite number > 0, got '%s'\n",
                COMMAND, text);
        return false;
    }
    return true;
}

/* ---- output ------------------------------------------------------------------------------ */

/* s as a JSON string literal. */
static void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

/* A double that reads back exactly; JSON has no Inf (the KL can be +Inf in principle). */
static void json_number(double v)
{
    if (isfinite(v)) printf("%.17g", v);
    else printf("null");
}

/* "full", "chunked" or "logit-free". */
static const char *form_name(const kl_form *form)
{
    return form->tile > 0 ? "logit-free" : form->chunk > 0 ? "chunked" : "full";
}

/* One JSON object: the KD terms, then the ILD per layer, final-norm term and total. */
static void print_json(const char *tdir, const char *sdir, const hylo_model *student, int64_t T,
                       const kl_form *form, const kd_eval_result *r)
{
    const hylo_hybrid_config *hy = hylo_model_hybrid(student);
    printf("{\n  \"teacher\": ");
    json_string(tdir);
    printf(",\n  \"student\": ");
    json_string(sdir);
    printf(",\n  \"tokens\": %lld,\n  \"temperature\": ", (long long)T);
    json_number(form->temperature);
    printf(",\n  \"kl_form\": \"%s\",\n  \"chunk\": %lld,\n  \"tile\": %lld,\n  \"kl\": ",
           form_name(form), (long long)form->chunk, (long long)form->tile);
    json_number(r->kd.kl);
    printf(",\n  \"ce\": ");
    if (r->kd.targets > 0) json_number(r->kd.ce);
    else printf("null");
    printf(",\n  \"ce_targets\": %lld,\n  \"ild\": {\n    \"layers\": [", (long long)r->kd.targets);
    for (int64_t l = 0; l < hy->num_layers; l++) {
        printf("%s\n      {\"layer\": %lld, \"mixer\": \"%s\", \"hidden\": ", l ? "," : "",
               (long long)l, hylo_mixer_name(hy->mixers[l]));
        json_number(r->ild.hidden[l]);
        printf(", \"mixer_output\": ");
        json_number(r->ild.mixer[l]);
        printf("}");
    }
    printf("\n    ],\n    \"final_norm\": ");
    json_number(r->ild.final);
    printf(",\n    \"total\": ");
    json_number(r->ild.loss);
    printf("\n  }\n}\n");
}

/* The same as a table for people. */
static void print_table(const char *tdir, const char *sdir, const hylo_model *teacher,
                        const hylo_model *student, int64_t T, const kl_form *form,
                        const kd_eval_result *r)
{
    const hylo_config *c = hylo_model_config(teacher);
    const hylo_hybrid_config *ht = hylo_model_hybrid(teacher), *hs = hylo_model_hybrid(student);
    printf("teacher: %s (%s, %lld layers, D %lld, V %lld)\nstudent: %s (mixers:", tdir,
           hylo_arch_name(c->arch), (long long)c->num_layers, (long long)c->hidden_size,
           (long long)c->vocab_size, sdir);
    for (int64_t l = 0; l < hs->num_layers; l++) printf(" %s", hylo_mixer_name(hs->mixers[l]));
    printf(")\ntokens:  %lld, temperature %g, KL from %s", (long long)T, form->temperature,
           form_name(form));
    if (form->chunk > 0) printf(" (chunks of %lld rows", (long long)form->chunk);
    if (form->tile > 0) printf(", vocabulary tiles of %lld", (long long)form->tile);
    printf("%s\n\n", form->chunk > 0 ? ")" : " logits");
    printf("KD   KL(p_T || p_S), batchmean   %.9e\n", r->kd.kl);
    if (r->kd.targets > 0)
        printf("CE   student, next token         %.9e   (%lld targets)\n", r->kd.ce,
               (long long)r->kd.targets);
    else printf("CE   student, next token         n/a (one token has no next one)\n");
    printf("\nEnhanced ILD (each student layer fed the teacher's input to it):\n"
           "  layer  teacher    student    mean ||h_S - h_T||  mean ||a_S - a_T||\n");
    for (int64_t l = 0; l < hs->num_layers; l++)
        printf("  %5lld  %-9s  %-9s  %18.9e  %18.9e\n", (long long)l,
               hylo_mixer_name(ht->mixers[l]), hylo_mixer_name(hs->mixers[l]), r->ild.hidden[l],
               r->ild.mixer[l]);
    printf("  final norm                      %18.9e\n  total                           %18.9e\n",
           r->ild.final, r->ild.loss);
}

/* hylo kd-eval: options as listed below; exit 0, 1 (bad model or input), 2 (bad usage). */
int cmd_kd_eval(int argc, char **argv)
{
    cli_option opts[] = {
        {"--teacher", "DIR", "teacher checkpoint directory", NULL},
        {"--student", "DIR", "student checkpoint (same vocabulary, hidden size and depth)", NULL},
        {"--tokens", "\"1 2 3\"", "token ids of one sequence", NULL},
        {"--tokens-file", "FILE", "token ids from a file (whitespace or commas)", NULL},
        {"--temperature", "t", "KL of softmax(z / t), times t^2 (default 1)", NULL},
        {"--chunk", "C", "KL chunked over C rows at a time (no [T, V] logits)", NULL},
        {"--tile", "N", "logit-free KL over vocabulary tiles of N (chunk: --chunk or 4096)", NULL},
        {"--backend", "ref|cpu|hip", "the implementation of the layers (default ref: the "
                                     "golden numbers; cpu and hip agree to rounding)", NULL},
        {"--weights", "f32|bf16", "cpu and hip backends: weight storage (default f32)", NULL},
        {"--json", NULL, "print one JSON object instead of the table", NULL},
        {"--help", NULL, "show this help", NULL},
    };
    const size_t n = sizeof opts / sizeof opts[0];
    int rc = cli_begin(COMMAND,
                       "KD (KL), student CE and per-layer Enhanced ILD of a student against its "
                       "teacher on one token sequence.",
                       argc, argv, opts, n);
    if (rc != CLI_CONTINUE) return rc;
    const char *tdir = cli_get(opts, n, "--teacher"), *sdir = cli_get(opts, n, "--student");
    if (!tdir || !sdir) {
        fprintf(stderr, "hylo %s: --teacher DIR and --student DIR are required\n", COMMAND);
        return CLI_USAGE;
    }
    kl_form form = {0};
    int32_t *tokens = NULL;
    int64_t T = 0;
    if (!cli_int(COMMAND, opts, n, "--chunk", 1, INT32_MAX, 0, &form.chunk) ||
        !cli_int(COMMAND, opts, n, "--tile", 1, INT32_MAX, 0, &form.tile) ||
        !parse_temperature(cli_get(opts, n, "--temperature"), &form.temperature) ||
        !cli_load_tokens(COMMAND, opts, n, &tokens, &T))
        return CLI_USAGE;
    if (form.tile > 0 && form.chunk == 0) form.chunk = 4096;
    hylo_backend backend;
    hylo_weights weights;
    if (!cli_backend(COMMAND, opts, n, HYLO_BACKEND_REF, &backend, &weights)) {
        free(tokens);
        return CLI_USAGE;
    }
    hylo_error err = {0};
    hylo_model *teacher = NULL, *student = NULL;
    kd_eval_result r;
    if (hylo_model_load(tdir, &teacher, &err) != HYLO_OK ||
        hylo_model_load(sdir, &student, &err) != HYLO_OK ||
        hylo_model_set_backend(teacher, backend, weights, &err) != HYLO_OK ||
        hylo_model_set_backend(student, backend, weights, &err) != HYLO_OK ||
        evaluate(teacher, student, tokens, T, &form, &r, &err) != HYLO_OK) {
        rc = cli_fail(COMMAND, &err);
    } else {
        if (cli_get(opts, n, "--json")) print_json(tdir, sdir, student, T, &form, &r);
        else print_table(tdir, sdir, teacher, student, T, &form, &r);
        rc = CLI_OK;
    }
    hylo_model_free(teacher);
    hylo_model_free(student);
    free(tokens);
    return rc;
}
