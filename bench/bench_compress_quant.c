/* bench_compress_quant.c -- time of evb_quant_gptq on random layers, single thread, median of REPS runs.
 *
 * Shapes (rows x cols): 768 x 768, 768 x 3072, 3072 x 768; W ~ N(0, 1), H = X^T X of 4096 random tokens
 * (X ~ N(0, 1) with per-column scales in [0.1, 3]); 3 bits asymmetric, group 128 and per channel, damp 0.01,
 * blocksize 128. bench/gptq_torch.py times the PyTorch transcription of fasterquant on the same shapes.
 *
 *   OPENBLAS_NUM_THREADS=1 ./build/bench/bench_compress_quant [REPS]
 * Prints one line per case: rows cols bits group median_ms min_ms. */
#define _POSIX_C_SOURCE 200809L
#include "evobudget/evobudget.h"
#include "evobudget/evb_compress.h"
#include "models/blas.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double urand(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}
static float nrand(void) { return (float)(sqrt(-2.0 * log(urand() + 1e-300)) * cos(6.283185307179586 * urand())); }

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    evb_blas_fix_core(argv);
    evb_init();
    int reps = argc > 1 ? atoi(argv[1]) : 5;
    if (reps < 1 || reps > 100) reps = 5;
    const int shapes[][2] = {{768, 768}, {768, 3072}, {3072, 768}};
    const int ntok = 4096;
    printf("# rows cols bits group median_ms min_ms (%d runs, OpenBLAS core %s)\n", reps, evb_blas_core());
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const int rows = shapes[s][0], cols = shapes[s][1];
        const size_t nw = (size_t)rows * cols;
        float *W = malloc(nw * sizeof *W), *Wq = malloc(nw * sizeof *Wq);
        float *X = malloc((size_t)ntok * cols * sizeof *X), *Gf = malloc((size_t)cols * cols * sizeof *Gf);
        double *G = malloc((size_t)cols * cols * sizeof *G);
        float *colscale = malloc((size_t)cols * sizeof *colscale);
        if (!W || !Wq || !X || !Gf || !G || !colscale) { fprintf(stderr, "out of memory\n"); return 1; }
        for (size_t i = 0; i < nw; i++) W[i] = nrand();
        for (int c = 0; c < cols; c++) colscale[c] = (float)(0.1 + 2.9 * urand());
        for (size_t i = 0; i < (size_t)ntok * cols; i++) X[i] = nrand() * colscale[i % (size_t)cols];
        evb_gram_f32(Gf, X, ntok, cols);
        for (size_t i = 0; i < (size_t)cols * cols; i++) G[i] = Gf[i];
        evb_layer_stats st = {cols, (size_t)ntok, G};
        const int groups[] = {128, 0};
        for (int k = 0; k < 2; k++) {
            evb_quant_params q = {3, groups[k], 0, 0, 0.01, 128};
            double t[100];
            for (int r = 0; r < reps; r++) {
                memcpy(Wq, W, nw * sizeof *W);
                double t0 = now_ms();
                int rc = evb_quant_gptq(Wq, rows, cols, &st, &q, NULL);
                t[r] = now_ms() - t0;
                if (rc) { fprintf(stderr, "evb_quant_gptq: %s\n", evb_last_error()); return 1; }
            }
            qsort(t, (size_t)reps, sizeof *t, cmp_double);
            printf("%d %d %d %d %.1f %.1f\n", rows, cols, q.bits, q.group_size, t[reps / 2], t[0]);
            fflush(stdout);
        }
        free(W); free(Wq); free(X); free(Gf); free(G); free(colscale);
    }
    return 0;
}
