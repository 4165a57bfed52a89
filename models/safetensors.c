/* safetensors.c -- the safetensors reader (see safetensors.h). */
#define _DEFAULT_SOURCE
#include "models/safetensors.h"
#include "core/half.h"
#include "core/json.h"
#include "evobudget/evb_status.h"
#include "core/fileio.h"

#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Headers above this size are refused (the format's reference implementation uses 100 MB). */
#define MAX_HEADER ((uint64_t)100 * 1000 * 1000)

// ---- dtypes ----

static int dtype_size(const char *d) {
    static const struct { const char *name; int size; } table[] = {
        {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1},
        {"U64", 8}, {"U32", 4}, {"U16", 2}, {"U8", 1}, {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
    };
    for (size_t i = 0; i < sizeof table / sizeof *table; i++)
        if (strcmp(d, table[i].name) == 0) return table[i].size;
    return 0;
}

float evb_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) bits = sign;
        else { /* subnormal: normalise */
            int e = -1;
            do { e++; man <<= 1; } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) bits = sign | 0x7f800000u | (man << 13);
    else bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float evb_bf16_to_f32(uint16_t h) { return evb_bf16_value(h); }

// ---- header ----

void evb_st_init(evb_safetensors *st) { memset(st, 0, sizeof *st); }

const evb_st_tensor *evb_st_find(const evb_safetensors *st, const char *name) {
    for (int i = 0; i < st->n_tensors; i++)
        if (strcmp(st->tensors[i].name, name) == 0) return &st->tensors[i];
    return NULL;
}

static int parse_entry(evb_st_tensor *t, const char *name, json_t *v, size_t data_size, const char *what) {
    if (!json_is_object(v)) EVB_ERRORF(EVB_EFORMAT, "%s: header entry \"%s\" is not an object", what, name);
    json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape"), *off = json_object_get(v, "data_offsets");
    if (!json_is_string(dt)) EVB_ERRORF(EVB_EFORMAT, "%s: tensor \"%s\" has no dtype string", what, name);
    int esz = dtype_size(json_string_value(dt));
    if (!esz) EVB_ERRORF(EVB_EFORMAT, "%s: tensor \"%s\" has unknown dtype \"%.16s\"", what, name, json_string_value(dt));
    snprintf(t->dtype, sizeof t->dtype, "%s", json_string_value(dt));
    if (!json_is_array(sh) || json_array_size(sh) > EVB_ST_MAX_DIMS)
        EVB_ERRORF(EVB_EFORMAT, "%s: tensor \"%s\" has no shape array of at most %d dims", what, name, EVB_ST_MAX_DIMS);
    t->ndim = (int)json_array_size(sh);
    uint64_t n = 1;
    for (int d = 0; d < t->ndim; d++) {
        json_t *x = json_array_get(sh, d);
        if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) > ((int64_t)1 << 40))
            EVB_ERRORF(EVB_EFORMAT, "%s: tensor \"%s\" has a bad dimension %d in its shape", what, name, d);
        t->shape[d] = json_integer_value(x);
        if (t->shape[d] && n > UINT64_MAX / (uint64_t)t->shape[d]) EVB_ERRORF(EVB_EFORMAT, "%s: tensor \"%s\" is too large", what, name);
        n *= (uint64_t)t->shape[d];
    }
    if (!json_is_array(off) || json_array_size(off) != 2 || !json_is_integer(json_array_get(off, 0)) ||
        !json_is_integer(json_array_get(off, 1)))
        EVB_ERRORF(EVB_EFORMAT, "%s: tensor \"%s\" has no data_offsets [begin, end]", what, name);
    json_int_t b = json_integer_value(json_array_get(off, 0)), e = json_integer_value(json_array_get(off, 1));
    if (b < 0 || e < b || (uint64_t)e > data_size)
        EVB_ERRORF(EVB_EFORMAT, "%s: tensor \"%s\" data_offsets [%lld, %lld] run past the end of the data (%zu bytes); the file may be truncated",
                   what, name, (long long)b, (long long)e, data_size);
    if (n > UINT64_MAX / (uint64_t)esz || (uint64_t)(e - b) != n * (uint64_t)esz)
        EVB_ERRORF(EVB_EFORMAT, "%s: tensor \"%s\" holds %lld bytes but its shape and dtype need %llu", what, name,
                   (long long)(e - b), (unsigned long long)(n * (uint64_t)esz));
    t->begin = (size_t)b;
    t->end = (size_t)e;
    return EVB_SUCCESS;
}

int evb_st_parse(evb_safetensors *st, const uint8_t *buf, size_t size, const char *what, int file_index) {
    if (size < 8) EVB_ERRORF(EVB_EFORMAT, "%s: %zu bytes is too short for a safetensors file (truncated?)", what, size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | buf[i];
    if (hlen > MAX_HEADER || hlen > size - 8)
        EVB_ERRORF(EVB_EFORMAT, "%s: header length %llu runs past the end of the file (%zu bytes); the file is truncated or not safetensors",
                   what, (unsigned long long)hlen, size);
    json_t *root;
    int status = evb_json_load_buffer((const char *)buf + 8, (size_t)hlen, what, &root);
    if (status) return status;
    if (!json_is_object(root)) { json_decref(root); EVB_ERRORF(EVB_EFORMAT, "%s: the header is not a JSON object", what); }
    size_t data_size = size - 8 - (size_t)hlen;
    size_t n_new = json_object_size(root);
    evb_st_tensor *grown = realloc(st->tensors, (st->n_tensors + n_new + 1) * sizeof *grown);
    if (!grown) { json_decref(root); EVB_ERROR("out of memory reading a safetensors header", EVB_ENOMEM); }
    st->tensors = grown;
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "__metadata__") == 0) continue;
        evb_st_tensor *t = &st->tensors[st->n_tensors];
        memset(t, 0, sizeof *t);
        status = parse_entry(t, key, v, data_size, what);
        if (!status && evb_st_find(st, key)) status = EVB_RAISEF(EVB_EFORMAT, "%s: tensor \"%s\" appears in more than one file", what, key);
        if (!status && !(t->name = strdup(key))) status = EVB_RAISEF(EVB_ENOMEM, "out of memory");
        if (status) { json_decref(root); return status; }
        t->file = file_index;
        st->n_tensors++;
    }
    json_decref(root);
    return EVB_SUCCESS;
}

int evb_st_open(evb_safetensors *st, const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) EVB_ERRORF(EVB_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) { close(fd); EVB_ERRORF(EVB_EIO, "%s: not a regular file", path); }
    size_t size = (size_t)sb.st_size;
    const uint8_t *map = NULL;
    if (size > 0) {
        void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) { close(fd); EVB_ERRORF(EVB_EIO, "%s: cannot map: %s", path, strerror(errno)); }
        map = p;
    }
    close(fd);
    evb_st_file *files = realloc(st->files, (st->n_files + 1) * sizeof *files);
    if (!files) { if (map) munmap((void *)map, size); EVB_ERROR("out of memory", EVB_ENOMEM); }
    st->files = files;
    evb_st_file *f = &st->files[st->n_files];
    f->map = map; f->size = size; f->path = strdup(path);
    f->data_start = 0;
    st->n_files++;
    if (!f->path) EVB_ERROR("out of memory", EVB_ENOMEM);
    static const uint8_t empty[1];
    int status = evb_st_parse(st, map ? map : empty, size, path, st->n_files - 1);
    if (status) return status;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | map[i];
    f->data_start = 8 + (size_t)hlen;
    return EVB_SUCCESS;
}

void evb_st_close(evb_safetensors *st) {
    for (int i = 0; i < st->n_files; i++) {
        if (st->files[i].map) munmap((void *)st->files[i].map, st->files[i].size);
        free(st->files[i].path);
    }
    for (int i = 0; i < st->n_tensors; i++) free(st->tensors[i].name);
    free(st->files);
    free(st->tensors);
    evb_st_init(st);
}

// ---- data ----

static int check_shape(const evb_safetensors *st, const evb_st_tensor *t, int ndim, const int64_t *shape) {
    const evb_st_file *f = &st->files[t->file];
    int same = t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = t->shape[d] == shape[d];
    if (!same) {
        char got[96] = "", want[96] = "";
        for (int d = 0; d < t->ndim; d++) snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? "," : "", (long long)t->shape[d]);
        for (int d = 0; d < ndim; d++) snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", d ? "," : "", (long long)shape[d]);
        EVB_ERRORF(EVB_EFORMAT, "%s: tensor \"%s\" has shape [%s] but config.json implies [%s]", f->path, t->name, got, want);
    }
    return EVB_SUCCESS;
}

const uint16_t *evb_st_bf16_in_place(const evb_safetensors *st, const evb_st_tensor *t) {
    const evb_st_file *f = &st->files[t->file];
    const uint8_t *p = f->map + f->data_start + t->begin;
    return strcmp(t->dtype, "BF16") == 0 && ((uintptr_t)p & 1) == 0 ? (const uint16_t *)(const void *)p : NULL;
}

int evb_st_read_bf16(const evb_safetensors *st, const evb_st_tensor *t, int ndim, const int64_t *shape, uint16_t *dst) {
    int s = check_shape(st, t, ndim, shape);
    if (s || !dst) return s;
    const evb_st_file *f = &st->files[t->file];
    const uint8_t *p = f->map + f->data_start + t->begin;
    size_t n = t->end - t->begin;
    if (strcmp(t->dtype, "BF16") == 0) memcpy(dst, p, n);
    else if (strcmp(t->dtype, "F16") == 0)
        for (size_t i = 0; i < n / 2; i++) dst[i] = evb_f32_to_bf16(evb_f16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8))));
    else if (strcmp(t->dtype, "F32") == 0)
        for (size_t i = 0; i < n / 4; i++) {
            float x;
            memcpy(&x, p + 4 * i, 4);
            dst[i] = evb_f32_to_bf16(x);
        }
    else EVB_ERRORF(EVB_EFORMAT, "%s: tensor \"%s\" has dtype %s; weights must be F32, F16 or BF16", f->path, t->name, t->dtype);
    return EVB_SUCCESS;
}

int evb_st_read_f32(const evb_safetensors *st, const evb_st_tensor *t, int ndim, const int64_t *shape, float *dst) {
    int s = check_shape(st, t, ndim, shape);
    if (s) return s;
    const evb_st_file *f = &st->files[t->file];
    const uint8_t *p = f->map + f->data_start + t->begin;
    size_t n = (t->end - t->begin);
    if (strcmp(t->dtype, "F32") == 0) memcpy(dst, p, n);
    else if (strcmp(t->dtype, "F16") == 0 || strcmp(t->dtype, "BF16") == 0) {
        int bf = t->dtype[0] == 'B';
        for (size_t i = 0; i < n / 2; i++) {
            uint16_t h = (uint16_t)(p[2 * i] | (p[2 * i + 1] << 8));
            dst[i] = bf ? evb_bf16_to_f32(h) : evb_f16_to_f32(h);
        }
    } else EVB_ERRORF(EVB_EFORMAT, "%s: tensor \"%s\" has dtype %s; weights must be F32, F16 or BF16", f->path, t->name, t->dtype);
    return EVB_SUCCESS;
}

// ---- writing ----

uint16_t evb_f32_to_bf16(float f) { return evb_bf16_round(f); }

uint16_t evb_f32_to_f16(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    uint32_t sign = (b >> 16) & 0x8000u, abs = b & 0x7fffffffu;
    if (abs > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);
    if (abs >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* overflow (incl. Inf) */
    if (abs < 0x38800000u) { /* subnormal or zero in half precision */
        if (abs < 0x33000000u) return (uint16_t)sign;
        uint32_t man = (abs & 0x7fffffu) | 0x800000u;
        int shift = 126 - (int)(abs >> 23);
        uint32_t half = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t h = ((abs >> 13) - ((127 - 15) << 10));
    uint32_t rem = abs & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

struct st_body { const char *path, *text; size_t hlen, pad; const evb_st_out *t; int n; };

/* The file's bytes: length, header, padding, then each tensor converted to its dtype. */
static int st_write_body(FILE *f, void *ctx) {
    const struct st_body *b = ctx;
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((b->hlen + b->pad) >> (8 * i));
    int ok = fwrite(len8, 1, 8, f) == 8 && fwrite(b->text, 1, b->hlen, f) == b->hlen && fwrite("        ", 1, b->pad, f) == b->pad;
    uint8_t buf[1 << 14];
    for (int i = 0; ok && i < b->n; i++) {
        const evb_st_out *t = &b->t[i];
        size_t count = 1;
        for (int d = 0; d < t->ndim; d++) count *= (size_t)t->shape[d];
        if (strcmp(t->dtype, "F32") == 0) { ok = fwrite(t->data, 4, count, f) == count; continue; }
        int bf = t->dtype[0] == 'B';
        for (size_t k = 0; ok && k < count;) { /* converted a buffer at a time */
            size_t m = count - k < sizeof buf / 2 ? count - k : sizeof buf / 2;
            for (size_t j = 0; j < m; j++) {
                uint16_t h = bf ? evb_f32_to_bf16(t->data[k + j]) : evb_f32_to_f16(t->data[k + j]);
                buf[2 * j] = (uint8_t)h; buf[2 * j + 1] = (uint8_t)(h >> 8);
            }
            ok = fwrite(buf, 2, m, f) == m;
            k += m;
        }
    }
    if (ok) return EVB_SUCCESS;
    int e = errno ? errno : EIO;
    return EVB_RAISEF(EVB_EIO, "%s: write failed: %s%s", b->path, strerror(e), evb_write_hint(e));
}

int evb_st_write(const char *path, const evb_st_out *t, int n, const char *metadata_json) {
    json_t *hdr = json_object();
    size_t off = 0;
    if (metadata_json) {
        json_t *md;
        int s = evb_json_load_buffer(metadata_json, strlen(metadata_json), "metadata", &md);
        if (s) { json_decref(hdr); return s; }
        json_object_set_new(hdr, "__metadata__", md);
    }
    for (int i = 0; i < n; i++) {
        int esz = dtype_size(t[i].dtype);
        if (esz != 4 && esz != 2) { json_decref(hdr); EVB_ERRORF(EVB_EINVAL, "cannot write dtype %s", t[i].dtype); }
        size_t count = 1;
        json_t *shape = json_array();
        for (int d = 0; d < t[i].ndim; d++) { count *= (size_t)t[i].shape[d]; json_array_append_new(shape, json_integer(t[i].shape[d])); }
        json_object_set_new(hdr, t[i].name, json_pack("{s:s, s:o, s:[I, I]}", "dtype", t[i].dtype, "shape", shape,
                            "data_offsets", (json_int_t)off, (json_int_t)(off + count * esz)));
        off += count * esz;
    }
    char *text = json_dumps(hdr, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(hdr);
    if (!text) EVB_ERROR("out of memory writing a safetensors header", EVB_ENOMEM);
    size_t hlen = strlen(text);
    struct st_body b = {path, text, hlen, (8 - hlen % 8) % 8 /* keep the data 8-byte aligned */, t, n};
    int s = evb_write_atomic_with(path, st_write_body, &b);
    free(text);
    return s;
}
