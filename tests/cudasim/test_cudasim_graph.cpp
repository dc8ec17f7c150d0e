/* test_cudasim_graph — stream capture and CUDA Graphs in cudasim:
 *   1. a captured sequence (a pinned host-to-device copy, a memset, three kernels, one of them
 *      given a struct by value from a scope that has ended, a device-to-device copy, a GEMM, a
 *      pinned device-to-host copy) runs nothing while it is captured: every buffer keeps its
 *      sentinel and the count log stays empty;
 *   2. its replay gives what plain host arithmetic gives (small integers and halves: exact),
 *      bit for bit what the same calls issued eagerly gave;
 *   3. a second replay after the inputs changed gives the new results (a graph reads memory
 *      when it runs), the GEMM keeping the alpha it had at capture (host pointer mode);
 *   4. the log of a replay: one graph event with the number of nodes, then every call with
 *      in_graph = 1 on the launch stream; the kernel launch counter moves at replay only;
 *   5. every call CUDA refuses during a capture ends the run with a report (in a child
 *      process), and what CUDA allows (another thread's thread-local capture, relaxed mode, a
 *      non-blocking capturing stream beside legacy-stream work) does not.
 * usage: test_cudasim_graph ascending|shuffle */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include "cudasim_count.h"
#include "cudasim_test.h"

#include <thread>

#define OK(x)                                                                                      \
    do {                                                                                           \
        if ((int)(x) != 0) {                                                                       \
            fprintf(stderr, "%s:%d: %s failed\n", __FILE__, __LINE__, #x);                         \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

enum { N = 256, THREADS = 64, BLOCKS = N / THREADS, GM = 4, GK = 8, GN = 3, NODES = 8 };
static const float SENTINEL = -7.25f, ALPHA = 0.5f;

__global__ void axpy_kernel(float *y, const float *x, float a, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] += a * x[i];
}

struct add_args {
    float *p;
    int n;
    float v;
};
__global__ void add_kernel(add_args a) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < a.n) a.p[i] += a.v;
}

/* out[b] = the sum of block b's THREADS elements (a tree: wrong without its barriers) */
__global__ void block_sum_kernel(float *out, const float *in) {
    __shared__ float buf[THREADS];
    buf[threadIdx.x] = in[blockIdx.x * THREADS + threadIdx.x];
    __syncthreads();
    for (int s = THREADS / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) buf[threadIdx.x] += buf[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = buf[0];
}

struct bufs {
    float *h_in, *h_out;            /* pinned: h_in (N), h_out (BLOCKS) */
    float *x, *y, *z, *sum, *B, *C; /* device: N, N, N, BLOCKS, GK x GN, GM x GN */
};

/* The struct lives in this frame only: a replay must use the launch's own copy of it. */
static void add_from_scope(float *p, cudaStream_t s) {
    add_args a = {p, N, 0.5f};
    XLMC_LAUNCH(add_kernel, BLOCKS, THREADS, 0, s)(a);
}

/* x = h_in; y = 2x; z = y + 0.5; sum = block sums of z; C = alpha x(GM x GK) B; h_out = sum */
static void issue(const bufs &b, cudaStream_t s, cublasHandle_t h) {
    OK(cudaMemcpyAsync(b.x, b.h_in, N * sizeof(float), cudaMemcpyHostToDevice, s));
    OK(cudaMemsetAsync(b.y, 0, N * sizeof(float), s));
    XLMC_LAUNCH(axpy_kernel, BLOCKS, THREADS, 0, s)(b.y, b.x, 2.0f, N);
    OK(cudaMemcpyAsync(b.z, b.y, N * sizeof(float), cudaMemcpyDeviceToDevice, s));
    add_from_scope(b.z, s);
    XLMC_LAUNCH(block_sum_kernel, BLOCKS, THREADS, 0, s)(b.sum, b.z);
    float alpha = ALPHA, beta = 0.f;
    OK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, GM, GN, GK, &alpha, b.x, CUDA_R_32F, GM, b.B,
                    CUDA_R_32F, GK, &beta, b.C, CUDA_R_32F, GM, CUBLAS_COMPUTE_32F,
                    CUBLAS_GEMM_DEFAULT));
    alpha = 1000.f; /* after the call: what a capture keeps is the value it read */
    OK(cudaMemcpyAsync(b.h_out, b.sum, BLOCKS * sizeof(float), cudaMemcpyDeviceToHost, s));
}

struct results {
    float y[N], z[N], sum[BLOCKS], C[GM * GN], h_out[BLOCKS];
};

static void read_back(const bufs &b, results *r) {
    OK(cudaMemcpy(r->y, b.y, sizeof r->y, cudaMemcpyDeviceToHost));
    OK(cudaMemcpy(r->z, b.z, sizeof r->z, cudaMemcpyDeviceToHost));
    OK(cudaMemcpy(r->sum, b.sum, sizeof r->sum, cudaMemcpyDeviceToHost));
    OK(cudaMemcpy(r->C, b.C, sizeof r->C, cudaMemcpyDeviceToHost));
    memcpy(r->h_out, b.h_out, sizeof r->h_out);
}

/* Every output and x to the sentinel. */
static void poison(const bufs &b) {
    float s[N];
    for (float &v : s)
        v = SENTINEL;
    for (float *p : {b.x, b.y, b.z})
        OK(cudaMemcpy(p, s, sizeof s, cudaMemcpyHostToDevice));
    OK(cudaMemcpy(b.sum, s, BLOCKS * sizeof(float), cudaMemcpyHostToDevice));
    OK(cudaMemcpy(b.C, s, GM * GN * sizeof(float), cudaMemcpyHostToDevice));
    memcpy(b.h_out, s, BLOCKS * sizeof(float));
}

/* The expected results from the inputs, by plain host arithmetic. */
static void expected(const float *in, const float *B, float alpha, results *r) {
    for (int i = 0; i < N; i++) {
        r->y[i] = 2.0f * in[i];
        r->z[i] = r->y[i] + 0.5f;
    }
    for (int b = 0; b < BLOCKS; b++) {
        double s = 0;
        for (int i = 0; i < THREADS; i++)
            s += r->z[b * THREADS + i];
        r->sum[b] = r->h_out[b] = (float)s;
    }
    for (int j = 0; j < GN; j++)
        for (int i = 0; i < GM; i++) {
            double s = 0;
            for (int p = 0; p < GK; p++)
                s += (double)in[i + p * GM] * B[p + j * GK];
            r->C[i + j * GM] = alpha * (float)s;
        }
}

static int mismatches(const results &got, const results &want, const char *what) {
    const float *g = (const float *)&got, *w = (const float *)&want;
    int bad = 0;
    for (size_t i = 0; i < sizeof got / sizeof(float); i++)
        if (memcmp(&g[i], &w[i], sizeof(float)) && bad++ < 3)
            fprintf(stderr, "%s: value %zu is %g, expected %g\n", what, i, g[i], w[i]);
    return bad;
}

static void set_inputs(const bufs &b, float *B_host, int variant) {
    for (int i = 0; i < N; i++)
        b.h_in[i] = (float)((i * 7 + variant * 5) % 13 - 6);
    for (int i = 0; i < GK * GN; i++)
        B_host[i] = (float)((i * 5 + variant) % 7 - 3);
    OK(cudaMemcpy(b.B, B_host, GK * GN * sizeof(float), cudaMemcpyHostToDevice));
}

static void check_replay_log(int stream_id) {
    const cudasim_record *e;
    size_t n = cudasim_count_events(&e);
    EXPECT(n == 1 + NODES, "%zu events for one replay, expected the graph and %d nodes", n, NODES);
    if (n != 1 + NODES) return;
    EXPECT(e[0].kind == CUDASIM_EV_GRAPH && !strcmp(e[0].name, "graph"), "event 0 not the graph");
    EXPECT(e[0].nodes == NODES && e[0].in_graph == 0, "graph event: %d nodes, in_graph %d",
           e[0].nodes, e[0].in_graph);
    const int kinds[NODES] = {CUDASIM_EV_COPY, CUDASIM_EV_MEMSET, CUDASIM_EV_KERNEL,
                              CUDASIM_EV_COPY, CUDASIM_EV_KERNEL, CUDASIM_EV_KERNEL,
                              CUDASIM_EV_GEMM, CUDASIM_EV_COPY};
    for (int i = 0; i < NODES; i++) {
        const cudasim_record &r = e[1 + i];
        EXPECT(r.kind == kinds[i] && r.in_graph == 1 && r.stream == stream_id,
               "node %d: kind %d in_graph %d stream %d, expected kind %d in_graph 1 stream %d", i,
               r.kind, r.in_graph, r.stream, kinds[i], stream_id);
    }
    EXPECT(!strcmp(e[3].name, "axpy_kernel") && !strcmp(e[5].name, "add_kernel") &&
               !strcmp(e[6].name, "block_sum_kernel"),
           "kernel names %s %s %s", e[3].name, e[5].name, e[6].name);
    EXPECT(e[1].dir == CUDASIM_H2D && e[1].pinned && e[4].dir == CUDASIM_D2D &&
               e[8].dir == CUDASIM_D2H && e[8].pinned,
           "copy directions or pinned flags wrong");
    EXPECT(e[7].m == GM && e[7].n == GN && e[7].k == GK, "GEMM shape %d %d %d", e[7].m, e[7].n,
           e[7].k);
}

/* ---- the calls CUDA refuses during a capture, each in a child ----
 * A child returns 0 when the call was let through; a report ends it with abort. Setup that
 * fails returns 0 too, so that it shows as a missed report. */
static cudaStream_t g_s, g_s2, g_nonblocking;
static float *g_dev;

static int begin(cudaStream_t s, cudaStreamCaptureMode mode) {
    return cudaStreamBeginCapture(s, mode) == cudaSuccess;
}
static int child_stream_sync(void) {
    if (begin(g_s, cudaStreamCaptureModeGlobal)) cudaStreamSynchronize(g_s);
    return 0;
}
static int child_other_stream_sync(void) {
    if (begin(g_s, cudaStreamCaptureModeGlobal)) cudaStreamSynchronize(g_s2);
    return 0;
}
static int child_device_sync(void) {
    if (begin(g_s, cudaStreamCaptureModeGlobal)) cudaDeviceSynchronize();
    return 0;
}
static int child_memcpy_sync(void) {
    float h[4];
    if (begin(g_s, cudaStreamCaptureModeGlobal))
        cudaMemcpy(h, g_dev, sizeof h, cudaMemcpyDeviceToHost);
    return 0;
}
static int child_malloc(void) {
    void *p;
    if (begin(g_s, cudaStreamCaptureModeGlobal)) cudaMalloc(&p, 64);
    return 0;
}
static int child_free_thread_local(void) { /* thread-local: still this thread's own capture */
    if (begin(g_s, cudaStreamCaptureModeThreadLocal)) cudaFree(g_dev);
    return 0;
}
static int child_malloc_other_thread_global(void) {
    int began = 0;
    std::thread t([&] { began = begin(g_s, cudaStreamCaptureModeGlobal); });
    t.join();
    void *p;
    if (began) cudaMalloc(&p, 64);
    return 0;
}
static int child_pageable_copy(void) {
    float h[4] = {0};
    if (begin(g_s, cudaStreamCaptureModeGlobal))
        cudaMemcpyAsync(g_dev, h, sizeof h, cudaMemcpyHostToDevice, g_s);
    return 0;
}
static int child_end_not_begun(void) {
    cudaGraph_t g;
    cudaStreamEndCapture(g_s, &g);
    return 0;
}
static int child_nccl(void) {
    ncclUniqueId id;
    ncclComm_t c;
    if (ncclGetUniqueId(&id) != ncclSuccess || ncclCommInitRank(&c, 1, id, 0) != ncclSuccess)
        return 0;
    if (begin(g_s, cudaStreamCaptureModeGlobal))
        ncclAllReduce(g_dev, g_dev, 4, ncclFloat32, ncclSum, c, g_s);
    return 0;
}
static int child_legacy_launch(void) { /* the legacy stream would wait for the blocking g_s */
    if (begin(g_s, cudaStreamCaptureModeRelaxed))
        XLMC_LAUNCH(axpy_kernel, 1, 4, 0, 0)(g_dev, g_dev, 1.f, 4);
    return 0;
}
static int child_event_join(void) {
    cudaEvent_t ev;
    if (cudaEventCreate(&ev) || !begin(g_s, cudaStreamCaptureModeGlobal) ||
        cudaEventRecord(ev, g_s))
        return 0;
    cudaStreamWaitEvent(g_s2, ev, 0);
    return 0;
}

/* ---- what CUDA allows: each returns 0 when it went through as expected ---- */
static int child_allowed_other_thread_local(void) {
    int began = 0;
    std::thread t([&] { began = begin(g_s, cudaStreamCaptureModeThreadLocal); });
    t.join();
    void *p;
    return !(began && cudaMalloc(&p, 64) == cudaSuccess && cudaFree(p) == cudaSuccess);
}
static int child_allowed_relaxed(void) {
    void *p;
    cudaGraph_t g;
    size_t n = 0;
    if (!begin(g_s, cudaStreamCaptureModeRelaxed) || cudaMalloc(&p, 64) || cudaFree(p)) return 1;
    XLMC_LAUNCH(axpy_kernel, 1, 4, 0, g_s)(g_dev, g_dev, 1.f, 4);
    if (cudaStreamEndCapture(g_s, &g) || cudaGraphGetNodes(g, nullptr, &n)) return 1;
    cudaGraphDestroy(g);
    return n != 1;
}
static int child_allowed_exchange_mode(void) {
    cudaStreamCaptureMode m = cudaStreamCaptureModeRelaxed;
    void *p;
    if (!begin(g_s, cudaStreamCaptureModeGlobal) || cudaThreadExchangeStreamCaptureMode(&m))
        return 1;
    int bad = cudaMalloc(&p, 64) || cudaFree(p);
    return bad || cudaThreadExchangeStreamCaptureMode(&m) || m != cudaStreamCaptureModeRelaxed;
}
static int child_allowed_legacy_beside_nonblocking(void) {
    if (!begin(g_nonblocking, cudaStreamCaptureModeRelaxed)) return 1;
    XLMC_LAUNCH(axpy_kernel, 1, 4, 0, 0)(g_dev, g_dev, 1.f, 4);
    return cudaGetLastError() != cudaSuccess;
}

static void check_refusals(void) {
    struct {
        int (*fn)(void);
        const char *what;
        int refused;
    } cases[] = {
        {child_stream_sync, "cudaStreamSynchronize of the capturing stream", 1},
        {child_other_stream_sync, "cudaStreamSynchronize of another stream (global mode)", 1},
        {child_device_sync, "cudaDeviceSynchronize", 1},
        {child_memcpy_sync, "a synchronous cudaMemcpy", 1},
        {child_malloc, "cudaMalloc", 1},
        {child_free_thread_local, "cudaFree under this thread's thread-local capture", 1},
        {child_malloc_other_thread_global, "cudaMalloc under another thread's global capture", 1},
        {child_pageable_copy, "cudaMemcpyAsync from pageable host memory", 1},
        {child_end_not_begun, "cudaStreamEndCapture without a capture", 1},
        {child_nccl, "ncclAllReduce on the capturing stream", 1},
        {child_legacy_launch, "a legacy-stream launch beside a blocking capture", 1},
        {child_event_join, "a wait joining another stream to the capture", 1},
        {child_allowed_other_thread_local,
         "cudaMalloc beside another thread's thread-local "
         "capture",
         0},
        {child_allowed_relaxed, "cudaMalloc and cudaFree in relaxed mode", 0},
        {child_allowed_exchange_mode, "cudaMalloc after switching this thread to relaxed", 0},
        {child_allowed_legacy_beside_nonblocking,
         "a legacy-stream launch beside a non-blocking "
         "capture",
         0},
    };
    for (const auto &c : cases) {
        int reported = reported_in_child(c.fn);
        EXPECT(reported == c.refused, "%s: %s", c.what,
               c.refused ? "not reported" : "reported, though CUDA allows it");
    }
}

int main(int argc, char **argv) {
    if (argc != 2 || (strcmp(argv[1], "ascending") && strcmp(argv[1], "shuffle"))) {
        fprintf(stderr, "usage: %s ascending|shuffle\n", argv[0]);
        return 2;
    }
    cudasim_set_schedule(strcmp(argv[1], "shuffle") ? CUDASIM_ASCENDING : CUDASIM_SHUFFLE, 7);
    cudaStream_t s;
    cublasHandle_t h;
    bufs b;
    void *workspace;
    OK(cudaStreamCreate(&s));
    OK(cublasCreate(&h));
    OK(cublasSetStream(h, s));
    OK(cudaMalloc(&workspace, 1 << 20));
    OK(cublasSetWorkspace(h, workspace, 1 << 20));
    OK(cudaMallocHost((void **)&b.h_in, N * sizeof(float)));
    OK(cudaMallocHost((void **)&b.h_out, BLOCKS * sizeof(float)));
    OK(cudaMalloc(&b.x, N * sizeof(float)));
    OK(cudaMalloc(&b.y, N * sizeof(float)));
    OK(cudaMalloc(&b.z, N * sizeof(float)));
    OK(cudaMalloc(&b.sum, BLOCKS * sizeof(float)));
    OK(cudaMalloc(&b.B, GK * GN * sizeof(float)));
    OK(cudaMalloc(&b.C, GM * GN * sizeof(float)));
    float B_host[GK * GN];
    results eager, got, want, before;

    /* the eager run: the reference for the replay */
    set_inputs(b, B_host, 0);
    poison(b);
    issue(b, s, h);
    OK(cudaStreamSynchronize(s));
    read_back(b, &eager);
    expected(b.h_in, B_host, ALPHA, &want);
    EXPECT(mismatches(eager, want, "eager run") == 0, "the eager run differs from host arithmetic");

    /* 1. the capture runs nothing and logs nothing */
    poison(b);
    cudaStreamCaptureStatus st;
    OK(cudaStreamIsCapturing(s, &st));
    EXPECT(st == cudaStreamCaptureStatusNone, "capturing before the capture");
    unsigned long long launches0 = cudasim_launch_count();
    cudasim_count_start(0, 0);
    OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    issue(b, s, h);
    OK(cudaStreamIsCapturing(s, &st));
    EXPECT(st == cudaStreamCaptureStatusActive, "not capturing during the capture");
    cudaGraph_t graph;
    OK(cudaStreamEndCapture(s, &graph));
    const cudasim_record *e;
    size_t logged = cudasim_count_events(&e);
    cudasim_count_stop();
    EXPECT(logged == 0, "the capture logged %zu events", logged);
    EXPECT(cudasim_launch_count() == launches0, "the capture launched %llu kernels",
           cudasim_launch_count() - launches0);
    OK(cudaStreamIsCapturing(s, &st));
    EXPECT(st == cudaStreamCaptureStatusNone, "capturing after the capture ended");
    read_back(b, &got);
    for (int i = 0; i < N; i++)
        EXPECT(got.y[i] == SENTINEL && got.z[i] == SENTINEL, "element %d changed by the capture",
               i);
    for (int i = 0; i < BLOCKS; i++)
        EXPECT(got.sum[i] == SENTINEL && got.h_out[i] == SENTINEL, "sum %d changed by the capture",
               i);
    for (int i = 0; i < GM * GN; i++)
        EXPECT(got.C[i] == SENTINEL, "C[%d] changed by the capture", i);
    size_t nodes = 0;
    OK(cudaGraphGetNodes(graph, nullptr, &nodes));
    EXPECT(nodes == NODES, "the graph has %zu nodes, expected %d", nodes, NODES);
    cudaGraphExec_t exec;
    OK(cudaGraphInstantiate(&exec, graph, 0));
    OK(cudaGraphDestroy(graph)); /* the executable graph keeps its own copy */

    /* 2. the replay; 4. its log */
    cudasim_count_start(0, 0);
    OK(cudaGraphLaunch(exec, s));
    cudasim_count_stop();
    OK(cudaStreamSynchronize(s));
    check_replay_log(cudasim_count_events(&e) > 1 ? e[1].stream : -1);
    EXPECT(e[0].stream > 0, "the graph event is on stream %d, expected the created one",
           e[0].stream);
    EXPECT(cudasim_launch_count() - launches0 == 3, "%llu kernels launched by the replay, not 3",
           cudasim_launch_count() - launches0);
    read_back(b, &got);
    EXPECT(mismatches(got, want, "replay") == 0, "the replay differs from host arithmetic");
    EXPECT(memcmp(&got, &eager, sizeof got) == 0, "the replay differs from the eager run");

    /* 3. new inputs, the same graph: new results, the capture's alpha */
    before = got;
    set_inputs(b, B_host, 1);
    poison(b);
    OK(cudaGraphLaunch(exec, s));
    OK(cudaStreamSynchronize(s));
    read_back(b, &got);
    expected(b.h_in, B_host, ALPHA, &want);
    EXPECT(mismatches(got, want, "second replay") == 0,
           "the second replay differs from host arithmetic on the new inputs");
    EXPECT(memcmp(&got, &before, sizeof got) != 0, "the new inputs changed nothing");

    /* 5. the refused calls */
    OK(cudaStreamCreate(&g_s2));
    OK(cudaStreamCreateWithFlags(&g_nonblocking, cudaStreamNonBlocking));
    g_s = s;
    g_dev = b.y;
    check_refusals();

    OK(cudaGraphExecDestroy(exec));
    for (float *p : {b.x, b.y, b.z, b.sum, b.B, b.C})
        OK(cudaFree(p));
    OK(cudaFree(workspace));
    OK(cudaFreeHost(b.h_in));
    OK(cudaFreeHost(b.h_out));
    OK(cublasDestroy(h));
    OK(cudaStreamDestroy(s));
    OK(cudaStreamDestroy(g_s2));
    OK(cudaStreamDestroy(g_nonblocking));
    printf(g_fail ? "FAILED (%d checks)\n" : "PASSED\n", g_fail);
    return g_fail ? 1 : 0;
}
