/* The TopK encoder as one fused kernel: pre = x · W_encᵀ + b_enc is computed in register
 * tiles of SK_TILE_ROWS tokens × SK_PANEL latents, and each tile is compared with its rows'
 * running thresholds before it is dropped, so the [n, m] pre-activations are never written
 * anywhere. Values above a row's threshold (about k·ln(m/k) of a row's m) are appended to the
 * row's candidates, from which the exact top k is chosen at the end. AVX-512 only; other
 * machines take the sgemm + sk_topk_rows path. */
#include "CSparseKernels.h"
#include "selection_avx512.h"

#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NR SK_PANEL
#define MR SK_TILE_ROWS
/* A block of panels of W_enc (394 KB at d = 384) stays in L2 while every group of rows of a
 * chunk runs against it; chunks of rows bound the scratch. Chunks of 264 to 2064 rows and
 * blocks of 4 to 16 panels measured within noise of each other. */
#define BLOCK_PANELS 8
#define CHUNK_ROWS (43 * MR)
/* Candidates held per row before the buffer is cut back to the k largest. */
#define CANDIDATES_PER_K 2

int sk_fused_encoder_available(void) { return __builtin_cpu_supports("avx512f"); }

size_t sk_encoder_panels(size_t m) { return (m + NR - 1) / NR; }

void sk_pack_encoder(const float *W, const float *bias, const int32_t *order, size_t m, size_t d,
                     size_t panel_lo, size_t panel_hi, float *packed) {
    for (size_t p = panel_lo; p < panel_hi; p++) {
        float *out = packed + p * (d + 1) * NR;
        /* Padding latents: zero weights and a bias of −∞, so never selected. */
        const float *rows[NR];
        size_t live = m - p * NR < NR ? m - p * NR : NR;
        for (size_t j = 0; j < live; j++) rows[j] = W + (size_t)order[p * NR + j] * d;
        /* Row by row of the output, reading the panel's rows side by side: the writes are
         * contiguous and each source row is read in order. */
        for (size_t c = 0; c < d; c++) {
            for (size_t j = 0; j < live; j++) out[c * NR + j] = rows[j][c];
            for (size_t j = live; j < NR; j++) out[c * NR + j] = 0.0f;
        }
        for (size_t j = 0; j < NR; j++) out[d * NR + j] = j < live ? (bias ? bias[order[p * NR + j]] : 0.0f) : -INFINITY;
    }
}

/* Rows of x [rows, d] minus center (NULL: none) into [d][MR], zero-padded past `rows`. */
__attribute__((target("avx512f"))) static void pack_rows(const float *x, const float *center, size_t rows, size_t d,
                                                         float *out) {
    for (size_t c = 0; c < d; c++) {
        float shift = center ? center[c] : 0.0f;
        for (size_t r = 0; r < MR; r++) out[c * MR + r] = r < rows ? x[r * d + c] - shift : 0.0f;
    }
}

/* Per-row candidates: values above the row's threshold, with their slots in `order`, in the
 * order met. When a buffer is full it keeps its k largest (ties to the earliest) and the
 * smallest of them becomes the row's threshold: values that do not beat it cannot enter. */
typedef struct {
    float *value;
    int32_t *slot;
    uint32_t *count;
    float *threshold;
    size_t k, capacity;
} candidates;

/* Keeps the k largest of a row's candidates, in their order, and returns the k-th. */
__attribute__((target("avx512f"))) static float keep_largest(float *v, int32_t *s, size_t n, size_t k) {
    if (n <= k) return -INFINITY;
    float t = kth_largest(v, n, k);
    /* Values above t, then as many equal to t as fit, earliest first. */
    size_t above = 0;
    for (size_t i = 0; i < n; i++) above += v[i] > t;
    size_t kept = 0, equal = k - above;
    for (size_t i = 0; i < n; i++) {
        int keep = v[i] > t || (v[i] == t && equal > 0);
        equal -= v[i] == t && equal > 0;
        v[kept] = v[i];
        s[kept] = s[i];
        kept += (size_t)keep;
    }
    return t;
}

/* Makes room in a full row: the new threshold is the largest of 16 sampled candidates with at
 * least k candidates >= it (so the row's top k are all kept), and only those >= it stay. Cheap
 * and close to the exact k-th value; the exact selection is left to the end of the row. */
__attribute__((target("avx512f"))) static void shrink(const candidates *c, size_t row) {
    float *v = c->value + row * c->capacity;
    int32_t *s = c->slot + row * c->capacity;
    size_t n = c->count[row];
    __mmask16 tail = (__mmask16)((1u << (n % 16)) - 1);
    float t = c->threshold[row];
    for (size_t j = 0; j < 16; j++) {
        float candidate = v[(j * n) / 16];
        if (candidate > t && count_at_least(v, n, candidate) >= c->k) t = candidate;
    }
    size_t kept = 0;
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 live = n - i >= 16 ? (__mmask16)0xffff : tail;
        __m512 x = _mm512_maskz_loadu_ps(live, v + i);
        __m512i id = _mm512_maskz_loadu_epi32(live, s + i);
        __mmask16 keep = _mm512_mask_cmp_ps_mask(live, x, _mm512_set1_ps(t), _CMP_GE_OQ);
        _mm512_mask_compressstoreu_ps(v + kept, keep, x);
        _mm512_mask_compressstoreu_epi32(s + kept, keep, id);
        kept += (size_t)__builtin_popcount(keep);
    }
    c->count[row] = (uint32_t)kept;
    c->threshold[row] = t;
    /* Many equal values: fall back to the exact cut. */
    if (kept + NR > c->capacity) {
        c->threshold[row] = keep_largest(v, s, kept, c->k);
        c->count[row] = (uint32_t)c->k;
    }
}

/* One register tile: pre = a · b + bias for MR rows and NR latents (a [d][MR] and b [d + 1][NR]
 * packed, the bias in b's last row; slots `slot0` onwards). Values above a row's threshold
 * are appended to its candidates (rows `row0` onwards); with `aux`, all values of the tile are
 * stored there too (rows of aux_ld). */
__attribute__((target("avx512f"))) static void tile(const float *a, const float *b, size_t d, size_t rows,
                                                    int32_t slot0, const candidates *cand, size_t row0,
                                                    float *aux, size_t aux_ld) {
    __m512 c[MR][2];
    for (int r = 0; r < MR; r++) c[r][0] = c[r][1] = _mm512_setzero_ps();
    /* Unrolled by 4: measured about 10% faster than the plain loop (fewer loop uops between
     * the FMAs). */
#pragma clang loop unroll_count(4)
    for (size_t i = 0; i < d; i++) {
        __m512 b0 = _mm512_loadu_ps(b + i * NR), b1 = _mm512_loadu_ps(b + i * NR + 16);
        for (int r = 0; r < MR; r++) {
            __m512 av = _mm512_set1_ps(a[i * MR + r]);
            c[r][0] = _mm512_fmadd_ps(av, b0, c[r][0]);
            c[r][1] = _mm512_fmadd_ps(av, b1, c[r][1]);
        }
    }
    __m512 bias0 = _mm512_loadu_ps(b + d * NR), bias1 = _mm512_loadu_ps(b + d * NR + 16);
    __m512i slots0 = _mm512_add_epi32(_mm512_set1_epi32(slot0), _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    __m512i slots1 = _mm512_add_epi32(slots0, _mm512_set1_epi32(16));
    for (int r = 0; r < MR; r++) {
        if ((size_t)r >= rows) break;
        size_t row = row0 + (size_t)r;
        __m512 v0 = _mm512_add_ps(c[r][0], bias0), v1 = _mm512_add_ps(c[r][1], bias1);
        if (aux) {
            _mm512_storeu_ps(aux + (size_t)r * aux_ld, v0);
            _mm512_storeu_ps(aux + (size_t)r * aux_ld + 16, v1);
        }
        __m512 t = _mm512_set1_ps(cand->threshold[row]);
        __mmask16 m0 = _mm512_cmp_ps_mask(v0, t, _CMP_GT_OQ), m1 = _mm512_cmp_ps_mask(v1, t, _CMP_GT_OQ);
        if (!(m0 | m1)) continue;
        if (cand->count[row] + NR > cand->capacity) shrink(cand, row);
        size_t at = row * cand->capacity + cand->count[row];
        _mm512_mask_compressstoreu_ps(cand->value + at, m0, v0);
        _mm512_mask_compressstoreu_epi32(cand->slot + at, m0, slots0);
        at += (size_t)__builtin_popcount(m0);
        _mm512_mask_compressstoreu_ps(cand->value + at, m1, v1);
        _mm512_mask_compressstoreu_epi32(cand->slot + at, m1, slots1);
        cand->count[row] += (uint32_t)__builtin_popcount(m0) + (uint32_t)__builtin_popcount(m1);
    }
}

/* Loops (BLIS order): a block of panels of W_enc stays in L2 while each group of MR rows,
 * packed and held in L1, runs against every panel of it. Rows go in chunks so that the
 * candidate and AuxK scratch stays small. */
__attribute__((target("avx512f"))) void sk_encode_topk(const float *x, const float *center, size_t rows, size_t d,
                                                       const float *packed,
                                                       const int32_t *order, size_t m, size_t k, int32_t *indices,
                                                       float *values, size_t aux_count, size_t aux_k,
                                                       int32_t *aux_indices, float *aux_values) {
    if (k == 0) return;
    size_t panels = sk_encoder_panels(m);
    size_t aux_panels = aux_k ? sk_encoder_panels(aux_count) : 0, aux_ld = aux_panels * NR;
    candidates cand = {.k = k, .capacity = CANDIDATES_PER_K * k + NR};
    size_t floats = CHUNK_ROWS * (d + aux_ld + cand.capacity + 1);
    float *a = aligned_alloc(64, (floats * sizeof(float) + CHUNK_ROWS * (cand.capacity + 1) * sizeof(int32_t) + 63) / 64 * 64);
    if (!a) abort(); /* out of memory: no way to report it from here, and no partial result */
    float *aux = a + CHUNK_ROWS * d;
    cand.value = aux + CHUNK_ROWS * aux_ld;
    cand.threshold = cand.value + CHUNK_ROWS * cand.capacity;
    cand.slot = (int32_t *)(cand.threshold + CHUNK_ROWS);
    cand.count = (uint32_t *)(cand.slot + CHUNK_ROWS * cand.capacity);
    for (size_t first = 0; first < rows; first += CHUNK_ROWS) {
        size_t count = rows - first < CHUNK_ROWS ? rows - first : CHUNK_ROWS;
        size_t groups = (count + MR - 1) / MR;
        for (size_t g = 0; g < groups; g++) {
            size_t lo = g * MR, n = count - lo < MR ? count - lo : MR;
            pack_rows(x + (first + lo) * d, center, n, d, a + g * d * MR);
        }
        /* ReLU: only positive values are candidates. */
        for (size_t r = 0; r < count; r++) { cand.threshold[r] = 0.0f; cand.count[r] = 0; }
        for (size_t p0 = 0; p0 < panels; p0 += BLOCK_PANELS) {
            size_t p1 = p0 + BLOCK_PANELS < panels ? p0 + BLOCK_PANELS : panels;
            for (size_t g = 0; g < groups; g++) {
                size_t lo = g * MR, n = count - lo < MR ? count - lo : MR;
                for (size_t p = p0; p < p1; p++)
                    tile(a + g * d * MR, packed + p * (d + 1) * NR, d, n, (int32_t)(p * NR), &cand, lo,
                         p < aux_panels ? aux + lo * aux_ld + p * NR : NULL, aux_ld);
            }
        }
        for (size_t r = 0; r < count; r++) {
            float *v = cand.value + r * cand.capacity, *out = values + (first + r) * k;
            int32_t *s = cand.slot + r * cand.capacity, *ids = indices + (first + r) * k;
            size_t found = cand.count[r] < k ? cand.count[r] : k;
            keep_largest(v, s, cand.count[r], k);
            for (size_t j = 0; j < found; j++) { out[j] = v[j]; ids[j] = order[s[j]]; }
            for (size_t j = found; j < k; j++) { out[j] = 0.0f; ids[j] = order[0]; }
        }
        if (aux_panels) {
            sk_topk_rows(aux, aux_ld, NULL, count, aux_count, aux_k, aux_indices + first * aux_k, aux_values + first * aux_k);
            for (size_t j = first * aux_k; j < (first + count) * aux_k; j++) aux_indices[j] = order[aux_indices[j]];
        }
    }
    free(a);
}
