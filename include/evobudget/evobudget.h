/* evobudget.h -- the umbrella header: version, evb_init(), and every public header.
 *
 * Short names used throughout: U = compressible units, B = sequences, T = positions, D = model dim,
 * V = vocabulary, L = layers; ith/nth = thread index/count; w = workspace; params = user data. */
#ifndef EVOBUDGET_H
#define EVOBUDGET_H

#include "evobudget/evb_status.h"
#include "evobudget/evb_model.h"
#include "evobudget/evb_tokenizer.h"
#include "evobudget/evb_text.h"
#include "evobudget/evb_eval.h"

#define EVB_VERSION "0.1.0"

#ifdef __cplusplus
extern "C" {
#endif

/* Once at start-up, before any thread exists: makes OpenBLAS single-threaded (the engine parallelises
 * with OpenMP itself, see models/blas.c). */
void evb_init(void);

/* The shared object serving cblas_sgemm at run time (should be libopenblas), for logs and tests. */
const char *evb_blas_library(void);

#ifdef __cplusplus
}
#endif
#endif
