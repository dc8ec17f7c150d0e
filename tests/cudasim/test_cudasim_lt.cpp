/* test_cudasim_lt — the cuBLASLt stand-in (include/cublasLt.h, cudasim_lt.cpp): a bias-epilogue
 * matmul against products worked out by hand (fp32; fp16 where rounding the product and then the
 * sum would give 2048, rounding once 2050), eager and replayed from a captured graph, its call
 * record (a GEMM named gemm_bias), and the calls cuBLASLt refuses: a bias epilogue without a bias,
 * layouts that disagree with the transposes, a non-fp32 scale type, and pointers less aligned
 * than the algorithm was chosen for. */
#include <cublasLt.h>
#include <cuda_runtime.h>

#include "cudasim_count.h"
#include "cudasim_test.h"

#include <cstring>

/* D (m,n) = A^T B + bias with A stored (k,m), B (k,n), D (m,n), all column-major */
struct problem {
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t a, b, d;
    cublasLtMatmulPreference_t pref;
    cublasStatus_t made;
    problem(cudaDataType t, int m, int n, int k, const void *bias, int with_epilogue,
            cudaDataType_t scale = CUDA_R_32F) {
        int32_t ta = CUBLAS_OP_T;
        uint32_t epi = with_epilogue ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
        uint32_t none = CUBLASLT_REDUCTION_SCHEME_NONE;
        made = cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, scale);
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi);
        if (bias)
            cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                           sizeof bias);
        cublasLtMatrixLayoutCreate(&a, t, (uint64_t)k, (uint64_t)m, k);
        cublasLtMatrixLayoutCreate(&b, t, (uint64_t)k, (uint64_t)n, k);
        cublasLtMatrixLayoutCreate(&d, t, (uint64_t)m, (uint64_t)n, m);
        cublasLtMatmulPreferenceCreate(&pref);
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK,
                                             &none, sizeof none);
    }
    ~problem() {
        cublasLtMatmulPreferenceDestroy(pref);
        cublasLtMatrixLayoutDestroy(d);
        cublasLtMatrixLayoutDestroy(b);
        cublasLtMatrixLayoutDestroy(a);
        cublasLtMatmulDescDestroy(op);
    }
    cublasStatus_t heuristic(cublasLtHandle_t h, cublasLtMatmulHeuristicResult_t *r, int *n) {
        return cublasLtMatmulAlgoGetHeuristic(h, op, a, b, d, d, pref, 1, r, n);
    }
    cublasStatus_t run(cublasLtHandle_t h, const void *A, const void *B, void *D,
                       const cublasLtMatmulAlgo_t *algo, cudaStream_t s) {
        const float one = 1.f, zero = 0.f;
        return cublasLtMatmul(h, op, &one, A, a, B, b, &zero, D, d, D, d, algo, nullptr, 0, s);
    }
};

int main(void) {
    cudaStream_t s;
    cublasLtHandle_t h;
    if (cudaStreamCreate(&s) != cudaSuccess || cublasLtCreate(&h) != CUBLAS_STATUS_SUCCESS)
        return 1;
    /* op(A) = [1 2; 3 4], B = [1 0 2; 0 1 1], bias (10, 20): D = [11 12 14; 23 24 30] */
    const float ha[] = {1, 2, 3, 4}, hb[] = {1, 0, 0, 1, 2, 1}, hbias[] = {10, 20};
    const float want[] = {11, 23, 12, 24, 14, 30};
    float *A, *B, *bias, *D;
    cudaMalloc((void **)&A, sizeof ha + sizeof(float)); /* A + 1: 4-byte aligned only */
    cudaMalloc((void **)&B, sizeof hb);
    cudaMalloc((void **)&bias, sizeof hbias);
    cudaMalloc((void **)&D, sizeof want);
    cudaMemcpy(A, ha, sizeof ha, cudaMemcpyHostToDevice);
    cudaMemcpy(B, hb, sizeof hb, cudaMemcpyHostToDevice);
    cudaMemcpy(bias, hbias, sizeof hbias, cudaMemcpyHostToDevice);
    {
        problem p(CUDA_R_32F, 2, 3, 2, bias, 1);
        cublasLtMatmulHeuristicResult_t r;
        int n = 0;
        EXPECT(p.made == CUBLAS_STATUS_SUCCESS && p.heuristic(h, &r, &n) == CUBLAS_STATUS_SUCCESS &&
                   n == 1,
               "no algorithm for a valid problem");
        cudasim_count_start(0, 0);
        EXPECT(p.run(h, A, B, D, &r.algo, s) == CUBLAS_STATUS_SUCCESS, "the matmul failed");
        cudaStreamSynchronize(s);
        const struct cudasim_record *ev;
        size_t ne = cudasim_count_events(&ev);
        EXPECT(ne == 1 && ev[0].kind == CUDASIM_EV_GEMM && !strcmp(ev[0].name, "gemm_bias") &&
                   ev[0].m == 2 && ev[0].n == 3 && ev[0].k == 2 && ev[0].transa == CUBLAS_OP_T,
               "the call record is not a 2x3x2 GEMM named gemm_bias");
        cudasim_count_stop();
        float got[6];
        cudaMemcpy(got, D, sizeof got, cudaMemcpyDeviceToHost);
        EXPECT(!memcmp(got, want, sizeof got), "fp32 D = %g %g %g %g %g %g", got[0], got[1], got[2],
               got[3], got[4], got[5]);
        /* captured, then replayed: the same D */
        cudaMemset(D, 0, sizeof want);
        cudaGraph_t g;
        cudaGraphExec_t x;
        cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal);
        EXPECT(p.run(h, A, B, D, &r.algo, s) == CUBLAS_STATUS_SUCCESS, "captured matmul failed");
        cudaStreamEndCapture(s, &g);
        cudaGraphInstantiate(&x, g);
        cudaGraphLaunch(x, s);
        cudaStreamSynchronize(s);
        cudaMemcpy(got, D, sizeof got, cudaMemcpyDeviceToHost);
        EXPECT(!memcmp(got, want, sizeof got), "replayed fp32 D differs");
        cudaGraphExecDestroy(x);
        cudaGraphDestroy(g);
        /* chosen for 256-byte pointers (the default): A + 1 is refused */
        EXPECT(p.run(h, A + 1, B, D, &r.algo, s) == CUBLAS_STATUS_NOT_SUPPORTED,
               "an algorithm ran on a pointer less aligned than it was chosen for");
    }
    {
        problem p(CUDA_R_32F, 2, 3, 2, nullptr, 1); /* bias epilogue, no bias */
        cublasLtMatmulHeuristicResult_t r;
        int n = 1;
        EXPECT(p.heuristic(h, &r, &n) == CUBLAS_STATUS_INVALID_VALUE && n == 0,
               "a bias epilogue without a bias pointer was accepted");
        problem q(CUDA_R_32F, 2, 3, 2, bias, 1, CUDA_R_16F); /* fp16 scale */
        EXPECT(q.heuristic(h, &r, &n) == CUBLAS_STATUS_NOT_SUPPORTED, "an fp16 scale accepted");
        problem t(CUDA_R_32F, 2, 3, 2, bias, 1);
        int32_t tn = CUBLAS_OP_N; /* A's (k,m) layout no longer fits op(A) (m,k) */
        cublasLtMatmulDescSetAttribute(t.op, CUBLASLT_MATMUL_DESC_TRANSA, &tn, sizeof tn);
        cublasLtMatrixLayoutDestroy(t.a);
        cublasLtMatrixLayoutCreate(&t.a, CUDA_R_32F, 3, 2, 3);
        EXPECT(t.heuristic(h, &r, &n) == CUBLAS_STATUS_INVALID_VALUE,
               "layouts that disagree with the transposes were accepted");
    }
    {
        /* fp16: 1 x 2048 + 1 x 1 = 2049 (no fp16) + bias 1 = 2050, rounded once */
        __half ha16[] = {__float2half(1.f), __float2half(1.f)};
        __half hb16[] = {__float2half(2048.f), __float2half(1.f)}, hbias16 = __float2half(1.f);
        __half *A16, *B16, *bias16, *D16;
        cudaMalloc((void **)&A16, sizeof ha16);
        cudaMalloc((void **)&B16, sizeof hb16);
        cudaMalloc((void **)&bias16, sizeof hbias16);
        cudaMalloc((void **)&D16, sizeof(__half));
        cudaMemcpy(A16, ha16, sizeof ha16, cudaMemcpyHostToDevice);
        cudaMemcpy(B16, hb16, sizeof hb16, cudaMemcpyHostToDevice);
        cudaMemcpy(bias16, &hbias16, sizeof hbias16, cudaMemcpyHostToDevice);
        problem p(CUDA_R_16F, 1, 1, 2, bias16, 1);
        cublasLtMatmulHeuristicResult_t r;
        int n = 0;
        EXPECT(p.heuristic(h, &r, &n) == CUBLAS_STATUS_SUCCESS && n == 1, "no fp16 algorithm");
        EXPECT(p.run(h, A16, B16, D16, &r.algo, s) == CUBLAS_STATUS_SUCCESS, "fp16 matmul failed");
        __half got;
        cudaMemcpy(&got, D16, sizeof got, cudaMemcpyDeviceToHost);
        EXPECT(__half2float(got) == 2050.f, "fp16 D = %g, want 2050", __half2float(got));
        cudaFree(A16);
        cudaFree(B16);
        cudaFree(bias16);
        cudaFree(D16);
    }
    cudaFree(A);
    cudaFree(B);
    cudaFree(bias);
    cudaFree(D);
    cublasLtDestroy(h);
    cudaStreamDestroy(s);
    if (g_fail)
        printf("FAILED (%d)\n", g_fail);
    else
        printf("PASSED\n");
    return g_fail ? 1 : 0;
}
