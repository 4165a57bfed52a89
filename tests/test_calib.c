/* test_calib.c -- calibration statistics: the Gram matrices collected through the forward's capture hook
 * equal X^T X computed directly in double from the captured inputs, and so do the column sums (FLAP's means and
 * variances come from them), the shared inputs (q/k/v, gate/up) share their statistics, and every token is
 * counted. */
#include "stories.h"
#include "evobudget/evb_calib.h"

#include <stdlib.h>
#include <string.h>

/* Direct accumulation of one unit's X^T X in double, the reference. */
typedef struct ref_ctx { int layer; evb_linear_kind kind; int cols; double *G, *sum; } ref_ctx;

static void ref_capture(void *ctx, int layer, evb_linear_kind kind, const float *x, int n, int cols) {
    ref_ctx *r = ctx;
    if (layer != r->layer || kind != r->kind) return;
    for (int t = 0; t < n; t++)
        for (int i = 0; i < cols; i++) {
            r->sum[i] += x[(size_t)t * cols + i];
            for (int j = 0; j < cols; j++) r->G[(size_t)i * cols + j] += (double)x[(size_t)t * cols + i] * x[(size_t)t * cols + j];
        }
}

int main(void) {
    evb_init();
    stories S;
    evb_windows w;
    int st = stories_load(&S, 100000);
    evb_model *m = S.m;
    if (!st) st = evb_windows_sample(S.tok, S.n, 96, evb_tokenizer_bos(S.t), 6, 1, &w);
    EVB_CHECK(st == 0, "load stories260K, its tokenizer and 6 calibration windows (%s)", evb_last_error());
    if (st) return evb_test_summary();

    evb_calib *c = NULL;
    st = evb_calib_collect(m, &w, 4, &c);
    EVB_CHECK(st == 0 && c && evb_calib_tokens(c) == 6 * 96, "collect statistics over 6 x 96 tokens");
    EVB_CHECK(evb_calib_unit(c, 7 * 2 + EVB_LINEAR_Q) == evb_calib_unit(c, 7 * 2 + EVB_LINEAR_V) &&
              evb_calib_unit(c, 7 * 2 + EVB_LINEAR_GATE) == evb_calib_unit(c, 7 * 2 + EVB_LINEAR_UP) &&
              evb_calib_unit(c, 7 * 2 + EVB_LINEAR_Q) != evb_calib_unit(c, 7 * 2 + EVB_LINEAR_O),
              "q/k/v and gate/up share statistics; o has its own");

    static const evb_linear_kind kinds[] = {EVB_LINEAR_K, EVB_LINEAR_O, EVB_LINEAR_UP, EVB_LINEAR_DOWN};
    for (int k = 0; k < 4; k++) {
        int unit = 7 * 3 + kinds[k], rows, cols;
        evb_model_unit_shape(m, unit, &rows, &cols);
        ref_ctx r = {3, kinds[k], cols, calloc((size_t)cols * cols, sizeof(double)), calloc((size_t)cols, sizeof(double))};
        evb_state *s;
        evb_state_alloc(m, 1, 96, &s);
        s->capture = ref_capture; s->capture_ctx = &r;
        for (int i = 0; i < w.n; i++) evb_forward(m, s, w.tokens + (size_t)i * 96, 1, 96);
        evb_state_free(s);
        const evb_layer_stats *ls = evb_calib_unit(c, unit);
        double md = 0, mx = 0;
        for (size_t i = 0; i < (size_t)cols * cols; i++) {
            double d = fabs(ls->gram[i] - r.G[i]);
            if (d > md) md = d;
            if (fabs(r.G[i]) > mx) mx = fabs(r.G[i]);
        }
        EVB_CHECK(ls->cols == cols && ls->n_tokens == 6 * 96 && md <= 1e-5 * mx,
                  "block 3 %s: Gram [%d x %d] equals the direct double sum (max diff %.3g of max %.3g)",
                  evb_linear_name(kinds[k]), cols, cols, md, mx);
        double ms = 0, mxs = 0;
        for (int i = 0; ls->sum && i < cols; i++) {
            if (fabs(ls->sum[i] - r.sum[i]) > ms) ms = fabs(ls->sum[i] - r.sum[i]);
            if (fabs(r.sum[i]) > mxs) mxs = fabs(r.sum[i]);
        }
        EVB_CHECK(ls->sum && ms <= 1e-9 * mxs, "block 3 %s: column sums equal the direct double sum (max diff %.3g of %.3g)",
                  evb_linear_name(kinds[k]), ms, mxs);
        free(r.G); free(r.sum);
    }
    evb_calib_free(c);
    evb_windows_free(&w);
    stories_free(&S);
    return evb_test_summary();
}
