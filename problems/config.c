/* config.c -- the configuration format (best.json): the one writer, reader and validator.
 *
 * {"model", "db", "method", "target_kind", "target", "budget", "cost", "fitness",
 *  "units": [{level description..., "unit", "name", "level", "cost"}], "drop": [{"block", "sub"}],
 *  then the size measures present ("sparsity", "bits_per_weight", "dropped", "storage_bytes", "bytes",
 *  "storage_bits_per_weight") and "fitness_all"}.
 * A level description is {"dense": true}, {"method": "zero"}, {"method", "sparsity", "n_removed"} (or
 * "n_keep", "m" for N:M), {"method", "bits", "group_size", "sym"}, or a problem file's level fields. */
#define _POSIX_C_SOURCE 200809L
#include "evobudget/evb_problems.h"
#include "evobudget/evb_gguf.h"
#include "core/json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>
#include <limits.h>

int evb_allocation_new(int n_units, int n_drop, evb_allocation **out) {
    *out = NULL;
    if (n_units < 0 || n_drop < 0) EVB_ERRORF(EVB_EINVAL, "a configuration of %d units and %d dropped sub-blocks", n_units, n_drop);
    evb_allocation *c = calloc(1, sizeof *c);
    if (c) c->units = calloc(n_units ? (size_t)n_units : 1, sizeof *c->units);
    if (c) c->drop = calloc(n_drop ? (size_t)n_drop : 1, sizeof *c->drop);
    if (!c || !c->units || !c->drop) { evb_allocation_free(c); EVB_ERRORF(EVB_ENOMEM, "out of memory for a configuration of %d units", n_units); }
    c->n_units = n_units;
    c->n_drop = n_drop;
    c->target = c->budget = c->cost = c->fitness = c->fitness_all = NAN;
    c->sparsity = c->bits_per_weight = c->dropped = c->storage_bytes = c->bytes = c->storage_bpw = NAN;
    c->speedup = c->seconds = c->dense_seconds = NAN;
    for (int u = 0; u < n_units; u++) {
        c->units[u].level = -1;
        c->units[u].key.kind = -1;
        c->units[u].cost = c->units[u].storage_bpw = c->units[u].fitness = NAN;
    }
    *out = c;
    return EVB_SUCCESS;
}

void evb_allocation_free(evb_allocation *c) {
    if (!c) return;
    for (int u = 0; c->units && u < c->n_units; u++) free(c->units[u].extra);
    free(c->units);
    free(c->drop);
    free(c);
}

/* ---- writing ---- */

static void set_num(json_t *o, const char *key, double v) { if (!isnan(v)) json_object_set_new(o, key, json_real(v)); }

static json_t *level_json(const evb_allocation_unit *x) {
    json_t *d = json_object();
    if (x->dense) json_object_set_new(d, "dense", json_true());
    else if (x->zero) json_object_set_new(d, "method", json_string("zero"));
    else if (x->key.kind == EVB_LEVEL_SPARSE) {
        json_object_set_new(d, "method", json_string(x->key.method));
        json_object_set_new(d, "sparsity", json_real(x->key.sparsity));
        if (x->key.n_removed) json_object_set_new(d, "n_removed", json_integer((json_int_t)x->key.n_removed));
        if (x->key.m) { json_object_set_new(d, "n_keep", json_integer(x->key.n_keep)); json_object_set_new(d, "m", json_integer(x->key.m)); }
    } else if (x->key.kind == EVB_LEVEL_QUANT) {
        json_object_set_new(d, "method", json_string(x->key.method));
        json_object_set_new(d, "bits", json_integer(x->key.bits));
        json_object_set_new(d, "group_size", json_integer(x->key.group_size));
        json_object_set_new(d, "sym", json_boolean(x->key.sym));
    } else if (x->key.kind == EVB_LEVEL_STRUCT) {
        json_object_set_new(d, "method", json_string(x->key.method));
        json_object_set_new(d, "group_size", json_integer(x->key.group_size));
        json_object_set_new(d, "n_removed", json_integer((json_int_t)x->key.n_removed));
        json_object_set_new(d, "kept",
                            json_integer((json_int_t)(x->key.cols / x->key.group_size - x->key.n_removed)));
    } else if (x->key.kind == EVB_LEVEL_GGUF) {
        const evb_gguf_type_info *t = evb_gguf_type_get(x->key.gguf_type);
        json_object_set_new(d, "method", json_string(x->key.method));
        json_object_set_new(d, "type", json_string(t ? t->name : "?"));
    }
    if (x->extra) {
        json_t *e = json_loads(x->extra, 0, NULL);
        if (json_is_object(e)) json_object_update(d, e);
        json_decref(e);
    }
    set_num(d, "fitness", x->fitness);
    return d;
}

static json_t *config_json(const evb_allocation *c) {
    json_t *units = json_array(), *drop = json_array();
    for (int u = 0; u < c->n_units; u++) {
        const evb_allocation_unit *x = &c->units[u];
        json_t *d = level_json(x);
        json_object_set_new(d, "unit", json_integer(x->unit));
        json_object_set_new(d, "name", json_string(x->name));
        if (x->level >= 0) json_object_set_new(d, "level", json_integer(x->level));
        set_num(d, "cost", x->cost);
        set_num(d, "storage_bits_per_weight", x->storage_bpw);
        json_array_append_new(units, d);
    }
    for (int i = 0; i < c->n_drop; i++)
        json_array_append_new(drop, json_pack("{s:i, s:s}", "block", c->drop[i].block, "sub", c->drop[i].mlp ? "mlp" : "attn"));
    json_t *j = json_pack("{s:s, s:s, s:s, s:s}", "model", c->model, "db", c->db, "method", c->method, "target_kind", c->target_kind);
    set_num(j, "target", c->target);
    set_num(j, "budget", c->budget);
    set_num(j, "cost", c->cost);
    set_num(j, "fitness", c->fitness);
    json_object_set_new(j, "units", units);
    json_object_set_new(j, "drop", drop);
    static const char *const keys[] = {"sparsity", "bits_per_weight", "dropped", "storage_bytes", "bytes",
                                       "storage_bits_per_weight", "fitness_all", "speedup", "seconds", "dense_seconds"};
    const double vals[] = {c->sparsity, c->bits_per_weight, c->dropped, c->storage_bytes, c->bytes,
                           c->storage_bpw,
                           c->fitness_all, c->speedup, c->seconds, c->dense_seconds};
    for (int k = 0; k < 10; k++) set_num(j, keys[k], vals[k]);
    return j;
}

int evb_allocation_write(const evb_allocation *c, const char *path) {
    json_t *j = config_json(c);
    if (!j) EVB_ERRORF(EVB_ENOMEM, "%s: out of memory", path);
    int s = evb_json_write_file(path, j, 1);
    json_decref(j);
    return s;
}

/* ---- reading ---- */

static int read_str(const json_t *o, const char *key, char *dst, size_t n, const char *path, const char *where) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return EVB_SUCCESS;
    if (!json_is_string(v)) EVB_ERRORF(EVB_EFORMAT, "%s: %s\"%s\" must be a string", path, where, key);
    if (strlen(json_string_value(v)) >= n) EVB_ERRORF(EVB_EFORMAT, "%s: %s\"%s\" is longer than %zu bytes", path, where, key, n - 1);
    snprintf(dst, n, "%s", json_string_value(v));
    return EVB_SUCCESS;
}

/* One unit's object: where is "units[i]." for messages. */
static int read_unit(const json_t *x, evb_allocation_unit *u, const char *path, const char *where) {
    char w[PATH_MAX + 64];
    snprintf(w, sizeof w, "%s: %s", path, where);
    if (!json_is_object(x)) EVB_ERRORF(EVB_EFORMAT, "%s: %s must be an object", path, where);
    long long v, lvl;
    double d;
    int s = evb_json_int(x, "unit", 1, 0, 0, INT32_MAX, &v, w);
    if (!s) s = evb_json_int(x, "level", 0, -1, -1, 32767, &lvl, w);
    if (!s) s = evb_json_num(x, "cost", 0, NAN, &u->cost, w);
    if (!s) s = evb_json_num(x, "storage_bits_per_weight", 0, NAN, &u->storage_bpw, w);
    if (!s) s = evb_json_num(x, "fitness", 0, NAN, &u->fitness, w);
    if (!s) s = evb_json_bool(x, "dense", 0, &u->dense, w);
    if (!s) s = read_str(x, "name", u->name, sizeof u->name, path, where);
    if (!s) s = read_str(x, "method", u->key.method, sizeof u->key.method, path, where);
    if (s) return s;
    u->unit = (int)v;
    u->level = (int)lvl;
    u->key.unit = u->unit;
    u->zero = !u->dense && strcmp(u->key.method, "zero") == 0;
    if (!u->dense && !u->zero && !u->key.method[0]) { /* a problem file's level: its own fields, kept as extra */
        static const char *const known[] = {"unit", "name", "level", "cost", "storage_bits_per_weight", "fitness", "dense", "method"};
        json_t *rest = json_deep_copy(x);
        for (int k = 0; rest && k < 8; k++) json_object_del(rest, known[k]);
        if (json_object_size(rest)) u->extra = json_dumps(rest, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(rest);
    }
    if (u->dense || u->zero || !u->key.method[0]) return EVB_SUCCESS;
    if (json_object_get(x, "type")) { /* a GGUF level */
        char name[16] = "";
        s = read_str(x, "type", name, sizeof name, path, where);
        const evb_gguf_type_info *t = s ? NULL : evb_gguf_type_find(name);
        if (!s && (!t || t->block < 2))
            s = EVB_RAISEF(EVB_EFORMAT, "%s\"type\" '%s' is not a GGUF block type (%s)", w, name, evb_gguf_type_names());
        if (!s) { u->key.kind = EVB_LEVEL_GGUF; u->key.gguf_type = t->type; }
    } else if (evb_method_find(u->key.method) && evb_method_find(u->key.method)->kind == EVB_LEVEL_STRUCT) {
        u->key.kind = EVB_LEVEL_STRUCT;
        s = evb_json_int(x, "group_size", 1, 0, 1, INT32_MAX, &v, w); u->key.group_size = (int)v;
        if (!s) { s = evb_json_int(x, "n_removed", 1, 0, 0, INT32_MAX, &v, w); u->key.n_removed = v; }
    } else if (json_object_get(x, "bits")) {
        u->key.kind = EVB_LEVEL_QUANT;
        s = evb_json_int(x, "bits", 1, 0, 1, 16, &v, w); u->key.bits = (int)v;
        if (!s) { s = evb_json_int(x, "group_size", 0, 0, 0, INT32_MAX, &v, w); u->key.group_size = (int)v; }
        if (!s) s = evb_json_bool(x, "sym", 0, &u->key.sym, w);
    } else if (json_object_get(x, "sparsity") || json_object_get(x, "n_removed") || json_object_get(x, "m")) {
        u->key.kind = EVB_LEVEL_SPARSE;
        s = evb_json_num(x, "sparsity", 0, 0, &d, w); u->key.sparsity = d;
        if (!s && !(d >= 0 && d <= 1)) s = EVB_RAISEF(EVB_EFORMAT, "%s\"sparsity\" is %g, outside [0, 1]", w, d);
        if (!s) { s = evb_json_int(x, "n_removed", 0, 0, 0, INT64_MAX, &v, w); u->key.n_removed = v; }
        if (!s) { s = evb_json_int(x, "n_keep", 0, 0, 0, 1 << 20, &v, w); u->key.n_keep = (int)v; }
        if (!s) { s = evb_json_int(x, "m", 0, 0, 0, 1 << 20, &v, w); u->key.m = (int)v; }
    }
    return s;
}

static int read_drop(const json_t *d, evb_allocation *c, const char *path) {
    json_t *x;
    size_t i;
    json_array_foreach(d, i, x) {
        char w[PATH_MAX + 64];
        snprintf(w, sizeof w, "%s: drop[%zu].", path, i);
        long long b;
        const char *sub = json_string_value(json_object_get(x, "sub"));
        int s = evb_json_int(x, "block", 1, 0, 0, INT32_MAX, &b, w);
        if (s) return s;
        if (!sub || (strcmp(sub, "attn") && strcmp(sub, "mlp"))) EVB_ERRORF(EVB_EFORMAT, "%ssub must be \"attn\" or \"mlp\"", w);
        c->drop[i] = (evb_allocation_drop){(int)b, strcmp(sub, "mlp") == 0};
    }
    return EVB_SUCCESS;
}

static int read_top(const json_t *j, evb_allocation *c, const char *path) {
    char w[PATH_MAX + 64];
    snprintf(w, sizeof w, "%s:", path);
    int s = read_str(j, "model", c->model, sizeof c->model, path, "");
    if (!s) s = read_str(j, "db", c->db, sizeof c->db, path, "");
    if (!s) s = read_str(j, "method", c->method, sizeof c->method, path, "");
    if (!s) s = read_str(j, "target_kind", c->target_kind, sizeof c->target_kind, path, "");
    static const char *const keys[] = {"target", "budget", "cost", "fitness", "fitness_all", "sparsity", "bits_per_weight",
                                       "dropped", "storage_bytes", "bytes", "storage_bits_per_weight", "speedup", "seconds",
                                       "dense_seconds"};
    double *vals[] = {&c->target, &c->budget, &c->cost, &c->fitness, &c->fitness_all, &c->sparsity, &c->bits_per_weight,
                      &c->dropped, &c->storage_bytes, &c->bytes, &c->storage_bpw, &c->speedup, &c->seconds,
                      &c->dense_seconds};
    for (int k = 0; !s && k < 14; k++) s = evb_json_num(j, keys[k], 0, NAN, vals[k], w);
    return s;
}

/* The subdirectories of dir that hold a best.json (a sweep's targets), listed into buf[n] as "DIR/A/best.json,
 * DIR/B/best.json" (at most 4, sorted, then ", ... (K in all)"); how many there are. */
static int list_best_jsons(const char *dir, char *buf, size_t n) {
    DIR *d = opendir(dir);
    struct dirent *de;
    char *names[4];
    int k = 0;
    buf[0] = 0;
    while (d && (de = readdir(d))) {
        char p[PATH_MAX];
        struct stat sb;
        if (de->d_name[0] == '.' || snprintf(p, sizeof p, "%s/%s/best.json", dir, de->d_name) >= (int)sizeof p) continue;
        if (stat(p, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        if (k < 4) names[k] = strdup(de->d_name);
        k++;
    }
    if (d) closedir(d);
    int shown = k < 4 ? k : 4;
    for (int i = 0; i < shown; i++)  /* readdir's order is the file system's: sort the few shown */
        for (int j = i + 1; j < shown; j++)
            if (names[i] && names[j] && strcmp(names[j], names[i]) < 0) { char *t = names[i]; names[i] = names[j]; names[j] = t; }
    for (int i = 0, at = 0; i < shown; i++) {
        if (names[i] && at < (int)n) at += snprintf(buf + at, n - (size_t)at, "%s%s/%s/best.json", i ? ", " : "", dir, names[i]);
        free(names[i]);
    }
    if (k > 4) snprintf(buf + strlen(buf), n - strlen(buf), ", ... (%d in all)", k);
    return k;
}

/* A directory: its best.json; a sweep's directory (no best.json of its own) names its targets' instead. */
static int config_path(const char *path, char *file, size_t n) {
    struct stat sb;
    if (stat(path, &sb) || !S_ISDIR(sb.st_mode)) { snprintf(file, n, "%s", path); return EVB_SUCCESS; }
    if (snprintf(file, n, "%s/best.json", path) >= (int)n) EVB_ERRORF(EVB_EINVAL, "%.60s...: the path is too long", path);
    if (stat(file, &sb) == 0) return EVB_SUCCESS;
    char subs[1200];
    if (list_best_jsons(path, subs, sizeof subs))
        EVB_ERRORF(EVB_EINVAL, "%s is a directory without best.json (hint: a sweep directory holds one best.json per target "
                   "subfolder; pass one of them: %s)", path, subs);
    EVB_ERRORF(EVB_EINVAL, "%s is a directory without best.json (hint: pass a run directory written by "
               "'evobudget search --out', or its best.json)", path);
}

static int cmp_int(const void *a, const void *b) { int x = *(const int *)a, y = *(const int *)b; return (x > y) - (x < y); }

/* No unit twice (sorted, so that a problem file's many units cost n log n). */
static int unique_units(const evb_allocation *c, const char *file) {
    int *u = malloc(sizeof(int) * (c->n_units ? (size_t)c->n_units : 1)), s = EVB_SUCCESS;
    if (!u) EVB_ERRORF(EVB_ENOMEM, "out of memory");
    for (int i = 0; i < c->n_units; i++) u[i] = c->units[i].unit;
    qsort(u, (size_t)c->n_units, sizeof *u, cmp_int);
    for (int i = 1; i < c->n_units && !s; i++)
        if (u[i] == u[i - 1]) s = EVB_RAISEF(EVB_EFORMAT, "%s: unit %d appears twice", file, u[i]);
    free(u);
    return s;
}

int evb_allocation_read(const char *path, evb_allocation **out) {
    *out = NULL;
    char file[PATH_MAX];
    int s = config_path(path, file, sizeof file);
    json_t *j = NULL;
    if (!s) s = evb_json_load_file(file, &j);
    if (s) return s;
    json_t *units = json_object_get(j, "units"), *drop = json_object_get(j, "drop");
    if (!json_is_object(j) || !json_is_array(units)) { json_decref(j); EVB_ERRORF(EVB_EFORMAT, "%s: no \"units\" array (hint: give a best.json that search wrote)", file); }
    if (drop && !json_is_null(drop) && !json_is_array(drop)) { json_decref(j); EVB_ERRORF(EVB_EFORMAT, "%s: \"drop\" must be an array of {\"block\": l, \"sub\": \"attn\"|\"mlp\"}", file); }
    evb_allocation *c = NULL;
    s = evb_allocation_new((int)json_array_size(units), json_is_array(drop) ? (int)json_array_size(drop) : 0, &c);
    if (!s) s = read_top(j, c, file);
    json_t *x;
    size_t i;
    json_array_foreach(units, i, x) {
        char where[32];
        snprintf(where, sizeof where, "units[%zu].", i);
        if (!s) s = read_unit(x, &c->units[i], file, where);
    }
    if (!s) s = unique_units(c, file);
    if (!s && c->n_drop) s = read_drop(drop, c, file);
    json_decref(j);
    if (s) { evb_allocation_free(c); return s; }
    *out = c;
    return EVB_SUCCESS;
}

int evb_allocation_check(const evb_allocation *c, const evb_model *m, const char *path) {
    int U = evb_model_n_units(m), L = m->config.n_layers;
    for (int i = 0; i < c->n_units; i++) {
        const evb_allocation_unit *x = &c->units[i];
        if (x->unit >= U) EVB_ERRORF(EVB_EINVAL, "%s: units[%d] names unit %d; the model has units 0..%d", path, i, x->unit, U - 1);
        int rows, cols;
        evb_model_unit_shape(m, x->unit, &rows, &cols);
        const evb_gguf_type_info *t = evb_gguf_type_get(x->key.gguf_type);
        if (!x->dense && !x->zero && x->key.kind == EVB_LEVEL_GGUF && !evb_gguf_row_ok(x->key.gguf_type, cols))
            EVB_ERRORF(EVB_EINVAL, "%s: units[%d] (%s of block %d) asks GGUF type %s, whose blocks of %d do not divide its rows of %d inputs "
                       "(hint: a type with blocks that divide %d, or no level for this unit)", path, i,
                       evb_linear_name((evb_linear_kind)(x->unit % EVB_LINEAR_COUNT)), x->unit / EVB_LINEAR_COUNT, t->name, t->block, cols, cols);
    }
    for (int i = 0; i < c->n_drop; i++)
        if (c->drop[i].block >= L) EVB_ERRORF(EVB_EINVAL, "%s: drop[%d] names block %d; the model has blocks 0..%d", path, i, c->drop[i].block, L - 1);
    return EVB_SUCCESS;
}

/* ---- a configuration's weights ---- */

int evb_allocation_uniform(const evb_model *m, const evb_db_entry *key, evb_allocation **out) {
    int U = evb_model_n_units(m), s = evb_allocation_new(U, 0, out);
    for (int u = 0; !s && u < U; u++) {
        evb_allocation_unit *x = &(*out)->units[u];
        x->unit = u;
        x->key = *key;
        x->key.unit = u;
        snprintf(x->name, sizeof x->name, "layers.%d.%s", u / EVB_LINEAR_COUNT, evb_linear_name((evb_linear_kind)(u % EVB_LINEAR_COUNT)));
    }
    return s;
}

int evb_allocation_drop_mask(const evb_allocation *c, const evb_model *m, unsigned char **drop) {
    int L = m->config.n_layers;
    *drop = NULL;
    if (!c->n_drop) return EVB_SUCCESS;
    *drop = calloc(2 * (size_t)L, 1);
    if (!*drop) EVB_ERRORF(EVB_ENOMEM, "out of memory");
    for (int i = 0; i < c->n_drop; i++)
        if (c->drop[i].block < L) (*drop)[c->drop[i].mlp * L + c->drop[i].block] = 1;
    return EVB_SUCCESS;
}

/* Unit x's database entry (>= 0), EVB_ENTRY_ZERO, or an error naming the level the database lacks. */
static int unit_entry(const evb_allocation_unit *x, const evb_db *db, const char *db_dir, int *entry) {
    if (x->zero) { *entry = EVB_ENTRY_ZERO; return EVB_SUCCESS; }
    const evb_method *me = evb_method_find(x->key.method);
    if (!me) EVB_ERRORF(EVB_EINVAL, "unit %d: method '%s' is unknown (%s)", x->unit, x->key.method, evb_method_names());
    evb_db_entry key = x->key;
    key.kind = me->kind;
    *entry = evb_db_find(db, &key);
    if (*entry >= 0) return EVB_SUCCESS;
    int sparse = me->kind == EVB_LEVEL_SPARSE;
    if (me->kind == EVB_LEVEL_STRUCT)
        EVB_ERRORF(EVB_EINVAL,
                   "%s: block %d has no %s level removing %lld of its groups (hint: the search that wrote "
                   "this configuration builds it: search --target-speedup with --db %s)", db_dir,
                   x->unit / EVB_LINEAR_COUNT, me->name, (long long)key.n_removed, db_dir);
    if (me->kind == EVB_LEVEL_GGUF) {
        const evb_gguf_type_info *t = evb_gguf_type_get(key.gguf_type);
        EVB_ERRORF(EVB_EINVAL, "%s: unit %d (%s of block %d) has no %s level of type %s (hint: add it with 'evobudget db build --method %s --types %s')",
                   db_dir, x->unit, evb_linear_name((evb_linear_kind)(x->unit % EVB_LINEAR_COUNT)), x->unit / EVB_LINEAR_COUNT, me->name,
                   t ? t->name : "?", me->name, t ? t->name : "?");
    }
    double v = sparse ? key.sparsity : key.bits;
    EVB_ERRORF(EVB_EINVAL, "%s: unit %d (%s of block %d) has no %s level %s%g (hint: add it with 'evobudget db build --method %s %s%g')",
               db_dir, x->unit, evb_linear_name((evb_linear_kind)(x->unit % EVB_LINEAR_COUNT)), x->unit / EVB_LINEAR_COUNT, me->name,
               sparse ? "sparsity " : "bits ", v, me->name, sparse ? "--sparsity " : "--bits ", v);
}

int evb_allocation_weights(const evb_allocation *c, const evb_model *m, const evb_db *db, const char *db_dir,
                           const float ***weights, float **mem) {
    int U = evb_model_n_units(m), s = EVB_SUCCESS;
    int *idx = malloc(sizeof(int) * U);
    const float **w = calloc((size_t)U, sizeof *w);
    size_t total = 0;
    if (!idx || !w) s = EVB_RAISEF(EVB_ENOMEM, "out of memory");
    for (int u = 0; idx && u < U; u++) idx[u] = EVB_ENTRY_DENSE;
    for (int i = 0; !s && i < c->n_units; i++) {
        const evb_allocation_unit *x = &c->units[i];
        if (x->unit >= U) s = EVB_RAISEF(EVB_EINVAL, "units[%d] names unit %d; the model has units 0..%d", i, x->unit, U - 1);
        else if (x->dense || x->key.kind == EVB_LEVEL_STRUCT) continue;   /* structured: evb_allocation_blocks */
        else if (!x->zero && !x->key.method[0]) s = EVB_RAISEF(EVB_EINVAL, "unit %d has no \"method\"", x->unit);
        else s = unit_entry(x, db, db_dir, &idx[x->unit]);
        int r, cols;
        if (!s) { evb_model_unit_shape(m, x->unit, &r, &cols); total += (size_t)r * cols; }
    }
    float *p = s ? NULL : malloc(sizeof(float) * (total ? total : 1)), *q = p;
    if (!s && !p) s = EVB_RAISEF(EVB_ENOMEM, "out of memory for the compressed weights (%zu floats)", total);
    for (int u = 0; !s && u < U; u++) {
        if (idx[u] == EVB_ENTRY_DENSE) continue;
        int r, cols;
        evb_model_unit_shape(m, u, &r, &cols);
        if (idx[u] == EVB_ENTRY_ZERO) memset(q, 0, sizeof(float) * (size_t)r * cols);
        else s = evb_db_load(db, idx[u], q);
        w[u] = q;
        q += (size_t)r * cols;
    }
    free(idx);
    if (s) { free(p); free(w); return s; }
    *weights = w;
    *mem = p;
    return EVB_SUCCESS;
}

/* ---- a configuration's structured levels ---- */

void evb_allocation_blocks_free(evb_block_level **b, int n) {
    for (int i = 0; b && i < n; i++) evb_block_level_free(b[i]);
    free(b);
}

/* Unit x's structured level from the database, made into a block level of m at *out. */
static int unit_block(const evb_allocation_unit *x, const evb_model *m, const evb_db *db, const char *db_dir,
                      evb_block_level **out) {
    int k = x->unit % EVB_LINEAR_COUNT, entry, s;
    if (k != EVB_LINEAR_O && k != EVB_LINEAR_DOWN)
        EVB_ERRORF(EVB_EINVAL, "unit %d: a structured level belongs to an o_proj or down_proj unit", x->unit);
    if ((s = unit_entry(x, db, db_dir, &entry))) return s;
    evb_struct_level *r = NULL;
    if ((s = evb_db_load_struct(db, entry, &r))) return s;
    s = evb_block_level_make(m, x->unit / EVB_LINEAR_COUNT, k == EVB_LINEAR_DOWN, r->kept, r->n_kept,
                             r->out_w, r->bias, out);
    evb_struct_level_free(r);
    return s;
}

int evb_allocation_blocks(const evb_allocation *c, const evb_model *m, const evb_db *db, const char *db_dir,
                          evb_block_level ***out, int *n_struct) {
    int L = m->config.n_layers, U = evb_model_n_units(m), s = EVB_SUCCESS;
    *out = NULL; *n_struct = 0;
    evb_block_level **b = calloc(2 * (size_t)L, sizeof *b);
    if (!b) EVB_ERRORF(EVB_ENOMEM, "out of memory");
    for (int i = 0; !s && i < c->n_units; i++) {
        const evb_allocation_unit *x = &c->units[i];
        if (x->dense || x->key.kind != EVB_LEVEL_STRUCT) continue;
        if (x->unit >= U) { s = EVB_RAISEF(EVB_EINVAL, "units[%d] names unit %d; the model has units 0..%d",
                                           i, x->unit, U - 1); break; }
        int at = (x->unit % EVB_LINEAR_COUNT == EVB_LINEAR_DOWN) * L + x->unit / EVB_LINEAR_COUNT;
        if (b[at]) { s = EVB_RAISEF(EVB_EINVAL, "block %d's sub-block is given two structured levels",
                                    at % L); break; }
        s = unit_block(x, m, db, db_dir, &b[at]);
        if (!s) ++*n_struct;
    }
    if (s) { evb_allocation_blocks_free(b, 2 * L); return s; }
    *out = b;
    return EVB_SUCCESS;
}
