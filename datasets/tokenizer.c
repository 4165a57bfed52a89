/* tokenizer.c -- text to token ids and back (see include/evobudget/evb_tokenizer.h).
 *
 * Implements two on-disk formats behind one opaque evb_tokenizer:
 *   - llama2.c tokenizer.bin: int32 max_token_length, then records (float32 score, int32 len, len bytes)
 *     until end of file. Encoding reproduces llama2.c run.c encode() exactly: a dummy-prefix " " token,
 *     one token per UTF-8 codepoint (byte fallback id = byte + 3), then repeatedly the adjacent pair whose
 *     concatenation is in the vocabulary with the highest score, the leftmost on ties. BOS = 1, EOS = 2.
 *   - Hugging Face tokenizer.json with model.type "BPE", encoded and decoded as Hugging Face's tokenizers
 *     library does: SentencePiece-style (Llama-2, Gemma: normalizers, Metaspace or Split, byte_fallback) and
 *     byte-level (GPT-2, Llama-3, Qwen: Split with a regex, ByteLevel).
 *
 * Merging is one engine for both formats: a doubly linked list of symbols and a binary heap of candidate
 * pairs ordered by (priority descending, position ascending). For tokenizer.bin the priority is the
 * merged piece's score, for tokenizer.json minus the merge rank. Popping the best valid candidate is the
 * same choice as a full left-to-right scan with a strict ">" comparison, so the result is identical to
 * run.c's O(n^2) loop, which is kept below as naive_merge() and exposed as evb_tokenizer_encode_naive()
 * so that the tests can compare the two.
 *
 * Pre-tokenization follows tokenizer.json's pre_tokenizer as a list of steps, each splitting every piece the
 * previous step made: Split (a regex or a plain string, every SplitDelimiterBehavior, invert), ByteLevel
 * (prefix space, GPT-2's pattern when use_regex) and Metaspace. Regexes run in PCRE2 with PCRE2_UTF|PCRE2_UCP,
 * so \p{L}, \p{N} and \s are Unicode's (JIT-compiled where PCRE2 has a JIT); bytes that are not valid UTF-8
 * (Hugging Face's library never sees them: it takes Rust strings) become pieces of one byte each. The
 * normalizers NFC, NFD, NFKC and NFKD run in utf8proc. Added tokens (special or not) are matched in the raw
 * text, leftmost-longest, before normalisation, as Hugging Face does for tokens with "normalized": false.
 *
 * The post-processor's TemplateProcessing (or Bert/Roberta) gives the ids placed before and after the text
 * (add_bos); a ByteLevel post-processor or none adds nothing, so such a tokenizer has no BOS.
 *
 * Decoding (tokenizer.json): special added tokens are skipped (skip_special_tokens=True), then the
 * decoder's steps run over the list of pieces as Hugging Face's decoders do (Replace, ByteFallback, Fuse,
 * Strip, Metaspace, ByteLevel); invalid UTF-8 from ByteFallback or ByteLevel becomes U+FFFD as there, so the
 * output is always valid UTF-8. tokenizer.bin decodes as llama2.c does: BOS and EOS produce no text, a piece
 * that follows BOS drops one leading space, "<0xNN>" pieces become the raw byte. */
#include "evobudget/evb_tokenizer.h"
#include "datasets/naive.h"
#include "evobudget/evb_status.h"

#include <jansson.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---- types ----

enum { KIND_BIN, KIND_SPM, KIND_BYTE };
enum { PREPEND_NEVER, PREPEND_FIRST, PREPEND_ALWAYS };
enum { NORM_PREPEND, NORM_REPLACE, NORM_UNICODE };
enum { PRE_SPLIT, PRE_BYTELEVEL, PRE_METASPACE };
enum { BEH_REMOVED, BEH_ISOLATED, BEH_PREVIOUS, BEH_NEXT, BEH_CONTIGUOUS };
enum { DEC_REPLACE, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP, DEC_METASPACE, DEC_BYTELEVEL };

typedef struct {
    int32_t *slot; /* [cap] token id or -1 */
    size_t cap;    /* power of two */
} strmap;

typedef struct {
    uint64_t *key; /* [cap] (a << 32 | b) + 1, 0 = empty */
    int32_t *rank; /* [cap] merge rank (0 = highest priority) */
    int32_t *out;  /* [cap] id of the merged piece */
    size_t cap;
} pairmap;

typedef struct {
    int op;        /* NORM_* */
    char *from;    /* replace: pattern (NUL-terminated, non-empty) */
    char *to;      /* prepend: prefix; replace: content */
    int uform;     /* unicode: utf8proc options of NFC, NFD, NFKC or NFKD */
} norm_op;

typedef struct {
    int op;          /* PRE_* */
    pcre2_code *re;  /* split: the pattern (a string pattern is quoted); bytelevel with use_regex: GPT-2's */
    int behavior;    /* split: BEH_*; bytelevel: BEH_ISOLATED */
    int invert;      /* split: the pieces between matches are the delimiters */
    int prefix;      /* bytelevel: add_prefix_space; metaspace: PREPEND_* */
    int ms_split;    /* metaspace: split before each U+2581 */
} pre_step;

typedef struct {
    int op;          /* DEC_* */
    char *from, *to; /* replace: pattern and content; strip: from = the character */
    int start, stop; /* strip: at most this many leading / trailing characters */
    int prefix;      /* metaspace: prepend_scheme is not "never" */
} dec_step;

struct evb_tokenizer {
    int kind;          /* KIND_* */
    int vocab_size;    /* ids are [0, vocab_size) */
    char **piece;      /* [vocab_size] piece bytes (NUL-terminated copies; may be "" for holes) */
    int32_t *plen;     /* [vocab_size] piece length in bytes */
    float *score;      /* [vocab_size] tokenizer.bin scores (0 for tokenizer.json) */
    unsigned char *is_added; /* [vocab_size] 1 for tokenizer.json added tokens */
    unsigned char *is_special; /* [vocab_size] 1 for added tokens with "special": true */
    unsigned char *in_model;   /* [vocab_size] 1 where the piece is a model vocab entry (merges may name it) */
    strmap vocab;      /* model pieces -> id */
    pairmap merges;    /* tokenizer.json merges */
    int bos, eos, unk; /* -1 when absent */
    int byte_fallback; /* unknown characters become <0xNN> tokens */
    int fuse_unk;      /* consecutive unknown characters give one unk */
    int ignore_merges; /* a word that is itself in the vocabulary is emitted whole */
    int32_t byte_id[256]; /* <0xNN> ids, or -1 */
    /* tokenizer.json pipeline */
    norm_op *norm;     /* [n_norm] normalizer steps */
    int n_norm;
    pre_step *pre;     /* [n_pre] pre-tokenizer steps, applied in order */
    int n_pre;
    dec_step *dec;     /* [n_dec] decoder steps; none: pieces joined with " " */
    int n_dec;
    int has_decoder;
    int32_t tmpl[2][8]; /* post-processor ids before [0] and after [1] the text */
    int n_tmpl[2];
    /* byte-level tokenizer.json */
    int32_t bl_byte_id[256]; /* id of the single-character piece of each byte, or -1 */
    int16_t cp_to_byte[324]; /* inverse of GPT-2's bytes_to_unicode, -1 for none */
    /* added tokens, matched in the raw text */
    int32_t max_plen;  /* longest piece in bytes */
    int32_t *added;    /* [n_added] ids, sorted by first byte, then content length descending */
    int n_added;
    int32_t added_at[257]; /* added[added_at[b] .. added_at[b + 1]) start with byte b */
    const char *gguf_pre;  /* llama.cpp's name of the pre-tokenizer (tokenizer.ggml.pre), NULL: none it knows */
};

// ---- utilities ----

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) { h ^= (unsigned char)s[i]; h *= 1099511628211ull; }
    return h;
}

static uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33; x *= 0xff51afd7ed558ccdull; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ull; x ^= x >> 33;
    return x;
}

/* Length of the UTF-8 sequence starting with byte c, 1 for invalid lead bytes. */
static int utf8_len(unsigned char c) {
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) return 2;
    if ((c & 0xF0) == 0xE0) return 3;
    if ((c & 0xF8) == 0xF0) return 4;
    return 1;
}

/* Decodes one codepoint at s[0..n); writes its byte length to *adv. Invalid input gives one byte and
 * codepoint 0xFFFD. */
static uint32_t utf8_decode(const char *s, size_t n, int *adv) {
    const unsigned char *u = (const unsigned char *)s;
    int l = utf8_len(u[0]);
    if (l == 1 || (size_t)l > n) { *adv = 1; return u[0] < 0x80 ? u[0] : 0xFFFD; }
    uint32_t cp = u[0] & (0x7F >> l);
    for (int i = 1; i < l; i++) {
        if ((u[i] & 0xC0) != 0x80) { *adv = 1; return 0xFFFD; }
        cp = (cp << 6) | (u[i] & 0x3F);
    }
    *adv = l;
    return cp;
}

static int utf8_encode(uint32_t cp, char *out) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) { out[0] = (char)(0xC0 | (cp >> 6)); out[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12)); out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F)); return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18)); out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[3] = (char)(0x80 | (cp & 0x3F)); return 4;
}

/* Parses a byte-fallback piece "<0xNN>" (exactly six bytes, two hex digits); -1 if it is not one. */
static int parse_byte_piece(const char *p, int32_t n) {
    if (n != 6 || p[0] != '<' || p[1] != '0' || p[2] != 'x' || p[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10
              : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* A growable byte buffer. */
typedef struct { char *p; size_t n, cap; } buf;

static int buf_put(buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return EVB_ENOMEM;
        b->p = p; b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return EVB_SUCCESS;
}

/* A growable id array. */
typedef struct { int32_t *p; size_t n, cap; } ids;

static int ids_push(ids *v, int32_t x) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        int32_t *p = realloc(v->p, cap * sizeof *p);
        if (!p) return EVB_ENOMEM;
        v->p = p; v->cap = cap;
    }
    v->p[v->n++] = x;
    return EVB_SUCCESS;
}

// ---- hash tables ----

static int strmap_init(strmap *m, size_t n) {
    m->cap = 16;
    while (m->cap < 2 * n + 1) m->cap *= 2;
    m->slot = malloc(m->cap * sizeof *m->slot);
    if (!m->slot) return EVB_ENOMEM;
    for (size_t i = 0; i < m->cap; i++) m->slot[i] = -1;
    return EVB_SUCCESS;
}

static int32_t strmap_get(const strmap *m, const evb_tokenizer *t, const char *s, size_t n) {
    if (!m->slot) return -1;
    size_t i = hash_bytes(s, n) & (m->cap - 1);
    for (;;) {
        int32_t id = m->slot[i];
        if (id < 0) return -1;
        if ((size_t)t->plen[id] == n && memcmp(t->piece[id], s, n) == 0) return id;
        i = (i + 1) & (m->cap - 1);
    }
}

/* Inserts id under its piece unless the piece is already present: the lowest id wins for duplicates. */
static void strmap_put(strmap *m, const evb_tokenizer *t, int32_t id) {
    size_t i = hash_bytes(t->piece[id], (size_t)t->plen[id]) & (m->cap - 1);
    for (;;) {
        int32_t cur = m->slot[i];
        if (cur < 0) { m->slot[i] = id; return; }
        if (t->plen[cur] == t->plen[id] && memcmp(t->piece[cur], t->piece[id], (size_t)t->plen[id]) == 0)
            return;
        i = (i + 1) & (m->cap - 1);
    }
}

static int pairmap_init(pairmap *m, size_t n) {
    m->cap = 16;
    while (m->cap < 2 * n + 1) m->cap *= 2;
    m->key = calloc(m->cap, sizeof *m->key);
    m->rank = malloc(m->cap * sizeof *m->rank);
    m->out = malloc(m->cap * sizeof *m->out);
    if (!m->key || !m->rank || !m->out) return EVB_ENOMEM;
    return EVB_SUCCESS;
}

static uint64_t pair_key(int32_t a, int32_t b) { return (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1; }

/* A later merge of the same pair overwrites an earlier one, as the Hugging Face library's HashMap does. */
static void pairmap_put(pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t out) {
    uint64_t k = pair_key(a, b);
    size_t i = hash_u64(k) & (m->cap - 1);
    while (m->key[i] && m->key[i] != k) i = (i + 1) & (m->cap - 1);
    m->key[i] = k; m->rank[i] = rank; m->out[i] = out;
}

static int pairmap_get(const pairmap *m, int32_t a, int32_t b, int32_t *rank, int32_t *out) {
    if (!m->key) return 0;
    uint64_t k = pair_key(a, b);
    size_t i = hash_u64(k) & (m->cap - 1);
    while (m->key[i]) {
        if (m->key[i] == k) { *rank = m->rank[i]; *out = m->out[i]; return 1; }
        i = (i + 1) & (m->cap - 1);
    }
    return 0;
}

// ---- allocation ----

static evb_tokenizer *tok_alloc(int kind, int vocab_size) {
    evb_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->kind = kind;
    t->vocab_size = vocab_size;
    t->bos = t->eos = t->unk = -1;
    t->piece = calloc((size_t)vocab_size, sizeof *t->piece);
    t->plen = calloc((size_t)vocab_size, sizeof *t->plen);
    t->score = calloc((size_t)vocab_size, sizeof *t->score);
    t->is_added = calloc((size_t)vocab_size, 1);
    t->is_special = calloc((size_t)vocab_size, 1);
    t->in_model = calloc((size_t)vocab_size, 1);
    for (int i = 0; i < 256; i++) t->byte_id[i] = t->bl_byte_id[i] = -1;
    if (!t->piece || !t->plen || !t->score || !t->is_added || !t->is_special || !t->in_model) {
        evb_tokenizer_free(t);
        return NULL;
    }
    return t;
}

void evb_tokenizer_free(evb_tokenizer *t) {
    if (!t) return;
    if (t->piece)
        for (int i = 0; i < t->vocab_size; i++) free(t->piece[i]);
    free(t->piece); free(t->plen); free(t->score); free(t->is_added); free(t->is_special); free(t->in_model);
    free(t->vocab.slot);
    free(t->merges.key); free(t->merges.rank); free(t->merges.out);
    for (int i = 0; i < t->n_norm; i++) { free(t->norm[i].from); free(t->norm[i].to); }
    free(t->norm);
    for (int i = 0; i < t->n_pre; i++) pcre2_code_free(t->pre[i].re);
    free(t->pre);
    for (int i = 0; i < t->n_dec; i++) { free(t->dec[i].from); free(t->dec[i].to); }
    free(t->dec);
    free(t->added);
    free(t);
}

static int set_piece(evb_tokenizer *t, int id, const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (!p) return EVB_ENOMEM;
    memcpy(p, s, n);
    p[n] = '\0';
    free(t->piece[id]);
    t->piece[id] = p;
    t->plen[id] = (int32_t)n;
    return EVB_SUCCESS;
}

/* Builds the piece -> id map over every non-hole piece and the <0xNN> table. */
static int build_vocab_map(evb_tokenizer *t) {
    int st = strmap_init(&t->vocab, (size_t)t->vocab_size);
    if (st) return st;
    for (int i = 0; i < t->vocab_size; i++) {
        if (t->plen[i] > t->max_plen) t->max_plen = t->plen[i];
        if (!t->piece[i] || !t->in_model[i]) continue;
        strmap_put(&t->vocab, t, i);
        int b = parse_byte_piece(t->piece[i], t->plen[i]);
        if (b >= 0 && t->byte_id[b] < 0) t->byte_id[b] = i;
    }
    return EVB_SUCCESS;
}

// ---- loading tokenizer.bin ----

static int read_file(const char *path, char **data, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) EVB_ERRORF(EVB_EIO, "%s: cannot open: %s", path, strerror(errno));
    buf b = {0};
    char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (buf_put(&b, chunk, got)) { fclose(f); free(b.p); EVB_ERRORF(EVB_ENOMEM, "%s: out of memory", path); }
    }
    int err = ferror(f);
    fclose(f);
    if (err) { free(b.p); EVB_ERRORF(EVB_EIO, "%s: read error", path); }
    *data = b.p;
    *size = b.n;
    return EVB_SUCCESS;
}

static int32_t rd_i32(const char *p) { int32_t v; memcpy(&v, p, 4); return v; }
static float rd_f32(const char *p) { float v; memcpy(&v, p, 4); return v; }

static int load_bin(const char *path, const char *data, size_t size, evb_tokenizer **out) {
    if (size < 4) EVB_ERRORF(EVB_EFORMAT, "%s: truncated tokenizer.bin: %zu bytes, no max_token_length", path, size);
    int32_t max_len = rd_i32(data);
    if (max_len <= 0)
        EVB_ERRORF(EVB_EFORMAT, "%s: bad max_token_length %d at byte offset 0", path, (int)max_len);
    /* First pass: count and validate the records. */
    size_t off = 4;
    int n = 0;
    while (off < size) {
        if (size - off < 8)
            EVB_ERRORF(EVB_EFORMAT, "%s: truncated token record %d at byte offset %zu (%zu bytes left, need 8)",
                       path, n, off, size - off);
        int32_t len = rd_i32(data + off + 4);
        if (len < 0 || len > max_len)
            EVB_ERRORF(EVB_EFORMAT, "%s: token %d at byte offset %zu has length %d outside [0, %d]",
                       path, n, off + 4, (int)len, (int)max_len);
        if ((size_t)len > size - off - 8)
            EVB_ERRORF(EVB_EFORMAT, "%s: truncated token %d at byte offset %zu: length %d, %zu bytes left",
                       path, n, off + 8, (int)len, size - off - 8);
        off += 8 + (size_t)len;
        if (n == INT32_MAX - 1) EVB_ERRORF(EVB_EFORMAT, "%s: too many tokens", path);
        n++;
    }
    if (n == 0) EVB_ERRORF(EVB_EFORMAT, "%s: tokenizer.bin has no tokens", path);
    evb_tokenizer *t = tok_alloc(KIND_BIN, n);
    if (!t) EVB_ERRORF(EVB_ENOMEM, "%s: out of memory", path);
    off = 4;
    for (int i = 0; i < n; i++) {
        int32_t len = rd_i32(data + off + 4);
        t->score[i] = rd_f32(data + off);
        t->in_model[i] = 1;
        if (set_piece(t, i, data + off + 8, (size_t)len)) {
            evb_tokenizer_free(t);
            EVB_ERRORF(EVB_ENOMEM, "%s: out of memory", path);
        }
        off += 8 + (size_t)len;
    }
    if (build_vocab_map(t)) { evb_tokenizer_free(t); EVB_ERRORF(EVB_ENOMEM, "%s: out of memory", path); }
    t->byte_fallback = 1;
    t->unk = 0;
    t->bos = n > 1 ? 1 : -1;
    t->eos = n > 2 ? 2 : -1;
    *out = t;
    return EVB_SUCCESS;
}

// ---- loading tokenizer.json ----

static const char *jstr(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int jbool(json_t *o, const char *key, int dflt) {
    json_t *v = json_object_get(o, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static char *dupstr(const char *s) {
    size_t n = strlen(s);
    char *p = malloc(n + 1);
    if (p) memcpy(p, s, n + 1);
    return p;
}

static int add_norm(evb_tokenizer *t, const char *path, int op, const char *from, const char *to) {
    norm_op *p = realloc(t->norm, (size_t)(t->n_norm + 1) * sizeof *p);
    if (!p) EVB_ERRORF(EVB_ENOMEM, "%s: out of memory", path);
    t->norm = p;
    norm_op *o = &t->norm[t->n_norm];
    memset(o, 0, sizeof *o);
    o->op = op;
    o->from = from ? dupstr(from) : NULL;
    o->to = to ? dupstr(to) : NULL;
    t->n_norm++;
    if ((from && !o->from) || (to && !o->to)) EVB_ERRORF(EVB_ENOMEM, "%s: out of memory", path);
    return EVB_SUCCESS;
}

static int parse_normalizer(evb_tokenizer *t, const char *path, json_t *n) {
    if (!n || json_is_null(n)) return EVB_SUCCESS;
    const char *type = jstr(n, "type");
    if (!type) EVB_ERRORF(EVB_EFORMAT, "%s: normalizer without a \"type\"", path);
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(n, "normalizers");
        if (!json_is_array(arr)) EVB_ERRORF(EVB_EFORMAT, "%s: normalizer Sequence without \"normalizers\"", path);
        size_t i; json_t *e;
        json_array_foreach(arr, i, e) {
            int st = parse_normalizer(t, path, e);
            if (st) return st;
        }
        return EVB_SUCCESS;
    }
    if (!strcmp(type, "Prepend")) {
        const char *p = jstr(n, "prepend");
        if (!p) EVB_ERRORF(EVB_EFORMAT, "%s: Prepend normalizer without \"prepend\"", path);
        return add_norm(t, path, NORM_PREPEND, NULL, p);
    }
    if (!strcmp(type, "Replace")) {
        const char *from = jstr(json_object_get(n, "pattern"), "String");
        const char *to = jstr(n, "content");
        if (!from || !*from || !to)
            EVB_ERRORF(EVB_EFORMAT, "%s: Replace normalizer needs a non-empty {\"String\": ...} pattern and a "
                       "\"content\" (regex patterns are not supported)", path);
        return add_norm(t, path, NORM_REPLACE, from, to);
    }
    static const struct { const char *name; int opt; } forms[] = {
        {"NFC", UTF8PROC_COMPOSE}, {"NFD", UTF8PROC_DECOMPOSE},
        {"NFKC", UTF8PROC_COMPOSE | UTF8PROC_COMPAT}, {"NFKD", UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT}};
    for (size_t k = 0; k < sizeof forms / sizeof forms[0]; k++)
        if (!strcmp(type, forms[k].name)) {
            int st = add_norm(t, path, NORM_UNICODE, NULL, NULL);
            if (!st) t->norm[t->n_norm - 1].uform = forms[k].opt | UTF8PROC_STABLE;
            return st;
        }
    EVB_ERRORF(EVB_EFORMAT, "%s: unsupported normalizer type \"%s\" (supported: Sequence, Prepend, Replace, NFC, "
               "NFD, NFKC, NFKD)", path, type);
}

static const char PAT_GPT2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* Compiles a pre-tokenizer pattern: a regex, or a plain string matched literally. */
static int compile_pattern(const char *path, const char *pat, int literal, pcre2_code **out) {
    int err;
    PCRE2_SIZE off;
    uint32_t opt = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP); /* PCRE2 refuses UCP with LITERAL */
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, opt, &err, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(err, msg, sizeof msg);
        EVB_ERRORF(EVB_EFORMAT, "%s: Split pattern \"%.60s%s\" does not compile at offset %zu: %s", path, pat,
                   strlen(pat) > 60 ? "..." : "", (size_t)off, (const char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* where there is no JIT, the interpreter runs it */
    *out = re;
    return EVB_SUCCESS;
}

static int add_pre(evb_tokenizer *t, const char *path, pre_step s) {
    pre_step *p = realloc(t->pre, (size_t)(t->n_pre + 1) * sizeof *p);
    if (!p) { pcre2_code_free(s.re); EVB_ERRORF(EVB_ENOMEM, "%s: out of memory", path); }
    t->pre = p;
    t->pre[t->n_pre++] = s;
    return EVB_SUCCESS;
}

static int parse_pretokenizer(evb_tokenizer *t, const char *path, json_t *p, int *byte_level) {
    if (!p || json_is_null(p)) return EVB_SUCCESS;
    const char *type = jstr(p, "type");
    if (!type) EVB_ERRORF(EVB_EFORMAT, "%s: pre_tokenizer without a \"type\"", path);
    if (*byte_level) EVB_ERRORF(EVB_EFORMAT, "%s: pre_tokenizer \"%s\" after ByteLevel is not supported", path, type);
    pre_step s = {0};
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(p, "pretokenizers");
        if (!json_is_array(arr)) EVB_ERRORF(EVB_EFORMAT, "%s: pre_tokenizer Sequence without \"pretokenizers\"", path);
        size_t i; json_t *e;
        json_array_foreach(arr, i, e) {
            int st = parse_pretokenizer(t, path, e, byte_level);
            if (st) return st;
        }
        return EVB_SUCCESS;
    }
    if (!strcmp(type, "ByteLevel")) {
        *byte_level = 1;
        s.op = PRE_BYTELEVEL;
        s.prefix = jbool(p, "add_prefix_space", 1);
        s.behavior = BEH_ISOLATED;
        if (jbool(p, "use_regex", 1)) {
            int st = compile_pattern(path, PAT_GPT2, 0, &s.re);
            if (st) return st;
        }
        return add_pre(t, path, s);
    }
    if (!strcmp(type, "Split")) {
        json_t *pat = json_object_get(p, "pattern");
        const char *re = jstr(pat, "Regex"), *str = jstr(pat, "String");
        const char *beh = jstr(p, "behavior");
        if (!re && (!str || !*str))
            EVB_ERRORF(EVB_EFORMAT, "%s: Split pre-tokenizer needs a {\"Regex\": ...} or a non-empty {\"String\": ...} "
                       "pattern", path);
        static const char *behs[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
        s.op = PRE_SPLIT;
        s.behavior = -1;
        for (int k = 0; k < 5 && beh; k++)
            if (!strcmp(beh, behs[k])) s.behavior = k;
        if (s.behavior < 0)
            EVB_ERRORF(EVB_EFORMAT, "%s: Split pre-tokenizer: unknown behavior \"%s\" (Removed, Isolated, "
                       "MergedWithPrevious, MergedWithNext or Contiguous)", path, beh ? beh : "(none)");
        s.invert = jbool(p, "invert", 0);
        int st = compile_pattern(path, re ? re : str, !re, &s.re);
        /* the split patterns llama.cpp names (llama-vocab.cpp's pre-tokenizer types) */
        static const struct { const char *name, *re; } known[] = {
            {"llama-bpe", "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
            {"qwen2", "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
        };
        for (size_t k = 0; re && k < sizeof known / sizeof *known; k++)
            if (!strcmp(re, known[k].re)) t->gguf_pre = known[k].name;
        return st ? st : add_pre(t, path, s);
    }
    if (!strcmp(type, "Metaspace")) {
        const char *rep = jstr(p, "replacement");
        if (rep && strcmp(rep, "\xE2\x96\x81"))
            EVB_ERRORF(EVB_EFORMAT, "%s: Metaspace replacement other than U+2581 is not supported", path);
        s.op = PRE_METASPACE;
        const char *scheme = jstr(p, "prepend_scheme");
        if (scheme) {
            s.prefix = !strcmp(scheme, "always") ? PREPEND_ALWAYS : !strcmp(scheme, "first") ? PREPEND_FIRST
                     : PREPEND_NEVER;
            if (strcmp(scheme, "always") && strcmp(scheme, "first") && strcmp(scheme, "never"))
                EVB_ERRORF(EVB_EFORMAT, "%s: unknown Metaspace prepend_scheme \"%s\"", path, scheme);
        } else {
            s.prefix = jbool(p, "add_prefix_space", 1) ? PREPEND_ALWAYS : PREPEND_NEVER;
        }
        s.ms_split = jbool(p, "split", 1);
        return add_pre(t, path, s);
    }
    EVB_ERRORF(EVB_EFORMAT, "%s: unsupported pre_tokenizer type \"%s\" (supported: ByteLevel, Split, Metaspace, "
               "Sequence)", path, type);
}

static int add_dec(evb_tokenizer *t, const char *path, dec_step d) {
    dec_step *p = realloc(t->dec, (size_t)(t->n_dec + 1) * sizeof *p);
    if (!p) { free(d.from); free(d.to); EVB_ERRORF(EVB_ENOMEM, "%s: out of memory", path); }
    t->dec = p;
    t->dec[t->n_dec++] = d;
    return EVB_SUCCESS;
}

/* The decoder as a list of steps (Hugging Face's decoders, in order). */
static int parse_decoder(evb_tokenizer *t, const char *path, json_t *d) {
    if (!d || json_is_null(d)) return EVB_SUCCESS;
    const char *type = jstr(d, "type");
    if (!type) EVB_ERRORF(EVB_EFORMAT, "%s: decoder without a \"type\"", path);
    dec_step s = {0};
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(d, "decoders");
        if (!json_is_array(arr)) EVB_ERRORF(EVB_EFORMAT, "%s: decoder Sequence without \"decoders\"", path);
        size_t i; json_t *e;
        json_array_foreach(arr, i, e) {
            int st = parse_decoder(t, path, e);
            if (st) return st;
        }
        return EVB_SUCCESS;
    }
    if (!strcmp(type, "Replace")) {
        const char *from = jstr(json_object_get(d, "pattern"), "String"), *to = jstr(d, "content");
        if (!from || !*from || !to)
            EVB_ERRORF(EVB_EFORMAT, "%s: Replace decoder needs a non-empty {\"String\": ...} pattern and a \"content\"",
                       path);
        s.op = DEC_REPLACE;
        s.from = dupstr(from); s.to = dupstr(to);
        if (!s.from || !s.to) { free(s.from); free(s.to); EVB_ERRORF(EVB_ENOMEM, "%s: out of memory", path); }
        return add_dec(t, path, s);
    }
    if (!strcmp(type, "ByteFallback")) { s.op = DEC_BYTEFALLBACK; return add_dec(t, path, s); }
    if (!strcmp(type, "Fuse")) { s.op = DEC_FUSE; return add_dec(t, path, s); }
    if (!strcmp(type, "ByteLevel")) { s.op = DEC_BYTELEVEL; return add_dec(t, path, s); }
    if (!strcmp(type, "Strip")) {
        const char *c = jstr(d, "content");
        json_int_t a = json_integer_value(json_object_get(d, "start")), b = json_integer_value(json_object_get(d, "stop"));
        if (!c || !*c || a < 0 || b < 0 || a > 1024 || b > 1024)
            EVB_ERRORF(EVB_EFORMAT, "%s: Strip decoder needs a \"content\" character and \"start\"/\"stop\" in [0, 1024]",
                       path);
        s.op = DEC_STRIP;
        s.from = dupstr(c);
        s.start = (int)a; s.stop = (int)b;
        if (!s.from) EVB_ERRORF(EVB_ENOMEM, "%s: out of memory", path);
        return add_dec(t, path, s);
    }
    if (!strcmp(type, "Metaspace")) {
        const char *rep = jstr(d, "replacement");
        if (rep && strcmp(rep, "\xE2\x96\x81"))
            EVB_ERRORF(EVB_EFORMAT, "%s: Metaspace replacement other than U+2581 is not supported", path);
        const char *scheme = jstr(d, "prepend_scheme");
        s.op = DEC_METASPACE;
        s.prefix = scheme ? strcmp(scheme, "never") != 0 : jbool(d, "add_prefix_space", 1);
        return add_dec(t, path, s);
    }
    EVB_ERRORF(EVB_EFORMAT, "%s: unsupported decoder type \"%s\" (supported: Sequence, Replace, ByteFallback, Fuse, "
               "Strip, Metaspace, ByteLevel)", path, type);
}

/* The ids of one special token of a TemplateProcessing ("special_tokens" -> name -> "ids"). */
static int template_add(evb_tokenizer *t, const char *path, json_t *pp, const char *name, int side) {
    json_t *sids = json_object_get(json_object_get(json_object_get(pp, "special_tokens"), name), "ids");
    if (!json_is_array(sids) || json_array_size(sids) == 0)
        EVB_ERRORF(EVB_EFORMAT, "%s: post_processor names the special token \"%.40s\" without \"ids\"", path, name);
    size_t i; json_t *e;
    json_array_foreach(sids, i, e) {
        json_int_t id = json_integer_value(e);
        if (!json_is_integer(e) || id < 0 || id >= t->vocab_size)
            EVB_ERRORF(EVB_EFORMAT, "%s: post_processor special token \"%.40s\" has an id outside the vocabulary [0, %d)",
                       path, name, t->vocab_size);
        if (t->n_tmpl[side] == 8)
            EVB_ERRORF(EVB_EFORMAT, "%s: post_processor adds more than 8 tokens on one side", path);
        t->tmpl[side][t->n_tmpl[side]++] = (int32_t)id;
    }
    return EVB_SUCCESS;
}

/* The ids the post-processor puts before and after a single sequence (HF's add_special_tokens). */
static int parse_postprocessor(evb_tokenizer *t, const char *path, json_t *pp) {
    if (!pp || json_is_null(pp)) return EVB_SUCCESS;
    const char *type = jstr(pp, "type");
    if (!type) EVB_ERRORF(EVB_EFORMAT, "%s: post_processor without a \"type\"", path);
    if (!strcmp(type, "Sequence")) {
        size_t i; json_t *e;
        json_array_foreach(json_object_get(pp, "processors"), i, e) {
            int st = parse_postprocessor(t, path, e);
            if (st) return st;
        }
        return EVB_SUCCESS;
    }
    if (!strcmp(type, "ByteLevel")) return EVB_SUCCESS; /* offsets only */
    if (!strcmp(type, "TemplateProcessing")) {
        json_t *single = json_object_get(pp, "single");
        if (!json_is_array(single))
            EVB_ERRORF(EVB_EFORMAT, "%s: TemplateProcessing without a \"single\" template", path);
        int side = 0;
        size_t i; json_t *e;
        json_array_foreach(single, i, e) {
            if (json_object_get(e, "Sequence")) { side = 1; continue; }
            const char *name = jstr(json_object_get(e, "SpecialToken"), "id");
            if (!name) EVB_ERRORF(EVB_EFORMAT, "%s: TemplateProcessing single[%zu] is neither Sequence nor SpecialToken",
                                  path, i);
            int st = template_add(t, path, pp, name, side);
            if (st) return st;
        }
        return EVB_SUCCESS;
    }
    if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing")) {
        json_t *cls = json_object_get(pp, "cls"), *sep = json_object_get(pp, "sep");
        json_int_t c = json_integer_value(json_array_get(cls, 1)), s = json_integer_value(json_array_get(sep, 1));
        if (!json_is_integer(json_array_get(cls, 1)) || !json_is_integer(json_array_get(sep, 1)) || c < 0 || s < 0 ||
            c >= t->vocab_size || s >= t->vocab_size)
            EVB_ERRORF(EVB_EFORMAT, "%s: %s needs \"cls\" and \"sep\" as [token, id] inside the vocabulary", path, type);
        t->tmpl[0][t->n_tmpl[0]++] = (int32_t)c;
        t->tmpl[1][t->n_tmpl[1]++] = (int32_t)s;
        return EVB_SUCCESS;
    }
    EVB_ERRORF(EVB_EFORMAT, "%s: unsupported post_processor type \"%s\" (supported: TemplateProcessing, ByteLevel, "
               "BertProcessing, RobertaProcessing, Sequence)", path, type);
}

static int find_piece_any(const evb_tokenizer *t, const char *s) {
    size_t n = strlen(s);
    for (int i = 0; i < t->n_added; i++)
        if ((size_t)t->plen[t->added[i]] == n && !memcmp(t->piece[t->added[i]], s, n)) return t->added[i];
    return strmap_get(&t->vocab, t, s, n);
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the others to 256 + k in order. */
static uint32_t gpt2_byte_cp(int b) {
    int k = 0;
    for (int x = 0; x < 256; x++) {
        int printable = (x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF);
        if (x == b) return printable ? (uint32_t)x : (uint32_t)(256 + k);
        if (!printable) k++;
    }
    return 0;
}

typedef struct { int32_t id, len; unsigned char first; } added_key;

/* First byte ascending, then length descending, then id: within one first byte the first match is the
 * longest, as leftmost-longest matching wants. */
static int added_cmp(const void *pa, const void *pb) {
    const added_key *a = pa, *b = pb;
    if (a->first != b->first) return a->first < b->first ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

/* Sorts the added tokens by first byte and length and indexes them by first byte (added_at). */
static int sort_added(evb_tokenizer *t) {
    added_key *k = malloc(((size_t)t->n_added + 1) * sizeof *k);
    if (!k) return EVB_ENOMEM;
    for (int i = 0; i < t->n_added; i++) {
        int32_t id = t->added[i];
        k[i] = (added_key){id, t->plen[id], (unsigned char)t->piece[id][0]};
    }
    qsort(k, (size_t)t->n_added, sizeof *k, added_cmp);
    int j = 0;
    for (int b = 0; b < 256; b++) {
        t->added_at[b] = j;
        while (j < t->n_added && k[j].first == b) j++;
    }
    t->added_at[256] = t->n_added;
    for (int i = 0; i < t->n_added; i++) t->added[i] = k[i].id;
    free(k);
    return EVB_SUCCESS;
}

static int load_json_doc(const char *path, json_t *root, evb_tokenizer **out) {
    json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) EVB_ERRORF(EVB_EFORMAT, "%s: tokenizer.json has no \"model\" object", path);
    const char *mtype = jstr(model, "type");
    json_t *vocab = json_object_get(model, "vocab");
    if (!mtype && json_is_object(vocab) && json_is_array(json_object_get(model, "merges"))) mtype = "BPE";
    if (!mtype) EVB_ERRORF(EVB_EFORMAT, "%s: model has no \"type\"", path);
    if (strcmp(mtype, "BPE"))
        EVB_ERRORF(EVB_EFORMAT, "%s: unsupported model type \"%s\" (only BPE is supported)", path, mtype);
    if (!json_is_object(vocab)) EVB_ERRORF(EVB_EFORMAT, "%s: BPE model has no \"vocab\" object", path);
    json_t *merges = json_object_get(model, "merges");
    if (merges && !json_is_array(merges)) EVB_ERRORF(EVB_EFORMAT, "%s: model \"merges\" is not an array", path);
    json_t *drop = json_object_get(model, "dropout");
    if (json_is_number(drop) && json_number_value(drop) > 0)
        EVB_ERRORF(EVB_EFORMAT, "%s: BPE dropout %g is not supported (it makes encoding random)", path,
                   json_number_value(drop));
    const char *csp = jstr(model, "continuing_subword_prefix"), *eow = jstr(model, "end_of_word_suffix");
    if ((csp && *csp) || (eow && *eow))
        EVB_ERRORF(EVB_EFORMAT, "%s: continuing_subword_prefix / end_of_word_suffix are not supported", path);
    json_t *added = json_object_get(root, "added_tokens");
    if (added && !json_is_array(added)) EVB_ERRORF(EVB_EFORMAT, "%s: \"added_tokens\" is not an array", path);

    /* The vocabulary size covers the model vocab and the added tokens. */
    json_int_t max_id = -1;
    const char *key; json_t *val; size_t i; json_t *e;
    json_object_foreach(vocab, key, val) {
        json_int_t id = json_integer_value(val);
        if (!json_is_integer(val) || id < 0 || id >= INT32_MAX / 2)
            EVB_ERRORF(EVB_EFORMAT, "%s: vocab entry \"%.40s\" has an invalid id", path, key);
        if (id > max_id) max_id = id;
    }
    json_array_foreach(added, i, e) {
        json_t *idv = json_object_get(e, "id");
        json_int_t id = json_integer_value(idv);
        if (!json_is_integer(idv) || id < 0 || id >= INT32_MAX / 2 || !jstr(e, "content"))
            EVB_ERRORF(EVB_EFORMAT, "%s: added_tokens[%zu] needs an integer \"id\" and a \"content\"", path, i);
        if (id > max_id) max_id = id;
    }
    if (max_id < 0) EVB_ERRORF(EVB_EFORMAT, "%s: the BPE vocab is empty", path);
    /* Real vocabularies number their pieces densely. Bounding the largest id by the entry count keeps a
     * small file from asking for gigabytes (a fuzz finding, tests/fuzz/regress/tokenizer_json-*). */
    size_t n_entries = json_object_size(vocab) + json_array_size(added);
    if (max_id >= (json_int_t)1 << 22 || (size_t)max_id >= 2 * n_entries + 1024)
        EVB_ERRORF(EVB_EFORMAT, "%s: token id %lld is far beyond the %zu vocabulary entries; ids must be dense and below 4194304",
                   path, (long long)max_id, n_entries);

    evb_tokenizer *t = tok_alloc(KIND_SPM, (int)max_id + 1);
    if (!t) EVB_ERRORF(EVB_ENOMEM, "%s: out of memory", path);
    int st = EVB_SUCCESS;
#define FAIL(...) do { st = EVB_RAISEF(__VA_ARGS__); goto fail; } while (0)
    json_object_foreach(vocab, key, val) {
        int id = (int)json_integer_value(val);
        if (t->piece[id]) FAIL(EVB_EFORMAT, "%s: vocab id %d is used twice (\"%.40s\")", path, id, key);
        if (set_piece(t, id, key, strlen(key))) FAIL(EVB_ENOMEM, "%s: out of memory", path);
        t->in_model[id] = 1;
    }
    t->added = malloc((json_array_size(added) + 1) * sizeof *t->added);
    if (!t->added) FAIL(EVB_ENOMEM, "%s: out of memory", path);
    json_array_foreach(added, i, e) {
        int id = (int)json_integer_value(json_object_get(e, "id"));
        const char *c = jstr(e, "content");
        if (!*c) FAIL(EVB_EFORMAT, "%s: added_tokens[%zu] has empty content", path, i);
        if (t->is_added[id]) continue;
        if (!t->piece[id] || strcmp(t->piece[id], c)) {
            /* An added token whose content differs from the model's piece of the same id replaces it. */
            if (set_piece(t, id, c, strlen(c))) FAIL(EVB_ENOMEM, "%s: out of memory", path);
            t->in_model[id] = 0;
        }
        t->is_added[id] = 1;
        t->is_special[id] = jbool(e, "special", 0);
        t->added[t->n_added++] = id;
    }
    for (int k = 0; k < t->vocab_size; k++)
        if (!t->piece[k] && set_piece(t, k, "", 0)) FAIL(EVB_ENOMEM, "%s: out of memory", path);
    if (build_vocab_map(t) || sort_added(t)) FAIL(EVB_ENOMEM, "%s: out of memory", path);

    /* Merges: "a b" strings or [a, b] arrays; the earlier, the higher the priority. */
    size_t n_merges = json_array_size(merges);
    if (n_merges > (size_t)INT32_MAX / 4) FAIL(EVB_EFORMAT, "%s: too many merges", path);
    if (pairmap_init(&t->merges, n_merges)) FAIL(EVB_ENOMEM, "%s: out of memory", path);
    buf cat = {0};
    json_array_foreach(merges, i, e) {
        const char *a, *b;
        size_t la, lb;
        const char *sp = NULL;
        if (json_is_string(e)) {
            a = json_string_value(e);
            sp = strchr(a, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                free(cat.p);
                FAIL(EVB_EFORMAT, "%s: merges[%zu] \"%.40s\" is not two pieces separated by one space", path, i, a);
            }
            la = (size_t)(sp - a); b = sp + 1; lb = strlen(b);
        } else if (json_is_array(e) && json_array_size(e) == 2 && json_is_string(json_array_get(e, 0)) &&
                   json_is_string(json_array_get(e, 1))) {
            a = json_string_value(json_array_get(e, 0)); la = strlen(a);
            b = json_string_value(json_array_get(e, 1)); lb = strlen(b);
        } else {
            free(cat.p);
            FAIL(EVB_EFORMAT, "%s: merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]", path, i);
        }
        int32_t ia = strmap_get(&t->vocab, t, a, la), ib = strmap_get(&t->vocab, t, b, lb);
        cat.n = 0;
        if (buf_put(&cat, a, la) || buf_put(&cat, b, lb)) { free(cat.p); FAIL(EVB_ENOMEM, "%s: out of memory", path); }
        int32_t io = strmap_get(&t->vocab, t, cat.p, cat.n);
        if (ia < 0 || ib < 0 || io < 0) {
            const char *which = ia < 0 ? "left" : ib < 0 ? "right" : "merged";
            int w = (int)(ia < 0 ? la : ib < 0 ? lb : cat.n);
            const char *ws = ia < 0 ? a : ib < 0 ? b : cat.p;
            st = EVB_RAISEF(EVB_EFORMAT, "%s: merges[%zu] names the unknown %s piece \"%.*s\"", path, i, which,
                            w > 60 ? 60 : w, ws);
            free(cat.p);
            goto fail;
        }
        pairmap_put(&t->merges, ia, ib, (int32_t)i, io);
    }
    free(cat.p);

    t->byte_fallback = jbool(model, "byte_fallback", 0);
    t->fuse_unk = jbool(model, "fuse_unk", 0);
    t->ignore_merges = jbool(model, "ignore_merges", 0);
    const char *unk = jstr(model, "unk_token");
    if (unk) {
        t->unk = find_piece_any(t, unk);
        if (t->unk < 0) FAIL(EVB_EFORMAT, "%s: unk_token \"%.40s\" is not in the vocabulary", path, unk);
    }

    if ((st = parse_normalizer(t, path, json_object_get(root, "normalizer")))) goto fail;
    int byte_level = 0;
    if ((st = parse_pretokenizer(t, path, json_object_get(root, "pre_tokenizer"), &byte_level))) goto fail;
    json_t *dec = json_object_get(root, "decoder");
    t->has_decoder = dec && !json_is_null(dec);
    if ((st = parse_decoder(t, path, dec))) goto fail;
    if ((st = parse_postprocessor(t, path, json_object_get(root, "post_processor")))) goto fail;
    if (byte_level) {
        t->kind = KIND_BYTE;
        for (int k = 0; k < 324; k++) t->cp_to_byte[k] = -1;
        for (int b = 0; b < 256; b++) {
            char s[4];
            uint32_t cp = gpt2_byte_cp(b);
            t->cp_to_byte[cp] = (int16_t)b;
            int32_t id = strmap_get(&t->vocab, t, s, (size_t)utf8_encode(cp, s));
            t->bl_byte_id[b] = id >= 0 ? id : t->unk;
        }
    }

    /* BOS: the first token the post-processor puts before the text (none: no BOS); EOS by its usual names. */
    t->bos = t->n_tmpl[0] ? t->tmpl[0][0] : -1;
    static const char *eos_names[] = {"</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>"};
    t->eos = -1;
    for (size_t k = 0; k < sizeof eos_names / sizeof eos_names[0] && t->eos < 0; k++)
        t->eos = find_piece_any(t, eos_names[k]);
#undef FAIL
    *out = t;
    return EVB_SUCCESS;
fail:
    evb_tokenizer_free(t);
    return st;
}

static int load_json(const char *path, evb_tokenizer **out) {
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root)
        EVB_ERRORF(EVB_EFORMAT, "%s:%d:%d: JSON syntax error: %s", path, jerr.line, jerr.column, jerr.text);
    int st = json_is_object(root) ? load_json_doc(path, root, out)
                                  : EVB_RAISEF(EVB_EFORMAT, "%s: the top level of tokenizer.json is not an object", path);
    json_decref(root);
    return st;
}

int evb_tokenizer_load(const char *path, evb_tokenizer **out) {
    if (!out) EVB_ERRORF(EVB_EINVAL, "evb_tokenizer_load: out is NULL");
    *out = NULL;
    if (!path) EVB_ERRORF(EVB_EINVAL, "evb_tokenizer_load: path is NULL");
    char *data;
    size_t size;
    int st = read_file(path, &data, &size);
    if (st) return st;
    size_t k = 0;
    while (k < size && (data[k] == ' ' || data[k] == '\t' || data[k] == '\n' || data[k] == '\r')) k++;
    if (k < size && data[k] == '{') {
        free(data);
        return load_json(path, out);
    }
    st = load_bin(path, data, size, out);
    free(data);
    return st;
}

int evb_tokenizer_vocab_size(const evb_tokenizer *t) { return t ? t->vocab_size : 0; }
int evb_tokenizer_bos(const evb_tokenizer *t) { return t ? t->bos : -1; }
int evb_tokenizer_eos(const evb_tokenizer *t) { return t ? t->eos : -1; }

// ---- merging ----

/* The priority of merging the adjacent symbols a, b (higher is merged first): tokenizer.bin uses the
 * merged piece's score and, like run.c's best_score = -1e10 with a strict ">", never merges a pair whose
 * score is not above -1e10; tokenizer.json uses minus the merge rank. Returns 0 when the pair does not
 * merge. scratch holds at least 2 * (longest piece) + 1 bytes. */
static int pair_priority(const evb_tokenizer *t, int32_t a, int32_t b, char *scratch, double *pri, int32_t *out) {
    if (t->kind == KIND_BIN) {
        size_t la = (size_t)t->plen[a], lb = (size_t)t->plen[b];
        memcpy(scratch, t->piece[a], la);
        memcpy(scratch + la, t->piece[b], lb);
        int32_t id = strmap_get(&t->vocab, t, scratch, la + lb);
        if (id < 0 || !(t->score[id] > -1e10f)) return 0;
        *pri = t->score[id];
        *out = id;
        return 1;
    }
    int32_t rank;
    if (!pairmap_get(&t->merges, a, b, &rank, out)) return 0;
    *pri = -(double)rank;
    return 1;
}

/* run.c's loop: scan every adjacent pair, merge the best (leftmost on ties), repeat. O(n^2). */
static void naive_merge(const evb_tokenizer *t, int32_t *tok, size_t *n, char *scratch) {
    for (;;) {
        double best = -INFINITY;
        int32_t best_id = -1;
        size_t best_idx = (size_t)-1;
        for (size_t i = 0; i + 1 < *n; i++) {
            double pri;
            int32_t id;
            if (pair_priority(t, tok[i], tok[i + 1], scratch, &pri, &id) && pri > best) {
                best = pri; best_id = id; best_idx = i;
            }
        }
        if (best_idx == (size_t)-1) break;
        tok[best_idx] = best_id;
        memmove(tok + best_idx + 1, tok + best_idx + 2, (*n - best_idx - 2) * sizeof *tok);
        (*n)--;
    }
}

typedef struct {
    double pri;
    int32_t pos, left, right, out;
} cand;

typedef struct { cand *p; size_t n, cap; } heap;

/* a before b: higher priority, then the leftmost position. */
static int cand_before(const cand *a, const cand *b) {
    return a->pri > b->pri || (a->pri == b->pri && a->pos < b->pos);
}

static int heap_push(heap *h, cand c) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 64;
        cand *p = realloc(h->p, cap * sizeof *p);
        if (!p) return EVB_ENOMEM;
        h->p = p; h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!cand_before(&c, &h->p[up])) break;
        h->p[i] = h->p[up];
        i = up;
    }
    h->p[i] = c;
    return EVB_SUCCESS;
}

static cand heap_pop(heap *h) {
    cand top = h->p[0], last = h->p[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const cand *best = &last;
        if (l < h->n && cand_before(&h->p[l], best)) { m = l; best = &h->p[l]; }
        if (r < h->n && cand_before(&h->p[r], best)) { m = r; }
        if (m == i) break;
        h->p[i] = h->p[m];
        i = m;
    }
    if (h->n) h->p[i] = last;
    return top;
}

static int push_pair(const evb_tokenizer *t, heap *h, const int32_t *tok, int32_t pos, int32_t next, char *scratch) {
    double pri;
    int32_t out;
    if (pos < 0 || next < 0 || !pair_priority(t, tok[pos], tok[next], scratch, &pri, &out)) return EVB_SUCCESS;
    cand c = {pri, pos, tok[pos], tok[next], out};
    return heap_push(h, c);
}

/* The same merges as naive_merge in O(n log n): symbols in a linked list, candidates in a heap. A popped
 * candidate is stale when either symbol has changed; merged pieces are strictly longer than their parts,
 * so a changed symbol never returns to its old id. Positions keep their order, so "leftmost" is "smallest
 * pos". On success *n is the merged length and tok[0..*n) the result. */
static int fast_merge(const evb_tokenizer *t, int32_t *tok, size_t *n, char *scratch) {
    size_t len = *n;
    if (len < 2) return EVB_SUCCESS;
    int32_t *next = malloc(len * sizeof *next), *prev = malloc(len * sizeof *prev);
    heap h = {0};
    int st = EVB_SUCCESS;
    if (!next || !prev) { st = EVB_ENOMEM; goto done; }
    for (size_t i = 0; i < len; i++) {
        next[i] = i + 1 < len ? (int32_t)(i + 1) : -1;
        prev[i] = (int32_t)i - 1;
    }
    for (size_t i = 0; i + 1 < len && !st; i++) st = push_pair(t, &h, tok, (int32_t)i, (int32_t)i + 1, scratch);
    while (!st && h.n) {
        cand c = heap_pop(&h);
        int32_t r = next[c.pos];
        if (tok[c.pos] != c.left || r < 0 || tok[r] != c.right) continue;
        tok[c.pos] = c.out;
        tok[r] = -1;
        next[c.pos] = next[r];
        if (next[r] >= 0) prev[next[r]] = c.pos;
        st = push_pair(t, &h, tok, prev[c.pos], c.pos, scratch);
        if (!st) st = push_pair(t, &h, tok, c.pos, next[c.pos], scratch);
    }
    if (!st) {
        size_t k = 0;
        for (int32_t i = 0; i >= 0; i = next[i]) tok[k++] = tok[i];
        *n = k;
    }
done:
    free(next); free(prev); free(h.p);
    return st;
}

// ---- UTF-8 validity ----

/* Length of the valid UTF-8 sequence at s[0..n) (1-4), or 0 when it is not one (overlong forms,
 * surrogates and codepoints above U+10FFFF are invalid, as in Rust's str). */
static int utf8_valid_len(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    int l;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) l = 2;
    else if (c >= 0xE0 && c <= 0xEF) { l = 3; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
    else if (c >= 0xF0 && c <= 0xF4) { l = 4; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
    else return 0;
    if ((size_t)l > n) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (int i = 2; i < l; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    return l;
}

/* The length of the maximal prefix of a valid sequence at s (at least 1): the bytes one U+FFFD replaces in
 * Rust's String::from_utf8_lossy and in WHATWG decoders. */
static size_t utf8_invalid_len(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    unsigned char lo = 0x80, hi = 0xBF;
    int l;
    if (c >= 0xC2 && c <= 0xDF) l = 2;
    else if (c >= 0xE0 && c <= 0xEF) { l = 3; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
    else if (c >= 0xF0 && c <= 0xF4) { l = 4; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
    else return 1;
    size_t k = 1;
    if (k < n && s[k] >= lo && s[k] <= hi) {
        k++;
        while (k < (size_t)l && k < n && (s[k] & 0xC0) == 0x80) k++;
    }
    return k;
}

/* The end of the valid UTF-8 run starting at i. */
static size_t utf8_valid_end(const char *s, size_t n, size_t i) {
    while (i < n) {
        if ((unsigned char)s[i] < 0x80) { i++; continue; }
        int l = utf8_valid_len((const unsigned char *)s + i, n - i);
        if (!l) break;
        i += (size_t)l;
    }
    return i;
}

/* Appends s[0..n) to b with every invalid sequence replaced by U+FFFD. */
static int buf_put_lossy(buf *b, const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t e = utf8_valid_end(s, n, i);
        if (e > i && buf_put(b, s + i, e - i)) return EVB_ENOMEM;
        if (e == n) break;
        if (buf_put(b, "\xEF\xBF\xBD", 3)) return EVB_ENOMEM;
        i = e + utf8_invalid_len((const unsigned char *)s + e, n - e);
    }
    return EVB_SUCCESS;
}

// ---- encoding ----

typedef struct { size_t a, b; int match; } piece_span;
typedef struct { piece_span *p; size_t n, cap; } span_list;

typedef struct {
    const evb_tokenizer *t;
    ids *out;
    ids sym;       /* symbols of the current word */
    buf norm;      /* the normalised segment */
    buf tmp;       /* scratch of the normalizers */
    buf word;      /* a byte-level word as GPT-2 characters */
    char *scratch; /* [2 * longest piece + 8] */
    int naive;     /* use naive_merge */
    span_list *lv; /* [n_pre] the pieces of each pre-tokenizer step */
    pcre2_match_data *md;
} enc;

/* Appends the symbols of one character (its piece, or its bytes, or unk). */
static int push_char(enc *e, const char *s, size_t n, int *prev_unk) {
    const evb_tokenizer *t = e->t;
    int32_t id = strmap_get(&t->vocab, t, s, n);
    if (id >= 0) { *prev_unk = 0; return ids_push(&e->sym, id); }
    if (t->byte_fallback) {
        size_t k;
        for (k = 0; k < n && t->byte_id[(unsigned char)s[k]] >= 0; k++) {}
        if (k == n) {
            for (k = 0; k < n; k++)
                if (ids_push(&e->sym, t->byte_id[(unsigned char)s[k]])) return EVB_ENOMEM;
            *prev_unk = 0;
            return EVB_SUCCESS;
        }
    }
    if (t->unk < 0) return EVB_SUCCESS; /* dropped, as the Hugging Face library does without an unk */
    if (t->fuse_unk && *prev_unk) return EVB_SUCCESS;
    *prev_unk = 1;
    return ids_push(&e->sym, t->unk);
}

static int merge_and_emit(enc *e) {
    size_t n = e->sym.n;
    int st = EVB_SUCCESS;
    if (e->naive) naive_merge(e->t, e->sym.p, &n, e->scratch);
    else st = fast_merge(e->t, e->sym.p, &n, e->scratch);
    for (size_t i = 0; i < n && !st; i++) st = ids_push(e->out, e->sym.p[i]);
    e->sym.n = 0;
    return st;
}

/* BPE over one pre-tokenized word of a tokenizer.json model (characters are UTF-8 codepoints). */
static int encode_word(enc *e, const char *s, size_t n) {
    const evb_tokenizer *t = e->t;
    if (n == 0) return EVB_SUCCESS;
    if (t->ignore_merges) {
        int32_t id = strmap_get(&t->vocab, t, s, n);
        if (id >= 0) return ids_push(e->out, id);
    }
    e->sym.n = 0;
    int prev_unk = 0, st = EVB_SUCCESS;
    for (size_t i = 0; i < n && !st;) {
        int adv;
        utf8_decode(s + i, n - i, &adv);
        st = push_char(e, s + i, (size_t)adv, &prev_unk);
        i += (size_t)adv;
    }
    return st ? st : merge_and_emit(e);
}

/* The llama2.c run.c pipeline over the whole text (BOS, if any, is already in e->out and takes part in
 * merging as in run.c). */
static int encode_bin(enc *e, const char *text, size_t len) {
    const evb_tokenizer *t = e->t;
    e->sym.n = 0;
    int st = EVB_SUCCESS;
    /* The BOS that run.c keeps in its merge buffer. */
    if (e->out->n) { st = ids_push(&e->sym, e->out->p[0]); e->out->n = 0; }
    if (!st && len > 0) {
        int32_t dummy = strmap_get(&t->vocab, t, " ", 1);
        if (dummy < 0) dummy = t->vocab_size > ' ' + 3 ? ' ' + 3 : -1;
        if (dummy >= 0) st = ids_push(&e->sym, dummy);
    }
    size_t i = 0;
    while (!st && i < len) {
        /* A lead byte and at most three continuation bytes form one lookup, as in run.c. */
        size_t j = i + 1;
        while (j < len && ((unsigned char)text[j] & 0xC0) == 0x80 && j - i < 4) j++;
        int32_t id = strmap_get(&t->vocab, t, text + i, j - i);
        if (id >= 0) st = ids_push(&e->sym, id);
        else
            for (size_t k = i; k < j && !st; k++) {
                int32_t b = (int32_t)(unsigned char)text[k] + 3;
                if (b >= t->vocab_size) return EVB_RAISEF(EVB_ERANGE, "byte fallback id %d outside a vocabulary "
                                                          "of %d", (int)b, t->vocab_size);
                st = ids_push(&e->sym, b);
            }
        i = j;
    }
    return st ? st : merge_and_emit(e);
}

/* Unicode normalisation of s[0..n) appended to out; invalid UTF-8 bytes are copied unchanged. */
static int unicode_norm(int opt, const char *s, size_t n, buf *out) {
    size_t i = 0;
    while (i < n) {
        size_t e = utf8_valid_end(s, n, i);
        if (e > i) {
            utf8proc_uint8_t *dst = NULL;
            utf8proc_ssize_t m = utf8proc_map((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(e - i), &dst,
                                              (utf8proc_option_t)opt);
            if (m < 0) { free(dst); return m == UTF8PROC_ERROR_NOMEM ? EVB_ENOMEM : EVB_EFORMAT; }
            int st = buf_put(out, (const char *)dst, (size_t)m);
            free(dst);
            if (st) return st;
        }
        if (e == n) break;
        if (buf_put(out, s + e, 1)) return EVB_ENOMEM;
        i = e + 1;
    }
    return EVB_SUCCESS;
}

static int apply_norm(const evb_tokenizer *t, const char *s, size_t n, buf *out, buf *tmp) {
    out->n = 0;
    if (buf_put(out, s, n)) return EVB_ENOMEM;
    for (int k = 0; k < t->n_norm; k++) {
        const norm_op *o = &t->norm[k];
        tmp->n = 0;
        if (o->op == NORM_PREPEND) {
            if (out->n == 0) continue;
            if (buf_put(tmp, o->to, strlen(o->to)) || buf_put(tmp, out->p, out->n)) return EVB_ENOMEM;
        } else if (o->op == NORM_UNICODE) {
            int st = unicode_norm(o->uform, out->p, out->n, tmp);
            if (st) return st;
        } else {
            size_t fl = strlen(o->from), tl = strlen(o->to);
            for (size_t i = 0; i < out->n;) {
                if (i + fl <= out->n && !memcmp(out->p + i, o->from, fl)) {
                    if (buf_put(tmp, o->to, tl)) return EVB_ENOMEM;
                    i += fl;
                } else {
                    if (buf_put(tmp, out->p + i, 1)) return EVB_ENOMEM;
                    i++;
                }
            }
        }
        buf sw = *out; *out = *tmp; *tmp = sw;
        if (!out->p && buf_put(out, "", 0)) return EVB_ENOMEM;
    }
    if (!out->p && buf_put(out, "", 0)) return EVB_ENOMEM;
    return EVB_SUCCESS;
}

#define META "\xE2\x96\x81"

static int span_push(span_list *l, size_t a, size_t b, int match) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        piece_span *p = realloc(l->p, cap * sizeof *p);
        if (!p) return EVB_ENOMEM;
        l->p = p; l->cap = cap;
    }
    l->p[l->n++] = (piece_span){a, b, match};
    return EVB_SUCCESS;
}

/* BPE over one final piece: byte-level pieces through GPT-2's byte table, the others by characters. */
static int emit_word(enc *e, const char *s, size_t n) {
    const evb_tokenizer *t = e->t;
    if (n == 0) return EVB_SUCCESS;
    if (t->kind != KIND_BYTE) return encode_word(e, s, n);
    int st = EVB_SUCCESS;
    if (t->ignore_merges) {
        e->word.n = 0;
        for (size_t k = 0; k < n && !st; k++) {
            char c[4];
            st = buf_put(&e->word, c, (size_t)utf8_encode(gpt2_byte_cp((unsigned char)s[k]), c));
        }
        int32_t id = st ? -1 : strmap_get(&t->vocab, t, e->word.p, e->word.n);
        if (id >= 0) return ids_push(e->out, id);
    }
    e->sym.n = 0;
    for (size_t k = 0; k < n && !st; k++) {
        int32_t id = t->bl_byte_id[(unsigned char)s[k]];
        if (id >= 0) st = ids_push(&e->sym, id);
    }
    return st ? st : merge_and_emit(e);
}

static int pre_run(enc *e, int k, const char *s, size_t n, int first);

/* Finds the matches of re in s[0..n) (valid UTF-8 runs only; each invalid byte is a piece of its own),
 * groups them as Hugging Face's SplitDelimiterBehavior says, and runs step k + 1 on each piece. */
static int split_apply(enc *e, int k, const pcre2_code *re, int behavior, int invert, const char *s, size_t n,
                       int first) {
    span_list *l = &e->lv[k];
    l->n = 0;
    int st = EVB_SUCCESS;
    for (size_t i = 0; i < n && !st;) {
        size_t end = utf8_valid_end(s, n, i), prev = i, pos = i;
        while (pos < end) {
            uint32_t opt = PCRE2_NO_UTF_CHECK;
            int rc = pcre2_match(re, (PCRE2_SPTR)(s + i), end - i, pos - i, opt, e->md, NULL);
            if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
                rc = pcre2_match(re, (PCRE2_SPTR)(s + i), end - i, pos - i, opt | PCRE2_NO_JIT, e->md, NULL);
            if (rc == PCRE2_ERROR_NOMATCH) break;
            if (rc < 0) {
                PCRE2_UCHAR msg[120];
                pcre2_get_error_message(rc, msg, sizeof msg);
                return EVB_RAISEF(EVB_EFORMAT, "evb_tokenizer_encode: pre-tokenizer pattern failed: %s", (const char *)msg);
            }
            const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
            size_t ms = i + ov[0], me = i + ov[1];
            if (me <= ms) { /* an empty match splits nothing: go on after the next character */
                int adv = utf8_valid_len((const unsigned char *)s + ms, end - ms);
                pos = ms + (size_t)(adv ? adv : 1);
                continue;
            }
            if (ms > prev && (st = span_push(l, prev, ms, 0))) return st;
            if ((st = span_push(l, ms, me, 1))) return st;
            prev = pos = me;
        }
        if (end > prev && (st = span_push(l, prev, end, 0))) return st;
        if (end < n && (st = span_push(l, end, end + 1, 0))) return st;
        i = end < n ? end + 1 : end;
    }
    if (invert)
        for (size_t j = 0; j < l->n; j++) l->p[j].match = !l->p[j].match;
    /* Grouping, as in Hugging Face's NormalizedString::split. */
    size_t m = 0;
    piece_span *p = l->p;
    if (behavior == BEH_REMOVED) {
        for (size_t j = 0; j < l->n; j++)
            if (!p[j].match) p[m++] = p[j];
    } else if (behavior == BEH_ISOLATED) {
        m = l->n;
    } else if (behavior == BEH_PREVIOUS || behavior == BEH_CONTIGUOUS) {
        int prev_match = 0;
        for (size_t j = 0; j < l->n; j++) {
            int merge = behavior == BEH_PREVIOUS ? p[j].match && !prev_match : p[j].match == prev_match;
            if (merge && m > 0) p[m - 1].b = p[j].b;
            else p[m++] = p[j];
            prev_match = p[j].match;
        }
    } else { /* BEH_NEXT: a match starts a piece that runs to the next match */
        int prev_match = 0;
        size_t j = l->n;
        m = l->n;
        /* Walk right to left, writing the merged pieces from the end of the array. */
        while (j-- > 0) {
            int merge = p[j].match && !prev_match;
            if (merge && m < l->n) p[m].a = p[j].a;
            else p[--m] = p[j];
            prev_match = p[j].match;
        }
        memmove(p, p + m, (l->n - m) * sizeof *p);
        m = l->n - m;
    }
    l->n = m;
    /* Deeper steps reuse their own lists, so this one stays intact while its pieces are processed. */
    for (size_t j = 0; j < m && !st; j++)
        if (l->p[j].b > l->p[j].a)
            st = pre_run(e, k + 1, s + l->p[j].a, l->p[j].b - l->p[j].a, first && l->p[j].a == 0);
    return st;
}

/* Runs pre-tokenizer step k (and the ones after it) over s[0..n); past the last step, BPE. first: the
 * piece starts at offset 0 of the input (Metaspace's prepend_scheme "first"). */
static int pre_run(enc *e, int k, const char *s, size_t n, int first) {
    const evb_tokenizer *t = e->t;
    if (n == 0) return EVB_SUCCESS;
    if (k == t->n_pre) return emit_word(e, s, n);
    const pre_step *p = &t->pre[k];
    if (p->op == PRE_SPLIT) return split_apply(e, k, p->re, p->behavior, p->invert, s, n, first);
    buf b = {0};
    int st = EVB_SUCCESS;
    if (p->op == PRE_BYTELEVEL) {
        if (p->prefix && s[0] != ' ') {
            if (buf_put(&b, " ", 1) || buf_put(&b, s, n)) { free(b.p); return EVB_ENOMEM; }
            s = b.p; n = b.n;
        }
        st = p->re ? split_apply(e, k, p->re, BEH_ISOLATED, 0, s, n, first) : pre_run(e, k + 1, s, n, first);
        free(b.p);
        return st;
    }
    /* Metaspace: spaces become U+2581, the prefix as the scheme says, then a split before each U+2581. */
    int starts = n >= 3 && !memcmp(s, META, 3);
    if ((p->prefix == PREPEND_ALWAYS || (p->prefix == PREPEND_FIRST && first)) && !starts && s[0] != ' ')
        st = buf_put(&b, META, 3);
    for (size_t i = 0; i < n && !st; i++) st = s[i] == ' ' ? buf_put(&b, META, 3) : buf_put(&b, s + i, 1);
    if (!st && p->ms_split) {
        size_t start = 0;
        for (size_t i = 1; i + 3 <= b.n && !st; i++)
            if (!memcmp(b.p + i, META, 3)) {
                st = pre_run(e, k + 1, b.p + start, i - start, first && start == 0);
                start = i;
                i += 2;
            }
        if (!st) st = pre_run(e, k + 1, b.p + start, b.n - start, first && start == 0);
    } else if (!st) {
        st = pre_run(e, k + 1, b.p, b.n, first);
    }
    free(b.p);
    return st;
}

/* One segment of text between added tokens; first: it starts at offset 0 of the input. */
static int encode_segment(enc *e, const char *s, size_t n, int first) {
    if (n == 0) return EVB_SUCCESS;
    int st = apply_norm(e->t, s, n, &e->norm, &e->tmp);
    return st ? st : pre_run(e, 0, e->norm.p, e->norm.n, first);
}

/* The added token that starts at s[0..n) (the longest), or -1. */
static int32_t match_added(const evb_tokenizer *t, const char *s, size_t n) {
    unsigned char b = (unsigned char)s[0];
    for (int k = t->added_at[b]; k < t->added_at[b + 1]; k++) {
        int32_t id = t->added[k];
        size_t l = (size_t)t->plen[id];
        if (l <= n && !memcmp(t->piece[id], s, l)) return id;
    }
    return -1;
}

static int encode_impl(const evb_tokenizer *t, const char *text, size_t len, int add_bos, int naive,
                       int32_t **tokens, size_t *n) {
    if (!tokens || !n) EVB_ERRORF(EVB_EINVAL, "evb_tokenizer_encode: NULL output");
    *tokens = NULL;
    *n = 0;
    if (!t || (!text && len)) EVB_ERRORF(EVB_EINVAL, "evb_tokenizer_encode: NULL tokenizer or text");
    if (len > (size_t)INT32_MAX / 2) EVB_ERRORF(EVB_EINVAL, "evb_tokenizer_encode: text of %zu bytes is too long", len);
    ids out = {0};
    enc e = {0};
    e.t = t; e.out = &out; e.naive = naive;
    e.scratch = malloc(2 * (size_t)t->max_plen + 8);
    int st = e.scratch ? EVB_SUCCESS : EVB_ENOMEM;
    if (!st && t->n_pre) {
        e.lv = calloc((size_t)t->n_pre, sizeof *e.lv);
        e.md = pcre2_match_data_create(4, NULL);
        if (!e.lv || !e.md) st = EVB_ENOMEM;
    }
    if (!st && t->kind == KIND_BIN) {
        if (add_bos && t->bos >= 0) st = ids_push(&out, t->bos);
        if (!st) st = encode_bin(&e, text, len);
    } else if (!st) {
        for (int k = 0; add_bos && k < t->n_tmpl[0] && !st; k++) st = ids_push(&out, t->tmpl[0][k]);
        /* Split around added tokens; the plain segments are normalised and pre-tokenized separately. */
        size_t seg = 0;
        for (size_t i = 0; i < len && !st;) {
            unsigned char b = (unsigned char)text[i];
            int32_t id = t->added_at[b + 1] > t->added_at[b] ? match_added(t, text + i, len - i) : -1;
            if (id < 0) { i++; continue; }
            st = encode_segment(&e, text + seg, i - seg, seg == 0);
            if (!st) st = ids_push(&out, id);
            i += (size_t)t->plen[id];
            seg = i;
        }
        if (!st) st = encode_segment(&e, text + seg, len - seg, seg == 0);
        for (int k = 0; add_bos && k < t->n_tmpl[1] && !st; k++) st = ids_push(&out, t->tmpl[1][k]);
    }
    free(e.scratch); free(e.sym.p); free(e.norm.p); free(e.tmp.p); free(e.word.p);
    for (int k = 0; e.lv && k < t->n_pre; k++) free(e.lv[k].p);
    free(e.lv);
    pcre2_match_data_free(e.md);
    if (st) {
        free(out.p);
        if (st == EVB_ENOMEM) EVB_ERRORF(EVB_ENOMEM, "evb_tokenizer_encode: out of memory");
        return st;
    }
    if (!out.p) {
        out.p = malloc(sizeof *out.p);
        if (!out.p) EVB_ERRORF(EVB_ENOMEM, "evb_tokenizer_encode: out of memory");
    }
    *tokens = out.p;
    *n = out.n;
    return EVB_SUCCESS;
}

int evb_tokenizer_encode(const evb_tokenizer *t, const char *text, size_t len, int add_bos, int32_t **tokens,
                         size_t *n) {
    return encode_impl(t, text, len, add_bos, 0, tokens, n);
}

int evb_tokenizer_encode_naive(const evb_tokenizer *t, const char *text, size_t len, int add_bos,
                               int32_t **tokens, size_t *n) {
    return encode_impl(t, text, len, add_bos, 1, tokens, n);
}

// ---- decoding ----

/* A list of pieces: piece i is b.p[off[i] .. off[i + 1]). */
typedef struct { buf b; size_t *off; size_t n, cap; } plist;

static int pl_init(plist *l) {
    memset(l, 0, sizeof *l);
    l->off = malloc(64 * sizeof *l->off);
    if (!l->off || buf_put(&l->b, "", 0)) return EVB_ENOMEM;
    l->cap = 64;
    l->off[0] = 0;
    return EVB_SUCCESS;
}

static void pl_free(plist *l) { free(l->b.p); free(l->off); }

/* Ends the piece whose bytes were appended to l->b since the last one ended. */
static int pl_close(plist *l) {
    if (l->n + 2 > l->cap) {
        size_t *p = realloc(l->off, 2 * l->cap * sizeof *p);
        if (!p) return EVB_ENOMEM;
        l->off = p; l->cap *= 2;
    }
    l->off[++l->n] = l->b.n;
    return EVB_SUCCESS;
}

static int pl_push(plist *l, const char *s, size_t n) { return buf_put(&l->b, s, n) ? EVB_ENOMEM : pl_close(l); }

/* One decoder step from src to dst (Hugging Face's decode_chain of that decoder). */
static int dec_apply(const evb_tokenizer *t, const dec_step *d, const plist *src, plist *dst) {
    int st = EVB_SUCCESS;
    if (d->op == DEC_FUSE) {
        return pl_push(dst, src->b.p, src->b.n);
    }
    if (d->op == DEC_BYTELEVEL) {
        /* A piece whose characters are all in GPT-2's byte table becomes those bytes, any other its own
         * bytes; the whole is read as UTF-8 with U+FFFD for invalid sequences. */
        buf raw = {0};
        for (size_t i = 0; i < src->n && !st; i++) {
            const char *p = src->b.p + src->off[i];
            size_t l = src->off[i + 1] - src->off[i], mark = raw.n;
            int all = 1;
            for (size_t k = 0; k < l && !st;) {
                int adv;
                uint32_t cp = utf8_decode(p + k, l - k, &adv);
                if (cp < 324 && t->cp_to_byte[cp] >= 0) { char c = (char)t->cp_to_byte[cp]; st = buf_put(&raw, &c, 1); }
                else { all = 0; break; }
                k += (size_t)adv;
            }
            if (!st && !all) { raw.n = mark; st = buf_put(&raw, p, l); }
        }
        if (!st) st = buf_put_lossy(&dst->b, raw.p ? raw.p : "", raw.n);
        free(raw.p);
        return st ? st : pl_close(dst);
    }
    size_t run_len = 0; /* ByteFallback: the length of the pending run of <0xNN> pieces */
    buf bytes = {0};
    for (size_t i = 0; i <= src->n && !st; i++) {
        const char *p = i < src->n ? src->b.p + src->off[i] : NULL;
        size_t l = i < src->n ? src->off[i + 1] - src->off[i] : 0;
        if (d->op == DEC_BYTEFALLBACK) {
            int b = p ? parse_byte_piece(p, (int32_t)l) : -1;
            if (b >= 0) {
                char c = (char)b;
                if (!run_len) bytes.n = 0;
                run_len++;
                st = buf_put(&bytes, &c, 1);
                continue;
            }
            if (run_len) {
                if (utf8_valid_end(bytes.p, bytes.n, 0) == bytes.n) st = pl_push(dst, bytes.p, bytes.n);
                else
                    for (size_t k = 0; k < run_len && !st; k++) st = pl_push(dst, "\xEF\xBF\xBD", 3);
                run_len = 0;
            }
            if (p && !st) st = pl_push(dst, p, l);
            continue;
        }
        if (!p) break;
        if (d->op == DEC_REPLACE) {
            size_t fl = strlen(d->from), tl = strlen(d->to);
            for (size_t k = 0; k < l && !st;) {
                if (k + fl <= l && !memcmp(p + k, d->from, fl)) { st = buf_put(&dst->b, d->to, tl); k += fl; }
                else { st = buf_put(&dst->b, p + k, 1); k++; }
            }
        } else if (d->op == DEC_STRIP) {
            size_t cl = strlen(d->from), a = 0, e = l;
            for (int k = 0; k < d->start && a + cl <= e && !memcmp(p + a, d->from, cl); k++) a += cl;
            for (int k = 0; k < d->stop && e >= a + cl && !memcmp(p + e - cl, d->from, cl); k++) e -= cl;
            st = buf_put(&dst->b, p + a, e - a);
        } else { /* DEC_METASPACE: U+2581 becomes a space, and in the first piece nothing when prefixing */
            for (size_t k = 0; k < l && !st;) {
                if (k + 3 <= l && !memcmp(p + k, META, 3)) {
                    if (!(i == 0 && d->prefix)) st = buf_put(&dst->b, " ", 1);
                    k += 3;
                } else { st = buf_put(&dst->b, p + k, 1); k++; }
            }
        }
        if (!st) st = pl_close(dst);
    }
    free(bytes.p);
    return st;
}

/* tokenizer.json: skip special tokens, run the decoder's steps, join the pieces. */
static int decode_json(const evb_tokenizer *t, const int32_t *tokens, size_t n, buf *out) {
    plist a, b;
    int st = pl_init(&a);
    if (!st) st = pl_init(&b);
    for (size_t i = 0; i < n && !st; i++) {
        int32_t id = tokens[i];
        if (t->is_special[id]) continue;
        st = pl_push(&a, t->piece[id], (size_t)t->plen[id]);
    }
    for (int k = 0; k < t->n_dec && !st; k++) {
        b.b.n = 0; b.n = 0;
        st = dec_apply(t, &t->dec[k], &a, &b);
        plist sw = a; a = b; b = sw;
    }
    /* Without a decoder Hugging Face joins the pieces with spaces. */
    for (size_t i = 0; i < a.n && !st; i++) {
        if (i && !t->has_decoder) st = buf_put(out, " ", 1);
        if (!st) st = buf_put_lossy(out, a.b.p + a.off[i], a.off[i + 1] - a.off[i]);
    }
    pl_free(&a); pl_free(&b);
    return st;
}

int evb_tokenizer_decode(const evb_tokenizer *t, const int32_t *tokens, size_t n, char **text, size_t *len) {
    if (!text || !len) EVB_ERRORF(EVB_EINVAL, "evb_tokenizer_decode: NULL output");
    *text = NULL;
    *len = 0;
    if (!t || (!tokens && n)) EVB_ERRORF(EVB_EINVAL, "evb_tokenizer_decode: NULL tokenizer or tokens");
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= t->vocab_size)
            EVB_ERRORF(EVB_ERANGE, "evb_tokenizer_decode: token %zu has id %d outside the vocabulary [0, %d)", i,
                       (int)tokens[i], t->vocab_size);
    buf out = {0};
    int st = buf_put(&out, "", 0);
    if (!st && t->kind != KIND_BIN) st = decode_json(t, tokens, n, &out);
    int32_t prev = -1;
    for (size_t i = 0; t->kind == KIND_BIN && i < n && !st; prev = tokens[i], i++) {
        /* run.c: BOS and EOS give no text; strip the space after BOS first, then read "<0xNN>" as a byte. */
        int32_t id = tokens[i];
        if (id == t->bos || id == t->eos) continue;
        const char *p = t->piece[id];
        size_t l = (size_t)t->plen[id];
        if (prev == t->bos && l && p[0] == ' ') { p++; l--; }
        int b = parse_byte_piece(p, (int32_t)l);
        if (b >= 0) { char c = (char)b; st = buf_put(&out, &c, 1); }
        else st = buf_put(&out, p, l);
    }
    if (st) { free(out.p); EVB_ERRORF(EVB_ENOMEM, "evb_tokenizer_decode: out of memory"); }
    *text = out.p;
    *len = out.n;
    return EVB_SUCCESS;
}

// ---- the vocabulary for a GGUF file ----

void evb_tokenizer_vocab_free(evb_tokenizer_vocab *v) {
    for (int i = 0; v->tokens && i < v->n; i++) free(v->tokens[i]);
    for (int i = 0; v->merges && i < v->n_merges; i++) free(v->merges[i]);
    free(v->tokens); free(v->scores); free(v->types); free(v->merges);
    memset(v, 0, sizeof *v);
}

/* s[n] with every ' ' written as U+2581 (tokenizer.bin stores SentencePiece's pieces with plain spaces). */
static char *spm_piece(const char *s, size_t n) {
    size_t sp = 0;
    for (size_t i = 0; i < n; i++) sp += s[i] == ' ';
    char *o = malloc(n + 2 * sp + 1), *q = o;
    if (!o) return NULL;
    for (size_t i = 0; i < n; i++)
        if (s[i] == ' ') { memcpy(q, "\xe2\x96\x81", 3); q += 3; }
        else *q++ = s[i];
    *q = 0;
    return o;
}

int evb_tokenizer_vocab_export(const evb_tokenizer *t, evb_tokenizer_vocab *v) {
    memset(v, 0, sizeof *v);
    int n = t->vocab_size;
    v->model = t->kind == KIND_BYTE ? "gpt2" : "llama";
    v->pre = t->gguf_pre ? t->gguf_pre : "default";
    v->n = n;
    v->bos = t->bos; v->eos = t->eos; v->unk = t->unk;
    v->add_bos = t->bos >= 0;
    v->add_space_prefix = t->kind != KIND_BYTE;
    v->tokens = calloc((size_t)n, sizeof *v->tokens);
    v->scores = calloc((size_t)n, sizeof *v->scores);
    v->types = calloc((size_t)n, sizeof *v->types);
    if (!v->tokens || !v->scores || !v->types) { evb_tokenizer_vocab_free(v); EVB_ERROR("out of memory", EVB_ENOMEM); }
    if (t->kind == KIND_SPM)
        for (int i = 0; i < n; i++) v->scores[i] = -1e9f;
    for (int i = 0; i < n; i++) {
        int bin_special = t->kind == KIND_BIN && (i == t->bos || i == t->eos);
        const char *p = bin_special ? (i == t->bos ? "<s>" : "</s>") : t->piece[i];
        size_t len = bin_special ? strlen(p) : (size_t)t->plen[i];
        v->tokens[i] = t->kind == KIND_BIN ? spm_piece(p, len) : malloc(len + 1);
        if (v->tokens[i] && t->kind != KIND_BIN) { memcpy(v->tokens[i], p, len); v->tokens[i][len] = 0; }
        if (!v->tokens[i]) { evb_tokenizer_vocab_free(v); EVB_ERROR("out of memory", EVB_ENOMEM); }
        if (t->kind == KIND_BIN) v->scores[i] = t->score[i];
        v->types[i] = i == t->unk ? 2 : bin_special || t->is_special[i] ? 3 : t->is_added[i] ? 4
                    : t->kind != KIND_BYTE && parse_byte_piece(t->piece[i], t->plen[i]) >= 0 ? 6 : 1;
        if (t->kind == KIND_SPM && (v->types[i] != 1 || utf8_len((unsigned char)p[0]) >= (int)len)) v->scores[i] = 0; /* one character */
    }
    if (t->kind == KIND_BIN) return EVB_SUCCESS;
    /* tokenizer.json: each merge's rank from the pair map, in rank order. */
    size_t nm = 0; /* one past the largest rank */
    for (size_t i = 0; i < t->merges.cap; i++)
        if (t->merges.key[i] && (size_t)t->merges.rank[i] + 1 > nm) nm = (size_t)t->merges.rank[i] + 1;
    if (t->kind == KIND_SPM) {
        for (size_t i = 0; i < t->merges.cap; i++) {
            if (!t->merges.key[i]) continue;
            int32_t out = t->merges.out[i];
            float sc = -(float)t->merges.rank[i];
            if (out >= 0 && out < n && v->types[out] == 1 && (v->scores[out] <= -1e9f || sc > v->scores[out])) v->scores[out] = sc;
        }
        return EVB_SUCCESS;
    }
    v->merges = calloc(nm ? nm : 1, sizeof *v->merges);
    if (!v->merges) { evb_tokenizer_vocab_free(v); EVB_ERROR("out of memory", EVB_ENOMEM); }
    v->n_merges = (int)nm;
    for (size_t i = 0; i < t->merges.cap; i++) {
        if (!t->merges.key[i]) continue;
        uint64_t k = t->merges.key[i] - 1;
        int32_t a = (int32_t)(k >> 32), b = (int32_t)(k & 0xffffffffu), r = t->merges.rank[i];
        if (r < 0 || (size_t)r >= nm || v->merges[r]) continue;
        size_t la = (size_t)t->plen[a], lb = (size_t)t->plen[b];
        char *m = malloc(la + lb + 2);
        if (!m) { evb_tokenizer_vocab_free(v); EVB_ERROR("out of memory", EVB_ENOMEM); }
        memcpy(m, t->piece[a], la); m[la] = ' '; memcpy(m + la + 1, t->piece[b], lb); m[la + lb + 1] = 0;
        v->merges[r] = m;
    }
    /* A pair merged twice keeps its later rank (pairmap_put): close the gaps, the order kept. */
    int k = 0;
    for (size_t r = 0; r < nm; r++) if (v->merges[r]) v->merges[k++] = v->merges[r];
    v->n_merges = k;
    return EVB_SUCCESS;
}
