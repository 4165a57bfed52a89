/* export.c -- `evobudget export`: a configuration's compressed model as a Hugging Face directory. */
#define _GNU_SOURCE
#include "cli/cli.h"
#include "core/fileio.h"
#include "core/json.h"
#include "models/safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct copy { FILE *in; const char *src, *dst; };

static int copy_into(FILE *out, void *ctx) {
    const struct copy *c = ctx;
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, c->in)) > 0)
        if (fwrite(buf, 1, n, out) != n) {
            int e = errno ? errno : EIO;
            return EVB_RAISEF(EVB_EIO, "%s: write failed: %s%s", c->dst, strerror(e), evb_write_hint(e));
        }
    if (ferror(c->in)) return EVB_RAISEF(EVB_EIO, "%s: read failed: %s (hint: check the file and the device holding it)", c->src, strerror(errno));
    return EVB_SUCCESS;
}

/* Copies src to dst (evb_write_atomic_with: a temporary name, fsync, rename). 0, or 1 with the error printed. */
static int copy_file(const char *src, const char *dst) {
    struct copy c = {fopen(src, "rb"), src, dst};
    if (!c.in) {
        fprintf(stderr, "%s: error: %s: cannot open: %s (hint: %s)\n", cmd_name, src, strerror(errno),
                errno == ENOENT ? "it was removed after the model was loaded; run again" : "check that it is readable");
        return 1;
    }
    int s = evb_write_atomic_with(dst, copy_into, &c);
    fclose(c.in);
    return s ? fail(s) : 0;
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

// ---- the output directory: built beside OUT, renamed into place when complete ----

/* Everything is written into a sibling OUT.tmp.<pid> (the stage), which is renamed to OUT only once every file
 * in it is complete and fsync'd, and the parent directory is fsync'd after: a killed or failed export leaves
 * OUT as it was (absent, or the old directory) and a stage that no reader takes for OUT. An existing OUT
 * (empty, or with --force) is swapped with the stage in one rename (RENAME_EXCHANGE) and removed after; where
 * the file system cannot swap, it is renamed aside to OUT.old.<pid> first and renamed back if the second rename
 * fails. Stages and old directories of processes that no longer run are removed by the next export. */

static int remove_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)ftw;
    return (flag == FTW_DP ? rmdir(p) : unlink(p)) != 0 && errno != ENOENT ? -1 : 0;
}

/* Removes the tree at p without following symbolic links; 0 or -1 with errno. */
static int remove_tree(const char *p) {
    struct stat sb;
    if (lstat(p, &sb) != 0) return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(sb.st_mode)) return unlink(p);
    return nftw(p, remove_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

/* The absolute path OUT names, symbolic links resolved (OUT itself when it exists, else its parent's real path
 * and OUT's last component). 0, or 1 with the error printed. */
static int out_path(const char *out, char *canon, size_t n) {
    char buf[PATH_MAX];
    if (realpath(out, buf)) { snprintf(canon, n, "%s", buf); return 0; }
    if (errno != ENOENT) { fprintf(stderr, "%s: error: --out %s: %s (hint: choose a directory you can write)\n", cmd_name, out, strerror(errno)); return 1; }
    char copy[PATH_MAX], copy2[PATH_MAX];
    snprintf(copy, sizeof copy, "%s", out);
    snprintf(copy2, sizeof copy2, "%s", out);
    size_t len = strlen(copy);
    while (len > 1 && copy[len - 1] == '/') { len--; copy[len] = copy2[len] = '\0'; }
    const char *base = basename(copy2), *parent = dirname(copy);
    if (!realpath(parent, buf)) {
        fprintf(stderr, "%s: error: --out %s: its parent directory %s: %s (hint: create it first)\n", cmd_name, out, parent, strerror(errno));
        return 1;
    }
    if (strcmp(base, ".") == 0 || strcmp(base, "..") == 0 || strlen(buf) + strlen(base) + 2 > n) {
        fprintf(stderr, "%s: error: --out %s cannot be resolved (hint: give the directory's path)\n", cmd_name, out);
        return 1;
    }
    return snprintf(canon, n, "%s%s%s", buf, strcmp(buf, "/") ? "/" : "", base) >= (int)n; /* checked above */
}

/* 1 when the directory or file `in` (an absolute, resolved path) is `dir` or lies inside it: dev and inode of
 * dir compared with in's and each of its ancestors' (so bind mounts and links are seen through). */
static int lies_within(const char *in, const struct stat *dir) {
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s", in);
    for (;;) {
        struct stat sb;
        if (stat(p, &sb) == 0 && sb.st_dev == dir->st_dev && sb.st_ino == dir->st_ino) return 1;
        char *slash = strrchr(p, '/');
        if (!slash || p[1] == '\0') return 0;
        if (slash == p) slash[1] = '\0';
        else *slash = '\0';
    }
}

/* Refuses an OUT that is, lies inside or contains what the export reads: --force would replace it. what[i]
 * names paths[i]. 0, or 2 with the refusal printed. */
static int check_overlap(const char *out, const char *out_canon, const char *const *paths, const char *const *what, int n) {
    struct stat osb;
    int out_exists = stat(out_canon, &osb) == 0;
    for (int i = 0; i < n; i++) {
        char canon[PATH_MAX];
        struct stat psb;
        if (!paths[i] || !realpath(paths[i], canon) || stat(canon, &psb) != 0) continue;
        const char *how = NULL;
        if (out_exists && osb.st_dev == psb.st_dev && osb.st_ino == psb.st_ino) how = "is";
        else if (S_ISDIR(psb.st_mode) && lies_within(out_canon, &psb)) how = "lies inside";
        else if (out_exists && lies_within(canon, &osb)) how = "contains";
        if (how) {
            fprintf(stderr, "%s: --out %s %s %s %s, which export reads (hint: choose a directory outside the model, the "
                    "database and the run directory)\n", cmd_name, out, how, what[i], paths[i]);
            return 2;
        }
    }
    return 0;
}

/* Removes the stages and old directories of OUT left by exports that were killed (their process is gone). */
static void remove_stale(const char *out_canon) {
    char parent[PATH_MAX], base[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", out_canon);
    char *slash = strrchr(parent, '/');
    snprintf(base, sizeof base, "%s", slash + 1);
    if (slash == parent) slash[1] = '\0';
    else *slash = '\0';
    DIR *d = opendir(parent);
    if (!d) return;
    size_t bl = strlen(base);
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *rest = e->d_name + bl;
        if (strncmp(e->d_name, base, bl) != 0 || (strncmp(rest, ".tmp.", 5) != 0 && strncmp(rest, ".old.", 5) != 0)) continue;
        char *end;
        long pid = strtol(rest + 5, &end, 10);
        if (*end || end == rest + 5 || pid <= 0 || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char p[PATH_MAX + 256];
        snprintf(p, sizeof p, "%s/%s", strcmp(parent, "/") ? parent : "", e->d_name);
        remove_tree(p);
    }
    closedir(d);
}

/* Makes the stage out_canon.tmp.<pid>. 0, or 1 with the error printed. */
static int stage_make(const char *out_canon, char *stage, size_t n) {
    remove_stale(out_canon);
    snprintf(stage, n, "%s.tmp.%ld", out_canon, (long)getpid());
    remove_tree(stage);
    if (mkdir(stage, 0755) != 0) {
        int e = errno;
        fprintf(stderr, "%s: error: %s: cannot create: %s%s\n", cmd_name, stage, strerror(e), evb_write_hint(e));
        stage[0] = '\0';
        return 1;
    }
    return 0;
}

/* Renames the complete stage to out_canon and fsyncs the parent. An existing directory is replaced when force
 * is set, and only when empty otherwise (rename(2) refuses a non-empty one, so a directory filled since the
 * check is kept). 0, or 1 with the error printed and out_canon as it was. */
static int stage_commit(const char *stage, const char *out_canon, const char *out, int force) {
    int fd = open(stage, O_RDONLY | O_DIRECTORY);
    int synced = fd >= 0 && fsync(fd) == 0;
    int e = errno;
    if (fd >= 0) close(fd);
    if (!synced) {
        fprintf(stderr, "%s: error: %s: cannot sync: %s%s\n", cmd_name, stage, strerror(e), evb_write_hint(e));
        return 1;
    }
    struct stat sb;
    int exists = lstat(out_canon, &sb) == 0;
    if (exists && !force) {
        if (rename(stage, out_canon) != 0) {
            e = errno;
            fprintf(stderr, "%s: error: --out %s: cannot rename %s to it: %s%s\n", cmd_name, out, stage, strerror(e),
                    e == EEXIST || e == ENOTEMPTY ? " (hint: another process wrote into it meanwhile; choose a new directory, or --force to replace it)"
                                                  : evb_write_hint(e));
            return 1;
        }
    } else if (!exists) {
        int r = renameat2(AT_FDCWD, stage, AT_FDCWD, out_canon, RENAME_NOREPLACE);
        if (r != 0 && (errno == EINVAL || errno == ENOSYS)) r = rename(stage, out_canon); /* no RENAME_NOREPLACE here */
        if (r != 0) {
            e = errno;
            fprintf(stderr, "%s: error: --out %s: cannot rename %s to it: %s%s\n", cmd_name, out, stage, strerror(e),
                    e == EEXIST || e == ENOTEMPTY ? " (hint: another process created it meanwhile; run again)" : evb_write_hint(e));
            return 1;
        }
    } else if (renameat2(AT_FDCWD, stage, AT_FDCWD, out_canon, RENAME_EXCHANGE) == 0) {
        /* the stage's name now holds the old directory */
        if (remove_tree(stage) != 0)
            fprintf(stderr, "%s: warning: %s (the replaced directory): cannot remove: %s\n", cmd_name, stage, strerror(errno));
    } else {
        char old[PATH_MAX + 64];
        snprintf(old, sizeof old, "%s.old.%ld", out_canon, (long)getpid());
        remove_tree(old);
        if (rename(out_canon, old) != 0 || rename(stage, out_canon) != 0) {
            e = errno;
            rename(old, out_canon); /* the old directory back where it was (a no-op if the first rename failed) */
            fprintf(stderr, "%s: error: --out %s: cannot replace it: %s%s\n", cmd_name, out, strerror(e), evb_write_hint(e));
            return 1;
        }
        if (remove_tree(old) != 0)
            fprintf(stderr, "%s: warning: %s (the replaced directory): cannot remove: %s\n", cmd_name, old, strerror(errno));
    }
    int s = evb_fsync_parent(out_canon);
    return s ? fail(s) : 0;
}

/* compression.json: per linear layer its method and level and the sparsity of the saved weight, the dropped
 * sub-blocks, and where it all came from. */
/* A layer's level in compression.json: what the configuration asked for. */
static void level_fields(json_t *e, const evb_allocation_unit *x) {
    if (!x || x->dense || (!x->zero && !x->key.method[0])) { json_object_set_new(e, "method", json_string("dense")); return; }
    json_object_set_new(e, "method", json_string(x->zero ? "zero" : x->key.method));
    if (x->zero) return;
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

int cmd_export(int argc, char **argv) {
    opts o = {0};
    int rc = parse_opts(argc, argv, "--model --db --config --out --dtype --format --force --threads --json", &o);
    if (rc || o.help) {
        if (o.help) printf("usage: evobudget export --config FILE --out DIR [--model PATH] [--db DIR] [--dtype f32|f16|bf16] [--format hf|gptq|gptq_v2|compressed-tensors] [--json]\n"
                           "  Writes the compressed model a configuration describes as a Hugging Face directory: config.json,\n"
                           "  model.safetensors (pruned weights hold zeros, quantized ones their dequantized values, dropped\n"
                           "  sub-blocks zero weights and config.json's \"evobudget_dropped\"), the tokenizer, and\n"
                           "  compression.json (per layer its method, sparsity, bits and group size; the source model).\n"
                           "  --config FILE   per-unit levels, best.json's format (its model and db are the defaults)\n"
                           "  --model PATH    the dense model (Hugging Face directory or llama2.c .bin)\n"
                           "  --db DIR        the level database the configuration refers to\n"
                           "  --out DIR       a new or empty directory, written whole or not at all (built beside it as DIR.tmp.PID\n"
                           "                  and renamed into place); --force replaces a non-empty one once the new one is\n"
                           "                  complete. It may not be, lie inside or contain the model, database or run directory\n"
                           "  --dtype NAME    f32, f16 or bf16 (default: the source checkpoint's dtype; f16 for gptq)\n"
                           "  --format NAME   hf (default): dense weights; gptq: quantized (rtn, gptq) layers packed as\n"
                           "                  qweight/qzeros/scales/g_idx with quantization_config (zero points stored minus\n"
                           "                  one, AutoGPTQ's convention); gptq_v2: zero points as they are (GPTQModel's);\n"
                           "                  other layers dense; compressed-tensors: sparse (magnitude, wanda, sparsegpt, N:M)\n"
                           "                  layers in compressed-tensors' sparse-bitmask layout, other layers dense (no\n"
                           "                  quantized layers). docs/export-formats.md says which loaders read what\n"
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
    int ct = o.format && strcmp(o.format, "compressed-tensors") == 0;
    int gptq = o.format && strcmp(o.format, "hf") != 0 && !ct;
    if (gptq && strcmp(o.format, "gptq") && strcmp(o.format, "gptq_v2"))
        return usage_error("--format '%s' is not one of hf, gptq, gptq_v2, compressed-tensors", o.format);
    struct stat sb;
    if (stat(o.out, &sb) == 0 && (!S_ISDIR(sb.st_mode) || (!dir_is_empty(o.out) && !o.force)))
        return fprintf(stderr, "%s: --out %s exists and is %s (hint: choose a new directory%s)\n", cmd_name, o.out,
                       S_ISDIR(sb.st_mode) ? "not empty" : "not a directory", S_ISDIR(sb.st_mode) ? ", or --force to replace it" : ""), 2;
    evb_allocation *cfg;
    if ((rc = config_read(o.config, &cfg))) return rc;
    if (!o.model && cfg->model[0]) o.model = cfg->model;
    if (!o.db && cfg->db[0]) o.db = cfg->db;
    int no_levels = cfg->n_units == 0;
    if (!o.model) { evb_allocation_free(cfg); return usage_error("--config %s names no model; give --model PATH", o.config); }
    if (!o.db && !no_levels) { evb_allocation_free(cfg); return usage_error("--config %s names no level database; give --db DIR", o.config); }
    set_threads(&o);
    double t0 = now_s();
    loaded l = {0};
    int s = evb_model_load(o.model, &l.m);
    if (s) { evb_allocation_free(cfg); return fail(s); }
    unsigned char *drop = NULL;
    const float **weights = NULL;
    float *wmem = NULL;
    if ((rc = config_check(l.m, o.config, cfg, &drop))) { evb_allocation_free(cfg); loaded_free(&l); return rc; }
    if (!no_levels && (rc = load_levels(l.m, &o, o.db, cfg, &weights, &wmem))) { free(drop); evb_allocation_free(cfg); loaded_free(&l); return rc; }
    /* What export reads may not be replaced or written into by it; the run directory is the configuration's
     * when a search wrote it (manifest.json beside it). */
    char out_canon[PATH_MAX], stage[PATH_MAX + 64] = "", run_dir[PATH_MAX], mf[PATH_MAX + 32];
    snprintf(run_dir, sizeof run_dir, "%s", o.config);
    snprintf(mf, sizeof mf, "%s/manifest.json", dirname(run_dir));
    const char *reads[] = {l.m->path, l.m->tokenizer_path[0] ? l.m->tokenizer_path : NULL, o.db, o.config, stat(mf, &sb) == 0 ? run_dir : NULL};
    const char *reads_what[] = {"the source model", "the tokenizer", "the level database", "the configuration", "the run directory"};
    if (!rc) rc = out_path(o.out, out_canon, sizeof out_canon);
    if (!rc) rc = check_overlap(o.out, out_canon, reads, reads_what, 5);
    if (!rc) rc = stage_make(out_canon, stage, sizeof stage);
    if (rc) { free(weights); free(wmem); free(drop); evb_allocation_free(cfg); loaded_free(&l); return rc; }
    int U = evb_model_n_units(l.m), L = l.m->config.n_layers, n_comp = 0, n_drop = 0;
    for (int u = 0; weights && u < U; u++) { evb_model_set_weight(l.m, u, weights[u]); n_comp += weights[u] != NULL; }
    for (int i = 0; drop && i < 2 * L; i++) n_drop += drop[i];
    for (int i = 0; drop && i < L; i++) { l.m->layers[i].skip_attn = drop[i]; l.m->layers[i].skip_mlp = drop[L + i]; }
    const char *dt = dtype ? dtype : gptq ? "F16" : l.m->config.dtype;
    json_t *gsum = NULL, *csum = NULL;
    if (ct) rc = export_sparse(l.m, &o, cfg, stage, dt, &csum);
    else if (gptq) rc = export_gptq(l.m, &o, cfg, stage, dt, &gsum);
    else if ((s = evb_model_save(l.m, stage, dt))) rc = fail(s);
    /* The tokenizer and the Hugging Face side files travel with the weights. */
    json_t *files = json_pack("[s, s, s]", "config.json", "model.safetensors", "compression.json");
    char dst[PATH_MAX + 128];
    if (!rc && l.m->tokenizer_path[0]) {
        const char *ext = strrchr(l.m->tokenizer_path, '.');
        const char *name = ext && strcmp(ext, ".json") == 0 ? "tokenizer.json" : "tokenizer.bin";
        snprintf(dst, sizeof dst, "%s/%s", stage, name);
        rc = copy_file(l.m->tokenizer_path, dst);
        json_array_append_new(files, json_string(name));
    }
    static const char *side[] = {"tokenizer_config.json", "special_tokens_map.json", "generation_config.json", "tokenizer.model"};
    if (gsum) json_array_append_new(files, json_string("quantize_config.json"));
    for (size_t i = 0; !rc && strcmp(l.m->config.format, "hf") == 0 && i < sizeof side / sizeof *side; i++) {
        char src[1400];
        snprintf(src, sizeof src, "%s/%s", l.m->path, side[i]);
        if (stat(src, &sb) != 0) continue;
        snprintf(dst, sizeof dst, "%s/%s", stage, side[i]);
        rc = copy_file(src, dst);
        json_array_append_new(files, json_string(side[i]));
    }
    json_t *rec = rc ? NULL : compression_record(l.m, &o, cfg, drop, dt);
    if (!rc) {
        snprintf(dst, sizeof dst, "%s/compression.json", stage);
        if (!rec) rc = fail(EVB_RAISEF(EVB_ENOMEM, "out of memory building compression.json"));
        else if ((s = evb_json_write_file(dst, rec, 1))) rc = fail(s);
    }
    if (!rc) rc = stage_commit(stage, out_canon, o.out, o.force);
    if (rc && remove_tree(stage) != 0)
        fprintf(stderr, "%s: warning: %s (the unfinished export): cannot remove: %s\n", cmd_name, stage, strerror(errno));
    if (!rc) {
        snprintf(dst, sizeof dst, "%s/model.safetensors", out_canon);
        long long bytes = stat(dst, &sb) == 0 ? (long long)sb.st_size : -1;
        json_t *j = json_pack("{s:s, s:s, s:O, s:I, s:s, s:i, s:i, s:f, s:f}", "out", o.out, "model", l.m->path, "files", files,
                              "safetensors_bytes", (json_int_t)bytes, "dtype", dt, "units_compressed", n_comp, "sub_blocks_dropped", n_drop,
                              "sparsity", json_real_value(json_object_get(rec, "sparsity")), "seconds", now_s() - t0);
        json_object_set_new(j, "format", json_string(gptq || ct ? o.format : "hf"));
        if (gsum) json_object_set_new(j, "gptq", gsum), gsum = NULL;
        if (csum) json_object_set_new(j, "compressed_tensors", csum), csum = NULL;
        if (o.json) rc = print_json(j);
        else {
            printf("wrote %s: %s weights (%lld bytes), %d units compressed, %d sub-blocks dropped, linear sparsity %.4f\n", o.out, dt,
                   bytes, n_comp, n_drop, json_real_value(json_object_get(rec, "sparsity")));
            json_decref(j);
        }
    }
    json_decref(rec);
    json_decref(gsum);
    json_decref(csum);
    json_decref(files);
    free(weights); free(wmem); free(drop);
    evb_allocation_free(cfg);
    loaded_free(&l);
    return rc;
}
