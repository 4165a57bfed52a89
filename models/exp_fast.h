/* exp_fast.h -- exp(x) one float at a time (exp_fast) and, with AVX2 and FMA, eight at a time (exp8), and
 * the row kernels built on it (exp_sub, max_lanes, sum_lanes): the softmax and log-softmax of
 * models/forward.c and the KL sum of evaluators/kl_sum.c share them. Private to the library;
 * tests/test_forward.c compares exp_fast and exp8 with expf. Includers compile with -fno-math-errno (see
 * CMakeLists.txt), or the loops do not vectorise.
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

/* x[i] = exp(x[i] - sub) for i < n. With AVX2 and FMA, eight at a time; the tail and other machines use
 * exp_fast. Which path an element takes depends only on n, so results never depend on the thread count. */
static inline void exp_sub(float *x, int n, float sub) {
    int i = 0;
#if defined(__AVX2__) && defined(__FMA__)
    __m256 s = _mm256_set1_ps(sub);
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), s)));
#endif
    for (; i < n; i++) x[i] = exp_fast(x[i] - sub);
}

/* Max and sum over 16 interleaved lanes, combined at the end: written this way the loops vectorise without
 * -ffast-math, and the order of operations is fixed by the code alone (not by the thread count). */
#define EVB_LANES 16
static inline float max_lanes(const float *x, int n) {
    float acc[EVB_LANES];
    for (int k = 0; k < EVB_LANES; k++) acc[k] = x[0];
    int i = 0;
    for (; i + EVB_LANES <= n; i += EVB_LANES)
        for (int k = 0; k < EVB_LANES; k++) acc[k] = x[i + k] > acc[k] ? x[i + k] : acc[k];
    for (; i < n; i++) acc[0] = x[i] > acc[0] ? x[i] : acc[0];
    float m = acc[0];
    for (int k = 1; k < EVB_LANES; k++) m = acc[k] > m ? acc[k] : m;
    return m;
}

static inline float sum_lanes(const float *x, int n) {
    float acc[EVB_LANES] = {0};
    int i = 0;
    for (; i + EVB_LANES <= n; i += EVB_LANES)
        for (int k = 0; k < EVB_LANES; k++) acc[k] += x[i + k];
    for (; i < n; i++) acc[0] += x[i];
    float s = 0.0f;
    for (int k = 0; k < EVB_LANES; k++) s += acc[k];
    return s;
}

#endif
