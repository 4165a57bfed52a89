/* export.c -- `evobudget export`: a configuration's compressed model as a Hugging Face directory, written whole
 * or not at all through core/fileio.h's atomic directory write (a stage beside --out, renamed into place). */
#define _GNU_SOURCE
#include "cli/cli.h"
#include "core/fileio.h"
#include "core/json.h"
#include "models/safetensors.h"

#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* A layer's level in compression.json: what the configuration asked for. */
static void level_fields(json_t *e, const evb_allocation_unit *x) {
    if (!x || x->dense || (!x->zero && !x->key.method[0])) { json_object_set_new(e, "method", json_string("dense")); return; }
    json_object_set_new(e, "method", json_string(x->zero ? "zero" : x->key.method));
    if (x->zero) return;
    if (x->key.kind == EVB_LEVEL_GGUF) {
        const evb_gguf_type_info *t = evb_gguf_type_get(x->key.gguf_type);
        json_object_set_new(e, "type", json_string(t ? t->name : "?"));
        return;
    }
    if (x->key.kind == EVB_LEVEL_QUANT) {
        json_object_set_new(e, "bits", json_integer(x->key.bits));
        json_object_set_new(e, "group_size", json_integer(x->key.group_size));
        json_object_set_new(e, "sym", json_boolean(x->key.sym));
        return;
    }
    if (x->key.m) { json_object_set_new(e, "n_keep", json_integer(x->key.n_keep)); json_object_set_new(e, "m", json_integer(x->key.m)); }
    else json_object_set_new(e, "level_sparsity", json_real(x->key.sparsity));
}

/* compression.json: per linear layer its method and level and the sparsity of the saved weight, the dropped
 * sub-blocks, and where it all came from. */
static json_t *compression_record(const evb_model *m, const opts *o, const evb_allocation *cfg, const unsigned char *drop, const char *dtype) {
    int U = evb_model_n_units(m), L = m->config.n_layers;
    json_t *layers = json_array(), *dropped = json_array();
    size_t total = 0, zeros = 0;
    for (int u = 0; u < U; u++) {
        int l = u / EVB_LINEAR_COUNT, k = u % EVB_LINEAR_COUNT, r, c;
        evb_model_unit_shape(m, u, &r, &c);
        int is_dropped = drop && drop[(k < 4 ? 0 : L) + l];
        const float *w = m->layers[l].w[k];
        size_t z = 0, n = (size_t)r * c;
        for (size_t i = 0; i < n; i++) z += w[i] == 0.0f;
        if (is_dropped) z = n;
        total += n; zeros += z;
        const evb_allocation_unit *ue = NULL;
        for (int i = 0; i < cfg->n_units; i++) if (cfg->units[i].unit == u) ue = &cfg->units[i];
        json_t *e = json_pack("{s:i, s:i, s:s, s:[i, i], s:f}", "unit", u, "block", l, "layer", evb_linear_name(k),
                              "shape", r, c, "sparsity", (double)z / (double)n);
        char nm[96];
        snprintf(nm, sizeof nm, "model.layers.%d.%s.%s", l, k < 4 ? "self_attn" : "mlp", evb_linear_name(k));
        json_object_set_new(e, "name", json_string(nm));
        if (is_dropped) json_object_set_new(e, "method", json_string("dropped"));
        else level_fields(e, ue);
        json_array_append_new(layers, e);
    }
    for (int k = 0; k < 2; k++)
        for (int l = 0; l < L; l++)
            if (drop && drop[k * L + l]) json_array_append_new(dropped, json_pack("{s:i, s:s}", "block", l, "sub", k ? "mlp" : "attn"));
    char src[1300];
    if (!realpath(m->path, src)) snprintf(src, sizeof src, "%s", m->path);
    return json_pack("{s:i, s:s, s:s?, s:s, s:s, s:I, s:I, s:f, s:o, s:o}", "format", 1, "source", src, "db", o->db,
                     "config", o->config, "dtype", dtype, "linear_params", (json_int_t)total, "linear_zeros", (json_int_t)zeros,
                     "sparsity", total ? (double)zeros / (double)total : 0.0, "dropped", dropped, "layers", layers);
}

/* One export: what it reads, what it has written so far, and the stage it writes into. */
typedef struct job {
    opts o;
    const char *dtype;          /* --dtype as a safetensors name, NULL: the source's */
    int gptq, ct, gguf;         /* --format gptq|gptq_v2, --format compressed-tensors, --format gguf */
    evb_allocation *cfg;
    loaded l;
    unsigned char *drop;        /* [2 L] dropped sub-blocks, NULL when none */
    const float **weights;      /* [U] the levels' weights, NULL entries dense; NULL with no levels */
    evb_block_level **blocks;   /* [2 L] a speed configuration's structured levels, applied to the model */
    int n_blocks;
    float *wmem;
    const char *dt;             /* the dtype written */
    int n_comp, n_drop;
    json_t *files, *rec, *gsum, *csum;
    evb_dir_stage st;
    double t0;
} job;

static void print_help(void) {
    printf("usage: evobudget export --config FILE --out DIR [--model PATH] [--db DIR] [--dtype f32|f16|bf16] [--format hf|gptq|gptq_v2|compressed-tensors] [--json]\n"
           "       evobudget export --config FILE --format gguf --out FILE.gguf [--model PATH] [--db DIR] [--dtype f16|bf16|f32] [--json]\n"
           "  Writes the compressed model a configuration describes as a Hugging Face directory: config.json,\n"
           "  model.safetensors (pruned weights hold zeros, quantized ones their dequantized values, dropped\n"
           "  sub-blocks zero weights and config.json's \"evobudget_dropped\"), the tokenizer, and\n"
           "  compression.json (per layer its method, sparsity, bits and group size; the source model).\n"
           "  --config FILE   per-unit levels, best.json's format (its model and db are the defaults)\n"
           "  --model PATH    the dense model (Hugging Face directory or llama2.c .bin)\n"
           "  --db DIR        the level database the configuration refers to\n"
           "  --tokenizer F   the tokenizer written with the model (default: the one beside it)\n"
           "  --out DIR       a new or empty directory, written whole or not at all (built beside it as DIR.tmp.PID\n"
           "                  and renamed into place); --force replaces a non-empty one once the new one is\n"
           "                  complete. It may not be, lie inside or contain the model, database or run directory\n"
           "  --dtype NAME    f32, f16 or bf16 (default: the source checkpoint's dtype; f16 for gptq)\n"
           "  --format NAME   hf (default): dense weights; gptq: quantized (rtn, gptq) layers packed as\n"
           "                  qweight/qzeros/scales/g_idx with quantization_config (zero points stored minus\n"
           "                  one, AutoGPTQ's convention); gptq_v2: zero points as they are (GPTQModel's);\n"
           "                  other layers dense; compressed-tensors: sparse (magnitude, wanda, sparsegpt, N:M)\n"
           "                  layers in compressed-tensors' sparse-bitmask layout, other layers dense (no\n"
           "                  quantized layers); gguf: one GGUF file for llama.cpp, --out a file: layers at GGUF\n"
           "                  levels (search --compressor gguf|gguf-rtn) in their block types, the rest dense\n"
           "                  (--dtype, default f16), the tokenizer embedded. docs/export-formats.md says which\n"
           "                  loaders read what\n"
           "  --embd-type T   gguf: the token embedding (and an untied classifier) in GGUF type T by llama.cpp's\n"
           "                  rounding, e.g. Q6_K as llama.cpp's own Q4_K_M has it (default: --dtype)\n"
           "  --json          one JSON object on stdout: out, files, bytes, dtype, units compressed, dropped\n");
}

/* The flags: --help, the required ones, --dtype, --format, and an --out that is a file or (without --force) a
 * non-empty directory. 0, or the exit code after one line. */
static int parse_flags(int argc, char **argv, job *j) {
    opts *o = &j->o;
    int rc = parse_opts(argc, argv, "--model --tokenizer --db --config --out --dtype --format --embd-type --force --threads --json", o);
    if (rc || o->help) {
        if (o->help) print_help();
        return rc ? rc : -1;
    }
    if (!o->config) return usage_error("export needs --config FILE (e.g. RUNDIR/best.json)");
    if (!o->out) return usage_error("export needs --out DIR");
    if (o->dtype) {
        j->dtype = strcasecmp(o->dtype, "f32") == 0 ? "F32" : strcasecmp(o->dtype, "f16") == 0 ? "F16" : strcasecmp(o->dtype, "bf16") == 0 ? "BF16" : NULL;
        if (!j->dtype) return usage_error("--dtype '%s' is not one of f32, f16, bf16", o->dtype);
    }
    j->ct = o->format && strcmp(o->format, "compressed-tensors") == 0;
    j->gguf = o->format && strcmp(o->format, "gguf") == 0;
    j->gptq = o->format && strcmp(o->format, "hf") != 0 && !j->ct && !j->gguf;
    if (o->embd_type && !j->gguf) return usage_error("--embd-type goes with --format gguf");
    if (j->gptq && strcmp(o->format, "gptq") && strcmp(o->format, "gptq_v2"))
        return usage_error("--format '%s' is not one of hf, gptq, gptq_v2, compressed-tensors, gguf", o->format);
    struct stat sb;
    if (j->gguf) { /* one file */
        if (stat(o->out, &sb) == 0 && (S_ISDIR(sb.st_mode) || !o->force))
            return fprintf(stderr, "%s: --out %s exists%s (hint: %s)\n", cmd_name, o->out, S_ISDIR(sb.st_mode) ? " and is a directory" : "",
                           S_ISDIR(sb.st_mode) ? "--format gguf writes one file: give a file name such as model.gguf" : "choose a new file name, or --force to replace it"), 2;
        return 0;
    }
    if (stat(o->out, &sb) == 0 && (!S_ISDIR(sb.st_mode) || (!evb_dir_is_empty(o->out) && !o->force)))
        return fprintf(stderr, "%s: --out %s exists and is %s (hint: choose a new directory%s)\n", cmd_name, o->out,
                       S_ISDIR(sb.st_mode) ? "not empty" : "not a directory", S_ISDIR(sb.st_mode) ? ", or --force to replace it" : ""), 2;
    return 0;
}

/* The configuration, the model and the levels, the levels set into the model. 0, or the exit code. */
static int load_inputs(job *j) {
    opts *o = &j->o;
    int rc = config_read(o->config, &j->cfg);
    if (rc) return rc;
    if (!o->model && j->cfg->model[0]) o->model = j->cfg->model;
    if (!o->db && j->cfg->db[0]) o->db = j->cfg->db;
    int no_levels = j->cfg->n_units == 0;
    if (!o->model) return usage_error("--config %s names no model; give --model PATH", o->config);
    if (!o->db && !no_levels) return usage_error("--config %s names no level database; give --db DIR", o->config);
    set_threads(o);
    j->t0 = now_s();
    int s = evb_model_load(o->model, &j->l.m);
    if (s) return fail(s);
    if ((rc = config_check(j->l.m, o->config, j->cfg, &j->drop))) return rc;
    if (o->tokenizer) { /* the tokenizer written with the model (copied, or embedded in a GGUF file) */
        struct stat sb;
        if (stat(o->tokenizer, &sb) != 0 || !S_ISREG(sb.st_mode)) return refuse("--tokenizer %s: no such file", o->tokenizer);
        snprintf(j->l.m->tokenizer_path, sizeof j->l.m->tokenizer_path, "%s", o->tokenizer);
    }
    if (!no_levels && (rc = load_levels(j->l.m, o, o->db, j->cfg, &j->weights, &j->wmem))) return rc;
    evb_model *m = j->l.m;
    int U = evb_model_n_units(m), L = m->config.n_layers;
    for (int u = 0; j->weights && u < U; u++) { evb_model_set_weight(m, u, j->weights[u]); j->n_comp += j->weights[u] != NULL; }
    if (!no_levels && (rc = config_blocks(m, o->db, j->cfg, &j->blocks, &j->n_blocks))) return rc;
    if (j->blocks && (j->gptq || j->ct))
        return refuse("--config %s removes heads and channels: --format %s does not carry them (hint: --format hf, or "
                      "gguf)", o->config, o->format);
    for (int i = 0; j->blocks && i < 2 * L; i++) if (j->blocks[i]) evb_block_level_apply(m, j->blocks[i]);
    j->n_comp += j->n_blocks;
    for (int i = 0; j->drop && i < 2 * L; i++) j->n_drop += j->drop[i];
    for (int i = 0; j->drop && i < L; i++) { m->layers[i].skip_attn = j->drop[i]; m->layers[i].skip_mlp = j->drop[L + i]; }
    j->dt = j->dtype ? j->dtype : j->gptq || j->gguf ? "F16" : m->config.dtype;
    return 0;
}

/* Refuses an --out that is, lies inside or contains what export reads (--force would replace it): the model,
 * the tokenizer, the database, the configuration, and its run directory when a search wrote it (manifest.json
 * beside it). 0, or the exit code after one line. */
static int check_out(const job *j) {
    char run_dir[PATH_MAX], mf[PATH_MAX + 32];
    struct stat sb;
    snprintf(run_dir, sizeof run_dir, "%s", j->o.config);
    snprintf(mf, sizeof mf, "%s/manifest.json", dirname(run_dir));
    const evb_model *m = j->l.m;
    const char *reads[] = {m->path, m->tokenizer_path[0] ? m->tokenizer_path : NULL, j->o.db, j->o.config, stat(mf, &sb) == 0 ? run_dir : NULL};
    const char *what[] = {"the source model", "the tokenizer", "the level database", "the configuration", "the run directory"};
    int s = evb_dir_check_apart(j->o.out, reads, what, 5);
    if (s == EVB_EINVAL)
        return refuse("--out %s, which export reads (hint: choose a directory outside the model, the database and the run "
                      "directory)", evb_last_error());
    return s ? fail(s) : 0;
}

/* Copies src into the stage as name and lists it in files. 0, or the exit code. */
static int copy_in(job *j, const char *src, const char *name) {
    char dst[PATH_MAX + 128];
    snprintf(dst, sizeof dst, "%s/%s", j->st.path, name);
    json_array_append_new(j->files, json_string(name));
    int s = evb_copy_atomic(src, dst);
    return s ? fail(s) : 0;
}

/* The tokenizer and the Hugging Face side files travel with the weights. 0, or the exit code. */
static int copy_side_files(job *j) {
    const evb_model *m = j->l.m;
    int rc = 0;
    if (m->tokenizer_path[0]) {
        const char *ext = strrchr(m->tokenizer_path, '.');
        rc = copy_in(j, m->tokenizer_path, ext && strcmp(ext, ".json") == 0 ? "tokenizer.json" : "tokenizer.bin");
    }
    static const char *side[] = {"tokenizer_config.json", "special_tokens_map.json", "generation_config.json", "tokenizer.model"};
    if (j->gsum) json_array_append_new(j->files, json_string("quantize_config.json"));
    for (size_t i = 0; !rc && strcmp(m->config.format, "hf") == 0 && i < sizeof side / sizeof *side; i++) {
        char src[1400];
        struct stat sb;
        snprintf(src, sizeof src, "%s/%s", m->path, side[i]);
        if (stat(src, &sb) == 0) rc = copy_in(j, src, side[i]);
    }
    return rc;
}

/* Everything into the stage: the weights in the format asked for, the side files, compression.json. */
static int write_stage(job *j) {
    int rc = 0, s;
    j->files = json_pack("[s, s, s]", "config.json", "model.safetensors", "compression.json");
    if (j->ct) rc = export_sparse(j->l.m, &j->o, j->cfg, j->st.path, j->dt, &j->csum);
    else if (j->gptq) rc = export_gptq(j->l.m, &j->o, j->cfg, j->st.path, j->dt, &j->gsum);
    else if ((s = evb_model_save(j->l.m, j->st.path, j->dt))) rc = fail(s);
    if (!rc) rc = copy_side_files(j);
    if (rc) return rc;
    j->rec = compression_record(j->l.m, &j->o, j->cfg, j->drop, j->dt);
    if (!j->rec) return fail(EVB_RAISEF(EVB_ENOMEM, "out of memory building compression.json"));
    char dst[PATH_MAX + 64];
    snprintf(dst, sizeof dst, "%s/compression.json", j->st.path);
    return (s = evb_json_write_file(dst, j->rec, 1)) ? fail(s) : 0;
}

/* What was written: one JSON object with --json, else one line. */
static int report(job *j) {
    char p[PATH_MAX + 32];
    struct stat sb;
    snprintf(p, sizeof p, "%s/model.safetensors", j->st.target);
    long long bytes = stat(p, &sb) == 0 ? (long long)sb.st_size : -1;
    double sparsity = json_real_value(json_object_get(j->rec, "sparsity"));
    if (!j->o.json) {
        printf("wrote %s: %s weights (%lld bytes), %d units compressed, %d sub-blocks dropped, linear sparsity %.4f\n", j->o.out, j->dt,
               bytes, j->n_comp, j->n_drop, sparsity);
        return 0;
    }
    json_t *r = json_pack("{s:s, s:s, s:O, s:I, s:s, s:i, s:i, s:f, s:f}", "out", j->o.out, "model", j->l.m->path, "files", j->files,
                          "safetensors_bytes", (json_int_t)bytes, "dtype", j->dt, "units_compressed", j->n_comp, "sub_blocks_dropped", j->n_drop,
                          "sparsity", sparsity, "seconds", now_s() - j->t0);
    json_object_set_new(r, "format", json_string(j->gptq || j->ct ? j->o.format : "hf"));
    if (j->gsum) json_object_set_new(r, "gptq", j->gsum), j->gsum = NULL;
    if (j->csum) json_object_set_new(r, "compressed_tensors", j->csum), j->csum = NULL;
    return print_json(r);
}

static void job_free(job *j) {
    json_decref(j->rec);
    json_decref(j->gsum);
    json_decref(j->csum);
    json_decref(j->files);
    free(j->weights); free(j->wmem); free(j->drop);
    if (j->l.m) evb_allocation_blocks_free(j->blocks, 2 * j->l.m->config.n_layers);
    evb_allocation_free(j->cfg);
    loaded_free(&j->l);
}

int cmd_export(int argc, char **argv) {
    job j = {0};
    int rc = parse_flags(argc, argv, &j);
    if (rc) return rc < 0 ? 0 : rc;
    if (j.gguf) {
        if (!(rc = load_inputs(&j)) && !(rc = check_out(&j)) && !(rc = export_gguf(j.l.m, &j.o, j.cfg, j.o.out, j.dt, &j.gsum))) {
            if (j.o.json) {
                json_object_set_new(j.gsum, "out", json_string(j.o.out));
                json_object_set_new(j.gsum, "format", json_string("gguf"));
                json_object_set_new(j.gsum, "dtype", json_string(j.dt));
                json_object_set_new(j.gsum, "seconds", json_real(now_s() - j.t0));
                rc = print_json(j.gsum);
                j.gsum = NULL;
            } else
                printf("wrote %s: %lld bytes, %d linear layers in GGUF types, %d dense (%s), %.4f bits per weight\n", j.o.out,
                       (long long)json_integer_value(json_object_get(j.gsum, "file_bytes")), (int)json_integer_value(json_object_get(j.gsum, "layers_gguf")),
                       (int)json_integer_value(json_object_get(j.gsum, "layers_dense")), j.dt, json_real_value(json_object_get(j.gsum, "bits_per_weight")));
        }
        job_free(&j);
        return rc;
    }
    if (!(rc = load_inputs(&j)) && !(rc = check_out(&j))) {
        int s = evb_dir_stage_begin(&j.st, j.o.out);
        rc = s ? fail(s) : write_stage(&j);
        if (rc) evb_dir_stage_abort(&j.st);
        else if ((s = evb_dir_stage_commit(&j.st, j.o.force))) rc = fail(s);
        if (j.st.left[0])
            fprintf(stderr, "%s: warning: %s (%s): cannot remove: %s\n", cmd_name, j.st.left,
                    rc ? "the unfinished export" : "the replaced directory", strerror(j.st.left_errno));
        if (!rc) rc = report(&j);
    }
    job_free(&j);
    return rc;
}
