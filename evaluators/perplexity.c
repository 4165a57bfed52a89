/* perplexity.c -- negative log-likelihood of token windows under a model (see evb_eval.h). Windows of equal
 * length are batched together; the last, shorter window of a text runs in a batch of its own. */
#include "evobudget/evb_eval.h"
#include "evobudget/evb_status.h"

#include <stdlib.h>
#include <string.h>

int evb_eval_nll(const evb_model *m, evb_state *s, const evb_windows *w, int batch,
                 double *nll_sum, size_t *n_scored,
                 void (*progress)(void *ctx, int done, int total), void *progress_ctx) {
    *nll_sum = 0.0; *n_scored = 0;
    if (batch < 1 || batch > s->max_batch || w->seq_len > s->max_seq)
        EVB_ERRORF(EVB_EINVAL, "batch %d x %d does not fit the forward state (%d x %d)", batch, w->seq_len, s->max_batch, s->max_seq);
    int V = m->config.vocab_size;
    for (int i = 0; i < w->n;) {
        int T, B = evb_windows_batch(w, i, batch, &T);
        int st = evb_forward(m, s, w->tokens + (size_t)i * w->seq_len, B, T);
        if (st) return st;
        evb_log_softmax(s->logits, (size_t)B * T, V);
        for (int b = 0; b < B; b++) {
            const int32_t *tok = w->tokens + (size_t)(i + b) * w->seq_len;
            *nll_sum += evb_nll_sum(s->logits + (size_t)b * T * V, tok + 1, (size_t)T - 1, V);
            *n_scored += (size_t)T - 1;
        }
        i += B;
        if (progress) progress(progress_ctx, i, w->n);
    }
    return EVB_SUCCESS;
}

static void set_weights(evb_model *m, const float *const *weights, const unsigned char *drop) {
    for (int u = 0; u < evb_model_n_units(m); u++) evb_model_set_weight(m, u, weights ? weights[u] : NULL);
    for (int l = 0; l < m->config.n_layers; l++) {
        m->layers[l].skip_attn = drop ? drop[l] : 0;
        m->layers[l].skip_mlp = drop ? drop[m->config.n_layers + l] : 0;
    }
}

int evb_eval_nll_kl(evb_model *m, evb_state *s, const evb_windows *w, int batch, const float *const *weights,
                    const unsigned char *drop, double *nll_sum, double *kl_sum, size_t *n_scored,
                    void (*progress)(void *ctx, int done, int total), void *progress_ctx) {
    *nll_sum = *kl_sum = 0.0; *n_scored = 0;
    if (batch < 1 || batch > s->max_batch || w->seq_len > s->max_seq)
        EVB_ERRORF(EVB_EINVAL, "batch %d x %d does not fit the forward state (%d x %d)", batch, w->seq_len, s->max_batch, s->max_seq);
    int V = m->config.vocab_size;
    float *ref = malloc(sizeof(float) * (size_t)batch * w->seq_len * V);
    if (!ref) EVB_ERROR("out of memory for the dense log-probabilities", EVB_ENOMEM);
    int st = EVB_SUCCESS;
    for (int i = 0; i < w->n && !st;) {
        int T, B = evb_windows_batch(w, i, batch, &T);
        const int32_t *tok = w->tokens + (size_t)i * w->seq_len;
        set_weights(m, NULL, NULL);
        st = evb_forward(m, s, tok, B, T);
        if (st) break;
        evb_log_softmax(s->logits, (size_t)B * T, V);
        memcpy(ref, s->logits, sizeof(float) * (size_t)B * T * V);
        set_weights(m, weights, drop);
        st = evb_forward(m, s, tok, B, T);
        if (st) break;
        evb_log_softmax(s->logits, (size_t)B * T, V);
        for (int b = 0; b < B; b++) {
            size_t off = (size_t)b * T * V;
            *nll_sum += evb_nll_sum(s->logits + off, tok + (size_t)b * w->seq_len + 1, (size_t)T - 1, V);
            *kl_sum += evb_kl_sum(ref + off, s->logits + off, (size_t)T - 1, V);
            *n_scored += (size_t)T - 1;
        }
        i += B;
        if (progress) progress(progress_ctx, i, w->n);
    }
    set_weights(m, NULL, NULL);
    free(ref);
    return st;
}
