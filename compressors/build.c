/* build.c -- building a level database: the table of methods and the parallel loop over (unit, level).
 *
 * Each task copies the unit's dense weight, compresses it with the method (single-threaded), measures the
 * relative reconstruction error on the calibration statistics and stores the level (sparse levels in the
 * checkpoint's dtype: the model's, not its compute path's, so one database serves both). Tasks run in one
 * OpenMP loop, each thread with its own buffers; every task's status goes to status[t] and the first error
 * wins after the loop. Compressors are deterministic, so the database does not depend on the thread count.
 * To add a method: implement it in compressors/<name>.c (evb_compress.h) and add a row to methods[] with its
 * operation (a pruning or a quantization of one weight matrix). */
#include "evobudget/evb_calib.h"
#include "evobudget/evb_compress.h"
#include "evobudget/evb_db.h"
#include "evobudget/evb_gguf.h"
#include "evobudget/evb_status.h"
#include "evobudget/evobudget.h"
#include "compressors/db_impl.h"
#include "models/blas.h"

#include <gsl/gsl_errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The library's start-up lives here because it touches both BLAS (models/blas.c) and GSL, whose default
 * error handler would abort the process where the compressors expect a status code. */
void evb_init(void) {
    evb_blas_init();
    gsl_set_error_handler_off();
}

/* A method's operation on one weight matrix: a pruning (sparse levels), a quantization (quantized ones) or a
 * quantization into a GGUF type's blocks (GGUF levels; W becomes the dequantized weight, dst the blocks). */
struct evb_method_ops {
    int (*prune)(float *W, int rows, int cols, const evb_layer_stats *st, evb_sparsity sp);
    int (*quant)(float *W, int rows, int cols, const evb_layer_stats *st, const evb_quant_params *q, evb_quant_out *out);
    int (*gguf)(float *W, int rows, int cols, const evb_layer_stats *st, int type, void *dst);
};

static int prune_magnitude(float *W, int rows, int cols, const evb_layer_stats *st, evb_sparsity sp) {
    (void)st;
    return evb_prune_magnitude(W, rows, cols, sp);
}
static int prune_sparsegpt(float *W, int rows, int cols, const evb_layer_stats *st, evb_sparsity sp) {
    return evb_prune_sparsegpt(W, rows, cols, st, sp, 0.01, 128);   /* SparseGPT's damping and block size */
}
static int quant_rtn(float *W, int rows, int cols, const evb_layer_stats *st, const evb_quant_params *q, evb_quant_out *out) {
    (void)st;
    return evb_quant_rtn(W, rows, cols, q, out);
}
/* llama.cpp's own rounding: the blocks, then W as llama.cpp reads them back. */
static int gguf_rtn(float *W, int rows, int cols, const evb_layer_stats *st, int type, void *dst) {
    (void)st;
    int s = evb_gguf_quantize(type, W, rows, cols, dst);
    return s ? s : evb_gguf_dequantize(type, dst, rows, cols, W);
}
static int gguf_gptq(float *W, int rows, int cols, const evb_layer_stats *st, int type, void *dst) {
    return evb_gguf_gptq(type, W, rows, cols, st, 0.01, 128, dst);  /* GPTQ's damping and block size */
}
static const struct evb_method_ops op_magnitude = {prune_magnitude, NULL, NULL}, op_wanda = {evb_prune_wanda, NULL, NULL},
                                    op_sparsegpt = {prune_sparsegpt, NULL, NULL}, op_rtn = {NULL, quant_rtn, NULL},
                                    op_gptq = {NULL, evb_quant_gptq, NULL}, op_gguf_rtn = {NULL, NULL, gguf_rtn},
                                    op_gguf = {NULL, NULL, gguf_gptq};

static const evb_method methods[] = {
    {"magnitude", EVB_LEVEL_SPARSE, 0, &op_magnitude},
    {"wanda", EVB_LEVEL_SPARSE, 1, &op_wanda},
    {"sparsegpt", EVB_LEVEL_SPARSE, 1, &op_sparsegpt},
    {"rtn", EVB_LEVEL_QUANT, 0, &op_rtn},
    {"gptq", EVB_LEVEL_QUANT, 1, &op_gptq},
    {"gguf", EVB_LEVEL_GGUF, 1, &op_gguf},
    {"gguf-rtn", EVB_LEVEL_GGUF, 0, &op_gguf_rtn},
    {"flap", EVB_LEVEL_STRUCT, 1, NULL},   /* structured levels,
            made by the speed problems (problems/speed.c) */
    {"obs", EVB_LEVEL_STRUCT, 1, NULL},
};

const evb_method *evb_method_find(const char *name) {
    for (size_t i = 0; i < sizeof methods / sizeof *methods; i++)
        if (strcmp(methods[i].name, name) == 0) return &methods[i];
    return NULL;
}

const char *evb_method_names(void) { return "magnitude, wanda, sparsegpt, rtn, gptq, gguf, gguf-rtn, flap, obs"; }

int64_t evb_step_weights_default(const evb_model *m, double s, int num_levels) {
    double lo = s < 1 - s ? s : 1 - s, d = (double)m->config.dim;
    int64_t wd = (int64_t)(0.5 * lo / (num_levels > 0 ? num_levels : 1) * d * d);
    return wd > 0 ? wd : 1;
}

int64_t evb_step_range(int64_t n, double s, int64_t wd, int num_levels, int *lo, int *hi) {
    int64_t base = (int64_t)llround(s * (double)n);
    int64_t down = base / wd, up = (n - base) / wd;
    *lo = (int)(down < num_levels ? down : num_levels);
    *hi = (int)(up < num_levels ? up : num_levels);
    return base;
}

/* The identities of every level the grid asks of one unit (at most max); returns how many. */
static int unit_keys(const evb_model *m, const evb_method *method, const evb_level_grid *g, int unit,
                     evb_db_entry *keys, int max) {
    int rows, cols, n = 0;
    evb_model_unit_shape(m, unit, &rows, &cols);
    evb_db_entry k = {0};
    k.unit = unit; k.kind = method->kind; k.rows = rows; k.cols = cols;
    snprintf(k.method, sizeof k.method, "%s", method->name);
    if (method->kind == EVB_LEVEL_QUANT) {
        k.group_size = g->group_size; k.sym = g->sym;
        for (int i = 0; i < g->n_bits && n < max; i++) { k.bits = g->bits[i]; keys[n++] = k; }
    } else if (method->kind == EVB_LEVEL_GGUF) {
        for (int i = 0; i < g->n_gguf_types && n < max; i++)
            if (evb_gguf_row_ok(g->gguf_types[i], cols)) { k.gguf_type = g->gguf_types[i]; keys[n++] = k; }
    } else if (g->n_keep) {
        k.n_keep = g->n_keep; k.m = g->m;
        if (n < max) keys[n++] = k;
    } else if (g->step_levels > 0) {
        int64_t N = (int64_t)rows * cols;
        int lo, hi;
        int64_t base = evb_step_range(N, g->step_target, g->step_weights, g->step_levels, &lo, &hi);
        for (int l = -lo; l <= hi && n < max; l++) {
            k.n_removed = base + (int64_t)l * g->step_weights;
            k.sparsity = (double)k.n_removed / (double)N;
            if (k.n_removed > 0) keys[n++] = k; /* level "nothing removed" is the dense weight: no entry */
        }
    } else
        for (int i = 0; i < g->n_sparsities && n < max; i++) { k.sparsity = g->sparsities[i]; keys[n++] = k; }
    return n;
}

/* One level of one unit, compressed from the dense weight with the statistics c. dense_buf holds the dense
 * weight in float32 for a BF16 model (a float32 model's is used where it lies). */
static int compress_one(evb_db *db, const evb_model *m, const evb_calib *c, const evb_method *method,
                        const evb_level_grid *g, evb_db_entry meta, float *W, float *dense_buf, uint8_t *codes,
                        float *scale, float *zero, int32_t *group_of, void *blocks, double den) {
    int unit = meta.unit, rows = meta.rows, cols = meta.cols;
    if (!method->ops) EVB_ERRORF(EVB_EINVAL, "method %s does not compress one weight", method->name);
    const evb_layer_stats *st = evb_calib_unit(c, unit);
    const float *dense = m->layers[unit / EVB_LINEAR_COUNT].w_dense[unit % EVB_LINEAR_COUNT];
    if (!dense) { evb_model_dense_f32(m, unit, dense_buf); dense = dense_buf; }
    memcpy(W, dense, sizeof(float) * rows * cols);
    int s;
    if (method->kind == EVB_LEVEL_SPARSE) {
        evb_sparsity sp = {meta.n_removed || meta.n_keep ? 0.0 : meta.sparsity, meta.n_keep, meta.m, meta.n_removed};
        if ((s = method->ops->prune(W, rows, cols, st, sp))) return s;
        /* Kept values in the checkpoint's dtype (its own values are exact in it; SparseGPT's updated ones
         * are rounded), the error measured on the level as stored. */
        meta.dtype = evb_db_round_sparse_(evb_db_dtype_of(m->config.dtype), W, (size_t)rows * cols);
        return evb_db_put_sparse(db, &meta, W, evb_recon_error_den(dense, W, rows, cols, st, den));
    }
    if (method->kind == EVB_LEVEL_GGUF) {
        if ((s = method->ops->gguf(W, rows, cols, st, meta.gguf_type, blocks))) return s;
        return evb_db_put_gguf(db, &meta, blocks, evb_recon_error_den(dense, W, rows, cols, st, den));
    }
    evb_quant_params q = {meta.bits, g->group_size, g->sym, g->act_order, 0.01, 128};
    evb_quant_out out = {codes, scale, zero, group_of};
    if ((s = method->ops->quant(W, rows, cols, st, &q, &out))) return s;
    return evb_db_put_quant(db, &meta, &out, evb_quant_n_groups(cols, &q), evb_recon_error_den(dense, W, rows, cols, st, den));
}

#define MAX_UNIT_LEVELS 128

/* 1 when the database holds the level key and its payload is intact; a damaged or missing payload counts as
 * absent, so that it is rebuilt. */
static int level_sound(const evb_db *db, const evb_db_entry *key) {
    int i = evb_db_find(db, key);
    if (i < 0) return 0;
    if (evb_db_verify(db, i) == EVB_SUCCESS) return 1;
    evb_clear_error();
    return 0;
}

/* The missing levels of units [u0, u1): their identities, allocated into *todo. */
static int missing_keys(const evb_db *db, const evb_model *m, const evb_method *method, const evb_level_grid *g,
                        int u0, int u1, evb_db_entry **todo, int *n_todo, int *n_present) {
    *todo = malloc(sizeof(evb_db_entry) * (size_t)(u1 - u0) * MAX_UNIT_LEVELS);
    if (!*todo) EVB_ERROR("out of memory", EVB_ENOMEM);
    *n_todo = 0;
    evb_db_entry keys[MAX_UNIT_LEVELS];
    for (int u = u0; u < u1; u++) {
        int n = unit_keys(m, method, g, u, keys, MAX_UNIT_LEVELS);
        for (int i = 0; i < n; i++) {
            if (level_sound(db, &keys[i])) (*n_present)++;
            else (*todo)[(*n_todo)++] = keys[i];
        }
    }
    return EVB_SUCCESS;
}

typedef struct build_progress {
    void (*fn)(void *ctx, int done, int total);
    void *ctx;
    int done, total;
} build_progress;

/* Compresses the levels todo[n] in one OpenMP loop, each thread with its own buffers; the first failing
 * task's error wins after the loop. */
static int build_levels(evb_db *db, const evb_model *m, const evb_calib *c, const evb_method *method,
                        const evb_level_grid *g, const evb_db_entry *todo, int n, build_progress *bp) {
    size_t max_w = 0;
    int max_cols = 0;
    for (int u = 0; u < EVB_LINEAR_COUNT; u++) {
        int r, cc;
        evb_model_unit_shape(m, u, &r, &cc);
        if ((size_t)r * cc > max_w) max_w = (size_t)r * cc;
        if (cc > max_cols) max_cols = cc;
    }
    int *status = calloc((size_t)n + 1, sizeof(int));
    /* The error's denominator tr(W G W^T), once per unit that has levels to build, in parallel over units. */
    int n_units = evb_model_n_units(m), *units = malloc(sizeof(int) * (size_t)(n_units + 1)), n_du = 0;
    double *den = malloc(sizeof(double) * (size_t)(n_units + 1));
    if (!status || !units || !den) { free(status); free(units); free(den); EVB_ERROR("out of memory", EVB_ENOMEM); }
    for (int u = 0; u < n_units; u++) den[u] = NAN; /* 0 below: listed, to compute */
    for (int i = 0; i < n; i++)
        if (den[todo[i].unit] != 0) { den[todo[i].unit] = 0; units[n_du++] = todo[i].unit; }
    #pragma omp parallel
    {
        float *buf = m->compute == EVB_COMPUTE_BF16 ? malloc(sizeof(float) * max_w) : NULL;
        #pragma omp for schedule(dynamic)
        for (int i = 0; i < n_du; i++) {
            int u = units[i], r, cc;
            evb_model_unit_shape(m, u, &r, &cc);
            const float *w = m->layers[u / EVB_LINEAR_COUNT].w_dense[u % EVB_LINEAR_COUNT];
            if (!w && buf) { evb_model_dense_f32(m, u, buf); w = buf; }
            den[u] = w ? evb_recon_weight(w, r, cc, evb_calib_unit(c, u)) : NAN;
        }
        free(buf);
    }
    free(units);
    int first_err = n;
    char first_msg[1024] = "";
    #pragma omp parallel
    {
        /* Per-thread buffers, sized for the largest unit. */
        float *W = malloc(sizeof(float) * max_w), *scale = malloc(sizeof(float) * max_w), *zero = malloc(sizeof(float) * max_w);
        float *dense = m->compute == EVB_COMPUTE_BF16 ? malloc(sizeof(float) * max_w) : NULL;
        uint8_t *codes = malloc(max_w);
        int32_t *group_of = malloc(sizeof(int32_t) * max_cols);
        void *blocks = method->kind == EVB_LEVEL_GGUF ? malloc(2 * max_w) : NULL; /* every block type: under 2 bytes a weight */
        int ok = W && scale && zero && codes && group_of && (dense || m->compute != EVB_COMPUTE_BF16) &&
                 (blocks || method->kind != EVB_LEVEL_GGUF);
        #pragma omp for schedule(dynamic)
        for (int i = 0; i < n; i++) {
            status[i] = ok ? compress_one(db, m, c, method, g, todo[i], W, dense, codes, scale, zero, group_of, blocks,
                                            den[todo[i].unit])
                           : EVB_RAISEF(EVB_ENOMEM, "out of memory building levels");
            #pragma omp critical(evb_db_build_progress)
            {
                /* Error messages are per thread: keep the one of the first failing task. */
                if (status[i] && i < first_err) { first_err = i; snprintf(first_msg, sizeof first_msg, "%s", evb_last_error()); }
                bp->done++;
                if (bp->fn) bp->fn(bp->ctx, bp->done, bp->total);
            }
        }
        free(W); free(dense); free(scale); free(zero); free(codes); free(group_of); free(blocks);
    }
    int st = first_err < n ? status[first_err] : EVB_SUCCESS;
    free(status); free(den);
    if (st) EVB_ERRORF(st, "%s", first_msg);
    return EVB_SUCCESS;
}

static int check_grid(const evb_method *method, const evb_level_grid *g) {
    if (method->kind == EVB_LEVEL_STRUCT)
        EVB_ERRORF(EVB_EINVAL,
                   "method %s: structured levels are made by `search --target-speedup` (not db build)",
                   method->name);
    int n_levels = method->kind == EVB_LEVEL_SPARSE ? (g->n_keep || g->step_levels > 0 ? 1 : g->n_sparsities)
                 : method->kind == EVB_LEVEL_GGUF ? g->n_gguf_types : g->n_bits;
    if (n_levels < 1) EVB_ERRORF(EVB_EINVAL, "method %s: no levels asked for (--sparsity, --steps, --nm, --bits or --types)", method->name);
    for (int i = 0; method->kind == EVB_LEVEL_GGUF && i < g->n_gguf_types; i++) {
        const evb_gguf_type_info *t = evb_gguf_type_get(g->gguf_types[i]);
        if (!t || t->block < 2) EVB_ERRORF(EVB_EINVAL, "method %s: GGUF type %d is not a block type", method->name, g->gguf_types[i]);
    }
    if (g->step_levels > 0 && (g->step_weights < 1 || !(g->step_target > 0 && g->step_target < 1)))
        EVB_ERRORF(EVB_EINVAL, "step grid: target %g must lie in (0, 1) and the step (%lld weights) be positive",
                   g->step_target, (long long)g->step_weights);
    return EVB_SUCCESS;
}

int evb_db_build(evb_db *db, const evb_model *m, const evb_calib *c, const evb_method *method,
                 const evb_level_grid *g, int *n_built, int *n_present,
                 void (*progress)(void *ctx, int done, int total), void *progress_ctx) {
    *n_built = *n_present = 0;
    int st = check_grid(method, g);
    if (!st) st = evb_db_check_model(db, m);
    /* Under the writer lock from the first look at what is missing to the last level stored: another
     * process's levels are then known (the lock rereads the index) and never computed twice. */
    if (!st) st = evb_db_write_begin(db);
    if (st) return st;
    evb_db_entry *todo;
    int n_todo;
    st = missing_keys(db, m, method, g, 0, evb_model_n_units(m), &todo, &n_todo, n_present);
    if (!st) {
        build_progress bp = {progress, progress_ctx, 0, n_todo};
        st = build_levels(db, m, c, method, g, todo, n_todo, &bp);
        free(todo);
        if (!st) *n_built = n_todo;
    }
    evb_db_write_end(db);
    return st;
}

int evb_db_build_entries(evb_db *db, const evb_model *m, const evb_calib *c, const evb_method *method,
                         const evb_level_grid *g, const evb_db_entry *keys, int n, int *n_built) {
    *n_built = 0;
    int st = evb_db_check_model(db, m);
    if (!st) st = evb_db_write_begin(db);
    if (st) return st;
    evb_db_entry *todo = malloc(sizeof(evb_db_entry) * (n > 0 ? n : 1));
    if (!todo) { evb_db_write_end(db); EVB_ERROR("out of memory", EVB_ENOMEM); }
    int n_todo = 0;
    for (int i = 0; i < n; i++) {
        evb_db_entry k = keys[i];
        if (k.unit < 0 || k.unit >= evb_model_n_units(m)) { free(todo); evb_db_write_end(db); EVB_ERRORF(EVB_EINVAL, "no unit %d", k.unit); }
        evb_model_unit_shape(m, k.unit, &k.rows, &k.cols);
        k.kind = method->kind;
        snprintf(k.method, sizeof k.method, "%s", method->name);
        if (k.kind == EVB_LEVEL_QUANT) { k.group_size = g->group_size; k.sym = g->sym; }
        if (k.kind == EVB_LEVEL_GGUF && !evb_gguf_row_ok(k.gguf_type, k.cols)) {
            const evb_gguf_type_info *t = evb_gguf_type_get(k.gguf_type);
            free(todo); evb_db_write_end(db);
            EVB_ERRORF(EVB_EINVAL, "unit %d: GGUF type %s cannot hold rows of %d inputs", k.unit, t ? t->name : "?", k.cols);
        }
        int dup = 0;
        for (int j = 0; j < n_todo && !dup; j++) dup = todo[j].unit == k.unit && todo[j].sparsity == k.sparsity &&
                                                       todo[j].n_removed == k.n_removed && todo[j].bits == k.bits &&
                                                       todo[j].gguf_type == k.gguf_type;
        if (!dup && !level_sound(db, &k)) todo[n_todo++] = k;
    }
    build_progress bp = {NULL, NULL, 0, n_todo};
    st = build_levels(db, m, c, method, g, todo, n_todo, &bp);
    free(todo);
    evb_db_write_end(db);
    if (!st) *n_built = n_todo;
    return st;
}

/* The entry of unit's level that the sequential protocol passes on: the level whose sparsity (or bits) is
 * nearest calib_value. */
static int calib_entry(const evb_db *db, const evb_model *m, const evb_method *method, const evb_level_grid *g,
                       int unit, double calib_value) {
    evb_db_entry keys[MAX_UNIT_LEVELS];
    int n = unit_keys(m, method, g, unit, keys, MAX_UNIT_LEVELS), best = -1;
    double dbest = INFINITY;
    for (int i = 0; i < n; i++) {
        double v = method->kind == EVB_LEVEL_QUANT ? keys[i].bits : method->kind == EVB_LEVEL_GGUF ? evb_gguf_bpw(keys[i].gguf_type)
                 : keys[i].sparsity, d = fabs(v - calib_value);
        if (d < dbest) { dbest = d; best = i; }
    }
    return best < 0 ? -1 : evb_db_find(db, &keys[best]);
}

static int build_sequential(evb_db *db, evb_model *m, const evb_windows *w, int batch, const evb_method *method,
                            const evb_level_grid *g, double calib_value, int *n_built, int *n_present,
                            void (*progress)(void *ctx, int done, int total), void *progress_ctx);

/* Under the writer lock throughout (see evb_db_build). */
int evb_db_build_sequential(evb_db *db, evb_model *m, const evb_windows *w, int batch, const evb_method *method,
                            const evb_level_grid *g, double calib_value, int *n_built, int *n_present,
                            void (*progress)(void *ctx, int done, int total), void *progress_ctx) {
    *n_built = *n_present = 0;
    int st = check_grid(method, g);
    if (!st) st = evb_db_check_model(db, m);
    if (!st) st = evb_db_write_begin(db);
    if (st) return st;
    st = build_sequential(db, m, w, batch, method, g, calib_value, n_built, n_present, progress, progress_ctx);
    evb_db_write_end(db);
    return st;
}

static int build_sequential(evb_db *db, evb_model *m, const evb_windows *w, int batch, const evb_method *method,
                            const evb_level_grid *g, double calib_value, int *n_built, int *n_present,
                            void (*progress)(void *ctx, int done, int total), void *progress_ctx) {
    int st;
    const int L = m->config.n_layers, U = evb_model_n_units(m);
    size_t D = (size_t)m->config.dim;
    evb_db_entry *todo = NULL;
    int n_todo = 0;
    /* Every block's missing levels, counted first for the progress total. */
    st = missing_keys(db, m, method, g, 0, U, &todo, &n_todo, n_present);
    free(todo);
    if (st) return st;
    build_progress bp = {progress, progress_ctx, 0, n_todo};
    evb_calib *c = NULL;
    evb_state *s = NULL;
    float *h = malloc(sizeof(float) * (size_t)w->n * w->seq_len * D), *wbuf[EVB_LINEAR_COUNT] = {0};
    for (int k = 0; k < EVB_LINEAR_COUNT; k++) {
        int r, cc;
        evb_model_unit_shape(m, k, &r, &cc);
        wbuf[k] = malloc(sizeof(float) * (size_t)r * cc);
        if (!wbuf[k]) h = (free(h), NULL);
    }
    st = h ? evb_calib_alloc(m, &c) : EVB_RAISEF(EVB_ENOMEM, "out of memory for the hidden states of %d windows", w->n);
    if (!st) st = evb_state_alloc(m, batch, w->seq_len, &s);
    if (!st) s->exact = 1; /* float32 products, as evb_calib_collect */
    if (!st) st = evb_calib_embed(m, s, w, h);
    for (int l = 0; !st && l < L; l++) {
        int n_here = 0, dummy = 0;
        st = evb_calib_block(c, m, s, w, h, l, 1, 0);
        if (!st) st = missing_keys(db, m, method, g, l * EVB_LINEAR_COUNT, (l + 1) * EVB_LINEAR_COUNT, &todo, &n_here, &dummy);
        if (!st) st = build_levels(db, m, c, method, g, todo, n_here, &bp);
        free(todo); todo = NULL;
        *n_built += st ? 0 : n_here;
        /* Pass on the block as compressed at the calibration level. */
        for (int k = 0; !st && k < EVB_LINEAR_COUNT; k++) {
            int unit = l * EVB_LINEAR_COUNT + k;
            float *buf = wbuf[k];
            int e = calib_entry(db, m, method, g, unit, calib_value);
            if (e < 0) { st = EVB_RAISEF(EVB_EINVAL, "sequential build: unit %d has no level near %g to pass on", unit, calib_value); break; }
            st = evb_db_load(db, e, buf);
            if (!st) evb_model_set_weight(m, unit, buf);
        }
        if (!st) st = evb_calib_block(c, m, s, w, h, l, 0, 1);
        /* h now holds the block's compressed outputs: its weights are not needed again. */
        for (int k = 0; k < EVB_LINEAR_COUNT; k++) evb_model_set_weight(m, l * EVB_LINEAR_COUNT + k, NULL);
    }
    for (int u = 0; u < U; u++) evb_model_set_weight(m, u, NULL);
    for (int k = 0; k < EVB_LINEAR_COUNT; k++) free(wbuf[k]);
    free(h);
    evb_state_free(s);
    evb_calib_free(c);
    return st;
}
