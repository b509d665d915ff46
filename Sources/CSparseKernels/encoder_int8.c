/* The TopK encoder with an int8 prescreen (AVX-512 VNNI). TopK only needs the *set* of the k
 * largest pre-activations to be right; the values that go on must be exact. So:
 *
 *  1. W_enc is quantised per latent (symmetric int8) and each row of x − b_dec per row (int8,
 *     stored +128 as u8), and an int8 GEMM (VPDPBUSD, twice the MACs per cycle of fp32 FMA)
 *     gives an approximate pre-activation a with a rigorous bound δ on its error:
 *        x·w = s_x s_w (x_q·w_q) + s_x (x_q·r_w) + r_x·w        (r: the rounding residuals)
 *        |s_x (x_q·r_w)| ≤ s_x‖x_q‖ ‖r_w‖,  |r_x·w| ≤ ‖r_x‖ ‖w‖   (Cauchy–Schwarz)
 *     plus slack for the float rounding of both a and the exact recompute.
 *  2. Register tiles are filtered as in encoder.c, but against interval bounds: a latent is a
 *     candidate while a + δ exceeds the row's running threshold, the k-th largest a − δ seen
 *     (which never exceeds the true k-th value).
 *  3. The candidates that survive the final threshold are recomputed in fp32 (sorted by latent,
 *     so that each W_enc row is read once per chunk of rows) and the exact top k is chosen
 *     from the exact values. Every latent of the true top k is among them, so the selection is
 *     the one the fp32 encoder makes (up to ties within float rounding).
 *
 * AuxK (the top aux_k among the latents in the first slots) is a second candidate set over
 * those slots, handled the same way. A row whose candidates do not fit their buffer (a band
 * of near-ties wider than the buffer) is computed exactly over every latent instead. */
#include "CSparseKernels.h"
#include "selection_avx512.h"

#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NR SK_PANEL
#define MR SK_TILE_ROWS
/* An int8 panel is a quarter of an fp32 one, so a block of 32 panels (393 KB at d = 384)
 * still sits in L2. */
#define BLOCK_PANELS 32
#define CHUNK_ROWS (43 * MR)
/* Rows computed over every latent together (those whose candidates overflowed). */
#define FULL_ROWS 16

#define META_SCALE 0
#define META_CORR 1
#define META_BIAS 2
#define META_RESIDUAL 3
#define META_NORM 4
#define META_BIAS_SLACK 5

int sk_int8_encoder_available(void) {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni");
}

size_t sk_int8_panel_bytes(size_t d) { return (d + 3) / 4 * 4 * NR; }

/* Relative slack for float rounding: the approximate value (two roundings of a product no
 * larger than ‖x‖‖w‖), the exact recompute (at most d roundings of partial sums bounded by
 * ‖x‖‖w‖) and the norms themselves. */
static float rounding_slack(size_t d) { return (float)(d + 64) * 0x1p-24f; }

__attribute__((target("avx512f"))) static inline float sum16(__m512 v) { return _mm512_reduce_add_ps(v); }

/* Quantises v [d] with scale max|v|/127 (symmetric, round to nearest): writes the int8 values
 * four at a time as int32 words to out[(c / 4) * stride] and returns the scale; ‖v‖², ‖r‖²
 * (r = v − s·q, one rounding per element by the FMA) and Σq go to the pointers. Each word is
 * XORed with `flip` (0x80808080: stored as u8 q + 128). Float sums:
 * their rounding is inside the slack the callers add. */
__attribute__((target("avx512f,avx512bw"))) static float quantize_row(const float *v, size_t d, int32_t *out, size_t stride,
                                                                       int32_t flip, float *norm2, float *residual2, int32_t *sum) {
    __m512 top = _mm512_setzero_ps();
    size_t full = d / 16 * 16;
    __mmask16 tail = (__mmask16)((1u << (d - full)) - 1);
    for (size_t c = 0; c < full; c += 16) top = _mm512_max_ps(top, _mm512_abs_ps(_mm512_loadu_ps(v + c)));
    if (tail) top = _mm512_max_ps(top, _mm512_abs_ps(_mm512_maskz_loadu_ps(tail, v + full)));
    float t = _mm512_reduce_max_ps(top);
    float scale = t / 127.0f, inverse = t > 0 ? 127.0f / t : 0.0f;
    __m512 s = _mm512_set1_ps(scale), inv = _mm512_set1_ps(inverse), lim = _mm512_set1_ps(127.0f);
    __m512 nn = _mm512_setzero_ps(), rr = _mm512_setzero_ps();
    __m512i qs = _mm512_setzero_si512();
    for (size_t c = 0; c < d; c += 16) {
        __mmask16 live = d - c >= 16 ? (__mmask16)0xffff : tail;
        __m512 x = _mm512_maskz_loadu_ps(live, v + c);
        __m512 q = _mm512_roundscale_ps(_mm512_mul_ps(x, inv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        q = _mm512_min_ps(lim, _mm512_max_ps(_mm512_sub_ps(_mm512_setzero_ps(), lim), q));
        __m512 r = _mm512_fnmadd_ps(s, q, x);
        nn = _mm512_fmadd_ps(x, x, nn);
        rr = _mm512_fmadd_ps(r, r, rr);
        __m512i qi = _mm512_cvtps_epi32(q);
        qs = _mm512_add_epi32(qs, qi);
        int32_t words[4];
        _mm_storeu_si128((__m128i *)words, _mm512_cvtepi32_epi8(qi));
        size_t groups = (d - c + 3) / 4 < 4 ? (d - c + 3) / 4 : 4;
        for (size_t g = 0; g < groups; g++) out[(c / 4 + g) * stride] = words[g] ^ flip;
    }
    *norm2 = _mm512_reduce_add_ps(nn);
    *residual2 = _mm512_reduce_add_ps(rr);
    *sum = _mm512_reduce_add_epi32(qs);
    return scale;
}

__attribute__((target("avx512f,avx512bw"))) void sk_quantize_encoder(const float *W, const float *bias, const int32_t *order,
                                                                      size_t m, size_t d, size_t panel_lo, size_t panel_hi,
                                                                      int8_t *packed, float *meta) {
    size_t d4 = (d + 3) / 4;
    float slack = rounding_slack(d);
    for (size_t p = panel_lo; p < panel_hi; p++) {
        int8_t *out = packed + p * d4 * 4 * NR;
        float *mt = meta + p * 6 * NR;
        if ((p + 1) * NR > m) memset(out, 0, d4 * 4 * NR);
        for (size_t j = 0; j < NR; j++) {
            size_t slot = p * NR + j;
            if (slot >= m) {
                /* Padding: never a candidate. */
                mt[META_SCALE * NR + j] = 0.0f;
                memset(&mt[META_CORR * NR + j], 0, sizeof(float));
                mt[META_BIAS * NR + j] = -INFINITY;
                mt[META_RESIDUAL * NR + j] = mt[META_NORM * NR + j] = mt[META_BIAS_SLACK * NR + j] = 0.0f;
                continue;
            }
            float norm2, residual2;
            int32_t sum;
            float scale = quantize_row(W + (size_t)order[slot] * d, d, (int32_t *)out + j, NR, 0, &norm2, &residual2, &sum);
            float b = bias ? bias[order[slot]] : 0.0f;
            mt[META_SCALE * NR + j] = scale;
            /* The u8 rows carry +128: Σ (x_q + 128) w_q = x_q·w_q + 128 Σ w_q. */
            int32_t corr = 128 * sum;
            memcpy(&mt[META_CORR * NR + j], &corr, sizeof corr);
            mt[META_BIAS * NR + j] = b;
            float rn = sqrtf(residual2) * (1.0f + slack), wn = sqrtf(norm2) * (1.0f + slack);
            /* ‖r_w‖ ≤ ‖w‖, so slack on ‖w‖ covers the ‖x‖ (‖w‖ + ‖r_w‖) rounding terms. */
            mt[META_RESIDUAL * NR + j] = rn + 2.0f * slack * wn;
            mt[META_NORM * NR + j] = wn;
            mt[META_BIAS_SLACK * NR + j] = fabsf(b) * 0x1p-20f + 0x1p-100f;
        }
    }
}

/* Interval candidates of one selection (main or AuxK) per row: upper and lower bounds and the
 * slot, appended in slot order. `threshold` never exceeds the row's true k-th value among the
 * latents seen; a latent whose upper bound does not beat it cannot be in the top k. */
typedef struct {
    float *upper, *lower;
    int32_t *slot;
    uint32_t *count;
    float *threshold;
    uint8_t *overflow;
    size_t k, capacity;
} bounds;

/* Keeps entries i of a row with upper[i] >= t (and lower, slot with them); returns how many. */
__attribute__((target("avx512f"))) static size_t keep_upper_at_least(float *u, float *l, int32_t *s, size_t n, float t) {
    size_t kept = 0;
    __mmask16 tail = (__mmask16)((1u << (n % 16)) - 1);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 live = n - i >= 16 ? (__mmask16)0xffff : tail;
        __m512 x = _mm512_maskz_loadu_ps(live, u + i), y = _mm512_maskz_loadu_ps(live, l + i);
        __m512i id = _mm512_maskz_loadu_epi32(live, s + i);
        __mmask16 keep = _mm512_mask_cmp_ps_mask(live, x, _mm512_set1_ps(t), _CMP_GE_OQ);
        _mm512_mask_compressstoreu_ps(u + kept, keep, x);
        _mm512_mask_compressstoreu_ps(l + kept, keep, y);
        _mm512_mask_compressstoreu_epi32(s + kept, keep, id);
        kept += (size_t)__builtin_popcount(keep);
    }
    return kept;
}

/* Makes room in a full row: raises the threshold to the largest of 16 sampled lower bounds
 * with at least k lower bounds >= it (so it stays below the true k-th value), and drops the
 * entries whose upper bound is below it. If that frees too little, the exact k-th lower bound;
 * if even that leaves the buffer full, the row overflows and is done exactly later. */
__attribute__((target("avx512f"))) static void shrink(const bounds *c, size_t row) {
    float *u = c->upper + row * c->capacity, *l = c->lower + row * c->capacity;
    int32_t *s = c->slot + row * c->capacity;
    size_t n = c->count[row];
    float t = c->threshold[row];
    for (size_t j = 0; j < 16; j++) {
        float candidate = l[(j * n) / 16];
        if (candidate > t && count_at_least(l, n, candidate) >= c->k) t = candidate;
    }
    size_t kept = keep_upper_at_least(u, l, s, n, t);
    if (kept + NR > c->capacity && kept >= c->k) {
        float exact = kth_largest(l, kept, c->k);
        if (exact > t) t = exact;
        kept = keep_upper_at_least(u, l, s, kept, t);
    }
    c->count[row] = (uint32_t)kept;
    c->threshold[row] = t;
    if (kept + NR > c->capacity) {
        c->overflow[row] = 1;
        c->threshold[row] = INFINITY;
        c->count[row] = 0;
    }
}

__attribute__((target("avx512f"))) static inline void append(const bounds *c, size_t row, __m512 u0, __m512 u1, __m512 l0,
                                                             __m512 l1, __m512i s0, __m512i s1, __mmask16 valid0,
                                                             __mmask16 valid1) {
    __m512 t = _mm512_set1_ps(c->threshold[row]);
    __mmask16 m0 = _mm512_mask_cmp_ps_mask(valid0, u0, t, _CMP_GT_OQ), m1 = _mm512_mask_cmp_ps_mask(valid1, u1, t, _CMP_GT_OQ);
    if (!(m0 | m1)) return;
    if (c->count[row] + NR > c->capacity) {
        shrink(c, row);
        if (c->overflow[row]) return;
        t = _mm512_set1_ps(c->threshold[row]);
        m0 = _mm512_mask_cmp_ps_mask(valid0, u0, t, _CMP_GT_OQ);
        m1 = _mm512_mask_cmp_ps_mask(valid1, u1, t, _CMP_GT_OQ);
    }
    size_t at = row * c->capacity + c->count[row];
    _mm512_mask_compressstoreu_ps(c->upper + at, m0, u0);
    _mm512_mask_compressstoreu_ps(c->lower + at, m0, l0);
    _mm512_mask_compressstoreu_epi32(c->slot + at, m0, s0);
    at += (size_t)__builtin_popcount(m0);
    _mm512_mask_compressstoreu_ps(c->upper + at, m1, u1);
    _mm512_mask_compressstoreu_ps(c->lower + at, m1, l1);
    _mm512_mask_compressstoreu_epi32(c->slot + at, m1, s1);
    c->count[row] += (uint32_t)__builtin_popcount(m0) + (uint32_t)__builtin_popcount(m1);
}

/* Per row of a chunk: s_x, s_x‖x_q‖ and ‖r_x‖ (with slack). */
typedef struct {
    float *scale, *quantized_norm, *residual_norm;
} row_scales;

/* One register tile of the int8 GEMM: MR rows (a: [d4][MR] of 4 u8) × NR latents (b: [d4][NR]
 * of 4 s8), then the bounds of each value, filtered into the main candidates and, for the
 * first aux_lanes latents of the panel, the AuxK candidates. */
__attribute__((target("avx512f,avx512bw,avx512vnni"))) static void tile(const int32_t *a, const int8_t *b, size_t d4, size_t rows,
                                                                        int32_t slot0, const float *meta, const row_scales *rs,
                                                                        const bounds *main, const bounds *aux, size_t aux_lanes,
                                                                        size_t row0) {
    __m512i c[MR][2];
    for (int r = 0; r < MR; r++) c[r][0] = c[r][1] = _mm512_setzero_si512();
#pragma clang loop unroll_count(4)
    for (size_t i = 0; i < d4; i++) {
        __m512i b0 = _mm512_loadu_si512(b + i * 4 * NR), b1 = _mm512_loadu_si512(b + i * 4 * NR + 64);
        for (int r = 0; r < MR; r++) {
            __m512i av = _mm512_set1_epi32(a[i * MR + r]);
            c[r][0] = _mm512_dpbusd_epi32(c[r][0], av, b0);
            c[r][1] = _mm512_dpbusd_epi32(c[r][1], av, b1);
        }
    }
    __m512i slots0 = _mm512_add_epi32(_mm512_set1_epi32(slot0), _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    __m512i slots1 = _mm512_add_epi32(slots0, _mm512_set1_epi32(16));
    __mmask16 aux0 = (__mmask16)(aux_lanes >= 16 ? 0xffff : (1u << aux_lanes) - 1);
    __mmask16 aux1 = (__mmask16)(aux_lanes >= 32 ? 0xffff : aux_lanes > 16 ? (1u << (aux_lanes - 16)) - 1 : 0);
    for (int r = 0; r < MR; r++) {
        if ((size_t)r >= rows) break;
        size_t row = row0 + (size_t)r;
        __m512 sx = _mm512_set1_ps(rs->scale[row]), qn = _mm512_set1_ps(rs->quantized_norm[row]);
        __m512 rn = _mm512_set1_ps(rs->residual_norm[row]);
        __m512 u[2], l[2];
        for (int h = 0; h < 2; h++) {
            const float *mt = meta + h * 16;
            /* x_q·w_q, exact in int32 (and in float while below 2^24, i.e. d <= 1040; past that
             * the conversion's rounding is inside the slack). */
            __m512 v = _mm512_cvtepi32_ps(_mm512_sub_epi32(c[r][h], _mm512_loadu_si512(mt + META_CORR * NR)));
            __m512 approx = _mm512_fmadd_ps(sx, _mm512_mul_ps(v, _mm512_loadu_ps(mt + META_SCALE * NR)), _mm512_loadu_ps(mt + META_BIAS * NR));
            __m512 delta = _mm512_fmadd_ps(qn, _mm512_loadu_ps(mt + META_RESIDUAL * NR), _mm512_loadu_ps(mt + META_BIAS_SLACK * NR));
            delta = _mm512_fmadd_ps(rn, _mm512_loadu_ps(mt + META_NORM * NR), delta);
            u[h] = _mm512_add_ps(approx, delta);
            l[h] = _mm512_sub_ps(approx, delta);
        }
        if (!main->overflow[row]) append(main, row, u[0], u[1], l[0], l[1], slots0, slots1, 0xffff, 0xffff);
        if (aux && !aux->overflow[row]) append(aux, row, u[0], u[1], l[0], l[1], slots0, slots1, aux0, aux1);
    }
}

/* dot(x, w) over d floats, four accumulators of 16 lanes. */
__attribute__((target("avx512f"))) static inline float dot(const float *x, const float *w, size_t d) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    size_t c = 0;
    for (; c + 64 <= d; c += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + c), _mm512_loadu_ps(w + c), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + c + 16), _mm512_loadu_ps(w + c + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(x + c + 32), _mm512_loadu_ps(w + c + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(x + c + 48), _mm512_loadu_ps(w + c + 48), s3);
    }
    for (; c + 16 <= d; c += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + c), _mm512_loadu_ps(w + c), s0);
    if (c < d) {
        __mmask16 tail = (__mmask16)((1u << (d - c)) - 1);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, x + c), _mm512_maskz_loadu_ps(tail, w + c), s1);
    }
    return sum16(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

/* Final cut of one selection's candidates of a row: the k-th largest lower bound (the
 * threshold so far if fewer), then only entries whose upper bound reaches it and is positive. */
__attribute__((target("avx512f"))) static void final_cut(const bounds *c, size_t row) {
    if (c->overflow[row]) return;
    size_t n = c->count[row];
    float *u = c->upper + row * c->capacity, *l = c->lower + row * c->capacity;
    int32_t *s = c->slot + row * c->capacity;
    float t = c->threshold[row];
    if (n >= c->k) {
        float kth = kth_largest(l, n, c->k);
        if (kth > t) t = kth;
    }
    /* ReLU: a value must be positive to count. */
    if (!(t > 0.0f)) t = 0x1p-149f;
    c->count[row] = (uint32_t)keep_upper_at_least(u, l, s, n, t);
}

/* Writes a row's k largest positive exact values (stored in `lower`) and their latents. */
__attribute__((target("avx512f"))) static void emit(const bounds *c, size_t row, const int32_t *order, int32_t *indices,
                                                    float *values) {
    size_t n = c->count[row], k = c->k;
    float *v = c->lower + row * c->capacity;
    int32_t *s = c->slot + row * c->capacity;
    size_t positive = 0;
    for (size_t i = 0; i < n; i++) {
        int keep = v[i] > 0.0f;
        v[positive] = v[i];
        s[positive] = s[i];
        positive += (size_t)keep;
    }
    size_t found = positive;
    if (positive > k) {
        float t = kth_largest(v, positive, k);
        size_t above = 0;
        for (size_t i = 0; i < positive; i++) above += v[i] > t;
        size_t kept = 0, equal = k - above;
        for (size_t i = 0; i < positive; i++) {
            int keep = v[i] > t || (v[i] == t && equal > 0);
            equal -= v[i] == t && equal > 0;
            v[kept] = v[i];
            s[kept] = s[i];
            kept += (size_t)keep;
        }
        found = k;
    }
    for (size_t j = 0; j < found; j++) { values[j] = v[j]; indices[j] = order[s[j]]; }
    for (size_t j = found; j < k; j++) { values[j] = 0.0f; indices[j] = order[0]; }
}

__attribute__((target("avx512f,avx512bw,avx512vnni"))) void sk_encode_topk_int8(
    const float *x, const float *center, size_t rows, size_t d, const int8_t *packed, const float *meta, const float *W,
    const int32_t *order, size_t m, size_t k, int32_t *indices, float *values, size_t aux_count, size_t aux_k,
    int32_t *aux_indices, float *aux_values, uint64_t *stats) {
    if (k == 0) return;
    size_t d4 = (d + 3) / 4, panels = (m + NR - 1) / NR;
    size_t aux_panels = aux_k ? (aux_count + NR - 1) / NR : 0;
    float slack = rounding_slack(d);
    bounds main = {.k = k, .capacity = 12 * k + 2 * NR};
    bounds aux = {.k = aux_k, .capacity = aux_k ? 4 * aux_k + 2 * NR : 0};
    size_t per_row = main.capacity + aux.capacity;
    /* Scratch: centred rows (for the recompute), packed u8 rows, row scales, candidates, and
     * the by-latent order of the candidates. */
    size_t groups_max = (CHUNK_ROWS + MR - 1) / MR;
    size_t bytes = CHUNK_ROWS * d * sizeof(float) + groups_max * d4 * MR * sizeof(int32_t) + 3 * CHUNK_ROWS * sizeof(float) +
                   CHUNK_ROWS * per_row * (2 * sizeof(float) + sizeof(int32_t)) + 2 * CHUNK_ROWS * (sizeof(uint32_t) + sizeof(float) + 1) +
                   (panels * NR + 1) * sizeof(uint32_t) + CHUNK_ROWS * per_row * 2 * sizeof(uint32_t) + FULL_ROWS * m * sizeof(float) + 64 * 16;
    char *base = aligned_alloc(64, (bytes + 63) / 64 * 64), *at = base;
    if (!base) abort(); /* out of memory: no way to report it from here, and no partial result */
#define TAKE(type, name, n) type *name = (type *)at; at += ((n) * sizeof(type) + 63) / 64 * 64
    TAKE(float, xc, CHUNK_ROWS * d);
    TAKE(int32_t, a, groups_max * d4 * MR);
    TAKE(float, scale, CHUNK_ROWS);
    TAKE(float, qnorm, CHUNK_ROWS);
    TAKE(float, rnorm, CHUNK_ROWS);
    TAKE(float, upper, CHUNK_ROWS * per_row);
    TAKE(float, lower, CHUNK_ROWS * per_row);
    TAKE(int32_t, slot, CHUNK_ROWS * per_row);
    TAKE(uint32_t, count, 2 * CHUNK_ROWS);
    TAKE(float, threshold, 2 * CHUNK_ROWS);
    TAKE(uint8_t, overflow, 2 * CHUNK_ROWS);
    TAKE(uint32_t, by_slot, panels * NR + 1);
    TAKE(uint32_t, pair_row, CHUNK_ROWS * per_row);
    TAKE(uint32_t, pair_entry, CHUNK_ROWS * per_row);
    TAKE(float, full, FULL_ROWS * m);
#undef TAKE
    main.upper = upper; main.lower = lower; main.slot = slot;
    main.count = count; main.threshold = threshold; main.overflow = overflow;
    size_t aux_base = CHUNK_ROWS * main.capacity;
    aux.upper = upper + aux_base; aux.lower = lower + aux_base; aux.slot = slot + aux_base;
    aux.count = count + CHUNK_ROWS; aux.threshold = threshold + CHUNK_ROWS; aux.overflow = overflow + CHUNK_ROWS;
    row_scales rs = {scale, qnorm, rnorm};
    uint64_t recomputed = 0, fallback = 0;

    for (size_t first = 0; first < rows; first += CHUNK_ROWS) {
        size_t n = rows - first < CHUNK_ROWS ? rows - first : CHUNK_ROWS;
        size_t groups = (n + MR - 1) / MR;
        /* Centre and quantise the rows. */
        memset(a, 0x80, groups * d4 * MR * sizeof(int32_t)); /* u8 128: x_q = 0 */
        for (size_t r = 0; r < n; r++) {
            float *row = xc + r * d;
            const float *src = x + (first + r) * d;
            for (size_t c = 0; c < d; c++) row[c] = src[c] - (center ? center[c] : 0.0f);
            float norm2, residual2;
            int32_t sum;
            float s = quantize_row(row, d, a + (r / MR) * d4 * MR + r % MR, MR, (int32_t)0x80808080u, &norm2, &residual2, &sum);
            (void)sum;
            /* s‖x_q‖ ≤ ‖x‖ + ‖r_x‖. */
            float rn = sqrtf(residual2) * (1.0f + slack);
            scale[r] = s;
            qnorm[r] = sqrtf(norm2) * (1.0f + slack) + rn;
            rnorm[r] = rn * (1.0f + 2.0f * slack);
            count[r] = count[CHUNK_ROWS + r] = 0;
            threshold[r] = threshold[CHUNK_ROWS + r] = 0.0f;
            overflow[r] = overflow[CHUNK_ROWS + r] = 0;
        }
        /* The int8 GEMM and the filter. */
        for (size_t p0 = 0; p0 < panels; p0 += BLOCK_PANELS) {
            size_t p1 = p0 + BLOCK_PANELS < panels ? p0 + BLOCK_PANELS : panels;
            for (size_t g = 0; g < groups; g++) {
                size_t lo = g * MR, rows_here = n - lo < MR ? n - lo : MR;
                for (size_t p = p0; p < p1; p++) {
                    size_t lanes = p < aux_panels ? (aux_count - p * NR < NR ? aux_count - p * NR : NR) : 0;
                    tile(a + g * d4 * MR, packed + p * d4 * 4 * NR, d4, rows_here, (int32_t)(p * NR), meta + p * 6 * NR, &rs, &main,
                         lanes ? &aux : NULL, lanes, lo);
                }
            }
        }
        /* Final cuts, then the survivors by slot (counting sort), then their exact values. */
        size_t slots = panels * NR;
        memset(by_slot, 0, (slots + 1) * sizeof(uint32_t));
        for (size_t r = 0; r < n; r++) {
            final_cut(&main, r);
            for (uint32_t i = 0; i < main.count[r]; i++) by_slot[main.slot[r * main.capacity + i] + 1]++;
            if (aux_panels) {
                final_cut(&aux, r);
                for (uint32_t i = 0; i < aux.count[r]; i++) by_slot[aux.slot[r * aux.capacity + i] + 1]++;
            }
        }
        for (size_t s = 0; s < slots; s++) by_slot[s + 1] += by_slot[s];
        size_t pairs = by_slot[slots];
        for (size_t r = 0; r < n; r++) {
            for (uint32_t i = 0; i < main.count[r]; i++) {
                uint32_t e = (uint32_t)(r * main.capacity + i), at = by_slot[main.slot[e]]++;
                pair_row[at] = (uint32_t)r;
                pair_entry[at] = e;
            }
            if (aux_panels)
                for (uint32_t i = 0; i < aux.count[r]; i++) {
                    uint32_t e = (uint32_t)(aux_base + r * aux.capacity + i), at = by_slot[aux.slot[e - aux_base]]++;
                    pair_row[at] = (uint32_t)r;
                    pair_entry[at] = e;
                }
        }
        /* by_slot[s] is now the end of slot s's pairs. */
        for (size_t s = 0, p = 0; s < slots; s++) {
            if (p == by_slot[s]) continue;
            const float *w = W + (size_t)order[s] * d;
            float b = meta[(s / NR) * 6 * NR + META_BIAS * NR + s % NR];
            for (; p < by_slot[s]; p++) lower[pair_entry[p]] = dot(xc + pair_row[p] * d, w, d) + b;
        }
        recomputed += pairs;
        /* Rows that overflowed: every latent exactly, a few rows at a time so that each W_enc
         * row is read once per batch of them. */
        size_t batch = 0;
        for (size_t r = 0; r <= n; r++) {
            int over = r < n && (main.overflow[r] || (aux_panels && aux.overflow[r]));
            if (over) pair_row[batch++] = (uint32_t)r;
            if (batch == FULL_ROWS || (r == n && batch > 0)) {
                for (size_t s = 0; s < m; s++) {
                    const float *w = W + (size_t)order[s] * d;
                    float b = meta[(s / NR) * 6 * NR + META_BIAS * NR + s % NR];
                    for (size_t j = 0; j < batch; j++) full[j * m + s] = dot(xc + pair_row[j] * d, w, d) + b;
                }
                for (size_t j = 0; j < batch; j++) {
                    size_t out = first + pair_row[j];
                    sk_topk_rows(full + j * m, m, NULL, 1, m, k, indices + out * k, values + out * k);
                    for (size_t i = 0; i < k; i++) indices[out * k + i] = order[indices[out * k + i]];
                    if (aux_panels) {
                        sk_topk_rows(full + j * m, m, NULL, 1, aux_count, aux_k, aux_indices + out * aux_k, aux_values + out * aux_k);
                        for (size_t i = 0; i < aux_k; i++) aux_indices[out * aux_k + i] = order[aux_indices[out * aux_k + i]];
                    }
                }
                fallback += batch;
                batch = 0;
            }
        }
        for (size_t r = 0; r < n; r++) {
            if (main.overflow[r] || (aux_panels && aux.overflow[r])) continue;
            size_t out = first + r;
            emit(&main, r, order, indices + out * k, values + out * k);
            if (aux_panels) emit(&aux, r, order, aux_indices + out * aux_k, aux_values + out * aux_k);
        }
    }
    free(base);
    if (stats) {
        stats[0] += recomputed;
        stats[1] += fallback;
    }
}
