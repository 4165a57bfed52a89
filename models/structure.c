/* structure.c -- sub-blocks with whole heads or MLP channels removed, compacted to their smaller shapes so
 * that the forward runs them at that size (see evb_model.h, "structured removal"). */
#include "evobudget/evb_model.h"
#include "evobudget/evb_status.h"
#include "models/bf16.h"
#include "core/half.h"

#include <stdlib.h>
#include <string.h>

int evb_block_kept_inputs(const evb_config *c, int mlp, const int *kept, int n_kept, int *idx) {
    int per = mlp ? 1 : c->n_heads / c->n_kv_heads * c->head_dim;
    int n_groups = mlp ? c->hidden_dim : c->n_kv_heads;
    for (int i = 0; i < n_kept; i++) {
        if (kept[i] < 0 || kept[i] >= n_groups || (i > 0 && kept[i] <= kept[i - 1]))
            EVB_ERRORF(EVB_EINVAL, "structured level: kept %s %d is not ascending within [0, %d)",
                       mlp ? "channel" : "group", kept[i], n_groups);
        for (int j = 0; j < per; j++) idx[(size_t)i * per + j] = kept[i] * per + j;
    }
    return EVB_SUCCESS;
}

/* The rows rows[0..n) (each of `len` contiguous rows starting at rows[i] * len) of a dense [*, K] weight. */
static void gather_rows(const evb_model *m, const evb_layer *L, int kind, const int *groups, int n, int len,
                        int K,
                        float *dst, uint16_t *dst16) {
    for (int i = 0; i < n; i++) {
        size_t off = (size_t)groups[i] * len * K, cnt = (size_t)len * K;
        if (m->compute == EVB_COMPUTE_BF16) memcpy(dst16 + (size_t)i * cnt, L->w16_dense[kind] + off,
                                                   cnt * 2);
        else memcpy(dst + (size_t)i * cnt, L->w_dense[kind] + off, cnt * sizeof(float));
    }
}

/* The kept input columns idx[0..n) of the dense [D, K] weight (or out_w [D, n] when given). */
static void gather_cols(const evb_model *m, const evb_layer *L, int kind, const int *idx, int n, int K,
                        const float *out_w, float *dst, uint16_t *dst16) {
    int D = m->config.dim, bf = m->compute == EVB_COMPUTE_BF16;
    for (int r = 0; r < D; r++)
        for (int j = 0; j < n; j++) {
            size_t o = (size_t)r * n + j, src = (size_t)r * K + idx[j];
            if (out_w && bf) dst16[o] = evb_bf16_round(out_w[o]);
            else if (out_w) dst[o] = out_w[o];
            else if (bf) dst16[o] = L->w16_dense[kind][src];
            else dst[o] = L->w_dense[kind][src];
        }
}

static void gather_bias(const float *b, const int *groups, int n, int len, float *dst) {
    for (int i = 0; i < n; i++) memcpy(dst + (size_t)i * len, b + (size_t)groups[i] * len,
                                       sizeof(float) * len);
}

int evb_block_level_make(const evb_model *m, int layer, int mlp, const int *kept, int n_kept,
                         const float *out_w,
                         const float *bias, evb_block_level **out) {
    *out = NULL;
    const evb_config *c = &m->config;
    if (layer < 0 || layer >= c->n_layers || n_kept < 0 || n_kept > (mlp ? c->hidden_dim : c->n_kv_heads))
        EVB_ERRORF(EVB_EINVAL, "structured level: block %d keeping %d %s is outside the model", layer, n_kept,
                   mlp ? "channels" : "groups");
    const evb_layer *L = &m->layers[layer];
    if (L->structured && (mlp ? L->ffn != c->hidden_dim : L->heads != c->n_heads))
        EVB_ERRORF(EVB_EINVAL, "structured level: block %d's %s already runs at a smaller shape (a structured checkpoint, "
                   "or a level applied); levels are made from a model's dense "
                   "sub-blocks", layer, mlp ? "MLP" : "attention");
    int D = c->dim, E = c->head_dim, r = c->n_heads / c->n_kv_heads;
    int n_in = mlp ? n_kept : n_kept * r * E;              /* inputs of o or down kept */
    size_t rows[3] = {mlp ? (size_t)n_kept : (size_t)n_in, mlp ? (size_t)n_kept : (size_t)n_kept * E,
                      mlp ? 0 : (size_t)n_kept * E};       /* rows of q, k, v or gate, up */
    size_t n_w = ((size_t)rows[0] + rows[1] + rows[2]) * D + (size_t)D * n_in;
    size_t n_b = (bias ? (size_t)D : 0) + (!mlp && c->qkv_bias ? rows[0] + rows[1] + rows[2] : 0);
    size_t wsize = m->compute == EVB_COMPUTE_BF16 ? 2 : 4;
    evb_block_level *b = calloc(1, sizeof *b);
    int *idx = malloc(sizeof(int) * ((size_t)n_in + 1));
    void *mem = malloc(n_w * wsize + n_b * sizeof(float) + 64);
    if (!b || !idx || !mem) { free(b); free(idx); free(mem); EVB_ERROR("structured level: out of memory",
            EVB_ENOMEM); }
    int st = evb_block_kept_inputs(c, mlp, kept, n_kept, idx);
    if (st) { free(b); free(idx); free(mem); return st; }
    b->layer = layer; b->mlp = mlp; b->n_kept = n_kept; b->mem = mem;
    b->bytes = n_w * wsize + n_b * sizeof(float) + sizeof *b;
    b->heads = mlp ? c->n_heads : n_kept * r;
    b->kv_heads = mlp ? c->n_kv_heads : n_kept;
    b->ffn = mlp ? n_kept : c->hidden_dim;
    float *fb = (float *)mem;                     /* the biases first (float32), then the weights */
    uint8_t *wp = (uint8_t *)(fb + n_b);
    int kinds[4] = {EVB_LINEAR_Q, EVB_LINEAR_K, EVB_LINEAR_V, EVB_LINEAR_O};
    if (mlp) { kinds[0] = EVB_LINEAR_GATE; kinds[1] = EVB_LINEAR_UP; kinds[2] = -1; kinds[3] = EVB_LINEAR_DOWN; }
    for (int k = 0; k < 3; k++) {
        if (kinds[k] < 0) continue;
        int len = mlp ? 1 : (k == 0 ? r * E : E);
        gather_rows(m, L, kinds[k], kept, n_kept, len, D, (float *)wp, (uint16_t *)wp);
        b->w[k] = (const float *)wp; b->w16[k] = (const uint16_t *)wp;
        wp += rows[k] * D * wsize;
    }
    int K = mlp ? c->hidden_dim : c->n_heads * E;
    gather_cols(m, L, kinds[3], idx, n_in, K, out_w, (float *)wp, (uint16_t *)wp);
    b->w[3] = (const float *)wp; b->w16[3] = (const uint16_t *)wp;
    if (bias) { memcpy(fb, bias, sizeof(float) * D); b->bias = fb; fb += D; }
    if (!mlp && c->qkv_bias) {
        const float *src[3] = {L->bq, L->bk, L->bv};
        const float **dst[3] = {&b->bq, &b->bk, &b->bv};
        for (int k = 0; k < 3; k++) {
            gather_bias(src[k], kept, n_kept, k == 0 ? r * E : E, fb);
            *dst[k] = fb; fb += rows[k];
        }
    }
    if (m->compute == EVB_COMPUTE_BF16) memset(b->w, 0, sizeof b->w); else memset(b->w16, 0, sizeof b->w16);
    free(idx);
    *out = b;
    return EVB_SUCCESS;
}

void evb_block_level_free(evb_block_level *b) {
    if (!b) return;
    free(b->mem);
    free(b);
}

/* Marks layer L structured, with the configuration's shapes for what is not yet set. */
static void ensure_structured(const evb_config *c, evb_layer *L) {
    if (L->structured) return;
    L->structured = 1;
    L->heads = c->n_heads; L->kv_heads = c->n_kv_heads; L->ffn = c->hidden_dim;
}

void evb_block_level_apply(evb_model *m, const evb_block_level *b) {
    evb_layer *L = &m->layers[b->layer];
    ensure_structured(&m->config, L);
    if (b->mlp) {
        L->ffn = b->ffn; L->b_down = b->bias;
        L->w[EVB_LINEAR_GATE] = b->w[0]; L->w[EVB_LINEAR_UP] = b->w[1]; L->w[EVB_LINEAR_DOWN] = b->w[3];
        L->w16[EVB_LINEAR_GATE] = b->w16[0]; L->w16[EVB_LINEAR_UP] = b->w16[1]; L->w16[EVB_LINEAR_DOWN] = b->w16[3];
    } else {
        L->heads = b->heads; L->kv_heads = b->kv_heads; L->b_o = b->bias;
        for (int k = 0; k < 4; k++) { L->w[k] = b->w[k]; L->w16[k] = b->w16[k]; }
        L->bq_kept = b->bq; L->bk_kept = b->bk; L->bv_kept = b->bv;
    }
}

void evb_block_level_clear(evb_model *m, int layer, int mlp) {
    evb_layer *L = &m->layers[layer];
    if (!L->structured) return;
    int k0 = mlp ? EVB_LINEAR_GATE : EVB_LINEAR_Q, k1 = mlp ? EVB_LINEAR_COUNT : EVB_LINEAR_GATE;
    for (int k = k0; k < k1; k++) { L->w[k] = L->w_dense[k]; L->w16[k] = L->w16_dense[k]; }
    if (mlp) { L->ffn = m->config.hidden_dim; L->b_down = NULL; }
    else {
        L->heads = m->config.n_heads; L->kv_heads = m->config.n_kv_heads; L->b_o = NULL;
        L->bq_kept = L->bk_kept = L->bv_kept = NULL;
    }
}
