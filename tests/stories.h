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

/* Loads the model and tokenizer and encodes the first max_bytes of the text (0: all of it). */
static inline int stories_load(stories *s, size_t max_bytes) {
    char *text = NULL;
    size_t len = 0;
    *s = (stories){0};
    int st = evb_model_load(EVB_SHARED_DATA "/models/stories260K/stories260K.bin", &s->m);
    if (!st) st = evb_tokenizer_load(EVB_SHARED_DATA "/models/stories260K/tok512.bin", &s->t);
    if (!st) st = evb_text_read(EVB_SHARED_DATA "/text/tinystories-valid-head/tinystories_valid_head.txt", &text, &len);
    if (!st) st = evb_text_tokenize(s->t, text, max_bytes && max_bytes < len ? max_bytes : len, 4000, &s->tok, &s->n);
    free(text);
    return st;
}

static inline void stories_free(stories *s) {
    free(s->tok);
    evb_tokenizer_free(s->t);
    evb_model_free(s->m);
    *s = (stories){0};
}
#endif
