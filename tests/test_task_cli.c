#define _GNU_SOURCE
/* test_task_cli.c -- searches scored with the model in the loop, on stories260K (or its stand-in): the
 * built-in task fitness (`--fitness task:FILE`) gives the same best.json with 1 and 2 threads, and the same
 * as the example C plug-in (examples/plugin/task_plugin.c) and the example Python worker
 * (examples/worker/task_worker.py, protocol 2) computing the same function; a mix with KL runs; eval --task
 * reports the accuracy; bad input (malformed task files, unknown fitness terms, a plug-in asking for positions
 * or sequences it does not have, one registering tokens beyond the vocabulary or the context, a plug-in of
 * problem files given a model) is refused in one line with nothing written. */
#include "testing.h"
#include "fixtures.h"
#include "shell.h"
#include "standin.h"
#include "evobudget/evobudget.h"

#include <jansson.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char MODEL[1024], CALIB[1024], COMMON[2600], TASK[1100], tmp_dir[1024];

/* Items from the kind of text the model knows: a story's opening, its true next sentence and three others. */
static const char *const sentences[] = {
    "Once upon a time, there was a little girl named Lily.", "She loved to play outside in the sun.",
    "One day, she saw a big red ball in the park.", "Tom was a happy dog who liked to run.",
    "He found a stick and gave it to his friend.", "The cat was sad because it was raining.",
    "Mom made a cake for the birthday party.", "The bird flew high up in the blue sky.",
    "Ben and Sue went to the beach with their dad.", "They built a big sand castle by the sea.",
    "The little boy wanted to eat the cookie.", "His mom said he had to wait until after dinner.",
    "The sun was hot and the children were thirsty.", "They drank cold water and felt much better.",
    "Lily smiled and said thank you to her friend.", "The old tree had many green leaves.",
};
#define NS (int)(sizeof sentences / sizeof sentences[0])

static void write_task(const char *path, int n_items, int shift) {
    FILE *f = fopen(path, "w");
    for (int i = 0; i < n_items; i++) {
        int a = (i + shift) % NS, gold = i % 4;
        fprintf(f, "{\"context\": \"%s\", \"choices\": [", sentences[a]);
        for (int c = 0; c < 4; c++)
            fprintf(f, "%s\" %s\"", c ? ", " : "", sentences[c == gold ? (a + 1) % NS : (a + 3 + 5 * c + i) % NS]);
        fprintf(f, "], \"gold\": %d}\n", gold);
    }
    fclose(f);
}

static int run(const char *args, const char *out) {
    char cmd[6000];
    snprintf(cmd, sizeof cmd, "'%s' search %s %s --out %s > %s.stdout 2> %s.stderr", EVB_CLI, COMMON, args, out, out, out);
    return sh(cmd);
}

static int same_best(const char *a, const char *b) {
    char cmd[2600];
    snprintf(cmd, sizeof cmd, "cmp -s %s/best.json %s/best.json", a, b);
    return sh(cmd) == 0;
}

/* The stderr of run `out`: exactly one line, holding `want`. */
static int one_line(const char *out, const char *want) {
    char p[1200];
    snprintf(p, sizeof p, "%s.stderr", out);
    char *e = slurp(p);
    int ok = e && strstr(e, want) && strchr(e, '\n') == strrchr(e, '\n');
    if (!ok) printf("  stderr: %s\n", e ? e : "(none)");
    free(e);
    return ok;
}

static void refusals(void) {
    char out[1200], bad[1200], args[2600];
    snprintf(bad, sizeof bad, "%s/bad.jsonl", tmp_dir);
    FILE *f = fopen(bad, "w");
    fputs("{\"context\": \"Once\", \"choices\": [\" a\", \" b\"], \"gold\": 0}\n{\"context\": \"x\", \"choices\": [\" a\", \" b\"], \"gold\": 7}\n", f);
    fclose(f);
    static const char *cases[][2] = {
        {"--fitness task:BAD", "bad.jsonl:2: \"gold\" must be an index into the 2 choices"},
        {"--fitness task:/nonexistent/items.jsonl", "/nonexistent/items.jsonl: No such file or directory"},
        {"--fitness kl+task", "'task' is not kl, ppl or task:FILE"},
        {"--fitness 0*kl", "weight '0' must be a positive number"},
        {"--fitness task:TASK --method owl", "--method owl is an allocation rule"},
        {"--fitness-plugin PLUGIN --fitness-arg range", ": positions [0, 1) asked, its scored positions are [2, 8)"},
        {"--fitness-plugin PLUGIN --fitness-arg batch", "plug-in 'bad-plugin' asked for what it cannot have: sequence"},
        {"--fitness-plugin PLUGIN --fitness-arg vocab", "plug-in 'bad-plugin' registered sequence 200: token 3 is 1073741824, outside the model's vocabulary"},
        {"--fitness-plugin PLUGIN --fitness-arg context", "plug-in 'bad-plugin' registered sequence 200 has 100000 tokens, beyond the model's context"},
        {"--fitness-plugin PLUGIN --fitness-arg fail", "evaluate_model failed (status 1): bad_plugin: failing as asked"},
        {"--fitness-plugin ADDITIVE", "scores problem files only"},
        {"--fitness-plugin ABI99", "plug-in ABI 99, this program speaks 1 and 2"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char a[600];
        snprintf(a, sizeof a, "%s", cases[i][0]);
        char *k;
        snprintf(args, sizeof args, "%s --generations 2 --offspring 4", a);
        if ((k = strstr(a, "BAD"))) snprintf(args, sizeof args, "--fitness task:%s --generations 2", bad);
        if ((k = strstr(a, "TASK"))) snprintf(args, sizeof args, "--fitness task:%s --method owl", TASK);
        if ((k = strstr(a, "PLUGIN"))) snprintf(args, sizeof args, "--fitness-plugin %s %s --generations 2 --offspring 4", EVB_BAD_PLUGIN, k + 6);
        if ((k = strstr(a, "ABI99"))) snprintf(args, sizeof args, "--fitness-plugin %s --generations 2", EVB_ABI99_PLUGIN);
        if ((k = strstr(a, "ADDITIVE"))) snprintf(args, sizeof args, "--fitness-plugin %s --generations 2", EVB_ADDITIVE_PLUGIN);
        snprintf(out, sizeof out, "%s/refused%zu", tmp_dir, i);
        int rc = run(args, out);
        EVB_CHECK(rc != 0 && one_line(out, cases[i][1]) && !fixture_exists(out, "best.json"),
                  "%s: exit %d, one line with \"%s\", no best.json", cases[i][0], rc, cases[i][1]);
    }
}

int main(void) {
    evb_init();
    char *tmp = fixture_tmpdir();
    snprintf(tmp_dir, sizeof tmp_dir, "%s", tmp);
    if (standin_or_stories(tmp, MODEL, sizeof MODEL, CALIB, sizeof CALIB) < 0) { printf("FAIL cannot write the stand-in in %s\n", tmp); return 1; }
    snprintf(COMMON, sizeof COMMON, "--model %s --calib %s --seq-len 64 --calib-windows 8 --seed 5 --target-sparsity 0.6 --num-levels 3 --cache %s/cache",
             MODEL, CALIB, tmp);
    snprintf(TASK, sizeof TASK, "%s/task.jsonl", tmp);
    write_task(TASK, 24, 0);
    char a[1200], b[1200], c[1200], d[1200], args[2600];
    snprintf(a, sizeof a, "%s/builtin", tmp);
    snprintf(b, sizeof b, "%s/threads2", tmp);
    snprintf(c, sizeof c, "%s/plugin", tmp);
    snprintf(d, sizeof d, "%s/worker", tmp);
    const char *gens = "--generations 4 --offspring 6";
    snprintf(args, sizeof args, "--fitness task:%s %s --threads 1", TASK, gens);
    int rc = run(args, a);
    char mp[1300];
    snprintf(mp, sizeof mp, "%s/manifest.json", a);
    json_t *man = json_load_file(mp, 0, NULL);
    const char *fit = json_string_value(json_object_get(man, "fitness"));
    EVB_CHECK(rc == 0 && fixture_exists(a, "best.json") && fit && !strncmp(fit, "task:", 5), "search --fitness task:FILE: exit %d, best.json, the manifest records %s", rc, fit ? fit : "nothing");
    json_decref(man);
    snprintf(args, sizeof args, "--fitness task:%s %s --threads 2", TASK, gens);
    rc = run(args, b);
    EVB_CHECK(rc == 0 && same_best(a, b), "the same best.json with 2 threads as with 1");
    snprintf(args, sizeof args, "--fitness-plugin %s --fitness-arg %s %s", EVB_TASK_PLUGIN, TASK, gens);
    rc = run(args, c);
    EVB_CHECK(rc == 0 && same_best(a, c), "the example C plug-in (ABI 2) gives the built-in task fitness's best.json: exit %d", rc);
    if (sh("/usr/bin/python3 -c 'import msgpack' 2> /dev/null") == 0) {
        snprintf(args, sizeof args, "--fitness-cmd \"/usr/bin/python3 %s/examples/worker/task_worker.py %s\" --workers 2 %s", EVB_SOURCE_DIR, TASK, gens);
        rc = run(args, d);
        EVB_CHECK(rc == 0 && same_best(a, d), "the example Python worker (protocol 2, 2 workers) gives the built-in's best.json: exit %d", rc);
    } else printf("SKIP the Python worker: python3-msgpack is not installed (apt install python3-msgpack)\n");
    snprintf(args, sizeof args, "--fitness kl+0.5*task:%s %s", TASK, gens);
    snprintf(d, sizeof d, "%s/mix", tmp);
    rc = run(args, d);
    EVB_CHECK(rc == 0 && fixture_exists(d, "best.json"), "search --fitness kl+0.5*task:FILE: exit %d", rc);
    char cmd[4000], ep[1300];
    snprintf(ep, sizeof ep, "%s/eval.json", tmp);
    snprintf(cmd, sizeof cmd, "'%s' eval --model %s --data %s --seq-len 64 --max-tokens 500 --config %s --task %s --json > %s 2> /dev/null",
             EVB_CLI, MODEL, CALIB, a, TASK, ep);
    rc = sh(cmd);
    json_t *ev = json_load_file(ep, 0, NULL), *task = json_object_get(ev, "task");
    double acc = json_number_value(json_object_get(task, "accuracy")), ce = json_number_value(json_object_get(task, "ce"));
    EVB_CHECK(rc == 0 && json_integer_value(json_object_get(task, "items")) == 24 && acc >= 0 && acc <= 1 && ce > 0,
              "eval --config --task: 24 items, accuracy %.3f, cross-entropy %.4f", acc, ce);
    snprintf(mp, sizeof mp, "%s/best.json", a);
    json_t *best = json_load_file(mp, 0, NULL);
    double fa = json_number_value(json_object_get(best, "fitness_all"));
    EVB_CHECK(fabs(fa - ce) < 1e-4 * ce, "best.json's fitness_all (every item, %.6f) is the cross-entropy eval reports (%.6f)", fa, ce);
    json_decref(best);
    json_decref(ev);
    refusals();
    /* bad input with --force leaves the run that is there as it was */
    snprintf(cmd, sizeof cmd, "cp %s/best.json %s/best.before", a, tmp);
    sh(cmd);
    snprintf(args, sizeof args, "--fitness task:%s/missing.jsonl --force", tmp);
    rc = run(args, a);
    snprintf(cmd, sizeof cmd, "cmp -s %s/best.json %s/best.before", a, tmp);
    EVB_CHECK(rc == 2 && sh(cmd) == 0 && fixture_exists(a, "checkpoint.msgpack"), "a missing task file with --force: exit %d, the run directory as it was", rc);
    fixture_rmdir(tmp);
    free(tmp);
    return evb_test_summary();
}
