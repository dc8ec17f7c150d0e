/* cpu.h — private to kernels/cpu/: the fp16 storage rounding shared by every CPU op and the
 * per-file entry points that ops_cpu.c gathers into its two tables (fp32 and fp16).
 *
 * The CPU backend stores float in both precisions. In fp16 precision every value written to a
 * storage tensor is rounded to the nearest IEEE binary16 value (round to nearest even,
 * subnormals kept, overflow to inf), so the CPU computes what a GPU that stores __half would
 * see. Each op is written once, told by its struct cpu_ctx whether to round; inside, the flag
 * is `h` and stored(x, h) is what a storage write keeps. */
#ifndef XLMC_KERNELS_CPU_H
#define XLMC_KERNELS_CPU_H

#include "kernels/ops.h"
#include "kernels/philox.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Work (elements touched, or flops for products) below which an op runs on one thread: a
 * parallel region costs microseconds, and far more when the machine is oversubscribed and a
 * barrier waits for a descheduled thread (a tiny model ran 15x slower with 2 threads than
 * with 1 on a loaded 2-core machine). */
#define CPU_PAR_MIN 32768L

/* Marks a function whose loops dominate a training step outside sgemm: GCC compiles it for
 * AVX-512, AVX2 and the baseline ISA and picks one at load time (target_clones, an ifunc),
 * since the default x86-64 target vectorizes only 4 wide (measured: +7% training tokens/s
 * for the whole step on an AVX-512 machine). A process always runs the same clone, so results
 * stay independent of the thread count. Off under AddressSanitizer, whose runtime starts after
 * ifunc resolvers run. (Clones may differ in the last bits where a vectorized sum splits
 * into lanes differently; the C11 build contracts no a*b+c into FMA.) */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) &&                             \
    !defined(__SANITIZE_ADDRESS__)
#define CPU_HOT __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define CPU_WIDE 1 /* the 16-lane Philox below pays off only in the AVX2 and AVX-512 clones */
#else
#define CPU_HOT
#define CPU_WIDE 0
#endif
/* A helper of CPU_HOT functions: inlined always, so it is compiled for its caller's clone (a
 * helper left out of line runs the baseline code). */
#if defined(__GNUC__)
#define CPU_INLINE static inline __attribute__((always_inline))
#else
#define CPU_INLINE static inline
#endif

/* Software prefetch. The hardware prefetchers of the machines measured fall behind on loops
 * that stream two or more arrays from memory: the GELU backward over a cold (N,F) activation
 * ran 3x slower than over warm data, and 2.5x faster with these hints. Streaming loops run in
 * blocks of CPU_PF_BLOCK elements and ask, per block, for the lines CPU_PF_AHEAD bytes ahead
 * of each array they read (a prefetch past the end of an array does not fault). */
#define CPU_PF_BLOCK 256
#define CPU_PF_AHEAD 8192

/* elements [i0, end) of block blk of an array of n, in blocks of CPU_PF_BLOCK */
CPU_INLINE size_t pf_block_end(size_t blk, size_t n) {
    size_t end = (blk + 1) * CPU_PF_BLOCK;
    return end < n ? end : n;
}
#define PF_BLOCKS(n) (((n) + CPU_PF_BLOCK - 1) / CPU_PF_BLOCK)

/* prefetch the cache lines of [p + CPU_PF_AHEAD, p + CPU_PF_AHEAD + bytes) */
CPU_INLINE void prefetch_ahead(const void *p, size_t bytes) {
    uintptr_t a = (uintptr_t)p + CPU_PF_AHEAD;
    for (size_t o = 0; o < bytes; o += 64)
        __builtin_prefetch((const void *)(a + o));
}

/* x rounded to the nearest binary16 value and back to float. */
static inline float half_round(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    uint32_t sign = u & 0x80000000u, a = u & 0x7fffffffu;
    if (a >= 0x7f800000u) return x; /* inf and NaN stay as they are */
    if (a >= 0x477ff000u) {         /* >= 65520 = halfway above 65504: inf */
        a = 0x7f800000u;
    } else if (a < 0x38800000u) { /* below 2^-14: half subnormal, step 2^-24 */
        /* scaling by a power of two is exact; nearbyintf rounds half to even by default */
        float s = nearbyintf(fabsf(x) * 16777216.0f) * 5.9604644775390625e-8f;
        memcpy(&a, &s, sizeof a);
    } else { /* normal: keep 10 of 23 mantissa bits */
        a += 0x0fffu + ((a >> 13) & 1u);
        a &= ~0x1fffu;
    }
    u = sign | a;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* What a storage write stores: x itself (fp32) or x rounded to half (fp16). */
static inline float stored(float x, int h) {
    return h ? half_round(x) : x;
}

/* C (M,N) = alpha op(A) op(B) + beta C, row-major, with the rows (or, when N > M, the
 * columns) of C split over the OpenMP threads (each calls a single-threaded sgemm on its
 * slice; an element's sum over K does not depend on the split). The CPU backend runs one thread
 * pool, OpenMP's: OpenBLAS is set to one thread in ops_cpu(), because its own spinning
 * pthreads and OpenMP's compete for the cores between consecutive ops (measured: 500x slower
 * on a tiny model with 2 cores). Call from outside a parallel region. */
void cpu_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
               const float *B, int ldb, float beta, float *C, int ldc);

/* exp(x) for finite x <= 88.3 (larger x are clamped there; x < -87.3 gives 2^-126 instead of
 * a subnormal or 0; NaN and +-inf give NaN): Cephes' expf polynomial, within 2 ulp of the true
 * value. Written without calls or branches so that loops over it vectorize (glibc's expf does not,
 * and it dominated the softmax and cross-entropy before). */
static inline float fast_expf(float x) {
    /* clamp through the bit patterns: float selects would stop the vectorizer (trapping
     * math), integer masks do not; NaN falls to the lower bound */
    const float lo = -87.3f, hi = 88.3f, x0 = x;
    uint32_t xi, lob, hib;
    memcpy(&xi, &x, sizeof xi);
    memcpy(&lob, &lo, sizeof lob);
    memcpy(&hib, &hi, sizeof hib);
    uint32_t in_lo = -(uint32_t)(x > lo), in_hi = -(uint32_t)(x < hi);
    xi = (xi & in_lo) | (lob & ~in_lo);
    xi = (xi & in_hi) | (hib & ~in_hi & in_lo);
    memcpy(&x, &xi, sizeof x);
    /* n = round(x / ln 2) by the 1.5 * 2^23 trick (no SSE4.1 rounding in the baseline ISA) */
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    /* x0 - x0 is 0, or NaN for a NaN or infinite input: an overflow upstream must reach the
     * fp16 loss scaler's inf/NaN check, not vanish into a clamp */
    return y * scale + (x0 - x0);
}

/* max of x[0..n), n >= 1 (NaN elements are skipped), 16 at a time in GCC vector types:
 * `omp simd reduction(max)` kept its accumulator on the stack, a store-to-load chain that made
 * this the slowest pass of the cross-entropy, and a scalar-array version was left unvectorized
 * inside the classifier's loop. Four 4-lane vectors suit every ISA level; the select goes
 * through the comparison's lane masks. */
typedef float cpu_f32x4 __attribute__((vector_size(16)));
typedef int32_t cpu_i32x4 __attribute__((vector_size(16)));

/* lanes of a where a > b, else of b */
CPU_INLINE cpu_f32x4 max4(cpu_f32x4 a, cpu_f32x4 b) {
    cpu_i32x4 gt = a > b;
    return (cpu_f32x4)(((cpu_i32x4)a & gt) | ((cpu_i32x4)b & ~gt));
}

CPU_INLINE float row_max(const float *x, int n) {
    float r = x[0];
    int i = 0;
    if (n >= 16) {
        cpu_f32x4 m[4];
        memcpy(m, x, sizeof m);
        for (i = 16; i + 16 <= n; i += 16)
            for (int j = 0; j < 4; j++) {
                cpu_f32x4 v;
                memcpy(&v, x + i + 4 * j, sizeof v);
                m[j] = max4(v, m[j]);
            }
        m[0] = max4(max4(m[0], m[1]), max4(m[2], m[3]));
        float lanes[4];
        memcpy(lanes, &m[0], sizeof lanes);
        for (int j = 0; j < 4; j++)
            r = lanes[j] > r ? lanes[j] : r;
    }
    for (; i < n; i++)
        r = x[i] > r ? x[i] : r;
    return r;
}

/* Philox-4x32-10 of four consecutive counters c0 .. c0+3 (other words equal), lane-parallel
 * so the compiler can vectorize it: out[w][lane] is word w of counter c0 + lane, the same bits
 * as philox4x32_10() (kernels/philox.h) gives for each. */
CPU_INLINE void philox4x32_10_x4(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                                 uint32_t k1, uint32_t out[4][4]) {
    uint32_t a[4], b[4], c[4], d[4];
    for (int j = 0; j < 4; j++) {
        a[j] = c0 + (uint32_t)j;
        b[j] = c1;
        c[j] = c2;
        d[j] = c3;
    }
    for (int round = 0; round < 10; round++) {
        for (int j = 0; j < 4; j++) {
            uint64_t p0 = (uint64_t)0xD2511F53u * a[j], p1 = (uint64_t)0xCD9E8D57u * c[j];
            uint32_t n0 = (uint32_t)(p1 >> 32) ^ b[j] ^ k0, n2 = (uint32_t)(p0 >> 32) ^ d[j] ^ k1;
            b[j] = (uint32_t)p1;
            d[j] = (uint32_t)p0;
            a[j] = n0;
            c[j] = n2;
        }
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    for (int j = 0; j < 4; j++) {
        out[0][j] = a[j];
        out[1][j] = b[j];
        out[2][j] = c[j];
        out[3][j] = d[j];
    }
}

/* A 16-lane version in GCC vector types for long spans: written like the one above, the
 * compiler unrolls the rounds into scalar 64-bit multiplies. Here each 32x32 -> 64 product is one
 * even-lane and one odd-lane unsigned multiply of zero-extended 64-bit lanes (vpmuludq). */
typedef uint32_t cpu_u32x16 __attribute__((vector_size(64)));
typedef uint64_t cpu_u64x8 __attribute__((vector_size(64)));

/* hi and lo words of m * x for every lane */
CPU_INLINE void mul_hilo16(uint32_t m, const cpu_u32x16 *xp, cpu_u32x16 *hi, cpu_u32x16 *lo) {
    const cpu_u64x8 low = (cpu_u64x8){0} + 0xffffffffull;
    cpu_u32x16 x = *xp;
    cpu_u64x8 xe = (cpu_u64x8)x & low, xo = (cpu_u64x8)x >> 32;
    cpu_u64x8 pe = xe * (uint64_t)m, po = xo * (uint64_t)m;
    *hi = (cpu_u32x16)((pe >> 32) | (po & ~low));
    *lo = x * m;
}

/* out (64) in element order from the 16-lane words a, b, c, d: out[4 j + w] is word w of
 * lane j. Pairs (a_j, b_j) and (c_j, d_j), then the pairs interleaved. */
CPU_INLINE void philox_x16_store(cpu_u32x16 a, cpu_u32x16 b, cpu_u32x16 c, cpu_u32x16 d,
                                 uint32_t out[64]) {
    const cpu_u32x16 lo = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23};
    const cpu_u32x16 hi = {8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
    const cpu_u64x8 first = {0, 8, 1, 9, 2, 10, 3, 11}, second = {4, 12, 5, 13, 6, 14, 7, 15};
    cpu_u64x8 ab_lo = (cpu_u64x8)__builtin_shuffle(a, b, lo);
    cpu_u64x8 ab_hi = (cpu_u64x8)__builtin_shuffle(a, b, hi);
    cpu_u64x8 cd_lo = (cpu_u64x8)__builtin_shuffle(c, d, lo);
    cpu_u64x8 cd_hi = (cpu_u64x8)__builtin_shuffle(c, d, hi);
    cpu_u64x8 o0 = __builtin_shuffle(ab_lo, cd_lo, first);
    cpu_u64x8 o1 = __builtin_shuffle(ab_lo, cd_lo, second);
    cpu_u64x8 o2 = __builtin_shuffle(ab_hi, cd_hi, first);
    cpu_u64x8 o3 = __builtin_shuffle(ab_hi, cd_hi, second);
    memcpy(out, &o0, sizeof o0);
    memcpy(out + 16, &o1, sizeof o1);
    memcpy(out + 32, &o2, sizeof o2);
    memcpy(out + 48, &o3, sizeof o3);
}

/* Philox-4x32-10 of the 16 counters c0 .. c0+15 (other words equal), the 64 words in element
 * order: out[4 j + w] is word w of counter c0 + j, the same bits as philox4x32_10() gives. */
CPU_INLINE void philox4x32_10_x16_generic(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                          uint32_t k0, uint32_t k1, uint32_t out[64]) {
    cpu_u32x16 a = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    a += c0;
    cpu_u32x16 b = (cpu_u32x16){0} + c1, c = (cpu_u32x16){0} + c2, d = (cpu_u32x16){0} + c3;
    for (int round = 0; round < 10; round++) {
        cpu_u32x16 hi0, lo0, hi1, lo1;
        mul_hilo16(0xD2511F53u, &a, &hi0, &lo0);
        mul_hilo16(0xCD9E8D57u, &c, &hi1, &lo1);
        a = hi1 ^ b ^ k0;
        c = hi0 ^ d ^ k1;
        b = lo1;
        d = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    philox_x16_store(a, b, c, d, out);
}

#if CPU_WIDE
#include <immintrin.h>
/* The same with AVX-512F intrinsics: for the generic version's 32x32 -> 64 products GCC emits
 * AVX512DQ's full 64-bit multiply (vpmullq, three times the cost of vpmuludq) in the AVX-512
 * clone, and the dropout masks of a step spent most of their time there. */
__attribute__((target("avx512f"))) static inline void
philox4x32_10_x16_avx512(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                         uint32_t k1, uint32_t out[64]) {
    __m512i a =
        _mm512_add_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                         _mm512_set1_epi32((int)c0));
    __m512i b = _mm512_set1_epi32((int)c1), c = _mm512_set1_epi32((int)c2);
    __m512i d = _mm512_set1_epi32((int)c3);
    const __m512i m0 = _mm512_set1_epi32((int)0xD2511F53u),
                  m1 = _mm512_set1_epi32((int)0xCD9E8D57u);
    for (int round = 0; round < 10; round++) {
        /* high words: even lanes from the even products shifted down, odd lanes from the odd
         * products' upper halves */
        __m512i pe0 = _mm512_mul_epu32(a, m0), po0 = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m0);
        __m512i pe1 = _mm512_mul_epu32(c, m1), po1 = _mm512_mul_epu32(_mm512_srli_epi64(c, 32), m1);
        __m512i hi0 = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(pe0, 32), po0);
        __m512i hi1 = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(pe1, 32), po1);
        __m512i lo0 = _mm512_mullo_epi32(a, m0), lo1 = _mm512_mullo_epi32(c, m1);
        a = _mm512_xor_si512(_mm512_xor_si512(hi1, b), _mm512_set1_epi32((int)k0));
        c = _mm512_xor_si512(_mm512_xor_si512(hi0, d), _mm512_set1_epi32((int)k1));
        b = lo1;
        d = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    philox_x16_store((cpu_u32x16)a, (cpu_u32x16)b, (cpu_u32x16)c, (cpu_u32x16)d, out);
}
#endif

/* philox4x32_10_x16_generic, through the AVX-512 version where the CPU has it (the clones
 * inline it into their AVX-512 code; the others call it) */
CPU_INLINE void philox4x32_10_x16(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                                  uint32_t k1, uint32_t out[64]) {
#if CPU_WIDE
    if (__builtin_cpu_supports("avx512f")) {
        philox4x32_10_x16_avx512(c0, c1, c2, c3, k0, k1, out);
        return;
    }
#endif
    philox4x32_10_x16_generic(c0, c1, c2, c3, k0, k1, out);
}

/* Dropout of the 64 elements x[0..64), the first being element e (a multiple of 4) of global
 * row `row` at key's site: one 16-lane Philox call. */
CPU_INLINE void dropout_block64(float *x, uint64_t e, uint32_t row, const struct dropout_key *key,
                                uint32_t thr, float keep_scale, int h) {
    uint32_t u[64];
    philox4x32_10_x16((uint32_t)(e >> 2), row, key->tensor, (uint32_t)key->step,
                      (uint32_t)key->seed, (uint32_t)(key->seed >> 32), u);
    /* the select through bit masks: a float ?: stops the vectorizer */
    for (int j = 0; j < 64; j++) {
        float v = stored(x[j] * keep_scale, h);
        uint32_t bits, keep = -(uint32_t)(u[j] >= thr);
        memcpy(&bits, &v, sizeof bits);
        bits &= keep;
        memcpy(&x[j], &bits, sizeof bits);
    }
}

/* Dropout of x[0..len) whose first element is element e0 of global row `row` at key's site:
 * kept elements times keep_scale (rounded when h), dropped ones 0. One Philox call serves four
 * consecutive elements, as the counter layout of kernels/philox.h intends; whole groups of 64
 * and then of 16 go through the lane-parallel versions. */
CPU_INLINE void dropout_span(float *x, int len, uint64_t e0, uint32_t row,
                             const struct dropout_key *key, uint32_t thr, float keep_scale, int h) {
    uint32_t k0 = (uint32_t)key->seed, k1 = (uint32_t)(key->seed >> 32);
    uint32_t c2 = key->tensor, c3 = (uint32_t)key->step;
    int i = 0;
    while (i < len) {
        uint64_t e = e0 + (uint64_t)i;
        if (CPU_WIDE && (e & 3) == 0 && len - i >= 64) {
            dropout_block64(x + i, e, row, key, thr, keep_scale, h);
            i += 64;
            continue;
        }
        if ((e & 3) == 0 && len - i >= 16) {
            uint32_t u[4][4];
            philox4x32_10_x4((uint32_t)(e >> 2), row, c2, c3, k0, k1, u);
            for (int g = 0; g < 4; g++)
                for (int w = 0; w < 4; w++, i++)
                    x[i] = u[w][g] >= thr ? stored(x[i] * keep_scale, h) : 0.0f;
            continue;
        }
        struct philox4 r = philox4x32_10((uint32_t)(e >> 2), row, c2, c3, k0, k1);
        for (int j = (int)(e & 3); j < 4 && i < len; j++, i++)
            x[i] = r.v[j] >= thr ? stored(x[i] * keep_scale, h) : 0.0f;
    }
}

/* dropout_span for a row buffer of cap >= len elements whose elements past len are scratch
 * (the caller clears them): whole 64-element blocks run while they fit in cap, even past len.
 * The causal attention rows have every length from 1 to T, and the 16-lane Philox on a
 * partly used block costs less than the narrow paths on the remainder. */
CPU_INLINE void dropout_span_padded(float *x, int len, int cap, uint64_t e0, uint32_t row,
                                    const struct dropout_key *key, uint32_t thr, float keep_scale,
                                    int h) {
    int i = 0;
    if (CPU_WIDE && (e0 & 3) == 0)
        for (; i < len && i + 64 <= cap; i += 64)
            dropout_block64(x + i, e0 + (uint64_t)i, row, key, thr, keep_scale, h);
    if (i < len) dropout_span(x + i, len - i, e0 + (uint64_t)i, row, key, thr, keep_scale, h);
}

/* Round n storage elements in place when h. */
void cpu_round_storage(float *x, size_t n, int h);

/* What a CPU op is told besides its arguments: the table it was called through. */
struct cpu_ctx {
    int round_half; /* fp16 precision: every storage write is rounded to binary16 */
};

/* Every op of kernels/ops.h's OPS_LIST as cpu_<name>(ctx, arguments...), defined in the file
 * of its area (embed.c, layernorm.c, ...); ops_cpu.c binds the fp32 and fp16 contexts. */
#define CPU_DECLARE(name, params, args)                                                            \
    void cpu_##name(const struct cpu_ctx *ctx, OPS_UNPAREN params);
#define CPU_DECLARE_R(type, name, params, args)                                                    \
    type cpu_##name(const struct cpu_ctx *ctx, OPS_UNPAREN params);
OPS_LIST(CPU_DECLARE, CPU_DECLARE_R)
#undef CPU_DECLARE
#undef CPU_DECLARE_R

/* Round n storage elements in place when h. */
void cpu_round_storage(float *x, size_t n, int h);

/* Host memory for an op's scratch (ops have no error path: on failure this prints the size
 * and aborts). */
void *cpu_xmalloc(size_t bytes);

#endif
