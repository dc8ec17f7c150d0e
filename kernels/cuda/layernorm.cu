/* layernorm.cu — LayerNorm over the last dim with fp32 statistics, forward and backward. */
#include "kernels/cuda/common.cuh"

/* A row is split into pieces of VEC elements (16 bytes when C and the pointers allow, else
 * 1): threads are whole warps covering the pieces, at most 128 (no idle warps for small C);
 * each keeps up to LN_CACHE of its pieces in registers, so rows of up to 4096 halves are read
 * from memory once for the statistics and the output. */
#define LN_CACHE 4
static unsigned ln_threads(int pieces) {
    unsigned warps = (unsigned)(pieces + 31) / 32;
    return 32 * (warps < 4 ? (warps ? warps : 1) : 4);
}

/* row n of (B,T,...) is padding (lengths NULL: none) */
__device__ __forceinline__ bool ln_padded(const int32_t *lengths, int T, size_t n) {
    return lengths && (int)(n % T) >= lengths[n / T];
}

/* What the residual + LayerNorm forward computes in front of the LayerNorm, in the same pass:
 * r = res + dropout(x + bias), as dropout_residual_kernel (pointwise.cu) computes and rounds
 * it, element by element the same Philox bits; r may be x. */
template <typename S>
struct ln_residual {
    S *r;
    const S *res, *bias; /* (N,C); (C) or NULL */
    float scale;         /* 1/(1-p) */
    uint32_t threshold;  /* 0: no dropout */
    uint64_t seed, step; /* from vars at the kernel's start (cuda_key_load) */
    uint32_t row0, tensor;
    const struct cuda_vars *vars; /* NULL: no dropout */
};

/* piece q of row `row` of r, computed from x, res and bias, stored to r and returned */
template <typename S, int VEC>
__device__ __forceinline__ raw16 ln_residual_piece(const ln_residual<S> &a, const S *x, size_t row,
                                                   int T, int C, int q) {
    size_t at = row * C + (size_t)q * VEC;
    float f[VEC], rv[VEC], bv[VEC] = {};
    unpack<VEC, S>(f, ld_piece<VEC>(x + at));
    unpack<VEC, S>(rv, ld_piece<VEC>(a.res + at));
    if (a.bias) unpack<VEC, S>(bv, ld_piece<VEC>(a.bias + (size_t)q * VEC));
    uint64_t e0 = (uint64_t)(row % T) * (uint64_t)C + (uint64_t)q * VEC;
    uint32_t seq = a.row0 + (uint32_t)(row / T);
    ROW_UNROLL
    for (int j0 = 0; j0 < VEC; j0 += 4) {
        /* one Philox call per 4 elements when they are one call's words, as in dropout_keep */
        bool group = VEC >= 4 && a.threshold && (e0 + j0) % 4 == 0;
        struct philox4 p = {{0u, 0u, 0u, 0u}};
        if (group)
            p = philox4x32_10((uint32_t)((e0 + j0) >> 2), seq, a.tensor, (uint32_t)a.step,
                              (uint32_t)a.seed, (uint32_t)(a.seed >> 32));
        ROW_UNROLL
        for (int j = j0; j < j0 + 4 && j < VEC; j++) {
            float v = f[j] + bv[j];
            if (a.threshold) {
                int keep = group ? p.v[j - j0] >= a.threshold
                                 : dropout_keep(a.seed, a.step, seq, a.tensor, e0 + j, a.threshold);
                S t;
                st(&t, keep ? v * a.scale : 0.f);
                v = ld(&t);
            }
            f[j] = rv[j] + v;
        }
    }
    raw16 r = pack<VEC, S>(f);
    st_piece<VEC>(a.r + at, r);
    return r;
}

// one block per row: out (N,C), mean/rstd (N), inp (N,C), w/b (C); padded rows of out 0.
// RES: the row is first r = res + dropout(inp + bias) (ra), stored to ra.r, then normalized.
template <typename S, int VEC, bool RES>
__global__ void layernorm_forward_kernel(S *out, float *mean, float *rstd, const S *inp, const S *w,
                                         const S *b, int C, float eps, const int32_t *lengths,
                                         int T, ln_residual<S> ra) {
    cuda_key_load(ra);
    __shared__ float red[32];
    size_t row = blockIdx.x;
    const S *x = RES ? ra.r + row * C : inp + row * C;
    S *y = out + row * C;
    bool first = true; /* RES: the first pass computes r, later ones read it back */
    auto load = [&](int q) {
        if (RES && first) return ln_residual_piece<S, VEC>(ra, inp, row, T, C, q);
        return ld_piece<VEC>(x + (size_t)q * VEC);
    };
    raw16 cache[LN_CACHE] = {};
    float s = 0.f;
    row_pass<LN_CACHE, true>(cache, C / VEC, load, [&](int, raw16 r) {
        float f[VEC];
        unpack<VEC, S>(f, r);
        ROW_UNROLL
        for (int j = 0; j < VEC; j++)
            s += f[j];
    });
    first = false;
    float mu = block_sum(s, red) / C;
    /* two passes: the centred sum of squares does not cancel like E[x^2] - E[x]^2 */
    float ss = 0.f;
    row_pass<LN_CACHE, false>(cache, C / VEC, load, [&](int, raw16 r) {
        float f[VEC];
        unpack<VEC, S>(f, r);
        ROW_UNROLL
        for (int j = 0; j < VEC; j++) {
            float d = f[j] - mu;
            ss += d * d;
        }
    });
    float rs = rsqrtf(block_sum(ss, red) / C + eps);
    bool pad = ln_padded(lengths, T, row);
    row_pass<LN_CACHE, false>(cache, C / VEC, load, [&](int q, raw16 r) {
        float f[VEC], wf[VEC], bf[VEC];
        unpack<VEC, S>(f, r);
        unpack<VEC, S>(wf, ld_piece<VEC>(w + (size_t)q * VEC));
        unpack<VEC, S>(bf, ld_piece<VEC>(b + (size_t)q * VEC));
        ROW_UNROLL
        for (int j = 0; j < VEC; j++)
            f[j] = pad ? 0.f : (f[j] - mu) * rs * wf[j] + bf[j];
        st_piece<VEC>(y + (size_t)q * VEC, pack<VEC, S>(f));
    });
    if (threadIdx.x == 0) {
        mean[row] = mu;
        rstd[row] = rs;
    }
}

/* A dropout inside the backward's pass (struct ln_backward_extra): a row's mask is keyed as
 * `dropout` keys it, a kept element is scaled and rounded to storage as it stores it. on 0:
 * none. Passed to the kernels by value. */
struct ln_drop {
    int on;
    float scale;
    uint32_t threshold, row0, tensor, unused; /* no padding: launches are fingerprinted */
    uint64_t seed, step;                      /* row0, seed, step: from vars (cuda_key_load) */
    const struct cuda_vars *vars;             /* NULL: off */
};
static ln_drop ln_drop_of(float p, const struct dropout_key *key) {
    if (!key || p <= 0.f) return ln_drop{0, 1.f, 0u, 0u, 0u, 0u, 0u, 0u, NULL};
    return ln_drop{1,  1.f / (1.f - p),           dropout_threshold(p), 0u, key->tensor, 0u, 0u,
                   0u, cuda_vars_for(key, 0, 0.f)};
}

/* x rounded to storage, as a store then a load */
template <typename S>
__device__ __forceinline__ float ln_round(float x) {
    S t;
    st(&t, x);
    return ld(&t);
}

/* Dropout of f[0..VEC), storage values, elements e0.. of row `row` (n / T) of the call. With
 * VEC > 1 the piece starts at a multiple of VEC (the rows are whole pieces), so each 4 of its
 * elements are the words of one Philox call; alone, one call per element. */
template <typename S, int VEC>
__device__ __forceinline__ void ln_drop_piece(float f[VEC], const ln_drop &d, uint64_t e0,
                                              uint32_t row) {
    row += d.row0;
    if (VEC % 4 == 0) {
        ROW_UNROLL
        for (int g = 0; g < VEC / 4; g++) {
            struct philox4 r =
                philox4x32_10((uint32_t)(e0 >> 2) + (uint32_t)g, row, d.tensor, (uint32_t)d.step,
                              (uint32_t)d.seed, (uint32_t)(d.seed >> 32));
            ROW_UNROLL
            for (int j = 0; j < 4; j++)
                f[4 * g + j] = r.v[j] >= d.threshold ? ln_round<S>(f[4 * g + j] * d.scale) : 0.f;
        }
    } else {
        ROW_UNROLL
        for (int j = 0; j < VEC; j++)
            f[j] = dropout_keep(d.seed, d.step, row, d.tensor, e0 + (uint64_t)j, d.threshold)
                       ? ln_round<S>(f[j] * d.scale)
                       : 0.f;
    }
}

/* piece q of row n of dout, dropped when the extra asks for it */
template <typename S, int VEC>
__device__ __forceinline__ raw16 ln_dout_piece(const S *dout, const ln_drop &dd, size_t n, int q,
                                               int C, int T) {
    raw16 r = ld_piece<VEC>(dout + n * C + (size_t)q * VEC);
    if (!dd.on) return r;
    float f[VEC];
    unpack<VEC, S>(f, r);
    ln_drop_piece<S, VEC>(f, dd, (uint64_t)(n % T) * C + (uint64_t)q * VEC, (uint32_t)(n / T));
    return pack<VEC, S>(f);
}

/* Piece q of row n's input gradient, r (already rounded), stored to dinp and, when asked, its
 * dropout to dropped; f = the branch's values (dropped's, else dinp's) for the bias sums. */
template <typename S, int VEC>
__device__ __forceinline__ void ln_store_dinp(S *dinp, S *dropped, const ln_drop &di, raw16 r,
                                              float f[VEC], size_t n, int q, int C, int T) {
    size_t at = n * C + (size_t)q * VEC;
    st_piece<VEC>(dinp + at, r);
    unpack<VEC, S>(f, r);
    if (!dropped) return;
    if (di.on) {
        ln_drop_piece<S, VEC>(f, di, (uint64_t)(n % T) * C + (uint64_t)q * VEC, (uint32_t)(n / T));
        r = pack<VEC, S>(f);
    }
    st_piece<VEC>(dropped + at, r);
}

/* the pieces the input gradient reads at one position of a row */
struct ln_back_pieces {
    raw16 x, dy, w;
};

// one block per row: dinp (N,C) = d LayerNorm / d inp; a padded row's dout counts as 0; dout
// dropped when dd.on, dinp's dropout into dropped (NULL: none)
template <typename S, int VEC>
__global__ void layernorm_backward_dinp_kernel(S *dinp, S *dropped, const S *dout, const S *inp,
                                               const S *w, const float *mean, const float *rstd,
                                               int C, const int32_t *lengths, int T, ln_drop dd,
                                               ln_drop di) {
    cuda_key_load(dd);
    cuda_key_load(di);
    __shared__ float red[32];
    size_t row = blockIdx.x;
    if (ln_padded(lengths, T, row)) { /* the whole block leaves: no block_sum waits for it */
        const float zero[VEC] = {};
        for (int q = threadIdx.x; q < C / VEC; q += blockDim.x) {
            st_piece<VEC>(dinp + row * C + (size_t)q * VEC, pack<VEC, S>(zero));
            if (dropped) st_piece<VEC>(dropped + row * C + (size_t)q * VEC, pack<VEC, S>(zero));
        }
        return;
    }
    const S *x = inp + row * C;
    float mu = mean[row], rs = rstd[row];
    auto load = [&](int q) {
        size_t at = (size_t)q * VEC;
        return ln_back_pieces{ld_piece<VEC>(x + at), ln_dout_piece<S, VEC>(dout, dd, row, q, C, T),
                              ld_piece<VEC>(w + at)};
    };
    ln_back_pieces cache[LN_CACHE] = {};
    float sum_g = 0.f, sum_gx = 0.f;
    row_pass<LN_CACHE, true>(cache, C / VEC, load, [&](int, const ln_back_pieces &p) {
        float xf[VEC], gf[VEC], wf[VEC];
        unpack<VEC, S>(xf, p.x);
        unpack<VEC, S>(gf, p.dy);
        unpack<VEC, S>(wf, p.w);
        ROW_UNROLL
        for (int j = 0; j < VEC; j++) {
            float g = gf[j] * wf[j];
            sum_g += g;
            sum_gx += g * (xf[j] - mu) * rs;
        }
    });
    float mean_g = block_sum(sum_g, red) / C;
    float mean_gx = block_sum(sum_gx, red) / C;
    row_pass<LN_CACHE, false>(cache, C / VEC, load, [&](int q, const ln_back_pieces &p) {
        float xf[VEC], gf[VEC], wf[VEC];
        unpack<VEC, S>(xf, p.x);
        unpack<VEC, S>(gf, p.dy);
        unpack<VEC, S>(wf, p.w);
        ROW_UNROLL
        for (int j = 0; j < VEC; j++) {
            float xhat = (xf[j] - mu) * rs;
            float g = gf[j] * wf[j];
            xf[j] = (g - mean_g - xhat * mean_gx) * rs;
        }
        ln_store_dinp<S, VEC>(dinp, dropped, di, pack<VEC, S>(xf), gf, row, q, C, T);
    });
}

/* dw, db (C) +=, in two deterministic stages like cuda_column_sum_add: partial (chunks, SETS C)
 * fp32 holds per-chunk sums of dout * xhat (first C), dout (next C) and, with SETS 3, the
 * branch's gradient for the next bias (src: dropped or dinp, written by the dinp kernel). A
 * block takes 32 pieces of columns of a chunk of LN_DWB_ROWS rows (their mean and rstd staged
 * in shared memory); its LN_DWB_GROUPS warps each sum every LN_DWB_GROUPS-th row, and the
 * warps' sums are added in a fixed order, so each thread's chain of loads is short (8 pieces)
 * and the result the same on every run. The finishing kernel spreads the chunks over
 * LN_DWB_SPLIT warps per column tile and adds their sums in a fixed order too. */
#define LN_DWB_ROWS 32
#define LN_DWB_GROUPS 8
#define LN_DWB_SPLIT 32
static_assert(32 * LN_DWB_GROUPS >= 2 * LN_DWB_ROWS, "one mean/rstd load per thread");
template <typename S, int VEC, int SETS>
__global__ void __launch_bounds__(32 * LN_DWB_GROUPS)
    layernorm_dwb_partial_kernel(float *partial, const S *dout, const S *inp, const S *src,
                                 const float *mean, const float *rstd, int N, int C,
                                 const int32_t *lengths, int T, ln_drop dd) {
    cuda_key_load(dd);
    __shared__ float mu_s[LN_DWB_ROWS], rs_s[LN_DWB_ROWS];
    __shared__ bool pad_s[LN_DWB_ROWS];
    /* (set, groups, the block's 32 VEC columns): 16 KiB a set at VEC 8 */
    __shared__ float sums[SETS][LN_DWB_GROUPS][32 * VEC];
    int lane = threadIdx.x % 32, grp = threadIdx.x / 32;
    int q = blockIdx.x * 32 + lane; /* this thread's piece of columns */
    int n0 = blockIdx.y * LN_DWB_ROWS, rows = min(N - n0, LN_DWB_ROWS);
    if ((int)threadIdx.x < rows) {
        mu_s[threadIdx.x] = mean[n0 + threadIdx.x];
        pad_s[threadIdx.x] = ln_padded(lengths, T, (size_t)n0 + threadIdx.x);
    }
    if ((int)threadIdx.x >= LN_DWB_ROWS && (int)threadIdx.x - LN_DWB_ROWS < rows)
        rs_s[threadIdx.x - LN_DWB_ROWS] = rstd[n0 + threadIdx.x - LN_DWB_ROWS];
    __syncthreads();
    float acc[SETS][VEC];
    ROW_UNROLL
    for (int k = 0; k < SETS; k++) {
        ROW_UNROLL
        for (int j = 0; j < VEC; j++)
            acc[k][j] = 0.f;
    }
    if (q < C / VEC) {
        for (int r = grp; r < rows; r += LN_DWB_GROUPS) {
            if (pad_s[r]) continue;
            size_t at = (size_t)(n0 + r) * C + (size_t)q * VEC;
            float dy[VEC], xv[VEC], sv[VEC] = {};
            unpack<VEC, S>(dy, ln_dout_piece<S, VEC>(dout, dd, (size_t)n0 + r, q, C, T));
            unpack<VEC, S>(xv, ld_piece<VEC>(inp + at));
            if (SETS > 2) unpack<VEC, S>(sv, ld_piece<VEC>(src + at));
            ROW_UNROLL
            for (int j = 0; j < VEC; j++) {
                acc[0][j] += dy[j] * (xv[j] - mu_s[r]) * rs_s[r];
                acc[1][j] += dy[j];
                if (SETS > 2) acc[SETS - 1][j] += sv[j];
            }
        }
    }
    ROW_UNROLL
    for (int k = 0; k < SETS; k++) {
        ROW_UNROLL
        for (int j = 0; j < VEC; j++)
            sums[k][grp][lane * VEC + j] = acc[k][j];
    }
    __syncthreads();
    for (int t = threadIdx.x; t < 32 * VEC; t += blockDim.x) {
        int c = blockIdx.x * 32 * VEC + t;
        if (c >= C) break;
        for (int k = 0; k < SETS; k++) {
            float a = 0.f;
            for (int g = 0; g < LN_DWB_GROUPS; g++)
                a += sums[k][g][t];
            partial[((size_t)blockIdx.y * SETS + k) * C + c] = a;
        }
    }
}

/* dinp and the partial sums in one pass, for rows whose pieces all fit in the registers
 * (C / VEC <= LN_CACHE x ln_threads): block x takes rows [R x, R x + R), R = LN_FUSED_ROWS, in
 * LN_FUSED_GROUPS groups of ln_threads threads, group g rows [g R / G, (g + 1) R / G) of them
 * one after the other (the dinp kernel's arithmetic per row, a row's sums over the threads of
 * its group in block_sum's order: dinp is what a block of the group's size gives). Each thread
 * keeps, for the columns of its K cached pieces (K: 1 or LN_CACHE, what the row needs), the
 * running sums of dout * xhat, dout and (SETS 3) the branch's gradient over its group's rows;
 * the groups' sums are added in group order and written to partial (chunks, SETS C) as the
 * partial kernel does, so one finish follows. A launch and a second read of dout and inp fewer
 * than dinp + partial, and the extra's dropouts and bias sums ride in the same pass. The rows
 * of a group are sequential: its threads' chains of global accesses (about 4 per row, the
 * rows' mean, rstd and padding staged once in shared memory) are what a GPU waits on, so the
 * groups split the rows (a chain of about 40 on the model's rows instead of 140, under the
 * kernel's DRAM time: tests/bench/gpu_model.c) while the chunks, and so the finish, stay. */
#define LN_FUSED_ROWS 16 /* short: the rows of a group are sequential, and more blocks hide it */
#define LN_FUSED_GROUPS 2
#define LN_GROUP_MAX 128 /* ln_threads */
static_assert(LN_FUSED_ROWS % LN_FUSED_GROUPS == 0, "whole rows per group");
static_assert(3 * LN_FUSED_ROWS <= 32 * LN_FUSED_GROUPS, "one staging load per thread");

/* The sum of v over the threads of this thread's group (the block's warps split evenly into
 * LN_FUSED_GROUPS groups), every group at once: all threads of the block call it. block_sum's
 * arithmetic on the group's warps, in the same order. red: 32 floats. */
__device__ __forceinline__ float ln_group_sum(float v, float *red) {
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    int per = (int)blockDim.x / 32 / LN_FUSED_GROUPS, first = warp / per * per;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    return warp_sum(lane < per ? red[first + lane] : 0.f);
}

template <typename S, int VEC, int SETS, int K>
__global__ void __launch_bounds__(LN_FUSED_GROUPS *LN_GROUP_MAX)
    layernorm_backward_fused_kernel(S *dinp, S *dropped, float *partial, const S *dout,
                                    const S *inp, const S *w, const float *mean, const float *rstd,
                                    int N, int C, const int32_t *lengths, int T, ln_drop dd,
                                    ln_drop di) {
    constexpr int G = LN_FUSED_GROUPS, GR = LN_FUSED_ROWS / G, BS = G * LN_GROUP_MAX;
    cuda_key_load(dd);
    cuda_key_load(di);
    __shared__ float red[32];
    __shared__ float mu_s[LN_FUSED_ROWS], rs_s[LN_FUSED_ROWS];
    __shared__ bool pad_s[LN_FUSED_ROWS];
    /* the next bias's sums in shared memory, each thread's own columns (element j of its k-th
     * piece at (k VEC + j) BS + threadIdx.x: no bank conflicts; BS a constant, so that the
     * offsets are too): in registers they would cost K VEC more a thread */
    __shared__ float bsum[SETS > 2 ? K * VEC * BS : 1];
    /* the first two sums of groups 1.. for one cached piece, handed to group 0 */
    __shared__ float comb[(G - 1) * 2 * VEC * LN_GROUP_MAX];
    int gt = (int)blockDim.x / G, g = (int)threadIdx.x / gt, t = (int)threadIdx.x % gt;
    int nq = C / VEC, n0 = blockIdx.x * LN_FUSED_ROWS, rows = min(N - n0, LN_FUSED_ROWS);
    if ((int)threadIdx.x < rows) mu_s[threadIdx.x] = mean[n0 + threadIdx.x];
    int i = (int)threadIdx.x - LN_FUSED_ROWS;
    if (i >= 0 && i < rows) rs_s[i] = rstd[n0 + i];
    i -= LN_FUSED_ROWS;
    if (i >= 0 && i < rows) pad_s[i] = ln_padded(lengths, T, (size_t)n0 + i);
    float acc[2][K][VEC];
    raw16 wc[K] = {};
    ROW_UNROLL
    for (int k = 0; k < K; k++) {
        int q = t + k * gt;
        if (q < nq) wc[k] = ld_piece<VEC>(w + (size_t)q * VEC);
        ROW_UNROLL
        for (int j = 0; j < VEC; j++) {
            acc[0][k][j] = acc[1][k][j] = 0.f;
            if (SETS > 2) bsum[(k * VEC + j) * BS + threadIdx.x] = 0.f;
        }
    }
    __syncthreads();
    /* every group runs GR rows, real or not: the group sums' barriers are the block's */
    for (int r = g * GR; r < (g + 1) * GR; r++) {
        size_t n = (size_t)n0 + r;
        bool live = r < rows && !pad_s[r];
        float mu = live ? mu_s[r] : 0.f, rs = live ? rs_s[r] : 0.f, sum_g = 0.f, sum_gx = 0.f;
        raw16 xc[K] = {}, gc[K] = {};
        ROW_UNROLL
        for (int k = 0; k < K; k++) {
            int q = t + k * gt;
            if (!live || q >= nq) continue;
            xc[k] = ld_piece<VEC>(inp + n * C + (size_t)q * VEC);
            gc[k] = ln_dout_piece<S, VEC>(dout, dd, n, q, C, T);
            float xf[VEC], gf[VEC], wf[VEC];
            unpack<VEC, S>(xf, xc[k]);
            unpack<VEC, S>(gf, gc[k]);
            unpack<VEC, S>(wf, wc[k]);
            ROW_UNROLL
            for (int j = 0; j < VEC; j++) {
                float xhat = (xf[j] - mu) * rs, gw = gf[j] * wf[j];
                sum_g += gw;
                sum_gx += gw * xhat;
                acc[0][k][j] += gf[j] * xhat;
                acc[1][k][j] += gf[j];
            }
        }
        float mean_g = ln_group_sum(sum_g, red) / C;
        float mean_gx = ln_group_sum(sum_gx, red) / C;
        if (r >= rows) continue;
        if (!live) { /* a padded row: dout 0, dinp 0, no dw, db share */
            const float zero[VEC] = {};
            for (int q = t; q < nq; q += gt) {
                st_piece<VEC>(dinp + n * C + (size_t)q * VEC, pack<VEC, S>(zero));
                if (dropped) st_piece<VEC>(dropped + n * C + (size_t)q * VEC, pack<VEC, S>(zero));
            }
            continue;
        }
        ROW_UNROLL
        for (int k = 0; k < K; k++) {
            int q = t + k * gt;
            if (q >= nq) continue;
            float xf[VEC], gf[VEC], wf[VEC];
            unpack<VEC, S>(xf, xc[k]);
            unpack<VEC, S>(gf, gc[k]);
            unpack<VEC, S>(wf, wc[k]);
            ROW_UNROLL
            for (int j = 0; j < VEC; j++) {
                float xhat = (xf[j] - mu) * rs;
                xf[j] = (gf[j] * wf[j] - mean_g - xhat * mean_gx) * rs;
            }
            ln_store_dinp<S, VEC>(dinp, dropped, di, pack<VEC, S>(xf), gf, n, q, C, T);
            if (SETS > 2) {
                ROW_UNROLL
                for (int j = 0; j < VEC; j++)
                    bsum[(k * VEC + j) * BS + threadIdx.x] += gf[j];
            }
        }
    }
    /* the groups' sums, added in group order by group 0, which writes the chunk's partials */
    ROW_UNROLL
    for (int k = 0; k < K; k++) {
        int q = t + k * gt;
        __syncthreads(); /* comb of the previous piece read, bsum written */
        if (g > 0 && q < nq) {
            ROW_UNROLL
            for (int j = 0; j < VEC; j++) {
                comb[(((g - 1) * 2 + 0) * VEC + j) * LN_GROUP_MAX + t] = acc[0][k][j];
                comb[(((g - 1) * 2 + 1) * VEC + j) * LN_GROUP_MAX + t] = acc[1][k][j];
            }
        }
        __syncthreads();
        if (g > 0 || q >= nq) continue;
        float tot[SETS][VEC < 4 ? 4 : VEC]; /* whole 16-byte pieces for pack<4> */
        ROW_UNROLL
        for (int j = 0; j < VEC; j++) {
            tot[0][j] = acc[0][k][j];
            tot[1][j] = acc[1][k][j];
            if (SETS > 2) tot[SETS - 1][j] = bsum[(k * VEC + j) * BS + t];
            for (int h = 1; h < G; h++) {
                tot[0][j] += comb[(((h - 1) * 2 + 0) * VEC + j) * LN_GROUP_MAX + t];
                tot[1][j] += comb[(((h - 1) * 2 + 1) * VEC + j) * LN_GROUP_MAX + t];
                if (SETS > 2) tot[SETS - 1][j] += bsum[(k * VEC + j) * BS + h * gt + t];
            }
        }
        ROW_UNROLL
        for (int s = 0; s < SETS; s++) {
            float *p = partial + ((size_t)blockIdx.x * SETS + s) * C + (size_t)q * VEC;
            /* 16-byte stores where VEC allows (p 16-byte aligned: C a multiple of VEC) */
            ROW_UNROLL
            for (int j = 0; j < VEC; j += 4) {
                if (VEC % 4 == 0)
                    st_piece<4>(p + j, pack<4, float>(&tot[s][j]));
                else
                    p[j] = tot[s][j]; /* VEC 1: j 0 only */
            }
        }
    }
}

/* block: 32 columns x LN_DWB_SPLIT warps; warp y sums chunks y, y + SPLIT, ...; dbias NULL:
 * the partials hold 2 sets, else 3 */
template <typename S>
__global__ void layernorm_dwb_finish_kernel(S *dw, S *db, S *dbias, const float *partial,
                                            int chunks, int C) {
    __shared__ float sums[3][LN_DWB_SPLIT][32];
    int sets = dbias ? 3 : 2;
    int x = threadIdx.x % 32, y = threadIdx.x / 32;
    int c = blockIdx.x * 32 + x;
    float a[3] = {0.f, 0.f, 0.f};
    if (c < C) {
        for (int k = y; k < chunks; k += LN_DWB_SPLIT)
            for (int s = 0; s < sets; s++)
                a[s] += partial[((size_t)k * sets + s) * C + c];
    }
    for (int s = 0; s < 3; s++)
        sums[s][y][x] = a[s];
    __syncthreads();
    if (y || c >= C) return;
    for (int j = 1; j < LN_DWB_SPLIT; j++)
        for (int s = 0; s < 3; s++)
            a[s] += sums[s][j][x];
    st(dw + c, ld(dw + c) + a[0]);
    st(db + c, ld(db + c) + a[1]);
    if (dbias) st(dbias + c, ld(dbias + c) + a[2]);
}

template <typename S, bool RES>
static void layernorm_forward_launch(S *out, float *mean, float *rstd, const S *inp, const S *w,
                                     const S *b, int N, int C, float eps, const int32_t *lengths,
                                     int T, const ln_residual<S> &ra) {
    constexpr int VEC = row_vec<S>::n;
    if (row_pieces_ok<S>((size_t)C, out, inp, w, b) &&
        row_pieces_ok<S>((size_t)C, ra.r, ra.res, ra.bias))
        XLMC_LAUNCH((layernorm_forward_kernel<S, VEC, RES>), N, ln_threads(C / VEC), 0,
                    g_cuda.stream)(out, mean, rstd, inp, w, b, C, eps, lengths, T, ra);
    else
        XLMC_LAUNCH((layernorm_forward_kernel<S, 1, RES>), N, ln_threads(C), 0,
                    g_cuda.stream)(out, mean, rstd, inp, w, b, C, eps, lengths, T, ra);
    cudaLaunchCheck();
}

template <typename S>
static void cuda_layernorm_forward(void *out, float *mean, float *rstd, const void *inp,
                                   const void *w, const void *b, int N, int C, float eps,
                                   const int32_t *lengths, int T) {
    if (!N) return;
    ln_residual<S> none = {};
    layernorm_forward_launch<S, false>((S *)out, mean, rstd, (const S *)inp, (const S *)w,
                                       (const S *)b, N, C, eps, lengths, T, none);
}

/* dropout_residual then layernorm_forward in one pass over the rows: r is read once, for the
 * statistics, from registers (rows up to LN_CACHE pieces per thread) */
template <typename S>
static void cuda_residual_layernorm_forward(void *out, float *mean, float *rstd, void *r,
                                            const void *res, const void *x, const void *bias,
                                            const void *w, const void *b, int B, int T, int C,
                                            float eps, const int32_t *lengths, float p,
                                            const struct dropout_key *key) {
    int N = B * T;
    if (!N) return;
    int drop = p > 0.f;
    ln_residual<S> ra = {(S *)r,
                         (const S *)res,
                         (const S *)bias,
                         drop ? 1.f / (1.f - p) : 1.f,
                         drop ? dropout_threshold(p) : 0u,
                         0,
                         0,
                         0,
                         drop ? key->tensor : 0,
                         drop ? cuda_vars_for(key, 0, 0.f) : NULL};
    layernorm_forward_launch<S, true>((S *)out, mean, rstd, (const S *)x, (const S *)w,
                                      (const S *)b, N, C, eps, lengths, T, ra);
}

/* the kernels of one backward; SETS 3: the next bias's column sums too */
template <typename S, int VEC, int SETS>
static void layernorm_backward_launch(S *dinp, S *dw, S *db, const S *dout, const S *inp,
                                      const S *w, const float *mean, const float *rstd, int N,
                                      int C, const int32_t *lengths, int T, S *dropped, S *dbias,
                                      ln_drop dd, ln_drop di) {
    unsigned threads = ln_threads(C / VEC);
    bool fused = C / VEC <= LN_CACHE * (int)threads; /* the row in registers: one pass */
    int rows = fused ? LN_FUSED_ROWS : LN_DWB_ROWS, chunks = (N + rows - 1) / rows;
    float *partial = cuda_scratch((size_t)chunks * SETS * C);
    if (fused) { /* one piece a thread in registers where the row allows: fewer registers */
        unsigned block = LN_FUSED_GROUPS * threads;
        if (C / VEC <= (int)threads)
            XLMC_LAUNCH((layernorm_backward_fused_kernel<S, VEC, SETS, 1>), chunks, block, 0,
                        g_cuda.stream)(dinp, dropped, partial, dout, inp, w, mean, rstd, N, C,
                                       lengths, T, dd, di);
        else
            XLMC_LAUNCH((layernorm_backward_fused_kernel<S, VEC, SETS, LN_CACHE>), chunks, block, 0,
                        g_cuda.stream)(dinp, dropped, partial, dout, inp, w, mean, rstd, N, C,
                                       lengths, T, dd, di);
        cudaLaunchCheck();
    } else {
        XLMC_LAUNCH((layernorm_backward_dinp_kernel<S, VEC>), N, threads, 0,
                    g_cuda.stream)(dinp, dropped, dout, inp, w, mean, rstd, C, lengths, T, dd, di);
        cudaLaunchCheck();
        dim3 grid(cuda_blocks((size_t)(C / VEC), 32), chunks);
        XLMC_LAUNCH((layernorm_dwb_partial_kernel<S, VEC, SETS>), grid, 32 * LN_DWB_GROUPS, 0,
                    g_cuda.stream)(partial, dout, inp, dropped ? dropped : dinp, mean, rstd, N, C,
                                   lengths, T, dd);
        cudaLaunchCheck();
    }
    XLMC_LAUNCH(layernorm_dwb_finish_kernel<S>, cuda_blocks(C, 32), 32 * LN_DWB_SPLIT, 0,
                g_cuda.stream)(dw, db, SETS > 2 ? dbias : NULL, partial, chunks, C);
    cudaLaunchCheck();
}

template <typename S, int VEC>
static void layernorm_backward_sets(S *dinp, S *dw, S *db, const S *dout, const S *inp, const S *w,
                                    const float *mean, const float *rstd, int N, int C,
                                    const int32_t *lengths, int T,
                                    const struct ln_backward_extra *x) {
    float p = x ? x->p : 0.f;
    const struct dropout_key *kd = x ? x->dout_key : NULL, *ki = x ? x->dinp_key : NULL;
    if (p > 0.f && kd && ki &&
        (kd->seed != ki->seed || kd->step != ki->step || kd->row0 != ki->row0)) {
        fprintf(stderr, "xlmc: layernorm_backward: dout_key and dinp_key differ in more than "
                        "their tensor\n");
        exit(1);
    }
    ln_drop dd = ln_drop_of(p, kd), di = ln_drop_of(p, ki);
    S *dropped = x ? (S *)x->dinp_dropped : NULL, *dbias = x ? (S *)x->dbias_next : NULL;
    if (dbias)
        layernorm_backward_launch<S, VEC, 3>(dinp, dw, db, dout, inp, w, mean, rstd, N, C, lengths,
                                             T, dropped, dbias, dd, di);
    else
        layernorm_backward_launch<S, VEC, 2>(dinp, dw, db, dout, inp, w, mean, rstd, N, C, lengths,
                                             T, dropped, NULL, dd, di);
}

template <typename S>
static void cuda_layernorm_backward(void *dinp, void *dw, void *db, const void *dout,
                                    const void *inp, const void *w, const float *mean,
                                    const float *rstd, int N, int C, const int32_t *lengths, int T,
                                    const struct ln_backward_extra *extra) {
    if (!N) return;
    const void *dropped = extra ? extra->dinp_dropped : NULL;
    if (row_pieces_ok<S>((size_t)C, dinp, dout, inp, w) && row_pieces_ok<S>((size_t)C, dropped))
        layernorm_backward_sets<S, row_vec<S>::n>((S *)dinp, (S *)dw, (S *)db, (const S *)dout,
                                                  (const S *)inp, (const S *)w, mean, rstd, N, C,
                                                  lengths, T, extra);
    else
        layernorm_backward_sets<S, 1>((S *)dinp, (S *)dw, (S *)db, (const S *)dout, (const S *)inp,
                                      (const S *)w, mean, rstd, N, C, lengths, T, extra);
}

CUDA_EXPORT_OP(layernorm_forward)
CUDA_EXPORT_OP(residual_layernorm_forward)
CUDA_EXPORT_OP(layernorm_backward)
