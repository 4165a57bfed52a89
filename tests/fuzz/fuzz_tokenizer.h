/* fuzz_tokenizer.h -- what the tokenizer targets do with a tokenizer that loaded: encode a fixed UTF-8
 * text and a slice of the input itself with both merge engines (they must agree, see evb_tokenizer.h),
 * then decode the ids (every id encode returns lies in the vocabulary, so decode must succeed). */
#ifndef EVB_FUZZ_TOKENIZER_H
#define EVB_FUZZ_TOKENIZER_H
#include "evobudget/evb_tokenizer.h"
#include "datasets/naive.h"
#include "evobudget/evb_status.h"
#include "fuzz_common.h"

/* Longest slice of the input encoded (the reference merge loop is quadratic). */
#define FUZZ_SLICE 256

static inline void fuzz_encode_decode(const evb_tokenizer *t, const char *text, size_t len) {
    int32_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    for (int add_bos = 0; add_bos < 2; add_bos++) {
        int s1 = evb_tokenizer_encode(t, text, len, add_bos, &a, &na);
        int s2 = evb_tokenizer_encode_naive(t, text, len, add_bos, &b, &nb);
        FUZZ_CHECK(s1 == s2, "encode %d, encode_naive %d", s1, s2);
        if (s1 == EVB_SUCCESS) {
            FUZZ_CHECK(na == nb && (na == 0 || memcmp(a, b, na * sizeof *a) == 0),
                       "fast and naive merging differ (%zu vs %zu ids)", na, nb);
            char *out = NULL;
            size_t out_len = 0;
            int s3 = evb_tokenizer_decode(t, a, na, &out, &out_len);
            FUZZ_CHECK(s3 == EVB_SUCCESS, "decode of encode's output: %s", evb_last_error());
            FUZZ_CHECK(out[out_len] == '\0', "decode output is not terminated");
            free(out);
        } else {
            /* Only a byte without a fallback id in a tokenizer.bin is refused. */
            FUZZ_CHECK(s1 == EVB_ERANGE, "encode status %d: %s", s1, evb_last_error());
        }
        free(a); free(b);
        a = b = NULL;
    }
}

static inline void fuzz_tokenizer_use(const evb_tokenizer *t, const uint8_t *data, size_t size) {
    int V = evb_tokenizer_vocab_size(t);
    FUZZ_CHECK(V > 0, "vocab size %d", V);
    FUZZ_CHECK(evb_tokenizer_bos(t) >= -1 && evb_tokenizer_bos(t) < V, "BOS %d", evb_tokenizer_bos(t));
    FUZZ_CHECK(evb_tokenizer_eos(t) >= -1 && evb_tokenizer_eos(t) < V, "EOS %d", evb_tokenizer_eos(t));
    static const char fixed[] = "Once upon a time, h\xC3\xA9llo  world! I'm 12345 \xE2\x96\x81x\t\r\n"
                                "\xE4\xB8\xAD\xF0\x9F\x98\x80 <s></s><|endoftext|> '\xFF";
    fuzz_encode_decode(t, fixed, sizeof fixed - 1);
    size_t off = size > FUZZ_SLICE ? size / 2 : 0;
    size_t len = size - off > FUZZ_SLICE ? FUZZ_SLICE : size - off;
    fuzz_encode_decode(t, (const char *)data + off, len);
    /* Every id decodes alone; an id outside the vocabulary is refused. */
    char *out = NULL;
    size_t out_len = 0;
    for (int32_t id = 0; id < V && id < 512; id++) {
        FUZZ_CHECK(evb_tokenizer_decode(t, &id, 1, &out, &out_len) == EVB_SUCCESS, "decode id %d", (int)id);
        free(out);
    }
    int32_t bad[2] = {0, V};
    FUZZ_CHECK(evb_tokenizer_decode(t, bad, 2, &out, &out_len) == EVB_ERANGE, "id %d was not refused", V);
}
#endif
