/* test_text.c -- token windows: consecutive windows cover every token exactly once (with and without BOS,
 * with a limit), seeded sampling is reproducible and stays inside the text, and text pieces are cut
 * after newlines. */
#include "testing.h"
#include "evobudget/evobudget.h"

#include <stdlib.h>
#include <string.h>

int main(void) {
    enum { N = 1000 };
    int32_t tok[N];
    for (int i = 0; i < N; i++) tok[i] = 10 + i;

    /* With BOS: windows of BOS + 99 tokens, every token scored once. */
    evb_windows w;
    int st = evb_windows_consecutive(tok, N, 100, 1, 0, &w);
    int covered = 0, ok = st == 0 && w.n == 11;
    for (int i = 0; ok && i < w.n; i++) {
        const int32_t *row = w.tokens + (size_t)i * w.seq_len;
        ok = row[0] == 1;
        for (int p = 1; ok && p < w.len[i]; p++) ok = row[p] == 10 + covered++;
    }
    EVB_CHECK(ok && covered == N, "BOS windows: 11 windows score each of %d tokens once (scored %d)", N, covered);
    EVB_CHECK(w.len[10] == 1000 - 10 * 99 + 1, "the last window is shorter (%d positions)", w.len[10]);
    evb_windows_free(&w);

    /* Without BOS: the first token is context only; windows overlap by one token. */
    st = evb_windows_consecutive(tok, N, 100, -1, 0, &w);
    size_t scored = 0;
    ok = st == 0;
    for (int i = 0; ok && i < w.n; i++) {
        ok = w.tokens[(size_t)i * w.seq_len] == 10 + i * 99;
        scored += evb_window_scored(&w, i);
    }
    EVB_CHECK(ok && scored == N - 1, "no-BOS windows score %zu = N - 1 tokens", scored);
    evb_windows_free(&w);

    st = evb_windows_consecutive(tok, N, 100, 1, 250, &w);
    scored = 0;
    for (int i = 0; st == 0 && i < w.n; i++) scored += evb_window_scored(&w, i);
    EVB_CHECK(st == 0 && scored == 250 && w.n == 3, "max_scored 250 gives 3 windows scoring 250 tokens");
    evb_windows_free(&w);
    EVB_CHECK(evb_windows_consecutive(tok, N, 1, 1, 0, &w) == EVB_EINVAL, "a window of 1 position is refused");

    /* Seeded sampling: same seed, same windows; another seed, other windows; all inside the text. */
    evb_windows a, b, c;
    evb_windows_sample(tok, N, 64, 1, 20, 42, &a);
    evb_windows_sample(tok, N, 64, 1, 20, 42, &b);
    evb_windows_sample(tok, N, 64, 1, 20, 43, &c);
    EVB_CHECK(memcmp(a.tokens, b.tokens, sizeof(int32_t) * 20 * 64) == 0, "the same seed gives the same windows");
    EVB_CHECK(memcmp(a.tokens, c.tokens, sizeof(int32_t) * 20 * 64) != 0, "another seed gives other windows");
    ok = 1;
    for (int i = 0; i < 20; i++) {
        const int32_t *row = a.tokens + (size_t)i * 64;
        ok &= a.len[i] == 64 && row[0] == 1 && row[1] >= 10 && row[63] <= 10 + N - 1 && row[63] == row[1] + 62;
    }
    EVB_CHECK(ok, "sampled windows are BOS + 63 consecutive tokens inside the text");
    evb_windows_free(&a); evb_windows_free(&b); evb_windows_free(&c);
    EVB_CHECK(evb_windows_sample(tok, 10, 64, 1, 1, 1, &a) == EVB_EINVAL, "a text shorter than a window is refused");

    /* Pieces: cut after the last newline within the limit; the concatenation covers the whole text. */
    evb_tokenizer *t = NULL;
    /* Any tokenizer will do: stories260K's tok512.bin, or the demo model's tokenizer.json where it is missing. */
    const char *tok_path = EVB_SHARED_DATA "/models/stories260K/tok512.bin";
    if (!evb_test_readable(tok_path)) tok_path = EVB_SOURCE_DIR "/assets/demo/tokenizer.json";
    st = evb_tokenizer_load(tok_path, &t);
    EVB_CHECK(st == 0, "load %s", tok_path);
    if (t) {
        const char *text = "one two\nthree four five\nsix\n";
        int32_t *pieces, *p1, *p2, *p3;
        size_t np, n1, n2, n3;
        evb_text_tokenize(t, text, strlen(text), 16, &pieces, &np);
        /* With a 16-byte limit the cuts fall after "one two\n" and after "three four five\n". */
        evb_tokenizer_encode(t, "one two\n", 8, 0, &p1, &n1);
        evb_tokenizer_encode(t, "three four five\n", 16, 0, &p2, &n2);
        evb_tokenizer_encode(t, "six\n", 4, 0, &p3, &n3);
        EVB_CHECK(np == n1 + n2 + n3 && memcmp(pieces, p1, n1 * 4) == 0 && memcmp(pieces + n1, p2, n2 * 4) == 0 &&
                  memcmp(pieces + n1 + n2, p3, n3 * 4) == 0, "pieces are cut after newlines and encoded separately");
        free(pieces); free(p1); free(p2); free(p3);
        evb_tokenizer_free(t);
    }
    return evb_test_summary();
}
