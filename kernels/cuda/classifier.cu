/* classifier.cu — the fused output layer: output bias, softmax + cross-entropy + logits
 * gradient in place, one block per row, probabilities never stored; the bias gradient is the
 * deterministic column sum of matmul_backward. */
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/wide.cuh"

#include <math.h>

#define CLS_THREADS 256

/* Columns [0, nw * W) of a row move in 16-byte accesses of W = wide<S>::n elements (nw = V / W
 * when the host found the rows and the pointers aligned, else 0), the rest element by element;
 * thread t takes accesses t, t + blockDim.x, ... in every pass, so each element it stores is
 * one it read itself (no barrier between the passes but the reductions'). */

// losses (N) fp32, logits (N,Vp) storage, columns < V (+= bias (V) or NULL first) overwritten
// by dscale * (softmax - onehot), the padding columns V..Vp-1 by 0 (with dscale != 0).
// wide_rows: rows and logits in 16-byte accesses; wide_bias: the bias too
template <typename S>
__global__ void classifier_kernel(float *losses, S *logits, const S *bias, const int32_t *targets,
                                  int V, int Vp, float dscale, int wide_rows, int wide_bias) {
    constexpr int W = wide<S>::n;
    __shared__ float red[32];
    S *x = logits + (size_t)blockIdx.x * Vp;
    int target = targets[blockIdx.x];
    int nw = wide_rows ? V / W : 0, tail = nw * W; // whole accesses, first scalar column
    if (dscale != 0.f)
        for (int i = V + threadIdx.x; i < Vp; i += blockDim.x)
            st(x + i, 0.f);
    /* the bias is added (and the sum stored, rounded to storage) in the pass for the maximum */
    float m = -INFINITY;
    for (int k = threadIdx.x; k < nw; k += blockDim.x) {
        float f[W];
        ldw(f, x + k * W);
        if (bias) {
            float b[W];
            if (wide_bias) {
                ldw(b, bias + k * W);
            } else {
                for (int j = 0; j < W; j++)
                    b[j] = ld(bias + k * W + j);
            }
            for (int j = 0; j < W; j++)
                f[j] = to_storage<S>(f[j] + b[j]);
            stw(x + k * W, f);
        }
        for (int j = 0; j < W; j++)
            m = fmaxf(m, f[j]);
    }
    for (int i = tail + threadIdx.x; i < V; i += blockDim.x) {
        float v = ld(x + i);
        if (bias) {
            v = to_storage<S>(v + ld(bias + i));
            st(x + i, v);
        }
        m = fmaxf(m, v);
    }
    if (target < 0) { /* ignored row: the whole block agrees, so no barrier is split */
        if (threadIdx.x == 0) losses[blockIdx.x] = 0.f;
        if (dscale != 0.f) {
            float z[W] = {};
            for (int k = threadIdx.x; k < nw; k += blockDim.x)
                stw(x + k * W, z);
            for (int i = tail + threadIdx.x; i < V; i += blockDim.x)
                st(x + i, 0.f);
        }
        return;
    }
    m = block_max(m, red);
    float sum = 0.f;
    for (int k = threadIdx.x; k < nw; k += blockDim.x) {
        float f[W];
        ldw(f, x + k * W);
        for (int j = 0; j < W; j++)
            sum += expf(f[j] - m);
    }
    for (int i = tail + threadIdx.x; i < V; i += blockDim.x)
        sum += expf(ld(x + i) - m);
    float lse = m + logf(block_sum(sum, red));
    /* the target's logit, read before any thread overwrites the row (its bias was added
     * before block_max's barrier) */
    float xt = threadIdx.x == 0 ? ld(x + target) : 0.f;
    __syncthreads();
    if (threadIdx.x == 0) losses[blockIdx.x] = lse - xt;
    if (dscale == 0.f) return;
    for (int k = threadIdx.x; k < nw; k += blockDim.x) {
        float f[W];
        ldw(f, x + k * W);
        for (int j = 0; j < W; j++)
            f[j] = dscale * (expf(f[j] - lse) - (k * W + j == target ? 1.f : 0.f));
        stw(x + k * W, f);
    }
    for (int i = tail + threadIdx.x; i < V; i += blockDim.x)
        st(x + i, dscale * (expf(ld(x + i) - lse) - (i == target ? 1.f : 0.f)));
}

template <typename S>
static void cuda_classifier(float *losses, void *logits, const void *bias, void *dbias,
                            const int32_t *targets, int N, int V, int Vp, float dscale) {
    if (!N) return;
    int wide_rows = wide_ok<S>((size_t)Vp, logits), wide_bias = wide_rows && wide_ok<S>(0, bias);
    XLMC_LAUNCH(classifier_kernel<S>, N, CLS_THREADS, 0, g_cuda.stream)(
        losses, (S *)logits, (const S *)bias, targets, V, Vp, dscale, wide_rows, wide_bias);
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
