/* optim.cu — a list of gradient tensors into the fp32 accumulator in one launch, the
 * loss-scaler unscale with the inf/NaN check, the global gradient norm (fp64, deterministic:
 * a grid fixed by n, per-block partials summed in a fixed order by a second kernel) and Adam(W)
 * on fp32 master weights writing the storage copy. */
#include "kernels/cuda/common.cuh"

#include <math.h>
#include <string.h>

#define OPT_THREADS 256

__global__ void unscale_check_kernel(float *grad, size_t n, float inv_scale, int *flag) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = grad[i] * inv_scale;
    grad[i] = g;
    if (!isfinite(g)) *flag = 1; /* every writer writes the same value: no race on the result */
}

/* ---- norm_squared: sum of grad^2 in fp64, deterministic ----
 * First kernel: partials (gridDim.x) = per-block sums, grid-stride over n. The grid is as wide
 * as the data allows up to CUDA_NORM_BLOCKS (one wave of resident threads on an H100), and a
 * 16-byte-aligned grad is read 4 floats per access (n / 4 pieces, then the n % 4 tail), so each
 * thread's chain of dependent loads is short. The grid depends only on n and the alignment, so the
 * sum does too. */
__device__ __forceinline__ double block_sum_f64(double acc, double *red /* shared (32) */) {
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    acc = warp_sum_f64(acc);
    if (lane == 0) red[warp] = acc;
    __syncthreads();
    acc = 0.0;
    if (warp == 0) acc = warp_sum_f64(lane < (int)(blockDim.x / 32) ? red[lane] : 0.0);
    return acc; /* valid in thread 0 */
}

__global__ void norm_squared_kernel(double *partials, const float *grad, size_t n, bool vec) {
    __shared__ double red[32];
    double acc = 0.0;
    size_t tid = (size_t)blockIdx.x * blockDim.x + threadIdx.x,
           stride = (size_t)gridDim.x * blockDim.x, head = 0;
    if (vec) {
        head = n / PW_PIECE * PW_PIECE;
        for (size_t i = tid; i < n / PW_PIECE; i += stride) {
            float x[PW_PIECE];
            ld4(x, grad + i * PW_PIECE);
            acc += (double)x[0] * x[0] + (double)x[1] * x[1] + (double)x[2] * x[2] +
                   (double)x[3] * x[3];
        }
    }
    for (size_t i = head + tid; i < n; i += stride)
        acc += (double)grad[i] * grad[i];
    acc = block_sum_f64(acc, red);
    if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

/* Second kernel, one block: partials[0] = the sum of partials (count), each thread's share in
 * index order and then the block's fixed tree, so the host copies one double. Every read
 * happens before block_sum_f64's barrier, so overwriting partials[0] after it is safe. */
__global__ void norm_partials_kernel(double *partials, unsigned count) {
    __shared__ double red[32];
    double acc = 0.0;
    for (unsigned i = threadIdx.x; i < count; i += blockDim.x)
        acc += partials[i];
    acc = block_sum_f64(acc, red);
    if (threadIdx.x == 0) partials[0] = acc;
}

/* ---- grad_accumulate_list: every tensor of the list in one launch ----
 * The list travels by value as the kernel's argument (no copy to the device before the
 * launch), with a prefix table of blocks: tensor i owns blocks start[i] .. start[i+1] - 1, each
 * of PW_VEC elements per thread in the pointwise layout (ld8/st8: 16-byte accesses where the
 * tensor's two pointers allow, coalesced either way). */
#define LIST_THREADS 256
struct acc_list_arg {
    int count, first, sources;
    size_t stride;
    float weight[OPS_GRAD_SOURCES_MAX];
    unsigned start[OPS_TENSOR_LIST_MAX + 1];
    bool vec[OPS_TENSOR_LIST_MAX];
    float *acc[OPS_TENSOR_LIST_MAX];
    const void *grad[OPS_TENSOR_LIST_MAX];
    size_t n[OPS_TENSOR_LIST_MAX];
};

template <typename S>
__global__ void grad_accumulate_list_kernel(acc_list_arg a) {
    unsigned b = blockIdx.x;
    int i = 0;
    while (i + 1 < a.count && b >= a.start[i + 1])
        i++;
    size_t n = a.n[i], t = (size_t)(b - a.start[i]) * blockDim.x + threadIdx.x;
    int lane = (int)(t % 32);
    size_t base = t / 32 * (32 * PW_VEC);
    if (base >= n) return;
    bool vec = a.vec[i];
    const char *grad = (const char *)a.grad[i];
    float g[PW_VEC], v[PW_VEC];
    ld8(g, (const S *)grad, vec, base, lane, n);
    if (a.first) {
        /* 0 + w g: what zeroing and then adding gave (a -0 product becomes +0) */
        for (int j = 0; j < PW_VEC; j++)
            v[j] = a.weight[0] == 1.f ? g[j] : 0.f + a.weight[0] * g[j];
    } else {
        ld8(v, a.acc[i], vec, base, lane, n);
        for (int j = 0; j < PW_VEC; j++)
            v[j] += a.weight[0] * g[j];
    }
    /* the further buffers in their order: the adds of one call each, in registers */
    for (int s = 1; s < a.sources; s++) {
        grad += a.stride;
        ld8(g, (const S *)grad, vec, base, lane, n);
        for (int j = 0; j < PW_VEC; j++)
            v[j] += a.weight[s] * g[j];
    }
    st8(a.acc[i], v, vec, base, lane, n);
}

template <typename S>
static void cuda_grad_accumulate_list(const struct ops_tensor_list *l) {
    acc_list_arg a;
    memset(&a, 0, sizeof a);
    a.first = l->first;
    a.sources = l->sources > 1 ? l->sources : 1;
    a.stride = l->stride;
    for (int s = 0; s < a.sources; s++)
        a.weight[s] = l->weight[s];
    unsigned blocks = 0;
    for (int i = 0; i < l->count; i++) {
        size_t n = l->t[i].n;
        if (!n) continue; /* no block: the search never lands on it */
        int k = a.count++;
        a.acc[k] = l->t[i].acc;
        a.grad[k] = l->t[i].grad;
        a.n[k] = n;
        /* the stride keeps every source's alignment when it is a multiple of 16 bytes */
        a.vec[k] =
            pw_vec_ok(0, l->t[i].acc, l->t[i].grad) && (a.sources == 1 || l->stride % 16 == 0);
        a.start[k] = blocks;
        blocks += cuda_blocks((n + PW_VEC - 1) / PW_VEC, LIST_THREADS);
    }
    if (!a.count) return;
    a.start[a.count] = blocks;
    XLMC_LAUNCH(grad_accumulate_list_kernel<S>, blocks, LIST_THREADS, 0, g_cuda.stream)(a);
    cudaLaunchCheck();
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
    bool vec = pw_vec_ok(0, grad);
    unsigned blocks = cuda_blocks(vec ? (n + PW_PIECE - 1) / PW_PIECE : n, OPT_THREADS);
    if (blocks > CUDA_NORM_BLOCKS) blocks = CUDA_NORM_BLOCKS;
    XLMC_LAUNCH(norm_squared_kernel, blocks, OPT_THREADS, 0, g_cuda.stream)(g_cuda.partials, grad,
                                                                            n, vec);
    cudaLaunchCheck();
    if (blocks > 1) {
        XLMC_LAUNCH(norm_partials_kernel, 1, OPT_THREADS, 0, g_cuda.stream)(g_cuda.partials,
                                                                            blocks);
        cudaLaunchCheck();
    }
    double sum;
    cudaCheck(
        cudaMemcpyAsync(&sum, g_cuda.partials, sizeof sum, cudaMemcpyDeviceToHost, g_cuda.stream));
    cudaCheck(cudaStreamSynchronize(g_cuda.stream));
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
CUDA_EXPORT_OP(grad_accumulate_list)
