/* test_cudasim_traffic — the global-memory counters of the traffic build against values
 * derived by hand from the access patterns (Nsight Compute's definitions, cudasim_count.h):
 *   1. a coalesced fp32 copy: every warp load touches 32 x 4 consecutive bytes = 4 sectors,
 *      so 4 sectors per request; requested bytes = unique bytes = n x 4 each way; DRAM
 *      lower bound 2 x n x 4;
 *   2. a stride-32 fp32 gather: each lane's 4 bytes sit in a sector of their own (32 floats
 *      = 128 bytes apart), so 32 sectors per request; the store side stays at 4;
 *   3. a kernel that reads every input element twice (x[i] and x[n-1-i]): requested load
 *      bytes = 2 x unique load bytes = 2 x n x 4;
 *   4. block sampling: the copy of case 1 over 64 blocks with 8 simulated gives the same
 *      (scaled) totals; a launch whose 8 neighbouring blocks share one input row (64 blocks,
 *      8 rows) simulated at 8 blocks counts the shared row once: blocks 0-6 read row 0, the
 *      last block row 7, so 2 rows x scale 8 = 16 rows of unique loads (blocks spread over
 *      the grid would read 8 distinct rows: 64 after scaling, 8 times the truth);
 *   5. host memory and shared memory are not device traffic: a kernel that only uses
 *      __shared__ and its arguments has no loads or stores;
 *   6. the backend's 4-element pieces (ld4/st4 of kernels/cuda/common.cuh) are one access per
 *      lane, as nvcc issues them: for float a warp request covers 32 x 16 bytes = 16 sectors,
 *      for __half 32 x 8 bytes = 8, and each thread makes 2 accesses; and the gradient norm's
 *      kernel (optim.cu) makes one request per warp and piece: n / 4 / 32. (When the pieces
 *      were copied as structs, g++ split them inside that kernel's loop into 4 accesses of 4
 *      bytes, and this count was 4 times too high.)
 *   7. read-modify-write: Adam (optim.cu's adam_kernel, fp16 copy) on n = 64 x 256 parameters,
 *      every block and 16 of 64 sampled: per parameter it loads grad, m, v, master (4 x 4 B)
 *      and stores m, v, master (3 x 4 B) and the fp16 copy (2 B), so 16 n bytes loaded, 14 n
 *      stored, DRAM 30 n, 4 load and 4 store requests per warp (store sectors 4+4+4+2 per 4
 *      requests); with weight decay on, the 1-byte decay mask adds n loaded bytes (31 n), and
 *      without a copy the stores are 12 n (28 n). (With GCC's ASan hooks, a store to an address
 *      the same basic block had loaded got no hook: m, v and master were counted as read and
 *      never written, 18 n in all, and the cost model priced Adam at 60 % of its traffic.) A
 *      one-line in-place update (x[i] = 2 x[i]) stores what it loads: DRAM 8 n.
 * Compiled with the traffic flags itself, so that its kernels call the hooks. */
#include <cuda_runtime.h>

#include "cudasim_count.h"
#include "kernels/cuda/common.cuh"

static int g_fail;
#define EXPECT_EQ(got, want)                                                                       \
    do {                                                                                           \
        double g_ = (got), w_ = (want);                                                            \
        if (g_ != w_) {                                                                            \
            fprintf(stderr, "%s:%d: %s = %.17g, expected %.17g\n", __FILE__, __LINE__, #got, g_,   \
                    w_);                                                                           \
            g_fail++;                                                                              \
        }                                                                                          \
    } while (0)

__global__ void copy_kernel(float *out, const float *in, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = in[i];
}

__global__ void gather32_kernel(float *out, const float *in, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = in[(size_t)i * 32];
}

__global__ void shared_row_kernel(float *out, const float *in) {
    out[blockIdx.x * blockDim.x + threadIdx.x] = in[blockIdx.x / 8 * blockDim.x + threadIdx.x];
}

__global__ void read_twice_kernel(float *out, const float *in, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = in[i] - in[n - 1 - i];
}

__global__ void shared_only_kernel(int n) {
    __shared__ float buf[64];
    buf[threadIdx.x] = (float)n;
    __syncthreads();
    buf[threadIdx.x] += buf[63 - threadIdx.x];
}

/* kernels/cuda/optim.cu: the gradient norm's first pass */
__global__ void norm_squared_kernel(double *partials, const float *grad, size_t n, bool vec);

/* kernels/cuda/optim.cu: Adam(W) on fp32 master weights, writing the storage copy */
template <typename S>
__global__ void adam_kernel(float *master, S *copy, const float *grad, float *m, float *v, size_t n,
                            float lr, float beta1, float beta2, float eps, float wd,
                            float grad_scale, float bc1, float bc2_sqrt, const uint8_t *decay_mask);

__global__ void scale_in_place_kernel(float *x, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = 2.f * x[i];
}

template <typename S>
__global__ void piece_copy_kernel(S *out, const S *in) {
    size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * PW_PIECE;
    float f[PW_PIECE];
    ld4(f, in + i);
    double acc =
        (double)f[0] * f[0] + (double)f[1] * f[1] + (double)f[2] * f[2] + (double)f[3] * f[3];
    f[0] = f[1] = f[2] = f[3] = (float)acc;
    st4(out + i, f);
}

static const cudasim_record *only_kernel(const char *what) {
    const cudasim_record *ev;
    size_t count = cudasim_count_events(&ev);
    if (count != 1 || ev[0].kind != CUDASIM_EV_KERNEL) {
        fprintf(stderr, "%s: expected one kernel event, got %zu events\n", what, count);
        exit(1);
    }
    return ev;
}

int main(void) {
    if (!cudasim_count_has_traffic()) {
        fprintf(stderr, "linked without the traffic hooks\n");
        return 1;
    }
    const int n = 4096, threads = 256, blocks = n / threads;
    float *in, *out;
    if (cudaMalloc(&in, (size_t)n * 32 * sizeof(float)) || cudaMalloc(&out, n * sizeof(float)))
        return 1;
    cudaMemset(in, 0, (size_t)n * 32 * sizeof(float));

    cudasim_count_start(0, 0);
    XLMC_LAUNCH(copy_kernel, blocks, threads, 0, 0)(out, in, n);
    cudasim_count_stop();
    const cudasim_record *e = only_kernel("copy");
    EXPECT_EQ(e->load_requests, n / 32);
    EXPECT_EQ(e->load_sectors / e->load_requests, 4);
    EXPECT_EQ(e->store_sectors / e->store_requests, 4);
    EXPECT_EQ(e->load_bytes, n * 4.0);
    EXPECT_EQ(e->unique_load_bytes, n * 4.0);
    EXPECT_EQ(e->store_bytes, e->unique_store_bytes);
    EXPECT_EQ(e->dram_bytes, 2 * n * 4.0);
    EXPECT_EQ(e->max_thread_accesses, 2);

    cudasim_count_start(0, 0);
    XLMC_LAUNCH(gather32_kernel, blocks, threads, 0, 0)(out, in, n);
    cudasim_count_stop();
    e = only_kernel("gather");
    EXPECT_EQ(e->load_requests, n / 32);
    EXPECT_EQ(e->load_sectors / e->load_requests, 32);
    EXPECT_EQ(e->store_sectors / e->store_requests, 4);
    EXPECT_EQ(e->load_bytes, e->unique_load_bytes);
    EXPECT_EQ(e->dram_bytes, 32.0 * n + 4.0 * n);

    cudasim_count_start(0, 0);
    XLMC_LAUNCH(read_twice_kernel, blocks, threads, 0, 0)(out, in, n);
    cudasim_count_stop();
    e = only_kernel("read twice");
    EXPECT_EQ(e->load_bytes, 2 * e->unique_load_bytes);
    EXPECT_EQ(e->unique_load_bytes, n * 4.0);
    EXPECT_EQ(e->load_requests, 2 * n / 32);

    const int big = 64 * threads;
    float *in2, *out2;
    if (cudaMalloc(&in2, big * sizeof(float)) || cudaMalloc(&out2, big * sizeof(float))) return 1;
    cudasim_count_start(0, 8);
    XLMC_LAUNCH(copy_kernel, 64, threads, 0, 0)(out2, in2, big);
    cudasim_count_stop();
    e = only_kernel("sampled copy");
    EXPECT_EQ(e->scale, 8);
    EXPECT_EQ(e->load_bytes, big * 4.0);
    EXPECT_EQ(e->unique_store_bytes, big * 4.0);
    EXPECT_EQ(e->load_sectors / e->load_requests, 4);

    cudasim_count_start(0, 0);
    XLMC_LAUNCH(shared_row_kernel, 64, threads, 0, 0)(out2, in2);
    cudasim_count_stop();
    e = only_kernel("shared rows, every block");
    EXPECT_EQ(e->unique_load_bytes, 8.0 * threads * 4);
    cudasim_count_start(0, 8);
    XLMC_LAUNCH(shared_row_kernel, 64, threads, 0, 0)(out2, in2);
    cudasim_count_stop();
    e = only_kernel("shared rows, sampled");
    EXPECT_EQ(e->scale, 8);
    EXPECT_EQ(e->unique_load_bytes, 16.0 * threads * 4);
    EXPECT_EQ(e->unique_store_bytes, big * 4.0);

    cudasim_count_start(0, 0);
    XLMC_LAUNCH(shared_only_kernel, 2, 64, 0, 0)(n);
    cudasim_count_stop();
    e = only_kernel("shared only");
    EXPECT_EQ(e->load_bytes + e->store_bytes, 0);
    EXPECT_EQ(e->load_requests + e->store_requests, 0);

    cudasim_count_start(0, 0);
    XLMC_LAUNCH(piece_copy_kernel<float>, blocks, threads, 0, 0)(out2, in2);
    cudasim_count_stop();
    e = only_kernel("fp32 pieces");
    EXPECT_EQ(e->load_requests, n / 32);
    EXPECT_EQ(e->load_sectors / e->load_requests, 16);
    EXPECT_EQ(e->store_sectors / e->store_requests, 16);
    EXPECT_EQ(e->load_bytes, n * 4.0 * PW_PIECE);
    EXPECT_EQ(e->max_thread_accesses, 2);
    cudasim_count_start(0, 0);
    XLMC_LAUNCH(piece_copy_kernel<__half>, blocks, threads, 0, 0)((__half *)out2,
                                                                  (const __half *)in2);
    cudasim_count_stop();
    e = only_kernel("fp16 pieces");
    EXPECT_EQ(e->load_requests, n / 32);
    EXPECT_EQ(e->load_sectors / e->load_requests, 8);
    EXPECT_EQ(e->store_sectors / e->store_requests, 8);
    EXPECT_EQ(e->max_thread_accesses, 2);

    cudasim_count_start(0, 0);
    XLMC_LAUNCH(norm_squared_kernel, 4, threads, 0, 0)((double *)out, in2, (size_t)big, true);
    cudasim_count_stop();
    e = only_kernel("norm pieces");
    EXPECT_EQ(e->load_requests, big / PW_PIECE / 32);
    EXPECT_EQ(e->load_sectors / e->load_requests, 16);

    /* 7. read-modify-write: Adam over big = 64 blocks of 256 parameters */
    float *master, *grad, *m, *v;
    __half *copy;
    uint8_t *mask;
    if (cudaMalloc(&master, big * 4) || cudaMalloc(&grad, big * 4) || cudaMalloc(&m, big * 4) ||
        cudaMalloc(&v, big * 4) || cudaMalloc(&copy, big * 2) || cudaMalloc(&mask, big))
        return 1;
    cudaMemset(mask, 1, big);
    const double nb = big; /* parameters */
    for (int sample : {0, 16}) {
        for (int variant = 0; variant < 3; variant++) { /* plain, weight decay + mask, no copy */
            float wd = variant == 1 ? 0.01f : 0.f;
            __half *cp = variant == 2 ? nullptr : copy;
            cudasim_count_start(0, sample);
            XLMC_LAUNCH(adam_kernel<__half>, 64, threads, 0, 0)(master, cp, grad, m, v, (size_t)big,
                                                                1e-3f, 0.9f, 0.98f, 1e-8f, wd, 1.f,
                                                                1.f, 1.f, mask);
            cudasim_count_stop();
            e = only_kernel("adam");
            double loaded = 16 * nb + (variant == 1 ? nb : 0);
            double stored = 12 * nb + (variant == 2 ? 0 : 2 * nb);
            EXPECT_EQ(e->scale, sample ? 4 : 1);
            EXPECT_EQ(e->load_bytes, loaded);
            EXPECT_EQ(e->store_bytes, stored);
            EXPECT_EQ(e->unique_store_bytes, stored);
            EXPECT_EQ(e->dram_bytes, loaded + stored);
            EXPECT_EQ(e->load_requests, (variant == 1 ? 5 : 4) * nb / 32);
            EXPECT_EQ(e->store_requests, (variant == 2 ? 3 : 4) * nb / 32);
            EXPECT_EQ(e->store_sectors, stored / 32);
        }
    }
    cudasim_count_start(0, 16);
    XLMC_LAUNCH(scale_in_place_kernel, 64, threads, 0, 0)(master, big);
    cudasim_count_stop();
    e = only_kernel("in place");
    EXPECT_EQ(e->load_bytes, 4 * nb);
    EXPECT_EQ(e->store_bytes, 4 * nb);
    EXPECT_EQ(e->dram_bytes, 8 * nb);

    cudaFree(master);
    cudaFree(grad);
    cudaFree(m);
    cudaFree(v);
    cudaFree(copy);
    cudaFree(mask);
    cudaFree(in);
    cudaFree(out);
    cudaFree(in2);
    cudaFree(out2);
    printf(g_fail ? "FAILED (%d checks)\n" : "PASSED\n", g_fail);
    return g_fail ? 1 : 0;
}
