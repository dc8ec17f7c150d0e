/* test_cudasim_catches_bugs — proves cudasim catches what it is there to catch:
 *   1. a block reduction with a __syncthreads removed gives a wrong sum under at least one
 *      of the two schedules (ascending, seeded shuffle), while the correct one is right
 *      under both;
 *   2. an out-of-bounds store is reported (ASan in the sanitizer build; the guard bytes
 *      behind the buffer otherwise), in a child process so the report cannot stop the test;
 *   3. a __syncthreads that only part of the block reaches is reported (deadlock);
 *   4. a launch beyond the device limits (2048 threads per block, 64 KiB of dynamic shared
 *      memory without opting in) is refused. */
#include <cuda_runtime.h>

#include "cudasim_test.h"

#include <sys/wait.h>
#include <unistd.h>

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if ((x) != cudaSuccess) {                                                                  \
            fprintf(stderr, "%s:%d: %s failed\n", __FILE__, __LINE__, #x);                         \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

template <bool barrier_in_loop>
__global__ void reduce_kernel(float *out, const float *in) {
    __shared__ float buf[256];
    buf[threadIdx.x] = in[blockIdx.x * 256 + threadIdx.x];
    __syncthreads();
    for (int s = 128; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) buf[threadIdx.x] += buf[threadIdx.x + s];
        if (barrier_in_loop) __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = buf[0];
}

__global__ void off_by_one_kernel(float *out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i <= n) out[i] = 1.f; /* the bug: <= instead of < */
}

__global__ void noop_kernel(float *out) {
    (void)out;
}

/* a barrier only half the block reaches: hangs or corrupts on a GPU */
__global__ void divergent_barrier_kernel(float *out) {
    if (threadIdx.x < 16) __syncthreads();
    out[threadIdx.x] = 1.f;
}

/* Number of the 4 blocks whose sum is wrong. */
template <bool barrier_in_loop>
static int wrong_sums(int schedule) {
    const int blocks = 4, n = blocks * 256;
    float host[n], sums[blocks], *in, *out;
    for (int i = 0; i < n; i++)
        host[i] = (float)((i * 37) % 11); /* small ints: exact sums */
    CHECK(cudaMalloc(&in, n * sizeof(float)));
    CHECK(cudaMalloc(&out, blocks * sizeof(float)));
    CHECK(cudaMemcpy(in, host, sizeof host, cudaMemcpyHostToDevice));
    cudasim_set_schedule(schedule, 12345);
    XLMC_LAUNCH(reduce_kernel<barrier_in_loop>, blocks, 256, 0, 0)(out, in);
    CHECK(cudaGetLastError());
    CHECK(cudaMemcpy(sums, out, sizeof sums, cudaMemcpyDeviceToHost));
    int wrong = 0;
    for (int b = 0; b < blocks; b++) {
        float expect = 0.f;
        for (int i = 0; i < 256; i++)
            expect += host[b * 256 + i];
        wrong += sums[b] != expect;
    }
    CHECK(cudaFree(in));
    CHECK(cudaFree(out));
    return wrong;
}

/* Child: the divergent barrier; cudasim reports the deadlock and aborts. */
static int divergent_barrier_child(void) {
    float *buf;
    CHECK(cudaMalloc(&buf, 32 * sizeof(float)));
    XLMC_LAUNCH(divergent_barrier_kernel, 1, 32, 0, 0)(buf);
    CHECK(cudaFree(buf));
    return 0;
}

/* Child: the off-by-one store; returns 0 only if nothing noticed it. */
static int out_of_bounds_child(void) {
    const int n = 100;
#if defined(__SANITIZE_ADDRESS__)
    const int guard = 0; /* ASan's redzone right behind the buffer catches the store */
#else
    const int guard = 16;
#endif
    float *buf;
    CHECK(cudaMalloc(&buf, (n + guard) * sizeof(float)));
    CHECK(cudaMemset(buf, 0x7f, (n + guard) * sizeof(float)));
    XLMC_LAUNCH(off_by_one_kernel, 1, 128, 0, 0)(buf, n);
    CHECK(cudaGetLastError());
    unsigned char bytes[16 * sizeof(float)];
    if (guard) {
        memcpy(bytes, buf + n, sizeof bytes);
        for (size_t i = 0; i < sizeof bytes; i++)
            if (bytes[i] != 0x7f) {
                fprintf(stderr, "guard check: the bytes behind the buffer were overwritten\n");
                return 3;
            }
    }
    CHECK(cudaFree(buf));
    return 0;
}

int main(void) {
    int failures = 0;
    int ok_asc = wrong_sums<true>(CUDASIM_ASCENDING), ok_shuf = wrong_sums<true>(CUDASIM_SHUFFLE);
    int bad_asc = wrong_sums<false>(CUDASIM_ASCENDING),
        bad_shuf = wrong_sums<false>(CUDASIM_SHUFFLE);
    printf("correct reduction: %d/%d wrong blocks (ascending/shuffle)\n", ok_asc, ok_shuf);
    printf("missing barrier:   %d/%d wrong blocks (ascending/shuffle)\n", bad_asc, bad_shuf);
    if (ok_asc || ok_shuf) {
        fprintf(stderr, "FAIL: the correct reduction gave a wrong sum\n");
        failures++;
    }
    if (!bad_asc && !bad_shuf) {
        fprintf(stderr, "FAIL: the missing __syncthreads went unnoticed under both schedules\n");
        failures++;
    }

    printf("an out-of-bounds store follows: a report on stderr is expected\n");
    int reported = reported_in_child(out_of_bounds_child);
    printf("out-of-bounds store: %s\n", reported ? "reported" : "NOT reported");
    failures += !reported;
    printf("a __syncthreads reached by half the block follows: a report is expected\n");
    reported = reported_in_child(divergent_barrier_child);
    printf("divergent barrier: %s\n", reported ? "reported" : "NOT reported");
    failures += !reported;

    float *p;
    CHECK(cudaMalloc(&p, sizeof(float)));
    XLMC_LAUNCH(noop_kernel, 1, 2048, 0, 0)(p);
    cudaError_t err = cudaGetLastError();
    printf("launch of 2048 threads per block: %s\n", cudaGetErrorString(err));
    if (err != cudaErrorInvalidConfiguration) failures++;
    XLMC_LAUNCH(noop_kernel, 1, 32, 64 * 1024, 0)(p);
    err = cudaGetLastError();
    printf("launch with 64 KiB dynamic shared memory, no opt-in: %s\n", cudaGetErrorString(err));
    if (err != cudaErrorInvalidConfiguration) failures++;
    CHECK(cudaFree(p));
    printf(failures ? "FAILED\n" : "PASSED\n");
    return failures ? 1 : 0;
}
