/* eval.c -- `evobudget eval`: perplexity of a model on a text, and KL of a compressed configuration or an
 * exported model to its dense model. */
#define _DEFAULT_SOURCE
#include "cli/cli.h"
#include "core/fileio.h"
#include "evobudget/evb_calib.h"
#include "evobudget/evb_db.h"
#include "evobudget/evb_eval.h"
#include "evobudget/evb_task.h"
#include "evobudget/evb_timing.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


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

static const char eval_help[] =
    "usage: evobudget eval [--model PATH] [--tokenizer PATH] [--data TEXTFILE] [--seq-len N] [--max-tokens N] [--json]\n"
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
    "  --windows-out FILE write the windows scored to FILE, one per line, token ids separated by spaces\n"
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
    "                     A configuration of a speed target (structured levels) is also timed: the forward\n"
    "                     of --batch x --seq-len tokens against the dense one's (rounds of --timing-repeats "
    "N\n"
    "                     runs, default 3), the measured speedup beside the predicted one and the target\n"
    "  --reference PATH   also report kl, the mean per-token KL(reference || model), e.g. the dense model\n"
    "                     a compressed one came from (default for a directory written by 'evobudget\n"
    "                     export': the source its compression.json records, when it is there)\n"
    "  --task FILE.jsonl  also score multiple-choice items (evb_task.h: context, choices, gold): accuracy and the\n"
    "                     gold choice's cross-entropy among the choices (what --fitness task:FILE minimises)\n"
    "  --json             one JSON object on stdout: perplexity, nll (mean per token), tokens (scored);\n"
    "                     with a configuration also kl, the mean per-token KL(dense || compressed); with --task,\n"
    "                     task: {items, accuracy, ce}\n";

/* What eval scores: a model, and a configuration's weights (or a reference model) to compare it with. */
typedef struct eval_job {
    opts o;
    evb_allocation *cfg;
    int n_cfg, no_levels;
    loaded l;
    const float **weights;
    float *wmem;
    unsigned char *drop;
    evb_model *ref;
    char ref_path[1300], method[16];
    evb_model view;                /* a configuration's structured levels: the model with them applied (its own
                                    * layers, the shared weights), scored against the dense model */
    evb_block_level **blocks;      /* [2 L] */
    int n_blocks;
} eval_job;

static void eval_free(eval_job *e) {
    if (e->l.m) evb_allocation_blocks_free(e->blocks, 2 * e->l.m->config.n_layers);
    free(e->view.layers);
    free(e->weights); free(e->wmem); free(e->drop);
    evb_model_free(e->ref);
    evb_allocation_free(e->cfg);
    loaded_free(&e->l);
}

/* The flags that go together, the configuration read, the database's defaults: before any model is loaded. */
static int eval_flags(eval_job *e) {
    opts *o = &e->o;
    int rc;
    if (o->config && (rc = config_read(o->config, &e->cfg))) return rc;
    if (e->cfg && !o->model && e->cfg->model[0]) o->model = e->cfg->model;
    if (e->cfg && !o->db && e->cfg->db[0]) o->db = e->cfg->db;
    e->n_cfg = !!o->config + !!o->uniform_sparsity_s + !!o->uniform_bits;
    e->no_levels = e->cfg && e->cfg->n_units == 0; /* only dropped sub-blocks */
    if (e->n_cfg > 1) return usage_error("give one of --config, --uniform-sparsity, --uniform-bits");
    if (o->calib_windows && o->max_tokens) return usage_error("give --max-tokens or --calib-windows, not both");
    if (e->n_cfg && o->reference) return usage_error("--reference compares two models; a configuration is compared with its own dense model (give one of them)");
    if (e->n_cfg && !o->db && !e->no_levels) return usage_error("a configuration needs --db DIR (the level database)");
    if (o->uniform_sparsity_s) {
        char *end;
        o->uniform_sparsity = strtod(o->uniform_sparsity_s, &end);
        if (*end || !(o->uniform_sparsity > 0 && o->uniform_sparsity < 1)) return usage_error("--uniform-sparsity '%s' must be a number in (0, 1)", o->uniform_sparsity_s);
    }
    if ((o->uniform_sparsity_s || o->uniform_bits) && o->db && (rc = uniform_defaults(o->db, o, e->method))) return rc;
    if (o->group_size < 0) o->group_size = 0;
    if (!o->data && !is_demo_model(o->model))
        return refuse("--data is needed for a model other than the demo (%s): without it eval would score the demo's "
                      "calibration text (hint: --data TEXTFILE, e.g. a held-out text of the model's language)", o->model);
    return 0;
}

/* A configuration's structured levels (speed targets) as block levels of m from the database db_dir: *blocks
 * [2 L] (NULL when the configuration has none; free with evb_allocation_blocks_free), *n how many. 0, or the
 * exit code after one line. */
int config_blocks(const evb_model *m, const char *db_dir, const evb_allocation *cfg,
                  evb_block_level ***blocks, int *n) {
    *blocks = NULL; *n = 0;
    int has = 0;
    for (int i = 0; i < cfg->n_units; i++) has |= !cfg->units[i].dense && cfg->units[i].key.kind == EVB_LEVEL_STRUCT;
    if (!has) return 0;
    char mfp[17];
    evb_fingerprint_model(m, mfp);
    evb_db *db = NULL;
    int s = evb_db_open(db_dir, mfp, NULL, 0, &db);
    if (!s) s = evb_db_check_model(db, m);
    if (!s) s = evb_allocation_blocks(cfg, m, db, db_dir, blocks, n);
    evb_db_close(db);
    return s ? fail(s) : 0;
}

/* A structured configuration's block levels, applied to a view of the model that eval scores against the
 * dense model and times against it. */
static int load_blocks(eval_job *e) {
    evb_model *m = e->l.m;
    int L = m->config.n_layers, rc = config_blocks(m, e->o.db, e->cfg, &e->blocks, &e->n_blocks);
    if (rc || !e->blocks) return rc;
    for (size_t u = 0; e->weights && u < (size_t)evb_model_n_units(m); u++)
        if (e->weights[u]) return refuse("--config %s mixes structured levels with other levels; eval scores one kind",
                                          e->o.config);
    e->view = *m;
    e->view.layers = malloc(sizeof(evb_layer) * (size_t)L);
    if (!e->view.layers) return fail(EVB_RAISEF(EVB_ENOMEM, "out of memory"));
    memcpy(e->view.layers, m->layers, sizeof(evb_layer) * (size_t)L);
    for (int i = 0; i < 2 * L; i++) if (e->blocks[i]) evb_block_level_apply(&e->view, e->blocks[i]);
    for (int l = 0; e->drop && l < L; l++) { e->view.layers[l].skip_attn = e->drop[l]; e->view.layers[l].skip_mlp = e->drop[L + l]; }
    free(e->weights);
    e->weights = NULL;
    return 0;
}

/* The model, and what it is compared with: the configuration's weights, or the reference model. */
static int eval_load(eval_job *e) {
    int rc = load_model(&e->o, 1, &e->l);
    if (rc) return rc;
    if (e->cfg && (rc = config_check(e->l.m, e->o.config, e->cfg, &e->drop))) return rc;
    if (e->no_levels) e->weights = calloc((size_t)evb_model_n_units(e->l.m), sizeof *e->weights);
    else if (e->n_cfg && (rc = load_levels(e->l.m, &e->o, e->o.db, e->cfg, &e->weights, &e->wmem))) return rc;
    if (e->cfg && (rc = load_blocks(e))) return rc;
    if (!e->n_cfg) rc = load_reference(&e->o, e->l.m, &e->ref, e->ref_path, sizeof e->ref_path);
    return rc;
}

/* The task's accuracy and cross-entropy of the model with the configuration's weights: task[3] = items,
 * accuracy, ce; items 0 without --task. */
static int eval_task(const eval_job *e, double task[3]) {
    task[0] = 0;
    if (!e->o.task) return 0;
    evb_task t;
    evb_model *m = e->l.m;
    int s = evb_task_load(e->o.task, e->l.t, m->config.max_seq_len, &t);
    if (s) return s == EVB_ENOMEM ? fail(s) : refuse_status("--task ");
    if (e->weights || e->drop) s = evb_eval_set_weights(m, e->weights, e->drop);
    if (!s) s = evb_task_eval(m, &t, (int)e->o.batch, &task[2], &task[1]);
    if (e->weights || e->drop) evb_eval_set_weights(m, NULL, NULL);
    task[0] = t.n_items;
    evb_task_free(&t);
    return s ? fail(s) : 0;
}

/* The measured speed of a structured configuration beside what its search predicted and aimed at. */
static void print_speed(const eval_job *e, json_t *j, const double speed[4]) {
    const evb_allocation *c = e->cfg;
    json_t *sp = json_pack("{s:i, s:i, s:f, s:f, s:f, s:i}", "batch", (int)e->o.batch, "seq_len",
                           (int)speed[3],
                           "dense_seconds", speed[0], "seconds", speed[1], "speedup", speed[2], "sub_blocks", e->n_blocks);
    if (!isnan(c->speedup)) json_object_set_new(sp, "predicted_speedup", json_real(c->speedup));
    int speedup = !strcmp(c->target_kind, "speedup");
    if (!isnan(c->target) && (speedup || !strcmp(c->target_kind, "latency")))
        json_object_set_new(sp, speedup ? "target_speedup" : "target_seconds", json_real(c->target));
    json_object_set_new(j, "speed", sp);
    if (e->o.json) return;
    printf("speed: %.4f s a forward against the dense %.4f s: %.3fx measured", speed[1], speed[0], speed[2]);
    if (!isnan(c->speedup)) printf(", %.3fx predicted", c->speedup);
    if (speedup && !isnan(c->target)) printf(", target %gx", c->target);
    printf(" (%d structured sub-blocks)\n", e->n_blocks);
}

static int eval_print(const eval_job *e, const char *data, const evb_windows *w, double nll, double kl,
                      size_t scored,
                      double t0, double t1, double t2, const double speed[4]) {
    double mean = nll / (double)scored, ppl = exp(mean);
    json_t *j = json_pack("{s:f, s:f, s:I, s:i, s:i, s:s, s:s, s:f, s:f}", "perplexity", ppl, "nll", mean,
                          "tokens", (json_int_t)scored, "windows", w->n, "seq_len", w->seq_len, "model", e->l.m->path,
                          "data", data, "seconds", t2 - t0, "tokens_per_s", scored / (t2 - t1));
    if (e->weights || e->ref || e->blocks) json_object_set_new(j, "kl", json_real(kl / (double)scored));
    if (e->weights) json_object_set_new(j, "db", json_string(e->o.db));
    if (e->ref) json_object_set_new(j, "reference", json_string(e->ref_path));
    double task[3];
    int rc = eval_task(e, task);
    if (rc) { json_decref(j); return rc; }
    if (task[0] > 0) json_object_set_new(j, "task", json_pack("{s:s, s:i, s:f, s:f}", "path", e->o.task, "items", (int)task[0], "accuracy", task[1], "ce", task[2]));
    if (e->o.json) {
        if (e->blocks) print_speed(e, j, speed);
        return print_json(j);
    }
    printf("perplexity %.4f  (nll %.5f per token over %zu tokens, %d windows of %d, %.1fs)", ppl, mean, scored, w->n, w->seq_len, t2 - t0);
    if (e->weights || e->ref || e->blocks) printf("  kl %.5f per token", kl / (double)scored);
    printf("\n");
    if (e->blocks) print_speed(e, j, speed);
    if (task[0] > 0) printf("task %s: accuracy %.4f over %d items, cross-entropy of the gold choice %.5f\n", e->o.task, task[1], (int)task[0], task[2]);
    json_decref(j);
    return 0;
}

/* Scores the text's windows: the NLL, and the KL to the dense model (configuration) or from the reference. */
/* The windows scored, one per line, their token ids separated by spaces (what another implementation needs to
 * score the same tokens: tests/tools/llama_judge reads this). */
static int windows_file(FILE *f, void *ctx) {
    const evb_windows *w = ctx;
    for (int i = 0; i < w->n; i++)
        for (int k = 0; k < w->len[i]; k++) fprintf(f, "%d%c", w->tokens[(size_t)i * w->seq_len + k], k + 1 < w->len[i] ? ' ' : '\n');
    return ferror(f) ? EVB_RAISEF(EVB_EIO, "cannot write the windows") : EVB_SUCCESS;
}

static int write_windows(const char *path, const evb_windows *w) { return evb_write_atomic_with(path, windows_file, (void *)w); }

/* A structured configuration's forward against the dense one, both timed on --batch x --seq-len random
 * tokens: rounds of R runs each (--timing-repeats, default 3), alternating, the median of the rounds'
 * medians. speed[4] = dense seconds, the configuration's seconds, their ratio, the positions per sequence. */
static int measure_speed(const eval_job *e, int seq_len, double speed[3]) {
    enum { ROUNDS = 3 };
    int R = e->o.timing_repeats > 0 ? (int)e->o.timing_repeats : 3, B = (int)e->o.batch, s = 0;
    double t[2][ROUNDS];
    for (int r = 0; r < ROUNDS && !s; r++) {
        s = evb_time_forward(e->l.m, B, seq_len, R, &t[0][r]);
        if (!s) s = evb_time_forward(&e->view, B, seq_len, R, &t[1][r]);
    }
    if (s) return s;
    for (int k = 0; k < 2; k++)   /* the median of the three rounds */
        speed[k] = fmax(fmin(t[k][0], t[k][1]), fmin(fmax(t[k][0], t[k][1]), t[k][2]));
    speed[2] = speed[0] / speed[1];
    speed[3] = seq_len;
    return 0;
}

static int eval_score(const eval_job *e, const char *data, int seq_len) {
    const opts *o = &e->o;
    const evb_model *m = e->l.m;
    evb_windows w = {0};
    evb_state *st = NULL;
    size_t scored = 0;
    double nll = 0, kl = 0, t0 = now_s();
    int s = evb_windows_from_file(e->l.t, data, (size_t)o->piece_bytes, seq_len, (int)o->calib_windows, 0, (size_t)o->max_tokens, &w);
    if (!s && o->windows_out) s = write_windows(o->windows_out, &w);
    int batch = logits_batch((int)o->batch < w.n ? (int)o->batch : (w.n > 0 ? w.n : 1), seq_len, m, e->weights || e->ref ? 2 : 1);
    if (!s) s = evb_state_alloc(m, batch, seq_len, &st);
    double t1 = now_s();
    progress p = {t1, "eval", isatty(2), 0, "windows"};
    if (!s && e->blocks) s = evb_eval_nll_kl_ref(e->l.m, &e->view, st, &w, batch, &nll, &kl, &scored,
                                                 progress_cb, &p);
    else if (!s && e->weights) s = evb_eval_nll_kl(e->l.m, st, &w, batch, e->weights, e->drop, &nll, &kl,
                                                   &scored, progress_cb, &p);
    else if (!s && e->ref) s = evb_eval_nll_kl_ref(e->ref, e->l.m, st, &w, batch, &nll, &kl, &scored, progress_cb, &p);
    else if (!s) s = evb_eval_nll(e->l.m, st, &w, batch, &nll, &scored, progress_cb, &p);
    double t2 = now_s();
    /* The library refuses NaN sums; what is left is a mean too large for exp() (or nothing scored). */
    if (!s && scored == 0) s = EVB_RAISEF(EVB_EINVAL, "%s: no token was scored (hint: give a longer text or a larger --seq-len)", data);
    else if (!s && !isfinite(exp(nll / (double)scored)))
        s = EVB_RAISEF(EVB_EBADFUNC, "%s: the mean negative log-likelihood %.6g per token makes the perplexity overflow a double "
                       "(hint: the model's weights are out of range; check where the checkpoint came from)", m->path, nll / (double)scored);
    double speed[4] = {NAN, NAN, NAN, NAN};
    if (!s && e->blocks) s = measure_speed(e, seq_len, speed);
    int rc = s ? fail(s) : eval_print(e, data, &w, nll, kl, scored, t0, t1, t2, speed);
    evb_state_free(st);
    evb_windows_free(&w);
    return rc;
}

int cmd_eval(int argc, char **argv) {
    eval_job e;
    memset(&e, 0, sizeof e);
    e.o.batch = 8; e.o.piece_bytes = 4000;
    e.o.group_size = -1;  /* not given: --uniform-bits takes the database's when it holds one */
    int rc = parse_opts(argc, argv, "--model --tokenizer --data --seq-len --max-tokens --calib-windows --batch --windows-out --threads --piece-bytes --db --config --uniform-sparsity --uniform-bits --method --group-size --sym --reference --task --compute --timing-repeats --json", &e.o);
    if (rc || e.o.help) {
        if (e.o.help) fputs(eval_help, stdout);
        return rc;
    }
    if (!(rc = eval_flags(&e))) {
        set_threads(&e.o);
        rc = eval_load(&e);
    }
    if (!rc) {
        char buf[1024];
        const char *data = e.o.data ? e.o.data : default_asset("calib.txt", buf, sizeof buf);
        int ctx = e.l.m->config.max_seq_len, seq_len = e.o.seq_len ? (int)e.o.seq_len : (ctx < 512 ? ctx : 512);
        rc = seq_len > ctx ? usage_error("--seq-len %d exceeds the model's context of %d", seq_len, ctx) : eval_score(&e, data, seq_len);
    }
    eval_free(&e);
    return rc;
}
