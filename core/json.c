/* json.c -- Jansson helpers with one-line errors (see json.h). */
#include "core/json.h"
#include "evobudget/evb_status.h"
#include "core/fileio.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

int evb_json_load_file(const char *path, json_t **out) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) EVB_ERRORF(EVB_EIO, "%s: cannot open: %s", path, strerror(errno));
    fclose(f);
    json_error_t err;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    if (!j) EVB_ERRORF(EVB_EFORMAT, "%s:%d:%d: JSON syntax error: %s", path, err.line, err.column, err.text);
    *out = j;
    return EVB_SUCCESS;
}

int evb_json_load_buffer(const char *buf, size_t len, const char *what, json_t **out) {
    json_error_t err;
    *out = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &err);
    if (!*out) EVB_ERRORF(EVB_EFORMAT, "%s: JSON syntax error at line %d, column %d: %s", what, err.line, err.column, err.text);
    return EVB_SUCCESS;
}

int evb_json_int(const json_t *obj, const char *key, int required, long long dflt, long long lo, long long hi,
                 long long *out, const char *path) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        if (required) EVB_ERRORF(EVB_EFORMAT, "%s: missing \"%s\"", path, key);
        *out = dflt;
        return EVB_SUCCESS;
    }
    long long x;
    if (json_is_integer(v)) x = json_integer_value(v);
    else if (json_is_real(v) && floor(json_real_value(v)) == json_real_value(v) && fabs(json_real_value(v)) < 9e15)
        x = (long long)json_real_value(v);
    else EVB_ERRORF(EVB_EFORMAT, "%s: \"%s\" must be an integer", path, key);
    if (x < lo || x > hi) EVB_ERRORF(EVB_EFORMAT, "%s: \"%s\" is %lld, outside [%lld, %lld]", path, key, x, lo, hi);
    *out = x;
    return EVB_SUCCESS;
}

int evb_json_num(const json_t *obj, const char *key, int required, double dflt, double *out, const char *path) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        if (required) EVB_ERRORF(EVB_EFORMAT, "%s: missing \"%s\"", path, key);
        *out = dflt;
        return EVB_SUCCESS;
    }
    if (!json_is_number(v)) EVB_ERRORF(EVB_EFORMAT, "%s: \"%s\" must be a number", path, key);
    double x = json_number_value(v);
    if (!isfinite(x)) EVB_ERRORF(EVB_EFORMAT, "%s: \"%s\" is not finite", path, key);
    *out = x;
    return EVB_SUCCESS;
}

int evb_json_bool(const json_t *obj, const char *key, int dflt, int *out, const char *path) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) { *out = dflt; return EVB_SUCCESS; }
    if (!json_is_boolean(v)) EVB_ERRORF(EVB_EFORMAT, "%s: \"%s\" must be true or false", path, key);
    *out = json_is_true(v);
    return EVB_SUCCESS;
}

struct json_out { const json_t *j; const char *path; int indent; };

static int dump_json(FILE *f, void *ctx) {
    const struct json_out *o = ctx;
    errno = 0;
    if (json_dumpf(o->j, f, JSON_INDENT(o->indent) | JSON_PRESERVE_ORDER) == 0) return EVB_SUCCESS;
    int e = errno ? errno : EIO;
    return EVB_RAISEF(EVB_EIO, "%s: write failed: %s%s", o->path, strerror(e), evb_write_hint(e));
}

int evb_json_write_file(const char *path, const json_t *j, int indent) {
    struct json_out o = {j, path, indent};
    return evb_write_atomic_with(path, dump_json, &o);
}
