/* export_gptq.c -- `evobudget export --format gptq|gptq_v2`: which database level each unit of a
 * configuration packs, handed to evb_gptq_save (compressors/export_gptq.c). */
#define _GNU_SOURCE
#include "cli/cli.h"
#include "evobudget/evb_db.h"
#include "evobudget/evb_export.h"

#include <stdlib.h>
#include <string.h>

int export_gptq(const evb_model *m, const opts *o, json_t *cfg, const char *dir, const char *dtype, json_t **summary) {
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
    int rc = 0, n_sparse = 0;
    json_t *x;
    size_t i;
    json_array_foreach(json_object_get(cfg, "units"), i, x) {
        if (json_is_true(json_object_get(x, "dense"))) continue;
        const char *method = json_string_value(json_object_get(x, "method"));
        const evb_method *me = method ? evb_method_find(method) : NULL;
        if (!me || me->kind != EVB_LEVEL_QUANT) { n_sparse += method && strcmp(method, "zero") != 0; continue; }
        evb_db_entry key = {0};
        key.unit = (int)json_integer_value(json_object_get(x, "unit"));
        snprintf(key.method, sizeof key.method, "%s", me->name);
        key.kind = EVB_LEVEL_QUANT;
        key.bits = (int)json_integer_value(json_object_get(x, "bits"));
        key.group_size = (int)json_integer_value(json_object_get(x, "group_size"));
        key.sym = json_is_true(json_object_get(x, "sym"));
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
    }
    free(entry);
    evb_db_close(db);
    return rc;
}
