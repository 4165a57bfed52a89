/* export_gguf.c -- a configuration as one GGUF file that llama.cpp loads as it is (see evb_export.h).
 *
 * The file (GGUF version 3, little-endian): "GGUF", u32 3, u64 tensors, u64 key-value pairs; the pairs
 * (u64-length string key, u32 value type, value; arrays as u32 element type, u64 count, elements); the tensor
 * infos (name, u32 dims, u64 ne[dims] with ne[0] the row length, u32 ggml type, u64 offset into the data);
 * padding to general.alignment (32); the data, each tensor padded to 32 bytes. Sources: ggml's
 * docs/gguf.md and gguf.c, and the llama architecture's keys and tensor names in llama.cpp's llama-arch.cpp.
 *
 * Tensors, llama.cpp's names: token_embd, output_norm, output (absent when tied: llama.cpp then reads the
 * embedding), and per block blk.N.attn_norm, attn_q, attn_k, attn_v, attn_output (attn_q/k/v.bias for
 * Qwen2), ffn_norm, ffn_gate, ffn_up, ffn_down. Norms are F32; the embedding and every linear layer without a
 * GGUF level are written dense in the dtype asked (F16 by default, the type llama.cpp itself leaves tensors
 * in that no block type holds); a GGUF level's blocks are copied from the database as the quantizer wrote
 * them. Dropped sub-blocks are written as zeros (their residual passes through unchanged).
 *
 * The q/k layout: llama.cpp's llama architecture rotates adjacent pairs (GPT-J style) and convert_hf_to_gguf
 * permutes Hugging Face's q and k rows, stored in rotate-half order, into that order: row h E + 2 i + s of the
 * file is row h E + s E / 2 + i of the checkpoint. A model read with rotate-half rows (rope_halves) and
 * written as llama is permuted so; llama2.c's rows are already in pair order; Qwen2 is written as qwen2,
 * which llama.cpp rotates in halves (NeoX style), unpermuted. Block rows permute with their rows.
 *
 * A structured model (a block with heads or MLP channels removed, or with o/down compensation biases; see
 * evb_model.h) is written as llama.cpp's deci architecture: deci.feed_forward_length,
 * deci.attention.head_count and deci.attention.head_count_kv are per-block arrays, each block's tensors have
 * that block's shapes, and blk.N.attn_output.bias and blk.N.ffn_down.bias carry the compensation biases
 * (q/k/v biases too, in pair order like their rows). llama.cpp's llama (and qwen2) architecture reads those
 * arrays as well but makes every block's tensors at block 0's counts (models/llama.cpp, LLAMA_LOAD_LOCALS),
 * so it refuses a file whose blocks differ ("check_tensor_dims: tensor 'blk.1.attn_q.weight' has wrong
 * shape"). deci rotates pairs as llama does. A block that keeps no KV group is written with one zero group,
 * one that keeps no MLP channel with one zero channel (their outputs are exactly zero): deci takes a block
 * with no heads for attention-free and then skips its o bias, reads the head length only when block 0 has
 * heads, and with no MLP channels drops the block's attention output as well (found in the llama.cpp of
 * node-llama-cpp 3.21.1, in its source and by running its prebuilt library). */
#define _GNU_SOURCE
#include "evobudget/evb_export.h"
#include "evobudget/evb_db.h"
#include "evobudget/evb_gguf.h"
#include "evobudget/evb_model.h"
#include "evobudget/evb_status.h"
#include "evobudget/evb_tokenizer.h"
#include "core/fileio.h"
#include "core/half.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ALIGN = 32 };
/* GGUF value types */
enum { G_U8 = 0, G_I8, G_U16, G_I16, G_U32, G_I32, G_F32, G_BOOL, G_STRING, G_ARRAY, G_U64, G_I64, G_F64 };

/* One tensor of the file and where its bytes come from. */
typedef struct gtensor {
    char name[64];
    int type, ndim;
    int64_t ne[2];
    size_t bytes;
    uint64_t offset;
    enum { SRC_VEC, SRC_DENSE, SRC_LEVEL, SRC_ZERO } src;
    const float *data;    /* VEC, DENSE: [ne1, ne0] float32 */
    int entry;            /* LEVEL: the database entry */
    int permute_heads;    /* DENSE, LEVEL: rows in rotate-half order, written in pair order (head_dim E) */
} gtensor;

typedef struct writer {
    const evb_model *m;
    const evb_db *db;
    const evb_tokenizer_vocab *v;
    const char *arch;     /* "llama", "qwen2", or "deci" for a structured model */
    const char *name;
    gtensor *t;
    int n;
    size_t max_row_bytes, max_bytes;
    int *counts;          /* deci: [L][3] each block's heads, key/value heads and MLP channels as written */
} writer;

// ---- primitives ----

static int put(FILE *f, const void *p, size_t n) { return fwrite(p, 1, n, f) == n ? 0 : -1; }
static int put_u32(FILE *f, uint32_t x) { uint8_t b[4]; for (int i = 0; i < 4; i++) b[i] = (uint8_t)(x >> 8 * i); return put(f, b, 4); }
static int put_u64(FILE *f, uint64_t x) { uint8_t b[8]; for (int i = 0; i < 8; i++) b[i] = (uint8_t)(x >> 8 * i); return put(f, b, 8); }
static int put_f32(FILE *f, float x) { uint32_t u; memcpy(&u, &x, 4); return put_u32(f, u); }
static int put_str(FILE *f, const char *s) { size_t n = strlen(s); return put_u64(f, n) || put(f, s, n); }

static int kv_str(FILE *f, const char *k, const char *v) { return put_str(f, k) || put_u32(f, G_STRING) || put_str(f, v); }
static int kv_u32(FILE *f, const char *k, uint32_t v) { return put_str(f, k) || put_u32(f, G_U32) || put_u32(f, v); }
static int kv_f32(FILE *f, const char *k, float v) { return put_str(f, k) || put_u32(f, G_F32) || put_f32(f, v); }
static int kv_bool(FILE *f, const char *k, int v) { uint8_t b = (uint8_t)!!v; return put_str(f, k) || put_u32(f, G_BOOL) || put(f, &b, 1); }

static int kv_arch(FILE *f, const writer *w, const char *k, uint32_t v) {
    char key[96];
    snprintf(key, sizeof key, "%s.%s", w->arch, k);
    return kv_u32(f, key, v);
}

static int pad(FILE *f, uint64_t at) {
    static const uint8_t zero[ALIGN];
    size_t n = (size_t)((ALIGN - at % ALIGN) % ALIGN);
    return n ? put(f, zero, n) : 0;
}

// ---- the tensor list ----

static void add(writer *w, const char *name, int type, int ndim, int64_t ne0, int64_t ne1, int src, const float *data, int entry, int ph) {
    gtensor *t = &w->t[w->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->type = type; t->ndim = ndim; t->ne[0] = ne0; t->ne[1] = ndim > 1 ? ne1 : 1;
    t->src = src; t->data = data; t->entry = entry; t->permute_heads = ph;
    size_t rb = evb_gguf_row_bytes(type, ne0);
    t->bytes = rb * (size_t)t->ne[1];
    if (rb > w->max_row_bytes) w->max_row_bytes = rb;
    if (src == SRC_LEVEL && t->bytes > w->max_bytes) w->max_bytes = t->bytes; /* a level's blocks are read whole */
}

static const char *const gguf_linear[EVB_LINEAR_COUNT] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};

/* A model is written as deci when a block is structured or carries o or down biases. */
static int model_structured(const evb_model *m) {
    for (int l = 0; l < m->config.n_layers; l++) {
        const evb_layer *L = &m->layers[l];
        if (L->structured || L->b_o || L->b_down) return 1;
    }
    return 0;
}

/* The heads, key/value heads and MLP channels block l is written with (cnt[3]): the configuration's, or a
 * structured block's own, with one zero KV group for an attention that keeps none and one zero channel for an
 * MLP that keeps none (pad[2] set). deci's graph (llama.cpp's models/deci.cpp) reads a block with no heads as
 * attention-free and then skips its o bias, reads the key length only when block 0 has heads, and skips a
 * block's attention output, not only its MLP, when it has no MLP channels; a zero group or channel computes
 * exactly zero, so the file computes the model's function. */
static void block_counts(const evb_model *m, int l, int cnt[3], int pad[2]) {
    const evb_config *c = &m->config;
    const evb_layer *L = &m->layers[l];
    int s = L->structured;
    cnt[0] = s ? L->heads : c->n_heads;
    cnt[1] = s ? L->kv_heads : c->n_kv_heads;
    cnt[2] = s ? L->ffn : c->hidden_dim;
    pad[0] = cnt[1] == 0; pad[1] = cnt[2] == 0;
    if (pad[0]) { cnt[0] = c->n_heads / c->n_kv_heads; cnt[1] = 1; }
    if (pad[1]) cnt[2] = 1;
}

/* Rows and columns of linear layer k in a block of cnt heads, KV heads, channels. */
static void block_shape(const evb_config *c, const int cnt[3], int k, int *r, int *cc) {
    int D = c->dim, HE = cnt[0] * c->head_dim, GE = cnt[1] * c->head_dim, F = cnt[2];
    static const int rows_of[EVB_LINEAR_COUNT] = {0, 1, 1, 3, 2, 2, 3}; /* q, k/v, gate/up; 3: D */
    int dims[4] = {HE, GE, F, D};
    *r = dims[rows_of[k]];
    *cc = k == EVB_LINEAR_O ? HE : k == EVB_LINEAR_DOWN ? F : D;
}

/* Linear layer k of block l: from its GGUF level (entry e >= 0), dense, or zeros (a dropped sub-block, a
 * pad). */
static int plan_linear(writer *w, int l, int k, int e, const int cnt[3], int zero, int dense_type,
                       evb_gguf_export_summary *sum) {
    const evb_model *m = w->m;
    const evb_config *c = &m->config;
    int u = l * EVB_LINEAR_COUNT + k, r, cc, pair = strcmp(w->arch, "qwen2") != 0;
    block_shape(c, cnt, k, &r, &cc);
    int ph = c->rope_halves && pair && (k == EVB_LINEAR_Q || k == EVB_LINEAR_K) ? c->head_dim : 0;
    char name[64];
    snprintf(name, sizeof name, "blk.%d.%s.weight", l, gguf_linear[k]);
    if (zero) {
        add(w, name, dense_type, 2, cc, r, SRC_ZERO, NULL, -1, 0);
        sum->n_dense++;
        return EVB_SUCCESS;
    }
    if (e >= 0) {
        evb_db_entry d = evb_db_get(w->db, e);
        if (d.kind != EVB_LEVEL_GGUF || d.unit != u || d.rows != r || d.cols != cc)
            EVB_ERRORF(EVB_EINVAL, "unit %d: database entry %d (%s) is not a GGUF level of its %dx%d weight",
                       u, e, d.file, r, cc);
        add(w, name, d.gguf_type, 2, cc, r, SRC_LEVEL, NULL, e, ph);
        sum->n_gguf++;
    } else {
        add(w, name, dense_type, 2, cc, r, SRC_DENSE, m->layers[l].w[k], -1, ph);
        sum->n_dense++;
    }
    sum->linear_params += (long long)r * cc;
    sum->linear_bits += 8.0 * (double)w->t[w->n - 1].bytes;
    return EVB_SUCCESS;
}

/* Block l's q/k/v biases (Qwen2: the kept heads' in a structured block, rows in pair order under deci), and a
 * structured block's o and down biases. */
static void plan_biases(writer *w, int l, int mlp, const int cnt[3], const int drop[2]) {
    const evb_model *m = w->m;
    const evb_config *c = &m->config;
    const evb_layer *ly = &m->layers[l];
    char name[64];
    if (!mlp && c->qkv_bias) {
        int pad = ly->structured && ly->kv_heads == 0, pair = strcmp(w->arch, "qwen2") != 0;
        const float *b[3] = {ly->bq_kept ? ly->bq_kept : ly->bq, ly->bk_kept ? ly->bk_kept : ly->bk,
                             ly->bv_kept ? ly->bv_kept : ly->bv};
        for (int i = 0; i < 3; i++) {
            int rr, c2, ph = pair && i < 2 ? c->head_dim : 0;
            block_shape(c, cnt, i, &rr, &c2);
            snprintf(name, sizeof name, "blk.%d.%s.bias", l, gguf_linear[i]);
            add(w, name, EVB_GGUF_F32, 1, rr, 1, drop[0] || pad ? SRC_ZERO : SRC_VEC, b[i], -1, ph);
        }
    }
    const float *bias = mlp ? ly->b_down : ly->b_o;
    if (!bias || drop[mlp]) return; /* a dropped sub-block adds nothing, its bias neither */
    snprintf(name, sizeof name, "blk.%d.%s.bias", l, mlp ? "ffn_down" : "attn_output");
    add(w, name, EVB_GGUF_F32, 1, c->dim, 1, SRC_VEC, bias, -1, 0);
}

static int plan_layer(writer *w, int l, const int *entry, int dense_type, evb_gguf_export_summary *sum) {
    const evb_layer *ly = &w->m->layers[l];
    int drop[2] = {ly->skip_attn || ly->dropped_attn, ly->skip_mlp || ly->dropped_mlp}, cnt[3], pad[2];
    block_counts(w->m, l, cnt, pad);
    if (w->counts) memcpy(w->counts + 3 * l, cnt, sizeof cnt);
    char name[64];
    snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
    add(w, name, EVB_GGUF_F32, 1, w->m->config.dim, 1, SRC_VEC, ly->rms_att, -1, 0);
    for (int k = 0; k < EVB_LINEAR_COUNT; k++) {
        int mlp = k >= 4, u = l * EVB_LINEAR_COUNT + k;
        int st = plan_linear(w, l, k, entry ? entry[u] : -1, cnt, drop[mlp] || pad[mlp], dense_type, sum);
        if (st) return st;
        if (k == EVB_LINEAR_V) plan_biases(w, l, 0, cnt, drop);
        if (k == EVB_LINEAR_O) {
            snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l);
            add(w, name, EVB_GGUF_F32, 1, w->m->config.dim, 1, SRC_VEC, ly->rms_ffn, -1, 0);
        }
    }
    plan_biases(w, l, 1, cnt, drop);
    return EVB_SUCCESS;
}

static int plan(writer *w, const int *entry, int dense_type, int embd_type, evb_gguf_export_summary *sum) {
    const evb_model *m = w->m;
    const evb_config *c = &m->config;
    int L = c->n_layers;
    w->t = calloc((size_t)(3 + L * (2 + EVB_LINEAR_COUNT + 3 + 2)), sizeof *w->t);
    if (model_structured(m)) w->counts = calloc((size_t)L * 3, sizeof *w->counts);
    if (!w->t || (model_structured(m) && !w->counts)) EVB_ERROR("out of memory", EVB_ENOMEM);
    add(w, "token_embd.weight", embd_type, 2, c->dim, c->vocab_size, SRC_DENSE, m->tok_emb, -1, 0);
    for (int l = 0; l < L; l++) {
        int st = plan_layer(w, l, entry, dense_type, sum);
        if (st) return st;
    }
    add(w, "output_norm.weight", EVB_GGUF_F32, 1, c->dim, 1, SRC_VEC, m->rms_final, -1, 0);
    if (!c->tied) add(w, "output.weight", embd_type, 2, c->dim, c->vocab_size, SRC_DENSE, m->cls, -1, 0);
    uint64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        w->t[i].offset = off;
        off += (w->t[i].bytes + ALIGN - 1) / ALIGN * ALIGN;
        sum->tensor_bytes += (long long)w->t[i].bytes;
    }
    return EVB_SUCCESS;
}

// ---- the header ----

static int write_vocab(FILE *f, const evb_tokenizer_vocab *v) {
    int bad = kv_str(f, "tokenizer.ggml.model", v->model);
    bad = bad || put_str(f, "tokenizer.ggml.tokens") || put_u32(f, G_ARRAY) || put_u32(f, G_STRING) || put_u64(f, (uint64_t)v->n);
    for (int i = 0; !bad && i < v->n; i++) bad = put_str(f, v->tokens[i]);
    bad = bad || put_str(f, "tokenizer.ggml.scores") || put_u32(f, G_ARRAY) || put_u32(f, G_F32) || put_u64(f, (uint64_t)v->n);
    for (int i = 0; !bad && i < v->n; i++) bad = put_f32(f, v->scores[i]);
    bad = bad || put_str(f, "tokenizer.ggml.token_type") || put_u32(f, G_ARRAY) || put_u32(f, G_I32) || put_u64(f, (uint64_t)v->n);
    for (int i = 0; !bad && i < v->n; i++) bad = put_u32(f, (uint32_t)v->types[i]);
    if (!bad && strcmp(v->model, "gpt2") == 0) {
        bad = kv_str(f, "tokenizer.ggml.pre", v->pre ? v->pre : "default");
        bad = bad || put_str(f, "tokenizer.ggml.merges") || put_u32(f, G_ARRAY) || put_u32(f, G_STRING) || put_u64(f, (uint64_t)v->n_merges);
        for (int i = 0; !bad && i < v->n_merges; i++) bad = put_str(f, v->merges[i]);
    }
    if (!bad && v->bos >= 0) bad = kv_u32(f, "tokenizer.ggml.bos_token_id", (uint32_t)v->bos);
    if (!bad && v->eos >= 0) bad = kv_u32(f, "tokenizer.ggml.eos_token_id", (uint32_t)v->eos);
    if (!bad && v->unk >= 0) bad = kv_u32(f, "tokenizer.ggml.unknown_token_id", (uint32_t)v->unk);
    bad = bad || kv_bool(f, "tokenizer.ggml.add_bos_token", v->add_bos) || kv_bool(f, "tokenizer.ggml.add_eos_token", 0);
    if (!bad && strcmp(v->model, "llama") == 0) bad = kv_bool(f, "tokenizer.ggml.add_space_prefix", v->add_space_prefix);
    return bad;
}

static int n_vocab_kv(const evb_tokenizer_vocab *v) {
    return 4 + (strcmp(v->model, "gpt2") == 0 ? 2 : 0) + (v->bos >= 0) + (v->eos >= 0) + (v->unk >= 0) + 2 +
           (strcmp(v->model, "llama") == 0);
}

/* A per-block count: one value for every block, or (deci) the array of w->counts[l][i] (llama.cpp reads
 * either with get_key_or_arr). */
static int kv_counts(FILE *f, const writer *w, const char *k, int i, uint32_t v) {
    if (!w->counts) return kv_arch(f, w, k, v);
    char key[96];
    snprintf(key, sizeof key, "%s.%s", w->arch, k);
    int L = w->m->config.n_layers;
    int bad = put_str(f, key) || put_u32(f, G_ARRAY) || put_u32(f, G_U32) || put_u64(f, (uint64_t)L);
    for (int l = 0; !bad && l < L; l++) bad = put_u32(f, (uint32_t)w->counts[3 * l + i]);
    return bad;
}

static int write_header(FILE *f, const writer *w) {
    const evb_config *c = &w->m->config;
    int n_kv = 4 + 12 + (w->v ? n_vocab_kv(w->v) : 0);
    int bad = put(f, "GGUF", 4) || put_u32(f, 3) || put_u64(f, (uint64_t)w->n) || put_u64(f, (uint64_t)n_kv);
    char key[96];
    bad = bad || kv_str(f, "general.architecture", w->arch) || kv_str(f, "general.name", w->name) ||
          kv_u32(f, "general.alignment", ALIGN) || kv_u32(f, "general.quantization_version", 2);
    bad = bad || kv_arch(f, w, "context_length", (uint32_t)c->max_seq_len) || kv_arch(f, w, "embedding_length", (uint32_t)c->dim) ||
          kv_arch(f, w, "block_count", (uint32_t)c->n_layers) ||
          kv_counts(f, w, "feed_forward_length", 2, (uint32_t)c->hidden_dim) ||
          kv_counts(f, w, "attention.head_count", 0, (uint32_t)c->n_heads) ||
          kv_counts(f, w, "attention.head_count_kv", 1, (uint32_t)c->n_kv_heads) ||
          kv_arch(f, w, "attention.key_length", (uint32_t)c->head_dim) || kv_arch(f, w, "attention.value_length", (uint32_t)c->head_dim) ||
          kv_arch(f, w, "rope.dimension_count", (uint32_t)c->head_dim) || kv_arch(f, w, "vocab_size", (uint32_t)c->vocab_size);
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", w->arch);
    bad = bad || kv_f32(f, key, c->norm_eps);
    snprintf(key, sizeof key, "%s.rope.freq_base", w->arch);
    bad = bad || kv_f32(f, key, c->rope_theta);
    if (!bad && w->v) bad = write_vocab(f, w->v);
    for (int i = 0; !bad && i < w->n; i++) {
        const gtensor *t = &w->t[i];
        bad = put_str(f, t->name) || put_u32(f, (uint32_t)t->ndim) || put_u64(f, (uint64_t)t->ne[0]) ||
              (t->ndim > 1 && put_u64(f, (uint64_t)t->ne[1])) || put_u32(f, (uint32_t)t->type) || put_u64(f, t->offset);
    }
    long at = ftell(f);
    return bad || at < 0 || pad(f, (uint64_t)at) ? -1 : 0;
}

// ---- the data ----

typedef struct data_ctx {
    writer *w;
    uint8_t *buf, *row;   /* a whole tensor's blocks (levels); one row converted */
    float *frow;
    int status;
} data_ctx;

/* Tensor t's bytes: rows converted one at a time (dense), or the level's blocks, rows permuted. */
static int write_tensor(FILE *f, data_ctx *d, const gtensor *t) {
    int rows = (int)t->ne[1], cols = (int)t->ne[0], E = t->permute_heads;
    if (t->ndim == 1 && E) { rows = cols; cols = 1; } /* a q or k bias: its values permute as rows of one */
    size_t rb = evb_gguf_row_bytes(t->type, cols);
    if (t->src == SRC_LEVEL && (d->status = evb_db_load_blocks(d->w->db, t->entry, d->buf, t->bytes))) return -1;
    for (int r = 0; r < rows; r++) {
        /* row r of the file is row src of the weight (pair order from rotate-half order) */
        int src = r;
        if (E) { int h = r / E, i = r % E; src = h * E + (i % 2) * (E / 2) + i / 2; }
        const uint8_t *out = d->row;
        if (t->src == SRC_LEVEL) out = d->buf + rb * (size_t)src;
        else if (t->src == SRC_ZERO) memset(d->row, 0, rb);
        else if ((d->status = evb_gguf_quantize(t->type, t->data + (size_t)src * cols, 1, cols, d->row))) return -1;
        if (put(f, out, rb)) return -1;
    }
    return pad(f, t->bytes);
}

static int write_all(FILE *f, void *ctx) {
    data_ctx *d = ctx;
    writer *w = d->w;
    if (write_header(f, w)) return EVB_RAISEF(EVB_EIO, "cannot write the GGUF header: %s", strerror(errno));
    for (int i = 0; i < w->n; i++)
        if (write_tensor(f, d, &w->t[i]))
            return d->status ? d->status : EVB_RAISEF(EVB_EIO, "cannot write tensor %s: %s", w->t[i].name, strerror(errno));
    return EVB_SUCCESS;
}

int evb_gguf_save(const evb_model *m, const evb_db *db, const int *entry, const evb_tokenizer_vocab *vocab, const char *path,
                  const evb_gguf_save_options *opt, evb_gguf_export_summary *sum) {
    evb_gguf_export_summary s0 = {0};
    if (!sum) sum = &s0;
    memset(sum, 0, sizeof *sum);
    const char *dt = opt && opt->dtype ? opt->dtype : "F16";
    int dense_type = strcmp(dt, "F16") == 0 ? EVB_GGUF_F16 : strcmp(dt, "BF16") == 0 ? EVB_GGUF_BF16 : strcmp(dt, "F32") == 0 ? EVB_GGUF_F32 : -1;
    if (dense_type < 0) EVB_ERRORF(EVB_EINVAL, "dtype '%s' cannot be written in GGUF here (F16, BF16, F32 can)", dt);
    const evb_config *c = &m->config;
    const evb_gguf_type_info *et = opt && opt->embd_type ? evb_gguf_type_find(opt->embd_type) : evb_gguf_type_get(dense_type);
    if (!et) EVB_ERRORF(EVB_EINVAL, "embedding type '%s' is not a GGUF type (%s, F16, BF16, F32)", opt->embd_type, evb_gguf_type_names());
    if (!evb_gguf_row_ok(et->type, c->dim))
        EVB_ERRORF(EVB_EINVAL, "embedding type %s: its blocks of %d do not divide the model's width of %d", et->name, et->block, c->dim);
    if (!m->tok_emb || !m->rms_final) EVB_ERRORF(EVB_EINVAL, "the GGUF writer needs the model's weights in float32");
    if (c->qkv_bias && c->rope_halves == 0) EVB_ERRORF(EVB_EINVAL, "a model with q/k/v biases and pair-order rotary rows has no GGUF architecture here");
    /* llama.cpp's llama and qwen2 read per-block counts but make every block's tensors at block 0's shapes;
     * deci makes each block at its own (models/llama.cpp, qwen2.cpp, deci.cpp). */
    const char *arch = model_structured(m) ? "deci" : c->qkv_bias ? "qwen2" : "llama";
    writer w = {m, db, vocab, arch, opt && opt->name ? opt->name : "evobudget", NULL, 0, 0, 0, NULL};
    int st = plan(&w, entry, dense_type, et->type, sum);
    data_ctx d = {&w, NULL, NULL, NULL, 0};
    if (!st) {
        d.buf = malloc(w.max_bytes ? w.max_bytes : 1);
        d.row = malloc(w.max_row_bytes ? w.max_row_bytes : 1);
        if (!d.buf || !d.row) st = EVB_RAISEF(EVB_ENOMEM, "out of memory");
    }
    if (!st) st = evb_write_atomic_with(path, write_all, &d);
    sum->n_tensors = w.n;
    sum->arch = w.arch;
    free(d.buf); free(d.row); free(w.t); free(w.counts);
    return st;
}
