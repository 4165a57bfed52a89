/* export_sparse.c -- a configuration's sparse layers in compressed-tensors' sparse-bitmask format (see
 * evb_export.h).
 *
 * The layout is BitmaskCompressor's (compressed_tensors/compressors/sparse_compressors/sparse_bitmask.py):
 * bitmask_compress keeps tensor != 0 (the "unstructured" mask), writes the kept values in row-major order
 * (tensor[bytemasks]), row_offsets = cumsum(row_counts) - row_counts (int64, as torch sums a bool tensor),
 * the mask packed by numpy.packbits(axis=-1, bitorder="little") into uint8 [rows, ceil(cols / 8)], and
 * BitmaskTensor.dict adds torch.tensor(shape) (int64 [2]). "Nonzero" is decided on the value as written
 * (a float32 weight that rounds to zero in float16 is not kept), so reading back gives exactly the dense
 * export in the same dtype. The rows of q and k of a llama2.c model are written in rotate-half order, as
 * evb_model_save writes them. */
#define _GNU_SOURCE
#include "evobudget/evb_export.h"
#include "evobudget/evb_model.h"
#include "evobudget/evb_status.h"
#include "compressors/export_impl.h"
#include "core/fileio.h"
#include "models/safetensors.h"
#include "models/save.h"

#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { S_DENSE, S_SHAPE, S_COMPRESSED, S_BITMASK, S_ROWOFF };

typedef struct stensor {
    char name[112];
    int kind;
    const char *dtype;       /* safetensors dtype: "F32", "F16", "BF16", "U8", "I64" */
    int ndim;
    int64_t shape[2];
    const float *data;       /* the layer's (or dense tensor's) float32 values, [rows, cols] */
    int rows, cols;          /* the dense shape of data */
    int permute_heads;       /* rows saved in rotate-half order, heads of head_dim */
    size_t bytes;
} stensor;

typedef struct swriter {
    const evb_model *m;
    const char *dtype;       /* of the values: "F32", "F16", "BF16" */
    stensor *t;
    int n;
} swriter;


/* x in dtype: its bytes in out (little-endian), their count returned; *zero set when the value is +-0. */
static int encode(float x, const char *dtype, uint8_t out[4], int *zero) {
    if (dtype[0] == 'F' && dtype[1] == '3') {
        uint32_t u;
        memcpy(&u, &x, 4);
        for (int i = 0; i < 4; i++) out[i] = (uint8_t)(u >> (8 * i));
        *zero = (u & 0x7fffffffu) == 0;
        return 4;
    }
    uint16_t h = dtype[0] == 'B' ? evb_f32_to_bf16(x) : evb_f32_to_f16(x);
    out[0] = (uint8_t)h; out[1] = (uint8_t)(h >> 8);
    *zero = (h & 0x7fff) == 0;
    return 2;
}

static int put_i64(FILE *f, int64_t v) {
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)v >> (8 * i));
    return fwrite(b, 1, 8, f) == 8;
}

/* One tensor's bytes. buf holds at least 4 (cols + 8) bytes. */
static int write_tensor(FILE *f, const swriter *w, const stensor *t, uint8_t *buf) {
    const int E = w->m->config.head_dim, R = t->rows, C = t->cols;
    int ok = 1, zero;
    uint8_t v[4];
    if (t->kind == S_SHAPE) return put_i64(f, R) && put_i64(f, C) ? EVB_SUCCESS : EVB_EIO;
    int64_t offset = 0;
    for (int r = 0; ok && r < R; r++) {
        const float *x = t->data + (size_t)evb_export_src_row(r, t->permute_heads, E) * C;
        size_t len = 0;
        if (t->kind == S_BITMASK) memset(buf, 0, (size_t)(C + 7) / 8);
        for (int c = 0; c < C; c++) {
            int nb = encode(x[c], w->dtype, v, &zero);
            if (t->kind == S_DENSE || (t->kind == S_COMPRESSED && !zero)) { memcpy(buf + len, v, (size_t)nb); len += (size_t)nb; }
            else if (t->kind == S_BITMASK && !zero) buf[c / 8] |= (uint8_t)(1u << (c % 8));
            else if (t->kind == S_ROWOFF && !zero) len++;
        }
        if (t->kind == S_BITMASK) ok = fwrite(buf, 1, (size_t)(C + 7) / 8, f) == (size_t)(C + 7) / 8;
        else if (t->kind == S_ROWOFF) { ok = put_i64(f, offset); offset += (int64_t)len; }
        else ok = fwrite(buf, 1, len, f) == len;
    }
    return ok ? EVB_SUCCESS : EVB_EIO;
}

static int write_body(FILE *f, void *ctx) {
    swriter *w = ctx;
    json_t *hdr = json_pack("{s:{s:s}}", "__metadata__", "format", "pt");
    size_t off = 0, max_cols = 0;
    for (int i = 0; hdr && i < w->n; i++) {
        const stensor *t = &w->t[i];
        json_t *shape = t->ndim == 2 ? json_pack("[I, I]", (json_int_t)t->shape[0], (json_int_t)t->shape[1]) : json_pack("[I]", (json_int_t)t->shape[0]);
        json_object_set_new(hdr, t->name, json_pack("{s:s, s:o, s:[I, I]}", "dtype", t->dtype, "shape", shape, "data_offsets",
                                                     (json_int_t)off, (json_int_t)(off + t->bytes)));
        off += t->bytes;
        if ((size_t)t->cols > max_cols) max_cols = (size_t)t->cols;
    }
    char *text = hdr ? json_dumps(hdr, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(hdr);
    uint8_t *buf = malloc(4 * (max_cols + 8));
    if (!text || !buf) { free(text); free(buf); EVB_ERROR("out of memory writing a safetensors file", EVB_ENOMEM); }
    size_t hlen = strlen(text), pad = (8 - hlen % 8) % 8;
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((hlen + pad) >> (8 * i));
    int ok = fwrite(len8, 1, 8, f) == 8 && fwrite(text, 1, hlen, f) == hlen && fwrite("        ", 1, pad, f) == pad;
    free(text);
    int st = ok ? EVB_SUCCESS : EVB_EIO;
    for (int i = 0; !st && i < w->n; i++) st = write_tensor(f, w, &w->t[i], buf);
    free(buf);
    return st;
}

/* The number of values of data [rows, cols] that are nonzero in dtype. */
static size_t count_kept(const float *data, size_t n, const char *dtype) {
    size_t k = 0;
    uint8_t v[4];
    int zero;
    for (size_t i = 0; i < n; i++) { encode(data[i], dtype, v, &zero); k += !zero; }
    return k;
}

int evb_bitmask_save(const evb_model *m, const unsigned char *compress, const char *dir, const char *dtype, const char *structure,
                     evb_bitmask_summary *sum) {
    const evb_config *c = &m->config;
    if (!dtype) dtype = "F16";
    if (strcmp(dtype, "F32") && strcmp(dtype, "F16") && strcmp(dtype, "BF16"))
        EVB_ERRORF(EVB_EINVAL, "dtype '%s' cannot be written (F32, F16, BF16 can)", dtype);
    const int L = c->n_layers, permute = !c->rope_halves;
    const size_t esz = strcmp(dtype, "F32") == 0 ? 4 : 2;
    evb_bitmask_summary s = {0};
    int n_max = 2 + L * (2 + 4 * EVB_LINEAR_COUNT + 3) + 1;
    stensor *t = calloc((size_t)n_max, sizeof *t);
    size_t max_lin = evb_model_max_unit(m, NULL);
    float *zero = calloc(max_lin, sizeof(float));
    json_t *targets = json_array(), *ignore = json_array();
    if (!t || !zero || !targets || !ignore) {
        free(t); free(zero); json_decref(targets); json_decref(ignore);
        EVB_ERROR("out of memory", EVB_ENOMEM);
    }
    size_t params = 0, zeros = 0;
    int n = 0;
    /* A dense tensor: counted for global_sparsity as written. */
#define DENSE(nd, d0, d1, ptr, ph, ...) do { stensor *x_ = &t[n++]; x_->kind = S_DENSE; x_->dtype = dtype; x_->ndim = nd; \
        x_->shape[0] = d0; x_->shape[1] = (nd) == 2 ? (d1) : 0; x_->data = ptr; x_->permute_heads = ph; \
        x_->rows = (nd) == 2 ? (d0) : 1; x_->cols = (nd) == 2 ? (d1) : (d0); \
        x_->bytes = (size_t)x_->rows * (size_t)x_->cols * esz; snprintf(x_->name, sizeof x_->name, __VA_ARGS__); \
        size_t n_ = (size_t)x_->rows * (size_t)x_->cols; params += n_; zeros += n_ - count_kept(ptr, n_, dtype); } while (0)
    DENSE(2, c->vocab_size, c->dim, m->tok_emb, 0, "model.embed_tokens.weight");
    for (int l = 0; l < L; l++) {
        const evb_layer *ly = &m->layers[l];
        int drop_attn = ly->skip_attn || ly->dropped_attn, drop_mlp = ly->skip_mlp || ly->dropped_mlp;
        DENSE(1, c->dim, 0, ly->rms_att, 0, "model.layers.%d.input_layernorm.weight", l);
        DENSE(1, c->dim, 0, ly->rms_ffn, 0, "model.layers.%d.post_attention_layernorm.weight", l);
        for (int k = 0; k < EVB_LINEAR_COUNT; k++) {
            int u = l * EVB_LINEAR_COUNT + k, r, cc;
            evb_model_unit_shape(m, u, &r, &cc);
            int ph = permute && (k == EVB_LINEAR_Q || k == EVB_LINEAR_K) ? 1 : 0, dropped = k < 4 ? drop_attn : drop_mlp;
            char name[96];
            evb_export_module_name(u, name, sizeof name);
            if (!compress[u] || dropped) {
                DENSE(2, r, cc, dropped ? zero : ly->w[k], ph, "%s.weight", name);
                json_array_append_new(ignore, json_string(name));
                s.n_dense++;
            } else {
                size_t nw = (size_t)r * cc, kept = count_kept(ly->w[k], nw, dtype);
                static const char *suffix[] = {"shape", "compressed", "bitmask", "row_offsets"};
                static const char *dt[] = {"I64", NULL, "U8", "I64"};
                int64_t shapes[4][2] = {{2, 0}, {(int64_t)kept, 0}, {r, (cc + 7) / 8}, {r, 0}};
                size_t bytes[4] = {16, kept * esz, (size_t)r * (size_t)((cc + 7) / 8), 8 * (size_t)r};
                for (int i = 0; i < 4; i++) {
                    stensor *x = &t[n++];
                    x->kind = S_SHAPE + i; x->dtype = dt[i] ? dt[i] : dtype; x->ndim = i == 2 ? 2 : 1;
                    x->shape[0] = shapes[i][0]; x->shape[1] = shapes[i][1]; x->bytes = bytes[i];
                    x->data = ly->w[k]; x->rows = r; x->cols = cc; x->permute_heads = ph;
                    snprintf(x->name, sizeof x->name, "%s.%s", name, suffix[i]);
                }
                json_array_append_new(targets, json_string(name));
                params += nw; zeros += nw - kept;
                s.kept += (long long)kept; s.weights += (long long)nw;
                s.n_compressed++;
            }
            if (c->qkv_bias && k < 3) {
                const float *b[3] = {ly->bq, ly->bk, ly->bv};
                DENSE(1, r, 0, drop_attn ? zero : b[k], 0, "%s.bias", name);
            }
        }
    }
    DENSE(1, c->dim, 0, m->rms_final, 0, "model.norm.weight");
    if (!c->tied) DENSE(2, c->vocab_size, c->dim, m->cls, 0, "lm_head.weight");
#undef DENSE
    json_array_append_new(ignore, json_string("lm_head"));
    s.global_sparsity = params ? (double)zeros / (double)params : 0.0;
    int st = EVB_SUCCESS;
    if (s.n_compressed == 0)
        st = EVB_RAISEF(EVB_EINVAL, "the configuration has no sparse layer to compress (hint: --format hf writes it dense)");
    if (!st && mkdir(dir, 0755) != 0 && errno != EEXIST) st = EVB_RAISEF(EVB_EIO, "%s: cannot create: %s", dir, strerror(errno));
    if (!st) {
        char path[1300];
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        swriter w = {.m = m, .dtype = dtype, .t = t, .n = n};
        st = evb_write_atomic_with(path, write_body, &w);
    }
    json_t *cfg = NULL;
    if (!st) st = evb_model_hf_config(m, dtype, &cfg);
    if (!st) {
        json_t *sc = json_pack("{s:s, s:O, s:O, s:f, s:s}", "format", "sparse-bitmask", "targets", targets, "ignore", ignore,
                               "global_sparsity", s.global_sparsity, "sparsity_structure", structure ? structure : "unstructured");
        json_object_set_new(cfg, "quantization_config", json_pack("{s:s, s:o}", "quant_method", "compressed-tensors", "sparsity_config", sc));
        st = evb_export_write_json(dir, "config.json", cfg);
        json_decref(cfg);
    }
    json_decref(targets); json_decref(ignore);
    free(t); free(zero);
    if (sum) *sum = s;
    return st;
}
