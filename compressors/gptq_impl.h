/* gptq_impl.h -- what GPTQ (quant.c) and GPTQ into GGUF grids (gguf_quant.c) share; private, never installed. */
#ifndef EVB_GPTQ_IMPL_H
#define EVB_GPTQ_IMPL_H
#include <stddef.h>

/* H [n, n] (the Gram matrix, dead inputs already set to 1 on the diagonal) is dampened by damp * mean(diag H)
 * and overwritten; U [n, n] gets the upper Cholesky factor of H^-1 with a positive diagonal, in float32 (the
 * factor fasterquant's chol(cholesky_inverse(chol(H)), upper) computes). EVB_EINVAL naming who when the
 * factorisation fails. */
int evb_gptq_factor(double *H, size_t n, double damp, float *U, const char *who);
#endif
