/* test_cudasim_flops — the floating-point operations the traffic build counts
 * (XLMC_COUNT_FLOPS, cudasim_count.h field flops) against counts derived by hand:
 *   1. a toy kernel whose every thread does K FMAs (2 FLOPs each, the convention of
 *      kernels/cuda/common.cuh), 64 blocks of 128 threads simulated at 8 blocks: exactly
 *      2 K x 64 x 128 after scaling;
 *   2. unsampled, thread i of a guarded grid (n not a multiple of the block) doing i % 7 FMAs:
 *      exactly 2 x sum over i < n of (i % 7), the sum taken here by a plain loop;
 *   3. the CUDA backend's attention forward, causal, B 2, NH 2, HS 64, T 96 (three 32-row tiles
 *      of queries and of keys, ATT_FWD_BQ = ATT_FWD_BK = 32 in kernels/cuda/attention.cu). Per
 *      (b, h) the causal arithmetic is QK^T and PV over the T (T+1) / 2 visible pairs, 2 HS
 *      FLOPs each: 4 HS T (T+1) / 2, a lower bound. Query tile i computes key tiles 0..i (the
 *      tiles past the diagonal are skipped), 1 + 2 + 3 = 6 tiles, each at most 4 x 32 x 32 x HS
 *      for its two products, plus at most 10 % for the softmax and the rescale: the upper
 *      bound. A kernel that computed the skipped tiles (9 per head) would exceed it;
 *   4. tensor-core FLOPs (field tc_flops): a toy kernel whose every warp makes R mma_sync calls
 *      (tests/cudasim/include/mma.h), 48 blocks of 4 warps sampled at 8 blocks: exactly
 *      2 x 16^3 x R x 4 x 48, and no SIMT FLOPs.
 * Compiled with the traffic flags, so that its own kernels count too. */
#include <cuda_runtime.h>

#include "cudasim_test.h"
#include <mma.h>

#include "cudasim_count.h"
#include "kernels/ops.h"

extern "C" const struct ops *cudasim_ops_cuda(enum ops_precision precision, int device, char *why,
                                              size_t why_len);

__global__ void fma_kernel(float *out, int k) {
    float acc = (float)threadIdx.x;
    for (int i = 0; i < k; i++) {
        acc = acc * 0.5f + 1.f;
        XLMC_COUNT_FLOPS(2);
    }
    out[blockIdx.x * blockDim.x + threadIdx.x] = acc;
}

__global__ void ragged_kernel(float *out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float acc = 0.f;
    for (int j = 0; j < i % 7; j++) {
        acc = acc * 0.25f + 2.f;
        XLMC_COUNT_FLOPS(2);
    }
    out[i] = acc;
}

__global__ void mma_kernel(float *out, const __half *a, int r) {
    using namespace nvcuda;
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> fb;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    wmma::fill_fragment(acc, 0.f);
    wmma::load_matrix_sync(fa, a, 16);
    wmma::load_matrix_sync(fb, a, 16);
    for (int i = 0; i < r; i++)
        wmma::mma_sync(acc, fa, fb, acc);
    int w = (int)(blockIdx.x * blockDim.x + threadIdx.x) / 32;
    wmma::store_matrix_sync(out + 256 * w, acc, 16, wmma::mem_row_major);
}

/* the FLOPs of the one kernel launch counted since the last start */
static double kernel_flops(const char *what) {
    const cudasim_record *ev;
    size_t n = cudasim_count_events(&ev), kernels = 0;
    double f = 0;
    for (size_t i = 0; i < n; i++)
        if (ev[i].kind == CUDASIM_EV_KERNEL) kernels++, f += ev[i].flops;
    if (kernels != 1) {
        fprintf(stderr, "%s: expected one kernel launch, got %zu\n", what, kernels);
        exit(1);
    }
    return f;
}

int main(void) {
    if (!cudasim_count_has_traffic()) {
        fprintf(stderr, "linked without the traffic hooks\n");
        return 1;
    }
    const int blocks = 64, threads = 128, K = 37;
    float *out;
    if (cudaMalloc(&out, (size_t)blocks * threads * sizeof(float))) return 1;

    cudasim_count_start(0, 8);
    XLMC_LAUNCH(fma_kernel, blocks, threads, 0, 0)(out, K);
    cudasim_count_stop();
    double got = kernel_flops("toy FMAs");
    double want = 2.0 * K * blocks * threads;
    EXPECT(got == want, "sampled toy kernel: %.17g FLOPs, expected %.17g", got, want);

    const int n = blocks * threads - 45;
    cudasim_count_start(0, 0);
    XLMC_LAUNCH(ragged_kernel, blocks, threads, 0, 0)(out, n);
    XLMC_COUNT_FLOPS(1000); /* host code: not a kernel's arithmetic */
    cudasim_count_stop();
    got = kernel_flops("ragged FMAs");
    want = 0;
    for (int i = 0; i < n; i++)
        want += 2.0 * (i % 7);
    EXPECT(got == want, "ragged kernel: %.17g FLOPs, expected %.17g", got, want);
    cudaFree(out);

    const int mblocks = 48, mwarps = 4, R = 5;
    __half *ma;
    if (cudaMalloc(&out, (size_t)mblocks * mwarps * 256 * sizeof(float)) ||
        cudaMalloc(&ma, 256 * sizeof(__half)) || cudaMemset(ma, 0, 256 * sizeof(__half)))
        return 1;
    cudasim_count_start(0, 8);
    XLMC_LAUNCH(mma_kernel, mblocks, 32 * mwarps, 0, 0)(out, ma, R);
    cudasim_count_stop();
    got = kernel_flops("toy mma_sync");
    const cudasim_record *ev;
    size_t nev = cudasim_count_events(&ev);
    double tc = 0;
    for (size_t i = 0; i < nev; i++)
        tc += ev[i].kind == CUDASIM_EV_KERNEL ? ev[i].tc_flops : 0;
    want = 2.0 * 16 * 16 * 16 * R * mwarps * mblocks;
    EXPECT(tc == want, "toy mma_sync kernel: %.17g tensor FLOPs, expected %.17g", tc, want);
    EXPECT(got == 0, "toy mma_sync kernel: %.17g SIMT FLOPs, expected none", got);
    printf("toy mma_sync kernel: %.0f tensor FLOPs counted, %.0f expected\n", tc, want);
    cudaFree(out);
    cudaFree(ma);

    char why[256] = "";
    const struct ops *o = cudasim_ops_cuda(OPS_FP32, 0, why, sizeof why);
    if (!o) {
        fprintf(stderr, "the cudasim backend did not open: %s\n", why);
        return 1;
    }
    const int B = 2, NH = 2, HS = 64, T = 96, C = NH * HS, tile = 32;
    size_t act = (size_t)B * T * C * o->storage_bytes;
    void *q = o->alloc(act), *k = o->alloc(act), *v = o->alloc(act), *y = o->alloc(act);
    float *lse = (float *)o->alloc((size_t)B * NH * T * sizeof(float));
    if (!q || !k || !v || !y || !lse) return 1;
    cudasim_count_start(0, 0);
    o->attention_forward(y, lse, q, k, v, NULL, B, T, C, NH, 0.f, NULL);
    cudasim_count_stop();
    got = kernel_flops("attention forward");
    double heads = (double)B * NH, pairs = T * (T + 1) / 2.0;
    int qt = T / tile;
    double tiles = qt * (qt + 1) / 2.0; // query tile i: key tiles 0..i
    double lo = heads * 4.0 * HS * pairs;
    double hi = heads * tiles * 4.0 * tile * tile * HS * 1.1;
    EXPECT(got >= lo && got <= hi, "attention forward: %.17g FLOPs, expected within [%.17g, %.17g]",
           got, lo, hi);
    printf("attention forward, causal, B %d NH %d HS %d T %d: %.0f FLOPs counted; analytic causal "
           "%.0f; computed tiles x 4 x %d^2 x HS = %.0f\n",
           B, NH, HS, T, got, lo, tile, hi / 1.1);
    o->free(q), o->free(k), o->free(v), o->free(y), o->free(lse);
    printf(g_fail ? "FAILED (%d checks)\n" : "PASSED\n", g_fail);
    return g_fail ? 1 : 0;
}
