/* evb_search.h -- the search: units with levels and costs, a budget, a fitness, and the algorithms that
 * pick one level per unit.
 *
 * Nothing here knows what a transformer is. A problem has U units; unit u has n_levels[u] levels, each
 * with a cost (the budgeted quantity: parameters kept, bits, bytes, blocks; the caller decides). A
 * candidate (genome) is one level index per unit. The budget bounds the summed cost: a candidate is
 * feasible when |sum_u cost[u][level[u]] - budget| <= tolerance. The fitness is a black box that scores a
 * candidate on a minibatch of calibration data at a given fidelity (tokens); lower is better.
 *
 * Names: U = units, n_offspring = lambda, n_survivors = S_j, n_tokens = T_j (evopress.md section 2).
 *
 * The caller owns the loop (GSL style):
 *
 *     evb_search *s;
 *     int status = evb_search_alloc(evb_search_evopress, &params, &problem, &s);
 *     if (!status) status = evb_search_set(s, &my_fitness, my_params, n_threads);
 *     while (status == EVB_CONTINUE) {
 *         status = evb_search_iterate(s);          // one generation, every selection stage
 *         // progress, logging, checkpointing here (evb_search_save)
 *     }
 *     evb_search_best(s, levels, &fitness);        // and evb_search_front(...)
 *     evb_search_free(s);
 *
 * Same seed, same answer: every random choice is drawn from streams derived from (seed, generation,
 * candidate index, purpose), never from a thread id, and minibatch seeds are chosen before candidates are
 * scored in parallel, so results do not depend on the thread count. */
#ifndef EVB_SEARCH_H
#define EVB_SEARCH_H

#include <stddef.h>
#include <stdint.h>
#include "evobudget/evb_status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the problem ---- */

typedef struct evb_problem {
    int n_units;                 /* U */
    const int *n_levels;         /* [U] levels of each unit, >= 1 */
    const double *const *cost;   /* cost[u][l]: budgeted cost of unit u at level l */
    const int *group;            /* [U] or NULL. Units of one group trade budget only among themselves:
                                    a level switch lowers one unit and raises another of the same group.
                                    NULL: one group holding every unit. */
    double budget;               /* target of the summed cost */
    double tolerance;            /* feasible when |total - budget| <= tolerance (absolute, >= 0) */
    const int16_t *start;        /* [U] or NULL: a feasible starting candidate (e.g. the uniform one) */
    const char *const *unit_name;/* [U] or NULL: names for messages and outputs */
} evb_problem;

/* Checks the problem's shape (positive counts, finite costs, a reachable budget: the cheapest and the
 * dearest candidates bracket budget +- tolerance) and the start candidate when given. EVB_EINVAL or
 * EVB_EBUDGET with a message that names the unit or the bound. */
int evb_problem_check(const evb_problem *p);
/* The summed cost of a candidate. */
double evb_problem_cost(const evb_problem *p, const int16_t *level);
/* 1 when the candidate's levels exist and its cost is within the budget's tolerance. */
int evb_problem_feasible(const evb_problem *p, const int16_t *level);
/* The least summed value[u * max_levels + level[u]] that budget-keeping exchanges reach from level (feasible;
 * changed in place): while one lowers the sum, the best exchange of one unit a level up and another of the
 * same group a level down. For values convex along each unit's levels and equal steps within a group this
 * is the optimum of the additive model under the budget (e.g. a sensitivity profile's: a search's start).
 * Returns the number of exchanges, or EVB_EINVAL for an infeasible start. */
int evb_problem_additive_optimum(const evb_problem *p, const double *value, int max_levels, int16_t *level);

/* ---- the fitness (the plug-in contract) ----
 *
 * To add a fitness: implement the functions below, export one `const evb_fitness_type`, and pass it to
 * evb_search_set (or add it to the CLI's table).
 *
 * 1. params is shared, read-only data (dense weights, teacher outputs, a level database); never copied.
 * 2. w is this thread's workspace, workspace_size(params) bytes, allocated by the search before its
 *    parallel region, initialised once with workspace_init and released with workspace_destroy. evaluate
 *    may keep a cache in it between calls (levels applied, hidden states of ref on the last batch).
 * 3. evaluate may run at the same time in several threads, each with its own w. It must not open an OpenMP
 *    region, change BLAS threading, touch globals or exit.
 * 4. It writes one value, lower is better, and returns EVB_SUCCESS or an EVB_E* code; a NaN or Inf value is
 *    turned into EVB_EBADFUNC by the search.
 * 5. ref, when not NULL, is a candidate that g shares most levels with (its parent): a fitness may reuse
 *    work done for ref on the same batch. It is a hint only; the value must not depend on it.
 * 6. The batch names the calibration tokens: the same (seed, n_tokens) must select the same tokens, in
 *    every thread and process. n_tokens is the fidelity; 0 means all the fitness has. */
typedef struct evb_genome {
    int n_units;
    const int16_t *level;    /* [n_units] */
} evb_genome;

typedef struct evb_batch {
    uint64_t seed;           /* which sample of calibration tokens */
    size_t   n_tokens;       /* tokens to spend; 0: all */
} evb_batch;

typedef struct evb_fitness_type {
    const char *name;                                        /* "kl", "ppl", a plug-in's name */
    size_t (*workspace_size)(const void *params);            /* bytes of scratch per thread */
    int    (*workspace_init)(void *w, const void *params);   /* may be NULL */
    void   (*workspace_destroy)(void *w);                    /* may be NULL */
    int    (*evaluate)(const void *params, void *w, const evb_genome *g, const evb_genome *ref,
                       const evb_batch *b, double *fitness);
} evb_fitness_type;

/* One candidate's fitness on every token the fitness holds (batch {0, 0}), with a workspace of its own made
 * and released here: for scoring a result outside a search. */
int evb_fitness_once(const evb_fitness_type *f, const void *params, const int16_t *level, int n_units,
                     double *fitness);

/* ---- the algorithms ---- */

#define EVB_MAX_STAGES 8

typedef struct evb_search_params {
    uint64_t seed;
    int generations;             /* EvoPress / NSGA-II generations */
    int n_offspring;             /* lambda (EvoPress); population size (NSGA-II) */
    int n_stages;                /* selection stages, 1..EVB_MAX_STAGES */
    int n_survivors[EVB_MAX_STAGES]; /* survivors of each stage; the last is 1 for EvoPress */
    size_t n_tokens[EVB_MAX_STAGES]; /* tokens of each stage's minibatch; 0: all */
    int max_mutations;           /* R: switches per offspring are min(U{1..R}, U{1..R}); default 3 */
    int n_initial;               /* random feasible candidates scored to pick the start (0: use start or
                                    uniform); also N for the best-of-N random baseline */
    size_t initial_tokens;       /* tokens to score the initial candidates on */
    size_t total_tokens;         /* tokens the fitness holds (a stage asking for >= this uses all, with a
                                    fixed seed, so its scores are memoised across generations); 0: unknown */
    int memo;                    /* 1: memoise fitness by (candidate, batch); default 1 */
    size_t memo_max;             /* most memo entries kept between generations, the least recently used
                                    dropped first (a cache: results do not depend on it, only the number of
                                    fitness calls); 0: about 1 MiB of candidates, at least 256 */
    size_t token_budget;         /* 0: none. Otherwise the search ends, as if done, before a generation
                                    (or the initial population) whose fitness calls could take the tokens
                                    scored past it; like generations, not part of the checkpoint's
                                    fingerprint: a run stopped by its budget continues with a larger one */
    int surrogate;               /* 0: off. K >= 2: surrogate-assisted (EvoPress, NSGA-II): each generation
                                    proposes K times the offspring (population) it scores, ranks them by a
                                    model of fitness fitted on every candidate scored so far (surrogate.c)
                                    and scores half of them as it ranks best, half at random from the
                                    rest; selection stays on real fitness */
} evb_search_params;

typedef struct evb_search_type {
    const char *name;            /* "evopress", "nsga2", "random", "uniform" */
    /* the rest is private to search/ */
    const struct evb_search_ops *ops;
} evb_search_type;

extern const evb_search_type *const evb_search_evopress;
extern const evb_search_type *const evb_search_nsga2;
extern const evb_search_type *const evb_search_random;   /* best of n_initial random feasible candidates */
extern const evb_search_type *const evb_search_uniform;  /* scores the start candidate */

/* The search types by name, NULL if unknown; and all names, comma-separated, for messages. */
const evb_search_type *evb_search_type_find(const char *name);
const char *evb_search_type_names(void);

/* Defaults of EvoPress's sparsity mode (evopress.md 2.7): seed 0, 400 generations, lambda 64, stages
 * 8 @ 2048, 2 @ 16384, 1 @ 65536 tokens, max_mutations 3, no initial population (initial_tokens 2048),
 * total_tokens 0 (unknown), memo on. Scale them to the fitness with evb_search_params_scale. */
evb_search_params evb_search_default_params(void);
/* Sets total_tokens and scales the stage and initial token counts to it. EvoPress chose its stage sizes
 * for 524,288 calibration tokens: each keeps its share of total_tokens (n * total_tokens / 524288), at
 * least 256, and becomes 0 (every token, on a fixed batch, memoised across generations) once it would
 * reach total_tokens. With 65,536 tokens the defaults become 256, 2048, 8192. total_tokens 0 changes
 * nothing. */
void evb_search_params_scale(evb_search_params *p, size_t total_tokens);

typedef struct evb_search evb_search;

int  evb_search_alloc(const evb_search_type *t, const evb_search_params *params, const evb_problem *p,
                      evb_search **out);
void evb_search_free(evb_search *s);
/* Attaches the fitness and allocates n_threads workspaces (n_threads <= 0: the OpenMP maximum). */
int  evb_search_set(evb_search *s, const evb_fitness_type *f, const void *fitness_params, int n_threads);
/* One generation. EVB_CONTINUE while generations remain, EVB_SUCCESS when done, an error otherwise (the
 * state is then unchanged since the last completed generation, so a checkpoint stays usable). */
int  evb_search_iterate(evb_search *s);

/* Scores n candidates (levels [n][U]) on one batch, in parallel over candidates: the one batch call every
 * algorithm goes through (later spread over processes). ref may be NULL. Memoised when params.memo.
 * A level outside its unit's range is EVB_EINVAL; a NaN or Inf value is EVB_EBADFUNC naming the candidate;
 * a fitness's own error is returned with its message. On any error nothing is memoised or counted. */
int  evb_search_evaluate(evb_search *s, const int16_t *levels, int n, const int16_t *ref,
                         const evb_batch *b, double *fitness);

/* Scores n candidates with this search's fitness and workspaces, in parallel over candidates, without the
 * memo or the counters: what evb_search_evaluate does locally, for a batch evaluator's own share. The
 * checks and errors are evb_search_evaluate's. */
int  evb_search_evaluate_local(evb_search *s, const int16_t *levels, int n, const int16_t *ref,
                               const evb_batch *b, double *fitness);

/* A batch evaluator: scores the n candidates evb_search_evaluate did not find in its memo, elsewhere (other
 * processes) or in part locally (evb_search_evaluate_local). Returns a status; fitness[n] must then be
 * finite. Set with evb_search_set_batch (NULL: local evaluation). */
typedef int (*evb_batch_fn)(void *ctx, evb_search *s, const int16_t *levels, int n, const int16_t *ref,
                            const evb_batch *b, double *fitness);
void evb_search_set_batch(evb_search *s, evb_batch_fn fn, void *ctx);
/* Units of the search's problem. */
int  evb_search_n_units(const evb_search *s);

/* ---- results ---- */

typedef struct evb_search_info {
    int generation;              /* generations done */
    double best_fitness;         /* the incumbent's fitness on the last stage's batch */
    double best_cost;
    size_t evaluations;          /* fitness calls made (memo hits not counted) */
    size_t memo_hits;
    size_t tokens;               /* tokens scored by fitness calls */
    int budget_stop;             /* 1: ended by params.token_budget (the next generation could pass it) */
    size_t next_tokens;          /* the most tokens the next generation's fitness calls can take */
    double surrogate_rho;        /* the last generation's Spearman rank correlation between the surrogate's
                                    predictions and the real fitness of the offspring it chose; NAN: none */
    size_t surrogate_log;        /* candidates the surrogate has been fitted on */
} evb_search_info;

void evb_search_get_info(const evb_search *s, evb_search_info *info);
/* A surrogate-assisted search's prior: per unit and level (prior[u * max_levels + l]) the fitness that level
 * alone is expected to add, e.g. a sensitivity profile (evb_mp_sensitivity); the surrogate's weights are
 * pulled toward it where data is scarce, and the problem's start (e.g. the prior's additive optimum,
 * evb_problem_additive_optimum) joins EvoPress's random initial population. NULL: 0. EVB_EINVAL for a search
 * without a surrogate or a value that is not finite. Set before the first generation (it is not stored in a
 * checkpoint: set it again on resume). */
int  evb_search_set_prior(evb_search *s, const double *prior, int max_levels);
/* Tokens forwarded for the search before it ran (e.g. the sensitivity profile its prior and start came
 * from): added to its tokens, so a token budget includes them. Before the first generation; a checkpoint
 * keeps them. */
void evb_search_charge_tokens(evb_search *s, size_t tokens);
/* The incumbent (EvoPress parent, best of NSGA-II's first front by fitness within the budget). */
int  evb_search_best(const evb_search *s, int16_t *level, double *fitness);

/* The non-dominated set of (cost, fitness) over the candidates scored on the highest fidelity so far,
 * sorted by cost. Writes up to max points; returns how many there are. levels may be NULL. */
typedef struct evb_front_point { double cost, fitness; } evb_front_point;
int  evb_search_front(const evb_search *s, evb_front_point *pts, int16_t *levels, int max);

/* ---- checkpoints ----
 * The whole state (generation, incumbent, population, memo, RNG positions, counters) as msgpack behind a
 * header with its length and an xxHash64 checksum, written atomically (a temporary sibling, fsync, rename).
 * Its size is bounded: the memo holds at most memo_max entries, the population n_offspring.
 * Loading into a search allocated with the same type, params and problem continues it exactly: resumed and
 * uninterrupted runs give the same result. params.generations may be larger than the run's: a finished run
 * then continues to the new count, as if it had been asked for from the start. A checkpoint that is damaged
 * (checksum), of an older format, of another problem or parameters (fingerprint), or whose fields do not
 * fit the problem (a level outside its unit's range, a cost that is not the candidate's, a generation beyond
 * params.generations) is refused with EVB_EFORMAT and the search is left as it was. */
int  evb_search_save(const evb_search *s, const char *path);
int  evb_search_load(evb_search *s, const char *path);

/* ---- fronts ---- */

/* Indices of the non-dominated points among n (minimisation in both), sorted by the first objective;
 * returns their count. */
int    evb_pareto_front_2d(const double *f1, const double *f2, int n, int *idx);
/* Exact hypervolume dominated by n points (minimisation) up to the reference point (r1, r2). */
double evb_hypervolume_2d(const double *f1, const double *f2, int n, double r1, double r2);

#ifdef __cplusplus
}
#endif
#endif
