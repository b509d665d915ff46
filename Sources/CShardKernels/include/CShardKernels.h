#ifndef ACTCLUSTER_CSHARDKERNELS_H
#define ACTCLUSTER_CSHARDKERNELS_H

/*
 * Kernels of the shard codec: CRC-32C, bitshuffle, float conversions and block transposes.
 * Every kernel has a plain reference version; faster versions are chosen at run time from
 * the CPU's features (per-function target attributes, no -march flags). Only the Swift
 * module `Shards` imports this header.
 */

#include <stddef.h>
#include <stdint.h>

/* Which implementation to run. AUTO picks the fastest one this CPU supports. */
typedef enum {
    ACS_IMPL_AUTO = 0,
    ACS_IMPL_REFERENCE = 1, /* plain loops, the definition the others are tested against */
    ACS_IMPL_PORTABLE = 2,  /* table-driven / 64-bit bit tricks, any CPU */
    ACS_IMPL_SSE42 = 3,     /* CRC-32C only: the crc32 instruction, 3 interleaved streams */
    ACS_IMPL_AVX2 = 4,
    ACS_IMPL_AVX512 = 5,    /* AVX-512 F + BW; for CRC-32C: VPCLMULQDQ folding */
    ACS_IMPL_AVX512_GFNI = 6 /* bitshuffle only: AVX-512 F + BW + VBMI and GFNI */
} acs_impl;

/* 1 if `impl` can run on this CPU and exists for `kernel` (0: crc32c, 1: bitshuffle, 2: convert). */
int acs_impl_available(acs_impl impl, int kernel);
/* The implementation AUTO resolves to for `kernel`. */
acs_impl acs_impl_resolve(acs_impl impl, int kernel);

/* CRC-32C (Castagnoli, reflected, init and final xor 0xFFFFFFFF). Pass the previous result
 * (0 for the first chunk) to continue over several chunks. crc32c("123456789") = 0xE3069283. */
uint32_t acs_crc32c(uint32_t crc, const void *data, size_t length, acs_impl impl);
/* crc32c(A ‖ B) from crc32c(A), crc32c(B) and the length of B. */
uint32_t acs_crc32c_combine(uint32_t crc_a, uint32_t crc_b, size_t length_b);

/*
 * Bitshuffle (the layout of Blosc's and bitshuffle's bit-plane transpose): for `count`
 * elements of `element_size` bytes (1, 2, 4 or 8), let n8 = count rounded down to a multiple
 * of 8. Output plane p = 8*j + k (byte j of the element, bit k of that byte) is n8/8 bytes
 * long; bit (e % 8) of its byte (e / 8) is bit k of byte j of element e. The count % 8
 * leftover elements follow the planes unchanged. `in` and `out` must not overlap.
 * Returns 0, or -1 for an unsupported element size or implementation.
 */
int acs_bitshuffle(const void *in, void *out, size_t count, size_t element_size, acs_impl impl);
int acs_bitunshuffle(const void *in, void *out, size_t count, size_t element_size, acs_impl impl);
/* bitunshuffle with plane p read from planes[p] (count / 8 bytes each, 8 * element_size planes)
 * and the count % 8 leftover elements from `tail`: the planes need not be contiguous. */
int acs_bitunshuffle_planes(const uint8_t *const *planes, const void *tail, void *out, size_t count, size_t element_size, acs_impl impl);

/* float32 -> bfloat16, round to nearest even; every NaN becomes 0x7FC0 (c10::BFloat16). */
void acs_f32_to_bf16(const float *in, uint16_t *out, size_t count, acs_impl impl);
/* bfloat16 -> float32, exact (the bits move up by 16). */
void acs_bf16_to_f32(const uint16_t *in, float *out, size_t count, acs_impl impl);
/* float32 -> IEEE binary16, round to nearest even, overflow to infinity, NaN quieted with
 * sign and top payload bits kept (what vcvtps2ph does). */
void acs_f32_to_f16(const float *in, uint16_t *out, size_t count, acs_impl impl);
/* IEEE binary16 -> float32, exact; NaN quieted with sign and payload kept (vcvtph2ps). */
void acs_f16_to_f32(const uint16_t *in, float *out, size_t count, acs_impl impl);

/* For each of `planes` consecutive planes of `plane_bytes` bytes at `data`: how many of up to
 * `sample` sampled bytes (four evenly spaced runs) are 0x00 or 0xFF, i.e. runs of 8 equal
 * bits. Noise-like planes (mantissa bits, signs) score about 2/256; planes that LZ4 can
 * shrink (high exponent bits) score far higher. counts[p] receives the count, and the
 * return value is the number of bytes sampled per plane. */
size_t acs_plane_run_bytes(const uint8_t *data, size_t plane_bytes, size_t planes, size_t sample, uint32_t *counts);

/* Storage types for the fused kernels below. */
typedef enum { ACS_DTYPE_F32 = 0, ACS_DTYPE_BF16 = 1, ACS_DTYPE_F16 = 2 } acs_dtype;

/* Row-major float32 [rows, cols] -> column-major [cols, rows] in `dtype` (converted as the
 * functions above do): out[c * rows + r] = convert(in[r * cols + c]). Returns 0 or -1. */
int acs_rows_to_columns(const float *in, void *out, size_t rows, size_t cols, acs_dtype dtype, acs_impl impl);
/* The inverse: column-major [cols, rows] in `dtype` -> row-major float32 [rows, cols]. */
int acs_columns_to_rows(const void *in, float *out, size_t rows, size_t cols, acs_dtype dtype, acs_impl impl);

#endif
