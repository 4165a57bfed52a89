#define _GNU_SOURCE
/* test_gguf_quant.c -- llama.cpp's GGUF block types (compressors/gguf_quant.c):
 *   (a) the type table: block sizes, bytes, bits per weight, names; round trips of every type;
 *   (b) the blocked GPTQ against its unblocked reference, every type, several lazy block sizes: equal to
 *       the last bit (W and packed blocks), since both apply the same updates in the same order;
 *   (c) GPTQ's reconstruction error below llama.cpp's rounding (RTN) of the same type, every type, on
 *       inputs with correlated features;
 *   (d) with a diagonal Gram (no correlation) GPTQ makes no updates: RTN's grid, each weight on its nearest
 *       point, never further than RTN's;
 *   (e) hand-checked blocks: Q8_0 and Q4_0 (its largest magnitude negative), F16 and BF16 roundings;
 *   (f) dead inputs and all-zero blocks; argument errors as statuses;
 *   (g) with EVB_GGML_REF_QUANT naming tests/tools/ggml_ref_quant: evb_gguf_quantize equal byte for byte to
 *       ggml_quantize_chunk, evb_gguf_dequantize equal bit for bit to ggml's to_float, on rows with outliers,
 *       equal values, tiny and huge values, zeros, negative maxima, half-step ties, and on random blocks.
 *       Without it one SKIP line is printed and the rest still decides the exit code. */
#include "testing.h"
#include "evobudget/evb_gguf.h"
#include "evobudget/evb_status.h"
#include "compressors/gguf_naive.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const int block_types[] = {EVB_GGUF_Q4_0, EVB_GGUF_Q4_1, EVB_GGUF_Q5_0, EVB_GGUF_Q5_1, EVB_GGUF_Q8_0,
                                  EVB_GGUF_Q2_K, EVB_GGUF_Q3_K, EVB_GGUF_Q4_K, EVB_GGUF_Q5_K, EVB_GGUF_Q6_K};
enum { N_BLOCK_TYPES = (int)(sizeof block_types / sizeof block_types[0]) };

static uint64_t rng_state = 88172645463325252ull;
static uint64_t urand64(void) {
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return rng_state;
}
static double urand(void) { return (double)(urand64() >> 11) / 9007199254740992.0; }
static double nrand(void) { return sqrt(-2.0 * log(urand() + 1e-300)) * cos(6.283185307179586 * urand()); }

static const char *tname(int type) { return evb_gguf_type_get(type)->name; }

/* G = X^T X for X [n, cols]. */
static double *gram_of(const float *X, int n, int cols) {
    double *G = calloc((size_t)cols * cols, sizeof *G);
    for (int t = 0; t < n; t++) {
        const float *x = X + (size_t)t * cols;
        for (int i = 0; i < cols; i++)
            for (int j = i; j < cols; j++) G[(size_t)i * cols + j] += (double)x[i] * x[j];
    }
    for (int i = 0; i < cols; i++)
        for (int j = 0; j < i; j++) G[(size_t)i * cols + j] = G[(size_t)j * cols + i];
    return G;
}

/* Inputs with correlated features: an AR(1) chain along the features (rho) with feature scales spread
 * over a decade. */
static float *correlated_inputs(int n, int cols, double rho) {
    float *X = malloc((size_t)n * cols * sizeof *X);
    double *scale = malloc((size_t)cols * sizeof *scale);
    for (int j = 0; j < cols; j++) scale[j] = exp(2.3 * (urand() - 0.5));
    for (int t = 0; t < n; t++) {
        double prev = nrand();
        for (int j = 0; j < cols; j++) {
            prev = rho * prev + sqrt(1 - rho * rho) * nrand();
            X[(size_t)t * cols + j] = (float)(scale[j] * prev);
        }
    }
    free(scale);
    return X;
}

static float *gaussian(size_t n, double sd) {
    float *W = malloc(n * sizeof *W);
    for (size_t i = 0; i < n; i++) W[i] = (float)(sd * nrand());
    return W;
}

/* RTN: llama.cpp's rounding and decoding; Wh [rows, cols] out, packed rows to q (may be NULL). */
static int rtn(int type, const float *W, int rows, int cols, float *Wh, void *q) {
    void *buf = q ? q : malloc((size_t)rows * evb_gguf_row_bytes(type, cols));
    int s = evb_gguf_quantize(type, W, rows, cols, buf);
    if (!s) s = evb_gguf_dequantize(type, buf, rows, cols, Wh);
    if (!q) free(buf);
    return s;
}

/* ---- (a) the type table and round trips ---- */

static void test_table(void) {
    static const struct { int type; const char *lower; int block, bytes; double bpw; } want[] = {
        {EVB_GGUF_F32, "f32", 1, 4, 32}, {EVB_GGUF_F16, "f16", 1, 2, 16}, {EVB_GGUF_BF16, "bf16", 1, 2, 16},
        {EVB_GGUF_Q4_0, "q4_0", 32, 18, 4.5}, {EVB_GGUF_Q4_1, "q4_1", 32, 20, 5}, {EVB_GGUF_Q5_0, "q5_0", 32, 22, 5.5},
        {EVB_GGUF_Q5_1, "q5_1", 32, 24, 6}, {EVB_GGUF_Q8_0, "q8_0", 32, 34, 8.5}, {EVB_GGUF_Q2_K, "q2_k", 256, 84, 2.625},
        {EVB_GGUF_Q3_K, "q3_k", 256, 110, 3.4375}, {EVB_GGUF_Q4_K, "q4_k", 256, 144, 4.5},
        {EVB_GGUF_Q5_K, "q5_k", 256, 176, 5.5}, {EVB_GGUF_Q6_K, "q6_k", 256, 210, 6.5625},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const evb_gguf_type_info *t = evb_gguf_type_get(want[i].type);
        const evb_gguf_type_info *f = evb_gguf_type_find(want[i].lower);
        EVB_CHECK(t && t->type == want[i].type && t->block == want[i].block && t->bytes == want[i].bytes && f == t,
                  "%s: %d elements in %d bytes per block, found by the name \"%s\"", t ? t->name : "?",
                  want[i].block, want[i].bytes, want[i].lower);
        EVB_CHECK(evb_gguf_bpw(want[i].type) == want[i].bpw, "%s: %g bits per weight", want[i].lower, want[i].bpw);
        EVB_CHECK(evb_gguf_row_bytes(want[i].type, 512) == (size_t)(512 / want[i].block) * want[i].bytes &&
                  evb_gguf_row_ok(want[i].type, 512), "%s: a row of 512 takes %zu bytes", want[i].lower,
                  evb_gguf_row_bytes(want[i].type, 512));
    }
    EVB_CHECK(evb_gguf_type_find("Q4_K") == evb_gguf_type_get(EVB_GGUF_Q4_K) && !evb_gguf_type_find("q4_k_m") &&
              !evb_gguf_type_find("q4") && !evb_gguf_type_find("") && !evb_gguf_type_find(NULL),
              "names: upper case found, Q4_K_M, q4, empty and NULL not");
    int listed = 0;
    for (int ti = 0; ti < N_BLOCK_TYPES; ti++) listed += strstr(evb_gguf_type_names(), tname(block_types[ti])) != NULL;
    EVB_CHECK(listed == N_BLOCK_TYPES && !strstr(evb_gguf_type_names(), "F16"), "evb_gguf_type_names lists the %d block types: %s",
              N_BLOCK_TYPES, evb_gguf_type_names());
    EVB_CHECK(!evb_gguf_type_get(4) && !evb_gguf_type_get(9) && !evb_gguf_type_get(-1) && evb_gguf_bpw(9) == 0.0,
              "ids 4 (removed Q4_2), 9 (Q8_1), -1 are not in the table");
    EVB_CHECK(!evb_gguf_row_ok(EVB_GGUF_Q4_K, 128) && evb_gguf_row_bytes(EVB_GGUF_Q4_K, 128) == 0 &&
              !evb_gguf_row_ok(EVB_GGUF_Q4_0, 48) && !evb_gguf_row_ok(EVB_GGUF_Q4_0, 0) &&
              evb_gguf_row_ok(EVB_GGUF_F16, 7) && evb_gguf_row_bytes(EVB_GGUF_F16, 7) == 14,
              "rows of partial blocks refused (Q4_K 128, Q4_0 48 and 0), F16 7 = 14 bytes");

    /* round trips: relative RMS error by type on Gaussian weights, falling with the bits */
    const int rows = 8, cols = 512;
    float *W = gaussian((size_t)rows * cols, 1.0), *Wh = malloc((size_t)rows * cols * sizeof *Wh);
    double rel[32] = {0};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int type = want[i].type, s = rtn(type, W, rows, cols, Wh, NULL);
        double num = 0, den = 0;
        for (size_t k = 0; k < (size_t)rows * cols; k++) { num += (Wh[k] - W[k]) * (Wh[k] - W[k]); den += W[k] * W[k]; }
        rel[type] = sqrt(num / den);
        printf("  round trip %-4s: relative RMS error %.3e\n", tname(type), rel[type]);
        EVB_CHECK(s == 0 && rel[type] < 0.5, "%s round trip runs and keeps the weights (%.3e)", tname(type), rel[type]);
    }
    EVB_CHECK(rel[EVB_GGUF_F32] == 0 && rel[EVB_GGUF_F16] < 1e-3 && rel[EVB_GGUF_BF16] < 5e-3, "F32 exact, F16, BF16 close");
    EVB_CHECK(rel[EVB_GGUF_Q2_K] > rel[EVB_GGUF_Q3_K] && rel[EVB_GGUF_Q3_K] > rel[EVB_GGUF_Q4_K] &&
              rel[EVB_GGUF_Q4_K] > rel[EVB_GGUF_Q5_K] && rel[EVB_GGUF_Q5_K] > rel[EVB_GGUF_Q6_K] &&
              rel[EVB_GGUF_Q6_K] > rel[EVB_GGUF_Q8_0] && rel[EVB_GGUF_Q4_0] > rel[EVB_GGUF_Q5_0] &&
              rel[EVB_GGUF_Q4_1] > rel[EVB_GGUF_Q5_1] && rel[EVB_GGUF_Q4_0] > rel[EVB_GGUF_Q4_K],
              "errors fall with the bits: Q2_K > Q3_K > Q4_K > Q5_K > Q6_K > Q8_0, Q4_0 > Q5_0, Q4_1 > Q5_1, Q4_0 > Q4_K");

    /* the grid of gguf_naive.h decodes random blocks as the dequantizer does, and codes go in and out */
    for (int ti = 0; ti < N_BLOCK_TYPES; ti++) {
        const int type = block_types[ti], qk = evb_gguf_type_get(type)->block, nbytes = evb_gguf_type_get(type)->bytes;
        size_t bad = 0, badcodes = 0;
        uint8_t blk[256], codes[256], back[256];
        float s[256], m[256], y[256];
        for (int trial = 0; trial < 50; trial++) {
            float x[256];
            for (int j = 0; j < qk; j++) x[j] = (float)(nrand() * (trial % 3 ? 1.0 : 1e-3) + (trial % 5 == 0 ? 2.0 : 0.0));
            evb_gguf_quantize(type, x, 1, qk, blk);
            int koff, maxq;
            evb_gguf_block_grid(type, blk, NULL, NULL, &koff, &maxq, NULL);
            for (int j = 0; j < qk; j++) codes[j] = (uint8_t)(urand64() % (uint64_t)(maxq + 1));
            evb_gguf_block_set_codes(type, blk, codes);
            evb_gguf_block_grid(type, blk, s, m, &koff, &maxq, back);
            evb_gguf_dequantize(type, blk, 1, qk, y);
            for (int j = 0; j < qk; j++) {
                float v = s[j] * (float)(back[j] + koff) - m[j];
                bad += memcmp(&v, &y[j], sizeof v) != 0;
                badcodes += back[j] != codes[j];
            }
        }
        EVB_CHECK(bad == 0 && badcodes == 0, "%s: random codes written and read back (%zu wrong) decode through the "
                  "grid as the dequantizer does (%zu differ) [%d bytes]", tname(type), badcodes, bad, nbytes);
    }
    free(W); free(Wh);
}

/* ---- (b) blocked GPTQ against the unblocked reference ---- */

static void test_naive(void) {
    const int rows = 8, cols = 512, n = 768;
    float *X = gaussian((size_t)n * cols, 1.0);
    for (size_t i = 0; i < (size_t)n * cols; i += 7) X[i] *= 3.0f;   /* an uneven, random Gram */
    double *G = gram_of(X, n, cols);
    evb_layer_stats st = {cols, (size_t)n, G};
    float *W0 = gaussian((size_t)rows * cols, 0.02);
    const size_t nw = (size_t)rows * cols;
    float *Wn = malloc(nw * sizeof *Wn), *Wf = malloc(nw * sizeof *Wf), *Wd = malloc(nw * sizeof *Wd);
    float *Wb = malloc(nw * sizeof *Wb);
    uint8_t *qn = malloc((size_t)rows * evb_gguf_row_bytes(EVB_GGUF_Q8_0, cols)), *qf = malloc((size_t)rows * evb_gguf_row_bytes(EVB_GGUF_Q8_0, cols));
    static const int bsz[] = {128, 100, 37, 1000};
    for (int ti = 0; ti < N_BLOCK_TYPES; ti++) {
        const int type = block_types[ti];
        const size_t nq = (size_t)rows * evb_gguf_row_bytes(type, cols);
        memcpy(Wn, W0, nw * sizeof *Wn);
        int s = evb_gguf_gptq_naive(type, Wn, rows, cols, &st, 0.01, 128, qn);
        EVB_CHECK(s == 0, "%s: naive GPTQ runs (%s)", tname(type), evb_last_error());
        evb_gguf_dequantize(type, qn, rows, cols, Wd);
        EVB_CHECK(memcmp(Wd, Wn, nw * sizeof *Wd) == 0, "%s: naive GPTQ's W is the dequantization of its blocks", tname(type));
        for (size_t b = 0; b < sizeof bsz / sizeof bsz[0]; b++) {
            memcpy(Wf, W0, nw * sizeof *Wf);
            memset(qf, 0xAB, nq);
            s = evb_gguf_gptq(type, Wf, rows, cols, &st, 0.01, bsz[b], qf);
            EVB_CHECK(s == 0 && memcmp(Wf, Wn, nw * sizeof *Wf) == 0 && memcmp(qf, qn, nq) == 0,
                      "%s, lazy blocks of %d: W and packed blocks equal the naive reference to the last bit (max |dW| %.3g)",
                      tname(type), bsz[b], evb_test_max_abs_diff(Wf, Wn, nw));
        }
        /* without dst the same W */
        memcpy(Wb, W0, nw * sizeof *Wb);
        s = evb_gguf_gptq(type, Wb, rows, cols, &st, 0.01, 128, NULL);
        EVB_CHECK(s == 0 && memcmp(Wb, Wn, nw * sizeof *Wb) == 0, "%s: dst NULL gives the same W", tname(type));
    }
    free(X); free(G); free(W0); free(Wn); free(Wf); free(Wd); free(Wb); free(qn); free(qf);
}

/* ---- (c) GPTQ below RTN on correlated inputs ---- */

static void test_beats_rtn(void) {
    const int rows = 32, cols = 512, n = 2048;
    float *X = correlated_inputs(n, cols, 0.9);
    double *G = gram_of(X, n, cols);
    evb_layer_stats st = {cols, (size_t)n, G};
    const size_t nw = (size_t)rows * cols;
    float *W = gaussian(nw, 0.02), *Wr = malloc(nw * sizeof *Wr), *Wg = malloc(nw * sizeof *Wg);
    for (size_t i = 0; i < nw; i += 97) W[i] *= 8.0f;   /* a few outliers */
    for (int ti = 0; ti < N_BLOCK_TYPES; ti++) {
        const int type = block_types[ti];
        int s1 = rtn(type, W, rows, cols, Wr, NULL);
        memcpy(Wg, W, nw * sizeof *Wg);
        int s2 = evb_gguf_gptq(type, Wg, rows, cols, &st, 0.01, 128, NULL);
        double er = evb_recon_error(W, Wr, rows, cols, &st), eg = evb_recon_error(W, Wg, rows, cols, &st);
        printf("  recon error %-4s: RTN %.4e  GPTQ %.4e  (ratio %.3f)\n", tname(type), er, eg, eg / er);
        EVB_CHECK(s1 == 0 && s2 == 0 && eg < er, "%s: GPTQ's reconstruction error %.3e below RTN's %.3e", tname(type), eg, er);
    }
    free(X); free(G); free(W); free(Wr); free(Wg);
}

/* ---- (d) a diagonal Gram: no updates, nearest points of RTN's grid ---- */

static void test_diagonal(void) {
    const int rows = 6, cols = 512;
    double *G = calloc((size_t)cols * cols, sizeof *G);
    for (int i = 0; i < cols; i++) G[(size_t)i * cols + i] = 0.5 + urand();
    evb_layer_stats st = {cols, 100, G};
    const size_t nw = (size_t)rows * cols;
    float *W = gaussian(nw, 1.0), *Wr = malloc(nw * sizeof *Wr), *Wg = malloc(nw * sizeof *Wg);
    for (int ti = 0; ti < N_BLOCK_TYPES; ti++) {
        const int type = block_types[ti];
        const evb_gguf_type_info *t = evb_gguf_type_get(type);
        const size_t rb = evb_gguf_row_bytes(type, cols);
        uint8_t *qr = malloc((size_t)rows * rb), *qg = malloc((size_t)rows * rb);
        rtn(type, W, rows, cols, Wr, qr);
        memcpy(Wg, W, nw * sizeof *Wg);
        int s = evb_gguf_gptq(type, Wg, rows, cols, &st, 0.01, 128, qg);
        size_t further = 0, grid_differs = 0, not_nearest = 0, moved = 0;
        for (size_t i = 0; i < nw; i++) {
            further += fabsf(Wg[i] - W[i]) > fabsf(Wr[i] - W[i]);
            moved += Wg[i] != Wr[i];
        }
        for (size_t b = 0; b < (size_t)rows * (cols / t->block); b++) {
            float sr[256], mr[256], sg[256], mg[256];
            uint8_t cg[256];
            int koff, maxq;
            evb_gguf_block_grid(type, qr + b * t->bytes, sr, mr, &koff, &maxq, NULL);
            evb_gguf_block_grid(type, qg + b * t->bytes, sg, mg, &koff, &maxq, cg);
            grid_differs += memcmp(sr, sg, t->block * sizeof *sr) != 0 || memcmp(mr, mg, t->block * sizeof *mr) != 0;
            const size_t r = b / (cols / t->block), c0 = (b % (cols / t->block)) * t->block;
            for (int j = 0; j < t->block; j++) {   /* brute force over every code */
                const float w = W[r * cols + c0 + j];
                float best = INFINITY;
                for (int q = 0; q <= maxq; q++) best = fminf(best, fabsf(w - (sg[j] * (float)(q + koff) - mg[j])));
                not_nearest += fabsf(w - Wg[r * cols + c0 + j]) > best;
            }
        }
        EVB_CHECK(s == 0 && grid_differs == 0 && further == 0 && not_nearest == 0,
                  "%s, diagonal Gram: RTN's scales and mins (%zu blocks differ), every weight on its nearest grid point "
                  "(%zu not), none further than RTN's (%zu); %zu of %zu moved off RTN's code", tname(type), grid_differs,
                  not_nearest, further, moved, nw);
        EVB_CHECK(evb_recon_error(W, Wg, rows, cols, &st) <= evb_recon_error(W, Wr, rows, cols, &st),
                  "%s, diagonal Gram: reconstruction error no larger than RTN's", tname(type));
        free(qr); free(qg);
    }
    free(G); free(W); free(Wr); free(Wg);
}

/* ---- (e) hand-checked blocks ---- */

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static void test_hand(void) {
    /* Q8_0: x_j = j - 16. amax 16, d = 16/127 = 0.12598..., fp16 0x3008 = 1032 * 2^-13 = 0.1259765625; codes
     * roundf(x * 127/16): -127, -119, -111, ..., 0 at j = 16, 8 at j = 17 (7.9375 -> 8). */
    float x[32], y[32];
    uint8_t b[34];
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16);
    int s = evb_gguf_quantize(EVB_GGUF_Q8_0, x, 1, 32, b);
    evb_gguf_dequantize(EVB_GGUF_Q8_0, b, 1, 32, y);
    EVB_CHECK(s == 0 && rd16(b) == 0x3008 && (int8_t)b[2] == -127 && (int8_t)b[3] == -119 && (int8_t)b[4] == -111 &&
              (int8_t)b[2 + 16] == 0 && (int8_t)b[2 + 17] == 8 && (int8_t)b[2 + 31] == 119,
              "Q8_0 of j - 16: d 0x%04x, codes %d %d %d .. %d %d .. %d", rd16(b), (int8_t)b[2], (int8_t)b[3],
              (int8_t)b[4], (int8_t)b[18], (int8_t)b[19], (int8_t)b[33]);
    EVB_CHECK(y[0] == -15.9990234375f && y[1] == -14.9912109375f && y[17] == 1.0078125f,
              "Q8_0 decodes -127 d = -15.9990234375, -119 d = -14.9912109375, 8 d = 1.0078125");

    /* Q4_0 with its largest magnitude negative: x0 = -4 gives d = -4 / -8 = 0.5 (fp16 0x3800), codes
     * (int8)(x / 0.5 + 8.5) capped at 15: -4 -> 0 (decodes -4), +4 -> 16 -> 15 (decodes 3.5, the grid's
     * top), 0.25 -> 9 (halves round up: 0.5), -0.25 -> 8 (0), 1.3 -> 11 (1.5), 0 -> 8. Nibbles: element j
     * low, element j + 16 high. */
    memset(x, 0, sizeof x);
    x[0] = -4.0f; x[1] = 4.0f; x[2] = 0.25f; x[3] = -0.25f; x[4] = 1.3f; x[17] = -2.6f;  /* -5.2 + 8.5 = 3.3 -> 3 */
    uint8_t q[18];
    s = evb_gguf_quantize(EVB_GGUF_Q4_0, x, 1, 32, q);
    evb_gguf_dequantize(EVB_GGUF_Q4_0, q, 1, 32, y);
    EVB_CHECK(s == 0 && rd16(q) == 0x3800 && q[2] == 0x80 && q[3] == 0x3F && q[4] == 0x89 && q[5] == 0x88 &&
              q[6] == 0x8B && q[7] == 0x88, "Q4_0 bytes: d 0x%04x, qs %02x %02x %02x %02x %02x %02x", rd16(q), q[2],
              q[3], q[4], q[5], q[6], q[7]);
    EVB_CHECK(y[0] == -4.0f && y[1] == 3.5f && y[2] == 0.5f && y[3] == 0.0f && y[4] == 1.5f && y[17] == -2.5f && y[5] == 0.0f,
              "Q4_0 decodes -4, 3.5 (capped), 0.5, 0, 1.5, -2.5, 0");

    /* Q4_1 of 0, 1, ..., 31 scaled by 0.5: min 0, d = 15.5 / 15 (fp16 0x3c22 = 1.033203125), m 0 */
    for (int j = 0; j < 32; j++) x[j] = 0.5f * (float)j;
    uint8_t q1[20];
    s = evb_gguf_quantize(EVB_GGUF_Q4_1, x, 1, 32, q1);
    EVB_CHECK(s == 0 && rd16(q1) == 0x3c22 && rd16(q1 + 2) == 0 && (q1[4] & 0xF) == 0 && (q1[4 + 15] >> 4) == 15,
              "Q4_1 of 0 .. 15.5: d 0x%04x, m 0x%04x, first code %d, last %d", rd16(q1), rd16(q1 + 2), q1[4] & 0xF, q1[19] >> 4);

    /* F16 and BF16 roundings */
    const float fin[] = {1.0f, 1.0f / 3.0f, 65504.0f, 65520.0f, -0.0f, 5.9604645e-8f, 2.9802322e-8f, 1.00048828125f};
    const uint16_t f16[] = {0x3C00, 0x3555, 0x7BFF, 0x7C00, 0x8000, 0x0001, 0x0000, 0x3C00};
    uint16_t h[8];
    evb_gguf_quantize(EVB_GGUF_F16, fin, 1, 8, h);
    int ok = 1;
    for (int i = 0; i < 8; i++) ok &= h[i] == f16[i];
    EVB_CHECK(ok, "F16: 1, 1/3, 65504, 65520 (ties to inf), -0, 2^-24, 2^-25 (tie to 0), 1 + 2^-11 (tie to even)");
    float nanv;
    uint32_t nanbits = 0x7F800001u;   /* a signalling NaN */
    memcpy(&nanv, &nanbits, sizeof nanv);
    const float bin[] = {1.0f, 1.00390625f, 1.01171875f, -3.0e38f, nanv, 1e-40f};
    uint16_t bh[6];
    evb_gguf_quantize(EVB_GGUF_BF16, bin, 1, 6, bh);
    EVB_CHECK(bh[0] == 0x3F80 && bh[1] == 0x3F80 && bh[2] == 0x3F82 && bh[3] == 0xFF62 && bh[4] == 0x7FC0 && bh[5] == 0x0001,
              "BF16: 1, 1 + 2^-8 (tie to even 1), 1 + 3 * 2^-8 (tie to even up), -3e38, sNaN made quiet (0x%04x), "
              "subnormal 1e-40 (0x%04x)", bh[4], bh[5]);
    float back[6];
    evb_gguf_dequantize(EVB_GGUF_BF16, bh, 1, 6, back);
    EVB_CHECK(back[0] == 1.0f && back[2] == 1.015625f && isnan(back[4]), "BF16 decodes 1, 1.015625, NaN");
}

/* ---- (f) dead inputs, zero blocks, errors ---- */

static void test_dead_and_zero(void) {
    const int rows = 6, cols = 512, n = 600;
    float *X = correlated_inputs(n, cols, 0.7);
    static const int dead[] = {0, 5, 31, 32, 200, 255, 256, 511};
    for (size_t k = 0; k < sizeof dead / sizeof dead[0]; k++)
        for (int t = 0; t < n; t++) X[(size_t)t * cols + dead[k]] = 0.0f;
    double *G = gram_of(X, n, cols);
    evb_layer_stats st = {cols, (size_t)n, G};
    const size_t nw = (size_t)rows * cols;
    float *W = gaussian(nw, 0.05), *Wg = malloc(nw * sizeof *Wg), *Wn = malloc(nw * sizeof *Wn), *Z = calloc((size_t)cols, sizeof *Z);
    for (int c = 0; c < cols; c++) W[c] = 0.0f;            /* row 0: all zero */
    for (int c = 0; c < 256; c++) W[(size_t)cols + c] = 0.0f;   /* row 1: its first 256 columns zero */
    for (int ti = 0; ti < N_BLOCK_TYPES; ti++) {
        const int type = block_types[ti];
        const evb_gguf_type_info *t = evb_gguf_type_get(type);
        const size_t rb = evb_gguf_row_bytes(type, cols);
        uint8_t *qg = malloc((size_t)rows * rb), *qn = malloc((size_t)rows * rb), *qz = malloc(rb);
        memcpy(Wg, W, nw * sizeof *Wg); memcpy(Wn, W, nw * sizeof *Wn);
        int s1 = evb_gguf_gptq(type, Wg, rows, cols, &st, 0.01, 128, qg);
        int s2 = evb_gguf_gptq_naive(type, Wn, rows, cols, &st, 0.01, 128, qn);
        EVB_CHECK(s1 == 0 && s2 == 0 && memcmp(Wg, Wn, nw * sizeof *Wg) == 0 && memcmp(qg, qn, (size_t)rows * rb) == 0,
                  "%s with dead inputs: blocked and naive agree to the last bit", tname(type));
        /* a dead input's weight is dropped (0) before rounding: it lands on the grid point nearest 0 */
        size_t off = 0;
        for (int r = 0; r < rows; r++)
            for (size_t k = 0; k < sizeof dead / sizeof dead[0]; k++) {
                const int c = dead[k], b = c / t->block, j = c % t->block;
                float sg[256], mg[256];
                int koff, maxq;
                evb_gguf_block_grid(type, qg + (size_t)r * rb + (size_t)b * t->bytes, sg, mg, &koff, &maxq, NULL);
                float best = INFINITY;
                for (int q = 0; q <= maxq; q++) best = fminf(best, fabsf(sg[j] * (float)(q + koff) - mg[j]));
                off += fabsf(Wg[(size_t)r * cols + c]) != best;
                if (t->block == 32 && (type == EVB_GGUF_Q4_0 || type == EVB_GGUF_Q5_0 || type == EVB_GGUF_Q8_0))
                    off += Wg[(size_t)r * cols + c] != 0.0f;   /* symmetric grids hold 0 itself */
            }
        EVB_CHECK(off == 0, "%s: dead inputs decode to the grid point nearest 0 (%zu not)", tname(type), off);
        /* the zero row and the zero first block: zeros, packed as llama.cpp packs zeros */
        evb_gguf_quantize(type, Z, 1, cols, qz);
        size_t nz = 0;
        for (int c = 0; c < cols; c++) nz += Wg[c] != 0.0f;
        for (int c = 0; c < 256; c++) nz += Wg[(size_t)cols + c] != 0.0f;
        EVB_CHECK(nz == 0 && memcmp(qg, qz, rb) == 0 && memcmp(qg + rb, qz, (256 / t->block) * (size_t)t->bytes) == 0,
                  "%s: an all-zero row and an all-zero leading block stay zero, their bytes llama.cpp's (%zu nonzero)",
                  tname(type), nz);
        free(qg); free(qn); free(qz);
    }

    /* errors */
    uint8_t buf[4096];
    float w4[64] = {0};
    EVB_CHECK(evb_gguf_quantize(5, w4, 1, 32, buf) == EVB_EINVAL, "unknown type refused: %s", evb_last_error());
    EVB_CHECK(evb_gguf_quantize(EVB_GGUF_Q4_K, w4, 1, 64, buf) == EVB_EINVAL, "Q4_K of 64 columns refused: %s", evb_last_error());
    EVB_CHECK(evb_gguf_quantize(EVB_GGUF_Q4_0, w4, 1, 48, buf) == EVB_EINVAL, "Q4_0 of 48 columns refused: %s", evb_last_error());
    w4[7] = NAN;
    EVB_CHECK(evb_gguf_quantize(EVB_GGUF_Q8_0, w4, 1, 32, buf) == EVB_EINVAL, "NaN weight refused: %s", evb_last_error());
    EVB_CHECK(evb_gguf_quantize(EVB_GGUF_F16, w4, 1, 32, buf) == 0, "F16 stores a NaN as ggml does");
    w4[7] = 0.0f;
    EVB_CHECK(evb_gguf_quantize(EVB_GGUF_Q8_0, NULL, 1, 32, buf) == EVB_EINVAL && evb_gguf_dequantize(EVB_GGUF_Q8_0, buf, 0, 32, w4) == EVB_EINVAL,
              "NULL weight, zero rows refused");
    memcpy(Wg, W, nw * sizeof *Wg);
    EVB_CHECK(evb_gguf_gptq(EVB_GGUF_F16, Wg, rows, cols, &st, 0.01, 128, NULL) == EVB_EINVAL, "GPTQ into F16 refused: %s", evb_last_error());
    EVB_CHECK(evb_gguf_gptq(EVB_GGUF_Q4_K, Wg, rows, 256, &st, 0.01, 128, NULL) == EVB_EINVAL, "statistics of another width refused: %s", evb_last_error());
    EVB_CHECK(evb_gguf_gptq(EVB_GGUF_Q4_K, Wg, rows, cols, &st, 0.01, 0, NULL) == EVB_EINVAL, "block size 0 refused: %s", evb_last_error());
    EVB_CHECK(evb_gguf_gptq(EVB_GGUF_Q4_K, Wg, rows, cols, &st, -1.0, 128, NULL) == EVB_EINVAL, "negative dampening refused: %s", evb_last_error());
    EVB_CHECK(evb_gguf_gptq(EVB_GGUF_Q4_K, Wg, rows, cols, NULL, 0.01, 128, NULL) == EVB_EINVAL, "no statistics refused: %s", evb_last_error());
    Wg[3] = INFINITY;
    EVB_CHECK(evb_gguf_gptq(EVB_GGUF_Q4_K, Wg, rows, cols, &st, 0.01, 128, NULL) == EVB_EINVAL, "infinite weight refused: %s", evb_last_error());
    Wg[3] = 1e9f;   /* Q8_0's d = 1e9 / 127 overflows fp16 */
    EVB_CHECK(evb_gguf_gptq(EVB_GGUF_Q8_0, Wg, rows, cols, &st, 0.01, 128, NULL) == EVB_EINVAL, "fp16 overflow of a scale refused: %s", evb_last_error());
    free(X); free(G); free(W); free(Wg); free(Wn); free(Z);
}

/* ---- (g) against llama.cpp's ggml_quantize_chunk and to_float ---- */

static int run_tool(const char *tool, const char *mode, const char *type, int rows, int cols, const char *in, const char *out) {
    char r[32], c[32], lower[16];
    snprintf(r, sizeof r, "%d", rows);
    snprintf(c, sizeof c, "%d", cols);
    snprintf(lower, sizeof lower, "%s", type);
    for (char *p = lower; *p; p++) *p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        execl(tool, tool, mode, lower, r, c, in, out, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) < 0) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int put_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(p, 1, n, f) == n;
    return (fclose(f) == 0) && ok;
}

static int get_file(const char *path, void *p, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    int ok = fread(p, 1, n, f) == n && fgetc(f) == EOF;
    fclose(f);
    return ok;
}

/* Row r of a test matrix: the cases where a transcription slip would show. */
static const char *fill_row(float *w, int cols, int kind) {
    switch (kind) {
    case 0: for (int c = 0; c < cols; c++) w[c] = (float)nrand(); return "gaussian";
    case 1: for (int c = 0; c < cols; c++) w[c] = (float)(0.02 * nrand() * (urand() < 0.02 ? 40.0 : 1.0)); return "outliers";
    case 2: for (int c = 0; c < cols; c++) w[c] = 0.37f; return "all equal";
    case 3: for (int c = 0; c < cols; c++) w[c] = -1.25f; return "all equal negative";
    case 4: for (int c = 0; c < cols; c++) w[c] = (float)(1e-7 * nrand()); return "tiny";
    case 5: for (int c = 0; c < cols; c++) w[c] = (float)(1e-13 * nrand()); return "tinier";
    case 6: for (int c = 0; c < cols; c++) w[c] = 0.0f; return "zeros";
    case 7: for (int c = 0; c < cols; c++) w[c] = (float)-fabs(nrand()); return "all negative";
    case 8: for (int c = 0; c < cols; c++) w[c] = (float)(1.0 + urand()); return "all positive";
    case 9: for (int c = 0; c < cols; c++) w[c] = (float)(3e3 * nrand()); return "large";
    case 10: for (int c = 0; c < cols; c++) w[c] = (c / 32) % 2 ? (float)nrand() : 0.0f; return "zero blocks";
    case 11: for (int c = 0; c < cols; c++) w[c] = urand() < 0.1 ? (float)nrand() : 0.0f; return "sparse";
    case 12: for (int c = 0; c < cols; c++) w[c] = (float)((int)(urand() * 7) - 3); return "small integers";
    case 13: for (int c = 0; c < cols; c++) w[c] = c % 32 == 0 ? -4.0f : 0.5f * (float)(c % 16 - 8) + 0.25f; return "half steps";
    case 14: for (int c = 0; c < cols; c++) w[c] = (float)(1e7 * nrand()); return "fp16 overflow";
    case 15: for (int c = 0; c < cols; c++) w[c] = (float)(nrand() * pow(10.0, (c / 16) % 8 - 4)); return "sub-block scales over 8 decades";
    default: for (int c = 0; c < cols; c++) w[c] = (float)(urand() - 0.5); return "uniform";
    }
}
enum { N_KINDS = 17 };

static int ggml_compare(const char *tool, const char *dir) {
    char fin[512], fout[512], fdq[512], fq2[512];
    snprintf(fin, sizeof fin, "%s/w.f32", dir);
    snprintf(fout, sizeof fout, "%s/q.bin", dir);
    snprintf(fdq, sizeof fdq, "%s/dq.f32", dir);
    snprintf(fq2, sizeof fq2, "%s/r.bin", dir);
    static const int all_types[] = {EVB_GGUF_F32, EVB_GGUF_F16, EVB_GGUF_BF16, EVB_GGUF_Q4_0, EVB_GGUF_Q4_1,
                                    EVB_GGUF_Q5_0, EVB_GGUF_Q5_1, EVB_GGUF_Q8_0, EVB_GGUF_Q2_K, EVB_GGUF_Q3_K,
                                    EVB_GGUF_Q4_K, EVB_GGUF_Q5_K, EVB_GGUF_Q6_K};
    const int rows = 60 * N_KINDS, cols = 512, nmat = 3;
    const size_t nw = (size_t)rows * cols;
    float *W = malloc(nw * sizeof *W), *Y = malloc(nw * sizeof *Y), *Yg = malloc(nw * sizeof *Yg);
    uint8_t *mine = malloc(nw * 4), *theirs = malloc(nw * 4);
    int failed_runs = 0;
    for (size_t ti = 0; ti < sizeof all_types / sizeof all_types[0]; ti++) {
        const int type = all_types[ti];
        const evb_gguf_type_info *t = evb_gguf_type_get(type);
        const size_t nq = (size_t)rows * evb_gguf_row_bytes(type, cols);
        size_t bad_bytes = 0, bad_rows = 0, bad_deq = 0, bad_rand = 0;
        char first_bad[128] = "";
        for (int mat = 0; mat < nmat; mat++) {
            const char *kind_of[60 * N_KINDS];
            for (int r = 0; r < rows; r++) kind_of[r] = fill_row(W + (size_t)r * cols, cols, (r + 5 * mat) % N_KINDS);
            int ok = put_file(fin, W, nw * sizeof *W) && run_tool(tool, "quant", t->name, rows, cols, fin, fout) == 0 &&
                     get_file(fout, theirs, nq);
            ok = ok && evb_gguf_quantize(type, W, rows, cols, mine) == 0;
            if (!ok) { failed_runs++; continue; }
            const size_t rb = nq / rows;
            for (int r = 0; r < rows; r++) {
                size_t d = 0;
                for (size_t k = 0; k < rb; k++) d += mine[r * rb + k] != theirs[r * rb + k];
                bad_bytes += d;
                bad_rows += d > 0;
                if (d && !first_bad[0]) snprintf(first_bad, sizeof first_bad, " (first: matrix %d row %d, %s)", mat, r, kind_of[r]);
            }
            /* decoding of ggml's own bytes */
            ok = run_tool(tool, "dequant", t->name, rows, cols, fout, fdq) == 0 && get_file(fdq, Yg, nw * sizeof *Yg) &&
                 evb_gguf_dequantize(type, theirs, rows, cols, Y) == 0;
            if (!ok) { failed_runs++; continue; }
            bad_deq += memcmp(Y, Yg, nw * sizeof *Y) != 0;
            /* decoding of random bytes (every code, every scale), fp16 fields kept finite */
            for (size_t k = 0; k < nq; k++) theirs[k] = (uint8_t)urand64();
            if (t->block > 1) {
                const int nd = type == EVB_GGUF_Q2_K ? 2 : 1;
                const int at = type == EVB_GGUF_Q2_K ? 80 : type == EVB_GGUF_Q3_K ? 108 : type == EVB_GGUF_Q6_K ? 208 : 0;
                const int two = type == EVB_GGUF_Q4_1 || type == EVB_GGUF_Q5_1 || type == EVB_GGUF_Q4_K || type == EVB_GGUF_Q5_K;
                for (size_t b = 0; b < nq / t->bytes; b++)
                    for (int f = 0; f < (two ? 2 : nd); f++) theirs[b * t->bytes + at + 2 * f + 1] &= 0xBB;  /* exponent < 31: finite, either sign */
            }
            ok = put_file(fq2, theirs, nq) && run_tool(tool, "dequant", t->name, rows, cols, fq2, fdq) == 0 &&
                 get_file(fdq, Yg, nw * sizeof *Yg) && evb_gguf_dequantize(type, theirs, rows, cols, Y) == 0;
            if (!ok) { failed_runs++; continue; }
            bad_rand += memcmp(Y, Yg, nw * sizeof *Y) != 0;
        }
        EVB_CHECK(bad_bytes == 0, "%s: evb_gguf_quantize equals ggml_quantize_chunk byte for byte on %d matrices of %d x %d "
                  "(%zu bytes in %zu rows differ%s)", t->name, nmat, rows, cols, bad_bytes, bad_rows, first_bad);
        EVB_CHECK(bad_deq == 0 && bad_rand == 0, "%s: evb_gguf_dequantize equals ggml's to_float bit for bit on its "
                  "blocks and on random bytes (%zu, %zu matrices differ)", t->name, bad_deq, bad_rand);
    }
    EVB_CHECK(failed_runs == 0, "the reference tool %s ran every time (%d failures)", tool, failed_runs);
    unlink(fin); unlink(fout); unlink(fdq); unlink(fq2);
    free(W); free(Y); free(Yg); free(mine); free(theirs);
    return 0;
}

static void test_ggml(void) {
    const char *tool = getenv("EVB_GGML_REF_QUANT");
#ifdef EVB_GGML_REF_QUANT
    if (!tool || !*tool) tool = EVB_GGML_REF_QUANT;   /* the path CMake built it at */
#endif
    if (!tool || !*tool) {
        printf("SKIP llama.cpp reference quantizer not built (EVB_GGML_REF_QUANT unset)\n");
        return;
    }
    if (access(tool, X_OK) != 0) {   /* named but missing: a broken set-up, not a skip */
        EVB_CHECK(0, "EVB_GGML_REF_QUANT=%s is an executable", tool);
        return;
    }
    char dir[] = "/tmp/evb_gguf_XXXXXX";
    if (!mkdtemp(dir)) { EVB_CHECK(0, "a temporary directory for the reference tool"); return; }
    printf("  reference: %s\n", tool);
    ggml_compare(tool, dir);
    rmdir(dir);
}

int main(void) {
    test_table();
    test_hand();
    test_naive();
    test_beats_rtn();
    test_diagonal();
    test_dead_and_zero();
    test_ggml();
    return evb_test_summary();
}
