/* gguf_quant.c -- llama.cpp's GGUF block types: reference rounding and decoding bit for bit, and GPTQ
 * constrained to each type's grid (see evb_gguf.h).
 *
 * The rounding and decoding functions are transcriptions of ggml/src/ggml-quants.c (quantize_row_*_ref,
 * dequantize_row_*, nearest_int, make_qx_quants, make_q3_quants, make_qkx2_quants, get_scale_min_k4) and
 * of ggml-impl.h's fp16/bf16 conversions, one block at a time: the expressions, their float/int types and
 * their order are kept as they are there, since one changed rounding flips a code. What that needs:
 *   - no fused multiply-add: ggml-base is built for baseline x86-64 and contracts nothing, so a*b + c must
 *     round twice here too (the pragmas below; GCC also contracts nothing under -std=c11);
 *   - no -ffast-math (refused below): the searches compare sums that reassociation would change;
 *   - fp16 by ggml's bit-manipulation routine (round to nearest even, NaN -> 0x7E00), not a cast;
 *   - the float -> int8/uint8 conversions of the legacy types truncate ((int8_t)(x + 8.5f)), the k-quants
 *     round with nearest_int's 1.5 * 2^23 trick (half to even, only for |x| < 2^22);
 *   - the packed block is built in a zeroed local copy and copied out, so the caller's buffer need not be
 *     aligned and what it held before does not matter.
 *
 * GPTQ: every type decodes element j of a block as s_j * (float)(q_j + koff) - m_j with a code q_j in
 * [0, maxq] (the grid_* functions below), which are exactly the float operations of dequantize_row_* (x - m and
 * x + (-m) round alike). When a block's first column comes up, llama.cpp's rounding of the block's current
 * weights fixes s and m; each column is then rounded to the nearest of the maxq + 1 grid values and its
 * error spread as in compressors/quant.c. Where the grid is a single point (s == 0: a zero sub-block) the
 * code of llama.cpp's rounding is kept, so an untouched zero block packs as ggml packs it. Unlike quant.c's
 * groups (which copy fasterquant's reading of a group from before the lazy block), a block is read with
 * every earlier column's update applied, also the pending ones of the current lazy block for its columns
 * beyond it; so the result does not depend on blocksize, and the blocked and naive loops agree bit for bit. */
#include "evobudget/evb_gguf.h"
#include "compressors/gguf_naive.h"
#include "compressors/gptq_impl.h"
#include "evobudget/evb_status.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#ifdef __FAST_MATH__
#error "compressors/gguf_quant.c must not be built with -ffast-math: it reproduces llama.cpp's float rounding"
#endif
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

/* Columns of the lazy update handled per pass, so that the block's rows of U stay in cache. */
enum { LAZY_TILE = 512 };

#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_0 32
#define QK_K 256
#define GROUP_MAX_EPS 1e-15f
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define MIN(a, b) ((a) < (b) ? (a) : (b))

/* ---- fp16 and bf16 (ggml-impl.h) ---- */

static inline float fp32_from_bits(uint32_t w) { float f; memcpy(&f, &w, sizeof f); return f; }
static inline uint32_t fp32_to_bits(float f) { uint32_t w; memcpy(&w, &f, sizeof w); return w; }

static inline float fp16_to_fp32(uint16_t h) {
    const uint32_t w = (uint32_t)h << 16;
    const uint32_t sign = w & UINT32_C(0x80000000);
    const uint32_t two_w = w + w;
    const uint32_t exp_offset = UINT32_C(0xE0) << 23;
    const float exp_scale = 0x1.0p-112f;
    const float normalized_value = fp32_from_bits((two_w >> 4) + exp_offset) * exp_scale;
    const uint32_t magic_mask = UINT32_C(126) << 23;
    const float magic_bias = 0.5f;
    const float denormalized_value = fp32_from_bits((two_w >> 17) | magic_mask) - magic_bias;
    const uint32_t denormalized_cutoff = UINT32_C(1) << 27;
    const uint32_t result = sign |
        (two_w < denormalized_cutoff ? fp32_to_bits(denormalized_value) : fp32_to_bits(normalized_value));
    return fp32_from_bits(result);
}

static inline uint16_t fp32_to_fp16(float f) {
    const float scale_to_inf = 0x1.0p+112f;
    const float scale_to_zero = 0x1.0p-110f;
    float base = (fabsf(f) * scale_to_inf) * scale_to_zero;
    const uint32_t w = fp32_to_bits(f);
    const uint32_t shl1_w = w + w;
    const uint32_t sign = w & UINT32_C(0x80000000);
    uint32_t bias = shl1_w & UINT32_C(0xFF000000);
    if (bias < UINT32_C(0x71000000)) bias = UINT32_C(0x71000000);
    base = fp32_from_bits((bias >> 1) + UINT32_C(0x07800000)) + base;
    const uint32_t bits = fp32_to_bits(base);
    const uint32_t exp_bits = (bits >> 13) & UINT32_C(0x00007C00);
    const uint32_t mantissa_bits = bits & UINT32_C(0x00000FFF);
    const uint32_t nonsign = exp_bits + mantissa_bits;
    return (uint16_t)((sign >> 16) | (shl1_w > UINT32_C(0xFF000000) ? UINT16_C(0x7E00) : nonsign));
}

static inline float bf16_to_fp32(uint16_t h) { return fp32_from_bits((uint32_t)h << 16); }

static inline uint16_t fp32_to_bf16(float s) {
    const uint32_t i = fp32_to_bits(s);
    if ((i & 0x7fffffff) > 0x7f800000) return (uint16_t)((i >> 16) | 64); /* NaN: keep it, make it quiet */
    return (uint16_t)((i + (0x7fff + ((i >> 16) & 1))) >> 16);
}

#define GGML_FP32_TO_FP16(x) fp32_to_fp16(x)
#define GGML_FP16_TO_FP32(x) fp16_to_fp32(x)

/* ---- block layouts (ggml-common.h) ---- */

typedef uint16_t ggml_half;
typedef struct { ggml_half d; uint8_t qs[QK4_0 / 2]; } block_q4_0;
typedef struct { ggml_half d, m; uint8_t qs[QK4_1 / 2]; } block_q4_1;
typedef struct { ggml_half d; uint8_t qh[4]; uint8_t qs[QK5_0 / 2]; } block_q5_0;
typedef struct { ggml_half d, m; uint8_t qh[4]; uint8_t qs[QK5_1 / 2]; } block_q5_1;
typedef struct { ggml_half d; int8_t qs[QK8_0]; } block_q8_0;
typedef struct { uint8_t scales[QK_K / 16]; uint8_t qs[QK_K / 4]; ggml_half d, dmin; } block_q2_K;
typedef struct { uint8_t hmask[QK_K / 8]; uint8_t qs[QK_K / 4]; uint8_t scales[12]; ggml_half d; } block_q3_K;
typedef struct { ggml_half d, dmin; uint8_t scales[12]; uint8_t qs[QK_K / 2]; } block_q4_K;
typedef struct { ggml_half d, dmin; uint8_t scales[12]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; } block_q5_K;
typedef struct { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; ggml_half d; } block_q6_K;

_Static_assert(sizeof(block_q4_0) == 18, "q4_0 block size");
_Static_assert(sizeof(block_q4_1) == 20, "q4_1 block size");
_Static_assert(sizeof(block_q5_0) == 22, "q5_0 block size");
_Static_assert(sizeof(block_q5_1) == 24, "q5_1 block size");
_Static_assert(sizeof(block_q8_0) == 34, "q8_0 block size");
_Static_assert(sizeof(block_q2_K) == 84, "q2_K block size");
_Static_assert(sizeof(block_q3_K) == 110, "q3_K block size");
_Static_assert(sizeof(block_q4_K) == 144, "q4_K block size");
_Static_assert(sizeof(block_q5_K) == 176, "q5_K block size");
_Static_assert(sizeof(block_q6_K) == 210, "q6_K block size");

/* ---- the legacy 32-element types: reference rounding of one block ---- */

static void ref_q4_0(const float *x, block_q4_0 *y) {
    static const int qk = QK4_0;
    float amax = 0.0f; /* absolute max */
    float max = 0.0f;
    for (int j = 0; j < qk; j++) {
        const float v = x[j];
        if (amax < fabsf(v)) { amax = fabsf(v); max = v; }
    }
    const float d = max / -8;
    const float id = d ? 1.0f / d : 0.0f;
    y->d = GGML_FP32_TO_FP16(d);
    for (int j = 0; j < qk / 2; ++j) {
        const float x0 = x[0 + j] * id;
        const float x1 = x[qk / 2 + j] * id;
        const uint8_t xi0 = MIN(15, (int8_t)(x0 + 8.5f));
        const uint8_t xi1 = MIN(15, (int8_t)(x1 + 8.5f));
        y->qs[j] = xi0;
        y->qs[j] |= xi1 << 4;
    }
}

static void ref_q4_1(const float *x, block_q4_1 *y) {
    const int qk = QK4_1;
    float min = FLT_MAX;
    float max = -FLT_MAX;
    for (int j = 0; j < qk; j++) {
        const float v = x[j];
        if (v < min) min = v;
        if (v > max) max = v;
    }
    const float d = (max - min) / ((1 << 4) - 1);
    const float id = d ? 1.0f / d : 0.0f;
    y->d = GGML_FP32_TO_FP16(d);
    y->m = GGML_FP32_TO_FP16(min);
    for (int j = 0; j < qk / 2; ++j) {
        const float x0 = (x[0 + j] - min) * id;
        const float x1 = (x[qk / 2 + j] - min) * id;
        const uint8_t xi0 = MIN(15, (int8_t)(x0 + 0.5f));
        const uint8_t xi1 = MIN(15, (int8_t)(x1 + 0.5f));
        y->qs[j] = xi0;
        y->qs[j] |= xi1 << 4;
    }
}

static void ref_q5_0(const float *x, block_q5_0 *y) {
    static const int qk = QK5_0;
    float amax = 0.0f;
    float max = 0.0f;
    for (int j = 0; j < qk; j++) {
        const float v = x[j];
        if (amax < fabsf(v)) { amax = fabsf(v); max = v; }
    }
    const float d = max / -16;
    const float id = d ? 1.0f / d : 0.0f;
    y->d = GGML_FP32_TO_FP16(d);
    uint32_t qh = 0;
    for (int j = 0; j < qk / 2; ++j) {
        const float x0 = x[0 + j] * id;
        const float x1 = x[qk / 2 + j] * id;
        const uint8_t xi0 = MIN(31, (int8_t)(x0 + 16.5f));
        const uint8_t xi1 = MIN(31, (int8_t)(x1 + 16.5f));
        y->qs[j] = (xi0 & 0x0F) | ((xi1 & 0x0F) << 4);
        /* the 5th bit, at the element's position in qh */
        qh |= ((xi0 & 0x10u) >> 4) << (j + 0);
        qh |= ((xi1 & 0x10u) >> 4) << (j + qk / 2);
    }
    memcpy(&y->qh, &qh, sizeof qh);
}

static void ref_q5_1(const float *x, block_q5_1 *y) {
    const int qk = QK5_1;
    float min = FLT_MAX;
    float max = -FLT_MAX;
    for (int j = 0; j < qk; j++) {
        const float v = x[j];
        if (v < min) min = v;
        if (v > max) max = v;
    }
    const float d = (max - min) / ((1 << 5) - 1);
    const float id = d ? 1.0f / d : 0.0f;
    y->d = GGML_FP32_TO_FP16(d);
    y->m = GGML_FP32_TO_FP16(min);
    uint32_t qh = 0;
    for (int j = 0; j < qk / 2; ++j) {
        const float x0 = (x[0 + j] - min) * id;
        const float x1 = (x[qk / 2 + j] - min) * id;
        const uint8_t xi0 = (uint8_t)(x0 + 0.5f);
        const uint8_t xi1 = (uint8_t)(x1 + 0.5f);
        y->qs[j] = (xi0 & 0x0F) | ((xi1 & 0x0F) << 4);
        qh |= ((xi0 & 0x10u) >> 4) << (j + 0);
        qh |= ((xi1 & 0x10u) >> 4) << (j + qk / 2);
    }
    memcpy(&y->qh, &qh, sizeof y->qh);
}

static void ref_q8_0(const float *x, block_q8_0 *y) {
    float amax = 0.0f;
    for (int j = 0; j < QK8_0; j++) {
        const float v = x[j];
        amax = MAX(amax, fabsf(v));
    }
    const float d = amax / ((1 << 7) - 1);
    const float id = d ? 1.0f / d : 0.0f;
    y->d = GGML_FP32_TO_FP16(d);
    for (int j = 0; j < QK8_0; ++j) {
        const float x0 = x[j] * id;
        y->qs[j] = (int8_t)roundf(x0);
    }
}

/* ---- the legacy types: decoding of one block (dequantize_row_*) ---- */

static void deq_q4_0(const block_q4_0 *x, float *y) {
    static const int qk = QK4_0;
    const float d = GGML_FP16_TO_FP32(x->d);
    for (int j = 0; j < qk / 2; ++j) {
        const int x0 = (x->qs[j] & 0x0F) - 8;
        const int x1 = (x->qs[j] >> 4) - 8;
        y[j + 0] = x0 * d;
        y[j + qk / 2] = x1 * d;
    }
}

static void deq_q4_1(const block_q4_1 *x, float *y) {
    static const int qk = QK4_1;
    const float d = GGML_FP16_TO_FP32(x->d);
    const float m = GGML_FP16_TO_FP32(x->m);
    for (int j = 0; j < qk / 2; ++j) {
        const int x0 = (x->qs[j] & 0x0F);
        const int x1 = (x->qs[j] >> 4);
        y[j + 0] = x0 * d + m;
        y[j + qk / 2] = x1 * d + m;
    }
}

static void deq_q5_0(const block_q5_0 *x, float *y) {
    static const int qk = QK5_0;
    const float d = GGML_FP16_TO_FP32(x->d);
    uint32_t qh;
    memcpy(&qh, x->qh, sizeof qh);
    for (int j = 0; j < qk / 2; ++j) {
        const uint8_t xh_0 = ((qh >> (j + 0)) << 4) & 0x10;
        const uint8_t xh_1 = ((qh >> (j + 12))) & 0x10;
        const int32_t x0 = ((x->qs[j] & 0x0F) | xh_0) - 16;
        const int32_t x1 = ((x->qs[j] >> 4) | xh_1) - 16;
        y[j + 0] = x0 * d;
        y[j + qk / 2] = x1 * d;
    }
}

static void deq_q5_1(const block_q5_1 *x, float *y) {
    static const int qk = QK5_1;
    const float d = GGML_FP16_TO_FP32(x->d);
    const float m = GGML_FP16_TO_FP32(x->m);
    uint32_t qh;
    memcpy(&qh, x->qh, sizeof qh);
    for (int j = 0; j < qk / 2; ++j) {
        const uint8_t xh_0 = ((qh >> (j + 0)) << 4) & 0x10;
        const uint8_t xh_1 = ((qh >> (j + 12))) & 0x10;
        const int x0 = (x->qs[j] & 0x0F) | xh_0;
        const int x1 = (x->qs[j] >> 4) | xh_1;
        y[j + 0] = x0 * d + m;
        y[j + qk / 2] = x1 * d + m;
    }
}

static void deq_q8_0(const block_q8_0 *x, float *y) {
    const float d = GGML_FP16_TO_FP32(x->d);
    for (int j = 0; j < QK8_0; ++j) y[j] = x->qs[j] * d;
}

/* ---- k-quant helpers ---- */

static inline int nearest_int(float fval) {
    float val = fval + 12582912.f;
    int i;
    memcpy(&i, &val, sizeof(int));
    return (i & 0x007fffff) - 0x00400000;
}

static float make_qx_quants(int n, int nmax, const float *x, int8_t *L, int rmse_type, const float *qw) {
    float max = 0;
    float amax = 0;
    for (int i = 0; i < n; ++i) {
        float ax = fabsf(x[i]);
        if (ax > amax) { amax = ax; max = x[i]; }
    }
    if (amax < GROUP_MAX_EPS) { /* all zero */
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.f;
    }
    float iscale = -nmax / max;
    if (rmse_type == 0) {
        for (int i = 0; i < n; ++i) {
            int l = nearest_int(iscale * x[i]);
            L[i] = nmax + MAX(-nmax, MIN(nmax - 1, l));
        }
        return 1 / iscale;
    }
    bool return_early = false;
    if (rmse_type < 0) {
        rmse_type = -rmse_type;
        return_early = true;
    }
    float sumlx = 0;
    float suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = nearest_int(iscale * x[i]);
        l = MAX(-nmax, MIN(nmax - 1, l));
        L[i] = l + nmax;
        float w = qw ? qw[i] : rmse_type == 1 ? x[i] * x[i] : rmse_type == 2 ? 1 : rmse_type == 3 ? fabsf(x[i]) : sqrtf(fabsf(x[i]));
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    if (return_early) return suml2 > 0 ? 0.5f * (scale + 1 / iscale) : 1 / iscale;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            int l = nearest_int(iscale * x[i]);
            l = MAX(-nmax, MIN(nmax - 1, l));
            float w = qw ? qw[i] : rmse_type == 1 ? x[i] * x[i] : rmse_type == 2 ? 1 : rmse_type == 3 ? fabsf(x[i]) : sqrtf(fabsf(x[i]));
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i) {
                int l = nearest_int(iscale * x[i]);
                L[i] = nmax + MAX(-nmax, MIN(nmax - 1, l));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

static float make_q3_quants(int n, int nmax, const float *x, int8_t *L, bool do_rmse) {
    float max = 0;
    float amax = 0;
    for (int i = 0; i < n; ++i) {
        float ax = fabsf(x[i]);
        if (ax > amax) { amax = ax; max = x[i]; }
    }
    if (amax < GROUP_MAX_EPS) { /* all zero */
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.f;
    }
    float iscale = -nmax / max;
    if (do_rmse) {
        float sumlx = 0;
        float suml2 = 0;
        for (int i = 0; i < n; ++i) {
            int l = nearest_int(iscale * x[i]);
            l = MAX(-nmax, MIN(nmax - 1, l));
            L[i] = l;
            float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        for (int itry = 0; itry < 5; ++itry) {
            int n_changed = 0;
            for (int i = 0; i < n; ++i) {
                float w = x[i] * x[i];
                float slx = sumlx - w * x[i] * L[i];
                if (slx > 0) {
                    float sl2 = suml2 - w * L[i] * L[i];
                    int new_l = nearest_int(x[i] * sl2 / slx);
                    new_l = MAX(-nmax, MIN(nmax - 1, new_l));
                    if (new_l != L[i]) {
                        slx += w * x[i] * new_l;
                        sl2 += w * new_l * new_l;
                        if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                            L[i] = new_l; sumlx = slx; suml2 = sl2;
                            ++n_changed;
                        }
                    }
                }
            }
            if (!n_changed) break;
        }
        for (int i = 0; i < n; ++i) L[i] += nmax;
        return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
    }
    for (int i = 0; i < n; ++i) {
        int l = nearest_int(iscale * x[i]);
        l = MAX(-nmax, MIN(nmax - 1, l));
        L[i] = l + nmax;
    }
    return 1 / iscale;
}

static float make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min,
                              uint8_t *Laux, float rmin, float rdelta, int nstep, bool use_mad) {
    float min = x[0];
    float max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; ++i) {
        int l = nearest_int(iscale * (x[i] - min));
        L[i] = MAX(0, MIN(nmax, l));
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        float w = weights[i];
        best_error += w * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            int l = nearest_int(iscale * (x[i] - min));
            l = MAX(0, MIN(nmax, l));
            Laux[i] = l;
            float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; ++i) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                float w = weights[i];
                cur_error += w * diff;
            }
            if (cur_error < best_error) {
                for (int i = 0; i < n; ++i) L[i] = Laux[i];
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

static inline void get_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63; *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
    }
}

/* ---- k-quants: reference rounding of one 256-element block ---- */

static void ref_q2_K(const float *x, block_q2_K *y) {
    uint8_t L[QK_K];
    uint8_t Laux[16];
    float weights[16];
    float mins[QK_K / 16];
    float scales[QK_K / 16];
    const float q4scale = 15.f;

    float max_scale = 0; /* as the min is deducted, scales are always positive */
    float max_min = 0;
    for (int j = 0; j < QK_K / 16; ++j) {
        for (int l = 0; l < 16; ++l) weights[l] = fabsf(x[16 * j + l]);
        scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
        float scale = scales[j];
        if (scale > max_scale) max_scale = scale;
        float min = mins[j];
        if (min > max_min) max_min = min;
    }
    if (max_scale > 0) {
        float iscale = q4scale / max_scale;
        for (int j = 0; j < QK_K / 16; ++j) {
            int l = nearest_int(iscale * scales[j]);
            y->scales[j] = (uint8_t)l;
        }
        y->d = GGML_FP32_TO_FP16(max_scale / q4scale);
    } else {
        for (int j = 0; j < QK_K / 16; ++j) y->scales[j] = 0;
        y->d = GGML_FP32_TO_FP16(0.f);
    }
    if (max_min > 0) {
        float iscale = q4scale / max_min;
        for (int j = 0; j < QK_K / 16; ++j) {
            int l = nearest_int(iscale * mins[j]);
            y->scales[j] |= (uint8_t)(l << 4);
        }
        y->dmin = GGML_FP32_TO_FP16(max_min / q4scale);
    } else {
        y->dmin = GGML_FP32_TO_FP16(0.f);
    }
    for (int j = 0; j < QK_K / 16; ++j) {
        const float d = GGML_FP16_TO_FP32(y->d) * (y->scales[j] & 0xF);
        if (!d) continue;  /* the codes of make_qkx2_quants stay */
        const float dm = GGML_FP16_TO_FP32(y->dmin) * (y->scales[j] >> 4);
        for (int ii = 0; ii < 16; ++ii) {
            int l = nearest_int((x[16 * j + ii] + dm) / d);
            l = MAX(0, MIN(3, l));
            L[16 * j + ii] = (uint8_t)l;
        }
    }
    for (int j = 0; j < QK_K; j += 128)
        for (int l = 0; l < 32; ++l)
            y->qs[j / 4 + l] = L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6);
}

static void ref_q3_K(const float *x, block_q3_K *y) {
    int8_t L[QK_K];
    float scales[QK_K / 16];

    float max_scale = 0;
    float amax = 0;
    for (int j = 0; j < QK_K / 16; ++j) {
        scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j, true);
        float scale = fabsf(scales[j]);
        if (scale > amax) { amax = scale; max_scale = scales[j]; }
    }
    memset(y->scales, 0, 12);
    if (max_scale) {
        float iscale = -32.f / max_scale;
        for (int j = 0; j < QK_K / 16; ++j) {
            int8_t l = (int8_t)nearest_int(iscale * scales[j]);
            l = (int8_t)(MAX(-32, MIN(31, l)) + 32);
            if (j < 8) y->scales[j] = l & 0xF;
            else y->scales[j - 8] |= ((l & 0xF) << 4);
            l >>= 4;
            y->scales[j % 4 + 8] |= (l << (2 * (j / 4)));
        }
        y->d = GGML_FP32_TO_FP16(1 / iscale);
    } else {
        y->d = GGML_FP32_TO_FP16(0.f);
    }
    int8_t sc;
    for (int j = 0; j < QK_K / 16; ++j) {
        sc = (int8_t)(j < 8 ? y->scales[j] & 0xF : y->scales[j - 8] >> 4);
        sc = (int8_t)((sc | (((y->scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32);
        float d = GGML_FP16_TO_FP32(y->d) * sc;
        if (!d) continue;
        for (int ii = 0; ii < 16; ++ii) {
            int l = nearest_int(x[16 * j + ii] / d);
            l = MAX(-4, MIN(3, l));
            L[16 * j + ii] = (int8_t)(l + 4);
        }
    }
    memset(y->hmask, 0, QK_K / 8);
    /* the high bit of the first 32 codes in bit 0 of hmask[0..31], of the next 32 in bit 1, ... */
    int m = 0;
    uint8_t hm = 1;
    for (int j = 0; j < QK_K; ++j) {
        if (L[j] > 3) {
            y->hmask[m] |= hm;
            L[j] -= 4;
        }
        if (++m == QK_K / 8) { m = 0; hm <<= 1; }
    }
    for (int j = 0; j < QK_K; j += 128)
        for (int l = 0; l < 32; ++l)
            y->qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

/* What Q4_K and Q5_K share (quantize_row_q4_K_ref, quantize_row_q5_K_ref): the eight 32-element sub-blocks'
 * scales and mins by make_qkx2_quants (nmax, rmin and ntry are the type's), packed as 6-bit values under the
 * fp16 super-block d and dmin, then every element's code L in [0, nmax] under the packed values. */
static void kquant_scales_mins(const float *x, uint8_t *packed, ggml_half *yd, ggml_half *ydmin, uint8_t *L, int nmax, float rmin, int ntry) {
    uint8_t Laux[32];
    float weights[32];
    float mins[QK_K / 32];
    float scales[QK_K / 32];

    float max_scale = 0;
    float max_min = 0;
    for (int j = 0; j < QK_K / 32; ++j) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; ++l) weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f, ntry, false);
        float scale = scales[j];
        if (scale > max_scale) max_scale = scale;
        float min = mins[j];
        if (min > max_min) max_min = min;
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < QK_K / 32; ++j) {
        uint8_t ls = (uint8_t)nearest_int(inv_scale * scales[j]);
        uint8_t lm = (uint8_t)nearest_int(inv_min * mins[j]);
        ls = MIN(63, ls);
        lm = MIN(63, lm);
        if (j < 4) {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
            packed[j - 4] |= ((ls >> 4) << 6);
            packed[j - 0] |= ((lm >> 4) << 6);
        }
    }
    *yd = GGML_FP32_TO_FP16(max_scale / 63.f);
    *ydmin = GGML_FP32_TO_FP16(max_min / 63.f);
    uint8_t sc, m;
    for (int j = 0; j < QK_K / 32; ++j) {
        get_scale_min_k4(j, packed, &sc, &m);
        const float d = GGML_FP16_TO_FP32(*yd) * sc;
        if (!d) continue;
        const float dm = GGML_FP16_TO_FP32(*ydmin) * m;
        for (int ii = 0; ii < 32; ++ii) {
            int l = nearest_int((x[32 * j + ii] + dm) / d);
            l = MAX(0, MIN(nmax, l));
            L[32 * j + ii] = (uint8_t)l;
        }
    }
}

static void ref_q4_K(const float *x, block_q4_K *y) {
    uint8_t L[QK_K];
    kquant_scales_mins(x, y->scales, &y->d, &y->dmin, L, 15, -1.f, 20);
    uint8_t *q = y->qs;
    for (int j = 0; j < QK_K; j += 64) {
        for (int l = 0; l < 32; ++l) q[l] = L[j + l] | (L[j + l + 32] << 4);
        q += 32;
    }
}

static void ref_q5_K(const float *x, block_q5_K *y) {
    uint8_t L[QK_K];
    kquant_scales_mins(x, y->scales, &y->d, &y->dmin, L, 31, -0.5f, 15);
    uint8_t *qh = y->qh;
    uint8_t *ql = y->qs;
    memset(qh, 0, QK_K / 8);
    uint8_t m1 = 1, m2 = 2;
    for (int n = 0; n < QK_K; n += 64) {
        for (int j = 0; j < 32; ++j) {
            int l1 = L[n + j];
            if (l1 > 15) { l1 -= 16; qh[j] |= m1; }
            int l2 = L[n + j + 32];
            if (l2 > 15) { l2 -= 16; qh[j] |= m2; }
            ql[j] = (uint8_t)(l1 | (l2 << 4));
        }
        m1 <<= 2; m2 <<= 2;
        ql += 32;
    }
}

static void ref_q6_K(const float *x, block_q6_K *y) {
    int8_t L[QK_K];
    float scales[QK_K / 16];

    float max_scale = 0;
    float max_abs_scale = 0;
    for (int ib = 0; ib < QK_K / 16; ++ib) {
        const float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, 1, NULL);
        scales[ib] = scale;
        const float abs_scale = fabsf(scale);
        if (abs_scale > max_abs_scale) {
            max_abs_scale = abs_scale;
            max_scale = scale;
        }
    }
    if (max_abs_scale < GROUP_MAX_EPS) {
        memset(y, 0, sizeof *y);
        y->d = GGML_FP32_TO_FP16(0.f);
        return;
    }
    float iscale = -128.f / max_scale;
    y->d = GGML_FP32_TO_FP16(1 / iscale);
    for (int ib = 0; ib < QK_K / 16; ++ib) y->scales[ib] = (int8_t)MIN(127, nearest_int(iscale * scales[ib]));
    for (int j = 0; j < QK_K / 16; ++j) {
        float d = GGML_FP16_TO_FP32(y->d) * y->scales[j];
        if (!d) continue;
        for (int ii = 0; ii < 16; ++ii) {
            int l = nearest_int(x[16 * j + ii] / d);
            l = MAX(-32, MIN(31, l));
            L[16 * j + ii] = (int8_t)(l + 32);
        }
    }
    uint8_t *ql = y->ql;
    uint8_t *qh = y->qh;
    for (int j = 0; j < QK_K; j += 128) {
        for (int l = 0; l < 32; ++l) {
            const uint8_t q1 = L[j + l + 0] & 0xF;
            const uint8_t q2 = L[j + l + 32] & 0xF;
            const uint8_t q3 = L[j + l + 64] & 0xF;
            const uint8_t q4 = L[j + l + 96] & 0xF;
            ql[l + 0] = q1 | (q3 << 4);
            ql[l + 32] = q2 | (q4 << 4);
            qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
        }
        ql += 64;
        qh += 32;
    }
}

/* ---- k-quants: decoding of one block ---- */

static void deq_q2_K(const block_q2_K *x, float *y) {
    const float d = GGML_FP16_TO_FP32(x->d);
    const float min = GGML_FP16_TO_FP32(x->dmin);
    const uint8_t *q = x->qs;
    int is = 0;
    float dl, ml;
    for (int n = 0; n < QK_K; n += 128) {
        int shift = 0;
        for (int j = 0; j < 4; ++j) {
            uint8_t sc = x->scales[is++];
            dl = d * (sc & 0xF); ml = min * (sc >> 4);
            for (int l = 0; l < 16; ++l) *y++ = dl * ((int8_t)((q[l] >> shift) & 3)) - ml;
            sc = x->scales[is++];
            dl = d * (sc & 0xF); ml = min * (sc >> 4);
            for (int l = 0; l < 16; ++l) *y++ = dl * ((int8_t)((q[l + 16] >> shift) & 3)) - ml;
            shift += 2;
        }
        q += 32;
    }
}

static void deq_q3_K(const block_q3_K *x, float *y) {
    const uint32_t kmask1 = 0x03030303;
    const uint32_t kmask2 = 0x0f0f0f0f;
    uint32_t aux[4];
    int8_t scales[16];
    const float d_all = GGML_FP16_TO_FP32(x->d);
    const uint8_t *q = x->qs;
    const uint8_t *hm = x->hmask;
    uint8_t m = 1;
    memcpy(aux, x->scales, 12);
    uint32_t tmp = aux[2];
    aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
    aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
    aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
    aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
    memcpy(scales, aux, sizeof scales);  /* ggml reads aux through an int8_t pointer */
    int is = 0;
    float dl;
    for (int n = 0; n < QK_K; n += 128) {
        int shift = 0;
        for (int j = 0; j < 4; ++j) {
            dl = d_all * (scales[is++] - 32);
            for (int l = 0; l < 16; ++l) *y++ = dl * ((int8_t)((q[l + 0] >> shift) & 3) - ((hm[l + 0] & m) ? 0 : 4));
            dl = d_all * (scales[is++] - 32);
            for (int l = 0; l < 16; ++l) *y++ = dl * ((int8_t)((q[l + 16] >> shift) & 3) - ((hm[l + 16] & m) ? 0 : 4));
            shift += 2;
            m <<= 1;
        }
        q += 32;
    }
}

static void deq_q4_K(const block_q4_K *x, float *y) {
    const uint8_t *q = x->qs;
    const float d = GGML_FP16_TO_FP32(x->d);
    const float min = GGML_FP16_TO_FP32(x->dmin);
    int is = 0;
    uint8_t sc, m;
    for (int j = 0; j < QK_K; j += 64) {
        get_scale_min_k4(is + 0, x->scales, &sc, &m);
        const float d1 = d * sc; const float m1 = min * m;
        get_scale_min_k4(is + 1, x->scales, &sc, &m);
        const float d2 = d * sc; const float m2 = min * m;
        for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
        for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
        q += 32; is += 2;
    }
}

static void deq_q5_K(const block_q5_K *x, float *y) {
    const uint8_t *ql = x->qs;
    const uint8_t *qh = x->qh;
    const float d = GGML_FP16_TO_FP32(x->d);
    const float min = GGML_FP16_TO_FP32(x->dmin);
    int is = 0;
    uint8_t sc, m;
    uint8_t u1 = 1, u2 = 2;
    for (int j = 0; j < QK_K; j += 64) {
        get_scale_min_k4(is + 0, x->scales, &sc, &m);
        const float d1 = d * sc; const float m1 = min * m;
        get_scale_min_k4(is + 1, x->scales, &sc, &m);
        const float d2 = d * sc; const float m2 = min * m;
        for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
        for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
        ql += 32; is += 2;
        u1 <<= 2; u2 <<= 2;
    }
}

static void deq_q6_K(const block_q6_K *x, float *y) {
    const float d = GGML_FP16_TO_FP32(x->d);
    const uint8_t *ql = x->ql;
    const uint8_t *qh = x->qh;
    const int8_t *sc = x->scales;
    for (int n = 0; n < QK_K; n += 128) {
        for (int l = 0; l < 32; ++l) {
            int is = l / 16;
            const int8_t q1 = (int8_t)((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int8_t q2 = (int8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int8_t q3 = (int8_t)((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int8_t q4 = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l + 0] = d * sc[is + 0] * q1;
            y[l + 32] = d * sc[is + 2] * q2;
            y[l + 64] = d * sc[is + 4] * q3;
            y[l + 96] = d * sc[is + 6] * q4;
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
    }
}

/* ---- grids and codes of one block: element j decodes to s[j] * (float)(q[j] + koff) - m[j] ----
 * Each function reads (grid) or writes (codes) a local copy of the block; s and m may be NULL. */

static inline void put_sm(float *s, float *m, int j, float sj, float mj) {
    if (s) s[j] = sj;
    if (m) m[j] = mj;
}

/* Q4_0/Q4_1 codes: element j < 16 in the low nibble of qs[j], element j + 16 in its high nibble. */
static void nib32_get(const uint8_t *qs, uint8_t *q) {
    for (int j = 0; j < 16; j++) { q[j] = qs[j] & 0xF; q[j + 16] = qs[j] >> 4; }
}
static void nib32_put(uint8_t *qs, const uint8_t *q) {
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)((q[j] & 0xF) | ((q[j + 16] & 0xF) << 4));
}
/* Q5_0/Q5_1: the nibbles as above, the 5th bit of element j in bit j of qh (read as a uint32 like ggml). */
static void q5_get(const uint8_t *qs, const uint8_t *qhb, uint8_t *q) {
    uint32_t qh;
    memcpy(&qh, qhb, sizeof qh);
    nib32_get(qs, q);
    for (int j = 0; j < 32; j++) q[j] |= (uint8_t)(((qh >> j) & 1u) << 4);
}
static void q5_put(uint8_t *qs, uint8_t *qhb, const uint8_t *q) {
    uint32_t qh = 0;
    nib32_put(qs, q);
    for (int j = 0; j < 32; j++) qh |= (uint32_t)((q[j] >> 4) & 1u) << j;
    memcpy(qhb, &qh, sizeof qh);
}
/* Q2_K/Q3_K low two bits: element 128h + 32g + l in bits 2g of qs[32h + l]. */
static uint8_t k2_get(const uint8_t *qs, int e) { return (uint8_t)((qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3); }
static void k2_put_all(uint8_t *qs, const uint8_t *low2) {
    for (int j = 0; j < QK_K; j += 128)
        for (int l = 0; l < 32; ++l)
            qs[j / 4 + l] = (uint8_t)(low2[j + l] | (low2[j + l + 32] << 2) | (low2[j + l + 64] << 4) | (low2[j + l + 96] << 6));
}
/* Q4_K/Q5_K low nibble: element 64c + 32h + l in nibble h of qs[32c + l]. */
static uint8_t k4_get(const uint8_t *qs, int e) { return (uint8_t)((qs[32 * (e / 64) + e % 32] >> (4 * ((e % 64) / 32))) & 0xF); }
static void k4_put_all(uint8_t *qs, const uint8_t *low4) {
    for (int j = 0; j < QK_K; j += 64)
        for (int l = 0; l < 32; ++l) qs[j / 2 + l] = (uint8_t)((low4[j + l] & 0xF) | ((low4[j + l + 32] & 0xF) << 4));
}

static void grid_q4_0(const void *blk, float *s, float *m, uint8_t *q) {
    block_q4_0 b; memcpy(&b, blk, sizeof b);
    const float d = GGML_FP16_TO_FP32(b.d);
    for (int j = 0; j < QK4_0; j++) put_sm(s, m, j, d, 0.0f);
    if (q) nib32_get(b.qs, q);
}
static void codes_q4_0(void *blk, const uint8_t *q) {
    block_q4_0 b; memcpy(&b, blk, sizeof b); nib32_put(b.qs, q); memcpy(blk, &b, sizeof b);
}
static void grid_q4_1(const void *blk, float *s, float *m, uint8_t *q) {
    block_q4_1 b; memcpy(&b, blk, sizeof b);
    const float d = GGML_FP16_TO_FP32(b.d), mn = GGML_FP16_TO_FP32(b.m);
    for (int j = 0; j < QK4_1; j++) put_sm(s, m, j, d, -mn);
    if (q) nib32_get(b.qs, q);
}
static void codes_q4_1(void *blk, const uint8_t *q) {
    block_q4_1 b; memcpy(&b, blk, sizeof b); nib32_put(b.qs, q); memcpy(blk, &b, sizeof b);
}
static void grid_q5_0(const void *blk, float *s, float *m, uint8_t *q) {
    block_q5_0 b; memcpy(&b, blk, sizeof b);
    const float d = GGML_FP16_TO_FP32(b.d);
    for (int j = 0; j < QK5_0; j++) put_sm(s, m, j, d, 0.0f);
    if (q) q5_get(b.qs, b.qh, q);
}
static void codes_q5_0(void *blk, const uint8_t *q) {
    block_q5_0 b; memcpy(&b, blk, sizeof b); q5_put(b.qs, b.qh, q); memcpy(blk, &b, sizeof b);
}
static void grid_q5_1(const void *blk, float *s, float *m, uint8_t *q) {
    block_q5_1 b; memcpy(&b, blk, sizeof b);
    const float d = GGML_FP16_TO_FP32(b.d), mn = GGML_FP16_TO_FP32(b.m);
    for (int j = 0; j < QK5_1; j++) put_sm(s, m, j, d, -mn);
    if (q) q5_get(b.qs, b.qh, q);
}
static void codes_q5_1(void *blk, const uint8_t *q) {
    block_q5_1 b; memcpy(&b, blk, sizeof b); q5_put(b.qs, b.qh, q); memcpy(blk, &b, sizeof b);
}
static void grid_q8_0(const void *blk, float *s, float *m, uint8_t *q) {
    block_q8_0 b; memcpy(&b, blk, sizeof b);
    const float d = GGML_FP16_TO_FP32(b.d);
    for (int j = 0; j < QK8_0; j++) {
        put_sm(s, m, j, d, 0.0f);
        if (q) q[j] = (uint8_t)(b.qs[j] + 128);
    }
}
static void codes_q8_0(void *blk, const uint8_t *q) {
    block_q8_0 b; memcpy(&b, blk, sizeof b);
    for (int j = 0; j < QK8_0; j++) b.qs[j] = (int8_t)(q[j] - 128);
    memcpy(blk, &b, sizeof b);
}
static void grid_q2_K(const void *blk, float *s, float *m, uint8_t *q) {
    block_q2_K b; memcpy(&b, blk, sizeof b);
    const float d = GGML_FP16_TO_FP32(b.d), min = GGML_FP16_TO_FP32(b.dmin);
    for (int e = 0; e < QK_K; e++) {
        const uint8_t sc = b.scales[e / 16];
        put_sm(s, m, e, d * (sc & 0xF), min * (sc >> 4));
        if (q) q[e] = k2_get(b.qs, e);
    }
}
static void codes_q2_K(void *blk, const uint8_t *q) {
    block_q2_K b; memcpy(&b, blk, sizeof b); k2_put_all(b.qs, q); memcpy(blk, &b, sizeof b);
}
/* Q3_K: 6-bit sub-block scales, low 4 bits in scales[0..7] (two per byte), high 2 bits in scales[8..11];
 * the code's bit 2 in hmask[e % 32] bit e / 32. */
static void grid_q3_K(const void *blk, float *s, float *m, uint8_t *q) {
    block_q3_K b; memcpy(&b, blk, sizeof b);
    const float d_all = GGML_FP16_TO_FP32(b.d);
    for (int e = 0; e < QK_K; e++) {
        const int j = e / 16;
        int sc = j < 8 ? b.scales[j] & 0xF : b.scales[j - 8] >> 4;
        sc = (sc | (((b.scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
        put_sm(s, m, e, d_all * sc, 0.0f);
        if (q) q[e] = (uint8_t)(k2_get(b.qs, e) | (((b.hmask[e % 32] >> (e / 32)) & 1) << 2));
    }
}
static void codes_q3_K(void *blk, const uint8_t *q) {
    block_q3_K b; memcpy(&b, blk, sizeof b);
    uint8_t low2[QK_K];
    memset(b.hmask, 0, sizeof b.hmask);
    for (int e = 0; e < QK_K; e++) {
        low2[e] = q[e] & 3;
        b.hmask[e % 32] |= (uint8_t)(((q[e] >> 2) & 1) << (e / 32));
    }
    k2_put_all(b.qs, low2);
    memcpy(blk, &b, sizeof b);
}
static void grid_q4_K(const void *blk, float *s, float *m, uint8_t *q) {
    block_q4_K b; memcpy(&b, blk, sizeof b);
    const float d = GGML_FP16_TO_FP32(b.d), min = GGML_FP16_TO_FP32(b.dmin);
    for (int e = 0; e < QK_K; e++) {
        uint8_t sc, mm;
        get_scale_min_k4(e / 32, b.scales, &sc, &mm);
        put_sm(s, m, e, d * sc, min * mm);
        if (q) q[e] = k4_get(b.qs, e);
    }
}
static void codes_q4_K(void *blk, const uint8_t *q) {
    block_q4_K b; memcpy(&b, blk, sizeof b); k4_put_all(b.qs, q); memcpy(blk, &b, sizeof b);
}
/* Q5_K: the low nibble as Q4_K; bit 4 of element 64c + 32h + l in qh[l] bit 2c + h. */
static void grid_q5_K(const void *blk, float *s, float *m, uint8_t *q) {
    block_q5_K b; memcpy(&b, blk, sizeof b);
    const float d = GGML_FP16_TO_FP32(b.d), min = GGML_FP16_TO_FP32(b.dmin);
    for (int e = 0; e < QK_K; e++) {
        uint8_t sc, mm;
        get_scale_min_k4(e / 32, b.scales, &sc, &mm);
        put_sm(s, m, e, d * sc, min * mm);
        if (q) q[e] = (uint8_t)(k4_get(b.qs, e) | (((b.qh[e % 32] >> (2 * (e / 64) + (e % 64) / 32)) & 1) << 4));
    }
}
static void codes_q5_K(void *blk, const uint8_t *q) {
    block_q5_K b; memcpy(&b, blk, sizeof b);
    memset(b.qh, 0, sizeof b.qh);
    for (int e = 0; e < QK_K; e++) b.qh[e % 32] |= (uint8_t)(((q[e] >> 4) & 1) << (2 * (e / 64) + (e % 64) / 32));
    k4_put_all(b.qs, q);
    memcpy(blk, &b, sizeof b);
}
/* Q6_K: element 128h + 32g + l: low nibble in ql[64h + l + 32 (g & 1)] nibble g >> 1, high two bits in
 * qh[32h + l] bits 2g; scale sc[e / 16]. */
static void grid_q6_K(const void *blk, float *s, float *m, uint8_t *q) {
    block_q6_K b; memcpy(&b, blk, sizeof b);
    const float d = GGML_FP16_TO_FP32(b.d);
    for (int e = 0; e < QK_K; e++) {
        put_sm(s, m, e, d * b.scales[e / 16], 0.0f);
        if (q) {
            const int h = e / 128, g = (e % 128) / 32, l = e % 32;
            const int lo = (b.ql[64 * h + l + 32 * (g & 1)] >> (4 * (g >> 1))) & 0xF;
            const int hi = (b.qh[32 * h + l] >> (2 * g)) & 3;
            q[e] = (uint8_t)(lo | (hi << 4));
        }
    }
}
static void codes_q6_K(void *blk, const uint8_t *q) {
    block_q6_K b; memcpy(&b, blk, sizeof b);
    memset(b.ql, 0, sizeof b.ql);
    memset(b.qh, 0, sizeof b.qh);
    for (int e = 0; e < QK_K; e++) {
        const int h = e / 128, g = (e % 128) / 32, l = e % 32;
        b.ql[64 * h + l + 32 * (g & 1)] |= (uint8_t)((q[e] & 0xF) << (4 * (g >> 1)));
        b.qh[32 * h + l] |= (uint8_t)(((q[e] >> 4) & 3) << (2 * g));
    }
    memcpy(blk, &b, sizeof b);
}

/* ---- the type table ---- */

/* One block through a zeroed, aligned local copy (see the top of the file). */
#define BLOCK_IO(T)                                                                                      \
    static void quant_##T(const float *x, void *out) {                                                   \
        block_##T b; memset(&b, 0, sizeof b); ref_##T(x, &b); memcpy(out, &b, sizeof b);                \
    }                                                                                                    \
    static void dequant_##T(const void *in, float *y) { block_##T b; memcpy(&b, in, sizeof b); deq_##T(&b, y); }
BLOCK_IO(q4_0) BLOCK_IO(q4_1) BLOCK_IO(q5_0) BLOCK_IO(q5_1) BLOCK_IO(q8_0)
BLOCK_IO(q2_K) BLOCK_IO(q3_K) BLOCK_IO(q4_K) BLOCK_IO(q5_K) BLOCK_IO(q6_K)

typedef struct gguf_type {
    evb_gguf_type_info info;
    int maxq, koff;                                             /* codes 0..maxq, decoded as s * (q + koff) - m */
    void (*quant)(const float *x, void *blk);                   /* reference rounding of one block; NULL: F32/F16/BF16 */
    void (*dequant)(const void *blk, float *y);                 /* dequantize_row_* of one block */
    void (*grid)(const void *blk, float *s, float *m, uint8_t *q);
    void (*codes)(void *blk, const uint8_t *q);
} gguf_type;

#define BLOCK_TYPE(NAME, ID, QK, BYTES, MAXQ, KOFF, T) \
    {{NAME, ID, QK, BYTES}, MAXQ, KOFF, quant_##T, dequant_##T, grid_##T, codes_##T}
static const gguf_type gguf_types[] = {
    {{"F32", EVB_GGUF_F32, 1, 4}, 0, 0, NULL, NULL, NULL, NULL},
    {{"F16", EVB_GGUF_F16, 1, 2}, 0, 0, NULL, NULL, NULL, NULL},
    BLOCK_TYPE("Q4_0", EVB_GGUF_Q4_0, QK4_0, 18, 15, -8, q4_0),
    BLOCK_TYPE("Q4_1", EVB_GGUF_Q4_1, QK4_1, 20, 15, 0, q4_1),
    BLOCK_TYPE("Q5_0", EVB_GGUF_Q5_0, QK5_0, 22, 31, -16, q5_0),
    BLOCK_TYPE("Q5_1", EVB_GGUF_Q5_1, QK5_1, 24, 31, 0, q5_1),
    BLOCK_TYPE("Q8_0", EVB_GGUF_Q8_0, QK8_0, 34, 255, -128, q8_0),
    BLOCK_TYPE("Q2_K", EVB_GGUF_Q2_K, QK_K, 84, 3, 0, q2_K),
    BLOCK_TYPE("Q3_K", EVB_GGUF_Q3_K, QK_K, 110, 7, -4, q3_K),
    BLOCK_TYPE("Q4_K", EVB_GGUF_Q4_K, QK_K, 144, 15, 0, q4_K),
    BLOCK_TYPE("Q5_K", EVB_GGUF_Q5_K, QK_K, 176, 31, 0, q5_K),
    BLOCK_TYPE("Q6_K", EVB_GGUF_Q6_K, QK_K, 210, 63, -32, q6_K),
    {{"BF16", EVB_GGUF_BF16, 1, 2}, 0, 0, NULL, NULL, NULL, NULL},
};
enum { N_TYPES = (int)(sizeof gguf_types / sizeof gguf_types[0]) };

static const gguf_type *type_of(int type) {
    for (int i = 0; i < N_TYPES; i++)
        if (gguf_types[i].info.type == type) return &gguf_types[i];
    return NULL;
}

const evb_gguf_type_info *evb_gguf_type_get(int type) {
    const gguf_type *t = type_of(type);
    return t ? &t->info : NULL;
}

const evb_gguf_type_info *evb_gguf_type_find(const char *name) {
    if (!name) return NULL;
    for (int i = 0; i < N_TYPES; i++) {
        const char *a = gguf_types[i].info.name, *b = name;
        while (*a && *b) {
            char cb = *b >= 'a' && *b <= 'z' ? (char)(*b - 'a' + 'A') : *b;
            if (*a != cb) break;
            a++, b++;
        }
        if (!*a && !*b) return &gguf_types[i].info;
    }
    return NULL;
}

const char *evb_gguf_type_names(void) {
    return "Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K";
}

double evb_gguf_bpw(int type) {
    const gguf_type *t = type_of(type);
    return t ? 8.0 * t->info.bytes / t->info.block : 0.0;
}

int evb_gguf_row_ok(int type, int64_t cols) {
    const gguf_type *t = type_of(type);
    return t && cols >= 1 && cols % t->info.block == 0;
}

size_t evb_gguf_row_bytes(int type, int64_t cols) {
    if (!evb_gguf_row_ok(type, cols)) return 0;
    const gguf_type *t = type_of(type);
    return (size_t)(cols / t->info.block) * (size_t)t->info.bytes;
}

/* ---- quantize and dequantize ---- */

static int check_shape(const char *what, int type, int rows, int cols, const gguf_type **out) {
    const gguf_type *t = type_of(type);
    if (!t) EVB_ERRORF(EVB_EINVAL, "%s: type %d is not a GGUF type evobudget knows (F32, F16, BF16, Q4_0, Q4_1, "
                       "Q5_0, Q5_1, Q8_0, Q2_K .. Q6_K)", what, type);
    if (rows < 1 || cols < 1) EVB_ERRORF(EVB_EINVAL, "%s: bad shape %d x %d", what, rows, cols);
    if (cols % t->info.block)
        EVB_ERRORF(EVB_EINVAL, "%s: %s stores rows in blocks of %d, and %d columns are not a whole number of them",
                   what, t->info.name, t->info.block, cols);
    *out = t;
    return EVB_SUCCESS;
}

static int check_finite(const char *what, const gguf_type *t, const float *W, int rows, int cols) {
    const size_t n = (size_t)rows * (size_t)cols;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(W[i]))
            EVB_ERRORF(EVB_EINVAL, "%s: weight [%zu, %zu] is not finite (%s blocks need finite weights)", what,
                       i / (size_t)cols, i % (size_t)cols, t->info.name);
    return EVB_SUCCESS;
}

int evb_gguf_quantize(int type, const float *W, int rows, int cols, void *dst) {
    const gguf_type *t;
    int s = check_shape("gguf quantize", type, rows, cols, &t);
    if (s) return s;
    if (!W || !dst) EVB_ERRORF(EVB_EINVAL, "gguf quantize: NULL weight or destination");
    const size_t n = (size_t)rows * (size_t)cols;
    uint8_t *out = dst;
    switch (type) {
    case EVB_GGUF_F32:
        memcpy(out, W, n * sizeof *W);
        return EVB_SUCCESS;
    case EVB_GGUF_F16:
    case EVB_GGUF_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = type == EVB_GGUF_F16 ? fp32_to_fp16(W[i]) : fp32_to_bf16(W[i]);
            memcpy(out + 2 * i, &h, sizeof h);
        }
        return EVB_SUCCESS;
    default:
        break;
    }
    s = check_finite("gguf quantize", t, W, rows, cols);
    if (s) return s;
    const int qk = t->info.block, nb = cols / qk;
    const size_t rb = (size_t)nb * (size_t)t->info.bytes;
    for (int r = 0; r < rows; r++)
        for (int b = 0; b < nb; b++)
            t->quant(W + (size_t)r * cols + (size_t)b * qk, out + (size_t)r * rb + (size_t)b * t->info.bytes);
    return EVB_SUCCESS;
}

int evb_gguf_dequantize(int type, const void *src, int rows, int cols, float *W) {
    const gguf_type *t;
    int s = check_shape("gguf dequantize", type, rows, cols, &t);
    if (s) return s;
    if (!src || !W) EVB_ERRORF(EVB_EINVAL, "gguf dequantize: NULL source or weight");
    const size_t n = (size_t)rows * (size_t)cols;
    const uint8_t *in = src;
    switch (type) {
    case EVB_GGUF_F32:
        memcpy(W, in, n * sizeof *W);
        return EVB_SUCCESS;
    case EVB_GGUF_F16:
    case EVB_GGUF_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, in + 2 * i, sizeof h);
            W[i] = type == EVB_GGUF_F16 ? fp16_to_fp32(h) : bf16_to_fp32(h);
        }
        return EVB_SUCCESS;
    default:
        break;
    }
    const int qk = t->info.block, nb = cols / qk;
    const size_t rb = (size_t)nb * (size_t)t->info.bytes;
    for (int r = 0; r < rows; r++)
        for (int b = 0; b < nb; b++)
            t->dequant(in + (size_t)r * rb + (size_t)b * t->info.bytes, W + (size_t)r * cols + (size_t)b * qk);
    return EVB_SUCCESS;
}

int evb_gguf_block_grid(int type, const void *blk, float *s, float *m, int *koff, int *maxq, uint8_t *codes) {
    const gguf_type *t = type_of(type);
    if (!t || !t->grid) EVB_ERRORF(EVB_EINVAL, "gguf grid: type %d is not a block quantization type", type);
    if (!blk) EVB_ERRORF(EVB_EINVAL, "gguf grid: NULL block");
    t->grid(blk, s, m, codes);
    if (koff) *koff = t->koff;
    if (maxq) *maxq = t->maxq;
    return EVB_SUCCESS;
}

int evb_gguf_block_set_codes(int type, void *blk, const uint8_t *codes) {
    const gguf_type *t = type_of(type);
    if (!t || !t->codes) EVB_ERRORF(EVB_EINVAL, "gguf codes: type %d is not a block quantization type", type);
    if (!blk || !codes) EVB_ERRORF(EVB_EINVAL, "gguf codes: NULL block or codes");
    for (int j = 0; j < t->info.block; j++)
        if (codes[j] > t->maxq) EVB_ERRORF(EVB_EINVAL, "gguf codes: code %d of element %d above %s's %d", codes[j], j, t->info.name, t->maxq);
    t->codes(blk, codes);
    return EVB_SUCCESS;
}

/* ---- GPTQ ---- */

/* GSL's default error handler aborts the process; the library returns statuses instead. */

/* The working weight Wp [rows, cols] (dead inputs zeroed) and U [cols, cols] (upper Cholesky factor of the
 * dampened H^-1, float, row-major), as compressors/quant.c's gptq_prepare without act-order. */
typedef struct gg_work {
    const gguf_type *t;
    float *Wp, *U;
    uint8_t *blocks;     /* [rows, row_bytes]: dst, or a buffer of ours when dst is NULL */
    int own_blocks;
    size_t rb;
} gg_work;

static void gg_free(gg_work *w) {
    free(w->Wp); free(w->U);
    if (w->own_blocks) free(w->blocks);
    memset(w, 0, sizeof *w);
}

static int gg_prepare(int type, const float *W, int rows, int cols, const evb_layer_stats *st, double damp,
                      int blocksize, void *dst, gg_work *w) {
    memset(w, 0, sizeof *w);
    int s = check_shape("gguf gptq", type, rows, cols, &w->t);
    if (s) return s;
    if (!w->t->quant)
        EVB_ERRORF(EVB_EINVAL, "gguf gptq: %s is not a block quantization type (hint: evb_gguf_quantize stores it)", w->t->info.name);
    if (!W) EVB_ERRORF(EVB_EINVAL, "gguf gptq: NULL weight");
    s = check_finite("gguf gptq", w->t, W, rows, cols);
    if (s) return s;
    if (!st || !st->gram) EVB_ERRORF(EVB_EINVAL, "gguf gptq: no calibration statistics");
    if (st->cols != cols) EVB_ERRORF(EVB_EINVAL, "gguf gptq: statistics of %d inputs for a weight of %d", st->cols, cols);
    if (blocksize < 1) EVB_ERRORF(EVB_EINVAL, "gguf gptq: block size %d < 1", blocksize);
    if (!(damp >= 0.0) || !isfinite(damp)) EVB_ERRORF(EVB_EINVAL, "gguf gptq: dampening %g is invalid", damp);
    const size_t n = (size_t)cols, nw = (size_t)rows * n;
    w->rb = evb_gguf_row_bytes(type, cols);
    double *H = malloc(n * n * sizeof *H);
    w->Wp = malloc(nw * sizeof *w->Wp);
    w->U = malloc(n * n * sizeof *w->U);
    w->blocks = dst;
    if (!dst) { w->blocks = malloc((size_t)rows * w->rb); w->own_blocks = 1; }
    if (!H || !w->Wp || !w->U || !w->blocks) {
        free(H); gg_free(w);
        EVB_ERRORF(EVB_ENOMEM, "gguf gptq: no memory for a layer of %d x %d", rows, cols);
    }
    memcpy(H, st->gram, n * n * sizeof *H);
    for (size_t i = 0; i < n * n; i++)
        if (!isfinite(H[i])) {
            free(H); gg_free(w);
            EVB_ERRORF(EVB_EINVAL, "gguf gptq: Gram matrix entry [%zu, %zu] is not finite", i / n, i % n);
        }
    memcpy(w->Wp, W, nw * sizeof *w->Wp);
    for (size_t i = 0; i < n; i++)
        if (H[i * n + i] == 0.0) {  /* dead input: no signal to fit, its weight is dropped */
            H[i * n + i] = 1.0;
            for (int r = 0; r < rows; r++) w->Wp[(size_t)r * n + i] = 0.0f;
        }
    /* U, the upper Cholesky factor of H^-1 with a positive diagonal, as GPTQ's (compressors/quant.c) */
    s = evb_gptq_factor(H, n, damp, w->U, "gguf gptq");
    if (s) { free(H); gg_free(w); return s; }
    free(H);
    return EVB_SUCCESS;
}

/* A block's first column has come up: llama.cpp's rounding of its weights x [block] (as they stand now)
 * fixes the packed block blk and its grid S, M; Q gets the codes of that rounding (kept where the grid is a
 * single point). A scale or min that overflowed fp16 leaves no grid to round to. */
static int block_start(const gguf_type *t, const float *x, uint8_t *blk, float *S, float *M, uint8_t *Q, int r, int c) {
    t->quant(x, blk);
    t->grid(blk, S, M, Q);
    for (int j = 0; j < t->info.block; j++)
        if (!isfinite(S[j]) || !isfinite(M[j]))
            EVB_ERRORF(EVB_EINVAL, "gguf gptq: the %s scales of row %d, columns %d.., overflow fp16 (weights up to %g)",
                       t->info.name, r, c, (double)fabsf(x[j]));
    return EVB_SUCCESS;
}

static inline float grid_value(float s, float m, int koff, int q) { return s * (float)(q + koff) - m; }

/* The grid value nearest to v; *q in: the code to keep for a single-point grid, out: the code chosen. The
 * affine guess is checked against its neighbours' decoded values, which may differ from s * q + o in the
 * last bit. */
static inline float round_to_grid(float v, float s, float m, int koff, int maxq, uint8_t *q) {
    int best = *q;
    if (s != 0.0f) {
        double g = ((double)v + (double)m) / (double)s - koff;
        best = g <= 0.0 ? 0 : g >= maxq ? maxq : (int)floor(g + 0.5);
        float err = fabsf(v - grid_value(s, m, koff, best));
        const int q0 = best;
        for (int k = q0 - 1; k <= q0 + 1; k += 2) {
            if (k < 0 || k > maxq) continue;
            float e = fabsf(v - grid_value(s, m, koff, k));
            if (e < err) { err = e; best = k; }
        }
    }
    *q = (uint8_t)best;
    return grid_value(s, m, koff, best);
}

int evb_gguf_gptq(int type, float *W, int rows, int cols, const evb_layer_stats *st, double damp, int blocksize,
                  void *dst) {
    gg_work w;
    int s = gg_prepare(type, W, rows, cols, st, damp, blocksize, dst, &w);
    if (s) return s;
    const gguf_type *t = w.t;
    const size_t n = (size_t)cols;
    const int B = blocksize < cols ? blocksize : cols, qk = t->info.block, bytes = t->info.bytes;
    float *W1 = malloc((size_t)rows * B * sizeof *W1), *E = malloc((size_t)rows * B * sizeof *E);
    float *S = malloc((size_t)rows * qk * sizeof *S), *M = malloc((size_t)rows * qk * sizeof *M);
    float *x = malloc((size_t)qk * sizeof *x);
    uint8_t *Q = malloc((size_t)rows * qk);
    if (!W1 || !E || !S || !M || !x || !Q) {
        free(W1); free(E); free(S); free(M); free(x); free(Q); gg_free(&w);
        EVB_ERRORF(EVB_ENOMEM, "gguf gptq: no memory for blocks of %d x %d", rows, B);
    }
    for (int i1 = 0; i1 < cols && !s; i1 += B) {
        const int i2 = i1 + B < cols ? i1 + B : cols, cnt = i2 - i1;
        for (int r = 0; r < rows; r++) memcpy(W1 + (size_t)r * B, w.Wp + (size_t)r * n + i1, (size_t)cnt * sizeof *W1);
        for (int i = 0; i < cnt && !s; i++) {
            const int c = i1 + i, e = c % qk;
            const float *u = w.U + (size_t)c * n;
            const float d = u[c];
            if (e == 0)
                for (int r = 0; r < rows && !s; r++) {
                    /* the block's weights with every earlier column's update: W1 inside this lazy block, Wp
                     * plus this block's pending updates (in the naive loop's order) beyond it */
                    for (int j = 0; j < qk; j++) {
                        const int col = c + j;
                        if (col < i2) { x[j] = W1[(size_t)r * B + (col - i1)]; continue; }
                        float v = w.Wp[(size_t)r * n + col];
                        for (int k = i1; k < c; k++) v -= E[(size_t)r * B + (k - i1)] * w.U[(size_t)k * n + col];
                        x[j] = v;
                    }
                    s = block_start(t, x, w.blocks + (size_t)r * w.rb + (size_t)(c / qk) * bytes,
                                    S + (size_t)r * qk, M + (size_t)r * qk, Q + (size_t)r * qk, r, c);
                }
            if (s) break;
            for (int r = 0; r < rows; r++) {
                float *xr = W1 + (size_t)r * B + i;
                const float v = *xr;
                const float deq = round_to_grid(v, S[(size_t)r * qk + e], M[(size_t)r * qk + e], t->koff, t->maxq,
                                                &Q[(size_t)r * qk + e]);
                E[(size_t)r * B + i] = (v - deq) / d;
                *xr = deq;
            }
            if (e == qk - 1)
                for (int r = 0; r < rows; r++)
                    t->codes(w.blocks + (size_t)r * w.rb + (size_t)(c / qk) * bytes, Q + (size_t)r * qk);
            for (int r = 0; r < rows; r++) {
                const float er = E[(size_t)r * B + i];
                float *xr = W1 + (size_t)r * B;
                for (int j = i + 1; j < cnt; j++) xr[j] -= er * u[i1 + j];
            }
        }
        if (s) break;
        for (int r = 0; r < rows; r++) memcpy(w.Wp + (size_t)r * n + i1, W1 + (size_t)r * B, (size_t)cnt * sizeof *W1);
        /* lazy update of the later columns, one rank-1 term at a time (the order of the naive loop) */
        for (int t0 = i2; t0 < cols; t0 += LAZY_TILE) {
            const int t1 = t0 + LAZY_TILE < cols ? t0 + LAZY_TILE : cols;
            for (int r = 0; r < rows; r++) {
                float *xr = w.Wp + (size_t)r * n;
                const float *er = E + (size_t)r * B;
                for (int k = 0; k < cnt; k++) {
                    const float ek = er[k];
                    const float *uk = w.U + (size_t)(i1 + k) * n;
                    for (int j = t0; j < t1; j++) xr[j] -= ek * uk[j];
                }
            }
        }
    }
    if (!s) memcpy(W, w.Wp, (size_t)rows * n * sizeof *W);
    free(W1); free(E); free(S); free(M); free(x); free(Q); gg_free(&w);
    return s;
}

int evb_gguf_gptq_naive(int type, float *W, int rows, int cols, const evb_layer_stats *st, double damp,
                        int blocksize, void *dst) {
    gg_work w;
    int s = gg_prepare(type, W, rows, cols, st, damp, blocksize, dst, &w);
    if (s) return s;
    const gguf_type *t = w.t;
    const size_t n = (size_t)cols;
    const int qk = t->info.block, bytes = t->info.bytes;
    float *E = malloc((size_t)rows * sizeof *E);
    float *S = malloc((size_t)rows * qk * sizeof *S), *M = malloc((size_t)rows * qk * sizeof *M);
    uint8_t *Q = malloc((size_t)rows * qk);
    if (!E || !S || !M || !Q) {
        free(E); free(S); free(M); free(Q); gg_free(&w);
        EVB_ERRORF(EVB_ENOMEM, "gguf gptq: no memory for %d rows", rows);
    }
    for (int c = 0; c < cols && !s; c++) {
        const int e = c % qk;
        const float *u = w.U + (size_t)c * n;
        if (e == 0)
            for (int r = 0; r < rows && !s; r++)
                s = block_start(t, w.Wp + (size_t)r * n + c, w.blocks + (size_t)r * w.rb + (size_t)(c / qk) * bytes,
                                S + (size_t)r * qk, M + (size_t)r * qk, Q + (size_t)r * qk, r, c);
        if (s) break;
        for (int r = 0; r < rows; r++) {
            float *xr = w.Wp + (size_t)r * n;
            const float v = xr[c];
            const float deq = round_to_grid(v, S[(size_t)r * qk + e], M[(size_t)r * qk + e], t->koff, t->maxq,
                                            &Q[(size_t)r * qk + e]);
            E[r] = (v - deq) / u[c];
            xr[c] = deq;
        }
        if (e == qk - 1)
            for (int r = 0; r < rows; r++)
                t->codes(w.blocks + (size_t)r * w.rb + (size_t)(c / qk) * bytes, Q + (size_t)r * qk);
        for (int r = 0; r < rows; r++) {
            float *xr = w.Wp + (size_t)r * n;
            for (int j = c + 1; j < cols; j++) xr[j] -= E[r] * u[j];
        }
    }
    if (!s) memcpy(W, w.Wp, (size_t)rows * n * sizeof *W);
    free(E); free(S); free(M); free(Q); gg_free(&w);
    return s;
}
