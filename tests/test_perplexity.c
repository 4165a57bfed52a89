/* test_perplexity.c -- held-out perplexity of stories260K on the TinyStories validation head, with the
 * windowing of the model's SOURCE.md (llama2.c's forward and tokenizer gave 5.34 over 392,871 tokens):
 * the text encoded in pieces of at most 4,000 bytes cut after a newline, windows of BOS + 511 tokens. */
#include "stories.h"

#include <stdlib.h>

int main(int argc, char **argv) {
    (void)argc;
    evb_blas_fix_core(argv);
    evb_init();
    stories S;
    size_t scored = 0;
    evb_windows w = {0};
    evb_state *s = NULL;
    double nll = 0;
    /* stories260K's own perplexity: nothing else can stand in for it. */
    if (!stories_have("stories260K's perplexity on TinyStories (SOURCE.md)")) return evb_test_summary();
    int st = stories_load(&S, 0);
    evb_model *m = S.m;
    if (!st) st = evb_windows_consecutive(S.tok, S.n, 512, evb_tokenizer_bos(S.t), 0, &w);
    if (!st) st = evb_state_alloc(m, 8, 512, &s);
    if (!st) st = evb_eval_nll(m, s, &w, 8, &nll, &scored, NULL, NULL);
    EVB_CHECK(st == 0, "evaluate stories260K on tinystories-valid-head (%s)", evb_last_error());
    EVB_CHECK(scored == 392871, "392,871 tokens scored, as SOURCE.md (got %zu)", scored);
    double ppl = exp(nll / (double)scored);
    EVB_CHECK(fabs(ppl - 5.34) / 5.34 < 0.02, "perplexity %.4f within 2%% of 5.34", ppl);
    evb_state_free(s);
    evb_windows_free(&w);
    stories_free(&S);
    return evb_test_summary();
}
