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

/* ---- the predicted rows (MLM, TLM) and evaluation ---- */

// out (M,C) = inp rows index[m]; grid-stride over M*C
template <typename S>
__global__ void gather_rows_kernel(S *out, const S *inp, const int32_t *index, int C, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    size_t m = i / C;
    out[i] = inp[(size_t)index[m] * C + i % C];
}

template <typename S>
__global__ void scatter_rows_kernel(S *out, const S *inp, const int32_t *index, int C, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    size_t m = i / C;
    out[(size_t)index[m] * C + i % C] = inp[i];
}

// one block per row: the first maximum (lowest column among equal maxima), as the CPU backend
template <typename S>
__global__ void argmax_correct_kernel(int32_t *correct, const S *logits, const int32_t *targets,
                                      int V, int Vp) {
    __shared__ float sv[CLS_THREADS];
    __shared__ int si[CLS_THREADS];
    const S *x = logits + (size_t)blockIdx.x * Vp;
    float best = -INFINITY;
    int at = V; // no column yet (rows of NaN: a diverged model, the backends may differ)
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        float v = ld(x + i);
        if (at == V || v > best) {
            best = v;
            at = i;
        }
    }
    int me = (int)threadIdx.x;
    sv[me] = best;
    si[me] = at;
    __syncthreads();
    for (int w = (int)blockDim.x / 2; w > 0; w /= 2) {
        if (me < w) {
            float ov = sv[me + w];
            int oi = si[me + w];
            if (oi < V && (si[me] == V || ov > sv[me] || (ov == sv[me] && oi < si[me]))) {
                sv[me] = ov;
                si[me] = oi;
            }
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        int t = targets[blockIdx.x];
        correct[blockIdx.x] = t >= 0 && si[0] == t;
    }
}

template <typename S>
static void cuda_gather_rows(void *out, const void *inp, const int32_t *index, int M, int C) {
    size_t n = (size_t)M * C;
    if (!n) return;
    XLMC_LAUNCH(gather_rows_kernel<S>, cuda_blocks(n, 256), 256, 0,
                g_cuda.stream)((S *)out, (const S *)inp, index, C, n);
    cudaLaunchCheck();
}

template <typename S>
static void cuda_scatter_rows(void *out, const void *inp, const int32_t *index, int N, int M,
                              int C) {
    cudaCheck(cudaMemsetAsync(out, 0, (size_t)N * C * sizeof(S), g_cuda.stream));
    size_t n = (size_t)M * C;
    if (!n) return;
    XLMC_LAUNCH(scatter_rows_kernel<S>, cuda_blocks(n, 256), 256, 0,
                g_cuda.stream)((S *)out, (const S *)inp, index, C, n);
    cudaLaunchCheck();
}

template <typename S>
static void cuda_argmax_correct(int32_t *correct, const void *logits, const int32_t *targets, int N,
                                int V, int Vp) {
    if (!N) return;
    XLMC_LAUNCH(argmax_correct_kernel<S>, N, CLS_THREADS, 0,
                g_cuda.stream)(correct, (const S *)logits, targets, V, Vp);
    cudaLaunchCheck();
}

CUDA_EXPORT_OP(gather_rows)
CUDA_EXPORT_OP(scatter_rows)
CUDA_EXPORT_OP(argmax_correct)
