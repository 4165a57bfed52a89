/* file.c -- problem files (docs/problem-files.md, docs/problem.schema.json): units, levels, costs and the
 * budget from JSON, no model; and their built-in additive fitness. */
#include "problems/problems.h"
#include "core/json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t additive_size(const void *params) { (void)params; return 1; }
static int additive_eval(const void *params, void *w, const evb_genome *g, const evb_genome *ref, const evb_batch *b, double *f) {
    (void)w; (void)ref; (void)b;
    const evb_mp *mp = params;
    const struct evb_mp_priv *q = mp->priv;
    double v = 0;
    for (int u = 0; u < g->n_units; u++) {
        double x = q->level_fit ? q->level_fit[(size_t)u * q->max_levels + g->level[u]] : NAN;
        if (isnan(x)) EVB_ERRORF(EVB_EINVAL, "unit %d level %d has no \"fitness\" value for the additive fitness", u, g->level[u]);
        v += x;
    }
    *f = v;
    return EVB_SUCCESS;
}
const evb_fitness_type evb_fitness_additive = {"additive", additive_size, NULL, NULL, additive_eval};

/* Unit i's levels: costs, values, and the other fields as the level's description. */
static int read_levels(const json_t *x, evb_mp *mp, int i, const char *path) {
    struct evb_mp_priv *q = mp->priv;
    json_t *lv = json_object_get(x, "levels"), *l, *g = json_object_get(x, "group"), *nm = json_object_get(x, "name");
    size_t k;
    evb_allocation_unit *d = q->desc + (size_t)i * q->max_levels;
    if (g && (!json_is_integer(g) || json_integer_value(g) < 0 || json_integer_value(g) > 1 << 30))
        EVB_ERRORF(EVB_EFORMAT, "%s: units[%d].group must be an integer >= 0", path, i);
    if (nm && (!json_is_string(nm) || strlen(json_string_value(nm)) >= sizeof d->name))
        EVB_ERRORF(EVB_EFORMAT, "%s: units[%d].name must be a string of fewer than %zu bytes", path, i, sizeof d->name);
    q->group[i] = g ? (int)json_integer_value(g) : 0;
    q->n_levels[i] = (int)json_array_size(lv);
    json_array_foreach(lv, k, l) {
        json_t *c = json_object_get(l, "cost"), *f = json_object_get(l, "fitness");
        if (!json_is_number(c) || !isfinite(json_number_value(c))) EVB_ERRORF(EVB_EFORMAT, "%s: units[%d].levels[%zu] needs a finite \"cost\"", path, i, k);
        if (f && (!json_is_number(f) || !isfinite(json_number_value(f)))) EVB_ERRORF(EVB_EFORMAT, "%s: units[%d].levels[%zu].fitness must be a finite number", path, i, k);
        q->cost[i][k] = json_number_value(c);
        q->level_fit[(size_t)i * q->max_levels + k] = f ? json_number_value(f) : NAN;
        if (nm) snprintf(d[k].name, sizeof d[k].name, "%s", json_string_value(nm));
        else snprintf(d[k].name, sizeof d[k].name, "unit%d", i);
        json_t *rest = json_deep_copy(l);
        json_object_del(rest, "cost");
        json_object_del(rest, "fitness");
        if (json_object_size(rest)) d[k].extra = json_dumps(rest, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(rest);
        d[k].fitness = q->level_fit[(size_t)i * q->max_levels + k];
    }
    return EVB_SUCCESS;
}

/* The start: given, or left to the search (a feasible candidate from the cheapest levels). */
static int read_start(const json_t *j, evb_mp *mp, const char *path) {
    struct evb_mp_priv *q = mp->priv;
    json_t *st = json_object_get(j, "start"), *x;
    size_t i;
    if (!st) return EVB_SUCCESS;
    if (!json_is_array(st) || (int)json_array_size(st) != q->U) EVB_ERRORF(EVB_EFORMAT, "%s: \"start\" must give a level for each of the %d units", path, q->U);
    json_array_foreach(st, i, x) {
        json_int_t v = json_is_integer(x) ? json_integer_value(x) : -1;
        if (v < 0 || v >= q->n_levels[i]) EVB_ERRORF(EVB_EFORMAT, "%s: start[%zu] = %s is not a level of that unit", path, i, json_is_integer(x) ? "out of range" : "not an integer");
        q->start[i] = (int16_t)v;
    }
    mp->start_given = 1;
    return EVB_SUCCESS;
}

static int read_problem(const json_t *j, const char *path, evb_mp **out) {
    json_t *units = json_object_get(j, "units"), *fmt = json_object_get(j, "format"), *x;
    if (fmt && json_integer_value(fmt) != 1) EVB_ERRORF(EVB_EFORMAT, "%s: format %lld, this program reads format 1", path, (long long)json_integer_value(fmt));
    if (!json_is_array(units) || json_array_size(units) < 1 || json_array_size(units) > (1 << 24)) EVB_ERRORF(EVB_EFORMAT, "%s: \"units\" must be a non-empty array", path);
    if (!json_is_number(json_object_get(j, "budget"))) EVB_ERRORF(EVB_EFORMAT, "%s: \"budget\" must be a number", path);
    int U = (int)json_array_size(units), maxl = 0;
    size_t i;
    json_array_foreach(units, i, x) {
        json_t *lv = json_object_get(x, "levels");
        if (!json_is_array(lv) || json_array_size(lv) < 1 || json_array_size(lv) > 32767)
            EVB_ERRORF(EVB_EFORMAT, "%s: units[%zu] needs \"levels\", an array of 1 to 32767 {\"cost\": number}", path, i);
        if ((int)json_array_size(lv) > maxl) maxl = (int)json_array_size(lv);
    }
    evb_mp *mp;
    int s = evb_mp_alloc(EVB_TARGET_FILE, 0, U, maxl, &mp);
    if (s) return s;
    struct evb_mp_priv *q = mp->priv;
    q->level_fit = malloc(sizeof(double) * U * maxl);
    if (!q->level_fit) s = EVB_RAISEF(EVB_ENOMEM, "out of memory");
    json_array_foreach(units, i, x) if (!s) s = read_levels(x, mp, (int)i, path);
    mp->problem.budget = json_number_value(json_object_get(j, "budget"));
    json_t *tol = json_object_get(j, "tolerance");
    mp->problem.tolerance = json_is_number(tol) ? json_number_value(tol) : 0;
    if (!s && (tol && !json_is_number(tol))) s = EVB_RAISEF(EVB_EFORMAT, "%s: \"tolerance\" must be a number >= 0", path);
    if (!s && !(mp->problem.tolerance >= 0)) s = EVB_RAISEF(EVB_EFORMAT, "%s: \"tolerance\" must be >= 0", path);
    if (!s) s = read_start(j, mp, path);
    for (int u = 0; !s && u < U; u++) {          /* the dense cost: each unit's dearest level */
        double mx = q->cost[u][0];
        for (int l = 1; l < q->n_levels[u]; l++) if (q->cost[u][l] > mx) mx = q->cost[u][l];
        mp->total_size += mx;
    }
    if (s) { evb_mp_free(mp); return s; }
    mp->target = mp->problem.budget;
    evb_mp_publish(mp);
    if (!mp->start_given) mp->problem.start = NULL;
    *out = mp;
    return EVB_SUCCESS;
}

int evb_mp_load_file(const char *path, evb_mp **out) {
    *out = NULL;
    json_error_t je;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!j && je.line < 0) EVB_ERRORF(EVB_EIO, "%s: %s", path, je.text);
    if (!j) EVB_ERRORF(EVB_EFORMAT, "%s: %s (line %d, column %d)", path, je.text, je.line, je.column);
    int s = read_problem(j, path, out);
    json_decref(j);
    return s;
}

int evb_mp_file_has_values(const evb_mp *mp) {
    const struct evb_mp_priv *q = mp->priv;
    if (!q->level_fit) return 0;
    for (int u = 0; u < q->U; u++)
        for (int l = 0; l < q->n_levels[u]; l++)
            if (isnan(q->level_fit[(size_t)u * q->max_levels + l])) return 0;
    return 1;
}
