/* calib.c -- calibration statistics (see evb_calib.h).
 *
 * The forward's capture hook hands over each linear layer's input X [B T, cols]; X^T X is formed in float
 * by single-threaded BLAS over slices of at most 512 rows and added into a double accumulator, so the
 * float sums are short and the long sum over the calibration set is in double. The column sums of X (for
 * the inputs' means) are added row by row straight into double. The hook runs on the calling thread in
 * token order, so both are the same whatever the thread count. q/k/v share one input and gate/up another:
 * each distinct input is accumulated once (on q and on gate). */
#include "evobudget/evb_calib.h"
#include "evobudget/evb_status.h"
#include "models/blas.h"

#include <stdlib.h>
#include <string.h>

/* The four distinct inputs of a block. */
enum { IN_ATTN, IN_O, IN_MLP, IN_DOWN, IN_COUNT };

struct evb_calib {
    int n_layers;
    size_t n_tokens;
    evb_layer_stats *stats;   /* [L, IN_COUNT] */
    double *mem;              /* every Gram matrix and column-sum vector, one allocation */
    float *scratch;           /* [max cols, max cols] float product of one slice */
    int status;               /* first error inside the capture hook */
};

static int input_of(evb_linear_kind kind) {
    switch (kind) {
    case EVB_LINEAR_Q: case EVB_LINEAR_K: case EVB_LINEAR_V: return IN_ATTN;
    case EVB_LINEAR_O: return IN_O;
    case EVB_LINEAR_GATE: case EVB_LINEAR_UP: return IN_MLP;
    default: return IN_DOWN;
    }
}

static void on_capture(void *ctx, int layer, evb_linear_kind kind, const float *x, int n_rows, int n_cols) {
    evb_calib *c = ctx;
    if (kind == EVB_LINEAR_K || kind == EVB_LINEAR_V || kind == EVB_LINEAR_UP) return; /* shared input */
    evb_layer_stats *st = &c->stats[layer * IN_COUNT + input_of(kind)];
    double *G = (double *)st->gram, *S = (double *)st->sum;
    for (int r = 0; r < n_rows; r++) {
        const float *xr = x + (size_t)r * n_cols;
        for (int j = 0; j < n_cols; j++) S[j] += xr[j];
    }
    for (int r0 = 0; r0 < n_rows; r0 += 512) {
        int n = n_rows - r0 < 512 ? n_rows - r0 : 512;
        evb_gram_f32(c->scratch, x + (size_t)r0 * n_cols, n, n_cols);
        for (size_t i = 0; i < (size_t)n_cols * n_cols; i++) G[i] += c->scratch[i];
    }
    st->n_tokens += (size_t)n_rows;
}

int evb_calib_alloc(const evb_model *m, evb_calib **out) {
    *out = NULL;
    const evb_config *cf = &m->config;
    int D = cf->dim, HE = cf->n_heads * cf->head_dim, F = cf->hidden_dim, L = cf->n_layers;
    int cols[IN_COUNT] = {D, HE, D, F};
    evb_calib *c = calloc(1, sizeof *c);
    if (!c) EVB_ERROR("out of memory for calibration statistics", EVB_ENOMEM);
    c->n_layers = L;
    size_t total = 0;
    int maxc = 0;
    for (int k = 0; k < IN_COUNT; k++) {
        total += (size_t)cols[k] * cols[k] + (size_t)cols[k];
        if (cols[k] > maxc) maxc = cols[k];
    }
    c->stats = calloc((size_t)L * IN_COUNT, sizeof *c->stats);
    c->mem = calloc(total * L, sizeof *c->mem);
    c->scratch = malloc(sizeof(float) * maxc * maxc);
    if (!c->stats || !c->mem || !c->scratch) {
        evb_calib_free(c);
        EVB_ERRORF(EVB_ENOMEM, "out of memory for calibration statistics (%.1f MB)", total * L * 8.0 / 1e6);
    }
    double *p = c->mem;
    for (int l = 0; l < L; l++)
        for (int k = 0; k < IN_COUNT; k++) {
            c->stats[l * IN_COUNT + k].cols = cols[k];
            c->stats[l * IN_COUNT + k].gram = p;
            p += (size_t)cols[k] * cols[k];
            c->stats[l * IN_COUNT + k].sum = p;
            p += (size_t)cols[k];
        }
    *out = c;
    return EVB_SUCCESS;
}

int evb_calib_collect(const evb_model *m, const evb_windows *w, int batch, evb_calib **out) {
    evb_calib *c;
    int st = evb_calib_alloc(m, &c);
    *out = NULL;
    if (st) return st;
    int L = m->config.n_layers;
    evb_state *s = NULL;
    st = evb_state_alloc(m, batch, w->seq_len, &s);
    /* A BF16 model's statistics come from float32 products (its weights, expanded): the levels built from
     * them are the ones a float32 run of the checkpoint builds. */
    if (!st) { s->capture = on_capture; s->capture_ctx = c; s->exact = 1; }
    for (int i = 0, T, B; !st && i < w->n; i += B) {
        B = evb_windows_batch(w, i, batch, &T);
        st = evb_forward_embed(m, s, w->tokens + (size_t)i * w->seq_len, B, T);
        if (!st) st = evb_forward_blocks(m, s, 0, L);
        c->n_tokens += (size_t)B * T;
    }
    evb_state_free(s);
    if (st) { evb_calib_free(c); return st; }
    *out = c;
    return EVB_SUCCESS;
}

int evb_calib_embed(const evb_model *m, evb_state *s, const evb_windows *w, float *h) {
    size_t D = (size_t)m->config.dim;
    for (int i = 0, T, B; i < w->n; i += B) {
        B = evb_windows_batch(w, i, s->max_batch, &T);
        int st = evb_forward_embed(m, s, w->tokens + (size_t)i * w->seq_len, B, T);
        if (st) return st;
        for (int b = 0; b < B; b++)
            memcpy(h + (size_t)(i + b) * w->seq_len * D, s->x + (size_t)b * T * D, sizeof(float) * T * D);
    }
    return EVB_SUCCESS;
}

int evb_calib_block(evb_calib *c, const evb_model *m, evb_state *s, const evb_windows *w, float *h, int layer,
                    int collect, int advance) {
    if (layer < 0 || layer >= c->n_layers) EVB_ERRORF(EVB_EINVAL, "calibration: no block %d", layer);
    size_t D = (size_t)m->config.dim;
    if (collect) {
        for (int k = 0; k < IN_COUNT; k++) {
            evb_layer_stats *st = &c->stats[layer * IN_COUNT + k];
            memset((double *)st->gram, 0, sizeof(double) * st->cols * st->cols);
            memset((double *)st->sum, 0, sizeof(double) * st->cols);
            st->n_tokens = 0;
        }
        s->capture = on_capture; s->capture_ctx = c;
        c->n_tokens = 0;
    }
    int st = EVB_SUCCESS;
    for (int i = 0, T, B; !st && i < w->n; i += B) {
        B = evb_windows_batch(w, i, s->max_batch, &T);
        s->B = B; s->T = T;
        for (int b = 0; b < B; b++)
            memcpy(s->x + (size_t)b * T * D, h + (size_t)(i + b) * w->seq_len * D, sizeof(float) * T * D);
        st = evb_forward_blocks(m, s, layer, layer + 1);
        if (collect) c->n_tokens += (size_t)B * T;
        if (!st && advance)
            for (int b = 0; b < B; b++)
                memcpy(h + (size_t)(i + b) * w->seq_len * D, s->x + (size_t)b * T * D, sizeof(float) * T * D);
    }
    s->capture = NULL; s->capture_ctx = NULL;
    return st;
}

void evb_calib_free(evb_calib *c) {
    if (!c) return;
    free(c->stats); free(c->mem); free(c->scratch);
    free(c);
}

const evb_layer_stats *evb_calib_unit(const evb_calib *c, int unit) {
    return &c->stats[(unit / EVB_LINEAR_COUNT) * IN_COUNT + input_of((evb_linear_kind)(unit % EVB_LINEAR_COUNT))];
}

size_t evb_calib_tokens(const evb_calib *c) { return c->n_tokens; }
