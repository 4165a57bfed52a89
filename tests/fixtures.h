/* fixtures.h -- test fixtures written by the tests themselves: a loaded model exported to a Hugging Face
 * directory (config.json + safetensors, optionally sharded, in F32/F16/BF16), with the rotate-half
 * permutation of q and k that Hugging Face's Llama conversion applies to llama2.c-style weights. */
#ifndef EVB_FIXTURES_H
#define EVB_FIXTURES_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "evobudget/evb_model.h"
#include "models/safetensors.h"

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

/* Row permutation of Hugging Face's convert_llama_weights_to_hf: within each head, row 2i + p moves to
 * p E/2 + i, so that adjacent-pair rotation becomes rotate-half. Writes a permuted copy of w [heads E, cols]. */
static inline float *fixture_permute(const float *w, int heads, int E, int cols) {
    float *out = malloc(sizeof(float) * heads * E * cols);
    for (int h = 0; h < heads; h++)
        for (int i = 0; i < E / 2; i++)
            for (int p = 0; p < 2; p++)
                memcpy(out + ((size_t)h * E + p * (E / 2) + i) * cols, w + ((size_t)h * E + 2 * i + p) * cols, sizeof(float) * cols);
    return out;
}

/* Writes dir/config.json and dir/model.safetensors (or n_shards shards plus the index). permute: apply the
 * rotate-half permutation (for llama2.c sources). arch: "llama", "mistral" or "qwen2". */
static inline int fixture_write_hf(const evb_model *m, const char *dir, const char *dtype, int n_shards,
                                   int permute, const char *arch) {
    const evb_config *c = &m->config;
    char path[1024];
    json_t *cfg = json_pack("{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:b, s:i, s:i, s:s, s:s}",
        "architectures", "LlamaForCausalLM", "model_type", arch, "hidden_size", c->dim, "intermediate_size", c->hidden_dim,
        "num_hidden_layers", c->n_layers, "num_attention_heads", c->n_heads, "num_key_value_heads", c->n_kv_heads,
        "vocab_size", c->vocab_size, "max_position_embeddings", c->max_seq_len, "rms_norm_eps", (double)c->norm_eps,
        "rope_theta", (double)c->rope_theta, "tie_word_embeddings", c->tied, "bos_token_id", 1, "eos_token_id", 2,
        "torch_dtype", "float32", "hidden_act", "silu");
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (json_dump_file(cfg, path, JSON_INDENT(2))) return 1;
    json_decref(cfg);
    int n_max = 4 + c->n_layers * 12, n = 0;
    evb_st_out *t = calloc(n_max, sizeof *t);
    char (*names)[96] = calloc(n_max, 96);
    float **owned = calloc(n_max, sizeof *owned);
    int n_owned = 0;
#define ADD(nm, d0, d1, ptr) do { snprintf(names[n], 96, "%s", nm); t[n].name = names[n]; t[n].dtype = dtype;       \
        t[n].ndim = (d1) ? 2 : 1; t[n].shape[0] = d0; t[n].shape[1] = d1; t[n].data = ptr; n++; } while (0)
    ADD("model.embed_tokens.weight", c->vocab_size, c->dim, m->tok_emb);
    for (int l = 0; l < c->n_layers; l++) {
        const evb_layer *L = &m->layers[l];
        char nm[96];
        snprintf(nm, sizeof nm, "model.layers.%d.input_layernorm.weight", l); ADD(nm, c->dim, 0, L->rms_att);
        snprintf(nm, sizeof nm, "model.layers.%d.post_attention_layernorm.weight", l); ADD(nm, c->dim, 0, L->rms_ffn);
        for (int k = 0; k < EVB_LINEAR_COUNT; k++) {
            int r, cc;
            evb_model_unit_shape(m, l * EVB_LINEAR_COUNT + k, &r, &cc);
            const float *w = L->w[k];
            if (permute && (k == EVB_LINEAR_Q || k == EVB_LINEAR_K))
                w = owned[n_owned++] = fixture_permute(w, k == EVB_LINEAR_Q ? c->n_heads : c->n_kv_heads, c->head_dim, cc);
            snprintf(nm, sizeof nm, "model.layers.%d.%s.%s.weight", l, k < 4 ? "self_attn" : "mlp", evb_linear_name(k));
            ADD(nm, r, cc, w);
        }
        if (L->bq) {
            const float *b[3] = {L->bq, L->bk, L->bv};
            for (int k = 0; k < 3; k++) {
                int r, cc;
                evb_model_unit_shape(m, l * EVB_LINEAR_COUNT + k, &r, &cc);
                snprintf(nm, sizeof nm, "model.layers.%d.self_attn.%s.bias", l, evb_linear_name(k));
                ADD(nm, r, 0, b[k]);
            }
        }
    }
    ADD("model.norm.weight", c->dim, 0, m->rms_final);
    if (!c->tied) ADD("lm_head.weight", c->vocab_size, c->dim, m->cls);
#undef ADD
    int rc = 0;
    if (n_shards <= 1) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        rc = evb_st_write(path, t, n, "{\"format\":\"pt\"}");
    } else {
        json_t *map = json_object();
        for (int s = 0; s < n_shards && !rc; s++) {
            int a = n * s / n_shards, b = n * (s + 1) / n_shards;
            char file[64];
            snprintf(file, sizeof file, "model-%05d-of-%05d.safetensors", s + 1, n_shards);
            snprintf(path, sizeof path, "%s/%s", dir, file);
            rc = evb_st_write(path, t + a, b - a, NULL);
            for (int i = a; i < b; i++) json_object_set_new(map, t[i].name, json_string(file));
        }
        json_t *idx = json_pack("{s:{}, s:o}", "metadata", "weight_map", map);
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
        if (!rc) rc = json_dump_file(idx, path, JSON_INDENT(2));
        json_decref(idx);
    }
    for (int i = 0; i < n_owned; i++) free(owned[i]);
    free(owned); free(names); free(t);
    return rc;
}

/* Whether dir/name exists (a link counts as itself, not its target). */
static inline int fixture_exists(const char *dir, const char *name) {
    char p[1400];
    struct stat sb;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return lstat(p, &sb) == 0;
}

/* A fresh temporary directory (caller removes it with fixture_rmdir). */
/* How many entries of dir have names starting with prefix. */
static inline int fixture_count_prefix(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    if (d) closedir(d);
    return n;
}

static inline char *fixture_tmpdir(void) {
    char *d = strdup("/tmp/evb_test_XXXXXX");
    return mkdtemp(d);
}

/* 1 when directories a and b hold files of the same names and bytes (one level, no subdirectories), read
 * here rather than through diff(1), so that no path reaches a shell. */
static inline int fixture_same_files(const char *a, const char *b) {
    int same = 1, n_a = 0, n_b = 0;
    char pa[2048], pb[2048];
    DIR *d = opendir(a), *e = opendir(b);
    struct dirent *de;
    while (same && d && e && (de = readdir(e))) n_b += de->d_name[0] != '.';
    while (same && d && e && (de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        n_a++;
        snprintf(pa, sizeof pa, "%s/%s", a, de->d_name);
        snprintf(pb, sizeof pb, "%s/%s", b, de->d_name);
        FILE *fa = fopen(pa, "rb"), *fb = fopen(pb, "rb");
        int ca = 0, cb = 0;
        same = fa && fb;
        while (same && (ca = fgetc(fa)) == (cb = fgetc(fb)) && ca != EOF) {}
        same = same && ca == cb;
        if (fa) fclose(fa);
        if (fb) fclose(fb);
    }
    if (d) closedir(d);
    if (e) closedir(e);
    return d && e && same && n_a == n_b;
}

static inline void fixture_rmdir(const char *dir) {
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}
#endif
