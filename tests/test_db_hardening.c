#define _GNU_SOURCE
/* test_db_hardening.c -- the level database trusts nothing it reads and loses nothing it writes, on the
 * demo model (assets/demo):
 *   - every single-byte change of an index is refused (its checksum), never accepted;
 *   - an index whose checksum is right but whose fields are out of range, of the wrong type, missing,
 *     repeated or inconsistent is refused with the entry and the reason, before any value is converted;
 *     an index of an older or newer format is refused with the right hint;
 *   - levels of the wrong shape for the model (1x1) are refused by evb_db_check_model and by `eval --db`
 *     in one line; payload headers that lie (nnz = 2^62, 2^32 - 1 groups) are refused, never read past;
 *   - `db build` verifies the levels it finds and rebuilds damaged and missing payloads, saying so;
 *   - a second writer waits for the first (one line on stderr), and two concurrent `db build`s into one
 *     directory end with every level of both in the index and no orphaned or temporary file. */
#include "testing.h"
#include "fixtures.h"
#include "evobudget/evb_db.h"
#include "evobudget/evb_model.h"
#include "evobudget/evb_status.h"
#include "compressors/db_impl.h"

#include <dirent.h>
#include <jansson.h>
#include <msgpack.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEMO EVB_SOURCE_DIR "/assets/demo"
#define BUILD "'" EVB_CLI "' db build --model " DEMO " --calib " DEMO "/calib.txt --method magnitude --calib-windows 2 --seq-len 32"

static char mfp[17];
static const char *CFP = "00000000000000bb";

// ---- files ----

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)len + 1);
    *n = fread(b, 1, (size_t)len, f);
    fclose(f);
    return b;
}

static void spit(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (f) { fwrite(data, 1, n, f); fclose(f); }
}

static int sh(const char *cmd) {
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static json_t *json_of(const char *cmd) {
    FILE *p = popen(cmd, "r");
    json_error_t e;
    json_t *j = p ? json_loadf(p, 0, &e) : NULL;
    if (p) pclose(p);
    return j;
}

// ---- an index written by the test, field by field ----

/* One field to write differently: its name and what to write instead (or nothing: drop it; or an extra). */
typedef struct override {
    int entry;              /* which entry (-1: none) */
    const char *key;        /* the field */
    enum { OV_NONE, OV_INT, OV_UINT, OV_REAL, OV_STR, OV_DROP, OV_EXTRA } how;
    int64_t i; uint64_t u; double r; const char *s;
} override;

static void pstr(msgpack_packer *pk, const char *s) { msgpack_pack_str(pk, strlen(s)); msgpack_pack_str_body(pk, s, strlen(s)); }

static int put_override(msgpack_packer *pk, const override *o, int entry, const char *key) {
    if (o->entry != entry || strcmp(o->key, key)) return 0;
    if (o->how == OV_DROP) return 1;
    pstr(pk, key);
    switch (o->how) {
    case OV_INT: msgpack_pack_int64(pk, o->i); break;
    case OV_UINT: msgpack_pack_uint64(pk, o->u); break;
    case OV_REAL: msgpack_pack_double(pk, o->r); break;
    default: pstr(pk, o->s); break;
    }
    return 1;
}

/* The bytes of an index of entries e[n] as the library writes it (format 3: the checksum last; 4: each
 * entry's dtype after its kind), with one override; the caller frees sb. */
static void pack_index(msgpack_sbuffer *sb, int format, const evb_db_entry *e, int n, const override *o) {
    msgpack_sbuffer_init(sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, format >= 3 ? 5 : 4);
    pstr(&pk, "format"); msgpack_pack_int(&pk, format);
    pstr(&pk, "model"); pstr(&pk, mfp);
    pstr(&pk, "calib"); pstr(&pk, CFP);
    pstr(&pk, "entries"); msgpack_pack_array(&pk, (size_t)n);
    for (int i = 0; i < n; i++) {
        int fields = (format >= 4 ? 19 : 18) + (o->entry == i ? (o->how == OV_DROP ? -1 : o->how == OV_EXTRA ? 1 : 0) : 0);
        msgpack_pack_map(&pk, (size_t)fields);
#define F(name, packcall) if (!put_override(&pk, o, i, name)) { pstr(&pk, name); packcall; }
        F("unit", msgpack_pack_int(&pk, e[i].unit));
        F("method", pstr(&pk, e[i].method));
        F("kind", msgpack_pack_int(&pk, e[i].kind));
        if (format >= 4) F("dtype", msgpack_pack_int(&pk, e[i].dtype));
        F("sparsity", msgpack_pack_double(&pk, e[i].sparsity));
        F("n_keep", msgpack_pack_int(&pk, e[i].n_keep));
        F("m", msgpack_pack_int(&pk, e[i].m));
        F("n_removed", msgpack_pack_int64(&pk, e[i].n_removed));
        F("bits", msgpack_pack_int(&pk, e[i].bits));
        F("group_size", msgpack_pack_int(&pk, e[i].group_size));
        F("sym", msgpack_pack_int(&pk, e[i].sym));
        F("rows", msgpack_pack_int(&pk, e[i].rows));
        F("cols", msgpack_pack_int(&pk, e[i].cols));
        F("params_kept", msgpack_pack_double(&pk, e[i].params_kept));
        F("bits_stored", msgpack_pack_double(&pk, e[i].bits_stored));
        F("bytes", msgpack_pack_uint64(&pk, e[i].bytes));
        F("recon_error", msgpack_pack_double(&pk, e[i].recon_error));
        F("checksum", msgpack_pack_uint64(&pk, e[i].checksum));
        F("file", pstr(&pk, e[i].file));
#undef F
        if (o->entry == i && o->how == OV_EXTRA) { pstr(&pk, o->key); pstr(&pk, o->s); }
    }
    if (format >= 3) {
        pstr(&pk, "checksum");
        msgpack_pack_fix_uint64(&pk, evb_hash64(sb->data, sb->size, 0));
    }
}

static int write_index(const char *dir, int format, const evb_db_entry *e, int n, const override *o) {
    msgpack_sbuffer sb;
    pack_index(&sb, format, e, n, o);
    char path[1024];
    snprintf(path, sizeof path, "%s/index.msgpack", dir);
    spit(path, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    return 0;
}

// ---- levels of the demo model's shapes ----

static int put_levels(evb_db *db, const evb_model *m) {
    int st = EVB_SUCCESS;
    unsigned seed = 7;
    for (int u = 0; !st && u < 6; u++) {
        evb_db_entry meta = {0};
        meta.unit = u;
        evb_model_unit_shape(m, u, &meta.rows, &meta.cols);
        size_t n = (size_t)meta.rows * meta.cols;
        if (u < 4) {
            snprintf(meta.method, sizeof meta.method, "magnitude");
            meta.sparsity = 0.5;
            meta.dtype = u == 3 ? EVB_DB_BF16 : EVB_DB_F32;
            float *W = malloc(sizeof(float) * n);
            for (size_t i = 0; i < n; i++) W[i] = rand_r(&seed) % 2 ? (float)rand_r(&seed) / RAND_MAX - 0.5f : 0.0f;
            st = evb_db_put_sparse(db, &meta, W, 0.1);
            free(W);
        } else {
            snprintf(meta.method, sizeof meta.method, "rtn");
            meta.bits = 4; meta.group_size = 128; meta.sym = 1;
            int ng = (meta.cols + 127) / 128;
            uint8_t *codes = malloc(n);
            float *sc = malloc(sizeof(float) * meta.rows * ng), *ze = malloc(sizeof(float) * meta.rows * ng);
            int32_t *g = malloc(sizeof(int32_t) * meta.cols);
            for (size_t i = 0; i < n; i++) codes[i] = (uint8_t)(rand_r(&seed) % 16);
            for (int i = 0; i < meta.rows * ng; i++) { sc[i] = 0.01f; ze[i] = 8; }
            for (int c = 0; c < meta.cols; c++) g[c] = c / 128;
            evb_quant_out q = {codes, sc, ze, g};
            st = evb_db_put_quant(db, &meta, &q, ng, 0.2);
            free(codes); free(sc); free(ze); free(g);
        }
    }
    return st;
}

static int count_files(const char *dir, const char *part) {
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;
    while (d && (de = readdir(d))) n += strstr(de->d_name, part) != NULL;
    if (d) closedir(d);
    return n;
}

/* Payload files in dir that the index does not name. */
static int orphans(const char *dir, const evb_db *db) {
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;
    while (d && (de = readdir(d))) {
        if (!strstr(de->d_name, ".bin")) continue;
        int named = 0;
        for (int i = 0; i < evb_db_count(db) && !named; i++) named = strcmp(evb_db_get(db, i).file, de->d_name) == 0;
        n += !named;
    }
    if (d) closedir(d);
    return n;
}

static int all_verified(const evb_db *db) {
    int ok = 0;
    for (int i = 0; i < evb_db_count(db); i++) ok += evb_db_verify(db, i) == EVB_SUCCESS;
    return ok == evb_db_count(db);
}

int main(void) {
    evb_model *m = NULL;
    if (evb_model_load(DEMO, &m)) { printf("cannot load the demo model: %s\n", evb_last_error()); return 1; }
    evb_fingerprint_model(m, mfp);
    char *dir = fixture_tmpdir(), path[1024], cmd[4096];
    snprintf(path, sizeof path, "%s/index.msgpack", dir);

    evb_db *db;
    int st = evb_db_open(dir, mfp, CFP, 1, &db);
    if (!st) st = put_levels(db, m);
    EVB_CHECK(st == 0 && evb_db_count(db) == 6 && evb_db_check_model(db, m) == 0 && all_verified(db),
              "six levels of the demo model's shapes stored, bound to the model and verified (%s)", evb_last_error());
    evb_db_close(db);

    /* The entries as the index lists them, and the index's bytes. */
    evb_db_entry ent[6];
    st = evb_db_open(dir, mfp, CFP, 0, &db);
    for (int i = 0; !st && i < 6; i++) ent[i] = evb_db_get(db, i);
    evb_db_close(db);
    size_t size = 0;
    uint8_t *orig = slurp(path, &size);
    msgpack_sbuffer sb;
    override none = {-1, "", OV_NONE, 0, 0, 0, NULL};
    pack_index(&sb, EVB_DB_FORMAT, ent, 6, &none);
    EVB_CHECK(orig && sb.size == size && memcmp(sb.data, orig, size) == 0,
              "the test's index writer gives the library's bytes (%zu bytes), so its crafted indexes differ only where meant", size);
    msgpack_sbuffer_destroy(&sb);

    /* Every byte changed, one at a time: refused, never accepted. */
    int refused = 0, accepted = 0, crashed = 0;
    unsigned seed = 17;
    uint8_t *flip = malloc(size);
    for (size_t pos = 0; orig && pos < size; pos++) {
        memcpy(flip, orig, size);
        flip[pos] ^= (uint8_t)(1 + rand_r(&seed) % 255);
        spit(path, flip, size);
        st = evb_db_open(dir, mfp, CFP, 0, &db);
        if (st == EVB_EFORMAT) refused++;
        else if (st == 0) accepted++;
        else crashed++;
        evb_db_close(db);
    }
    spit(path, orig, size);
    EVB_CHECK(refused == (int)size && accepted == 0, "every one of %zu single-byte changes of the index refused (%d refused, %d accepted, %d other)",
              size, refused, accepted, crashed);
    /* A truncated index, and an array header claiming 4 G entries in a 5-byte file. */
    int trunc_refused = 0;
    for (size_t cut = 0; cut < size; cut += 97) {
        spit(path, orig, cut);
        trunc_refused += evb_db_open(dir, mfp, CFP, 0, &db) == EVB_EFORMAT;
    }
    spit(path, "\xdd\xff\xff\xff\xff", 5);
    st = evb_db_open(dir, NULL, NULL, 0, &db);
    EVB_CHECK(trunc_refused == (int)((size + 96) / 97) && st == EVB_EFORMAT && strstr(evb_last_error(), "not a level database index"),
              "truncated indexes refused (%d), and a 5-byte array of 4 G entries too: %s", trunc_refused, evb_last_error());

    /* Checksums right, contents wrong: each refused, naming the entry. */
    const override bad[] = {
        {0, "rows", OV_REAL, 0, 0, 1e300, NULL}, {1, "cols", OV_INT, (int64_t)1 << 40, 0, 0, NULL},
        {2, "unit", OV_INT, -1, 0, 0, NULL}, {3, "unit", OV_REAL, 0, 0, NAN, NULL},
        {0, "sparsity", OV_REAL, 0, 0, NAN, NULL}, {1, "sparsity", OV_REAL, 0, 0, 2.0, NULL},
        {4, "bits", OV_INT, 9, 0, 0, NULL}, {2, "n_removed", OV_INT, INT64_MAX, 0, 0, NULL},
        {3, "params_kept", OV_REAL, 0, 0, 1e300, NULL}, {0, "params_kept", OV_REAL, 0, 0, 12.0, NULL},
        {5, "bytes", OV_UINT, 0, (uint64_t)1 << 63, 0, NULL}, {0, "file", OV_STR, 0, 0, 0, "../index.msgpack"},
        {1, "file", OV_STR, 0, 0, 0, "u0000_magnitude_s0.500000.bin"}, {0, "method", OV_STR, 0, 0, 0, "zero"},
        {5, "method", OV_STR, 0, 0, 0, "wanda"}, {0, "kind", OV_INT, 1, 0, 0, NULL},
        {2, "m", OV_INT, 4, 0, 0, NULL}, {4, "sym", OV_INT, 2, 0, 0, NULL},
        {1, "recon_error", OV_REAL, 0, 0, -1, NULL}, {0, "rows", OV_DROP, 0, 0, 0, NULL},
        {3, "extra", OV_EXTRA, 0, 0, 0, "x"}, {2, "checksum", OV_REAL, 0, 0, 1.5, NULL},
        {0, "dtype", OV_INT, 3, 0, 0, NULL}, {1, "dtype", OV_INT, -1, 0, 0, NULL}, {2, "dtype", OV_STR, 0, 0, 0, "bf16"},
        {3, "dtype", OV_DROP, 0, 0, 0, NULL}, {4, "dtype", OV_INT, EVB_DB_BF16, 0, 0, NULL},
        {0, "dtype", OV_INT, EVB_DB_BF16, 0, 0, NULL}, {3, "dtype", OV_INT, EVB_DB_F32, 0, 0, NULL},
    };
    int nbad = sizeof bad / sizeof *bad, bad_refused = 0;
    for (int k = 0; k < nbad; k++) {
        write_index(dir, EVB_DB_FORMAT, ent, 6, &bad[k]);
        st = evb_db_open(dir, mfp, CFP, 0, &db);
        char want[32];
        snprintf(want, sizeof want, "entry %d:", bad[k].entry);
        int ok = st == EVB_EFORMAT && (strstr(evb_last_error(), want) || strstr(evb_last_error(), "entry "));
        if (!ok) printf("  not refused: entry %d field %s: status %d %s\n", bad[k].entry, bad[k].key, st, evb_last_error());
        bad_refused += ok;
        evb_db_close(db);
    }
    EVB_CHECK(bad_refused == nbad, "%d of %d crafted entries with a right checksum refused (out-of-range floats and ints, wrong types, "
              "inconsistent sizes, foreign file names, duplicates, missing and extra fields, dtypes out of range, of a "
              "quantized level, or of another value size)", bad_refused, nbad);
    write_index(dir, 2, ent, 6, &none);
    st = evb_db_open(dir, mfp, CFP, 0, &db);
    EVB_CHECK(st == EVB_EFORMAT && strstr(evb_last_error(), "format 2") && strstr(evb_last_error(), "older") &&
              strstr(evb_last_error(), "rebuild") && !strstr(evb_last_error(), "download"),
              "an index of format 2 is refused with a hint to rebuild: %s", evb_last_error());
    write_index(dir, 99, ent, 6, &none);
    st = evb_db_open(dir, mfp, CFP, 0, &db);
    EVB_CHECK(st == EVB_EFORMAT && strstr(evb_last_error(), "newer"), "an index of a newer format is refused: %s", evb_last_error());
    spit(path, orig, size);

    /* The dtype of a level's values: an entry saying f16 for a bf16 payload (the sizes agree) opens, and the
     * level is refused by verify (so that db build rebuilds it), load and load16, naming both. */
    {
        override f16 = {3, "dtype", OV_INT, EVB_DB_F16, 0, 0, NULL};
        write_index(dir, EVB_DB_FORMAT, ent, 6, &f16);
        st = evb_db_open(dir, mfp, CFP, 0, &db);
        int opened = st == 0, st16 = -1;
        size_t n3 = (size_t)ent[3].rows * ent[3].cols;
        float *W = malloc(sizeof(float) * n3);
        uint16_t *H = malloc(sizeof(uint16_t) * n3);
        int stv = opened ? evb_db_verify(db, 3) : -1;
        if (opened) { st16 = evb_db_load16(db, 3, H); st = evb_db_load(db, 3, W); }
        EVB_CHECK(opened && ent[3].dtype == EVB_DB_BF16 && stv == EVB_EFORMAT && st == EVB_EFORMAT && st16 == EVB_EFORMAT &&
                  strstr(evb_last_error(), ent[3].file) && strstr(evb_last_error(), "bf16 values") &&
                  strstr(evb_last_error(), "index says f16") && strstr(evb_last_error(), "hint"),
                  "an entry whose dtype disagrees with its payload's header is refused by verify, load and load16: %s", evb_last_error());
        evb_db_close(db);
        free(W); free(H);
    }

    /* A format-3 database (no dtype in the index, version-1 sparse payloads of float32 values) is read,
     * level for level as before; adding a level writes its index as format 4, and the old levels still
     * read. An entry of format 3 with a dtype, or naming a bfloat16 payload, is refused. */
    {
        spit(path, orig, size);
        float *before[6] = {0};
        int loaded = 0;
        st = evb_db_open(dir, mfp, CFP, 0, &db);
        for (int i = 0; !st && i < 6; i++) {
            before[i] = malloc(sizeof(float) * (size_t)ent[i].rows * ent[i].cols);
            loaded += evb_db_load(db, i, before[i]) == 0;
        }
        evb_db_close(db);
        evb_db_entry old[6];
        int from[6], n_old = 0;
        for (int i = 0; i < 6; i++) {
            if (ent[i].dtype != EVB_DB_F32) continue; /* a bfloat16 level has no format-3 form */
            evb_db_entry e = ent[i];
            if (e.kind == EVB_LEVEL_SPARSE) { /* version word 2 | f32 << 16 becomes 1, as format 3 wrote it */
                char pp[1200];
                size_t psz = 0;
                snprintf(pp, sizeof pp, "%s/%s", dir, e.file);
                uint8_t *p = slurp(pp, &psz);
                if (p && psz > 8) { p[4] = 1; e.checksum = evb_hash64(p, psz, 0); spit(pp, p, psz); }
                free(p);
            }
            from[n_old] = i;
            old[n_old++] = e;
        }
        write_index(dir, 3, old, n_old, &none);
        st = evb_db_open(dir, mfp, CFP, 1, &db);
        int same = 0;
        float *W = malloc(sizeof(float) * 1024 * 1024);
        for (int k = 0; !st && k < n_old && k < evb_db_count(db); k++) {
            evb_db_entry e = evb_db_get(db, k);
            same += e.dtype == EVB_DB_F32 && evb_db_load(db, k, W) == 0 &&
                    memcmp(W, before[from[k]], sizeof(float) * (size_t)e.rows * e.cols) == 0;
        }
        EVB_CHECK(loaded == 6 && !st && evb_db_count(db) == n_old && same == n_old,
                  "a format-3 database is read: %d of %d levels (version-1 payloads) equal the levels they were made from (%s)",
                  same, n_old, st ? evb_last_error() : "ok");
        evb_db_entry meta = ent[3];
        if (!st) st = evb_db_put_sparse(db, &meta, before[3], meta.recon_error);
        evb_db_close(db);
        size_t isz = 0;
        uint8_t *idx = slurp(path, &isz);
        int fmt4 = idx && isz > 9 && memcmp(idx + 1, "\xa6" "format", 7) == 0 && idx[8] == EVB_DB_FORMAT;
        free(idx);
        same = 0;
        if (!st) st = evb_db_open(dir, mfp, CFP, 0, &db);
        for (int i = 0; !st && i < 6 && evb_db_count(db) == 6; i++) {
            int k = evb_db_find(db, &ent[i]);
            same += k >= 0 && evb_db_load(db, k, W) == 0 && memcmp(W, before[i], sizeof(float) * (size_t)ent[i].rows * ent[i].cols) == 0;
        }
        if (!st) evb_db_close(db);
        EVB_CHECK(!st && fmt4 && same == 6, "a level added to it: the index is written as format 4 and all %d levels read as before (%s)",
                  same, st ? evb_last_error() : "ok");
        free(W);
        for (int i = 0; i < 6; i++) free(before[i]);
        override extra = {0, "dtype", OV_EXTRA, 0, 0, 0, "x"};
        write_index(dir, 3, ent, 6, &extra);
        st = evb_db_open(dir, mfp, CFP, 0, &db);
        int with_dtype = st == EVB_EFORMAT && strstr(evb_last_error(), "entry 0: an unknown field");
        write_index(dir, 3, ent, 6, &none);
        st = evb_db_open(dir, mfp, CFP, 0, &db);
        EVB_CHECK(with_dtype && st == EVB_EFORMAT && strstr(evb_last_error(), "entry 3: its size disagrees"),
                  "a format-3 entry with a dtype field is refused, and one naming a bfloat16 payload too: %s", evb_last_error());
        spit(path, orig, size);
    }

    /* Payload headers against their entry's dtype (evb_db_expand_, no checksum): a version-2 bf16 payload
     * expands (the control); a version-1 payload under an entry saying bf16, dtype 7, and version 3 are
     * refused. */
    {
        evb_db_entry e = {0};
        e.kind = EVB_LEVEL_SPARSE; e.rows = 1; e.cols = 8; e.dtype = EVB_DB_BF16;
        uint8_t p[27] = "EVBS";
        p[4] = 2; p[6] = EVB_DB_BF16; p[8] = 1; p[12] = 8; p[16] = 1; p[24] = 0x04; p[25] = 0x80; p[26] = 0x3f; /* W[2] = 1 */
        float W[8];
        uint16_t H[8];
        int ok = evb_db_expand_(&e, p, sizeof p, "p", W) == 0 && W[2] == 1.0f && W[0] == 0.0f &&
                 evb_db_expand16_(&e, p, sizeof p, "p", H) == 0 && H[2] == 0x3f80 && H[0] == 0;
        p[4] = 1; p[6] = 0;
        int v1 = evb_db_expand_(&e, p, sizeof p, "p", W) == EVB_EFORMAT && strstr(evb_last_error(), "index says bf16");
        p[4] = 2; p[6] = 7;
        int d7 = evb_db_expand16_(&e, p, sizeof p, "p", H) == EVB_EFORMAT && strstr(evb_last_error(), "dtype 7");
        p[4] = 3; p[6] = EVB_DB_BF16;
        int v3 = evb_db_expand_(&e, p, sizeof p, "p", W) == EVB_EFORMAT && strstr(evb_last_error(), "version");
        EVB_CHECK(ok && v1 && d7 && v3, "a bf16 payload expands (%d); a version-1 payload under a bf16 entry (%d), dtype 7 (%d) and "
                  "version 3 (%d) are refused", ok, v1, d7, v3);
    }

    /* Payload headers that lie, under a right checksum: nnz = 2^62 and 2^32 - 1 groups. */
    {
        evb_db_entry e = {0};
        e.unit = 0; e.kind = EVB_LEVEL_SPARSE; e.rows = 8; e.cols = 8; e.params_kept = 0;
        uint8_t p[32] = "EVBS";
        p[4] = 1; p[8] = 8; p[12] = 8; p[23] = 0x40; /* nnz = 2^62 */
        float W[64];
        st = evb_db_expand_(&e, p, sizeof p, "p", W);
        int sparse_refused = st == EVB_EFORMAT;
        e.kind = EVB_LEVEL_QUANT;
        uint8_t q[24 + 32 + 8 * 8 + 32] = "EVBQ";
        q[4] = 1; q[8] = 8; q[12] = 8; q[16] = 4; q[20] = q[21] = q[22] = q[23] = 0xff;
        st = evb_db_expand_(&e, q, sizeof q, "q", W);
        EVB_CHECK(sparse_refused && st == EVB_EFORMAT, "a sparse payload saying nnz = 2^62 and a quantized one saying 2^32 - 1 groups are refused");
    }

    /* Levels of the wrong shape (1x1, payloads and sizes consistent, checksums right). */
    {
        evb_db_entry one[4];
        for (int u = 0; u < 4; u++) {
            evb_db_entry e = ent[u];
            e.rows = e.cols = 1; e.dtype = EVB_DB_F32;
            e.params_kept = 1; e.bits_stored = 33; e.bytes = 24 + 1 + 4;
            uint8_t p[29] = "EVBS";
            p[4] = 1; p[8] = 1; p[12] = 1; p[16] = 1; p[24] = 1;
            float v = 0.5f;
            memcpy(p + 25, &v, 4);
            e.checksum = evb_hash64(p, sizeof p, 0);
            char pp[1200];
            snprintf(pp, sizeof pp, "%s/%s", dir, e.file);
            spit(pp, p, sizeof p);
            one[u] = e;
        }
        write_index(dir, EVB_DB_FORMAT, one, 4, &none);
        st = evb_db_open(dir, mfp, CFP, 0, &db);
        int opened = st == 0;
        st = opened ? evb_db_check_model(db, m) : st;
        EVB_CHECK(opened && st == EVB_EFORMAT && strstr(evb_last_error(), "1x1"),
                  "a database of 1x1 levels opens but is refused against the model: %s", evb_last_error());
        evb_db_close(db);
        snprintf(cmd, sizeof cmd, "'%s' eval --model %s --data %s/calib.txt --db %s --uniform-sparsity 0.5 --method magnitude --seq-len 32 --max-tokens 64 "
                 "> /dev/null 2> %s/err.txt", EVB_CLI, DEMO, DEMO, dir, dir);
        int rc = sh(cmd);
        snprintf(cmd, sizeof cmd, "grep -q '1x1' %s/err.txt && test $(wc -l < %s/err.txt) = 1", dir, dir);
        EVB_CHECK(rc == 1 && sh(cmd) == 0, "eval --db with 1x1 levels: exit %d, one line naming the shape", rc);
    }
    free(flip); free(orig);
    fixture_rmdir(dir);
    free(dir);

    /* db build verifies what it finds: a damaged and a deleted payload are rebuilt, and said so. */
    char *d2 = fixture_tmpdir(), out[1100];
    snprintf(out, sizeof out, "%s/db", d2);
    snprintf(cmd, sizeof cmd, BUILD " --sparsity 0.5 --out %s --json 2>/dev/null", out);
    json_t *j = json_of(cmd);
    int n_levels = j ? (int)json_integer_value(json_object_get(j, "entries")) : -1;
    json_decref(j);
    EVB_CHECK(n_levels == evb_model_n_units(m), "db build of the demo model: %d levels", n_levels);
    st = evb_db_open(out, NULL, NULL, 0, &db);
    char victim[1200], gone[1200];
    snprintf(victim, sizeof victim, "%s/%s", out, st ? "" : evb_db_get(db, 3).file);
    snprintf(gone, sizeof gone, "%s/%s", out, st ? "" : evb_db_get(db, 9).file);
    evb_db_close(db);
    FILE *f = fopen(victim, "r+b");
    if (f) { fseek(f, 40, SEEK_SET); int c = fgetc(f); fseek(f, 40, SEEK_SET); fputc(c ^ 0x20, f); fclose(f); }
    unlink(gone);
    snprintf(cmd, sizeof cmd, BUILD " --sparsity 0.5 --out %s --json 2> %s/err.txt", out, d2);
    j = json_of(cmd);
    int built = j ? (int)json_integer_value(json_object_get(j, "built")) : -1, repaired = j ? (int)json_integer_value(json_object_get(j, "repaired")) : -1,
        present = j ? (int)json_integer_value(json_object_get(j, "present")) : -1;
    json_decref(j);
    snprintf(cmd, sizeof cmd, "grep -q '2 levels had a damaged or missing payload and were rebuilt' %s/err.txt", d2);
    st = evb_db_open(out, NULL, NULL, 0, &db);
    EVB_CHECK(built == 2 && repaired == 2 && present == n_levels - 2 && sh(cmd) == 0 && !st && all_verified(db),
              "a damaged and a deleted payload: rebuilt (built %d, repaired %d, present %d) and reported", built, repaired, present);

    /* A second writer waits for the first, saying so. */
    st = st ? st : evb_db_write_begin(db);
    pid_t pid = fork();
    if (pid == 0) {
        snprintf(cmd, sizeof cmd, "exec " BUILD " --sparsity 0.5 --out %s > /dev/null 2> %s/wait.txt", out, d2);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    snprintf(cmd, sizeof cmd, "grep -q 'another process is writing this level database; waiting' %s/wait.txt", d2);
    int waited = 0, early = 0;
    for (int polls = 0; polls < 1200 && !waited; polls++) {
        struct timespec ts = {0, 50000000L};
        nanosleep(&ts, NULL);
        waited = sh(cmd) == 0;
        if (waitpid(pid, NULL, WNOHANG) == pid) { early = 1; break; }
    }
    int still = !early && waitpid(pid, NULL, WNOHANG) == 0;
    evb_db_write_end(db);
    int ws = 0;
    if (!early) waitpid(pid, &ws, 0);
    EVB_CHECK(!st && waited && still && WIFEXITED(ws) && WEXITSTATUS(ws) == 0,
              "a db build while the database is held waits (one line on stderr) and finishes once it is released");
    evb_db_close(db);

    /* Two db builds into one directory at once: every level of both, no orphaned or temporary file. */
    snprintf(out, sizeof out, "%s/pair", d2);
    pid_t a = fork();
    if (a == 0) {
        snprintf(cmd, sizeof cmd, "exec " BUILD " --sparsity 0.4 --out %s > /dev/null 2>&1", out);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    pid_t b = fork();
    if (b == 0) {
        snprintf(cmd, sizeof cmd, "exec " BUILD " --sparsity 0.6 --out %s > /dev/null 2>&1", out);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    int wa = 0, wb = 0;
    waitpid(a, &wa, 0);
    waitpid(b, &wb, 0);
    st = evb_db_open(out, NULL, NULL, 0, &db);
    int n = st ? -1 : evb_db_count(db), orph = st ? -1 : orphans(out, db), tmps = count_files(out, ".tmp."), ver = !st && all_verified(db);
    EVB_CHECK(WIFEXITED(wa) && WEXITSTATUS(wa) == 0 && WIFEXITED(wb) && WEXITSTATUS(wb) == 0 && n == 2 * n_levels && orph == 0 && tmps == 0 && ver,
              "two concurrent db builds: both exit 0, %d of %d levels indexed and verified, %d orphaned payloads, %d temporary files",
              n, 2 * n_levels, orph, tmps);
    evb_db_close(db);
    fixture_rmdir(d2);
    free(d2);
    evb_model_free(m);
    return evb_test_summary();
}
