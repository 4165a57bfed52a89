/* task.c -- multiple-choice task files, their scoring, and the task judge of the sequence fitness (see
 * evb_task.h). */
#define _POSIX_C_SOURCE 200809L
#include "evobudget/evb_task.h"
#include "evobudget/evb_status.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int evb_seqs_add_text(evb_seqs *s, const evb_tokenizer *t, const char *context, const char *continuation, int group) {
    size_t lc = strlen(context), lk = strlen(continuation);
    char *whole = malloc(lc + lk + 1);
    if (!whole) EVB_ERROR("sequences: out of memory", EVB_ENOMEM);
    memcpy(whole, context, lc);
    memcpy(whole + lc, continuation, lk + 1);
    int32_t *all = NULL, *ctx = NULL;
    size_t n_all = 0, n_ctx = 0;
    int st = evb_tokenizer_encode(t, whole, lc + lk, 1, &all, &n_all);
    if (!st) st = evb_tokenizer_encode(t, context, lc, 1, &ctx, &n_ctx);
    free(whole);
    free(ctx);
    if (!st && n_all > (size_t)1 << 30) st = EVB_RAISEF(EVB_EINVAL, "sequence %d: %zu tokens", s->n, n_all);
    /* the context alone ends where its own tokens end; a merge across the boundary moves it back */
    if (!st && n_ctx >= n_all) st = EVB_RAISEF(EVB_EINVAL, "sequence %d: the continuation adds no token after the context", s->n);
    if (!st) st = evb_seqs_add(s, all, (int)n_all, n_ctx < 1 ? 1 : (int)n_ctx, group);
    free(all);
    return st;
}

void evb_task_free(evb_task *t) {
    free(t->first); free(t->n_choices); free(t->gold);
    evb_seqs_free(&t->seqs);
    memset(t, 0, sizeof *t);
}

/* One item: its fields checked, its choices added as sequences of group `item`. */
static int task_item(evb_task *t, const evb_tokenizer *tok, const json_t *j, int max_len, const char *path, long line) {
    if (!json_is_object(j)) EVB_ERRORF(EVB_EFORMAT, "%s:%ld: not a JSON object", path, line);
    const json_t *c = json_object_get(j, "context"), *ch = json_object_get(j, "choices"), *g = json_object_get(j, "gold");
    if (!json_is_string(c)) EVB_ERRORF(EVB_EFORMAT, "%s:%ld: \"context\" must be a string", path, line);
    if (!json_is_array(ch)) EVB_ERRORF(EVB_EFORMAT, "%s:%ld: \"choices\" must be an array of strings", path, line);
    size_t nc = json_array_size(ch);
    if (nc < 2 || nc > EVB_TASK_MAX_CHOICES)
        EVB_ERRORF(EVB_EFORMAT, "%s:%ld: %zu choices; an item needs 2 to %d", path, line, nc, EVB_TASK_MAX_CHOICES);
    if (!json_is_integer(g) || json_integer_value(g) < 0 || json_integer_value(g) >= (json_int_t)nc)
        EVB_ERRORF(EVB_EFORMAT, "%s:%ld: \"gold\" must be an index into the %zu choices", path, line, nc);
    int item = t->n_items, first = t->seqs.n;
    for (size_t k = 0; k < nc; k++) {
        const json_t *x = json_array_get(ch, k);
        if (!json_is_string(x) || !json_string_length(x))
            EVB_ERRORF(EVB_EFORMAT, "%s:%ld: choice %zu must be a non-empty string", path, line, k);
        int st = evb_seqs_add_text(&t->seqs, tok, json_string_value(c), json_string_value(x), item);
        if (st) EVB_ERRORF(st, "%s:%ld: choice %zu: %s", path, line, k, evb_last_error());
        int len = evb_seqs_len(&t->seqs, t->seqs.n - 1);
        if (max_len > 0 && len > max_len)
            EVB_ERRORF(EVB_EFORMAT, "%s:%ld: choice %zu makes %d tokens, beyond the model's context of %d", path, line, k, len, max_len);
    }
    if (!(item & (item - 1))) { /* capacity doubles at powers of two */
        size_t cap = item ? (size_t)item * 2 : 1;
        int *a = realloc(t->first, sizeof(int) * cap), *b = a ? (t->first = a, realloc(t->n_choices, sizeof(int) * cap)) : NULL;
        int *d = b ? (t->n_choices = b, realloc(t->gold, sizeof(int) * cap)) : NULL;
        if (!d) EVB_ERROR("task: out of memory", EVB_ENOMEM);
        t->gold = d;
    }
    t->first[item] = first;
    t->n_choices[item] = (int)nc;
    t->gold[item] = (int)json_integer_value(g);
    t->n_items++;
    return EVB_SUCCESS;
}

int evb_task_load(const char *path, const evb_tokenizer *tok, int max_len, evb_task *out) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "r");
    if (!f) EVB_ERRORF(EVB_EIO, "%s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t cap = 0;
    ssize_t n;
    long line = 0;
    int st = EVB_SUCCESS;
    while (!st && (n = getline(&buf, &cap, f)) >= 0) {
        line++;
        size_t k = strspn(buf, " \t\r\n");
        if ((ssize_t)k == n) continue; /* blank lines are allowed */
        json_error_t e;
        json_t *j = json_loadb(buf, (size_t)n, 0, &e);
        if (!j) st = EVB_RAISEF(EVB_EFORMAT, "%s:%ld: not JSON (%s at column %d)", path, line, e.text, e.column);
        else st = task_item(out, tok, j, max_len, path, line);
        json_decref(j);
    }
    if (!st && ferror(f)) st = EVB_RAISEF(EVB_EIO, "%s: %s", path, strerror(errno));
    free(buf);
    fclose(f);
    if (!st && out->n_items == 0) st = EVB_RAISEF(EVB_EFORMAT, "%s: no item (one JSON object per line: context, choices, gold)", path);
    if (st) evb_task_free(out);
    return st;
}

/* The length-normalised log-likelihood of sequence id. */
static int choice_score(const evb_seq_scores *s, int id, double *score) {
    const evb_seqs *q = s->seqs;
    int from = q->score_from[id], count = evb_seqs_len(q, id) - from;
    const float *lp;
    int st = evb_seq_scores_find(s, id, from, count, &lp, NULL, NULL);
    if (st) return st;
    double sum = 0.0;
    for (int j = 0; j < count; j++) sum += (double)lp[j];
    *score = sum / count;
    return EVB_SUCCESS;
}

/* Item i's cross-entropy and whether it is right (see evb_task.h for the order of the operations). */
static int item_score(const evb_task *t, const evb_seq_scores *s, int i, double *ce, int *right) {
    double sc[EVB_TASK_MAX_CHOICES] = {0};
    const int nc = t->n_choices[i];
    for (int c = 0; c < nc; c++) {
        int st = choice_score(s, t->first[i] + c, &sc[c]);
        if (st) return st;
    }
    int best = 0;
    for (int c = 1; c < nc; c++) if (sc[c] > sc[best]) best = c;
    double m = sc[best], z = 0.0;
    for (int c = 0; c < nc; c++) z += exp(sc[c] - m);
    *ce = (m + log(z)) - sc[t->gold[i]];
    *right = best == t->gold[i];
    return EVB_SUCCESS;
}

int evb_task_score(const evb_task *t, const evb_seq_scores *s, double *ce, double *accuracy, int *n_items) {
    double total = 0.0;
    int n = 0, right = 0;
    for (int k = 0; k < s->n; k++) {
        int id = s->seq[k], item = t->seqs.group[id];
        if (k > 0 && t->seqs.group[s->seq[k - 1]] == item) continue; /* an item's choices are consecutive */
        if (item < 0 || item >= t->n_items || t->first[item] != id)
            EVB_ERRORF(EVB_EINVAL, "task: sequence %d is not the first choice of an item", id);
        double c;
        int r, st = item_score(t, s, item, &c, &r);
        if (st) return st;
        total += c;
        right += r;
        n++;
    }
    if (!n) EVB_ERROR("task: no item in the batch", EVB_EINVAL);
    *ce = total / n;
    if (accuracy) *accuracy = (double)right / n;
    if (n_items) *n_items = n;
    return EVB_SUCCESS;
}

int evb_task_eval(const evb_model *m, const evb_task *t, int batch, double *ce, double *accuracy) {
    evb_seq_params p = {{m, NULL, NULL, NULL, 0, NULL, EVB_METRIC_PPL, batch > 0 ? batch : 1, 0}, &t->seqs, 0, &evb_judge_task, t, {0}};
    evb_seq_scores s;
    int st = evb_seq_params_init(&p);
    if (!st) st = evb_seq_dense(&p, &s);
    if (!st) {
        st = evb_task_score(t, &s, ce, accuracy, NULL);
        evb_seq_scores_release(&s);
    }
    evb_seq_params_free(&p);
    return st;
}

static size_t task_ws_size(const void *ctx) { (void)ctx; return 0; }

static int task_judge(const void *ctx, void *w, const evb_genome *g, const evb_batch *b, const evb_seq_scores *s,
                      double *fitness) {
    (void)w; (void)g; (void)b;
    return evb_task_score(ctx, s, fitness, NULL, NULL);
}

const evb_seq_judge evb_judge_task = {"task", task_ws_size, NULL, NULL, task_judge};
