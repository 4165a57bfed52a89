/* export_gptq.c -- `evobudget export --format gptq|gptq_v2`: which database level each unit of a
 * configuration packs, handed to evb_gptq_save (compressors/export_gptq.c). */
#define _GNU_SOURCE
#include "cli/cli.h"
#include "evobudget/evb_db.h"
#include "evobudget/evb_export.h"

#include <stdlib.h>
#include <string.h>

int export_gptq(const evb_model *m, const opts *o, const evb_allocation *cfg, const char *dir, const char *dtype, json_t **summary) {
    *summary = NULL;
    int U = evb_model_n_units(m);
    if (!o->db) return usage_error("--format %s needs the level database (--db DIR, or the configuration's \"db\")", o->format);
    char mfp[17];
    evb_fingerprint_model(m, mfp);
    evb_db *db;
    int s = evb_db_open(o->db, mfp, NULL, 0, &db);
    if (s) return fail(s);
    int *entry = malloc(sizeof(int) * (size_t)U);
    if (!entry) { evb_db_close(db); return fail(EVB_RAISEF(EVB_ENOMEM, "out of memory")); }
    for (int u = 0; u < U; u++) entry[u] = -1;
    int rc = 0, n_sparse = 0, n_gguf = 0;
    for (int i = 0; i < cfg->n_units; i++) {
        const evb_allocation_unit *x = &cfg->units[i];
        if (x->dense) continue;
        const evb_method *me = x->zero ? NULL : evb_method_find(x->key.method);
        if (me && me->kind == EVB_LEVEL_GGUF) { n_gguf++; continue; }
        if (!me || me->kind != EVB_LEVEL_QUANT) { n_sparse += !x->zero && x->key.method[0]; continue; }
        evb_db_entry key = x->key;
        key.kind = EVB_LEVEL_QUANT;
        entry[key.unit] = evb_db_find(db, &key);
        if (entry[key.unit] < 0) { /* load_levels found it a moment ago; the database changed since */
            rc = usage_error("--db %s: unit %d has no %s level of %d bits (hint: rerun 'evobudget db build')", o->db, key.unit, me->name, key.bits);
            break;
        }
    }
    evb_gptq_options opt = {.v2 = strcmp(o->format, "gptq_v2") == 0, .dtype = dtype};
    evb_gptq_summary sum;
    if (!rc && (s = evb_gptq_save(m, db, o->db, entry, dir, &opt, &sum))) rc = fail(s);
    if (!rc) {
        *summary = json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:b, s:b, s:i, s:f}", "checkpoint_format", opt.v2 ? "gptq_v2" : "gptq",
                             "layers_packed", sum.n_packed, "layers_dense", sum.n_dense, "layers_sparse_written_dense", n_sparse,
                             "bits", sum.bits, "group_size", sum.group_size, "sym", sum.sym, "desc_act", sum.desc_act,
                             "dynamic_overrides", sum.n_dynamic, "scale_f16_rel_err_max", sum.scale_rel_err);
        if (n_sparse)
            fprintf(stderr, "%s: note: %d sparse layers are written dense (float) in the GPTQ checkpoint, marked \"-:\" in its dynamic overrides "
                    "(--format compressed-tensors stores sparse layers compressed, in a configuration without quantized ones)\n", cmd_name, n_sparse);
        if (n_gguf)
            fprintf(stderr, "%s: note: %d layers at GGUF levels are written dense (float) in the GPTQ checkpoint (--format gguf writes them "
                    "in their GGUF types)\n", cmd_name, n_gguf);
    }
    free(entry);
    evb_db_close(db);
    return rc;
}
