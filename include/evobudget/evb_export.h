/* evb_export.h -- a configuration's quantized levels as a packed GPTQ checkpoint (Hugging Face layout), its
 * sparse levels in compressed-tensors' sparse-bitmask format.
 *
 * Every linear layer whose level is a quantized one (RTN or GPTQ) is written in the GPTQ checkpoint layout
 * that AutoGPTQ, GPTQModel, transformers (through optimum / gptqmodel) and vLLM read:
 *   <name>.qweight  int32 [in bits / 32, out]  codes packed along the input dimension, code j of a run at bit
 *                   j bits of the run's little-endian bit stream: runs of 32/bits codes in one int32 for 2, 4,
 *                   8 bits; runs of 32 codes in three int32, across word boundaries, for 3 bits
 *   <name>.qzeros   int32 [n_groups, out bits / 32]  zero points packed the same way along the output
 *                   dimension; checkpoint_format "gptq" stores zero - 1, "gptq_v2" the zero itself
 *   <name>.scales   float16 [n_groups, out]
 *   <name>.g_idx    int32 [in]  the group of each input column (act-order levels permute it)
 *   <name>.bias     the layer's bias, when it has one
 * so that W[o][i] = scales[g][o] (q[i][o] - z[g][o]) with g = g_idx[i]. Everything else (embeddings, norms,
 * linear layers at sparse or dense levels, dropped sub-blocks as zeros) is written dense in dtype.
 * config.json (and quantize_config.json) carry quantization_config: quant_method "gptq", the most common
 * bits / group_size / sym / desc_act, and GPTQModel's "dynamic" overrides: "+:^name$" with the fields of
 * a packed layer that differ, "-:^name$": {} for a layer written dense. docs/export-formats.md has the
 * published sources of the layout and which loaders read what. */
#ifndef EVB_EXPORT_H
#define EVB_EXPORT_H

#ifdef __cplusplus
extern "C" {
#endif

struct evb_model;
struct evb_db;

typedef struct evb_gptq_options {
    int         v2;     /* 0: checkpoint_format "gptq" (zero points stored minus one); 1: "gptq_v2" */
    const char *dtype;  /* dense tensors and biases: "F16" (NULL), "BF16" or "F32" */
} evb_gptq_options;

typedef struct evb_gptq_summary {
    int    n_packed, n_dense;           /* linear layers packed / written dense */
    int    bits, group_size, sym, desc_act; /* quantization_config's defaults (group_size -1: per row) */
    int    n_dynamic;                   /* overrides in "dynamic" */
    double scale_rel_err;               /* largest |f16(s) - s| / |s| over the packed scales */
} evb_gptq_summary;

/* Writes dir/model.safetensors, dir/config.json and dir/quantize_config.json. m holds the weights of the
 * layers written dense (evb_model_set_weight) and the dropped sub-blocks (skip_*); entry[u] is the index
 * in db (whose directory is db_dir) of unit u's quantized level, or -1 for a layer written dense.
 * Refused (EVB_EINVAL, naming the layer, nothing written): bits outside {2, 3, 4, 8}, a layer whose
 * inputs or outputs are not a multiple of the packing run (32 / bits for 2, 4, 8 bits; 32 for 3 bits), a zero point of 0 in checkpoint_format "gptq" (it stores
 * zero - 1), a scale outside float16's range, a configuration with no quantized layer. A damaged payload
 * is EVB_EFORMAT. */
int evb_gptq_save(const struct evb_model *m, const struct evb_db *db, const char *db_dir, const int *entry,
                  const char *dir, const evb_gptq_options *opt, evb_gptq_summary *sum);

/* ---- compressed-tensors' sparse-bitmask format ----
 *
 * Every linear layer marked in `compress` is written as compressed-tensors' BitmaskCompressor writes it
 * (compressed_tensors/compressors/sparse_compressors/sparse_bitmask.py), <name>.weight replaced by:
 *   <name>.shape        int64 [2]             the dense shape [out, in]
 *   <name>.compressed   dtype [nnz]           the nonzero weights (nonzero in dtype), row by row
 *   <name>.bitmask      uint8 [out, ceil(in / 8)]  1 where a weight is kept; input i of a row at bit i % 8 of
 *                                             byte i / 8 (numpy.packbits(..., bitorder="little"))
 *   <name>.row_offsets  int64 [out]           index in compressed of each row's first value
 * Everything else (embeddings, norms, layers left dense, dropped sub-blocks as zeros) is written dense in
 * dtype. config.json carries quantization_config {"quant_method": "compressed-tensors", "sparsity_config":
 * {"format": "sparse-bitmask", "targets": [the compressed layers], "ignore": [the other linear layers],
 * "global_sparsity", "sparsity_structure"}}. docs/export-formats.md has the sources and the loaders. */

typedef struct evb_bitmask_summary {
    int    n_compressed, n_dense;     /* linear layers written compressed / dense */
    long long kept, weights;          /* nonzero / all weights of the compressed layers */
    double global_sparsity;           /* zeros among all parameters written (as compressed-tensors reports it) */
} evb_bitmask_summary;

/* Writes dir/model.safetensors and dir/config.json. m holds the weights of every layer (evb_model_set_weight)
 * and the dropped sub-blocks (skip_*); compress[u] is 1 for a linear layer written compressed (a layer of a
 * dropped sub-block is written dense, as zeros, whatever compress says). structure: "unstructured" or the
 * N:M pattern ("2:4") all compressed layers share, written as sparsity_structure. Refused (EVB_EINVAL,
 * nothing written): no layer to compress, a dtype other than F32/F16/BF16. */
int evb_bitmask_save(const struct evb_model *m, const unsigned char *compress, const char *dir, const char *dtype,
                     const char *structure, evb_bitmask_summary *sum);

/* ---- GGUF, the file llama.cpp (and ollama, LM Studio, ...) runs ----
 *
 * One GGUF (version 3) file: the llama architecture's metadata (qwen2 for a model with q/k/v biases), the
 * tokenizer embedded (tokenizer.ggml.*, evb_tokenizer_vocab_export), and llama.cpp's tensor names and q/k
 * row order. Every linear layer whose configuration level is a GGUF level is written in its type, its
 * blocks copied from the database; every other tensor dense: norms in F32, the embedding, the classifier and
 * linear layers without a GGUF level in dtype (the embedding in embd_type when given). A structured model
 * (blocks with heads or MLP channels removed, evb_model.h) is written as llama.cpp's deci architecture, with
 * per-block head counts and MLP lengths, each block's tensors at its own shapes and the o/down compensation
 * biases; arch is then "deci". compressors/export_gguf.c has the layout and its sources. */

struct evb_tokenizer_vocab;

typedef struct evb_gguf_save_options {
    const char *dtype;  /* the dense tensors: "F16" (NULL), "BF16" or "F32" */
    const char *name;   /* general.name (NULL: "evobudget") */
    const char *embd_type; /* the token embedding (and an untied classifier) in this GGUF type by llama.cpp's
                              rounding, e.g. "Q6_K" as llama.cpp's Q4_K_M has it (NULL: dtype) */
} evb_gguf_save_options;

typedef struct evb_gguf_export_summary {
    int         n_gguf, n_dense;   /* linear layers written in a GGUF block type / dense */
    int         n_tensors;
    long long   linear_params;     /* weights of the linear layers */
    double      linear_bits;       /* their stored bits (blocks, or the dense dtype's) */
    long long   tensor_bytes;      /* every tensor's bytes, padding left out */
    const char *arch;              /* "llama", "qwen2", or "deci" for a structured model */
} evb_gguf_export_summary;

/* Writes path atomically (a temporary sibling renamed into place). m holds the dense weights in float32
 * (evb_model_load), with the weights of non-GGUF levels set (evb_model_set_weight) and dropped sub-blocks
 * marked (skip_*), which are written as zeros; entry[u] is the database entry of unit u's GGUF level, or -1
 * (entry may be NULL: every layer dense); vocab the tokenizer to embed (NULL: none, and llama.cpp will not
 * load the file). Refused (EVB_EINVAL, nothing written): an entry that is not a GGUF level of its unit, a
 * dtype other than F16/BF16/F32, an embd_type that is no GGUF type or whose blocks do not divide the model's
 * width. A damaged level is EVB_EFORMAT. */
int evb_gguf_save(const struct evb_model *m, const struct evb_db *db, const int *entry, const struct evb_tokenizer_vocab *vocab,
                  const char *path, const evb_gguf_save_options *opt, evb_gguf_export_summary *sum);

#ifdef __cplusplus
}
#endif
#endif
