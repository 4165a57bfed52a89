/* test_tokenizer.c -- tests of datasets/tokenizer.c (include/evobudget/evb_tokenizer.h).
 *
 * Data: the llama2.c tok512.bin of stories260K and the TinyStories text under EVB_SHARED_DATA.
 *   1. tok512.bin: the reference ids of "Once upon a time", fast merging == run.c-style naive merging on
 *      real text, round trips, and the speed of encoding the whole 794 KB text.
 *   2. A SentencePiece-style tokenizer.json converted here from tok512.bin (merges derived from the vocab
 *      the way Hugging Face's Llama converter does) must give the same ids as the .bin tokenizer.
 *   3. Hand-written byte-level tokenizer.json fixtures (GPT-2 and Llama-3 split patterns) with expected
 *      ids worked out by hand.
 *   4. Malformed files and out-of-range ids give the right status and a message naming the file.
 * Temporary files go to a mkdtemp directory that is removed at the end. */
#define _POSIX_C_SOURCE 200809L
#include "evobudget/evb_status.h"
#include "evobudget/evb_tokenizer.h"
#include "datasets/naive.h"
#include "testing.h"

#include <jansson.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TOK512 EVB_SHARED_DATA "/models/stories260K/tok512.bin"
#define STORIES EVB_SHARED_DATA "/text/tinystories-valid-head/tinystories_valid_head.txt"

static char tmpdir[64];
static char made[16][128]; /* files to remove at the end */
static int n_made;

// ---- utilities ----

static const char *tmp_path(const char *name) {
    snprintf(made[n_made], sizeof made[n_made], "%s/%s", tmpdir, name);
    return made[n_made++];
}

static int write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, n, f);
    return fclose(f) == 0 && w == n ? 0 : -1;
}

static char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)sz + 1);
    if (p && fread(p, 1, (size_t)sz, f) != (size_t)sz) { free(p); p = NULL; }
    fclose(f);
    if (p) { p[sz] = '\0'; *n = (size_t)sz; }
    return p;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int ids_equal(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof *a) == 0);
}

static void print_ids(const char *what, const int32_t *a, size_t n) {
    printf("  %s:", what);
    for (size_t i = 0; i < n && i < 24; i++) printf(" %d", (int)a[i]);
    printf("%s\n", n > 24 ? " ..." : "");
}

/* Encodes text and compares with the expected ids. */
static void check_encode(const evb_tokenizer *t, const char *text, int add_bos, const int32_t *want, size_t n_want,
                         const char *what) {
    int32_t *got = NULL;
    size_t n = 0;
    int st = evb_tokenizer_encode(t, text, strlen(text), add_bos, &got, &n);
    int ok = st == EVB_SUCCESS && ids_equal(got, n, want, n_want);
    EVB_CHECK(ok, "%s", what);
    if (!ok) { print_ids("got", got, n); print_ids("want", want, n_want); }
    free(got);
}

static void check_decode(const evb_tokenizer *t, const int32_t *ids, size_t n, const char *want, size_t want_len,
                         const char *what) {
    char *s = NULL;
    size_t len = 0;
    int st = evb_tokenizer_decode(t, ids, n, &s, &len);
    EVB_CHECK(st == EVB_SUCCESS && len == want_len && memcmp(s, want, len) == 0 && s[len] == '\0', "%s", what);
    free(s);
}

// ---- tok512.bin ----

static void test_bin(void) {
    if (!evb_test_have(TOK512, "the llama2.c tokenizer of stories260K") || !evb_test_have(STORIES, "the llama2.c tokenizer of stories260K")) return;
    evb_tokenizer *t = NULL;
    int st = evb_tokenizer_load(TOK512, &t);
    EVB_CHECK(st == EVB_SUCCESS && t, "load %s (%s)", TOK512, evb_last_error());
    if (!t) return;
    EVB_CHECK(evb_tokenizer_vocab_size(t) == 512, "tok512 vocab size 512");
    EVB_CHECK(evb_tokenizer_bos(t) == 1 && evb_tokenizer_eos(t) == 2, "tok512 BOS 1, EOS 2");

    /* The reference of stories260K's SOURCE.md (llama2.c run.c). */
    const int32_t once[] = {1, 403, 407, 261, 378};
    check_encode(t, "Once upon a time", 1, once, 5, "\"Once upon a time\" with BOS -> 1 403 407 261 378");
    check_encode(t, "Once upon a time", 0, once + 1, 4, "without BOS -> 403 407 261 378");
    const int32_t bos_only[] = {1};
    check_encode(t, "", 1, bos_only, 1, "empty text with BOS -> BOS only");
    check_encode(t, "", 0, NULL, 0, "empty text without BOS -> nothing");
    check_decode(t, once, 5, "Once upon a time", 16, "decode 1 403 407 261 378 -> \"Once upon a time\"");
    check_decode(t, once + 1, 4, " Once upon a time", 17, "decode without BOS keeps the dummy-prefix space");

    /* Non-ASCII: 'é' (C3 A9) is piece 485 of tok512; 'ü' (C3 BC) and '日' (E6 97 A5) are not pieces, so
     * each of their bytes becomes id byte + 3. */
    const char *na = "caf\xC3\xA9 \xC3\xBC\xE6\x97\xA5";
    int32_t *ids = NULL, *ref = NULL;
    size_t n = 0, nref = 0;
    st = evb_tokenizer_encode(t, na, strlen(na), 1, &ids, &n);
    const int32_t tail[] = {0xC3 + 3, 0xBC + 3, 0xE6 + 3, 0x97 + 3, 0xA5 + 3};
    int has_e = 0;
    for (size_t i = 0; i < n; i++) has_e += ids[i] == 485;
    EVB_CHECK(st == EVB_SUCCESS && has_e == 1 && n >= 5 && ids_equal(ids + n - 5, 5, tail, 5),
              "non-ASCII: \"\\xc3\\xa9\" -> piece 485, unknown characters -> byte + 3");
    check_decode(t, ids, n, na, strlen(na), "decode(encode(x)) == x for non-ASCII text");
    free(ids);

    /* Random bytes (invalid UTF-8, NULs, stray continuation bytes): fast == naive and an exact round trip. */
    char rnd[3000];
    uint32_t seed = 12345;
    for (size_t i = 0; i < sizeof rnd; i++) {
        seed = seed * 1664525u + 1013904223u;
        uint32_t r = seed >> 24;
        rnd[i] = (char)(r < 128 ? (uint32_t)(unsigned char)"abc de\n"[r % 7] : r); /* half text-like, half arbitrary bytes */
    }
    st = evb_tokenizer_encode(t, rnd, sizeof rnd, 1, &ids, &n);
    int st2 = evb_tokenizer_encode_naive(t, rnd, sizeof rnd, 1, &ref, &nref);
    EVB_CHECK(st == EVB_SUCCESS && st2 == EVB_SUCCESS && ids_equal(ids, n, ref, nref), "random bytes: fast == naive");
    check_decode(t, ids, n, rnd, sizeof rnd, "random bytes: decode(encode(x, BOS)) == x");
    free(ids); free(ref);

    /* Fast merging == run.c's O(n^2) loop on the first 200 KB of TinyStories, line by line (the naive loop
     * on 200 KB at once would take hours), plus several multi-line chunks so that merges cross newlines. */
    size_t tlen = 0;
    char *text = read_all(STORIES, &tlen);
    EVB_CHECK(text != NULL, "read %s", STORIES);
    if (!text) { evb_tokenizer_free(t); return; }
    size_t head = tlen < 200000 ? tlen : 200000;
    size_t lines = 0, same = 0, tokens = 0;
    double t0 = now();
    for (size_t i = 0; i < head;) {
        size_t j = i;
        while (j < head && text[j] != '\n') j++;
        size_t end = j < head ? j + 1 : j; /* keep the newline */
        int s1 = evb_tokenizer_encode(t, text + i, end - i, 1, &ids, &n);
        int s2 = evb_tokenizer_encode_naive(t, text + i, end - i, 1, &ref, &nref);
        lines++;
        same += s1 == EVB_SUCCESS && s2 == EVB_SUCCESS && ids_equal(ids, n, ref, nref);
        tokens += n;
        free(ids); free(ref);
        i = end;
    }
    EVB_CHECK(lines > 1000 && same == lines, "fast == naive on %zu of %zu lines of the first %zu bytes (%zu tokens, "
              "%.2f s)", same, lines, head, tokens, now() - t0);
    size_t chunk_ok = 0;
    for (int c = 0; c < 4; c++) {
        size_t off = (size_t)c * 50000, l = 3000;
        int s1 = evb_tokenizer_encode(t, text + off, l, 1, &ids, &n);
        int s2 = evb_tokenizer_encode_naive(t, text + off, l, 0, &ref, &nref);
        chunk_ok += s1 == EVB_SUCCESS && s2 == EVB_SUCCESS && n == nref + 1 && ids_equal(ids + 1, n - 1, ref, nref);
        free(ids); free(ref);
    }
    EVB_CHECK(chunk_ok == 4, "fast == naive on 4 multi-line chunks of 3000 bytes");

    /* Round trip: with BOS the dummy-prefix space is dropped after BOS, so decode(encode(x)) == x exactly;
     * without BOS the output is " " + x. */
    st = evb_tokenizer_encode(t, text, head, 1, &ids, &n);
    char *dec = NULL;
    size_t dlen = 0;
    st2 = st ? st : evb_tokenizer_decode(t, ids, n, &dec, &dlen);
    EVB_CHECK(st2 == EVB_SUCCESS && dlen == head && memcmp(dec, text, head) == 0,
              "decode(encode(x, BOS)) == x on 200 KB (%zu tokens)", n);
    free(dec); free(ids);
    st = evb_tokenizer_encode(t, text, head, 0, &ids, &n);
    st2 = st ? st : evb_tokenizer_decode(t, ids, n, &dec, &dlen);
    EVB_CHECK(st2 == EVB_SUCCESS && dlen == head + 1 && dec[0] == ' ' && memcmp(dec + 1, text, head) == 0,
              "decode(encode(x, no BOS)) == \" \" + x on 200 KB");
    free(dec); free(ids);

    /* The whole 794 KB file as one run.c sequence; the time is printed, not asserted (speed is bench/'s). */
    t0 = now();
    st = evb_tokenizer_encode(t, text, tlen, 1, &ids, &n);
    double dt = now() - t0;
    st2 = st ? st : evb_tokenizer_decode(t, ids, n, &dec, &dlen);
    EVB_CHECK(st2 == EVB_SUCCESS && dlen == tlen && memcmp(dec, text, tlen) == 0,
              "the whole file as one sequence: %zu bytes -> %zu tokens and back (%.3f s)", tlen, n, dt);
    free(dec);
    free(ids);
    free(text);
    evb_tokenizer_free(t);
}

// ---- tokenizer.json converted from tok512.bin ----

typedef struct { int merged, left, right; float score; } merge_cand;

static int cmp_merge(const void *a, const void *b) {
    const merge_cand *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    if (x->merged != y->merged) return x->merged - y->merged;
    if (x->left != y->left) return x->left - y->left;
    return x->right - y->right;
}

/* Reads tok512.bin directly and writes a Llama-style tokenizer.json: pieces with " " -> U+2581, merges
 * from every split of a piece into two vocab pieces, ordered by the merged piece's score (descending),
 * then by merged id and the ids of the two halves, as transformers' SentencePieceExtractor does. */
static int write_converted_json(const char *path, int metaspace) {
    size_t sz = 0;
    char *d = read_all(TOK512, &sz);
    if (!d) return -1;
    char *piece[512] = {0};
    float score[512] = {0};
    int n = 0;
    size_t off = 4;
    while (off + 8 <= sz && n < 512) {
        int32_t len;
        memcpy(&score[n], d + off, 4);
        memcpy(&len, d + off + 4, 4);
        off += 8;
        /* Replace each space by U+2581 (3 bytes). */
        piece[n] = malloc(3 * (size_t)len + 1);
        size_t k = 0;
        for (int32_t i = 0; i < len; i++) {
            if (d[off + (size_t)i] == ' ') { memcpy(piece[n] + k, "\xE2\x96\x81", 3); k += 3; }
            else piece[n][k++] = d[off + (size_t)i];
        }
        piece[n][k] = '\0';
        off += (size_t)len;
        n++;
    }
    free(d);
    if (n != 512) {
        for (int i = 0; i < n; i++) free(piece[i]);
        return -1;
    }
    strcpy(piece[1], "<s>");
    strcpy(piece[2], "</s>");
    json_t *root = json_object(), *vocab = json_object(), *merges = json_array(), *added = json_array();
    for (int i = 0; i < n; i++) json_object_set_new(vocab, piece[i], json_integer(i));
    merge_cand *mc = malloc(sizeof *mc * 512 * 8);
    size_t nm = 0;
    for (int i = 259; i < n; i++) {
        size_t l = strlen(piece[i]);
        for (size_t cut = 1; cut < l; cut++) {
            if (((unsigned char)piece[i][cut] & 0xC0) == 0x80) continue; /* split at codepoints only */
            char left[64], right[64];
            memcpy(left, piece[i], cut); left[cut] = '\0';
            strcpy(right, piece[i] + cut);
            json_t *a = json_object_get(vocab, left), *b = json_object_get(vocab, right);
            if (a && b && nm < 512 * 8)
                mc[nm++] = (merge_cand){i, (int)json_integer_value(a), (int)json_integer_value(b), score[i]};
        }
    }
    qsort(mc, nm, sizeof *mc, cmp_merge);
    for (size_t i = 0; i < nm; i++) {
        json_t *pair = json_array();
        json_array_append_new(pair, json_string(piece[mc[i].left]));
        json_array_append_new(pair, json_string(piece[mc[i].right]));
        json_array_append_new(merges, pair);
    }
    free(mc);
    for (int i = 0; i < 3; i++)
        json_array_append_new(added, json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", i, "content", piece[i],
                                               "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", 0,
                                               "special", 1));
    json_object_set_new(root, "version", json_string("1.0"));
    json_object_set_new(root, "added_tokens", added);
    if (metaspace) { /* the newer Llama form: no normalizer, Metaspace prepending to the first segment only */
        json_object_set_new(root, "normalizer", json_null());
        json_object_set_new(root, "pre_tokenizer", json_pack("{s:s, s:s, s:s, s:b}", "type", "Metaspace",
                            "replacement", "\xE2\x96\x81", "prepend_scheme", "first", "split", 0));
    } else {
        json_object_set_new(root, "normalizer", json_pack(
            "{s:s, s:[{s:s, s:s}, {s:s, s:{s:s}, s:s}]}", "type", "Sequence", "normalizers",
            "type", "Prepend", "prepend", "\xE2\x96\x81",
            "type", "Replace", "pattern", "String", " ", "content", "\xE2\x96\x81"));
        json_object_set_new(root, "pre_tokenizer", json_null());
    }
    json_object_set_new(root, "post_processor", json_pack(
        "{s:s, s:[{s:{s:s, s:i}}, {s:{s:s, s:i}}], s:[], s:{s:{s:s, s:[i], s:[s]}}}", "type", "TemplateProcessing",
        "single", "SpecialToken", "id", "<s>", "type_id", 0, "Sequence", "id", "A", "type_id", 0, "pair",
        "special_tokens", "<s>", "id", "<s>", "ids", 1, "tokens", "<s>"));
    json_object_set_new(root, "decoder", json_pack(
        "{s:s, s:[{s:s, s:{s:s}, s:s}, {s:s}, {s:s}, {s:s, s:s, s:i, s:i}]}", "type", "Sequence", "decoders",
        "type", "Replace", "pattern", "String", "\xE2\x96\x81", "content", " ",
        "type", "ByteFallback", "type", "Fuse", "type", "Strip", "content", " ", "start", 1, "stop", 0));
    json_object_set_new(root, "model", json_pack(
        "{s:s, s:n, s:s, s:n, s:n, s:b, s:b, s:b, s:o, s:o}", "type", "BPE", "dropout", "unk_token", "<unk>",
        "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", 1, "byte_fallback", 1, "ignore_merges", 0,
        "vocab", vocab, "merges", merges));
    int rc = json_dump_file(root, path, JSON_INDENT(1));
    printf("  converted tok512.bin: %d pieces, %zu merges -> %s\n", n, nm, path);
    json_decref(root);
    for (int i = 0; i < n; i++) free(piece[i]);
    return rc;
}

static void test_json_spm(void) {
    if (!evb_test_have(TOK512, "tok512.bin as tokenizer.json") || !evb_test_have(STORIES, "tok512.bin as tokenizer.json")) return;
    const char *path = tmp_path("tok512.json");
    EVB_CHECK(write_converted_json(path, 0) == 0, "write converted tokenizer.json");
    evb_tokenizer *tj = NULL, *tb = NULL;
    int st = evb_tokenizer_load(path, &tj);
    EVB_CHECK(st == EVB_SUCCESS, "load converted tokenizer.json (%s)", evb_last_error());
    evb_tokenizer_load(TOK512, &tb);
    if (!tj || !tb) { evb_tokenizer_free(tj); evb_tokenizer_free(tb); return; }
    EVB_CHECK(evb_tokenizer_vocab_size(tj) == 512 && evb_tokenizer_bos(tj) == 1 && evb_tokenizer_eos(tj) == 2,
              "json: vocab 512, BOS 1 (from TemplateProcessing), EOS 2");
    const int32_t once[] = {1, 403, 407, 261, 378};
    check_encode(tj, "Once upon a time", 1, once, 5, "json: \"Once upon a time\" -> 1 403 407 261 378");
    check_decode(tj, once + 1, 4, "Once upon a time", 16, "json: decode without BOS strips the prefix (Strip decoder)");
    /* A leading space survives as in Hugging Face: after BOS, "\u2581" "\u2581Once" decode to "  Once" and the
     * Strip decoder takes one space off (BOS is skipped before the decoder runs). */
    int32_t *ls = NULL;
    size_t nls = 0;
    st = evb_tokenizer_encode(tj, " Once upon", 10, 1, &ls, &nls);
    EVB_CHECK(st == EVB_SUCCESS && nls >= 3 && ls[0] == 1, "json: encode \" Once upon\" with BOS");
    if (!st) check_decode(tj, ls, nls, " Once upon", 10, "json: decode(encode(\" Once upon\")) keeps the leading space");
    free(ls);

    size_t tlen = 0;
    char *text = read_all(STORIES, &tlen);
    if (!text) { evb_tokenizer_free(tj); evb_tokenizer_free(tb); return; }
    size_t head = tlen < 200000 ? tlen : 200000;
    int32_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    int s1 = evb_tokenizer_encode(tb, text, head, 1, &a, &na);
    int s2 = evb_tokenizer_encode(tj, text, head, 1, &b, &nb);
    size_t first_diff = 0;
    while (first_diff < na && first_diff < nb && a[first_diff] == b[first_diff]) first_diff++;
    EVB_CHECK(s1 == EVB_SUCCESS && s2 == EVB_SUCCESS && ids_equal(a, na, b, nb),
              "json == bin on the first %zu bytes of TinyStories (%zu vs %zu tokens, first difference at %zu)",
              head, na, nb, first_diff);
    free(b);
    s2 = evb_tokenizer_encode_naive(tj, text, 3000, 1, &b, &nb);
    int32_t *c = NULL;
    size_t nc = 0;
    s1 = evb_tokenizer_encode(tj, text, 3000, 1, &c, &nc);
    EVB_CHECK(s1 == EVB_SUCCESS && s2 == EVB_SUCCESS && ids_equal(b, nb, c, nc), "json: fast == naive on 3000 bytes");
    free(b); free(c);
    char *dec = NULL;
    size_t dlen = 0;
    st = evb_tokenizer_encode(tj, text, head, 0, &b, &nb);
    if (!st) st = evb_tokenizer_decode(tj, b, nb, &dec, &dlen);
    EVB_CHECK(st == EVB_SUCCESS && dlen == head && memcmp(dec, text, head) == 0,
              "json: decode(encode(x)) == x on 200 KB without BOS (the Strip decoder drops the prefix)");
    free(dec); free(b); free(a);

    /* Added tokens are matched in the raw text; each segment gets its own prefix, as in Hugging Face. */
    const int32_t seg[] = {1, 403, 2, 403};
    check_encode(tj, "Once</s>Once", 1, seg, 4, "json: \"Once</s>Once\" -> BOS, Once, </s>, Once");

    /* The Metaspace form (prepend_scheme "first", split false) gives the same ids; after an added token
     * there is no prefix, so the second "Once" is not the piece 403 ("\u2581Once"). */
    const char *mpath = tmp_path("tok512_metaspace.json");
    evb_tokenizer *tm = NULL;
    if (write_converted_json(mpath, 1) == 0 && evb_tokenizer_load(mpath, &tm) == EVB_SUCCESS) {
        int32_t *m = NULL;
        size_t nm = 0;
        s1 = evb_tokenizer_encode(tb, text, head, 1, &a, &na);
        s2 = evb_tokenizer_encode(tm, text, head, 1, &m, &nm);
        EVB_CHECK(s1 == EVB_SUCCESS && s2 == EVB_SUCCESS && ids_equal(a, na, m, nm),
                  "metaspace json == bin on %zu bytes", head);
        free(a); free(m);
        s2 = evb_tokenizer_encode(tm, "Once</s>Once", 12, 1, &m, &nm);
        EVB_CHECK(s2 == EVB_SUCCESS && nm > 4 && m[1] == 403 && m[2] == 2 && m[3] != 403,
                  "metaspace \"first\": no prefix after an added token");
        free(m);
    } else {
        EVB_CHECK(0, "load Metaspace tokenizer.json (%s)", evb_last_error());
    }
    evb_tokenizer_free(tm);
    free(text);
    evb_tokenizer_free(tj);
    evb_tokenizer_free(tb);
}

// ---- byte-level fixtures ----

/* GPT-2 byte-to-unicode: ' ' -> U+0120 "Ġ", and 'é' = C3 A9 -> "Ã©" (U+00C3 U+00A9). Vocab and merges:
 *   0 <|endoftext|> (added)  1 I  2 '  3 m  4 Ġ  5 h  6 Ã  7 ©  8 l  9 o  10 w  11 r  12 d
 *   rank 0  ' m     -> 13 'm        rank 6  Ġw or  -> 19 Ġwor
 *   rank 1  Ã ©     -> 14 Ã©        rank 7  l d    -> 20 ld
 *   rank 2  l l     -> 15 ll        rank 8  Ġwor ld -> 21 Ġworld
 *   rank 3  Ġ h     -> 16 Ġh        rank 9  ll o   -> 22 llo
 *   rank 4  Ġ w     -> 17 Ġw        rank 10 Ġh Ã©  -> 23 ĠhÃ©
 *   rank 5  o r     -> 18 or        rank 11 Ġ Ġ    -> 24 ĠĠ
 *   digits 25 1, 26 2, 27 3, 28 4, 29 5; rank 12 3 4 -> 32 34; rank 13 1 2 -> 30 12; rank 14 12 3 -> 31 123
 *   33 <|begin_of_text|> (added, Llama-3 fixture only)
 * "I'm héllo  world" splits (GPT-2 and Llama-3 alike) into "I" "'m" " héllo" " " " world": the two spaces
 * are "\s+(?!\S)" = the first space alone, then " ?\p{L}+" = " world"; so "ĠĠ" (rank 11) never applies.
 *   "I" -> 1;  "'m" -> 13;
 *   "Ġ h Ã © l l o": Ã© (1) -> ll (2) -> Ġh (3) -> llo (9) -> ĠhÃ© (10) = 23 22;
 *   "Ġ" -> 4;
 *   "Ġ w o r l d": Ġw (4) -> or (5) -> Ġwor (6) -> ld (7) -> Ġworld (8) = 21.
 * "12345": GPT-2 keeps it one word: 34 (12) -> 12 (13) -> (12, 34) has no merge = 30 32 29;
 *          Llama-3 splits \p{N}{1,3} into "123" "45": 12 -> 123 = 31, then 28 29. */
static const char *BL_VOCAB =
    "\"vocab\": {\"<|endoftext|>\": 0, \"I\": 1, \"'\": 2, \"m\": 3, \"\\u0120\": 4, \"h\": 5, \"\\u00c3\": 6,"
    " \"\\u00a9\": 7, \"l\": 8, \"o\": 9, \"w\": 10, \"r\": 11, \"d\": 12, \"'m\": 13, \"\\u00c3\\u00a9\": 14,"
    " \"ll\": 15, \"\\u0120h\": 16, \"\\u0120w\": 17, \"or\": 18, \"\\u0120wor\": 19, \"ld\": 20,"
    " \"\\u0120world\": 21, \"llo\": 22, \"\\u0120h\\u00c3\\u00a9\": 23, \"\\u0120\\u0120\": 24,"
    " \"1\": 25, \"2\": 26, \"3\": 27, \"4\": 28, \"5\": 29, \"12\": 30, \"123\": 31, \"34\": 32},\n"
    "\"merges\": [\"' m\", \"\\u00c3 \\u00a9\", \"l l\", \"\\u0120 h\", \"\\u0120 w\", \"o r\",\n"
    "  [\"\\u0120w\", \"or\"], \"l d\", \"\\u0120wor ld\", \"ll o\", \"\\u0120h \\u00c3\\u00a9\","
    " \"\\u0120 \\u0120\", \"3 4\", \"1 2\", \"12 3\"]";

static void write_bl_fixture(const char *path, const char *pre_tokenizer, const char *post, int with_bot) {
    char doc[4096];
    snprintf(doc, sizeof doc,
             "{\"version\": \"1.0\",\n"
             "\"added_tokens\": [{\"id\": 0, \"content\": \"<|endoftext|>\", \"special\": true}%s],\n"
             "\"normalizer\": null,\n\"pre_tokenizer\": %s,\n\"post_processor\": %s,\n"
             "\"decoder\": {\"type\": \"ByteLevel\"},\n"
             "\"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": null, \"byte_fallback\": false,\n%s}}\n",
             with_bot ? ",\n  {\"id\": 33, \"content\": \"<|begin_of_text|>\", \"special\": true}" : "",
             pre_tokenizer, post, BL_VOCAB);
    write_file(path, doc, strlen(doc));
}

static void test_json_bytelevel(void) {
    const char *hello = "I'm h\xC3\xA9llo  world";
    const int32_t want[] = {1, 13, 23, 22, 4, 21};

    const char *p1 = tmp_path("gpt2.json");
    write_bl_fixture(p1, "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true,"
                         " \"use_regex\": true}", "{\"type\": \"ByteLevel\"}", 0);
    evb_tokenizer *t = NULL;
    int st = evb_tokenizer_load(p1, &t);
    EVB_CHECK(st == EVB_SUCCESS, "load GPT-2-style fixture (%s)", evb_last_error());
    if (t) {
        EVB_CHECK(evb_tokenizer_bos(t) == -1 && evb_tokenizer_eos(t) == 0, "GPT-2 fixture: no BOS, EOS 0");
        check_encode(t, hello, 1, want, 6, "GPT-2: \"I'm h\\xc3\\xa9llo  world\" -> 1 13 23 22 4 21 (no BOS added)");
        check_decode(t, want, 6, hello, strlen(hello), "GPT-2: decode back to the text");
        const int32_t half[] = {1, 6};
        check_decode(t, half, 2, "I\xEF\xBF\xBD", 4, "GPT-2: a lone byte 0xC3 decodes to U+FFFD (valid UTF-8, as HF)");
        const int32_t num[] = {30, 32, 29};
        check_encode(t, "12345", 0, num, 3, "GPT-2: \"12345\" is one word -> 30 32 29");
        const int32_t eot[] = {1, 13, 0, 1};
        check_encode(t, "I'm<|endoftext|>I", 0, eot, 4, "GPT-2: added token matched in the text");
        int32_t *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        evb_tokenizer_encode(t, hello, strlen(hello), 0, &a, &na);
        evb_tokenizer_encode_naive(t, hello, strlen(hello), 0, &b, &nb);
        EVB_CHECK(ids_equal(a, na, b, nb), "GPT-2: fast == naive");
        free(a); free(b);
        evb_tokenizer_free(t);
    }

    const char *p2 = tmp_path("llama3.json");
    write_bl_fixture(p2,
        "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": "
        "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}\\\\p{N}]+"
        "[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"}, \"behavior\": \"Isolated\", \"invert\": false},"
        " {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}",
        "{\"type\": \"Sequence\", \"processors\": [{\"type\": \"ByteLevel\"}, {\"type\": \"TemplateProcessing\","
        " \"single\": [{\"SpecialToken\": {\"id\": \"<|begin_of_text|>\", \"type_id\": 0}},"
        " {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], \"pair\": [], \"special_tokens\":"
        " {\"<|begin_of_text|>\": {\"id\": \"<|begin_of_text|>\", \"ids\": [33], \"tokens\": [\"<|begin_of_text|>\"]}}}]}", 1);
    t = NULL;
    st = evb_tokenizer_load(p2, &t);
    EVB_CHECK(st == EVB_SUCCESS, "load Llama-3-style fixture (%s)", evb_last_error());
    if (t) {
        EVB_CHECK(evb_tokenizer_bos(t) == 33, "Llama-3 fixture: BOS 33 from TemplateProcessing");
        const int32_t want3[] = {33, 1, 13, 23, 22, 4, 21};
        check_encode(t, hello, 1, want3, 7, "Llama-3: BOS + 1 13 23 22 4 21");
        check_decode(t, want3, 7, hello, strlen(hello), "Llama-3: decode drops BOS, keeps the text");
        const int32_t num[] = {31, 28, 29};
        check_encode(t, "12345", 0, num, 3, "Llama-3: \"12345\" splits into 123|45 -> 31 28 29");
        evb_tokenizer_free(t);
    }
}

// ---- Split behaviours ----

/* A Split on the string "-" with each SplitDelimiterBehavior, seen through merges across the delimiter:
 * vocab a 0, - 1, b 2, a- 3, -b 4, -- 5; merges "a -", "- b", "- -" (in that order). Expected pieces, from
 * Hugging Face's NormalizedString::split:
 *   Removed            "a-b"  -> a | b              = 0 2
 *   Isolated           "a--b" -> a | - | - | b      = 0 1 1 2
 *   MergedWithPrevious "a--b" -> a- | - | b         = 3 1 2  (a match joins the piece before unless that was one)
 *   MergedWithNext     "a--b" -> a | - | -b         = 0 1 4
 *   Contiguous         "a--b" -> a | -- | b         = 0 5 2
 *   MergedWithPrevious, invert "a-b": a and b are the delimiters -> a | -b = 0 4 */
static void test_split_behaviors(void) {
    static const struct { const char *beh; int invert; const char *text; int32_t want[4]; size_t n; } cases[] = {
        {"Removed", 0, "a-b", {0, 2}, 2},
        {"Isolated", 0, "a--b", {0, 1, 1, 2}, 4},
        {"MergedWithPrevious", 0, "a--b", {3, 1, 2}, 3},
        {"MergedWithNext", 0, "a--b", {0, 1, 4}, 3},
        {"Contiguous", 0, "a--b", {0, 5, 2}, 3},
        {"MergedWithPrevious", 1, "a-b", {0, 4}, 2},
    };
    const char *p = tmp_path("split.json");
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char doc[1024], what[128];
        snprintf(doc, sizeof doc,
                 "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"String\": \"-\"}, \"behavior\": \"%s\","
                 " \"invert\": %s}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"-\": 1, \"b\": 2, \"a-\": 3,"
                 " \"-b\": 4, \"--\": 5}, \"merges\": [\"a -\", \"- b\", \"- -\"]}}",
                 cases[c].beh, cases[c].invert ? "true" : "false");
        write_file(p, doc, strlen(doc));
        evb_tokenizer *t = NULL;
        int st = evb_tokenizer_load(p, &t);
        snprintf(what, sizeof what, "Split \"-\" %s%s on \"%s\"", cases[c].beh, cases[c].invert ? " (invert)" : "",
                 cases[c].text);
        EVB_CHECK(st == EVB_SUCCESS, "load the %s fixture (%s)", cases[c].beh, st ? evb_last_error() : "ok");
        if (t) check_encode(t, cases[c].text, 1, cases[c].want, cases[c].n, what);
        evb_tokenizer_free(t);
    }
}

// ---- malformed input ----

static void check_error(const char *path, int want, const char *needle, const char *what) {
    evb_tokenizer *t = (evb_tokenizer *)1;
    evb_clear_error();
    int st = evb_tokenizer_load(path, &t);
    const char *msg = evb_last_error();
    EVB_CHECK(st == want && t == NULL && strstr(msg, path) && (!needle || strstr(msg, needle)),
              "%s -> status %d (%s)", what, st, msg);
}

static void test_errors(void) {
    size_t sz = 0;
    const char *p;
    const int have = evb_test_have(TOK512, "cut copies of tok512.bin, decoding ids past its vocabulary");
    if (have) {
        char *d = read_all(TOK512, &sz);
        p = tmp_path("trunc.bin");
        /* 100 bytes end exactly after token 6 (4 + 13 + 13 + 14 + 4 * 14), which is a valid 7-token file: the
         * format stores no vocabulary size, so only a cut inside a record can be detected. */
        if (d) write_file(p, d, 101);
        check_error(p, EVB_EFORMAT, "offset 100", "tokenizer.bin cut inside a record header");
        p = tmp_path("trunc2.bin");
        if (d) write_file(p, d, 110);
        check_error(p, EVB_EFORMAT, "offset 108", "tokenizer.bin cut inside a piece");
        free(d);
    }

    p = tmp_path("syntax.json");
    const char *bad = "{\n  \"model\": {\n    \"type\": \"BPE\",,\n  }\n}\n";
    write_file(p, bad, strlen(bad));
    check_error(p, EVB_EFORMAT, ":3:", "JSON syntax error on line 3");

    p = tmp_path("nomodel.json");
    write_file(p, "{\"version\": \"1.0\"}", 18);
    check_error(p, EVB_EFORMAT, "\"model\"", "tokenizer.json without model");

    p = tmp_path("wordpiece.json");
    const char *wp = "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}";
    write_file(p, wp, strlen(wp));
    check_error(p, EVB_EFORMAT, "WordPiece", "model type WordPiece");

    p = tmp_path("badmerge.json");
    const char *bm = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2},"
                     " \"merges\": [\"a b\", \"a c\"]}}";
    write_file(p, bm, strlen(bm));
    check_error(p, EVB_EFORMAT, "merges[1]", "merge naming an unknown piece");

    p = tmp_path("regex.json");
    const char *rx = "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\\\\w+\"},"
                     " \"behavior\": \"Isolated\", \"invert\": false},"
                     " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}";
    write_file(p, rx, strlen(rx));
    check_error(p, EVB_EFORMAT, "does not compile", "Split regex with an unclosed group");

    check_error(EVB_SHARED_DATA "/does/not/exist.bin", EVB_EIO, NULL, "missing file");

    evb_tokenizer *t = NULL;
    if (have && evb_tokenizer_load(TOK512, &t) == EVB_SUCCESS) {
        const int32_t ids[] = {1, 403, 512};
        char *s = (char *)1;
        size_t len = 7;
        int st = evb_tokenizer_decode(t, ids, 3, &s, &len);
        EVB_CHECK(st == EVB_ERANGE && s == NULL && strstr(evb_last_error(), "512"), "decode id 512 -> EVB_ERANGE (%s)",
                  evb_last_error());
        const int32_t neg[] = {-1};
        EVB_CHECK(evb_tokenizer_decode(t, neg, 1, &s, &len) == EVB_ERANGE, "decode id -1 -> EVB_ERANGE");
        evb_tokenizer_free(t);
    }
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/evb_tok_XXXXXX");
    if (!mkdtemp(tmpdir)) { printf("FAIL cannot create a temporary directory\n"); return 1; }
    test_bin();
    test_json_spm();
    test_json_bytelevel();
    test_split_behaviors();
    test_errors();
    for (int i = 0; i < n_made; i++) unlink(made[i]);
    rmdir(tmpdir);
    return evb_test_summary();
}
