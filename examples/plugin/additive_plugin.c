/* additive_plugin.c -- an example fitness plug-in for `evobudget search --problem FILE --fitness-plugin`.
 *
 * It scores a candidate by the sum over units of their level's "fitness" value in the problem file, the
 * same sum as evobudget's built-in fitness of problem files, so the two give the same search. Replace
 * evaluate with your own model's score; keep the contract of include/evobudget/evb_search.h (per-thread
 * workspaces, no OpenMP regions, lower is better). Built by the project's CMake as libadditive_plugin.so:
 *
 *     evobudget search --problem problem.json --fitness-plugin build/examples/plugin/libadditive_plugin.so
 */
#include <evobudget/evb_plugin.h>

#include <jansson.h>
#include <stdlib.h>

typedef struct params {
    int n_units, max_levels;
    double *value; /* [n_units][max_levels] */
} params;

static void *create(const char *problem_path, int n_units, const int *n_levels) {
    json_error_t e;
    json_t *j = json_load_file(problem_path, 0, &e), *units = json_object_get(j, "units");
    if (!j || (int)json_array_size(units) != n_units) {
        evb_errorf(__FILE__, __LINE__, EVB_EFORMAT, "%s: not the problem evobudget read", problem_path);
        json_decref(j);
        return NULL;
    }
    params *p = calloc(1, sizeof *p);
    for (int u = 0; u < n_units; u++) if (n_levels[u] > p->max_levels) p->max_levels = n_levels[u];
    p->n_units = n_units;
    p->value = calloc((size_t)n_units * p->max_levels, sizeof(double));
    for (int u = 0; u < n_units; u++) {
        json_t *lv = json_object_get(json_array_get(units, u), "levels");
        for (int l = 0; l < n_levels[u]; l++) {
            json_t *f = json_object_get(json_array_get(lv, l), "fitness");
            if (!json_is_number(f)) {
                evb_errorf(__FILE__, __LINE__, EVB_EFORMAT, "%s: unit %d level %d has no \"fitness\"", problem_path, u, l);
                free(p->value); free(p); json_decref(j);
                return NULL;
            }
            p->value[(size_t)u * p->max_levels + l] = json_number_value(f);
        }
    }
    json_decref(j);
    return p;
}

static void destroy(void *pp) {
    params *p = pp;
    free(p->value);
    free(p);
}

static size_t workspace_size(const void *pp) { (void)pp; return 1; }

static int evaluate(const void *pp, void *w, const evb_genome *g, const evb_genome *ref, const evb_batch *b, double *fitness) {
    (void)w; (void)ref; (void)b;
    const params *p = pp;
    double v = 0;
    for (int u = 0; u < g->n_units; u++) v += p->value[(size_t)u * p->max_levels + g->level[u]];
    *fitness = v;
    return EVB_SUCCESS;
}

static const evb_fitness_type additive = {"additive-plugin", workspace_size, NULL, NULL, evaluate};
static const evb_plugin plugin = {EVB_PLUGIN_ABI, "additive", &additive, create, destroy};

const evb_plugin *evb_plugin_entry(void) { return &plugin; }
