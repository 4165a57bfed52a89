/* search_impl.h -- the private state of a search and the helpers its files share (never installed). */
#ifndef EVB_SEARCH_IMPL_H
#define EVB_SEARCH_IMPL_H
#include "evobudget/evb_search.h"
#include "core/rng.h"

#include <stdint.h>

/* What a search type does: set up its first state (may score candidates), one generation, and the most
 * tokens the next call of init (when not yet initialized) and iterate together can score (memo hits aside). */
struct evb_search_ops {
    int (*init)(evb_search *s);
    int (*iterate)(evb_search *s);
    size_t (*next_tokens)(const evb_search *s);
};

typedef struct memo_entry { uint64_t hash, seed; size_t n_tokens; double value; size_t lv; int used; } memo_entry;

struct evb_search {
    const evb_search_type *type;
    evb_search_params p;
    evb_problem prob;            /* points into the owned copies below */
    int U, n_groups;
    int *n_levels, *group;       /* group: 0 .. n_groups-1 */
    double *cost_mem, **cost;
    int16_t *start;
    char fingerprint[17];
    /* the fitness */
    const evb_fitness_type *f;
    const void *fp;
    int n_threads;
    void **ws;
    evb_batch_fn batch_fn;       /* NULL: local evaluation */
    void *batch_ctx;
    /* state */
    int generation, initialized, done, budget_stop;
    int16_t *parent;
    double parent_fit, parent_cost;
    int pop_n;                   /* NSGA-II population */
    int16_t *pop;
    double *pop_fit, *pop_cost;
    size_t evaluations, memo_hits, tokens;
    /* memo: open addressing; entry e's levels at memo_lv + e.lv U, its last use at memo_stamp[e.lv] (slots
     * 0 .. memo_n-1). Trimmed to memo_max_ entries, least recently used first, after each generation. */
    memo_entry *memo;
    size_t memo_cap, memo_n;
    int16_t *memo_lv;
    uint64_t *memo_stamp, memo_clock;
    /* archive of non-dominated (cost, fitness) at the highest fidelity seen */
    size_t arch_tokens;          /* SIZE_MAX: every token */
    int arch_n, arch_cap;
    double *arch_cost, *arch_fit;
    int16_t *arch_lv;
    /* the surrogate (surrogate.c): per unit its first feature; the log of scored candidates (levels, fitness,
     * batch number); the normal equations accumulated from it; the fitted weights and the prior */
    int *sur_off, sur_F, sur_ready;
    int16_t *sur_lv;
    double *sur_y, *sur_A, *sur_b, *sur_w, *sur_prior, sur_rho;
    int sur_has_prior;           /* a prior was set: the start joins EvoPress's initial population */
    uint32_t *sur_batch, sur_nb;
    uint64_t *sur_tok;           /* the tokens each logged fitness was measured on: its batch's weight */
    size_t sur_n, sur_cap, sur_batches;
};

/* Deterministic random streams: (seed, generation, index, purpose) -> a generator state, drawn from with
 * evb_splitmix64 (core/rng.h). */
enum { RNG_MUTATE = 1, RNG_BATCH, RNG_INIT, RNG_CROSS, RNG_REPAIR };
uint64_t evb_rng_stream_(uint64_t seed, int64_t generation, int64_t index, int purpose);
int      evb_rng_int_(uint64_t *x, int n);     /* uniform in [0, n) */
double   evb_rng_unit_(uint64_t *x);           /* uniform in [0, 1) */

/* The tokens one candidate costs on a batch of n_tokens (0 or at least the total: every token). */
size_t evb_batch_tokens_(const evb_search *s, size_t n_tokens);
/* The batch of stage j of a generation: a fixed one when the stage asks for every token. */
evb_batch evb_stage_batch_(const evb_search *s, int generation, int stage, size_t n_tokens);
/* One budget-preserving level switch inside a group (EvoPress); 0 when none is possible. */
int  evb_switch_(const evb_search *s, int16_t *lv, uint64_t *r);
/* Moves a candidate toward the budget by single-level steps; returns 1 when it ends feasible. */
int  evb_repair_(const evb_search *s, int16_t *lv, uint64_t *r);
/* A random feasible candidate: a walk of many switches (and repairs) from the start. */
int  evb_random_candidate_(const evb_search *s, int16_t *lv, uint64_t *r);
/* Records a fitness in the memo (as its most recent use). */
int  evb_memo_insert_(evb_search *s, uint64_t hash, const int16_t *lv, uint64_t seed, size_t n_tokens, double v);
/* The memo's key hash of a candidate. */
uint64_t evb_memo_hash_(const evb_search *s, const int16_t *lv);
/* The most entries the memo keeps between generations (params.memo_max, or its default). */
size_t evb_memo_max_(const evb_search *s);
/* Drops the least recently used entries beyond evb_memo_max_; the slots are renumbered oldest first. */
int  evb_memo_trim_(evb_search *s);
/* Loads a checkpoint from memory; name is what messages call it (evb_search_load reads the file). */
int  evb_search_load_mem_(evb_search *s, const char *name, const unsigned char *buf, size_t n);
/* Adds a scored candidate to the archive when its batch is of the highest fidelity seen. */
void evb_archive_add_(evb_search *s, const int16_t *lv, double cost, double fit, const evb_batch *b);

/* The surrogate (surrogate.c). */
int    evb_sur_alloc_(evb_search *s);
void   evb_sur_free_(evb_search *s);
/* Appends one batch's scored candidates to the log and its normal equations. */
int    evb_sur_record_(evb_search *s, const int16_t *levels, int n, const double *fit, size_t tokens);
/* The normal equations again from the log (after a checkpoint is loaded). */
int    evb_sur_rebuild_(evb_search *s);
/* Fits the weights (sur_ready 1 when there was data to fit). */
int    evb_sur_fit_(evb_search *s);
double evb_sur_predict_(const evb_search *s, const int16_t *lv);
/* The surrogate's random half: marks the earliest unmarked of keep[n] until want are marked (kept already are). */
void   evb_sur_keep_rest_(char *keep, int n, int kept, int want);
/* Spearman's rank correlation of a[n] and b[n] (ties averaged); NAN for n < 3 or a constant. */
double evb_spearman_(const double *a, const double *b, int n);

extern const struct evb_search_ops evb_evopress_ops_, evb_nsga2_ops_, evb_random_ops_, evb_uniform_ops_;
#endif
