#define _GNU_SOURCE
/* test_problem_cli.c -- `evobudget search --problem FILE`: a problem with a known optimum (separable convex
 * fitness under an exact budget, its optimum found here by dynamic programming) solved with the built-in
 * additive fitness and with the example C plug-in (examples/plugin/): both reach the optimum, with the same
 * best candidate and the same front for the same seed; NSGA-II on the same file; bad files and plug-ins are
 * refused in one line; the example of docs/problem-files.md (examples/problems/knapsack.json) run with the
 * command lines the document gives reaches the optimum found here by trying every candidate, and the
 * document quotes that optimum. */
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

/* The optimum of a problem file with the built-in additive fitness, by trying every candidate (at most 1e7):
 * its fitness, the levels of the best candidate into best[cap] and the number of feasible candidates that
 * reach it into *n_best. Returns the candidates tried, or -1 when the file cannot be read. */
static long brute_force(const char *path, double *opt, int *best, int cap, int *n_best, long *n_feasible) {
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e), *units = json_object_get(j, "units");
    int U = (int)json_array_size(units), lv[64] = {0}, nl[64];
    double budget = json_number_value(json_object_get(j, "budget")), tol = json_number_value(json_object_get(j, "tolerance"));
    long tried = 1;
    for (int u = 0; u < U && u < 64; u++) tried *= (long)(nl[u] = (int)json_array_size(json_object_get(json_array_get(units, u), "levels")));
    if (!j || U < 1 || U > 64 || U > cap || tried > 10000000) { json_decref(j); return -1; }
    *opt = INFINITY;
    *n_best = 0;
    *n_feasible = 0;
    for (long c = 0; c < tried; c++) {
        double cost = 0, fit = 0;
        for (int u = 0; u < U; u++) {
            json_t *l = json_array_get(json_object_get(json_array_get(units, u), "levels"), lv[u]);
            cost += json_number_value(json_object_get(l, "cost"));
            fit += json_number_value(json_object_get(l, "fitness"));
        }
        if (fabs(cost - budget) <= tol) {
            (*n_feasible)++;
            if (fit < *opt - 1e-12) { *opt = fit; *n_best = 1; memcpy(best, lv, sizeof(int) * U); }
            else if (fabs(fit - *opt) <= 1e-12) (*n_best)++;
        }
        for (int u = 0; u < U && ++lv[u] == nl[u]; u++) lv[u] = 0; /* the next candidate */
    }
    json_decref(j);
    return tried;
}

/* docs/problem-files.md's example, run as its command lines say from a directory where examples/ is the
 * source tree's, with ./build/evobudget standing for the program built here. */
static void check_doc_example(const char *tmp) {
    char doc[1200], cmd[4096], path[1400], work[1200];
    snprintf(doc, sizeof doc, "%s/docs/problem-files.md", EVB_SOURCE_DIR);
    snprintf(work, sizeof work, "%s/doc", tmp);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && ln -s '%s/examples' '%s/examples'", work, EVB_SOURCE_DIR, work);
    sh(cmd);
    char *text = slurp(doc);
    const char *prefix = "./build/evobudget search --problem examples/problems/";
    char *line = text ? strstr(text, prefix) : NULL, file[200] = "", out[200] = "";
    int n = line ? sscanf(line + strlen("./build/evobudget search --problem "), "%199s --out %199s", file, out) : 0;
    EVB_CHECK(n == 2 && strchr(out, '\'') == NULL && strchr(file, '\'') == NULL,
              "docs/problem-files.md gives a search of an example file: %s into %s", file, out);
    if (n != 2) { free(text); return; }
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' search --problem %s --out %s > out.txt 2> err.txt", work, EVB_CLI, file, out);
    EVB_CHECK(sh(cmd) == 0, "the document's command line runs (evobudget search --problem %s --out %s)", file, out);
    double opt;
    int best[64], n_best;
    long n_feasible;
    snprintf(path, sizeof path, "%s/%s", work, file);
    long tried = brute_force(path, &opt, best, 64, &n_best, &n_feasible);
    EVB_CHECK(tried > 0 && n_best == 1, "%s: %ld candidates tried, %ld feasible, one optimum (%d) of fitness %.6g", file, tried, n_feasible, n_best, opt);
    snprintf(path, sizeof path, "%s/%s/best.json", work, out);
    json_error_t e;
    json_t *b = json_load_file(path, 0, &e), *units = json_object_get(b, "units");
    snprintf(path, sizeof path, "%s/%s", work, file);
    json_t *pf = json_load_file(path, 0, &e);
    double budget = json_number_value(json_object_get(pf, "budget")), cost = json_number_value(json_object_get(b, "cost"));
    EVB_CHECK_REL(json_number_value(json_object_get(b, "fitness")), opt, 1e-9, "best.json's fitness is the optimum");
    EVB_CHECK(b && fabs(cost - budget) <= json_number_value(json_object_get(pf, "tolerance")), "best.json's cost %.0f meets the budget %.0f", cost, budget);
    int same = tried > 0 && (int)json_array_size(units) == (int)json_array_size(json_object_get(pf, "units"));
    for (size_t u = 0; same && u < json_array_size(units); u++) {
        json_t *x = json_array_get(units, u);
        same = json_integer_value(json_object_get(x, "level")) == best[u] &&
               !strcmp(json_string_value(json_object_get(x, "name")) ? json_string_value(json_object_get(x, "name")) : "",
                       json_string_value(json_object_get(json_array_get(json_object_get(pf, "units"), u), "name")));
    }
    EVB_CHECK(same, "best.json's units are the optimum's levels, under the file's unit names");
    char quoted[200];
    snprintf(quoted, sizeof quoted, "fitness %g, cost %.0f (budget %.0f)", opt, budget, budget);
    snprintf(path, sizeof path, "%s/out.txt", work);
    char *printed = slurp(path);
    EVB_CHECK(printed && strstr(printed, quoted) && strstr(text, quoted), "the search prints, and the document quotes, '%s'", quoted);
    free(printed);
    json_decref(b);
    json_decref(pf);
    free(text);
}

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

    check_doc_example(tmp);
    fixture_rmdir(tmp);
    free(tmp);
    return evb_test_summary();
}
