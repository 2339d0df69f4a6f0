/* attention.c: causal grouped-query attention (spec sec. 2), softmax in double. */
#include <math.h>
#include <stdlib.h>

#include "layers/layers.h"

/* q [T, H, hd], k_cache, v_cache [len, Hkv, hd], out [T, H, hd]. Query t is at position
 * p = len - T + t; query head h reads KV head g = h / (H / Hkv):
 *   s_j = scale * q[t, h] . k[j, g]          for j = 0 .. p
 *   out[t, h] = sum_j exp(s_j - max s) v[j, g] / sum_j exp(s_j - max s)                    */
hylo_status hylo_ref_attention(const float *q, const float *k_cache, const float *v_cache,
                               float *out, int64_t T, int64_t len, int64_t H, int64_t Hkv,
                               int64_t hd, double scale, hylo_error *err)
{
    int64_t group = H / Hkv;
    double *acc = calloc((size_t)(T * H * hd), sizeof *acc); /* double accumulators of out */
    if (!acc && T * H * hd > 0)
        return hylo_error_set(err, HYLO_ERR_NOMEM, "attention: cannot allocate %lld doubles",
                              (long long)(T * H * hd));
#pragma omp parallel for collapse(2) schedule(dynamic)
    for (int64_t t = 0; t < T; t++) {
        for (int64_t h = 0; h < H; h++) {
            int64_t p = len - T + t;
            int64_t g = h / group;
            const float *qh = q + (t * H + h) * hd;
            double *sum = acc + (t * H + h) * hd;
            /* pass 1: the largest score, so that no exp() can overflow */
            double max_score = -INFINITY;
            for (int64_t j = 0; j <= p; j++) {
                const float *kj = k_cache + (j * Hkv + g) * hd;
                double dot = 0.0;
                for (int64_t d = 0; d < hd; d++) dot += (double)qh[d] * (double)kj[d];
                max_score = fmax(max_score, dot * scale);
            }
            /* pass 2: the weighted sum of values and the normalizer */
            double denom = 0.0;
            for (int64_t j = 0; j <= p; j++) {
                const float *kj = k_cache + (j * Hkv + g) * hd;
                const float *vj = v_cache + (j * Hkv + g) * hd;
                double dot = 0.0;
                for (int64_t d = 0; d < hd; d++) dot += (double)qh[d] * (double)kj[d];
                double w = exp(dot * scale - max_score);
                denom += w;
                for (int64_t d = 0; d < hd; d++) sum[d] += w * (double)vj[d];
            }
            float *oh = out + (t * H + h) * hd;
            for (int64_t d = 0; d < hd; d++) oh[d] = (float)(sum[d] / denom);
        }
    }
    free(acc);
    return HYLO_OK;
}
