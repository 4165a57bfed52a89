/* text.c -- text files, tokenisation in pieces, and fixed-length windows (see evb_text.h). */
#include "evobudget/evb_text.h"
#include "evobudget/evb_status.h"
#include "core/rng.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int evb_text_read(const char *path, char **text, size_t *len) {
    *text = NULL; *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) EVB_ERRORF(EVB_EIO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n < cap - 1) break;
        char *grown = realloc(buf, cap * 2);
        if (!grown) { free(buf); buf = NULL; break; }
        buf = grown; cap *= 2;
    }
    int err = ferror(f);
    fclose(f);
    if (!buf) EVB_ERRORF(EVB_ENOMEM, "%s: out of memory reading the file", path);
    if (err) { free(buf); EVB_ERRORF(EVB_EIO, "%s: read error", path); }
    if (n == 0) { free(buf); EVB_ERRORF(EVB_EFORMAT, "%s: the file is empty", path); }
    if (memchr(buf, '\0', n)) { free(buf); EVB_ERRORF(EVB_EFORMAT, "%s: holds NUL bytes; expected a text file", path); }
    buf[n] = '\0';
    *text = buf; *len = n;
    return EVB_SUCCESS;
}

int evb_text_tokenize(const evb_tokenizer *t, const char *text, size_t len, size_t piece_bytes,
                      int32_t **tokens, size_t *n) {
    *tokens = NULL; *n = 0;
    size_t cap = len / 2 + 16, count = 0;
    int32_t *out = malloc(cap * sizeof *out);
    if (!out) EVB_ERROR("out of memory tokenising text", EVB_ENOMEM);
    size_t pos = 0;
    while (pos < len) {
        size_t end = len;
        if (piece_bytes && len - pos > piece_bytes) {
            /* Cut after the last newline within the piece; a piece with no newline is cut at the limit,
             * backed off to a UTF-8 character boundary. */
            end = pos + piece_bytes;
            size_t nl = end;
            while (nl > pos && text[nl - 1] != '\n') nl--;
            if (nl > pos) end = nl;
            else while (end > pos + 1 && ((unsigned char)text[end] & 0xC0) == 0x80) end--;
        }
        int32_t *piece;
        size_t np;
        int s = evb_tokenizer_encode(t, text + pos, end - pos, 0, &piece, &np);
        if (s) { free(out); return s; }
        if (count + np > cap) {
            while (count + np > cap) cap *= 2;
            int32_t *grown = realloc(out, cap * sizeof *out);
            if (!grown) { free(piece); free(out); EVB_ERROR("out of memory tokenising text", EVB_ENOMEM); }
            out = grown;
        }
        memcpy(out + count, piece, np * sizeof *piece);
        count += np;
        free(piece);
        pos = end;
    }
    *tokens = out; *n = count;
    return EVB_SUCCESS;
}

// ---- windows ----

static int windows_alloc(evb_windows *w, int n, int seq_len) {
    memset(w, 0, sizeof *w);
    w->tokens = calloc((size_t)n * seq_len, sizeof *w->tokens);
    w->len = calloc((size_t)n, sizeof *w->len);
    if (!w->tokens || !w->len) { evb_windows_free(w); EVB_ERROR("out of memory for windows", EVB_ENOMEM); }
    w->n = n; w->seq_len = seq_len;
    return EVB_SUCCESS;
}

void evb_windows_free(evb_windows *w) {
    free(w->tokens); free(w->len);
    memset(w, 0, sizeof *w);
}

/* Fills window i from tokens[start ...] with at most seq_len positions; returns text tokens consumed. */
static size_t fill(evb_windows *w, int i, const int32_t *tokens, size_t n, size_t start, int bos) {
    int32_t *dst = w->tokens + (size_t)i * w->seq_len;
    int p = 0;
    if (bos >= 0) dst[p++] = bos;
    size_t k = start;
    while (p < w->seq_len && k < n) dst[p++] = tokens[k++];
    w->len[i] = p;
    return k - start;
}

int evb_windows_consecutive(const int32_t *tokens, size_t n, int seq_len, int bos, size_t max_scored,
                            evb_windows *w) {
    memset(w, 0, sizeof *w);
    if (seq_len < 2) EVB_ERRORF(EVB_EINVAL, "--seq-len %d: a window needs at least 2 positions", seq_len);
    size_t step = (size_t)seq_len - 1, avail = bos >= 0 ? n : (n > 0 ? n - 1 : 0);
    if (max_scored && max_scored < avail) avail = max_scored;
    if (avail == 0) EVB_ERROR("the text is too short: no token to score", EVB_EINVAL);
    int count = (int)((avail + step - 1) / step);
    int s = windows_alloc(w, count, seq_len);
    if (s) return s;
    for (int i = 0; i < count; i++) {
        size_t start = (size_t)i * step;
        fill(w, i, tokens, n, start, bos);
        size_t want = avail - (size_t)i * step < step ? avail - (size_t)i * step : step; /* tokens to score */
        w->len[i] = (int)want + 1;
    }
    return EVB_SUCCESS;
}

int evb_windows_sample(const int32_t *tokens, size_t n, int seq_len, int bos, int count, uint64_t seed,
                       evb_windows *w) {
    memset(w, 0, sizeof *w);
    if (seq_len < 2) EVB_ERRORF(EVB_EINVAL, "sequence length %d: a window needs at least 2 positions", seq_len);
    if (count < 1) EVB_ERRORF(EVB_EINVAL, "%d windows requested; need at least 1", count);
    size_t need = bos >= 0 ? (size_t)seq_len - 1 : (size_t)seq_len;
    if (n < need) EVB_ERRORF(EVB_EINVAL, "the text has %zu tokens, fewer than one window of %zu", n, need);
    int s = windows_alloc(w, count, seq_len);
    if (s) return s;
    uint64_t state = seed;
    size_t span = n - need + 1;
    for (int i = 0; i < count; i++) {
        size_t start = (size_t)(evb_splitmix64(&state) % span);
        fill(w, i, tokens, n, start, bos);
    }
    return EVB_SUCCESS;
}

int evb_text_tokenize_file(const evb_tokenizer *t, const char *path, size_t piece_bytes, int32_t **tokens, size_t *n) {
    char *text = NULL;
    size_t len = 0;
    *tokens = NULL;
    *n = 0;
    int s = evb_text_read(path, &text, &len);
    if (!s) s = evb_text_tokenize(t, text, len, piece_bytes, tokens, n);
    free(text);
    return s;
}

int evb_windows_from_file(const evb_tokenizer *t, const char *path, size_t piece_bytes, int seq_len, int count,
                          uint64_t seed, size_t max_scored, evb_windows *w) {
    size_t n = 0;
    int32_t *tok = NULL;
    memset(w, 0, sizeof *w);
    int s = evb_text_tokenize_file(t, path, piece_bytes, &tok, &n);
    if (!s && count > 0) s = evb_windows_sample(tok, n, seq_len, evb_tokenizer_bos(t), count, seed, w);
    else if (!s) s = evb_windows_consecutive(tok, n, seq_len, evb_tokenizer_bos(t), max_scored, w);
    free(tok);
    return s;
}

size_t evb_windows_scored(const evb_windows *w) {
    size_t n = 0;
    for (int i = 0; i < w->n; i++) n += (size_t)w->len[i] - 1;
    return n;
}

char *evb_text_utf8_lossy(const char *s, size_t n, size_t *out_len) {
    char *o = malloc(3 * n + 1);
    if (!o) return NULL;
    size_t k = 0;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned char c = u[i];
        int l = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        unsigned char lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80, hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
        size_t j = i + 1;
        if (l > 1 && j < n && u[j] >= lo && u[j] <= hi)
            for (j++; j < i + (size_t)l && j < n && (u[j] & 0xC0) == 0x80; j++) {}
        if (l && j - i == (size_t)l) { memcpy(o + k, s + i, (size_t)l); k += (size_t)l; }
        else { memcpy(o + k, "\xEF\xBF\xBD", 3); k += 3; }
        i = j;
    }
    o[k] = '\0';
    *out_len = k;
    return o;
}
