/* CRC-32C: a bitwise reference, a slicing-by-8 table version, the SSE4.2 crc32 instruction
 * over three interleaved streams (after Mark Adler's crc32c.c, zlib licence), whose partial
 * CRCs are joined with precomputed "shift by N zero bytes" tables, and AVX-512 carry-less
 * multiplication (VPCLMULQDQ) that folds 256 bytes per step and ends with the crc32
 * instruction. */
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
/* Folding constants: fold_k[d] = {K_lo, K_hi} for a fold distance of d = 128, 256, 384, 512,
 * 1024, 1536, 2048 bits (index 0 … 6). */
static uint64_t fold_k[7][2];
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

/* t^n mod P (P = the CRC-32C polynomial, normal bit order), bit-reversed into the top half of
 * a 64-bit word: the form carry-less multiplication of reflected data needs. Folding a
 * 128-bit chunk forward by d bits multiplies its first (low) qword by t^(d+63) mod P and its
 * second by t^(d-1) mod P; the -1 absorbs the one-bit offset of reflected products. */
static uint64_t fold_constant(unsigned n) {
    uint64_t r = 1;
    for (unsigned i = 0; i < n; i++) {
        r <<= 1;
        if (r & (1ull << 32)) r ^= (1ull << 32) | 0x1EDC6F41ull;
    }
    uint32_t reversed = 0;
    for (int b = 0; b < 32; b++)
        if (r & (1ull << b)) reversed |= 1u << (31 - b);
    return (uint64_t)reversed << 32;
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
    static const unsigned distances[7] = {128, 256, 384, 512, 1024, 1536, 2048};
    for (int i = 0; i < 7; i++) {
        fold_k[i][0] = fold_constant(distances[i] + 63);
        fold_k[i][1] = fold_constant(distances[i] - 1);
    }
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

/* ---- AVX-512 VPCLMULQDQ: fold 4 x 64 bytes per step ----
 * The message's first bytes are the highest powers of t in a reflected CRC, so folding
 * replaces a 128-bit chunk A by A * t^d mod P, which keeps the message's value mod P, and a
 * CRC with zero initial state depends only on that value. The last 16 bytes left after
 * folding go through the crc32 instruction from state 0. */
#define VPCLMUL __attribute__((target("avx512f,avx512bw,avx512vl,vpclmulqdq,pclmul,sse4.2")))

VPCLMUL static inline __m512i fold512(__m512i x, __m512i k) {
    return _mm512_xor_si512(_mm512_clmulepi64_epi128(x, k, 0x00), _mm512_clmulepi64_epi128(x, k, 0x11));
}

VPCLMUL static inline __m128i fold128(__m128i x, const uint64_t k[2]) {
    __m128i kk = _mm_set_epi64x((long long)k[1], (long long)k[0]);
    return _mm_xor_si128(_mm_clmulepi64_si128(x, kk, 0x00), _mm_clmulepi64_si128(x, kk, 0x11));
}

VPCLMUL static inline __m512i broadcast_k(const uint64_t k[2]) {
    return _mm512_broadcast_i32x4(_mm_set_epi64x((long long)k[1], (long long)k[0]));
}

/* length >= 256 */
VPCLMUL static uint32_t crc32c_vpclmul(uint32_t crc, const uint8_t *data, size_t length) {
    __m512i x0 = _mm512_loadu_si512(data), x1 = _mm512_loadu_si512(data + 64);
    __m512i x2 = _mm512_loadu_si512(data + 128), x3 = _mm512_loadu_si512(data + 192);
    x0 = _mm512_xor_si512(x0, _mm512_zextsi128_si512(_mm_cvtsi32_si128((int)~crc)));
    data += 256;
    length -= 256;
    const __m512i k2048 = broadcast_k(fold_k[6]);
    while (length >= 256) {
        x0 = _mm512_xor_si512(fold512(x0, k2048), _mm512_loadu_si512(data));
        x1 = _mm512_xor_si512(fold512(x1, k2048), _mm512_loadu_si512(data + 64));
        x2 = _mm512_xor_si512(fold512(x2, k2048), _mm512_loadu_si512(data + 128));
        x3 = _mm512_xor_si512(fold512(x3, k2048), _mm512_loadu_si512(data + 192));
        data += 256;
        length -= 256;
    }
    /* Four accumulators into one: x0 is 1536 bits ahead of x3, x1 1024, x2 512. */
    __m512i x = _mm512_xor_si512(fold512(x0, broadcast_k(fold_k[5])), fold512(x1, broadcast_k(fold_k[4])));
    x = _mm512_xor_si512(x, _mm512_xor_si512(fold512(x2, broadcast_k(fold_k[3])), x3));
    /* Four lanes into one: lane 0 is 384 bits ahead of lane 3. */
    __m128i v = _mm_xor_si128(fold128(_mm512_extracti32x4_epi32(x, 0), fold_k[2]), fold128(_mm512_extracti32x4_epi32(x, 1), fold_k[1]));
    v = _mm_xor_si128(v, _mm_xor_si128(fold128(_mm512_extracti32x4_epi32(x, 2), fold_k[0]), _mm512_extracti32x4_epi32(x, 3)));
    while (length >= 16) {
        v = _mm_xor_si128(fold128(v, fold_k[0]), _mm_loadu_si128((const __m128i *)data));
        data += 16;
        length -= 16;
    }
    uint64_t state = _mm_crc32_u64(0, (uint64_t)_mm_cvtsi128_si64(v));
    state = _mm_crc32_u64(state, (uint64_t)_mm_extract_epi64(v, 1));
    while (length--) state = _mm_crc32_u8((uint32_t)state, *data++);
    return ~(uint32_t)state;
}
#endif

/* ---- dispatch ---- */

int acs_cpu_sse42(void);
int acs_cpu_avx2(void);
int acs_cpu_avx512(void);
int acs_cpu_vpclmul(void);

uint32_t acs_crc32c(uint32_t crc, const void *data, size_t length, acs_impl impl) {
    const uint8_t *bytes = (const uint8_t *)data;
    if (length == 0) return crc;
    impl = acs_impl_resolve(impl, 0);
    switch (impl) {
    case ACS_IMPL_REFERENCE:
        return crc32c_reference(crc, bytes, length);
#ifdef ACS_X86
    case ACS_IMPL_AVX512:
        ensure_tables();
        return length >= 256 ? crc32c_vpclmul(crc, bytes, length) : crc32c_sse42(crc, bytes, length);
    case ACS_IMPL_SSE42:
        ensure_tables();
        return crc32c_sse42(crc, bytes, length);
#endif
    default:
        ensure_tables();
        return crc32c_portable(crc, bytes, length);
    }
}
