#define _GNU_SOURCE
/* test_search_cli.c -- `evobudget search` on stories260K: a short EvoPress run writes the run directory
 * (manifest.json, log.jsonl, checkpoint, front.csv, best.json) and keeps the budget exactly; its best.json
 * is what `eval --config` needs; the same seed gives the same best.json with 1 and 2 threads; a run killed
 * with SIGKILL and resumed ends with the best.json of an uninterrupted run; depth and bits targets and the
 * baselines run; bad input is refused in one line with the run directory intact. */
#include "testing.h"
#include "fixtures.h"
#include "shell.h"
#include "standin.h"

#include <jansson.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* stories260K and the TinyStories text, or tests/standin.h's stand-in where ../shared/data is missing. */
static char MODEL[1024], CALIB[1024], COMMON[2200];

static char cache[1024];


static int run(const char *env, const char *args, const char *out) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s '%s' search %s --cache %s %s --out %s > %s.stdout 2> %s.stderr", env, EVB_CLI, COMMON, cache, args, out, out, out);
    return sh(cmd);
}

static json_t *load(const char *dir, const char *name) {
    char p[1200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    json_error_t e;
    return json_load_file(p, 0, &e);
}

static int same_file(const char *a, const char *b) {
    char cmd[2600];
    snprintf(cmd, sizeof cmd, "cmp -s %s %s", a, b);
    return sh(cmd) == 0;
}

static int lines(const char *path) {
    FILE *f = fopen(path, "r");
    int n = 0, c;
    while (f && (c = fgetc(f)) != EOF) n += c == '\n';
    if (f) fclose(f);
    return n;
}

/* The main job: no model and no target is the demo model's front against uniform on held-out text
 * (short here: 2 generations of 4 offspring, 4 windows of 64, 1 level each side). */
static void main_job(const char *tmp) {
    char path[1400], cmd2[4096];
    snprintf(cmd2, sizeof cmd2, "cd %s && '%s' search --generations 2 --offspring 4 --calib-windows 4 --seq-len 64 --num-levels 1 "
             "--cache %s/democache > demo.out 2> demo.err", tmp, EVB_CLI, tmp);
    EVB_CHECK(sh(cmd2) == 0, "evobudget search with no model and no target: the main job");
    snprintf(path, sizeof path, "%s/demo.out", tmp);
    char *out = slurp(path);
    int drows = 0, better = 0;
    for (char *q = out ? strstr(out, "uniform\n") : NULL; q && (q = strchr(q, '\n')) && q[1] == ' '; q++) {
        double t, kc, kh, ku, ph, pu;
        if (sscanf(q + 1, "%lf %lf %lf %lf %lf %lf", &t, &kc, &kh, &ku, &ph, &pu) != 6) break;
        drows += kh > 0 && ku > 0 && ph > 1 && pu > 1;
        better += kh <= ku;
    }
    EVB_CHECK(drows == 5, "its table: 5 targets, each with held-out KL and perplexity of the search and of uniform (%d rows)\n%s", drows, out ? out : "");
    printf("# the searched allocation's held-out KL is at most uniform's at %d of 5 sizes (2 generations)\n", better);
    snprintf(path, sizeof path, "%s/evobudget-demo/sweep.json", tmp);
    json_t *sw = json_load_file(path, 0, NULL);
    EVB_CHECK(json_array_size(json_object_get(sw, "runs")) == 5 && json_object_get(json_array_get(json_object_get(sw, "runs"), 4), "uniform_kl"),
              "evobudget-demo/sweep.json: 5 runs with their held-out figures");
    json_decref(sw);
    free(out);
    snprintf(path, sizeof path, "%s/demo.err", tmp);
    char *de = slurp(path);
    EVB_CHECK(de && strstr(de, "the level cache") && strstr(de, "evobudget cache list"), "it says what the level cache now holds and how to list and clear it");
    free(de);
    snprintf(cmd2, sizeof cmd2, "cd %s && '%s' search --generations 2 --cache %s/democache > /dev/null 2> demo2.err", tmp, EVB_CLI, tmp);
    int rc2 = sh(cmd2);
    snprintf(path, sizeof path, "%s/demo2.err", tmp);
    char *e2 = slurp(path);
    EVB_CHECK(rc2 == 2 && e2 && strstr(e2, "--force") && lines(path) == 1, "run again, it refuses to overwrite evobudget-demo in one line naming --force");
    free(e2);
}

/* The run directories the checks share: EvoPress (a, b with 1 thread, k killed and resumed) and uniform (u). */
static char a[1200], b[1200], k[1200], u[1200];
static const char *const evo = "--method evopress --target-sparsity 0.5 --generations 12 --offspring 8 --stages 4@200,1@0";

/* One EvoPress run, its outputs, against the uniform baseline on the same problem. */
static void check_one_run(const char *tmp) {
    char path[1400], path2[1400], cmd[4096];
    /* one run, its outputs */
    EVB_CHECK(run("OMP_NUM_THREADS=2", evo, a) == 0, "evopress at 50%% sparsity, 12 generations");
    json_t *best = load(a, "best.json"), *man = load(a, "manifest.json");
    double cost = json_real_value(json_object_get(best, "cost")), budget = json_real_value(json_object_get(best, "budget"));
    EVB_CHECK(best && man && json_array_size(json_object_get(best, "units")) == 35 && cost == budget,
              "best.json: 35 units, cost %.0f weights kept = the uniform level's %.0f exactly", cost, budget);
    snprintf(path, sizeof path, "%s/log.jsonl", a);
    EVB_CHECK(lines(path) == 12, "log.jsonl: one line per generation (%d)", lines(path));
    snprintf(path, sizeof path, "%s/front.csv", a);
    EVB_CHECK(lines(path) >= 2, "front.csv: a header and %d points", lines(path) - 1);
    json_t *uni = NULL;
    EVB_CHECK(run("", "--method uniform --target-sparsity 0.5", u) == 0 && (uni = load(u, "best.json")) != NULL,
              "the uniform baseline on the same problem");
    double fe = json_real_value(json_object_get(best, "fitness_all")), fu = json_real_value(json_object_get(uni, "fitness_all"));
    EVB_CHECK(fe > 0 && fu > 0 && fe < fu, "EvoPress's KL on all calibration tokens %.5f is below uniform's %.5f at the same cost", fe, fu);
    snprintf(path, sizeof path, "%s.stderr", u);
    char *ue = slurp(path);
    EVB_CHECK(ue && !strstr(ue, "generation") && !strstr(ue, "ETA") && strstr(ue, "candidate(s) scored"),
              "uniform reports the one candidate it scores, with no generations or ETA");
    free(ue);
    double fu_batch = json_real_value(json_object_get(uni, "fitness"));
    EVB_CHECK(fu_batch > 0 && fu_batch != fu, "uniform's fitness on the batch it was scored on (%.5f) is its own figure, apart from fitness_all", fu_batch);
    /* eval --calib-windows scores the search's calibration windows: the KL is fitness_all (float16 teacher) */
    snprintf(cmd, sizeof cmd, "'%s' eval --config %s/best.json --data %s --seq-len 64 --calib-windows 16 --json > %s/evalc.json 2>/dev/null", EVB_CLI, u, CALIB, tmp);
    json_t *evc = NULL;
    EVB_CHECK(sh(cmd) == 0 && (evc = load(tmp, "evalc.json")) && fabs(json_real_value(json_object_get(evc, "kl")) - fu) <= 1e-3 * fu,
              "eval --calib-windows 16 of uniform's best.json: KL %.6f = fitness_all %.6f (1e-3 relative)", json_real_value(json_object_get(evc, "kl")), fu);
    json_decref(evc); json_decref(uni);
    json_decref(best); json_decref(man);
}

/* eval --config needs nothing else. */
static void check_eval_config(const char *tmp) {
    char path[1400], path2[1400], cmd[4096];
    /* eval --config needs nothing else */
    snprintf(cmd, sizeof cmd, "'%s' eval --config %s/best.json --data %s --seq-len 64 --max-tokens 4000 --json > %s/eval.json 2>/dev/null", EVB_CLI, a, CALIB, tmp);
    json_t *ev = NULL;
    EVB_CHECK(sh(cmd) == 0 && (ev = load(tmp, "eval.json")) && json_real_value(json_object_get(ev, "kl")) > 0 &&
              json_real_value(json_object_get(ev, "perplexity")) > 1, "eval --config best.json: perplexity %.3f, kl %.4f",
              json_real_value(json_object_get(ev, "perplexity")), json_real_value(json_object_get(ev, "kl")));
    json_decref(ev);
}

/* Same answer with 1 and 2 threads; a run killed with SIGKILL and resumed ends the same. */
static void check_threads_resume(const char *tmp) {
    char path[1400], path2[1400], cmd[4096];
    /* thread count */
    EVB_CHECK(run("OMP_NUM_THREADS=1", evo, b) == 0, "the same run with 1 thread");
    snprintf(path, sizeof path, "%s/best.json", a);
    snprintf(path2, sizeof path2, "%s/best.json", b);
    EVB_CHECK(same_file(path, path2), "same seed, same best.json with 1 and 2 threads");
    snprintf(path, sizeof path, "%s/front.csv", a);
    snprintf(path2, sizeof path2, "%s/front.csv", b);
    EVB_CHECK(same_file(path, path2), "and the same front.csv");

    /* SIGKILL and --resume */
    int killed_at = -1;
    for (int attempt = 0; attempt < 6 && killed_at < 1; attempt++) {
        snprintf(cmd, sizeof cmd, "rm -rf %s", k);
        sh(cmd);
        pid_t pid = fork();
        if (pid == 0) {
            snprintf(cmd, sizeof cmd, "exec '%s' search %s --cache %s %s --out %s > /dev/null 2>&1", EVB_CLI, COMMON, cache, evo, k);
            execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
            _exit(127);
        }
        snprintf(path, sizeof path, "%s/log.jsonl", k);
        for (int polls = 0; polls < 4000 && lines(path) < 2 + attempt; polls++) {
            struct timespec ts = {0, 2000000L};
            nanosleep(&ts, NULL);
            if (waitpid(pid, NULL, WNOHANG) == pid) { pid = -1; break; }
        }
        if (pid < 0) continue;
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        killed_at = lines(path);
        snprintf(path2, sizeof path2, "%s/best.json", k);
        if (access(path2, F_OK) == 0) killed_at = -1; /* it had finished */
    }
    EVB_CHECK(killed_at >= 1 && killed_at < 12, "search killed with SIGKILL after %d of 12 generations", killed_at);
    EVB_CHECK(run("", "--resume --method evopress --target-sparsity 0.5 --generations 12 --offspring 8 --stages 4@200,1@0", k) == 0,
              "--resume finishes it");
    snprintf(path, sizeof path, "%s/best.json", a);
    snprintf(path2, sizeof path2, "%s/best.json", k);
    EVB_CHECK(same_file(path, path2), "the resumed run's best.json equals the uninterrupted run's");
}

/* A token budget stops a run early and cleanly; --resume with a larger one continues it. */
static void check_token_budget(const char *tmp) {
    char path[1400], path2[1400], cmd[4096];
    /* --token-budget: a third of the tokens the 12-generation run scored stops it early, cleanly; --resume with
     * all of them ends with that run's best.json and front.csv */
    {
        snprintf(path, sizeof path, "%s/log.jsonl", a);
        FILE *lf = fopen(path, "r");
        char ln[1024];
        long total = 0, t;
        while (lf && fgets(ln, sizeof ln, lf)) { char *q = strstr(ln, "\"tokens\": "); if (q && sscanf(q + 10, "%ld", &t) == 1) total = t; }
        if (lf) fclose(lf);
        char tb[1200], args[600];
        snprintf(tb, sizeof tb, "%s/budget", tmp);
        snprintf(args, sizeof args, "%s --json --token-budget %ld", evo, total / 3);
        int r1 = run("", args, tb);
        snprintf(path, sizeof path, "%s.stdout", tb);
        json_t *sj = json_load_file(path, 0, NULL);
        long got = sj ? (long)json_integer_value(json_object_get(sj, "tokens")) : -1, gens = sj ? (long)json_integer_value(json_object_get(sj, "generations")) : -1;
        const char *stop = sj ? json_string_value(json_object_get(sj, "stop")) : NULL;
        EVB_CHECK(total > 0 && r1 == 0 && stop && !strcmp(stop, "token_budget") && got <= total / 3 && gens > 0 && gens < 12,
                  "--token-budget %ld (a third of %ld): stopped at generation %ld with %ld tokens, \"stop\": %s", total / 3, total, gens, got, stop ? stop : "?");
        json_decref(sj);
        snprintf(path, sizeof path, "%s/best.json", tb);
        EVB_CHECK(access(path, F_OK) == 0, "best.json written as at a normal end");
        snprintf(args, sizeof args, "%s --resume --token-budget %ld", evo, total);
        int r2 = run("", args, tb);
        snprintf(path2, sizeof path2, "%s/best.json", a);
        char f1[1400], f2[1400];
        snprintf(f1, sizeof f1, "%s/front.csv", tb);
        snprintf(f2, sizeof f2, "%s/front.csv", a);
        EVB_CHECK(r2 == 0 && same_file(path, path2) && same_file(f1, f2), "--resume with a budget of all %ld tokens: best.json and front.csv equal the uninterrupted run's", total);
        snprintf(args, sizeof args, "%s --token-budget 10", evo);
        snprintf(tb, sizeof tb, "%s/budget2", tmp);
        int r3 = run("", args, tb);
        snprintf(path, sizeof path, "%s.stderr", tb);
        EVB_CHECK(r3 == 2 && lines(path) == 1, "a budget below one generation is refused in one line");
    }
}

/* A profile as a surrogate's prior: refused for other levels; EvoPress starts from its additive optimum; its
 * tokens are the search's. */
static void check_prior(const char *tmp, const char *sd) {
    char path[1400], path2[1400];
    int r;
    /* the prior of a surrogate must be a profile of the same levels: --num-levels 2 has 5 per unit */
    snprintf(path2, sizeof path2, "%s/sur", tmp);
    char args[1600];
    snprintf(args, sizeof args, "%s --num-levels 2 --surrogate 4 --prior %s", evo, sd);
    r = run("", args, path2);
    snprintf(path, sizeof path, "%s.stderr", path2);
    char *e = slurp(path);
    EVB_CHECK(r == 1 && lines(path) == 1 && e && strstr(e, "--prior"), "a prior of other levels is refused in one line naming --prior: %s", e ? e : "");
    free(e);
    snprintf(args, sizeof args, "%s --num-levels 1 --surrogate 4 --prior %s", evo, sd);
    r = run("", args, path2);
    snprintf(path, sizeof path, "%s/log.jsonl", path2);
    e = slurp(path);
    EVB_CHECK(r == 0 && e && strstr(e, "\"surrogate_rho\""), "a surrogate run with the profile as its prior logs its rank correlation");
    free(e);
    /* the prior's start (in the manifest): its summed profile KL below the uniform allocation's; the profile's
     * tokens are counted as the search's; a budget of only those is refused naming them */
    json_t *pj = load(sd, "sensitivity.json"), *pu = json_object_get(pj, "units");
    json_t *man = load(path2, "manifest.json");
    json_t *start = json_object_get(json_object_get(json_object_get(man, "search"), "start"), "levels");
    long ptok = (long)json_integer_value(json_object_get(pj, "tokens"));
    double sum = 0, uni = 0;
    int moved = 0;
    for (size_t i = 0; i < json_array_size(start) && i < json_array_size(pu); i++) {
        json_t *lv = json_object_get(json_array_get(pu, i), "levels");
        int l = (int)json_integer_value(json_array_get(start, i));
        sum += json_real_value(json_object_get(json_array_get(lv, (size_t)l), "kl"));
        uni += json_real_value(json_object_get(json_array_get(lv, 1), "kl"));
        moved += l != 1;
    }
    EVB_CHECK(ptok > 0 && json_array_size(start) == 35 && moved > 0 && sum < uni,
              "--prior: EvoPress's start is the profile's additive optimum: %d units off uniform, summed profile KL "
              "%.5f against uniform's %.5f", moved, sum, uni);
    snprintf(args, sizeof args, "%s --num-levels 1 --surrogate 4 --prior %s --json --force", evo, sd);
    r = run("", args, path2);
    snprintf(path, sizeof path, "%s.stdout", path2);
    json_t *sj2 = json_load_file(path, 0, NULL), *b = load(path2, "best.json");
    long stok = sj2 ? (long)json_integer_value(json_object_get(sj2, "tokens")) : -1;
    snprintf(args, sizeof args, "%s --num-levels 1 --surrogate 4 --prior %s --token-budget %ld --force",
             evo, sd, ptok + 100);
    int r2 = run("", args, path2);
    snprintf(path, sizeof path, "%s.stderr", path2);
    e = slurp(path);
    char want[64];
    snprintf(want, sizeof want, "after the %ld counted", ptok);
    int kept = b && json_real_value(json_object_get(b, "cost")) == json_real_value(json_object_get(b, "budget"));
    EVB_CHECK(r == 0 && stok > ptok && kept && r2 == 2 && lines(path) == 2 && e && strstr(e, want),
              "--prior: the profile's %ld tokens are the search's (%ld in all), the budget kept; a budget of the "
              "profile alone is refused in one line after the start's: %s", ptok, stok, e ? e : "");
    free(e);
    json_decref(pj); json_decref(sj2); json_decref(b); json_decref(man);
}

/* The sensitivity profile, and a profile as a surrogate's prior. */
static void check_sensitivity(const char *tmp) {
    char path[1400], path2[1400], cmd[4096];
    /* the sensitivity profile: every unit at every level alone, in sensitivity.csv and .json, drawn by plot */
    {
        char sd[1200];
        snprintf(sd, sizeof sd, "%s/sens", tmp);
        snprintf(cmd, sizeof cmd, "'%s' sensitivity --model %s --calib %s --seq-len 64 --calib-windows 16 --cache %s --target-sparsity 0.5 --num-levels 1 "
                 "--max-tokens 300 --out %s --json > %s.stdout 2> %s.stderr", EVB_CLI, MODEL, CALIB, cache, sd, sd, sd);
        int r = sh(cmd);
        snprintf(path, sizeof path, "%s/sensitivity.csv", sd);
        int rows = lines(path);
        json_t *sj = load(sd, "sensitivity.json");
        json_t *u0 = sj ? json_array_get(json_object_get(sj, "units"), 0) : NULL;
        double k0 = u0 ? json_real_value(json_object_get(json_array_get(json_object_get(u0, "levels"), 0), "kl")) : -1;
        EVB_CHECK(r == 0 && rows == 1 + 35 * 3 && json_array_size(json_object_get(sj, "units")) == 35 && k0 > 0,
                  "sensitivity: 35 units x 3 levels in sensitivity.csv (%d lines), unit 0 level 0 KL %.5f", rows, k0);
        json_decref(sj);
        snprintf(cmd, sizeof cmd, "'%s' sensitivity --model %s --calib %s --cache %s --target-sparsity 0.5,0.6 --out %s 2> %s.stderr > /dev/null", EVB_CLI, MODEL, CALIB, cache, sd, sd);
        r = sh(cmd);
        snprintf(path, sizeof path, "%s.stderr", sd);
        EVB_CHECK(r == 2 && lines(path) == 1, "sensitivity of a list of targets is refused in one line");
        check_prior(tmp, sd);
    }
}

/* Other targets and methods. */
static void check_other_methods(const char *tmp) {
    char path[1400], path2[1400], cmd[4096];
    /* other targets and methods */
    snprintf(path, sizeof path, "%s/drop", tmp);
    EVB_CHECK(run("", "--method evopress --target-drop 0.4 --generations 5 --offspring 8", path) == 0, "evopress, 40%% of sub-blocks dropped");
    json_t *d = load(path, "best.json");
    EVB_CHECK(d && json_array_size(json_object_get(d, "drop")) == 4, "best.json drops 2 attention and 2 MLP sub-blocks");
    snprintf(cmd, sizeof cmd, "'%s' eval --config %s/best.json --data %s --seq-len 64 --max-tokens 2000 --json > %s/eval.json 2>/dev/null", EVB_CLI, path, CALIB, tmp);
    json_t *ev = NULL;
    EVB_CHECK(sh(cmd) == 0 && (ev = load(tmp, "eval.json")) && json_real_value(json_object_get(ev, "kl")) > 0, "eval of a depth configuration: kl %.4f",
              ev ? json_real_value(json_object_get(ev, "kl")) : -1);
    json_decref(ev); json_decref(d);
    snprintf(path, sizeof path, "%s/short", tmp);
    EVB_CHECK(run("", "--method shortgpt --target-drop 0.4", path) == 0, "shortgpt at 40%%");
    snprintf(path, sizeof path, "%s/bits", tmp);
    EVB_CHECK(run("", "--method evopress --target-bits 3 --generations 4 --offspring 8 --group-size 32", path) == 0, "evopress at 3 bits");
    d = load(path, "best.json");
    double bpw = d ? json_real_value(json_object_get(d, "bits_per_weight")) : 0;
    EVB_CHECK(fabs(bpw - 3.0) < 1e-12, "3.000 bits per weight held exactly (%.6f)", bpw);
    json_decref(d);
    snprintf(path, sizeof path, "%s/owl", tmp);
    EVB_CHECK(run("", "--method owl --target-sparsity 0.5", path) == 0, "owl at 50%% (lambda x M grid)");
    /* OWL's per-block fractions lie outside the search's level grid: fitness_all is still its KL on all tokens */
    d = load(path, "best.json");
    snprintf(cmd, sizeof cmd, "'%s' eval --config %s/best.json --data %s --seq-len 64 --calib-windows 16 --json > %s/evalo.json 2>/dev/null", EVB_CLI, path, CALIB, tmp);
    json_t *evo_j = NULL;
    double fo = json_real_value(json_object_get(d, "fitness_all"));
    EVB_CHECK(sh(cmd) == 0 && (evo_j = load(tmp, "evalo.json")) && fo > 0 && fabs(json_real_value(json_object_get(evo_j, "kl")) - fo) <= 1e-3 * fo,
              "owl: fitness_all %.6f = eval --calib-windows's KL %.6f", fo, evo_j ? json_real_value(json_object_get(evo_j, "kl")) : -1.0);
    json_decref(evo_j); json_decref(d);
    snprintf(path, sizeof path, "%s/eco", tmp);
    EVB_CHECK(run("", "--method ecoflap --target-sparsity 0.5 --json", path) == 0, "ecoflap at 50%%");
    snprintf(path2, sizeof path2, "%s.stdout", path);
    json_t *ej = json_load_file(path2, 0, NULL);
    long etok = ej ? (long)json_integer_value(json_object_get(ej, "tokens")) : -1;
    json_decref(ej);
    /* its forwards: the dense one and two perturbed ones per unit on 16 windows of 63 scored positions, then
     * the allocation scored on all 16 */
    EVB_CHECK(etok == (1 + 2 * 35 + 1) * 16 * 63, "ecoflap's summary counts the tokens it forwarded: %ld (72 forwards of 1008)", etok);
    snprintf(path2, sizeof path2, "%s.stderr", path);
    char *ee = slurp(path2);
    EVB_CHECK(ee && strstr(ee, "ecoflap: scoring") && strstr(ee, "window-units") && strstr(ee, "ecoflap: building"),
              "ecoflap says what it is doing while it scores, with its progress");
    free(ee);
}

/* An EvoPress sweep over two targets. */
static void check_sweep(const char *tmp) {
    char path[1400], path2[1400], cmd[4096];
    /* an EvoPress sweep over two targets, the second started from the first's best */
    snprintf(path, sizeof path, "%s/sweep", tmp);
    EVB_CHECK(run("", "--method evopress --target-sparsity 0.5,0.6 --generations 4 --offspring 8 --stages 4@200,1@0", path) == 0,
              "an EvoPress sweep over 50%% and 60%%");
    snprintf(path2, sizeof path2, "%s/sweep.stderr", tmp);
    snprintf(cmd, sizeof cmd, "grep -q '0.6 starts from the previous target' %s", path2);
    EVB_CHECK(sh(cmd) == 0, "the 60%% search starts from the 50%% search's best");
    snprintf(path2, sizeof path2, "%s/front.csv", path);
    FILE *fc = fopen(path2, "r");
    double c1 = 0, c2 = 0, f1 = 0, f2 = 0;
    char line[2048];
    int rows = 0;
    while (fc && fgets(line, sizeof line, fc)) {
        double t, c, cf, f;
        if (sscanf(line, "%*d,%lf,%lf,%lf,%lf", &t, &c, &cf, &f) == 4) { if (rows++) { c2 = c; f2 = f; } else { c1 = c; f1 = f; } }
    }
    if (fc) fclose(fc);
    EVB_CHECK(rows == 2 && c2 < c1 && f2 > f1, "front.csv: 2 points, fewer weights kept at 60%% (%.0f < %.0f) and more KL (%.4f > %.4f)", c2, c1, f2, f1);
}

/* NSGA-II's front. */
static void check_nsga2(const char *tmp) {
    char path[1400], path2[1400], cmd[4096];
    /* NSGA-II: a front of several points, each cheaper one worse */
    snprintf(path, sizeof path, "%s/nsga2", tmp);
    EVB_CHECK(run("", "--method nsga2 --target-sparsity 0.6 --generations 10 --offspring 16", path) == 0, "nsga2 around 60%%");
    snprintf(path2, sizeof path2, "%s/front.csv", path);
    FILE *fc = fopen(path2, "r");
    char line[2048];
    int rows = 0;
    int mono = 1;
    double pc = -1, pf = 0;
    while (fc && fgets(line, sizeof line, fc)) {
        double c, cf, f;
        if (sscanf(line, "%*d,%lf,%lf,%lf", &c, &cf, &f) != 3) continue;
        if (rows++ && !(c > pc && f < pf)) mono = 0;
        pc = c; pf = f;
    }
    if (fc) fclose(fc);
    EVB_CHECK(rows >= 3 && mono, "its front.csv: %d points, cost rising and KL falling along it", rows);
}

/* Bad input is refused in one line; nothing of an earlier run is lost. */
static void check_bad_input(const char *tmp) {
    char path[1400], path2[1400], cmd[4096];
    /* bad input: one line, exit 2 or 1, nothing of an earlier run lost */
    snprintf(path, sizeof path, "%s/bad", tmp);
    static const char *bad[] = {"--method evopress --target-bits 7", "--method evopress --target-sparsity 1.5",
                                "--method owl --target-bits 3", "--method nope --target-sparsity 0.5",
                                "--method uniform --target-bits 2.5", "--method evopress --target-drop 0.01",
                                "--method owl --target-sparsity 0.5 --token-budget 1000", "--method uniform --target-sparsity 0.5 --surrogate 4",
                                "--method evopress --target-sparsity 0.5 --prior x", "--method evopress --target-sparsity 0.5 --surrogate 1"};
    for (int i = 0; i < 10; i++) {
        int rc = run("", bad[i], path);
        snprintf(path2, sizeof path2, "%s.stderr", path);
        EVB_CHECK(rc == 2 && lines(path2) == 1, "refused in one line: %s", bad[i]);
    }
    EVB_CHECK(run("", evo, a) == 2, "a finished run directory is not overwritten");
    snprintf(path, sizeof path, "%s/best.json", a);
    snprintf(path2, sizeof path2, "%s/best.json", b);
    EVB_CHECK(same_file(path, path2), "and its best.json is intact");
    snprintf(cmd, sizeof cmd, "sed 's/\"unit\": 3,/\"unit\": 99,/' %s/best.json > %s/bad.json; '%s' eval --config %s/bad.json --data %s --seq-len 64 --max-tokens 500 2> %s/err.txt > /dev/null", a, tmp, EVB_CLI, tmp, CALIB, tmp);
    int rc = sh(cmd);
    snprintf(path, sizeof path, "%s/err.txt", tmp);
    EVB_CHECK(rc == 2 && lines(path) == 1, "a configuration naming unit 99 is refused in one line");
}

int main(void) {
    char *tmp = fixture_tmpdir();
    if (standin_or_stories(tmp, MODEL, sizeof MODEL, CALIB, sizeof CALIB) < 0) { printf("FAIL cannot write the stand-in in %s\n", tmp); return 1; }
    snprintf(COMMON, sizeof COMMON, "--model %s --calib %s --seq-len 64 --calib-windows 16 --seed 3", MODEL, CALIB);
    snprintf(cache, sizeof cache, "%s/cache", tmp);
    snprintf(a, sizeof a, "%s/a", tmp);
    snprintf(b, sizeof b, "%s/b", tmp);
    snprintf(k, sizeof k, "%s/k", tmp);
    snprintf(u, sizeof u, "%s/uniform", tmp);
    check_one_run(tmp);
    check_eval_config(tmp);
    check_threads_resume(tmp);
    check_token_budget(tmp);
    check_sensitivity(tmp);
    check_other_methods(tmp);
    check_sweep(tmp);
    check_nsga2(tmp);
    check_bad_input(tmp);
    main_job(tmp);

    fixture_rmdir(tmp);
    free(tmp);
    return evb_test_summary();
}
