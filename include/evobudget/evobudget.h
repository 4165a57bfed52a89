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
#include "evobudget/evb_timing.h"

#define EVB_VERSION "0.1.0"

#ifdef __cplusplus
extern "C" {
#endif

/* Once at start-up, before any thread exists: makes OpenBLAS single-threaded (the engine parallelises
 * with OpenMP itself, see models/blas.c). */
void evb_init(void);

/* The shared object serving cblas_sgemm at run time (should be libopenblas), for logs and tests. */
const char *evb_blas_library(void);

/* The kernel family OpenBLAS chose for this CPU ("Haswell", "SkylakeX", "Zen", ...). */
const char *evb_blas_core(void);

/* When OpenBLAS fell back to generic SSE kernels on a CPU it does not know but that has AVX2 or AVX-512
 * (Debian 12's OpenBLAS on recent Intel Xeons), the kernel family to ask for instead; NULL otherwise. */
const char *evb_blas_better_core(void);

/* For programs: when evb_blas_better_core() names a family and OPENBLAS_CORETYPE is unset, sets it and
 * re-executes the program with the same argv (OpenBLAS reads it only when it is loaded). Returns when
 * there is nothing to do or the exec failed. Call first thing in main, before any thread exists. */
void evb_blas_fix_core(char **argv);

#ifdef __cplusplus
}
#endif
#endif
