/* naive.h -- the models' naive reference forward (private, defined in models/forward.c), for the tests
 * that compare it with the batched fast path. The matmul references are in models/blas.h and
 * models/bf16.h, beside their kernels. */
#ifndef EVB_MODELS_NAIVE_H
#define EVB_MODELS_NAIVE_H
#include "evobudget/evb_model.h"

/* One position at a time with a KV cache, plain loops, no BLAS, no threads (the llama2.c way). logits
 * [T, V] for one sequence of T tokens. Slow. A BF16 model's projections round their inputs to bfloat16 as
 * the fast path does and sum the products in double. */
int evb_forward_naive(const evb_model *m, const int32_t *tokens, int T, float *logits);
#endif
