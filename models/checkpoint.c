/* checkpoint.c -- loading models: Hugging Face directories (config.json + safetensors, single or sharded)
 * and llama2.c .bin files (version 0 export).
 *
 * Loading validates everything before reading data: config.json fields and their ranges, every
 * safetensors header (safetensors.c), each tensor's shape against the config, and for .bin files the file
 * size against the size the header implies. Weights are converted to float32 into one arena. To support a
 * new architecture, extend parse_config (its fields) and tensor_name (its tensor naming).
 *
 * A checkpoint evb_model_save wrote of a structured model lists its structured blocks in config.json's
 * "evobudget_structure" (read_structure checks each entry against the configuration); those blocks' tensors
 * are read at the smaller shapes the entry gives, with their o/down compensation biases when the file has
 * them, and the blocks are loaded structured (evb_layer.structured, heads, kv_heads, ffn, b_o, b_down) with
 * w_dense / w16_dense at those shapes. */
#define _DEFAULT_SOURCE
#include "evobudget/evb_model.h"
#include "evobudget/evb_status.h"
#include "evobudget/evb_db.h"
#include "core/half.h"
#include "core/mem.h"
#include "models/bf16.h"
#include "core/json.h"
#include "models/safetensors.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

static const char *linear_names[EVB_LINEAR_COUNT] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

const char *evb_linear_name(evb_linear_kind kind) {
    return kind >= 0 && kind < EVB_LINEAR_COUNT ? linear_names[kind] : "?";
}

// ---- shapes and the arena ----

/* One block as a checkpoint holds it: structured 1 with its query heads, key/value heads and MLP channels
 * (config.json's "evobudget_structure"), and whether it carries o and down biases; all zero: the
 * configuration's shapes. */
typedef struct block_shape { int structured, heads, kv_heads, ffn, b_o, b_down; } block_shape;

/* The shape of a linear layer of a block with heads query heads, kv key/value heads and ffn MLP channels. */
static void block_linear_shape(const evb_config *c, int heads, int kv, int ffn, int kind, int *rows,
                               int *cols) {
    int D = c->dim, HE = heads * c->head_dim, GE = kv * c->head_dim;
    switch (kind) {
    case EVB_LINEAR_Q: *rows = HE; *cols = D; break;
    case EVB_LINEAR_K: case EVB_LINEAR_V: *rows = GE; *cols = D; break;
    case EVB_LINEAR_O: *rows = D; *cols = HE; break;
    case EVB_LINEAR_GATE: case EVB_LINEAR_UP: *rows = ffn; *cols = D; break;
    default: *rows = D; *cols = ffn; break;
    }
}

/* The configuration's shape (the largest any block has). */
static void linear_shape(const evb_config *c, int kind, int *rows, int *cols) {
    block_linear_shape(c, c->n_heads, c->n_kv_heads, c->hidden_dim, kind, rows, cols);
}

/* The shape block L computes with: its structured shape, else the configuration's. */
static void layer_shape(const evb_config *c, const evb_layer *L, int kind, int *rows, int *cols) {
    if (L->structured) block_linear_shape(c, L->heads, L->kv_heads, L->ffn, kind, rows, cols);
    else linear_shape(c, kind, rows, cols);
}

int evb_model_n_units(const evb_model *m) { return m->config.n_layers * EVB_LINEAR_COUNT; }

/* A structured block's shapes are the smaller ones it computes with: a loaded structured checkpoint's dense
 * weights have them; a block level applied at run time (evb_block_level_apply) has them while applied. */
void evb_model_unit_shape(const evb_model *m, int unit, int *rows, int *cols) {
    layer_shape(&m->config, &m->layers[unit / EVB_LINEAR_COUNT], unit % EVB_LINEAR_COUNT, rows, cols);
}

size_t evb_model_max_unit(const evb_model *m, int *max_cols) {
    size_t best = 0;
    int mc = 0;
    for (int k = 0; k < EVB_LINEAR_COUNT; k++) {
        int r, c;
        block_linear_shape(&m->config, m->config.n_heads, m->config.n_kv_heads, m->config.hidden_dim, k, &r,
                           &c);
        if ((size_t)r * c > best) best = (size_t)r * c;
        if (c > mc) mc = c;
    }
    if (max_cols) *max_cols = mc;
    return best;
}

int evb_model_set_weight(evb_model *m, int unit, const float *buf) {
    evb_layer *L = &m->layers[unit / EVB_LINEAR_COUNT];
    int k = unit % EVB_LINEAR_COUNT;
    if (m->compute != EVB_COMPUTE_BF16) {
        L->w[k] = buf ? buf : L->w_dense[k];
        return EVB_SUCCESS;
    }
    if (!buf) { L->w[k] = NULL; L->w16[k] = L->w16_dense[k]; return EVB_SUCCESS; }
    int r, c, rf, cf;
    evb_model_unit_shape(m, unit, &r, &c);
    linear_shape(&m->config, k, &rf, &cf); /* the largest the unit can be: the copy serves every shape */
    if (!m->swap16[unit] && !(m->swap16[unit] = evb_alloc_large(sizeof(uint16_t) * (size_t)rf * cf)))
        EVB_ERRORF(EVB_ENOMEM, "out of memory for a bfloat16 copy of unit %d (%d x %d)", unit, rf, cf);
    evb_bf16_from_f32(m->swap16[unit], buf, (size_t)r * c);
    L->w[k] = buf;
    L->w16[k] = m->swap16[unit];
    return EVB_SUCCESS;
}

int evb_model_set_weight16(evb_model *m, int unit, const uint16_t *buf) {
    if (m->compute != EVB_COMPUTE_BF16) EVB_ERROR("a bfloat16 weight set in a float32 model", EVB_EINVAL);
    evb_layer *L = &m->layers[unit / EVB_LINEAR_COUNT];
    int k = unit % EVB_LINEAR_COUNT;
    L->w[k] = NULL;
    L->w16[k] = buf ? buf : L->w16_dense[k];
    return EVB_SUCCESS;
}

void evb_model_dense_f32(const evb_model *m, int unit, float *dst) {
    const evb_layer *L = &m->layers[unit / EVB_LINEAR_COUNT];
    int k = unit % EVB_LINEAR_COUNT, r, c;
    evb_model_unit_shape(m, unit, &r, &c);
    if (m->compute == EVB_COMPUTE_BF16) evb_bf16_to_f32_n(dst, L->w16_dense[k], (size_t)r * c);
    else memcpy(dst, L->w_dense[k], sizeof(float) * (size_t)r * c);
}

size_t evb_model_n_params(const evb_model *m) { return m->n_params; }

static int check_config(const evb_config *c, const char *path) {
    if (c->dim <= 0 || c->hidden_dim <= 0 || c->n_layers <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0 ||
        c->vocab_size <= 0 || c->max_seq_len <= 0 || c->head_dim <= 0)
        EVB_ERRORF(EVB_EFORMAT, "%s: dimensions must be positive (dim %d, hidden %d, layers %d, heads %d, kv heads %d, vocab %d, seq %d)",
                   path, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size, c->max_seq_len);
    if (c->n_heads % c->n_kv_heads)
        EVB_ERRORF(EVB_EFORMAT, "%s: %d attention heads are not a multiple of %d key/value heads", path, c->n_heads, c->n_kv_heads);
    if (c->head_dim % 2) EVB_ERRORF(EVB_EFORMAT, "%s: head dim %d is odd; rotary embeddings need it even", path, c->head_dim);
    if (c->dim > (1 << 16) || c->hidden_dim > (1 << 18) || c->n_layers > 1024 || c->vocab_size > (1 << 22) ||
        c->n_heads > 1024 || c->head_dim > 4096 || c->max_seq_len > (1 << 22))
        EVB_ERRORF(EVB_EFORMAT, "%s: dimensions are implausibly large (dim %d, hidden %d, layers %d, vocab %d)", path, c->dim, c->hidden_dim, c->n_layers, c->vocab_size);
    if (!(c->norm_eps > 0 && c->norm_eps < 1)) EVB_ERRORF(EVB_EFORMAT, "%s: norm eps %g must lie in (0, 1)", path, c->norm_eps);
    if (!(c->rope_theta > 1)) EVB_ERRORF(EVB_EFORMAT, "%s: rope_theta %g must be > 1", path, c->rope_theta);
    return EVB_SUCCESS;
}

/* Floats block L holds outside its linear layers (norms, q/k/v biases, o and down biases), and in them
 * (*linear). */
static size_t layer_floats(const evb_config *c, const evb_layer *L, const block_shape *bs, size_t *linear) {
    size_t D = (size_t)c->dim, small = 2 * D;
    *linear = 0;
    for (int k = 0; k < EVB_LINEAR_COUNT; k++) {
        int r, cc;
        layer_shape(c, L, k, &r, &cc);
        *linear += (size_t)r * cc;
    }
    int H = L->structured ? L->heads : c->n_heads, G = L->structured ? L->kv_heads : c->n_kv_heads;
    if (c->qkv_bias) small += (size_t)(H + 2 * G) * c->head_dim;
    if (bs) small += D * (size_t)(bs->b_o + bs->b_down);
    return small;
}

/* Points block L's weights into the arena at *p, in the arena's order: rms_att, rms_ffn, the seven linear
 * layers (float32 model only), q/k/v biases, o and down biases. */
static void carve_layer(const evb_config *c, evb_layer *L, const block_shape *bs, int bf, float **p) {
    L->rms_att = *p; *p += c->dim;
    L->rms_ffn = *p; *p += c->dim;
    for (int k = 0; k < EVB_LINEAR_COUNT && !bf; k++) {
        int r, cc;
        layer_shape(c, L, k, &r, &cc);
        L->w_dense[k] = *p; L->w[k] = *p; *p += (size_t)r * cc;
    }
    if (c->qkv_bias) {
        size_t E = (size_t)c->head_dim;
        int H = L->structured ? L->heads : c->n_heads, G = L->structured ? L->kv_heads : c->n_kv_heads;
        L->bq = *p; *p += (size_t)H * E;
        L->bk = *p; *p += (size_t)G * E;
        L->bv = *p; *p += (size_t)G * E;
    }
    if (bs && bs->b_o) { L->b_o = *p; *p += c->dim; }
    if (bs && bs->b_down) { L->b_down = *p; *p += c->dim; }
}

/* Carves the arena into the model's named pointers. Order: tok_emb, per layer (carve_layer), rms_final, cls
 * (untied only). A BF16 model's arena holds only the norms and biases (the rest is placed by the loader). bs
 * NULL or [L]: the blocks' structured shapes and extra biases. */
static int model_alloc(evb_model **out, const evb_config *c, int compute, const block_shape *bs) {
    *out = NULL;
    evb_model *m = calloc(1, sizeof *m);
    if (!m) EVB_ERROR("out of memory", EVB_ENOMEM);
    m->config = *c;
    m->compute = compute;
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    int bf = compute == EVB_COMPUTE_BF16;
    if (bf) m->swap16 = calloc((size_t)c->n_layers * EVB_LINEAR_COUNT, sizeof *m->swap16);
    size_t VD = (size_t)c->vocab_size * c->dim, small = (size_t)c->dim, linear = 0;
    for (int l = 0; m->layers && l < c->n_layers; l++) {
        evb_layer *L = &m->layers[l];
        const block_shape *b = bs ? &bs[l] : NULL;
        if (b && b->structured) {
            L->structured = 1;
            L->heads = b->heads; L->kv_heads = b->kv_heads; L->ffn = b->ffn;
        }
        size_t lin;
        small += layer_floats(c, L, b, &lin);
        linear += lin;
    }
    m->n_params = VD + small + linear + (c->tied ? 0 : VD);
    m->n_arena = bf ? small : m->n_params;
    m->arena = m->layers && (!bf || m->swap16) ? evb_alloc_large(m->n_arena * sizeof(float)) : NULL;
    if (!m->arena) {
        size_t n = m->n_arena;
        evb_model_free(m);
        EVB_ERRORF(EVB_ENOMEM, "out of memory allocating %.1f MB of weights", n * 4.0 / 1e6);
    }
    float *p = m->arena;
    if (!bf) { m->tok_emb = p; p += VD; }
    for (int l = 0; l < c->n_layers; l++) carve_layer(c, &m->layers[l], bs ? &bs[l] : NULL, bf, &p);
    m->rms_final = p; p += c->dim;
    if (c->tied) m->cls = m->tok_emb;
    else if (!bf) { m->cls = p; p += VD; }
    EVB_ASSERT((size_t)(p - m->arena) == m->n_arena);
    *out = m;
    return EVB_SUCCESS;
}

void evb_model_free(evb_model *m) {
    if (!m) return;
    if (m->mapped) { evb_st_close(m->mapped); free(m->mapped); }
    for (int u = 0; m->swap16 && u < m->config.n_layers * EVB_LINEAR_COUNT; u++) free(m->swap16[u]);
    free(m->swap16);
    free(m->arena16);
    free(m->arena);
    free(m->layers);
    free(m);
}

// ---- the fingerprint ----

/* The hash of the configuration that seeds the hash of the weights. */
static uint64_t config_seed(const evb_config *c) {
    int dims[] = {c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->vocab_size,
                  c->rope_halves, c->tied, c->qkv_bias};
    uint64_t h = XXH64(dims, sizeof dims, 0);
    float f[] = {c->rope_theta, c->norm_eps};
    return XXH64(f, sizeof f, h);
}

/* Feeds n float32 values to the hash: x, or the float32 values of the bfloat16 h. */
static void hash_weights(XXH64_state_t *st, const float *x, const uint16_t *h, size_t n) {
    if (x) { XXH64_update(st, x, n * sizeof(float)); return; }
    float buf[2048];
    for (size_t i = 0; i < n; i += 2048) {
        size_t k = n - i < 2048 ? n - i : 2048;
        for (size_t j = 0; j < k; j++) buf[j] = evb_bf16_value(h[i + j]);
        XXH64_update(st, buf, k * sizeof *buf);
    }
}

/* The weights' float32 values, in the float32 arena's order (tok_emb, per layer rms_att, rms_ffn, the seven
 * linear layers, biases; rms_final; an untied classifier), hashed: so a checkpoint has one fingerprint however
 * it is held. A BF16 model converted from float32 or float16 values has m->fingerprint set by the loader from
 * those values. */
void evb_fingerprint_model(const evb_model *m, char hex[17]) {
    const evb_config *c = &m->config;
    if (m->fingerprint[0]) { memcpy(hex, m->fingerprint, 17); return; }
    uint64_t seed = config_seed(c);
    if (m->compute != EVB_COMPUTE_BF16) { evb_hash_hex(m->arena, m->n_arena * sizeof(float), seed, hex); return; }
    XXH64_state_t *x = XXH64_createState();
    if (!x) { snprintf(hex, 17, "%016llx", 0ULL); return; }
    XXH64_reset(x, seed);
    size_t D = (size_t)c->dim, VD = (size_t)c->vocab_size * D;
    hash_weights(x, NULL, m->tok_emb16, VD);
    for (int l = 0; l < c->n_layers; l++) {
        const evb_layer *L = &m->layers[l];
        hash_weights(x, L->rms_att, NULL, D);
        hash_weights(x, L->rms_ffn, NULL, D);
        for (int k = 0; k < EVB_LINEAR_COUNT; k++) {
            int r, cc;
            layer_shape(c, L, k, &r, &cc);
            hash_weights(x, NULL, L->w16_dense[k], (size_t)r * cc);
        }
        const float *b[3] = {L->bq, L->bk, L->bv};
        for (int k = 0; k < 3 && c->qkv_bias; k++) {
            int r, cc;
            layer_shape(c, L, k, &r, &cc);
            hash_weights(x, b[k], NULL, (size_t)r);
        }
        if (L->b_o) hash_weights(x, L->b_o, NULL, D);
        if (L->b_down) hash_weights(x, L->b_down, NULL, D);
    }
    hash_weights(x, m->rms_final, NULL, D);
    if (!c->tied) hash_weights(x, NULL, m->cls16, VD);
    snprintf(hex, 17, "%016llx", (unsigned long long)XXH64_digest(x));
    XXH64_freeState(x);
}

/* Feeds the float32 values of the checkpoint's tensor `name` to the hash. */
static int hash_tensor(XXH64_state_t *x, const evb_safetensors *st, const char *name) {
    const evb_st_tensor *t = evb_st_find(st, name);
    if (!t) EVB_ERRORF(EVB_EFORMAT, "missing tensor \"%s\"", name);
    const evb_st_file *f = &st->files[t->file];
    const uint8_t *p = f->map + f->data_start + t->begin;
    size_t bytes = t->end - t->begin;
    if (strcmp(t->dtype, "F32") == 0) { XXH64_update(x, p, bytes); return EVB_SUCCESS; }
    int bf = strcmp(t->dtype, "BF16") == 0;
    float buf[2048];
    for (size_t k = 0; k < bytes / 2; k += 2048) {
        size_t q = bytes / 2 - k < 2048 ? bytes / 2 - k : 2048;
        for (size_t e = 0; e < q; e++) {
            uint16_t h = (uint16_t)(p[2 * (k + e)] | (p[2 * (k + e) + 1] << 8));
            buf[e] = bf ? evb_bf16_value(h) : evb_f16_to_f32(h);
        }
        XXH64_update(x, buf, q * sizeof *buf);
    }
    return EVB_SUCCESS;
}

/* The same from a Hugging Face checkpoint's own tensors (their float32 values, in the order above), for a BF16
 * model that converted them. */
static int fingerprint_source(evb_model *m, const evb_safetensors *st) {
    const evb_config *c = &m->config;
    XXH64_state_t *x = XXH64_createState();
    if (!x) EVB_ERROR("out of memory", EVB_ENOMEM);
    XXH64_reset(x, config_seed(c));
    char name[128];
    int s = hash_tensor(x, st, "model.embed_tokens.weight");
    for (int l = 0; !s && l < c->n_layers; l++) {
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
        s = hash_tensor(x, st, name);
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
        if (!s) s = hash_tensor(x, st, name);
        for (int k = 0; !s && k < EVB_LINEAR_COUNT; k++) {
            snprintf(name, sizeof name, "model.layers.%d.%s.%s.weight", l, k < 4 ? "self_attn" : "mlp", linear_names[k]);
            s = hash_tensor(x, st, name);
        }
        for (int k = 0; !s && c->qkv_bias && k < 3; k++) {
            snprintf(name, sizeof name, "model.layers.%d.self_attn.%s.bias", l, linear_names[k]);
            s = hash_tensor(x, st, name);
        }
        snprintf(name, sizeof name, "model.layers.%d.self_attn.o_proj.bias", l);
        if (!s && m->layers[l].b_o) s = hash_tensor(x, st, name);
        snprintf(name, sizeof name, "model.layers.%d.mlp.down_proj.bias", l);
        if (!s && m->layers[l].b_down) s = hash_tensor(x, st, name);
    }
    if (!s) s = hash_tensor(x, st, "model.norm.weight");
    if (!s && !c->tied) s = hash_tensor(x, st, "lm_head.weight");
    if (!s) snprintf(m->fingerprint, sizeof m->fingerprint, "%016llx", (unsigned long long)XXH64_digest(x));
    XXH64_freeState(x);
    return s;
}

/* Rehouses a float32 model as a BF16 one: the embedding, classifier and linear layers rounded into one
 * bfloat16 arena, norms and biases copied. For llama2.c models, which are never structured. *mp is replaced
 * (and the float32 model freed) on success. */
static int hold_bf16(evb_model **mp) {
    evb_model *m = *mp, *b;
    const evb_config *c = &m->config;
    int s = model_alloc(&b, c, EVB_COMPUTE_BF16, NULL);
    if (s) return s;
    size_t VD = (size_t)c->vocab_size * c->dim, n16 = c->tied ? VD : 2 * VD, off = 0;
    for (int k = 0; k < EVB_LINEAR_COUNT; k++) { int r, cc; linear_shape(c, k, &r, &cc); n16 += (size_t)r * cc * c->n_layers; }
    if (!(b->arena16 = evb_alloc_large(n16 * sizeof(uint16_t)))) {
        evb_model_free(b);
        EVB_ERRORF(EVB_ENOMEM, "out of memory allocating %.1f MB of bfloat16 weights", n16 * 2.0 / 1e6);
    }
    uint16_t *a = b->arena16;
    evb_bf16_from_f32(a, m->tok_emb, VD); b->tok_emb16 = a; off += VD;
    for (int l = 0; l < c->n_layers; l++) {
        evb_layer *L = &b->layers[l], *S = &m->layers[l];
        memcpy(L->rms_att, S->rms_att, sizeof(float) * c->dim);
        memcpy(L->rms_ffn, S->rms_ffn, sizeof(float) * c->dim);
        for (int k = 0; k < EVB_LINEAR_COUNT; k++) {
            int r, cc;
            linear_shape(c, k, &r, &cc);
            evb_bf16_from_f32(a + off, S->w_dense[k], (size_t)r * cc);
            L->w16_dense[k] = L->w16[k] = a + off; off += (size_t)r * cc;
        }
        if (c->qkv_bias) {
            memcpy(L->bq, S->bq, sizeof(float) * c->n_heads * c->head_dim);
            memcpy(L->bk, S->bk, sizeof(float) * c->n_kv_heads * c->head_dim);
            memcpy(L->bv, S->bv, sizeof(float) * c->n_kv_heads * c->head_dim);
        }
        L->dropped_attn = S->dropped_attn; L->dropped_mlp = S->dropped_mlp;
    }
    memcpy(b->rms_final, m->rms_final, sizeof(float) * c->dim);
    if (c->tied) b->cls16 = b->tok_emb16;
    else { evb_bf16_from_f32(a + off, m->cls, VD); b->cls16 = a + off; off += VD; }
    EVB_ASSERT(off == n16);
    memcpy(b->path, m->path, sizeof b->path);
    memcpy(b->tokenizer_path, m->tokenizer_path, sizeof b->tokenizer_path);
    evb_fingerprint_model(m, b->fingerprint);
    evb_model_free(m);
    *mp = b;
    return EVB_SUCCESS;
}

static int file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* The tokenizer beside a model: in a Hugging Face directory tokenizer.json, else tokenizer.bin; beside a
 * llama2.c .bin file tokenizer.bin, else tok<V>.bin (llama2.c's naming for small vocabularies). "" if none. */
static void tokenizer_beside(const char *path, int is_dir, int vocab, char *out, size_t n) {
    char dir[1100], cand[1150];
    snprintf(dir, sizeof dir, "%s", path);
    if (is_dir) { snprintf(cand, sizeof cand, "%s/tokenizer.json", dir); if (!file_exists(cand)) snprintf(cand, sizeof cand, "%s/tokenizer.bin", dir); }
    else {
        char *slash = strrchr(dir, '/');
        if (slash) slash[1] = '\0'; else dir[0] = '\0';
        snprintf(cand, sizeof cand, "%stokenizer.bin", dir);
        if (!file_exists(cand)) snprintf(cand, sizeof cand, "%stok%d.bin", dir, vocab);
    }
    snprintf(out, n, "%s", file_exists(cand) ? cand : "");
}

int evb_model_find_tokenizer(const char *path, char *out, size_t n) {
    struct stat sb;
    out[0] = 0;
    if (stat(path, &sb) != 0) EVB_ERRORF(EVB_EIO, "%s: %s", path, strerror(errno));
    int32_t h[7] = {0};
    if (!S_ISDIR(sb.st_mode)) { /* a llama2.c header's vocabulary names tok<V>.bin */
        FILE *f = fopen(path, "rb");
        if (!f) EVB_ERRORF(EVB_EIO, "%s: %s", path, strerror(errno));
        if (fread(h, 4, 7, f) != 7) h[5] = 0;
        fclose(f);
    }
    tokenizer_beside(path, S_ISDIR(sb.st_mode), h[5] == INT32_MIN ? 0 : h[5] < 0 ? -h[5] : h[5], out, n);
    return EVB_SUCCESS;
}

// ---- llama2.c .bin ----

static int load_llama2c(const char *path, int compute, evb_model **out) {
    FILE *f = fopen(path, "rb");
    if (!f) EVB_ERRORF(EVB_EIO, "%s: cannot open: %s", path, strerror(errno));
    int32_t h[7];
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (size < 28 || fread(h, 4, 7, f) != 7) { fclose(f); EVB_ERRORF(EVB_EFORMAT, "%s: %ld bytes is too short for a llama2.c header (28 bytes)", path, size); }
    if (h[0] == 0x616b3432) { fclose(f); EVB_ERRORF(EVB_EFORMAT, "%s: a llama2.c version 1/2 export; only the legacy version 0 format is read (export with --version 0)", path); }
    evb_config c = {0};
    snprintf(c.arch, sizeof c.arch, "llama");
    snprintf(c.format, sizeof c.format, "llama2c");
    c.dim = h[0]; c.hidden_dim = h[1]; c.n_layers = h[2]; c.n_heads = h[3]; c.n_kv_heads = h[4];
    /* A negative vocab size marks an untied classifier; INT32_MIN has no positive counterpart. */
    c.vocab_size = h[5] == INT32_MIN ? 0 : (h[5] < 0 ? -h[5] : h[5]); c.max_seq_len = h[6];
    c.tied = h[5] > 0;
    c.head_dim = c.n_heads > 0 ? c.dim / c.n_heads : 0;
    c.rope_theta = 10000.0f; c.norm_eps = 1e-5f; c.rope_halves = 0; c.qkv_bias = 0;
    c.bos_id = 1; c.eos_id = 2;
    snprintf(c.dtype, sizeof c.dtype, "F32");
    int status = check_config(&c, path);
    if (!status && c.dim % c.n_heads) status = EVB_RAISEF(EVB_EFORMAT, "%s: dim %d is not a multiple of %d heads", path, c.dim, c.n_heads);
    if (status) { fclose(f); return status; }
    size_t D = c.dim, F = c.hidden_dim, L = c.n_layers, V = c.vocab_size, E = c.head_dim;
    size_t GE = (size_t)c.n_kv_heads * E;
    size_t n_floats = V * D + L * D + L * D * D + 2 * L * D * GE + L * D * D + L * D + 3 * L * D * F + D +
                      (size_t)c.max_seq_len * E + (c.tied ? 0 : V * D);
    size_t expect = 28 + 4 * n_floats;
    if ((size_t)size != expect) {
        fclose(f);
        EVB_ERRORF(EVB_EFORMAT, "%s: %ld bytes, but its header (dim %d, hidden %d, layers %d, heads %d/%d, vocab %d, seq %d) implies %zu; the file is truncated or not a llama2.c checkpoint",
                   path, size, c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size, c.max_seq_len, expect);
    }
    evb_model *m;
    if ((status = model_alloc(&m, &c, EVB_COMPUTE_F32, NULL))) { fclose(f); return status; }
    /* llama2.c order: emb, rms_att[L], wq[L], wk[L], wv[L], wo[L], rms_ffn[L], w1[L], w2[L], w3[L], rms_final,
     * freq_cis (skipped), wcls (untied). */
    int ok = fread(m->tok_emb, 4, V * D, f) == V * D;
    for (size_t l = 0; ok && l < L; l++) ok = fread(m->layers[l].rms_att, 4, D, f) == D;
    static const int order[] = {EVB_LINEAR_Q, EVB_LINEAR_K, EVB_LINEAR_V, EVB_LINEAR_O};
    for (int i = 0; i < 4; i++)
        for (size_t l = 0; ok && l < L; l++) {
            int r, cc;
            linear_shape(&c, order[i], &r, &cc);
            ok = fread(m->layers[l].w_dense[order[i]], 4, (size_t)r * cc, f) == (size_t)r * cc;
        }
    for (size_t l = 0; ok && l < L; l++) ok = fread(m->layers[l].rms_ffn, 4, D, f) == D;
    static const int order2[] = {EVB_LINEAR_GATE, EVB_LINEAR_DOWN, EVB_LINEAR_UP};
    for (int i = 0; i < 3; i++)
        for (size_t l = 0; ok && l < L; l++) ok = fread(m->layers[l].w_dense[order2[i]], 4, D * F, f) == D * F;
    if (ok) ok = fread(m->rms_final, 4, D, f) == D;
    if (ok) ok = fseek(f, (long)((size_t)c.max_seq_len * E * 4), SEEK_CUR) == 0;
    if (ok && !c.tied) ok = fread(m->cls, 4, V * D, f) == V * D;
    fclose(f);
    if (!ok) { evb_model_free(m); EVB_ERRORF(EVB_EIO, "%s: read error", path); }
    snprintf(m->path, sizeof m->path, "%s", path);
    tokenizer_beside(path, 0, c.vocab_size, m->tokenizer_path, sizeof m->tokenizer_path);
    if (compute == EVB_COMPUTE_BF16 && (status = hold_bf16(&m))) { evb_model_free(m); return status; }
    *out = m;
    return EVB_SUCCESS;
}

// ---- Hugging Face directories ----

/* Reads config.json into *c; on success *out holds the parsed object for the caller's further reading. */
static int parse_config(const char *path, evb_config *c, json_t **out) {
    json_t *j;
    int st = evb_json_load_file(path, &j);
    if (st) return st;
    if (!json_is_object(j)) { json_decref(j); EVB_ERRORF(EVB_EFORMAT, "%s: not a JSON object", path); }
    memset(c, 0, sizeof *c);
    snprintf(c->format, sizeof c->format, "hf");
    const char *mt = json_string_value(json_object_get(j, "model_type"));
    if (!mt) { json_decref(j); EVB_ERRORF(EVB_EFORMAT, "%s: missing \"model_type\" (expected llama, mistral or qwen2)", path); }
    if (strcmp(mt, "llama") && strcmp(mt, "mistral") && strcmp(mt, "qwen2")) {
        st = EVB_RAISEF(EVB_EFORMAT, "%s: model_type \"%.40s\" is not supported (llama, mistral, qwen2 are)", path, mt);
        json_decref(j);
        return st;
    }
    snprintf(c->arch, sizeof c->arch, "%s", mt);
    long long v[9];
    double rope = 0, eps = 0;
    int tied = 0;
    st = 0;
    const long long big = 1LL << 30;
    if ((st = evb_json_int(j, "hidden_size", 1, 0, 1, big, &v[0], path)) ||
        (st = evb_json_int(j, "intermediate_size", 1, 0, 1, big, &v[1], path)) ||
        (st = evb_json_int(j, "num_hidden_layers", 1, 0, 1, 4096, &v[2], path)) ||
        (st = evb_json_int(j, "num_attention_heads", 1, 0, 1, 4096, &v[3], path)) ||
        (st = evb_json_int(j, "num_key_value_heads", 0, 0, 0, 4096, &v[4], path)) ||
        (st = evb_json_int(j, "vocab_size", 1, 0, 1, big, &v[5], path)) ||
        (st = evb_json_int(j, "max_position_embeddings", 0, 2048, 1, big, &v[6], path)) ||
        (st = evb_json_int(j, "head_dim", 0, 0, 0, 65536, &v[7], path)) ||
        (st = evb_json_int(j, "sliding_window", 0, 0, 0, big, &v[8], path)) ||
        (st = evb_json_num(j, "rope_theta", 0, 10000.0, &rope, path)) ||
        (st = evb_json_num(j, "rms_norm_eps", 0, 1e-6, &eps, path)) ||
        (st = evb_json_bool(j, "tie_word_embeddings", 0, &tied, path))) {
        json_decref(j);
        return st;
    }
    json_t *rs = json_object_get(j, "rope_scaling");
    const char *act = json_string_value(json_object_get(j, "hidden_act"));
    if (rs && !json_is_null(rs)) st = EVB_RAISEF(EVB_EFORMAT, "%s: rope_scaling is set; scaled rotary embeddings are not supported", path);
    else if (act && strcmp(act, "silu")) st = EVB_RAISEF(EVB_EFORMAT, "%s: hidden_act \"%.20s\" is not supported (silu is)", path, act);
    c->dim = (int)v[0]; c->hidden_dim = (int)v[1]; c->n_layers = (int)v[2]; c->n_heads = (int)v[3];
    c->n_kv_heads = v[4] ? (int)v[4] : (int)v[3]; c->vocab_size = (int)v[5]; c->max_seq_len = (int)v[6];
    c->head_dim = v[7] ? (int)v[7] : (c->n_heads ? c->dim / c->n_heads : 0);
    if (!st && !v[7] && c->dim % c->n_heads)
        st = EVB_RAISEF(EVB_EFORMAT, "%s: hidden_size %d is not a multiple of %d heads and no head_dim is given", path, c->dim, c->n_heads);
    /* Mistral's sliding window only matters for sequences longer than it; the forward refuses those. */
    c->max_seq_len = v[8] && v[8] < v[6] ? (int)v[8] : c->max_seq_len;
    c->rope_theta = (float)rope; c->norm_eps = (float)eps; c->tied = tied; c->rope_halves = 1;
    c->qkv_bias = strcmp(mt, "qwen2") == 0;
    long long bos = -1, eos = -1;
    if (!st && json_is_integer(json_object_get(j, "bos_token_id"))) bos = json_integer_value(json_object_get(j, "bos_token_id"));
    json_t *e = json_object_get(j, "eos_token_id");
    if (json_is_array(e)) e = json_array_get(e, 0);
    if (json_is_integer(e)) eos = json_integer_value(e);
    c->bos_id = bos >= 0 && bos < c->vocab_size ? (int)bos : -1;
    c->eos_id = eos >= 0 && eos < c->vocab_size ? (int)eos : -1;
    if (!st) st = check_config(c, path);
    if (st) { json_decref(j); return st; }
    *out = j;
    return EVB_SUCCESS;
}

/* Marks the sub-blocks config.json lists under "evobudget_dropped" (evb_model_save writes it). */
static int read_dropped(json_t *j, evb_model *m, const char *path) {
    json_t *d = json_object_get(j, "evobudget_dropped"), *x;
    if (!d) return EVB_SUCCESS;
    if (!json_is_array(d)) EVB_ERRORF(EVB_EFORMAT, "%s: \"evobudget_dropped\" must be an array of {\"block\": l, \"sub\": \"attn\"|\"mlp\"}", path);
    size_t i;
    json_array_foreach(d, i, x) {
        json_t *b = json_object_get(x, "block");
        const char *sub = json_string_value(json_object_get(x, "sub"));
        json_int_t l = json_is_integer(b) ? json_integer_value(b) : -1;
        int k = sub && strcmp(sub, "attn") == 0 ? 0 : sub && strcmp(sub, "mlp") == 0 ? 1 : -1;
        if (l < 0 || l >= m->config.n_layers || k < 0)
            EVB_ERRORF(EVB_EFORMAT, "%s: evobudget_dropped[%zu] must name a block in 0..%d and a sub-block attn or mlp", path, i, m->config.n_layers - 1);
        if (k == 0) m->layers[l].dropped_attn = 1; else m->layers[l].dropped_mlp = 1;
    }
    return EVB_SUCCESS;
}

/* Entry i of "evobudget_structure" into bs[block], checked against the configuration. */
static int structure_entry(json_t *x, size_t i, const evb_config *c, block_shape *bs, const char *path) {
    static const char *const keys[4] = {"block", "heads", "kv_heads", "ffn"};
    long long v[4];
    for (int k = 0; k < 4; k++) {
        json_t *f = json_object_get(x, keys[k]);
        if (!json_is_integer(f))
            EVB_ERRORF(EVB_EFORMAT, "%s: evobudget_structure[%zu].%s is missing or not an integer", path, i,
                       keys[k]);
        v[k] = json_integer_value(f);
    }
    int H = c->n_heads, G = c->n_kv_heads;
    if (v[0] < 0 || v[0] >= c->n_layers)
        EVB_ERRORF(EVB_EFORMAT, "%s: evobudget_structure[%zu].block %lld is outside 0..%d", path, i, v[0],
                   c->n_layers - 1);
    if (bs[v[0]].structured)
        EVB_ERRORF(EVB_EFORMAT, "%s: evobudget_structure[%zu].block %lld is named twice", path, i, v[0]);
    if (v[2] < 0 || v[2] > G)
        EVB_ERRORF(EVB_EFORMAT, "%s: evobudget_structure[%zu].kv_heads %lld is outside 0..%d", path, i, v[2],
                   G);
    if (v[1] != v[2] * H / G)
        EVB_ERRORF(EVB_EFORMAT, "%s: evobudget_structure[%zu].heads %lld is not kv_heads x %d / %d = %lld "
                   "(whole groups)", path, i, v[1], H, G, v[2] * H / G);
    if (v[3] < 0 || v[3] > c->hidden_dim)
        EVB_ERRORF(EVB_EFORMAT, "%s: evobudget_structure[%zu].ffn %lld is outside 0..%d", path, i, v[3],
                   c->hidden_dim);
    bs[v[0]] = (block_shape){1, (int)v[1], (int)v[2], (int)v[3], 0, 0};
    return EVB_SUCCESS;
}

/* Reads config.json's "evobudget_structure" ([{"block": l, "heads": h, "kv_heads": g, "ffn": f}], written by
 * evb_model_save) into *out ([L]; NULL when config.json has none), with whether each structured block carries
 * o and down biases in st. The caller frees *out. */
static int read_structure(json_t *j, const evb_config *c, const evb_safetensors *st, const char *path,
                          block_shape **out) {
    *out = NULL;
    json_t *a = json_object_get(j, "evobudget_structure"), *x;
    if (!a) return EVB_SUCCESS;
    if (!json_is_array(a))
        EVB_ERRORF(EVB_EFORMAT, "%s: \"evobudget_structure\" must be an array of {\"block\", \"heads\", "
                   "\"kv_heads\", \"ffn\"}", path);
    block_shape *bs = calloc((size_t)c->n_layers, sizeof *bs);
    if (!bs) EVB_ERROR("out of memory", EVB_ENOMEM);
    size_t i;
    json_array_foreach(a, i, x) {
        int s = structure_entry(x, i, c, bs, path);
        if (s) { free(bs); return s; }
    }
    char name[128];
    for (int l = 0; l < c->n_layers; l++) {
        if (!bs[l].structured) continue;
        snprintf(name, sizeof name, "model.layers.%d.self_attn.o_proj.bias", l);
        bs[l].b_o = evb_st_find(st, name) != NULL;
        snprintf(name, sizeof name, "model.layers.%d.mlp.down_proj.bias", l);
        bs[l].b_down = evb_st_find(st, name) != NULL;
    }
    *out = bs;
    return EVB_SUCCESS;
}

/* Opens model.safetensors, or every shard named by model.safetensors.index.json. */
static int open_weights(const char *dir, evb_safetensors *st) {
    char path[1100];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    if (file_exists(path)) {
        json_t *j;
        int s = evb_json_load_file(path, &j);
        if (s) return s;
        json_t *map = json_object_get(j, "weight_map");
        if (!json_is_object(map) || json_object_size(map) == 0) { json_decref(j); EVB_ERRORF(EVB_EFORMAT, "%s: missing \"weight_map\" object", path); }
        /* Open each shard once, in the order first named. */
        const char *key;
        json_t *v;
        char **seen = calloc(json_object_size(map), sizeof *seen);
        int n_seen = 0;
        if (!seen) { json_decref(j); EVB_ERROR("out of memory", EVB_ENOMEM); }
        json_object_foreach(map, key, v) {
            const char *file = json_string_value(v);
            if (!file || strchr(file, '/') || strlen(file) > 255) { s = EVB_RAISEF(EVB_EFORMAT, "%s: weight_map entry \"%.80s\" is not a plain file name", path, key); break; }
            int dup = 0;
            for (int i = 0; i < n_seen && !dup; i++) dup = strcmp(seen[i], file) == 0;
            if (dup) continue;
            seen[n_seen++] = (char *)file;
            char shard[1400];
            snprintf(shard, sizeof shard, "%s/%s", dir, file);
            if ((s = evb_st_open(st, shard))) break;
        }
        /* Every tensor the index names must be in the shards. */
        if (!s) json_object_foreach(map, key, v) {
            if (!evb_st_find(st, key)) { s = EVB_RAISEF(EVB_EFORMAT, "%s: tensor \"%.80s\" is listed for %s but not in it", path, key, json_string_value(v)); break; }
        }
        free(seen);
        json_decref(j);
        return s;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (!file_exists(path)) EVB_ERRORF(EVB_EIO, "%s: no model.safetensors or model.safetensors.index.json in this directory", dir);
    return evb_st_open(st, path);
}

static int read_tensor(const evb_safetensors *st, const char *name, int ndim, int64_t d0, int64_t d1, float *dst, const char *dir) {
    const evb_st_tensor *t = evb_st_find(st, name);
    if (!t) EVB_ERRORF(EVB_EFORMAT, "%s: missing tensor \"%s\"", dir, name);
    int64_t shape[2] = {d0, d1};
    return evb_st_read_f32(st, t, ndim, shape, dst);
}

/* A BF16 model's embedding, classifier and linear layers: each points into the mapping where the checkpoint
 * holds it as aligned BF16, else is converted into m->arena16. Keeps st open in m->mapped when any tensor is
 * used in place (st is then owned by m). */
static int place_bf16(evb_model *m, evb_safetensors *st, const char *dir) {
    const evb_config *c = &m->config;
    int n = c->n_layers * EVB_LINEAR_COUNT + 2, k = 0;
    struct big { char name[96]; int64_t rows, cols; const uint16_t **slot; const evb_st_tensor *t; } *big = calloc((size_t)n, sizeof *big);
    if (!big) EVB_ERROR("out of memory", EVB_ENOMEM);
    snprintf(big[k].name, sizeof big[k].name, "model.embed_tokens.weight");
    big[k].rows = c->vocab_size; big[k].cols = c->dim; big[k++].slot = &m->tok_emb16;
    for (int l = 0; l < c->n_layers; l++)
        for (int j = 0; j < EVB_LINEAR_COUNT; j++) {
            int r, cc;
            layer_shape(c, &m->layers[l], j, &r, &cc);
            snprintf(big[k].name, sizeof big[k].name, "model.layers.%d.%s.%s.weight", l, j < 4 ? "self_attn" : "mlp", linear_names[j]);
            big[k].rows = r; big[k].cols = cc; big[k++].slot = &m->layers[l].w16_dense[j];
        }
    if (!c->tied) {
        snprintf(big[k].name, sizeof big[k].name, "lm_head.weight");
        big[k].rows = c->vocab_size; big[k].cols = c->dim; big[k++].slot = &m->cls16;
    }
    size_t n16 = 0, off = 0;
    int s = EVB_SUCCESS, in_place = 0;
    for (int i = 0; !s && i < k; i++) {
        if (!(big[i].t = evb_st_find(st, big[i].name))) s = EVB_RAISEF(EVB_EFORMAT, "%s: missing tensor \"%s\"", dir, big[i].name);
        else if (!evb_st_bf16_in_place(st, big[i].t)) n16 += (size_t)(big[i].rows * big[i].cols);
    }
    if (!s && n16 && !(m->arena16 = evb_alloc_large(n16 * sizeof(uint16_t))))
        s = EVB_RAISEF(EVB_ENOMEM, "out of memory allocating %.1f MB of bfloat16 weights", n16 * 2.0 / 1e6);
    for (int i = 0; !s && i < k; i++) {
        int64_t shape[2] = {big[i].rows, big[i].cols};
        const uint16_t *p = evb_st_bf16_in_place(st, big[i].t);
        s = evb_st_read_bf16(st, big[i].t, 2, shape, p ? NULL : m->arena16 + off);
        if (!p) { p = m->arena16 + off; off += (size_t)(big[i].rows * big[i].cols); }
        else in_place = 1;
        *big[i].slot = p;
    }
    free(big);
    if (!s && m->arena16) s = fingerprint_source(m, st);
    if (s) return s;
    for (int l = 0; l < c->n_layers; l++)
        for (int j = 0; j < EVB_LINEAR_COUNT; j++) m->layers[l].w16[j] = m->layers[l].w16_dense[j];
    if (c->tied) m->cls16 = m->tok_emb16;
    if (in_place) {
        if (!(m->mapped = malloc(sizeof *st))) return EVB_RAISEF(EVB_ENOMEM, "out of memory");
        memcpy(m->mapped, st, sizeof *st);
        evb_st_init(st);
    }
    return EVB_SUCCESS;
}

/* Block l's norms, linear layers (float32 model only) and biases, at the shapes the block has. */
static int read_layer(const evb_safetensors *st, const evb_config *c, evb_layer *L, int l, int bf,
                      const char *dir) {
    char name[256];
    snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
    int s = read_tensor(st, name, 1, c->dim, 0, L->rms_att, dir);
    snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
    if (!s) s = read_tensor(st, name, 1, c->dim, 0, L->rms_ffn, dir);
    for (int k = 0; !s && !bf && k < EVB_LINEAR_COUNT; k++) {
        int r, cc;
        layer_shape(c, L, k, &r, &cc);
        snprintf(name, sizeof name, "model.layers.%d.%s.%s.weight", l, k < 4 ? "self_attn" : "mlp",
                 linear_names[k]);
        s = read_tensor(st, name, 2, r, cc, L->w_dense[k], dir);
    }
    float *b[3] = {L->bq, L->bk, L->bv};
    for (int k = 0; !s && c->qkv_bias && k < 3; k++) {
        int r, cc;
        layer_shape(c, L, k, &r, &cc);
        snprintf(name, sizeof name, "model.layers.%d.self_attn.%s.bias", l, linear_names[k]);
        s = read_tensor(st, name, 1, r, 0, b[k], dir);
    }
    /* a structured block's compensation biases (the arena holds them; read_structure found them) */
    snprintf(name, sizeof name, "model.layers.%d.self_attn.o_proj.bias", l);
    if (!s && L->b_o) s = read_tensor(st, name, 1, c->dim, 0, (float *)L->b_o, dir);
    snprintf(name, sizeof name, "model.layers.%d.mlp.down_proj.bias", l);
    if (!s && L->b_down) s = read_tensor(st, name, 1, c->dim, 0, (float *)L->b_down, dir);
    return s;
}

/* The model of config.json's configuration, structure and dropped sub-blocks, its arena allocated. */
static int alloc_hf(const char *path, json_t *cj, const evb_config *c, const evb_safetensors *st, int compute,
                    evb_model **out) {
    block_shape *bs;
    int s = read_structure(cj, c, st, path, &bs);
    if (!s) s = model_alloc(out, c, compute, bs);
    free(bs);
    if (!s && (s = read_dropped(cj, *out, path))) { evb_model_free(*out); *out = NULL; }
    return s;
}

static int load_hf(const char *dir, int compute, evb_model **out) {
    char path[1100];
    snprintf(path, sizeof path, "%s/config.json", dir);
    evb_config c;
    json_t *cj = NULL;
    int s = parse_config(path, &c, &cj);
    if (s) return s;
    evb_safetensors st;
    evb_st_init(&st);
    if ((s = open_weights(dir, &st))) { evb_st_close(&st); json_decref(cj); return s; }
    const evb_st_tensor *q0 = evb_st_find(&st, "model.layers.0.self_attn.q_proj.weight");
    snprintf(c.dtype, sizeof c.dtype, "%s", q0 ? q0->dtype : "F32");
    evb_model *m = NULL;
    s = alloc_hf(path, cj, &c, &st, compute, &m);
    json_decref(cj);
    if (s) { evb_st_close(&st); return s; }
    /* A checkpoint that says it is tied may still carry lm_head.weight (equal to the embedding): ignore it. */
    if (!c.tied && !evb_st_find(&st, "lm_head.weight"))
        s = EVB_RAISEF(EVB_EFORMAT, "%s: missing tensor \"lm_head.weight\" (config.json says the embeddings are not tied)", dir);
    int bf = compute == EVB_COMPUTE_BF16;
    if (!s && !bf) s = read_tensor(&st, "model.embed_tokens.weight", 2, c.vocab_size, c.dim, m->tok_emb, dir);
    for (int l = 0; !s && l < c.n_layers; l++) s = read_layer(&st, &c, &m->layers[l], l, bf, dir);
    if (!s) s = read_tensor(&st, "model.norm.weight", 1, c.dim, 0, m->rms_final, dir);
    if (!s && !c.tied && !bf) s = read_tensor(&st, "lm_head.weight", 2, c.vocab_size, c.dim, m->cls, dir);
    if (!s && bf) s = place_bf16(m, &st, dir);
    evb_st_close(&st);
    if (s) { evb_model_free(m); return s; }
    snprintf(m->path, sizeof m->path, "%s", dir);
    tokenizer_beside(dir, 1, 0, m->tokenizer_path, sizeof m->tokenizer_path);
    *out = m;
    return EVB_SUCCESS;
}

int evb_model_load_as(const char *path, evb_compute compute, evb_model **out) {
    *out = NULL;
    struct stat sb;
    if (compute != EVB_COMPUTE_AUTO && compute != EVB_COMPUTE_F32 && compute != EVB_COMPUTE_BF16)
        EVB_ERRORF(EVB_EINVAL, "compute path %d is none of auto, f32, bf16", (int)compute);
    const char *missing = evb_compute_missing();
    if (compute == EVB_COMPUTE_BF16 && missing)
        EVB_ERRORF(EVB_EINVAL, "BF16 compute is not available: %s (hint: --compute f32, or auto)", missing);
    compute = evb_compute_resolve(compute);
    if (stat(path, &sb) != 0) EVB_ERRORF(EVB_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (strlen(path) > 400) EVB_ERRORF(EVB_EINVAL, "%.60s...: path too long", path);
    if (S_ISDIR(sb.st_mode)) return load_hf(path, compute, out);
    return load_llama2c(path, compute, out);
}

int evb_model_load(const char *path, evb_model **out) { return evb_model_load_as(path, EVB_COMPUTE_F32, out); }
