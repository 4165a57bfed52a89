/* fuzz_tokenizer_json.c -- evb_tokenizer_load on a tokenizer.json holding the input; a tokenizer that
 * loads is used to encode and decode (fuzz_tokenizer.h). Inputs that do not start with '{' take the
 * tokenizer.bin path of the loader (fuzz_llama2c_bin covers it). */
#include "fuzz_tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("tokenizer.json", data, size);
    evb_tokenizer *t = NULL;
    int status = evb_tokenizer_load(path, &t);
    if (status == EVB_SUCCESS) {
        FUZZ_CHECK(t != NULL, "success without a tokenizer");
        fuzz_tokenizer_use(t, data, size);
        evb_tokenizer_free(t);
    } else {
        FUZZ_CHECK(t == NULL, "status %d with a tokenizer", status);
        FUZZ_CHECK(status == EVB_EFORMAT, "status %d (%s)", status, evb_last_error());
    }
    return 0;
}
