/* msgpack_scan.c -- walking msgpack headers before decoding (see core/msgpack_scan.h). */
#include "core/msgpack_scan.h"

#include <string.h>

static uint64_t be(const unsigned char *p, int k) {
    uint64_t v = 0;
    for (int i = 0; i < k; i++) v = v << 8 | p[i];
    return v;
}

int evb_msgpack_scan(const unsigned char *b, size_t n, size_t max_bytes, uint64_t max_elems, int max_depth,
                     evb_msgpack_scan_info *info) {
    uint64_t left[EVB_MSGPACK_MAX_DEPTH + 1];
    int depth = 0;
    size_t pos = 0;
    memset(info, 0, sizeof *info);
    if (max_depth > EVB_MSGPACK_MAX_DEPTH) max_depth = EVB_MSGPACK_MAX_DEPTH;
    left[0] = 1;
    while (depth >= 0) {
        if (left[depth] == 0) { depth--; continue; }
        left[depth]--;
        if (pos >= n) return EVB_MSGPACK_MORE;
        unsigned c = b[pos];
        int hdr = 1, lk = 0;          /* header bytes; bytes of a length field after the type byte */
        uint64_t body = 0, count = 0; /* payload bytes; elements of a container */
        int container = 0, pairs = 0;
        if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) hdr = 1;
        else if (c >= 0x80 && c <= 0x8f) { container = 1; pairs = 1; count = c & 0x0f; }
        else if (c >= 0x90 && c <= 0x9f) { container = 1; count = c & 0x0f; }
        else if (c >= 0xa0 && c <= 0xbf) body = c & 0x1f;
        else switch (c) {
        case 0xc4: case 0xd9: lk = 1; break;             /* bin 8, str 8 */
        case 0xc5: case 0xda: lk = 2; break;             /* bin 16, str 16 */
        case 0xc6: case 0xdb: lk = 4; break;             /* bin 32, str 32 */
        case 0xc7: lk = 1; body = 1; break;              /* ext 8: the length, then the type byte */
        case 0xc8: lk = 2; body = 1; break;
        case 0xc9: lk = 4; body = 1; break;
        case 0xca: body = 4; break;                      /* float 32 */
        case 0xcb: body = 8; break;                      /* float 64 */
        case 0xcc: case 0xd0: body = 1; break;
        case 0xcd: case 0xd1: body = 2; break;
        case 0xce: case 0xd2: body = 4; break;
        case 0xcf: case 0xd3: body = 8; break;
        case 0xd4: body = 2; break;                      /* fixext 1, 2, 4, 8, 16 (and their type byte) */
        case 0xd5: body = 3; break;
        case 0xd6: body = 5; break;
        case 0xd7: body = 9; break;
        case 0xd8: body = 17; break;
        case 0xdc: container = 1; lk = 2; break;         /* array 16, 32 */
        case 0xdd: container = 1; lk = 4; break;
        case 0xde: container = 1; pairs = 1; lk = 2; break; /* map 16, 32 */
        case 0xdf: container = 1; pairs = 1; lk = 4; break;
        default: info->pos = pos; info->byte = c; return EVB_MSGPACK_NOT_MSGPACK; /* 0xc1 is never used */
        }
        hdr += lk;
        if (n - pos < (size_t)hdr) return EVB_MSGPACK_MORE;
        if (lk) {
            uint64_t v = be(b + pos + 1, lk);
            if (container) count = v;
            else body += v;
        }
        if (container) {
            if (count > max_elems) { info->count = count; info->pairs = pairs; return EVB_MSGPACK_TOO_MANY; }
            pos += (size_t)hdr;
            if (count == 0) continue;
            if (depth == max_depth) return EVB_MSGPACK_TOO_DEEP;
            left[++depth] = pairs ? 2 * count : count;
            continue;
        }
        if (body > max_bytes || pos + hdr > max_bytes - body) return EVB_MSGPACK_TOO_LONG;
        if (n - pos - (size_t)hdr < body) return EVB_MSGPACK_MORE;
        pos += (size_t)hdr + (size_t)body;
    }
    info->len = pos;
    return EVB_MSGPACK_WHOLE;
}
