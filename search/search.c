/* search.c -- the generic driver of every search type: the problem's copy, the fitness workspaces, the one
 * batch call that scores candidates in parallel (memoised), the archive of the front, and the type table.
 * To add a search type: implement evb_search_ops in search/<name>.c and add a row to types[]. */
#include "search/search_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

// ---- random streams ----

uint64_t evb_rng_stream_(uint64_t seed, int64_t generation, int64_t index, int purpose) {
    uint64_t x = seed;
    uint64_t h = evb_splitmix64(&x);
    x = h ^ (uint64_t)generation * 0xD1B54A32D192ED03ull;
    h = evb_splitmix64(&x);
    x = h ^ (uint64_t)index * 0x8CB92BA72F3D8DD7ull;
    h = evb_splitmix64(&x);
    x = h ^ (uint64_t)purpose * 0x9E3779B97F4A7C15ull;
    return evb_splitmix64(&x);
}

int evb_rng_int_(uint64_t *x, int n) { return (int)(evb_splitmix64(x) % (uint64_t)n); }
double evb_rng_unit_(uint64_t *x) { return (evb_splitmix64(x) >> 11) * 0x1.0p-53; }

// ---- types ----

static const evb_search_type t_evopress = {"evopress", &evb_evopress_ops_};
static const evb_search_type t_nsga2 = {"nsga2", &evb_nsga2_ops_};
static const evb_search_type t_random = {"random", &evb_random_ops_};
static const evb_search_type t_uniform = {"uniform", &evb_uniform_ops_};
const evb_search_type *const evb_search_evopress = &t_evopress;
const evb_search_type *const evb_search_nsga2 = &t_nsga2;
const evb_search_type *const evb_search_random = &t_random;
const evb_search_type *const evb_search_uniform = &t_uniform;
static const evb_search_type *const types[] = {&t_evopress, &t_nsga2, &t_random, &t_uniform};

const evb_search_type *evb_search_type_find(const char *name) {
    for (size_t i = 0; i < sizeof types / sizeof *types; i++)
        if (strcmp(types[i]->name, name) == 0) return types[i];
    return NULL;
}

const char *evb_search_type_names(void) { return "evopress, nsga2, random, uniform"; }

evb_search_params evb_search_default_params(void) {
    evb_search_params p;
    memset(&p, 0, sizeof p);
    p.generations = 400;
    p.n_offspring = 64;
    p.n_stages = 3;
    p.n_survivors[0] = 8; p.n_survivors[1] = 2; p.n_survivors[2] = 1;
    p.n_tokens[0] = 2048; p.n_tokens[1] = 16384; p.n_tokens[2] = 65536;
    p.max_mutations = 3;
    p.initial_tokens = 2048;
    p.memo = 1;
    return p;
}

/* EvoPress set its stage sizes for a 524,288-token search calibration set: keep each size's share of the
 * tokens the fitness holds, at least 256 tokens, and 0 (every token, a fixed batch) once a stage would
 * reach the whole set. */
static size_t scale_tokens(size_t t, size_t total) {
    if (t == 0) return 0;
    double x = (double)t * (double)total / 524288.0;
    size_t v = x < 256 ? 256 : (size_t)x;
    return v >= total ? 0 : v;
}

void evb_search_params_scale(evb_search_params *p, size_t total_tokens) {
    p->total_tokens = total_tokens;
    if (!total_tokens) return;
    for (int j = 0; j < p->n_stages && j < EVB_MAX_STAGES; j++) p->n_tokens[j] = scale_tokens(p->n_tokens[j], total_tokens);
    p->initial_tokens = scale_tokens(p->initial_tokens, total_tokens);
}

// ---- life cycle ----

static uint64_t fnv(const void *data, size_t n, uint64_t h) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) { h ^= p[i]; h *= 0x100000001B3ull; }
    return h;
}

/* No start given: the cheapest levels, then single steps up the unit whose step best approaches the
 * budget, into s->start; EVB_EBUDGET when that finds none feasible. */
static int fill_start(evb_search *s, const evb_problem *p) {
    const int U = s->U;
    for (int u = 0; u < U; u++) {
        int b = 0;
        for (int l = 1; l < p->n_levels[u]; l++) if (p->cost[u][l] < p->cost[u][b]) b = l;
        s->start[u] = (int16_t)b;
    }
    for (int it = 0; it < 1000000 && !evb_problem_feasible(&s->prob, s->start); it++) {
        double c = evb_problem_cost(&s->prob, s->start), gap = s->prob.budget - c;
        int bu = -1, bl = 0;
        double bd = fabs(gap);
        for (int u = 0; u < U; u++)
            for (int d = -1; d <= 1; d += 2) {
                int l = s->start[u] + d;
                if (l < 0 || l >= s->n_levels[u]) continue;
                double nd = fabs(gap - (s->cost[u][l] - s->cost[u][s->start[u]]));
                if (nd < bd) { bd = nd; bu = u; bl = l; }
            }
        if (bu < 0) break;
        s->start[bu] = (int16_t)bl;
    }
    if (!evb_problem_feasible(&s->prob, s->start))
        EVB_ERRORF(EVB_EBUDGET, "search: no feasible start found for budget %.17g +- %g (hint: give the problem a "
                   "start)", p->budget, p->tolerance);
    return EVB_SUCCESS;
}

int evb_search_alloc(const evb_search_type *t, const evb_search_params *params, const evb_problem *p, evb_search **out) {
    *out = NULL;
    if (!t || !params) EVB_ERRORF(EVB_EINVAL, "search: no type or parameters");
    int st = evb_problem_check(p);
    if (st) return st;
    const evb_search_params *q = params;
    if (q->surrogate < 0 || q->surrogate == 1 || q->surrogate > 1024)
        EVB_ERRORF(EVB_EINVAL, "search: surrogate %d (0 off, or 2..1024 proposals per offspring scored)", q->surrogate);
    if (q->generations < 0 || q->n_offspring < 1 || q->n_stages < 1 || q->n_stages > EVB_MAX_STAGES || q->max_mutations < 1 || q->n_initial < 0)
        EVB_ERRORF(EVB_EINVAL, "search: generations %d, offspring %d, stages %d, max mutations %d, initial %d",
                   q->generations, q->n_offspring, q->n_stages, q->max_mutations, q->n_initial);
    for (int j = 0; j < q->n_stages; j++)
        if (q->n_survivors[j] < 1 || (j > 0 && q->n_survivors[j] > q->n_survivors[j - 1]))
            EVB_ERRORF(EVB_EINVAL, "search: stage %d keeps %d survivors (each stage keeps at least 1 and no more than the one before)", j, q->n_survivors[j]);
    evb_search *s = calloc(1, sizeof *s);
    if (!s) EVB_ERROR("search: out of memory", EVB_ENOMEM);
    int U = p->n_units, maxl = 0;
    for (int u = 0; u < U; u++) if (p->n_levels[u] > maxl) maxl = p->n_levels[u];
    s->type = t; s->p = *params; s->U = U;
    if (t == &t_uniform || t == &t_random) s->p.generations = 1; /* one round is the whole method */
    s->n_levels = malloc(sizeof(int) * U);
    s->group = malloc(sizeof(int) * U);
    s->cost_mem = malloc(sizeof(double) * U * maxl);
    s->cost = malloc(sizeof(double *) * U);
    s->start = malloc(sizeof(int16_t) * U);
    s->parent = malloc(sizeof(int16_t) * U);
    if (!s->n_levels || !s->group || !s->cost_mem || !s->cost || !s->start || !s->parent) { evb_search_free(s); EVB_ERROR("search: out of memory", EVB_ENOMEM); }
    /* groups renumbered 0..G-1 in order of first appearance */
    int *map = NULL, n_map = 0;
    for (int u = 0; u < U; u++) {
        int g = p->group ? p->group[u] : 0, k = 0;
        while (k < n_map && map[k] != g) k++;
        if (k == n_map) { int *m2 = realloc(map, sizeof(int) * (n_map + 1)); if (!m2) { free(map); evb_search_free(s); EVB_ERROR("search: out of memory", EVB_ENOMEM); } map = m2; map[n_map++] = g; }
        s->group[u] = k;
        s->n_levels[u] = p->n_levels[u];
        s->cost[u] = s->cost_mem + (size_t)u * maxl;
        memcpy(s->cost[u], p->cost[u], sizeof(double) * p->n_levels[u]);
    }
    free(map);
    s->n_groups = n_map;
    s->prob = *p;
    s->prob.n_levels = s->n_levels; s->prob.cost = (const double *const *)s->cost; s->prob.group = s->group;
    s->prob.unit_name = NULL;
    if (p->start) memcpy(s->start, p->start, sizeof(int16_t) * U);
    else if (fill_start(s, p)) { evb_search_free(s); return EVB_EBUDGET; }
    s->prob.start = s->start;
    /* the fingerprint of (type, parameters, problem), checked when a checkpoint is loaded; not the generation
     * count: a checkpoint continues into a longer run (each generation depends only on those before it) */
    uint64_t h = fnv(t->name, strlen(t->name), 0xCBF29CE484222325ull);
    h = fnv(&s->p.seed, sizeof s->p.seed, h);
    int ints[6] = {0, q->n_offspring, q->n_stages, q->max_mutations, q->n_initial, q->memo};
    h = fnv(ints, sizeof ints, h);
    h = fnv(q->n_survivors, sizeof(int) * q->n_stages, h);
    for (int j = 0; j < q->n_stages; j++) { uint64_t v = q->n_tokens[j]; h = fnv(&v, sizeof v, h); }
    uint64_t v2[2] = {q->initial_tokens, q->total_tokens};
    h = fnv(v2, sizeof v2, h);
    h = fnv(&U, sizeof U, h);
    h = fnv(s->n_levels, sizeof(int) * U, h);
    h = fnv(s->group, sizeof(int) * U, h);
    for (int u = 0; u < U; u++) h = fnv(s->cost[u], sizeof(double) * s->n_levels[u], h);
    double bt[2] = {p->budget, p->tolerance};
    h = fnv(bt, sizeof bt, h);
    h = fnv(s->start, sizeof(int16_t) * U, h);
    if (q->surrogate) h = fnv(&q->surrogate, sizeof q->surrogate, h); /* absent when off: older fingerprints hold */
    snprintf(s->fingerprint, sizeof s->fingerprint, "%016llx", (unsigned long long)h);
    if (q->surrogate && evb_sur_alloc_(s)) { evb_search_free(s); EVB_ERROR("search: out of memory for the surrogate", EVB_ENOMEM); }
    memcpy(s->parent, s->start, sizeof(int16_t) * U);
    s->parent_fit = INFINITY;
    s->parent_cost = evb_problem_cost(&s->prob, s->start);
    *out = s;
    return EVB_SUCCESS;
}

static void free_workspaces(evb_search *s) {
    for (int i = 0; s->ws && i < s->n_threads; i++) {
        if (s->ws[i] && s->f->workspace_destroy) s->f->workspace_destroy(s->ws[i]);
        free(s->ws[i]);
    }
    free(s->ws);
    s->ws = NULL;
}

void evb_search_charge_tokens(evb_search *s, size_t tokens) { s->tokens += tokens; }

void evb_search_free(evb_search *s) {
    if (!s) return;
    free_workspaces(s);
    free(s->n_levels); free(s->group); free(s->cost_mem); free(s->cost); free(s->start); free(s->parent);
    free(s->pop); free(s->pop_fit); free(s->pop_cost);
    free(s->memo); free(s->memo_lv); free(s->memo_stamp);
    free(s->arch_cost); free(s->arch_fit); free(s->arch_lv);
    evb_sur_free_(s);
    free(s);
}

int evb_search_set(evb_search *s, const evb_fitness_type *f, const void *fitness_params, int n_threads) {
    if (!f || !f->evaluate || !f->workspace_size) EVB_ERRORF(EVB_EINVAL, "search: the fitness has no evaluate or workspace_size");
    free_workspaces(s);
#ifdef _OPENMP
    if (n_threads <= 0) n_threads = omp_get_max_threads();
#else
    n_threads = 1;
#endif
    s->f = f; s->fp = fitness_params; s->n_threads = n_threads;
    s->ws = calloc((size_t)n_threads, sizeof(void *));
    if (!s->ws) EVB_ERROR("search: out of memory", EVB_ENOMEM);
    size_t bytes = f->workspace_size(fitness_params);
    for (int i = 0; i < n_threads; i++) {
        s->ws[i] = calloc(1, bytes ? bytes : 1);
        if (!s->ws[i]) { free_workspaces(s); EVB_ERROR("search: out of memory for workspaces", EVB_ENOMEM); }
        if (f->workspace_init) {
            int st = f->workspace_init(s->ws[i], fitness_params);
            if (st) { free(s->ws[i]); s->ws[i] = NULL; free_workspaces(s); return st; }
        }
    }
    return EVB_SUCCESS;
}

/* What a failed generation restores: everything a checkpoint holds, as it was when the generation began
 * (the stages that succeeded before the failure added memo entries, archive points and counts). */
typedef struct snapshot {
    int generation, initialized, done, pop_n, arch_n;
    double parent_fit, parent_cost;
    size_t evaluations, memo_hits, tokens, memo_n, arch_tokens;
    uint64_t memo_clock, *memo_stamp;
    int16_t *parent, *pop, *arch_lv;
    double *pop_fit, *pop_cost, *arch_cost, *arch_fit;
    size_t sur_n, sur_batches;
    uint32_t sur_nb;
    double *sur_A, *sur_b, sur_rho;
} snapshot;

static void snapshot_free(snapshot *k) {
    free(k->parent); free(k->pop); free(k->arch_lv); free(k->memo_stamp); free(k->pop_fit); free(k->pop_cost); free(k->arch_cost); free(k->arch_fit);
    free(k->sur_A); free(k->sur_b);
}

static int snapshot_take(const evb_search *s, snapshot *k) {
    size_t U = (size_t)s->U, np = (size_t)s->pop_n, na = (size_t)s->arch_n;
    *k = (snapshot){s->generation, s->initialized, s->done, s->pop_n, s->arch_n, s->parent_fit, s->parent_cost,
                    s->evaluations, s->memo_hits, s->tokens, s->memo_n, s->arch_tokens, s->memo_clock,
                    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, s->sur_n, s->sur_batches, s->sur_nb, NULL, NULL, s->sur_rho};
    if (s->p.surrogate) { /* the normal equations as the generation found them */
        k->sur_A = malloc(sizeof(double) * (size_t)s->sur_F * s->sur_F);
        k->sur_b = malloc(sizeof(double) * (size_t)s->sur_F);
        if (!k->sur_A || !k->sur_b) { free(k->sur_A); free(k->sur_b); return EVB_ENOMEM; }
        memcpy(k->sur_A, s->sur_A, sizeof(double) * (size_t)s->sur_F * s->sur_F);
        memcpy(k->sur_b, s->sur_b, sizeof(double) * (size_t)s->sur_F);
    }
    k->parent = malloc(sizeof(int16_t) * U);
    k->pop = malloc(sizeof(int16_t) * U * (np ? np : 1));
    k->pop_fit = malloc(sizeof(double) * (np ? np : 1));
    k->pop_cost = malloc(sizeof(double) * (np ? np : 1));
    k->arch_lv = malloc(sizeof(int16_t) * U * (na ? na : 1));
    k->arch_cost = malloc(sizeof(double) * (na ? na : 1));
    k->arch_fit = malloc(sizeof(double) * (na ? na : 1));
    k->memo_stamp = malloc(sizeof(uint64_t) * (s->memo_n ? s->memo_n : 1)); /* hits of a failed generation move them */
    if (!k->memo_stamp || !k->parent || !k->pop || !k->pop_fit || !k->pop_cost || !k->arch_lv || !k->arch_cost || !k->arch_fit) { snapshot_free(k); return EVB_ENOMEM; }
    memcpy(k->parent, s->parent, sizeof(int16_t) * U);
    if (s->memo_n) memcpy(k->memo_stamp, s->memo_stamp, sizeof(uint64_t) * s->memo_n);
    if (np) {
        memcpy(k->pop, s->pop, sizeof(int16_t) * U * np);
        memcpy(k->pop_fit, s->pop_fit, sizeof(double) * np);
        memcpy(k->pop_cost, s->pop_cost, sizeof(double) * np);
    }
    if (na) {
        memcpy(k->arch_lv, s->arch_lv, sizeof(int16_t) * U * na);
        memcpy(k->arch_cost, s->arch_cost, sizeof(double) * na);
        memcpy(k->arch_fit, s->arch_fit, sizeof(double) * na);
    }
    return EVB_SUCCESS;
}

/* The first slot of a memo key in a table of cap slots (a power of two). */
static size_t memo_home(uint64_t h, uint64_t seed, size_t n_tokens, size_t cap) {
    return (h ^ seed ^ n_tokens * 31) & (cap - 1);
}

/* Puts e into the first free slot from its home in table m of cap slots (linear probing). */
static void memo_place(memo_entry *m, size_t cap, memo_entry e) {
    size_t i = memo_home(e.hash, e.seed, e.n_tokens, cap);
    while (m[i].used) i = (i + 1) & (cap - 1);
    m[i] = e;
}

/* Drops the memo entries made after the first n (their slots are re-probed from scratch). */
static void memo_truncate(evb_search *s, size_t n) {
    if (s->memo_n <= n) return;
    memo_entry *m = calloc(s->memo_cap, sizeof *m);
    if (!m) return; /* the extra entries are right values: keeping them changes counts, never results */
    for (size_t k = 0; k < s->memo_cap; k++) {
        memo_entry e = s->memo[k];
        if (!e.used || e.lv >= n) continue;
        memo_place(m, s->memo_cap, e);
    }
    free(s->memo);
    s->memo = m;
    s->memo_n = n;
}

static void snapshot_restore(evb_search *s, const snapshot *k) {
    size_t U = (size_t)s->U;
    s->generation = k->generation; s->initialized = k->initialized; s->done = k->done;
    memcpy(s->parent, k->parent, sizeof(int16_t) * U);
    s->parent_fit = k->parent_fit; s->parent_cost = k->parent_cost;
    s->pop_n = k->pop_n;
    if (k->pop_n) { /* the population buffer is never shrunk or freed while a search lives */
        memcpy(s->pop, k->pop, sizeof(int16_t) * U * k->pop_n);
        memcpy(s->pop_fit, k->pop_fit, sizeof(double) * k->pop_n);
        memcpy(s->pop_cost, k->pop_cost, sizeof(double) * k->pop_n);
    }
    s->evaluations = k->evaluations; s->memo_hits = k->memo_hits; s->tokens = k->tokens;
    memo_truncate(s, k->memo_n);
    if (s->memo_n == k->memo_n && k->memo_n) memcpy(s->memo_stamp, k->memo_stamp, sizeof(uint64_t) * k->memo_n);
    s->memo_clock = k->memo_clock;
    if (s->p.surrogate) {
        s->sur_n = k->sur_n; s->sur_batches = k->sur_batches; s->sur_nb = k->sur_nb; s->sur_rho = k->sur_rho;
        memcpy(s->sur_A, k->sur_A, sizeof(double) * (size_t)s->sur_F * s->sur_F);
        memcpy(s->sur_b, k->sur_b, sizeof(double) * (size_t)s->sur_F);
    }
    s->arch_n = k->arch_n; s->arch_tokens = k->arch_tokens; /* the archive's capacity only grows */
    if (k->arch_n) {
        memcpy(s->arch_lv, k->arch_lv, sizeof(int16_t) * U * k->arch_n);
        memcpy(s->arch_cost, k->arch_cost, sizeof(double) * k->arch_n);
        memcpy(s->arch_fit, k->arch_fit, sizeof(double) * k->arch_n);
    }
}

int evb_search_iterate(evb_search *s) {
    if (!s->f) EVB_ERROR("search: no fitness (call evb_search_set first)", EVB_EINVAL);
    if (s->done) return EVB_SUCCESS;
    s->budget_stop = s->p.token_budget && s->tokens + s->type->ops->next_tokens(s) > s->p.token_budget;
    if (s->budget_stop) return EVB_SUCCESS; /* the state is that of the last generation: a checkpoint continues it */
    snapshot k;
    if (snapshot_take(s, &k)) EVB_ERROR("search: out of memory", EVB_ENOMEM);
    int st = EVB_SUCCESS;
    if (!s->initialized) {
        st = s->type->ops->init(s);
        if (!st) s->initialized = 1;
    }
    if (!st && s->generation >= s->p.generations) s->done = 1;
    else if (!st) {
        st = s->type->ops->iterate(s);
        if (!st && ++s->generation >= s->p.generations) s->done = 1;
    }
    if (!st) st = evb_memo_trim_(s);
    if (st) snapshot_restore(s, &k); /* the state of the last completed generation, so a checkpoint stays usable */
    snapshot_free(&k);
    if (st) return st;
    return s->done ? EVB_SUCCESS : EVB_CONTINUE;
}

// ---- the batch call ----

size_t evb_batch_tokens_(const evb_search *s, size_t n_tokens) {
    return n_tokens && (!s->p.total_tokens || n_tokens < s->p.total_tokens) ? n_tokens : s->p.total_tokens;
}

evb_batch evb_stage_batch_(const evb_search *s, int generation, int stage, size_t n_tokens) {
    evb_batch b = {0, n_tokens};
    if (n_tokens == 0 || (s->p.total_tokens && n_tokens >= s->p.total_tokens)) { b.n_tokens = 0; return b; }
    b.seed = evb_rng_stream_(s->p.seed, generation, stage, RNG_BATCH);
    return b;
}

static uint64_t hash_levels(const int16_t *lv, int U) { return fnv(lv, sizeof(int16_t) * U, 0xCBF29CE484222325ull); }
uint64_t evb_memo_hash_(const evb_search *s, const int16_t *lv) { return hash_levels(lv, s->U); }

/* The default bound: about 1 MiB of levels and keys in a checkpoint, at least 256 entries. */
size_t evb_memo_max_(const evb_search *s) {
    if (s->p.memo_max) return s->p.memo_max;
    size_t per = sizeof(int16_t) * (size_t)s->U + 24, n = ((size_t)1 << 20) / per;
    return n < 256 ? 256 : n;
}

static memo_entry *memo_find(evb_search *s, uint64_t h, const int16_t *lv, const evb_batch *b) {
    if (!s->memo_cap) return NULL;
    size_t i = memo_home(h, b->seed, b->n_tokens, s->memo_cap);
    while (s->memo[i].used) {
        memo_entry *e = &s->memo[i];
        if (e->hash == h && e->seed == b->seed && e->n_tokens == b->n_tokens && !memcmp(s->memo_lv + e->lv * s->U, lv, sizeof(int16_t) * s->U)) return e;
        i = (i + 1) & (s->memo_cap - 1);
    }
    return NULL;
}

int evb_memo_insert_(evb_search *s, uint64_t h, const int16_t *lv, uint64_t seed, size_t n_tokens, double v) {
    if (2 * (s->memo_n + 1) > s->memo_cap) { /* grow: rehash */
        size_t cap = s->memo_cap ? 2 * s->memo_cap : 1024;
        memo_entry *m = calloc(cap, sizeof *m);
        int16_t *lvs = realloc(s->memo_lv, sizeof(int16_t) * s->U * (cap / 2));
        if (lvs) s->memo_lv = lvs;
        uint64_t *stamps = realloc(s->memo_stamp, sizeof(uint64_t) * (cap / 2));
        if (stamps) s->memo_stamp = stamps;
        if (!m || !lvs || !stamps) { free(m); EVB_ERROR("search: out of memory for the memo", EVB_ENOMEM); }
        for (size_t k = 0; k < s->memo_cap; k++)
            if (s->memo[k].used) memo_place(m, cap, s->memo[k]);
        free(s->memo);
        s->memo = m; s->memo_cap = cap;
    }
    memo_place(s->memo, s->memo_cap, (memo_entry){h, seed, n_tokens, v, s->memo_n, 1});
    memcpy(s->memo_lv + s->memo_n * s->U, lv, sizeof(int16_t) * s->U);
    s->memo_stamp[s->memo_n] = s->memo_clock++;
    s->memo_n++;
    return EVB_SUCCESS;
}

typedef struct stamped { uint64_t t; size_t slot; } stamped;
static int cmp_stamped(const void *a, const void *b) {
    const stamped *x = a, *y = b;
    return x->t < y->t ? -1 : x->t > y->t;
}

/* The memo is a cache: which entries it keeps changes how many fitness calls are made, never a value. The
 * newest entries are kept, renumbered oldest first, so a checkpoint (which stores them in that order) and an
 * uninterrupted run make the same choices afterwards. */
int evb_memo_trim_(evb_search *s) {
    size_t max = evb_memo_max_(s), n = s->memo_n, U = (size_t)s->U;
    if (n <= max) return EVB_SUCCESS;
    stamped *o = malloc(sizeof *o * n);
    size_t *slot_entry = malloc(sizeof(size_t) * n);
    int16_t *lv = malloc(sizeof(int16_t) * U * max);
    uint64_t *stamp = malloc(sizeof(uint64_t) * max);
    memo_entry *m = calloc(s->memo_cap, sizeof *m);
    if (!o || !slot_entry || !lv || !stamp || !m) {
        free(o); free(slot_entry); free(lv); free(stamp); free(m);
        EVB_ERROR("search: out of memory trimming the memo", EVB_ENOMEM);
    }
    for (size_t k = 0; k < s->memo_cap; k++) if (s->memo[k].used) slot_entry[s->memo[k].lv] = k;
    for (size_t i = 0; i < n; i++) o[i] = (stamped){s->memo_stamp[i], i};
    qsort(o, n, sizeof *o, cmp_stamped);
    for (size_t j = 0; j < max; j++) { /* the newest max, oldest first */
        size_t slot = o[n - max + j].slot;
        memo_entry e = s->memo[slot_entry[slot]];
        e.lv = j;
        memcpy(lv + j * U, s->memo_lv + slot * U, sizeof(int16_t) * U);
        stamp[j] = s->memo_stamp[slot];
        memo_place(m, s->memo_cap, e);
    }
    /* the slot arrays keep their size (memo_cap / 2) so that inserts need no regrowth */
    memcpy(s->memo_lv, lv, sizeof(int16_t) * U * max);
    memcpy(s->memo_stamp, stamp, sizeof(uint64_t) * max);
    free(s->memo);
    s->memo = m;
    s->memo_n = max;
    free(o); free(slot_entry); free(lv); free(stamp);
    return EVB_SUCCESS;
}

void evb_search_set_batch(evb_search *s, evb_batch_fn fn, void *ctx) { s->batch_fn = fn; s->batch_ctx = ctx; }
int evb_search_n_units(const evb_search *s) { return s->U; }

static int check_levels(const evb_search *s, const int16_t *levels, int n, double *fitness, const evb_batch *b) {
    if (!s->f) EVB_ERROR("search: no fitness (call evb_search_set first)", EVB_EINVAL);
    if (n < 0 || (n > 0 && (!levels || !fitness)) || !b) EVB_ERRORF(EVB_EINVAL, "search: evaluate of %d candidates without levels, fitness or batch", n);
    for (int i = 0; i < n; i++)
        for (int u = 0; u < s->U; u++) {
            int l = levels[(size_t)i * s->U + u];
            if (l < 0 || l >= s->n_levels[u])
                EVB_ERRORF(EVB_EINVAL, "search: candidate %d of %d gives unit %d level %d, outside 0..%d", i, n, u, l, s->n_levels[u] - 1);
        }
    return EVB_SUCCESS;
}

int evb_search_evaluate_local(evb_search *s, const int16_t *levels, int n, const int16_t *ref, const evb_batch *b, double *fitness) {
    int st = check_levels(s, levels, n, fitness, b);
    if (st || n == 0) return st;
    int *status = calloc((size_t)n, sizeof(int)), first_err = n, failed = 0;
    if (!status) EVB_ERROR("search: out of memory", EVB_ENOMEM);
    char first_msg[1024] = "";
    evb_genome rg = {s->U, ref};
    #pragma omp parallel for schedule(dynamic) num_threads(s->n_threads)
    for (int i = 0; i < n; i++) {
        int ith = 0;
#ifdef _OPENMP
        ith = omp_get_thread_num();
#endif
        int stop;
        #pragma omp atomic read
        stop = failed;
        if (stop) { status[i] = EVB_CONTINUE; continue; } /* one failure ends the batch: the rest is not scored */
        evb_genome g = {s->U, levels + (size_t)i * s->U};
        double v = NAN;
        int e = s->f->evaluate(s->fp, s->ws[ith], &g, ref ? &rg : NULL, b, &v);
        if (!e && !isfinite(v))
            e = EVB_RAISEF(EVB_EBADFUNC, "fitness %s returned %g for candidate %d of %d (generation %d, batch seed %llu, %zu tokens) "
                           "(hint: a fitness must return a finite number; check it on this candidate)",
                           s->f->name, v, i, n, s->generation + 1, (unsigned long long)b->seed, b->n_tokens);
        fitness[i] = v;
        status[i] = e;
        if (e) {
            #pragma omp atomic write
            failed = 1;
            #pragma omp critical(evb_search_error)
            if (i < first_err) { /* a fitness's own error passes through as it wrote it */
                first_err = i;
                snprintf(first_msg, sizeof first_msg, "%s", evb_last_error());
            }
        }
    }
    st = first_err < n ? status[first_err] : EVB_SUCCESS;
    free(status);
    if (st && first_msg[0]) EVB_ERRORF(st, "%s", first_msg);
    return st;
}

int evb_search_evaluate(evb_search *s, const int16_t *levels, int n, const int16_t *ref, const evb_batch *b, double *fitness) {
    int st = check_levels(s, levels, n, fitness, b);
    if (st) return st;
    int *todo = malloc(sizeof(int) * (n > 0 ? n : 1)), n_todo = 0;
    uint64_t *h = malloc(sizeof(uint64_t) * (n > 0 ? n : 1));
    int16_t *lv = malloc(sizeof(int16_t) * s->U * (n > 0 ? n : 1));
    double *f = malloc(sizeof(double) * (n > 0 ? n : 1));
    if (!todo || !h || !lv || !f) { free(todo); free(h); free(lv); free(f); EVB_ERROR("search: out of memory", EVB_ENOMEM); }
    size_t hits = 0; /* counted only when the whole batch succeeds */
    for (int i = 0; i < n; i++) {
        h[i] = hash_levels(levels + (size_t)i * s->U, s->U);
        memo_entry *e = s->p.memo ? memo_find(s, h[i], levels + (size_t)i * s->U, b) : NULL;
        if (e) { fitness[i] = e->value; hits++; s->memo_stamp[e->lv] = s->memo_clock++; }
        else {
            memcpy(lv + (size_t)n_todo * s->U, levels + (size_t)i * s->U, sizeof(int16_t) * s->U);
            todo[n_todo++] = i;
        }
    }
    if (n_todo) st = s->batch_fn ? s->batch_fn(s->batch_ctx, s, lv, n_todo, ref, b, f) : evb_search_evaluate_local(s, lv, n_todo, ref, b, f);
    for (int k = 0; !st && k < n_todo; k++)
        if (!isfinite(f[k]))
            st = EVB_RAISEF(EVB_EBADFUNC, "fitness %s returned %g for candidate %d of %d (generation %d, batch seed %llu, %zu tokens) "
                            "(hint: a fitness must return a finite number; check it on this candidate)",
                            s->f->name, f[k], todo[k], n, s->generation + 1, (unsigned long long)b->seed, b->n_tokens);
    if (!st) s->memo_hits += hits;
    for (int k = 0; !st && k < n_todo; k++) fitness[todo[k]] = f[k];
    if (!st) st = evb_sur_record_(s, levels, n, fitness, evb_batch_tokens_(s, b->n_tokens)); /* the whole batch, memo hits included: one batch's fixed effect */
    for (int k = 0; !st && k < n_todo; k++) {
        int i = todo[k];
        fitness[i] = f[k];
        s->evaluations++;
        s->tokens += b->n_tokens ? b->n_tokens : s->p.total_tokens;
        if (s->p.memo) st = evb_memo_insert_(s, h[i], levels + (size_t)i * s->U, b->seed, b->n_tokens, fitness[i]);
    }
    free(todo); free(h); free(lv); free(f);
    return st;
}

// ---- the archive ----

void evb_archive_add_(evb_search *s, const int16_t *lv, double cost, double fit, const evb_batch *b) {
    size_t fid = b->n_tokens ? b->n_tokens : SIZE_MAX;
    if (fid < s->arch_tokens && s->arch_n) return;
    if (fid > s->arch_tokens) s->arch_n = 0; /* a higher fidelity replaces the archive */
    s->arch_tokens = fid;
    for (int i = 0; i < s->arch_n; i++) {
        if (s->arch_cost[i] <= cost && s->arch_fit[i] <= fit) return; /* dominated or equal */
    }
    int m = 0;
    for (int i = 0; i < s->arch_n; i++) {
        if (cost <= s->arch_cost[i] && fit <= s->arch_fit[i]) continue; /* now dominated */
        s->arch_cost[m] = s->arch_cost[i]; s->arch_fit[m] = s->arch_fit[i];
        memmove(s->arch_lv + (size_t)m * s->U, s->arch_lv + (size_t)i * s->U, sizeof(int16_t) * s->U);
        m++;
    }
    s->arch_n = m;
    if (s->arch_n == s->arch_cap) {
        int cap = s->arch_cap ? 2 * s->arch_cap : 64;
        double *c = realloc(s->arch_cost, sizeof(double) * cap);
        if (c) s->arch_cost = c;
        double *f = realloc(s->arch_fit, sizeof(double) * cap);
        if (f) s->arch_fit = f;
        int16_t *l = realloc(s->arch_lv, sizeof(int16_t) * s->U * cap);
        if (l) s->arch_lv = l;
        if (!c || !f || !l) return;
        s->arch_cap = cap;
    }
    s->arch_cost[s->arch_n] = cost; s->arch_fit[s->arch_n] = fit;
    memcpy(s->arch_lv + (size_t)s->arch_n * s->U, lv, sizeof(int16_t) * s->U);
    s->arch_n++;
}

// ---- results ----

void evb_search_get_info(const evb_search *s, evb_search_info *info) {
    info->generation = s->generation;
    info->best_fitness = s->parent_fit;
    info->best_cost = s->parent_cost;
    info->evaluations = s->evaluations;
    info->memo_hits = s->memo_hits;
    info->tokens = s->tokens;
    info->budget_stop = s->budget_stop;
    info->surrogate_rho = s->p.surrogate ? s->sur_rho : NAN;
    info->surrogate_log = s->sur_n;
    info->next_tokens = s->done ? 0 : s->type->ops->next_tokens(s);
}

int evb_search_best(const evb_search *s, int16_t *level, double *fitness) {
    if (level) memcpy(level, s->parent, sizeof(int16_t) * s->U);
    if (fitness) *fitness = s->parent_fit;
    return EVB_SUCCESS;
}

typedef struct order { double c, f; int i; } order;
static int cmp_order(const void *a, const void *b) {
    const order *x = a, *y = b;
    if (x->c != y->c) return x->c < y->c ? -1 : 1;
    if (x->f != y->f) return x->f < y->f ? -1 : 1;
    return x->i - y->i;
}

int evb_search_front(const evb_search *s, evb_front_point *pts, int16_t *levels, int max) {
    int n = s->arch_n;
    const double *c = s->arch_cost, *f = s->arch_fit;
    const int16_t *lv = s->arch_lv;
    order *o = malloc(sizeof(order) * (n > 0 ? n : 1));
    if (!o) return 0;
    for (int i = 0; i < n; i++) o[i] = (order){c[i], f[i], i};
    qsort(o, (size_t)n, sizeof *o, cmp_order);
    int m = 0;
    double best = INFINITY;
    for (int k = 0; k < n; k++) {
        if (!(o[k].f < best)) continue;
        best = o[k].f;
        if (m < max) {
            if (pts) pts[m] = (evb_front_point){o[k].c, o[k].f};
            if (levels) memcpy(levels + (size_t)m * s->U, lv + (size_t)o[k].i * s->U, sizeof(int16_t) * s->U);
        }
        m++;
    }
    free(o);
    return m;
}

int evb_fitness_once(const evb_fitness_type *f, const void *params, const int16_t *level, int n_units, double *fitness) {
    size_t bytes = f->workspace_size(params);
    void *ws = calloc(1, bytes ? bytes : 1);
    int st = ws ? EVB_SUCCESS : EVB_RAISEF(EVB_ENOMEM, "out of memory for a workspace");
    if (!st && f->workspace_init) st = f->workspace_init(ws, params);
    evb_genome g = {n_units, level};
    evb_batch all = {0, 0};
    if (!st) {
        st = f->evaluate(params, ws, &g, NULL, &all, fitness);
        if (f->workspace_destroy) f->workspace_destroy(ws);
    }
    free(ws);
    return st;
}
