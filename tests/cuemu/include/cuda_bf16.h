#pragma once
#include <cstdint>
extern "C" {
#include "util.h"
}
struct __nv_bfloat16 { uint16_t x; };
static inline __nv_bfloat16 __float2bfloat16_rn(float v) { return __nv_bfloat16{pg_f32_to_bf16(v)}; }
