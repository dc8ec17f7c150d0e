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
    uint64_t seed, step;
    uint32_t row0, tensor;
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

/* the pieces the input gradient reads at one position of a row */
struct ln_back_pieces {
    raw16 x, dy, w;
};

// one block per row: dinp (N,C) = d LayerNorm / d inp; a padded row's dout counts as 0
template <typename S, int VEC>
__global__ void layernorm_backward_dinp_kernel(S *dinp, const S *dout, const S *inp, const S *w,
                                               const float *mean, const float *rstd, int C,
                                               const int32_t *lengths, int T) {
    __shared__ float red[32];
    size_t row = blockIdx.x;
    if (ln_padded(lengths, T, row)) { /* the whole block leaves: no block_sum waits for it */
        const float zero[VEC] = {};
        for (int q = threadIdx.x; q < C / VEC; q += blockDim.x)
            st_piece<VEC>(dinp + row * C + (size_t)q * VEC, pack<VEC, S>(zero));
        return;
    }
    const S *x = inp + row * C, *dy = dout + row * C;
    float mu = mean[row], rs = rstd[row];
    auto load = [&](int q) {
        size_t at = (size_t)q * VEC;
        return ln_back_pieces{ld_piece<VEC>(x + at), ld_piece<VEC>(dy + at), ld_piece<VEC>(w + at)};
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
        st_piece<VEC>(dinp + row * C + (size_t)q * VEC, pack<VEC, S>(xf));
    });
}

/* dw, db (C) +=, in two deterministic stages like cuda_column_sum_add: partial (chunks, 2C)
 * fp32 holds per-chunk sums of dout * xhat (first C) and dout (next C). A block takes 32
 * pieces of columns of a chunk of LN_DWB_ROWS rows (their mean and rstd staged in shared
 * memory); its LN_DWB_GROUPS warps each sum every LN_DWB_GROUPS-th row, and the warps' sums
 * are added in a fixed order, so each thread's chain of loads is short (8 pieces) and the
 * result the same on every run. The finishing kernel spreads the chunks over LN_DWB_SPLIT
 * warps per column tile and adds their sums in a fixed order too. */
#define LN_DWB_ROWS 32
#define LN_DWB_GROUPS 8
#define LN_DWB_SPLIT 32
static_assert(32 * LN_DWB_GROUPS >= 2 * LN_DWB_ROWS, "one mean/rstd load per thread");
template <typename S, int VEC>
__global__ void __launch_bounds__(32 * LN_DWB_GROUPS)
    layernorm_dwb_partial_kernel(float *partial, const S *dout, const S *inp, const float *mean,
                                 const float *rstd, int N, int C, const int32_t *lengths, int T) {
    __shared__ float mu_s[LN_DWB_ROWS], rs_s[LN_DWB_ROWS];
    __shared__ bool pad_s[LN_DWB_ROWS];
    /* (groups, the block's 32 VEC columns): 16 KiB at VEC 8 */
    __shared__ float sw[LN_DWB_GROUPS][32 * VEC], sb[LN_DWB_GROUPS][32 * VEC];
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
    float aw[VEC], ab[VEC];
    ROW_UNROLL
    for (int j = 0; j < VEC; j++)
        aw[j] = ab[j] = 0.f;
    if (q < C / VEC) {
        for (int r = grp; r < rows; r += LN_DWB_GROUPS) {
            if (pad_s[r]) continue;
            size_t at = (size_t)(n0 + r) * C + (size_t)q * VEC;
            float dy[VEC], xv[VEC];
            unpack<VEC, S>(dy, ld_piece<VEC>(dout + at));
            unpack<VEC, S>(xv, ld_piece<VEC>(inp + at));
            ROW_UNROLL
            for (int j = 0; j < VEC; j++) {
                aw[j] += dy[j] * (xv[j] - mu_s[r]) * rs_s[r];
                ab[j] += dy[j];
            }
        }
    }
    ROW_UNROLL
    for (int j = 0; j < VEC; j++) {
        sw[grp][lane * VEC + j] = aw[j];
        sb[grp][lane * VEC + j] = ab[j];
    }
    __syncthreads();
    for (int t = threadIdx.x; t < 32 * VEC; t += blockDim.x) {
        int c = blockIdx.x * 32 * VEC + t;
        if (c >= C) break;
        float w = 0.f, b = 0.f;
        for (int k = 0; k < LN_DWB_GROUPS; k++) {
            w += sw[k][t];
            b += sb[k][t];
        }
        partial[(size_t)blockIdx.y * 2 * C + c] = w;
        partial[(size_t)blockIdx.y * 2 * C + C + c] = b;
    }
}

/* dinp and the dw, db partial sums in one pass, for rows whose pieces all fit in the
 * registers (C / VEC <= LN_CACHE x blockDim.x): block y takes rows [R y, R y + R), R =
 * LN_FUSED_ROWS, one after the other (the dinp kernel's arithmetic per row), and each thread keeps,
 * for the columns of its cached pieces, the running sums of dout * xhat and dout over the block's
 * rows in registers; it writes them to partial (chunks, 2C) as the partial kernel does, so one
 * finish follows. A launch and a second read of dout and inp fewer than dinp + partial. */
#define LN_FUSED_ROWS 16 /* short: the rows of a block are sequential, and more blocks hide it */
template <typename S, int VEC>
__global__ void __launch_bounds__(128)
    layernorm_backward_fused_kernel(S *dinp, float *partial, const S *dout, const S *inp,
                                    const S *w, const float *mean, const float *rstd, int N, int C,
                                    const int32_t *lengths, int T) {
    __shared__ float red[32];
    int nq = C / VEC, n0 = blockIdx.x * LN_FUSED_ROWS, n1 = min(N, n0 + LN_FUSED_ROWS);
    float aw[LN_CACHE][VEC], ab[LN_CACHE][VEC];
    raw16 wc[LN_CACHE] = {};
    ROW_UNROLL
    for (int k = 0; k < LN_CACHE; k++) {
        int q = threadIdx.x + k * blockDim.x;
        if (q < nq) wc[k] = ld_piece<VEC>(w + (size_t)q * VEC);
        ROW_UNROLL
        for (int j = 0; j < VEC; j++)
            aw[k][j] = ab[k][j] = 0.f;
    }
    for (int n = n0; n < n1; n++) {
        S *di = dinp + (size_t)n * C;
        const S *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
        if (ln_padded(lengths, T, n)) { /* block-uniform: dout 0, dinp 0, no dw, db share */
            const float zero[VEC] = {};
            for (int q = threadIdx.x; q < nq; q += blockDim.x)
                st_piece<VEC>(di + (size_t)q * VEC, pack<VEC, S>(zero));
            continue;
        }
        float mu = mean[n], rs = rstd[n], sum_g = 0.f, sum_gx = 0.f;
        raw16 xc[LN_CACHE] = {}, gc[LN_CACHE] = {};
        ROW_UNROLL
        for (int k = 0; k < LN_CACHE; k++) {
            int q = threadIdx.x + k * blockDim.x;
            if (q >= nq) continue;
            xc[k] = ld_piece<VEC>(x + (size_t)q * VEC);
            gc[k] = ld_piece<VEC>(dy + (size_t)q * VEC);
            float xf[VEC], gf[VEC], wf[VEC];
            unpack<VEC, S>(xf, xc[k]);
            unpack<VEC, S>(gf, gc[k]);
            unpack<VEC, S>(wf, wc[k]);
            ROW_UNROLL
            for (int j = 0; j < VEC; j++) {
                float xhat = (xf[j] - mu) * rs, g = gf[j] * wf[j];
                sum_g += g;
                sum_gx += g * xhat;
                aw[k][j] += gf[j] * xhat;
                ab[k][j] += gf[j];
            }
        }
        float mean_g = block_sum(sum_g, red) / C;
        float mean_gx = block_sum(sum_gx, red) / C;
        ROW_UNROLL
        for (int k = 0; k < LN_CACHE; k++) {
            int q = threadIdx.x + k * blockDim.x;
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
            st_piece<VEC>(di + (size_t)q * VEC, pack<VEC, S>(xf));
        }
    }
    float *pw = partial + (size_t)blockIdx.x * 2 * C, *pb = pw + C;
    ROW_UNROLL
    for (int k = 0; k < LN_CACHE; k++) {
        int q = threadIdx.x + k * blockDim.x;
        if (q >= nq) continue;
        ROW_UNROLL
        for (int j = 0; j < VEC; j++) {
            pw[q * VEC + j] = aw[k][j];
            pb[q * VEC + j] = ab[k][j];
        }
    }
}

/* block: 32 columns x LN_DWB_SPLIT warps; warp y sums chunks y, y + SPLIT, ... */
template <typename S>
__global__ void layernorm_dwb_finish_kernel(S *dw, S *db, const float *partial, int chunks, int C) {
    __shared__ float sw[LN_DWB_SPLIT][32], sb[LN_DWB_SPLIT][32];
    int x = threadIdx.x % 32, y = threadIdx.x / 32;
    int c = blockIdx.x * 32 + x;
    float aw = 0.f, ab = 0.f;
    if (c < C) {
        for (int k = y; k < chunks; k += LN_DWB_SPLIT) {
            aw += partial[(size_t)k * 2 * C + c];
            ab += partial[(size_t)k * 2 * C + C + c];
        }
    }
    sw[y][x] = aw;
    sb[y][x] = ab;
    __syncthreads();
    if (y || c >= C) return;
    for (int j = 1; j < LN_DWB_SPLIT; j++) {
        aw += sw[j][x];
        ab += sb[j][x];
    }
    st(dw + c, ld(dw + c) + aw);
    st(db + c, ld(db + c) + ab);
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
                         drop ? key->seed : 0,
                         drop ? key->step : 0,
                         drop ? key->row0 : 0,
                         drop ? key->tensor : 0};
    layernorm_forward_launch<S, true>((S *)out, mean, rstd, (const S *)x, (const S *)w,
                                      (const S *)b, N, C, eps, lengths, T, ra);
}

template <typename S, int VEC>
static void layernorm_backward_launch(S *dinp, S *dw, S *db, const S *dout, const S *inp,
                                      const S *w, const float *mean, const float *rstd, int N,
                                      int C, const int32_t *lengths, int T) {
    unsigned threads = ln_threads(C / VEC);
    bool fused = C / VEC <= LN_CACHE * (int)threads; /* the row in registers: one pass */
    int rows = fused ? LN_FUSED_ROWS : LN_DWB_ROWS, chunks = (N + rows - 1) / rows;
    float *partial = cuda_scratch((size_t)chunks * 2 * C);
    if (fused) {
        XLMC_LAUNCH((layernorm_backward_fused_kernel<S, VEC>), chunks, threads, 0,
                    g_cuda.stream)(dinp, partial, dout, inp, w, mean, rstd, N, C, lengths, T);
        cudaLaunchCheck();
    } else {
        XLMC_LAUNCH((layernorm_backward_dinp_kernel<S, VEC>), N, threads, 0,
                    g_cuda.stream)(dinp, dout, inp, w, mean, rstd, C, lengths, T);
        cudaLaunchCheck();
        dim3 grid(cuda_blocks((size_t)(C / VEC), 32), chunks);
        XLMC_LAUNCH((layernorm_dwb_partial_kernel<S, VEC>), grid, 32 * LN_DWB_GROUPS, 0,
                    g_cuda.stream)(partial, dout, inp, mean, rstd, N, C, lengths, T);
        cudaLaunchCheck();
    }
    XLMC_LAUNCH(layernorm_dwb_finish_kernel<S>, cuda_blocks(C, 32), 32 * LN_DWB_SPLIT, 0,
                g_cuda.stream)(dw, db, partial, chunks, C);
    cudaLaunchCheck();
}

template <typename S>
static void cuda_layernorm_backward(void *dinp, void *dw, void *db, const void *dout,
                                    const void *inp, const void *w, const float *mean,
                                    const float *rstd, int N, int C, const int32_t *lengths,
                                    int T) {
    if (!N) return;
    if (row_pieces_ok<S>((size_t)C, dinp, dout, inp, w))
        layernorm_backward_launch<S, row_vec<S>::n>((S *)dinp, (S *)dw, (S *)db, (const S *)dout,
                                                    (const S *)inp, (const S *)w, mean, rstd, N, C,
                                                    lengths, T);
    else
        layernorm_backward_launch<S, 1>((S *)dinp, (S *)dw, (S *)db, (const S *)dout,
                                        (const S *)inp, (const S *)w, mean, rstd, N, C, lengths, T);
}

CUDA_EXPORT_OP(layernorm_forward)
CUDA_EXPORT_OP(residual_layernorm_forward)
CUDA_EXPORT_OP(layernorm_backward)
