/* stories.h -- the real-data fixture several tests share: stories260K, its tokenizer, and the TinyStories
 * validation head encoded as llama2.c does (pieces of at most 4,000 bytes cut after a newline); where
 * ../shared/data is missing, tests/standin.h's stand-in of the same shapes. */
#ifndef EVB_STORIES_H
#define EVB_STORIES_H
#include "testing.h"
#include "evobudget/evobudget.h"

#include <stdlib.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include "standin.h"

typedef struct stories {
    evb_model     *m;
    evb_tokenizer *t;
    int32_t       *tok;  /* [n] token ids, no BOS */
    size_t         n;
    int            standin;         /* 1: ../shared/data is missing and this is tests/standin.h's stand-in */
    char           standin_dir[64]; /* where the stand-in's files lie ("" when none) */
} stories;

#define STORIES_MODEL EVB_SHARED_DATA "/models/stories260K/stories260K.bin"
#define STORIES_TOK   EVB_SHARED_DATA "/models/stories260K/tok512.bin"
#define STORIES_TEXT  EVB_SHARED_DATA "/text/tinystories-valid-head/tinystories_valid_head.txt"

/* 1 when stories260K, its tokenizer and the TinyStories text are all readable; otherwise one SKIP line for
 * the part named (see evb_test_have) and 0. */
static inline int stories_have(const char *part) {
    return evb_test_have(STORIES_MODEL, part) && evb_test_have(STORIES_TOK, part) && evb_test_have(STORIES_TEXT, part);
}

/* Loads the model and tokenizer and encodes the first max_bytes of the text (0: all of it). Where
 * ../shared/data is missing it loads tests/standin.h's stand-in instead (same shapes, random weights, the demo
 * model's calibration text), says so in one line, and sets s->standin. */
static inline int stories_load(stories *s, size_t max_bytes) {
    char *text = NULL;
    size_t len = 0;
    *s = (stories){0};
    const char *model = STORIES_MODEL, *tok = STORIES_TOK, *corpus = STORIES_TEXT;
    char mpath[128], tpath[128];
    if (!evb_test_readable(STORIES_MODEL) || !evb_test_readable(STORIES_TOK) || !evb_test_readable(STORIES_TEXT)) {
        static int made = 0;
        snprintf(s->standin_dir, sizeof s->standin_dir, "/tmp/evb_standin_%ld_%d", (long)getpid(), made++);
        if (mkdir(s->standin_dir, 0700) != 0) return EVB_EIO;
        s->standin = 1;
        corpus = STANDIN_TEXT;
        snprintf(mpath, sizeof mpath, "%s/standin.bin", s->standin_dir);
        snprintf(tpath, sizeof tpath, "%s/tok512.bin", s->standin_dir);
        model = mpath; tok = tpath;
        printf("NOTE %s is missing: running on a random-weight stand-in of its shapes (tests/standin.h) and %s\n",
               STORIES_MODEL, STANDIN_TEXT);
        int st = evb_text_read(corpus, &text, &len);
        if (!st && (standin_write_model(mpath) || standin_write_tokenizer(tpath, text, len))) st = EVB_EIO;
        free(text);
        text = NULL;
        if (st) return st;
    }
    int st = evb_model_load(model, &s->m);
    if (!st) st = evb_tokenizer_load(tok, &s->t);
    if (!st) st = evb_text_read(corpus, &text, &len);
    if (!st) st = evb_text_tokenize(s->t, text, max_bytes && max_bytes < len ? max_bytes : len, 4000, &s->tok, &s->n);
    free(text);
    return st;
}

static inline void stories_free(stories *s) {
    free(s->tok);
    evb_tokenizer_free(s->t);
    evb_model_free(s->m);
    if (s->standin_dir[0]) {
        char path[128];
        snprintf(path, sizeof path, "%s/standin.bin", s->standin_dir); remove(path);
        snprintf(path, sizeof path, "%s/tok512.bin", s->standin_dir); remove(path);
        remove(s->standin_dir);
    }
    *s = (stories){0};
}
#endif
