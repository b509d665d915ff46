#ifndef ACTCLUSTER_CKERNELS_H
#define ACTCLUSTER_CKERNELS_H

#include <stddef.h>

/* Kernels of the forward pass: dense layers, attention, and the elementwise and row-wise
 * passes between them. Each is compiled for AVX-512, AVX2 and baseline x86-64
 * (target_clones) and picked at load time for this CPU; no allocation (but see ak_linear). Rows are contiguous
 * with the given stride. */

/* out[r] = (x[r] - mean) / sqrt(var + eps) * gamma + beta; out may equal x. */
void ak_layer_norm(const float *x, float *out, const float *gamma, const float *beta,
                   size_t rows, size_t d, size_t stride, float eps);

/* out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * weight; out may equal x. */
void ak_rms_norm(const float *x, float *out, const float *weight, size_t rows, size_t d,
                 size_t stride, float eps);

/* x = LayerNorm(x + y) (post-LN residual, as BERT). */
void ak_residual_layer_norm(float *x, const float *y, const float *gamma, const float *beta,
                            size_t rows, size_t d, float eps);

/* In place: gate = silu(gate) * up (Llama SwiGLU). */
void ak_silu_mul(float *gate, const float *up, size_t n);

/* Dense layers on packed weights: the GEMMs of the forward pass. */

/* Applied to each output of ak_linear before it is stored. */
enum ak_activation { AK_ACTIVATION_NONE, AK_ACTIVATION_GELU_ERF, AK_ACTIVATION_GELU_TANH };

/* Floats of the packed form of an n-output, k-input weight. */
size_t ak_linear_packed_count(size_t n, size_t k);

/* Packs W for ak_linear: W is [n, k] (nn.Linear) or, with input_major, [k, n] (GPT-2's
 * Conv1D). The layout is panels of 64 outputs, each [k][64] (the last one [k][width rounded
 * up to 16], zero-padded). */
void ak_linear_pack(const float *w, size_t n, size_t k, int input_major, float *packed);

/* y[r] = activation(x[r] Wᵀ + bias) for r < rows: x is [rows, k] (stride ldx), y
 * [rows, n] (stride ldy), bias n floats or NULL. Single-threaded; callers split rows. The
 * one allocation: each thread's buffer of packed x, made on its first call (grown for a
 * larger k) and freed when the thread exits. */
void ak_linear(const float *x, size_t ldx, size_t rows, size_t k, const float *packed, size_t n,
               const float *bias, enum ak_activation activation, float *y, size_t ldy);

/* ak_linear without activation, then residual = LayerNorm(residual + y) (BERT's post-LN
 * sublayers) for each block of rows while its y is in cache. residual is [rows, n],
 * contiguous. Equal to ak_linear followed by ak_residual_layer_norm. */
void ak_linear_residual_layer_norm(const float *x, size_t ldx, size_t rows, size_t k, const float *packed,
                                   size_t n, const float *bias, float *y, size_t ldy, float *residual,
                                   const float *gamma, const float *beta, float eps);

/* Floats of scratch ak_attention needs for a sequence of `length` tokens. */
size_t ak_attention_scratch(size_t length, size_t head_dim);

/* Attention heads first_head..<end_head over one sequence of `length` tokens:
 * out[i] = softmax(scale q_i k^T) v per head. q, k, v and out point at head 0 of the first
 * token; their rows are ld (out: ldo) floats apart and head h spans columns
 * h·head_dim..<(h+1)·head_dim. Query head h reads key/value head h / group (grouped-query
 * attention). scratch holds ak_attention_scratch(length, head_dim) floats. With causal
 * set, token i sees tokens 0..i. */
void ak_attention(const float *q, const float *k, const float *v, size_t ld, size_t length,
                  size_t head_dim, size_t first_head, size_t end_head, size_t group,
                  float scale, int causal, float *scratch, float *out, size_t ldo);

/* Each row of x ([rows, d], stride ld) becomes row + bias (bias may be NULL: copy only). */
void ak_add_rows(float *x, const float *bias, size_t rows, size_t d, size_t ld);

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
