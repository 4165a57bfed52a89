/* search_example.c -- the evobudget library from a C program of its own: a fitness defined here, an EvoPress
 * search on a small problem, then the front. The fitness is a made-up error model: each unit's error grows
 * quadratically with the weights removed, and some units are more sensitive than others. */
#include <evobudget/evobudget.h>
#include <evobudget/evb_search.h>

#include <stdio.h>

enum { U = 12, L = 9 };

typedef struct model_errors { double sensitivity[U]; } model_errors;

static size_t ws_size(const void *params) { (void)params; return 1; }

static int evaluate(const void *params, void *w, const evb_genome *g, const evb_genome *ref, const evb_batch *b,
                    double *fitness) {
    (void)w; (void)ref; (void)b;
    const model_errors *m = params;
    double e = 0;
    for (int u = 0; u < g->n_units; u++) e += m->sensitivity[u] * g->level[u] * g->level[u];
    *fitness = e;
    return EVB_SUCCESS;
}

static const evb_fitness_type my_fitness = {"quadratic-error", ws_size, NULL, NULL, evaluate};

int main(void) {
    /* level l of a unit removes l * 1000 weights of its 10,000: equal steps, so EvoPress trades exactly */
    int n_levels[U];
    double cost_mem[U][L], *cost[U];
    int16_t start[U];
    model_errors m;
    double budget = 0;
    for (int u = 0; u < U; u++) {
        n_levels[u] = L;
        cost[u] = cost_mem[u];
        for (int l = 0; l < L; l++) cost_mem[u][l] = 10000 - 1000.0 * l;
        start[u] = 4;                          /* uniform: 40% removed everywhere */
        budget += cost_mem[u][4];
        m.sensitivity[u] = 1.0 + (u % 4);      /* units 3, 7, 11 are the most sensitive */
    }
    evb_problem p = {U, n_levels, (const double *const *)cost, NULL, budget, 0.5, start, NULL};
    evb_search_params sp = evb_search_default_params();
    sp.generations = 200; sp.n_offspring = 16;
    sp.n_stages = 1; sp.n_survivors[0] = 1; sp.n_tokens[0] = 0;
    evb_search *s = NULL;
    int st = evb_search_alloc(evb_search_evopress, &sp, &p, &s);
    if (!st) st = evb_search_set(s, &my_fitness, &m, 0);
    if (!st) st = EVB_CONTINUE;
    while (st == EVB_CONTINUE) st = evb_search_iterate(s);   /* one generation a call */
    if (st != EVB_SUCCESS) { fprintf(stderr, "search failed: %s\n", evb_last_error()); evb_search_free(s); return 1; }
    int16_t best[U];
    double f;
    evb_search_best(s, best, &f);
    printf("best fitness %.1f (uniform: %.1f)\nlevels:", f, 16.0 * (1 + 2 + 3 + 4) * 3);
    for (int u = 0; u < U; u++) printf(" %d", best[u]);
    evb_front_point front[16];
    int n = evb_search_front(s, front, NULL, 16);
    printf("\nfront: %d point(s), first (cost %.0f, fitness %.1f)\n", n, front[0].cost, front[0].fitness);
    evb_search_free(s);
    return 0;
}
