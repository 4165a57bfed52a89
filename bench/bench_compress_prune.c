/* bench_compress_prune.c -- time of evb_prune_sparsegpt (50% unstructured, dampening 0.01, blocksize 128) on
 * random layers: 768 x 768, 768 x 3072 (down-projection shape: 768 outputs, 3072 inputs) and 3072 x 768,
 * with the Gram of 4096 random tokens. Single thread (evb_init keeps OpenBLAS, which GSL's Cholesky calls,
 * single-threaded); median of REPS runs (default 5). bench/sparsegpt_torch.py times the PyTorch
 * transcription on the same shapes.
 *
 * Usage: OPENBLAS_CORETYPE=SkylakeX bench_compress_prune [REPS] */
#define _POSIX_C_SOURCE 199309L
#include "evobudget/evobudget.h"
#include "evobudget/evb_compress.h"
#include "models/blas.h"

#include "bench/bench_util.h"
#include <gsl/gsl_errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t rng = 0x1234567ull;
static float uniform(void) { /* xorshift64*, in [-1, 1) */
    rng ^= rng >> 12; rng ^= rng << 25; rng ^= rng >> 27;
    return (float)((double)((rng * 0x2545F4914F6CDD1Dull) >> 40) * 0x1p-23 - 1.0);
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    evb_blas_fix_core(argv);
    evb_init();
    gsl_set_error_handler_off();
    int reps = argc > 1 ? atoi(argv[1]) : 5;
    if (reps < 1 || reps > 100) reps = 5;
    const int shapes[3][2] = {{768, 768}, {768, 3072}, {3072, 768}};
    const int n_tok = 4096;
    printf("%-12s %10s %10s\n", "shape", "median ms", "min ms");
    for (int s = 0; s < 3; s++) {
        int rows = shapes[s][0], cols = shapes[s][1];
        size_t n = (size_t)rows * cols;
        float *W = malloc(sizeof(float) * n), *Wh = malloc(sizeof(float) * n);
        float *X = malloc(sizeof(float) * (size_t)n_tok * cols), *Gf = malloc(sizeof(float) * (size_t)cols * cols);
        double *G = malloc(sizeof(double) * (size_t)cols * cols), t[100];
        for (size_t i = 0; i < n; i++) W[i] = uniform();
        for (size_t i = 0; i < (size_t)n_tok * cols; i++) X[i] = uniform();
        evb_gram_f32(Gf, X, n_tok, cols);
        for (size_t i = 0; i < (size_t)cols * cols; i++) G[i] = Gf[i];
        evb_layer_stats st = {cols, (size_t)n_tok, G};
        for (int r = 0; r < reps; r++) {
            memcpy(Wh, W, sizeof(float) * n);
            double t0 = bench_now();
            int rc = evb_prune_sparsegpt(Wh, rows, cols, &st, (evb_sparsity){0.5, 0, 0}, 0.01, 128);
            t[r] = 1e3 * (bench_now() - t0);
            if (rc) { fprintf(stderr, "sparsegpt: %s\n", evb_last_error()); return 1; }
        }
        qsort(t, reps, sizeof *t, cmp_d);
        char name[32];
        snprintf(name, sizeof name, "%dx%d", rows, cols);
        printf("%-12s %10.1f %10.1f\n", name, t[reps / 2], t[0]);
        fflush(stdout);
        free(W); free(Wh); free(X); free(Gf); free(G);
    }
    return 0;
}
