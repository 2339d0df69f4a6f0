/* test_dtype.c: bf16 / f16 conversions against exhaustive round trips and known encodings. */
#include <math.h>
#include <string.h>

#include "testutil.h"

START_TEST(bf16_roundtrip_exhaustive)
{
    /* Every bf16 value widens exactly and narrows back to itself (NaNs stay NaN). */
    for (uint32_t h = 0; h <= 0xffff; h++) {
        float f = hylo_bf16_to_f32((uint16_t)h);
        uint16_t back = hylo_f32_to_bf16(f);
        if (isnan(f)) ck_assert(isnan(hylo_bf16_to_f32(back)));
        else ck_assert_uint_eq(back, h);
    }
}
END_TEST

START_TEST(f16_roundtrip_exhaustive)
{
    for (uint32_t h = 0; h <= 0xffff; h++) {
        float f = hylo_f16_to_f32((uint16_t)h);
        uint16_t back = hylo_f32_to_f16(f);
        if (isnan(f)) ck_assert(isnan(hylo_f16_to_f32(back)));
        else ck_assert_msg(back == h, "f16 0x%04x -> %g -> 0x%04x", h, (double)f, back);
    }
}
END_TEST

START_TEST(known_encodings)
{
    ck_assert_uint_eq(hylo_f32_to_bf16(1.0f), 0x3f80);
    ck_assert_uint_eq(hylo_f32_to_f16(1.0f), 0x3c00);
    ck_assert_uint_eq(hylo_f32_to_f16(65504.0f), 0x7bff);      /* largest finite */
    ck_assert_uint_eq(hylo_f32_to_f16(65520.0f), 0x7c00);      /* rounds to Inf */
    ck_assert_uint_eq(hylo_f32_to_f16(0x1p-24f), 0x0001);      /* smallest subnormal */
    ck_assert_uint_eq(hylo_f32_to_f16(0x1p-25f), 0x0000);      /* tie to even: zero */
    ck_assert_uint_eq(hylo_f32_to_f16(0x1.8p-25f), 0x0001);
    ck_assert_uint_eq(hylo_f32_to_f16(-2.0f), 0xc000);
    ck_assert_uint_eq(hylo_f32_to_bf16(INFINITY), 0x7f80);
    ck_assert(hylo_f16_to_f32(0x7c00) == INFINITY);
}
END_TEST

START_TEST(round_to_nearest_even)
{
    /* 1 + 2^-8 lies halfway between the bf16 neighbours 1 and 1 + 2^-7: ties go to even (1). */
    ck_assert_uint_eq(hylo_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);
    ck_assert_uint_eq(hylo_f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);
    ck_assert_uint_eq(hylo_f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82); /* tie, odd -> up */
    ck_assert_uint_eq(hylo_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);
    ck_assert_uint_eq(hylo_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);
    /* The error of narrowing is at most half an ulp on random values. */
    hylo_test_rng rng = {7};
    for (int i = 0; i < 100000; i++) {
        float x = (float)(hylo_test_normal(&rng) * 100.0);
        float b = hylo_bf16_to_f32(hylo_f32_to_bf16(x));
        float h = hylo_f16_to_f32(hylo_f32_to_f16(x));
        ck_assert(fabsf(b - x) <= fabsf(x) * 0x1p-8f);
        ck_assert(fabsf(h - x) <= fabsf(x) * 0x1p-11f + 0x1p-25f);
    }
}
END_TEST

START_TEST(bulk_conversion_little_endian)
{
    const float src[4] = {1.0f, -2.5f, 0.0f, 3.140625f};
    unsigned char bytes[8];
    float back[4];
    hylo_convert_from_f32(HYLO_BF16, src, bytes, 4);
    ck_assert_uint_eq(bytes[0], 0x80);
    ck_assert_uint_eq(bytes[1], 0x3f);
    hylo_convert_to_f32(HYLO_BF16, bytes, back, 4);
    ck_assert_mem_eq(back, src, sizeof src);
    hylo_convert_from_f32(HYLO_F16, src, bytes, 4);
    hylo_convert_to_f32(HYLO_F16, bytes, back, 4);
    ck_assert_mem_eq(back, src, sizeof src);
    hylo_dtype d;
    ck_assert(hylo_dtype_parse("BF16", &d) && d == HYLO_BF16);
    ck_assert(!hylo_dtype_parse("F64", &d));
    ck_assert(!hylo_dtype_parse("bf16", &d));
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("dtype");
    TCase *tc = tcase_create("conversions");
    tcase_add_test(tc, bf16_roundtrip_exhaustive);
    tcase_add_test(tc, f16_roundtrip_exhaustive);
    tcase_add_test(tc, known_encodings);
    tcase_add_test(tc, round_to_nearest_even);
    tcase_add_test(tc, bulk_conversion_little_endian);
    suite_add_tcase(s, tc);
    return s;
}

HYLO_TEST_MAIN
