/* evb_compress.h -- layer compressors: pruning (magnitude, Wanda, SparseGPT; unstructured or N:M) and
 * quantization (round-to-nearest, GPTQ), each applied to one linear layer's weight W [rows, cols] in
 * nn.Linear layout (rows = outputs, cols = inputs) given statistics of the layer's calibration inputs.
 *
 * Every compressor works in place on a float32 copy of the weight, is single-threaded (levels of a
 * database are built in parallel, one per thread), and has a naive reference in the same file that a test
 * compares it against (declared in compressors/naive.h, not installed). References for the numerics:
 * shared/reference/baselines.md §3. */
#ifndef EVB_COMPRESS_H
#define EVB_COMPRESS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Statistics of a linear layer's inputs X [n_tokens, cols] over the calibration set. */
typedef struct evb_layer_stats {
    int           cols;      /* input features */
    size_t        n_tokens;  /* rows of X accumulated */
    const double *gram;      /* [cols, cols] X^T X, summed in double */
} evb_layer_stats;

/* Sparsity pattern: n_keep == 0 means unstructured, exactly floor(sparsity * n) weights removed in each
 * comparison group of n weights (magnitude: the layer; Wanda: an output row; SparseGPT: a block of 128
 * columns); otherwise N:M, n_keep of every m consecutive inputs of a row kept (2:4, 4:8), sparsity
 * ignored. */
typedef struct evb_sparsity {
    double  sparsity;
    int     n_keep, m;
    int64_t n_remove;  /* > 0: remove exactly this many weights of the layer, spread over the comparison
                          groups in proportion to their size (sparsity ignored) */
} evb_sparsity;

/* Magnitude: remove the smallest |W| over the whole layer (unstructured) or per group of m (N:M). */
int evb_prune_magnitude(float *W, int rows, int cols, evb_sparsity sp);
/* Wanda: score |W_ij| * ||X_j||_2, remove the lowest per output row (unstructured) or per group of m. */
int evb_prune_wanda(float *W, int rows, int cols, const evb_layer_stats *st, evb_sparsity sp);
/* SparseGPT (OBS updates, lazy blocks of blocksize columns, dampening damp * mean(diag H)). */
int evb_prune_sparsegpt(float *W, int rows, int cols, const evb_layer_stats *st, evb_sparsity sp,
                        double damp, int blocksize);

/* Quantization grid and its stored form. */
typedef struct evb_quant_params {
    int    bits;        /* 2..8 */
    int    group_size;  /* inputs per scale; 0 = one scale per output row (per-channel) */
    int    sym;         /* 1 symmetric, 0 asymmetric (zero point) */
    int    act_order;   /* GPTQ only: quantize columns in order of decreasing diag(H) */
    double damp;        /* GPTQ dampening, fraction of mean(diag H) (0.01) */
    int    blocksize;   /* GPTQ lazy-batch block (128) */
} evb_quant_params;

/* What a quantizer writes besides the dequantized weight: codes [rows, cols] (one byte each, the value
 * in [0, 2^bits)), and per (row, group) the scale and zero point, so that W_hat[r][c] =
 * scale[r][g(c)] * (code[r][c] - zero[r][g(c)]); g(c) = group_of[c]. Any pointer may be NULL. */
typedef struct evb_quant_out {
    uint8_t *codes;     /* [rows, cols] */
    float   *scale;     /* [rows, n_groups] */
    float   *zero;      /* [rows, n_groups] */
    int32_t *group_of;  /* [cols] group index of each input column (act_order permutes them) */
} evb_quant_out;

int evb_quant_n_groups(int cols, const evb_quant_params *q);
int evb_quant_rtn(float *W, int rows, int cols, const evb_quant_params *q, evb_quant_out *out);
int evb_quant_gptq(float *W, int rows, int cols, const evb_layer_stats *st, const evb_quant_params *q,
                   evb_quant_out *out);

/* Relative reconstruction error ||W X^T - W_hat X^T||^2 / ||W X^T||^2 = tr(D G D^T) / tr(W G W^T) with
 * D = W - W_hat and G = X^T X. */
double evb_recon_error(const float *W, const float *W_hat, int rows, int cols, const evb_layer_stats *st);
/* Its denominator tr(W G W^T), the same for every level of one weight, and the error with that denominator
 * given (as evb_recon_weight returned it): a database build computes the denominator once per unit. Both
 * cost 2 rows cols^2 flops (dgemm); NAN on bad arguments or out of memory. */
double evb_recon_weight(const float *W, int rows, int cols, const evb_layer_stats *st);
double evb_recon_error_den(const float *W, const float *W_hat, int rows, int cols, const evb_layer_stats *st, double den);

#ifdef __cplusplus
}
#endif
#endif
