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

/* The loop of both KL evaluations: ref's log-probabilities, then m's. When ref == m, the dense weights and
 * the compressed ones (weights, drop) are swapped in turn; otherwise both models are used as they are. */
static int nll_kl(evb_model *ref, evb_model *m, evb_state *s, const evb_windows *w, int batch, const float *const *weights,
                  const unsigned char *drop, double *nll_sum, double *kl_sum, size_t *n_scored,
                  void (*progress)(void *ctx, int done, int total), void *progress_ctx) {
    *nll_sum = *kl_sum = 0.0; *n_scored = 0;
    if (batch < 1 || batch > s->max_batch || w->seq_len > s->max_seq)
        EVB_ERRORF(EVB_EINVAL, "batch %d x %d does not fit the forward state (%d x %d)", batch, w->seq_len, s->max_batch, s->max_seq);
    int V = m->config.vocab_size, same = ref == m;
    float *lp = malloc(sizeof(float) * (size_t)batch * w->seq_len * V);
    if (!lp) EVB_ERROR("out of memory for the reference log-probabilities", EVB_ENOMEM);
    int st = EVB_SUCCESS;
    for (int i = 0; i < w->n && !st;) {
        int T, B = evb_windows_batch(w, i, batch, &T);
        const int32_t *tok = w->tokens + (size_t)i * w->seq_len;
        if (same) set_weights(m, NULL, NULL);
        st = evb_forward(ref, s, tok, B, T);
        if (st) break;
        evb_log_softmax(s->logits, (size_t)B * T, V);
        memcpy(lp, s->logits, sizeof(float) * (size_t)B * T * V);
        if (same) set_weights(m, weights, drop);
        st = evb_forward(m, s, tok, B, T);
        if (st) break;
        evb_log_softmax(s->logits, (size_t)B * T, V);
        for (int b = 0; b < B; b++) {
            size_t off = (size_t)b * T * V;
            *nll_sum += evb_nll_sum(s->logits + off, tok + (size_t)b * w->seq_len + 1, (size_t)T - 1, V);
            *kl_sum += evb_kl_sum(lp + off, s->logits + off, (size_t)T - 1, V);
            *n_scored += (size_t)T - 1;
        }
        i += B;
        if (progress) progress(progress_ctx, i, w->n);
    }
    if (same) set_weights(m, NULL, NULL);
    free(lp);
    return st;
}

int evb_eval_nll_kl(evb_model *m, evb_state *s, const evb_windows *w, int batch, const float *const *weights,
                    const unsigned char *drop, double *nll_sum, double *kl_sum, size_t *n_scored,
                    void (*progress)(void *ctx, int done, int total), void *progress_ctx) {
    return nll_kl(m, m, s, w, batch, weights, drop, nll_sum, kl_sum, n_scored, progress, progress_ctx);
}

int evb_eval_nll_kl_ref(const evb_model *ref, const evb_model *m, evb_state *s, const evb_windows *w, int batch,
                        double *nll_sum, double *kl_sum, size_t *n_scored,
                        void (*progress)(void *ctx, int done, int total), void *progress_ctx) {
    const evb_config *a = &ref->config, *b = &m->config;
    if (a->dim != b->dim || a->hidden_dim != b->hidden_dim || a->n_heads != b->n_heads || a->n_kv_heads != b->n_kv_heads ||
        a->head_dim != b->head_dim || a->vocab_size != b->vocab_size)
        EVB_ERRORF(EVB_EINVAL, "%s and %s differ in shape (dim %d/%d, hidden %d/%d, heads %d/%d, vocab %d/%d); KL needs the same vocabulary and one forward state",
                   ref->path, m->path, a->dim, b->dim, a->hidden_dim, b->hidden_dim, a->n_heads, b->n_heads, a->vocab_size, b->vocab_size);
    return nll_kl((evb_model *)ref, (evb_model *)m, s, w, batch, NULL, NULL, nll_sum, kl_sum, n_scored, progress, progress_ctx);
}
