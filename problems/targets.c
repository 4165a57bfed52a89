/* targets.c -- the problems of a model's targets: sparsity, bits, bytes (joint) and drop (see
 * evb_problems.h for what each one is). Each builds the levels the database lacks first. */
#include "problems/problems.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The joint search's levels of every linear layer, besides the zero matrix and the dense weight. */
static const double joint_sparsities[] = {0.5, 0.6, 0.7, 0.8, 0.9};
static const int joint_bits[] = {2, 3, 4, 5, 6};
enum { N_JOINT_SPARSE = 5, N_JOINT_BITS = 5 };

static evb_db_entry sparse_key(int u, const char *method, int64_t n_removed) {
    evb_db_entry k = {0};
    k.unit = u; k.kind = EVB_LEVEL_SPARSE; k.n_removed = n_removed;
    snprintf(k.method, sizeof k.method, "%s", method);
    return k;
}

static evb_db_entry quant_key(int u, const char *method, int bits, int group_size, int sym) {
    evb_db_entry k = {0};
    k.unit = u; k.kind = EVB_LEVEL_QUANT; k.bits = bits; k.group_size = group_size; k.sym = sym;
    snprintf(k.method, sizeof k.method, "%s", method);
    return k;
}

/* Builds the grid's levels with method when any of keys[n] is missing. */
static int build_missing(evb_mp_env *env, const evb_method *method, const evb_level_grid *g, const evb_db_entry *keys,
                         int n, const char *what) {
    int missing = 0, built = 0, present = 0;
    for (int i = 0; i < n && !missing; i++) missing = evb_db_find(env->db, &keys[i]) < 0;
    if (!missing) return EVB_SUCCESS;
    int s = evb_mp_need_calib(env);
    if (s) return s;
    evb_mp_say(env, "building the %s levels %s", method->name, what);
    return evb_db_build(env->db, env->m, env->calib, method, g, &built, &present, env->progress, env->ctx);
}

static int missing_level(int u) {
    EVB_ERRORF(EVB_EFORMAT, "the level database lacks a level of unit %d it was just given", u);
}

int evb_mp_build_sparsity(evb_mp_env *env, const evb_mp_params *p, evb_mp *mp) {
    struct evb_mp_priv *q = mp->priv;
    int U = q->U, K = p->num_levels;
    const char *cm = p->compressor->name;
    evb_level_grid g = {0};
    g.step_target = p->target; g.step_levels = K; g.step_weights = evb_step_weights_default(env->m, p->target, K);
    evb_db_entry *keys = malloc(sizeof *keys * (size_t)U * (2 * K + 1));
    if (!keys) EVB_ERRORF(EVB_ENOMEM, "out of memory");
    int n = 0;
    for (int u = 0; u < U; u++) {
        int rows, cols, lo, hi;
        evb_model_unit_shape(env->m, u, &rows, &cols);
        int64_t N = (int64_t)rows * cols, base = evb_step_range(N, p->target, g.step_weights, K, &lo, &hi);
        for (int l = -lo; l <= hi; l++)
            if (base + (int64_t)l * g.step_weights > 0) keys[n++] = sparse_key(u, cm, base + (int64_t)l * g.step_weights);
    }
    char what[96];
    snprintf(what, sizeof what, "around sparsity %g", p->target);
    int s = build_missing(env, p->compressor, &g, keys, n, what);
    free(keys);
    for (int u = 0; !s && u < U; u++) {
        int rows, cols, lo, hi, k = 0;
        evb_model_unit_shape(env->m, u, &rows, &cols);
        int64_t N = (int64_t)rows * cols, base = evb_step_range(N, p->target, g.step_weights, K, &lo, &hi);
        for (int l = -lo; l <= hi && !s; l++, k++) {
            evb_db_entry key = sparse_key(u, cm, base + (int64_t)l * g.step_weights);
            int e = key.n_removed > 0 ? evb_db_find(env->db, &key) : EVB_ENTRY_DENSE;
            if (key.n_removed > 0 && e < 0) s = missing_level(u);
            evb_allocation_unit *d = &q->desc[u * q->max_levels + k];
            d->dense = e < 0;
            key.sparsity = (double)key.n_removed / (double)N;
            d->key = key;
            q->entry[u * q->max_levels + k] = e;
            q->cost[u][k] = (double)(N - key.n_removed);
            if (l == 0) q->start[u] = (int16_t)k;
        }
        q->n_levels[u] = k;
        mp->problem.budget += (double)(N - base);
        mp->total_size += (double)N;
    }
    mp->problem.tolerance = 0.5; /* the step is the same number of weights in every unit: trades keep the total exactly */
    return s;
}

/* The bits start: floor(X) bits everywhere, then, group by group, floor(frac(X) n_g) of its units one bit
 * more, then single units one bit more wherever that stays within the budget (EvoPress's "at most the
 * target"). Its distance to the budget (fractions no group can hold exactly) becomes the tolerance;
 * switches inside a group keep the total exactly. */
static void bits_start(evb_mp *mp, const size_t *sizes, int n_sizes) {
    struct evb_mp_priv *q = mp->priv;
    double total = 0, fl = floor(mp->target), budget = mp->problem.budget;
    for (int u = 0; u < q->U; u++) { q->start[u] = (int16_t)(fl - 2); total += fl * q->cost[u][0] / 2.0; }
    for (int g = 0; g < n_sizes; g++) {
        int n_g = 0;
        for (int u = 0; u < q->U; u++) n_g += q->group[u] == g;
        int up = (int)floor((mp->target - fl) * n_g + 1e-9), done = 0;
        for (int u = 0; u < q->U && done < up; u++)
            if (q->group[u] == g && q->start[u] + 1 < q->n_bits) { q->start[u]++; total += (double)sizes[g]; done++; }
    }
    for (int u = 0; u < q->U; u++) {
        double step = (double)sizes[q->group[u]];
        if (q->start[u] + 1 < q->n_bits && total + step <= budget + 1e-9 * budget) { q->start[u]++; total += step; }
    }
    mp->problem.tolerance = fabs(total - budget) + 1e-9 * budget;
}

int evb_mp_build_bits(evb_mp_env *env, const evb_mp_params *p, evb_mp *mp) {
    struct evb_mp_priv *q = mp->priv;
    int U = q->U, nb = 0, gs = p->group_size ? p->group_size : 64;
    for (int b = 2; b <= 6; b++) q->bits[nb++] = b;
    q->n_bits = nb;
    evb_level_grid g = {0};
    g.bits = q->bits; g.n_bits = nb; g.group_size = gs; g.sym = p->sym;
    evb_db_entry *keys = malloc(sizeof *keys * (size_t)U * nb);
    if (!keys) EVB_ERRORF(EVB_ENOMEM, "out of memory");
    for (int u = 0; u < U; u++)
        for (int k = 0; k < nb; k++) keys[u * nb + k] = quant_key(u, p->compressor->name, q->bits[k], gs, p->sym);
    int s = build_missing(env, p->compressor, &g, keys, U * nb, "of 2..6 bits");
    size_t sizes[64];   /* groups: units of equal size (EvoPress's group_rule "size") */
    int n_sizes = 0;
    for (int u = 0; !s && u < U; u++) {
        int rows, cols, grp = 0;
        evb_model_unit_shape(env->m, u, &rows, &cols);
        size_t N = (size_t)rows * cols;
        while (grp < n_sizes && sizes[grp] != N) grp++;
        if (grp == 64) { s = EVB_RAISEF(EVB_EINVAL, "the model has more than 64 distinct layer sizes"); break; }
        if (grp == n_sizes) sizes[n_sizes++] = N;
        q->group[u] = grp;
        for (int k = 0; k < nb; k++) {
            q->entry[u * q->max_levels + k] = evb_db_find(env->db, &keys[u * nb + k]);
            q->cost[u][k] = (double)q->bits[k] * (double)N;
            q->desc[u * q->max_levels + k].key = keys[u * nb + k];
        }
        q->n_levels[u] = nb;
        mp->problem.budget += p->target * (double)N;
        mp->total_size += 32.0 * (double)N;
    }
    free(keys);
    if (!s) bits_start(mp, sizes, n_sizes);
    return s;
}

typedef struct joint_level { double cost, err; int entry; } joint_level;
static int cmp_joint_level(const void *a, const void *b) {
    const joint_level *x = a, *y = b;
    return x->cost < y->cost ? -1 : x->cost > y->cost ? 1 : x->entry - y->entry;
}

static evb_db_entry joint_key(int u, int k, int gs, int sym) {
    if (k < N_JOINT_SPARSE) {
        evb_db_entry key = sparse_key(u, "sparsegpt", 0);
        key.sparsity = joint_sparsities[k];
        return key;
    }
    return quant_key(u, "gptq", joint_bits[k - N_JOINT_SPARSE], gs, sym);
}

/* Unit u's joint levels, ordered by storage, a level that stores more than a cheaper one and reconstructs
 * the layer's output worse left out; the start is the cheapest level at or above bpw bits per weight. */
static void joint_unit(const evb_mp_env *env, evb_mp *mp, int u, int gs, int sym, double bpw, double *err) {
    struct evb_mp_priv *q = mp->priv;
    int rows, cols, n = 0, kept = 0;
    evb_model_unit_shape(env->m, u, &rows, &cols);
    double N = (double)rows * cols;
    joint_level lv[2 + N_JOINT_SPARSE + N_JOINT_BITS];
    lv[n++] = (joint_level){0.0, 1.0, EVB_ENTRY_ZERO};
    for (int k = 0; k < N_JOINT_SPARSE + N_JOINT_BITS; k++) {
        evb_db_entry key = joint_key(u, k, gs, sym);
        int e = evb_db_find(env->db, &key);
        evb_db_entry got = evb_db_get(env->db, e);
        lv[n++] = (joint_level){evb_mp_level_storage(rows, cols, &got), got.recon_error, e};
    }
    lv[n++] = (joint_level){16.0 * N, 0.0, EVB_ENTRY_DENSE};
    qsort(lv, n, sizeof *lv, cmp_joint_level);
    for (int k = 0; k < n; k++)
        if (kept == 0 || lv[k].err < lv[kept - 1].err) lv[kept++] = lv[k];
    for (int k = 0; k < kept; k++) {
        evb_allocation_unit *d = &q->desc[u * q->max_levels + k];
        q->entry[u * q->max_levels + k] = lv[k].entry;
        q->cost[u][k] = lv[k].cost;
        err[u * q->max_levels + k] = lv[k].err;
        if (lv[k].cost < bpw * N) q->start[u] = (int16_t)(k + 1 < kept ? k + 1 : k);
        d->zero = lv[k].entry == EVB_ENTRY_ZERO;
        d->dense = lv[k].entry == EVB_ENTRY_DENSE;
        if (lv[k].entry >= 0) d->key = evb_db_get(env->db, lv[k].entry);
        d->storage_bpw = lv[k].cost / N;
    }
    q->n_levels[u] = kept;
}

/* The joint start, a greedy knapsack on the reconstruction errors: while over the target, the step down
 * that adds the least error per bit saved; then, while room is left, the step up that removes the most error
 * per bit among those that fit. Returns the start's cost. */
static double joint_start(evb_mp *mp, const double *err, double total, double hi) {
    struct evb_mp_priv *q = mp->priv;
    int M = q->max_levels;
    for (int down = 1; down >= 0; down--)
        for (;;) {
            if (down && total <= hi) break;
            int bu = -1;
            double best = down ? INFINITY : -1;
            for (int u = 0; u < q->U; u++) {
                int k = q->start[u], k2 = down ? k - 1 : k + 1;
                if (k2 < 0 || k2 >= q->n_levels[u] || (!down && total + q->cost[u][k2] - q->cost[u][k] > hi)) continue;
                double rate = (err[u * M + k2] - err[u * M + k]) / fabs(q->cost[u][k] - q->cost[u][k2]);
                if (down ? rate < best : -rate > best) { best = down ? rate : -rate; bu = u; }
            }
            if (bu < 0) break;
            int k = q->start[bu], k2 = down ? k - 1 : k + 1;
            total += q->cost[bu][k2] - q->cost[bu][k];
            q->start[bu] = (int16_t)k2;
        }
    return total;
}

int evb_mp_build_bytes(evb_mp_env *env, const evb_mp_params *p, evb_mp *mp) {
    struct evb_mp_priv *q = mp->priv;
    int U = q->U, gs = p->group_size ? p->group_size : 64, nk = N_JOINT_SPARSE + N_JOINT_BITS;
    for (int u = 0; u < U; u++) {
        int rows, cols;
        evb_model_unit_shape(env->m, u, &rows, &cols);
        mp->total_size += (double)rows * cols;
    }
    if (!(p->target < mp->total_size * 2))
        EVB_ERRORF(EVB_EINVAL, "a target of %.0f bytes is not below the 16-bit dense size of the linear layers, %.0f bytes", p->target, mp->total_size * 2);
    evb_level_grid gsp = {0}, gb = {0};
    gsp.sparsities = joint_sparsities; gsp.n_sparsities = N_JOINT_SPARSE;
    gb.bits = joint_bits; gb.n_bits = N_JOINT_BITS; gb.group_size = gs; gb.sym = p->sym;
    evb_db_entry *keys = malloc(sizeof *keys * (size_t)U * nk);
    if (!keys) EVB_ERRORF(EVB_ENOMEM, "out of memory");
    for (int u = 0; u < U; u++)
        for (int k = 0; k < nk; k++) keys[u * nk + k] = joint_key(u, k, gs, p->sym);
    int s = build_missing(env, evb_method_find("sparsegpt"), &gsp, keys, U * nk, "of 50..90%");
    if (!s) s = build_missing(env, evb_method_find("gptq"), &gb, keys, U * nk, "of 2..6 bits");
    for (int i = 0; !s && i < U * nk; i++)
        if (evb_db_find(env->db, &keys[i]) < 0) s = missing_level(keys[i].unit);
    free(keys);
    if (s) return s;
    double *err = malloc(sizeof(double) * U * q->max_levels), total = 0, hi = p->target * 8.0;
    if (!err) EVB_ERRORF(EVB_ENOMEM, "out of memory");
    for (int u = 0; u < U; u++) {
        joint_unit(env, mp, u, gs, p->sym, hi / mp->total_size, err);
        total += q->cost[u][q->start[u]];
    }
    /* the budget: [0.995, 1] of the target's bits; costs are whole bits: +0.5 admits the target, not a bit more */
    mp->problem.tolerance = 0.0025 * hi;
    mp->problem.budget = hi - mp->problem.tolerance;
    mp->problem.tolerance += 0.5;
    total = joint_start(mp, err, total, hi);
    free(err);
    if (total < mp->problem.budget - mp->problem.tolerance)
        EVB_ERRORF(EVB_EBUDGET, "a target of %.0f bytes: the levels cannot fill it to within 0.5%% (best start %.0f bytes; hint: a larger target, or a model with more layers)", p->target, total / 8);
    return EVB_SUCCESS;
}

int evb_mp_build_drop(evb_mp_env *env, const evb_mp_params *p, evb_mp *mp) {
    struct evb_mp_priv *q = mp->priv;
    int L = q->U / 2, k = (int)llround(p->target * L);
    (void)env;
    if (k < 1 || k >= L) EVB_ERRORF(EVB_EINVAL, "dropping a fraction %g drops %d of %d sub-blocks of each kind; give a fraction that drops between 1 and %d", p->target, k, L, L - 1);
    for (int u = 0; u < 2 * L; u++) {
        int l = u % L, attn = u < L;
        q->n_levels[u] = 2;
        q->cost[u][0] = 1; q->cost[u][1] = 0; /* cost: sub-blocks kept, so less is smaller as for the other targets */
        q->group[u] = attn ? 0 : 1;
        q->start[u] = (int16_t)(l >= L - k); /* a feasible start: the last k of each kind */
        q->fu[u] = (evb_fit_unit){attn ? EVB_UNIT_ATTN : EVB_UNIT_MLP, l, 2, NULL, NULL};
    }
    mp->problem.budget = 2 * (L - k);
    mp->problem.tolerance = 0.5;
    mp->total_size = 2 * L;
    return EVB_SUCCESS;
}

/* The default GGUF types: every block type (the k-quants, then the block-32 ones). */
static const int gguf_default_types[] = {EVB_GGUF_Q2_K, EVB_GGUF_Q3_K, EVB_GGUF_Q4_K, EVB_GGUF_Q5_K, EVB_GGUF_Q6_K,
                                         EVB_GGUF_Q4_0, EVB_GGUF_Q4_1, EVB_GGUF_Q5_0, EVB_GGUF_Q5_1, EVB_GGUF_Q8_0};

/* Bits per weight over GGUF types: each unit's levels are the types its rows hold, ordered by their storage
 * (bits_stored: the blocks' codes, scales and mins), a type that stores as much as or more than another and
 * reconstructs the layer worse left out. A unit whose rows hold no type (e.g. 688 inputs: neither whole
 * blocks of 32 nor of 256) stays dense, in F16 as llama.cpp leaves such tensors, outside the budget: the
 * target is the average over the units the types can hold. The budget as for bytes, the band [0.995, 1] of
 * the target's bits. The start (what method uniform scores): every unit at the level of exactly the target's
 * bits per weight when each unit has one (4.5: Q4_K, or Q4_0 where it reconstructs better), else the greedy
 * knapsack on the reconstruction errors. */
int evb_mp_build_gguf(evb_mp_env *env, const evb_mp_params *p, evb_mp *mp) {
    struct evb_mp_priv *q = mp->priv;
    const int *types = p->gguf_types ? p->gguf_types : gguf_default_types;
    int U = q->U, nt = p->gguf_types ? p->n_gguf_types : (int)(sizeof gguf_default_types / sizeof *gguf_default_types);
    if (nt < 1 || nt > EVB_GGUF_MAX_LEVELS) EVB_ERRORF(EVB_EINVAL, "%d GGUF types asked; give 1 to %d", nt, EVB_GGUF_MAX_LEVELS);
    evb_level_grid g = {0};
    g.gguf_types = types; g.n_gguf_types = nt;
    evb_db_entry *keys = malloc(sizeof *keys * (size_t)U * nt);
    if (!keys) EVB_ERRORF(EVB_ENOMEM, "out of memory");
    int n = 0, n_held = 0, exact_start = 0; /* units whose start is not exactly at the target */
    double N_held = 0;
    for (int u = 0; u < U; u++) {
        int rows, cols, any = 0;
        evb_model_unit_shape(env->m, u, &rows, &cols);
        for (int k = 0; k < nt; k++) {
            if (!evb_gguf_row_ok(types[k], cols)) continue;
            evb_db_entry key = {0};
            key.unit = u; key.kind = EVB_LEVEL_GGUF; key.gguf_type = types[k];
            snprintf(key.method, sizeof key.method, "%s", p->compressor->name);
            keys[n++] = key;
            any = 1;
        }
        n_held += any;
        N_held += any ? (double)rows * cols : 0;
    }
    if (!n_held) { free(keys); EVB_ERRORF(EVB_EINVAL, "no linear layer's rows hold whole blocks of the GGUF types asked"); }
    int s = build_missing(env, p->compressor, &g, keys, n, "of the GGUF types");
    double *err = s ? NULL : malloc(sizeof(double) * U * q->max_levels), total = 0, hi = p->target * N_held;
    if (!s && !err) s = EVB_RAISEF(EVB_ENOMEM, "out of memory");
    for (int u = 0, i = 0; !s && u < U; u++) {
        int rows, cols, nl = 0, kept = 0;
        evb_model_unit_shape(env->m, u, &rows, &cols);
        joint_level lv[EVB_GGUF_MAX_LEVELS];
        for (; i < n && keys[i].unit == u; i++) {
            int e = evb_db_find(env->db, &keys[i]);
            if (e < 0) { s = missing_level(u); break; }
            evb_db_entry got = evb_db_get(env->db, e);
            lv[nl++] = (joint_level){got.bits_stored, got.recon_error, e};
        }
        q->group[u] = 0;
        if (!nl) { /* dense, outside the budget */
            q->n_levels[u] = 1; q->cost[u][0] = 0; q->entry[u * q->max_levels] = EVB_ENTRY_DENSE;
            q->desc[u * q->max_levels].dense = 1; q->desc[u * q->max_levels].storage_bpw = 16;
            q->start[u] = 0;
            continue;
        }
        qsort(lv, nl, sizeof *lv, cmp_joint_level);
        for (int k = 0; k < nl; k++)
            if (kept == 0 || lv[k].err < lv[kept - 1].err) {
                if (kept > 0 && lv[k].cost == lv[kept - 1].cost) kept--; /* the same storage, a smaller error */
                lv[kept++] = lv[k];
            }
        double Nu = (double)rows * cols;
        q->start[u] = 0;
        exact_start += 1;
        for (int k = 0; k < kept; k++) {
            evb_allocation_unit *d = &q->desc[u * q->max_levels + k];
            q->entry[u * q->max_levels + k] = lv[k].entry;
            q->cost[u][k] = lv[k].cost;
            err[u * q->max_levels + k] = lv[k].err;
            d->key = evb_db_get(env->db, lv[k].entry);
            d->storage_bpw = lv[k].cost / Nu;
            if (lv[k].cost <= p->target * Nu) q->start[u] = (int16_t)k;
        }
        exact_start -= q->cost[u][q->start[u]] == p->target * Nu;
        q->n_levels[u] = kept;
        total += q->cost[u][q->start[u]];
    }
    free(keys);
    if (s) { free(err); return s; }
    mp->total_size = 32.0 * N_held;
    mp->problem.tolerance = 0.0025 * hi;
    mp->problem.budget = hi - mp->problem.tolerance;
    mp->problem.tolerance += 0.5;
    if (exact_start) total = joint_start(mp, err, total, hi);
    free(err);
    if (total < mp->problem.budget - mp->problem.tolerance || total > hi + 0.5)
        EVB_ERRORF(EVB_EBUDGET, "a target of %g bits per weight: the GGUF types offered cannot meet it to within 0.5%% (the start holds "
                   "%.4f; hint: a target between the cheapest and the dearest type the layers hold)", p->target, total / N_held);
    return EVB_SUCCESS;
}
