/* naive.h -- the evaluators' naive reference (private, defined in evaluators/kl_sum.c), for the test that
 * compares it with evb_kl_sum. */
#ifndef EVB_EVALUATORS_NAIVE_H
#define EVB_EVALUATORS_NAIVE_H
#include <stddef.h>

/* evb_kl_sum (evb_eval.h) term by term in double, with libm's exp. */
double evb_kl_sum_naive(const float *logp, const float *logq, size_t n, int V);
#endif
