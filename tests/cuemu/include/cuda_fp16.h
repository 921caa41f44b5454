#pragma once
#include <cstdint>
extern "C" {
#include "util.h"
}
struct __half { uint16_t x; };
static inline __half __float2half_rn(float v) { return __half{pg_f32_to_f16(v)}; }
