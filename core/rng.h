/* rng.h -- splitmix64 (private): a small, well-mixed generator whose sequence is fixed by the seed alone,
 * the one generator of the library: the search's per-candidate streams (search/search.c), window
 * sampling, batch order, perturbations. */
#ifndef EVB_CORE_RNG_H
#define EVB_CORE_RNG_H
#include <stdint.h>

static inline uint64_t evb_splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
#endif
