/* philox.h — Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
 * SC'11), the counter-based generator behind every dropout mask. Header-only and usable from
 * C, CUDA device code and cudasim, so the CPU and CUDA backends draw identical bits.
 *
 * Dropout convention (see struct dropout_key in ops.h): element e of global row r at dropout
 * site `tensor` in optimizer step `step` uses
 *     key     = (seed & 0xffffffff, seed >> 32)
 *     counter = (e / 4, r, tensor, step)
 *     u       = philox4x32_10(counter, key)[e % 4]
 * and the element is dropped iff u < dropout_threshold(p). */
#ifndef XLMC_PHILOX_H
#define XLMC_PHILOX_H

#include <stdint.h>

#if defined(__CUDACC__) || defined(XLMC_CUDASIM)
#define XLMC_HD __host__ __device__
#else
#define XLMC_HD
#endif

struct philox4 {
    uint32_t v[4];
};

static inline XLMC_HD struct philox4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2,
                                                   uint32_t c3, uint32_t k0, uint32_t k1) {
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0;
        uint64_t p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
        c0 = n0;
        c1 = n1;
        c2 = n2;
        c3 = n3;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    struct philox4 r = {{c0, c1, c2, c3}};
    return r;
}

/* Drop iff the drawn word is below this; p in [0, 1). */
static inline XLMC_HD uint32_t dropout_threshold(float p) {
    double t = (double)p * 4294967296.0;
    return t >= 4294967295.0 ? 0xffffffffu : (uint32_t)t;
}

/* 1 if element e of global row `row` is kept. */
static inline XLMC_HD int dropout_keep(uint64_t seed, uint64_t step, uint32_t row, uint32_t tensor,
                                       uint64_t e, uint32_t threshold) {
    struct philox4 r = philox4x32_10((uint32_t)(e >> 2), row, tensor, (uint32_t)step,
                                     (uint32_t)seed, (uint32_t)(seed >> 32));
    /* selects instead of r.v[e & 3]: a dynamic index puts r in GPU local memory */
    uint32_t w = (uint32_t)(e & 3), u = w == 0   ? r.v[0]
                                        : w == 1 ? r.v[1]
                                        : w == 2 ? r.v[2]
                                                 : r.v[3];
    return u >= threshold;
}

#endif
