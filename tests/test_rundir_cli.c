#define _GNU_SOURCE
/* test_rundir_cli.c -- the run directory of `evobudget search` under kills and concurrent writers, on a
 * problem file (no model):
 *   - kill -9 at spread-out moments, then --resume (or a fresh start when no checkpoint was written yet):
 *     best.json and front.csv are those of an uninterrupted run with the same seed, and log.jsonl holds each
 *     generation exactly once, in order, even when the kill fell between a log line and its checkpoint
 *     (simulated too: a line of the next generation, and an unfinished line, appended before resuming), and
 *     no temporary file of an interrupted write is left;
 *   - two searches started together into one --out: exactly one runs, the other refuses in one line naming
 *     the directory, and best.json is the winner's own result;
 *   - a finished or unfinished run is not overwritten without --force, and --resume refuses other parameters.
 * EVB_RUNDIR_TRIALS=N runs N kill trials and N concurrent pairs (default 2 and 1) and prints the counts. */
#include "testing.h"
#include "shell.h"
#include "fixtures.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double fixture_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static int same_file(const char *a, const char *b) {
    char *x = slurp(a), *y = slurp(b);
    int same = x && y && !strcmp(x, y);
    free(x); free(y);
    return same;
}

/* 1 when dir/best.json and dir/front.csv equal ref's. */
static int same_result(const char *dir, const char *ref) {
    char a[1400], b[1400];
    snprintf(a, sizeof a, "%s/best.json", dir); snprintf(b, sizeof b, "%s/best.json", ref);
    int same = same_file(a, b);
    snprintf(a, sizeof a, "%s/front.csv", dir); snprintf(b, sizeof b, "%s/front.csv", ref);
    return same && same_file(a, b);
}

/* 1 when dir/log.jsonl holds generations 1..gens, each once, in order, and nothing else. */
static int log_ok(const char *dir, int gens) {
    char p[1400], line[4096];
    snprintf(p, sizeof p, "%s/log.jsonl", dir);
    FILE *f = fopen(p, "r");
    if (!f) return 0;
    int want = 1, ok = 1, g;
    while (ok && fgets(line, sizeof line, f)) ok = sscanf(line, "{\"generation\": %d,", &g) == 1 && g == want++;
    fclose(f);
    return ok && want == gens + 1;
}

/* A problem of U units with 8 levels each (cost 10 + l, fitness w (l - c)^2), the budget at level 4. */
static void write_problem(const char *path, int U) {
    json_t *units = json_array(), *start = json_array();
    uint64_t x = 7;
    for (int u = 0; u < U; u++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        double w = 0.2 + ((x >> 20) & 1023) / 1024.0, c = ((x >> 40) & 1023) / 1024.0 * 7;
        json_t *lv = json_array();
        for (int l = 0; l < 8; l++) json_array_append_new(lv, json_pack("{s:f, s:f}", "cost", 10.0 + l, "fitness", w * (l - c) * (l - c)));
        json_array_append_new(units, json_pack("{s:o}", "levels", lv));
        json_array_append_new(start, json_integer(4));
    }
    json_t *pj = json_pack("{s:i, s:o, s:f, s:f, s:o}", "format", 1, "units", units, "budget", 14.0 * U, "tolerance", 1e-9, "start", start);
    json_dump_file(pj, path, 0);
    json_decref(pj);
}

/* An unfinished run (its checkpoint, no best.json) is not started over by accident; --resume checks that the
 * parameters are the run's own (the generation count may grow); --force starts over and gives ref's result. */
static void unfinished_run(const char *tmp, const char *prob, const char *method, int gens, const char *ref) {
    char dir[1200], cmd[8192];
    snprintf(dir, sizeof dir, "%s/unfinished", tmp);
    char base[2600], p[1400];
    snprintf(base, sizeof base, "'%s' search --problem %s --method %s --out %s", EVB_CLI, prob, method, dir);
    snprintf(cmd, sizeof cmd, "%s --seed 3 --generations %d > /dev/null 2>&1 && rm %s/best.json", base, gens, dir);
    EVB_CHECK(sh(cmd) == 0, "a run whose best.json is then removed: an unfinished run");
    static const struct { const char *args, *says; } refused[] = {
        {"--seed 3 --generations 40", "did not finish"},    /* neither --resume nor --force */
        {"--seed 9 --generations 40 --resume", "seed"},     /* another seed */
        {"--seed 3 --generations 40 --resume --stages 2@0", "stages"},
        {"--seed 3 --generations 40 --resume --force", "give one"},
    };
    for (int i = 0; i < 4; i++) {
        snprintf(cmd, sizeof cmd, "%s %s > /dev/null 2> %s/err.txt", base, refused[i].args, tmp);
        int rc = sh(cmd);
        snprintf(p, sizeof p, "%s/err.txt", tmp);
        char *e = slurp(p);
        int n = 0;
        for (char *q = e; q && *q; q++) n += *q == '\n';
        EVB_CHECK(rc == 2 && n == 1 && e && strstr(e, refused[i].says), "%s: refused in one line that says '%s' (%s)", refused[i].args, refused[i].says, e ? e : "");
        free(e);
    }
    snprintf(cmd, sizeof cmd, "%s --seed 3 --generations %d --resume > /dev/null 2>&1", base, gens + 10);
    EVB_CHECK(sh(cmd) == 0 && log_ok(dir, gens + 10), "--resume with more generations continues to %d, each logged once", gens + 10);
    snprintf(cmd, sizeof cmd, "%s --seed 3 --generations %d --force > /dev/null 2>&1", base, gens);
    EVB_CHECK(sh(cmd) == 0 && same_result(dir, ref) && log_ok(dir, gens), "--force starts over: the uninterrupted run's result and log");
}

int main(void) {
    char *tmp = fixture_tmpdir(), prob[1200], cmd[8192], ref[2][1200], dir[1200];
    const char *env = getenv("EVB_RUNDIR_TRIALS");
    int trials = env && atoi(env) > 0 ? atoi(env) : 2, pairs = env && atoi(env) > 0 ? atoi(env) : 1;
    const int gens = 40;
    snprintf(prob, sizeof prob, "%s/problem.json", tmp);
    write_problem(prob, 24);
    const char *flags[2] = {"evopress --offspring 32", "nsga2 --offspring 32"};

    /* the uninterrupted runs, and how long one takes */
    double wall = 0;
    for (int k = 0; k < 2; k++) {
        snprintf(ref[k], sizeof ref[k], "%s/ref%d", tmp, k);
        double t0 = fixture_now();
        snprintf(cmd, sizeof cmd, "'%s' search --problem %s --method %s --seed %d --generations %d --out %s > /dev/null 2>&1",
                 EVB_CLI, prob, flags[k], 3 + k, gens, ref[k]);
        EVB_CHECK(sh(cmd) == 0, "uninterrupted %s run, seed %d", flags[k], 3 + k);
        wall += (fixture_now() - t0) / 2;
        EVB_CHECK(log_ok(ref[k], gens), "its log.jsonl holds generations 1..%d once each", gens);
    }
    printf("# an uninterrupted run takes %.3f s\n", wall);

    /* kill -9 at moments spread over the run, then resume until it finishes */
    int identical = 0, logs = 0, kills = 0, resumed = 0, fresh = 0;
    for (int t = 0; t < trials; t++) {
        int k = t % 2;
        snprintf(dir, sizeof dir, "%s/kill%d", tmp, t);
        double at = wall * (0.05 + 0.9 * ((t * 0.618034) - (int)(t * 0.618034)));
        snprintf(cmd, sizeof cmd, "'%s' search --problem %s --method %s --seed %d --generations %d --out %s > /dev/null 2>&1 & "
                 "p=$!; sleep %.3f; kill -9 $p 2>/dev/null; { wait $p; } 2>/dev/null; exit 0", EVB_CLI, prob, flags[k], 3 + k, gens, dir, at);
        sh(cmd);
        char ck[1400], best[1400], lp[1400];
        snprintf(ck, sizeof ck, "%s/checkpoint.msgpack", dir);
        snprintf(best, sizeof best, "%s/best.json", dir);
        snprintf(lp, sizeof lp, "%s/log.jsonl", dir);
        kills += access(best, F_OK) != 0;
        int have_ck = access(ck, F_OK) == 0;
        if (have_ck && access(best, F_OK) != 0) {
            /* as if killed between a log line and its checkpoint: one generation more in the log, and half a line */
            FILE *f = fopen(lp, "a");
            if (f) { fprintf(f, "{\"generation\": %d, \"best_fitness\": 0}\n{\"generation\": ", gens + 5); fclose(f); }
        }
        snprintf(cmd, sizeof cmd, "'%s' search --problem %s --method %s --seed %d --generations %d --out %s %s > /dev/null 2>&1",
                 EVB_CLI, prob, flags[k], 3 + k, gens, dir, have_ck ? "--resume" : "");
        int rc = sh(cmd);
        resumed += have_ck; fresh += !have_ck;
        snprintf(cmd, sizeof cmd, "ls -a %s | grep -q '\\.tmp\\.'", dir);
        int litter = sh(cmd) == 0;
        int same = rc == 0 && same_result(dir, ref[k]) && !litter, lg = log_ok(dir, gens);
        identical += same; logs += lg;
        EVB_CHECK(same && lg, "trial %d (%s, kill after %.3f s, %s): best.json and front.csv as uninterrupted, no temporary files left, log.jsonl 1..%d once each",
                  t, flags[k], at, have_ck ? "resumed" : "no checkpoint yet: started again", gens);
    }
    printf("# kill -9 trials: %d, killed before the end %d, resumed %d, started again %d; identical results %d/%d, clean logs %d/%d\n",
           trials, kills, resumed, fresh, identical, trials, logs, trials);

    /* two writers into one run directory */
    int one_ran = 0, own = 0, refused_one_line = 0;
    for (int t = 0; t < pairs; t++) {
        snprintf(dir, sizeof dir, "%s/pair%d", tmp, t);
        snprintf(cmd, sizeof cmd, "cd %s && for k in 0 1; do (s=$((3 + k)); if [ $k = 0 ]; then m='%s'; else m='%s'; fi; "
                 "'%s' search --problem %s --method $m --seed $s --generations %d --out %s > out$k.%d 2> err$k.%d; echo $? > rc$k.%d) & done; wait",
                 tmp, flags[0], flags[1], EVB_CLI, prob, gens, dir, t, t, t);
        sh(cmd);
        int rc[2] = {-1, -1}, lines[2] = {0, 0}, names[2] = {0, 0};
        for (int k = 0; k < 2; k++) {
            char p[1400];
            snprintf(p, sizeof p, "%s/rc%d.%d", tmp, k, t);
            char *s = slurp(p);
            rc[k] = s ? atoi(s) : -1;
            free(s);
            snprintf(p, sizeof p, "%s/err%d.%d", tmp, k, t);
            s = slurp(p);
            for (char *q = s; q && *q; q++) lines[k] += *q == '\n';
            names[k] = s && strstr(s, dir) && strstr(s, "in use");
            free(s);
        }
        int win = rc[0] == 0 ? 0 : 1, lose = 1 - win;
        int ok1 = (rc[0] == 0) + (rc[1] == 0) == 1;
        int ok2 = ok1 && rc[lose] == 1 && lines[lose] == 1 && names[lose];
        int ok3 = ok1 && same_result(dir, ref[win]) && log_ok(dir, gens);
        one_ran += ok1; refused_one_line += ok2; own += ok3;
        EVB_CHECK(ok1 && ok2 && ok3, "pair %d: exit codes %d and %d; the loser refused in %d line naming the directory; best.json, front.csv "
                  "and log.jsonl are the winner's (%s)", t, rc[0], rc[1], lines[lose], flags[win]);
    }
    printf("# concurrent pairs: %d; exactly one ran %d, the other refused in one line %d, the winner's own result %d\n",
           pairs, one_ran, refused_one_line, own);

    /* a finished run directory is not overwritten, and resuming a finished run changes nothing */
    snprintf(cmd, sizeof cmd, "'%s' search --problem %s --method %s --seed 3 --generations %d --out %s > /dev/null 2> %s/err.txt; "
             "test $? = 2 && grep -q 'finished run' %s/err.txt", EVB_CLI, prob, flags[0], gens, ref[0], tmp, tmp);
    EVB_CHECK(sh(cmd) == 0, "a new run into a finished run directory is refused");

    unfinished_run(tmp, prob, flags[0], gens, ref[0]);
    fixture_rmdir(tmp);
    free(tmp);
    return evb_test_summary();
}
