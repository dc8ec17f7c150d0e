/* cudasim_runtime.cpp — the CUDA runtime API of cudasim.h: devices, errors, device and
 * page-locked memory, copies, memsets, streams, events. Memory, copies and streams are
 * synchronous host stand-ins; stream capture goes through cudasim_graph_impl.h. */
#include "cudasim_count_impl.h"
#include "cudasim_graph_impl.h"
#include "cudasim_runtime_impl.h"

#include <chrono>
#include <cstdlib>
#include <sys/mman.h>

struct cudasim_event {
    std::chrono::steady_clock::time_point t;
};

cudaError_t cudaGetDeviceCount(int *n) {
    *n = 1;
    return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) {
    return d == 0 ? cudaSuccess : cudaErrorInvalidDevice;
}
cudaError_t cudaGetDevice(int *d) {
    *d = 0;
    return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d) {
    if (d != 0) return cudaErrorInvalidDevice;
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "cudasim (CPU fibers)");
    p->totalGlobalMem = (size_t)1 << 32;
    p->sharedMemPerBlock = 48 * 1024;
    p->maxThreadsPerBlock = 1024;
    p->multiProcessorCount = 1;
    p->major = 7;
    return cudaSuccess;
}
const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess:
        return "no error";
    case cudaErrorInvalidValue:
        return "invalid argument";
    case cudaErrorMemoryAllocation:
        return "out of memory";
    case cudaErrorInvalidConfiguration:
        return "invalid configuration argument";
    case cudaErrorNoDevice:
        return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice:
        return "invalid device ordinal";
    default:
        return "unspecified launch failure";
    }
}
cudaError_t cudaGetLastError(void) {
    cudaError_t e = cudasim::last_error;
    cudasim::last_error = cudaSuccess;
    return e;
}
cudaError_t cudaPeekAtLastError(void) {
    return cudasim::last_error;
}
cudaError_t cudaMalloc(void **p, size_t bytes) {
    cudasim::graph::check_unsafe("cudaMalloc");
    /* Device memory starts as garbage: NaN bytes make a read of unwritten memory show
     * (zeros when a cost count skips blocks: a skipped block must leave finite values). */
    if ((cudasim::count::g_flags & CUDASIM_COUNT_ZERO_ALLOC) && bytes >= ((size_t)1 << 20)) {
        /* large and zero: pages that a sampled launch never touches cost nothing */
        void *m = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) return cudaErrorMemoryAllocation;
        *p = m;
        std::lock_guard<std::mutex> lock(cudasim::g_mutex);
        cudasim::g_mapped[m] = bytes;
        cudasim::g_pristine[m] = bytes;
    } else {
        /* cudaMalloc's alignment is at least 256 bytes: the sector counts depend on it */
        if (posix_memalign(p, 256, bytes ? bytes : 1)) return cudaErrorMemoryAllocation;
        int fill = (cudasim::count::g_flags & CUDASIM_COUNT_ZERO_ALLOC) ? 0 : 0xff;
        memset(*p, fill, bytes);
    }
    cudasim::count::device_alloc(*p, bytes);
    return cudaSuccess;
}
cudaError_t cudaFree(void *p) {
    cudasim::graph::check_unsafe("cudaFree");
    if (!p) return cudaSuccess;
    cudasim::count::device_free(p);
    {
        std::lock_guard<std::mutex> lock(cudasim::g_mutex);
        auto it = cudasim::g_mapped.find(p);
        if (it != cudasim::g_mapped.end()) {
            cudasim::g_pristine.erase(p);
            munmap(p, it->second);
            cudasim::g_mapped.erase(it);
            return cudaSuccess;
        }
    }
    free(p);
    return cudaSuccess;
}
cudaError_t cudaMallocHost(void **p, size_t bytes) {
    *p = malloc(bytes ? bytes : 1);
    if (!*p) return cudaErrorMemoryAllocation;
    cudasim::count::host_register(*p, bytes);
    return cudaSuccess;
}
cudaError_t cudaHostAlloc(void **p, size_t bytes, unsigned) {
    return cudaMallocHost(p, bytes);
}
cudaError_t cudaFreeHost(void *p) {
    cudasim::count::host_unregister(p);
    free(p);
    return cudaSuccess;
}
cudaError_t cudaHostRegister(void *p, size_t bytes, unsigned) {
    cudasim::count::host_register(p, bytes);
    return cudaSuccess;
}
cudaError_t cudaHostUnregister(void *p) {
    cudasim::count::host_unregister(p);
    return cudaSuccess;
}
static void memcpy_run(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                       cudaStream_t s) {
    cudasim::count::copy(dst, src, bytes, (int)kind, s);
    cudasim_touch_all();
    if (bytes) memmove(dst, src, bytes);
}
static cudaError_t memcpy_on(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                             cudaStream_t s) {
    if (cudasim::graph::capturing(s)) {
        /* a graph copies from and to page-locked host memory only: the driver cannot stage a
         * pageable copy at replay */
        for (const void *p : {(const void *)dst, src})
            if (!cudasim::count::is_device(p) && !cudasim::count::is_pinned(p, bytes))
                cudasim::graph::fail("cudaMemcpyAsync",
                                     "a copy from or to pageable host memory (only page-locked "
                                     "memory: cudaMallocHost, cudaHostAlloc, cudaHostRegister)");
        cudasim::graph::record(
            s, "memcpy", [=](cudaStream_t replay) { memcpy_run(dst, src, bytes, kind, replay); });
        return cudaSuccess;
    }
    cudasim::graph::check_legacy(s, "cudaMemcpy");
    memcpy_run(dst, src, bytes, kind, s);
    return cudaSuccess;
}
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
    cudasim::graph::check_unsafe("cudaMemcpy (synchronous)");
    return memcpy_on(dst, src, bytes, kind, nullptr);
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind k,
                            cudaStream_t s) {
    return memcpy_on(dst, src, bytes, k, s);
}
static void memset_run(void *p, int value, size_t bytes, cudaStream_t s) {
    cudasim::count::memset(p, bytes, s);
    {
        std::lock_guard<std::mutex> lock(cudasim::g_mutex);
        auto it = cudasim::g_pristine.find(p);
        if (value == 0 && it != cudasim::g_pristine.end() && bytes <= it->second) return;
    }
    if (bytes) memset(p, value, bytes);
}
static cudaError_t memset_on(void *p, int value, size_t bytes, cudaStream_t s) {
    if (cudasim::graph::capturing(s)) {
        cudasim::graph::record(s, "memset",
                               [=](cudaStream_t replay) { memset_run(p, value, bytes, replay); });
        return cudaSuccess;
    }
    cudasim::graph::check_legacy(s, "cudaMemset");
    memset_run(p, value, bytes, s);
    return cudaSuccess;
}
cudaError_t cudaMemset(void *p, int value, size_t bytes) {
    return memset_on(p, value, bytes, nullptr);
}
cudaError_t cudaMemsetAsync(void *p, int value, size_t bytes, cudaStream_t s) {
    return memset_on(p, value, bytes, s);
}
cudaError_t cudaDeviceSynchronize(void) {
    cudasim::graph::check_unsafe("cudaDeviceSynchronize");
    return cudasim::last_error;
}
cudaError_t cudaStreamCreate(cudaStream_t *s) {
    return cudaStreamCreateWithFlags(s, 0);
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags) {
    *s = new cudasim_stream{flags};
    return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
    cudasim::graph::check_wait(s, "cudaStreamDestroy");
    delete s;
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    cudasim::graph::check_wait(s, "cudaStreamSynchronize");
    cudasim::graph::check_unsafe("cudaStreamSynchronize");
    return cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned) {
    cudasim::graph::check_event_wait(s, e);
    return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t *e) {
    *e = new cudasim_event();
    return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned) {
    return cudaEventCreate(e);
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
    cudasim::graph::event_forget(e);
    delete e;
    return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
    /* in a capture the record marks a point of the graph (no node, no time) */
    cudasim::graph::event_recorded(e, s);
    if (!cudasim::graph::capturing(s)) e->t = std::chrono::steady_clock::now();
    return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
    cudasim::graph::check_event_sync(e, "cudaEventSynchronize");
    return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) {
    *ms = std::chrono::duration<float, std::milli>(b->t - a->t).count();
    return cudaSuccess;
}
cudaError_t cudasim_func_set_attribute(const void *fn, cudaFuncAttribute attr, int value) {
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 ||
        (size_t)value > cudasim::OPTIN_SHARED_LIMIT)
        return cudaErrorInvalidValue;
    std::lock_guard<std::mutex> lock(cudasim::g_mutex);
    cudasim::g_shared_optin[fn] = value;
    return cudaSuccess;
}
