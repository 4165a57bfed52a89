/* bf16.c -- BF16 projections through oneDNN's matmul primitive (see bf16.h).
 *
 * One CPU engine for the process. A primitive is made once per shape (K, N, bias or not, and M for a whole
 * slice of EVB_SLICE_ROWS rows; slices of other heights share one primitive made for any M, so that a
 * generation that grows its sequence a token at a time needs no new ones) and kept in a small table guarded
 * by a mutex. Primitives run with a caller-provided scratchpad (oneDNN's "user" mode), which makes concurrent
 * calls of one primitive safe, and every call runs inside an OpenMP parallel region, where oneDNN computes on
 * the calling thread alone. Weights are used where they lie, in nn.Linear layout
 * [N, K] (oneDNN's "ba" tag for a K x N matrix): memory-mapped checkpoints need no copy or reorder. */
#define _GNU_SOURCE
#include "models/bf16.h"
#include "models/blas.h"
#include "core/half.h"
#include "evobudget/evb_model.h"
#include "evobudget/evb_status.h"

#include <cpuid.h>
#include <dnnl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

// ---- the CPU ----

/* XGETBV(0): the register state the operating system saves (bits 5-7: AVX-512, 17-18: AMX tiles). */
static unsigned long long xcr0(void) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

const char *evb_bf16_missing(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return "this CPU reports no extended features (CPUID leaf 7)";
    int amx = (d >> 22) & 1;                /* AMX-BF16 */
    unsigned a1 = 0, b1, c1, d1;
    __get_cpuid_count(7, 1, &a1, &b1, &c1, &d1);
    int avx512bf16 = (a1 >> 5) & 1 && (b >> 16) & 1; /* AVX512-BF16 (and AVX512F) */
    if (!amx && !avx512bf16) return "this CPU has neither AVX512-BF16 nor AMX-BF16";
    unsigned a0 = 0, b0 = 0, c0 = 0, d0 = 0;
    __get_cpuid(1, &a0, &b0, &c0, &d0);
    if (!((c0 >> 27) & 1) || (xcr0() & 0xe6) != 0xe6) return "the operating system does not enable the AVX-512 registers";
    return NULL;
}

const char *evb_compute_missing(void) { return evb_bf16_missing(); }

evb_compute evb_compute_resolve(evb_compute c) {
    return c == EVB_COMPUTE_AUTO ? (evb_bf16_missing() ? EVB_COMPUTE_F32 : EVB_COMPUTE_BF16) : c;
}

const char *evb_compute_name(evb_compute c) {
    return c == EVB_COMPUTE_F32 ? "f32" : c == EVB_COMPUTE_BF16 ? "bf16" : "auto";
}

int evb_compute_parse(const char *s) {
    if (!s) return -1;
    if (strcmp(s, "auto") == 0) return EVB_COMPUTE_AUTO;
    if (strcmp(s, "f32") == 0) return EVB_COMPUTE_F32;
    if (strcmp(s, "bf16") == 0) return EVB_COMPUTE_BF16;
    return -1;
}

const char *evb_compute_kernel(void) { return evb_bf16_kernel(); }

// ---- conversions ----

void evb_bf16_from_f32(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = evb_bf16_round(src[i]);
}

void evb_bf16_to_f32_n(float *dst, const uint16_t *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = evb_bf16_value(src[i]);
}

// ---- oneDNN ----

typedef struct prim {
    int M, K, N, bias;
    dnnl_primitive_t p;
    dnnl_memory_desc_t src, wei, bia, dst, scratch;
    size_t scratch_bytes;
} prim;

enum { MAX_PRIMS = 256 };
/* The key of the primitive made for any number of rows (oneDNN's runtime dimension). */
enum { ANY_M = 0 };
static prim prims[MAX_PRIMS];
static int n_prims;
static pthread_mutex_t prims_lock = PTHREAD_MUTEX_INITIALIZER;
static dnnl_engine_t engine;
static dnnl_status_t engine_status = dnnl_success;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;

static void engine_init(void) { engine_status = dnnl_engine_create(&engine, dnnl_cpu, 0); }

enum { ROWS = EVB_SLICE_ROWS };

/* The primitive for a shape, made on first use; M is ROWS or ANY_M. NULL on failure, with the
 * message recorded. */
static const prim *get_prim(int M, int K, int N, int bias, int *status) {
    pthread_once(&engine_once, engine_init);
    if (engine_status != dnnl_success) { *status = EVB_RAISEF(EVB_EINVAL, "oneDNN: no CPU engine (status %d)", (int)engine_status); return NULL; }
    pthread_mutex_lock(&prims_lock);
    for (int i = 0; i < n_prims; i++)
        if (prims[i].M == M && prims[i].K == K && prims[i].N == N && prims[i].bias == bias) {
            pthread_mutex_unlock(&prims_lock);
            return &prims[i];
        }
    prim q = {M, K, N, bias, NULL, {0}, {0}, {0}, {0}, {0}, 0};
    dnnl_dims_t ds = {M == ROWS ? M : DNNL_RUNTIME_DIM_VAL, K}, dw = {K, N}, db = {1, N}, dd = {ds[0], N};
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_matmul_desc_t md;
    dnnl_status_t s = dnnl_memory_desc_init_by_tag(&q.src, 2, ds, dnnl_bf16, dnnl_ab);
    if (s == dnnl_success) s = dnnl_memory_desc_init_by_tag(&q.wei, 2, dw, dnnl_bf16, dnnl_ba);
    if (s == dnnl_success && bias) s = dnnl_memory_desc_init_by_tag(&q.bia, 2, db, dnnl_f32, dnnl_ab);
    if (s == dnnl_success) s = dnnl_memory_desc_init_by_tag(&q.dst, 2, dd, dnnl_f32, dnnl_ab);
    if (s == dnnl_success) s = dnnl_matmul_desc_init(&md, &q.src, &q.wei, bias ? &q.bia : NULL, &q.dst);
    if (s == dnnl_success) s = dnnl_primitive_attr_create(&attr);
    if (s == dnnl_success) s = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (s == dnnl_success) s = dnnl_primitive_desc_create(&pd, &md, attr, engine, NULL);
    if (s == dnnl_success) {
        q.scratch = *dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        q.scratch_bytes = dnnl_memory_desc_get_size(&q.scratch);
        s = dnnl_primitive_create(&q.p, pd);
    }
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    const prim *out = NULL;
    if (s != dnnl_success) *status = EVB_RAISEF(EVB_ENOMEM, "oneDNN: cannot make a BF16 matmul of %s x %d x %d (status %d)", M == ROWS ? "512" : "M", K, N, (int)s);
    else if (n_prims == MAX_PRIMS) {
        dnnl_primitive_destroy(q.p);
        *status = EVB_RAISEF(EVB_ENOMEM, "oneDNN: more than %d projection shapes", MAX_PRIMS);
    } else {
        prims[n_prims] = q;
        out = &prims[n_prims++];
    }
    pthread_mutex_unlock(&prims_lock);
    return out;
}

const char *evb_bf16_kernel(void) {
    static char name[96];
    pthread_once(&engine_once, engine_init);
    if (engine_status != dnnl_success) return "no oneDNN CPU engine";
    dnnl_memory_desc_t a, b, c;
    dnnl_dims_t da = {512, 2048}, db = {2048, 2048}, dc = {512, 2048};
    dnnl_matmul_desc_t md;
    dnnl_primitive_desc_t pd = NULL;
    const char *impl = NULL;
    if (dnnl_memory_desc_init_by_tag(&a, 2, da, dnnl_bf16, dnnl_ab) == dnnl_success &&
        dnnl_memory_desc_init_by_tag(&b, 2, db, dnnl_bf16, dnnl_ba) == dnnl_success &&
        dnnl_memory_desc_init_by_tag(&c, 2, dc, dnnl_f32, dnnl_ab) == dnnl_success &&
        dnnl_matmul_desc_init(&md, &a, &b, NULL, &c) == dnnl_success &&
        dnnl_primitive_desc_create(&pd, &md, NULL, engine, NULL) == dnnl_success)
        dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    snprintf(name, sizeof name, "%s", impl ? impl : "none (oneDNN has no BF16 matmul here)");
    if (pd) dnnl_primitive_desc_destroy(pd);
    return name;
}

/* One slice: rows [0, M) of x (already bfloat16 in xb) times W^T into out. */
static int run_slice(float *out, const uint16_t *xb, const uint16_t *W, const float *bias, int M, int K, int N) {
    int status = EVB_SUCCESS;
    const prim *q = get_prim(M == ROWS ? ROWS : ANY_M, K, N, bias != NULL, &status);
    if (!q) return status;
    /* the memory of a slice of M rows, for a primitive made for any M */
    dnnl_memory_desc_t src = q->src, dst = q->dst;
    dnnl_dims_t ds = {M, K}, dd = {M, N};
    if (q->M != ROWS && (dnnl_memory_desc_init_by_tag(&src, 2, ds, dnnl_bf16, dnnl_ab) != dnnl_success ||
                         dnnl_memory_desc_init_by_tag(&dst, 2, dd, dnnl_f32, dnnl_ab) != dnnl_success))
        return EVB_RAISEF(EVB_EINVAL, "oneDNN: cannot describe a slice of %d rows", M);
    static __thread void *scratch;
    static __thread size_t scratch_cap;
    static __thread dnnl_stream_t stream;
    if (q->scratch_bytes > scratch_cap) {
        free(scratch);
        scratch = aligned_alloc(64, (q->scratch_bytes + 63) & ~(size_t)63);
        scratch_cap = scratch ? q->scratch_bytes : 0;
        if (!scratch) return EVB_RAISEF(EVB_ENOMEM, "out of memory for a oneDNN scratchpad of %zu bytes", q->scratch_bytes);
    }
    if (!stream && dnnl_stream_create(&stream, engine, dnnl_stream_default_flags) != dnnl_success)
        return EVB_RAISEF(EVB_ENOMEM, "oneDNN: cannot make a stream");
    dnnl_memory_t ms = NULL, mw = NULL, mb = NULL, md = NULL, mp = NULL;
    dnnl_status_t s = dnnl_memory_create(&ms, &src, engine, (void *)xb);
    if (s == dnnl_success) s = dnnl_memory_create(&mw, &q->wei, engine, (void *)W);
    if (s == dnnl_success && bias) s = dnnl_memory_create(&mb, &q->bia, engine, (void *)bias);
    if (s == dnnl_success) s = dnnl_memory_create(&md, &dst, engine, out);
    if (s == dnnl_success) s = dnnl_memory_create(&mp, &q->scratch, engine, scratch);
    if (s == dnnl_success) {
        dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, ms}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_DST, md}, {DNNL_ARG_SCRATCHPAD, mp}, {DNNL_ARG_BIAS, mb}};
        s = dnnl_primitive_execute(q->p, stream, bias ? 5 : 4, args);
        if (s == dnnl_success) s = dnnl_stream_wait(stream);
    }
    dnnl_memory_t all[] = {ms, mw, mb, md, mp};
    for (int i = 0; i < 5; i++) if (all[i]) dnnl_memory_destroy(all[i]);
    if (s != dnnl_success) return EVB_RAISEF(EVB_EINVAL, "oneDNN: a BF16 matmul of %d x %d x %d failed (status %d)", M, K, N, (int)s);
    return EVB_SUCCESS;
}

int evb_matmul_wt_bf16(float *out, const float *x, uint16_t *xb, const uint16_t *W, const float *bias,
                       int M, int K, int N) {
    /* Fixed slices whatever the thread count (EVB_SLICE_ROWS); the region is entered even for one slice, so
     * that oneDNN always computes on the calling thread alone (same partition, same sums). */
    int chunks = (M + ROWS - 1) / ROWS, status = EVB_SUCCESS;
    #pragma omp parallel for schedule(static)
    for (int c = 0; c < chunks; c++) {
        int r0 = c * ROWS, r1 = r0 + ROWS < M ? r0 + ROWS : M;
        evb_bf16_from_f32(xb + (size_t)r0 * K, x + (size_t)r0 * K, (size_t)(r1 - r0) * K);
        int s = run_slice(out + (size_t)r0 * N, xb + (size_t)r0 * K, W, bias, r1 - r0, K, N);
        if (s) {
            #pragma omp critical(evb_bf16_status)
            status = status ? status : s;
        }
    }
    return status;
}

void evb_matmul_wt_bf16_naive(float *out, const float *x, const uint16_t *W, const float *bias, int M, int K, int N) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double acc = 0.0;
            for (int k = 0; k < K; k++)
                acc += (double)evb_bf16_value(evb_bf16_round(x[(size_t)i * K + k])) * evb_bf16_value(W[(size_t)j * K + k]);
            out[(size_t)i * N + j] = (float)acc + (bias ? bias[j] : 0.0f);
        }
}
