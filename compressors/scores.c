/* scores.c -- per-block and per-unit statistics that the allocation baselines need (see evb_scores.h):
 * OWL's layerwise outlier distribution, ShortGPT's block influence (per block and per sub-block), and
 * ECoFLaP's zeroth-order importance. Numerics follow shared/reference/baselines.md §1, §2 and §4. */
#include "evobudget/evb_scores.h"
#include "evobudget/evb_status.h"
#include "core/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- OWL ---- */

int evb_score_owl(const evb_model *m, const evb_calib *c, double M, double *lod) {
    if (!(M > 0)) EVB_ERRORF(EVB_EINVAL, "OWL: outlier threshold M = %g must be positive", M);
    const int L = m->config.n_layers;
    int mc;
    size_t max_w = evb_model_max_unit(m, &mc), max_cols = (size_t)mc;
    double *norm = malloc(sizeof(double) * max_cols);
    float *W = malloc(sizeof(float) * max_w);
    if (!norm || !W) { free(norm); free(W); EVB_ERROR("OWL: out of memory", EVB_ENOMEM); }
    for (int l = 0; l < L; l++) {
        /* Two passes over the block's scores A_ij = |W_ij| ||X_j||: their mean, then the count above M mean. */
        double sum = 0, n = 0, above = 0;
        for (int pass = 0; pass < 2; pass++) {
            double thr = M * (n > 0 ? sum / n : 0);
            for (int k = 0; k < EVB_LINEAR_COUNT; k++) {
                int u = l * EVB_LINEAR_COUNT + k, rows, cols;
                evb_model_unit_shape(m, u, &rows, &cols);
                const evb_layer_stats *st = evb_calib_unit(c, u);
                for (int j = 0; j < cols; j++) norm[j] = sqrt(st->gram[(size_t)j * cols + j]);
                evb_model_dense_f32(m, u, W);
                for (int r = 0; r < rows; r++)
                    for (int j = 0; j < cols; j++) {
                        double a = fabs((double)W[(size_t)r * cols + j]) * norm[j];
                        if (pass == 0) { sum += a; n += 1; }
                        else above += a > thr;
                    }
            }
        }
        lod[l] = 100.0 * above / n;
    }
    free(norm);
    free(W);
    return EVB_SUCCESS;
}

int evb_alloc_owl(const double *lod, int n, double target, double lambda, double *sparsity) {
    if (n < 1 || !(target > 0 && target < 1) || !(lambda >= 0))
        EVB_ERRORF(EVB_EINVAL, "OWL: target %g must lie in (0, 1) and lambda %g be >= 0", target, lambda);
    double lo = lod[0], hi = lod[0], mean = 0;
    for (int i = 0; i < n; i++) { if (lod[i] < lo) lo = lod[i]; if (lod[i] > hi) hi = lod[i]; }
    /* r_l = 2 lambda (LOD_l - min) / (max - min); every block the target when all LODs are equal. */
    for (int i = 0; i < n; i++) {
        sparsity[i] = hi > lo ? 2.0 * lambda * (lod[i] - lo) / (hi - lo) : 0.0;
        mean += sparsity[i];
    }
    mean /= n;
    for (int i = 0; i < n; i++) {
        sparsity[i] = target - sparsity[i] + mean;
        if (sparsity[i] <= 0) sparsity[i] = 0.01;
    }
    return EVB_SUCCESS;
}

/* ---- ShortGPT ---- */

/* Sum over the B T rows of 1 - cos(a_t, b_t), NaN similarities counted as 0.5 (ShortGPT). */
static double one_minus_cos(const float *a, const float *b, size_t rows, int D) {
    double s = 0;
    for (size_t t = 0; t < rows; t++) {
        const float *x = a + t * D, *y = b + t * D;
        double xy = 0, xx = 0, yy = 0;
        for (int i = 0; i < D; i++) { xy += (double)x[i] * y[i]; xx += (double)x[i] * x[i]; yy += (double)y[i] * y[i]; }
        double c = xy / sqrt(xx * yy);
        s += 1.0 - (isnan(c) ? 0.5 : c);
    }
    return s;
}

int evb_score_block_influence(evb_model *m, const evb_windows *w, int batch, double *bi_block, double *bi_attn,
                              double *bi_mlp) {
    const int L = m->config.n_layers, D = m->config.dim;
    evb_state *s = NULL;
    int st = evb_state_alloc(m, batch, w->seq_len, &s);
    if (st) return st;
    size_t cap = (size_t)batch * w->seq_len * D;
    float *in = malloc(sizeof(float) * cap * 2), *mid = in ? in + cap : NULL;
    if (!in) { evb_state_free(s); EVB_ERROR("block influence: out of memory", EVB_ENOMEM); }
    for (int l = 0; l < L; l++) bi_block[l] = bi_attn[l] = bi_mlp[l] = 0;
    size_t n_rows = 0;
    for (int i = 0; !st && i < w->n;) {
        int T, B = evb_windows_batch(w, i, batch, &T);
        st = evb_forward_embed(m, s, w->tokens + (size_t)i * w->seq_len, B, T);
        size_t rows = (size_t)B * T, n = rows * D;
        for (int l = 0; !st && l < L; l++) {
            /* The block's input, its state after attention alone (the MLP skipped), then its output. */
            memcpy(in, s->x, sizeof(float) * n);
            int skip = m->layers[l].skip_mlp;
            m->layers[l].skip_mlp = 1;
            st = evb_forward_blocks(m, s, l, l + 1);
            m->layers[l].skip_mlp = skip;
            if (st) break;
            memcpy(mid, s->x, sizeof(float) * n);
            memcpy(s->x, in, sizeof(float) * n);
            st = evb_forward_blocks(m, s, l, l + 1);
            if (st) break;
            bi_block[l] += one_minus_cos(in, s->x, rows, D);
            bi_attn[l] += one_minus_cos(in, mid, rows, D);
            bi_mlp[l] += one_minus_cos(mid, s->x, rows, D);
        }
        n_rows += rows;
        i += B;
    }
    for (int l = 0; l < L && n_rows; l++) { bi_block[l] /= n_rows; bi_attn[l] /= n_rows; bi_mlp[l] /= n_rows; }
    free(in);
    evb_state_free(s);
    return st;
}

/* ---- ECoFLaP ---- */

/* Box-Muller on splitmix64: the perturbation of (seed, unit, batch) is fixed whatever the thread count. */
void evb_ecoflap_noise(uint64_t seed, int unit, int batch_index, size_t n, float *z) {
    uint64_t x = seed ^ ((uint64_t)unit << 32) ^ ((uint64_t)batch_index * 0x9E3779B97F4A7C15ULL);
    for (size_t i = 0; i < n; i += 2) {
        double u1 = ((evb_splitmix64(&x) >> 11) + 1.0) * 0x1.0p-53, u2 = (evb_splitmix64(&x) >> 11) * 0x1.0p-53;
        double r = sqrt(-2.0 * log(u1));
        z[i] = (float)(r * cos(6.283185307179586 * u2));
        if (i + 1 < n) z[i + 1] = (float)(r * sin(6.283185307179586 * u2));
    }
}

/* Mean next-token NLL of the batch in s (tokens tok, B x T, seq_len apart) from hidden states h at block
 * `first`: runs blocks first..L-1 and the classifier. */
static int batch_loss(const evb_model *m, evb_state *s, const float *h, int first, const int32_t *tok, int seq_len,
                      double *loss) {
    size_t n = (size_t)s->B * s->T * m->config.dim;
    memcpy(s->x, h, sizeof(float) * n);
    int st = evb_forward_blocks(m, s, first, m->config.n_layers);
    if (!st) st = evb_forward_logits(m, s);
    if (st) return st;
    int V = m->config.vocab_size, T = s->T;
    evb_log_softmax(s->logits, (size_t)s->B * T, V);
    double nll = 0;
    for (int b = 0; b < s->B; b++)
        nll += evb_nll_sum(s->logits + (size_t)b * T * V, tok + (size_t)b * seq_len + 1, (size_t)T - 1, V);
    *loss = nll / ((double)s->B * (T - 1));
    return EVB_SUCCESS;
}

int evb_score_ecoflap(evb_model *m, const evb_windows *w, int batch, double eps, uint64_t seed, double *score) {
    return evb_score_ecoflap_progress(m, w, batch, eps, seed, score, NULL, NULL);
}

int evb_score_ecoflap_progress(evb_model *m, const evb_windows *w, int batch, double eps, uint64_t seed, double *score,
                               void (*progress)(void *ctx, int done, int total), void *ctx) {
    if (!(eps > 0)) EVB_ERRORF(EVB_EINVAL, "ECoFLaP: perturbation size %g must be positive", eps);
    const int L = m->config.n_layers, U = evb_model_n_units(m);
    const size_t D = (size_t)m->config.dim;
    evb_state *s = NULL;
    int st = evb_state_alloc(m, batch, w->seq_len, &s);
    if (st) return st;
    size_t cap = (size_t)batch * w->seq_len * D, max_w = evb_model_max_unit(m, NULL);
    /* hidden states at every block boundary of the batch (dense), a perturbed weight and its noise */
    float *h = malloc(sizeof(float) * cap * L), *Wp = malloc(sizeof(float) * max_w), *z = malloc(sizeof(float) * max_w);
    float *W = malloc(sizeof(float) * max_w);
    if (!h || !Wp || !z || !W) { free(h); free(Wp); free(z); free(W); evb_state_free(s); EVB_ERROR("ECoFLaP: out of memory", EVB_ENOMEM); }
    for (int u = 0; u < U; u++) score[u] = 0;
    for (int i = 0, bi = 0; !st && i < w->n; bi++) {
        int T, B = evb_windows_batch(w, i, batch, &T);
        const int32_t *tok = w->tokens + (size_t)i * w->seq_len;
        size_t n = (size_t)B * T * D;
        st = evb_forward_embed(m, s, tok, B, T);
        for (int l = 0; !st && l < L; l++) {
            memcpy(h + (size_t)l * cap, s->x, sizeof(float) * n);
            if (l + 1 < L) st = evb_forward_blocks(m, s, l, l + 1);
        }
        for (int u = 0; !st && u < U; u++) {
            int l = u / EVB_LINEAR_COUNT, rows, cols;
            evb_model_unit_shape(m, u, &rows, &cols);
            size_t nw = (size_t)rows * cols;
            evb_model_dense_f32(m, u, W);
            evb_ecoflap_noise(seed, u, bi, nw, z);
            double lp = 0, lm = 0;
            for (int sign = 0; !st && sign < 2; sign++) {
                float e = (float)(sign ? -eps : eps);
                for (size_t j = 0; j < nw; j++) Wp[j] = W[j] + e * z[j];
                st = evb_model_set_weight(m, u, Wp);
                if (!st) st = batch_loss(m, s, h + (size_t)l * cap, l, tok, w->seq_len, sign ? &lm : &lp);
                evb_model_set_weight(m, u, NULL);
            }
            score[u] += fabs((lp - lm) / (2.0 * eps));
            if (progress && !st) progress(ctx, i * U + (u + 1) * B, w->n * U);
        }
        i += B;
    }
    free(h); free(Wp); free(z); free(W);
    evb_state_free(s);
    return st;
}

int evb_alloc_ecoflap(const double *score, const double *size, int n, double target, double max_sparsity,
                      double *sparsity) {
    if (n < 1 || !(target > 0 && target < 1) || !(max_sparsity >= target && max_sparsity <= 1))
        EVB_ERRORF(EVB_EINVAL, "ECoFLaP: target %g must lie in (0, 1) and the cap %g in [target, 1]", target, max_sparsity);
    double total = 0, *keep = malloc(sizeof(double) * n * 2), *sc = keep ? keep + n : NULL;
    if (!keep) EVB_ERROR("ECoFLaP: out of memory", EVB_ENOMEM);
    for (int g = 0; g < n; g++) {
        total += size[g];
        keep[g] = ceil(size[g] * (1 - max_sparsity) - 1e-9);  /* the floor: no group sparser than the cap (the
                                                                   margin keeps 1000 (1 - 0.7) at 300, not 301) */
        sc[g] = score[g] > 0 ? score[g] : 0;
    }
    double K = floor(total * (1 - target)), have = 0;
    for (int g = 0; g < n; g++) have += keep[g];
    /* Water-filling: the remainder in proportion to the scores; full groups take no more. */
    for (int iter = 0; have < K && iter < 10 * n + 10; iter++) {
        double R = K - have, ssum = 0, added = 0;
        for (int g = 0; g < n; g++) ssum += sc[g];
        for (int g = 0; g < n && ssum > 0; g++) {
            double add = ceil(sc[g] / ssum * R);
            if (keep[g] + add > size[g]) add = size[g] - keep[g];
            keep[g] += add; added += add;
        }
        for (int g = 0; g < n; g++) if (keep[g] >= size[g]) sc[g] = 0;
        have += added;
        if (added == 0) /* no scores left: hand the rest to groups with room, in order */
            for (int g = 0; g < n && have < K; g++) {
                double add = size[g] - keep[g] < K - have ? size[g] - keep[g] : K - have;
                keep[g] += add; have += add;
            }
    }
    /* Rounding overshoot: take it back from the largest groups (the reference adds here, a bug). */
    while (have > K) {
        int big = 0;
        for (int g = 1; g < n; g++) if (keep[g] > keep[big]) big = g;
        double cut = have - K < keep[big] ? have - K : keep[big];
        keep[big] -= cut; have -= cut;
    }
    for (int g = 0; g < n; g++) {
        double s = 1 - keep[g] / size[g];
        sparsity[g] = s < 0 ? 0 : s > 1 ? 1 : s;
    }
    free(keep);
    return EVB_SUCCESS;
}
