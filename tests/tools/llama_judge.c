/* llama_judge.c -- llama.cpp as an independent judge of the GGUF files evobudget exports.
 *
 * Built by tests/CMakeLists.txt against the prebuilt CPU libraries and the headers of the same release that
 * ./setup.sh installs in tests/llama (npm's node-llama-cpp). Each subcommand prints one JSON object on stdout;
 * an error is one line on stderr ("llama_judge: ...", with llama.cpp's own error messages where it gave any)
 * and exit 1.
 *
 *   nll MODEL.gguf WINDOWS.txt [--threads N]
 *       WINDOWS.txt: one window per line, token ids separated by spaces. Each window is decoded whole from an
 *       empty KV cache (float32 K and V, no flash attention), and -log softmax(logits[t])[tok[t+1]] is summed over t = 0 .. n-2
 *       in double: {"windows", "tokens" (scored), "nll_sum", "nll_mean", "ppl", "per_window": [sum...]}
 *   kl MODEL.gguf REFERENCE.gguf WINDOWS.txt [--threads N]
 *       both models on each window as nll decodes it, and KL(reference || model) summed over the same positions
 *       in double: {"windows", "tokens", "kl_sum", "kl_mean", "ppl" (the model's), "ref_ppl"}
 *   quantize IN.gguf OUT.gguf FTYPE [--pure] [--embd-type TYPE] [--threads N]
 *       llama_model_quantize to FTYPE (Q4_0 ... Q6_K, F16, BF16, F32: the table FTYPES below); --embd-type
 *       keeps the token embedding (and an untied classifier) in that ggml type (f16: as evobudget leaves them):
 *       {"out", "ftype", "bytes"}
 *   info MODEL.gguf
 *       the model loaded whole on the CPU, and the file's tensors as gguf lists them: {"desc", "n_params",
 *       "size", "bpw", "file_bytes", "n_vocab", "n_ctx_train", "n_embd", "n_layer", "tensors": [{"name",
 *       "type", "ne", "bytes"}...]}
 *   tensor MODEL.gguf NAME OUT.bin
 *       the tensor's bytes as stored in the file, for bit-for-bit comparison: {"name", "type", "ne", "bytes", "out"}
 *   tokenize MODEL.gguf TEXT [--no-bos]
 *       llama.cpp's tokenizer (BOS and EOS as the vocabulary asks unless --no-bos; special tokens written in the
 *       text are not parsed): {"ids": [...]}
 *   detokenize MODEL.gguf ID...
 *       llama_detokenize of the ids (special tokens kept, not rendered), and each id's piece: {"text", "pieces"}
 *
 * --verbose (any subcommand) lets llama.cpp's log through to stderr; without it the log is silent except for
 * its error lines, which the error message quotes. LLAMA_JUDGE_BACKENDS in the environment overrides the
 * directory the CPU backends (libggml-cpu-*.so, one chosen for this CPU) are loaded from. */
#define _POSIX_C_SOURCE 200809L /* getline */
#include "llama.h"
#include "gguf.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef LLAMA_JUDGE_BACKENDS
#define LLAMA_JUDGE_BACKENDS "."
#endif

/* ---- errors and llama.cpp's log ---- */

static int verbose;
static char log_errors[2048];   /* llama.cpp's error lines since the start, joined with "; " */
static size_t log_errors_len;
static int log_in_error;        /* the last message was an error: its continuations belong to it */

static void log_cb(enum ggml_log_level level, const char *text, void *user) {
    (void)user;
    if (verbose) fputs(text, stderr);
    if (level != GGML_LOG_LEVEL_CONT) log_in_error = level == GGML_LOG_LEVEL_ERROR;
    if (!log_in_error) return;
    if (level == GGML_LOG_LEVEL_ERROR && log_errors_len && log_errors_len + 2 < sizeof log_errors) {
        memcpy(log_errors + log_errors_len, "; ", 2);
        log_errors_len += 2;
    }
    for (const char *p = text; *p && log_errors_len + 1 < sizeof log_errors; p++)
        if (*p != '\n') log_errors[log_errors_len++] = *p;
    log_errors[log_errors_len] = 0;
}

/* One line on stderr, with llama.cpp's error lines when it logged any, and exit 1. */
static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("llama_judge: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (log_errors_len) fprintf(stderr, " (llama.cpp: %s)", log_errors);
    fputc('\n', stderr);
    exit(1);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) die("out of memory (%zu bytes)", n);
    return p;
}

/* ---- JSON output ---- */

/* s[0..n) as a JSON string: quotes, backslashes and control characters escaped, each invalid UTF-8 sequence
 * written as U+FFFD (so that the output is always valid JSON). */
static void json_str_n(FILE *f, const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    fputc('"', f);
    while (p < end) {
        unsigned c = *p;
        if (c == '"' || c == '\\') { fputc('\\', f); fputc((int)c, f); p++; continue; }
        if (c < 0x20) { fprintf(f, c == '\n' ? "\\n" : c == '\t' ? "\\t" : "\\u%04x", c); p++; continue; }
        if (c < 0x80) { fputc((int)c, f); p++; continue; }
        /* a UTF-8 sequence: its length from the lead byte, every continuation byte checked, no overlong form,
         * no surrogate, nothing above U+10FFFF */
        int len = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        int ok = len && p + len <= end;
        for (int i = 1; ok && i < len; i++) ok = (p[i] & 0xC0) == 0x80;
        if (ok && len == 3) ok = !(c == 0xE0 && p[1] < 0xA0) && !(c == 0xED && p[1] >= 0xA0);
        if (ok && len == 4) ok = !(c == 0xF0 && p[1] < 0x90) && !(c == 0xF4 && p[1] >= 0x90);
        if (ok) { fwrite(p, 1, (size_t)len, f); p += len; }
        else { fputs("\\ufffd", f); p++; }
    }
    fputc('"', f);
}

static void json_str(FILE *f, const char *s) { json_str_n(f, s, strlen(s)); }

/* A finite double to full precision; null otherwise (JSON has no inf or nan). */
static void json_num(FILE *f, double x) {
    if (isfinite(x)) fprintf(f, "%.17g", x);
    else fputs("null", f);
}

/* ---- command-line values ---- */

static long parse_long(const char *s, long lo, long hi, const char *what) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) die("%s '%s' must be an integer in [%ld, %ld]", what, s, lo, hi);
    return v;
}

static uint64_t file_size(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) die("%s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) die("%s is not a regular file", path);
    return (uint64_t)st.st_size;
}

/* The arguments after the subcommand: positionals in order, and the flags this subcommand takes
 * (--threads N, --pure, --no-bos; --verbose everywhere). "--" ends the flags. */
typedef struct args {
    const char **pos;  /* [n_pos] pointers into argv */
    int n_pos;
    int threads, pure, no_bos;
    const char *embd_type;  /* quantize --embd-type: the token embedding's (and an untied classifier's) ggml type */
} args;

/* 1 when word is one of the space-separated words of list. */
static int has_word(const char *list, const char *word) {
    const size_t n = strlen(word);
    for (const char *p = list; (p = strstr(p, word)) != NULL; p += n)
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == 0)) return 1;
    return 0;
}

static void parse_args(int argc, char **argv, const char *flags, args *a) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    memset(a, 0, sizeof *a);
    a->pos = xmalloc(sizeof *a->pos * (size_t)(argc > 0 ? argc : 1));
    a->threads = cpus > 0 && cpus < 512 ? (int)cpus : 1;
    int only_pos = 0;
    for (int i = 0; i < argc; i++) {
        const char *s = argv[i];
        if (!only_pos && strcmp(s, "--") == 0) { only_pos = 1; continue; }
        if (only_pos || strncmp(s, "--", 2) != 0) {
            a->pos[a->n_pos++] = s;
        } else if (strcmp(s, "--verbose") == 0) {
            verbose = 1;
        } else if (!has_word(flags, s)) {
            die("unknown option '%s' here (this subcommand takes: %s%s--verbose)", s, flags, *flags ? " " : "");
        } else if (strcmp(s, "--threads") == 0) {
            if (i + 1 >= argc) die("--threads needs a number");
            a->threads = (int)parse_long(argv[++i], 1, 1024, "--threads");
        } else if (strcmp(s, "--embd-type") == 0) {
            if (i + 1 >= argc) die("--embd-type needs a ggml type name (f16, q8_0, q6_K, ...)");
            a->embd_type = argv[++i];
        } else if (strcmp(s, "--pure") == 0) {
            a->pure = 1;
        } else if (strcmp(s, "--no-bos") == 0) {
            a->no_bos = 1;
        } else {
            die("unknown option '%s'", s);
        }
    }
}

/* ---- llama.cpp ---- */

/* A failed GGML_ASSERT in llama.cpp (e.g. on a vocabulary with a duplicate token) ends the process: one line
 * too, instead of ggml's default of a debugger's backtrace and abort(). */
static void abort_cb(const char *message) {
    fprintf(stderr, "llama_judge: llama.cpp aborted: %s\n", message);
    fflush(stderr);
    _exit(1);
}

static void quiet_init(void) {
    llama_log_set(log_cb, NULL);
    ggml_set_abort_callback(abort_cb);
    if (!verbose) setenv("GGML_NO_BACKTRACE", "1", 1);  /* an uncaught C++ exception: no debugger either */
}

static void backend_init(void) {
    quiet_init();
    const char *dir = getenv("LLAMA_JUDGE_BACKENDS");
    if (!dir || !*dir) dir = LLAMA_JUDGE_BACKENDS;
    ggml_backend_load_all_from_path(dir);
    if (ggml_backend_dev_count() == 0)
        die("no ggml backend could be loaded from %s (hint: ./setup.sh installs llama.cpp's libraries there)", dir);
    llama_backend_init();
}

/* The model, whole on the CPU (its tensors checked for NaN and inf as they load), or only its vocabulary. */
static struct llama_model *load_model(const char *path, int vocab_only) {
    file_size(path);
    struct llama_model_params p = llama_model_default_params();
    p.n_gpu_layers = 0;
    p.vocab_only = vocab_only != 0;
    p.check_tensors = !vocab_only;
    struct llama_model *m = llama_model_load_from_file(path, p);
    if (!m) die("llama.cpp cannot load %s", path);
    return m;
}

/* ---- nll ---- */

typedef struct windows {
    int n, max_len;
    int32_t **tok;  /* [n][len[i]] */
    int *len;
    int *line;      /* [n] the line of the file each window came from */
} windows;

/* One window per non-blank line; every id decimal digits only, fitting in int32; at least two ids per window. */
static void read_windows(const char *path, windows *w) {
    FILE *f = fopen(path, "r");
    if (!f) die("%s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    int cap_w = 0, lineno = 0;
    memset(w, 0, sizeof *w);
    while ((got = getline(&line, &cap, f)) != -1) {
        lineno++;
        if (memchr(line, 0, (size_t)got)) die("%s:%d: a NUL byte (this is not a windows file)", path, lineno);
        int n = 0, cap_t = 16;
        int32_t *t = xmalloc(sizeof *t * (size_t)cap_t);
        for (char *p = line;;) {
            while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
            if (!*p) break;
            char *end;
            const int word = (int)strcspn(p, " \t\r\n"), shown = word < 24 ? word : 24;
            errno = 0;
            long v = strtol(p, &end, 10);
            if (end != p + word || !(*p >= '0' && *p <= '9'))
                die("%s:%d: '%.*s' is not a token id (hint: one window per line, ids separated by spaces)", path, lineno, shown, p);
            if (errno || v > INT32_MAX) die("%s:%d: token id %.*s is out of range", path, lineno, shown, p);
            if (n == cap_t) {
                int32_t *nt = realloc(t, sizeof *t * (size_t)(cap_t *= 2));
                if (!nt) die("out of memory");
                t = nt;
            }
            t[n++] = (int32_t)v;
            p = end;
        }
        if (n == 0) { free(t); continue; }
        if (n < 2) die("%s:%d: a window of one token scores nothing (hint: at least two ids per line)", path, lineno);
        if (w->n == cap_w) {
            cap_w = cap_w ? 2 * cap_w : 16;
            int32_t **nt = realloc(w->tok, sizeof *nt * (size_t)cap_w);
            int *nl = realloc(w->len, sizeof *nl * (size_t)cap_w), *nli = realloc(w->line, sizeof *nli * (size_t)cap_w);
            if (nt) w->tok = nt;
            if (nl) w->len = nl;
            if (nli) w->line = nli;
            if (!nt || !nl || !nli) die("out of memory");
        }
        w->tok[w->n] = t;
        w->len[w->n] = n;
        w->line[w->n] = lineno;
        w->n++;
        if (n > w->max_len) w->max_len = n;
    }
    if (ferror(f)) die("%s: read error", path);
    free(line);
    fclose(f);
    if (w->n == 0) die("%s: no windows (hint: one window per line, token ids separated by spaces)", path);
}

/* -log softmax(logits)[target] over n_vocab logits, in double. */
static double token_nll(const float *logits, int n_vocab, int target) {
    double mx = -INFINITY, sum = 0;
    for (int v = 0; v < n_vocab; v++) if (logits[v] > mx) mx = logits[v];
    for (int v = 0; v < n_vocab; v++) sum += exp((double)logits[v] - mx);
    return log(sum) + mx - (double)logits[target];
}

/* A context for scoring whole windows of up to max_len tokens: one sequence, float32 K and V, and the plain
 * attention path (ggml's CPU flash-attention kernel is not exact in float32: it moves a small model's NLL by
 * about 1e-4 relative, where the plain path agrees with a float64 forward to about 1e-8). */
static struct llama_context *window_context(struct llama_model *m, int max_len, int threads, const char *path) {
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = cp.n_batch = cp.n_ubatch = (uint32_t)max_len;
    cp.n_seq_max = 1;
    cp.n_threads = cp.n_threads_batch = threads;
    cp.type_k = cp.type_v = GGML_TYPE_F32;  /* the cache at full precision: the judge scores the weights alone */
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.no_perf = true;
    struct llama_context *ctx = llama_init_from_model(m, cp);
    if (!ctx) die("llama.cpp cannot make a context of %d positions for %s", max_len, path);
    return ctx;
}

/* Window i decoded whole from an empty cache, logits kept for positions 0 .. n-2 (the last predicts nothing
 * that is scored). */
static void decode_window(struct llama_context *ctx, struct llama_batch *b, const windows *w, int i, const char *wpath) {
    const int n = w->len[i];
    llama_memory_clear(llama_get_memory(ctx), true);
    b->n_tokens = n;
    for (int t = 0; t < n; t++) {
        b->token[t] = w->tok[i][t];
        b->pos[t] = t;
        b->n_seq_id[t] = 1;
        b->seq_id[t][0] = 0;
        b->logits[t] = t < n - 1;
    }
    int rc = llama_decode(ctx, *b);
    if (rc != 0) die("llama_decode of window %d (%s:%d, %d tokens) returned %d", i, wpath, w->line[i], n, rc);
}

static const float *logits_at(struct llama_context *ctx, int t, int i) {
    const float *lg = llama_get_logits_ith(ctx, t);
    if (!lg) die("llama.cpp gave no logits for position %d of window %d", t, i);
    return lg;
}

/* The model at path, its windows checked against its vocabulary. */
static struct llama_model *model_for(const char *path, const windows *w, const char *wpath, int *n_vocab) {
    struct llama_model *m = load_model(path, 0);
    *n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(m));
    for (int i = 0; i < w->n; i++)
        for (int t = 0; t < w->len[i]; t++)
            if (w->tok[i][t] >= *n_vocab) die("%s:%d: token id %d is outside the vocabulary of %d", wpath, w->line[i], w->tok[i][t], *n_vocab);
    return m;
}

static void windows_free(windows *w) {
    for (int i = 0; i < w->n; i++) free(w->tok[i]);
    free(w->tok); free(w->len); free(w->line);
}

static int cmd_nll(int argc, char **argv) {
    args a;
    parse_args(argc, argv, "--threads", &a);
    if (a.n_pos != 2) die("usage: llama_judge nll MODEL.gguf WINDOWS.txt [--threads N]");
    windows w;
    read_windows(a.pos[1], &w);
    backend_init();
    int n_vocab;
    struct llama_model *m = model_for(a.pos[0], &w, a.pos[1], &n_vocab);
    struct llama_context *ctx = window_context(m, w.max_len, a.threads, a.pos[0]);
    struct llama_batch b = llama_batch_init(w.max_len, 0, 1);
    double *per = xmalloc(sizeof *per * (size_t)w.n), total = 0;
    size_t scored = 0;
    for (int i = 0; i < w.n; i++) {
        const int n = w.len[i];
        decode_window(ctx, &b, &w, i, a.pos[1]);
        double s = 0;
        for (int t = 0; t < n - 1; t++) s += token_nll(logits_at(ctx, t, i), n_vocab, w.tok[i][t + 1]);
        if (!isfinite(s)) die("window %d (%s:%d): the NLL is %g (llama.cpp computes non-finite logits for this model)", i, a.pos[1], w.line[i], s);
        per[i] = s;
        total += s;
        scored += (size_t)(n - 1);
    }
    printf("{\"windows\": %d, \"tokens\": %zu, \"nll_sum\": ", w.n, scored);
    json_num(stdout, total);
    printf(", \"nll_mean\": ");
    json_num(stdout, total / (double)scored);
    printf(", \"ppl\": ");
    json_num(stdout, exp(total / (double)scored));
    printf(", \"per_window\": [");
    for (int i = 0; i < w.n; i++) { if (i) printf(", "); json_num(stdout, per[i]); }
    printf("]}\n");

    llama_batch_free(b);
    llama_free(ctx);
    llama_model_free(m);
    windows_free(&w);
    free(per);
    free(a.pos);
    return 0;
}

/* ---- kl ---- */

/* KL(p || q) = sum_v p_v (log p_v - log q_v) of two logit rows, in double. */
static double token_kl(const float *lp, const float *lq, int n_vocab) {
    double mp = -INFINITY, mq = -INFINITY, sp = 0, sq = 0, s = 0;
    for (int v = 0; v < n_vocab; v++) { if (lp[v] > mp) mp = lp[v]; if (lq[v] > mq) mq = lq[v]; }
    for (int v = 0; v < n_vocab; v++) { sp += exp((double)lp[v] - mp); sq += exp((double)lq[v] - mq); }
    const double zp = mp + log(sp), zq = mq + log(sq);
    for (int v = 0; v < n_vocab; v++) {
        double a = (double)lp[v] - zp, c = (double)lq[v] - zq;
        s += exp(a) * (a - c);
    }
    return s;
}

static int cmd_kl(int argc, char **argv) {
    args a;
    parse_args(argc, argv, "--threads", &a);
    if (a.n_pos != 3) die("usage: llama_judge kl MODEL.gguf REFERENCE.gguf WINDOWS.txt [--threads N]");
    windows w;
    read_windows(a.pos[2], &w);
    backend_init();
    int nv, nr;
    struct llama_model *m = model_for(a.pos[0], &w, a.pos[2], &nv), *r = model_for(a.pos[1], &w, a.pos[2], &nr);
    if (nv != nr) die("%s has %d tokens, %s %d: not the same vocabulary", a.pos[0], nv, a.pos[1], nr);
    struct llama_context *cm = window_context(m, w.max_len, a.threads, a.pos[0]), *cr = window_context(r, w.max_len, a.threads, a.pos[1]);
    struct llama_batch b = llama_batch_init(w.max_len, 0, 1);
    double kl = 0, nll = 0, nll_ref = 0;
    size_t scored = 0;
    for (int i = 0; i < w.n; i++) {
        const int n = w.len[i];
        decode_window(cm, &b, &w, i, a.pos[2]);
        decode_window(cr, &b, &w, i, a.pos[2]);
        for (int t = 0; t < n - 1; t++) {
            const float *lm = logits_at(cm, t, i), *lr = logits_at(cr, t, i);
            kl += token_kl(lr, lm, nv);
            nll += token_nll(lm, nv, w.tok[i][t + 1]);
            nll_ref += token_nll(lr, nv, w.tok[i][t + 1]);
        }
        scored += (size_t)(n - 1);
    }
    if (!isfinite(kl)) die("the KL is %g (llama.cpp computes non-finite logits for one of the models)", kl);
    printf("{\"windows\": %d, \"tokens\": %zu, \"kl_sum\": ", w.n, scored);
    json_num(stdout, kl);
    printf(", \"kl_mean\": ");
    json_num(stdout, kl / (double)scored);
    printf(", \"ppl\": ");
    json_num(stdout, exp(nll / (double)scored));
    printf(", \"ref_ppl\": ");
    json_num(stdout, exp(nll_ref / (double)scored));
    printf("}\n");
    llama_batch_free(b);
    llama_free(cm); llama_free(cr);
    llama_model_free(m); llama_model_free(r);
    windows_free(&w);
    free(a.pos);
    return 0;
}

/* ---- quantize ---- */

static const struct { const char *name; enum llama_ftype ftype; } FTYPES[] = {
    {"Q4_0", LLAMA_FTYPE_MOSTLY_Q4_0},     {"Q4_1", LLAMA_FTYPE_MOSTLY_Q4_1},     {"Q5_0", LLAMA_FTYPE_MOSTLY_Q5_0},
    {"Q5_1", LLAMA_FTYPE_MOSTLY_Q5_1},     {"Q8_0", LLAMA_FTYPE_MOSTLY_Q8_0},     {"Q2_K", LLAMA_FTYPE_MOSTLY_Q2_K},
    {"Q2_K_S", LLAMA_FTYPE_MOSTLY_Q2_K_S}, {"Q3_K_S", LLAMA_FTYPE_MOSTLY_Q3_K_S}, {"Q3_K_M", LLAMA_FTYPE_MOSTLY_Q3_K_M},
    {"Q3_K_L", LLAMA_FTYPE_MOSTLY_Q3_K_L}, {"Q4_K_S", LLAMA_FTYPE_MOSTLY_Q4_K_S}, {"Q4_K_M", LLAMA_FTYPE_MOSTLY_Q4_K_M},
    {"Q5_K_S", LLAMA_FTYPE_MOSTLY_Q5_K_S}, {"Q5_K_M", LLAMA_FTYPE_MOSTLY_Q5_K_M}, {"Q6_K", LLAMA_FTYPE_MOSTLY_Q6_K},
    {"F16", LLAMA_FTYPE_MOSTLY_F16},       {"BF16", LLAMA_FTYPE_MOSTLY_BF16},     {"F32", LLAMA_FTYPE_ALL_F32},
};
#define N_FTYPES (sizeof FTYPES / sizeof FTYPES[0])

static int cmd_quantize(int argc, char **argv) {
    args a;
    parse_args(argc, argv, "--pure --embd-type --threads", &a);
    if (a.n_pos != 3) die("usage: llama_judge quantize IN.gguf OUT.gguf FTYPE [--pure] [--embd-type TYPE] [--threads N]");
    enum ggml_type et = GGML_TYPE_COUNT;
    for (int t = 0; a.embd_type && t < GGML_TYPE_COUNT; t++) {
        const char *nm = ggml_type_name((enum ggml_type)t);
        if (nm && strcasecmp(nm, a.embd_type) == 0) et = (enum ggml_type)t;
    }
    if (a.embd_type && et == GGML_TYPE_COUNT) die("--embd-type '%s' is not a ggml type name (f16, q8_0, q6_K, ...)", a.embd_type);
    size_t k = 0;
    while (k < N_FTYPES && strcmp(FTYPES[k].name, a.pos[2]) != 0) k++;
    if (k == N_FTYPES) {
        char names[256] = "";
        for (size_t i = 0, at = 0; i < N_FTYPES && at < sizeof names; i++)
            at += (size_t)snprintf(names + at, sizeof names - at, "%s%s", i ? ", " : "", FTYPES[i].name);
        die("FTYPE '%s' is not one of %s", a.pos[2], names);
    }
    file_size(a.pos[0]);
    struct stat si, so;
    if (stat(a.pos[1], &so) == 0 && stat(a.pos[0], &si) == 0 && si.st_dev == so.st_dev && si.st_ino == so.st_ino)
        die("OUT %s is the input file", a.pos[1]);
    backend_init();
    llama_model_quantize_params qp = llama_model_quantize_default_params();
    qp.ftype = FTYPES[k].ftype;
    qp.pure = a.pure != 0;
    if (a.embd_type) { qp.token_embedding_type = et; qp.output_tensor_type = et; }
    qp.nthread = a.threads;
    if (llama_model_quantize(a.pos[0], a.pos[1], &qp) != 0) die("llama_model_quantize of %s to %s failed", a.pos[0], a.pos[2]);
    printf("{\"out\": ");
    json_str(stdout, a.pos[1]);
    printf(", \"ftype\": ");
    json_str(stdout, FTYPES[k].name);
    printf(", \"bytes\": %llu}\n", (unsigned long long)file_size(a.pos[1]));
    free(a.pos);
    return 0;
}

/* ---- the file's tensors (gguf) ---- */

static struct gguf_context *open_gguf(const char *path) {
    file_size(path);
    struct gguf_init_params gp = {.no_alloc = true, .ctx = NULL};
    struct gguf_context *g = gguf_init_from_file(path, gp);
    if (!g) die("%s is not a GGUF file ggml can read", path);
    return g;
}

/* "name", "type", "ne" (trailing dimensions of 1 left out, as ggml_n_dims does) and "bytes" of tensor i. */
static void print_tensor_fields(const struct gguf_context *g, int64_t i) {
    const int64_t *ne = gguf_get_tensor_ne(g, i);
    int nd = GGML_MAX_DIMS;
    while (nd > 1 && ne[nd - 1] == 1) nd--;
    printf("\"name\": ");
    json_str(stdout, gguf_get_tensor_name(g, i));
    printf(", \"type\": ");
    json_str(stdout, ggml_type_name(gguf_get_tensor_type(g, i)));
    printf(", \"ne\": [");
    for (int d = 0; d < nd; d++) printf("%s%lld", d ? ", " : "", (long long)ne[d]);
    printf("], \"bytes\": %zu", gguf_get_tensor_size(g, i));
}

static int cmd_info(int argc, char **argv) {
    args a;
    parse_args(argc, argv, "", &a);
    if (a.n_pos != 1) die("usage: llama_judge info MODEL.gguf");
    backend_init();
    struct gguf_context *g = open_gguf(a.pos[0]);
    struct llama_model *m = load_model(a.pos[0], 0);
    char desc[256];
    if (llama_model_desc(m, desc, sizeof desc) < 0) desc[0] = 0;
    const uint64_t n_params = llama_model_n_params(m), size = llama_model_size(m);
    printf("{\"desc\": ");
    json_str(stdout, desc);
    printf(", \"n_params\": %llu, \"size\": %llu, \"bpw\": ", (unsigned long long)n_params, (unsigned long long)size);
    json_num(stdout, n_params ? (double)size * 8.0 / (double)n_params : NAN);
    printf(", \"file_bytes\": %llu, \"n_vocab\": %d, \"n_ctx_train\": %d, \"n_embd\": %d, \"n_layer\": %d, \"tensors\": [",
           (unsigned long long)file_size(a.pos[0]), llama_vocab_n_tokens(llama_model_get_vocab(m)), llama_model_n_ctx_train(m),
           llama_model_n_embd(m), llama_model_n_layer(m));
    for (int64_t i = 0; i < gguf_get_n_tensors(g); i++) {
        printf("%s{", i ? ", " : "");
        print_tensor_fields(g, i);
        printf("}");
    }
    printf("]}\n");
    llama_model_free(m);
    gguf_free(g);
    free(a.pos);
    return 0;
}

static int cmd_tensor(int argc, char **argv) {
    args a;
    parse_args(argc, argv, "", &a);
    if (a.n_pos != 3) die("usage: llama_judge tensor MODEL.gguf NAME OUT.bin");
    quiet_init();
    const uint64_t fsize = file_size(a.pos[0]);
    struct gguf_context *g = open_gguf(a.pos[0]);
    const int64_t i = gguf_find_tensor(g, a.pos[1]);
    if (i < 0) die("%s has no tensor '%s'", a.pos[0], a.pos[1]);
    const uint64_t off = (uint64_t)gguf_get_data_offset(g) + gguf_get_tensor_offset(g, i), n = gguf_get_tensor_size(g, i);
    if (off > fsize || n > fsize - off) die("%s: tensor '%s' (%llu bytes at %llu) lies past the end of the file (%llu bytes)",
                                            a.pos[0], a.pos[1], (unsigned long long)n, (unsigned long long)off, (unsigned long long)fsize);
    FILE *in = fopen(a.pos[0], "rb");
    if (!in) die("%s: %s", a.pos[0], strerror(errno));
    FILE *out = fopen(a.pos[2], "wb");
    if (!out) die("%s: %s", a.pos[2], strerror(errno));
    if (fseeko(in, (off_t)off, SEEK_SET) != 0) die("%s: cannot seek to %llu", a.pos[0], (unsigned long long)off);
    char buf[1 << 16];
    for (uint64_t left = n; left > 0;) {
        size_t want = left < sizeof buf ? (size_t)left : sizeof buf;
        if (fread(buf, 1, want, in) != want) die("%s: short read in tensor '%s'", a.pos[0], a.pos[1]);
        if (fwrite(buf, 1, want, out) != want) die("%s: write error: %s", a.pos[2], strerror(errno));
        left -= want;
    }
    fclose(in);
    if (fclose(out) != 0) die("%s: write error: %s", a.pos[2], strerror(errno));
    printf("{");
    print_tensor_fields(g, i);
    printf(", \"out\": ");
    json_str(stdout, a.pos[2]);
    printf("}\n");
    gguf_free(g);
    free(a.pos);
    return 0;
}

/* ---- the tokenizer ---- */

static int cmd_tokenize(int argc, char **argv) {
    args a;
    parse_args(argc, argv, "--no-bos", &a);
    if (a.n_pos != 2) die("usage: llama_judge tokenize MODEL.gguf TEXT [--no-bos]");
    const size_t len = strlen(a.pos[1]);
    if (len > INT32_MAX / 2) die("TEXT is too long (%zu bytes)", len);
    backend_init();
    struct llama_model *m = load_model(a.pos[0], 1);
    const struct llama_vocab *vocab = llama_model_get_vocab(m);
    /* one token per byte, a dummy-prefix space, BOS and EOS; a negative count asks for more room */
    int32_t cap = (int32_t)len + 3;
    llama_token *ids = xmalloc(sizeof *ids * (size_t)cap);
    int32_t n = llama_tokenize(vocab, a.pos[1], (int32_t)len, ids, cap, !a.no_bos, false);
    if (n < 0 && n != INT32_MIN) {
        free(ids);
        ids = xmalloc(sizeof *ids * (size_t)(cap = -n));
        n = llama_tokenize(vocab, a.pos[1], (int32_t)len, ids, cap, !a.no_bos, false);
    }
    if (n < 0) die("llama_tokenize failed (%d)", n);
    printf("{\"ids\": [");
    for (int32_t i = 0; i < n; i++) printf("%s%d", i ? ", " : "", ids[i]);
    printf("]}\n");
    free(ids);
    llama_model_free(m);
    free(a.pos);
    return 0;
}

static int cmd_detokenize(int argc, char **argv) {
    args a;
    parse_args(argc, argv, "", &a);
    if (a.n_pos < 1) die("usage: llama_judge detokenize MODEL.gguf ID...");
    backend_init();
    struct llama_model *m = load_model(a.pos[0], 1);
    const struct llama_vocab *vocab = llama_model_get_vocab(m);
    const int n = a.n_pos - 1, n_vocab = llama_vocab_n_tokens(vocab);
    llama_token *ids = xmalloc(sizeof *ids * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) ids[i] = (llama_token)parse_long(a.pos[i + 1], 0, n_vocab - 1, "token id");
    int32_t cap = 256 + 64 * n;
    char *text = xmalloc((size_t)cap);
    int32_t got = llama_detokenize(vocab, ids, n, text, cap, false, false);
    if (got < 0) {
        free(text);
        text = xmalloc((size_t)(cap = -got));
        got = llama_detokenize(vocab, ids, n, text, cap, false, false);
        if (got < 0) die("llama_detokenize failed");
    }
    printf("{\"text\": ");
    json_str_n(stdout, text, (size_t)got);
    printf(", \"pieces\": [");
    char piece[512];
    for (int i = 0; i < n; i++) {
        int32_t k = llama_token_to_piece(vocab, ids[i], piece, sizeof piece, 0, false);
        if (k < 0) die("the piece of token %d is longer than %zu bytes", ids[i], sizeof piece);
        printf("%s", i ? ", " : "");
        json_str_n(stdout, piece, (size_t)k);
    }
    printf("]}\n");
    free(text);
    free(ids);
    llama_model_free(m);
    free(a.pos);
    return 0;
}

/* ---- the subcommands ---- */

static const struct { const char *name; int (*run)(int argc, char **argv); const char *usage; } COMMANDS[] = {
    {"nll", cmd_nll, "nll MODEL.gguf WINDOWS.txt [--threads N]"},
    {"kl", cmd_kl, "kl MODEL.gguf REFERENCE.gguf WINDOWS.txt [--threads N]"},
    {"quantize", cmd_quantize, "quantize IN.gguf OUT.gguf FTYPE [--pure] [--embd-type TYPE] [--threads N]"},
    {"info", cmd_info, "info MODEL.gguf"},
    {"tensor", cmd_tensor, "tensor MODEL.gguf NAME OUT.bin"},
    {"tokenize", cmd_tokenize, "tokenize MODEL.gguf TEXT [--no-bos]"},
    {"detokenize", cmd_detokenize, "detokenize MODEL.gguf ID..."},
};

int main(int argc, char **argv) {
    const size_t n_cmd = sizeof COMMANDS / sizeof COMMANDS[0];
    if (argc >= 2)
        for (size_t i = 0; i < n_cmd; i++)
            if (strcmp(argv[1], COMMANDS[i].name) == 0) {
                int rc = COMMANDS[i].run(argc - 2, argv + 2);
                if (fflush(stdout) != 0 || ferror(stdout)) die("cannot write the output: %s", strerror(errno));
                return rc;
            }
    fprintf(stderr, "llama_judge: %s%s%s (usage: llama_judge ", argc >= 2 ? "unknown subcommand '" : "no subcommand",
            argc >= 2 ? argv[1] : "", argc >= 2 ? "'" : "");
    for (size_t i = 0; i < n_cmd; i++) fprintf(stderr, "%s%s", i ? " | " : "", COMMANDS[i].usage);
    fprintf(stderr, ", each with --verbose)\n");
    return 1;
}
