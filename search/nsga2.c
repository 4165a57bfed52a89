/* nsga2.c -- NSGA-II over (cost, fitness) on integer level vectors (Deb et al. 2002; baselines.md 5.1):
 * fast non-dominated sort, crowding distance, binary tournaments under the crowded comparison, uniform
 * crossover and +-1 level mutations (probability 1/U per unit), each child repaired into the budget window
 * [budget - tolerance, budget + tolerance]. The front reported is the non-dominated set of every candidate
 * scored, so it is not capped by the population size. Every candidate is scored on one fixed batch (the first stage's
 * size), so fitnesses compare across generations and repeats are memoised. The incumbent (evb_search_best) is
 * the lowest fitness among the population's candidates that cost at most the budget. */
#include "search/search_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static evb_batch fixed_batch(const evb_search *s) { return evb_stage_batch_(s, 0, 0, s->p.n_tokens[0]); }

/* rank[n] (0 = first front) and crowd[n] of points (c, f). */
static int sort_fronts(const double *c, const double *f, int n, int *rank, double *crowd) {
    int *cnt = calloc((size_t)n, sizeof(int)), *front = malloc(sizeof(int) * n), *next = malloc(sizeof(int) * n);
    char *dom = malloc((size_t)n * n);
    if (!cnt || !front || !next || !dom) { free(cnt); free(front); free(next); free(dom); return EVB_ENOMEM; }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            int d = (c[i] <= c[j] && f[i] <= f[j]) && (c[i] < c[j] || f[i] < f[j]);
            dom[(size_t)i * n + j] = (char)d;
            if (d) cnt[j]++;
        }
    int nf = 0;
    for (int i = 0; i < n; i++) if (!cnt[i]) { front[nf++] = i; rank[i] = 0; }
    for (int r = 0; nf; r++) {
        /* crowding distance of this front, by each objective */
        for (int k = 0; k < nf; k++) crowd[front[k]] = 0;
        for (int obj = 0; obj < 2; obj++) {
            const double *v = obj ? f : c;
            for (int a = 1; a < nf; a++) { /* insertion sort by v, ties by index */
                int x = front[a], b = a - 1;
                while (b >= 0 && (v[front[b]] > v[x] || (v[front[b]] == v[x] && front[b] > x))) { front[b + 1] = front[b]; b--; }
                front[b + 1] = x;
            }
            double lo = v[front[0]], hi = v[front[nf - 1]];
            crowd[front[0]] = crowd[front[nf - 1]] = INFINITY;
            if (hi > lo)
                for (int k = 1; k + 1 < nf; k++) crowd[front[k]] += (v[front[k + 1]] - v[front[k - 1]]) / (hi - lo);
        }
        int nn = 0;
        for (int k = 0; k < nf; k++)
            for (int j = 0; j < n; j++)
                if (dom[(size_t)front[k] * n + j] && --cnt[j] == 0) { rank[j] = r + 1; next[nn++] = j; }
        memcpy(front, next, sizeof(int) * nn);
        nf = nn;
    }
    free(cnt); free(front); free(next); free(dom);
    return EVB_SUCCESS;
}

static int better(const int *rank, const double *crowd, int a, int b) {
    if (rank[a] != rank[b]) return rank[a] < rank[b];
    if (crowd[a] != crowd[b]) return crowd[a] > crowd[b];
    return a < b;
}

static void set_best(evb_search *s) {
    int best = -1;
    for (int i = 0; i < s->pop_n; i++)
        if (s->pop_cost[i] <= s->prob.budget + 1e-9 * fabs(s->prob.budget) && (best < 0 || s->pop_fit[i] < s->pop_fit[best])) best = i;
    if (best < 0) /* nothing at or under the budget: the one nearest to it */
        for (int i = 0; i < s->pop_n; i++)
            if (best < 0 || fabs(s->pop_cost[i] - s->prob.budget) < fabs(s->pop_cost[best] - s->prob.budget)) best = i;
    memcpy(s->parent, s->pop + (size_t)best * s->U, sizeof(int16_t) * s->U);
    s->parent_fit = s->pop_fit[best];
    s->parent_cost = s->pop_cost[best];
}

static int nsga_init(evb_search *s) {
    int N = s->p.n_offspring, U = s->U, m = 0;
    /* kept across a failed first generation, which runs init again */
    if (!s->pop) s->pop = malloc(sizeof(int16_t) * U * N);
    if (!s->pop_fit) s->pop_fit = malloc(sizeof(double) * N);
    if (!s->pop_cost) s->pop_cost = malloc(sizeof(double) * N);
    if (!s->pop || !s->pop_fit || !s->pop_cost) EVB_ERROR("search: out of memory", EVB_ENOMEM);
    memcpy(s->pop, s->start, sizeof(int16_t) * U);
    m = 1;
    /* the rest: the start with every unit moved at random by up to a quarter of its levels, repaired */
    for (int i = 0; m < N && i < 100 * N; i++) {
        uint64_t r = evb_rng_stream_(s->p.seed, -1, i, RNG_INIT);
        int16_t *c = s->pop + (size_t)m * U;
        for (int u = 0; u < U; u++) {
            int span = s->n_levels[u] / 4 + 1, l = s->start[u] + evb_rng_int_(&r, 2 * span + 1) - span;
            c[u] = (int16_t)(l < 0 ? 0 : l >= s->n_levels[u] ? s->n_levels[u] - 1 : l);
        }
        if (evb_problem_feasible(&s->prob, c) || evb_repair_(s, c, &r)) m++;
    }
    s->pop_n = m;
    evb_batch b = fixed_batch(s);
    int st = evb_search_evaluate(s, s->pop, m, NULL, &b, s->pop_fit);
    for (int i = 0; i < m; i++) {
        s->pop_cost[i] = evb_problem_cost(&s->prob, s->pop + (size_t)i * U);
        if (!st) evb_archive_add_(s, s->pop + (size_t)i * U, s->pop_cost[i], s->pop_fit[i], &b);
    }
    if (!st) set_best(s);
    return st;
}

/* The surrogate's choice among the children all[N, n): the N - N / 2 best under the crowded comparison of
 * (cost, predicted fitness) and the earliest N / 2 of the rest (a random sample, as in EvoPress's choice: the
 * model never sees what it rates badly otherwise), kept in proposal order at all[N, 2N); pred[N] their
 * predictions. Returns the new n. */
static int choose_children(evb_search *s, int16_t *all, int N, int n, double *c, double *f, int *rank, double *crowd, double *pred) {
    int U = s->U, m = n - N;
    if (m <= N) { for (int i = 0; i < m; i++) pred[i] = evb_sur_predict_(s, all + (size_t)(N + i) * U); return n; }
    int *order = malloc(sizeof(int) * (size_t)m);
    char *keep = calloc((size_t)m, 1);
    if (!order || !keep) { free(order); free(keep); return -1; }
    for (int i = 0; i < m; i++) { c[i] = evb_problem_cost(&s->prob, all + (size_t)(N + i) * U); f[i] = evb_sur_predict_(s, all + (size_t)(N + i) * U); }
    int st = sort_fronts(c, f, m, rank, crowd);
    for (int i = 0; i < m; i++) order[i] = i;
    for (int a = 1; !st && a < m; a++) {
        int x = order[a], q = a - 1;
        while (q >= 0 && better(rank, crowd, x, order[q])) { order[q + 1] = order[q]; q--; }
        order[q + 1] = x;
    }
    for (int i = 0; i < N - N / 2; i++) keep[order[i]] = 1;
    evb_sur_keep_rest_(keep, m, N - N / 2, N);
    int k = 0;
    for (int i = 0; i < m; i++) {
        if (!keep[i]) continue;
        if (k != i) memcpy(all + (size_t)(N + k) * U, all + (size_t)(N + i) * U, sizeof(int16_t) * U);
        pred[k++] = f[i];
    }
    free(order); free(keep);
    return st ? -1 : N + k;
}

static int nsga_iterate(evb_search *s) {
    int st0 = s->p.surrogate ? evb_sur_fit_(s) : EVB_SUCCESS;
    if (st0) return st0;
    int N = s->pop_n, U = s->U, gen = s->generation, P = s->sur_ready ? s->p.surrogate * N : N, T = N + P;
    int16_t *all = malloc(sizeof(int16_t) * U * T);
    double *c = malloc(sizeof(double) * T), *f = malloc(sizeof(double) * T), *crowd = malloc(sizeof(double) * T);
    int *rank = malloc(sizeof(int) * T), *order = malloc(sizeof(int) * T);
    double *pred = malloc(sizeof(double) * T);
    if (!all || !c || !f || !crowd || !rank || !order || !pred) { free(all); free(c); free(f); free(crowd); free(rank); free(order); free(pred); EVB_ERROR("search: out of memory", EVB_ENOMEM); }
    memcpy(all, s->pop, sizeof(int16_t) * U * N);
    memcpy(c, s->pop_cost, sizeof(double) * N);
    memcpy(f, s->pop_fit, sizeof(double) * N);
    int st = sort_fronts(c, f, N, rank, crowd);
    int n = N;
    for (int k = 0; !st && n < T && k < 100 * (T - N); k++) {
        uint64_t r = evb_rng_stream_(s->p.seed, gen, k, RNG_CROSS);
        int a1 = evb_rng_int_(&r, N), a2 = evb_rng_int_(&r, N), b1 = evb_rng_int_(&r, N), b2 = evb_rng_int_(&r, N);
        int pa = better(rank, crowd, a1, a2) ? a1 : a2, pb = better(rank, crowd, b1, b2) ? b1 : b2;
        int16_t *ch = all + (size_t)n * U;
        for (int u = 0; u < U; u++) {
            ch[u] = (evb_splitmix64(&r) & 1) ? all[(size_t)pa * U + u] : all[(size_t)pb * U + u];
            if (evb_rng_unit_(&r) < 1.0 / U) {
                int l = ch[u] + ((evb_splitmix64(&r) & 1) ? 1 : -1);
                if (l >= 0 && l < s->n_levels[u]) ch[u] = (int16_t)l;
            }
        }
        if (!evb_problem_feasible(&s->prob, ch) && !evb_repair_(s, ch, &r)) continue;
        n++;
    }
    if (!st && s->sur_ready) { /* c, f, rank, crowd are scratch here: set again below */
        n = choose_children(s, all, N, n, c + N, f + N, rank, crowd, pred);
        if (n < 0) st = EVB_RAISEF(EVB_ENOMEM, "search: out of memory");
        else { memcpy(c, s->pop_cost, sizeof(double) * N); memcpy(f, s->pop_fit, sizeof(double) * N); st = sort_fronts(c, f, N, rank, crowd); }
    }
    evb_batch b = fixed_batch(s);
    if (!st) st = evb_search_evaluate(s, all + (size_t)N * U, n - N, NULL, &b, f + N);
    if (!st && s->p.surrogate) s->sur_rho = s->sur_ready ? evb_spearman_(pred, f + N, n - N) : NAN;
    for (int i = N; i < n; i++) {
        c[i] = evb_problem_cost(&s->prob, all + (size_t)i * U);
        if (!st) evb_archive_add_(s, all + (size_t)i * U, c[i], f[i], &b);
    }
    if (!st) st = sort_fronts(c, f, n, rank, crowd);
    if (!st) {
        /* the N best under the crowded comparison: by rank, then crowding distance */
        for (int i = 0; i < n; i++) order[i] = i;
        for (int a = 1; a < n; a++) {
            int x = order[a], q = a - 1;
            while (q >= 0 && better(rank, crowd, x, order[q])) { order[q + 1] = order[q]; q--; }
            order[q + 1] = x;
        }
        for (int i = 0; i < N; i++) {
            memcpy(s->pop + (size_t)i * U, all + (size_t)order[i] * U, sizeof(int16_t) * U);
            s->pop_fit[i] = f[order[i]];
            s->pop_cost[i] = c[order[i]];
        }
        set_best(s);
    }
    free(all); free(c); free(f); free(crowd); free(rank); free(order); free(pred);
    return st;
}

/* The initial population, then a population's worth of children, all on the fixed batch. */
static size_t nsga_next_tokens(const evb_search *s) {
    size_t per = evb_batch_tokens_(s, s->p.n_tokens[0]), N = (size_t)(s->initialized ? s->pop_n : s->p.n_offspring);
    return (s->initialized ? 0 : N * per) + N * per;
}

const struct evb_search_ops evb_nsga2_ops_ = {nsga_init, nsga_iterate, nsga_next_tokens};
