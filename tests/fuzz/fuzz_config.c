/* fuzz_config.c -- config.json parsing through evb_model_load: the input is written as config.json into a
 * directory that holds nothing else, so the loader parses and validates the configuration and then stops
 * at the missing model.safetensors (no weights are allocated before the safetensors headers are read). */
#include "evobudget/evb_model.h"
#include "evobudget/evb_status.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_write("config.json", data, size);
    evb_model *m = NULL;
    int status = evb_model_load(fuzz_dir(), &m);
    /* Without weights the load can never succeed: a parse error is EVB_EFORMAT, a valid configuration
     * reaches the weights and fails with EVB_EIO. */
    FUZZ_CHECK(status == EVB_EFORMAT || status == EVB_EIO, "status %d (%s)", status, evb_last_error());
    FUZZ_CHECK(m == NULL, "a model was returned with status %d", status);
    FUZZ_CHECK(evb_last_error()[0] != '\0', "status %d without a message", status);
    return 0;
}
