/* db.c -- `evobudget db build|info`: the level database from the command line. */
#define _POSIX_C_SOURCE 200809L
#include "cli/cli.h"
#include "evobudget/evb_calib.h"
#include "evobudget/evb_db.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


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
        const evb_gguf_type_info *gt = e.kind == EVB_LEVEL_GGUF ? evb_gguf_type_get(e.gguf_type) : NULL;
        if (o.levels)
            json_array_append_new(levels, json_pack("{s:i, s:s, s:s, s:s, s:f, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:I, s:f}",
                "unit", e.unit, "name", evb_linear_name(e.unit % EVB_LINEAR_COUNT), "method", e.method,
                "dtype", evb_db_dtype_name(e.dtype), "sparsity", e.sparsity,
                "n_keep", e.n_keep, "m", e.m, "bits", e.bits, "group_size", e.group_size, "rows", e.rows, "cols", e.cols,
                "params_kept", e.params_kept, "bits_stored", e.bits_stored, "bytes", (json_int_t)e.bytes, "recon_error", e.recon_error));
        if (o.levels && gt) json_object_set_new(json_array_get(levels, json_array_size(levels) - 1), "type", json_string(gt->name));
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

static const char build_help[] =
    "usage: evobudget db build [--model PATH] [--calib TEXTFILE] --method NAME LEVELS --out DIR [--json]\n"
    "  Compresses every linear layer at every level asked for and stores the levels in the database DIR\n"
    "  (created when missing, extended when it exists: levels already there are not recomputed).\n"
    "  --method NAME          magnitude, wanda, sparsegpt (sparsity); rtn, gptq (quantization); gguf (GPTQ into\n"
    "                         GGUF block types' grids), gguf-rtn (llama.cpp's own rounding)\n"
    "  --sparsity LIST        fractions of weights removed, e.g. 0.1,0.2,...,0.9\n"
    "  --nm N:M               semi-structured pattern instead, e.g. 2:4\n"
    "  --step-target S        EvoPress's equal-step grid instead: around sparsity S, level l of a layer\n"
    "                         removes exactly round(S N) + l D weights (N its size, D the step), so\n"
    "                         trading one level between any two layers keeps the total constant\n"
    "  --num-levels K         levels each side of the target (default 8)\n"
    "  --weights-diff D       the step in weights (default int(0.5 min(S, 1-S) / K dim^2))\n"
    "  --bits LIST            bit widths 2..8, e.g. 2,3,4\n"
    "  --types LIST           GGUF block types, e.g. Q4_K,Q3_K,Q8_0 (default: all ten); a layer gets those its\n"
    "                         rows hold (k-quants: multiples of 256 inputs; Q4_0..Q8_0: multiples of 32)\n"
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
    "  --json                 one JSON object on stdout\n";

/* A db build: the method and the levels asked for. */
typedef struct build_job {
    opts o;
    const evb_method *method;
    double sp[64], bl[16], step_target, calib_value;
    int n_sp, n_bits, nk, nm, sequential, bits[16], types[16], n_types;
} build_job;

static int sparse_levels(build_job *b) {
    const opts *o = &b->o;
    int rc;
    if (o->bits || o->types) return usage_error("%s is for %s, not %s", o->bits ? "--bits" : "--types", o->bits ? "rtn and gptq" : "gguf and gguf-rtn", o->method);
    if (!!o->sparsity + !!o->nm + !!o->step_target != 1) return usage_error("%s needs exactly one of --sparsity LIST, --step-target S or --nm N:M", o->method);
    if (o->step_target) {
        char *end;
        b->step_target = strtod(o->step_target, &end);
        if (*end || end == o->step_target || !(b->step_target > 0 && b->step_target < 1)) return usage_error("--step-target '%s' must be a number in (0, 1)", o->step_target);
    }
    if (o->sparsity && (rc = parse_list("--sparsity", o->sparsity, b->sp, 64, &b->n_sp))) return rc;
    for (int i = 0; i < b->n_sp; i++) if (!(b->sp[i] > 0 && b->sp[i] < 1)) return usage_error("--sparsity %g must lie in (0, 1)", b->sp[i]);
    if (o->nm && (sscanf(o->nm, "%d:%d", &b->nk, &b->nm) != 2 || b->nk < 1 || b->nm < 2 || b->nk >= b->nm || b->nm > 64))
        return usage_error("--nm '%s' must be N:M with 1 <= N < M <= 64, e.g. 2:4", o->nm);
    return 0;
}

static int quant_levels(build_job *b) {
    const opts *o = &b->o;
    int rc;
    if (o->sparsity || o->nm || o->step_target) return usage_error("--sparsity, --step-target and --nm are for magnitude, wanda and sparsegpt, not %s", o->method);
    if (o->types) return usage_error("--types is for gguf and gguf-rtn, not %s", o->method);
    if (!o->bits) return usage_error("%s needs --bits LIST", o->method);
    if ((rc = parse_list("--bits", o->bits, b->bl, 16, &b->n_bits))) return rc;
    for (int i = 0; i < b->n_bits; i++) {
        if (b->bl[i] != (int)b->bl[i] || b->bl[i] < 2 || b->bl[i] > 8) return usage_error("--bits %g must be an integer in [2, 8]", b->bl[i]);
        b->bits[i] = (int)b->bl[i];
    }
    return 0;
}

/* GGUF levels: --types LIST, or every block type. */
static int gguf_levels(build_job *b) {
    const opts *o = &b->o;
    if (o->sparsity || o->nm || o->step_target || o->bits)
        return usage_error("--sparsity, --step-target, --nm and --bits are not for %s (hint: --types Q4_K,Q3_K,...)", o->method);
    if (o->types) return parse_gguf_types(o->types, b->types, 16, &b->n_types);
    static const int all[] = {EVB_GGUF_Q2_K, EVB_GGUF_Q3_K, EVB_GGUF_Q4_K, EVB_GGUF_Q5_K, EVB_GGUF_Q6_K,
                              EVB_GGUF_Q4_0, EVB_GGUF_Q4_1, EVB_GGUF_Q5_0, EVB_GGUF_Q5_1, EVB_GGUF_Q8_0};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) b->types[b->n_types++] = all[i];
    return 0;
}

static int build_flags(build_job *b) {
    const opts *o = &b->o;
    if (!o->method) return usage_error("--method is required (%s)", evb_method_names());
    if (!(b->method = evb_method_find(o->method))) return usage_error("--method '%s' is unknown (%s)", o->method, evb_method_names());
    if (!o->out) return usage_error("--out DIR is required");
    if (o->protocol && strcmp(o->protocol, "dense") && strcmp(o->protocol, "sequential")) return usage_error("--protocol '%s' must be dense or sequential", o->protocol);
    b->sequential = o->protocol && strcmp(o->protocol, "sequential") == 0;
    if (o->calib_level && !b->sequential) return usage_error("--calib-level goes with --protocol sequential");
    if (b->sequential && o->nm) return usage_error("--protocol sequential is for --sparsity, --step-target and --bits levels");
    if ((o->num_levels != 8 || o->weights_diff) && !o->step_target) return usage_error("--num-levels and --weights-diff go with --step-target");
    if (b->sequential && b->method->kind == EVB_LEVEL_GGUF) return usage_error("--protocol sequential is not for GGUF levels");
    int rc = b->method->kind == EVB_LEVEL_SPARSE ? sparse_levels(b) : b->method->kind == EVB_LEVEL_GGUF ? gguf_levels(b) : quant_levels(b);
    if (rc) return rc;
    b->calib_value = b->step_target ? b->step_target : b->n_sp ? b->sp[b->n_sp / 2] : b->n_bits ? b->bl[b->n_bits / 2] : 0;
    if (o->calib_level) {
        char *end;
        b->calib_value = strtod(o->calib_level, &end);
        if (*end || end == o->calib_level || !isfinite(b->calib_value)) return usage_error("--calib-level '%s' is not a number", o->calib_level);
    }
    return 0;
}

static int build_print(const build_job *b, evb_db *db, const evb_level_grid *g, int built, int present, const char *mfp, const char *cfp,
                       double t0, double t1, double t2) {
    int repaired = evb_db_n_replaced(db);
    json_t *j = json_pack("{s:s, s:s, s:i, s:i, s:i, s:i, s:s, s:s, s:s, s:f, s:f}", "db", b->o.out, "method", b->o.method,
                          "built", built, "present", present, "repaired", repaired, "entries", evb_db_count(db), "model", mfp, "calib", cfp,
                          "protocol", b->sequential ? "sequential" : "dense", "calib_seconds", t1 - t0, "build_seconds", t2 - t1);
    if (repaired) fprintf(stderr, "%s: %d levels had a damaged or missing payload and were rebuilt\n", b->o.out, repaired);
    if (b->step_target) json_object_set_new(j, "weights_diff", json_integer(g->step_weights));
    if (b->o.json) return print_json(j);
    printf("%s: %d levels built, %d already present, %d in all (%.1fs)\n", b->o.out, built, present, evb_db_count(db), t2 - t0);
    json_decref(j);
    return 0;
}

/* The calibration windows, the database (its calibration fingerprint: sequential levels depend on the level
 * passed on as well as on the text), the statistics, then the levels. */
static int build_run(const build_job *b, const loaded *l) {
    const opts *o = &b->o;
    char buf[1024], mfp[17], cfp[17];
    const char *calib = o->calib ? o->calib : default_asset("calib.txt", buf, sizeof buf);
    int seq_len = o->seq_len ? (int)o->seq_len : (l->m->config.max_seq_len < 512 ? l->m->config.max_seq_len : 512);
    evb_windows w = {0};
    evb_calib *cs = NULL;
    evb_db *db = NULL;
    int built = 0, present = 0, rc = 0;
    double t0 = now_s();
    int s = evb_windows_from_file(l->t, calib, (size_t)o->piece_bytes, seq_len, (int)o->calib_windows, (uint64_t)o->seed, 0, &w);
    if (!s) {
        evb_fingerprint_model(l->m, mfp);
        calib_fingerprint(l->m, &w, cfp);
        char desc[96];
        int nd = snprintf(desc, sizeof desc, "%s sequential %s %.17g", cfp, o->method, b->calib_value);
        if (b->sequential) evb_hash_hex(desc, (size_t)nd, 0, cfp);
        s = evb_db_open(o->out, mfp, cfp, 1, &db);
    }
    if (!s && !b->sequential) s = evb_calib_collect(l->m, &w, (int)o->batch, &cs);
    double t1 = now_s();
    evb_level_grid g = {b->sp, b->n_sp, b->nk, b->nm, b->bits, b->n_bits, (int)o->group_size, o->sym, o->act_order, b->step_target,
                        b->step_target ? (int)o->num_levels : 0, 0, b->types, b->n_types};
    if (b->step_target) g.step_weights = o->weights_diff ? o->weights_diff : evb_step_weights_default(l->m, b->step_target, (int)o->num_levels);
    progress p = {t1, "db build", isatty(2), 0, "levels"};
    if (!s && b->sequential) s = evb_db_build_sequential(db, l->m, &w, (int)o->batch, b->method, &g, b->calib_value, &built, &present, progress_cb, &p);
    else if (!s) s = evb_db_build(db, l->m, cs, b->method, &g, &built, &present, progress_cb, &p);
    rc = s ? fail(s) : build_print(b, db, &g, built, present, mfp, cfp, t0, t1, now_s());
    evb_db_close(db);
    evb_calib_free(cs);
    evb_windows_free(&w);
    return rc;
}

static int cmd_db_build(int argc, char **argv) {
    build_job b;
    memset(&b, 0, sizeof b);
    b.o.calib_windows = 32; b.o.batch = 8; b.o.piece_bytes = 4000; b.o.num_levels = 8;
    int rc = parse_opts(argc, argv, "--model --tokenizer --calib --method --sparsity --nm --step-target --num-levels --weights-diff --bits --types --group-size --sym --act-order --protocol --calib-level --out --calib-windows --seq-len --seed --batch --threads --compute --json", &b.o);
    if (rc || b.o.help) {
        if (b.o.help) fputs(build_help, stdout);
        return rc;
    }
    if ((rc = build_flags(&b))) return rc;
    set_threads(&b.o);
    loaded l;
    if ((rc = load_model(&b.o, 1, &l))) return rc;
    note_gguf_rounding(l.m, b.method);
    rc = build_run(&b, &l);
    loaded_free(&l);
    return rc;
}

static const struct { const char *name; int (*run)(int, char **); const char *help; } db_commands[] = {
    {"build", cmd_db_build, "compress every layer at every level and store the levels"},
    {"info", cmd_db_info, "summarise a level database"},
};

int cmd_db(int argc, char **argv) {
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

