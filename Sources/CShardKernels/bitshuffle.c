/* Bitshuffle: bit-plane transpose by element size, in the layout of Blosc's BITSHUFFLE
 * filter (see the header). A bit-by-bit reference, a portable version built on the 8x8
 * bit-matrix transpose in a 64-bit word, and AVX2 / AVX-512 versions that pick the top bit
 * of every byte at once (movemask) and shift. */
#include "CShardKernels.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ACS_X86 1
#endif

/* ---- reference ---- */

static void shuffle_reference(const uint8_t *in, uint8_t *out, size_t count, size_t size) {
    size_t n8 = count & ~(size_t)7, plane = n8 / 8;
    memset(out, 0, n8 * size);
    for (size_t e = 0; e < n8; e++)
        for (size_t j = 0; j < size; j++)
            for (size_t k = 0; k < 8; k++)
                if ((in[e * size + j] >> k) & 1) out[(j * 8 + k) * plane + e / 8] |= (uint8_t)(1u << (e % 8));
    memcpy(out + n8 * size, in + n8 * size, (count - n8) * size);
}

static void unshuffle_reference(const uint8_t *in, uint8_t *out, size_t count, size_t size) {
    size_t n8 = count & ~(size_t)7, plane = n8 / 8;
    memset(out, 0, n8 * size);
    for (size_t e = 0; e < n8; e++)
        for (size_t j = 0; j < size; j++)
            for (size_t k = 0; k < 8; k++)
                if ((in[(j * 8 + k) * plane + e / 8] >> (e % 8)) & 1) out[e * size + j] |= (uint8_t)(1u << k);
    memcpy(out + n8 * size, in + n8 * size, (count - n8) * size);
}

/* ---- portable: groups of 8 elements, one 8x8 bit transpose per element byte ---- */

/* Byte i of x is row i; afterwards byte k holds bit k of every row (bit i from row i). */
static inline uint64_t transpose_8x8(uint64_t x) {
    uint64_t t;
    t = (x ^ (x >> 7)) & 0x00AA00AA00AA00AAull;
    x = x ^ t ^ (t << 7);
    t = (x ^ (x >> 14)) & 0x0000CCCC0000CCCCull;
    x = x ^ t ^ (t << 14);
    t = (x ^ (x >> 28)) & 0x00000000F0F0F0F0ull;
    x = x ^ t ^ (t << 28);
    return x;
}

/* Groups [first, last) of 8 elements; `plane` is the plane length in bytes (n8 / 8). */
static void shuffle_groups_portable(const uint8_t *in, uint8_t *out, size_t first, size_t last, size_t plane, size_t size) {
    for (size_t g = first; g < last; g++) {
        const uint8_t *src = in + g * 8 * size;
        for (size_t j = 0; j < size; j++) {
            uint64_t x = 0;
            for (size_t i = 0; i < 8; i++) x |= (uint64_t)src[i * size + j] << (8 * i);
            x = transpose_8x8(x);
            for (size_t k = 0; k < 8; k++) out[(j * 8 + k) * plane + g] = (uint8_t)(x >> (8 * k));
        }
    }
}

static void unshuffle_groups_portable(const uint8_t *in, uint8_t *out, size_t first, size_t last, size_t plane, size_t size) {
    for (size_t g = first; g < last; g++) {
        uint8_t *dst = out + g * 8 * size;
        for (size_t j = 0; j < size; j++) {
            uint64_t x = 0;
            for (size_t k = 0; k < 8; k++) x |= (uint64_t)in[(j * 8 + k) * plane + g] << (8 * k);
            x = transpose_8x8(x); /* the transpose is its own inverse */
            for (size_t i = 0; i < 8; i++) dst[i * size + j] = (uint8_t)(x >> (8 * i));
        }
    }
}

#ifdef ACS_X86

/* ---- AVX2: 32 elements per step ---- */

__attribute__((target("avx2"))) static void shuffle_avx2(const uint8_t *in, uint8_t *out, size_t count, size_t size) {
    size_t n8 = count & ~(size_t)7, plane = n8 / 8, n32 = count & ~(size_t)31;
    uint8_t row[32];
    for (size_t e = 0; e < n32; e += 32) {
        const uint8_t *src = in + e * size;
        for (size_t j = 0; j < size; j++) {
            for (size_t i = 0; i < 32; i++) row[i] = src[i * size + j];
            __m256i v = _mm256_loadu_si256((const __m256i *)row);
            for (int k = 7; k >= 0; k--) {
                uint32_t mask = (uint32_t)_mm256_movemask_epi8(v);
                memcpy(out + (j * 8 + (size_t)k) * plane + e / 8, &mask, 4);
                v = _mm256_add_epi8(v, v);
            }
        }
    }
    shuffle_groups_portable(in, out, n32 / 8, n8 / 8, plane, size);
}

__attribute__((target("avx2"))) static void unshuffle_avx2(const uint8_t *in, uint8_t *out, size_t count, size_t size) {
    size_t n8 = count & ~(size_t)7, plane = n8 / 8, n32 = count & ~(size_t)31;
    /* Byte i of the expanded mask takes mask byte i/8, then tests bit i%8. */
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                            2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bits = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    uint8_t row[32];
    for (size_t e = 0; e < n32; e += 32) {
        uint8_t *dst = out + e * size;
        for (size_t j = 0; j < size; j++) {
            __m256i v = _mm256_setzero_si256();
            for (size_t k = 0; k < 8; k++) {
                uint32_t mask;
                memcpy(&mask, in + (j * 8 + k) * plane + e / 8, 4);
                __m256i m = _mm256_shuffle_epi8(_mm256_set1_epi32((int)mask), spread);
                m = _mm256_cmpeq_epi8(_mm256_and_si256(m, bits), bits);
                v = _mm256_or_si256(v, _mm256_and_si256(m, _mm256_set1_epi8((char)(1u << k))));
            }
            _mm256_storeu_si256((__m256i *)row, v);
            for (size_t i = 0; i < 32; i++) dst[i * size + j] = row[i];
        }
    }
    unshuffle_groups_portable(in, out, n32 / 8, n8 / 8, plane, size);
}

/* ---- AVX-512 (F + BW): 64 elements per step ---- */

#define AVX512 __attribute__((target("avx512f,avx512bw")))

/* The 8 bit planes of the 64 bytes in v (byte i = element e + i) for element byte j, into
 * masks[(8j + k) * stride]. */
AVX512 static inline void planes_of_avx512(__m512i v, uint64_t *masks, size_t j, size_t stride) {
    for (int k = 7; k >= 0; k--) {
        masks[(j * 8 + (size_t)k) * stride] = (uint64_t)_mm512_movepi8_mask(v);
        v = _mm512_add_epi8(v, v);
    }
}

/* The 64 bytes of element byte j rebuilt from its 8 plane masks masks[(8j + k) * stride]. */
AVX512 static inline __m512i bytes_of_avx512(const uint64_t *masks, size_t j, size_t stride) {
    __m512i v = _mm512_setzero_si512();
    for (size_t k = 0; k < 8; k++)
        v = _mm512_or_si512(v, _mm512_maskz_mov_epi8((__mmask64)masks[(j * 8 + k) * stride], _mm512_set1_epi8((char)(1u << k))));
    return v;
}

/* All 8 * size plane masks of 64 elements at src: masks[p * stride] for plane p. */
AVX512 static inline void shuffle64_avx512(const uint8_t *src, size_t size, uint64_t *masks, size_t stride) {
    switch (size) {
    case 1:
        planes_of_avx512(_mm512_loadu_si512(src), masks, 0, stride);
        break;
    case 2: {
        __m512i a = _mm512_loadu_si512(src), b = _mm512_loadu_si512(src + 64);
        for (size_t j = 0; j < 2; j++) {
            __m256i lo = _mm512_cvtepi16_epi8(_mm512_srli_epi16(a, (unsigned)(8 * j)));
            __m256i hi = _mm512_cvtepi16_epi8(_mm512_srli_epi16(b, (unsigned)(8 * j)));
            planes_of_avx512(_mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1), masks, j, stride);
        }
        break;
    }
    case 4: {
        __m512i v[4];
        for (int q = 0; q < 4; q++) v[q] = _mm512_loadu_si512(src + 64 * q);
        for (size_t j = 0; j < 4; j++) {
            __m512i bytes = _mm512_castsi128_si512(_mm512_cvtepi32_epi8(_mm512_srli_epi32(v[0], (unsigned)(8 * j))));
            bytes = _mm512_inserti32x4(bytes, _mm512_cvtepi32_epi8(_mm512_srli_epi32(v[1], (unsigned)(8 * j))), 1);
            bytes = _mm512_inserti32x4(bytes, _mm512_cvtepi32_epi8(_mm512_srli_epi32(v[2], (unsigned)(8 * j))), 2);
            bytes = _mm512_inserti32x4(bytes, _mm512_cvtepi32_epi8(_mm512_srli_epi32(v[3], (unsigned)(8 * j))), 3);
            planes_of_avx512(bytes, masks, j, stride);
        }
        break;
    }
    default: { /* 8 */
        __m512i v[8];
        for (int q = 0; q < 8; q++) v[q] = _mm512_loadu_si512(src + 64 * q);
        for (size_t j = 0; j < 8; j++) {
            __m128i pair[4];
            for (int q = 0; q < 4; q++)
                pair[q] = _mm_unpacklo_epi64(_mm512_cvtepi64_epi8(_mm512_srli_epi64(v[2 * q], (unsigned)(8 * j))),
                                             _mm512_cvtepi64_epi8(_mm512_srli_epi64(v[2 * q + 1], (unsigned)(8 * j))));
            __m512i bytes = _mm512_castsi128_si512(pair[0]);
            bytes = _mm512_inserti32x4(bytes, pair[1], 1);
            bytes = _mm512_inserti32x4(bytes, pair[2], 2);
            bytes = _mm512_inserti32x4(bytes, pair[3], 3);
            planes_of_avx512(bytes, masks, j, stride);
        }
        break;
    }
    }
}

/* The inverse: 64 elements at dst from masks[p * stride]. */
AVX512 static inline void unshuffle64_avx512(const uint64_t *masks, size_t stride, size_t size, uint8_t *dst) {
    switch (size) {
    case 1:
        _mm512_storeu_si512(dst, bytes_of_avx512(masks, 0, stride));
        break;
    case 2: {
        __m512i lo = bytes_of_avx512(masks, 0, stride), hi = bytes_of_avx512(masks, 1, stride);
        for (int h = 0; h < 2; h++) {
            __m256i l = h ? _mm512_extracti64x4_epi64(lo, 1) : _mm512_castsi512_si256(lo);
            __m256i u = h ? _mm512_extracti64x4_epi64(hi, 1) : _mm512_castsi512_si256(hi);
            _mm512_storeu_si512(dst + 64 * h, _mm512_or_si512(_mm512_cvtepu8_epi16(l), _mm512_slli_epi16(_mm512_cvtepu8_epi16(u), 8)));
        }
        break;
    }
    case 4: {
        __m512i b[4];
        for (size_t j = 0; j < 4; j++) b[j] = bytes_of_avx512(masks, j, stride);
        for (int q = 0; q < 4; q++) {
            __m512i words = _mm512_setzero_si512();
            for (int j = 0; j < 4; j++) {
                __m128i part;
                switch (q) {
                case 0: part = _mm512_extracti32x4_epi32(b[j], 0); break;
                case 1: part = _mm512_extracti32x4_epi32(b[j], 1); break;
                case 2: part = _mm512_extracti32x4_epi32(b[j], 2); break;
                default: part = _mm512_extracti32x4_epi32(b[j], 3); break;
                }
                words = _mm512_or_si512(words, _mm512_slli_epi32(_mm512_cvtepu8_epi32(part), (unsigned)(8 * j)));
            }
            _mm512_storeu_si512(dst + 64 * q, words);
        }
        break;
    }
    default: { /* 8 */
        uint8_t rows[8][64];
        for (size_t j = 0; j < 8; j++) _mm512_storeu_si512(rows[j], bytes_of_avx512(masks, j, stride));
        for (int q = 0; q < 8; q++) {
            __m512i words = _mm512_setzero_si512();
            for (int j = 0; j < 8; j++)
                words = _mm512_or_si512(words, _mm512_slli_epi64(_mm512_cvtepu8_epi64(_mm_loadl_epi64((const __m128i *)(rows[j] + 8 * q))), (unsigned)(8 * j)));
            _mm512_storeu_si512(dst + 64 * q, words);
        }
        break;
    }
    }
}

/* Steps of 512 elements gather 64 bytes of every plane in a local buffer and move whole
 * cache lines: planes whose length is a multiple of 4 KiB (any power-of-two block) would
 * otherwise all land in one cache set and evict each other 8 bytes at a time. */
#define STEP 512

AVX512 static void shuffle_avx512(const uint8_t *in, uint8_t *out, size_t count, size_t size) {
    size_t n8 = count & ~(size_t)7, plane = n8 / 8, nstep = count - count % STEP, n64 = count & ~(size_t)63;
    uint64_t masks[64 * 8];
    for (size_t e0 = 0; e0 < nstep; e0 += STEP) {
        for (size_t s = 0; s < STEP / 64; s++) shuffle64_avx512(in + (e0 + 64 * s) * size, size, masks + s, STEP / 64);
        for (size_t p = 0; p < 8 * size; p++) memcpy(out + p * plane + e0 / 8, masks + p * (STEP / 64), STEP / 8);
    }
    for (size_t e = nstep; e < n64; e += 64) {
        shuffle64_avx512(in + e * size, size, masks, 1);
        for (size_t p = 0; p < 8 * size; p++) memcpy(out + p * plane + e / 8, masks + p, 8);
    }
    shuffle_groups_portable(in, out, n64 / 8, n8 / 8, plane, size);
}

AVX512 static void unshuffle_avx512(const uint8_t *in, uint8_t *out, size_t count, size_t size) {
    size_t n8 = count & ~(size_t)7, plane = n8 / 8, nstep = count - count % STEP, n64 = count & ~(size_t)63;
    uint64_t masks[64 * 8];
    for (size_t e0 = 0; e0 < nstep; e0 += STEP) {
        for (size_t p = 0; p < 8 * size; p++) memcpy(masks + p * (STEP / 64), in + p * plane + e0 / 8, STEP / 8);
        for (size_t s = 0; s < STEP / 64; s++) unshuffle64_avx512(masks + s, STEP / 64, size, out + (e0 + 64 * s) * size);
    }
    for (size_t e = nstep; e < n64; e += 64) {
        for (size_t p = 0; p < 8 * size; p++) memcpy(masks + p, in + p * plane + e / 8, 8);
        unshuffle64_avx512(masks, 1, size, out + e * size);
    }
    unshuffle_groups_portable(in, out, n64 / 8, n8 / 8, plane, size);
}
#endif

int acs_bitshuffle(const void *in, void *out, size_t count, size_t size, acs_impl impl) {
    if (size != 1 && size != 2 && size != 4 && size != 8) return -1;
    const uint8_t *src = (const uint8_t *)in;
    uint8_t *dst = (uint8_t *)out;
    size_t n8 = count & ~(size_t)7;
    switch (acs_impl_resolve(impl, 1)) {
    case ACS_IMPL_REFERENCE:
        shuffle_reference(src, dst, count, size);
        return 0;
#ifdef ACS_X86
    case ACS_IMPL_AVX2:
        shuffle_avx2(src, dst, count, size);
        break;
    case ACS_IMPL_AVX512:
        shuffle_avx512(src, dst, count, size);
        break;
#endif
    default:
        shuffle_groups_portable(src, dst, 0, n8 / 8, n8 / 8, size);
        break;
    }
    memcpy(dst + n8 * size, src + n8 * size, (count - n8) * size);
    return 0;
}

int acs_bitunshuffle(const void *in, void *out, size_t count, size_t size, acs_impl impl) {
    if (size != 1 && size != 2 && size != 4 && size != 8) return -1;
    const uint8_t *src = (const uint8_t *)in;
    uint8_t *dst = (uint8_t *)out;
    size_t n8 = count & ~(size_t)7;
    switch (acs_impl_resolve(impl, 1)) {
    case ACS_IMPL_REFERENCE:
        unshuffle_reference(src, dst, count, size);
        return 0;
#ifdef ACS_X86
    case ACS_IMPL_AVX2:
        unshuffle_avx2(src, dst, count, size);
        break;
    case ACS_IMPL_AVX512:
        unshuffle_avx512(src, dst, count, size);
        break;
#endif
    default:
        unshuffle_groups_portable(src, dst, 0, n8 / 8, n8 / 8, size);
        break;
    }
    memcpy(dst + n8 * size, src + n8 * size, (count - n8) * size);
    return 0;
}
