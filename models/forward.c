/* forward.c -- the batched transformer forward pass (Llama family) and its naive reference.
 *
 * evb_forward runs B sequences of T tokens at once: every projection is one sgemm over all B T rows
 * (models/blas.c), attention is computed per (sequence, head) in causal row chunks, and the element-wise
 * work is split over OpenMP threads. All buffers live in evb_state, allocated once: the forward never
 * allocates. evb_forward_naive is the llama2.c way (one position at a time, KV cache, plain loops) and is
 * what tests/test_forward.c compares the fast path against. */
#include "core/mem.h"
#include "evobudget/evb_model.h"
#include "evobudget/evb_status.h"
#include "models/bf16.h"
#include "models/blas.h"
#include "models/exp_fast.h"
#include "models/naive.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Query rows per attention chunk: keys beyond the chunk's last row are never computed (causal). */
#define QCHUNK 64
/* A BF16 model's exact projections expand this many weights to float32 at a time (16 MB). */
#define EXACT_FLOATS ((size_t)1 << 22)

// ---- state ----

/* Attention scratch per thread: a chunk of score rows (sgemm path) or K^T plus one score row (small heads). */
static size_t scratch_floats(const evb_config *c, int max_seq) {
    size_t a = (size_t)QCHUNK * max_seq, b = (size_t)(c->head_dim + 1) * max_seq;
    return a > b ? a : b;
}

int evb_state_alloc(const evb_model *m, int max_batch, int max_seq, evb_state **out) {
    *out = NULL;
    const evb_config *c = &m->config;
    if (max_batch < 1 || max_seq < 1) EVB_ERRORF(EVB_EINVAL, "batch %d x %d positions: both must be >= 1", max_batch, max_seq);
    evb_state *s = calloc(1, sizeof *s);
    if (!s) EVB_ERROR("out of memory allocating the forward state", EVB_ENOMEM);
    size_t BT = (size_t)max_batch * max_seq, D = c->dim, F = c->hidden_dim, V = c->vocab_size;
    size_t HE = (size_t)c->n_heads * c->head_dim, GE = (size_t)c->n_kv_heads * c->head_dim;
    size_t half = c->head_dim / 2;
    int nth = evb_blas_max_threads();
    /* The BF16 path's rounded projection inputs, in floats (two bfloat16 per float). */
    size_t widest = D > HE ? (D > F ? D : F) : (HE > F ? HE : F);
    size_t n16 = m->compute == EVB_COMPUTE_BF16 ? (BT * widest + 1) / 2 : 0;
    size_t nwf = m->compute == EVB_COMPUTE_BF16 ? EXACT_FLOATS : 0;
    size_t sizes[] = {BT * D, BT * D, BT * HE, BT * GE, BT * GE, BT * HE, BT * F, BT * F,
                      (size_t)nth * scratch_floats(c, max_seq), BT * V, (size_t)max_seq * half, (size_t)max_seq * half, n16, nwf};
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) total += (sizes[i] + 15) & ~(size_t)15;
    float *p = evb_alloc_large(total * sizeof(float));
    if (!p) { free(s); EVB_ERRORF(EVB_ENOMEM, "out of memory allocating %.1f MB for a forward of %d x %d tokens", total * 4.0 / 1e6, max_batch, max_seq); }
    s->mem = p;
    float *xb16 = NULL;
    float **dst[] = {&s->x, &s->xb, &s->q, &s->k, &s->v, &s->att, &s->hb, &s->hb2,
                     &s->scores, &s->logits, &s->rope_cos, &s->rope_sin, &xb16, &s->wf};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        *dst[i] = p;
        p += (sizes[i] + 15) & ~(size_t)15;
    }
    s->xb16 = n16 ? (uint16_t *)(void *)xb16 : NULL;
    s->max_batch = max_batch; s->max_seq = max_seq; s->n_threads = nth;
    for (int pos = 0; pos < max_seq; pos++)
        for (size_t i = 0; i < half; i++) {
            double freq = pow((double)c->rope_theta, -2.0 * (double)i / c->head_dim);
            double a = pos * freq;
            s->rope_cos[pos * half + i] = (float)cos(a);
            s->rope_sin[pos * half + i] = (float)sin(a);
        }
    *out = s;
    return EVB_SUCCESS;
}

void evb_state_free(evb_state *s) {
    if (!s) return;
    free(s->mem);
    free(s);
}

// ---- element-wise kernels ----

static void rmsnorm_rows(float *o, const float *x, const float *w, int n, int D, float eps) {
    #pragma omp parallel for schedule(static) if (n >= 64)
    for (int r = 0; r < n; r++) {
        const float *xr = x + (size_t)r * D;
        float *orow = o + (size_t)r * D;
        float ss = 0.0f;
        for (int j = 0; j < D; j++) ss += xr[j] * xr[j];
        ss = 1.0f / sqrtf(ss / D + eps);
        for (int j = 0; j < D; j++) orow[j] = w[j] * (ss * xr[j]);
    }
}

/* Rotates n_heads heads of every row; row r is position r % T. */
static void rope_rows(const evb_config *c, const evb_state *s, float *x, int n, int T, int n_heads) {
    int E = c->head_dim, half = E / 2;
    #pragma omp parallel for schedule(static) if (n >= 64)
    for (int r = 0; r < n; r++) {
        const float *cs = s->rope_cos + (size_t)(r % T) * half, *sn = s->rope_sin + (size_t)(r % T) * half;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (size_t)r * n_heads * E + (size_t)h * E;
            for (int i = 0; i < half; i++) {
                int a = c->rope_halves ? i : 2 * i, b = c->rope_halves ? i + half : 2 * i + 1;
                float v0 = v[a], v1 = v[b];
                v[a] = v0 * cs[i] - v1 * sn[i];
                v[b] = v0 * sn[i] + v1 * cs[i];
            }
        }
    }
}

/* In place softmax of x[0..n). */
static void softmax_row(float *x, int n) {
    exp_sub(x, n, max_lanes(x, n));
    float inv = 1.0f / sum_lanes(x, n);
    for (int i = 0; i < n; i++) x[i] *= inv;
}

/* Heads narrower than this use the hand-written kernel: sgemm with an inner dimension of 8 or 16 spends
 * more time packing than multiplying. */
#define SMALL_HEAD 32

/* Causal attention of one head for heads narrower than SMALL_HEAD. K^T [E, T] makes the score loop a run
 * of axpys over contiguous keys. scratch holds (E + 1) T floats. */
static inline __attribute__((always_inline)) void attend_small(const float *qh, const float *kh, const float *vh,
        float *oh, int T, int E, int ldq, int ldk, float scale, float *scratch) {
    float *kt = scratch, *row = scratch + (size_t)E * T;
    for (int j = 0; j < T; j++)
        for (int e = 0; e < E; e++) kt[(size_t)e * T + j] = kh[(size_t)j * ldk + e];
    for (int i = 0; i < T; i++) {
        const float *q = qh + (size_t)i * ldq;
        int n = i + 1;
        float qs[SMALL_HEAD];
        for (int e = 0; e < E; e++) qs[e] = q[e] * scale;
        /* Vectorised across keys, each lane summing over the head dim in a fixed order. */
        #pragma omp simd
        for (int j = 0; j < n; j++) {
            float acc = 0.0f;
            for (int e = 0; e < E; e++) acc += qs[e] * kt[(size_t)e * T + j];
            row[j] = acc;
        }
        /* Unnormalised softmax weights; the 1/sum is applied once to the output. */
        exp_sub(row, n, max_lanes(row, n));
        float inv = 1.0f / sum_lanes(row, n);
        float o[SMALL_HEAD] = {0};
        for (int j = 0; j < n; j++) {
            const float *v = vh + (size_t)j * ldk;
            float p = row[j];
            #pragma omp simd
            for (int e = 0; e < E; e++) o[e] += p * v[e];
        }
        float *out = oh + (size_t)i * ldq;
        for (int e = 0; e < E; e++) out[e] = o[e] * inv;
    }
}

/* Causal attention of one (sequence b, head h): att[b, :, h] = softmax(q k^T / sqrt(E)) v. */
static void attend(const evb_config *c, evb_state *s, int b, int h, int H, int G, float *scratch) {
    int T = s->T, E = c->head_dim;
    int g = h / (c->n_heads / c->n_kv_heads);
    int ldq = H * E, ldk = G * E;
    const float *qh = s->q + (size_t)b * T * ldq + (size_t)h * E;
    const float *kh = s->k + (size_t)b * T * ldk + (size_t)g * E;
    const float *vh = s->v + (size_t)b * T * ldk + (size_t)g * E;
    float *oh = s->att + (size_t)b * T * ldq + (size_t)h * E;
    float scale = 1.0f / sqrtf((float)E);
    if (E < SMALL_HEAD) {
        /* Constant head sizes let the compiler unroll the per-key loop of the value sum. */
        if (E == 8) attend_small(qh, kh, vh, oh, T, 8, ldq, ldk, scale, scratch);
        else if (E == 16) attend_small(qh, kh, vh, oh, T, 16, ldq, ldk, scale, scratch);
        else attend_small(qh, kh, vh, oh, T, E, ldq, ldk, scale, scratch);
        return;
    }
    for (int i0 = 0; i0 < T; i0 += QCHUNK) {
        int n = T - i0 < QCHUNK ? T - i0 : QCHUNK, kend = i0 + n;
        evb_sgemm_nt(n, kend, E, scale, qh + (size_t)i0 * ldq, ldq, kh, ldk, 0.0f, scratch, kend);
        for (int r = 0; r < n; r++) {
            float *row = scratch + (size_t)r * kend;
            int valid = i0 + r + 1;
            softmax_row(row, valid);
            memset(row + valid, 0, (size_t)(kend - valid) * sizeof(float));
        }
        evb_sgemm_nn(n, E, kend, 1.0f, scratch, kend, vh, ldk, 0.0f, oh + (size_t)i0 * ldq, ldq);
    }
}

/* A BF16 model's projection in float32: the bfloat16 weights expanded a block of rows at a time into s->wf, the
 * input kept in float32; rows of x in fixed slices over the threads, as in evb_matmul_wt. */
static void project_exact(evb_state *s, float *out, const float *x, const uint16_t *W16, const float *bias,
                          int n, int K, int N) {
    enum { ROWS = EVB_SLICE_ROWS };
    int rows = (int)(EXACT_FLOATS / (size_t)K), chunks = (n + ROWS - 1) / ROWS;
    if (rows < 1) rows = 1;
    for (int j0 = 0; j0 < N; j0 += rows) {
        int cn = N - j0 < rows ? N - j0 : rows;
        evb_bf16_to_f32_n(s->wf, W16 + (size_t)j0 * K, (size_t)cn * K);
        #pragma omp parallel for schedule(static) if (chunks > 1)
        for (int c = 0; c < chunks; c++) {
            int r0 = c * ROWS, r1 = r0 + ROWS < n ? r0 + ROWS : n;
            evb_sgemm_nt(r1 - r0, cn, K, 1.0f, x + (size_t)r0 * K, K, s->wf, K, 0.0f, out + (size_t)r0 * N + j0, N);
        }
    }
    evb_add_bias(out, bias, n, N);
}

/* out[n, N] = x[n, K] . W^T (+ bias): float32 through OpenBLAS, or bfloat16 through oneDNN in a BF16 model
 * (float32 with the model's bfloat16 weights when s->exact). */
static int project(const evb_model *m, evb_state *s, float *out, const float *x, const float *W, const uint16_t *W16,
                   const float *bias, int n, int K, int N) {
    if (m->compute == EVB_COMPUTE_BF16 && !s->xb16)
        EVB_ERROR("the forward state was allocated for a float32 model, not this BF16 one", EVB_EINVAL);
    if (m->compute == EVB_COMPUTE_BF16 && s->exact) { project_exact(s, out, x, W16, bias, n, K, N); return EVB_SUCCESS; }
    if (m->compute == EVB_COMPUTE_BF16) return evb_matmul_wt_bf16(out, x, s->xb16, W16, bias, n, K, N);
    evb_matmul_wt(out, x, W, bias, n, K, N);
    return EVB_SUCCESS;
}

/* Token id's embedding row into x [D], from either holding. */
static void embed_row(const evb_model *m, int32_t id, float *x) {
    size_t D = (size_t)m->config.dim;
    if (m->compute == EVB_COMPUTE_BF16) evb_bf16_to_f32_n(x, m->tok_emb16 + (size_t)id * D, D);
    else memcpy(x, m->tok_emb + (size_t)id * D, D * sizeof(float));
}

static void capture(evb_state *s, int l, evb_linear_kind kind, const float *x, int n, int cols) {
    if (s->capture) s->capture(s->capture_ctx, l, kind, x, n, cols);
}

// ---- the forward ----

int evb_forward_embed(const evb_model *m, evb_state *s, const int32_t *tokens, int B, int T) {
    const evb_config *c = &m->config;
    if (B < 1 || T < 1 || B > s->max_batch || T > s->max_seq)
        EVB_ERRORF(EVB_EINVAL, "a batch of %d x %d tokens does not fit the forward state (%d x %d)", B, T, s->max_batch, s->max_seq);
    for (size_t i = 0; i < (size_t)B * T; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            EVB_ERRORF(EVB_ERANGE, "token id %d at position %zu is outside the vocabulary [0, %d)", tokens[i], i, c->vocab_size);
    if (T > c->max_seq_len)
        EVB_ERRORF(EVB_EINVAL, "%d positions exceed the model's context of %d (max_position_embeddings, or Mistral's sliding_window)", T, c->max_seq_len);
    s->B = B; s->T = T;
    for (size_t i = 0; i < (size_t)B * T; i++) embed_row(m, tokens[i], s->x + i * c->dim);
    return EVB_SUCCESS;
}

/* The shapes block L runs with: heads, kv heads, MLP channels (smaller after structured removal). */
static void block_shape(const evb_config *c, const evb_layer *L, int *H, int *G, int *F) {
    *H = L->structured ? L->heads : c->n_heads;
    *G = L->structured ? L->kv_heads : c->n_kv_heads;
    *F = L->structured ? L->ffn : c->hidden_dim;
}

/* out[n, N] = x . W^T + bias, or just the bias broadcast when K is 0 (every input removed). */
static int project_k(const evb_model *m, evb_state *s, float *out, const float *x, const float *W,
                     const uint16_t *W16, const float *bias, int n, int K, int N) {
    if (K > 0) return project(m, s, out, x, W, W16, bias, n, K, N);
    memset(out, 0, sizeof(float) * (size_t)n * N);
    evb_add_bias(out, bias, n, N);
    return EVB_SUCCESS;
}

static void add_rows(float *x, const float *y, size_t nD) {
    #pragma omp parallel for schedule(static) if (nD >= 65536)
    for (size_t i = 0; i < nD; i++) x[i] += y[i];
}

static int attention_block(const evb_model *m, evb_state *s, int l, const evb_layer *L, int n, int H, int G) {
    const evb_config *c = &m->config;
    int D = c->dim, HE = H * c->head_dim, GE = G * c->head_dim, st;
    rmsnorm_rows(s->xb, s->x, L->rms_att, n, D, c->norm_eps);
    capture(s, l, EVB_LINEAR_Q, s->xb, n, D);
    capture(s, l, EVB_LINEAR_K, s->xb, n, D);
    capture(s, l, EVB_LINEAR_V, s->xb, n, D);
    const float *bq = L->bq_kept ? L->bq_kept : L->bq, *bk = L->bk_kept ? L->bk_kept : L->bk;
    const float *bv = L->bv_kept ? L->bv_kept : L->bv;
    if (H > 0 && ((st = project(m, s, s->q, s->xb, L->w[EVB_LINEAR_Q], L->w16[EVB_LINEAR_Q], bq, n, D, HE)) ||
                  (st = project(m, s, s->k, s->xb, L->w[EVB_LINEAR_K], L->w16[EVB_LINEAR_K], bk, n, D, GE)) ||
                  (st = project(m, s, s->v, s->xb, L->w[EVB_LINEAR_V], L->w16[EVB_LINEAR_V], bv, n, D, GE))))
        return st;
    if (H > 0) {
        rope_rows(c, s, s->q, n, s->T, H);
        rope_rows(c, s, s->k, n, s->T, G);
        int tasks = s->B * H;
        #pragma omp parallel for schedule(dynamic)
        for (int t = 0; t < tasks; t++) {
            int ith = 0;
#ifdef _OPENMP
            ith = omp_get_thread_num();
#endif
            attend(c, s, t / H, t % H, H, G, s->scores + (size_t)ith * scratch_floats(c, s->max_seq));
        }
    }
    capture(s, l, EVB_LINEAR_O, s->att, n, HE);
    st = project_k(m, s, s->xb, s->att, L->w[EVB_LINEAR_O], L->w16[EVB_LINEAR_O], L->b_o, n, HE, D);
    if (st) return st;
    add_rows(s->x, s->xb, (size_t)n * D);
    return EVB_SUCCESS;
}

static int mlp_block(const evb_model *m, evb_state *s, int l, const evb_layer *L, int n, int F) {
    const evb_config *c = &m->config;
    int D = c->dim, st;
    rmsnorm_rows(s->xb, s->x, L->rms_ffn, n, D, c->norm_eps);
    capture(s, l, EVB_LINEAR_GATE, s->xb, n, D);
    capture(s, l, EVB_LINEAR_UP, s->xb, n, D);
    if (F > 0 && ((st = project(m, s, s->hb, s->xb, L->w[EVB_LINEAR_GATE], L->w16[EVB_LINEAR_GATE], NULL, n,
                                D, F)) ||
                  (st = project(m, s, s->hb2, s->xb, L->w[EVB_LINEAR_UP], L->w16[EVB_LINEAR_UP], NULL, n, D,
                                F))))
        return st;
    size_t nF = (size_t)n * F;
    #pragma omp parallel for schedule(static) if (nF >= 65536)
    for (size_t i = 0; i < nF; i++) {
        float g = s->hb[i];
        s->hb[i] = g / (1.0f + expf(-g)) * s->hb2[i];
    }
    capture(s, l, EVB_LINEAR_DOWN, s->hb, n, F);
    if ((st = project_k(m, s, s->xb, s->hb, L->w[EVB_LINEAR_DOWN], L->w16[EVB_LINEAR_DOWN], L->b_down, n, F,
                        D)))
        return st;
    add_rows(s->x, s->xb, (size_t)n * D);
    return EVB_SUCCESS;
}

int evb_forward_blocks(const evb_model *m, evb_state *s, int first, int last) {
    const evb_config *c = &m->config;
    if (first < 0 || last > c->n_layers || first > last)
        EVB_ERRORF(EVB_EINVAL, "blocks [%d, %d) are not a range of the model's %d blocks", first, last, c->n_layers);
    int n = s->B * s->T, st = EVB_SUCCESS;
    for (int l = first; l < last && !st; l++) {
        const evb_layer *L = &m->layers[l];
        int H, G, F;
        block_shape(c, L, &H, &G, &F);
        if (!L->skip_attn && !L->dropped_attn) st = attention_block(m, s, l, L, n, H, G);
        if (!st && !L->skip_mlp && !L->dropped_mlp) st = mlp_block(m, s, l, L, n, F);
    }
    return st;
}

int evb_forward_logits(const evb_model *m, evb_state *s) {
    const evb_config *c = &m->config;
    int n = s->B * s->T;
    rmsnorm_rows(s->xb, s->x, m->rms_final, n, c->dim, c->norm_eps);
    return project(m, s, s->logits, s->xb, m->cls, m->cls16, NULL, n, c->dim, c->vocab_size);
}

int evb_forward(const evb_model *m, evb_state *s, const int32_t *tokens, int B, int T) {
    int st = evb_forward_embed(m, s, tokens, B, T);
    if (st) return st;
    st = evb_forward_blocks(m, s, 0, m->config.n_layers);
    if (st) return st;
    return evb_forward_logits(m, s);
}

// ---- log-probabilities ----

void evb_log_softmax(float *x, size_t n, int V) {
    #pragma omp parallel for schedule(static) if (n >= 64)
    for (size_t r = 0; r < n; r++) {
        float *row = x + r * V;
        float mx = max_lanes(row, V);
        double sum = 0.0;
        enum { BLOCK = 1024 };
        float tmp[BLOCK];
        for (int i0 = 0; i0 < V; i0 += BLOCK) {
            int m = V - i0 < BLOCK ? V - i0 : BLOCK;
            memcpy(tmp, row + i0, sizeof(float) * m);
            exp_sub(tmp, m, mx);
            sum += sum_lanes(tmp, m);
        }
        float lse = mx + (float)log(sum);
        for (int i = 0; i < V; i++) row[i] -= lse;
    }
}

double evb_nll_sum(const float *logp, const int32_t *targets, size_t n, int V) {
    double s = 0.0;
    for (size_t r = 0; r < n; r++) s -= logp[r * V + targets[r]];
    return s;
}

// ---- naive reference ----

static void naive_rmsnorm(float *o, const float *x, const float *w, int D, float eps) {
    double ss = 0.0;
    for (int j = 0; j < D; j++) ss += (double)x[j] * x[j];
    double inv = 1.0 / sqrt(ss / D + eps);
    for (int j = 0; j < D; j++) o[j] = (float)(w[j] * (x[j] * inv));
}

static void naive_rope(const evb_config *c, float *v, int n_heads, int pos) {
    int E = c->head_dim, half = E / 2;
    for (int h = 0; h < n_heads; h++)
        for (int i = 0; i < half; i++) {
            double a = pos * pow((double)c->rope_theta, -2.0 * i / E);
            int p0 = c->rope_halves ? h * E + i : h * E + 2 * i;
            int p1 = c->rope_halves ? p0 + half : p0 + 1;
            double v0 = v[p0], v1 = v[p1];
            v[p0] = (float)(v0 * cos(a) - v1 * sin(a));
            v[p1] = (float)(v0 * sin(a) + v1 * cos(a));
        }
}

/* One row through a projection: float32, or a BF16 model's bfloat16 product, both with naive loops. */
static void naive_project(const evb_model *m, float *out, const float *x, const float *W, const uint16_t *W16,
                          const float *bias, int K, int N) {
    if (m->compute == EVB_COMPUTE_BF16) evb_matmul_wt_bf16_naive(out, x, W16, bias, 1, K, N);
    else evb_matmul_wt_naive(out, x, W, bias, 1, K, N);
}

int evb_forward_naive(const evb_model *m, const int32_t *tokens, int T, float *logits) {
    const evb_config *c = &m->config;
    int D = c->dim, F = c->hidden_dim, E = c->head_dim, H = c->n_heads, G = c->n_kv_heads;
    int HE = H * E, GE = G * E, L = c->n_layers, V = c->vocab_size;
    for (int t = 0; t < T; t++)
        if (tokens[t] < 0 || tokens[t] >= V) EVB_ERRORF(EVB_ERANGE, "token id %d at position %d is outside the vocabulary [0, %d)", tokens[t], t, V);
    size_t nf = (size_t)D * 3 + HE * 2 + GE * 2 + F * 2 + T + (size_t)L * T * GE * 2;
    float *buf = malloc(nf * sizeof(float));
    if (!buf) EVB_ERROR("out of memory in the naive forward", EVB_ENOMEM);
    float *x = buf, *xb = x + D, *xb2 = xb + D, *q = xb2 + D, *att = q + HE, *k = att + HE, *v = k + GE;
    float *hb = v + GE, *hb2 = hb + F, *sc = hb2 + F, *kc = sc + T, *vc = kc + (size_t)L * T * GE;
    for (int pos = 0; pos < T; pos++) {
        embed_row(m, tokens[pos], x);
        for (int l = 0; l < L; l++) {
            const evb_layer *ly = &m->layers[l];
            int Hl, Gl, Fl;
            block_shape(c, ly, &Hl, &Gl, &Fl);
            int HEl = Hl * E, GEl = Gl * E;
            const float *bq = ly->bq_kept ? ly->bq_kept : ly->bq, *bk = ly->bk_kept ? ly->bk_kept : ly->bk;
            const float *bv = ly->bv_kept ? ly->bv_kept : ly->bv;
            if (!ly->skip_attn && !ly->dropped_attn) {
                naive_rmsnorm(xb, x, ly->rms_att, D, c->norm_eps);
                naive_project(m, q, xb, ly->w[EVB_LINEAR_Q], ly->w16[EVB_LINEAR_Q], bq, D, HEl);
                naive_project(m, k, xb, ly->w[EVB_LINEAR_K], ly->w16[EVB_LINEAR_K], bk, D, GEl);
                naive_project(m, v, xb, ly->w[EVB_LINEAR_V], ly->w16[EVB_LINEAR_V], bv, D, GEl);
                naive_rope(c, q, Hl, pos);
                naive_rope(c, k, Gl, pos);
                memcpy(kc + ((size_t)l * T + pos) * GE, k, GEl * sizeof(float));
                memcpy(vc + ((size_t)l * T + pos) * GE, v, GEl * sizeof(float));
                for (int h = 0; h < Hl; h++) {
                    int g = h / (H / G);
                    double mx = -INFINITY, sum = 0.0;
                    for (int j = 0; j <= pos; j++) {
                        const float *kj = kc + ((size_t)l * T + j) * GE + g * E;
                        double d = 0.0;
                        for (int e = 0; e < E; e++) d += (double)q[h * E + e] * kj[e];
                        sc[j] = (float)(d / sqrt((double)E));
                        if (sc[j] > mx) mx = sc[j];
                    }
                    for (int j = 0; j <= pos; j++) { sc[j] = (float)exp(sc[j] - mx); sum += sc[j]; }
                    for (int e = 0; e < E; e++) {
                        double a = 0.0;
                        for (int j = 0; j <= pos; j++) a += sc[j] / sum * vc[((size_t)l * T + j) * GE + g * E + e];
                        att[h * E + e] = (float)a;
                    }
                }
                naive_project(m, xb2, att, ly->w[EVB_LINEAR_O], ly->w16[EVB_LINEAR_O], ly->b_o, HEl, D);
                for (int j = 0; j < D; j++) x[j] += xb2[j];
            }
            if (!ly->skip_mlp && !ly->dropped_mlp) {
                naive_rmsnorm(xb, x, ly->rms_ffn, D, c->norm_eps);
                naive_project(m, hb, xb, ly->w[EVB_LINEAR_GATE], ly->w16[EVB_LINEAR_GATE], NULL, D, Fl);
                naive_project(m, hb2, xb, ly->w[EVB_LINEAR_UP], ly->w16[EVB_LINEAR_UP], NULL, D, Fl);
                for (int j = 0; j < Fl; j++) hb[j] = (float)(hb[j] / (1.0 + exp(-(double)hb[j])) * hb2[j]);
                naive_project(m, xb2, hb, ly->w[EVB_LINEAR_DOWN], ly->w16[EVB_LINEAR_DOWN], ly->b_down, Fl,
                              D);
                for (int j = 0; j < D; j++) x[j] += xb2[j];
            }
        }
        naive_rmsnorm(xb, x, m->rms_final, D, c->norm_eps);
        naive_project(m, logits + (size_t)pos * V, xb, m->cls, m->cls16, NULL, D, V);
    }
    free(buf);
    return EVB_SUCCESS;
}

int evb_generate_greedy(const evb_model *m, evb_state *s, int32_t *seq, size_t n_prompt, size_t total) {
    const int V = m->config.vocab_size;
    if (total > (size_t)m->config.max_seq_len || n_prompt < 1 || n_prompt > total)
        EVB_ERRORF(EVB_EINVAL, "generate: %zu prompt tokens and %zu in all, for a context of %d", n_prompt, total, m->config.max_seq_len);
    for (size_t i = 0; i < n_prompt; i++)
        if (seq[i] < 0 || seq[i] >= V)
            EVB_ERRORF(EVB_ERANGE, "prompt token %d (position %zu) is outside the model's vocabulary [0, %d) (hint: use the model's own tokenizer)", seq[i], i, V);
    for (size_t n = n_prompt; n < total; n++) {
        int st = evb_forward(m, s, seq, 1, (int)n);
        if (st) return st;
        const float *row = s->logits + (n - 1) * (size_t)V;
        int best = 0;
        for (int v = 1; v < V; v++) if (row[v] > row[best]) best = v;
        seq[n] = best;
    }
    return EVB_SUCCESS;
}
