/* matmul.cu — linear layers through cuBLAS (fp16 or fp32 inputs, fp32 accumulation).
 * Row-major (N,C) buffers are column-major (C,N) matrices to cuBLAS, so every product below
 * is written for the transposed, column-major view. */
#include "kernels/cuda/common.cuh"

// out (N,OC) = broadcast b (OC): the GEMM then adds into it with beta = 1. PW_VEC elements
// of one row per thread when vec (OC % PW_VEC == 0, aligned pointers). blockIdx.y is the
// member of a batched call: out + y out_stride, b + y b_stride.
template <typename S>
__global__ void bias_broadcast_kernel(S *out, const S *b, int OC, size_t n, bool vec,
                                      size_t out_stride, size_t b_stride) {
    int lane;
    size_t base = pw_base(&lane);
    if (base >= n) return;
    out += blockIdx.y * out_stride;
    b += blockIdx.y * b_stride;
    float v[PW_VEC];
    ld_bias8(v, b, OC, vec, base, lane, n);
    st8(out, v, vec, base, lane, n);
}

// every member's (N,OC) out set to its bias, in one launch
template <typename S>
static void bias_broadcast(void *out, const void *b, int N, int OC, int batch, size_t w_stride,
                           size_t out_stride) {
    size_t n = (size_t)N * OC;
    const S *b1 = (const S *)b + (batch > 1 ? w_stride : 0);
    S *o1 = (S *)out + (batch > 1 ? out_stride : 0);
    dim3 grid(cuda_blocks((n + PW_VEC - 1) / PW_VEC, 256), (unsigned)batch);
    XLMC_LAUNCH(bias_broadcast_kernel<S>, grid, 256, 0, g_cuda.stream)(
        (S *)out, (const S *)b, OC, n, pw_vec_ok((size_t)OC, out, b, o1, b1), out_stride, w_stride);
    cudaLaunchCheck();
}

template <typename S>
static void gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const void *A,
                 int lda, const void *B, int ldb, void *C, int ldc, float beta) {
    const float alpha = 1.f;
    cudaDataType_t t = storage_type<S>::blas;
    if (!cuda_call_admit("gemm", ta, tb, m, n, k, A, lda, B, ldb, (const void *)C, ldc, beta, t))
        return;
    cublasCheck(cublasGemmEx(g_cuda.blas, ta, tb, m, n, k, &alpha, A, t, lda, B, t, ldb, &beta, C,
                             t, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

// batch members at strides (elements; 0: shared): C_i = op(A_i) op(B_i) + beta C_i
template <typename S>
static void gemm_batched(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                         const void *A, int lda, size_t sa, const void *B, int ldb, size_t sb,
                         void *C, int ldc, size_t sc, float beta, int batch) {
    const float alpha = 1.f;
    cudaDataType_t t = storage_type<S>::blas;
    if (!cuda_call_admit("gemm_batched", ta, tb, m, n, k, A, lda, sa, B, ldb, sb, (const void *)C,
                         ldc, sc, beta, batch, t))
        return;
    cublasCheck(cublasGemmStridedBatchedEx(
        g_cuda.blas, ta, tb, m, n, k, &alpha, A, t, lda, (long long)sa, B, t, ldb, (long long)sb,
        &beta, C, t, ldc, (long long)sc, batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

// out + i out_stride (N,OC) = inp (N,C) @ (w + i w_stride) (OC,C)^T + (b + i w_stride) (OC)
template <typename S>
static void cuda_matmul_forward_batched(void *out, const void *inp, const void *w, const void *b,
                                        int N, int C, int OC, int batch, size_t w_stride,
                                        size_t out_stride) {
    if (!N || !OC || batch <= 0) return;
    if (b) bias_broadcast<S>(out, b, N, OC, batch, w_stride, out_stride);
    // out^T (OC,N) = w^T' ... : col-major w is (C,OC), so op T gives (OC,C); inp is (C,N)
    if (batch == 1)
        gemm<S>(CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, w, C, inp, C, out, OC, b ? 1.f : 0.f);
    else
        gemm_batched<S>(CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, w, C, w_stride, inp, C, 0, out, OC,
                        out_stride, b ? 1.f : 0.f, batch);
}

// out (N,OC) = inp (N,C) @ w (OC,C)^T + b (OC)
template <typename S>
static void cuda_matmul_forward(void *out, const void *inp, const void *w, const void *b, int N,
                                int C, int OC) {
    cuda_matmul_forward_batched<S>(out, inp, w, b, N, C, OC, 1, 0, 0);
}

// dinp (N,C) = (dinp_beta x dinp) + dout @ w; dw (OC,C) += dout^T @ inp; db (OC) += colsum(dout)
template <typename S>
static void matmul_backward(void *dinp, void *dw, void *db, const void *dout, const void *inp,
                            const void *w, int N, int C, int OC, float dinp_beta) {
    if (!N) return;
    if (dinp) gemm<S>(CUBLAS_OP_N, CUBLAS_OP_N, C, N, OC, w, C, dout, OC, dinp, C, dinp_beta);
    gemm<S>(CUBLAS_OP_N, CUBLAS_OP_T, C, OC, N, inp, C, dout, OC, dw, C, 1.f);
    if (db) cuda_bias_grad_add<S>((S *)db, (const S *)dout, N, OC);
}

template <typename S>
static void cuda_matmul_backward(void *dinp, void *dw, void *db, const void *dout, const void *inp,
                                 const void *w, int N, int C, int OC) {
    matmul_backward<S>(dinp, dw, db, dout, inp, w, N, C, OC, 0.f);
}
template <typename S>
static void cuda_matmul_backward_add(void *dinp, void *dw, void *db, const void *dout,
                                     const void *inp, const void *w, int N, int C, int OC) {
    matmul_backward<S>(dinp, dw, db, dout, inp, w, N, C, OC, 1.f);
}

// members in order: dinp += dout_i @ w_i (one GEMM each, rounded after each as the separate
// calls did); the weight gradients in one strided-batched GEMM, the bias gradients in another
// (GEMVs against ones)
template <typename S>
static void cuda_matmul_backward_add_batched(void *dinp, void *dw, void *db, const void *dout,
                                             const void *inp, const void *w, int N, int C, int OC,
                                             int batch, size_t w_stride, size_t out_stride) {
    if (!N || batch <= 0) return;
    for (int i = 0; i < batch; i++)
        gemm<S>(CUBLAS_OP_N, CUBLAS_OP_N, C, N, OC, (const S *)w + i * w_stride, C,
                (const S *)dout + i * out_stride, OC, dinp, C, 1.f);
    gemm_batched<S>(CUBLAS_OP_N, CUBLAS_OP_T, C, OC, N, inp, C, 0, dout, OC, out_stride, dw, C,
                    w_stride, 1.f, batch);
    if (db && OC) {
        const void *ones = cuda_ones((size_t)N, sizeof(S) == 2);
        // col-major: dout_i is (OC,N), ones (N,1), db_i (OC,1)
        gemm_batched<S>(CUBLAS_OP_N, CUBLAS_OP_N, OC, 1, N, dout, OC, out_stride, ones, N, 0, db,
                        OC, w_stride, 1.f, batch);
    }
}

CUDA_EXPORT_OP(matmul_forward)
CUDA_EXPORT_OP(matmul_forward_batched)
CUDA_EXPORT_OP(matmul_backward_add_batched)
CUDA_EXPORT_OP(matmul_backward)
CUDA_EXPORT_OP(matmul_backward_add)
