/* db_impl.h -- private entry points of the level database (compressors/db.c) for the fuzz targets and
 * tests; never installed. */
#ifndef EVB_DB_IMPL_H
#define EVB_DB_IMPL_H

#include <stddef.h>
#include <stdint.h>
#include "evobudget/evb_db.h"

/* Parses an index held in memory (the bytes of an index.msgpack; name stands for the directory in
 * messages) with every check evb_db_open makes, into a database opened for inspection. */
int evb_db_open_mem_(const char *name, const uint8_t *data, size_t size, evb_db **out);

/* Expands the payload p[size] of entry e into W [e->rows, e->cols], checking the payload against e and
 * every size in it (path names it in messages). The checksum is not checked here. */
int evb_db_expand_(const evb_db_entry *e, const uint8_t *p, size_t size, const char *path, float *W);
/* The same into bfloat16 W [e->rows, e->cols] (evb_db_load16's expansion). */
int evb_db_expand16_(const evb_db_entry *e, const uint8_t *p, size_t size, const char *path, uint16_t *W);

/* Rounds W [n] in place to the values a sparse level stored in dtype holds (evb_db_put_sparse's rule) and
 * returns the dtype they will be stored in: dtype, or EVB_DB_F32 where a value would overflow it. The
 * builders call it before measuring a level's error, so that the error is the stored level's. */
int evb_db_round_sparse_(int dtype, float *W, size_t n);

#endif
