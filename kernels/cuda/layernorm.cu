/* layernorm.cu — LayerNorm over the last dim with fp32 statistics, forward and backward. */
#include "kernels/cuda/common.cuh"

#define LN_THREADS 128

// one block per row: out (N,C), mean/rstd (N), inp (N,C), w/b (C)
template <typename S>
__global__ void layernorm_forward_kernel(S *out, float *mean, float *rstd, const S *inp,
                                         const S *w, const S *b, int C, float eps)
{
    __shared__ float red[32];
    const S *x = inp + (size_t)blockIdx.x * C;
    S *y = out + (size_t)blockIdx.x * C;
    float s = 0.f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) s += ld(x + c);
    float mu = block_sum(s, red) / C;
    /* two passes: the centred sum of squares does not cancel like E[x^2] - E[x]^2 */
    float ss = 0.f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float d = ld(x + c) - mu;
        ss += d * d;
    }
    float rs = rsqrtf(block_sum(ss, red) / C + eps);
    for (int c = threadIdx.x; c < C; c += blockDim.x)
        st(y + c, (ld(x + c) - mu) * rs * ld(w + c) + ld(b + c));
    if (threadIdx.x == 0) {
        mean[blockIdx.x] = mu;
        rstd[blockIdx.x] = rs;
    }
}

// one block per row: dinp (N,C) = d LayerNorm / d inp
template <typename S>
__global__ void layernorm_backward_dinp_kernel(S *dinp, const S *dout, const S *inp, const S *w,
                                               const float *mean, const float *rstd, int C)
{
    __shared__ float red[32];
    size_t row = blockIdx.x;
    const S *x = inp + row * C, *dy = dout + row * C;
    float mu = mean[row], rs = rstd[row];
    float sum_g = 0.f, sum_gx = 0.f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float g = ld(dy + c) * ld(w + c);
        sum_g += g;
        sum_gx += g * (ld(x + c) - mu) * rs;
    }
    float mean_g = block_sum(sum_g, red) / C;
    float mean_gx = block_sum(sum_gx, red) / C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float xhat = (ld(x + c) - mu) * rs;
        float g = ld(dy + c) * ld(w + c);
        st(dinp + row * C + c, (g - mean_g - xhat * mean_gx) * rs);
    }
}

// dw, db (C) +=: one thread per column sums the rows in order (deterministic)
template <typename S>
__global__ void layernorm_backward_dwb_kernel(S *dw, S *db, const S *dout, const S *inp,
                                              const float *mean, const float *rstd, int N, int C)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float aw = 0.f, ab = 0.f;
    for (int n = 0; n < N; n++) {
        float dy = ld(dout + (size_t)n * C + c);
        aw += dy * (ld(inp + (size_t)n * C + c) - mean[n]) * rstd[n];
        ab += dy;
    }
    st(dw + c, ld(dw + c) + aw);
    st(db + c, ld(db + c) + ab);
}

template <typename S>
static void cuda_layernorm_forward(void *out, float *mean, float *rstd, const void *inp,
                                   const void *w, const void *b, int N, int C, float eps)
{
    if (!N) return;
    XLMC_LAUNCH(layernorm_forward_kernel<S>, N, LN_THREADS, 0, g_cuda.stream)(
        (S *)out, mean, rstd, (const S *)inp, (const S *)w, (const S *)b, C, eps);
    cudaLaunchCheck();
}

template <typename S>
static void cuda_layernorm_backward(void *dinp, void *dw, void *db, const void *dout,
                                    const void *inp, const void *w, const float *mean,
                                    const float *rstd, int N, int C)
{
    if (!N) return;
    XLMC_LAUNCH(layernorm_backward_dinp_kernel<S>, N, LN_THREADS, 0, g_cuda.stream)(
        (S *)dinp, (const S *)dout, (const S *)inp, (const S *)w, mean, rstd, C);
    cudaLaunchCheck();
    XLMC_LAUNCH(layernorm_backward_dwb_kernel<S>, cuda_blocks(C, 64), 64, 0, g_cuda.stream)(
        (S *)dw, (S *)db, (const S *)dout, (const S *)inp, mean, rstd, N, C);
    cudaLaunchCheck();
}

void cuda_register_layernorm(struct ops *o, int half)
{
    o->layernorm_forward = half ? cuda_layernorm_forward<__half> : cuda_layernorm_forward<float>;
    o->layernorm_backward = half ? cuda_layernorm_backward<__half> : cuda_layernorm_backward<float>;
}
