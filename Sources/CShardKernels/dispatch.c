/* Run-time choice of implementation from the CPU's features. */
#include "CShardKernels.h"

int acs_cpu_sse42(void);
int acs_cpu_avx2(void);
int acs_cpu_avx512(void);
int acs_cpu_gfni(void);
int acs_cpu_vpclmul(void);

#if defined(__x86_64__) || defined(__i386__)
int acs_cpu_sse42(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2");
}
int acs_cpu_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
}
int acs_cpu_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
}
int acs_cpu_gfni(void) {
    __builtin_cpu_init();
    return acs_cpu_avx512() && __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("gfni");
}
int acs_cpu_vpclmul(void) {
    __builtin_cpu_init();
    return acs_cpu_avx512() && acs_cpu_sse42() && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("vpclmulqdq")
           && __builtin_cpu_supports("pclmul");
}
#else
int acs_cpu_sse42(void) { return 0; }
int acs_cpu_avx2(void) { return 0; }
int acs_cpu_avx512(void) { return 0; }
int acs_cpu_gfni(void) { return 0; }
int acs_cpu_vpclmul(void) { return 0; }
#endif

int acs_impl_available(acs_impl impl, int kernel) {
    switch (impl) {
    case ACS_IMPL_AUTO:
    case ACS_IMPL_REFERENCE:
    case ACS_IMPL_PORTABLE:
        return 1;
    case ACS_IMPL_SSE42:
        return kernel == 0 && acs_cpu_sse42();
    case ACS_IMPL_AVX2:
        return kernel != 0 && acs_cpu_avx2();
    case ACS_IMPL_AVX512:
        return kernel == 0 ? acs_cpu_vpclmul() : acs_cpu_avx512();
    case ACS_IMPL_AVX512_GFNI:
        return kernel == 1 && acs_cpu_gfni();
    }
    return 0;
}

acs_impl acs_impl_resolve(acs_impl impl, int kernel) {
    if (impl != ACS_IMPL_AUTO) return acs_impl_available(impl, kernel) ? impl : ACS_IMPL_PORTABLE;
    static int cached[3] = {0, 0, 0}; /* 0: not yet resolved; racing writers store the same value */
    if (kernel < 0 || kernel > 2) return ACS_IMPL_PORTABLE;
    int value = __atomic_load_n(&cached[kernel], __ATOMIC_RELAXED);
    if (value) return (acs_impl)value;
    acs_impl best = ACS_IMPL_PORTABLE;
    if (kernel == 0 && acs_cpu_sse42()) best = ACS_IMPL_SSE42;
    if (kernel == 0 && acs_cpu_vpclmul()) best = ACS_IMPL_AVX512;
    if (kernel != 0 && acs_cpu_avx2()) best = ACS_IMPL_AVX2;
    if (kernel != 0 && acs_cpu_avx512()) best = ACS_IMPL_AVX512;
    if (kernel == 1 && acs_cpu_gfni()) best = ACS_IMPL_AVX512_GFNI;
    __atomic_store_n(&cached[kernel], (int)best, __ATOMIC_RELAXED);
    return best;
}
