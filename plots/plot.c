/* plot.c -- run directories turned into pictures (plots/plot.h): the run's files turned into data files
 * (RUNDIR/plots/) and pictures drawn by the gnuplot scripts of plots/ (front, per-unit budget profile,
 * convergence), PNG and SVG. A sweep's directory (sweep.json, front.csv of one row per target, one run
 * directory per target) gets the sweep's front, with the held-out KL of the search's allocations and of the
 * uniform ones where front.csv has them, and each target's run directory its own pictures.
 *
 * Nothing read from a file or given as a path reaches gnuplot as code. gnuplot is started without a shell,
 * in a private directory that this file creates (RUNDIR/plots/.plot-XXXXXX), where the data files and
 * pictures have fixed names; the scripts get datadir='.'. The strings that vars.gp carries (the method, the
 * labels of --with runs) are written as single-quoted gnuplot strings, in which gnuplot substitutes neither
 * backquotes nor macros; quotes are doubled and control characters (a newline would end the command) shown
 * as '?'. The names of a problem's units reach the profile as data (a double-quoted column of profile.dat
 * read by xticlabels, which gnuplot shows and never runs), with double quotes shown as single ones and
 * backslashes doubled. gnuplot's messages go to plot.log in the private directory, which ends up in
 * RUNDIR/plots/ whether or not the pictures are drawn; a failure shows its last line. Only when every
 * picture is drawn are the files renamed into RUNDIR (a rename replaces a link rather than writing through
 * it). Every count that sizes the output is checked against what the files hold: a depth run's unit count
 * against the levels of front.csv, each dropped sub-block against it.
 *
 * A run's best.json is read only through evb_allocation_read (evb_problems.h), which checks it.
 *
 * Errors are raised through EVB_RAISEF/EVB_ERRORF, each message one line with a hint; paths in messages are
 * shown with control characters as '?' and cut to their last SHOWN_MAX bytes, so that a message fits. */
#define _GNU_SOURCE
#include "plots/plot.h"
#include "core/fileio.h"
#include "evobudget/evb_problems.h"
#include "evobudget/evb_status.h"

#include <jansson.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <spawn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define LABEL_MAX 200 /* bytes of a label shown in the key or under a bar */
#define SHOWN_MAX 400 /* bytes of a path shown in a message (evb_last_error holds 1023) */
#define DISAGREE " (hint: the run directory's files disagree; rerun the search into a new --out)"
#define NOT_RUN " (hint: is this a run directory written by 'evobudget search --out'?)"
#define WRITABLE " (hint: check that the directory is writable and its file system has room)"
#define NOMEM(what) EVB_RAISEF(EVB_ENOMEM, "out of memory %s (hint: free some memory and plot again)", what)

/* ---- messages and gnuplot strings ---- */

const char *evb_plot_visible(const char *s, char *buf, size_t n) {
    size_t k = 0, len = s ? strlen(s) : 0;
    if (n < 8) { if (n) buf[0] = 0; return buf; }
    if (len >= n) { /* "..." and the end, from a character boundary */
        s += len - (n - 4);
        while (((unsigned char)*s & 0xC0) == 0x80) s++;
        memcpy(buf, "...", 3);
        k = 3;
    }
    for (; s && *s && k + 1 < n; s++) buf[k++] = (unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s;
    buf[k] = 0;
    return buf;
}

/* A path as messages show it; buf has SHOWN_MAX + 1 bytes. */
static const char *vis(const char *s, char *buf) { return evb_plot_visible(s, buf, SHOWN_MAX + 1); }

static int is_dir(const char *p) { struct stat sb; return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode); }

/* How many bytes of s to show: at most LABEL_MAX, cut at a character boundary. */
static size_t label_len(const char *s) {
    size_t n = strlen(s);
    if (n > LABEL_MAX) {
        n = LABEL_MAX;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--; /* not inside a UTF-8 sequence */
    }
    return n;
}

/* s quoted for gnuplot (see the top of the file): as a single-quoted string in a script (a quote doubled), or
 * as a double-quoted column of a data file (a quote turned into ', a backslash doubled); control characters
 * become '?'. */
static void quoted(FILE *f, const char *s, char q) {
    size_t n = label_len(s);
    fputc(q, f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == q) fputs(q == '\'' ? "''" : "'", f);
        else if (c == '\\' && q == '"') fputs("\\\\", f);
        else if (c < 0x20 || c == 0x7f) fputc('?', f);
        else fputc(c, f);
    }
    fputc(q, f);
}
static void gp_str(FILE *f, const char *s) { quoted(f, s, '\''); }
static void data_str(FILE *f, const char *s) { quoted(f, s, '"'); }

/* ---- front.csv ---- */

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

/* One row of front.csv: the columns named cost, cost_fraction, fitness and target (0 when absent), a sweep's
 * heldout_kl and uniform_kl (NaN when absent or empty), and the number of level indices of its levels column
 * (-1 when absent). */
typedef struct front_row { double cost, frac, fit, target, hkl, ukl; long n_levels; } front_row;

/* The columns of front.csv that are read (a sweep's "best" only to know where it ends: a path may hold
 * commas). */
enum { COL_COST, COL_FRAC, COL_FIT, COL_LEVELS, COL_TARGET, COL_BEST, COL_HKL, COL_UKL, N_COLS };

/* Where each column is: at[k] its index in the header (-1: absent), n the header's column count. */
typedef struct front_cols { int at[N_COLS], n; } front_cols;

/* The number of level indices (space-separated) in p[0, end). */
static long count_levels(const char *p, const char *end) {
    long n = 0;
    for (const char *q = p; q < end; ) {
        q += strspn(q, " \r");
        if (q >= end) break;
        n++;
        q += strcspn(q, " \r,\n");
    }
    return n;
}

/* Splits one data line of front.csv into r by fc; returns how many of cost, cost_fraction, fitness it has. */
static int parse_front_row(char *line, const front_cols *fc, front_row *r) {
    double *num[N_COLS] = {&r->cost, &r->frac, &r->fit, NULL, &r->target, NULL, &r->hkl, &r->ukl};
    int fields = 1, got = 0, best = fc->at[COL_BEST];
    for (const char *q = line; *q; q++) fields += *q == ',';
    int extra = best >= 0 && fields > fc->n ? fields - fc->n : 0; /* commas inside the best.json path */
    r->n_levels = -1;
    r->target = 0;
    r->hkl = r->ukl = NAN;
    for (int c = 0; *line; c++) {
        char *end = line + strcspn(line, ",");
        int col = extra && c > best ? (c - extra > best ? c - extra : best) : c;
        for (int k = 0; k < N_COLS; k++) {
            if (col != fc->at[k]) continue;
            if (k < 3) got++;
            if (num[k] && (k < 3 || end > line)) *num[k] = strtod(line, NULL);
            if (k == COL_LEVELS) r->n_levels = count_levels(line, end);
        }
        line = *end == ',' ? end + 1 : end;
    }
    return got;
}

/* Reads front.csv's header into fc; an error when cost, cost_fraction or fitness is missing. */
static int read_front_header(FILE *f, const char *shown, front_cols *fc) {
    static const char *want[N_COLS] = {"cost", "cost_fraction", "fitness", "levels", "target", "best", "heldout_kl", "uniform_kl"};
    char *line = NULL;
    size_t cap = 0;
    for (int k = 0; k < N_COLS; k++) fc->at[k] = -1;
    fc->n = 0;
    if (getline(&line, &cap, f) > 0) {
        line[strcspn(line, "\r\n")] = 0;
        fc->n = 1;
        for (const char *q = line; *q; q++) fc->n += *q == ',';
        int c = 0;
        for (char *p = line; *p; c++) {
            size_t len = strcspn(p, ",");
            for (int k = 0; k < N_COLS; k++) if (strlen(want[k]) == len && strncmp(p, want[k], len) == 0) fc->at[k] = c;
            p += len + (p[len] == ',');
        }
    }
    free(line);
    if (fc->at[COL_COST] < 0 || fc->at[COL_FRAC] < 0 || fc->at[COL_FIT] < 0)
        EVB_ERRORF(EVB_EFORMAT, "%s: the header lacks cost, cost_fraction or fitness (hint: is this a run directory?)", shown);
    return 0;
}

/* Checks that row r (row number `row` of the file) holds as many levels as the rows before it (*n_levels). */
static int check_levels(const front_row *r, int rows, long *n_levels, const char *shown) {
    if (r->n_levels < 0) EVB_ERRORF(EVB_EFORMAT, "%s: row %d has no levels" DISAGREE, shown, rows + 2);
    if (rows > 0 && r->n_levels != *n_levels)
        EVB_ERRORF(EVB_EFORMAT, "%s: row %d has %ld levels, row 2 has %ld" DISAGREE, shown, rows + 2, r->n_levels, *n_levels);
    *n_levels = r->n_levels;
    return 0;
}

/* front.csv row by row: calls fn for each (fn returns an error status to stop), *rows counting them.
 * *n_levels gets the number of levels each row's levels column holds (-1 when there is no such column; rows
 * that disagree are an error); with n_levels NULL the levels are not read (a --with run's front gives only
 * its cost scale). */
static int read_front(const char *path, int (*fn)(void *ctx, const front_row *r), void *ctx, long *n_levels, int *rows) {
    char shown[SHOWN_MAX + 1];
    FILE *f = fopen(path, "r");
    int e = errno;
    vis(path, shown);
    *rows = 0;
    if (!f) EVB_ERRORF(EVB_EIO, "%s: cannot open: %s (hint: is this a run directory?)", shown, strerror(e));
    char *line = NULL;
    size_t cap = 0;
    front_cols fc;
    int rc = read_front_header(f, shown, &fc);
    if (!n_levels) fc.at[COL_LEVELS] = -1;
    else *n_levels = -1;
    while (!rc && getline(&line, &cap, f) > 0) {
        front_row r;
        line[strcspn(line, "\r\n")] = 0;
        if (*rows == INT32_MAX - 2) rc = EVB_RAISEF(EVB_EFORMAT, "%s: more rows than a front can have" DISAGREE, shown);
        else if (parse_front_row(line, &fc, &r) < 3) rc = EVB_RAISEF(EVB_EFORMAT, "%s: row %d has fewer columns than its header" DISAGREE, shown, *rows + 2);
        else if (fc.at[COL_LEVELS] >= 0) rc = check_levels(&r, *rows, n_levels, shown);
        if (!rc) rc = fn(ctx, &r);
        if (!rc) (*rows)++;
    }
    free(line);
    fclose(f);
    return rc;
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

/* dir/name as a JSON object into *out; NULL when it is missing or not an object (manifest.json and sweep.json
 * are optional; best.json is read by evb_allocation_read). */
static int load_json(const char *dir, const char *name, json_t **out) {
    char p[1300];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    json_t *j = json_load_file(p, 0, NULL);
    *out = NULL;
    if (j && !json_is_object(j)) {
        json_decref(j);
        return 0;
    }
    *out = j;
    return 0;
}

/* A best.json's point on the front picture: its fitness on all calibration tokens; a run written before
 * best.json held it counts in *own and gives its own fitness (the y label then says so). */
static double point_fitness(const evb_allocation *b, int *own) {
    if (!isnan(b->fitness_all)) return b->fitness_all;
    (*own)++;
    return b->fitness;
}

/* dir/best.json read and checked by the library (evb_problems.h) into *out. */
static int load_best(const char *dir, evb_allocation **out) {
    char p[1300];
    snprintf(p, sizeof p, "%s/best.json", dir);
    return evb_allocation_read(p, out);
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

/* A problem file's level field key ("sparsity", "bits") from the unit's other fields (extra), or NAN. */
static double extra_num(const evb_allocation_unit *x, const char *key) {
    json_t *e = x->extra ? json_loads(x->extra, 0, NULL) : NULL, *v = json_object_get(e, key);
    double d = json_is_number(v) ? json_number_value(v) : NAN;
    json_decref(e);
    return d;
}

/* A unit's bar height: its storage bits per weight, sparsity or bits where best.json gives them (a problem
 * file's level, by its own fields of those names), else its level; *ylabel says which. */
static double unit_value(const evb_allocation_unit *x, const char **ylabel) {
    double sp = x->key.kind == EVB_LEVEL_SPARSE ? x->key.sparsity : x->key.kind < 0 ? extra_num(x, "sparsity") : NAN;
    double bits = x->key.kind == EVB_LEVEL_QUANT ? x->key.bits : x->key.kind < 0 ? extra_num(x, "bits") : NAN;
    if (!isnan(x->storage_bpw)) { *ylabel = "storage bits per weight"; return x->storage_bpw; }
    if (!isnan(sp)) { *ylabel = "sparsity"; return sp; }
    if (!isnan(bits)) { *ylabel = "bits"; return bits; }
    return x->level;
}

/* The unit count of a depth run's manifest, checked against n_levels (front.csv's); 0 or an error. */
static int drop_units(json_t *manifest, long n_levels, const char *shown, long *U) {
    json_t *ju = json_object_get(manifest, "units");
    json_int_t u = json_integer_value(ju);
    if (!json_is_integer(ju) || u < 2 || u % 2) EVB_ERRORF(EVB_EFORMAT, "%s/manifest.json: no even unit count for a depth run" DISAGREE, shown);
    if (n_levels < 0) EVB_ERRORF(EVB_EFORMAT, "%s/front.csv: no levels column to check manifest.json's %lld units against" DISAGREE, shown, (long long)u);
    if (u != n_levels) EVB_ERRORF(EVB_EFORMAT, "%s/manifest.json: %lld units, but front.csv's rows hold %ld levels" DISAGREE, shown, (long long)u, n_levels);
    *U = (long)u;
    return 0;
}

/* A depth run: per sub-block 1 when kept, 0 when dropped, into f (x value kind), ticks per block into vars.
 * manifest's unit count must match n_levels (front.csv's), each dropped sub-block lie inside it. */
static int profile_drop(FILE *f, FILE *vars, const evb_allocation *best, json_t *manifest, long n_levels, const char *shown, profile_info *pi) {
    long U = 0, L;
    int rc = drop_units(manifest, n_levels, shown, &U);
    if (rc) return rc;
    L = U / 2;
    unsigned char *kept = malloc((size_t)U);
    if (!kept) return NOMEM("for the units of a depth run");
    memset(kept, 1, (size_t)U);
    for (int i = 0; i < best->n_drop; i++) {
        long b = best->drop[i].block;
        if (b < 0 || b >= L) {
            rc = EVB_RAISEF(EVB_EFORMAT, "%s/best.json: drop[%d] is not a sub-block (\"attn\" or \"mlp\") of a block in [0, %ld)" DISAGREE, shown, i, L);
            break;
        }
        kept[b * 2 + (best->drop[i].mlp ? 1 : 0)] = 0;
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
static void profile_blocks(FILE *f, FILE *vars, const evb_allocation *best, profile_info *pi) {
    long last_block = -1, n_bars = 0;
    for (int i = 0; i < best->n_units; i++) {
        long block = 0;
        int k = 0;
        parse_unit_name(best->units[i].name, &block, &k);
        double v = unit_value(&best->units[i], &pi->ylabel);
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
static void profile_names(FILE *f, const evb_allocation *best, profile_info *pi) {
    pi->by_name = 1;
    for (int i = 0; i < best->n_units; i++) {
        const char *name = best->units[i].name;
        char own[40];
        if (!*name) { snprintf(own, sizeof own, "unit %d", i); name = own; }
        double v = unit_value(&best->units[i], &pi->ylabel);
        fprintf(f, "%d %.9g 0 ", i, v);
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
 * dropped) into tmp/plots/profile.dat (position value kind, and the unit's name when bars are labelled by
 * name), the ticks and labels into vars. n_levels: the unit count front.csv's rows hold (-1: unknown), which
 * a depth run's manifest must match. */
static int write_profile(const char *dir, const char *tmp, const evb_allocation *best, json_t *manifest, long n_levels, FILE *vars) {
    char p[1300], shown[SHOWN_MAX + 1];
    snprintf(p, sizeof p, "%s/plots/profile.dat", tmp);
    FILE *f = fopen(p, "w");
    if (!f) EVB_ERRORF(EVB_EIO, "%s: cannot create: %s" WRITABLE, vis(p, shown), strerror(errno));
    vis(dir, shown);
    const char *kind = best->target_kind;
    profile_info pi = {.ylabel = "level"};
    int rc = 0;
    fprintf(vars, "profile_xtics = 'set xtics (");
    if (strcmp(kind, "drop") == 0) rc = profile_drop(f, vars, best, manifest, n_levels, shown, &pi);
    else {
        int named = strcmp(kind, "problem") == 0;
        for (int i = 0; i < best->n_units; i++) {
            long b;
            int k;
            if (!parse_unit_name(best->units[i].name, &b, &k)) named = 1;
        }
        if (named) profile_names(f, best, &pi);
        else profile_blocks(f, vars, best, &pi);
    }
    profile_vars(vars, &pi);
    if (fclose(f) && !rc) rc = EVB_RAISEF(EVB_EIO, "%s: cannot write: %s" WRITABLE, vis(p, shown), strerror(errno));
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
        if (!v) return NOMEM("for a list of paths");
        l->v = v;
        l->cap = cap;
    }
    if (!(l->v[l->n] = strdup(s))) return NOMEM("for a path");
    l->n++;
    return 0;
}

static void list_free(str_list *l) {
    for (int i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    *l = (str_list){0};
}

/* One directory being drawn. */
typedef struct plot_job {
    const char *dir;             /* the run directory as given */
    char shown[SHOWN_MAX + 1];   /* dir as messages show it */
    char tmp[1100];              /* dir/plots/.plot-XXXXXX, private to this drawing; "" when not made */
} plot_job;

/* Makes dir/plots (when missing), the private directory in it and that directory's plots/. */
static int job_open(plot_job *j, const char *dir) {
    char p[1300];
    j->dir = dir;
    j->tmp[0] = 0;
    vis(dir, j->shown);
    snprintf(p, sizeof p, "%s/plots", dir);
    int made = mkdir(p, 0755) == 0 || errno == EEXIST, e = errno;
    if (!made || !is_dir(p)) EVB_ERRORF(EVB_EIO, "%s/plots: cannot create the directory: %s" WRITABLE, j->shown, strerror(made ? ENOTDIR : e));
    snprintf(j->tmp, sizeof j->tmp, "%s/plots/.plot-XXXXXX", dir);
    if (!mkdtemp(j->tmp)) {
        e = errno;
        j->tmp[0] = 0;
        EVB_ERRORF(EVB_EIO, "%s/plots: cannot create a directory in it: %s" WRITABLE, j->shown, strerror(e));
    }
    snprintf(p, sizeof p, "%s/plots", j->tmp);
    if (mkdir(p, 0700)) EVB_ERRORF(EVB_EIO, "%s/plots/%s/plots: cannot create: %s" WRITABLE, j->shown, strrchr(j->tmp, '/') + 1, strerror(errno));
    return 0;
}

/* Opens tmp/plots/name for writing into *f. */
static int job_file(const plot_job *j, const char *name, FILE **f) {
    char p[1300];
    snprintf(p, sizeof p, "%s/plots/%s", j->tmp, name);
    *f = fopen(p, "w");
    if (!*f) EVB_ERRORF(EVB_EIO, "%s/plots/%s: cannot create: %s" WRITABLE, j->shown, name, strerror(errno));
    return 0;
}

/* Closes a file of job_file; rc, or an error when it was 0 and the file could not be written. */
static int job_close_file(const plot_job *j, FILE *f, const char *name, int rc) {
    if (f && fclose(f) && !rc) rc = EVB_RAISEF(EVB_EIO, "%s/plots/%s: cannot write: %s" WRITABLE, j->shown, name, strerror(errno));
    return rc;
}

/* Renames tmp/sub/name to dir/sub/name. */
static int move_in(const plot_job *j, const char *sub, const char *name) {
    char a[1400], b[1400];
    snprintf(a, sizeof a, "%s/%s%s", j->tmp, sub, name);
    snprintf(b, sizeof b, "%s/%s%s", j->dir, sub, name);
    if (rename(a, b)) EVB_ERRORF(EVB_EIO, "%s/%s%s: cannot write: %s" WRITABLE, j->shown, sub, name, strerror(errno));
    return 0;
}

/* Keeps gnuplot's messages (tmp/plots/plot.log into dir/plots/), then removes the private directory
 * (tmp/plots and the files in both; only this file writes there). Returns rc, or an error when rc was 0 and
 * the log could not be kept. */
static int job_close(plot_job *j, int rc) {
    if (!j->tmp[0]) return rc;
    char p[1400], q[1400];
    snprintf(p, sizeof p, "%s/plots/plot.log", j->tmp);
    snprintf(q, sizeof q, "%s/plots/plot.log", j->dir);
    if (access(p, F_OK) == 0 && rename(p, q) && !rc) rc = EVB_RAISEF(EVB_EIO, "%s/plots/plot.log: cannot write: %s" WRITABLE, j->shown, strerror(errno));
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
    evb_plot_visible(line, buf, n);
}

/* Runs gnuplot on script (an absolute path; name is its short name) in the private directory, with
 * datadir='.' and the terminal set, its stdout and stderr appended to plots/plot.log there. No shell: the
 * arguments go to gnuplot as they are, and none comes from a file. */
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
    if (e) EVB_ERRORF(EVB_EIO, "cannot run gnuplot: %s (hint: ./setup.sh installs gnuplot-nox)", strerror(e));
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) EVB_ERRORF(EVB_EIO, "gnuplot: %s (hint: plot again)", strerror(errno));
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return 0;
    char last[LABEL_MAX + 1], how[40];
    last_line(log, last, sizeof last);
    if (WIFEXITED(st)) snprintf(how, sizeof how, "exit status %d", WEXITSTATUS(st));
    else snprintf(how, sizeof how, "signal %d", WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    EVB_ERRORF(EVB_EBADFUNC, "gnuplot failed on %s.gp (%s): %s (hint: its messages are in %s/plots/plot.log)", name, how, last[0] ? last : "no message", j->shown);
}

/* Draws scripts[n] (names of the scripts in plots/, without .gp; NULL entries skipped) as PNG and SVG in the
 * private directory. The scripts are read from $EVB_HOME/plots, else from the source directory's. */
static int draw(const plot_job *j, const char *const *scripts, int n) {
    char script[1200], script_abs[PATH_MAX], shown[SHOWN_MAX + 1];
    const char *home = getenv("EVB_HOME");
    for (int i = 0; i < n; i++) {
        if (!scripts[i]) continue;
        snprintf(script, sizeof script, "%s/plots/%s.gp", home ? home : EVB_SOURCE_DIR, scripts[i]);
        if (!realpath(script, script_abs)) EVB_ERRORF(EVB_EIO, "%s: %s (hint: set EVB_HOME to evobudget's source directory)", vis(script, shown), strerror(errno));
        for (int e = 0; e < 2; e++) {
            const char *ext = e ? "svg" : "png";
            int rc = gnuplot(j, script_abs, scripts[i], ext);
            if (rc) return rc;
            char pic[1400];
            snprintf(pic, sizeof pic, "%s/%s.%s", j->tmp, scripts[i], ext);
            struct stat sb;
            if (stat(pic, &sb) != 0 || sb.st_size == 0)
                EVB_ERRORF(EVB_EBADFUNC, "gnuplot wrote no %s.%s (hint: its messages are in %s/plots/plot.log)", scripts[i], ext, j->shown);
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
        rc = evb_fsync_parent(p);
        snprintf(p, sizeof p, "%s/front.png", j->dir);
        if (!rc) rc = evb_fsync_parent(p);
    }
    return rc;
}

/* ---- the front's variables ---- */

/* What vars.gp tells front.gp. */
typedef struct front_info {
    const char *kind, *title, *key; /* target kind, the picture's title, the front's key entry */
    int by_target;                  /* 1: a sweep's front, each point labelled with its target */
    int n_own;                      /* points whose fitness is their run's own (no fitness_all) */
    int n_front;                    /* points of front.dat */
    int n_heldout, n_uniform;       /* a sweep's points of heldout.dat: the search's and uniform's held-out KL */
} front_info;

/* The y label of the front picture. */
static const char *front_ylabel(const front_info *fi) {
    if (strcmp(fi->kind, "problem") == 0) return "fitness (lower is better)";
    if (fi->n_own) return "fitness as each run measured it (KL per token)";
    if (fi->by_target && (fi->n_heldout || fi->n_uniform)) return "KL(dense || compressed) per token";
    if (fi->by_target) return "KL(dense || compressed) per token on all calibration tokens";
    return "points: KL(dense || compressed) per token on all calibration tokens";
}

/* The lines of vars.gp that front.gp reads: axis labels, title, key entries, point labels. */
static void front_vars(FILE *vars, const front_info *fi, json_t *labels) {
    fprintf(vars, "front_xlabel = ");
    gp_str(vars, front_xlabel(fi->kind));
    fprintf(vars, "\nrun_title = ");
    gp_str(vars, fi->title);
    fprintf(vars, "\nfront_ylabel = ");
    gp_str(vars, front_ylabel(fi));
    fprintf(vars, "\nfront_key = ");
    gp_str(vars, fi->key);
    fprintf(vars, "\nheldout_key = 'each target''s best on held-out text'\nuniform_key = 'the uniform allocation of the same size on held-out text'"
                  "\nn_heldout = %d\nn_uniform = %d", fi->n_heldout, fi->n_uniform);
    size_t i, n = json_array_size(labels);
    json_t *x;
    fprintf(vars, "\nfront_targets = %d\nn_front = %d\nn_points = %zu\narray point_labels[%zu] = [", fi->by_target, fi->n_front, n, n ? n : 1);
    json_array_foreach(labels, i, x) {
        if (i) fprintf(vars, ", ");
        gp_str(vars, json_string_value(x));
    }
    fprintf(vars, "%s]\n", n ? "" : "''");
}

/* ---- one run directory ---- */

/* What a plot drew: the pictures' paths, the runs without a convergence picture, the counts. */
typedef struct plot_sum { str_list pics, no_conv; int n_front, n_base, n_conv, n_targets, n_heldout, n_uniform; } plot_sum;

/* The label of --with run d: its method, with "(surrogate)" when its manifest says the search was
 * surrogate-assisted (EvoPress with and without it share the method's name); its directory without one. */
static void with_label(const char *d, const char *m, char *lb, size_t n) {
    json_t *man = NULL;
    load_json(d, "manifest.json", &man);
    json_t *k = json_object_get(json_object_get(man, "search"), "surrogate");
    snprintf(lb, n, "%s%s", m ? m : d, json_is_integer(k) && json_integer_value(k) > 0 ? " (surrogate)" : "");
    json_decref(man);
}

/* The point of --with run d's best.json, b, of kind k2 (checked against kind) and method m, into bf. */
static int add_with_point(FILE *bf, json_t *labels, const evb_allocation *b, const char *d, const char *dir_shown, const char *kind, double ratio, int *n_own) {
    const char *k2 = b->target_kind[0] ? b->target_kind : NULL, *m = b->method[0] ? b->method : NULL;
    char lb[EVB_PLOT_DIR_MAX + 64], name[EVB_PLOT_DIR_MAX + 16], p[1300], s2[SHOWN_MAX + 1], k2s[64];
    /* runs of another kind compare with a joint run (bytes) by their storage */
    int by_storage = k2 && strcmp(k2, kind) && strcmp(kind, "bytes") == 0 && !isnan(b->storage_bytes);
    if (!k2 || (strcmp(k2, kind) && !by_storage))
        EVB_ERRORF(EVB_EINVAL, "--with %s: a %s run; %s is a %s run", vis(d, s2), k2 ? evb_plot_visible(k2, k2s, sizeof k2s) : "?", dir_shown, kind);
    with_label(d, m, name, sizeof name);
    if (by_storage) {
        snprintf(lb, sizeof lb, "%s (%.40s only)", name, k2);
        add_point(bf, labels, b->storage_bytes * 8 * ratio, point_fitness(b, n_own), lb);
        return 0;
    }
    /* the other run's own front gives its cost scale */
    snprintf(p, sizeof p, "%s/front.csv", d);
    front_out scale = {NULL, kind, 0};
    int rows, rc = read_front(p, write_front_row, &scale, NULL, &rows);
    double c = b->cost;
    if (!rc) add_point(bf, labels, front_x(kind, c, c * scale.ratio), point_fitness(b, n_own), name);
    return rc;
}

/* The --with runs (a comma-separated list) as labelled points of bf (each best.json at x by its own front's
 * cost scale; a run of another kind against a joint run by its storage, with ratio the joint run's fraction
 * per cost); *n_base counts them. */
static int add_with(FILE *bf, json_t *labels, const char *with, const char *dir_shown, const char *kind, double ratio, int *n_own, int *n_base) {
    char *w = with ? strdup(with) : NULL;
    if (with && !w) return NOMEM("for --with");
    int rc = 0;
    for (char *save, *d = w ? strtok_r(w, ",", &save) : NULL; d && !rc; d = strtok_r(NULL, ",", &save)) {
        evb_allocation *b = NULL;
        if (strlen(d) > EVB_PLOT_DIR_MAX) rc = EVB_RAISEF(EVB_EINVAL, "--with: a run directory's name is longer than %d bytes", EVB_PLOT_DIR_MAX);
        if (!rc) rc = load_best(d, &b);
        if (!rc) rc = add_with_point(bf, labels, b, d, dir_shown, kind, ratio, n_own);
        if (!rc) (*n_base)++;
        evb_allocation_free(b);
    }
    free(w);
    return rc;
}

/* front.dat (RUNDIR/front.csv) and baselines.dat (this run's best, then the --with runs). */
static int run_points(const plot_job *j, const evb_allocation *best, const char *kind, const char *with, json_t *labels, int *n_own, long *n_levels, plot_sum *s) {
    char p[1300], lb[300];
    front_out fo = {NULL, kind, 0};
    FILE *bf = NULL;
    int rc = job_file(j, "front.dat", &fo.f);
    if (rc) return rc;
    snprintf(p, sizeof p, "%s/front.csv", j->dir);
    rc = job_close_file(j, fo.f, "front.dat", read_front(p, write_front_row, &fo, n_levels, &s->n_front));
    if (!rc) rc = job_file(j, "baselines.dat", &bf);
    if (rc) return rc;
    double c = best->cost;
    snprintf(lb, sizeof lb, "%.200s (this run's best)", best->method[0] ? best->method : "run");
    add_point(bf, labels, front_x(kind, c, c * fo.ratio), point_fitness(best, n_own), lb);
    rc = add_with(bf, labels, with, j->shown, kind, fo.ratio, n_own, &s->n_base);
    return job_close_file(j, bf, "baselines.dat", rc);
}

/* vars.gp of a run: the front's lines and the profile's. */
static int run_vars(const plot_job *j, const evb_allocation *best, json_t *manifest, const char *kind, json_t *labels, int n_own, long n_levels, int n_front) {
    FILE *vars;
    int rc = job_file(j, "vars.gp", &vars);
    if (rc) return rc;
    const char *method = best->method[0] ? best->method : "run";
    char title[400];
    if (strcmp(kind, "problem") == 0) snprintf(title, sizeof title, "%.200s on a problem file, budget %g", method, best->budget);
    else snprintf(title, sizeof title, "%.200s, %s target %g", method, kind, best->target);
    front_info fi = {kind, title, "front of the run (the search's own fitness)", 0, n_own, n_front, 0, 0};
    front_vars(vars, &fi, labels);
    rc = write_profile(j->dir, j->tmp, best, manifest, n_levels, vars);
    return job_close_file(j, vars, "vars.gp", rc);
}

/* best.json's target kind (a problem file's run has none), checked. */
static int run_kind(const char *dir, const evb_allocation *best, const char **kind) {
    char shown[SHOWN_MAX + 1];
    *kind = best->target_kind[0] ? best->target_kind : "problem";
    if (!known_kind(*kind))
        EVB_ERRORF(EVB_EFORMAT, "%s/best.json: target_kind is none of sparsity, bits, drop, bytes, problem" NOT_RUN, vis(dir, shown));
    return 0;
}

/* A run directory: front, profile and convergence pictures (the last when log.jsonl has generations). */
static int plot_run(const char *dir, const char *with, plot_sum *s) {
    json_t *manifest = NULL, *labels = json_array();
    evb_allocation *best = NULL;
    const char *kind = NULL;
    plot_job j = {.tmp = ""};
    int n_own = 0, rc = labels ? load_best(dir, &best) : NOMEM("for the labels");
    long n_levels = -1;
    if (!rc) rc = load_json(dir, "manifest.json", &manifest);
    if (!rc) rc = run_kind(dir, best, &kind);
    if (!rc) rc = job_open(&j, dir);
    if (!rc) rc = run_points(&j, best, kind, with, labels, &n_own, &n_levels, s);
    if (!rc) rc = run_vars(&j, best, manifest, kind, labels, n_own, n_levels, s->n_front);
    s->n_conv = rc ? 0 : write_convergence(dir, j.tmp);
    if (!rc && s->n_conv == 0) rc = list_add(&s->no_conv, j.shown);
    const char *scripts[] = {"front", "profile", s->n_conv ? "convergence" : NULL};
    const char *data[] = {"front.dat", "baselines.dat", "profile.dat", "vars.gp", s->n_conv ? "convergence.dat" : NULL};
    if (!rc) rc = draw(&j, scripts, 3);
    if (!rc) rc = publish(&j, data, 5, scripts, 3, &s->pics);
    rc = job_close(&j, rc);
    json_decref(labels);
    evb_allocation_free(best);
    json_decref(manifest);
    return rc;
}

/* ---- a sweep's directory ---- */

/* The sweep's front.dat (x, KL on all calibration tokens, target), heldout.dat (x, the search's held-out KL,
 * uniform's, target; NaN where front.csv has none) and its targets' run directories. */
typedef struct sweep_out { FILE *f, *hf; const char *kind; double ratio; int n_heldout, n_uniform; str_list runs; } sweep_out;

static void put_num(FILE *f, double v, const char *sep) { if (isnan(v)) fprintf(f, "NaN%s", sep); else fprintf(f, "%.9g%s", v, sep); }

/* One row of a sweep's front.csv: its point, and its held-out KLs. */
static int write_sweep_row(void *ctx, const front_row *r) {
    sweep_out *o = ctx;
    if (r->cost > 0) o->ratio = r->frac / r->cost;
    double x = front_x(o->kind, r->cost, r->frac);
    fprintf(o->f, "%.9g %.9g %.9g\n", x, r->fit, r->target);
    fprintf(o->hf, "%.9g ", x);
    put_num(o->hf, r->hkl, " ");
    put_num(o->hf, r->ukl, " ");
    fprintf(o->hf, "%.9g\n", r->target);
    o->n_heldout += !isnan(r->hkl);
    o->n_uniform += !isnan(r->ukl);
    return 0;
}

/* The targets' run directories, in sweep.json's order: each the directory in the sweep's directory named as
 * the last directory of the target's "best" (the path as search wrote it, from its own working directory,
 * so only that name is taken). */
static int sweep_runs(const plot_job *j, json_t *sweep, str_list *runs) {
    json_t *x, *list = json_object_get(sweep, "runs");
    size_t i;
    if (!json_is_array(list)) EVB_ERRORF(EVB_EFORMAT, "%s/sweep.json: \"runs\" is not an array" DISAGREE, j->shown);
    json_array_foreach(list, i, x) {
        const char *b = json_string_value(json_object_get(x, "best")), *end = b ? b + strlen(b) : NULL, *name = b;
        if (end && end - b >= 10 && strcmp(end - 10, "/best.json") == 0) end -= 10;
        else b = NULL;
        for (const char *q = b; q && q < end; q++) if (*q == '/') name = q + 1;
        int len = b ? (int)(end - name) : 0, rc;
        char sub[1400], raw[300], shown[300];
        if (!b || len == 0 || len > 255 || (len == 1 && name[0] == '.') || (len == 2 && !strncmp(name, "..", 2)))
            EVB_ERRORF(EVB_EFORMAT, "%s/sweep.json: runs[%zu] has no \"best\" naming DIR/best.json" DISAGREE, j->shown, i);
        snprintf(sub, sizeof sub, "%s/%.*s", j->dir, len, name);
        snprintf(raw, sizeof raw, "%.*s", len, name);
        if (!is_dir(sub))
            EVB_ERRORF(EVB_EFORMAT, "%s/%s: the run directory of sweep.json's runs[%zu] is missing" DISAGREE, j->shown, evb_plot_visible(raw, shown, sizeof shown), i);
        if ((rc = list_add(runs, sub))) return rc;
    }
    return 0;
}

/* front.dat and heldout.dat from the sweep's front.csv (a row per run of o), baselines.dat from the --with
 * runs. */
static int sweep_points(const plot_job *j, sweep_out *o, const char *with, json_t *labels, int *n_own, plot_sum *s) {
    char p[1300];
    FILE *bf = NULL;
    int rc = job_file(j, "front.dat", &o->f);
    if (!rc && (rc = job_file(j, "heldout.dat", &o->hf))) fclose(o->f);
    if (rc) return rc;
    snprintf(p, sizeof p, "%s/front.csv", j->dir);
    rc = read_front(p, write_sweep_row, o, NULL, &s->n_front);
    rc = job_close_file(j, o->f, "front.dat", rc);
    rc = job_close_file(j, o->hf, "heldout.dat", rc);
    s->n_targets = s->n_front;
    s->n_heldout = o->n_heldout;
    s->n_uniform = o->n_uniform;
    if (!rc && s->n_front == 0) rc = EVB_RAISEF(EVB_EFORMAT, "%s/front.csv: no targets" DISAGREE, j->shown);
    if (!rc && s->n_front != o->runs.n) rc = EVB_RAISEF(EVB_EFORMAT, "%s/front.csv: %d targets, sweep.json %d" DISAGREE, j->shown, s->n_front, o->runs.n);
    if (!rc) rc = job_file(j, "baselines.dat", &bf);
    if (rc) return rc;
    rc = add_with(bf, labels, with, j->shown, o->kind, o->ratio, n_own, &s->n_base);
    return job_close_file(j, bf, "baselines.dat", rc);
}

/* vars.gp of a sweep: the front's lines. */
static int sweep_vars(const plot_job *j, json_t *sweep, const char *kind, json_t *labels, int n_own, const plot_sum *s) {
    char title[400];
    const char *method = json_string_value(json_object_get(sweep, "method"));
    FILE *vars;
    int rc = job_file(j, "vars.gp", &vars);
    if (rc) return rc;
    snprintf(title, sizeof title, "%.200s sweep over %d %s targets", method ? method : "search", s->n_targets, kind);
    front_info fi = {kind, title,
                     s->n_heldout || s->n_uniform ? "each target's best on all calibration tokens, labelled with the target"
                                                  : "the sweep: each target's best, labelled with the target",
                     1, n_own, s->n_front, s->n_heldout, s->n_uniform};
    front_vars(vars, &fi, labels);
    return job_close_file(j, vars, "vars.gp", 0);
}

/* Every target's run directory (runs) drawn as a run of its own, its pictures and counts added to s. */
static int sweep_targets(const str_list *runs, plot_sum *s) {
    int rc = 0;
    for (int i = 0; i < runs->n && !rc; i++) {
        plot_sum one = {0};
        rc = plot_run(runs->v[i], NULL, &one);
        for (int k = 0; k < one.pics.n && !rc; k++) rc = list_add(&s->pics, one.pics.v[k]);
        for (int k = 0; k < one.no_conv.n && !rc; k++) rc = list_add(&s->no_conv, one.no_conv.v[k]);
        s->n_conv += one.n_conv;
        list_free(&one.pics);
        list_free(&one.no_conv);
    }
    return rc;
}

/* A sweep: its front (front.csv: one point per target, KL on all calibration tokens, and the held-out KLs
 * where it has them) into dir, then every target's run directory as a run of its own. */
static int plot_sweep(const char *dir, json_t *sweep, const char *with, plot_sum *s) {
    char shown[SHOWN_MAX + 1];
    const char *kind = json_string_value(json_object_get(sweep, "target_kind"));
    if (!kind || !known_kind(kind))
        EVB_ERRORF(EVB_EFORMAT, "%s/sweep.json: target_kind is none of sparsity, bits, drop, bytes, problem (hint: is this a sweep written by 'evobudget search --out'?)",
                   vis(dir, shown));
    plot_job j = {.tmp = ""};
    sweep_out o = {NULL, NULL, kind, 0, 0, 0, {0}};
    json_t *labels = json_array();
    int n_own = 0, rc = labels ? job_open(&j, dir) : NOMEM("for the labels");
    if (!rc) rc = sweep_runs(&j, sweep, &o.runs);
    if (!rc) rc = sweep_points(&j, &o, with, labels, &n_own, s);
    if (!rc) rc = sweep_vars(&j, sweep, kind, labels, n_own, s);
    const char *scripts[] = {"front"}, *data[] = {"front.dat", "heldout.dat", "baselines.dat", "vars.gp"};
    if (!rc) rc = draw(&j, scripts, 1);
    if (!rc) rc = publish(&j, data, 4, scripts, 1, &s->pics);
    rc = job_close(&j, rc);
    json_decref(labels);
    if (!rc) rc = sweep_targets(&o.runs, s);
    list_free(&o.runs);
    return rc;
}

/* ---- the request ---- */

/* The request's paths, checked; *sweep: dir's sweep.json when dir is a sweep's directory (it holds sweep.json
 * of kind "sweep" and no best.json), else NULL. */
/* ---- a sensitivity profile's directory ---- */

typedef struct sens_row { int kind; long block; size_t unit; } sens_row;
static int cmp_sens_row(const void *a, const void *b) {
    const sens_row *x = a, *y = b;
    if (x->kind != y->kind) return x->kind - y->kind;
    if (x->block != y->block) return x->block < y->block ? -1 : 1;
    return x->unit < y->unit ? -1 : x->unit > y->unit;
}

/* sensitivity.dat: per unit (rows ordered by layer type, then block) and level a cell "level row log10(KL)
 * label", the label (type and block) read by ytic() as a string, never run. */
static int sens_data(const plot_job *j, json_t *units, int *n_rows, int *max_level) {
    size_t n = json_array_size(units), i;
    sens_row *rows = malloc(sizeof *rows * (n ? n : 1));
    if (!rows) return NOMEM("for the profile");
    json_t *u;
    json_array_foreach(units, i, u) {
        const char *kind = json_string_value(json_object_get(u, "kind"));
        json_t *b = json_object_get(u, "block"), *lv = json_object_get(u, "levels");
        int k = 0;
        while (kind && k < (int)(sizeof layer_kinds / sizeof *layer_kinds) && strcmp(kind, layer_kinds[k])) k++;
        if (!kind || k == (int)(sizeof layer_kinds / sizeof *layer_kinds) || !json_is_integer(b) || json_integer_value(b) < 0 || !json_is_array(lv)) {
            free(rows);
            EVB_ERRORF(EVB_EFORMAT, "%s/sensitivity.json: units[%zu] lacks a known \"kind\", a \"block\" or \"levels\"" NOT_RUN, j->shown, i);
        }
        rows[i] = (sens_row){k, (long)json_integer_value(b), i};
    }
    qsort(rows, n, sizeof *rows, cmp_sens_row);
    FILE *f;
    int rc = job_file(j, "sensitivity.dat", &f);
    *max_level = 0;
    for (size_t r = 0; !rc && r < n; r++) {
        json_t *lv = json_object_get(json_array_get(units, rows[r].unit), "levels"), *x;
        char label[64];
        snprintf(label, sizeof label, "%s %ld", layer_kinds[rows[r].kind], rows[r].block);
        size_t l;
        json_array_foreach(lv, l, x) {
            json_t *kl = json_object_get(x, "kl");
            if (!json_is_number(kl) || l > 4096) { rc = EVB_RAISEF(EVB_EFORMAT, "%s/sensitivity.json: a level of units[%zu] has no \"kl\" number" NOT_RUN, j->shown, rows[r].unit); break; }
            double v = json_number_value(kl);
            fprintf(f, "%zu %zu %.6g ", l, r, log10(v > 1e-12 ? v : 1e-12));
            data_str(f, label);
            fputc('\n', f);
            if ((int)l > *max_level) *max_level = (int)l;
        }
    }
    *n_rows = (int)n;
    free(rows);
    return job_close_file(j, f, "sensitivity.dat", rc);
}

static int plot_sensitivity(const char *dir, json_t *sj, plot_sum *s) {
    plot_job j = {.tmp = ""};
    json_t *units = json_object_get(sj, "units");
    const char *kind = json_string_value(json_object_get(sj, "target_kind")), *metric = json_string_value(json_object_get(sj, "metric"));
    json_t *target = json_object_get(sj, "target");
    int rc = job_open(&j, dir), n_rows = 0, max_level = 0;
    if (!rc && (!json_is_array(units) || !json_array_size(units) || !kind || !json_is_number(target)))
        rc = EVB_RAISEF(EVB_EFORMAT, "%s/sensitivity.json: no \"units\", \"target_kind\" or \"target\"" NOT_RUN, j.shown);
    if (!rc) rc = sens_data(&j, units, &n_rows, &max_level);
    FILE *vars = NULL;
    if (!rc) rc = job_file(&j, "vars.gp", &vars);
    if (!rc) {
        char title[200];
        snprintf(title, sizeof title, "sensitivity at %.20s %g: %s of one unit at each level, the rest dense", kind, json_number_value(target),
                 metric && !strcmp(metric, "ppl") ? "log perplexity" : "KL");
        fprintf(vars, "sens_title = ");
        gp_str(vars, title);
        fprintf(vars, "\nn_rows = %d\nmax_level = %d\n", n_rows, max_level);
        rc = job_close_file(&j, vars, "vars.gp", rc);
    }
    const char *scripts[] = {"sensitivity"}, *data[] = {"sensitivity.dat", "vars.gp"};
    if (!rc) rc = draw(&j, scripts, 1);
    if (!rc) rc = publish(&j, data, 2, scripts, 1, &s->pics);
    return job_close(&j, rc);
}

static int check_request(const evb_plot_request *req, json_t **sweep, json_t **sens) {
    char shown[SHOWN_MAX + 1], p[1300];
    const char *dir = req->dir;
    *sweep = *sens = NULL;
    if (!dir || !dir[0]) EVB_ERRORF(EVB_EINVAL, "plot needs a run directory (hint: evobudget plot RUNDIR)");
    if (strlen(dir) > EVB_PLOT_DIR_MAX) EVB_ERRORF(EVB_EINVAL, "the run directory's name is longer than %d bytes", EVB_PLOT_DIR_MAX);
    if (req->with && strlen(req->with) > 64 * EVB_PLOT_DIR_MAX) EVB_ERRORF(EVB_EINVAL, "--with is longer than %d bytes", 64 * EVB_PLOT_DIR_MAX);
    if (!is_dir(dir)) EVB_ERRORF(EVB_EINVAL, "%s is not a directory; give a run directory written by 'evobudget search --out'", vis(dir, shown));
    snprintf(p, sizeof p, "%s/best.json", dir);
    if (access(p, F_OK) == 0) return 0;
    snprintf(p, sizeof p, "%s/sensitivity.json", dir);
    if (access(p, F_OK) == 0) {
        int rc = load_json(dir, "sensitivity.json", sens);
        if (!rc && !*sens) EVB_ERRORF(EVB_EFORMAT, "%s/sensitivity.json is not a JSON object" NOT_RUN, vis(dir, shown));
        return rc;
    }
    json_t *s;
    int rc = load_json(dir, "sweep.json", &s);
    const char *kind = json_string_value(json_object_get(s, "kind"));
    if (!rc && kind && strcmp(kind, "sweep") == 0) *sweep = s;
    else json_decref(s);
    return rc;
}

int evb_plot_run(const evb_plot_request *req, evb_plot_result *res) {
    json_t *sweep, *sens;
    plot_sum s = {0};
    memset(res, 0, sizeof *res);
    int rc = check_request(req, &sweep, &sens);
    if (!rc) rc = sens ? plot_sensitivity(req->dir, sens, &s) : sweep ? plot_sweep(req->dir, sweep, req->with, &s) : plot_run(req->dir, req->with, &s);
    json_decref(sens);
    res->pictures = s.pics.v;
    res->n_pictures = s.pics.n;
    res->no_convergence = s.no_conv.v;
    res->n_no_convergence = s.no_conv.n;
    res->sweep = sweep != NULL;
    const char *kind = json_string_value(json_object_get(sweep, "target_kind"));
    snprintf(res->target_kind, sizeof res->target_kind, "%s", kind ? kind : "");
    res->n_front = s.n_front;
    res->n_baselines = s.n_base;
    res->n_generations = s.n_conv;
    res->n_targets = s.n_targets;
    res->n_heldout = s.n_heldout;
    res->n_uniform = s.n_uniform;
    json_decref(sweep);
    return rc;
}

void evb_plot_result_destroy(evb_plot_result *res) {
    str_list a = {res->pictures, res->n_pictures, 0}, b = {res->no_convergence, res->n_no_convergence, 0};
    list_free(&a);
    list_free(&b);
    res->pictures = res->no_convergence = NULL;
    res->n_pictures = res->n_no_convergence = 0;
}
