#define _GNU_SOURCE
/* test_export_sparse.c -- `evobudget export --format compressed-tensors` read back by an independent reader.
 *
 * The reader below is written from compressed-tensors' published layout (BitmaskCompressor,
 * compressed_tensors/compressors/sparse_compressors/sparse_bitmask.py): per compressed linear layer NAME,
 * NAME.shape int64 [2], NAME.compressed [nnz] in the model's dtype (the nonzero values, row-major),
 * NAME.bitmask uint8 [rows, ceil(cols / 8)] (numpy.unpackbits(..., bitorder="little"): column c of a row at
 * bit c % 8 of byte c / 8), NAME.row_offsets int64 [rows]; it parses the safetensors header itself with
 * jansson. Every compressed layer it unpacks is compared byte for byte with the dense export of the same
 * configuration in the same dtype (float32 and float16), and so is every other tensor. The configurations
 * mix SparseGPT levels of 30, 50 and 70 %, magnitude 2:4, a removed ("zero") layer, a layer left dense and
 * a dropped MLP; a 2:4-only one must be marked sparsity_structure "2:4"; Wanda levels of a llama2.c model
 * (stories260K, or its stand-in) check the rotate-half order of q and k rows, a 172-wide MLP (bitmask rows
 * ending in padding bits) and bfloat16. Refused in one line: quantized layers (with the hint to use
 * --format gptq) and a configuration without sparse layers. */
#include "testing.h"
#include "standin.h"
#include "export_reader.h"
#include "evobudget/evb_model.h"

#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Length of a one-dimensional tensor, -1 if absent or not one-dimensional. */
static long st_len(const st_file *f, const char *name) {
    json_t *shp = json_object_get(json_object_get(f->hdr, name), "shape");
    return json_array_size(shp) == 1 ? (long)json_integer_value(json_array_get(shp, 0)) : -1;
}

static int64_t rd64(const uint8_t *p, size_t i) {
    p += 8 * i;
    uint64_t v = 0;
    for (int k = 0; k < 8; k++) v |= (uint64_t)p[k] << (8 * k);
    return (int64_t)v;
}

/* 1 when the esz bytes at p are +0 or -0 in a little-endian IEEE format of that size. */
static int is_zero(const uint8_t *p, long esz) {
    for (long k = 0; k < esz - 1; k++) if (p[k]) return 0;
    return (p[esz - 1] & 0x7f) == 0;
}

typedef struct stats { long long kept, weights, mismatched, bad_mask, zero_values; int n_compressed, n_dense, dense_bad, max_group_kept; } stats;

/* Unpacks layer NAME [rows, cols] of g and compares it with NAME.weight of the dense export h. 0 on a
 * layout error (missing tensor, wrong shape or offsets). */
static int check_compressed(const st_file *g, const st_file *h, const char *name, long rows, long cols, const char *dtype, stats *s) {
    char nm[200];
    const long esz = dtype_size(dtype), nb = (cols + 7) / 8;
    snprintf(nm, sizeof nm, "%s.compressed", name);
    long nnz = st_len(g, nm);
    const uint8_t *vals = nnz >= 0 ? st_get(g, nm, dtype, nnz, -1) : NULL;
    snprintf(nm, sizeof nm, "%s.shape", name);
    const uint8_t *shp = st_get(g, nm, "I64", 2, -1);
    snprintf(nm, sizeof nm, "%s.bitmask", name);
    const uint8_t *bm = st_get(g, nm, "U8", rows, nb);
    snprintf(nm, sizeof nm, "%s.row_offsets", name);
    const uint8_t *ro = st_get(g, nm, "I64", rows, -1);
    snprintf(nm, sizeof nm, "%s.weight", name);
    const uint8_t *ref = st_get(h, nm, dtype, rows, cols);
    if (!vals || !shp || !bm || !ro || !ref || json_object_get(g->hdr, nm)) return 0;
    if (rd64(shp, 0) != rows || rd64(shp, 1) != cols) return 0;
    long long next = 0;
    for (long r = 0; r < rows; r++) {
        if (rd64(ro, (size_t)r) != next) return 0;
        for (long c = 0; c < cols; c++) {
            int bit = bm[r * nb + c / 8] >> (c % 8) & 1;
            const uint8_t *want = ref + (size_t)(r * cols + c) * (size_t)esz;
            if (bit) {
                if (next >= nnz) return 0;
                const uint8_t *got = vals + (size_t)next * (size_t)esz;
                s->mismatched += memcmp(got, want, (size_t)esz) != 0;
                s->zero_values += is_zero(got, esz);
                next++;
            } else {
                s->mismatched += !is_zero(want, esz);
            }
        }
        for (long c = cols; c < nb * 8; c++) s->bad_mask += bm[r * nb + c / 8] >> (c % 8) & 1; /* padding bits */
        for (long c0 = 0; c0 + 4 <= cols; c0 += 4) {
            int k = 0;
            for (long c = c0; c < c0 + 4; c++) k += bm[r * nb + c / 8] >> (c % 8) & 1;
            if (k > s->max_group_kept) s->max_group_kept = k;
        }
    }
    if (next != nnz) return 0;
    s->kept += nnz;
    s->weights += (long long)rows * cols;
    s->n_compressed++;
    return 1;
}

// ---- the configurations ----

typedef struct unit_cfg { int unit; const char *method; double sparsity; int nm; int dense; int bits; } unit_cfg;

static void write_config(const char *path, const char *model, const char *db, const unit_cfg *u, int n, int drop_mlp_block) {
    json_t *units = json_array();
    for (int i = 0; i < n; i++) {
        json_t *e = json_pack("{s:i}", "unit", u[i].unit);
        if (u[i].dense) json_object_set_new(e, "dense", json_true());
        else {
            json_object_set_new(e, "method", json_string(u[i].method));
            if (u[i].bits) {
                json_object_set_new(e, "bits", json_integer(u[i].bits));
                json_object_set_new(e, "group_size", json_integer(32));
                json_object_set_new(e, "sym", json_false());
            } else if (u[i].nm) {
                json_object_set_new(e, "n_keep", json_integer(2));
                json_object_set_new(e, "m", json_integer(4));
            } else if (strcmp(u[i].method, "zero")) json_object_set_new(e, "sparsity", json_real(u[i].sparsity));
        }
        json_array_append_new(units, e);
    }
    json_t *j = json_pack("{s:s, s:s, s:o}", "model", model, "db", db, "units", units);
    if (drop_mlp_block >= 0) json_object_set_new(j, "drop", json_pack("[{s:i, s:s}]", "block", drop_mlp_block, "sub", "mlp"));
    json_dump_file(j, path, JSON_INDENT(1));
    json_decref(j);
}

static int in_list(json_t *a, const char *s) {
    json_t *x;
    size_t i;
    json_array_foreach(a, i, x) if (json_string_value(x) && strcmp(json_string_value(x), s) == 0) return 1;
    return 0;
}

/* Exports cfg as compressed-tensors and as the dense hf format in dtype (f32 or f16), reads the former
 * back and compares every tensor. Returns the compressed export's safetensors bytes (*dense_bytes: the
 * dense one's). */
static long export_and_read(const evb_model *m, const char *cfg, const char *dt, const unit_cfg *units, int n, int dropped_mlp,
                            const char *want_structure, const char *what, long *dense_bytes) {
    char args[2048], out[700], ref[700], p[1200];
    const char *dtype = strcmp(dt, "f32") == 0 ? "F32" : strcmp(dt, "bf16") == 0 ? "BF16" : "F16";
    snprintf(out, sizeof out, "%s/ct_%s_%s", tmp, what, dt);
    snprintf(ref, sizeof ref, "%s/hf_%s_%s", tmp, what, dt);
    json_t *ex = NULL;
    snprintf(args, sizeof args, "export --config %s --format compressed-tensors --dtype %s --out %s --json", cfg, dt, out);
    EVB_CHECK(evb(args, &ex) == 0 && ex, "%s %s: export --format compressed-tensors", what, dt);
    snprintf(args, sizeof args, "export --config %s --dtype %s --out %s", cfg, dt, ref);
    EVB_CHECK(evb(args, NULL) == 0, "%s %s: dense export", what, dt);
    st_file g, h;
    int ok_g = st_load(out, &g), ok_h = st_load(ref, &h);
    EVB_CHECK(ok_g && ok_h, "%s %s: both safetensors headers parse", what, dt);
    if (!ok_g || !ok_h) { st_free(&g); st_free(&h); json_decref(ex); return -1; }
    snprintf(p, sizeof p, "%s/config.json", out);
    json_t *cj = json_load_file(p, 0, NULL), *qc = json_object_get(cj, "quantization_config"), *sc = json_object_get(qc, "sparsity_config");
    const char *qm = json_string_value(json_object_get(qc, "quant_method")), *fmt = json_string_value(json_object_get(sc, "format"));
    const char *structure = json_string_value(json_object_get(sc, "sparsity_structure"));
    EVB_CHECK(qm && strcmp(qm, "compressed-tensors") == 0 && fmt && strcmp(fmt, "sparse-bitmask") == 0,
              "%s %s: quant_method compressed-tensors, sparsity_config.format sparse-bitmask", what, dt);
    EVB_CHECK(structure && strcmp(structure, want_structure) == 0, "%s %s: sparsity_structure %s (%s)", what, dt, want_structure, structure ? structure : "none");
    json_t *targets = json_object_get(sc, "targets"), *ignore = json_object_get(sc, "ignore");
    stats s = {0};
    int U = evb_model_n_units(m), layout_ok = 1, lists_ok = in_list(ignore, "lm_head");
    for (int u = 0; u < U; u++) {
        int r, c;
        evb_model_unit_shape(m, u, &r, &c);
        const unit_cfg *uc = NULL;
        for (int i = 0; i < n; i++) if (units[i].unit == u) uc = &units[i];
        int compressed = uc && !uc->dense;
        if (compressed && u / 7 == dropped_mlp && u % 7 >= 4) compressed = 0; /* a dropped MLP is written dense (zeros) */
        char nm[160];
        unit_name(u, nm, sizeof nm);
        if (compressed) {
            if (!check_compressed(&g, &h, nm, r, c, dtype, &s)) { layout_ok = 0; printf("  layout of %s\n", nm); }
        } else {
            snprintf(p, sizeof p, "%s.weight", nm);
            const uint8_t *a = st_get(&g, p, dtype, r, c), *b = st_get(&h, p, dtype, r, c);
            if (!a || !b) layout_ok = 0;
            else s.dense_bad += memcmp(a, b, (size_t)r * c * (size_t)dtype_size(dtype)) != 0;
            s.n_dense++;
        }
        lists_ok &= in_list(targets, nm) == compressed && in_list(ignore, nm) == !compressed;
    }
    /* every tensor of the dense export that is not a compressed layer's weight: byte for byte */
    const char *key;
    json_t *val;
    int others = 0, others_bad = 0;
    json_object_foreach(h.hdr, key, val) {
        if (strcmp(key, "__metadata__") == 0 || strstr(key, "_proj.weight")) continue;
        json_t *shp = json_object_get(val, "shape");
        long d0 = (long)json_integer_value(json_array_get(shp, 0)), d1 = json_array_size(shp) == 2 ? (long)json_integer_value(json_array_get(shp, 1)) : -1;
        const uint8_t *a = st_get(&g, key, dtype, d0, d1), *b = st_get(&h, key, dtype, d0, d1);
        others++;
        others_bad += !a || !b || memcmp(a, b, (size_t)d0 * (size_t)(d1 >= 0 ? d1 : 1) * (size_t)dtype_size(dtype)) != 0;
    }
    /* global_sparsity: zeros among all parameters of the dense export */
    long long params = 0, zeros = 0;
    json_object_foreach(h.hdr, key, val) {
        if (strcmp(key, "__metadata__") == 0) continue;
        json_t *shp = json_object_get(val, "shape");
        long d0 = (long)json_integer_value(json_array_get(shp, 0)), d1 = json_array_size(shp) == 2 ? (long)json_integer_value(json_array_get(shp, 1)) : -1;
        const uint8_t *b = st_get(&h, key, dtype, d0, d1);
        long long cnt = (long long)d0 * (d1 >= 0 ? d1 : 1);
        for (long long i = 0; b && i < cnt; i++) zeros += is_zero(b + i * dtype_size(dtype), dtype_size(dtype));
        params += cnt;
    }
    double gs = json_real_value(json_object_get(sc, "global_sparsity")), want_gs = (double)zeros / (double)params;
    size_t n_keys = json_object_size(g.hdr) - (json_object_get(g.hdr, "__metadata__") != NULL);
    size_t n_ref = json_object_size(h.hdr) - (json_object_get(h.hdr, "__metadata__") != NULL);
    EVB_CHECK(layout_ok && s.n_compressed > 0, "%s %s: every linear layer is where the layout says (%d compressed, %d dense)", what, dt, s.n_compressed, s.n_dense);
    EVB_CHECK(s.mismatched == 0 && s.zero_values == 0 && s.bad_mask == 0,
              "%s %s: unpacked layers equal the dense export byte for byte (%lld mismatches, %lld stored zeros, %lld padding bits set; %lld of %lld weights kept)",
              what, dt, s.mismatched, s.zero_values, s.bad_mask, s.kept, s.weights);
    EVB_CHECK(s.dense_bad == 0 && others_bad == 0 && others > 0, "%s %s: dense linear layers (%d) and the %d other tensors equal the dense export",
              what, dt, s.n_dense, others);
    EVB_CHECK(n_keys == n_ref + 3 * (size_t)s.n_compressed, "%s %s: %zu tensors, no more and no fewer", what, dt, n_keys);
    EVB_CHECK(lists_ok, "%s %s: targets name the compressed layers, ignore the others and lm_head", what, dt);
    EVB_CHECK(fabs(gs - want_gs) < 1e-9, "%s %s: global_sparsity %.6f = zeros / parameters of the dense export %.6f", what, dt, gs, want_gs);
    if (strcmp(want_structure, "2:4") == 0) EVB_CHECK(s.max_group_kept == 2, "%s %s: at most 2 of every 4 kept (%d)", what, dt, s.max_group_kept);
    json_t *cts = json_object_get(ex, "compressed_tensors");
    EVB_CHECK(json_integer_value(json_object_get(cts, "weights_kept")) == s.kept, "%s %s: --json's weights_kept = the reader's count", what, dt);
    long gb = file_size(out, "model.safetensors"), hb = file_size(ref, "model.safetensors");
    printf("  %s %s: sparse-bitmask %ld bytes, dense %ld bytes (%.3f); %d layers compressed (%lld of %lld weights kept, %.3f), global_sparsity %.4f\n",
           what, dt, gb, hb, (double)gb / (double)hb, s.n_compressed, s.kept, s.weights, s.weights ? (double)s.kept / (double)s.weights : 0.0, gs);
    *dense_bytes = hb;
    json_decref(cj); json_decref(ex);
    st_free(&g); st_free(&h);
    return gb;
}

static void expect_refusal(const char *cfg, const char *needle, const char *what) {
    char args[2048], first[600], out[700];
    snprintf(out, sizeof out, "%s/refused", tmp);
    snprintf(args, sizeof args, "export --config %s --format compressed-tensors --out %s", cfg, out);
    int rc = evb(args, NULL);
    int lines = err_lines(first, sizeof first);
    EVB_CHECK(rc == 1 && lines == 1 && strstr(first, needle) && strstr(first, "hint"), "%s: refused in one line with a hint (rc %d, %d lines: %s)",
              what, rc, lines, first);
    EVB_CHECK(file_size(out, "model.safetensors") < 0 && file_size(out, "config.json") < 0, "%s: nothing written", what);
}

#define DEMO EVB_SOURCE_DIR "/assets/demo"

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/evb_sparse_XXXXXX");
    if (!mkdtemp(tmp)) { perror("mkdtemp"); return 1; }
    evb_model *m = NULL;
    EVB_CHECK(evb_model_load(EVB_SOURCE_DIR "/assets/demo", &m) == 0, "demo model loads");
    if (!m) return evb_test_summary();
    char args[2048], db[600], cmd[1200];
    snprintf(db, sizeof db, "%s/db", tmp);
#define CAL "--model " EVB_SOURCE_DIR "/assets/demo --calib " EVB_SOURCE_DIR "/assets/demo/calib.txt --calib-windows 2 --seq-len 64"
    snprintf(args, sizeof args, "db build " CAL " --method sparsegpt --sparsity 0.3,0.5,0.7 --out %s", db);
    EVB_CHECK(evb(args, NULL) == 0, "SparseGPT levels 30, 50, 70 %%");
    snprintf(args, sizeof args, "db build " CAL " --method magnitude --nm 2:4 --out %s", db);
    EVB_CHECK(evb(args, NULL) == 0, "magnitude 2:4 levels");
    snprintf(args, sizeof args, "db build " CAL " --method rtn --bits 4 --group-size 32 --out %s", db);
    EVB_CHECK(evb(args, NULL) == 0, "RTN 4-bit levels");

    /* A: mixed sparsities, 2:4, a removed layer, a layer left dense, block 5's MLP dropped (its levels written
     * as zeros, dense), block 5's attention compressed. */
    unit_cfg a[] = {{0, "sparsegpt", 0.5, 0, 0, 0}, {1, "sparsegpt", 0.7, 0, 0, 0}, {2, "sparsegpt", 0.3, 0, 0, 0},
                    {4, "magnitude", 0, 1, 0, 0}, {6, "sparsegpt", 0.7, 0, 0, 0}, {9, "zero", 0, 0, 0, 0},
                    {10, NULL, 0, 0, 1, 0}, {12, "magnitude", 0, 1, 0, 0}, {20, "sparsegpt", 0.5, 0, 0, 0},
                    {35, "sparsegpt", 0.5, 0, 0, 0}, {39, "sparsegpt", 0.7, 0, 0, 0}, {41, "sparsegpt", 0.3, 0, 0, 0}};
    int na = (int)(sizeof a / sizeof *a);
    char cfg[600];
    long dense_b, ct_b;
    snprintf(cfg, sizeof cfg, "%s/a.json", tmp);
    write_config(cfg, DEMO, db, a, na, 5);
    ct_b = export_and_read(m, cfg, "f32", a, na, 5, "unstructured", "A", &dense_b);
    EVB_CHECK(ct_b > 0 && ct_b < dense_b, "A f32: smaller than the dense export (%ld < %ld)", ct_b, dense_b);
    ct_b = export_and_read(m, cfg, "f16", a, na, 5, "unstructured", "A", &dense_b);
    EVB_CHECK(ct_b > 0 && ct_b < dense_b, "A f16: smaller than the dense export (%ld < %ld)", ct_b, dense_b);

    /* B: 2:4 only. */
    unit_cfg b[] = {{0, "magnitude", 0, 1, 0, 0}, {3, "magnitude", 0, 1, 0, 0}, {5, "magnitude", 0, 1, 0, 0}, {6, "magnitude", 0, 1, 0, 0}};
    int nb = (int)(sizeof b / sizeof *b);
    snprintf(cfg, sizeof cfg, "%s/b.json", tmp);
    write_config(cfg, DEMO, db, b, nb, -1);
    export_and_read(m, cfg, "f16", b, nb, -1, "2:4", "B", &dense_b);

    /* C: every linear layer at SparseGPT 50 %: the bytes on disk. */
    unit_cfg c[42];
    int U = evb_model_n_units(m), nc = U < 42 ? U : 42;
    for (int u = 0; u < nc; u++) c[u] = (unit_cfg){u, "sparsegpt", 0.5, 0, 0, 0};
    snprintf(cfg, sizeof cfg, "%s/c.json", tmp);
    write_config(cfg, DEMO, db, c, nc, -1);
    for (int k = 0; k < 2; k++) {
        const char *dt = k ? "f16" : "f32";
        ct_b = export_and_read(m, cfg, dt, c, nc, -1, "unstructured", "C", &dense_b);
        EVB_CHECK(ct_b > 0 && ct_b < dense_b, "C %s: smaller than the dense export (%ld < %ld)", dt, ct_b, dense_b);
    }

    /* D: a llama2.c checkpoint (q and k rows saved in rotate-half order, an MLP 172 wide, so bitmask rows end
     * in padding bits), Wanda levels, in bfloat16 and float32. */
    {
        char model[600], calib[600], dbw[600];
        int standin = standin_or_stories(tmp, model, sizeof model, calib, sizeof calib);
        evb_model *ml = NULL;
        EVB_CHECK(standin >= 0 && evb_model_load(model, &ml) == 0 && ml, "llama2.c model loads (%s)", model);
        snprintf(dbw, sizeof dbw, "%s/dbw", tmp);
        snprintf(args, sizeof args, "db build --model %s --calib %s --calib-windows 2 --seq-len 64 --method wanda --sparsity 0.4,0.6 --out %s",
                 model, calib, dbw);
        EVB_CHECK(evb(args, NULL) == 0, "Wanda levels 40, 60 %% on the llama2.c model");
        unit_cfg d[] = {{0, "wanda", 0.6, 0, 0, 0}, {1, "wanda", 0.4, 0, 0, 0}, {5, "wanda", 0.6, 0, 0, 0}, {6, "wanda", 0.4, 0, 0, 0},
                        {7, "wanda", 0.6, 0, 0, 0}, {8, "wanda", 0.6, 0, 0, 0}};
        int nd = (int)(sizeof d / sizeof *d);
        snprintf(cfg, sizeof cfg, "%s/d.json", tmp);
        write_config(cfg, model, dbw, d, nd, -1);
        if (ml) {
            EVB_CHECK(!ml->config.rope_halves, "the llama2.c model's q and k rows are permuted on export");
            export_and_read(ml, cfg, "bf16", d, nd, -1, "unstructured", "D", &dense_b);
            export_and_read(ml, cfg, "f32", d, nd, -1, "unstructured", "D", &dense_b);
            evb_model_free(ml);
        }
    }

    /* Refusals. */
    unit_cfg xq[] = {{0, "sparsegpt", 0.5, 0, 0, 0}, {1, "rtn", 0, 0, 0, 4}}, xd[] = {{0, NULL, 0, 0, 1, 0}};
    snprintf(cfg, sizeof cfg, "%s/xq.json", tmp);
    write_config(cfg, DEMO, db, xq, 2, -1);
    expect_refusal(cfg, "--format gptq", "a quantized layer");
    snprintf(cfg, sizeof cfg, "%s/xd.json", tmp);
    write_config(cfg, DEMO, db, xd, 1, -1);
    expect_refusal(cfg, "no sparse layer", "no sparse layer");

    evb_model_free(m);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (!evb_test_failures) sh(cmd);
    return evb_test_summary();
}
