/* msgpack_scan.h -- the sizes of a msgpack object, checked before msgpack-c decodes it (core/).
 *
 * msgpack-c's unpacker allocates an array's or map's elements from the count in its header before it reads
 * them, and a string from its declared length: a 5-byte input can ask for gigabytes. Every reader of msgpack
 * that did not write it (the level database's index, a worker's replies) first walks the object's headers
 * here, bounding each length, count and the nesting, and decodes only what passes. */
#ifndef EVB_CORE_MSGPACK_SCAN_H
#define EVB_CORE_MSGPACK_SCAN_H

#include <stddef.h>
#include <stdint.h>

#define EVB_MSGPACK_MAX_DEPTH 32 /* the deepest nesting any reader may allow (msgpack-c's own stack) */

enum evb_msgpack_scan_result {
    EVB_MSGPACK_WHOLE = 0,       /* one complete object of info->len bytes starts the input */
    EVB_MSGPACK_MORE,            /* so far so good, but the object goes on past the input */
    EVB_MSGPACK_NOT_MSGPACK,     /* byte info->byte at info->pos is no msgpack type */
    EVB_MSGPACK_TOO_LONG,        /* the object would end beyond max_bytes */
    EVB_MSGPACK_TOO_MANY,        /* an array or map declares info->count elements (pairs) > max_elems */
    EVB_MSGPACK_TOO_DEEP,        /* arrays and maps nest deeper than max_depth */
};

typedef struct evb_msgpack_scan_info {
    size_t len;      /* WHOLE: the object's length */
    size_t pos;      /* NOT_MSGPACK: where */
    unsigned byte;   /* NOT_MSGPACK: the byte found there */
    uint64_t count;  /* TOO_MANY: the count declared */
    int pairs;       /* TOO_MANY: 1 for a map (count is pairs), 0 for an array */
} evb_msgpack_scan_info;

/* Walks the headers of the msgpack object at b[0..n) without decoding it. max_depth is at most
 * EVB_MSGPACK_MAX_DEPTH. */
int evb_msgpack_scan(const unsigned char *b, size_t n, size_t max_bytes, uint64_t max_elems, int max_depth,
                     evb_msgpack_scan_info *info);

#endif
