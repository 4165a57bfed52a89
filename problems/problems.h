/* problems.h -- what the files of problems/ share: the private part of evb_mp. */
#ifndef EVB_PROBLEMS_PRIV_H
#define EVB_PROBLEMS_PRIV_H
#include "evobudget/evb_problems.h"
#include "evobudget/evb_gguf.h"

/* Levels of a unit in a GGUF problem: at most one per GGUF block type. */
enum { EVB_GGUF_MAX_LEVELS = 10 };

struct evb_mp_priv {
    int U, max_levels;
    int *n_levels, *group, *entry;     /* entry: [U][max_levels] database entry, EVB_ENTRY_DENSE or _ZERO */
    double *cost_mem, **cost;
    int16_t *start;
    evb_fit_unit *fu;
    evb_allocation_unit *desc;             /* [U][max_levels] what each level is, for the configuration */
    double *level_fit;                 /* a problem file's [U][max_levels] values, NAN absent */
    int bits[8], n_bits;               /* bits: the widths of levels 0.. */
    const struct evb_model *m;
    const evb_db *db;
    const evb_method *comp;            /* sparsity, bits, speed: the compressor of the levels */
    struct evb_cost_table *costs;      /* speed: the measured times */
    evb_struct_level **recipes;        /* speed: [U][max_levels] the structured levels (NULL: dense) */
};

/* The arrays of a problem of U units with at most max_levels levels, every entry dense. */
int  evb_mp_alloc(int kind, double target, int U, int max_levels, evb_mp **out);
/* Points the public evb_problem at the private arrays once they are filled. */
void evb_mp_publish(evb_mp *mp);
/* "layers.L.q_proj" */
const char *evb_mp_unit_name(int u, char *buf, size_t n);
/* Storage bits of a database level (16-bit values + 1-bit mask, or codes + 16-bit scales and zero points). */
double evb_mp_level_storage(int rows, int cols, const evb_db_entry *e);
/* Problem builders (problems/targets.c). */
int evb_mp_build_sparsity(evb_mp_env *env, const evb_mp_params *p, evb_mp *mp);
int evb_mp_build_bits(evb_mp_env *env, const evb_mp_params *p, evb_mp *mp);
int evb_mp_build_gguf(evb_mp_env *env, const evb_mp_params *p, evb_mp *mp);
int evb_mp_build_bytes(evb_mp_env *env, const evb_mp_params *p, evb_mp *mp);
int evb_mp_build_drop(evb_mp_env *env, const evb_mp_params *p, evb_mp *mp);
/* (problems/speed.c) */
int evb_mp_build_speed(evb_mp_env *env, const evb_mp_params *p, evb_mp *mp);
/* A speed problem's seconds a forward by its cost table: the dense model's (the fixed costs and every sub-block
 * dense), and the target's (the dense time over the speedup, or the latency). */
double evb_mp_dense_seconds(const evb_mp *mp);
double evb_mp_target_seconds(const evb_mp *mp);
/* FLAP's global allocation on a speed problem's levels: level[U]. */
int evb_mp_flap_levels(evb_mp_env *env, const evb_mp *mp, int16_t *level);
/* The message callback with printf formatting. */
void evb_mp_say(const evb_mp_env *env, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The calibration statistics, collected on first need. */
int evb_mp_need_calib(evb_mp_env *env);
#endif
