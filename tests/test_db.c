#define _GNU_SOURCE
/* test_db.c -- the level database: sparse and quantized levels round-trip exactly, a database made for
 * other inputs is refused, a flipped payload byte is caught by the checksum, the index does not depend on
 * the order levels were added in, and a writer killed with SIGKILL mid-build leaves a database that a rerun
 * completes into exactly the one an uninterrupted build gives. */
#include "testing.h"
#include "fixtures.h"
#include "evobudget/evb_db.h"
#include "evobudget/evb_status.h"

#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { ROWS = 96, COLS = 160, N_LEVELS = 48 };

/* Level k of the test grid: a deterministic pseudo-compressed weight (even k sparse, odd k quantized). */
static int put_level(evb_db *db, int k) {
    evb_db_entry meta = {0};
    meta.unit = k / 4; meta.rows = ROWS; meta.cols = COLS;
    unsigned seed = 1000u + (unsigned)k;
    if (k % 2 == 0) {
        snprintf(meta.method, sizeof meta.method, "sparsegpt");
        meta.sparsity = 0.1 * (k % 8 + 1);
        float *W = malloc(sizeof(float) * ROWS * COLS);
        for (int i = 0; i < ROWS * COLS; i++) W[i] = (rand_r(&seed) % 100) < meta.sparsity * 100 ? 0.0f : (float)rand_r(&seed) / RAND_MAX - 0.5f;
        int st = evb_db_put_sparse(db, &meta, W, 0.01 * k);
        free(W);
        return st;
    }
    snprintf(meta.method, sizeof meta.method, "gptq");
    meta.bits = 2 + k % 6; meta.group_size = 32; meta.sym = 0;
    int ng = COLS / 32;
    uint8_t *codes = malloc(ROWS * COLS);
    float *scale = malloc(sizeof(float) * ROWS * ng), *zero = malloc(sizeof(float) * ROWS * ng);
    int32_t *g = malloc(sizeof(int32_t) * COLS);
    for (int i = 0; i < ROWS * COLS; i++) codes[i] = (uint8_t)(rand_r(&seed) % (1u << meta.bits));
    for (int i = 0; i < ROWS * ng; i++) { scale[i] = (float)rand_r(&seed) / RAND_MAX; zero[i] = (float)(rand_r(&seed) % 4); }
    for (int c = 0; c < COLS; c++) g[c] = c / 32;
    evb_quant_out q = {codes, scale, zero, g};
    int st = evb_db_put_quant(db, &meta, &q, ng, 0.02 * k);
    free(codes); free(scale); free(zero); free(g);
    return st;
}

/* Adds the levels of the grid that the database lacks (what a rerun of a build does). */
static int build(const char *dir, int order) {
    evb_db *db;
    int st = evb_db_open(dir, "00000000000000aa", "00000000000000bb", 1, &db);
    for (int i = 0; !st && i < N_LEVELS; i++) {
        int k = order ? N_LEVELS - 1 - i : i;
        evb_db_entry key = {0};
        key.unit = k / 4;
        key.kind = k % 2 ? EVB_LEVEL_QUANT : EVB_LEVEL_SPARSE;
        snprintf(key.method, sizeof key.method, "%s", k % 2 ? "gptq" : "sparsegpt");
        key.sparsity = 0.1 * (k % 8 + 1); key.bits = 2 + k % 6; key.group_size = 32;
        if (evb_db_find(db, &key) < 0) st = put_level(db, k);
    }
    evb_db_close(db);
    return st;
}

static int same_files(const char *a, const char *b) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "diff -r '%s' '%s' > /dev/null", a, b);
    return system(cmd) == 0;
}

int main(void) {
    char *d1 = fixture_tmpdir(), *d2 = fixture_tmpdir(), *d3 = fixture_tmpdir();
    char path[1024];
    EVB_CHECK(build(d1, 0) == 0, "build %d levels", N_LEVELS);

    /* Round trip: reopen and expand every level; sparse levels exactly, quantized ones by the formula. */
    evb_db *db = NULL;
    int st = evb_db_open(d1, "00000000000000aa", "00000000000000bb", 0, &db);
    EVB_CHECK(st == 0 && evb_db_count(db) == N_LEVELS, "reopen: %d entries", db ? evb_db_count(db) : -1);
    float *W = malloc(sizeof(float) * ROWS * COLS);
    int bad = 0;
    double bytes_sparse = 0, bytes_quant = 0;
    for (int i = 0; db && i < evb_db_count(db); i++) {
        evb_db_entry e = evb_db_get(db, i);
        if (evb_db_load(db, i, W)) bad++;
        size_t nz = 0;
        for (int j = 0; j < ROWS * COLS; j++) nz += W[j] != 0.0f;
        if (e.kind == EVB_LEVEL_SPARSE) { bad += nz != (size_t)e.params_kept; bytes_sparse += e.bytes; }
        else bytes_quant += e.bytes;
    }
    EVB_CHECK(bad == 0, "every level loads and sparse levels keep their nonzeros");
    printf("payload bytes per level: sparse %.0f, quantized %.0f, dense float32 %d\n", bytes_sparse / (N_LEVELS / 2), bytes_quant / (N_LEVELS / 2), ROWS * COLS * 4);
    {   /* Exact values: level 0 rebuilt in memory and compared. */
        evb_db *mem;
        evb_db_open(d3, "00000000000000aa", "00000000000000bb", 1, &mem);
        put_level(mem, 1);
        float *A = malloc(sizeof(float) * ROWS * COLS);
        evb_db_load(mem, 0, A);
        unsigned seed = 1001u;
        int ng = COLS / 32, ok = 1;
        uint8_t *codes = malloc(ROWS * COLS);
        float *scale = malloc(sizeof(float) * ROWS * ng), *zero = malloc(sizeof(float) * ROWS * ng);
        int bits = 3;
        for (int i = 0; i < ROWS * COLS; i++) codes[i] = (uint8_t)(rand_r(&seed) % (1u << bits));
        for (int i = 0; i < ROWS * ng; i++) { scale[i] = (float)rand_r(&seed) / RAND_MAX; zero[i] = (float)(rand_r(&seed) % 4); }
        for (int r = 0; r < ROWS; r++)
            for (int c = 0; c < COLS; c++) ok &= A[r * COLS + c] == scale[r * ng + c / 32] * ((float)codes[r * COLS + c] - zero[r * ng + c / 32]);
        EVB_CHECK(ok, "a 3-bit level dequantizes exactly to scale * (code - zero)");
        free(A); free(codes); free(scale); free(zero);
        evb_db_close(mem);
    }

    {   /* The level cache: a bound of three levels; hits, LRU eviction, held levels never evicted. */
        size_t lvl = sizeof(float) * ROWS * COLS, hits, misses, bytes, peak;
        evb_level_cache *cache;
        evb_level_cache_alloc(db, 3 * lvl, &cache);
        const float *a, *b, *x;
        int ok = evb_level_cache_get(cache, 0, &a) == 0 && evb_db_load(db, 0, W) == 0 && memcmp(a, W, lvl) == 0;
        evb_level_cache_release(cache, 0);
        for (int i = 1; i <= 3; i++) { evb_level_cache_get(cache, i, &x); evb_level_cache_release(cache, i); }
        evb_level_cache_stats(cache, &hits, &misses, &bytes, &peak);
        EVB_CHECK(ok && misses == 4 && hits == 0 && bytes == 3 * lvl && peak == 3 * lvl, "cache: 4 loads, 3 levels held at most");
        evb_level_cache_get(cache, 3, &x);          /* a hit */
        evb_level_cache_get(cache, 0, &b);          /* level 0 was evicted (least recent): a miss */
        evb_level_cache_stats(cache, &hits, &misses, &bytes, &peak);
        EVB_CHECK(hits == 1 && misses == 5 && bytes == 3 * lvl, "cache: a hit, and a reload of the evicted least recent level");
        const float *h[4];
        for (int i = 4; i < 8; i++) evb_level_cache_get(cache, i, &h[i - 4]); /* everything held: over the bound */
        evb_level_cache_stats(cache, &hits, &misses, &bytes, &peak);
        evb_db_load(db, 3, W);
        EVB_CHECK(peak == 6 * lvl && memcmp(x, W, lvl) == 0, "cache: held levels are never evicted (peak %zu levels; level 3 intact)", peak / lvl);
        evb_level_cache_free(cache);
    }

    /* A flipped byte in a payload: reported, never used. */
    evb_db_entry e0 = evb_db_get(db, 0);
    snprintf(path, sizeof path, "%s/%s", d1, e0.file);
    FILE *f = fopen(path, "r+b");
    fseek(f, 100, SEEK_SET);
    int c = fgetc(f);
    fseek(f, 100, SEEK_SET);
    fputc(c ^ 0x10, f);
    fclose(f);
    st = evb_db_load(db, 0, W);
    EVB_CHECK(st == EVB_EFORMAT && strstr(evb_last_error(), "checksum") && strstr(evb_last_error(), e0.file),
              "a flipped byte is reported: %s", evb_last_error());
    f = fopen(path, "r+b"); fseek(f, 100, SEEK_SET); fputc(c, f); fclose(f);
    evb_db_close(db);

    /* Other inputs: refused with the reason. */
    st = evb_db_open(d1, "00000000000000cc", "00000000000000bb", 1, &db);
    EVB_CHECK(st == EVB_EFORMAT && strstr(evb_last_error(), "another model"), "another model's database is refused: %s", evb_last_error());
    st = evb_db_open(d1, "00000000000000aa", "00000000000000dd", 1, &db);
    EVB_CHECK(st == EVB_EFORMAT && strstr(evb_last_error(), "calibration"), "other calibration data is refused: %s", evb_last_error());

    /* Order independence, then SIGKILL in the middle of a build and a rerun. */
    EVB_CHECK(build(d2, 1) == 0 && same_files(d1, d2), "levels added in reverse order give identical files");
    fixture_rmdir(d2);
    char *d4 = fixture_tmpdir();
    int killed_at = -1;
    for (int attempt = 0; attempt < 5 && killed_at < 0; attempt++) {
        pid_t pid = fork();
        if (pid == 0) { build(d4, 0); _exit(0); }
        struct timespec ts = {0, 2000000L * (attempt + 1)};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int ws;
        waitpid(pid, &ws, 0);
        if (WIFSIGNALED(ws)) {
            evb_db *part;
            if (evb_db_open(d4, "00000000000000aa", "00000000000000bb", 0, &part) == 0) {
                killed_at = evb_db_count(part);
                evb_db_close(part);
            } else killed_at = 0;
        }
    }
    EVB_CHECK(killed_at >= 0 && killed_at < N_LEVELS, "a build killed with SIGKILL part-way (%d of %d levels indexed)", killed_at, N_LEVELS);
    EVB_CHECK(build(d4, 0) == 0 && same_files(d1, d4), "the rerun completes it into the same files as an uninterrupted build");

    free(W);
    fixture_rmdir(d1); fixture_rmdir(d3); fixture_rmdir(d4);
    free(d1); free(d2); free(d3); free(d4);
    return evb_test_summary();
}
