/* gguf_naive.h -- private companions of compressors/gguf_quant.c for its tests: the naive GPTQ reference and
 * the per-block grid that both GPTQ variants round to. Not installed. */
#ifndef EVB_COMPRESSORS_GGUF_NAIVE_H
#define EVB_COMPRESSORS_GGUF_NAIVE_H
#include "evobudget/evb_gguf.h"

#include <stdint.h>

/* evb_gguf_gptq without lazy blocks: after each column, the OBS update of every later column. The blocked
 * version applies the same rank-1 updates to every weight in the same order and reads each block's weights
 * at the same point, so the two agree to the last bit (W and dst). blocksize is only checked. */
int evb_gguf_gptq_naive(int type, float *W, int rows, int cols, const evb_layer_stats *st, double damp,
                        int blocksize, void *dst);

/* The grid of one packed block of a block type: element j of the block decodes to
 * s[j] * (float)(q_j + *koff) - m[j] for its code q_j in [0, *maxq], the same float operations as ggml's
 * dequantize_row_* (s and m [block]; either may be NULL). codes [block] (may be NULL) gets the q_j. */
int evb_gguf_block_grid(int type, const void *blk, float *s, float *m, int *koff, int *maxq, uint8_t *codes);
/* Writes codes [block] (each in [0, maxq]) into a packed block, its scales and mins unchanged. */
int evb_gguf_block_set_codes(int type, void *blk, const uint8_t *codes);
#endif
