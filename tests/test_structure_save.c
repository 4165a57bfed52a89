/* test_structure_save.c -- a structured model (evb_block_level: whole KV groups and MLP channels removed, one
 * attention and one MLP keeping none, compensation biases) written by evb_model_save and read back by
 * evb_model_load: in float32 the loaded model's logits are the structured model's (1e-5), its blocks have
 * the smaller shapes and its parameter count is what is left; loaded for BF16 compute, its logits are those
 * of the demo loaded so with the same levels; saved in BF16, they stay close. A malformed
 * "evobudget_structure" (heads that are not whole groups, an MLP wider than the model, a block outside it or
 * named twice, a tensor of another shape than the entry says) is EVB_EFORMAT naming the file and the field.
 * The same model exported to GGUF (compressors/export_gguf.c: llama.cpp's deci architecture, per-block head
 * counts and MLP lengths): where the llama.cpp judge is built, llama.cpp's NLL of a few windows of the demo
 * text is the library's forward's, with and without Qwen2-style q/k/v biases. */
#define _GNU_SOURCE
#include "testing.h"
#include "fixtures.h"
#include "shell.h"
#include "evobudget/evb_export.h"
#include "evobudget/evb_model.h"
#include "evobudget/evb_status.h"
#include "evobudget/evb_tokenizer.h"

#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef EVB_LLAMA_JUDGE
#define EVB_LLAMA_JUDGE ""
#endif

#define DEMO EVB_SOURCE_DIR "/assets/demo"
enum { B = 2, T = 32, N_SPEC = 7, N_WIN = 3, WIN = 48 };

/* One structured sub-block: block, 0 attention / 1 MLP, groups or channels kept, with a compensation bias. */
typedef struct spec { int layer, mlp, n_kept, bias; } spec;
static const spec SPECS[N_SPEC] = {
    {0, 0, 0, 1},   /* block 0's attention keeps no group: its bias alone */
    {1, 0, 2, 1},   /* two of four KV groups */
    {2, 1, 300, 1}, /* 300 of 688 channels */
    {3, 0, 3, 0},   /* both sub-blocks of block 3, no biases */
    {3, 1, 100, 0},
    {4, 1, 0, 1},   /* block 4's MLP keeps no channel: its bias alone */
    {5, 0, 1, 1},
};

static char tmp[600];

static float frand(unsigned *seed) { return (float)rand_r(seed) / RAND_MAX - 0.5f; }

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

/* Applies SPECS to m (levels bl[N_SPEC], biases bias[N_SPEC], both the caller's to free). Block 1's MLP is
 * dropped as well, so that a block is both structured and dropped. */
static int apply_specs(evb_model *m, evb_block_level **bl, float **bias) {
    const evb_config *c = &m->config;
    unsigned seed = 17;
    int st = 0;
    for (int i = 0; i < N_SPEC && !st; i++) {
        const spec *p = &SPECS[i];
        int n = p->mlp ? c->hidden_dim : c->n_kv_heads, *idx = malloc(sizeof(int) * n);
        for (int j = 0; j < n; j++) idx[j] = j;
        for (int j = 0; j < p->n_kept; j++) { /* a partial shuffle: n_kept distinct indices, then in order */
            int k = j + rand_r(&seed) % (n - j), t = idx[j];
            idx[j] = idx[k]; idx[k] = t;
        }
        qsort(idx, p->n_kept, sizeof *idx, cmp_int);
        bias[i] = NULL;
        if (p->bias) {
            bias[i] = malloc(sizeof(float) * c->dim);
            for (int j = 0; j < c->dim; j++) bias[i][j] = 0.2f * frand(&seed);
        }
        st = evb_block_level_make(m, p->layer, p->mlp, idx, p->n_kept, NULL, bias[i], &bl[i]);
        if (!st) evb_block_level_apply(m, bl[i]);
        free(idx);
    }
    m->layers[1].skip_mlp = 1;
    return st;
}

static void logits_of(const evb_model *m, const int32_t *tok, float *out) {
    evb_state *s = NULL;
    int st = evb_state_alloc(m, B, T, &s);
    if (!st) st = evb_forward(m, s, tok, B, T);
    EVB_CHECK(st == 0, "forward of %s (%s)", m->path, st ? evb_last_error() : "ok");
    if (!st) memcpy(out, s->logits, sizeof(float) * B * T * m->config.vocab_size);
    evb_state_free(s);
}

/* Parameters the structured model keeps: the dense count less the removed rows and columns, plus the
 * biases. */
static size_t expected_params(const evb_model *m, size_t dense) {
    const evb_config *c = &m->config;
    size_t D = c->dim, E = c->head_dim, r = c->n_heads / c->n_kv_heads;
    for (int i = 0; i < N_SPEC; i++) {
        const spec *p = &SPECS[i];
        if (p->mlp) dense -= (size_t)(c->hidden_dim - p->n_kept) * 3 * D;
        else dense -= (size_t)(c->n_kv_heads - p->n_kept) * (2 * r * E * D + 2 * E * D);
        if (p->bias) dense += D;
    }
    return dense;
}

/* The loaded model's blocks: structured where SPECS made them so, with their counts; block 1's MLP
 * dropped. */
static void check_shapes(const evb_model *ref, const evb_model *m, const char *what) {
    int bad = 0;
    for (int l = 0; l < m->config.n_layers; l++) {
        const evb_layer *a = &ref->layers[l], *b = &m->layers[l];
        bad += a->structured != b->structured || !a->b_o != !b->b_o || !a->b_down != !b->b_down;
        bad += a->structured && (a->heads != b->heads || a->kv_heads != b->kv_heads || a->ffn != b->ffn);
        int r, cc, rr, c2;
        evb_model_unit_shape(m, l * EVB_LINEAR_COUNT + EVB_LINEAR_DOWN, &r, &cc);
        evb_model_unit_shape(ref, l * EVB_LINEAR_COUNT + EVB_LINEAR_DOWN, &rr, &c2);
        bad += r != rr || cc != c2;
    }
    EVB_CHECK(!bad && m->layers[1].dropped_mlp && m->layers[0].heads == 0 && m->layers[4].ffn == 0,
              "%s: every block has the structured model's shapes and biases (%d differ), block 1's MLP off",
              what, bad);
}

/* Loads dir as compute and compares its logits with ref's (max |diff| <= tol). */
static void check_load(const char *dir, evb_compute compute, const evb_model *m, const float *ref,
                       const int32_t *tok, double tol, const char *what) {
    evb_model *b = NULL;
    int st = evb_model_load_as(dir, compute, &b);
    EVB_CHECK(st == 0, "%s: loads (%s)", what, st ? evb_last_error() : "ok");
    if (st) return;
    size_t nl = (size_t)B * T * m->config.vocab_size;
    float *got = malloc(sizeof(float) * nl);
    logits_of(b, tok, got);
    double d = evb_test_max_abs_diff(got, ref, nl);
    EVB_CHECK(d <= tol, "%s: the logits are the structured model's (max diff %.3g, tol %g)", what, d, tol);
    check_shapes(m, b, what);
    free(got);
    evb_model_free(b);
}

/* The saved config.json's evobudget_structure lists SPECS' blocks with their counts. */
static void check_config(const char *dir, const evb_model *m) {
    char p[800];
    snprintf(p, sizeof p, "%s/config.json", dir);
    json_t *j = json_load_file(p, 0, NULL), *a = json_object_get(j, "evobudget_structure"), *x;
    size_t i;
    int bad = 0;
    json_array_foreach(a, i, x) {
        int l = (int)json_integer_value(json_object_get(x, "block"));
        const evb_layer *L = l >= 0 && l < m->config.n_layers ? &m->layers[l] : NULL;
        bad += !L || json_integer_value(json_object_get(x, "heads")) != L->heads ||
               json_integer_value(json_object_get(x, "kv_heads")) != L->kv_heads ||
               json_integer_value(json_object_get(x, "ffn")) != L->ffn;
    }
    EVB_CHECK(json_array_size(a) == 6 && !bad,
              "config.json lists the 6 structured blocks with their counts (%zu, %d bad)", json_array_size(a),
              bad);
    json_decref(j);
}

/* Entry `entry` of evobudget_structure with field set to value (append: a copy of the entry added instead)
 * makes the load EVB_EFORMAT with a message holding want. */
static void check_malformed(const char *dir, int entry, const char *field, long long value, int append,
                            const char *want, const char *what) {
    char p[800];
    snprintf(p, sizeof p, "%s/config.json", dir);
    json_t *orig = json_load_file(p, 0, NULL), *j = json_deep_copy(orig);
    json_t *a = json_object_get(j, "evobudget_structure"), *x = json_array_get(a, (size_t)entry);
    if (append) json_array_append_new(a, json_deep_copy(x));
    else json_object_set_new(x, field, json_integer(value));
    json_dump_file(j, p, JSON_INDENT(2));
    evb_model *b = NULL;
    int st = evb_model_load(dir, &b);
    const char *e = evb_last_error();
    int names_file = strstr(e, "config.json") || strstr(e, "model.safetensors");
    EVB_CHECK(st == EVB_EFORMAT && !b && strstr(e, want) && names_file,
              "%s: refused with EVB_EFORMAT naming the file and %s (%d: %s)", what, want, st, e);
    evb_model_free(b);
    json_dump_file(orig, p, JSON_INDENT(2));
    json_decref(orig);
    json_decref(j);
}

static void malformed(const char *dir, const evb_model *m) {
    int G = m->config.n_kv_heads, F = m->config.hidden_dim;
    check_malformed(dir, 1, "heads", 5, 0, "evobudget_structure[1].heads", "heads 5 for 2 KV groups");
    check_malformed(dir, 1, "kv_heads", G + 1, 0, "evobudget_structure[1].kv_heads",
                    "kv_heads above the model's");
    check_malformed(dir, 2, "ffn", F + 1, 0, "evobudget_structure[2].ffn", "ffn above the model's");
    check_malformed(dir, 0, "block", 6, 0, "evobudget_structure[0].block", "a block outside the model");
    check_malformed(dir, 0, "block", 0, 1, "named twice", "a block named twice");
    check_malformed(dir, 2, "ffn", 301, 0, "model.layers.2.mlp.gate_proj.weight",
                    "a tensor of another shape than the entry");
}

// ---- GGUF ----

/* N_WIN windows of WIN tokens of the demo text (BOS first), written one per line to path. */
static int demo_windows(int32_t *win, const char *path) {
    evb_tokenizer *t = NULL;
    char *text = slurp(DEMO "/calib.txt");
    int32_t *ids = NULL;
    size_t n = 0;
    int ok = text && evb_tokenizer_load(DEMO "/tokenizer.json", &t) == 0 &&
             evb_tokenizer_encode(t, text, strlen(text) < 8000 ? strlen(text) : 8000, 1, &ids, &n) == 0 &&
             n >= (size_t)N_WIN * WIN;
    FILE *f = ok ? fopen(path, "w") : NULL;
    for (int i = 0; f && i < N_WIN * WIN; i++) {
        win[i] = i % WIN == 0 ? evb_tokenizer_bos(t) : ids[i];
        fprintf(f, "%d%c", win[i], i % WIN == WIN - 1 ? '\n' : ' ');
    }
    ok = f && fclose(f) == 0;
    free(text); free(ids);
    evb_tokenizer_free(t);
    return ok;
}

/* The library's NLL of each window: -log p(tok[t+1]) summed over t = 0 .. WIN-2. */
static void library_nll(const evb_model *m, const int32_t *win, double *nll) {
    evb_state *s = NULL;
    int V = m->config.vocab_size, st = evb_state_alloc(m, 1, WIN, &s);
    for (int i = 0; !st && i < N_WIN; i++) {
        st = evb_forward(m, s, win + i * WIN, 1, WIN);
        if (st) break;
        evb_log_softmax(s->logits, WIN - 1, V);
        nll[i] = evb_nll_sum(s->logits, win + i * WIN + 1, WIN - 1, V);
    }
    EVB_CHECK(st == 0, "the library's NLL of %d windows", N_WIN);
    evb_state_free(s);
}

/* Exports m to GGUF in F32 and, where the judge is built, compares llama.cpp's NLL per window with the
 * library's. */
static void check_gguf(const evb_model *m, const char *name, const char *what) {
    char path[800], wpath[800], cmd[3000];
    snprintf(path, sizeof path, "%s/%s.gguf", tmp, name);
    snprintf(wpath, sizeof wpath, "%s/windows.txt", tmp);
    evb_tokenizer *t = NULL;
    evb_tokenizer_vocab v;
    int st = evb_tokenizer_load(DEMO "/tokenizer.json", &t);
    if (!st) st = evb_tokenizer_vocab_export(t, &v);
    evb_gguf_save_options opt = {"F32", name, NULL};
    evb_gguf_export_summary sum;
    if (!st) st = evb_gguf_save(m, NULL, NULL, &v, path, &opt, &sum);
    EVB_CHECK(st == 0 && sum.arch && !strcmp(sum.arch, "deci"), "%s: exported to GGUF as %s (%s)", what,
              st ? "?" : sum.arch, st ? evb_last_error() : "ok");
    if (t) { evb_tokenizer_vocab_free(&v); evb_tokenizer_free(t); }
    if (st) return;
    if (!EVB_LLAMA_JUDGE[0]) {
        printf("SKIP llama.cpp judge not built (./setup.sh installs it): %s not run\n", what);
        return;
    }
    int32_t win[N_WIN * WIN];
    double ours[N_WIN] = {0};
    EVB_CHECK(demo_windows(win, wpath), "%d windows of the demo text", N_WIN);
    library_nll(m, win, ours);
    snprintf(cmd, sizeof cmd, "'%s' nll '%s' '%s' --threads 2 > %s/judge.json 2> %s/judge.err",
             EVB_LLAMA_JUDGE, path, wpath, tmp, tmp);
    int rc = sh(cmd);
    snprintf(cmd, sizeof cmd, "%s/judge.json", tmp);
    json_t *j = json_load_file(cmd, 0, NULL), *per = json_object_get(j, "per_window");
    snprintf(cmd, sizeof cmd, "%s/judge.err", tmp);
    char *err = slurp(cmd);
    double worst = json_array_size(per) == N_WIN ? 0 : INFINITY;
    for (int i = 0; i < N_WIN && json_array_size(per) == N_WIN; i++) {
        double d = fabs(json_number_value(json_array_get(per, i)) - ours[i]) / ours[i];
        if (!(d <= worst)) worst = d;
    }
    EVB_CHECK(rc == 0 && worst <= 1e-4, "%s: llama.cpp loads it and its NLL of each window is the library's "
              "(%.4f vs %.4f on window 0; worst %.3g relative, tol 1e-4) %s", what,
              json_number_value(json_array_get(per, 0)), ours[0], worst, rc ? err : "");
    free(err);
    json_decref(j);
}

/* Qwen2-style q/k/v biases on every block of m (before the levels are made, so that the kept heads take
 * theirs). */
static float *add_qkv_biases(evb_model *m) {
    const evb_config *c = &m->config;
    size_t nb = (size_t)(c->n_heads + 2 * c->n_kv_heads) * c->head_dim;
    float *bias = malloc(sizeof(float) * nb * c->n_layers);
    unsigned seed = 5;
    for (size_t i = 0; i < nb * c->n_layers; i++) bias[i] = 0.5f * frand(&seed);
    m->config.qkv_bias = 1;
    for (int l = 0; l < c->n_layers; l++) {
        m->layers[l].bq = bias + l * nb;
        m->layers[l].bk = m->layers[l].bq + c->n_heads * c->head_dim;
        m->layers[l].bv = m->layers[l].bk + c->n_kv_heads * c->head_dim;
    }
    return bias;
}

// ---- the model saved and loaded ----

/* The structured model's logits computed in bfloat16 (the demo loaded for BF16 compute, SPECS applied), the
 * reference of the BF16 loads: a structured checkpoint loaded for BF16 compute holds the same bfloat16
 * weights. NULL where this CPU has no BF16 compute. */
static float *bf16_reference(const int32_t *tok) {
    if (evb_compute_missing()) { printf("SKIP bfloat16 compute: %s\n", evb_compute_missing()); return NULL; }
    evb_model *m = NULL;
    EVB_CHECK(evb_model_load_as(DEMO, EVB_COMPUTE_BF16, &m) == 0, "the demo model loads for BF16 compute");
    if (!m) return NULL;
    evb_block_level *bl[N_SPEC];
    float *bias[N_SPEC], *ref = malloc(sizeof(float) * B * T * m->config.vocab_size);
    EVB_CHECK(apply_specs(m, bl, bias) == 0, "the structured levels apply in bfloat16");
    logits_of(m, tok, ref);
    for (int i = 0; i < N_SPEC; i++) { evb_block_level_free(bl[i]); free(bias[i]); }
    evb_model_free(m);
    return ref;
}

static void save_and_load(evb_model *m, const int32_t *tok, const float *ref, size_t dense_params) {
    char f32[700], bf16[700];
    snprintf(f32, sizeof f32, "%s/f32", tmp);
    snprintf(bf16, sizeof bf16, "%s/bf16", tmp);
    int st = evb_model_save(m, f32, "F32");
    EVB_CHECK(st == 0, "saved in F32 (%s)", st ? evb_last_error() : "ok");
    check_config(f32, m);
    check_load(f32, EVB_COMPUTE_F32, m, ref, tok, 1e-5, "F32 save, float32 load");
    evb_model *b = NULL;
    if (evb_model_load(f32, &b) == 0) {
        size_t want = expected_params(m, dense_params);
        EVB_CHECK(evb_model_n_params(b) == want,
                  "the loaded model counts %zu parameters, what is left of %zu (%zu)", evb_model_n_params(b),
                  dense_params, want);
        char sub[700];
        snprintf(sub, sizeof sub, "%s/again", tmp);
        st = evb_model_save(b, sub, "F32");
        EVB_CHECK(st == 0 && fixture_same_files(f32, sub),
                  "the loaded model saved again gives the same files");
        evb_model_free(b);
    }
    st = evb_model_save(m, bf16, "BF16");
    EVB_CHECK(st == 0, "saved in BF16 (%s)", st ? evb_last_error() : "ok");
    check_load(bf16, EVB_COMPUTE_F32, m, ref, tok, 0.15, "BF16 save, float32 load (weights rounded)");
    float *ref16 = bf16_reference(tok);
    if (ref16) {
        check_load(f32, EVB_COMPUTE_BF16, m, ref16, tok, 1e-4, "F32 save, bfloat16 load");
        /* the BF16 file rounds the norms and biases as well, which the bfloat16 model holds in float32 */
        check_load(bf16, EVB_COMPUTE_BF16, m, ref16, tok, 0.15,
                   "BF16 save, bfloat16 load (weights in place)");
        double d = evb_test_max_abs_diff(ref16, ref, (size_t)B * T * m->config.vocab_size);
        EVB_CHECK(d < 0.25, "the bfloat16 structured model is close to the float32 one (max diff %.3g)", d);
    }
    free(ref16);
    malformed(f32, m);
}

int main(void) {
    char *dir = fixture_tmpdir();
    snprintf(tmp, sizeof tmp, "%s", dir);
    evb_model *m = NULL;
    EVB_CHECK(evb_model_load(DEMO, &m) == 0, "load the demo model (%s)", evb_last_error());
    if (!m) return evb_test_summary();
    size_t nl = (size_t)B * T * m->config.vocab_size, dense_params = evb_model_n_params(m);
    int32_t tok[B * T];
    unsigned seed = 3;
    for (int i = 0; i < B * T; i++) tok[i] = rand_r(&seed) % m->config.vocab_size;
    float *ref = malloc(sizeof(float) * nl), *dense = malloc(sizeof(float) * nl), *bias[N_SPEC];
    evb_block_level *bl[N_SPEC];
    logits_of(m, tok, dense);
    EVB_CHECK(apply_specs(m, bl, bias) == 0, "the structured levels apply (%s)", evb_last_error());
    logits_of(m, tok, ref);
    EVB_CHECK(evb_test_max_abs_diff(ref, dense, nl) > 0.1, "the structure changes the logits (max diff %.3g)",
              evb_test_max_abs_diff(ref, dense, nl));
    save_and_load(m, tok, ref, dense_params);
    check_gguf(m, "structured", "the structured demo model");
    for (int i = 0; i < N_SPEC; i++) { evb_block_level_free(bl[i]); free(bias[i]); }
    evb_model_free(m);

    /* Qwen2-style biases: the kept heads' q/k/v biases saved, loaded, and in GGUF permuted with their
     * rows. */
    EVB_CHECK(evb_model_load(DEMO, &m) == 0, "load the demo model again");
    float *qkv = add_qkv_biases(m);
    EVB_CHECK(apply_specs(m, bl, bias) == 0, "the structured levels apply with q/k/v biases");
    logits_of(m, tok, ref);
    char qdir[700];
    snprintf(qdir, sizeof qdir, "%s/qkv", tmp);
    int st = evb_model_save(m, qdir, "F32");
    EVB_CHECK(st == 0, "saved with q/k/v biases (%s)", st ? evb_last_error() : "ok");
    /* config.json says llama, whose loader ignores q/k/v biases: it is told qwen2 (q/k/v biases, rotate-half
     * rows). */
    char p[800];
    snprintf(p, sizeof p, "%s/config.json", qdir);
    json_t *j = json_load_file(p, 0, NULL);
    json_object_set_new(j, "model_type", json_string("qwen2"));
    json_dump_file(j, p, JSON_INDENT(2));
    json_decref(j);
    check_load(qdir, EVB_COMPUTE_F32, m, ref, tok, 1e-5, "q/k/v biases, F32 save, float32 load");
    check_gguf(m, "structured_qkv", "the structured demo model with q/k/v biases");
    for (int i = 0; i < N_SPEC; i++) { evb_block_level_free(bl[i]); free(bias[i]); }
    evb_model_free(m);
    free(qkv); free(ref); free(dense);
    fixture_rmdir(dir);
    free(dir);
    return evb_test_summary();
}
