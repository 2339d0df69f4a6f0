/* cmd_diff.c: `hylo diff A B`: compares two safetensors files tensor by tensor (traces, logits,
 * golden outputs) in A's order, which for traces is forward order, and names the first tensor
 * beyond its tolerance: the place a kernel first goes wrong. Exit 0 when every tensor passes,
 * 1 when one does not, 2 on bad input. */
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "io/json.h"
#include "io/safetensors_internal.h"

#define COMMAND "diff"
#define DEFAULT_NMSE 1e-10 /* same-precision fp32 implementations (spec sec. 11) */
#define MAX_RULES 64

/* A tolerance for the tensors whose names match `pattern` (the first matching rule wins). */
typedef struct {
    char pattern[128];
    double nmse;     /* largest NMSE accepted                  */
    double max_abs;  /* largest |a - b| accepted; < 0: no limit */
} tolerance;

typedef struct {
    tolerance rules[MAX_RULES];
    int count;
} tolerances;

typedef struct {
    const char *name;
    char shape[64];
    double nmse, max_abs, max_rel;
    const tolerance *tol;
    const char *problem; /* NULL, or why the tensor could not be compared */
    bool ok;
} comparison;

static bool add_rule(tolerances *t, const char *pattern, double nmse, double max_abs)
{
    if (t->count == MAX_RULES || strlen(pattern) >= sizeof t->rules[0].pattern) return false;
    tolerance *r = &t->rules[t->count++];
    snprintf(r->pattern, sizeof r->pattern, "%s", pattern);
    r->nmse = nmse;
    r->max_abs = max_abs;
    return true;
}

/* --tol GLOB=NMSE[,MAX_ABS] */
static bool parse_tol_flag(const char *text, tolerances *t)
{
    const char *eq = strrchr(text, '=');
    char pattern[128], *end;
    if (!eq || (size_t)(eq - text) >= sizeof pattern) return false;
    memcpy(pattern, text, (size_t)(eq - text));
    pattern[eq - text] = '\0';
    double nmse = strtod(eq + 1, &end), max_abs = -1.0;
    if (end == eq + 1 || !(nmse >= 0)) return false;
    if (*end == ',') {
        const char *s = end + 1;
        max_abs = strtod(s, &end);
        if (end == s || !(max_abs >= 0)) return false;
    }
    return *end == '\0' && add_rule(t, pattern, nmse, max_abs);
}

/* {"tolerances": [{"pattern": "*.logits", "nmse": 1e-9, "max_abs": 1e-4}, ...]} (a golden
 * manifest has this key too). */
static hylo_status load_tolerances(const char *path, tolerances *t, hylo_error *err)
{
    char *text;
    size_t len;
    cJSON *root = NULL;
    hylo_status st = hylo_json_read_file(path, (size_t)1 << 24, &text, &len, err);
    if (st != HYLO_OK) return st;
    st = hylo_json_parse_object(text, len, path, "a 'tolerances' array", &root, err);
    free(text);
    if (st != HYLO_OK) return st;
    const hylo_json_reader top = {root, "", path, err};
    const cJSON *list;
    st = hylo_json_member(&top, "tolerances", &list);
    if (st == HYLO_OK && !cJSON_IsArray(list))
        st = hylo_json_type_error(&top, "tolerances", "an array of {pattern, nmse, max_abs}", list);
    int i = 0;
    for (const cJSON *e = st == HYLO_OK ? list->child : NULL; e && st == HYLO_OK; e = e->next, i++) {
        char where[48];
        snprintf(where, sizeof where, "tolerances[%d].", i);
        const hylo_json_reader r = {e, where, path, err};
        const char *pattern = NULL;
        double nmse = -1.0, max_abs = -1.0;
        bool found = false;
        if (!cJSON_IsObject(e)) st = hylo_json_type_error(&top, "tolerances", "objects", e);
        if (st == HYLO_OK) st = hylo_json_read_string(&r, "pattern", &pattern, NULL);
        if (st == HYLO_OK) st = hylo_json_read_double(&r, "nmse", &nmse, &found);
        if (st == HYLO_OK) st = hylo_json_read_double(&r, "max_abs", &max_abs, NULL);
        if (st == HYLO_OK && (!pattern || !found || nmse < 0))
            st = hylo_error_set(err, HYLO_ERR_CONFIG,
                                "%s: tolerances[%d] needs a 'pattern' and an 'nmse' >= 0", path, i);
        if (st == HYLO_OK && !add_rule(t, pattern, nmse, max_abs))
            st = hylo_error_set(err, HYLO_ERR_CONFIG, "%s: too many or too long patterns", path);
    }
    cJSON_Delete(root);
    return st;
}

static const tolerance *rule_for(const tolerances *t, const char *name)
{
    for (int i = 0; i < t->count; i++)
        if (fnmatch(t->rules[i].pattern, name, 0) == 0) return &t->rules[i];
    return &t->rules[t->count - 1]; /* the default rule "*" is always last */
}

/* Both sides are widened to fp32, so a bf16 trace compares with an fp32 one.
 * NMSE = sum (a - b)^2 / sum b^2 (spec sec. 11; b is the reference), max |a - b|, and
 * max |a - b| / |b| over the entries with b != 0. A non-finite entry where the other file has a
 * different value makes NMSE infinite. */
static void measure(const float *a, const float *b, int64_t n, comparison *c)
{
    double num = 0.0, den = 0.0, max_abs = 0.0, max_rel = 0.0;
    bool broken = false;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(a[i]) || !isfinite(b[i])) {
            broken |= !(a[i] == b[i]); /* equal infinities pass; NaN never does */
            continue;
        }
        double d = fabs((double)a[i] - (double)b[i]);
        num += d * d;
        den += (double)b[i] * (double)b[i];
        max_abs = fmax(max_abs, d);
        if (b[i] != 0.0f) max_rel = fmax(max_rel, d / fabs((double)b[i]));
    }
    c->nmse = broken ? INFINITY : den > 0.0 ? num / den : num > 0.0 ? INFINITY : 0.0;
    c->max_abs = broken ? INFINITY : max_abs;
    c->max_rel = broken ? INFINITY : max_rel;
}

static bool same_shape(const hylo_tensor_view *a, const hylo_tensor_view *b)
{
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

static void compare_tensor(const hylo_tensor_view *a, const hylo_tensor_view *b,
                           const tolerances *t, comparison *c)
{
    c->name = a->name;
    c->tol = rule_for(t, a->name);
    hylo_st_format_shape(c->shape, sizeof c->shape, a->ndim, a->shape);
    c->nmse = c->max_abs = c->max_rel = INFINITY;
    if (!b) c->problem = "missing in B";
    else if (!same_shape(a, b)) c->problem = "shape differs";
    if (c->problem) return;
    float *fa = malloc((size_t)(a->numel > 0 ? a->numel : 1) * sizeof *fa);
    float *fb = malloc((size_t)(b->numel > 0 ? b->numel : 1) * sizeof *fb);
    if (fa && fb) {
        hylo_convert_to_f32(a->dtype, a->data, fa, (size_t)a->numel);
        hylo_convert_to_f32(b->dtype, b->data, fb, (size_t)b->numel);
        measure(fa, fb, a->numel, c);
        c->ok = c->nmse <= c->tol->nmse && (c->tol->max_abs < 0 || c->max_abs <= c->tol->max_abs);
    } else {
        c->problem = "out of memory";
    }
    free(fa);
    free(fb);
}

static void print_table(const comparison *c, size_t n, const char *first, size_t failed)
{
    printf("%-44s %-16s %10s %10s %10s %9s  %s\n", "tensor (forward order)", "shape", "NMSE",
           "max abs", "max rel", "tol", "verdict");
    for (size_t i = 0; i < n; i++) {
        if (c[i].problem) {
            printf("%-44s %-16s %10s %10s %10s %9.1e  FAIL: %s\n", c[i].name, c[i].shape, "-", "-",
                   "-", c[i].tol ? c[i].tol->nmse : 0.0, c[i].problem);
            continue;
        }
        printf("%-44s %-16s %10.3e %10.3e %10.3e %9.1e  %s\n", c[i].name, c[i].shape, c[i].nmse,
               c[i].max_abs, c[i].max_rel, c[i].tol->nmse, c[i].ok ? "ok" : "FAIL");
    }
    if (first) printf("first divergent tensor: %s\n", first);
    printf("diff: %zu passed, %zu failed\n", n - failed, failed);
}

static void print_json_number(double v)
{
    if (isfinite(v)) printf("%.6e", v);
    else printf("null");
}

static void print_json(const comparison *c, size_t n, const char *first, size_t failed)
{
    printf("{\"tensors\": [");
    for (size_t i = 0; i < n; i++) {
        printf("%s\n  {\"name\": ", i ? "," : "");
        hylo_text t = {0};
        hylo_text_json_string(&t, c[i].name);
        printf("%s, \"shape\": \"%s\", \"nmse\": ", t.data ? t.data : "\"?\"", c[i].shape);
        hylo_text_free(&t);
        print_json_number(c[i].nmse);
        printf(", \"max_abs\": ");
        print_json_number(c[i].max_abs);
        printf(", \"max_rel\": ");
        print_json_number(c[i].max_rel);
        printf(", \"tol_nmse\": %.3e, \"ok\": %s, \"problem\": %s%s%s}", c[i].tol->nmse,
               c[i].ok ? "true" : "false", c[i].problem ? "\"" : "",
               c[i].problem ? c[i].problem : "null", c[i].problem ? "\"" : "");
    }
    hylo_text t = {0};
    if (first) hylo_text_json_string(&t, first);
    printf("\n], \"first_failure\": %s, \"passed\": %zu, \"failed\": %zu}\n",
           first && t.data ? t.data : "null", n - failed, failed);
    hylo_text_free(&t);
}

int cmd_diff(int argc, char **argv)
{
    cli_option opts[] = {
        {"--tol", "GLOB=NMSE[,ABS]", "tolerance for names matching GLOB (repeatable; first match wins)", NULL},
        {"--tolerances", "FILE", "JSON with \"tolerances\": [{pattern, nmse, max_abs}] (a golden manifest)", NULL},
        {"--default-nmse", "X", "tolerance of names no rule matches (default 1e-10)", NULL},
        {"--subset", NULL, "compare A's tensors only (B may hold more, e.g. a whole-model trace)", NULL},
        {"--json", NULL, "print JSON instead of the table", NULL},
        {"--help", NULL, "show this help", NULL},
    };
    const size_t n = sizeof opts / sizeof opts[0];
    /* positional A B first, then options (--tol may repeat: parsed here, not by cli_parse) */
    if (argc >= 1 && strcmp(argv[0], "--help") == 0) {
        cli_usage(COMMAND " A B", "Compares two safetensors files tensor by tensor.", opts, n);
        return CLI_OK;
    }
    if (argc < 2) {
        fprintf(stderr, "hylo %s: usage: hylo diff A B [options]\n", COMMAND);
        return CLI_USAGE;
    }
    const char *path_a = argv[0], *path_b = argv[1];
    tolerances tol = {.count = 0};
    int rest = 0;
    char **others = malloc((size_t)argc * sizeof *others);
    if (!others) return CLI_FAIL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--tol") == 0 && i + 1 < argc) {
            if (!parse_tol_flag(argv[++i], &tol)) {
                fprintf(stderr, "hylo %s: --tol '%s': expected GLOB=NMSE or GLOB=NMSE,MAX_ABS\n",
                        COMMAND, argv[i]);
                free(others);
                return CLI_USAGE;
            }
        } else {
            others[rest++] = argv[i];
        }
    }
    bool parsed = cli_parse(COMMAND, rest, others, opts, n);
    free(others);
    if (!parsed) return CLI_USAGE;
    hylo_error err = {0};
    const char *tol_file = cli_get(opts, n, "--tolerances"), *def = cli_get(opts, n, "--default-nmse");
    if (tol_file && load_tolerances(tol_file, &tol, &err) != HYLO_OK) {
        cli_fail(COMMAND, &err);
        return CLI_USAGE;
    }
    char *end = NULL;
    double default_nmse = def ? strtod(def, &end) : DEFAULT_NMSE;
    if ((def && (*end || !(default_nmse >= 0))) || !add_rule(&tol, "*", default_nmse, -1.0)) {
        fprintf(stderr, "hylo %s: bad --default-nmse or too many rules\n", COMMAND);
        return CLI_USAGE;
    }
    hylo_safetensors *a = NULL, *b = NULL;
    if (hylo_safetensors_open(path_a, &a, &err) != HYLO_OK ||
        hylo_safetensors_open(path_b, &b, &err) != HYLO_OK) {
        cli_fail(COMMAND, &err);
        hylo_safetensors_close(a);
        return CLI_USAGE;
    }
    size_t na = hylo_safetensors_count(a), nb = hylo_safetensors_count(b), rows = 0, failed = 0;
    comparison *c = calloc(na + nb + 1, sizeof *c);
    const char *first = NULL;
    int rc = CLI_USAGE;
    if (!c) fprintf(stderr, "hylo %s: out of memory\n", COMMAND);
    if (c) {
        for (size_t i = 0; i < na; i++) {
            const hylo_tensor_view *va = hylo_safetensors_at(a, i);
            compare_tensor(va, hylo_safetensors_find(b, va->name), &tol, &c[rows++]);
        }
        for (size_t i = 0; !cli_get(opts, n, "--subset") && i < nb; i++) { /* only in B */
            const hylo_tensor_view *vb = hylo_safetensors_at(b, i);
            if (hylo_safetensors_find(a, vb->name)) continue;
            c[rows] = (comparison){.name = vb->name, .tol = rule_for(&tol, vb->name),
                                   .problem = "missing in A", .nmse = INFINITY};
            hylo_st_format_shape(c[rows].shape, sizeof c[0].shape, vb->ndim, vb->shape);
            rows++;
        }
        for (size_t i = 0; i < rows; i++) {
            if (c[i].ok) continue;
            failed++;
            if (!first) first = c[i].name;
        }
        if (cli_get(opts, n, "--json")) print_json(c, rows, first, failed);
        else print_table(c, rows, first, failed);
        rc = failed ? CLI_FAIL : CLI_OK;
    }
    free(c);
    hylo_safetensors_close(a);
    hylo_safetensors_close(b);
    return rc;
}
