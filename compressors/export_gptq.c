/* export_gptq.c -- the packed GPTQ checkpoint of a configuration (see evb_export.h).
 *
 * The layout follows AutoGPTQ's QuantLinear.pack (auto_gptq/nn_modules/qlinear/qlinear_cuda_old.py):
 * qweight [in bits / 32, out], qzeros [n_groups, out bits / 32] holding zero - 1, scales [n_groups, out]
 * float16, g_idx [in]. Its 3-bit packing (ten codes per int32 and the 11th and 22nd split over a word
 * boundary) is the same rule as for 2, 4 and 8 bits once a run of codes is read as one little-endian bit
 * stream with code j at bit j bits; pack_run applies that rule to runs of 32 / bits codes (one int32) for
 * 2, 4, 8 bits and of 32 codes (three int32) for 3 bits, so a packed width need only be a multiple of the run. GPTQModel's checkpoint_format
 * "gptq_v2" stores the zero points themselves. docs/export-formats.md cites the sources.
 *
 * The quantized levels are read from the database's payload files, whose layout db.c documents ("EVBQ",
 * u32 version, rows, cols, bits, n_groups, the codes as a bit stream, f32 scale and zero [rows n_groups],
 * i32 group_of [cols]); the checksum the index records is verified before a payload is used. */
#define _GNU_SOURCE
#include "evobudget/evb_export.h"
#include "evobudget/evb_db.h"
#include "evobudget/evb_model.h"
#include "evobudget/evb_status.h"
#include "compressors/export_impl.h"
#include "core/fileio.h"
#include "core/json.h"
#include "models/safetensors.h"
#include "models/save.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

// ---- a quantized level from its payload ----

typedef struct qlevel {
    int rows, cols, bits, ng, gs, sym, desc_act;
    uint8_t *codes;     /* [rows, cols] */
    float *scale, *zero;/* [rows, ng] */
    int32_t *g;         /* [cols] */
} qlevel;

static void qlevel_free(qlevel *q) { free(q->codes); free(q->scale); free(q->zero); free(q->g); memset(q, 0, sizeof *q); }

static uint32_t get_u32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

/* Reads entry e's payload from db_dir, verifying size, checksum and header, into q. */
static int qlevel_read(const char *db_dir, const evb_db_entry *e, qlevel *q) {
    memset(q, 0, sizeof *q);
    char path[1300];
    snprintf(path, sizeof path, "%s/%s", db_dir, e->file);
    int fd = open(path, O_RDONLY);
    if (fd < 0) EVB_ERRORF(EVB_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || (uint64_t)sb.st_size != e->bytes || sb.st_size < 24) {
        close(fd);
        EVB_ERRORF(EVB_EFORMAT, "%s: %lld bytes, the index says %llu (hint: delete it and rerun 'evobudget db build')", path,
                   (long long)sb.st_size, (unsigned long long)e->bytes);
    }
    size_t size = (size_t)sb.st_size;
    const uint8_t *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) EVB_ERRORF(EVB_EIO, "%s: cannot map: %s", path, strerror(errno));
    int st = EVB_SUCCESS;
    uint32_t rows = get_u32(p + 8), cols = get_u32(p + 12), bits = get_u32(p + 16), ng = get_u32(p + 20);
    size_t n = 0, ncode = 0, ns = 0, want = 0;
    int bad = memcmp(p, "EVBQ", 4) != 0 || get_u32(p + 4) != 1 || rows != (uint32_t)e->rows || cols != (uint32_t)e->cols ||
              bits != (uint32_t)e->bits || bits < 1 || bits > 8 || ng < 1 || ng > cols;
    bad = bad || __builtin_mul_overflow((size_t)rows, (size_t)cols, &n) || __builtin_mul_overflow((size_t)rows, (size_t)ng, &ns);
    if (!bad) { ncode = (n / 8) * bits + ((n % 8) * bits + 7) / 8; want = 24 + ncode + 8 * ns + 4 * (size_t)cols; }
    if (evb_hash64(p, size, 0) != e->checksum)
        st = EVB_RAISEF(EVB_EFORMAT, "%s: checksum mismatch: the payload is damaged (hint: delete it and rerun 'evobudget db build')", path);
    else if (bad || size != want)
        st = EVB_RAISEF(EVB_EFORMAT, "%s: not a quantized payload of %d x %d at %d bits", path, e->rows, e->cols, e->bits);
    if (!st) {
        q->rows = (int)rows; q->cols = (int)cols; q->bits = (int)bits; q->ng = (int)ng;
        q->gs = e->group_size; q->sym = e->sym;
        q->codes = malloc(n); q->scale = malloc(4 * ns); q->zero = malloc(4 * ns); q->g = malloc(4 * (size_t)cols);
        if (!q->codes || !q->scale || !q->zero || !q->g) st = EVB_RAISEF(EVB_ENOMEM, "out of memory reading %s", path);
    }
    if (!st) {
        const uint8_t *c = p + 24;
        for (size_t j = 0; j < n; j++) {
            size_t bit = j * bits;
            uint32_t v = 0;
            for (uint32_t b = 0; b < bits; b++, bit++) v |= (uint32_t)(c[bit / 8] >> (bit % 8) & 1u) << b;
            q->codes[j] = (uint8_t)v;
        }
        memcpy(q->scale, c + ncode, 4 * ns);
        memcpy(q->zero, c + ncode + 4 * ns, 4 * ns);
        memcpy(q->g, c + ncode + 8 * ns, 4 * (size_t)cols);
        for (uint32_t i = 0; !st && i < cols; i++) {
            if (q->g[i] < 0 || (uint32_t)q->g[i] >= ng) st = EVB_RAISEF(EVB_EFORMAT, "%s: group index %d of input %u out of range", path, q->g[i], i);
            else if (q->g[i] != (q->gs > 0 ? (int32_t)(i / (uint32_t)q->gs) : 0)) q->desc_act = 1;
        }
        const float maxq = (float)((1 << bits) - 1);
        for (size_t i = 0; !st && i < ns; i++)
            if (!(q->zero[i] >= 0.0f && q->zero[i] <= maxq && q->zero[i] == rintf(q->zero[i])))
                st = EVB_RAISEF(EVB_EFORMAT, "%s: zero point %g of row %zu is not an integer in 0..%g", path, q->zero[i], i / ng, maxq);
            else if (!isfinite(q->scale[i])) st = EVB_RAISEF(EVB_EFORMAT, "%s: scale of row %zu is not finite", path, i / ng);
    }
    munmap((void *)p, size);
    if (st) qlevel_free(q);
    return st;
}

// ---- packing ----

/* Values packed per run: 32 / bits (one int32) for 2, 4, 8 bits, 32 (three int32) for 3 bits. A width is
 * packable when it is a multiple of the run. */
static int run_len(int bits) { return bits == 3 ? 32 : 32 / bits; }

/* Packs the n = run_len(bits) values v[n] of `bits` bits into out[n bits / 32] (value j at bit j bits of the
 * little-endian stream). */
static void pack_run(const uint32_t *v, int bits, uint32_t *out) {
    const int n = run_len(bits);
    for (int w = 0; w < n * bits / 32; w++) out[w] = 0;
    for (int j = 0; j < n; j++)
        for (int b = 0; b < bits; b++) {
            int bit = j * bits + b;
            out[bit / 32] |= ((v[j] >> b) & 1u) << (bit % 32);
        }
}

// ---- the tensors ----

enum { T_DENSE, T_QWEIGHT, T_QZEROS, T_SCALES, T_GIDX };

typedef struct tensor {
    char name[112];
    int kind, unit;            /* unit: for the packed tensors */
    const char *dtype;         /* "I32", "F16", "BF16", "F32" */
    int ndim;
    int64_t shape[2];
    const float *data;         /* T_DENSE */
    int permute_heads;         /* T_DENSE/packed: rows (outputs) in rotate-half order, heads of head_dim */
    size_t bytes;
} tensor;

typedef struct writer {
    const evb_model *m;
    const evb_db *db;
    const char *db_dir;
    const int *entry;
    int v2;
    tensor *t; int n;
    qlevel q; int q_unit;      /* the level whose tensors are being written */
    double scale_rel_err;
} writer;


static int put_u16(FILE *f, uint16_t h) { uint8_t b[2] = {(uint8_t)h, (uint8_t)(h >> 8)}; return fwrite(b, 1, 2, f) == 2; }
static int put_u32s(FILE *f, const uint32_t *w, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint8_t b[4] = {(uint8_t)w[i], (uint8_t)(w[i] >> 8), (uint8_t)(w[i] >> 16), (uint8_t)(w[i] >> 24)};
        if (fwrite(b, 1, 4, f) != 4) return 0;
    }
    return 1;
}

static int write_dense(FILE *f, const tensor *t, int E) {
    size_t rows = (size_t)t->shape[0], cols = t->ndim == 2 ? (size_t)t->shape[1] : 1;
    int ok = 1;
    for (size_t r = 0; ok && r < rows; r++) {
        const float *x = t->data + (size_t)evb_export_src_row((int)r, t->permute_heads, E) * cols;
        if (strcmp(t->dtype, "F32") == 0) ok = fwrite(x, 4, cols, f) == cols;
        else for (size_t c = 0; ok && c < cols; c++) ok = put_u16(f, t->dtype[0] == 'B' ? evb_f32_to_bf16(x[c]) : evb_f32_to_f16(x[c]));
    }
    return ok ? EVB_SUCCESS : EVB_EIO;
}

static int write_packed(FILE *f, writer *w, const tensor *t, int E) {
    if (w->q_unit != t->unit) {
        qlevel_free(&w->q);
        w->q_unit = -1;
        evb_db_entry e = evb_db_get(w->db, w->entry[t->unit]);
        int st = qlevel_read(w->db_dir, &e, &w->q);
        if (st) return st;
        w->q_unit = t->unit;
    }
    const qlevel *q = &w->q;
    const int bits = q->bits, R = q->rows, C = q->cols, ph = t->permute_heads, n = run_len(bits), wpr = n * bits / 32;
    uint32_t v[32], out[8];
    int ok = 1;
    if (t->kind == T_QWEIGHT) { /* [C bits / 32, R]: row-major, so each output column's words are interleaved */
        uint32_t *rowbuf = malloc(sizeof(uint32_t) * (size_t)wpr * R);
        if (!rowbuf) EVB_ERROR("out of memory packing qweight", EVB_ENOMEM);
        for (int k0 = 0; ok && k0 < C; k0 += n) {
            for (int o = 0; o < R; o++) {
                const uint8_t *code = q->codes + (size_t)evb_export_src_row(o, ph, E) * C + k0;
                for (int j = 0; j < n; j++) v[j] = code[j];
                pack_run(v, bits, out);
                for (int b = 0; b < wpr; b++) rowbuf[(size_t)b * R + o] = out[b];
            }
            ok = put_u32s(f, rowbuf, (size_t)wpr * R);
        }
        free(rowbuf);
    } else if (t->kind == T_QZEROS) { /* [ng, R bits / 32] */
        for (int g = 0; ok && g < q->ng; g++)
            for (int o0 = 0; ok && o0 < R; o0 += n) {
                for (int j = 0; j < n; j++) {
                    int r = evb_export_src_row(o0 + j, ph, E);
                    int z = (int)q->zero[(size_t)r * q->ng + g];
                    if (!w->v2 && z == 0)
                        EVB_ERRORF(EVB_EINVAL, "%s: group %d of output %d has zero point 0, which checkpoint_format \"gptq\" cannot store "
                                   "(it stores zero - 1) (hint: --format gptq_v2 stores zero points as they are; symmetric levels (--sym) never have 0)",
                                   t->name, g, o0 + j);
                    v[j] = (uint32_t)(w->v2 ? z : z - 1);
                }
                pack_run(v, bits, out);
                ok = put_u32s(f, out, (size_t)wpr);
            }
    } else if (t->kind == T_SCALES) { /* [ng, R] f16 */
        for (int g = 0; ok && g < q->ng; g++)
            for (int o = 0; ok && o < R; o++) {
                float s = q->scale[(size_t)evb_export_src_row(o, ph, E) * q->ng + g];
                uint16_t h = evb_f32_to_f16(s);
                float back = evb_f16_to_f32(h);
                if (!isfinite(back) || (back == 0.0f && s != 0.0f))
                    EVB_ERRORF(EVB_EINVAL, "%s: scale %g of output %d, group %d, has no float16 value (hint: export with --format hf)", t->name, s, o, g);
                double rel = s != 0.0f ? fabs((double)back - s) / fabs((double)s) : 0.0;
                if (rel > w->scale_rel_err) w->scale_rel_err = rel;
                ok = put_u16(f, h);
            }
    } else ok = put_u32s(f, (const uint32_t *)q->g, (size_t)C);
    return ok ? EVB_SUCCESS : EVB_EIO;
}

static int write_body(FILE *f, void *ctx) {
    writer *w = ctx;
    /* the header */
    json_t *hdr = json_pack("{s:{s:s}}", "__metadata__", "format", "pt");
    size_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const tensor *t = &w->t[i];
        json_t *shape = t->ndim == 2 ? json_pack("[I, I]", (json_int_t)t->shape[0], (json_int_t)t->shape[1]) : json_pack("[I]", (json_int_t)t->shape[0]);
        json_object_set_new(hdr, t->name, json_pack("{s:s, s:o, s:[I, I]}", "dtype", t->dtype, "shape", shape, "data_offsets",
                                                     (json_int_t)off, (json_int_t)(off + t->bytes)));
        off += t->bytes;
    }
    char *text = json_dumps(hdr, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(hdr);
    if (!text) EVB_ERROR("out of memory writing a safetensors header", EVB_ENOMEM);
    size_t hlen = strlen(text), pad = (8 - hlen % 8) % 8;
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((hlen + pad) >> (8 * i));
    int ok = fwrite(len8, 1, 8, f) == 8 && fwrite(text, 1, hlen, f) == hlen && fwrite("        ", 1, pad, f) == pad;
    free(text);
    if (!ok) return EVB_EIO;
    int E = w->m->config.head_dim, st = EVB_SUCCESS;
    for (int i = 0; !st && i < w->n; i++)
        st = w->t[i].kind == T_DENSE ? write_dense(f, &w->t[i], E) : write_packed(f, w, &w->t[i], E);
    return st;
}

// ---- config.json ----

int evb_export_write_json(const char *dir, const char *name, json_t *j) {
    char path[1300];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return evb_json_write_file(path, j, 2);
}

void evb_export_module_name(int u, char *out, size_t n) {
    int l = u / EVB_LINEAR_COUNT, k = u % EVB_LINEAR_COUNT;
    snprintf(out, n, "model.layers.%d.%s.%s", l, k < 4 ? "self_attn" : "mlp", evb_linear_name((evb_linear_kind)k));
}

/* ^name$ with the dots escaped, as GPTQModel's and vLLM's re.match read it. */
static void module_regex(const char *sign, int u, char *out, size_t n) {
    char name[96], *p = out;
    evb_export_module_name(u, name, sizeof name);
    p += snprintf(p, n, "%s^", sign);
    for (const char *s = name; *s && (size_t)(p - out) + 4 < n; s++) {
        if (*s == '.') *p++ = '\\';
        *p++ = *s;
    }
    snprintf(p, n - (size_t)(p - out), "$");
}

int evb_gptq_save(const evb_model *m, const evb_db *db, const char *db_dir, const int *entry, const char *dir,
                  const evb_gptq_options *opt, evb_gptq_summary *sum) {
    const evb_config *c = &m->config;
    const char *dtype = opt && opt->dtype ? opt->dtype : "F16";
    if (strcmp(dtype, "F32") && strcmp(dtype, "F16") && strcmp(dtype, "BF16"))
        EVB_ERRORF(EVB_EINVAL, "dtype '%s' cannot be written (F32, F16, BF16 can)", dtype);
    const int L = c->n_layers, U = evb_model_n_units(m), permute = !c->rope_halves;
    const int esz = strcmp(dtype, "F32") == 0 ? 4 : 2;
    evb_gptq_summary s = {0};
    /* Which layers are packed, and each one's (bits, group_size, sym, desc_act). */
    int *key = calloc((size_t)U * 4, sizeof *key);
    unsigned char *packed = calloc((size_t)U, 1);
    if (!key || !packed) { free(key); free(packed); EVB_ERROR("out of memory", EVB_ENOMEM); }
    int st = EVB_SUCCESS;
    for (int u = 0; !st && u < U; u++) {
        int l = u / EVB_LINEAR_COUNT, k = u % EVB_LINEAR_COUNT;
        int dropped = k < 4 ? m->layers[l].skip_attn || m->layers[l].dropped_attn : m->layers[l].skip_mlp || m->layers[l].dropped_mlp;
        if (entry[u] < 0 || dropped) continue;
        if (entry[u] >= evb_db_count(db)) { st = EVB_RAISEF(EVB_EINVAL, "unit %d: database entry %d out of range", u, entry[u]); break; }
        evb_db_entry e = evb_db_get(db, entry[u]);
        char name[96];
        evb_export_module_name(u, name, sizeof name);
        int r, cc;
        evb_model_unit_shape(m, u, &r, &cc);
        if (e.kind != EVB_LEVEL_QUANT || e.unit != u || e.rows != r || e.cols != cc)
            st = EVB_RAISEF(EVB_EINVAL, "%s: database entry %d is not a quantized level of this %d x %d layer", name, entry[u], r, cc);
        else if (e.bits != 2 && e.bits != 3 && e.bits != 4 && e.bits != 8)
            st = EVB_RAISEF(EVB_EINVAL, "%s: %d-bit level: the GPTQ layout packs 2, 3, 4 or 8 bits (hint: export --format hf, or search over --bits 2,3,4,8 levels)", name, e.bits);
        else if (cc % run_len(e.bits) || r % run_len(e.bits))
            st = EVB_RAISEF(EVB_EINVAL, "%s: %d outputs x %d inputs: the GPTQ layout packs %d values of %d bits at a time, so both must be "
                            "multiples of %d (hint: export --format hf, or leave this layer dense or sparse)", name, r, cc,
                            run_len(e.bits), e.bits, run_len(e.bits));
        else if (e.group_size > 0 && cc % e.group_size)
            st = EVB_RAISEF(EVB_EINVAL, "%s: group size %d does not divide the %d inputs (hint: export --format hf)", name, e.group_size, cc);
        if (st) break;
        packed[u] = 1;
        key[4 * u] = e.bits; key[4 * u + 1] = e.group_size > 0 ? e.group_size : -1; key[4 * u + 2] = e.sym;
        s.n_packed++;
    }
    if (!st && s.n_packed == 0)
        st = EVB_RAISEF(EVB_EINVAL, "the configuration has no quantized (rtn or gptq) layer to pack (hint: --format hf writes it dense; --format gguf writes GGUF levels)");
    /* desc_act needs the payload's g_idx: read each packed level's header once (this also verifies it). */
    for (int u = 0; !st && u < U; u++) {
        if (!packed[u]) continue;
        evb_db_entry e = evb_db_get(db, entry[u]);
        qlevel q;
        st = qlevel_read(db_dir, &e, &q);
        if (!st) { key[4 * u + 3] = q.desc_act; qlevel_free(&q); }
    }
    /* The tensors, in evb_model_save's order. */
    int n_max = 2 + L * (2 + 5 * EVB_LINEAR_COUNT + 3) + 1;
    tensor *t = st ? NULL : calloc((size_t)n_max, sizeof *t);
    size_t max_lin = evb_model_max_unit(m, NULL);
    float *zero = st ? NULL : calloc(max_lin, sizeof(float));
    if (!st && (!t || !zero)) st = EVB_RAISEF(EVB_ENOMEM, "out of memory");
    int n = 0;
#define DENSE(nd, d0, d1, ptr, ph) do { tensor *x_ = &t[n++]; x_->kind = T_DENSE; x_->dtype = dtype; x_->ndim = nd; \
        x_->shape[0] = d0; x_->shape[1] = d1; x_->data = ptr; x_->permute_heads = ph; \
        x_->bytes = (size_t)(d0) * (size_t)((nd) == 2 ? (d1) : 1) * esz; } while (0)
    if (!st) {
        DENSE(2, c->vocab_size, c->dim, m->tok_emb, 0);
        snprintf(t[n - 1].name, sizeof t[n - 1].name, "model.embed_tokens.weight");
    }
    for (int l = 0; !st && l < L; l++) {
        const evb_layer *ly = &m->layers[l];
        int drop_attn = ly->skip_attn || ly->dropped_attn, drop_mlp = ly->skip_mlp || ly->dropped_mlp;
        DENSE(1, c->dim, 0, ly->rms_att, 0);
        snprintf(t[n - 1].name, sizeof t[n - 1].name, "model.layers.%d.input_layernorm.weight", l);
        DENSE(1, c->dim, 0, ly->rms_ffn, 0);
        snprintf(t[n - 1].name, sizeof t[n - 1].name, "model.layers.%d.post_attention_layernorm.weight", l);
        for (int k = 0; k < EVB_LINEAR_COUNT; k++) {
            int u = l * EVB_LINEAR_COUNT + k, r, cc;
            evb_model_unit_shape(m, u, &r, &cc);
            int ph = permute && (k == EVB_LINEAR_Q || k == EVB_LINEAR_K) ? 1 : 0;
            char name[96];
            evb_export_module_name(u, name, sizeof name);
            if (!packed[u]) {
                DENSE(2, r, cc, (k < 4 ? drop_attn : drop_mlp) ? zero : ly->w[k], ph);
                snprintf(t[n - 1].name, sizeof t[n - 1].name, "%s.weight", name);
                s.n_dense++;
            } else {
                int bits = key[4 * u], gs = key[4 * u + 1], ng = gs > 0 ? cc / gs : 1;
                static const char *suffix[] = {"qweight", "qzeros", "scales", "g_idx"};
                int64_t shapes[4][2] = {{(int64_t)cc * bits / 32, r}, {ng, (int64_t)r * bits / 32}, {ng, r}, {cc, 0}};
                for (int i = 0; i < 4; i++) {
                    tensor *x = &t[n++];
                    x->kind = T_QWEIGHT + i; x->unit = u; x->permute_heads = ph;
                    x->dtype = i == 2 ? "F16" : "I32";
                    x->ndim = i == 3 ? 1 : 2;
                    x->shape[0] = shapes[i][0]; x->shape[1] = shapes[i][1];
                    x->bytes = (size_t)shapes[i][0] * (size_t)(i == 3 ? 1 : shapes[i][1]) * (i == 2 ? 2 : 4);
                    snprintf(x->name, sizeof x->name, "%s.%s", name, suffix[i]);
                }
            }
            if (c->qkv_bias && k < 3) {
                const float *b[3] = {ly->bq, ly->bk, ly->bv};
                DENSE(1, r, 0, drop_attn ? zero : b[k], 0);
                snprintf(t[n - 1].name, sizeof t[n - 1].name, "%s.bias", name);
            }
        }
    }
    if (!st) {
        DENSE(1, c->dim, 0, m->rms_final, 0);
        snprintf(t[n - 1].name, sizeof t[n - 1].name, "model.norm.weight");
        if (!c->tied) { DENSE(2, c->vocab_size, c->dim, m->cls, 0); snprintf(t[n - 1].name, sizeof t[n - 1].name, "lm_head.weight"); }
    }
#undef DENSE
    if (!st && mkdir(dir, 0755) != 0 && errno != EEXIST) st = EVB_RAISEF(EVB_EIO, "%s: cannot create: %s", dir, strerror(errno));
    writer w = {.m = m, .db = db, .db_dir = db_dir, .entry = entry, .v2 = opt && opt->v2, .t = t, .n = n, .q_unit = -1};
    if (!st) {
        char path[1300];
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        st = evb_write_atomic_with(path, write_body, &w);
        qlevel_free(&w.q);
    }
    s.scale_rel_err = w.scale_rel_err;
    /* quantization_config: the most common (bits, group_size, sym, desc_act) as the default, the rest as
     * GPTQModel's dynamic overrides. */
    int best = -1, best_n = 0;
    for (int u = 0; !st && u < U; u++) {
        if (!packed[u]) continue;
        int cnt = 0;
        for (int v = 0; v < U; v++) cnt += packed[v] && !memcmp(&key[4 * u], &key[4 * v], 4 * sizeof *key);
        if (cnt > best_n) { best = u; best_n = cnt; }
    }
    json_t *cfg = NULL;
    if (!st) st = evb_model_hf_config(m, dtype, &cfg);
    if (!st) {
        s.bits = key[4 * best]; s.group_size = key[4 * best + 1]; s.sym = key[4 * best + 2]; s.desc_act = key[4 * best + 3];
        static const char *field[] = {"bits", "group_size", "sym", "desc_act"};
        json_t *dyn = json_object();
        char re[160];
        for (int u = 0; u < U; u++) {
            if (packed[u] && !memcmp(&key[4 * u], &key[4 * best], 4 * sizeof *key)) continue;
            json_t *ov = json_object();
            for (int i = 0; packed[u] && i < 4; i++)
                if (key[4 * u + i] != key[4 * best + i])
                    json_object_set_new(ov, field[i], i >= 2 ? json_boolean(key[4 * u + i]) : json_integer(key[4 * u + i]));
            module_regex(packed[u] ? "+:" : "-:", u, re, sizeof re);
            json_object_set_new(dyn, re, ov);
            s.n_dynamic++;
        }
        json_t *qc = json_pack("{s:s, s:i, s:i, s:b, s:b, s:s, s:b, s:o, s:{s:[s]}}", "quant_method", "gptq", "bits", s.bits,
                               "group_size", s.group_size, "desc_act", s.desc_act, "sym", s.sym, "checkpoint_format",
                               opt && opt->v2 ? "gptq_v2" : "gptq", "lm_head", 0, "dynamic", dyn, "meta", "quantizer", "evobudget");
        json_object_set(cfg, "quantization_config", qc);
        st = evb_export_write_json(dir, "quantize_config.json", qc);
        if (!st) st = evb_export_write_json(dir, "config.json", cfg);
        json_decref(qc);
        json_decref(cfg);
    }
    free(t); free(zero); free(key); free(packed);
    if (sum) *sum = s;
    return st;
}
