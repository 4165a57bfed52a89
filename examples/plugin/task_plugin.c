#define _POSIX_C_SOURCE 200809L
/* task_plugin.c -- an example fitness plug-in with the model in the loop (ABI 2): a multiple-choice task.
 *
 *     evobudget search --model assets/demo --target-sparsity 0.6 \
 *         --fitness-plugin build/examples/plugin/libtask_plugin.so --fitness-arg items.jsonl
 *
 * create_model reads the task file named by --fitness-arg (JSON Lines: context, choices, gold) and registers
 * every choice as the text context + choice, one group per item. evaluate_model reads the candidate's
 * log-probabilities of the batch's choices and returns the mean cross-entropy of the gold choice under the
 * softmax of the choices' length-normalised log-likelihoods, with the same operations in the same order as
 * the built-in `--fitness task:FILE` (include/evobudget/evb_task.h), so the two give the same search. Replace
 * the scoring with your own: accuracy on your items, the likelihood of your domain text, KL on your prompts
 * (dense_logprobs gives the dense model's log-probabilities of the same positions). */
#include <evobudget/evb_plugin.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct item { int first, n_choices, gold; } item;
typedef struct params {
    int n_items;
    item *items;
    int *item_of;        /* [sequences] the item a sequence belongs to */
} params;

static void destroy(void *pp) {
    params *p = pp;
    if (!p) return;
    free(p->items); free(p->item_of);
    free(p);
}

/* One line's item: its choices registered. Returns 0, or -1 with the reason given to evb_errorf. */
static int add_item(params *p, const evb_plugin_api *api, evb_plugin_host *h, json_t *j, const char *path, int line) {
    const char *ctx = json_string_value(json_object_get(j, "context"));
    json_t *ch = json_object_get(j, "choices"), *g = json_object_get(j, "gold");
    int nc = (int)json_array_size(ch);
    if (!ctx || nc < 2 || !json_is_integer(g) || json_integer_value(g) < 0 || json_integer_value(g) >= nc) {
        evb_errorf(__FILE__, __LINE__, EVB_EFORMAT, "%s:%d: an item needs context, 2 or more choices and a gold index", path, line);
        return -1;
    }
    item *it = realloc(p->items, sizeof(item) * (p->n_items + 1));
    if (!it) return -1;
    p->items = it;
    item *x = &p->items[p->n_items];
    x->n_choices = nc;
    x->gold = (int)json_integer_value(g);
    for (int c = 0; c < nc; c++) {
        const char *text = json_string_value(json_array_get(ch, c));
        int id = text ? api->add_text(h, ctx, text, p->n_items) : -1;
        if (id < 0) return -1;
        if (c == 0) x->first = id;
    }
    p->n_items++;
    return 0;
}

static void *create_model(const evb_plugin_api *api, evb_plugin_host *h, const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) { evb_errorf(__FILE__, __LINE__, EVB_EIO, "task file '%s' cannot be opened (give it with --fitness-arg)", path); return NULL; }
    params *p = calloc(1, sizeof *p);
    char *buf = NULL;
    size_t cap = 0;
    int line = 0, bad = !p;
    while (!bad && getline(&buf, &cap, f) > 0) {
        line++;
        json_t *j = json_loads(buf, 0, NULL);
        if (j) bad = add_item(p, api, h, j, path, line);
        else if (strspn(buf, " \t\r\n") != strlen(buf)) { evb_errorf(__FILE__, __LINE__, EVB_EFORMAT, "%s:%d: not JSON", path, line); bad = 1; }
        json_decref(j);
    }
    free(buf);
    fclose(f);
    int n = 0;
    for (int i = 0; p && i < p->n_items; i++) n += p->items[i].n_choices;
    if (!bad && n == 0) { evb_errorf(__FILE__, __LINE__, EVB_EFORMAT, "%s: no item", path); bad = 1; }
    if (!bad) {
        p->item_of = malloc(sizeof(int) * n);
        bad = !p->item_of;
        for (int i = 0; !bad && i < p->n_items; i++)
            for (int c = 0; c < p->items[i].n_choices; c++) p->item_of[p->items[i].first + c] = i;
    }
    if (bad) { destroy(p); return NULL; }
    return p;
}

/* The mean log-probability of a choice's tokens (its scored positions: the tokens after the context). */
static int choice_score(const evb_plugin_api *api, const evb_plugin_candidate *c, int id, int pos, int count, float *lp, double *score) {
    int st = api->logprobs(c, id, pos, count, lp);
    if (st) return st;
    double sum = 0.0;
    for (int j = 0; j < count; j++) sum += (double)lp[j];
    *score = sum / count;
    return 0;
}

static int evaluate_model(const void *pp, const evb_plugin_api *api, const evb_plugin_candidate *c, double *fitness) {
    const params *p = pp;
    const int *ids;
    int n = api->batch(c, &ids), items = 0;
    double total = 0.0;
    float lp[4096];
    for (int k = 0; k < n; k++) {
        const item *it = &p->items[p->item_of[ids[k]]];
        if (ids[k] != it->first) continue; /* an item's choices come together, its first one leads */
        double sc[64];
        for (int ch = 0; ch < it->n_choices && ch < 64; ch++) {
            int pos, count;
            int st = api->positions(c, it->first + ch, &pos, &count);
            if (st || count > 4096) return st ? st : EVB_EINVAL;
            if ((st = choice_score(api, c, it->first + ch, pos, count, lp, &sc[ch]))) return st;
        }
        int best = 0;
        for (int ch = 1; ch < it->n_choices; ch++) if (sc[ch] > sc[best]) best = ch;
        double m = sc[best], z = 0.0;
        for (int ch = 0; ch < it->n_choices; ch++) z += exp(sc[ch] - m);
        total += (m + log(z)) - sc[it->gold];
        items++;
    }
    if (!items) return EVB_EINVAL;
    *fitness = total / items;
    return 0;
}

static const evb_plugin me = {EVB_PLUGIN_ABI, "task-plugin", NULL, NULL, destroy, create_model, evaluate_model};

const evb_plugin *evb_plugin_entry(void) { return &me; }
