/* avx512vnni_quants.c - avx512_quants.c compiled again with -mavx512vnni
 * (Makefile): the same kernels with vpdpbusd / vpdpwssd, registered by
 * pg_kernels_fill_avx512 (avx512.c) only when the CPU has AVX512_VNNI. */
#ifndef __AVX512VNNI__
#error "avx512vnni_quants.c needs -mavx512vnni"
#endif
#include "avx512_quants.c"
