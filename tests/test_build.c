#define _GNU_SOURCE
/* test_build.c -- building level databases: EvoPress's equal-step grid (exact counts, a fixed number of
 * weights per step in every unit, so that trading levels keeps the total), and the sequential protocol
 * (block l's levels equal levels compressed from statistics collected on the full forward of a model whose
 * blocks before l hold the level passed on; block 0 equals the dense protocol; an interrupted build,
 * completed, equals an uninterrupted one). Real data: stories260K. */
#include "stories.h"
#include "fixtures.h"
#include "evobudget/evb_calib.h"
#include "evobudget/evb_db.h"

#include <stdlib.h>
#include <string.h>

static size_t zeros(const float *w, size_t n) {
    size_t z = 0;
    for (size_t i = 0; i < n; i++) z += w[i] == 0.0f;
    return z;
}

static int same_entries(evb_db *a, evb_db *b) {
    if (evb_db_count(a) != evb_db_count(b)) return 0;
    for (int i = 0; i < evb_db_count(a); i++) {
        evb_db_entry x = evb_db_get(a, i);
        int j = evb_db_find(b, &x);
        if (j < 0 || evb_db_get(b, j).checksum != x.checksum) return 0;
    }
    return 1;
}

static void test_steps(evb_model *m, const evb_calib *c) {
    char *dir = fixture_tmpdir();
    evb_db *db;
    int st = evb_db_open(dir, "00000000000000aa", "00000000000000bb", 1, &db);
    const double s = 0.6;
    const int K = 4;
    int64_t wd = evb_step_weights_default(m, s, K);
    /* EvoPress: int(0.5 min(s, 1 - s) / K dim^2); stories260K has dim 64 */
    EVB_CHECK(wd == (int64_t)(0.5 * 0.4 / 4 * 64 * 64), "default step %lld weights for dim 64, s 0.6, 4 levels", (long long)wd);
    evb_level_grid g = {0};
    g.step_target = s; g.step_levels = K; g.step_weights = wd;
    int built = 0, present = 0;
    if (!st) st = evb_db_build(db, m, c, evb_method_find("wanda"), &g, &built, &present, NULL, NULL);
    EVB_CHECK(st == 0 && built > 0, "wanda step grid around 0.6: %d levels (%s)", built, evb_last_error());
    int U = evb_model_n_units(m), expect = 0, exact = 1, steps_ok = 1;
    float *W = malloc(sizeof(float) * 512 * 512);
    for (int u = 0; u < U && !st; u++) {
        int rows, cols, lo, hi;
        evb_model_unit_shape(m, u, &rows, &cols);
        int64_t N = (int64_t)rows * cols, base = evb_step_range(N, s, wd, K, &lo, &hi);
        double prev_kept = -1;
        for (int l = -lo; l <= hi; l++) {
            evb_db_entry key = {0};
            key.unit = u; key.kind = EVB_LEVEL_SPARSE; snprintf(key.method, sizeof key.method, "wanda");
            key.n_removed = base + (int64_t)l * wd;
            if (key.n_removed == 0) continue;
            expect++;
            int i = evb_db_find(db, &key);
            if (i < 0 || evb_db_load(db, i, W)) { exact = 0; continue; }
            evb_db_entry e = evb_db_get(db, i);
            /* the stories260K weights have no exact zeros, so the zeros are the removed weights */
            if ((int64_t)zeros(W, (size_t)N) != key.n_removed || e.params_kept != (double)(N - key.n_removed)) exact = 0;
            if (prev_kept >= 0 && prev_kept - e.params_kept != (double)wd) steps_ok = 0;
            prev_kept = e.params_kept;
        }
    }
    EVB_CHECK(expect == evb_db_count(db) && exact, "%d levels, each removing exactly round(0.6 N) + l * %lld weights",
              expect, (long long)wd);
    EVB_CHECK(steps_ok, "one level step changes the kept parameters by exactly %lld in every unit", (long long)wd);
    /* trading one level between a large and a small unit keeps the total */
    evb_db_entry a = {0}, b = {0};
    a.unit = 5; b.unit = 1; /* up (F x D) and k (G E x D) of block 0 */
    int la, ha, lb, hb, rows, cols;
    evb_model_unit_shape(m, 5, &rows, &cols);
    int64_t Na = (int64_t)rows * cols, ba = evb_step_range(Na, s, wd, K, &la, &ha);
    evb_model_unit_shape(m, 1, &rows, &cols);
    int64_t Nb = (int64_t)rows * cols, bb = evb_step_range(Nb, s, wd, K, &lb, &hb);
    EVB_CHECK(Na != Nb && ha >= 1 && lb >= 1, "units of %lld and %lld weights, levels -%d..+%d and -%d..+%d", (long long)Na,
              (long long)Nb, la, ha, lb, hb);
    double kept0 = 0, kept1 = 0;
    for (int k = 0; k < 4; k++) {
        evb_db_entry key = {0};
        key.unit = k < 2 ? 5 : 1; key.kind = EVB_LEVEL_SPARSE; snprintf(key.method, sizeof key.method, "wanda");
        int64_t base = k < 2 ? ba : bb;
        key.n_removed = base + (k == 1 ? wd : k == 3 ? -wd : 0);
        int i = evb_db_find(db, &key);
        double kept = i >= 0 ? evb_db_get(db, i).params_kept : -1e9;
        if (k % 2 == 0) kept0 += kept; else kept1 += kept;
    }
    EVB_CHECK(kept0 == kept1, "level 0 + 0 keeps %.0f weights, +1 on one and -1 on the other keeps %.0f", kept0, kept1);
    free(W);
    evb_db_close(db);
    fixture_rmdir(dir);
    free(dir);
}

static void test_sequential(evb_model *m, const evb_windows *w, const evb_calib *dense) {
    char *d1 = fixture_tmpdir(), *d2 = fixture_tmpdir();
    const evb_method *sgpt = evb_method_find("sparsegpt");
    double both[2] = {0.5, 0.7};
    evb_level_grid g = {both, 2, 0, 0, NULL, 0, 0, 0, 0, 0, 0, 0};
    evb_db *db, *db2;
    int built, present;
    int st = evb_db_open(d1, "00000000000000aa", "00000000000000bb", 1, &db);
    if (!st) st = evb_db_build_sequential(db, m, w, 4, sgpt, &g, 0.5, &built, &present, NULL, NULL);
    int U = evb_model_n_units(m);
    EVB_CHECK(st == 0 && built == 2 * U, "sequential sparsegpt build: %d levels (%s)", built, evb_last_error());
    if (st) return;
    int restored = 1;
    for (int u = 0; u < U; u++) restored &= m->layers[u / 7].w[u % 7] == m->layers[u / 7].w_dense[u % 7];
    EVB_CHECK(restored, "the model's weights are dense again after the build");

    /* The reference: for block l, a model whose blocks before l hold their 0.5 level, statistics from the full
     * forward (evb_calib_collect), and SparseGPT at 0.5 and 0.7 on them. */
    size_t maxw = 512 * 512;
    float *buf = malloc(sizeof(float) * maxw * U), *W = malloc(sizeof(float) * maxw), *R = malloc(sizeof(float) * maxw);
    int L = m->config.n_layers, match = 1, differs = 0, block0 = 1;
    for (int l = 0; l < L; l++) {
        evb_calib *c = NULL;
        if (evb_calib_collect(m, w, 4, &c)) { match = 0; break; }
        for (int k = 0; k < 7; k++) {
            int u = l * 7 + k, rows, cols;
            evb_model_unit_shape(m, u, &rows, &cols);
            for (int si = 0; si < 2; si++) {
                evb_db_entry key = {0};
                key.unit = u; key.kind = EVB_LEVEL_SPARSE; key.sparsity = both[si];
                snprintf(key.method, sizeof key.method, "sparsegpt");
                int i = evb_db_find(db, &key);
                memcpy(R, m->layers[l].w_dense[k], sizeof(float) * rows * cols);
                evb_sparsity sp = {both[si], 0, 0, 0};
                int rc = evb_prune_sparsegpt(R, rows, cols, evb_calib_unit(c, u), sp, 0.01, 128);
                if (i < 0 || rc || evb_db_load(db, i, W) || memcmp(W, R, sizeof(float) * rows * cols)) match = 0;
                /* against the dense protocol's level of the same unit */
                memcpy(R, m->layers[l].w_dense[k], sizeof(float) * rows * cols);
                evb_prune_sparsegpt(R, rows, cols, evb_calib_unit(dense, u), sp, 0.01, 128);
                int same = memcmp(W, R, sizeof(float) * rows * cols) == 0;
                if (l == 0) block0 &= same;
                else differs += !same;
                if (si == 0) { /* pass the 0.5 level on */
                    memcpy(buf + (size_t)u * maxw, W, sizeof(float) * rows * cols);
                    evb_model_set_weight(m, u, buf + (size_t)u * maxw);
                }
            }
        }
        evb_calib_free(c);
    }
    for (int u = 0; u < U; u++) evb_model_set_weight(m, u, NULL);
    EVB_CHECK(match, "every sequential level equals SparseGPT on statistics of the full forward through the compressed blocks before it");
    EVB_CHECK(block0, "block 0's levels equal the dense protocol's (same inputs)");
    EVB_CHECK(differs >= (L - 1) * 7, "later blocks' levels differ from the dense protocol's (%d of %d)", differs, (L - 1) * 14);

    /* Interrupted, then completed: first the 0.5 levels alone, then both. */
    st = evb_db_open(d2, "00000000000000aa", "00000000000000bb", 1, &db2);
    evb_level_grid g1 = g;
    g1.n_sparsities = 1;
    if (!st) st = evb_db_build_sequential(db2, m, w, 4, sgpt, &g1, 0.5, &built, &present, NULL, NULL);
    if (!st) st = evb_db_build_sequential(db2, m, w, 4, sgpt, &g, 0.5, &built, &present, NULL, NULL);
    EVB_CHECK(st == 0 && present == U && built == U && same_entries(db, db2),
              "a build completed in two runs (%d present, %d built) equals the one-run build", present, built);
    free(buf); free(W); free(R);
    evb_db_close(db); evb_db_close(db2);
    fixture_rmdir(d1); fixture_rmdir(d2);
    free(d1); free(d2);
}

int main(void) {
    evb_init();
    stories S;
    evb_windows w;
    int st = stories_load(&S, 200000);
    if (!st) st = evb_windows_sample(S.tok, S.n, 128, evb_tokenizer_bos(S.t), 12, 3, &w);
    evb_calib *c = NULL;
    if (!st) st = evb_calib_collect(S.m, &w, 4, &c);
    EVB_CHECK(st == 0, "stories260K, 12 calibration windows of 128 tokens, dense statistics (%s)", evb_last_error());
    if (st) return evb_test_summary();
    test_steps(S.m, c);
    test_sequential(S.m, &w, c);
    evb_calib_free(c);
    evb_windows_free(&w);
    stories_free(&S);
    return evb_test_summary();
}
