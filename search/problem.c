/* problem.c -- checks and costs of a search problem (see evb_search.h). */
#include "evobudget/evb_search.h"

#include <math.h>

int evb_problem_check(const evb_problem *p) {
    if (!p || p->n_units < 1 || !p->n_levels || !p->cost) EVB_ERRORF(EVB_EINVAL, "problem: no units");
    if (!(p->tolerance >= 0) || !isfinite(p->budget)) EVB_ERRORF(EVB_EINVAL, "problem: budget %g +- %g", p->budget, p->tolerance);
    double lo = 0, hi = 0;
    for (int u = 0; u < p->n_units; u++) {
        if (p->n_levels[u] < 1 || p->n_levels[u] > 32767)
            EVB_ERRORF(EVB_EINVAL, "problem: unit %d has %d levels (1..32767)", u, p->n_levels[u]);
        double a = INFINITY, b = -INFINITY;
        for (int l = 0; l < p->n_levels[u]; l++) {
            double c = p->cost[u][l];
            if (!isfinite(c)) EVB_ERRORF(EVB_EINVAL, "problem: unit %d level %d has cost %g", u, l, c);
            if (c < a) a = c;
            if (c > b) b = c;
        }
        lo += a; hi += b;
        if (p->group && p->group[u] < 0) EVB_ERRORF(EVB_EINVAL, "problem: unit %d has group %d", u, p->group[u]);
    }
    if (p->budget + p->tolerance < lo || p->budget - p->tolerance > hi)
        EVB_ERRORF(EVB_EBUDGET, "budget %.17g is unreachable: candidates cost from %.17g to %.17g (hint: choose a target "
                   "inside the levels the database holds)", p->budget, lo, hi);
    if (p->start) {
        for (int u = 0; u < p->n_units; u++)
            if (p->start[u] < 0 || p->start[u] >= p->n_levels[u])
                EVB_ERRORF(EVB_EINVAL, "problem: the start gives unit %d level %d of %d", u, p->start[u], p->n_levels[u]);
        double c = evb_problem_cost(p, p->start);
        if (fabs(c - p->budget) > p->tolerance)
            EVB_ERRORF(EVB_EBUDGET, "problem: the start costs %.17g, outside the budget %.17g +- %g", c, p->budget, p->tolerance);
    }
    return EVB_SUCCESS;
}

double evb_problem_cost(const evb_problem *p, const int16_t *level) {
    double c = 0;
    for (int u = 0; u < p->n_units; u++) c += p->cost[u][level[u]];
    return c;
}

int evb_problem_feasible(const evb_problem *p, const int16_t *level) {
    for (int u = 0; u < p->n_units; u++)
        if (level[u] < 0 || level[u] >= p->n_levels[u]) return 0;
    return fabs(evb_problem_cost(p, level) - p->budget) <= p->tolerance;
}
