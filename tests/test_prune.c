/* test_prune.c -- compressors/prune.c: fast paths against their naive references, against the PyTorch
 * transcription of SparseGPT / Wanda (tests/fixtures/prune_ref.bin, written by tests/tools/sparsegpt_ref.py),
 * argument errors, and on a real layer of stories260K: recon error order SparseGPT < Wanda < magnitude at
 * 50% and 70%, achieved sparsity, N:M patterns, and evb_recon_error against ||(W - W_hat) X^T||^2 / ||W X^T||^2
 * from the captured inputs. */
#include "stories.h"
#include "evobudget/evb_compress.h"
#include "compressors/naive.h"
#include "core/rng.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef EVB_SOURCE_DIR
#define EVB_SOURCE_DIR "."
#endif

/* ---- the fixed problem of tests/tools/sparsegpt_ref.py ---- */

static void uniform_stream(uint64_t seed, size_t n, float *out) {
    uint64_t state = seed;
    for (size_t i = 0; i < n; i++) out[i] = (float)((double)(evb_splitmix64(&state) >> 40) * 0x1p-23 - 1.0);
}

static void gram(const float *X, size_t n, int cols, double *G) {
    memset(G, 0, sizeof(double) * cols * cols);
    for (size_t t = 0; t < n; t++)
        for (int a = 0; a < cols; a++) {
            double xa = X[t * cols + a];
            if (xa == 0) continue;
            for (int b = 0; b < cols; b++) G[(size_t)a * cols + b] += xa * X[t * cols + b];
        }
}

static int mask_flips(const float *a, const float *b, size_t n) {
    int f = 0;
    for (size_t i = 0; i < n; i++) f += (a[i] == 0.0f) != (b[i] == 0.0f);
    return f;
}

static double max_rel_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double s = fabs((double)b[i]) > 1 ? fabs((double)b[i]) : 1.0, d = fabs((double)a[i] - b[i]) / s;
        if (d > m) m = d;
    }
    return m;
}

static size_t count_zeros(const float *a, size_t n) {
    size_t z = 0;
    for (size_t i = 0; i < n; i++) z += a[i] == 0.0f;
    return z;
}

/* Every group of m in every row has at most n_keep nonzeros, and exactly n_keep unless W0 had zeros there. */
static int nm_ok(const float *W0, const float *W, int rows, int cols, int n_keep, int m) {
    for (int r = 0; r < rows; r++)
        for (int g = 0; g < cols; g += m) {
            int nz = 0, z0 = 0;
            for (int j = 0; j < m; j++) {
                nz += W[(size_t)r * cols + g + j] != 0.0f;
                z0 += W0[(size_t)r * cols + g + j] == 0.0f;
            }
            if (nz > n_keep || nz < n_keep - z0) return 0;
        }
    return 1;
}

static void test_fixture(void) {
    const char *path = EVB_SOURCE_DIR "/tests/fixtures/prune_ref.bin";
    FILE *f = fopen(path, "rb");
    EVB_CHECK(f != NULL, "open %s", path);
    if (!f) return;
    char magic[8];
    uint32_t h[6];
    double sums[2];
    int ok = fread(magic, 1, 8, f) == 8 && !memcmp(magic, "EVBPRUN1", 8) && fread(h, 4, 6, f) == 6 &&
             fread(sums, 8, 2, f) == 2;
    EVB_CHECK(ok && h[0] == 48 && h[1] == 64, "fixture header");
    if (!ok || h[0] != 48 || h[1] != 64) { fclose(f); return; }
    int rows = h[0], cols = h[1], blocksize = h[3];
    size_t n_tok = h[2], n = (size_t)rows * cols;
    float *W = malloc(sizeof(float) * n), *X = malloc(sizeof(float) * n_tok * cols), *Z = malloc(sizeof(float) * n_tok * cols);
    float *ref = malloc(sizeof(float) * n * 4), *Wh = malloc(sizeof(float) * n);
    double *G = malloc(sizeof(double) * cols * cols);
    ok = fread(ref, sizeof(float), n * 4, f) == n * 4;
    fclose(f);
    EVB_CHECK(ok, "fixture payload");
    uniform_stream(h[4], n, W);
    uniform_stream(h[5], n_tok * cols, Z);
    double sw = 0, sx = 0;
    for (size_t i = 0; i < n; i++) sw += W[i];
    for (size_t t = 0; t < n_tok; t++)
        for (int j = 0; j < cols; j++) {
            double v = (double)Z[t * cols + j] * (0.25 + 0.25 * (j % 7)) + 0.5 * (double)Z[t * cols + (j + 1) % cols];
            X[t * cols + j] = j == 5 ? 0.0f : (float)v;
            sx += X[t * cols + j];
        }
    EVB_CHECK(sw == sums[0] && sx == sums[1], "regenerated W, X match the script's (sums %.17g %.17g)", sw, sx);
    gram(X, n_tok, cols, G);
    evb_layer_stats st = {cols, n_tok, G};
    const char *names[4] = {"SparseGPT 50%", "SparseGPT 2:4", "Wanda 50%", "Wanda 2:4"};
    evb_sparsity sps[4] = {{0.5, 0, 0}, {0, 2, 4}, {0.5, 0, 0}, {0, 2, 4}};
    for (int k = 0; k < 4; k++) {
        memcpy(Wh, W, sizeof(float) * n);
        int rc = k < 2 ? evb_prune_sparsegpt(Wh, rows, cols, &st, sps[k], 0.01, blocksize)
                       : evb_prune_wanda(Wh, rows, cols, &st, sps[k]);
        int flips = mask_flips(Wh, ref + n * k, n);
        double d = 0; /* over the rows whose masks agree (a flip changes the OBS updates of its row) */
        for (int r = 0; r < rows; r++)
            if (!mask_flips(Wh + (size_t)r * cols, ref + n * k + (size_t)r * cols, cols)) {
                double dr = max_rel_diff(Wh + (size_t)r * cols, ref + n * k + (size_t)r * cols, cols);
                if (dr > d) d = dr;
            }
        EVB_CHECK(rc == 0, "%s runs (%s)", names[k], evb_last_error());
        /* tolerance: at most 2 mask flips (near-ties of the float64 scores) and weights within 1e-4 */
        EVB_CHECK(flips <= (k < 2 ? 2 : 0), "%s: mask vs PyTorch, %d flips", names[k], flips);
        EVB_CHECK(k >= 2 || d <= 1e-4, "%s: weights vs PyTorch, max rel diff %.3g (tol 1e-4)", names[k], d);
        EVB_CHECK(k < 2 || d == 0, "%s: identical to PyTorch's output (max diff %.3g)", names[k], d);
    }
    free(W); free(X); free(Z); free(ref); free(Wh); free(G);
}

/* ---- fast paths against naive references on random problems ---- */

static void test_naive(void) {
    const int rows = 24, cols = 96, n_tok = 300;
    size_t n = (size_t)rows * cols;
    float *W = malloc(sizeof(float) * n), *A = malloc(sizeof(float) * n), *B = malloc(sizeof(float) * n);
    float *X = malloc(sizeof(float) * n_tok * cols);
    double *G = malloc(sizeof(double) * cols * cols);
    uniform_stream(7, n, W);
    uniform_stream(8, (size_t)n_tok * cols, X);
    for (int t = 0; t < n_tok; t++) X[(size_t)t * cols + 11] = 0.0f; /* a dead input */
    for (int t = 0; t < n_tok; t++) X[(size_t)t * cols + 12] = X[(size_t)t * cols + 13]; /* collinear pair */
    gram(X, n_tok, cols, G);
    evb_layer_stats st = {cols, (size_t)n_tok, G};
    /* W quantised to 16 levels: many exact ties in magnitude and Wanda scores */
    float *Wq = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) Wq[i] = floorf(W[i] * 8.0f) / 8.0f;
    evb_sparsity sps[5] = {{0.5, 0, 0}, {0.7, 0, 0}, {0.33, 0, 0}, {0, 2, 4}, {0, 4, 8}};
    for (int k = 0; k < 5; k++) {
        for (int q = 0; q < 2; q++) {
            const float *src = q ? Wq : W;
            memcpy(A, src, sizeof(float) * n); memcpy(B, src, sizeof(float) * n);
            int r1 = evb_prune_magnitude(A, rows, cols, sps[k]), r2 = evb_prune_magnitude_naive(B, rows, cols, sps[k]);
            EVB_CHECK(!r1 && !r2 && !memcmp(A, B, sizeof(float) * n), "magnitude %g %d:%d%s: fast == naive",
                      sps[k].sparsity, sps[k].n_keep, sps[k].m, q ? " (tied weights)" : "");
            if (!sps[k].n_keep) {
                size_t want = (size_t)(sps[k].sparsity * n), z = count_zeros(A, n), z0 = count_zeros(src, n);
                EVB_CHECK(z >= want && z <= want + z0, "magnitude %g removes floor(s n) = %zu (zeros %zu, %zu before)",
                          sps[k].sparsity, want, z, z0);
            }
            memcpy(A, src, sizeof(float) * n); memcpy(B, src, sizeof(float) * n);
            r1 = evb_prune_wanda(A, rows, cols, &st, sps[k]);
            r2 = evb_prune_wanda_naive(B, rows, cols, &st, sps[k]);
            EVB_CHECK(!r1 && !r2 && !memcmp(A, B, sizeof(float) * n), "Wanda %g %d:%d%s: fast == naive",
                      sps[k].sparsity, sps[k].n_keep, sps[k].m, q ? " (tied weights)" : "");
        }
        int bss[3] = {32, 40, 128};
        for (int b = 0; b < 3; b++) {
            if (sps[k].n_keep && bss[b] % sps[k].m) continue;
            memcpy(A, W, sizeof(float) * n); memcpy(B, W, sizeof(float) * n);
            int r1 = evb_prune_sparsegpt(A, rows, cols, &st, sps[k], 0.01, bss[b]);
            int r2 = evb_prune_sparsegpt_naive(B, rows, cols, &st, sps[k], 0.01, bss[b]);
            int flips = mask_flips(A, B, n);
            double d = max_rel_diff(A, B, n);
            /* tolerance: the same mask, weights within 1e-6 (double arithmetic, rounded to float) */
            EVB_CHECK(!r1 && !r2 && flips == 0 && d <= 1e-6,
                      "SparseGPT %g %d:%d B=%d: blocked vs unblocked OBS, %d flips, max rel diff %.3g",
                      sps[k].sparsity, sps[k].n_keep, sps[k].m, bss[b], flips, d);
            if (sps[k].n_keep) EVB_CHECK(nm_ok(W, A, rows, cols, sps[k].n_keep, sps[k].m), "SparseGPT N:M pattern");
            int dead_ok = 1;
            for (int r = 0; r < rows; r++) dead_ok &= A[(size_t)r * cols + 11] == 0.0f;
            EVB_CHECK(dead_ok, "SparseGPT zeroes the dead input column");
        }
    }
    /* Exact counts (EvoPress's equal-step levels): the layer loses exactly n_remove weights. */
    int64_t ks[3] = {1, 1237, (int64_t)n - 5};
    for (int k = 0; k < 3; k++) {
        evb_sparsity sp = {0, 0, 0, ks[k]};
        memcpy(A, W, sizeof(float) * n); memcpy(B, W, sizeof(float) * n);
        int r1 = evb_prune_magnitude(A, rows, cols, sp), r2 = evb_prune_magnitude_naive(B, rows, cols, sp);
        EVB_CHECK(!r1 && !r2 && !memcmp(A, B, sizeof(float) * n) && count_zeros(A, n) == (size_t)ks[k],
                  "magnitude removes exactly %lld: %zu zeros, fast == naive", (long long)ks[k], count_zeros(A, n));
        memcpy(A, W, sizeof(float) * n); memcpy(B, W, sizeof(float) * n);
        r1 = evb_prune_wanda(A, rows, cols, &st, sp); r2 = evb_prune_wanda_naive(B, rows, cols, &st, sp);
        EVB_CHECK(!r1 && !r2 && !memcmp(A, B, sizeof(float) * n) && count_zeros(A, n) == (size_t)ks[k],
                  "Wanda removes exactly %lld: %zu zeros, fast == naive", (long long)ks[k], count_zeros(A, n));
        if (k == 0) continue; /* the dead input column's zeros come first in SparseGPT's selection */
        memcpy(A, W, sizeof(float) * n); memcpy(B, W, sizeof(float) * n);
        r1 = evb_prune_sparsegpt(A, rows, cols, &st, sp, 0.01, 40);
        r2 = evb_prune_sparsegpt_naive(B, rows, cols, &st, sp, 0.01, 40);
        EVB_CHECK(!r1 && !r2 && mask_flips(A, B, n) == 0 && count_zeros(A, n) == (size_t)ks[k],
                  "SparseGPT (blocks of 40 over 96 columns) removes exactly %lld: %zu zeros, fast == naive",
                  (long long)ks[k], count_zeros(A, n));
    }
    EVB_CHECK(evb_prune_magnitude(A, rows, cols, (evb_sparsity){0, 0, 0, (int64_t)n + 1}) == EVB_EINVAL,
              "more weights to remove than the layer has: %s", evb_last_error());
    EVB_CHECK(evb_prune_wanda(A, rows, cols, &st, (evb_sparsity){0, 2, 4, 10}) == EVB_EINVAL,
              "exact count with N:M: %s", evb_last_error());
    /* errors */
    memcpy(A, W, sizeof(float) * n);
    EVB_CHECK(evb_prune_magnitude(A, rows, cols, (evb_sparsity){1.5, 0, 0}) == EVB_EINVAL, "sparsity 1.5: %s", evb_last_error());
    EVB_CHECK(evb_prune_wanda(A, rows, 90, &st, (evb_sparsity){0, 2, 4}) == EVB_EINVAL, "cols mismatch: %s", evb_last_error());
    EVB_CHECK(evb_prune_magnitude(A, rows, 90, (evb_sparsity){0, 2, 4}) == EVB_EINVAL, "90 %% 4: %s", evb_last_error());
    EVB_CHECK(evb_prune_sparsegpt(A, rows, cols, &st, (evb_sparsity){0, 2, 4}, 0.01, 30) == EVB_EINVAL, "blocksize 30 with 2:4: %s", evb_last_error());
    EVB_CHECK(evb_prune_sparsegpt(A, rows, cols, NULL, (evb_sparsity){0.5, 0, 0}, 0.01, 128) == EVB_EINVAL, "no stats: %s", evb_last_error());
    A[3] = NAN;
    EVB_CHECK(evb_prune_wanda(A, rows, cols, &st, (evb_sparsity){0.5, 0, 0}) == EVB_EINVAL, "NaN weight: %s", evb_last_error());
    memcpy(A, W, sizeof(float) * n);
    double *Gbad = malloc(sizeof(double) * cols * cols);
    memcpy(Gbad, G, sizeof(double) * cols * cols);
    Gbad[0 * cols + 1] = Gbad[1 * cols + 0] = 10 * sqrt(G[0] * G[cols + 1]); /* indefinite */
    evb_layer_stats bad = {cols, (size_t)n_tok, Gbad};
    EVB_CHECK(evb_prune_sparsegpt(A, rows, cols, &bad, (evb_sparsity){0.5, 0, 0}, 0.0, 128) == EVB_EBADFUNC,
              "indefinite H: %s", evb_last_error());
    EVB_CHECK(evb_prune_sparsegpt_naive(A, rows, cols, &bad, (evb_sparsity){0.5, 0, 0}, 0.0, 128) == EVB_EBADFUNC,
              "indefinite H (naive): %s", evb_last_error());
    EVB_CHECK(evb_recon_error(W, W, rows, cols, &st) == 0.0, "recon error of W itself is 0");
    free(Gbad); free(W); free(A); free(B); free(X); free(G); free(Wq);
}

/* ---- a real layer of stories260K ---- */

typedef struct capture { int layer, kind; float *X; size_t n, cap; int cols; } capture;

static void on_input(void *ctx, int layer, evb_linear_kind kind, const float *x, int n_rows, int n_cols) {
    capture *c = ctx;
    if (layer != c->layer || (int)kind != c->kind) return;
    if (c->n + n_rows > c->cap) return;
    memcpy(c->X + c->n * n_cols, x, sizeof(float) * n_rows * n_cols);
    c->n += n_rows;
    c->cols = n_cols;
}

static void test_layer(evb_model *m, evb_state *s, const evb_windows *w, int layer, evb_linear_kind kind, int order3) {
    int rows, cols, unit = layer * EVB_LINEAR_COUNT + kind;
    evb_model_unit_shape(m, unit, &rows, &cols);
    int nb = w->n < 8 ? w->n : 8, T = w->seq_len;
    capture c = {layer, kind, malloc(sizeof(float) * (size_t)nb * T * cols), 0, (size_t)nb * T, 0};
    s->capture = on_input;
    s->capture_ctx = &c;
    int rc = evb_forward(m, s, w->tokens, nb, T);
    s->capture = NULL;
    EVB_CHECK(rc == 0 && c.n == (size_t)nb * T && c.cols == cols, "captured %zu inputs of layer %d %s [%d x %d]",
              c.n, layer, evb_linear_name(kind), rows, cols);
    if (rc || c.n == 0) { free(c.X); return; }
    double *G = malloc(sizeof(double) * cols * cols);
    gram(c.X, c.n, cols, G);
    evb_layer_stats st = {cols, c.n, G};
    size_t n = (size_t)rows * cols;
    const float *W = m->layers[layer].w[kind];
    float *Wh = malloc(sizeof(float) * n);
    size_t z0 = count_zeros(W, n);
    const char *mn[3] = {"SparseGPT", "Wanda", "magnitude"};
    double sps[2] = {0.5, 0.7};
    for (int k = 0; k < 2; k++) {
        double err[3];
        evb_sparsity sp = {sps[k], 0, 0};
        for (int meth = 0; meth < 3; meth++) {
            memcpy(Wh, W, sizeof(float) * n);
            rc = meth == 0 ? evb_prune_sparsegpt(Wh, rows, cols, &st, sp, 0.01, 128)
               : meth == 1 ? evb_prune_wanda(Wh, rows, cols, &st, sp) : evb_prune_magnitude(Wh, rows, cols, sp);
            err[meth] = evb_recon_error(W, Wh, rows, cols, &st);
            size_t z = count_zeros(Wh, n);
            /* expected zeros: magnitude floor(s n); Wanda rows * floor(s cols); SparseGPT sum over blocks */
            size_t want = meth == 2 ? (size_t)(sps[k] * n) : meth == 1 ? (size_t)rows * (size_t)(sps[k] * cols) : 0;
            if (meth == 0)
                for (int i1 = 0; i1 < cols; i1 += 128)
                    want += (size_t)(sps[k] * (double)rows * ((i1 + 128 < cols ? i1 + 128 : cols) - i1));
            EVB_CHECK(rc == 0 && z >= want && z <= want + z0, "%s %.0f%%: %zu zeros, %zu asked (%.4f)",
                      mn[meth], 100 * sps[k], z, want, (double)z / n);
            /* direct: ||(W - Wh) X^T||^2 / ||W X^T||^2 */
            double num = 0, den = 0;
            for (size_t t = 0; t < c.n; t++)
                for (int r = 0; r < rows; r++) {
                    double y = 0, yh = 0;
                    for (int j = 0; j < cols; j++) {
                        double x = c.X[t * cols + j];
                        y += (double)W[(size_t)r * cols + j] * x;
                        yh += (double)Wh[(size_t)r * cols + j] * x;
                    }
                    num += (y - yh) * (y - yh);
                    den += y * y;
                }
            EVB_CHECK(fabs(err[meth] - num / den) <= 1e-9 * (num / den), "%s %.0f%%: recon error %.6f, direct %.6f",
                      mn[meth], 100 * sps[k], err[meth], num / den);
        }
        if (order3) /* Wanda < magnitude holds on most layers but not all (layer 2 q_proj: magnitude is better) */
            EVB_CHECK(err[0] < err[1] && err[1] < err[2], "layer %d %s %.0f%%: recon SparseGPT %.5f < Wanda %.5f < magnitude %.5f",
                      layer, evb_linear_name(kind), 100 * sps[k], err[0], err[1], err[2]);
        else
            EVB_CHECK(err[0] < err[1] && err[0] < err[2], "layer %d %s %.0f%%: recon SparseGPT %.5f below Wanda %.5f and magnitude %.5f",
                      layer, evb_linear_name(kind), 100 * sps[k], err[0], err[1], err[2]);
    }
    evb_sparsity nms[2] = {{0, 2, 4}, {0, 4, 8}};
    for (int k = 0; k < 2; k++) {
        double err[3];
        if (cols % nms[k].m) {
            memcpy(Wh, W, sizeof(float) * n);
            EVB_CHECK(evb_prune_wanda(Wh, rows, cols, &st, nms[k]) == EVB_EINVAL, "%d:%d on %d inputs refused: %s",
                      nms[k].n_keep, nms[k].m, cols, evb_last_error());
            continue;
        }
        for (int meth = 0; meth < 3; meth++) {
            memcpy(Wh, W, sizeof(float) * n);
            rc = meth == 0 ? evb_prune_sparsegpt(Wh, rows, cols, &st, nms[k], 0.01, 128)
               : meth == 1 ? evb_prune_wanda(Wh, rows, cols, &st, nms[k]) : evb_prune_magnitude(Wh, rows, cols, nms[k]);
            err[meth] = evb_recon_error(W, Wh, rows, cols, &st);
            EVB_CHECK(rc == 0 && nm_ok(W, Wh, rows, cols, nms[k].n_keep, nms[k].m), "%s %d:%d pattern holds (recon %.5f)",
                      mn[meth], nms[k].n_keep, nms[k].m, err[meth]);
        }
        EVB_CHECK(err[0] < err[1] && err[0] < err[2], "%d:%d: SparseGPT %.5f below Wanda %.5f and magnitude %.5f",
                  nms[k].n_keep, nms[k].m, err[0], err[1], err[2]);
    }
    free(Wh); free(G); free(c.X);
}

static void test_stories(void) {
    stories S;
    evb_windows w = {0};
    evb_state *s = NULL;
    int st = stories_load(&S, 200000);
    evb_model *m = S.m;
    if (!st) st = evb_windows_consecutive(S.tok, S.n, 128, evb_tokenizer_bos(S.t), 8 * 127, &w);
    if (!st) st = evb_state_alloc(m, 8, 128, &s);
    EVB_CHECK(st == 0 && w.n >= 8, "load stories260K and 8 windows of 128 tokens (%s)", evb_last_error());
    if (!st && w.n >= 8) {
        test_layer(m, s, &w, 2, EVB_LINEAR_DOWN, 1);
        test_layer(m, s, &w, 2, EVB_LINEAR_Q, 0);
    }
    evb_state_free(s);
    evb_windows_free(&w);
    stories_free(&S);
}

int main(int argc, char **argv) {
    (void)argc;
    evb_blas_fix_core(argv);
    evb_init();

    test_fixture();
    test_naive();
    test_stories();
    return evb_test_summary();
}
