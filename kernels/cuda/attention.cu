/* attention.cu — causal multi-head attention: scores and products through cuBLAS
 * strided-batched GEMMs (batched over the heads of one sequence), softmax with attention
 * dropout and its backward in fp32 kernels. Scores live in fp32 scratch, never in fp16; att
 * keeps the probabilities before dropout, so the backward rebuilds the mask (one Philox per
 * element) instead of recomputing the scores. */
#include "kernels/cuda/common.cuh"

#include <math.h>

#define ATT_WARPS 4   /* rows (b,h,t) per block: one warp each */

/* att (B,NH,T,T) = softmax(scores) with the causal mask, the probabilities before dropout;
 * pd (B,NH,T,T) or NULL (no dropout) = dropout(att), each kept element rounded to storage
 * like att itself. scores (B,NH,T,T) fp32, already scaled. Dropout element of row b is
 * (h*T + t)*T + s (the row-major index in att[b]). */
template <typename S>
__global__ void attention_softmax_kernel(S *att, S *pd, const float *scores, int rows, int NHT,
                                         int T, float keep_scale, uint32_t threshold,
                                         uint64_t seed, uint64_t step, uint32_t row0,
                                         uint32_t tensor)
{
    int r = blockIdx.x * ATT_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (r >= rows) return;   /* whole warps leave together: no barrier below spans warps */
    int t = r % T;
    const float *x = scores + (size_t)r * T;
    float m = -INFINITY;
    for (int s = lane; s <= t; s += 32) m = fmaxf(m, x[s]);
    m = warp_max(m);
    float sum = 0.f;
    for (int s = lane; s <= t; s += 32) sum += expf(x[s] - m);
    float inv = 1.f / warp_sum(sum);
    uint32_t b = (uint32_t)(r / NHT);
    size_t e0 = (size_t)(r % NHT) * T;
    for (int s = lane; s < T; s += 32) {
        float p = s <= t ? expf(x[s] - m) * inv : 0.f;
        st(att + (size_t)r * T + s, p);
        if (pd) {
            p = ld(att + (size_t)r * T + s);
            int keep = s <= t && dropout_keep(seed, step, row0 + b, tensor, e0 + s, threshold);
            st(pd + (size_t)r * T + s, keep ? p * keep_scale : 0.f);
        }
    }
}

/* pd (B,NH,T,T) = dropout(att), as attention_softmax_kernel wrote it */
template <typename S>
__global__ void attention_dropped_kernel(S *pd, const S *att, size_t n, int NHT, int T,
                                         float keep_scale, uint32_t threshold, uint64_t seed,
                                         uint64_t step, uint32_t row0, uint32_t tensor)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    size_t r = i / T;
    int t = (int)(r % T), s = (int)(i % T);
    uint32_t b = (uint32_t)(r / NHT);
    size_t e = (r % NHT) * T + s;
    float p = ld(att + i);
    p = s <= t && dropout_keep(seed, step, row0 + b, tensor, e, threshold) ? p * keep_scale : 0.f;
    st(pd + i, p);
}

/* dscores (B,NH,T,T) storage = scale * dsoftmax. att: the pre-dropout probabilities P; datt:
 * gradient w.r.t. the post-dropout ones (fp32); pd: those, or NULL without dropout. A kept
 * element of pd is nonzero wherever P is (where P is 0 the gradient is 0 whatever the mask),
 * so dP takes its mask from pd != 0. */
template <typename S>
__global__ void attention_softmax_backward_kernel(S *dscores, const float *datt, const S *att,
                                                  const S *pd, int rows, int T, float scale,
                                                  float keep_scale)
{
    int r = blockIdx.x * ATT_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (r >= rows) return;
    int t = r % T;
    size_t base = (size_t)r * T;
    float dot = 0.f;
    for (int s = lane; s <= t; s += 32) {
        float dp = datt[base + s];
        if (pd) dp = ld(pd + base + s) != 0.f ? dp * keep_scale : 0.f;
        dot += ld(att + base + s) * dp;
    }
    dot = warp_sum(dot);
    for (int s = lane; s < T; s += 32) {
        float ds = 0.f;
        if (s <= t) {
            float dp = datt[base + s];
            if (pd) dp = ld(pd + base + s) != 0.f ? dp * keep_scale : 0.f;
            ds = ld(att + base + s) * (dp - dot) * scale;
        }
        st(dscores + base + s, ds);
    }
}

/* Per sequence b: C (per head) = alpha op(A) op(B), heads strided by HS in q/k/v/out and by
 * T*T in the (NH,T,T) buffers. */
static void gemm_heads(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                       float alpha, const void *A, cudaDataType_t at, int lda, long long sa,
                       const void *B, cudaDataType_t bt, int ldb, long long sb, void *C,
                       cudaDataType_t ct, int ldc, long long sc, int NH)
{
    const float beta = 0.f;
    cublasCheck(cublasGemmStridedBatchedEx(g_cuda.blas, ta, tb, m, n, k, &alpha, A, at, lda, sa,
                                           B, bt, ldb, sb, &beta, C, ct, ldc, sc, NH,
                                           CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

// scores (B,NH,T,T) fp32 = q k^T * scale, row-major [t][s] (column-major (s,t))
template <typename S>
static void attention_scores(float *scores, const S *q, const S *k, int B, int T, int C, int NH)
{
    int HS = C / NH;
    cudaDataType_t st_ = storage_type<S>::blas;
    for (int b = 0; b < B; b++) {
        size_t off = (size_t)b * T * C;
        gemm_heads(CUBLAS_OP_T, CUBLAS_OP_N, T, T, HS, 1.f / sqrtf((float)HS), k + off, st_, C,
                   HS, q + off, st_, C, HS, scores + (size_t)b * NH * T * T, CUDA_R_32F, T,
                   (long long)T * T, NH);
    }
}

template <typename S>
static void cuda_attention_forward(void *out, void *att, const void *q, const void *k,
                                   const void *v, int B, int T, int C, int NH, float p,
                                   const struct dropout_key *key)
{
    if (!B || !T) return;
    int HS = C / NH, rows = B * NH * T;
    size_t natt = (size_t)B * NH * T * T;
    cudaDataType_t st_ = storage_type<S>::blas;
    uint32_t threshold = p > 0.f ? dropout_threshold(p) : 0u;
    /* fp32 scores, then room for the post-dropout probabilities (storage type) */
    float *scores = cuda_scratch(threshold ? 2 * natt : natt);
    S *pd = threshold ? (S *)(scores + natt) : NULL;
    attention_scores<S>(scores, (const S *)q, (const S *)k, B, T, C, NH);
    XLMC_LAUNCH(attention_softmax_kernel<S>, cuda_blocks(rows, ATT_WARPS), 32 * ATT_WARPS, 0,
                g_cuda.stream)((S *)att, pd, scores, rows, NH * T, T,
                               p > 0.f ? 1.f / (1.f - p) : 1.f, threshold, key ? key->seed : 0,
                               key ? key->step : 0, key ? key->row0 : 0, key ? key->tensor : 0);
    cudaLaunchCheck();
    const S *probs = pd ? pd : (const S *)att;
    for (int b = 0; b < B; b++) {
        size_t off = (size_t)b * T * C, aoff = (size_t)b * NH * T * T;
        // out (T,HS per head) = dropout(att) (T,T) @ v (T,HS)
        gemm_heads(CUBLAS_OP_N, CUBLAS_OP_N, HS, T, T, 1.f, (const S *)v + off, st_, C, HS,
                   probs + aoff, st_, T, (long long)T * T, (S *)out + off, st_, C, HS, NH);
    }
}

template <typename S>
static void cuda_attention_backward(void *dq, void *dk, void *dv, void *scratch,
                                    const void *dout, const void *att, const void *q,
                                    const void *k, const void *v, int B, int T, int C, int NH,
                                    float p, const struct dropout_key *key)
{
    if (!B || !T) return;
    int HS = C / NH, rows = B * NH * T;
    size_t natt = (size_t)B * NH * T * T;
    cudaDataType_t st_ = storage_type<S>::blas;
    uint32_t threshold = p > 0.f ? dropout_threshold(p) : 0u;
    float keep_scale = p > 0.f ? 1.f / (1.f - p) : 1.f;
    /* fp32 datt, then room for the post-dropout probabilities (storage type) */
    float *datt = cuda_scratch(threshold ? 2 * natt : natt);
    S *pd = threshold ? (S *)(datt + natt) : NULL;
    if (pd) {
        XLMC_LAUNCH(attention_dropped_kernel<S>, cuda_blocks(natt, 256), 256, 0, g_cuda.stream)(
            pd, (const S *)att, natt, NH * T, T, keep_scale, threshold, key ? key->seed : 0,
            key ? key->step : 0, key ? key->row0 : 0, key ? key->tensor : 0);
        cudaLaunchCheck();
    }
    const S *probs = pd ? pd : (const S *)att;
    for (int b = 0; b < B; b++) {
        size_t off = (size_t)b * T * C, aoff = (size_t)b * NH * T * T;
        // dv (T,HS) = dropout(att)^T @ dout
        gemm_heads(CUBLAS_OP_N, CUBLAS_OP_T, HS, T, T, 1.f, (const S *)dout + off, st_, C, HS,
                   probs + aoff, st_, T, (long long)T * T, (S *)dv + off, st_, C, HS, NH);
        // datt (T,T) fp32 = dout @ v^T
        gemm_heads(CUBLAS_OP_T, CUBLAS_OP_N, T, T, HS, 1.f, (const S *)v + off, st_, C, HS,
                   (const S *)dout + off, st_, C, HS, datt + aoff, CUDA_R_32F, T,
                   (long long)T * T, NH);
    }
    XLMC_LAUNCH(attention_softmax_backward_kernel<S>, cuda_blocks(rows, ATT_WARPS),
                32 * ATT_WARPS, 0, g_cuda.stream)((S *)scratch, datt, (const S *)att, pd, rows,
                                                  T, 1.f / sqrtf((float)HS), keep_scale);
    cudaLaunchCheck();
    for (int b = 0; b < B; b++) {
        size_t off = (size_t)b * T * C, aoff = (size_t)b * NH * T * T;
        // dq (T,HS) = dscores @ k ; dk (T,HS) = dscores^T @ q
        gemm_heads(CUBLAS_OP_N, CUBLAS_OP_N, HS, T, T, 1.f, (const S *)k + off, st_, C, HS,
                   (const S *)scratch + aoff, st_, T, (long long)T * T, (S *)dq + off, st_, C,
                   HS, NH);
        gemm_heads(CUBLAS_OP_N, CUBLAS_OP_T, HS, T, T, 1.f, (const S *)q + off, st_, C, HS,
                   (const S *)scratch + aoff, st_, T, (long long)T * T, (S *)dk + off, st_, C,
                   HS, NH);
    }
}

CUDA_EXPORT_OP(attention_forward)
CUDA_EXPORT_OP(attention_backward)
