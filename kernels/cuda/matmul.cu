/* matmul.cu — linear layers through cuBLAS (fp16 or fp32 inputs, fp32 accumulation).
 * Row-major (N,C) buffers are column-major (C,N) matrices to cuBLAS, so every product below
 * is written for the transposed, column-major view. */
#include "kernels/cuda/common.cuh"

// out (N,OC) = broadcast b (OC): the GEMM then adds into it with beta = 1. PW_VEC elements
// of one row per thread when vec (OC % PW_VEC == 0, aligned pointers).
template <typename S>
__global__ void bias_broadcast_kernel(S *out, const S *b, int OC, size_t n, bool vec) {
    int lane;
    size_t base = pw_base(&lane);
    if (base >= n) return;
    float v[PW_VEC];
    ld_bias8(v, b, OC, vec, base, lane, n);
    st8(out, v, vec, base, lane, n);
}

template <typename S>
static void gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const void *A,
                 int lda, const void *B, int ldb, void *C, int ldc, float beta) {
    const float alpha = 1.f;
    cudaDataType_t t = storage_type<S>::blas;
    cublasCheck(cublasGemmEx(g_cuda.blas, ta, tb, m, n, k, &alpha, A, t, lda, B, t, ldb, &beta, C,
                             t, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

// out (N,OC) = inp (N,C) @ w (OC,C)^T + b (OC)
template <typename S>
static void cuda_matmul_forward(void *out, const void *inp, const void *w, const void *b, int N,
                                int C, int OC) {
    if (!N || !OC) return;
    size_t n = (size_t)N * OC;
    if (b) {
        XLMC_LAUNCH(bias_broadcast_kernel<S>, cuda_blocks((n + PW_VEC - 1) / PW_VEC, 256), 256, 0,
                    g_cuda.stream)((S *)out, (const S *)b, OC, n, pw_vec_ok((size_t)OC, out, b));
        cudaLaunchCheck();
    }
    // out^T (OC,N) = w^T' ... : col-major w is (C,OC), so op T gives (OC,C); inp is (C,N)
    gemm<S>(CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, w, C, inp, C, out, OC, b ? 1.f : 0.f);
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

CUDA_EXPORT_OP(matmul_forward)
CUDA_EXPORT_OP(matmul_backward)
CUDA_EXPORT_OP(matmul_backward_add)
