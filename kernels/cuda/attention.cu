/* attention.cu — multi-head attention, causal (CLM) or bidirectional (MLM, TLM: every real
 * key of the row), fused (FlashAttention-style):
 * tiles of q, k, v in static shared memory (under 48 KiB, sm_70 and newer), scores and
 * probabilities in fp32 registers and shared memory only, an online softmax in the forward,
 * key tiles no query of the tile sees skipped (past the diagonal, or past the row's length). The
 * forward saves each row's log-sum-exp; the backward recomputes the probabilities from it in two
 * kernels (dq per query tile, which also saves D = dout . out per row; then dk, dv per key tile,
 * which reads D instead of out), so every output element is summed by one thread in a fixed order:
 * no atomics, the same bits on every run. Attention dropout draws the CPU backend's Philox bits per
 * element. fp16 storage runs the tile products on tensor cores (attention_tc.cuh); fp32 storage
 * keeps the scalar kernels below (wmma takes no fp32 inputs on sm_70). Their tiles move between
 * global and shared memory in 16-byte accesses (8 halves, 4 floats) when the head rows allow
 * (att_args.vec): a thread's chain of global accesses, which bounds these latency-bound kernels,
 * is then 8 (4) times shorter. */
#include "kernels/cuda/common.cuh"

#include <math.h>

/* Loops over the register arrays below are unrolled by nvcc, which keeps the arrays in
 * registers; g++ (cudasim) knows no such pragma. */
#ifdef __CUDACC__
#define ATT_UNROLL _Pragma("unroll")
#else
#define ATT_UNROLL
#endif

#define ATT_HS_MAX 128 /* head size limit: the tiles below hold whole head rows */
/* row stride of a shared tile: one float of padding, so that the threads of a warp, reading
 * the same column of different rows, hit different banks */
#define ATT_LD (ATT_HS_MAX + 1)
/* forward: 32 query rows per block, key tiles of 32; 4 threads per query row */
#define ATT_FWD_BQ 32
#define ATT_FWD_BK 32
#define ATT_FWD_THREADS 128
/* backward: tiles of 16 queries and 16 keys; 8 threads per row of the block's own tile */
#define ATT_BWD_B 16
#define ATT_BWD_THREADS 128

struct att_args {
    int T, C, NH, HS;
    float scale, keep_scale; /* 1/sqrt(HS); 1/(1-p) */
    uint32_t threshold;      /* dropout threshold, 0: no dropout */
    uint32_t unused;         /* no padding: launches are fingerprinted (graph.cu) */
    uint64_t seed, step;     /* seed, step, row0: from vars at the kernel's start */
    uint32_t row0, tensor;
    const int32_t *lengths;       /* (B) device: bidirectional; NULL: causal */
    const struct cuda_vars *vars; /* NULL: no dropout */
    int vec;                      /* tiles in att_vec accesses: HS and C multiples of its
                                     elements, every tensor 16-byte aligned (att_vec_ok) */
    int unused2;
};

/* 16 bytes of storage in one access: 8 halves or 4 floats */
template <typename S>
struct alignas(16) att_vec {
    S v[16 / sizeof(S)];
};

/* Keys visible to every query of row b when bidirectional (a row of length 0 keeps key 0,
 * as the CPU backend does), 0 when causal. */
__device__ __forceinline__ int att_keys(const att_args &a, int b) {
    if (!a.lengths) return 0;
    return max(1, min(a.lengths[b], a.T));
}
/* key s is visible to query t (kl from att_keys) */
__device__ __forceinline__ bool att_visible(int t, int s, int kl) {
    return kl ? s < kl : s <= t;
}

/* rows [t0, t0+rows) of head h of sequence b of x (B,T,C) into tile (rows, ATT_LD) fp32;
 * rows past T are zero */
template <typename S>
__device__ void att_load_tile(float *tile, const S *x, int b, int h, int t0, int rows,
                              const att_args &a) {
    if (a.vec) {
        constexpr int V = 16 / sizeof(S);
        int n = a.HS / V; // accesses per row
        for (int i = threadIdx.x; i < rows * n; i += blockDim.x) {
            int r = i / n, c = i % n * V, t = t0 + r;
            float *dst = tile + r * ATT_LD + c;
            if (t < a.T) {
                att_vec<S> w =
                    *(const att_vec<S> *)(x + ((size_t)b * a.T + t) * a.C + h * a.HS + c);
                ATT_UNROLL
                for (int e = 0; e < V; e++)
                    dst[e] = ld(&w.v[e]);
            } else {
                ATT_UNROLL
                for (int e = 0; e < V; e++)
                    dst[e] = 0.f;
            }
        }
        return;
    }
    for (int i = threadIdx.x; i < rows * a.HS; i += blockDim.x) {
        int r = i / a.HS, c = i % a.HS, t = t0 + r;
        tile[r * ATT_LD + c] = t < a.T ? ld(x + ((size_t)b * a.T + t) * a.C + h * a.HS + c) : 0.f;
    }
}
/* tile (rows, ATT_LD) fp32 into rows [t0, t0+rows) of head h of sequence b of x (B,T,C);
 * rows past T are not written. Each value is rounded once, as a direct st() would. */
template <typename S>
__device__ void att_store_tile(S *x, const float *tile, int b, int h, int t0, int rows,
                               const att_args &a) {
    if (a.vec) {
        constexpr int V = 16 / sizeof(S);
        int n = a.HS / V;
        for (int i = threadIdx.x; i < rows * n; i += blockDim.x) {
            int r = i / n, c = i % n * V, t = t0 + r;
            if (t >= a.T) continue;
            att_vec<S> w;
            ATT_UNROLL
            for (int e = 0; e < V; e++)
                st(&w.v[e], tile[r * ATT_LD + c + e]);
            *(att_vec<S> *)(x + ((size_t)b * a.T + t) * a.C + h * a.HS + c) = w;
        }
        return;
    }
    for (int i = threadIdx.x; i < rows * a.HS; i += blockDim.x) {
        int r = i / a.HS, c = i % a.HS, t = t0 + r;
        if (t < a.T) st(x + ((size_t)b * a.T + t) * a.C + h * a.HS + c, tile[r * ATT_LD + c]);
    }
}

__device__ __forceinline__ float att_dot(const float *x, const float *y, int n) {
    XLMC_COUNT_FLOPS(2 * n); // n FMAs
    float acc = 0.f;
    for (int c = 0; c < n; c++)
        acc += x[c] * y[c];
    return acc;
}

__device__ __forceinline__ int att_keep(const att_args &a, int b, int h, int t, int s) {
    if (!a.threshold) return 1;
    uint64_t e = ((uint64_t)h * a.T + (uint64_t)t) * (uint64_t)a.T + (uint64_t)s;
    return dropout_keep(a.seed, a.step, a.row0 + (uint32_t)b, a.tensor, e, a.threshold);
}

#include "kernels/cuda/attention_tc.cuh"

/* out (B,T,C) = dropout(softmax) @ v, lse (B,NH,T). grid (query tiles, NH, B). Thread i owns
 * query row r = i/4 of the tile and the head columns c = i%4 + 4j; its 4 row threads are
 * neighbouring lanes and combine row maxima and sums by shuffles. */
template <typename S, int HSM>
__global__ void __launch_bounds__(ATT_FWD_THREADS)
    attention_forward_kernel(S *out, float *lse, const S *q, const S *k, const S *v, att_args a) {
    cuda_key_load(a);
    __shared__ float sq[ATT_FWD_BQ * ATT_LD];
    __shared__ float skv[ATT_FWD_BK * ATT_LD];
    __shared__ float sp[ATT_FWD_BQ][ATT_FWD_BK + 1];
    int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * ATT_FWD_BQ;
    int r = threadIdx.x / 4, sub = threadIdx.x % 4, t = q0 + r;
    att_load_tile(sq, q, b, h, q0, ATT_FWD_BQ, a);
    float m = -INFINITY, l = 0.f, acc[HSM / 4];
    ATT_UNROLL
    for (int j = 0; j < HSM / 4; j++)
        acc[j] = 0.f;
    // the last key any query of the tile sees: the tile's last query, or the row's last key
    int kl = att_keys(a, b), last = kl ? kl - 1 : min(q0 + ATT_FWD_BQ, a.T) - 1;
    for (int k0 = 0; k0 <= last; k0 += ATT_FWD_BK) {
        __syncthreads(); // the previous tile's v is read
        att_load_tile(skv, k, b, h, k0, ATT_FWD_BK, a);
        __syncthreads();
        float sc[ATT_FWD_BK / 4], mt = -INFINITY;
        ATT_UNROLL
        for (int j = 0; j < ATT_FWD_BK / 4; j++) {
            int s = k0 + sub + 4 * j;
            sc[j] = att_visible(t, s, kl) && t < a.T
                        ? att_dot(sq + r * ATT_LD, skv + (s - k0) * ATT_LD, a.HS) * a.scale
                        : -INFINITY;
            mt = fmaxf(mt, sc[j]);
        }
        mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 1));
        mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 2));
        float mnew = fmaxf(m, mt);
        // a row with no visible key yet keeps m = -inf; its p are 0 and alpha 1
        float alpha = mnew == -INFINITY ? 1.f : expf(m - mnew), rs = 0.f;
        ATT_UNROLL
        for (int j = 0; j < ATT_FWD_BK / 4; j++) {
            int s = k0 + sub + 4 * j;
            float p = sc[j] == -INFINITY ? 0.f : expf(sc[j] - mnew);
            rs += p;
            sp[r][sub + 4 * j] = p != 0.f && att_keep(a, b, h, t, s) ? p * a.keep_scale : 0.f;
        }
        XLMC_COUNT_FLOPS(4 * (ATT_FWD_BK / 4)); // per score: max, subtract, exp (1: a floor), sum
        rs += __shfl_xor_sync(0xffffffffu, rs, 1);
        rs += __shfl_xor_sync(0xffffffffu, rs, 2);
        l = l * alpha + rs;
        m = mnew;
        __syncthreads(); // k is read
        att_load_tile(skv, v, b, h, k0, ATT_FWD_BK, a);
        __syncthreads();
        // columns past HS hold stale tile data: summed, never stored (fixed trip counts keep
        // acc in registers)
        ATT_UNROLL
        for (int j = 0; j < HSM / 4; j++)
            acc[j] *= alpha;
        for (int s = 0; s < ATT_FWD_BK; s++) {
            float p = sp[r][s];
            ATT_UNROLL
            for (int j = 0; j < HSM / 4; j++)
                acc[j] += p * skv[s * ATT_LD + sub + 4 * j];
        }
        XLMC_COUNT_FLOPS(ATT_FWD_BK * 2 * (HSM / 4) + HSM / 4); // masked p too; and the rescale
    }
    // the output rows go out through the q tile, every q read done
    __syncthreads();
    float inv = t < a.T ? 1.f / l : 0.f; // rows past T saw no key (l 0) and are not stored
    ATT_UNROLL
    for (int j = 0; j < HSM / 4; j++) {
        int c = sub + 4 * j;
        if (c < a.HS) sq[r * ATT_LD + c] = acc[j] * inv;
    }
    if (sub == 0 && t < a.T) lse[((size_t)b * a.NH + h) * a.T + t] = m + logf(l);
    __syncthreads();
    att_store_tile(out, sq, b, h, q0, ATT_FWD_BQ, a);
}

/* The backward's shared tiles: 16 queries (q, dout, their lse and D = dout . out) and 16 keys
 * (k, v), and for the pair the post-dropout probabilities P' and dS = P (dP - D). */
struct att_bwd_tiles {
    float q[ATT_BWD_B * ATT_LD], dout[ATT_BWD_B * ATT_LD];
    float k[ATT_BWD_B * ATT_LD], v[ATT_BWD_B * ATT_LD];
    float pd[ATT_BWD_B][ATT_BWD_B + 1], ds[ATT_BWD_B][ATT_BWD_B + 1];
    float lse[ATT_BWD_B], D[ATT_BWD_B];
};

/* q, dout rows [q0, q0+16) into the tiles, with their lse and D. With out, D is summed here (8
 * threads per row; out passes through the q tile first, so that it too is read in whole tiles)
 * and saved to Dsave (B,NH,T); without, it is read from Dsaved. */
template <typename S>
__device__ void att_bwd_load_queries(att_bwd_tiles &sh, const S *q, const S *dout, const S *out,
                                     float *Dsave, const float *Dsaved, const float *lse, int b,
                                     int h, int q0, const att_args &a) {
    const size_t row = ((size_t)b * a.NH + h) * a.T; // (B,NH,T) index of this head's t = 0
    if (!out) {
        att_load_tile(sh.q, q, b, h, q0, ATT_BWD_B, a);
        att_load_tile(sh.dout, dout, b, h, q0, ATT_BWD_B, a);
        // lse and D by different threads: one access each
        int i = threadIdx.x % ATT_BWD_B, t = q0 + i;
        if (threadIdx.x < ATT_BWD_B)
            sh.lse[i] = t < a.T ? lse[row + t] : 0.f;
        else if (threadIdx.x < 2 * ATT_BWD_B)
            sh.D[i] = t < a.T ? Dsaved[row + t] : 0.f;
        return;
    }
    att_load_tile(sh.q, out, b, h, q0, ATT_BWD_B, a);
    att_load_tile(sh.dout, dout, b, h, q0, ATT_BWD_B, a);
    __syncthreads();
    int r = threadIdx.x / 8, sub = threadIdx.x % 8, t = q0 + r;
    float d = 0.f;
    if (t < a.T)
        for (int c = sub; c < a.HS; c += 8)
            d += sh.dout[r * ATT_LD + c] * sh.q[r * ATT_LD + c];
    d += __shfl_xor_sync(0xffffffffu, d, 1);
    d += __shfl_xor_sync(0xffffffffu, d, 2);
    d += __shfl_xor_sync(0xffffffffu, d, 4);
    if (sub == 0) {
        sh.D[r] = d;
        sh.lse[r] = t < a.T ? lse[row + t] : 0.f;
        if (t < a.T) Dsave[row + t] = d;
    }
    __syncthreads(); // out is read: the tile takes q
    att_load_tile(sh.q, q, b, h, q0, ATT_BWD_B, a);
}

/* sh.pd and sh.ds for queries [q0, q0+16) and keys [k0, k0+16): 2 elements per thread */
__device__ void att_bwd_probs(att_bwd_tiles &sh, int b, int h, int q0, int k0, const att_args &a) {
    int kl = att_keys(a, b);
    for (int i = threadIdx.x; i < ATT_BWD_B * ATT_BWD_B; i += blockDim.x) {
        int r = i / ATT_BWD_B, j = i % ATT_BWD_B, t = q0 + r, s = k0 + j;
        float pd = 0.f, ds = 0.f;
        if (att_visible(t, s, kl) && t < a.T) {
            XLMC_COUNT_FLOPS(6); // and the dots: scale, subtract, exp (1), keep, dp - D, x p
            float p =
                expf(att_dot(sh.q + r * ATT_LD, sh.k + j * ATT_LD, a.HS) * a.scale - sh.lse[r]);
            float dp = att_dot(sh.dout + r * ATT_LD, sh.v + j * ATT_LD, a.HS);
            if (att_keep(a, b, h, t, s)) {
                pd = p * a.keep_scale;
                dp *= a.keep_scale;
            } else {
                dp = 0.f;
            }
            ds = p * (dp - sh.D[r]);
        }
        sh.pd[r][j] = pd;
        sh.ds[r][j] = ds;
    }
}

/* dk, dv (B,T,C) for keys [k0, k0+16), over the query tiles that see them: from k0 on when
 * causal, all of them when bidirectional (none for keys past the row's length). grid (key
 * tiles, NH, B). Thread i owns key row j = i/8 and the head columns c = i%8 + 8m. */
template <typename S, int HSM>
__global__ void __launch_bounds__(ATT_BWD_THREADS)
    attention_backward_kv_kernel(S *dk, S *dv, const S *dout, const float *D, const float *lse,
                                 const S *q, const S *k, const S *v, att_args a) {
    cuda_key_load(a);
    __shared__ att_bwd_tiles sh;
    int b = blockIdx.z, h = blockIdx.y, k0 = blockIdx.x * ATT_BWD_B;
    int j = threadIdx.x / 8, sub = threadIdx.x % 8;
    att_load_tile(sh.k, k, b, h, k0, ATT_BWD_B, a);
    att_load_tile(sh.v, v, b, h, k0, ATT_BWD_B, a);
    float gk[HSM / 8], gv[HSM / 8];
    ATT_UNROLL
    for (int m = 0; m < HSM / 8; m++)
        gk[m] = gv[m] = 0.f;
    int kl = att_keys(a, b), qend = kl && k0 >= kl ? 0 : a.T;
    for (int q0 = kl ? 0 : k0; q0 < qend; q0 += ATT_BWD_B) {
        __syncthreads(); // the previous query tile is read
        att_bwd_load_queries(sh, q, dout, (const S *)NULL, NULL, D, lse, b, h, q0, a);
        __syncthreads();
        att_bwd_probs(sh, b, h, q0, k0, a);
        __syncthreads();
        for (int r = 0; r < ATT_BWD_B; r++) {
            float pd = sh.pd[r][j], ds = sh.ds[r][j];
            ATT_UNROLL
            for (int m = 0; m < HSM / 8; m++) {
                gv[m] += pd * sh.dout[r * ATT_LD + sub + 8 * m];
                gk[m] += ds * sh.q[r * ATT_LD + sub + 8 * m];
            }
        }
        XLMC_COUNT_FLOPS(ATT_BWD_B * 4 * (HSM / 8)); // two FMAs per row and column
    }
    // dk, dv go out through the k, v tiles, every k, v read done
    __syncthreads();
    ATT_UNROLL
    for (int m = 0; m < HSM / 8; m++) {
        int c = sub + 8 * m;
        if (c >= a.HS) continue;
        sh.v[j * ATT_LD + c] = gv[m];
        sh.k[j * ATT_LD + c] = gk[m] * a.scale;
    }
    __syncthreads();
    att_store_tile(dv, sh.v, b, h, k0, ATT_BWD_B, a);
    att_store_tile(dk, sh.k, b, h, k0, ATT_BWD_B, a);
}

/* dq (B,T,C) for queries [q0, q0+16), over the key tiles up to the diagonal (causal) or the
 * row's length (bidirectional). grid (query tiles, NH, B). Thread i owns query row r = i/8 and the
 * head columns c = i%8 + 8m. */
template <typename S, int HSM>
__global__ void __launch_bounds__(ATT_BWD_THREADS)
    attention_backward_q_kernel(S *dq, float *D, const S *dout, const S *out, const float *lse,
                                const S *q, const S *k, const S *v, att_args a) {
    cuda_key_load(a);
    __shared__ att_bwd_tiles sh;
    int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * ATT_BWD_B;
    int r = threadIdx.x / 8, sub = threadIdx.x % 8;
    att_bwd_load_queries(sh, q, dout, out, D, NULL, lse, b, h, q0, a);
    float g[HSM / 8];
    ATT_UNROLL
    for (int m = 0; m < HSM / 8; m++)
        g[m] = 0.f;
    int kl = att_keys(a, b), last = kl ? kl - 1 : min(q0 + ATT_BWD_B, a.T) - 1;
    for (int k0 = 0; k0 <= last; k0 += ATT_BWD_B) {
        __syncthreads(); // the previous key tile is read
        att_load_tile(sh.k, k, b, h, k0, ATT_BWD_B, a);
        att_load_tile(sh.v, v, b, h, k0, ATT_BWD_B, a);
        __syncthreads();
        att_bwd_probs(sh, b, h, q0, k0, a);
        __syncthreads();
        for (int j = 0; j < ATT_BWD_B; j++) {
            float ds = sh.ds[r][j];
            ATT_UNROLL
            for (int m = 0; m < HSM / 8; m++)
                g[m] += ds * sh.k[j * ATT_LD + sub + 8 * m];
        }
        XLMC_COUNT_FLOPS(ATT_BWD_B * 2 * (HSM / 8));
    }
    // dq goes out through the q tile, every q read done
    __syncthreads();
    ATT_UNROLL
    for (int m = 0; m < HSM / 8; m++) {
        int c = sub + 8 * m;
        if (c < a.HS) sh.q[r * ATT_LD + c] = g[m] * a.scale;
    }
    __syncthreads();
    att_store_tile(dq, sh.q, b, h, q0, ATT_BWD_B, a);
}

static att_args att_make_args(const int32_t *lengths, int T, int C, int NH, float p,
                              const struct dropout_key *key) {
    att_args a;
    memset(&a, 0, sizeof a);
    a.lengths = lengths;
    a.T = T;
    a.C = C;
    a.NH = NH;
    a.HS = C / NH;
    if (a.HS > ATT_HS_MAX || a.HS * NH != C) {
        fprintf(stderr, "xlmc: the CUDA attention supports head sizes up to %d (C %d, %d heads)\n",
                ATT_HS_MAX, C, NH);
        exit(1);
    }
    a.scale = 1.f / sqrtf((float)a.HS);
    a.threshold = p > 0.f ? dropout_threshold(p) : 0u;
    a.keep_scale = p > 0.f ? 1.f / (1.f - p) : 1.f;
    a.tensor = key ? key->tensor : 0;
    a.vars = key && p > 0.f ? cuda_vars_for(key, 0, 0.f) : NULL;
    return a;
}

/* 1 when the tiles of every tensor given can move in att_vec accesses: rows of whole accesses
 * (HS and C multiples of its elements) that start 16-byte aligned (NULLs pass) */
template <typename S>
static int att_vec_ok(const att_args &a, const void *p0, const void *p1, const void *p2,
                      const void *p3, const void *p4 = NULL, const void *p5 = NULL,
                      const void *p6 = NULL, const void *p7 = NULL) {
    const int V = 16 / sizeof(S);
    uintptr_t bits = (uintptr_t)p0 | (uintptr_t)p1 | (uintptr_t)p2 | (uintptr_t)p3 | (uintptr_t)p4 |
                     (uintptr_t)p5 | (uintptr_t)p6 | (uintptr_t)p7;
    return a.HS % V == 0 && a.C % V == 0 && (bits & 15) == 0;
}

/* The kernels for head sizes up to HSM: their register arrays have fixed sizes */
template <typename S, int HSM>
static void attention_forward_launch(S *out, float *lse, const S *q, const S *k, const S *v, int B,
                                     const att_args &a) {
    dim3 grid(cuda_blocks(a.T, ATT_FWD_BQ), a.NH, B);
    XLMC_LAUNCH((attention_forward_kernel<S, HSM>), grid, ATT_FWD_THREADS, 0,
                g_cuda.stream)(out, lse, q, k, v, a);
    cudaLaunchCheck();
}
template <typename S, int HSM>
static void attention_backward_launch(S *dq, S *dk, S *dv, const S *dout, const S *out,
                                      const float *lse, const S *q, const S *k, const S *v, int B,
                                      const att_args &a) {
    dim3 grid(cuda_blocks(a.T, ATT_BWD_B), a.NH, B);
    // D (B,NH,T) = dout . out per row: summed once by the dq kernel, read by the dk, dv kernel
    float *D = cuda_scratch((size_t)B * a.NH * a.T);
    XLMC_LAUNCH((attention_backward_q_kernel<S, HSM>), grid, ATT_BWD_THREADS, 0,
                g_cuda.stream)(dq, D, dout, out, lse, q, k, v, a);
    cudaLaunchCheck();
    XLMC_LAUNCH((attention_backward_kv_kernel<S, HSM>), grid, ATT_BWD_THREADS, 0,
                g_cuda.stream)(dk, dv, dout, D, lse, q, k, v, a);
    cudaLaunchCheck();
}

template <typename S, int HSM>
static void attention_tc_forward_launch(S *out, float *lse, const S *q, const S *k, const S *v,
                                        int B, const att_args &a) {
    dim3 grid(cuda_blocks(a.T, ATT_TC_BQ), a.NH, B);
    XLMC_LAUNCH((attention_tc_forward_kernel<S, HSM>), grid, ATT_TC_THREADS, 0,
                g_cuda.stream)(out, lse, q, k, v, a);
    cudaLaunchCheck();
}
template <typename S, int HSM>
static void attention_tc_backward_launch(S *dq, S *dk, S *dv, const S *dout, const S *out,
                                         const float *lse, const S *q, const S *k, const S *v,
                                         int B, const att_args &a) {
    float *D = cuda_scratch((size_t)B * a.NH * a.T); // as in attention_backward_launch
    dim3 grid_q(cuda_blocks(a.T, ATT_TC_BQ), a.NH, B),
        grid_kv(cuda_blocks(a.T, ATT_TC_BKV), a.NH, B);
    XLMC_LAUNCH((attention_tc_backward_q_kernel<S, HSM>), grid_q, ATT_TC_THREADS, 0,
                g_cuda.stream)(dq, D, dout, out, lse, q, k, v, a);
    cudaLaunchCheck();
    XLMC_LAUNCH((attention_tc_backward_kv_kernel<S, HSM>), grid_kv, ATT_TC_THREADS, 0,
                g_cuda.stream)(dk, dv, dout, D, lse, q, k, v, a);
    cudaLaunchCheck();
}

/* fp16 storage: tensor cores; fp32: the scalar kernels */
template <int HSM>
static void att_forward_path(__half *out, float *lse, const __half *q, const __half *k,
                             const __half *v, int B, const att_args &a) {
    attention_tc_forward_launch<__half, HSM>(out, lse, q, k, v, B, a);
}
template <int HSM>
static void att_forward_path(float *out, float *lse, const float *q, const float *k, const float *v,
                             int B, const att_args &a) {
    attention_forward_launch<float, HSM>(out, lse, q, k, v, B, a);
}
template <int HSM>
static void att_backward_path(__half *dq, __half *dk, __half *dv, const __half *dout,
                              const __half *out, const float *lse, const __half *q, const __half *k,
                              const __half *v, int B, const att_args &a) {
    attention_tc_backward_launch<__half, HSM>(dq, dk, dv, dout, out, lse, q, k, v, B, a);
}
template <int HSM>
static void att_backward_path(float *dq, float *dk, float *dv, const float *dout, const float *out,
                              const float *lse, const float *q, const float *k, const float *v,
                              int B, const att_args &a) {
    attention_backward_launch<float, HSM>(dq, dk, dv, dout, out, lse, q, k, v, B, a);
}

template <typename S>
static void cuda_attention_forward(void *out, float *lse, const void *q, const void *k,
                                   const void *v, const int32_t *lengths, int B, int T, int C,
                                   int NH, float p, const struct dropout_key *key) {
    if (!B || !T) return;
    att_args a = att_make_args(lengths, T, C, NH, p, key);
    a.vec = att_vec_ok<S>(a, out, q, k, v);
    if (a.HS <= 64)
        att_forward_path<64>((S *)out, lse, (const S *)q, (const S *)k, (const S *)v, B, a);
    else
        att_forward_path<ATT_HS_MAX>((S *)out, lse, (const S *)q, (const S *)k, (const S *)v, B, a);
}

template <typename S>
static void cuda_attention_backward(void *dq, void *dk, void *dv, const void *dout, const void *out,
                                    const float *lse, const void *q, const void *k, const void *v,
                                    const int32_t *lengths, int B, int T, int C, int NH, float p,
                                    const struct dropout_key *key) {
    if (!B || !T) return;
    att_args a = att_make_args(lengths, T, C, NH, p, key);
    a.vec = att_vec_ok<S>(a, dq, dk, dv, dout, out, q, k, v);
    if (a.HS <= 64)
        att_backward_path<64>((S *)dq, (S *)dk, (S *)dv, (const S *)dout, (const S *)out, lse,
                              (const S *)q, (const S *)k, (const S *)v, B, a);
    else
        att_backward_path<ATT_HS_MAX>((S *)dq, (S *)dk, (S *)dv, (const S *)dout, (const S *)out,
                                      lse, (const S *)q, (const S *)k, (const S *)v, B, a);
}

CUDA_EXPORT_OP(attention_forward)
CUDA_EXPORT_OP(attention_backward)
