/* test_scores.c -- the statistics of the allocation baselines on stories260K: OWL's outlier percentages
 * against a count made here from the captured layer inputs; the block influence against cosines computed
 * here from block-by-block forwards (and 0 for a block whose two sub-blocks are dropped); ECoFLaP's scores
 * (which restart the forward at the perturbed block) against losses of full forwards with the same noise;
 * and the two allocation rules on inputs whose answers are known. */
#include "stories.h"
#include "evobudget/evb_calib.h"
#include "evobudget/evb_eval.h"
#include "evobudget/evb_scores.h"

#include <stdlib.h>
#include <string.h>

/* Sum over tokens of x_j^2 for every unit's input, accumulated in double here. */
typedef struct sq_ctx { double *sq; int L; int cols_max; } sq_ctx;
static void on_input(void *ctx, int layer, evb_linear_kind kind, const float *x, int n, int cols) {
    sq_ctx *c = ctx;
    double *s = c->sq + ((size_t)layer * 7 + kind) * c->cols_max;
    for (int t = 0; t < n; t++)
        for (int j = 0; j < cols; j++) s[j] += (double)x[(size_t)t * cols + j] * x[(size_t)t * cols + j];
}

static void test_owl(evb_model *m, const evb_windows *w, const evb_calib *c) {
    int L = m->config.n_layers, cm = m->config.hidden_dim > m->config.dim ? m->config.hidden_dim : m->config.dim;
    sq_ctx ctx = {calloc((size_t)L * 7 * cm, sizeof(double)), L, cm};
    evb_state *s;
    evb_state_alloc(m, 1, w->seq_len, &s);
    s->capture = on_input; s->capture_ctx = &ctx;
    for (int i = 0; i < w->n; i++) evb_forward(m, s, w->tokens + (size_t)i * w->seq_len, 1, w->len[i]);
    evb_state_free(s);
    double lod[16], M = 5;
    int st = evb_score_owl(m, c, M, lod), ok = 1;
    double worst = 0;
    for (int l = 0; l < L; l++) {
        double sum = 0, n = 0, above = 0;
        for (int pass = 0; pass < 2; pass++)
            for (int k = 0; k < 7; k++) {
                int rows, cols;
                evb_model_unit_shape(m, l * 7 + k, &rows, &cols);
                const double *sq = ctx.sq + ((size_t)l * 7 + k) * cm;
                for (int r = 0; r < rows; r++)
                    for (int j = 0; j < cols; j++) {
                        double a = fabs(m->layers[l].w_dense[k][(size_t)r * cols + j]) * sqrt(sq[j]);
                        if (pass == 0) { sum += a; n++; } else above += a > M * sum / n;
                    }
            }
        double ref = 100 * above / n;
        if (fabs(ref - lod[l]) > worst) worst = fabs(ref - lod[l]);
        ok &= fabs(ref - lod[l]) <= 0.02; /* a score within float rounding of the threshold may flip */
    }
    EVB_CHECK(st == 0 && ok, "OWL outlier %% (M = 5) of %d blocks equals the count from the captured inputs (max diff %.4f points); block 0: %.3f%%",
              L, worst, lod[0]);
    free(ctx.sq);
    double l4[4] = {1, 2, 3, 5}, sp[4];
    st = evb_alloc_owl(l4, 4, 0.7, 0.08, sp);
    EVB_CHECK(st == 0 && fabs(sp[0] - 0.77) < 1e-12 && fabs(sp[1] - 0.73) < 1e-12 && fabs(sp[2] - 0.69) < 1e-12 &&
              fabs(sp[3] - 0.61) < 1e-12, "OWL rule, LOD 1,2,3,5 at 70%%, lambda 0.08: %.2f %.2f %.2f %.2f (mean 0.7, range 2 lambda)",
              sp[0], sp[1], sp[2], sp[3]);
    double flat[3] = {4, 4, 4};
    EVB_CHECK(evb_alloc_owl(flat, 3, 0.5, 0.1, sp) == 0 && sp[0] == 0.5 && sp[2] == 0.5, "equal LODs: every block at the target");
}

static void test_influence(evb_model *m, const evb_windows *w) {
    int L = m->config.n_layers, D = m->config.dim;
    double bi[16], ba[16], bm[16];
    int st = evb_score_block_influence(m, w, 4, bi, ba, bm);
    /* block 2 directly: embed, blocks 0..1 -> h_in, block 2 -> h_out, cosines in double */
    evb_state *s;
    evb_state_alloc(m, 1, w->seq_len, &s);
    double sum = 0;
    size_t rows = 0;
    float *hin = malloc(sizeof(float) * w->seq_len * D);
    for (int i = 0; i < w->n; i++) {
        int T = w->len[i];
        evb_forward_embed(m, s, w->tokens + (size_t)i * w->seq_len, 1, T);
        evb_forward_blocks(m, s, 0, 2);
        memcpy(hin, s->x, sizeof(float) * T * D);
        evb_forward_blocks(m, s, 2, 3);
        for (int t = 0; t < T; t++) {
            double xy = 0, xx = 0, yy = 0;
            for (int d = 0; d < D; d++) {
                double a = hin[(size_t)t * D + d], b = s->x[(size_t)t * D + d];
                xy += a * b; xx += a * a; yy += b * b;
            }
            sum += 1 - xy / sqrt(xx * yy);
            rows++;
        }
    }
    EVB_CHECK(st == 0 && fabs(bi[2] - sum / rows) <= 1e-6 * fabs(sum / rows), "block influence of block 2: %.6f, direct %.6f",
              bi[2], sum / rows);
    int pos = 1;
    for (int l = 0; l < L; l++) pos &= bi[l] > 0 && ba[l] > 0 && bm[l] > 0;
    EVB_CHECK(pos, "every block and sub-block has positive influence (block 0: %.4f, attention %.4f, MLP %.4f)", bi[0], ba[0], bm[0]);
    m->layers[1].skip_attn = m->layers[1].skip_mlp = 1;
    st = evb_score_block_influence(m, w, 4, bi, ba, bm);
    m->layers[1].skip_attn = m->layers[1].skip_mlp = 0;
    EVB_CHECK(st == 0 && bi[1] < 1e-9 && ba[1] < 1e-9 && bm[1] < 1e-9 && bi[2] > 0, "a block with both sub-blocks dropped has influence 0 (%.3g)", bi[1]);
    free(hin);
    evb_state_free(s);
}

static void test_ecoflap(evb_model *m, const evb_windows *w) {
    int U = evb_model_n_units(m);
    double *score = malloc(sizeof(double) * U);
    /* one batch holding every window, so that the reference's full forwards see the same batch */
    int st = evb_score_ecoflap(m, w, w->n, 1e-3, 42, score);
    EVB_CHECK(st == 0, "ECoFLaP zeroth-order scores of %d units (%s)", U, evb_last_error());
    evb_state *s;
    evb_state_alloc(m, w->n, w->seq_len, &s);
    int units[3] = {0, 7 * 2 + 4, U - 1}, ok = 1;
    float *Wp = malloc(sizeof(float) * 512 * 512), *z = malloc(sizeof(float) * 512 * 512);
    for (int i = 0; i < 3; i++) {
        int u = units[i], rows, cols;
        evb_model_unit_shape(m, u, &rows, &cols);
        evb_ecoflap_noise(42, u, 0, (size_t)rows * cols, z);
        double loss[2];
        size_t n;
        for (int sg = 0; sg < 2; sg++) {
            for (int j = 0; j < rows * cols; j++) Wp[j] = m->layers[u / 7].w_dense[u % 7][j] + (float)(sg ? -1e-3 : 1e-3) * z[j];
            evb_model_set_weight(m, u, Wp);
            evb_eval_nll(m, s, w, w->n, &loss[sg], &n, NULL, NULL);
            loss[sg] /= n;
        }
        evb_model_set_weight(m, u, NULL);
        double ref = fabs((loss[0] - loss[1]) / 2e-3);
        ok &= fabs(ref - score[u]) <= 1e-9 + 1e-6 * ref;
        printf("  unit %d: score %.6g, full-forward reference %.6g\n", u, score[u], ref);
    }
    EVB_CHECK(ok, "scores equal |L(W + eps z) - L(W - eps z)| / 2 eps from full forwards (units 0, 18, %d)", U - 1);
    free(Wp); free(z);
    evb_state_free(s);
    free(score);
    /* the rule: equal sizes, total kept exact, the cap held, more score -> less sparsity */
    double sc[4] = {1, 2, 3, 4}, size[4] = {1000, 1000, 1000, 1000}, sp[4];
    st = evb_alloc_ecoflap(sc, size, 4, 0.6, 0.7, sp);
    double kept = 0;
    for (int g = 0; g < 4; g++) kept += (1 - sp[g]) * size[g];
    EVB_CHECK(st == 0 && fabs(kept - 1600) < 1e-6 && sp[0] <= 0.7 + 1e-12 && sp[0] > sp[1] && sp[1] > sp[2] && sp[2] > sp[3],
              "ECoFLaP rule at 60%% (cap 70%%): %.3f %.3f %.3f %.3f, %.0f of 4000 kept", sp[0], sp[1], sp[2], sp[3], kept);
    /* by hand: floors 300 each, 400 more shared 1:2:3:4 -> 340, 380, 420, 460 kept */
    EVB_CHECK(fabs(sp[0] - 0.66) < 1e-12 && fabs(sp[3] - 0.54) < 1e-12, "the shares are the floors plus 40/80/120/160");
    double big[3] = {100, 1, 1}, sz3[3] = {100, 1000, 1000};
    st = evb_alloc_ecoflap(big, sz3, 3, 0.5, 0.6, sp);
    kept = (1 - sp[0]) * 100 + (1 - sp[1]) * 1000 + (1 - sp[2]) * 1000;
    EVB_CHECK(st == 0 && sp[0] == 0 && fabs(kept - 1050) < 1e-6, "a group whose share overflows is kept whole and the rest re-shared (%.3f %.3f %.3f)",
              sp[0], sp[1], sp[2]);
}

int main(void) {
    evb_init();
    stories S;
    evb_windows w;
    int st = stories_load(&S, 100000);
    if (!st) st = evb_windows_sample(S.tok, S.n, 96, evb_tokenizer_bos(S.t), 6, 5, &w);
    evb_calib *c = NULL;
    if (!st) st = evb_calib_collect(S.m, &w, 4, &c);
    EVB_CHECK(st == 0, "stories260K, 6 windows of 96 tokens, statistics (%s)", evb_last_error());
    if (st) return evb_test_summary();
    test_owl(S.m, &w, c);
    test_influence(S.m, &w);
    test_ecoflap(S.m, &w);
    evb_calib_free(c);
    evb_windows_free(&w);
    stories_free(&S);
    return evb_test_summary();
}
