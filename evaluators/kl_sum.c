/* kl_sum.c -- the KL divergence kernel of every KL evaluation (evb_kl_sum, see evb_eval.h): the KL fitness
 * (evaluators/kl.c) and the held-out scoring (evaluators/perplexity.c). Built on the forward's exp and
 * fixed-lane sums (models/exp_fast.h), so that its result depends on n and V alone; its naive reference
 * (evaluators/naive.h) is below it, and tests/test_forward.c compares the two. */
#include "evobudget/evb_eval.h"
#include "evaluators/naive.h"
#include "models/exp_fast.h"

#include <math.h>
#include <string.h>

double evb_kl_sum(const float *logp, const float *logq, size_t n, int V) {
    /* Rows in order, each in blocks: exp of a block of log p, then its dot with (log p - log q) over fixed
     * lanes. The order of every sum is fixed by n and V alone. */
    double total = 0.0;
    enum { BLOCK = 1024 };
    float e[BLOCK], d[BLOCK];
    for (size_t r = 0; r < n; r++) {
        const float *p = logp + r * V, *q = logq + r * V;
        double row = 0.0;
        for (int i0 = 0; i0 < V; i0 += BLOCK) {
            int m = V - i0 < BLOCK ? V - i0 : BLOCK;
            memcpy(e, p + i0, sizeof(float) * m);
            exp_sub(e, m, 0.0f);
            for (int i = 0; i < m; i++) d[i] = e[i] * (p[i0 + i] - q[i0 + i]);
            row += sum_lanes(d, m);
        }
        total += row;
    }
    return total;
}

// ---- naive reference ----

double evb_kl_sum_naive(const float *logp, const float *logq, size_t n, int V) {
    double total = 0.0;
    for (size_t r = 0; r < n; r++)
        for (int i = 0; i < V; i++) {
            double p = logp[r * V + i], q = logq[r * V + i];
            total += exp(p) * (p - q);
        }
    return total;
}
