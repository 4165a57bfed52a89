/* evb_gguf.h -- llama.cpp's GGUF tensor types (the legacy 32-element blocks Q4_0 .. Q8_0, the 256-element
 * k-quants Q2_K .. Q6_K, and the plain F32, F16, BF16): their sizes, llama.cpp's reference rounding and
 * decoding bit for bit, and GPTQ constrained to each type's grid.
 *
 * A weight W [rows, cols] is in nn.Linear layout (rows = outputs, cols = inputs), as in evb_compress.h;
 * each row is stored as cols / block consecutive blocks, exactly the bytes ggml keeps for a row of the
 * tensor (ggml's ne[0] = cols). Everything here is single-threaded and allocates only what it frees. */
#ifndef EVB_GGUF_H
#define EVB_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "evobudget/evb_compress.h"   /* evb_layer_stats */

#ifdef __cplusplus
extern "C" {
#endif

/* ggml's type ids (enum ggml_type), as written in a GGUF file's tensor infos. */
typedef enum evb_gguf_type {
    EVB_GGUF_F32  = 0,
    EVB_GGUF_F16  = 1,
    EVB_GGUF_Q4_0 = 2,
    EVB_GGUF_Q4_1 = 3,
    EVB_GGUF_Q5_0 = 6,
    EVB_GGUF_Q5_1 = 7,
    EVB_GGUF_Q8_0 = 8,
    EVB_GGUF_Q2_K = 10,
    EVB_GGUF_Q3_K = 11,
    EVB_GGUF_Q4_K = 12,
    EVB_GGUF_Q5_K = 13,
    EVB_GGUF_Q6_K = 14,
    EVB_GGUF_BF16 = 30
} evb_gguf_type;

/* One row of the type table: "Q4_K", 12, 256 elements per block, 144 bytes per block. */
typedef struct evb_gguf_type_info {
    const char *name;   /* upper case, as llama.cpp's file-type names spell it ("Q4_K", "BF16") */
    int         type;   /* evb_gguf_type */
    int         block;  /* elements per block (1 for F32, F16, BF16) */
    int         bytes;  /* bytes per block, scales and mins included */
} evb_gguf_type_info;

/* The table row of a type id; NULL for a type not in the table. */
const evb_gguf_type_info *evb_gguf_type_get(int type);
/* The table row of a name, case-insensitive ("q4_k"); NULL if unknown. */
const evb_gguf_type_info *evb_gguf_type_find(const char *name);
/* The block types' names for messages: "Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K". */
const char *evb_gguf_type_names(void);
/* Bits per weight, 8 * bytes / block (Q4_K: 4.5); 0 for an unknown type. */
double evb_gguf_bpw(int type);
/* 1 if a row of cols elements holds a whole number (>= 1) of blocks of the type, else 0. */
int evb_gguf_row_ok(int type, int64_t cols);
/* Bytes of one row of cols elements; 0 if the type is unknown or cols is not a whole number of blocks. */
size_t evb_gguf_row_bytes(int type, int64_t cols);

/* llama.cpp's reference rounding, bit for bit: quantize_row_*_ref, which is what ggml_quantize_chunk and
 * llama_model_quantize do without an importance matrix. W [rows, cols] in, dst [rows * row_bytes] out.
 * F32 is copied, F16 rounded to nearest even, BF16 as ggml_fp32_to_bf16 (NaNs kept, made quiet). The
 * block types refuse non-finite weights (llama.cpp's rounding gives arbitrary codes for them). */
int evb_gguf_quantize(int type, const float *W, int rows, int cols, void *dst);
/* ggml's to_float (dequantize_row_*), bit for bit: src [rows * row_bytes] in, W [rows, cols] out. */
int evb_gguf_dequantize(int type, const void *src, int rows, int cols, float *W);

/* GPTQ into the type's grid. The OBS error-correcting updates of evb_quant_gptq, column by column (dead
 * inputs zeroed, damp * mean(diag H) added, the upper Cholesky factor of H^-1 computed in double, lazy
 * blocks of blocksize columns, no act-order): each block of the type (the 32 or 256 columns of one row)
 * takes its parameters (scales, mins, sub-block scales) from llama.cpp's reference rounding of the block's
 * weights as they stand, with every update of the earlier columns, when its first column comes up. Every
 * column of the block is then rounded to the nearest point of that fixed grid (per element s * q + o with
 * q in [0, maxq]) and its error spread over the columns still to come. W becomes the dequantized result
 * (equal bit for bit to evb_gguf_dequantize of dst); dst (may be NULL) gets the packed blocks: the codes
 * GPTQ chose under the parameters fixed at block start. Block types only: F32, F16, BF16 are refused. */
int evb_gguf_gptq(int type, float *W, int rows, int cols, const evb_layer_stats *st, double damp,
                  int blocksize, void *dst);

#ifdef __cplusplus
}
#endif
#endif
