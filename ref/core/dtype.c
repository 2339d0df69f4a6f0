/* dtype.c: the three floating-point storage types of safetensors checkpoints and their exact
 * conversions to and from fp32 (IEEE 754 binary16, bfloat16; round to nearest even). */
#include "hylo.h"

#include <string.h>

const char *hylo_dtype_name(hylo_dtype dtype)
{
    switch (dtype) {
    case HYLO_F32: return "F32";
    case HYLO_F16: return "F16";
    case HYLO_BF16: return "BF16";
    }
    return "?";
}

size_t hylo_dtype_size(hylo_dtype dtype)
{
    return dtype == HYLO_F32 ? 4 : 2;
}

bool hylo_dtype_parse(const char *name, hylo_dtype *out)
{
    static const hylo_dtype all[] = {HYLO_F32, HYLO_F16, HYLO_BF16};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (strcmp(name, hylo_dtype_name(all[i])) == 0) {
            *out = all[i];
            return true;
        }
    }
    return false;
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* bfloat16 is the upper half of an fp32: widening is a shift. */
float hylo_bf16_to_f32(uint16_t h)
{
    return bits_f32((uint32_t)h << 16);
}

/* Narrowing adds half an ulp of the kept part (plus the kept lsb, for ties to even) and
 * truncates. NaN is kept quiet so that rounding cannot carry it into Inf. */
uint16_t hylo_f32_to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);
    uint32_t lsb = (u >> 16) & 1u;
    return (uint16_t)((u + 0x7fffu + lsb) >> 16);
}

/* binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. */
float hylo_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (man << 13)); /* Inf, NaN */
    if (exp == 0) {
        /* zero or subnormal: man * 2^-24, exact in fp32 */
        float v = (float)man * 0x1p-24f;
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

uint16_t hylo_f32_to_f16(float f)
{
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((abs >> 13) & 0x3ffu)); /* NaN */
    if (abs >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to >= 65520: Inf */
    if (abs < 0x38800000u) {
        /* result is subnormal (or zero): value / 2^-24 rounded to nearest even integer */
        if (abs < 0x33000000u) return sign; /* below half the smallest subnormal */
        uint32_t exp = abs >> 23;
        uint32_t man = (abs & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - exp; /* 14..24 */
        uint32_t q = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1u);
        uint32_t half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (q & 1u))) q++;
        return (uint16_t)(sign | q);
    }
    /* normal: rebias exponent 127 -> 15 and round the 13 dropped mantissa bits */
    uint32_t v = abs - 0x38000000u;
    uint32_t lsb = (v >> 13) & 1u;
    v += 0xfffu + lsb;
    return (uint16_t)(sign | (v >> 13));
}

/* Conversions of more elements than this are split across threads (whole-weight widening). */
enum { PARALLEL_MIN = 1 << 16 };

static uint16_t load_u16(const unsigned char *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

void hylo_convert_to_f32(hylo_dtype dtype, const void *src, float *dst, size_t n)
{
    const unsigned char *p = src;
    switch (dtype) {
    case HYLO_F32:
        memcpy(dst, src, n * sizeof(float));
        return;
    case HYLO_F16:
#pragma omp parallel for schedule(static) if (n > PARALLEL_MIN)
        for (size_t i = 0; i < n; i++) dst[i] = hylo_f16_to_f32(load_u16(p + 2 * i));
        return;
    case HYLO_BF16:
#pragma omp parallel for schedule(static) if (n > PARALLEL_MIN)
        for (size_t i = 0; i < n; i++) dst[i] = hylo_bf16_to_f32(load_u16(p + 2 * i));
        return;
    }
}

void hylo_convert_from_f32(hylo_dtype dtype, const float *src, void *dst, size_t n)
{
    unsigned char *p = dst;
    uint16_t (*narrow)(float) = dtype == HYLO_F16 ? hylo_f32_to_f16 : hylo_f32_to_bf16;
    if (dtype == HYLO_F32) {
        memcpy(dst, src, n * sizeof(float));
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint16_t h = narrow(src[i]);
        p[2 * i] = (unsigned char)(h & 0xff);
        p[2 * i + 1] = (unsigned char)(h >> 8);
    }
}
