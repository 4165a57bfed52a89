/* cli.h -- what the evobudget program's subcommand files share: the options, errors, progress display and
 * model loading of cli/main.c. */
#ifndef EVB_CLI_H
#define EVB_CLI_H
#include "evobudget/evobudget.h"
#include "evobudget/evb_problems.h"
#include "evobudget/evb_gguf.h"

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

extern const char *cmd_name;

typedef struct opts {
    const char *model, *tokenizer, *prompt, *prompt_tokens, *data;
    const char *calib, *method, *sparsity, *nm, *bits, *types, *out, *db, *config, *uniform_sparsity_s;
    const char *step_target, *protocol, *calib_level;
    long num_levels, weights_diff;
    double uniform_sparsity;
    long uniform_bits;
    long steps, seq_len, max_tokens, batch, threads, piece_bytes, group_size, calib_windows, seed;
    int json, help, sym, act_order, levels;
    /* search */
    const char *target_sparsity, *target_bits, *target_drop, *target_bytes, *stages, *compressor, *fitness, *teacher, *cache;
    const char *target_speedup, *target_latency;
    long struct_steps, timing_repeats;
    const char *problem, *fitness_plugin, *fitness_arg, *fitness_cmd, *worker_timeout;
    long workers, worker_retries;
    const char *generations, *heldout;   /* generations: a count or "paper" */
    long offspring, initial, reuse_mb, token_budget, surrogate;
    const char *prior;   /* search --prior: a sensitivity profile's directory or sensitivity.json */
    int resume, no_reuse, no_memo;
    /* eval, export, plot */
    const char *reference, *dtype, *with, *format, *compute, *task;
    const char *text, *decode;   /* tokenize */
    const char *windows_out;     /* eval */
    const char *embd_type;       /* export --format gguf */
    int no_bos;
    int force;
    int yes;          /* cache clear: remove without asking */
    const char *arg;  /* the positional argument of the commands that take one (db info DIR, plot RUNDIR) */
} opts;

typedef struct opt_spec {
    const char *flag;
    char kind;        /* 's' string, 'i' integer, 'b' flag */
    size_t offset;
    long lo, hi;      /* range of an integer */
} opt_spec;


/* Usage errors: a bad or missing flag; exit 2. */
int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A usage error with its own hint: one line "<command>: <message>", the message ending with "(hint: ...)"; exit 2. */
int refuse(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Library errors: the recorded message with a hint chosen by status; exit 1. */
int fail(int status);
/* Writes "; did you mean 'NAME'?" into buf[n] for the one of names[n_names] closest to typed (or the names it
 * starts, up to four), "" when none is close. Returns buf. */
const char *did_you_mean(const char *typed, const char *const *names, size_t n_names, char *buf, size_t n);
/* Parses argv (getopt_long: `--flag value` or `--flag=value`, exact names) against the flags a subcommand
 * accepts, a space-separated list; a first word in capitals ("DIR --json") lets the command take one positional
 * argument, stored in o->arg. Returns 0, or an exit code after one line on stderr (with a suggestion for a
 * misspelt flag). */
int parse_opts(int argc, char **argv, const char *accepted, opts *o);
/* A comma-separated list of numbers into out[cap]. */
int parse_list(const char *flag, const char *s, double *out, int cap, int *n);
int parse_gguf_types(const char *s, int *out, int cap, int *n);
/* One note on stderr when GGUF levels are built from a non-BF16 checkpoint held in bfloat16 (the bf16 path). */
void note_gguf_rounding(const evb_model *m, const evb_method *method);
int is_dir(const char *p);
/* The embedded default: the demo model shipped in assets/demo (EVB_HOME overrides the source directory). */
const char *default_asset(const char *name, char *buf, size_t n);
double now_s(void);
void set_threads(const opts *o);
/* --compute's value (auto when absent), or -1 after a usage message when it is not one of auto, bf16, f32,
 * or asks for bf16 on a CPU without it. */
int compute_opt(const opts *o);
/* The help lines of --compute, the same in every command that runs the model. */
#define COMPUTE_HELP "  --compute auto|bf16|f32  products in bfloat16 through oneDNN or float32 through OpenBLAS (default auto:\n" \
                     "                         bf16 where the CPU has AVX512-BF16 or AMX-BF16)\n"

typedef struct progress { double t0; const char *what; int tty; double last; const char *items; } progress;
void progress_cb(void *ctx, int done, int total);

typedef struct loaded { evb_model *m; evb_tokenizer *t; } loaded;
void loaded_free(loaded *l);
int load_model(const opts *o, int need_tokenizer, loaded *l);
/* A level database's calibration fingerprint: the windows', told apart when m holds a float32 or float16
 * checkpoint as BF16 (its levels are then compressed from the rounded weights, not the checkpoint's). */
void calib_fingerprint(const evb_model *m, const struct evb_windows *w, char cfp[17]);
/* batch, lowered so that a forward's logits (copies of them: 2 for a KL against a reference) stay within
 * 512 MiB: a 128k vocabulary takes 256 MB per window of 512 positions. */
int logits_batch(int batch, int seq_len, const evb_model *m, int copies);
/* Prints j (consumed) compactly on stdout. */
int print_json(json_t *j);

/* A configuration (best.json's format, problems/config.c): read from a best.json or a run directory holding
 * one; checked against the model, its dropped sub-blocks into *drop [2 L] (NULL when none); its levels loaded
 * from the database db_dir into *weights [U] (NULL: dense) backed by *mem (cfg NULL: the uniform level of
 * --uniform-sparsity / --uniform-bits). Each prints its error and returns an exit code. */
int config_read(const char *path, evb_allocation **cfg);
int config_check(const evb_model *m, const char *path, const evb_allocation *cfg, unsigned char **drop);
int load_levels(const evb_model *m, const opts *o, const char *db_dir, const evb_allocation *cfg, const float ***weights, float **mem);
int config_blocks(const evb_model *m, const char *db_dir, const evb_allocation *cfg,
                  evb_block_level ***blocks, int *n);
/* A library error that is the user's to fix (EVB_EINVAL, EVB_EBUDGET, a malformed input file) as a usage error:
 * "<command>: <prefix><message>", with a hint when the message has none. Exit 2. */
int refuse_status(const char *prefix);

int cmd_generate(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_db(int argc, char **argv);
int cmd_search(int argc, char **argv);
int cmd_sensitivity(int argc, char **argv);
int cmd_export(int argc, char **argv);
/* export --format gptq: the configuration's quantized levels packed in the GPTQ layout into dir (cli/export_gptq.c);
 * *summary (a JSON object) says what was packed. Prints its error and returns an exit code. */
int export_gptq(const evb_model *m, const opts *o, const evb_allocation *cfg, const char *dir, const char *dtype, json_t **summary);
/* export --format compressed-tensors: the configuration's sparse layers in the sparse-bitmask layout into dir
 * (cli/export_sparse.c); refuses quantized layers. Prints its error and returns an exit code. */
int export_sparse(const evb_model *m, const opts *o, const evb_allocation *cfg, const char *dir, const char *dtype, json_t **summary);
/* export --format gguf: the configuration as one GGUF file at path, its GGUF levels' blocks copied, the tokenizer
 * embedded (cli/export_gguf.c). Prints its error and returns an exit code. */
int export_gguf(const evb_model *m, const opts *o, const evb_allocation *cfg, const char *path, const char *dtype, json_t **summary);
int cmd_plot(int argc, char **argv);
/* cache list|size|clear: the level databases under the cache directory (cli/cache.c). */
int cmd_cache(int argc, char **argv);
/* The cache directory into buf[n]: --cache DIR, else $XDG_CACHE_HOME/evobudget, else ~/.cache/evobudget (the
 * directory search keeps its level databases in, one per model and calibration set). Returns buf. */
const char *cache_dir(const opts *o, char *buf, size_t n);
#endif
