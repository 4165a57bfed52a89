/* test_gguf_export.c -- `evobudget export --format gguf` on the demo model (and stories260K where ../shared has
 * it): a configuration mixing GGUF types and dense layers, read back by a GGUF reader written here from the
 * format's description (ggml's docs/gguf.md), independent of the writer: the header and metadata llama.cpp
 * needs, every tensor's type, shape and offset, the quantized tensors' bytes against the library quantizing the
 * dense weights again (q and k rows in llama.cpp's pair order), the dense ones' F16 values; a configuration
 * naming a type a layer's rows cannot hold, refused in one line with nothing written. Where the llama.cpp
 * judge is built (./setup.sh), llama.cpp loads each file and its perplexity on the windows `evobudget eval`
 * scored agrees with eval's within 1%. */
#define _GNU_SOURCE
#include "evobudget/evobudget.h"
#include "evobudget/evb_gguf.h"
#include "testing.h"
#include "export_reader.h"
#include "fixtures.h"

#include <unistd.h>

#include <math.h>

#ifndef EVB_LLAMA_JUDGE
#define EVB_LLAMA_JUDGE ""
#endif

// ---- the independent reader ----

typedef struct gg_tensor { char name[64]; int ndim, type; uint64_t ne[4], offset; } gg_tensor;
typedef struct gg_file {
    uint8_t *buf;
    size_t size, at, data;
    uint64_t n_tensors, n_kv;
    json_t *kv;          /* scalars and strings by key; arrays as {"n": count, "type": element type} */
    gg_tensor *t;
    int bad;
} gg_file;

static uint64_t rd(gg_file *f, int n) {
    uint64_t x = 0;
    if (f->at + (size_t)n > f->size) { f->bad = 1; return 0; }
    for (int i = 0; i < n; i++) x |= (uint64_t)f->buf[f->at + i] << (8 * i);
    f->at += (size_t)n;
    return x;
}

static json_t *rd_str(gg_file *f) {
    uint64_t n = rd(f, 8);
    if (f->bad || n > f->size - f->at) { f->bad = 1; return json_string(""); }
    json_t *s = json_stringn((const char *)f->buf + f->at, (size_t)n);
    f->at += (size_t)n;
    return s ? s : json_string("?");
}

/* One value of GGUF type t (arrays skipped over, counted). */
static json_t *rd_value(gg_file *f, uint32_t t) {
    static const int width[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (t == 8) return rd_str(f);
    if (t == 9) {
        uint32_t et = (uint32_t)rd(f, 4);
        uint64_t n = rd(f, 8);
        for (uint64_t i = 0; i < n && !f->bad; i++) json_decref(rd_value(f, et));
        return json_pack("{s:I, s:i}", "n", (json_int_t)n, "type", (int)et);
    }
    if (t > 12) { f->bad = 1; return json_null(); }
    uint64_t x = rd(f, width[t]);
    if (t == 6) { float v; uint32_t u = (uint32_t)x; memcpy(&v, &u, 4); return json_real(v); }
    if (t == 7) return json_boolean(x);
    return json_integer((json_int_t)x);
}

static int gg_load(const char *path, gg_file *f) {
    memset(f, 0, sizeof *f);
    f->buf = read_bytes(path, &f->size);
    if (!f->buf || f->size < 24 || memcmp(f->buf, "GGUF", 4)) return 0;
    f->at = 4;
    if (rd(f, 4) != 3) return 0;
    f->n_tensors = rd(f, 8);
    f->n_kv = rd(f, 8);
    if (f->n_tensors > 100000 || f->n_kv > 100000) return 0;
    f->kv = json_object();
    for (uint64_t i = 0; i < f->n_kv && !f->bad; i++) {
        json_t *k = rd_str(f);
        json_t *v = rd_value(f, (uint32_t)rd(f, 4));
        json_object_set_new(f->kv, json_string_value(k), v);
        json_decref(k);
    }
    f->t = calloc(f->n_tensors + 1, sizeof *f->t);
    for (uint64_t i = 0; i < f->n_tensors && !f->bad; i++) {
        json_t *nm = rd_str(f);
        snprintf(f->t[i].name, sizeof f->t[i].name, "%s", json_string_value(nm));
        json_decref(nm);
        f->t[i].ndim = (int)rd(f, 4);
        if (f->t[i].ndim < 1 || f->t[i].ndim > 4) { f->bad = 1; break; }
        for (int d = 0; d < f->t[i].ndim; d++) f->t[i].ne[d] = rd(f, 8);
        f->t[i].type = (int)rd(f, 4);
        f->t[i].offset = rd(f, 8);
    }
    f->data = (f->at + 31) / 32 * 32;
    return !f->bad;
}

static void gg_free(gg_file *f) { free(f->buf); free(f->t); json_decref(f->kv); memset(f, 0, sizeof *f); }

static const gg_tensor *gg_find(const gg_file *f, const char *name) {
    for (uint64_t i = 0; i < f->n_tensors; i++) if (!strcmp(f->t[i].name, name)) return &f->t[i];
    return NULL;
}

static long long kv_int(const gg_file *f, const char *k) { return json_integer_value(json_object_get(f->kv, k)); }
static const char *kv_str(const gg_file *f, const char *k) { const char *s = json_string_value(json_object_get(f->kv, k)); return s ? s : ""; }

// ---- the checks ----

static const char *const names[7] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};

/* The file's structure: metadata, every tensor's type and shape, offsets aligned and within the file. */
static void check_layout(const gg_file *f, const evb_model *m, const int *type, int dense_type) {
    const evb_config *c = &m->config;
    EVB_CHECK(!strcmp(kv_str(f, "general.architecture"), "llama") && kv_int(f, "llama.block_count") == c->n_layers &&
              kv_int(f, "llama.embedding_length") == c->dim && kv_int(f, "llama.feed_forward_length") == c->hidden_dim &&
              kv_int(f, "llama.attention.head_count") == c->n_heads && kv_int(f, "llama.attention.head_count_kv") == c->n_kv_heads &&
              kv_int(f, "llama.rope.dimension_count") == c->head_dim && kv_int(f, "llama.context_length") == c->max_seq_len,
              "llama metadata: %s, %lld blocks, dim %lld, ffn %lld, heads %lld/%lld", kv_str(f, "general.architecture"),
              kv_int(f, "llama.block_count"), kv_int(f, "llama.embedding_length"), kv_int(f, "llama.feed_forward_length"),
              kv_int(f, "llama.attention.head_count"), kv_int(f, "llama.attention.head_count_kv"));
    json_t *tok = json_object_get(f->kv, "tokenizer.ggml.tokens");
    EVB_CHECK(!strcmp(kv_str(f, "tokenizer.ggml.model"), "llama") && json_integer_value(json_object_get(tok, "n")) == c->vocab_size &&
              kv_int(f, "tokenizer.ggml.bos_token_id") == 1 && kv_int(f, "tokenizer.ggml.eos_token_id") == 2,
              "the tokenizer is embedded: model %s, %lld tokens, BOS %lld, EOS %lld", kv_str(f, "tokenizer.ggml.model"),
              (long long)json_integer_value(json_object_get(tok, "n")), kv_int(f, "tokenizer.ggml.bos_token_id"), kv_int(f, "tokenizer.ggml.eos_token_id"));
    int L = c->n_layers, bad = 0, n_expect = 2 + L * 9 + !c->tied;
    char name[64];
    for (int u = 0; u < L * 7; u++) {
        int r, cc;
        evb_model_unit_shape(m, u, &r, &cc);
        snprintf(name, sizeof name, "blk.%d.%s.weight", u / 7, names[u % 7]);
        const gg_tensor *t = gg_find(f, name);
        int want = type[u] >= 0 ? type[u] : dense_type;
        if (!t || t->type != want || t->ndim != 2 || t->ne[0] != (uint64_t)cc || t->ne[1] != (uint64_t)r) bad++;
    }
    uint64_t end = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gg_tensor *t = &f->t[i];
        size_t bytes = evb_gguf_row_bytes(t->type, (int64_t)t->ne[0]) * (t->ndim > 1 ? t->ne[1] : 1);
        if (t->offset % 32 || f->data + t->offset + bytes > f->size) bad++;
        if (t->offset + bytes > end) end = t->offset + bytes;
    }
    const gg_tensor *norm = gg_find(f, "blk.0.attn_norm.weight"), *emb = gg_find(f, "token_embd.weight");
    EVB_CHECK(!bad && f->n_tensors == (uint64_t)n_expect && norm && norm->type == EVB_GGUF_F32 && emb && emb->type == dense_type &&
              emb->ne[0] == (uint64_t)c->dim && emb->ne[1] == (uint64_t)c->vocab_size && f->data + end <= f->size && f->size - (f->data + end) < 32,
              "%llu tensors (%d expected), each of its type and shape, aligned, within the file (%d bad)", (unsigned long long)f->n_tensors, n_expect, bad);
}

/* Row r of the file is row src of the weight: llama.cpp's pair order from the checkpoint's rotate-half order. */
static int src_row(int r, int E, int permute) { int h = r / E, i = r % E; return permute ? h * E + (i % 2) * (E / 2) + i / 2 : r; }

/* The quantized tensors' bytes: the library quantizing the dense weight again, llama.cpp's rounding (the
 * levels are gguf-rtn); q and k rows in pair order. The dense ones: their float16 values. */
static void check_bytes(const gg_file *f, const evb_model *m, const int *type, int dense_type) {
    const evb_config *c = &m->config;
    int bad_q = 0, bad_d = 0, n_q = 0, n_d = 0, permute = c->rope_halves;
    char name[64];
    for (int u = 0; u < c->n_layers * 7; u++) {
        int r, cc, k = u % 7, t = type[u] >= 0 ? type[u] : dense_type;
        evb_model_unit_shape(m, u, &r, &cc);
        snprintf(name, sizeof name, "blk.%d.%s.weight", u / 7, names[k]);
        const gg_tensor *g = gg_find(f, name);
        if (!g) { bad_q++; continue; }
        size_t rb = evb_gguf_row_bytes(t, cc);
        uint8_t *row = malloc(rb);
        const float *W = m->layers[u / 7].w_dense[k];
        for (int i = 0; i < r; i++) {
            int s = src_row(i, c->head_dim, permute && (k == 0 || k == 1));
            int st = evb_gguf_quantize(t, W + (size_t)s * cc, 1, cc, row);
            if (st || memcmp(row, f->buf + f->data + g->offset + rb * (size_t)i, rb)) { type[u] >= 0 ? bad_q++ : bad_d++; break; }
        }
        free(row);
        type[u] >= 0 ? n_q++ : n_d++;
    }
    EVB_CHECK(n_q > 0 && bad_q == 0, "%d quantized tensors: every row's blocks are llama.cpp's rounding of the dense row (%d differ)", n_q, bad_q);
    EVB_CHECK(n_d > 0 && bad_d == 0, "%d dense tensors: every value the dense weight in %s (%d differ)", n_d, evb_gguf_type_get(dense_type)->name, bad_d);
    /* one value decoded by hand, outside the library: the first F16 value of the embedding, within half a unit
     * in the last place (2^-11 relative) of the dense value */
    const gg_tensor *e = gg_find(f, "token_embd.weight");
    unsigned h = e ? (unsigned)(f->buf[f->data + e->offset] | f->buf[f->data + e->offset + 1] << 8) : 0x7c00;
    int ex = (int)(h >> 10 & 31);
    double v = (h & 0x8000 ? -1 : 1) * (ex ? ldexp(1024 + (h & 1023), ex - 25) : ldexp(h & 1023, -24));
    EVB_CHECK(e && ex < 31 && fabs(v - m->tok_emb[0]) <= ldexp(fabs(m->tok_emb[0]), -11), "token_embd[0][0] is %#06x = %.8g, the dense value %.8g in float16", h, v, m->tok_emb[0]);
}

/* A configuration file with GGUF levels: unit u of types[u] (-1: dense). */
static void write_config(const char *path, const char *model, const char *db, const int *type, int U) {
    json_t *units = json_array();
    for (int u = 0; u < U; u++)
        if (type[u] >= 0)
            json_array_append_new(units, json_pack("{s:i, s:s, s:s}", "unit", u, "method", "gguf-rtn", "type", evb_gguf_type_get(type[u])->name));
    json_t *j = json_pack("{s:s, s:s, s:o}", "model", model, "db", db, "units", units);
    json_dump_file(j, path, JSON_INDENT(1));
    json_decref(j);
}

/* llama.cpp's perplexity of the file on the windows eval scored, against eval's. */
static void check_judge(const char *gguf, const char *eval_args, const char *what) {
    if (!EVB_LLAMA_JUDGE[0]) { printf("SKIP llama.cpp judge not built (./setup.sh installs it): %s not loaded by llama.cpp\n", what); return; }
    char args[2400], cmd[3000], p[600];
    json_t *e = NULL, *j = NULL;
    snprintf(args, sizeof args, "eval %s --windows-out %s/win.txt --json", eval_args, tmp);
    int rc = evb(args, &e);
    snprintf(cmd, sizeof cmd, "'%s' nll '%s' '%s/win.txt' > %s/judge.json 2> %s/judge.err", EVB_LLAMA_JUDGE, gguf, tmp, tmp, tmp);
    int rj = sh(cmd);
    snprintf(p, sizeof p, "%s/judge.json", tmp);
    j = json_load_file(p, 0, NULL);
    double a = json_real_value(json_object_get(e, "perplexity")), b = json_real_value(json_object_get(j, "ppl"));
    long ta = (long)json_integer_value(json_object_get(e, "tokens")), tb = (long)json_integer_value(json_object_get(j, "tokens"));
    EVB_CHECK(rc == 0 && rj == 0 && ta == tb && ta > 0 && fabs(a - b) <= 0.01 * a,
              "%s: llama.cpp's perplexity %.5f, evobudget's %.5f on the same %ld tokens (within 1%%)", what, b, a, ta);
    json_decref(e); json_decref(j);
}

/* llama.cpp's own quantizer as the reference of the rounding: the dense model exported in F32, quantized by
 * llama_model_quantize to one type everywhere (--pure, the embedding kept F16 as evobudget keeps it), against
 * the export of a configuration with every layer at that type's gguf-rtn level: every tensor's bytes equal. */
static void check_quantizer(const char *m_dir, const char *db, const char *dense32, int type, const char *ftype, int U) {
    const char *tn = evb_gguf_type_get(type)->name;
    if (!EVB_LLAMA_JUDGE[0]) { printf("SKIP llama.cpp judge not built: %s not compared with llama.cpp's quantizer\n", tn); return; }
    char cfg[600], ours[600], theirs[600], args[3000];
    int t[64];
    for (int u = 0; u < U; u++) t[u] = u % 7 == 6 ? -1 : type;
    snprintf(cfg, sizeof cfg, "%s/uniform_%s.json", tmp, tn);
    write_config(cfg, m_dir, db, t, U);
    snprintf(ours, sizeof ours, "%s/ours_%s.gguf", tmp, tn);
    snprintf(theirs, sizeof theirs, "%s/llama_%s.gguf", tmp, tn);
    snprintf(args, sizeof args, "export --config %s --format gguf --out %s", cfg, ours);
    int rc = evb(args, NULL);
    snprintf(args, sizeof args, "'%s' quantize '%s' '%s' %s --pure --embd-type f16 > /dev/null 2> %s/q.err", EVB_LLAMA_JUDGE, dense32, theirs, ftype, tmp);
    int rq = sh(args);
    gg_file a, b;
    int ok = rc == 0 && rq == 0 && gg_load(ours, &a) && gg_load(theirs, &b), same = 0, diff = 0, n_type = 0;
    for (uint64_t i = 0; ok && i < a.n_tensors; i++) {
        const gg_tensor *x = &a.t[i], *y = gg_find(&b, x->name);
        size_t bytes = evb_gguf_row_bytes(x->type, (int64_t)x->ne[0]) * (x->ndim > 1 ? x->ne[1] : 1);
        int eq = y && y->type == x->type && y->ne[0] == x->ne[0] && y->ne[1] == x->ne[1] &&
                 !memcmp(a.buf + a.data + x->offset, b.buf + b.data + y->offset, bytes);
        eq ? same++ : diff++;
        n_type += x->type == type;
        if (!eq) printf("  %s differs\n", x->name);
    }
    EVB_CHECK(ok && diff == 0 && n_type == U - U / 7 && same == (int)b.n_tensors,
              "%s: llama.cpp's quantizer (%s --pure) and evobudget's gguf-rtn levels give the same %d tensors, byte for byte (%d differ)",
              tn, ftype, same, diff);
    if (ok) { gg_free(&a); gg_free(&b); }
}

static void demo(void) {
    char db[600], cfg[600], out[600], args[3000], m_dir[600];
    snprintf(m_dir, sizeof m_dir, "%s/assets/demo", EVB_SOURCE_DIR);
    snprintf(db, sizeof db, "%s/db", tmp);
    snprintf(args, sizeof args, "db build --method gguf-rtn --types Q4_K,Q6_K,Q4_0,Q8_0 --calib-windows 4 --seq-len 64 --compute f32 --out %s", db);
    EVB_CHECK(evb(args, NULL) == 0, "db build --method gguf-rtn --types Q4_K,Q6_K,Q4_0,Q8_0 --compute f32 (the checkpoint's own values, as llama.cpp quantizes them)");
    evb_model *m;
    EVB_CHECK(evb_model_load(m_dir, &m) == 0, "the demo model loads");
    int U = evb_model_n_units(m), type[64];
    static const int cycle[] = {EVB_GGUF_Q4_K, EVB_GGUF_Q6_K, EVB_GGUF_Q4_0, EVB_GGUF_Q8_0, -1};
    for (int u = 0; u < U; u++) type[u] = u % 7 == 6 ? -1 : cycle[u % 5]; /* down_proj (688 inputs) holds no type */
    snprintf(cfg, sizeof cfg, "%s/cfg.json", tmp);
    write_config(cfg, m_dir, db, type, U);
    snprintf(out, sizeof out, "%s/demo.gguf", tmp);
    json_t *j = NULL;
    snprintf(args, sizeof args, "export --config %s --format gguf --out %s --json", cfg, out);
    int rc = evb(args, &j);
    json_t *types = json_object_get(j, "types");
    int n_dense = 0;
    for (int u = 0; u < U; u++) n_dense += type[u] < 0;
    EVB_CHECK(rc == 0 && json_integer_value(json_object_get(j, "layers_dense")) == n_dense &&
              json_integer_value(json_object_get(types, "Q4_K")) > 0 && json_integer_value(json_object_get(j, "file_bytes")) == file_size(tmp, "demo.gguf"),
              "export --format gguf: exit %d, %lld GGUF and %lld dense layers, %lld bytes", rc,
              (long long)json_integer_value(json_object_get(j, "layers_gguf")), (long long)json_integer_value(json_object_get(j, "layers_dense")),
              (long long)json_integer_value(json_object_get(j, "file_bytes")));
    json_decref(j);
    gg_file f;
    EVB_CHECK(gg_load(out, &f), "the file reads as GGUF version 3");
    check_layout(&f, m, type, EVB_GGUF_F16);
    check_bytes(&f, m, type, EVB_GGUF_F16);
    gg_free(&f);
    snprintf(args, sizeof args, "--config %s --data %s/assets/demo/calib.txt --max-tokens 2000", cfg, EVB_SOURCE_DIR);
    check_judge(out, args, "the demo model, GGUF types mixed");
    char dense[600], dense32[600];
    snprintf(dense, sizeof dense, "%s/dense.json", tmp);
    snprintf(dense32, sizeof dense32, "%s/dense32.gguf", tmp);
    for (int u = 0; u < U; u++) type[u] = -1;
    write_config(dense, m_dir, db, type, U);
    snprintf(args, sizeof args, "export --config %s --format gguf --dtype f32 --out %s", dense, dense32);
    EVB_CHECK(evb(args, NULL) == 0, "the dense model exported in F32");
    static const struct { int type; const char *ftype; } q[] = {{EVB_GGUF_Q4_K, "Q4_K_S"}, {EVB_GGUF_Q6_K, "Q6_K"}, {EVB_GGUF_Q4_0, "Q4_0"}, {EVB_GGUF_Q8_0, "Q8_0"}};
    for (int i = 0; i < 4; i++) check_quantizer(m_dir, db, dense32, q[i].type, q[i].ftype, U);
    for (int u = 0; u < U; u++) type[u] = u % 7 == 6 ? -1 : cycle[u % 5];

    /* refusals: nothing written, one line */
    EVB_CHECK(evb(args[0] ? "export --config CFG" : "", NULL) != 0, "a missing configuration is refused");
    type[6] = EVB_GGUF_Q4_K;
    write_config(cfg, m_dir, db, type, U);
    snprintf(args, sizeof args, "export --config %s --format gguf --out %s/bad.gguf", cfg, tmp);
    char first[400];
    rc = evb(args, NULL);
    EVB_CHECK(rc == 2 && err_lines(first, sizeof first) == 1 && strstr(first, "down_proj of block 0") && strstr(first, "Q4_K") &&
              strstr(first, "688") && file_size(tmp, "bad.gguf") < 0,
              "a type the rows cannot hold (Q4_K for 688 inputs): exit %d, one line, no file: %s", rc, first);
    snprintf(args, sizeof args, "export --config %s --format gguf --out %s", cfg, out);
    type[6] = -1;
    write_config(cfg, m_dir, db, type, U);
    long before = file_size(tmp, "demo.gguf");
    rc = evb(args, NULL);
    EVB_CHECK(rc == 2 && err_lines(first, sizeof first) == 1 && strstr(first, "--force") && file_size(tmp, "demo.gguf") == before,
              "an existing file without --force: exit %d, one line, the file as it was: %s", rc, first);
    snprintf(args, sizeof args, "export --config %s --format gguf --out %s", cfg, tmp);
    rc = evb(args, NULL);
    EVB_CHECK(rc == 2 && err_lines(first, sizeof first) == 1 && strstr(first, "directory"), "--out a directory: exit %d: %s", rc, first);
    evb_model_free(m);
}

/* stories260K (llama2.c: q/k rows already in pair order, tokenizer.bin, 64-wide rows: block-32 types only). */
static void stories(void) {
    char bin[600], tok[600], text[600], db[600], cfg[600], out[600], args[3200];
    snprintf(bin, sizeof bin, "%s/models/stories260K/stories260K.bin", EVB_SHARED_DATA);
    snprintf(tok, sizeof tok, "%s/models/stories260K/tok512.bin", EVB_SHARED_DATA);
    snprintf(text, sizeof text, "%s/text/tinystories-valid-head/tinystories_valid_head.txt", EVB_SHARED_DATA);
    if (access(bin, R_OK) || access(tok, R_OK) || access(text, R_OK)) {
        printf("SKIP %s: stories260K or its text is missing\n", bin);
        return;
    }
    snprintf(db, sizeof db, "%s/db2", tmp);
    snprintf(args, sizeof args, "db build --model %s --tokenizer %s --calib %s --method gguf-rtn --types Q4_K,Q4_0,Q5_1 --calib-windows 4 --seq-len 64 --compute f32 --out %s",
             bin, tok, text, db);
    EVB_CHECK(evb(args, NULL) == 0, "stories260K: db build (Q4_K is offered no layer: its rows are 64 and 172 wide)");
    evb_model *m;
    EVB_CHECK(evb_model_load(bin, &m) == 0, "stories260K loads");
    int U = evb_model_n_units(m), type[64];
    for (int u = 0; u < U; u++) type[u] = u % 7 == 6 ? -1 : u % 2 ? EVB_GGUF_Q4_0 : EVB_GGUF_Q5_1;
    snprintf(cfg, sizeof cfg, "%s/cfg2.json", tmp);
    write_config(cfg, bin, db, type, U);
    snprintf(out, sizeof out, "%s/stories.gguf", tmp);
    snprintf(args, sizeof args, "export --config %s --tokenizer %s --format gguf --out %s", cfg, tok, out);
    EVB_CHECK(evb(args, NULL) == 0, "stories260K: export --format gguf");
    gg_file f;
    EVB_CHECK(gg_load(out, &f), "stories260K: the file reads as GGUF version 3");
    check_layout(&f, m, type, EVB_GGUF_F16);
    check_bytes(&f, m, type, EVB_GGUF_F16);
    gg_free(&f);
    snprintf(args, sizeof args, "--model %s --tokenizer %s --config %s --data %s --max-tokens 3000", bin, tok, cfg, text);
    check_judge(out, args, "stories260K, Q4_0 and Q5_1");
    evb_model_free(m);
}

int main(void) {
    evb_init();
    char *dir = fixture_tmpdir();
    snprintf(tmp, sizeof tmp, "%s", dir);
    demo();
    stories();
    fixture_rmdir(dir);
    free(dir);
    return evb_test_summary();
}
