/* wide.cuh — 16-byte global accesses (8 halves or 4 floats) for the row kernels (classifier,
 * LayerNorm, embedding). One thread's loads are issued one after another, so a 2-byte access
 * per element makes the per-thread chain, not the bytes, the limit; a 16-byte access moves 8x
 * the data per link. The struct copy is one access for nvcc and for cudasim's traffic build
 * (g++ keeps an aligned 16-byte aggregate copy whole). */
#ifndef XLMC_CUDA_WIDE_CUH
#define XLMC_CUDA_WIDE_CUH

#include "kernels/cuda/common.cuh"

template <typename S>
struct alignas(16) wide {
    static constexpr int n = 16 / sizeof(S); /* elements per access */
    S v[n];
};

/* f[0..n) = p[0..n) in one access (p 16-byte aligned) */
template <typename S>
__device__ __forceinline__ void ldw(float *f, const S *p) {
    wide<S> t = *(const wide<S> *)p;
    for (int j = 0; j < wide<S>::n; j++)
        f[j] = ld(&t.v[j]);
}
template <typename S>
__device__ __forceinline__ void stw(S *p, const float *f) {
    wide<S> t;
    for (int j = 0; j < wide<S>::n; j++)
        st(&t.v[j], f[j]);
    *(wide<S> *)p = t;
}
/* v rounded to storage and back: what a later ld of a stored v returns */
template <typename S>
__device__ __forceinline__ float to_storage(float v) {
    S t;
    st(&t, v);
    return ld(&t);
}

/* true when rows of row_len elements of S, starting at each pointer given (NULLs pass), can
 * be read in whole 16-byte accesses */
template <typename S>
static inline bool wide_ok(size_t row_len, const void *a, const void *b = NULL,
                           const void *c = NULL, const void *d = NULL) {
    uintptr_t bits = (uintptr_t)a | (uintptr_t)b | (uintptr_t)c | (uintptr_t)d;
    return row_len % wide<S>::n == 0 && (bits & 15) == 0;
}

#endif
