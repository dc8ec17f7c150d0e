/* attention_tc.cuh — the fp16 attention kernels on tensor cores, included by attention.cu (they
 * use its att_args and visibility, dropout and tile helpers).
 *
 * Every tile product runs through nvcuda::wmma (16x16x16, fp16 inputs, fp32 accumulators; sm_70
 * and newer): the forward's S = Q K^T and O += P' V, the backward's dP = dO V^T, dQ += dS K,
 * dV += P'^T dO and dK += dS^T Q. The probabilities P' (after dropout) and dS are rounded to
 * fp16 for their products, as FlashAttention does; the softmax statistics, lse, D, the online
 * rescale and every accumulator stay fp32. Which fragment element holds which matrix element is
 * unspecified, so every per-row step (max, sum, rescale, masking, dropout) works on a tile a
 * warp stored to shared memory, never on fragment elements by position; only uniform scalings
 * touch fragments directly.
 *
 * Head sizes up to HSM (64 or 128): the shared tiles are HSM columns wide and zero past HS, so
 * any head size runs here (HS 6 costs the products of HS 64). Tiles, for the ende geometry
 * (T 256, HS 128) within 48 KiB of static shared memory: the forward and dq kernels take 128
 * queries per block, 16 per warp, each warp keeping its query (and dout) rows as fragments in
 * registers, and walk 32 keys at a time; the dk, dv kernel takes 64 keys per block and walks
 * 32 queries at a time. Fewer, larger query tiles mean fewer reads of each key. */
#include <mma.h>

#include <type_traits>

namespace wmma = nvcuda::wmma;

#define ATT_TC_WARPS 8
#define ATT_TC_THREADS (32 * ATT_TC_WARPS)
#define ATT_TC_BQ (16 * ATT_TC_WARPS) /* forward, dq: queries per block, 16 per warp */
#define ATT_TC_BKV 64                 /* dk, dv: keys per block, 16 per pair of warps */
/* the walked side's tile: keys per step of the forward and dq kernels, queries per step of the
 * dk, dv kernel */
#define ATT_TC_BN 32
/* row strides of the shared tiles, padded so that the rows of a fragment fall in different
 * banks: fp32 scores (ATT_TC_BN columns), fp16 probabilities (ATT_TC_BN columns) */
#define ATT_TC_LDS (ATT_TC_BN + 4)
#define ATT_TC_LDP (ATT_TC_BN + 8)

typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> att_fa;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> att_fb_row;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> att_fb_col;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> att_facc;

/* A warp's staging: its 16 x ATT_TC_BN scores (fp32); in their place the fp16 probabilities
 * (or dS) for the next product and a 16 x 16 fp32 tile that accumulators pass through for
 * per-row work. 32-byte aligned, as wmma wants its pointers. */
union alignas(32) att_tc_warp_tile {
    float s[16 * ATT_TC_LDS];
    struct {
        __half p[16 * ATT_TC_LDP];
        float o[16 * 16];
    } po;
};

/* rows [t0, t0+rows) of head h of sequence b of x (B,T,C) into tile (rows, HSM+8) fp16, zero
 * past T and past HS */
template <typename S, int HSM>
__device__ void att_tc_load(__half *tile, const S *x, int b, int h, int t0, int rows,
                            const att_args &a) {
    static_assert(std::is_same<S, __half>::value, "tensor-core tiles are fp16");
    constexpr int LDH = HSM + 8;
    if (a.vec) {
        constexpr int n = HSM / 8; // 16-byte pieces per tile row
        for (int i = threadIdx.x; i < rows * n; i += blockDim.x) {
            int r = i / n, c = i % n * 8, t = t0 + r;
            raw16 w{};
            if (t < a.T && c < a.HS)
                w = *(const raw16 *)(x + ((size_t)b * a.T + t) * a.C + h * a.HS + c);
            *(raw16 *)(tile + r * LDH + c) = w;
        }
        return;
    }
    for (int i = threadIdx.x; i < rows * HSM; i += blockDim.x) {
        int r = i / HSM, c = i % HSM, t = t0 + r;
        tile[r * LDH + c] = t < a.T && c < a.HS ? x[((size_t)b * a.T + t) * a.C + h * a.HS + c]
                                                : __float2half_rn(0.f);
    }
}

/* x (16 x ATT_TC_BN, row stride ATT_TC_LDS) = the warp's 16 rows af (HSM columns) times rows
 * [0, ATT_TC_BN) of tile y (row stride HSM+8), transposed: scores, or dP */
template <int HSM>
__device__ void att_tc_scores(float *x, const att_fa (&af)[HSM / 16], const __half *y) {
    constexpr int LDH = HSM + 8;
    ATT_UNROLL
    for (int n = 0; n < ATT_TC_BN / 16; n++) {
        att_facc s;
        wmma::fill_fragment(s, 0.f);
        ATT_UNROLL
        for (int kk = 0; kk < HSM / 16; kk++) {
            att_fb_col bf;
            wmma::load_matrix_sync(bf, y + 16 * n * LDH + 16 * kk, LDH);
            wmma::mma_sync(s, af[kk], bf, s);
        }
        wmma::store_matrix_sync(x + 16 * n, s, ATT_TC_LDS, wmma::mem_row_major);
    }
}

/* acc (16 x HSM) += p (16 x ATT_TC_BN fp16, row stride ATT_TC_LDP) times rows [0, ATT_TC_BN) of
 * tile y (row stride HSM+8) */
template <int HSM>
__device__ void att_tc_accumulate(att_facc (&acc)[HSM / 16], const __half *p, const __half *y) {
    constexpr int LDH = HSM + 8;
    att_fa pf[ATT_TC_BN / 16];
    ATT_UNROLL
    for (int kk = 0; kk < ATT_TC_BN / 16; kk++)
        wmma::load_matrix_sync(pf[kk], p + 16 * kk, ATT_TC_LDP);
    ATT_UNROLL
    for (int n = 0; n < HSM / 16; n++) {
        ATT_UNROLL
        for (int kk = 0; kk < ATT_TC_BN / 16; kk++) {
            att_fb_row bf;
            wmma::load_matrix_sync(bf, y + 16 * kk * LDH + 16 * n, LDH);
            wmma::mma_sync(acc[n], pf[kk], bf, acc[n]);
        }
    }
}

/* each row i of the warp's accumulators (16 x HSM) times f[i], through the 16 x 16 stage */
template <int HSM>
__device__ void att_tc_scale_rows(att_facc (&acc)[HSM / 16], float *stage, const float *f) {
    int lane = threadIdx.x % 32;
    ATT_UNROLL
    for (int n = 0; n < HSM / 16; n++) {
        wmma::store_matrix_sync(stage, acc[n], 16, wmma::mem_row_major);
        __syncwarp();
        ATT_UNROLL
        for (int e = 0; e < 8; e++) {
            int i = lane + 32 * e;
            stage[i] *= f[i / 16];
        }
        __syncwarp();
        wmma::load_matrix_sync(acc[n], stage, 16, wmma::mem_row_major);
        __syncwarp(); // the stage is read before the next fragment goes in
    }
    XLMC_COUNT_FLOPS(8 * (HSM / 16));
}

/* The warp's accumulators (16 x HSM), each row i times f[i] (f NULL: 1), into rows
 * [t0, t0+16) of head h of sequence b of x (B,T,C), through the 16 x 16 stage; rows past T and
 * columns past HS are not written. Lane l writes row l/2, columns 8(l%2) .. +7 of each 16: one
 * 16-byte store with att_args.vec. Each value is rounded once. */
template <typename S, int HSM>
__device__ void att_tc_store_rows(S *x, att_facc (&acc)[HSM / 16], float *stage, const float *f,
                                  int b, int h, int t0, const att_args &a) {
    int lane = threadIdx.x % 32, r = lane / 2, c0 = 8 * (lane % 2), t = t0 + r;
    float fr = f ? f[r] : 1.f;
    ATT_UNROLL
    for (int n = 0; n < HSM / 16; n++) {
        wmma::store_matrix_sync(stage, acc[n], 16, wmma::mem_row_major);
        __syncwarp();
        int c = 16 * n + c0;
        if (t < a.T && c < a.HS) {
            S *dst = x + ((size_t)b * a.T + t) * a.C + h * a.HS + c;
            if (a.vec) {
                att_vec<S> w;
                ATT_UNROLL
                for (int e = 0; e < 8; e++)
                    st(&w.v[e], stage[r * 16 + c0 + e] * fr);
                *(att_vec<S> *)dst = w;
            } else {
                for (int e = 0; e < 8 && c + e < a.HS; e++)
                    st(dst + e, stage[r * 16 + c0 + e] * fr);
            }
        }
        __syncwarp(); // the stage is read before the next fragment goes in
    }
    if (f) XLMC_COUNT_FLOPS(8 * (HSM / 16));
}

/* The last key the warp's queries [t0, t0+16) see: the row's last key (bidirectional, kl from
 * att_keys) or the last query's own (causal); -1 when every query is past T. */
__device__ __forceinline__ int att_tc_last_key(int t0, int kl, const att_args &a) {
    if (t0 >= a.T) return -1;
    return kl ? kl - 1 : min(t0 + 15, a.T - 1);
}

template <int HSM>
struct alignas(32) att_tc_fwd_smem {
    union {
        __half q[ATT_TC_BQ * (HSM + 8)]; /* the block's queries, until the warps hold theirs */
        struct {
            __half k[ATT_TC_BN * (HSM + 8)], v[ATT_TC_BN * (HSM + 8)];
            att_tc_warp_tile w[ATT_TC_WARPS];
        } kv;
    } u;
    float f[ATT_TC_WARPS][16]; /* per-row factors of each warp's accumulators */
};

/* out (B,T,C) = dropout(softmax) @ v, lse (B,NH,T). grid (query tiles, NH, B). Warp w owns the
 * tile's queries 16w .. 16w+15; in the softmax its lane l takes query row l/2 and the key
 * columns l%2 + 2i of the staged scores. */
template <typename S, int HSM>
__global__ void __launch_bounds__(ATT_TC_THREADS)
    attention_tc_forward_kernel(S *out, float *lse, const S *q, const S *k, const S *v,
                                att_args a) {
    cuda_key_load(a);
    constexpr int LDH = HSM + 8, NF = HSM / 16, NJ = ATT_TC_BN / 2;
    __shared__ att_tc_fwd_smem<HSM> sh;
    int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * ATT_TC_BQ;
    int w = threadIdx.x / 32, lane = threadIdx.x % 32, qw = q0 + 16 * w;
    int r = lane / 2, hf = lane % 2, t = qw + r;
    att_tc_warp_tile &ws = sh.u.kv.w[w];
    att_tc_load<S, HSM>(sh.u.q, q, b, h, q0, ATT_TC_BQ, a);
    __syncthreads();
    att_fa qf[NF];
    att_facc o[NF];
    ATT_UNROLL
    for (int n = 0; n < NF; n++) {
        wmma::load_matrix_sync(qf[n], sh.u.q + 16 * w * LDH + 16 * n, LDH);
        wmma::fill_fragment(o[n], 0.f);
    }
    float m = -INFINITY, l = 0.f; // row t's running max and sum (both lanes of the row)
    int kl = att_keys(a, b), wlast = att_tc_last_key(qw, kl, a);
    int last = kl ? kl - 1 : min(q0 + ATT_TC_BQ, a.T) - 1;
    for (int k0 = 0; k0 <= last; k0 += ATT_TC_BN) {
        __syncthreads(); // the q fragments are loaded, the previous k, v read
        att_tc_load<S, HSM>(sh.u.kv.k, k, b, h, k0, ATT_TC_BN, a);
        att_tc_load<S, HSM>(sh.u.kv.v, v, b, h, k0, ATT_TC_BN, a);
        __syncthreads();
        if (k0 > wlast) continue; // no query of the warp sees these keys
        att_tc_scores<HSM>(ws.s, qf, sh.u.kv.k);
        __syncwarp();
        float sc[NJ], mt = -INFINITY;
        ATT_UNROLL
        for (int i = 0; i < NJ; i++) {
            int j = hf + 2 * i;
            sc[i] = att_visible(t, k0 + j, kl) && t < a.T ? ws.s[r * ATT_TC_LDS + j] * a.scale
                                                          : -INFINITY;
            mt = fmaxf(mt, sc[i]);
        }
        mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 1));
        float mnew = fmaxf(m, mt);
        // a row with no visible key yet keeps m = -inf; its p are 0 and alpha 1
        float alpha = mnew == -INFINITY ? 1.f : expf(m - mnew), rs = 0.f;
        __syncwarp(); // every score is read: the probabilities take their place
        ATT_UNROLL
        for (int i = 0; i < NJ; i++) {
            int j = hf + 2 * i;
            float p = sc[i] == -INFINITY ? 0.f : expf(sc[i] - mnew);
            rs += p;
            float pd = p != 0.f && att_keep(a, b, h, t, k0 + j) ? p * a.keep_scale : 0.f;
            ws.po.p[r * ATT_TC_LDP + j] = __float2half_rn(pd);
        }
        XLMC_COUNT_FLOPS(5 * NJ); // per score: scale, max, subtract, exp (1: a floor), sum
        rs += __shfl_xor_sync(0xffffffffu, rs, 1);
        l = l * alpha + rs;
        m = mnew;
        if (!hf) sh.f[w][r] = alpha;
        __syncwarp();
        if (!__all_sync(0xffffffffu, alpha == 1.f)) att_tc_scale_rows<HSM>(o, ws.po.o, sh.f[w]);
        att_tc_accumulate<HSM>(o, ws.po.p, sh.u.kv.v);
    }
    // rows past T saw no key (l 0) and are not stored; the outputs leave through the warp's own
    // stage, which no other warp touches
    __syncwarp();
    if (!hf) sh.f[w][r] = t < a.T ? 1.f / l : 0.f;
    if (!hf && t < a.T) lse[((size_t)b * a.NH + h) * a.T + t] = m + logf(l);
    __syncwarp();
    att_tc_store_rows<S, HSM>(out, o, ws.po.o, sh.f[w], b, h, qw, a);
}

template <int HSM>
struct alignas(32) att_tc_dq_smem {
    union {
        __half x[ATT_TC_BQ * (HSM + 8)]; /* dout, then q, until the warps hold theirs */
        struct {
            __half k[ATT_TC_BN * (HSM + 8)], v[ATT_TC_BN * (HSM + 8)];
            att_tc_warp_tile w[ATT_TC_WARPS];
        } kv;
    } u;
};

/* dq (B,T,C) and D (B,NH,T) = dout . out per row, for the block's 128 queries, over the key tiles
 * up to the diagonal (causal) or the row's length (bidirectional). grid (query tiles, NH, B).
 * Warp w owns the queries 16w .. 16w+15 (their q and dout rows as fragments); lane l takes query
 * row l/2 and the key columns l%2 + 2i of the staged scores. */
template <typename S, int HSM>
__global__ void __launch_bounds__(ATT_TC_THREADS)
    attention_tc_backward_q_kernel(S *dq, float *D, const S *dout, const S *out, const float *lse,
                                   const S *q, const S *k, const S *v, att_args a) {
    cuda_key_load(a);
    constexpr int LDH = HSM + 8, NF = HSM / 16, NJ = ATT_TC_BN / 2;
    __shared__ att_tc_dq_smem<HSM> sh;
    int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * ATT_TC_BQ;
    int w = threadIdx.x / 32, lane = threadIdx.x % 32, qw = q0 + 16 * w;
    int r = lane / 2, hf = lane % 2, t = qw + r;
    const size_t row = ((size_t)b * a.NH + h) * a.T; // (B,NH,T) index of this head's t = 0
    att_tc_warp_tile &ws = sh.u.kv.w[w];
    att_tc_load<S, HSM>(sh.u.x, dout, b, h, q0, ATT_TC_BQ, a);
    __syncthreads();
    // D for row t: the row's lane pair sums alternate 8-element pieces, out straight from global
    float Dt = 0.f, lt = 0.f;
    if (t < a.T) {
        const S *orow = out + ((size_t)b * a.T + t) * a.C + h * a.HS;
        const __half *drow = sh.u.x + (16 * w + r) * LDH;
        for (int c = 8 * hf; c < a.HS; c += 16) {
            if (a.vec) {
                att_vec<S> o8 = *(const att_vec<S> *)(orow + c);
                ATT_UNROLL
                for (int e = 0; e < 8; e++)
                    Dt += ld(&o8.v[e]) * __half2float(drow[c + e]);
            } else {
                for (int e = 0; e < 8 && c + e < a.HS; e++)
                    Dt += ld(orow + c + e) * __half2float(drow[c + e]);
            }
        }
        XLMC_COUNT_FLOPS(a.HS); // this lane's half of the row's FMAs
        lt = lse[row + t];
    }
    Dt += __shfl_xor_sync(0xffffffffu, Dt, 1);
    if (!hf && t < a.T) D[row + t] = Dt;
    att_fa qf[NF], df[NF];
    att_facc g[NF];
    ATT_UNROLL
    for (int n = 0; n < NF; n++) {
        wmma::load_matrix_sync(df[n], sh.u.x + 16 * w * LDH + 16 * n, LDH);
        wmma::fill_fragment(g[n], 0.f);
    }
    __syncthreads(); // dout is read: the tile takes q
    att_tc_load<S, HSM>(sh.u.x, q, b, h, q0, ATT_TC_BQ, a);
    __syncthreads();
    ATT_UNROLL
    for (int n = 0; n < NF; n++)
        wmma::load_matrix_sync(qf[n], sh.u.x + 16 * w * LDH + 16 * n, LDH);
    int kl = att_keys(a, b), wlast = att_tc_last_key(qw, kl, a);
    int last = kl ? kl - 1 : min(q0 + ATT_TC_BQ, a.T) - 1;
    for (int k0 = 0; k0 <= last; k0 += ATT_TC_BN) {
        __syncthreads(); // the q fragments are loaded, the previous k, v read
        att_tc_load<S, HSM>(sh.u.kv.k, k, b, h, k0, ATT_TC_BN, a);
        att_tc_load<S, HSM>(sh.u.kv.v, v, b, h, k0, ATT_TC_BN, a);
        __syncthreads();
        if (k0 > wlast) continue; // no query of the warp sees these keys
        att_tc_scores<HSM>(ws.s, qf, sh.u.kv.k);
        __syncwarp();
        float p[NJ]; // the probabilities before dropout, 0 where masked
        ATT_UNROLL
        for (int i = 0; i < NJ; i++) {
            int j = hf + 2 * i;
            p[i] = att_visible(t, k0 + j, kl) && t < a.T
                       ? expf(ws.s[r * ATT_TC_LDS + j] * a.scale - lt)
                       : 0.f;
        }
        __syncwarp(); // every score is read: dP takes their place
        att_tc_scores<HSM>(ws.s, df, sh.u.kv.v);
        __syncwarp();
        float ds[NJ];
        ATT_UNROLL
        for (int i = 0; i < NJ; i++) {
            int j = hf + 2 * i;
            float dp = ws.s[r * ATT_TC_LDS + j];
            dp = att_keep(a, b, h, t, k0 + j) ? dp * a.keep_scale : 0.f;
            ds[i] = p[i] != 0.f ? p[i] * (dp - Dt) : 0.f;
        }
        XLMC_COUNT_FLOPS(6 * NJ); // per score: scale, subtract, exp (1), keep, dp - D, x p
        __syncwarp();             // every dP is read: dS takes its place
        ATT_UNROLL
        for (int i = 0; i < NJ; i++)
            ws.po.p[r * ATT_TC_LDP + hf + 2 * i] = __float2half_rn(ds[i]);
        __syncwarp();
        att_tc_accumulate<HSM>(g, ws.po.p, sh.u.kv.k);
    }
    ATT_UNROLL
    for (int n = 0; n < NF; n++)
        for (int i = 0; i < g[n].num_elements; i++)
            g[n].x[i] *= a.scale; // uniform: the element's position does not matter
    XLMC_COUNT_FLOPS(8 * NF);
    __syncwarp();
    att_tc_store_rows<S, HSM>(dq, g, ws.po.o, (const float *)NULL, b, h, qw, a);
}

template <int HSM>
struct alignas(32) att_tc_dkv_smem {
    union {
        __half kv[2 * ATT_TC_BKV * (HSM + 8)]; /* k, then v rows, until the warps hold theirs */
        struct {
            __half q[ATT_TC_BN * (HSM + 8)], dout[ATT_TC_BN * (HSM + 8)];
            /* s^T and dP^T (keys x queries); after the loop, the warps' output stages */
            float st[ATT_TC_BKV * ATT_TC_LDS], dpt[ATT_TC_BKV * ATT_TC_LDS];
            __half pt[ATT_TC_BKV * ATT_TC_LDP], dst[ATT_TC_BKV * ATT_TC_LDP]; /* P'^T, dS^T */
            float lse[ATT_TC_BN], D[ATT_TC_BN];
        } t;
    } u;
};

/* dk, dv (B,T,C) for the block's 64 keys, over the query tiles that see them: from the block's
 * first key on when causal, all of them when bidirectional (none for keys past the row's
 * length). grid (key tiles, NH, B). Warps w and w+4 own keys 16w .. 16w+15 (w < 4): warp w
 * holds their k rows as fragments, computes s^T and accumulates dv; warp w+4 holds their v rows,
 * computes dP^T and accumulates dk. The probabilities and dS are formed by the whole block
 * between the two products. */
template <typename S, int HSM>
__global__ void __launch_bounds__(ATT_TC_THREADS)
    attention_tc_backward_kv_kernel(S *dk, S *dv, const S *dout, const float *D, const float *lse,
                                    const S *q, const S *k, const S *v, att_args a) {
    cuda_key_load(a);
    constexpr int LDH = HSM + 8, NF = HSM / 16;
    __shared__ att_tc_dkv_smem<HSM> sh;
    int b = blockIdx.z, h = blockIdx.y, k0 = blockIdx.x * ATT_TC_BKV;
    int w = threadIdx.x / 32, kb = w % 4, kind = w / 4, kw = k0 + 16 * kb;
    const size_t row = ((size_t)b * a.NH + h) * a.T;
    att_tc_load<S, HSM>(sh.u.kv, k, b, h, k0, ATT_TC_BKV, a);
    att_tc_load<S, HSM>(sh.u.kv + ATT_TC_BKV * LDH, v, b, h, k0, ATT_TC_BKV, a);
    __syncthreads();
    att_fa kvf[NF]; // kind 0: the warp's k rows; 1: its v rows
    att_facc g[NF]; // kind 0: dv; 1: dk (before the scale)
    ATT_UNROLL
    for (int n = 0; n < NF; n++) {
        wmma::load_matrix_sync(kvf[n], sh.u.kv + (kind * ATT_TC_BKV + 16 * kb) * LDH + 16 * n, LDH);
        wmma::fill_fragment(g[n], 0.f);
    }
    int kl = att_keys(a, b), qend = kl && k0 >= kl ? 0 : a.T;
    for (int q0 = kl ? 0 : k0; q0 < qend; q0 += ATT_TC_BN) {
        __syncthreads(); // the k, v fragments are loaded, the previous query tile read
        att_tc_load<S, HSM>(sh.u.t.q, q, b, h, q0, ATT_TC_BN, a);
        att_tc_load<S, HSM>(sh.u.t.dout, dout, b, h, q0, ATT_TC_BN, a);
        // lse and D by different threads: one access each
        int i = threadIdx.x % ATT_TC_BN, tl = q0 + i;
        if (threadIdx.x < ATT_TC_BN)
            sh.u.t.lse[i] = tl < a.T ? lse[row + tl] : 0.f;
        else if (threadIdx.x < 2 * ATT_TC_BN)
            sh.u.t.D[i] = tl < a.T ? D[row + tl] : 0.f;
        __syncthreads();
        // the warp's keys seen by some query of the tile (else their P', dS rows are all 0)
        bool seen = kl ? kw < kl : kw <= min(q0 + ATT_TC_BN, a.T) - 1;
        if (seen)
            att_tc_scores<HSM>((kind ? sh.u.t.dpt : sh.u.t.st) + 16 * kb * ATT_TC_LDS, kvf,
                               kind ? sh.u.t.dout : sh.u.t.q);
        __syncthreads();
        for (int e = threadIdx.x; e < ATT_TC_BKV * ATT_TC_BN; e += blockDim.x) {
            int j = e / ATT_TC_BN, c = e % ATT_TC_BN, s = k0 + j, t = q0 + c;
            float pd = 0.f, ds = 0.f;
            if (att_visible(t, s, kl) && t < a.T) {
                XLMC_COUNT_FLOPS(6); // scale, subtract, exp (1), keep, dp - D, x p
                float p = expf(sh.u.t.st[j * ATT_TC_LDS + c] * a.scale - sh.u.t.lse[c]);
                float dp = sh.u.t.dpt[j * ATT_TC_LDS + c];
                if (att_keep(a, b, h, t, s)) {
                    pd = p * a.keep_scale;
                    dp *= a.keep_scale;
                } else {
                    dp = 0.f;
                }
                ds = p * (dp - sh.u.t.D[c]);
            }
            sh.u.t.pt[j * ATT_TC_LDP + c] = __float2half_rn(pd);
            sh.u.t.dst[j * ATT_TC_LDP + c] = __float2half_rn(ds);
        }
        __syncthreads();
        if (seen)
            att_tc_accumulate<HSM>(g, (kind ? sh.u.t.dst : sh.u.t.pt) + 16 * kb * ATT_TC_LDP,
                                   kind ? sh.u.t.q : sh.u.t.dout);
    }
    __syncthreads(); // every tile is read: the score tiles take the output stages
    if (kind) {
        ATT_UNROLL
        for (int n = 0; n < NF; n++)
            for (int i = 0; i < g[n].num_elements; i++)
                g[n].x[i] *= a.scale; // uniform: the element's position does not matter
        XLMC_COUNT_FLOPS(8 * NF);
    }
    att_tc_store_rows<S, HSM>(kind ? dk : dv, g, sh.u.t.st + 256 * w, (const float *)NULL, b, h, kw,
                              a);
}
