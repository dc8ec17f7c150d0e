/* test_cudasim_wmma — cudasim's nvcuda::wmma stand-in (tests/cudasim/include/mma.h):
 *   1. D (48,32) = A (48,64) B (64,32) + C, one 16x16 tile of D per warp, K in four 16-steps,
 *      for A row- and column-major, B row- and column-major, C loaded and D stored in both
 *      memory layouts: against a double-precision product of the same fp16 inputs. Small
 *      integers give exact products and sums (|x| <= 4, 64 terms): exact equality; random
 *      halves: within 1e-6 relative of the sum of |terms| (fp32 partial sums);
 *   2. a kernel that assumes which lane holds which element (the "obvious" row-major order)
 *      to mask a tile's upper triangle gets a wrong answer, as it would on a GPU, while the
 *      same masking done on the stored tile is right, under both schedules;
 *   3. what CUDA forbids ends the run (in a child process): an ldm that is not a multiple of
 *      16 bytes, a pointer that is not 256-bit aligned, lanes passing different pointers, half
 *      a warp calling mma_sync. */
#include <cuda_runtime.h>

#include "cudasim_test.h"
#include <mma.h>

#include <cmath>
#include <vector>
#include <sys/wait.h>
#include <unistd.h>

using namespace nvcuda;

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if ((x) != cudaSuccess) {                                                                  \
            fprintf(stderr, "%s:%d: %s failed\n", __FILE__, __LINE__, #x);                         \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

enum { M = 48, N = 32, K = 64 };

/* A (M,K) with ld lda, row- or column-major; B (K,N) likewise; C and D (M,N) in layout lc.
 * blockIdx.x: the tile row, warp w of the block: the tile column. */
template <class LA, class LB>
__global__ void gemm_kernel(float *d, const __half *a, const __half *b, const float *c, int lda,
                            int ldb, int ldc, int lc) {
    int tm = blockIdx.x, tn = threadIdx.x / 32;
    constexpr bool arow = std::is_same<LA, wmma::row_major>::value;
    constexpr bool brow = std::is_same<LB, wmma::row_major>::value;
    wmma::layout_t ml = lc ? wmma::mem_col_major : wmma::mem_row_major;
    const float *ct =
        lc ? c + (size_t)(16 * tn) * ldc + 16 * tm : c + (size_t)(16 * tm) * ldc + 16 * tn;
    float *dt = lc ? d + (size_t)(16 * tn) * ldc + 16 * tm : d + (size_t)(16 * tm) * ldc + 16 * tn;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    wmma::load_matrix_sync(acc, ct, (unsigned)ldc, ml);
    for (int k = 0; k < K; k += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, LA> fa;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, LB> fb;
        const __half *at = arow ? a + (size_t)(16 * tm) * lda + k : a + (size_t)k * lda + 16 * tm;
        const __half *bt = brow ? b + (size_t)k * ldb + 16 * tn : b + (size_t)(16 * tn) * ldb + k;
        wmma::load_matrix_sync(fa, at, (unsigned)lda);
        wmma::load_matrix_sync(fb, bt, (unsigned)ldb);
        wmma::mma_sync(acc, fa, fb, acc);
    }
    wmma::store_matrix_sync(dt, acc, (unsigned)ldc, ml);
}

static float h2f(__half h) {
    return __half2float(h);
}

/* host A (M,K) and B (K,N) values: small integers or random halves */
static void fill(std::vector<__half> &a, std::vector<__half> &b, std::vector<float> &c, int ints,
                 unsigned seed) {
    srand(seed);
    auto v = [&]() {
        return ints ? (float)(rand() % 9 - 4) : (float)rand() / RAND_MAX * 2.f - 1.f;
    };
    for (auto &x : a)
        x = __float2half(v());
    for (auto &x : b)
        x = __float2half(v());
    for (auto &x : c)
        x = ints ? (float)(rand() % 7 - 3) : v();
}

template <class LA, class LB>
static void check_gemm(int lc, int ints) {
    constexpr bool arow = std::is_same<LA, wmma::row_major>::value;
    constexpr bool brow = std::is_same<LB, wmma::row_major>::value;
    const int lda = (arow ? K : M) + 8, ldb = (brow ? N : K) + 8, ldc = (lc ? M : N) + 4;
    std::vector<__half> a((size_t)lda * (arow ? M : K)), b((size_t)ldb * (brow ? K : N));
    std::vector<float> c((size_t)ldc * (lc ? N : M)), d(c.size());
    fill(a, b, c, ints, 7u + (unsigned)lc + 2u * arow + 4u * brow);
    auto A = [&](int i, int k) {
        return (double)h2f(arow ? a[(size_t)i * lda + k] : a[(size_t)k * lda + i]);
    };
    auto B = [&](int k, int j) {
        return (double)h2f(brow ? b[(size_t)k * ldb + j] : b[(size_t)j * ldb + k]);
    };
    auto Cx = [&](std::vector<float> &x, int i, int j) -> float & {
        return lc ? x[(size_t)j * ldc + i] : x[(size_t)i * ldc + j];
    };
    __half *da, *db;
    float *dc, *dd;
    CHECK(cudaMalloc(&da, a.size() * sizeof(__half)));
    CHECK(cudaMalloc(&db, b.size() * sizeof(__half)));
    CHECK(cudaMalloc(&dc, c.size() * sizeof(float)));
    CHECK(cudaMalloc(&dd, d.size() * sizeof(float)));
    CHECK(cudaMemcpy(da, a.data(), a.size() * sizeof(__half), cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(db, b.data(), b.size() * sizeof(__half), cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(dc, c.data(), c.size() * sizeof(float), cudaMemcpyHostToDevice));
    XLMC_LAUNCH((gemm_kernel<LA, LB>), M / 16, 32 * (N / 16), 0, 0)(dd, da, db, dc, lda, ldb, ldc,
                                                                    lc);
    CHECK(cudaGetLastError());
    CHECK(cudaMemcpy(d.data(), dd, d.size() * sizeof(float), cudaMemcpyDeviceToHost));
    double worst = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = Cx(c, i, j), mag = fabs(s);
            for (int k = 0; k < K; k++)
                s += A(i, k) * B(k, j), mag += fabs(A(i, k) * B(k, j));
            double err = fabs(Cx(d, i, j) - s) / (mag > 0 ? mag : 1);
            if (ints) EXPECT(Cx(d, i, j) == s, "(%d,%d): %g vs exact %g", i, j, Cx(d, i, j), s);
            worst = fmax(worst, err);
        }
    EXPECT(worst <= 1e-6, "A %s, B %s, C/D %s: worst error %.3g of the sum of |terms|",
           arow ? "row" : "col", brow ? "row" : "col", lc ? "col" : "row", worst);
    printf("gemm A %s-major, B %s-major, C/D %s-major, %s: worst error %.2g of sum |terms|\n",
           arow ? "row" : "col", brow ? "row" : "col", lc ? "col" : "row",
           ints ? "integers" : "random", worst);
    CHECK(cudaFree(da));
    CHECK(cudaFree(db));
    CHECK(cudaFree(dc));
    CHECK(cudaFree(dd));
}

/* D (16,16) = A B with the strict upper triangle zeroed. by_position: the mask picks elements
 * by an assumed lane order (lane l holds elements 8l .. 8l+7, row-major): a bug on a GPU.
 * Otherwise the product is stored and masked in memory. */
__global__ void masked_kernel(float *d, const __half *a, const __half *b, int by_position) {
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> fb;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    wmma::fill_fragment(acc, 0.f);
    wmma::load_matrix_sync(fa, a, 16);
    wmma::load_matrix_sync(fb, b, 16);
    wmma::mma_sync(acc, fa, fb, acc);
    int lane = threadIdx.x;
    if (by_position)
        for (int e = 0; e < acc.num_elements; e++) {
            int i = 8 * lane + e;
            if (i % 16 > i / 16) acc.x[e] = 0.f;
        }
    wmma::store_matrix_sync(d, acc, 16, wmma::mem_row_major);
    __syncwarp();
    if (!by_position)
        for (int i = lane; i < 256; i += 32)
            if (i % 16 > i / 16) d[i] = 0.f;
}

static int masked_wrong(int by_position, int schedule) {
    std::vector<__half> a(256), b(256);
    std::vector<float> c(256), d(256);
    fill(a, b, c, 1, 99);
    __half *da, *db;
    float *dd;
    CHECK(cudaMalloc(&da, 256 * sizeof(__half)));
    CHECK(cudaMalloc(&db, 256 * sizeof(__half)));
    CHECK(cudaMalloc(&dd, 256 * sizeof(float)));
    CHECK(cudaMemcpy(da, a.data(), 256 * sizeof(__half), cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(db, b.data(), 256 * sizeof(__half), cudaMemcpyHostToDevice));
    cudasim_set_schedule(schedule, 4242);
    XLMC_LAUNCH(masked_kernel, 1, 32, 0, 0)(dd, da, db, by_position);
    CHECK(cudaMemcpy(d.data(), dd, 256 * sizeof(float), cudaMemcpyDeviceToHost));
    int wrong = 0;
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++) {
            float s = 0.f;
            for (int k = 0; k < 16; k++)
                s += h2f(a[i * 16 + k]) * h2f(b[k * 16 + j]);
            if (j > i) s = 0.f;
            wrong += d[i * 16 + j] != s;
        }
    CHECK(cudaFree(da));
    CHECK(cudaFree(db));
    CHECK(cudaFree(dd));
    return wrong;
}

/* misuse kernels: what = 0 ldm 12, 1 a misaligned pointer, 2 per-lane pointers, 3 half a warp */
__global__ void misuse_kernel(const __half *a, int what) {
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> fb;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    wmma::fill_fragment(acc, 0.f);
    wmma::fill_fragment(fb, 1.f);
    if (what == 0) wmma::load_matrix_sync(fa, a, 12);
    if (what == 1) wmma::load_matrix_sync(fa, a + 8, 16);
    if (what == 2) wmma::load_matrix_sync(fa, a + 16 * (threadIdx.x % 2), 16);
    if (what == 3) {
        wmma::fill_fragment(fa, 1.f);
        if (threadIdx.x < 16) wmma::mma_sync(acc, fa, fb, acc);
    }
}

static int g_what;
static int misuse_child(void) {
    __half *a;
    CHECK(cudaMalloc(&a, 512 * sizeof(__half)));
    XLMC_LAUNCH(misuse_kernel, 1, 32, 0, 0)(a, g_what);
    CHECK(cudaFree(a));
    return 0;
}

int main(void) {
    for (int ints = 1; ints >= 0; ints--)
        for (int lc = 0; lc < 2; lc++) {
            check_gemm<wmma::row_major, wmma::row_major>(lc, ints);
            check_gemm<wmma::row_major, wmma::col_major>(lc, ints);
            check_gemm<wmma::col_major, wmma::row_major>(lc, ints);
            check_gemm<wmma::col_major, wmma::col_major>(lc, ints);
        }
    for (int s = CUDASIM_ASCENDING; s <= CUDASIM_SHUFFLE; s++) {
        int right = masked_wrong(0, s), assumed = masked_wrong(1, s);
        printf("triangle mask, schedule %d: %d wrong elements masked in memory, %d by an assumed "
               "lane order\n",
               s, right, assumed);
        EXPECT(right == 0, "masking the stored tile: %d wrong", right);
        EXPECT(assumed > 0, "the assumed lane order went unnoticed");
    }
    const char *misuse[] = {"ldm of 12 halves", "a pointer 16 bytes off 256-bit alignment",
                            "different pointers in the lanes", "half a warp in mma_sync"};
    for (g_what = 0; g_what < 4; g_what++) {
        int reported = reported_in_child(misuse_child);
        printf("%s: %s\n", misuse[g_what], reported ? "reported" : "NOT reported");
        EXPECT(reported, "%s went unnoticed", misuse[g_what]);
    }
    if (g_fail) {
        fprintf(stderr, "test_cudasim_wmma: %d failure(s)\n", g_fail);
        return 1;
    }
    printf("test_cudasim_wmma: ok\n");
    return 0;
}
