/* problem_fixture.h -- a problem file with a known optimum for the tests of `search --problem`: U units of
 * 5..9 levels costing 10 + l, fitness w (l - c)^2 (separable and convex, so level switches reach the
 * optimum), the budget at the middle levels; the optimum under the exact budget by dynamic programming. */
#ifndef EVB_PROBLEM_FIXTURE_H
#define EVB_PROBLEM_FIXTURE_H
#include <jansson.h>
#include <stdint.h>
#include <string.h>

enum { PF_U = 16 };

/* Writes the problem to path (tolerance tol) and returns the optimum of the fitness. */
static inline double problem_fixture_write(const char *path, double tol, double *budget_out) {
    int n[PF_U], sum_start = 0;
    double fit[PF_U][9], budget = 0;
    uint64_t x = 99;
    json_t *units = json_array(), *start = json_array();
    for (int u = 0; u < PF_U; u++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        n[u] = 5 + (int)((x >> 33) % 5);
        double w = 0.2 + ((x >> 20) & 1023) / 1024.0, c = ((x >> 40) & 1023) / 1024.0 * (n[u] - 1);
        json_t *lv = json_array();
        for (int l = 0; l < n[u]; l++) {
            fit[u][l] = w * (l - c) * (l - c);
            json_array_append_new(lv, json_pack("{s:f, s:f}", "cost", 10.0 + l, "fitness", fit[u][l]));
        }
        char name[32];
        snprintf(name, sizeof name, "layer%d", u);
        json_array_append_new(units, json_pack("{s:s, s:o}", "name", name, "levels", lv));
        json_array_append_new(start, json_integer(n[u] / 2));
        sum_start += n[u] / 2;
        budget += 10 + n[u] / 2;
    }
    json_t *pj = json_pack("{s:i, s:o, s:f, s:f, s:o}", "format", 1, "units", units, "budget", budget, "tolerance", tol, "start", start);
    json_dump_file(pj, path, JSON_INDENT(1));
    json_decref(pj);
    double best[200];
    for (int s = 0; s < 200; s++) best[s] = s ? 1e300 : 0;
    for (int u = 0; u < PF_U; u++) {
        double next[200];
        for (int s = 0; s < 200; s++) {
            next[s] = 1e300;
            for (int l = 0; l < n[u] && l <= s; l++) if (best[s - l] + fit[u][l] < next[s]) next[s] = best[s - l] + fit[u][l];
        }
        memcpy(best, next, sizeof best);
    }
    if (budget_out) *budget_out = budget;
    return best[sum_start];
}
#endif
