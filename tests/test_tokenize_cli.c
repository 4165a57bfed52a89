#define _GNU_SOURCE
/* test_tokenize_cli.c -- `evobudget tokenize`: the ids it prints are the library's encoding (the one
 * tests/test_tokenizer_conformance compares with Hugging Face's), --decode gives the text back, the tokenizer
 * is found beside a model without reading its weights, and bad input is refused in one line. */
#include "testing.h"
#include "fixtures.h"
#include "shell.h"
#include "evobudget/evobudget.h"

#include <jansson.h>
#include <string.h>

static char tmp_dir[1024];

/* Runs `evobudget tokenize ARGS`; stdout into out (malloc'd), the exit code returned. */
static int tok(const char *args, char **out, char **err) {
    char cmd[4096], po[1200], pe[1200];
    snprintf(po, sizeof po, "%s/out", tmp_dir);
    snprintf(pe, sizeof pe, "%s/err", tmp_dir);
    snprintf(cmd, sizeof cmd, "'%s' tokenize %s > %s 2> %s", EVB_CLI, args, po, pe);
    int rc = sh(cmd);
    *out = slurp(po);
    *err = slurp(pe);
    return rc;
}

int main(void) {
    evb_init();
    char *tmp = fixture_tmpdir();
    snprintf(tmp_dir, sizeof tmp_dir, "%s", tmp);
    const char *text = "The whale, Captain Ahab said, is white.";
    char args[2000], *out, *err;
    snprintf(args, sizeof args, "--text '%s' --json", text);
    int rc = tok(args, &out, &err);
    json_t *j = json_loads(out ? out : "", 0, NULL), *ids = json_object_get(j, "ids");
    evb_tokenizer *t = NULL;
    char path[1200];
    snprintf(path, sizeof path, "%s/assets/demo/tokenizer.json", EVB_SOURCE_DIR);
    int32_t *want = NULL;
    size_t n = 0;
    int st = evb_tokenizer_load(path, &t);
    if (!st) st = evb_tokenizer_encode(t, text, strlen(text), 1, &want, &n);
    int same = !st && json_array_size(ids) == n;
    for (size_t i = 0; same && i < n; i++) same = json_integer_value(json_array_get(ids, i)) == want[i];
    EVB_CHECK(rc == 0 && same && want[0] == evb_tokenizer_bos(t), "tokenize --text --json: the library's %zu ids, BOS first", n);
    free(out); free(err);
    /* back: the ids without BOS decode to the text */
    char list[1000] = "";
    for (size_t i = 1, at = 0; i < n; i++) at += (size_t)snprintf(list + at, sizeof list - at, "%s%d", i > 1 ? "," : "", (int)want[i]);
    snprintf(args, sizeof args, "--decode %s --json", list);
    rc = tok(args, &out, &err);
    json_t *d = json_loads(out ? out : "", 0, NULL);
    const char *back = json_string_value(json_object_get(d, "text"));
    EVB_CHECK(rc == 0 && back && !strcmp(back, text), "tokenize --decode gives the text back: '%s'", back ? back : "(none)");
    json_decref(d); json_decref(j); free(out); free(err);
    snprintf(args, sizeof args, "--text '%s' --no-bos --json", text);
    rc = tok(args, &out, &err);
    j = json_loads(out ? out : "", 0, NULL);
    EVB_CHECK(rc == 0 && json_array_size(json_object_get(j, "ids")) == n - 1, "--no-bos: one id fewer");
    json_decref(j); free(out); free(err);
    /* a model's tokenizer is found beside it; a model file that is not one is not read */
    snprintf(args, sizeof args, "--model %s/assets/demo --text hello", EVB_SOURCE_DIR);
    rc = tok(args, &out, &err);
    EVB_CHECK(rc == 0 && out && strstr(out, "tokens\n"), "tokenize --model DIR: its tokenizer.json, ids and pieces printed");
    free(out); free(err);
    static const char *bad[][2] = {
        {"--decode 1,x", "--decode '1,x' is not a comma-separated list of token ids"},
        {"--decode 99999", "outside the vocabulary"},
        {"--model /nonexistent/m --text a", "/nonexistent/m"},
        {"--data /nonexistent/t.txt", "/nonexistent/t.txt"},
        {"--text a --decode 1", "give one of --text TEXT, --data FILE and --decode IDS"},
        {"--model x --tokenizer y --text a", "give --model or --tokenizer, not both"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rc = tok(bad[i][0], &out, &err);
        EVB_CHECK(rc != 0 && err && strstr(err, bad[i][1]) && strchr(err, '\n') == strrchr(err, '\n'),
                  "tokenize %s: exit %d, one line with \"%s\"", bad[i][0], rc, bad[i][1]);
        free(out); free(err);
    }
    free(want);
    evb_tokenizer_free(t);
    fixture_rmdir(tmp);
    free(tmp);
    return evb_test_summary();
}
