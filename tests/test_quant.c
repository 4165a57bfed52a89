/* test_quant.c -- RTN and GPTQ quantization (compressors/quant.c):
 *   - against a PyTorch transcription of GPTQ's Quantizer and fasterquant (tests/tools/gptq_ref.py, output
 *     in tests/fixtures/gptq_ref.bin): RTN codes and grids identical; GPTQ codes identical but for at most
 *     MAX_FLIPS off-by-one flips per case (float32 Cholesky there, double here), dequantized weights within
 *     DEQ_TOL of the largest scale where the codes agree;
 *   - the blocked GPTQ against its unblocked reference, the vectorised RTN against its per-element one;
 *   - argument and numerical errors come back as statuses;
 *   - on a real layer of stories260K with inputs captured from the forward: GPTQ's reconstruction error is
 *     below RTN's at 2, 3 and 4 bits (group 64), codes lie in [0, 2^bits), and codes/scale/zero/group_of
 *     give back the dequantized weight bit for bit. */
#include "stories.h"
#include "evobudget/evb_compress.h"
#include "compressors/naive.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef EVB_SOURCE_DIR
#define EVB_SOURCE_DIR "."
#endif

enum { MAX_FLIPS = 12 };   /* per case of 48 x 128 codes */
static const double DEQ_TOL = 1e-3;

/* ---- output buffers and checks ---- */

static int n_groups_of(int cols, const evb_quant_params *q) { return evb_quant_n_groups(cols, q); }

typedef struct qbuf {
    uint8_t *codes; float *scale, *zero; int32_t *group_of;
    evb_quant_out out;
} qbuf;

static void qbuf_alloc(qbuf *b, int rows, int cols, int ng) {
    b->codes = calloc((size_t)rows * cols, 1);
    b->scale = calloc((size_t)rows * ng, sizeof(float));
    b->zero = calloc((size_t)rows * ng, sizeof(float));
    b->group_of = calloc((size_t)cols, sizeof(int32_t));
    b->out = (evb_quant_out){b->codes, b->scale, b->zero, b->group_of};
}

static void qbuf_free(qbuf *b) { free(b->codes); free(b->scale); free(b->zero); free(b->group_of); }

/* Number of (row, col) where scale * (code - zero) differs in any bit from Wh. */
static size_t dequant_mismatches(const float *Wh, const qbuf *b, int rows, int cols, int ng) {
    size_t bad = 0;
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            int g = b->group_of[c];
            float v = b->scale[(size_t)r * ng + g] * ((float)b->codes[(size_t)r * cols + c] - b->zero[(size_t)r * ng + g]);
            bad += memcmp(&v, &Wh[(size_t)r * cols + c], sizeof v) != 0;
        }
    return bad;
}

static uint64_t rng_state = 88172645463325252ull;
static double urand(void) {
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}
static double nrand(void) { return sqrt(-2.0 * log(urand() + 1e-300)) * cos(6.283185307179586 * urand()); }

/* ---- the PyTorch fixture ---- */

typedef struct fx_case {
    int bits, gs, sym, act, blocksize, ng;
    float damp;
    uint8_t *gcodes, *rcodes;
    float *gscale, *gzero, *rscale, *rzero;
    int32_t *gidx;
} fx_case;

static int read_all(FILE *f, void *p, size_t n) { return fread(p, 1, n, f) == n; }

static void test_fixture(void) {
    const char *path = EVB_SOURCE_DIR "/tests/fixtures/gptq_ref.bin";
    FILE *f = fopen(path, "rb");
    EVB_CHECK(f != NULL, "open %s", path);
    if (!f) return;
    char magic[8];
    int32_t hdr[4];
    int ok = read_all(f, magic, 8) && memcmp(magic, "EVBGPTQ1", 8) == 0 && read_all(f, hdr, sizeof hdr);
    const int rows = ok ? hdr[0] : 0, cols = ok ? hdr[1] : 0, ncase = ok ? hdr[2] : 0;
    ok = ok && rows > 0 && rows <= 4096 && cols > 0 && cols <= 4096 && ncase > 0 && ncase <= 16;
    EVB_CHECK(ok, "fixture header: %d x %d, %d cases", rows, cols, ncase);
    if (!ok) { fclose(f); return; }
    const size_t nw = (size_t)rows * cols;
    float *W = malloc(nw * sizeof *W), *Ht = malloc(sizeof(float) * (size_t)cols);
    double *H = malloc(sizeof(double) * (size_t)cols * cols);
    ok = read_all(f, W, nw * sizeof *W);
    for (int i = 0; ok && i < cols; i++) {
        ok = read_all(f, Ht, sizeof(float) * (size_t)(i + 1));
        for (int j = 0; ok && j <= i; j++) H[(size_t)i * cols + j] = H[(size_t)j * cols + i] = Ht[j];
    }
    evb_layer_stats st = {cols, 512, H};
    float *Wg = malloc(nw * sizeof *Wg), *Wn = malloc(nw * sizeof *Wn), *Wr = malloc(nw * sizeof *Wr);
    for (int k = 0; ok && k < ncase; k++) {
        fx_case c;
        int32_t h6[6];
        ok = read_all(f, h6, sizeof h6) && read_all(f, &c.damp, sizeof c.damp);
        c.bits = h6[0]; c.gs = h6[1]; c.sym = h6[2]; c.act = h6[3]; c.blocksize = h6[4]; c.ng = h6[5];
        evb_quant_params q = {c.bits, c.gs, c.sym, c.act, c.damp, c.blocksize};
        ok = ok && c.ng == n_groups_of(cols, &q);
        EVB_CHECK(ok, "case %d: %d bits, group %d, sym %d, act_order %d, %d groups", k, c.bits, c.gs, c.sym, c.act, c.ng);
        if (!ok) break;
        const size_t ng = (size_t)rows * c.ng;
        c.gcodes = malloc(nw); c.rcodes = malloc(nw);
        c.gscale = malloc(ng * 4); c.gzero = malloc(ng * 4); c.rscale = malloc(ng * 4); c.rzero = malloc(ng * 4);
        c.gidx = malloc((size_t)cols * 4);
        ok = read_all(f, c.gcodes, nw) && read_all(f, c.gscale, ng * 4) && read_all(f, c.gzero, ng * 4) &&
             read_all(f, c.gidx, (size_t)cols * 4) && read_all(f, c.rcodes, nw) && read_all(f, c.rscale, ng * 4) &&
             read_all(f, c.rzero, ng * 4);
        EVB_CHECK(ok, "case %d: fixture data read", k);

        /* GPTQ blocked, GPTQ naive */
        qbuf b, bn;
        qbuf_alloc(&b, rows, cols, c.ng); qbuf_alloc(&bn, rows, cols, c.ng);
        memcpy(Wg, W, nw * sizeof *W); memcpy(Wn, W, nw * sizeof *W);
        int s1 = evb_quant_gptq(Wg, rows, cols, &st, &q, &b.out);
        int s2 = evb_quant_gptq_naive(Wn, rows, cols, &st, &q, &bn.out);
        EVB_CHECK(s1 == 0 && s2 == 0, "case %d: gptq and gptq_naive run (%s)", k, evb_last_error());
        size_t flips = 0, worse = 0;
        double maxdiff = 0, maxscale = 0, num = 0, den = 0;
        for (int r = 0; r < rows; r++)
            for (int col = 0; col < cols; col++) {
                size_t i = (size_t)r * cols + col;
                int d = abs((int)b.codes[i] - (int)c.gcodes[i]);
                flips += d == 1; worse += d > 1;
                int g = c.gidx[col];
                float ref = c.gscale[(size_t)r * c.ng + g] * ((float)c.gcodes[i] - c.gzero[(size_t)r * c.ng + g]);
                if (d == 0 && fabs(Wg[i] - ref) > maxdiff) maxdiff = fabs(Wg[i] - ref);
                num += (Wg[i] - ref) * (Wg[i] - ref); den += ref * ref;
            }
        for (size_t i = 0; i < ng; i++) maxscale = fmax(maxscale, c.gscale[i]);
        int gidx_same = memcmp(b.group_of, c.gidx, (size_t)cols * 4) == 0;
        EVB_CHECK(worse == 0 && flips <= MAX_FLIPS,
                  "case %d: GPTQ codes equal PyTorch's but for %zu off-by-one flips (<= %d), %zu larger", k, flips, MAX_FLIPS, worse);
        EVB_CHECK(maxdiff <= DEQ_TOL * maxscale,
                  "case %d: where codes agree, |W_hat - W_hat_torch| <= %.3g <= %.0e * max scale %.3g (relative Frobenius %.2e over all)",
                  k, maxdiff, DEQ_TOL, maxscale, sqrt(num / den));
        EVB_CHECK(gidx_same, "case %d: group_of equals PyTorch's g_idx", k);
        double sdiff = 0;
        for (size_t i = 0; i < ng; i++) sdiff = fmax(sdiff, fabs(b.scale[i] - c.gscale[i]) / c.gscale[i]);
        EVB_CHECK(sdiff < 1e-3, "case %d: GPTQ scales within 1e-3 relative of PyTorch's (max %.2e)", k, sdiff);
        EVB_CHECK(memcmp(b.codes, bn.codes, nw) == 0 && memcmp(Wg, Wn, nw * sizeof *Wg) == 0 &&
                  memcmp(b.scale, bn.scale, ng * 4) == 0 && memcmp(b.zero, bn.zero, ng * 4) == 0,
                  "case %d: blocked GPTQ equals the unblocked reference bit for bit", k);
        EVB_CHECK(dequant_mismatches(Wg, &b, rows, cols, c.ng) == 0, "case %d: GPTQ W_hat = scale * (code - zero) exactly", k);

        /* RTN, vectorised and naive */
        qbuf rb, rn;
        qbuf_alloc(&rb, rows, cols, c.ng); qbuf_alloc(&rn, rows, cols, c.ng);
        memcpy(Wr, W, nw * sizeof *W); memcpy(Wn, W, nw * sizeof *W);
        s1 = evb_quant_rtn(Wr, rows, cols, &q, &rb.out);
        s2 = evb_quant_rtn_naive(Wn, rows, cols, &q, &rn.out);
        EVB_CHECK(s1 == 0 && s2 == 0, "case %d: rtn and rtn_naive run", k);
        EVB_CHECK(memcmp(rb.codes, c.rcodes, nw) == 0 && memcmp(rb.scale, c.rscale, ng * 4) == 0 &&
                  memcmp(rb.zero, c.rzero, ng * 4) == 0, "case %d: RTN codes, scales and zeros identical to PyTorch's", k);
        EVB_CHECK(memcmp(rb.codes, rn.codes, nw) == 0 && memcmp(Wr, Wn, nw * sizeof *Wr) == 0 &&
                  memcmp(rb.scale, rn.scale, ng * 4) == 0,
                  "case %d: RTN equals its per-element reference bit for bit", k);
        EVB_CHECK(dequant_mismatches(Wr, &rb, rows, cols, c.ng) == 0, "case %d: RTN W_hat = scale * (code - zero) exactly", k);
        printf("     case %d: %zu GPTQ code flips of %zu, max dequant diff %.3g (max scale %.3g)\n", k, flips, nw, maxdiff, maxscale);
        qbuf_free(&b); qbuf_free(&bn); qbuf_free(&rb); qbuf_free(&rn);
        free(c.gcodes); free(c.rcodes); free(c.gscale); free(c.gzero); free(c.rscale); free(c.rzero); free(c.gidx);
    }
    fclose(f);
    free(W); free(Ht); free(H); free(Wg); free(Wn); free(Wr);
}

/* ---- blocked vs unblocked over block sizes, groups and shapes ---- */

static void test_blocked_vs_naive(void) {
    const int rows = 37, cols = 150, ntok = 400;
    float *W = malloc(sizeof(float) * rows * cols), *A = malloc(sizeof(float) * rows * cols), *Bw = malloc(sizeof(float) * rows * cols);
    double *X = malloc(sizeof(double) * ntok * cols), *H = calloc((size_t)cols * cols, sizeof(double));
    for (int i = 0; i < rows * cols; i++) W[i] = (float)nrand();
    for (int t = 0; t < ntok; t++)
        for (int c = 0; c < cols; c++) X[t * cols + c] = (c == 17 || c == 90) ? 0.0 : nrand() * (1.0 + (c % 7));
    for (int t = 0; t < ntok; t++)
        for (int i = 0; i < cols; i++)
            for (int j = 0; j < cols; j++) H[i * cols + j] += X[t * cols + i] * X[t * cols + j];
    evb_layer_stats st = {cols, (size_t)ntok, H};
    const int configs[][5] = { /* bits, group, sym, act_order, blocksize */
        {2, 0, 0, 0, 128}, {3, 16, 0, 0, 32}, {4, 40, 1, 1, 64}, {8, 64, 0, 1, 7}, {3, 100, 1, 0, 1}, {4, 200, 0, 0, 512},
    };
    for (size_t k = 0; k < sizeof configs / sizeof *configs; k++) {
        evb_quant_params q = {configs[k][0], configs[k][1], configs[k][2], configs[k][3], 0.01, configs[k][4]};
        int ng = evb_quant_n_groups(cols, &q);
        qbuf a, b;
        qbuf_alloc(&a, rows, cols, ng); qbuf_alloc(&b, rows, cols, ng);
        memcpy(A, W, sizeof(float) * rows * cols); memcpy(Bw, W, sizeof(float) * rows * cols);
        int s = evb_quant_gptq(A, rows, cols, &st, &q, &a.out) | evb_quant_gptq_naive(Bw, rows, cols, &st, &q, &b.out);
        double maxd = 0;
        for (int i = 0; i < rows * cols; i++) maxd = fmax(maxd, fabs(A[i] - Bw[i]));
        int same = s == 0 && memcmp(a.codes, b.codes, (size_t)rows * cols) == 0 && maxd <= 1e-6;
        int range = 1;
        for (int i = 0; i < rows * cols; i++) range &= a.codes[i] < (1 << q.bits);
        int dead0 = 1;
        for (int r = 0; r < rows; r++) dead0 &= A[(size_t)r * cols + 17] == 0.0f && A[(size_t)r * cols + 90] == 0.0f;
        EVB_CHECK(same && range && dead0 && dequant_mismatches(A, &a, rows, cols, ng) == 0,
                  "bits %d group %d sym %d act %d block %d: blocked == unblocked (max |diff| %.2g <= 1e-6, codes equal), "
                  "codes < 2^bits, dead inputs give 0", q.bits, q.group_size, q.sym, q.act_order, q.blocksize, maxd);
        qbuf_free(&a); qbuf_free(&b);
    }
    free(W); free(A); free(Bw); free(X); free(H);
}

/* ---- the factor U on odd and even widths, against the explicit chol(inverse) route in the test ---- */

static int chol_lower(double *A, int n) { /* A = L L^T, L in the lower triangle */
    for (int j = 0; j < n; j++) {
        double d = A[j * n + j];
        for (int k = 0; k < j; k++) d -= A[j * n + k] * A[j * n + k];
        if (!(d > 0)) return 1;
        A[j * n + j] = sqrt(d);
        for (int i = j + 1; i < n; i++) {
            double v = A[i * n + j];
            for (int k = 0; k < j; k++) v -= A[i * n + k] * A[j * n + k];
            A[i * n + j] = v / A[j * n + j];
        }
    }
    return 0;
}

/* Per-channel asymmetric GPTQ without blocks, in double, with U = chol(H^-1)^T from Gauss-Jordan. */
static void gptq_explicit(float *W, int rows, int cols, const double *G, int bits, double damp) {
    int n = cols;
    double *H = malloc(sizeof(double) * n * n), *I = calloc((size_t)n * n, sizeof(double)), mean = 0;
    memcpy(H, G, sizeof(double) * n * n);
    for (int i = 0; i < n; i++) mean += H[i * n + i] / n;
    for (int i = 0; i < n; i++) { H[i * n + i] += damp * mean; I[i * n + i] = 1; }
    for (int c = 0; c < n; c++) { /* Gauss-Jordan (H is positive definite: no pivoting) */
        double p = H[c * n + c];
        for (int j = 0; j < n; j++) { H[c * n + j] /= p; I[c * n + j] /= p; }
        for (int r = 0; r < n; r++)
            if (r != c) {
                double f = H[r * n + c];
                for (int j = 0; j < n; j++) { H[r * n + j] -= f * H[c * n + j]; I[r * n + j] -= f * I[c * n + j]; }
            }
    }
    chol_lower(I, n); /* U[i][j] = L[j][i] */
    const int maxq = (1 << bits) - 1;
    for (int r = 0; r < rows; r++) {
        float *w = W + (size_t)r * cols, lo = 0, hi = 0;
        for (int c = 0; c < cols; c++) { lo = fminf(lo, w[c]); hi = fmaxf(hi, w[c]); }
        float scale = (hi - lo) / (float)maxq, zero = rintf(-lo / scale);
        double x[64];
        for (int c = 0; c < cols; c++) x[c] = w[c];
        for (int c = 0; c < cols; c++) {
            float code = fminf(fmaxf(rintf((float)x[c] / scale) + zero, 0.0f), (float)maxq);
            float q = scale * (code - zero);
            double e = (x[c] - q) / I[c * n + c];
            for (int j = c + 1; j < cols; j++) x[j] -= e * I[j * n + c];
            w[c] = q;
        }
    }
    free(H); free(I);
}

static void test_factor(void) {
    for (int cols = 5; cols <= 8; cols++) {
        const int rows = 6, ntok = 40;
        double G[64 * 64] = {0};
        float W[6 * 8], A[6 * 8], B[6 * 8];
        for (int t = 0; t < ntok; t++) {
            double x[8];
            for (int c = 0; c < cols; c++) x[c] = nrand() * (1 + c);
            for (int i = 0; i < cols; i++)
                for (int j = 0; j < cols; j++) G[i * cols + j] += x[i] * x[j];
        }
        for (int i = 0; i < rows * cols; i++) W[i] = (float)nrand();
        memcpy(A, W, sizeof W); memcpy(B, W, sizeof W);
        evb_layer_stats st = {cols, (size_t)ntok, G};
        evb_quant_params q = {3, 0, 0, 0, 0.01, 2};
        int s = evb_quant_gptq(A, rows, cols, &st, &q, NULL);
        gptq_explicit(B, rows, cols, G, 3, 0.01);
        double maxd = 0;
        for (int i = 0; i < rows * cols; i++) maxd = fmax(maxd, fabs(A[i] - B[i]));
        EVB_CHECK(s == 0 && maxd < 1e-5, "%d inputs: GPTQ equals an explicit chol(H^-1) reference (max |diff| %.2g)", cols, maxd);
    }
}

/* ---- errors ---- */

static void test_errors(void) {
    float W[2 * 4] = {1, -2, 3, 0.5f, 0, 0, 0, 0};
    double H[16] = {0};
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) H[i * 4 + j] = 1.0; /* rank 1, no dead input */
    evb_layer_stats st = {4, 1, H};
    evb_quant_params q = {3, 0, 0, 0, 0.0, 128};
    int s = evb_quant_gptq(W, 2, 4, &st, &q, NULL);
    EVB_CHECK(s == EVB_EINVAL && strstr(evb_last_error(), "Cholesky"), "undampened singular Hessian: EVB_EINVAL (%s)", evb_last_error());
    q.damp = 0.01;
    s = evb_quant_gptq(W, 2, 4, &st, &q, NULL);
    EVB_CHECK(s == 0, "the same Hessian dampened works");
    for (int i = 0; i < 8; i++) EVB_CHECK(W[i] == W[i], "finite result %d", i);
    q.bits = 9;
    EVB_CHECK(evb_quant_rtn(W, 2, 4, &q, NULL) == EVB_EINVAL && evb_quant_gptq(W, 2, 4, &st, &q, NULL) == EVB_EINVAL,
              "9 bits refused (%s)", evb_last_error());
    q.bits = 4; q.group_size = -1;
    EVB_CHECK(evb_quant_rtn(W, 2, 4, &q, NULL) == EVB_EINVAL, "negative group refused");
    q.group_size = 0;
    st.cols = 3;
    EVB_CHECK(evb_quant_gptq(W, 2, 4, &st, &q, NULL) == EVB_EINVAL, "statistics of the wrong width refused (%s)", evb_last_error());
    st.cols = 4; q.blocksize = 0;
    EVB_CHECK(evb_quant_gptq(W, 2, 4, &st, &q, NULL) == EVB_EINVAL, "block size 0 refused");
    q.blocksize = 128;
    W[3] = NAN;
    EVB_CHECK(evb_quant_rtn(W, 2, 4, &q, NULL) == EVB_EINVAL, "NaN weight refused (%s)", evb_last_error());
    W[3] = 0; H[5] = INFINITY;
    EVB_CHECK(evb_quant_gptq(W, 2, 4, &st, &q, NULL) == EVB_EINVAL, "non-finite Gram refused (%s)", evb_last_error());
    evb_quant_params g = {4, 64, 0, 0, 0.01, 128};
    EVB_CHECK(evb_quant_n_groups(172, &g) == 3 && evb_quant_n_groups(64, &g) == 1 && evb_quant_n_groups(65, &g) == 2,
              "n_groups: ceil(cols / group)");
    g.group_size = 0;
    EVB_CHECK(evb_quant_n_groups(172, &g) == 1, "n_groups: 1 per channel");
    /* an all-zero row gets the grid [-1, 1] and stays 0 */
    float Z[4] = {0, 0, 0, 0};
    qbuf b;
    qbuf_alloc(&b, 1, 4, 1);
    evb_quant_params z = {3, 0, 0, 0, 0.01, 128};
    evb_quant_rtn(Z, 1, 4, &z, &b.out);
    /* in float32, 1 / (2/7) = 3.4999998: zero 3 (as torch.round gives) */
    EVB_CHECK(Z[0] == 0 && b.scale[0] == 2.0f / 7 && b.zero[0] == 3 && b.codes[0] == 3, "zero row: scale 2/7, zero 3, code 3, value 0");
    qbuf_free(&b);
}

/* ---- a real layer of stories260K ---- */

typedef struct cap {
    int layer;
    evb_linear_kind kind;
    float *X;          /* [cap_rows, cols] */
    size_t n, cap_rows;
    int cols;
    double *G;         /* [cols, cols] */
} cap;

static void on_capture(void *ctx, int layer, evb_linear_kind kind, const float *x, int n_rows, int n_cols) {
    cap *cs = ctx;
    for (int k = 0; k < 2; k++) {
        cap *c = &cs[k];
        if (layer != c->layer || kind != c->kind) continue;
        if (!c->X) {
            c->cols = n_cols;
            c->X = malloc(sizeof(float) * c->cap_rows * n_cols);
            c->G = calloc((size_t)n_cols * n_cols, sizeof(double));
        }
        for (int t = 0; t < n_rows && c->n < c->cap_rows; t++, c->n++) {
            const float *xt = x + (size_t)t * n_cols;
            memcpy(c->X + c->n * n_cols, xt, sizeof(float) * n_cols);
            for (int i = 0; i < n_cols; i++)
                for (int j = 0; j < n_cols; j++) c->G[(size_t)i * n_cols + j] += (double)xt[i] * xt[j];
        }
    }
}

/* ||(W - Wh) X^T||^2 / ||W X^T||^2 straight from the captured X. */
static double recon_error(const float *W, const float *Wh, int rows, int cols, const float *X, size_t n) {
    double num = 0, den = 0;
    for (size_t t = 0; t < n; t++) {
        const float *x = X + t * cols;
        for (int r = 0; r < rows; r++) {
            double a = 0, b = 0;
            for (int c = 0; c < cols; c++) {
                a += (double)W[(size_t)r * cols + c] * x[c];
                b += (double)Wh[(size_t)r * cols + c] * x[c];
            }
            num += (a - b) * (a - b); den += a * a;
        }
    }
    return num / den;
}

static void test_stories260k(void) {
    enum { SEQ = 256, NWIN = 16, BATCH = 8 };
    stories S;
    evb_state *s = NULL;
    evb_windows w = {0};
    int st = stories_load(&S, 0);
    evb_model *m = S.m;
    if (!st) st = evb_windows_sample(S.tok, S.n, SEQ, evb_tokenizer_bos(S.t), NWIN, 7, &w);
    if (!st) st = evb_state_alloc(m, BATCH, SEQ, &s);
    EVB_CHECK(st == 0, "load stories260K, tokenizer, text, %d windows of %d (%s)", NWIN, SEQ, evb_last_error());
    cap cs[2] = {{.layer = 2, .kind = EVB_LINEAR_Q, .cap_rows = NWIN * SEQ},
                 {.layer = 2, .kind = EVB_LINEAR_DOWN, .cap_rows = NWIN * SEQ}};
    if (!st) {
        s->capture = on_capture; s->capture_ctx = cs;
        for (int b = 0; !st && b < NWIN; b += BATCH) st = evb_forward(m, s, w.tokens + (size_t)b * SEQ, BATCH, SEQ);
        EVB_CHECK(st == 0 && cs[0].n == NWIN * SEQ && cs[1].n == NWIN * SEQ, "captured %zu and %zu input rows", cs[0].n, cs[1].n);
    }
    for (int k = 0; !st && k < 2; k++) {
        int unit = cs[k].layer * EVB_LINEAR_COUNT + cs[k].kind, rows, cols;
        evb_model_unit_shape(m, unit, &rows, &cols);
        const float *W0 = m->layers[cs[k].layer].w_dense[cs[k].kind];
        EVB_CHECK(cols == cs[k].cols, "layer 2 %s: %d x %d", evb_linear_name(cs[k].kind), rows, cols);
        evb_layer_stats ls = {cols, cs[k].n, cs[k].G};
        size_t nw = (size_t)rows * cols;
        float *Wg = malloc(nw * sizeof *Wg), *Wr = malloc(nw * sizeof *Wr);
        for (int bits = 2; bits <= 4; bits++) {
            evb_quant_params q = {bits, 64, 0, 0, 0.01, 128};
            int ng = evb_quant_n_groups(cols, &q);
            qbuf gb, rb;
            qbuf_alloc(&gb, rows, cols, ng); qbuf_alloc(&rb, rows, cols, ng);
            memcpy(Wg, W0, nw * sizeof *Wg); memcpy(Wr, W0, nw * sizeof *Wr);
            int s1 = evb_quant_gptq(Wg, rows, cols, &ls, &q, &gb.out), s2 = evb_quant_rtn(Wr, rows, cols, &q, &rb.out);
            double eg = recon_error(W0, Wg, rows, cols, cs[k].X, cs[k].n), er = recon_error(W0, Wr, rows, cols, cs[k].X, cs[k].n);
            q.act_order = 1;
            float *Wa = malloc(nw * sizeof *Wa);
            memcpy(Wa, W0, nw * sizeof *Wa);
            int s3 = evb_quant_gptq(Wa, rows, cols, &ls, &q, NULL);
            double ea = recon_error(W0, Wa, rows, cols, cs[k].X, cs[k].n);
            free(Wa);
            EVB_CHECK(s1 == 0 && s2 == 0 && s3 == 0 && eg < er,
                      "%s %d bits group 64: GPTQ recon error %.5f < RTN %.5f (act_order %.5f)", evb_linear_name(cs[k].kind), bits, eg, er, ea);
            int range = 1;
            for (size_t i = 0; i < nw; i++) range &= gb.codes[i] < (1u << bits) && rb.codes[i] < (1u << bits);
            EVB_CHECK(range, "%s %d bits: codes in [0, %d)", evb_linear_name(cs[k].kind), bits, 1 << bits);
            EVB_CHECK(dequant_mismatches(Wg, &gb, rows, cols, ng) == 0 && dequant_mismatches(Wr, &rb, rows, cols, ng) == 0,
                      "%s %d bits: codes, scale, zero, group_of reproduce W_hat bit for bit", evb_linear_name(cs[k].kind), bits);
            double bytes = (double)nw * bits / 8 + (double)rows * ng * 2 * 4, dense = (double)nw * 4;
            printf("     %s %d x %d, %d bits, %d groups: %.0f bytes vs %.0f float32 (%.3f bits per weight)\n",
                   evb_linear_name(cs[k].kind), rows, cols, bits, ng, bytes, dense, 8 * bytes / (double)nw);
            qbuf_free(&gb); qbuf_free(&rb);
        }
        free(Wg); free(Wr);
    }
    for (int k = 0; k < 2; k++) { free(cs[k].X); free(cs[k].G); }
    evb_state_free(s);
    evb_windows_free(&w);
    stories_free(&S);
}

int main(int argc, char **argv) {
    (void)argc;
    evb_blas_fix_core(argv);
    evb_init();
    test_fixture();
    test_blocked_vs_naive();
    test_factor();
    test_errors();
    test_stories260k();
    return evb_test_summary();
}
