/* bench_util.h -- what the benchmark programs share: a monotonic clock, the OpenMP thread count, and the
 * comparison qsort needs for medians. */
#ifndef EVB_BENCH_UTIL_H
#define EVB_BENCH_UTIL_H
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static inline double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static inline int bench_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

static inline int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
#endif
