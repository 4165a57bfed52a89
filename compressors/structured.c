/* structured.c -- structured removal of whole input groups of one linear layer W [rows, cols]: the columns
 * of o_proj that read one attention head (or one KV group of grouped-query attention), the columns of
 * down_proj that read one MLP channel. A group is `group` contiguous columns; there are cols / group.
 *
 * FLAP (An et al. 2024): group score = sum over its columns j of var_j ||W[:, j]||^2, var_j the sample
 * variance of input j, from the statistics as (G_jj - s_j^2 / n) / (n - 1) with s = st->sum and n =
 * st->n_tokens (clamped at 0 against rounding); removal in ascending score, ties to the lower index; the
 * removed inputs' mean contribution W[:, removed] mean[removed] goes into the output bias.
 *
 * OBS (ZipLM; Kurtic et al. 2023), in double, H = G + damp * mean(diag G) I (G = X^T X; the scale of H does
 * not matter: the order and the updates are invariant under H -> c H). With Hinv = H^-1 over the remaining
 * columns, removing group g with the optimal update of the rest costs err_g = sum_r w_{r,g} B^-1 w_{r,g}^T,
 * B = Hinv_gg (group x group), and updates W -= W_{:,g} B^-1 Hinv_{g,:}, Hinv -= Hinv_{:,g} B^-1 Hinv_{g,:}.
 * With B = L L^T and V = Hinv_{:,g} L^-T [cols, group] both updates are W -= (W_{:,g} L^-T) V^T and Hinv -=
 * V V^T, and err_g = ||W_{:,g} L^-T||^2. Each step removes the remaining group of least err (ties to the
 * lower index). Hinv is inverted once (GSL Cholesky, through OpenBLAS) and kept lazily as Hb - Vacc Vacc^T:
 * the rows of Hinv a step needs are Hb's minus a thin product, the diagonal blocks B of every remaining group
 * are downdated eagerly (cols * group^2), and Hb absorbs the accumulated V (up to 256 columns) by one dsyrk.
 * The weight is updated eagerly (the snapshots need it after every step): for group 1 in one pass over its
 * rows that also sums the next step's err, for larger groups by dtrsm and dgemm. A step costs
 * O(rows cols group) plus the amortised O(cols^2 group) of the dsyrk: a 2048 x 8192 down_proj losing 4096
 * channels took about 75 s of CPU time on one core (100 s with a snapshot after every step), most of it
 * streaming the weight; the 8192 x 8192 inverse needs 512 MB.
 *
 * The naive references: FLAP's from the raw inputs X [n_tokens, cols] by two-pass loops (means, then
 * variances); OBS by recomputing, for every candidate of every step, the least-squares reconstruction on the
 * kept columns S, W_S = W0 H_{:,S} H_SS^-1, and its error tr(D H D^T) (D = W0 - W_hat) from scratch with a
 * hand-written Cholesky: the greedy choice by total error equals the choice by increase, so in exact
 * arithmetic both give the same order and weights. O(groups^2 rows cols^2 + groups cols^3) per call.
 *
 * Single-threaded; one workspace allocation per call, freed before return. GSL's error handler is switched
 * off once (as in quant.c): a failed factorisation comes back as EVB_EBADFUNC. */
#include "evobudget/evb_compress.h"
#include "compressors/naive.h"
#include "evobudget/evb_status.h"

#include <gsl/gsl_blas.h>
#include <gsl/gsl_errno.h>
#include <gsl/gsl_linalg.h>
#include <gsl/gsl_matrix.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <threads.h>

static once_flag gsl_quiet_once = ONCE_FLAG_INIT;
static void gsl_quiet(void) { gsl_set_error_handler_off(); }

/* ---- argument checks ---- */

static int check_layer(const char *who, const float *W, int rows, int cols, int group) {
    if (!W) EVB_ERRORF(EVB_EINVAL, "%s: W is NULL", who);
    if (rows <= 0 || cols <= 0) EVB_ERRORF(EVB_EINVAL, "%s: bad shape %d x %d", who, rows, cols);
    if (group < 1 || cols % group)
        EVB_ERRORF(EVB_EINVAL, "%s: %d inputs do not split into groups of %d", who, cols, group);
    size_t n = (size_t)rows * cols;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(W[i]))
            EVB_ERRORF(EVB_EINVAL, "%s: W[%zu][%zu] is not finite", who, i / cols, i % cols);
    return EVB_SUCCESS;
}

/* need_sum: st->sum must be there (and n_tokens >= min_tokens); full: every Gram entry finite, else only the
 * diagonal (finite and >= 0). */
static int check_stats(const char *who, const evb_layer_stats *st, int cols, size_t min_tokens, int need_sum,
                       int full) {
    if (!st || !st->gram) EVB_ERRORF(EVB_EINVAL, "%s: layer statistics missing", who);
    if (st->cols != cols)
        EVB_ERRORF(EVB_EINVAL, "%s: statistics for %d inputs, layer has %d", who, st->cols, cols);
    if (need_sum && !st->sum)
        EVB_ERRORF(EVB_EINVAL, "%s: the statistics have no column sums (hint: collect them with evb_calib)",
                   who);
    if (st->n_tokens < min_tokens)
        EVB_ERRORF(EVB_EINVAL, "%s: statistics of %zu tokens, at least %zu needed", who, st->n_tokens,
                   min_tokens);
    for (int j = 0; j < cols; j++) {
        double g = st->gram[(size_t)j * cols + j];
        if (!isfinite(g) || g < 0) EVB_ERRORF(EVB_EINVAL, "%s: Gram diagonal [%d] = %g", who, j, g);
        if (need_sum && !isfinite(st->sum[j]))
            EVB_ERRORF(EVB_EINVAL, "%s: column sum [%d] = %g", who, j, st->sum[j]);
    }
    for (size_t i = 0; full && i < (size_t)cols * cols; i++)
        if (!isfinite(st->gram[i])) EVB_ERRORF(EVB_EINVAL, "%s: Gram entry [%zu] = %g", who, i, st->gram[i]);
    return EVB_SUCCESS;
}

/* removed[0..n): distinct groups in [0, ng). */
static int check_removed(const char *who, const int *removed, int n, int ng) {
    if (n < 0 || n > ng) EVB_ERRORF(EVB_EINVAL, "%s: %d groups removed of %d", who, n, ng);
    if (n > 0 && !removed) EVB_ERRORF(EVB_EINVAL, "%s: list of removed groups is NULL", who);
    unsigned char *seen = calloc((size_t)ng, 1);
    if (!seen) EVB_ERRORF(EVB_ENOMEM, "%s: out of memory (%d groups)", who, ng);
    int rc = EVB_SUCCESS;
    for (int i = 0; i < n && !rc; i++) {
        if (removed[i] < 0 || removed[i] >= ng)
            rc = EVB_RAISEF(EVB_EINVAL, "%s: group %d of %d", who, removed[i], ng);
        else if (seen[removed[i]]++)
            rc = EVB_RAISEF(EVB_EINVAL, "%s: group %d removed twice", who, removed[i]);
    }
    free(seen);
    return rc;
}

/* ---- FLAP ---- */

/* ||W[:, j]||^2 for every column (norm2 [cols]). */
static void column_norms(const float *W, int rows, int cols, double *norm2) {
    memset(norm2, 0, sizeof(double) * cols);
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < cols; j++) {
            double w = W[(size_t)r * cols + j];
            norm2[j] += w * w;
        }
}

int evb_struct_flap_scores(const float *W, int rows, int cols, int group, const evb_layer_stats *st,
                           double *score) {
    int rc = check_layer("flap", W, rows, cols, group);
    if (!rc) rc = check_stats("flap", st, cols, 2, 1, 0);
    if (rc) return rc;
    if (!score) EVB_ERRORF(EVB_EINVAL, "flap: score is NULL");
    double *norm2 = malloc(sizeof(double) * cols);
    if (!norm2) EVB_ERRORF(EVB_ENOMEM, "flap: out of memory (%d inputs)", cols);
    column_norms(W, rows, cols, norm2);
    double n = (double)st->n_tokens;
    for (int g = 0; g < cols / group; g++) {
        double s = 0;
        for (int j = g * group; j < (g + 1) * group; j++) {
            double var = (st->gram[(size_t)j * cols + j] - st->sum[j] * st->sum[j] / n) / (n - 1);
            s += (var > 0 ? var : 0.0) * norm2[j];
        }
        score[g] = s;
    }
    free(norm2);
    return EVB_SUCCESS;
}

typedef struct keyed { double s; int i; } keyed;

static int cmp_keyed(const void *pa, const void *pb) {
    const keyed *a = pa, *b = pb;
    if (a->s != b->s) return a->s < b->s ? -1 : 1;
    return (a->i > b->i) - (a->i < b->i);
}

int evb_struct_flap_order(const float *W, int rows, int cols, int group, const evb_layer_stats *st,
                          int *order) {
    if (!order) EVB_ERRORF(EVB_EINVAL, "flap: order is NULL");
    if (group < 1 || cols < 1) EVB_ERRORF(EVB_EINVAL, "flap: %d inputs in groups of %d", cols, group);
    int ng = cols / group;
    double *score = malloc(sizeof(double) * ng + sizeof(keyed) * ng);
    if (!score) EVB_ERRORF(EVB_ENOMEM, "flap: out of memory (%d groups)", ng);
    keyed *k = (keyed *)(score + ng);
    int rc = evb_struct_flap_scores(W, rows, cols, group, st, score);
    if (!rc) {
        for (int g = 0; g < ng; g++) { k[g].s = score[g]; k[g].i = g; }
        qsort(k, (size_t)ng, sizeof *k, cmp_keyed);
        for (int g = 0; g < ng; g++) order[g] = k[g].i;
    }
    free(score);
    return rc;
}

int evb_struct_flap_bias(const float *W, int rows, int cols, int group, const evb_layer_stats *st,
                         const int *removed, int n, float *bias) {
    int rc = check_layer("flap bias", W, rows, cols, group);
    if (!rc) rc = check_stats("flap bias", st, cols, 1, 1, 0);
    if (!rc) rc = check_removed("flap bias", removed, n, cols / group);
    if (rc) return rc;
    if (!bias) EVB_ERRORF(EVB_EINVAL, "flap bias: bias is NULL");
    double inv_n = 1.0 / (double)st->n_tokens;
    for (int r = 0; r < rows; r++) {
        const float *w = W + (size_t)r * cols;
        double b = 0;
        for (int i = 0; i < n; i++)
            for (int j = removed[i] * group; j < (removed[i] + 1) * group; j++)
                b += (double)w[j] * (st->sum[j] * inv_n);
        bias[r] = (float)b;
    }
    return EVB_SUCCESS;
}

/* Checks of the naive FLAP references (raw inputs instead of statistics). */
static int check_raw(const char *who, const float *W, int rows, int cols, int group, const float *X,
                     size_t n_tokens, size_t min_tokens) {
    int rc = check_layer(who, W, rows, cols, group);
    if (rc) return rc;
    if (!X) EVB_ERRORF(EVB_EINVAL, "%s: X is NULL", who);
    if (n_tokens < min_tokens)
        EVB_ERRORF(EVB_EINVAL, "%s: %zu tokens, at least %zu needed", who, n_tokens, min_tokens);
    return EVB_SUCCESS;
}

/* mean[j] = sum over tokens of X[t, j] / n. */
static void raw_means(const float *X, size_t n, int cols, double *mean) {
    for (int j = 0; j < cols; j++) {
        double s = 0;
        for (size_t t = 0; t < n; t++) s += X[t * cols + j];
        mean[j] = s / (double)n;
    }
}

int evb_struct_flap_scores_naive(const float *W, int rows, int cols, int group, const float *X,
                                 size_t n_tokens, double *score) {
    int rc = check_raw("flap (naive)", W, rows, cols, group, X, n_tokens, 2);
    if (rc) return rc;
    if (!score) EVB_ERRORF(EVB_EINVAL, "flap (naive): score is NULL");
    double *mean = malloc(sizeof(double) * cols);
    if (!mean) EVB_ERRORF(EVB_ENOMEM, "flap (naive): out of memory");
    raw_means(X, n_tokens, cols, mean);
    for (int g = 0; g < cols / group; g++) {
        score[g] = 0;
        for (int j = g * group; j < (g + 1) * group; j++) {
            double var = 0, norm2 = 0;
            for (size_t t = 0; t < n_tokens; t++) {
                double d = X[t * cols + j] - mean[j];
                var += d * d;
            }
            var /= (double)(n_tokens - 1);
            for (int r = 0; r < rows; r++) norm2 += (double)W[(size_t)r * cols + j] * W[(size_t)r * cols + j];
            score[g] += var * norm2;
        }
    }
    free(mean);
    return EVB_SUCCESS;
}

int evb_struct_flap_bias_naive(const float *W, int rows, int cols, int group, const float *X,
                               size_t n_tokens, const int *removed, int n, float *bias) {
    int rc = check_raw("flap bias (naive)", W, rows, cols, group, X, n_tokens, 1);
    if (!rc) rc = check_removed("flap bias (naive)", removed, n, cols / group);
    if (rc) return rc;
    if (!bias) EVB_ERRORF(EVB_EINVAL, "flap bias (naive): bias is NULL");
    double *mean = malloc(sizeof(double) * cols);
    if (!mean) EVB_ERRORF(EVB_ENOMEM, "flap bias (naive): out of memory");
    raw_means(X, n_tokens, cols, mean);
    for (int r = 0; r < rows; r++) {
        double b = 0;
        for (int i = 0; i < n; i++)
            for (int c = 0; c < group; c++) {
                int j = removed[i] * group + c;
                b += (double)W[(size_t)r * cols + j] * mean[j];
            }
        bias[r] = (float)b;
    }
    free(mean);
    return EVB_SUCCESS;
}

/* ---- OBS: shared parts ---- */

static int check_obs(const char *who, const float *W, int rows, int cols, int group,
                     const evb_layer_stats *st, double damp, int n_remove, const int *order) {
    int rc = check_layer(who, W, rows, cols, group);
    if (!rc) rc = check_stats(who, st, cols, 0, 0, 1);
    if (rc) return rc;
    if (!(damp >= 0.0 && isfinite(damp))) EVB_ERRORF(EVB_EINVAL, "%s: dampening %g", who, damp);
    if (n_remove < 0 || n_remove > cols / group)
        EVB_ERRORF(EVB_EINVAL, "%s: %d groups to remove of %d", who, n_remove, cols / group);
    if (n_remove > 0 && !order) EVB_ERRORF(EVB_EINVAL, "%s: order is NULL", who);
    return EVB_SUCCESS;
}

/* H [cols, cols] = G + damp * mean(diag G) I. */
static void dampened(const evb_layer_stats *st, double damp, double *H) {
    size_t n = (size_t)st->cols;
    memcpy(H, st->gram, sizeof(double) * n * n);
    double mean = 0;
    for (size_t i = 0; i < n; i++) mean += H[i * n + i];
    mean /= (double)n;
    for (size_t i = 0; i < n; i++) H[i * n + i] += damp * mean;
}

/* W (float) = Wd (double), the current weight of the removal, for a snapshot or the result. */
static void store_weight(float *W, const double *Wd, size_t n) {
    for (size_t i = 0; i < n; i++) W[i] = (float)Wd[i];
}

/* ---- OBS: fast path ---- */

typedef struct obs_work {
    int rows, cols, group, ng, kmax, k;  /* k: rows of Vt not yet folded into Hb */
    double *Wd;                          /* [rows, cols] the weight being updated */
    double *Hb;                          /* [cols, cols] Hinv as of the last fold (full, symmetric) */
    double *Vt;                          /* [kmax, cols] V^T of the steps since (Hinv = Hb - Vt^T Vt) */
    double *Dh;                          /* [ng, group, group] diagonal blocks of the current Hinv */
    double *L;                           /* [ng, group, group] their Cholesky factors (lower triangle);
                                            group 1: 1 / Hinv_jj, 0 once removed */
    double *err;                         /* [ng] cost of removing each group now */
    double *E;                           /* [rows, group] scratch */
    unsigned char *gone;                 /* [ng] removed */
} obs_work;

static int obs_alloc(obs_work *w, int rows, int cols, int group) {
    memset(w, 0, sizeof *w);
    w->rows = rows; w->cols = cols; w->group = group; w->ng = cols / group;
    w->kmax = group * (256 / group > 1 ? 256 / group : 1);
    size_t nd = (size_t)rows * cols + (size_t)cols * cols + (size_t)w->kmax * cols + 2 * (size_t)cols * group
              + (size_t)w->ng + (size_t)rows * group;
    w->Wd = malloc(sizeof(double) * nd + (size_t)w->ng);
    if (!w->Wd) EVB_ERRORF(EVB_ENOMEM, "obs: out of memory (%.1f MB)", (double)nd * 8 / 1e6);
    w->Hb = w->Wd + (size_t)rows * cols;
    w->Vt = w->Hb + (size_t)cols * cols;
    w->Dh = w->Vt + (size_t)w->kmax * cols;
    w->L = w->Dh + (size_t)cols * group;
    w->err = w->L + (size_t)cols * group;
    w->E = w->err + w->ng;
    w->gone = (unsigned char *)(w->E + (size_t)rows * group);
    memset(w->gone, 0, (size_t)w->ng);
    return EVB_SUCCESS;
}

/* Hb = (dampened H)^-1 by GSL's Cholesky, and the diagonal blocks Dh. */
static int obs_invert(obs_work *w, const evb_layer_stats *st, double damp) {
    size_t n = (size_t)w->cols, p = (size_t)w->group;
    dampened(st, damp, w->Hb);
    call_once(&gsl_quiet_once, gsl_quiet);
    gsl_matrix_view hv = gsl_matrix_view_array(w->Hb, n, n);
    int g1 = gsl_linalg_cholesky_decomp1(&hv.matrix);
    int g2 = g1 ? 0 : gsl_linalg_cholesky_invert(&hv.matrix);
    for (size_t i = 0; !g1 && !g2 && i < n; i++)
        if (!(w->Hb[i * n + i] > 0) || !isfinite(w->Hb[i * n + i])) g2 = GSL_ERANGE;
    if (g1 || g2)
        EVB_ERRORF(EVB_EBADFUNC, "obs: the dampened %zu x %zu Hessian is not positive definite (%s; "
                   "hint: raise the dampening)", n, n, gsl_strerror(g1 ? g1 : g2));
    for (int g = 0; g < w->ng; g++)
        for (size_t a = 0; a < p; a++)
            memcpy(w->Dh + (size_t)g * p * p + a * p, w->Hb + (g * p + a) * n + g * p, sizeof(double) * p);
    return EVB_SUCCESS;
}

/* Factors the diagonal block of every remaining group. */
static int obs_factor(obs_work *w, int step) {
    const size_t p = (size_t)w->group;
    for (int g = 0; g < w->ng; g++) {
        const double *A = w->Dh + (size_t)g * p * p;
        double *L = w->L + (size_t)g * p * p;
        int bad;
        if (w->gone[g]) { if (p == 1) L[0] = 0.0; continue; }
        if (p == 1) {
            bad = !(A[0] > 0 && isfinite(A[0]));
            L[0] = 1.0 / A[0];
        } else {
            memcpy(L, A, sizeof(double) * p * p);
            gsl_matrix_view lv = gsl_matrix_view_array(L, p, p);
            bad = gsl_linalg_cholesky_decomp1(&lv.matrix) != 0;
        }
        if (bad)
            EVB_ERRORF(EVB_EBADFUNC, "obs: the inverse Hessian's block of group %d lost positive "
                       "definiteness after %d removals (hint: raise the dampening)", g, step);
    }
    return EVB_SUCCESS;
}

/* Group 1: one pass over the rows of Wd. With g >= 0 it removes column g (w_r -= w_{r,g} / sqrt(Hinv_gg)
 * v^T, v^T = Vt's row k, then w_{r,g} = 0); then err[j] = sum over rows of w_{r,j}^2 / Hinv_jj. */
static void obs_pass_columns(obs_work *w, int g) {
    const int cols = w->cols;
    const double *restrict v = w->Vt + (size_t)w->k * cols, lg = g >= 0 ? sqrt(w->Dh[g]) : 1.0;
    memset(w->err, 0, sizeof(double) * w->ng);
    double *restrict err = w->err;
    const double *restrict inv = w->L;
    for (int r = 0; r < w->rows; r++) {
        double *restrict wr = w->Wd + (size_t)r * cols;
        if (g < 0) {
            for (int j = 0; j < cols; j++) err[j] += wr[j] * wr[j] * inv[j];
            continue;
        }
        double y = wr[g] / lg;
        for (int j = 0; j < cols; j++) {  /* inv[j] = 0 for the removed j, g included */
            double x = wr[j] - y * v[j];
            wr[j] = x;
            err[j] += x * x * inv[j];
        }
        wr[g] = 0.0;
    }
}

/* E = W_{:,h} L_h^-T (dtrsm). */
static void obs_block_solve(obs_work *w, int h) {
    const size_t p = (size_t)w->group;
    for (int r = 0; r < w->rows; r++)
        memcpy(w->E + (size_t)r * p, w->Wd + (size_t)r * w->cols + h * p, sizeof(double) * p);
    gsl_matrix_view e = gsl_matrix_view_array(w->E, (size_t)w->rows, p);
    gsl_matrix_view l = gsl_matrix_view_array(w->L + (size_t)h * p * p, p, p);
    gsl_blas_dtrsm(CblasRight, CblasLower, CblasTrans, CblasNonUnit, 1.0, &l.matrix, &e.matrix);
}

/* Group > 1: with g >= 0 removes group g (W -= (W_{:,g} L_g^-T) Vnew, Vnew = Vt's rows [k, k + group), then
 * W_{:,g} = 0); then err[h] = ||W_{:,h} L_h^-T||^2 for the remaining h. */
static void obs_pass_blocks(obs_work *w, int g) {
    const size_t p = (size_t)w->group, n = (size_t)w->cols;
    if (g >= 0) {
        obs_block_solve(w, g);
        gsl_matrix_view e = gsl_matrix_view_array(w->E, (size_t)w->rows, p);
        gsl_matrix_view vn = gsl_matrix_view_array(w->Vt + (size_t)w->k * n, p, n);
        gsl_matrix_view wd = gsl_matrix_view_array(w->Wd, (size_t)w->rows, n);
        gsl_blas_dgemm(CblasNoTrans, CblasNoTrans, -1.0, &e.matrix, &vn.matrix, 1.0, &wd.matrix);
        for (int r = 0; r < w->rows; r++) memset(w->Wd + (size_t)r * n + g * p, 0, sizeof(double) * p);
    }
    for (int h = 0; h < w->ng; h++) {
        w->err[h] = 0.0;
        if (w->gone[h]) continue;
        obs_block_solve(w, h);
        for (size_t i = 0; i < (size_t)w->rows * p; i++) w->err[h] += w->E[i] * w->E[i];
    }
}

static void obs_pass(obs_work *w, int g) {
    if (w->group == 1) obs_pass_columns(w, g);
    else obs_pass_blocks(w, g);
}

/* A[i][j] = A[j][i] for i > j (A [n, n]), in tiles that stay in cache. */
static void mirror_upper(double *A, size_t n) {
    const size_t T = 64;
    for (size_t i0 = 0; i0 < n; i0 += T)
        for (size_t j0 = 0; j0 <= i0; j0 += T)
            for (size_t i = i0; i < i0 + T && i < n; i++)
                for (size_t j = j0; j < j0 + T && j < i; j++) A[i * n + j] = A[j * n + i];
}

/* Vnew^T = L_g^-1 Hinv_{g,:} into Vt's rows [k, k + group): Hinv_{g,:} = Hb_{g,:} - Vt_{:,g}^T Vt, the
 * columns of the groups removed before zeroed (zero in exact arithmetic: keeps W's removed columns zero). */
static void obs_new_v(obs_work *w, int g) {
    const size_t p = (size_t)w->group, n = (size_t)w->cols;
    double *Vn = w->Vt + (size_t)w->k * n;
    memcpy(Vn, w->Hb + (size_t)g * p * n, sizeof(double) * p * n);
    gsl_matrix_view vn = gsl_matrix_view_array(Vn, p, n);
    if (w->k > 0) {
        gsl_matrix_view vg = gsl_matrix_view_array_with_tda(w->Vt + (size_t)g * p, (size_t)w->k, p, n);
        gsl_matrix_view va = gsl_matrix_view_array(w->Vt, (size_t)w->k, n);
        gsl_blas_dgemm(CblasTrans, CblasNoTrans, -1.0, &vg.matrix, &va.matrix, 1.0, &vn.matrix);
    }
    if (p == 1) {
        double s = 1.0 / sqrt(w->Dh[g]);
        for (size_t j = 0; j < n; j++) Vn[j] *= s;
    } else {
        gsl_matrix_view l = gsl_matrix_view_array(w->L + (size_t)g * p * p, p, p);
        gsl_blas_dtrsm(CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, 1.0, &l.matrix, &vn.matrix);
    }
    for (int h = 0; h < w->ng; h++)
        if (w->gone[h])
            for (size_t t = 0; t < p; t++) memset(Vn + t * n + h * p, 0, sizeof(double) * p);
}

/* Removes group g (step = its 1-based rank): the new V, the diagonal blocks downdated (Dh_h -= V_h V_h^T)
 * and refactored, the weight updated and the next err summed; folds Vt into Hb when it is full. */
static int obs_remove(obs_work *w, int g, int step) {
    const size_t p = (size_t)w->group, n = (size_t)w->cols;
    obs_new_v(w, g);
    const double *Vn = w->Vt + (size_t)w->k * n;
    w->gone[g] = 1;
    for (int h = 0; h < w->ng; h++) {
        if (w->gone[h]) continue;
        if (p == 1) { w->Dh[h] -= Vn[h] * Vn[h]; continue; }
        gsl_matrix_const_view b = gsl_matrix_const_view_array_with_tda(Vn + h * p, p, p, n);
        gsl_matrix_view d = gsl_matrix_view_array(w->Dh + (size_t)h * p * p, p, p);
        gsl_blas_dgemm(CblasTrans, CblasNoTrans, -1.0, &b.matrix, &b.matrix, 1.0, &d.matrix);
    }
    int rc = obs_factor(w, step);
    if (rc) return rc;
    obs_pass(w, g);
    w->k += (int)p;
    if (w->k + (int)p > w->kmax) {  /* fold: Hb -= Vt^T Vt (upper triangle), mirrored */
        gsl_matrix_view va = gsl_matrix_view_array(w->Vt, (size_t)w->k, n);
        gsl_matrix_view hb = gsl_matrix_view_array(w->Hb, n, n);
        gsl_blas_dsyrk(CblasUpper, CblasTrans, -1.0, &va.matrix, 1.0, &hb.matrix);
        mirror_upper(w->Hb, n);
        w->k = 0;
    }
    return EVB_SUCCESS;
}

/* The remaining group of least err, ties to the lower index. */
static int obs_pick(const obs_work *w) {
    int best = -1;
    for (int g = 0; g < w->ng; g++)
        if (!w->gone[g] && (best < 0 || w->err[g] < w->err[best])) best = g;
    return best;
}

int evb_struct_obs(float *W, int rows, int cols, int group, const evb_layer_stats *st, double damp,
                   int n_remove, int *order, evb_struct_snap_fn snap, void *ctx) {
    int rc = check_obs("obs", W, rows, cols, group, st, damp, n_remove, order);
    if (rc || n_remove == 0) return rc;
    obs_work w;
    rc = obs_alloc(&w, rows, cols, group);
    if (rc) return rc;
    size_t nw = (size_t)rows * cols;
    for (size_t i = 0; i < nw; i++) w.Wd[i] = W[i];
    rc = obs_invert(&w, st, damp);
    if (!rc) rc = obs_factor(&w, 0);
    if (!rc) obs_pass(&w, -1);
    for (int k = 0; !rc && k < n_remove; k++) {
        int g = obs_pick(&w);
        order[k] = g;
        rc = obs_remove(&w, g, k + 1);
        if (!rc && snap) {
            store_weight(W, w.Wd, nw);
            rc = snap(ctx, k + 1, W);
            if (rc) { free(w.Wd); return rc; }  /* W holds the state after removal k + 1 */
        }
    }
    if (!rc) store_weight(W, w.Wd, nw);
    free(w.Wd);
    return rc;
}

/* ---- OBS: naive reference ---- */

/* Plain Cholesky of A [m, m] in place (lower); 1 when A is not positive definite. */
static int naive_chol(double *A, int m) {
    for (int j = 0; j < m; j++) {
        for (int k = 0; k < j; k++) A[(size_t)j * m + j] -= A[(size_t)j * m + k] * A[(size_t)j * m + k];
        if (!(A[(size_t)j * m + j] > 0)) return 1;
        A[(size_t)j * m + j] = sqrt(A[(size_t)j * m + j]);
        for (int i = j + 1; i < m; i++) {
            for (int k = 0; k < j; k++) A[(size_t)i * m + j] -= A[(size_t)i * m + k] * A[(size_t)j * m + k];
            A[(size_t)i * m + j] /= A[(size_t)j * m + j];
        }
    }
    return 0;
}

/* Least-squares reconstruction of W0 [rows, cols] on the kept columns keep[0..m): Wls = W0 H_{:,S} H_SS^-1 on
 * S, zero elsewhere, and its error *err = tr(D H D^T), D = W0 - Wls. 1 when H_SS is not positive definite.
 * A [m, m] and b [m] scratch. */
static int naive_ls(const double *W0, const double *H, int rows, int cols, const int *keep, int m, double *A,
                    double *b, double *Wls, double *err) {
    for (int a = 0; a < m; a++)
        for (int c = 0; c < m; c++) A[(size_t)a * m + c] = H[(size_t)keep[a] * cols + keep[c]];
    if (naive_chol(A, m)) return 1;
    memset(Wls, 0, sizeof(double) * rows * cols);
    for (int r = 0; r < rows; r++) {
        const double *w0 = W0 + (size_t)r * cols;
        for (int a = 0; a < m; a++) {  /* b = H_{S,:} w0, then L L^T x = b */
            double s = 0;
            for (int j = 0; j < cols; j++) s += H[(size_t)keep[a] * cols + j] * w0[j];
            for (int c = 0; c < a; c++) s -= A[(size_t)a * m + c] * b[c];
            b[a] = s / A[(size_t)a * m + a];
        }
        for (int a = m - 1; a >= 0; a--) {
            double s = b[a];
            for (int c = a + 1; c < m; c++) s -= A[(size_t)c * m + a] * b[c];
            b[a] = s / A[(size_t)a * m + a];
        }
        for (int a = 0; a < m; a++) Wls[(size_t)r * cols + keep[a]] = b[a];
    }
    double e = 0;
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < cols; i++) {
            double di = W0[(size_t)r * cols + i] - Wls[(size_t)r * cols + i];
            for (int j = 0; j < cols; j++)
                e += di * H[(size_t)i * cols + j] * (W0[(size_t)r * cols + j] - Wls[(size_t)r * cols + j]);
        }
    *err = e;
    return 0;
}

/* keep = the columns of the groups not gone and not `skip`; returns their count. */
static int naive_kept(const unsigned char *gone, int ng, int group, int skip, int *keep) {
    int m = 0;
    for (int g = 0; g < ng; g++)
        if (!gone[g] && g != skip)
            for (int t = 0; t < group; t++) keep[m++] = g * group + t;
    return m;
}

int evb_struct_obs_naive(float *W, int rows, int cols, int group, const evb_layer_stats *st, double damp,
                         int n_remove, int *order, evb_struct_snap_fn snap, void *ctx) {
    int rc = check_obs("obs (naive)", W, rows, cols, group, st, damp, n_remove, order);
    if (rc || n_remove == 0) return rc;
    const int ng = cols / group;
    size_t nw = (size_t)rows * cols, cc = (size_t)cols * cols;
    size_t bytes = (3 * nw + 2 * cc + (size_t)cols) * sizeof(double) + (size_t)cols * sizeof(int)
                 + (size_t)ng;
    double *H = malloc(bytes);
    if (!H) EVB_ERRORF(EVB_ENOMEM, "obs (naive): out of memory (%zu bytes)", bytes);
    double *A = H + cc, *W0 = A + cc, *Wls = W0 + nw, *Wbest = Wls + nw, *b = Wbest + nw;
    int *keep = (int *)(b + cols);
    unsigned char *gone = (unsigned char *)(keep + cols);
    memset(gone, 0, (size_t)ng);
    dampened(st, damp, H);
    memcpy(A, H, sizeof(double) * cc);
    if (naive_chol(A, cols)) {
        free(H);
        EVB_ERRORF(EVB_EBADFUNC, "obs (naive): the dampened %d x %d Hessian is not positive definite",
                   cols, cols);
    }
    for (size_t i = 0; i < nw; i++) W0[i] = W[i];
    for (int k = 0; k < n_remove && !rc; k++) {
        int best = -1;
        double best_err = 0;
        for (int g = 0; g < ng && !rc; g++) {
            double e;
            if (gone[g]) continue;
            if (naive_ls(W0, H, rows, cols, keep, naive_kept(gone, ng, group, g, keep), A, b, Wls, &e))
                rc = EVB_RAISEF(EVB_EBADFUNC, "obs (naive): a kept block of H is not positive definite");
            else if (best < 0 || e < best_err) {
                best = g; best_err = e;
                memcpy(Wbest, Wls, sizeof(double) * nw);
            }
        }
        if (rc) break;
        order[k] = best;
        gone[best] = 1;
        store_weight(W, Wbest, nw);
        if (snap) rc = snap(ctx, k + 1, W);
    }
    free(H);
    return rc;
}
