#define _GNU_SOURCE
/* test_export_gptq.c -- `evobudget export --format gptq|gptq_v2` read back by an independent reader.
 *
 * The reader below is written from the published layout (AutoGPTQ's QuantLinear: qweight [in bits / 32,
 * out] packed along the input dimension, 32 / bits codes per int32 for 2, 4, 8 bits and AutoGPTQ's
 * three-word unpacking for 3 bits; qzeros [groups, out bits / 32] packed along the output dimension,
 * zero - 1 in checkpoint_format "gptq", the zero itself in "gptq_v2"; scales float16 [groups, out]; g_idx
 * [in]); it parses the safetensors header itself with jansson. Every weight it dequantizes,
 * scales[g][o] (q - z), is compared with the float32 dense export of the same configuration (the weights
 * `eval --config` computes with): equal within float16 rounding of the scale. Dense tensors within float16
 * rounding of their values. The model is the demo model with one layer's weights made non-negative, so
 * that its asymmetric levels have zero points of 0: the "gptq" format must refuse them in one line and
 * "gptq_v2" store them. The demo's MLP (688 = 86 int32 of 4-bit codes, not a multiple of 32) is packed at
 * 4 bits on both sides: gate_proj's 688 outputs (qzeros) and down_proj's 688 inputs (qweight); and at 2 and
 * 8 bits on the output side (gate_proj and up_proj of block 1). Also refused
 * in one line: 5 bits, 688 outputs at 3 bits (which packs 32 at a time), no quantized layer. */
#include "testing.h"
#include "fixtures.h"
#include "export_reader.h"

#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static uint32_t rd32(const uint8_t *p, size_t i) { p += 4 * i; return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint16_t rd16(const uint8_t *p, size_t i) { p += 2 * i; return (uint16_t)(p[0] | p[1] << 8); }

/* IEEE half to float, written out here rather than taken from the library. */
static double half(uint16_t h) {
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
    return s ? -v : v;
}

/* Value k (0..31) of a run of 32 3-bit values packed in words w[0..3): AutoGPTQ's three-word unpacking
 * (values 10 and 21 split over a word boundary). */
static uint32_t unpack3(const uint32_t *w, int k) {
    if (k < 10) return w[0] >> (3 * k) & 7;
    if (k == 10) return (w[0] >> 30 & 3) | (w[1] << 2 & 4);
    if (k < 21) return w[1] >> (3 * (k - 11) + 1) & 7;
    if (k == 21) return (w[1] >> 31 & 1) | (w[2] << 1 & 6);
    return w[2] >> (3 * (k - 22) + 2) & 7;
}

typedef struct diffs { double packed, packed_rel_bound, dense_lin, emb, norm; int n_packed, n_dense, zeros0; } diffs;

/* One packed layer: dequantizes it and compares with the dense export's weight ref [out, in]. Returns 0 on
 * a layout error. */
static int check_packed(const st_file *g, const char *name, int out, int in, int bits, int ngroups, int v2, const float *ref, diffs *d) {
    char nm[160];
    snprintf(nm, sizeof nm, "%s.qweight", name);
    const uint8_t *qw = st_get(g, nm, "I32", (long)in * bits / 32, out);
    snprintf(nm, sizeof nm, "%s.qzeros", name);
    const uint8_t *qz = st_get(g, nm, "I32", ngroups, (long)out * bits / 32);
    if ((long)in * bits % 32 || (long)out * bits % 32) return 0;
    snprintf(nm, sizeof nm, "%s.scales", name);
    const uint8_t *sc = st_get(g, nm, "F16", ngroups, out);
    snprintf(nm, sizeof nm, "%s.g_idx", name);
    const uint8_t *gi = st_get(g, nm, "I32", in, -1);
    if (!qw || !qz || !sc || !gi) return 0;
    const uint32_t maxq = (1u << bits) - 1;
    for (int i = 0; i < in; i++) {
        int32_t gr = (int32_t)rd32(gi, (size_t)i);
        if (gr < 0 || gr >= ngroups) return 0;
        for (int o = 0; o < out; o++) {
            uint32_t q, zs;
            if (bits == 3) { /* three words per 32 values; the widths are multiples of 32 */
                uint32_t w[3], wz[3];
                for (int b = 0; b < 3; b++) {
                    w[b] = rd32(qw, ((size_t)(i / 32) * 3 + b) * out + o);
                    wz[b] = rd32(qz, (size_t)gr * (out * 3 / 32) + (size_t)(o / 32) * 3 + b);
                }
                q = unpack3(w, i % 32);
                zs = unpack3(wz, o % 32);
            } else { /* AutoGPTQ's shift and mask: word i / (32 / bits), shift bits (i % (32 / bits)) */
                const int per = 32 / bits;
                q = rd32(qw, (size_t)(i / per) * out + o) >> (bits * (i % per)) & maxq;
                zs = rd32(qz, (size_t)gr * (out / per) + (size_t)(o / per)) >> (bits * (o % per)) & maxq;
            }
            int z = v2 ? (int)zs : (int)zs + 1;
            if (z > (int)maxq) return 0;
            d->zeros0 += z == 0 && i == 0;
            double s = half(rd16(sc, (size_t)gr * out + o)), x = s * ((double)q - z), r = ref[(size_t)o * in + i];
            double diff = fabs(x - r), bound = ldexp(fabs(s) * fabs((double)q - z), -11) * (1 + ldexp(1, -9)) + ldexp(fabs(r), -23) + 1e-30;
            if (diff > d->packed) d->packed = diff;
            if (diff / bound > d->packed_rel_bound) d->packed_rel_bound = diff / bound;
        }
    }
    d->n_packed++;
    return 1;
}

/* A dense tensor of the packed export (dtype) against the float32 one; returns the largest |diff| / the
 * float16 rounding bound in *rel. */
static int check_dense(const st_file *g, const st_file *h, const char *name, long d0, long d1, double *maxdiff, double *rel) {
    const uint8_t *a = st_get(g, name, "F16", d0, d1), *b = st_get(h, name, "F32", d0, d1);
    if (!a || !b) return 0;
    size_t n = (size_t)d0 * (size_t)(d1 >= 0 ? d1 : 1);
    for (size_t i = 0; i < n; i++) {
        float r;
        uint32_t u = rd32(b, i);
        memcpy(&r, &u, 4);
        double x = half(rd16(a, i)), diff = fabs(x - r), bound = ldexp(fabs(r), -11) + ldexp(1, -25);
        if (diff > *maxdiff) *maxdiff = diff;
        if (diff / bound > *rel) *rel = diff / bound;
    }
    return 1;
}

// ---- the configurations ----

typedef struct unit_cfg { int unit; const char *method; int bits, gs, sym; double sparsity; } unit_cfg;

static void write_config(const char *path, const char *model, const char *db, const unit_cfg *u, int n, int drop_block) {
    json_t *units = json_array();
    for (int i = 0; i < n; i++) {
        json_t *e = json_pack("{s:i, s:s}", "unit", u[i].unit, "method", u[i].method);
        if (u[i].bits) {
            json_object_set_new(e, "bits", json_integer(u[i].bits));
            json_object_set_new(e, "group_size", json_integer(u[i].gs));
            json_object_set_new(e, "sym", json_boolean(u[i].sym));
        } else json_object_set_new(e, "sparsity", json_real(u[i].sparsity));
        json_array_append_new(units, e);
    }
    json_t *j = json_pack("{s:s, s:s, s:o}", "model", model, "db", db, "units", units);
    if (drop_block >= 0) json_object_set_new(j, "drop", json_pack("[{s:i, s:s}]", "block", drop_block, "sub", "attn"));
    json_dump_file(j, path, JSON_INDENT(1));
    json_decref(j);
}

static void regex_of(const char *sign, int u, char *out, size_t n) {
    char nm[96], *p = out;
    unit_name(u, nm, sizeof nm);
    p += snprintf(p, n, "%s^", sign);
    for (const char *s = nm; *s; s++) { if (*s == '.') *p++ = '\\'; *p++ = *s; }
    *p++ = '$'; *p = '\0';
}

/* Exports cfg in FORMAT to OUT and the float32 dense export to REF; reads the packed one back and compares
 * every tensor. units/n: the configuration; dropped: the block whose attention is dropped, or -1. */
static void export_and_read(const evb_model *m, const char *cfg, const char *format, const char *out, const char *ref,
                            const unit_cfg *units, int n, int dropped, int expect_desc_act, const char *what) {
    char args[2048];
    json_t *ex = NULL, *hx = NULL;
    snprintf(args, sizeof args, "export --config %s --format %s --out %s --json", cfg, format, out);
    EVB_CHECK(evb(args, &ex) == 0 && ex, "%s: export --format %s", what, format);
    snprintf(args, sizeof args, "export --config %s --dtype f32 --out %s --json", cfg, ref);
    if (file_size(ref, "model.safetensors") < 0) EVB_CHECK(evb(args, &hx) == 0 && hx, "%s: dense float32 export", what);
    json_decref(hx);
    int v2 = strcmp(format, "gptq_v2") == 0;
    st_file g, h;
    int ok_g = st_load(out, &g), ok_h = st_load(ref, &h);
    EVB_CHECK(ok_g && ok_h, "%s: both safetensors headers parse", what);
    if (!ok_g || !ok_h) { st_free(&g); st_free(&h); json_decref(ex); return; }
    /* quantization_config */
    char p[1200];
    snprintf(p, sizeof p, "%s/config.json", out);
    json_t *cj = json_load_file(p, 0, NULL), *qc = json_object_get(cj, "quantization_config");
    snprintf(p, sizeof p, "%s/quantize_config.json", out);
    json_t *qj = json_load_file(p, 0, NULL);
    EVB_CHECK(qc && json_equal(qc, qj), "%s: config.json's quantization_config equals quantize_config.json", what);
    const char *cf = json_string_value(json_object_get(qc, "checkpoint_format"));
    EVB_CHECK(cf && strcmp(cf, v2 ? "gptq_v2" : "gptq") == 0 && strcmp(json_string_value(json_object_get(qc, "quant_method")), "gptq") == 0,
              "%s: quant_method gptq, checkpoint_format %s", what, cf ? cf : "(none)");
    EVB_CHECK(json_is_true(json_object_get(qc, "desc_act")) == expect_desc_act, "%s: desc_act %d", what, expect_desc_act);
    int dbits = (int)json_integer_value(json_object_get(qc, "bits")), dgs = (int)json_integer_value(json_object_get(qc, "group_size"));
    json_t *dyn = json_object_get(qc, "dynamic");
    diffs d = {0};
    int U = evb_model_n_units(m), layout_ok = 1, dyn_ok = 1, L = m->config.n_layers;
    for (int u = 0; u < U; u++) {
        int r, c;
        evb_model_unit_shape(m, u, &r, &c);
        const unit_cfg *uc = NULL;
        for (int i = 0; i < n; i++) if (units[i].unit == u) uc = &units[i];
        int packed = uc && uc->bits && !(u / 7 == dropped && u % 7 < 4);
        char nm[160], re[200];
        unit_name(u, nm, sizeof nm);
        snprintf(p, sizeof p, "%s.weight", nm);
        const uint8_t *refw = st_get(&h, p, "F32", r, c);
        if (!refw) { layout_ok = 0; continue; }
        if (packed) {
            int gs = uc->gs > 0 ? uc->gs : c;
            float *rw = malloc(sizeof(float) * (size_t)r * c);
            memcpy(rw, refw, sizeof(float) * (size_t)r * c);
            if (!check_packed(&g, nm, r, c, uc->bits, c / gs, v2, rw, &d)) { layout_ok = 0; printf("  layout of %s\n", nm); }
            free(rw);
            regex_of("+:", u, re, sizeof re);
            json_t *ov = json_object_get(dyn, re);
            int want = uc->bits != dbits || (uc->gs > 0 ? uc->gs : -1) != dgs;
            if (want != (ov != NULL) || (ov && uc->bits != dbits && json_integer_value(json_object_get(ov, "bits")) != uc->bits)) dyn_ok = 0;
        } else {
            double rel = 0;
            if (!check_dense(&g, &h, p, r, c, &d.dense_lin, &rel) || rel > 1.0) layout_ok = 0;
            d.n_dense++;
            regex_of("-:", u, re, sizeof re);
            if (!json_object_get(dyn, re)) dyn_ok = 0;
        }
    }
    double rel = 0;
    int dense_ok = check_dense(&g, &h, "model.embed_tokens.weight", m->config.vocab_size, m->config.dim, &d.emb, &rel);
    double emb_rel = rel;
    for (int l = 0; l < L; l++) {
        snprintf(p, sizeof p, "model.layers.%d.input_layernorm.weight", l);
        dense_ok &= check_dense(&g, &h, p, m->config.dim, -1, &d.norm, &rel);
        snprintf(p, sizeof p, "model.layers.%d.post_attention_layernorm.weight", l);
        dense_ok &= check_dense(&g, &h, p, m->config.dim, -1, &d.norm, &rel);
    }
    dense_ok &= check_dense(&g, &h, "model.norm.weight", m->config.dim, -1, &d.norm, &rel);
    size_t n_keys = json_object_size(g.hdr) - (json_object_get(g.hdr, "__metadata__") != NULL);
    EVB_CHECK(layout_ok, "%s: every linear layer is where the layout says (%d packed, %d dense)", what, d.n_packed, d.n_dense);
    EVB_CHECK(d.n_packed > 0 && d.packed_rel_bound <= 1.0, "%s: packed weights = dense export within float16 rounding of the scales "
              "(max |diff| %.3g, %.3f of the bound)", what, d.packed, d.packed_rel_bound);
    EVB_CHECK(dense_ok && rel <= 1.0 && emb_rel <= 1.0, "%s: embeddings (max |diff| %.3g), norms (%.3g), dense linear layers (%.3g) within float16 rounding",
              what, d.emb, d.norm, d.dense_lin);
    EVB_CHECK(n_keys == (size_t)(1 + 2 * L + 1 + 4 * d.n_packed + d.n_dense), "%s: %zu tensors, no more and no fewer", what, n_keys);
    EVB_CHECK(dyn_ok, "%s: dynamic has \"+:\" overrides for the packed layers that differ from bits %d group %d and \"-:\" for the %d dense ones",
              what, dbits, dgs, d.n_dense);
    long gb = file_size(out, "model.safetensors"), hb = file_size(ref, "model.safetensors");
    printf("  %s: packed %ld bytes, dense float32 %ld bytes (%.3f); packed-layer max |diff| %.3g, embeddings %.3g, norms %.3g, dense linear %.3g, groups with zero 0: %d\n",
           what, gb, hb, (double)gb / (double)hb, d.packed, d.emb, d.norm, d.dense_lin, d.zeros0);
    if (v2) EVB_CHECK(d.zeros0 > 0, "%s: zero points of 0 (the non-negative layer) read back as 0 (%d)", what, d.zeros0);
    json_decref(cj); json_decref(qj); json_decref(ex);
    st_free(&g); st_free(&h);
}

static void expect_refusal(const char *cfg, const char *format, const char *out, const char *needle, const char *what) {
    char args[2048], first[512];
    snprintf(args, sizeof args, "export --config %s --format %s --out %s", cfg, format, out);
    int rc = evb(args, NULL);
    int lines = err_lines(first, sizeof first);
    EVB_CHECK(rc == 1 && lines == 1 && strstr(first, needle) && strstr(first, "hint"), "%s: refused in one line with a hint (rc %d, %d lines: %s)", what, rc, lines, first);
    EVB_CHECK(file_size(out, "model.safetensors") < 0 && file_size(out, "config.json") < 0, "%s: no model written", what);
}

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/evb_gptq_XXXXXX");
    if (!mkdtemp(tmp)) { perror("mkdtemp"); return 1; }
    /* The demo model with layer 0's q_proj made non-negative: its asymmetric levels have zero points of 0. */
    evb_model *m = NULL;
    EVB_CHECK(evb_model_load(EVB_SOURCE_DIR "/assets/demo", &m) == 0, "demo model loads");
    if (!m) return evb_test_summary();
    char model[600], cmd[2048];
    snprintf(model, sizeof model, "%s/model", tmp);
    mkdir(model, 0755);
    int r0, c0;
    evb_model_unit_shape(m, 0, &r0, &c0);
    for (size_t i = 0; i < (size_t)r0 * c0; i++) m->layers[0].w_dense[0][i] = fabsf(m->layers[0].w_dense[0][i]);
    EVB_CHECK(fixture_write_hf(m, model, "F32", 1, 0, "llama") == 0, "modified demo model written");
    snprintf(cmd, sizeof cmd, "cp '%s/assets/demo/tokenizer.json' '%s/'", EVB_SOURCE_DIR, model);
    sh(cmd);
    evb_model_free(m);
    EVB_CHECK(evb_model_load(model, &m) == 0, "modified model loads");
    if (!m) return evb_test_summary();

    char args[2048], db[600], dbg[600];
    snprintf(db, sizeof db, "%s/db", tmp);
    snprintf(dbg, sizeof dbg, "%s/dbg", tmp);
#define CAL "--calib " EVB_SOURCE_DIR "/assets/demo/calib.txt --calib-windows 4 --seq-len 64"
    snprintf(args, sizeof args, "db build --model %s " CAL " --method rtn --bits 2,3,4,5,8 --group-size 32 --out %s", model, db);
    EVB_CHECK(evb(args, NULL) == 0, "RTN levels 2,3,4,5,8 bits, groups of 32, asymmetric");
    snprintf(args, sizeof args, "db build --model %s " CAL " --method rtn --bits 4 --out %s", model, db);
    EVB_CHECK(evb(args, NULL) == 0, "RTN levels of 4 bits, one group per row (down_proj's 688 inputs)");
    snprintf(args, sizeof args, "db build --model %s " CAL " --method magnitude --sparsity 0.5 --out %s", model, db);
    EVB_CHECK(evb(args, NULL) == 0, "magnitude levels in the same database");
    snprintf(args, sizeof args, "db build --model %s " CAL " --method gptq --act-order --sym --bits 3,4 --group-size 64 --out %s", model, dbg);
    EVB_CHECK(evb(args, NULL) == 0, "GPTQ levels 3,4 bits, act-order, symmetric, groups of 64");

    /* A: mixed bits on asymmetric RTN, a sparse layer, a dropped attention holding a quantized level. */
    unit_cfg a[] = {{0, "rtn", 2, 32, 0, 0}, {1, "rtn", 3, 32, 0, 0}, {2, "rtn", 4, 32, 0, 0}, {3, "rtn", 8, 32, 0, 0},
                    {4, "rtn", 4, 32, 0, 0}, {5, "magnitude", 0, 0, 0, 0.5}, {6, "rtn", 4, 0, 0, 0}, {7, "rtn", 4, 32, 0, 0},
                    {8, "rtn", 4, 32, 0, 0}, {9, "rtn", 3, 32, 0, 0}, {10, "rtn", 4, 32, 0, 0}, {11, "rtn", 2, 32, 0, 0},
                    {12, "rtn", 8, 32, 0, 0}, {14, "rtn", 8, 32, 0, 0}, {35, "rtn", 4, 32, 0, 0}};
    int na = (int)(sizeof a / sizeof *a);
    char cfg_a[600], cfg_a1[600], cfg_b[600], cfg_x[600], out[700], ref[700];
    snprintf(cfg_a, sizeof cfg_a, "%s/a.json", tmp);
    write_config(cfg_a, model, db, a, na, 5);
    snprintf(ref, sizeof ref, "%s/ref_a", tmp);
    snprintf(out, sizeof out, "%s/v2_a", tmp);
    export_and_read(m, cfg_a, "gptq_v2", out, ref, a, na, 5, 0, "A gptq_v2");
    long dense32 = file_size(ref, "model.safetensors"), packed = file_size(out, "model.safetensors");
    snprintf(out, sizeof out, "%s/v1_a", tmp);
    expect_refusal(cfg_a, "gptq", out, "zero point 0", "A gptq (zero points of 0)");
    /* A without the non-negative layer: asymmetric levels stored as zero - 1. */
    snprintf(cfg_a1, sizeof cfg_a1, "%s/a1.json", tmp);
    write_config(cfg_a1, model, db, a + 1, na - 1, 5);
    snprintf(ref, sizeof ref, "%s/ref_a1", tmp);
    snprintf(out, sizeof out, "%s/v1_a1", tmp);
    export_and_read(m, cfg_a1, "gptq", out, ref, a + 1, na - 1, 5, 0, "A' gptq");
    /* B: GPTQ act-order (g_idx permuted, desc_act) symmetric 3 and 4 bits. */
    unit_cfg b[] = {{0, "gptq", 4, 64, 1, 0}, {1, "gptq", 3, 64, 1, 0}, {2, "gptq", 4, 64, 1, 0}, {3, "gptq", 4, 64, 1, 0},
                    {7, "gptq", 3, 64, 1, 0}, {10, "gptq", 4, 64, 1, 0}, {14, "gptq", 4, 64, 1, 0}};
    int nb = (int)(sizeof b / sizeof *b);
    snprintf(cfg_b, sizeof cfg_b, "%s/b.json", tmp);
    write_config(cfg_b, model, dbg, b, nb, -1);
    snprintf(ref, sizeof ref, "%s/ref_b", tmp);
    snprintf(out, sizeof out, "%s/v1_b", tmp);
    export_and_read(m, cfg_b, "gptq", out, ref, b, nb, -1, 1, "B gptq act-order");
    {
        st_file g;
        int perm = 0;
        if (st_load(out, &g)) {
            const uint8_t *gi = st_get(&g, "model.layers.0.self_attn.q_proj.g_idx", "I32", c0, -1);
            for (int i = 0; gi && i < c0; i++) perm += (int)rd32(gi, (size_t)i) != i / 64;
            st_free(&g);
        }
        EVB_CHECK(perm > 0, "B: act-order g_idx is not the identity grouping (%d of %d inputs elsewhere)", perm, c0);
    }

    /* Refusals. */
    unit_cfg x5[] = {{0, "rtn", 5, 32, 0, 0}}, xg[] = {{4, "rtn", 3, 32, 0, 0}}, xs[] = {{5, "magnitude", 0, 0, 0, 0.5}};
    snprintf(cfg_x, sizeof cfg_x, "%s/x5.json", tmp);
    write_config(cfg_x, model, db, x5, 1, -1);
    snprintf(out, sizeof out, "%s/x5", tmp);
    expect_refusal(cfg_x, "gptq", out, "5-bit", "5 bits");
    snprintf(cfg_x, sizeof cfg_x, "%s/xg.json", tmp);
    write_config(cfg_x, model, db, xg, 1, -1);
    snprintf(out, sizeof out, "%s/xg", tmp);
    expect_refusal(cfg_x, "gptq_v2", out, "multiples of 32", "688 outputs at 3 bits");
    snprintf(cfg_x, sizeof cfg_x, "%s/xs.json", tmp);
    write_config(cfg_x, model, db, xs, 1, -1);
    snprintf(out, sizeof out, "%s/xs", tmp);
    expect_refusal(cfg_x, "gptq", out, "no quantized", "no quantized layer");
    snprintf(args, sizeof args, "export --config %s --format ggml --out %s/xf", cfg_a, tmp);
    EVB_CHECK(evb(args, NULL) == 2, "--format ggml (no such format) is a usage error");

    /* Bytes on disk: the packed export of A against its dense exports. */
    snprintf(args, sizeof args, "export --config %s --dtype f16 --out %s/hf16_a", cfg_a, tmp);
    EVB_CHECK(evb(args, NULL) == 0, "A: dense float16 export");
    snprintf(out, sizeof out, "%s/hf16_a", tmp);
    long dense16 = file_size(out, "model.safetensors");
    printf("  bytes on disk (A): gptq_v2 %ld, dense f16 %ld, dense f32 %ld\n", packed, dense16, dense32);
    EVB_CHECK(packed > 0 && packed < dense16 && dense16 < dense32, "A: the packed export is smaller than the dense float16 one (%ld < %ld)", packed, dense16);

    evb_model_free(m);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (!evb_test_failures) sh(cmd);
    return evb_test_summary();
}
