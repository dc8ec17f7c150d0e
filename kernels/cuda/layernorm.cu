/* layernorm.cu — LayerNorm over the last dim with fp32 statistics, forward and backward. */
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/wide.cuh"

/* threads per row: whole warps covering a row's n accesses, at most 128 (no idle warps for
 * short rows) */
static unsigned ln_threads(int n) {
    unsigned warps = (unsigned)(n + 31) / 32;
    return 32 * (warps < 4 ? (warps ? warps : 1) : 4);
}

/* Row kernels: columns [0, nw * W) in 16-byte accesses of W = wide<S>::n elements (nw = C / W
 * when the host found C and every pointer aligned, else 0), the rest element by element;
 * thread t takes accesses t, t + blockDim.x, ... in every pass. */

// one block per row: out (N,C), mean/rstd (N), inp (N,C), w/b (C)
template <typename S>
__global__ void layernorm_forward_kernel(S *out, float *mean, float *rstd, const S *inp, const S *w,
                                         const S *b, int C, float eps, int wide_rows) {
    constexpr int W = wide<S>::n;
    __shared__ float red[32];
    const S *x = inp + (size_t)blockIdx.x * C;
    S *y = out + (size_t)blockIdx.x * C;
    int nw = wide_rows ? C / W : 0, tail = nw * W;
    float s = 0.f;
    for (int k = threadIdx.x; k < nw; k += blockDim.x) {
        float f[W];
        ldw(f, x + k * W);
        for (int j = 0; j < W; j++)
            s += f[j];
    }
    for (int c = tail + threadIdx.x; c < C; c += blockDim.x)
        s += ld(x + c);
    float mu = block_sum(s, red) / C;
    /* two passes: the centred sum of squares does not cancel like E[x^2] - E[x]^2 */
    float ss = 0.f;
    for (int k = threadIdx.x; k < nw; k += blockDim.x) {
        float f[W];
        ldw(f, x + k * W);
        for (int j = 0; j < W; j++) {
            float d = f[j] - mu;
            ss += d * d;
        }
    }
    for (int c = tail + threadIdx.x; c < C; c += blockDim.x) {
        float d = ld(x + c) - mu;
        ss += d * d;
    }
    float rs = rsqrtf(block_sum(ss, red) / C + eps);
    for (int k = threadIdx.x; k < nw; k += blockDim.x) {
        float f[W], g[W], h[W];
        ldw(f, x + k * W);
        ldw(g, w + k * W);
        ldw(h, b + k * W);
        for (int j = 0; j < W; j++)
            f[j] = (f[j] - mu) * rs * g[j] + h[j];
        stw(y + k * W, f);
    }
    for (int c = tail + threadIdx.x; c < C; c += blockDim.x)
        st(y + c, (ld(x + c) - mu) * rs * ld(w + c) + ld(b + c));
    if (threadIdx.x == 0) {
        mean[blockIdx.x] = mu;
        rstd[blockIdx.x] = rs;
    }
}

// one block per row: dinp (N,C) = d LayerNorm / d inp
template <typename S>
__global__ void layernorm_backward_dinp_kernel(S *dinp, const S *dout, const S *inp, const S *w,
                                               const float *mean, const float *rstd, int C,
                                               int wide_rows) {
    constexpr int W = wide<S>::n;
    __shared__ float red[32];
    size_t row = blockIdx.x;
    const S *x = inp + row * C, *dy = dout + row * C;
    S *dx = dinp + row * C;
    int nw = wide_rows ? C / W : 0, tail = nw * W;
    float mu = mean[row], rs = rstd[row];
    float sum_g = 0.f, sum_gx = 0.f;
    for (int k = threadIdx.x; k < nw; k += blockDim.x) {
        float f[W], g[W], h[W];
        ldw(g, dy + k * W);
        ldw(h, w + k * W);
        ldw(f, x + k * W);
        for (int j = 0; j < W; j++) {
            float gj = g[j] * h[j];
            sum_g += gj;
            sum_gx += gj * (f[j] - mu) * rs;
        }
    }
    for (int c = tail + threadIdx.x; c < C; c += blockDim.x) {
        float g = ld(dy + c) * ld(w + c);
        sum_g += g;
        sum_gx += g * (ld(x + c) - mu) * rs;
    }
    float mean_g = block_sum(sum_g, red) / C;
    float mean_gx = block_sum(sum_gx, red) / C;
    for (int k = threadIdx.x; k < nw; k += blockDim.x) {
        float f[W], g[W], h[W];
        ldw(f, x + k * W);
        ldw(g, dy + k * W);
        ldw(h, w + k * W);
        for (int j = 0; j < W; j++) {
            float xhat = (f[j] - mu) * rs;
            f[j] = (g[j] * h[j] - mean_g - xhat * mean_gx) * rs;
        }
        stw(dx + k * W, f);
    }
    for (int c = tail + threadIdx.x; c < C; c += blockDim.x) {
        float xhat = (ld(x + c) - mu) * rs;
        float g = ld(dy + c) * ld(w + c);
        st(dx + c, (g - mean_g - xhat * mean_gx) * rs);
    }
}

/* dw, db (C) +=, in two deterministic stages like cuda_column_sum_add: partial (chunks, 2C)
 * fp32 holds per-chunk sums of dout * xhat (first C) and dout (next C). Short chunks of
 * LN_DWB_ROWS rows (their mean and rstd staged in shared memory) keep each thread's chain of
 * dependent loads short; the finishing kernel spreads the chunks over LN_DWB_SPLIT warps per
 * column tile and adds their sums in a fixed order, so the result is the same on every run. */
#define LN_DWB_ROWS 32
#define LN_DWB_SPLIT 32
static_assert(COLSUM_THREADS >= 2 * LN_DWB_ROWS, "one mean/rstd load per thread");
template <typename S>
__global__ void layernorm_dwb_partial_kernel(float *partial, const S *dout, const S *inp,
                                             const float *mean, const float *rstd, int N, int C) {
    __shared__ float mu_s[LN_DWB_ROWS], rs_s[LN_DWB_ROWS];
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    int n0 = blockIdx.y * LN_DWB_ROWS, rows = min(N - n0, LN_DWB_ROWS);
    /* blockDim.x (COLSUM_THREADS) >= 2 * LN_DWB_ROWS: one load per thread */
    if ((int)threadIdx.x < rows) mu_s[threadIdx.x] = mean[n0 + threadIdx.x];
    if ((int)threadIdx.x >= LN_DWB_ROWS && (int)threadIdx.x - LN_DWB_ROWS < rows)
        rs_s[threadIdx.x - LN_DWB_ROWS] = rstd[n0 + threadIdx.x - LN_DWB_ROWS];
    __syncthreads();
    if (c >= C) return;
    float aw = 0.f, ab = 0.f;
    for (int r = 0; r < rows; r++) {
        size_t at = (size_t)(n0 + r) * C + c;
        float dy = ld(dout + at);
        aw += dy * (ld(inp + at) - mu_s[r]) * rs_s[r];
        ab += dy;
    }
    partial[(size_t)blockIdx.y * 2 * C + c] = aw;
    partial[(size_t)blockIdx.y * 2 * C + C + c] = ab;
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

template <typename S>
static void cuda_layernorm_forward(void *out, float *mean, float *rstd, const void *inp,
                                   const void *w, const void *b, int N, int C, float eps) {
    if (!N) return;
    int wide_rows = wide_ok<S>((size_t)C, out, inp, w, b);
    XLMC_LAUNCH(layernorm_forward_kernel<S>, N, ln_threads(wide_rows ? C / wide<S>::n : C), 0,
                g_cuda.stream)((S *)out, mean, rstd, (const S *)inp, (const S *)w, (const S *)b, C,
                               eps, wide_rows);
    cudaLaunchCheck();
}

template <typename S>
static void cuda_layernorm_backward(void *dinp, void *dw, void *db, const void *dout,
                                    const void *inp, const void *w, const float *mean,
                                    const float *rstd, int N, int C) {
    if (!N) return;
    int wide_rows = wide_ok<S>((size_t)C, dinp, dout, inp, w);
    XLMC_LAUNCH(layernorm_backward_dinp_kernel<S>, N, ln_threads(wide_rows ? C / wide<S>::n : C), 0,
                g_cuda.stream)((S *)dinp, (const S *)dout, (const S *)inp, (const S *)w, mean, rstd,
                               C, wide_rows);
    cudaLaunchCheck();
    int chunks = (N + LN_DWB_ROWS - 1) / LN_DWB_ROWS;
    float *partial = cuda_scratch((size_t)chunks * 2 * C);
    dim3 grid(cuda_blocks(C, COLSUM_THREADS), chunks);
    XLMC_LAUNCH(layernorm_dwb_partial_kernel<S>, grid, COLSUM_THREADS, 0,
                g_cuda.stream)(partial, (const S *)dout, (const S *)inp, mean, rstd, N, C);
    cudaLaunchCheck();
    XLMC_LAUNCH(layernorm_dwb_finish_kernel<S>, cuda_blocks(C, 32), 32 * LN_DWB_SPLIT, 0,
                g_cuda.stream)((S *)dw, (S *)db, partial, chunks, C);
    cudaLaunchCheck();
}

CUDA_EXPORT_OP(layernorm_forward)
CUDA_EXPORT_OP(layernorm_backward)
