/* exp_fast.h -- exp(x) for the softmax of models/forward.c: one float at a time (exp_fast) and, with AVX2
 * and FMA, eight at a time (exp8). Private to models/; tests/test_forward.c compares both with expf.
 *
 * Cephes' expf (range reduction by ln 2, degree-6 polynomial, about 1 ulp), written without branches or
 * calls so that the compiler vectorises the loops that use it. What it returns, for every float x:
 *   - NaN for a NaN (it propagates, so a NaN weight shows in the result instead of vanishing);
 *   - 0 below -80 (and for -Inf): not a number under 2e-35, so that neither it nor its products with values
 *     become subnormal (subnormal arithmetic costs ~100 cycles an operation). Softmax arguments are <= 0;
 *   - +Inf above EXP_FAST_HI (and for +Inf), as expf does;
 *   - within 2 ulp of expf in between.
 * The power of two 2^n is applied as 2^(n-1) * 2, so that n = 128 (x just under EXP_FAST_HI) has a
 * representable scale and the exponent field never needs a shift of a negative number. */
#ifndef EVB_MODELS_EXP_FAST_H
#define EVB_MODELS_EXP_FAST_H

#include <math.h>
#include <stdint.h>

#define EXP_FAST_LO (-80.0f)
#define EXP_FAST_HI 88.72283172607421875f /* the largest float whose exp is finite in float */

static inline float exp_fast(float x) {
    float keep = x < EXP_FAST_LO ? 0.0f : 1.0f;
    float over = x > EXP_FAST_HI ? INFINITY : 1.0f;
    float y = x < EXP_FAST_LO ? EXP_FAST_LO : (x > EXP_FAST_HI ? EXP_FAST_HI : x);
    y = y == y ? y : 0.0f; /* NaN: compute anything finite, the NaN is returned below */
    float n = floorf(y * 1.44269504088896341f + 0.5f); /* in [-115, 128] */
    float r = y - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { int32_t i; float f; } scale = {.i = ((int32_t)n + 126) * (1 << 23)}; /* 2^(n-1), exponent in [11, 254] */
    float e = p * scale.f * 2.0f * keep * over;
    return x == x ? e : x;
}

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
/* exp_fast of eight floats, with fused multiply-adds (so the last bit may differ from exp_fast's). */
static inline __m256 exp8(__m256 x) {
    __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    __m256 over = _mm256_cmp_ps(x, _mm256_set1_ps(EXP_FAST_HI), _CMP_GT_OQ);
    __m256 keep = _mm256_cmp_ps(x, _mm256_set1_ps(EXP_FAST_LO), _CMP_GE_OQ);
    /* max_ps returns its second operand when the first is NaN: y is always a number */
    __m256 y = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(EXP_FAST_LO)), _mm256_set1_ps(EXP_FAST_HI));
    __m256 n = _mm256_floor_ps(_mm256_fmadd_ps(y, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), y);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(126)), 23);
    __m256 v = _mm256_and_ps(_mm256_mul_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e)), _mm256_set1_ps(2.0f)), keep);
    v = _mm256_blendv_ps(v, _mm256_set1_ps(INFINITY), over);
    return _mm256_blendv_ps(v, x, nan);
}
#endif

#endif
