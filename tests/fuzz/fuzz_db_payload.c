/* fuzz_db_payload.c -- expanding a level database payload into float32 and into bfloat16 (evb_db_expand_
 * and evb_db_expand16_, what evb_db_load and evb_db_load16 run once the checksum matched) on arbitrary
 * bytes. The entry the index would give is taken from the payload's own header (magic: sparse or
 * quantized; a sparse payload's version and value dtype; rows; cols), so that inputs get past the header
 * check; W is sized from that shape (AddressSanitizer checks that the expansion stays within W and the
 * input). Both expansions must agree on whether the payload is valid. */
#include "compressors/db_impl.h"
#include "evobudget/evb_status.h"
#include "fuzz_common.h"

static uint32_t u32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint32_t u16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 16) return 0;
    evb_db_entry e = {0};
    e.kind = memcmp(data, "EVBQ", 4) == 0 ? EVB_LEVEL_QUANT : EVB_LEVEL_SPARSE;
    /* A sparse payload of version 2 names its dtype (an out-of-range one is left for the check to refuse
     * against an f32 entry); version 1 and quantized payloads hold float32. */
    uint32_t version = u16(data + 4), dtype = u16(data + 6);
    e.dtype = e.kind == EVB_LEVEL_SPARSE && version >= 2 && dtype <= EVB_DB_F16 ? (int)dtype : EVB_DB_F32;
    uint32_t rows = u32(data + 8), cols = u32(data + 12);
    /* Shapes an index can hold (1 .. 2^20 each); W is allocated only for small ones, the larger ones must be
     * refused before W is touched (a NULL W would crash). */
    if (rows < 1 || cols < 1 || rows > (1u << 20) || cols > (1u << 20)) return 0;
    e.rows = (int)rows; e.cols = (int)cols;
    uint64_t n = (uint64_t)rows * cols;
    float *W = n <= (1u << 16) ? malloc(sizeof(float) * n) : NULL;
    uint16_t *W16 = n <= (1u << 16) ? malloc(sizeof(uint16_t) * n) : NULL;
    /* A copy of exactly size bytes, so that AddressSanitizer sees any read past the end. */
    uint8_t *p = malloc(size);
    FUZZ_CHECK(p != NULL, "out of memory");
    memcpy(p, data, size);
    int status = evb_db_expand_(&e, p, size, "fuzz", W);
    int status16 = evb_db_expand16_(&e, p, size, "fuzz", W16);
    FUZZ_CHECK(status == status16, "float32 expansion: status %d, bfloat16 expansion: status %d", status, status16);
    if (status == EVB_SUCCESS) {
        FUZZ_CHECK(W != NULL, "a %ux%u payload of %zu bytes accepted", rows, cols, size);
        if (e.kind == EVB_LEVEL_SPARSE) {
            uint64_t nnz = u32(p + 16) | (uint64_t)u32(p + 20) << 32;
            FUZZ_CHECK(nnz <= n, "nnz %llu above %llu", (unsigned long long)nnz, (unsigned long long)n);
        }
    } else {
        FUZZ_CHECK(status == EVB_EFORMAT, "status %d (%s)", status, evb_last_error());
        FUZZ_CHECK(evb_last_error()[0] != '\0', "status %d without a message", status);
    }
    free(p);
    free(W);
    free(W16);
    return 0;
}
