/* build.c -- building a level database: the table of methods and the parallel loop over (unit, level).
 *
 * Each task copies the unit's dense weight, compresses it with the method (single-threaded), measures the
 * relative reconstruction error on the calibration statistics and stores the level. Tasks run in one
 * OpenMP loop, each thread with its own buffers; every task's status goes to status[t] and the first error
 * wins after the loop. Compressors are deterministic, so the database does not depend on the thread count.
 * To add a method: implement it in compressors/<name>.c (evb_compress.h) and add a row to methods[] and a
 * case to compress_one. */
#include "evobudget/evb_calib.h"
#include "evobudget/evb_db.h"
#include "evobudget/evb_status.h"
#include "evobudget/evobudget.h"
#include "models/blas.h"

#include <gsl/gsl_errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The library's start-up lives here because it touches both BLAS (models/blas.c) and GSL, whose default
 * error handler would abort the process where the compressors expect a status code. */
void evb_init(void) {
    evb_blas_init();
    gsl_set_error_handler_off();
}

static const evb_method methods[] = {
    {"magnitude", EVB_LEVEL_SPARSE, 0},
    {"wanda", EVB_LEVEL_SPARSE, 1},
    {"sparsegpt", EVB_LEVEL_SPARSE, 1},
    {"rtn", EVB_LEVEL_QUANT, 0},
    {"gptq", EVB_LEVEL_QUANT, 1},
};

const evb_method *evb_method_find(const char *name) {
    for (size_t i = 0; i < sizeof methods / sizeof *methods; i++)
        if (strcmp(methods[i].name, name) == 0) return &methods[i];
    return NULL;
}

const char *evb_method_names(void) { return "magnitude, wanda, sparsegpt, rtn, gptq"; }

/* One level of one unit: the identity of the entry (meta) and its compression. */
static int compress_one(evb_db *db, const evb_model *m, const evb_calib *c, const evb_method *method,
                        const evb_level_grid *g, int unit, int level, float *W, uint8_t *codes, float *scale,
                        float *zero, int32_t *group_of) {
    int rows, cols;
    evb_model_unit_shape(m, unit, &rows, &cols);
    const float *dense = m->layers[unit / EVB_LINEAR_COUNT].w_dense[unit % EVB_LINEAR_COUNT];
    const evb_layer_stats *st = evb_calib_unit(c, unit);
    memcpy(W, dense, sizeof(float) * rows * cols);
    evb_db_entry meta = {0};
    meta.unit = unit; meta.kind = method->kind; meta.rows = rows; meta.cols = cols;
    snprintf(meta.method, sizeof meta.method, "%s", method->name);
    int s;
    if (method->kind == EVB_LEVEL_SPARSE) {
        evb_sparsity sp = {g->n_keep ? 0.0 : g->sparsities[level], g->n_keep, g->m};
        meta.sparsity = sp.sparsity; meta.n_keep = sp.n_keep; meta.m = sp.m;
        if (strcmp(method->name, "magnitude") == 0) s = evb_prune_magnitude(W, rows, cols, sp);
        else if (strcmp(method->name, "wanda") == 0) s = evb_prune_wanda(W, rows, cols, st, sp);
        else s = evb_prune_sparsegpt(W, rows, cols, st, sp, 0.01, 128);
        if (s) return s;
        return evb_db_put_sparse(db, &meta, W, evb_recon_error(dense, W, rows, cols, st));
    }
    evb_quant_params q = {g->bits[level], g->group_size, g->sym, g->act_order, 0.01, 128};
    meta.bits = q.bits; meta.group_size = q.group_size; meta.sym = q.sym;
    evb_quant_out out = {codes, scale, zero, group_of};
    s = strcmp(method->name, "rtn") == 0 ? evb_quant_rtn(W, rows, cols, &q, &out)
                                         : evb_quant_gptq(W, rows, cols, st, &q, &out);
    if (s) return s;
    return evb_db_put_quant(db, &meta, &out, evb_quant_n_groups(cols, &q), evb_recon_error(dense, W, rows, cols, st));
}

int evb_db_build(evb_db *db, const evb_model *m, const evb_calib *c, const evb_method *method,
                 const evb_level_grid *g, int *n_built, int *n_present,
                 void (*progress)(void *ctx, int done, int total), void *progress_ctx) {
    *n_built = *n_present = 0;
    int n_levels = method->kind == EVB_LEVEL_SPARSE ? (g->n_keep ? 1 : g->n_sparsities) : g->n_bits;
    if (n_levels < 1) EVB_ERRORF(EVB_EINVAL, "method %s: no levels asked for (--sparsity, --nm or --bits)", method->name);
    int U = evb_model_n_units(m), n_tasks = U * n_levels;
    /* Which tasks are missing: decided before the parallel loop. */
    int *todo = malloc(sizeof(int) * n_tasks), *status = calloc((size_t)n_tasks, sizeof(int));
    if (!todo || !status) { free(todo); free(status); EVB_ERROR("out of memory", EVB_ENOMEM); }
    int n_todo = 0;
    for (int t = 0; t < n_tasks; t++) {
        int unit = t / n_levels, level = t % n_levels;
        evb_db_entry key = {0};
        key.unit = unit; key.kind = method->kind;
        snprintf(key.method, sizeof key.method, "%s", method->name);
        if (method->kind == EVB_LEVEL_SPARSE) { key.sparsity = g->n_keep ? 0.0 : g->sparsities[level]; key.n_keep = g->n_keep; key.m = g->m; }
        else { key.bits = g->bits[level]; key.group_size = g->group_size; key.sym = g->sym; }
        if (evb_db_find(db, &key) >= 0) (*n_present)++;
        else todo[n_todo++] = t;
    }
    size_t max_w = 0;
    int max_cols = 0;
    for (int u = 0; u < EVB_LINEAR_COUNT; u++) {
        int r, cc;
        evb_model_unit_shape(m, u, &r, &cc);
        if ((size_t)r * cc > max_w) max_w = (size_t)r * cc;
        if (cc > max_cols) max_cols = cc;
    }
    int done = 0, first_err = n_todo;
    char first_msg[1024] = "";
    #pragma omp parallel
    {
        /* Per-thread buffers, sized for the largest unit. */
        float *W = malloc(sizeof(float) * max_w), *scale = malloc(sizeof(float) * max_w), *zero = malloc(sizeof(float) * max_w);
        uint8_t *codes = malloc(max_w);
        int32_t *group_of = malloc(sizeof(int32_t) * max_cols);
        int ok = W && scale && zero && codes && group_of;
        #pragma omp for schedule(dynamic)
        for (int i = 0; i < n_todo; i++) {
            int t = todo[i];
            status[i] = ok ? compress_one(db, m, c, method, g, t / n_levels, t % n_levels, W, codes, scale, zero, group_of)
                           : EVB_RAISEF(EVB_ENOMEM, "out of memory building levels");
            #pragma omp critical(evb_db_build_progress)
            {
                /* Error messages are per thread: keep the one of the first failing task. */
                if (status[i] && i < first_err) { first_err = i; snprintf(first_msg, sizeof first_msg, "%s", evb_last_error()); }
                done++;
                if (progress) progress(progress_ctx, done, n_todo);
            }
        }
        free(W); free(scale); free(zero); free(codes); free(group_of);
    }
    int st = first_err < n_todo ? status[first_err] : EVB_SUCCESS;
    *n_built = n_todo;
    free(todo); free(status);
    if (st) EVB_ERRORF(st, "%s", first_msg);
    return EVB_SUCCESS;
}
