/* Bitshuffle: bit-plane transpose by element size, in the layout of Blosc's BITSHUFFLE
 * filter (see the header). A bit-by-bit reference, a portable version built on the 8x8
 * bit-matrix transpose in a 64-bit word, AVX2 / AVX-512 versions that pick the top bit of
 * every byte at once (movemask) and shift, and an AVX-512 + GFNI version that transposes
 * 8x8 bit matrices with one gf2p8affineqb. */
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

/* The unshuffles read plane p from planes[p] (n8 / 8 bytes each), so planes need not be
 * contiguous: a decoder can point them straight into stored streams. */
static void unshuffle_reference(const uint8_t *const *planes, uint8_t *out, size_t count, size_t size) {
    size_t n8 = count & ~(size_t)7;
    memset(out, 0, n8 * size);
    for (size_t e = 0; e < n8; e++)
        for (size_t j = 0; j < size; j++)
            for (size_t k = 0; k < 8; k++)
                if ((planes[j * 8 + k][e / 8] >> (e % 8)) & 1) out[e * size + j] |= (uint8_t)(1u << k);
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

static void unshuffle_groups_portable(const uint8_t *const *planes, uint8_t *out, size_t first, size_t last, size_t size) {
    for (size_t g = first; g < last; g++) {
        uint8_t *dst = out + g * 8 * size;
        for (size_t j = 0; j < size; j++) {
            uint64_t x = 0;
            for (size_t k = 0; k < 8; k++) x |= (uint64_t)planes[j * 8 + k][g] << (8 * k);
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

__attribute__((target("avx2"))) static void unshuffle_avx2(const uint8_t *const *planes, uint8_t *out, size_t count, size_t size) {
    size_t n8 = count & ~(size_t)7, n32 = count & ~(size_t)31;
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
                memcpy(&mask, planes[j * 8 + k] + e / 8, 4);
                __m256i m = _mm256_shuffle_epi8(_mm256_set1_epi32((int)mask), spread);
                m = _mm256_cmpeq_epi8(_mm256_and_si256(m, bits), bits);
                v = _mm256_or_si256(v, _mm256_and_si256(m, _mm256_set1_epi8((char)(1u << k))));
            }
            _mm256_storeu_si256((__m256i *)row, v);
            for (size_t i = 0; i < 32; i++) dst[i * size + j] = row[i];
        }
    }
    unshuffle_groups_portable(planes, out, n32 / 8, n8 / 8, size);
}

/* ---- AVX-512 (F + BW): 64 elements per step ---- */

#define AVX512 __attribute__((target("avx512f,avx512bw")))

/* Byte j of 64 elements at src, for every j < size: bytes[j] (byte i = element i). */
AVX512 static inline void element_bytes_avx512(const uint8_t *src, size_t size, __m512i bytes[8]) {
    switch (size) {
    case 1:
        bytes[0] = _mm512_loadu_si512(src);
        break;
    case 2: {
        __m512i a = _mm512_loadu_si512(src), b = _mm512_loadu_si512(src + 64);
        for (size_t j = 0; j < 2; j++) {
            __m256i lo = _mm512_cvtepi16_epi8(_mm512_srli_epi16(a, (unsigned)(8 * j)));
            __m256i hi = _mm512_cvtepi16_epi8(_mm512_srli_epi16(b, (unsigned)(8 * j)));
            bytes[j] = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
        }
        break;
    }
    case 4: {
        __m512i v[4];
        for (int q = 0; q < 4; q++) v[q] = _mm512_loadu_si512(src + 64 * q);
        for (size_t j = 0; j < 4; j++) {
            __m512i b = _mm512_castsi128_si512(_mm512_cvtepi32_epi8(_mm512_srli_epi32(v[0], (unsigned)(8 * j))));
            b = _mm512_inserti32x4(b, _mm512_cvtepi32_epi8(_mm512_srli_epi32(v[1], (unsigned)(8 * j))), 1);
            b = _mm512_inserti32x4(b, _mm512_cvtepi32_epi8(_mm512_srli_epi32(v[2], (unsigned)(8 * j))), 2);
            bytes[j] = _mm512_inserti32x4(b, _mm512_cvtepi32_epi8(_mm512_srli_epi32(v[3], (unsigned)(8 * j))), 3);
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
            __m512i b = _mm512_castsi128_si512(pair[0]);
            b = _mm512_inserti32x4(b, pair[1], 1);
            b = _mm512_inserti32x4(b, pair[2], 2);
            bytes[j] = _mm512_inserti32x4(b, pair[3], 3);
        }
        break;
    }
    }
}

/* The inverse: 64 elements at dst from bytes[j] (byte i = byte j of element i). */
AVX512 static inline void elements_from_bytes_avx512(const __m512i bytes[8], size_t size, uint8_t *dst) {
    switch (size) {
    case 1:
        _mm512_storeu_si512(dst, bytes[0]);
        break;
    case 2:
        for (int h = 0; h < 2; h++) {
            __m256i l = h ? _mm512_extracti64x4_epi64(bytes[0], 1) : _mm512_castsi512_si256(bytes[0]);
            __m256i u = h ? _mm512_extracti64x4_epi64(bytes[1], 1) : _mm512_castsi512_si256(bytes[1]);
            _mm512_storeu_si512(dst + 64 * h, _mm512_or_si512(_mm512_cvtepu8_epi16(l), _mm512_slli_epi16(_mm512_cvtepu8_epi16(u), 8)));
        }
        break;
    case 4:
        for (int q = 0; q < 4; q++) {
            __m512i words = _mm512_setzero_si512();
            for (int j = 0; j < 4; j++) {
                __m128i part;
                switch (q) {
                case 0: part = _mm512_extracti32x4_epi32(bytes[j], 0); break;
                case 1: part = _mm512_extracti32x4_epi32(bytes[j], 1); break;
                case 2: part = _mm512_extracti32x4_epi32(bytes[j], 2); break;
                default: part = _mm512_extracti32x4_epi32(bytes[j], 3); break;
                }
                words = _mm512_or_si512(words, _mm512_slli_epi32(_mm512_cvtepu8_epi32(part), (unsigned)(8 * j)));
            }
            _mm512_storeu_si512(dst + 64 * q, words);
        }
        break;
    default: { /* 8 */
        uint8_t rows[8][64];
        for (size_t j = 0; j < 8; j++) _mm512_storeu_si512(rows[j], bytes[j]);
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

/* ---- AVX-512 F + BW: the top bit of every byte at once (movemask), then shift ---- */

AVX512 static void shuffle64_avx512(const uint8_t *src, size_t size, uint64_t *masks, size_t stride) {
    __m512i bytes[8];
    element_bytes_avx512(src, size, bytes);
    for (size_t j = 0; j < size; j++) {
        __m512i v = bytes[j];
        for (int k = 7; k >= 0; k--) {
            masks[(j * 8 + (size_t)k) * stride] = (uint64_t)_mm512_movepi8_mask(v);
            v = _mm512_add_epi8(v, v);
        }
    }
}

AVX512 static void unshuffle64_avx512(const uint64_t *masks, size_t stride, size_t size, uint8_t *dst) {
    __m512i bytes[8];
    for (size_t j = 0; j < size; j++) {
        __m512i v = _mm512_setzero_si512();
        for (size_t k = 0; k < 8; k++)
            v = _mm512_or_si512(v, _mm512_maskz_mov_epi8((__mmask64)masks[(j * 8 + k) * stride], _mm512_set1_epi8((char)(1u << k))));
        bytes[j] = v;
    }
    elements_from_bytes_avx512(bytes, size, dst);
}

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

AVX512 static void unshuffle_avx512(const uint8_t *const *planes, uint8_t *out, size_t count, size_t size) {
    size_t n8 = count & ~(size_t)7, nstep = count - count % STEP, n64 = count & ~(size_t)63;
    uint64_t masks[64 * 8];
    for (size_t e0 = 0; e0 < nstep; e0 += STEP) {
        for (size_t p = 0; p < 8 * size; p++) memcpy(masks + p * (STEP / 64), planes[p] + e0 / 8, STEP / 8);
        for (size_t s = 0; s < STEP / 64; s++) unshuffle64_avx512(masks + s, STEP / 64, size, out + (e0 + 64 * s) * size);
    }
    for (size_t e = nstep; e < n64; e += 64) {
        for (size_t p = 0; p < 8 * size; p++) memcpy(masks + p, planes[p] + e / 8, 8);
        unshuffle64_avx512(masks, 1, size, out + e * size);
    }
    unshuffle_groups_portable(planes, out, n64 / 8, n8 / 8, size);
}

/* ---- AVX-512 + VBMI + GFNI: an 8x8 bit transpose per 64-bit lane in one instruction ----
 *
 * gf2p8affine(x, A): byte b of each lane gets bit i = parity(A.byte[7 - i] & x.byte[b]); with
 * x.byte[b] = 1 << b that is bit b of A.byte[7 - i], a transpose with the rows reversed. Byte
 * permutations (vpermb) move the bytes of 8 planes or 8 elements into one lane and back. */

#define GFNI __attribute__((target("avx512f,avx512bw,avx512vbmi,gfni")))

/* lane m byte t <- lane m byte 7 - t */
static const uint8_t reverse_in_lane[64] = {
    7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8, 23, 22, 21, 20, 19, 18, 17, 16, 31, 30, 29, 28, 27, 26, 25, 24,
    39, 38, 37, 36, 35, 34, 33, 32, 47, 46, 45, 44, 43, 42, 41, 40, 55, 54, 53, 52, 51, 50, 49, 48, 63, 62, 61, 60, 59, 58, 57, 56};
/* byte 8k + m <- byte 8m + k (8x8 byte transpose) */
static const uint8_t transpose_bytes[64] = {
    0, 8, 16, 24, 32, 40, 48, 56, 1, 9, 17, 25, 33, 41, 49, 57, 2, 10, 18, 26, 34, 42, 50, 58, 3, 11, 19, 27, 35, 43, 51, 59,
    4, 12, 20, 28, 36, 44, 52, 60, 5, 13, 21, 29, 37, 45, 53, 61, 6, 14, 22, 30, 38, 46, 54, 62, 7, 15, 23, 31, 39, 47, 55, 63};
/* byte 8m + k <- byte 8(7 - k) + m (transpose, rows reversed) */
static const uint8_t transpose_bytes_reversed[64] = {
    56, 48, 40, 32, 24, 16, 8, 0, 57, 49, 41, 33, 25, 17, 9, 1, 58, 50, 42, 34, 26, 18, 10, 2, 59, 51, 43, 35, 27, 19, 11, 3,
    60, 52, 44, 36, 28, 20, 12, 4, 61, 53, 45, 37, 29, 21, 13, 5, 62, 54, 46, 38, 30, 22, 14, 6, 63, 55, 47, 39, 31, 23, 15, 7};

/* r[s] holds qwords M[s][0..7]; afterwards r[k] holds M[0..7][k]. */
GFNI static inline void transpose_qwords(__m512i r[8]) {
    __m512i t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm512_unpacklo_epi64(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi64(r[2 * i], r[2 * i + 1]);
    }
    for (int h = 0; h < 2; h++) {
        u[4 * h + 0] = _mm512_shuffle_i64x2(t[4 * h + 0], t[4 * h + 2], 0x88);
        u[4 * h + 1] = _mm512_shuffle_i64x2(t[4 * h + 0], t[4 * h + 2], 0xDD);
        u[4 * h + 2] = _mm512_shuffle_i64x2(t[4 * h + 1], t[4 * h + 3], 0x88);
        u[4 * h + 3] = _mm512_shuffle_i64x2(t[4 * h + 1], t[4 * h + 3], 0xDD);
    }
    r[0] = _mm512_shuffle_i64x2(u[0], u[4], 0x88);
    r[4] = _mm512_shuffle_i64x2(u[0], u[4], 0xDD);
    r[2] = _mm512_shuffle_i64x2(u[1], u[5], 0x88);
    r[6] = _mm512_shuffle_i64x2(u[1], u[5], 0xDD);
    r[1] = _mm512_shuffle_i64x2(u[2], u[6], 0x88);
    r[5] = _mm512_shuffle_i64x2(u[2], u[6], 0xDD);
    r[3] = _mm512_shuffle_i64x2(u[3], u[7], 0x88);
    r[7] = _mm512_shuffle_i64x2(u[3], u[7], 0xDD);
}

GFNI static void shuffle_gfni(const uint8_t *in, uint8_t *out, size_t count, size_t size) {
    size_t n8 = count & ~(size_t)7, plane = n8 / 8, nstep = count - count % STEP, n64 = count & ~(size_t)63;
    const __m512i identity = _mm512_set1_epi64((long long)0x8040201008040201ull);
    const __m512i reverse = _mm512_loadu_si512(reverse_in_lane), transpose = _mm512_loadu_si512(transpose_bytes);
    __m512i lines[8][8]; /* [element byte j][step s]: qword k = plane 8j + k for the step's 64 elements */
    for (size_t e0 = 0; e0 < nstep; e0 += STEP) {
        for (size_t s = 0; s < STEP / 64; s++) {
            __m512i bytes[8];
            element_bytes_avx512(in + (e0 + 64 * s) * size, size, bytes);
            for (size_t j = 0; j < size; j++) {
                __m512i bits = _mm512_gf2p8affine_epi64_epi8(identity, _mm512_permutexvar_epi8(reverse, bytes[j]), 0);
                lines[j][s] = _mm512_permutexvar_epi8(transpose, bits);
            }
        }
        for (size_t j = 0; j < size; j++) {
            transpose_qwords(lines[j]);
            for (size_t k = 0; k < 8; k++) _mm512_storeu_si512(out + (8 * j + k) * plane + e0 / 8, lines[j][k]);
        }
    }
    for (size_t e = nstep; e < n64; e += 64) {
        __m512i bytes[8];
        element_bytes_avx512(in + e * size, size, bytes);
        for (size_t j = 0; j < size; j++) {
            uint64_t qwords[8];
            __m512i bits = _mm512_gf2p8affine_epi64_epi8(identity, _mm512_permutexvar_epi8(reverse, bytes[j]), 0);
            _mm512_storeu_si512(qwords, _mm512_permutexvar_epi8(transpose, bits));
            for (size_t k = 0; k < 8; k++) memcpy(out + (8 * j + k) * plane + e / 8, &qwords[k], 8);
        }
    }
    shuffle_groups_portable(in, out, n64 / 8, n8 / 8, plane, size);
}

GFNI static void unshuffle_gfni(const uint8_t *const *planes, uint8_t *out, size_t count, size_t size) {
    size_t n8 = count & ~(size_t)7, nstep = count - count % STEP, n64 = count & ~(size_t)63;
    const __m512i identity = _mm512_set1_epi64((long long)0x8040201008040201ull);
    const __m512i gather = _mm512_loadu_si512(transpose_bytes_reversed);
    __m512i lines[8][8]; /* [element byte j][step s] */
    for (size_t e0 = 0; e0 < nstep; e0 += STEP) {
        for (size_t j = 0; j < size; j++) {
            for (size_t k = 0; k < 8; k++) lines[j][k] = _mm512_loadu_si512(planes[8 * j + k] + e0 / 8);
            transpose_qwords(lines[j]);
        }
        for (size_t s = 0; s < STEP / 64; s++) {
            __m512i bytes[8];
            for (size_t j = 0; j < size; j++)
                bytes[j] = _mm512_gf2p8affine_epi64_epi8(identity, _mm512_permutexvar_epi8(gather, lines[j][s]), 0);
            elements_from_bytes_avx512(bytes, size, out + (e0 + 64 * s) * size);
        }
    }
    for (size_t e = nstep; e < n64; e += 64) {
        __m512i bytes[8];
        for (size_t j = 0; j < size; j++) {
            uint64_t qwords[8];
            for (size_t k = 0; k < 8; k++) memcpy(&qwords[k], planes[8 * j + k] + e / 8, 8);
            bytes[j] = _mm512_gf2p8affine_epi64_epi8(identity, _mm512_permutexvar_epi8(gather, _mm512_loadu_si512(qwords)), 0);
        }
        elements_from_bytes_avx512(bytes, size, out + e * size);
    }
    unshuffle_groups_portable(planes, out, n64 / 8, n8 / 8, size);
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
    case ACS_IMPL_AVX512_GFNI:
        shuffle_gfni(src, dst, count, size);
        break;
#endif
    default:
        shuffle_groups_portable(src, dst, 0, n8 / 8, n8 / 8, size);
        break;
    }
    memcpy(dst + n8 * size, src + n8 * size, (count - n8) * size);
    return 0;
}

int acs_bitunshuffle_planes(const uint8_t *const *planes, const void *tail, void *out, size_t count, size_t size, acs_impl impl) {
    if (size != 1 && size != 2 && size != 4 && size != 8) return -1;
    uint8_t *dst = (uint8_t *)out;
    size_t n8 = count & ~(size_t)7;
    switch (acs_impl_resolve(impl, 1)) {
    case ACS_IMPL_REFERENCE:
        unshuffle_reference(planes, dst, count, size);
        break;
#ifdef ACS_X86
    case ACS_IMPL_AVX2:
        unshuffle_avx2(planes, dst, count, size);
        break;
    case ACS_IMPL_AVX512:
        unshuffle_avx512(planes, dst, count, size);
        break;
    case ACS_IMPL_AVX512_GFNI:
        unshuffle_gfni(planes, dst, count, size);
        break;
#endif
    default:
        unshuffle_groups_portable(planes, dst, 0, n8 / 8, size);
        break;
    }
    if (count > n8) memcpy(dst + n8 * size, tail, (count - n8) * size);
    return 0;
}

int acs_bitunshuffle(const void *in, void *out, size_t count, size_t size, acs_impl impl) {
    if (size != 1 && size != 2 && size != 4 && size != 8) return -1;
    const uint8_t *src = (const uint8_t *)in;
    size_t n8 = count & ~(size_t)7, plane = n8 / 8;
    const uint8_t *planes[64];
    for (size_t p = 0; p < 8 * size; p++) planes[p] = src + p * plane;
    return acs_bitunshuffle_planes(planes, src + n8 * size, out, count, size, impl);
}

/* ---- plane statistics for choosing which planes to compress ---- */

static uint32_t count_run_bytes(const uint8_t *data, size_t length) {
    uint32_t count = 0;
    for (size_t i = 0; i < length; i++) count += (uint8_t)(data[i] + 1) <= 1; /* 0xFF -> 0, 0x00 -> 1 */
    return count;
}

size_t acs_plane_run_bytes(const uint8_t *data, size_t plane_bytes, size_t planes, size_t sample, uint32_t *counts) {
    size_t piece = sample / 4;
    if (piece == 0 || plane_bytes <= sample) {
        for (size_t p = 0; p < planes; p++) counts[p] = count_run_bytes(data + p * plane_bytes, plane_bytes);
        return plane_bytes;
    }
    size_t step = (plane_bytes - piece) / 3;
    for (size_t p = 0; p < planes; p++) {
        const uint8_t *plane = data + p * plane_bytes;
        uint32_t count = 0;
        for (size_t k = 0; k < 4; k++) count += count_run_bytes(plane + k * step, piece);
        counts[p] = count;
    }
    return 4 * piece;
}
