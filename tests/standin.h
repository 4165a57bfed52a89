/* standin.h -- a stand-in for stories260K that the tests make themselves, for machines without ../shared/data:
 * a llama2.c checkpoint with stories260K's exact shapes (dim 64, hidden 172, 5 layers, 8/4 heads, vocab 512,
 * tied, 260,032 parameters) and seeded random weights, a llama2.c tokenizer.bin of 512 pieces (the specials,
 * the 256 byte pieces, the printable ASCII characters and the most frequent character pairs of the text), and
 * the demo model's calibration text (assets/demo/calib.txt, shipped with the project) as its corpus.
 *
 * Checks that hold for any model of this shape (fast path against naive reference, statistics against a
 * direct computation, budgets, file formats) run on it; checks of stories260K's own outputs (llama2.c's
 * reference tokens, its perplexity) cannot, and skip. */
#ifndef EVB_STANDIN_H
#define EVB_STANDIN_H
#include "testing.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STANDIN_TEXT EVB_SOURCE_DIR "/assets/demo/calib.txt"

static inline uint64_t standin_next(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [-a, a]. */
static inline float standin_uniform(uint64_t *s, float a) {
    return a * (float)((double)(standin_next(s) >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

static inline int standin_floats(FILE *f, uint64_t *seed, size_t n, float a, float constant) {
    for (size_t i = 0; i < n; i++) {
        float v = a > 0 ? standin_uniform(seed, a) : constant;
        if (fwrite(&v, 4, 1, f) != 1) return 1;
    }
    return 0;
}

/* Writes path: a llama2.c version-0 checkpoint with stories260K's shapes and weights of variance 1/fan-in. */
static inline int standin_write_model(const char *path) {
    enum { D = 64, F = 172, L = 5, H = 8, KV = 4, V = 512, S = 512, E = D / H };
    const int32_t hdr[7] = {D, F, L, H, KV, V, S};
    FILE *f = fopen(path, "wb");
    if (!f) return 1;
    uint64_t seed = 260032;
    const float ad = sqrtf(3.0f / D), af = sqrtf(3.0f / F);
    int bad = fwrite(hdr, 4, 7, f) != 7;
    bad |= standin_floats(f, &seed, (size_t)V * D, 1.0f, 0);      /* token embedding */
    bad |= standin_floats(f, &seed, (size_t)L * D, 0, 1.0f);       /* rms_att */
    bad |= standin_floats(f, &seed, (size_t)L * D * D, ad, 0);     /* wq */
    bad |= standin_floats(f, &seed, (size_t)L * D * KV * E, ad, 0); /* wk */
    bad |= standin_floats(f, &seed, (size_t)L * D * KV * E, ad, 0); /* wv */
    bad |= standin_floats(f, &seed, (size_t)L * D * D, ad, 0);     /* wo */
    bad |= standin_floats(f, &seed, (size_t)L * D, 0, 1.0f);       /* rms_ffn */
    bad |= standin_floats(f, &seed, (size_t)L * F * D, ad, 0);     /* w1 (gate) */
    bad |= standin_floats(f, &seed, (size_t)L * D * F, af, 0);     /* w2 (down) */
    bad |= standin_floats(f, &seed, (size_t)L * F * D, ad, 0);     /* w3 (up) */
    bad |= standin_floats(f, &seed, D, 0, 1.0f);                   /* rms_final */
    bad |= standin_floats(f, &seed, (size_t)S * E, 0, 0.0f);       /* freq_cis (unused) */
    bad |= fclose(f) != 0;
    return bad;
}

static inline int standin_piece(FILE *f, float score, const char *s, int len) {
    return fwrite(&score, 4, 1, f) != 1 || fwrite(&len, 4, 1, f) != 1 || fwrite(s, 1, (size_t)len, f) != (size_t)len;
}

/* Writes path: a llama2.c tokenizer.bin of 512 pieces built from text. */
static inline int standin_write_tokenizer(const char *path, const char *text, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return 1;
    int max_len = 8, bad = fwrite(&max_len, 4, 1, f) != 1, n = 0;
    bad |= standin_piece(f, 0, "<unk>", 5); n++;
    bad |= standin_piece(f, 0, "\n<s>\n", 5); n++;
    bad |= standin_piece(f, 0, "\n</s>\n", 6); n++;
    for (int b = 0; b < 256; b++, n++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", b);
        bad |= standin_piece(f, 0, s, 6);
    }
    for (int c = 32; c < 127; c++, n++) { char s = (char)c; bad |= standin_piece(f, -1e6f, &s, 1); }
    /* The most frequent pairs of printable characters, most frequent first (ties by the pair's bytes). */
    static unsigned count[95 * 95];
    memset(count, 0, sizeof count);
    for (size_t i = 0; i + 1 < len; i++) {
        int a = (unsigned char)text[i] - 32, b = (unsigned char)text[i + 1] - 32;
        if (a >= 0 && a < 95 && b >= 0 && b < 95) count[a * 95 + b]++;
    }
    for (float score = -1.0f; n < 512; n++, score -= 1.0f) {
        int best = 0;
        for (int k = 1; k < 95 * 95; k++) if (count[k] > count[best]) best = k;
        char s[2] = {(char)(best / 95 + 32), (char)(best % 95 + 32)};
        count[best] = 0;
        bad |= standin_piece(f, score, s, 2);
    }
    bad |= fclose(f) != 0;
    return bad;
}

/* For tests of the program: the stand-in's files in dir (created by the caller): dir/standin.bin and, beside
 * it under llama2.c's name for a 512-piece vocabulary, dir/tok512.bin (built from text, len bytes). */
static inline int standin_write_files(const char *dir, const char *text, size_t len) {
    char path[1024];
    snprintf(path, sizeof path, "%s/standin.bin", dir);
    if (standin_write_model(path)) return 1;
    snprintf(path, sizeof path, "%s/tok512.bin", dir);
    return standin_write_tokenizer(path, text, len);
}

/* The model and calibration text a test of the program runs on: stories260K and the TinyStories text from
 * ../shared/data where they are readable; else the stand-in, written into dir, and the demo's calibration
 * text, with one NOTE line. Returns 1 for the stand-in, 0 for the real data, -1 on a write error. */
static inline int standin_or_stories(const char *dir, char *model, size_t nm, char *calib, size_t nc) {
    const char *sm = EVB_SHARED_DATA "/models/stories260K/stories260K.bin";
    const char *sc = EVB_SHARED_DATA "/text/tinystories-valid-head/tinystories_valid_head.txt";
    if (evb_test_readable(sm) && evb_test_readable(sc)) {
        snprintf(model, nm, "%s", sm);
        snprintf(calib, nc, "%s", sc);
        return 0;
    }
    printf("NOTE %s or %s is missing: running on a random-weight stand-in of stories260K's shapes (tests/standin.h) "
           "and %s\n", sm, sc, STANDIN_TEXT);
    snprintf(model, nm, "%s/standin.bin", dir);
    snprintf(calib, nc, "%s", STANDIN_TEXT);
    FILE *f = fopen(STANDIN_TEXT, "rb");
    if (!f) return -1;
    static char text[1 << 20];
    size_t len = fread(text, 1, sizeof text, f);
    fclose(f);
    return standin_write_files(dir, text, len) ? -1 : 1;
}
#endif
