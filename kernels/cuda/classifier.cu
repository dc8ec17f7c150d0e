/* classifier.cu — the fused output layer: output bias, softmax + cross-entropy + logits
 * gradient in place, one block per row, probabilities never stored; the bias gradient is the
 * deterministic column sum of matmul_backward. */
#include "kernels/cuda/common.cuh"

#include <math.h>

#define CLS_THREADS 256

// losses (N) fp32, logits (N,Vp) storage, columns < V (+= bias (V) or NULL first) overwritten
// by dscale * (softmax - onehot), the padding columns V..Vp-1 by 0 (with dscale != 0)
template <typename S>
__global__ void classifier_kernel(float *losses, S *logits, const S *bias, const int32_t *targets,
                                  int V, int Vp, float dscale) {
    __shared__ float red[32];
    S *x = logits + (size_t)blockIdx.x * Vp;
    int target = targets[blockIdx.x];
    if (dscale != 0.f)
        for (int i = V + threadIdx.x; i < Vp; i += blockDim.x)
            st(x + i, 0.f);
    if (bias) { /* each thread adds the elements it reads below: no barrier needed */
        for (int i = threadIdx.x; i < V; i += blockDim.x)
            st(x + i, ld(x + i) + ld(bias + i));
    }
    if (target < 0) { /* ignored row: the whole block agrees, so no barrier is split */
        if (threadIdx.x == 0) losses[blockIdx.x] = 0.f;
        if (dscale != 0.f)
            for (int i = threadIdx.x; i < V; i += blockDim.x)
                st(x + i, 0.f);
        return;
    }
    float m = -INFINITY;
    for (int i = threadIdx.x; i < V; i += blockDim.x)
        m = fmaxf(m, ld(x + i));
    m = block_max(m, red);
    float sum = 0.f;
    for (int i = threadIdx.x; i < V; i += blockDim.x)
        sum += expf(ld(x + i) - m);
    float lse = m + logf(block_sum(sum, red));
    /* read the target's logit before any thread overwrites the row (its bias was added
     * before block_max's barrier) */
    float xt = ld(x + target);
    __syncthreads();
    if (threadIdx.x == 0) losses[blockIdx.x] = lse - xt;
    if (dscale == 0.f) return;
    for (int i = threadIdx.x; i < V; i += blockDim.x)
        st(x + i, dscale * (expf(ld(x + i) - lse) - (i == target ? 1.f : 0.f)));
}

template <typename S>
static void cuda_classifier(float *losses, void *logits, const void *bias, void *dbias,
                            const int32_t *targets, int N, int V, int Vp, float dscale) {
    if (!N) return;
    XLMC_LAUNCH(classifier_kernel<S>, N, CLS_THREADS, 0,
                g_cuda.stream)(losses, (S *)logits, (const S *)bias, targets, V, Vp, dscale);
    cudaLaunchCheck();
    if (dbias && dscale != 0.f) cuda_column_sum_add<S>((S *)dbias, (const S *)logits, N, V, Vp);
}

CUDA_EXPORT_OP(classifier)
