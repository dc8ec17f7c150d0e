/* common.cuh — what every .cu file in kernels/cuda shares: error checks that name file:line, the
 * launch and dynamic-shared-memory shims (the only lines cudasim replaces), storage loads and
 * stores (float or __half, always computing in fp32), warp/block reductions, and the
 * per-process backend state (cuBLAS handle, fp32 scratch). */
#ifndef XLMC_CUDA_COMMON_CUH
#define XLMC_CUDA_COMMON_CUH

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "kernels/philox.h"

#ifndef XLMC_CUDASIM
#define XLMC_DYNAMIC_SHARED(type, name)                                                            \
    extern __shared__ __align__(16) unsigned char xlmc_dynamic_smem[];                             \
    type *name = (type *)xlmc_dynamic_smem
/* n floating-point operations (an FMA is 2) the calling thread just did: nothing here; cudasim's
 * traffic build counts them for the cost model (tests/bench/gpu_model.c) */
#define XLMC_COUNT_FLOPS(n) ((void)0)
#endif

/* ---- graph segments (graph.cu) ----
 * The training micro-batch's device work is recorded once as CUDA Graphs and replayed. Each
 * launch, GEMM and memset issued inside a segment is fingerprinted (a hash of the kernel, its
 * configuration and its argument bytes): a replay is valid only if the host issues exactly the
 * recorded sequence again. While a recorded graph is replayed, the calls are checked, not issued.
 * What changes from micro-batch to micro-batch without changing the work (the dropout keys'
 * seed, step and row 0, the loss op's gradient scale) lives in device memory (struct
 * cuda_vars), so the graphs stay valid. */
struct cuda_vars {
    uint64_t seed, step; /* of the dropout keys (struct dropout_key) */
    uint32_t row0;
    float dscale; /* the loss op's logits-gradient scale */
};
extern int g_cuda_seg_active; /* 1 while a segment captures or checks a replay */
/* 1: issue the call (no segment, or a capture); 0: a replay checks it (a mismatch marks the
 * replay as diverged) */
int cuda_seg_admit(uint64_t fingerprint);
/* The device copy of the vars, made to hold key's seed, step and row0 (key non-NULL) and dscale
 * (with_dscale): set by one small launch when they differ from what the stream last set. Inside
 * a segment they must already hold (cuda_graph_begin sets them). */
const struct cuda_vars *cuda_vars_for(const struct dropout_key *key, int with_dscale, float dscale);

#define CUDA_FNV0 0xcbf29ce484222325ull
static inline uint64_t cuda_fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = (const unsigned char *)p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* XLMC_LAUNCH(kernel, grid, block, shmem, stream)(args...): every kernel launch of the backend
 * goes through here, so a segment can fingerprint it. Structs passed by value must have no
 * padding bytes (their bytes are hashed). */
template <class K>
struct cuda_launch;
template <class... P>
struct cuda_launch<void (*)(P...)> {
    void (*fn)(P...);
    const char *name;
    dim3 grid, block;
    size_t shmem;
    cudaStream_t stream;
    void operator()(P... args) const {
        if (g_cuda_seg_active) {
            uint64_t h = cuda_fnv(CUDA_FNV0, &fn, sizeof fn);
            h = cuda_fnv(h, &grid, sizeof grid);
            h = cuda_fnv(h, &block, sizeof block);
            h = cuda_fnv(h, &shmem, sizeof shmem);
            int each[] = {0, (h = cuda_fnv(h, &args, sizeof args), 0)...};
            (void)each;
            if (!cuda_seg_admit(h)) return;
        }
#ifdef XLMC_CUDASIM
        cudasim::Launch<void (*)(P...)>{fn, name, grid, block, shmem, (const void *)stream}(
            args...);
#else
        (void)name;
        fn<<<grid, block, shmem, stream>>>(args...);
#endif
    }
};
#undef XLMC_LAUNCH
#define XLMC_LAUNCH(kernel, grid, block, shmem, stream)                                            \
    cuda_launch<decltype(&kernel)> {                                                               \
        &kernel, #kernel, dim3(grid), dim3(block), (size_t)(shmem), (stream)                       \
    }

/* cuda_seg_admit for a call that is not a kernel launch (a GEMM, a memset): its arguments
 * fingerprinted (scalars and pointers only; what the call is: a distinct string as the first) */
template <class... T>
static inline int cuda_call_admit(T... v) {
    if (!g_cuda_seg_active) return 1;
    uint64_t h = CUDA_FNV0;
    int each[] = {0, (h = cuda_fnv(h, &v, sizeof v), 0)...};
    (void)each;
    return cuda_seg_admit(h);
}

/* A by-value struct that carries a dropout key's seed, step and row0 (fields of those names)
 * takes them from vars at the kernel's start when vars is set. */
template <class A>
__device__ __forceinline__ void cuda_key_load(A &a) {
    if (!a.vars) return;
    a.seed = a.vars->seed;
    a.step = a.vars->step;
    a.row0 = a.vars->row0;
}

/* Every CUDA and cuBLAS call is checked; a failure is a bug or a dead device, so it ends the
 * process with the place and the cause. */
void cuda_check(cudaError_t err, const char *file, int line);
void cublas_check(cublasStatus_t st, const char *file, int line);
#define cudaCheck(x) cuda_check((x), __FILE__, __LINE__)
#define cublasCheck(x) cublas_check((x), __FILE__, __LINE__)
/* after every launch: launch-configuration errors surface here */
#define cudaLaunchCheck() cuda_check(cudaGetLastError(), __FILE__, __LINE__)

/* ---- storage access: float or __half in memory, fp32 in registers ---- */
__device__ __forceinline__ float ld(const float *p) {
    return *p;
}
__device__ __forceinline__ float ld(const __half *p) {
    return __half2float(*p);
}
__device__ __forceinline__ void st(float *p, float v) {
    *p = v;
}
__device__ __forceinline__ void st(__half *p, float v) {
    *p = __float2half_rn(v);
}

/* ---- 8 elements per thread in two wide accesses of 4 (8 bytes of __half, 16 of float) ----
 * A pointwise kernel with one 2-byte element per thread issues 8x the memory instructions
 * for the same bytes. Each warp takes a chunk of 32 x PW_VEC elements at `base`. With `vec`
 * (the host checked 16-byte alignment of every pointer and of the row length, pw_vec_ok) lane
 * l takes the pieces base + 4l .. 4l + 3 and base + 128 + 4l .. + 3, so each of its two
 * accesses is contiguous across the warp for either storage type (a float and a __half
 * tensor converted into each other stay coalesced on both sides); without, lane l takes
 * base + l + 32j, element by element and still coalesced. pw_idx gives element j's index;
 * ld8/st8 skip elements at or past n. */
/* raw16: 16 bytes moved as one scalar (nvcc: one 128-bit access). In g++ (cudasim) it is a
 * 16-byte integer: g++ splits a struct into its members, and cudasim would count each member
 * as an access of its own where nvcc issues one 128-bit access. */
#ifdef __CUDACC__
typedef uint4 raw16;
#else
__extension__ typedef unsigned __int128 raw16;
#endif
#define PW_VEC 8
#define PW_PIECE 4
template <typename S>
struct alignas(PW_PIECE * sizeof(S)) vec4 {
    S v[PW_PIECE];
};
__device__ __forceinline__ size_t pw_idx(bool vec, size_t base, int lane, int j) {
    return vec ? base + (size_t)(j / PW_PIECE * 32 * PW_PIECE + PW_PIECE * lane + j % PW_PIECE)
               : base + (size_t)(lane + 32 * j);
}
/* the warp's chunk and the lane, for a launch of cuda_blocks(ceil(n / PW_VEC), threads) */
__device__ __forceinline__ size_t pw_base(int *lane) {
    size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    *lane = (int)(t % 32);
    return t / 32 * (32 * PW_VEC);
}
/* A piece's bits as one scalar of its size: 8 bytes (4 __half) or 16 (4 float, raw16). The
 * copy goes through the scalar so that g++ (cudasim) does not split it into the struct's
 * members, which cudasim would count as four accesses where nvcc issues one. */
template <size_t BYTES>
struct piece_bits;
template <>
struct piece_bits<8> {
    typedef uint64_t type;
};
template <>
struct piece_bits<16> {
    typedef raw16 type;
};
/* f[0..3] = p[0..3] in one access (p aligned to the piece) */
template <typename S>
__device__ __forceinline__ void ld4(float *f, const S *p) {
    typedef typename piece_bits<sizeof(vec4<S>)>::type bits;
    bits b = *(const bits *)p;
    vec4<S> t;
    memcpy(&t, &b, sizeof t);
    for (int j = 0; j < PW_PIECE; j++)
        f[j] = ld(&t.v[j]);
}
template <typename S>
__device__ __forceinline__ void st4(S *p, const float *f) {
    typedef typename piece_bits<sizeof(vec4<S>)>::type bits;
    vec4<S> t;
    for (int j = 0; j < PW_PIECE; j++)
        st(&t.v[j], f[j]);
    bits b;
    memcpy(&b, &t, sizeof b);
    *(bits *)p = b;
}
/* Every loop below has a constant trip count, so nvcc unrolls it and the arrays stay in
 * registers (a step that depends on `vec` put them in local memory). */
template <typename S>
__device__ __forceinline__ void ld8(float f[PW_VEC], const S *p, bool vec, size_t base, int lane,
                                    size_t n) {
    if (vec) {
        for (int j = 0; j < PW_VEC; j += PW_PIECE) {
            size_t i = pw_idx(true, base, lane, j);
            if (i + PW_PIECE <= n) {
                ld4(f + j, p + i);
            } else {
                for (int q = 0; q < PW_PIECE; q++)
                    f[j + q] = i + q < n ? ld(p + i + q) : 0.f;
            }
        }
    } else {
        for (int j = 0; j < PW_VEC; j++) {
            size_t i = pw_idx(false, base, lane, j);
            f[j] = i < n ? ld(p + i) : 0.f;
        }
    }
}
template <typename S>
__device__ __forceinline__ void st8(S *p, const float f[PW_VEC], bool vec, size_t base, int lane,
                                    size_t n) {
    if (vec) {
        for (int j = 0; j < PW_VEC; j += PW_PIECE) {
            size_t i = pw_idx(true, base, lane, j);
            if (i + PW_PIECE <= n) {
                st4(p + i, f + j);
            } else {
                for (int q = 0; q < PW_PIECE; q++)
                    if (i + q < n) st(p + i + q, f[j + q]);
            }
        }
    } else {
        for (int j = 0; j < PW_VEC; j++) {
            size_t i = pw_idx(false, base, lane, j);
            if (i < n) st(p + i, f[j]);
        }
    }
}
/* b[j] = bias[element j's column] for rows of F (with vec a piece lies in one row) */
template <typename S>
__device__ __forceinline__ void ld_bias8(float b[PW_VEC], const S *bias, int F, bool vec,
                                         size_t base, int lane, size_t n) {
    if (vec) {
        for (int j = 0; j < PW_VEC; j += PW_PIECE) {
            size_t i = pw_idx(true, base, lane, j);
            if (i + PW_PIECE <= n) {
                ld4(b + j, bias + i % F);
            } else {
                for (int q = 0; q < PW_PIECE; q++)
                    b[j + q] = i + q < n ? ld(bias + (i + q) % F) : 0.f;
            }
        }
    } else {
        for (int j = 0; j < PW_VEC; j++) {
            size_t i = pw_idx(false, base, lane, j);
            b[j] = i < n ? ld(bias + i % F) : 0.f;
        }
    }
}

/* true when every pointer is 16-byte aligned (NULLs pass) and row_len a multiple of PW_VEC */
static inline bool pw_vec_ok(size_t row_len, const void *a, const void *b = NULL,
                             const void *c = NULL, const void *d = NULL) {
    uintptr_t bits = (uintptr_t)a | (uintptr_t)b | (uintptr_t)c | (uintptr_t)d;
    return row_len % PW_VEC == 0 && (bits & 15) == 0;
}

/* ---- rows in 16-byte pieces: a thread's accesses VEC times fewer ----
 * A piece is VEC elements (row_vec<S>: 8 __half or 4 float) moved in one 16-byte access when
 * the row's length and pointer allow (the launcher checks with row_pieces_ok), else
 * VEC = 1, one element per access. The bits travel as raw16 (see above) and are copied
 * with memcpy. */
template <typename S>
struct row_vec {
    static constexpr int n = 16 / (int)sizeof(S);
};
#ifdef __CUDACC__
#define ROW_UNROLL _Pragma("unroll")
#else
#define ROW_UNROLL
#endif
template <int VEC, typename S>
__device__ __forceinline__ raw16 ld_piece(const S *p) {
    static_assert(VEC == 1 || VEC * sizeof(S) == 16, "a piece is one element or 16 bytes");
    if (VEC > 1) return *(const raw16 *)p;
    raw16 r = {};
    S v = *p;
    memcpy(&r, &v, sizeof(S));
    return r;
}
template <int VEC, typename S>
__device__ __forceinline__ void st_piece(S *p, raw16 r) {
    if (VEC > 1) {
        *(raw16 *)p = r;
    } else {
        S v;
        memcpy(&v, &r, sizeof(S));
        *p = v;
    }
}
/* f[0..VEC) = the piece's elements in fp32, and back (rounded to storage) */
template <int VEC, typename S>
__device__ __forceinline__ void unpack(float f[VEC], raw16 r) {
    S t[VEC];
    memcpy(t, &r, sizeof t);
    ROW_UNROLL
    for (int j = 0; j < VEC; j++)
        f[j] = ld(&t[j]);
}
template <int VEC, typename S>
__device__ __forceinline__ raw16 pack(const float f[VEC]) {
    S t[VEC];
    ROW_UNROLL
    for (int j = 0; j < VEC; j++)
        st(&t[j], f[j]);
    raw16 r = {};
    memcpy(&r, t, sizeof t);
    return r;
}
/* rows of row_len elements split into 16-byte pieces: row_len a multiple of row_vec<S>::n
 * and every pointer (NULLs pass) 16-byte aligned */
template <typename S>
static inline bool row_pieces_ok(size_t row_len, const void *a, const void *b = NULL,
                                 const void *c = NULL, const void *d = NULL) {
    uintptr_t bits = (uintptr_t)a | (uintptr_t)b | (uintptr_t)c | (uintptr_t)d;
    return row_len % row_vec<S>::n == 0 && (bits & 15) == 0;
}
/* One pass of a block over the nq pieces of a row: thread t takes pieces t, t + blockDim.x, ...
 * The first CACHE of them live in cache[] (FILL: loaded now with load(q), else kept from an
 * earlier pass), the rest are loaded again; body(q, piece) sees each piece once. T: raw16, or
 * a struct of the pieces of several tensors at q. A row of up to
 * CACHE x blockDim.x pieces is read from memory once however many passes follow. */
template <int CACHE, bool FILL, typename T, typename Load, typename Body>
__device__ __forceinline__ void row_pass(T cache[CACHE], int nq, Load load, Body body) {
    int q = threadIdx.x;
    ROW_UNROLL
    for (int k = 0; k < CACHE; k++, q += blockDim.x) {
        if (q < nq) {
            if (FILL) cache[k] = load(q);
            body(q, cache[k]);
        }
    }
    for (; q < nq; q += blockDim.x)
        body(q, load(q));
}

template <typename S>
struct storage_type;
template <>
struct storage_type<float> {
    static constexpr cudaDataType_t blas = CUDA_R_32F;
};
template <>
struct storage_type<__half> {
    static constexpr cudaDataType_t blas = CUDA_R_16F;
};

/* ---- reductions (blockDim.x a multiple of 32, at most 1024) ---- */
__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ double warp_sum_f64(double v) {
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
/* Every thread gets the block's sum. shared: 32 floats. The leading barrier lets a caller
 * reuse `shared` for consecutive reductions. */
__device__ __forceinline__ float block_sum(float v, float *shared) {
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    return warp_sum(lane < nwarps ? shared[lane] : 0.f);
}
__device__ __forceinline__ float block_max(float v, float *shared) {
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    return warp_max(lane < nwarps ? shared[lane] : -INFINITY);
}

static inline unsigned cuda_blocks(size_t n, unsigned threads) {
    return (unsigned)((n + threads - 1) / threads);
}

/* ---- deterministic column sums: out (C) += sum over rows of x (N,C) ----
 * Stage 1: block (column tile, row chunk) sums COLSUM_ROWS rows per column into fp32
 * partials (chunks, C); stage 2 adds the chunks in order. Fixed order, no atomics: the same
 * bits on every run, with N/COLSUM_ROWS-way parallelism over rows. */
#define COLSUM_ROWS 256
#define COLSUM_THREADS 64
/* A thread takes a piece of VEC columns (16 bytes when ldx and x allow; a piece across C reads
 * the row's padding up to ldx and drops it), each column summed in row order as with VEC 1. */
template <typename S, int VEC>
__global__ void colsum_partial_kernel(float *partial, const S *x, int N, int C, int ldx) {
    int c0 = (blockIdx.x * blockDim.x + threadIdx.x) * VEC;
    if (c0 >= C) return;
    int n0 = blockIdx.y * COLSUM_ROWS, n1 = min(N, n0 + COLSUM_ROWS);
    float acc[VEC];
    ROW_UNROLL
    for (int j = 0; j < VEC; j++)
        acc[j] = 0.f;
    for (int n = n0; n < n1; n++) {
        float f[VEC];
        unpack<VEC, S>(f, ld_piece<VEC>(x + (size_t)n * ldx + c0));
        ROW_UNROLL
        for (int j = 0; j < VEC; j++)
            acc[j] += f[j];
    }
    ROW_UNROLL
    for (int j = 0; j < VEC; j++)
        if (c0 + j < C) partial[(size_t)blockIdx.y * C + c0 + j] = acc[j];
}
template <typename S>
__global__ void colsum_finish_kernel(S *out, const float *partial, int chunks, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float acc = 0.f;
    for (int k = 0; k < chunks; k++)
        acc += partial[(size_t)k * C + c];
    st(out + c, ld(out + c) + acc);
}

/* ---- backend state: one per process (one device per process) ---- */
struct cuda_state {
    cublasHandle_t blas;
    cublasLtHandle_t lt; /* cuBLASLt's: GEMMs with a bias epilogue (matmul.cu) */
    cudaStream_t stream; /* everything runs on this stream, in order */
    float *scratch;      /* fp32 device scratch (attention scores), grown on demand */
    size_t scratch_floats;
    double *partials; /* (CUDA_NORM_BLOCKS) per-block norm partial sums */
    int *flag;        /* unscale_check's inf/NaN flag */
    void *ones[2];    /* [0] fp32, [1] fp16: a vector of ones for column sums as GEMVs */
    size_t ones_n[2];
    struct cuda_vars *vars;     /* device: see cuda_vars_for */
    struct cuda_vars vars_host; /* what the stream's last set of vars wrote */
    int vars_set;               /* vars_host is valid */
    void *blas_workspace; /* cuBLAS's and cuBLASLt's (one stream: never used at once), set once:
                             a graph capture must not allocate */
    long graph_counts[4]; /* segments run eagerly, captured, replayed, diverged */
};
#define CUDA_BLAS_WORKSPACE ((size_t)32 << 20)
/* the graph entries of the ops table (graph.cu) */
void cuda_graph_fill(struct ops *o);
#define CUDA_NORM_BLOCKS 1024 /* of 256 threads: one wave of resident threads on an H100 */
extern struct cuda_state g_cuda;
/* at least n floats of device scratch (contents do not survive the next op) */
float *cuda_scratch(size_t n);

/* at least n storage ones (is_half: __half, else float), grown on demand, kept for reuse */
const void *cuda_ones(size_t n, int is_half);

/* db (OC) += column sums of dout (N,OC), as one cuBLAS GEMV against a vector of ones: one
 * bandwidth-bound call instead of a partial and a finishing kernel. fp32 accumulation and one
 * rounding into db (beta = 1), like cuda_column_sum_add, in cuBLAS's order. */
template <typename S>
static inline void cuda_bias_grad_add(S *db, const S *dout, int N, int OC) {
    if (!N || !OC) return;
    const float alpha = 1.f, beta = 1.f;
    cudaDataType_t t = storage_type<S>::blas;
    const void *ones = cuda_ones((size_t)N, sizeof(S) == 2);
    if (!cuda_call_admit("bias_grad", (const void *)db, (const void *)dout, N, OC, ones)) return;
    /* col-major: dout is (OC,N), ones (N,1), db (OC,1) */
    cublasCheck(cublasGemmEx(g_cuda.blas, CUBLAS_OP_N, CUBLAS_OP_N, OC, 1, N, &alpha, dout, t, OC,
                             ones, t, N, &beta, db, t, OC, CUBLAS_COMPUTE_32F,
                             CUBLAS_GEMM_DEFAULT));
}

/* out (C) += column sums of x (N rows of stride ldx >= C; ldx 0: C) */
template <typename S>
static inline void cuda_column_sum_add(S *out, const S *x, int N, int C, int ldx = 0) {
    int chunks = (N + COLSUM_ROWS - 1) / COLSUM_ROWS;
    if (!chunks || !C) return;
    float *partial = cuda_scratch((size_t)chunks * C);
    constexpr int VEC = row_vec<S>::n;
    if (!ldx) ldx = C;
    if (row_pieces_ok<S>((size_t)ldx, x)) {
        dim3 grid(cuda_blocks((size_t)(C + VEC - 1) / VEC, COLSUM_THREADS), chunks);
        XLMC_LAUNCH((colsum_partial_kernel<S, VEC>), grid, COLSUM_THREADS, 0,
                    g_cuda.stream)(partial, x, N, C, ldx);
    } else {
        dim3 grid(cuda_blocks(C, COLSUM_THREADS), chunks);
        XLMC_LAUNCH((colsum_partial_kernel<S, 1>), grid, COLSUM_THREADS, 0,
                    g_cuda.stream)(partial, x, N, C, ldx);
    }
    cudaLaunchCheck();
    XLMC_LAUNCH(colsum_finish_kernel<S>, cuda_blocks(C, COLSUM_THREADS), COLSUM_THREADS, 0,
                g_cuda.stream)(out, partial, chunks, C);
    cudaLaunchCheck();
}

/* Each op of OPS_LIST (kernels/ops.h) is `template <typename S> cuda_<name>` in the .cu file
 * of its area, exported for both storage types by CUDA_EXPORT_OP(name) beside it as
 * cuda_<name>_f32 and cuda_<name>_f16 (CUDA_EXPORT_OP_ANY: an op without storage tensors,
 * the same function for both). backend.cu builds the tables from the list, so an op without
 * its CUDA version is a link error rather than a NULL slot. */
#define CUDA_DECLARE(name, params, args)                                                           \
    extern const decltype(ops::name) cuda_##name##_f32, cuda_##name##_f16;
#define CUDA_DECLARE_R(type, name, params, args) CUDA_DECLARE(name, params, args)
OPS_LIST(CUDA_DECLARE, CUDA_DECLARE_R)
#undef CUDA_DECLARE
#undef CUDA_DECLARE_R
#define CUDA_EXPORT_OP(name)                                                                       \
    const decltype(ops::name) cuda_##name##_f32 = cuda_##name<float>;                              \
    const decltype(ops::name) cuda_##name##_f16 = cuda_##name<__half>;
#define CUDA_EXPORT_OP_ANY(name)                                                                   \
    const decltype(ops::name) cuda_##name##_f32 = cuda_##name;                                     \
    const decltype(ops::name) cuda_##name##_f16 = cuda_##name;

#endif
