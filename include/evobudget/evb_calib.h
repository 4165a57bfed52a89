/* evb_calib.h -- calibration statistics of a model's linear layers: for every distinct layer input (the
 * input of q/k/v, of o, of gate/up, of down in each block), the Gram matrix X^T X over the calibration
 * tokens, accumulated in double. Compressors read them through evb_layer_stats (evb_compress.h).
 *
 * Two protocols. Dense (evb_calib_collect): every layer sees the dense model's inputs, EvoPress's default,
 * so the levels of one unit do not depend on the other units' choices. Sequential (evb_calib_embed and
 * evb_calib_block, driven by evb_db_build_sequential): block by block, each block's statistics taken on
 * the outputs of the blocks before it as already compressed, as SparseGPT and GPTQ do.
 * Ownership: evb_calib_collect and evb_calib_alloc allocate; evb_calib_free releases. */
#ifndef EVB_CALIB_H
#define EVB_CALIB_H

#include "evobudget/evb_compress.h"
#include "evobudget/evb_model.h"
#include "evobudget/evb_text.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct evb_calib evb_calib;

/* Runs the windows through the model, batch windows at a time, capturing every linear layer's input. */
int evb_calib_collect(const evb_model *m, const evb_windows *w, int batch, evb_calib **out);
void evb_calib_free(evb_calib *c);

/* Statistics of every block, all zero, for the sequential protocol. */
int evb_calib_alloc(const evb_model *m, evb_calib **out);
/* h [w->n, w->seq_len, D] = the token embeddings of every window (s holds batches of s->max_batch). */
int evb_calib_embed(const evb_model *m, evb_state *s, const evb_windows *w, float *h);
/* Runs block `layer` on h, the inputs of that block for every window. collect: the block's statistics are
 * reset and accumulated from this run; advance: h is replaced by the block's outputs. */
int evb_calib_block(evb_calib *c, const evb_model *m, evb_state *s, const evb_windows *w, float *h, int layer,
                    int collect, int advance);

/* The statistics of unit u (l * 7 + kind); q, k and v of a block share theirs, as do gate and up. */
const evb_layer_stats *evb_calib_unit(const evb_calib *c, int unit);

/* Tokens accumulated (every position of every window). */
size_t evb_calib_tokens(const evb_calib *c);

#ifdef __cplusplus
}
#endif
#endif
