/* evb_eval.h -- scoring a model on token windows: perplexity (mean negative log-likelihood per token), and
 * the KL divergence to a reference model. */
#ifndef EVB_EVAL_H
#define EVB_EVAL_H

#include <stddef.h>
#include "evobudget/evb_model.h"
#include "evobudget/evb_text.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Sum over n rows of KL(p || q) = sum_v p_v (log p_v - log q_v), from log-probabilities logp, logq [n, V]
 * (e.g. the dense model's and a compressed model's), in an order fixed by n and V alone. */
double evb_kl_sum(const float *logp, const float *logq, size_t n, int V);

/* Runs the windows through the model, batch windows at a time (s must hold batch x w->seq_len), and adds
 * up -log p(token) over every scored position. Writes the sum to *nll_sum and the count to *n_scored.
 * progress, when non-NULL, is called after each batch with the windows done so far. */
/* Puts a configuration's weights[U] (NULL entries: dense) and sub-block drops (drop[2L]: attention then MLP;
 * NULL: none) into m; both NULL restore the dense model. */
int evb_eval_set_weights(evb_model *m, const float *const *weights, const unsigned char *drop);
int evb_eval_nll(const evb_model *m, evb_state *s, const evb_windows *w, int batch,
                 double *nll_sum, size_t *n_scored,
                 void (*progress)(void *ctx, int done, int total), void *progress_ctx);

/* Scores a compressed model against the dense one on the same windows: m's dense weights and the
 * compressed weights weights[U] (NULL: that unit stays dense), with the sub-blocks drop[2 L] marks dropped
 * (attention of blocks 0..L-1, then MLPs; NULL: none), are swapped in turn for each batch. Writes the
 * compressed model's NLL sum and the sum over the same positions of KL(dense || compressed). m is dense
 * again on return (weights and skip flags). */
int evb_eval_nll_kl(evb_model *m, evb_state *s, const evb_windows *w, int batch, const float *const *weights,
                    const unsigned char *drop, double *nll_sum, double *kl_sum, size_t *n_scored,
                    void (*progress)(void *ctx, int done, int total), void *progress_ctx);

/* The same for two models: KL(ref || m) and m's NLL, each model used as it is (an exported compressed
 * model against the dense one it came from). They must agree in shape (one forward state serves both);
 * ref is not modified (the cast inside is for the forward's signature only). */
int evb_eval_nll_kl_ref(const evb_model *ref, const evb_model *m, evb_state *s, const evb_windows *w, int batch,
                        double *nll_sum, double *kl_sum, size_t *n_scored,
                        void (*progress)(void *ctx, int done, int total), void *progress_ctx);

#ifdef __cplusplus
}
#endif
#endif
