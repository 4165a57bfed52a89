/* test_structured.c -- compressors/structured.c on random layers whose inputs have nonzero means and unequal
 * variances: FLAP's scores and bias against the naive references computed from the raw inputs, FLAP's order;
 * OBS removal against its naive reference (order and weights at several depths), the snapshots of one pass
 * against separate calls, OBS against FLAP-order removal without update, the first OBS step against an
 * enumeration of every single removal's least-squares error; and argument errors. */
#include "testing.h"
#include "evobudget/evobudget.h"
#include "evobudget/evb_compress.h"
#include "compressors/naive.h"
#include "core/rng.h"

#include <stdlib.h>
#include <string.h>

static double uniform(uint64_t *s) { return (double)(evb_splitmix64(s) >> 11) * 0x1p-53 * 2.0 - 1.0; }

/* A layer: W [rows, cols], inputs X [n, cols] with column means and scales that differ and neighbouring
 * columns correlated; G = X^T X and the column sums in double, as evb_calib accumulates them. */
typedef struct layer {
    int rows, cols, group;
    size_t n;
    float *W, *X;
    double *G, *sum;
    evb_layer_stats st;
} layer;

static layer layer_make(int rows, int cols, int group, size_t n, uint64_t seed) {
    layer L = {rows, cols, group, n, malloc(sizeof(float) * rows * cols), malloc(sizeof(float) * n * cols),
               calloc((size_t)cols * cols, sizeof(double)), calloc((size_t)cols, sizeof(double)), {0}};
    uint64_t s = seed;
    for (int i = 0; i < rows * cols; i++) L.W[i] = (float)uniform(&s);
    double *z = malloc(sizeof(double) * cols);
    for (size_t t = 0; t < n; t++) {
        for (int j = 0; j < cols; j++) z[j] = uniform(&s);
        for (int j = 0; j < cols; j++) {
            double mean = 0.3 * (j % 5) - 0.4, scale = 0.2 + 0.3 * (j % 7);
            L.X[t * cols + j] = (float)(mean + scale * (z[j] + 0.6 * z[(j + 1) % cols]));
        }
    }
    free(z);
    for (size_t t = 0; t < n; t++)
        for (int a = 0; a < cols; a++) {
            double xa = L.X[t * cols + a];
            L.sum[a] += xa;
            for (int b = 0; b < cols; b++) L.G[(size_t)a * cols + b] += xa * L.X[t * cols + b];
        }
    L.st = (evb_layer_stats){cols, n, L.G, L.sum};
    return L;
}

static void layer_free(layer *L) { free(L->W); free(L->X); free(L->G); free(L->sum); }

/* max |a - b| / max |b| over n values. */
static double rel_diff(const float *a, const float *b, size_t n) {
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        if (fabs((double)a[i] - b[i]) > d) d = fabs((double)a[i] - b[i]);
        if (fabs((double)b[i]) > m) m = fabs((double)b[i]);
    }
    return m > 0 ? d / m : d;
}

static size_t count_nonzero(const float *a, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += a[i] != 0.0f;
    return c;
}

/* ---- FLAP ---- */

static void test_flap(const layer *L) {
    const int ng = L->cols / L->group;
    double score[32], ref[32];
    int order[32];
    int rc = evb_struct_flap_scores(L->W, L->rows, L->cols, L->group, &L->st, score);
    int rn = evb_struct_flap_scores_naive(L->W, L->rows, L->cols, L->group, L->X, L->n, ref);
    EVB_CHECK(rc == 0 && rn == 0, "flap scores (group %d) run (%s)", L->group, evb_last_error());
    double worst = 0;
    for (int g = 0; g < ng; g++) {
        double d = fabs(score[g] - ref[g]) / fabs(ref[g]);
        if (!(d <= worst)) worst = d;
    }
    EVB_CHECK(worst <= 1e-9, "flap scores of %d groups of %d equal the two-pass ones (max rel diff %.3g)", ng,
              L->group, worst);
    rc = evb_struct_flap_order(L->W, L->rows, L->cols, L->group, &L->st, order);
    int ok = rc == 0, seen[32] = {0};
    for (int i = 0; ok && i < ng; i++) {
        ok = order[i] >= 0 && order[i] < ng && !seen[order[i]]++;
        if (ok && i > 0)
            ok = score[order[i - 1]] < score[order[i]] ||
                 (score[order[i - 1]] == score[order[i]] && order[i - 1] < order[i]);
    }
    EVB_CHECK(ok, "flap order is a permutation in ascending score (first %d, last %d)", order[0],
              order[ng - 1]);
    float bias[16], bref[16];
    int n_rm = ng / 2;
    rc = evb_struct_flap_bias(L->W, L->rows, L->cols, L->group, &L->st, order, n_rm, bias);
    rn = evb_struct_flap_bias_naive(L->W, L->rows, L->cols, L->group, L->X, L->n, order, n_rm, bref);
    EVB_CHECK(rc == 0 && rn == 0, "flap bias runs (%s)", evb_last_error());
    worst = 0;
    for (int r = 0; r < L->rows; r++) {
        double d = fabs((double)bias[r] - bref[r]) / fmax(1e-3, fabs((double)bref[r]));
        if (!(d <= worst)) worst = d;
    }
    EVB_CHECK(worst <= 1e-9, "flap bias of %d removed groups equals W[:, removed] mean(X) (max rel diff "
              "%.3g)", n_rm, worst);
}

/* ---- OBS ---- */

typedef struct snaps { int rows, cols, n; float *W; } snaps;

static int keep_snap(void *ctx, int k, const float *W) {
    snaps *s = ctx;
    if (k != s->n + 1) return EVB_EINVAL;
    memcpy(s->W + (size_t)s->n * s->rows * s->cols, W, sizeof(float) * s->rows * s->cols);
    s->n++;
    return 0;
}

static int fail_snap(void *ctx, int k, const float *W) {
    (void)W;
    return k == *(int *)ctx ? EVB_EBUDGET : 0;
}

/* OBS against the naive reference at several depths, and the snapshots of one pass against separate calls. */
static void test_obs_naive(const layer *L) {
    const int ng = L->cols / L->group;
    size_t nw = (size_t)L->rows * L->cols;
    float *A = malloc(sizeof(float) * nw), *B = malloc(sizeof(float) * nw);
    int oa[32], ob[32];
    int depths[4] = {1, 2, ng / 2, ng - 1};
    for (int d = 0; d < 4; d++) {
        int k = depths[d];
        memcpy(A, L->W, sizeof(float) * nw);
        memcpy(B, L->W, sizeof(float) * nw);
        int rc = evb_struct_obs(A, L->rows, L->cols, L->group, &L->st, 0.01, k, oa, NULL, NULL);
        int rn = evb_struct_obs_naive(B, L->rows, L->cols, L->group, &L->st, 0.01, k, ob, NULL, NULL);
        int same = rc == 0 && rn == 0 && !memcmp(oa, ob, sizeof(int) * k);
        double diff = rel_diff(A, B, nw);
        int zero = 1;
        for (int i = 0; i < k; i++)
            for (int r = 0; r < L->rows; r++)
                for (int t = 0; t < L->group; t++)
                    zero &= A[(size_t)r * L->cols + oa[i] * L->group + t] == 0.0f;
        EVB_CHECK(same && diff <= 1e-6 && zero, "obs group %d, %d of %d removed: order as naive (last %d), W "
                  "within %.3g of naive, removed columns zero (%s)", L->group, k, ng, oa[k - 1], diff,
                  evb_last_error());
    }
    /* one pass with snapshots against separate calls */
    int K = ng - 1;
    snaps s = {L->rows, L->cols, 0, malloc(sizeof(float) * nw * K)};
    memcpy(A, L->W, sizeof(float) * nw);
    int rc = evb_struct_obs(A, L->rows, L->cols, L->group, &L->st, 0.01, K, oa, keep_snap, &s);
    EVB_CHECK(rc == 0 && s.n == K && !memcmp(A, s.W + (size_t)(K - 1) * nw, sizeof(float) * nw),
              "obs pass of %d removals took %d snapshots, the last one the result", K, s.n);
    int ok = 1;
    for (int k = 1; k <= K && ok; k++) {
        memcpy(B, L->W, sizeof(float) * nw);
        ok = evb_struct_obs(B, L->rows, L->cols, L->group, &L->st, 0.01, k, ob, NULL, NULL) == 0 &&
             !memcmp(B, s.W + (size_t)(k - 1) * nw, sizeof(float) * nw) && !memcmp(oa, ob, sizeof(int) * k);
        if (!ok) printf("  snapshot %d differs from a call removing %d\n", k, k);
    }
    EVB_CHECK(ok, "obs group %d: every snapshot k equals a separate call removing k groups", L->group);
    /* the naive reference's snapshots too */
    s.n = 0;
    memcpy(B, L->W, sizeof(float) * nw);
    rc = evb_struct_obs_naive(B, L->rows, L->cols, L->group, &L->st, 0.01, K, ob, keep_snap, &s);
    EVB_CHECK(rc == 0 && s.n == K && rel_diff(s.W + (size_t)(K - 1) * nw, A, nw) <= 1e-6,
              "naive obs: %d snapshots, the last as fast", s.n);
    /* everything removed; a failing snapshot stops the pass with its status, W as after that removal */
    memcpy(A, L->W, sizeof(float) * nw);
    rc = evb_struct_obs(A, L->rows, L->cols, L->group, &L->st, 0.01, ng, oa, NULL, NULL);
    EVB_CHECK(rc == 0 && count_nonzero(A, nw) == 0, "obs removing all %d groups leaves W zero", ng);
    int stop = 2;
    memcpy(A, L->W, sizeof(float) * nw);
    memcpy(B, L->W, sizeof(float) * nw);
    rc = evb_struct_obs(A, L->rows, L->cols, L->group, &L->st, 0.01, K, oa, fail_snap, &stop);
    evb_struct_obs(B, L->rows, L->cols, L->group, &L->st, 0.01, stop, ob, NULL, NULL);
    EVB_CHECK(rc == EVB_EBUDGET && !memcmp(A, B, sizeof(float) * nw),
              "a snapshot's error stops the pass and is returned (%d), W as after removal %d", rc, stop);
    free(s.W); free(A); free(B);
}

/* OBS's reconstruction error is not larger than removing the same number of groups in FLAP's order without
 * an update. */
static void test_obs_vs_flap(const layer *L) {
    const int ng = L->cols / L->group;
    size_t nw = (size_t)L->rows * L->cols;
    float *A = malloc(sizeof(float) * nw), *F = malloc(sizeof(float) * nw);
    int order[32], fo[32];
    evb_struct_flap_order(L->W, L->rows, L->cols, L->group, &L->st, fo);
    int depths[3] = {1, ng / 2, ng - 1};
    for (int d = 0; d < 3; d++) {
        int k = depths[d];
        memcpy(A, L->W, sizeof(float) * nw);
        memcpy(F, L->W, sizeof(float) * nw);
        int rc = evb_struct_obs(A, L->rows, L->cols, L->group, &L->st, 0.01, k, order, NULL, NULL);
        for (int i = 0; i < k; i++)
            for (int r = 0; r < L->rows; r++)
                for (int t = 0; t < L->group; t++) F[(size_t)r * L->cols + fo[i] * L->group + t] = 0.0f;
        double eo = evb_recon_error(L->W, A, L->rows, L->cols, &L->st);
        double ef = evb_recon_error(L->W, F, L->rows, L->cols, &L->st);
        EVB_CHECK(rc == 0 && eo <= ef, "group %d, %d of %d removed: recon error OBS %.5f <= FLAP order "
                  "without update %.5f", L->group, k, ng, eo, ef);
    }
    free(A); free(F);
}

/* ---- brute force on 4 groups of 3 ---- */

/* tr(D H D^T), D = W - Wh (W, Wh [rows, cols]). */
static double quad_err(const float *W, const double *Wh, const double *H, int rows, int cols) {
    double e = 0;
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < cols; i++)
            for (int j = 0; j < cols; j++)
                e += (W[r * cols + i] - Wh[r * cols + i]) * H[i * cols + j]
                   * (W[r * cols + j] - Wh[r * cols + j]);
    return e;
}

/* The least-squares error of keeping the columns with keep[j] = 1: min over W_hat supported there of
 * tr((W - W_hat) H (W - W_hat)^T), by Gauss-Jordan elimination on H_SS [x] = H_S: W^T. cols <= 12. */
static double ls_error(const float *W, const double *H, int rows, int cols, const int *keep) {
    int S[12], m = 0;
    for (int j = 0; j < cols; j++)
        if (keep[j]) S[m++] = j;
    double Wh[16 * 12] = {0};
    for (int r = 0; r < rows; r++) {
        double M[12][13];
        for (int a = 0; a < m; a++) {
            M[a][m] = 0;
            for (int b = 0; b < m; b++) M[a][b] = H[S[a] * cols + S[b]];
            for (int j = 0; j < cols; j++) M[a][m] += H[S[a] * cols + j] * W[r * cols + j];
        }
        for (int c = 0; c < m; c++)
            for (int a = 0; a < m; a++) {
                if (a == c) continue;
                double f = M[a][c] / M[c][c];
                for (int b = c; b <= m; b++) M[a][b] -= f * M[c][b];
            }
        for (int a = 0; a < m; a++) Wh[r * cols + S[a]] = M[a][m] / M[a][a];
    }
    return quad_err(W, Wh, H, rows, cols);
}

static void test_brute_force(void) {
    const int rows = 16, cols = 12, group = 3;
    layer L = layer_make(rows, cols, group, 200, 99);
    double H[144], mean = 0;
    memcpy(H, L.G, sizeof H);
    for (int i = 0; i < cols; i++) mean += H[i * cols + i] / cols;
    for (int i = 0; i < cols; i++) H[i * cols + i] += 0.01 * mean;
    double single[4], pair[4][4];
    int best = 0;
    for (int g = 0; g < 4; g++) {
        int keep[12];
        for (int j = 0; j < cols; j++) keep[j] = j / group != g;
        single[g] = ls_error(L.W, H, rows, cols, keep);
        if (single[g] < single[best]) best = g;
        for (int h = g + 1; h < 4; h++) {
            for (int j = 0; j < cols; j++) keep[j] = j / group != g && j / group != h;
            pair[g][h] = pair[h][g] = ls_error(L.W, H, rows, cols, keep);
        }
    }
    float A[16 * 12];
    double Ad[16 * 12];
    int order[2];
    memcpy(A, L.W, sizeof A);
    int rc = evb_struct_obs(A, rows, cols, group, &L.st, 0.01, 1, order, NULL, NULL);
    for (int i = 0; i < rows * cols; i++) Ad[i] = A[i];
    double e1 = quad_err(L.W, Ad, H, rows, cols);
    EVB_CHECK(rc == 0 && order[0] == best, "first OBS step removes group %d, the least single-removal LS "
              "error (%.6g %.6g %.6g %.6g)", order[0], single[0], single[1], single[2], single[3]);
    EVB_CHECK_REL(e1, single[best], 1e-5, "its error is that least-squares error");
    memcpy(A, L.W, sizeof A);
    rc = evb_struct_obs(A, rows, cols, group, &L.st, 0.01, 2, order, NULL, NULL);
    for (int i = 0; i < rows * cols; i++) Ad[i] = A[i];
    double e2 = quad_err(L.W, Ad, H, rows, cols), emin = 1e300;
    for (int g = 0; g < 4; g++)
        for (int h = g + 1; h < 4; h++) emin = fmin(emin, pair[g][h]);
    EVB_CHECK(rc == 0 && order[0] == best, "two removals: groups %d then %d", order[0], order[1]);
    EVB_CHECK_REL(e2, pair[order[0]][order[1]], 1e-5, "greedy pair's error is its pair's LS error");
    EVB_CHECK(e2 >= emin * (1 - 1e-6), "greedy pair %.6g not below the best of the 6 pairs %.6g", e2, emin);
    layer_free(&L);
}

/* ---- errors ---- */

static void test_errors(const layer *L) {
    size_t nw = (size_t)L->rows * L->cols;
    float *A = malloc(sizeof(float) * nw), bias[16];
    double score[32];
    int order[32], dup[2] = {1, 1};
    memcpy(A, L->W, sizeof(float) * nw);
    const int R = L->rows, C = L->cols;
    evb_layer_stats nosum = {C, L->n, L->G, NULL}, one = {C, 1, L->G, L->sum};
    evb_layer_stats st30 = {30, L->n, L->G, L->sum};
    EVB_CHECK(evb_struct_flap_scores(A, R, 30, 4, &st30, score) == EVB_EINVAL, "30 %% 4: %s",
              evb_last_error());
    EVB_CHECK(evb_struct_flap_order(A, R, 30, 4, &st30, order) == EVB_EINVAL, "order 30 %% 4: %s",
              evb_last_error());
    EVB_CHECK(evb_struct_obs(A, R, 30, 4, &st30, 0.01, 1, order, NULL, NULL) == EVB_EINVAL, "obs 30 %% 4: %s",
              evb_last_error());
    EVB_CHECK(evb_struct_obs_naive(A, R, 30, 4, &st30, 0.01, 1, order, NULL, NULL) == EVB_EINVAL,
              "naive obs 30 %% 4: %s", evb_last_error());
    EVB_CHECK(evb_struct_obs(A, R, C, 4, &L->st, 0.01, C / 4 + 1, order, NULL, NULL) == EVB_EINVAL,
              "n_remove too large: %s", evb_last_error());
    EVB_CHECK(evb_struct_obs(A, R, C, 4, NULL, 0.01, 1, order, NULL, NULL) == EVB_EINVAL, "NULL stats: %s",
              evb_last_error());
    EVB_CHECK(evb_struct_flap_scores(A, R, C, 4, &nosum, score) == EVB_EINVAL, "NULL sum: %s",
              evb_last_error());
    EVB_CHECK(evb_struct_flap_bias(A, R, C, 4, &nosum, order, 0, bias) == EVB_EINVAL, "bias, NULL sum: %s",
              evb_last_error());
    EVB_CHECK(evb_struct_flap_scores(A, R, C, 4, &one, score) == EVB_EINVAL, "1 token: %s", evb_last_error());
    EVB_CHECK(evb_struct_flap_bias(A, R, C, 4, &L->st, dup, 2, bias) == EVB_EINVAL, "group twice: %s",
              evb_last_error());
    EVB_CHECK(evb_struct_obs(A, R, C, 4, &L->st, NAN, 1, order, NULL, NULL) == EVB_EINVAL, "NaN damp: %s",
              evb_last_error());
    EVB_CHECK(!memcmp(A, L->W, sizeof(float) * nw), "W untouched by refused calls");
    A[5] = NAN;
    EVB_CHECK(evb_struct_obs(A, R, C, 4, &L->st, 0.01, 1, order, NULL, NULL) == EVB_EINVAL, "NaN in W: %s",
              evb_last_error());
    EVB_CHECK(evb_struct_flap_scores(A, R, C, 4, &L->st, score) == EVB_EINVAL, "flap, NaN in W: %s",
              evb_last_error());
    memcpy(A, L->W, sizeof(float) * nw);
    double *Gbad = malloc(sizeof(double) * C * C);
    memcpy(Gbad, L->G, sizeof(double) * C * C);
    Gbad[0 * C + 1] = Gbad[1 * C + 0] = 10 * sqrt(L->G[0] * L->G[C + 1]); /* indefinite */
    evb_layer_stats bad = {C, L->n, Gbad, L->sum};
    EVB_CHECK(evb_struct_obs(A, R, C, 4, &bad, 0.0, 1, order, NULL, NULL) == EVB_EBADFUNC, "indefinite H: %s",
              evb_last_error());
    EVB_CHECK(evb_struct_obs_naive(A, R, C, 4, &bad, 0.0, 1, order, NULL, NULL) == EVB_EBADFUNC,
              "indefinite H (naive): %s", evb_last_error());
    Gbad[2] = NAN;
    EVB_CHECK(evb_struct_obs(A, R, C, 4, &bad, 0.01, 1, order, NULL, NULL) == EVB_EINVAL, "NaN in G: %s",
              evb_last_error());
    free(Gbad); free(A);
}

int main(int argc, char **argv) {
    (void)argc;
    evb_blas_fix_core(argv);
    evb_init();
    layer heads = layer_make(16, 32, 4, 300, 1), chans = layer_make(16, 24, 1, 300, 2);
    test_flap(&heads);
    test_flap(&chans);
    test_obs_naive(&heads);
    test_obs_naive(&chans);
    test_obs_vs_flap(&heads);
    test_obs_vs_flap(&chans);
    test_brute_force();
    test_errors(&heads);
    layer_free(&heads);
    layer_free(&chans);
    return evb_test_summary();
}
