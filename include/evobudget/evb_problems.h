/* evb_problems.h -- from a model, a level database and a target to a search problem; the allocation rules;
 * the configuration format (best.json).
 *
 * search/ knows units, levels and costs; this is where a model becomes those. A target is one of
 *   sparsity X  the linear layers, each with EvoPress's equal-step levels around X (the dense weight where the
 *               grid reaches it), cost = weights kept, budget = the uniform level's total, kept exactly;
 *   bits X      the linear layers at 2..6 bits (GPTQ by default), cost = weight bits, units of equal size in
 *               one group (switches keep the total exactly), budget X bits per weight;
 *   drop X      the attention and MLP sub-blocks, kept or dropped, round(X L) of each kind dropped;
 *   bytes X     every linear layer chooses among the zero matrix, SparseGPT at 50..90%, GPTQ at 2..6 bits and
 *               the dense weight, cost = storage bits, budget [0.995, 1] of X bytes;
 *   speedup X   the attention and MLP sub-blocks, each keeping 0..G key/value groups or k F / steps channels
 *               (structured levels: flap by default, or obs), cost = measured seconds (evb_timing.h), budget
 *               [0.98, 1] of the table's dense forward time over X; latency X: of X seconds.
 * Building a problem builds the levels the database lacks. The result carries everything a search and the
 * KL fitness need (evb_search.h, evb_fitness_kl.h) and writes the configuration of any candidate:
 *
 *     evb_mp_env env = {model, &windows, db, NULL, 8, NULL, NULL, NULL, NULL};
 *     evb_mp_params p = evb_mp_default_params(EVB_TARGET_SPARSITY, 0.5);
 *     evb_mp *mp;
 *     int status = evb_mp_build(&env, &p, &mp);
 *     ... evb_search_alloc(t, &params, &mp->problem, &s); kl params with mp->units ...
 *     evb_allocation *c; evb_mp_config(mp, levels, fitness, &c); evb_allocation_write(c, "best.json");
 *     evb_allocation_free(c); evb_mp_free(mp); evb_calib_free(env.calib);
 *
 * Every function returns an EVB_* status with the message in evb_last_error(); none prints or exits. */
#ifndef EVB_PROBLEMS_H
#define EVB_PROBLEMS_H
#include <stddef.h>
#include <stdint.h>
#include "evobudget/evb_calib.h"
#include "evobudget/evb_db.h"
#include "evobudget/evb_fitness_kl.h"
#include "evobudget/evb_model.h"
#include "evobudget/evb_search.h"
#include "evobudget/evb_text.h"
#ifdef __cplusplus
extern "C" {
#endif

/* ---- the configuration (best.json) ---- */

typedef struct evb_allocation_unit {
    int    unit;            /* the model's linear unit (l * 7 + kind), or the problem file's unit */
    char   name[96];        /* "layers.3.q_proj", or the problem file's name */
    int    level;           /* the search's level index; -1 when the configuration is not a search's */
    double cost;            /* the budgeted cost of that level; NAN when absent */
    int    dense, zero;     /* the dense weight; the zero matrix (the layer removed) */
    evb_db_entry key;       /* otherwise the level: method, kind, sparsity, n_removed, n_keep, m, bits,
                             * group_size, sym (what evb_db_find looks up) */
    double storage_bpw;     /* storage bits per weight (targets of bytes); NAN when absent */
    double fitness;         /* a problem file's per-level value; NAN when absent */
    char  *extra;           /* a problem file's other fields of the level, a JSON object's text, or NULL
                             * (written into the unit's object; freed by evb_allocation_free) */
} evb_allocation_unit;

typedef struct evb_allocation_drop { int block, mlp; } evb_allocation_drop;   /* mlp 0: the attention sub-block */

typedef struct evb_allocation {
    char   model[1200], db[1200];   /* the model and the level database it was found for ("" when none) */
    char   method[32], target_kind[16];
    double target, budget, cost, fitness;
    double fitness_all;             /* the fitness on every calibration token; NAN when absent */
    /* the size in the target's own measure and in storage; NAN when absent */
    double sparsity, bits_per_weight, dropped, storage_bytes, bytes, storage_bpw;
    /* speed targets: the predicted speedup over the dense forward, the predicted and the dense measured
     * seconds of a forward at the calibration shape (the cost table's); NAN when absent */
    double speedup, seconds, dense_seconds;
    int n_units;
    evb_allocation_unit *units;
    int n_drop;
    evb_allocation_drop *drop;
} evb_allocation;

/* An empty configuration with room for n_units units and n_drop dropped sub-blocks; the numbers NAN. */
int  evb_allocation_new(int n_units, int n_drop, evb_allocation **out);
void evb_allocation_free(evb_allocation *c);
/* Reads and validates a configuration: path is a best.json, or a run directory holding one. Malformed JSON,
 * a field of the wrong type, a unit twice, a negative unit or block, a level that names no kind: EVB_EFORMAT
 * naming the file and the field. A sweep's directory (sweep.json, one best.json per target) is EVB_EINVAL
 * listing them. */
int  evb_allocation_read(const char *path, evb_allocation **out);
/* Checks a configuration against a model: units and dropped blocks within its shape. EVB_EINVAL. */
int  evb_allocation_check(const evb_allocation *c, const struct evb_model *m, const char *path);
/* Writes c to path (a temporary file, fsync, rename). */
int  evb_allocation_write(const evb_allocation *c, const char *path);
/* Every linear unit of m at the level key (the unit field is set per unit). */
int  evb_allocation_uniform(const struct evb_model *m, const evb_db_entry *key, evb_allocation **out);
/* The dropped sub-blocks as flags [2 L] (attention, then MLP), or NULL when none; the caller frees it. */
int  evb_allocation_drop_mask(const evb_allocation *c, const struct evb_model *m, unsigned char **drop);
/* The weights of a configuration from the database db (db_dir names it in messages): weights[U] point into
 * *mem (both freed by the caller), NULL for a dense unit, zeros for "zero". A level the database lacks is
 * EVB_EINVAL naming the unit and the `db build` that adds it. */
int  evb_allocation_weights(const evb_allocation *c, const struct evb_model *m, const evb_db *db, const char *db_dir,
                            const float ***weights, float **mem);

/* The structured levels of a configuration (speed targets) made into block levels of m: out[2 L] (attention
 * of blocks 0..L-1, then their MLPs; NULL where the sub-block is dense), *n_struct how many are set; free
 * with evb_allocation_blocks_free(out, 2 L). Apply them with evb_block_level_apply. */
int  evb_allocation_blocks(const evb_allocation *c, const struct evb_model *m, const evb_db *db,
                           const char *db_dir,
                           evb_block_level ***out, int *n_struct);
void evb_allocation_blocks_free(evb_block_level **b, int n);

/* ---- building a problem from a model ---- */

typedef enum evb_target_kind {
    EVB_TARGET_SPARSITY = 0, EVB_TARGET_BITS = 1, EVB_TARGET_DROP = 2, EVB_TARGET_FILE = 3,
            EVB_TARGET_BYTES = 4,
    EVB_TARGET_SPEEDUP = 5, EVB_TARGET_LATENCY = 6
} evb_target_kind;
/* "sparsity", "bits", "drop", "problem", "bytes", "speedup", "latency" */
const char *evb_target_kind_name(int kind);

/* What building a problem reads and may extend. calib is collected on first need and kept for the next
 * problem (the caller frees it with evb_calib_free). message, when set, receives one line per step worth
 * telling ("building the sparsegpt levels around sparsity 0.5"); progress counts levels built (and ECoFLaP's
 * scoring steps). Callbacks may be NULL. */
typedef struct evb_mp_env {
    struct evb_model  *m;
    const evb_windows *w;        /* the calibration windows */
    evb_db            *db;       /* the level database; may be NULL for EVB_TARGET_DROP */
    evb_calib         *calib;
    int                batch;    /* windows per forward while calibrating and scoring */
    void (*message)(void *ctx, const char *line);
    void (*progress)(void *ctx, int done, int total);
    void (*record)(void *ctx, const char *json);   /* a rule's steps as JSON objects (log.jsonl lines) */
    void *ctx;
    size_t tokens;               /* evb_mp_rule adds the positions its forwards scored (a whole forward's
                                    positions each: scoring, perturbed forwards, the candidates it scores) */
} evb_mp_env;

typedef struct evb_mp_params {
    int    kind;                 /* evb_target_kind (not EVB_TARGET_FILE: see evb_mp_load_file) */
    double target;               /* the fraction, the bits per weight, or the bytes */
    const evb_method *compressor;/* sparsity: sparsegpt (default), wanda, magnitude; bits: gptq (default), rtn, or
                                    GGUF types: gguf (GPTQ into each type's grid), gguf-rtn (llama.cpp's rounding) */
    int    num_levels;           /* sparsity: equal-step levels each side of the target (default 8) */
    int    group_size, sym;      /* bits and bytes: quantization groups (default 64), symmetric */
    const int *gguf_types;       /* bits with a GGUF compressor (gguf, gguf-rtn): the GGUF types to choose from,
                                    NULL: every block type (evb_gguf.h); each unit is offered those its rows hold */
    int    n_gguf_types;
    int    struct_steps;         /* speedup, latency: MLP levels keep k F / steps channels,
            k = 0..steps (default 8) */
    const char *timings;         /* speedup,
            latency: the cost table's cache file (NULL: measured, not kept) */
    int    timing_repeats;       /* speedup, latency: timed runs per level, the median taken (default 5) */
} evb_mp_params;
evb_mp_params evb_mp_default_params(int kind, double target);

typedef struct evb_mp {
    int    kind;
    double target;
    evb_problem problem;         /* units, levels, costs, groups, budget, tolerance, the start (uniform) */
    const evb_fit_unit *units;   /* [U] for evb_kl_params: each level's database entry, or the sub-block */
    double total_size;           /* the dense cost: weights, 32-bit weight bits, sub-blocks or weights (bytes) */
    int    start_given;          /* a problem file gave the start */
    const double *level_fitness; /* a problem file's [U][max_levels] per-level values (NAN absent), or NULL */
    struct evb_mp_priv *priv;
} evb_mp;

int  evb_mp_build(evb_mp_env *env, const evb_mp_params *p, evb_mp **out);
void evb_mp_free(evb_mp *mp);
/* A speed problem's cost table (the measured times its costs are), NULL for other targets. */
const struct evb_cost_table *evb_mp_cost_table(const evb_mp *mp);
/* The storage of a candidate in bits (16-bit values; a sparse level adds a 1-bit mask per weight, a quantized
 * one 16-bit scales, and zero points unless symmetric, per group; dropped sub-blocks store nothing), so that
 * runs of every kind compare at the same bytes. 0 for a problem file. */
double evb_mp_storage_bits(const evb_mp *mp, const int16_t *level);
/* The configuration of a candidate of the problem (model, db and method are the caller's to fill). */
int  evb_mp_config(const evb_mp *mp, const int16_t *level, double fitness, evb_allocation **out);
/* The candidate a configuration of this problem holds (a best.json written by evb_mp_config). EVB_EINVAL
 * when it names units or levels the problem lacks. */
int  evb_mp_levels(const evb_mp *mp, const evb_allocation *c, int16_t *level);
/* Warm start of a sweep: per unit a value that carries across targets (weights removed, bits, dropped) of
 * a candidate, and the start made from such values (each unit at the nearest level, then levels moved until
 * every group holds what the uniform start holds). Returns 1 when the moved start is feasible and was taken,
 * 0 when the uniform start stays. */
int  evb_mp_unit_values(const evb_mp *mp, const int16_t *level, double *value);
int  evb_mp_warm_start(evb_mp *mp, const double *value);

/* EvoPress's per-mode defaults (evopress.md 2.7) for this problem and search type: generations, offspring,
 * stages with their token counts scaled to the calibration set's total_tokens, the initial population of
 * depth and fractional bits, NSGA-II's population. "paper" counts are these; the caller may lower them. */
evb_search_params evb_mp_search_params(const evb_mp *mp, const char *search_type, size_t total_tokens, uint64_t seed);
/* The search problem NSGA-II gets: the same with the tolerance widened to the front's span (+-10% of the
 * dense size for sparsity, half a bit for bits, one sub-block of each kind for depth, 10% for bytes). */
evb_problem evb_mp_front_problem(const evb_mp *mp);

/* ---- the allocation rules ---- */

/* Scores one candidate with kp on every calibration token, in this thread. */
int evb_mp_score(const evb_kl_params *kp, const int16_t *level, int n_units, double *fitness);
/* OWL (EvoPress's baseline: the lambda x M grid, the best by kp's fitness on every calibration token) and
 * ECoFLaP (zeroth-order block scores, the cap at target + 0.1) for a sparsity problem; ShortGPT (the k
 * attention and k MLP sub-blocks of least block influence) for a depth problem. The rules' choices are not in
 * the problem's level space: the result is a configuration, its "fitness" on every calibration token.
 * message receives a line per grid point (OWL) and per step (ECoFLaP's scoring, building the levels). */
int evb_mp_rule(evb_mp_env *env, evb_mp *mp, const evb_kl_params *kp, const char *rule, uint64_t seed,
                evb_allocation **out);
/* The sensitivity profile: kl[u * max_levels + l] (max_levels the most levels of a unit; NAN past a unit's
 * own) is kp's fitness on batch b of the model with unit u at level l and every other unit dense, each
 * forward started at the unit's block. n_threads 0: all. tokens (may be NULL) receives the positions scored
 * in all, counted as whole forwards; progress, when set, is called after each (unit, level). */
int evb_mp_sensitivity(const evb_kl_params *kp, const evb_batch *b, int n_threads, double *kl, size_t *tokens,
                       void (*progress)(void *ctx, int done, int total), void *ctx);
/* 1 when name is an allocation rule ("owl", "ecoflap", "shortgpt"), 0 otherwise. */
int evb_mp_is_rule(const char *name);

/* ---- the methods ---- */

typedef struct evb_mp_method {
    const char *name;            /* a search type of evb_search.h, or an allocation rule */
    int rule;                    /* 1: evb_mp_rule, 0: evb_search_type_find(name) */
    unsigned targets;            /* the target kinds it serves, 1 << evb_target_kind each */
    int front;                   /* searches the front: give it evb_mp_front_problem */
    int one_round;               /* scores once: no generations */
    const char *what;            /* one line for help texts */
    const char *instead;         /* what to do for a target it does not serve */
} evb_mp_method;
const evb_mp_method *evb_mp_method_find(const char *name);
const char *evb_mp_method_names(void);
/* EVB_EINVAL, naming what to use instead, when the method is unknown or does not serve the target. */
int evb_mp_method_check(const char *name, int kind, double target);

/* ---- problem files (docs/problem-files.md, docs/problem.schema.json) ---- */

/* Reads a problem file: units with names, levels with costs and optional per-level "fitness" values, the
 * budget, tolerance, groups and start. Errors name the file and the field (EVB_EFORMAT, EVB_EINVAL). */
int evb_mp_load_file(const char *path, evb_mp **out);
/* 1 when every level of a problem file has a "fitness" value (what the additive fitness needs). */
int evb_mp_file_has_values(const evb_mp *mp);
/* The built-in fitness of a problem file: the sum over units of their level's "fitness" value; params is the
 * evb_mp. A level without a value is EVB_EINVAL. */
extern const evb_fitness_type evb_fitness_additive;

#ifdef __cplusplus
}
#endif
#endif
