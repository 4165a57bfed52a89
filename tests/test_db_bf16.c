#define _GNU_SOURCE
/* test_db_bf16.c -- levels stored in the checkpoint's dtype, on the demo model saved as BF16:
 *   - a database built from the BF16 checkpoint stores its sparse levels' kept values in bfloat16 (payload
 *     24 + mask + 2 nnz bytes, header version 2, dtype bf16), and evb_db_load gives back exactly the
 *     checkpoint's values that magnitude pruning keeps; from the float32 checkpoint they stay float32;
 *   - the BF16 checkpoint held as BF16 (another compute path, one fingerprint) builds the same files;
 *   - SparseGPT's updated values are stored rounded to bfloat16, and the error recorded is the stored
 *     level's;
 *   - evb_db_load16 equals evb_db_load rounded to bfloat16 (the reference path), bit for bit, for levels
 *     stored in float32, bfloat16 and float16 and for quantized ones; the bfloat16 level cache holds those
 *     bits;
 *   - evb_db_put_sparse rounds values to the dtype asked, drops values that vanish in it (params_kept counts
 *     what is stored) and stores a level with a value beyond float16's range in float32. */
#include "testing.h"
#include "fixtures.h"
#include "evobudget/evb_calib.h"
#include "evobudget/evb_compress.h"
#include "evobudget/evb_db.h"
#include "evobudget/evb_model.h"
#include "evobudget/evb_status.h"
#include "evobudget/evb_text.h"
#include "core/half.h"

#include <sys/stat.h>

#define DEMO EVB_SOURCE_DIR "/assets/demo"
#define MFP "00000000000000aa"
#define CFP "00000000000000bb"

static size_t level_size(const evb_db_entry *e) { return (size_t)e->rows * e->cols; }

/* 1 when evb_db_load16 of level i is evb_db_load's values rounded to bfloat16, bit for bit. */
static int load16_matches(const evb_db *db, int i) {
    evb_db_entry e = evb_db_get(db, i);
    size_t n = level_size(&e);
    float *W = malloc(sizeof(float) * n);
    uint16_t *H = malloc(sizeof(uint16_t) * n);
    int ok = W && H && evb_db_load(db, i, W) == 0 && evb_db_load16(db, i, H) == 0;
    for (size_t k = 0; ok && k < n; k++) ok = H[k] == evb_bf16_round(W[k]);
    free(W); free(H);
    return ok;
}

/* Levels whose load16 matches the reference, and levels the bfloat16 cache holds with the same bits. */
static void check_load16(const evb_db *db, const char *what) {
    int n = evb_db_count(db), same = 0, cached = 0;
    evb_level_cache *c = NULL;
    evb_level_cache_alloc_as(db, (size_t)1 << 20, 1, &c);
    for (int i = 0; i < n; i++) {
        same += load16_matches(db, i);
        evb_db_entry e = evb_db_get(db, i);
        uint16_t *H = malloc(sizeof(uint16_t) * level_size(&e));
        const uint16_t *h = NULL;
        cached += c && evb_level_cache_get16(c, i, &h) == 0 && evb_db_load16(db, i, H) == 0 &&
                  memcmp(h, H, sizeof(uint16_t) * level_size(&e)) == 0;
        if (h) evb_level_cache_release(c, i);
        free(H);
    }
    evb_level_cache_free(c);
    EVB_CHECK(n > 0 && same == n && cached == n, "%s: load16 equals load rounded to bfloat16 for %d of %d levels, "
              "and the bfloat16 cache holds those bits for %d", what, same, n, cached);
}

/* Random calibration windows (magnitude and RTN need none, SparseGPT does; any tokens will do). */
static int calib_of(const evb_model *m, evb_windows *w, evb_calib **c) {
    int32_t tok[512];
    unsigned seed = 5;
    for (int i = 0; i < 512; i++) tok[i] = (int32_t)(rand_r(&seed) % m->config.vocab_size);
    int st = evb_windows_sample(tok, 512, 32, 1, 4, 1, w);
    return st ? st : evb_calib_collect(m, w, 4, c);
}

enum { UNITS = EVB_LINEAR_COUNT }; /* the first block's units: every shape of the model */

/* Builds magnitude at 0.5 and RTN 4-bit (group size 64) of the first block into a fresh database dir. */
static int build_levels(const evb_model *m, const evb_calib *c, const char *dir) {
    evb_db *db;
    int st = evb_db_open(dir, MFP, CFP, 1, &db), built = 0;
    evb_db_entry sparse[UNITS] = {{0}}, quant[UNITS] = {{0}};
    for (int u = 0; u < UNITS; u++) {
        sparse[u].unit = quant[u].unit = u;
        sparse[u].sparsity = 0.5; quant[u].bits = 4;
    }
    evb_level_grid g = {0};
    g.group_size = 64;
    if (!st) st = evb_db_build_entries(db, m, c, evb_method_find("magnitude"), &g, sparse, UNITS, &built);
    if (!st) st = evb_db_build_entries(db, m, c, evb_method_find("rtn"), &g, quant, UNITS, &built);
    evb_db_close(db);
    return st;
}

/* The size of dir/name and its first 8 bytes (magic and version word); 0 when it cannot be read. */
static size_t payload_head(const char *dir, const char *name, uint8_t head[8]) {
    char path[1200];
    struct stat sb;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    size_t got = f ? fread(head, 1, 8, f) : 0;
    if (f) fclose(f);
    return got == 8 && stat(path, &sb) == 0 ? (size_t)sb.st_size : 0;
}

/* The sparse levels of db: all stored in dtype, each payload of 24 + mask + value bytes, header version 2
 * and dtype; their total bytes in *bytes. */
static int sparse_stored_as(const evb_db *db, int dtype, const char *dir, double *bytes) {
    int ok = 1, n_sparse = 0;
    *bytes = 0;
    for (int i = 0; i < evb_db_count(db); i++) {
        evb_db_entry e = evb_db_get(db, i);
        if (e.kind != EVB_LEVEL_SPARSE) { ok &= e.dtype == EVB_DB_F32; continue; }
        uint8_t p[8];
        size_t n = level_size(&e), size = payload_head(dir, e.file, p), vs = dtype == EVB_DB_F32 ? 4 : 2;
        ok &= e.dtype == dtype && size == e.bytes && e.bytes == 24 + (n + 7) / 8 + vs * (size_t)e.params_kept &&
              e.bits_stored == (double)n + 8.0 * vs * e.params_kept && p[4] == 2 && p[5] == 0 && p[6] == dtype && p[7] == 0;
        *bytes += (double)e.bytes;
        n_sparse++;
    }
    return ok && n_sparse > 0;
}

/* Every magnitude level of db is the dense weight of m pruned by evb_prune_magnitude, exactly. */
static int magnitude_exact(const evb_db *db, const evb_model *m) {
    int ok = 1, seen = 0;
    for (int i = 0; i < evb_db_count(db); i++) {
        evb_db_entry e = evb_db_get(db, i);
        if (e.kind != EVB_LEVEL_SPARSE) continue;
        size_t n = level_size(&e);
        float *W = malloc(sizeof(float) * n), *R = malloc(sizeof(float) * n);
        evb_model_dense_f32(m, e.unit, R);
        evb_sparsity sp = {e.sparsity, 0, 0, 0};
        ok &= evb_prune_magnitude(R, e.rows, e.cols, sp) == 0 && evb_db_load(db, i, W) == 0 && memcmp(W, R, sizeof(float) * n) == 0;
        free(W); free(R);
        seen++;
    }
    return ok && seen == UNITS;
}

static void test_built(void) {
    char *dir = fixture_tmpdir(), bf[1100], d32[1100], d16[1100], dsg[1100];
    snprintf(bf, sizeof bf, "%s/bf16", dir);
    snprintf(d32, sizeof d32, "%s/db32", dir);
    snprintf(d16, sizeof d16, "%s/db16", dir);
    snprintf(dsg, sizeof dsg, "%s/dbsg", dir);
    evb_model *m32 = NULL, *mb = NULL;
    int st = evb_model_load_as(DEMO, EVB_COMPUTE_F32, &m32);
    if (!st) st = evb_model_save(m32, bf, "BF16");
    if (!st) st = evb_model_load_as(bf, EVB_COMPUTE_F32, &mb);
    EVB_CHECK(st == 0 && strcmp(mb->config.dtype, "BF16") == 0 && mb->compute == EVB_COMPUTE_F32,
              "the demo model saved as BF16 loads held in float32, dtype %s (%s)", mb ? mb->config.dtype : "-", st ? evb_last_error() : "ok");
    if (st) { evb_model_free(m32); fixture_rmdir(dir); free(dir); return; }
    evb_windows w = {0};
    evb_calib *c = NULL;
    st = calib_of(mb, &w, &c);
    EVB_CHECK(st == 0, "calibration statistics of 4 random windows (%s)", st ? evb_last_error() : "ok");

    /* The BF16 checkpoint: bfloat16 values, the checkpoint's own. */
    double bytes16 = 0, bytes32 = 0;
    evb_db *db = NULL;
    st = build_levels(mb, c, d16);
    if (!st) st = evb_db_open(d16, MFP, CFP, 0, &db);
    EVB_CHECK(st == 0 && sparse_stored_as(db, EVB_DB_BF16, d16, &bytes16),
              "from the BF16 checkpoint: every sparse level stores bfloat16 values (24 + mask + 2 nnz bytes, header "
              "version 2, dtype bf16), quantized ones float32 scales (%s)", st ? evb_last_error() : "ok");
    EVB_CHECK(db && magnitude_exact(db, mb), "its magnitude levels load as the checkpoint's own values, exactly");
    if (db) check_load16(db, "BF16 checkpoint, magnitude and RTN");
    evb_db_close(db); db = NULL;

    /* The float32 checkpoint: float32 values. */
    evb_windows w32 = {0};
    evb_calib *c32 = NULL;
    st = calib_of(m32, &w32, &c32);
    if (!st) st = build_levels(m32, c32, d32);
    if (!st) st = evb_db_open(d32, MFP, CFP, 0, &db);
    EVB_CHECK(st == 0 && sparse_stored_as(db, EVB_DB_F32, d32, &bytes32) && magnitude_exact(db, m32),
              "from the float32 checkpoint: float32 values (24 + mask + 4 nnz bytes), exactly the pruned weights (%s)", st ? evb_last_error() : "ok");
    if (db) check_load16(db, "F32 checkpoint, magnitude and RTN");
    evb_db_close(db); db = NULL;
    evb_calib_free(c32); evb_windows_free(&w32);
    printf("sparse payload bytes at 50%%: bfloat16 %.0f, float32 %.0f (%.3f)\n", bytes16, bytes32, bytes16 / bytes32);
    EVB_CHECK(bytes16 > 0 && bytes16 / bytes32 < 0.55, "bfloat16 values: %.3f of the float32 levels' bytes (1.125 / 2.125 = 0.529 at 50%%)",
              bytes16 / bytes32);

    /* One fingerprint for both compute paths: the BF16 checkpoint held as BF16, with its own calibration
     * statistics (taken with float32 products), builds the same files, recorded errors included. */
    if (evb_compute_missing()) printf("note: %s: the BF16-held build is not compared here\n", evb_compute_missing());
    else {
        evb_model *m16 = NULL;
        evb_windows w16 = {0};
        evb_calib *c16 = NULL;
        char same16[1100];
        snprintf(same16, sizeof same16, "%s/db16b", dir);
        st = evb_model_load_as(bf, EVB_COMPUTE_BF16, &m16);
        if (!st) st = calib_of(m16, &w16, &c16);
        if (!st) st = build_levels(m16, c16, same16);
        evb_calib_free(c16);
        evb_windows_free(&w16);
        EVB_CHECK(st == 0 && fixture_same_files(d16, same16), "the BF16 checkpoint held as BF16 builds the same files as held in float32 (%s)",
                  st ? evb_last_error() : "");
        evb_model_free(m16);
    }

    /* SparseGPT: updated values rounded to bfloat16, the recorded error the stored level's. */
    evb_db_entry keys[3] = {{0}};
    for (int k = 0; k < 3; k++) { keys[k].unit = 2 * k; keys[k].sparsity = 0.5; }
    evb_level_grid g = {0};
    int built = 0;
    st = evb_db_open(dsg, MFP, CFP, 1, &db);
    if (!st) st = evb_db_build_entries(db, mb, c, evb_method_find("sparsegpt"), &g, keys, 3, &built);
    int ok = st == 0 && built == 3 && evb_db_count(db) == 3, updated = 0;
    for (int i = 0; ok && i < 3; i++) {
        evb_db_entry e = evb_db_get(db, i);
        size_t n = level_size(&e);
        float *W = malloc(sizeof(float) * n), *D = malloc(sizeof(float) * n);
        ok = e.dtype == EVB_DB_BF16 && evb_db_load(db, i, W) == 0;
        evb_model_dense_f32(mb, e.unit, D);
        for (size_t k = 0; ok && k < n; k++) {
            ok = evb_bf16_value(evb_bf16_round(W[k])) == W[k];
            updated += W[k] != 0.0f && W[k] != D[k];
        }
        double err = evb_recon_error(D, W, e.rows, e.cols, evb_calib_unit(c, e.unit));
        ok = ok && err == e.recon_error;
        free(W); free(D);
    }
    EVB_CHECK(ok && updated > 0, "SparseGPT from the BF16 checkpoint: bfloat16 values (%d updated by it), the error recorded "
              "that of the stored level (%s)", updated, st ? evb_last_error() : "");
    if (db) check_load16(db, "BF16 checkpoint, SparseGPT");
    evb_db_close(db);

    evb_calib_free(c); evb_windows_free(&w);
    evb_model_free(mb); evb_model_free(m32);
    fixture_rmdir(dir);
    free(dir);
}

/* evb_db_put_sparse's dtypes, on levels written directly, with values that are not exact in 16 bits. */
static void test_put(void) {
    enum { R = 24, C = 40, N = R * C };
    char *dir = fixture_tmpdir();
    evb_db *db = NULL;
    int st = evb_db_open(dir, MFP, CFP, 1, &db);
    float W[N], back[N];
    unsigned seed = 11;
    for (int i = 0; i < N; i++) W[i] = rand_r(&seed) % 3 ? ((float)rand_r(&seed) / RAND_MAX - 0.5f) * 3.0f : 0.0f;
    W[1] = 1e-40f; W[2] = -1e-9f; W[3] = 0.1f; /* 1e-40 and -1e-9 vanish in f16 only; 0.1 is exact in none */
    size_t nz = 0;
    for (int i = 0; i < N; i++) nz += W[i] != 0.0f;
    const int dtypes[] = {EVB_DB_F32, EVB_DB_BF16, EVB_DB_F16};
    for (int t = 0; t < 3; t++) {
        evb_db_entry meta = {0};
        meta.unit = t; meta.rows = R; meta.cols = C; meta.sparsity = 0.3; meta.dtype = dtypes[t];
        snprintf(meta.method, sizeof meta.method, "sparsegpt");
        if (!st) st = evb_db_put_sparse(db, &meta, W, 0.0);
    }
    int ok = st == 0 && evb_db_count(db) == 3;
    for (int t = 0; ok && t < 3; t++) {
        evb_db_entry e = evb_db_get(db, t);
        ok = e.dtype == dtypes[t] && evb_db_load(db, t, back) == 0;
        size_t kept = 0;
        for (int i = 0; ok && i < N; i++) {
            float want = t == 0 ? W[i] : t == 1 ? evb_bf16_value(evb_bf16_round(W[i])) : evb_f16_to_f32(evb_f32_to_f16(W[i]));
            ok = back[i] == want;
            kept += back[i] != 0.0f;
        }
        ok = ok && e.params_kept == (double)kept && kept == nz - (t == 2 ? 2 : 0);
    }
    EVB_CHECK(ok, "put_sparse in f32, bf16 and f16: values rounded to nearest even, 1e-40 and -1e-9 removed where they "
              "vanish (f16), params_kept what is stored (%s)", st ? evb_last_error() : "ok");
    check_load16(db, "float32, bfloat16 and float16 levels");

    /* Beyond float16's range: stored in float32, the entry says so. */
    W[5] = 70000.0f;
    evb_db_entry meta = {0};
    meta.unit = 3; meta.rows = R; meta.cols = C; meta.sparsity = 0.3; meta.dtype = EVB_DB_F16;
    snprintf(meta.method, sizeof meta.method, "sparsegpt");
    st = evb_db_put_sparse(db, &meta, W, 0.0);
    int i = evb_db_find(db, &meta);
    EVB_CHECK(st == 0 && i >= 0 && evb_db_get(db, i).dtype == EVB_DB_F32 && evb_db_load(db, i, back) == 0 && back[5] == 70000.0f &&
              memcmp(back, W, sizeof W) == 0, "a value of 70000 asked in f16: the level is stored in f32, exactly");
    meta.unit = 4; meta.dtype = 3;
    st = evb_db_put_sparse(db, &meta, W, 0.0);
    EVB_CHECK(st == EVB_EINVAL && strstr(evb_last_error(), "dtype"), "dtype 3 refused: %s", evb_last_error());

    /* Quantized: float32 scales whatever the dtype asked; load16 is the float32 dequantization rounded. */
    meta = (evb_db_entry){0};
    meta.unit = 5; meta.kind = EVB_LEVEL_QUANT; meta.rows = R; meta.cols = C; meta.bits = 3; meta.group_size = 8; meta.dtype = EVB_DB_BF16;
    snprintf(meta.method, sizeof meta.method, "gptq");
    uint8_t codes[N];
    float scale[R * 5], zero[R * 5];
    int32_t group_of[C];
    for (int k = 0; k < N; k++) codes[k] = (uint8_t)(rand_r(&seed) % 8);
    for (int k = 0; k < R * 5; k++) { scale[k] = (float)rand_r(&seed) / RAND_MAX * 0.1f; zero[k] = (float)(rand_r(&seed) % 8); }
    for (int k = 0; k < C; k++) group_of[k] = k / 8;
    evb_quant_out q = {codes, scale, zero, group_of};
    st = evb_db_put_quant(db, &meta, &q, 5, 0.0);
    i = evb_db_find(db, &meta);
    EVB_CHECK(st == 0 && i >= 0 && evb_db_get(db, i).dtype == EVB_DB_F32 && load16_matches(db, i),
              "a quantized level stores float32 scales and its load16 is its float32 dequantization rounded (%s)", st ? evb_last_error() : "ok");
    evb_db_close(db);
    fixture_rmdir(dir);
    free(dir);
}

int main(void) {
    test_put();
    test_built();
    return evb_test_summary();
}
