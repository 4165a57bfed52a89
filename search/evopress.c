/* evopress.c -- EvoPress's (1+lambda) search with level-switch mutation and multi-step selection
 * (shared/reference/evopress.md section 2), and the moves every search type shares. */
#include "search/search_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// ---- moves ----

int evb_switch_(const evb_search *s, int16_t *lv, uint64_t *r) {
    /* groups where a unit can go down and one (maybe the same) can go up, weighted by their size */
    int G = s->n_groups, total = 0;
    int *size = calloc((size_t)G * 3, sizeof(int)), *down = size + G, *up = size + 2 * G;
    if (!size) return 0;
    for (int u = 0; u < s->U; u++) {
        size[s->group[u]]++;
        down[s->group[u]] += lv[u] > 0;
        up[s->group[u]] += lv[u] < s->n_levels[u] - 1;
    }
    for (int g = 0; g < G; g++) if (down[g] && up[g]) total += size[g];
    if (!total) { free(size); return 0; }
    int pick = evb_rng_int_(r, total), g = 0;
    for (; g < G; g++) if (down[g] && up[g]) { if (pick < size[g]) break; pick -= size[g]; }
    int a = evb_rng_int_(r, down[g]), b = evb_rng_int_(r, up[g]), ua = -1, ub = -1;
    for (int u = 0; u < s->U; u++) {
        if (s->group[u] != g) continue;
        if (lv[u] > 0 && a-- == 0) ua = u;
        if (lv[u] < s->n_levels[u] - 1 && b-- == 0) ub = u;
    }
    free(size);
    lv[ua]--; lv[ub]++; /* the two may coincide: a no-op, as in the paper */
    return 1;
}

int evb_repair_(const evb_search *s, int16_t *lv, uint64_t *r) {
    for (int it = 0; it < 64 * s->U + 64; it++) {
        double c = evb_problem_cost(&s->prob, lv), gap = s->prob.budget - c;
        if (fabs(gap) <= s->prob.tolerance) return 1;
        int u = evb_rng_int_(r, s->U), l = lv[u];
        /* the neighbouring level of this unit that moves the total toward the budget */
        int best = -1;
        for (int d = -1; d <= 1; d += 2) {
            int k = l + d;
            if (k < 0 || k >= s->n_levels[u]) continue;
            double step = s->cost[u][k] - s->cost[u][l];
            if ((gap > 0 && step > 0) || (gap < 0 && step < 0)) best = k;
        }
        if (best >= 0) lv[u] = (int16_t)best;
    }
    return evb_problem_feasible(&s->prob, lv);
}

int evb_random_candidate_(const evb_search *s, int16_t *lv, uint64_t *r) {
    memcpy(lv, s->start, sizeof(int16_t) * s->U);
    int walk = 8 * s->U + 16;
    for (int i = 0; i < walk; i++) evb_switch_(s, lv, r);
    return evb_problem_feasible(&s->prob, lv) || evb_repair_(s, lv, r);
}

// ---- the (1 + lambda) search ----

static int evo_init(evb_search *s) {
    memcpy(s->parent, s->start, sizeof(int16_t) * s->U);
    s->parent_fit = INFINITY;
    s->parent_cost = evb_problem_cost(&s->prob, s->parent);
    if (s->p.n_initial <= 0) return EVB_SUCCESS;
    /* EvoPress's initial population: random feasible candidates scored on initial_tokens, the best kept */
    int n = s->p.n_initial, U = s->U;
    int16_t *c = malloc(sizeof(int16_t) * U * n);
    double *f = malloc(sizeof(double) * n);
    if (!c || !f) { free(c); free(f); EVB_ERROR("search: out of memory", EVB_ENOMEM); }
    /* a start from a prior (evb_search_set_prior) is an informed candidate: it joins the population */
    int m = s->sur_has_prior;
    if (m) memcpy(c, s->start, sizeof(int16_t) * U);
    for (int i = 0; m < n && i < 100 * n; i++) {
        uint64_t r = evb_rng_stream_(s->p.seed, -1, i, RNG_INIT);
        if (evb_random_candidate_(s, c + (size_t)m * U, &r)) m++;
    }
    evb_batch b = evb_stage_batch_(s, -1, 0, s->p.initial_tokens);
    int st = m ? evb_search_evaluate(s, c, m, NULL, &b, f) : EVB_SUCCESS;
    if (!st && m) {
        int best = 0;
        for (int i = 1; i < m; i++) if (f[i] < f[best]) best = i;
        memcpy(s->parent, c + (size_t)best * U, sizeof(int16_t) * U);
        s->parent_cost = evb_problem_cost(&s->prob, s->parent);
    }
    free(c); free(f);
    return st;
}

typedef struct ranked { double f; int i; } ranked;
static int cmp_ranked(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->f != y->f) return x->f < y->f ? -1 : 1;
    return x->i - y->i;
}

/* The surrogate's choice: of the n proposals in off, the lambda - lambda / 2 of lowest predicted fitness (ties:
 * the earlier proposal) and, for the other lambda / 2, the earliest of the rest (a random sample: the proposals
 * are random), moved to the front of off in proposal order, their predictions in pred; returns how many. Half
 * at random keeps the search from starving on the model's blind spots: chosen only by the model, the
 * offspring cluster on the moves it favours, the parent stops being beaten when the model is wrong about them
 * (2.5 bits on the demo model: held-out KL 0.00546 against 0.00389 with the half at random), and the model
 * never sees the moves it rates badly. */
static int choose_offspring(evb_search *s, int16_t *off, int n, int lambda, double *pred) {
    const int U = s->U;
    ranked *rk = malloc(sizeof(ranked) * (size_t)n);
    char *keep = calloc((size_t)n, 1);
    if (!rk || !keep) { free(rk); free(keep); return -1; }
    for (int i = 0; i < n; i++) rk[i] = (ranked){evb_sur_predict_(s, off + (size_t)i * U), i};
    qsort(rk, (size_t)n, sizeof *rk, cmp_ranked);
    const int by_model = lambda - lambda / 2;
    for (int i = 0; i < by_model && i < n; i++) keep[rk[i].i] = 1;
    evb_sur_keep_rest_(keep, n, by_model < n ? by_model : n, lambda);
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (!keep[i]) continue;
        if (m != i) memcpy(off + (size_t)m * U, off + (size_t)i * U, sizeof(int16_t) * U);
        pred[m] = evb_sur_predict_(s, off + (size_t)m * U);
        m++;
    }
    free(rk); free(keep);
    return m;
}

static int evo_iterate(evb_search *s) {
    const int U = s->U, lambda = s->p.n_offspring, gen = s->generation;
    /* with a surrogate (once it has data), K lambda proposals of which the lambda best predicted are scored */
    int st = s->p.surrogate ? evb_sur_fit_(s) : EVB_SUCCESS;
    if (st) return st;
    const int propose = s->sur_ready ? s->p.surrogate * lambda : lambda;
    int16_t *off = malloc(sizeof(int16_t) * U * (propose + 1)), *cand = malloc(sizeof(int16_t) * U * (lambda + 1));
    double *fit = malloc(sizeof(double) * (lambda + 1)), *pred = malloc(sizeof(double) * (lambda + 1));
    ranked *rk = malloc(sizeof(ranked) * (lambda + 1));
    if (!off || !cand || !fit || !rk || !pred) { free(off); free(cand); free(fit); free(rk); free(pred); EVB_ERROR("search: out of memory", EVB_ENOMEM); }
    /* offspring: r = min(U{1..R}, U{1..R}) switches from the parent, new and feasible */
    int n = 0;
    for (int attempt = 0; n < propose && attempt < 1000 * propose; attempt++) {
        uint64_t r = evb_rng_stream_(s->p.seed, gen, attempt, RNG_MUTATE);
        int16_t *c = off + (size_t)n * U;
        memcpy(c, s->parent, sizeof(int16_t) * U);
        int k1 = 1 + evb_rng_int_(&r, s->p.max_mutations), k2 = 1 + evb_rng_int_(&r, s->p.max_mutations);
        int k = k1 < k2 ? k1 : k2;
        for (int j = 0; j < k; j++) evb_switch_(s, c, &r);
        if (!evb_problem_feasible(&s->prob, c) && !evb_repair_(s, c, &r)) continue;
        if (!memcmp(c, s->parent, sizeof(int16_t) * U)) continue;
        int dup = 0;
        for (int i = 0; i < n && !dup; i++) dup = !memcmp(off + (size_t)i * U, c, sizeof(int16_t) * U);
        if (!dup) n++;
    }
    if (n == 0) {
        free(off); free(cand); free(fit); free(rk); free(pred);
        EVB_ERRORF(EVB_EBUDGET, "search: no feasible offspring differs from the parent at generation %d (hint: the levels leave no room to trade under this budget)", gen);
    }
    if (s->sur_ready && (n = choose_offspring(s, off, n, lambda, pred)) < 0) {
        free(off); free(cand); free(fit); free(rk); free(pred);
        EVB_ERROR("search: out of memory", EVB_ENOMEM);
    }
    /* multi-step selection: every stage on one shared batch, the parent joins the last */
    int m = n;
    memcpy(cand, off, sizeof(int16_t) * U * n);
    for (int j = 0; j < s->p.n_stages && !st; j++) {
        int last = j == s->p.n_stages - 1;
        if (last) { memcpy(cand + (size_t)m * U, s->parent, sizeof(int16_t) * U); m++; }
        evb_batch b = evb_stage_batch_(s, gen, j, s->p.n_tokens[j]);
        st = evb_search_evaluate(s, cand, m, s->parent, &b, fit);
        if (st) break;
        if (j == 0 && s->p.surrogate) s->sur_rho = s->sur_ready ? evb_spearman_(pred, fit, n) : NAN; /* stage 0: the offspring as chosen */
        for (int i = 0; i < m; i++) rk[i] = (ranked){fit[i], i};
        qsort(rk, (size_t)m, sizeof *rk, cmp_ranked);
        if (last) {
            for (int i = 0; i < m; i++) {
                const int16_t *c = cand + (size_t)i * U;
                evb_archive_add_(s, c, evb_problem_cost(&s->prob, c), fit[i], &b);
            }
            memcpy(s->parent, cand + (size_t)rk[0].i * U, sizeof(int16_t) * U);
            s->parent_fit = rk[0].f;
            s->parent_cost = evb_problem_cost(&s->prob, s->parent);
            break;
        }
        int keep = s->p.n_survivors[j] < m ? s->p.n_survivors[j] : m;
        int16_t *next = off; /* reuse the offspring buffer for the survivors */
        for (int i = 0; i < keep; i++) memcpy(next + (size_t)i * U, cand + (size_t)rk[i].i * U, sizeof(int16_t) * U);
        memcpy(cand, next, sizeof(int16_t) * U * keep);
        m = keep;
    }
    free(off); free(cand); free(fit); free(rk); free(pred);
    return st;
}

/* lambda offspring on stage 0, each stage's survivors on the next, the parent on the last. */
static size_t evo_next_tokens(const evb_search *s) {
    size_t t = s->initialized ? 0 : (size_t)s->p.n_initial * evb_batch_tokens_(s, s->p.initial_tokens);
    for (int j = 0; j < s->p.n_stages; j++)
        t += (size_t)(j ? s->p.n_survivors[j - 1] : s->p.n_offspring) * evb_batch_tokens_(s, s->p.n_tokens[j]);
    return t + evb_batch_tokens_(s, s->p.n_tokens[s->p.n_stages - 1]);
}

const struct evb_search_ops evb_evopress_ops_ = {evo_init, evo_iterate, evo_next_tokens};

// ---- baselines: the start itself, best of n random ----

static int last_stage_batch(const evb_search *s, evb_batch *b) {
    *b = evb_stage_batch_(s, 0, s->p.n_stages - 1, s->p.n_tokens[s->p.n_stages - 1]);
    return 0;
}

static int uniform_init(evb_search *s) { (void)s; return EVB_SUCCESS; }

static int uniform_iterate(evb_search *s) {
    evb_batch b;
    last_stage_batch(s, &b);
    double f;
    int st = evb_search_evaluate(s, s->start, 1, NULL, &b, &f);
    if (st) return st;
    memcpy(s->parent, s->start, sizeof(int16_t) * s->U);
    s->parent_fit = f;
    s->parent_cost = evb_problem_cost(&s->prob, s->start);
    evb_archive_add_(s, s->parent, s->parent_cost, f, &b);
    return EVB_SUCCESS;
}

static int random_iterate(evb_search *s) {
    int n = s->p.n_initial > 0 ? s->p.n_initial : 32, U = s->U, m = 0;
    int16_t *c = malloc(sizeof(int16_t) * U * n);
    double *f = malloc(sizeof(double) * n);
    if (!c || !f) { free(c); free(f); EVB_ERROR("search: out of memory", EVB_ENOMEM); }
    for (int i = 0; m < n && i < 100 * n; i++) {
        uint64_t r = evb_rng_stream_(s->p.seed, -1, i, RNG_INIT);
        if (evb_random_candidate_(s, c + (size_t)m * U, &r)) m++;
    }
    evb_batch b;
    last_stage_batch(s, &b);
    int st = m ? evb_search_evaluate(s, c, m, NULL, &b, f) : EVB_RAISEF(EVB_EBUDGET, "search: no random feasible candidate found");
    if (!st) {
        int best = 0;
        for (int i = 0; i < m; i++) {
            evb_archive_add_(s, c + (size_t)i * U, evb_problem_cost(&s->prob, c + (size_t)i * U), f[i], &b);
            if (f[i] < f[best]) best = i;
        }
        memcpy(s->parent, c + (size_t)best * U, sizeof(int16_t) * U);
        s->parent_fit = f[best];
        s->parent_cost = evb_problem_cost(&s->prob, s->parent);
    }
    free(c); free(f);
    return st;
}

static size_t uniform_next_tokens(const evb_search *s) { return evb_batch_tokens_(s, s->p.n_tokens[s->p.n_stages - 1]); }
static size_t random_next_tokens(const evb_search *s) {
    return (size_t)(s->p.n_initial > 0 ? s->p.n_initial : 32) * uniform_next_tokens(s);
}

const struct evb_search_ops evb_uniform_ops_ = {uniform_init, uniform_iterate, uniform_next_tokens};
const struct evb_search_ops evb_random_ops_ = {uniform_init, random_iterate, random_next_tokens};
