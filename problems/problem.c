/* problem.c -- evb_mp: a model's search problem, its configurations, warm starts and per-mode defaults
 * (evb_problems.h). The builders of each target are in targets.c, the rules in rules.c, problem files in
 * file.c. */
#define _POSIX_C_SOURCE 200809L
#include "problems/problems.h"
#include "evobudget/evb_timing.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_names[] = {"sparsity", "bits", "drop", "problem", "bytes", "speedup",
                                         "latency"};

const char *evb_target_kind_name(int kind) {
    return kind >= 0 && kind <= EVB_TARGET_LATENCY ? kind_names[kind] : "?";
}

/* 1 for the speed targets (structured levels, measured costs). */
static int speed_kind(int kind) { return kind == EVB_TARGET_SPEEDUP || kind == EVB_TARGET_LATENCY; }

evb_mp_params evb_mp_default_params(int kind, double target) {
    evb_mp_params p = {kind, target, NULL, 8, 64, 0, NULL, 0, 8, NULL, 5};
    return p;
}

void evb_mp_say(const evb_mp_env *env, const char *fmt, ...) {
    if (!env->message) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    env->message(env->ctx, line);
}

int evb_mp_need_calib(evb_mp_env *env) {
    return env->calib ? EVB_SUCCESS : evb_calib_collect(env->m, env->w, env->batch > 0 ? env->batch : 8, &env->calib);
}

const char *evb_mp_unit_name(int u, char *buf, size_t n) {
    snprintf(buf, n, "layers.%d.%s", u / EVB_LINEAR_COUNT, evb_linear_name((evb_linear_kind)(u % EVB_LINEAR_COUNT)));
    return buf;
}

double evb_mp_level_storage(int rows, int cols, const evb_db_entry *e) {
    double N = (double)rows * cols;
    if (e->kind == EVB_LEVEL_SPARSE) return N + 16.0 * e->params_kept;
    if (e->kind == EVB_LEVEL_GGUF) return e->bits_stored; /* the blocks: codes, scales and mins */
    int g = e->group_size > 0 ? e->group_size : cols;
    return e->bits * N + (e->sym ? 16.0 : 32.0) * rows * ((cols + g - 1) / g);
}

int evb_mp_alloc(int kind, double target, int U, int max_levels, evb_mp **out) {
    *out = NULL;
    if (U < 1 || max_levels < 1 || (size_t)U > ((size_t)1 << 40) / (size_t)max_levels)
        EVB_ERRORF(EVB_EINVAL, "a problem of %d units with up to %d levels", U, max_levels);
    size_t UL = (size_t)U * max_levels;
    evb_mp *mp = calloc(1, sizeof *mp);
    struct evb_mp_priv *q = calloc(1, sizeof *q);
    if (mp) mp->priv = q;
    if (q) {
        q->n_levels = calloc(U, sizeof(int)); q->group = calloc(U, sizeof(int)); q->entry = malloc(sizeof(int) * UL);
        q->cost_mem = calloc(UL, sizeof(double)); q->cost = malloc(sizeof(double *) * U); q->start = calloc(U, sizeof(int16_t));
        q->fu = calloc(U, sizeof(evb_fit_unit)); q->desc = calloc(UL, sizeof(evb_allocation_unit));
    }
    if (!mp || !q || !q->n_levels || !q->group || !q->entry || !q->cost_mem || !q->cost || !q->start || !q->fu || !q->desc) {
        evb_mp_free(mp);
        if (!mp) free(q);
        EVB_ERRORF(EVB_ENOMEM, "out of memory for a problem of %d units", U);
    }
    q->U = U; q->max_levels = max_levels;
    for (int u = 0; u < U; u++) q->cost[u] = q->cost_mem + (size_t)u * max_levels;
    for (size_t i = 0; i < UL; i++) {
        q->entry[i] = EVB_ENTRY_DENSE;
        q->desc[i].level = -1; q->desc[i].key.kind = -1;
        q->desc[i].cost = q->desc[i].storage_bpw = q->desc[i].fitness = NAN;
    }
    mp->kind = kind;
    mp->target = target;
    *out = mp;
    return EVB_SUCCESS;
}

void evb_mp_publish(evb_mp *mp) {
    struct evb_mp_priv *q = mp->priv;
    for (int u = 0; u < q->U; u++)
        if (mp->kind != EVB_TARGET_DROP && !speed_kind(mp->kind)) q->fu[u] = (evb_fit_unit){EVB_UNIT_LINEAR,
                u, q->n_levels[u], q->entry + (size_t)u * q->max_levels, NULL};
    mp->problem.n_units = q->U;
    mp->problem.n_levels = q->n_levels;
    mp->problem.cost = (const double *const *)q->cost;
    mp->problem.group = q->group;
    mp->problem.start = q->start;
    mp->units = q->fu;
    mp->level_fitness = q->level_fit;
}

void evb_mp_free(evb_mp *mp) {
    if (!mp) return;
    struct evb_mp_priv *q = mp->priv;
    if (q) {
        for (size_t i = 0; q->desc && i < (size_t)q->U * q->max_levels; i++) free(q->desc[i].extra);
        free(q->n_levels); free(q->group); free(q->entry); free(q->cost_mem); free(q->cost); free(q->start); free(q->fu);
        free(q->desc); free(q->level_fit);
        for (size_t i = 0; q->recipes && i < (size_t)q->U * q->max_levels; i++)
            evb_struct_level_free(q->recipes[i]);
        free(q->recipes);
        evb_cost_table_free(q->costs);
        free(q);
    }
    free(mp);
}

int evb_mp_build(evb_mp_env *env, const evb_mp_params *p, evb_mp **out) {
    *out = NULL;
    const evb_model *m = env->m;
    int kind = p->kind, U = evb_model_n_units(m), L = m->config.n_layers;
    if (kind != EVB_TARGET_SPARSITY && kind != EVB_TARGET_BITS && kind != EVB_TARGET_DROP &&
        kind != EVB_TARGET_BYTES && !speed_kind(kind))
        EVB_ERRORF(EVB_EINVAL,
                   "a problem of target kind %d (sparsity, bits, drop, bytes, speedup and latency are built "
                   "from a model)", kind);
    if (kind == EVB_TARGET_SPEEDUP && !(p->target > 1 && p->target < 1000))
        EVB_ERRORF(EVB_EINVAL, "a speedup of %g must lie in (1, 1000)", p->target);
    if (kind == EVB_TARGET_LATENCY && !(p->target > 0 && isfinite(p->target)))
        EVB_ERRORF(EVB_EINVAL, "a latency of %g seconds must be positive", p->target);
    if (speed_kind(kind) && p->compressor && p->compressor->kind != EVB_LEVEL_STRUCT)
        EVB_ERRORF(EVB_EINVAL, "compressor %s does not make structured levels (flap, obs)",
                   p->compressor->name);
    if (!speed_kind(kind) && p->compressor && p->compressor->kind == EVB_LEVEL_STRUCT)
        EVB_ERRORF(EVB_EINVAL,
                   "compressor %s makes structured levels, for --target-speedup or --target-latency",
                   p->compressor->name);
    if (kind != EVB_TARGET_DROP && !env->db) EVB_ERRORF(EVB_EINVAL, "a %s problem needs a level database", kind_names[kind]);
    if ((kind == EVB_TARGET_SPARSITY || kind == EVB_TARGET_DROP) && !(p->target > 0 && p->target < 1))
        EVB_ERRORF(EVB_EINVAL, "a %s target of %g must lie in (0, 1)", kind_names[kind], p->target);
    int gguf = p->compressor && p->compressor->kind == EVB_LEVEL_GGUF;
    if (kind == EVB_TARGET_BITS && !gguf && !(p->target >= 2 && p->target <= 6))
        EVB_ERRORF(EVB_EINVAL, "a target of %g bits must lie in [2, 6], the bits the levels hold", p->target);
    if (kind == EVB_TARGET_BYTES && !(p->target > 0)) EVB_ERRORF(EVB_EINVAL, "a target of %g bytes", p->target);
    evb_mp_params q = *p;
    if (!q.compressor && kind != EVB_TARGET_DROP && kind != EVB_TARGET_BYTES)
        q.compressor = evb_method_find(kind == EVB_TARGET_SPARSITY ? "sparsegpt" : speed_kind(kind) ? "flap" : "gptq");
    if (kind == EVB_TARGET_BITS && gguf && !(p->target > 0 && p->target < 16))
        EVB_ERRORF(EVB_EINVAL, "a target of %g bits per weight must lie in (0, 16)", p->target);
    if (q.compressor && !speed_kind(kind) &&
        (q.compressor->kind == EVB_LEVEL_SPARSE) != (kind == EVB_TARGET_SPARSITY))
        EVB_ERRORF(EVB_EINVAL, "compressor %s does not make %s levels", q.compressor->name, kind == EVB_TARGET_SPARSITY ? "sparse" : "quantized");
    if (q.num_levels < 1) q.num_levels = 8;
    int max_levels = kind == EVB_TARGET_SPARSITY ? 2 * q.num_levels + 1 : kind == EVB_TARGET_BITS ? (gguf ? EVB_GGUF_MAX_LEVELS : 5)
                   : kind == EVB_TARGET_BYTES ? 12 : 2;
    if (q.struct_steps < 1) q.struct_steps = 8;
    if (speed_kind(kind) && q.struct_steps > m->config.hidden_dim)
        EVB_ERRORF(EVB_EINVAL, "%d structured steps exceed the model's %d MLP channels", q.struct_steps,
                   m->config.hidden_dim);
    if (speed_kind(kind))
        max_levels = 1 + (q.struct_steps > m->config.n_kv_heads ? q.struct_steps : m->config.n_kv_heads);
    evb_mp *mp;
    int s = evb_mp_alloc(kind, p->target, kind == EVB_TARGET_DROP || speed_kind(kind) ? 2 * L : U,
                         max_levels, &mp);
    if (s) return s;
    mp->priv->m = m;
    mp->priv->db = env->db;
    mp->priv->comp = q.compressor;
    s = kind == EVB_TARGET_SPARSITY ? evb_mp_build_sparsity(env, &q, mp) : kind == EVB_TARGET_BITS && gguf ? evb_mp_build_gguf(env, &q, mp)
      : kind == EVB_TARGET_BITS ? evb_mp_build_bits(env, &q, mp)
      : kind == EVB_TARGET_BYTES ? evb_mp_build_bytes(env, &q,
                                                      mp) : speed_kind(kind) ? evb_mp_build_speed(env, &q, mp)
      : evb_mp_build_drop(env, &q, mp);
    if (s) { evb_mp_free(mp); return s; }
    evb_mp_publish(mp);
    *out = mp;
    return EVB_SUCCESS;
}

/* ---- sizes and configurations ---- */

static double sub_block_bits(const evb_model *m, int l, int attn) {
    double bits = 0;
    for (int k = attn ? 0 : 4; k < (attn ? 4 : EVB_LINEAR_COUNT); k++) {
        int rows, cols;
        evb_model_unit_shape(m, l * EVB_LINEAR_COUNT + k, &rows, &cols);
        bits += 16.0 * rows * cols;
    }
    return bits;
}

/* The fraction of its heads or channels a speed problem's unit u keeps at level l. */
static double kept_fraction(const struct evb_mp_priv *q, int u, int l) {
    const evb_allocation_unit *d = &q->desc[(size_t)u * q->max_levels + l];
    if (d->dense) return 1.0;
    double groups = (double)d->key.cols / d->key.group_size;
    return (groups - (double)d->key.n_removed) / groups;
}

double evb_mp_storage_bits(const evb_mp *mp, const int16_t *level) {
    const struct evb_mp_priv *q = mp->priv;
    double bits = 0;
    if (mp->kind == EVB_TARGET_FILE || !q->m) return 0;
    if (speed_kind(mp->kind)) {   /* the kept share of each sub-block's weights, and a compensation bias */
        for (int u = 0; u < q->U; u++) {
            double f = kept_fraction(q, u, level[u]);
            bits += f * sub_block_bits(q->m, u % (q->U / 2),
                                       u < q->U / 2) + (f < 1 ? 16.0 * q->m->config.dim : 0);
        }
        return bits;
    }
    if (mp->kind == EVB_TARGET_BYTES) {
        for (int u = 0; u < q->U; u++) bits += q->cost[u][level[u]];
        return bits;
    }
    if (mp->kind == EVB_TARGET_DROP) {
        for (int u = 0; u < q->U; u++)
            if (!level[u]) bits += sub_block_bits(q->m, u % (q->U / 2), u < q->U / 2);
        return bits;
    }
    for (int u = 0; u < q->U; u++) {
        int rows, cols, e = q->entry[u * q->max_levels + level[u]];
        evb_model_unit_shape(q->m, u, &rows, &cols);
        if (e < 0) { bits += 16.0 * rows * cols; continue; }
        evb_db_entry got = evb_db_get(q->db, e);
        bits += evb_mp_level_storage(rows, cols, &got);
    }
    return bits;
}

/* The sizes of a configuration in the target's own measure. */
static void config_sizes(const evb_mp *mp, const int16_t *level, evb_allocation *c) {
    const struct evb_mp_priv *q = mp->priv;
    if (mp->kind == EVB_TARGET_SPARSITY) c->sparsity = 1.0 - c->cost / mp->total_size;
    if (mp->kind == EVB_TARGET_BITS) c->bits_per_weight = c->cost / (mp->total_size / 32.0);
    if (mp->kind == EVB_TARGET_DROP) c->dropped = mp->total_size - c->cost;
    if (mp->kind != EVB_TARGET_FILE) c->storage_bytes = evb_mp_storage_bits(mp, level) / 8;
    if (speed_kind(mp->kind)) {
        c->seconds = q->costs->fixed + c->cost;
        c->dense_seconds = evb_mp_dense_seconds(mp);
        c->speedup = c->dense_seconds / c->seconds;
    }
    if (mp->kind != EVB_TARGET_BYTES) return;
    c->bytes = c->cost / 8;
    c->storage_bpw = c->cost / mp->total_size;
    /* a sub-block whose output projection is the zero matrix computes nothing: dropped */
    for (int l = 0; l < q->U / EVB_LINEAR_COUNT; l++)
        for (int k = 0; k < 2; k++) {
            int u = l * EVB_LINEAR_COUNT + (k ? EVB_LINEAR_DOWN : EVB_LINEAR_O);
            if (q->entry[u * q->max_levels + level[u]] == EVB_ENTRY_ZERO) c->drop[c->n_drop++] = (evb_allocation_drop){l, k};
        }
}

int evb_mp_config(const evb_mp *mp, const int16_t *level, double fitness, evb_allocation **out) {
    const struct evb_mp_priv *q = mp->priv;
    int drop = mp->kind == EVB_TARGET_DROP, n_drop = 0;
    for (int u = 0; drop && u < q->U; u++) n_drop += level[u] != 0;
    evb_allocation *c;
    int s = evb_allocation_new(drop ? 0 : q->U, drop ? n_drop : mp->kind == EVB_TARGET_BYTES ? 2 * q->U / EVB_LINEAR_COUNT : 0, &c);
    if (s) return s;
    c->n_drop = 0;
    c->cost = 0;
    for (int u = 0; u < q->U; u++) {
        c->cost += q->cost[u][level[u]];
        if (drop) {
            if (level[u]) c->drop[c->n_drop++] = (evb_allocation_drop){u % (q->U / 2), u >= q->U / 2};
            continue;
        }
        evb_allocation_unit *x = &c->units[u];
        *x = q->desc[u * q->max_levels + level[u]];
        x->extra = x->extra ? strdup(x->extra) : NULL;
        if (!speed_kind(mp->kind)) x->unit = u;   /* a speed level names its o or down unit */
        if (!x->name[0]) evb_mp_unit_name(u, x->name, sizeof x->name);
        x->level = level[u];
        x->cost = q->cost[u][level[u]];
    }
    if (q->m) snprintf(c->model, sizeof c->model, "%s", q->m->path);
    snprintf(c->target_kind, sizeof c->target_kind, "%s", kind_names[mp->kind]);
    c->target = mp->target;
    c->budget = mp->problem.budget;
    c->fitness = fitness;
    config_sizes(mp, level, c);
    *out = c;
    return EVB_SUCCESS;
}

int evb_mp_levels(const evb_mp *mp, const evb_allocation *c, int16_t *level) {
    const struct evb_mp_priv *q = mp->priv;
    memset(level, 0, sizeof(int16_t) * q->U);
    if (mp->kind == EVB_TARGET_DROP) {
        int L = q->U / 2;
        for (int i = 0; i < c->n_drop; i++) {
            if (c->drop[i].block >= L) EVB_ERRORF(EVB_EINVAL, "a configuration drops block %d of %d", c->drop[i].block, L);
            level[(c->drop[i].mlp ? L : 0) + c->drop[i].block] = 1;
        }
        return EVB_SUCCESS;
    }
    for (int i = 0; i < c->n_units; i++) {
        int u = c->units[i].unit, l = c->units[i].level, L = q->U / 2;
        if (speed_kind(mp->kind)) {   /* the o or down unit of block b: the sub-block's index */
            int b = u / EVB_LINEAR_COUNT, k = u % EVB_LINEAR_COUNT;
            int sub = k == EVB_LINEAR_O ? 0 : k == EVB_LINEAR_DOWN ? 1 : -1;
            u = b < L && sub >= 0 ? sub * L + b : q->U;
        }
        if (u >= q->U || l < 0 || l >= q->n_levels[u]) EVB_ERRORF(EVB_EINVAL, "a configuration names unit %d at level %d, which this problem lacks", u, l);
        level[u] = (int16_t)l;
    }
    return EVB_SUCCESS;
}

/* ---- the sweep's warm start ---- */

/* What unit u at level l means across targets: weights removed, bits, or dropped (1) / kept (0). */
static double unit_value(const evb_mp *mp, int u, int l) {
    const struct evb_mp_priv *q = mp->priv;
    int rows, cols;
    if (mp->kind == EVB_TARGET_BITS && q->comp && q->comp->kind == EVB_LEVEL_GGUF) {
        evb_model_unit_shape(q->m, u, &rows, &cols);
        return q->n_levels[u] > 1 || q->cost[u][l] > 0 ? q->cost[u][l] / ((double)rows * cols) : 16.0;
    }
    if (mp->kind == EVB_TARGET_BITS) return q->bits[l];
    if (speed_kind(mp->kind)) return kept_fraction(q, u, l);
    if (mp->kind != EVB_TARGET_SPARSITY) return l;
    evb_model_unit_shape(q->m, u, &rows, &cols);
    return (double)rows * cols - q->cost[u][l];
}

int evb_mp_unit_values(const evb_mp *mp, const int16_t *level, double *value) {
    for (int u = 0; u < mp->priv->U; u++) value[u] = unit_value(mp, u, level[u]);
    return EVB_SUCCESS;
}

/* Levels moved one at a time until every group holds the level sum of the uniform start: raise the lowest,
 * lower the highest, so that the allocation's shape changes least. */
static void balance_groups(const struct evb_mp_priv *q, int16_t *lv, double *want, double *have, int G) {
    for (int u = 0; u < q->U; u++) { want[q->group[u]] += q->start[u]; have[q->group[u]] += lv[u]; }
    for (int g = 0; g < G; g++)
        while (have[g] != want[g]) {
            int up = have[g] < want[g], pick = -1;
            for (int u = 0; u < q->U; u++) {
                if (q->group[u] != g || (up ? lv[u] + 1 >= q->n_levels[u] : lv[u] == 0)) continue;
                if (pick < 0 || (up ? lv[u] < lv[pick] : lv[u] > lv[pick])) pick = u;
            }
            if (pick < 0) break;
            lv[pick] += up ? 1 : -1;
            have[g] += up ? 1 : -1;
        }
}

int evb_mp_warm_start(evb_mp *mp, const double *value) {
    struct evb_mp_priv *q = mp->priv;
    int U = q->U, G = 0, ok = 0;
    for (int u = 0; u < U; u++) if (q->group[u] + 1 > G) G = q->group[u] + 1;
    int16_t *lv = malloc(sizeof(int16_t) * U);
    double *want = calloc(G, sizeof(double)), *have = calloc(G, sizeof(double));
    if (lv && want && have) {
        for (int u = 0; u < U; u++) {      /* each unit at the level nearest its value */
            int best = 0;
            double bd = INFINITY;
            for (int l = 0; l < q->n_levels[u]; l++) {
                double d = fabs(unit_value(mp, u, l) - value[u]);
                if (d < bd) { bd = d; best = l; }
            }
            lv[u] = (int16_t)best;
        }
        balance_groups(q, lv, want, have, G);
        evb_problem p = mp->problem;
        p.start = NULL;
        /* equal level sums per group give the start's cost only where steps are equal within a group */
        ok = evb_problem_feasible(&p, lv);
        if (ok) memcpy(q->start, lv, sizeof(int16_t) * U);
    }
    free(lv); free(want); free(have);
    return ok;
}

/* ---- the per-mode defaults ---- */

/* EvoPress's stage sizes were set for its search calibration sets (524,288 tokens for sparsity and
 * quantization, 131,072 for depth: base): keep their proportion to this calibration set, at least 256
 * tokens, 0 (all) once a stage reaches the whole set. */
static size_t scale_tokens(size_t t, size_t total, size_t base) {
    if (!total) return t;
    double x = (double)t * (double)total / (double)base;
    size_t s = x < 256 ? 256 : (size_t)x;
    return s >= total ? 0 : s;
}

evb_search_params evb_mp_search_params(const evb_mp *mp, const char *search_type, size_t T, uint64_t seed) {
    static const struct { int gens, lambda, n; int surv[3]; size_t tok[3]; } defaults[] = {
        {400, 64, 3, {8, 2, 1}, {2048, 16384, 65536}},    /* sparsity (and problem files) */
        {150, 128, 3, {16, 4, 1}, {2048, 16384, 131072}}, /* quantization (and bytes) */
        {0, 32, 2, {2, 1, 0}, {2048, 32768, 0}},          /* depth: generations k(n-k)/1.5 */
    };
    int kind = mp->kind;
    const __typeof__(defaults[0]) *d = &defaults[kind == EVB_TARGET_FILE || kind == EVB_TARGET_SPARSITY ? 0 : kind == EVB_TARGET_DROP ? 2 : 1];
    const size_t base = kind == EVB_TARGET_DROP ? 131072 : 524288;
    evb_search_params p = evb_search_default_params();
    p.seed = seed;
    p.generations = d->gens;
    p.n_offspring = d->lambda;
    p.n_stages = d->n;
    for (int j = 0; j < d->n; j++) { p.n_survivors[j] = d->surv[j]; p.n_tokens[j] = scale_tokens(d->tok[j], T, base); }
    if (kind == EVB_TARGET_DROP) {
        int L = mp->priv->U / 2, k = (int)llround((mp->total_size - mp->problem.budget) / 2);
        p.generations = (int)ceil(k * (L - k) / 1.5);
        p.n_initial = 64; p.initial_tokens = scale_tokens(2048, T, base);
    }
    if (kind == EVB_TARGET_BITS && fabs(mp->target - round(mp->target)) > 1e-9) { p.n_initial = 32; p.initial_tokens = scale_tokens(2048, T, base); }
    p.max_mutations = 3;
    p.total_tokens = T;
    const evb_mp_method *me = evb_mp_method_find(search_type);
    if (me && me->one_round) p.generations = 1;
    if (search_type && strcmp(search_type, "random") == 0) p.n_initial = 32;
    if (me && me->front) {
        p.generations = 100; p.n_offspring = 32; p.n_stages = 1; p.n_survivors[0] = 32; p.n_tokens[0] = scale_tokens(16384, T, base);
    }
    return p;
}

evb_problem evb_mp_front_problem(const evb_mp *mp) {
    evb_problem p = mp->problem;
    double total = mp->total_size;
    p.tolerance = mp->kind == EVB_TARGET_FILE ? p.tolerance : mp->kind == EVB_TARGET_DROP ? 2.5 : mp->kind == EVB_TARGET_BYTES || speed_kind(mp->kind) ? 0.1 * p.budget
                : mp->kind == EVB_TARGET_SPARSITY ? 0.1 * total : 0.5 / 32 * total;
    return p;
}
