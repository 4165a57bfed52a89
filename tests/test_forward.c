#define _GNU_SOURCE
/* test_forward.c -- the forward pass on the real stories260K checkpoint against llama2.c's reference
 * outputs (../shared/data/models/stories260K/SOURCE.md), the batched fast path against the naive
 * reference, the same weights converted to Hugging Face layout (rotate-half, F32/F16/BF16, one file and
 * sharded), Qwen2-style biases and untied classifiers, the hooks, and thread-count independence. */
#include "testing.h"
#include "fixtures.h"
#include "standin.h"

#include <unistd.h>
#include "evobudget/evb_eval.h"
#include "evobudget/evb_status.h"
#include "models/blas.h"
#include "models/naive.h"
#include "evaluators/naive.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define MODEL EVB_SHARED_DATA "/models/stories260K/stories260K.bin"

/* run.c -t 0, prompt "Once upon a time": BOS + prompt = the first 5 ids, then 60 greedy steps. */
static const int32_t greedy_ref[] = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426,
    338, 401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394, 261, 370,
    432, 352, 266, 268, 388, 426, 338, 391, 266, 267, 337, 335, 312, 432, 398, 312, 286, 267, 414, 270, 333, 415, 426,
    13, 438, 310};
static const float logits0_ref[8] = {-6.222911f, 8.404342f, -6.223737f, -6.222542f, -6.221951f, -6.222875f, -6.221880f, -6.223416f};
#define NREF ((int)(sizeof greedy_ref / sizeof *greedy_ref))

/* Greedy decoding with the batched forward; writes n_total ids into out. */
static int greedy(const evb_model *m, const int32_t *prompt, int np, int n_total, int32_t *out) {
    evb_state *s;
    if (evb_state_alloc(m, 1, n_total, &s)) return 1;
    memcpy(out, prompt, sizeof(int32_t) * np);
    for (int n = np; n < n_total; n++) {
        if (evb_forward(m, s, out, 1, n)) { evb_state_free(s); return 1; }
        const float *row = s->logits + (size_t)(n - 1) * m->config.vocab_size;
        int best = 0;
        for (int v = 1; v < m->config.vocab_size; v++) if (row[v] > row[best]) best = v;
        out[n] = best;
    }
    evb_state_free(s);
    return 0;
}

static float *logits_of(const evb_model *m, const int32_t *tok, int T) {
    evb_state *s;
    if (evb_state_alloc(m, 1, T, &s)) return NULL;
    float *out = malloc(sizeof(float) * T * m->config.vocab_size);
    evb_forward(m, s, tok, 1, T);
    memcpy(out, s->logits, sizeof(float) * T * m->config.vocab_size);
    evb_state_free(s);
    return out;
}

/* The original's own greedy tokens from the first 5 of greedy_ref (run.c's for stories260K, checked in main). */
static int32_t greedy_own[NREF];
static int on_standin; /* 1: the model is tests/standin.h's stand-in */

/* Loads an HF export of m and checks logits and greedy tokens against the original. */
/* tol0 bounds the position-0 logits (the reference point of SOURCE.md); tol_all every position's. Rounding
 * the weights to BF16 (8 significant bits) moves logits of magnitude ~10 by a few hundredths per position,
 * and the error grows along the sequence as it passes through attention. */
static void check_export(const evb_model *m, const float *ref, const char *dtype, int shards, double tol0, double tol_all) {
    char *dir = fixture_tmpdir();
    int rc = fixture_write_hf(m, dir, dtype, shards, 1, "llama");
    EVB_CHECK(rc == 0, "export stories260K to HF %s, %d shard(s)", dtype, shards);
    evb_model *h = NULL;
    int st = evb_model_load(dir, &h);
    EVB_CHECK(st == 0, "load the HF %s export (%s)", dtype, evb_last_error());
    if (h) {
        EVB_CHECK(h->config.rope_halves == 1 && strcmp(h->config.format, "hf") == 0, "HF export uses rotate-half");
        float *lg = logits_of(h, greedy_ref, NREF);
        double d = evb_test_max_abs_diff(lg, ref, (size_t)NREF * m->config.vocab_size);
        double dp0 = evb_test_max_abs_diff(lg, ref, (size_t)m->config.vocab_size);
        EVB_CHECK(d < tol_all, "HF %s %d shard(s): logits at all %d positions within %g (max diff %.3g)", dtype, shards, NREF, tol_all, d);
        /* The tolerances are stories260K's; a random model's flat distribution has near-ties that BF16 flips. */
        if (!on_standin || strcmp(dtype, "BF16") != 0 ||
            evb_test_have(MODEL, "position-0 logits and greedy tokens through a BF16 export")) {
            EVB_CHECK(dp0 < tol0, "HF %s %d shard(s): position-0 logits within %g of the llama2.c layout (max diff %.3g)", dtype, shards, tol0, dp0);
            int32_t out[NREF];
            greedy(h, greedy_ref, 5, NREF, out);
            EVB_CHECK(memcmp(out, greedy_own, sizeof out) == 0, "HF %s %d shard(s): the same 60 greedy tokens", dtype, shards);
        }
        free(lg);
        evb_model_free(h);
    }
    fixture_rmdir(dir);
    free(dir);
}

int main(void) {
    evb_blas_init();
    evb_model *m = NULL;
    int st = 0;
    /* stories260K against llama2.c's reference outputs, then the demo model, which the project ships. Without
     * ../shared/data, tests/standin.h's random-weight model of the same shapes runs every check but run.c's. */
    const char *path = MODEL;
    char standin[64] = "";
    if (!evb_test_readable(MODEL)) {
        snprintf(standin, sizeof standin, "/tmp/evb_standin_%ld.bin", (long)getpid());
        printf("NOTE %s is missing: running on a random-weight stand-in of its shapes (tests/standin.h)\n", MODEL);
        EVB_CHECK(standin_write_model(standin) == 0, "write the stand-in %s", standin);
        path = standin;
        on_standin = 1;
    }
    st = evb_model_load(path, &m);
    if (standin[0]) remove(standin);
    EVB_CHECK(st == 0, "load %s (%s)", path, evb_last_error());
    if (!m) return evb_test_summary();
    const evb_config *c = &m->config;
    EVB_CHECK(evb_model_n_params(m) == 260032, "260,032 parameters (got %zu)", evb_model_n_params(m));
    EVB_CHECK(c->dim == 64 && c->hidden_dim == 172 && c->n_layers == 5 && c->n_heads == 8 && c->n_kv_heads == 4 &&
              c->vocab_size == 512 && c->tied, "stories260K header read");
    EVB_CHECK(evb_model_n_units(m) == 35, "35 compressible units");
    int V = c->vocab_size;

    /* Reference logits at position 0 and greedy tokens (llama2.c run.c). */
    float *ref = logits_of(m, greedy_ref, NREF);
    double d0 = evb_test_max_abs_diff(ref, logits0_ref, 8);
    greedy(m, greedy_ref, 5, NREF, greedy_own);
    if (!standin[0] || evb_test_have(MODEL, "stories260K's logits and greedy tokens against llama2.c's run.c")) {
        EVB_CHECK(d0 < 1e-4, "position-0 logits 0..7 match run.c within 1e-4 (max diff %.3g)", d0);
        EVB_CHECK(memcmp(greedy_own, greedy_ref, sizeof greedy_own) == 0, "60 greedy tokens reproduce run.c exactly");
    }

    /* The naive per-position reference. */
    float *naive = malloc(sizeof(float) * NREF * V);
    evb_forward_naive(m, greedy_ref, NREF, naive);
    double dn = evb_test_max_abs_diff(ref, naive, (size_t)NREF * V);
    EVB_CHECK(dn < 1e-4, "batched forward matches the naive forward (max diff %.3g)", dn);

    /* A batch of 3 sequences (one needing several attention chunks) equals the sequences run alone. */
    enum { B = 3, T = 150 };
    int32_t *tok = malloc(sizeof(int32_t) * B * T);
    unsigned seed = 3;
    for (int i = 0; i < B * T; i++) tok[i] = rand_r(&seed) % V;
    evb_state *s;
    evb_state_alloc(m, B, T, &s);
    evb_forward(m, s, tok, B, T);
    double db = 0;
    for (int b = 0; b < B; b++) {
        float *one = logits_of(m, tok + b * T, T);
        double d = evb_test_max_abs_diff(s->logits + (size_t)b * T * V, one, (size_t)T * V);
        if (d > db) db = d;
        free(one);
    }
    /* Not bit-equal: OpenBLAS picks its sgemm kernel and blocking by the number of rows (a Zen 3 gives
     * 1.2e-5 on logits of magnitude ~10), so a batch sums in another order than one sequence. */
    EVB_CHECK(db < 5e-5, "a batch of 3 x 150 equals each sequence alone (max diff %.3g)", db);
    float *lg_naive = malloc(sizeof(float) * T * V);
    evb_forward_naive(m, tok + T, T, lg_naive);
    double dn2 = evb_test_max_abs_diff(s->logits + (size_t)T * V, lg_naive, (size_t)T * V);
    EVB_CHECK(dn2 < 1e-4, "150 positions (3 attention chunks) match the naive forward (max diff %.3g)", dn2);
    free(lg_naive);

    /* Thread-count independence: identical bits on 1 and 2 threads. */
#ifdef _OPENMP
    float *l2 = malloc(sizeof(float) * B * T * V);
    memcpy(l2, s->logits, sizeof(float) * B * T * V);
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    evb_forward(m, s, tok, B, T);
    EVB_CHECK(memcmp(l2, s->logits, sizeof(float) * B * T * V) == 0, "1 thread and %d threads give identical logits", saved);
    omp_set_num_threads(saved);
    free(l2);
#endif

    /* Hooks: running from block 2 with saved hidden states, and swapping a weight. */
    float *full = malloc(sizeof(float) * B * T * V), *x2 = malloc(sizeof(float) * B * T * c->dim);
    evb_forward(m, s, tok, B, T);
    memcpy(full, s->logits, sizeof(float) * B * T * V);
    evb_forward_embed(m, s, tok, B, T);
    evb_forward_blocks(m, s, 0, 2);
    memcpy(x2, s->x, sizeof(float) * B * T * c->dim);
    memset(s->x, 0, sizeof(float) * B * T * c->dim);
    memcpy(s->x, x2, sizeof(float) * B * T * c->dim);
    evb_forward_blocks(m, s, 2, c->n_layers);
    evb_forward_logits(m, s);
    EVB_CHECK(memcmp(full, s->logits, sizeof(float) * B * T * V) == 0, "embed + blocks [0,2) + blocks [2,5) == the whole forward");
    int rows, cols;
    evb_model_unit_shape(m, 3 * 7 + EVB_LINEAR_UP, &rows, &cols);
    float *zero = calloc((size_t)rows * cols, sizeof(float));
    evb_model_set_weight(m, 3 * 7 + EVB_LINEAR_UP, zero);
    evb_forward(m, s, tok, B, T);
    EVB_CHECK(evb_test_max_abs_diff(full, s->logits, (size_t)B * T * V) > 1e-3, "a zeroed up_proj in block 3 changes the logits");
    evb_model_set_weight(m, 3 * 7 + EVB_LINEAR_UP, NULL);
    evb_forward(m, s, tok, B, T);
    EVB_CHECK(memcmp(full, s->logits, sizeof(float) * B * T * V) == 0, "restoring the dense weight restores the logits");
    free(zero); free(full); free(x2);
    evb_state_free(s);

    /* Hugging Face layout: rotate-half permutation, F32/F16/BF16, one file and sharded. */
    check_export(m, ref, "F32", 1, 1e-4, 1e-4);
    check_export(m, ref, "F32", 3, 1e-4, 1e-4);
    check_export(m, ref, "BF16", 1, 5e-2, 0.2);
    check_export(m, ref, "BF16", 4, 5e-2, 0.2);
    check_export(m, ref, "F16", 1, 1e-2, 5e-2);

    /* Qwen2-style q/k/v biases and an untied classifier, checked against the naive forward. */
    evb_config qc = *c;
    qc.qkv_bias = 1; qc.tied = 0;
    char *dir = fixture_tmpdir();
    {
        evb_model q = *m;
        evb_layer *layers = malloc(sizeof(evb_layer) * c->n_layers);
        memcpy(layers, m->layers, sizeof(evb_layer) * c->n_layers);
        size_t nb = (size_t)(c->n_heads + 2 * c->n_kv_heads) * c->head_dim;
        float *bias = malloc(sizeof(float) * nb * c->n_layers), *cls = malloc(sizeof(float) * V * c->dim);
        for (size_t i = 0; i < nb * c->n_layers; i++) bias[i] = (float)rand_r(&seed) / RAND_MAX - 0.5f;
        for (size_t i = 0; i < (size_t)V * c->dim; i++) cls[i] = m->tok_emb[i] * (1.0f + 0.1f * ((float)rand_r(&seed) / RAND_MAX - 0.5f));
        for (int l = 0; l < c->n_layers; l++) {
            layers[l].bq = bias + l * nb;
            layers[l].bk = layers[l].bq + c->n_heads * c->head_dim;
            layers[l].bv = layers[l].bk + c->n_kv_heads * c->head_dim;
        }
        q.config = qc; q.layers = layers; q.cls = cls;
        EVB_CHECK(fixture_write_hf(&q, dir, "F32", 1, 1, "qwen2") == 0, "write a Qwen2-style export");
        free(bias); free(cls); free(layers);
    }
    evb_model *qm = NULL;
    st = evb_model_load(dir, &qm);
    EVB_CHECK(st == 0 && qm && qm->config.qkv_bias && !qm->config.tied, "load Qwen2 export with biases, untied (%s)", evb_last_error());
    if (qm) {
        float *a = logits_of(qm, greedy_ref, NREF), *b = malloc(sizeof(float) * NREF * V);
        evb_forward_naive(qm, greedy_ref, NREF, b);
        double dq = evb_test_max_abs_diff(a, b, (size_t)NREF * V), dd = evb_test_max_abs_diff(a, ref, (size_t)NREF * V);
        EVB_CHECK(dq < 1e-4, "Qwen2 biases + untied: batched equals naive (max diff %.3g)", dq);
        EVB_CHECK(dd > 1e-2, "the biases change the logits (max diff to the plain model %.3g)", dd);
        free(a); free(b);
        evb_model_free(qm);
    }
    fixture_rmdir(dir);
    free(dir);

    /* KL and log-softmax against their naive references: two different sequences' log-probabilities. */
    {
        float *p = malloc(sizeof(float) * NREF * V), *q = malloc(sizeof(float) * NREF * V);
        memcpy(p, ref, sizeof(float) * NREF * V);
        evb_forward_naive(m, tok, NREF, q);
        double nll_fast = 0, nll_slow = 0;
        for (int r = 0; r < NREF; r++) { /* naive log-softmax of row r, in double */
            double mx = -INFINITY, sum = 0;
            for (int v = 0; v < V; v++) if (q[r * V + v] > mx) mx = q[r * V + v];
            for (int v = 0; v < V; v++) sum += exp(q[r * V + v] - mx);
            nll_slow -= q[r * V + greedy_ref[r]] - mx - log(sum);
        }
        evb_log_softmax(p, NREF, V);
        evb_log_softmax(q, NREF, V);
        nll_fast = evb_nll_sum(q, greedy_ref, NREF, V);
        EVB_CHECK(fabs(nll_fast - nll_slow) < 1e-4 * nll_slow, "log-softmax + NLL match the naive double computation (%.6f vs %.6f)", nll_fast, nll_slow);
        double kf = evb_kl_sum(p, q, NREF, V), kn = evb_kl_sum_naive(p, q, NREF, V), k0 = evb_kl_sum(p, p, NREF, V);
        EVB_CHECK(fabs(kf - kn) < 1e-4 * kn && kn > 1.0, "KL sum matches the naive reference (%.6f vs %.6f)", kf, kn);
        EVB_CHECK(fabs(k0) < 1e-9, "KL of a distribution to itself is 0 (%.3g)", k0);
        free(p); free(q);
    }

    free(tok); free(ref); free(naive);
    evb_model_free(m);

    /* The demo model (head dim 32: the sgemm attention path, in chunks of 64 query rows). */
    evb_model *dm = NULL;
    st = evb_model_load(EVB_SOURCE_DIR "/assets/demo", &dm);
    EVB_CHECK(st == 0, "load the demo model (%s)", evb_last_error());
    if (dm) {
        enum { TD = 150 };
        int32_t dt[TD];
        for (int i = 0; i < TD; i++) dt[i] = i == 0 ? 1 : rand_r(&seed) % dm->config.vocab_size;
        int VD = dm->config.vocab_size;
        float *fast = logits_of(dm, dt, TD), *slow = malloc(sizeof(float) * TD * VD);
        evb_forward_naive(dm, dt, TD, slow);
        double dd = evb_test_max_abs_diff(fast, slow, (size_t)TD * VD);
        EVB_CHECK(dm->config.head_dim == 32 && dd < 1e-4, "demo model: batched (sgemm attention) equals naive over %d positions (max diff %.3g)", TD, dd);
        free(fast); free(slow);
        evb_model_free(dm);
    }
    return evb_test_summary();
}
