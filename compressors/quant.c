/* quant.c -- round-to-nearest and GPTQ quantization of one linear layer (see evb_compress.h).
 *
 * Both follow IST-DASLab/gptq (shared/reference/baselines.md §3.4-3.5): the Quantizer of quant.py (per-row
 * min/max grid that always contains 0, sym or asym zero point, maxq = 2^bits - 1, all in float32 with
 * round-half-to-even) and gptq.py::fasterquant:
 *   - dead inputs (diag H == 0): H_ii = 1 and W[:, i] = 0;
 *   - act_order: columns in order of decreasing diag(H) (ties by index), groups formed in that order;
 *   - H += damp * mean(diag H) * I; U = upper Cholesky factor of H^-1 (in double, see gptq_prepare);
 *   - blocks of blocksize columns: each column is quantized, its error e = (w - q) / U_cc is spread over the
 *     rest of the block at once and over the later columns lazily when the block ends.
 * A group's grid is found when its first column comes up, from the weights as fasterquant sees them then:
 * updated by every earlier block, but not by the earlier columns of the same block (fasterquant reads the
 * group from W while the block's running copy W1 holds those updates). With groups that start inside a
 * block the result thus depends on blocksize, exactly as in fasterquant. Per-channel grids are found once,
 * on the weight as given (before dead inputs are zeroed).
 *
 * The Gram matrix X^T X is used as H: fasterquant's 2/n factor cancels (U scales by its inverse square
 * root, e by its square root) and the dampening is relative.
 *
 * Naive references: evb_quant_rtn_naive (each element's grid recomputed from its row slice) and
 * evb_quant_gptq_naive (no blocks: after each column the OBS update of every later column). The blocked
 * lazy update applies the same rank-1 updates in the same order, so the two agree to the last bit. */
#include "evobudget/evb_compress.h"
#include "compressors/naive.h"
#include "compressors/gptq_impl.h"
#include "evobudget/evb_status.h"

#include <gsl/gsl_errno.h>
#include <gsl/gsl_linalg.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <threads.h>

/* Columns of the lazy update handled per pass, so that the block's rows of U stay in cache. */
enum { LAZY_TILE = 512 };

int evb_quant_n_groups(int cols, const evb_quant_params *q) {
    if (cols < 1 || !q || q->group_size < 0) {
        (void)EVB_RAISEF(EVB_EINVAL, "quant: %d columns or group size %d is invalid", cols, q ? q->group_size : 0);
        return 0;
    }
    return q->group_size > 0 ? (cols + q->group_size - 1) / q->group_size : 1;
}

static int check_args(const float *W, int rows, int cols, const evb_quant_params *q) {
    if (!W || !q) EVB_ERRORF(EVB_EINVAL, "quant: NULL weight or parameters");
    if (rows < 1 || cols < 1) EVB_ERRORF(EVB_EINVAL, "quant: bad shape %d x %d", rows, cols);
    if (q->bits < 2 || q->bits > 8) EVB_ERRORF(EVB_EINVAL, "quant: bits %d outside 2..8", q->bits);
    if (q->group_size < 0) EVB_ERRORF(EVB_EINVAL, "quant: negative group size %d", q->group_size);
    size_t n = (size_t)rows * (size_t)cols;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(W[i]))
            EVB_ERRORF(EVB_EINVAL, "quant: weight [%zu, %zu] is not finite", i / (size_t)cols, i % (size_t)cols);
    return EVB_SUCCESS;
}

/* Quantizer.find_params over one row slice x[0, n). */
static void find_params(const float *x, int n, int maxq, int sym, float *scale, float *zero) {
    float xmin = 0.0f, xmax = 0.0f;
    for (int i = 0; i < n; i++) {
        xmin = x[i] < xmin ? x[i] : xmin;
        xmax = x[i] > xmax ? x[i] : xmax;
    }
    if (sym) {
        xmax = fabsf(xmin) > xmax ? fabsf(xmin) : xmax;
        if (xmin < 0.0f) xmin = -xmax;
    }
    if (xmin == 0.0f && xmax == 0.0f) { xmin = -1.0f; xmax = 1.0f; }
    *scale = (xmax - xmin) / (float)maxq;
    *zero = sym ? (float)(maxq + 1) / 2.0f : rintf(-xmin / *scale);
}

/* clamp(round(x / scale) + zero, 0, maxq), round half to even as torch.round. */
static inline float quant_code(float x, float scale, float zero, float maxq) {
    float q = rintf(x / scale) + zero;
    return q < 0.0f ? 0.0f : (q > maxq ? maxq : q);
}

static void store_grid(evb_quant_out *out, int r, int g, int ng, float scale, float zero) {
    if (!out) return;
    if (out->scale) out->scale[(size_t)r * ng + g] = scale;
    if (out->zero) out->zero[(size_t)r * ng + g] = zero;
}

static void store_groups(evb_quant_out *out, int cols, int gs, const int *perm) {
    if (!out || !out->group_of) return;
    for (int j = 0; j < cols; j++) out->group_of[perm ? perm[j] : j] = gs > 0 ? j / gs : 0;
}

/* ---- round to nearest ---- */

int evb_quant_rtn(float *W, int rows, int cols, const evb_quant_params *q, evb_quant_out *out) {
    int st = check_args(W, rows, cols, q);
    if (st) return st;
    const int maxq = (1 << q->bits) - 1, gs = q->group_size, ng = evb_quant_n_groups(cols, q);
    const int glen = gs > 0 ? gs : cols;
    for (int r = 0; r < rows; r++) {
        float *w = W + (size_t)r * cols;
        uint8_t *codes = out && out->codes ? out->codes + (size_t)r * cols : NULL;
        for (int g = 0; g < ng; g++) {
            int c0 = g * glen, n = cols - c0 < glen ? cols - c0 : glen;
            float scale, zero;
            find_params(w + c0, n, maxq, q->sym, &scale, &zero);
            store_grid(out, r, g, ng, scale, zero);
            for (int c = c0; c < c0 + n; c++) {
                float code = quant_code(w[c], scale, zero, (float)maxq);
                if (codes) codes[c] = (uint8_t)code;
                w[c] = scale * (code - zero);
            }
        }
    }
    store_groups(out, cols, gs, NULL);
    return EVB_SUCCESS;
}

int evb_quant_rtn_naive(float *W, int rows, int cols, const evb_quant_params *q, evb_quant_out *out) {
    int st = check_args(W, rows, cols, q);
    if (st) return st;
    const int maxq = (1 << q->bits) - 1, gs = q->group_size, ng = evb_quant_n_groups(cols, q);
    float *src = malloc((size_t)rows * cols * sizeof *src);
    if (!src) EVB_ERRORF(EVB_ENOMEM, "quant: no memory for a %d x %d copy", rows, cols);
    memcpy(src, W, (size_t)rows * cols * sizeof *src);
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            int g = gs > 0 ? c / gs : 0, c0 = gs > 0 ? g * gs : 0;
            int c1 = gs > 0 && c0 + gs < cols ? c0 + gs : cols;
            float lo = 0.0f, hi = 0.0f;
            for (int k = c0; k < c1; k++) {
                float x = src[(size_t)r * cols + k];
                if (x < lo) lo = x;
                if (x > hi) hi = x;
            }
            if (q->sym) { hi = fmaxf(fabsf(lo), hi); lo = lo < 0.0f ? -hi : lo; }
            if (lo == 0.0f && hi == 0.0f) { lo = -1.0f; hi = 1.0f; }
            float scale = (hi - lo) / (float)maxq;
            float zero = q->sym ? (float)(maxq + 1) / 2.0f : rintf(-lo / scale);
            float code = fminf(fmaxf(rintf(src[(size_t)r * cols + c] / scale) + zero, 0.0f), (float)maxq);
            W[(size_t)r * cols + c] = scale * (code - zero);
            if (out && out->codes) out->codes[(size_t)r * cols + c] = (uint8_t)code;
            if (c == c0) store_grid(out, r, g, ng, scale, zero);
        }
    store_groups(out, cols, gs, NULL);
    free(src);
    return EVB_SUCCESS;
}

/* ---- GPTQ ---- */

/* GSL's default error handler aborts the process; the library returns statuses instead. */
static once_flag gsl_quiet_once = ONCE_FLAG_INIT;
static void gsl_quiet(void) { gsl_set_error_handler_off(); }

int evb_gptq_factor(double *H, size_t n, double damp, float *U, const char *who) {
    double mean = 0.0;
    for (size_t i = 0; i < n; i++) mean += H[i * n + i];
    mean /= (double)n;
    for (size_t i = 0; i < n; i++) H[i * n + i] += damp * mean;

    /* U, the upper Cholesky factor of H^-1, without forming H^-1: with J the reversal, J H J = M M^T (M
     * lower) gives H = R R^T for the upper R = J M J, so H^-1 = U^T U with U = R^-1 = J M^-1 J, upper with
     * a positive diagonal: the unique factor that chol(cholesky_inverse(chol(H)), upper) computes. */
    for (size_t i = 0; i < n / 2; i++) /* H <- J H J: reverse rows and columns */
        for (size_t j = 0; j < n; j++) {
            double t = H[i * n + j];
            H[i * n + j] = H[(n - 1 - i) * n + (n - 1 - j)];
            H[(n - 1 - i) * n + (n - 1 - j)] = t;
        }
    if (n % 2)
        for (size_t j = 0; j < n / 2; j++) {
            size_t m = n / 2;
            double t = H[m * n + j];
            H[m * n + j] = H[m * n + (n - 1 - j)];
            H[m * n + (n - 1 - j)] = t;
        }
    call_once(&gsl_quiet_once, gsl_quiet);
    gsl_matrix_view hv = gsl_matrix_view_array(H, n, n);
    int g1 = gsl_linalg_cholesky_decomp1(&hv.matrix);
    int g2 = g1 ? 0 : gsl_linalg_tri_invert(CblasLower, CblasNonUnit, &hv.matrix);
    for (size_t i = 0; !g1 && !g2 && i < n; i++)
        if (!isfinite(H[i * n + i])) g2 = GSL_ERANGE;
    if (g1 || g2)
        EVB_ERRORF(EVB_EINVAL, "%s: %s of the dampened %zu x %zu Hessian failed: %s (hint: raise the dampening)", who,
                   g1 ? "Cholesky factorisation" : "inversion of the Cholesky factor", n, n, gsl_strerror(g1 ? g1 : g2));
    /* H's lower triangle now holds M^-1: U[i][j] = M^-1[n-1-i][n-1-j] for j >= i. */
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < i; j++) U[i * n + j] = 0.0f;
        for (size_t j = i; j < n; j++) U[i * n + j] = (float)H[(n - 1 - i) * n + (n - 1 - j)];
    }
    return EVB_SUCCESS;
}

/* What both GPTQ variants start from: the working weight Wp [rows, cols] (dead inputs zeroed, columns
 * permuted), perm (NULL without act_order: Wp column j is W column perm[j]), U [cols, cols] (upper, float,
 * row-major), and the per-channel grids [rows] when group_size is 0. */
typedef struct gptq_work {
    float *Wp, *U, *scale, *zero;
    int *perm;
} gptq_work;

static void work_free(gptq_work *w) {
    free(w->Wp); free(w->U); free(w->scale); free(w->zero); free(w->perm);
    memset(w, 0, sizeof *w);
}

/* qsort has no context argument: the key is this thread's diag(H), set around the call. */
static _Thread_local const double *tl_diag;
static int by_diag_desc(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    if (tl_diag[i] != tl_diag[j]) return tl_diag[i] > tl_diag[j] ? -1 : 1;
    return (i > j) - (i < j);
}

static int gptq_prepare(const float *W, int rows, int cols, const evb_layer_stats *st,
                        const evb_quant_params *q, gptq_work *w) {
    memset(w, 0, sizeof *w);
    int s = check_args(W, rows, cols, q);
    if (s) return s;
    if (!st || !st->gram) EVB_ERRORF(EVB_EINVAL, "gptq: no calibration statistics");
    if (st->cols != cols) EVB_ERRORF(EVB_EINVAL, "gptq: statistics of %d inputs for a weight of %d", st->cols, cols);
    if (q->blocksize < 1) EVB_ERRORF(EVB_EINVAL, "gptq: block size %d < 1", q->blocksize);
    if (!(q->damp >= 0.0) || !isfinite(q->damp)) EVB_ERRORF(EVB_EINVAL, "gptq: dampening %g is invalid", q->damp);
    const size_t n = (size_t)cols, nw = (size_t)rows * n;
    const int maxq = (1 << q->bits) - 1;
    double *H = malloc(n * n * sizeof *H);
    w->Wp = malloc(nw * sizeof *w->Wp);
    w->U = malloc(n * n * sizeof *w->U);
    w->scale = malloc((size_t)rows * sizeof *w->scale);
    w->zero = malloc((size_t)rows * sizeof *w->zero);
    w->perm = q->act_order ? malloc(n * sizeof *w->perm) : NULL;
    if (!H || !w->Wp || !w->U || !w->scale || !w->zero || (q->act_order && !w->perm)) {
        free(H); work_free(w);
        EVB_ERRORF(EVB_ENOMEM, "gptq: no memory for a layer of %d x %d", rows, cols);
    }
    for (int r = 0; r < rows; r++) /* per-channel grid of the weight as given */
        find_params(W + (size_t)r * n, cols, maxq, q->sym, &w->scale[r], &w->zero[r]);
    memcpy(H, st->gram, n * n * sizeof *H);
    for (size_t i = 0; i < n * n; i++)
        if (!isfinite(H[i])) {
            free(H); work_free(w);
            EVB_ERRORF(EVB_EINVAL, "gptq: Gram matrix entry [%zu, %zu] is not finite", i / n, i % n);
        }
    memcpy(w->Wp, W, nw * sizeof *w->Wp);
    for (size_t i = 0; i < n; i++)
        if (H[i * n + i] == 0.0) {
            H[i * n + i] = 1.0;
            for (int r = 0; r < rows; r++) w->Wp[(size_t)r * n + i] = 0.0f;
        }
    if (q->act_order) {
        double *diag = malloc(n * sizeof *diag), *P = malloc(n * n * sizeof *P);
        float *row = malloc(n * sizeof *row);
        if (!diag || !P || !row) {
            free(diag); free(P); free(row); free(H); work_free(w);
            EVB_ERRORF(EVB_ENOMEM, "gptq: no memory for the act-order permutation of %d inputs", cols);
        }
        for (size_t i = 0; i < n; i++) { diag[i] = H[i * n + i]; w->perm[i] = (int)i; }
        tl_diag = diag;
        qsort(w->perm, n, sizeof *w->perm, by_diag_desc);
        tl_diag = NULL;
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < n; j++) P[i * n + j] = H[(size_t)w->perm[i] * n + (size_t)w->perm[j]];
        memcpy(H, P, n * n * sizeof *H);
        for (int r = 0; r < rows; r++) {
            float *wr = w->Wp + (size_t)r * n;
            for (size_t j = 0; j < n; j++) row[j] = wr[w->perm[j]];
            memcpy(wr, row, n * sizeof *row);
        }
        free(diag); free(P); free(row);
    }
    int f = evb_gptq_factor(H, n, q->damp, w->U, "gptq");
    if (f) { free(H); work_free(w); return f; }
    free(H);
    return EVB_SUCCESS;
}

/* Writes the result back: W in the original column order, codes, group_of. Wp holds the dequantized
 * weights, C the codes in permuted order (both [rows, cols]). */
static void gptq_finish(float *W, int rows, int cols, const evb_quant_params *q, const gptq_work *w,
                        const uint8_t *C, evb_quant_out *out) {
    for (int r = 0; r < rows; r++) {
        const float *wp = w->Wp + (size_t)r * cols;
        const uint8_t *cp = C + (size_t)r * cols;
        float *wo = W + (size_t)r * cols;
        uint8_t *co = out && out->codes ? out->codes + (size_t)r * cols : NULL;
        for (int j = 0; j < cols; j++) {
            int c = w->perm ? w->perm[j] : j;
            wo[c] = wp[j];
            if (co) co[c] = cp[j];
        }
    }
    if (q->group_size == 0)
        for (int r = 0; r < rows; r++) store_grid(out, r, 0, 1, w->scale[r], w->zero[r]);
    store_groups(out, cols, q->group_size, w->perm);
}

/* Quantizes working column c of every row: x[r * ld] in, dequantized value out, error / d to err[r * lde],
 * code to C; finds the group's grid first when c starts one (from src, row stride cols). */
static void quant_column(float *x, size_t ld, float *err, size_t lde, uint8_t *C, int rows, int cols, int c,
                         float d, const float *src, const evb_quant_params *q, gptq_work *w, evb_quant_out *out) {
    const int maxq = (1 << q->bits) - 1, gs = q->group_size;
    const int ng = gs > 0 ? (cols + gs - 1) / gs : 1;
    if (gs > 0 && c % gs == 0) {
        int n = cols - c < gs ? cols - c : gs;
        for (int r = 0; r < rows; r++) {
            find_params(src + (size_t)r * cols + c, n, maxq, q->sym, &w->scale[r], &w->zero[r]);
            store_grid(out, r, c / gs, ng, w->scale[r], w->zero[r]);
        }
    }
    for (int r = 0; r < rows; r++) {
        float v = x[r * ld], code = quant_code(v, w->scale[r], w->zero[r], (float)maxq);
        float deq = w->scale[r] * (code - w->zero[r]);
        err[r * lde] = (v - deq) / d;
        x[r * ld] = deq;
        C[(size_t)r * cols + c] = (uint8_t)code;
    }
}

int evb_quant_gptq(float *W, int rows, int cols, const evb_layer_stats *st, const evb_quant_params *q,
                   evb_quant_out *out) {
    gptq_work w;
    int s = gptq_prepare(W, rows, cols, st, q, &w);
    if (s) return s;
    const size_t n = (size_t)cols;
    const int B = q->blocksize < cols ? q->blocksize : cols;
    float *W1 = malloc((size_t)rows * B * sizeof *W1), *E = malloc((size_t)rows * B * sizeof *E);
    uint8_t *C = malloc((size_t)rows * n);
    if (!W1 || !E || !C) {
        free(W1); free(E); free(C); work_free(&w);
        EVB_ERRORF(EVB_ENOMEM, "gptq: no memory for blocks of %d x %d", rows, B);
    }
    for (int i1 = 0; i1 < cols; i1 += B) {
        const int i2 = i1 + B < cols ? i1 + B : cols, cnt = i2 - i1;
        for (int r = 0; r < rows; r++) memcpy(W1 + (size_t)r * B, w.Wp + (size_t)r * n + i1, (size_t)cnt * sizeof *W1);
        for (int i = 0; i < cnt; i++) {
            const int c = i1 + i;
            const float *u = w.U + (size_t)c * n;
            /* group grids come from Wp, which holds this block as it was before the block started */
            quant_column(W1 + i, (size_t)B, E + i, (size_t)B, C, rows, cols, c, u[c], w.Wp, q, &w, out);
            for (int r = 0; r < rows; r++) {
                const float e = E[(size_t)r * B + i];
                float *x = W1 + (size_t)r * B;
                for (int j = i + 1; j < cnt; j++) x[j] -= e * u[i1 + j];
            }
        }
        for (int r = 0; r < rows; r++) memcpy(w.Wp + (size_t)r * n + i1, W1 + (size_t)r * B, (size_t)cnt * sizeof *W1);
        /* lazy update of the later columns, one rank-1 term at a time (the order of the naive loop) */
        for (int t0 = i2; t0 < cols; t0 += LAZY_TILE) {
            const int t1 = t0 + LAZY_TILE < cols ? t0 + LAZY_TILE : cols;
            for (int r = 0; r < rows; r++) {
                float *x = w.Wp + (size_t)r * n;
                const float *e = E + (size_t)r * B;
                for (int k = 0; k < cnt; k++) {
                    const float ek = e[k];
                    const float *u = w.U + (size_t)(i1 + k) * n;
                    for (int j = t0; j < t1; j++) x[j] -= ek * u[j];
                }
            }
        }
    }
    gptq_finish(W, rows, cols, q, &w, C, out);
    free(W1); free(E); free(C); work_free(&w);
    return EVB_SUCCESS;
}

int evb_quant_gptq_naive(float *W, int rows, int cols, const evb_layer_stats *st, const evb_quant_params *q,
                         evb_quant_out *out) {
    gptq_work w;
    int s = gptq_prepare(W, rows, cols, st, q, &w);
    if (s) return s;
    const size_t n = (size_t)cols;
    const int B = q->blocksize;
    float *S = malloc((size_t)rows * n * sizeof *S), *E = malloc((size_t)rows * sizeof *E);
    uint8_t *C = malloc((size_t)rows * n);
    if (!S || !E || !C) {
        free(S); free(E); free(C); work_free(&w);
        EVB_ERRORF(EVB_ENOMEM, "gptq: no memory for a %d x %d snapshot", rows, cols);
    }
    for (int c = 0; c < cols; c++) {
        /* the weights as they stand at the start of c's block are what a group starting at c sees */
        if (c % B == 0) memcpy(S, w.Wp, (size_t)rows * n * sizeof *S);
        const float *u = w.U + (size_t)c * n;
        quant_column(w.Wp + c, n, E, 1, C, rows, cols, c, u[c], S, q, &w, out);
        for (int r = 0; r < rows; r++) {
            float *x = w.Wp + (size_t)r * n;
            for (int j = c + 1; j < cols; j++) x[j] -= E[r] * u[j];
        }
    }
    gptq_finish(W, rows, cols, q, &w, C, out);
    free(S); free(E); free(C); work_free(&w);
    return EVB_SUCCESS;
}
