/* tokenizer.c -- text to token ids and back (see include/evobudget/evb_tokenizer.h).
 *
 * Implements two on-disk formats behind one opaque evb_tokenizer:
 *   - llama2.c tokenizer.bin: int32 max_token_length, then records (float32 score, int32 len, len bytes)
 *     until end of file. Encoding reproduces llama2.c run.c encode() exactly: a dummy-prefix " " token,
 *     one token per UTF-8 codepoint (byte fallback id = byte + 3), then repeatedly the adjacent pair whose
 *     concatenation is in the vocabulary with the highest score, the leftmost on ties. BOS = 1, EOS = 2.
 *   - Hugging Face tokenizer.json with model.type "BPE": SentencePiece-style (Prepend/Replace normalizers
 *     or a Metaspace pre-tokenizer, byte_fallback) and byte-level (ByteLevel pre-tokenizer with GPT-2's
 *     split pattern, or a Split pre-tokenizer with the Llama-3 or Qwen2 pattern). Added tokens are matched
 *     in the raw text (leftmost-longest) before normalisation, as the Hugging Face library does.
 *
 * Merging is one engine for both formats: a doubly linked list of symbols and a binary heap of candidate
 * pairs ordered by (priority descending, position ascending). For tokenizer.bin the priority is the
 * merged piece's score, for tokenizer.json minus the merge rank. Popping the best valid candidate is the
 * same choice as a full left-to-right scan with a strict ">" comparison, so the result is identical to
 * run.c's O(n^2) loop, which is kept below as naive_merge() and exposed as evb_tokenizer_encode_naive()
 * so that the tests can compare the two.
 *
 * Regex approximation: the pre-tokenizer patterns are implemented by hand (no regex library). \p{L} is
 * ASCII letters plus every codepoint >= 0x80 that is neither whitespace, a number (a few No/Nd ranges) nor
 * in the punctuation/symbol/mark ranges listed in cp_class(); scripts' combining marks outside U+0300..036F
 * therefore count as letters, and Unicode normalisation (NFC) is not applied (input is assumed NFC).
 * To support another pre-tokenizer pattern, add a SPLIT_* mode, recognise its pattern string in
 * parse_pretokenizer() and add its alternatives to split_next().
 *
 * Decoding: BOS and EOS produce no text; other added tokens produce their content. For SentencePiece-style
 * tokenizers a piece that follows BOS drops one leading space (llama2.c), and when the tokenizer.json
 * decoder strips the prefix (Strip or Metaspace) the first piece of the output does too. Byte-fallback
 * pieces "<0xNN>" become the raw byte; byte-level pieces are mapped back through GPT-2's byte table. */
#include "evobudget/evb_tokenizer.h"
#include "evobudget/evb_status.h"

#include <jansson.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---- types ----

enum { KIND_BIN, KIND_SPM, KIND_BYTE };
enum { SPLIT_NONE, SPLIT_GPT2, SPLIT_LLAMA3, SPLIT_QWEN2 };
enum { PREPEND_NEVER, PREPEND_FIRST, PREPEND_ALWAYS };
enum { NORM_PREPEND, NORM_REPLACE };

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
    int op;        /* NORM_PREPEND or NORM_REPLACE */
    char *from;    /* replace: pattern (NUL-terminated, non-empty) */
    char *to;      /* prepend: prefix; replace: content */
} norm_op;

struct evb_tokenizer {
    int kind;          /* KIND_* */
    int vocab_size;    /* ids are [0, vocab_size) */
    char **piece;      /* [vocab_size] piece bytes (NUL-terminated copies; may be "" for holes) */
    int32_t *plen;     /* [vocab_size] piece length in bytes */
    float *score;      /* [vocab_size] tokenizer.bin scores (0 for tokenizer.json) */
    unsigned char *is_added; /* [vocab_size] 1 for tokenizer.json added tokens */
    strmap vocab;      /* model pieces -> id */
    pairmap merges;    /* tokenizer.json merges */
    int bos, eos, unk; /* -1 when absent */
    int byte_fallback; /* unknown characters become <0xNN> tokens */
    int fuse_unk;      /* consecutive unknown characters give one unk */
    int ignore_merges; /* a word that is itself in the vocabulary is emitted whole */
    int32_t byte_id[256]; /* <0xNN> ids, or -1 */
    /* SentencePiece-style tokenizer.json */
    norm_op *norm;     /* [n_norm] normalizer steps */
    int n_norm;
    int metaspace;     /* a Metaspace pre-tokenizer is present */
    int ms_prepend;    /* PREPEND_* */
    int ms_split;      /* split words at the replacement character */
    int strip_leading; /* the decoder drops one leading space of the output */
    /* byte-level tokenizer.json */
    int split_mode;    /* SPLIT_* */
    int bl_add_prefix_space;
    int32_t bl_byte_id[256]; /* id of the single-character piece of each byte, or -1 */
    int16_t cp_to_byte[324]; /* inverse of GPT-2's bytes_to_unicode, -1 for none */
    /* added tokens, matched in the raw text */
    int32_t max_plen;  /* longest piece in bytes */
    int32_t *added;    /* [n_added] ids, sorted by content length descending */
    int n_added;
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
    for (int i = 0; i < 256; i++) t->byte_id[i] = t->bl_byte_id[i] = -1;
    if (!t->piece || !t->plen || !t->score || !t->is_added) { evb_tokenizer_free(t); return NULL; }
    return t;
}

void evb_tokenizer_free(evb_tokenizer *t) {
    if (!t) return;
    if (t->piece)
        for (int i = 0; i < t->vocab_size; i++) free(t->piece[i]);
    free(t->piece); free(t->plen); free(t->score); free(t->is_added);
    free(t->vocab.slot);
    free(t->merges.key); free(t->merges.rank); free(t->merges.out);
    for (int i = 0; i < t->n_norm; i++) { free(t->norm[i].from); free(t->norm[i].to); }
    free(t->norm);
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
        if (!t->piece[i] || t->is_added[i]) continue;
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
    o->op = op;
    o->from = from ? dupstr(from) : NULL;
    o->to = dupstr(to);
    t->n_norm++;
    if ((from && !o->from) || !o->to) EVB_ERRORF(EVB_ENOMEM, "%s: out of memory", path);
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
    /* NFC is accepted without being applied: the input is assumed to be NFC already. */
    if (!strcmp(type, "NFC")) return EVB_SUCCESS;
    EVB_ERRORF(EVB_EFORMAT, "%s: unsupported normalizer type \"%s\" (supported: Sequence, Prepend, Replace, NFC)",
               path, type);
}

static const char PAT_GPT2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char PAT_LLAMA3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char PAT_QWEN2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static int parse_pretokenizer(evb_tokenizer *t, const char *path, json_t *p, int *byte_level) {
    if (!p || json_is_null(p)) return EVB_SUCCESS;
    const char *type = jstr(p, "type");
    if (!type) EVB_ERRORF(EVB_EFORMAT, "%s: pre_tokenizer without a \"type\"", path);
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
        t->bl_add_prefix_space = jbool(p, "add_prefix_space", 1);
        if (jbool(p, "use_regex", 1)) {
            if (t->split_mode != SPLIT_NONE)
                EVB_ERRORF(EVB_EFORMAT, "%s: ByteLevel with use_regex after a Split pre-tokenizer", path);
            t->split_mode = SPLIT_GPT2;
        }
        return EVB_SUCCESS;
    }
    if (!strcmp(type, "Split")) {
        const char *re = jstr(json_object_get(p, "pattern"), "Regex");
        const char *beh = jstr(p, "behavior");
        if (!re) EVB_ERRORF(EVB_EFORMAT, "%s: Split pre-tokenizer without a {\"Regex\": ...} pattern", path);
        if (!beh || strcmp(beh, "Isolated") || jbool(p, "invert", 0))
            EVB_ERRORF(EVB_EFORMAT, "%s: Split pre-tokenizer: only behavior \"Isolated\" without invert is "
                       "supported", path);
        int mode = !strcmp(re, PAT_GPT2) ? SPLIT_GPT2 : !strcmp(re, PAT_LLAMA3) ? SPLIT_LLAMA3
                 : !strcmp(re, PAT_QWEN2) ? SPLIT_QWEN2 : SPLIT_NONE;
        if (mode == SPLIT_NONE)
            EVB_ERRORF(EVB_EFORMAT, "%s: unsupported Split regex \"%.60s%s\" (supported: the GPT-2, Llama-3 "
                       "and Qwen2 patterns)", path, re, strlen(re) > 60 ? "..." : "");
        if (t->split_mode != SPLIT_NONE)
            EVB_ERRORF(EVB_EFORMAT, "%s: more than one splitting pre-tokenizer", path);
        t->split_mode = mode;
        return EVB_SUCCESS;
    }
    if (!strcmp(type, "Metaspace")) {
        const char *rep = jstr(p, "replacement");
        if (rep && strcmp(rep, "\xE2\x96\x81"))
            EVB_ERRORF(EVB_EFORMAT, "%s: Metaspace replacement other than U+2581 is not supported", path);
        t->metaspace = 1;
        const char *scheme = jstr(p, "prepend_scheme");
        if (scheme) {
            t->ms_prepend = !strcmp(scheme, "always") ? PREPEND_ALWAYS : !strcmp(scheme, "first") ? PREPEND_FIRST
                          : PREPEND_NEVER;
            if (strcmp(scheme, "always") && strcmp(scheme, "first") && strcmp(scheme, "never"))
                EVB_ERRORF(EVB_EFORMAT, "%s: unknown Metaspace prepend_scheme \"%s\"", path, scheme);
        } else {
            t->ms_prepend = jbool(p, "add_prefix_space", 1) ? PREPEND_ALWAYS : PREPEND_NEVER;
        }
        t->ms_split = jbool(p, "split", 1);
        return EVB_SUCCESS;
    }
    EVB_ERRORF(EVB_EFORMAT, "%s: unsupported pre_tokenizer type \"%s\" (supported: ByteLevel, Split, Metaspace, "
               "Sequence)", path, type);
}

/* Does the decoder strip the prefix space (a Strip step with start >= 1, or a prefixing Metaspace)? */
static int decoder_strips(json_t *d) {
    if (!d || json_is_null(d)) return 0;
    const char *type = jstr(d, "type");
    if (!type) return 0;
    if (!strcmp(type, "Sequence")) {
        size_t i; json_t *e; int s = 0;
        json_array_foreach(json_object_get(d, "decoders"), i, e) s |= decoder_strips(e);
        return s;
    }
    if (!strcmp(type, "Strip")) return json_integer_value(json_object_get(d, "start")) >= 1;
    if (!strcmp(type, "Metaspace")) {
        const char *scheme = jstr(d, "prepend_scheme");
        return scheme ? strcmp(scheme, "never") != 0 : jbool(d, "add_prefix_space", 1);
    }
    return 0;
}

/* Finds the id of a special token named by the first/last SpecialToken of TemplateProcessing "single". */
static int template_special(json_t *pp, int last) {
    if (!pp || json_is_null(pp)) return -1;
    const char *type = jstr(pp, "type");
    if (!type) return -1;
    if (!strcmp(type, "Sequence")) {
        size_t i; json_t *e;
        json_array_foreach(json_object_get(pp, "processors"), i, e) {
            int id = template_special(e, last);
            if (id >= 0) return id;
        }
        return -1;
    }
    if (strcmp(type, "TemplateProcessing")) return -1;
    json_t *single = json_object_get(pp, "single");
    size_t n = json_array_size(single);
    if (n == 0) return -1;
    json_t *e = json_object_get(json_array_get(single, last ? n - 1 : 0), "SpecialToken");
    const char *name = jstr(e, "id");
    if (!name) return -1;
    json_t *sids = json_object_get(json_object_get(json_object_get(pp, "special_tokens"), name), "ids");
    if (json_array_size(sids) != 1 || !json_is_integer(json_array_get(sids, 0))) return -1;
    return (int)json_integer_value(json_array_get(sids, 0));
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

/* Sorts the added-token ids by content length, longest first (then by id), so that the first match in
 * the raw text is the longest. Insertion sort: there are at most a few hundred added tokens. */
static void sort_added(evb_tokenizer *t) {
    for (int i = 1; i < t->n_added; i++) {
        int32_t x = t->added[i];
        int j = i - 1;
        while (j >= 0 && (t->plen[t->added[j]] < t->plen[x] ||
                          (t->plen[t->added[j]] == t->plen[x] && t->added[j] > x))) {
            t->added[j + 1] = t->added[j];
            j--;
        }
        t->added[j + 1] = x;
    }
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
    }
    t->added = malloc((json_array_size(added) + 1) * sizeof *t->added);
    if (!t->added) FAIL(EVB_ENOMEM, "%s: out of memory", path);
    json_array_foreach(added, i, e) {
        int id = (int)json_integer_value(json_object_get(e, "id"));
        const char *c = jstr(e, "content");
        if (!*c) FAIL(EVB_EFORMAT, "%s: added_tokens[%zu] has empty content", path, i);
        if (t->is_added[id]) continue;
        if (!t->piece[id] || strcmp(t->piece[id], c)) {
            if (set_piece(t, id, c, strlen(c))) FAIL(EVB_ENOMEM, "%s: out of memory", path);
        }
        t->is_added[id] = 1;
        t->added[t->n_added++] = id;
    }
    for (int k = 0; k < t->vocab_size; k++)
        if (!t->piece[k] && set_piece(t, k, "", 0)) FAIL(EVB_ENOMEM, "%s: out of memory", path);
    if (build_vocab_map(t)) FAIL(EVB_ENOMEM, "%s: out of memory", path);
    sort_added(t);

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
    if (t->split_mode != SPLIT_NONE && !byte_level)
        FAIL(EVB_EFORMAT, "%s: a Split pre-tokenizer without ByteLevel is not supported", path);
    if (byte_level && (t->metaspace || t->n_norm))
        FAIL(EVB_EFORMAT, "%s: ByteLevel combined with Metaspace or a Prepend/Replace normalizer is not supported",
             path);
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
    } else {
        t->strip_leading = decoder_strips(json_object_get(root, "decoder"));
    }

    /* BOS/EOS: the post-processor's template first, then the usual names. */
    json_t *pp = json_object_get(root, "post_processor");
    t->bos = template_special(pp, 0);
    t->eos = -1;
    if (t->bos >= t->vocab_size) t->bos = -1;
    if (t->bos < 0) {
        t->bos = find_piece_any(t, "<s>");
        if (t->bos < 0) t->bos = find_piece_any(t, "<|begin_of_text|>");
    }
    t->eos = find_piece_any(t, "</s>");
    if (t->eos < 0) t->eos = find_piece_any(t, "<|end_of_text|>");
    if (t->eos < 0) t->eos = find_piece_any(t, "<|endoftext|>");
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

// ---- pre-tokenization ----

enum { CL_LETTER, CL_NUMBER, CL_SPACE, CL_OTHER };

/* An approximation of Unicode's \s, \p{L}, \p{N} (see the file header). */
static int cp_class(uint32_t c) {
    if (c < 0x80) {
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return CL_LETTER;
        if (c >= '0' && c <= '9') return CL_NUMBER;
        if (c == ' ' || (c >= 9 && c <= 13)) return CL_SPACE;
        return CL_OTHER;
    }
    if (c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
        c == 0x202F || c == 0x205F || c == 0x3000)
        return CL_SPACE;
    if (c == 0xB2 || c == 0xB3 || c == 0xB9 || (c >= 0xBC && c <= 0xBE) || (c >= 0x660 && c <= 0x669) ||
        (c >= 0x6F0 && c <= 0x6F9) || (c >= 0x966 && c <= 0x96F) || (c >= 0x2070 && c <= 0x2079 && c != 0x2071 &&
        c != 0x2072 && c != 0x2073) || (c >= 0x2080 && c <= 0x2089) || (c >= 0x2150 && c <= 0x2189) ||
        (c >= 0x2460 && c <= 0x249B) || c == 0x3007 || (c >= 0x3021 && c <= 0x3029) || (c >= 0xFF10 && c <= 0xFF19))
        return CL_NUMBER;
    if (c <= 0x9F || (c >= 0xA1 && c <= 0xBF && c != 0xAA && c != 0xB5 && c != 0xBA) || c == 0xD7 || c == 0xF7 ||
        (c >= 0x300 && c <= 0x36F) || (c >= 0x200B && c <= 0x206F) || (c >= 0x20A0 && c <= 0x20FF) ||
        (c >= 0x2100 && c <= 0x214F) || (c >= 0x2190 && c <= 0x2BFF) ||
        (c >= 0x3001 && c <= 0x303F && !(c >= 0x3005 && c <= 0x3006)) || (c >= 0xD800 && c <= 0xF8FF) ||
        (c >= 0xFE00 && c <= 0xFE0F) || (c >= 0xFE30 && c <= 0xFE6F) || (c >= 0xFF01 && c <= 0xFF0F) ||
        (c >= 0xFF1A && c <= 0xFF20) || (c >= 0xFF3B && c <= 0xFF40) || (c >= 0xFF5B && c <= 0xFF65) ||
        (c >= 0xFFF0 && c <= 0xFFFF) || (c >= 0x1F000 && c <= 0x1FAFF) || (c >= 0xE0000 && c <= 0xE007F))
        return CL_OTHER;
    return CL_LETTER;
}

typedef struct { const char *s; size_t n; } span;

static uint32_t cp_at(span x, size_t i, int *adv) {
    if (i >= x.n) { *adv = 0; return 0; }
    return utf8_decode(x.s + i, x.n - i, adv);
}

static int cl_at(span x, size_t i, int *adv) {
    uint32_t c = cp_at(x, i, adv);
    return *adv ? cp_class(c) : -1;
}

/* End of a run of class cl starting at i (at most max codepoints, 0 = unlimited). */
static size_t run_end(span x, size_t i, int cl, int max) {
    int adv, k = 0;
    while (i < x.n && cl_at(x, i, &adv) == cl && (!max || k < max)) { i += (size_t)adv; k++; }
    return i;
}

static int is_crlf(span x, size_t i) { return i < x.n && (x.s[i] == '\r' || x.s[i] == '\n'); }

/* The length of the contraction at i ('s 't 're 've 'm 'll 'd), 0 if none. */
static size_t contraction(span x, size_t i, int icase) {
    if (i >= x.n || x.s[i] != '\'') return 0;
    static const char *forms[] = {"s", "t", "re", "ve", "m", "ll", "d"};
    for (int f = 0; f < 7; f++) {
        size_t l = strlen(forms[f]), k;
        if (i + 1 + l > x.n) continue;
        for (k = 0; k < l; k++) {
            char c = x.s[i + 1 + k];
            if (icase && c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
            if (c != forms[f][k]) break;
        }
        if (k == l) return 1 + l;
    }
    return 0;
}

/* The whitespace alternatives shared by all patterns: \s+(?!\S) | \s+ (and \s*[\r\n]+ for Llama-3). */
static size_t split_space(span x, size_t i, int crlf_alt) {
    size_t end = run_end(x, i, CL_SPACE, 0);
    if (crlf_alt) {
        size_t last = (size_t)-1;
        for (size_t k = i; k < end; k++)
            if (is_crlf(x, k)) last = k;
        if (last != (size_t)-1) return last + 1 - i;
    }
    if (end == x.n) return end - i;
    /* Followed by a non-space: give back the last whitespace codepoint if more than one. */
    size_t k = i, lastcp = i;
    int adv;
    while (k < end) { lastcp = k; cp_at(x, k, &adv); k += (size_t)adv; }
    return lastcp > i ? lastcp - i : end - i;
}

/* Length of the pre-tokenizer match starting at i (always >= 1 for i < n). */
static size_t split_next(int mode, span x, size_t i) {
    int adv, adv2;
    int cl = cl_at(x, i, &adv);
    if (mode == SPLIT_GPT2) {
        size_t c = contraction(x, i, 0);
        if (c) return c;
        size_t j = i;
        int cl2 = cl;
        if (x.s[i] == ' ' && i + 1 < x.n) { cl2 = cl_at(x, i + 1, &adv2); if (cl2 != CL_SPACE) j = i + 1; }
        if (j > i || cl != CL_SPACE) return run_end(x, j, cl2, 0) - i;
        return split_space(x, i, 0);
    }
    /* Llama-3 and Qwen2. */
    size_t c = contraction(x, i, 1);
    if (c) return c;
    if (cl == CL_LETTER) return run_end(x, i, CL_LETTER, 0) - i;
    if (cl != CL_NUMBER && !is_crlf(x, i) && cl_at(x, i + (size_t)adv, &adv2) == CL_LETTER)
        return run_end(x, i + (size_t)adv, CL_LETTER, 0) - i;
    if (cl == CL_NUMBER) return run_end(x, i, CL_NUMBER, mode == SPLIT_LLAMA3 ? 3 : 1) - i;
    size_t j = i;
    if (x.s[i] == ' ' && cl_at(x, i + 1, &adv2) == CL_OTHER) j = i + 1;
    if (cl_at(x, j, &adv2) == CL_OTHER) {
        size_t e = run_end(x, j, CL_OTHER, 0);
        while (is_crlf(x, e)) e++;
        return e - i;
    }
    return split_space(x, i, 1);
}

// ---- encoding ----

typedef struct {
    const evb_tokenizer *t;
    ids *out;
    ids sym;       /* symbols of the current word */
    buf norm;      /* the normalised segment */
    char *scratch; /* [2 * longest piece + 8] */
    int naive;     /* use naive_merge */
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

static int apply_norm(const evb_tokenizer *t, const char *s, size_t n, buf *out, buf *tmp) {
    out->n = 0;
    if (buf_put(out, s, n)) return EVB_ENOMEM;
    for (int k = 0; k < t->n_norm; k++) {
        const norm_op *o = &t->norm[k];
        tmp->n = 0;
        if (o->op == NORM_PREPEND) {
            if (out->n == 0) continue;
            if (buf_put(tmp, o->to, strlen(o->to)) || buf_put(tmp, out->p, out->n)) return EVB_ENOMEM;
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

/* One segment of text between added tokens; first: it starts at offset 0 of the input. */
static int encode_segment(enc *e, const char *s, size_t n, int first) {
    const evb_tokenizer *t = e->t;
    if (n == 0) return EVB_SUCCESS;
    if (t->kind == KIND_BYTE) {
        /* Pre-tokenize the raw bytes, then map every byte to its GPT-2 character's piece. */
        buf tmp = {0};
        if (t->bl_add_prefix_space && s[0] != ' ') {
            if (buf_put(&tmp, " ", 1) || buf_put(&tmp, s, n)) { free(tmp.p); return EVB_ENOMEM; }
            s = tmp.p; n = tmp.n;
        }
        span x = {s, n};
        int st = EVB_SUCCESS;
        for (size_t i = 0; i < n && !st;) {
            size_t l = t->split_mode == SPLIT_NONE ? n - i : split_next(t->split_mode, x, i);
            e->norm.n = 0;
            for (size_t k = i; k < i + l && !st; k++) {
                char c[4];
                st = buf_put(&e->norm, c, (size_t)utf8_encode(gpt2_byte_cp((unsigned char)s[k]), c));
            }
            if (!st && t->ignore_merges) {
                int32_t id = strmap_get(&t->vocab, t, e->norm.p, e->norm.n);
                if (id >= 0) { st = ids_push(e->out, id); i += l; continue; }
            }
            e->sym.n = 0;
            for (size_t k = i; k < i + l && !st; k++) {
                int32_t id = t->bl_byte_id[(unsigned char)s[k]];
                if (id >= 0) st = ids_push(&e->sym, id);
            }
            if (!st) st = merge_and_emit(e);
            i += l;
        }
        free(tmp.p);
        return st;
    }
    /* SentencePiece-style: normalise, then Metaspace (replace, prepend, split at U+2581). */
    buf tmp = {0};
    int st = apply_norm(t, s, n, &e->norm, &tmp);
    if (!st && t->metaspace) {
        buf *w = &e->norm;
        tmp.n = 0;
        int pre = (t->ms_prepend == PREPEND_ALWAYS || (t->ms_prepend == PREPEND_FIRST && first)) &&
                  !(w->n >= 3 && !memcmp(w->p, META, 3)) && !(w->n >= 1 && w->p[0] == ' ');
        if (pre) st = buf_put(&tmp, META, 3);
        for (size_t i = 0; i < w->n && !st; i++)
            st = w->p[i] == ' ' ? buf_put(&tmp, META, 3) : buf_put(&tmp, w->p + i, 1);
        if (!st) { buf sw = *w; *w = tmp; tmp = sw; }
    }
    if (!st) {
        const char *p = e->norm.p;
        size_t m = e->norm.n;
        if (t->metaspace && t->ms_split) {
            size_t start = 0;
            for (size_t i = 1; i + 3 <= m; i++)
                if (!memcmp(p + i, META, 3)) {
                    if ((st = encode_word(e, p + start, i - start))) break;
                    start = i;
                    i += 2;
                }
            if (!st) st = encode_word(e, p + start, m - start);
        } else {
            st = encode_word(e, p, m);
        }
    }
    free(tmp.p);
    return st;
}

/* The added token that starts at s[0..n) (the longest, since added is sorted by length), or -1. */
static int32_t match_added(const evb_tokenizer *t, const char *s, size_t n) {
    for (int k = 0; k < t->n_added; k++) {
        int32_t id = t->added[k];
        size_t l = (size_t)t->plen[id];
        if (l <= n && t->piece[id][0] == s[0] && !memcmp(t->piece[id], s, l)) return id;
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
    enc e = {t, &out, {0}, {0}, malloc(2 * (size_t)t->max_plen + 8), naive};
    int st = e.scratch ? EVB_SUCCESS : EVB_ENOMEM;
    if (!st && add_bos && t->bos >= 0) st = ids_push(&out, t->bos);
    if (!st && t->kind == KIND_BIN) {
        st = encode_bin(&e, text, len);
    } else if (!st) {
        /* Split around added tokens; the plain segments are normalised and pre-tokenized separately. */
        size_t seg = 0;
        for (size_t i = 0; i < len && !st;) {
            int32_t id = t->n_added ? match_added(t, text + i, len - i) : -1;
            if (id < 0) { i++; continue; }
            st = encode_segment(&e, text + seg, i - seg, seg == 0);
            if (!st) st = ids_push(&out, id);
            i += (size_t)t->plen[id];
            seg = i;
        }
        if (!st) st = encode_segment(&e, text + seg, len - seg, seg == 0);
    }
    free(e.scratch); free(e.sym.p); free(e.norm.p);
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
    int32_t prev = -1;
    for (size_t i = 0; i < n && !st; prev = tokens[i], i++) {
        int32_t id = tokens[i];
        if (id == t->bos || id == t->eos) continue;
        const char *p = t->piece[id];
        size_t l = (size_t)t->plen[id];
        if (t->is_added[id]) { st = buf_put(&out, p, l); continue; }
        if (t->kind == KIND_BIN) {
            /* run.c: strip the space after BOS first, then read "<0xNN>" as a byte. */
            if (prev == t->bos && l && p[0] == ' ') { p++; l--; }
            int b = parse_byte_piece(p, (int32_t)l);
            if (b >= 0) { char c = (char)b; st = buf_put(&out, &c, 1); }
            else st = buf_put(&out, p, l);
        } else if (t->kind == KIND_SPM) {
            int b = t->byte_fallback ? parse_byte_piece(p, (int32_t)l) : -1;
            int drop = prev == t->bos || (t->strip_leading && out.n == 0);
            if (b >= 0) {
                char c = (char)b;
                if (!(drop && c == ' ')) st = buf_put(&out, &c, 1);
                continue;
            }
            for (size_t k = 0; k < l && !st;) {
                if (k + 3 <= l && !memcmp(p + k, META, 3)) {
                    if (!(drop && k == 0)) st = buf_put(&out, " ", 1);
                    k += 3;
                } else {
                    if (drop && k == 0 && p[0] == ' ') { k++; continue; }
                    st = buf_put(&out, p + k, 1);
                    k++;
                }
            }
        } else {
            for (size_t k = 0; k < l && !st;) {
                int adv;
                uint32_t cp = utf8_decode(p + k, l - k, &adv);
                if (cp < 324 && t->cp_to_byte[cp] >= 0) { char c = (char)t->cp_to_byte[cp]; st = buf_put(&out, &c, 1); }
                else st = buf_put(&out, p + k, (size_t)adv);
                k += (size_t)adv;
            }
        }
    }
    if (st) { free(out.p); EVB_ERRORF(EVB_ENOMEM, "evb_tokenizer_decode: out of memory"); }
    *text = out.p;
    *len = out.n;
    return EVB_SUCCESS;
}
