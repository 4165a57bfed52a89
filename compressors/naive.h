/* naive.h -- the compressors' naive references (private): the same results as the fast paths of
 * compressors/prune.c, compressors/quant.c and compressors/structured.c by the plainest loops, for the
 * tests that compare the two on small layers. Defined beside their fast paths. */
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

/* Structured removal (compressors/structured.c): FLAP's scores and bias from the raw inputs
 * X [n_tokens, cols] by two-pass loops (means, then sample variances); OBS by solving, at every step and for
 * every candidate group, the least-squares reconstruction on the kept columns from scratch (hand-written
 * Cholesky) and taking the candidate of least total error: the same order and weights as evb_struct_obs in
 * exact arithmetic. */
int evb_struct_flap_scores_naive(const float *W, int rows, int cols, int group, const float *X,
                                 size_t n_tokens, double *score);
int evb_struct_flap_bias_naive(const float *W, int rows, int cols, int group, const float *X,
                               size_t n_tokens, const int *removed, int n, float *bias);
int evb_struct_obs_naive(float *W, int rows, int cols, int group, const evb_layer_stats *st, double damp,
                         int n_remove, int *order, evb_struct_snap_fn snap, void *ctx);
#endif
