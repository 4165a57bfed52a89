/* stories.h -- the real-data fixture several tests share: stories260K, its tokenizer, and the TinyStories
 * validation head encoded as llama2.c does (pieces of at most 4,000 bytes cut after a newline). */
#ifndef EVB_STORIES_H
#define EVB_STORIES_H
#include "testing.h"
#include "evobudget/evobudget.h"

#include <stdlib.h>

typedef struct stories {
    evb_model     *m;
    evb_tokenizer *t;
    int32_t       *tok;  /* [n] token ids, no BOS */
    size_t         n;
} stories;

#define STORIES_MODEL EVB_SHARED_DATA "/models/stories260K/stories260K.bin"
#define STORIES_TOK   EVB_SHARED_DATA "/models/stories260K/tok512.bin"
#define STORIES_TEXT  EVB_SHARED_DATA "/text/tinystories-valid-head/tinystories_valid_head.txt"

/* 1 when stories260K, its tokenizer and the TinyStories text are all readable; otherwise one SKIP line for
 * the part named (see evb_test_have) and 0. */
static inline int stories_have(const char *part) {
    return evb_test_have(STORIES_MODEL, part) && evb_test_have(STORIES_TOK, part) && evb_test_have(STORIES_TEXT, part);
}

/* Loads the model and tokenizer and encodes the first max_bytes of the text (0: all of it). When the data is
 * missing it prints a SKIP line for the part named and returns EVB_TEST_SKIPPED. */
static inline int stories_load_part(stories *s, size_t max_bytes, const char *part) {
    char *text = NULL;
    size_t len = 0;
    *s = (stories){0};
    if (!stories_have(part)) return EVB_TEST_SKIPPED;
    int st = evb_model_load(STORIES_MODEL, &s->m);
    if (!st) st = evb_tokenizer_load(STORIES_TOK, &s->t);
    if (!st) st = evb_text_read(STORIES_TEXT, &text, &len);
    if (!st) st = evb_text_tokenize(s->t, text, max_bytes && max_bytes < len ? max_bytes : len, 4000, &s->tok, &s->n);
    free(text);
    return st;
}

#define stories_load(s, max_bytes) stories_load_part((s), (max_bytes), "the checks on stories260K and TinyStories")

static inline void stories_free(stories *s) {
    free(s->tok);
    evb_tokenizer_free(s->t);
    evb_model_free(s->m);
    *s = (stories){0};
}
#endif
