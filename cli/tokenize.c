/* tokenize.c -- `evobudget tokenize`: text to token ids with a model's tokenizer, and ids back to text. */
#define _POSIX_C_SOURCE 200809L
#include "cli/cli.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char tokenize_help[] =
    "usage: evobudget tokenize [--model PATH | --tokenizer PATH] (--text TEXT | --data FILE) [--no-bos] [--json]\n"
    "       evobudget tokenize [--model PATH | --tokenizer PATH] --decode IDS [--json]\n"
    "  Encodes text with a model's tokenizer (as the model's search and eval do) and prints the ids, one line,\n"
    "  then each id with its piece; or decodes comma-separated ids back to text.\n"
    "  --model PATH      the tokenizer beside this model (default: the embedded demo model); the weights are not read\n"
    "  --tokenizer PATH  tokenizer.json or tokenizer.bin\n"
    "  --text TEXT       the text to encode; --data FILE: a file's text (UTF-8)\n"
    "  --no-bos          without the tokens the tokenizer puts before the text (BOS)\n"
    "  --decode IDS      comma-separated ids to decode\n"
    "  --json            one JSON object on stdout: ids and count (encode), or text (decode)\n";

static int load_tokenizer(const opts *o, evb_tokenizer **t) {
    char buf[1024], found[1200];
    const char *path = o->tokenizer;
    if (!path) {
        const char *model = o->model ? o->model : default_asset("", buf, sizeof buf);
        int s = evb_model_find_tokenizer(model, found, sizeof found);
        if (s) return refuse_status("--model ");
        if (!found[0]) return usage_error("no tokenizer beside %s; pass one with --tokenizer", model);
        path = found;
    }
    int s = evb_tokenizer_load(path, t);
    return s ? fail(s) : 0;
}

static int parse_ids(const char *s, int32_t **out, size_t *n) {
    size_t cap = strlen(s) / 2 + 2, k = 0;
    int32_t *t = malloc(cap * sizeof *t);
    if (!t) return fail(EVB_RAISEF(EVB_ENOMEM, "out of memory"));
    for (const char *p = s; *p;) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < 0 || x > INT32_MAX || (*end && *end != ',')) {
            free(t);
            return usage_error("--decode '%s' is not a comma-separated list of token ids", s);
        }
        t[k++] = (int32_t)x;
        p = *end ? end + 1 : end;
    }
    if (!k) { free(t); return usage_error("--decode is empty"); }
    *out = t;
    *n = k;
    return 0;
}

static int decode_ids(const opts *o, const evb_tokenizer *t) {
    int32_t *ids = NULL;
    size_t n = 0, len;
    char *text;
    int rc = parse_ids(o->decode, &ids, &n), s;
    if (rc) return rc;
    s = evb_tokenizer_decode(t, ids, n, &text, &len);
    free(ids);
    if (s) return refuse_status("--decode: ");
    if (o->json) rc = print_json(json_pack("{s:s%, s:I}", "text", text, len, "count", (json_int_t)n));
    else printf("%s\n", text);
    free(text);
    return rc;
}

/* Each id with its piece (the id decoded alone), one per line. */
static void print_pieces(const evb_tokenizer *t, const int32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char *piece;
        size_t len;
        if (evb_tokenizer_decode(t, ids + i, 1, &piece, &len)) { printf("%d\t?\n", (int)ids[i]); continue; }
        printf("%d\t'%s'\n", (int)ids[i], piece);
        free(piece);
    }
}

static int encode_text(const opts *o, const evb_tokenizer *t) {
    char *text = NULL;
    size_t len = 0;
    int s = o->data ? evb_text_read(o->data, &text, &len) : EVB_SUCCESS;
    if (s) return refuse_status("--data ");
    const char *src = o->data ? text : o->text;
    int32_t *ids = NULL;
    size_t n = 0;
    s = evb_tokenizer_encode(t, src, o->data ? len : strlen(src), !o->no_bos, &ids, &n);
    free(text);
    if (s) return fail(s);
    int rc = 0;
    if (o->json) {
        json_t *a = json_array();
        for (size_t i = 0; i < n; i++) json_array_append_new(a, json_integer(ids[i]));
        rc = print_json(json_pack("{s:o, s:I}", "ids", a, "count", (json_int_t)n));
    } else {
        for (size_t i = 0; i < n; i++) printf("%s%d", i ? " " : "", (int)ids[i]);
        printf("\n%zu tokens\n", n);
        print_pieces(t, ids, n);
    }
    free(ids);
    return rc;
}

int cmd_tokenize(int argc, char **argv) {
    opts o = {0};
    int rc = parse_opts(argc, argv, "--model --tokenizer --text --data --no-bos --decode --json", &o);
    if (rc || o.help) {
        if (o.help) fputs(tokenize_help, stdout);
        return rc;
    }
    int n = !!o.text + !!o.data + !!o.decode;
    if (n != 1) return usage_error("give one of --text TEXT, --data FILE and --decode IDS");
    if (o.model && o.tokenizer) return usage_error("give --model or --tokenizer, not both (the tokenizer is the model's)");
    evb_tokenizer *t = NULL;
    if ((rc = load_tokenizer(&o, &t))) return rc;
    rc = o.decode ? decode_ids(&o, t) : encode_text(&o, t);
    evb_tokenizer_free(t);
    return rc;
}
