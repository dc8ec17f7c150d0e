/* optim.cu — loss-scaler unscale with the inf/NaN check, the global gradient norm (fp64,
 * deterministic: fixed grid, per-block partials summed in order on the host) and Adam(W)
 * on fp32 master weights writing the storage copy. */
#include "kernels/cuda/common.cuh"

#include <math.h>

#define OPT_THREADS 256

__global__ void unscale_check_kernel(float *grad, size_t n, float inv_scale, int *flag) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = grad[i] * inv_scale;
    grad[i] = g;
    if (!isfinite(g)) *flag = 1; /* every writer writes the same value: no race on the result */
}

// partials (gridDim.x) = per-block sums of grad^2, grid-stride over n
__global__ void norm_squared_kernel(double *partials, const float *grad, size_t n) {
    __shared__ double red[32];
    double acc = 0.0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        acc += (double)grad[i] * grad[i];
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    acc = warp_sum_f64(acc);
    if (lane == 0) red[warp] = acc;
    __syncthreads();
    if (warp == 0) {
        acc = warp_sum_f64(lane < (int)(blockDim.x / 32) ? red[lane] : 0.0);
        if (lane == 0) partials[blockIdx.x] = acc;
    }
}

template <typename S>
__global__ void adam_kernel(float *master, S *copy, const float *grad, float *m, float *v, size_t n,
                            float lr, float beta1, float beta2, float eps, float wd,
                            float grad_scale, float bc1, float bc2_sqrt,
                            const uint8_t *decay_mask) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = grad[i] * grad_scale;
    float mi = beta1 * m[i] + (1.f - beta1) * g;
    float vi = beta2 * v[i] + (1.f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    float p = master[i];
    if (wd > 0.f && (!decay_mask || decay_mask[i])) p -= lr * wd * p; /* decoupled (AdamW) */
    p -= (lr / bc1) * mi / (sqrtf(vi) / bc2_sqrt + eps);
    master[i] = p;
    if (copy) st(copy + i, p);
}

static int cuda_unscale_check(float *grad, size_t n, float inv_scale) {
    int flag = 0;
    cudaCheck(cudaMemsetAsync(g_cuda.flag, 0, sizeof(int), g_cuda.stream));
    if (n) {
        XLMC_LAUNCH(unscale_check_kernel, cuda_blocks(n, OPT_THREADS), OPT_THREADS, 0,
                    g_cuda.stream)(grad, n, inv_scale, g_cuda.flag);
        cudaLaunchCheck();
    }
    cudaCheck(
        cudaMemcpyAsync(&flag, g_cuda.flag, sizeof(int), cudaMemcpyDeviceToHost, g_cuda.stream));
    cudaCheck(cudaStreamSynchronize(g_cuda.stream));
    return flag != 0;
}

static double cuda_norm_squared(const float *grad, size_t n) {
    if (!n) return 0.0;
    unsigned blocks = cuda_blocks(n, OPT_THREADS);
    if (blocks > CUDA_NORM_BLOCKS) blocks = CUDA_NORM_BLOCKS;
    XLMC_LAUNCH(norm_squared_kernel, blocks, OPT_THREADS, 0, g_cuda.stream)(g_cuda.partials, grad,
                                                                            n);
    cudaLaunchCheck();
    double partials[CUDA_NORM_BLOCKS], sum = 0.0;
    cudaCheck(cudaMemcpyAsync(partials, g_cuda.partials, blocks * sizeof(double),
                              cudaMemcpyDeviceToHost, g_cuda.stream));
    cudaCheck(cudaStreamSynchronize(g_cuda.stream));
    for (unsigned b = 0; b < blocks; b++)
        sum += partials[b];
    return sum;
}

template <typename S>
static void cuda_adam_update(float *master, void *copy, const float *grad, float *m, float *v,
                             size_t n, float lr, float beta1, float beta2, float eps, float wd,
                             float grad_scale, int t, const uint8_t *decay_mask) {
    if (!n) return;
    float bc1 = (float)(1.0 - pow((double)beta1, t));
    float bc2_sqrt = (float)sqrt(1.0 - pow((double)beta2, t));
    XLMC_LAUNCH(adam_kernel<S>, cuda_blocks(n, OPT_THREADS), OPT_THREADS, 0,
                g_cuda.stream)(master, (S *)copy, grad, m, v, n, lr, beta1, beta2, eps, wd,
                               grad_scale, bc1, bc2_sqrt, decay_mask);
    cudaLaunchCheck();
}

CUDA_EXPORT_OP_ANY(unscale_check)
CUDA_EXPORT_OP_ANY(norm_squared)
CUDA_EXPORT_OP(adam_update)
