/* speed.c -- speed targets (evb_problems.h): "the best model whose forward runs X times faster" or "in S
 * seconds".
 *
 * Units are the 2 L sub-blocks (attention of blocks 0..L-1, then their MLPs). An attention sub-block's levels
 * keep 0..G whole key/value groups (each with its H / G query heads), an MLP's keep k F / steps channels for
 * k = 0..steps; the last level is the dense sub-block. Each level short of dense is a structured level of the
 * database (EVB_LEVEL_STRUCT, the unit of the sub-block's o or down projection) made by the compressor: FLAP
 * (its fluctuation order, the removed channels' mean contribution as a bias) or OBS (ZipLM's greedy removal
 * with the optimal update of the kept columns); the levels of one sub-block are nested (each removes what the
 * one above removes and more). A level's cost is its measured time (evb_timing.h); the budget is the table's
 * dense forward (the fixed costs and every sub-block dense) over the speedup, or the latency, the fixed costs
 * taken off, kept in the band [0.98, 1] of it. The start, and what method uniform scores, is the uniform
 * removal: every sub-block keeps the same fraction, the largest whose predicted time fits, then levels moved
 * into the band (fill_band). */
#include "problems/problems.h"
#include "evobudget/evb_calib.h"
#include "evobudget/evb_compress.h"
#include "evobudget/evb_timing.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SPEED_BAND 0.02

static int n_groups(const evb_config *c, int mlp) { return mlp ? c->hidden_dim : c->n_kv_heads; }
static int group_cols(const evb_config *c,
                      int mlp) { return mlp ? 1 : c->n_heads / c->n_kv_heads * c->head_dim; }
static int sub_unit(int l, int mlp) { return l * EVB_LINEAR_COUNT + (mlp ? EVB_LINEAR_DOWN : EVB_LINEAR_O); }

/* Kept groups or channels of level k of a sub-block kind. */
static int level_kept(const evb_config *c, int mlp, int steps, int k) {
    return mlp ? (int)((long)c->hidden_dim * k / steps) : k;
}

static evb_db_entry struct_key(const evb_model *m, int l, int mlp, const char *method, int kept) {
    evb_db_entry k;
    memset(&k, 0, sizeof k);
    k.unit = sub_unit(l, mlp);
    k.kind = EVB_LEVEL_STRUCT;
    snprintf(k.method, sizeof k.method, "%s", method);
    evb_model_unit_shape(m, k.unit, &k.rows, &k.cols);
    k.group_size = group_cols(&m->config, mlp);
    k.n_removed = n_groups(&m->config, mlp) - kept;
    k.dtype = strcmp(method, "obs") == 0 ? evb_db_dtype_of(m->config.dtype) : EVB_DB_F32;
    return k;
}

/* 1 when the database holds key with an intact payload. */
static int have_level(const evb_db *db, const evb_db_entry *key) {
    int e = evb_db_find(db, key);
    return e >= 0 && evb_db_verify(db, e) == EVB_SUCCESS;
}

/* kept[] = the groups of 0..n not among removed[0..r), ascending; returns their count. */
static int complement(const int *removed, int r, int n, unsigned char *mark, int *kept) {
    memset(mark, 0, (size_t)n);
    for (int i = 0; i < r; i++) mark[removed[i]] = 1;
    int k = 0;
    for (int g = 0; g < n; g++) if (!mark[g]) kept[k++] = g;
    return k;
}

typedef struct snap_ctx {
    evb_db *db;
    const evb_model *m;
    int l, mlp, n, *order, *kept;
    const unsigned char *want;  /* [n + 1]: 1 where a level removing that many is missing */
    unsigned char *mark;
    float *out_w, *bias;
} snap_ctx;

/* After OBS removal k: stores the level removing k groups when it is wanted. */
static int obs_snap(void *ctx, int k, const float *W) {
    snap_ctx *s = ctx;
    if (!s->want[k]) return EVB_SUCCESS;
    int nk = complement(s->order, k, s->n, s->mark, s->kept), per = group_cols(&s->m->config, s->mlp);
    int rows, cols;
    evb_model_unit_shape(s->m, sub_unit(s->l, s->mlp), &rows, &cols);
    int in = nk * per;
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < nk; i++)
            memcpy(s->out_w + (size_t)r * in + (size_t)i * per,
                   W + (size_t)r * cols + (size_t)s->kept[i] * per,
                   sizeof(float) * per);
    evb_db_entry key = struct_key(s->m, s->l, s->mlp, "obs", nk);
    return evb_db_put_struct(s->db, &key, s->kept, s->bias, s->out_w, NAN);
}

/* FLAP's levels of one sub-block: its order once, then each missing level's kept groups and bias. */
static int flap_levels(snap_ctx *s, const float *W, const evb_layer_stats *st, int rows, int cols) {
    int per = group_cols(&s->m->config, s->mlp);
    int rc = evb_struct_flap_order(W, rows, cols, per, st, s->order);
    for (int r = 1; !rc && r <= s->n; r++) {
        if (!s->want[r]) continue;
        int nk = complement(s->order, r, s->n, s->mark, s->kept);
        rc = evb_struct_flap_bias(W, rows, cols, per, st, s->order, r, s->bias);
        evb_db_entry key = struct_key(s->m, s->l, s->mlp, "flap", nk);
        if (!rc) rc = evb_db_put_struct(s->db, &key, s->kept, s->bias, NULL, NAN);
    }
    return rc;
}

/* Makes the missing levels (kept[0..n_lv), the dense one excluded) of sub-block (l, mlp) with method. */
static int build_sub(evb_mp_env *env, const char *method, int l, int mlp, const int *kept_of, int n_lv) {
    const evb_model *m = env->m;
    int n = n_groups(&m->config, mlp), rows, cols, any = 0, max_r = 0;
    unsigned char *want = calloc((size_t)n + 1, 1);
    if (!want) EVB_ERROR("out of memory", EVB_ENOMEM);
    for (int i = 0; i < n_lv; i++) {
        evb_db_entry key = struct_key(m, l, mlp, method, kept_of[i]);
        if (kept_of[i] < n && !have_level(env->db, &key)) {
            want[n - kept_of[i]] = 1; any = 1;
            if (n - kept_of[i] > max_r) max_r = n - kept_of[i];
        }
    }
    if (!any) { free(want); return EVB_SUCCESS; }
    int rc = evb_mp_need_calib(env);
    evb_model_unit_shape(m, sub_unit(l, mlp), &rows, &cols);
    snap_ctx s = {env->db, m, l, mlp, n, malloc(sizeof(int) * (size_t)n), malloc(sizeof(int) * (size_t)n),
                  want,
                  malloc((size_t)n), NULL, calloc((size_t)rows, sizeof(float))};
    float *W = malloc(sizeof(float) * (size_t)rows * cols);
    int obs = strcmp(method, "obs") == 0;
    if (obs) s.out_w = malloc(sizeof(float) * (size_t)rows * cols);
    if (!rc && (!s.order || !s.kept || !s.mark || !s.bias || !W || (obs && !s.out_w)))
        rc = EVB_RAISEF(EVB_ENOMEM, "out of memory for the structured levels of block %d", l);
    if (!rc) {
        const evb_layer_stats *st = evb_calib_unit(env->calib, sub_unit(l, mlp));
        evb_model_dense_f32(m, sub_unit(l, mlp), W);
        rc = obs ? evb_struct_obs(W, rows, cols, group_cols(&m->config, mlp), st, 0.01, max_r, s.order,
                                  obs_snap, &s)
                 : flap_levels(&s, W, st, rows, cols);
    }
    free(want); free(s.order); free(s.kept); free(s.mark); free(s.bias); free(s.out_w); free(W);
    return rc;
}

/* The cost table: the cached one when it was measured here on these shapes and levels, else measured (and
 * cached when env names a file). */
static int cost_table(evb_mp_env *env, const evb_mp_params *p, const int *mlp_kept, int n,
                      evb_cost_table **out) {
    int B = env->batch > 0 ? env->batch : 8, T = env->w->seq_len, stale = 1;
    evb_cost_table *t = NULL;
    int rd = p->timings ? evb_cost_table_read(p->timings, env->m, B, T, &t, &stale) : EVB_EIO;
    if (rd && rd != EVB_EIO)   /* a damaged cache is measured again and replaced, and said so */
        evb_mp_say(env, "%s: measuring again", evb_last_error());
    if (!rd) {
        int same = !stale && t->n_mlp == n;
        for (int i = 0; same && i < n; i++) same = t->mlp_kept[i] == mlp_kept[i];
        if (same) { *out = t; return EVB_SUCCESS; }
        evb_mp_say(env, "%s was measured on another machine, path, thread count or shape: measuring again",
                   p->timings);
        evb_cost_table_free(t);
    }
    int repeats = p->timing_repeats > 0 ? p->timing_repeats : 5;
    evb_mp_say(env, "measuring the time of every structured level (%d x %d tokens, median of %d)", B, T,
               repeats);
    int st = evb_cost_table_measure(env->m, B, T, mlp_kept, n - 1, repeats, NULL, NULL, &t);
    if (!st && p->timings && !(st = evb_db_write_begin(env->db))) {   /* beside the levels, under their lock */
        st = evb_cost_table_write(t, p->timings);
        evb_db_write_end(env->db);
    }
    if (st) { evb_cost_table_free(t); return st; }
    *out = t;
    return EVB_SUCCESS;
}

/* Predicted seconds of the candidate lv (from the private arrays: the problem is published after the build).
 * */
static double predicted(const evb_mp *mp, const int16_t *lv) {
    const struct evb_mp_priv *q = mp->priv;
    double s = q->costs->fixed;
    for (int u = 0; u < q->U; u++) s += q->cost[u][lv[u]];
    return s;
}

/* The move of lv (one unit up a level, or one up and another down) that adds the most time without passing
 * room, or 0 when none adds any. */
static int best_fill(const evb_mp *mp, const int16_t *lv, double room, int *up, int *down) {
    const struct evb_mp_priv *q = mp->priv;
    double best = 0;
    *up = *down = -1;
    for (int u = 0; u < q->U; u++) {
        if (lv[u] + 1 >= q->n_levels[u]) continue;
        double du = q->cost[u][lv[u] + 1] - q->cost[u][lv[u]];
        if (du <= room && du > best) { best = du; *up = u; *down = -1; }
        for (int v = 0; v < q->U; v++) {
            if (v == u || lv[v] == 0) continue;
            double d = du - (q->cost[v][lv[v]] - q->cost[v][lv[v] - 1]);
            if (d <= room && d > best) { best = d; *up = u; *down = v; }
        }
    }
    return *up >= 0;
}

/* The levels nearest ref (least summed level distance) whose time lies in the band, by dynamic programming over
 * the units with costs in bins of a quarter of the band over U (rounding then moves a total by at most a quarter
 * of the band, which the bins kept clear of each side absorb). 1 when some candidate reaches the band. */
static int nearest_in_band(const evb_mp *mp, const int16_t *ref, int16_t *lv, double hi) {
    const struct evb_mp_priv *q = mp->priv;
    int U = q->U;
    double lo = hi * (1 - SPEED_BAND), d = (hi - lo) / (2.0 * U), fixed = q->costs->fixed;
    long lo_b = (long)ceil((lo - fixed + (hi - lo) / 4) / d), hi_b = (long)floor((hi - fixed - (hi - lo) / 4) / d);
    if (hi_b < 0 || hi_b < lo_b || hi_b > 1000000) return 0;
    long B = hi_b + 1;
    double *best = malloc(sizeof(double) * (size_t)B * 2);
    int16_t *choice = malloc(sizeof(int16_t) * (size_t)B * (size_t)U);
    if (!best || !choice) { free(best); free(choice); return 0; }
    double *cur = best, *nxt = best + B;
    for (long b = 0; b < B; b++) cur[b] = b == 0 ? 0 : INFINITY;
    for (int u = 0; u < U; u++) {
        for (long b = 0; b < B; b++) { nxt[b] = INFINITY; choice[(size_t)u * B + b] = -1; }
        for (long b = 0; b < B; b++) {
            if (!isfinite(cur[b])) continue;
            for (int k = 0; k < q->n_levels[u]; k++) {
                long nb = b + lround(q->cost[u][k] / d);
                double v = cur[b] + abs(k - ref[u]);
                if (nb < B && v < nxt[nb]) { nxt[nb] = v; choice[(size_t)u * B + nb] = (int16_t)k; }
            }
        }
        double *t = cur; cur = nxt; nxt = t;
    }
    long at = -1;
    for (long b = lo_b > 0 ? lo_b : 0; b < B; b++) if (isfinite(cur[b]) && (at < 0 || cur[b] < cur[at])) at = b;
    for (int u = U - 1; at >= 0 && u >= 0; u--) {
        lv[u] = choice[(size_t)u * B + at];
        at -= lround(q->cost[u][lv[u]] / d);
    }
    int ok = at == 0;
    free(best); free(choice);
    return ok && predicted(mp, lv) >= lo && predicted(mp, lv) <= hi;
}

/* Moves lv into the band [hi (1 - SPEED_BAND), hi] from below: the single or paired moves that add the most time
 * that fits; where those stall short of the band (a knapsack's greedy can) and exact is set, the levels nearest
 * lv as it came that reach the band (nearest_in_band). 1 when lv is in the band. */
static int fill_band(const evb_mp *mp, int16_t *lv, double hi, int exact) {
    const struct evb_mp_priv *q = mp->priv;
    int up, down, U = q->U;
    int16_t *ref = malloc(sizeof(int16_t) * (size_t)U);
    if (!ref) return 0;
    memcpy(ref, lv, sizeof(int16_t) * (size_t)U);
    for (int it = 0; it < 4 * U && predicted(mp, lv) < hi * (1 - SPEED_BAND); it++) {
        if (!best_fill(mp, lv, hi - predicted(mp, lv), &up, &down)) break;
        lv[up]++;
        if (down >= 0) lv[down]--;
    }
    int ok = predicted(mp, lv) >= hi * (1 - SPEED_BAND) && predicted(mp, lv) <= hi;
    if (!ok && exact) ok = nearest_in_band(mp, ref, lv, hi);
    free(ref);
    return ok;
}

/* The uniform start: every sub-block at the kept fraction nearest r; from the largest r (in steps of 1/1000)
 * whose time fits down, the first from which fill_band's moves reach the band; failing that, the levels nearest
 * the largest fitting r's that do. */
static int speed_start(evb_mp *mp, double hi) {
    struct evb_mp_priv *q = mp->priv;
    int U = q->U, first = -1;
    int16_t *prev = malloc(sizeof(int16_t) * (size_t)U);
    if (!prev) return 0;
    for (int u = 0; u < U; u++) prev[u] = -1;
    for (int i = 1000; i >= 0; i--) {
        int same = 1;
        for (int u = 0; u < U; u++) {
            q->start[u] = (int16_t)lround(i / 1000.0 * (q->n_levels[u] - 1));
            same = same && q->start[u] == prev[u];
        }
        if (same || predicted(mp, q->start) > hi) continue;
        if (first < 0) first = i;
        memcpy(prev, q->start, sizeof(int16_t) * (size_t)U);
        if (fill_band(mp, q->start, hi, 0)) { free(prev); return 1; }
    }
    free(prev);
    if (first < 0) return 0;
    for (int u = 0; u < U; u++) q->start[u] = (int16_t)lround(first / 1000.0 * (q->n_levels[u] - 1));
    return fill_band(mp, q->start, hi, 1);
}

/* The levels of unit u: costs, database entries, descriptions and recipes. */
static int fill_unit(evb_mp_env *env, evb_mp *mp, const char *method, int u, int steps) {
    struct evb_mp_priv *q = mp->priv;
    const evb_config *c = &env->m->config;
    int L = c->n_layers, mlp = u >= L, l = u % L, M = q->max_levels, n = mlp ? steps + 1 : c->n_kv_heads + 1;
    q->n_levels[u] = n;
    q->group[u] = 0;
    for (int k = 0; k < n; k++) {
        int kept = level_kept(c, mlp, steps, k), idx = mlp ? evb_cost_table_mlp_index(q->costs, kept) : kept;
        if (idx < 0) EVB_ERRORF(EVB_EINVAL, "the cost table has no MLP level keeping %d channels", kept);
        q->cost[u][k] = mlp ? q->costs->mlp[idx] : q->costs->attn[idx];
        evb_allocation_unit *d = &q->desc[(size_t)u * M + k];
        evb_db_entry key = struct_key(env->m, l, mlp, method, kept);
        d->unit = key.unit;
        snprintf(d->name, sizeof d->name, "layers.%d.%s", l, mlp ? "mlp" : "self_attn");
        if (kept == n_groups(c, mlp)) { d->dense = 1; continue; }
        d->key = key;
        int e = evb_db_find(env->db, &key);
        if (e < 0) EVB_ERRORF(EVB_EINVAL, "the database lacks the %s level of block %d keeping %d", method,
                              l, kept);
        q->entry[(size_t)u * M + k] = e;
        int rc = evb_db_load_struct(env->db, e, &q->recipes[(size_t)u * M + k]);
        if (rc) return rc;
    }
    q->fu[u] = (evb_fit_unit){mlp ? EVB_UNIT_MLP_S : EVB_UNIT_ATTN_S, l, n, q->entry + (size_t)u * M,
                              (const evb_struct_level *const *)q->recipes + (size_t)u * M};
    return EVB_SUCCESS;
}

int evb_mp_build_speed(evb_mp_env *env, const evb_mp_params *p, evb_mp *mp) {
    struct evb_mp_priv *q = mp->priv;
    const evb_config *c = &env->m->config;
    int L = c->n_layers, steps = p->struct_steps > 0 ? p->struct_steps : 8, rc = EVB_SUCCESS;
    const char *method = q->comp ? q->comp->name : "flap";
    int *kept = malloc(sizeof(int) * (size_t)(steps + 1));
    q->recipes = calloc((size_t)q->U * q->max_levels, sizeof *q->recipes);
    if (!kept || !q->recipes) { free(kept); EVB_ERROR("out of memory", EVB_ENOMEM); }
    for (int k = 0; k <= steps; k++) kept[k] = level_kept(c, 1, steps, k);
    int *att = malloc(sizeof(int) * (size_t)(c->n_kv_heads + 1));
    if (!att) { free(kept); EVB_ERROR("out of memory", EVB_ENOMEM); }
    for (int g = 0; g <= c->n_kv_heads; g++) att[g] = g;
    evb_mp_say(env, "building the %s structured levels (%d of attention, %d of MLP per block)", method,
               c->n_kv_heads, steps);
    for (int l = 0; l < L && !rc; l++) {
        rc = build_sub(env, method, l, 0, att, c->n_kv_heads + 1);
        if (!rc) rc = build_sub(env, method, l, 1, kept, steps + 1);
        if (env->progress) env->progress(env->ctx, l + 1, L);
    }
    if (!rc) rc = cost_table(env, p, kept, steps + 1, &q->costs);
    free(kept); free(att);
    for (int u = 0; u < q->U && !rc; u++) rc = fill_unit(env, mp, method, u, steps);
    if (rc) return rc;
    const evb_cost_table *t = q->costs;
    mp->total_size = 0;
    double least = 0;
    for (int u = 0; u < q->U; u++) { mp->total_size += q->cost[u][q->n_levels[u] - 1]; least += q->cost[u][0]; }
    double hi = evb_mp_target_seconds(mp), lo = hi * (1 - SPEED_BAND);
    mp->problem.budget = 0.5 * (lo + hi) - t->fixed;
    mp->problem.tolerance = 0.5 * (hi - lo);
    if (t->fixed + least > hi || t->fixed + mp->total_size < lo)
        EVB_ERRORF(EVB_EBUDGET,
                   "a forward of %.4g s is outside what the levels reach: %.4g s (everything removed) to %.4g s "
                   "(dense)", hi, t->fixed + least, evb_mp_dense_seconds(mp));
    if (!speed_start(mp, hi))
        EVB_ERRORF(EVB_EBUDGET, "no uniform removal reaches [%.4g, %.4g] s (hint: more --struct-steps)", lo,
                   hi);
    return EVB_SUCCESS;
}

const evb_cost_table *evb_mp_cost_table(const evb_mp *mp) { return mp->priv->costs; }

/* The reference is the table's own dense time, measured the way every level is: one whole forward timed apart
 * from the rest would put one noisy sample against the table. total_size is the units' dense cost. */
double evb_mp_dense_seconds(const evb_mp *mp) { return mp->priv->costs->fixed + mp->total_size; }

double evb_mp_target_seconds(const evb_mp *mp) {
    return mp->kind == EVB_TARGET_SPEEDUP ? evb_mp_dense_seconds(mp) / mp->target : mp->target;
}

// ---- FLAP's global allocation ----

typedef struct zscore { double z; int u; } zscore;

static int cmp_z(const void *a, const void *b) {
    const zscore *x = a, *y = b;
    return x->z < y->z ? -1 : x->z > y->z ? 1 : x->u - y->u;
}

/* Sub-block u's FLAP scores standardized within it (FLAP's adaptive structure search compares standardized
 * scores across layers) into z[0..n), tagged with u. */
static int unit_zscores(evb_mp_env *env, int u, zscore *z, int *n) {
    const evb_model *m = env->m;
    int L = m->config.n_layers, mlp = u >= L, l = u % L, rows, cols, per = group_cols(&m->config, mlp);
    evb_model_unit_shape(m, sub_unit(l, mlp), &rows, &cols);
    *n = cols / per;
    float *W = malloc(sizeof(float) * (size_t)rows * cols);
    double *sc = malloc(sizeof(double) * (size_t)*n);
    int rc = !W || !sc ? EVB_RAISEF(EVB_ENOMEM, "out of memory") : EVB_SUCCESS;
    if (!rc) {
        evb_model_dense_f32(m, sub_unit(l, mlp), W);
        rc = evb_struct_flap_scores(W, rows, cols, per, evb_calib_unit(env->calib, sub_unit(l, mlp)), sc);
    }
    double mean = 0, var = 0;
    for (int i = 0; !rc && i < *n; i++) mean += sc[i] / *n;
    for (int i = 0; !rc && i < *n; i++) var += (sc[i] - mean) * (sc[i] - mean) / (*n > 1 ? *n - 1 : 1);
    for (int i = 0; !rc && i < *n; i++) z[i] = (zscore){var > 0 ? (sc[i] - mean) / sqrt(var) : 0.0, u};
    free(W); free(sc);
    return rc;
}

/* Unit u's level nearest to keeping `kept` of its groups. */
static int nearest_level(const evb_mp *mp, const evb_config *c, int u, int kept, int steps) {
    int L = c->n_layers, mlp = u >= L, best = 0;
    for (int k = 1; k < mp->priv->n_levels[u]; k++)
        if (abs(level_kept(c, mlp, steps, k) - kept) < abs(level_kept(c, mlp, steps, best) - kept)) best = k;
    return best;
}

/* FLAP's allocation: every head group and channel of every sub-block ranked by its standardized score,
 * removed from the lowest on until the levels nearest to what each sub-block then keeps fit the time; then
 * moved into the band as the uniform start is (fill_band). */
int evb_mp_flap_levels(evb_mp_env *env, const evb_mp *mp, int16_t *level) {
    const struct evb_mp_priv *q = mp->priv;
    const evb_config *c = &env->m->config;
    int U = q->U, L = c->n_layers, steps = q->n_levels[L] - 1, n_all = 0, rc = evb_mp_need_calib(env);
    double hi = evb_mp_target_seconds(mp);
    size_t N = (size_t)L * (c->n_kv_heads + c->hidden_dim);
    zscore *z = malloc(sizeof(zscore) * N);
    int *removed = calloc((size_t)U, sizeof(int));
    if (!rc && (!z || !removed)) rc = EVB_RAISEF(EVB_ENOMEM, "out of memory");
    for (int u = 0; !rc && u < U; u++) {
        int n;
        rc = unit_zscores(env, u, z + n_all, &n);
        n_all += n;
    }
    if (!rc) qsort(z, (size_t)n_all, sizeof *z, cmp_z);
    for (int u = 0; u < U; u++) level[u] = (int16_t)(q->n_levels[u] - 1);
    for (int i = 0; !rc && i < n_all && predicted(mp, level) > hi; i++) {
        int u = z[i].u, groups = u >= L ? c->hidden_dim : c->n_kv_heads;
        level[u] = (int16_t)nearest_level(mp, c, u, groups - ++removed[u], steps);
    }
    free(z); free(removed);
    if (rc) return rc;
    if (!fill_band(mp, level, hi, 1))
        EVB_ERRORF(EVB_EBUDGET,
                   "FLAP's allocation does not reach the band of %.4g s (hint: more --struct-steps)",
                hi);
    return EVB_SUCCESS;
}
