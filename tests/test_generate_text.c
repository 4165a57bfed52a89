/* test_generate_text.c -- the text `evobudget generate` prints for ids that do not decode to whole characters:
 *   - with --json, a partial UTF-8 character (byte tokens of a tokenizer.bin) becomes U+FFFD and the output is
 *     one valid JSON object (it used to fail as "out of memory": Jansson refuses invalid UTF-8);
 *   - an id past the tokenizer's vocabulary but inside the model's (an embedding padded beyond the tokenizer,
 *     as Qwen checkpoints are) gives no text instead of an error.
 * Runs the program on stories260K from ../shared/data, or on tests/standin.h's stand-in (the same 512 ids, byte
 * pieces at the same ids) where it is missing. */
#define _POSIX_C_SOURCE 200809L
#include "testing.h"
#include "standin.h"

#include <jansson.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char MODEL[1024], CALIB[1024], TOK[1100];

/* Runs the program with args; stdout into a malloc'd *out; returns the exit status. */
static int run(const char *args, char **out) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' %s 2>/dev/null", EVB_CLI, args);
    FILE *p = popen(cmd, "r");
    if (!p) { *out = NULL; return -1; }
    size_t n = 0, cap = 4096;
    char *b = malloc(cap);
    size_t got;
    while (b && (got = fread(b + n, 1, cap - n - 1, p)) > 0) {
        n += got;
        if (cap - n < 2) { char *q = realloc(b, cap *= 2); if (!q) { free(b); b = NULL; } else b = q; }
    }
    if (b) b[n] = '\0';
    int st = pclose(p);
    *out = b;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int main(void) {
    char *out = NULL, args[3000], dir[] = "/tmp/evb_gen_XXXXXX", path[128];
    int made = mkdtemp(dir) != NULL;
    int standin = made ? standin_or_stories(dir, MODEL, sizeof MODEL, CALIB, sizeof CALIB) : -1;
    EVB_CHECK(made && standin >= 0, "the model to run on: %s", MODEL);
    if (standin < 0) return evb_test_summary();
    snprintf(TOK, sizeof TOK, "%.*s/tok512.bin", (int)(strrchr(MODEL, '/') - MODEL), MODEL);
    /* 231 = byte 0xE4 + 3, 190 = byte 0xBB + 3: the first two bytes of a three-byte character. */
    snprintf(args, sizeof args, "generate --model '%s' --tokenizer '%s' --prompt-tokens 1,231,190 --steps 2 --json",
             MODEL, TOK);
    int rc = run(args, &out);
    json_t *j = out ? json_loads(out, 0, NULL) : NULL;
    const char *text = json_string_value(json_object_get(j, "text"));
    EVB_CHECK(rc == 0 && j && text, "generate --json after a partial character: exit 0 and one JSON object (rc %d)", rc);
    EVB_CHECK(text && !strncmp(text, "\xEF\xBF\xBD", 3) && strlen(text) >= 3,
              "the partial character 0xE4 0xBB is one U+FFFD at the start of \"text\"");
    json_decref(j);
    free(out);

    /* A tokenizer of 500 pieces (the first 500 records of tok512.bin) under the 512-id model: id 505 is a
     * padding id, inside the model's embedding and past the tokenizer. */
    FILE *f = fopen(TOK, "rb");
    char *d = malloc(1 << 20);
    size_t sz = f && d ? fread(d, 1, 1 << 20, f) : 0;
    if (f) fclose(f);
    size_t off = 4;
    for (int i = 0; i < 500 && off + 8 <= sz; i++) {
        int32_t len;
        memcpy(&len, d + off + 4, 4);
        off += 8 + (size_t)len;
    }
    EVB_CHECK(off <= sz, "a 500-piece copy of %s", TOK);
    snprintf(path, sizeof path, "%s/tok500.bin", dir);
    FILE *w = fopen(path, "wb");
    if (w) { fwrite(d, 1, off, w); fclose(w); }
    free(d);
    snprintf(args, sizeof args, "generate --model '%s' --tokenizer '%s' --prompt-tokens 1,505,300 --steps 2 --json",
             MODEL, path);
    rc = run(args, &out);
    j = out ? json_loads(out, 0, NULL) : NULL;
    json_t *toks = json_object_get(j, "tokens");
    EVB_CHECK(rc == 0 && j && json_integer_value(json_array_get(toks, 1)) == 505 &&
              json_is_string(json_object_get(j, "text")),
              "generate with a padding id (505 of a 500-piece tokenizer, model vocabulary 512): exit 0, the id kept in "
              "\"tokens\" (rc %d)", rc);
    json_decref(j);
    free(out);
    remove(path);
    if (standin) {
        snprintf(path, sizeof path, "%s/standin.bin", dir); remove(path);
        snprintf(path, sizeof path, "%s/tok512.bin", dir); remove(path);
    }
    rmdir(dir);
    return evb_test_summary();
}
