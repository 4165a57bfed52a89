/* evb_calib.h -- calibration statistics of a model's linear layers: for every distinct layer input (the
 * input of q/k/v, of o, of gate/up, of down in each block), the Gram matrix X^T X over the calibration
 * tokens, accumulated in double. Compressors read them through evb_layer_stats (evb_compress.h).
 *
 * Protocol: every layer sees the dense model's inputs (EvoPress's default: the levels of one unit do not
 * depend on the other units' choices). Ownership: evb_calib_collect allocates; evb_calib_free releases. */
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

/* The statistics of unit u (l * 7 + kind); q, k and v of a block share theirs, as do gate and up. */
const evb_layer_stats *evb_calib_unit(const evb_calib *c, int unit);

/* Tokens accumulated (every position of every window). */
size_t evb_calib_tokens(const evb_calib *c);

#ifdef __cplusplus
}
#endif
#endif
