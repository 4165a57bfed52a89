/* bf16.h -- the BF16 compute path (private): projections with bfloat16 inputs and float32 accumulation and
 * output through oneDNN's matmul primitive, the CPU probe that decides whether that path is fast here, and
 * the bfloat16 conversions. models/bf16.c is the only file that includes dnnl.h. Every kernel has its naive
 * reference beside it; tests/test_bf16.c compares them. */
#ifndef EVB_MODELS_BF16_H
#define EVB_MODELS_BF16_H
#include <stddef.h>
#include <stdint.h>
#include "models/naive.h" /* the naive forward, the reference of both compute paths */

/* NULL when this CPU computes BF16 products natively (AVX512-BF16 or AMX-BF16, with the operating system's
 * support for their registers), else a sentence naming what is missing, for messages and test skips. */
const char *evb_bf16_missing(void);

/* oneDNN's name for the kernel a BF16 projection runs here ("brg:avx512_core_amx_bf16", ...), or a message
 * when oneDNN cannot make one. */
const char *evb_bf16_kernel(void);

/* Round to nearest even, NaN kept a NaN (n values). */
void evb_bf16_from_f32(uint16_t *dst, const float *src, size_t n);
void evb_bf16_to_f32_n(float *dst, const uint16_t *src, size_t n);

/* out[M, N] = bf16(x)[M, K] . W[N, K]^T (+ bias[N] when non-NULL), accumulated and written in float32. x is
 * rounded to bfloat16 into xb [M, K] first. Rows are cut into fixed slices shared among the OpenMP threads,
 * each slice one single-threaded oneDNN call: the result does not depend on the thread count. Returns
 * EVB_SUCCESS or the status of a oneDNN failure (its message recorded). */
int  evb_matmul_wt_bf16(float *out, const float *x, uint16_t *xb, const uint16_t *W, const float *bias,
                        int M, int K, int N);
/* The reference: the same rounding of x, products of the bfloat16 values summed in double. */
void evb_matmul_wt_bf16_naive(float *out, const float *x, const uint16_t *W, const float *bias, int M, int K, int N);
#endif
