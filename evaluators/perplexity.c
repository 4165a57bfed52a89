/* perplexity.c -- negative log-likelihood of token windows under a model (see evb_eval.h). Windows of equal
 * length are batched together; the last, shorter window of a text runs in a batch of its own. */
#include "core/mem.h"
#include "evobudget/evb_eval.h"
#include "evobudget/evb_status.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---- a sum that is not a number: find the cause ----

/* NaN and infinite values of x[n]: how many, and the index of the first. */
static size_t count_nonfinite(const float *x, size_t n, size_t *first) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]) && bad++ == 0) *first = i;
    return bad;
}

/* The same for a tensor held in float32 (x) or in bfloat16 (h, when x is NULL). */
static size_t count_nonfinite_either(const float *x, const uint16_t *h, size_t n, size_t *first) {
    if (x) return count_nonfinite(x, n, first);
    size_t bad = 0;
    for (size_t i = 0; h && i < n; i++)
        if ((h[i] & 0x7f80) == 0x7f80 && bad++ == 0) *first = i;
    return bad;
}

/* Names in *name the first tensor of m (a loaded weight, or with swapped one set in its place) holding a NaN or an infinity;
 * 0 when every weight is finite, else the count (*first its first index). */
static size_t nonfinite_tensor(const evb_model *m, int swapped, char *name, size_t n, size_t *first) {
    const evb_config *c = &m->config;
    size_t D = (size_t)c->dim, V = (size_t)c->vocab_size, bad;
    if ((bad = count_nonfinite_either(m->tok_emb, m->tok_emb16, V * D, first))) { snprintf(name, n, "model.embed_tokens.weight"); return bad; }
    for (int l = 0; l < c->n_layers; l++) {
        const evb_layer *L = &m->layers[l];
        if ((bad = count_nonfinite(L->rms_att, D, first))) { snprintf(name, n, "model.layers.%d.input_layernorm.weight", l); return bad; }
        if ((bad = count_nonfinite(L->rms_ffn, D, first))) { snprintf(name, n, "model.layers.%d.post_attention_layernorm.weight", l); return bad; }
        for (int k = 0; k < EVB_LINEAR_COUNT; k++) {
            int r, cc;
            evb_model_unit_shape(m, l * EVB_LINEAR_COUNT + k, &r, &cc);   /* a structured block's own shape */
            if ((bad = count_nonfinite_either(L->w_dense[k], L->w16_dense[k], (size_t)r * cc, first))) {
                snprintf(name, n, "model.layers.%d.%s.%s.weight", l, k < 4 ? "self_attn" : "mlp", evb_linear_name(k));
                return bad;
            }
            if (swapped && L->w[k] && L->w[k] != L->w_dense[k] && (bad = count_nonfinite(L->w[k], (size_t)r * cc, first))) {
                snprintf(name, n, "model.layers.%d.%s.%s.weight (the weight set in place of the loaded one)", l,
                         k < 4 ? "self_attn" : "mlp", evb_linear_name(k));
                return bad;
            }
        }
        const float *b[3] = {L->bq, L->bk, L->bv};
        for (int k = 0; k < 3; k++) {
            int r, cc;
            evb_model_unit_shape(m, l * EVB_LINEAR_COUNT + k, &r, &cc);
            if (b[k] && (bad = count_nonfinite(b[k], (size_t)r, first))) {
                snprintf(name, n, "model.layers.%d.self_attn.%s.bias", l, evb_linear_name(k));
                return bad;
            }
        }
    }
    if ((bad = count_nonfinite(m->rms_final, D, first))) { snprintf(name, n, "model.norm.weight"); return bad; }
    if (!c->tied && (bad = count_nonfinite_either(m->cls, m->cls16, V * D, first))) { snprintf(name, n, "lm_head.weight"); return bad; }
    return 0;
}

/* The error for a sum (what: "negative log-likelihood" or "KL") that came out NaN or infinite in the batch
 * starting at window `window`: NaN or infinite weights in a model (ref, m) or in a compressed level (weights),
 * named; else activations that overflowed float32. Returns the status. */
static int not_finite(const evb_model *ref, const evb_model *m, const float *const *weights, const char *what, int window) {
    char name[128];
    size_t first = 0, bad;
    const evb_model *ms[2] = {ref, m};
    for (int i = 0; i < 2; i++) {
        if (!ms[i] || (i == 1 && ms[1] == ms[0])) continue;
        if ((bad = nonfinite_tensor(ms[i], 0, name, sizeof name, &first)))
            return evb_errorf(__FILE__, __LINE__, EVB_EFORMAT, "%s: tensor %s holds %zu NaN or infinite values (the first at index %zu), "
                              "so the %s is not a number (hint: the checkpoint is damaged or was saved from a diverged model; "
                              "re-download or re-export it)", ms[i]->path, name, bad, first, what);
    }
    for (int u = 0; weights && u < evb_model_n_units(m); u++) {
        int r, cc;
        evb_model_unit_shape(m, u, &r, &cc);
        if (weights[u] && (bad = count_nonfinite(weights[u], (size_t)r * cc, &first)))
            return evb_errorf(__FILE__, __LINE__, EVB_EFORMAT, "unit %d (%s of block %d): its compressed weight from the level database "
                              "holds %zu NaN or infinite values (the first at index %zu), so the %s is not a number (hint: the "
                              "database entry is damaged; rebuild that level with 'evobudget db build')", u,
                              evb_linear_name(u % EVB_LINEAR_COUNT), u / EVB_LINEAR_COUNT, bad, first, what);
    }
    for (int i = 0; i < 2; i++) /* weights a caller set in place of the loaded ones */
        if (ms[i] && (bad = nonfinite_tensor(ms[i], 1, name, sizeof name, &first)))
            return evb_errorf(__FILE__, __LINE__, EVB_EINVAL, "%s: tensor %s holds %zu NaN or infinite values (the first at index %zu), "
                              "so the %s is not a number (hint: check where that weight came from)", ms[i]->path, name, bad, first, what);
    return evb_errorf(__FILE__, __LINE__, EVB_EBADFUNC, "%s: the %s of window %d is not a number, though every weight is finite: "
                      "the activations overflow float32 (hint: the weights are out of the range this model was trained in; "
                      "check where the checkpoint came from)", m->path, what, window);
}

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
            double nll = evb_nll_sum(s->logits + (size_t)b * T * V, tok + 1, (size_t)T - 1, V);
            if (!isfinite(nll)) return not_finite(NULL, m, NULL, "negative log-likelihood", i + b);
            *nll_sum += nll;
            *n_scored += (size_t)T - 1;
        }
        i += B;
        if (progress) progress(progress_ctx, i, w->n);
    }
    return EVB_SUCCESS;
}

int evb_eval_set_weights(evb_model *m, const float *const *weights, const unsigned char *drop) {
    int st = EVB_SUCCESS;
    for (int u = 0; u < evb_model_n_units(m) && !st; u++) st = evb_model_set_weight(m, u, weights ? weights[u] : NULL);
    for (int l = 0; l < m->config.n_layers; l++) {
        m->layers[l].skip_attn = drop ? drop[l] : 0;
        m->layers[l].skip_mlp = drop ? drop[m->config.n_layers + l] : 0;
    }
    return st;
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
    float *lp = evb_alloc_large(sizeof(float) * (size_t)batch * w->seq_len * V);
    if (!lp) EVB_ERROR("out of memory for the reference log-probabilities", EVB_ENOMEM);
    int st = EVB_SUCCESS;
    for (int i = 0; i < w->n && !st;) {
        int T, B = evb_windows_batch(w, i, batch, &T);
        const int32_t *tok = w->tokens + (size_t)i * w->seq_len;
        if (same) evb_eval_set_weights(m, NULL, NULL);
        s->exact = 1; /* the reference is the float32 forward, whatever m's compute path (a BF16 model's
                         * weights expanded), as a search's teacher is */
        st = evb_forward(ref, s, tok, B, T);
        s->exact = 0;
        if (st) break;
        evb_log_softmax(s->logits, (size_t)B * T, V);
        memcpy(lp, s->logits, sizeof(float) * (size_t)B * T * V);
        if (same && (st = evb_eval_set_weights(m, weights, drop))) break;
        st = evb_forward(m, s, tok, B, T);
        if (st) break;
        evb_log_softmax(s->logits, (size_t)B * T, V);
        for (int b = 0; b < B && !st; b++) {
            size_t off = (size_t)b * T * V;
            double nll = evb_nll_sum(s->logits + off, tok + (size_t)b * w->seq_len + 1, (size_t)T - 1, V);
            double kl = evb_kl_sum(lp + off, s->logits + off, (size_t)T - 1, V);
            if (!isfinite(nll) || !isfinite(kl)) {
                st = not_finite(ref, m, same ? weights : NULL, isfinite(nll) ? "KL" : "negative log-likelihood", i + b);
                break;
            }
            *nll_sum += nll;
            *kl_sum += kl;
            *n_scored += (size_t)T - 1;
        }
        if (st) break;
        i += B;
        if (progress) progress(progress_ctx, i, w->n);
    }
    if (same) evb_eval_set_weights(m, NULL, NULL);
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
