/* kl_impl.h -- the forward machinery of the KL fitness (kl.c), shared with the sequence fitness (seq.c): a
 * workspace holding a view of the model with a candidate's levels swapped in, and the forward over a batch's
 * windows that starts at the first block a candidate changes from its parent. */
#ifndef EVB_EVALUATORS_KL_IMPL_H
#define EVB_EVALUATORS_KL_IMPL_H
#include "evobudget/evb_fitness_kl.h"

typedef struct kl_ws {
    evb_model view;          /* shallow copy of the model: its own layers, the shared weights */
    evb_state *s;
    int16_t *applied;        /* [n_units] level applied in view (-1: the dense weight) */
    int *held;               /* [n_units] cache entry held for the unit, -1 none */
    int *idx, *len;          /* [w->n] the batch's windows and the positions forwarded of each */
    float *scratch;          /* [V] */
    float *zero;             /* [largest linear unit] zeros: the weight of a unit at EVB_ENTRY_ZERO */
    float *h;                /* [L, tokens, D] the reference's hidden states at every block input */
    size_t h_cap;            /* floats */
    int h_valid;
    evb_batch h_batch;       /* the batch h was computed on */
    int16_t *h_ref;          /* [n_units] the reference h belongs to */
    int32_t *tok;            /* [batch, seq_len] token ids of one forward */
    evb_level_cache *cache;  /* where held levels go back to */
    evb_block_level **blk;   /* [n_units] the structured level built for the unit, NULL: dense */
    int n_units;
} kl_ws;

size_t kl_workspace_size(const void *params);
int  kl_workspace_init(void *ws, const void *params);
void kl_workspace_destroy(void *ws);

/* Called for window k of the batch (ws->idx[k]) with its log-probabilities logq [T, V] and tokens tok [T]. */
typedef int (*kl_sink)(void *ctx, const kl_ws *ws, int k, const float *logq, const int32_t *tok, int T);

/* Runs candidate g (NULL: the dense model, as the workspace starts) over the n windows ws->idx / ws->len of
 * batch b (which names them: the same b must give the same windows), chunks [part nc / n_parts, (part + 1) nc
 * / n_parts) of the nc chunks of consecutive windows of one length, and hands every window to sink. With ref,
 * the forward starts at the first block g changes from ref, from ref's hidden states on b (computed once). */
int kl_run(const evb_kl_params *p, kl_ws *ws, const evb_genome *g, const evb_genome *ref, const evb_batch *b, int n,
           int part, int n_parts, kl_sink sink, void *ctx);
/* Keeps the K largest of row[V] in (lp, id), largest first. */
void kl_top_k(const float *row, int V, int K, float *lp, int32_t *id);
#endif
