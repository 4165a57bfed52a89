/* fuzz_db_index.c -- the level database's index reader (what evb_db_open runs on index.msgpack, through
 * evb_db_open_mem_) on arbitrary bytes. The index carries its own checksum; so that mutated inputs reach
 * the field checks behind it, an input whose last 9 bytes look like the checksum (0xcf + 8 bytes) gets them
 * rewritten to the right value, and the other inputs exercise the refusals in front of it. */
#include "compressors/db_impl.h"
#include "evobudget/evb_status.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1);
    FUZZ_CHECK(buf != NULL, "out of memory");
    if (size) memcpy(buf, data, size);
    if (size >= 9 && buf[size - 9] == 0xcf) {
        uint64_t h = evb_hash64(buf, size - 9, 0);
        for (int i = 0; i < 8; i++) buf[size - 1 - i] = (uint8_t)(h >> (8 * i));
    }
    evb_db *db = NULL;
    int status = evb_db_open_mem_("fuzz", buf, size, &db);
    if (status == EVB_SUCCESS) {
        FUZZ_CHECK(db != NULL, "success without a database");
        int n = evb_db_count(db);
        for (int i = 0; i < n; i++) {
            evb_db_entry e = evb_db_get(db, i);
            FUZZ_CHECK(e.rows >= 1 && e.cols >= 1 && e.rows <= (1 << 20) && e.cols <= (1 << 20), "entry %d: shape %dx%d", i, e.rows, e.cols);
            FUZZ_CHECK(e.kind == EVB_LEVEL_SPARSE || e.kind == EVB_LEVEL_QUANT, "entry %d: kind %d", i, e.kind);
            FUZZ_CHECK(!strchr(e.file, '/') && e.file[0] != '.', "entry %d: file '%s'", i, e.file);
            FUZZ_CHECK(evb_db_find(db, &e) == i, "entry %d is not found under its own identity", i);
        }
        evb_db_close(db);
    } else {
        FUZZ_CHECK(db == NULL, "a database returned with status %d", status);
        FUZZ_CHECK(status == EVB_EFORMAT || status == EVB_ENOMEM, "status %d (%s)", status, evb_last_error());
        FUZZ_CHECK(evb_last_error()[0] != '\0', "status %d without a message", status);
    }
    free(buf);
    return 0;
}
