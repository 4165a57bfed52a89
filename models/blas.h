/* blas.h -- the project's matrix kernels (private). models/blas.c is the only file that includes cblas.h
 * (OpenBLAS's cblas.h cannot share a translation unit with gsl/gsl_blas.h). Every fast kernel has its naive
 * reference beside it; tests/test_blas.c compares them. */
#ifndef EVB_MODELS_BLAS_H
#define EVB_MODELS_BLAS_H
#include <stddef.h>

/* Makes OpenBLAS single-threaded: the engine parallelises with OpenMP itself (over rows of a projection or
 * over candidates), so the two thread pools never compete for the cores. Idempotent. */
void evb_blas_init(void);

/* evb_blas_library() is public: include/evobudget/evobudget.h. */
const char *evb_blas_library(void);

/* Threads OpenMP will use for the forward pass (1 without OpenMP). */
int evb_blas_max_threads(void);

/* Rows per slice of a projection: every projection (float32 here, bfloat16 in bf16.c) cuts its rows into
 * slices of this height whatever the thread count, each one single-threaded call, because a library's result
 * for a row can depend on how many rows share its call; so results do not depend on the threads. */
#define EVB_SLICE_ROWS 512

/* out[M, N] += bias[N] (nothing when bias is NULL). */
void evb_add_bias(float *out, const float *bias, int M, int N);

/* out[M, N] = x[M, K] . W[N, K]^T (+ bias[N] when non-NULL). The rows of x are split over the OpenMP
 * threads, each running a single-threaded sgemm on its slice. */
void evb_matmul_wt(float *out, const float *x, const float *W, const float *bias, int M, int K, int N);
void evb_matmul_wt_naive(float *out, const float *x, const float *W, const float *bias, int M, int K, int N);

/* C[M, N] = alpha A[M, K] . B[N, K]^T + beta C, with leading dimensions (single-threaded). */
void evb_sgemm_nt(int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                  float beta, float *C, int ldc);
/* C[M, N] = alpha A[M, K] . B[K, N] + beta C, with leading dimensions (single-threaded). */
void evb_sgemm_nn(int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                  float beta, float *C, int ldc);
void evb_sgemm_nt_naive(int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                        float beta, float *C, int ldc);
void evb_sgemm_nn_naive(int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                        float beta, float *C, int ldc);

/* G[cols, cols] = X^T X for X [n, cols] (float, single-threaded; the full square is written). */
void evb_gram_f32(float *G, const float *X, int n, int cols);
void evb_gram_f32_naive(float *G, const float *X, int n, int cols);

/* sum over the rows x of X [rows, cols] of x^T G x, where X = A - B (the difference taken in double; B NULL:
 * X = A) and G [cols, cols] is a double matrix (single-threaded; blocks of rows through dgemm). NAN when out of
 * memory. tr(X G X^T): the reconstruction error's numerator and denominator. */
double evb_quad_trace(const float *A, const float *B, int rows, int cols, const double *G);
double evb_quad_trace_naive(const float *A, const float *B, int rows, int cols, const double *G);
#endif
