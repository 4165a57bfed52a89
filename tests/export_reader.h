/* export_reader.h -- what the readers of exported files in tests share: running the program (stdout into
 * tmp/out.json, stderr into tmp/err.txt, tmp being the test's temporary directory), and a safetensors reader
 * written from the format's description (an 8-byte header length, the JSON header, the data), independent of
 * the library's. */
#ifndef EVB_EXPORT_READER_H
#define EVB_EXPORT_READER_H
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "shell.h"

static char tmp[512];

/* `evobudget ARGS`, stdout into tmp/out.json (parsed into *j), stderr into tmp/err.txt. */
static int evb(const char *args, json_t **j) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' %s > %s/out.json 2> %s/err.txt", EVB_CLI, args, tmp, tmp);
    int rc = sh(cmd);
    if (j) {
        snprintf(cmd, sizeof cmd, "%s/out.json", tmp);
        *j = json_load_file(cmd, 0, NULL);
    }
    return rc;
}

static int err_lines(char *first, size_t n) {
    char p[600];
    snprintf(p, sizeof p, "%s/err.txt", tmp);
    FILE *f = fopen(p, "r");
    int lines = 0, c;
    size_t k = 0;
    while (f && (c = fgetc(f)) != EOF) {
        if (lines == 0 && c != '\n' && k + 1 < n) first[k++] = (char)c;
        lines += c == '\n';
    }
    first[k] = '\0';
    if (f) fclose(f);
    return lines;
}

static long file_size(const char *dir, const char *name) {
    char p[1200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    struct stat sb;
    return stat(p, &sb) == 0 ? (long)sb.st_size : -1;
}

// ---- the independent reader ----

/* The whole file at path (malloc'd, *size bytes); NULL when it cannot be read. */
static uint8_t *read_bytes(const char *path, size_t *size) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *buf = n >= 0 ? malloc(n ? (size_t)n : 1) : NULL;
    if (buf && fread(buf, 1, (size_t)n, fp) != (size_t)n) { free(buf); buf = NULL; }
    fclose(fp);
    *size = buf ? (size_t)n : 0;
    return buf;
}

typedef struct st_file { uint8_t *buf; size_t size, data; json_t *hdr; } st_file;

static int st_load(const char *dir, st_file *f) {
    char p[1200];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    memset(f, 0, sizeof *f);
    f->buf = read_bytes(p, &f->size);
    if (!f->buf || f->size < 8) return 0;
    uint64_t n = 0;
    for (int i = 0; i < 8; i++) n |= (uint64_t)f->buf[i] << (8 * i);
    if (n > f->size - 8) return 0;
    f->hdr = json_loadb((const char *)f->buf + 8, (size_t)n, 0, NULL);
    f->data = 8 + (size_t)n;
    return f->hdr != NULL;
}

static void st_free(st_file *f) { free(f->buf); json_decref(f->hdr); memset(f, 0, sizeof *f); }

static long dtype_size(const char *dtype) {
    return strcmp(dtype, "U8") == 0 ? 1 : strcmp(dtype, "F16") == 0 || strcmp(dtype, "BF16") == 0 ? 2 : strcmp(dtype, "I64") == 0 ? 8 : 4;
}

/* The tensor's bytes, checking dtype, shape (d1 < 0 for one dimension) and that it lies inside the file. */
static const uint8_t *st_get(const st_file *f, const char *name, const char *dtype, long d0, long d1) {
    json_t *t = json_object_get(f->hdr, name);
    const char *dt = json_string_value(json_object_get(t, "dtype"));
    if (!t || !dt || strcmp(dt, dtype)) return NULL;
    json_t *shp = json_object_get(t, "shape"), *off = json_object_get(t, "data_offsets");
    size_t nd = json_array_size(shp);
    if (nd != (d1 >= 0 ? 2u : 1u) || json_integer_value(json_array_get(shp, 0)) != d0 || (d1 >= 0 && json_integer_value(json_array_get(shp, 1)) != d1))
        return NULL;
    json_int_t b = json_integer_value(json_array_get(off, 0)), e = json_integer_value(json_array_get(off, 1));
    if (b < 0 || e - b != d0 * (d1 >= 0 ? d1 : 1) * dtype_size(dtype) || (size_t)e > f->size - f->data) return NULL;
    return f->buf + f->data + b;
}

static const char *lname[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

static void unit_name(int u, char *out, size_t n) {
    int l = u / 7, k = u % 7;
    snprintf(out, n, "model.layers.%d.%s.%s", l, k < 4 ? "self_attn" : "mlp", lname[k]);
}
#endif
