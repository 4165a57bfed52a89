#define _GNU_SOURCE
/* test_worker_seq.c -- protocol 2 of the worker protocol (evaluators/worker.c, docs/worker-protocol.md):
 * - evb_worker_register refuses, in one line naming the worker and the sequence, a sequence beyond the
 *   model's context (as tokens, as text), a token outside the vocabulary (too large, negative), a score_from
 *   outside [1, len), text whose continuation adds no token, and a protocol-1 ready; it takes a ready larger
 *   than a result's limit;
 * - a worker whose later ready registers other data than the first is refused;
 * - the judge hands a worker exactly the scores it was given (a checksum over ids, log-probabilities and the
 *   top K, computed in the same order on both sides, compared bit for bit), also after a restart;
 * - examples/worker/task_worker.py registers the same sequences as evb_task_load and answers, bit for bit,
 *   the built-in task fitness (evb_task_score).
 * The model is described, not loaded (vocabulary 4096, context 512: the demo model's); only the demo
 * tokenizer is read. Needs /usr/bin/python3 with python3-msgpack; skips (77) without them. */
#include "testing.h"
#include "fixtures.h"
#include "evobudget/evb_status.h"
#include "evobudget/evb_task.h"
#include "evobudget/evb_worker.h"

#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define SEQ_WORKER "/usr/bin/python3 " EVB_SOURCE_DIR "/tests/tools/seq_worker.py"
#define TASK_WORKER "/usr/bin/python3 " EVB_SOURCE_DIR "/examples/worker/task_worker.py"

static char tmp_dir[1024];
static int n_logged;

static void log_line(void *ctx, const char *line) { (void)ctx; n_logged++; printf("  log: %s\n", line); }

static const int n_levels[2] = {3, 3};
static evb_worker_model model = {4096, 512, 1, 2, NULL};

static evb_worker_params params(const char *cmd) {
    return (evb_worker_params){cmd, "", 2, n_levels, 1.0, 20.0, 1, log_line, NULL, &model, NULL, 0};
}

static int same_seqs(const evb_seqs *a, const evb_seqs *b) {
    if (a->n != b->n || a->n_tokens != b->n_tokens) return 0;
    for (int i = 0; i < a->n; i++)
        if (a->start[i + 1] != b->start[i + 1] || a->score_from[i] != b->score_from[i] || a->group[i] != b->group[i]) return 0;
    return memcmp(a->tokens, b->tokens, sizeof(int32_t) * a->n_tokens) == 0;
}

// ---- registration ----

static void refused(const char *mode, const char *sequence, const char *what) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, SEQ_WORKER " %s", mode);
    evb_worker_params p = params(cmd);
    evb_seqs s = {0};
    int k = -1;
    int st = evb_worker_register(&p, &s, &k);
    const char *msg = evb_last_error();
    char name[1300];
    snprintf(name, sizeof name, "worker '%s'", cmd);
    EVB_CHECK(st == EVB_EINVAL && strstr(msg, name) && (!sequence || strstr(msg, sequence)) && strstr(msg, what) &&
              !strchr(msg, '\n') && s.n == 0,
              "%s: refused in one line naming the worker%s: %s", mode, sequence ? " and the sequence" : "", msg);
}

static void registration(void) {
    refused("long", "sequence 3", "513 tokens, beyond the model's context of 512");
    refused("vocab", "sequence 2", "4096");
    refused("negative", "sequence 2", "-1");
    refused("score_from", "sequence 3", "score_from 0");
    refused("protocol1", NULL, "protocol 1");
    refused("text_long", "sequence 1", "beyond the model's context of 512");
    refused("text_empty", "sequence 1", "the continuation adds no token");
    evb_worker_params p = params(SEQ_WORKER " sum");
    evb_seqs s = {0};
    int k = -1;
    int st = evb_worker_register(&p, &s, &k);
    EVB_CHECK(st == 0 && s.n == 4 && k == 2 && s.n_tokens == 18 && s.tokens[8] == 4000 && s.score_from[1] == 3 &&
              s.group[0] == 0 && s.group[1] == 0 && s.group[2] == 5 && s.group[3] == 5,
              "a good registration: 4 sequences as sent, groups defaulting to the index, top 2 (%s)", st ? evb_last_error() : "ok");
    evb_seqs_free(&s);
    p = params(SEQ_WORKER " big");
    st = evb_worker_register(&p, &s, &k);
    EVB_CHECK(st == 0 && s.n == 2000 && s.n_tokens == 400000, "a ready of 1.2 MB (beyond a result's 1 MiB) is taken (%s)",
              st ? evb_last_error() : "ok");
    evb_seqs_free(&s);
}

// ---- the judge ----

/* Scores of sequences ids[n] of q with top K, pseudo-random, in caller-sized arrays. */
typedef struct scores { int seq[16]; size_t off[17]; float lp[256]; int32_t top_id[512]; float top_lp[512]; evb_seq_scores s; } scores;

static void make_scores(scores *x, const evb_seqs *q, const int *ids, int n, int K) {
    uint64_t r = 42;
    x->off[0] = 0;
    for (int k = 0; k < n; k++) {
        x->seq[k] = ids[k];
        x->off[k + 1] = x->off[k] + (size_t)(evb_seqs_len(q, ids[k]) - q->score_from[ids[k]]);
    }
    for (size_t j = 0; j < x->off[n]; j++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        x->lp[j] = -(float)((r >> 40) % 100000) / 7919.0f;
        for (int t = 0; t < K; t++) {
            x->top_id[j * K + t] = (int32_t)((r >> (20 + t)) % 4096);
            x->top_lp[j * K + t] = x->lp[j] / (float)(t + 3);
        }
    }
    x->s = (evb_seq_scores){q, n, x->seq, x->off, x->lp, K, K ? x->top_id : NULL, K ? x->top_lp : NULL};
}

/* What seq_worker.py's check() computes, in the same order. */
static double checksum(const scores *x) {
    const int K = x->s.topk;
    double f = 0.0;
    for (int k = 0; k < x->s.n; k++) {
        f += (double)x->seq[k] * 1000.0;
        for (size_t j = x->off[k]; j < x->off[k + 1]; j++) f += (double)x->lp[j];
        for (size_t j = x->off[k] * K; j < x->off[k + 1] * K; j++) f += (double)x->top_id[j];
        for (size_t j = x->off[k] * K; j < x->off[k + 1] * K; j++) f += (double)x->top_lp[j];
    }
    return f;
}

/* One judge call through a fresh workspace: its status (init's or the judge's). */
static int judge_once(const evb_worker_params *p, const evb_seq_scores *s, double *f) {
    const evb_seq_judge *J = &evb_judge_worker;
    void *w = calloc(1, J->workspace_size(p));
    int st = J->workspace_init(w, p);
    if (!st) {
        int16_t lv[2] = {1, 2};
        evb_genome g = {2, lv};
        evb_batch b = {7, 0};
        st = J->judge(p, w, &g, &b, s, f);
        J->workspace_destroy(w);
    }
    free(w);
    return st;
}

static void judging(void) {
    char state[1200], cmd[2500];
    evb_worker_params p = params(SEQ_WORKER " sum");
    evb_seqs q = {0};
    int k = 0;
    EVB_CHECK(evb_worker_register(&p, &q, &k) == 0, "registered for the judge");
    p.registered = &q; p.topk = k;
    int ids[3] = {0, 2, 3};
    scores x;
    make_scores(&x, &q, ids, 3, 2);
    double f = 0, want = checksum(&x);
    int st = judge_once(&p, &x.s, &f);
    EVB_CHECK(st == 0 && f == want, "the worker saw the judge's scores: checksum %.17g, C %.17g (%s)", f, want, st ? evb_last_error() : "ok");
    snprintf(state, sizeof state, "%s/flaky", tmp_dir);
    snprintf(cmd, sizeof cmd, SEQ_WORKER " flaky %s", state);
    evb_worker_params pf = p;
    pf.command = cmd;
    n_logged = 0;
    st = judge_once(&pf, &x.s, &f);
    EVB_CHECK(st == 0 && f == want && n_logged == 1, "a worker that exits is restarted, registers again and answers (%d log lines)", n_logged);
    snprintf(state, sizeof state, "%s/changing", tmp_dir);
    snprintf(cmd, sizeof cmd, SEQ_WORKER " changing %s", state);
    evb_worker_params pc = params(cmd);
    evb_seqs q2 = {0};
    st = evb_worker_register(&pc, &q2, &k);
    pc.registered = &q2; pc.topk = k;
    if (!st) st = judge_once(&pc, &x.s, &f);
    EVB_CHECK(st == EVB_EBADFUNC && strstr(evb_last_error(), "registered other sequences") && strstr(evb_last_error(), cmd),
              "a worker whose later ready registers other data is refused: %s", evb_last_error());
    evb_seqs_free(&q2);
    pc = p;
    pc.topk = 3;
    st = judge_once(&pc, &x.s, &f);
    EVB_CHECK(st == EVB_EBADFUNC, "a worker that asks for another top K than the first is refused: %s", evb_last_error());
    evb_seqs_free(&q);
}

// ---- the example task worker ----

static const char *ITEMS =
    "{\"context\": \"Once upon a time, there was a little girl named Lily.\", \"choices\": [\" She liked to play.\", \" The sky fell.\", \" Zzz\"], \"gold\": 0}\n"
    "{\"context\": \"The cat sat\", \"choices\": [\" on the mat.\", \" under a tree in the park\"], \"gold\": 1}\n"
    "\n"
    "{\"context\": \"Tom had a red ball. He threw it\", \"choices\": [\" to his dog.\", \" into the sun\", \" away\", \" and caught it again.\"], \"gold\": 3}\n";

static void task_worker(void) {
    char path[1200], cmd[2500];
    snprintf(path, sizeof path, "%s/items.jsonl", tmp_dir);
    FILE *fp = fopen(path, "w");
    fputs(ITEMS, fp);
    fclose(fp);
    evb_task t;
    int st = evb_task_load(path, model.tok, model.max_len, &t);
    EVB_CHECK(st == 0 && t.n_items == 3, "the task file loads (%s)", st ? evb_last_error() : "ok");
    if (st) return;
    snprintf(cmd, sizeof cmd, TASK_WORKER " %s", path);
    evb_worker_params p = params(cmd);
    evb_seqs q = {0};
    int k = -1;
    st = evb_worker_register(&p, &q, &k);
    EVB_CHECK(st == 0 && k == 0 && same_seqs(&q, &t.seqs), "task_worker.py registers what evb_task_load reads (%d sequences; %s)",
              q.n, st ? evb_last_error() : "ok");
    p.registered = &q; p.topk = k;
    int ids[7] = {0, 1, 2, 5, 6, 7, 8}; /* items 0 and 2 */
    scores x;
    make_scores(&x, &q, ids, 7, 0);
    double f = 0, want = 0;
    int ts = evb_task_score(&t, &x.s, &want, NULL, NULL);
    st = judge_once(&p, &x.s, &f);
    EVB_CHECK(ts == 0 && st == 0 && f == want, "task_worker.py's fitness is the built-in one bit for bit: %.17g, C %.17g", f, want);
    evb_seqs_free(&q);
    evb_task_free(&t);
}

int main(void) {
    if (system("/usr/bin/python3 -c 'import msgpack' > /dev/null 2>&1") != 0) {
        printf("SKIP test_worker_seq: /usr/bin/python3 with msgpack is missing (hint: ./setup.sh installs python3-msgpack)\n");
        return EVB_TEST_SKIPPED;
    }
    signal(SIGPIPE, SIG_IGN);
    char *d = fixture_tmpdir();
    snprintf(tmp_dir, sizeof tmp_dir, "%s", d);
    free(d);
    evb_tokenizer *tok = NULL;
    int st = evb_tokenizer_load(EVB_SOURCE_DIR "/assets/demo/tokenizer.json", &tok);
    EVB_CHECK(st == 0, "the demo tokenizer loads (%s)", st ? evb_last_error() : "ok");
    model.tok = tok;
    registration();
    judging();
    if (tok) task_worker();
    evb_tokenizer_free(tok);
    fixture_rmdir(tmp_dir);
    return evb_test_summary();
}
