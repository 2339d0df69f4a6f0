/* probe.c: teacher <-> student agreement on a fixed pseudo-random token sequence: the mean
 * KL(p_teacher || p_student) of the next-token distributions at every position, in nats, and
 * how often the two most likely next tokens agree. The starting point that distillation
 * improves. */
#include <math.h>
#include <stdlib.h>

#include "core/progress.h"
#include "core/rng.h"
#include "io/json.h"
#include "upcycle/upcycle.h"

/* Token t of the probe is floor(u_t V), u_t the t-th uniform of this fixed stream. */
#define PROBE_SEED 0x70726f6265ull /* "probe" */

static double log_sum_exp(const float *x, int64_t n)
{
    double max = -INFINITY, sum = 0.0;
    for (int64_t i = 0; i < n; i++) max = fmax(max, (double)x[i]);
    for (int64_t i = 0; i < n; i++) sum += exp((double)x[i] - max);
    return max + log(sum);
}

/* KL(p || q) = sum_v p_v (log p_v - log q_v), log p_v = a_v - logsumexp(a). */
double hylo_logits_kl(const float *a, const float *b, int64_t V)
{
    const double lse_a = log_sum_exp(a, V), lse_b = log_sum_exp(b, V);
    double kl = 0.0;
    for (int64_t v = 0; v < V; v++) {
        double log_p = (double)a[v] - lse_a, log_q = (double)b[v] - lse_b;
        kl += exp(log_p) * (log_p - log_q);
    }
    return kl;
}

static int64_t argmax(const float *x, int64_t n)
{
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* *logits [T, V] of the checkpoint in `dir` on `tokens`; its vocabulary must be V. */
static hylo_status run_model(const char *dir, const int32_t *tokens, int64_t T, int64_t V,
                             float **logits, hylo_error *err)
{
    hylo_model *model = NULL;
    hylo_state *state = NULL;
    *logits = NULL;
    hylo_status st = hylo_model_load(dir, &model, err);
    /* the optimized CPU backend in fp32 (it agrees with ref to rounding; ref takes minutes at
     * real sizes) */
    if (st == HYLO_OK) st = hylo_model_set_backend(model, HYLO_BACKEND_CPU, HYLO_WEIGHTS_F32, err);
    if (st == HYLO_OK && hylo_model_config(model)->vocab_size != V)
        st = hylo_error_set(err, HYLO_ERR_CONFIG,
                            "%s: vocabulary of %lld tokens; the teacher's has %lld", dir,
                            (long long)hylo_model_config(model)->vocab_size, (long long)V);
    if (st == HYLO_OK) st = hylo_state_create(model, T, &state, err);
    if (st == HYLO_OK) {
        *logits = malloc((size_t)(T * V) * sizeof **logits);
        if (!*logits)
            st = hylo_error_set(err, HYLO_ERR_NOMEM, "cannot allocate [%lld, %lld] logits",
                                (long long)T, (long long)V);
    }
    if (st == HYLO_OK) st = hylo_forward(model, state, tokens, T, HYLO_LOGITS_ALL, *logits, err);
    if (st != HYLO_OK) {
        free(*logits);
        *logits = NULL;
    }
    hylo_state_free(state);
    hylo_model_free(model);
    return st;
}

hylo_status hylo_probe_agreement(const char *teacher_dir, const char *student_dir,
                                 int64_t tokens, hylo_probe_result *out, hylo_error *err)
{
    *out = (hylo_probe_result){0};
    const int64_t T = tokens;
    if (T < 1 || T > (1 << 20))
        return hylo_error_set(err, HYLO_ERR_RANGE, "probe: %lld tokens (expected 1 .. 2^20)",
                              (long long)T);
    hylo_config cfg;
    hylo_status st = hylo_dir_config_load(teacher_dir, &cfg, err);
    if (st != HYLO_OK) return st;
    const int64_t V = cfg.vocab_size;
    int32_t *ids = malloc((size_t)T * sizeof *ids);
    if (!ids) return hylo_error_set(err, HYLO_ERR_NOMEM, "probe: cannot allocate tokens");
    hylo_rng rng;
    hylo_rng_seed(&rng, PROBE_SEED, 0);
    for (int64_t t = 0; t < T; t++) ids[t] = (int32_t)(hylo_rng_uniform(&rng) * (double)V);
    /* one model in memory at a time; progress for real sizes, whose MLPs alone hold 1e8
     * weights or more (a 1B model loads and runs 64 tokens in about two minutes) */
    hylo_progress progress;
    bool big = 3.0 * (double)cfg.hidden_size * (double)cfg.intermediate_size * (double)cfg.num_layers >= 1e8;
    hylo_progress_begin(&progress, big ? "probe (teacher, student)" : NULL, 2, "models", 1);
    float *lt = NULL, *ls = NULL;
    st = run_model(teacher_dir, ids, T, V, &lt, err);
    hylo_progress_update(&progress, 1);
    if (st == HYLO_OK) st = run_model(student_dir, ids, T, V, &ls, err);
    hylo_progress_update(&progress, 2);
    hylo_progress_end(&progress);
    if (st == HYLO_OK) {
        double sum = 0.0, max = 0.0;
        int64_t agree = 0;
        for (int64_t t = 0; t < T; t++) {
            double kl = hylo_logits_kl(lt + t * V, ls + t * V, V);
            sum += kl;
            max = fmax(max, kl);
            agree += argmax(lt + t * V, V) == argmax(ls + t * V, V);
        }
        *out = (hylo_probe_result){T, sum / (double)T, max, (double)agree / (double)T};
    }
    free(ids);
    free(lt);
    free(ls);
    return st;
}
