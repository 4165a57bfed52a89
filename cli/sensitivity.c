/* sensitivity.c -- `evobudget sensitivity`: the sensitivity profile of a model for a target's levels (the
 * search's flags and level database), written as sensitivity.csv and sensitivity.json into --out; `evobudget
 * plot DIR` draws it as a heat map. The setup (model, windows, database, problem, teacher) is the search's
 * (cli/search.c); this file scores the profile and writes it. */
#include "cli/search.h"
#include "evobudget/evb_gguf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A level's value in the target's own measure: sparsity, bits, a GGUF type's bits per weight, or 1 (dropped). */
static double level_value(const evb_allocation_unit *a) {
    const evb_db_entry *k = &a->key;
    if (a->dense) return 0;
    if (a->zero) return 1;
    if (k->kind == EVB_LEVEL_QUANT) return k->bits;
    if (k->kind == EVB_LEVEL_GGUF) { const evb_gguf_type_info *t = evb_gguf_type_get(k->gguf_type); return t ? 8.0 * t->bytes / t->block : NAN; }
    if (k->kind == EVB_LEVEL_STRUCT) return (double)k->n_removed * k->group_size / k->cols;   /* fraction removed */
    return k->sparsity;
}

static const char *level_name(const evb_allocation_unit *a, char *buf, size_t n) {
    const evb_db_entry *k = &a->key;
    if (a->dense) snprintf(buf, n, "dense");
    else if (a->zero) snprintf(buf, n, "removed");
    else if (k->kind == EVB_LEVEL_QUANT) snprintf(buf, n, "%s %d-bit", k->method, k->bits);
    else if (k->kind == EVB_LEVEL_GGUF) { const evb_gguf_type_info *t = evb_gguf_type_get(k->gguf_type); snprintf(buf, n, "%s %s", k->method, t ? t->name : "?"); }
    else if (k->kind == EVB_LEVEL_STRUCT)
        snprintf(buf, n, "%s keeps %lld of %d", k->method, (long long)(k->cols / k->group_size - k->n_removed),
                 k->cols / k->group_size);
    else snprintf(buf, n, "%s %.4g", k->method, k->sparsity);
    return buf;
}

int run_profile(run *r, double t0) {
    const evb_mp *mp = r->mp;
    const evb_kl_params *kp = &r->kp;
    int U = mp->problem.n_units, max_l = 0, s = 0;
    for (int u = 0; u < U; u++) if (mp->problem.n_levels[u] > max_l) max_l = mp->problem.n_levels[u];
    double *kl = malloc(sizeof(double) * (size_t)U * max_l);
    int16_t *lv = malloc(sizeof(int16_t) * (size_t)U);
    evb_allocation **cfg = calloc((size_t)max_l, sizeof *cfg);
    if (!kl || !lv || !cfg) { free(kl); free(lv); free(cfg); return fail(EVB_RAISEF(EVB_ENOMEM, "out of memory")); }
    /* the level descriptions: configuration l holds every unit at its level min(l, last) */
    for (int l = 0; !s && l < max_l; l++) {
        for (int u = 0; u < U; u++) lv[u] = (int16_t)(l < mp->problem.n_levels[u] ? l : mp->problem.n_levels[u] - 1);
        s = evb_mp_config(mp, lv, NAN, &cfg[l]);
    }
    evb_batch b = {0, r->o->max_tokens > 0 ? (size_t)r->o->max_tokens : 0};
    size_t tokens = 0;
    progress pg = {now_s(), "sensitivity", isatty(2), 0, "levels"};
    double ts = now_s();
    if (!s) s = evb_mp_sensitivity(kp, &b, r->n_threads, kl, &tokens, progress_cb, &pg);
    double secs = now_s() - ts;
    size_t cap = 128 + (size_t)U * max_l * 240;
    char *csv = s ? NULL : malloc(cap), *p = csv;
    json_t *units = json_array();
    if (!s && (!csv || !units)) s = EVB_RAISEF(EVB_ENOMEM, "out of memory");
    if (!s) p += sprintf(p, "unit,name,block,kind,level,level_name,value,cost,kl\n");
    int drop = r->kind == EVB_TARGET_DROP;
    for (int u = 0; !s && u < U; u++) {
        const evb_fit_unit *fu = &kp->units[u];
        int block = fu->kind == EVB_UNIT_LINEAR ? fu->index / EVB_LINEAR_COUNT : fu->index;
        const char *kind = fu->kind == EVB_UNIT_ATTN || fu->kind == EVB_UNIT_ATTN_S ? "attn"
                         : fu->kind == EVB_UNIT_MLP || fu->kind == EVB_UNIT_MLP_S ? "mlp"
                         : evb_linear_name(fu->index % EVB_LINEAR_COUNT);
        char name[128], ln[96];
        if (drop) snprintf(name, sizeof name, "layers.%d.%s", block, kind);
        else snprintf(name, sizeof name, "%s", cfg[0]->units[u].name);
        json_t *levels = json_array();
        for (int l = 0; l < mp->problem.n_levels[u]; l++) {
            evb_allocation_unit dd = {0};
            const evb_allocation_unit *a = drop ? &dd : &cfg[l]->units[u];
            if (drop) { dd.zero = l != 0; dd.dense = l == 0; }
            double v = level_value(a), k = kl[(size_t)u * max_l + l], c = mp->problem.cost[u][l];
            level_name(a, ln, sizeof ln);
            p += sprintf(p, "%d,%s,%d,%s,%d,%s,%.9g,%.17g,%.9g\n", u, name, block, kind, l, ln, v, c, k);
            json_array_append_new(levels, json_pack("{s:i, s:s, s:f, s:f, s:f}", "level", l, "name", ln, "value", v, "cost", c, "kl", k));
        }
        json_array_append_new(units, json_pack("{s:i, s:s, s:i, s:s, s:o}", "unit", u, "name", name, "block", block, "kind", kind, "levels", levels));
    }
    int rc = s ? fail(s) : write_text(r->out, "sensitivity.csv", csv), n_lv = 0;
    for (int u = 0; u < U; u++) n_lv += mp->problem.n_levels[u];
    json_t *j = NULL;
    if (!rc) {
        j = json_pack("{s:s, s:s, s:s, s:f, s:s, s:s, s:I, s:I, s:f, s:O}", "evobudget", EVB_VERSION, "model", r->l.m->path,
                      "target_kind", evb_target_kind_name(r->kind), "target", mp->target, "compressor", r->comp ? r->comp->name : "",
                      "metric", r->metric == EVB_METRIC_PPL ? "ppl" : "kl", "tokens_per_level", (json_int_t)(n_lv ? tokens / (size_t)n_lv : 0),
                      "tokens", (json_int_t)tokens, "seconds", secs, "units", units);
        rc = j ? write_json(r->out, "sensitivity.json", j) : fail(EVB_RAISEF(EVB_ENOMEM, "out of memory"));
    }
    if (!rc && r->o->json)
        rc = print_json(json_pack("{s:s, s:i, s:i, s:I, s:f, s:f}", "dir", r->out, "units", U, "levels", n_lv, "tokens", (json_int_t)tokens,
                                  "seconds", secs, "total_seconds", now_s() - t0));
    else if (!rc)
        printf("%s: sensitivity of %d units, %d levels in all: %zu tokens scored in %.1f s; sensitivity.csv, sensitivity.json "
               "(evobudget plot %s draws it)\n", r->out, U, n_lv, tokens, secs, r->out);
    json_decref(j); json_decref(units);
    for (int l = 0; l < max_l; l++) evb_allocation_free(cfg[l]);
    free(cfg); free(kl); free(lv); free(csv);
    return rc;
}

/* The surrogate's prior from a sensitivity profile (--prior DIR or DIR/sensitivity.json): per unit and level its
 * KL, into prior[U * max_levels] (allocated). The profile must be of this problem: its units and their level
 * counts; otherwise EVB_EINVAL naming the file. A library status. */
int read_prior(const run *r, double **prior, int *max_levels, size_t *tokens) {
    const evb_problem *p = &r->mp->problem;
    char path[1400];
    size_t n = strlen(r->o->prior);
    snprintf(path, sizeof path, "%s%s", r->o->prior, n > 5 && !strcmp(r->o->prior + n - 5, ".json") ? "" : "/sensitivity.json");
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e), *units = json_object_get(j, "units");
    int U = p->n_units, maxl = 0;
    for (int u = 0; u < U; u++) if (p->n_levels[u] > maxl) maxl = p->n_levels[u];
    if (!j) EVB_ERRORF(EVB_EIO, "--prior %s: %s", path, e.text);
    size_t nu = json_array_size(units);
    if (!json_is_array(units) || nu != (size_t)U) {
        json_decref(j);
        EVB_ERRORF(EVB_EINVAL, "--prior %s: a profile of %zu units, this problem has %d (hint: run evobudget sensitivity with the same "
                   "model, target and levels)", path, nu, U);
    }
    double *v = malloc(sizeof(double) * (size_t)U * maxl);
    if (!v) { json_decref(j); EVB_ERROR("out of memory", EVB_ENOMEM); }
    for (int u = 0; u < U; u++) {
        json_t *lv = json_object_get(json_array_get(units, (size_t)u), "levels");
        size_t nl = json_array_size(lv);
        if (!json_is_array(lv) || nl != (size_t)p->n_levels[u]) {
            free(v); json_decref(j);
            EVB_ERRORF(EVB_EINVAL, "--prior %s: unit %d has %zu levels there, %d in this problem (hint: run evobudget sensitivity with the "
                       "same model, target and levels)", path, u, nl, p->n_levels[u]);
        }
        for (int l = 0; l < p->n_levels[u]; l++) {
            json_t *k = json_object_get(json_array_get(lv, (size_t)l), "kl");
            if (!json_is_number(k) || !isfinite(json_number_value(k))) {
                free(v); json_decref(j);
                EVB_ERRORF(EVB_EFORMAT, "--prior %s: unit %d level %d has no finite \"kl\"", path, u, l);
            }
            v[(size_t)u * maxl + l] = json_number_value(k);
        }
    }
    json_t *t = json_object_get(j, "tokens");
    double tv = json_is_number(t) ? json_number_value(t) : -1;
    if (!(tv >= 0 && tv <= 9e15)) {
        free(v); json_decref(j);
        EVB_ERRORF(EVB_EFORMAT, "--prior %s: no \"tokens\" count the profile scored (hint: run evobudget "
                   "sensitivity again)", path);
    }
    json_decref(j);
    *prior = v;
    *max_levels = maxl;
    *tokens = (size_t)tv;
    return EVB_SUCCESS;
}
