/* evb_compress.h -- layer compressors: pruning (magnitude, Wanda, SparseGPT; unstructured or N:M),
 * quantization (round-to-nearest, GPTQ) and structured removal of input groups (FLAP, OBS), each applied to
 * one linear layer's weight W [rows, cols] in nn.Linear layout (rows = outputs, cols = inputs) given
 * statistics of the layer's calibration inputs.
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
    const double *sum;       /* [cols] column sums of X (sum over tokens), or NULL when not collected */
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

/* ---- structured removal ---- */

/* Structured removal of whole input groups of W [rows, cols]: cols / group groups of `group` contiguous
 * columns (a head or KV group of o_proj, a channel of down_proj). The caller drops the matching outputs of
 * the layers before (q/k/v rows, gate/up rows). Every function checks its arguments (shape, cols % group,
 * statistics for these cols, finite W) and returns EVB_EINVAL with a message on bad ones. */

/* FLAP's fluctuation score of each group: sum over its columns j of var_j * ||W[:, j]||^2, var_j the sample
 * variance of input j over the calibration tokens (from st->gram's diagonal and st->sum; needs st->sum and
 * st->n_tokens >= 2). score[cols/group]. */
int evb_struct_flap_scores(const float *W, int rows, int cols, int group, const evb_layer_stats *st,
                           double *score);
/* Groups in the order FLAP removes them (ascending score; ties by index): order[cols/group]. */
int evb_struct_flap_order(const float *W, int rows, int cols, int group, const evb_layer_stats *st,
                          int *order);
/* FLAP's bias compensation for removing the groups removed[0..n) (distinct, in [0, cols/group)):
 * bias[r] = sum over their columns j of W[r, j] * mean_j (the removed inputs' mean contribution, to be
 * added to the layer's output; needs st->sum and st->n_tokens >= 1). bias[rows]. */
int evb_struct_flap_bias(const float *W, int rows, int cols, int group, const evb_layer_stats *st,
                         const int *removed, int n, float *bias);

/* OBS structured removal (ZipLM): n_remove groups removed greedily, each step the group whose removal, with
 * the optimal update of the remaining columns, least increases ||W X^T - W_hat X^T||^2 (H = X^T X dampened by
 * damp * mean(diag H)); W is updated in place, removed columns zero. order[n_remove] receives the groups in
 * removal order. snap (may be NULL) is called after each removal k = 1..n_remove with the current W, so that
 * one pass yields every level of a nested sequence; a nonzero return stops the removal and is returned (W
 * then holds the state after removal k). EVB_EBADFUNC when H is not positive definite after dampening; on
 * any error W holds its input or, with snap, the last snapshot. Workspace: about
 * (rows + cols + max(256, group) + 2 group) cols doubles. */
typedef int (*evb_struct_snap_fn)(void *ctx, int k, const float *W);
int evb_struct_obs(float *W, int rows, int cols, int group, const evb_layer_stats *st, double damp,
                   int n_remove, int *order, evb_struct_snap_fn snap, void *ctx);

#ifdef __cplusplus
}
#endif
#endif
