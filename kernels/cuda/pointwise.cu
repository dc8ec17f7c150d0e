/* pointwise.cu — erf-GELU, residual add, dropout (Philox masks shared with the CPU) and the
 * padding mask. */
#include "kernels/cuda/common.cuh"

#define PW_THREADS 256

template <typename S>
__global__ void gelu_forward_kernel(S *out, const S *inp, size_t n)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float x = ld(inp + i);
    st(out + i, 0.5f * x * (1.f + erff(x * 0.70710678118654752f)));
}

template <typename S>
__global__ void gelu_backward_kernel(S *dinp, const S *inp, const S *dout, size_t n)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float x = ld(inp + i);
    float cdf = 0.5f * (1.f + erff(x * 0.70710678118654752f));
    float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
    st(dinp + i, ld(dout + i) * (cdf + x * pdf));
}

template <typename S>
__global__ void residual_kernel(S *out, const S *a, const S *b, size_t n)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) st(out + i, ld(a + i) + ld(b + i));
}

// x (B, row_len) in place; row r is global row row0 + r
template <typename S>
__global__ void dropout_kernel(S *x, size_t row_len, size_t n, float scale, uint32_t threshold,
                               uint64_t seed, uint64_t step, uint32_t row0, uint32_t tensor)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    uint32_t row = row0 + (uint32_t)(i / row_len);
    int keep = dropout_keep(seed, step, row, tensor, i % row_len, threshold);
    st(x + i, keep ? ld(x + i) * scale : 0.f);
}

// x (B,T,C): zero positions t >= lengths[b]
template <typename S>
__global__ void mask_padding_kernel(S *x, const int32_t *lengths, int T, int C, size_t n)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    size_t bt = i / C;
    if ((int)(bt % T) >= lengths[bt / T]) st(x + i, 0.f);
}

template <typename S>
static void cuda_gelu_forward(void *out, const void *inp, size_t n)
{
    if (!n) return;
    XLMC_LAUNCH(gelu_forward_kernel<S>, cuda_blocks(n, PW_THREADS), PW_THREADS, 0,
                g_cuda.stream)((S *)out, (const S *)inp, n);
    cudaLaunchCheck();
}
template <typename S>
static void cuda_gelu_backward(void *dinp, const void *inp, const void *dout, size_t n)
{
    if (!n) return;
    XLMC_LAUNCH(gelu_backward_kernel<S>, cuda_blocks(n, PW_THREADS), PW_THREADS, 0,
                g_cuda.stream)((S *)dinp, (const S *)inp, (const S *)dout, n);
    cudaLaunchCheck();
}
template <typename S>
static void cuda_residual_forward(void *out, const void *a, const void *b, size_t n)
{
    if (!n) return;
    XLMC_LAUNCH(residual_kernel<S>, cuda_blocks(n, PW_THREADS), PW_THREADS, 0, g_cuda.stream)(
        (S *)out, (const S *)a, (const S *)b, n);
    cudaLaunchCheck();
}
template <typename S>
static void cuda_dropout(void *x, int B, int T, int C, float p, const struct dropout_key *key)
{
    size_t n = (size_t)B * T * C;
    if (p == 0.f || !n) return;
    XLMC_LAUNCH(dropout_kernel<S>, cuda_blocks(n, PW_THREADS), PW_THREADS, 0, g_cuda.stream)(
        (S *)x, (size_t)T * C, n, 1.f / (1.f - p), dropout_threshold(p), key->seed, key->step,
        key->row0, key->tensor);
    cudaLaunchCheck();
}
template <typename S>
static void cuda_mask_padding(void *x, const int32_t *lengths, int B, int T, int C)
{
    size_t n = (size_t)B * T * C;
    if (!n) return;
    XLMC_LAUNCH(mask_padding_kernel<S>, cuda_blocks(n, PW_THREADS), PW_THREADS, 0,
                g_cuda.stream)((S *)x, lengths, T, C, n);
    cudaLaunchCheck();
}

void cuda_register_pointwise(struct ops *o, int half)
{
    o->gelu_forward = half ? cuda_gelu_forward<__half> : cuda_gelu_forward<float>;
    o->gelu_backward = half ? cuda_gelu_backward<__half> : cuda_gelu_backward<float>;
    o->residual_forward = half ? cuda_residual_forward<__half> : cuda_residual_forward<float>;
    o->dropout = half ? cuda_dropout<__half> : cuda_dropout<float>;
    o->mask_padding = half ? cuda_mask_padding<__half> : cuda_mask_padding<float>;
}
