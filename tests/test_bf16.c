#define _GNU_SOURCE
/* test_bf16.c -- the BF16 compute path: rounding to bfloat16 against its definition; oneDNN's projections
 * against the naive reference; the batched BF16 forward against the naive BF16 forward and against the
 * float32 forward on the demo model; the same answer for 1 and 2 threads; a BF16 checkpoint used in place
 * (memory-mapped, no copy) computing exactly what the same weights converted from float32 compute; one
 * fingerprint for a BF16 checkpoint however it is held; weights set as float32 or as bfloat16 agreeing.
 * On a CPU without AVX512-BF16 or AMX-BF16 the parts that need it are skipped with the reason (ctest shows
 * the test as skipped), and asking for BF16 there is refused with that reason. */
#include "testing.h"

#include "evobudget/evobudget.h"
#include "evobudget/evb_compress.h"
#include "evobudget/evb_db.h"
#include "evobudget/evb_eval.h"
#include "evobudget/evb_text.h"
#include "evobudget/evb_tokenizer.h"
#include "evobudget/evb_model.h"
#include "evobudget/evb_status.h"
#include "core/half.h"
#include "models/bf16.h"

#include <gsl/gsl_statistics_double.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define DEMO EVB_SOURCE_DIR "/assets/demo"

static uint64_t rng = 42;
static double unif(void) { /* splitmix64 -> [0, 1) */
    uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return (double)((z ^ (z >> 31)) >> 11) / 9007199254740992.0;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

static double mean_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m += fabs((double)a[i] - b[i]);
    return m / (double)n;
}

/* Rounding: the result is the nearer of the two bfloat16 neighbours of x, the even one on a tie. */
static void test_rounding(void) {
    int bad = 0;
    for (int i = 0; i < 200000; i++) {
        float x = (float)((unif() - 0.5) * pow(2.0, (int)(unif() * 60) - 30));
        uint32_t b;
        memcpy(&b, &x, 4);
        uint32_t lo = b & 0xffff0000u, hi = lo + 0x10000u;
        float flo, fhi;
        memcpy(&flo, &lo, 4);
        memcpy(&fhi, &hi, 4);
        double dlo = fabs((double)x - flo), dhi = fabs((double)fhi - x);
        uint16_t want = dlo < dhi ? (uint16_t)(lo >> 16) : dhi < dlo ? (uint16_t)(hi >> 16) : ((lo >> 16) & 1 ? (uint16_t)(hi >> 16) : (uint16_t)(lo >> 16));
        bad += evb_bf16_round(x) != want;
    }
    EVB_CHECK(bad == 0, "bfloat16 rounding is round-to-nearest-even on 200000 random values (%d wrong)", bad);
    EVB_CHECK(evb_bf16_round(1.0f) == 0x3f80 && evb_bf16_value(0x3f80) == 1.0f, "1.0 is 0x3f80");
    EVB_CHECK(isnan(evb_bf16_value(evb_bf16_round(NAN))), "a NaN stays a NaN");
    EVB_CHECK(isinf(evb_bf16_value(evb_bf16_round(INFINITY))), "infinity stays infinity");
    EVB_CHECK(isinf(evb_bf16_value(evb_bf16_round(3.4e38f))), "a float above bfloat16's largest finite value rounds to infinity");
}

/* oneDNN's projection against the naive one, on shapes that cut into several row slices and odd sizes. */
static void test_matmul(void) {
    const int shapes[][3] = {{1, 64, 48}, {7, 33, 17}, {513, 96, 40}, {1100, 64, 300}, {64, 688, 256}};
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        int M = shapes[si][0], K = shapes[si][1], N = shapes[si][2];
        float *x = malloc(sizeof(float) * M * K), *bias = malloc(sizeof(float) * N);
        float *a = malloc(sizeof(float) * M * N), *b = malloc(sizeof(float) * M * N);
        uint16_t *W = malloc(sizeof(uint16_t) * N * K), *xb = malloc(sizeof(uint16_t) * M * K);
        for (int i = 0; i < M * K; i++) x[i] = (float)(unif() * 2 - 1);
        for (int i = 0; i < N * K; i++) W[i] = evb_bf16_round((float)((unif() * 2 - 1) / sqrt(K)));
        for (int i = 0; i < N; i++) bias[i] = (float)(unif() - 0.5);
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            int st = evb_matmul_wt_bf16(a, x, xb, W, with_bias ? bias : NULL, M, K, N);
            evb_matmul_wt_bf16_naive(b, x, W, with_bias ? bias : NULL, M, K, N);
            double d = evb_test_max_abs_diff(a, b, (size_t)M * N);
            /* the same bfloat16 products; float32 against double sums of K terms of size <= 1/sqrt(K) */
            EVB_CHECK(st == 0 && d < 2e-5 * sqrt(K), "bf16 projection %d x %d x %d%s: max |oneDNN - naive| = %.2e",
                      M, K, N, with_bias ? " + bias" : "", d);
        }
        free(x); free(bias); free(a); free(b); free(W); free(xb);
    }
}

static int forward_logits(const evb_model *m, const int32_t *tok, int B, int T, float *out) {
    evb_state *s;
    if (evb_state_alloc(m, B, T, &s)) return 1;
    int st = evb_forward(m, s, tok, B, T);
    if (!st) memcpy(out, s->logits, sizeof(float) * (size_t)B * T * m->config.vocab_size);
    evb_state_free(s);
    return st;
}

/* The demo model loaded as BF16: its forward against the naive BF16 forward, against float32, and across
 * thread counts. */
static void test_forward(void) {
    evb_model *m16, *m32;
    int st = evb_model_load_as(DEMO, EVB_COMPUTE_BF16, &m16);
    EVB_CHECK(st == 0 && m16->compute == EVB_COMPUTE_BF16 && !m16->tok_emb && m16->tok_emb16, "the demo model loads as BF16: %s", st ? evb_last_error() : "");
    st = evb_model_load_as(DEMO, EVB_COMPUTE_F32, &m32);
    EVB_CHECK(st == 0 && m32->compute == EVB_COMPUTE_F32, "and as float32");
    if (!m16 || !m32) { evb_model_free(m16); evb_model_free(m32); return; }
    EVB_CHECK(evb_model_n_params(m16) == evb_model_n_params(m32), "the same parameter count either way (%zu)", evb_model_n_params(m16));
    const int B = 2, T = 40, V = m16->config.vocab_size;
    int32_t tok[2 * 40];
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)(unif() * V);
    float *a = malloc(sizeof(float) * B * T * V), *b = malloc(sizeof(float) * B * T * V), *n = malloc(sizeof(float) * T * V);
    EVB_CHECK(forward_logits(m16, tok, B, T, a) == 0, "the BF16 forward runs");
    EVB_CHECK(evb_forward_naive(m16, tok + T, T, n) == 0, "the naive BF16 forward runs");
    double d = evb_test_max_abs_diff(a + (size_t)T * V, n, (size_t)T * V);
    EVB_CHECK(forward_logits(m32, tok, B, T, b) == 0, "the float32 forward runs");
    double mn = mean_abs_diff(a + (size_t)T * V, n, (size_t)T * V), mf = mean_abs_diff(a + (size_t)T * V, b + (size_t)T * V, (size_t)T * V);
    printf("BF16 batched forward against the naive BF16 forward: max |diff| %.2e, mean %.2e; against float32: mean %.2e\n", d, mn, mf);
    /* The same roundings in both, but float32 against double sums in between flip a rounding to bfloat16 now
     * and then, and each flip perturbs everything after it (the float32 forwards agree to 1e-6): so the
     * bound is loose, set against the distance to float32. A wrong weight, shape or offset is far above it;
     * test_matmul holds the projections themselves to float32 accuracy. */
    EVB_CHECK(d < 0.1 && mn < mf / 2, "BF16 batched forward matches the naive BF16 forward (mean |diff| %.2e, float32's %.2e)", mn, mf);
    d = evb_test_max_abs_diff(a, b, (size_t)B * T * V);
    int agree = 0;
    for (int r = 0; r < B * T; r++) {
        int ia = 0, ib = 0;
        for (int v = 1; v < V; v++) {
            if (a[(size_t)r * V + v] > a[(size_t)r * V + ia]) ia = v;
            if (b[(size_t)r * V + v] > b[(size_t)r * V + ib]) ib = v;
        }
        agree += ia == ib;
    }
    printf("BF16 against float32 on the demo model: max |diff| of logits %.3f, top-1 agreement %d/%d\n", d, agree, B * T);
    EVB_CHECK(d < 0.5 && agree >= B * T * 9 / 10, "BF16 logits stay near float32's (max |diff| %.3f, top-1 %d/%d)", d, agree, B * T);
#ifdef _OPENMP
    int nt = omp_get_max_threads();
    omp_set_num_threads(1);
    EVB_CHECK(forward_logits(m16, tok, B, T, b) == 0, "the BF16 forward with 1 thread");
    omp_set_num_threads(2);
    EVB_CHECK(forward_logits(m16, tok, B, T, n = realloc(n, sizeof(float) * B * T * V)) == 0, "with 2 threads");
    omp_set_num_threads(nt);
    EVB_CHECK(memcmp(a, b, sizeof(float) * B * T * V) == 0 && memcmp(b, n, sizeof(float) * B * T * V) == 0,
              "the BF16 forward gives the same bits with 1, 2 and the default thread count");
#endif
    /* a weight set as float32 (rounded by the model) and the same weight set as bfloat16 */
    int u = 2 * EVB_LINEAR_COUNT + EVB_LINEAR_UP, r, c;
    evb_model_unit_shape(m16, u, &r, &c);
    float *w = malloc(sizeof(float) * r * c);
    uint16_t *w16 = malloc(sizeof(uint16_t) * r * c);
    evb_model_dense_f32(m16, u, w);
    for (int i = 0; i < r * c; i++) w[i] = (i % 3) ? w[i] * 0.5f : 0.0f;
    evb_bf16_from_f32(w16, w, (size_t)r * c);
    st = evb_model_set_weight(m16, u, w);
    EVB_CHECK(st == 0 && forward_logits(m16, tok, B, T, b) == 0, "a float32 weight set in a BF16 model");
    evb_model_set_weight16(m16, u, w16);
    EVB_CHECK(forward_logits(m16, tok, B, T, n) == 0 && memcmp(b, n, sizeof(float) * B * T * V) == 0,
              "computes what the same weight set as bfloat16 computes");
    EVB_CHECK(evb_test_max_abs_diff(a, b, (size_t)B * T * V) > 1e-3, "and differs from the dense model");
    evb_model_set_weight(m16, u, NULL);
    EVB_CHECK(forward_logits(m16, tok, B, T, b) == 0 && memcmp(a, b, sizeof(float) * B * T * V) == 0, "NULL restores the dense weight");
    EVB_CHECK(evb_model_set_weight16(m32, u, w16) == EVB_EINVAL, "a bfloat16 weight is refused by a float32 model");
    evb_clear_error();
    free(w); free(w16); free(a); free(b); free(n);
    evb_model_free(m16); evb_model_free(m32);
}

/* A BF16 checkpoint is used where it lies and computes what the float32 checkpoint rounded computes. */
static void test_in_place(void) {
    char dir[] = "/tmp/evb_test_bf16_XXXXXX", dir32[64];
    if (!mkdtemp(dir)) { EVB_CHECK(0, "mkdtemp"); return; }
    snprintf(dir32, sizeof dir32, "%s/f32", dir);
    evb_model *m32 = NULL, *conv = NULL, *mapped = NULL, *back = NULL;
    EVB_CHECK(evb_model_load_as(DEMO, EVB_COMPUTE_F32, &m32) == 0, "load the demo model");
    EVB_CHECK(m32 && evb_model_save(m32, dir, "BF16") == 0, "save it as BF16 into %s", dir);
    EVB_CHECK(evb_model_load_as(dir, EVB_COMPUTE_BF16, &mapped) == 0 && mapped->mapped && !mapped->arena16,
              "the BF16 checkpoint loaded as BF16 is used in place (mapped, nothing converted)");
    EVB_CHECK(evb_model_load_as(dir, EVB_COMPUTE_F32, &back) == 0, "and loads as float32 too");
    /* the same values written as float32, then loaded as BF16: converted, exactly */
    EVB_CHECK(back && evb_model_save(back, dir32, "F32") == 0, "save those values as F32");
    EVB_CHECK(evb_model_load_as(dir32, EVB_COMPUTE_BF16, &conv) == 0 && conv->arena16 && !conv->mapped,
              "a float32 checkpoint loaded as BF16 is converted (arena16, no mapping)");
    if (conv && mapped && back) {
        const int T = 24, V = conv->config.vocab_size;
        int32_t tok[24];
        for (int i = 0; i < T; i++) tok[i] = (int32_t)(unif() * V);
        float *a = malloc(sizeof(float) * T * V), *b = malloc(sizeof(float) * T * V);
        EVB_CHECK(forward_logits(conv, tok, 1, T, a) == 0 && forward_logits(mapped, tok, 1, T, b) == 0 &&
                  memcmp(a, b, sizeof(float) * T * V) == 0, "converted and mapped BF16 models compute the same bits");
        char f1[17], f2[17];
        evb_fingerprint_model(mapped, f1);
        evb_fingerprint_model(back, f2);
        EVB_CHECK(strcmp(f1, f2) == 0, "a BF16 checkpoint has one fingerprint held either way (%s, %s)", f1, f2);
        evb_fingerprint_model(m32, f2);
        EVB_CHECK(strcmp(f1, f2) != 0, "and another than the float32 checkpoint it was rounded from");
        evb_model *d16 = NULL;
        EVB_CHECK(evb_model_load_as(DEMO, EVB_COMPUTE_BF16, &d16) == 0, "the float32 demo checkpoint loads as BF16");
        if (d16) evb_fingerprint_model(d16, f1);
        EVB_CHECK(d16 && strcmp(f1, f2) == 0, "with the fingerprint of its float32 values, as when held in float32 (%s)", f1);
        evb_model_free(d16);
        free(a); free(b);
    }
    evb_model_free(m32); evb_model_free(conv); evb_model_free(mapped); evb_model_free(back);
    EVB_CHECK(nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0, "clean up %s", dir);
}

/* Spearman's rank correlation of a and b (n values, no ties expected). */
static double spearman(const double *a, const double *b, int n) {
    double *w = malloc(sizeof(double) * 2 * n);
    double r = gsl_stats_spearman(a, 1, b, 1, (size_t)n, w);
    free(w);
    return r;
}

/* Fidelity on the demo model (held-out-free: calibration text): the KL from the float32 dense model of random
 * candidates (per-unit magnitude sparsity or RTN bits around a target), scored in float32 and in BF16, rank
 * alike; the BF16 dense model's own KL (its floor) is small against theirs; and a BF16 teacher (float32
 * projections with the model's weights) is the float32 model's output. */
static void test_fidelity(void) {
    evb_model *m32 = NULL, *m16 = NULL;
    evb_tokenizer *tk = NULL;
    char *text = NULL;
    size_t len = 0, n_tok = 0;
    int32_t *tok = NULL;
    evb_windows w = {0};
    int ok = evb_model_load_as(DEMO, EVB_COMPUTE_F32, &m32) == 0 && evb_model_load_as(DEMO, EVB_COMPUTE_BF16, &m16) == 0 &&
             evb_tokenizer_load(DEMO "/tokenizer.json", &tk) == 0 && evb_text_read(DEMO "/calib.txt", &text, &len) == 0 &&
             evb_text_tokenize(tk, text, len, 4000, &tok, &n_tok) == 0 &&
             evb_windows_sample(tok, n_tok, 128, m32->config.bos_id, 8, 7, &w) == 0;
    EVB_CHECK(ok, "the demo model (float32 and BF16), its tokenizer and 8 windows of 128 tokens: %s", ok ? "" : evb_last_error());
    if (!ok) goto done;
    const int U = evb_model_n_units(m32), N = 24;
    evb_state *s = NULL;
    ok = evb_state_alloc(m16, 4, 128, &s) == 0;
    /* per unit: the dense weight and its compressed forms */
    const double sp[3] = {0.4, 0.6, 0.8};
    const int bits[3] = {2, 3, 4};
    float **lv = calloc((size_t)U * 6, sizeof *lv);
    uint8_t *codes = NULL; float *scale = NULL, *zero = NULL; int32_t *gof = NULL;
    for (int u = 0; ok && u < U; u++) {
        int r, c;
        evb_model_unit_shape(m32, u, &r, &c);
        codes = realloc(codes, (size_t)r * c); scale = realloc(scale, sizeof(float) * r * c);
        zero = realloc(zero, sizeof(float) * r * c); gof = realloc(gof, sizeof(int32_t) * c);
        for (int k = 0; k < 6; k++) {
            lv[u * 6 + k] = malloc(sizeof(float) * r * c);
            evb_model_dense_f32(m32, u, lv[u * 6 + k]);
            if (k < 3) ok &= evb_prune_magnitude(lv[u * 6 + k], r, c, (evb_sparsity){sp[k], 0, 0, 0}) == 0;
            else {
                evb_quant_params q = {bits[k - 3], 64, 0, 0, 0.01, 128};
                evb_quant_out out = {codes, scale, zero, gof};
                ok &= evb_quant_rtn(lv[u * 6 + k], r, c, &q, &out) == 0;
            }
        }
    }
    EVB_CHECK(ok, "magnitude levels at 40/60/80%% and RTN levels at 2/3/4 bits of every unit");
    double nll, floor_kl, kl32[24], kl16[24];
    size_t n = 0;
    const float **cand = calloc((size_t)U, sizeof *cand);
    evb_model *dense = NULL; /* the float32 dense model every KL is taken from */
    ok = ok && evb_model_load_as(DEMO, EVB_COMPUTE_F32, &dense) == 0;
    ok = ok && evb_eval_nll_kl_ref(dense, m16, s, &w, 4, &nll, &floor_kl, &n, NULL, NULL) == 0;
    floor_kl /= (double)n;
    for (int kind = 0; ok && kind < 2; kind++) {
        for (int i = 0; ok && i < N; i++) {
            for (int u = 0; u < U; u++) cand[u] = lv[u * 6 + kind * 3 + (int)(unif() * 3)];
            for (int u = 0; u < U && ok; u++) ok = evb_model_set_weight(m32, u, cand[u]) == 0 && evb_model_set_weight(m16, u, cand[u]) == 0;
            ok = ok && evb_eval_nll_kl_ref(dense, m32, s, &w, 4, &nll, &kl32[i], &n, NULL, NULL) == 0;
            ok = ok && evb_eval_nll_kl_ref(dense, m16, s, &w, 4, &nll, &kl16[i], &n, NULL, NULL) == 0;
            kl32[i] /= (double)n; kl16[i] /= (double)n;
        }
        double rho = spearman(kl32, kl16, N), mean32 = gsl_stats_mean(kl32, 1, N);
        printf("fidelity, demo model, %s: Spearman of %d candidates' KL, BF16 against float32: %.4f (mean KL %.4f; "
               "BF16 dense floor %.5f)\n", kind ? "RTN 2/3/4 bits" : "magnitude 40/60/80%", N, rho, mean32, floor_kl);
        EVB_CHECK(ok && rho >= 0.95, "BF16 ranks %s candidates as float32 does (Spearman %.4f >= 0.95)", kind ? "quantized" : "sparse", rho);
        EVB_CHECK(ok && floor_kl < 0.05 * mean32, "the BF16 dense model's KL floor %.5f is small against the candidates' %.4f", floor_kl, mean32);
    }
    for (int u = 0; u < U; u++) { evb_model_set_weight(m32, u, NULL); evb_model_set_weight(m16, u, NULL); }
    /* the teacher's forward: float32 products with the BF16 model's weights */
    if (ok) {
        const int T = 32, V = m16->config.vocab_size;
        float *a = malloc(sizeof(float) * T * V), *b = malloc(sizeof(float) * T * V);
        evb_state *e = NULL;
        ok = evb_state_alloc(m16, 1, T, &e) == 0;
        if (ok) {
            e->exact = 1;
            ok = evb_forward(m16, e, w.tokens, 1, T) == 0;
            memcpy(a, e->logits, sizeof(float) * T * V);
            e->exact = 0;
            ok = ok && evb_forward(m16, e, w.tokens, 1, T) == 0;
            memcpy(b, e->logits, sizeof(float) * T * V);
        }
        evb_state_free(e);
        /* the float32 model with the BF16 model's (rounded) weights */
        for (int u = 0; ok && u < U; u++) {
            int r, c;
            evb_model_unit_shape(m16, u, &r, &c);
            evb_model_dense_f32(m16, u, lv[u * 6]);
            evb_model_set_weight(m32, u, lv[u * 6]);
        }
        float *rt = m32->tok_emb, *rr = malloc(sizeof(float) * (size_t)V * m32->config.dim);
        evb_bf16_to_f32_n(rr, m16->tok_emb16, (size_t)V * m32->config.dim);
        m32->tok_emb = m32->cls = rr;
        float *c32 = malloc(sizeof(float) * T * V);
        ok = ok && forward_logits(m32, w.tokens, 1, T, c32) == 0;
        m32->tok_emb = m32->cls = rt;
        double dx = evb_test_max_abs_diff(a, c32, (size_t)T * V), db = evb_test_max_abs_diff(b, c32, (size_t)T * V);
        EVB_CHECK(ok && dx < 1e-3 && db > 10 * dx, "exact projections of a BF16 model compute the float32 forward of its weights "
                  "(max |diff| %.2e; the bfloat16 products' %.2e)", dx, db);
        free(a); free(b); free(c32); free(rr);
    }
    for (int u = 0; u < U * 6; u++) free(lv[u]);
    free(lv); free(cand); free(codes); free(scale); free(zero); free(gof);
    evb_model_free(dense);
    evb_state_free(s);
done:
    evb_windows_free(&w);
    free(tok); free(text);
    evb_tokenizer_free(tk);
    evb_model_free(m32); evb_model_free(m16);
}

int main(void) {
    evb_init();
    test_rounding();
    const char *missing = evb_compute_missing();
    if (missing) {
        evb_model *m = NULL;
        int st = evb_model_load_as(DEMO, EVB_COMPUTE_BF16, &m);
        EVB_CHECK(st == EVB_EINVAL && !m && strstr(evb_last_error(), missing), "BF16 is refused here with the reason: %s", evb_last_error());
        EVB_CHECK(evb_compute_resolve(EVB_COMPUTE_AUTO) == EVB_COMPUTE_F32, "auto means float32 here");
        evb_test_skips++;
        printf("SKIP the BF16 projections and forward: %s\n", missing);
        return evb_test_summary();
    }
    printf("BF16 kernel: %s\n", evb_compute_kernel());
    EVB_CHECK(evb_compute_resolve(EVB_COMPUTE_AUTO) == EVB_COMPUTE_BF16, "auto means BF16 here");
    test_matmul();
    test_forward();
    test_in_place();
    test_fidelity();
    return evb_test_summary();
}
