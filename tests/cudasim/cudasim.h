/* cudasim.h — a CUDA runtime stand-in that lets g++ compile the unmodified kernels/cuda .cu files
 * and run them on the CPU (force-included with `-x c++ -include cudasim.h -DXLMC_CUDASIM`).
 *
 * Every CUDA thread of a block is one ucontext fiber; a block's fibers run, in the schedule's
 * order, until each reaches a barrier (__syncthreads, a warp shuffle or vote), so shared
 * memory, reductions and warp intrinsics behave as on the device. The order is ascending or a
 * seeded shuffle (CUDASIM_SCHEDULE=ascending|shuffle, CUDASIM_SEED=n, or cudasim_set_schedule)
 * so a missing barrier shows under at least one of them. Blocks run one after another.
 * Device memory, copies, streams and events are synchronous host stand-ins; cuBLAS GEMMs are
 * naive loops with fp32 accumulation; NCCL ranks are host threads of one process. A stream
 * capture records the calls issued to its stream, and a graph launch runs them (see below).
 * The headers cuda_runtime.h, cuda_fp16.h, cublas_v2.h and nccl.h in tests/cudasim/include
 * all lead here. */
#ifndef XLMC_CUDASIM_H
#define XLMC_CUDASIM_H

#ifndef __cplusplus
#error "cudasim.h is C++: compile the .cu files with g++ -x c++"
#endif

#include <cfloat>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <type_traits>

/* ---- qualifiers ---- */
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
/* Blocks run one at a time per host thread, so a function-static thread_local array is the
 * block's shared memory. */
#define __shared__ static thread_local
#define __constant__ static

struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace cudasim {
extern thread_local uint3 t_threadIdx, t_blockIdx;
extern thread_local dim3 t_blockDim, t_gridDim;
extern thread_local void *t_dynamic_shared;
void syncthreads();
/* Lanes in `mask` exchange `bytes` bytes: every lane deposits `val`, then reads lane `src`'s
 * deposit into out (its own value if src is outside the warp). */
void warp_exchange(unsigned mask, const void *val, void *out, size_t bytes, int src);
/* Vote: returns the ballot of `pred` over the lanes in mask. */
unsigned warp_ballot(unsigned mask, int pred);
void warp_sync(unsigned mask);
/* Every lane in mask deposits the pointer `mine`; after a barrier, all[i] is lane i's deposit
 * (nullptr for a lane outside the warp or the mask). Fibers share one address space, so a lane
 * may then read what the others' pointers show (the warp-wide operands of an mma_sync); it must
 * warp_sync(mask) before it changes or leaves what its own pointer shows. */
void warp_share(unsigned mask, const void *mine, const void **all);
int lane_id();
/* Ends the run with the kernel, block and `what`: a use of a device API that a GPU would
 * reject or leave undefined. */
[[noreturn]] void fail(const char *what);
/* Run body in every thread of grid x block; checks the launch against the device limits.
 * On a capturing stream (cudaStreamBeginCapture) body is kept, not run: each replay of the
 * graph runs it. */
void launch(const char *name, const void *fn, dim3 grid, dim3 block, size_t shmem,
            const std::function<void()> &body, const void *stream = nullptr);
/* The linear thread index within its block of the kernel thread running now; -1 on the host. */
int current_tid();
} // namespace cudasim

#define threadIdx (cudasim::t_threadIdx)
#define blockIdx (cudasim::t_blockIdx)
#define blockDim (cudasim::t_blockDim)
#define gridDim (cudasim::t_gridDim)
#define warpSize 32

/* The shims kernel sources may use (kernels/cuda/common.cuh defines the nvcc side). */
#define XLMC_DYNAMIC_SHARED(type, name) type *name = (type *)cudasim::t_dynamic_shared
/* n floating-point operations the calling kernel thread just did: counted (cudasim_count.h,
 * field flops) in the traffic build only, whose objects are compiled with XLMC_CUDASIM_TRAFFIC */
namespace cudasim {
void count_flops(double n);
/* n tensor-core FLOPs (mma_sync of tests/cudasim/include/mma.h, one call per warp) */
void count_tc_flops(double n);
} // namespace cudasim
#ifdef XLMC_CUDASIM_TRAFFIC
#define XLMC_COUNT_FLOPS(n) cudasim::count_flops((double)(n))
#define XLMC_COUNT_TC_FLOPS(n) cudasim::count_tc_flops((double)(n))
#else
#define XLMC_COUNT_FLOPS(n) ((void)0)
#define XLMC_COUNT_TC_FLOPS(n) ((void)0)
#endif
#define XLMC_LAUNCH(kernel, grid, block, shmem, stream)                                            \
    cudasim::Launch<decltype(&kernel)> {                                                           \
        &kernel, #kernel, dim3(grid), dim3(block), (size_t)(shmem), (const void *)(stream)         \
    }

namespace cudasim {
template <class K>
struct Launch {
    K fn;
    const char *name;
    dim3 grid, block;
    size_t shmem;
    const void *stream;
    /* The body holds the function and its arguments by value: a launch recorded by a stream
     * capture runs at each graph replay, long after the caller's arguments are gone. */
    template <class... A>
    void operator()(A... args) const {
        K f = fn;
        launch(
            name, (const void *)fn, grid, block, shmem, [f, args...]() { f(args...); }, stream);
    }
};
} // namespace cudasim

inline void __syncthreads() {
    cudasim::syncthreads();
}
inline void __syncwarp(unsigned mask = 0xffffffffu) {
    cudasim::warp_sync(mask);
}
inline void __threadfence() {}
inline void __threadfence_block() {}

template <class T>
inline T cudasim_shfl(unsigned mask, T v, int src) {
    static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 16, "shuffle type");
    T out;
    cudasim::warp_exchange(mask, &v, &out, sizeof(T), src);
    return out;
}
template <class T>
inline T __shfl_sync(unsigned mask, T v, int srcLane, int width = 32) {
    int lane = cudasim::lane_id();
    return cudasim_shfl(mask, v, (lane & ~(width - 1)) + (srcLane & (width - 1)));
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int laneMask, int width = 32) {
    int lane = cudasim::lane_id();
    int src = lane ^ laneMask;
    if ((src & ~(width - 1)) != (lane & ~(width - 1))) src = lane;
    return cudasim_shfl(mask, v, src);
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    int lane = cudasim::lane_id();
    int src = lane + (int)delta;
    if ((src & ~(width - 1)) != (lane & ~(width - 1))) src = lane;
    return cudasim_shfl(mask, v, src);
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    int lane = cudasim::lane_id();
    int src = lane - (int)delta;
    if (src < (lane & ~(width - 1))) src = lane;
    return cudasim_shfl(mask, v, src);
}
inline unsigned __ballot_sync(unsigned mask, int pred) {
    return cudasim::warp_ballot(mask, pred);
}
inline int __any_sync(unsigned mask, int pred) {
    return cudasim::warp_ballot(mask, pred) != 0;
}
inline int __all_sync(unsigned mask, int pred) {
    return cudasim::warp_ballot(mask, pred) == cudasim::warp_ballot(mask, 1);
}

/* ---- atomics: fibers never interleave inside one call, so plain read-modify-write ---- */
template <class T>
inline T atomicAdd(T *p, T v) {
    T old = *p;
    *p = old + v;
    return old;
}
inline int atomicMax(int *p, int v) {
    int old = *p;
    if (v > old) *p = v;
    return old;
}
inline unsigned atomicMax(unsigned *p, unsigned v) {
    unsigned old = *p;
    if (v > old) *p = v;
    return old;
}
inline int atomicOr(int *p, int v) {
    int old = *p;
    *p = old | v;
    return old;
}
inline int atomicCAS(int *p, int cmp, int v) {
    int old = *p;
    if (old == cmp) *p = v;
    return old;
}

/* ---- device math the host library spells differently ---- */
inline float __expf(float x) {
    return expf(x);
}
inline float __logf(float x) {
    return logf(x);
}
inline float __fdividef(float a, float b) {
    return a / b;
}
inline float rsqrtf(float x) {
    return 1.0f / sqrtf(x);
}
inline double rsqrt(double x) {
    return 1.0 / sqrt(x);
}
/* CUDA's integer min/max overloads (the host library has only std::min/std::max) */
inline int min(int a, int b) {
    return a < b ? a : b;
}
inline int max(int a, int b) {
    return a > b ? a : b;
}
inline unsigned min(unsigned a, unsigned b) {
    return a < b ? a : b;
}
inline unsigned max(unsigned a, unsigned b) {
    return a > b ? a : b;
}
inline long long min(long long a, long long b) {
    return a < b ? a : b;
}
inline long long max(long long a, long long b) {
    return a > b ? a : b;
}
inline unsigned long min(unsigned long a, unsigned long b) {
    return a < b ? a : b;
}
inline unsigned long max(unsigned long a, unsigned long b) {
    return a > b ? a : b;
}
inline float __saturatef(float x) {
    return x < 0.f ? 0.f : (x > 1.f ? 1.f : x);
}
template <class T>
inline T __ldg(const T *p) {
    return *p;
}
inline float __int_as_float(int i) {
    float f;
    memcpy(&f, &i, 4);
    return f;
}
inline int __float_as_int(float f) {
    int i;
    memcpy(&i, &f, 4);
    return i;
}

/* ---- cuda_fp16.h: IEEE binary16 with round-to-nearest-even conversions ---- */
struct __half {
    uint16_t __x;
};
struct __half2 {
    __half x, y;
};
float cudasim_half_to_float(uint16_t h);
uint16_t cudasim_float_to_half(float f);
inline __half __float2half(float f) {
    return __half{cudasim_float_to_half(f)};
}
inline __half __float2half_rn(float f) {
    return __half{cudasim_float_to_half(f)};
}
inline float __half2float(__half h) {
    return cudasim_half_to_float(h.__x);
}
inline __half __hadd(__half a, __half b) {
    return __float2half(__half2float(a) + __half2float(b));
}
inline __half __hmul(__half a, __half b) {
    return __float2half(__half2float(a) * __half2float(b));
}
inline int __hisinf(__half a) {
    return (a.__x & 0x7fff) == 0x7c00 ? (a.__x >> 15 ? -1 : 1) : 0;
}
inline bool __hisnan(__half a) {
    return (a.__x & 0x7fff) > 0x7c00;
}

/* ---- runtime API ---- */
typedef enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
    cudaErrorLaunchFailure = 719,
} cudaError_t;
enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4
};
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
typedef struct cudasim_stream *cudaStream_t;
typedef struct cudasim_event *cudaEvent_t;
struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    size_t sharedMemPerBlock;
    int maxThreadsPerBlock;
    int multiProcessorCount;
    int major, minor;
};
#define cudaStreamNonBlocking 1
#define cudaEventDisableTiming 2

cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDevice(int *d);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d);
const char *cudaGetErrorString(cudaError_t e);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
cudaError_t cudaMalloc(void **p, size_t bytes);
template <class T>
inline cudaError_t cudaMalloc(T **p, size_t bytes) {
    return cudaMalloc((void **)p, bytes);
}
cudaError_t cudaFree(void *p);
/* Page-locked host memory: copies from and to it count as pinned. */
#define cudaHostAllocDefault 0
#define cudaHostRegisterDefault 0
cudaError_t cudaMallocHost(void **p, size_t bytes);
cudaError_t cudaHostAlloc(void **p, size_t bytes, unsigned flags);
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaHostRegister(void *p, size_t bytes, unsigned flags);
cudaError_t cudaHostUnregister(void *p);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t s = nullptr);
cudaError_t cudaMemset(void *p, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void *p, int value, size_t bytes, cudaStream_t s = nullptr);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaStreamCreate(cudaStream_t *s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags = 0);
cudaError_t cudaEventCreate(cudaEvent_t *e);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b);
cudaError_t cudasim_func_set_attribute(const void *fn, cudaFuncAttribute attr, int value);

/* ---- stream capture and graphs (CUDA 12 signatures; cudasim_graph.cpp) ----
 * Work issued to a capturing stream (kernel launches, cudaMemsetAsync, cudaMemcpyAsync between
 * device memory and device or page-locked host memory, cuBLAS GEMMs) is recorded, not run;
 * cudaGraphLaunch runs the recorded calls in order as eager calls would run, reading memory
 * anew each time. What CUDA refuses during a capture ends the run with a message naming the
 * call: a potentially unsafe call (cudaMalloc, cudaFree, synchronous cudaMemcpy,
 * cudaStreamSynchronize, cudaDeviceSynchronize) under the capture interaction mode's rules, a
 * wait on a capturing stream, a copy from or to pageable host memory, work on the legacy
 * stream while a blocking stream captures, ending a capture that was not begun, and (cudasim
 * only: xlmc keeps NCCL outside graphs) an NCCL call on a capturing stream. Only single-stream
 * captures are simulated: a wait that would join another stream to a capture is refused. */
typedef struct cudasim_graph *cudaGraph_t;
typedef struct cudasim_graph_exec *cudaGraphExec_t;
typedef struct cudasim_graph_node *cudaGraphNode_t;
enum cudaStreamCaptureMode {
    cudaStreamCaptureModeGlobal = 0,
    cudaStreamCaptureModeThreadLocal = 1,
    cudaStreamCaptureModeRelaxed = 2
};
enum cudaStreamCaptureStatus {
    cudaStreamCaptureStatusNone = 0,
    cudaStreamCaptureStatusActive = 1,
    cudaStreamCaptureStatusInvalidated = 2
};
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *graph);
cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus *status);
cudaError_t cudaThreadExchangeStreamCaptureMode(cudaStreamCaptureMode *mode);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph,
                                 unsigned long long flags = 0);
/* CUDA 11.4 and newer: the same as the 3-argument cudaGraphInstantiate of CUDA 12 */
cudaError_t cudaGraphInstantiateWithFlags(cudaGraphExec_t *exec, cudaGraph_t graph,
                                          unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);
/* nodes NULL: *n gets the number of nodes; else the first *n of them */
cudaError_t cudaGraphGetNodes(cudaGraph_t graph, cudaGraphNode_t *nodes, size_t *n);
template <class F>
inline cudaError_t cudaFuncSetAttribute(F *fn, cudaFuncAttribute attr, int value) {
    return cudasim_func_set_attribute((const void *)fn, attr, value);
}

/* ---- cuBLAS ---- */
typedef struct cudasim_cublas *cublasHandle_t;
typedef enum {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_NOT_SUPPORTED = 15
} cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum { CUDA_R_32F = 0, CUDA_R_16F = 2 } cudaDataType;
typedef cudaDataType cudaDataType_t;
typedef enum { CUBLAS_COMPUTE_32F = 68 } cublasComputeType_t;
typedef enum { CUBLAS_GEMM_DEFAULT = -1 } cublasGemmAlgo_t;
typedef enum { CUBLAS_DEFAULT_MATH = 0, CUBLAS_PEDANTIC_MATH = 2 } cublasMath_t;
cublasStatus_t cublasCreate(cublasHandle_t *h);
cublasStatus_t cublasDestroy(cublasHandle_t h);
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s);
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m);
/* A no-op here; real cuBLAS needs a user workspace to run inside a graph capture without
 * allocating. */
cublasStatus_t cublasSetWorkspace(cublasHandle_t h, void *workspace, size_t bytes);
const char *cublasGetStatusString(cublasStatus_t s);
/* Column-major C (m,n) = alpha op(A) (m,k) op(B) (k,n) + beta C, per batch. */
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                            int n, int k, const void *alpha, const void *A, cudaDataType at,
                            int lda, const void *B, cudaDataType bt, int ldb, const void *beta,
                            void *C, cudaDataType ct, int ldc, cublasComputeType_t compute,
                            cublasGemmAlgo_t algo);
cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta,
                                          cublasOperation_t tb, int m, int n, int k,
                                          const void *alpha, const void *A, cudaDataType at,
                                          int lda, long long sa, const void *B, cudaDataType bt,
                                          int ldb, long long sb, const void *beta, void *C,
                                          cudaDataType ct, int ldc, long long sc, int batch,
                                          cublasComputeType_t compute, cublasGemmAlgo_t algo);

/* ---- NCCL: ranks are threads of this process, grouped by their unique id ---- */
typedef struct {
    char internal[128];
} ncclUniqueId;
typedef struct cudasim_nccl *ncclComm_t;
typedef enum { ncclSuccess = 0, ncclInvalidArgument = 4, ncclInternalError = 3 } ncclResult_t;
typedef enum {
    ncclInt8 = 0,
    ncclInt32 = 2,
    ncclFloat16 = 6,
    ncclFloat32 = 7,
    ncclFloat64 = 8
} ncclDataType_t;
typedef enum { ncclSum = 0, ncclMax = 2 } ncclRedOp_t;
ncclResult_t ncclGetUniqueId(ncclUniqueId *id);
ncclResult_t ncclCommInitRank(ncclComm_t *c, int nranks, ncclUniqueId id, int rank);
ncclResult_t ncclCommDestroy(ncclComm_t c);
ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count, ncclDataType_t type,
                           ncclRedOp_t op, ncclComm_t c, cudaStream_t s);
/* the sum (or max) lands in recv of rank root only */
ncclResult_t ncclReduce(const void *send, void *recv, size_t count, ncclDataType_t type,
                        ncclRedOp_t op, int root, ncclComm_t c, cudaStream_t s);
/* point to point, non-blocking communicators only: a send meets the receive of the same
 * pair posted in the same order */
ncclResult_t ncclSend(const void *send, size_t count, ncclDataType_t type, int peer, ncclComm_t c,
                      cudaStream_t s);
ncclResult_t ncclRecv(void *recv, size_t count, ncclDataType_t type, int peer, ncclComm_t c,
                      cudaStream_t s);
ncclResult_t ncclBroadcast(const void *send, void *recv, size_t count, ncclDataType_t type,
                           int root, ncclComm_t c, cudaStream_t s);
const char *ncclGetErrorString(ncclResult_t r);

/* ---- test controls ---- */
enum cudasim_schedule { CUDASIM_ASCENDING = 0, CUDASIM_SHUFFLE = 1 };
extern "C" void cudasim_set_schedule(int schedule, unsigned long long seed);
/* Launches made so far and fiber switches (for tests that want to see the simulator work). */
extern "C" unsigned long long cudasim_launch_count(void);

#endif
