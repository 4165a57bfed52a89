/* bench_gemm.c -- GEMM rates of the projection shapes: OpenBLAS sgemm against oneDNN matmul, f32 and bf16.
 *
 * For each shape M x K x N it times out[M, N] = x[M, K] . W[N, K]^T, W stored as nn.Linear and checkpoints
 * store it (N rows of K), three ways:
 *   sgemm      cblas_sgemm(RowMajor, NoTrans, Trans), as the engine calls it (models/blas.c): OpenBLAS kept
 *              single-threaded, the M rows cut into slices of 512 rows shared out over the OpenMP threads;
 *   dnnl_f32   one oneDNN matmul primitive, f32 source, weights and destination;
 *   dnnl_bf16  one oneDNN matmul primitive, bf16 source and weights, f32 destination.
 * The oneDNN weights are a K x N descriptor with the 'ba' tag, i.e. the N x K rows as they are stored; oneDNN
 * runs on its own OpenMP threads. For each it prints GFLOP/s (2 M K N FLOP; median of --reps timed runs after
 * one warm-up) and, for oneDNN, the implementation it chose (e.g. brg:avx512_core_amx_bf16).
 *
 * Shapes: by default the projections of the two scale-benchmark models (bench/make_checkpoint.py) at M = 4096
 * and 512 rows -- q/o (D x D), k/v (D -> kv D), gate/up (D -> F), down (F -> D), classifier (D -> V) of
 * llama-3.2-1b (D 2048, kv D 512, F 8192, V 128256) and d768 (D 768, kv D 768, F 2048, V 32000); --shapes
 * gives others as MxKxN[:label],... The 4096-row llama-3.2-1b classifier alone is 2.2 TFLOP per call.
 *
 * Threads: OMP_NUM_THREADS, and 1 when it is not set. OPENBLAS_CORETYPE is honoured as OpenBLAS reads it;
 * the kernels in use are printed (bench/scale.sh exports the ones evobudget picks on this CPU).
 *
 * Usage: bench_gemm [--shapes MxKxN[:label],...] [--reps R] [--only sgemm,dnnl_f32,dnnl_bf16] [--list] [--json] */
#define _GNU_SOURCE
#include "bench/bench_util.h"
#include <cblas.h>
#include <dnnl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define MAX_SHAPES 64
#define MAX_REPS 100
#define SLICE_ROWS 512        /* models/blas.c: evb_matmul_wt's fixed row slices */

enum { SGEMM, DNNL_F32, DNNL_BF16, N_KINDS };
static const char *kind_name[N_KINDS] = {"sgemm", "dnnl_f32", "dnnl_bf16"};

typedef struct {
    long M, K, N;
    char label[64];
    double gflops[N_KINDS];   /* < 0: not run */
    char impl[N_KINDS][64];
} shape;

/* Deterministic fill in [-0.05, 0.05): the values do not matter for the rate, but denormals and NaNs would. */
static void fill(float *a, size_t n, uint64_t seed) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        a[i] = (float)((double)(s >> 40) / (double)(1ull << 24) - 0.5) * 0.1f;
    }
}

/* float32 -> BF16 bits, round to nearest even (finite inputs). */
static void to_bf16(uint16_t *out, const float *in, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &in[i], 4);
        u += 0x7FFFu + ((u >> 16) & 1u);
        out[i] = (uint16_t)(u >> 16);
    }
}

static void sgemm_sliced(float *out, const float *x, const float *W, long M, long K, long N) {
    long chunks = (M + SLICE_ROWS - 1) / SLICE_ROWS;
    #pragma omp parallel for schedule(static) if (chunks > 1)
    for (long c = 0; c < chunks; c++) {
        long r0 = c * SLICE_ROWS, r1 = r0 + SLICE_ROWS < M ? r0 + SLICE_ROWS : M;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(r1 - r0), (int)N, (int)K, 1.0f,
                    x + (size_t)r0 * K, (int)K, W, (int)K, 0.0f, out + (size_t)r0 * N, (int)N);
    }
}

static const char *dnnl_status_name(dnnl_status_t s) {
    switch (s) {
    case dnnl_success: return "success";
    case dnnl_out_of_memory: return "out of memory";
    case dnnl_invalid_arguments: return "invalid arguments";
    case dnnl_unimplemented: return "unimplemented (no implementation for this data type on this CPU)";
    case dnnl_iterator_ends: return "iterator ends";
    case dnnl_runtime_error: return "runtime error";
    case dnnl_not_required: return "not required";
    default: return "unknown status";
    }
}

#define DNNL_CHECK(call)                                                                                   \
    do {                                                                                                   \
        dnnl_status_t st_ = (call);                                                                        \
        if (st_ != dnnl_success) {                                                                         \
            fprintf(stderr, "bench_gemm: %s failed: %s (status %d)\n", #call, dnnl_status_name(st_), (int)st_); \
            goto fail;                                                                                     \
        }                                                                                                  \
    } while (0)

typedef struct {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
} dnnl_ctx;

/* Times one oneDNN matmul: src [M, K] (row-major), weights K x N over N x K rows ('ba'), dst [M, N] f32.
 * x and W are the f32 data; bf16 converts them first (not timed). Returns 0, 2 when oneDNN has no
 * implementation for this data type here, or 1 on any other oneDNN error. */
static int time_dnnl(dnnl_ctx *c, int bf16, const float *x, const float *W, float *out, long M, long K, long N,
                     int reps, double *gflops, char *impl, size_t impl_size) {
    dnnl_memory_desc_t src_md, wei_md, dst_md;
    dnnl_matmul_desc_t op;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    dnnl_memory_t src_m = NULL, wei_m = NULL, dst_m = NULL;
    uint16_t *xb = NULL, *Wb = NULL;
    int rc = 1;
    dnnl_data_type_t in_dt = bf16 ? dnnl_bf16 : dnnl_f32;
    dnnl_dims_t sd = {M, K}, wd = {K, N}, dd = {M, N};
    const void *xs = x, *ws = W;
    if (bf16) {
        xb = malloc((size_t)M * K * sizeof *xb);
        Wb = malloc((size_t)N * K * sizeof *Wb);
        if (!xb || !Wb) { fprintf(stderr, "bench_gemm: out of memory for the bf16 copies of %ldx%ldx%ld\n", M, K, N); goto done; }
        to_bf16(xb, x, (size_t)M * K);
        to_bf16(Wb, W, (size_t)N * K);
        xs = xb; ws = Wb;
    }
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&src_md, 2, sd, in_dt, dnnl_ab));
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&wei_md, 2, wd, in_dt, dnnl_ba));
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&dst_md, 2, dd, dnnl_f32, dnnl_ab));
    DNNL_CHECK(dnnl_matmul_desc_init(&op, &src_md, &wei_md, NULL, &dst_md));
    dnnl_status_t st = dnnl_primitive_desc_create(&pd, &op, NULL, c->engine, NULL);
    if (st == dnnl_unimplemented) {   /* e.g. bf16 on a CPU without AVX512: reported as absent, not an error */
        fprintf(stderr, "bench_gemm: oneDNN has no %s matmul on this CPU\n", bf16 ? "bf16" : "f32");
        snprintf(impl, impl_size, "unimplemented");
        rc = 2;
        goto done;
    }
    DNNL_CHECK(st);
    const char *name = NULL;
    DNNL_CHECK(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &name));
    snprintf(impl, impl_size, "%s", name ? name : "?");
    DNNL_CHECK(dnnl_primitive_create(&prim, pd));
    DNNL_CHECK(dnnl_memory_create(&src_m, &src_md, c->engine, (void *)xs));
    DNNL_CHECK(dnnl_memory_create(&wei_m, &wei_md, c->engine, (void *)ws));
    DNNL_CHECK(dnnl_memory_create(&dst_m, &dst_md, c->engine, out));
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, src_m}, {DNNL_ARG_WEIGHTS, wei_m}, {DNNL_ARG_DST, dst_m}};
    double t[MAX_REPS];
    for (int r = -1; r < reps; r++) {
        double t0 = bench_now();
        DNNL_CHECK(dnnl_primitive_execute(prim, c->stream, 3, args));
        DNNL_CHECK(dnnl_stream_wait(c->stream));
        if (r >= 0) t[r] = bench_now() - t0;
    }
    qsort(t, (size_t)reps, sizeof *t, bench_cmp_double);
    *gflops = 2.0 * (double)M * (double)K * (double)N / t[reps / 2] / 1e9;
    rc = 0;
    goto done;
fail:
    rc = 1;
done:
    if (src_m) dnnl_memory_destroy(src_m);
    if (wei_m) dnnl_memory_destroy(wei_m);
    if (dst_m) dnnl_memory_destroy(dst_m);
    if (prim) dnnl_primitive_destroy(prim);
    if (pd) dnnl_primitive_desc_destroy(pd);
    free(xb);
    free(Wb);
    return rc;
}

static double time_sgemm(const float *x, const float *W, float *out, long M, long K, long N, int reps) {
    double t[MAX_REPS];
    for (int r = -1; r < reps; r++) {
        double t0 = bench_now();
        sgemm_sliced(out, x, W, M, K, N);
        if (r >= 0) t[r] = bench_now() - t0;
    }
    qsort(t, (size_t)reps, sizeof *t, bench_cmp_double);
    return 2.0 * (double)M * (double)K * (double)N / t[reps / 2] / 1e9;
}

/* Max |a - b| / max |b| over a sample of entries: a check that the three computed the same product. */
static double rel_diff(const float *a, const float *b, size_t n) {
    double d = 0, m = 0;
    size_t step = n / 4096 ? n / 4096 : 1;
    for (size_t i = 0; i < n; i += step) {
        d = fmax(d, fabs((double)a[i] - (double)b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return m > 0 ? d / m : d;
}

static int add_shape(shape *s, int *n, long M, long K, long N, const char *label) {
    for (int i = 0; i < *n; i++)
        if (s[i].M == M && s[i].K == K && s[i].N == N) return 0;   /* the same product twice: keep the first label */
    if (*n == MAX_SHAPES) { fprintf(stderr, "bench_gemm: more than %d shapes\n", MAX_SHAPES); return 1; }
    shape *p = &s[(*n)++];
    memset(p, 0, sizeof *p);
    p->M = M; p->K = K; p->N = N;
    snprintf(p->label, sizeof p->label, "%s", label);
    for (char *c = p->label; *c; c++)
        if (*c == '"' || *c == '\\' || (unsigned char)*c < 32) *c = '_';   /* printed inside JSON strings */
    for (int k = 0; k < N_KINDS; k++) p->gflops[k] = -1;
    return 0;
}

static int default_shapes(shape *s, int *n) {
    static const struct { const char *name; long D, kvD, F, V; } models[] = {
        {"llama-3.2-1b", 2048, 512, 8192, 128256},
        {"d768", 768, 768, 2048, 32000},
    };
    static const long rows[] = {4096, 512};
    for (size_t r = 0; r < sizeof rows / sizeof *rows; r++)
        for (size_t m = 0; m < sizeof models / sizeof *models; m++) {
            long M = rows[r], D = models[m].D;
            char l[64];
            int bad = 0;
            snprintf(l, sizeof l, "%s %s", models[m].name, models[m].kvD == D ? "q/k/v/o" : "q/o");
            bad |= add_shape(s, n, M, D, D, l);
            snprintf(l, sizeof l, "%s k/v", models[m].name);        bad |= add_shape(s, n, M, D, models[m].kvD, l);
            snprintf(l, sizeof l, "%s gate/up", models[m].name);    bad |= add_shape(s, n, M, D, models[m].F, l);
            snprintf(l, sizeof l, "%s down", models[m].name);       bad |= add_shape(s, n, M, models[m].F, D, l);
            snprintf(l, sizeof l, "%s classifier", models[m].name); bad |= add_shape(s, n, M, D, models[m].V, l);
            if (bad) return 1;
        }
    return 0;
}

/* "MxKxN[:label],..." */
static int parse_shapes(const char *list, shape *s, int *n) {
    const char *p = list;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char item[128], *colon, *e1 = NULL, *e2 = NULL, *e3 = NULL;
        if (len == 0 || len >= sizeof item) { fprintf(stderr, "bench_gemm: --shapes: bad item '%.*s' (MxKxN[:label])\n", (int)len, p); return 1; }
        memcpy(item, p, len);
        item[len] = 0;
        colon = strchr(item, ':');
        if (colon) *colon = 0;
        long M = strtol(item, &e1, 10), K = *e1 == 'x' ? strtol(e1 + 1, &e2, 10) : 0, N = 0;
        if (K > 0 && *e2 == 'x') N = strtol(e2 + 1, &e3, 10);
        if (M <= 0 || K <= 0 || N <= 0 || *e3 || M > (1L << 20) || K > (1L << 20) || N > (1L << 20)) {
            fprintf(stderr, "bench_gemm: --shapes: '%s' is not MxKxN with sizes in 1..%ld\n", item, 1L << 20);
            return 1;
        }
        char l[64];
        snprintf(l, sizeof l, "%.63s", colon ? colon + 1 : item);
        if (add_shape(s, n, M, K, N, l)) return 1;
        p += len + (end ? 1 : 0);
    }
    if (*n == 0) { fprintf(stderr, "bench_gemm: --shapes: no shape given\n"); return 1; }
    return 0;
}

static void usage(FILE *f) {
    fprintf(f,
        "usage: bench_gemm [--shapes MxKxN[:label],...] [--reps R] [--only LIST] [--list] [--json]\n"
        "  GFLOP/s of out[M,N] = x[M,K] . W[N,K]^T: OpenBLAS sgemm as the engine calls it, oneDNN matmul f32,\n"
        "  oneDNN matmul bf16 inputs / f32 output (weights in the 'ba' layout).\n"
        "  --shapes LIST  shapes to time (default: the projections of llama-3.2-1b and d768 at M = 4096 and 512)\n"
        "  --reps R       timed runs per shape and kind, after one warm-up; the median is reported (default 5)\n"
        "  --only LIST    comma-separated subset of sgemm,dnnl_f32,dnnl_bf16 (default: all three)\n"
        "  --list         print the shapes and exit\n"
        "  --json         one JSON object on stdout\n"
        "Threads: OMP_NUM_THREADS (1 when unset). OPENBLAS_CORETYPE chooses OpenBLAS's kernels.\n");
}

int main(int argc, char **argv) {
    static shape shapes[MAX_SHAPES];
    int n = 0, reps = 5, json = 0, list_only = 0, want[N_KINDS] = {1, 1, 1};
    const char *list = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!strcmp(a, "--json")) { json = 1; continue; }
        if (!strcmp(a, "--list")) { list_only = 1; continue; }
        if (i + 1 >= argc && (!strcmp(a, "--shapes") || !strcmp(a, "--reps") || !strcmp(a, "--only"))) {
            fprintf(stderr, "bench_gemm: %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "--shapes")) list = argv[++i];
        else if (!strcmp(a, "--reps")) {
            char *end;
            long r = strtol(argv[++i], &end, 10);
            if (*end || r < 1 || r > MAX_REPS) { fprintf(stderr, "bench_gemm: --reps needs an integer in 1..%d\n", MAX_REPS); return 2; }
            reps = (int)r;
        } else if (!strcmp(a, "--only")) {
            const char *p = argv[++i];
            memset(want, 0, sizeof want);
            while (*p) {
                size_t len = strcspn(p, ",");
                int k = 0;
                while (k < N_KINDS && !(strlen(kind_name[k]) == len && !strncmp(p, kind_name[k], len))) k++;
                if (k == N_KINDS) { fprintf(stderr, "bench_gemm: --only: unknown kind '%.*s' (sgemm, dnnl_f32, dnnl_bf16)\n", (int)len, p); return 2; }
                want[k] = 1;
                p += len + (p[len] == ',');
            }
        } else { fprintf(stderr, "bench_gemm: unknown option %s (see --help)\n", a); return 2; }
    }
    if (list ? parse_shapes(list, shapes, &n) : default_shapes(shapes, &n)) return list ? 2 : 1;
    if (list_only) {
        for (int i = 0; i < n; i++)
            printf("%ldx%ldx%ld %s (%.3g GFLOP)\n", shapes[i].M, shapes[i].K, shapes[i].N, shapes[i].label,
                   2.0 * (double)shapes[i].M * (double)shapes[i].K * (double)shapes[i].N / 1e9);
        return 0;
    }

#ifdef _OPENMP
    const char *env = getenv("OMP_NUM_THREADS");
    if (!env || !*env) omp_set_num_threads(1);
#endif
    openblas_set_num_threads(1);
    int nth = bench_threads();
    const dnnl_version_t *ver = dnnl_version();

    dnnl_ctx ctx = {0};
    if (want[DNNL_F32] || want[DNNL_BF16]) {
        dnnl_status_t st = dnnl_engine_create(&ctx.engine, dnnl_cpu, 0);
        if (st == dnnl_success) st = dnnl_stream_create(&ctx.stream, ctx.engine, dnnl_stream_default_flags);
        if (st != dnnl_success) { fprintf(stderr, "bench_gemm: cannot create a oneDNN CPU engine and stream: %s\n", dnnl_status_name(st)); return 1; }
    }
    fprintf(stderr, "bench_gemm: %d shape(s), %d thread(s), OpenBLAS %s kernels, oneDNN %d.%d.%d; 1 warm-up + %d timed run(s) each\n",
            n, nth, openblas_get_corename(), ver->major, ver->minor, ver->patch, reps);
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        shape *s = &shapes[i];
        size_t nx = (size_t)s->M * s->K, nw = (size_t)s->N * s->K, no = (size_t)s->M * s->N;
        float *x = malloc(nx * sizeof *x), *W = malloc(nw * sizeof *W);
        float *ref = malloc(no * sizeof *ref), *tmp = malloc(no * sizeof *tmp);   /* first kind's result, the others' */
        if (!x || !W || !ref || !tmp) {
            fprintf(stderr, "bench_gemm: out of memory for %ldx%ldx%ld (%.2f GiB)\n", s->M, s->K, s->N,
                    (double)(nx + nw + 2 * no) * 4 / (1 << 30));
            rc = 1;
        } else {
            fill(x, nx, 2 * (uint64_t)i + 1);
            fill(W, nw, 2 * (uint64_t)i + 2);
            int first = -1;
            for (int k = 0; k < N_KINDS && !rc; k++) {
                if (!want[k]) continue;
                float *o = first < 0 ? ref : tmp;
                if (k == SGEMM) s->gflops[k] = time_sgemm(x, W, o, s->M, s->K, s->N, reps);
                else rc = time_dnnl(&ctx, k == DNNL_BF16, x, W, o, s->M, s->K, s->N, reps, &s->gflops[k], s->impl[k], sizeof s->impl[k]);
                if (rc == 2) { rc = 0; continue; }   /* left out: gflops stays < 0 */
                if (rc) break;
                if (first < 0) { first = k; continue; }
                /* The kinds must agree: f32 to rounding, bf16 to its 8-bit mantissa (inputs rounded, f32 sums). */
                double d = rel_diff(o, ref, no), tol = k == DNNL_BF16 ? 5e-2 : 1e-4;
                if (d > tol) {
                    fprintf(stderr, "bench_gemm: %ldx%ldx%ld: %s differs from %s by %.3g of the largest entry (tolerance %.0e)\n",
                            s->M, s->K, s->N, kind_name[k], kind_name[first], d, tol);
                    rc = 1;
                }
            }
            if (!rc && !json) fprintf(stderr, "bench_gemm: %s %ldx%ldx%ld done\n", s->label, s->M, s->K, s->N);
        }
        free(x);
        free(W);
        free(ref);
        free(tmp);
    }
    if (ctx.stream) dnnl_stream_destroy(ctx.stream);
    if (ctx.engine) dnnl_engine_destroy(ctx.engine);
    if (rc) return 1;

    if (json) {
        printf("{\"threads\":%d,\"reps\":%d,\"openblas_core\":\"%s\",\"dnnl_version\":\"%d.%d.%d\",\"shapes\":[",
               nth, reps, openblas_get_corename(), ver->major, ver->minor, ver->patch);
        for (int i = 0; i < n; i++) {
            shape *s = &shapes[i];
            printf("%s\n {\"label\":\"%s\",\"M\":%ld,\"K\":%ld,\"N\":%ld,\"gflop\":%.6g", i ? "," : "", s->label,
                   s->M, s->K, s->N, 2.0 * (double)s->M * (double)s->K * (double)s->N / 1e9);
            for (int k = 0; k < N_KINDS; k++) {
                if (s->gflops[k] < 0) continue;
                printf(",\"%s_gflops\":%.2f", kind_name[k], s->gflops[k]);
                if (k != SGEMM) printf(",\"%s_impl\":\"%s\"", kind_name[k], s->impl[k]);
            }
            printf("}");
        }
        printf("\n]}\n");
        return 0;
    }
    printf("## GEMM rates, %d thread(s): out[M,N] = x[M,K] . W[N,K]^T, GFLOP/s (median of %d)\n\n", nth, reps);
    printf("OpenBLAS %s kernels (sliced as the engine calls it); oneDNN %d.%d.%d.\n\n", openblas_get_corename(),
           ver->major, ver->minor, ver->patch);
    printf("| shape | M x K x N | sgemm | oneDNN f32 | oneDNN bf16 | bf16 / sgemm | oneDNN f32 impl | oneDNN bf16 impl |\n");
    printf("|---|---|---:|---:|---:|---:|---|---|\n");
    for (int i = 0; i < n; i++) {
        shape *s = &shapes[i];
        char v[N_KINDS][32], ratio[32] = "-";
        for (int k = 0; k < N_KINDS; k++) {
            if (s->gflops[k] < 0) snprintf(v[k], sizeof v[k], "-");
            else snprintf(v[k], sizeof v[k], "%.1f", s->gflops[k]);
        }
        if (s->gflops[SGEMM] > 0 && s->gflops[DNNL_BF16] > 0) snprintf(ratio, sizeof ratio, "%.2f", s->gflops[DNNL_BF16] / s->gflops[SGEMM]);
        printf("| %s | %ld x %ld x %ld | %s | %s | %s | %s | %s | %s |\n", s->label, s->M, s->K, s->N, v[SGEMM],
               v[DNNL_F32], v[DNNL_BF16], ratio, s->impl[DNNL_F32][0] ? s->impl[DNNL_F32] : "-",
               s->impl[DNNL_BF16][0] ? s->impl[DNNL_BF16] : "-");
    }
    return 0;
}
