/* problem.c -- checks and costs of a search problem (see evb_search.h). */
#include "evobudget/evb_search.h"

#include <math.h>
#include <stdio.h>

/* "unit 3 (model.layers.0.mlp.up_proj)" or "unit 3", for messages. */
static const char *unit_label(const evb_problem *p, int u, char *buf, size_t n) {
    if (p->unit_name && p->unit_name[u]) snprintf(buf, n, "unit %d (%s)", u, p->unit_name[u]);
    else snprintf(buf, n, "unit %d", u);
    return buf;
}

int evb_problem_check(const evb_problem *p) {
    char nm[256];
    if (!p) EVB_ERRORF(EVB_EINVAL, "problem: none given");
    if (p->n_units < 1) EVB_ERRORF(EVB_EINVAL, "problem: n_units is %d; a problem needs at least one unit", p->n_units);
    if (!p->n_levels || !p->cost) EVB_ERRORF(EVB_EINVAL, "problem: %s is NULL; every unit needs its level count and costs", p->n_levels ? "cost" : "n_levels");
    if (!(p->tolerance >= 0) || !isfinite(p->tolerance) || !isfinite(p->budget))
        EVB_ERRORF(EVB_EINVAL, "problem: budget %g +- %g; the budget must be finite and the tolerance finite and >= 0", p->budget, p->tolerance);
    double lo = 0, hi = 0;
    for (int u = 0; u < p->n_units; u++) {
        if (p->n_levels[u] < 1 || p->n_levels[u] > 32767)
            EVB_ERRORF(EVB_EINVAL, "problem: %s has %d levels; a unit has 1 to 32767", unit_label(p, u, nm, sizeof nm), p->n_levels[u]);
        if (!p->cost[u]) EVB_ERRORF(EVB_EINVAL, "problem: %s has no costs (cost[%d] is NULL)", unit_label(p, u, nm, sizeof nm), u);
        double a = INFINITY, b = -INFINITY;
        for (int l = 0; l < p->n_levels[u]; l++) {
            double c = p->cost[u][l];
            if (!isfinite(c)) EVB_ERRORF(EVB_EINVAL, "problem: %s level %d has cost %g; costs must be finite", unit_label(p, u, nm, sizeof nm), l, c);
            if (c < a) a = c;
            if (c > b) b = c;
        }
        lo += a; hi += b;
        if (p->group && p->group[u] < 0) EVB_ERRORF(EVB_EINVAL, "problem: %s has group %d; groups are numbers >= 0", unit_label(p, u, nm, sizeof nm), p->group[u]);
    }
    if (p->budget + p->tolerance < lo || p->budget - p->tolerance > hi)
        EVB_ERRORF(EVB_EBUDGET, "budget %.17g (+- %g) is unreachable: the candidates' costs range from %.17g to %.17g "
                   "(hint: choose a target inside that range, or add levels that reach it)", p->budget, p->tolerance, lo, hi);
    if (p->start) {
        for (int u = 0; u < p->n_units; u++)
            if (p->start[u] < 0 || p->start[u] >= p->n_levels[u])
                EVB_ERRORF(EVB_EINVAL, "problem: the start gives %s level %d, outside 0..%d", unit_label(p, u, nm, sizeof nm), p->start[u], p->n_levels[u] - 1);
        double c = evb_problem_cost(p, p->start);
        if (fabs(c - p->budget) > p->tolerance)
            EVB_ERRORF(EVB_EBUDGET, "problem: the start costs %.17g, outside the budget %.17g +- %g "
                       "(hint: give a start that meets the budget, or none to have one filled in)", c, p->budget, p->tolerance);
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

/* Greedy exchange: each step takes the pair (a one level up, c of the same group one level down) that keeps
 * the budget and lowers the summed value most; ties go to the lowest (a, c). */
int evb_problem_additive_optimum(const evb_problem *p, const double *value, int max_levels, int16_t *level) {
    if (!evb_problem_feasible(p, level))
        EVB_ERROR("problem: the additive optimum needs a feasible start", EVB_EINVAL);
    const int U = p->n_units;
    const double eps = 1e-12;
    long cap = 0;
    for (int u = 0; u < U; u++) cap += p->n_levels[u];
    double total = evb_problem_cost(p, level);
    int moves = 0;
    for (long it = 0; it < 4 * cap; it++) {
        int ba = -1, bc = -1;
        double bd = 0, bcost = 0;
        for (int a = 0; a < U; a++) {
            int la = level[a];
            if (la + 1 >= p->n_levels[a]) continue;
            double da = value[(size_t)a * max_levels + la + 1] - value[(size_t)a * max_levels + la];
            double ca = p->cost[a][la + 1] - p->cost[a][la];
            for (int c = 0; c < U; c++) {
                int lc = level[c];
                if (c == a || lc < 1 || (p->group && p->group[c] != p->group[a])) continue;
                double d = da + value[(size_t)c * max_levels + lc - 1] - value[(size_t)c * max_levels + lc];
                double dc = ca + p->cost[c][lc - 1] - p->cost[c][lc];
                int better = d < bd - eps * (fabs(bd) + fabs(d)) && d < -eps;
                if (better && fabs(total + dc - p->budget) <= p->tolerance) { bd = d; ba = a; bc = c; bcost = dc; }
            }
        }
        if (ba < 0) break;
        level[ba]++; level[bc]--;
        total += bcost;
        moves++;
    }
    return moves;
}
