#define _GNU_SOURCE
/* test_plot_cli.c -- `evobudget plot` on run directories written by the test itself (no model needed):
 * - a well-formed run gives six pictures (PNG and SVG) and leaves no private directory behind;
 * - no string from a file or a path reaches gnuplot as code: run directories named to break out of a
 *   gnuplot string, and best.json methods, --with labels and target kinds holding backquotes, quotes and
 *   newlines, each armed to create a marker file through the shell, create none; the text is shown
 *   literally (it is in the SVG) or refused in one line;
 * - counts are bounded by what the files hold: a depth run whose manifest claims 2e9 units, dropped
 *   sub-blocks outside the model, front rows that disagree are refused in one line, at once, and write
 *   nothing large;
 * - a picture name that is a link to a file outside the run is replaced, and the file is left alone.
 * Skips (77) when gnuplot is not installed. */
#include "testing.h"
#include "fixtures.h"

#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static char tmp[512];

static int sh(const char *cmd) {
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Runs the CLI with argv as given (no shell), stdout and stderr into tmp/out.txt and tmp/err.txt, from the
 * working directory tmp/cwd. Returns the exit status. */
static int evb(const char *a1, const char *a2, const char *a3, const char *a4) {
    char out[600], err[600], cwd[600];
    snprintf(out, sizeof out, "%s/out.txt", tmp);
    snprintf(err, sizeof err, "%s/err.txt", tmp);
    snprintf(cwd, sizeof cwd, "%s/cwd", tmp);
    char *argv[] = {EVB_CLI, (char *)a1, (char *)a2, (char *)a3, (char *)a4, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addchdir_np(&fa, cwd);
    pid_t pid;
    int e = posix_spawn(&pid, EVB_CLI, &fa, NULL, argv, environ), st = 0;
    posix_spawn_file_actions_destroy(&fa);
    if (e) return -1;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int lines_of(const char *name) {
    char p[600];
    snprintf(p, sizeof p, "%s/%s", tmp, name);
    FILE *f = fopen(p, "r");
    int n = 0, c;
    while (f && (c = fgetc(f)) != EOF) n += c == '\n';
    if (f) fclose(f);
    return n;
}

static void put(const char *dir, const char *name, const char *text) {
    char p[2048];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (f) { fputs(text, f); fclose(f); }
}

/* The files of a sparsity run of 2 blocks x 2 units with the given method string (already JSON-escaped). */
static void write_run(const char *dir, const char *method_json, const char *kind) {
    mkdir(dir, 0755);
    char b[4096];
    snprintf(b, sizeof b,
             "{\"method\": \"%s\", \"target_kind\": \"%s\", \"target\": 0.5, \"cost\": 10, \"fitness\": 0.1, \"fitness_all\": 0.11,"
             " \"units\": [{\"name\": \"layers.0.q_proj\", \"level\": 1, \"sparsity\": 0.4},"
             " {\"name\": \"layers.0.down_proj\", \"level\": 2, \"sparsity\": 0.6},"
             " {\"name\": \"layers.1.q_proj\", \"level\": 0, \"sparsity\": 0.3},"
             " {\"name\": \"layers.1.down_proj\", \"level\": 3, \"sparsity\": 0.7}], \"drop\": []}\n",
             method_json, kind);
    put(dir, "best.json", b);
    put(dir, "manifest.json", "{\"units\": 4, \"target_kind\": \"sparsity\"}\n");
    put(dir, "front.csv", "id,cost,cost_fraction,fitness,heldout,levels\n0,8,0.4,0.2,,0 1 0 1\n1,10,0.5,0.1,,1 2 0 3\n2,12,0.6,0.05,,2 2 1 3\n");
    put(dir, "log.jsonl", "{\"generation\": 0, \"evaluations\": 16, \"best_fitness\": 0.3, \"seconds\": 0.1}\n"
                          "{\"generation\": 1, \"evaluations\": 32, \"best_fitness\": 0.2, \"seconds\": 0.2}\n"
                          "{\"generation\": 2, \"evaluations\": 48, \"best_fitness\": 0.1, \"seconds\": 0.3}\n");
}

/* A depth run of L blocks whose manifest claims units_json units; drop_json: best.json's "drop". */
static void write_drop_run(const char *dir, const char *units_json, int L, const char *drop_json) {
    mkdir(dir, 0755);
    char b[4096], lv[512] = "";
    snprintf(b, sizeof b, "{\"method\": \"evopress\", \"target_kind\": \"drop\", \"target\": 0.25, \"cost\": 6, \"fitness\": 0.3, \"units\": [], \"drop\": %s}\n", drop_json);
    put(dir, "best.json", b);
    snprintf(b, sizeof b, "{\"units\": %s, \"target_kind\": \"drop\"}\n", units_json);
    put(dir, "manifest.json", b);
    for (int u = 0; u < 2 * L; u++) strcat(lv, u ? " 0" : "1");
    snprintf(b, sizeof b, "id,cost,cost_fraction,fitness,heldout,levels\n0,%d,0.75,0.3,,%s\n", 2 * L - 1, lv);
    put(dir, "front.csv", b);
}

/* Files and directories under dir named like pattern, and the largest file's size in *largest. */
static int count_under(const char *dir, const char *pattern, long *largest) {
    char cmd[2048], p[600];
    snprintf(p, sizeof p, "%s/count.txt", tmp);
    snprintf(cmd, sizeof cmd, "find '%s' -mindepth 1 -name '%s' -printf '%%s %%y\\n' | awk '{n++; if ($2 == \"f\" && $1 > m) m = $1} END {print n+0, m+0}' > '%s'", dir, pattern, p);
    sh(cmd);
    FILE *f = fopen(p, "r");
    int n = -1;
    long m = -1;
    if (f) { if (fscanf(f, "%d %ld", &n, &m) != 2) n = -1; fclose(f); }
    if (largest) *largest = m;
    return n;
}

/* 1 when file holds text. */
static int file_has(const char *file, const char *text) {
    FILE *f = fopen(file, "rb");
    if (!f) return 0;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return memmem(buf, n, text, strlen(text)) != NULL;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(void) {
    if (sh("command -v gnuplot > /dev/null 2>&1") != 0) {
        printf("SKIP test_plot_cli: gnuplot is not installed (hint: ./setup.sh installs gnuplot-nox)\n");
        return 77;
    }
    char *t = fixture_tmpdir();
    snprintf(tmp, sizeof tmp, "%s", t);
    char p[2048], q[2048], run[1024], mark[600];
    snprintf(p, sizeof p, "%s/cwd", tmp);
    mkdir(p, 0755);
    snprintf(mark, sizeof mark, "%s/marks", tmp);
    mkdir(mark, 0755);
    snprintf(p, sizeof p, "%s/", mark);
    setenv("M", p, 1); /* every armed string below would create a file in marks/ through the shell */

    /* a well-formed run */
    snprintf(run, sizeof run, "%s/good", tmp);
    write_run(run, "evopress", "sparsity");
    EVB_CHECK(evb("plot", run, NULL, NULL) == 0 && lines_of("out.txt") == 6, "a well-formed run: six pictures");
    static const char *pics[] = {"front.png", "front.svg", "profile.png", "profile.svg", "convergence.png", "convergence.svg"};
    int good = 0;
    for (int i = 0; i < 6; i++) {
        snprintf(p, sizeof p, "%s/%s", run, pics[i]);
        good += file_has(p, i % 2 == 0 ? "PNG" : "<svg");
    }
    EVB_CHECK(good == 6, "each picture is a PNG or an SVG (%d of 6)", good);
    snprintf(p, sizeof p, "%s/plots", run);
    EVB_CHECK(count_under(p, ".plot-*", NULL) == 0, "no private directory is left in RUNDIR/plots");
    EVB_CHECK(lines_of("good/plots/profile.dat") == 4, "the profile has one bar per unit (%d)", lines_of("good/plots/profile.dat"));

    /* strings that would be code: run directory names */
    static const char *names[] = {
        "r'; system('touch \"${M}dir1\"'); x='",
        "r\"; system(\"touch ${M}dir2\"); x=\"",
        "r`touch ${M}dir3`",
        "r\nsystem('touch \"${M}dir4\"')\n#",
        "r@x'`touch ${M}dir5`'",
    };
    int n_tried = 0, n_ok = 0, n_refused = 0;
    for (int i = 0; i < 5; i++) {
        snprintf(run, sizeof run, "%s/%s", tmp, names[i]);
        write_run(run, "evopress", "sparsity");
        int rc = evb("plot", run, "--with", run);
        n_tried++;
        snprintf(p, sizeof p, "%s/front.svg", run);
        if (rc == 0 && file_has(p, "<svg")) n_ok++;
        else if (rc != 0 && lines_of("err.txt") == 1) n_refused++;
    }
    /* strings that would be code: best.json's method (JSON-escaped) and target kind */
    static const char *methods[] = {
        "`touch ${M}m1`",
        "a\\\"; system(\\\"touch ${M}m2\\\"); x=\\\"",
        "a'; system('touch ${M}m3'); x='",
        "a\\nsystem('touch ${M}m4')\\n#",
        "a'\\nsystem('touch ${M}m5')\\nb='",
        "a\\\"\\nsystem(\\\"touch ${M}m6\\\")\\nb=\\\"",
        "@x `touch ${M}m7` \\\\ \\r\\t end",
        "a\\u2028b`touch ${M}m8`",
    };
    for (int i = 0; i < 8; i++) {
        snprintf(run, sizeof run, "%s/method%d", tmp, i);
        write_run(run, methods[i], "sparsity");
        snprintf(q, sizeof q, "%s/with%d", tmp, i);
        write_run(q, methods[i], "sparsity");
        int rc = evb("plot", run, "--with", q);
        n_tried++;
        snprintf(p, sizeof p, "%s/front.svg", run);
        if (rc == 0 && file_has(p, "touch ${M}m")) n_ok++; /* the text is in the picture as it was */
        else if (rc != 0 && lines_of("err.txt") == 1) n_refused++;
    }
    /* a --with run without a method: its directory name is its label */
    snprintf(run, sizeof run, "%s/good", tmp);
    snprintf(q, sizeof q, "%s/w'`touch ${M}w1`\"", tmp);
    write_run(q, "x", "sparsity");
    snprintf(p, sizeof p, "%s/best.json", q);
    {
        FILE *f = fopen(p, "w");
        if (f) { fputs("{\"target_kind\": \"sparsity\", \"target\": 0.5, \"cost\": 9, \"fitness\": 0.2}\n", f); fclose(f); }
    }
    int rc = evb("plot", run, "--with", q);
    n_tried++;
    snprintf(p, sizeof p, "%s/front.svg", run);
    if (rc == 0 && file_has(p, "touch ${M}w1")) n_ok++;
    else if (rc != 0 && lines_of("err.txt") == 1) n_refused++;
    static const char *kinds[] = {"`touch ${M}k1`", "sparsity\\nsystem('touch ${M}k2')", "sparsity'; system('touch ${M}k3'); x='"};
    for (int i = 0; i < 3; i++) {
        snprintf(run, sizeof run, "%s/kind%d", tmp, i);
        write_run(run, "evopress", kinds[i]);
        rc = evb("plot", run, NULL, NULL);
        n_tried++;
        if (rc == 1 && lines_of("err.txt") == 1) n_refused++;
    }
    int marks = count_under(mark, "*", NULL);
    snprintf(p, sizeof p, "%s/cwd", tmp);
    int in_cwd = count_under(p, "*", NULL);
    EVB_CHECK(marks == 0 && in_cwd == 0, "%d crafted names and strings: no marker file created (%d), nothing written in the working directory (%d)",
              n_tried, marks, in_cwd);
    EVB_CHECK(n_ok + n_refused == n_tried && n_ok == 14 && n_refused == 3,
              "each plotted with the text shown literally (%d) or refused in one line (%d) of %d; the bad target kinds refused", n_ok, n_refused, n_tried);
    snprintf(p, sizeof p, "%s/method0/plots/vars.gp", tmp);
    EVB_CHECK(file_has(p, "'`touch ${M}m1` (this run''s best)'"), "a backquoted method is one single-quoted gnuplot string");

    /* counts bounded by the files */
    snprintf(run, sizeof run, "%s/depth", tmp);
    write_drop_run(run, "4", 2, "[{\"block\": 1, \"sub\": \"mlp\"}]");
    EVB_CHECK(evb("plot", run, NULL, NULL) == 0 && lines_of("depth/plots/profile.dat") == 4, "a depth run of 2 blocks: one bar per sub-block");
    snprintf(p, sizeof p, "%s/plots/profile.dat", run);
    EVB_CHECK(file_has(p, "4 0 8\n") && file_has(p, "3 1 7\n"), "block 1's MLP dropped, its attention kept");
    static const struct { const char *units, *drop, *what; } absurd[] = {
        {"2000000000", "[]", "a manifest claiming 2e9 units"},
        {"9223372036854775807", "[]", "a manifest claiming 2^63-1 units"},
        {"-4", "[]", "a negative unit count"},
        {"5", "[]", "an odd unit count"},
        {"4.0e9", "[]", "a unit count that is not an integer"},
        {"\"4\"", "[]", "a unit count that is a string"},
        {"4", "[{\"block\": 2000000000, \"sub\": \"attn\"}]", "a dropped block beyond the model"},
        {"4", "[{\"block\": -1, \"sub\": \"attn\"}]", "a dropped block -1"},
        {"4", "[{\"block\": 0, \"sub\": \"ffn\"}]", "a dropped sub-block of no known kind"},
        {"4", "{\"block\": 0}", "a drop that is not an array"},
    };
    for (int i = 0; i < 10; i++) {
        snprintf(run, sizeof run, "%s/absurd%d", tmp, i);
        write_drop_run(run, absurd[i].units, 2, absurd[i].drop);
        double t0 = now();
        rc = evb("plot", run, NULL, NULL);
        double dt = now() - t0;
        long largest;
        int n = count_under(run, "*", &largest);
        EVB_CHECK(rc == 1 && lines_of("err.txt") == 1 && largest < 4096 && dt < 10,
                  "%s: refused in one line (exit %d) in %.2f s; the largest file under the run is %ld bytes (%d entries)", absurd[i].what, rc, dt, largest, n);
    }
    snprintf(run, sizeof run, "%s/ragged", tmp);
    write_run(run, "evopress", "sparsity");
    put(run, "front.csv", "id,cost,cost_fraction,fitness,heldout,levels\n0,8,0.4,0.2,,0 1 0 1\n1,10,0.5,0.1,,1 2 0 3 4 5 6\n");
    EVB_CHECK(evb("plot", run, NULL, NULL) == 1 && lines_of("err.txt") == 1, "front rows with different level counts: refused in one line");
    put(run, "front.csv", "id,cost,cost_fraction,fitness\n");
    put(run, "best.json", "[1, 2]\n");
    EVB_CHECK(evb("plot", run, NULL, NULL) == 1 && lines_of("err.txt") == 1, "a best.json that is not an object: refused in one line");
    put(run, "best.json", "{\"target_kind\": \"sparsity\", \"units\": 7}\n");
    EVB_CHECK(evb("plot", run, NULL, NULL) == 1 && lines_of("err.txt") == 1, "units that are not an array: refused in one line");
    snprintf(p, sizeof p, "%s/plots", run);
    EVB_CHECK(count_under(p, ".plot-*", NULL) == 0, "and no private directory is left behind after a refusal");
    char longname[1400];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    for (int i = 100; i < 1390; i += 100) longname[i] = '/';
    EVB_CHECK(evb("plot", longname, NULL, NULL) == 2 && lines_of("err.txt") == 1, "a run directory name of 1399 bytes: refused in one line");

    /* a picture that is a link out of the run */
    snprintf(run, sizeof run, "%s/good", tmp);
    snprintf(q, sizeof q, "%s/outside.txt", tmp);
    put(tmp, "outside.txt", "keep me\n");
    snprintf(p, sizeof p, "%s/front.png", run);
    unlink(p);
    rc = symlink(q, p);
    snprintf(p, sizeof p, "%s/plots/vars.gp", run);
    unlink(p);
    rc |= symlink(q, p);
    EVB_CHECK(rc == 0 && evb("plot", run, NULL, NULL) == 0, "a run whose front.png and plots/vars.gp are links to a file outside it");
    struct stat sb;
    snprintf(p, sizeof p, "%s/front.png", run);
    EVB_CHECK(file_has(q, "keep me") && lstat(p, &sb) == 0 && S_ISREG(sb.st_mode), "the file outside is untouched; front.png is a regular file now");

    if (!getenv("EVB_KEEP")) fixture_rmdir(t);
    free(t);
    return evb_test_summary();
}
