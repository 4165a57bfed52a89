/* testing.h -- the test helpers of every tests/test_<module>.c: checks that print PASS/FAIL with file:line,
 * a failure counter, and evb_test_summary() as the exit code, so that a failing check fails ctest. */
#ifndef EVB_TESTING_H
#define EVB_TESTING_H
#include <math.h>
#include <stdio.h>

static int evb_test_failures = 0;
static int evb_test_checks = 0;

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

static inline int evb_test_summary(void) {
    printf("%d checks, %d failed\n", evb_test_checks, evb_test_failures);
    return evb_test_failures ? 1 : (evb_test_checks ? 0 : 1); /* no checks at all is a failure too */
}

/* Directory of ../shared/data relative to the source tree; set by CMake. */
#ifndef EVB_SHARED_DATA
#define EVB_SHARED_DATA "../shared/data"
#endif
#endif
