/* evb_db.h -- the level database: every compressed version ("level") of every unit, computed once and
 * reused by every search on the same model and calibration data.
 *
 * On disk a database is a directory: index.msgpack (format version, the model's and the calibration
 * set's fingerprints, one record per entry: unit, method, level parameters, the dtype of its values,
 * costs, reconstruction error, payload file and its checksum; and the index's own checksum) and one payload
 * file per entry, stored compactly: sparse levels as a bitmask plus the kept values in the checkpoint's
 * dtype, quantized levels as packed integer codes plus per-group scales and zero points. Every file is
 * written to a temporary name and renamed, and the index is rewritten after every entry, so a build killed
 * at any moment leaves a valid database that a rerun completes. Payloads are read through mmap and their
 * checksum (xxHash64) and header (kind, dtype, shape) are verified against the index before a level is
 * expanded; a mismatch is an error, never a silently used level. Every field of the index is range-checked,
 * and a database bound to a model (evb_db_check_model) holds only levels of the model's shapes.
 *
 * Safe to extend from several threads at once, and from several processes: writers hold an exclusive lock
 * on the directory (DIR/.lock) and reread the index when they take it; a second writer waits for the first
 * (saying so in one line on stderr). Readers take no lock. */
#ifndef EVB_DB_H
#define EVB_DB_H

#include <stddef.h>
#include <stdint.h>
#include "evobudget/evb_compress.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 4: every entry records the dtype of its stored values (evb_db_dtype). 3: the index carries its own
 * checksum. A format-3 index is read (its levels hold float32 values) and is written as format 4 once a
 * level is added; older and newer formats are refused with a hint. */
#define EVB_DB_FORMAT 4

/* EVB_LEVEL_GGUF: a weight in one of llama.cpp's GGUF block types (evb_gguf.h), stored as the type's own
 * blocks so that the GGUF exporter copies them as they are. */
/* EVB_LEVEL_STRUCT: a structured removal of one sub-block (whole KV groups of the attention, channels of the
 * MLP), stored as the unit of its output projection (o or down, its full shape): the kept input groups of
 * group_size columns (n_removed groups removed), a compensation bias [rows] added to the output, and for
 * methods that update the kept columns (obs) those columns [rows, kept inputs] in `dtype`. The sub-block's
 * other projections lose the rows of the removed groups (evb_block_level, evb_model.h). */
typedef enum evb_level_kind {
    EVB_LEVEL_SPARSE = 0, EVB_LEVEL_QUANT = 1, EVB_LEVEL_GGUF = 2, EVB_LEVEL_STRUCT = 3
} evb_level_kind;

/* The dtype a level's values are stored in. Sparse levels keep their values in the checkpoint's dtype
 * (evb_db_dtype_of(m->config.dtype)), not the compute path's, so that one database serves both: a BF16 or
 * F16 checkpoint's kept weights are stored as they are, in half the bytes of float32. Quantized levels keep
 * their scales and zero points in float32 (see db.c). */
typedef enum evb_db_dtype { EVB_DB_F32 = 0, EVB_DB_BF16 = 1, EVB_DB_F16 = 2 } evb_db_dtype;

typedef struct evb_db_entry {
    int      unit;            /* l * 7 + kind */
    char     method[16];      /* "magnitude", "wanda", "sparsegpt", "rtn", "gptq", "gguf", "gguf-rtn" */
    int      kind;            /* evb_level_kind */
    double   sparsity;        /* sparse: fraction of weights removed as asked (0 for N:M) */
    int      n_keep, m;       /* sparse N:M pattern, 0 0 when unstructured */
    int64_t  n_removed;       /* sparse: exactly this many weights removed (an equal-step level; sparsity is
                                 then n_removed / (rows cols)), 0 for a level given by its fraction */
    int      bits, group_size, sym; /* quantized (structured: group_size = columns per removed group) */
    int      gguf_type;       /* GGUF: the ggml type id (evb_gguf_type), 0 for the other kinds */
    int      rows, cols;
    int      dtype;           /* evb_db_dtype of the stored values: sparse, the kept values; quantized and GGUF, F32 */
    double   params_kept;     /* cost: weights that are not zero */
    double   bits_stored;     /* cost: bits of the payload's weight data (mask + values, codes + scales, or the GGUF
                                 blocks: 8 bytes per block per weight, its scales and mins counted) */
    uint64_t bytes;           /* payload file size */
    double   recon_error;     /* ||W X^T - W_hat X^T||^2 / ||W X^T||^2 on the calibration inputs */
    uint64_t checksum;        /* xxHash64 of the payload file */
    char     file[96];        /* payload file name inside the directory */
} evb_db_entry;

typedef struct evb_db evb_db;
struct evb_model;

/* Opens (create = 1: creates when missing) the database in dir for a model and calibration set given by
 * their fingerprints (hex strings). An existing database made for other inputs is refused (EVB_EFORMAT,
 * naming what differs), as is another format version. With create 0, a NULL calib_fp checks the model
 * only (levels evaluated on other text), and NULL for both opens it for inspection whatever it was built
 * for. */
int  evb_db_open(const char *dir, const char *model_fp, const char *calib_fp, int create, evb_db **out);
void evb_db_close(evb_db *db);

/* Binds the database to the model it is used with: every entry must be of one of the model's units and of
 * that unit's shape (else EVB_EFORMAT naming the level), and from then on levels of another shape are
 * neither stored nor expanded. The builders bind the database to their model themselves; a reader that
 * expands levels into buffers sized from the model (eval, search) calls it after evb_db_open. */
int evb_db_check_model(evb_db *db, const struct evb_model *m);

/* Verifies entry i's payload (its size and checksum) without expanding it: EVB_SUCCESS, or EVB_EFORMAT
 * (damaged) / EVB_EIO (missing) with a message. */
int evb_db_verify(const evb_db *db, int i);

/* How many entries were replaced since the database was opened (levels rebuilt because their payload was
 * damaged or missing). */
int evb_db_n_replaced(const evb_db *db);

/* A writer session: takes the directory's exclusive lock (waiting, with one line on stderr, while another
 * process holds it), rereads the index so that levels other processes added are known, and removes the
 * temporary files of killed writers. Sessions nest and are shared by the threads of one process; each
 * begin that succeeds is matched by one end. put and the builders open their own sessions. */
int  evb_db_write_begin(evb_db *db);
void evb_db_write_end(evb_db *db);

int evb_db_count(const evb_db *db);
const char *evb_db_model_fingerprint(const evb_db *db);
const char *evb_db_calib_fingerprint(const evb_db *db);
/* A copy of entry i. Indices are stable while the database is open (entries added later come after); the
 * index file lists them sorted by unit and file name, which is their order when the database is opened. */
evb_db_entry evb_db_get(const evb_db *db, int i);
/* The entry with this identity (unit, method, kind and level parameters), or -1. */
int evb_db_find(const evb_db *db, const evb_db_entry *key);

/* Adds a sparse level: the compressed weight W_hat [rows, cols] (zeros are the pruned weights). meta gives
 * the identity and meta->dtype the dtype to store the kept values in (rounded to nearest even; a
 * checkpoint's own values are exact in its dtype), costs are filled in here. A level with a value that
 * would overflow a 16-bit dtype is stored in float32, and its entry says so. A weight is kept where its
 * stored value is not zero. Replaces an entry of the same identity. */
int evb_db_put_sparse(evb_db *db, const evb_db_entry *meta, const float *W_hat, double recon_error);
/* Adds a quantized level from a quantizer's output (codes, scale, zero, group_of), scales and zero points
 * in float32 whatever meta->dtype says. */
int evb_db_put_quant(evb_db *db, const evb_db_entry *meta, const evb_quant_out *q, int n_groups, double recon_error);
/* Adds a GGUF level: meta->gguf_type's blocks [rows, evb_gguf_row_bytes(type, cols)] as a quantizer wrote them. */
int evb_db_put_gguf(evb_db *db, const evb_db_entry *meta, const void *blocks, double recon_error);
/* A structured level as stored: kept[n_kept] ascending groups of group columns, bias[rows], out_w [rows,
 * n_kept group] (the updated kept columns, float32) or NULL. */
typedef struct evb_struct_level {
    int rows, cols, group, n_kept;
    int *kept;
    float *bias;
    float *out_w;
} evb_struct_level;
/* Adds a structured level (meta: unit, method, group_size = columns per group, n_removed = groups removed);
 * out_w NULL for a method that keeps the dense columns. kept must list the cols / group_size - n_removed kept
 * groups, ascending. */
int evb_db_put_struct(evb_db *db, const evb_db_entry *meta, const int *kept, const float *bias,
                      const float *out_w,
                      double recon_error);
/* Verifies structured entry i's checksum and reads it (free with evb_struct_level_free). */
int evb_db_load_struct(const evb_db *db, int i, evb_struct_level **out);
void evb_struct_level_free(evb_struct_level *s);
/* Verifies GGUF entry i's checksum and copies its blocks (rows * evb_gguf_row_bytes bytes) into dst[cap]. */
int evb_db_load_blocks(const evb_db *db, int i, void *dst, size_t cap);

/* Verifies entry i's checksum and expands it into W [rows, cols]. A damaged payload is EVB_EFORMAT; so is a
 * level whose shape is not the bound model's (evb_db_check_model). */
int evb_db_load(const evb_db *db, int i, float *W);
/* The same, expanded into bfloat16 W [rows, cols], the form a BF16 model computes with: bfloat16 values
 * as they are stored, every other value (float32, float16, a dequantized weight computed in float32)
 * rounded to nearest even. Equal, bit for bit, to evb_db_load followed by that rounding (but for a stored
 * bfloat16 NaN, which is copied as it is where the rounding would set its quiet bit). */
int evb_db_load16(const evb_db *db, int i, uint16_t *W);

/* The stored dtype of a checkpoint's weight dtype ("F32", "F16", "BF16": evb_config.dtype): EVB_DB_BF16,
 * EVB_DB_F16, or EVB_DB_F32 for anything else. */
int evb_db_dtype_of(const char *checkpoint_dtype);
/* "f32", "bf16", "f16", or "?" for a value out of range. */
const char *evb_db_dtype_name(int dtype);

/* Fingerprints: of a model (its configuration and every weight) and of a calibration set (its windows'
 * tokens and lengths). Written as 16 hex digits. */
struct evb_model;
struct evb_windows;
void evb_fingerprint_model(const struct evb_model *m, char hex[17]);
void evb_fingerprint_windows(const struct evb_windows *w, char hex[17]);

/* ---- expanded levels in memory ---- */

/* A bounded cache of expanded levels (float32 weights) of one database, shared by threads: get returns a
 * level, loading it when it is not held; release hands it back. Levels nobody holds are evicted, least
 * recently used first, to stay within max_bytes; a get that finds everything held goes over the bound
 * rather than fail (stats reports the peak). */
typedef struct evb_level_cache evb_level_cache;

int  evb_level_cache_alloc(const evb_db *db, size_t max_bytes, evb_level_cache **out);
/* The same, holding levels as bfloat16 (expanded by evb_db_load16) when bf16 is 1: half the bytes, in the
 * form a BF16 model computes with (evb_model_set_weight16). Such a cache answers evb_level_cache_get16 only. */
int  evb_level_cache_alloc_as(const evb_db *db, size_t max_bytes, int bf16, evb_level_cache **out);
void evb_level_cache_free(evb_level_cache *c);
/* Entry i's weights [rows, cols], valid until the matching release. */
int  evb_level_cache_get(evb_level_cache *c, int i, const float **W);
int  evb_level_cache_get16(evb_level_cache *c, int i, const uint16_t **W);
void evb_level_cache_release(evb_level_cache *c, int i);
void evb_level_cache_stats(const evb_level_cache *c, size_t *hits, size_t *misses, size_t *bytes, size_t *peak_bytes);

/* ---- building levels ---- */

/* One compression method: its name, its kind and how it compresses a layer. */
typedef struct evb_method {
    const char *name;   /* "magnitude", "wanda", "sparsegpt", "rtn", "gptq", "gguf", "gguf-rtn" */
    int kind;           /* evb_level_kind */
    int needs_stats;    /* 1: uses the calibration statistics */
    const struct evb_method_ops *ops;   /* private to compressors/: how it compresses one matrix */
} evb_method;

/* The methods by name, NULL if unknown. */
const evb_method *evb_method_find(const char *name);
/* Names of all methods, comma-separated, for messages. */
const char *evb_method_names(void);

/* What levels to build: sparse levels at each fraction of sparsities[n_sparsities], or the N:M pattern
 * when n_keep > 0, or EvoPress's equal-step grid when step_levels > 0; quantized levels at each of
 * bits[n_bits] with the given grid; GGUF levels of each of gguf_types[n_gguf_types] that a unit's row length
 * holds (evb_gguf_row_ok: k-quants need multiples of 256 inputs, the block-32 types multiples of 32).
 *
 * The equal-step grid (evopress.md 1.2): around a target sparsity s, level l of a unit of N weights removes
 * exactly round(s N) + l * step_weights weights, for l from -min(floor(base / step), step_levels) to
 * +min(floor((N - base) / step), step_levels). One step removes the same number of weights in every unit,
 * so raising one unit a level and lowering another keeps the model's total exactly constant. */
typedef struct evb_level_grid {
    const double *sparsities; int n_sparsities;
    int n_keep, m;
    const int *bits; int n_bits;
    int group_size, sym, act_order;
    double step_target; int step_levels; int64_t step_weights;
    const int *gguf_types; int n_gguf_types; /* GGUF levels: these types, each unit the ones its rows hold */
} evb_level_grid;

/* EvoPress's default step: int(0.5 min(s, 1 - s) / num_levels * dim^2) weights. */
int64_t evb_step_weights_default(const struct evb_model *m, double s, int num_levels);
/* The levels of a unit of n weights in the step grid: writes lo, hi (levels -lo .. +hi) and returns the
 * weights removed at level 0. */
int64_t evb_step_range(int64_t n, double s, int64_t step_weights, int num_levels, int *lo, int *hi);

struct evb_calib;
/* Computes every level of every unit that the database lacks, several levels in parallel (one OpenMP
 * thread each), and records it. Levels already present are verified (evb_db_verify) and skipped; a damaged
 * or missing payload is rebuilt (evb_db_n_replaced counts them), so a rerun after a kill or a damaged file
 * completes the build. Holds the writer lock throughout. Writes how many levels were built (the rebuilt
 * ones included) and how many were already there. */
int evb_db_build(evb_db *db, const struct evb_model *m, const struct evb_calib *c, const evb_method *method,
                 const evb_level_grid *grid, int *n_built, int *n_present,
                 void (*progress)(void *ctx, int done, int total), void *progress_ctx);

/* Builds the levels keys[n] name (unit and sparsity, n_removed or bits; the rest is filled in from the
 * method and grid) that the database lacks. */
int evb_db_build_entries(evb_db *db, const struct evb_model *m, const struct evb_calib *c, const evb_method *method,
                         const evb_level_grid *grid, const evb_db_entry *keys, int n, int *n_built);

/* The sequential protocol (SparseGPT/GPTQ): block by block, the statistics of block l are taken on the
 * outputs of blocks 0..l-1 as compressed at their level nearest calib_value (a sparsity, or bits), the
 * block's missing levels are built from them, and the block's calibration level is passed on. Levels
 * already present are reused (also as the level passed on), so a rerun after a kill completes the build
 * identically. The database's calibration fingerprint should name the protocol and calib_value (the
 * CLI does), since its levels depend on both. m's weights are dense again on return. */
struct evb_windows;
int evb_db_build_sequential(evb_db *db, struct evb_model *m, const struct evb_windows *w, int batch,
                            const evb_method *method, const evb_level_grid *grid, double calib_value,
                            int *n_built, int *n_present,
                            void (*progress)(void *ctx, int done, int total), void *progress_ctx);

/* xxHash64 of a buffer, as hex (17 bytes with the NUL), for fingerprints. */
void evb_hash_hex(const void *data, size_t n, uint64_t seed, char hex[17]);
uint64_t evb_hash64(const void *data, size_t n, uint64_t seed);

/* ---- the level databases under a cache directory ---- */

/* search keeps one level database per model and calibration set under a cache directory and never removes
 * them; these say what the directory holds and remove databases from it (compressors/dbdir.c). A directory
 * under the cache directory is a level database when it is a real directory (not a symbolic link) holding
 * index.msgpack as a regular file. Nothing else under the cache directory is counted or touched, and
 * everything below it is reached through descriptors opened with O_NOFOLLOW, so a symbolic link swapped in
 * under it is never followed. */
typedef struct evb_db_dir_entry {
    char     name[256];       /* its directory's name under the cache directory */
    uint64_t bytes;           /* on disk: the blocks its regular files take, as du counts them */
    int      levels;          /* entries of its index; -1 when the index cannot be read */
    char     model_fp[17], calib_fp[17]; /* the fingerprints its index records ("" when unreadable) */
    int64_t  mtime;           /* the index's last change, seconds since the epoch (0: unknown) */
    char    *error;           /* why the index cannot be read (levels -1), else NULL */
} evb_db_dir_entry;

/* What a cache directory holds; owned by the caller, freed with evb_db_dir_free. */
typedef struct evb_db_dir {
    int exists;                 /* 0: the directory does not exist (it then holds nothing) */
    int n;                      /* level databases */
    evb_db_dir_entry *entries;  /* [n], sorted by name */
    int n_other;                /* other entries directly under it: not level databases, never removed */
    uint64_t bytes;             /* the databases' bytes, in all */
} evb_db_dir;

/* Reads the level databases under cache_dir: each one's size, levels, fingerprints and last change (an
 * unreadable index is reported in its entry, not as an error). A cache directory that does not exist is
 * not an error either: *out then says exists 0. EVB_EIO when it cannot be read, EVB_ENOMEM. */
int  evb_db_dir_scan(const char *cache_dir, evb_db_dir **out);
void evb_db_dir_free(evb_db_dir *d);

/* Removes the level database name under cache_dir, taking its writer lock without waiting (as a build
 * takes it), and only when every file in it is one a database is made of (index.msgpack, .lock, payloads
 * uNNNN_*.bin, and killed writers' temporary files NAME.tmp.*). Payloads go first and the index last, so a
 * removal that is killed leaves a database that db build repairs or one that a second removal finishes; a
 * reader scoring candidates (it holds no lock) loses the levels it has not read yet. A database that is
 * left in place gives, with the reason as the message (no path in it): EVB_EIO when another process holds
 * its lock ("in use by another evobudget process ...") or a file cannot be removed, EVB_EFORMAT when it
 * holds a file no level database has (the first one named), EVB_EINVAL when name is not a level database. */
int  evb_db_dir_remove(const char *cache_dir, const char *name);

#ifdef __cplusplus
}
#endif
#endif
