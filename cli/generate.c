/* generate.c -- `evobudget generate`: greedy decoding from a prompt. */
#define _POSIX_C_SOURCE 200809L
#include "cli/cli.h"
#include "evobudget/evb_calib.h"
#include "evobudget/evb_db.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


static int parse_token_list(const char *s, int32_t **out, size_t *n) {
    size_t cap = strlen(s) / 2 + 2, k = 0;
    int32_t *t = malloc(cap * sizeof *t);
    if (!t) return usage_error("out of memory");
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < INT32_MIN || x > INT32_MAX) { free(t); return usage_error("--prompt-tokens '%s' is not a comma-separated list of integers", s); }
        t[k++] = (int32_t)x;
        p = end;
        if (*p == ',') p++;
        else if (*p) { free(t); return usage_error("--prompt-tokens '%s' is not a comma-separated list of integers", s); }
    }
    if (!k) { free(t); return usage_error("--prompt-tokens is empty"); }
    *out = t; *n = k;
    return 0;
}

static const char generate_help[] =
    "usage: evobudget generate [--model PATH] [--tokenizer PATH] --prompt TEXT [--steps N] [--json]\n"
    "  Greedy decoding: appends N tokens (the most likely each time) to BOS + the prompt.\n"
    "  --model PATH          Hugging Face directory or llama2.c .bin (default: the embedded demo model)\n"
    "  --tokenizer PATH      tokenizer.json or tokenizer.bin (default: the one beside the model)\n"
    "  --prompt TEXT         the prompt (default: empty, BOS only)\n"
    "  --prompt-tokens IDS   the prompt as comma-separated token ids instead of text\n"
    "  --steps N             new tokens to generate (default 64)\n"
    "  --threads N           OpenMP threads (default: OMP_NUM_THREADS or all cores)\n"
    COMPUTE_HELP
    "  --json                one JSON object on stdout: tokens (BOS and prompt included), text\n";

/* The text of seq[n]; ids past the tokenizer's vocabulary (an embedding padded beyond it, as Qwen checkpoints
 * are) have no text: they are left out of the text and kept in the tokens. */
static int decode(const evb_tokenizer *t, const int32_t *seq, size_t n, char **text, size_t *len) {
    int tv = evb_tokenizer_vocab_size(t);
    int32_t *known = malloc((n ? n : 1) * sizeof *known);
    size_t nk = 0;
    if (!known) return EVB_RAISEF(EVB_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        if (seq[i] < tv) known[nk++] = seq[i];
    int s = evb_tokenizer_decode(t, known, nk, text, len);
    free(known);
    return s;
}

static int print_generated(const opts *o, const int32_t *seq, size_t n, size_t np, const char *text, size_t tlen, double el) {
    if (!o->json) {
        fwrite(text, 1, tlen, stdout);
        printf("\n");
        fprintf(stderr, "%ld tokens in %.3fs\n", o->steps, el);
        return 0;
    }
    /* JSON strings are UTF-8: a tokenizer.bin's byte tokens can leave a partial character, which becomes
     * U+FFFD as in Hugging Face's decode (tokenizer.json decoding already does this). */
    char *valid = evb_text_utf8_lossy(text, tlen, &tlen);
    json_t *toks = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(toks, json_integer(seq[i]));
    json_t *j = valid ? json_pack("{s:o, s:s%, s:i, s:i, s:f}", "tokens", toks, "text", valid, tlen,
                                  "n_prompt", (int)np, "steps", (int)o->steps, "seconds", el) : NULL;
    if (!valid) json_decref(toks);
    free(valid);
    return print_json(j);
}

/* Generates from the prompt (ids) and prints; an exit code. */
static int run_generate(const opts *o, const loaded *l, const int32_t *prompt, size_t np) {
    size_t total = np + (size_t)o->steps;
    if (total > (size_t)l->m->config.max_seq_len)
        return usage_error("--steps %ld: prompt (%zu tokens) + steps exceed the model's context of %d", o->steps, np, l->m->config.max_seq_len);
    int32_t *seq = malloc(total * sizeof *seq);
    evb_state *st = NULL;
    char *text = NULL;
    size_t tlen = 0;
    int s = seq ? evb_state_alloc(l->m, 1, (int)total, &st) : EVB_RAISEF(EVB_ENOMEM, "out of memory"), rc = 0;
    if (!s) memcpy(seq, prompt, np * sizeof *seq);
    double t0 = now_s();
    if (!s) s = evb_generate_greedy(l->m, st, seq, np, total);
    double el = now_s() - t0;
    if (!s) s = decode(l->t, seq, total, &text, &tlen);
    rc = s ? fail(s) : print_generated(o, seq, total, np, text, tlen, el);
    free(text); free(seq);
    evb_state_free(st);
    return rc;
}

int cmd_generate(int argc, char **argv) {
    opts o = {0};
    o.steps = 64;
    int rc = parse_opts(argc, argv, "--model --tokenizer --prompt --prompt-tokens --steps --threads --compute --json", &o);
    if (rc || o.help) {
        if (o.help) fputs(generate_help, stdout);
        return rc;
    }
    if (o.prompt && o.prompt_tokens) return usage_error("give --prompt or --prompt-tokens, not both");
    set_threads(&o);
    loaded l;
    if ((rc = load_model(&o, 1, &l))) return rc;
    int32_t *prompt = NULL;
    size_t np = 0;
    int s = EVB_SUCCESS;
    if (o.prompt_tokens) rc = parse_token_list(o.prompt_tokens, &prompt, &np);
    else s = evb_tokenizer_encode(l.t, o.prompt ? o.prompt : "", strlen(o.prompt ? o.prompt : ""), 1, &prompt, &np);
    if (!rc && s) rc = fail(s);
    if (!rc) rc = run_generate(&o, &l, prompt, np);
    free(prompt);
    loaded_free(&l);
    return rc;
}
