/* checkpoint.c -- the whole state of a search as msgpack, written to path.tmp, synced and renamed; loaded
 * only into a search of the same type, parameters and problem (their fingerprint). Arrays are stored as
 * raw little-endian bytes. */
#define _POSIX_C_SOURCE 200809L
#include "search/search_impl.h"

#include <errno.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CK_FORMAT 1

static void pack_key(msgpack_packer *pk, const char *k) { size_t n = strlen(k); msgpack_pack_str(pk, n); msgpack_pack_str_body(pk, k, n); }
static void pack_bin(msgpack_packer *pk, const char *k, const void *p, size_t n) { pack_key(pk, k); msgpack_pack_bin(pk, n); msgpack_pack_bin_body(pk, p, n); }
static void pack_u64(msgpack_packer *pk, const char *k, uint64_t v) { pack_key(pk, k); msgpack_pack_uint64(pk, v); }
static void pack_f64(msgpack_packer *pk, const char *k, double v) { pack_key(pk, k); msgpack_pack_double(pk, v); }

int evb_search_save(const evb_search *s, const char *path) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    size_t U = (size_t)s->U;
    /* the memo as parallel arrays in insertion order */
    size_t mn = s->memo_n;
    uint64_t *mh = malloc(sizeof(uint64_t) * (mn ? mn : 1) * 3);
    double *mv = malloc(sizeof(double) * (mn ? mn : 1));
    if (!mh || !mv) { free(mh); free(mv); msgpack_sbuffer_destroy(&sb); EVB_ERROR("checkpoint: out of memory", EVB_ENOMEM); }
    for (size_t k = 0; k < s->memo_cap; k++) {
        const memo_entry *e = &s->memo[k];
        if (!e->used) continue;
        mh[e->lv * 3] = e->hash; mh[e->lv * 3 + 1] = e->seed; mh[e->lv * 3 + 2] = e->n_tokens; mv[e->lv] = e->value;
    }
    msgpack_pack_map(&pk, 22);
    pack_u64(&pk, "format", CK_FORMAT);
    pack_key(&pk, "fingerprint"); msgpack_pack_str(&pk, 16); msgpack_pack_str_body(&pk, s->fingerprint, 16);
    pack_u64(&pk, "generation", (uint64_t)s->generation);
    pack_u64(&pk, "initialized", (uint64_t)s->initialized);
    pack_u64(&pk, "done", (uint64_t)s->done);
    pack_bin(&pk, "parent", s->parent, sizeof(int16_t) * U);
    pack_f64(&pk, "parent_fit", s->parent_fit);
    pack_f64(&pk, "parent_cost", s->parent_cost);
    pack_u64(&pk, "pop_n", (uint64_t)s->pop_n);
    pack_bin(&pk, "pop", s->pop, sizeof(int16_t) * U * s->pop_n);
    pack_bin(&pk, "pop_fit", s->pop_fit, sizeof(double) * s->pop_n);
    pack_bin(&pk, "pop_cost", s->pop_cost, sizeof(double) * s->pop_n);
    pack_u64(&pk, "evaluations", s->evaluations);
    pack_u64(&pk, "memo_hits", s->memo_hits);
    pack_u64(&pk, "tokens", s->tokens);
    pack_bin(&pk, "memo_keys", mh, sizeof(uint64_t) * 3 * mn);
    pack_bin(&pk, "memo_values", mv, sizeof(double) * mn);
    pack_bin(&pk, "memo_levels", s->memo_lv, sizeof(int16_t) * U * mn);
    pack_u64(&pk, "arch_tokens", s->arch_tokens);
    pack_bin(&pk, "arch_cost", s->arch_cost, sizeof(double) * s->arch_n);
    pack_bin(&pk, "arch_fit", s->arch_fit, sizeof(double) * s->arch_n);
    pack_bin(&pk, "arch", s->arch_lv, sizeof(int16_t) * U * s->arch_n);
    free(mh); free(mv);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    int ok = f && fwrite(sb.data, 1, sb.size, f) == sb.size;
    msgpack_sbuffer_destroy(&sb);
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    if (f) ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path)) EVB_ERRORF(EVB_EIO, "checkpoint %s: %s", path, strerror(errno));
    return EVB_SUCCESS;
}

static const msgpack_object *get(const msgpack_object *map, const char *k) {
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen(k) && !memcmp(kv->key.via.str.ptr, k, strlen(k))) return &kv->val;
    }
    return NULL;
}

static int u64(const msgpack_object *m, const char *k, uint64_t *v) {
    const msgpack_object *o = get(m, k);
    if (!o || o->type != MSGPACK_OBJECT_POSITIVE_INTEGER) return 0;
    *v = o->via.u64;
    return 1;
}

static int f64(const msgpack_object *m, const char *k, double *v) {
    const msgpack_object *o = get(m, k);
    if (!o || (o->type != MSGPACK_OBJECT_FLOAT64 && o->type != MSGPACK_OBJECT_FLOAT32)) return 0;
    *v = o->via.f64;
    return 1;
}

/* A bin of exactly n bytes (or a multiple of unit when n is 0: its count written to *count). */
static const void *bin(const msgpack_object *m, const char *k, size_t unit, size_t *count) {
    const msgpack_object *o = get(m, k);
    if (!o || o->type != MSGPACK_OBJECT_BIN || o->via.bin.size % unit) return NULL;
    *count = o->via.bin.size / unit;
    return o->via.bin.size ? o->via.bin.ptr : (const void *)"";
}

int evb_search_load(evb_search *s, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) EVB_ERRORF(EVB_EIO, "checkpoint %s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = size > 0 ? malloc((size_t)size) : NULL;
    int ok = buf && fread(buf, 1, (size_t)size, f) == (size_t)size;
    fclose(f);
    if (!ok) { free(buf); EVB_ERRORF(EVB_EIO, "checkpoint %s: cannot read it", path); }
    msgpack_unpacked a;
    msgpack_unpacked_init(&a);
    size_t off = 0;
    int st = EVB_SUCCESS;
    if (msgpack_unpack_next(&a, buf, (size_t)size, &off) != MSGPACK_UNPACK_SUCCESS || a.data.type != MSGPACK_OBJECT_MAP)
        st = EVB_RAISEF(EVB_EFORMAT, "checkpoint %s: not a search checkpoint (hint: start the run again without --resume)", path);
    const msgpack_object *m = &a.data, *fp = st ? NULL : get(m, "fingerprint");
    uint64_t fmt = 0, gen = 0, init = 0, done = 0, popn = 0, ev = 0, hits = 0, tok = 0, at = 0;
    double pf = 0, pc = 0;
    if (!st && (!u64(m, "format", &fmt) || fmt != CK_FORMAT))
        st = EVB_RAISEF(EVB_EFORMAT, "checkpoint %s: format %llu, this program reads %d", path, (unsigned long long)fmt, CK_FORMAT);
    if (!st && (!fp || fp->type != MSGPACK_OBJECT_STR || fp->via.str.size != 16 || memcmp(fp->via.str.ptr, s->fingerprint, 16)))
        st = EVB_RAISEF(EVB_EFORMAT, "checkpoint %s belongs to another search (other parameters or problem; fingerprint %.16s, this search %s)",
                        path, fp && fp->type == MSGPACK_OBJECT_STR ? fp->via.str.ptr : "?", s->fingerprint);
    size_t U = (size_t)s->U, n_par = 0, n_pop = 0, n_pf = 0, n_pc = 0, n_mk = 0, n_mv = 0, n_ml = 0, n_ac = 0, n_af = 0, n_al = 0;
    const void *par = NULL, *pop = NULL, *popf = NULL, *popc = NULL, *mk = NULL, *mv = NULL, *ml = NULL, *ac = NULL, *af = NULL, *al = NULL;
    if (!st) {
        ok = u64(m, "generation", &gen) && u64(m, "initialized", &init) && u64(m, "done", &done) && f64(m, "parent_fit", &pf) &&
             f64(m, "parent_cost", &pc) && u64(m, "pop_n", &popn) && u64(m, "evaluations", &ev) && u64(m, "memo_hits", &hits) &&
             u64(m, "tokens", &tok) && u64(m, "arch_tokens", &at) &&
             (par = bin(m, "parent", sizeof(int16_t) * U, &n_par)) && n_par == 1 &&
             (pop = bin(m, "pop", sizeof(int16_t) * U, &n_pop)) && n_pop == popn &&
             (popf = bin(m, "pop_fit", sizeof(double), &n_pf)) && n_pf == popn &&
             (popc = bin(m, "pop_cost", sizeof(double), &n_pc)) && n_pc == popn &&
             (mk = bin(m, "memo_keys", 3 * sizeof(uint64_t), &n_mk)) && (mv = bin(m, "memo_values", sizeof(double), &n_mv)) &&
             (ml = bin(m, "memo_levels", sizeof(int16_t) * U, &n_ml)) && n_mk == n_mv && n_mk == n_ml &&
             (ac = bin(m, "arch_cost", sizeof(double), &n_ac)) && (af = bin(m, "arch_fit", sizeof(double), &n_af)) &&
             (al = bin(m, "arch", sizeof(int16_t) * U, &n_al)) && n_ac == n_al && n_ac == n_af && popn <= (uint64_t)s->p.n_offspring;
        if (!ok) st = EVB_RAISEF(EVB_EFORMAT, "checkpoint %s: malformed (missing or inconsistent fields)", path);
    }
    if (!st && popn) {
        free(s->pop); free(s->pop_fit); free(s->pop_cost);
        s->pop = malloc(sizeof(int16_t) * U * s->p.n_offspring);
        s->pop_fit = malloc(sizeof(double) * s->p.n_offspring);
        s->pop_cost = malloc(sizeof(double) * s->p.n_offspring);
        if (!s->pop || !s->pop_fit || !s->pop_cost) st = EVB_RAISEF(EVB_ENOMEM, "checkpoint: out of memory");
        else { memcpy(s->pop, pop, sizeof(int16_t) * U * popn); memcpy(s->pop_fit, popf, sizeof(double) * popn); memcpy(s->pop_cost, popc, sizeof(double) * popn); }
    }
    if (!st) {
        s->generation = (int)gen; s->initialized = (int)init; s->done = (int)done;
        memcpy(s->parent, par, sizeof(int16_t) * U);
        s->parent_fit = pf; s->parent_cost = pc; s->pop_n = (int)popn;
        s->evaluations = ev; s->memo_hits = hits; s->tokens = tok;
        free(s->memo); free(s->memo_lv);
        s->memo = NULL; s->memo_lv = NULL; s->memo_cap = s->memo_n = 0;
        /* msgpack's bins need not be aligned: every element is copied out */
        const unsigned char *k = mk, *v = mv, *lvb = ml, *cb = ac, *fb = af, *alb = al;
        int16_t *row = malloc(sizeof(int16_t) * U);
        if (!row) st = EVB_RAISEF(EVB_ENOMEM, "checkpoint: out of memory");
        for (size_t i = 0; !st && i < n_mk; i++) {
            uint64_t key[3];
            double val;
            memcpy(key, k + i * sizeof key, sizeof key);
            memcpy(&val, v + i * sizeof val, sizeof val);
            memcpy(row, lvb + i * U * sizeof(int16_t), sizeof(int16_t) * U);
            st = evb_memo_insert_(s, key[0], row, key[1], (size_t)key[2], val);
        }
        s->arch_n = 0;
        s->arch_tokens = (size_t)at;
        evb_batch bb = {0, at == SIZE_MAX ? 0 : (size_t)at};
        for (size_t i = 0; !st && i < n_ac; i++) {
            double c, f2;
            memcpy(&c, cb + i * sizeof c, sizeof c);
            memcpy(&f2, fb + i * sizeof f2, sizeof f2);
            memcpy(row, alb + i * U * sizeof(int16_t), sizeof(int16_t) * U);
            evb_archive_add_(s, row, c, f2, &bb);
        }
        free(row);
    }
    msgpack_unpacked_destroy(&a);
    free(buf);
    return st;
}
