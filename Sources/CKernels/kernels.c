#include "CKernels.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define MULTI __attribute__((target_clones("avx512f", "avx2", "default")))

/* Sums and maxima with 16 independent lanes, so they vectorise without -ffast-math. */
static inline float lane_sum(const float *x, size_t n) {
    float acc[16] = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) acc[l] += x[i + l];
    float total = 0.0f;
    for (int l = 0; l < 16; l++) total += acc[l];
    for (; i < n; i++) total += x[i];
    return total;
}

static inline float lane_max(const float *x, size_t n) {
    float acc[16];
    for (int l = 0; l < 16; l++) acc[l] = -INFINITY;
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) acc[l] = fmaxf(acc[l], x[i + l]);
    float best = -INFINITY;
    for (int l = 0; l < 16; l++) best = fmaxf(best, acc[l]);
    for (; i < n; i++) best = fmaxf(best, x[i]);
    return best;
}

/* Sum of (x - mean)^2 in 16 lanes. */
static inline float lane_centered_squares(const float *x, size_t n, float mean) {
    float acc[16] = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) {
            float c = x[i + l] - mean;
            acc[l] += c * c;
        }
    float total = 0.0f;
    for (int l = 0; l < 16; l++) total += acc[l];
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

MULTI void ak_bias_gelu_erf(float *x, const float *bias, size_t rows, size_t d) {
    for (size_t r = 0; r < rows; r++) {
        float *row = x + r * d;
        for (size_t i = 0; i < d; i++) {
            float v = row[i] + bias[i];
            row[i] = 0.5f * v * (1.0f + fast_erf(v * 0.70710678118654752f));
        }
    }
}

MULTI void ak_bias_gelu_tanh(float *x, const float *bias, size_t rows, size_t d) {
    for (size_t r = 0; r < rows; r++) {
        float *row = x + r * d;
        for (size_t i = 0; i < d; i++) {
            float v = row[i] + bias[i];
            float inner = 0.79788456080286536f * (v + 0.044715f * v * v * v);
            row[i] = 0.5f * v * (1.0f + fast_tanh(inner));
        }
    }
}

MULTI void ak_bias_residual(float *x, float *y, const float *bias, size_t rows, size_t d) {
    for (size_t r = 0; r < rows; r++) {
        float *xr = x + r * d, *yr = y + r * d;
        for (size_t i = 0; i < d; i++) {
            float v = yr[i] + bias[i];
            yr[i] = v;
            xr[i] += v;
        }
    }
}

MULTI void ak_bias_residual_layer_norm(float *x, float *y, const float *bias, const float *gamma,
                                       const float *beta, size_t rows, size_t d, float eps) {
    for (size_t r = 0; r < rows; r++) {
        float *xr = x + r * d, *yr = y + r * d;
        for (size_t i = 0; i < d; i++) {
            float v = yr[i] + bias[i];
            yr[i] = v;
            xr[i] += v;
        }
        float mean = lane_sum(xr, d) / (float)d;
        float inv = 1.0f / sqrtf(lane_centered_squares(xr, d, mean) / (float)d + eps);
        for (size_t i = 0; i < d; i++) xr[i] = (xr[i] - mean) * inv * gamma[i] + beta[i];
    }
}

MULTI void ak_silu_mul(float *gate, const float *up, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        gate[i] = g / (1.0f + fast_exp(-g)) * up[i];
    }
}

static inline __attribute__((always_inline)) void softmax_row(float *row, size_t n) {
    float maximum = lane_max(row, n);
    for (size_t i = 0; i < n; i++) row[i] = fast_exp(row[i] - maximum);
    float inv = 1.0f / lane_sum(row, n);
    for (size_t i = 0; i < n; i++) row[i] *= inv;
}

size_t ak_attention_scratch(size_t length, size_t head_dim) {
    size_t padded = (length + 15) & ~(size_t)15;
    return (head_dim + 4) * padded;
}

/* Four query rows at a time: each key or value row loaded once feeds four independent
 * accumulator chains, which is what keeps the FMA units busy. */
MULTI void ak_attention(const float *q, const float *k, const float *v, size_t ld, size_t length,
                        size_t head_dim, float scale, int causal, float *scratch, float *out,
                        size_t ldo) {
    size_t padded = (length + 15) & ~(size_t)15;
    float *kt = scratch;                       /* [head_dim, padded], zero past length */
    float *scores = scratch + head_dim * padded; /* [4, padded] */
    for (size_t c = 0; c < head_dim; c++) {
        for (size_t j = 0; j < length; j++) kt[c * padded + j] = k[j * ld + c];
        for (size_t j = length; j < padded; j++) kt[c * padded + j] = 0.0f;
    }
    for (size_t i0 = 0; i0 < length; i0 += 4) {
        size_t rows = length - i0 < 4 ? length - i0 : 4;
        size_t reach = causal ? i0 + rows : length; /* keys any of these rows may see */
        const float *qr[4];
        for (size_t r = 0; r < 4; r++) qr[r] = q + (i0 + (r < rows ? r : 0)) * ld;

        for (size_t j = 0; j < reach; j += 16) {
            float acc[4][16] = {{0}};
            for (size_t c = 0; c < head_dim; c++) {
                const float *kc = kt + c * padded + j;
                for (int r = 0; r < 4; r++) {
                    float qc = qr[r][c];
                    for (int l = 0; l < 16; l++) acc[r][l] += qc * kc[l];
                }
            }
            for (int r = 0; r < 4; r++)
                for (int l = 0; l < 16; l++) scores[r * padded + j + l] = acc[r][l] * scale;
        }
        for (size_t r = 0; r < rows; r++) {
            size_t visible = causal ? i0 + r + 1 : length;
            float *row = scores + r * padded;
            softmax_row(row, visible);
            for (size_t j = visible; j < reach; j++) row[j] = 0.0f;
        }
        for (size_t r = rows; r < 4; r++)
            for (size_t j = 0; j < reach; j++) scores[r * padded + j] = 0.0f;

        size_t c = 0;
        for (; c + 16 <= head_dim; c += 16) {
            float acc[4][16] = {{0}};
            for (size_t j = 0; j < reach; j++) {
                const float *vj = v + j * ld + c;
                for (int r = 0; r < 4; r++) {
                    float p = scores[r * padded + j];
                    for (int l = 0; l < 16; l++) acc[r][l] += p * vj[l];
                }
            }
            for (size_t r = 0; r < rows; r++)
                for (int l = 0; l < 16; l++) out[(i0 + r) * ldo + c + l] = acc[r][l];
        }
        for (; c < head_dim; c++) {
            for (size_t r = 0; r < rows; r++) {
                float acc = 0.0f;
                for (size_t j = 0; j < reach; j++) acc += scores[r * padded + j] * v[j * ld + c];
                out[(i0 + r) * ldo + c] = acc;
            }
        }
    }
}

MULTI void ak_add_rows(float *x, const float *bias, size_t rows, size_t d, size_t ld) {
    if (!bias) return;
    for (size_t r = 0; r < rows; r++) {
        float *row = x + r * ld;
        for (size_t i = 0; i < d; i++) row[i] += bias[i];
    }
}

void ak_broadcast_rows(float *out, const float *bias, size_t rows, size_t d, size_t ld) {
    for (size_t r = 0; r < rows; r++) memcpy(out + r * ld, bias, d * sizeof(float));
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
