/* fuzz_safetensors.c -- the safetensors header parser (evb_st_parse) on arbitrary bytes held in memory,
 * then every F32/F16/BF16 tensor it accepts is converted with evb_st_read_f32 into a buffer sized from the
 * tensor's own shape (AddressSanitizer checks that the reader stays within the file and the buffer). */
#include "models/safetensors.h"
#include "evobudget/evb_status.h"
#include "fuzz_common.h"

/* Total floats converted per input (the data of an accepted tensor lies inside the input, so this only
 * bounds pathological inputs). */
#define MAX_FLOATS ((uint64_t)1 << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    evb_safetensors st;
    evb_st_init(&st);
    /* The file table evb_st_open would build: the input is the whole mapped file. */
    st.files = calloc(1, sizeof *st.files);
    FUZZ_CHECK(st.files != NULL, "out of memory");
    st.n_files = 1;
    st.files[0].path = strdup("fuzz");
    st.files[0].map = data;
    st.files[0].size = size;
    int status = evb_st_parse(&st, data, size, "fuzz", 0);
    if (status == EVB_SUCCESS) {
        uint64_t hlen = 0;
        for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | data[i];
        st.files[0].data_start = 8 + (size_t)hlen;
        uint64_t budget = MAX_FLOATS;
        for (int i = 0; i < st.n_tensors; i++) {
            const evb_st_tensor *t = &st.tensors[i];
            FUZZ_CHECK(evb_st_find(&st, t->name) == t, "tensor \"%s\" is not found under its own name", t->name);
            FUZZ_CHECK(t->begin <= t->end && 8 + hlen + t->end <= size, "tensor \"%s\" lies outside the file", t->name);
            int f32 = strcmp(t->dtype, "F32") == 0;
            if (!f32 && strcmp(t->dtype, "F16") && strcmp(t->dtype, "BF16")) {
                /* Other dtypes are refused by the reader. */
                float dummy;
                FUZZ_CHECK(evb_st_read_f32(&st, t, t->ndim, t->shape, &dummy) == EVB_EFORMAT,
                           "dtype %s was not refused", t->dtype);
                continue;
            }
            uint64_t count = 1;
            for (int d = 0; d < t->ndim; d++) count *= (uint64_t)t->shape[d];
            FUZZ_CHECK(count * (f32 ? 4 : 2) == t->end - t->begin, "tensor \"%s\": shape and byte range disagree", t->name);
            if (count > budget) continue;
            budget -= count;
            float *dst = malloc(count ? (size_t)count * sizeof(float) : 1);
            FUZZ_CHECK(dst != NULL, "out of memory");
            FUZZ_CHECK(evb_st_read_f32(&st, t, t->ndim, t->shape, dst) == EVB_SUCCESS, "reading \"%s\": %s",
                       t->name, evb_last_error());
            /* A shape that differs in one place is refused with a message (exercises its formatting). */
            int64_t other[EVB_ST_MAX_DIMS];
            memcpy(other, t->shape, sizeof other);
            if (t->ndim > 0) {
                other[t->ndim - 1] += 1;
                FUZZ_CHECK(evb_st_read_f32(&st, t, t->ndim, other, dst) == EVB_EFORMAT, "a wrong shape was accepted");
            }
            free(dst);
        }
    }
    /* The mapping belongs to libFuzzer: keep evb_st_close from unmapping it. */
    st.files[0].map = NULL;
    evb_st_close(&st);
    return 0;
}
