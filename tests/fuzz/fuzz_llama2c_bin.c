/* fuzz_llama2c_bin.c -- llama2.c binary files: the input is written as model.bin and loaded with
 * evb_model_load (the legacy version 0 checkpoint reader), and the same bytes are loaded as a llama2.c
 * tokenizer.bin with evb_tokenizer_load (unless they start with '{', which selects tokenizer.json); a
 * tokenizer that loads is used to encode and decode (fuzz_tokenizer.h). */
#include "evobudget/evb_model.h"
#include "fuzz_tokenizer.h"

static int starts_with_brace(const uint8_t *data, size_t size) {
    size_t k = 0;
    while (k < size && (data[k] == ' ' || data[k] == '\t' || data[k] == '\n' || data[k] == '\r')) k++;
    return k < size && data[k] == '{';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("model.bin", data, size);
    evb_model *m = NULL;
    int status = evb_model_load(path, &m);
    if (status == EVB_SUCCESS) {
        const evb_config *c = &m->config;
        FUZZ_CHECK(m != NULL && c->dim > 0 && c->n_layers > 0 && c->vocab_size > 0, "a loaded model without dimensions");
        FUZZ_CHECK(evb_model_n_units(m) == 7 * c->n_layers, "units");
        /* Touch the first and last weight of every unit (ASan checks the arena bounds). */
        volatile float sink = m->tok_emb[0] + m->rms_final[c->dim - 1] + m->cls[(size_t)c->vocab_size * c->dim - 1];
        for (int u = 0; u < evb_model_n_units(m); u++) {
            int r, cc;
            evb_model_unit_shape(m, u, &r, &cc);
            const float *w = m->layers[u / 7].w[u % 7];
            sink += w[0] + w[(size_t)r * cc - 1];
        }
        (void)sink;
        evb_model_free(m);
    } else {
        FUZZ_CHECK(m == NULL, "status %d with a model", status);
        FUZZ_CHECK(status == EVB_EFORMAT, "status %d (%s)", status, evb_last_error());
    }
    if (!starts_with_brace(data, size)) {
        evb_tokenizer *t = NULL;
        status = evb_tokenizer_load(path, &t);
        if (status == EVB_SUCCESS) {
            fuzz_tokenizer_use(t, data, size);
            evb_tokenizer_free(t);
        } else {
            FUZZ_CHECK(t == NULL && status == EVB_EFORMAT, "status %d (%s)", status, evb_last_error());
        }
    }
    return 0;
}
