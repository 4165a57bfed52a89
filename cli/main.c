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
 * takes 1), or else typed is the start of one to six names (all of them are offered). Returns buf. */
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
    size_t k = 0, match[6];
    for (size_t i = 0; i < n_names && nt >= 2; i++)
        if (strncmp(names[i] + strspn(names[i], "-"), typed, nt) == 0) {
            if (k == 6) return buf;
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
    {"--types", 's', OS(types), 0, 0},
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
    {"--target-speedup", 's', OS(target_speedup), 0, 0},
    {"--target-latency", 's', OS(target_latency), 0, 0},
    {"--struct-steps", 'i', OS(struct_steps), 1, 1 << 16},
    {"--timing-repeats", 'i', OS(timing_repeats), 1, 1000},
    {"--stages", 's', OS(stages), 0, 0},
    {"--compressor", 's', OS(compressor), 0, 0},
    {"--fitness", 's', OS(fitness), 0, 0},
    {"--teacher", 's', OS(teacher), 0, 0},
    {"--cache", 's', OS(cache), 0, 0},
    {"--problem", 's', OS(problem), 0, 0},
    {"--fitness-plugin", 's', OS(fitness_plugin), 0, 0},
    {"--fitness-arg", 's', OS(fitness_arg), 0, 0},
    {"--fitness-cmd", 's', OS(fitness_cmd), 0, 0},
    {"--worker-timeout", 's', OS(worker_timeout), 0, 0},
    {"--workers", 'i', OS(workers), 1, 256},
    {"--worker-retries", 'i', OS(worker_retries), 0, 100},
    {"--generations", 's', OS(generations), 0, 0},
    {"--heldout", 's', OS(heldout), 0, 0},
    {"--offspring", 'i', OS(offspring), 1, 1 << 16},
    {"--initial", 'i', OS(initial), 0, 1 << 20},
    {"--token-budget", 'i', OS(token_budget), 1, LONG_MAX},
    {"--surrogate", 'i', OS(surrogate), 2, 1024},
    {"--prior", 's', OS(prior), 0, 0},
    {"--reuse-mb", 'i', OS(reuse_mb), 0, 1 << 20},
    {"--resume", 'b', OS(resume), 0, 0},
    {"--no-reuse", 'b', OS(no_reuse), 0, 0},
    {"--no-memo", 'b', OS(no_memo), 0, 0},
    {"--reference", 's', OS(reference), 0, 0},
    {"--task", 's', OS(task), 0, 0},
    {"--text", 's', OS(text), 0, 0},
    {"--decode", 's', OS(decode), 0, 0},
    {"--windows-out", 's', OS(windows_out), 0, 0},
    {"--embd-type", 's', OS(embd_type), 0, 0},
    {"--no-bos", 'b', OS(no_bos), 0, 0},
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
    if (p->last == 0 && done < total) { p->last = t; return; } /* no ETA from the first item: it includes the start-up */
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

// ---- lists ----

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

void note_gguf_rounding(const evb_model *m, const evb_method *method) {
    if (method && method->kind == EVB_LEVEL_GGUF && m->compute == EVB_COMPUTE_BF16 && strcmp(m->config.dtype, "BF16"))
        fprintf(stderr, "%s: note: the bf16 path holds this %s checkpoint rounded to bfloat16, and its GGUF levels quantize the rounded "
                "weights; --compute f32 quantizes the checkpoint's own values, as llama.cpp's quantizer does\n", cmd_name, m->config.dtype);
}

/* "Q4_K,Q3_K" into at most cap GGUF block types (ggml type ids), none twice. */
int parse_gguf_types(const char *s, int *out, int cap, int *n) {
    *n = 0;
    for (const char *p = s; *p;) {
        size_t len = strcspn(p, ",");
        char name[16];
        const evb_gguf_type_info *t = NULL;
        if (len < sizeof name) { memcpy(name, p, len); name[len] = 0; t = evb_gguf_type_find(name); }
        if (!t || t->block < 2)
            return usage_error("--types: '%.*s' is not a GGUF block type (%s)", (int)len, p, evb_gguf_type_names());
        for (int i = 0; i < *n; i++) if (out[i] == t->type) return usage_error("--types: %s is given twice", t->name);
        if (*n == cap) return usage_error("--types: more than %d types", cap);
        out[(*n)++] = t->type;
        p += len;
        if (*p == ',') p++;
    }
    if (!*n) return usage_error("--types is empty");
    return 0;
}

// ---- main ----

typedef struct command { const char *name; int (*run)(int, char **); const char *help; } command;

static const command commands[] = {
    {"info", cmd_info, "print a model's architecture, sizes and compressible units"},
    {"generate", cmd_generate, "greedy text generation"},
    {"tokenize", cmd_tokenize, "text to token ids and back, with a model's tokenizer"},
    {"eval", cmd_eval, "perplexity on a text file"},
    {"db", cmd_db, "level database: build, info"},
    {"search", cmd_search, "find per-layer levels for a target size"},
    {"sensitivity", cmd_sensitivity, "the KL of each unit alone at each level: the profile before a search"},
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
