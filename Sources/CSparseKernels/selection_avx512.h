/* Branch-free selection helpers shared by the fp32 and the int8 TopK encoders (internal to
 * CSparseKernels; both files compile them for AVX-512 through the target attribute). */
#ifndef CSPARSEKERNELS_SELECTION_AVX512_H
#define CSPARSEKERNELS_SELECTION_AVX512_H

#include <immintrin.h>
#include <math.h>
#include <stddef.h>

/* How many of v [n] are >= t, 16 at a time. */
__attribute__((target("avx512f"))) static inline size_t count_at_least(const float *v, size_t n, float t) {
    size_t full = n / 16 * 16, count = 0;
    __mmask16 tail = (__mmask16)((1u << (n - full)) - 1);
    __m512 b = _mm512_set1_ps(t);
    for (size_t i = 0; i < full; i += 16)
        count += (size_t)__builtin_popcount(_mm512_cmp_ps_mask(_mm512_loadu_ps(v + i), b, _CMP_GE_OQ));
    if (tail)
        count += (size_t)__builtin_popcount(_mm512_mask_cmp_ps_mask(tail, _mm512_maskz_loadu_ps(tail, v + full), b, _CMP_GE_OQ));
    return count;
}

/* The k-th largest of v [n] (n >= k): the largest v[j] with at least k values >= it. Every
 * pair is compared; no branch depends on the data, which beats quickselect at these sizes
 * (n ~ 3k). */
__attribute__((target("avx512f"))) static inline float kth_largest(const float *v, size_t n, size_t k) {
    float best = -INFINITY;
    for (size_t j = 0; j < n; j++) best = v[j] > best && count_at_least(v, n, v[j]) >= k ? v[j] : best;
    return best;
}

#endif
