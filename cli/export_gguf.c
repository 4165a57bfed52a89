/* export_gguf.c -- `evobudget export --format gguf`: which database level each unit of a configuration is
 * written from, the tokenizer to embed, handed to evb_gguf_save (compressors/export_gguf.c). */
#define _GNU_SOURCE
#include "cli/cli.h"
#include "evobudget/evb_db.h"
#include "evobudget/evb_export.h"
#include "evobudget/evb_gguf.h"
#include "evobudget/evb_tokenizer.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The count of each GGUF type among the linear layers, as {"Q4_K": 12, "F16": 6}. */
static json_t *type_counts(const evb_model *m, const evb_db *db, const int *entry, const char *dense) {
    json_t *c = json_object();
    for (int u = 0; u < evb_model_n_units(m); u++) {
        const char *name = dense;
        if (entry[u] >= 0) {
            const evb_gguf_type_info *t = evb_gguf_type_get(evb_db_get(db, entry[u]).gguf_type);
            name = t ? t->name : "?";
        }
        json_object_set_new(c, name, json_integer(json_integer_value(json_object_get(c, name)) + 1));
    }
    return c;
}

int export_gguf(const evb_model *m, const opts *o, const evb_allocation *cfg, const char *path, const char *dtype, json_t **summary) {
    *summary = NULL;
    int U = evb_model_n_units(m), n_gguf = 0, n_other = 0, s;
    for (int i = 0; i < cfg->n_units; i++) {
        const evb_allocation_unit *x = &cfg->units[i];
        const evb_method *me = x->dense || x->zero ? NULL : evb_method_find(x->key.method);
        n_gguf += me && me->kind == EVB_LEVEL_GGUF;
        n_other += !x->dense && !(me && me->kind == EVB_LEVEL_GGUF);
    }
    if (!m->tokenizer_path[0])
        return refuse("--format gguf embeds the tokenizer, and none was found beside %s (hint: give --tokenizer FILE)", m->path);
    evb_tokenizer *t = NULL;
    evb_tokenizer_vocab v = {0};
    if ((s = evb_tokenizer_load(m->tokenizer_path, &t)) || (s = evb_tokenizer_vocab_export(t, &v))) { evb_tokenizer_free(t); return fail(s); }
    evb_tokenizer_free(t);
    evb_db *db = NULL;
    int *entry = malloc(sizeof(int) * (size_t)U), rc = 0;
    if (!entry) { evb_tokenizer_vocab_free(&v); return fail(EVB_RAISEF(EVB_ENOMEM, "out of memory")); }
    for (int u = 0; u < U; u++) entry[u] = -1;
    if (n_gguf) {
        char mfp[17];
        evb_fingerprint_model(m, mfp);
        if ((s = evb_db_open(o->db, mfp, NULL, 0, &db))) rc = fail(s);
    }
    for (int i = 0; !rc && i < cfg->n_units; i++) {
        const evb_allocation_unit *x = &cfg->units[i];
        const evb_method *me = x->dense || x->zero ? NULL : evb_method_find(x->key.method);
        if (!me || me->kind != EVB_LEVEL_GGUF) continue;
        evb_db_entry key = x->key;
        key.kind = EVB_LEVEL_GGUF;
        entry[key.unit] = evb_db_find(db, &key);
        if (entry[key.unit] < 0) /* load_levels found it a moment ago; the database changed since */
            rc = usage_error("--db %s: unit %d has no %s level (hint: rerun 'evobudget db build')", o->db, key.unit, me->name);
    }
    evb_gguf_save_options opt = {dtype, NULL, o->embd_type};
    evb_gguf_export_summary sum;
    if (!rc && (s = evb_gguf_save(m, db, entry, &v, path, &opt, &sum))) rc = fail(s);
    if (!rc) {
        struct stat sb;
        double params = (double)evb_model_n_params(m);
        long long bytes = stat(path, &sb) == 0 ? (long long)sb.st_size : -1;
        *summary = json_pack("{s:s, s:i, s:i, s:i, s:i, s:I, s:I, s:f, s:f, s:o}", "arch", sum.arch, "tensors", sum.n_tensors,
                             "layers_gguf", sum.n_gguf, "layers_dense", sum.n_dense, "layers_other_levels_written_dense", n_other,
                             "file_bytes", (json_int_t)bytes, "linear_params", (json_int_t)sum.linear_params,
                             "linear_bits_per_weight", sum.linear_bits / (double)sum.linear_params,
                             "bits_per_weight", 8.0 * (double)sum.tensor_bytes / params, "types", type_counts(m, db, entry, dtype));
        if (n_other)
            fprintf(stderr, "%s: note: %d layers at levels that are not GGUF types (sparse, rtn, gptq) are written dense in %s\n", cmd_name, n_other, dtype);
    }
    free(entry);
    evb_db_close(db);
    evb_tokenizer_vocab_free(&v);
    return rc;
}
