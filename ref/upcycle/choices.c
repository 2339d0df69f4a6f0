/* choices.c: hybrids from explicit choices (which layers are MLA, which linear block the others
 * use) rather than a paper layout name. */
#include <errno.h>
#include <stdlib.h>

#include "hylo.h"

hylo_status hylo_parse_layer_list(const char *text, int64_t num_layers, bool *selected,
                                  hylo_error *err)
{
    for (int64_t i = 0; i < num_layers; i++) selected[i] = false;
    const char *p = text;
    while (*p) {
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno || (*end != ',' && *end != '\0'))
            return hylo_error_set(err, HYLO_ERR_CONFIG,
                                  "layer list '%s': expected comma-separated layer indices near "
                                  "'%.16s'", text, p);
        if (v < 0 || v >= num_layers)
            return hylo_error_set(err, HYLO_ERR_CONFIG,
                                  "layer list '%s': layer %lld is out of range (the model has "
                                  "layers 0 .. %lld)", text, v, (long long)num_layers - 1);
        if (selected[v])
            return hylo_error_set(err, HYLO_ERR_CONFIG, "layer list '%s': layer %lld is listed twice",
                                  text, v);
        selected[v] = true;
        p = end;
        if (*p == ',' && *++p == '\0')
            return hylo_error_set(err, HYLO_ERR_CONFIG, "layer list '%s' ends with a comma", text);
    }
    return HYLO_OK;
}

hylo_status hylo_hybrid_choose(const hylo_config *base, const bool *mla, hylo_mixer linear,
                               hylo_hybrid_config *out, hylo_error *err)
{
    if (linear != HYLO_MIXER_GDN && linear != HYLO_MIXER_MAMBA2)
        return hylo_error_set(err, HYLO_ERR_CONFIG,
                              "the linear block must be gdn or mamba2, not %s",
                              hylo_mixer_name(linear));
    hylo_hybrid_config hy;
    hylo_hybrid_teacher(base, &hy); /* the default sizes, as hylo_hybrid_layout's */
    for (int64_t i = 0; i < hy.num_layers && i < HYLO_MAX_LAYERS; i++)
        hy.mixers[i] = mla[i] ? HYLO_MIXER_MLA : linear;
    hylo_status st = hylo_hybrid_config_validate(&hy, base, "layer choices", err);
    if (st == HYLO_OK) *out = hy;
    return st;
}
