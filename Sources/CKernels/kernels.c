#include "CKernels.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#define MULTI __attribute__((target_clones("avx512f", "avx2", "default")))

/* GCC vector types, for blockings and reductions the auto-vectoriser does not find. On AVX2
 * and baseline each 64-byte vector is split in halves or quarters. */
typedef float vec16 __attribute__((vector_size(64), aligned(4), may_alias));
typedef int32_t ivec16 __attribute__((vector_size(64), aligned(4), may_alias));
#define VEC_ADD(a, b) ((a) + (b))
/* a > b ? a : b per lane, which is what vmaxps computes (fmaxf adds NaN handling). */
#define VEC_MAX(a, b) ((vec16)(((ivec16)(a) & ((a) > (b))) | ((ivec16)(b) & ~((a) > (b)))))
/* x = op(x, x with halves swapped) four times: the reduction of all 16 lanes in lane 0. */
#define VEC_REDUCE(x, op)                                                                                \
    do {                                                                                                 \
        x = op(x, __builtin_shufflevector(x, x, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7)); \
        x = op(x, __builtin_shufflevector(x, x, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11)); \
        x = op(x, __builtin_shufflevector(x, x, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13)); \
        x = op(x, __builtin_shufflevector(x, x, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14)); \
    } while (0)

#define INLINE static inline __attribute__((always_inline))

/* Sums in 2 × 16 independent lanes (two add chains in flight), then a tree: no -ffast-math
 * needed. */
INLINE float lane_sum(const float *x, size_t n) {
    vec16 acc = {0}, odd = {0};
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        acc += *(const vec16 *)(x + i);
        odd += *(const vec16 *)(x + i + 16);
    }
    for (; i + 16 <= n; i += 16) acc += *(const vec16 *)(x + i);
    acc += odd;
    VEC_REDUCE(acc, VEC_ADD);
    float total = acc[0];
    for (; i < n; i++) total += x[i];
    return total;
}

/* Largest of x, lane-wise first (the logits of a whole vocabulary). */
INLINE float lane_max(const float *x, size_t n) {
    size_t wide = n & ~(size_t)15, i;
    if (wide == 0) {
        float best = -INFINITY;
        for (i = 0; i < n; i++) best = x[i] > best ? x[i] : best;
        return best;
    }
    vec16 most = *(const vec16 *)x;
    for (i = 16; i < wide; i += 16) most = VEC_MAX(*(const vec16 *)(x + i), most);
    VEC_REDUCE(most, VEC_MAX);
    float best = most[0];
    for (; i < n; i++) best = x[i] > best ? x[i] : best;
    return best;
}

/* Sum of (x - mean)^2, in lanes as lane_sum. */
INLINE float lane_centered_squares(const float *x, size_t n, float mean) {
    vec16 acc = {0}, odd = {0};
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        vec16 c = *(const vec16 *)(x + i) - mean, e = *(const vec16 *)(x + i + 16) - mean;
        acc += c * c;
        odd += e * e;
    }
    for (; i + 16 <= n; i += 16) {
        vec16 c = *(const vec16 *)(x + i) - mean;
        acc += c * c;
    }
    acc += odd;
    VEC_REDUCE(acc, VEC_ADD);
    float total = acc[0];
    for (; i < n; i++) total += (x[i] - mean) * (x[i] - mean);
    return total;
}

/* exp for float: range reduction by ln 2 and a degree-6 polynomial (Cephes expf
 * coefficients); about 1 ulp, branch-free so loops vectorise. */
static inline float fast_exp(float x) {
    x = fminf(fmaxf(x, -87.3f), 88.0f);
    /* Round to nearest by the 1.5 * 2^23 trick: no floorf call, so every target vectorises. */
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float r2 = r * r;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r2 + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* erf for float as a rational polynomial in x^2 on [-4, 4] (the approximation XLA and
 * Eigen use); erf(+-4) rounds to +-1 in float. */
static inline float fast_erf(float x) {
    x = fminf(fmaxf(x, -4.0f), 4.0f);
    float x2 = x * x;
    float p = -2.72614225801306e-10f;
    p = p * x2 + 2.77068142495902e-08f;
    p = p * x2 + -2.10102402082508e-06f;
    p = p * x2 + -5.69250639462346e-05f;
    p = p * x2 + -7.34990630326855e-04f;
    p = p * x2 + -2.95459980854025e-03f;
    p = p * x2 + -1.60960333262415e-02f;
    p = p * x;
    float q = -1.45660718464996e-05f;
    q = q * x2 + -2.13374055278905e-04f;
    q = q * x2 + -1.68282697438203e-03f;
    q = q * x2 + -7.37332916720468e-03f;
    q = q * x2 + -1.42647390514189e-02f;
    return p / q;
}

/* tanh through exp, where 1 - e loses little; below 0.25 the odd series to x^9 instead. */
static inline float fast_tanh(float x) {
    float e = fast_exp(-2.0f * fabsf(x));
    float t = (1.0f - e) / (1.0f + e);
    t = copysignf(t, x);
    float x2 = x * x;
    float series = x * (1.0f + x2 * (-0.333333333f + x2 * (0.133333333f + x2 * (-0.0539682540f + x2 * 0.0218694885f))));
    return fabsf(x) < 0.25f ? series : t;
}

MULTI void ak_exp(const float *x, float *out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = fast_exp(x[i]);
}

MULTI float ak_log_sum_exp(const float *x, size_t n) {
    float maximum = lane_max(x, n);
    float acc[16] = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) acc[l] += fast_exp(x[i + l] - maximum);
    float total = 0.0f;
    for (int l = 0; l < 16; l++) total += acc[l];
    for (; i < n; i++) total += fast_exp(x[i] - maximum);
    return maximum + logf(total);
}

MULTI void ak_erf(const float *x, float *out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = fast_erf(x[i]);
}

MULTI void ak_tanh(const float *x, float *out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = fast_tanh(x[i]);
}

MULTI void ak_layer_norm(const float *x, float *out, const float *gamma, const float *beta,
                         size_t rows, size_t d, size_t stride, float eps) {
    for (size_t r = 0; r < rows; r++) {
        const float *row = x + r * stride;
        float *dst = out + r * stride;
        float mean = lane_sum(row, d) / (float)d;
        float squares = lane_centered_squares(row, d, mean);
        float inv = 1.0f / sqrtf(squares / (float)d + eps);
        for (size_t i = 0; i < d; i++) dst[i] = (row[i] - mean) * inv * gamma[i] + beta[i];
    }
}

MULTI void ak_rms_norm(const float *x, float *out, const float *weight, size_t rows, size_t d,
                       size_t stride, float eps) {
    for (size_t r = 0; r < rows; r++) {
        const float *row = x + r * stride;
        float *dst = out + r * stride;
        float squares = lane_centered_squares(row, d, 0.0f);
        float inv = 1.0f / sqrtf(squares / (float)d + eps);
        for (size_t i = 0; i < d; i++) dst[i] = weight[i] * (row[i] * inv);
    }
}

/* x = LayerNorm(x + y) row by row, x rows d and y rows ldy floats apart. */
INLINE void residual_layer_norm_rows(float *x, const float *y, size_t ldy, const float *gamma, const float *beta,
                                     size_t rows, size_t d, float eps) {
    for (size_t r = 0; r < rows; r++) {
        float *xr = x + r * d;
        const float *yr = y + r * ldy;
        for (size_t i = 0; i < d; i++) xr[i] += yr[i];
        float mean = lane_sum(xr, d) / (float)d;
        float inv = 1.0f / sqrtf(lane_centered_squares(xr, d, mean) / (float)d + eps);
        for (size_t i = 0; i < d; i++) xr[i] = (xr[i] - mean) * inv * gamma[i] + beta[i];
    }
}

MULTI void ak_residual_layer_norm(float *x, const float *y, const float *gamma, const float *beta,
                                  size_t rows, size_t d, float eps) {
    residual_layer_norm_rows(x, y, d, gamma, beta, rows, d, eps);
}

MULTI void ak_silu_mul(float *gate, const float *up, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        gate[i] = g / (1.0f + fast_exp(-g)) * up[i];
    }
}

/* Dense layers: y = x Wᵀ + bias, then an activation, on weights packed at load time (the
 * GEMMs of the forward pass). The micro-kernel keeps a tile of LINEAR_ROWS rows × 64
 * outputs in 24 AVX-512 accumulators: per input, 4 vector loads of packed weights and 6
 * broadcasts of x feed 24 FMAs. x is copied per block of rows into tiles of
 * [input][LINEAR_ROWS] (one sequential stream per tile instead of 6 rows a stride apart;
 * 2-3% on the MiniLM shapes). The packed block (LINEAR_L2_FLOATS, 576 KB) stays in L2 while
 * each panel's LINEAR_DEPTH inputs × 64 outputs (24 KB) stay in L1. The depth also bounds
 * each chain of roundings: 96 kept MiniLM's outlier outputs, about 160, within a few ulps of
 * transformers. Bias and activation are applied while the tile is in registers or L1, so no
 * pass over y follows. */
#define LINEAR_ROWS 6
#define LINEAR_PANEL 64
#define LINEAR_DEPTH 96
#define LINEAR_L2_FLOATS (384 * 384)
#define LINEAR_MAX_BLOCK 384

INLINE float gelu_erf(float v) { return 0.5f * v * (1.0f + fast_erf(v * 0.70710678118654752f)); }

INLINE float gelu_tanh(float v) {
    return 0.5f * v * (1.0f + fast_tanh(0.79788456080286536f * (v + 0.044715f * v * v * v)));
}

/* Floats per input of a panel `width` outputs wide: whole vectors, zero-padded. */
static inline size_t linear_stride(size_t width) { return (width + 15) & ~(size_t)15; }

size_t ak_linear_packed_count(size_t n, size_t k) {
    size_t full = n / LINEAR_PANEL * LINEAR_PANEL;
    return (full + linear_stride(n - full)) * k;
}

void ak_linear_pack(const float *w, size_t n, size_t k, int input_major, float *packed) {
    for (size_t p0 = 0; p0 < n; p0 += LINEAR_PANEL) {
        size_t width = n - p0 < LINEAR_PANEL ? n - p0 : LINEAR_PANEL, stride = linear_stride(width);
        float *panel = packed + p0 * k; /* every panel before this one is LINEAR_PANEL wide */
        for (size_t i = 0; i < k; i++)
            for (size_t j = 0; j < stride; j++)
                panel[i * stride + j] = j >= width ? 0.0f : input_major ? w[i * n + p0 + j] : w[(p0 + j) * k + i];
    }
}

/* One tile: y[r][0..16nv] = (load ? y[r] : bias or 0) + Σ_i xp[i][r] panel[i] for r < rows,
 * xp the tile's inputs packed as [depth][LINEAR_ROWS] (see linear_pack_x). The sum over this
 * block of inputs starts from zero and is added to y at the end, so an output is a sum of
 * block sums (as sgemm does), not one chain of k roundings. */
INLINE void linear_tile(const float *xp, size_t rows, const float *panel, size_t depth, int nv, int load,
                        const float *bias, float *y, size_t ldy) {
    vec16 acc[LINEAR_ROWS][4]; /* every index a constant after unrolling, or acc lives on the stack */
    for (int r = 0; r < LINEAR_ROWS; r++)
        for (int l = 0; l < nv; l++) acc[r][l] = (vec16){0};
    for (size_t i = 0; i < depth; i++) {
        vec16 w[4];
        for (int l = 0; l < nv; l++) w[l] = *(const vec16 *)(panel + (size_t)(16 * nv) * i + 16 * l);
        for (int r = 0; r < LINEAR_ROWS; r++) {
            float a = xp[LINEAR_ROWS * i + r];
            for (int l = 0; l < nv; l++) acc[r][l] += a * w[l];
        }
    }
    for (int r = 0; r < LINEAR_ROWS; r++)
        for (int l = 0; l < nv && (size_t)r < rows; l++) {
            vec16 *out = (vec16 *)(y + r * ldy + 16 * l);
            *out = acc[r][l] + (load ? *out : bias ? *(const vec16 *)(bias + 16 * l) : (vec16){0});
        }
}

/* linear_tile with the vector count a constant, so that each width gets its own loop. */
INLINE void linear_tile_any(const float *xp, size_t rows, const float *panel, size_t stride, size_t depth,
                            int load, const float *bias, float *y, size_t ldy) {
    switch (stride / 16) {
    case 4: linear_tile(xp, rows, panel, depth, 4, load, bias, y, ldy); break;
    case 3: linear_tile(xp, rows, panel, depth, 3, load, bias, y, ldy); break;
    case 2: linear_tile(xp, rows, panel, depth, 2, load, bias, y, ldy); break;
    default: linear_tile(xp, rows, panel, depth, 1, load, bias, y, ldy); break;
    }
}

static inline size_t linear_tiles(size_t rows) { return (rows + LINEAR_ROWS - 1) / LINEAR_ROWS; }

/* Copies a block of x so that each tile reads one sequential stream, not LINEAR_ROWS rows a
 * stride apart: per block of inputs k0.., per tile, [depth][LINEAR_ROWS] (rows past the
 * block repeat the tile's first row and are never stored). */
INLINE void linear_pack_x(const float *x, size_t ldx, size_t block, size_t k, float *xp) {
    size_t padded = linear_tiles(block) * LINEAR_ROWS;
    for (size_t r0 = 0; r0 < block; r0 += LINEAR_ROWS) {
        const float *src[LINEAR_ROWS];
        for (size_t r = 0; r < LINEAR_ROWS; r++) src[r] = x + (r0 + r < block ? r0 + r : r0) * ldx;
        for (size_t k0 = 0; k0 < k; k0 += LINEAR_DEPTH) {
            size_t depth = k - k0 < LINEAR_DEPTH ? k - k0 : LINEAR_DEPTH;
            float *dst = xp + k0 * padded + r0 * depth;
            for (size_t i = 0; i < depth; i++)
                for (size_t r = 0; r < LINEAR_ROWS; r++) dst[LINEAR_ROWS * i + r] = src[r][k0 + i];
        }
    }
}

/* Every tile of `block` rows for one panel (outputs p0..) and one block of inputs (k0..). */
INLINE void linear_pass(const float *xp, size_t block, size_t k, size_t k0, const float *packed, size_t n,
                        size_t p0, const float *bias, enum ak_activation activation, float *y, size_t ldy,
                        const char *next, size_t next_lines) {
    size_t width = n - p0 < LINEAR_PANEL ? n - p0 : LINEAR_PANEL, stride = linear_stride(width);
    size_t depth = k - k0 < LINEAR_DEPTH ? k - k0 : LINEAR_DEPTH;
    const float *panel = packed + p0 * k + k0 * stride;
    const float *b = bias && k0 == 0 ? bias + p0 : NULL;
    const float *slice = xp + k0 * linear_tiles(block) * LINEAR_ROWS;
    size_t per_tile = (next_lines + linear_tiles(block) - 1) / linear_tiles(block), line = 0;
    for (size_t r0 = 0; r0 < block; r0 += LINEAR_ROWS) {
        size_t tile = block - r0 < LINEAR_ROWS ? block - r0 : LINEAR_ROWS;
        const float *xt = slice + r0 * depth;
        for (size_t e = line + per_tile; line < e && line < next_lines; line++) __builtin_prefetch(next + 64 * line);
        float *yt = y + r0 * ldy + p0;
        if (width == stride) {
            linear_tile_any(xt, tile, panel, stride, depth, k0 > 0, b, yt, ldy);
        } else { /* a ragged last panel runs on a zero-padded copy of its tile */
            float t[LINEAR_ROWS * LINEAR_PANEL] = {0}, tb[LINEAR_PANEL] = {0};
            for (size_t r = 0; k0 > 0 && r < tile; r++) memcpy(t + r * stride, yt + r * ldy, width * sizeof(float));
            if (b) memcpy(tb, b, width * sizeof(float));
            linear_tile_any(xt, tile, panel, stride, depth, k0 > 0, b ? tb : NULL, t, stride);
            for (size_t r = 0; r < tile; r++) memcpy(yt + r * ldy, t + r * stride, width * sizeof(float));
        }
        if (k0 + depth < k || activation == AK_ACTIVATION_NONE) continue;
        for (size_t r = 0; r < tile; r++) {
            float *row = yt + r * ldy;
            if (activation == AK_ACTIVATION_GELU_ERF)
                for (size_t j = 0; j < width; j++) row[j] = gelu_erf(row[j]);
            else
                for (size_t j = 0; j < width; j++) row[j] = gelu_tanh(row[j]);
        }
    }
}

/* Rows per block: the block's packed x stays in L2 while every panel passes over it. */
static size_t linear_block(size_t rows, size_t k) {
    size_t step = LINEAR_L2_FLOATS / (k ? k : 1) / LINEAR_ROWS * LINEAR_ROWS;
    step = step < LINEAR_ROWS ? LINEAR_ROWS : step > LINEAR_MAX_BLOCK ? LINEAR_MAX_BLOCK : step;
    return rows < step ? rows : step;
}

/* Each thread's packed-x buffer, grown on demand and freed when the thread exits. */
static pthread_key_t linear_scratch_key;
static pthread_once_t linear_scratch_once = PTHREAD_ONCE_INIT;
struct linear_scratch { size_t count; float *data; };
static void linear_scratch_free(void *p) {
    struct linear_scratch *s = p;
    free(s->data);
    free(s);
}
static void linear_scratch_init(void) { pthread_key_create(&linear_scratch_key, linear_scratch_free); }
static float *linear_scratch(size_t count) {
    pthread_once(&linear_scratch_once, linear_scratch_init);
    struct linear_scratch *s = pthread_getspecific(linear_scratch_key);
    if (!s) {
        if (!(s = calloc(1, sizeof *s))) abort();
        pthread_setspecific(linear_scratch_key, s);
    }
    if (s->count < count) {
        free(s->data);
        s->data = aligned_alloc(64, (count * sizeof(float) + 63) & ~(size_t)63);
        if (!s->data) abort();
        s->count = count;
    }
    return s->data;
}

/* Rows go in blocks; each block's x is packed once, then panel by panel, each over all
 * inputs: the packed block stays in L2, a panel's depth block in L1, and the weights stream
 * from L3 once a block. */
INLINE void linear_blocks(const float *x, size_t ldx, size_t rows, size_t k, const float *packed, size_t n,
                          const float *bias, enum ak_activation activation, float *y, size_t ldy, float *residual,
                          const float *gamma, const float *beta, float eps) {
    if (rows == 0 || n == 0) return;
    size_t step = linear_block(rows, k);
    float *xp = linear_scratch(linear_tiles(step) * LINEAR_ROWS * (k ? k : 1));
    for (size_t m0 = 0; m0 < rows; m0 += step) {
        size_t block = rows - m0 < step ? rows - m0 : step;
        float *yb = y + m0 * ldy;
        linear_pack_x(x + m0 * ldx, ldx, block, k, xp);
        for (size_t p0 = 0; p0 < n; p0 += LINEAR_PANEL)
            for (size_t k0 = 0; k0 < k; k0 += LINEAR_DEPTH) {
                /* the weights of the next pass, fetched a few lines per tile (from L3: the
                 * first tiles of each pass would otherwise wait for them) */
                size_t nk = k0 + LINEAR_DEPTH < k ? k0 + LINEAR_DEPTH : 0;
                size_t np = nk ? p0 : p0 + LINEAR_PANEL < n ? p0 + LINEAR_PANEL : 0;
                size_t nwidth = n - np < LINEAR_PANEL ? n - np : LINEAR_PANEL;
                size_t ndepth = k - nk < LINEAR_DEPTH ? k - nk : LINEAR_DEPTH;
                const float *nslice = packed + np * k + nk * linear_stride(nwidth);
                linear_pass(xp, block, k, k0, packed, n, p0, bias, activation, yb, ldy, (const char *)nslice,
                            ndepth * linear_stride(nwidth) / 16);
            }
        /* the block's y is still in L2: no second pass over it from memory */
        if (residual) residual_layer_norm_rows(residual + m0 * n, yb, ldy, gamma, beta, block, n, eps);
    }
}

MULTI void ak_linear(const float *x, size_t ldx, size_t rows, size_t k, const float *packed, size_t n,
                     const float *bias, enum ak_activation activation, float *y, size_t ldy) {
    linear_blocks(x, ldx, rows, k, packed, n, bias, activation, y, ldy, NULL, NULL, NULL, 0.0f);
}

MULTI void ak_linear_residual_layer_norm(const float *x, size_t ldx, size_t rows, size_t k, const float *packed,
                                         size_t n, const float *bias, float *y, size_t ldy, float *residual,
                                         const float *gamma, const float *beta, float eps) {
    linear_blocks(x, ldx, rows, k, packed, n, bias, AK_ACTIVATION_NONE, y, ldy, residual, gamma, beta, eps);
}

/* Attention keeps 16 AVX-512 accumulators live, enough independent FMA chains to cover the
 * FMA latency on both ports: scores in blocks of 4 query rows × 64 keys, outputs in blocks
 * of ATTENTION_ROWS query rows × 32 value columns. Vector types pin that blocking, which
 * the auto-vectoriser spills. */
#define ATTENTION_ROWS 8
static inline size_t attention_padded(size_t length) { return (length + 15) & ~(size_t)15; }

size_t ak_attention_scratch(size_t length, size_t head_dim) {
    return (3 * head_dim + ATTENTION_ROWS) * attention_padded(length);
}

/* 16 rows of 16 floats become 16 columns: unpack pairs, then 2 × 2 blocks, then 128-bit lanes. */
INLINE void transpose16(vec16 *m) {
    vec16 t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = __builtin_shufflevector(m[i], m[i + 1], 0, 16, 1, 17, 4, 20, 5, 21, 8, 24, 9, 25, 12, 28, 13, 29);
        t[i + 1] = __builtin_shufflevector(m[i], m[i + 1], 2, 18, 3, 19, 6, 22, 7, 23, 10, 26, 11, 27, 14, 30, 15, 31);
    }
    for (int i = 0; i < 16; i += 4) {
        u[i] = __builtin_shufflevector(t[i], t[i + 2], 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29);
        u[i + 1] = __builtin_shufflevector(t[i], t[i + 2], 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);
        u[i + 2] = __builtin_shufflevector(t[i + 1], t[i + 3], 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29);
        u[i + 3] = __builtin_shufflevector(t[i + 1], t[i + 3], 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);
    }
    /* u[4g + c] holds rows 4g..4g+3 of columns c, c+4, c+8 and c+12 in its four 128-bit lanes. */
    for (int c = 0; c < 4; c++) {
        vec16 even01 = __builtin_shufflevector(u[c], u[4 + c], 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
        vec16 odd01 = __builtin_shufflevector(u[c], u[4 + c], 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
        vec16 even23 = __builtin_shufflevector(u[8 + c], u[12 + c], 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
        vec16 odd23 = __builtin_shufflevector(u[8 + c], u[12 + c], 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
        m[c] = __builtin_shufflevector(even01, even23, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
        m[c + 8] = __builtin_shufflevector(even01, even23, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
        m[c + 4] = __builtin_shufflevector(odd01, odd23, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
        m[c + 12] = __builtin_shufflevector(odd01, odd23, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
    }
}

/* Copies one head out of the strided projection, whose row stride would crowd a few L1
 * sets: q and v as [length, head_dim], k transposed as [head_dim, padded], zero past length. */
INLINE void attention_gather(
    const float *q, const float *k, const float *v, size_t ld, size_t length, size_t head_dim,
    size_t padded, float *qs, float *kt, float *vs) {
    size_t wide = head_dim & ~(size_t)15;
    for (size_t j = 0; j < length; j++) {
        for (size_t c = 0; c < wide; c += 16) {
            *(vec16 *)(qs + j * head_dim + c) = *(const vec16 *)(q + j * ld + c);
            *(vec16 *)(vs + j * head_dim + c) = *(const vec16 *)(v + j * ld + c);
        }
        for (size_t c = wide; c < head_dim; c++) {
            qs[j * head_dim + c] = q[j * ld + c];
            vs[j * head_dim + c] = v[j * ld + c];
        }
    }
    size_t tiled = length & ~(size_t)15;
    for (size_t j = 0; j < tiled; j += 16)
        for (size_t c = 0; c < wide; c += 16) {
            vec16 m[16];
            for (int r = 0; r < 16; r++) m[r] = *(const vec16 *)(k + (j + r) * ld + c);
            transpose16(m);
            for (int r = 0; r < 16; r++) *(vec16 *)(kt + (c + r) * padded + j) = m[r];
        }
    for (size_t c = 0; c < head_dim; c++) {
        for (size_t j = c < wide ? tiled : 0; j < length; j++) kt[c * padded + j] = k[j * ld + c];
        for (size_t j = length; j < padded; j++) kt[c * padded + j] = 0.0f;
    }
}

/* scores[r][j..j+16n] = q_r · k_j for 4 query rows (qs rows, stride head_dim), n vectors of keys. */
INLINE void attention_score_block(
    const float *const *qr, const float *kt, size_t padded, size_t j, size_t head_dim,
    float *scores, int n) {
    vec16 acc[4][4] = {{0}};
    for (size_t c = 0; c < head_dim; c++) {
        vec16 key[4];
        for (int l = 0; l < n; l++) key[l] = *(const vec16 *)(kt + c * padded + j + 16 * l);
        for (int r = 0; r < 4; r++) {
            float qc = qr[r][c];
            for (int l = 0; l < n; l++) acc[r][l] += qc * key[l];
        }
    }
    for (int r = 0; r < 4; r++)
        for (int l = 0; l < n; l++) *(vec16 *)(scores + r * padded + j + 16 * l) = acc[r][l];
}

/* In place: row[j] = exp(scale (row[j] - max)) for j < visible and 0 up to reach. Returns
 * 1 / Σ row: the weights stay unnormalised until the output. */
INLINE float attention_softmax(float *row, size_t visible, size_t reach, float scale) {
    size_t wide = visible & ~(size_t)15, j;
    vec16 most = *(const vec16 *)row;
    for (j = 16; j < wide; j += 16) {
        vec16 x = *(const vec16 *)(row + j);
        most = VEC_MAX(x, most);
    }
    VEC_REDUCE(most, VEC_MAX);
    float top = wide ? most[0] : row[0];
    for (j = wide; j < visible; j++) top = row[j] > top ? row[j] : top;
    top *= scale;
    for (j = 0; j < visible; j++) row[j] = fast_exp(row[j] * scale - top);
    for (j = visible; j < reach; j++) row[j] = 0.0f;
    vec16 sum = {0};
    for (j = 0; j < wide; j += 16) sum += *(const vec16 *)(row + j);
    VEC_REDUCE(sum, VEC_ADD);
    float total = sum[0];
    for (j = wide; j < visible; j++) total += row[j];
    return 1.0f / total;
}

/* out[r][0..16n] = inv[r] Σ_j p[r][j] v_j[0..16n] for ATTENTION_ROWS rows, n = 1 or 2. */
INLINE void attention_value_block(
    const float *scores, size_t padded, size_t reach, const float *vs, size_t head_dim,
    const float *inv, size_t rows, float *out, size_t ldo, int n) {
    vec16 acc[ATTENTION_ROWS][2] = {{0}};
    for (size_t j = 0; j < reach; j++) {
        vec16 value[2];
        for (int l = 0; l < n; l++) value[l] = *(const vec16 *)(vs + j * head_dim + 16 * l);
        for (int r = 0; r < ATTENTION_ROWS; r++) {
            float p = scores[r * padded + j];
            for (int l = 0; l < n; l++) acc[r][l] += p * value[l];
        }
    }
    for (int r = 0; r < ATTENTION_ROWS; r++)
        for (int l = 0; l < n && (size_t)r < rows; l++) *(vec16 *)(out + r * ldo + 16 * l) = acc[r][l] * inv[r];
}

/* One head: the gather, then ATTENTION_ROWS queries at a time. `next` (or NULL) are the
 * q, k and v of the head to run after this one, fetched into L1 a few rows per block while
 * this one computes: their rows are a page apart, which the hardware prefetcher skips. */
INLINE void attention_head(
    const float *q, const float *k, const float *v, size_t ld, size_t length, size_t head_dim,
    float scale, int causal, const float *const *next, float *scratch, float *out, size_t ldo) {
    size_t padded = attention_padded(length);
    float *kt = scratch;                    /* [head_dim, padded] */
    float *vs = kt + head_dim * padded;     /* [length, head_dim] */
    float *qs = vs + head_dim * padded;     /* [length, head_dim] */
    float *scores = qs + head_dim * padded; /* [ATTENTION_ROWS, padded] */
    attention_gather(q, k, v, ld, length, head_dim, padded, qs, kt, vs);
    for (size_t i0 = 0; i0 < length; i0 += ATTENTION_ROWS) {
        size_t rows = length - i0 < ATTENTION_ROWS ? length - i0 : ATTENTION_ROWS;
        size_t reach = causal ? i0 + rows : length; /* keys any of these rows may see */
        for (int m = 0; next && m < 3; m++)
            for (size_t r = i0; r < i0 + rows; r++)
                for (size_t c = 0; c < head_dim; c += 16) __builtin_prefetch(next[m] + r * ld + c);

        size_t blocks = (reach + 15) / 16;
        for (size_t half = 0; half < ATTENTION_ROWS; half += 4) {
            const float *qr[4];
            for (size_t r = 0; r < 4; r++) qr[r] = qs + (i0 + (half + r < rows ? half + r : 0)) * head_dim;
            float *s = scores + half * padded;
            size_t b = 0;
            for (; b + 4 <= blocks; b += 4) attention_score_block(qr, kt, padded, 16 * b, head_dim, s, 4);
            if (b + 2 <= blocks) {
                attention_score_block(qr, kt, padded, 16 * b, head_dim, s, 2);
                b += 2;
            }
            if (b < blocks) attention_score_block(qr, kt, padded, 16 * b, head_dim, s, 1);
        }

        float inv[ATTENTION_ROWS];
        for (size_t r = 0; r < ATTENTION_ROWS; r++) {
            if (r < rows) {
                inv[r] = attention_softmax(scores + r * padded, causal ? i0 + r + 1 : length, reach, scale);
            } else {
                for (size_t j = 0; j < reach; j++) scores[r * padded + j] = 0.0f;
                inv[r] = 0.0f;
            }
        }

        float *o = out + i0 * ldo;
        size_t c = 0;
        for (; c + 32 <= head_dim; c += 32)
            attention_value_block(scores, padded, reach, vs + c, head_dim, inv, rows, o + c, ldo, 2);
        for (; c + 16 <= head_dim; c += 16)
            attention_value_block(scores, padded, reach, vs + c, head_dim, inv, rows, o + c, ldo, 1);
        for (; c < head_dim; c++)
            for (size_t r = 0; r < rows; r++) {
                float acc = 0.0f;
                for (size_t j = 0; j < reach; j++) acc += scores[r * padded + j] * vs[j * head_dim + c];
                o[r * ldo + c] = acc * inv[r];
            }
    }
}

MULTI void ak_attention(const float *q, const float *k, const float *v, size_t ld, size_t length,
                        size_t head_dim, size_t first_head, size_t end_head, size_t group,
                        float scale, int causal, float *scratch, float *out, size_t ldo) {
    for (size_t h = first_head; h < end_head; h++) {
        const float *next[3] = {q + (h + 1) * head_dim, k + (h + 1) / group * head_dim, v + (h + 1) / group * head_dim};
        attention_head(q + h * head_dim, k + h / group * head_dim, v + h / group * head_dim, ld, length,
                       head_dim, scale, causal, h + 1 < end_head ? next : NULL, scratch,
                       out + h * head_dim, ldo);
    }
}

MULTI void ak_add_rows(float *x, const float *bias, size_t rows, size_t d, size_t ld) {
    if (!bias) return;
    for (size_t r = 0; r < rows; r++) {
        float *row = x + r * ld;
        for (size_t i = 0; i < d; i++) row[i] += bias[i];
    }
}

MULTI void ak_add(float *x, const float *y, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}

MULTI void ak_rope(float *x, size_t tokens, size_t heads, size_t head_dim, size_t ld,
                   const int *positions, const float *cos_table, const float *sin_table) {
    size_t half = head_dim / 2;
    for (size_t t = 0; t < tokens; t++) {
        const float *c = cos_table + (size_t)positions[t] * half;
        const float *s = sin_table + (size_t)positions[t] * half;
        for (size_t h = 0; h < heads; h++) {
            float *v = x + t * ld + h * head_dim;
            for (size_t i = 0; i < half; i++) {
                float a = v[i], b = v[i + half];
                v[i] = a * c[i] - b * s[i];
                v[i + half] = b * c[i] + a * s[i];
            }
        }
    }
}
