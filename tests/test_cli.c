#define _GNU_SOURCE
/* test_cli.c -- end-to-end tests of the evobudget program: the JSON contract of info/generate/eval on
 * stories260K, and bad input of every kind named in the foundation's contract. Each bad input must give a
 * non-zero exit (not a signal), exactly one line on stderr naming the file or flag, and no sanitizer
 * report. The fixtures (truncated and corrupted checkpoints) are written here from the real model. Then the
 * flags: --flag=value against --flag value, empty values, --version, suggestions for misspellings, and every
 * command line of the README's Commands block. */
#include "testing.h"
#include "fixtures.h"
#include "shell.h"
#include "standin.h"
#include "evobudget/evb_status.h"

#include <dirent.h>
#include <jansson.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* stories260K, or tests/standin.h's stand-in of its shapes where ../shared/data is missing; its tokenizer. */
static char MODEL[1024], CALIB[1024], TOK[1100];
#define DEMO EVB_SOURCE_DIR "/assets/demo"

static char out_path[256], err_path[256];

/* Runs the CLI with args; returns the exit status (128 + signal when killed). */
static int run(const char *args, char **out, char **err) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' %s >'%s' 2>'%s'", EVB_CLI, args, out_path, err_path);
    int st = system(cmd);
    int rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    size_t n;
    FILE *f = fopen(out_path, "rb"); *out = NULL; n = 0;
    if (f) { FILE *m = open_memstream(out, &n); int c; while ((c = fgetc(f)) != EOF) fputc(c, m); fclose(m); fclose(f); }
    f = fopen(err_path, "rb"); *err = NULL; n = 0;
    if (f) { FILE *m = open_memstream(err, &n); int c; while ((c = fgetc(f)) != EOF) fputc(c, m); fclose(m); fclose(f); }
    return rc;
}

static int count_lines(const char *s) {
    int n = 0;
    for (; s && *s; s++) n += *s == '\n';
    return n;
}

/* A bad input: exit 1 or 2, one line on stderr containing `needle` (the file or flag named). */
static void bad(const char *what, const char *args, const char *needle) {
    char *out, *err;
    int rc = run(args, &out, &err);
    int ok = (rc == 1 || rc == 2) && count_lines(err) == 1 && strstr(err, needle) && !strstr(err, "Sanitizer") &&
             !strstr(err, "runtime error");
    EVB_CHECK(ok, "%s: exit %d, one line naming '%s': %s", what, rc, needle, err ? strtok(err, "\n") : "(none)");
    free(out); free(err);
}

/* A failure with a one-line message: exit 2, exactly one line on stderr, containing `needle`, and without
 * `absent` (NULL: anything). */
static void usage_msg(const char *what, const char *args, const char *needle, const char *absent) {
    char *out, *err;
    int rc = run(args, &out, &err);
    int ok = rc == 2 && count_lines(err) == 1 && strstr(err, needle) && !(absent && strstr(err, absent));
    EVB_CHECK(ok, "%s: exit %d (2), one line with \"%s\"%s%s: %s", what, rc, needle, absent ? " and no " : "",
              absent ? absent : "", err ? strtok(err, "\n") : "(none)");
    free(out); free(err);
}

/* Every command line of the README's Commands block parses, in both forms (--flag VALUE and --flag=VALUE): each
 * is run with its flags, a value "2" for each placeholder (in range for every integer flag) and --help, which
 * prints the command's usage and exits 0 once the whole line has parsed. Returns the flags checked. */
static int readme_lines_parse(void) {
    char *readme = slurp(EVB_SOURCE_DIR "/README.md"), *p = readme ? strstr(readme, "\n## Commands") : NULL;
    char *block = p ? strstr(p, "```\n") : NULL, *end = block ? strstr(block + 4, "```") : NULL;
    EVB_CHECK(end != NULL, "README.md has a Commands block");
    if (!end) { free(readme); return 0; }
    *end = 0;
    /* One command per line that starts with "evobudget "; lines that start with spaces continue it. */
    char line[4096] = "", *save = NULL;
    int n_flags = 0, n_lines = 0;
    for (char *l = strtok_r(block + 4, "\n", &save);; l = strtok_r(NULL, "\n", &save)) {
        if (l && l[0] == ' ') { strncat(line, l, sizeof line - strlen(line) - 1); continue; }
        if (strncmp(line, "evobudget ", 10) == 0 && line[10] != '-') {
            char words[4096], args[2][8192];
            snprintf(words, sizeof words, "%s", line + 10);
            char *w[256], *s2 = NULL;
            int n = 0;
            for (char *t = strtok_r(words, " ", &s2); t && n < 256; t = strtok_r(NULL, " ", &s2)) w[n++] = t;
            args[0][0] = args[1][0] = 0;
            int i = 0;
            for (; i < n && w[i][0] >= 'a' && w[i][0] <= 'z'; i++)  /* the command: "info", "db build" */
                for (int f = 0; f < 2; f++) { strcat(args[f], w[i]); strcat(args[f], " "); }
            char name[64];
            snprintf(name, sizeof name, "%s", args[0]);
            for (; i < n; i++) {
                char *t = w[i] + strspn(w[i], "[("), *close = t + strcspn(t, "])");
                int closed = *close != 0;
                *close = 0;
                if (!t[0] || strcmp(t, "|") == 0) continue;
                if (strncmp(t, "--", 2) != 0) {  /* a positional argument (DIR, RUNDIR) */
                    for (int f = 0; f < 2; f++) { strcat(args[f], t); strcat(args[f], " "); }
                    continue;
                }
                int value = !closed && i + 1 < n && w[i + 1][strspn(w[i + 1], "[(")] != '-' && strcmp(w[i + 1], "|") != 0;
                n_flags++;
                snprintf(args[0] + strlen(args[0]), 8192 - strlen(args[0]), "%s%s ", t, value ? " 2" : "");
                snprintf(args[1] + strlen(args[1]), 8192 - strlen(args[1]), "%s%s ", t, value ? "=2" : "");
                i += value;
            }
            for (int f = 0; f < 2; f++) {
                strcat(args[f], "--help");
                char *out, *err;
                int rc = run(args[f], &out, &err);
                char want[96];
                snprintf(want, sizeof want, "usage: evobudget %s", name);
                EVB_CHECK(rc == 0 && out && strncmp(out, want, strlen(want) - 1) == 0, "README: '%s' parses: exit %d %s",
                          args[f], rc, err && err[0] ? strtok(err, "\n") : "");
                free(out); free(err);
            }
            n_lines++;
        }
        if (!l) break;
        snprintf(line, sizeof line, "%s", l);
    }
    EVB_CHECK(n_lines >= 8 && n_flags >= 40, "README: %d command lines with %d flags checked", n_lines, n_flags);
    free(readme);
    return n_flags;
}

static json_t *run_json(const char *what, const char *args) {
    char *out, *err;
    int rc = run(args, &out, &err);
    json_error_t e;
    json_t *j = rc == 0 && out ? json_loads(out, 0, &e) : NULL;
    EVB_CHECK(j != NULL && count_lines(out) == 1, "%s: exit %d, one JSON object on stdout", what, rc);
    free(out); free(err);
    return j;
}

static void copy_prefix(const char *src, const char *dst, long n) {
    FILE *a = fopen(src, "rb"), *b = fopen(dst, "wb");
    for (long i = 0; i < n; i++) { int c = fgetc(a); if (c == EOF) break; fputc(c, b); }
    fclose(a); fclose(b);
}

/* Replaces the first occurrence of `from` by `to` (same length) in a file. */
static int patch_file(const char *path, const char *from, const char *to) {
    FILE *f = fopen(path, "r+b");
    if (!f) return 1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    char *buf = malloc(n);
    fseek(f, 0, SEEK_SET);
    if (fread(buf, 1, n, f) != (size_t)n) { fclose(f); free(buf); return 1; }
    char *p = memmem(buf, n, from, strlen(from));
    if (p) { fseek(f, p - buf, SEEK_SET); fwrite(to, 1, strlen(to), f); }
    fclose(f); free(buf);
    return p ? 0 : 1;
}

/* The number field of a JSON object, -1 when absent. */
static double num(json_t *j, const char *key) {
    json_t *v = json_object_get(j, key);
    return json_is_number(v) ? json_number_value(v) : -1;
}

/* eval without --data: the demo model (and a directory exported from it) scores the demo's calibration text;
 * any other model is refused in one line that names --data, before anything is loaded. */
static void eval_data_default(const char *tmp) {
    char args[4096], dir[1100], file[1200];
    snprintf(args, sizeof args, "eval --model %s --seq-len 64 --max-tokens 100 --json", MODEL);
    usage_msg("eval of a model other than the demo without --data", args,
              "--data is needed for a model other than the demo", NULL);
    usage_msg("eval without --data: the hint names the flag", args, "(hint: --data TEXTFILE", NULL);
    json_t *j = run_json("eval of the demo without --data", "eval --seq-len 64 --max-tokens 100 --json");
    const char *data = json_string_value(json_object_get(j, "data"));
    EVB_CHECK(data && strstr(data, "assets/demo/calib.txt") && num(j, "tokens") == 100,
              "eval of the demo without --data scores assets/demo/calib.txt (%s)", data ? data : "-");
    json_decref(j);
    /* A directory 'evobudget export' wrote from the demo: its compression.json names the demo as the source. */
    snprintf(dir, sizeof dir, "%s/demo_export", tmp);
    mkdir(dir, 0755);
    static const char *const files[] = {"config.json", "model.safetensors", "tokenizer.json"};
    for (int i = 0; i < 3; i++) {
        char src[1100];
        snprintf(src, sizeof src, "%s/%s", DEMO, files[i]);
        snprintf(file, sizeof file, "%s/%s", dir, files[i]);
        if (symlink(src, file) != 0) perror(file);
    }
    snprintf(file, sizeof file, "%s/compression.json", dir);
    FILE *f = fopen(file, "w");
    if (f) { fprintf(f, "{\"format\": 1, \"source\": \"%s\"}\n", DEMO); fclose(f); }
    snprintf(args, sizeof args, "eval --model %s --seq-len 64 --max-tokens 100 --compute f32 --json", dir);
    j = run_json("eval of an export of the demo without --data", args);
    data = json_string_value(json_object_get(j, "data"));
    EVB_CHECK(data && strstr(data, "assets/demo/calib.txt") && num(j, "kl") >= 0 && num(j, "kl") < 1e-6,
              "an export of the demo without --data scores the demo's text, kl %.3g from its source", num(j, "kl"));
    json_decref(j);
}

/* Writes text to dir/name (dir created). */
static void put(const char *dir, const char *name, const char *text) {
    char p[1200];
    mkdir(dir, 0755);
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (f) { fputs(text, f); fclose(f); }
}

/* eval --config takes a run directory (its best.json), as plot does; a directory without one (a sweep's) is
 * refused in one line that lists the best.json files of its subfolders. export's --config reads it the same way. */
static void eval_config_dir(const char *tmp, const char *db) {
    char args[4096], run[1100], cfg[4096];
    snprintf(run, sizeof run, "%s/run", tmp);
    snprintf(cfg, sizeof cfg, "{\"model\": \"%s\", \"db\": \"%s\", \"units\": [{\"unit\": 0, \"method\": \"magnitude\", \"sparsity\": 0.5},"
             " {\"unit\": 4, \"method\": \"magnitude\", \"sparsity\": 0.5}]}\n", MODEL, db);
    put(run, "best.json", cfg);
    snprintf(args, sizeof args, "eval --config %s --data %s --seq-len 64 --max-tokens 300 --json", run, CALIB);
    json_t *a = run_json("eval --config RUNDIR", args);
    snprintf(args, sizeof args, "eval --config %s/best.json --data %s --seq-len 64 --max-tokens 300 --json", run, CALIB);
    json_t *b = run_json("eval --config RUNDIR/best.json", args);
    EVB_CHECK(a && b && num(a, "kl") > 0 && num(a, "kl") == num(b, "kl") && num(a, "perplexity") == num(b, "perplexity"),
              "eval --config RUNDIR = eval --config RUNDIR/best.json: kl %.6f, perplexity %.4f", num(a, "kl"), num(a, "perplexity"));
    json_decref(a); json_decref(b);
    char sweep[1100], sub[1200], want[1300];
    snprintf(sweep, sizeof sweep, "%s/sweep", tmp);
    mkdir(sweep, 0755);
    for (int i = 5; i <= 6; i++) {
        snprintf(sub, sizeof sub, "%s/sparsity-0.%d", sweep, i);
        put(sub, "best.json", cfg);
    }
    snprintf(args, sizeof args, "eval --config %s --data %s", sweep, CALIB);
    snprintf(want, sizeof want, "--config %s is a directory without best.json", sweep);
    usage_msg("eval --config of a sweep directory", args, want, NULL);
    snprintf(want, sizeof want, "%s/sparsity-0.5/best.json, %s/sparsity-0.6/best.json", sweep, sweep);
    usage_msg("eval --config of a sweep directory lists its targets' best.json", args, want, NULL);
    snprintf(sub, sizeof sub, "%s/empty", tmp);
    mkdir(sub, 0755);
    snprintf(args, sizeof args, "eval --config %s --data %s", sub, CALIB);
    snprintf(want, sizeof want, "--config %s is a directory without best.json (hint: pass a run directory", sub);
    usage_msg("eval --config of a directory with no best.json anywhere", args, want, NULL);
    snprintf(args, sizeof args, "export --config %s --out %s/exported --json", run, tmp);
    a = run_json("export --config RUNDIR", args);
    EVB_CHECK(a && num(a, "units_compressed") == 2, "export --config RUNDIR reads its best.json: %g units compressed", num(a, "units_compressed"));
    json_decref(a);
}

/* eval --db --uniform-sparsity / --uniform-bits without --method (or --group-size, --sym): the database's one
 * kind of level is used; several are refused in one line listing them and naming the flag that picks one. */
static void eval_uniform_defaults(const char *db, const char *qdb) {
    char args[4096], cmd[4096];
    snprintf(args, sizeof args, "eval --model %s --data %s --seq-len 64 --max-tokens 300 --db %s --uniform-sparsity 0.5 --json", MODEL, CALIB, db);
    json_t *a = run_json("eval --uniform-sparsity on a database of one method, no --method", args);
    snprintf(cmd, sizeof cmd, "%s --method magnitude", args);
    json_t *b = run_json("eval --uniform-sparsity --method magnitude", cmd);
    EVB_CHECK(a && b && num(a, "kl") > 0 && num(a, "kl") == num(b, "kl"), "without --method eval uses the database's one method: kl %.6f = %.6f",
              num(a, "kl"), num(b, "kl"));
    json_decref(a); json_decref(b);
    snprintf(cmd, sizeof cmd, "eval --model %s --data %s --seq-len 64 --max-tokens 300 --db %s --uniform-bits 4", MODEL, CALIB, db);
    usage_msg("eval --uniform-bits on a database of sparse levels only", cmd, "holds no quantized levels; it holds levels of magnitude", NULL);
    snprintf(cmd, sizeof cmd, "'%s' db build --model %s --calib %s --method wanda --sparsity 0.5 --seq-len 64 --calib-windows 4 --out %s > /dev/null 2>&1", EVB_CLI, MODEL, CALIB, db);
    EVB_CHECK(sh(cmd) == 0, "a second method's levels added to the database");
    usage_msg("eval --uniform-sparsity on a database of two methods, no --method", args, "holds sparse levels of 2 methods: magnitude and wanda (hint: pick one with --method NAME)", NULL);
    snprintf(cmd, sizeof cmd, "%s --method wanda", args);
    json_decref(run_json("eval --uniform-sparsity --method wanda on that database", cmd));
    /* quantized levels: one group size and grid are taken, two group sizes are refused */
    snprintf(args, sizeof args, "eval --model %s --data %s --seq-len 64 --max-tokens 300 --db %s --uniform-bits 4 --json", MODEL, CALIB, qdb);
    a = run_json("eval --uniform-bits on a database of rtn, group size 16, symmetric only", args);
    snprintf(cmd, sizeof cmd, "%s --method rtn --group-size 16 --sym", args);
    b = run_json("eval --uniform-bits --method rtn --group-size 16 --sym", cmd);
    EVB_CHECK(a && b && num(a, "kl") > 0 && num(a, "kl") == num(b, "kl"), "without --method, --group-size, --sym eval uses the database's: kl %.6f = %.6f",
              num(a, "kl"), num(b, "kl"));
    json_decref(a); json_decref(b);
    snprintf(cmd, sizeof cmd, "'%s' db build --model %s --calib %s --method rtn --bits 4 --group-size 32 --sym --seq-len 64 --calib-windows 4 --out %s > /dev/null 2>&1", EVB_CLI, MODEL, CALIB, qdb);
    EVB_CHECK(sh(cmd) == 0, "levels of a second group size added to the quantized database");
    usage_msg("eval --uniform-bits on a database of two group sizes", args, "holds rtn levels of group sizes 16, 32 (0: one scale per row) (hint: pick one with --group-size N)", NULL);
    snprintf(cmd, sizeof cmd, "%s --group-size 32", args);
    json_decref(run_json("eval --uniform-bits --group-size 32 on that database (its grid taken)", cmd));
}

/* The three frictions of eval above, on databases built here. */
static void eval_defaults(const char *tmp) {
    char db[1100], qdb[1100], cmd[4096];
    snprintf(db, sizeof db, "%s/db", tmp);
    snprintf(qdb, sizeof qdb, "%s/qdb", tmp);
    snprintf(cmd, sizeof cmd, "'%s' db build --model %s --calib %s --method magnitude --sparsity 0.5 --seq-len 64 --calib-windows 4 --out %s > /dev/null 2>&1", EVB_CLI, MODEL, CALIB, db);
    EVB_CHECK(sh(cmd) == 0, "a database of magnitude levels");
    snprintf(cmd, sizeof cmd, "'%s' db build --model %s --calib %s --method rtn --bits 4 --group-size 16 --sym --seq-len 64 --calib-windows 4 --out %s > /dev/null 2>&1", EVB_CLI, MODEL, CALIB, qdb);
    EVB_CHECK(sh(cmd) == 0, "a database of rtn 4-bit levels, group size 16, symmetric");
    eval_data_default(tmp);
    eval_config_dir(tmp, db);
    eval_uniform_defaults(db, qdb);
}

int main(void) {
    char args[4096], path[1024];
    char *tmp = fixture_tmpdir();
    const int standin = standin_or_stories(tmp, MODEL, sizeof MODEL, CALIB, sizeof CALIB);
    EVB_CHECK(standin >= 0, "the model to run on is readable: %s (%s)", MODEL, standin ? "stand-in" : "stories260K");
    if (standin < 0) return evb_test_summary();
    snprintf(TOK, sizeof TOK, "%.*s/tok512.bin", (int)(strrchr(MODEL, '/') - MODEL), MODEL);
    /* stories260K's own outputs (run.c's tokens, its perplexity) skip on the stand-in; the rest runs on either. */
    const int have = !standin || evb_test_have(EVB_SHARED_DATA "/models/stories260K/stories260K.bin",
                                               "stories260K's generated text and perplexity");
    snprintf(out_path, sizeof out_path, "%s/stdout", tmp);
    snprintf(err_path, sizeof err_path, "%s/stderr", tmp);

    // ---- the JSON contract ----
    snprintf(args, sizeof args, "info --model %s --json", MODEL);
    json_t *j = run_json("info --json", args);
    if (j) {
        EVB_CHECK(json_integer_value(json_object_get(j, "n_params")) == 260032 &&
                  json_integer_value(json_object_get(j, "n_layers")) == 5 &&
                  json_integer_value(json_object_get(j, "n_units")) == 35 &&
                  strcmp(json_string_value(json_object_get(j, "arch")), "llama") == 0, "info reports n_params, n_layers, n_units, arch");
        json_decref(j);
    }
    snprintf(args, sizeof args, "generate --model %s --prompt 'Once upon a time' --steps 60 --json", MODEL);
    j = !have ? NULL : run_json("generate --json", args);
    if (j) {
        json_t *t = json_object_get(j, "tokens");
        const char *text = json_string_value(json_object_get(j, "text"));
        EVB_CHECK(json_array_size(t) == 65 && json_integer_value(json_array_get(t, 0)) == 1 &&
                  json_integer_value(json_array_get(t, 64)) == 310, "generate: 65 tokens, BOS first, run.c's last token 310");
        EVB_CHECK(text && strncmp(text, "Once upon a time, there was a little girl named Lily.", 53) == 0, "generate: text decodes (%.60s)", text ? text : "");
        json_decref(j);
    }
    snprintf(args, sizeof args, "eval --model %s --data %s --seq-len 128 --max-tokens 2000 --json", MODEL, CALIB);
    j = !have ? NULL : run_json("eval --json", args);
    if (j) {
        double ppl = json_real_value(json_object_get(j, "perplexity")), nll = json_real_value(json_object_get(j, "nll"));
        EVB_CHECK(json_integer_value(json_object_get(j, "tokens")) == 2000, "eval --max-tokens 2000 scores 2000 tokens");
        EVB_CHECK(ppl > 3 && ppl < 10 && fabs(log(ppl) - nll) < 1e-9, "eval: perplexity %.3f = exp(nll)", ppl);
        json_decref(j);
    }

    // ---- bad input ----
    bad("unknown subcommand", "frobnicate", "frobnicate");
    bad("unknown option", "info --modle x", "--modle");
    bad("missing model file", "info --model /nonexistent/model.bin", "/nonexistent/model.bin");
    {   /* Regression: a vocab size of INT32_MIN once overflowed when negated (found by fuzz_llama2c_bin). */
        static const int32_t hdr[7] = {6, 0, 1047227909, 0, 3, INT32_MIN, 8};
        snprintf(path, sizeof path, "%s/intmin.bin", tmp);
        FILE *f = fopen(path, "wb"); fwrite(hdr, 4, 7, f); fclose(f);
        snprintf(args, sizeof args, "info --model %s", path);
        bad("llama2.c header with vocab INT32_MIN", args, path);
    }
    {
        snprintf(args, sizeof args, "generate --model %s --steps many", MODEL);
        bad("non-integer value", args, "--steps");
        snprintf(path, sizeof path, "%s/truncated.bin", tmp);
        copy_prefix(MODEL, path, 100000);
        snprintf(args, sizeof args, "info --model %s", path);
        bad("truncated llama2.c checkpoint", args, path);
        copy_prefix(MODEL, path, 20);
        bad("llama2.c file shorter than its header", args, path);
        snprintf(args, sizeof args, "generate --model %s --prompt-tokens 1,403,600 --steps 2", MODEL);
        bad("prompt token outside the vocabulary", args, "600");

        /* Hugging Face directories derived from the real model, each broken in one way. */
        evb_model *m = NULL;
        evb_model_load(MODEL, &m);
        static const struct { const char *what, *file, *from, *to, *needle; } cases[] = {
            {"JSON syntax error in config.json", "config.json", "\"model_type\"", "\"model_type\",", "config.json"},
            {"shape disagrees with config.json", "config.json", "\"intermediate_size\": 172", "\"intermediate_size\": 173", "mlp.gate_proj"},
            {"unknown dtype", "model.safetensors", "\"dtype\":\"F32\"", "\"dtype\":\"Q32\"", "Q32"},
            {"missing tensor", "model.safetensors", "model.norm.weight", "model.norm.weighX", "model.norm.weight"},
            {"header offsets past the end", "model.safetensors", "\"data_offsets\":[0,", "\"data_offsets\":[9,", "model.safetensors"},
            {"unsupported model_type", "config.json", "\"llama\"", "\"gpt-j\"", "gpt-j"},
        };
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
            char *dir = fixture_tmpdir();
            fixture_write_hf(m, dir, "F32", 1, 1, "llama");
            snprintf(path, sizeof path, "%s/%s", dir, cases[i].file);
            int p = patch_file(path, cases[i].from, cases[i].to);
            EVB_CHECK(p == 0, "fixture for '%s' written", cases[i].what);
            snprintf(args, sizeof args, "info --model %s", dir);
            bad(cases[i].what, args, cases[i].needle);
            fixture_rmdir(dir);
            free(dir);
        }
        {   /* A safetensors file cut short: the last tensors' offsets run past the end. */
            char *dir = fixture_tmpdir();
            fixture_write_hf(m, dir, "BF16", 1, 1, "llama");
            snprintf(path, sizeof path, "%s/model.safetensors", dir);
            FILE *f = fopen(path, "rb"); fseek(f, 0, SEEK_END); long n = ftell(f); fclose(f);
            if (truncate(path, n - 1000) != 0) perror("truncate");
            snprintf(args, sizeof args, "eval --model %s --tokenizer %s --data %s", dir, TOK, path);
            bad("truncated safetensors", args, "model.safetensors");
            if (truncate(path, 5) != 0) perror("truncate");
            bad("safetensors shorter than its length field", args, "model.safetensors");
            fixture_rmdir(dir);
            free(dir);
        }
        evb_model_free(m);
        snprintf(path, sizeof path, "%s/bad.json", tmp);
        FILE *f = fopen(path, "w"); fputs("{\"model\": {\"type\": \"BPE\",\n \"vocab\": {,}}}\n", f); fclose(f);
        snprintf(args, sizeof args, "generate --model %s --tokenizer %s --prompt hi --steps 1", MODEL, path);
        bad("JSON syntax error in tokenizer.json", args, "bad.json");
        snprintf(args, sizeof args, "eval --model %s --data /nonexistent.txt", MODEL);
        bad("missing data file", args, "/nonexistent.txt");
        snprintf(args, sizeof args, "eval --model %s --data %s --seq-len 4096", MODEL, CALIB);
        bad("seq-len beyond the context", args, "--seq-len");
        snprintf(args, sizeof args, "generate --model %s --prompt hi --steps 600", MODEL);
        bad("steps beyond the context", args, "--steps");
    }

    // ---- flags: --flag=value, --version, suggestions ----
    {
        snprintf(args, sizeof args, "info --json --model %s", MODEL);
        char *out1, *err1, *out2, *err2;
        int rc1 = run(args, &out1, &err1);
        snprintf(args, sizeof args, "info --json --model=%s", MODEL);
        int rc2 = run(args, &out2, &err2);
        EVB_CHECK(rc1 == 0 && rc2 == 0 && out1 && out2 && out1[0] == '{' && strcmp(out1, out2) == 0,
                  "info --model=PATH prints what info --model PATH does (exit %d, %d)", rc1, rc2);
        free(out1); free(err1); free(out2); free(err2);
        /* Both forms mixed, and a positional argument after the flags. */
        snprintf(args, sizeof args, "eval --model=%s --data %s --seq-len=64 --max-tokens 300 --json", MODEL, CALIB);
        json_t *a = run_json("eval with --flag=value and --flag value mixed", args);
        snprintf(args, sizeof args, "eval --model %s --data=%s --seq-len 64 --max-tokens=300 --json", MODEL, CALIB);
        json_t *b = run_json("eval with the forms swapped", args);
        EVB_CHECK(a && b && json_integer_value(json_object_get(a, "tokens")) == 300 &&
                  json_integer_value(json_object_get(b, "tokens")) == 300 &&
                  json_real_value(json_object_get(a, "perplexity")) == json_real_value(json_object_get(b, "perplexity")),
                  "eval --max-tokens=300 and --max-tokens 300: the same 300 tokens and perplexity");
        json_decref(a); json_decref(b);
        usage_msg("an empty value after =", "info --model=", "--model needs a value, got an empty one", NULL);
        usage_msg("an empty value", "info --model ''", "--model needs a value, got an empty one", NULL);
        usage_msg("a value missing at the end", "info --model", "--model needs a value", NULL);
        usage_msg("a value given to a switch", "info --json=yes", "--json takes no value, got '--json=yes'", NULL);
        usage_msg("an integer flag's value after =", "eval --max-tokens=many", "--max-tokens 'many' is not an integer", NULL);
        usage_msg("an abbreviated flag is refused", "info --mod x", "unknown option '--mod'; did you mean '--model'?", NULL);
        usage_msg("an argument the command does not take", "info extra", "unexpected argument 'extra'", NULL);
        usage_msg("an argument after --", "info -- extra", "unexpected argument 'extra'", NULL);
        usage_msg("plot's run directory after a flag", "plot --json /nonexistent/run", "/nonexistent/run is not a directory", NULL);
        bad("db info's directory after a flag", "db info --json /nonexistent/db", "/nonexistent/db: no level database here");

        int rc = run("--version", &out1, &err1);
        EVB_CHECK(rc == 0 && out1 && strncmp(out1, "evobudget " EVB_PROJECT_VERSION "\n", strlen(EVB_PROJECT_VERSION) + 11) == 0 &&
                  strstr(out1, "\nblas ") && strstr(out1, "\ncompute ") && err1 && !err1[0],
                  "--version: exit %d, 'evobudget %s' (CMake's project version) then the BLAS and compute paths", rc, EVB_PROJECT_VERSION);
        rc = run("-V", &out2, &err2);
        EVB_CHECK(rc == 0 && out1 && out2 && strcmp(out1, out2) == 0, "-V is --version");
        free(out1); free(err1); free(out2); free(err2);

        usage_msg("a misspelt command", "serch", "unknown command 'serch'; did you mean 'search'?", NULL);
        usage_msg("a misspelt db command", "db buld", "unknown db command 'buld'; did you mean 'build'?", NULL);
        usage_msg("a misspelt flag", "search --generatons 5", "unknown option '--generatons'; did you mean '--generations'?", NULL);
        usage_msg("a misspelt flag with =", "search --generatons=5", "unknown option '--generatons'; did you mean '--generations'?", NULL);
        usage_msg("a flag's start names its candidates", "search --target 0.5",
                  "did you mean '--target-sparsity', '--target-bits', '--target-drop', '--target-bytes', "
                  "'--target-speedup' or "
                  "'--target-latency'?", NULL);
        usage_msg("an unknown flag with nothing close", "search --zzzz 5", "unknown option '--zzzz'", "did you mean");
        usage_msg("an unknown command with nothing close", "frobnicate", "unknown command 'frobnicate'", "did you mean");
        usage_msg("a flag of another command is not suggested", "info --dat x", "unknown option '--dat'", "did you mean");
        readme_lines_parse();
    }

    /* Every input a fuzzer found (tests/fuzz/regress/<target>-<n>) gives a clean one-line error. */
    DIR *d = opendir(EVB_SOURCE_DIR "/tests/fuzz/regress");
    struct dirent *de;
    int n_regress = 0;
    while (d && (de = readdir(d))) {
        char file[1024];
        snprintf(file, sizeof file, "%s/tests/fuzz/regress/%s", EVB_SOURCE_DIR, de->d_name);
        if (strncmp(de->d_name, "llama2c_bin-", 12) == 0) snprintf(args, sizeof args, "info --model %s", file);
        else if (strncmp(de->d_name, "tokenizer_json-", 15) == 0)
            snprintf(args, sizeof args, "generate --model %s --tokenizer %s --prompt hi --steps 1", DEMO, file);
        else continue;
        n_regress++;
        bad(de->d_name, args, de->d_name);
    }
    if (d) closedir(d);
    EVB_CHECK(n_regress >= 3, "%d fuzz reproducers replayed", n_regress);

    eval_defaults(tmp);

    fixture_rmdir(tmp);
    free(tmp);
    return evb_test_summary();
}
