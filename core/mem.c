/* mem.c -- large buffers with transparent huge pages (see mem.h). */
#define _DEFAULT_SOURCE
#include "core/mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#define HUGE_PAGE ((uintptr_t)2 << 20)

void evb_advise_huge(void *p, size_t bytes) {
    uintptr_t a = ((uintptr_t)p + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
    uintptr_t b = ((uintptr_t)p + bytes) & ~(HUGE_PAGE - 1);
    if (p && b > a) (void)madvise((void *)a, b - a, MADV_HUGEPAGE);
}

void *evb_alloc_large(size_t bytes) {
    size_t n = (bytes + 63) & ~(size_t)63;
    if (n < bytes) return NULL;
    void *p = aligned_alloc(64, n ? n : 64);
    if (p && n >= HUGE_PAGE) evb_advise_huge(p, n);
    return p;
}
