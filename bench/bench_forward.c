/* bench_forward.c -- throughput of the batched forward pass, set against the machine's own sgemm.
 *
 * For each model it times one evaluation step over a batch of B x T tokens (default 8 x 512): the forward
 * (embed, blocks, final norm + classifier), an in-place log-softmax, and a KL(dense || copy) reduction
 * against a copy of the log-probabilities kept from the first run -- the work of scoring one candidate.
 * It prints tokens/s and the GEMM rate, and beside them the rate that single-threaded cblas_sgemm reaches
 * on the same shapes (one concurrent call per OpenMP thread), i.e. how close the engine is to pure GEMM.
 *
 * Models: stories260K (llama2.c .bin), the demo model (assets/demo, skipped when absent), and random-weight
 * models of dim 768 (12 layers) and dim 512 (8 layers), vocab 32000, which are written once as Hugging Face
 * directories under --random-dir so that bench/torch_forward.py can load the very same weights.
 *
 * Usage: bench_forward [--model stories260K.bin] [--demo DIR] [--models LIST] [--reps R] [--reps-big R]
 *                      [--warmup W] [--batch B] [--seq T] [--random-dir DIR] [--dump DIR] [--json]
 * Threads: OMP_NUM_THREADS (OpenBLAS itself is kept single-threaded by evb_init()). */
#define _GNU_SOURCE
#include "evobudget/evobudget.h"
#include "models/blas.h"
#include "tests/fixtures.h"

#include "bench/bench_util.h"
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#ifndef EVB_SOURCE_DIR
#define EVB_SOURCE_DIR "."
#endif

#define LIMIT_M 4096          /* rows of the reference sgemm calls */
#define MAX_SHAPES 16
#define RANDOM_SEED 20240601u

/* SOURCE.md of stories260K: logits at position 0 (after BOS), ids 0..7, from llama2.c's run.c. */
static const float stories_logits0_ref[8] = {-6.222911f, 8.404342f, -6.223737f, -6.222542f,
                                             -6.221951f, -6.222875f, -6.221880f, -6.223416f};

static double median(const double *v, int n) {
    double tmp[64];
    if (n < 1) return 0.0;
    if (n > 64) n = 64;
    memcpy(tmp, v, sizeof(double) * n);
    qsort(tmp, n, sizeof(double), bench_cmp_double);
    return n % 2 ? tmp[n / 2] : 0.5 * (tmp[n / 2 - 1] + tmp[n / 2]);
}

/* ---- the token batch: the same ids in bench/torch_forward.py ---- */

static uint64_t splitmix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* tokens[b T + t] = BOS at t = 0, else splitmix64(b T + t) mod V. */
static void make_tokens(int32_t *tok, int B, int T, int V, int bos) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)b * T + t;
            tok[i] = t == 0 ? bos : (int32_t)(splitmix64(i) % (uint64_t)V);
        }
}

/* ---- FLOP counts ---- */

/* One distinct GEMM shape of the forward: out[M, N] = x[M, K] . W[N, K]^T, used `count` times per forward. */
typedef struct shape {
    int K, N;
    double count;
    double gflops;   /* measured limit rate (aggregate over threads) */
    double t_engine; /* seconds of one evb_matmul_wt over the batch's B T rows, all threads */
    int cls;         /* the classifier (kept apart even when a projection has the same shape) */
} shape;

typedef struct flops {
    double proj, cls, attn, total;   /* FLOPs of one forward */
} flops;

/* Only matmul FLOPs: 2 M K N for every projection and the classifier (M = B T), plus causal attention,
 * T (T + 1) / 2 E 2 2 per (sequence, head, layer) for Q K^T and A V. */
static flops count_flops(const evb_config *c, int B, int T) {
    double M = (double)B * T, D = c->dim, F = c->hidden_dim, V = c->vocab_size;
    double HE = (double)c->n_heads * c->head_dim, GE = (double)c->n_kv_heads * c->head_dim, L = c->n_layers;
    flops f;
    f.proj = L * 2.0 * M * (D * HE + 2.0 * D * GE + HE * D + 2.0 * D * F + F * D);
    f.cls = 2.0 * M * D * V;
    f.attn = L * B * c->n_heads * ((double)T * (T + 1) / 2.0) * c->head_dim * 2.0 * 2.0;
    f.total = f.proj + f.cls + f.attn;
    return f;
}

static int add_shape(shape *s, int n, int K, int N, double count, int cls) {
    for (int i = 0; i < n && !cls; i++)
        if (s[i].K == K && s[i].N == N) { s[i].count += count; return n; }
    s[n].K = K; s[n].N = N; s[n].count = count; s[n].gflops = 0.0; s[n].t_engine = 0.0; s[n].cls = cls;
    return n + 1;
}

static int model_shapes(const evb_config *c, shape *s) {
    int D = c->dim, F = c->hidden_dim, HE = c->n_heads * c->head_dim, GE = c->n_kv_heads * c->head_dim;
    double L = c->n_layers;
    int n = 0;
    n = add_shape(s, n, D, HE, L, 0);
    n = add_shape(s, n, D, GE, 2 * L, 0);
    n = add_shape(s, n, HE, D, L, 0);
    n = add_shape(s, n, D, F, 2 * L, 0);
    n = add_shape(s, n, F, D, L, 0);
    n = add_shape(s, n, D, c->vocab_size, 1, 1);
    return n;
}

/* ---- the sgemm limit ---- */

static void fill_uniform(float *x, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++) x[i] = (float)((splitmix64(seed + i) >> 40) * (1.0 / 16777216.0) - 0.5);
}

/* Aggregate GFLOP/s of nth concurrent single-threaded cblas_sgemm calls (one per OpenMP thread), each
 * C[M, N] = A[M, K] . W[N, K]^T, rows of its own. Median over the timed calls. */
static double sgemm_rate(int nth, int M, int K, int N) {
    float *W = malloc(sizeof(float) * (size_t)N * K);
    float **A = calloc(nth, sizeof *A), **C = calloc(nth, sizeof *C);
    int ok = W != NULL;
    for (int i = 0; i < nth && ok; i++) {
        A[i] = malloc(sizeof(float) * (size_t)M * K);
        C[i] = malloc(sizeof(float) * (size_t)M * N);
        ok = A[i] && C[i];
        if (ok) { fill_uniform(A[i], (size_t)M * K, 7 + i); memset(C[i], 0, sizeof(float) * (size_t)M * N); }
    }
    double rate = 0.0;
    if (ok) {
        fill_uniform(W, (size_t)N * K, 3);
        double t[16];
        int n = 0;
        double spent = 0.0;
        for (int rep = -1; n < 16; rep++) {
            int m = rep < 0 ? (M < 128 ? M : 128) : M;   /* the warm-up touches W and the code paths */
            double t0 = bench_now();
            #pragma omp parallel num_threads(nth)
            {
                int i = 0;
#ifdef _OPENMP
                i = omp_get_thread_num();
#endif
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, N, K, 1.0f, A[i], K, W, K, 0.0f, C[i], N);
            }
            double dt = bench_now() - t0;
            if (rep < 0) continue;
            t[n++] = dt;
            spent += dt;
            if ((n >= 3 && spent > 0.2) || (n >= 1 && spent > 1.0)) break;
        }
        rate = nth * 2.0 * M * K * N / median(t, n) / 1e9;
    }
    for (int i = 0; i < nth; i++) { free(A[i]); free(C[i]); }
    free(A); free(C); free(W);
    return rate;
}

/* The attention products of one (sequence, head) as full T x T sgemms (Q K^T, then A V), nth at once.
 * The rate is applied to the causal FLOP count: the limit of an ideal causal kernel at sgemm efficiency. */
static double attention_rate(int nth, int T, int E) {
    float *q = malloc(sizeof(float) * (size_t)T * E * 3), *k = q + (size_t)T * E, *v = k + (size_t)T * E;
    float *S = malloc(sizeof(float) * (size_t)nth * T * T), *O = malloc(sizeof(float) * (size_t)nth * T * E);
    double rate = 0.0;
    if (q && S && O) {
        fill_uniform(q, (size_t)T * E * 3, 11);
        double flop = 2.0 * 2.0 * T * T * E;
        int inner = (int)(2e7 / flop) + 1;   /* calls per timed sample, about 20 MFLOP per thread */
        double t[16];
        int n = 0;
        double spent = 0.0;
        for (int rep = -1; n < 16; rep++) {
            double t0 = bench_now();
            #pragma omp parallel num_threads(nth)
            {
                int i = 0;
#ifdef _OPENMP
                i = omp_get_thread_num();
#endif
                float *Si = S + (size_t)i * T * T, *Oi = O + (size_t)i * T * E;
                for (int r = 0; r < inner; r++) {
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, E, 0.125f, q, E, k, E, 0.0f, Si, T);
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, E, T, 1.0f, Si, T, v, E, 0.0f, Oi, E);
                }
            }
            double dt = bench_now() - t0;
            if (rep < 0) continue;
            t[n++] = dt;
            spent += dt;
            if (n >= 5 && spent > 0.2) break;
        }
        rate = nth * flop * inner / median(t, n) / 1e9;
    }
    free(q); free(S); free(O);
    return rate;
}

/* Seconds of the engine's own projection, evb_matmul_wt (rows cut in fixed slices shared out over the
 * OpenMP threads, one single-threaded sgemm per slice), for out[M, N] = x[M, K] W[N, K]^T. Median. */
static double engine_matmul_time(int M, int K, int N) {
    float *x = malloc(sizeof(float) * (size_t)M * K), *W = malloc(sizeof(float) * (size_t)N * K);
    float *out = malloc(sizeof(float) * (size_t)M * N);
    double t[16], spent = 0.0;
    int n = 0;
    if (x && W && out) {
        fill_uniform(x, (size_t)M * K, 5);
        fill_uniform(W, (size_t)N * K, 3);
        for (int rep = -1; n < 16; rep++) {
            double t0 = bench_now();
            evb_matmul_wt(out, x, W, NULL, rep < 0 ? (M < 128 ? M : 128) : M, K, N);
            double dt = bench_now() - t0;
            if (rep < 0) continue;
            t[n++] = dt;
            spent += dt;
            if ((n >= 3 && spent > 0.2) || (n >= 1 && spent > 1.0)) break;
        }
    }
    free(x); free(W); free(out);
    return n ? median(t, n) : 0.0;
}

/* ---- random-weight models, written as Hugging Face directories ---- */

typedef struct rand_spec {
    const char *name;
    int dim, n_layers, n_heads, n_kv_heads, hidden_dim, vocab_size;
} rand_spec;

static const rand_spec rand_specs[] = {
    {"rand768", 768, 12, 12, 12, 2048, 32000},
    {"rand512", 512, 8, 8, 8, 1376, 32000},
};

typedef struct rng { uint64_t s; int have; double spare; } rng;

static double rng_uniform(rng *r) {
    r->s += 0x9E3779B97F4A7C15ull;
    uint64_t z = r->s;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return ((z >> 11) + 0.5) * (1.0 / 9007199254740992.0);   /* (0, 1) */
}

static double rng_normal(rng *r) {   /* Box-Muller */
    if (r->have) { r->have = 0; return r->spare; }
    double u = rng_uniform(r), v = rng_uniform(r), rad = sqrt(-2.0 * log(u)), a = 2.0 * M_PI * v;
    r->spare = rad * sin(a); r->have = 1;
    return rad * cos(a);
}

/* Builds the model in memory: every weight N(0, 0.02^2), every norm 1, tied classifier. */
static int build_random(const rand_spec *sp, evb_model **out) {
    evb_model *m = calloc(1, sizeof *m);
    if (!m) return EVB_ENOMEM;
    evb_config *c = &m->config;
    snprintf(c->arch, sizeof c->arch, "llama");
    snprintf(c->format, sizeof c->format, "hf");
    c->dim = sp->dim; c->hidden_dim = sp->hidden_dim; c->n_layers = sp->n_layers; c->n_heads = sp->n_heads;
    c->n_kv_heads = sp->n_kv_heads; c->head_dim = sp->dim / sp->n_heads; c->vocab_size = sp->vocab_size;
    c->max_seq_len = 2048; c->rope_theta = 10000.0f; c->norm_eps = 1e-5f; c->rope_halves = 1; c->tied = 1;
    c->qkv_bias = 0; c->bos_id = 1; c->eos_id = 2;
    size_t D = c->dim, n = (size_t)c->vocab_size * D + D;
    for (int k = 0; k < EVB_LINEAR_COUNT; k++) {
        int r, cc;
        evb_model_unit_shape(m, k, &r, &cc);
        n += (size_t)c->n_layers * r * cc;
    }
    n += (size_t)c->n_layers * 2 * D;
    m->layers = calloc(c->n_layers, sizeof *m->layers);
    m->arena = malloc(sizeof(float) * n);
    m->n_arena = n;
    if (!m->layers || !m->arena) { evb_model_free(m); return EVB_ENOMEM; }
    rng r = {RANDOM_SEED, 0, 0.0};
    float *p = m->arena;
    m->tok_emb = p; p += (size_t)c->vocab_size * D;
    for (size_t i = 0; i < (size_t)c->vocab_size * D; i++) m->tok_emb[i] = (float)(0.02 * rng_normal(&r));
    for (int l = 0; l < c->n_layers; l++) {
        evb_layer *L = &m->layers[l];
        L->rms_att = p; p += D;
        L->rms_ffn = p; p += D;
        for (size_t i = 0; i < D; i++) L->rms_att[i] = L->rms_ffn[i] = 1.0f;
        for (int k = 0; k < EVB_LINEAR_COUNT; k++) {
            int rows, cols;
            evb_model_unit_shape(m, k, &rows, &cols);
            L->w_dense[k] = p; L->w[k] = p;
            for (size_t i = 0; i < (size_t)rows * cols; i++) p[i] = (float)(0.02 * rng_normal(&r));
            p += (size_t)rows * cols;
        }
    }
    m->rms_final = p; p += D;
    for (size_t i = 0; i < D; i++) m->rms_final[i] = 1.0f;
    m->cls = m->tok_emb;
    *out = m;
    return EVB_SUCCESS;
}

static int is_dir(const char *p) { struct stat sb; return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode); }
static int is_file(const char *p) { struct stat sb; return stat(p, &sb) == 0 && S_ISREG(sb.st_mode); }

/* DIR/NAME holds the model when its stamp file matches the spec and seed; otherwise it is (re)written. */
static int ensure_random(const rand_spec *sp, const char *root, char *dir, size_t dir_size) {
    if (strlen(root) + 64 > dir_size) { fprintf(stderr, "bench_forward: --random-dir %s: path too long\n", root); return 1; }
    snprintf(dir, dir_size, "%s/%s", root, sp->name);
    char stamp[1200], want[256], have[256] = "";
    snprintf(stamp, sizeof stamp, "%s/bench-stamp.txt", dir);
    snprintf(want, sizeof want, "seed %u dim %d layers %d heads %d/%d hidden %d vocab %d N(0,0.02) norms 1 tied\n",
             RANDOM_SEED, sp->dim, sp->n_layers, sp->n_heads, sp->n_kv_heads, sp->hidden_dim, sp->vocab_size);
    FILE *f = fopen(stamp, "r");
    if (f) { if (!fgets(have, sizeof have, f)) have[0] = '\0'; fclose(f); }
    char st_path[1200];
    snprintf(st_path, sizeof st_path, "%s/model.safetensors", dir);
    if (strcmp(have, want) == 0 && is_file(st_path)) return 0;
    fprintf(stderr, "bench_forward: writing the random model %s to %s\n", sp->name, dir);
    if (!is_dir(root) && mkdir(root, 0755) && errno != EEXIST) { fprintf(stderr, "bench_forward: cannot create %s: %s\n", root, strerror(errno)); return 1; }
    if (!is_dir(dir) && mkdir(dir, 0755) && errno != EEXIST) { fprintf(stderr, "bench_forward: cannot create %s: %s\n", dir, strerror(errno)); return 1; }
    remove(stamp);
    evb_model *m = NULL;
    if (build_random(sp, &m)) { fprintf(stderr, "bench_forward: out of memory building %s\n", sp->name); return 1; }
    int rc = fixture_write_hf(m, dir, "F32", 1, 0, "llama");
    evb_model_free(m);
    if (rc) { fprintf(stderr, "bench_forward: cannot write %s (%s)\n", dir, evb_last_error()); return 1; }
    f = fopen(stamp, "w");
    if (!f || fputs(want, f) < 0) { fprintf(stderr, "bench_forward: cannot write %s\n", stamp); if (f) fclose(f); return 1; }
    fclose(f);
    return 0;
}

/* ---- one model ---- */

typedef struct result {
    char name[32];
    int skipped;
    char note[256];
    size_t params;
    int dim, n_layers, n_heads, n_kv_heads, hidden_dim, vocab_size;
    int B, T, reps, warmup, threads;
    double t_step, t_embed, t_blocks, t_logits, t_lsm, t_kl;   /* medians, seconds */
    double tok_s, gemm_gflops, limit_gflops, fraction;
    flops fl;
    shape shapes[MAX_SHAPES];
    int n_shapes;
    double attn_gflops;
    double t_proj_engine, t_cls_engine;  /* evb_matmul_wt alone over the forward's projections / classifier */
    double t_proj_limit, t_cls_limit, t_attn_limit;  /* the same at the sgemm limit */
    double kl;
    double ref_diff;    /* stories260K: position-0 logits vs SOURCE.md; -1 when not checked */
} result;

static int run_model(const char *name, const evb_model *m, int B, int T, int reps, int warmup,
                     const char *dump, result *res) {
    const evb_config *c = &m->config;
    int V = c->vocab_size, nth = bench_threads();
    if (T > c->max_seq_len) T = c->max_seq_len;
    snprintf(res->name, sizeof res->name, "%s", name);
    res->params = evb_model_n_params(m);
    res->dim = c->dim; res->n_layers = c->n_layers; res->n_heads = c->n_heads; res->n_kv_heads = c->n_kv_heads;
    res->hidden_dim = c->hidden_dim; res->vocab_size = V;
    res->B = B; res->T = T; res->reps = reps; res->warmup = warmup; res->threads = nth;
    res->ref_diff = -1.0;
    size_t n = (size_t)B * T;
    evb_state *s = NULL;
    int32_t *tok = malloc(sizeof(int32_t) * n);
    float *ref = malloc(sizeof(float) * n * V);
    if (!tok || !ref || evb_state_alloc(m, B, T, &s)) {
        fprintf(stderr, "bench_forward: %s: out of memory for a batch of %d x %d (%s)\n", name, B, T, evb_last_error());
        free(tok); free(ref); evb_state_free(s);
        return 1;
    }
    make_tokens(tok, B, T, V, c->bos_id >= 0 ? c->bos_id : 1);
    double t_step[64], t_embed[64], t_blocks[64], t_logits[64], t_lsm[64], t_kl[64], kl = 0.0;
    if (reps > 64) reps = 64;
    fprintf(stderr, "bench_forward: %s: %d warm-up + %d timed runs of %d x %d tokens, %d thread(s)\n", name, warmup, reps, B, T, nth);
    for (int it = -warmup - 1; it < reps; it++) {   /* it = -warmup - 1: the run that fills the dense copy */
        double t0 = bench_now();
        int st = evb_forward_embed(m, s, tok, B, T);
        double t1 = bench_now();
        if (!st) st = evb_forward_blocks(m, s, 0, c->n_layers);
        double t2 = bench_now();
        if (!st) st = evb_forward_logits(m, s);
        double t3 = bench_now();
        if (st) {
            fprintf(stderr, "bench_forward: %s: forward failed: %s\n", name, evb_last_error());
            free(tok); free(ref); evb_state_free(s);
            return 1;
        }
        if (it == -warmup - 1) {
            if (dump) {
                char path[1200];
                snprintf(path, sizeof path, "%s/%s.logits.f32", dump, name);
                FILE *f = fopen(path, "wb");
                if (!f || fwrite(s->logits, sizeof(float) * V, T, f) != (size_t)T) {
                    fprintf(stderr, "bench_forward: cannot write %s: %s\n", path, strerror(errno));
                    if (f) fclose(f);
                    free(tok); free(ref); evb_state_free(s);
                    return 1;
                }
                fclose(f);
                fprintf(stderr, "bench_forward: wrote the logits of sequence 0 (%d x %d float32) to %s\n", T, V, path);
            }
            if (strcmp(name, "stories260K") == 0 && V == 512) {
                double d = 0.0;
                for (int i = 0; i < 8; i++) d = fmax(d, fabs((double)s->logits[i] - stories_logits0_ref[i]));
                res->ref_diff = d;
            }
        }
        evb_log_softmax(s->logits, n, V);
        double t4 = bench_now();
        if (it == -warmup - 1) { memcpy(ref, s->logits, sizeof(float) * n * V); continue; }
        kl = evb_kl_sum(ref, s->logits, n, V);
        double t5 = bench_now();
        if (it < 0) continue;
        t_embed[it] = t1 - t0; t_blocks[it] = t2 - t1; t_logits[it] = t3 - t2; t_lsm[it] = t4 - t3; t_kl[it] = t5 - t4;
        t_step[it] = t5 - t0;
    }
    res->t_step = median(t_step, reps); res->t_embed = median(t_embed, reps); res->t_blocks = median(t_blocks, reps);
    res->t_logits = median(t_logits, reps); res->t_lsm = median(t_lsm, reps); res->t_kl = median(t_kl, reps);
    res->kl = kl;
    res->fl = count_flops(c, B, T);
    res->tok_s = n / res->t_step;
    res->gemm_gflops = res->fl.total / res->t_step / 1e9;
    free(tok); free(ref); evb_state_free(s);

    /* The limit: the forward's FLOPs at the rate sgemm reaches on each shape. */
    fprintf(stderr, "bench_forward: %s: sgemm limit on the same shapes (M = %d, %d concurrent single-threaded call(s))\n", name, LIMIT_M, nth);
    res->n_shapes = model_shapes(c, res->shapes);
    double t_limit = 0.0;
    for (int i = 0; i < res->n_shapes; i++) {
        shape *sh = &res->shapes[i];
        sh->gflops = sgemm_rate(nth, LIMIT_M, sh->K, sh->N);
        sh->t_engine = engine_matmul_time((int)n, sh->K, sh->N);
        double tl = sh->count * 2.0 * n * sh->K * sh->N / (sh->gflops * 1e9), te = sh->count * sh->t_engine;
        t_limit += tl;
        if (sh->cls) { res->t_cls_limit = tl; res->t_cls_engine = te; }
        else { res->t_proj_limit += tl; res->t_proj_engine += te; }
    }
    res->attn_gflops = attention_rate(nth, T, c->head_dim);
    res->t_attn_limit = res->fl.attn / (res->attn_gflops * 1e9);
    t_limit += res->t_attn_limit;
    res->limit_gflops = res->fl.total / t_limit / 1e9;
    res->fraction = res->gemm_gflops / res->limit_gflops;
    return 0;
}

/* ---- output ---- */

static void print_markdown(const result *r, int nr, int B, int T) {
    int nth = bench_threads();
    printf("## evobudget forward benchmark: %d x %d tokens, %d thread(s)\n\n", B, T, nth);
    printf("OpenBLAS: %s (core %s), kept single-threaded; the engine splits rows over %d OpenMP thread(s).\n",
           evb_blas_library(), openblas_get_corename(), nth);
    printf("One step = forward (embed, blocks, final norm + classifier) + log-softmax + KL(dense || copy); "
           "medians of the timed runs.\n\n");
    printf("| model | params | engine tok/s | engine GEMM GFLOP/s | sgemm limit GFLOP/s | fraction of limit |\n");
    printf("|---|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < nr; i++) {
        const result *x = &r[i];
        if (x->skipped) { printf("| %s | - | skipped: %s | | | |\n", x->name, x->note); continue; }
        printf("| %s | %.2fM | %.0f | %.1f | %.1f | %.2f |\n", x->name, x->params / 1e6, x->tok_s, x->gemm_gflops,
               x->limit_gflops, x->fraction);
    }
    printf("\nGEMM FLOPs per forward (matmuls only), M = B T = %d rows:\n", B * T);
    printf("  sum over the projections (q, k, v, o, gate, up, down) of every layer and the classifier of 2 M K N\n");
    printf("  + causal attention: T (T + 1) / 2 * E * 2 * 2 per head per sequence per layer (Q K^T and A V).\n");
    printf("Engine GEMM GFLOP/s = those FLOPs / step time (embedding, norms, rotary, softmax, SwiGLU,\n");
    printf("log-softmax and KL count no FLOPs but take time).\n");
    printf("sgemm limit GFLOP/s = the same FLOPs / the time they take at the rate that %d concurrent single-threaded\n", nth);
    printf("cblas_sgemm call(s) (one per thread) reach on each shape: C[%d, N] = A[%d, K] W[N, K]^T per projection\n", LIMIT_M, LIMIT_M);
    printf("shape, and full T x T products Q K^T and A V for attention (that rate applied to the causal count).\n\n");
    printf("Where the step's time goes (seconds; \"at limit\" = the FLOPs at the sgemm limit's rate):\n\n");
    printf("| model | step | blocks | projections alone (at limit) | blocks minus projections: attention + element-wise (attention at limit) | classifier (at limit) | log-softmax | KL |\n");
    printf("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < nr; i++) {
        const result *x = &r[i];
        if (x->skipped) continue;
        printf("| %s | %.3f | %.3f | %.3f (%.3f) | %.3f (%.3f) | %.3f (%.3f) | %.3f | %.3f |\n", x->name, x->t_step, x->t_blocks,
               x->t_proj_engine, x->t_proj_limit, x->t_blocks - x->t_proj_engine, x->t_attn_limit, x->t_logits,
               x->t_cls_limit, x->t_lsm, x->t_kl);
    }
    printf("\nProjections alone: evb_matmul_wt timed on its own on each shape (B T rows) times its uses per forward.\n\n");
    printf("| model | GFLOP per forward: proj + cls + attn | per shape K x N (uses): sgemm limit GFLOP/s, evb_matmul_wt GFLOP/s |\n|---|---|---|\n");
    for (int i = 0; i < nr; i++) {
        const result *x = &r[i];
        if (x->skipped) continue;
        printf("| %s | %.2f + %.2f + %.2f = %.2f |", x->name, x->fl.proj / 1e9, x->fl.cls / 1e9, x->fl.attn / 1e9, x->fl.total / 1e9);
        for (int k = 0; k < x->n_shapes; k++) {
            const shape *sh = &x->shapes[k];
            printf(" %s%dx%d (%g): %.1f, %.1f;", sh->cls ? "cls " : "", sh->K, sh->N, sh->count, sh->gflops,
                   2.0 * x->B * x->T * sh->K * sh->N / sh->t_engine / 1e9);
        }
        printf(" attn T=%d E=%d: %.1f |\n", x->T, x->n_heads ? x->dim / x->n_heads : 0, x->attn_gflops);
    }
    printf("\n");
    for (int i = 0; i < nr; i++) {
        if (r[i].skipped) continue;
        printf("%s: KL(dense || copy) = %.3g (expected 0)", r[i].name, r[i].kl);
        if (r[i].ref_diff >= 0) printf("; position-0 logits vs llama2.c's reference (SOURCE.md): max |diff| %.2g", r[i].ref_diff);
        printf("\n");
    }
}

static void json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20) printf("\\u%04x", *s);
        else putchar(*s);
    }
    putchar('"');
}

static void print_json(const result *r, int nr, int B, int T) {
    printf("{\"engine\": \"evobudget " EVB_VERSION "\", \"threads\": %d, \"batch\": %d, \"seq\": %d, \"blas\": ", bench_threads(), B, T);
    json_str(evb_blas_library());
    printf(", \"openblas_core\": ");
    json_str(openblas_get_corename());
    printf(", \"limit_rows\": %d,\n \"flops_formula\": \"sum of 2*M*K*N over projections and classifier (M = B*T) + causal attention T*(T+1)/2*E*2*2 per head per sequence per layer\",\n \"models\": [", LIMIT_M);
    for (int i = 0; i < nr; i++) {
        const result *x = &r[i];
        printf("%s\n  {\"name\": ", i ? "," : "");
        json_str(x->name);
        if (x->skipped) { printf(", \"skipped\": true, \"note\": "); json_str(x->note); printf("}"); continue; }
        printf(", \"skipped\": false, \"params\": %zu, \"dim\": %d, \"n_layers\": %d, \"n_heads\": %d, \"n_kv_heads\": %d, "
               "\"hidden_dim\": %d, \"vocab_size\": %d, \"batch\": %d, \"seq\": %d, \"reps\": %d, \"warmup\": %d, \"threads\": %d,\n"
               "   \"tok_s\": %.3f, \"gemm_gflops\": %.3f, \"limit_gflops\": %.3f, \"fraction\": %.4f,\n"
               "   \"step_s\": %.6f, \"embed_s\": %.6f, \"blocks_s\": %.6f, \"logits_s\": %.6f, \"log_softmax_s\": %.6f, \"kl_s\": %.6f,\n"
               "   \"proj_engine_s\": %.6f, \"proj_limit_s\": %.6f, \"cls_limit_s\": %.6f, \"attn_limit_s\": %.6f,\n"
               "   \"flops\": {\"proj\": %.0f, \"cls\": %.0f, \"attn\": %.0f, \"total\": %.0f}, \"kl\": %.6g, \"ref_logits0_max_diff\": %.3g,\n"
               "   \"limit_shapes\": [",
               x->params, x->dim, x->n_layers, x->n_heads, x->n_kv_heads, x->hidden_dim, x->vocab_size, x->B, x->T,
               x->reps, x->warmup, x->threads, x->tok_s, x->gemm_gflops, x->limit_gflops, x->fraction, x->t_step,
               x->t_embed, x->t_blocks, x->t_logits, x->t_lsm, x->t_kl, x->t_proj_engine, x->t_proj_limit,
               x->t_cls_limit, x->t_attn_limit, x->fl.proj, x->fl.cls, x->fl.attn, x->fl.total,
               x->kl, x->ref_diff);
        for (int k = 0; k < x->n_shapes; k++)
            printf("%s{\"M\": %d, \"K\": %d, \"N\": %d, \"classifier\": %s, \"count\": %g, \"gflops\": %.3f, \"engine_matmul_s\": %.6f}",
                   k ? ", " : "", LIMIT_M, x->shapes[k].K, x->shapes[k].N, x->shapes[k].cls ? "true" : "false",
                   x->shapes[k].count, x->shapes[k].gflops, x->shapes[k].t_engine);
        printf("], \"limit_attention_gflops\": %.3f}", x->attn_gflops);
    }
    printf("\n ]}\n");
}

/* ---- main ---- */

static void usage(FILE *f) {
    fprintf(f,
        "usage: bench_forward [options] [STORIES260K.bin]\n"
        "  --model PATH       stories260K checkpoint (default ../shared/data/models/stories260K/stories260K.bin\n"
        "                     relative to the repository root)\n"
        "  --demo DIR         the demo model (default assets/demo; skipped when absent)\n"
        "  --models LIST      comma-separated subset of stories260K,demo,rand768,rand512 (default: all)\n"
        "  --reps R           timed runs per model (default 5); medians are reported\n"
        "  --reps-big R       timed runs for the models over 10M parameters (default min(R, 3))\n"
        "  --warmup W         untimed runs before them (default 2, 0 for the models over 10M parameters), after\n"
        "                     the untimed run that fills the dense copy for the KL\n"
        "  --batch B --seq T  the batch (default 8 x 512)\n"
        "  --random-dir DIR   where the random models are written as HF directories (default /tmp/evb_bench_models)\n"
        "  --dump DIR         write each model's logits of sequence 0 to DIR/<model>.logits.f32 ([T, V] float32,\n"
        "                     before log-softmax; bench/torch_forward.py --engine-logits DIR compares them)\n"
        "  --json             one JSON object on stdout instead of the Markdown table\n"
        "Threads: OMP_NUM_THREADS.\n");
}

static int want_model(const char *list, const char *name) {
    if (!list) return 1;
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0) return 1;
        p += len + (e ? 1 : 0);
    }
    return 0;
}

static int parse_int(const char *flag, const char *v, int lo, int *out) {
    char *end;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || *end || x < lo || x > 1000000) { fprintf(stderr, "bench_forward: %s needs an integer >= %d\n", flag, lo); return 1; }
    *out = (int)x;
    return 0;
}

int main(int argc, char **argv) {
    evb_blas_fix_core(argv); /* the same OpenBLAS kernels the evobudget program uses */
    evb_init();
    const char *stories = EVB_SOURCE_DIR "/../shared/data/models/stories260K/stories260K.bin";
    const char *demo = EVB_SOURCE_DIR "/assets/demo", *models = NULL, *dump = NULL, *rdir = "/tmp/evb_bench_models";
    int reps = 5, reps_big = -1, warmup = -1, B = 8, T = 512, json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--model")) { if (!v) bad = 1; else stories = v; i++; }
        else if (!strcmp(a, "--demo")) { if (!v) bad = 1; else demo = v; i++; }
        else if (!strcmp(a, "--models")) { if (!v) bad = 1; else models = v; i++; }
        else if (!strcmp(a, "--dump")) { if (!v) bad = 1; else dump = v; i++; }
        else if (!strcmp(a, "--random-dir")) { if (!v) bad = 1; else rdir = v; i++; }
        else if (!strcmp(a, "--reps")) { if (parse_int(a, v, 1, &reps)) return 2; i++; }
        else if (!strcmp(a, "--reps-big")) { if (parse_int(a, v, 1, &reps_big)) return 2; i++; }
        else if (!strcmp(a, "--warmup")) { if (parse_int(a, v, 0, &warmup)) return 2; i++; }
        else if (!strcmp(a, "--batch")) { if (parse_int(a, v, 1, &B)) return 2; i++; }
        else if (!strcmp(a, "--seq")) { if (parse_int(a, v, 1, &T)) return 2; i++; }
        else if (a[0] != '-') stories = a;
        else { fprintf(stderr, "bench_forward: unknown option %s (see --help)\n", a); return 2; }
        if (bad) { fprintf(stderr, "bench_forward: %s needs a value\n", a); return 2; }
    }
    if (models) {
        static const char *known[] = {"stories260K", "demo", "rand768", "rand512"};
        for (const char *p = models; *p;) {
            const char *e = strchr(p, ',');
            size_t len = e ? (size_t)(e - p) : strlen(p);
            int ok = 0;
            for (int k = 0; k < 4; k++) ok |= strlen(known[k]) == len && !strncmp(p, known[k], len);
            if (!ok) { fprintf(stderr, "bench_forward: --models: unknown model '%.*s' (stories260K, demo, rand768, rand512)\n", (int)len, p); return 2; }
            p += len + (e ? 1 : 0);
        }
    }
    if (reps_big < 0) reps_big = reps < 3 ? reps : 3;
    if (dump && !is_dir(dump) && mkdir(dump, 0755) && errno != EEXIST) {
        fprintf(stderr, "bench_forward: --dump: cannot create %s: %s\n", dump, strerror(errno));
        return 1;
    }

    result res[4];
    int nr = 0, failed = 0;
    memset(res, 0, sizeof res);

    if (want_model(models, "stories260K")) {
        if (!is_file(stories)) {
            fprintf(stderr, "bench_forward: the stories260K checkpoint %s is missing; pass its path (--model PATH), "
                            "or see ../shared/data/models/stories260K/SOURCE.md\n", stories);
            return 1;
        }
        evb_model *m = NULL;
        if (evb_model_load(stories, &m)) { fprintf(stderr, "bench_forward: %s\n", evb_last_error()); return 1; }
        failed |= run_model("stories260K", m, B, T, reps, warmup < 0 ? 2 : warmup, dump, &res[nr++]);
        evb_model_free(m);
    }
    if (want_model(models, "demo")) {
        char cfg[1200];
        snprintf(cfg, sizeof cfg, "%s/config.json", demo);
        evb_model *m = NULL;
        if (!is_file(cfg)) {
            result *x = &res[nr++];
            snprintf(x->name, sizeof x->name, "demo");
            x->skipped = 1;
            snprintf(x->note, sizeof x->note, "no model in %s", demo);
            fprintf(stderr, "bench_forward: skipping the demo model: %s has no config.json\n", demo);
        } else if (evb_model_load(demo, &m)) {
            fprintf(stderr, "bench_forward: %s\n", evb_last_error());
            return 1;
        } else {
            int big = evb_model_n_params(m) > 10000000;
            failed |= run_model("demo", m, B, T, big ? reps_big : reps, warmup >= 0 ? warmup : big ? 0 : 2, dump, &res[nr++]);
            evb_model_free(m);
        }
    }
    for (size_t k = 0; k < sizeof rand_specs / sizeof *rand_specs; k++) {
        const rand_spec *sp = &rand_specs[k];
        if (!want_model(models, sp->name)) continue;
        char dir[512];
        if (ensure_random(sp, rdir, dir, sizeof dir)) return 1;
        evb_model *m = NULL;
        if (evb_model_load(dir, &m)) { fprintf(stderr, "bench_forward: %s\n", evb_last_error()); return 1; }
        failed |= run_model(sp->name, m, B, T, reps_big, warmup >= 0 ? warmup : 0, dump, &res[nr++]);
        evb_model_free(m);
    }
    if (json) print_json(res, nr, B, T);
    else print_markdown(res, nr, B, T);
    return failed ? 1 : 0;
}
