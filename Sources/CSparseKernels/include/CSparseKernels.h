#ifndef ACTCLUSTER_CSPARSEKERNELS_H
#define ACTCLUSTER_CSPARSEKERNELS_H

#include <stddef.h>
#include <stdint.h>

/* Kernels of the sparse-dictionary trainer. Each hot loop is compiled for AVX-512, AVX2 and
 * baseline x86-64 (target_clones) and picked at load time; the fused encoder is AVX-512 only.
 * Small per-call scratch is allocated where noted. Matrices are row-major and contiguous unless a stride
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

/* ---- Fused TopK encoder (encoder.c) ---------------------------------------------------- */

/* Latents per packed panel of W_enc and tokens per register tile. */
#define SK_PANEL 32
#define SK_TILE_ROWS 12

/* Whether sk_encode_topk can run here (AVX-512F). */
int sk_fused_encoder_available(void);

/* Panels of SK_PANEL latents for m latents; a packed encoder holds panels * (d + 1) * SK_PANEL
 * floats. */
size_t sk_encoder_panels(size_t m);

/* Packs panels panel_lo ..< panel_hi of W_enc [m, d] and bias [m] (NULL: zero), with latent
 * slot s holding latent order[s]: panel p is [d + 1][SK_PANEL], the last row the bias. */
void sk_pack_encoder(const float *W, const float *bias, const int32_t *order, size_t m, size_t d,
                     size_t panel_lo, size_t panel_hi, float *packed);

/* For rows of x [rows, d]: the k largest of relu((x − center) · W_encᵀ + b_enc) per row into
 * indices/values [rows, k] (unsorted; when a row has fewer than k positive values the rest
 * are value 0 with latent order[0]), and, when aux_k > 0, the aux_k largest of relu among the
 * latents in slots 0 ..< aux_count (as sk_topk_rows) into aux_indices/aux_values [rows, aux_k].
 * `packed` holds every panel from sk_pack_encoder. Allocates its own scratch. */
void sk_encode_topk(const float *x, const float *center, size_t rows, size_t d, const float *packed,
                    const int32_t *order, size_t m, size_t k, int32_t *indices, float *values,
                    size_t aux_count, size_t aux_k, int32_t *aux_indices, float *aux_values);

/* ---- TopK encoder with an int8 prescreen (encoder_int8.c) ------------------------------ */

/* Whether sk_encode_topk_int8 can run here (AVX-512F, BW and VNNI). */
int sk_int8_encoder_available(void);

/* Bytes of one int8 panel (SK_PANEL latents, d rounded up to a multiple of 4). */
size_t sk_int8_panel_bytes(size_t d);

/* Quantises panels panel_lo ..< panel_hi of W_enc [m, d] (latent order[s] in slot s) to int8,
 * one scale per latent, into packed (sk_int8_panel_bytes(d) per panel) and meta (6 * SK_PANEL
 * floats per panel: the scale, the int32 offset correction, b_enc (NULL: zero), and the terms
 * of the error bound). */
void sk_quantize_encoder(const float *W, const float *bias, const int32_t *order, size_t m, size_t d, size_t panel_lo,
                         size_t panel_hi, int8_t *packed, float *meta);

/* As sk_encode_topk, with the int8 GEMM choosing candidates by rigorous bounds and their values
 * (and the selection among them) recomputed in fp32 from W [m, d] (rows by latent id). packed
 * and meta hold every panel from sk_quantize_encoder. stats (NULL: none) gets += the number of
 * values recomputed ([0]) and of rows computed exactly over every latent ([1]). */
void sk_encode_topk_int8(const float *x, const float *center, size_t rows, size_t d, const int8_t *packed,
                         const float *meta, const float *W, const int32_t *order, size_t m, size_t k, int32_t *indices,
                         float *values, size_t aux_count, size_t aux_k, int32_t *aux_indices, float *aux_values,
                         uint64_t *stats);

/* ---- Decode and backward (kernels.c) ------------------------------------------------- */

/* out[r] = (bias ? bias : 0) + sum_j values[j] * W[indices[j]] over row r's entries; W [m, d]. */
void sk_decode(const int64_t *start, const int32_t *indices, const float *values, size_t rows,
               const float *W, size_t d, const float *bias, float *out);

/* The decode and the first backward step, for rows lo ..< hi of x [rows, d] and their codes
 * (CSR: start, indices, values; W the decoder [m, d]):
 *   e = x − (bias + Σ values · W[indices]);  err[r] = Σ e²  (as sk_subtract)
 *   with aux_start (AuxK codes, no bias): a = Σ aux_values · W[aux_indices] − e;
 *     aux_err[r] = Σ a²;  ∂L/∂ê = aux_scale · a;  aux_dots[j] = W[i] · ∂L/∂ê
 *   ∂L/∂x̂ = scale · e;  dots[j] = W[i] · ∂L/∂x̂ + (extra ? extra[i] : 0)
 * dots and aux_dots are 0 for entries whose value is not positive (ReLU and TopK pass no
 * gradient). ∂L/∂x̂ goes to row r and ∂L/∂ê to row rows + r of `out`, in column slices of
 * out_rows rows (sk_pack_slices). The W rows a row gathers for its decode serve its dots from
 * cache. */
void sk_decode_backward(const float *x, size_t rows, size_t lo, size_t hi, size_t d, const float *W,
                        const float *bias, const int64_t *start, const int32_t *indices,
                        const float *values, float scale, const float *extra, float *dots, double *err,
                        const int64_t *aux_start, const int32_t *aux_indices, const float *aux_values,
                        float aux_scale, float *aux_dots, double *aux_err, float *out, size_t out_rows);

/* Counting sort of the entries of two sparse codes of `rows` rows by latent, for
 * sk_latent_gradients, in two passes that each worker runs for its own latents lo ..< hi:
 * sk_count_by_latent writes lstart[i + 1] = entries of latent i; once lstart is summed into
 * offsets, sk_place_by_latent writes lrow (r for the main codes: start, indices, values, dots;
 * rows + r for the AuxK codes), lvalue and lcoef at them, in entry order within a latent. */
void sk_count_by_latent(size_t lo, size_t hi, size_t rows, const int64_t *start, const int32_t *indices,
                        const int64_t *aux_start, const int32_t *aux_indices, int64_t *lstart);
void sk_place_by_latent(size_t lo, size_t hi, size_t rows, const int64_t *start, const int32_t *indices,
                        const float *values, const float *dots, const int64_t *aux_start,
                        const int32_t *aux_indices, const float *aux_values, const float *aux_dots,
                        const int64_t *lstart, int32_t *lrow, float *lvalue, float *lcoef);

/* Columns per slice of sk_pack_slices. */
#ifndef SK_SLICE
#define SK_SLICE 32
#endif

/* Rows lo ..< hi of x [rows, d], minus bias (NULL: none), into column slices: slice s
 * (columns s * SK_SLICE onwards, w of them: SK_SLICE or what is left of d) is [rows, w] at
 * out + s * SK_SLICE * rows. */
void sk_pack_slices(const float *x, const float *bias, size_t rows, size_t d, size_t lo, size_t hi,
                    float *out);

/* out[c] += sum over rows lo ..< hi of column c, for sliced [rows, d] (in double). */
void sk_slice_column_sums(const float *slices, size_t rows, size_t d, size_t lo, size_t hi, double *out);

/* For latents lo ..< hi of a by-latent CSR (lstart [m + 1], lrow, lvalue: the activation,
 * lcoef: dL/dpre), with dec_src [dec_rows, d] and enc_src [enc_rows, d] in column slices
 * (sk_pack_slices), rows lo ..< hi of the destinations are overwritten with
 *   grad_dec[i]  = sum lvalue * dec_src[lrow]
 *   grad_enc[i]  = sum lcoef * enc_src[lrow mod enc_rows]   (lrow < 2 enc_rows)
 *   grad_benc[i] = sum lcoef
 * The sums run in entry order, slice by slice. */
void sk_latent_gradients(const int64_t *lstart, const int32_t *lrow, const float *lvalue,
                         const float *lcoef, size_t lo, size_t hi, const float *dec_src,
                         size_t dec_rows, const float *enc_src, size_t enc_rows, size_t d,
                         float *grad_dec, float *grad_enc, float *grad_benc);

/* out[r] = x[r] - a[r] (rows of d); returns sum of squares of out, in double. */
double sk_subtract(const float *x, const float *a, float *out, size_t n);

/* Sum of squares of x [n], in double. */
double sk_sum_squares(const float *x, size_t n);

/* x[i] *= s */
void sk_scale(float *x, size_t n, float s);

/* Adam with bias correction folded into step: p -= step * m / (sqrt(v) + eps_hat). */
void sk_adam(float *p, const float *g, float *m, float *v, size_t n, float beta1, float beta2,
             float step, float eps_hat);

/* Adam on decoder rows kept at unit norm, one pass per row: G[r] -= (G[r] . W[r]) W[r], the
 * Adam step of sk_adam, then W[r] /= (|W[r]| + eps). */
void sk_adam_unit_rows(float *W, float *G, float *m, float *v, size_t rows, size_t d, float beta1,
                       float beta2, float step, float eps_hat, float eps);

/* Per row: W[r] /= (|W[r]| + eps). */
void sk_normalize_rows(float *W, size_t rows, size_t d, float eps);

/* norms[r] = |W[r]| */
void sk_row_norms(const float *W, size_t rows, size_t d, float *norms);

/* out[c] (+)= sum over rows of x[r][c], in double. */
void sk_column_sums(const float *x, size_t rows, size_t d, double *out);

#endif
