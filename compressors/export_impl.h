/* export_impl.h -- what the packed exports (export_gptq.c, export_sparse.c) share; private, never installed. */
#ifndef EVB_EXPORT_IMPL_H
#define EVB_EXPORT_IMPL_H

#include <jansson.h>
#include <stddef.h>

struct evb_model;

/* dir/name holding j (indented, atomic write). */
int evb_export_write_json(const char *dir, const char *name, json_t *j);
/* Unit u's module name in a Hugging Face checkpoint, e.g. "model.layers.3.self_attn.q_proj". */
void evb_export_module_name(int u, char *out, size_t n);
/* Source row of saved output row i: llama2.c weights are saved with q and k in rotate-half order
 * (evb_model_save's permutation), E rows per head. */
static inline int evb_export_src_row(int i, int permute_heads, int E) {
    if (!permute_heads) return i;
    int h = i / E, r = i % E;
    return h * E + (r < E / 2 ? 2 * r : 2 * (r - E / 2) + 1);
}

#endif
