/* half.h -- bfloat16 conversions (private), the one definition the models, the level cache and the writers
 * share: round to nearest even, a NaN stays a NaN. */
#ifndef EVB_CORE_HALF_H
#define EVB_CORE_HALF_H
#include <stdint.h>
#include <string.h>

static inline uint16_t evb_bf16_round(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    if ((b & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((b >> 16) | 0x40);
    b += 0x7fffu + ((b >> 16) & 1);
    return (uint16_t)(b >> 16);
}

static inline float evb_bf16_value(uint16_t h) {
    uint32_t b = (uint32_t)h << 16;
    float f;
    memcpy(&f, &b, 4);
    return f;
}
#endif
