/* evb_scores.h -- statistics of a model that the published allocation rules use, and the rules themselves
 * (shared/reference/baselines.md):
 *
 *   OWL        layerwise outlier distribution: per block, the percentage of its scores |W_ij| ||X_j||_2
 *              (all seven linear layers together) above M times their mean; more outliers, less sparsity.
 *   ShortGPT   block influence: mean over tokens of 1 - cos(h_in, h_out) of a block (and of each sub-block:
 *              attention alone, then the MLP); the least influential are dropped first.
 *   ECoFLaP    zeroth-order importance: per linear layer, the sum over calibration batches of
 *              |(loss(W + eps z) - loss(W - eps z)) / (2 eps)|, z ~ N(0, I), an estimate of the gradient's
 *              norm; a block's score is the sum over its layers, and kept weights are shared out in
 *              proportion to the scores under a cap on any block's sparsity.
 *
 * All statistics are taken on the dense model. */
#ifndef EVB_SCORES_H
#define EVB_SCORES_H

#include <stdint.h>
#include "evobudget/evb_calib.h"
#include "evobudget/evb_model.h"
#include "evobudget/evb_text.h"

#ifdef __cplusplus
extern "C" {
#endif

/* lod[L]: OWL's outlier percentage of every block, from the dense weights and the statistics' ||X_j||. */
int evb_score_owl(const evb_model *m, const evb_calib *c, double M, double *lod);
/* OWL's rule: sparsity[i] = target - r_i + mean(r), r_i = 2 lambda (lod_i - min) / (max - min), a value
 * <= 0 replaced by 0.01 (the reference code). */
int evb_alloc_owl(const double *lod, int n, double target, double lambda, double *sparsity);

/* ShortGPT's block influence of every block, and of its attention and MLP sub-blocks, averaged over every
 * position of the windows. m's skip flags are used and restored. */
int evb_score_block_influence(evb_model *m, const evb_windows *w, int batch, double *bi_block, double *bi_attn,
                              double *bi_mlp);

/* ECoFLaP's zeroth-order score of every unit (score[U]) over the windows in batches of `batch`; the noise of
 * (seed, unit, batch) is fixed. Blocks before the perturbed one are not recomputed. */
int evb_score_ecoflap(evb_model *m, const evb_windows *w, int batch, double eps, uint64_t seed, double *score);
/* The same, calling progress(ctx, done, total) after every unit of every batch (window-units done of all). */
int evb_score_ecoflap_progress(evb_model *m, const evb_windows *w, int batch, double eps, uint64_t seed, double *score,
                               void (*progress)(void *ctx, int done, int total), void *ctx);
/* The noise z [n] of (seed, unit, batch index): standard normal (Box-Muller on splitmix64). */
void evb_ecoflap_noise(uint64_t seed, int unit, int batch_index, size_t n, float *z);
/* ECoFLaP's rule over n groups of size[g] weights with scores score[g]: the floor ceil(size (1 - cap)) kept
 * per group, the rest of the kept budget floor(total (1 - target)) handed out in proportion to the scores
 * (water-filling: full groups take no more), an overshoot taken back from the largest groups. */
int evb_alloc_ecoflap(const double *score, const double *size, int n, double target, double max_sparsity,
                      double *sparsity);

#ifdef __cplusplus
}
#endif
#endif
