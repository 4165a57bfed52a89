/* mem.h -- large buffers (private): forward states, logits, teachers and reference log-probabilities.
 *
 * evb_alloc_large returns 64-byte aligned memory like aligned_alloc, and asks the kernel for transparent huge
 * pages on it (madvise MADV_HUGEPAGE, before anything touches it). Where THP is "madvise" (Debian's default)
 * a buffer of hundreds of megabytes is otherwise faulted in 4 KiB at a time, and on a virtual machine each
 * fault is expensive: the first pass over a 633 MB forward state took 128,000 faults. The advice is only a
 * hint: where THP is off, or the buffer is under 2 MiB, this is aligned_alloc. Free with free(). */
#ifndef EVB_CORE_MEM_H
#define EVB_CORE_MEM_H
#include <stddef.h>

void *evb_alloc_large(size_t bytes);
/* Advises huge pages on the whole 2 MiB pages inside [p, p + bytes) (for memory allocated elsewhere). */
void evb_advise_huge(void *p, size_t bytes);
#endif
