/* plot.c -- `evobudget plot RUNDIR`: the run's files turned into data files (RUNDIR/plots/) and pictures
 * drawn by the gnuplot scripts of plots/ (front, per-unit budget profile, convergence), PNG and SVG. A
 * sweep's directory (sweep.json, front.csv of one row per target, one run directory per target) gets the
 * sweep's front, and each target's run directory its own pictures.
 *
 * Nothing read from a file or given as a path reaches gnuplot as code. gnuplot is started without a shell,
 * in a private directory that this command creates (RUNDIR/plots/.plot-XXXXXX), where the data files and
 * pictures have fixed names; the scripts get datadir='.'. The strings that vars.gp carries (the method, the
 * labels of --with runs) are written as single-quoted gnuplot strings, in which gnuplot substitutes neither
 * backquotes nor macros; quotes are doubled and control characters (a newline would end the command) shown
 * as '?'. The names of a problem's units reach the profile as data (a double-quoted column of profile.dat
 * read by xticlabels, which gnuplot shows and never runs), with double quotes shown as single ones and
 * backslashes doubled. gnuplot's messages go to plot.log in the private directory, which ends up in
 * RUNDIR/plots/ whether or not the pictures are drawn; a failure shows its last line. Only when every
 * picture is drawn are the files renamed into RUNDIR (a rename replaces a link rather than writing through
 * it). Every count that sizes the output is checked against what the files hold: a depth run's unit count
 * against the levels of front.csv, each dropped sub-block against it. */
#define _GNU_SOURCE
#include "cli/cli.h"
#include "core/fileio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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
#define LABEL_MAX 200     /* bytes of a label shown in the key or under a bar */
#define DISAGREE " (hint: the run directory's files disagree; rerun the search into a new --out)"

/* ---- messages and gnuplot strings ---- */

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

/* How many bytes of s to show: at most LABEL_MAX, cut at a character boundary. */
static size_t label_len(const char *s) {
    size_t n = strlen(s);
    if (n > LABEL_MAX) {
        n = LABEL_MAX;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--; /* not inside a UTF-8 sequence */
    }
    return n;
}

/* s as a gnuplot single-quoted string (see the top of the file). */
static void gp_str(FILE *f, const char *s) {
    size_t n = label_len(s);
    fputc('\'', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\'') fputs("''", f);
        else if (c < 0x20 || c == 0x7f) fputc('?', f);
        else fputc(c, f);
    }
    fputc('\'', f);
}

/* s as a double-quoted column of a gnuplot data file (see the top of the file). */
static void data_str(FILE *f, const char *s) {
    size_t n = label_len(s);
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"') fputc('\'', f);
        else if (c == '\\') fputs("\\\\", f);
        else if (c < 0x20 || c == 0x7f) fputc('?', f);
        else fputc(c, f);
    }
    fputc('"', f);
}

/* ---- the front ---- */

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

/* One row of front.csv: the columns named cost, cost_fraction, fitness and target (0 when absent), and the
 * number of level indices of its levels column (-1 when absent). */
typedef struct front_row { double cost, frac, fit, target; long n_levels; } front_row;

/* The columns front.csv's header names: cost, cost_fraction, fitness, levels, target (-1: absent). */
enum { COL_COST, COL_FRAC, COL_FIT, COL_LEVELS, COL_TARGET, N_COLS };

/* Splits one data line of front.csv into r by the columns col[N_COLS]; returns the columns seen. */
static int parse_front_row(char *line, const int *col, front_row *r) {
    int c = 0, got = 0;
    double *v[3] = {&r->cost, &r->frac, &r->fit};
    r->n_levels = -1;
    r->target = 0;
    for (char *p = line; *p && *p != '\n'; c++) {
        char *end = p + strcspn(p, ",\n");
        for (int k = 0; k < 3; k++) if (c == col[k]) { *v[k] = strtod(p, NULL); got++; }
        if (c == col[COL_TARGET]) r->target = strtod(p, NULL);
        if (c == col[COL_LEVELS]) { /* space-separated level indices */
            r->n_levels = 0;
            for (char *q = p; q < end; ) {
                q += strspn(q, " \r");
                if (q >= end) break;
                r->n_levels++;
                q += strcspn(q, " \r,\n");
            }
        }
        p = *end == ',' ? end + 1 : end;
    }
    return got;
}

/* Reads front.csv's header into col[N_COLS]; 0, or an error printed when cost, cost_fraction or fitness is
 * missing. */
static int read_front_header(FILE *f, const char *path, int *col) {
    static const char *want[N_COLS] = {"cost", "cost_fraction", "fitness", "levels", "target"};
    char shown[1400], *line = NULL;
    size_t cap = 0;
    for (int k = 0; k < N_COLS; k++) col[k] = -1;
    if (getline(&line, &cap, f) > 0) {
        int c = 0;
        for (char *save, *tok = strtok_r(line, ",\r\n", &save); tok; tok = strtok_r(NULL, ",\r\n", &save), c++)
            for (int k = 0; k < N_COLS; k++) if (strcmp(tok, want[k]) == 0) col[k] = c;
    }
    free(line);
    if (col[COL_COST] < 0 || col[COL_FRAC] < 0 || col[COL_FIT] < 0)
        return bad("%s: the header lacks cost, cost_fraction or fitness (hint: is this a run directory?)", vis(path, shown, sizeof shown));
    return 0;
}

/* front.csv row by row: calls fn for each (fn returns non-zero, with an error printed, to stop). *n_levels
 * gets the number of levels each row's levels column holds (-1 when there is no such column; rows that
 * disagree are an error); with n_levels NULL the levels are not read (a --with run's front gives only its
 * cost scale). Returns the rows read, or -1 (with an error printed) when the file is missing or malformed. */
static int read_front(const char *path, int (*fn)(void *ctx, const front_row *r), void *ctx, long *n_levels) {
    char shown[1400];
    FILE *f = fopen(path, "r");
    if (!f) return -bad("%s: cannot open: %s (hint: is this a run directory?)", vis(path, shown, sizeof shown), strerror(errno));
    vis(path, shown, sizeof shown);
    char *line = NULL;
    size_t cap = 0;
    int col[N_COLS], rows = 0, rc = read_front_header(f, path, col);
    if (!n_levels) col[COL_LEVELS] = -1;
    else *n_levels = -1;
    while (!rc && getline(&line, &cap, f) > 0) {
        if (rows == INT32_MAX - 2) { rc = bad("%s: more rows than a front can have" DISAGREE, shown); break; }
        front_row r;
        line[strcspn(line, "\r\n")] = 0;
        if (parse_front_row(line, col, &r) < 3) { rc = bad("%s: row %d has fewer columns than its header" DISAGREE, shown, rows + 2); break; }
        if (col[COL_LEVELS] >= 0) {
            if (r.n_levels < 0) { rc = bad("%s: row %d has no levels" DISAGREE, shown, rows + 2); break; }
            if (rows > 0 && r.n_levels != *n_levels) { rc = bad("%s: row %d has %ld levels, row 2 has %ld" DISAGREE, shown, rows + 2, r.n_levels, *n_levels); break; }
            *n_levels = r.n_levels;
        }
        if ((rc = fn(ctx, &r))) break;
        rows++;
    }
    free(line);
    fclose(f);
    return rc ? -1 : rows;
}

typedef struct front_out { FILE *f; const char *kind; double ratio; } front_out; /* ratio: fraction / cost */

/* A front row into front.dat (x fitness); the ratio of fraction to cost kept for points given by cost. */
static int write_front_row(void *ctx, const front_row *r) {
    front_out *o = ctx;
    if (r->cost > 0) o->ratio = r->frac / r->cost;
    if (o->f) fprintf(o->f, "%.9g %.9g\n", front_x(o->kind, r->cost, r->frac), r->fit);
    return 0;
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

/* A best.json's point on the front picture: its fitness on all calibration tokens; a run written before
 * best.json held it counts in *own and gives its own fitness (the y label then says so). */
static double point_fitness(json_t *b, int *own) {
    json_t *fa = json_object_get(b, "fitness_all");
    if (json_is_number(fa)) return json_number_value(fa);
    (*own)++;
    return json_number_value(json_object_get(b, "fitness"));
}

/* ---- the profile ---- */

static const char *const layer_kinds[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "attn", "mlp"};
#define N_LAYER_KINDS 9

/* What the profile draws: the bars' layer kinds (used[k]: a bar of layer_kinds[k] drawn), the blocks along
 * x, the y label, and whether bars are labelled by unit name instead of grouped by block. */
typedef struct profile_info { int used[N_LAYER_KINDS]; long n_blocks, n_units; const char *ylabel; int by_name; } profile_info;

/* A model run's unit name "layers.N.KIND" into its block N and KIND's index in layer_kinds; 0 when the
 * name is not of that form (a problem file's own name). */
static int parse_unit_name(const char *name, long *block, int *k) {
    const char *dot = name ? strrchr(name, '.') : NULL;
    if (!name || strncmp(name, "layers.", 7) != 0 || !dot) return 0;
    char *end;
    errno = 0;
    *block = strtol(name + 7, &end, 10);
    if (errno || end == name + 7 || *end != '.' || *block < 0) return 0;
    for (int q = 0; q < N_LAYER_KINDS; q++) if (end == dot && strcmp(dot + 1, layer_kinds[q]) == 0) { *k = q; return 1; }
    return 0;
}

/* A unit's bar height: its storage bits per weight, sparsity or bits where best.json gives them, else its
 * level; *ylabel says which. */
static double unit_value(json_t *x, const char **ylabel) {
    static const char *const keys[] = {"storage_bits_per_weight", "sparsity", "bits"};
    static const char *const labels[] = {"storage bits per weight", "sparsity", "bits"};
    for (int i = 0; i < 3; i++)
        if (json_is_number(json_object_get(x, keys[i]))) { *ylabel = labels[i]; return json_number_value(json_object_get(x, keys[i])); }
    return json_number_value(json_object_get(x, "level"));
}

/* A depth run: per sub-block 1 when kept, 0 when dropped, into f (x value kind), ticks per block into vars.
 * manifest's unit count must match n_levels (front.csv's), each dropped sub-block lie inside it. */
static int profile_drop(FILE *f, FILE *vars, json_t *best, json_t *manifest, long n_levels, const char *shown, profile_info *pi) {
    json_t *ju = json_object_get(manifest, "units"), *drop = json_object_get(best, "drop");
    json_int_t U = json_integer_value(ju);
    if (!json_is_integer(ju) || U < 2 || U % 2) return bad("%s/manifest.json: no even unit count for a depth run" DISAGREE, shown);
    if (n_levels < 0) return bad("%s/front.csv: no levels column to check manifest.json's %lld units against" DISAGREE, shown, (long long)U);
    if (U != n_levels) return bad("%s/manifest.json: %lld units, but front.csv's rows hold %ld levels" DISAGREE, shown, (long long)U, n_levels);
    if (drop && !json_is_array(drop)) return bad("%s/best.json: \"drop\" is not an array" DISAGREE, shown);
    long L = (long)(U / 2);
    unsigned char *kept = malloc((size_t)U);
    if (!kept) return bad("out of memory for %lld units", (long long)U);
    memset(kept, 1, (size_t)U);
    json_t *x;
    size_t i;
    int rc = 0;
    json_array_foreach(drop, i, x) {
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
            pi->used[7 + k] = 1;
        }
    free(kept);
    for (long l = 0; !rc && l < L; l++) fprintf(vars, "%s\"%ld\" %g", l ? ", " : "", l, l * 3 + 0.5);
    pi->n_blocks = L;
    pi->n_units = 2 * L;
    pi->ylabel = "kept (1) or dropped (0)";
    return rc;
}

/* A model run's linear layers ("layers.N.KIND" each): one bar per unit, a gap between blocks, coloured by
 * kind; block ticks into vars. */
static void profile_blocks(FILE *f, FILE *vars, json_t *units, profile_info *pi) {
    long last_block = -1, n_bars = 0;
    json_t *x;
    size_t i;
    json_array_foreach(units, i, x) {
        long block = 0;
        int k = 0;
        parse_unit_name(json_string_value(json_object_get(x, "name")), &block, &k);
        double v = unit_value(x, &pi->ylabel);
        if (block != last_block) {
            fprintf(vars, "%s\"%ld\" %ld", pi->n_blocks ? ", " : "", block, n_bars + pi->n_blocks + 3);
            pi->n_blocks++;
            last_block = block;
        }
        fprintf(f, "%ld %.9g %d\n", n_bars + pi->n_blocks - 1, v, k); /* a gap of one bar between blocks */
        pi->used[k] = 1;
        n_bars++;
    }
    pi->n_units = n_bars;
}

/* A problem's units (or any run whose units are not all "layers.N.KIND"): one bar per unit in file order,
 * each labelled with the unit's own name ("unit I" when it has none). */
static void profile_names(FILE *f, json_t *units, profile_info *pi) {
    json_t *x;
    size_t i;
    pi->by_name = 1;
    json_array_foreach(units, i, x) {
        const char *name = json_string_value(json_object_get(x, "name"));
        char own[40];
        if (!name || !*name) { snprintf(own, sizeof own, "unit %zu", i); name = own; }
        double v = unit_value(x, &pi->ylabel);
        fprintf(f, "%zu %.9g 0 ", i, v);
        data_str(f, name);
        fputc('\n', f);
        pi->n_units++;
    }
}

/* The vars.gp lines of the profile: ticks (already begun), y label, kinds drawn, layout. */
static void profile_vars(FILE *vars, const profile_info *pi) {
    fprintf(vars, ")'\nprofile_ylabel = ");
    gp_str(vars, pi->ylabel);
    fprintf(vars, "\nkinds = \"");
    for (int q = 0; q < N_LAYER_KINDS; q++) fprintf(vars, "%s%s", q ? " " : "", layer_kinds[q]);
    fprintf(vars, "\"\nkind_ids = \"");
    for (int q = 0, first = 1; q < N_LAYER_KINDS; q++) if (pi->used[q]) { fprintf(vars, "%s%d", first ? "" : " ", q); first = 0; }
    fprintf(vars, "\"\nn_blocks = %ld\nn_units = %ld\nprofile_by_name = %d\n", pi->n_blocks, pi->n_units, pi->by_name);
    /* a label under every bar up to 48 of them, then under every k-th */
    fprintf(vars, "name_step = %ld\n", pi->n_units > 48 ? (pi->n_units + 47) / 48 : 1);
}

/* Per unit of best.json its bar (sparsity, bits or level; for a depth run, per sub-block 1 when kept, 0 when
 * dropped) into tmp/plots/profile.dat (position value kind, and the unit's name when
 * bars are labelled by name), the ticks and labels into vars. n_levels:
 * the unit count front.csv's rows hold (-1: unknown), which a depth run's manifest must match. */
static int write_profile(const char *dir, const char *tmp, json_t *best, json_t *manifest, long n_levels, FILE *vars) {
    char p[1300], shown[1400];
    snprintf(p, sizeof p, "%s/plots/profile.dat", tmp);
    FILE *f = fopen(p, "w");
    if (!f) return bad("%s: cannot create: %s", vis(p, shown, sizeof shown), strerror(errno));
    vis(dir, shown, sizeof shown);
    const char *kind = json_string_value(json_object_get(best, "target_kind"));
    profile_info pi = {.ylabel = "level"};
    int rc = 0;
    fprintf(vars, "profile_xtics = 'set xtics (");
    if (kind && strcmp(kind, "drop") == 0) rc = profile_drop(f, vars, best, manifest, n_levels, shown, &pi);
    else {
        json_t *x, *units = json_object_get(best, "units");
        size_t i;
        int named = kind && strcmp(kind, "problem") == 0;
        if (!json_is_array(units)) rc = bad("%s/best.json: \"units\" is not an array" DISAGREE, shown);
        json_array_foreach(units, i, x) {
            long b;
            int k;
            if (!parse_unit_name(json_string_value(json_object_get(x, "name")), &b, &k)) named = 1;
        }
        if (!rc && named) profile_names(f, units, &pi);
        else if (!rc) profile_blocks(f, vars, units, &pi);
    }
    profile_vars(vars, &pi);
    if (fclose(f) && !rc) rc = bad("%s: cannot write: %s", vis(p, shown, sizeof shown), strerror(errno));
    return rc;
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

/* ---- the private directory, gnuplot, and the files moved into RUNDIR ---- */

/* A list of strings, each malloc'd, owned by the list (paths of pictures, run directories of a sweep). */
typedef struct str_list { char **v; int n, cap; } str_list;

static int list_add(str_list *l, const char *s) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        char **v = realloc(l->v, sizeof *v * (size_t)cap);
        if (!v) return bad("out of memory");
        l->v = v;
        l->cap = cap;
    }
    if (!(l->v[l->n] = strdup(s))) return bad("out of memory");
    l->n++;
    return 0;
}

static void list_free(str_list *l) {
    for (int i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
}

/* One directory being drawn. */
typedef struct plot_job {
    const char *dir;  /* the run directory as given */
    char shown[1400]; /* dir with control characters as '?', for messages */
    char tmp[1100];   /* dir/plots/.plot-XXXXXX, private to this command; "" when not made */
} plot_job;

/* Makes dir/plots (when missing), the private directory in it and that directory's plots/. */
static int job_open(plot_job *j, const char *dir) {
    char p[1300];
    j->dir = dir;
    j->tmp[0] = 0;
    vis(dir, j->shown, sizeof j->shown);
    snprintf(p, sizeof p, "%s/plots", dir);
    int made = mkdir(p, 0755) == 0 || errno == EEXIST, e = errno;
    if (!made || !is_dir(p)) return bad("%s/plots: cannot create the directory: %s", j->shown, strerror(made ? ENOTDIR : e));
    snprintf(j->tmp, sizeof j->tmp, "%s/plots/.plot-XXXXXX", dir);
    if (!mkdtemp(j->tmp)) {
        e = errno;
        j->tmp[0] = 0;
        return bad("%s/plots: cannot create a directory in it: %s", j->shown, strerror(e));
    }
    snprintf(p, sizeof p, "%s/plots", j->tmp);
    if (mkdir(p, 0700)) return bad("%s/plots/%s/plots: cannot create: %s", j->shown, strrchr(j->tmp, '/') + 1, strerror(errno));
    return 0;
}

/* Opens tmp/plots/name for writing; NULL with an error printed. */
static FILE *job_file(const plot_job *j, const char *name) {
    char p[1300];
    snprintf(p, sizeof p, "%s/plots/%s", j->tmp, name);
    FILE *f = fopen(p, "w");
    if (!f) bad("%s/plots/%s: cannot create: %s", j->shown, name, strerror(errno));
    return f;
}

/* Closes a file of job_file; rc, or an error when it was 0 and the file could not be written. */
static int job_close_file(const plot_job *j, FILE *f, const char *name, int rc) {
    if (f && fclose(f) && !rc) rc = bad("%s/plots/%s: cannot write: %s", j->shown, name, strerror(errno));
    return rc;
}

/* Renames tmp/sub/name to dir/sub/name; 0 or an error printed. */
static int move_in(const plot_job *j, const char *sub, const char *name) {
    char a[1400], b[1400];
    snprintf(a, sizeof a, "%s/%s%s", j->tmp, sub, name);
    snprintf(b, sizeof b, "%s/%s%s", j->dir, sub, name);
    if (rename(a, b)) return bad("%s/%s%s: cannot write: %s", j->shown, sub, name, strerror(errno));
    return 0;
}

/* Keeps gnuplot's messages (tmp/plots/plot.log into dir/plots/), then removes the private directory
 * (tmp/plots and the files in both; only this command writes there). Returns rc, or an error when rc was 0
 * and the log could not be kept. */
static int job_close(plot_job *j, int rc) {
    if (!j->tmp[0]) return rc;
    char p[1400], q[1400];
    snprintf(p, sizeof p, "%s/plots/plot.log", j->tmp);
    snprintf(q, sizeof q, "%s/plots/plot.log", j->dir);
    if (access(p, F_OK) == 0 && rename(p, q) && !rc) rc = bad("%s/plots/plot.log: cannot write: %s", j->shown, strerror(errno));
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 0) snprintf(p, sizeof p, "%s/plots", j->tmp);
        else snprintf(p, sizeof p, "%s", j->tmp);
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
    j->tmp[0] = 0;
    return rc;
}

/* The last line of file that is not blank, into buf[n] (control characters as '?'); "" when none. */
static void last_line(const char *file, char *buf, size_t n) {
    char line[LABEL_MAX + 1] = "", *l = NULL;
    size_t cap = 0;
    FILE *f = fopen(file, "r");
    while (f && getline(&l, &cap, f) > 0) {
        l[strcspn(l, "\r\n")] = 0;
        if (l[strspn(l, " \t")]) snprintf(line, sizeof line, "%s", l + strspn(l, " \t"));
    }
    free(l);
    if (f) fclose(f);
    vis(line, buf, n);
}

/* Runs gnuplot on script (an absolute path; name is its short name) in the private directory, with
 * datadir='.' and the terminal set, its stdout and stderr appended to plots/plot.log there; 0 on success. No
 * shell: the arguments go to gnuplot as they are, and none comes from a file. */
static int gnuplot(const plot_job *j, const char *script, const char *name, const char *ext) {
    char expr[64], log[1300];
    snprintf(expr, sizeof expr, "datadir='.'; ext='%s'", strcmp(ext, "svg") == 0 ? "svg" : "png");
    snprintf(log, sizeof log, "%s/plots/plot.log", j->tmp);
    FILE *lf = fopen(log, "a");
    if (lf) { fprintf(lf, "# %s.gp, %s\n", name, ext); fclose(lf); }
    char *argv[] = {"gnuplot", "-e", expr, (char *)script, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addchdir_np(&fa, j->tmp);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "plots/plot.log", O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 2, 1);
    pid_t pid;
    int e = posix_spawnp(&pid, "gnuplot", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (e) return bad("cannot run gnuplot: %s (hint: ./setup.sh installs gnuplot-nox)", strerror(e));
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return bad("gnuplot: %s", strerror(errno));
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return 0;
    char last[LABEL_MAX + 1], how[40];
    last_line(log, last, sizeof last);
    if (WIFEXITED(st)) snprintf(how, sizeof how, "exit status %d", WEXITSTATUS(st));
    else snprintf(how, sizeof how, "signal %d", WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    return bad("gnuplot failed on %s.gp (%s): %s (hint: its messages are in %s/plots/plot.log)", name, how, last[0] ? last : "no message", j->shown);
}

/* Draws scripts[n] (names of the scripts in plots/, without .gp; NULL entries skipped) as PNG and SVG in the
 * private directory. */
static int draw(const plot_job *j, const char *const *scripts, int n) {
    char script[1200], script_abs[PATH_MAX], shown[1400];
    const char *home = getenv("EVB_HOME");
    for (int i = 0; i < n; i++) {
        if (!scripts[i]) continue;
        snprintf(script, sizeof script, "%s/plots/%s.gp", home ? home : EVB_SOURCE_DIR, scripts[i]);
        if (!realpath(script, script_abs)) return bad("%s: %s (hint: set EVB_HOME to evobudget's source directory)", vis(script, shown, sizeof shown), strerror(errno));
        for (int e = 0; e < 2; e++) {
            const char *ext = e ? "svg" : "png";
            int rc = gnuplot(j, script_abs, scripts[i], ext);
            if (rc) return rc;
            char pic[1400];
            snprintf(pic, sizeof pic, "%s/%s.%s", j->tmp, scripts[i], ext);
            struct stat sb;
            if (stat(pic, &sb) != 0 || sb.st_size == 0) return bad("gnuplot wrote no %s.%s", scripts[i], ext);
        }
    }
    return 0;
}

/* Every picture is drawn: data[n_data] go into dir/plots/, the pictures of scripts[n] into dir (NULL entries
 * skipped), each picture's path added to pics. */
static int publish(const plot_job *j, const char *const *data, int n_data, const char *const *scripts, int n, str_list *pics) {
    int rc = 0;
    for (int i = 0; i < n_data && !rc; i++) if (data[i]) rc = move_in(j, "plots/", data[i]);
    for (int i = 0; i < n && !rc; i++)
        for (int e = 0; e < 2 && !rc && scripts[i]; e++) {
            char name[64], pic[1400];
            snprintf(name, sizeof name, "%s.%s", scripts[i], e ? "svg" : "png");
            rc = move_in(j, "", name);
            snprintf(pic, sizeof pic, "%s/%s", j->dir, name);
            if (!rc) rc = list_add(pics, pic);
        }
    if (!rc) {
        char p[1400];
        snprintf(p, sizeof p, "%s/plots/vars.gp", j->dir);
        if (evb_fsync_parent(p)) rc = fail(EVB_EIO);
        snprintf(p, sizeof p, "%s/front.png", j->dir);
        if (!rc && evb_fsync_parent(p)) rc = fail(EVB_EIO);
    }
    return rc;
}

/* ---- one run directory ---- */

/* What a plot drew, for its report: the pictures' paths and the counts --json gives. */
typedef struct plot_sum { str_list pics; int n_front, n_base, n_conv, n_targets; } plot_sum;

/* One --with run d as a labelled point of bf (its best.json at x by its own front's cost scale; a run of
 * another kind against a joint run by its storage, with ratio the joint run's fraction per cost). */
static int add_with_one(FILE *bf, json_t *labels, const char *d, const char *dir_shown, const char *kind, double ratio, int *n_own) {
    char lb[300], p[1300];
    if (strlen(d) > PATH_MAX_RUN) return usage_error("--with: a run directory's name is longer than %d bytes", PATH_MAX_RUN);
    json_t *b = load_json(d, "best.json", 1);
    if (!b) return 1;
    const char *k2 = json_string_value(json_object_get(b, "target_kind")), *m = json_string_value(json_object_get(b, "method"));
    /* runs of another kind compare with a joint run (bytes) by their storage */
    int by_storage = k2 && strcmp(k2, kind) && strcmp(kind, "bytes") == 0 && json_is_number(json_object_get(b, "storage_bytes"));
    int rc = 0;
    if (!k2 || (strcmp(k2, kind) && !by_storage)) {
        char s2[1400], k2s[64];
        rc = usage_error("--with %s: a %s run; %s is a %s run", vis(d, s2, sizeof s2), k2 ? vis(k2, k2s, sizeof k2s) : "?", dir_shown, kind);
    } else if (by_storage) {
        snprintf(lb, sizeof lb, "%.200s (%s only)", m ? m : d, k2);
        add_point(bf, labels, json_number_value(json_object_get(b, "storage_bytes")) * 8 * ratio, point_fitness(b, n_own), lb);
    } else { /* the other run's own front gives its cost scale */
        snprintf(p, sizeof p, "%s/front.csv", d);
        front_out scale = {NULL, kind, 0};
        if (read_front(p, write_front_row, &scale, NULL) < 0) rc = 1;
        double c = json_number_value(json_object_get(b, "cost"));
        if (!rc) add_point(bf, labels, front_x(kind, c, c * scale.ratio), point_fitness(b, n_own), m ? m : d);
    }
    json_decref(b);
    return rc;
}

/* The --with runs (a comma-separated list) as labelled points of bf; *n_base counts them. */
static int add_with(FILE *bf, json_t *labels, const char *with, const char *dir_shown, const char *kind, double ratio, int *n_own, int *n_base) {
    char *w = with ? strdup(with) : NULL;
    if (with && !w) return bad("out of memory");
    int rc = 0;
    for (char *save, *d = w ? strtok_r(w, ",", &save) : NULL; d && !rc; d = strtok_r(NULL, ",", &save)) {
        rc = add_with_one(bf, labels, d, dir_shown, kind, ratio, n_own);
        if (!rc) (*n_base)++;
    }
    free(w);
    return rc;
}

/* front.dat (RUNDIR/front.csv) and baselines.dat (this run's best, then the --with runs). */
static int run_points(const plot_job *j, json_t *best, const char *kind, const char *with, json_t *labels, int *n_own, long *n_levels, plot_sum *s) {
    char p[1300], lb[300];
    front_out fo = {job_file(j, "front.dat"), kind, 0};
    if (!fo.f) return 1;
    snprintf(p, sizeof p, "%s/front.csv", j->dir);
    s->n_front = read_front(p, write_front_row, &fo, n_levels);
    int rc = job_close_file(j, fo.f, "front.dat", s->n_front < 0);
    FILE *bf = rc ? NULL : job_file(j, "baselines.dat");
    if (rc || !bf) return 1;
    double c = json_number_value(json_object_get(best, "cost"));
    const char *m = json_string_value(json_object_get(best, "method"));
    snprintf(lb, sizeof lb, "%.200s (this run's best)", m ? m : "run");
    add_point(bf, labels, front_x(kind, c, c * fo.ratio), point_fitness(best, n_own), lb);
    rc = add_with(bf, labels, with, j->shown, kind, fo.ratio, n_own, &s->n_base);
    return job_close_file(j, bf, "baselines.dat", rc);
}

/* The lines of vars.gp that front.gp reads: axis labels, title, the front's key entry, point labels. */
static void front_vars(FILE *vars, const char *kind, const char *title, const char *front_key, int by_target, int n_own, json_t *labels, int n_front) {
    fprintf(vars, "front_xlabel = ");
    gp_str(vars, front_xlabel(kind));
    fprintf(vars, "\nrun_title = ");
    gp_str(vars, title);
    fprintf(vars, "\nfront_ylabel = ");
    gp_str(vars, strcmp(kind, "problem") == 0 ? "fitness (lower is better)"
                 : n_own ? "fitness as each run measured it (KL per token)"
                 : by_target ? "KL(dense || compressed) per token on all calibration tokens"
                             : "points: KL(dense || compressed) per token on all calibration tokens");
    fprintf(vars, "\nfront_key = ");
    gp_str(vars, front_key);
    size_t i, n = json_array_size(labels);
    json_t *x;
    fprintf(vars, "\nfront_targets = %d\nn_front = %d\nn_points = %zu\narray point_labels[%zu] = [", by_target, n_front, n, n ? n : 1);
    json_array_foreach(labels, i, x) {
        if (i) fprintf(vars, ", ");
        gp_str(vars, json_string_value(x));
    }
    fprintf(vars, "%s]\n", n ? "" : "''");
}

/* vars.gp of a run: the front's lines and the profile's. */
static int run_vars(const plot_job *j, json_t *best, json_t *manifest, const char *kind, json_t *labels, int n_own, long n_levels, int n_front) {
    FILE *vars = job_file(j, "vars.gp");
    if (!vars) return 1;
    const char *method = json_string_value(json_object_get(best, "method"));
    char title[400];
    if (strcmp(kind, "problem") == 0)
        snprintf(title, sizeof title, "%.200s on a problem file, budget %g", method ? method : "run", json_number_value(json_object_get(best, "budget")));
    else snprintf(title, sizeof title, "%.200s, %s target %g", method ? method : "run", kind, json_number_value(json_object_get(best, "target")));
    front_vars(vars, kind, title, "front of the run (the search's own fitness)", 0, n_own, labels, n_front);
    int rc = write_profile(j->dir, j->tmp, best, manifest, n_levels, vars);
    return job_close_file(j, vars, "vars.gp", rc);
}

/* A run directory: front, profile and convergence pictures (the last when log.jsonl has generations). */
static int plot_run(const char *dir, const char *with, plot_sum *s) {
    char shown[1400];
    json_t *best = load_json(dir, "best.json", 1), *manifest = load_json(dir, "manifest.json", 0);
    if (!best) { json_decref(manifest); return 1; }
    json_t *jk = json_object_get(best, "target_kind");
    const char *kind = jk ? json_string_value(jk) : "problem";
    if (!kind || !known_kind(kind)) {
        json_decref(best); json_decref(manifest);
        return bad("%s/best.json: target_kind is none of sparsity, bits, drop, bytes, problem (hint: is this a run directory written by 'evobudget search --out'?)",
                   vis(dir, shown, sizeof shown));
    }
    plot_job j;
    json_t *labels = json_array();
    int n_own = 0, rc = job_open(&j, dir);
    long n_levels = -1;
    if (!rc) rc = run_points(&j, best, kind, with, labels, &n_own, &n_levels, s);
    if (!rc) rc = run_vars(&j, best, manifest, kind, labels, n_own, n_levels, s->n_front);
    s->n_conv = rc ? 0 : write_convergence(dir, j.tmp);
    if (!rc && s->n_conv == 0) fprintf(stderr, "%s: note: %s has no log.jsonl generations; no convergence picture\n", cmd_name, j.shown);
    const char *scripts[] = {"front", "profile", s->n_conv ? "convergence" : NULL};
    const char *data[] = {"front.dat", "baselines.dat", "profile.dat", "vars.gp", s->n_conv ? "convergence.dat" : NULL};
    if (!rc) rc = draw(&j, scripts, 3);
    if (!rc) rc = publish(&j, data, 5, scripts, 3, &s->pics);
    rc = job_close(&j, rc);
    json_decref(labels);
    json_decref(best);
    json_decref(manifest);
    return rc;
}

/* ---- a sweep's directory ---- */

/* The sweep's front.dat (x, KL on all calibration tokens, target) and its targets' run directories. */
typedef struct sweep_out { FILE *f; const char *kind; double ratio; str_list runs; } sweep_out;

/* One row of a sweep's front.csv: its point. */
static int write_sweep_row(void *ctx, const front_row *r) {
    sweep_out *o = ctx;
    if (r->cost > 0) o->ratio = r->frac / r->cost;
    fprintf(o->f, "%.9g %.9g %.9g\n", front_x(o->kind, r->cost, r->frac), r->fit, r->target);
    return 0;
}

/* The targets' run directories, in sweep.json's order: each the directory in the sweep's directory named as
 * the last directory of the target's "best" (the path as search wrote it, from its own working directory,
 * so only that name is taken). */
static int sweep_runs(const plot_job *j, json_t *sweep, str_list *runs) {
    json_t *x, *list = json_object_get(sweep, "runs");
    size_t i;
    if (!json_is_array(list)) return bad("%s/sweep.json: \"runs\" is not an array" DISAGREE, j->shown);
    json_array_foreach(list, i, x) {
        const char *b = json_string_value(json_object_get(x, "best")), *end = b ? b + strlen(b) : NULL, *name = b;
        if (end && end - b >= 10 && strcmp(end - 10, "/best.json") == 0) end -= 10;
        else b = NULL;
        for (const char *q = b; q && q < end; q++) if (*q == '/') name = q + 1;
        int len = b ? (int)(end - name) : 0, rc;
        char sub[1400], raw[300], shown[300];
        if (!b || len == 0 || len > 255 || (len == 1 && name[0] == '.') || (len == 2 && !strncmp(name, "..", 2)))
            return bad("%s/sweep.json: runs[%zu] has no \"best\" naming DIR/best.json" DISAGREE, j->shown, i);
        snprintf(sub, sizeof sub, "%s/%.*s", j->dir, len, name);
        snprintf(raw, sizeof raw, "%.*s", len, name);
        if (!is_dir(sub)) return bad("%s/%s: the run directory of sweep.json's runs[%zu] is missing" DISAGREE, j->shown, vis(raw, shown, sizeof shown), i);
        if ((rc = list_add(runs, sub))) return rc;
    }
    return 0;
}

/* front.dat from the sweep's front.csv (a row per run of o), baselines.dat from the --with runs. */
static int sweep_points(const plot_job *j, sweep_out *o, const char *with, json_t *labels, int *n_own, plot_sum *s) {
    char p[1300];
    if (!(o->f = job_file(j, "front.dat"))) return 1;
    snprintf(p, sizeof p, "%s/front.csv", j->dir);
    s->n_front = s->n_targets = read_front(p, write_sweep_row, o, NULL);
    int rc = job_close_file(j, o->f, "front.dat", s->n_front < 0);
    if (!rc && s->n_front == 0) rc = bad("%s/front.csv: no targets" DISAGREE, j->shown);
    if (!rc && s->n_front != o->runs.n) rc = bad("%s/front.csv: %d targets, sweep.json %d" DISAGREE, j->shown, s->n_front, o->runs.n);
    FILE *bf = rc ? NULL : job_file(j, "baselines.dat");
    if (rc || !bf) return 1;
    rc = add_with(bf, labels, with, j->shown, o->kind, o->ratio, n_own, &s->n_base);
    return job_close_file(j, bf, "baselines.dat", rc);
}

/* A sweep: its front (front.csv: one point per target, KL on all calibration tokens) into dir, then every
 * target's run directory as a run of its own. */
static int plot_sweep(const char *dir, json_t *sweep, const char *with, plot_sum *s) {
    char shown[1400], title[400];
    const char *kind = json_string_value(json_object_get(sweep, "target_kind")), *method = json_string_value(json_object_get(sweep, "method"));
    if (!kind || !known_kind(kind))
        return bad("%s/sweep.json: target_kind is none of sparsity, bits, drop, bytes, problem (hint: is this a sweep written by 'evobudget search --out'?)", vis(dir, shown, sizeof shown));
    plot_job j;
    sweep_out o = {NULL, kind, 0, {0}};
    json_t *labels = json_array();
    int n_own = 0, rc = job_open(&j, dir);
    if (!rc) rc = sweep_runs(&j, sweep, &o.runs);
    if (!rc) rc = sweep_points(&j, &o, with, labels, &n_own, s);
    FILE *vars = rc ? NULL : job_file(&j, "vars.gp");
    if (!rc && !vars) rc = 1;
    if (vars) {
        snprintf(title, sizeof title, "%.200s sweep over %d %s targets", method ? method : "search", s->n_targets, kind);
        front_vars(vars, kind, title, "the sweep: each target's best, labelled with the target", 1, n_own, labels, s->n_front);
        rc = job_close_file(&j, vars, "vars.gp", 0);
    }
    const char *scripts[] = {"front"}, *data[] = {"front.dat", "baselines.dat", "vars.gp"};
    if (!rc) rc = draw(&j, scripts, 1);
    if (!rc) rc = publish(&j, data, 3, scripts, 1, &s->pics);
    rc = job_close(&j, rc);
    json_decref(labels);
    for (int i = 0; i < o.runs.n && !rc; i++) {
        plot_sum one = {{0}, 0, 0, 0, 0};
        rc = plot_run(o.runs.v[i], NULL, &one);
        for (int k = 0; k < one.pics.n && !rc; k++) rc = list_add(&s->pics, one.pics.v[k]);
        s->n_conv += one.n_conv;
        list_free(&one.pics);
    }
    list_free(&o.runs);
    return rc;
}

/* ---- the command ---- */

/* The report: "wrote PATH" per picture (after a line on what a sweep's pictures are), or with --json one
 * object. */
static int report(const char *dir, int is_sweep, const char *kind, const plot_sum *s, int as_json) {
    if (!as_json) {
        char shown[1400];
        if (is_sweep)
            printf("%s: a sweep over %d %s targets: its front in front.png (each target's best, KL on all calibration tokens); "
                   "each target's front, profile and convergence in its own run directory\n", vis(dir, shown, sizeof shown), s->n_targets, kind);
        for (int i = 0; i < s->pics.n; i++) printf("wrote %s\n", s->pics.v[i]);
        return 0;
    }
    json_t *pics = json_array();
    int ok = 1;
    for (int i = 0; i < s->pics.n; i++) ok &= json_array_append_new(pics, json_string(s->pics.v[i])) == 0;
    json_t *j = ok ? json_pack("{s:s, s:b, s:o, s:i, s:i, s:i}", "run", dir, "sweep", is_sweep, "pictures", pics, "front_points", s->n_front,
                               "baselines", s->n_base, "generations", s->n_conv)
                   : (json_decref(pics), NULL);
    if (j && is_sweep) json_object_set_new(j, "targets", json_integer(s->n_targets));
    return j ? print_json(j) : bad("the run directory's name is not UTF-8, which --json cannot hold; the pictures are written");
}

int cmd_plot(int argc, char **argv) {
    opts o = {0};
    int rc = parse_opts(argc, argv, "RUNDIR --with --json", &o);
    const char *dir = o.arg;
    if (rc || o.help) {
        if (o.help) printf("usage: evobudget plot RUNDIR [--with RUNDIR[,RUNDIR...]] [--json]\n"
                           "  Draws a run directory into RUNDIR: front.png/.svg (front.csv; with --with, the best.json of other\n"
                           "  runs, e.g. the baselines at the same target, as labelled points), profile.png/.svg (best.json: one\n"
                           "  bar per unit, grouped by block and coloured by layer type, or labelled with the unit's name for a\n"
                           "  problem file) and convergence.png/.svg (log.jsonl: best fitness against generation and against\n"
                           "  evaluations). The data files and gnuplot's messages (plot.log) are left in RUNDIR/plots/.\n"
                           "  A sweep's directory (search with a list of targets) gets the sweep's front.png/.svg (one point per\n"
                           "  target, KL on all calibration tokens), and each target's run directory its own three pictures.\n"
                           "  Needs gnuplot (./setup.sh installs gnuplot-nox).\n"
                           "  --json   one JSON object on stdout: the pictures written\n");
        return rc;
    }
    char shown[1400], p[1300];
    if (!dir) return usage_error("plot needs a run directory (hint: evobudget plot RUNDIR)");
    if (strlen(dir) > PATH_MAX_RUN) return usage_error("the run directory's name is longer than %d bytes", PATH_MAX_RUN);
    if (o.with && strlen(o.with) > 64 * PATH_MAX_RUN) return usage_error("--with is longer than %d bytes", 64 * PATH_MAX_RUN);
    if (!is_dir(dir)) return usage_error("%s is not a directory; give a run directory written by 'evobudget search --out'", vis(dir, shown, sizeof shown));
    /* a sweep's directory holds sweep.json and no best.json */
    snprintf(p, sizeof p, "%s/best.json", dir);
    json_t *sweep = access(p, F_OK) == 0 ? NULL : load_json(dir, "sweep.json", 0);
    const char *kind = json_string_value(json_object_get(sweep, "target_kind"));
    int is_sweep = sweep && json_is_string(json_object_get(sweep, "kind")) && strcmp(json_string_value(json_object_get(sweep, "kind")), "sweep") == 0;
    plot_sum s = {{0}, 0, 0, 0, 0};
    rc = is_sweep ? plot_sweep(dir, sweep, o.with, &s) : plot_run(dir, o.with, &s);
    if (!rc) rc = report(dir, is_sweep, kind ? kind : "", &s, o.json);
    list_free(&s.pics);
    json_decref(sweep);
    return rc;
}
