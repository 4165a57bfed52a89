/* evb_text.h -- text files to token sequences, and fixed-length windows for calibration and perplexity.
 *
 * The windowing convention is llama2.c's (and the one stories260K's reference perplexity uses): the text is
 * encoded without BOS in pieces of at most piece_bytes bytes, each cut after a newline (every piece gets
 * the tokenizer's dummy-prefix space), then cut into windows of seq_len positions: BOS followed by
 * seq_len - 1 text tokens, every text token scored, windows advancing by seq_len - 1 tokens. Without a
 * BOS a window is seq_len text tokens, its first one only context, again advancing by seq_len - 1, so
 * every token but the text's first is scored exactly once. The last window may be shorter. */
#ifndef EVB_TEXT_H
#define EVB_TEXT_H

#include <stddef.h>
#include <stdint.h>
#include "evobudget/evb_tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Reads a whole text file into a malloc'd NUL-terminated buffer. An empty file is EVB_EFORMAT. */
int evb_text_read(const char *path, char **text, size_t *len);

/* Encodes text in pieces of at most piece_bytes (0: the whole text as one piece), no BOS. */
int evb_text_tokenize(const evb_tokenizer *t, const char *text, size_t len, size_t piece_bytes,
                      int32_t **tokens, size_t *n);

/* evb_text_read then evb_text_tokenize: the tokens of a text file. */
int evb_text_tokenize_file(const evb_tokenizer *t, const char *path, size_t piece_bytes, int32_t **tokens, size_t *n);

typedef struct evb_windows {
    int      n;          /* windows */
    int      seq_len;    /* positions per window (capacity) */
    int32_t *tokens;     /* [n, seq_len] ids; unused tail positions are 0 */
    int     *len;        /* [n] positions used in each window; positions 1 .. len-1 are scored */
} evb_windows;

/* Consecutive windows over the whole token stream (as described above), stopping once max_scored tokens
 * (0: no limit) are covered. bos < 0 means no BOS. */
int evb_windows_consecutive(const int32_t *tokens, size_t n, int seq_len, int bos, size_t max_scored,
                            evb_windows *w);
/* count windows of exactly seq_len positions at offsets drawn uniformly with the given seed (the same seed
 * gives the same windows on every machine). */
int evb_windows_sample(const int32_t *tokens, size_t n, int seq_len, int bos, int count, uint64_t seed,
                       evb_windows *w);
void evb_windows_free(evb_windows *w);
/* The windows of a text file: its tokens (evb_text_tokenize in pieces of piece_bytes), then count windows
 * sampled with seed (count > 0) or consecutive windows covering at most max_scored tokens (count 0; 0: all).
 * BOS is the tokenizer's. */
int evb_windows_from_file(const evb_tokenizer *t, const char *path, size_t piece_bytes, int seq_len, int count,
                          uint64_t seed, size_t max_scored, evb_windows *w);
/* The scored positions of all windows: sum of len - 1. */
size_t evb_windows_scored(const evb_windows *w);
/* A malloc'd copy of s[0..n) with each invalid UTF-8 sequence (its maximal valid prefix, as WHATWG and Rust's
 * from_utf8_lossy count) replaced by U+FFFD; NULL when out of memory. */
char *evb_text_utf8_lossy(const char *s, size_t n, size_t *out_len);

/* The windows [i, i + B) that one forward of at most `batch` windows runs: consecutive windows of one
 * length T (written to *T). Windows are stored seq_len apart and a batch needs them T apart, so a shorter
 * window runs alone. Returns B. */
static inline int evb_windows_batch(const evb_windows *w, int i, int batch, int *T) {
    int B = 1;
    *T = w->len[i];
    while (B < batch && i + B < w->n && w->len[i + B] == *T) B++;
    return *T != w->seq_len ? 1 : B;
}

/* Tokens a window scores: len - 1. */
static inline int evb_window_scored(const evb_windows *w, int i) { return w->len[i] - 1; }

#ifdef __cplusplus
}
#endif
#endif
