/* test_structure.c -- sub-blocks run at their smaller shapes after structured removal (models/structure.c):
 * the compacted model's logits equal the dense model's with the removed heads' and channels' weights zeroed
 * and the compensation biases added, through the batched forward and the naive one, in float32 and (where the
 * CPU has it) bfloat16, with Qwen2-style q/k/v biases, with compressor-updated o/down columns, and with every
 * head or channel of a sub-block removed. */
#include "testing.h"
#include "evobudget/evb_model.h"
#include "evobudget/evb_status.h"
#include "models/blas.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define DEMO EVB_SOURCE_DIR "/assets/demo"
enum { B = 2, T = 40, MAXC = 4 };

int evb_forward_naive(const evb_model *m, const int32_t *tokens, int T, float *logits);

/* One structured choice: block, sub-block, kept groups or channels, an updated out weight, a bias. */
typedef struct choice { int layer, mlp, n_kept; int *kept; float *out_w, *bias; } choice;

static float frand(unsigned *seed) { return (float)rand_r(seed) / RAND_MAX - 0.5f; }

/* Keeps each of n groups with probability 1/2 (n_kept may be 0); fills an updated out weight and a bias. */
static void make_choice(const evb_config *c, int layer, int mlp, int keep_all_but, int updated,
                        unsigned *seed,
                        choice *ch) {
    int n = mlp ? c->hidden_dim : c->n_kv_heads, per = mlp ? 1 : c->n_heads / c->n_kv_heads * c->head_dim;
    ch->layer = layer; ch->mlp = mlp; ch->n_kept = 0;
    ch->kept = malloc(sizeof(int) * n);
    for (int i = 0; i < n; i++)
        if (keep_all_but < 0 ? rand_r(seed) % 2 == 0 : i != keep_all_but) ch->kept[ch->n_kept++] = i;
    size_t nw = (size_t)c->dim * ch->n_kept * per;
    ch->out_w = updated ? malloc(sizeof(float) * (nw + 1)) : NULL;
    for (size_t i = 0; updated && i < nw; i++) ch->out_w[i] = 0.05f * frand(seed);
    ch->bias = malloc(sizeof(float) * c->dim);
    for (int i = 0; i < c->dim; i++) ch->bias[i] = 0.2f * frand(seed);
}

/* The zeroed reference: every weight of the sub-block dense but the removed groups' o or down columns zero
 * (the kept ones replaced by out_w when given), and the bias added through a structured layer at full shapes.
 * */
static float *zeroed_unit(evb_model *m, const choice *ch) {
    const evb_config *c = &m->config;
    int unit = ch->layer * EVB_LINEAR_COUNT + (ch->mlp ? EVB_LINEAR_DOWN : EVB_LINEAR_O), rows, cols;
    evb_model_unit_shape(m, unit, &rows, &cols);
    float *w = malloc(sizeof(float) * rows * cols);
    evb_model_dense_f32(m, unit, w);
    int per = ch->mlp ? 1 : c->n_heads / c->n_kv_heads * c->head_dim;
    int *keep = calloc(cols, sizeof(int));
    for (int i = 0; i < ch->n_kept; i++) for (int j = 0; j < per; j++) keep[ch->kept[i] * per + j] = i * per + j + 1;
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < cols; j++) {
            float *x = &w[(size_t)r * cols + j];
            if (!keep[j]) *x = 0.0f;
            else if (ch->out_w) *x = ch->out_w[(size_t)r * ch->n_kept * per + keep[j] - 1];
        }
    free(keep);
    evb_model_set_weight(m, unit, w);
    evb_layer *L = &m->layers[ch->layer];
    if (!L->structured) { L->structured = 1; L->heads = c->n_heads; L->kv_heads = c->n_kv_heads; L->ffn = c->hidden_dim; }
    if (ch->mlp) L->b_down = ch->bias; else L->b_o = ch->bias;
    return w;
}

static void forward_logits(const evb_model *m, const int32_t *tok, float *out) {
    evb_state *s;
    EVB_CHECK(evb_state_alloc(m, B, T, &s) == 0, "forward state");
    EVB_CHECK(evb_forward(m, s, tok, B, T) == 0, "forward (%s)", evb_last_error());
    memcpy(out, s->logits, sizeof(float) * B * T * m->config.vocab_size);
    evb_state_free(s);
}

/* Runs choices ch[0..n) both ways on m and compares; tol bounds the logits' difference. */
static void check_choices(evb_model *m, choice *ch, int n, const int32_t *tok, double tol, const char *what) {
    size_t nl = (size_t)B * T * m->config.vocab_size;
    float *ref = malloc(sizeof(float) * nl), *got = malloc(sizeof(float) * nl),
            *dense = malloc(sizeof(float) * nl);
    float *zw[MAXC];
    forward_logits(m, tok, dense);
    for (int i = 0; i < n; i++) zw[i] = zeroed_unit(m, &ch[i]);
    forward_logits(m, tok, ref);
    for (int i = 0; i < n; i++) {
        evb_model_set_weight(m,
                             ch[i].layer * EVB_LINEAR_COUNT + (ch[i].mlp ? EVB_LINEAR_DOWN : EVB_LINEAR_O),
                NULL);
        evb_block_level_clear(m, ch[i].layer, ch[i].mlp);
        m->layers[ch[i].layer].structured = 0;
        free(zw[i]);
    }
    evb_block_level *bl[MAXC];
    for (int i = 0; i < n; i++) {
        int st = evb_block_level_make(m, ch[i].layer, ch[i].mlp, ch[i].kept, ch[i].n_kept, ch[i].out_w,
                                      ch[i].bias, &bl[i]);
        EVB_CHECK(st == 0, "%s: make level %d (%s)", what, i, evb_last_error());
        if (st) return;
        evb_block_level_apply(m, bl[i]);
    }
    forward_logits(m, tok, got);
    double d = evb_test_max_abs_diff(got, ref, nl), dd = evb_test_max_abs_diff(ref, dense, nl);
    EVB_CHECK(d < tol, "%s: compacted forward equals the zeroed dense one (max diff %.3g, tol %g)", what, d,
              tol);
    EVB_CHECK(dd > 100 * tol, "%s: the removal changes the logits (max diff to dense %.3g)", what, dd);
    if (m->compute == EVB_COMPUTE_F32) {
        for (int b = 0; b < B; b++) {
            evb_forward_naive(m, tok + b * T, T, got + (size_t)b * T * m->config.vocab_size);
        }
        double dn = evb_test_max_abs_diff(got, ref, nl);
        EVB_CHECK(dn < tol, "%s: naive forward of the compacted model equals it too (max diff %.3g)", what,
                  dn);
    }
    for (int i = 0; i < n; i++) { evb_block_level_clear(m, ch[i].layer,
                                                        ch[i].mlp); evb_block_level_free(bl[i]); }
    for (int l = 0; l < m->config.n_layers; l++) m->layers[l].structured = 0;
    forward_logits(m, tok, got);
    EVB_CHECK(evb_test_max_abs_diff(got, dense, nl) == 0.0, "%s: clearing restores the dense model", what);
    free(ref); free(got); free(dense);
}

static void free_choices(choice *ch, int n) {
    for (int i = 0; i < n; i++) { free(ch[i].kept); free(ch[i].out_w); free(ch[i].bias); }
}

static void run_cases(evb_model *m, double tol, const char *path) {
    const evb_config *c = &m->config;
    unsigned seed = 11;
    int32_t tok[B * T];
    for (int i = 0; i < B * T; i++) tok[i] = rand_r(&seed) % c->vocab_size;
    char what[96];
    choice ch[MAXC];
    /* one attention and one MLP, dense kept columns; both sub-blocks of one block with updated columns */
    make_choice(c, 1, 0, -1, 0, &seed, &ch[0]);
    make_choice(c, 3, 1, -1, 0, &seed, &ch[1]);
    make_choice(c, 2, 0, 0, 1, &seed, &ch[2]);
    make_choice(c, 2, 1, -1, 1, &seed, &ch[3]);
    snprintf(what, sizeof what, "%s, four sub-blocks", path);
    check_choices(m, ch, 4, tok, tol, what);
    free_choices(ch, 4);
    /* every group and every channel removed: the sub-blocks add only their biases */
    make_choice(c, 0, 0, -1, 0, &seed, &ch[0]);
    make_choice(c, 4, 1, -1, 0, &seed, &ch[1]);
    ch[0].n_kept = ch[1].n_kept = 0;
    snprintf(what, sizeof what, "%s, nothing kept", path);
    check_choices(m, ch, 2, tok, tol, what);
    free_choices(ch, 2);
}

int main(void) {
    evb_blas_init();
    evb_model *m = NULL;
    EVB_CHECK(evb_model_load(DEMO, &m) == 0, "load the demo model (%s)", evb_last_error());
    if (!m) return evb_test_summary();
    run_cases(m, 1e-4, "float32");

    /* Qwen2-style q/k/v biases: the kept heads' biases go with them. */
    const evb_config *c = &m->config;
    size_t nb = (size_t)(c->n_heads + 2 * c->n_kv_heads) * c->head_dim;
    float *bias = malloc(sizeof(float) * nb * c->n_layers);
    unsigned seed = 5;
    for (size_t i = 0; i < nb * c->n_layers; i++) bias[i] = frand(&seed);
    m->config.qkv_bias = 1;
    for (int l = 0; l < c->n_layers; l++) {
        m->layers[l].bq = bias + l * nb;
        m->layers[l].bk = m->layers[l].bq + c->n_heads * c->head_dim;
        m->layers[l].bv = m->layers[l].bk + c->n_kv_heads * c->head_dim;
    }
    run_cases(m, 1e-4, "float32 with q/k/v biases");
    for (int l = 0; l < c->n_layers; l++) m->layers[l].bq = m->layers[l].bk = m->layers[l].bv = NULL;
    m->config.qkv_bias = 0;
    free(bias);

    /* bad kept lists */
    int bad[2] = {2, 1}, out_of[1] = {c->n_kv_heads};
    evb_block_level *b = NULL;
    EVB_CHECK(evb_block_level_make(m, 0, 0, bad, 2, NULL, NULL, &b) == EVB_EINVAL && !b,
              "a descending list is refused");
    EVB_CHECK(evb_block_level_make(m, 0, 0, out_of, 1, NULL, NULL, &b) == EVB_EINVAL && !b,
              "a group outside is refused");
    EVB_CHECK(evb_block_level_make(m, c->n_layers, 1, bad + 1, 1, NULL, NULL, &b) == EVB_EINVAL && !b,
              "a block outside is refused");
    evb_model_free(m);

    if (evb_compute_missing()) printf("SKIP bfloat16: %s\n", evb_compute_missing());
    else {
        EVB_CHECK(evb_model_load_as(DEMO, EVB_COMPUTE_BF16, &m) == 0, "load the demo model in BF16 (%s)",
                  evb_last_error());
        if (m) run_cases(m, 2e-3, "bfloat16");
        evb_model_free(m);
    }
    return evb_test_summary();
}
