/* seq.c -- sequence sets and the fitness that hands a candidate's log-probabilities of them to a judge (see
 * evb_fitness_seq.h); the weighted sum of fitnesses. */
#include "evobudget/evb_fitness_seq.h"
#include "evobudget/evb_eval.h"
#include "evobudget/evb_status.h"
#include "core/rng.h"
#include "evaluators/kl_impl.h"

#include <stdlib.h>
#include <string.h>

// ---- sequence sets ----

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return EVB_SUCCESS;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) EVB_ERROR("sequences: out of memory", EVB_ENOMEM);
    *p = q; *cap = c;
    return EVB_SUCCESS;
}

int evb_seqs_add(evb_seqs *s, const int32_t *tokens, int len, int score_from, int group) {
    if (len < 2) EVB_ERRORF(EVB_EINVAL, "sequence %d has %d token(s); it needs 2 or more (one scored after one given)", s->n, len);
    if (score_from < 1 || score_from >= len)
        EVB_ERRORF(EVB_EINVAL, "sequence %d: score_from %d is outside [1, %d) (its length is %d)", s->n, score_from, len, len);
    if (group < 0) EVB_ERRORF(EVB_EINVAL, "sequence %d: group %d is negative", s->n, group);
    size_t cap = (size_t)s->cap, need = (size_t)s->n + 2;
    int st = grow((void **)&s->start, &cap, need, sizeof(size_t));
    size_t cap2 = (size_t)s->cap;
    if (!st) st = grow((void **)&s->score_from, &cap2, need, sizeof(int));
    size_t cap3 = (size_t)s->cap;
    if (!st) st = grow((void **)&s->group, &cap3, need, sizeof(int));
    if (!st) st = grow((void **)&s->tokens, &s->tok_cap, s->n_tokens + (size_t)len, sizeof(int32_t));
    if (st) return st;
    s->cap = (int)cap;
    if (s->n == 0) s->start[0] = 0;
    memcpy(s->tokens + s->n_tokens, tokens, sizeof(int32_t) * len);
    s->n_tokens += (size_t)len;
    s->score_from[s->n] = score_from;
    s->group[s->n] = group;
    s->start[++s->n] = s->n_tokens;
    return EVB_SUCCESS;
}

void evb_seqs_free(evb_seqs *s) {
    free(s->tokens); free(s->start); free(s->score_from); free(s->group);
    memset(s, 0, sizeof *s);
}

int evb_seqs_check(const evb_seqs *s, const evb_model *m) {
    if (s->n < 1) EVB_ERROR("sequences: none given", EVB_EINVAL);
    const int V = m->config.vocab_size, N = m->config.max_seq_len;
    for (int i = 0; i < s->n; i++) {
        int len = evb_seqs_len(s, i);
        if (len > N) EVB_ERRORF(EVB_EINVAL, "sequence %d has %d tokens, beyond the model's context of %d", i, len, N);
        for (int t = 0; t < len; t++) {
            int32_t id = s->tokens[s->start[i] + t];
            if (id < 0 || id >= V) EVB_ERRORF(EVB_EINVAL, "sequence %d: token %d is %d, outside the model's vocabulary [0, %d)", i, t, (int)id, V);
        }
    }
    return EVB_SUCCESS;
}

size_t evb_seqs_scored(const evb_seqs *s) {
    size_t n = 0;
    for (int i = 0; i < s->n; i++) n += (size_t)(evb_seqs_len(s, i) - s->score_from[i]);
    return n;
}

// ---- batches ----

static int cmp_int(const void *a, const void *b) { int x = *(const int *)a, y = *(const int *)b; return (x > y) - (x < y); }

typedef struct group_sum { int group; size_t scored; } group_sum;
static int cmp_group(const void *a, const void *b) {
    int x = ((const group_sum *)a)->group, y = ((const group_sum *)b)->group;
    return (x > y) - (x < y);
}

/* The distinct groups in ascending order with their scored positions: gs[*ng]. */
static int group_sums(const evb_seqs *s, group_sum *gs) {
    for (int i = 0; i < s->n; i++) gs[i] = (group_sum){s->group[i], (size_t)(evb_seqs_len(s, i) - s->score_from[i])};
    qsort(gs, (size_t)s->n, sizeof *gs, cmp_group);
    int n = 0;
    for (int i = 0; i < s->n; i++) {
        if (n && gs[n - 1].group == gs[i].group) gs[n - 1].scored += gs[i].scored;
        else gs[n++] = gs[i];
    }
    return n;
}

int evb_seq_batch(const evb_seqs *s, const evb_batch *b, int *seq, size_t *scored) {
    size_t total = evb_seqs_scored(s);
    int n = 0;
    *scored = 0;
    if (b->n_tokens == 0 || b->n_tokens >= total) {
        for (int i = 0; i < s->n; i++) seq[n++] = i;
        *scored = total;
        return n;
    }
    group_sum *gs = malloc(sizeof *gs * s->n);
    int *take = malloc(sizeof(int) * s->n);
    if (!gs || !take) { free(gs); free(take); return -1; }
    int ng = group_sums(s, gs);
    uint64_t x = b->seed; /* Fisher-Yates from the seed, then whole groups until n_tokens positions */
    for (int i = ng - 1; i > 0; i--) {
        int j = (int)(evb_splitmix64(&x) % (uint64_t)(i + 1));
        group_sum t = gs[i]; gs[i] = gs[j]; gs[j] = t;
    }
    int nt = 0;
    for (int k = 0; k < ng && *scored < b->n_tokens; k++) {
        take[nt++] = gs[k].group;
        *scored += gs[k].scored;
    }
    qsort(take, (size_t)nt, sizeof(int), cmp_int);
    for (int i = 0; i < s->n; i++)
        if (bsearch(&s->group[i], take, (size_t)nt, sizeof(int), cmp_int)) seq[n++] = i;
    free(gs); free(take);
    return n;
}

int evb_seq_scores_find(const evb_seq_scores *s, int id, int pos, int count, const float **out,
                        const int32_t **top_id, const float **top_lp) {
    if (id < 0 || id >= s->seqs->n) EVB_ERRORF(EVB_EINVAL, "sequence %d does not exist (%d registered)", id, s->seqs->n);
    int lo = 0, hi = s->n - 1, k = -1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (s->seq[mid] == id) { k = mid; break; }
        if (s->seq[mid] < id) lo = mid + 1; else hi = mid - 1;
    }
    if (k < 0) EVB_ERRORF(EVB_EINVAL, "sequence %d is not in this batch", id);
    int from = s->seqs->score_from[id], len = evb_seqs_len(s->seqs, id);
    if (count < 0 || pos < from || pos > len - count)
        EVB_ERRORF(EVB_EINVAL, "sequence %d: positions [%d, %d) asked, its scored positions are [%d, %d)", id, pos, pos + count, from, len);
    size_t r = s->off[k] + (size_t)(pos - from);
    *out = s->lp + r;
    if (top_id) *top_id = s->topk ? s->top_id + r * s->topk : NULL;
    if (top_lp) *top_lp = s->topk ? s->top_lp + r * s->topk : NULL;
    return EVB_SUCCESS;
}

// ---- the padded windows ----

#define SEQ_PAD 8 /* forward lengths are rounded up to this, so that more sequences share one forward */

int evb_seq_params_init(evb_seq_params *p) {
    memset(&p->w, 0, sizeof p->w);
    const evb_seqs *s = p->seqs;
    int st = evb_seqs_check(s, p->model.m);
    if (st) return st;
    if (p->topk < 0 || p->topk > 64 || p->topk >= p->model.m->config.vocab_size)
        EVB_ERRORF(EVB_EINVAL, "top-k %d must lie in [0, 64] and below the vocabulary", p->topk);
    int W = 0;
    for (int i = 0; i < s->n; i++) if (evb_seqs_len(s, i) > W) W = evb_seqs_len(s, i);
    p->w.n = s->n; p->w.seq_len = W;
    p->w.tokens = calloc((size_t)s->n * W, sizeof(int32_t));
    p->w.len = malloc(sizeof(int) * s->n);
    if (!p->w.tokens || !p->w.len) { evb_seq_params_free(p); EVB_ERROR("sequences: out of memory", EVB_ENOMEM); }
    for (int i = 0; i < s->n; i++) {
        int len = evb_seqs_len(s, i), padded = (len + SEQ_PAD - 1) / SEQ_PAD * SEQ_PAD;
        memcpy(p->w.tokens + (size_t)i * W, s->tokens + s->start[i], sizeof(int32_t) * len);
        p->w.len[i] = padded < W ? padded : W;
    }
    return EVB_SUCCESS;
}

void evb_seq_params_free(evb_seq_params *p) { evb_windows_free(&p->w); }

// ---- the fitness ----

typedef struct seq_ws {
    kl_ws kw;
    evb_kl_params kp;        /* the model's params over the padded windows */
    int *seq, *order;        /* [n] the batch's sequences (set order); their forward order */
    size_t *off;             /* [n + 1] */
    float *lp, *top_lp;      /* [scored], [scored, K] */
    int32_t *top_id;
    void *jw;                /* the judge's workspace */
    const evb_seq_judge *judge; /* set once jw is initialised */
} seq_ws;

static size_t seq_workspace_size(const void *params) { (void)params; return sizeof(seq_ws); }

static void seq_workspace_destroy(void *wp) {
    seq_ws *ws = wp;
    if (ws->judge && ws->judge->workspace_destroy) ws->judge->workspace_destroy(ws->jw);
    kl_workspace_destroy(&ws->kw);
    free(ws->seq); free(ws->order); free(ws->off); free(ws->lp); free(ws->top_lp); free(ws->top_id);
    free(ws->jw);
    memset(ws, 0, sizeof *ws);
}

static int seq_ws_alloc(seq_ws *ws, const evb_seq_params *p) {
    memset(ws, 0, sizeof *ws);
    ws->kp = p->model;
    ws->kp.w = &p->w;
    ws->kp.teacher = NULL;
    ws->kp.metric = EVB_METRIC_PPL;
    int st = kl_workspace_init(&ws->kw, &ws->kp);
    if (st) return st;
    const int n = p->seqs->n, K = p->topk;
    size_t R = evb_seqs_scored(p->seqs);
    ws->seq = malloc(sizeof(int) * n); ws->order = malloc(sizeof(int) * n);
    ws->off = malloc(sizeof(size_t) * (n + 1));
    ws->lp = malloc(sizeof(float) * R);
    if (K) { ws->top_lp = malloc(sizeof(float) * R * K); ws->top_id = malloc(sizeof(int32_t) * R * K); }
    if (!ws->seq || !ws->order || !ws->off || !ws->lp || (K && (!ws->top_lp || !ws->top_id))) {
        seq_workspace_destroy(ws);
        EVB_ERROR("sequence fitness: out of memory for a workspace", EVB_ENOMEM);
    }
    return EVB_SUCCESS;
}

static int seq_workspace_init(void *wp, const void *params) {
    const evb_seq_params *p = params;
    seq_ws *ws = wp;
    int st = seq_ws_alloc(ws, p);
    if (st) return st;
    size_t jb = p->judge->workspace_size ? p->judge->workspace_size(p->judge_ctx) : 0;
    ws->jw = calloc(1, jb ? jb : 1);
    if (!ws->jw) { seq_workspace_destroy(ws); EVB_ERROR("sequence fitness: out of memory for a workspace", EVB_ENOMEM); }
    st = p->judge->workspace_init ? p->judge->workspace_init(ws->jw, p->judge_ctx) : EVB_SUCCESS;
    if (st) { seq_workspace_destroy(ws); return st; }
    ws->judge = p->judge;
    return EVB_SUCCESS;
}

/* Copies a forwarded sequence's scored positions into the batch's arrays. */
typedef struct seq_sink_ctx { const evb_seq_params *p; seq_ws *ws; const int *slot; } seq_sink_ctx;

static int seq_sink(void *ctx, const kl_ws *kw, int k, const float *lq, const int32_t *tok, int T) {
    (void)T;
    seq_sink_ctx *c = ctx;
    const evb_seqs *s = c->p->seqs;
    const int V = c->p->model.m->config.vocab_size, K = c->p->topk, id = kw->idx[k], slot = c->slot[k];
    int from = s->score_from[id], len = evb_seqs_len(s, id);
    size_t r = c->ws->off[slot];
    for (int t = from; t < len; t++, r++) {
        const float *row = lq + (size_t)(t - 1) * V;
        c->ws->lp[r] = row[tok[t]];
        if (K) kl_top_k(row, V, K, c->ws->top_lp + r * K, c->ws->top_id + r * K);
    }
    return EVB_SUCCESS;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Fills ws's scores of candidate g (NULL: dense) on batch b. */
static int seq_forward(const evb_seq_params *p, seq_ws *ws, const evb_genome *g, const evb_genome *ref,
                       const evb_batch *b, evb_seq_scores *out) {
    const evb_seqs *s = p->seqs;
    size_t scored;
    int n = evb_seq_batch(s, b, ws->seq, &scored);
    if (n < 0) EVB_ERROR("sequence fitness: out of memory", EVB_ENOMEM);
    ws->off[0] = 0;
    for (int k = 0; k < n; k++) ws->off[k + 1] = ws->off[k] + (size_t)(evb_seqs_len(s, ws->seq[k]) - s->score_from[ws->seq[k]]);
    /* forward order: by padded length (the chunks of one forward), then by place; slot[k] is forward window
     * k's place in seq[] */
    int *slot = ws->order;
    uint64_t *key = malloc(sizeof(uint64_t) * (n ? n : 1));
    if (!key) EVB_ERROR("sequence fitness: out of memory", EVB_ENOMEM);
    for (int k = 0; k < n; k++) key[k] = (uint64_t)p->w.len[ws->seq[k]] << 32 | (uint64_t)k;
    qsort(key, (size_t)n, sizeof(uint64_t), cmp_u64);
    for (int k = 0; k < n; k++) slot[k] = (int)(key[k] & 0xffffffffu);
    free(key);
    for (int k = 0; k < n; k++) { ws->kw.idx[k] = ws->seq[slot[k]]; ws->kw.len[k] = p->w.len[ws->seq[slot[k]]]; }
    seq_sink_ctx c = {p, ws, slot};
    int st = kl_run(&ws->kp, &ws->kw, g, ref, b, n, 0, 1, seq_sink, &c);
    if (st) return st;
    *out = (evb_seq_scores){s, n, ws->seq, ws->off, ws->lp, p->topk, ws->top_id, ws->top_lp};
    return EVB_SUCCESS;
}

static int seq_evaluate(const void *params, void *wp, const evb_genome *g, const evb_genome *ref, const evb_batch *b,
                        double *fitness) {
    const evb_seq_params *p = params;
    seq_ws *ws = wp;
    evb_seq_scores sc;
    int st = seq_forward(p, ws, g, ref, b, &sc);
    return st ? st : p->judge->judge(p->judge_ctx, ws->jw, g, b, &sc, fitness);
}

const evb_fitness_type evb_fitness_seq = {
    "seq", seq_workspace_size, seq_workspace_init, seq_workspace_destroy, seq_evaluate,
};

// ---- the dense model's scores ----

int evb_seq_dense(const evb_seq_params *p, evb_seq_scores *out) {
    memset(out, 0, sizeof *out);
    seq_ws *ws = malloc(sizeof *ws);
    if (!ws) EVB_ERROR("sequence fitness: out of memory", EVB_ENOMEM);
    int st = seq_ws_alloc(ws, p);
    if (st) { free(ws); return st; }
    evb_batch all = {0, 0};
    st = seq_forward(p, ws, NULL, NULL, &all, out);
    if (st) { seq_workspace_destroy(ws); free(ws); return st; }
    /* the scores keep the workspace's arrays; the rest goes */
    kl_workspace_destroy(&ws->kw);
    free(ws->order); free(ws->jw);
    out->seq = ws->seq; out->off = ws->off;
    free(ws);
    return EVB_SUCCESS;
}

void evb_seq_scores_release(evb_seq_scores *s) {
    free((void *)s->seq); free((void *)s->off); free((void *)s->lp); free((void *)s->top_id); free((void *)s->top_lp);
    memset(s, 0, sizeof *s);
}

// ---- a weighted sum ----

typedef struct sum_ws { const evb_sum_params *p; void *part[4]; } sum_ws;

static size_t sum_workspace_size(const void *params) { (void)params; return sizeof(sum_ws); }

static void sum_workspace_destroy(void *wp) {
    sum_ws *ws = wp;
    for (int i = 0; ws->p && i < ws->p->n; i++) {
        if (ws->part[i] && ws->p->part[i]->workspace_destroy) ws->p->part[i]->workspace_destroy(ws->part[i]);
        free(ws->part[i]);
    }
    memset(ws, 0, sizeof *ws);
}

static int sum_workspace_init(void *wp, const void *params) {
    const evb_sum_params *p = params;
    sum_ws *ws = wp;
    memset(ws, 0, sizeof *ws);
    if (p->n < 1 || p->n > 4) EVB_ERRORF(EVB_EINVAL, "sum fitness: %d parts (1 to 4)", p->n);
    for (int i = 0; i < p->n; i++) {
        ws->p = p;
        ws->part[i] = calloc(1, p->part[i]->workspace_size(p->params[i]) + 1);
        int st = ws->part[i] ? EVB_SUCCESS : EVB_RAISEF(EVB_ENOMEM, "sum fitness: out of memory");
        if (!st && p->part[i]->workspace_init) st = p->part[i]->workspace_init(ws->part[i], p->params[i]);
        if (st) {
            free(ws->part[i]); ws->part[i] = NULL;
            sum_workspace_destroy(ws);
            return st;
        }
    }
    return EVB_SUCCESS;
}

static int sum_evaluate(const void *params, void *wp, const evb_genome *g, const evb_genome *ref, const evb_batch *b,
                        double *fitness) {
    const evb_sum_params *p = params;
    sum_ws *ws = wp;
    double total = 0;
    for (int i = 0; i < p->n; i++) {
        double f;
        int st = p->part[i]->evaluate(p->params[i], ws->part[i], g, ref, b, &f);
        if (st) return st;
        total += p->weight[i] * f;
    }
    *fitness = total;
    return EVB_SUCCESS;
}

const evb_fitness_type evb_fitness_sum = {
    "sum", sum_workspace_size, sum_workspace_init, sum_workspace_destroy, sum_evaluate,
};
