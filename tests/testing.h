/* testing.h -- the test helpers of every tests/test_<module>.c: checks that print PASS/FAIL with file:line,
 * a failure counter, and evb_test_summary() as the exit code, so that a failing check fails ctest. */
#ifndef EVB_TESTING_H
#define EVB_TESTING_H
#include <math.h>
#include <stdio.h>

static int evb_test_failures = 0;
static int evb_test_checks = 0;
static int evb_test_skips = 0;   /* parts skipped because real data outside the repository is missing */

/* ctest's SKIP_RETURN_CODE (tests/CMakeLists.txt): the test ran what it could and skipped the rest. */
#define EVB_TEST_SKIPPED 77

#define EVB_CHECK(cond, ...) do {                                                        \
    evb_test_checks++;                                                                   \
    int ok_ = (cond) ? 1 : 0;                                                            \
    if (!ok_) evb_test_failures++;                                                       \
    printf("%s %s:%d ", ok_ ? "PASS" : "FAIL", __FILE__, __LINE__);                      \
    printf(__VA_ARGS__); printf("\n");                                                   \
} while (0)

/* |x - expected| <= tol * max(1, |expected|) */
#define EVB_CHECK_REL(x, expected, tol, ...) do {                                        \
    double x_ = (double)(x), e_ = (double)(expected);                                    \
    double s_ = fabs(e_) > 1.0 ? fabs(e_) : 1.0;                                         \
    evb_test_checks++;                                                                   \
    int ok_ = (fabs(x_ - e_) <= (tol) * s_) && !isnan(x_);                               \
    if (!ok_) evb_test_failures++;                                                       \
    printf("%s %s:%d ", ok_ ? "PASS" : "FAIL", __FILE__, __LINE__);                      \
    printf(__VA_ARGS__); printf(" (got %.9g, expected %.9g, tol %.3g)\n", x_, e_, (double)(tol)); \
} while (0)

/* The exit code: 1 on any failure; EVB_TEST_SKIPPED when a part was skipped (what ran passed); 1 when nothing
 * was checked and nothing skipped (a test that checks nothing is a failure too); else 0. */
static inline int evb_test_summary(void) {
    printf("%d checks, %d failed, %d parts skipped\n", evb_test_checks, evb_test_failures, evb_test_skips);
    if (evb_test_failures) return 1;
    if (evb_test_skips) return EVB_TEST_SKIPPED;
    return evb_test_checks ? 0 : 1;
}

/* The largest |a_i - b_i| over n values. */
static inline double evb_test_max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m)) m = d;
    }
    return m;
}

/* Directory of ../shared/data relative to the source tree; set by CMake. */
#ifndef EVB_SHARED_DATA
#define EVB_SHARED_DATA "../shared/data"
#endif

/* Real data that the project does not ship (stories260K and its reference outputs, the text corpora) is read
 * from EVB_SHARED_DATA. evb_test_have(path, part) is 1 when path is readable; otherwise it prints one SKIP line
 * naming the missing file, the part of the test that needs it and where to put it, counts the skip, and is 0.
 * The caller then leaves that part out and runs the rest. */
static inline int evb_test_readable(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}

static inline int evb_test_have(const char *path, const char *part) {
    if (evb_test_readable(path)) return 1;
    evb_test_skips++;
    printf("SKIP %s: %s is missing (hint: put the project's real test data in %s, beside the repository)\n",
           part, path, EVB_SHARED_DATA);
    return 0;
}
#endif
