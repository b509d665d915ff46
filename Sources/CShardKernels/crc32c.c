/* CRC-32C: a bitwise reference, a slicing-by-8 table version, and the SSE4.2 crc32
 * instruction over three interleaved streams (after Mark Adler's crc32c.c, zlib licence),
 * whose partial CRCs are joined with precomputed "shift by N zero bytes" tables. */
#include "CShardKernels.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ACS_X86 1
#endif

#define POLY 0x82f63b78u /* CRC-32C, reflected */

/* ---- reference: one bit at a time ---- */

static uint32_t crc32c_reference(uint32_t crc, const uint8_t *data, size_t length) {
    crc = ~crc;
    for (size_t i = 0; i < length; i++) {
        crc ^= data[i];
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (POLY & (0u - (crc & 1)));
    }
    return ~crc;
}

/* ---- GF(2) matrices for "append N zero bytes" ---- */

static uint32_t gf2_matrix_times(const uint32_t *mat, uint32_t vec) {
    uint32_t sum = 0;
    while (vec) {
        if (vec & 1) sum ^= *mat;
        vec >>= 1;
        mat++;
    }
    return sum;
}

static void gf2_matrix_square(uint32_t *square, const uint32_t *mat) {
    for (int n = 0; n < 32; n++) square[n] = gf2_matrix_times(mat, mat[n]);
}

/* Operator that appends `length` zero bytes (length a power of two). */
static void zeros_operator(uint32_t *even, size_t length) {
    uint32_t odd[32];
    uint32_t row = 1;
    odd[0] = POLY;
    for (int n = 1; n < 32; n++) {
        odd[n] = row;
        row <<= 1;
    }
    gf2_matrix_square(even, odd); /* 2 zero bits */
    gf2_matrix_square(odd, even); /* 4 zero bits */
    do {
        gf2_matrix_square(even, odd); /* 8, 32, 128, … bits */
        length >>= 1;
        if (length == 0) return;
        gf2_matrix_square(odd, even);
        length >>= 1;
    } while (length);
    memcpy(even, odd, sizeof odd);
}

uint32_t acs_crc32c_combine(uint32_t crc_a, uint32_t crc_b, size_t length_b) {
    if (length_b == 0) return crc_a;
    uint32_t even[32], odd[32];
    uint32_t row = 1;
    odd[0] = POLY;
    for (int n = 1; n < 32; n++) {
        odd[n] = row;
        row <<= 1;
    }
    gf2_matrix_square(even, odd);
    gf2_matrix_square(odd, even);
    do {
        gf2_matrix_square(even, odd);
        if (length_b & 1) crc_a = gf2_matrix_times(even, crc_a);
        length_b >>= 1;
        if (length_b == 0) break;
        gf2_matrix_square(odd, even);
        if (length_b & 1) crc_a = gf2_matrix_times(odd, crc_a);
        length_b >>= 1;
    } while (length_b);
    return crc_a ^ crc_b;
}

/* ---- tables, built once ---- */

#define LONG_STRIDE 8192
#define SHORT_STRIDE 256

static uint32_t slicing_table[8][256];
static uint32_t shift_long[4][256];
static uint32_t shift_short[4][256];
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void build_shift_table(uint32_t table[4][256], size_t length) {
    uint32_t op[32];
    zeros_operator(op, length);
    for (uint32_t n = 0; n < 256; n++) {
        table[0][n] = gf2_matrix_times(op, n);
        table[1][n] = gf2_matrix_times(op, n << 8);
        table[2][n] = gf2_matrix_times(op, n << 16);
        table[3][n] = gf2_matrix_times(op, n << 24);
    }
}

static void build_tables(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t crc = n;
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (POLY & (0u - (crc & 1)));
        slicing_table[0][n] = crc;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t crc = slicing_table[0][n];
        for (int k = 1; k < 8; k++) {
            crc = slicing_table[0][crc & 0xff] ^ (crc >> 8);
            slicing_table[k][n] = crc;
        }
    }
    build_shift_table(shift_long, LONG_STRIDE);
    build_shift_table(shift_short, SHORT_STRIDE);
}

static void ensure_tables(void) { pthread_once(&tables_once, build_tables); }

/* ---- portable: slicing-by-8 ---- */

static uint32_t crc32c_portable(uint32_t crc, const uint8_t *data, size_t length) {
    crc = ~crc;
    while (length && ((uintptr_t)data & 7)) {
        crc = slicing_table[0][(crc ^ *data++) & 0xff] ^ (crc >> 8);
        length--;
    }
    while (length >= 8) {
        uint64_t word;
        memcpy(&word, data, 8); /* little-endian hosts only (checked in the Swift wrapper) */
        word ^= crc;
        crc = slicing_table[7][word & 0xff] ^ slicing_table[6][(word >> 8) & 0xff] ^
              slicing_table[5][(word >> 16) & 0xff] ^ slicing_table[4][(word >> 24) & 0xff] ^
              slicing_table[3][(word >> 32) & 0xff] ^ slicing_table[2][(word >> 40) & 0xff] ^
              slicing_table[1][(word >> 48) & 0xff] ^ slicing_table[0][word >> 56];
        data += 8;
        length -= 8;
    }
    while (length--) crc = slicing_table[0][(crc ^ *data++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

/* ---- SSE4.2: three streams in flight hide the instruction's 3-cycle latency ---- */

#ifdef ACS_X86
static inline uint32_t shift_crc(uint32_t table[4][256], uint32_t crc) {
    return table[0][crc & 0xff] ^ table[1][(crc >> 8) & 0xff] ^ table[2][(crc >> 16) & 0xff] ^
           table[3][crc >> 24];
}

__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const uint8_t *data, size_t length) {
    uint64_t crc0 = (uint32_t)~crc;
    while (length && ((uintptr_t)data & 7)) {
        crc0 = _mm_crc32_u8((uint32_t)crc0, *data++);
        length--;
    }
    while (length >= 3 * LONG_STRIDE) {
        uint64_t crc1 = 0, crc2 = 0;
        const uint8_t *end = data + LONG_STRIDE;
        do {
            uint64_t a, b, c;
            memcpy(&a, data, 8);
            memcpy(&b, data + LONG_STRIDE, 8);
            memcpy(&c, data + 2 * LONG_STRIDE, 8);
            crc0 = _mm_crc32_u64(crc0, a);
            crc1 = _mm_crc32_u64(crc1, b);
            crc2 = _mm_crc32_u64(crc2, c);
            data += 8;
        } while (data < end);
        crc0 = shift_crc(shift_long, (uint32_t)crc0) ^ (uint32_t)crc1;
        crc0 = shift_crc(shift_long, (uint32_t)crc0) ^ (uint32_t)crc2;
        data += 2 * LONG_STRIDE;
        length -= 3 * LONG_STRIDE;
    }
    while (length >= 3 * SHORT_STRIDE) {
        uint64_t crc1 = 0, crc2 = 0;
        const uint8_t *end = data + SHORT_STRIDE;
        do {
            uint64_t a, b, c;
            memcpy(&a, data, 8);
            memcpy(&b, data + SHORT_STRIDE, 8);
            memcpy(&c, data + 2 * SHORT_STRIDE, 8);
            crc0 = _mm_crc32_u64(crc0, a);
            crc1 = _mm_crc32_u64(crc1, b);
            crc2 = _mm_crc32_u64(crc2, c);
            data += 8;
        } while (data < end);
        crc0 = shift_crc(shift_short, (uint32_t)crc0) ^ (uint32_t)crc1;
        crc0 = shift_crc(shift_short, (uint32_t)crc0) ^ (uint32_t)crc2;
        data += 2 * SHORT_STRIDE;
        length -= 3 * SHORT_STRIDE;
    }
    while (length >= 8) {
        uint64_t a;
        memcpy(&a, data, 8);
        crc0 = _mm_crc32_u64(crc0, a);
        data += 8;
        length -= 8;
    }
    while (length--) crc0 = _mm_crc32_u8((uint32_t)crc0, *data++);
    return ~(uint32_t)crc0;
}
#endif

/* ---- dispatch ---- */

int acs_cpu_sse42(void);
int acs_cpu_avx2(void);
int acs_cpu_avx512(void);

uint32_t acs_crc32c(uint32_t crc, const void *data, size_t length, acs_impl impl) {
    const uint8_t *bytes = (const uint8_t *)data;
    if (length == 0) return crc;
    impl = acs_impl_resolve(impl, 0);
    switch (impl) {
    case ACS_IMPL_REFERENCE:
        return crc32c_reference(crc, bytes, length);
#ifdef ACS_X86
    case ACS_IMPL_SSE42:
        ensure_tables();
        return crc32c_sse42(crc, bytes, length);
#endif
    default:
        ensure_tables();
        return crc32c_portable(crc, bytes, length);
    }
}
