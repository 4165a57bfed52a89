/* hash.c -- xxHash64 for checksums and fingerprints (declared in evb_db.h, where its first users are). */
#include "evobudget/evb_db.h"

#include <stdio.h>
#include <xxhash.h>

uint64_t evb_hash64(const void *data, size_t n, uint64_t seed) { return XXH64(data, n, seed); }

void evb_hash_hex(const void *data, size_t n, uint64_t seed, char hex[17]) {
    snprintf(hex, 17, "%016llx", (unsigned long long)XXH64(data, n, seed));
}
