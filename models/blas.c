/* blas.c -- all calls into OpenBLAS (see blas.h), with their naive references.
 *
 * Threading: OpenBLAS is kept at one thread and the engine splits work with OpenMP. A projection of M rows
 * is cut into fixed slices of whole rows shared out among the threads; the slices do not depend on the
 * thread count, so neither does the result. */
#define _GNU_SOURCE
#include "models/blas.h"
#include "evobudget/evobudget.h"

#include <cblas.h>
#include <dlfcn.h>
#include <math.h>
#include <stdlib.h>
#include <strings.h>
#include <unistd.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

void evb_blas_init(void) { openblas_set_num_threads(1); }

const char *evb_blas_core(void) { return openblas_get_corename(); }

const char *evb_blas_better_core(void) {
    /* OpenBLAS 0.3.21 (Debian 12) does not know CPUs newer than itself, e.g. Intel family 6 model 207, and
     * falls back to its Prescott (SSE3) kernels: 5x slower sgemm on an AVX-512 machine. */
    static const char *generic[] = {"Prescott", "Core2", "Katmai", "Coppermine", "Northwood", "Banias", "Atom", "Nehalem", "Dunnington", "Penryn"};
    const char *core = openblas_get_corename();
    int is_generic = 0;
    for (size_t i = 0; i < sizeof generic / sizeof *generic; i++) is_generic |= core && strcasecmp(core, generic[i]) == 0;
    if (!is_generic) return NULL;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")) return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
    return NULL;
}

void evb_blas_fix_core(char **argv) {
    const char *better = evb_blas_better_core();
    if (!better || getenv("OPENBLAS_CORETYPE")) return; /* never override a user's choice, never loop */
    setenv("OPENBLAS_CORETYPE", better, 1);
    execv("/proc/self/exe", argv);
    /* exec failed: carry on with the slow kernels */
}

const char *evb_blas_library(void) {
    Dl_info info;
    /* ISO C has no function-to-object pointer cast; copy the bits, as POSIX guarantees they fit. */
    void (*fn)(void) = (void (*)(void))cblas_sgemm;
    void *addr;
    memcpy(&addr, &fn, sizeof addr);
    if (dladdr(addr, &info) && info.dli_fname) return info.dli_fname;
    return "unknown";
}

int evb_blas_max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

// ---- projections ----

void evb_add_bias(float *out, const float *bias, int M, int N) {
    if (!bias) return;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) out[(size_t)i * N + j] += bias[j];
}

void evb_matmul_wt(float *out, const float *x, const float *W, const float *bias, int M, int K, int N) {
    /* Fixed slices (EVB_SLICE_ROWS), whatever the thread count. */
    enum { ROWS = EVB_SLICE_ROWS };
    int chunks = (M + ROWS - 1) / ROWS;
    #pragma omp parallel for schedule(static) if (chunks > 1)
    for (int c = 0; c < chunks; c++) {
        int r0 = c * ROWS, r1 = r0 + ROWS < M ? r0 + ROWS : M;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, N, K, 1.0f,
                    x + (size_t)r0 * K, K, W, K, 0.0f, out + (size_t)r0 * N, N);
        evb_add_bias(out + (size_t)r0 * N, bias, r1 - r0, N);
    }
}

void evb_matmul_wt_naive(float *out, const float *x, const float *W, const float *bias, int M, int K, int N) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double acc = 0.0;
            for (int k = 0; k < K; k++) acc += (double)x[(size_t)i * K + k] * W[(size_t)j * K + k];
            out[(size_t)i * N + j] = (float)acc + (bias ? bias[j] : 0.0f);
        }
}

// ---- attention-sized products ----

void evb_sgemm_nt(int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                  float beta, float *C, int ldc) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void evb_sgemm_nn(int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                  float beta, float *C, int ldc) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void evb_sgemm_nt_naive(int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                        float beta, float *C, int ldc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double acc = 0.0;
            for (int k = 0; k < K; k++) acc += (double)A[(size_t)i * lda + k] * B[(size_t)j * ldb + k];
            float *c = &C[(size_t)i * ldc + j];
            *c = (float)(alpha * acc + (beta != 0.0f ? beta * *c : 0.0f));
        }
}

void evb_sgemm_nn_naive(int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                        float beta, float *C, int ldc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double acc = 0.0;
            for (int k = 0; k < K; k++) acc += (double)A[(size_t)i * lda + k] * B[(size_t)k * ldb + j];
            float *c = &C[(size_t)i * ldc + j];
            *c = (float)(alpha * acc + (beta != 0.0f ? beta * *c : 0.0f));
        }
}

// ---- Gram matrices ----

void evb_gram_f32(float *G, const float *X, int n, int cols) {
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, cols, n, 1.0f, X, cols, 0.0f, G, cols);
    for (int i = 0; i < cols; i++)
        for (int j = 0; j < i; j++) G[(size_t)i * cols + j] = G[(size_t)j * cols + i];
}

void evb_gram_f32_naive(float *G, const float *X, int n, int cols) {
    for (int i = 0; i < cols; i++)
        for (int j = 0; j < cols; j++) {
            double acc = 0.0;
            for (int r = 0; r < n; r++) acc += (double)X[(size_t)r * cols + i] * X[(size_t)r * cols + j];
            G[(size_t)i * cols + j] = (float)acc;
        }
}

/* Rows of X per dgemm call: the block fixes the summation order, whatever the caller's threads. */
#define QUAD_ROWS 64

double evb_quad_trace(const float *A, const float *B, int rows, int cols, const double *G) {
    size_t bc = (size_t)QUAD_ROWS * cols;
    double *X = malloc(sizeof(double) * bc * 2), *GX = X ? X + bc : NULL, total = 0;
    if (!X) return NAN;
    for (int r0 = 0; r0 < rows; r0 += QUAD_ROWS) {
        int n = rows - r0 < QUAD_ROWS ? rows - r0 : QUAD_ROWS;
        const float *a = A + (size_t)r0 * cols, *b = B ? B + (size_t)r0 * cols : NULL;
        for (size_t i = 0; i < (size_t)n * cols; i++) X[i] = b ? (double)a[i] - (double)b[i] : (double)a[i];
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, cols, cols, 1.0, X, cols, G, cols, 0.0, GX, cols);
        for (size_t i = 0; i < (size_t)n * cols; i++) total += X[i] * GX[i];
    }
    free(X);
    return total;
}

double evb_quad_trace_naive(const float *A, const float *B, int rows, int cols, const double *G) {
    double total = 0;
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < cols; i++) {
            size_t ri = (size_t)r * cols;
            double xi = B ? (double)A[ri + i] - (double)B[ri + i] : (double)A[ri + i], gx = 0;
            for (int j = 0; j < cols; j++) gx += G[(size_t)i * cols + j] * (B ? (double)A[ri + j] - (double)B[ri + j] : (double)A[ri + j]);
            total += xi * gx;
        }
    return total;
}
