/* prune.c -- pruning of one linear layer W [rows, cols] (rows = outputs, cols = inputs): magnitude, Wanda,
 * SparseGPT, unstructured or N:M, and the relative reconstruction error. Numerics follow
 * shared/reference/baselines.md §3.1-3.3.
 *
 * What "sparsity" s means for each method (unstructured, sp.n_keep == 0). The count of removed weights is
 * k = floor(s * n) with the product taken in double, as the reference code's int(s * n):
 *   - magnitude: one comparison group, the whole layer (n = rows * cols), score |W_ij|;
 *   - Wanda:     one group per output row (n = cols), score |W_ij| * sqrt(G_jj), G = X^T X;
 *   - SparseGPT: one group per block of `blocksize` input columns over all rows (n = rows * width of the
 *                block, the last block may be narrower), score W_ij^2 / U_jj^2, chosen from the weights as
 *                they stand when the block is reached (already updated by the earlier blocks). The layer's
 *                total is the sum over blocks, within rows of floor(s * rows * cols).
 * Exactly k weights of a group are removed: the k lowest scores, ties broken by position, the lower
 * (row-major) index removed first, which is a stable ascending sort. This differs from two places in the
 * reference code: magnitude there zeroes every |W| <= t (all ties of the threshold), and SparseGPT's
 * `tmp <= sort(tmp)[k]` removes k + 1 (plus ties).
 * With sp.n_remove > 0 the layer loses exactly that many weights (sparsity is ignored), each group its
 * share floor(k b / n) - floor(k a / n) of its element range [a, b): EvoPress's equal-step levels.
 * N:M (sp.n_keep > 0): in every row, every group of m consecutive inputs (aligned to column 0) keeps the
 * n_keep highest scores and loses the m - n_keep lowest, ties as above; cols must be a multiple of m, and for
 * SparseGPT so must blocksize. sp.sparsity is ignored.
 *
 * SparseGPT, in double with H = 2 G / n_tokens (G = X^T X). The reference's H = 2/n X X^T has n = the
 * number of calibration sequences; the scale of H matters in one place only, the H_ii = 1 given to dead
 * inputs (it enters mean(diag H)); everything else is invariant under H -> c H (dampening is relative,
 * scores are ratios, updates are err * U / U_jj). Then:
 *   dead = diag(H) == 0: H_ii = 1, W[:, i] = 0;  H += damp * mean(diag H) * I;
 *   U = upper Cholesky factor of H^-1 (computed as the reversal of the inverse Cholesky factor of the
 *   reversed H, see chol_inverse_upper);
 *   per block [i1, i2): mask (unstructured), then for each column j: N:M mask at j % m == 0, e = w_j / U_jj
 *   for the removed weights, W[:, j:i2] -= e U[j, j:i2], W[:, j] = 0 where removed; then the lazy update of
 *   the later columns W[:, i2:] -= Err U[i1:i2, i2:].
 * Everything runs in double (a double working copy of W); the result is rounded to float once. The rows of
 * a block are independent, so the block is processed row by row (the row stays in cache) and the lazy
 * update skips the zero entries of Err (about 1 - s of them).
 *
 * Each fast path has a naive reference here (the *_naive functions): full sorts instead of partial
 * selection for magnitude and Wanda (the same masks, bit for bit), and for SparseGPT the unblocked OBS loop,
 * which recomputes row i of U from the inverse of the trailing submatrix H[i:, i:] with a hand-written
 * Cholesky (U[i, i:] = inv(H[i:, i:])[0, :] / sqrt(inv(H[i:, i:])[0, 0])) and updates every later column
 * eagerly after each column. Its cost is O(cols^4): small layers only.
 *
 * GSL reports a non-positive-definite matrix through its error handler: the program must have called
 * gsl_set_error_handler_off() (at init), then the failure comes back here as EVB_EBADFUNC.
 * Single-threaded; one workspace allocation per call, freed before return. */
#include "evobudget/evb_compress.h"
#include "compressors/naive.h"
#include "models/blas.h"
#include "evobudget/evb_status.h"

#include <gsl/gsl_errno.h>
#include <gsl/gsl_linalg.h>
#include <gsl/gsl_matrix.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- selection of the k lowest scores ---- */

/* The k-th smallest (0-based) of a[0..n), reordering a (Hoare quickselect, median-of-three pivot). */
static double kth_smallest(double *a, ptrdiff_t n, ptrdiff_t k) {
    ptrdiff_t lo = 0, hi = n - 1;
    while (lo < hi) {
        ptrdiff_t mid = lo + (hi - lo) / 2;
        double x = a[lo], y = a[mid], z = a[hi];
        double pivot = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        ptrdiff_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] < pivot) i++;
            while (a[j] > pivot) j--;
            if (i <= j) {
                double t = a[i]; a[i] = a[j]; a[j] = t;
                i++; j--;
            }
        }
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else return a[k];
    }
    return a[k];
}

/* prune[i] = 1 for the k lowest of score[0..n), ties to the lower index; 0 elsewhere. scratch [n]. */
static void select_lowest(const double *score, size_t n, size_t k, double *scratch, unsigned char *prune) {
    memset(prune, k >= n ? 1 : 0, n);
    if (k == 0 || k >= n) return;
    memcpy(scratch, score, n * sizeof *scratch);
    double t = kth_smallest(scratch, (ptrdiff_t)n, (ptrdiff_t)k - 1);
    size_t taken = 0;
    for (size_t i = 0; i < n; i++)
        if (score[i] < t) { prune[i] = 1; taken++; }
    for (size_t i = 0; i < n && taken < k; i++)
        if (score[i] == t) { prune[i] = 1; taken++; }
}

typedef struct scored { double s; size_t i; } scored;

static int cmp_scored(const void *pa, const void *pb) {
    const scored *a = pa, *b = pb;
    if (a->s != b->s) return a->s < b->s ? -1 : 1;
    return a->i < b->i ? -1 : (a->i > b->i);
}

/* Reference for select_lowest: sort (score, index) ascending, take the first k. scratch [n] scored. */
static void select_lowest_naive(const double *score, size_t n, size_t k, scored *scratch, unsigned char *prune) {
    for (size_t i = 0; i < n; i++) { scratch[i].s = score[i]; scratch[i].i = i; }
    qsort(scratch, n, sizeof *scratch, cmp_scored);
    memset(prune, 0, n);
    for (size_t i = 0; i < k && i < n; i++) prune[scratch[i].i] = 1;
}

/* Selection of k lowest with either path; ws_d holds n doubles, ws_s n scored entries (naive only). */
static void select_k(int naive, const double *score, size_t n, size_t k, double *ws_d, scored *ws_s,
                     unsigned char *prune) {
    if (naive) select_lowest_naive(score, n, k, ws_s, prune);
    else select_lowest(score, n, k, ws_d, prune);
}

/* ---- argument checks ---- */

static int check_common(const float *W, int rows, int cols, evb_sparsity sp) {
    if (!W) EVB_ERRORF(EVB_EINVAL, "prune: W is NULL");
    if (rows <= 0 || cols <= 0) EVB_ERRORF(EVB_EINVAL, "prune: bad shape %d x %d", rows, cols);
    if (sp.n_remove < 0 || (uint64_t)sp.n_remove > (uint64_t)rows * (uint64_t)cols)
        EVB_ERRORF(EVB_EINVAL, "prune: %lld weights to remove from a %d x %d layer", (long long)sp.n_remove, rows, cols);
    if (sp.n_remove > 0 && sp.n_keep)
        EVB_ERRORF(EVB_EINVAL, "prune: an exact count of removed weights and an N:M pattern exclude each other");
    if (sp.n_keep == 0) {
        if (!(sp.sparsity >= 0.0 && sp.sparsity <= 1.0))
            EVB_ERRORF(EVB_EINVAL, "prune: sparsity %g outside [0, 1]", sp.sparsity);
    } else {
        if (sp.n_keep < 0 || sp.m < 1 || sp.n_keep > sp.m)
            EVB_ERRORF(EVB_EINVAL, "prune: bad N:M pattern %d:%d", sp.n_keep, sp.m);
        if (cols % sp.m)
            EVB_ERRORF(EVB_EINVAL, "prune: %d:%d needs cols (%d) divisible by %d", sp.n_keep, sp.m, cols, sp.m);
    }
    size_t n = (size_t)rows * cols;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(W[i]))
            EVB_ERRORF(EVB_EINVAL, "prune: W[%zu][%zu] is not finite", i / cols, i % cols);
    return EVB_SUCCESS;
}

static int check_stats(const evb_layer_stats *st, int cols) {
    if (!st || !st->gram) EVB_ERRORF(EVB_EINVAL, "prune: layer statistics missing");
    if (st->cols != cols) EVB_ERRORF(EVB_EINVAL, "prune: statistics for %d inputs, layer has %d", st->cols, cols);
    for (int j = 0; j < cols; j++) {
        double g = st->gram[(size_t)j * cols + j];
        if (!isfinite(g) || g < 0) EVB_ERRORF(EVB_EINVAL, "prune: Gram diagonal [%d] = %g", j, g);
    }
    return EVB_SUCCESS;
}

static size_t count_pruned(double s, size_t n) { return (size_t)(s * (double)n); }

/* Weights to remove from the group covering elements [a, b) of the layer's n: floor(s * (b - a)) for a
 * fraction, and with an exact layer count k = sp.n_remove the share floor(k b / n) - floor(k a / n), so the
 * groups add up to exactly k and differ by at most one weight per unit of width. */
static size_t group_pruned(evb_sparsity sp, size_t a, size_t b, size_t n) {
    if (sp.n_remove <= 0) return count_pruned(sp.sparsity, b - a);
    uint64_t k = (uint64_t)sp.n_remove;
    return (size_t)(k * (uint64_t)b / n - k * (uint64_t)a / n);
}

/* Zeroes W where the groups of `mode` (0 layer, 1 row; N:M when sp.n_keep) select the lowest score. */
static int prune_by_score(float *W, int rows, int cols, const double *score, int per_row, evb_sparsity sp,
                          int naive) {
    size_t n = (size_t)rows * cols;
    size_t group = sp.n_keep ? (size_t)sp.m : per_row ? (size_t)cols : n;
    double *ws_d = malloc(group * (sizeof(double) + sizeof(scored) + 1));
    if (!ws_d) EVB_ERRORF(EVB_ENOMEM, "prune: out of memory (%zu scores)", group);
    scored *ws_s = (scored *)(ws_d + group);
    unsigned char *prune = (unsigned char *)(ws_s + group);
    for (size_t g0 = 0; g0 < n; g0 += group) {
        size_t k = sp.n_keep ? (size_t)(sp.m - sp.n_keep) : group_pruned(sp, g0, g0 + group, n);
        select_k(naive, score + g0, group, k, ws_d, ws_s, prune);
        for (size_t i = 0; i < group; i++)
            if (prune[i]) W[g0 + i] = 0.0f;
    }
    free(ws_d);
    return EVB_SUCCESS;
}

/* ---- magnitude ---- */

static int magnitude(float *W, int rows, int cols, evb_sparsity sp, int naive) {
    int st = check_common(W, rows, cols, sp);
    if (st) return st;
    size_t n = (size_t)rows * cols;
    double *score = malloc(n * sizeof *score);
    if (!score) EVB_ERRORF(EVB_ENOMEM, "prune: out of memory (%d x %d)", rows, cols);
    for (size_t i = 0; i < n; i++) score[i] = fabs((double)W[i]);
    st = prune_by_score(W, rows, cols, score, 0, sp, naive);
    free(score);
    return st;
}

int evb_prune_magnitude(float *W, int rows, int cols, evb_sparsity sp) { return magnitude(W, rows, cols, sp, 0); }
int evb_prune_magnitude_naive(float *W, int rows, int cols, evb_sparsity sp) {
    return magnitude(W, rows, cols, sp, 1);
}

/* ---- Wanda ---- */

static int wanda(float *W, int rows, int cols, const evb_layer_stats *st, evb_sparsity sp, int naive) {
    int rc = check_common(W, rows, cols, sp);
    if (!rc) rc = check_stats(st, cols);
    if (rc) return rc;
    size_t n = (size_t)rows * cols;
    double *score = malloc(n * sizeof *score);
    if (!score) EVB_ERRORF(EVB_ENOMEM, "prune: out of memory (%d x %d)", rows, cols);
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            score[(size_t)r * cols + c] = fabs((double)W[(size_t)r * cols + c]) * sqrt(st->gram[(size_t)c * cols + c]);
    rc = prune_by_score(W, rows, cols, score, 1, sp, naive);
    free(score);
    return rc;
}

int evb_prune_wanda(float *W, int rows, int cols, const evb_layer_stats *st, evb_sparsity sp) {
    return wanda(W, rows, cols, st, sp, 0);
}
int evb_prune_wanda_naive(float *W, int rows, int cols, const evb_layer_stats *st, evb_sparsity sp) {
    return wanda(W, rows, cols, st, sp, 1);
}

/* ---- SparseGPT ---- */

static int check_sparsegpt(const float *W, int rows, int cols, const evb_layer_stats *st, evb_sparsity sp,
                           double damp, int blocksize) {
    int rc = check_common(W, rows, cols, sp);
    if (!rc) rc = check_stats(st, cols);
    if (rc) return rc;
    if (!(damp >= 0.0 && isfinite(damp))) EVB_ERRORF(EVB_EINVAL, "sparsegpt: dampening %g", damp);
    if (st->n_tokens == 0) EVB_ERRORF(EVB_EINVAL, "sparsegpt: statistics of 0 tokens");
    if (blocksize < 1) EVB_ERRORF(EVB_EINVAL, "sparsegpt: blocksize %d", blocksize);
    if (sp.n_keep && blocksize % sp.m)
        EVB_ERRORF(EVB_EINVAL, "sparsegpt: blocksize %d not a multiple of m = %d", blocksize, sp.m);
    return EVB_SUCCESS;
}

/* H = 2 G / n_tokens with dead columns fixed and dampened (H [cols, cols] double); zeroes W's dead columns
 * in Wd. */
static void build_hessian(double *H, double *Wd, int rows, int cols, const double *G, size_t n_tokens,
                          double damp) {
    double scale = 2.0 / (double)n_tokens;
    for (size_t i = 0; i < (size_t)cols * cols; i++) H[i] = scale * G[i];
    double mean = 0;
    for (int i = 0; i < cols; i++) {
        double *hii = &H[(size_t)i * cols + i];
        if (*hii == 0.0) {
            *hii = 1.0;
            for (int r = 0; r < rows; r++) Wd[(size_t)r * cols + i] = 0.0;
        }
        mean += *hii;
    }
    mean /= cols;
    for (int i = 0; i < cols; i++) H[(size_t)i * cols + i] += damp * mean;
}

/* In place: H -> U, the upper Cholesky factor of H^-1 (row-major, upper triangle; the lower one is left
 * as garbage). Without forming H^-1: with P the order reversal, P H P = L L^T (lower L), so
 * H^-1 = (P L^-1 P)^T (P L^-1 P) and U = P L^-1 P is upper with a positive diagonal, i.e. the Cholesky
 * factor. Reversing both indices of a row-major square is reversing the flat array. One Cholesky and one
 * triangular inverse (GSL, Level-3 through BLAS) instead of the reference's three factorisations. */
static void reverse(double *a, size_t n) {
    for (size_t i = 0, j = n - 1; i < j; i++, j--) { double t = a[i]; a[i] = a[j]; a[j] = t; }
}

static int chol_inverse_upper(double *H, int cols) {
    size_t nn = (size_t)cols * cols;
    gsl_matrix_view v = gsl_matrix_view_array(H, (size_t)cols, (size_t)cols);
    reverse(H, nn);
    int g = gsl_linalg_cholesky_decomp1(&v.matrix);
    if (g) EVB_ERRORF(EVB_EBADFUNC, "sparsegpt: Hessian not positive definite after dampening (%s)", gsl_strerror(g));
    g = gsl_linalg_tri_invert(CblasLower, CblasNonUnit, &v.matrix);
    if (g) EVB_ERRORF(EVB_EBADFUNC, "sparsegpt: triangular inverse failed (%s)", gsl_strerror(g));
    reverse(H, nn);
    return EVB_SUCCESS;
}

/* N:M mask of row w[0..m) at the start of a group: prune[j] = 1 for the m - n_keep lowest w_j^2 / d_j^2. */
static void nm_group(int naive, const double *w, const double *d, int m, int n_prune, double *score,
                     double *ws_d, scored *ws_s, unsigned char *prune) {
    for (int j = 0; j < m; j++) score[j] = w[j] * w[j] / (d[j] * d[j]);
    select_k(naive, score, (size_t)m, (size_t)n_prune, ws_d, ws_s, prune);
}

int evb_prune_sparsegpt(float *W, int rows, int cols, const evb_layer_stats *st, evb_sparsity sp,
                        double damp, int blocksize) {
    int rc = check_sparsegpt(W, rows, cols, st, sp, damp, blocksize);
    if (rc) return rc;
    const int B = blocksize < cols ? blocksize : cols;
    const int m = sp.n_keep ? sp.m : 1, n_prune = sp.n_keep ? sp.m - sp.n_keep : 0;
    size_t nrc = (size_t)rows * cols, nrb = (size_t)rows * B, cc = (size_t)cols * cols;
    size_t bytes = (cc + nrc + nrb * 3 + (size_t)cols * 3) * sizeof(double) + nrb + (size_t)m;
    double *U = malloc(bytes);
    if (!U) EVB_ERRORF(EVB_ENOMEM, "sparsegpt: out of memory (%zu bytes)", bytes);
    double *Wd = U + cc, *Err = Wd + nrc, *score = Err + nrb, *ws_d = score + nrb, *diag = ws_d + nrb;
    unsigned char *mask = (unsigned char *)(diag + (size_t)cols * 3);
    for (size_t i = 0; i < nrc; i++) Wd[i] = W[i];
    build_hessian(U, Wd, rows, cols, st->gram, st->n_tokens, damp);
    rc = chol_inverse_upper(U, cols);
    if (rc) { free(U); return rc; }
    for (int i = 0; i < cols; i++) diag[i] = U[(size_t)i * cols + i];

    for (int i1 = 0; i1 < cols; i1 += B) {
        const int i2 = i1 + B < cols ? i1 + B : cols, bw = i2 - i1;
        if (!sp.n_keep) {
            for (int r = 0; r < rows; r++)
                for (int j = 0; j < bw; j++) {
                    double w = Wd[(size_t)r * cols + i1 + j], d = diag[i1 + j];
                    score[(size_t)r * bw + j] = w * w / (d * d);
                }
            select_lowest(score, (size_t)rows * bw, group_pruned(sp, (size_t)rows * i1, (size_t)rows * i2, nrc), ws_d, mask);
        }
        for (int r = 0; r < rows; r++) {
            double *w = Wd + (size_t)r * cols + i1, *err = Err + (size_t)r * bw;
            unsigned char *mk = sp.n_keep ? mask : mask + (size_t)r * bw;
            for (int j = 0; j < bw; j++) {
                if (sp.n_keep && j % m == 0)
                    nm_group(0, w + j, diag + i1 + j, m, n_prune, score, ws_d, NULL, mask + j);
                if (!mk[j]) { err[j] = 0.0; continue; }
                const double *u = U + (size_t)(i1 + j) * cols + i1;
                double e = w[j] / u[j];
                for (int t = j + 1; t < bw; t++) w[t] -= e * u[t];
                w[j] = 0.0;
                err[j] = e;
            }
        }
        /* lazy update of the later columns, in tiles of columns that keep U's slice in cache */
        for (int c0 = i2; c0 < cols; c0 += 256) {
            const int c1 = c0 + 256 < cols ? c0 + 256 : cols;
            for (int r = 0; r < rows; r++) {
                double *w = Wd + (size_t)r * cols;
                const double *err = Err + (size_t)r * bw;
                for (int j = 0; j < bw; j++) {
                    double e = err[j];
                    if (e == 0.0) continue;
                    const double *u = U + (size_t)(i1 + j) * cols;
                    for (int t = c0; t < c1; t++) w[t] -= e * u[t];
                }
            }
        }
    }
    for (size_t i = 0; i < nrc; i++) W[i] = (float)Wd[i];
    free(U);
    return EVB_SUCCESS;
}

/* Row 0 of inv(A) for A [p, p] symmetric positive definite (hand-written Cholesky A = L L^T in place, then
 * L y = e_0, L^T x = y). Returns 0, or 1 when A is not positive definite. */
static int inverse_row0(double *A, int p, double *x) {
    for (int j = 0; j < p; j++) {
        double s = A[(size_t)j * p + j];
        for (int k = 0; k < j; k++) s -= A[(size_t)j * p + k] * A[(size_t)j * p + k];
        if (!(s > 0)) return 1;
        double ljj = sqrt(s);
        A[(size_t)j * p + j] = ljj;
        for (int i = j + 1; i < p; i++) {
            double t = A[(size_t)i * p + j];
            for (int k = 0; k < j; k++) t -= A[(size_t)i * p + k] * A[(size_t)j * p + k];
            A[(size_t)i * p + j] = t / ljj;
        }
    }
    for (int i = 0; i < p; i++) {
        double t = i == 0 ? 1.0 : 0.0;
        for (int k = 0; k < i; k++) t -= A[(size_t)i * p + k] * x[k];
        x[i] = t / A[(size_t)i * p + i];
    }
    for (int i = p - 1; i >= 0; i--) {
        double t = x[i];
        for (int k = i + 1; k < p; k++) t -= A[(size_t)k * p + i] * x[k];
        x[i] = t / A[(size_t)i * p + i];
    }
    return 0;
}

int evb_prune_sparsegpt_naive(float *W, int rows, int cols, const evb_layer_stats *st, evb_sparsity sp,
                              double damp, int blocksize) {
    int rc = check_sparsegpt(W, rows, cols, st, sp, damp, blocksize);
    if (rc) return rc;
    const int B = blocksize < cols ? blocksize : cols;
    const int m = sp.n_keep ? sp.m : 1, n_prune = sp.n_keep ? sp.m - sp.n_keep : 0;
    size_t nrc = (size_t)rows * cols, nrb = (size_t)rows * B, cc = (size_t)cols * cols;
    size_t bytes = (3 * cc + nrc + nrb * 2 + (size_t)cols) * sizeof(double) + nrb * sizeof(scored) + nrb;
    double *H = malloc(bytes);
    if (!H) EVB_ERRORF(EVB_ENOMEM, "sparsegpt: out of memory (%zu bytes)", bytes);
    double *U = H + cc, *A = U + cc, *Wd = A + cc, *score = Wd + nrc, *ws_d = score + nrb, *x = ws_d + nrb;
    scored *ws_s = (scored *)(x + cols);
    unsigned char *mask = (unsigned char *)(ws_s + nrb);
    for (size_t i = 0; i < nrc; i++) Wd[i] = W[i];
    build_hessian(H, Wd, rows, cols, st->gram, st->n_tokens, damp);
    memset(U, 0, cc * sizeof *U);
    for (int i = 0; i < cols; i++) {
        int p = cols - i;
        for (int a = 0; a < p; a++)
            memcpy(A + (size_t)a * p, H + (size_t)(i + a) * cols + i, (size_t)p * sizeof *A);
        if (inverse_row0(A, p, x)) {
            free(H);
            EVB_ERRORF(EVB_EBADFUNC, "sparsegpt: Hessian not positive definite after dampening (trailing %d)", p);
        }
        double s = sqrt(x[0]);
        for (int a = 0; a < p; a++) U[(size_t)i * cols + i + a] = x[a] / s;
    }
    for (int i = 0; i < cols; i++) {
        const int i1 = i - i % B, bw = (i1 + B < cols ? i1 + B : cols) - i1, j = i - i1;
        if (!sp.n_keep && j == 0) {
            for (int r = 0; r < rows; r++)
                for (int t = 0; t < bw; t++) {
                    double w = Wd[(size_t)r * cols + i1 + t], d = U[(size_t)(i1 + t) * cols + i1 + t];
                    score[(size_t)r * bw + t] = w * w / (d * d);
                }
            select_lowest_naive(score, (size_t)rows * bw, group_pruned(sp, (size_t)rows * i1, (size_t)rows * (i1 + bw), nrc), ws_s, mask);
        }
        if (sp.n_keep && i % m == 0)
            for (int r = 0; r < rows; r++) {
                for (int t = 0; t < m; t++) {
                    double w = Wd[(size_t)r * cols + i + t], d = U[(size_t)(i + t) * cols + i + t];
                    score[t] = w * w / (d * d);
                }
                select_lowest_naive(score, (size_t)m, (size_t)n_prune, ws_s, mask + (size_t)r * m);
            }
        const double *u = U + (size_t)i * cols;
        for (int r = 0; r < rows; r++) {
            int pruned = sp.n_keep ? mask[(size_t)r * m + i % m] : mask[(size_t)r * bw + j];
            if (!pruned) continue;
            double *w = Wd + (size_t)r * cols;
            double e = w[i] / u[i];
            for (int t = i + 1; t < cols; t++) w[t] -= e * u[t];
            w[i] = 0.0;
        }
    }
    for (size_t i = 0; i < nrc; i++) W[i] = (float)Wd[i];
    free(H);
    return EVB_SUCCESS;
}

/* ---- reconstruction error ---- */

static int recon_args_ok(const float *W, int rows, int cols, const evb_layer_stats *st) {
    return W && rows > 0 && cols > 0 && st && st->gram && st->cols == cols;
}

double evb_recon_weight(const float *W, int rows, int cols, const evb_layer_stats *st) {
    return recon_args_ok(W, rows, cols, st) ? evb_quad_trace(W, NULL, rows, cols, st->gram) : NAN;
}

double evb_recon_error_den(const float *W, const float *W_hat, int rows, int cols, const evb_layer_stats *st, double den) {
    if (!recon_args_ok(W, rows, cols, st) || !W_hat || isnan(den)) return NAN;
    double num = evb_quad_trace(W, W_hat, rows, cols, st->gram);
    if (isnan(num)) return NAN;
    if (den == 0) return num == 0 ? 0.0 : INFINITY;
    return num / den;
}

double evb_recon_error(const float *W, const float *W_hat, int rows, int cols, const evb_layer_stats *st) {
    return evb_recon_error_den(W, W_hat, rows, cols, st, evb_recon_weight(W, rows, cols, st));
}
