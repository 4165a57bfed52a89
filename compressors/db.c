/* db.c -- the level database (see evb_db.h).
 *
 * Payload layouts (little-endian):
 *   sparse  "EVBS" u32 version, u32 rows, u32 cols, u64 nnz, u8 mask[ceil(rows cols / 8)] (bit i of the
 *           row-major element i, least significant bit first), f32 values[nnz] in row-major order;
 *   quant   "EVBQ" u32 version, u32 rows, u32 cols, u32 bits, u32 n_groups, u8 codes[ceil(rows cols bits / 8)]
 *           (a bit stream, least significant bit first), f32 scale[rows n_groups], f32 zero[rows n_groups],
 *           i32 group_of[cols]; W[r][c] = scale[r][g] (code - zero[r][g]) with g = group_of[c].
 * The index is a msgpack map {format, model, calib, entries: [map per entry]}, entries sorted by unit and
 * file name so that the same levels always give the same bytes. */
#define _GNU_SOURCE
#include "evobudget/evb_db.h"
#include "evobudget/evb_status.h"
#include "evobudget/evb_model.h"
#include "evobudget/evb_text.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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

struct evb_db {
    char dir[1024];
    char model_fp[17], calib_fp[17];
    evb_db_entry *e;
    int n, cap;
    pthread_mutex_t lock;
};

uint64_t evb_hash64(const void *data, size_t n, uint64_t seed) { return XXH64(data, n, seed); }

void evb_hash_hex(const void *data, size_t n, uint64_t seed, char hex[17]) {
    snprintf(hex, 17, "%016llx", (unsigned long long)XXH64(data, n, seed));
}

void evb_fingerprint_model(const evb_model *m, char hex[17]) {
    const evb_config *c = &m->config;
    int dims[] = {c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->vocab_size,
                  c->rope_halves, c->tied, c->qkv_bias};
    uint64_t h = XXH64(dims, sizeof dims, 0);
    float f[] = {c->rope_theta, c->norm_eps};
    h = XXH64(f, sizeof f, h);
    evb_hash_hex(m->arena, m->n_arena * sizeof(float), h, hex);
}

void evb_fingerprint_windows(const evb_windows *w, char hex[17]) {
    int hdr[2] = {w->n, w->seq_len};
    uint64_t h = XXH64(hdr, sizeof hdr, 0);
    h = XXH64(w->len, sizeof(int) * (size_t)w->n, h);
    evb_hash_hex(w->tokens, sizeof(int32_t) * (size_t)w->n * w->seq_len, h, hex);
}

// ---- files ----

/* Writes n bytes to dir/name through a temporary file, fsync and rename. */
static int write_atomic(const char *dir, const char *name, const void *data, size_t n) {
    char path[1200], tmp[1220];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)gettid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) EVB_ERRORF(EVB_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    const char *p = data;
    size_t left = n;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0) { if (errno == EINTR) continue; break; }
        p += w; left -= (size_t)w;
    }
    int ok = left == 0 && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        EVB_ERRORF(EVB_EIO, "%s: write failed: %s (hint: check free disk space)", path, strerror(e));
    }
    return EVB_SUCCESS;
}

/* Maps dir/name read-only. */
static int map_file(const char *dir, const char *name, const uint8_t **map, size_t *size) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDONLY);
    if (fd < 0) EVB_ERRORF(EVB_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || sb.st_size == 0) { close(fd); EVB_ERRORF(EVB_EFORMAT, "%s: empty or unreadable", path); }
    void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) EVB_ERRORF(EVB_EIO, "%s: cannot map: %s", path, strerror(errno));
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

/* Rewrites index.msgpack from the entries (caller holds the lock). The file lists them sorted, so that it
 * does not depend on the order levels were built in; in memory they stay in the order they were added, so
 * an entry's index is stable for as long as the database is open. */
static int write_index(evb_db *db) {
    evb_db_entry *sorted = malloc(sizeof *sorted * (db->n > 0 ? (size_t)db->n : 1));
    if (!sorted) EVB_ERROR("out of memory", EVB_ENOMEM);
    if (db->n > 0) memcpy(sorted, db->e, sizeof *sorted * (size_t)db->n);
    if (db->n > 1) qsort(sorted, (size_t)db->n, sizeof *sorted, cmp_entry);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    pack_str(&pk, "format"); msgpack_pack_int(&pk, EVB_DB_FORMAT);
    pack_str(&pk, "model"); pack_str(&pk, db->model_fp);
    pack_str(&pk, "calib"); pack_str(&pk, db->calib_fp);
    pack_str(&pk, "entries"); msgpack_pack_array(&pk, (size_t)db->n);
    for (int i = 0; i < db->n; i++) {
        const evb_db_entry *e = &sorted[i];
        msgpack_pack_map(&pk, 18);
        pack_str(&pk, "unit"); msgpack_pack_int(&pk, e->unit);
        pack_str(&pk, "method"); pack_str(&pk, e->method);
        pack_str(&pk, "kind"); msgpack_pack_int(&pk, e->kind);
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
    }
    int st = write_atomic(db->dir, "index.msgpack", sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    free(sorted);
    return st;
}

static int obj_key(const msgpack_object_kv *kv, const char *k) {
    return kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen(k) &&
           memcmp(kv->key.via.str.ptr, k, kv->key.via.str.size) == 0;
}

static int obj_num(const msgpack_object *o, double *out) {
    switch (o->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER: *out = (double)o->via.u64; return 1;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: *out = (double)o->via.i64; return 1;
    case MSGPACK_OBJECT_FLOAT32: case MSGPACK_OBJECT_FLOAT64: *out = o->via.f64; return 1;
    default: return 0;
    }
}

static int obj_str(const msgpack_object *o, char *out, size_t cap) {
    if (o->type != MSGPACK_OBJECT_STR || o->via.str.size >= cap) return 0;
    memcpy(out, o->via.str.ptr, o->via.str.size);
    out[o->via.str.size] = '\0';
    return 1;
}

/* Parses one entry map; returns 0 on a malformed record. */
static int parse_entry(const msgpack_object *o, evb_db_entry *e) {
    if (o->type != MSGPACK_OBJECT_MAP) return 0;
    memset(e, 0, sizeof *e);
    int seen = 0;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object_kv *kv = &o->via.map.ptr[i];
        double x = 0;
        int isnum = obj_num(&kv->val, &x);
#define NUM(name, field, type) else if (obj_key(kv, name)) { if (!isnum) return 0; e->field = (type)x; seen++; }
        if (obj_key(kv, "method")) { if (!obj_str(&kv->val, e->method, sizeof e->method)) return 0; seen++; }
        else if (obj_key(kv, "file")) { if (!obj_str(&kv->val, e->file, sizeof e->file) || strchr(e->file, '/')) return 0; seen++; }
        else if (obj_key(kv, "bytes")) { if (kv->val.type != MSGPACK_OBJECT_POSITIVE_INTEGER) return 0; e->bytes = kv->val.via.u64; seen++; }
        else if (obj_key(kv, "checksum")) { if (kv->val.type != MSGPACK_OBJECT_POSITIVE_INTEGER) return 0; e->checksum = kv->val.via.u64; seen++; }
        NUM("unit", unit, int) NUM("kind", kind, int) NUM("sparsity", sparsity, double) NUM("n_keep", n_keep, int)
        NUM("n_removed", n_removed, int64_t)
        NUM("m", m, int) NUM("bits", bits, int) NUM("group_size", group_size, int) NUM("sym", sym, int)
        NUM("rows", rows, int) NUM("cols", cols, int) NUM("params_kept", params_kept, double)
        NUM("bits_stored", bits_stored, double) NUM("recon_error", recon_error, double)
#undef NUM
    }
    return seen == 18 && e->n_removed >= 0 && e->rows > 0 && e->cols > 0 && e->unit >= 0 && (e->kind == EVB_LEVEL_SPARSE || e->kind == EVB_LEVEL_QUANT);
}

static int read_index(evb_db *db, const char *model_fp, const char *calib_fp) {
    const uint8_t *map;
    size_t size;
    char path[1200];
    snprintf(path, sizeof path, "%s/index.msgpack", db->dir);
    int st = map_file(db->dir, "index.msgpack", &map, &size);
    if (st) return st;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    st = EVB_SUCCESS;
    if (msgpack_unpack_next(&u, (const char *)map, size, &off) != MSGPACK_UNPACK_SUCCESS || u.data.type != MSGPACK_OBJECT_MAP)
        st = EVB_RAISEF(EVB_EFORMAT, "%s: not a msgpack map (hint: delete the directory and rebuild the database)", path);
    const msgpack_object *entries = NULL;
    char mfp[17] = "", cfp[17] = "";
    double format = -1;
    for (uint32_t i = 0; !st && i < u.data.via.map.size; i++) {
        const msgpack_object_kv *kv = &u.data.via.map.ptr[i];
        if (obj_key(kv, "format")) obj_num(&kv->val, &format);
        else if (obj_key(kv, "model")) obj_str(&kv->val, mfp, sizeof mfp);
        else if (obj_key(kv, "calib")) obj_str(&kv->val, cfp, sizeof cfp);
        else if (obj_key(kv, "entries") && kv->val.type == MSGPACK_OBJECT_ARRAY) entries = &kv->val;
    }
    /* Read-only uses: no model_fp (inspection) checks nothing; no calib_fp (evaluating levels on other
     * text) checks the model only. The fingerprints kept are the file's. */
    if (!model_fp) model_fp = mfp;
    if (!calib_fp) calib_fp = cfp;
    snprintf(db->model_fp, sizeof db->model_fp, "%s", mfp);
    snprintf(db->calib_fp, sizeof db->calib_fp, "%s", cfp);
    if (!st && format != EVB_DB_FORMAT)
        st = EVB_RAISEF(EVB_EFORMAT, "%s: database format %g, this program reads %d (hint: rebuild it with 'evobudget db build')", path, format, EVB_DB_FORMAT);
    else if (!st && strcmp(mfp, model_fp))
        st = EVB_RAISEF(EVB_EFORMAT, "%s: built for another model (fingerprint %s, this model %s) (hint: use another --db directory or delete this one)", path, mfp, model_fp);
    else if (!st && strcmp(cfp, calib_fp))
        st = EVB_RAISEF(EVB_EFORMAT, "%s: built from other calibration data (fingerprint %s, now %s) (hint: use another --db directory or delete this one)", path, cfp, calib_fp);
    else if (!st && !entries) st = EVB_RAISEF(EVB_EFORMAT, "%s: no entries array", path);
    if (!st && entries->via.array.size) {
        db->cap = (int)entries->via.array.size + 16;
        db->e = calloc((size_t)db->cap, sizeof *db->e);
        if (!db->e) st = EVB_RAISEF(EVB_ENOMEM, "out of memory");
        for (uint32_t i = 0; !st && i < entries->via.array.size; i++) {
            if (!parse_entry(&entries->via.array.ptr[i], &db->e[db->n]))
                st = EVB_RAISEF(EVB_EFORMAT, "%s: entry %u is malformed (hint: delete the directory and rebuild)", path, i);
            else db->n++;
        }
    }
    msgpack_unpacked_destroy(&u);
    munmap((void *)map, size);
    return st;
}

int evb_db_open(const char *dir, const char *model_fp, const char *calib_fp, int create, evb_db **out) {
    *out = NULL;
    if (strlen(dir) > 900) EVB_ERRORF(EVB_EINVAL, "%.60s...: database path too long", dir);
    evb_db *db = calloc(1, sizeof *db);
    if (!db) EVB_ERROR("out of memory", EVB_ENOMEM);
    snprintf(db->dir, sizeof db->dir, "%s", dir);
    if ((!model_fp || !calib_fp) && create) { free(db); EVB_ERROR("a database is created for a model and calibration set", EVB_EINVAL); }
    snprintf(db->model_fp, sizeof db->model_fp, "%s", model_fp ? model_fp : "");
    snprintf(db->calib_fp, sizeof db->calib_fp, "%s", calib_fp ? calib_fp : "");
    pthread_mutex_init(&db->lock, NULL);
    struct stat sb;
    char path[1200];
    snprintf(path, sizeof path, "%s/index.msgpack", dir);
    int st = EVB_SUCCESS;
    if (stat(path, &sb) == 0) {
        st = read_index(db, model_fp, calib_fp);
    }
    else if (!create) st = EVB_RAISEF(EVB_EIO, "%s: no level database here (hint: build one with 'evobudget db build')", dir);
    else {
        if (mkdir(dir, 0755) != 0 && errno != EEXIST) st = EVB_RAISEF(EVB_EIO, "%s: cannot create: %s", dir, strerror(errno));
        if (!st) st = write_index(db);
    }
    /* Temporary files of a killed writer (also one killed before the first index) are never part of the
     * database: remove them. (One database is written by one process at a time.) */
    DIR *d = create && !st ? opendir(dir) : NULL;
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (!strstr(de->d_name, ".tmp.")) continue;
        char stray[1300];
        snprintf(stray, sizeof stray, "%s/%s", dir, de->d_name);
        unlink(stray);
    }
    if (d) closedir(d);
    if (st) { evb_db_close(db); return st; }
    *out = db;
    return EVB_SUCCESS;
}

const char *evb_db_model_fingerprint(const evb_db *db) { return db->model_fp; }
const char *evb_db_calib_fingerprint(const evb_db *db) { return db->calib_fp; }

void evb_db_close(evb_db *db) {
    if (!db) return;
    pthread_mutex_destroy(&db->lock);
    free(db->e);
    free(db);
}

int evb_db_count(const evb_db *db) {
    pthread_mutex_lock((pthread_mutex_t *)&db->lock);
    int n = db->n;
    pthread_mutex_unlock((pthread_mutex_t *)&db->lock);
    return n;
}

evb_db_entry evb_db_get(const evb_db *db, int i) {
    pthread_mutex_lock((pthread_mutex_t *)&db->lock);
    evb_db_entry e = db->e[i];
    pthread_mutex_unlock((pthread_mutex_t *)&db->lock);
    return e;
}

static int same_level(const evb_db_entry *a, const evb_db_entry *b) {
    return a->unit == b->unit && a->kind == b->kind && strcmp(a->method, b->method) == 0 &&
           (a->kind == EVB_LEVEL_SPARSE
                ? a->n_removed == b->n_removed && (a->n_removed || fabs(a->sparsity - b->sparsity) < 1e-9) &&
                      a->n_keep == b->n_keep && a->m == b->m
                : a->bits == b->bits && a->group_size == b->group_size && a->sym == b->sym);
}

int evb_db_find(const evb_db *db, const evb_db_entry *key) {
    pthread_mutex_lock((pthread_mutex_t *)&db->lock);
    int found = -1;
    for (int i = 0; i < db->n && found < 0; i++) if (same_level(&db->e[i], key)) found = i;
    pthread_mutex_unlock((pthread_mutex_t *)&db->lock);
    return found;
}

// ---- adding levels ----

static void level_file(evb_db_entry *e) {
    if (e->kind == EVB_LEVEL_SPARSE) {
        if (e->m) snprintf(e->file, sizeof e->file, "u%04d_%s_%d-%d.bin", e->unit, e->method, e->n_keep, e->m);
        else if (e->n_removed) snprintf(e->file, sizeof e->file, "u%04d_%s_r%lld.bin", e->unit, e->method, (long long)e->n_removed);
        else snprintf(e->file, sizeof e->file, "u%04d_%s_s%.6f.bin", e->unit, e->method, e->sparsity);
    } else snprintf(e->file, sizeof e->file, "u%04d_%s_b%dg%d%s.bin", e->unit, e->method, e->bits, e->group_size, e->sym ? "s" : "a");
}

/* Writes the payload, then records the entry and rewrites the index. */
static int commit(evb_db *db, evb_db_entry *e, const uint8_t *payload, size_t n) {
    e->bytes = n;
    e->checksum = XXH64(payload, n, 0);
    int st = write_atomic(db->dir, e->file, payload, n);
    if (st) return st;
    pthread_mutex_lock(&db->lock);
    int at = -1;
    for (int i = 0; i < db->n && at < 0; i++) if (same_level(&db->e[i], e)) at = i;
    if (at < 0 && db->n == db->cap) {
        int cap = db->cap ? 2 * db->cap : 64;
        evb_db_entry *grown = realloc(db->e, (size_t)cap * sizeof *grown);
        if (!grown) { pthread_mutex_unlock(&db->lock); EVB_ERROR("out of memory", EVB_ENOMEM); }
        db->e = grown; db->cap = cap;
    }
    if (at < 0) at = db->n++;
    db->e[at] = *e;
    st = write_index(db);
    pthread_mutex_unlock(&db->lock);
    return st;
}

static void put_u32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint32_t get_u32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

int evb_db_put_sparse(evb_db *db, const evb_db_entry *meta, const float *W, double recon_error) {
    evb_db_entry e = *meta;
    e.kind = EVB_LEVEL_SPARSE;
    e.recon_error = recon_error;
    size_t n = (size_t)e.rows * e.cols, nnz = 0;
    for (size_t i = 0; i < n; i++) nnz += W[i] != 0.0f;
    size_t mask = (n + 7) / 8, size = 24 + mask + 4 * nnz;
    uint8_t *buf = calloc(size, 1);
    if (!buf) EVB_ERROR("out of memory", EVB_ENOMEM);
    memcpy(buf, "EVBS", 4);
    put_u32(buf + 4, 1); put_u32(buf + 8, (uint32_t)e.rows); put_u32(buf + 12, (uint32_t)e.cols);
    put_u32(buf + 16, (uint32_t)nnz); put_u32(buf + 20, (uint32_t)((uint64_t)nnz >> 32));
    float *vals = malloc(4 * (nnz ? nnz : 1));
    if (!vals) { free(buf); EVB_ERROR("out of memory", EVB_ENOMEM); }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (W[i] != 0.0f) { buf[24 + i / 8] |= (uint8_t)(1u << (i % 8)); vals[k++] = W[i]; }
    memcpy(buf + 24 + mask, vals, 4 * nnz);
    free(vals);
    e.params_kept = (double)nnz;
    e.bits_stored = (double)n + 32.0 * (double)nnz;
    level_file(&e);
    int st = commit(db, &e, buf, size);
    free(buf);
    return st;
}

int evb_db_put_quant(evb_db *db, const evb_db_entry *meta, const evb_quant_out *q, int n_groups, double recon_error) {
    evb_db_entry e = *meta;
    e.kind = EVB_LEVEL_QUANT;
    e.recon_error = recon_error;
    if (e.bits < 1 || e.bits > 8 || n_groups < 1 || !q->codes || !q->scale || !q->zero || !q->group_of)
        EVB_ERRORF(EVB_EINVAL, "quantized level of unit %d: bits %d, %d groups, and codes/scale/zero/group_of are all needed", e.unit, e.bits, n_groups);
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
    int st = commit(db, &e, buf, size);
    free(buf);
    return st;
}

// ---- reading levels ----

int evb_db_load(const evb_db *db, int i, float *W) {
    evb_db_entry e = evb_db_get(db, i);
    const uint8_t *p;
    size_t size;
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", db->dir, e.file);
    int st = map_file(db->dir, e.file, &p, &size);
    if (st) return st;
    size_t n = (size_t)e.rows * e.cols;
    if (size != e.bytes || XXH64(p, size, 0) != e.checksum)
        st = EVB_RAISEF(EVB_EFORMAT, "%s: checksum mismatch: the payload is damaged (hint: delete it and rerun 'evobudget db build' to recompute it)", path);
    else if (size < 24 || get_u32(p + 8) != (uint32_t)e.rows || get_u32(p + 12) != (uint32_t)e.cols)
        st = EVB_RAISEF(EVB_EFORMAT, "%s: header does not match the index", path);
    else if (e.kind == EVB_LEVEL_SPARSE) {
        uint64_t nnz = get_u32(p + 16) | (uint64_t)get_u32(p + 20) << 32;
        size_t mask = (n + 7) / 8;
        if (memcmp(p, "EVBS", 4) || size != 24 + mask + 4 * nnz) st = EVB_RAISEF(EVB_EFORMAT, "%s: malformed sparse payload", path);
        else {
            const uint8_t *m = p + 24;
            const uint8_t *vals = p + 24 + mask;
            size_t k = 0;
            for (size_t j = 0; j < n; j++) {
                if (m[j / 8] >> (j % 8) & 1u) {
                    if (k == nnz) { st = EVB_RAISEF(EVB_EFORMAT, "%s: mask and values disagree", path); break; }
                    memcpy(&W[j], vals + 4 * k++, 4);
                } else W[j] = 0.0f;
            }
            if (!st && k != nnz) st = EVB_RAISEF(EVB_EFORMAT, "%s: mask and values disagree", path);
        }
    } else {
        uint32_t bits = get_u32(p + 16), ng = get_u32(p + 20);
        size_t ncode = (n * bits + 7) / 8, ns = (size_t)e.rows * ng;
        if (memcmp(p, "EVBQ", 4) || bits < 1 || bits > 8 || ng < 1 || size != 24 + ncode + 8 * ns + 4 * (size_t)e.cols)
            st = EVB_RAISEF(EVB_EFORMAT, "%s: malformed quantized payload", path);
        else {
            const uint8_t *codes = p + 24;
            const uint8_t *sc = codes + ncode, *ze = sc + 4 * ns, *go = ze + 4 * ns;
            for (int r = 0; !st && r < e.rows; r++)
                for (int c = 0; c < e.cols; c++) {
                    size_t j = (size_t)r * e.cols + c, bit = j * bits;
                    uint32_t code = 0;
                    for (uint32_t b = 0; b < bits; b++, bit++) code |= (uint32_t)(codes[bit / 8] >> (bit % 8) & 1u) << b;
                    int32_t g;
                    memcpy(&g, go + 4 * (size_t)c, 4);
                    if (g < 0 || (uint32_t)g >= ng) { st = EVB_RAISEF(EVB_EFORMAT, "%s: group index %d out of range", path, g); break; }
                    float s, z;
                    memcpy(&s, sc + 4 * ((size_t)r * ng + g), 4);
                    memcpy(&z, ze + 4 * ((size_t)r * ng + g), 4);
                    W[j] = s * ((float)code - z);
                }
        }
    }
    munmap((void *)p, size);
    return st;
}
