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
 * - a picture name that is a link to a file outside the run is replaced, and the file is left alone;
 * - a sweep's directory (a real search over three targets, few generations, on stories260K or the stand-in)
 *   gets the sweep's front from its front.csv, each point labelled with its target, and every target's own
 *   pictures, also when plotted from another working directory than the search's;
 * - a sweep that scored held-out text (search --heldout) also gets, from front.csv's heldout_kl and
 *   uniform_kl, the held-out KL of each target's best and of the uniform allocation as two more lines;
 * - a problem file's run (examples/problems/knapsack.json) labels its profile's bars with the units' names,
 *   never with linear-layer names; names that would be code are shown as text; many names are thinned;
 * - the front's x ticks are few, short, evenly spaced and around the points, for one point and for a front
 *   narrower than gnuplot's own ticks would resolve;
 * - gnuplot's messages go to RUNDIR/plots/plot.log, not to the terminal; when gnuplot fails, one line gives
 *   its last message and names the log.
 * Skips (77) when gnuplot is not installed. */
#include "testing.h"
#include "fixtures.h"
#include "standin.h"

#include <math.h>

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

/* Runs the CLI with args[] (NULL-terminated, at most 40) as given (no shell), stdout and stderr into
 * tmp/out.txt and tmp/err.txt, from the working directory cwd. Returns the exit status. */
static int evb_in(const char *cwd, const char *const *args) {
    char out[600], err[600];
    snprintf(out, sizeof out, "%s/out.txt", tmp);
    snprintf(err, sizeof err, "%s/err.txt", tmp);
    char *argv[42] = {EVB_CLI};
    for (int i = 0; i < 40 && args[i]; i++) argv[i + 1] = (char *)args[i];
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

/* The CLI with up to four arguments, from the working directory tmp/cwd. */
static int evb(const char *a1, const char *a2, const char *a3, const char *a4) {
    char cwd[600];
    snprintf(cwd, sizeof cwd, "%s/cwd", tmp);
    const char *args[] = {a1, a2, a3, a4, NULL};
    return evb_in(cwd, args);
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
             " \"units\": [{\"unit\": 0, \"name\": \"layers.0.q_proj\", \"level\": 1, \"method\": \"sparsegpt\", \"sparsity\": 0.4},"
             " {\"unit\": 6, \"name\": \"layers.0.down_proj\", \"level\": 2, \"method\": \"sparsegpt\", \"sparsity\": 0.6},"
             " {\"unit\": 7, \"name\": \"layers.1.q_proj\", \"level\": 0, \"method\": \"sparsegpt\", \"sparsity\": 0.3},"
             " {\"unit\": 13, \"name\": \"layers.1.down_proj\", \"level\": 3, \"method\": \"sparsegpt\", \"sparsity\": 0.7}], \"drop\": []}\n",
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

/* The text of file (malloc'd, NUL-terminated), NULL when it cannot be read. */
static char *read_all(const char *file) {
    FILE *f = fopen(file, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0, k;
    char *b = malloc(cap);
    while (b && (k = fread(b + n, 1, cap - n - 1, f)) > 0) {
        n += k;
        if (n + 1 == cap) { char *nb = realloc(b, cap *= 2); if (!nb) { free(b); b = NULL; } else b = nb; }
    }
    fclose(f);
    if (b) b[n] = 0;
    return b;
}

/* How many times text occurs in file. */
static int count_in(const char *file, const char *text) {
    char *b = read_all(file);
    int n = 0;
    for (char *q = b; q && (q = strstr(q, text)); q += strlen(text)) n++;
    free(b);
    return n;
}

/* The x tick labels of a front picture (gnuplot's SVG: the numeric texts centred under their tick; a run's
 * front has no other centred number) into v[cap] as numbers, the longest label's length into *longest.
 * Returns how many. */
static int svg_xticks(const char *file, double *v, int cap, int *longest) {
    char *b = read_all(file);
    int n = 0;
    *longest = 0;
    for (char *q = b; q && (q = strstr(q, "text-anchor=\"middle\">")) && n < cap; q++) {
        char *t = strstr(q, "<text>"), *end;
        if (!t) break;
        t += 6;
        if (strncmp(t, "<tspan", 6) == 0) t = strchr(t, '>') + 1;
        char label[64];
        int len = (int)strcspn(t, "<");
        if (len <= 0 || len >= (int)sizeof label) continue;
        memcpy(label, t, (size_t)len);
        label[len] = 0;
        double x = strtod(label, &end);
        if (end == label || *end) continue;
        v[n++] = x;
        if (len > *longest) *longest = len;
    }
    free(b);
    return n;
}

/* The front's x ticks in svg are readable: 3 to 8 of them, each label at most 6 characters, evenly spaced
 * and increasing, around every x in xs[nx]. */
static void check_xticks(const char *svg, const double *xs, int nx, const char *what) {
    double v[64];
    int longest, n = svg_xticks(svg, v, 64, &longest), even = n >= 2;
    for (int i = 2; even && i < n; i++) even = fabs((v[i] - v[i - 1]) - (v[1] - v[0])) <= 1e-6 * fabs(v[1] - v[0]) && v[1] > v[0];
    int around = n >= 2;
    for (int i = 0; around && i < nx; i++) around = xs[i] >= v[0] && xs[i] <= v[n - 1];
    EVB_CHECK(n >= 3 && n <= 8 && longest <= 6 && even && around, "%s: %d x ticks (%g to %g), labels of at most %d characters, evenly spaced, around the points",
              what, n, n ? v[0] : 0.0, n ? v[n - 1] : 0.0, longest);
}

/* A sweep over three targets, searched from tmp with a relative --out (so front.csv names its best.json
 * files relative to tmp), plotted from tmp/cwd. */
static void check_sweep(void) {
    char model[1024], calib[1024], cache[600], p[2048], q[2048], sweep[600];
    if (standin_or_stories(tmp, model, sizeof model, calib, sizeof calib) < 0) { EVB_CHECK(0, "the stand-in model is written"); return; }
    snprintf(cache, sizeof cache, "%s/cache", tmp);
    const char *search[] = {"search", "--model", model, "--calib", calib, "--seq-len", "64", "--calib-windows", "4", "--seed", "3", "--cache", cache,
                            "--method", "evopress", "--target-sparsity", "0.3,0.5,0.7", "--generations", "2", "--offspring", "4", "--stages", "4@200,1@0",
                            "--out", "sweep", NULL};
    EVB_CHECK(evb_in(tmp, search) == 0, "an EvoPress sweep over 30, 50 and 70%% sparsity, 2 generations each");
    snprintf(sweep, sizeof sweep, "%s/sweep", tmp);
    int rc = evb("plot", sweep, NULL, NULL);
    snprintf(p, sizeof p, "%s/out.txt", tmp);
    EVB_CHECK(rc == 0 && lines_of("out.txt") == 21 && count_in(p, "a sweep over 3 sparsity targets") == 1 && lines_of("err.txt") == 0,
              "plot of the sweep (exit %d): a line saying it is a sweep of 3 targets, then 20 pictures (%d lines), nothing on stderr (%d lines)",
              rc, lines_of("out.txt"), lines_of("err.txt"));
    static const char *names[] = {"front.png", "front.svg", "profile.png", "profile.svg", "convergence.png", "convergence.svg"};
    static const char *targets[] = {"0.3", "0.5", "0.7"};
    int good = 0;
    for (int t = -1; t < 3; t++)
        for (int i = 0; i < (t < 0 ? 2 : 6); i++) {
            if (t < 0) snprintf(p, sizeof p, "%s/%s", sweep, names[i]);
            else snprintf(p, sizeof p, "%s/sparsity-%s/%s", sweep, targets[t], names[i]);
            good += file_has(p, i % 2 == 0 ? "PNG" : "<svg");
        }
    EVB_CHECK(good == 20, "the sweep's front and each target's front, profile and convergence are PNG and SVG pictures (%d of 20)", good);
    /* the front: one point per row of front.csv at (1 - cost_fraction, fitness), labelled with its target */
    snprintf(p, sizeof p, "%s/front.csv", sweep);
    snprintf(q, sizeof q, "%s/plots/front.dat", sweep);
    FILE *fc = fopen(p, "r"), *fd = fopen(q, "r");
    char line[4096];
    int rows = 0, match = 0;
    double xs[3] = {0};
    while (fc && fd && fgets(line, sizeof line, fc)) {
        double t, c, cf, f, x, y, lt;
        if (sscanf(line, "%*d,%lf,%lf,%lf,%lf,", &t, &c, &cf, &f) != 4) continue;
        if (fscanf(fd, "%lf %lf %lf", &x, &y, &lt) != 3) break;
        if (rows < 3) xs[rows] = x;
        rows++;
        match += fabs(x - (1 - cf)) < 1e-6 && fabs(y - f) <= 1e-6 * f && fabs(lt - t) < 1e-9 && fabs(x - t) < 0.01;
    }
    if (fc) fclose(fc);
    if (fd) fclose(fd);
    EVB_CHECK(rows == 3 && match == 3, "the front: %d points, %d at front.csv's (1 - cost_fraction, KL on all calibration tokens) and target", rows, match);
    snprintf(p, sizeof p, "%s/front.svg", sweep);
    int labelled = 0;
    for (int t = 0; t < 3; t++) {
        snprintf(q, sizeof q, ">%s</tspan>", targets[t]);
        labelled += file_has(p, q);
    }
    EVB_CHECK(labelled == 3 && file_has(p, "on all calibration tokens"), "each point is labelled with its target (%d of 3); the y axis says KL on all calibration tokens", labelled);
    int bars = 0, units = 0;
    for (int t = 0; t < 3; t++) {
        snprintf(p, sizeof p, "sweep/sparsity-%s/plots/profile.dat", targets[t]);
        bars += lines_of(p);
        snprintf(p, sizeof p, "%s/sweep/sparsity-%s/best.json", tmp, targets[t]);
        units += count_in(p, "\"name\"");
    }
    EVB_CHECK(units > 0 && bars == units, "each target's profile has a bar per unit of its best.json (%d bars, %d units)", bars, units);
    const char *json[] = {"plot", sweep, "--json", NULL};
    snprintf(p, sizeof p, "%s/cwd", tmp);
    rc = evb_in(p, json);
    snprintf(p, sizeof p, "%s/out.txt", tmp);
    EVB_CHECK(rc == 0 && lines_of("out.txt") == 1 && file_has(p, "\"sweep\":true") && file_has(p, "\"targets\":3") && count_in(p, ".png\"") == 10,
              "--json: one object, a sweep of 3 targets, 10 PNG pictures (%d)", count_in(p, ".png\""));
    snprintf(p, sizeof p, "%s/plots", sweep);
    EVB_CHECK(count_under(p, ".plot-*", NULL) == 0, "no private directory is left in the sweep's plots/");
}

/* A sweep that scored held-out text (search --heldout): its front.csv's heldout_kl and uniform_kl become two
 * more lines of the sweep's front, the search's and the uniform allocation's held-out KL; a sweep without
 * them gets neither. */
static void check_sweep_heldout(void) {
    char model[1024], calib[1024], cache[600], p[2048], q[2048], held[600], sweep[600];
    if (standin_or_stories(tmp, model, sizeof model, calib, sizeof calib) < 0) { EVB_CHECK(0, "the stand-in model is written"); return; }
    snprintf(cache, sizeof cache, "%s/cache", tmp);
    snprintf(held, sizeof held, "%s/heldout.txt", tmp);
    snprintf(p, sizeof p, "head -c 4096 '%s' > '%s'", calib, held);
    sh(p);
    const char *search[] = {"search", "--model", model, "--calib", calib, "--seq-len", "64", "--calib-windows", "4", "--seed", "3", "--cache", cache,
                            "--method", "evopress", "--target-sparsity", "0.3,0.5", "--heldout", held, "--generations", "2", "--offspring", "4",
                            "--stages", "4@200,1@0", "--out", "sweep-heldout", NULL};
    EVB_CHECK(evb_in(tmp, search) == 0, "an EvoPress sweep over 30 and 50%% sparsity scoring held-out text");
    snprintf(sweep, sizeof sweep, "%s/sweep-heldout", tmp);
    int rc = evb("plot", sweep, NULL, NULL);
    EVB_CHECK(rc == 0 && lines_of("out.txt") == 15 && lines_of("err.txt") == 0,
              "plot of the sweep (exit %d): a line and 14 pictures (%d lines), nothing on stderr (%d lines)", rc, lines_of("out.txt"), lines_of("err.txt"));
    /* heldout.dat: per row of front.csv its x, heldout_kl, uniform_kl and target */
    snprintf(p, sizeof p, "%s/front.csv", sweep);
    snprintf(q, sizeof q, "%s/plots/heldout.dat", sweep);
    FILE *fc = fopen(p, "r"), *fd = fopen(q, "r");
    char line[4096];
    int rows = 0, match = 0, apart = 0;
    while (fc && fd && fgets(line, sizeof line, fc)) {
        double t, cf, hkl, hppl, ukl, x, h, u, lt;
        if (sscanf(line, "%*d,%lf,%*f,%lf,%*f,%*[^,],%lf,%lf,%lf,", &t, &cf, &hkl, &hppl, &ukl) != 5) continue;
        if (fscanf(fd, "%lf %lf %lf %lf", &x, &h, &u, &lt) != 4) break;
        rows++;
        match += fabs(x - (1 - cf)) < 1e-6 && fabs(h - hkl) <= 1e-6 * hkl && fabs(u - ukl) <= 1e-6 * ukl && fabs(lt - t) < 1e-9 && h > 0 && u > 0;
        apart += fabs(u - h) > 1e-6 * u;
    }
    if (fc) fclose(fc);
    if (fd) fclose(fd);
    EVB_CHECK(rows == 2 && match == 2 && apart >= 1,
              "heldout.dat: %d rows, %d at front.csv's (1 - cost_fraction, heldout_kl, uniform_kl, target); the two KLs differ in %d", rows, match, apart);
    snprintf(p, sizeof p, "%s/front.svg", sweep);
    EVB_CHECK(count_in(p, "<title>the uniform allocation of the same size on held-out text</title>") == 1 &&
              count_in(p, "<title>each target's best on held-out text</title>") == 1,
              "the sweep's front draws uniform's held-out KL as a line of its own, beside the search's held-out KL");
    snprintf(p, sizeof p, "%s/sweep/front.svg", tmp);
    EVB_CHECK(file_has(p, "<svg") && !file_has(p, "held-out text"), "a sweep without held-out text: no held-out lines, no key entries for them");
}

/* A problem file's run: the example of docs/problem-files.md, searched and plotted. */
static void check_problem_names(void) {
    char run[600], p[2048], q[600];
    snprintf(run, sizeof run, "%s/knapsack-run", tmp);
    const char *search[] = {"search", "--problem", EVB_SOURCE_DIR "/examples/problems/knapsack.json", "--out", run, NULL};
    EVB_CHECK(evb_in(tmp, search) == 0 && evb("plot", run, NULL, NULL) == 0, "examples/problems/knapsack.json searched and plotted");
    static const char *names[] = {"block0.attn", "block0.mlp", "block1.attn", "block1.mlp", "block2.attn", "block2.mlp"};
    snprintf(p, sizeof p, "%s/profile.svg", run);
    int shown = 0;
    for (int i = 0; i < 6; i++) {
        snprintf(q, sizeof q, ">%s</text>", names[i]);
        shown += file_has(p, q);
    }
    EVB_CHECK(shown == 6 && !file_has(p, "q_proj") && lines_of("knapsack-run/plots/profile.dat") == 6,
              "the profile labels its 6 bars with the units' names (%d shown) and names no linear layer", shown);
    snprintf(p, sizeof p, "%s/plots/profile.dat", run);
    EVB_CHECK(file_has(p, "2 0.75 0 \"block1.attn\"\n") && file_has(p, "5 0.25 0 \"block2.mlp\"\n"), "block1.attn's bar is its sparsity 0.75, block2.mlp's 0.25");
    snprintf(p, sizeof p, "%s/front.svg", run);
    double cost = 12288;
    check_xticks(p, &cost, 1, "a problem run's front of one point at cost 12288");

    /* names that would be code, and many names: the crafted ones (JSON-escaped) at 0, 3, 6 and 9, which are
     * labelled (every third bar of 100 is) */
    static const char *crafted[] = {"a\\\"b`touch ${M}n1`", "x'; system('touch ${M}n2'); y='", "back\\\\\\\\slash\\\\\\\\", "nl\\nsystem('touch ${M}n3')"};
    char b[16384], *w = b;
    w += sprintf(w, "{\"method\": \"evopress\", \"target_kind\": \"problem\", \"budget\": 10, \"cost\": 10, \"fitness\": 0.5, \"units\": [");
    for (int i = 0; i < 100; i++) {
        if (i % 3 == 0 && i / 3 < 4) w += sprintf(w, "%s{\"unit\": %d, \"name\": \"%s\", \"level\": 1}", i ? ", " : "", i, crafted[i / 3]);
        else w += sprintf(w, ", {\"unit\": %d, \"name\": \"u%03d\", \"level\": %d}", i, i, i % 3);
    }
    sprintf(w, "], \"drop\": []}\n");
    snprintf(run, sizeof run, "%s/names", tmp);
    mkdir(run, 0755);
    put(run, "best.json", b);
    put(run, "front.csv", "id,cost,cost_fraction,fitness,heldout,levels\n0,10,0.5,0.5,,1 2 0 1\n");
    int rc = evb("plot", run, NULL, NULL);
    snprintf(p, sizeof p, "%s/profile.svg", run);
    snprintf(q, sizeof q, "%s/marks", tmp);
    EVB_CHECK(rc == 0 && count_under(q, "*", NULL) == 0 && file_has(p, "a'b`touch ${M}n1`") && file_has(p, "x'; system('touch ${M}n2'); y='") &&
              file_has(p, "back\\\\slash\\\\") && file_has(p, "nl?system("),
              "unit names holding quotes, backquotes, backslashes and a newline: shown as text (a double quote as a single one), no marker file");
    EVB_CHECK(file_has(p, ">u012</text>") && file_has(p, ">u099</text>") && !file_has(p, ">u001</text>") && !file_has(p, ">u098</text>"),
              "100 units: every third bar labelled");
}

/* A front narrower than gnuplot's own ticks resolve, and gnuplot's messages. */
static void check_ticks_and_log(void) {
    char run[600], p[2048], home[600];
    snprintf(run, sizeof run, "%s/narrow", tmp);
    write_run(run, "evopress", "sparsity");
    put(run, "front.csv", "id,cost,cost_fraction,fitness,heldout,levels\n0,9.9998,0.49999,0.2,,0 1 0 1\n1,10,0.5,0.1,,1 2 0 3\n2,10.0002,0.50001,0.05,,2 2 1 3\n");
    EVB_CHECK(evb("plot", run, NULL, NULL) == 0, "a front 2e-5 wide");
    snprintf(p, sizeof p, "%s/front.svg", run);
    double xs[] = {0.49999, 0.5, 0.50001};
    check_xticks(p, xs, 3, "a front 2e-5 wide");

    /* messages: to plot.log, not the terminal */
    snprintf(home, sizeof home, "%s/home", tmp);
    snprintf(p, sizeof p, "mkdir -p '%s/plots' && for f in front profile convergence; do { echo \"print 'noise from gnuplot'\"; cat '%s/plots/'$f.gp; } > '%s/plots/'$f.gp; done",
             home, EVB_SOURCE_DIR, home);
    sh(p);
    setenv("EVB_HOME", home, 1);
    int rc = evb("plot", run, NULL, NULL);
    snprintf(p, sizeof p, "%s/plots/plot.log", run);
    EVB_CHECK(rc == 0 && lines_of("err.txt") == 0 && count_in(p, "noise from gnuplot") == 6,
              "gnuplot's messages (6 of them) go to RUNDIR/plots/plot.log (%d there), none to the terminal (%d lines)", count_in(p, "noise from gnuplot"), lines_of("err.txt"));
    put(home, "plots/front.gp", "print 'first message'\nset output 'front.'.ext\nplot undefined_variable_xyz(x)\n");
    rc = evb("plot", run, NULL, NULL);
    unsetenv("EVB_HOME");
    snprintf(p, sizeof p, "%s/err.txt", tmp);
    char logp[700];
    snprintf(logp, sizeof logp, "%s/plots/plot.log", run);
    EVB_CHECK(rc == 1 && lines_of("err.txt") == 1 && file_has(p, "gnuplot failed on front.gp (exit status 1)") && file_has(p, "undefined") &&
              file_has(p, "narrow/plots/plot.log") && !file_has(p, "first message") && file_has(logp, "first message"),
              "gnuplot failing: one line with its exit status and last message, naming plot.log, which keeps the rest");
    snprintf(p, sizeof p, "%s/plots", run);
    EVB_CHECK(count_under(p, ".plot-*", NULL) == 0, "and no private directory is left behind");
}

/* A well-formed run: six pictures, no private directory left, a bar per unit. */
static void check_good_run(void) {
    char p[2048], run[1024];
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
}

/* Strings that would be code (run directory names, methods, labels, target kinds): each shown as text or
 * refused in one line, none run. */
static void check_crafted(void) {
    char p[2048], q[2048], run[1024], mark[600];
    snprintf(mark, sizeof mark, "%s/marks", tmp);
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
        if (f) { fputs("{\"target_kind\": \"sparsity\", \"target\": 0.5, \"cost\": 9, \"fitness\": 0.2, \"units\": []}\n", f); fclose(f); }
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
}

/* Counts that size the output are bounded by what the files hold. */
static void check_counts(void) {
    char p[2048], run[1024];
    int rc;
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
}

/* A picture that is a link out of the run is replaced, the file it named left alone. */
static void check_links(void) {
    char p[2048], q[2048], run[1024];
    int rc;
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
}
/* A --with run whose manifest says it was surrogate-assisted is labelled so: EvoPress with and without the
 * surrogate share the method's name, and a picture of both must tell them apart. */
static void check_surrogate_label(void) {
    char run[1024], w1[1024], w2[1024], with[2100], p[2048];
    snprintf(run, sizeof run, "%s/sl_main", tmp);
    snprintf(w1, sizeof w1, "%s/sl_plain", tmp);
    snprintf(w2, sizeof w2, "%s/sl_sur", tmp);
    write_run(run, "evopress", "sparsity");
    write_run(w1, "evopress", "sparsity");
    write_run(w2, "evopress", "sparsity");
    put(w2, "manifest.json", "{\"units\": 4, \"target_kind\": \"sparsity\", \"search\": {\"generations\": 10, \"surrogate\": 16}}\n");
    snprintf(with, sizeof with, "%s,%s", w1, w2);
    int rc = evb("plot", run, "--with", with);
    snprintf(p, sizeof p, "%s/front.svg", run);
    EVB_CHECK(rc == 0 && file_has(p, "evopress (surrogate)") && file_has(p, ">evopress<"),
              "--with a surrogate-assisted run: labelled 'evopress (surrogate)', the plain one 'evopress' (rc %d)", rc);
}

int main(void) {
    if (sh("command -v gnuplot > /dev/null 2>&1") != 0) {
        printf("SKIP test_plot_cli: gnuplot is not installed (hint: ./setup.sh installs gnuplot-nox)\n");
        return 77;
    }
    char *t = fixture_tmpdir();
    snprintf(tmp, sizeof tmp, "%s", t);
    char p[2048], mark[600];
    snprintf(p, sizeof p, "%s/cwd", tmp);
    mkdir(p, 0755);
    snprintf(mark, sizeof mark, "%s/marks", tmp);
    mkdir(mark, 0755);
    snprintf(p, sizeof p, "%s/", mark);
    setenv("M", p, 1); /* every armed string below would create a file in marks/ through the shell */

    check_good_run();
    check_crafted();
    check_counts();
    check_links();
    check_ticks_and_log();
    check_problem_names();
    check_sweep();
    check_sweep_heldout();
    check_surrogate_label();

    if (!getenv("EVB_KEEP")) fixture_rmdir(t);
    free(t);
    return evb_test_summary();
}
