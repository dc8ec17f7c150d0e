/* test_cudasim_counts — the counts of a scripted sequence of CUDA, cuBLAS and NCCL calls, each
 * known in advance: every event in order with its kind, kernel name, grid, block and stream;
 * GEMM shapes, data types, batch count and the alignment of the leading dimensions in bytes;
 * copy bytes, direction and pinned/pageable; memset bytes; NCCL bytes; and the device memory
 * in use and its high-water mark (1 MiB + 3 MiB allocated, 3 MiB freed, 2 MiB allocated:
 * high water 4 MiB, 3 MiB in use). Runs in every build, the sanitizer one included. */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include "cudasim_count.h"

static int g_fail;
#define EXPECT_EQ(got, want)                                                                       \
    do {                                                                                           \
        long long g_ = (long long)(got), w_ = (long long)(want);                                   \
        if (g_ != w_) {                                                                            \
            fprintf(stderr, "%s:%d: %s = %lld, expected %lld\n", __FILE__, __LINE__, #got, g_,     \
                    w_);                                                                           \
            g_fail++;                                                                              \
        }                                                                                          \
    } while (0)
#define EXPECT_STR(got, want)                                                                      \
    do {                                                                                           \
        if (strcmp((got), (want))) {                                                               \
            fprintf(stderr, "%s:%d: %s = %s, expected %s\n", __FILE__, __LINE__, #got, (got),      \
                    (want));                                                                       \
            g_fail++;                                                                              \
        }                                                                                          \
    } while (0)
#define OK(x)                                                                                      \
    do {                                                                                           \
        if ((int)(x) != 0) {                                                                       \
            fprintf(stderr, "%s:%d: %s failed\n", __FILE__, __LINE__, #x);                         \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

__global__ void fill_kernel(float *p, int n) {
    int i = (blockIdx.y * gridDim.x + blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n) p[i] = 1.f;
}

int main(void) {
    const size_t MiB = 1u << 20;
    size_t base = cudasim_mem_in_use();
    cudasim_mem_reset_high_water();
    cudaStream_t s;
    cublasHandle_t h;
    OK(cudaStreamCreate(&s));
    OK(cublasCreate(&h));
    OK(cublasSetStream(h, s));
    ncclUniqueId id;
    ncclComm_t comm;
    OK(ncclGetUniqueId(&id));
    OK(ncclCommInitRank(&comm, 1, id, 0));

    cudasim_count_start(0, 0);
    void *a, *b, *c, *pinned;
    OK(cudaMalloc(&a, 1 * MiB));
    OK(cudaMalloc(&b, 3 * MiB));
    OK(cudaFree(b));
    OK(cudaMalloc(&c, 2 * MiB));
    EXPECT_EQ(cudasim_mem_in_use() - base, 3 * MiB);
    EXPECT_EQ(cudasim_mem_high_water() - base, 4 * MiB);

    char *pageable = (char *)malloc(1000);
    memset(pageable, 1, 1000);
    OK(cudaMallocHost(&pinned, 600));
    OK(cudaMemcpy(a, pageable, 1000, cudaMemcpyHostToDevice));              /* event 0 */
    OK(cudaMemcpyAsync(pinned, a, 600, cudaMemcpyDeviceToHost, s));         /* event 1 */
    OK(cudaMemcpyAsync(c, a, 64, cudaMemcpyDeviceToDevice, s));             /* event 2 */
    OK(cudaMemsetAsync(c, 0, 256, s));                                      /* event 3 */
    XLMC_LAUNCH(fill_kernel, dim3(3, 2), 64, 0, s)((float *)c, 3 * 2 * 64); /* event 4 */
    float one = 1.f, zero = 0.f;
    /* fp16 5x7 = (5x9)(9x7), lda 5 halves = 10 bytes: 2-byte aligned */
    OK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 5, 7, 9, &one, a, CUDA_R_16F, 5, c, CUDA_R_16F, 9,
                    &zero, a, CUDA_R_16F, 5, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT)); /* 5 */
    /* fp16 op(A)^T: 16x8 = (32x16)^T (32x8), leading dims 32, 32, 16 halves: 16-byte aligned */
    OK(cublasGemmStridedBatchedEx(h, CUBLAS_OP_T, CUBLAS_OP_N, 16, 8, 32, &one, a, CUDA_R_16F, 32,
                                  512, c, CUDA_R_16F, 32, 256, &zero, a, CUDA_R_16F, 16, 128, 3,
                                  CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT)); /* 6 */
    /* fp32, ldb 6 floats = 24 bytes: 8-byte aligned */
    OK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_T, 4, 4, 4, &one, a, CUDA_R_32F, 4, c, CUDA_R_32F, 6,
                    &zero, a, CUDA_R_32F, 4, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT)); /* 7 */
    OK(ncclAllReduce(a, a, 100, ncclFloat32, ncclSum, comm, s)); /* event 8: 400 bytes */
    cudasim_count_mark("end");                                   /* event 9 */
    cudasim_count_stop();

    const cudasim_record *e;
    size_t n = cudasim_count_events(&e);
    EXPECT_EQ(n, 10);
    if (n != 10) return 1;
    int sid = e[1].stream;
    EXPECT_EQ(e[0].kind, CUDASIM_EV_COPY);
    EXPECT_EQ(e[0].bytes, 1000);
    EXPECT_EQ(e[0].dir, CUDASIM_H2D);
    EXPECT_EQ(e[0].pinned, 0);
    EXPECT_EQ(e[0].stream, 0);
    EXPECT_EQ(e[1].kind, CUDASIM_EV_COPY);
    EXPECT_EQ(e[1].bytes, 600);
    EXPECT_EQ(e[1].dir, CUDASIM_D2H);
    EXPECT_EQ(e[1].pinned, 1);
    EXPECT_EQ(sid > 0, 1);
    EXPECT_EQ(e[2].dir, CUDASIM_D2D);
    EXPECT_EQ(e[2].bytes, 64);
    EXPECT_EQ(e[3].kind, CUDASIM_EV_MEMSET);
    EXPECT_EQ(e[3].bytes, 256);
    EXPECT_EQ(e[4].kind, CUDASIM_EV_KERNEL);
    EXPECT_STR(e[4].name, "fill_kernel");
    EXPECT_EQ(e[4].grid[0] * 10 + e[4].grid[1], 32);
    EXPECT_EQ(e[4].grid[2], 1);
    EXPECT_EQ(e[4].block[0], 64);
    EXPECT_EQ(e[4].threads, 384);
    EXPECT_EQ(e[4].stream, sid);
    EXPECT_EQ(e[5].kind, CUDASIM_EV_GEMM);
    EXPECT_EQ(e[5].m * 10000 + e[5].n * 100 + e[5].k, 50709);
    EXPECT_EQ(e[5].batch, 1);
    EXPECT_EQ(e[5].transa * 10 + e[5].transb, 0);
    EXPECT_EQ(e[5].lda * 10000 + e[5].ldb * 100 + e[5].ldc, 50905);
    EXPECT_EQ(e[5].atype, CUDA_R_16F);
    EXPECT_EQ(e[5].align_bytes, 2);
    EXPECT_EQ(e[5].stream, sid);
    EXPECT_EQ(e[6].m * 10000 + e[6].n * 100 + e[6].k, 160832);
    EXPECT_EQ(e[6].batch, 3);
    EXPECT_EQ(e[6].transa * 10 + e[6].transb, 10);
    EXPECT_EQ(e[6].align_bytes, 16);
    EXPECT_EQ(e[7].atype, CUDA_R_32F);
    EXPECT_EQ(e[7].elem_bytes, 4);
    EXPECT_EQ(e[7].transb, 1);
    EXPECT_EQ(e[7].align_bytes, 8);
    EXPECT_EQ(e[8].kind, CUDASIM_EV_NCCL);
    EXPECT_STR(e[8].name, "allreduce");
    EXPECT_EQ(e[8].bytes, 400);
    EXPECT_EQ(e[8].stream, sid);
    EXPECT_EQ(e[9].kind, CUDASIM_EV_MARK);
    EXPECT_STR(e[9].name, "end");

    OK(cudaFree(a));
    OK(cudaFree(c));
    EXPECT_EQ(cudasim_mem_in_use(), base);
    OK(cudaFreeHost(pinned));
    free(pageable);
    OK(ncclCommDestroy(comm));
    OK(cublasDestroy(h));
    OK(cudaStreamDestroy(s));
    printf(g_fail ? "FAILED (%d checks)\n" : "PASSED\n", g_fail);
    return g_fail ? 1 : 0;
}
