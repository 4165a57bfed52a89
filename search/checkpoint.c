/* checkpoint.c -- the whole state of a search in one file, written atomically (core/fileio.h); loaded only
 * into a search of the same type, parameters and problem (their fingerprint), and only after every field
 * has been checked against that problem.
 *
 * The file: a 28-byte header, then the payload.
 *     bytes  0..7   "EVBCKPT\0"
 *     bytes  8..11  format, little-endian u32 (CK_FORMAT)
 *     bytes 12..19  payload length, little-endian u64
 *     bytes 20..27  XXH64(payload, seed 0), little-endian u64
 *     payload       one msgpack map of scalars, strings and bins (no nested containers); arrays are raw
 *                   little-endian bytes in bins
 * Format 1 (a bare msgpack map, no checksum) is refused with a hint: it cannot be told from a damaged file.
 *
 * The memo is stored oldest use first, so that a resumed search keeps and drops the same entries as an
 * uninterrupted one. */
#define _POSIX_C_SOURCE 200809L
#include "search/search_impl.h"
#include "core/fileio.h"
#include "core/msgpack_scan.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define CK_FORMAT 2
#define CK_HEADER 28
#define CK_MAGIC "EVBCKPT"                     /* and its terminating NUL: 8 bytes */
#define CK_MAX_BYTES ((uint64_t)1 << 36)       /* 64 GiB: beyond any bounded state, refused before reading */
#define CK_HINT "(hint: start the run again without --resume, in a new --out directory)"

static void put_le(unsigned char *p, uint64_t v, int n) { for (int i = 0; i < n; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static uint64_t get_le(const unsigned char *p, int n) { uint64_t v = 0; for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i]; return v; }

static void pack_key(msgpack_packer *pk, const char *k) { size_t n = strlen(k); msgpack_pack_str(pk, n); msgpack_pack_str_body(pk, k, n); }
static void pack_bin(msgpack_packer *pk, const char *k, const void *p, size_t n) { pack_key(pk, k); msgpack_pack_bin(pk, n); msgpack_pack_bin_body(pk, p, n); }
static void pack_u64(msgpack_packer *pk, const char *k, uint64_t v) { pack_key(pk, k); msgpack_pack_uint64(pk, v); }
static void pack_f64(msgpack_packer *pk, const char *k, double v) { pack_key(pk, k); msgpack_pack_double(pk, v); }

typedef struct stamped { uint64_t t; size_t slot; } stamped;
static int cmp_stamped(const void *a, const void *b) {
    const stamped *x = a, *y = b;
    return x->t < y->t ? -1 : x->t > y->t;
}

struct ck_out { const unsigned char *head; const msgpack_sbuffer *sb; };
static int write_ck(FILE *f, void *ctx) {
    const struct ck_out *o = ctx;
    return fwrite(o->head, 1, CK_HEADER, f) == CK_HEADER && (o->sb->size == 0 || fwrite(o->sb->data, 1, o->sb->size, f) == o->sb->size)
               ? EVB_SUCCESS : EVB_EIO;
}

int evb_search_save(const evb_search *s, const char *path) {
    size_t U = (size_t)s->U, mn = s->memo_n;
    /* the memo as parallel arrays, oldest use first */
    uint64_t *mk = malloc(sizeof(uint64_t) * 2 * (mn ? mn : 1));
    double *mv = malloc(sizeof(double) * (mn ? mn : 1));
    int16_t *ml = malloc(sizeof(int16_t) * U * (mn ? mn : 1));
    size_t *slot_entry = malloc(sizeof(size_t) * (mn ? mn : 1));
    stamped *o = malloc(sizeof(stamped) * (mn ? mn : 1));
    if (!mk || !mv || !ml || !slot_entry || !o) {
        free(mk); free(mv); free(ml); free(slot_entry); free(o);
        EVB_ERRORF(EVB_ENOMEM, "checkpoint %s: out of memory", path);
    }
    for (size_t k = 0; k < s->memo_cap; k++) if (s->memo[k].used) slot_entry[s->memo[k].lv] = k;
    for (size_t i = 0; i < mn; i++) o[i] = (stamped){s->memo_stamp[i], i};
    qsort(o, mn, sizeof *o, cmp_stamped);
    for (size_t j = 0; j < mn; j++) {
        const memo_entry *e = &s->memo[slot_entry[o[j].slot]];
        mk[2 * j] = e->seed; mk[2 * j + 1] = e->n_tokens; mv[j] = e->value;
        memcpy(ml + j * U, s->memo_lv + o[j].slot * U, sizeof(int16_t) * U);
    }
    free(slot_entry); free(o);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, s->p.surrogate ? 25 : 21);
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
    pack_bin(&pk, "memo_batches", mk, sizeof(uint64_t) * 2 * mn);
    pack_bin(&pk, "memo_values", mv, sizeof(double) * mn);
    pack_bin(&pk, "memo_levels", ml, sizeof(int16_t) * U * mn);
    pack_u64(&pk, "arch_tokens", s->arch_tokens);
    pack_bin(&pk, "arch_cost", s->arch_cost, sizeof(double) * s->arch_n);
    pack_bin(&pk, "arch_fit", s->arch_fit, sizeof(double) * s->arch_n);
    pack_bin(&pk, "arch", s->arch_lv, sizeof(int16_t) * U * s->arch_n);
    if (s->p.surrogate) { /* the surrogate's log: its normal equations are accumulated again on loading */
        pack_bin(&pk, "sur_levels", s->sur_lv, sizeof(int16_t) * U * s->sur_n);
        pack_bin(&pk, "sur_values", s->sur_y, sizeof(double) * s->sur_n);
        pack_bin(&pk, "sur_batches", s->sur_batch, sizeof(uint32_t) * s->sur_n);
        pack_bin(&pk, "sur_tokens", s->sur_tok, sizeof(uint64_t) * s->sur_n);
    }
    free(mk); free(mv); free(ml);
    unsigned char head[CK_HEADER];
    memcpy(head, CK_MAGIC, 8);
    put_le(head + 8, CK_FORMAT, 4);
    put_le(head + 12, sb.size, 8);
    put_le(head + 20, XXH64(sb.data, sb.size, 0), 8);
    struct ck_out out = {head, &sb};
    int st = evb_write_atomic_with(path, write_ck, &out);
    msgpack_sbuffer_destroy(&sb);
    return st;
}

// ---- reading: the framing, then the fields ----

/* A flat map of at most 64 pairs filling exactly n bytes: what msgpack_unpack may then parse without asking
 * for memory the bytes do not justify. */
static int flat_map(const unsigned char *p, size_t n) {
    evb_msgpack_scan_info info;
    int map = n >= 1 && ((p[0] >= 0x80 && p[0] <= 0x8f) || p[0] == 0xde || p[0] == 0xdf);
    return map && evb_msgpack_scan(p, n, n, 64, 1, &info) == EVB_MSGPACK_WHOLE && info.len == n;
}

static const msgpack_object *get(const msgpack_object *map, const char *k) {
    size_t kn = strlen(k);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == kn && !memcmp(kv->key.via.str.ptr, k, kn)) return &kv->val;
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

/* A bin of `count` elements of `unit` bytes; *count is its element count. NULL if absent, not a bin or not
 * a whole number of elements. */
static const unsigned char *bin(const msgpack_object *m, const char *k, size_t unit, size_t *count) {
    const msgpack_object *o = get(m, k);
    if (!o || o->type != MSGPACK_OBJECT_BIN || unit == 0 || o->via.bin.size % unit) return NULL;
    *count = o->via.bin.size / unit;
    return o->via.bin.size ? (const unsigned char *)o->via.bin.ptr : (const unsigned char *)"";
}

/* msgpack's bins need not be aligned: every element is copied out. */
static double dbl_at(const unsigned char *p, size_t i) { double v; memcpy(&v, p + i * sizeof v, sizeof v); return v; }
static uint64_t u64_at(const unsigned char *p, size_t i) { uint64_t v; memcpy(&v, p + i * sizeof v, sizeof v); return v; }

/* Candidate i of a bin of rows: copied to row, its levels checked against the units; 0 if one is out of range. */
static int row_at(const evb_search *s, const unsigned char *p, size_t i, int16_t *row) {
    memcpy(row, p + i * (size_t)s->U * sizeof(int16_t), sizeof(int16_t) * (size_t)s->U);
    for (int u = 0; u < s->U; u++) if (row[u] < 0 || row[u] >= s->n_levels[u]) return 0;
    return 1;
}

typedef struct fields {
    uint64_t gen, init, done, popn, ev, hits, tok, at;
    double pf, pc;
    size_t n_mem, n_arch, n_sur;
    const unsigned char *par, *pop, *popf, *popc, *mk, *mv, *ml, *ac, *af, *al, *sl, *sv, *sb, *st;
} fields;

/* Every field against the problem; a message naming the first that does not fit. */
static int check_fields(const evb_search *s, const char *name, const msgpack_object *m, fields *x, int16_t *row) {
    size_t U = (size_t)s->U, rowb = sizeof(int16_t) * U, n;
    int nsga = s->type == evb_search_nsga2;
    const char *bad = NULL;
    char what[160] = "";
    if (!u64(m, "generation", &x->gen) || !u64(m, "initialized", &x->init) || !u64(m, "done", &x->done) ||
        !f64(m, "parent_fit", &x->pf) || !f64(m, "parent_cost", &x->pc) || !u64(m, "pop_n", &x->popn) ||
        !u64(m, "evaluations", &x->ev) || !u64(m, "memo_hits", &x->hits) || !u64(m, "tokens", &x->tok) || !u64(m, "arch_tokens", &x->at))
        bad = "a counter or the incumbent's fitness or cost is missing or not a number";
    else if (x->init > 1 || x->done > 1 || (!x->init && x->gen) || (x->done && !x->init))
        snprintf(what, sizeof what, "generation %llu (initialized %llu, done %llu) is not a state a search passes through",
                 (unsigned long long)x->gen, (unsigned long long)x->init, (unsigned long long)x->done), bad = what;
    else if (x->gen > (uint64_t)s->p.generations)
        snprintf(what, sizeof what, "it holds generation %llu, beyond the %d this search runs (hint: ask for %llu generations or more)",
                 (unsigned long long)x->gen, s->p.generations, (unsigned long long)x->gen), bad = what;
    else if (x->popn > (uint64_t)s->p.n_offspring || (nsga && x->init ? !x->popn : x->popn != 0))
        snprintf(what, sizeof what, "a population of %llu does not fit this search (%s, at most %d)", (unsigned long long)x->popn,
                 s->type->name, nsga ? s->p.n_offspring : 0), bad = what;
    else if (!(x->par = bin(m, "parent", rowb, &n)) || n != 1) bad = "the incumbent is missing or not one candidate of this problem";
    else if (!row_at(s, x->par, 0, row)) bad = "the incumbent has a level outside its unit's range";
    else if (x->pc != evb_problem_cost(&s->prob, row))
        bad = "the incumbent's cost is not the cost of its levels";
    else if (isnan(x->pf) || x->pf == -INFINITY || (x->gen > 0 && !isfinite(x->pf)))
        bad = "the incumbent's fitness is not a finite number";
    else if (!(x->pop = bin(m, "pop", rowb, &n)) || n != x->popn || !(x->popf = bin(m, "pop_fit", sizeof(double), &n)) || n != x->popn ||
             !(x->popc = bin(m, "pop_cost", sizeof(double), &n)) || n != x->popn)
        bad = "the population's arrays are missing or of another size than pop_n";
    else if (!(x->mk = bin(m, "memo_batches", 2 * sizeof(uint64_t), &x->n_mem)) || !(x->mv = bin(m, "memo_values", sizeof(double), &n)) ||
             n != x->n_mem || !(x->ml = bin(m, "memo_levels", rowb, &n)) || n != x->n_mem)
        bad = "the memo's arrays are missing or of different sizes";
    else if (!(x->ac = bin(m, "arch_cost", sizeof(double), &x->n_arch)) || !(x->af = bin(m, "arch_fit", sizeof(double), &n)) ||
             n != x->n_arch || !(x->al = bin(m, "arch", rowb, &n)) || n != x->n_arch || x->n_arch > INT_MAX / 2)
        bad = "the front's arrays are missing or of different sizes";
    else if (x->n_arch && x->at == 0) bad = "the front's fidelity is 0 tokens";
    else if (s->p.surrogate && (!(x->sl = bin(m, "sur_levels", rowb, &x->n_sur)) || !(x->sv = bin(m, "sur_values", sizeof(double), &n)) ||
                                n != x->n_sur || !(x->sb = bin(m, "sur_batches", sizeof(uint32_t), &n)) || n != x->n_sur ||
                                !(x->st = bin(m, "sur_tokens", sizeof(uint64_t), &n)) || n != x->n_sur))
        bad = "the surrogate's log is missing or its arrays are of different sizes";
    if (bad) EVB_ERRORF(EVB_EFORMAT, "checkpoint %s: %s %s", name, bad, CK_HINT);
    /* every candidate: levels in range, costs its own, inside the budget; every fitness finite */
    int feasible = evb_problem_feasible(&s->prob, row);
    if (!feasible) EVB_ERRORF(EVB_EFORMAT, "checkpoint %s: the incumbent is outside the budget %s", name, CK_HINT);
    for (size_t i = 0; i < x->popn; i++)
        if (!row_at(s, x->pop, i, row) || !evb_problem_feasible(&s->prob, row) || dbl_at(x->popc, i) != evb_problem_cost(&s->prob, row) ||
            !isfinite(dbl_at(x->popf, i)))
            EVB_ERRORF(EVB_EFORMAT, "checkpoint %s: member %zu of the population has a level out of range, a cost not its own or "
                       "outside the budget, or a fitness that is not finite %s", name, i, CK_HINT);
    for (size_t i = 0; i < x->n_mem; i++)
        if (!row_at(s, x->ml, i, row) || !isfinite(dbl_at(x->mv, i)))
            EVB_ERRORF(EVB_EFORMAT, "checkpoint %s: memo entry %zu has a level out of range or a fitness that is not finite %s", name, i, CK_HINT);
    for (size_t i = 0; i < x->n_sur; i++) {
        uint32_t b, prev = 0;
        memcpy(&b, x->sb + i * sizeof b, sizeof b);
        if (i) memcpy(&prev, x->sb + (i - 1) * sizeof prev, sizeof prev);
        if (!row_at(s, x->sl, i, row) || !isfinite(dbl_at(x->sv, i)) || b < prev || b == UINT32_MAX || u64_at(x->st, i) > ((uint64_t)1 << 48))
            EVB_ERRORF(EVB_EFORMAT, "checkpoint %s: entry %zu of the surrogate's log has a level out of range, a fitness that is not finite "
                       "or a batch number out of order %s", name, i, CK_HINT);
    }
    for (size_t i = 0; i < x->n_arch; i++)
        if (!row_at(s, x->al, i, row) || !evb_problem_feasible(&s->prob, row) || dbl_at(x->ac, i) != evb_problem_cost(&s->prob, row) ||
            !isfinite(dbl_at(x->af, i)))
            EVB_ERRORF(EVB_EFORMAT, "checkpoint %s: point %zu of the front has a level out of range, a cost not its own or outside the "
                       "budget, or a fitness that is not finite %s", name, i, CK_HINT);
    return EVB_SUCCESS;
}

int evb_search_load_mem_(evb_search *s, const char *name, const unsigned char *buf, size_t n) {
    if (n >= 1 && ((buf[0] >= 0x80 && buf[0] <= 0x8f) || buf[0] == 0xde || buf[0] == 0xdf))
        EVB_ERRORF(EVB_EFORMAT, "checkpoint %s: format 1 (no checksum), written by an older evobudget; this program reads format %d %s",
                   name, CK_FORMAT, CK_HINT);
    if (n < CK_HEADER || memcmp(buf, CK_MAGIC, 8))
        EVB_ERRORF(EVB_EFORMAT, "checkpoint %s: not a search checkpoint (%zu bytes, no EVBCKPT header) %s", name, n, CK_HINT);
    uint64_t fmt = get_le(buf + 8, 4), len = get_le(buf + 12, 8), sum = get_le(buf + 20, 8);
    if (fmt != CK_FORMAT)
        EVB_ERRORF(EVB_EFORMAT, "checkpoint %s: format %llu, this program reads format %d %s", name, (unsigned long long)fmt, CK_FORMAT, CK_HINT);
    if (len != n - CK_HEADER)
        EVB_ERRORF(EVB_EFORMAT, "checkpoint %s: the header gives %llu bytes of state, the file holds %zu (truncated or damaged) %s",
                   name, (unsigned long long)len, n - CK_HEADER, CK_HINT);
    const unsigned char *p = buf + CK_HEADER;
    if (XXH64(p, (size_t)len, 0) != sum) EVB_ERRORF(EVB_EFORMAT, "checkpoint %s: checksum mismatch (the file is damaged) %s", name, CK_HINT);
    if (!flat_map(p, (size_t)len)) EVB_ERRORF(EVB_EFORMAT, "checkpoint %s: the state is not a flat msgpack map %s", name, CK_HINT);
    msgpack_unpacked a;
    msgpack_unpacked_init(&a);
    size_t off = 0;
    if (msgpack_unpack_next(&a, (const char *)p, (size_t)len, &off) != MSGPACK_UNPACK_SUCCESS || a.data.type != MSGPACK_OBJECT_MAP) {
        msgpack_unpacked_destroy(&a);
        EVB_ERRORF(EVB_EFORMAT, "checkpoint %s: the state is not a msgpack map %s", name, CK_HINT);
    }
    const msgpack_object *m = &a.data, *fp = get(m, "fingerprint");
    int st = EVB_SUCCESS;
    if (!fp || fp->type != MSGPACK_OBJECT_STR || fp->via.str.size != 16) st = EVB_RAISEF(EVB_EFORMAT, "checkpoint %s: the fingerprint is missing or not 16 characters %s", name, CK_HINT);
    else if (memcmp(fp->via.str.ptr, s->fingerprint, 16)) {
        char other[17];
        for (int i = 0; i < 16; i++) { char c = fp->via.str.ptr[i]; other[i] = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ? c : '?'; }
        other[16] = 0;
        st = EVB_RAISEF(EVB_EFORMAT, "checkpoint %s belongs to another search (other parameters or problem; fingerprint %s, this search %s) "
                        "(hint: resume with the flags and problem the run started with, or start again in a new --out directory)", name, other, s->fingerprint);
    }
    size_t U = (size_t)s->U;
    int16_t *row = malloc(sizeof(int16_t) * U);
    fields x;
    memset(&x, 0, sizeof x);
    if (!st && !row) st = EVB_RAISEF(EVB_ENOMEM, "checkpoint %s: out of memory", name);
    if (!st) st = check_fields(s, name, m, &x, row);
    /* every field fits: the state is replaced */
    if (!st && x.popn && (!s->pop || !s->pop_fit || !s->pop_cost)) {
        int16_t *pp = malloc(sizeof(int16_t) * U * s->p.n_offspring);
        double *pf = malloc(sizeof(double) * s->p.n_offspring), *pc = malloc(sizeof(double) * s->p.n_offspring);
        if (!pp || !pf || !pc) { free(pp); free(pf); free(pc); st = EVB_RAISEF(EVB_ENOMEM, "checkpoint %s: out of memory", name); }
        else { free(s->pop); free(s->pop_fit); free(s->pop_cost); s->pop = pp; s->pop_fit = pf; s->pop_cost = pc; }
    }
    if (!st) {
        s->generation = (int)x.gen; s->initialized = (int)x.init;
        s->done = x.init && x.gen >= (uint64_t)s->p.generations; /* a finished run continues when asked for more generations */
        memcpy(s->parent, x.par, sizeof(int16_t) * U);
        s->parent_fit = x.pf; s->parent_cost = x.pc; s->pop_n = (int)x.popn;
        if (x.popn) {
            memcpy(s->pop, x.pop, sizeof(int16_t) * U * x.popn);
            for (size_t i = 0; i < x.popn; i++) { s->pop_fit[i] = dbl_at(x.popf, i); s->pop_cost[i] = dbl_at(x.popc, i); }
        }
        s->evaluations = (size_t)x.ev; s->memo_hits = (size_t)x.hits; s->tokens = (size_t)x.tok;
        free(s->memo); free(s->memo_lv); free(s->memo_stamp);
        s->memo = NULL; s->memo_lv = NULL; s->memo_stamp = NULL; s->memo_cap = s->memo_n = 0; s->memo_clock = 0;
        for (size_t i = 0; !st && i < x.n_mem; i++) {
            memcpy(row, x.ml + i * U * sizeof(int16_t), sizeof(int16_t) * U);
            st = evb_memo_insert_(s, evb_memo_hash_(s, row), row, u64_at(x.mk, 2 * i), (size_t)u64_at(x.mk, 2 * i + 1), dbl_at(x.mv, i));
        }
        if (!st) st = evb_memo_trim_(s); /* a checkpoint of a search that kept more */
        s->arch_n = 0;
        s->arch_tokens = (size_t)x.at;
        evb_batch bb = {0, x.at == SIZE_MAX ? 0 : (size_t)x.at};
        for (size_t i = 0; !st && i < x.n_arch; i++) {
            memcpy(row, x.al + i * U * sizeof(int16_t), sizeof(int16_t) * U);
            evb_archive_add_(s, row, dbl_at(x.ac, i), dbl_at(x.af, i), &bb);
        }
        if (!st && s->p.surrogate) {
            int16_t *lv = malloc(sizeof(int16_t) * U * (x.n_sur ? x.n_sur : 1));
            double *y = malloc(sizeof(double) * (x.n_sur ? x.n_sur : 1));
            uint32_t *bt = malloc(sizeof(uint32_t) * (x.n_sur ? x.n_sur : 1));
            uint64_t *tk = malloc(sizeof(uint64_t) * (x.n_sur ? x.n_sur : 1));
            if (!lv || !y || !bt || !tk) { free(lv); free(y); free(bt); free(tk); st = EVB_RAISEF(EVB_ENOMEM, "checkpoint %s: out of memory", name); }
            else {
                if (x.n_sur) memcpy(lv, x.sl, sizeof(int16_t) * U * x.n_sur);
                for (size_t i = 0; i < x.n_sur; i++) { y[i] = dbl_at(x.sv, i); memcpy(&bt[i], x.sb + i * sizeof(uint32_t), sizeof(uint32_t)); tk[i] = u64_at(x.st, i); }
                free(s->sur_lv); free(s->sur_y); free(s->sur_batch); free(s->sur_tok);
                s->sur_lv = lv; s->sur_y = y; s->sur_batch = bt; s->sur_tok = tk; s->sur_n = s->sur_cap = x.n_sur;
                s->sur_nb = x.n_sur ? bt[x.n_sur - 1] + 1 : 0;
                s->sur_rho = NAN;
                st = evb_sur_rebuild_(s);
            }
        }
    }
    free(row);
    msgpack_unpacked_destroy(&a);
    return st;
}

int evb_search_load(evb_search *s, const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) EVB_ERRORF(EVB_EIO, "checkpoint %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
        close(fd);
        EVB_ERRORF(EVB_EIO, "checkpoint %s: not a regular file", path);
    }
    if ((uint64_t)sb.st_size > CK_MAX_BYTES || (uint64_t)sb.st_size > SIZE_MAX) {
        close(fd);
        EVB_ERRORF(EVB_EFORMAT, "checkpoint %s: %lld bytes, more than any search state %s", path, (long long)sb.st_size, CK_HINT);
    }
    size_t n = (size_t)sb.st_size, got = 0;
    unsigned char *buf = malloc(n ? n : 1);
    if (!buf) { close(fd); EVB_ERRORF(EVB_ENOMEM, "checkpoint %s: out of memory for %zu bytes", path, n); }
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    int e = errno;
    close(fd);
    if (got != n) { free(buf); EVB_ERRORF(EVB_EIO, "checkpoint %s: cannot read it: %s", path, got < n ? strerror(e) : "it changed while read"); }
    int st = evb_search_load_mem_(s, path, buf, n);
    free(buf);
    return st;
}
