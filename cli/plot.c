/* plot.c -- `evobudget plot RUNDIR`: the run's files turned into data files (RUNDIR/plots/) and pictures
 * drawn by the gnuplot scripts of plots/ (front, per-unit budget profile, convergence), PNG and SVG. */
#define _GNU_SOURCE
#include "cli/cli.h"

#include <errno.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

extern char **environ;

/* x of a point on the front: average sparsity, average bits, fraction of sub-blocks dropped, or the cost. */
static double front_x(const char *kind, double cost, double fraction) {
    if (strcmp(kind, "sparsity") == 0) return 1.0 - fraction;
    if (strcmp(kind, "bits") == 0) return fraction * 32.0;
    if (strcmp(kind, "drop") == 0) return 1.0 - fraction;
    if (strcmp(kind, "bytes") == 0) return fraction; /* storage bits per linear weight */
    return cost;
}

static const char *front_xlabel(const char *kind) {
    if (strcmp(kind, "sparsity") == 0) return "average sparsity";
    if (strcmp(kind, "bits") == 0) return "average bits per weight";
    if (strcmp(kind, "drop") == 0) return "fraction of sub-blocks dropped";
    if (strcmp(kind, "bytes") == 0) return "storage bits per linear weight (values, masks, scales)";
    return "cost";
}

/* The columns of front.csv named cost, cost_fraction and fitness, row by row: calls fn for each. Returns
 * the rows read, or -1 (with an error printed) when the file is missing or malformed. */
static int read_front(const char *path, void (*fn)(void *ctx, double cost, double frac, double fit), void *ctx) {
    FILE *f = fopen(path, "r");
    if (!f) { fprintf(stderr, "%s: error: %s: cannot open: %s (hint: is this a run directory?)\n", cmd_name, path, strerror(errno)); return -1; }
    char line[1 << 16];
    int col[3] = {-1, -1, -1}, rows = 0;
    static const char *want[3] = {"cost", "cost_fraction", "fitness"};
    if (fgets(line, sizeof line, f)) {
        int c = 0;
        for (char *save, *tok = strtok_r(line, ",\n", &save); tok; tok = strtok_r(NULL, ",\n", &save), c++)
            for (int k = 0; k < 3; k++) if (strcmp(tok, want[k]) == 0) col[k] = c;
    }
    if (col[0] < 0 || col[1] < 0 || col[2] < 0) {
        fclose(f);
        fprintf(stderr, "%s: error: %s: the header lacks cost, cost_fraction or fitness\n", cmd_name, path);
        return -1;
    }
    while (fgets(line, sizeof line, f)) {
        double v[3] = {0};
        int c = 0, got = 0;
        for (char *p = line; *p && *p != '\n'; c++) {
            char *end = p + strcspn(p, ",\n");
            for (int k = 0; k < 3; k++) if (c == col[k]) { v[k] = strtod(p, NULL); got++; }
            p = *end == ',' ? end + 1 : end;
        }
        if (got < 3) { fclose(f); fprintf(stderr, "%s: error: %s: row %d has fewer columns than its header\n", cmd_name, path, rows + 2); return -1; }
        fn(ctx, v[0], v[1], v[2]);
        rows++;
    }
    fclose(f);
    return rows;
}

typedef struct front_out { FILE *f; const char *kind; double ratio; } front_out; /* ratio: fraction / cost */

static void write_front_row(void *ctx, double cost, double frac, double fit) {
    front_out *o = ctx;
    if (cost > 0) o->ratio = frac / cost;
    fprintf(o->f, "%.9g %.9g\n", front_x(o->kind, cost, frac), fit);
}

/* One labelled point of the front picture: a line of baselines.dat, its label kept for the key. Quotes and
 * backslashes, which gnuplot's strings would take as syntax, become plain characters. */
static void add_point(FILE *f, json_t *labels, double x, double y, const char *label) {
    char clean[300];
    size_t k = 0;
    for (const char *p = label; *p && k + 1 < sizeof clean; p++) clean[k++] = *p == '"' || *p == '\\' ? '\'' : *p;
    clean[k] = 0;
    fprintf(f, "%.9g %.9g\n", x, y);
    json_array_append_new(labels, json_string(clean));
}

static json_t *load_json(const char *dir, const char *name, int required) {
    char p[1300];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    json_error_t je;
    json_t *j = json_load_file(p, 0, &je);
    if (!j && required) fprintf(stderr, "%s: error: %s: %s\n", cmd_name, p, je.text);
    return j;
}

/* Per unit of best.json: its position, kind and budget (sparsity, bits or level); for a depth run, per
 * sub-block 1 when kept, 0 when dropped. Writes profile.dat (x value kind) and the tick labels. */
static int write_profile(const char *dir, json_t *best, json_t *manifest, FILE *vars) {
    char p[1300];
    snprintf(p, sizeof p, "%s/plots/profile.dat", dir);
    FILE *f = fopen(p, "w");
    if (!f) { fprintf(stderr, "%s: error: %s: cannot create: %s\n", cmd_name, p, strerror(errno)); return 1; }
    const char *kind = json_string_value(json_object_get(best, "target_kind"));
    static const char *kinds[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "attn", "mlp"};
    const int n_kinds = 9;
    int used[9] = {0}, last_block = -1, n_bars = 0, n_blocks = 0;
    const char *ylabel = "level";
    fprintf(vars, "profile_xtics = 'set xtics (");
    if (kind && strcmp(kind, "drop") == 0) {
        int L = (int)json_integer_value(json_object_get(manifest, "units")) / 2;
        if (L <= 0) { fclose(f); fprintf(stderr, "%s: error: %s/manifest.json: no unit count for a depth run\n", cmd_name, dir); return 1; }
        for (int l = 0; l < L; l++)
            for (int k = 0; k < 2; k++) {
                int dropped = 0;
                json_t *x;
                size_t i;
                json_array_foreach(json_object_get(best, "drop"), i, x)
                    if (json_integer_value(json_object_get(x, "block")) == l && strcmp(json_string_value(json_object_get(x, "sub")) ? json_string_value(json_object_get(x, "sub")) : "", kinds[7 + k]) == 0) dropped = 1;
                fprintf(f, "%d %d %d\n", l * 3 + k, !dropped, 7 + k);
                used[7 + k] = 1;
            }
        for (int l = 0; l < L; l++) fprintf(vars, "%s\"%d\" %g", l ? ", " : "", l, l * 3 + 0.5);
        n_blocks = L;
        ylabel = "kept (1) or dropped (0)";
    } else {
        json_t *x;
        size_t i;
        json_array_foreach(json_object_get(best, "units"), i, x) {
            const char *name = json_string_value(json_object_get(x, "name"));
            int block = -1, k = -1;
            const char *dot = name ? strrchr(name, '.') : NULL;
            if (name && sscanf(name, "layers.%d.", &block) == 1 && dot)
                for (int q = 0; q < n_kinds; q++) if (strcmp(dot + 1, kinds[q]) == 0) k = q;
            if (k < 0) { block = (int)i; k = 0; }
            double v = json_number_value(json_object_get(x, "level"));
            if (json_object_get(x, "storage_bits_per_weight")) { v = json_number_value(json_object_get(x, "storage_bits_per_weight")); ylabel = "storage bits per weight"; }
            else if (json_object_get(x, "sparsity")) { v = json_number_value(json_object_get(x, "sparsity")); ylabel = "sparsity"; }
            else if (json_object_get(x, "bits")) { v = json_number_value(json_object_get(x, "bits")); ylabel = "bits"; }
            if (block != last_block) {
                fprintf(vars, "%s\"%d\" %d", n_blocks ? ", " : "", block, n_bars + n_blocks + 3);
                n_blocks++;
                last_block = block;
            }
            fprintf(f, "%d %.9g %d\n", n_bars + n_blocks - 1, v, k); /* a gap of one bar between blocks */
            used[k] = 1;
            n_bars++;
        }
    }
    fprintf(vars, ")'\nprofile_ylabel = \"%s\"\nkinds = \"", ylabel);
    for (int q = 0; q < n_kinds; q++) fprintf(vars, "%s%s", q ? " " : "", kinds[q]);
    fprintf(vars, "\"\nkind_ids = \"");
    for (int q = 0, first = 1; q < n_kinds; q++) if (used[q]) { fprintf(vars, "%s%d", first ? "" : " ", q); first = 0; }
    fprintf(vars, "\"\nn_blocks = %d\n", n_blocks);
    fclose(f);
    return 0;
}

/* A best.json's point on the front picture: its fitness on all calibration tokens; a run written before
 * best.json held it counts in *own and gives its own fitness (the y label then says so). */
static double point_fitness(json_t *b, int *own) {
    json_t *fa = json_object_get(b, "fitness_all");
    if (json_is_number(fa)) return json_number_value(fa);
    (*own)++;
    return json_number_value(json_object_get(b, "fitness"));
}

/* log.jsonl: generation, evaluations, best fitness, seconds per line. Returns the lines written. */
static int write_convergence(const char *dir) {
    char p[1300], q[1300];
    snprintf(p, sizeof p, "%s/log.jsonl", dir);
    snprintf(q, sizeof q, "%s/plots/convergence.dat", dir);
    FILE *in = fopen(p, "r");
    if (!in) return 0;
    FILE *out = fopen(q, "w");
    if (!out) { fclose(in); return 0; }
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, in)) {
        json_t *j = json_loads(line, 0, NULL);
        json_t *g = json_object_get(j, "generation"), *b = json_object_get(j, "best_fitness");
        if (json_is_integer(g) && json_is_number(b)) {
            fprintf(out, "%lld %lld %.12g %.3f\n", (long long)json_integer_value(g), (long long)json_integer_value(json_object_get(j, "evaluations")),
                    json_number_value(b), json_number_value(json_object_get(j, "seconds")));
            n++;
        }
        json_decref(j);
    }
    fclose(in); fclose(out);
    return n;
}

/* Runs gnuplot on script with datadir and the terminal set; 0 on success. */
static int gnuplot(const char *script, const char *datadir, const char *ext) {
    char expr[1500];
    snprintf(expr, sizeof expr, "datadir='%s'; ext='%s'", datadir, ext);
    char *argv[] = {"gnuplot", "-e", expr, (char *)script, NULL};
    pid_t pid;
    int e = posix_spawnp(&pid, "gnuplot", NULL, NULL, argv, environ);
    if (e) {
        fprintf(stderr, "%s: error: cannot run gnuplot: %s (hint: ./setup.sh installs gnuplot-nox)\n", cmd_name, strerror(e));
        return 1;
    }
    int st;
    if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st)) {
        fprintf(stderr, "%s: error: gnuplot failed on %s (its message is above)\n", cmd_name, script);
        return 1;
    }
    return 0;
}

int cmd_plot(int argc, char **argv) {
    opts o = {0};
    const char *dir = NULL;
    if (argc > 0 && argv[0][0] != '-') { dir = argv[0]; argc--; argv++; }
    int rc = parse_opts(argc, argv, "--with --json", &o);
    if (rc || o.help) {
        if (o.help) printf("usage: evobudget plot RUNDIR [--with RUNDIR[,RUNDIR...]] [--json]\n"
                           "  Draws a run directory into RUNDIR: front.png/.svg (front.csv; with --with, the best.json of other\n"
                           "  runs, e.g. the baselines at the same target, as labelled points), profile.png/.svg (best.json: one\n"
                           "  bar per unit, grouped by block, coloured by layer type) and convergence.png/.svg (log.jsonl: best\n"
                           "  fitness against generation and against evaluations). The data files are left in RUNDIR/plots/.\n"
                           "  Needs gnuplot (./setup.sh installs gnuplot-nox).\n"
                           "  --json   one JSON object on stdout: the pictures written\n");
        return rc;
    }
    if (!dir) return usage_error("plot needs a run directory (hint: evobudget plot RUNDIR)");
    if (!is_dir(dir)) return usage_error("%s is not a directory (hint: give a run directory written by 'evobudget search --out')", dir);
    json_t *best = load_json(dir, "best.json", 1), *manifest = load_json(dir, "manifest.json", 0);
    if (!best) return 1;
    const char *kind = json_string_value(json_object_get(best, "target_kind"));
    if (!kind) kind = "problem";
    char p[1300];
    snprintf(p, sizeof p, "%s/plots", dir);
    if (mkdir(p, 0755) != 0 && errno != EEXIST) { json_decref(best); json_decref(manifest); return usage_error("%s: cannot create: %s", p, strerror(errno)); }
    /* front.dat and baselines.dat */
    snprintf(p, sizeof p, "%s/plots/front.dat", dir);
    front_out fo = {fopen(p, "w"), kind, 0};
    if (!fo.f) { json_decref(best); json_decref(manifest); return usage_error("%s: cannot create: %s", p, strerror(errno)); }
    snprintf(p, sizeof p, "%s/front.csv", dir);
    int n_front = read_front(p, write_front_row, &fo);
    fclose(fo.f);
    rc = n_front < 0;
    snprintf(p, sizeof p, "%s/plots/baselines.dat", dir);
    FILE *bf = rc ? NULL : fopen(p, "w");
    if (!rc && !bf) rc = usage_error("%s: cannot create: %s", p, strerror(errno));
    int n_base = 0, n_own = 0;
    json_t *labels = json_array();
    char lb[300];
    if (bf) {
        double c = json_number_value(json_object_get(best, "cost"));
        const char *m = json_string_value(json_object_get(best, "method"));
        snprintf(lb, sizeof lb, "%s (this run's best)", m ? m : "run");
        add_point(bf, labels, front_x(kind, c, c * fo.ratio), point_fitness(best, &n_own), lb);
    }
    char *with = o.with ? strdup(o.with) : NULL;
    for (char *save, *d = with ? strtok_r(with, ",", &save) : NULL; d && !rc; d = strtok_r(NULL, ",", &save)) {
        json_t *b = load_json(d, "best.json", 1);
        if (!b) { rc = 1; break; }
        const char *k2 = json_string_value(json_object_get(b, "target_kind"));
        /* runs of another kind compare with a joint run (bytes) by their storage */
        int by_storage = k2 && strcmp(k2, kind) && strcmp(kind, "bytes") == 0 && json_is_number(json_object_get(b, "storage_bytes"));
        if (!k2 || (strcmp(k2, kind) && !by_storage)) rc = usage_error("--with %s: a %s run; %s is a %s run", d, k2 ? k2 : "?", dir, kind);
        if (!rc && by_storage) {
            const char *m = json_string_value(json_object_get(b, "method"));
            snprintf(lb, sizeof lb, "%s (%s only)", m ? m : d, k2);
            add_point(bf, labels, json_number_value(json_object_get(b, "storage_bytes")) * 8 * fo.ratio, point_fitness(b, &n_own), lb);
            n_base++;
            json_decref(b);
            continue;
        }
        /* The other run's own front gives its cost scale. */
        snprintf(p, sizeof p, "%s/front.csv", d);
        front_out scale = {rc ? NULL : fopen("/dev/null", "w"), kind, 0};
        if (!rc && (!scale.f || read_front(p, write_front_row, &scale) < 0)) rc = 1;
        if (scale.f) fclose(scale.f);
        if (!rc) {
            double c = json_number_value(json_object_get(b, "cost"));
            const char *m = json_string_value(json_object_get(b, "method"));
            add_point(bf, labels, front_x(kind, c, c * scale.ratio), point_fitness(b, &n_own), m ? m : d);
            n_base++;
        }
        json_decref(b);
    }
    free(with);
    if (bf) fclose(bf);
    /* vars.gp: labels and ticks the scripts load */
    snprintf(p, sizeof p, "%s/plots/vars.gp", dir);
    FILE *vars = rc ? NULL : fopen(p, "w");
    if (!rc && !vars) rc = usage_error("%s: cannot create: %s", p, strerror(errno));
    if (vars) {
        const char *method = json_string_value(json_object_get(best, "method"));
        fprintf(vars, "front_xlabel = \"%s\"\nrun_title = \"%s, %s target %g\"\n", front_xlabel(kind), method ? method : "run", kind,
                json_number_value(json_object_get(best, "target")));
        fprintf(vars, "front_ylabel = \"%s\"\n", n_own ? "fitness as each run measured it (KL per token)"
                                                        : "points: KL(dense || compressed) per token on all calibration tokens");
        size_t i;
        json_t *x;
        fprintf(vars, "n_points = %zu\narray point_labels[%zu] = [", json_array_size(labels), json_array_size(labels));
        json_array_foreach(labels, i, x) fprintf(vars, "%s\"%s\"", i ? ", " : "", json_string_value(x));
        fprintf(vars, "]\n");
        rc = write_profile(dir, best, manifest, vars);
        fclose(vars);
    }
    json_decref(labels);
    int n_conv = rc ? 0 : write_convergence(dir);
    json_t *pics = json_array();
    static const char *scripts[] = {"front", "profile", "convergence"};
    char script[1200];
    const char *home = getenv("EVB_HOME");
    for (int i = 0; i < 3 && !rc; i++) {
        if (i == 2 && n_conv == 0) { fprintf(stderr, "%s: note: %s has no log.jsonl generations; no convergence picture\n", cmd_name, dir); continue; }
        snprintf(script, sizeof script, "%s/plots/%s.gp", home ? home : EVB_SOURCE_DIR, scripts[i]);
        for (int e = 0; e < 2 && !rc; e++) {
            const char *ext = e ? "svg" : "png";
            rc = gnuplot(script, dir, ext);
            char pic[1300];
            snprintf(pic, sizeof pic, "%s/%s.%s", dir, scripts[i], ext);
            struct stat sb;
            if (!rc && (stat(pic, &sb) != 0 || sb.st_size == 0)) rc = usage_error("gnuplot wrote no %s", pic);
            if (!rc) json_array_append_new(pics, json_string(pic));
        }
    }
    if (!rc) {
        json_t *j = json_pack("{s:s, s:o, s:i, s:i, s:i}", "run", dir, "pictures", pics, "front_points", n_front, "baselines", n_base, "generations", n_conv);
        if (o.json) rc = print_json(j);
        else {
            json_t *x;
            size_t i;
            json_array_foreach(json_object_get(j, "pictures"), i, x) printf("wrote %s\n", json_string_value(x));
            json_decref(j);
        }
    } else json_decref(pics);
    json_decref(best);
    json_decref(manifest);
    return rc;
}
