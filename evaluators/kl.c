/* kl.c -- the teacher cache and the KL / perplexity fitness (see evb_fitness_kl.h). */
#include "core/mem.h"
#include "evobudget/evb_fitness_kl.h"
#include "evobudget/evb_eval.h"
#include "evobudget/evb_status.h"
#include "core/rng.h"
#include "models/safetensors.h"
#include "evaluators/kl_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// ---- the teacher ----

struct evb_teacher {
    int kind, V, K, n_windows;
    size_t *row0;        /* [n_windows] first row of each window; window i has len_i - 1 rows */
    size_t n_rows;
    float *f32;          /* [n_rows, V] */
    uint16_t *f16;       /* [n_rows, V] */
    float *top_lp;       /* [n_rows, K] log-probabilities of the K most likely tokens */
    int32_t *top_id;     /* [n_rows, K] */
    float *tail;         /* [n_rows] log of the mass outside the top K */
};

/* Keeps the K largest of row[V] in (lp, id), by a partial insertion sort (K is small). */
void kl_top_k(const float *row, int V, int K, float *lp, int32_t *id) {
    int n = 0;
    for (int v = 0; v < V; v++) {
        float x = row[v];
        if (n == K && x <= lp[K - 1]) continue;
        int j = n < K ? n++ : K - 1;
        while (j > 0 && lp[j - 1] < x) { lp[j] = lp[j - 1]; id[j] = id[j - 1]; j--; }
        lp[j] = x; id[j] = v;
    }
}

static double log_tail(const float *lp, int K) {
    double s = 0;
    for (int k = 0; k < K; k++) s += exp((double)lp[k]);
    double t = 1.0 - s;
    return log(t > 1e-30 ? t : 1e-30);
}

int evb_teacher_build(const evb_model *m, const evb_windows *w, int batch, evb_teacher_kind kind, int topk,
                      evb_teacher **out) {
    *out = NULL;
    const int V = m->config.vocab_size;
    if (kind == EVB_TEACHER_TOPK && (topk < 1 || topk >= V))
        EVB_ERRORF(EVB_EINVAL, "teacher: top-k %d must lie in [1, %d)", topk, V);
    evb_teacher *t = calloc(1, sizeof *t);
    if (!t) EVB_ERROR("teacher: out of memory", EVB_ENOMEM);
    t->kind = kind; t->V = V; t->K = kind == EVB_TEACHER_TOPK ? topk : 0; t->n_windows = w->n;
    t->row0 = malloc(sizeof(size_t) * (w->n + 1));
    if (!t->row0) { evb_teacher_free(t); EVB_ERROR("teacher: out of memory", EVB_ENOMEM); }
    for (int i = 0; i < w->n; i++) { t->row0[i] = t->n_rows; t->n_rows += (size_t)w->len[i] - 1; }
    t->row0[w->n] = t->n_rows;
    size_t R = t->n_rows;
    if (kind == EVB_TEACHER_F32) t->f32 = evb_alloc_large(sizeof(float) * R * V);
    else if (kind == EVB_TEACHER_F16) t->f16 = evb_alloc_large(sizeof(uint16_t) * R * V);
    else { t->top_lp = malloc(sizeof(float) * R * t->K); t->top_id = malloc(sizeof(int32_t) * R * t->K); t->tail = malloc(sizeof(float) * R); }
    if (!t->f32 && !t->f16 && !(t->top_lp && t->top_id && t->tail)) {
        evb_teacher_free(t);
        EVB_ERRORF(EVB_ENOMEM, "teacher: out of memory for %zu positions x %d", R, kind == EVB_TEACHER_TOPK ? topk : V);
    }
    evb_state *s = NULL;
    int st = evb_state_alloc(m, batch, w->seq_len, &s);
    if (!st) s->exact = 1; /* a BF16 model's teacher is its float32 forward */
    for (int i = 0; !st && i < w->n;) {
        int T, B = evb_windows_batch(w, i, batch, &T);
        st = evb_forward(m, s, w->tokens + (size_t)i * w->seq_len, B, T);
        if (st) break;
        evb_log_softmax(s->logits, (size_t)B * T, V);
        for (int b = 0; b < B; b++)
            for (int p = 0; p < T - 1; p++) {
                const float *row = s->logits + ((size_t)b * T + p) * V;
                size_t r = t->row0[i + b] + p;
                if (t->f32) memcpy(t->f32 + r * V, row, sizeof(float) * V);
                else if (t->f16) for (int v = 0; v < V; v++) t->f16[r * V + v] = evb_f32_to_f16(row[v]);
                else {
                    kl_top_k(row, V, t->K, t->top_lp + r * t->K, t->top_id + r * t->K);
                    t->tail[r] = (float)log_tail(t->top_lp + r * t->K, t->K);
                }
            }
        i += B;
    }
    evb_state_free(s);
    if (st) { evb_teacher_free(t); return st; }
    *out = t;
    return EVB_SUCCESS;
}

void evb_teacher_free(evb_teacher *t) {
    if (!t) return;
    free(t->row0); free(t->f32); free(t->f16); free(t->top_lp); free(t->top_id); free(t->tail);
    free(t);
}

size_t evb_teacher_bytes(const evb_teacher *t) {
    size_t R = t->n_rows;
    if (t->f32) return R * t->V * sizeof(float);
    if (t->f16) return R * t->V * sizeof(uint16_t);
    return R * ((size_t)t->K * 8 + 4);
}

double evb_teacher_kl(const evb_teacher *t, int window, int pos0, const float *logq, int n, float *scratch) {
    const int V = t->V, K = t->K;
    size_t r0 = t->row0[window] + pos0;
    if (t->f32) return evb_kl_sum(t->f32 + r0 * V, logq, (size_t)n, V);
    double total = 0;
    for (int p = 0; p < n; p++) {
        size_t r = r0 + p;
        const float *q = logq + (size_t)p * V;
        if (t->f16) {
            for (int v = 0; v < V; v++) scratch[v] = evb_f16_to_f32(t->f16[r * V + v]);
            total += evb_kl_sum(scratch, q, 1, V);
            continue;
        }
        /* top K and the tail: KL of the distributions coarsened to K + 1 outcomes */
        const float *lp = t->top_lp + r * K;
        const int32_t *id = t->top_id + r * K;
        double kl = 0, qs = 0;
        for (int k = 0; k < K; k++) {
            double pk = exp((double)lp[k]);
            kl += pk * ((double)lp[k] - q[id[k]]);
            qs += exp((double)q[id[k]]);
        }
        double qt = 1.0 - qs, pt = exp((double)t->tail[r]);
        kl += pt * ((double)t->tail[r] - log(qt > 1e-30 ? qt : 1e-30));
        total += kl;
    }
    return total;
}

int evb_teacher_kl_error(const evb_teacher *t, evb_model *m, const evb_windows *w, int batch,
                         const float *const *weights, double *kl_teacher, double *kl_exact) {
    const int V = m->config.vocab_size, U = evb_model_n_units(m);
    evb_state *s = NULL;
    int st = evb_state_alloc(m, batch, w->seq_len, &s);
    if (st) return st;
    float *ref = evb_alloc_large(sizeof(float) * (size_t)batch * w->seq_len * V), *scratch = malloc(sizeof(float) * V);
    double a = 0, b = 0;
    size_t n = 0;
    if (!ref || !scratch) st = EVB_RAISEF(EVB_ENOMEM, "teacher error: out of memory");
    for (int i = 0; !st && i < w->n; i++) {
        int T = w->len[i];
        const int32_t *tok = w->tokens + (size_t)i * w->seq_len;
        st = evb_forward(m, s, tok, 1, T);
        if (st) break;
        evb_log_softmax(s->logits, (size_t)T, V);
        memcpy(ref, s->logits, sizeof(float) * T * V);
        for (int u = 0; u < U && !st; u++) st = evb_model_set_weight(m, u, weights ? weights[u] : NULL);
        if (!st) st = evb_forward(m, s, tok, 1, T);
        for (int u = 0; u < U; u++) evb_model_set_weight(m, u, NULL);
        if (st) break;
        evb_log_softmax(s->logits, (size_t)T, V);
        a += evb_teacher_kl(t, i, 0, s->logits, T - 1, scratch);
        b += evb_kl_sum(ref, s->logits, (size_t)T - 1, V);
        n += (size_t)T - 1;
    }
    free(ref); free(scratch);
    evb_state_free(s);
    *kl_teacher = n ? a / n : 0;
    *kl_exact = n ? b / n : 0;
    return st;
}

// ---- batches ----

size_t evb_batch_windows(const evb_windows *w, const evb_batch *b, int *idx, int *len, int *n) {
    size_t total = 0;
    for (int i = 0; i < w->n; i++) total += (size_t)w->len[i] - 1;
    *n = 0;
    if (b->n_tokens == 0 || b->n_tokens >= total) {
        for (int i = 0; i < w->n; i++) { idx[i] = i; len[i] = w->len[i]; }
        *n = w->n;
        return total;
    }
    /* Fisher-Yates from the seed, then windows in that order until n_tokens positions are scored. */
    for (int i = 0; i < w->n; i++) idx[i] = i;
    uint64_t x = b->seed;
    for (int i = w->n - 1; i > 0; i--) {
        int j = (int)(evb_splitmix64(&x) % (uint64_t)(i + 1));
        int tmp = idx[i]; idx[i] = idx[j]; idx[j] = tmp;
    }
    size_t got = 0;
    while (got < b->n_tokens) {
        int i = idx[*n];
        size_t take = (size_t)w->len[i] - 1;
        if (got + take > b->n_tokens) take = b->n_tokens - got;
        len[(*n)++] = (int)take + 1;
        got += take;
    }
    return got;
}

// ---- the fitness ----


size_t kl_workspace_size(const void *params) { (void)params; return sizeof(kl_ws); }

void kl_workspace_destroy(void *wp) {
    kl_ws *ws = wp;
    for (int u = 0; ws->held && u < ws->n_units; u++)
        if (ws->held[u] >= 0) evb_level_cache_release(ws->cache, ws->held[u]);
    free(ws->tok);
    free(ws->view.layers);
    evb_state_free(ws->s);
    for (int u = 0; ws->blk && u < ws->n_units; u++) evb_block_level_free(ws->blk[u]);
    free(ws->blk);
    free(ws->applied); free(ws->held); free(ws->idx); free(ws->len); free(ws->scratch); free(ws->zero); free(ws->h); free(ws->h_ref);
    memset(ws, 0, sizeof *ws);
}

int kl_workspace_init(void *wp, const void *params) {
    const evb_kl_params *p = params;
    kl_ws *ws = wp;
    memset(ws, 0, sizeof *ws);
    const evb_model *m = p->m;
    const int L = m->config.n_layers;
    if (p->metric == EVB_METRIC_KL && !p->teacher) EVB_ERROR("KL fitness: no teacher", EVB_EINVAL);
    ws->view = *m;
    ws->view.layers = malloc(sizeof(evb_layer) * L);
    ws->applied = malloc(sizeof(int16_t) * p->n_units);
    ws->held = malloc(sizeof(int) * p->n_units);
    ws->h_ref = malloc(sizeof(int16_t) * p->n_units);
    ws->blk = calloc((size_t)p->n_units, sizeof *ws->blk);
    ws->idx = malloc(sizeof(int) * p->w->n);
    ws->len = malloc(sizeof(int) * p->w->n);
    ws->scratch = malloc(sizeof(float) * m->config.vocab_size);
    size_t max_lin = evb_model_max_unit(m, NULL) + 1;
    ws->zero = calloc(max_lin, sizeof(float));
    ws->tok = malloc(sizeof(int32_t) * p->batch * p->w->seq_len);
    ws->cache = p->cache; ws->n_units = p->n_units;
    ws->h_cap = p->reuse_bytes / sizeof(float);
    if (ws->h_cap) ws->h = malloc(sizeof(float) * ws->h_cap);
    int st = evb_state_alloc(m, p->batch, p->w->seq_len, &ws->s);
    if (!st && (!ws->view.layers || !ws->blk || !ws->applied || !ws->held || !ws->h_ref || !ws->idx ||
                !ws->len || !ws->scratch || !ws->zero || !ws->tok || (ws->h_cap && !ws->h)))
        st = EVB_RAISEF(EVB_ENOMEM, "KL fitness: out of memory for a workspace");
    if (st) { kl_workspace_destroy(ws); return st; }
    memcpy(ws->view.layers, m->layers, sizeof(evb_layer) * L);
    for (int u = 0; u < p->n_units; u++) { ws->applied[u] = -1; ws->held[u] = -1; }
    return EVB_SUCCESS;
}

static int unit_block(const evb_fit_unit *u) {
    return u->kind == EVB_UNIT_LINEAR ? u->index / EVB_LINEAR_COUNT : u->index;
}

/* Unit u's structured level lv built from the shared model's dense weights and put into the view. */
static int apply_struct(const evb_kl_params *p, kl_ws *ws, int u, int lv) {
    const evb_fit_unit *fu = &p->units[u];
    int mlp = fu->kind == EVB_UNIT_MLP_S;
    evb_block_level_clear(&ws->view, fu->index, mlp);
    evb_block_level_free(ws->blk[u]);
    ws->blk[u] = NULL;
    const evb_struct_level *r = fu->recipe ? fu->recipe[lv] : NULL;
    if (!r) return EVB_SUCCESS;
    int st = evb_block_level_make(p->m, fu->index, mlp, r->kept, r->n_kept, r->out_w, r->bias, &ws->blk[u]);
    if (!st) evb_block_level_apply(&ws->view, ws->blk[u]);
    return st;
}

/* Puts the candidate's levels into the view, swapping only the units whose level changed. */
static int apply(const evb_kl_params *p, kl_ws *ws, const int16_t *level) {
    for (int u = 0; u < p->n_units; u++) {
        int lv = level[u];
        if (lv == ws->applied[u]) continue;
        const evb_fit_unit *fu = &p->units[u];
        if (lv < 0 || lv >= fu->n_levels) EVB_ERRORF(EVB_EINVAL, "unit %d has no level %d (it has %d)", u, lv, fu->n_levels);
        if (fu->kind == EVB_UNIT_ATTN) ws->view.layers[fu->index].skip_attn = lv != 0;
        else if (fu->kind == EVB_UNIT_MLP) ws->view.layers[fu->index].skip_mlp = lv != 0;
        else if (fu->kind == EVB_UNIT_ATTN_S || fu->kind == EVB_UNIT_MLP_S) {
            int st = apply_struct(p, ws, u, lv);
            if (st) { ws->applied[u] = -2; return st; }
        } else {
            if (ws->held[u] >= 0) { evb_level_cache_release(p->cache, ws->held[u]); ws->held[u] = -1; }
            int e = fu->entry[lv], bf = ws->view.compute == EVB_COMPUTE_BF16;
            /* the zero matrix is all-zero bits in either format */
            const float *W = e == EVB_ENTRY_ZERO ? ws->zero : NULL;
            const uint16_t *W16 = e == EVB_ENTRY_ZERO ? (const uint16_t *)(const void *)ws->zero : NULL;
            if (e >= 0) {
                int st = bf ? evb_level_cache_get16(p->cache, e, &W16) : evb_level_cache_get(p->cache, e, &W);
                if (st) { ws->applied[u] = -2; return st; }
                ws->held[u] = e;
            }
            /* a view shares the model's copies of set weights: a BF16 view takes bfloat16 levels as they are */
            if (bf) evb_model_set_weight16(&ws->view, fu->index, W16);
            else evb_model_set_weight(&ws->view, fu->index, W);
        }
        ws->applied[u] = (int16_t)lv;
    }
    return EVB_SUCCESS;
}

/* Windows [c, c + B) of the batch that share one length: one forward. */
static int chunk(const kl_ws *ws, int c, int n, int max_b) {
    int B = 1;
    while (B < max_b && c + B < n && ws->len[c + B] == ws->len[c]) B++;
    return B;
}

/* Loads the batch's tokens of windows [c, c + B) into the state and embeds them. */
static int embed(const evb_kl_params *p, kl_ws *ws, int c, int B, int T, int32_t *tok) {
    for (int b = 0; b < B; b++) memcpy(tok + (size_t)b * T, p->w->tokens + (size_t)ws->idx[c + b] * p->w->seq_len, sizeof(int32_t) * T);
    return evb_forward_embed(&ws->view, ws->s, tok, B, T);
}

/* The chunks of windows [c, c + B) a batch is scored in (chunk()) are numbered; part k of n_parts runs
 * chunks [k nc / n_parts, (k + 1) nc / n_parts). */
int kl_run(const evb_kl_params *p, kl_ws *ws, const evb_genome *g, const evb_genome *ref, const evb_batch *b, int n,
           int part, int n_parts, kl_sink sink, void *ctx) {
    const evb_model *m = p->m;
    const int L = m->config.n_layers, D = m->config.dim, V = m->config.vocab_size;
    if (g && g->n_units != p->n_units) EVB_ERRORF(EVB_EINVAL, "fitness: candidate of %d units, the model has %d", g->n_units, p->n_units);
    size_t tokens = 0;
    for (int i = 0; i < n; i++) tokens += (size_t)ws->len[i];
    /* Reuse: the reference's states at every block input must fit. */
    int reuse = g && ref && ws->h && n_parts == 1 && tokens * D * (size_t)L <= ws->h_cap;
    int nc = 0;
    for (int c = 0; c < n; nc++) c += chunk(ws, c, n, p->batch);
    int j0 = (int)((int64_t)part * nc / n_parts), j1 = (int)((int64_t)(part + 1) * nc / n_parts);
    int first = 0;
    if (reuse) {
        int same_ref = ws->h_valid && ws->h_batch.seed == b->seed && ws->h_batch.n_tokens == b->n_tokens &&
                       memcmp(ws->h_ref, ref->level, sizeof(int16_t) * p->n_units) == 0;
        if (!same_ref) {
            ws->h_valid = 0;
            int st = apply(p, ws, ref->level);
            size_t off = 0;
            for (int c = 0; !st && c < n;) {
                int B = chunk(ws, c, n, p->batch), T = ws->len[c];
                st = embed(p, ws, c, B, T, ws->tok);
                for (int l = 0; !st && l < L; l++) {
                    memcpy(ws->h + (size_t)l * tokens * D + off, ws->s->x, sizeof(float) * B * T * D);
                    if (l + 1 < L) st = evb_forward_blocks(&ws->view, ws->s, l, l + 1);
                }
                off += (size_t)B * T * D;
                c += B;
            }
            if (st) return st;
            ws->h_valid = 1; ws->h_batch = *b;
            memcpy(ws->h_ref, ref->level, sizeof(int16_t) * p->n_units);
        }
        first = L - 1;
        for (int u = 0; u < p->n_units; u++)
            if (g->level[u] != ref->level[u] && unit_block(&p->units[u]) < first) first = unit_block(&p->units[u]);
    }
    int st = g ? apply(p, ws, g->level) : EVB_SUCCESS;
    if (st) return st;
    size_t off = 0;
    for (int c = 0, j = 0; c < n; j++) {
        int B = chunk(ws, c, n, p->batch), T = ws->len[c];
        if (j < j0 || j >= j1) { off += (size_t)B * T * D; c += B; continue; }
        int32_t *tok = ws->tok;
        if (reuse) {
            for (int b2 = 0; b2 < B; b2++)
                memcpy(tok + (size_t)b2 * T, p->w->tokens + (size_t)ws->idx[c + b2] * p->w->seq_len, sizeof(int32_t) * T);
            ws->s->B = B; ws->s->T = T;
            memcpy(ws->s->x, ws->h + (size_t)first * tokens * D + off, sizeof(float) * B * T * D);
        } else st = embed(p, ws, c, B, T, tok);
        if (!st) st = evb_forward_blocks(&ws->view, ws->s, first, L);
        if (!st) st = evb_forward_logits(&ws->view, ws->s);
        if (st) return st;
        evb_log_softmax(ws->s->logits, (size_t)B * T, V);
        for (int b2 = 0; b2 < B && !st; b2++)
            st = sink(ctx, ws, c + b2, ws->s->logits + (size_t)b2 * T * V, tok + (size_t)b2 * T, T);
        if (st) return st;
        off += (size_t)B * T * D;
        c += B;
    }
    return EVB_SUCCESS;
}

/* Each window's KL (or NLL) sum is rounded to units of EVB_KL_UNIT and the units added as integers, so the
 * parts' sums add up to the whole's exactly, however it is split. */
typedef struct kl_acc { const evb_kl_params *p; int64_t total; } kl_acc;

static int kl_sink_sum(void *ctx, const kl_ws *ws, int k, const float *lq, const int32_t *tok, int T) {
    kl_acc *a = ctx;
    const evb_kl_params *p = a->p;
    double sw = p->metric == EVB_METRIC_KL ? evb_teacher_kl(p->teacher, ws->idx[k], 0, lq, T - 1, ws->scratch)
                                           : evb_nll_sum(lq, tok + 1, (size_t)T - 1, p->m->config.vocab_size);
    a->total += (int64_t)llround(sw / EVB_KL_UNIT);
    return EVB_SUCCESS;
}

static int kl_part(const evb_kl_params *p, kl_ws *ws, const evb_genome *g, const evb_genome *ref, const evb_batch *b,
                   int part, int n_parts, int64_t *units, size_t *n_scored) {
    int n;
    size_t scored = evb_batch_windows(p->w, b, ws->idx, ws->len, &n);
    kl_acc a = {p, 0};
    int st = kl_run(p, ws, g, ref, b, n, part, n_parts, kl_sink_sum, &a);
    if (st) return st;
    *units = a.total;
    *n_scored = scored;
    return EVB_SUCCESS;
}

static int kl_evaluate(const void *params, void *wp, const evb_genome *g, const evb_genome *ref, const evb_batch *b,
                       double *fitness) {
    int64_t units;
    size_t scored;
    int st = kl_part(params, wp, g, ref, b, 0, 1, &units, &scored);
    if (!st) *fitness = (double)units * EVB_KL_UNIT / (double)scored;
    return st;
}

int evb_fitness_kl_part(const evb_kl_params *p, void *ws, const evb_genome *g, const evb_batch *b, int part, int n_parts,
                        int64_t *units, size_t *n_scored) {
    if (n_parts < 1 || part < 0 || part >= n_parts) EVB_ERRORF(EVB_EINVAL, "KL fitness: part %d of %d", part, n_parts);
    return kl_part(p, ws, g, NULL, b, part, n_parts, units, n_scored);
}



const evb_fitness_type evb_fitness_kl = {
    "kl", kl_workspace_size, kl_workspace_init, kl_workspace_destroy, kl_evaluate,
};
