/* plugin.c -- evobudget's side of a fitness plug-in with a model (see evb_plugin.h): the api the plug-in
 * calls to register its sequences and to read a candidate's scores, and the judge that calls it. */
#include "evobudget/evb_plugin.h"
#include "evobudget/evb_status.h"
#include "evobudget/evb_task.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct evb_plugin_candidate {
    const evb_plugin_model *pm;
    const evb_seq_scores *s;
    const evb_genome *g;
    char err[400];           /* the first refused request */
};

static int refuse(const evb_plugin_candidate *c, int st) {
    evb_plugin_candidate *w = (evb_plugin_candidate *)c; /* the candidate is the host's; the plug-in sees it const */
    if (!w->err[0]) snprintf(w->err, sizeof w->err, "%s", evb_last_error());
    return st;
}

// ---- the api ----

static int api_add_sequence(evb_plugin_host *h, const int32_t *tokens, int len, int score_from, int group) {
    evb_plugin_model *pm = (evb_plugin_model *)h;
    int st = tokens ? evb_seqs_add(&pm->seqs, tokens, len, score_from, group) : EVB_RAISEF(EVB_EINVAL, "add_sequence: no tokens");
    return st ? -st : pm->seqs.n - 1;
}

static int api_add_text(evb_plugin_host *h, const char *context, const char *continuation, int group) {
    evb_plugin_model *pm = (evb_plugin_model *)h;
    int st = context && continuation ? evb_seqs_add_text(&pm->seqs, pm->tok, context, continuation, group)
                                     : EVB_RAISEF(EVB_EINVAL, "add_text: no text");
    return st ? -st : pm->seqs.n - 1;
}

static int api_set_topk(evb_plugin_host *h, int k) {
    evb_plugin_model *pm = (evb_plugin_model *)h;
    if (k < 0 || k > 64) return -EVB_RAISEF(EVB_EINVAL, "set_topk: %d is outside [0, 64]", k);
    pm->topk = k;
    return EVB_SUCCESS;
}

static int api_batch(const evb_plugin_candidate *c, const int **ids) {
    *ids = c->s->seq;
    return c->s->n;
}

static int api_positions(const evb_plugin_candidate *c, int id, int *first, int *count) {
    const evb_seqs *q = &c->pm->seqs;
    if (id < 0 || id >= q->n) return refuse(c, EVB_RAISEF(EVB_EINVAL, "positions: sequence %d does not exist (%d registered)", id, q->n));
    *first = q->score_from[id];
    *count = evb_seqs_len(q, id) - q->score_from[id];
    return EVB_SUCCESS;
}

static int read_scores(const evb_plugin_candidate *c, const evb_seq_scores *s, int id, int pos, int count, float *out) {
    const float *lp;
    int st = out ? evb_seq_scores_find(s, id, pos, count, &lp, NULL, NULL) : EVB_RAISEF(EVB_EINVAL, "logprobs: no output array");
    if (st) return refuse(c, st);
    memcpy(out, lp, sizeof(float) * count);
    return EVB_SUCCESS;
}

static int api_logprobs(const evb_plugin_candidate *c, int id, int pos, int count, float *out) {
    return read_scores(c, c->s, id, pos, count, out);
}

static int api_dense_logprobs(const evb_plugin_candidate *c, int id, int pos, int count, float *out) {
    if (!c->pm->dense.lp) return refuse(c, EVB_RAISEF(EVB_EINVAL, "dense_logprobs: the dense model's scores were not computed"));
    return read_scores(c, &c->pm->dense, id, pos, count, out);
}

static int api_topk(const evb_plugin_candidate *c, int id, int pos, int32_t *ids, float *lp) {
    const float *x, *tl;
    const int32_t *ti;
    int K = c->s->topk;
    if (!K) return refuse(c, EVB_RAISEF(EVB_EINVAL, "topk: the plug-in registered no top K (set_topk)"));
    int st = evb_seq_scores_find(c->s, id, pos, 1, &x, &ti, &tl);
    if (st) return refuse(c, st);
    memcpy(ids, ti, sizeof(int32_t) * K);
    memcpy(lp, tl, sizeof(float) * K);
    return EVB_SUCCESS;
}

static const int16_t *api_levels(const evb_plugin_candidate *c) { return c->g->level; }

// ---- the plug-in ----

int evb_plugin_model_create(const evb_plugin *pl, const evb_model *m, const evb_tokenizer *t, const char *arg,
                            int n_units, evb_plugin_model **out) {
    *out = NULL;
    if (pl->abi != 1 && pl->abi != EVB_PLUGIN_ABI)
        EVB_ERRORF(EVB_EINVAL, "plug-in ABI %d, this program speaks 1 and %d (rebuild the plug-in against these headers)", pl->abi, EVB_PLUGIN_ABI);
    if (pl->abi < 2 || !pl->create_model || !pl->evaluate_model || !pl->destroy)
        EVB_ERRORF(EVB_EINVAL, "plug-in '%s' scores problem files only (ABI %d without create_model and evaluate_model); "
                   "with a model it needs both (include/evobudget/evb_plugin.h)", pl->name ? pl->name : "?", pl->abi);
    evb_plugin_model *pm = calloc(1, sizeof *pm);
    if (!pm) EVB_ERROR("plug-in: out of memory", EVB_ENOMEM);
    pm->pl = pl; pm->tok = t;
    pm->api = (evb_plugin_api){EVB_PLUGIN_ABI, m->config.vocab_size, m->config.max_seq_len, evb_tokenizer_bos(t),
                               evb_tokenizer_eos(t), n_units, api_add_sequence, api_add_text, api_set_topk, api_batch, api_positions,
                               api_logprobs, api_topk, api_dense_logprobs, api_levels};
    evb_clear_error();
    pm->params = pl->create_model(&pm->api, (evb_plugin_host *)pm, arg ? arg : "");
    int st = EVB_SUCCESS;
    if (!pm->params) {
        const char *msg = evb_last_error();
        st = EVB_RAISEF(EVB_EINVAL, "plug-in '%s': create_model failed%s%s", pl->name, msg[0] ? ": " : "", msg);
    } else if ((st = evb_seqs_check(&pm->seqs, m))) {
        char why[900];
        snprintf(why, sizeof why, "%s", evb_last_error());
        st = EVB_RAISEF(st, "plug-in '%s' registered %s", pl->name, why);
    }
    if (st) { evb_plugin_model_free(pm); return st; }
    *out = pm;
    return EVB_SUCCESS;
}

int evb_plugin_model_dense(evb_plugin_model *pm, const evb_seq_params *p) {
    evb_seq_scores_release(&pm->dense);
    return evb_seq_dense(p, &pm->dense);
}

void evb_plugin_model_free(evb_plugin_model *pm) {
    if (!pm) return;
    if (pm->params) pm->pl->destroy(pm->params);
    evb_seqs_free(&pm->seqs);
    evb_seq_scores_release(&pm->dense);
    free(pm);
}

static size_t plugin_ws_size(const void *ctx) { (void)ctx; return 0; }

static int plugin_judge(const void *ctx, void *w, const evb_genome *g, const evb_batch *b, const evb_seq_scores *s,
                        double *fitness) {
    (void)w; (void)b;
    const evb_plugin_model *pm = ctx;
    evb_plugin_candidate c = {pm, s, g, ""};
    evb_clear_error();
    int st = pm->pl->evaluate_model(pm->params, &pm->api, &c, fitness);
    if (c.err[0]) EVB_ERRORF(EVB_EINVAL, "plug-in '%s' asked for what it cannot have: %s", pm->pl->name, c.err);
    if (st) {
        const char *msg = evb_last_error();
        EVB_ERRORF(st > 0 ? st : EVB_EBADFUNC, "plug-in '%s': evaluate_model failed (status %d)%s%s", pm->pl->name, st,
                   msg[0] ? ": " : "", msg);
    }
    return EVB_SUCCESS;
}

const evb_seq_judge evb_judge_plugin = {"plugin", plugin_ws_size, NULL, NULL, plugin_judge};
