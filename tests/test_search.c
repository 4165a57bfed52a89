#define _GNU_SOURCE
/* test_search.c -- the search on problems whose answers are known: EvoPress reaches the exact optimum of
 * separable convex fitnesses under an exact budget (found here by dynamic programming), with and without
 * noise, with one group and with equal-size groups, and the additive optimum (a prior's start) is that
 * optimum and survives EvoPress's random initial population; NSGA-II's front reaches 99% of the exact hypervolume of
 * an enumerable problem; the hypervolume agrees with DEAP's on stored point sets (tests/tools/hv_ref.py);
 * results do not depend on the thread count; a checkpointed and resumed search equals an uninterrupted one;
 * a NaN fitness and an unreachable budget are errors, and a failed generation leaves the state (and the
 * checkpoint) of the last completed one; the memo saves exactly the calls it counts as hits.
 * Checkpoints: 80 random byte flips of an EvoPress and of an NSGA-II checkpoint are each refused or harmless
 * (the resumed run identical to the uninterrupted one); crafted checkpoints with a valid checksum (levels out
 * of range, a generation of 2^31, a short fingerprint, sizes that disagree, a cost that is not the
 * candidate's, NaN) and the older format are refused and leave the search as it was. The memo: capped to a
 * few entries it gives the same results as uncapped, holds no more than its cap between generations, and a
 * capped run resumes exactly.
 * tests/fixtures/hv_ref.txt is written by tests/tools/hv_ref.py with Debian's python3-deap
 * (/usr/bin/python3 tests/tools/hv_ref.py); the suite itself needs no Python. */
#include "testing.h"
#include "fixtures.h"
#include "evobudget/evb_search.h"
#include "search/search_impl.h"    /* the memo's size, for the cap test */

#include <math.h>
#include <msgpack.h>
#include <stdlib.h>
#include <xxhash.h>
#include <string.h>
#include <unistd.h>

/* ---- a synthetic fitness: sum_u a[u][level] (+ noise shrinking with the batch's tokens) ---- */

typedef struct synth {
    int U;
    double **a;
    double noise;          /* standard deviation at 100 tokens */
    int nan_after;         /* calls after which the value is NaN (-1: never) */
    long *calls;           /* counts every call when not NULL */
    int poison;            /* 1: NaN on batches of every token (a last stage), set between generations */
} synth;

static uint64_t mix(uint64_t x) { return evb_splitmix64(&x); }

static size_t synth_ws(const void *p) { (void)p; return 8; }

static int synth_eval(const void *params, void *w, const evb_genome *g, const evb_genome *ref, const evb_batch *b, double *f) {
    (void)w; (void)ref;
    const synth *s = params;
    double v = 0;
    uint64_t h = b->seed;
    for (int u = 0; u < g->n_units; u++) { v += s->a[u][g->level[u]]; h = mix(h ^ (uint64_t)g->level[u] * 1000003u ^ (uint64_t)u); }
    if (s->noise > 0 && b->n_tokens > 0) {
        double u1 = ((mix(h) >> 11) + 1.0) * 0x1.0p-53, u2 = (mix(h + 1) >> 11) * 0x1.0p-53;
        v += s->noise * sqrt(100.0 / b->n_tokens) * sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2);
    }
    if (s->calls) {
        long c;
        #pragma omp atomic capture
        c = ++*s->calls;
        if (s->nan_after >= 0 && c > s->nan_after) v = NAN;
    }
    if (s->poison && b->n_tokens == 0) v = NAN;
    *f = v;
    return EVB_SUCCESS;
}

static const evb_fitness_type synth_type = {"synthetic", synth_ws, NULL, NULL, synth_eval};

/* ---- problems ---- */

typedef struct prob {
    int U, *n, *group;
    double **cost, **a;
    int16_t *start;
    evb_problem p;
} prob;

static uint64_t rs = 12345;
static double unif(void) { rs = mix(rs); return (rs >> 11) * 0x1.0p-53; }

/* U units of n_u levels, cost[u][l] = size_u (base + l) (size_u 1 or, grouped, 1 or 3), convex a. */
static void make(prob *q, int U, int grouped) {
    q->U = U;
    q->n = malloc(sizeof(int) * U); q->group = malloc(sizeof(int) * U);
    q->cost = malloc(sizeof(double *) * U); q->a = malloc(sizeof(double *) * U);
    q->start = malloc(sizeof(int16_t) * U);
    double budget = 0;
    for (int u = 0; u < U; u++) {
        q->n[u] = 5 + (int)(unif() * 5);
        q->group[u] = grouped ? u % 2 : 0;
        double size = grouped && u % 2 ? 3 : 1, w = 0.2 + unif(), c = unif() * (q->n[u] - 1);
        q->cost[u] = malloc(sizeof(double) * q->n[u]); q->a[u] = malloc(sizeof(double) * q->n[u]);
        for (int l = 0; l < q->n[u]; l++) { q->cost[u][l] = size * (10 + l); q->a[u][l] = w * (l - c) * (l - c); }
        q->start[u] = (int16_t)(q->n[u] / 2);
        budget += q->cost[u][q->start[u]];
    }
    q->p = (evb_problem){U, q->n, (const double *const *)q->cost, q->group, budget, 1e-9, q->start, NULL};
}

static void unmake(prob *q) {
    for (int u = 0; u < q->U; u++) { free(q->cost[u]); free(q->a[u]); }
    free(q->n); free(q->group); free(q->cost); free(q->a); free(q->start);
}

/* The exact optimum of sum a[u][l_u] with sum over each group of l_u fixed at the start's: a knapsack DP
 * per group over the level sum. */
static double dp_optimum(const prob *q) {
    double total = 0;
    for (int g = 0; g < 2; g++) {
        int S = 0, maxs = 0;
        for (int u = 0; u < q->U; u++) if (q->group[u] == g) { S += q->start[u]; maxs += q->n[u] - 1; }
        double *best = malloc(sizeof(double) * (maxs + 1)), *next = malloc(sizeof(double) * (maxs + 1));
        for (int s = 0; s <= maxs; s++) best[s] = s == 0 ? 0 : INFINITY;
        for (int u = 0; u < q->U; u++) {
            if (q->group[u] != g) continue;
            for (int s = 0; s <= maxs; s++) {
                next[s] = INFINITY;
                for (int l = 0; l < q->n[u] && l <= s; l++)
                    if (best[s - l] + q->a[u][l] < next[s]) next[s] = best[s - l] + q->a[u][l];
            }
            memcpy(best, next, sizeof(double) * (maxs + 1));
        }
        if (maxs > 0 || S == 0) total += best[S];
        free(best); free(next);
    }
    return total;
}

static double true_fit(const prob *q, const int16_t *lv) {
    double v = 0;
    for (int u = 0; u < q->U; u++) v += q->a[u][lv[u]];
    return v;
}

static evb_search_params evo_params(int gens) {
    evb_search_params p = evb_search_default_params();
    p.seed = 5; p.generations = gens; p.n_offspring = 16;
    p.n_stages = 2; p.n_survivors[0] = 4; p.n_survivors[1] = 1;
    p.n_tokens[0] = 100; p.n_tokens[1] = 0;
    p.total_tokens = 10000;
    return p;
}

static int run_to_end(evb_search *s) {
    int st = EVB_CONTINUE;
    while (st == EVB_CONTINUE) st = evb_search_iterate(s);
    return st;
}

static void test_optimum(int grouped, double noise) {
    prob q;
    make(&q, 24, grouped);
    long calls = 0;
    synth sy = {q.U, q.a, noise, -1, &calls, 0};
    double opt = dp_optimum(&q);
    evb_search_params p = evo_params(300);
    evb_search *s = NULL;
    int st = evb_search_alloc(evb_search_evopress, &p, &q.p, &s);
    if (!st) st = evb_search_set(s, &synth_type, &sy, 2);
    int reached = -1;
    int16_t *lv = malloc(sizeof(int16_t) * q.U);
    while (!st || st == EVB_CONTINUE) {
        st = evb_search_iterate(s);
        evb_search_best(s, lv, NULL);
        evb_search_info in;
        evb_search_get_info(s, &in);
        if (reached < 0 && fabs(true_fit(&q, lv) - opt) <= 1e-9 * (1 + fabs(opt))) reached = in.generation;
        if (st == EVB_SUCCESS) break;
    }
    double got = true_fit(&q, lv), cost = evb_problem_cost(&q.p, lv);
    EVB_CHECK(st == EVB_SUCCESS && fabs(cost - q.p.budget) <= 1e-9 && reached >= 0,
              "EvoPress, 24 units%s%s: optimum %.6f (DP) reached at generation %d of 300 (final %.6f), budget kept exactly",
              grouped ? " in two groups of unit sizes 1 and 3" : "", noise > 0 ? ", noisy fitness" : "", opt, reached, got);
    free(lv);
    evb_search_free(s);
    unmake(&q);
}

/* The additive optimum (a prior's start) on the same convex problems: exactly the DP's optimum, the budget
 * kept; an infeasible start refused. */
static void test_additive_optimum(void) {
    const uint64_t rs0 = rs; /* the problems after these are those they were before this test */
    for (int grouped = 0; grouped <= 1; grouped++)
        for (int k = 0; k < 4; k++) {
            prob q;
            make(&q, 6 + 6 * k, grouped);
            double *v = malloc(sizeof(double) * q.U * 10);
            for (int u = 0; u < q.U; u++)
                for (int l = 0; l < q.n[u]; l++) v[u * 10 + l] = q.a[u][l];
            int16_t *lv = malloc(sizeof(int16_t) * q.U);
            memcpy(lv, q.start, sizeof(int16_t) * q.U);
            int moves = evb_problem_additive_optimum(&q.p, v, 10, lv);
            double opt = dp_optimum(&q), got = true_fit(&q, lv);
            int ok = moves >= 0 && fabs(got - opt) <= 1e-9 * (1 + fabs(opt));
            EVB_CHECK(ok && evb_problem_feasible(&q.p, lv),
                      "additive optimum, %d units%s: %.9f after %d exchanges, the DP's %.9f, budget kept",
                      q.U, grouped ? " in two groups" : "", got, moves, opt);
            lv[0] = (int16_t)(lv[0] == 0 ? 1 : 0);
            EVB_CHECK(evb_problem_additive_optimum(&q.p, v, 10, lv) == EVB_EINVAL,
                      "additive optimum: an infeasible start is refused");
            free(v); free(lv);
            unmake(&q);
        }
    /* a start from a prior joins EvoPress's random initial population: the optimum as start survives it */
    prob q;
    make(&q, 24, 1);
    double *v = malloc(sizeof(double) * q.U * 10);
    for (int u = 0; u < q.U; u++)
        for (int l = 0; l < q.n[u]; l++) v[u * 10 + l] = q.a[u][l];
    evb_problem_additive_optimum(&q.p, v, 10, q.start);
    synth sy = {q.U, q.a, 0, -1, NULL, 0};
    evb_search_params p = evo_params(1);
    p.n_initial = 16; p.surrogate = 4;
    evb_search *s = NULL;
    int st = evb_search_alloc(evb_search_evopress, &p, &q.p, &s);
    if (!st) st = evb_search_set(s, &synth_type, &sy, 1);
    if (!st) st = evb_search_set_prior(s, v, 10);
    if (!st) st = run_to_end(s);
    int16_t *lv = malloc(sizeof(int16_t) * q.U);
    double f = NAN;
    if (!st) evb_search_best(s, lv, &f);
    double opt = dp_optimum(&q);
    EVB_CHECK(st == EVB_SUCCESS && fabs(true_fit(&q, lv) - opt) <= 1e-9 * (1 + fabs(opt)),
              "a prior's start (the optimum, %.6f) joins 16 random initial candidates and is kept: best %.6f",
              opt, true_fit(&q, lv));
    evb_search_free(s);
    free(v); free(lv);
    unmake(&q);
    rs = rs0;
}

/* ---- NSGA-II against an enumerated front ---- */

static void test_nsga2(void) {
    enum { U = 6, L = 4 };
    int n[U];
    double cm[U][L], fm[U][L], *cp[U], *fp[U];
    for (int u = 0; u < U; u++) {
        n[u] = L; cp[u] = cm[u]; fp[u] = fm[u];
        double c = 0, f = 5 + unif();
        for (int l = 0; l < L; l++) { c += 1 + 3 * unif(); f -= 0.3 + unif() / (1 + l); cm[u][l] = c; fm[u][l] = f; }
    }
    /* every candidate */
    int N = 1;
    for (int u = 0; u < U; u++) N *= L;
    double *C = malloc(sizeof(double) * N), *F = malloc(sizeof(double) * N);
    double lo = 0, hi = 0;
    for (int u = 0; u < U; u++) { lo += cm[u][0]; hi += cm[u][L - 1]; }
    for (int i = 0; i < N; i++) {
        int x = i;
        C[i] = F[i] = 0;
        for (int u = 0; u < U; u++) { C[i] += cm[u][x % L]; F[i] += fm[u][x % L]; x /= L; }
    }
    double fmax = -INFINITY;
    for (int i = 0; i < N; i++) if (F[i] > fmax) fmax = F[i];
    double r1 = hi + 1, r2 = fmax + 1, exact = evb_hypervolume_2d(C, F, N, r1, r2);
    synth sy = {U, fp, 0, -1, NULL, 0};
    evb_problem p = {U, n, (const double *const *)cp, NULL, (lo + hi) / 2, (hi - lo) / 2 + 1e-9, NULL, NULL};
    evb_search_params sp = evo_params(60);
    sp.n_offspring = 40; sp.n_stages = 1; sp.n_survivors[0] = 40;
    evb_search *s = NULL;
    int st = evb_search_alloc(evb_search_nsga2, &sp, &p, &s);
    if (!st) st = evb_search_set(s, &synth_type, &sy, 2);
    if (!st) st = run_to_end(s);
    evb_front_point pts[512];
    int m = st == EVB_SUCCESS ? evb_search_front(s, pts, NULL, 512) : 0;
    double c[512], f[512];
    for (int i = 0; i < m && i < 512; i++) { c[i] = pts[i].cost; f[i] = pts[i].fitness; }
    double hv = evb_hypervolume_2d(c, f, m < 512 ? m : 512, r1, r2);
    int idx[4096];
    int nf = evb_pareto_front_2d(C, F, N, idx);
    EVB_CHECK(st == EVB_SUCCESS && hv >= 0.99 * exact, "NSGA-II (40 x 60 generations) on 6 units x 4 levels: front of %d points, "
              "hypervolume %.4f = %.2f%% of the exact front's %.4f (%d of %d candidates non-dominated)", m, hv, 100 * hv / exact, exact, nf, N);
    free(C); free(F);
    evb_search_free(s);
}

static void test_hv_fixture(void) {
    FILE *f = fopen(EVB_SOURCE_DIR "/tests/fixtures/hv_ref.txt", "r");
    EVB_CHECK(f != NULL, "open tests/fixtures/hv_ref.txt");
    if (!f) return;
    int n, sets = 0, ok = 1;
    double r1, r2, ref, worst = 0;
    while (fscanf(f, " set %d %lf %lf %lf", &n, &r1, &r2, &ref) == 4) {
        double *a = malloc(sizeof(double) * n), *b = malloc(sizeof(double) * n);
        for (int i = 0; i < n; i++) if (fscanf(f, "%lf %lf", &a[i], &b[i]) != 2) ok = 0;
        double hv = evb_hypervolume_2d(a, b, n, r1, r2), d = fabs(hv - ref) / (ref > 0 ? ref : 1);
        if (d > worst) worst = d;
        ok &= d <= 1e-12;
        sets++;
        free(a); free(b);
    }
    fclose(f);
    EVB_CHECK(ok && sets == 5, "hypervolume of %d stored point sets equals DEAP's (max relative difference %.2g)", sets, worst);
}

/* ---- threads, checkpoints, errors, memo ---- */

/* The same best (levels and fitness), front (points and levels) and counters, bit for bit. */
static int same_state(evb_search *a, evb_search *b, int U) {
    enum { MAXF = 256 };
    int16_t la[64], lb[64];
    double fa, fb;
    evb_search_best(a, la, &fa);
    evb_search_best(b, lb, &fb);
    evb_front_point pa[MAXF], pb[MAXF];
    int16_t *va = malloc(sizeof(int16_t) * MAXF * U), *vb = malloc(sizeof(int16_t) * MAXF * U);
    int na = evb_search_front(a, pa, va, MAXF), nb = evb_search_front(b, pb, vb, MAXF), k = na < MAXF ? na : MAXF;
    evb_search_info ia, ib;
    evb_search_get_info(a, &ia);
    evb_search_get_info(b, &ib);
    int same = !memcmp(la, lb, sizeof(int16_t) * U) && !memcmp(&fa, &fb, sizeof fa) && na == nb && na > 0 &&
               !memcmp(pa, pb, sizeof(evb_front_point) * k) && !memcmp(va, vb, sizeof(int16_t) * k * U) &&
               ia.generation == ib.generation && ia.evaluations == ib.evaluations && ia.memo_hits == ib.memo_hits &&
               ia.tokens == ib.tokens && !memcmp(&ia.best_fitness, &ib.best_fitness, sizeof(double)) && ia.best_cost == ib.best_cost;
    free(va); free(vb);
    return same;
}

static int same_file(const char *x, const char *y) {
    FILE *f = fopen(x, "rb"), *g = fopen(y, "rb");
    int same = f && g, c, d;
    while (same && (c = fgetc(f)) != EOF) same = (d = fgetc(g)) == c;
    if (same) same = fgetc(g) == EOF;
    if (f) fclose(f);
    if (g) fclose(g);
    return same;
}

/* An unreachable budget, a start outside the budget or its levels, and a level outside a unit's levels are
 * refused; q is left as it was. */
static void check_bad_problems(prob *q, const evb_search_params *p, const synth *sy) {
    evb_search *c = NULL;
    int st;
    double keep = q->p.budget;
    q->p.budget = 1e9;
    q->p.start = NULL;
    st = evb_problem_check(&q->p);
    EVB_CHECK(st == EVB_EBUDGET && strstr(evb_last_error(), "unreachable"), "evb_problem_check, an unreachable budget: %s", evb_last_error());
    EVB_CHECK(evb_search_alloc(evb_search_evopress, p, &q->p, &c) == EVB_EBUDGET && c == NULL, "evb_search_alloc, an unreachable budget: %s", evb_last_error());
    q->p.budget = keep;
    q->p.start = q->start;
    q->start[0] = (int16_t)(q->start[0] + 1); /* one level dearer: off the exact budget */
    EVB_CHECK(evb_problem_check(&q->p) == EVB_EBUDGET, "a start outside the budget: %s", evb_last_error());
    q->start[0] = (int16_t)(q->start[0] - 1);
    q->start[1] = 99;
    EVB_CHECK(evb_problem_check(&q->p) == EVB_EINVAL, "a start level that does not exist: %s", evb_last_error());
    q->start[1] = (int16_t)(q->n[1] / 2);
    int16_t badlv[20] = {0};
    badlv[3] = -1;
    double fv;
    evb_search_alloc(evb_search_evopress, p, &q->p, &c);
    evb_search_set(c, &synth_type, sy, 1);
    evb_batch bb = {0, 0};
    EVB_CHECK(evb_search_evaluate(c, badlv, 1, NULL, &bb, &fv) == EVB_EINVAL, "evaluate refuses a level outside a unit's levels: %s", evb_last_error());
    evb_search_free(c);
}

/* A fitness that turns NaN after 100 calls: an error, the state stays at the last whole generation and can be
 * saved to path. */
static void check_nan_stop(const prob *q, const evb_search_params *p, const char *path) {
    long calls2 = 0;
    synth bad = {q->U, q->a, 0, 100, &calls2, 0};
    evb_search *c = NULL;
    evb_search_info in;
    evb_search_alloc(evb_search_evopress, p, &q->p, &c);
    evb_search_set(c, &synth_type, &bad, 2);
    int st = EVB_CONTINUE, last_gen = 0;
    while (st == EVB_CONTINUE) { evb_search_get_info(c, &in); last_gen = in.generation; st = evb_search_iterate(c); }
    evb_search_get_info(c, &in);
    EVB_CHECK(st == EVB_EBADFUNC && in.generation == last_gen && strstr(evb_last_error(), "candidate") && evb_search_save(c, path) == 0,
              "a NaN fitness stops the search with EVB_EBADFUNC at generation %d, its state still saved: %s", in.generation, evb_last_error());
    evb_search_free(c);
}

static void test_runs(void) {
    prob q;
    make(&q, 20, 0);
    long calls = 0;
    synth sy = {q.U, q.a, 0.5, -1, &calls, 0};
    evb_search_params p = evo_params(30);
    evb_search *a = NULL, *b = NULL, *c = NULL;
    evb_search_alloc(evb_search_evopress, &p, &q.p, &a);
    evb_search_set(a, &synth_type, &sy, 1);
    int st1 = run_to_end(a);
    evb_search_alloc(evb_search_evopress, &p, &q.p, &b);
    evb_search_set(b, &synth_type, &sy, 2);
    int st2 = run_to_end(b);
    EVB_CHECK(st1 == EVB_SUCCESS && st2 == EVB_SUCCESS && same_state(a, b, q.U), "1 and 2 threads: the same best, front and counters");
    evb_search_info in;
    evb_search_get_info(a, &in);
    EVB_CHECK(in.memo_hits >= 29, "the parent's score on the full batch is memoised across generations (%zu hits, %zu evaluations)",
              in.memo_hits, in.evaluations);

    /* checkpoint at generation 15, a fresh search loads it and finishes */
    char *dir = fixture_tmpdir(), path[1024];
    snprintf(path, sizeof path, "%s/ck.msgpack", dir);
    evb_search_free(b);
    evb_search_alloc(evb_search_evopress, &p, &q.p, &b);
    evb_search_set(b, &synth_type, &sy, 2);
    for (int g = 0; g < 15; g++) evb_search_iterate(b);
    int sv = evb_search_save(b, path);
    evb_search_free(b);
    evb_search_alloc(evb_search_evopress, &p, &q.p, &c);
    evb_search_set(c, &synth_type, &sy, 2);
    int ld = evb_search_load(c, path);
    int st3 = run_to_end(c);
    EVB_CHECK(sv == 0 && ld == 0 && st3 == EVB_SUCCESS && same_state(a, c, q.U), "saved at generation 15, loaded into a new search and finished: identical to the uninterrupted run");
    evb_search_free(c);

    /* a checkpoint of another problem */
    q.p.budget += 0; q.start[0] = q.start[0]; /* the same */
    prob q2;
    make(&q2, 20, 0);
    evb_search_alloc(evb_search_evopress, &p, &q2.p, &c);
    int other = evb_search_load(c, path);
    EVB_CHECK(other == EVB_EFORMAT, "a checkpoint of another problem is refused: %s", evb_last_error());
    evb_search_free(c);
    unmake(&q2);

    check_nan_stop(&q, &p, path);

    int st;
    /* NaN on the last stage only, after the first stage of the generation has added memo entries, counts
     * and archive points: all of it is undone. The checkpoints before and after the failed generation are
     * the same bytes, and once the fitness is fixed the run ends exactly as the uninterrupted one. */
    char path2[1024];
    snprintf(path2, sizeof path2, "%s/ck2.msgpack", dir);
    synth pois = {q.U, q.a, 0.5, -1, NULL, 0};
    evb_search_alloc(evb_search_evopress, &p, &q.p, &c);
    evb_search_set(c, &synth_type, &pois, 2);
    for (int g = 0; g < 10; g++) evb_search_iterate(c);
    int s1 = evb_search_save(c, path);
    pois.poison = 1;
    st = evb_search_iterate(c);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", evb_last_error());
    evb_search_get_info(c, &in);
    int s2 = evb_search_save(c, path2);
    EVB_CHECK(st == EVB_EBADFUNC && in.generation == 10 && s1 == 0 && s2 == 0 && same_file(path, path2),
              "a NaN in the last stage of generation 11 leaves the state of generation 10 (checkpoints identical): %s", msg);
    pois.poison = 0;
    st = run_to_end(c);
    EVB_CHECK(st == EVB_SUCCESS && same_state(a, c, q.U), "after the failed generation, the run ends exactly as the uninterrupted one");
    evb_search_free(c);

    check_bad_problems(&q, &p, &sy);
    evb_search_free(a);
    fixture_rmdir(dir);
    free(dir);
    unmake(&q);
}

/* NSGA-II on a window of +-20 around the budget: 1 and 2 threads, and a checkpoint half way, give the same
 * front. Its one batch (100 tokens, noisy) is fixed for the whole run. */
static void test_nsga2_runs(void) {
    prob q;
    make(&q, 12, 0);
    q.p.tolerance = 20;
    synth sy = {q.U, q.a, 0.5, -1, NULL, 0};
    evb_search_params p = evo_params(20);
    p.n_offspring = 24; p.n_stages = 1; p.n_survivors[0] = 24; p.n_tokens[0] = 100;
    evb_search *a = NULL, *b = NULL, *c = NULL;
    evb_search_alloc(evb_search_nsga2, &p, &q.p, &a);
    evb_search_set(a, &synth_type, &sy, 2);
    int st1 = run_to_end(a);
    evb_search_alloc(evb_search_nsga2, &p, &q.p, &b);
    evb_search_set(b, &synth_type, &sy, 1);
    int st2 = run_to_end(b);
    evb_front_point pts[256];
    int m = evb_search_front(a, pts, NULL, 256), mono = 1;
    for (int i = 1; i < m && i < 256; i++) mono &= pts[i].cost > pts[i - 1].cost && pts[i].fitness < pts[i - 1].fitness;
    EVB_CHECK(st1 == EVB_SUCCESS && st2 == EVB_SUCCESS && same_state(a, b, q.U) && m > 5 && mono,
              "NSGA-II, 1 and 2 threads: the same best, front (%d points, cost rising, fitness falling) and counters", m);
    char *dir = fixture_tmpdir(), path[1024];
    snprintf(path, sizeof path, "%s/nsga.msgpack", dir);
    evb_search_free(b);
    evb_search_alloc(evb_search_nsga2, &p, &q.p, &b);
    evb_search_set(b, &synth_type, &sy, 2);
    for (int g = 0; g < 10; g++) evb_search_iterate(b);
    int sv = evb_search_save(b, path);
    evb_search_free(b);
    evb_search_alloc(evb_search_nsga2, &p, &q.p, &c);
    evb_search_set(c, &synth_type, &sy, 2);
    int ld = evb_search_load(c, path), st3 = run_to_end(c);
    EVB_CHECK(sv == 0 && ld == 0 && st3 == EVB_SUCCESS && same_state(a, c, q.U), "NSGA-II saved at generation 10 and resumed: identical to the uninterrupted run");
    evb_search_free(c);
    c = NULL;
    evb_search_alloc(evb_search_evopress, &p, &q.p, &c);
    EVB_CHECK(evb_search_load(c, path) == EVB_EFORMAT, "an NSGA-II checkpoint is refused by an EvoPress search: %s", evb_last_error());
    evb_search_free(c);
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    EVB_CHECK(truncate(path, size / 2) == 0, "truncate the checkpoint to %ld of %ld bytes", size / 2, size);
    evb_search_alloc(evb_search_nsga2, &p, &q.p, &c);
    EVB_CHECK(evb_search_load(c, path) == EVB_EFORMAT, "a truncated checkpoint is refused: %s", evb_last_error());
    evb_search_free(c);
    evb_search_free(a);
    fixture_rmdir(dir);
    free(dir);
    unmake(&q);
}

/* With the memo the same search makes fewer fitness calls and finds the same: every saved call is a hit. */
static void test_memo(void) {
    prob q;
    make(&q, 20, 0);
    long calls[2] = {0, 0};
    evb_search_info in[2];
    double fit[2];
    int16_t lv[2][20];
    evb_front_point fr[2][64];
    int nf[2];
    for (int memo = 0; memo < 2; memo++) {
        synth sy = {q.U, q.a, 0.5, -1, &calls[memo], 0};
        evb_search_params p = evo_params(30);
        p.memo = memo;
        evb_search *s = NULL;
        evb_search_alloc(evb_search_evopress, &p, &q.p, &s);
        evb_search_set(s, &synth_type, &sy, 2);
        run_to_end(s);
        evb_search_get_info(s, &in[memo]);
        evb_search_best(s, lv[memo], &fit[memo]);
        nf[memo] = evb_search_front(s, fr[memo], NULL, 64);
        evb_search_free(s);
    }
    EVB_CHECK(in[1].memo_hits >= 29 && in[0].memo_hits == 0 && (size_t)calls[1] == in[1].evaluations && (size_t)calls[0] == in[0].evaluations &&
              in[0].evaluations == in[1].evaluations + in[1].memo_hits,
              "memo: %zu fitness calls + %zu hits with it = %zu calls without it (the counters match the calls made)",
              in[1].evaluations, in[1].memo_hits, in[0].evaluations);
    EVB_CHECK(!memcmp(lv[0], lv[1], sizeof lv[0]) && fit[0] == fit[1] && nf[0] == nf[1] && nf[0] > 0 && nf[0] <= 64 &&
              !memcmp(fr[0], fr[1], sizeof(evb_front_point) * nf[0]), "memo on and off: the same best (%.6f) and front", fit[1]);
    unmake(&q);
}

static void test_scale(void) {
    evb_search_params d = evb_search_default_params(), e = d, f = d, g = d;
    evb_search_params_scale(&d, 65536);
    evb_search_params_scale(&e, 524288);
    evb_search_params_scale(&f, 200);
    evb_search_params_scale(&g, 0);
    EVB_CHECK(d.n_tokens[0] == 256 && d.n_tokens[1] == 2048 && d.n_tokens[2] == 8192 && d.initial_tokens == 256 && d.total_tokens == 65536 &&
              e.n_tokens[0] == 2048 && e.n_tokens[1] == 16384 && e.n_tokens[2] == 65536 &&
              f.n_tokens[0] == 0 && f.n_tokens[2] == 0 && g.n_tokens[2] == 65536 && g.total_tokens == 0,
              "stage tokens scaled: 65,536 held -> %zu, %zu, %zu; 524,288 -> %zu, %zu, %zu; 200 -> all", d.n_tokens[0], d.n_tokens[1],
              d.n_tokens[2], e.n_tokens[0], e.n_tokens[1], e.n_tokens[2]);
}

static void test_baselines(void) {
    prob q;
    make(&q, 20, 0);
    synth sy = {q.U, q.a, 0, -1, NULL, 0};
    evb_search_params p = evo_params(50);
    double f[3];
    const evb_search_type *t[3] = {evb_search_uniform, evb_search_random, evb_search_evopress};
    for (int i = 0; i < 3; i++) {
        evb_search *s = NULL;
        evb_search_alloc(t[i], &p, &q.p, &s);
        evb_search_set(s, &synth_type, &sy, 2);
        run_to_end(s);
        evb_search_best(s, NULL, &f[i]);
        evb_search_free(s);
    }
    EVB_CHECK(f[0] == true_fit(&q, q.start) && f[2] <= f[0] && f[2] <= f[1] && f[2] <= dp_optimum(&q) + 1e-9,
              "uniform %.4f (the start), best of 32 random %.4f, EvoPress %.4f (optimum %.4f)", f[0], f[1], f[2], dp_optimum(&q));
    unmake(&q);
}

/* ---- damaged and crafted checkpoints ---- */

static unsigned char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long k = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(k > 0 ? k : 1);
    *n = b && fread(b, 1, k, f) == (size_t)k ? (size_t)k : 0;
    fclose(f);
    return b;
}

static void write_all(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    if (f) { fwrite(b, 1, n, f); fclose(f); }
}

/* A checkpoint (type t, problem q, params p) run for `gens` generations, and the uninterrupted run. */
typedef struct ck_case { const evb_search_type *t; evb_search_params p; prob q; synth sy; evb_search *ref; } ck_case;

static void ck_case_make(ck_case *k, const evb_search_type *t, const char *path) {
    memset(k, 0, sizeof *k);
    k->t = t;
    make(&k->q, 12, 0);
    k->p = evo_params(20);
    if (t == evb_search_nsga2) { k->q.p.tolerance = 20; k->p.n_offspring = 24; k->p.n_stages = 1; k->p.n_survivors[0] = 24; k->p.n_tokens[0] = 100; }
    k->sy = (synth){k->q.U, k->q.a, 0.5, -1, NULL, 0};
    evb_search_alloc(t, &k->p, &k->q.p, &k->ref);
    evb_search_set(k->ref, &synth_type, &k->sy, 1);
    run_to_end(k->ref);
    evb_search *b = NULL;
    evb_search_alloc(t, &k->p, &k->q.p, &b);
    evb_search_set(b, &synth_type, &k->sy, 1);
    for (int g = 0; g < 10; g++) evb_search_iterate(b);
    evb_search_save(b, path);
    evb_search_free(b);
}

static void ck_case_free(ck_case *k) { evb_search_free(k->ref); unmake(&k->q); }

/* Loads path into a fresh search and runs it to the end: 0 refused (and then, started from scratch, it
 * still ends as the uninterrupted run: nothing was half loaded), 1 accepted and identical, -1 harmful. */
static int ck_try(ck_case *k, const char *path, int *status) {
    evb_search *c = NULL;
    evb_search_alloc(k->t, &k->p, &k->q.p, &c);
    evb_search_set(c, &synth_type, &k->sy, 1);
    *status = evb_search_load(c, path);
    int same = run_to_end(c) == EVB_SUCCESS && same_state(k->ref, c, k->q.U);
    evb_search_free(c);
    if (*status) return *status == EVB_EFORMAT && same ? 0 : -1;
    return same ? 1 : -1;
}

static void test_ck_flips(void) {
    char *dir = fixture_tmpdir(), path[1024], flip[1024];
    snprintf(path, sizeof path, "%s/ck.msgpack", dir);
    snprintf(flip, sizeof flip, "%s/flip.msgpack", dir);
    const evb_search_type *types[2] = {evb_search_evopress, evb_search_nsga2};
    for (int t = 0; t < 2; t++) {
        ck_case k;
        ck_case_make(&k, types[t], path);
        size_t n = 0;
        unsigned char *orig = read_all(path, &n), *buf = malloc(n ? n : 1);
        int refused = 0, harmless = 0, harmful = 0, st;
        uint64_t r = 2024 + t;
        for (int i = 0; i < 80 && n; i++) {
            memcpy(buf, orig, n);
            r = mix(r);
            size_t at = (size_t)(r % n);
            buf[at] ^= (unsigned char)(1 + (r >> 32) % 255);
            write_all(flip, buf, n);
            int v = ck_try(&k, flip, &st);
            refused += v == 0; harmless += v == 1; harmful += v < 0;
            if (v < 0) printf("# harmful flip at byte %zu of %zu: status %d (%s)\n", at, n, st, evb_last_error());
        }
        EVB_CHECK(n > 0 && refused + harmless == 80 && harmful == 0, "%s: 80 random byte flips of a %zu-byte checkpoint: %d refused, %d harmless, %d harmful",
                  types[t]->name, n, refused, harmless, harmful);
        free(orig); free(buf);
        ck_case_free(&k);
    }
    fixture_rmdir(dir);
    free(dir);
}

/* Rewrites the checkpoint src into dst with field `key` replaced (a valid checksum, so only the field checks
 * can refuse it). */
enum { SET_U64, SET_STR, SET_I16, SET_F64 };
static void craft(const char *src, const char *dst, const char *key, int how, uint64_t u, const char *str, size_t index, double v) {
    size_t n = 0;
    unsigned char *b = read_all(src, &n);
    msgpack_unpacked a;
    msgpack_unpacked_init(&a);
    size_t off = 0;
    if (n < 28 || msgpack_unpack_next(&a, (const char *)b + 28, n - 28, &off) != MSGPACK_UNPACK_SUCCESS) { free(b); return; }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    const msgpack_object_map *m = &a.data.via.map;
    msgpack_pack_map(&pk, m->size);
    for (uint32_t i = 0; i < m->size; i++) {
        msgpack_pack_object(&pk, m->ptr[i].key);
        const msgpack_object *val = &m->ptr[i].val;
        if (m->ptr[i].key.via.str.size != strlen(key) || memcmp(m->ptr[i].key.via.str.ptr, key, strlen(key))) { msgpack_pack_object(&pk, *val); continue; }
        if (how == SET_U64) msgpack_pack_uint64(&pk, u);
        else if (how == SET_STR) { msgpack_pack_str(&pk, strlen(str)); msgpack_pack_str_body(&pk, str, strlen(str)); }
        else if (val->type != MSGPACK_OBJECT_BIN) msgpack_pack_double(&pk, v);
        else {
            size_t bn = val->via.bin.size;
            unsigned char *c = malloc(bn ? bn : 1);
            memcpy(c, val->via.bin.ptr, bn);
            if (how == SET_I16 && (index + 1) * 2 <= bn) { int16_t x = (int16_t)(int64_t)u; memcpy(c + index * 2, &x, 2); }
            if (how == SET_F64 && (index + 1) * 8 <= bn) memcpy(c + index * 8, &v, 8);
            msgpack_pack_bin(&pk, bn);
            msgpack_pack_bin_body(&pk, c, bn);
            free(c);
        }
    }
    unsigned char head[28];
    memcpy(head, b, 28);
    uint64_t len = sb.size, sum = XXH64(sb.data, sb.size, 0);
    for (int i = 0; i < 8; i++) { head[12 + i] = (unsigned char)(len >> (8 * i)); head[20 + i] = (unsigned char)(sum >> (8 * i)); }
    FILE *f = fopen(dst, "wb");
    if (f) { fwrite(head, 1, 28, f); fwrite(sb.data, 1, sb.size, f); fclose(f); }
    msgpack_sbuffer_destroy(&sb);
    msgpack_unpacked_destroy(&a);
    free(b);
}

static void test_ck_crafted(void) {
    char *dir = fixture_tmpdir(), path[1024], bad[1024];
    snprintf(path, sizeof path, "%s/ck.msgpack", dir);
    snprintf(bad, sizeof bad, "%s/bad.msgpack", dir);
    static const struct { int nsga; const char *key; int how; uint64_t u; const char *str; size_t index; double v; const char *what; } cases[] = {
        {0, "generation", SET_U64, 1ull << 31, NULL, 0, 0, "generation 2^31"},
        {0, "generation", SET_U64, UINT64_MAX, NULL, 0, 0, "generation 2^64-1"},
        {0, "generation", SET_U64, 21, NULL, 0, 0, "generation 21 of 20"},
        {0, "done", SET_U64, 2, NULL, 0, 0, "done = 2"},
        {0, "fingerprint", SET_STR, 0, "ab", 0, 0, "a 2-byte fingerprint"},
        {0, "fingerprint", SET_STR, 0, "", 0, 0, "an empty fingerprint"},
        {0, "parent", SET_I16, 999, NULL, 3, 0, "the incumbent's unit 3 at level 999"},
        {0, "parent", SET_I16, (uint64_t)-1, NULL, 0, 0, "the incumbent's unit 0 at level -1"},
        {0, "parent_cost", SET_U64, 5, NULL, 0, 0, "the incumbent's cost an integer"},
        {0, "parent_fit", SET_F64, 0, NULL, 0, NAN, "the incumbent's fitness NaN"},
        {0, "pop_n", SET_U64, 3, NULL, 0, 0, "an EvoPress search with a population"},
        {0, "memo_levels", SET_I16, 77, NULL, 5, 0, "a memo entry at level 77"},
        {0, "memo_values", SET_F64, 0, NULL, 2, INFINITY, "a memo value of inf"},
        {0, "memo_batches", SET_STR, 0, "x", 0, 0, "the memo's batches a string"},
        {0, "arch", SET_I16, 999, NULL, 0, 0, "a front point at level 999"},
        {0, "arch_cost", SET_F64, 0, NULL, 0, 1e300, "a front point whose cost is not its own"},
        {1, "pop", SET_I16, 999, NULL, 7, 0, "NSGA-II: a member at level 999"},
        {1, "pop", SET_I16, (uint64_t)-5, NULL, 30, 0, "NSGA-II: a member at level -5"},
        {1, "pop_n", SET_U64, 1000, NULL, 0, 0, "NSGA-II: a population of 1000 (24 stored)"},
        {1, "pop_n", SET_U64, 0, NULL, 0, 0, "NSGA-II: an initialized search with no population"},
        {1, "pop_cost", SET_F64, 0, NULL, 1, -3, "NSGA-II: a member's cost not its own"},
        {1, "pop_fit", SET_F64, 0, NULL, 4, NAN, "NSGA-II: a member's fitness NaN"},
    };
    const int n_cases = (int)(sizeof cases / sizeof *cases);
    ck_case k[2];
    ck_case_make(&k[0], evb_search_evopress, path);
    char path2[1100];
    snprintf(path2, sizeof path2, "%s.nsga", path);
    ck_case_make(&k[1], evb_search_nsga2, path2);
    int ok = 0, st;
    for (int i = 0; i < n_cases; i++) {
        craft(cases[i].nsga ? path2 : path, bad, cases[i].key, cases[i].how, cases[i].u, cases[i].str, cases[i].index, cases[i].v);
        int v = ck_try(&k[cases[i].nsga], bad, &st);
        EVB_CHECK(v == 0, "crafted (valid checksum), %s: refused, the search untouched: %s", cases[i].what, evb_last_error());
        ok += v == 0;
    }
    printf("# %d of %d crafted checkpoints refused\n", ok, n_cases);
    /* the untouched checkpoint passes through craft unchanged in meaning */
    craft(path, bad, "no such key", SET_U64, 0, NULL, 0, 0);
    int v = ck_try(&k[0], bad, &st);
    evb_search *c = NULL;
    EVB_CHECK(v == 1, "the same checkpoint rewritten by the test's own packer loads and resumes identically");
    /* format 1: a bare msgpack map */
    size_t n = 0;
    unsigned char *b = read_all(path, &n);
    write_all(bad, b + 28, n - 28);
    free(b);
    evb_search_alloc(evb_search_evopress, &k[0].p, &k[0].q.p, &c);
    evb_search_set(c, &synth_type, &k[0].sy, 1);
    EVB_CHECK(evb_search_load(c, bad) == EVB_EFORMAT && strstr(evb_last_error(), "format 1") && strstr(evb_last_error(), "hint"),
              "a format-1 checkpoint is refused with a hint: %s", evb_last_error());
    evb_search_free(c);
    ck_case_free(&k[0]); ck_case_free(&k[1]);
    fixture_rmdir(dir);
    free(dir);
}

/* The memo is a cache: capped, it changes the number of fitness calls, never a result. */
static void test_memo_cap(void) {
    const evb_search_type *types[2] = {evb_search_evopress, evb_search_nsga2};
    const size_t caps[2] = {2, 20};
    char *dir = fixture_tmpdir(), path[1024];
    snprintf(path, sizeof path, "%s/ck.msgpack", dir);
    for (int t = 0; t < 2; t++) {
        prob q;
        make(&q, 12, 0);
        evb_search_params p = evo_params(30);
        if (t) { q.p.tolerance = 20; p.n_offspring = 24; p.n_stages = 1; p.n_survivors[0] = 24; p.n_tokens[0] = 100; }
        synth sy = {q.U, q.a, 0.5, -1, NULL, 0};
        evb_search *s[2] = {NULL, NULL};
        size_t most = 0;
        for (int capped = 0; capped < 2; capped++) {
            p.memo_max = capped ? caps[t] : SIZE_MAX;
            evb_search_alloc(types[t], &p, &q.p, &s[capped]);
            evb_search_set(s[capped], &synth_type, &sy, 2);
            int st = EVB_CONTINUE;
            while (st == EVB_CONTINUE) {
                st = evb_search_iterate(s[capped]);
                if (capped && s[capped]->memo_n > most) most = s[capped]->memo_n;
            }
        }
        evb_search_info in[2];
        evb_search_get_info(s[0], &in[0]);
        evb_search_get_info(s[1], &in[1]);
        int16_t la[64], lb[64];
        double fa, fb;
        evb_search_best(s[0], la, &fa);
        evb_search_best(s[1], lb, &fb);
        evb_front_point pa[256], pb[256];
        int na = evb_search_front(s[0], pa, NULL, 256), nb = evb_search_front(s[1], pb, NULL, 256);
        EVB_CHECK(!memcmp(la, lb, sizeof(int16_t) * q.U) && fa == fb && na == nb && !memcmp(pa, pb, sizeof(evb_front_point) * (na < 256 ? na : 256)) &&
                  most <= caps[t] && in[1].evaluations > in[0].evaluations,
                  "%s: memo capped at %zu (at most %zu held) and uncapped (%zu entries): the same best and front; %zu and %zu fitness calls",
                  types[t]->name, caps[t], most, s[0]->memo_n, in[1].evaluations, in[0].evaluations);
        /* a capped run saved half way and resumed is the capped run, counters included */
        p.memo_max = caps[t];
        evb_search *b = NULL, *c = NULL;
        evb_search_alloc(types[t], &p, &q.p, &b);
        evb_search_set(b, &synth_type, &sy, 1);
        for (int g = 0; g < 15; g++) evb_search_iterate(b);
        int sv = evb_search_save(b, path);
        evb_search_free(b);
        evb_search_alloc(types[t], &p, &q.p, &c);
        evb_search_set(c, &synth_type, &sy, 1);
        int ld = evb_search_load(c, path), st = run_to_end(c);
        EVB_CHECK(sv == 0 && ld == 0 && st == EVB_SUCCESS && same_state(s[1], c, q.U), "%s: the capped run saved at generation 15 and resumed: identical, counters included",
                  types[t]->name);
        evb_search_free(c);
        evb_search_free(s[0]); evb_search_free(s[1]);
        unmake(&q);
    }
    fixture_rmdir(dir);
    free(dir);
}

/* --token-budget: the search ends before a generation that could pass the budget (never after one that did),
 * the bound next_tokens holds for every generation, and a run stopped by its budget, saved and resumed with a
 * larger one, ends identical to a run given the larger budget from the start. */
static void test_budget(void) {
    static const evb_search_type *const *types[] = {&evb_search_evopress, &evb_search_nsga2};
    for (int t = 0; t < 2; t++) {
        const evb_search_type *type = *types[t];
        prob q;
        make(&q, 20, 0);
        synth sy = {q.U, q.a, 0.5, -1, NULL, 0};
        evb_search_params p = evo_params(40);
        if (t) { p.n_offspring = 12; p.n_stages = 1; p.n_survivors[0] = 1; p.n_tokens[0] = 300; }
        /* the bound, generation by generation, with no budget */
        evb_search *s = NULL;
        evb_search_alloc(type, &p, &q.p, &s);
        evb_search_set(s, &synth_type, &sy, 2);
        int st = EVB_CONTINUE, bound_ok = 1, gens = 0;
        while (st == EVB_CONTINUE) {
            evb_search_info a, b;
            evb_search_get_info(s, &a);
            st = evb_search_iterate(s);
            evb_search_get_info(s, &b);
            bound_ok &= b.tokens - a.tokens <= a.next_tokens;
            gens++;
        }
        evb_search_info full;
        evb_search_get_info(s, &full);
        EVB_CHECK(st == EVB_SUCCESS && bound_ok && !full.budget_stop && gens == 40,
                  "%s: no generation scores more than next_tokens said it could (%d generations, %zu tokens)", type->name, gens, full.tokens);
        evb_search_free(s);

        size_t B1 = full.tokens / 3, B2 = 2 * full.tokens / 3;
        evb_search *a = NULL, *b = NULL, *c = NULL;
        p.token_budget = B1;
        evb_search_alloc(type, &p, &q.p, &a);
        evb_search_set(a, &synth_type, &sy, 1);
        int sa = run_to_end(a);
        evb_search_info ia;
        evb_search_get_info(a, &ia);
        EVB_CHECK(sa == EVB_SUCCESS && ia.budget_stop && ia.tokens <= B1 && ia.tokens + ia.next_tokens > B1 && ia.generation > 0 && ia.generation < 40,
                  "%s: a budget of %zu tokens stops at generation %d with %zu scored (the next could score %zu)",
                  type->name, B1, ia.generation, ia.tokens, ia.next_tokens);
        char *dir = fixture_tmpdir(), path[1024];
        snprintf(path, sizeof path, "%s/ck.msgpack", dir);
        int sv = evb_search_save(a, path);
        p.token_budget = B2;
        evb_search_alloc(type, &p, &q.p, &b);
        evb_search_set(b, &synth_type, &sy, 2);
        int ld = evb_search_load(b, path), sb = run_to_end(b);
        evb_search_alloc(type, &p, &q.p, &c);
        evb_search_set(c, &synth_type, &sy, 2);
        int sc = run_to_end(c);
        evb_search_info ib;
        evb_search_get_info(b, &ib);
        EVB_CHECK(sv == 0 && ld == 0 && sb == EVB_SUCCESS && sc == EVB_SUCCESS && ib.budget_stop && ib.tokens <= B2 &&
                  ib.generation > ia.generation && same_state(b, c, q.U),
                  "%s: stopped at %zu tokens, resumed with %zu: identical to the run given %zu from the start (generation %d)",
                  type->name, B1, B2, B2, ib.generation);
        evb_search_free(a); evb_search_free(b); evb_search_free(c);
        fixture_rmdir(dir);
        free(dir);
        unmake(&q);
    }
}

/* Evaluations until a search's incumbent first reaches the optimum (true fitness within 1e-9), or -1. */
static long evals_to_optimum(const prob *q, synth *sy, evb_search_params p, double opt, double *rho_mean, int threads, evb_search **keep) {
    evb_search *s = NULL;
    evb_search_alloc(evb_search_evopress, &p, &q->p, &s);
    evb_search_set(s, &synth_type, sy, threads);
    int16_t lv[64];
    long reached = -1;
    double rs = 0;
    int nr = 0, st = EVB_CONTINUE;
    while (st == EVB_CONTINUE) {
        st = evb_search_iterate(s);
        evb_search_info in;
        evb_search_get_info(s, &in);
        if (!isnan(in.surrogate_rho)) { rs += in.surrogate_rho; nr++; }
        evb_search_best(s, lv, NULL);
        if (reached < 0 && true_fit(q, lv) <= opt + 1e-9) reached = (long)in.evaluations;
    }
    if (rho_mean) *rho_mean = nr ? rs / nr : NAN;
    if (keep) *keep = s;
    else evb_search_free(s);
    return reached;
}

/* The surrogate on the synthetic additive problem (its model's own form, with minibatch noise): it reaches the
 * DP optimum with fewer evaluations than plain EvoPress; its rank correlation is high; the same on 1 and 2
 * threads; a run saved half way and resumed is the uninterrupted run. */
static void test_surrogate(void) {
    prob q;
    make(&q, 32, 0);
    synth sy = {q.U, q.a, 0.3, -1, NULL, 0};
    double opt = dp_optimum(&q), rho = NAN;
    evb_search_params p = evo_params(300);
    long plain = evals_to_optimum(&q, &sy, p, opt, NULL, 2, NULL);
    p.surrogate = 8;
    evb_search *a = NULL, *b = NULL, *c = NULL;
    long sur = evals_to_optimum(&q, &sy, p, opt, &rho, 1, &a);
    EVB_CHECK(sur > 0 && (plain < 0 || sur < plain), "surrogate (8 proposals per offspring scored) reaches the optimum %.6f in %ld evaluations, "
              "plain EvoPress in %ld; mean rank correlation %.3f", opt, sur, plain, rho);
    EVB_CHECK(rho > 0.3, "the surrogate ranks the offspring it chose better than chance against their noisy stage-0 fitness (mean Spearman %.3f)", rho);
    evals_to_optimum(&q, &sy, p, opt, NULL, 2, &b);
    EVB_CHECK(same_state(a, b, q.U), "surrogate: 1 and 2 threads give the same best, front and counters");
    char *dir = fixture_tmpdir(), path[1024];
    snprintf(path, sizeof path, "%s/ck.msgpack", dir);
    evb_search_alloc(evb_search_evopress, &p, &q.p, &c);
    evb_search_set(c, &synth_type, &sy, 2);
    for (int g = 0; g < 40; g++) evb_search_iterate(c);
    int sv = evb_search_save(c, path);
    evb_search_free(c);
    c = NULL;
    evb_search_alloc(evb_search_evopress, &p, &q.p, &c);
    evb_search_set(c, &synth_type, &sy, 1);
    int ld = evb_search_load(c, path), st = run_to_end(c);
    EVB_CHECK(sv == 0 && ld == 0 && st == EVB_SUCCESS && same_state(a, c, q.U), "surrogate: saved at generation 40 (its log in the checkpoint) and resumed: identical to the uninterrupted run");
    evb_search_free(a); evb_search_free(b); evb_search_free(c);
    fixture_rmdir(dir);
    free(dir);
    unmake(&q);
}

int main(void) {
    test_hv_fixture();
    test_optimum(0, 0);
    test_optimum(1, 0);
    test_optimum(0, 0.3);
    test_additive_optimum();
    test_nsga2();
    test_runs();
    test_baselines();
    test_nsga2_runs();
    test_memo();
    test_memo_cap();
    test_ck_flips();
    test_ck_crafted();
    test_scale();
    test_budget();
    test_surrogate();
    return evb_test_summary();
}
