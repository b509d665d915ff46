#ifndef ACTCLUSTER_CSPARSEKERNELS_H
#define ACTCLUSTER_CSPARSEKERNELS_H

#include <stddef.h>
#include <stdint.h>

/* Kernels of the sparse-dictionary trainer. Each hot loop is compiled for AVX-512, AVX2 and
 * baseline x86-64 (target_clones) and picked at load time. No allocation except where a
 * scratch argument is documented. Matrices are row-major and contiguous unless a stride
 * (`ld`) is given. Sparse codes are CSR: row r's entries are start[r] ..< start[r + 1] of
 * `indices` (latent ids) and `values`. */

/* Per row r of pre [rows, m] (stride ld): the k largest of relu(pre[r] + bias), written to
 * indices/values [rows, k] (unsorted). Entries whose value is 0 are kept (index of some
 * non-positive latent, value 0) so every row has exactly k entries. */
void sk_topk_rows(const float *pre, size_t ld, const float *bias, size_t rows, size_t m, size_t k,
                  int32_t *indices, float *values);

/* As sk_topk_rows, but only among the latents listed in `subset` (count of them). */
void sk_topk_rows_subset(const float *pre, size_t ld, const float *bias, size_t rows,
                         const int32_t *subset, size_t count, size_t k, int32_t *indices,
                         float *values);

/* Histogram of the upper 16 bits (shift 16) or, among values whose upper 16 bits equal
 * `prefix`, of the lower 16 bits (shift 0) of the positive floats relu(pre + bias); counts
 * [65536] are added to. Positive floats order like their bit patterns. */
void sk_histogram_positive(const float *pre, size_t ld, const float *bias, size_t rows, size_t m,
                           int shift, uint32_t prefix, uint64_t *counts);

/* Counts entries per row with relu(pre + bias) >= threshold (threshold > 0): counts[rows]. */
void sk_count_at_least(const float *pre, size_t ld, const float *bias, size_t rows, size_t m,
                       float threshold, int32_t *counts);

/* Writes the entries with relu(pre + bias) >= threshold, row r from start[r]. */
void sk_gather_at_least(const float *pre, size_t ld, const float *bias, size_t rows, size_t m,
                        float threshold, const int64_t *start, int32_t *indices, float *values);

/* out[r] = (bias ? bias : 0) + sum_j values[j] * W[indices[j]] over row r's entries; W [m, d]. */
void sk_decode(const int64_t *start, const int32_t *indices, const float *values, size_t rows,
               const float *W, size_t d, const float *bias, float *out);

/* dots[j] = W[indices[j]] . g[r] for row r's entries; g [rows, d]. */
void sk_entry_dots(const int64_t *start, const int32_t *indices, size_t rows, const float *W,
                   size_t d, const float *g, float *dots);

/* For latents lo ..< hi of a by-latent CSR (lstart [m + 1], lrow, lcoef_dec, lcoef_enc):
 *   grad_dec[i] (+)= sum lcoef_dec * dec_src[lrow]
 *   grad_enc[i] (+)= sum lcoef_enc * enc_src[lrow % enc_rows]
 *   grad_benc[i] (+)= sum lcoef_enc
 * Written when accumulate is 0, added to otherwise. Any destination may be NULL. */
void sk_latent_gradients(const int64_t *lstart, const int32_t *lrow, const float *lcoef_dec,
                         const float *lcoef_enc, size_t lo, size_t hi, const float *dec_src,
                         const float *enc_src, size_t enc_rows, size_t d, float *grad_dec,
                         float *grad_enc, float *grad_benc, int accumulate);

/* out[r] = x[r] - a[r] (rows of d); returns sum of squares of out, in double. */
double sk_subtract(const float *x, const float *a, float *out, size_t n);

/* x[i] *= s */
void sk_scale(float *x, size_t n, float s);

/* Adam with bias correction folded into step: p -= step * m / (sqrt(v) + eps_hat). */
void sk_adam(float *p, const float *g, float *m, float *v, size_t n, float beta1, float beta2,
             float step, float eps_hat);

/* Per row of W and G [rows, d]: G[r] -= (G[r] . W[r]) W[r] (W rows of unit norm). */
void sk_remove_parallel(const float *W, float *G, size_t rows, size_t d);

/* Per row: W[r] /= (|W[r]| + eps). */
void sk_normalize_rows(float *W, size_t rows, size_t d, float eps);

/* norms[r] = |W[r]| */
void sk_row_norms(const float *W, size_t rows, size_t d, float *norms);

/* out[c] (+)= sum over rows of x[r][c], in double. */
void sk_column_sums(const float *x, size_t rows, size_t d, double *out);

#endif
