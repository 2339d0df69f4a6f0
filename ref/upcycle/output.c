/* output.c: the upcycler's and the assembler's output values: fp32 narrowed to the output dtype,
 * refusing values the dtype cannot hold. (Output directories: model/checkpoint_dir.c.) */
#include <math.h>

#include "upcycle/upcycle.h"

hylo_status hylo_output_narrow(hylo_dtype dtype, const float *f, void *dst, size_t n,
                               const char *name, hylo_error *err)
{
    /* F16 tops out at 65504 (65520 and beyond round to Inf); BF16 and F32 cover fp32's range */
    for (size_t i = 0; dtype == HYLO_F16 && i < n; i++)
        if (fabsf(f[i]) >= 65520.0f)
            return hylo_error_set(err, HYLO_ERR_RANGE,
                                  "tensor '%s' holds %g at flat index %zu, beyond the range of F16",
                                  name, (double)f[i], i);
    hylo_convert_from_f32(dtype, f, dst, n);
    return HYLO_OK;
}
