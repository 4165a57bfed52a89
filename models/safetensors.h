/* safetensors.h -- reading safetensors files (private to the library).
 *
 * Format: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets}, ...,
 * "__metadata__": {...}}, then the data. Every field, offset and size is validated against the file size
 * when the header is parsed, before any tensor is read. Files are memory-mapped read-only. */
#ifndef EVB_MODELS_SAFETENSORS_H
#define EVB_MODELS_SAFETENSORS_H
#include <stddef.h>
#include <stdint.h>

#define EVB_ST_MAX_DIMS 8

typedef struct evb_st_tensor {
    char    *name;
    char     dtype[8];                /* "F32", "F16", "BF16", ... */
    int      ndim;
    int64_t  shape[EVB_ST_MAX_DIMS];
    size_t   begin, end;              /* byte offsets within the file's data section */
    int      file;                    /* index into evb_safetensors.files */
} evb_st_tensor;

typedef struct evb_st_file {
    char          *path;
    const uint8_t *map;               /* the whole file */
    size_t         size;              /* bytes */
    size_t         data_start;        /* 8 + header length */
} evb_st_file;

typedef struct evb_safetensors {
    evb_st_file   *files;   int n_files;
    evb_st_tensor *tensors; int n_tensors;
} evb_safetensors;

/* Maps and parses one file, appending its tensors. A tensor name seen in an earlier file is EVB_EFORMAT. */
int evb_st_open(evb_safetensors *st, const char *path);
/* Parses a header held in memory (buf holds the whole file); "what" names it in messages. Used by
 * evb_st_open and by the fuzz target. */
int evb_st_parse(evb_safetensors *st, const uint8_t *buf, size_t size, const char *what, int file_index);
/* Releases every mapping and name. The struct may be reused after evb_st_init. */
void evb_st_close(evb_safetensors *st);
void evb_st_init(evb_safetensors *st);

const evb_st_tensor *evb_st_find(const evb_safetensors *st, const char *name);
/* Converts the tensor to float32 into dst after checking that its shape is exactly shape[ndim]. */
int evb_st_read_f32(const evb_safetensors *st, const evb_st_tensor *t, int ndim, const int64_t *shape, float *dst);
/* The same tensor as bfloat16: converted (round to nearest even) from F32 or F16, copied from BF16. With dst
 * NULL, only the shape is checked. */
int evb_st_read_bf16(const evb_safetensors *st, const evb_st_tensor *t, int ndim, const int64_t *shape, uint16_t *dst);
/* A BF16 tensor's values where they lie in the mapping (valid until evb_st_close), or NULL when the tensor
 * is of another dtype or lies at an odd address. The shape is not checked: evb_st_read_bf16 does that. */
const uint16_t *evb_st_bf16_in_place(const evb_safetensors *st, const evb_st_tensor *t);

/* One tensor to write: float32 data converted to dtype ("F32", "F16" or "BF16") on the way out. */
typedef struct evb_st_out {
    const char  *name;
    const char  *dtype;
    int          ndim;
    int64_t      shape[EVB_ST_MAX_DIMS];
    const float *data;      /* [prod(shape)] */
} evb_st_out;

/* Writes n tensors to path (evb_write_atomic_with: a temporary file, fsync'd and renamed into place), with
 * optional metadata (a JSON object of strings, or NULL). */
int evb_st_write(const char *path, const evb_st_out *t, int n, const char *metadata_json);


/* Float conversions, exposed for tests and writers. */
float evb_f16_to_f32(uint16_t h);
float evb_bf16_to_f32(uint16_t h);
uint16_t evb_f32_to_f16(float f);   /* round to nearest even */
uint16_t evb_f32_to_bf16(float f);  /* round to nearest even */
#endif
