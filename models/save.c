/* save.c -- writing a model as a Hugging Face directory (see evb_model_save in evb_model.h).
 *
 * A structured block (evb_block_level applied, or loaded so; or one with o/down compensation biases) is
 * written at the shapes it computes with: q_proj [heads E, D], k_proj and v_proj [kv_heads E, D], o_proj
 * [D, heads E], gate_proj and up_proj [ffn, D], down_proj [D, ffn] (no rows or columns where it keeps none),
 * its kept q/k/v biases, and self_attn.o_proj.bias / mlp.down_proj.bias [D] when it has them. config.json
 * lists it under "evobudget_structure" ([{"block": l, "heads": h, "kv_heads": g, "ffn": f}]), which
 * evb_model_load reads. Such a checkpoint is evobudget's own: a Hugging Face reader expects the
 * configuration's shapes in every block. */
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

/* A block is saved structured when it computes at smaller shapes or adds o or down biases: config.json lists
 * it under "evobudget_structure" with the heads, key/value heads and MLP channels it has. */
static int saves_structured(const evb_layer *L) { return L->structured || L->b_o || L->b_down; }

static json_t *structure_json(const evb_model *m) {
    const evb_config *c = &m->config;
    json_t *a = json_array();
    for (int l = 0; a && l < c->n_layers; l++) {
        const evb_layer *L = &m->layers[l];
        if (!saves_structured(L)) continue;
        int s = L->structured;
        json_array_append_new(a, json_pack("{s:i, s:i, s:i, s:i}", "block", l,
                                           "heads", s ? L->heads : c->n_heads,
                                           "kv_heads", s ? L->kv_heads : c->n_kv_heads,
                                           "ffn", s ? L->ffn : c->hidden_dim));
    }
    return a;
}

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
    json_t *structure = structure_json(m);
    if (json_array_size(structure)) json_object_set_new(j, "evobudget_structure", structure);
    else { json_decref(structure); json_object_del(j, "evobudget_structure"); }
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

// ---- the tensors ----

/* The tensors of one save, float32 data converted to dtype on the way out. */
typedef struct save_list {
    evb_st_out *t;
    char (*names)[96];
    int n, cap;
    const char *dtype;
} save_list;

static void add(save_list *s, const char *name, int ndim, int64_t d0, int64_t d1, const float *data) {
    EVB_ASSERT(s->n < s->cap);
    evb_st_out *t = &s->t[s->n];
    snprintf(s->names[s->n], sizeof s->names[0], "%s", name);
    t->name = s->names[s->n]; t->dtype = s->dtype; t->ndim = ndim;
    t->shape[0] = d0; t->shape[1] = d1; t->data = data;
    s->n++;
}

/* Block l's biases: q/k/v (Qwen2; the kept heads' of a structured block), and a structured block's o and down
 * biases. A dropped sub-block's are zeros. */
static void add_biases(save_list *s, const evb_model *m, int l, const float *zero) {
    const evb_layer *ly = &m->layers[l];
    int D = m->config.dim, drop_attn = ly->skip_attn || ly->dropped_attn;
    int drop_mlp = ly->skip_mlp || ly->dropped_mlp;
    char name[96];
    if (m->config.qkv_bias) { /* Qwen2 is read from Hugging Face files only: its rows need no permutation */
        const float *b[3] = {ly->bq_kept ? ly->bq_kept : ly->bq, ly->bk_kept ? ly->bk_kept : ly->bk,
                             ly->bv_kept ? ly->bv_kept : ly->bv};
        for (int k = 0; k < 3; k++) {
            int r, cc;
            evb_model_unit_shape(m, l * EVB_LINEAR_COUNT + k, &r, &cc);
            snprintf(name, sizeof name, "model.layers.%d.self_attn.%s.bias", l, evb_linear_name(k));
            add(s, name, 1, r, 0, drop_attn ? zero : b[k]);
        }
    }
    snprintf(name, sizeof name, "model.layers.%d.self_attn.o_proj.bias", l);
    if (ly->b_o) add(s, name, 1, D, 0, drop_attn ? zero : ly->b_o);
    snprintf(name, sizeof name, "model.layers.%d.mlp.down_proj.bias", l);
    if (ly->b_down) add(s, name, 1, D, 0, drop_mlp ? zero : ly->b_down);
}

/* Block l's norms, linear layers at the shapes it computes with (q and k rows permuted per kept head into
 * *perm for a llama2.c model; zeros for a dropped sub-block) and biases. */
static void add_layer(save_list *s, const evb_model *m, int l, const float *zero, float **perm) {
    const evb_config *c = &m->config;
    const evb_layer *ly = &m->layers[l];
    int drop_attn = ly->skip_attn || ly->dropped_attn, drop_mlp = ly->skip_mlp || ly->dropped_mlp;
    char name[96];
    snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
    add(s, name, 1, c->dim, 0, ly->rms_att);
    snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
    add(s, name, 1, c->dim, 0, ly->rms_ffn);
    for (int k = 0; k < EVB_LINEAR_COUNT; k++) {
        int r, cc;
        evb_model_unit_shape(m, l * EVB_LINEAR_COUNT + k, &r, &cc);
        const float *w = ly->w[k];
        if (k < 4 ? drop_attn : drop_mlp) w = zero;
        else if (!c->rope_halves && (k == EVB_LINEAR_Q || k == EVB_LINEAR_K)) {
            permute_rope_rows(*perm, w, r / c->head_dim, c->head_dim, cc);
            w = *perm;
            *perm += (size_t)r * cc;
        }
        snprintf(name, sizeof name, "model.layers.%d.%s.%s.weight", l, k < 4 ? "self_attn" : "mlp",
                 evb_linear_name(k));
        add(s, name, 2, r, cc, w);
    }
    add_biases(s, m, l, zero);
}

int evb_model_save(const evb_model *m, const char *dir, const char *dtype) {
    const evb_config *c = &m->config;
    if (!dtype) dtype = c->dtype[0] ? c->dtype : "F32";
    if (strcmp(dtype, "F32") && strcmp(dtype, "F16") && strcmp(dtype, "BF16"))
        EVB_ERRORF(EVB_EINVAL, "dtype '%s' cannot be written (F32, F16, BF16 can)", dtype);
    if (!m->tok_emb)
        EVB_ERROR("saving needs the model's weights in float32 (hint: load it with --compute f32)",
                  EVB_EINVAL);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        int e = errno;
        EVB_ERRORF(EVB_EIO, "%s: cannot create: %s%s", dir, strerror(e), evb_write_hint(e));
    }
    int L = c->n_layers, cap = 1 + L * (2 + EVB_LINEAR_COUNT + 3 + 2) + 2;
    /* Scratch: the permuted q and k of every layer, and one zero buffer for the dropped sub-blocks. */
    size_t max_lin = (size_t)c->dim, n_perm = 0;
    for (int u = 0; u < L * EVB_LINEAR_COUNT; u++) {
        int r, cc, k = u % EVB_LINEAR_COUNT;
        evb_model_unit_shape(m, u, &r, &cc);
        if ((size_t)r * cc > max_lin) max_lin = (size_t)r * cc;
        if (!c->rope_halves && (k == EVB_LINEAR_Q || k == EVB_LINEAR_K)) n_perm += (size_t)r * cc;
    }
    save_list s = {calloc((size_t)cap, sizeof *s.t), calloc((size_t)cap, sizeof *s.names), 0, cap, dtype};
    float *perm = malloc(sizeof(float) * (n_perm ? n_perm : 1)), *zero = calloc(max_lin, sizeof(float));
    float *pp = perm;
    if (!s.t || !s.names || !perm || !zero) {
        free(s.t); free(s.names); free(perm); free(zero);
        EVB_ERROR("out of memory saving a model", EVB_ENOMEM);
    }
    add(&s, "model.embed_tokens.weight", 2, c->vocab_size, c->dim, m->tok_emb);
    for (int l = 0; l < L; l++) add_layer(&s, m, l, zero, &pp);
    add(&s, "model.norm.weight", 1, c->dim, 0, m->rms_final);
    if (!c->tied) add(&s, "lm_head.weight", 2, c->vocab_size, c->dim, m->cls);
    char path[1300];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    int st = evb_st_write(path, s.t, s.n, "{\"format\": \"pt\"}");
    free(s.t); free(s.names); free(perm); free(zero);
    if (!st) st = save_config(m, dir, dtype);
    return st;
}
