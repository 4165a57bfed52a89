/* evb_model.h -- transformer checkpoints and the batched forward pass.
 *
 * A model is read from a Hugging Face directory (config.json plus model.safetensors or a sharded set with
 * model.safetensors.index.json; F32, F16, BF16) or from a llama2.c .bin file. Llama, Mistral and Qwen2
 * configurations are understood (grouped-query attention, rope_theta, tied or untied embeddings, q/k/v
 * biases). Weights are held in one of two ways, chosen at load (evb_compute):
 *   float32 (EVB_COMPUTE_F32): every weight converted into one float32 arena; products through OpenBLAS.
 *   bfloat16 (EVB_COMPUTE_BF16): the embedding, the classifier and the linear layers stay bfloat16, pointing
 *     into the memory-mapped checkpoint when it is BF16 (no copy), converted once otherwise; norms and biases
 *     are float32. Projections run through oneDNN with bfloat16 inputs and float32 accumulation and output;
 *     norms, rotary embeddings, softmax, SiLU, attention and log-softmax stay float32. Needs a CPU with
 *     AVX512-BF16 or AMX-BF16 (evb_compute_missing).
 *
 * Names: B = sequences in a batch, T = positions per sequence, D = dim, F = hidden (MLP) dim,
 * V = vocab size, L = layers, H = query heads, G = key/value heads, E = head dim.
 *
 * The compressible units of a model are its linear layers, U = 7 L, numbered l * 7 + kind with kind in
 * evb_linear_kind order. */
#ifndef EVB_MODEL_H
#define EVB_MODEL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum evb_linear_kind {
    EVB_LINEAR_Q = 0, EVB_LINEAR_K, EVB_LINEAR_V, EVB_LINEAR_O,
    EVB_LINEAR_GATE, EVB_LINEAR_UP, EVB_LINEAR_DOWN,
    EVB_LINEAR_COUNT
} evb_linear_kind;

/* "q_proj", "k_proj", ... */
const char *evb_linear_name(evb_linear_kind kind);

/* How a model holds its weights and computes its products. AUTO: BF16 where the CPU has AVX512-BF16 or
 * AMX-BF16, else F32. */
typedef enum evb_compute { EVB_COMPUTE_AUTO = 0, EVB_COMPUTE_F32 = 1, EVB_COMPUTE_BF16 = 2 } evb_compute;

/* "auto", "f32", "bf16" */
const char *evb_compute_name(evb_compute c);
/* Parses "auto", "f32" or "bf16"; -1 for anything else. */
int evb_compute_parse(const char *s);
/* What AUTO means on this CPU (F32 or BF16). */
evb_compute evb_compute_resolve(evb_compute c);
/* NULL when BF16 compute is available here, else a sentence naming the missing instruction set. */
const char *evb_compute_missing(void);
/* oneDNN's kernel for BF16 projections on this CPU ("brg:avx512_core_amx_bf16", ...). */
const char *evb_compute_kernel(void);

typedef struct evb_config {
    char  arch[32];      /* "llama", "mistral", "qwen2" */
    char  format[16];    /* "hf" or "llama2c" */
    int   dim;           /* D */
    int   hidden_dim;    /* F */
    int   n_layers;      /* L */
    int   n_heads;       /* H */
    int   n_kv_heads;    /* G, divides H */
    int   head_dim;      /* E = D / H */
    int   vocab_size;    /* V */
    int   max_seq_len;   /* positions the model was trained for */
    float rope_theta;
    float norm_eps;
    int   rope_halves;   /* 1: rotate halves (HF), 0: adjacent pairs (llama2.c) */
    int   tied;          /* 1: the classifier is the token embedding */
    int   qkv_bias;      /* 1: q/k/v projections carry biases (Qwen2) */
    int   bos_id, eos_id;/* -1 when unknown */
    char  dtype[8];      /* the checkpoint's weight dtype: "F32", "F16" or "BF16" */
} evb_config;

typedef struct evb_layer {
    float *rms_att;              /* [D] */
    float *rms_ffn;              /* [D] */
    /* w[kind] is the weight of that linear layer in nn.Linear layout [out, in]:
     * q [H E, D], k [G E, D], v [G E, D], o [D, H E], gate [F, D], up [F, D], down [D, F].
     * The pointers may be swapped for other buffers of the same shape (evb_model_set_weight). */
    const float *w[EVB_LINEAR_COUNT];
    float *w_dense[EVB_LINEAR_COUNT]; /* the loaded weights, never changed */
    /* The BF16 path's weights (NULL in a float32 model, where w and w_dense are used; in a BF16 model those
     * are NULL unless a float32 weight was set with evb_model_set_weight, whose buffer w then names). */
    const uint16_t *w16[EVB_LINEAR_COUNT];
    const uint16_t *w16_dense[EVB_LINEAR_COUNT];
    float *bq, *bk, *bv;         /* [H E], [G E], [G E] or NULL */
    int skip_attn, skip_mlp;     /* 1: the sub-block is dropped (the residual passes through) */
    /* Structured removal (evb_block_level): with structured 1 the block runs with heads query heads, kv_heads
     * key/value heads (whole groups: heads = kv_heads H / G) and ffn MLP channels, and its weights have those
     * smaller shapes: q [heads E, D], k and v [kv_heads E, D], o [D, heads E], gate and up [ffn, D], down
     * [D, ffn]; b_o and b_down (each [D] or NULL) are added to the o and down outputs (the removed channels'
     * compensation). structured 0: the configuration's shapes, no such biases. */
    int structured;
    int heads, kv_heads, ffn;
    const float *b_o, *b_down;
    int dropped_attn, dropped_mlp; /* 1: dropped in the checkpoint itself (config.json's "evobudget_dropped",
                                    * written by evb_model_save): skipped whatever skip_* says */
    const float *bq_kept, *bk_kept,
            *bv_kept; /* structured attention of a Qwen2 model: the kept q/k/v biases */
} evb_layer;

typedef struct evb_model {
    evb_config config;
    int compute;          /* EVB_COMPUTE_F32 or EVB_COMPUTE_BF16 (never AUTO once loaded) */
    float *tok_emb;       /* [V, D]; NULL in a BF16 model */
    float *rms_final;     /* [D] */
    float *cls;           /* [V, D]; equals tok_emb when tied; NULL in a BF16 model */
    const uint16_t *tok_emb16, *cls16; /* the BF16 model's embedding and classifier (equal when tied) */
    evb_layer *layers;    /* [L] */
    float *arena;         /* the allocation all float32 weights live in */
    size_t n_arena;       /* floats in the arena */
    size_t n_params;      /* parameters, a tied classifier counted once */
    uint16_t *arena16;    /* BF16 model: the weights that had to be converted (NULL when all are mapped) */
    uint16_t **swap16;    /* BF16 model: [7 L] bfloat16 copies of weights set with evb_model_set_weight, made on
                           * first use */
    void *mapped;         /* BF16 model: the checkpoint's mapping the weights point into (private) */
    char fingerprint[17]; /* BF16 model converted from other values: the fingerprint of those (evb_db.h) */
    char path[1200];       /* where it was loaded from */
    char tokenizer_path[1200]; /* the tokenizer beside the model, "" if none was found */
} evb_model;

/* Loads a model from a directory (Hugging Face layout) or a llama2.c .bin file. Every header field, offset
 * and shape is validated against the file size and config.json before data is touched; on error returns
 * EVB_EIO / EVB_EFORMAT with a message naming the file and the problem. Free with evb_model_free. */
int  evb_model_load(const char *path, evb_model **out);
/* The same, holding the weights as compute says (AUTO resolved here). EVB_COMPUTE_BF16 on a CPU without
 * BF16 products is EVB_EINVAL with evb_compute_missing's reason. evb_model_load is EVB_COMPUTE_F32. */
int  evb_model_load_as(const char *path, evb_compute compute, evb_model **out);
/* The tokenizer a model at path would load (tokenizer_path), found without reading the weights; "" if none.
 * EVB_EIO when path does not exist. */
int  evb_model_find_tokenizer(const char *path, char *out, size_t n);
void evb_model_free(evb_model *m);

/* Writes the model as a Hugging Face directory dir (created if missing): config.json and model.safetensors
 * with the weights the model computes with now (m->layers[l].w, so compressed weights swapped in with
 * evb_model_set_weight are what is saved) in dtype ("F32", "F16", "BF16"; NULL: the checkpoint's own).
 * config.json is the source's config.json with torch_dtype updated when m came from a Hugging Face
 * directory, and a Llama configuration for a llama2.c model (whose q and k rows are permuted from
 * llama2.c's adjacent-pair rotary layout to the rotate-halves one, so the saved model computes the same
 * function). Sub-blocks marked skip_* or dropped_* are written with zero weights, so that any Llama reader
 * computes the same function, and listed in config.json under "evobudget_dropped" ([{"block": l, "sub":
 * "attn" | "mlp"}]) so that evb_model_load skips them. Structured blocks (block levels applied) are written
 * at their smaller shapes, with their o_proj/down_proj compensation biases, and listed under
 * "evobudget_structure" ([{"block", "heads", "kv_heads", "ffn"}]), which evb_model_load reads back (a plain
 * Llama reader cannot load such a directory; export --format gguf writes one llama.cpp loads). A model held
 * in BF16 for compute is refused (EVB_EINVAL): load it in float32 to save it. Files go through temporary
 * names. */
int evb_model_save(const evb_model *m, const char *dir, const char *dtype);

/* Parameters counted once (a tied classifier is not counted twice). */
size_t evb_model_n_params(const evb_model *m);
/* Number of compressible units, 7 L. */
int evb_model_n_units(const evb_model *m);
/* Rows and columns of unit u's weight: the smaller shape of a structured block (a structured checkpoint's, or
 * a block level's while it is applied). */
void evb_model_unit_shape(const evb_model *m, int unit, int *rows, int *cols);
/* The most weights (and, in *max_cols when not NULL, inputs) any unit of the model's configuration has: what
 * a buffer for any unit's weight needs, whatever blocks are structured. */
size_t evb_model_max_unit(const evb_model *m, int *max_cols);
/* Swaps unit u's weight for buf (same shape, owned by the caller, must outlive its use); NULL restores the
 * dense weight. A BF16 model rounds buf into its own bfloat16 copy of the unit (allocated on first use; not
 * for views that share m's layers across threads: those use evb_model_set_weight16). EVB_ENOMEM when that
 * copy cannot be allocated (the dense weight stays). */
int  evb_model_set_weight(evb_model *m, int unit, const float *buf);
/* A BF16 model's unit u computes with buf [rows, cols] in bfloat16 (owned by the caller); NULL restores the
 * dense weight. EVB_EINVAL on a float32 model. */
int  evb_model_set_weight16(evb_model *m, int unit, const uint16_t *buf);
/* Unit u's loaded (dense) weight as float32 into dst [rows, cols], whatever the model holds. */
void evb_model_dense_f32(const evb_model *m, int unit, float *dst);

/* ---- structured removal ---- */

/* One sub-block with whole heads or MLP channels removed, its weights compacted to the kept ones, in the form
 * the model computes with (float32 or bfloat16). Attention keeps whole key/value groups (each with its H / G
 * query heads): kept[] lists kept groups; the MLP's kept[] lists kept channels. Made from the model's dense
 * weights, with the o or down columns of the kept inputs replaced by out_w when a compressor updated them,
 * and a compensation bias added to the sub-block's output. Put into a model (or a view of one) with
 * evb_block_level_apply, taken out with evb_block_level_clear. */
typedef struct evb_block_level {
    int layer, mlp;            /* the block; 0 attention, 1 MLP */
    int n_kept;                /* kept KV groups (attention) or channels (MLP) */
    int heads, kv_heads, ffn;  /* the shapes it runs with (the other sub-block's are the configuration's) */
    const float *w[4];         /* float32 model: q, k, v, o or gate, up, down (w[3] unused) */
    const uint16_t *w16[4];    /* BF16 model: the same in bfloat16 */
    const float *bq, *bk, *bv; /* compacted q/k/v biases (Qwen2), or NULL */
    const float *bias;         /* [D] compensation added to o's or down's output, or NULL */
    size_t bytes;              /* memory held */
    void *mem;
} evb_block_level;

/* Builds a block level. kept[n_kept] strictly ascending; out_w NULL (the dense columns) or [D, kept inputs]
 * (o: n_kept (H/G) E columns, down: n_kept columns), bias NULL or [D]. EVB_EINVAL on a bad list, EVB_ENOMEM.
 * */
int  evb_block_level_make(const evb_model *m, int layer, int mlp, const int *kept, int n_kept,
                          const float *out_w,
                          const float *bias, evb_block_level **out);
void evb_block_level_free(evb_block_level *b);
/* Makes layer b->layer of m run sub-block b->mlp as b says (b must outlive its use). */
void evb_block_level_apply(evb_model *m, const evb_block_level *b);
/* Restores the dense weights and shapes of one sub-block. */
void evb_block_level_clear(evb_model *m, int layer, int mlp);
/* Inputs of o (mlp 0) or down (mlp 1) that kept[n_kept] keeps, in order: idx[] (n_kept (H/G) E or n_kept). */
int  evb_block_kept_inputs(const evb_config *c, int mlp, const int *kept, int n_kept, int *idx);

/* ---- forward pass ---- */

/* Called with the input of every linear layer during a forward (x is [n_rows, n_cols], row-major). The
 * three projections of a block that share an input (q, k, v; gate, up) get one call each. */
typedef void (*evb_capture_fn)(void *ctx, int layer, evb_linear_kind kind,
                               const float *x, int n_rows, int n_cols);

typedef struct evb_state {
    int max_batch, max_seq;   /* capacity */
    int B, T;                 /* shape of the batch held now */
    float *x;       /* [B T, D] the residual stream: block input, then block output */
    float *xb;      /* [B T, D] normed input */
    float *q;       /* [B T, H E] */
    float *k;       /* [B T, G E] */
    float *v;       /* [B T, G E] */
    float *att;     /* [B T, H E] attention output */
    float *hb;      /* [B T, F] */
    float *hb2;     /* [B T, F] */
    float *scores;  /* [n_threads, T, T] attention scratch */
    float *logits;  /* [B T, V] */
    uint16_t *xb16; /* BF16 model: the bfloat16 copy of a projection's input [B T, max(D, H E, F)] */
    float *wf;      /* BF16 model: a block of weights expanded to float32 for exact projections */
    int exact;      /* BF16 model: 1 = projections in float32 with the model's weights (a teacher's outputs);
                     * 0 (the default) = bfloat16 products */
    float *rope_cos, *rope_sin; /* [max_seq, E/2] */
    int n_threads;
    evb_capture_fn capture; void *capture_ctx; /* optional */
    void *mem;
} evb_state;

/* Allocates the buffers for batches of up to max_batch sequences of up to max_seq positions. */
int  evb_state_alloc(const evb_model *m, int max_batch, int max_seq, evb_state **out);
void evb_state_free(evb_state *s);

/* Token embedding: s->x = emb[tokens]. tokens [B T]; each id is checked against V (EVB_ERANGE). */
int evb_forward_embed(const evb_model *m, evb_state *s, const int32_t *tokens, int B, int T);
/* Runs blocks [first, last) on s->x in place (the hook to start from block i with given hidden states). */
int evb_forward_blocks(const evb_model *m, evb_state *s, int first, int last);
/* Final norm and classifier: s->logits [B T, V] from s->x. */
int evb_forward_logits(const evb_model *m, evb_state *s);
/* The whole forward: embed, all blocks, logits. */
int evb_forward(const evb_model *m, evb_state *s, const int32_t *tokens, int B, int T);
/* Greedy decoding: seq[0..n_prompt) is the prompt (BOS first); appends the most likely token until seq holds
 * total tokens (at most the model's context; s for one sequence of total positions). Each step reruns the
 * whole sequence: simple, and the batched forward makes it cheap at the sizes it is used for. A prompt id
 * outside the vocabulary is EVB_ERANGE naming its position. */
int evb_generate_greedy(const evb_model *m, evb_state *s, int32_t *seq, size_t n_prompt, size_t total);

/* In place log-softmax of n rows of V. */
void evb_log_softmax(float *x, size_t n, int V);
/* Sum of -log p(target) over rows: logp [n, V] log-probabilities, targets [n]. */
double evb_nll_sum(const float *logp, const int32_t *targets, size_t n, int V);

#ifdef __cplusplus
}
#endif
#endif
