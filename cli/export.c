/* export.c -- `evobudget export`: a configuration's compressed model as a Hugging Face directory. */
#define _GNU_SOURCE
#include "cli/cli.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Copies src to dst through a temporary name. */
static int copy_file(const char *src, const char *dst) {
    FILE *in = fopen(src, "rb");
    if (!in) { fprintf(stderr, "%s: error: %s: cannot open: %s\n", cmd_name, src, strerror(errno)); return 1; }
    char tmp[1400];
    snprintf(tmp, sizeof tmp, "%s.tmp", dst);
    FILE *out = fopen(tmp, "wb");
    if (!out) { fclose(in); fprintf(stderr, "%s: error: %s: cannot create: %s\n", cmd_name, tmp, strerror(errno)); return 1; }
    char buf[1 << 16];
    size_t n;
    int ok = 1;
    while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0) ok = fwrite(buf, 1, n, out) == n;
    ok = ok && !ferror(in);
    fclose(in);
    if (fclose(out) != 0) ok = 0;
    if (!ok || rename(tmp, dst) != 0) { remove(tmp); fprintf(stderr, "%s: error: %s: write failed: %s\n", cmd_name, dst, strerror(errno)); return 1; }
    return 0;
}

static int dir_is_empty(const char *p) {
    DIR *d = opendir(p);
    if (!d) return 1;
    struct dirent *e;
    int empty = 1;
    while (empty && (e = readdir(d))) empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
    closedir(d);
    return empty;
}

/* compression.json: per linear layer its method and level and the sparsity of the saved weight, the dropped
 * sub-blocks, and where it all came from. */
static json_t *compression_record(const evb_model *m, const opts *o, json_t *cfg, const unsigned char *drop, const char *dtype) {
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
        json_t *ue = NULL, *x;
        size_t i;
        json_array_foreach(json_object_get(cfg, "units"), i, x) if (json_integer_value(json_object_get(x, "unit")) == u) ue = x;
        json_t *e = json_pack("{s:i, s:i, s:s, s:[i, i], s:f}", "unit", u, "block", l, "layer", evb_linear_name(k),
                              "shape", r, c, "sparsity", (double)z / (double)n);
        char nm[96];
        snprintf(nm, sizeof nm, "model.layers.%d.%s.%s", l, k < 4 ? "self_attn" : "mlp", evb_linear_name(k));
        json_object_set_new(e, "name", json_string(nm));
        if (is_dropped) json_object_set_new(e, "method", json_string("dropped"));
        else if (!ue || json_is_true(json_object_get(ue, "dense"))) json_object_set_new(e, "method", json_string("dense"));
        else {
            static const char *keys[] = {"method", "bits", "group_size", "sym", "n_keep", "m"};
            for (size_t q = 0; q < sizeof keys / sizeof *keys; q++) {
                json_t *v = json_object_get(ue, keys[q]);
                if (v) json_object_set(e, keys[q], v);
            }
            json_t *lv = json_object_get(ue, "sparsity");
            if (lv) json_object_set(e, "level_sparsity", lv);
        }
        json_array_append_new(layers, e);
    }
    for (int k = 0; k < 2; k++)
        for (int l = 0; l < L; l++)
            if (drop && drop[k * L + l]) json_array_append_new(dropped, json_pack("{s:i, s:s}", "block", l, "sub", k ? "mlp" : "attn"));
    char src[1300];
    if (!realpath(m->path, src)) snprintf(src, sizeof src, "%s", m->path);
    return json_pack("{s:i, s:s, s:s?, s:s, s:s, s:I, s:I, s:f, s:o, s:o, s:O?}", "format", 1, "source", src, "db", o->db,
                     "config", o->config, "dtype", dtype, "linear_params", (json_int_t)total, "linear_zeros", (json_int_t)zeros,
                     "sparsity", total ? (double)zeros / (double)total : 0.0, "dropped", dropped, "layers", layers,
                     "search", json_object_get(cfg, "total"));
}

int cmd_export(int argc, char **argv) {
    opts o = {0};
    int rc = parse_opts(argc, argv, "--model --db --config --out --dtype --force --threads --json", &o);
    if (rc || o.help) {
        if (o.help) printf("usage: evobudget export --config FILE --out DIR [--model PATH] [--db DIR] [--dtype f32|f16|bf16] [--json]\n"
                           "  Writes the compressed model a configuration describes as a Hugging Face directory: config.json,\n"
                           "  model.safetensors (pruned weights hold zeros, quantized ones their dequantized values, dropped\n"
                           "  sub-blocks zero weights and config.json's \"evobudget_dropped\"), the tokenizer, and\n"
                           "  compression.json (per layer its method, sparsity, bits and group size; the source model).\n"
                           "  --config FILE   per-unit levels, best.json's format (its model and db are the defaults)\n"
                           "  --model PATH    the dense model (Hugging Face directory or llama2.c .bin)\n"
                           "  --db DIR        the level database the configuration refers to\n"
                           "  --out DIR       a new or empty directory (--force writes into a non-empty one)\n"
                           "  --dtype NAME    f32, f16 or bf16 (default: the source checkpoint's dtype)\n"
                           "  --json          one JSON object on stdout: out, files, bytes, dtype, units compressed, dropped\n");
        return rc;
    }
    if (!o.config) return usage_error("export needs --config FILE (e.g. RUNDIR/best.json)");
    if (!o.out) return usage_error("export needs --out DIR");
    const char *dtype = NULL;
    if (o.dtype) {
        dtype = strcasecmp(o.dtype, "f32") == 0 ? "F32" : strcasecmp(o.dtype, "f16") == 0 ? "F16" : strcasecmp(o.dtype, "bf16") == 0 ? "BF16" : NULL;
        if (!dtype) return usage_error("--dtype '%s' is not one of f32, f16, bf16", o.dtype);
    }
    struct stat sb;
    if (stat(o.out, &sb) == 0 && (!S_ISDIR(sb.st_mode) || (!dir_is_empty(o.out) && !o.force)))
        return usage_error("--out %s exists and is %s (hint: choose a new directory, or --force to write into it)", o.out,
                           S_ISDIR(sb.st_mode) ? "not empty" : "not a directory");
    json_t *cfg;
    if ((rc = config_read(o.config, &cfg))) return rc;
    if (!o.model) o.model = json_string_value(json_object_get(cfg, "model"));
    if (!o.db) o.db = json_string_value(json_object_get(cfg, "db"));
    int no_levels = json_array_size(json_object_get(cfg, "units")) == 0;
    if (!o.model) { json_decref(cfg); return usage_error("--config %s names no model; give --model PATH", o.config); }
    if (!o.db && !no_levels) { json_decref(cfg); return usage_error("--config %s names no level database; give --db DIR", o.config); }
    set_threads(&o);
    double t0 = now_s();
    loaded l = {0};
    int s = evb_model_load(o.model, &l.m);
    if (s) { json_decref(cfg); return fail(s); }
    unsigned char *drop = NULL;
    const float **weights = NULL;
    float *wmem = NULL;
    if ((rc = config_check(l.m, o.config, cfg, &drop))) { json_decref(cfg); loaded_free(&l); return rc; }
    if (!no_levels && (rc = load_levels(l.m, &o, o.db, cfg, &weights, &wmem))) { free(drop); json_decref(cfg); loaded_free(&l); return rc; }
    int U = evb_model_n_units(l.m), L = l.m->config.n_layers, n_comp = 0, n_drop = 0;
    for (int u = 0; weights && u < U; u++) { evb_model_set_weight(l.m, u, weights[u]); n_comp += weights[u] != NULL; }
    for (int i = 0; drop && i < 2 * L; i++) n_drop += drop[i];
    for (int i = 0; drop && i < L; i++) { l.m->layers[i].skip_attn = drop[i]; l.m->layers[i].skip_mlp = drop[L + i]; }
    const char *dt = dtype ? dtype : l.m->config.dtype;
    s = evb_model_save(l.m, o.out, dt);
    if (s) rc = fail(s);
    /* The tokenizer and the Hugging Face side files travel with the weights. */
    json_t *files = json_pack("[s, s, s]", "config.json", "model.safetensors", "compression.json");
    char dst[1400];
    if (!rc && l.m->tokenizer_path[0]) {
        const char *ext = strrchr(l.m->tokenizer_path, '.');
        const char *name = ext && strcmp(ext, ".json") == 0 ? "tokenizer.json" : "tokenizer.bin";
        snprintf(dst, sizeof dst, "%s/%s", o.out, name);
        rc = copy_file(l.m->tokenizer_path, dst);
        json_array_append_new(files, json_string(name));
    }
    static const char *side[] = {"tokenizer_config.json", "special_tokens_map.json", "generation_config.json", "tokenizer.model"};
    for (size_t i = 0; !rc && strcmp(l.m->config.format, "hf") == 0 && i < sizeof side / sizeof *side; i++) {
        char src[1400];
        snprintf(src, sizeof src, "%s/%s", l.m->path, side[i]);
        if (stat(src, &sb) != 0) continue;
        snprintf(dst, sizeof dst, "%s/%s", o.out, side[i]);
        rc = copy_file(src, dst);
        json_array_append_new(files, json_string(side[i]));
    }
    json_t *rec = rc ? NULL : compression_record(l.m, &o, cfg, drop, dt);
    if (!rc) {
        snprintf(dst, sizeof dst, "%s/compression.json", o.out);
        char tmp[1420];
        snprintf(tmp, sizeof tmp, "%s.tmp", dst);
        if (json_dump_file(rec, tmp, JSON_INDENT(1) | JSON_PRESERVE_ORDER) != 0 || rename(tmp, dst) != 0) {
            remove(tmp);
            rc = usage_error("--out %s: cannot write compression.json: %s", o.out, strerror(errno));
        }
    }
    if (!rc) {
        snprintf(dst, sizeof dst, "%s/model.safetensors", o.out);
        long long bytes = stat(dst, &sb) == 0 ? (long long)sb.st_size : -1;
        json_t *j = json_pack("{s:s, s:s, s:O, s:I, s:s, s:i, s:i, s:f, s:f}", "out", o.out, "model", l.m->path, "files", files,
                              "safetensors_bytes", (json_int_t)bytes, "dtype", dt, "units_compressed", n_comp, "sub_blocks_dropped", n_drop,
                              "sparsity", json_real_value(json_object_get(rec, "sparsity")), "seconds", now_s() - t0);
        if (o.json) rc = print_json(j);
        else {
            printf("wrote %s: %s weights (%lld bytes), %d units compressed, %d sub-blocks dropped, linear sparsity %.4f\n", o.out, dt,
                   bytes, n_comp, n_drop, json_real_value(json_object_get(rec, "sparsity")));
            json_decref(j);
        }
    }
    json_decref(rec);
    json_decref(files);
    free(weights); free(wmem); free(drop);
    json_decref(cfg);
    loaded_free(&l);
    return rc;
}
