/* naive.h -- the compressors' naive references (private): the same results as the fast paths of
 * compressors/prune.c and compressors/quant.c by the plainest loops, for the tests that compare the two on
 * small layers. Defined beside their fast paths. */
#ifndef EVB_COMPRESSORS_NAIVE_H
#define EVB_COMPRESSORS_NAIVE_H
#include "evobudget/evb_compress.h"

/* Pruning (compressors/prune.c): full sorts instead of partial selection (the same masks, bit for bit), and
 * for SparseGPT the unblocked OBS loop with U's rows recomputed from inverses of trailing submatrices,
 * O(cols^4). */
int evb_prune_magnitude_naive(float *W, int rows, int cols, evb_sparsity sp);
int evb_prune_wanda_naive(float *W, int rows, int cols, const evb_layer_stats *st, evb_sparsity sp);
int evb_prune_sparsegpt_naive(float *W, int rows, int cols, const evb_layer_stats *st, evb_sparsity sp,
                              double damp, int blocksize);

/* Quantization (compressors/quant.c): RTN with each element's grid recomputed from its row slice; GPTQ
 * without blocks (the OBS update of every later column after each column). */
int evb_quant_rtn_naive(float *W, int rows, int cols, const evb_quant_params *q, evb_quant_out *out);
int evb_quant_gptq_naive(float *W, int rows, int cols, const evb_layer_stats *st, const evb_quant_params *q,
                         evb_quant_out *out);
#endif
