/* search.h -- what the files of `evobudget search` share (cli/search.c, cli/search_run.c,
 * cli/search_file.c). */
#ifndef EVB_CLI_SEARCH_H
#define EVB_CLI_SEARCH_H
#include "cli/cli.h"
#include "cli/rundir.h"
#include "evobudget/evb_plugin.h"
#include "evobudget/evb_task.h"
#include "evobudget/evb_problems.h"
#include "evobudget/evb_worker.h"

typedef struct run {
    opts *o;
    loaded l;
    int kind;                         /* evb_target_kind */
    int types[16], n_types;           /* --types: GGUF types offered */
    const char *method;               /* a search type, or an allocation rule */
    double targets[16];
    int n_targets;
    double bpw;                       /* --target-bytes Xbpw: bits per linear weight */
    const evb_method *comp;           /* --compressor */
    evb_windows w, hw;                /* calibration windows; held-out windows (hw.n 0: none) */
    size_t calib_tokens;
    size_t fit_tokens;                /* the tokens one candidate's fitness on all of its data scores */
    char mfp[17], cfp[17], dbdir[1200], out[1200], base[1000];
    evb_mp_env env;
    evb_db *db;
    evb_mp *mp;
    int16_t *uniform;                 /* the problem's own start, before a warm start moves it */
    /* --prior: the profile's KL per unit and level (prior[u * prior_maxl + l]), the tokens it scored, and
     * EvoPress's start, its additive optimum (NULL for other methods), reached in prior_moves exchanges */
    double *prior;
    int prior_maxl, prior_moves;
    size_t prior_tokens;
    int16_t *prior_start;
    evb_teacher *teacher, *hteacher;  /* on the calibration and the held-out windows */
    evb_level_cache *cache;
    evb_kl_params kp;
    int metric, tkind, topk;
    FILE *log;
    /* a problem file's fitness: additive, a plug-in or workers */
    const evb_fitness_type *ft;
    const void *fparams;
    void *plugin_handle, *plugin_params;
    const evb_plugin *plugin;
    evb_worker_params wp;
    int n_threads;
    /* a model's fitness beyond KL (cli/search_fitness.c): a task, a plug-in's or workers' sequences */
    double w_model, w_seq;            /* weights of KL (or perplexity) and of the sequence fitness; 0: unused */
    char task_path[1100];
    evb_task task;
    evb_plugin_model *pm;
    evb_seqs seqs;                    /* what the workers registered */
    evb_worker_model wm;
    evb_seq_params sq;
    int sq_ready;
    evb_sum_params sum;
    evb_search_params stages;         /* --stages, when given (n_stages > 0) */
    int profile;                      /* `evobudget sensitivity`: the profile instead of a search */
    int demo;                         /* the main job: the demo model's front, with no model and no target */
    char cache_base[1000];            /* the cache directory holding the database, "" with --db */
    int db_entries0;                  /* levels the database held before this run */
} run;

/* The outcome of one target: the configuration, the front, and the search's counters. */
typedef struct outcome {
    evb_allocation *best;
    evb_front_point *front;
    int16_t *front_levels;
    int n_front;
    evb_search_info info;
    int searched;
    int front_rescored;               /* front.csv's fitness is on every calibration token (finish_search) */
    size_t final_tokens;              /* tokens scored after the search: its front and best on every token */
    double search_s;
    double held[4];                   /* held-out KL and perplexity of the best, then of uniform; NAN none */
} outcome;

extern int g_mpi_rank, g_mpi_size;

void run_free(run *r);
void outcome_free(outcome *x);
/* A message line of the library, on stderr. */
void say(void *ctx, const char *line);
/* The search parameters of the run's problem: the per-mode defaults (fewer generations than the paper's
 * unless --generations paper) with the flags' overrides. */
int search_params(run *r, evb_search_params *sp);
/* Runs the search (or rule) of the run's problem into r->out; fills x. */
int run_method(run *r, const evb_search_params *sp, outcome *x);
int write_front(const run *r, const outcome *x);
json_t *manifest(const run *r, const evb_search_params *sp);
int print_summary(const run *r, const outcome *x, double t0);
/* `evobudget sensitivity`'s profile of the built problem into r->out (cli/sensitivity.c); an exit code. */
int run_profile(run *r, double t0);
/* search --prior: the profile's KL per unit and level, prior[U * *max_levels] (the caller frees), and the
 * tokens the profile scored; a library status. */
int read_prior(const run *r, double **prior, int *max_levels, size_t *tokens);
/* search --prior: r->prior and, for EvoPress, r->prior_start from the built problem's start; an exit code. */
int prior_start(run *r);
/* `search --problem FILE` (cli/search_file.c). */
int search_problem(run *r);
/* The plug-in of --fitness-plugin, opened and its ABI checked (r->plugin, r->plugin_handle). */
int open_plugin(run *r, const char *path);
/* r->wp from --fitness-cmd, --worker-timeout and --worker-retries. */
int worker_params(run *r);
/* cli/search_fitness.c */
int parse_fitness_spec(run *r);
int setup_model_fitness(run *r);
int attach_model_fitness(run *r);
void model_fitness_free(run *r);
const char *fitness_name(const run *r);
#ifdef EVB_MPI
int mpi_worker(run *r, const evb_search_params *sp);
#endif
#endif
