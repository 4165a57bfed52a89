/* test_blas.c -- the matrix kernels against their naive references, the linked BLAS, and the independence
 * of results from the thread count. */
#define _GNU_SOURCE
#include "testing.h"
#include "models/blas.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static void fill(float *x, size_t n, unsigned *seed) {
    for (size_t i = 0; i < n; i++) x[i] = (float)rand_r(seed) / RAND_MAX * 2.0f - 1.0f;
}

static double max_rel_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / (fabs((double)b[i]) + 1.0);
        if (d > m || isnan(a[i])) m = isnan(a[i]) ? INFINITY : d;
    }
    return m;
}

int main(void) {
    evb_blas_init();
    /* cblas_* must be served by OpenBLAS, not GSL's reference CBLAS that GSL::gsl links too. */
    const char *lib = evb_blas_library();
    EVB_CHECK(strstr(lib, "openblas") != NULL && strstr(lib, "gslcblas") == NULL, "cblas_sgemm is served by %s", lib);

    unsigned seed = 7;
    static const int shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {64, 64, 64}, {97, 172, 64}, {130, 64, 512}, {257, 33, 129}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int M = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
        float *x = malloc(sizeof(float) * M * K), *W = malloc(sizeof(float) * N * K), *b = malloc(sizeof(float) * N);
        float *o1 = malloc(sizeof(float) * M * N), *o2 = malloc(sizeof(float) * M * N);
        float *Bk = malloc(sizeof(float) * K * N);
        fill(x, (size_t)M * K, &seed); fill(W, (size_t)N * K, &seed); fill(b, N, &seed); fill(Bk, (size_t)K * N, &seed);
        evb_matmul_wt(o1, x, W, b, M, K, N);
        evb_matmul_wt_naive(o2, x, W, b, M, K, N);
        EVB_CHECK(max_rel_diff(o1, o2, (size_t)M * N) < 1e-5, "matmul_wt %dx%dx%d matches the naive reference", M, K, N);
        fill(o1, (size_t)M * N, &seed);
        memcpy(o2, o1, sizeof(float) * M * N);
        evb_sgemm_nt(M, N, K, 0.5f, x, K, W, K, 0.25f, o1, N);
        evb_sgemm_nt_naive(M, N, K, 0.5f, x, K, W, K, 0.25f, o2, N);
        EVB_CHECK(max_rel_diff(o1, o2, (size_t)M * N) < 1e-5, "sgemm_nt %dx%dx%d matches the naive reference", M, K, N);
        evb_sgemm_nn(M, N, K, 1.0f, x, K, Bk, N, 0.0f, o1, N);
        evb_sgemm_nn_naive(M, N, K, 1.0f, x, K, Bk, N, 0.0f, o2, N);
        EVB_CHECK(max_rel_diff(o1, o2, (size_t)M * N) < 1e-5, "sgemm_nn %dx%dx%d matches the naive reference", M, K, N);
        free(x); free(W); free(b); free(o1); free(o2); free(Bk);
    }

    {   /* Gram matrix X^T X by ssyrk against the naive double sum. */
        int n = 300, cols = 70;
        float *X = malloc(sizeof(float) * n * cols), *G1 = malloc(sizeof(float) * cols * cols), *G2 = malloc(sizeof(float) * cols * cols);
        fill(X, (size_t)n * cols, &seed);
        evb_gram_f32(G1, X, n, cols);
        evb_gram_f32_naive(G2, X, n, cols);
        EVB_CHECK(max_rel_diff(G1, G2, (size_t)cols * cols) < 1e-5, "gram %dx%d matches the naive reference", n, cols);
        free(X); free(G1); free(G2);
    }

    {   /* tr(X G X^T) by blocks of rows through dgemm against the naive double sum, X = A - B and X = A; rows
         * not a multiple of the block, G a Gram matrix (symmetric, positive semi-definite). */
        int rows = 150, cols = 90, n = 200;
        float *A = malloc(sizeof(float) * rows * cols), *B = malloc(sizeof(float) * rows * cols), *X = malloc(sizeof(float) * n * cols);
        float *Gf = malloc(sizeof(float) * cols * cols);
        double *G = malloc(sizeof(double) * cols * cols);
        fill(A, (size_t)rows * cols, &seed); fill(B, (size_t)rows * cols, &seed); fill(X, (size_t)n * cols, &seed);
        evb_gram_f32_naive(Gf, X, n, cols);
        for (int i = 0; i < cols * cols; i++) G[i] = Gf[i];
        double q1 = evb_quad_trace(A, B, rows, cols, G), q2 = evb_quad_trace_naive(A, B, rows, cols, G);
        double w1 = evb_quad_trace(A, NULL, rows, cols, G), w2 = evb_quad_trace_naive(A, NULL, rows, cols, G);
        EVB_CHECK(q2 > 0 && fabs(q1 - q2) <= 1e-12 * q2, "quad_trace(A - B) %dx%d matches the naive reference (%.17g, %.17g)", rows, cols, q1, q2);
        EVB_CHECK(w2 > 0 && fabs(w1 - w2) <= 1e-12 * w2, "quad_trace(A) matches the naive reference (%.17g, %.17g)", w1, w2);
        EVB_CHECK(evb_quad_trace(A, A, rows, cols, G) == 0.0, "quad_trace(A - A) is exactly 0");
        free(A); free(B); free(X); free(Gf); free(G);
    }

#ifdef _OPENMP
    /* Row slices per thread: the same bits for 1, 2 and 3 threads. */
    int M = 517, K = 200, N = 300;
    float *x = malloc(sizeof(float) * M * K), *W = malloc(sizeof(float) * N * K);
    float *o[3];
    fill(x, (size_t)M * K, &seed); fill(W, (size_t)N * K, &seed);
    int saved = omp_get_max_threads();
    for (int t = 0; t < 3; t++) {
        o[t] = malloc(sizeof(float) * M * N);
        omp_set_num_threads(t + 1);
        evb_matmul_wt(o[t], x, W, NULL, M, K, N);
    }
    omp_set_num_threads(saved);
    EVB_CHECK(memcmp(o[0], o[1], sizeof(float) * M * N) == 0 && memcmp(o[0], o[2], sizeof(float) * M * N) == 0,
              "matmul_wt gives identical bits on 1, 2 and 3 threads");
    for (int t = 0; t < 3; t++) free(o[t]);
    free(x); free(W);
#endif
    return evb_test_summary();
}
