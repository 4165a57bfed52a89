/* save.c -- writing a model as a Hugging Face directory (see evb_model_save in evb_model.h). */
#define _DEFAULT_SOURCE
#include "evobudget/evb_model.h"
#include "evobudget/evb_status.h"
#include "core/fileio.h"
#include "core/json.h"
#include "models/safetensors.h"
#include "models/save.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int evb_model_hf_config(const evb_model *m, const char *dtype, json_t **out) {
    const evb_config *c = &m->config;
    json_t *j = NULL;
    if (strcmp(c->format, "hf") == 0) {
        char path[1300];
        snprintf(path, sizeof path, "%s/config.json", m->path);
        int s = evb_json_load_file(path, &j);
        if (s) return s;
    } else {
        const char *arch = strcmp(c->arch, "qwen2") == 0 ? "Qwen2ForCausalLM" : strcmp(c->arch, "mistral") == 0 ? "MistralForCausalLM" : "LlamaForCausalLM";
        j = json_pack("{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:b, s:s, s:b, s:b}",
                      "architectures", arch, "model_type", c->arch, "hidden_size", c->dim, "intermediate_size", c->hidden_dim,
                      "num_hidden_layers", c->n_layers, "num_attention_heads", c->n_heads, "num_key_value_heads", c->n_kv_heads,
                      "vocab_size", c->vocab_size, "max_position_embeddings", c->max_seq_len, "rms_norm_eps", (double)c->norm_eps,
                      "rope_theta", (double)c->rope_theta, "tie_word_embeddings", c->tied, "hidden_act", "silu",
                      "attention_bias", 0, "mlp_bias", 0);
        if (!j) EVB_ERROR("out of memory building config.json", EVB_ENOMEM);
        if (c->head_dim * c->n_heads != c->dim) json_object_set_new(j, "head_dim", json_integer(c->head_dim));
        if (c->bos_id >= 0) json_object_set_new(j, "bos_token_id", json_integer(c->bos_id));
        if (c->eos_id >= 0) json_object_set_new(j, "eos_token_id", json_integer(c->eos_id));
    }
    const char *torch = strcmp(dtype, "F16") == 0 ? "float16" : strcmp(dtype, "BF16") == 0 ? "bfloat16" : "float32";
    json_object_set_new(j, "torch_dtype", json_string(torch));
    json_t *dropped = json_array();
    for (int l = 0; l < c->n_layers; l++) {
        const evb_layer *L = &m->layers[l];
        if (L->skip_attn || L->dropped_attn) json_array_append_new(dropped, json_pack("{s:i, s:s}", "block", l, "sub", "attn"));
        if (L->skip_mlp || L->dropped_mlp) json_array_append_new(dropped, json_pack("{s:i, s:s}", "block", l, "sub", "mlp"));
    }
    if (json_array_size(dropped)) json_object_set_new(j, "evobudget_dropped", dropped);
    else { json_decref(dropped); json_object_del(j, "evobudget_dropped"); }
    *out = j;
    return EVB_SUCCESS;
}

static int save_config(const evb_model *m, const char *dir, const char *dtype) {
    json_t *j;
    int s = evb_model_hf_config(m, dtype, &j);
    if (s) return s;
    char path[1300];
    snprintf(path, sizeof path, "%s/config.json", dir);
    s = evb_json_write_file(path, j, 2);
    json_decref(j);
    return s;
}

/* llama2.c rotates adjacent pairs (2i, 2i+1) of each head; Hugging Face rotates (i, i + E/2) with the same
 * frequency. Row h E + i of the saved weight is row h E + 2 i of w, row h E + E/2 + i is row h E + 2 i + 1. */
static void permute_rope_rows(float *dst, const float *w, int heads, int E, int cols) {
    for (int h = 0; h < heads; h++)
        for (int i = 0; i < E / 2; i++) {
            memcpy(dst + ((size_t)h * E + i) * cols, w + ((size_t)h * E + 2 * i) * cols, sizeof(float) * cols);
            memcpy(dst + ((size_t)h * E + E / 2 + i) * cols, w + ((size_t)h * E + 2 * i + 1) * cols, sizeof(float) * cols);
        }
}

int evb_model_save(const evb_model *m, const char *dir, const char *dtype) {
    const evb_config *c = &m->config;
    if (!dtype) dtype = c->dtype[0] ? c->dtype : "F32";
    if (strcmp(dtype, "F32") && strcmp(dtype, "F16") && strcmp(dtype, "BF16"))
        EVB_ERRORF(EVB_EINVAL, "dtype '%s' cannot be written (F32, F16, BF16 can)", dtype);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        int e = errno;
        EVB_ERRORF(EVB_EIO, "%s: cannot create: %s%s", dir, strerror(e), evb_write_hint(e));
    }
    int L = c->n_layers, E = c->head_dim, permute = !c->rope_halves;
    int n = 1 + L * (2 + EVB_LINEAR_COUNT + 3 * c->qkv_bias) + 1 + !c->tied;
    evb_st_out *t = calloc((size_t)n, sizeof *t);
    char (*names)[96] = calloc((size_t)n, sizeof *names);
    /* Scratch: the permuted q and k of every layer, and one zero buffer for the dropped sub-blocks. */
    size_t max_lin = 0, n_perm = 0;
    for (int k = 0; k < EVB_LINEAR_COUNT; k++) {
        int r, cc;
        evb_model_unit_shape(m, k, &r, &cc);
        if ((size_t)r * cc > max_lin) max_lin = (size_t)r * cc;
        if (permute && (k == EVB_LINEAR_Q || k == EVB_LINEAR_K)) n_perm += (size_t)r * cc * L;
    }
    float *perm = malloc(sizeof(float) * (n_perm ? n_perm : 1)), *zero = calloc(max_lin, sizeof(float));
    if (!t || !names || !perm || !zero) { free(t); free(names); free(perm); free(zero); EVB_ERROR("out of memory saving a model", EVB_ENOMEM); }
    int i = 0;
    float *pp = perm;
#define ADD(nm, nd, d0, d1, ptr) do { t[i].name = names[i]; snprintf(names[i], sizeof names[i], "%s", nm); t[i].dtype = dtype; \
        t[i].ndim = nd; t[i].shape[0] = d0; t[i].shape[1] = d1; t[i].data = ptr; i++; } while (0)
    ADD("model.embed_tokens.weight", 2, c->vocab_size, c->dim, m->tok_emb);
    char name[96];
    for (int l = 0; l < L; l++) {
        const evb_layer *ly = &m->layers[l];
        int drop_attn = ly->skip_attn || ly->dropped_attn, drop_mlp = ly->skip_mlp || ly->dropped_mlp;
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
        ADD(name, 1, c->dim, 0, ly->rms_att);
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
        ADD(name, 1, c->dim, 0, ly->rms_ffn);
        for (int k = 0; k < EVB_LINEAR_COUNT; k++) {
            int r, cc;
            evb_model_unit_shape(m, k, &r, &cc);
            const float *w = ly->w[k];
            if (k < 4 ? drop_attn : drop_mlp) w = zero;
            else if (permute && (k == EVB_LINEAR_Q || k == EVB_LINEAR_K)) {
                permute_rope_rows(pp, w, k == EVB_LINEAR_Q ? c->n_heads : c->n_kv_heads, E, cc);
                w = pp;
                pp += (size_t)r * cc;
            }
            snprintf(name, sizeof name, "model.layers.%d.%s.%s.weight", l, k < 4 ? "self_attn" : "mlp", evb_linear_name(k));
            ADD(name, 2, r, cc, w);
        }
        if (c->qkv_bias) { /* Qwen2 is read from Hugging Face files only, so its rows need no permutation */
            const float *b[3] = {ly->bq, ly->bk, ly->bv};
            for (int k = 0; k < 3; k++) {
                int r, cc;
                evb_model_unit_shape(m, k, &r, &cc);
                snprintf(name, sizeof name, "model.layers.%d.self_attn.%s.bias", l, evb_linear_name(k));
                ADD(name, 1, r, 0, drop_attn ? zero : b[k]);
            }
        }
    }
    ADD("model.norm.weight", 1, c->dim, 0, m->rms_final);
    if (!c->tied) ADD("lm_head.weight", 2, c->vocab_size, c->dim, m->cls);
#undef ADD
    EVB_ASSERT(i == n);
    char path[1300];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    int s = evb_st_write(path, t, n, "{\"format\": \"pt\"}");
    free(t); free(names); free(perm); free(zero);
    if (!s) s = save_config(m, dir, dtype);
    return s;
}
