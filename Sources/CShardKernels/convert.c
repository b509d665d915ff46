/* float32 <-> bfloat16 / binary16 conversions, alone and fused with the block transpose. */
#include "CShardKernels.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ACS_X86 1
#endif

static inline uint32_t float_bits(float value) {
    uint32_t bits;
    memcpy(&bits, &value, 4);
    return bits;
}

static inline float bits_float(uint32_t bits) {
    float value;
    memcpy(&value, &bits, 4);
    return value;
}

/* ---- scalar definitions ---- */

static inline uint16_t bf16_from_bits(uint32_t u) {
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0; /* NaN, as c10::BFloat16 */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static inline uint16_t f16_from_bits(uint32_t u) {
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu)); /* NaN */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds to infinity */
    if (a >= 0x38800000u) { /* normal: rebias the exponent, round the 13 dropped bits */
        uint32_t r = a - 0x38000000u;
        r += 0xfffu + ((r >> 13) & 1u);
        return (uint16_t)(sign | (r >> 13));
    }
    if (a < 0x33000000u) return sign; /* below 2^-25 (or exactly it: tie to even 0) */
    uint32_t exponent = a >> 23, mantissa = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - exponent; /* 14 ... 24: the value in units of 2^-24 */
    uint32_t q = mantissa >> shift, rest = mantissa & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rest > half || (rest == half && (q & 1u))) q++;
    return (uint16_t)(sign | q);
}

static inline uint32_t f16_to_bits(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
    if (exponent == 0x1f) return sign | 0x7f800000u | (mantissa ? 0x400000u | (mantissa << 13) : 0u);
    if (exponent != 0) return sign | ((exponent + 112u) << 23) | (mantissa << 13);
    if (mantissa == 0) return sign;
    /* subnormal: normalise */
    uint32_t e = 113u;
    while (!(mantissa & 0x400u)) {
        mantissa <<= 1;
        e--;
    }
    return sign | (e << 23) | ((mantissa & 0x3ffu) << 13);
}

#ifdef ACS_X86

/* ---- AVX2 (+F16C) ---- */

__attribute__((target("avx2"))) static void f32_to_bf16_avx2(const float *in, uint16_t *out, size_t count) {
    size_t i = 0;
    const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7fff), nan = _mm256_set1_epi32(0x7fc0);
    for (; i + 16 <= count; i += 16) {
        __m256i r[2];
        for (int h = 0; h < 2; h++) {
            __m256 x = _mm256_loadu_ps(in + i + 8 * h);
            __m256i u = _mm256_castps_si256(x);
            __m256i t = _mm256_add_epi32(_mm256_add_epi32(u, bias), _mm256_and_si256(_mm256_srli_epi32(u, 16), one));
            t = _mm256_srli_epi32(t, 16);
            __m256i isnan = _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
            r[h] = _mm256_blendv_epi8(t, nan, isnan);
        }
        __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r[0], r[1]), 0xd8);
        _mm256_storeu_si256((__m256i *)(out + i), packed);
    }
    for (; i < count; i++) out[i] = bf16_from_bits(float_bits(in[i]));
}

__attribute__((target("avx2"))) static void bf16_to_f32_avx2(const uint16_t *in, float *out, size_t count) {
    size_t i = 0;
    for (; i + 8 <= count; i += 8) {
        __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(in + i)));
        _mm256_storeu_si256((__m256i *)(out + i), _mm256_slli_epi32(h, 16));
    }
    for (; i < count; i++) out[i] = bits_float((uint32_t)in[i] << 16);
}

__attribute__((target("avx2,f16c"))) static void f32_to_f16_avx2(const float *in, uint16_t *out, size_t count) {
    size_t i = 0;
    for (; i + 8 <= count; i += 8)
        _mm_storeu_si128((__m128i *)(out + i), _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < count; i++) out[i] = f16_from_bits(float_bits(in[i]));
}

__attribute__((target("avx2,f16c"))) static void f16_to_f32_avx2(const uint16_t *in, float *out, size_t count) {
    size_t i = 0;
    for (; i + 8 <= count; i += 8) _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(in + i))));
    for (; i < count; i++) out[i] = bits_float(f16_to_bits(in[i]));
}

/* ---- AVX-512 ---- */

#define AVX512 __attribute__((target("avx512f,avx512bw")))

AVX512 static void f32_to_bf16_avx512(const float *in, uint16_t *out, size_t count) {
    size_t i = 0;
    const __m512i one = _mm512_set1_epi32(1), bias = _mm512_set1_epi32(0x7fff), nan = _mm512_set1_epi32(0x7fc0);
    for (; i + 16 <= count; i += 16) {
        __m512 x = _mm512_loadu_ps(in + i);
        __m512i u = _mm512_castps_si512(x);
        __m512i t = _mm512_add_epi32(_mm512_add_epi32(u, bias), _mm512_and_si512(_mm512_srli_epi32(u, 16), one));
        t = _mm512_srli_epi32(t, 16);
        t = _mm512_mask_blend_epi32(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), t, nan);
        _mm256_storeu_si256((__m256i *)(out + i), _mm512_cvtepi32_epi16(t));
    }
    for (; i < count; i++) out[i] = bf16_from_bits(float_bits(in[i]));
}

AVX512 static void bf16_to_f32_avx512(const uint16_t *in, float *out, size_t count) {
    size_t i = 0;
    for (; i + 16 <= count; i += 16) {
        __m512i h = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(in + i)));
        _mm512_storeu_si512(out + i, _mm512_slli_epi32(h, 16));
    }
    for (; i < count; i++) out[i] = bits_float((uint32_t)in[i] << 16);
}

AVX512 static void f32_to_f16_avx512(const float *in, uint16_t *out, size_t count) {
    size_t i = 0;
    for (; i + 16 <= count; i += 16)
        _mm256_storeu_si256((__m256i *)(out + i), _mm512_cvtps_ph(_mm512_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < count; i++) out[i] = f16_from_bits(float_bits(in[i]));
}

AVX512 static void f16_to_f32_avx512(const uint16_t *in, float *out, size_t count) {
    size_t i = 0;
    for (; i + 16 <= count; i += 16) _mm512_storeu_ps(out + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(in + i))));
    for (; i < count; i++) out[i] = bits_float(f16_to_bits(in[i]));
}
#endif

void acs_f32_to_bf16(const float *in, uint16_t *out, size_t count, acs_impl impl) {
    switch (acs_impl_resolve(impl, 2)) {
#ifdef ACS_X86
    case ACS_IMPL_AVX512: f32_to_bf16_avx512(in, out, count); return;
    case ACS_IMPL_AVX2: f32_to_bf16_avx2(in, out, count); return;
#endif
    default:
        for (size_t i = 0; i < count; i++) out[i] = bf16_from_bits(float_bits(in[i]));
    }
}

void acs_bf16_to_f32(const uint16_t *in, float *out, size_t count, acs_impl impl) {
    switch (acs_impl_resolve(impl, 2)) {
#ifdef ACS_X86
    case ACS_IMPL_AVX512: bf16_to_f32_avx512(in, out, count); return;
    case ACS_IMPL_AVX2: bf16_to_f32_avx2(in, out, count); return;
#endif
    default:
        for (size_t i = 0; i < count; i++) out[i] = bits_float((uint32_t)in[i] << 16);
    }
}

void acs_f32_to_f16(const float *in, uint16_t *out, size_t count, acs_impl impl) {
    switch (acs_impl_resolve(impl, 2)) {
#ifdef ACS_X86
    case ACS_IMPL_AVX512: f32_to_f16_avx512(in, out, count); return;
    case ACS_IMPL_AVX2: f32_to_f16_avx2(in, out, count); return;
#endif
    default:
        for (size_t i = 0; i < count; i++) out[i] = f16_from_bits(float_bits(in[i]));
    }
}

void acs_f16_to_f32(const uint16_t *in, float *out, size_t count, acs_impl impl) {
    switch (acs_impl_resolve(impl, 2)) {
#ifdef ACS_X86
    case ACS_IMPL_AVX512: f16_to_f32_avx512(in, out, count); return;
    case ACS_IMPL_AVX2: f16_to_f32_avx2(in, out, count); return;
#endif
    default:
        for (size_t i = 0; i < count; i++) out[i] = bits_float(f16_to_bits(in[i]));
    }
}

/* ---- fused transpose + conversion ---- */

static inline uint16_t to_dtype16(float value, acs_dtype dtype) {
    return dtype == ACS_DTYPE_BF16 ? bf16_from_bits(float_bits(value)) : f16_from_bits(float_bits(value));
}

static inline float from_dtype16(uint16_t value, acs_dtype dtype) {
    return dtype == ACS_DTYPE_BF16 ? bits_float((uint32_t)value << 16) : bits_float(f16_to_bits(value));
}

/* Plain loops over rows [r0, r1) x columns [c0, c1): the reference, and the edges of the fast path. */
static void rows_to_columns_scalar(const float *in, void *out, size_t rows, size_t cols, acs_dtype dtype,
                                   size_t r0, size_t r1, size_t c0, size_t c1) {
    for (size_t r = r0; r < r1; r++)
        for (size_t c = c0; c < c1; c++) {
            if (dtype == ACS_DTYPE_F32)
                ((float *)out)[c * rows + r] = in[r * cols + c];
            else
                ((uint16_t *)out)[c * rows + r] = to_dtype16(in[r * cols + c], dtype);
        }
}

static void columns_to_rows_scalar(const void *in, float *out, size_t rows, size_t cols, acs_dtype dtype,
                                   size_t r0, size_t r1, size_t c0, size_t c1) {
    for (size_t r = r0; r < r1; r++)
        for (size_t c = c0; c < c1; c++) {
            if (dtype == ACS_DTYPE_F32)
                out[r * cols + c] = ((const float *)in)[c * rows + r];
            else
                out[r * cols + c] = from_dtype16(((const uint16_t *)in)[c * rows + r], dtype);
        }
}

#ifdef ACS_X86
#define AVX2F16C __attribute__((target("avx2,f16c")))

/* 8x8 transposes: rows in, columns out. */
AVX2F16C static inline void transpose8_ps(__m256 r[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int h = 0; h < 2; h++) {
        u[4 * h + 0] = _mm256_shuffle_ps(t[4 * h + 0], t[4 * h + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * h + 1] = _mm256_shuffle_ps(t[4 * h + 0], t[4 * h + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int k = 0; k < 4; k++) {
        r[k] = _mm256_permute2f128_ps(u[k], u[k + 4], 0x20);
        r[k + 4] = _mm256_permute2f128_ps(u[k], u[k + 4], 0x31);
    }
}

AVX2F16C static inline void transpose8_epi16(__m128i a[8]) {
    __m128i b[8], c[8];
    for (int i = 0; i < 4; i++) {
        b[2 * i] = _mm_unpacklo_epi16(a[2 * i], a[2 * i + 1]);
        b[2 * i + 1] = _mm_unpackhi_epi16(a[2 * i], a[2 * i + 1]);
    }
    for (int h = 0; h < 2; h++) {
        c[4 * h + 0] = _mm_unpacklo_epi32(b[4 * h + 0], b[4 * h + 2]);
        c[4 * h + 1] = _mm_unpackhi_epi32(b[4 * h + 0], b[4 * h + 2]);
        c[4 * h + 2] = _mm_unpacklo_epi32(b[4 * h + 1], b[4 * h + 3]);
        c[4 * h + 3] = _mm_unpackhi_epi32(b[4 * h + 1], b[4 * h + 3]);
    }
    for (int k = 0; k < 4; k++) {
        a[2 * k] = _mm_unpacklo_epi64(c[k], c[k + 4]);
        a[2 * k + 1] = _mm_unpackhi_epi64(c[k], c[k + 4]);
    }
}

AVX2F16C static inline __m128i bf16_from_ps_avx2(__m256 x) {
    __m256i u = _mm256_castps_si256(x);
    __m256i t = _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1)));
    t = _mm256_srli_epi32(t, 16);
    t = _mm256_blendv_epi8(t, _mm256_set1_epi32(0x7fc0), _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q)));
    return _mm_packus_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
}

/* One 8x8 tile: rows r0..r0+7, columns c0..c0+7. */
AVX2F16C static inline __attribute__((always_inline)) void rows_to_columns_tile(const float *in, void *out, size_t rows, size_t cols, acs_dtype dtype, size_t r0, size_t c0) {
    if (dtype == ACS_DTYPE_F32) {
        __m256 v[8];
        for (int i = 0; i < 8; i++) v[i] = _mm256_loadu_ps(in + (r0 + (size_t)i) * cols + c0);
        transpose8_ps(v);
        for (int k = 0; k < 8; k++) _mm256_storeu_ps((float *)out + (c0 + (size_t)k) * rows + r0, v[k]);
    } else {
        __m128i h[8];
        for (int i = 0; i < 8; i++) {
            __m256 x = _mm256_loadu_ps(in + (r0 + (size_t)i) * cols + c0);
            h[i] = dtype == ACS_DTYPE_BF16 ? bf16_from_ps_avx2(x) : _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        }
        transpose8_epi16(h);
        for (int k = 0; k < 8; k++) _mm_storeu_si128((__m128i *)((uint16_t *)out + (c0 + (size_t)k) * rows + r0), h[k]);
    }
}

AVX2F16C static inline __attribute__((always_inline)) void columns_to_rows_tile(const void *in, float *out, size_t rows, size_t cols, acs_dtype dtype, size_t r0, size_t c0) {
    if (dtype == ACS_DTYPE_F32) {
        __m256 v[8];
        for (int k = 0; k < 8; k++) v[k] = _mm256_loadu_ps((const float *)in + (c0 + (size_t)k) * rows + r0);
        transpose8_ps(v);
        for (int i = 0; i < 8; i++) _mm256_storeu_ps(out + (r0 + (size_t)i) * cols + c0, v[i]);
    } else {
        __m128i h[8];
        for (int k = 0; k < 8; k++) h[k] = _mm_loadu_si128((const __m128i *)((const uint16_t *)in + (c0 + (size_t)k) * rows + r0));
        transpose8_epi16(h);
        for (int i = 0; i < 8; i++) {
            __m256 x = dtype == ACS_DTYPE_BF16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h[i]), 16))
                                               : _mm256_cvtph_ps(h[i]);
            _mm256_storeu_ps(out + (r0 + (size_t)i) * cols + c0, x);
        }
    }
}

/* Packing walks the float32 rows in chunks of 32 rows: each chunk is read from memory once,
 * in order (with a prefetch of the next chunk), and each column of the chunk fills one whole
 * 64-byte line of 16-bit output. */
#define PACK_ROWS 32

AVX2F16C static void rows_to_columns_avx2(const float *in, void *out, size_t rows, size_t cols, acs_dtype dtype) {
    size_t rows8 = rows & ~(size_t)7, cols8 = cols & ~(size_t)7;
    for (size_t chunk = 0; chunk < rows8; chunk += PACK_ROWS) {
        size_t end = chunk + PACK_ROWS < rows8 ? chunk + PACK_ROWS : rows8;
        const char *next = (const char *)(in + end * cols);
        size_t next_bytes = (end + PACK_ROWS <= rows ? PACK_ROWS : rows - end) * cols * 4, prefetched = 0;
        size_t per_step = cols8 ? (next_bytes / 64) / (cols8 / 8) + 1 : 0;
        for (size_t c0 = 0; c0 < cols8; c0 += 8) {
            for (size_t i = 0; i < per_step && prefetched < next_bytes; i++, prefetched += 64) _mm_prefetch(next + prefetched, _MM_HINT_T0);
            for (size_t r0 = chunk; r0 < end; r0 += 8) rows_to_columns_tile(in, out, rows, cols, dtype, r0, c0);
        }
    }
    rows_to_columns_scalar(in, out, rows, cols, dtype, 0, rows8, cols8, cols);
    rows_to_columns_scalar(in, out, rows, cols, dtype, rows8, rows, 0, cols);
}

/* Unpacking writes the float32 rows 8 at a time, left to right, in whole 64-byte lines. */
AVX2F16C static void columns_to_rows_avx2(const void *in, float *out, size_t rows, size_t cols, acs_dtype dtype) {
    size_t rows8 = rows & ~(size_t)7, cols8 = cols & ~(size_t)7;
    for (size_t r0 = 0; r0 < rows8; r0 += 8) {
        for (size_t c0 = 0; c0 < cols8; c0 += 8) columns_to_rows_tile(in, out, rows, cols, dtype, r0, c0);
    }
    columns_to_rows_scalar(in, out, rows, cols, dtype, 0, rows8, cols8, cols);
    columns_to_rows_scalar(in, out, rows, cols, dtype, rows8, rows, 0, cols);
}

/* AVX-512: whole 64-byte lines of 16 floats per row, converted at once; the two 8x8 halves
 * are transposed as in the AVX2 version. 16-bit dtypes only (fp32 uses the AVX2 path). */
#define AVX512F16 __attribute__((target("avx512f,avx512bw,avx2,f16c")))

AVX512F16 static inline __m256i bf16_from_ps_avx512(__m512 x) {
    __m512i u = _mm512_castps_si512(x);
    __m512i t = _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1)));
    t = _mm512_srli_epi32(t, 16);
    t = _mm512_mask_blend_epi32(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), t, _mm512_set1_epi32(0x7fc0));
    return _mm512_cvtepi32_epi16(t);
}

AVX512F16 static void rows_to_columns_avx512(const float *in, void *out, size_t rows, size_t cols, acs_dtype dtype) {
    size_t rows8 = rows & ~(size_t)7, cols16 = cols & ~(size_t)15;
    uint16_t *dst = (uint16_t *)out;
    for (size_t chunk = 0; chunk < rows8; chunk += PACK_ROWS) {
        size_t end = chunk + PACK_ROWS < rows8 ? chunk + PACK_ROWS : rows8;
        const char *next = (const char *)(in + end * cols);
        size_t next_bytes = (end + PACK_ROWS <= rows ? PACK_ROWS : rows - end) * cols * 4, prefetched = 0;
        size_t per_step = cols16 ? (next_bytes / 64) / (cols16 / 16) + 1 : 0;
        for (size_t c0 = 0; c0 < cols16; c0 += 16) {
            for (size_t i = 0; i < per_step && prefetched < next_bytes; i++, prefetched += 64) _mm_prefetch(next + prefetched, _MM_HINT_T0);
            for (size_t r0 = chunk; r0 < end; r0 += 8) {
                __m128i lo[8], hi[8];
                for (int i = 0; i < 8; i++) {
                    __m512 x = _mm512_loadu_ps(in + (r0 + (size_t)i) * cols + c0);
                    __m256i h = dtype == ACS_DTYPE_BF16 ? bf16_from_ps_avx512(x) : _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                    lo[i] = _mm256_castsi256_si128(h);
                    hi[i] = _mm256_extracti128_si256(h, 1);
                }
                transpose8_epi16(lo);
                transpose8_epi16(hi);
                for (int k = 0; k < 8; k++) {
                    _mm_storeu_si128((__m128i *)(dst + (c0 + (size_t)k) * rows + r0), lo[k]);
                    _mm_storeu_si128((__m128i *)(dst + (c0 + 8 + (size_t)k) * rows + r0), hi[k]);
                }
            }
        }
    }
    /* Columns past the last multiple of 16 (8 at a time, then one by one) and the last rows. */
    size_t cols8 = cols & ~(size_t)7;
    for (size_t c0 = cols16; c0 < cols8; c0 += 8)
        for (size_t r0 = 0; r0 < rows8; r0 += 8) rows_to_columns_tile(in, out, rows, cols, dtype, r0, c0);
    rows_to_columns_scalar(in, out, rows, cols, dtype, 0, rows8, cols8, cols);
    rows_to_columns_scalar(in, out, rows, cols, dtype, rows8, rows, 0, cols);
}

AVX512F16 static void columns_to_rows_avx512(const void *in, float *out, size_t rows, size_t cols, acs_dtype dtype) {
    size_t rows8 = rows & ~(size_t)7, cols16 = cols & ~(size_t)15;
    const uint16_t *src = (const uint16_t *)in;
    for (size_t r0 = 0; r0 < rows8; r0 += 8) {
        for (size_t c0 = 0; c0 < cols16; c0 += 16) {
            __m128i lo[8], hi[8];
            for (int k = 0; k < 8; k++) {
                lo[k] = _mm_loadu_si128((const __m128i *)(src + (c0 + (size_t)k) * rows + r0));
                hi[k] = _mm_loadu_si128((const __m128i *)(src + (c0 + 8 + (size_t)k) * rows + r0));
            }
            transpose8_epi16(lo);
            transpose8_epi16(hi);
            for (int i = 0; i < 8; i++) {
                __m256i h = _mm256_inserti128_si256(_mm256_castsi128_si256(lo[i]), hi[i], 1);
                __m512 x = dtype == ACS_DTYPE_BF16 ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)) : _mm512_cvtph_ps(h);
                _mm512_storeu_ps(out + (r0 + (size_t)i) * cols + c0, x);
            }
        }
    }
    size_t cols8 = cols & ~(size_t)7;
    for (size_t r0 = 0; r0 < rows8; r0 += 8)
        for (size_t c0 = cols16; c0 < cols8; c0 += 8) columns_to_rows_tile(in, out, rows, cols, dtype, r0, c0);
    columns_to_rows_scalar(in, out, rows, cols, dtype, 0, rows8, cols8, cols);
    columns_to_rows_scalar(in, out, rows, cols, dtype, rows8, rows, 0, cols);
}
#endif

int acs_rows_to_columns(const float *in, void *out, size_t rows, size_t cols, acs_dtype dtype, acs_impl impl) {
    if (dtype != ACS_DTYPE_F32 && dtype != ACS_DTYPE_BF16 && dtype != ACS_DTYPE_F16) return -1;
    switch (acs_impl_resolve(impl, 2)) {
#ifdef ACS_X86
    case ACS_IMPL_AVX512:
        if (dtype != ACS_DTYPE_F32) {
            rows_to_columns_avx512(in, out, rows, cols, dtype);
            return 0;
        }
        rows_to_columns_avx2(in, out, rows, cols, dtype);
        return 0;
    case ACS_IMPL_AVX2:
        rows_to_columns_avx2(in, out, rows, cols, dtype);
        return 0;
#endif
    default:
        rows_to_columns_scalar(in, out, rows, cols, dtype, 0, rows, 0, cols);
        return 0;
    }
}

int acs_columns_to_rows(const void *in, float *out, size_t rows, size_t cols, acs_dtype dtype, acs_impl impl) {
    if (dtype != ACS_DTYPE_F32 && dtype != ACS_DTYPE_BF16 && dtype != ACS_DTYPE_F16) return -1;
    switch (acs_impl_resolve(impl, 2)) {
#ifdef ACS_X86
    case ACS_IMPL_AVX512:
        if (dtype != ACS_DTYPE_F32) {
            columns_to_rows_avx512(in, out, rows, cols, dtype);
            return 0;
        }
        columns_to_rows_avx2(in, out, rows, cols, dtype);
        return 0;
    case ACS_IMPL_AVX2:
        columns_to_rows_avx2(in, out, rows, cols, dtype);
        return 0;
#endif
    default:
        columns_to_rows_scalar(in, out, rows, cols, dtype, 0, rows, 0, cols);
        return 0;
    }
}
