/* db.c -- the level database (see evb_db.h).
 *
 * Payload layouts (little-endian):
 *   sparse  "EVBS" u16 version (2), u16 dtype (evb_db_dtype: 0 f32, 1 bf16, 2 f16), u32 rows, u32 cols,
 *           u64 nnz, u8 mask[ceil(rows cols / 8)] (bit i of the row-major element i, least significant bit
 *           first), values[nnz] in dtype (4 or 2 bytes each) in row-major order. Version 1 (format-3
 *           databases) is the same with dtype 0: its u32 version word, 1, reads as version 1, dtype 0;
 *   quant   "EVBQ" u32 version (1), u32 rows, u32 cols, u32 bits, u32 n_groups,
 *           u8 codes[ceil(rows cols bits / 8)] (a bit stream, least significant bit first), f32 scale[rows
 *           n_groups], f32 zero[rows n_groups], i32 group_of[cols]; W[r][c] = scale[r][g] (code - zero[r][g])
 *           with g = group_of[c];
 *   gguf    "EVBG" u32 version (1), u32 rows, u32 cols, u32 ggml type, u32 0, then the rows' blocks of that
 *           type exactly as llama.cpp lays them out in a GGUF tensor (evb_gguf.h): the exporter copies them.
 * The index is a msgpack map {format, model, calib, entries: [map per entry], checksum}, entries sorted by
 * unit and file name so that the same levels always give the same bytes. checksum is the last key, its
 * value a fixed 9-byte uint64 (0xcf + 8 bytes big-endian): the xxHash64 of every byte of the file before it.
 * An entry's dtype is its payload's, and the two are compared when a level is expanded.
 *
 * Why sparse values follow the checkpoint's dtype and quantized scales stay float32: a sparse level's bytes
 * are nearly all values (a 50% level of a BF16 checkpoint is 2.125 bytes per weight in float32, 1.125 in
 * bfloat16), and a BF16 or F16 checkpoint's kept weights lose nothing in their own dtype. A quantized
 * level's bytes are its codes: scale and zero point cost 64 bits per group, 0.5 bit per weight at group
 * size 128 next to 3 bits of codes, so bfloat16 would save 0.25 bit per weight while making the stored
 * level differ from what the quantizer computed (GPTQ compensates its error against float32 scales) and
 * from what the GPTQ exporter reads (export_gptq.c reads these payloads, version 1, as they are).
 *
 * Nothing read from a file is trusted: the index's checksum is verified, every field is range-checked
 * before it is converted, every size is computed with overflow checks before a byte is touched, and, once
 * the database is bound to a model (evb_db_check_model), every level's shape is the model's.
 *
 * Writers (put, build) hold the directory's exclusive lock (core/fileio.h) and reread the index when they
 * take it, so that two processes building into one directory both add their levels; readers take no lock
 * (every file is replaced by a rename, so a reader sees a whole old or a whole new file). */
#define _GNU_SOURCE
#include "evobudget/evb_db.h"
#include "evobudget/evb_gguf.h"
#include "evobudget/evb_status.h"
#include "evobudget/evb_model.h"
#include "evobudget/evb_text.h"
#include "compressors/db_impl.h"
#include "core/fileio.h"
#include "core/half.h"
#include "core/msgpack_scan.h"
#include "models/safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ctype.h>
#include <math.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

/* Limits on what an index may say: far above any real model, low enough that no product overflows. */
#define MAX_DIM   (1 << 20)       /* rows, cols */
#define MAX_UNIT  (1 << 20)

struct evb_db {
    char dir[1024];
    char model_fp[17], calib_fp[17];
    evb_db_entry *e;           /* [cap], n in use */
    int n, cap;
    pthread_mutex_t lock;      /* guards e, n, cap, n_replaced */
    pthread_mutex_t wlock;     /* guards writers and lock_fd */
    int writers, lock_fd;      /* the directory's exclusive lock, held while writers > 0 */
    int n_units;               /* 0 until evb_db_check_model */
    int *shape;                /* [n_units][2] rows, cols of each unit of the model */
    int n_replaced;
};

#define REBUILD_HINT "(hint: rerun 'evobudget db build --out %s' with the options that built it: it verifies every level and rebuilds missing and damaged ones)"
#define DELETE_HINT "(hint: delete %s and rebuild it with 'evobudget db build')"

void evb_fingerprint_windows(const evb_windows *w, char hex[17]) {
    int hdr[2] = {w->n, w->seq_len};
    uint64_t h = XXH64(hdr, sizeof hdr, 0);
    h = XXH64(w->len, sizeof(int) * (size_t)w->n, h);
    evb_hash_hex(w->tokens, sizeof(int32_t) * (size_t)w->n * w->seq_len, h, hex);
}

// ---- files ----

/* Writes n bytes to dir/name (core's atomic write). */
static int write_file(const char *dir, const char *name, const void *data, size_t n) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return evb_write_atomic(path, data, n);
}

/* Maps dir/name read-only; what says the file cannot be used goes into the message, with hint. */
static int map_file(const char *dir, const char *name, const char *hint, const uint8_t **map, size_t *size) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) EVB_ERRORF(EVB_EIO, "%s: cannot open: %s %s", path, strerror(errno), hint);
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size == 0) {
        close(fd);
        EVB_ERRORF(EVB_EFORMAT, "%s: empty or not a regular file %s", path, hint);
    }
    void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) EVB_ERRORF(EVB_EIO, "%s: cannot map: %s", path, strerror(e));
    *map = p; *size = (size_t)sb.st_size;
    return EVB_SUCCESS;
}

// ---- the index ----

static void pack_str(msgpack_packer *pk, const char *s) {
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static int cmp_entry(const void *a, const void *b) {
    const evb_db_entry *x = a, *y = b;
    if (x->unit != y->unit) return x->unit < y->unit ? -1 : 1;
    return strcmp(x->file, y->file);
}

/* Rewrites index.msgpack from the entries (caller holds db->lock and the writer lock). The file lists them
 * sorted, so that it does not depend on the order levels were built in; in memory they stay in the order
 * they were added, so an entry's index is stable for as long as the database is open. */
static int write_index(evb_db *db) {
    evb_db_entry *sorted = malloc(sizeof *sorted * (db->n > 0 ? (size_t)db->n : 1));
    if (!sorted) EVB_ERROR("out of memory", EVB_ENOMEM);
    if (db->n > 0) memcpy(sorted, db->e, sizeof *sorted * (size_t)db->n);
    if (db->n > 1) qsort(sorted, (size_t)db->n, sizeof *sorted, cmp_entry);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    pack_str(&pk, "format"); msgpack_pack_int(&pk, EVB_DB_FORMAT);
    pack_str(&pk, "model"); pack_str(&pk, db->model_fp);
    pack_str(&pk, "calib"); pack_str(&pk, db->calib_fp);
    pack_str(&pk, "entries"); msgpack_pack_array(&pk, (size_t)db->n);
    for (int i = 0; i < db->n; i++) {
        const evb_db_entry *e = &sorted[i];
        msgpack_pack_map(&pk, e->kind == EVB_LEVEL_GGUF ? 20 : 19);
        pack_str(&pk, "unit"); msgpack_pack_int(&pk, e->unit);
        pack_str(&pk, "method"); pack_str(&pk, e->method);
        pack_str(&pk, "kind"); msgpack_pack_int(&pk, e->kind);
        pack_str(&pk, "dtype"); msgpack_pack_int(&pk, e->dtype);
        pack_str(&pk, "sparsity"); msgpack_pack_double(&pk, e->sparsity);
        pack_str(&pk, "n_keep"); msgpack_pack_int(&pk, e->n_keep);
        pack_str(&pk, "m"); msgpack_pack_int(&pk, e->m);
        pack_str(&pk, "n_removed"); msgpack_pack_int64(&pk, e->n_removed);
        pack_str(&pk, "bits"); msgpack_pack_int(&pk, e->bits);
        pack_str(&pk, "group_size"); msgpack_pack_int(&pk, e->group_size);
        pack_str(&pk, "sym"); msgpack_pack_int(&pk, e->sym);
        pack_str(&pk, "rows"); msgpack_pack_int(&pk, e->rows);
        pack_str(&pk, "cols"); msgpack_pack_int(&pk, e->cols);
        pack_str(&pk, "params_kept"); msgpack_pack_double(&pk, e->params_kept);
        pack_str(&pk, "bits_stored"); msgpack_pack_double(&pk, e->bits_stored);
        pack_str(&pk, "bytes"); msgpack_pack_uint64(&pk, e->bytes);
        pack_str(&pk, "recon_error"); msgpack_pack_double(&pk, e->recon_error);
        pack_str(&pk, "checksum"); msgpack_pack_uint64(&pk, e->checksum);
        pack_str(&pk, "file"); pack_str(&pk, e->file);
        if (e->kind == EVB_LEVEL_GGUF) { pack_str(&pk, "gguf_type"); msgpack_pack_int(&pk, e->gguf_type); }
    }
    pack_str(&pk, "checksum");
    msgpack_pack_fix_uint64(&pk, XXH64(sb.data, sb.size, 0));
    int st = sb.data ? write_file(db->dir, "index.msgpack", sb.data, sb.size) : EVB_RAISEF(EVB_ENOMEM, "out of memory");
    msgpack_sbuffer_destroy(&sb);
    free(sorted);
    return st;
}

static int obj_key(const msgpack_object_kv *kv, const char *k) {
    return kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen(k) &&
           memcmp(kv->key.via.str.ptr, k, kv->key.via.str.size) == 0;
}

/* An integer object within [lo, hi] (no float is taken for an integer field). */
static int obj_int(const msgpack_object *o, int64_t lo, int64_t hi, int64_t *out) {
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (o->via.u64 > (uint64_t)INT64_MAX) return 0;
        *out = (int64_t)o->via.u64;
    } else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) *out = o->via.i64;
    else return 0;
    return *out >= lo && *out <= hi;
}

static int obj_real(const msgpack_object *o, double *out) {
    if (o->type != MSGPACK_OBJECT_FLOAT32 && o->type != MSGPACK_OBJECT_FLOAT64) return 0;
    *out = o->via.f64;
    return 1;
}

static int obj_str(const msgpack_object *o, char *out, size_t cap) {
    if (o->type != MSGPACK_OBJECT_STR || o->via.str.size >= cap || memchr(o->via.str.ptr, 0, o->via.str.size)) return 0;
    memcpy(out, o->via.str.ptr, o->via.str.size);
    out[o->via.str.size] = '\0';
    return 1;
}

/* 1 when a GGUF level may be of this type: a block type of the table (not F32, F16 or BF16, the dense ones). */
static int gguf_level_type(int type) {
    const evb_gguf_type_info *t = evb_gguf_type_get(type);
    return t && t->block > 1;
}

static void level_file(evb_db_entry *e) {
    if (e->kind == EVB_LEVEL_SPARSE) {
        if (e->m) snprintf(e->file, sizeof e->file, "u%04d_%s_%d-%d.bin", e->unit, e->method, e->n_keep, e->m);
        else if (e->n_removed) snprintf(e->file, sizeof e->file, "u%04d_%s_r%lld.bin", e->unit, e->method, (long long)e->n_removed);
        else snprintf(e->file, sizeof e->file, "u%04d_%s_s%.6f.bin", e->unit, e->method, e->sparsity);
    } else if (e->kind == EVB_LEVEL_GGUF) {
        const evb_gguf_type_info *t = evb_gguf_type_get(e->gguf_type);
        char name[16];
        size_t i = 0;
        for (; t && t->name[i] && i + 1 < sizeof name; i++) name[i] = (char)tolower((unsigned char)t->name[i]);
        name[i] = 0;
        snprintf(e->file, sizeof e->file, "u%04d_%s_%s.bin", e->unit, e->method, t ? name : "unknown");
    } else if (e->kind == EVB_LEVEL_STRUCT)
        snprintf(e->file, sizeof e->file, "u%04d_%s_g%dr%lld.bin", e->unit, e->method, e->group_size,
                 (long long)e->n_removed);
    else snprintf(e->file, sizeof e->file, "u%04d_%s_b%dg%d%s.bin", e->unit, e->method, e->bits,
                  e->group_size, e->sym ? "s" : "a");
}

static int same_level(const evb_db_entry *a, const evb_db_entry *b) {
    return a->unit == b->unit && a->kind == b->kind && strcmp(a->method, b->method) == 0 &&
           (a->kind == EVB_LEVEL_SPARSE
                ? a->n_removed == b->n_removed && (a->n_removed || fabs(a->sparsity - b->sparsity) < 1e-9) &&
                      a->n_keep == b->n_keep && a->m == b->m
                : a->kind == EVB_LEVEL_GGUF ? a->gguf_type == b->gguf_type
                : a->kind == EVB_LEVEL_STRUCT ? a->group_size == b->group_size && a->n_removed == b->n_removed
                : a->bits == b->bits && a->group_size == b->group_size && a->sym == b->sym);
}

/* A structured level's payload: "EVBT", u16 version, u16 dtype, u32 rows, cols, group, n_kept, updated. */
#define STRUCT_HEADER 28
/* 1 when a structured level's method stores updated kept columns (obs), 0 when it keeps the dense ones. */
static int struct_updates(const evb_db_entry *e) { return strcmp(e->method, "obs") == 0; }

/* Bytes of one stored value of dtype d (a valid evb_db_dtype). */
static unsigned value_size(int d) { return d == EVB_DB_F32 ? 4 : 2; }

/* The payload size an entry's shape, dtype and costs imply; 0 when they are inconsistent or overflow. */
static uint64_t implied_bytes(const evb_db_entry *e) {
    uint64_t n = (uint64_t)e->rows * (uint64_t)e->cols, size = 0; /* both at most MAX_DIM: no overflow */
    if (e->kind == EVB_LEVEL_SPARSE) {
        double nnz = e->params_kept;
        unsigned vs = value_size(e->dtype);
        if (!(nnz >= 0 && nnz <= (double)n && nnz == floor(nnz))) return 0;
        if (e->bits_stored != (double)n + 8.0 * vs * nnz) return 0;
        size = 24 + (n + 7) / 8 + vs * (uint64_t)nnz; /* nnz at most 2^40 */
    } else if (e->kind == EVB_LEVEL_STRUCT) {
        if (e->group_size < 1 || e->cols % e->group_size || e->n_removed > e->cols / e->group_size) return 0;
        uint64_t kept = (uint64_t)(e->cols / e->group_size - e->n_removed),
                in = kept * (uint64_t)e->group_size;
        if (e->params_kept != (double)(in * (uint64_t)e->rows)) return 0;
        size = STRUCT_HEADER + 4 * kept + 4 * (uint64_t)e->rows + (struct_updates(e) ? value_size(e->dtype) * in * e->rows : 0);
        if (e->bits_stored != 8.0 * (double)(size - STRUCT_HEADER)) return 0;
    } else if (e->kind == EVB_LEVEL_GGUF) {
        uint64_t rb = evb_gguf_row_bytes(e->gguf_type, e->cols), blocks = rb * (uint64_t)e->rows; /* rb <= 4 cols */
        if (!rb || e->params_kept != (double)n || e->bits_stored != 8.0 * (double)blocks) return 0;
        size = 24 + blocks;
    } else {
        double extra = e->bits_stored - (double)n * e->bits, ns = extra / 64;
        if (e->params_kept != (double)n || !(ns >= (double)e->rows && ns <= (double)n && ns == floor(ns))) return 0;
        uint64_t nsi = (uint64_t)ns;
        if (nsi % (uint64_t)e->rows) return 0;
        size = 24 + (n * (uint64_t)e->bits + 7) / 8 + 8 * nsi + 4 * (uint64_t)e->cols;
    }
    return size;
}

/* Parses and checks one entry map of an index of this format (3: no dtype, the values are float32); NULL
 * when it is sound, else what is wrong with it. */
static const char *parse_entry(const msgpack_object *o, int64_t format, evb_db_entry *e) {
    static const char *const keys[] = {"unit", "method", "kind", "sparsity", "n_keep", "m", "n_removed", "bits",
                                       "group_size", "sym", "rows", "cols", "params_kept", "bits_stored", "bytes",
                                       "recon_error", "checksum", "file", "dtype"};
    enum { N_KEYS = sizeof keys / sizeof *keys };
    const int n_keys = format == 3 ? N_KEYS - 1 : N_KEYS;
    if (o->type != MSGPACK_OBJECT_MAP) return "not a map";
    memset(e, 0, sizeof *e);
    unsigned seen = 0;
    int seen_type = 0;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object_kv *kv = &o->via.map.ptr[i];
        const msgpack_object *v = &kv->val;
        int64_t t = 0;
        if (obj_key(kv, "gguf_type")) { /* GGUF levels only */
            if (seen_type++) return "a field given twice";
            if (!obj_int(v, 0, 255, &t) || !evb_gguf_type_get((int)t)) return "field 'gguf_type' is not a known GGUF type";
            e->gguf_type = (int)t;
            continue;
        }
        int k = 0;
        while (k < n_keys && !obj_key(kv, keys[k])) k++;
        if (k == n_keys) return "an unknown field";
        if (seen >> k & 1u) return "a field given twice";
        seen |= 1u << k;
        int64_t x = 0;
        int ok;
        switch (k) {
        case 0: ok = obj_int(v, 0, MAX_UNIT - 1, &x); e->unit = (int)x; break;
        case 1: ok = obj_str(v, e->method, sizeof e->method); break;
        case 2: ok = obj_int(v, 0, 3, &x); e->kind = (int)x; break;
        case 3: ok = obj_real(v, &e->sparsity) && e->sparsity >= 0 && e->sparsity <= 1; break;
        case 4: ok = obj_int(v, 0, 64, &x); e->n_keep = (int)x; break;
        case 5: ok = obj_int(v, 0, 64, &x); e->m = (int)x; break;
        case 6: ok = obj_int(v, 0, (int64_t)MAX_DIM * MAX_DIM, &x); e->n_removed = x; break;
        case 7: ok = obj_int(v, 0, 8, &x); e->bits = (int)x; break;
        case 8: ok = obj_int(v, 0, MAX_DIM, &x); e->group_size = (int)x; break;
        case 9: ok = obj_int(v, 0, 1, &x); e->sym = (int)x; break;
        case 10: ok = obj_int(v, 1, MAX_DIM, &x); e->rows = (int)x; break;
        case 11: ok = obj_int(v, 1, MAX_DIM, &x); e->cols = (int)x; break;
        case 12: ok = obj_real(v, &e->params_kept); break;
        case 13: ok = obj_real(v, &e->bits_stored); break;
        case 14: ok = v->type == MSGPACK_OBJECT_POSITIVE_INTEGER; e->bytes = v->via.u64; break;
        case 15: ok = obj_real(v, &e->recon_error) && !(e->recon_error < 0); break;
        case 16: ok = v->type == MSGPACK_OBJECT_POSITIVE_INTEGER; e->checksum = v->via.u64; break;
        case 17: ok = obj_str(v, e->file, sizeof e->file); break;
        default: ok = obj_int(v, EVB_DB_F32, EVB_DB_F16, &x); e->dtype = (int)x; break;
        }
        if (!ok) {
            static _Thread_local char why[64];
            snprintf(why, sizeof why, "field '%s' has the wrong type or is out of range", keys[k]);
            return why;
        }
    }
    if (seen != (1u << n_keys) - 1) return "a field is missing";
    const evb_method *me = evb_method_find(e->method);
    if (!me || me->kind != e->kind) return "an unknown method, or a method of the other kind";
    if (seen_type && e->kind != EVB_LEVEL_GGUF) return "a 'gguf_type' on a level that is not GGUF";
    uint64_t n = (uint64_t)e->rows * (uint64_t)e->cols;
    if (e->kind == EVB_LEVEL_SPARSE) {
        if (e->bits || e->group_size || e->sym) return "a sparse level with quantization parameters";
        if (e->m ? !(e->n_keep >= 1 && e->n_keep < e->m) : e->n_keep != 0) return "a malformed N:M pattern";
        if ((uint64_t)e->n_removed > n) return "more weights removed than the unit has";
    } else if (e->kind == EVB_LEVEL_GGUF) {
        if (!seen_type) return "a GGUF level without its 'gguf_type'";
        if (e->bits || e->group_size || e->sym || e->n_keep || e->m || e->n_removed || e->sparsity != 0)
            return "a GGUF level with other levels' parameters";
        if (e->dtype != EVB_DB_F32) return "a GGUF level with a value dtype";
        if (!gguf_level_type(e->gguf_type) || !evb_gguf_row_ok(e->gguf_type, e->cols)) return "a GGUF type its rows cannot hold";
    } else if (e->kind == EVB_LEVEL_STRUCT) {
        if (e->bits || e->sym || e->n_keep || e->m || e->sparsity != 0)
            return "a structured level with other levels' parameters";
        if (e->group_size < 1 || e->cols % e->group_size || e->n_removed > e->cols / e->group_size)
            return "a structured level whose groups do not divide its columns";
        if (!struct_updates(e) && e->dtype != EVB_DB_F32)
            return "a structured level without updates with a value dtype";
    } else {
        if (e->bits < 1 || e->n_keep || e->m || e->n_removed) return "a quantized level with sparsity parameters";
        if (e->dtype != EVB_DB_F32) return "a quantized level whose scales are not float32";
    }
    if (implied_bytes(e) != e->bytes) return "its size disagrees with its shape and costs";
    char expect[sizeof e->file];
    evb_db_entry named = *e;
    level_file(&named);
    snprintf(expect, sizeof expect, "%s", named.file);
    if (strcmp(expect, e->file)) return "its file name is not the one its level gives";
    return NULL;
}

/* Parses an index held in memory (path names it in messages; dir in hints). model_fp/calib_fp: what it
 * must have been built for (NULL: anything). Writes the file's fingerprints and its entries (*out, n). */
static int parse_index(const char *path, const char *dir, const uint8_t *map, size_t size, const char *model_fp,
                       const char *calib_fp, char mfp[17], char cfp[17], evb_db_entry **out, int *n_out) {
    *out = NULL; *n_out = 0;
    mfp[0] = cfp[0] = '\0';
    evb_msgpack_scan_info scan; /* every count and length must fit in the bytes there are */
    if (evb_msgpack_scan(map, size, size, size, EVB_MSGPACK_MAX_DEPTH, &scan) != EVB_MSGPACK_WHOLE || scan.len != size)
        EVB_ERRORF(EVB_EFORMAT, "%s: not a level database index (not one msgpack object) " DELETE_HINT, path, dir);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    int st = EVB_SUCCESS;
    if (msgpack_unpack_next(&u, (const char *)map, size, &off) != MSGPACK_UNPACK_SUCCESS || off != size || u.data.type != MSGPACK_OBJECT_MAP)
        st = EVB_RAISEF(EVB_EFORMAT, "%s: not a level database index (not a msgpack map) " DELETE_HINT, path, dir);
    const msgpack_object *entries = NULL, *sum = NULL;
    int64_t format = -1;
    int bad_fp = 0;
    for (uint32_t i = 0; !st && i < u.data.via.map.size; i++) {
        const msgpack_object_kv *kv = &u.data.via.map.ptr[i];
        if (obj_key(kv, "format")) { if (!obj_int(&kv->val, 0, INT32_MAX, &format)) format = -2; }
        else if (obj_key(kv, "model")) bad_fp |= !obj_str(&kv->val, mfp, 17);
        else if (obj_key(kv, "calib")) bad_fp |= !obj_str(&kv->val, cfp, 17);
        else if (obj_key(kv, "entries")) entries = &kv->val;
        else if (obj_key(kv, "checksum")) sum = &kv->val;
    }
    /* Format 3 differs from 4 only in having no dtype (its values are float32): it is read. */
    if (!st && format != EVB_DB_FORMAT && format != 3) {
        if (format >= 1 && format < EVB_DB_FORMAT)
            st = EVB_RAISEF(EVB_EFORMAT, "%s: database format %lld, written by an older evobudget; this program reads formats 3 and %d "
                            DELETE_HINT, path, (long long)format, EVB_DB_FORMAT, dir);
        else if (format > EVB_DB_FORMAT)
            st = EVB_RAISEF(EVB_EFORMAT, "%s: database format %lld, written by a newer evobudget; this program reads format %d "
                            "(hint: use that evobudget, or delete %s and rebuild it)", path, (long long)format, EVB_DB_FORMAT, dir);
        else st = EVB_RAISEF(EVB_EFORMAT, "%s: no valid format version " DELETE_HINT, path, dir);
    }
    /* The checksum: the last 9 bytes are 0xcf and the big-endian xxHash64 of everything before them, and
     * the map's "checksum" holds that value. */
    if (!st) {
        uint64_t stored = 0;
        for (int i = 0; size >= 9 && i < 8; i++) stored = stored << 8 | map[size - 8 + i];
        if (!sum || sum->type != MSGPACK_OBJECT_POSITIVE_INTEGER || size < 9 || map[size - 9] != 0xcf ||
            sum->via.u64 != stored || XXH64(map, size - 9, 0) != stored)
            st = EVB_RAISEF(EVB_EFORMAT, "%s: checksum mismatch: the index is damaged " DELETE_HINT, path, dir);
    }
    if (!st && (bad_fp || strlen(mfp) != 16 || strlen(cfp) != 16 || strspn(mfp, "0123456789abcdef") != 16 ||
                strspn(cfp, "0123456789abcdef") != 16))
        st = EVB_RAISEF(EVB_EFORMAT, "%s: the model or calibration fingerprint is missing or malformed " DELETE_HINT, path, dir);
    /* Read-only uses: no model_fp (inspection) checks nothing; no calib_fp (evaluating levels on other
     * text) checks the model only. */
    if (!st && model_fp && strcmp(mfp, model_fp))
        st = EVB_RAISEF(EVB_EFORMAT, "%s: built for another model (fingerprint %s, this model %s) (hint: use another --db directory or delete this one)", path, mfp, model_fp);
    else if (!st && calib_fp && strcmp(cfp, calib_fp))
        st = EVB_RAISEF(EVB_EFORMAT, "%s: built from other calibration data (fingerprint %s, now %s) (hint: use another --db directory or delete this one)", path, cfp, calib_fp);
    else if (!st && (!entries || entries->type != MSGPACK_OBJECT_ARRAY))
        st = EVB_RAISEF(EVB_EFORMAT, "%s: no entries array " DELETE_HINT, path, dir);
    evb_db_entry *e = NULL;
    int n = 0;
    if (!st && entries->via.array.size) {
        e = calloc(entries->via.array.size, sizeof *e); /* at most one per byte of the file (evb_msgpack_scan) */
        if (!e) st = EVB_RAISEF(EVB_ENOMEM, "out of memory");
        for (uint32_t i = 0; !st && i < entries->via.array.size; i++) {
            const char *why = parse_entry(&entries->via.array.ptr[i], format, &e[n]);
            for (int j = 0; !why && j < n; j++)
                if (same_level(&e[j], &e[n]) || strcmp(e[j].file, e[n].file) == 0) why = "the same level as an earlier entry";
            if (why) st = EVB_RAISEF(EVB_EFORMAT, "%s: entry %u: %s " DELETE_HINT, path, i, why, dir);
            else n++;
        }
    }
    msgpack_unpacked_destroy(&u);
    if (st) { free(e); return st; }
    *out = e; *n_out = n;
    return EVB_SUCCESS;
}

/* The shape check of one entry against the bound model (caller holds db->lock); path names the index. */
static int check_shape(const evb_db *db, const evb_db_entry *e) {
    if (!db->n_units) return EVB_SUCCESS;
    if (e->unit >= db->n_units)
        EVB_ERRORF(EVB_EFORMAT, "%s/index.msgpack: level %s is of unit %d, but the model has %d units (hint: this database was not "
                   "built for this model: use another --db directory or delete this one)", db->dir, e->file, e->unit, db->n_units);
    const int *s = db->shape + 2 * e->unit;
    if (e->rows != s[0] || e->cols != s[1])
        EVB_ERRORF(EVB_EFORMAT, "%s/index.msgpack: level %s is %dx%d, but unit %d of the model is %dx%d (hint: this database was not "
                   "built for this model: use another --db directory or delete this one)", db->dir, e->file, e->rows, e->cols,
                   e->unit, s[0], s[1]);
    return EVB_SUCCESS;
}

/* Reads dir/index.msgpack into the (empty) database. */
static int read_index(evb_db *db, const char *model_fp, const char *calib_fp) {
    char path[1200], hint[1200];
    snprintf(path, sizeof path, "%s/index.msgpack", db->dir);
    snprintf(hint, sizeof hint, DELETE_HINT, db->dir);
    const uint8_t *map;
    size_t size;
    int st = map_file(db->dir, "index.msgpack", hint, &map, &size);
    if (st) return st;
    evb_db_entry *e;
    int n;
    st = parse_index(path, db->dir, map, size, model_fp, calib_fp, db->model_fp, db->calib_fp, &e, &n);
    munmap((void *)map, size);
    if (st) return st;
    db->e = e; db->n = db->cap = n;
    return EVB_SUCCESS;
}

/* Merges the index on disk into the entries in memory (caller holds the writer lock): levels another
 * process added are appended, levels it rebuilt replace ours; ours that it lacks are kept. */
static int reload_index(evb_db *db) {
    char path[1200];
    snprintf(path, sizeof path, "%s/index.msgpack", db->dir);
    struct stat sb;
    if (stat(path, &sb) != 0 && errno == ENOENT) return EVB_SUCCESS;
    evb_db tmp = {0};
    snprintf(tmp.dir, sizeof tmp.dir, "%s", db->dir);
    int st = read_index(&tmp, db->model_fp, db->calib_fp);
    pthread_mutex_lock(&db->lock);
    for (int i = 0; !st && i < tmp.n; i++) st = check_shape(db, &tmp.e[i]);
    if (!st && db->n + tmp.n > db->cap) {
        int cap = db->n + tmp.n + 16;
        evb_db_entry *grown = realloc(db->e, (size_t)cap * sizeof *grown);
        if (!grown) st = EVB_RAISEF(EVB_ENOMEM, "out of memory");
        else { db->e = grown; db->cap = cap; }
    }
    for (int i = 0; !st && i < tmp.n; i++) {
        int at = -1;
        for (int j = 0; j < db->n && at < 0; j++) if (same_level(&db->e[j], &tmp.e[i])) at = j;
        if (at < 0) at = db->n++;
        db->e[at] = tmp.e[i];
    }
    pthread_mutex_unlock(&db->lock);
    free(tmp.e);
    return st;
}

// ---- the writer lock ----

/* Removes temporary files of killed writers (caller holds the writer lock: no writer is running). */
static void remove_strays(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (!strstr(de->d_name, ".tmp.")) continue;
        char stray[1300];
        snprintf(stray, sizeof stray, "%s/%s", dir, de->d_name);
        unlink(stray);
    }
    if (d) closedir(d);
}

static void say_waiting(const char *dir) {
    fprintf(stderr, "evobudget: %s: another process is writing this level database; waiting for it to finish\n", dir);
}

int evb_db_write_begin(evb_db *db) {
    pthread_mutex_lock(&db->wlock);
    int st = EVB_SUCCESS;
    if (db->writers == 0) {
        int fd = -1;
        st = evb_lock_dir_waiting(db->dir, EVB_LOCK_EXCLUSIVE, say_waiting, &fd);
        if (!st) st = reload_index(db);
        if (!st) { remove_strays(db->dir); db->lock_fd = fd; }
        else evb_unlock_dir(fd);
    }
    if (!st) db->writers++;
    pthread_mutex_unlock(&db->wlock);
    return st;
}

void evb_db_write_end(evb_db *db) {
    pthread_mutex_lock(&db->wlock);
    if (db->writers > 0 && --db->writers == 0) { evb_unlock_dir(db->lock_fd); db->lock_fd = -1; }
    pthread_mutex_unlock(&db->wlock);
}

// ---- opening ----

static evb_db *db_new(const char *dir, const char *model_fp, const char *calib_fp) {
    evb_db *db = calloc(1, sizeof *db);
    if (!db) return NULL;
    snprintf(db->dir, sizeof db->dir, "%s", dir);
    snprintf(db->model_fp, sizeof db->model_fp, "%s", model_fp ? model_fp : "");
    snprintf(db->calib_fp, sizeof db->calib_fp, "%s", calib_fp ? calib_fp : "");
    db->lock_fd = -1;
    pthread_mutex_init(&db->lock, NULL);
    pthread_mutex_init(&db->wlock, NULL);
    return db;
}

int evb_db_open(const char *dir, const char *model_fp, const char *calib_fp, int create, evb_db **out) {
    *out = NULL;
    if (strlen(dir) > 900) EVB_ERRORF(EVB_EINVAL, "%.60s...: database path too long", dir);
    if ((!model_fp || !calib_fp) && create) EVB_ERROR("a database is created for a model and calibration set", EVB_EINVAL);
    evb_db *db = db_new(dir, model_fp, calib_fp);
    if (!db) EVB_ERROR("out of memory", EVB_ENOMEM);
    struct stat sb;
    char path[1200];
    snprintf(path, sizeof path, "%s/index.msgpack", dir);
    int st = EVB_SUCCESS;
    if (stat(path, &sb) == 0) st = read_index(db, model_fp, calib_fp);
    else if (!create) st = EVB_RAISEF(EVB_EIO, "%s: no level database here (hint: build one with 'evobudget db build')", dir);
    else {
        if (mkdir(dir, 0755) != 0 && errno != EEXIST) st = EVB_RAISEF(EVB_EIO, "%s: cannot create: %s", dir, strerror(errno));
        /* Under the writer lock: another process may be creating it at the same moment (the reload then
         * reads its index). */
        if (!st) st = evb_db_write_begin(db);
        if (!st) {
            if (stat(path, &sb) != 0) {
                pthread_mutex_lock(&db->lock);
                st = write_index(db);
                pthread_mutex_unlock(&db->lock);
            }
            evb_db_write_end(db);
        }
    }
    if (st) { evb_db_close(db); return st; }
    *out = db;
    return EVB_SUCCESS;
}

int evb_db_open_mem_(const char *name, const uint8_t *data, size_t size, evb_db **out) {
    *out = NULL;
    evb_db *db = db_new(name, NULL, NULL);
    if (!db) EVB_ERROR("out of memory", EVB_ENOMEM);
    int st = parse_index(name, name, data, size, NULL, NULL, db->model_fp, db->calib_fp, &db->e, &db->n);
    db->cap = db->n;
    if (st) { evb_db_close(db); return st; }
    *out = db;
    return EVB_SUCCESS;
}

const char *evb_db_model_fingerprint(const evb_db *db) { return db->model_fp; }
const char *evb_db_calib_fingerprint(const evb_db *db) { return db->calib_fp; }

void evb_db_close(evb_db *db) {
    if (!db) return;
    evb_unlock_dir(db->lock_fd);
    pthread_mutex_destroy(&db->lock);
    pthread_mutex_destroy(&db->wlock);
    free(db->shape);
    free(db->e);
    free(db);
}

int evb_db_check_model(evb_db *db, const evb_model *m) {
    int U = evb_model_n_units(m);
    int *shape = malloc(sizeof(int) * 2 * (size_t)(U > 0 ? U : 1));
    if (!shape) EVB_ERROR("out of memory", EVB_ENOMEM);
    for (int u = 0; u < U; u++) evb_model_unit_shape(m, u, &shape[2 * u], &shape[2 * u + 1]);
    pthread_mutex_lock(&db->lock);
    free(db->shape);
    db->shape = shape; db->n_units = U;
    int st = EVB_SUCCESS;
    for (int i = 0; !st && i < db->n; i++) st = check_shape(db, &db->e[i]);
    pthread_mutex_unlock(&db->lock);
    return st;
}

int evb_db_count(const evb_db *db) {
    pthread_mutex_lock((pthread_mutex_t *)&db->lock);
    int n = db->n;
    pthread_mutex_unlock((pthread_mutex_t *)&db->lock);
    return n;
}

int evb_db_n_replaced(const evb_db *db) {
    pthread_mutex_lock((pthread_mutex_t *)&db->lock);
    int n = db->n_replaced;
    pthread_mutex_unlock((pthread_mutex_t *)&db->lock);
    return n;
}

evb_db_entry evb_db_get(const evb_db *db, int i) {
    evb_db_entry e = {0};
    pthread_mutex_lock((pthread_mutex_t *)&db->lock);
    EVB_ASSERT(i >= 0 && i < db->n);
    e = db->e[i];
    pthread_mutex_unlock((pthread_mutex_t *)&db->lock);
    return e;
}

int evb_db_find(const evb_db *db, const evb_db_entry *key) {
    pthread_mutex_lock((pthread_mutex_t *)&db->lock);
    int found = -1;
    for (int i = 0; i < db->n && found < 0; i++) if (same_level(&db->e[i], key)) found = i;
    pthread_mutex_unlock((pthread_mutex_t *)&db->lock);
    return found;
}

// ---- adding levels ----

/* Writes the payload, then records the entry and rewrites the index, under the writer lock. */
static int commit(evb_db *db, evb_db_entry *e, const uint8_t *payload, size_t n) {
    e->bytes = n;
    e->checksum = XXH64(payload, n, 0);
    int st = evb_db_write_begin(db);
    if (st) return st;
    st = write_file(db->dir, e->file, payload, n);
    pthread_mutex_lock(&db->lock);
    int at = -1;
    for (int i = 0; !st && i < db->n && at < 0; i++) if (same_level(&db->e[i], e)) at = i;
    if (!st && at < 0 && db->n == db->cap) {
        int cap = db->cap ? 2 * db->cap : 64;
        evb_db_entry *grown = realloc(db->e, (size_t)cap * sizeof *grown);
        if (!grown) st = EVB_RAISEF(EVB_ENOMEM, "out of memory");
        else { db->e = grown; db->cap = cap; }
    }
    if (!st) {
        if (at >= 0) db->n_replaced++;
        else at = db->n++;
        db->e[at] = *e;
        st = write_index(db);
    }
    pthread_mutex_unlock(&db->lock);
    evb_db_write_end(db);
    return st;
}

static void put_u32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint32_t get_u32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

/* What a level to be stored must satisfy: a known method of its kind, a sane shape, the model's shape
 * once the database is bound to one. */
static int check_meta(evb_db *db, const evb_db_entry *e) {
    const evb_method *me = evb_method_find(e->method);
    if (!me || me->kind != e->kind)
        EVB_ERRORF(EVB_EINVAL, "level of unit %d: method '%s' is not a %s method", e->unit, e->method,
                   e->kind == EVB_LEVEL_GGUF ? "GGUF" : e->kind == EVB_LEVEL_STRUCT ? "structured"
                   : e->kind ? "quantization" : "sparsity");
    if (e->unit < 0 || e->unit >= MAX_UNIT || e->rows < 1 || e->rows > MAX_DIM || e->cols < 1 || e->cols > MAX_DIM)
        EVB_ERRORF(EVB_EINVAL, "level of unit %d: shape %dx%d out of range", e->unit, e->rows, e->cols);
    /* What the index reader refuses (parse_entry) is not stored. */
    if (e->kind == EVB_LEVEL_GGUF) {
        const evb_gguf_type_info *t = evb_gguf_type_get(e->gguf_type);
        if (!gguf_level_type(e->gguf_type) || !evb_gguf_row_ok(e->gguf_type, e->cols))
            EVB_ERRORF(EVB_EINVAL, "level of unit %d: GGUF type %s cannot hold rows of %d inputs (whole blocks of %d)", e->unit,
                       t ? t->name : "?", e->cols, t ? t->block : 0);
        if (e->bits || e->group_size || e->sym || e->n_keep || e->m || e->n_removed || e->sparsity != 0)
            EVB_ERRORF(EVB_EINVAL, "level of unit %d: a GGUF level with other levels' parameters", e->unit);
    } else if (e->kind == EVB_LEVEL_STRUCT) {
        if (e->bits || e->sym || e->n_keep || e->m || e->gguf_type || e->sparsity != 0 || e->group_size < 1 ||
            e->cols % e->group_size || e->n_removed < 0 || e->n_removed > e->cols / e->group_size)
            EVB_ERRORF(EVB_EINVAL, "level of unit %d: a structured level needs groups dividing its %d columns and no other "
                       "levels' parameters", e->unit, e->cols);
    } else if (e->kind == EVB_LEVEL_SPARSE ? e->bits || e->group_size || e->sym || e->gguf_type : e->n_keep || e->m || e->n_removed || e->gguf_type)
        EVB_ERRORF(EVB_EINVAL, "level of unit %d: a %s level with %s parameters", e->unit, e->kind ? "quantized" : "sparse",
                   e->kind ? "sparsity" : "quantization");
    pthread_mutex_lock(&db->lock);
    int st = check_shape(db, e);
    pthread_mutex_unlock(&db->lock);
    return st ? evb_errorf(__FILE__, __LINE__, EVB_EINVAL, "%s", evb_last_error()) : EVB_SUCCESS;
}

// ---- value dtypes ----

int evb_db_dtype_of(const char *d) {
    return strcmp(d, "BF16") == 0 ? EVB_DB_BF16 : strcmp(d, "F16") == 0 ? EVB_DB_F16 : EVB_DB_F32;
}

const char *evb_db_dtype_name(int d) {
    return d == EVB_DB_F32 ? "f32" : d == EVB_DB_BF16 ? "bf16" : d == EVB_DB_F16 ? "f16" : "?";
}

/* x as a 16-bit value of dtype d (BF16 or F16), rounded to nearest even, and back. */
static uint16_t to16(int d, float x) { return d == EVB_DB_BF16 ? evb_bf16_round(x) : evb_f32_to_f16(x); }
static float from16(int d, uint16_t h) { return d == EVB_DB_BF16 ? evb_bf16_value(h) : evb_f16_to_f32(h); }

/* The dtype values W [n] are stored in when dtype is asked: dtype, or F32 when a finite value would
 * overflow it (a SparseGPT update can leave float16's range; float32 holds anything). */
static int storable_dtype(int dtype, const float *W, size_t n) {
    if (dtype == EVB_DB_F32) return dtype;
    for (size_t i = 0; i < n; i++)
        if (isfinite(W[i]) && !isfinite(from16(dtype, to16(dtype, W[i])))) return EVB_DB_F32;
    return dtype;
}

int evb_db_round_sparse_(int dtype, float *W, size_t n) {
    dtype = storable_dtype(dtype, W, n);
    if (dtype != EVB_DB_F32)
        for (size_t i = 0; i < n; i++) W[i] = from16(dtype, to16(dtype, W[i]));
    return dtype;
}

/* The version of the sparse payloads written (1 is still read, see the top of the file). */
#define SPARSE_VERSION 2

int evb_db_put_sparse(evb_db *db, const evb_db_entry *meta, const float *W, double recon_error) {
    evb_db_entry e = *meta;
    e.kind = EVB_LEVEL_SPARSE;
    e.recon_error = recon_error;
    if (e.dtype < EVB_DB_F32 || e.dtype > EVB_DB_F16)
        EVB_ERRORF(EVB_EINVAL, "level of unit %d: no value dtype %d (0 f32, 1 bf16, 2 f16)", e.unit, e.dtype);
    int st = check_meta(db, &e);
    if (st) return st;
    size_t n = (size_t)e.rows * e.cols, nnz = 0;
    const int d = e.dtype = storable_dtype(e.dtype, W, n);
    const unsigned vs = value_size(d);
    /* A weight is kept where its stored value is not zero (a value too small for the dtype is removed). */
    for (size_t i = 0; i < n; i++) nnz += d == EVB_DB_F32 ? W[i] != 0.0f : (to16(d, W[i]) & 0x7fffu) != 0;
    size_t mask = (n + 7) / 8, size = 24 + mask + vs * nnz;
    uint8_t *buf = calloc(size, 1);
    if (!buf) EVB_ERROR("out of memory", EVB_ENOMEM);
    memcpy(buf, "EVBS", 4);
    put_u32(buf + 4, SPARSE_VERSION | (uint32_t)d << 16); put_u32(buf + 8, (uint32_t)e.rows); put_u32(buf + 12, (uint32_t)e.cols);
    put_u32(buf + 16, (uint32_t)nnz); put_u32(buf + 20, (uint32_t)((uint64_t)nnz >> 32));
    uint8_t *vals = buf + 24 + mask;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint16_t h = d == EVB_DB_F32 ? 0 : to16(d, W[i]);
        if (d == EVB_DB_F32 ? W[i] == 0.0f : (h & 0x7fffu) == 0) continue;
        buf[24 + i / 8] |= (uint8_t)(1u << (i % 8));
        if (d == EVB_DB_F32) memcpy(vals + 4 * k++, &W[i], 4);
        else memcpy(vals + 2 * k++, &h, 2);
    }
    e.params_kept = (double)nnz;
    e.bits_stored = (double)n + 8.0 * vs * (double)nnz;
    level_file(&e);
    st = commit(db, &e, buf, size);
    free(buf);
    return st;
}

int evb_db_put_quant(evb_db *db, const evb_db_entry *meta, const evb_quant_out *q, int n_groups, double recon_error) {
    evb_db_entry e = *meta;
    e.kind = EVB_LEVEL_QUANT;
    e.dtype = EVB_DB_F32;
    e.recon_error = recon_error;
    if (e.bits < 1 || e.bits > 8 || n_groups < 1 || n_groups > e.cols || !q->codes || !q->scale || !q->zero || !q->group_of)
        EVB_ERRORF(EVB_EINVAL, "quantized level of unit %d: bits %d, %d groups, and codes/scale/zero/group_of are all needed", e.unit, e.bits, n_groups);
    int st = check_meta(db, &e);
    if (st) return st;
    size_t n = (size_t)e.rows * e.cols, ncode = (n * (size_t)e.bits + 7) / 8, ns = (size_t)e.rows * n_groups;
    size_t size = 24 + ncode + 8 * ns + 4 * (size_t)e.cols;
    uint8_t *buf = calloc(size, 1);
    if (!buf) EVB_ERROR("out of memory", EVB_ENOMEM);
    memcpy(buf, "EVBQ", 4);
    put_u32(buf + 4, 1); put_u32(buf + 8, (uint32_t)e.rows); put_u32(buf + 12, (uint32_t)e.cols);
    put_u32(buf + 16, (uint32_t)e.bits); put_u32(buf + 20, (uint32_t)n_groups);
    for (size_t i = 0; i < n; i++) {
        uint32_t c = q->codes[i];
        size_t bit = i * (size_t)e.bits;
        for (int b = 0; b < e.bits; b++, bit++)
            if (c >> b & 1u) buf[24 + bit / 8] |= (uint8_t)(1u << (bit % 8));
    }
    memcpy(buf + 24 + ncode, q->scale, 4 * ns);
    memcpy(buf + 24 + ncode + 4 * ns, q->zero, 4 * ns);
    memcpy(buf + 24 + ncode + 8 * ns, q->group_of, 4 * (size_t)e.cols);
    e.params_kept = (double)n;
    e.bits_stored = (double)n * e.bits + 64.0 * (double)ns;
    level_file(&e);
    st = commit(db, &e, buf, size);
    free(buf);
    return st;
}

int evb_db_put_gguf(evb_db *db, const evb_db_entry *meta, const void *blocks, double recon_error) {
    evb_db_entry e = *meta;
    e.kind = EVB_LEVEL_GGUF;
    e.dtype = EVB_DB_F32;
    e.recon_error = recon_error;
    if (!blocks) EVB_ERRORF(EVB_EINVAL, "GGUF level of unit %d: no blocks", e.unit);
    int st = check_meta(db, &e);
    if (st) return st;
    size_t bytes = evb_gguf_row_bytes(e.gguf_type, e.cols) * (size_t)e.rows, size = 24 + bytes;
    uint8_t *buf = malloc(size);
    if (!buf) EVB_ERROR("out of memory", EVB_ENOMEM);
    memcpy(buf, "EVBG", 4);
    put_u32(buf + 4, 1); put_u32(buf + 8, (uint32_t)e.rows); put_u32(buf + 12, (uint32_t)e.cols);
    put_u32(buf + 16, (uint32_t)e.gguf_type); put_u32(buf + 20, 0);
    memcpy(buf + 24, blocks, bytes);
    e.params_kept = (double)e.rows * e.cols;
    e.bits_stored = 8.0 * (double)bytes;
    level_file(&e);
    st = commit(db, &e, buf, size);
    free(buf);
    return st;
}

// ---- reading levels ----

/* Writes the value x of element j: into float32 W, or rounded into bfloat16 H (exactly one is set). */
static inline void put_value(float *W, uint16_t *H, size_t j, float x) {
    if (H) H[j] = evb_bf16_round(x);
    else W[j] = x;
}

/* NULL when the header of payload p[size] is of entry e's kind, version, value dtype and shape; else what
 * differs, written into why[cap]. */
static const char *struct_header_mismatch(const evb_db_entry *e, const uint8_t *p, size_t size, char *why,
                                          size_t cap) {
    if (size < STRUCT_HEADER || memcmp(p, "EVBT", 4)) snprintf(why, cap, "not a structured payload");
    else if ((get_u32(p + 4) & 0xffffu) != 1) snprintf(why, cap,
                                                       "structured payload version %u, this program reads 1",
                                                       get_u32(p + 4) & 0xffffu);
    else if (get_u32(p + 4) >> 16 != (uint32_t)e->dtype) snprintf(why, cap,
                                                                  "the payload's dtype is not the index's");
    else if (get_u32(p + 8) != (uint32_t)e->rows || get_u32(p + 12) != (uint32_t)e->cols)
        snprintf(why, cap, "the payload is %ux%u but the index says %dx%d", get_u32(p + 8), get_u32(p + 12),
                 e->rows, e->cols);
    else if (get_u32(p + 16) != (uint32_t)e->group_size ||
             get_u32(p + 20) != (uint32_t)(e->cols / e->group_size - e->n_removed) ||
             get_u32(p + 24) != (uint32_t)struct_updates(e))
        snprintf(why, cap, "the payload's groups are not the index's");
    else return NULL;
    return why;
}

static const char *header_mismatch(const evb_db_entry *e, const uint8_t *p, size_t size, char *why, size_t cap) {
    if (e->kind == EVB_LEVEL_STRUCT) return struct_header_mismatch(e, p, size, why, cap);
    const char *kind = e->kind == EVB_LEVEL_SPARSE ? "sparse" : e->kind == EVB_LEVEL_GGUF ? "GGUF" : "quantized";
    uint32_t word = size >= 24 ? get_u32(p + 4) : 0, version = word & 0xffffu, d = word >> 16;
    if (size < 24 || memcmp(p, e->kind == EVB_LEVEL_SPARSE ? "EVBS" : e->kind == EVB_LEVEL_GGUF ? "EVBG" : "EVBQ", 4))
        snprintf(why, cap, "not a %s payload", kind);
    else if (e->kind == EVB_LEVEL_SPARSE ? version < 1 || version > SPARSE_VERSION : word != 1)
        snprintf(why, cap, "%s payload version %u, this program reads %s", kind, e->kind == EVB_LEVEL_SPARSE ? version : word,
                 e->kind == EVB_LEVEL_SPARSE ? "versions 1 and 2" : "version 1");
    else if (e->kind == EVB_LEVEL_SPARSE && d != (uint32_t)e->dtype) /* version 1 reads as dtype 0, f32 */
        snprintf(why, cap, "the payload holds %s values (dtype %u) but the index says %s", evb_db_dtype_name((int)d), d,
                 evb_db_dtype_name(e->dtype));
    else if (get_u32(p + 8) != (uint32_t)e->rows || get_u32(p + 12) != (uint32_t)e->cols)
        snprintf(why, cap, "the payload is %ux%u but the index says %dx%d", get_u32(p + 8), get_u32(p + 12), e->rows, e->cols);
    else if (e->kind == EVB_LEVEL_GGUF && get_u32(p + 16) != (uint32_t)e->gguf_type)
        snprintf(why, cap, "the payload holds GGUF type %u but the index says %d", get_u32(p + 16), e->gguf_type);
    else return NULL;
    return why;
}

static int expand_sparse(const evb_db_entry *e, const uint8_t *p, size_t size, const char *path, size_t n, float *W, uint16_t *H) {
    const int d = e->dtype; /* the header's (header_mismatch) */
    uint64_t nnz = get_u32(p + 16) | (uint64_t)get_u32(p + 20) << 32, bytes;
    size_t mask = (n + 7) / 8;
    const unsigned vs = value_size(d);
    if (nnz > n || __builtin_mul_overflow(nnz, vs, &bytes) || __builtin_add_overflow(bytes, 24 + mask, &bytes) || bytes != size)
        EVB_ERRORF(EVB_EFORMAT, "%s: malformed sparse payload (%llu values in %zu bytes)", path, (unsigned long long)nnz, size);
    const uint8_t *m = p + 24;
    const uint8_t *vals = p + 24 + mask;
    if (H) memset(H, 0, sizeof *H * n);
    else memset(W, 0, sizeof *W * n);
    size_t k = 0;
    for (size_t b = 0; b < mask; b++) {
        unsigned bits = m[b];
        if (b == mask - 1 && n % 8) bits &= (1u << (n % 8)) - 1; /* bits past the last element are not read */
        for (; bits; bits &= bits - 1) {
            size_t j = 8 * b + (size_t)__builtin_ctz(bits);
            if (k == nnz) EVB_ERRORF(EVB_EFORMAT, "%s: mask and values disagree", path);
            const uint8_t *v = vals + vs * k++;
            if (d == EVB_DB_F32) {
                float x;
                memcpy(&x, v, 4);
                put_value(W, H, j, x);
            } else {
                uint16_t h;
                memcpy(&h, v, 2);
                if (H && d == EVB_DB_BF16) H[j] = h; /* as it is stored */
                else put_value(W, H, j, from16(d, h));
            }
        }
    }
    if (k != nnz) EVB_ERRORF(EVB_EFORMAT, "%s: mask and values disagree", path);
    return EVB_SUCCESS;
}

static int expand_quant(const evb_db_entry *e, const uint8_t *p, size_t size, const char *path, size_t n, float *W, uint16_t *H) {
    uint32_t bits = get_u32(p + 16), ng = get_u32(p + 20);
    uint64_t ncode, ns, need, t;
    int bad = bits < 1 || bits > 8 || ng < 1 || ng > (uint32_t)e->cols;
    bad = bad || __builtin_mul_overflow((uint64_t)n, (uint64_t)bits, &ncode) || __builtin_add_overflow(ncode, 7, &ncode);
    if (!bad) ncode /= 8;
    bad = bad || __builtin_mul_overflow((uint64_t)e->rows, (uint64_t)ng, &ns) || __builtin_mul_overflow(ns, 8, &t) ||
          __builtin_add_overflow(t, ncode, &need) || __builtin_add_overflow(need, 24 + 4 * (uint64_t)e->cols, &need) ||
          need != size;
    if (bad) EVB_ERRORF(EVB_EFORMAT, "%s: malformed quantized payload", path);
    const uint8_t *codes = p + 24;
    const uint8_t *sc = codes + ncode, *ze = sc + 4 * ns, *go = ze + 4 * ns;
    for (int c = 0; c < e->cols; c++) {
        int32_t g;
        memcpy(&g, go + 4 * (size_t)c, 4);
        if (g < 0 || (uint32_t)g >= ng) EVB_ERRORF(EVB_EFORMAT, "%s: group index %d out of range", path, g);
    }
    for (int r = 0; r < e->rows; r++)
        for (int c = 0; c < e->cols; c++) {
            size_t j = (size_t)r * e->cols + c, bit = j * bits;
            uint32_t code = 0;
            for (uint32_t b = 0; b < bits; b++, bit++) code |= (uint32_t)(codes[bit / 8] >> (bit % 8) & 1u) << b;
            int32_t g;
            memcpy(&g, go + 4 * (size_t)c, 4);
            float s, z;
            memcpy(&s, sc + 4 * ((size_t)r * ng + (uint32_t)g), 4);
            memcpy(&z, ze + 4 * ((size_t)r * ng + (uint32_t)g), 4);
            put_value(W, H, j, s * ((float)code - z)); /* dequantized in float32, then rounded for H */
        }
    return EVB_SUCCESS;
}

/* A GGUF level's blocks dequantized as llama.cpp dequantizes them, row by row (H: then rounded to bfloat16). */
static int expand_gguf(const evb_db_entry *e, const uint8_t *p, size_t size, const char *path, size_t n, float *W, uint16_t *H) {
    size_t rb = evb_gguf_row_bytes(e->gguf_type, e->cols);
    if (!rb || size != 24 + rb * (size_t)e->rows) EVB_ERRORF(EVB_EFORMAT, "%s: malformed GGUF payload", path);
    float *row = H ? malloc(sizeof(float) * (size_t)e->cols) : NULL;
    if (H && !row) EVB_ERROR("out of memory", EVB_ENOMEM);
    int st = EVB_SUCCESS;
    for (int r = 0; r < e->rows && !st; r++) {
        float *dst = H ? row : W + (size_t)r * e->cols;
        st = evb_gguf_dequantize(e->gguf_type, p + 24 + rb * (size_t)r, 1, e->cols, dst);
        for (int c = 0; H && !st && c < e->cols; c++) H[(size_t)r * e->cols + c] = evb_bf16_round(row[c]);
    }
    free(row);
    (void)n;
    return st;
}

/* Expands the payload p[size] of entry e into W (float32) or H (bfloat16), whichever is set. */
static int expand(const evb_db_entry *e, const uint8_t *p, size_t size, const char *path, float *W, uint16_t *H) {
    if (e->rows < 1 || e->cols < 1 || e->rows > MAX_DIM || e->cols > MAX_DIM)
        EVB_ERRORF(EVB_EFORMAT, "%s: shape %dx%d out of range", path, e->rows, e->cols);
    if (e->dtype < EVB_DB_F32 || e->dtype > EVB_DB_F16) EVB_ERRORF(EVB_EFORMAT, "%s: value dtype %d out of range", path, e->dtype);
    size_t n = (size_t)e->rows * (size_t)e->cols; /* at most 2^40 */
    char why[128];
    if (header_mismatch(e, p, size, why, sizeof why)) EVB_ERRORF(EVB_EFORMAT, "%s: %s", path, why);
    if (e->kind == EVB_LEVEL_STRUCT) EVB_ERRORF(EVB_EINVAL, "%s: a structured level is not one weight", path);
    return e->kind == EVB_LEVEL_SPARSE ? expand_sparse(e, p, size, path, n, W, H)
         : e->kind == EVB_LEVEL_GGUF   ? expand_gguf(e, p, size, path, n, W, H)
                                       : expand_quant(e, p, size, path, n, W, H);
}

int evb_db_expand_(const evb_db_entry *e, const uint8_t *p, size_t size, const char *path, float *W) {
    return expand(e, p, size, path, W, NULL);
}

int evb_db_expand16_(const evb_db_entry *e, const uint8_t *p, size_t size, const char *path, uint16_t *W) {
    return expand(e, p, size, path, NULL, W);
}

/* Maps entry e's payload and checks its size and checksum; on success the caller unmaps *p. */
static int map_verified(const evb_db *db, const evb_db_entry *e, const uint8_t **p, size_t *size) {
    char path[1200], hint[1400];
    snprintf(path, sizeof path, "%s/%s", db->dir, e->file);
    snprintf(hint, sizeof hint, REBUILD_HINT, db->dir);
    int st = map_file(db->dir, e->file, hint, p, size);
    if (st) return st;
    if (*size != e->bytes || XXH64(*p, *size, 0) != e->checksum) {
        munmap((void *)*p, *size);
        EVB_ERRORF(EVB_EFORMAT, "%s: checksum mismatch: the payload is damaged %s", path, hint);
    }
    /* A whole payload of another level (kind, dtype, shape) is damage too, and a rebuild replaces it. */
    char why[128];
    if (header_mismatch(e, *p, *size, why, sizeof why)) {
        munmap((void *)*p, *size);
        EVB_ERRORF(EVB_EFORMAT, "%s: %s %s", path, why, hint);
    }
    return EVB_SUCCESS;
}

int evb_db_verify(const evb_db *db, int i) {
    if (i < 0 || i >= evb_db_count(db)) EVB_ERRORF(EVB_EINVAL, "level %d is not in the database", i);
    evb_db_entry e = evb_db_get(db, i);
    const uint8_t *p;
    size_t size;
    int st = map_verified(db, &e, &p, &size);
    if (!st) munmap((void *)p, size);
    return st;
}

/* Entry i (*e), its shape checked against the bound model, its payload mapped and verified (p[size], which the
 * caller unmaps) and named (path[1200]). */
static int map_entry(const evb_db *db, int i, evb_db_entry *e, const uint8_t **p, size_t *size, char *path) {
    if (i < 0 || i >= evb_db_count(db)) EVB_ERRORF(EVB_EINVAL, "level %d is not in the database", i);
    *e = evb_db_get(db, i);
    pthread_mutex_lock((pthread_mutex_t *)&db->lock);
    int st = check_shape(db, e);
    pthread_mutex_unlock((pthread_mutex_t *)&db->lock);
    if (!st) st = map_verified(db, e, p, size);
    if (!st) snprintf(path, 1200, "%s/%s", db->dir, e->file);
    return st;
}

/* evb_db_load and evb_db_load16: into W (float32) or H (bfloat16), whichever is set. */
static int load(const evb_db *db, int i, float *W, uint16_t *H) {
    evb_db_entry e;
    const uint8_t *p;
    size_t size;
    char path[1200];
    int st = map_entry(db, i, &e, &p, &size, path);
    if (st) return st;
    st = expand(&e, p, size, path, W, H);
    munmap((void *)p, size);
    return st;
}

int evb_db_load(const evb_db *db, int i, float *W) { return load(db, i, W, NULL); }

int evb_db_load16(const evb_db *db, int i, uint16_t *W) { return load(db, i, NULL, W); }

int evb_db_load_blocks(const evb_db *db, int i, void *dst, size_t cap) {
    if (i < 0 || i >= evb_db_count(db)) EVB_ERRORF(EVB_EINVAL, "level %d is not in the database", i);
    evb_db_entry e = evb_db_get(db, i);
    if (e.kind != EVB_LEVEL_GGUF) EVB_ERRORF(EVB_EINVAL, "level %d (%s) is not a GGUF level", i, e.file);
    const uint8_t *p;
    size_t size;
    int st = map_verified(db, &e, &p, &size);
    if (st) return st;
    size_t bytes = evb_gguf_row_bytes(e.gguf_type, e.cols) * (size_t)e.rows;
    if (size != 24 + bytes) st = EVB_RAISEF(EVB_EFORMAT, "%s/%s: malformed GGUF payload", db->dir, e.file);
    else if (bytes > cap) st = EVB_RAISEF(EVB_EINVAL, "level %d: %zu bytes of blocks, the buffer holds %zu", i, bytes, cap);
    else memcpy(dst, p + 24, bytes);
    munmap((void *)p, size);
    return st;
}

// ---- structured levels ----

int evb_db_put_struct(evb_db *db, const evb_db_entry *meta, const int *kept, const float *bias,
                      const float *out_w,
                      double recon_error) {
    evb_db_entry e = *meta;
    e.kind = EVB_LEVEL_STRUCT;
    e.recon_error = recon_error;
    int upd = struct_updates(&e);
    if (!upd) e.dtype = EVB_DB_F32;
    if (!kept || !bias || (upd && !out_w))
        EVB_ERRORF(EVB_EINVAL, "structured level of unit %d: kept groups, bias or updated columns missing",
                   e.unit);
    int st = check_meta(db, &e);
    if (st) return st;
    int n_kept = e.cols / e.group_size - (int)e.n_removed, G = e.cols / e.group_size;
    for (int i = 0; i < n_kept; i++)
        if (kept[i] < 0 || kept[i] >= G || (i && kept[i] <= kept[i - 1]))
            EVB_ERRORF(EVB_EINVAL, "structured level of unit %d: kept group %d is not ascending in [0, %d)",
                       e.unit, kept[i], G);
    size_t in = (size_t)n_kept * e.group_size, vs = value_size(e.dtype), nv = upd ? in * e.rows : 0;
    size_t size = STRUCT_HEADER + 4 * (size_t)n_kept + 4 * (size_t)e.rows + vs * nv;
    uint8_t *buf = malloc(size);
    if (!buf) EVB_ERROR("out of memory", EVB_ENOMEM);
    memcpy(buf, "EVBT", 4);
    put_u32(buf + 4, 1u | (uint32_t)e.dtype << 16); put_u32(buf + 8, (uint32_t)e.rows); put_u32(buf + 12,
            (uint32_t)e.cols);
    put_u32(buf + 16, (uint32_t)e.group_size); put_u32(buf + 20, (uint32_t)n_kept); put_u32(buf + 24,
            (uint32_t)upd);
    uint8_t *q = buf + STRUCT_HEADER;
    for (int i = 0; i < n_kept; i++, q += 4) put_u32(q, (uint32_t)kept[i]);
    memcpy(q, bias, 4 * (size_t)e.rows);
    q += 4 * (size_t)e.rows;
    for (size_t j = 0; j < nv; j++) {
        if (vs == 4) memcpy(q + 4 * j, &out_w[j], 4);
        else { uint16_t h = to16(e.dtype, out_w[j]); memcpy(q + 2 * j, &h, 2); }
    }
    e.params_kept = (double)in * e.rows;
    e.bits_stored = 8.0 * (double)(size - STRUCT_HEADER);
    level_file(&e);
    st = commit(db, &e, buf, size);
    free(buf);
    return st;
}

void evb_struct_level_free(evb_struct_level *s) {
    if (!s) return;
    free(s->kept); free(s->bias); free(s->out_w);
    free(s);
}

/* Reads a verified structured payload p[size] of entry e (its header matched). */
static int read_struct(const evb_db_entry *e, const uint8_t *p, size_t size, const char *path,
                       evb_struct_level *s) {
    int upd = struct_updates(e), G = e->cols / e->group_size;
    s->rows = e->rows; s->cols = e->cols; s->group = e->group_size; s->n_kept = G - (int)e->n_removed;
    size_t in = (size_t)s->n_kept * s->group, vs = value_size(e->dtype), nv = upd ? in * s->rows : 0;
    if (size != STRUCT_HEADER + 4 * (size_t)s->n_kept + 4 * (size_t)s->rows + vs * nv)
        EVB_ERRORF(EVB_EFORMAT, "%s: malformed structured payload (%zu bytes)", path, size);
    s->kept = malloc(sizeof(int) * ((size_t)s->n_kept + 1));
    s->bias = malloc(sizeof(float) * (size_t)s->rows);
    s->out_w = upd ? malloc(sizeof(float) * (nv + 1)) : NULL;
    if (!s->kept || !s->bias || (upd && !s->out_w)) EVB_ERROR("out of memory", EVB_ENOMEM);
    const uint8_t *q = p + STRUCT_HEADER;
    for (int i = 0; i < s->n_kept; i++, q += 4) {
        uint32_t k = get_u32(q);
        if (k >= (uint32_t)G || (i && (int)k <= s->kept[i - 1]))
            EVB_ERRORF(EVB_EFORMAT, "%s: kept group %u is not ascending in [0, %d)", path, k, G);
        s->kept[i] = (int)k;
    }
    memcpy(s->bias, q, 4 * (size_t)s->rows);
    q += 4 * (size_t)s->rows;
    for (size_t j = 0; j < nv; j++) {
        if (vs == 4) memcpy(&s->out_w[j], q + 4 * j, 4);
        else { uint16_t h; memcpy(&h, q + 2 * j, 2); s->out_w[j] = from16(e->dtype, h); }
    }
    for (int r = 0; r < s->rows; r++)
        if (!isfinite(s->bias[r])) EVB_ERRORF(EVB_EFORMAT, "%s: a bias value is not finite", path);
    return EVB_SUCCESS;
}

int evb_db_load_struct(const evb_db *db, int i, evb_struct_level **out) {
    *out = NULL;
    if (i >= 0 && i < evb_db_count(db) && evb_db_get(db, i).kind != EVB_LEVEL_STRUCT)
        EVB_ERRORF(EVB_EINVAL, "level %d (%s) is not a structured level", i, evb_db_get(db, i).file);
    evb_db_entry e;
    const uint8_t *p;
    size_t size;
    char path[1200];
    int st = map_entry(db, i, &e, &p, &size, path);
    if (st) return st;
    evb_struct_level *s = calloc(1, sizeof *s);
    st = s ? read_struct(&e, p, size, path, s) : EVB_RAISEF(EVB_ENOMEM, "out of memory");
    munmap((void *)p, size);
    if (st) { evb_struct_level_free(s); return st; }
    *out = s;
    return EVB_SUCCESS;
}
