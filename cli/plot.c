/* plot.c -- `evobudget plot RUNDIR`: the run's files turned into data files (RUNDIR/plots/) and pictures
 * drawn by the gnuplot scripts of plots/ (front, per-unit budget profile, convergence), PNG and SVG.
 *
 * Nothing read from a file or given as a path reaches gnuplot as code. gnuplot is started without a shell,
 * in a private directory that this command creates (RUNDIR/plots/.plot-XXXXXX), where the data files and
 * pictures have fixed names; the scripts get datadir='.'. The strings that vars.gp carries (the method, the
 * labels of --with runs) are written as single-quoted gnuplot strings, in which gnuplot substitutes neither
 * backquotes nor macros; quotes are doubled and control characters (a newline would end the command) shown
 * as '?'. Only when every picture is drawn are the files renamed into RUNDIR (a rename replaces a link
 * rather than writing through it). Every count that sizes the output is checked against what the files
 * hold: a depth run's unit count against the levels of front.csv, each dropped sub-block against it. */
#define _GNU_SOURCE
#include "cli/cli.h"
#include "core/fileio.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define PATH_MAX_RUN 1024 /* longest run directory name accepted; every path built from it fits in 1300 */
#define LABEL_MAX 200     /* bytes of a label shown in the key */
#define DISAGREE " (hint: the run directory's files disagree; rerun the search into a new --out)"

/* A bad or unreadable input file: one line, exit 1. */
static int bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int bad(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: error: ", cmd_name);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

/* s with its control characters shown as '?', for one-line messages (a directory name may hold a newline). */
static const char *vis(const char *s, char *buf, size_t n) {
    size_t k = 0;
    for (; s && *s && k + 1 < n; s++) buf[k++] = (unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s;
    buf[k] = 0;
    return buf;
}

/* s as a gnuplot single-quoted string (see the top of the file), at most LABEL_MAX bytes of it, cut at a
 * character boundary. */
static void gp_str(FILE *f, const char *s) {
    size_t n = strlen(s);
    if (n > LABEL_MAX) {
        n = LABEL_MAX;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--; /* not inside a UTF-8 sequence */
    }
    fputc('\'', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\'') fputs("''", f);
        else if (c < 0x20 || c == 0x7f) fputc('?', f);
        else fputc(c, f);
    }
    fputc('\'', f);
}

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

/* The target kinds a run directory can have (search's mode names). */
static int known_kind(const char *kind) {
    static const char *k[] = {"sparsity", "bits", "drop", "problem", "bytes"};
    for (int i = 0; i < 5; i++) if (strcmp(kind, k[i]) == 0) return 1;
    return 0;
}

/* The columns of front.csv named cost, cost_fraction and fitness, row by row: calls fn for each. *n_levels
 * gets the number of levels each row's levels column holds (-1 when there is no such column; rows that
 * disagree are an error). Returns the rows read, or -1 (with an error printed) when the file is missing or
 * malformed. */
static int read_front(const char *path, void (*fn)(void *ctx, double cost, double frac, double fit), void *ctx, long *n_levels) {
    char shown[1400];
    FILE *f = fopen(path, "r");
    if (!f) return -bad("%s: cannot open: %s (hint: is this a run directory?)", vis(path, shown, sizeof shown), strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    int col[4] = {-1, -1, -1, -1}, rows = 0, rc = 0;
    static const char *want[4] = {"cost", "cost_fraction", "fitness", "levels"};
    if (getline(&line, &cap, f) > 0) {
        int c = 0;
        for (char *save, *tok = strtok_r(line, ",\r\n", &save); tok; tok = strtok_r(NULL, ",\r\n", &save), c++)
            for (int k = 0; k < 4; k++) if (strcmp(tok, want[k]) == 0) col[k] = c;
    }
    if (col[0] < 0 || col[1] < 0 || col[2] < 0) rc = bad("%s: the header lacks cost, cost_fraction or fitness (hint: is this a run directory?)", vis(path, shown, sizeof shown));
    *n_levels = -1;
    while (!rc && getline(&line, &cap, f) > 0) {
        if (rows == INT32_MAX - 2) { rc = bad("%s: more rows than a front can have" DISAGREE, vis(path, shown, sizeof shown)); break; }
        double v[3] = {0};
        long nl = -1;
        int c = 0, got = 0;
        for (char *p = line; *p && *p != '\n'; c++) {
            char *end = p + strcspn(p, ",\n");
            for (int k = 0; k < 3; k++) if (c == col[k]) { v[k] = strtod(p, NULL); got++; }
            if (c == col[3]) { /* space-separated level indices */
                nl = 0;
                for (char *q = p; q < end; ) {
                    q += strspn(q, " \r");
                    if (q >= end) break;
                    nl++;
                    q += strcspn(q, " \r,\n");
                }
            }
            p = *end == ',' ? end + 1 : end;
        }
        if (got < 3) { rc = bad("%s: row %d has fewer columns than its header" DISAGREE, vis(path, shown, sizeof shown), rows + 2); break; }
        if (col[3] >= 0) {
            if (nl < 0) { rc = bad("%s: row %d has no levels" DISAGREE, vis(path, shown, sizeof shown), rows + 2); break; }
            if (rows > 0 && nl != *n_levels) { rc = bad("%s: row %d has %ld levels, row 2 has %ld" DISAGREE, vis(path, shown, sizeof shown), rows + 2, nl, *n_levels); break; }
            *n_levels = nl;
        }
        fn(ctx, v[0], v[1], v[2]);
        rows++;
    }
    free(line);
    fclose(f);
    return rc ? -1 : rows;
}

typedef struct front_out { FILE *f; const char *kind; double ratio; } front_out; /* ratio: fraction / cost */

static void write_front_row(void *ctx, double cost, double frac, double fit) {
    front_out *o = ctx;
    if (cost > 0) o->ratio = frac / cost;
    if (o->f) fprintf(o->f, "%.9g %.9g\n", front_x(o->kind, cost, frac), fit);
}

/* One labelled point of the front picture: a line of baselines.dat, its label kept for the key. */
static void add_point(FILE *f, json_t *labels, double x, double y, const char *label) {
    fprintf(f, "%.9g %.9g\n", x, y);
    json_array_append_new(labels, json_string(label));
}

static json_t *load_json(const char *dir, const char *name, int required) {
    char p[1300], shown[1400];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    json_error_t je;
    json_t *j = json_load_file(p, 0, &je);
    if (!j && required) bad("%s: %s (hint: is this a run directory written by 'evobudget search --out'?)", vis(p, shown, sizeof shown), je.text);
    else if (j && !json_is_object(j)) {
        if (required) bad("%s: not a JSON object (hint: is this a run directory written by 'evobudget search --out'?)", vis(p, shown, sizeof shown));
        json_decref(j);
        j = NULL;
    }
    return j;
}

/* Per unit of best.json: its position, kind and budget (sparsity, bits or level); for a depth run, per
 * sub-block 1 when kept, 0 when dropped. Writes tmp/plots/profile.dat (x value kind) and the tick labels.
 * n_levels: the unit count front.csv's rows hold (-1: unknown), which a depth run's manifest must match. */
static int write_profile(const char *dir, const char *tmp, json_t *best, json_t *manifest, long n_levels, FILE *vars) {
    char p[1300], shown[1400];
    snprintf(p, sizeof p, "%s/plots/profile.dat", tmp);
    FILE *f = fopen(p, "w");
    if (!f) return bad("%s: cannot create: %s", vis(p, shown, sizeof shown), strerror(errno));
    vis(dir, shown, sizeof shown);
    const char *kind = json_string_value(json_object_get(best, "target_kind"));
    static const char *kinds[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "attn", "mlp"};
    const int n_kinds = 9;
    int used[9] = {0}, rc = 0;
    long last_block = -1, n_bars = 0, n_blocks = 0;
    const char *ylabel = "level";
    fprintf(vars, "profile_xtics = 'set xtics (");
    if (kind && strcmp(kind, "drop") == 0) {
        json_t *ju = json_object_get(manifest, "units"), *drop = json_object_get(best, "drop");
        json_int_t U = json_integer_value(ju);
        if (!json_is_integer(ju) || U < 2 || U % 2) rc = bad("%s/manifest.json: no even unit count for a depth run" DISAGREE, shown);
        else if (n_levels < 0) rc = bad("%s/front.csv: no levels column to check manifest.json's %lld units against" DISAGREE, shown, (long long)U);
        else if (U != n_levels) rc = bad("%s/manifest.json: %lld units, but front.csv's rows hold %ld levels" DISAGREE, shown, (long long)U, n_levels);
        else if (drop && !json_is_array(drop)) rc = bad("%s/best.json: \"drop\" is not an array" DISAGREE, shown);
        long L = rc ? 0 : (long)(U / 2);
        unsigned char *kept = rc ? NULL : malloc((size_t)U);
        if (!rc && !kept) rc = bad("out of memory for %lld units", (long long)U);
        if (kept) memset(kept, 1, (size_t)U);
        json_t *x;
        size_t i;
        if (kept) json_array_foreach(drop, i, x) {
            json_t *jb = json_object_get(x, "block");
            const char *sub = json_string_value(json_object_get(x, "sub"));
            int k = sub && strcmp(sub, "attn") == 0 ? 0 : sub && strcmp(sub, "mlp") == 0 ? 1 : -1;
            json_int_t b = json_integer_value(jb);
            if (!json_is_integer(jb) || b < 0 || b >= L || k < 0) {
                rc = bad("%s/best.json: drop[%zu] is not a sub-block (\"attn\" or \"mlp\") of a block in [0, %ld)" DISAGREE, shown, i, L);
                break;
            }
            kept[b * 2 + k] = 0;
        }
        for (long l = 0; !rc && l < L; l++)
            for (int k = 0; k < 2; k++) {
                fprintf(f, "%ld %d %d\n", l * 3 + k, kept[l * 2 + k], 7 + k);
                used[7 + k] = 1;
            }
        free(kept);
        for (long l = 0; !rc && l < L; l++) fprintf(vars, "%s\"%ld\" %g", l ? ", " : "", l, l * 3 + 0.5);
        n_blocks = L;
        ylabel = "kept (1) or dropped (0)";
    } else {
        json_t *x, *units = json_object_get(best, "units");
        size_t i;
        if (!json_is_array(units)) rc = bad("%s/best.json: \"units\" is not an array" DISAGREE, shown);
        json_array_foreach(units, i, x) {
            const char *name = json_string_value(json_object_get(x, "name"));
            long block = -1;
            int k = -1;
            const char *dot = name ? strrchr(name, '.') : NULL;
            if (name && strncmp(name, "layers.", 7) == 0 && dot) {
                char *end;
                errno = 0;
                block = strtol(name + 7, &end, 10);
                if (errno || end == name + 7 || *end != '.' || block < 0) block = -1;
                else for (int q = 0; q < n_kinds; q++) if (strcmp(dot + 1, kinds[q]) == 0) k = q;
            }
            if (k < 0) { block = (long)i; k = 0; }
            double v = json_number_value(json_object_get(x, "level"));
            if (json_object_get(x, "storage_bits_per_weight")) { v = json_number_value(json_object_get(x, "storage_bits_per_weight")); ylabel = "storage bits per weight"; }
            else if (json_object_get(x, "sparsity")) { v = json_number_value(json_object_get(x, "sparsity")); ylabel = "sparsity"; }
            else if (json_object_get(x, "bits")) { v = json_number_value(json_object_get(x, "bits")); ylabel = "bits"; }
            if (block != last_block) {
                fprintf(vars, "%s\"%ld\" %ld", n_blocks ? ", " : "", block, n_bars + n_blocks + 3);
                n_blocks++;
                last_block = block;
            }
            fprintf(f, "%ld %.9g %d\n", n_bars + n_blocks - 1, v, k); /* a gap of one bar between blocks */
            used[k] = 1;
            n_bars++;
        }
    }
    fprintf(vars, ")'\nprofile_ylabel = ");
    gp_str(vars, ylabel);
    fprintf(vars, "\nkinds = \"");
    for (int q = 0; q < n_kinds; q++) fprintf(vars, "%s%s", q ? " " : "", kinds[q]);
    fprintf(vars, "\"\nkind_ids = \"");
    for (int q = 0, first = 1; q < n_kinds; q++) if (used[q]) { fprintf(vars, "%s%d", first ? "" : " ", q); first = 0; }
    fprintf(vars, "\"\nn_blocks = %ld\n", n_blocks);
    if (fclose(f) && !rc) rc = bad("%s: cannot write: %s", vis(p, shown, sizeof shown), strerror(errno));
    return rc;
}

/* A best.json's point on the front picture: its fitness on all calibration tokens; a run written before
 * best.json held it counts in *own and gives its own fitness (the y label then says so). */
static double point_fitness(json_t *b, int *own) {
    json_t *fa = json_object_get(b, "fitness_all");
    if (json_is_number(fa)) return json_number_value(fa);
    (*own)++;
    return json_number_value(json_object_get(b, "fitness"));
}

/* log.jsonl: generation, evaluations, best fitness, seconds per line, into tmp/plots/convergence.dat.
 * Returns the lines written. */
static int write_convergence(const char *dir, const char *tmp) {
    char p[1300], q[1300];
    snprintf(p, sizeof p, "%s/log.jsonl", dir);
    snprintf(q, sizeof q, "%s/plots/convergence.dat", tmp);
    FILE *in = fopen(p, "r");
    if (!in) return 0;
    FILE *out = fopen(q, "w");
    if (!out) { fclose(in); return 0; }
    char *line = NULL;
    size_t cap = 0;
    int n = 0;
    while (n < INT32_MAX - 1 && getline(&line, &cap, in) > 0) {
        json_t *j = json_loads(line, 0, NULL);
        json_t *g = json_object_get(j, "generation"), *b = json_object_get(j, "best_fitness");
        if (json_is_integer(g) && json_is_number(b)) {
            fprintf(out, "%lld %lld %.12g %.3f\n", (long long)json_integer_value(g), (long long)json_integer_value(json_object_get(j, "evaluations")),
                    json_number_value(b), json_number_value(json_object_get(j, "seconds")));
            n++;
        }
        json_decref(j);
    }
    free(line);
    fclose(in);
    if (fclose(out)) n = 0;
    return n;
}

/* Runs gnuplot on script (an absolute path) in the directory cwd, with datadir='.' and the terminal set;
 * 0 on success. No shell: the arguments go to gnuplot as they are, and none comes from a file. */
static int gnuplot(const char *script, const char *cwd, const char *ext) {
    char expr[64];
    snprintf(expr, sizeof expr, "datadir='.'; ext='%s'", strcmp(ext, "svg") == 0 ? "svg" : "png");
    char *argv[] = {"gnuplot", "-e", expr, (char *)script, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addchdir_np(&fa, cwd);
    pid_t pid;
    int e = posix_spawnp(&pid, "gnuplot", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (e) return bad("cannot run gnuplot: %s (hint: ./setup.sh installs gnuplot-nox)", strerror(e));
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return bad("gnuplot: %s", strerror(errno));
    if (!WIFEXITED(st) || WEXITSTATUS(st)) return bad("gnuplot failed on %s (its message is above)", script);
    return 0;
}

/* Removes the private directory tmp (tmp/plots and the files in both); only this command writes there. */
static void remove_tmp(const char *tmp) {
    char p[1400];
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 0) snprintf(p, sizeof p, "%s/plots", tmp);
        else snprintf(p, sizeof p, "%s", tmp);
        DIR *d = opendir(p);
        struct dirent *de;
        while (d && (de = readdir(d))) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
            char f[1700];
            snprintf(f, sizeof f, "%s/%s", p, de->d_name);
            unlink(f);
        }
        if (d) closedir(d);
        rmdir(p);
    }
}

/* Renames tmp/sub/name to dir/sub/name; 0 or an error printed. */
static int move_in(const char *tmp, const char *dir, const char *sub, const char *name) {
    char a[1400], b[1400], shown[1500];
    snprintf(a, sizeof a, "%s/%s%s", tmp, sub, name);
    snprintf(b, sizeof b, "%s/%s%s", dir, sub, name);
    if (rename(a, b)) return bad("%s: cannot write: %s", vis(b, shown, sizeof shown), strerror(errno));
    return 0;
}

int cmd_plot(int argc, char **argv) {
    opts o = {0};
    int rc = parse_opts(argc, argv, "RUNDIR --with --json", &o);
    const char *dir = o.arg;
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
    char shown[1400];
    if (!dir) return usage_error("plot needs a run directory (hint: evobudget plot RUNDIR)");
    if (strlen(dir) > PATH_MAX_RUN) return usage_error("the run directory's name is longer than %d bytes", PATH_MAX_RUN);
    if (o.with && strlen(o.with) > 64 * PATH_MAX_RUN) return usage_error("--with is longer than %d bytes", 64 * PATH_MAX_RUN);
    if (!is_dir(dir)) return usage_error("%s is not a directory; give a run directory written by 'evobudget search --out'", vis(dir, shown, sizeof shown));
    json_t *best = load_json(dir, "best.json", 1), *manifest = load_json(dir, "manifest.json", 0);
    if (!best) { json_decref(manifest); return 1; }
    json_t *jk = json_object_get(best, "target_kind");
    const char *kind = jk ? json_string_value(jk) : "problem";
    if (!kind || !known_kind(kind)) {
        json_decref(best); json_decref(manifest);
        return bad("%s/best.json: target_kind is none of sparsity, bits, drop, bytes, problem (hint: is this a run directory written by 'evobudget search --out'?)",
                   vis(dir, shown, sizeof shown));
    }
    char p[1300], tmp[1100];
    snprintf(p, sizeof p, "%s/plots", dir);
    if ((mkdir(p, 0755) != 0 && errno != EEXIST) || !is_dir(p)) {
        int e = errno;
        json_decref(best); json_decref(manifest);
        return bad("%s: cannot create the directory: %s", vis(p, shown, sizeof shown), strerror(e));
    }
    snprintf(tmp, sizeof tmp, "%s/plots/.plot-XXXXXX", dir);
    if (!mkdtemp(tmp)) {
        int e = errno;
        json_decref(best); json_decref(manifest);
        return bad("%s: cannot create a directory in it: %s", vis(p, shown, sizeof shown), strerror(e));
    }
    snprintf(p, sizeof p, "%s/plots", tmp);
    if (mkdir(p, 0700)) rc = bad("%s: cannot create: %s", vis(p, shown, sizeof shown), strerror(errno));
    /* front.dat and baselines.dat */
    snprintf(p, sizeof p, "%s/plots/front.dat", tmp);
    front_out fo = {rc ? NULL : fopen(p, "w"), kind, 0};
    if (!rc && !fo.f) rc = bad("%s: cannot create: %s", vis(p, shown, sizeof shown), strerror(errno));
    snprintf(p, sizeof p, "%s/front.csv", dir);
    long n_levels = -1;
    int n_front = rc ? 0 : read_front(p, write_front_row, &fo, &n_levels);
    if (fo.f && fclose(fo.f) && !rc) rc = bad("%s/plots/front.dat: cannot write: %s", vis(tmp, shown, sizeof shown), strerror(errno));
    if (n_front < 0) rc = 1;
    snprintf(p, sizeof p, "%s/plots/baselines.dat", tmp);
    FILE *bf = rc ? NULL : fopen(p, "w");
    if (!rc && !bf) rc = bad("%s: cannot create: %s", vis(p, shown, sizeof shown), strerror(errno));
    int n_base = 0, n_own = 0;
    json_t *labels = json_array();
    char lb[300];
    if (bf) {
        double c = json_number_value(json_object_get(best, "cost"));
        const char *m = json_string_value(json_object_get(best, "method"));
        snprintf(lb, sizeof lb, "%.200s (this run's best)", m ? m : "run");
        add_point(bf, labels, front_x(kind, c, c * fo.ratio), point_fitness(best, &n_own), lb);
    }
    char *with = o.with ? strdup(o.with) : NULL;
    for (char *save, *d = with ? strtok_r(with, ",", &save) : NULL; d && !rc; d = strtok_r(NULL, ",", &save)) {
        if (strlen(d) > PATH_MAX_RUN) { rc = usage_error("--with: a run directory's name is longer than %d bytes", PATH_MAX_RUN); break; }
        json_t *b = load_json(d, "best.json", 1);
        if (!b) { rc = 1; break; }
        const char *k2 = json_string_value(json_object_get(b, "target_kind"));
        /* runs of another kind compare with a joint run (bytes) by their storage */
        int by_storage = k2 && strcmp(k2, kind) && strcmp(kind, "bytes") == 0 && json_is_number(json_object_get(b, "storage_bytes"));
        if (!k2 || (strcmp(k2, kind) && !by_storage)) {
            char s2[1400], k2s[64];
            rc = usage_error("--with %s: a %s run; %s is a %s run", vis(d, s2, sizeof s2), k2 ? vis(k2, k2s, sizeof k2s) : "?", vis(dir, shown, sizeof shown), kind);
        }
        if (!rc && by_storage) {
            const char *m = json_string_value(json_object_get(b, "method"));
            snprintf(lb, sizeof lb, "%.200s (%s only)", m ? m : d, k2);
            add_point(bf, labels, json_number_value(json_object_get(b, "storage_bytes")) * 8 * fo.ratio, point_fitness(b, &n_own), lb);
            n_base++;
            json_decref(b);
            continue;
        }
        /* The other run's own front gives its cost scale. */
        snprintf(p, sizeof p, "%s/front.csv", d);
        front_out scale = {NULL, kind, 0};
        long other_levels;
        if (!rc && read_front(p, write_front_row, &scale, &other_levels) < 0) rc = 1;
        if (!rc) {
            double c = json_number_value(json_object_get(b, "cost"));
            const char *m = json_string_value(json_object_get(b, "method"));
            add_point(bf, labels, front_x(kind, c, c * scale.ratio), point_fitness(b, &n_own), m ? m : d);
            n_base++;
        }
        json_decref(b);
    }
    free(with);
    if (bf && fclose(bf) && !rc) rc = bad("%s/plots/baselines.dat: cannot write: %s", vis(tmp, shown, sizeof shown), strerror(errno));
    /* vars.gp: labels and ticks the scripts load */
    snprintf(p, sizeof p, "%s/plots/vars.gp", tmp);
    FILE *vars = rc ? NULL : fopen(p, "w");
    if (!rc && !vars) rc = bad("%s: cannot create: %s", vis(p, shown, sizeof shown), strerror(errno));
    if (vars) {
        const char *method = json_string_value(json_object_get(best, "method"));
        char title[400];
        snprintf(title, sizeof title, "%.200s, %s target %g", method ? method : "run", kind, json_number_value(json_object_get(best, "target")));
        fprintf(vars, "front_xlabel = ");
        gp_str(vars, front_xlabel(kind));
        fprintf(vars, "\nrun_title = ");
        gp_str(vars, title);
        fprintf(vars, "\nfront_ylabel = ");
        gp_str(vars, n_own ? "fitness as each run measured it (KL per token)" : "points: KL(dense || compressed) per token on all calibration tokens");
        size_t i;
        json_t *x;
        fprintf(vars, "\nn_points = %zu\narray point_labels[%zu] = [", json_array_size(labels), json_array_size(labels));
        json_array_foreach(labels, i, x) {
            if (i) fprintf(vars, ", ");
            gp_str(vars, json_string_value(x));
        }
        fprintf(vars, "]\n");
        rc = write_profile(dir, tmp, best, manifest, n_levels, vars);
        if (fclose(vars) && !rc) rc = bad("%s/plots/vars.gp: cannot write: %s", vis(tmp, shown, sizeof shown), strerror(errno));
    }
    json_decref(labels);
    int n_conv = rc ? 0 : write_convergence(dir, tmp);
    json_t *pics = json_array();
    static const char *scripts[] = {"front", "profile", "convergence"};
    char script[1200], script_abs[PATH_MAX];
    const char *home = getenv("EVB_HOME");
    for (int i = 0; i < 3 && !rc; i++) {
        if (i == 2 && n_conv == 0) { fprintf(stderr, "%s: note: %s has no log.jsonl generations; no convergence picture\n", cmd_name, vis(dir, shown, sizeof shown)); continue; }
        snprintf(script, sizeof script, "%s/plots/%s.gp", home ? home : EVB_SOURCE_DIR, scripts[i]);
        if (!realpath(script, script_abs)) { rc = bad("%s: %s (hint: set EVB_HOME to evobudget's source directory)", vis(script, shown, sizeof shown), strerror(errno)); break; }
        for (int e = 0; e < 2 && !rc; e++) {
            const char *ext = e ? "svg" : "png";
            rc = gnuplot(script_abs, tmp, ext);
            char pic[1400];
            snprintf(pic, sizeof pic, "%s/%s.%s", tmp, scripts[i], ext);
            struct stat sb;
            if (!rc && (stat(pic, &sb) != 0 || sb.st_size == 0)) rc = bad("gnuplot wrote no %s.%s", scripts[i], ext);
        }
    }
    /* every picture is drawn: the files go into RUNDIR */
    static const char *data[] = {"front.dat", "baselines.dat", "profile.dat", "vars.gp", "convergence.dat"};
    for (int i = 0; i < 5 && !rc; i++) if (i < 4 || n_conv > 0) rc = move_in(tmp, dir, "plots/", data[i]);
    for (int i = 0; i < 3 && !rc; i++)
        for (int e = 0; e < 2 && !rc && (i < 2 || n_conv > 0); e++) {
            char name[32], pic[1400];
            snprintf(name, sizeof name, "%s.%s", scripts[i], e ? "svg" : "png");
            rc = move_in(tmp, dir, "", name);
            snprintf(pic, sizeof pic, "%s/%s", dir, name);
            if (!rc) json_array_append_new(pics, json_string(pic));
        }
    remove_tmp(tmp);
    if (!rc) {
        snprintf(p, sizeof p, "%s/front.png", dir);
        if (evb_fsync_parent(p)) rc = fail(EVB_EIO);
    }
    if (!rc && o.json) {
        json_t *j = json_pack("{s:s, s:o, s:i, s:i, s:i}", "run", dir, "pictures", pics, "front_points", n_front, "baselines", n_base, "generations", n_conv);
        rc = j ? print_json(j) : bad("the run directory's name is not UTF-8, which --json cannot hold; the pictures are written");
    } else {
        for (int i = 0; i < 3 && !rc; i++)
            for (int e = 0; e < 2 && (i < 2 || n_conv > 0); e++) printf("wrote %s/%s.%s\n", dir, scripts[i], e ? "svg" : "png");
        json_decref(pics);
    }
    json_decref(best);
    json_decref(manifest);
    return rc;
}
