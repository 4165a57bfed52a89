/* rules.c -- the allocation rules EvoPress compares against: OWL and ECoFLaP (per-block sparsity) and
 * ShortGPT (the sub-blocks of least influence dropped), scored by the same fitness as the searches. */
#include "problems/problems.h"
#include "evobudget/evb_scores.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int evb_mp_score(const evb_kl_params *kp, const int16_t *level, int n_units, double *fitness) {
    return evb_fitness_once(&evb_fitness_kl, kp, level, n_units, fitness);
}

/* The positions of a forward over every window of w. */
static size_t positions(const evb_windows *w) {
    size_t n = 0;
    for (int i = 0; i < w->n; i++) n += (size_t)(w->len[i] > 1 ? w->len[i] - 1 : 0);
    return n;
}

/* evb_mp_score, its forward counted in env->tokens. */
static int score_counted(evb_mp_env *env, const evb_kl_params *kp, const int16_t *level, int n_units, double *fitness) {
    int s = evb_mp_score(kp, level, n_units, fitness);
    if (!s) env->tokens += positions(kp->w);
    return s;
}

static void record(const evb_mp_env *env, const char *fmt, double a, double b, double c, double d) {
    if (!env->record) return;
    char line[512];
    snprintf(line, sizeof line, fmt, a, b, c, d);
    env->record(env->ctx, line);
}

/* A candidate outside the problem's level space, per unit one database entry: builds the compressor's levels
 * at sparsity[l] for every unit of block l, scores them on every calibration token, and describes them in c
 * (units, cost, fitness, sparsity, storage). */
static int block_levels(evb_mp_env *env, const evb_mp *mp, const evb_kl_params *kp, const double *sparsity, evb_allocation *c) {
    const struct evb_mp_priv *q = mp->priv;
    int U = q->U, built, s = evb_mp_need_calib(env);
    evb_db_entry *keys = calloc(U, sizeof *keys);
    int *entry = malloc(sizeof(int) * U);
    evb_fit_unit *fu = malloc(sizeof(evb_fit_unit) * U);
    int16_t *zero = calloc(U, sizeof(int16_t));
    if (!keys || !entry || !fu || !zero) s = s ? s : EVB_RAISEF(EVB_ENOMEM, "out of memory");
    for (int u = 0; !s && u < U; u++) {
        keys[u].unit = u; keys[u].kind = EVB_LEVEL_SPARSE;
        keys[u].sparsity = round(sparsity[u / EVB_LINEAR_COUNT] * 1e6) / 1e6; /* six digits, as file names keep */
        snprintf(keys[u].method, sizeof keys[u].method, "%s", q->comp->name);
    }
    evb_level_grid g = {0};
    if (!s) s = evb_db_build_entries(env->db, env->m, env->calib, q->comp, &g, keys, U, &built);
    double kept = 0, storage = 0;
    for (int u = 0; !s && u < U; u++) {
        int rows, cols;
        evb_model_unit_shape(env->m, u, &rows, &cols);
        keys[u].rows = rows; keys[u].cols = cols;
        entry[u] = evb_db_find(env->db, &keys[u]);
        if (entry[u] < 0) { s = EVB_RAISEF(EVB_EFORMAT, "a level just built is missing from the database"); break; }
        evb_db_entry e = evb_db_get(env->db, entry[u]);
        kept += e.params_kept;
        storage += evb_mp_level_storage(rows, cols, &e);
        fu[u] = (evb_fit_unit){EVB_UNIT_LINEAR, u, 1, entry + u, NULL};
        evb_allocation_unit *x = &c->units[u];
        x->unit = u; x->key = keys[u]; x->key.sparsity = e.sparsity; x->cost = e.params_kept;
        evb_mp_unit_name(u, x->name, sizeof x->name);
    }
    evb_kl_params k = *kp;
    k.units = fu;
    if (!s) s = score_counted(env, &k, zero, U, &c->fitness);
    c->cost = kept;
    c->sparsity = 1.0 - kept / mp->total_size;
    c->storage_bytes = storage / 8;
    free(keys); free(entry); free(fu); free(zero);
    return s;
}

/* EvoPress's OWL baseline: the lambda x M grid, the best by the fitness on every calibration token. */
static int rule_owl(evb_mp_env *env, const evb_mp *mp, const evb_kl_params *kp, evb_allocation *best, evb_allocation *c) {
    static const double lambdas[] = {0.02, 0.05, 0.08, 0.1, 0.2}, Ms[] = {3, 5, 7, 10};
    int L = env->m->config.n_layers, s = evb_mp_need_calib(env);
    double *lod = malloc(sizeof(double) * L), *sp = malloc(sizeof(double) * L);
    if (!lod || !sp) s = s ? s : EVB_RAISEF(EVB_ENOMEM, "out of memory");
    best->fitness = INFINITY;
    for (int mi = 0; !s && mi < 4; mi++) {
        s = evb_score_owl(env->m, env->calib, Ms[mi], lod);
        for (int li = 0; !s && li < 5; li++) {
            s = evb_alloc_owl(lod, L, mp->target, lambdas[li], sp);
            for (int l = 0; !s && l < L; l++) if (sp[l] > 0.99) sp[l] = 0.99;
            if (!s) s = block_levels(env, mp, kp, sp, c);
            if (s) break;
            record(env, "{\"lambda\": %g, \"M\": %g, \"fitness\": %.10g, \"sparsity\": %.6f}", lambdas[li], Ms[mi], c->fitness, c->sparsity);
            evb_mp_say(env, "owl lambda %.2f M %2.0f: fitness %.5f", lambdas[li], Ms[mi], c->fitness);
            if (c->fitness < best->fitness) {
                evb_allocation_unit *units = best->units;   /* the arrays stay each one's own */
                evb_allocation_drop *drop = best->drop;
                memcpy(units, c->units, sizeof *units * c->n_units);
                *best = *c;
                best->units = units;
                best->drop = drop;
            }
        }
    }
    free(lod); free(sp);
    return s;
}

/* ECoFLaP: zeroth-order block scores (the sum over the block's layers) on 32 windows, the cap at target + 0.1. */
static int rule_ecoflap(evb_mp_env *env, const evb_mp *mp, const evb_kl_params *kp, uint64_t seed, evb_allocation *c) {
    int L = env->m->config.n_layers, U = mp->priv->U, s = 0;
    double *score = malloc(sizeof(double) * U), *bscore = calloc(L, sizeof(double)), *bsize = calloc(L, sizeof(double));
    double *sp = malloc(sizeof(double) * L);
    if (!score || !bscore || !bsize || !sp) s = EVB_RAISEF(EVB_ENOMEM, "out of memory");
    evb_windows sub = *env->w;
    sub.n = sub.n < 32 ? sub.n : 32; /* ECoFLaP's 32 samples */
    if (!s) evb_mp_say(env, "ecoflap: scoring %d units on %d windows (two perturbed forwards each)", U, sub.n);
    if (!s) s = evb_score_ecoflap_progress(env->m, &sub, env->batch > 0 ? env->batch : 8, 1e-3, seed, score, env->progress, env->ctx);
    if (!s) env->tokens += (1 + 2 * (size_t)U) * positions(&sub); /* the dense forward, then two per unit (from its block on) */
    for (int u = 0; !s && u < U; u++) {
        int rows, cols;
        evb_model_unit_shape(env->m, u, &rows, &cols);
        bscore[u / EVB_LINEAR_COUNT] += score[u];
        bsize[u / EVB_LINEAR_COUNT] += (double)rows * cols;
    }
    double cap = mp->target + 0.1 < 0.99 ? mp->target + 0.1 : 0.99;
    if (!s) s = evb_alloc_ecoflap(bscore, bsize, L, mp->target, cap, sp);
    if (!s) evb_mp_say(env, "ecoflap: building and scoring the allocation");
    if (!s) s = block_levels(env, mp, kp, sp, c);
    for (int l = 0; !s && l < L; l++) record(env, "{\"block\": %.0f, \"score\": %.10g, \"sparsity\": %.6f}", l, bscore[l], sp[l], 0);
    free(score); free(bscore); free(bsize); free(sp);
    return s;
}

/* ShortGPT: drop the k attention and k MLP sub-blocks of least block influence. */
static int rule_shortgpt(evb_mp_env *env, const evb_mp *mp, const evb_kl_params *kp, evb_allocation **out) {
    int L = env->m->config.n_layers, U = mp->priv->U, k = (int)llround((mp->total_size - mp->problem.budget) / 2);
    double *bi = malloc(sizeof(double) * 3 * L), fit = 0;
    int16_t *level = calloc(U, sizeof(int16_t));
    int s = bi && level ? evb_score_block_influence(env->m, env->w, env->batch > 0 ? env->batch : 8, bi, bi + L, bi + 2 * L)
                        : EVB_RAISEF(EVB_ENOMEM, "out of memory");
    for (int kind = 0; !s && kind < 2; kind++) {
        const double *b = bi + (1 + kind) * L;
        for (int j = 0; j < k; j++) {
            int lo = -1;
            for (int l = 0; l < L; l++) if (!level[kind * L + l] && (lo < 0 || b[l] < b[lo])) lo = l;
            level[kind * L + lo] = 1;
        }
    }
    if (!s) env->tokens += positions(env->w);      /* the block-influence forward */
    if (!s) s = score_counted(env, kp, level, U, &fit);
    if (!s) s = evb_mp_config(mp, level, fit, out);
    free(bi); free(level);
    return s;
}

/* FLAP's global allocation of a speed problem (problems/speed.c), scored on every calibration token. */
static int rule_flap(evb_mp_env *env, evb_mp *mp, const evb_kl_params *kp, evb_allocation **out) {
    int U = mp->priv->U;
    int16_t *level = malloc(sizeof(int16_t) * (size_t)U);
    double fit = 0;
    if (!level) EVB_ERROR("out of memory", EVB_ENOMEM);
    int s = evb_mp_flap_levels(env, mp, level);
    if (!s) s = score_counted(env, kp, level, U, &fit);
    if (!s) s = evb_mp_config(mp, level, fit, out);
    free(level);
    return s;
}

int evb_mp_rule(evb_mp_env *env, evb_mp *mp, const evb_kl_params *kp, const char *rule, uint64_t seed, evb_allocation **out) {
    *out = NULL;
    if (!evb_mp_is_rule(rule)) EVB_ERRORF(EVB_EINVAL,
                                          "'%s' is not an allocation rule (owl, ecoflap, shortgpt, flap)",
            rule);
    if ((strcmp(rule, "flap") == 0) != (mp->kind == EVB_TARGET_SPEEDUP || mp->kind == EVB_TARGET_LATENCY))
        EVB_ERRORF(EVB_EINVAL,
                   "%s: FLAP allocates structured removal for --target-speedup or --target-latency; this "
                   "problem's target is %s", rule, evb_target_kind_name(mp->kind));
    if (!strcmp(rule, "flap")) {
        int s = rule_flap(env, mp, kp, out);
        if (!s) (*out)->fitness_all = (*out)->fitness;
        return s;
    }
    int shortgpt = strcmp(rule, "shortgpt") == 0;
    if (shortgpt != (mp->kind == EVB_TARGET_DROP) || (!shortgpt && mp->kind != EVB_TARGET_SPARSITY))
        EVB_ERRORF(EVB_EINVAL, "%s allocates %s; this problem's target is %s", rule, shortgpt ? "dropped sub-blocks" : "sparsity", evb_target_kind_name(mp->kind));
    if (shortgpt) {
        int s = rule_shortgpt(env, mp, kp, out);
        if (!s) (*out)->fitness_all = (*out)->fitness;
        return s;
    }
    evb_allocation *best = NULL, *c = NULL;
    int s = evb_allocation_new(mp->priv->U, 0, &best);
    if (!s) s = evb_allocation_new(mp->priv->U, 0, &c);
    if (!s) s = strcmp(rule, "owl") == 0 ? rule_owl(env, mp, kp, best, c) : rule_ecoflap(env, mp, kp, seed, best);
    evb_allocation_free(c);
    if (s) { evb_allocation_free(best); return s; }
    snprintf(best->model, sizeof best->model, "%s", env->m->path);
    snprintf(best->target_kind, sizeof best->target_kind, "%s", evb_target_kind_name(mp->kind));
    best->target = mp->target;
    best->budget = mp->problem.budget;
    best->fitness_all = best->fitness;
    *out = best;
    return EVB_SUCCESS;
}
