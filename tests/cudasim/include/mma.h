/* mma.h — cudasim stand-in for CUDA's warp matrix functions (nvcuda::wmma): the subset our
 * kernels use, 16x16x16 tiles of half inputs with a float accumulator (sm_70 and newer).
 *
 * What CUDA leaves unspecified is made to fail here rather than to work by chance:
 * - which lane holds which element of a fragment: each use (a, b, accumulator) scatters its
 *   256 elements over the lanes by its own odd multiplier modulo 256, so a kernel that reads
 *   fragment elements by position gets wrong answers in cudasim as it would on a GPU (code may
 *   only apply the same operation to every element);
 * - the arguments of the warp-wide calls must be the same in all 32 lanes, every lane must take
 *   part, ldm must be a multiple of 8 halves (4 floats) and the pointer 32-byte aligned; a
 *   violation ends the run through cudasim::fail.
 * mma_sync sums each product in fp32 in k order, then adds the accumulator (tensor cores use
 * at least fp32 partial sums; their order is not specified). The traffic build counts
 * 2 x 16 x 16 x 16 tensor-core FLOPs per warp-wide mma_sync (cudasim_count.h, tc_flops).
 * Only the cudasim build sees this file (tests/cudasim/include leads the include path). */
#ifndef XLMC_CUDASIM_MMA_H
#define XLMC_CUDASIM_MMA_H

#include "../cudasim.h"

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

namespace detail {
constexpr int TILE = 16, ELEMS = TILE * TILE / 32; /* elements per lane */
/* element e of lane l is tile element (MULT (8 l + e) + ADD) mod 256, row-major (r = i / 16) */
template <class Use>
struct scatter;
template <>
struct scatter<matrix_a> {
    static constexpr int MULT = 37, ADD = 11;
};
template <>
struct scatter<matrix_b> {
    static constexpr int MULT = 59, ADD = 5;
};
template <>
struct scatter<accumulator> {
    static constexpr int MULT = 97, ADD = 3;
};
template <class Use>
inline int tile_index(int lane, int e) {
    return (scatter<Use>::MULT * (ELEMS * lane + e) + scatter<Use>::ADD) & 255;
}
inline float to_float(__half h) {
    return __half2float(h);
}
inline float to_float(float f) {
    return f;
}
inline void from_float(__half *d, float f) {
    *d = __float2half(f);
}
inline void from_float(float *d, float f) {
    *d = f;
}

/* what a warp-wide call must agree on in every lane */
struct call_args {
    const void *ptr;
    unsigned ldm;
    int layout;
};
/* Checks the warp-wide call: all 32 lanes present, the same arguments, CUDA's alignment
 * rules; the caller then calls end_call. The traffic build (the cost model's, whose kernels
 * the plain build has already checked) checks the alignment rules only: the two barriers of
 * the full check cost more there than the loads themselves. */
inline void check_call(const char *fn, const call_args *mine, unsigned ldm_multiple) {
#ifndef XLMC_CUDASIM_TRAFFIC
    const void *all[32];
    cudasim::warp_share(0xffffffffu, mine, all);
    for (int i = 0; i < 32; i++) {
        const call_args *o = (const call_args *)all[i];
        if (!o) cudasim::fail("a wmma call needs all 32 lanes of the warp");
        if (o->ptr != mine->ptr || o->ldm != mine->ldm || o->layout != mine->layout)
            cudasim::fail("the lanes of a warp passed different arguments to one wmma call");
    }
#endif
    if ((uintptr_t)mine->ptr % 32 != 0) {
        fprintf(stderr, "cudasim: %s: pointer %p is not 256-bit aligned\n", fn, mine->ptr);
        cudasim::fail("wmma pointer not 256-bit aligned");
    }
    if (mine->ldm % ldm_multiple != 0) {
        fprintf(stderr, "cudasim: %s: ldm %u is not a multiple of %u\n", fn, mine->ldm,
                ldm_multiple);
        cudasim::fail("wmma ldm not a multiple of 16 bytes");
    }
}
/* the end of a checked call: no lane leaves (and reuses its arguments' stack) before every
 * lane has compared them */
inline void end_call() {
#ifndef XLMC_CUDASIM_TRAFFIC
    cudasim::warp_sync(0xffffffffu);
#endif
}
/* element (r, c) of a tile at p with leading dimension ldm */
template <class T>
inline T *at(T *p, unsigned ldm, bool row_major_mem, int r, int c) {
    return row_major_mem ? p + (size_t)r * ldm + c : p + (size_t)c * ldm + r;
}
} // namespace detail

template <class Use, int M, int N, int K, class T, class Layout = void>
class fragment {
    static_assert(M == 16 && N == 16 && K == 16, "cudasim wmma: only 16x16x16 tiles");

  public:
    static constexpr int num_elements = detail::ELEMS;
    T x[detail::ELEMS];
};

template <class Use, int M, int N, int K, class T, class Layout>
inline void fill_fragment(fragment<Use, M, N, K, T, Layout> &f, T v) {
    for (int e = 0; e < f.num_elements; e++)
        f.x[e] = v;
}
template <class Use, int M, int N, int K, class Layout>
inline void fill_fragment(fragment<Use, M, N, K, __half, Layout> &f, float v) {
    fill_fragment(f, __float2half(v));
}

/* a or b from half memory, the layout given by the fragment's type */
template <class Use, class Layout>
inline void load_matrix_sync(fragment<Use, 16, 16, 16, __half, Layout> &f, const __half *p,
                             unsigned ldm) {
    static_assert(!std::is_same<Use, accumulator>::value, "cudasim wmma: accumulators are float");
    constexpr bool rows = std::is_same<Layout, row_major>::value;
    detail::call_args a = {p, ldm, rows};
    detail::check_call("load_matrix_sync", &a, 8);
    int lane = cudasim::lane_id();
    for (int e = 0; e < f.num_elements; e++) {
        int i = detail::tile_index<Use>(lane, e);
        f.x[e] = *detail::at(p, ldm, rows, i / 16, i % 16);
    }
    detail::end_call();
}

template <class T>
inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, T> &f, const T *p, unsigned ldm,
                             layout_t layout) {
    detail::call_args a = {p, ldm, (int)layout};
    detail::check_call("load_matrix_sync", &a, 16 / sizeof(T));
    int lane = cudasim::lane_id();
    for (int e = 0; e < f.num_elements; e++) {
        int i = detail::tile_index<accumulator>(lane, e);
        f.x[e] = *detail::at(p, ldm, layout == mem_row_major, i / 16, i % 16);
    }
    detail::end_call();
}

template <class T>
inline void store_matrix_sync(T *p, const fragment<accumulator, 16, 16, 16, T> &f, unsigned ldm,
                              layout_t layout) {
    detail::call_args a = {p, ldm, (int)layout};
    detail::check_call("store_matrix_sync", &a, 16 / sizeof(T));
    int lane = cudasim::lane_id();
    for (int e = 0; e < f.num_elements; e++) {
        int i = detail::tile_index<accumulator>(lane, e);
        *detail::at(p, ldm, layout == mem_row_major, i / 16, i % 16) = f.x[e];
    }
    detail::end_call();
}

/* d = a b + c over the warp: lane 0 reads the whole tiles through the lanes' fragments
 * (cudasim::warp_share) and computes the product into the warp's buffer, which every lane
 * then reads its elements of d from (d may be c: lane 0 has read every c by then). The next
 * call's product waits for all lanes at its first barrier, so one buffer per warp serves. It
 * touches fragments only, never device memory, so the traffic build leaves it uninstrumented
 * (each read would cost the counter a lookup). */
template <class La, class Lb, class Tc>
__attribute__((no_sanitize("thread"))) inline void
mma_sync(fragment<accumulator, 16, 16, 16, Tc> &d,
         const fragment<matrix_a, 16, 16, 16, __half, La> &a,
         const fragment<matrix_b, 16, 16, 16, __half, Lb> &b,
         const fragment<accumulator, 16, 16, 16, Tc> &c) {
    struct operands {
        const void *a, *b, *c;
    };
    static thread_local float full[32][256]; /* per warp of the block: the product, row-major */
    operands mine = {&a, &b, &c};
    const void *all[32];
    cudasim::warp_share(0xffffffffu, &mine, all);
    for (int l = 0; l < 32; l++)
        if (!all[l]) cudasim::fail("mma_sync needs all 32 lanes of the warp");
    int lane = cudasim::lane_id();
    unsigned tid = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    float *F = full[tid / 32];
    if (lane == 0) {
        float A[16][16], B[16][16];
        for (int l = 0; l < 32; l++) {
            const operands *o = (const operands *)all[l];
            const auto *fa = (const fragment<matrix_a, 16, 16, 16, __half, La> *)o->a;
            const auto *fb = (const fragment<matrix_b, 16, 16, 16, __half, Lb> *)o->b;
            const auto *fc = (const fragment<accumulator, 16, 16, 16, Tc> *)o->c;
            for (int e = 0; e < detail::ELEMS; e++) {
                int ia = detail::tile_index<matrix_a>(l, e),
                    ib = detail::tile_index<matrix_b>(l, e);
                A[ia / 16][ia % 16] = detail::to_float(fa->x[e]);
                B[ib / 16][ib % 16] = detail::to_float(fb->x[e]);
                F[detail::tile_index<accumulator>(l, e)] = detail::to_float(fc->x[e]);
            }
        }
        for (int r = 0; r < 16; r++)
            for (int col = 0; col < 16; col++) {
                float s = 0.f;
                for (int k = 0; k < 16; k++)
                    s = fmaf(A[r][k], B[k][col], s);
                F[16 * r + col] += s;
            }
        XLMC_COUNT_TC_FLOPS(2.0 * 16 * 16 * 16);
    }
    cudasim::warp_sync(0xffffffffu); /* the product is there; every a, b, c has been read */
    for (int e = 0; e < detail::ELEMS; e++)
        detail::from_float(&d.x[e], F[detail::tile_index<accumulator>(lane, e)]);
}

} // namespace wmma
} // namespace nvcuda

#endif
