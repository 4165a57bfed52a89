/* ggml_ref_quant.c -- llama.cpp's own quantizer and dequantizer on raw float32 rows, the judge that
 * tests/test_gguf_quant.c holds compressors/gguf_quant.c to, bit for bit. Links libggml-base only.
 *
 *   ggml_ref_quant quant   TYPE ROWS COLS IN.f32 OUT.bin   ggml_quantize_chunk (no importance matrix)
 *   ggml_ref_quant dequant TYPE ROWS COLS IN.bin OUT.f32   the type's to_float, row by row
 *   ggml_ref_quant info                                    ggml's version and commit
 *
 * TYPE is ggml's type name, case-insensitive (q4_0, Q4_K, f16, bf16). The float rows are ROWS x COLS in
 * row-major order (a tensor of ne[0] = COLS); the quantized file is ROWS rows of ggml_row_size bytes.
 * Exit status 0, or 1 with a one-line message on stderr. */
#include "ggml.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *msg, const char *arg) {
    fprintf(stderr, "ggml_ref_quant: %s%s%s\n", msg, arg ? " " : "", arg ? arg : "");
    return 1;
}

static int same_name(const char *a, const char *b) {
    for (; *a && *b; a++, b++)
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return 0;
    return !*a && !*b;
}

/* ggml's type of a name; GGML_TYPE_COUNT if none. */
static enum ggml_type type_named(const char *name) {
    for (int t = 0; t < GGML_TYPE_COUNT; t++) {
        const char *n = ggml_type_name((enum ggml_type)t);
        if (n && same_name(n, name)) return (enum ggml_type)t;
    }
    return GGML_TYPE_COUNT;
}

static void *read_file(const char *path, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    void *p = malloc(n ? n : 1);
    size_t got = p ? fread(p, 1, n, f) : 0;
    int extra = fgetc(f) != EOF;
    fclose(f);
    if (!p || got != n || extra) { free(p); return NULL; }
    return p;
}

static int write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "info") == 0) {
        printf("ggml %s (commit %s)\n", ggml_version(), ggml_commit());
        return 0;
    }
    if (argc != 7 || (strcmp(argv[1], "quant") != 0 && strcmp(argv[1], "dequant") != 0))
        return fail("usage: ggml_ref_quant quant|dequant TYPE ROWS COLS IN OUT, or ggml_ref_quant info", NULL);
    const enum ggml_type type = type_named(argv[2]);
    if (type == GGML_TYPE_COUNT) return fail("unknown type", argv[2]);
    char *end;
    const long long rows = strtoll(argv[3], &end, 10);
    if (*end || rows < 1) return fail("bad ROWS", argv[3]);
    const long long cols = strtoll(argv[4], &end, 10);
    if (*end || cols < 1) return fail("bad COLS", argv[4]);
    if (cols % ggml_blck_size(type)) return fail("COLS is not a whole number of blocks of", argv[2]);
    /* the traits struct comes from the header; a library of another layout would hand us garbage */
    const struct ggml_type_traits *tr = ggml_get_type_traits(type);
    if (tr->blck_size != ggml_blck_size(type) || tr->type_size != ggml_type_size(type))
        return fail("ggml.h and libggml-base disagree on struct ggml_type_traits (hint: headers of another release)", NULL);
    const size_t rs = ggml_row_size(type, cols), nq = (size_t)rows * rs, nf = (size_t)rows * (size_t)cols;

    if (strcmp(argv[1], "quant") == 0) {
        float *src = read_file(argv[5], nf * sizeof(float));
        if (!src) return fail("cannot read ROWS x COLS float32 from", argv[5]);
        void *dst = calloc(nq, 1);
        if (!dst) { free(src); return fail("out of memory", NULL); }
        size_t n = ggml_quantize_chunk(type, src, dst, 0, rows, cols, NULL);
        int ok = n == nq && write_file(argv[6], dst, nq);
        free(src); free(dst);
        return ok ? 0 : fail("cannot quantize or write", argv[6]);
    }
    unsigned char *src = read_file(argv[5], nq);
    if (!src) return fail("cannot read ROWS quantized rows from", argv[5]);
    float *dst = malloc(nf * sizeof(float));
    if (!dst) { free(src); return fail("out of memory", NULL); }
    if (type == GGML_TYPE_F32) memcpy(dst, src, nf * sizeof(float));
    else if (!tr->to_float) { free(src); free(dst); return fail("no to_float for", argv[2]); }
    else
        for (long long r = 0; r < rows; r++) tr->to_float(src + (size_t)r * rs, dst + (size_t)r * (size_t)cols, cols);
    int ok = write_file(argv[6], dst, nf * sizeof(float));
    free(src); free(dst);
    return ok ? 0 : fail("cannot write", argv[6]);
}
