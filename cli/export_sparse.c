/* export_sparse.c -- `evobudget export --format compressed-tensors`: which layers of a configuration are
 * sparse (written in the sparse-bitmask layout by evb_bitmask_save, compressors/export_sparse.c). */
#define _GNU_SOURCE
#include "cli/cli.h"
#include "evobudget/evb_db.h"
#include "evobudget/evb_export.h"

#include <stdlib.h>
#include <string.h>

int export_sparse(const evb_model *m, const opts *o, const evb_allocation *cfg, const char *dir, const char *dtype, json_t **summary) {
    *summary = NULL;
    int U = evb_model_n_units(m);
    unsigned char *compress = calloc((size_t)U, 1);
    if (!compress) return fail(EVB_RAISEF(EVB_ENOMEM, "out of memory"));
    int n_quant = 0, first_quant = -1, nm_keep = -1, nm_m = -1, unstructured = 0;
    for (int i = 0; i < cfg->n_units; i++) {
        const evb_allocation_unit *x = &cfg->units[i];
        int u = x->unit;
        if (x->dense || (!x->zero && !x->key.method[0]) || u >= U) continue; /* config_check refused these already */
        const evb_method *me = x->zero ? NULL : evb_method_find(x->key.method);
        if (me && me->kind != EVB_LEVEL_SPARSE) { /* rtn, gptq and GGUF levels: quantized */
            if (n_quant++ == 0) first_quant = u;
            continue;
        }
        compress[u] = 1;
        /* sparsity_structure: the N:M pattern every compressed layer shares, else "unstructured" */
        int k = x->key.n_keep, mm = x->key.m;
        if (k > 0 && mm > 0 && (nm_keep < 0 || (nm_keep == k && nm_m == mm))) { nm_keep = k; nm_m = mm; }
        else unstructured = 1;
    }
    int rc = 0;
    if (n_quant)
        rc = fail(EVB_RAISEF(EVB_EINVAL, "--config %s: %d quantized (rtn, gptq, GGUF) layers, the first unit %d: --format compressed-tensors writes "
                             "sparse layers only (hint: --format gptq packs quantized layers; --format hf writes any configuration)",
                             o->config, n_quant, first_quant));
    char structure[32] = "unstructured";
    if (!unstructured && nm_keep > 0) snprintf(structure, sizeof structure, "%d:%d", nm_keep, nm_m);
    evb_bitmask_summary sum;
    int s;
    if (!rc && (s = evb_bitmask_save(m, compress, dir, dtype, structure, &sum))) rc = fail(s);
    if (!rc)
        *summary = json_pack("{s:s, s:s, s:i, s:i, s:I, s:I, s:f}", "format", "sparse-bitmask", "sparsity_structure", structure,
                             "layers_compressed", sum.n_compressed, "layers_dense", sum.n_dense, "weights_kept", (json_int_t)sum.kept,
                             "weights_compressed_layers", (json_int_t)sum.weights, "global_sparsity", sum.global_sparsity);
    free(compress);
    return rc;
}
