#define _GNU_SOURCE
/* test_llama_judge.c -- llama.cpp (tests/tools/llama_judge.c) reads the GGUF file `evobudget export --format
 * gguf --dtype f32` writes of the demo model (assets/demo) with a dense configuration, and agrees with evobudget:
 *   - info loads it whole: 6 layers, 256 wide, 4096 tokens;
 *   - nll on windows of the demo's calibration text: finite, each window's NLL and the perplexity within 1% of
 *     the library's forward (evb_eval_nll) on the same windows, and the perplexity within 1% of `evobudget eval`
 *     on the same text, window length and token count;
 *   - tokenize: llama.cpp's ids for a few plain sentences are the library's, and detokenize gives the text back;
 *   - quantize Q8_0 --pure: every linear layer whose rows split into 32-value blocks is q8_0 (the rest f16, as
 *     llama.cpp falls back), the norms stay f32, and the quantized model still scores close to the dense one;
 *   - tensor: a dump is as long as info says, and in float32 it is bit for bit the library's weight.
 * The judge's own refusals (no subcommand, a missing file, a malformed windows file) are checked first.
 * Skipped with one SKIP line (exit 77) where the judge is not built (no llama.cpp from ./setup.sh) or where
 * export does not write GGUF. */
#include "testing.h"
#include "fixtures.h"
#include "shell.h"
#include "evobudget/evobudget.h"
#include "evobudget/evb_eval.h"
#include "evobudget/evb_text.h"

#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>

#ifndef EVB_LLAMA_JUDGE
#define EVB_LLAMA_JUDGE ""
#endif
#ifndef EVB_LLAMA_WHY
#define EVB_LLAMA_WHY "EVB_LLAMA_JUDGE is not defined (tests/CMakeLists.txt attaches EVB_LLAMA_DEFS)"
#endif

#define DEMO EVB_SOURCE_DIR "/assets/demo"
#define SEQ_LEN 64
#define MAX_TOKENS 400

static char tmp[512];

/* Runs cmd with stdout to tmp/out.json and stderr to tmp/err.txt: the exit code; *out the parsed stdout
 * (NULL when it is not one JSON object); err[n] the first line of stderr. */
static int run(const char *cmd, json_t **out, char *err, size_t n) {
    char full[8192], po[600], pe[600];
    snprintf(po, sizeof po, "%s/out.json", tmp);
    snprintf(pe, sizeof pe, "%s/err.txt", tmp);
    snprintf(full, sizeof full, "%s > %s 2> %s", cmd, po, pe);
    int rc = sh(full);
    if (out) *out = json_load_file(po, 0, NULL);
    if (err && n) {
        char *e = slurp(pe);
        snprintf(err, n, "%s", e ? e : "");
        err[strcspn(err, "\n")] = 0;
        free(e);
    }
    return rc;
}

/* Lines of stderr of the last run. */
static int err_lines(void) {
    char pe[600];
    snprintf(pe, sizeof pe, "%s/err.txt", tmp);
    char *e = slurp(pe);
    int n = 0;
    for (char *p = e; p && *p; p++) n += *p == '\n';
    free(e);
    return n;
}

static double num(const json_t *j, const char *key) {
    const json_t *v = json_object_get(j, key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

static int rel_close(double a, double b, double tol) { return fabs(a - b) <= tol * fabs(b) && !isnan(a); }

/* The GGUF file export wrote: OUT itself when it is a file, else the one *.gguf inside the directory OUT. */
static int find_gguf(const char *out, char *path, size_t n) {
    struct stat st;
    if (stat(out, &st) != 0) return 0;
    if (S_ISREG(st.st_mode)) { snprintf(path, n, "%s", out); return 1; }
    DIR *d = opendir(out);
    struct dirent *e;
    int found = 0;
    while (d && (e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len > 5 && strcmp(e->d_name + len - 5, ".gguf") == 0) { snprintf(path, n, "%s/%s", out, e->d_name); found++; }
    }
    if (d) closedir(d);
    return found == 1;
}

/* The tensor object named name in info's "tensors", or NULL. */
static const json_t *info_tensor(const json_t *info, const char *name) {
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(info, "tensors"), i, t) {
        const char *tn = json_string_value(json_object_get(t, "name"));
        if (tn && strcmp(tn, name) == 0) return t;
    }
    return NULL;
}

/* The judge's refusals: one line on stderr and exit 1, without any model. */
static void judge_refusals(void) {
    char cmd[2048], err[512], p[600];
    int rc = run("'" EVB_LLAMA_JUDGE "'", NULL, err, sizeof err);
    EVB_CHECK(rc == 1 && err_lines() == 1 && strstr(err, "usage"), "no subcommand: exit 1, one line of usage (%s)", err);
    snprintf(cmd, sizeof cmd, "'%s' info %s/nope.gguf", EVB_LLAMA_JUDGE, tmp);
    rc = run(cmd, NULL, err, sizeof err);
    EVB_CHECK(rc == 1 && err_lines() == 1 && strstr(err, "nope.gguf"), "a missing model: exit 1, one line naming it (%s)", err);
    snprintf(p, sizeof p, "%s/bad.txt", tmp);
    FILE *f = fopen(p, "w");
    if (f) { fputs("1 2 3\n1 2 x\n", f); fclose(f); }
    snprintf(cmd, sizeof cmd, "'%s' nll %s/nope.gguf %s", EVB_LLAMA_JUDGE, tmp, p);
    rc = run(cmd, NULL, err, sizeof err);
    EVB_CHECK(rc == 1 && err_lines() == 1 && strstr(err, "bad.txt:2"), "a malformed windows file: exit 1, one line naming file:line (%s)", err);
}

/* The demo's calibration text in windows of SEQ_LEN (BOS first), MAX_TOKENS scored, as `evobudget eval
 * --seq-len SEQ_LEN --max-tokens MAX_TOKENS` cuts it; written one window per line to path. */
static int demo_windows(const evb_tokenizer *t, evb_windows *w, const char *path) {
    int s = evb_windows_from_file(t, DEMO "/calib.txt", 4000, SEQ_LEN, 0, 0, MAX_TOKENS, w);
    FILE *f = s ? NULL : fopen(path, "w");
    for (int i = 0; f && i < w->n; i++)
        for (int k = 0; k < w->len[i]; k++) fprintf(f, "%d%c", w->tokens[(size_t)i * w->seq_len + k], k + 1 < w->len[i] ? ' ' : '\n');
    return f && fclose(f) == 0 ? 0 : 1;
}

/* nll through llama.cpp against the library's forward (per window) and `evobudget eval`. Returns the judge's
 * perplexity (NAN when it failed). */
static double check_nll(const char *gguf, evb_model *m, const evb_windows *w, const char *wpath) {
    char cmd[2048], err[512];
    json_t *j = NULL, *e = NULL;
    snprintf(cmd, sizeof cmd, "'%s' nll '%s' %s --threads 2", EVB_LLAMA_JUDGE, gguf, wpath);
    int rc = run(cmd, &j, err, sizeof err);
    const double ppl = num(j, "ppl"), sum = num(j, "nll_sum");
    EVB_CHECK(rc == 0 && isfinite(ppl) && isfinite(sum) && num(j, "windows") == w->n && num(j, "tokens") == (double)evb_windows_scored(w),
              "llama.cpp scores %d windows, %zu tokens: perplexity %.4f (%s)", w->n, evb_windows_scored(w), ppl, rc ? err : "ok");
    evb_state *s = NULL;
    double lib_sum = 0, worst = 0;
    int worst_i = -1, bad = evb_state_alloc(m, 1, SEQ_LEN, &s) != 0;
    const json_t *per = json_object_get(j, "per_window");
    for (int i = 0; !bad && i < w->n; i++) {
        evb_windows one = {1, w->seq_len, w->tokens + (size_t)i * w->seq_len, w->len + i};
        double nll = 0;
        size_t n = 0;
        bad = evb_eval_nll(m, s, &one, 1, &nll, &n, NULL, NULL) != 0;
        const double d = fabs(json_number_value(json_array_get(per, (size_t)i)) - nll) / nll;
        if (!(d <= worst)) { worst = d; worst_i = i; }
        lib_sum += nll;
    }
    evb_state_free(s);
    EVB_CHECK(!bad && json_array_size(per) == (size_t)w->n && worst <= 0.01,
              "each window's NLL within 1%% of the library's forward (worst: window %d, %.3g relative)", worst_i, worst);
    const double lib_ppl = exp(lib_sum / (double)evb_windows_scored(w));
    EVB_CHECK(rel_close(ppl, lib_ppl, 0.01), "llama.cpp's perplexity %.5f = the library's %.5f (1%%; %.3g relative)", ppl, lib_ppl,
              fabs(ppl - lib_ppl) / lib_ppl);
    snprintf(cmd, sizeof cmd, "'%s' eval --model %s --data %s/calib.txt --seq-len %d --max-tokens %d --compute f32 --json", EVB_CLI, DEMO, DEMO, SEQ_LEN, MAX_TOKENS);
    rc = run(cmd, &e, err, sizeof err);
    EVB_CHECK(rc == 0 && num(e, "tokens") == (double)evb_windows_scored(w) && rel_close(ppl, num(e, "perplexity"), 0.01),
              "llama.cpp's perplexity %.5f = evobudget eval's %.5f on the same %g tokens (1%%) (%s)", ppl, num(e, "perplexity"),
              num(e, "tokens"), rc ? err : "ok");
    json_decref(j);
    json_decref(e);
    return ppl;
}

static void check_info(const char *gguf, json_t **info) {
    char cmd[2048], err[512];
    snprintf(cmd, sizeof cmd, "'%s' info '%s'", EVB_LLAMA_JUDGE, gguf);
    int rc = run(cmd, info, err, sizeof err);
    const json_t *j = *info;
    EVB_CHECK(rc == 0 && j, "llama.cpp loads %s whole (%s)", gguf, rc ? err : json_string_value(json_object_get(j, "desc")));
    EVB_CHECK(num(j, "n_layer") == 6 && num(j, "n_embd") == 256 && num(j, "n_vocab") == 4096,
              "info: n_layer %g, n_embd %g, n_vocab %g (the demo's 6, 256, 4096)", num(j, "n_layer"), num(j, "n_embd"), num(j, "n_vocab"));
}

/* The dump of blk.0.ffn_gate.weight (stored as Hugging Face stores it: no permutation) is as long as info
 * says; in float32 it is the library's weight bit for bit. */
static void check_tensor(const char *gguf, const json_t *info, const evb_model *m) {
    char cmd[2048], err[512], bin[600];
    const char *name = "blk.0.ffn_gate.weight";
    const json_t *t = info_tensor(info, name);
    snprintf(bin, sizeof bin, "%s/gate.bin", tmp);
    snprintf(cmd, sizeof cmd, "'%s' tensor '%s' %s %s", EVB_LLAMA_JUDGE, gguf, name, bin);
    json_t *j = NULL;
    int rc = run(cmd, &j, err, sizeof err);
    struct stat st;
    const double bytes = num(t, "bytes");
    EVB_CHECK(rc == 0 && t && stat(bin, &st) == 0 && (double)st.st_size == bytes && num(j, "bytes") == bytes,
              "tensor %s: %g bytes written, as info says (%s)", name, bytes, rc ? err : "ok");
    const char *type = json_string_value(json_object_get(t, "type"));
    int rows, cols;
    evb_model_unit_shape(m, EVB_LINEAR_GATE, &rows, &cols);
    if (type && strcmp(type, "f32") == 0) {
        char *b = slurp(bin);
        EVB_CHECK(b && bytes == 4.0 * rows * cols && memcmp(b, m->layers[0].w[EVB_LINEAR_GATE], (size_t)bytes) == 0,
                  "tensor %s in float32 is the library's [%d, %d] weight bit for bit", name, rows, cols);
        free(b);
    }
    json_decref(j);
}

/* llama.cpp's tokenizer from the file against the library's on plain sentences, and back. */
static void check_tokenizer(const char *gguf, const evb_tokenizer *tk) {
    static const char *texts[] = {"Once upon a time, there was a little girl named Lily.", "The cat sat on the mat. It was happy!",
                                  "She said: \"We can play in the park tomorrow.\""};
    for (size_t k = 0; k < sizeof texts / sizeof texts[0]; k++) {
        char cmd[2048], err[512];
        int32_t *ids = NULL;
        size_t n = 0;
        json_t *j = NULL, *d = NULL;
        snprintf(cmd, sizeof cmd, "'%s' tokenize '%s' '%s'", EVB_LLAMA_JUDGE, gguf, texts[k]);
        int rc = run(cmd, &j, err, sizeof err), same = 0;
        const json_t *got = json_object_get(j, "ids");
        if (!evb_tokenizer_encode(tk, texts[k], strlen(texts[k]), 1, &ids, &n)) {
            same = json_array_size(got) == n;
            for (size_t i = 0; same && i < n; i++) same = json_integer_value(json_array_get(got, i)) == ids[i];
        }
        EVB_CHECK(rc == 0 && same, "llama.cpp's %zu ids for '%s' are the library's %zu (%s)", json_array_size(got), texts[k], n, rc ? err : "ok");
        /* back, without BOS */
        int at = snprintf(cmd, sizeof cmd, "'%s' detokenize '%s'", EVB_LLAMA_JUDGE, gguf);
        for (size_t i = 1; i < n && at < (int)sizeof cmd - 16; i++) at += snprintf(cmd + at, sizeof cmd - (size_t)at, " %d", (int)ids[i]);
        rc = run(cmd, &d, err, sizeof err);
        const char *text = json_string_value(json_object_get(d, "text"));
        EVB_CHECK(rc == 0 && text && strcmp(text, texts[k]) == 0, "llama.cpp detokenizes them to '%s'", text ? text : err);
        free(ids);
        json_decref(j);
        json_decref(d);
    }
}

/* Q8_0 --pure: the linear layers q8_0 where their rows split into blocks of 32 (f16 where not, llama.cpp's
 * fallback), the norms f32; the quantized model scores within 2% of the dense one. */
static void check_quantize(const char *gguf, const char *wpath, double dense_ppl) {
    char cmd[2048], err[512], q8[600];
    json_t *j = NULL, *info = NULL, *nll = NULL;
    snprintf(q8, sizeof q8, "%s/q8.gguf", tmp);
    snprintf(cmd, sizeof cmd, "'%s' quantize '%s' %s Q8_0 --pure --threads 2", EVB_LLAMA_JUDGE, gguf, q8);
    int rc = run(cmd, &j, err, sizeof err);
    struct stat st;
    EVB_CHECK(rc == 0 && stat(q8, &st) == 0 && num(j, "bytes") == (double)st.st_size, "quantize Q8_0 --pure writes %s (%g bytes) (%s)",
              q8, num(j, "bytes"), rc ? err : "ok");
    snprintf(cmd, sizeof cmd, "'%s' info %s", EVB_LLAMA_JUDGE, q8);
    rc = run(cmd, &info, err, sizeof err);
    static const char *linear[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    int n_linear = 0, n_q8 = 0, wrong = 0, norms_f32 = 1;
    char first_wrong[200] = "";
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(info, "tensors"), i, t) {
        const char *name = json_string_value(json_object_get(t, "name")), *type = json_string_value(json_object_get(t, "type"));
        if (!name || !type) { wrong++; continue; }
        if (strstr(name, "_norm.")) norms_f32 &= strcmp(type, "f32") == 0;
        for (size_t k = 0; k < sizeof linear / sizeof linear[0]; k++) {
            char pat[40];
            snprintf(pat, sizeof pat, ".%s.weight", linear[k]);
            if (!strstr(name, pat)) continue;
            const long long cols = (long long)json_integer_value(json_array_get(json_object_get(t, "ne"), 0));
            const char *want = cols % 32 == 0 ? "q8_0" : "f16";
            n_linear++;
            n_q8 += strcmp(type, "q8_0") == 0;
            if (strcmp(type, want) != 0 && !wrong++) snprintf(first_wrong, sizeof first_wrong, "%s is %s, not %s", name, type, want);
        }
    }
    EVB_CHECK(rc == 0 && n_linear == 6 * 7 && n_q8 > 0 && !wrong && norms_f32,
              "the Q8_0 file: %d of %d linear layers q8_0, the others f16 where 32 does not divide a row, norms f32 (%s)", n_q8,
              n_linear, rc ? err : wrong ? first_wrong : "ok");
    snprintf(cmd, sizeof cmd, "'%s' nll %s %s --threads 2", EVB_LLAMA_JUDGE, q8, wpath);
    rc = run(cmd, &nll, err, sizeof err);
    EVB_CHECK(rc == 0 && rel_close(num(nll, "ppl"), dense_ppl, 0.02), "the Q8_0 model's perplexity %.5f is within 2%% of the dense %.5f (%s)",
              num(nll, "ppl"), dense_ppl, rc ? err : "ok");
    json_decref(j);
    json_decref(info);
    json_decref(nll);
}

int main(void) {
    if (!EVB_LLAMA_JUDGE[0]) {
        printf("SKIP llama.cpp judge not built: %s\n", EVB_LLAMA_WHY);
        return EVB_TEST_SKIPPED;
    }
    evb_init();
    char *t = fixture_tmpdir();
    if (!t) { printf("FAIL cannot make a temporary directory\n"); return 1; }
    snprintf(tmp, sizeof tmp, "%s", t);
    free(t);
    judge_refusals();

    /* the demo model, exported dense to GGUF */
    char cfg[700], out[700], gguf[1400], cmd[4096], err[512];
    snprintf(cfg, sizeof cfg, "%s/dense.json", tmp);
    FILE *f = fopen(cfg, "w");
    if (f) { fprintf(f, "{\"model\": \"%s\", \"units\": []}\n", DEMO); fclose(f); }
    snprintf(out, sizeof out, "%s/demo.gguf", tmp);
    snprintf(cmd, sizeof cmd, "'%s' export --format gguf --dtype f32 --config %s --out %s", EVB_CLI, cfg, out);
    int rc = run(cmd, NULL, err, sizeof err);
    if (rc != 0) {
        evb_test_skips++;
        printf("SKIP the GGUF checks: 'evobudget export --format gguf --dtype f32' of the demo model failed (exit %d): %s\n", rc, err);
    } else if (!find_gguf(out, gguf, sizeof gguf)) {
        EVB_CHECK(0, "export --format gguf wrote one .gguf file (as OUT, or inside the directory %s)", out);
    } else {
        evb_model *m = NULL;
        evb_tokenizer *tk = NULL;
        evb_windows w = {0};
        char wpath[600];
        snprintf(wpath, sizeof wpath, "%s/windows.txt", tmp);
        int s = evb_model_load(DEMO, &m);
        if (!s) s = evb_tokenizer_load(DEMO "/tokenizer.json", &tk);
        if (!s) s = demo_windows(tk, &w, wpath);
        EVB_CHECK(!s, "the demo model, its tokenizer and %d windows of its calibration text (%s)", w.n, s ? evb_last_error() : "ok");
        if (!s) {
            json_t *info = NULL;
            check_info(gguf, &info);
            double ppl = check_nll(gguf, m, &w, wpath);
            check_tokenizer(gguf, tk);
            check_tensor(gguf, info, m);
            check_quantize(gguf, wpath, ppl);
            json_decref(info);
        }
        evb_windows_free(&w);
        evb_tokenizer_free(tk);
        evb_model_free(m);
    }
    fixture_rmdir(tmp);
    return evb_test_summary();
}
