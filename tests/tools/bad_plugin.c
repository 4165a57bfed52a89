/* bad_plugin.c -- a plug-in with the model (ABI 2) that misbehaves as --fitness-arg says, for the tests:
 *   range:   asks for the log-probability of position 0 (never scored)
 *   batch:   asks for a sequence that is not in the batch (the last one, when the batch is partial)
 *   vocab:   registers a token beyond any vocabulary
 *   context: registers a sequence of 100000 tokens
 *   fail:    returns an error from evaluate_model with a message
 * Built with -DBAD_ABI=N it declares plug-in ABI N instead of this header's. */
#include <evobudget/evb_plugin.h>

#include <stdlib.h>
#include <string.h>

typedef struct params { char mode[16]; int n; } params;

static void destroy(void *p) { free(p); }

static void *create_model(const evb_plugin_api *api, evb_plugin_host *h, const char *arg) {
    params *p = calloc(1, sizeof *p);
    strncpy(p->mode, arg, sizeof p->mode - 1);
    int32_t tok[8] = {1, 5, 6, 7, 8, 9, 10, 11};
    for (int i = 0; i < 200; i++) api->add_sequence(h, tok, 8, 2, i);
    if (!strcmp(arg, "vocab")) { tok[3] = 1 << 30; api->add_sequence(h, tok, 8, 2, 200); }
    if (!strcmp(arg, "context")) {
        int32_t *big = calloc(100000, sizeof(int32_t));
        big[0] = 1;
        api->add_sequence(h, big, 100000, 1, 201);
        free(big);
    }
    p->n = 200;
    return p;
}

static int evaluate_model(const void *pp, const evb_plugin_api *api, const evb_plugin_candidate *c, double *fitness) {
    const params *p = pp;
    float lp[8];
    const int *ids;
    int n = api->batch(c, &ids);
    if (!strcmp(p->mode, "range")) return api->logprobs(c, ids[0], 0, 1, lp);
    if (!strcmp(p->mode, "batch") && n < p->n) {
        int missing = 0;
        while (missing < n && ids[missing] == missing) missing++;
        return api->logprobs(c, missing, 2, 1, lp);
    }
    if (!strcmp(p->mode, "fail")) { evb_errorf(__FILE__, __LINE__, EVB_EINVAL, "bad_plugin: failing as asked"); return EVB_EINVAL; }
    double s = 0;
    for (int k = 0; k < n; k++) {
        int st = api->logprobs(c, ids[k], 2, 6, lp);
        if (st) return st;
        for (int j = 0; j < 6; j++) s -= lp[j];
    }
    *fitness = s;
    return 0;
}

#ifndef BAD_ABI
#define BAD_ABI EVB_PLUGIN_ABI
#endif
static const evb_plugin me = {BAD_ABI, "bad-plugin", NULL, NULL, destroy, create_model, evaluate_model};
const evb_plugin *evb_plugin_entry(void) { return &me; }
