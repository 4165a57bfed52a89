#define _GNU_SOURCE
/* test_problem_cli.c -- `evobudget search --problem FILE`: a problem with a known optimum (separable convex
 * fitness under an exact budget, its optimum found here by dynamic programming) solved with the built-in
 * additive fitness and with the example C plug-in (examples/plugin/): both reach the optimum, with the same
 * best candidate and the same front for the same seed; NSGA-II on the same file; bad files and plug-ins are
 * refused in one line. */
#include "testing.h"
#include "shell.h"
#include "fixtures.h"
#include "problem_fixture.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#ifndef EVB_PLUGIN_PATH
#define EVB_PLUGIN_PATH ""
#endif

int main(void) {
    char *tmp = fixture_tmpdir(), prob[1200], cmd[4096], a[1200], b[1200], path[1400];
    snprintf(prob, sizeof prob, "%s/problem.json", tmp);
    double budget, opt = problem_fixture_write(prob, 1e-9, &budget);
    const int U = PF_U;

    snprintf(a, sizeof a, "%s/builtin", tmp);
    snprintf(b, sizeof b, "%s/plugin", tmp);
    snprintf(cmd, sizeof cmd, "'%s' search --problem %s --seed 4 --generations 150 --offspring 16 --out %s > /dev/null 2>&1", EVB_CLI, prob, a);
    EVB_CHECK(sh(cmd) == 0, "evopress on the problem file with its built-in additive fitness");
    snprintf(cmd, sizeof cmd, "'%s' search --problem %s --fitness-plugin %s --seed 4 --generations 150 --offspring 16 --out %s > /dev/null 2> %s/err.txt",
             EVB_CLI, prob, EVB_PLUGIN_PATH, b, tmp);
    EVB_CHECK(sh(cmd) == 0, "the same with the example C plug-in (%s)", EVB_PLUGIN_PATH);
    snprintf(path, sizeof path, "%s/best.json", a);
    json_error_t e;
    json_t *ja = json_load_file(path, 0, &e);
    snprintf(path, sizeof path, "%s/best.json", b);
    json_t *jb = json_load_file(path, 0, &e);
    double fa = ja ? json_real_value(json_object_get(ja, "fitness")) : -1, fb = jb ? json_real_value(json_object_get(jb, "fitness")) : -2;
    EVB_CHECK(fabs(fa - opt) <= 1e-9 * (1 + opt) && json_real_value(json_object_get(ja, "cost")) == budget,
              "built-in: the DP optimum %.9f reached (%.9f) at exactly the budget", opt, fa);
    int same = ja && jb && fa == fb;
    for (int u = 0; same && u < U; u++)
        same = json_integer_value(json_object_get(json_array_get(json_object_get(ja, "units"), u), "level")) ==
               json_integer_value(json_object_get(json_array_get(json_object_get(jb, "units"), u), "level"));
    EVB_CHECK(same, "the plug-in gives the same best candidate and fitness");
    snprintf(path, sizeof path, "%s/front.csv", a);
    char *fa_s = slurp(path);
    snprintf(path, sizeof path, "%s/front.csv", b);
    char *fb_s = slurp(path);
    EVB_CHECK(fa_s && fb_s && !strcmp(fa_s, fb_s), "and the same front.csv");
    free(fa_s); free(fb_s);
    json_decref(ja); json_decref(jb);

    /* NSGA-II: a front across the window */
    snprintf(path, sizeof path, "%s/wide.json", tmp);
    problem_fixture_write(path, 20, NULL);
    snprintf(cmd, sizeof cmd, "'%s' search --problem %s --method nsga2 --generations 30 --out %s/nsga > /dev/null 2>&1", EVB_CLI, path, tmp);
    EVB_CHECK(sh(cmd) == 0, "nsga2 on the problem with a budget window of +-20");
    snprintf(path, sizeof path, "%s/nsga/front.csv", tmp);
    char *fr = slurp(path);
    int lines = 0;
    for (char *q = fr; q && *q; q++) lines += *q == '\n';
    printf("%s", fr ? fr : "");
    EVB_CHECK(lines >= 3, "its front has %d points", lines - 1);
    free(fr);

    /* bad input */
    static const char *bad[][2] = {
        {"{\"units\": []}", "non-empty"},
        {"{\"units\": [{\"levels\": [{\"cost\": 1}]}], \"budget\": 1}", "fitness"},
        {"{\"units\": [{\"levels\": [{\"cost\": 1, \"fitness\": 0}, {\"cost\": 2, \"fitness\": 0}]}], \"budget\": 7}", "unreachable"},
        {"{\"units\": [{\"levels\": [{\"cost\": \"x\"}]}], \"budget\": 1}", "cost"},
        {"{\"units\": [", "line"},
    };
    for (int i = 0; i < 5; i++) {
        snprintf(path, sizeof path, "%s/bad%d.json", tmp, i);
        FILE *f = fopen(path, "w");
        fputs(bad[i][0], f);
        fclose(f);
        snprintf(cmd, sizeof cmd, "'%s' search --problem %s --out %s/badrun%d 2> %s/err.txt > /dev/null; rc=$?; test $rc -ne 0 && test $(wc -l < %s/err.txt) = 1 && grep -q '%s' %s/err.txt",
                 EVB_CLI, path, tmp, i, tmp, tmp, bad[i][1], tmp);
        EVB_CHECK(sh(cmd) == 0, "a bad problem file is refused in one line naming it (%s)", bad[i][1]);
    }
    snprintf(cmd, sizeof cmd, "'%s' search --problem %s --fitness-plugin /nonexistent.so --out %s/x 2> %s/err.txt > /dev/null; test $? = 2 && grep -q nonexistent %s/err.txt", EVB_CLI, prob, tmp, tmp, tmp);
    EVB_CHECK(sh(cmd) == 0, "a missing plug-in is refused");
    fixture_rmdir(tmp);
    free(tmp);
    return evb_test_summary();
}
