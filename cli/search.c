/* search.c -- `evobudget search`: from a model, a target and calibration text to per-unit levels.
 *
 * The subcommand turns the target into a search problem (search/ knows nothing of models):
 *   sparsity X  the linear layers, each with EvoPress's equal-step levels around X (the dense weight where
 *               the grid reaches it), cost = weights kept, budget = the uniform level's total, kept exactly;
 *   bits X      the linear layers at 2..6 bits (GPTQ by default), cost = weight bits, units of equal size in
 *               one group (switches keep the total exactly), budget X bits per weight;
 *   drop X      the attention and MLP sub-blocks, kept or dropped, round(X L) of each kind dropped.
 * It builds the levels the level database lacks (the database is a cache: --db DIR, or one directory per
 * model and calibration set under --cache), computes the dense model's outputs once, and runs the method:
 * a search type of search/ (evopress, nsga2, uniform, random) with the KL fitness, or an allocation rule
 * (owl, ecoflap, shortgpt) scored by the same fitness. Everything goes to the run directory: manifest.json,
 * log.jsonl, checkpoint.msgpack (--resume continues from it), front.csv and best.json. */
#define _POSIX_C_SOURCE 200809L
#include "cli/cli.h"
#include "core/fileio.h"
#include "evobudget/evb_calib.h"
#include "evobudget/evb_db.h"
#include "evobudget/evb_fitness_kl.h"
#include "evobudget/evb_plugin.h"
#include "evobudget/evb_worker.h"
#include "evobudget/evb_scores.h"
#include "evobudget/evb_search.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef EVB_MPI
#include "evaluators/mpi.h"
#include <mpi.h>
#include <fcntl.h>
#endif
/* MPI: this process's rank and the number of ranks (1 and 0 without MPI) */
static int g_mpi_rank = 0, g_mpi_size = 1;
static int g_out_lock = -1;   /* the run directory's exclusive lock, held until cmd_search returns */

enum { MODE_SPARSITY, MODE_BITS, MODE_DROP, MODE_PROBLEM, MODE_JOINT };
static const char *mode_name[] = {"sparsity", "bits", "drop", "problem", "bytes"};

/* The joint search's levels of every linear layer, besides the zero matrix and the dense weight. */
static const double joint_sparsities[] = {0.5, 0.6, 0.7, 0.8, 0.9};
static const int joint_bits[] = {2, 3, 4, 5, 6};
#define N_JOINT_SPARSE 5
#define N_JOINT_BITS 5

typedef struct run {
    opts *o;
    loaded l;
    int mode;
    double target;
    const char *method;           /* the search method */
    const evb_method *comp;       /* the compressor (sparsity, bits) */
    evb_windows w;
    int seq_len;
    size_t calib_tokens;          /* scored positions of the calibration windows */
    char mfp[17], cfp[17], dbdir[1200], out[1200];
    evb_db *db;
    evb_calib *calib;
    evb_level_grid grid;
    int bits[8];
    /* the problem */
    int U;
    int *n_levels, *group, *entry;   /* entry: [U][max_levels] database entry, -1 dense */
    int max_levels;
    double *cost_mem, **cost;
    int16_t *start;
    int start_given;                 /* a problem file gave the start */
    double budget, tol, total_size;  /* total_size: the dense cost (weights or bits or sub-blocks) */
    evb_fit_unit *fu;
    json_t *level_desc;              /* [U] arrays of level descriptions for best.json */
    /* the fitness */
    evb_teacher *teacher;
    evb_level_cache *cache;
    evb_kl_params kp;
    /* a problem file (--problem): its unit names, per-level fitness values, and the fitness in use */
    json_t *names;
    double *level_fit;           /* [U][max_levels] the built-in additive fitness, NAN where absent */
    const evb_fitness_type *ft;
    const void *fparams;
    void *plugin_handle, *plugin_params;
    const evb_plugin *plugin;
    evb_worker_params wp;
    int n_threads;               /* fitness threads (workers); 0: the OpenMP default */
} run;

static void problem_free(run *r) {
    free(r->n_levels); free(r->group); free(r->entry); free(r->cost_mem); free(r->cost); free(r->start); free(r->fu);
    json_decref(r->level_desc);
    r->n_levels = r->group = r->entry = NULL; r->cost_mem = NULL; r->cost = NULL; r->start = NULL; r->fu = NULL;
    r->level_desc = NULL;
    r->U = r->max_levels = 0;
    r->budget = r->tol = r->total_size = 0;
}

static void run_free(run *r) {
    problem_free(r);
    json_decref(r->names);
    free(r->level_fit);
    if (r->plugin && r->plugin_params) r->plugin->destroy(r->plugin_params);
    if (r->plugin_handle) dlclose(r->plugin_handle);
    evb_level_cache_free(r->cache);
    evb_teacher_free(r->teacher);
    evb_calib_free(r->calib);
    evb_db_close(r->db);
    evb_windows_free(&r->w);
    loaded_free(&r->l);
}

static int mkdirs(const char *path) {
    char buf[1200];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') { *p = 0; if (mkdir(buf, 0755) && errno != EEXIST) return -1; *p = '/'; }
    return mkdir(buf, 0755) && errno != EEXIST ? -1 : 0;
}

/* Writes text to dir/name atomically (core/fileio.h). */
static int write_file(const char *dir, const char *name, const char *text) {
    char path[1400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int st = evb_write_atomic(path, text, strlen(text));
    return st ? fail(st) : 0;
}

/* Takes the run directory's lock for the rest of the run (one writer per run directory), then checks again,
 * under the lock, that a new run does not overwrite a finished one. */
static int lock_out(const char *dir, int resume, const char *done_name) {
    int st = evb_lock_dir(dir, EVB_LOCK_EXCLUSIVE, 0, &g_out_lock);
    if (st) return fail(st);
    /* the temporary siblings a killed run left behind (evb_write_atomic's NAME.tmp.PID.N): no writer is left */
    DIR *d = opendir(dir);
    static const char *const ours[] = {"checkpoint.msgpack.tmp.", "best.json.tmp.", "front.csv.tmp.", "manifest.json.tmp.", "sweep.json.tmp."};
    for (struct dirent *e; d && (e = readdir(d));)
        for (size_t i = 0; i < sizeof ours / sizeof *ours; i++)
            if (!strncmp(e->d_name, ours[i], strlen(ours[i]))) {
                char t[1400];
                snprintf(t, sizeof t, "%s/%s", dir, e->d_name);
                unlink(t);
            }
    if (d) closedir(d);
    char p[1400];
    snprintf(p, sizeof p, "%s/%s", dir, done_name);
    if (!resume && access(p, F_OK) == 0) return usage_error("--out %s already holds a finished run; choose another directory or remove it", dir);
    return 0;
}

/* On resume: cuts log.jsonl after the last line of a generation the checkpoint holds (a run killed between
 * its log line and its checkpoint logged one generation more), and any unfinished last line. */
static int log_truncate(FILE *log, const char *path, int generation) {
    FILE *f = fopen(path, "rb");
    if (!f) return evb_errorf(__FILE__, __LINE__, EVB_EIO, "%s: %s", path, strerror(errno));
    char line[4096];
    long keep = 0;
    int g;
    while (fgets(line, sizeof line, f)) {
        size_t n = strlen(line);
        if (n == 0 || line[n - 1] != '\n') break; /* unfinished (or longer than any line the search writes) */
        if (sscanf(line, "{\"generation\": %d,", &g) == 1 && g > generation) break;
        keep = ftell(f);
    }
    fclose(f);
    fflush(log);
    if (ftruncate(fileno(log), keep)) return evb_errorf(__FILE__, __LINE__, EVB_EIO, "%s: cannot cut it to the checkpoint's generation: %s", path, strerror(errno));
    return EVB_SUCCESS;
}

static int write_json(const char *dir, const char *name, json_t *j) {
    char *s = json_dumps(j, JSON_INDENT(1) | JSON_REAL_PRECISION(12));
    if (!s) return fail(EVB_RAISEF(EVB_ENOMEM, "out of memory"));
    size_t n = strlen(s);
    char *t = realloc(s, n + 2);
    if (!t) { free(s); return fail(EVB_RAISEF(EVB_ENOMEM, "out of memory")); }
    t[n] = '\n'; t[n + 1] = 0;
    int rc = write_file(dir, name, t);
    free(t);
    return rc;
}

/* ---- levels ---- */

/* The calibration statistics, collected on first need; a library status. */
static int need_calib(run *r) {
    return r->calib ? EVB_SUCCESS : evb_calib_collect(r->l.m, &r->w, (int)r->o->batch, &r->calib);
}

static int alloc_problem(run *r, int U, int max_levels) {
    r->U = U; r->max_levels = max_levels;
    r->n_levels = calloc(U, sizeof(int));
    r->group = calloc(U, sizeof(int));
    r->entry = malloc(sizeof(int) * U * max_levels);
    r->cost_mem = calloc((size_t)U * max_levels, sizeof(double));
    r->cost = malloc(sizeof(double *) * U);
    r->start = calloc(U, sizeof(int16_t));
    r->fu = calloc(U, sizeof(evb_fit_unit));
    r->level_desc = json_array();
    if (!r->n_levels || !r->group || !r->entry || !r->cost_mem || !r->cost || !r->start || !r->fu || !r->level_desc)
        return fail(EVB_RAISEF(EVB_ENOMEM, "out of memory for the problem"));
    for (int u = 0; u < U; u++) {
        r->cost[u] = r->cost_mem + (size_t)u * max_levels;
        for (int k = 0; k < max_levels; k++) r->entry[u * max_levels + k] = -1;
    }
    return 0;
}

static const char *unit_name(int u, char *buf, size_t n) {
    snprintf(buf, n, "layers.%d.%s", u / EVB_LINEAR_COUNT, evb_linear_name((evb_linear_kind)(u % EVB_LINEAR_COUNT)));
    return buf;
}

static int problem_sparsity(run *r) {
    evb_model *m = r->l.m;
    int U = evb_model_n_units(m), K = (int)r->o->num_levels;
    r->grid.step_target = r->target;
    r->grid.step_levels = K;
    r->grid.step_weights = evb_step_weights_default(m, r->target, K);
    int rc = alloc_problem(r, U, 2 * K + 1);
    if (rc) return rc;
    int built = 0, present = 0, s;
    /* Build what is missing (the statistics only when something is). */
    evb_db_entry probe = {0};
    int missing = 0;
    for (int u = 0; u < U && !missing; u++) {
        int rows, cols, lo, hi;
        evb_model_unit_shape(m, u, &rows, &cols);
        int64_t N = (int64_t)rows * cols, base = evb_step_range(N, r->target, r->grid.step_weights, K, &lo, &hi);
        for (int l = -lo; l <= hi && !missing; l++) {
            probe.unit = u; probe.kind = EVB_LEVEL_SPARSE; snprintf(probe.method, sizeof probe.method, "%s", r->comp->name);
            probe.n_removed = base + (int64_t)l * r->grid.step_weights;
            missing = probe.n_removed > 0 && evb_db_find(r->db, &probe) < 0;
        }
    }
    if (missing) {
        if ((s = need_calib(r))) return fail(s);
        fprintf(stderr, "%s: building the %s levels around sparsity %g in %s\n", cmd_name, r->comp->name, r->target, r->dbdir);
        progress p = {now_s(), "db build", isatty(2), 0, "levels"};
        if ((s = evb_db_build(r->db, m, r->calib, r->comp, &r->grid, &built, &present, progress_cb, &p))) return fail(s);
    }
    r->budget = 0;
    for (int u = 0; u < U; u++) {
        int rows, cols, lo, hi;
        evb_model_unit_shape(m, u, &rows, &cols);
        int64_t N = (int64_t)rows * cols, base = evb_step_range(N, r->target, r->grid.step_weights, K, &lo, &hi);
        json_t *levels = json_array();
        int n = 0;
        for (int l = -lo; l <= hi; l++, n++) {
            evb_db_entry key = {0};
            key.unit = u; key.kind = EVB_LEVEL_SPARSE; snprintf(key.method, sizeof key.method, "%s", r->comp->name);
            key.n_removed = base + (int64_t)l * r->grid.step_weights;
            int e = key.n_removed > 0 ? evb_db_find(r->db, &key) : -1;
            if (key.n_removed > 0 && e < 0) { json_decref(levels); return fail(EVB_RAISEF(EVB_EFORMAT, "%s: unit %d lacks a level it was just given", r->dbdir, u)); }
            r->entry[u * r->max_levels + n] = e;
            r->cost[u][n] = (double)(N - key.n_removed);
            if (l == 0) r->start[u] = (int16_t)n;
            json_array_append_new(levels, e < 0 ? json_pack("{s:b}", "dense", 1)
                                               : json_pack("{s:s, s:f, s:I}", "method", r->comp->name, "sparsity",
                                                           (double)key.n_removed / (double)N, "n_removed", (json_int_t)key.n_removed));
        }
        json_array_append_new(r->level_desc, levels);
        r->n_levels[u] = n;
        r->budget += (double)(N - base);
        r->total_size += (double)N;
        r->fu[u] = (evb_fit_unit){EVB_UNIT_LINEAR, u, n, r->entry + u * r->max_levels};
    }
    r->tol = 0.5; /* the step is the same number of weights in every unit: trades keep the total exactly */
    return 0;
}

static int problem_bits(run *r) {
    evb_model *m = r->l.m;
    int U = evb_model_n_units(m), nb = 0;
    for (int b = 2; b <= 6; b++) r->bits[nb++] = b;
    r->grid.bits = r->bits; r->grid.n_bits = nb;
    r->grid.group_size = r->o->group_size ? (int)r->o->group_size : 64;
    r->grid.sym = r->o->sym;
    int rc = alloc_problem(r, U, nb), built, present, s;
    if (rc) return rc;
    int missing = 0;
    for (int u = 0; u < U && !missing; u++)
        for (int k = 0; k < nb && !missing; k++) {
            evb_db_entry key = {0};
            key.unit = u; key.kind = EVB_LEVEL_QUANT; key.bits = r->bits[k]; key.group_size = r->grid.group_size; key.sym = r->grid.sym;
            snprintf(key.method, sizeof key.method, "%s", r->comp->name);
            missing = evb_db_find(r->db, &key) < 0;
        }
    if (missing) {
        if ((s = need_calib(r))) return fail(s);
        fprintf(stderr, "%s: building the %s levels of 2..6 bits in %s\n", cmd_name, r->comp->name, r->dbdir);
        progress p = {now_s(), "db build", isatty(2), 0, "levels"};
        if ((s = evb_db_build(r->db, m, r->calib, r->comp, &r->grid, &built, &present, progress_cb, &p))) return fail(s);
    }
    /* Groups: units of equal size (EvoPress's group_rule "size"). */
    size_t sizes[64];
    int n_sizes = 0;
    r->budget = r->total_size = 0;
    for (int u = 0; u < U; u++) {
        int rows, cols;
        evb_model_unit_shape(m, u, &rows, &cols);
        size_t N = (size_t)rows * cols;
        int g = 0;
        while (g < n_sizes && sizes[g] != N) g++;
        if (g == n_sizes) { if (n_sizes == 64) return usage_error("more than 64 distinct layer sizes"); sizes[n_sizes++] = N; }
        r->group[u] = g;
        json_t *levels = json_array();
        for (int k = 0; k < nb; k++) {
            evb_db_entry key = {0};
            key.unit = u; key.kind = EVB_LEVEL_QUANT; key.bits = r->bits[k]; key.group_size = r->grid.group_size; key.sym = r->grid.sym;
            snprintf(key.method, sizeof key.method, "%s", r->comp->name);
            r->entry[u * r->max_levels + k] = evb_db_find(r->db, &key);
            r->cost[u][k] = (double)r->bits[k] * (double)N;
            json_array_append_new(levels, json_pack("{s:s, s:i, s:i, s:b}", "method", r->comp->name, "bits", r->bits[k],
                                                    "group_size", r->grid.group_size, "sym", r->grid.sym));
        }
        json_array_append_new(r->level_desc, levels);
        r->n_levels[u] = nb;
        r->budget += r->target * (double)N;
        r->total_size += 32.0 * (double)N;
        r->fu[u] = (evb_fit_unit){EVB_UNIT_LINEAR, u, nb, r->entry + u * r->max_levels};
    }
    /* The start: floor(X) bits everywhere, then, group by group, floor(frac(X) n_g) of its units one bit
     * more, then single units one bit more wherever that stays within the budget (EvoPress's "at most the
     * target"). Its distance to the budget (fractions no group can hold exactly) becomes the tolerance;
     * switches inside a group keep the total exactly. */
    double total = 0, fl = floor(r->target);
    for (int u = 0; u < U; u++) { r->start[u] = (int16_t)(fl - 2); total += fl * r->cost[u][0] / 2.0; }
    for (int g = 0; g < n_sizes; g++) {
        int n_g = 0;
        for (int u = 0; u < U; u++) n_g += r->group[u] == g;
        int up = (int)floor((r->target - fl) * n_g + 1e-9), done = 0;
        for (int u = 0; u < U && done < up; u++)
            if (r->group[u] == g && r->start[u] + 1 < nb) { r->start[u]++; total += (double)sizes[g]; done++; }
    }
    for (int u = 0; u < U; u++) {
        double step = (double)sizes[r->group[u]];
        if (r->start[u] + 1 < nb && total + step <= r->budget + 1e-9 * r->budget) { r->start[u]++; total += step; }
    }
    r->tol = fabs(total - r->budget) + 1e-9 * r->budget;
    return 0;
}

/* Storage bits of a level (the joint search's cost): 16-bit values; a sparse level adds a one-bit mask per
 * weight, a quantized one a 16-bit scale (and a 16-bit zero point unless symmetric) per group. */
static double storage_bits(int rows, int cols, const evb_db_entry *e) {
    double N = (double)rows * cols;
    if (e->kind == EVB_LEVEL_SPARSE) return N + 16.0 * e->params_kept;
    int g = e->group_size > 0 ? e->group_size : cols;
    return e->bits * N + (e->sym ? 16.0 : 32.0) * rows * ((cols + g - 1) / g);
}

typedef struct joint_level { double cost, err; int entry; } joint_level;
static int cmp_joint_level(const void *a, const void *b) {
    const joint_level *x = a, *y = b;
    return x->cost < y->cost ? -1 : x->cost > y->cost ? 1 : x->entry - y->entry;
}

/* Sparsity, bits and depth in one candidate, under a budget of bytes: every linear layer chooses among the
 * zero matrix (a sub-block whose output projection is zero is dropped), SparseGPT at 50..90% sparsity,
 * GPTQ at 2..6 bits and the dense weight, ordered by storage. */
static int problem_joint(run *r) {
    evb_model *m = r->l.m;
    int U = evb_model_n_units(m), max_levels = 2 + N_JOINT_SPARSE + N_JOINT_BITS, built, present, s;
    int rc = alloc_problem(r, U, max_levels);
    if (rc) return rc;
    const evb_method *sg = evb_method_find("sparsegpt"), *gq = evb_method_find("gptq");
    evb_level_grid gs = {0}, gb = {0};
    gs.sparsities = joint_sparsities; gs.n_sparsities = N_JOINT_SPARSE;
    gb.bits = joint_bits; gb.n_bits = N_JOINT_BITS;
    gb.group_size = r->o->group_size ? (int)r->o->group_size : 64; gb.sym = r->o->sym;
    int missing = 0;
    for (int u = 0; u < U && !missing; u++)
        for (int k = 0; k < N_JOINT_SPARSE + N_JOINT_BITS && !missing; k++) {
            evb_db_entry key = {0};
            key.unit = u;
            if (k < N_JOINT_SPARSE) { key.kind = EVB_LEVEL_SPARSE; key.sparsity = joint_sparsities[k]; snprintf(key.method, sizeof key.method, "sparsegpt"); }
            else { key.kind = EVB_LEVEL_QUANT; key.bits = joint_bits[k - N_JOINT_SPARSE]; key.group_size = gb.group_size; key.sym = gb.sym; snprintf(key.method, sizeof key.method, "gptq"); }
            missing = evb_db_find(r->db, &key) < 0;
        }
    if (missing) {
        if ((s = need_calib(r))) return fail(s);
        fprintf(stderr, "%s: building the sparsegpt levels of 50..90%% and the gptq levels of 2..6 bits in %s\n", cmd_name, r->dbdir);
        progress p = {now_s(), "db build", isatty(2), 0, "levels"};
        if ((s = evb_db_build(r->db, m, r->calib, sg, &gs, &built, &present, progress_cb, &p))) return fail(s);
        if ((s = evb_db_build(r->db, m, r->calib, gq, &gb, &built, &present, progress_cb, &p))) return fail(s);
    }
    r->total_size = 0;
    double bits_per_weight = 0;
    for (int u = 0; u < U; u++) {
        int rows, cols;
        evb_model_unit_shape(m, u, &rows, &cols);
        r->total_size += (double)rows * cols;
    }
    bits_per_weight = r->target * 8.0 / r->total_size;
    double dense_bytes = r->total_size * 2;
    if (!(r->target < dense_bytes)) return usage_error("--target-bytes %.0f is not below the 16-bit dense size of the linear layers, %.0f bytes", r->target, dense_bytes);
    double start_total = 0, *err = malloc(sizeof(double) * U * max_levels);
    if (!err) return fail(EVB_RAISEF(EVB_ENOMEM, "out of memory"));
    for (int u = 0; u < U; u++) {
        int rows, cols;
        evb_model_unit_shape(m, u, &rows, &cols);
        double N = (double)rows * cols;
        joint_level lv[2 + N_JOINT_SPARSE + N_JOINT_BITS];
        int n = 0;
        lv[n++] = (joint_level){0.0, 1.0, EVB_ENTRY_ZERO};
        for (int k = 0; k < N_JOINT_SPARSE + N_JOINT_BITS; k++) {
            evb_db_entry key = {0};
            key.unit = u;
            if (k < N_JOINT_SPARSE) { key.kind = EVB_LEVEL_SPARSE; key.sparsity = joint_sparsities[k]; snprintf(key.method, sizeof key.method, "sparsegpt"); }
            else { key.kind = EVB_LEVEL_QUANT; key.bits = joint_bits[k - N_JOINT_SPARSE]; key.group_size = gb.group_size; key.sym = gb.sym; snprintf(key.method, sizeof key.method, "gptq"); }
            int e = evb_db_find(r->db, &key);
            if (e < 0) { free(err); return fail(EVB_RAISEF(EVB_EFORMAT, "%s: unit %d lacks a level it was just given", r->dbdir, u)); }
            evb_db_entry got = evb_db_get(r->db, e);
            lv[n++] = (joint_level){storage_bits(rows, cols, &got), got.recon_error, e};
        }
        lv[n++] = (joint_level){16.0 * N, 0.0, EVB_ENTRY_DENSE};
        qsort(lv, n, sizeof *lv, cmp_joint_level);
        /* a level that stores more than a cheaper one and reconstructs the layer's output worse is left out */
        int kept = 0;
        for (int k = 0; k < n; k++)
            if (kept == 0 || lv[k].err < lv[kept - 1].err) lv[kept++] = lv[k];
        n = kept;
        json_t *levels = json_array();
        for (int k = 0; k < n; k++) {
            r->entry[u * max_levels + k] = lv[k].entry;
            r->cost[u][k] = lv[k].cost;
            err[u * max_levels + k] = lv[k].err;
            if (lv[k].cost < bits_per_weight * N) r->start[u] = (int16_t)(k + 1 < n ? k + 1 : k);
            if (lv[k].entry == EVB_ENTRY_ZERO) json_array_append_new(levels, json_pack("{s:s}", "method", "zero"));
            else if (lv[k].entry == EVB_ENTRY_DENSE) json_array_append_new(levels, json_pack("{s:b}", "dense", 1));
            else {
                evb_db_entry e = evb_db_get(r->db, lv[k].entry);
                json_array_append_new(levels, e.kind == EVB_LEVEL_SPARSE
                    ? json_pack("{s:s, s:f}", "method", e.method, "sparsity", e.sparsity)
                    : json_pack("{s:s, s:i, s:i, s:b}", "method", e.method, "bits", e.bits, "group_size", e.group_size, "sym", e.sym));
            }
        }
        json_array_append_new(r->level_desc, levels);
        r->n_levels[u] = n;
        r->group[u] = 0;
        start_total += r->cost[u][r->start[u]];
        r->fu[u] = (evb_fit_unit){EVB_UNIT_LINEAR, u, n, r->entry + u * max_levels};
    }
    /* The budget: [0.995, 1] of the target's bits. The start, a greedy knapsack on the reconstruction errors:
     * per unit the cheapest level at or above the target's bits per weight; then, while over the target, the
     * step down that adds the least error per bit saved; then, while room is left, the step up that removes
     * the most error per bit among those that fit. */
    double hi = r->target * 8.0;
    r->tol = 0.0025 * hi;
    r->budget = hi - r->tol;
    r->tol += 0.5; /* costs are whole bits: this admits the target itself, not a bit more */
    while (start_total > hi) {
        int bu = -1;
        double best = INFINITY;
        for (int u = 0; u < U; u++) {
            int k = r->start[u];
            if (k == 0) continue;
            double rate = (err[u * max_levels + k - 1] - err[u * max_levels + k]) / (r->cost[u][k] - r->cost[u][k - 1]);
            if (rate < best) { best = rate; bu = u; }
        }
        if (bu < 0) break;
        start_total -= r->cost[bu][r->start[bu]] - r->cost[bu][r->start[bu] - 1];
        r->start[bu]--;
    }
    for (;;) {
        int bu = -1;
        double best = -1;
        for (int u = 0; u < U; u++) {
            int k = r->start[u];
            if (k + 1 >= r->n_levels[u] || start_total + r->cost[u][k + 1] - r->cost[u][k] > hi) continue;
            double rate = (err[u * max_levels + k] - err[u * max_levels + k + 1]) / (r->cost[u][k + 1] - r->cost[u][k]);
            if (rate > best) { best = rate; bu = u; }
        }
        if (bu < 0) break;
        start_total += r->cost[bu][r->start[bu] + 1] - r->cost[bu][r->start[bu]];
        r->start[bu]++;
    }
    free(err);
    if (start_total < r->budget - r->tol)
        return usage_error("--target-bytes %.0f: the levels cannot fill it to within 0.5%% (best start %.0f bytes; hint: a larger target, or a model with more layers)", r->target, start_total / 8);
    return 0;
}

static int problem_drop(run *r) {
    evb_model *m = r->l.m;
    int L = m->config.n_layers, k = (int)llround(r->target * L);
    if (k < 1 || k >= L) return usage_error("--target-drop %g drops %d of %d sub-blocks of each kind; give a fraction that drops between 1 and %d", r->target, k, L, L - 1);
    int rc = alloc_problem(r, 2 * L, 2);
    if (rc) return rc;
    for (int u = 0; u < 2 * L; u++) {
        int l = u % L, attn = u < L;
        r->n_levels[u] = 2;
        r->cost[u][0] = 1; r->cost[u][1] = 0; /* cost: sub-blocks kept, so less is smaller as for the other targets */
        r->group[u] = attn ? 0 : 1;
        r->start[u] = (int16_t)(l >= L - k); /* a feasible start: the last k of each kind */
        r->fu[u] = (evb_fit_unit){attn ? EVB_UNIT_ATTN : EVB_UNIT_MLP, l, 2, NULL};
        json_array_append_new(r->level_desc, json_pack("[{s:b}, {s:i, s:s}]", "kept", 1, "block", l, "sub", attn ? "attn" : "mlp"));
    }
    r->budget = 2 * (L - k);
    r->tol = 0.5;
    r->total_size = 2 * L;
    return 0;
}

/* ---- outputs ---- */

/* The storage of a configuration in bits, in the joint search's measure (storage_bits), whatever the mode:
 * so that runs of every kind compare at the same bytes. Dropped sub-blocks store nothing; dense layers 16
 * bits per weight. */
static double storage_of(const run *r, const int16_t *level) {
    const evb_model *m = r->l.m;
    double bits = 0;
    if (r->mode == MODE_JOINT) {
        for (int u = 0; u < r->U; u++) bits += r->cost[u][level[u]];
        return bits;
    }
    if (r->mode == MODE_DROP) {
        int L = r->U / 2;
        for (int u = 0; u < r->U; u++) {
            if (level[u]) continue;
            int l = u % L, attn = u < L;
            for (int k = attn ? 0 : 4; k < (attn ? 4 : EVB_LINEAR_COUNT); k++) {
                int rows, cols;
                evb_model_unit_shape(m, l * EVB_LINEAR_COUNT + k, &rows, &cols);
                bits += 16.0 * rows * cols;
            }
        }
        return bits;
    }
    for (int u = 0; u < r->U; u++) {
        int rows, cols, e = r->entry[u * r->max_levels + level[u]];
        evb_model_unit_shape(m, u, &rows, &cols);
        if (e < 0) { bits += 16.0 * rows * cols; continue; }
        evb_db_entry got = evb_db_get(r->db, e);
        bits += storage_bits(rows, cols, &got);
    }
    return bits;
}

static json_t *config_json(const run *r, const int16_t *level, double fitness) {
    json_t *units = json_array(), *drop = json_array();
    double cost = 0;
    for (int u = 0; u < r->U; u++) {
        cost += r->cost[u][level[u]];
        json_t *d = json_deep_copy(json_array_get(json_array_get(r->level_desc, u), level[u]));
        if (r->mode == MODE_DROP) {
            if (level[u]) json_array_append_new(drop, d);
            else json_decref(d);
            continue;
        }
        json_object_set_new(d, "unit", json_integer(u));
        char nb[64];
        json_object_set_new(d, "name", r->names ? json_incref(json_array_get(r->names, u)) : json_string(unit_name(u, nb, sizeof nb)));
        json_object_set_new(d, "level", json_integer(level[u]));
        json_object_set_new(d, "cost", json_real(r->cost[u][level[u]]));
        if (r->mode == MODE_JOINT) {
            int rows, cols;
            evb_model_unit_shape(r->l.m, u, &rows, &cols);
            json_object_set_new(d, "storage_bits_per_weight", json_real(r->cost[u][level[u]] / ((double)rows * cols)));
        }
        json_array_append_new(units, d);
    }
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:f, s:f, s:f, s:f, s:o, s:o}", "model", r->l.m ? r->l.m->path : "",
                          "db", r->mode == MODE_DROP || r->mode == MODE_PROBLEM ? "" : r->dbdir, "method", r->method, "target_kind", mode_name[r->mode],
                          "target", r->target, "budget", r->budget, "cost", cost, "fitness", fitness, "units", units, "drop", drop);
    if (r->mode == MODE_SPARSITY) json_object_set_new(j, "sparsity", json_real(1.0 - cost / r->total_size));
    if (r->mode == MODE_BITS) json_object_set_new(j, "bits_per_weight", json_real(cost / (r->total_size / 32.0)));
    if (r->mode == MODE_DROP) json_object_set_new(j, "dropped", json_real(r->total_size - cost));
    if (r->mode != MODE_PROBLEM) json_object_set_new(j, "storage_bytes", json_real(storage_of(r, level) / 8));
    if (r->mode == MODE_JOINT) {
        json_object_set_new(j, "bytes", json_real(cost / 8));
        json_object_set_new(j, "storage_bits_per_weight", json_real(cost / r->total_size));
        /* a sub-block whose output projection is the zero matrix computes nothing: dropped */
        for (int l = 0; l < r->U / EVB_LINEAR_COUNT; l++)
            for (int k = 0; k < 2; k++) {
                int u = l * EVB_LINEAR_COUNT + (k ? EVB_LINEAR_DOWN : EVB_LINEAR_O);
                if (r->entry[u * r->max_levels + level[u]] == EVB_ENTRY_ZERO)
                    json_array_append_new(drop, json_pack("{s:i, s:s}", "block", l, "sub", k ? "mlp" : "attn"));
            }
    }
    return j;
}

static int write_front(const run *r, const evb_front_point *pts, const int16_t *levels, int n) {
    size_t cap = 256 + (size_t)n * (64 + 4 * (size_t)r->U);
    char *buf = malloc(cap), *p = buf;
    if (!buf) return fail(EVB_RAISEF(EVB_ENOMEM, "out of memory"));
    p += sprintf(p, "id,cost,cost_fraction,fitness,heldout,levels\n");
    for (int i = 0; i < n; i++) {
        p += sprintf(p, "%d,%.17g,%.9g,%.17g,,", i, pts[i].cost, pts[i].cost / r->total_size, pts[i].fitness);
        for (int u = 0; u < r->U; u++) p += sprintf(p, "%s%d", u ? " " : "", levels[(size_t)i * r->U + u]);
        *p++ = '\n';
    }
    *p = 0;
    int rc = write_file(r->out, "front.csv", buf);
    free(buf);
    return rc;
}

static json_t *manifest(const run *r, const evb_search_params *sp) {
    json_t *stages = json_array();
    for (int j = 0; sp && j < sp->n_stages; j++)
        json_array_append_new(stages, json_pack("{s:i, s:I}", "survivors", sp->n_survivors[j], "tokens", (json_int_t)sp->n_tokens[j]));
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:f, s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:I, s:I}",
                          "evobudget", EVB_VERSION, "blas", evb_blas_library(), "model", r->l.m ? r->l.m->path : "", "model_fingerprint", r->mfp,
                          "target", r->target, "target_kind", mode_name[r->mode], "method", r->method,
                          "compressor", r->comp ? r->comp->name : "", "db", r->dbdir, "calib_fingerprint", r->cfp,
                          "seq_len", r->seq_len, "calib_windows", r->w.n, "calib_tokens", (json_int_t)r->calib_tokens,
                          "seed", (json_int_t)r->o->seed);
    json_object_set_new(j, "calib", json_string(r->o->calib ? r->o->calib : "assets/demo/calib.txt"));
    json_object_set_new(j, "fitness", json_string(r->ft ? r->ft->name : r->kp.metric == EVB_METRIC_KL ? "kl" : "ppl"));
    if (r->o->problem) json_object_set_new(j, "problem", json_string(r->o->problem));
    if (r->o->fitness_plugin) json_object_set_new(j, "fitness_plugin", json_string(r->o->fitness_plugin));
    json_object_set_new(j, "units", json_integer(r->U));
    json_object_set_new(j, "budget", json_real(r->budget));
    json_object_set_new(j, "tolerance", json_real(r->tol));
    if (sp) json_object_set_new(j, "search", json_pack("{s:i, s:i, s:o, s:i, s:i, s:I, s:b, s:b}", "generations", sp->generations,
                                                       "offspring", sp->n_offspring, "stages", stages, "max_mutations", sp->max_mutations,
                                                       "initial", sp->n_initial, "initial_tokens", (json_int_t)sp->initial_tokens,
                                                       "memo", sp->memo, "reuse", r->kp.reuse_bytes > 0));
    else json_decref(stages);
    return j;
}

/* ---- the allocation rules (owl, ecoflap, shortgpt) ---- */

/* Scores one candidate with the fitness kp on every calibration token, in this thread. */
static int score_with(const evb_kl_params *kp, const int16_t *lv, int U, double *fitness) {
    void *ws = malloc(evb_fitness_kl.workspace_size(kp));
    int s = ws ? evb_fitness_kl.workspace_init(ws, kp) : EVB_RAISEF(EVB_ENOMEM, "out of memory");
    evb_genome g = {U, lv};
    evb_batch all = {0, 0};
    if (!s) { s = evb_fitness_kl.evaluate(kp, ws, &g, NULL, &all, fitness); evb_fitness_kl.workspace_destroy(ws); }
    free(ws);
    return s;
}

static int score_levels(run *r, const int16_t *lv, double *fitness) { return score_with(&r->kp, lv, r->U, fitness); }

/* Scores a candidate that is not in the problem's level space: per unit one database entry (or dense). */
static int score_entries(run *r, const int *entry, double *fitness) {
    evb_fit_unit *fu = malloc(sizeof(evb_fit_unit) * r->U);
    int16_t *zero = calloc(r->U, sizeof(int16_t));
    if (!fu || !zero) { free(fu); free(zero); return EVB_RAISEF(EVB_ENOMEM, "out of memory"); }
    for (int u = 0; u < r->U; u++) fu[u] = (evb_fit_unit){EVB_UNIT_LINEAR, u, 1, entry + u};
    evb_kl_params kp = r->kp;
    kp.units = fu;
    int s = score_with(&kp, zero, r->U, fitness);
    free(fu); free(zero);
    return s;
}

/* Builds per-block fraction levels (the compressor at sparsity[l] for every unit of block l), scores them
 * and returns the configuration (entries[U]). */
static int block_levels(run *r, const double *sparsity, int *entries, double *fitness, double *kept) {
    evb_model *m = r->l.m;
    int U = r->U, built, rc;
    if ((rc = need_calib(r))) return rc;
    evb_db_entry *keys = calloc(U, sizeof *keys);
    if (!keys) return EVB_RAISEF(EVB_ENOMEM, "out of memory");
    for (int u = 0; u < U; u++) {
        keys[u].unit = u; keys[u].kind = EVB_LEVEL_SPARSE;
        keys[u].sparsity = round(sparsity[u / EVB_LINEAR_COUNT] * 1e6) / 1e6; /* six digits, as file names keep */
        snprintf(keys[u].method, sizeof keys[u].method, "%s", r->comp->name);
    }
    evb_level_grid g = {0};
    int s = evb_db_build_entries(r->db, m, r->calib, r->comp, &g, keys, U, &built);
    *kept = 0;
    for (int u = 0; !s && u < U; u++) {
        int rows, cols;
        evb_model_unit_shape(m, u, &rows, &cols);
        keys[u].rows = rows; keys[u].cols = cols;
        entries[u] = evb_db_find(r->db, &keys[u]);
        if (entries[u] < 0) s = EVB_RAISEF(EVB_EFORMAT, "%s: a level just built is missing", r->dbdir);
        else *kept += evb_db_get(r->db, entries[u]).params_kept;
    }
    free(keys);
    return s ? s : score_entries(r, entries, fitness);
}

static json_t *entries_config(const run *r, const int *entries, double fitness, double kept) {
    json_t *units = json_array();
    double storage = 0;
    for (int u = 0; u < r->U; u++) {
        evb_db_entry e = evb_db_get(r->db, entries[u]);
        int rows, cols;
        evb_model_unit_shape(r->l.m, u, &rows, &cols);
        storage += storage_bits(rows, cols, &e);
        char nb[64];
        json_array_append_new(units, json_pack("{s:i, s:s, s:s, s:f, s:f}", "unit", u, "name", unit_name(u, nb, sizeof nb),
                                               "method", e.method, "sparsity", e.sparsity, "cost", e.params_kept));
    }
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:f, s:f, s:f, s:f, s:f, s:o, s:[]}", "model", r->l.m->path, "db", r->dbdir,
                          "method", r->method, "target_kind", mode_name[r->mode], "target", r->target, "budget", r->budget,
                          "cost", kept, "fitness", fitness, "sparsity", 1.0 - kept / r->total_size, "units", units, "drop");
    json_object_set_new(j, "storage_bytes", json_real(storage / 8));
    return j;
}

static int run_rule(run *r, json_t **best, evb_front_point *pt, FILE *log) {
    evb_model *m = r->l.m;
    int L = m->config.n_layers, rc;
    double *sp = malloc(sizeof(double) * (L + r->U)), *score = sp + L, fit = 0, kept = 0;
    int *entries = malloc(sizeof(int) * r->U), *best_e = malloc(sizeof(int) * r->U);
    if (!sp || !entries || !best_e) { free(sp); free(entries); free(best_e); return fail(EVB_RAISEF(EVB_ENOMEM, "out of memory")); }
    int s = 0;
    double best_fit = INFINITY, best_kept = 0;
    if (strcmp(r->method, "owl") == 0) {
        /* EvoPress's OWL baseline: lambda x M grid, the best by the fitness on the calibration set */
        static const double lambdas[] = {0.02, 0.05, 0.08, 0.1, 0.2}, Ms[] = {3, 5, 7, 10};
        double *lod = malloc(sizeof(double) * L);
        if ((rc = need_calib(r))) { free(lod); free(sp); free(entries); free(best_e); return fail(rc); }
        for (int mi = 0; !s && mi < 4; mi++) {
            s = evb_score_owl(m, r->calib, Ms[mi], lod);
            for (int li = 0; !s && li < 5; li++) {
                s = evb_alloc_owl(lod, L, r->target, lambdas[li], sp);
                for (int l = 0; !s && l < L; l++) if (sp[l] > 0.99) sp[l] = 0.99;
                if (!s) s = block_levels(r, sp, entries, &fit, &kept);
                if (s) break;
                fprintf(log, "{\"lambda\": %g, \"M\": %g, \"fitness\": %.10g, \"sparsity\": %.6f}\n", lambdas[li], Ms[mi], fit, 1 - kept / r->total_size);
                fprintf(stderr, "%s: owl lambda %.2f M %2.0f: fitness %.5f\n", cmd_name, lambdas[li], Ms[mi], fit);
                if (fit < best_fit) { best_fit = fit; best_kept = kept; memcpy(best_e, entries, sizeof(int) * r->U); }
            }
        }
        free(lod);
    } else { /* ecoflap: zeroth-order block scores (sum over the block's layers), cap at target + 0.1 */
        double *bscore = calloc(L, sizeof(double)), *bsize = calloc(L, sizeof(double));
        int n_win = r->w.n < 32 ? r->w.n : 32; /* ECoFLaP's 32 samples */
        evb_windows sub = r->w;
        sub.n = n_win;
        s = evb_score_ecoflap(m, &sub, (int)r->o->batch, 1e-3, (uint64_t)r->o->seed, score);
        for (int u = 0; !s && u < r->U; u++) {
            int rows, cols;
            evb_model_unit_shape(m, u, &rows, &cols);
            bscore[u / EVB_LINEAR_COUNT] += score[u];
            bsize[u / EVB_LINEAR_COUNT] += (double)rows * cols;
        }
        double cap = r->target + 0.1 < 0.99 ? r->target + 0.1 : 0.99;
        if (!s) s = evb_alloc_ecoflap(bscore, bsize, L, r->target, cap, sp);
        if (!s) s = block_levels(r, sp, entries, &fit, &kept);
        if (!s) {
            for (int l = 0; l < L; l++) fprintf(log, "{\"block\": %d, \"score\": %.10g, \"sparsity\": %.6f}\n", l, bscore[l], sp[l]);
            best_fit = fit; best_kept = kept; memcpy(best_e, entries, sizeof(int) * r->U);
        }
        free(bscore); free(bsize);
    }
    if (!s) {
        *best = entries_config(r, best_e, best_fit, best_kept);
        pt->cost = best_kept; pt->fitness = best_fit;
    }
    free(sp); free(entries); free(best_e);
    return s ? fail(s) : 0;
}

/* ShortGPT: drop the k attention and k MLP sub-blocks of least influence. */
static int shortgpt_candidate(run *r, int16_t *level) {
    evb_model *m = r->l.m;
    int L = m->config.n_layers, k = (int)llround((r->total_size - r->budget) / 2);
    double *bi = malloc(sizeof(double) * 3 * L);
    if (!bi) return fail(EVB_RAISEF(EVB_ENOMEM, "out of memory"));
    int s = evb_score_block_influence(m, &r->w, (int)r->o->batch, bi, bi + L, bi + 2 * L);
    if (s) { free(bi); return fail(s); }
    for (int kind = 0; kind < 2; kind++) {
        const double *b = bi + (1 + kind) * L;
        for (int j = 0; j < k; j++) {
            int lo = -1;
            for (int l = 0; l < L; l++) if (!level[kind * L + l] && (lo < 0 || b[l] < b[lo])) lo = l;
            level[kind * L + lo] = 1;
        }
    }
    free(bi);
    return 0;
}

/* ---- the search ---- */

static size_t scale_tokens(size_t t, size_t total, size_t base) {
    /* EvoPress's stage sizes were set for its search calibration sets (524,288 tokens for sparsity and
     * quantization, 131,072 for depth: base): keep their proportion to this calibration set, at least 256
     * tokens, 0 (all) once a stage reaches the whole set. */
    double x = (double)t * (double)total / (double)base;
    size_t s = x < 256 ? 256 : (size_t)x;
    return s >= total ? 0 : s;
}

static int parse_stages(const char *s, evb_search_params *p) {
    p->n_stages = 0;
    const char *q = s;
    while (*q) {
        int surv;
        long tok;
        int used;
        if (p->n_stages == EVB_MAX_STAGES || sscanf(q, "%d@%ld%n", &surv, &tok, &used) != 2 || surv < 1 || tok < 0)
            return usage_error("--stages '%s' must be SURVIVORS@TOKENS,... (at most %d stages, 0 tokens = all)", s, EVB_MAX_STAGES);
        p->n_survivors[p->n_stages] = surv;
        p->n_tokens[p->n_stages++] = (size_t)tok;
        q += used;
        if (*q == ',') q++;
        else if (*q) return usage_error("--stages '%s' must be SURVIVORS@TOKENS,...", s);
    }
    return p->n_stages ? 0 : usage_error("--stages is empty");
}

static evb_search_params search_params(run *r) {
    evb_search_params p = evb_search_default_params();
    size_t T = r->calib_tokens;
    static const struct { int gens, lambda, n; int surv[3]; size_t tok[3]; } mode_defaults[] = {
        {400, 64, 3, {8, 2, 1}, {2048, 16384, 65536}},  /* sparsity */
        {150, 128, 3, {16, 4, 1}, {2048, 16384, 131072}}, /* quantization */
        {0, 32, 2, {2, 1, 0}, {2048, 32768, 0}},         /* depth: generations k(n-k)/1.5 */
    };
    const __typeof__(mode_defaults[0]) *d = &mode_defaults[r->mode == MODE_PROBLEM ? 0 : r->mode == MODE_JOINT ? 1 : r->mode];
    const size_t base = r->mode == MODE_DROP ? 131072 : 524288;
    p.seed = (uint64_t)r->o->seed;
    p.generations = d->gens;
    if (r->mode == MODE_DROP) {
        int L = r->l.m->config.n_layers, k = (int)llround((r->total_size - r->budget) / 2);
        p.generations = (int)ceil(k * (L - k) / 1.5);
        p.n_initial = 64; p.initial_tokens = scale_tokens(2048, T, base);
    }
    if (r->mode == MODE_BITS && fabs(r->target - round(r->target)) > 1e-9) { p.n_initial = 32; p.initial_tokens = scale_tokens(2048, T, base); }
    p.n_offspring = d->lambda;
    p.n_stages = d->n;
    for (int j = 0; j < d->n; j++) { p.n_survivors[j] = d->surv[j]; p.n_tokens[j] = T ? scale_tokens(d->tok[j], T, base) : d->tok[j]; }
    p.max_mutations = 3;
    p.total_tokens = T;
    p.memo = !r->o->no_memo;
    if (strcmp(r->method, "random") == 0) { p.n_initial = r->o->initial ? (int)r->o->initial : 32; p.generations = 1; }
    if (strcmp(r->method, "nsga2") == 0) { p.generations = 100; p.n_offspring = 32; p.n_stages = 1; p.n_survivors[0] = 32; p.n_tokens[0] = T ? scale_tokens(16384, T, base) : 16384; }
    if (r->o->generations) p.generations = (int)r->o->generations;
    if (r->o->offspring) p.n_offspring = (int)r->o->offspring;
    if (r->o->initial && strcmp(r->method, "random")) p.n_initial = (int)r->o->initial;
    return p;
}

/* The search object of the run's problem with its fitness attached; a library status. */
static int make_search(run *r, const evb_search_params *sp, evb_search **srch) {
    const evb_search_type *t = evb_search_type_find(r->method);
    evb_problem p = {r->U, r->n_levels, (const double *const *)r->cost, r->group, r->budget, r->tol,
                     r->mode == MODE_PROBLEM && !r->start_given ? NULL : r->start, NULL};
    if (strcmp(r->method, "nsga2") == 0) {
        /* the front spans the budget +- 10% of the dense size (sparsity, bits) or +- one sub-block of each kind */
        p.tolerance = r->mode == MODE_PROBLEM ? r->tol : r->mode == MODE_DROP ? 2.5 : r->mode == MODE_JOINT ? 0.1 * r->budget :
                      (r->mode == MODE_SPARSITY ? 0.1 * r->total_size : 0.5 / 32 * r->total_size);
    }
    *srch = NULL;
    int s = evb_problem_check(&p);
    if (!s) s = evb_search_alloc(t, sp, &p, srch);
    if (!s) s = r->ft ? evb_search_set(*srch, r->ft, r->fparams, r->n_threads) : evb_search_set(*srch, &evb_fitness_kl, &r->kp, 0);
    if (s) { evb_search_free(*srch); *srch = NULL; }
    return s;
}

#ifdef EVB_MPI
/* When a rank dies, mpirun ends the others with SIGTERM: rank 0 then says where the run can continue. */
static char g_stop_msg[2][1600];
static volatile sig_atomic_t g_stop_which = -1;
static void on_term(int sig) {
    (void)sig;
    int k = g_stop_which;
    if (k >= 0) { ssize_t w = write(2, g_stop_msg[k], strlen(g_stop_msg[k])); (void)w; }
    _exit(143);
}
static void stop_message(const char *ck, int generation) {
    int k = g_stop_which == 0 ? 1 : 0;
    snprintf(g_stop_msg[k], sizeof g_stop_msg[k], "\n%s: stopped: the MPI job is ending (a rank exited; see mpirun's message). "
             "%s holds generation %d (hint: rerun with --resume, with any number of ranks)\n", cmd_name, ck, generation);
    g_stop_which = k;
}

/* Ranks > 0: the same search object, serving rank 0's batches until it is done. */
static int mpi_worker(run *r, const evb_search_params *sp) {
    evb_search *srch = NULL;
    evb_mpi *mp = NULL;
    int s = make_search(r, sp, &srch);
    if (!s) s = evb_mpi_create(r->ft ? NULL : &r->kp, &mp);
    if (!s) s = evb_mpi_serve(mp, srch);
    evb_mpi_free(mp);
    evb_search_free(srch);
    return s ? fail(s) : 0;
}
#endif

static int run_search(run *r, const evb_search_params *sp, json_t **best, int *n_front, evb_front_point **front,
                      int16_t **front_levels, FILE *log, double *eval_s, evb_search_info *info_out) {
    evb_search *srch = NULL;
    int s = make_search(r, sp, &srch);
    if (s) return fail(s);
#ifdef EVB_MPI
    evb_mpi *mp = NULL;
    if (g_mpi_size > 1) {
        s = evb_mpi_create(r->ft ? NULL : &r->kp, &mp);
        if (s) { evb_search_free(srch); return fail(s); }
        evb_search_set_batch(srch, evb_mpi_batch, mp);
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_term;
        sigaction(SIGTERM, &sa, NULL);
    }
#endif
    char ck[1400];
    snprintf(ck, sizeof ck, "%s/checkpoint.msgpack", r->out);
    if (!s && r->o->resume && access(ck, R_OK) == 0) {
        s = evb_search_load(srch, ck);
        if (!s) {
            evb_search_info in;
            evb_search_get_info(srch, &in);
            fprintf(stderr, "%s: resuming %s at generation %d\n", cmd_name, ck, in.generation);
            char lp[1400];
            snprintf(lp, sizeof lp, "%s/log.jsonl", r->out);
            s = log_truncate(log, lp, in.generation);
        }
    }
    double t0 = now_s(), last = 0;
    int tty = isatty(2), status = s ? s : EVB_CONTINUE;
    evb_search_info in = {0};
    if (!s) { evb_search_get_info(srch, &in); if (in.generation >= sp->generations && in.generation > 0) status = EVB_SUCCESS; }
    size_t ev0 = in.evaluations;
    int g0 = in.generation;
    while (status == EVB_CONTINUE) {
        status = evb_search_iterate(srch);
        if (status != EVB_CONTINUE && status != EVB_SUCCESS) break;
        evb_search_get_info(srch, &in);
        double el = now_s() - t0;
        fprintf(log, "{\"generation\": %d, \"best_fitness\": %.12g, \"best_cost\": %.17g, \"evaluations\": %zu, \"memo_hits\": %zu, \"tokens\": %zu, \"seconds\": %.3f}\n",
                in.generation, in.best_fitness, in.best_cost, in.evaluations, in.memo_hits, in.tokens, el);
        fflush(log);
        int cs = evb_search_save(srch, ck);
        if (cs) { status = cs; break; }
#ifdef EVB_MPI
        if (mp) stop_message(ck, in.generation);
#endif
        if (el - last >= (tty ? 0.2 : 5.0) || status == EVB_SUCCESS) {
            last = el;
            int gd = in.generation - g0, total = sp->generations - g0;
            double eta = gd > 0 ? el / gd * (total - gd) : 0, eps = el > 0 ? (in.evaluations - ev0) / el : 0;
            fprintf(stderr, tty ? "\r%s: generation %d/%d  %.1f evals/s  best %.6g  %.0fs elapsed, ETA %.0fs   " :
                                  "%s: generation %d/%d  %.1f evals/s  best %.6g  %.0fs elapsed, ETA %.0fs\n",
                    r->method, in.generation, sp->generations, eps, in.best_fitness, el, eta);
        }
    }
    if (tty) fputc('\n', stderr);
    *eval_s = now_s() - t0;
#ifdef EVB_MPI
    if (mp) { evb_mpi_stop(mp); evb_mpi_free(mp); }
#endif
    if (status != EVB_SUCCESS) {
        evb_search_free(srch);
        return fail(status);
    }
    int16_t *lv = malloc(sizeof(int16_t) * r->U);
    double fit = 0;
    evb_search_best(srch, lv, &fit);
    *best = config_json(r, lv, fit);
    free(lv);
    int n = evb_search_front(srch, NULL, NULL, 0);
    *front = malloc(sizeof(evb_front_point) * (n > 0 ? n : 1));
    *front_levels = malloc(sizeof(int16_t) * r->U * (n > 0 ? n : 1));
    *n_front = evb_search_front(srch, *front, *front_levels, n);
    evb_search_get_info(srch, info_out);
    evb_search_free(srch);
    return 0;
}

/* ---- problem files (--problem) ---- */

/* The built-in fitness of a problem file: the sum over units of their level's "fitness" value. */
static size_t additive_ws(const void *params) { (void)params; return 1; }
static int additive_eval(const void *params, void *w, const evb_genome *g, const evb_genome *ref, const evb_batch *b, double *f) {
    (void)w; (void)ref; (void)b;
    const run *r = params;
    double v = 0;
    for (int u = 0; u < g->n_units; u++) v += r->level_fit[(size_t)u * r->max_levels + g->level[u]];
    *f = v;
    return EVB_SUCCESS;
}
static const evb_fitness_type additive_fitness = {"additive", additive_ws, NULL, NULL, additive_eval};

/* Reads a problem file (docs/problem-files.md, docs/problem.schema.json) into the run's problem. */
static int load_problem_file(run *r, const char *path) {
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je), *units = j ? json_object_get(j, "units") : NULL, *x;
    if (!j) return usage_error("--problem %s: %s (line %d, column %d)", path, je.text, je.line, je.column);
    int rc = 0;
#define BAD(...) do { rc = usage_error(__VA_ARGS__); goto done; } while (0)
    json_t *fmt = json_object_get(j, "format");
    if (fmt && json_integer_value(fmt) != 1) BAD("--problem %s: format %lld, this program reads format 1", path, (long long)json_integer_value(fmt));
    if (!json_is_array(units) || json_array_size(units) < 1) BAD("--problem %s: \"units\" must be a non-empty array", path);
    if (!json_is_number(json_object_get(j, "budget"))) BAD("--problem %s: \"budget\" must be a number", path);
    int U = (int)json_array_size(units), maxl = 0;
    size_t i;
    json_array_foreach(units, i, x) {
        json_t *lv = json_object_get(x, "levels");
        if (!json_is_array(lv) || json_array_size(lv) < 1 || json_array_size(lv) > 32767)
            BAD("--problem %s: units[%zu] needs \"levels\", an array of 1 to 32767 {\"cost\": number}", path, i);
        if ((int)json_array_size(lv) > maxl) maxl = (int)json_array_size(lv);
    }
    if ((rc = alloc_problem(r, U, maxl))) goto done;
    r->names = json_array();
    r->level_fit = malloc(sizeof(double) * U * maxl);
    if (!r->names || !r->level_fit) { rc = fail(EVB_RAISEF(EVB_ENOMEM, "out of memory")); goto done; }
    int all_fit = 1;
    json_array_foreach(units, i, x) {
        json_t *lv = json_object_get(x, "levels"), *l, *g = json_object_get(x, "group"), *nm = json_object_get(x, "name");
        size_t k;
        char def[32];
        snprintf(def, sizeof def, "unit%zu", i);
        json_array_append_new(r->names, json_string(json_is_string(nm) ? json_string_value(nm) : def));
        if (g && (!json_is_integer(g) || json_integer_value(g) < 0)) BAD("--problem %s: units[%zu].group must be an integer >= 0", path, i);
        r->group[i] = g ? (int)json_integer_value(g) : 0;
        r->n_levels[i] = (int)json_array_size(lv);
        json_t *descs = json_array();
        json_array_append_new(r->level_desc, descs);
        json_array_foreach(lv, k, l) {
            json_t *c = json_object_get(l, "cost"), *f = json_object_get(l, "fitness");
            if (!json_is_number(c) || !isfinite(json_number_value(c))) BAD("--problem %s: units[%zu].levels[%zu] needs a finite \"cost\"", path, i, k);
            r->cost[i][k] = json_number_value(c);
            r->level_fit[i * maxl + k] = json_is_number(f) ? json_number_value(f) : NAN;
            all_fit &= json_is_number(f);
            json_array_append_new(descs, json_deep_copy(l));
        }
        r->fu[i] = (evb_fit_unit){EVB_UNIT_LINEAR, (int)i, r->n_levels[i], NULL};
    }
    r->budget = json_number_value(json_object_get(j, "budget"));
    r->tol = json_is_number(json_object_get(j, "tolerance")) ? json_number_value(json_object_get(j, "tolerance")) : 0;
    if (!(r->tol >= 0)) BAD("--problem %s: \"tolerance\" must be >= 0", path);
    json_t *st = json_object_get(j, "start");
    if (st) {
        if (!json_is_array(st) || (int)json_array_size(st) != U) BAD("--problem %s: \"start\" must give a level for each of the %d units", path, U);
        json_array_foreach(st, i, x) {
            json_int_t v = json_is_integer(x) ? json_integer_value(x) : -1;
            if (v < 0 || v >= r->n_levels[i]) BAD("--problem %s: start[%zu] = %s is not a level of that unit", path, i, json_is_integer(x) ? "out of range" : "not an integer");
            r->start[i] = (int16_t)v;
        }
    } else r->start_given = 0;
    if (st) r->start_given = 1;
    r->total_size = 0;
    for (int u = 0; u < U; u++) {
        double mx = r->cost[u][0];
        for (int l = 1; l < r->n_levels[u]; l++) if (r->cost[u][l] > mx) mx = r->cost[u][l];
        r->total_size += mx;
    }
    if (!r->o->fitness_plugin && !r->o->fitness_cmd && !all_fit)
        BAD("--problem %s: without --fitness-plugin or --fitness-cmd every level needs a \"fitness\" value (the built-in additive fitness)", path);
#undef BAD
done:
    json_decref(j);
    return rc;
}

static int load_plugin(run *r, const char *path) {
    r->plugin_handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!r->plugin_handle) return usage_error("--fitness-plugin %s: %s", path, dlerror());
    evb_plugin_entry_fn entry = (evb_plugin_entry_fn)(uintptr_t)dlsym(r->plugin_handle, EVB_PLUGIN_ENTRY);
    if (!entry) return usage_error("--fitness-plugin %s: no function %s (see include/evobudget/evb_plugin.h)", path, EVB_PLUGIN_ENTRY);
    const evb_plugin *pl = entry();
    if (!pl || pl->abi != EVB_PLUGIN_ABI)
        return usage_error("--fitness-plugin %s: plug-in ABI %d, this program speaks %d (rebuild the plug-in against these headers)", path, pl ? pl->abi : -1, EVB_PLUGIN_ABI);
    if (!pl->fitness || !pl->fitness->evaluate || !pl->fitness->workspace_size || !pl->create || !pl->destroy)
        return usage_error("--fitness-plugin %s: the plug-in leaves a function of evb_plugin empty", path);
    r->plugin = pl;
    evb_clear_error();
    r->plugin_params = pl->create(r->o->problem, r->U, r->n_levels);
    if (!r->plugin_params) {
        const char *msg = evb_last_error();
        return usage_error("--fitness-plugin %s: create failed%s%s", path, msg[0] ? ": " : "", msg);
    }
    r->ft = pl->fitness;
    r->fparams = r->plugin_params;
    return 0;
}

static void log_line(void *ctx, const char *line) { (void)ctx; fprintf(stderr, "%s: %s\n", cmd_name, line); }

/* ---- the sweep ---- */

/* What a unit's level means across targets: weights removed, bits, or dropped (1) / kept (0). */
static double *unit_values(const run *r, const int16_t *lv) {
    double *v = malloc(sizeof(double) * r->U);
    for (int u = 0; v && u < r->U; u++) {
        int rows, cols;
        if (r->mode == MODE_SPARSITY) { evb_model_unit_shape(r->l.m, u, &rows, &cols); v[u] = (double)rows * cols - r->cost[u][lv[u]]; }
        else if (r->mode == MODE_BITS) v[u] = r->bits[lv[u]];
        else v[u] = lv[u];
    }
    return v;
}

/* The levels of a best.json of this problem. */
static int best_levels(const run *r, json_t *best, int16_t *lv) {
    memset(lv, 0, sizeof(int16_t) * r->U);
    json_t *x;
    size_t i;
    if (r->mode == MODE_DROP) {
        int L = r->U / 2;
        json_array_foreach(json_object_get(best, "drop"), i, x) {
            json_int_t b = json_integer_value(json_object_get(x, "block"));
            const char *sub = json_string_value(json_object_get(x, "sub"));
            if (b < 0 || b >= L || !sub) return 1;
            lv[(strcmp(sub, "attn") ? L : 0) + b] = 1;
        }
        return 0;
    }
    json_array_foreach(json_object_get(best, "units"), i, x) {
        json_int_t u = json_integer_value(json_object_get(x, "unit")), l = json_integer_value(json_object_get(x, "level"));
        if (u < 0 || u >= r->U || l < 0 || l >= r->n_levels[u]) return 1;
        lv[u] = (int16_t)l;
    }
    return 0;
}

/* The neighbour's best moved into this target's problem: each unit at the level nearest its value, then
 * levels moved one at a time until every group holds what the uniform start holds (so the budget is met
 * exactly). Kept only when feasible; otherwise the uniform start stays. */
static int warm_start(run *r, const double *prev) {
    int U = r->U;
    int16_t *lv = malloc(sizeof(int16_t) * U);
    double *want = calloc(64, sizeof(double)), *have = calloc(64, sizeof(double));
    if (!lv || !want || !have) { free(lv); free(want); free(have); return 0; }
    for (int u = 0; u < U; u++) {
        int best = 0;
        double bd = INFINITY;
        for (int l = 0; l < r->n_levels[u]; l++) {
            int16_t one = (int16_t)l;
            double d, v;
            if (r->mode == MODE_SPARSITY) { int rows, cols; evb_model_unit_shape(r->l.m, u, &rows, &cols); v = (double)rows * cols - r->cost[u][one]; }
            else v = r->mode == MODE_BITS ? r->bits[l] : l;
            d = fabs(v - prev[u]);
            if (d < bd) { bd = d; best = l; }
        }
        lv[u] = (int16_t)best;
    }
    int G = 0;
    for (int u = 0; u < U; u++) if (r->group[u] + 1 > G) G = r->group[u] + 1;
    if (G > 64) G = 64;
    for (int u = 0; u < U; u++) { want[r->group[u]] += r->start[u]; have[r->group[u]] += lv[u]; }
    for (int g = 0; g < G; g++)
        while (have[g] != want[g]) {
            int up = have[g] < want[g], pick = -1;
            for (int u = 0; u < U; u++) {
                if (r->group[u] != g || (up ? lv[u] + 1 >= r->n_levels[u] : lv[u] == 0)) continue;
                /* raise the lowest level, lower the highest: the allocation's shape changes least */
                if (pick < 0 || (up ? lv[u] < lv[pick] : lv[u] > lv[pick])) pick = u;
            }
            if (pick < 0) break;
            lv[pick] += up ? 1 : -1;
            have[g] += up ? 1 : -1;
        }
    evb_problem p = {U, r->n_levels, (const double *const *)r->cost, r->group, r->budget, r->tol, NULL, NULL};
    /* equal level sums per group give the start's cost only where steps are equal within a group */
    int ok = evb_problem_feasible(&p, lv);
    if (ok) memcpy(r->start, lv, sizeof(int16_t) * U);
    free(lv); free(want); free(have);
    return ok;
}

static int write_sweep(const run *r, const char *dir, json_t *sweep, int as_json) {
    size_t n = json_array_size(sweep);
    char *buf = malloc(128 + n * 1600), *p = buf;
    if (!buf) return fail(EVB_RAISEF(EVB_ENOMEM, "out of memory"));
    p += sprintf(p, "id,target,cost,cost_fraction,fitness,best\n");
    json_t *x;
    size_t i;
    json_array_foreach(sweep, i, x)
        p += sprintf(p, "%zu,%.17g,%.17g,%.9g,%.17g,%s\n", i, json_real_value(json_object_get(x, "target")), json_number_value(json_object_get(x, "cost")),
                     json_number_value(json_object_get(x, "cost")) / r->total_size,
                     json_real_value(json_object_get(x, "fitness_all")), json_string_value(json_object_get(x, "best")));
    int rc = write_file(dir, "front.csv", buf);
    free(buf);
    json_t *j = json_pack("{s:s, s:s, s:s, s:O}", "method", "evopress", "target_kind", mode_name[r->mode], "kind", "sweep", "runs", sweep);
    if (!rc) rc = write_json(dir, "sweep.json", j);
    if (!rc && as_json) rc = print_json(j);
    else {
        if (!rc) printf("%s: EvoPress sweep over %zu targets; %s/front.csv\n", dir, n, dir);
        json_decref(j);
    }
    return rc;
}

/* ---- the command ---- */

static int help(void) {
    printf("usage: evobudget search [--model PATH] [--calib TEXTFILE] --method NAME\n"
           "                        (--target-sparsity X | --target-bits X | --target-drop X | --target-bytes X) [--out RUNDIR] [options]\n"
           "  Finds one level per unit (linear layer, or sub-block for --target-drop) within the target's budget,\n"
           "  scored by KL(dense || compressed) per token on calibration text.\n"
           "  --method NAME          evopress (default), nsga2 (the front of size against KL), uniform, random (best of\n"
           "                         --initial N random, default 32), owl, ecoflap (sparsity), shortgpt (depth)\n"
           "  --target-sparsity X    fraction of the linear layers' weights removed, levels in EvoPress's equal steps\n"
           "                         (--num-levels K each side, default 8)\n"
           "  --target-bits X        average bits per weight, levels 2..6 bits (--group-size N, default 64; --sym)\n"
           "  --target-drop X        fraction of attention and of MLP sub-blocks dropped\n"
           "  --target-bytes X       storage of the linear layers in bytes (suffix k, M, G) or bits per weight (suffix\n"
           "                         bpw): a joint search where each layer is the zero matrix (a sub-block with a zero\n"
           "                         output projection is dropped), sparsegpt at 50..90%%, gptq at 2..6 bits\n"
           "                         (--group-size N, default 64; --sym) or dense; storage counts 16-bit values, a\n"
           "                         1-bit mask per weight of a sparse layer, 16-bit scales and zero points per group\n"
           "  --compressor NAME      sparsegpt (default for sparsity), wanda, magnitude; gptq (default for bits), rtn\n"
           "  --calib TEXTFILE       calibration text (default: assets/demo/calib.txt); --calib-windows N (default 32)\n"
           "                         windows of --seq-len positions (default min(512, context)), sampled with seed 0\n"
           "  --db DIR               the level database (default: one per model and calibration set under --cache,\n"
           "                         default $XDG_CACHE_HOME/evobudget or ~/.cache/evobudget); missing levels are built\n"
           "  --seed N               search seed (default 0)\n"
           "  --generations N, --offspring N, --stages S@T,...   override the method's defaults (EvoPress's per mode,\n"
           "                         stage tokens scaled to the calibration set); T = 0 means every calibration token\n"
           "  --fitness kl|ppl       (default kl); --teacher f32|f16|topk:K (default f16 up to 1 GiB of\n"
           "                         teacher, else topk:256)\n"
           "  --no-reuse, --no-memo  turn off the parent's hidden-state reuse and the fitness memo (for benchmarks)\n"
           "  --threads N            candidates scored in parallel (default: OMP_NUM_THREADS or all cores)\n"
           COMPUTE_HELP
           "                         the teacher (the dense model's outputs) is computed in float32 either way\n"
           "  --out RUNDIR           manifest.json, log.jsonl, checkpoint.msgpack, front.csv, best.json\n"
           "                         (default: run-METHOD-KIND-TARGET in the current directory)\n"
           "  --resume               continue the run in RUNDIR from its checkpoint\n"
           "  --problem FILE         no model: units, levels, costs and the budget from a JSON file (docs/problem-files.md),\n"
           "                         scored by the levels' \"fitness\" values summed, or by --fitness-plugin lib.so\n"
           "                         (include/evobudget/evb_plugin.h; methods evopress, nsga2, uniform, random)\n"
           "  --fitness-cmd \"CMD\"     with --problem: workers started with /bin/sh -c CMD score candidates over msgpack\n"
           "                         (docs/worker-protocol.md); --workers N (default 1), --worker-timeout S (default\n"
           "                         60), --worker-retries R (default 2) restarts of a failing worker per candidate\n"
           "  --json                 one JSON object on stdout: the best configuration's cost, fitness and paths\n");
    return 0;
}

/* The one-object summary of a finished run on stdout (--json), or a line of text. */
static int print_summary(const run *r, json_t *best, int n_front, const evb_search_info *info, double search_s,
                         double t0, int as_json) {
    char bp[1400];
    snprintf(bp, sizeof bp, "%s/best.json", r->out);
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:f, s:f, s:f, s:i, s:f}", "best", bp, "method", r->method,
                          "target_kind", mode_name[r->mode], "fitness_name", r->ft ? r->ft->name : r->kp.metric == EVB_METRIC_KL ? "kl" : "ppl",
                          "fitness", json_real_value(json_object_get(best, "fitness")),
                          "cost", json_real_value(json_object_get(best, "cost")), "budget", r->budget, "front", n_front,
                          "seconds", now_s() - t0);
    if (r->mode != MODE_PROBLEM) {
        json_object_set_new(j, "target", json_real(r->target));
        json_object_set_new(j, "db", json_string(r->dbdir));
    }
    if (info) {
        json_object_set_new(j, "generations", json_integer(info->generation));
        json_object_set_new(j, "evaluations", json_integer((json_int_t)info->evaluations));
        json_object_set_new(j, "memo_hits", json_integer((json_int_t)info->memo_hits));
        json_object_set_new(j, "tokens", json_integer((json_int_t)info->tokens));
        json_object_set_new(j, "search_seconds", json_real(search_s));
    }
    json_t *fa = json_object_get(best, "fitness_all");
    if (fa) json_object_set(j, "fitness_all", fa);
    if (as_json) return print_json(j);
    if (r->mode == MODE_PROBLEM) printf("%s: %s on %s", r->out, r->method, r->o->problem);
    else printf("%s: %s at %s %g", r->out, r->method, mode_name[r->mode], r->target);
    printf(": fitness %.9g", json_real_value(json_object_get(best, "fitness")));
    if (fa) printf(" (%.9g on all calibration tokens)", json_real_value(fa));
    printf(", cost %.9g (budget %.9g); %s\n", json_real_value(json_object_get(best, "cost")), r->budget, bp);
    json_decref(j);
    return 0;
}

/* `search --problem FILE`: units, levels, costs and the budget from a file, no model; the fitness is the
 * file's additive one or a plug-in's. */
static int search_problem(run *r) {
    opts *o = r->o;
    if (o->target_sparsity || o->target_bits || o->target_drop) return usage_error("--problem replaces --target-*: the budget is in the file");
    if (o->model || o->calib || o->db || o->compressor || o->teacher || o->fitness)
        return usage_error("--problem runs without a model: --model, --calib, --db, --compressor, --teacher and --fitness do not apply");
    if (strcmp(r->method, "evopress") && strcmp(r->method, "nsga2") && strcmp(r->method, "uniform") && strcmp(r->method, "random"))
        return usage_error("--problem: --method %s needs a model; use evopress, nsga2, uniform or random", r->method);
    r->mode = MODE_PROBLEM;
    char default_out[256], ck[1400];
    if (!o->out) { snprintf(default_out, sizeof default_out, "run-%s-problem", r->method); o->out = default_out; }
    evb_search_params sp_override = {0};
    int rc = o->stages ? parse_stages(o->stages, &sp_override) : 0;
    if (rc) return rc;
    snprintf(r->out, sizeof r->out, "%s", o->out);
    snprintf(ck, sizeof ck, "%s/checkpoint.msgpack", r->out);
    if (o->resume && access(ck, R_OK)) return usage_error("--resume: %s has no checkpoint (%s)", r->out, ck);
    snprintf(ck, sizeof ck, "%s/best.json", r->out);
    if (!o->resume && access(ck, F_OK) == 0) return usage_error("--out %s already holds a finished run; choose another directory or remove it", r->out);
    set_threads(o);
    if ((rc = load_problem_file(r, o->problem))) { run_free(r); return rc; }
    if (!strcmp(r->method, "uniform") && !r->start_given) { run_free(r); return usage_error("--method uniform scores the problem's \"start\"; the file gives none"); }
    if (o->fitness_plugin && o->fitness_cmd) rc = usage_error("give one of --fitness-plugin and --fitness-cmd");
    else if (o->fitness_plugin) rc = load_plugin(r, o->fitness_plugin);
    else if (o->fitness_cmd) {
        double to = 60;
        if (o->worker_timeout) {
            char *end;
            to = strtod(o->worker_timeout, &end);
            if (*end || end == o->worker_timeout || !(to > 0)) rc = usage_error("--worker-timeout '%s' must be a positive number of seconds", o->worker_timeout);
        }
        signal(SIGPIPE, SIG_IGN); /* a worker that dies makes writes fail with EPIPE, not end evobudget */
        r->wp = (evb_worker_params){o->fitness_cmd, o->problem, r->U, r->n_levels, r->budget, to,
                                    o->worker_retries ? (int)o->worker_retries : 2, log_line, NULL};
        r->ft = &evb_fitness_worker; r->fparams = &r->wp;
        r->n_threads = o->workers ? (int)o->workers : 1;
    }
    else { r->ft = &additive_fitness; r->fparams = r; }
    if (!rc && mkdirs(r->out)) rc = fail(evb_errorf(__FILE__, __LINE__, EVB_EIO, "--out %s: %s", r->out, strerror(errno)));
    if (!rc) rc = lock_out(r->out, o->resume, "best.json");
    if (rc) { run_free(r); return rc; }
    evb_search_params sp = search_params(r);
    if (o->stages) {
        sp.n_stages = sp_override.n_stages;
        for (int j = 0; j < sp.n_stages; j++) { sp.n_survivors[j] = sp_override.n_survivors[j]; sp.n_tokens[j] = sp_override.n_tokens[j]; }
    }
    json_t *man = manifest(r, &sp);
    rc = write_json(r->out, "manifest.json", man);
    json_decref(man);
    char lp[1400];
    snprintf(lp, sizeof lp, "%s/log.jsonl", r->out);
    FILE *log = rc ? NULL : fopen(lp, o->resume ? "a" : "w");
    if (!rc && !log) rc = fail(evb_errorf(__FILE__, __LINE__, EVB_EIO, "%s: %s", lp, strerror(errno)));
    json_t *best = NULL;
    evb_front_point *front = NULL;
    int16_t *front_levels = NULL;
    int n_front = 0;
    double t0 = now_s(), search_s = 0;
    evb_search_info info = {0};
    if (!rc) rc = run_search(r, &sp, &best, &n_front, &front, &front_levels, log, &search_s, &info);
    if (log) fclose(log);
    if (!rc) rc = write_front(r, front, front_levels, n_front);
    if (!rc) rc = write_json(r->out, "best.json", best);
    if (!rc) rc = print_summary(r, best, n_front, &info, search_s, t0, o->json);
    json_decref(best);
    free(front); free(front_levels);
    run_free(r);
    return rc;
}

static int search_main(int argc, char **argv);

int cmd_search(int argc, char **argv) {
    int rc = search_main(argc, argv);
    evb_unlock_dir(g_out_lock);
    g_out_lock = -1;
    return rc;
}

/* The level cache's bound: the parent's levels of every unit and a quarter more for the offspring's, in the
 * compute path's format, and at least 1 GiB (a small model's whole database). It was four float32 copies of
 * the model: 20 GB for a 1B model, more than the machine. */
static size_t level_cache_bytes(const evb_model *m) {
    size_t elem = m->compute == EVB_COMPUTE_BF16 ? sizeof(uint16_t) : sizeof(float);
    size_t bytes = evb_model_n_params(m) * elem / 4 * 5, floor = (size_t)1 << 30;
    return bytes > floor ? bytes : floor;
}

static int search_main(int argc, char **argv) {
    opts o = {0};
    o.batch = 8; o.piece_bytes = 4000; o.calib_windows = 32; o.num_levels = 8;
    int rc = parse_opts(argc, argv, "--model --tokenizer --calib --method --target-sparsity --target-bits --target-drop --target-bytes --out "
                        "--seed --compressor --generations --offspring --stages --initial --num-levels --group-size --sym --db --cache "
                        "--calib-windows --seq-len --batch --threads --fitness --teacher --reuse-mb --no-reuse --no-memo --resume --json "
                        "--problem --fitness-plugin --fitness-cmd --workers --worker-timeout --worker-retries --compute", &o);
    if (rc || o.help) return o.help && !rc ? help() : rc;
    run r = {0};
    r.o = &o;
    r.method = o.method ? o.method : "evopress";
    static const char *methods[] = {"evopress", "nsga2", "uniform", "random", "owl", "ecoflap", "shortgpt"};
    int known = 0;
    for (size_t i = 0; i < sizeof methods / sizeof *methods; i++) known |= strcmp(r.method, methods[i]) == 0;
    if (!known) return usage_error("--method '%s' is unknown (evopress, nsga2, uniform, random, owl, ecoflap, shortgpt)", r.method);
    int n_t = !!o.target_sparsity + !!o.target_bits + !!o.target_drop + !!o.target_bytes;
#ifdef EVB_MPI
    MPI_Comm_rank(MPI_COMM_WORLD, &g_mpi_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_mpi_size);
    if (g_mpi_rank > 0) { /* the workers' messages say which rank they come from */
        static char nm[64];
        snprintf(nm, sizeof nm, "evobudget search (rank %d)", g_mpi_rank);
        cmd_name = nm;
    }
    if (g_mpi_size > 1 && o.problem) return usage_error("--problem runs in one process (its fitness is cheap); run it without mpirun");
    if (g_mpi_size > 1 && (!strcmp(r.method, "owl") || !strcmp(r.method, "ecoflap") || !strcmp(r.method, "shortgpt")))
        return usage_error("--method %s is an allocation rule, not a search; run it without mpirun", r.method);
#endif
    if (o.problem) return search_problem(&r);
    if (o.fitness_plugin || o.fitness_cmd) return usage_error("--fitness-plugin and --fitness-cmd go with --problem FILE (a model's search scores with KL)");
    if (n_t != 1) return usage_error("give exactly one of --target-sparsity X, --target-bits X, --target-drop X, --target-bytes X (or --problem FILE)");
    const char *ts = o.target_sparsity ? o.target_sparsity : o.target_bits ? o.target_bits : o.target_drop ? o.target_drop : o.target_bytes;
    const char *tflag = o.target_sparsity ? "--target-sparsity" : o.target_bits ? "--target-bits" : o.target_drop ? "--target-drop" : "--target-bytes";
    r.mode = o.target_sparsity ? MODE_SPARSITY : o.target_bits ? MODE_BITS : o.target_drop ? MODE_DROP : MODE_JOINT;
    /* one target, or (EvoPress) a list swept in order, each run started from its neighbour's best */
    double targets[16];
    int n_targets = 0;
    double bpw = 0;               /* --target-bytes Xbpw: bits per linear weight, turned into bytes once the model is loaded */
    if (r.mode == MODE_JOINT) {
        char *end;
        double v = strtod(ts, &end);
        double mult = !strcmp(end, "") ? 1 : !strcmp(end, "k") ? 1e3 : !strcmp(end, "M") ? 1e6 : !strcmp(end, "G") ? 1e9 : -1;
        if (!strcmp(end, "bpw")) { bpw = v; mult = 1; }
        if (end == ts || mult < 0 || !(v > 0)) return usage_error("--target-bytes '%s' must be a positive number of bytes (suffix k, M or G) or of bits per linear weight (suffix bpw, e.g. 3.5bpw)", ts);
        if (bpw && !(bpw < 16)) return usage_error("--target-bytes %s: the dense weights hold 16 bits each; give fewer", ts);
        targets[0] = v * mult; n_targets = 1;
        if (!strcmp(r.method, "uniform") || !strcmp(r.method, "owl") || !strcmp(r.method, "ecoflap") || !strcmp(r.method, "shortgpt"))
            return usage_error("--method %s has no rule for a joint budget of bytes; use evopress, nsga2 or random", r.method);
        if (o.compressor) return usage_error("--target-bytes uses sparsegpt and gptq levels together; --compressor does not apply");
    } else if ((rc = parse_list(tflag, ts, targets, 16, &n_targets))) return rc;
    for (int i = 0; i < n_targets; i++) {
        if (r.mode != MODE_BITS && r.mode != MODE_JOINT && !(targets[i] > 0 && targets[i] < 1)) return usage_error("%s %g must lie in (0, 1)", tflag, targets[i]);
        if (r.mode == MODE_BITS && !(targets[i] >= 2 && targets[i] <= 6)) return usage_error("--target-bits %g must lie in [2, 6], the bits the levels hold", targets[i]);
        if (i && targets[i] == targets[i - 1]) return usage_error("%s lists %g twice", tflag, targets[i]);
    }
    if (n_targets > 1 && strcmp(r.method, "evopress")) return usage_error("a list of targets is an EvoPress sweep; give --method evopress or one target");
    if (n_targets > 1 && g_mpi_size > 1) return usage_error("an EvoPress sweep runs one target per mpirun; give one target");
    r.target = targets[0];
    char default_out[256];
    if (!o.out) { /* the run directory defaults to run-<method>-<target kind>-<target> here */
        snprintf(default_out, sizeof default_out, "run-%s-%s-%s", r.method, mode_name[r.mode], ts);
        o.out = default_out;
    }
    if ((!strcmp(r.method, "owl") || !strcmp(r.method, "ecoflap")) && r.mode != MODE_SPARSITY)
        return usage_error("--method %s allocates sparsity; give --target-sparsity (or use evopress, random, uniform)", r.method);
    if (!strcmp(r.method, "shortgpt") && r.mode != MODE_DROP) return usage_error("--method shortgpt drops sub-blocks; give --target-drop");
    if (!strcmp(r.method, "uniform") && r.mode == MODE_DROP) return usage_error("--method uniform has no meaning for --target-drop; use shortgpt or random");
    if (!strcmp(r.method, "uniform") && r.mode == MODE_BITS && fabs(r.target - round(r.target)) > 1e-9)
        return usage_error("--target-bits %g: no uniform allocation has a fractional width; use --method random (best of N) or evopress", r.target);
    if (r.mode != MODE_DROP && r.mode != MODE_JOINT) {
        const char *cn = o.compressor ? o.compressor : r.mode == MODE_SPARSITY ? "sparsegpt" : "gptq";
        r.comp = evb_method_find(cn);
        if (!r.comp) return usage_error("--compressor '%s' is unknown (%s)", cn, evb_method_names());
        if ((r.comp->kind == EVB_LEVEL_SPARSE) != (r.mode == MODE_SPARSITY))
            return usage_error("--compressor %s does not make %s levels", cn, r.mode == MODE_SPARSITY ? "sparse" : "quantized");
    } else if (o.compressor && r.mode == MODE_DROP) return usage_error("--compressor does not apply to --target-drop");
    int metric = EVB_METRIC_KL;
    if (o.fitness && strcmp(o.fitness, "kl") && strcmp(o.fitness, "ppl")) return usage_error("--fitness '%s' must be kl or ppl", o.fitness);
    if (o.fitness && !strcmp(o.fitness, "ppl")) metric = EVB_METRIC_PPL;
    int tkind = -1, topk = 0;
    if (o.teacher) {
        if (!strcmp(o.teacher, "f32")) tkind = EVB_TEACHER_F32;
        else if (!strcmp(o.teacher, "f16")) tkind = EVB_TEACHER_F16;
        else if (sscanf(o.teacher, "topk:%d", &topk) == 1 && topk > 0) tkind = EVB_TEACHER_TOPK;
        else return usage_error("--teacher '%s' must be f32, f16 or topk:K", o.teacher);
    }
    evb_search_params sp_override = {0};
    if (o.stages && (rc = parse_stages(o.stages, &sp_override))) return rc;
    snprintf(r.out, sizeof r.out, "%s", o.out);
    char ck[1400];
    snprintf(ck, sizeof ck, "%s/checkpoint.msgpack", r.out);
    if (n_targets > 1) snprintf(ck, sizeof ck, "%s", r.out);
    if (g_mpi_rank == 0) { /* the run directory is rank 0's */
        if (o.resume && access(ck, R_OK)) return usage_error("--resume: %s has no checkpoint (%s)", r.out, ck);
        if (!o.resume) {
            snprintf(ck, sizeof ck, "%s/%s", r.out, n_targets > 1 ? "sweep.json" : "best.json");
            if (access(ck, F_OK) == 0) return usage_error("--out %s already holds a finished run; choose another directory or remove it", r.out);
        }
        if (mkdirs(r.out)) return fail(evb_errorf(__FILE__, __LINE__, EVB_EIO, "--out %s: %s", r.out, strerror(errno)));
        if ((rc = lock_out(r.out, o.resume, n_targets > 1 ? "sweep.json" : "best.json"))) return rc;
    }

    set_threads(&o);
    if ((rc = load_model(&o, 1, &r.l))) return rc;
    evb_model *m = r.l.m;
    char buf[1024];
    const char *calib = o.calib ? o.calib : default_asset("calib.txt", buf, sizeof buf);
    r.seq_len = o.seq_len ? (int)o.seq_len : (m->config.max_seq_len < 512 ? m->config.max_seq_len : 512);
    if (r.seq_len > m->config.max_seq_len) { rc = usage_error("--seq-len %d exceeds the model's context of %d", r.seq_len, m->config.max_seq_len); run_free(&r); return rc; }
    char *text = NULL;
    size_t len = 0, n_tok = 0;
    int32_t *tok = NULL;
    int s = evb_text_read(calib, &text, &len);
    if (!s) s = evb_text_tokenize(r.l.t, text, len, (size_t)o.piece_bytes, &tok, &n_tok);
    if (!s) s = evb_windows_sample(tok, n_tok, r.seq_len, evb_tokenizer_bos(r.l.t), (int)o.calib_windows, 0, &r.w);
    free(text); free(tok);
    if (s) { run_free(&r); return fail(s); }
    for (int i = 0; i < r.w.n; i++) r.calib_tokens += (size_t)r.w.len[i] - 1;
    o.batch = logits_batch((int)o.batch, r.seq_len, m, 1); /* per thread's forward state */
    evb_fingerprint_model(m, r.mfp);
    calib_fingerprint(m, &r.w, r.cfp);
    if (o.db) snprintf(r.dbdir, sizeof r.dbdir, "%s", o.db);
    else {
        const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
        char base[1000];
        if (o.cache) snprintf(base, sizeof base, "%s", o.cache);
        else if (xdg && xdg[0]) snprintf(base, sizeof base, "%s/evobudget", xdg);
        else snprintf(base, sizeof base, "%s/.cache/evobudget", home && home[0] ? home : ".");
        snprintf(r.dbdir, sizeof r.dbdir, "%s/%s-%s", base, r.mfp, r.cfp);
    }
    if (r.mode != MODE_DROP && g_mpi_rank == 0) { /* other ranks open it once rank 0 has built what is missing */
        if (mkdirs(r.dbdir)) { run_free(&r); return fail(evb_errorf(__FILE__, __LINE__, EVB_EIO, "database %s: %s", r.dbdir, strerror(errno))); }
        if ((s = evb_db_open(r.dbdir, r.mfp, r.cfp, 1, &r.db)) || (s = evb_db_check_model(r.db, m))) { run_free(&r); return fail(s); }
    }

    /* the fitness: the teacher and the cache of expanded levels */
    size_t V = (size_t)m->config.vocab_size;
    /* The full-vocabulary teacher while it stays within 1 GiB (a search's memory is the model plus about
     * 1 GiB), else the top 256 log-probabilities of each position and the mass of the rest. */
    if (tkind < 0) tkind = r.calib_tokens * V * 2 <= ((size_t)1 << 30) ? EVB_TEACHER_F16 : EVB_TEACHER_TOPK, topk = 256;
    if (metric == EVB_METRIC_KL && (s = evb_teacher_build(m, &r.w, (int)o.batch, tkind, topk, &r.teacher))) { run_free(&r); return fail(s); }
    if (r.db && (s = evb_level_cache_alloc_as(r.db, level_cache_bytes(m), m->compute == EVB_COMPUTE_BF16, &r.cache))) { run_free(&r); return fail(s); }
    size_t reuse = o.no_reuse ? 0 : (o.reuse_mb ? (size_t)o.reuse_mb << 20 : (size_t)256 << 20);
    double *prev = NULL;        /* a sweep: the last target's best, per unit (removed weights, bits, dropped) */
    json_t *sweep = json_array();
    char base_out[1000];
    snprintf(base_out, sizeof base_out, "%.900s", r.out);
    for (int ti = 0; ti < n_targets && !rc; ti++) {
    r.target = targets[ti];
    if (n_targets > 1) {
        snprintf(r.out, sizeof r.out, "%s/%s-%g", base_out, mode_name[r.mode], r.target);
        if (mkdirs(r.out)) { rc = fail(evb_errorf(__FILE__, __LINE__, EVB_EIO, "--out %s: %s", r.out, strerror(errno))); break; }
    }
    problem_free(&r);
    if (r.mode == MODE_JOINT && bpw) {
        double n_lin = 0;
        for (int u = 0; u < evb_model_n_units(m); u++) { int rows, cols; evb_model_unit_shape(m, u, &rows, &cols); n_lin += (double)rows * cols; }
        r.target = bpw * n_lin / 8;
    }
    if (g_mpi_rank == 0)
        rc = r.mode == MODE_SPARSITY ? problem_sparsity(&r) : r.mode == MODE_BITS ? problem_bits(&r) : r.mode == MODE_DROP ? problem_drop(&r) : problem_joint(&r);
#ifdef EVB_MPI
    if (g_mpi_size > 1) {
        MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
        if (g_mpi_rank > 0) { /* rank 0 has its problem and its levels: the same problem here, then serve */
            if (rc) break;
            if (r.mode != MODE_DROP && ((s = evb_db_open(r.dbdir, r.mfp, r.cfp, 0, &r.db)) || (s = evb_db_check_model(r.db, m)))) { rc = fail(s); break; }
            if (r.db && (s = evb_level_cache_alloc_as(r.db, level_cache_bytes(m), m->compute == EVB_COMPUTE_BF16, &r.cache))) { rc = fail(s); break; }
            rc = r.mode == MODE_SPARSITY ? problem_sparsity(&r) : r.mode == MODE_BITS ? problem_bits(&r) : r.mode == MODE_DROP ? problem_drop(&r) : problem_joint(&r);
            if (rc) break;
            r.kp = (evb_kl_params){m, &r.w, r.teacher, r.cache, r.U, r.fu, metric, (int)o.batch, reuse};
            evb_search_params sp = search_params(&r);
            if (o.stages) {
                sp.n_stages = sp_override.n_stages;
                for (int j = 0; j < sp.n_stages; j++) { sp.n_survivors[j] = sp_override.n_survivors[j]; sp.n_tokens[j] = sp_override.n_tokens[j]; }
            }
            rc = mpi_worker(&r, &sp);
            break;
        }
    }
#endif
    if (rc) break;
    if (prev) fprintf(stderr, "%s: %s %g starts from %s\n", cmd_name, mode_name[r.mode], r.target,
                      warm_start(&r, prev) ? "the previous target's best" : "the uniform allocation (the previous best does not map onto its budget)");
    r.kp = (evb_kl_params){m, &r.w, r.teacher, r.cache, r.U, r.fu, metric, (int)o.batch, reuse};
    char done_path[1400];
    snprintf(done_path, sizeof done_path, "%s/best.json", r.out);
    if (n_targets > 1 && o.resume && access(done_path, F_OK) == 0) {
        /* a finished target of the sweep: its best is the next one's start */
        json_error_t je;
        json_t *b = json_load_file(done_path, 0, &je);
        int16_t *lv = calloc(r.U, sizeof(int16_t));
        if (!b || !lv || best_levels(&r, b, lv)) { json_decref(b); free(lv); rc = usage_error("--resume: %s is not a best.json of this sweep", done_path); break; }
        free(prev);
        prev = unit_values(&r, lv);
        json_array_append_new(sweep, json_pack("{s:f, s:s, s:O, s:O}", "target", r.target, "best", done_path, "cost", json_object_get(b, "cost"), "fitness_all", json_object_get(b, "fitness_all")));
        json_decref(b); free(lv);
        continue;
    }

    int is_search = strcmp(r.method, "owl") && strcmp(r.method, "ecoflap") && strcmp(r.method, "shortgpt");
    evb_search_params sp = search_params(&r);
    if (o.stages) {
        sp.n_stages = sp_override.n_stages;
        for (int j = 0; j < sp.n_stages; j++) { sp.n_survivors[j] = sp_override.n_survivors[j]; sp.n_tokens[j] = sp_override.n_tokens[j]; }
    }
    json_t *man = manifest(&r, is_search ? &sp : NULL);
    if ((rc = write_json(r.out, "manifest.json", man))) { json_decref(man); run_free(&r); return rc; }
    json_decref(man);

    char lp[1400];
    snprintf(lp, sizeof lp, "%s/log.jsonl", r.out);
    FILE *log = fopen(lp, o.resume ? "a" : "w");
    if (!log) { run_free(&r); return fail(evb_errorf(__FILE__, __LINE__, EVB_EIO, "%s: %s", lp, strerror(errno))); }
    json_t *best = NULL;
    evb_front_point *front = NULL, one;
    int16_t *front_levels = NULL;
    int n_front = 0;
    double t0 = now_s(), search_s = 0;
    evb_search_info info = {0};
    if (is_search) rc = run_search(&r, &sp, &best, &n_front, &front, &front_levels, log, &search_s, &info);
    else if (r.mode == MODE_DROP) {
        int16_t *lv = calloc(r.U, sizeof(int16_t));
        double fit = 0;
        rc = shortgpt_candidate(&r, lv);
        if (!rc && (s = score_levels(&r, lv, &fit))) rc = fail(s);
        if (!rc) {
            best = config_json(&r, lv, fit);
            front = malloc(sizeof *front); front_levels = lv; lv = NULL;
            front[0].cost = r.budget; front[0].fitness = fit; n_front = 1;
        }
        free(lv);
    } else {
        rc = run_rule(&r, &best, &one, log);
        if (!rc) { front = malloc(sizeof *front); front[0] = one; n_front = 0; }
    }
    fclose(log);
    if (!rc && is_search) rc = write_front(&r, front, front_levels, n_front);
    else if (!rc && n_front == 1) rc = write_front(&r, front, front_levels, 1);
    else if (!rc) {
        char line[256];
        snprintf(line, sizeof line, "id,cost,cost_fraction,fitness,heldout,levels\n0,%.17g,%.9g,%.17g,,\n", front[0].cost, front[0].cost / r.total_size, front[0].fitness);
        rc = write_file(r.out, "front.csv", line);
    }
    if (!rc && !is_search) /* OWL, ECoFLaP and ShortGPT scored their pick on all calibration tokens */
        json_object_set_new(best, "fitness_all", json_real(json_number_value(json_object_get(best, "fitness"))));
    else if (!rc) {
        /* the best scored on all calibration tokens: what a search measured on its last minibatch, or
         * uniform and random on their batch, is then comparable across methods and targets */
        int16_t *lv = calloc(r.U, sizeof(int16_t));
        double fa = 0;
        rc = lv ? best_levels(&r, best, lv) : 1;
        if (!rc) { int s2 = score_levels(&r, lv, &fa); if (s2) rc = fail(s2); }
        if (!rc) {
            json_object_set_new(best, "fitness_all", json_real(fa));
            free(prev);
            prev = unit_values(&r, lv);
        }
        free(lv);
    }
    if (!rc) rc = write_json(r.out, "best.json", best);
    if (!rc && n_targets > 1) {
        char bp[1400];
        snprintf(bp, sizeof bp, "%s/best.json", r.out);
        json_array_append_new(sweep, json_pack("{s:f, s:s, s:O, s:O}", "target", r.target, "best", bp, "cost", json_object_get(best, "cost"), "fitness_all", json_object_get(best, "fitness_all")));
        fprintf(stderr, "%s: sweep %d/%d: %s %g done, KL on all calibration tokens %.6g\n", cmd_name, ti + 1, n_targets, mode_name[r.mode], r.target,
                json_real_value(json_object_get(best, "fitness_all")));
    } else if (!rc) rc = print_summary(&r, best, n_front, is_search ? &info : NULL, search_s, t0, o.json);
    json_decref(best);
    free(front); free(front_levels);
    }
    if (!rc && n_targets > 1) rc = write_sweep(&r, base_out, sweep, o.json);
    json_decref(sweep);
    free(prev);
    run_free(&r);
    return rc;
}
