/* main.c -- the evobudget program: a table of subcommands, argument parsing, progress display.
 * No algorithms live here: every subcommand parses and validates its options, calls into the library,
 * and prints either a human summary or (--json) one JSON object on stdout. Errors print one line on stderr
 * naming the file or flag and what is wrong, with a hint, and exit non-zero (2 for usage, 1 otherwise).
 * To add a subcommand: write cmd_<name>(argc, argv) and add a row to the commands[] table. */
#define _POSIX_C_SOURCE 200809L
#define _XOPEN_SOURCE 700  /* realpath */
#include "evobudget/evobudget.h"
#include "evobudget/evb_db.h"
#include "evobudget/evb_calib.h"
#include "cli/cli.h"

#include <errno.h>
#include <dirent.h>
#include <getopt.h>
#include <stdarg.h>
#include <stddef.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#ifdef EVB_MPI
#include <mpi.h>
#endif
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#ifndef EVB_SOURCE_DIR
#define EVB_SOURCE_DIR "."
#endif

const char *cmd_name = "evobudget";

// ---- errors ----

/* Usage errors: a bad or missing flag. Exit 2. */
int usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", cmd_name);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (hint: run '%s --help')\n", cmd_name);
    return 2;
}

/* A usage error with its own hint: one line "<command>: <message>", the message ending with "(hint: ...)". Exit 2. */
int refuse(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", cmd_name);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 2;
}

int refuse_status(const char *prefix) {
    const char *msg = evb_last_error();
    if (strstr(msg, "(hint:")) return refuse("%s%s", prefix, msg);
    return usage_error("%s%s", prefix, msg);
}

/* Library errors: print the recorded message with a hint chosen by status. Exit 1. */
int fail(int status) {
    const char *hint = "", *msg = evb_last_error();
    int writing = strstr(msg, "write failed") || strstr(msg, "cannot create") || strstr(msg, "cannot sync");
    switch (status) {
    case EVB_EIO: hint = writing ? "check that the directory is writable and its file system has room" : "check that the path exists and is readable"; break;
    case EVB_EFORMAT: hint = "the file is malformed, truncated or of another format: write it again with the command that made it, or fetch it again"; break;
    case EVB_ERANGE: hint = "the tokenizer and the model disagree; pass the model's own tokenizer with --tokenizer"; break;
    case EVB_ENOMEM: hint = "use a smaller --batch or --seq-len"; break;
    default: hint = "see --help"; break;
    }
    if (strstr(msg, "(hint:")) fprintf(stderr, "%s: error: %s\n", cmd_name, msg); /* the library gave one */
    else fprintf(stderr, "%s: error: %s (hint: %s)\n", cmd_name, msg[0] ? msg : evb_strerror(status), hint);
    return 1;
}

// ---- did you mean ----

/* The optimal string alignment distance of a[0..na) and b[0..nb): how many single-character insertions,
 * deletions, substitutions and swaps of two neighbours turn one into the other. Names of 32 bytes or more
 * are 32 away from everything (no option or command is that long). */
static int edit_distance(const char *a, size_t na, const char *b, size_t nb) {
    if (na >= 32 || nb >= 32) return 32;
    int d[32][32];
    for (size_t i = 0; i <= na; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= nb; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= na; i++)
        for (size_t j = 1; j <= nb; j++) {
            int v = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < v) v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < v) v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    return d[na][nb];
}

/* Writes "; did you mean 'NAME'?" into buf[n] for the one of names[n_names] closest to what the user typed,
 * or "" when none is close. Leading dashes and an "=value" do not count, so "-json" finds "--json" and
 * "serch" finds "search". Close: at most 2 edits and at most a third of the name's length (a 4-letter name
 * takes 1), or else typed is the start of one to four names (all of them are offered). Returns buf. */
const char *did_you_mean(const char *typed, const char *const *names, size_t n_names, char *buf, size_t n) {
    while (*typed == '-') typed++;
    size_t nt = strcspn(typed, "=");
    buf[0] = 0;
    int best = -1, best_d = 3;
    for (size_t i = 0; i < n_names; i++) {
        const char *name = names[i] + strspn(names[i], "-");
        int d = edit_distance(typed, nt, name, strlen(name));
        if (d < best_d && d <= (int)strlen(name) / 3) { best = (int)i; best_d = d; }
    }
    if (best >= 0) { snprintf(buf, n, "; did you mean '%s'?", names[best]); return buf; }
    size_t k = 0, match[4];
    for (size_t i = 0; i < n_names && nt >= 2; i++)
        if (strncmp(names[i] + strspn(names[i], "-"), typed, nt) == 0) {
            if (k == 4) return buf;
            match[k++] = i;
        }
    for (size_t i = 0, at = 0; i < k && at < n; i++)
        at += (size_t)snprintf(buf + at, n - at, "%s'%s'%s", i == 0 ? "; did you mean " : i + 1 < k ? ", " : " or ",
                               names[match[i]], i + 1 < k ? "" : "?");
    return buf;
}

// ---- options ----

#define OS(field) offsetof(opts, field)
static const opt_spec all_opts[] = {
    {"--model", 's', OS(model), 0, 0},
    {"--tokenizer", 's', OS(tokenizer), 0, 0},
    {"--prompt", 's', OS(prompt), 0, 0},
    {"--prompt-tokens", 's', OS(prompt_tokens), 0, 0},
    {"--data", 's', OS(data), 0, 0},
    {"--steps", 'i', OS(steps), 0, 1 << 20},
    {"--seq-len", 'i', OS(seq_len), 2, 1 << 20},
    {"--max-tokens", 'i', OS(max_tokens), 1, LONG_MAX},
    {"--batch", 'i', OS(batch), 1, 4096},
    {"--threads", 'i', OS(threads), 1, 1024},
    {"--compute", 's', OS(compute), 0, 0},
    {"--piece-bytes", 'i', OS(piece_bytes), 0, 1L << 40},
    {"--calib", 's', OS(calib), 0, 0},
    {"--db", 's', OS(db), 0, 0},
    {"--config", 's', OS(config), 0, 0},
    {"--uniform-sparsity", 's', OS(uniform_sparsity_s), 0, 0},
    {"--uniform-bits", 'i', OS(uniform_bits), 2, 8},
    {"--method", 's', OS(method), 0, 0},
    {"--sparsity", 's', OS(sparsity), 0, 0},
    {"--nm", 's', OS(nm), 0, 0},
    {"--step-target", 's', OS(step_target), 0, 0},
    {"--num-levels", 'i', OS(num_levels), 1, 64},
    {"--weights-diff", 'i', OS(weights_diff), 1, LONG_MAX},
    {"--protocol", 's', OS(protocol), 0, 0},
    {"--calib-level", 's', OS(calib_level), 0, 0},
    {"--bits", 's', OS(bits), 0, 0},
    {"--out", 's', OS(out), 0, 0},
    {"--group-size", 'i', OS(group_size), 0, 1 << 20},
    {"--calib-windows", 'i', OS(calib_windows), 1, 1 << 20},
    {"--seed", 'i', OS(seed), 0, LONG_MAX},
    {"--sym", 'b', OS(sym), 0, 0},
    {"--act-order", 'b', OS(act_order), 0, 0},
    {"--levels", 'b', OS(levels), 0, 0},
    {"--target-sparsity", 's', OS(target_sparsity), 0, 0},
    {"--target-bits", 's', OS(target_bits), 0, 0},
    {"--target-drop", 's', OS(target_drop), 0, 0},
    {"--target-bytes", 's', OS(target_bytes), 0, 0},
    {"--stages", 's', OS(stages), 0, 0},
    {"--compressor", 's', OS(compressor), 0, 0},
    {"--fitness", 's', OS(fitness), 0, 0},
    {"--teacher", 's', OS(teacher), 0, 0},
    {"--cache", 's', OS(cache), 0, 0},
    {"--problem", 's', OS(problem), 0, 0},
    {"--fitness-plugin", 's', OS(fitness_plugin), 0, 0},
    {"--fitness-cmd", 's', OS(fitness_cmd), 0, 0},
    {"--worker-timeout", 's', OS(worker_timeout), 0, 0},
    {"--workers", 'i', OS(workers), 1, 256},
    {"--worker-retries", 'i', OS(worker_retries), 0, 100},
    {"--generations", 's', OS(generations), 0, 0},
    {"--heldout", 's', OS(heldout), 0, 0},
    {"--offspring", 'i', OS(offspring), 1, 1 << 16},
    {"--initial", 'i', OS(initial), 0, 1 << 20},
    {"--reuse-mb", 'i', OS(reuse_mb), 0, 1 << 20},
    {"--resume", 'b', OS(resume), 0, 0},
    {"--no-reuse", 'b', OS(no_reuse), 0, 0},
    {"--no-memo", 'b', OS(no_memo), 0, 0},
    {"--reference", 's', OS(reference), 0, 0},
    {"--dtype", 's', OS(dtype), 0, 0},
    {"--format", 's', OS(format), 0, 0},
    {"--with", 's', OS(with), 0, 0},
    {"--force", 'b', OS(force), 0, 0},
    {"--yes", 'b', OS(yes), 0, 0},
    {"--json", 'b', OS(json), 0, 0},
    {"--help", 'b', OS(help), 0, 0},
};

/* Stores a flag's value v into its field of o, checking an integer's form and range. Returns 0 or an exit code. */
static int set_value(const opt_spec *sp, const char *v, opts *o) {
    char *field = (char *)o + sp->offset;
    if (!v[0]) return usage_error("%s needs a value, got an empty one", sp->flag);
    if (sp->kind == 's') { *(const char **)field = v; return 0; }
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end) return usage_error("%s '%s' is not an integer", sp->flag, v);
    if (x < sp->lo || x > sp->hi) return usage_error("%s %ld is outside [%ld, %ld]", sp->flag, x, sp->lo, sp->hi);
    *(long *)field = x;
    return 0;
}

/* Parses argv with getopt_long against the flags a subcommand accepts: a space-separated list whose first word,
 * when in capitals (DIR, RUNDIR), names the one positional argument the command takes (stored in o->arg).
 * Takes `--flag value` and `--flag=value`, -h for --help, and `--` before a positional argument that starts
 * with a dash. Names must be exact: getopt_long's abbreviations are refused (with a suggestion), because an
 * abbreviation that is unique today turns ambiguous when a flag is added. An empty value is refused too.
 * Returns 0, or an exit code after one line on stderr naming the flag. */
int parse_opts(int argc, char **argv, const char *accepted, opts *o) {
    enum { N_OPTS = sizeof all_opts / sizeof *all_opts, VAL = 256 };  /* getopt_long returns VAL + k for all_opts[k] */
    struct option lo[N_OPTS + 1];
    const char *names[N_OPTS];  /* [n] the accepted flags, for suggestions */
    int n = 0;
    char hay[2048];
    snprintf(hay, sizeof hay, " %s --help ", accepted);
    for (int k = 0; k < N_OPTS; k++) {
        char needle[64];
        snprintf(needle, sizeof needle, " %s ", all_opts[k].flag);
        if (!strstr(hay, needle)) continue;
        names[n] = all_opts[k].flag;
        lo[n++] = (struct option){all_opts[k].flag + 2, all_opts[k].kind == 'b' ? no_argument : required_argument, NULL, VAL + k};
    }
    lo[n] = (struct option){0};
    const int positional = accepted[0] >= 'A' && accepted[0] <= 'Z';

    /* getopt_long starts at argv[1]; ours holds options from argv[0]. */
    char **av = malloc(((size_t)argc + 2) * sizeof *av);
    if (!av) return usage_error("out of memory");
    av[0] = (char *)cmd_name;
    memcpy(av + 1, argv, (size_t)argc * sizeof *av);
    av[argc + 1] = NULL;
    opterr = 0;  /* the messages are ours */
    optind = 0;  /* glibc: start afresh */
    int rc = 0;
    char hint[256];
    while (!rc) {
        const int at = optind ? optind : 1;  /* the word getopt_long reads next (it permutes nothing here) */
        /* "-": non-options come back in order as 1, whatever POSIXLY_CORRECT says; ":": a missing value is ':'. */
        const int c = getopt_long(argc + 1, av, "-:h", lo, NULL);
        if (c == -1) break;
        const char *typed = av[at];
        const int k = c >= VAL ? c - VAL : (c == '?' || c == ':') && optopt >= VAL ? optopt - VAL : -1;
        const size_t len = strcspn(typed, "=");
        if (c == 1) {
            if (!positional || o->arg) rc = usage_error("unexpected argument '%s'", optarg);
            else o->arg = optarg;
        } else if (c == 'h') o->help = 1;
        else if (k < 0 || len != strlen(all_opts[k].flag))  /* unknown, ambiguous or abbreviated */
            rc = usage_error("unknown option '%.*s'%s", (int)len, typed, did_you_mean(typed, names, (size_t)n, hint, sizeof hint));
        else if (c == ':') rc = usage_error("%s needs a value", all_opts[k].flag);
        else if (c == '?') rc = usage_error("%s takes no value, got '%s'", all_opts[k].flag, typed);
        else if (all_opts[k].kind == 'b') *(int *)((char *)o + all_opts[k].offset) = 1;
        else rc = set_value(&all_opts[k], optarg, o);
    }
    for (int i = optind; !rc && i <= argc; i++) {  /* the words after `--` */
        if (!positional || o->arg) rc = usage_error("unexpected argument '%s'", av[i]);
        else o->arg = av[i];
    }
    free(av);
    return rc;
}

int is_dir(const char *p) { struct stat sb; return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode); }

/* The embedded default: the demo model shipped in assets/demo (EVB_HOME overrides the source directory). */
const char *default_asset(const char *name, char *buf, size_t n) {
    const char *home = getenv("EVB_HOME");
    snprintf(buf, n, "%s/assets/demo%s%s", home ? home : EVB_SOURCE_DIR, name[0] ? "/" : "", name);
    return buf;
}

double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void set_threads(const opts *o) {
    evb_init();
#ifdef _OPENMP
    if (o->threads) omp_set_num_threads((int)o->threads);
#else
    (void)o;
#endif
}

// ---- progress ----


void progress_cb(void *ctx, int done, int total) {
    progress *p = ctx;
    double t = now_s(), el = t - p->t0;
    if (done < total && t - p->last < (p->tty ? 0.2 : 5.0)) return;
    p->last = t;
    double eta = done ? el / done * (total - done) : 0;
    if (p->tty) {
        int w = 30, f = total ? done * w / total : w;
        fprintf(stderr, "\r%s [%.*s%*s] %d/%d  %.1fs elapsed, ETA %.1fs ", p->what, f,
                "##############################", w - f, "", done, total, el, eta);
        if (done == total) fputc('\n', stderr);
    } else fprintf(stderr, "%s: %d/%d %s, %.1fs elapsed, ETA %.1fs\n", p->what, done, total, p->items ? p->items : "windows", el, eta);
}

// ---- loading ----


void loaded_free(loaded *l) { evb_model_free(l->m); evb_tokenizer_free(l->t); }

int compute_opt(const opts *o) {
    int compute = evb_compute_parse(o->compute ? o->compute : "auto");
    if (compute < 0) { usage_error("--compute '%s' is none of auto, bf16, f32", o->compute); return -1; }
    if (compute == EVB_COMPUTE_BF16 && evb_compute_missing()) {
        usage_error("--compute bf16: %s; use --compute f32 or auto", evb_compute_missing());
        return -1;
    }
    return compute;
}

void calib_fingerprint(const evb_model *m, const evb_windows *w, char cfp[17]) {
    evb_fingerprint_windows(w, cfp);
    if (m->compute == EVB_COMPUTE_BF16 && strcmp(m->config.dtype, "BF16") != 0) {
        char desc[64];
        int nd = snprintf(desc, sizeof desc, "%s held as BF16", cfp);
        evb_hash_hex(desc, (size_t)nd, 0, cfp);
    }
}

int load_model(const opts *o, int need_tokenizer, loaded *l) {
    char buf[1024];
    const char *path = o->model ? o->model : default_asset("", buf, sizeof buf);
    memset(l, 0, sizeof *l);
    if (!o->model && !is_dir(path))
        return usage_error("no --model given and the embedded demo model is missing at %s", path);
    int compute = compute_opt(o);
    if (compute < 0) return 2;
    int s = evb_model_load_as(path, (evb_compute)compute, &l->m);
    if (s) return fail(s);
    if (!need_tokenizer) return 0;
    const char *tp = o->tokenizer ? o->tokenizer : l->m->tokenizer_path;
    if (!tp[0]) {
        loaded_free(l);
        return usage_error("no tokenizer beside %s; pass one with --tokenizer", path);
    }
    if ((s = evb_tokenizer_load(tp, &l->t))) { loaded_free(l); return fail(s); }
    if (evb_tokenizer_vocab_size(l->t) > l->m->config.vocab_size) {
        /* Not fatal by itself: only ids at or above the model's vocabulary are, and those are checked
         * where they are used. */
        fprintf(stderr, "%s: warning: tokenizer %s has %d tokens, the model %d\n", cmd_name, tp,
                evb_tokenizer_vocab_size(l->t), l->m->config.vocab_size);
    }
    return 0;
}

int print_json(json_t *j) {
    char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(j);
    if (!s) { fprintf(stderr, "%s: error: out of memory\n", cmd_name); return 1; }
    puts(s);
    free(s);
    return 0;
}

/* The most bytes of logits one forward of `eval` or one search thread holds (--batch is lowered to stay within). */
#define EVAL_LOGITS ((size_t)512 << 20)

int logits_batch(int batch, int seq_len, const evb_model *m, int copies) {
    size_t per_window = (size_t)seq_len * (size_t)m->config.vocab_size * sizeof(float) * (size_t)copies;
    if ((size_t)batch * per_window > EVAL_LOGITS) batch = per_window >= EVAL_LOGITS ? 1 : (int)(EVAL_LOGITS / per_window);
    return batch;
}

// ---- info ----

static int cmd_info(int argc, char **argv) {
    opts o = {0};
    int rc = parse_opts(argc, argv, "--model --compute --json", &o);
    if (rc || o.help) {
        if (o.help) printf("usage: evobudget info [--model PATH] [--json]\n"
                           "  Prints a model's architecture, sizes and compressible units.\n"
                           "  --model PATH  Hugging Face directory or llama2.c .bin (default: the embedded demo model)\n"
                           "  --compute auto|bf16|f32  how the weights are held and products computed (default auto)\n"
                           "  --json        one JSON object on stdout\n");
        return rc;
    }
    loaded l;
    if ((rc = load_model(&o, 0, &l))) return rc;
    const evb_config *c = &l.m->config;
    json_t *j = json_pack("{s:s, s:s, s:s, s:I, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:b, s:b, s:s, s:s}",
        "model", l.m->path, "arch", c->arch, "format", c->format, "n_params", (json_int_t)evb_model_n_params(l.m),
        "n_layers", c->n_layers, "n_units", evb_model_n_units(l.m), "dim", c->dim, "hidden_dim", c->hidden_dim,
        "n_heads", c->n_heads, "n_kv_heads", c->n_kv_heads, "head_dim", c->head_dim, "vocab_size", c->vocab_size,
        "max_seq_len", c->max_seq_len, "rope_theta", (double)c->rope_theta, "tied", c->tied, "qkv_bias", c->qkv_bias,
        "tokenizer", l.m->tokenizer_path, "blas", evb_blas_library());
    json_object_set_new(j, "blas_core", json_string(evb_blas_core()));
    char compute[160];
    const char *missing = evb_compute_missing();
    if (l.m->compute == EVB_COMPUTE_BF16) snprintf(compute, sizeof compute, "bf16 (oneDNN %s)", evb_compute_kernel());
    else snprintf(compute, sizeof compute, "f32 (OpenBLAS)%s%s", missing ? "; bf16 unavailable: " : "", missing ? missing : "");
    json_object_set_new(j, "compute", json_string(evb_compute_name(l.m->compute)));
    json_object_set_new(j, "compute_kernel", json_string(l.m->compute == EVB_COMPUTE_BF16 ? evb_compute_kernel() : "openblas sgemm"));
    json_object_set_new(j, "dtype", json_string(c->dtype));
    if (o.json) rc = print_json(j);
    else {
        printf("model       %s\narch        %s (%s format)\nparameters  %zu\nlayers      %d (%d compressible units)\n"
               "dim         %d, hidden %d, heads %d/%d (head dim %d)\nvocab       %d, context %d, rope theta %g%s%s\n"
               "tokenizer   %s\nblas        %s (%s kernels)\ncompute     %s, weights %s in the checkpoint\n",
               l.m->path, c->arch, c->format, evb_model_n_params(l.m), c->n_layers, evb_model_n_units(l.m), c->dim,
               c->hidden_dim, c->n_heads, c->n_kv_heads, c->head_dim, c->vocab_size, c->max_seq_len, c->rope_theta,
               c->tied ? ", tied embeddings" : "", c->qkv_bias ? ", q/k/v biases" : "",
               l.m->tokenizer_path[0] ? l.m->tokenizer_path : "(none)", evb_blas_library(), evb_blas_core(), compute, c->dtype);
        json_decref(j);
    }
    loaded_free(&l);
    return rc;
}

// ---- generate ----

static int parse_token_list(const char *s, int32_t **out, size_t *n) {
    size_t cap = strlen(s) / 2 + 2, k = 0;
    int32_t *t = malloc(cap * sizeof *t);
    if (!t) return usage_error("out of memory");
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < INT32_MIN || x > INT32_MAX) { free(t); return usage_error("--prompt-tokens '%s' is not a comma-separated list of integers", s); }
        t[k++] = (int32_t)x;
        p = end;
        if (*p == ',') p++;
        else if (*p) { free(t); return usage_error("--prompt-tokens '%s' is not a comma-separated list of integers", s); }
    }
    if (!k) { free(t); return usage_error("--prompt-tokens is empty"); }
    *out = t; *n = k;
    return 0;
}

/* A malloc'd copy of s[0..n) with each invalid UTF-8 sequence (its maximal valid prefix, as WHATWG and Rust's
 * from_utf8_lossy count) replaced by U+FFFD; NULL when out of memory. */
static char *utf8_lossy(const char *s, size_t n, size_t *out_len) {
    char *o = malloc(3 * n + 1);
    if (!o) return NULL;
    size_t k = 0;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned char c = u[i];
        int l = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        unsigned char lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80, hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
        size_t j = i + 1;
        if (l > 1 && j < n && u[j] >= lo && u[j] <= hi)
            for (j++; j < i + (size_t)l && j < n && (u[j] & 0xC0) == 0x80; j++) {}
        if (l && j - i == (size_t)l) { memcpy(o + k, s + i, (size_t)l); k += (size_t)l; }
        else { memcpy(o + k, "\xEF\xBF\xBD", 3); k += 3; }
        i = j;
    }
    o[k] = '\0';
    *out_len = k;
    return o;
}

static int cmd_generate(int argc, char **argv) {
    opts o = {0};
    o.steps = 64;
    int rc = parse_opts(argc, argv, "--model --tokenizer --prompt --prompt-tokens --steps --threads --compute --json", &o);
    if (rc || o.help) {
        if (o.help) printf("usage: evobudget generate [--model PATH] [--tokenizer PATH] --prompt TEXT [--steps N] [--json]\n"
                           "  Greedy decoding: appends N tokens (the most likely each time) to BOS + the prompt.\n"
                           "  --model PATH          Hugging Face directory or llama2.c .bin (default: the embedded demo model)\n"
                           "  --tokenizer PATH      tokenizer.json or tokenizer.bin (default: the one beside the model)\n"
                           "  --prompt TEXT         the prompt (default: empty, BOS only)\n"
                           "  --prompt-tokens IDS   the prompt as comma-separated token ids instead of text\n"
                           "  --steps N             new tokens to generate (default 64)\n"
                           "  --threads N           OpenMP threads (default: OMP_NUM_THREADS or all cores)\n"
                           COMPUTE_HELP
                           "  --json                one JSON object on stdout: tokens (BOS and prompt included), text\n");
        return rc;
    }
    if (o.prompt && o.prompt_tokens) return usage_error("give --prompt or --prompt-tokens, not both");
    set_threads(&o);
    loaded l;
    if ((rc = load_model(&o, 1, &l))) return rc;
    const evb_config *c = &l.m->config;
    int32_t *prompt = NULL;
    size_t np = 0;
    int s = EVB_SUCCESS;
    if (o.prompt_tokens) rc = parse_token_list(o.prompt_tokens, &prompt, &np);
    else {
        const char *p = o.prompt ? o.prompt : "";
        s = evb_tokenizer_encode(l.t, p, strlen(p), 1, &prompt, &np);
    }
    if (rc || s) { loaded_free(&l); return rc ? rc : fail(s); }
    for (size_t i = 0; i < np; i++)
        if (prompt[i] < 0 || prompt[i] >= c->vocab_size) {
            fprintf(stderr, "%s: error: prompt token %d (position %zu) is outside the model's vocabulary [0, %d) (hint: use the model's own tokenizer)\n",
                    cmd_name, prompt[i], i, c->vocab_size);
            free(prompt); loaded_free(&l);
            return 1;
        }
    size_t total = np + (size_t)o.steps;
    if (total > (size_t)c->max_seq_len) {
        int ctx = c->max_seq_len;
        free(prompt); loaded_free(&l);
        return usage_error("--steps %ld: prompt (%zu tokens) + steps exceed the model's context of %d", o.steps, np, ctx);
    }
    int32_t *seq = malloc(total * sizeof *seq);
    evb_state *st = NULL;
    if (!seq) s = EVB_RAISEF(EVB_ENOMEM, "out of memory");
    else s = evb_state_alloc(l.m, 1, (int)total, &st);
    if (!s) memcpy(seq, prompt, np * sizeof *seq);
    double t0 = now_s();
    size_t n = np;
    /* Each step reruns the whole sequence: simple, and the batched forward makes it cheap at these sizes. */
    while (!s && n < total) {
        s = evb_forward(l.m, st, seq, 1, (int)n);
        if (s) break;
        const float *row = st->logits + (n - 1) * c->vocab_size;
        int best = 0;
        for (int v = 1; v < c->vocab_size; v++) if (row[v] > row[best]) best = v;
        seq[n++] = best;
    }
    double el = now_s() - t0;
    char *text = NULL;
    size_t tlen = 0;
    /* Ids past the tokenizer's vocabulary (an embedding padded beyond it, as Qwen checkpoints are) have no
     * text: they are left out of the decoded text and kept in "tokens". */
    int tv = evb_tokenizer_vocab_size(l.t);
    int32_t *known = s ? NULL : malloc((n ? n : 1) * sizeof *known);
    size_t nk = 0;
    if (!s && !known) s = EVB_RAISEF(EVB_ENOMEM, "out of memory");
    for (size_t i = 0; known && i < n; i++)
        if (seq[i] < tv) known[nk++] = seq[i];
    if (!s) s = evb_tokenizer_decode(l.t, known, nk, &text, &tlen);
    free(known);
    if (!s) {
        if (o.json) {
            /* JSON strings are UTF-8: a tokenizer.bin's byte tokens can leave a partial character, which
             * becomes U+FFFD as in Hugging Face's decode (tokenizer.json decoding already does this). */
            char *valid = utf8_lossy(text, tlen, &tlen);
            json_t *toks = json_array();
            for (size_t i = 0; i < n; i++) json_array_append_new(toks, json_integer(seq[i]));
            json_t *j = valid ? json_pack("{s:o, s:s%, s:i, s:i, s:f}", "tokens", toks, "text", valid, tlen,
                                  "n_prompt", (int)np, "steps", (int)o.steps, "seconds", el) : NULL;
            if (!valid) json_decref(toks);
            free(valid);
            rc = print_json(j);
        } else {
            fwrite(text, 1, tlen, stdout);
            printf("\n");
            fprintf(stderr, "%ld tokens in %.3fs\n", o.steps, el);
        }
    } else rc = fail(s);
    free(text); free(seq); free(prompt);
    evb_state_free(st);
    loaded_free(&l);
    return rc;
}

// ---- eval ----

/* The compressed weights of a configuration (best.json's format, problems/config.c), or with none the same
 * level for every unit (--uniform-sparsity / --uniform-bits with --method, --group-size, --sym). Writes
 * weights[U] (NULL for dense units) pointing into *mem, which the caller frees. */
int load_levels(const evb_model *m, const opts *o, const char *db_dir, const evb_allocation *cfg, const float ***weights, float **mem) {
    char mfp[17];
    evb_fingerprint_model(m, mfp);
    evb_db *db;
    evb_allocation *uni = NULL;
    int s = evb_db_open(db_dir, mfp, NULL, 0, &db);
    if (!s && (s = evb_db_check_model(db, m))) { evb_db_close(db); db = NULL; }
    if (!s && !cfg) {
        const evb_method *me = evb_method_find(o->method ? o->method : o->uniform_bits ? "gptq" : "sparsegpt");
        evb_db_entry key = {0};
        if (!me) { evb_db_close(db); return usage_error("--method '%s' is unknown (%s)", o->method, evb_method_names()); }
        snprintf(key.method, sizeof key.method, "%s", me->name);
        key.kind = me->kind;
        if (me->kind == EVB_LEVEL_SPARSE) key.sparsity = o->uniform_sparsity;
        else { key.bits = (int)o->uniform_bits; key.group_size = (int)o->group_size; key.sym = o->sym; }
        s = evb_allocation_uniform(m, &key, &uni);
    }
    if (!s) s = evb_allocation_weights(cfg ? cfg : uni, m, db, db_dir, weights, mem);
    evb_allocation_free(uni);
    evb_db_close(db);
    return s ? fail(s) : 0;
}

int config_check(const evb_model *m, const char *path, const evb_allocation *cfg, unsigned char **drop) {
    int s = evb_allocation_check(cfg, m, path);
    if (s) return refuse_status("--config ");
    if ((s = evb_allocation_drop_mask(cfg, m, drop))) return fail(s);
    return 0;
}

int config_read(const char *path, evb_allocation **cfg) {
    int s = evb_allocation_read(path, cfg);
    if (s == EVB_ENOMEM) return fail(s);
    return s ? refuse_status("--config ") : 0;
}

/* The dense model an exported directory came from: --reference, else the "source" its compression.json
 * records (when that path exists). Returns 0 with *ref NULL when there is none. */
static int load_reference(const opts *o, const evb_model *m, evb_model **ref, char *which, size_t n) {
    *ref = NULL;
    const char *path = o->reference;
    json_t *rec = NULL;
    if (!path && strcmp(m->config.format, "hf") == 0) {
        char rp[1300];
        snprintf(rp, sizeof rp, "%s/compression.json", m->path);
        rec = json_load_file(rp, 0, NULL);
        const char *src = json_string_value(json_object_get(rec, "source"));
        struct stat sb;
        if (src && stat(src, &sb) == 0) path = src;
        else if (src) fprintf(stderr, "%s: note: %s names the source model %s, which is not there; no kl (hint: --reference PATH)\n", cmd_name, rp, src);
    }
    int rc = 0;
    if (path) {
        snprintf(which, n, "%s", path);
        int compute = compute_opt(o), s = compute < 0 ? EVB_EINVAL : evb_model_load_as(path, (evb_compute)compute, ref);
        if (s) rc = fail(s);
    }
    json_decref(rec);
    return rc;
}

/* Whether path (NULL: no --model) is the embedded demo model, or a directory 'evobudget export' wrote from it
 * (its compression.json names the demo as the source): the models whose language the demo's calibration
 * text is written in, and so the models eval may score it with when no --data is given. 1 too for a path
 * that does not resolve, so that loading it reports what is wrong with it. */
static int is_demo_model(const char *path) {
    char buf[1024], demo[PATH_MAX], p[PATH_MAX], rp[PATH_MAX + 32];
    if (!path) return 1;
    if (!realpath(path, p)) return 1;  /* not there: loading it says so, naming the path */
    if (!realpath(default_asset("", buf, sizeof buf), demo)) return 0;
    if (strcmp(demo, p) == 0) return 1;
    snprintf(rp, sizeof rp, "%s/compression.json", p);
    json_t *rec = is_dir(p) ? json_load_file(rp, 0, NULL) : NULL;
    const char *src = json_string_value(json_object_get(rec, "source"));
    int from_demo = src && realpath(src, p) && strcmp(demo, p) == 0;
    json_decref(rec);
    return from_demo;
}

/* Appends name to list[*n] (at most cap) unless it is there. */
static void add_name(const char **list, int *n, int cap, const char *name) {
    for (int i = 0; i < *n; i++) if (strcmp(list[i], name) == 0) return;
    if (*n < cap) list[(*n)++] = name;
}

/* "a, b and c" of list[n] into buf[cap]. */
static const char *join_names(const char *const *list, int n, char *buf, size_t cap) {
    buf[0] = 0;
    for (int i = 0, at = 0; i < n && at < (int)cap; i++)
        at += snprintf(buf + at, cap - (size_t)at, "%s%s", i == 0 ? "" : i + 1 < n ? ", " : " and ", list[i]);
    return buf;
}

/* eval --uniform-sparsity / --uniform-bits without --method (bits: or without --group-size, or --sym): what the
 * database db_dir holds of that kind of level, when it is one thing. Fills o->method (kept in method[16]),
 * o->group_size (-1 on entry when --group-size was not given) and o->sym; refuses in one line that lists what the
 * database holds and names the flag that picks one. Returns 0 or an exit code. */
static int uniform_defaults(const char *db_dir, opts *o, char method[16]) {
    evb_db *db;
    int s = evb_db_open(db_dir, NULL, NULL, 0, &db);
    if (s) return fail(s);
    const int kind = o->uniform_bits ? EVB_LEVEL_QUANT : EVB_LEVEL_SPARSE, n = evb_db_count(db);
    const char *flag = kind == EVB_LEVEL_QUANT ? "--uniform-bits" : "--uniform-sparsity";
    const char *what = kind == EVB_LEVEL_QUANT ? "quantized" : "sparse";
    evb_db_entry *e = malloc(sizeof *e * (size_t)(n ? n : 1));
    if (!e) { evb_db_close(db); return fail(EVB_RAISEF(EVB_ENOMEM, "out of memory")); }
    for (int i = 0; i < n; i++) e[i] = evb_db_get(db, i);
    evb_db_close(db);
    const char *all[8], *ours[8];  /* [n_all] every method the database holds, [n_ours] those of this kind */
    int n_all = 0, n_ours = 0, rc = 0, groups[16], n_groups = 0, sym_seen[2] = {0, 0};
    for (int i = 0; i < n; i++) {
        add_name(all, &n_all, 8, e[i].method);
        if (e[i].kind == kind) add_name(ours, &n_ours, 8, e[i].method);
    }
    char names[160];
    if (!o->method && n_ours == 0)
        rc = refuse("%s: %s holds no %s levels%s%s (hint: %s, or build them with 'evobudget db build --method %s --out %s')",
                    flag, db_dir, what, n_all ? "; it holds levels of " : "", join_names(all, n_all, names, sizeof names),
                    kind == EVB_LEVEL_QUANT ? "--uniform-sparsity X picks a sparse level" : "--uniform-bits B picks a quantized level",
                    kind == EVB_LEVEL_QUANT ? "gptq --bits LIST" : "sparsegpt --sparsity LIST", db_dir);
    else if (!o->method && n_ours > 1)
        rc = refuse("%s: %s holds %s levels of %d methods: %s (hint: pick one with --method NAME)", flag, db_dir, what, n_ours,
                    join_names(ours, n_ours, names, sizeof names));
    else if (!o->method) o->method = strcpy(method, ours[0]);
    for (int i = 0; !rc && kind == EVB_LEVEL_QUANT && i < n; i++) {
        if (e[i].kind != kind || strcmp(e[i].method, o->method) != 0) continue;
        int k = 0;
        while (k < n_groups && groups[k] != e[i].group_size) k++;
        if (k == n_groups && n_groups < 16) groups[n_groups++] = e[i].group_size;
        if (o->group_size < 0 || o->group_size == e[i].group_size) sym_seen[!!e[i].sym] = 1;
    }
    if (!rc && kind == EVB_LEVEL_QUANT && o->group_size < 0 && n_groups > 1) {
        int at = 0;
        for (int k = 0; k < n_groups && at < (int)sizeof names; k++)
            at += snprintf(names + at, sizeof names - (size_t)at, "%s%d", k ? ", " : "", groups[k]);
        rc = refuse("%s: %s holds %s levels of group sizes %s (0: one scale per row) (hint: pick one with --group-size N)",
                    flag, db_dir, o->method, names);
    }
    if (!rc && o->group_size < 0) o->group_size = n_groups == 1 ? groups[0] : 0;
    if (!rc && sym_seen[1] && !sym_seen[0]) o->sym = 1;  /* only symmetric levels: --sym need not be said */
    free(e);
    return rc;
}

static int cmd_eval(int argc, char **argv) {
    opts o = {0};
    o.batch = 8; o.piece_bytes = 4000;
    o.group_size = -1;  /* not given: --uniform-bits takes the database's when it holds one */
    int rc = parse_opts(argc, argv, "--model --tokenizer --data --seq-len --max-tokens --calib-windows --batch --threads --piece-bytes --db --config --uniform-sparsity --uniform-bits --method --group-size --sym --reference --compute --json", &o);
    if (rc || o.help) {
        if (o.help) printf("usage: evobudget eval [--model PATH] [--tokenizer PATH] [--data TEXTFILE] [--seq-len N] [--max-tokens N] [--json]\n"
                           "  Perplexity of a model on a text file.\n"
                           "  --model PATH       Hugging Face directory or llama2.c .bin (default: the embedded demo model)\n"
                           "  --tokenizer PATH   tokenizer.json or tokenizer.bin (default: the one beside the model)\n"
                           "  --data TEXTFILE    text to score (default for the demo model and its exports: its calibration text,\n"
                           "                     assets/demo/calib.txt; any other model needs one)\n"
                           "  --seq-len N        positions per window: BOS + N-1 text tokens, all scored (default: min(512, context))\n"
                           "  --max-tokens N     score at most N tokens (default: the whole text)\n"
                           "  --calib-windows N  score the N windows 'search --calib-windows N' samples from this text instead\n"
                           "                     (its calibration set: kl is then the search's fitness on all of it)\n"
                           "  --batch N          windows per forward pass (default 8; lowered so that one forward holds at most 512 MiB of logits)\n"
                           "  --piece-bytes N    encode the text in pieces of at most N bytes cut after a newline, as llama2.c\n"
                           "                     does (default 4000; 0 encodes it whole)\n"
                           "  --threads N        OpenMP threads (default: OMP_NUM_THREADS or all cores)\n"
                           COMPUTE_HELP
                           "  --db DIR           a level database of the model, with one of:\n"
                           "  --config FILE      per-unit levels (best.json's format, or a run directory holding one; its model\n"
                           "                     and db are the defaults)\n"
                           "  --uniform-sparsity X, --uniform-bits B   the same level for every unit\n"
                           "                     (--method NAME, and for bits --group-size N and --sym: default what the database\n"
                           "                     holds of that kind when it is one method, group size and grid)\n"
                           "  --reference PATH   also report kl, the mean per-token KL(reference || model), e.g. the dense model\n"
                           "                     a compressed one came from (default for a directory written by 'evobudget\n"
                           "                     export': the source its compression.json records, when it is there)\n"
                           "  --json             one JSON object on stdout: perplexity, nll (mean per token), tokens (scored);\n"
                           "                     with a configuration also kl, the mean per-token KL(dense || compressed)\n");
        return rc;
    }
    evb_allocation *cfg = NULL;
    if (o.config) {
        if ((rc = config_read(o.config, &cfg))) return rc;
        if (!o.model && cfg->model[0]) o.model = cfg->model;
        if (!o.db && cfg->db[0]) o.db = cfg->db;
    }
    int n_cfg = !!o.config + !!o.uniform_sparsity_s + !!o.uniform_bits;
    if (n_cfg > 1) { evb_allocation_free(cfg); return usage_error("give one of --config, --uniform-sparsity, --uniform-bits"); }
    if (o.calib_windows && o.max_tokens) { evb_allocation_free(cfg); return usage_error("give --max-tokens or --calib-windows, not both"); }
    if (n_cfg && o.reference) { evb_allocation_free(cfg); return usage_error("--reference compares two models; a configuration is compared with its own dense model (give one of them)"); }
    int no_levels = cfg && cfg->n_units == 0; /* only dropped sub-blocks */
    if (n_cfg && !o.db && !no_levels) { evb_allocation_free(cfg); return usage_error("a configuration needs --db DIR (the level database)"); }
    if (o.uniform_sparsity_s) {
        char *end;
        o.uniform_sparsity = strtod(o.uniform_sparsity_s, &end);
        if (*end || !(o.uniform_sparsity > 0 && o.uniform_sparsity < 1)) return usage_error("--uniform-sparsity '%s' must be a number in (0, 1)", o.uniform_sparsity_s);
    }
    char method[16];
    if ((o.uniform_sparsity_s || o.uniform_bits) && o.db && (rc = uniform_defaults(o.db, &o, method))) return rc;
    if (o.group_size < 0) o.group_size = 0;
    if (!o.data && !is_demo_model(o.model)) {
        evb_allocation_free(cfg);
        return refuse("--data is needed for a model other than the demo (%s): without it eval would score the demo's "
                      "calibration text (hint: --data TEXTFILE, e.g. a held-out text of the model's language)", o.model);
    }
    set_threads(&o);
    loaded l;
    if ((rc = load_model(&o, 1, &l))) { evb_allocation_free(cfg); return rc; }
    const float **weights = NULL;
    float *wmem = NULL;
    unsigned char *drop = NULL;
    if (cfg && (rc = config_check(l.m, o.config, cfg, &drop))) { evb_allocation_free(cfg); loaded_free(&l); return rc; }
    if (no_levels) weights = calloc((size_t)evb_model_n_units(l.m), sizeof *weights);
    else if (n_cfg && (rc = load_levels(l.m, &o, o.db, cfg, &weights, &wmem))) { free(drop); evb_allocation_free(cfg); loaded_free(&l); return rc; }
    evb_model *ref = NULL;
    char ref_path[1300] = "";
    if (!n_cfg && (rc = load_reference(&o, l.m, &ref, ref_path, sizeof ref_path))) { loaded_free(&l); return rc; }
    char buf[1024];
    const char *data = o.data ? o.data : default_asset("calib.txt", buf, sizeof buf);
    int seq_len = o.seq_len ? (int)o.seq_len : (l.m->config.max_seq_len < 512 ? l.m->config.max_seq_len : 512);
    if (seq_len > l.m->config.max_seq_len) {
        int ctx = l.m->config.max_seq_len;
        loaded_free(&l);
        return usage_error("--seq-len %d exceeds the model's context of %d", seq_len, ctx);
    }
    char *text = NULL;
    size_t len = 0, n_tok = 0, scored = 0;
    int32_t *tok = NULL;
    evb_windows w = {0};
    evb_state *st = NULL;
    double nll = 0, t0 = now_s();
    int s = evb_text_read(data, &text, &len);
    if (!s) s = evb_text_tokenize(l.t, text, len, (size_t)o.piece_bytes, &tok, &n_tok);
    if (!s && o.calib_windows) s = evb_windows_sample(tok, n_tok, seq_len, evb_tokenizer_bos(l.t), (int)o.calib_windows, 0, &w);
    else if (!s) s = evb_windows_consecutive(tok, n_tok, seq_len, evb_tokenizer_bos(l.t), (size_t)o.max_tokens, &w);
    int batch = logits_batch((int)o.batch < w.n ? (int)o.batch : (w.n > 0 ? w.n : 1), seq_len, l.m, weights || ref ? 2 : 1);
    if (!s) s = evb_state_alloc(l.m, batch, seq_len, &st);
    double t1 = now_s();
    progress p = {t1, "eval", isatty(2), 0, "windows"};
    double kl = 0;
    if (!s && weights) s = evb_eval_nll_kl(l.m, st, &w, batch, weights, drop, &nll, &kl, &scored, progress_cb, &p);
    else if (!s && ref) s = evb_eval_nll_kl_ref(ref, l.m, st, &w, batch, &nll, &kl, &scored, progress_cb, &p);
    else if (!s) s = evb_eval_nll(l.m, st, &w, batch, &nll, &scored, progress_cb, &p);
    double t2 = now_s();
    /* The library refuses NaN sums; what is left is a mean too large for exp() (or nothing scored). */
    if (!s && scored == 0) s = EVB_RAISEF(EVB_EINVAL, "%s: no token was scored (hint: give a longer text or a larger --seq-len)", data);
    else if (!s && !isfinite(exp(nll / (double)scored)))
        s = EVB_RAISEF(EVB_EBADFUNC, "%s: the mean negative log-likelihood %.6g per token makes the perplexity overflow a double "
                       "(hint: the model's weights are out of range; check where the checkpoint came from)", l.m->path, nll / (double)scored);
    if (!s) {
        double mean = nll / (double)scored, ppl = exp(mean);
        json_t *j = json_pack("{s:f, s:f, s:I, s:i, s:i, s:s, s:s, s:f, s:f}", "perplexity", ppl, "nll", mean,
                              "tokens", (json_int_t)scored, "windows", w.n, "seq_len", seq_len, "model", l.m->path,
                              "data", data, "seconds", t2 - t0, "tokens_per_s", scored / (t2 - t1));
        if (weights || ref) json_object_set_new(j, "kl", json_real(kl / (double)scored));
        if (weights) json_object_set_new(j, "db", json_string(o.db));
        if (ref) json_object_set_new(j, "reference", json_string(ref_path));
        if (o.json) rc = print_json(j);
        else {
            printf("perplexity %.4f  (nll %.5f per token over %zu tokens, %d windows of %d, %.1fs)", ppl, mean, scored, w.n, seq_len, t2 - t0);
            if (weights || ref) printf("  kl %.5f per token", kl / (double)scored);
            printf("\n");
            json_decref(j);
        }
    } else rc = fail(s);
    free(weights); free(wmem); free(drop);
    evb_model_free(ref);
    evb_allocation_free(cfg);
    evb_state_free(st);
    evb_windows_free(&w);
    free(tok); free(text);
    loaded_free(&l);
    return rc;
}

// ---- db ----

static int cmd_db_info(int argc, char **argv) {
    opts o = {0};
    int rc = parse_opts(argc, argv, "DIR --json --levels", &o);
    const char *dir = o.arg;
    if (rc || o.help) {
        if (o.help) printf("usage: evobudget db info DIR [--levels] [--json]\n"
                           "  Summarises a level database: its fingerprints, and per method the levels, bytes on disk and\n"
                           "  mean relative reconstruction error. --levels lists every level (unit, method, level, costs,\n"
                           "  reconstruction error).\n");
        return rc;
    }
    if (!dir) return usage_error("db info needs the database directory");
    evb_db *db;
    int s = evb_db_open(dir, NULL, NULL, 0, &db);
    if (s) return fail(s);
    json_t *methods = json_object(), *levels = json_array();
    uint64_t total = 0;
    int n = evb_db_count(db);
    for (int i = 0; i < n; i++) {
        evb_db_entry e = evb_db_get(db, i);
        if (o.levels)
            json_array_append_new(levels, json_pack("{s:i, s:s, s:s, s:s, s:f, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:I, s:f}",
                "unit", e.unit, "name", evb_linear_name(e.unit % EVB_LINEAR_COUNT), "method", e.method,
                "dtype", evb_db_dtype_name(e.dtype), "sparsity", e.sparsity,
                "n_keep", e.n_keep, "m", e.m, "bits", e.bits, "group_size", e.group_size, "rows", e.rows, "cols", e.cols,
                "params_kept", e.params_kept, "bits_stored", e.bits_stored, "bytes", (json_int_t)e.bytes, "recon_error", e.recon_error));
        json_t *mj = json_object_get(methods, e.method);
        if (!mj) { mj = json_pack("{s:i, s:I, s:f, s:f}", "levels", 0, "bytes", (json_int_t)0, "mean_recon_error", 0.0, "params_kept", 0.0); json_object_set_new(methods, e.method, mj); }
        json_object_set_new(mj, "levels", json_integer(json_integer_value(json_object_get(mj, "levels")) + 1));
        json_object_set_new(mj, "bytes", json_integer(json_integer_value(json_object_get(mj, "bytes")) + (json_int_t)e.bytes));
        json_object_set_new(mj, "mean_recon_error", json_real(json_real_value(json_object_get(mj, "mean_recon_error")) + e.recon_error));
        json_object_set_new(mj, "params_kept", json_real(json_real_value(json_object_get(mj, "params_kept")) + e.params_kept));
        total += e.bytes;
    }
    const char *key;
    json_t *mj;
    json_object_foreach(methods, key, mj) {
        double lv = (double)json_integer_value(json_object_get(mj, "levels"));
        json_object_set_new(mj, "mean_recon_error", json_real(json_real_value(json_object_get(mj, "mean_recon_error")) / lv));
    }
    json_t *j = json_pack("{s:s, s:i, s:s, s:s, s:i, s:I, s:o}", "db", dir, "format", EVB_DB_FORMAT,
                          "model", evb_db_model_fingerprint(db), "calib", evb_db_calib_fingerprint(db),
                          "entries", n, "bytes", (json_int_t)total, "methods", methods);
    if (o.levels) json_object_set_new(j, "levels", levels);
    else json_decref(levels);
    evb_db_close(db);
    if (o.json) return print_json(j);
    printf("database %s: %d levels, %.2f MB (model %s, calibration %s)\n", dir, n, total / 1e6,
           json_string_value(json_object_get(j, "model")), json_string_value(json_object_get(j, "calib")));
    json_object_foreach(methods, key, mj)
        printf("  %-10s %4d levels  %10.2f MB  mean recon error %.4g\n", key, (int)json_integer_value(json_object_get(mj, "levels")),
               json_integer_value(json_object_get(mj, "bytes")) / 1e6, json_real_value(json_object_get(mj, "mean_recon_error")));
    json_decref(j);
    return 0;
}

/* "0.5,0.7" or "2,3,4" into at most cap numbers. */
int parse_list(const char *flag, const char *s, double *out, int cap, int *n) {
    *n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        double x = strtod(p, &end);
        if (end == p || errno || !isfinite(x) || *n == cap) return usage_error("%s '%s' is not a comma-separated list of at most %d numbers", flag, s, cap);
        out[(*n)++] = x;
        p = end;
        if (*p == ',') p++;
        else if (*p) return usage_error("%s '%s' is not a comma-separated list of numbers", flag, s);
    }
    if (!*n) return usage_error("%s is empty", flag);
    return 0;
}

static int cmd_db_build(int argc, char **argv) {
    opts o = {0};
    o.seed = 0; o.calib_windows = 32; o.batch = 8; o.piece_bytes = 4000;
    o.num_levels = 8;
    int rc = parse_opts(argc, argv, "--model --tokenizer --calib --method --sparsity --nm --step-target --num-levels --weights-diff --bits --group-size --sym --act-order --protocol --calib-level --out --calib-windows --seq-len --seed --batch --threads --compute --json", &o);
    if (rc || o.help) {
        if (o.help) printf("usage: evobudget db build [--model PATH] [--calib TEXTFILE] --method NAME LEVELS --out DIR [--json]\n"
                           "  Compresses every linear layer at every level asked for and stores the levels in the database DIR\n"
                           "  (created when missing, extended when it exists: levels already there are not recomputed).\n"
                           "  --method NAME          magnitude, wanda, sparsegpt (sparsity); rtn, gptq (quantization)\n"
                           "  --sparsity LIST        fractions of weights removed, e.g. 0.1,0.2,...,0.9\n"
                           "  --nm N:M               semi-structured pattern instead, e.g. 2:4\n"
                           "  --step-target S        EvoPress's equal-step grid instead: around sparsity S, level l of a layer\n"
                           "                         removes exactly round(S N) + l D weights (N its size, D the step), so\n"
                           "                         trading one level between any two layers keeps the total constant\n"
                           "  --num-levels K         levels each side of the target (default 8)\n"
                           "  --weights-diff D       the step in weights (default int(0.5 min(S, 1-S) / K dim^2))\n"
                           "  --bits LIST            bit widths 2..8, e.g. 2,3,4\n"
                           "  --group-size N         inputs per quantization scale (default 0: one per output row)\n"
                           "  --sym                  symmetric grid (default asymmetric)\n"
                           "  --act-order            GPTQ: quantize columns by decreasing Hessian diagonal\n"
                           "  --protocol P           dense (default): every layer calibrated on the dense model's inputs, so\n"
                           "                         levels are independent; sequential: block by block through the blocks\n"
                           "                         before it as compressed at --calib-level (SparseGPT/GPTQ's protocol)\n"
                           "  --calib-level X        sequential: the sparsity or bits passed on (default: the step target,\n"
                           "                         or the middle of the list)\n"
                           "  --calib TEXTFILE       calibration text (default: assets/demo/calib.txt)\n"
                           "  --calib-windows N      windows sampled from it (default 32) of --seq-len positions\n"
                           "  --seq-len N            (default: min(512, context))\n"
                           "  --seed N               sampling seed (default 0)\n"
                           "  --out DIR              the database directory\n"
                           "  --threads N            levels built in parallel (default: OMP_NUM_THREADS or all cores)\n"
                           COMPUTE_HELP
                           "  --json                 one JSON object on stdout\n");
        return rc;
    }
    if (!o.method) return usage_error("--method is required (%s)", evb_method_names());
    const evb_method *method = evb_method_find(o.method);
    if (!method) return usage_error("--method '%s' is unknown (%s)", o.method, evb_method_names());
    if (!o.out) return usage_error("--out DIR is required");
    double sp[64], bl[16], step_target = 0;
    int n_sp = 0, n_bits = 0, nk = 0, nm = 0, sequential = 0;
    if (o.protocol && strcmp(o.protocol, "dense") && strcmp(o.protocol, "sequential")) return usage_error("--protocol '%s' must be dense or sequential", o.protocol);
    sequential = o.protocol && strcmp(o.protocol, "sequential") == 0;
    if (o.calib_level && !sequential) return usage_error("--calib-level goes with --protocol sequential");
    if (sequential && o.nm) return usage_error("--protocol sequential is for --sparsity, --step-target and --bits levels");
    if ((o.num_levels != 8 || o.weights_diff) && !o.step_target) return usage_error("--num-levels and --weights-diff go with --step-target");
    if (method->kind == EVB_LEVEL_SPARSE) {
        if (o.bits) return usage_error("--bits is for rtn and gptq, not %s", o.method);
        if (!!o.sparsity + !!o.nm + !!o.step_target != 1) return usage_error("%s needs exactly one of --sparsity LIST, --step-target S or --nm N:M", o.method);
        if (o.step_target) {
            char *end;
            step_target = strtod(o.step_target, &end);
            if (*end || end == o.step_target || !(step_target > 0 && step_target < 1)) return usage_error("--step-target '%s' must be a number in (0, 1)", o.step_target);
        }
        if (o.sparsity && (rc = parse_list("--sparsity", o.sparsity, sp, 64, &n_sp))) return rc;
        for (int i = 0; i < n_sp; i++) if (!(sp[i] > 0 && sp[i] < 1)) return usage_error("--sparsity %g must lie in (0, 1)", sp[i]);
        if (o.nm && (sscanf(o.nm, "%d:%d", &nk, &nm) != 2 || nk < 1 || nm < 2 || nk >= nm || nm > 64))
            return usage_error("--nm '%s' must be N:M with 1 <= N < M <= 64, e.g. 2:4", o.nm);
    } else {
        if (o.sparsity || o.nm || o.step_target) return usage_error("--sparsity, --step-target and --nm are for magnitude, wanda and sparsegpt, not %s", o.method);
        if (!o.bits) return usage_error("%s needs --bits LIST", o.method);
        if ((rc = parse_list("--bits", o.bits, bl, 16, &n_bits))) return rc;
        for (int i = 0; i < n_bits; i++) if (bl[i] != (int)bl[i] || bl[i] < 2 || bl[i] > 8) return usage_error("--bits %g must be an integer in [2, 8]", bl[i]);
    }
    int bits[16];
    for (int i = 0; i < n_bits; i++) bits[i] = (int)bl[i];
    double calib_value = step_target ? step_target : n_sp ? sp[n_sp / 2] : n_bits ? bl[n_bits / 2] : 0;
    if (o.calib_level) {
        char *end;
        calib_value = strtod(o.calib_level, &end);
        if (*end || end == o.calib_level || !isfinite(calib_value)) return usage_error("--calib-level '%s' is not a number", o.calib_level);
    }
    set_threads(&o);
    loaded l;
    if ((rc = load_model(&o, 1, &l))) return rc;
    char buf[1024];
    const char *calib = o.calib ? o.calib : default_asset("calib.txt", buf, sizeof buf);
    int seq_len = o.seq_len ? (int)o.seq_len : (l.m->config.max_seq_len < 512 ? l.m->config.max_seq_len : 512);
    char *text = NULL;
    size_t len = 0, n_tok = 0;
    int32_t *tok = NULL;
    evb_windows w = {0};
    evb_calib *cs = NULL;
    evb_db *db = NULL;
    int built = 0, present = 0;
    double t0 = now_s();
    int s = evb_text_read(calib, &text, &len);
    if (!s) s = evb_text_tokenize(l.t, text, len, (size_t)o.piece_bytes, &tok, &n_tok);
    if (!s) s = evb_windows_sample(tok, n_tok, seq_len, evb_tokenizer_bos(l.t), (int)o.calib_windows, (uint64_t)o.seed, &w);
    char mfp[17], cfp[17];
    if (!s) {
        evb_fingerprint_model(l.m, mfp);
        calib_fingerprint(l.m, &w, cfp);
        if (sequential) {
            /* Sequential levels depend on the level passed on as well as on the text. */
            char desc[96];
            int nd = snprintf(desc, sizeof desc, "%s sequential %s %.17g", cfp, o.method, calib_value);
            evb_hash_hex(desc, (size_t)nd, 0, cfp);
        }
        s = evb_db_open(o.out, mfp, cfp, 1, &db);
    }
    if (!s && !sequential) s = evb_calib_collect(l.m, &w, (int)o.batch, &cs);
    double t1 = now_s();
    evb_level_grid g = {sp, n_sp, nk, nm, bits, n_bits, (int)o.group_size, o.sym, o.act_order, step_target,
                        step_target ? (int)o.num_levels : 0, 0};
    if (step_target) g.step_weights = o.weights_diff ? o.weights_diff : evb_step_weights_default(l.m, step_target, (int)o.num_levels);
    progress p = {t1, "db build", isatty(2), 0, "levels"};
    if (!s && sequential) s = evb_db_build_sequential(db, l.m, &w, (int)o.batch, method, &g, calib_value, &built, &present, progress_cb, &p);
    else if (!s) s = evb_db_build(db, l.m, cs, method, &g, &built, &present, progress_cb, &p);
    double t2 = now_s();
    if (!s) {
        int repaired = evb_db_n_replaced(db);
        json_t *j = json_pack("{s:s, s:s, s:i, s:i, s:i, s:i, s:s, s:s, s:s, s:f, s:f}", "db", o.out, "method", o.method,
                              "built", built, "present", present, "repaired", repaired, "entries", evb_db_count(db), "model", mfp, "calib", cfp,
                              "protocol", sequential ? "sequential" : "dense", "calib_seconds", t1 - t0, "build_seconds", t2 - t1);
        if (repaired) fprintf(stderr, "%s: %d levels had a damaged or missing payload and were rebuilt\n", o.out, repaired);
        if (step_target) json_object_set_new(j, "weights_diff", json_integer(g.step_weights));
        if (o.json) rc = print_json(j);
        else {
            printf("%s: %d levels built, %d already present, %d in all (%.1fs)\n", o.out, built, present, evb_db_count(db), t2 - t0);
            json_decref(j);
        }
    } else rc = fail(s);
    evb_db_close(db);
    evb_calib_free(cs);
    evb_windows_free(&w);
    free(tok); free(text);
    loaded_free(&l);
    return rc;
}

static const struct { const char *name; int (*run)(int, char **); const char *help; } db_commands[] = {
    {"build", cmd_db_build, "compress every layer at every level and store the levels"},
    {"info", cmd_db_info, "summarise a level database"},
};

static int cmd_db(int argc, char **argv) {
    if (argc < 1 || strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0) {
        FILE *f = argc < 1 ? stderr : stdout;
        fprintf(f, "usage: evobudget db <command> [options]\n");
        for (size_t i = 0; i < sizeof db_commands / sizeof *db_commands; i++) fprintf(f, "  %-6s %s\n", db_commands[i].name, db_commands[i].help);
        return argc < 1 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof db_commands / sizeof *db_commands; i++)
        if (strcmp(argv[0], db_commands[i].name) == 0) return db_commands[i].run(argc - 1, argv + 1);
    const char *names[sizeof db_commands / sizeof *db_commands];
    for (size_t i = 0; i < sizeof db_commands / sizeof *db_commands; i++) names[i] = db_commands[i].name;
    char hint[128];
    return usage_error("unknown db command '%s'%s", argv[0], did_you_mean(argv[0], names, sizeof names / sizeof *names, hint, sizeof hint));
}

// ---- main ----

typedef struct command { const char *name; int (*run)(int, char **); const char *help; } command;

static const command commands[] = {
    {"info", cmd_info, "print a model's architecture, sizes and compressible units"},
    {"generate", cmd_generate, "greedy text generation"},
    {"eval", cmd_eval, "perplexity on a text file"},
    {"db", cmd_db, "level database: build, info"},
    {"search", cmd_search, "find per-layer levels for a target size"},
    {"export", cmd_export, "write a compressed model as a Hugging Face directory"},
    {"plot", cmd_plot, "draw a run directory: front, per-unit budgets, convergence (gnuplot)"},
    {"cache", cmd_cache, "the level databases search keeps: list, size, clear"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: evobudget <command> [options]   (evobudget <command> --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++) fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\nWith no --model, commands run on the embedded demo model (assets/demo).\n"
               "Flags take their value as --flag VALUE or --flag=VALUE. evobudget --version prints the version and\n"
               "the compute paths of this build.\n");
}

#ifdef EVB_MPI
/* evobudget-mpi: `search` spreads its evaluations over the ranks; every other command runs on rank 0 alone.
 * A failure on any rank ends the whole job (MPI_Abort), so that no rank waits for one that has given up. */
static int run_command(const command *c, int argc, char **argv) {
    int provided, rank;
    MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    int rc = rank == 0 || c->run == cmd_search ? c->run(argc, argv) : 0;
    fflush(stdout);
    fflush(stderr);
    if (rc) MPI_Abort(MPI_COMM_WORLD, rc);
    MPI_Finalize();
    return rc;
}
#else
static int run_command(const command *c, int argc, char **argv) { return c->run(argc, argv); }
#endif

/* --version: the version, then how this build computes (cheap to find out: nothing is loaded). */
static int version(void) {
    const char *missing = evb_compute_missing();
    printf("evobudget %s\n", EVB_VERSION);
    printf("blas      %s (%s kernels)\n", evb_blas_library(), evb_blas_core());
    if (missing) printf("compute   f32 (OpenBLAS); bf16 unavailable: %s\n", missing);
    else printf("compute   f32 (OpenBLAS), bf16 (oneDNN %s)\n", evb_compute_kernel());
#ifdef _OPENMP
    printf("openmp    %d (up to %d threads)\n", _OPENMP, omp_get_max_threads());
#else
    printf("openmp    no\n");
#endif
#ifdef EVB_MPI
    printf("mpi       %d.%d (search spreads over ranks)\n", MPI_VERSION, MPI_SUBVERSION);
#endif
    return 0;
}

int main(int argc, char **argv) {
    evb_blas_fix_core(argv);
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) return version();
    enum { N_COMMANDS = sizeof commands / sizeof *commands };
    const char *names[N_COMMANDS + 2] = {"--help", "--version"};  /* [N_COMMANDS + 2] what may follow evobudget */
    for (size_t i = 0; i < N_COMMANDS; i++) {
        names[i + 2] = commands[i].name;
        if (strcmp(argv[1], commands[i].name) == 0) {
            static char name[64];
            snprintf(name, sizeof name, "evobudget %s", commands[i].name);
            cmd_name = name;
            return run_command(&commands[i], argc - 2, argv + 2);
        }
    }
    char hint[128];
    fprintf(stderr, "evobudget: unknown command '%s'%s (hint: run 'evobudget --help' for the list)\n", argv[1],
            did_you_mean(argv[1], names, N_COMMANDS + 2, hint, sizeof hint));
    return 2;
}
