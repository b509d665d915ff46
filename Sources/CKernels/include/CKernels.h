#ifndef ACTCLUSTER_CKERNELS_H
#define ACTCLUSTER_CKERNELS_H

#include <stddef.h>

/* Elementwise and row-wise kernels of the forward pass. Each is compiled for AVX-512, AVX2
 * and baseline x86-64 (target_clones) and picked at load time for this CPU. Plain loops
 * written to vectorise; no allocation. Rows are contiguous with the given stride. */

/* out[r] = (x[r] - mean) / sqrt(var + eps) * gamma + beta; out may equal x. */
void ak_layer_norm(const float *x, float *out, const float *gamma, const float *beta,
                   size_t rows, size_t d, size_t stride, float eps);

/* out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * weight; out may equal x. */
void ak_rms_norm(const float *x, float *out, const float *weight, size_t rows, size_t d,
                 size_t stride, float eps);

/* Bias folded into the pass after a GEMM, so the GEMM never reads C (rows of width d):
 * x = gelu(x + bias), erf or tanh form. */
void ak_bias_gelu_erf(float *x, const float *bias, size_t rows, size_t d);
void ak_bias_gelu_tanh(float *x, const float *bias, size_t rows, size_t d);

/* y += bias; x += y (pre-LN residual; y keeps the sublayer output for hooks). */
void ak_bias_residual(float *x, float *y, const float *bias, size_t rows, size_t d);

/* y += bias; x = LayerNorm(x + y) (post-LN residual, as BERT). */
void ak_bias_residual_layer_norm(float *x, float *y, const float *bias, const float *gamma,
                                 const float *beta, size_t rows, size_t d, float eps);

/* In place: gate = silu(gate) * up (Llama SwiGLU). */
void ak_silu_mul(float *gate, const float *up, size_t n);

/* Floats of scratch ak_attention needs for a sequence of `length` tokens. */
size_t ak_attention_scratch(size_t length, size_t head_dim);

/* One attention head over one sequence: out[i] = softmax(scale q_i k^T) v, rows of q, k and
 * v read with stride ld, out written with stride ldo. scratch holds
 * ak_attention_scratch(length, head_dim) floats. With causal set, token i sees tokens 0..i. */
void ak_attention(const float *q, const float *k, const float *v, size_t ld, size_t length,
                  size_t head_dim, float scale, int causal, float *scratch, float *out,
                  size_t ldo);

/* Each row of x ([rows, d], stride ld) becomes row + bias (bias may be NULL: copy only). */
void ak_add_rows(float *x, const float *bias, size_t rows, size_t d, size_t ld);

/* Fills each row of out ([rows, d], stride ld) with bias. */
void ak_broadcast_rows(float *out, const float *bias, size_t rows, size_t d, size_t ld);

/* x += y over n floats. */
void ak_add(float *x, const float *y, size_t n);

/* Rotary embedding with the "rotate half" layout of Hugging Face Llama, in place on
 * heads [tokens, heads * head_dim] (stride ld). cos_table and sin_table are
 * [positions, head_dim / 2]; positions[t] picks the row for token t. */
void ak_rope(float *x, size_t tokens, size_t heads, size_t head_dim, size_t ld,
             const int *positions, const float *cos_table, const float *sin_table);

/* log(sum(exp(x))) over n floats, the maximum taken out first so nothing overflows (the
 * normaliser of a row of logits). */
float ak_log_sum_exp(const float *x, size_t n);
/* Vector-friendly exp, erf and tanh over arrays (for tests against libm). */
void ak_exp(const float *x, float *out, size_t n);
void ak_erf(const float *x, float *out, size_t n);
void ak_tanh(const float *x, float *out, size_t n);

#endif
