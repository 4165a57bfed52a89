/* naive.h -- the tokenizer's naive reference (private, defined in datasets/tokenizer.c), for the tests and
 * fuzzers that compare it with the fast path. */
#ifndef EVB_DATASETS_NAIVE_H
#define EVB_DATASETS_NAIVE_H
#include "evobudget/evb_tokenizer.h"

/* The same as evb_tokenizer_encode, but merging with the reference O(n^2) loop of llama2.c run.c (scan all
 * adjacent pairs, merge the best, repeat). It gives identical ids; do not use it on long texts. */
int evb_tokenizer_encode_naive(const evb_tokenizer *t, const char *text, size_t len, int add_bos,
                               int32_t **tokens, size_t *n);
#endif
