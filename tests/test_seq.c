#define _GNU_SOURCE
/* test_seq.c -- the sequence fitness on stories260K with a SparseGPT database: the log-probabilities a judge
 * receives equal those of an independent forward of each sequence alone (exact length, no padding, no other
 * sequence in the batch) with the candidate's weights set; reuse of the parent's states gives the very same
 * values; batches take whole groups, the same for the same seed; the dense scores; the task's scoring against
 * an independent transcription (softmax probabilities, not log-sum-exp); task files' errors, one line each;
 * the weighted sum. */
#include "stories.h"
#include "fixtures.h"
#include "evobudget/evb_calib.h"
#include "evobudget/evb_db.h"
#include "evobudget/evb_eval.h"
#include "evobudget/evb_fitness_seq.h"
#include "evobudget/evb_task.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* What the judge saw last: a copy of its scores. */
typedef struct seen { int n; int seq[256]; size_t off[257]; float lp[8192]; int32_t top[8192 * 3]; double value; } seen;

static size_t noop_size(const void *c) { (void)c; return 0; }
static int copy_judge(const void *ctx, void *w, const evb_genome *g, const evb_batch *b, const evb_seq_scores *s, double *f) {
    (void)w; (void)g; (void)b;
    seen *x = (seen *)ctx;
    x->n = s->n;
    memcpy(x->seq, s->seq, sizeof(int) * s->n);
    memcpy(x->off, s->off, sizeof(size_t) * (s->n + 1));
    memcpy(x->lp, s->lp, sizeof(float) * s->off[s->n]);
    if (s->topk) memcpy(x->top, s->top_id, sizeof(int32_t) * s->off[s->n] * s->topk);
    double sum = 0;
    for (size_t i = 0; i < s->off[s->n]; i++) sum += s->lp[i];
    *f = x->value = -sum;
    return EVB_SUCCESS;
}
static const evb_seq_judge copy = {"copy", noop_size, NULL, NULL, copy_judge};

/* The reference: each sequence alone through evb_forward with weights set, log-softmax, the scored tokens. */
static double max_ref_diff(evb_model *m, const evb_seqs *q, const float *const *wts, const seen *x, int *top_ok) {
    const int V = m->config.vocab_size, U = evb_model_n_units(m);
    for (int u = 0; u < U; u++) evb_model_set_weight(m, u, wts ? wts[u] : NULL);
    evb_state *s = NULL;
    evb_state_alloc(m, 1, m->config.max_seq_len, &s);
    double worst = 0;
    *top_ok = 1;
    for (int k = 0; k < x->n; k++) {
        int id = x->seq[k], len = evb_seqs_len(q, id), from = q->score_from[id];
        evb_forward(m, s, q->tokens + q->start[id], 1, len);
        evb_log_softmax(s->logits, (size_t)len, V);
        for (int t = from; t < len; t++) {
            const float *row = s->logits + (size_t)(t - 1) * V;
            double d = fabs(row[q->tokens[q->start[id] + t]] - x->lp[x->off[k] + t - from]);
            if (d > worst) worst = d;
            int arg = 0;
            for (int v = 1; v < V; v++) if (row[v] > row[arg]) arg = v;
            if (x->top[(x->off[k] + t - from) * 3] != arg) *top_ok = 0;
        }
    }
    evb_state_free(s);
    for (int u = 0; u < U; u++) evb_model_set_weight(m, u, NULL);
    return worst;
}

static void task_files(const char *dir) {
    static const char *bad[][2] = {
        {"not json here\n", "not JSON"},
        {"[1, 2]\n", "not a JSON object"},
        {"{\"context\": 3, \"choices\": [\" a\", \" b\"], \"gold\": 0}\n", "\"context\" must be a string"},
        {"{\"context\": \"x\", \"choices\": [\" a\"], \"gold\": 0}\n", "1 choices"},
        {"{\"context\": \"x\", \"choices\": [\" a\", \" b\"], \"gold\": 2}\n", "\"gold\" must be an index"},
        {"{\"context\": \"x\", \"choices\": [\" a\", \"\"], \"gold\": 0}\n", "choice 1 must be a non-empty string"},
        {"\n\n", "no item"},
    };
    stories S;
    stories_load(&S, 1000);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/bad%zu.jsonl", dir, i);
        FILE *f = fopen(path, "w");
        if (i < 6) fputs("{\"context\": \"Once upon a time\", \"choices\": [\" there was\", \" the end\"], \"gold\": 0}\n", f);
        fputs(bad[i][0], f);
        fclose(f);
        evb_task t;
        int st = evb_task_load(path, S.t, 0, &t);
        const char *msg = evb_last_error();
        int want_line = i < 6;
        char where[600];
        snprintf(where, sizeof where, "%s:2:", path);
        EVB_CHECK(st == EVB_EFORMAT && strstr(msg, bad[i][1]) && (!want_line || strstr(msg, where)) && !strchr(msg, '\n'),
                  "task file %zu refused in one line naming the line: %s", i, msg);
    }
    char path[512];
    snprintf(path, sizeof path, "%s/long.jsonl", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"context\": \"Once upon a time there was a little girl\", \"choices\": [\" who liked to play\", \" b\"], \"gold\": 0}\n", f);
    fclose(f);
    evb_task t;
    int st = evb_task_load(path, S.t, 8, &t);
    EVB_CHECK(st == EVB_EFORMAT && strstr(evb_last_error(), "beyond the model's context of 8"), "an item beyond the context: %s", evb_last_error());
    st = evb_task_load("/nonexistent/x.jsonl", S.t, 0, &t);
    EVB_CHECK(st == EVB_EIO && strstr(evb_last_error(), "/nonexistent/x.jsonl"), "a missing task file: %s", evb_last_error());
    evb_model_free(S.m); evb_tokenizer_free(S.t); free(S.tok);
}

/* evb_task_score against softmax probabilities computed directly. */
static void task_scoring(void) {
    evb_task t = {0};
    int first[2] = {0, 3}, nc[2] = {3, 2}, gold[2] = {1, 0};
    t.n_items = 2; t.first = first; t.n_choices = nc; t.gold = gold;
    int32_t tok[6] = {1, 5, 6, 7, 8, 9};
    int lens[5] = {3, 4, 6, 2, 5}, from[5] = {1, 2, 3, 1, 4};
    for (int i = 0; i < 5; i++) evb_seqs_add(&t.seqs, tok, lens[i], from[i], i < 3 ? 0 : 1);
    float lp[64];
    size_t off[6] = {0};
    int seq[5] = {0, 1, 2, 3, 4};
    for (int i = 0; i < 5; i++) off[i + 1] = off[i] + (size_t)(lens[i] - from[i]);
    for (size_t j = 0; j < off[5]; j++) lp[j] = -0.3f * (float)(j % 4) - 0.7f * (float)(j % 3);
    evb_seq_scores s = {&t.seqs, 5, seq, off, lp, 0, NULL, NULL};
    double ce, acc;
    int n;
    int st = evb_task_score(&t, &s, &ce, &acc, &n);
    double want = 0;
    int right = 0;
    for (int it = 0; it < 2; it++) {
        double sc[3], zs = 0;
        for (int c = 0; c < nc[it]; c++) {
            int id = first[it] + c;
            double sum = 0;
            for (size_t j = off[id]; j < off[id + 1]; j++) sum += lp[j];
            sc[c] = sum / (double)(off[id + 1] - off[id]);
            zs += exp(sc[c]);
        }
        want += -log(exp(sc[gold[it]]) / zs);
        int best = 0;
        for (int c = 1; c < nc[it]; c++) if (sc[c] > sc[best]) best = c;
        right += best == gold[it];
    }
    want /= 2;
    EVB_CHECK(st == 0 && n == 2 && fabs(ce - want) < 1e-12 && fabs(acc - right / 2.0) < 1e-15,
              "task score: cross-entropy %.15g (independent %.15g), accuracy %g (%d of 2)", ce, want, acc, right);
    int seq_part[3] = {0, 1, 2};
    evb_seq_scores half = {&t.seqs, 2, seq_part, off, lp, 0, NULL, NULL};
    st = evb_task_score(&t, &half, &ce, &acc, &n);
    EVB_CHECK(st == EVB_EINVAL, "an item with a choice missing from the batch is refused: %s", evb_last_error());
    evb_seqs_free(&t.seqs);
}

int main(void) {
    evb_init();
    char *dir = fixture_tmpdir();
    task_scoring();
    task_files(dir);
    stories S;
    evb_windows w;
    int st = stories_load(&S, 200000);
    evb_model *m = S.m;
    if (!st) st = evb_windows_sample(S.tok, S.n, 64, evb_tokenizer_bos(S.t), 8, 9, &w);
    evb_calib *c = NULL;
    if (!st) st = evb_calib_collect(m, &w, 4, &c);
    evb_db *db = NULL;
    if (!st) st = evb_db_open(dir, "00000000000000aa", "00000000000000bb", 1, &db);
    double sps[1] = {0.6};
    evb_level_grid g = {sps, 1, 0, 0, NULL, 0, 0, 0, 0, 0, 0, 0};
    int built, present;
    if (!st) st = evb_db_build(db, m, c, evb_method_find("sparsegpt"), &g, &built, &present, NULL, NULL);
    evb_level_cache *cache = NULL;
    if (!st) st = evb_level_cache_alloc(db, 64 << 20, &cache);
    EVB_CHECK(st == 0, "stories260K, a SparseGPT database at 60%% (%s)", evb_last_error());
    if (st) return evb_test_summary();

    /* 24 sequences of lengths 5..40 from the text, in 8 groups of 3, scored from position 2 or later */
    evb_seqs q = {0};
    uint64_t r = 7;
    for (int i = 0; i < 24 && !st; i++) {
        int len = 5 + (int)(standin_next(&r) % 36), at = (int)(standin_next(&r) % (S.n - 64));
        int32_t tk[64];
        tk[0] = evb_tokenizer_bos(S.t);
        memcpy(tk + 1, S.tok + at, sizeof(int32_t) * (len - 1));
        st = evb_seqs_add(&q, tk, len, 2 + i % 3, i / 3);
    }
    int32_t bad[3] = {1, 600, 2};
    EVB_CHECK(evb_seqs_add(&q, bad, 3, 3, 0) == EVB_EINVAL && strstr(evb_last_error(), "score_from 3"), "score_from at the end is refused: %s", evb_last_error());
    EVB_CHECK(evb_seqs_add(&q, bad, 1, 1, 0) == EVB_EINVAL, "a one-token sequence is refused: %s", evb_last_error());
    evb_seqs q2 = {0};
    evb_seqs_add(&q2, bad, 3, 1, 0);
    EVB_CHECK(evb_seqs_check(&q2, m) == EVB_EINVAL && strstr(evb_last_error(), "token 1 is 600, outside the model's vocabulary"),
              "a token outside the vocabulary is refused: %s", evb_last_error());
    evb_seqs_free(&q2);

    int U = evb_model_n_units(m);
    evb_fit_unit *units = calloc(U, sizeof *units);
    int *entries = malloc(sizeof(int) * U * 2);
    const float **wts = calloc(U, sizeof *wts);
    float *mem = malloc(sizeof(float) * 512 * 512 * U);
    for (int u = 0; u < U; u++) {
        evb_db_entry key = {0};
        key.unit = u; key.kind = EVB_LEVEL_SPARSE; key.sparsity = 0.6;
        snprintf(key.method, sizeof key.method, "sparsegpt");
        entries[2 * u] = -1;
        entries[2 * u + 1] = evb_db_find(db, &key);
        units[u] = (evb_fit_unit){EVB_UNIT_LINEAR, u, 2, entries + 2 * u, NULL};
        evb_db_load(db, entries[2 * u + 1], mem + (size_t)u * 512 * 512);
    }
    seen *x = calloc(1, sizeof *x);
    evb_seq_params p = {{m, NULL, NULL, cache, U, units, EVB_METRIC_KL, 4, 64 << 20}, &q, 3, &copy, x, {0}};
    st = evb_seq_params_init(&p);
    void *ws = malloc(evb_fitness_seq.workspace_size(&p));
    if (!st) st = evb_fitness_seq.workspace_init(ws, &p);
    EVB_CHECK(st == 0, "the sequence fitness's workspace (%s)", evb_last_error());
    int16_t *lv = calloc(U, sizeof(int16_t)), *lv2 = calloc(U, sizeof(int16_t));
    for (int u = 0; u < U; u += 2) { lv[u] = 1; wts[u] = mem + (size_t)u * 512 * 512; }
    evb_genome gen = {U, lv};
    evb_batch all = {0, 0};
    double f = 0;
    st = evb_fitness_seq.evaluate(&p, ws, &gen, NULL, &all, &f);
    int top_ok;
    double d = max_ref_diff(m, &q, wts, x, &top_ok);
    EVB_CHECK(st == 0 && x->n == 24 && d < 2e-5 && top_ok, "every sequence, half the units at 60%%: the log-probabilities equal each sequence's own forward (max |diff| %.3g), the top-1 too", d);

    /* an offspring from its parent's states: the same values, bit for bit */
    evb_batch part = {11, 150};
    double f_full, f_reuse;
    memcpy(lv2, lv, sizeof(int16_t) * U);
    lv2[U - 1] = 1; lv2[U - 3] = !lv2[U - 3];
    evb_genome off = {U, lv2};
    evb_fitness_seq.evaluate(&p, ws, &gen, NULL, &part, &f);
    evb_fitness_seq.evaluate(&p, ws, &off, NULL, &part, &f_full);
    seen first = *x;
    st = evb_fitness_seq.evaluate(&p, ws, &off, &gen, &part, &f_reuse);
    EVB_CHECK(st == 0 && f_full == f_reuse && !memcmp(first.lp, x->lp, sizeof(float) * x->off[x->n]),
              "an offspring from its parent's hidden states: %.17g, a full forward %.17g", f_reuse, f_full);
    for (int u = 0; u < U; u++) wts[u] = lv2[u] ? mem + (size_t)u * 512 * 512 : NULL;
    d = max_ref_diff(m, &q, wts, x, &top_ok);
    EVB_CHECK(d < 2e-5, "the offspring's log-probabilities against the reference: max |diff| %.3g", d);

    /* batches: whole groups, at least the tokens asked, the same for the same seed */
    int ids[64], ids2[64];
    size_t sc1, sc2;
    int n1 = evb_seq_batch(&q, &part, ids, &sc1), n2 = evb_seq_batch(&q, &part, ids2, &sc2);
    int whole = n1 % 3 == 0 && sc1 >= 150 && n1 < 24;
    for (int k = 0; k + 2 < n1; k += 3) whole &= q.group[ids[k]] == q.group[ids[k + 2]] && ids[k] + 2 == ids[k + 2];
    EVB_CHECK(whole && n1 == n2 && !memcmp(ids, ids2, sizeof(int) * n1) && sc1 == sc2,
              "a batch of 150 tokens takes %d whole groups of 3 (%zu scored positions), the same twice", n1 / 3, sc1);
    evb_batch other = {12, 150};
    int n3 = evb_seq_batch(&q, &other, ids2, &sc2);
    EVB_CHECK(n3 != n1 || memcmp(ids, ids2, sizeof(int) * n1), "another seed takes other groups");

    /* the dense scores: the reference with no weights */
    evb_seq_scores dense;
    st = evb_seq_dense(&p, &dense);
    x->n = dense.n;
    memcpy(x->seq, dense.seq, sizeof(int) * dense.n);
    memcpy(x->off, dense.off, sizeof(size_t) * (dense.n + 1));
    memcpy(x->lp, dense.lp, sizeof(float) * dense.off[dense.n]);
    memcpy(x->top, dense.top_id, sizeof(int32_t) * dense.off[dense.n] * 3);
    d = max_ref_diff(m, &q, NULL, x, &top_ok);
    EVB_CHECK(st == 0 && dense.n == 24 && d < 2e-5 && top_ok, "the dense model's scores against its own forward: max |diff| %.3g", d);
    const float *at;
    st = evb_seq_scores_find(&dense, 5, 1, 1, &at, NULL, NULL);
    EVB_CHECK(st == EVB_EINVAL && strstr(evb_last_error(), "positions [1, 2) asked, its scored positions are [4,"),
              "positions before score_from are refused in one line: %s", evb_last_error());
    st = evb_seq_scores_find(&dense, 99, 4, 1, &at, NULL, NULL);
    EVB_CHECK(st == EVB_EINVAL && strstr(evb_last_error(), "sequence 99 does not exist"), "an unknown sequence: %s", evb_last_error());
    evb_seq_scores_release(&dense);

    /* the weighted sum: 0.5 x the sequence fitness + 2 x itself */
    evb_sum_params sp = {2, {&evb_fitness_seq, &evb_fitness_seq}, {&p, &p}, {0.5, 2.0}};
    void *sws = malloc(evb_fitness_sum.workspace_size(&sp));
    st = evb_fitness_sum.workspace_init(sws, &sp);
    double fs = 0;
    if (!st) st = evb_fitness_sum.evaluate(&sp, sws, &gen, NULL, &all, &fs);
    evb_fitness_seq.evaluate(&p, ws, &gen, NULL, &all, &f);
    EVB_CHECK(st == 0 && fabs(fs - 2.5 * f) <= 1e-12 * fabs(f), "the sum of 0.5 and 2 times a fitness: %.12g = 2.5 x %.12g", fs, f);
    evb_fitness_sum.workspace_destroy(sws);
    free(sws);

    evb_fitness_seq.workspace_destroy(ws);
    free(ws);
    evb_seq_params_free(&p);
    evb_seqs_free(&q);
    free(x); free(lv); free(lv2); free(units); free(entries); free(wts); free(mem);
    evb_level_cache_free(cache);
    evb_db_close(db);
    evb_calib_free(c);
    evb_windows_free(&w);
    evb_model_free(m); evb_tokenizer_free(S.t); free(S.tok);
    fixture_rmdir(dir);
    free(dir);
    return evb_test_summary();
}
