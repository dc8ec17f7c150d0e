/* cudasim_traffic_hooks.cpp — the load/store hooks of the traffic build.
 *
 * The kernels of that build are compiled with -fsanitize=kernel-address and
 * --param asan-instrumentation-with-call-threshold=0: GCC then calls
 * __asan_{load,store}{1,2,4,8,16}_noabort(addr) before every memory access it cannot prove
 * harmless, and __asan_{load,store}N_noabort(addr, size) for other sizes. No ASan runtime
 * is linked: these definitions are the whole "sanitizer". An access counts when counting is
 * on, a kernel thread is running and the address lies in a cudaMalloc allocation. This file
 * itself is compiled without the instrumentation. */
#include "cudasim_count_impl.h"

#include <cstring>

using cudasim::count::access;
using cudasim::count::g_on;

#define XLMC_TRAFFIC_HOOK(N)                                                                       \
    extern "C" void __asan_load##N##_noabort(uintptr_t a) {                                        \
        if (g_on) access(a, N, false);                                                             \
    }                                                                                              \
    extern "C" void __asan_store##N##_noabort(uintptr_t a) {                                       \
        if (g_on) access(a, N, true);                                                              \
    }
XLMC_TRAFFIC_HOOK(1)
XLMC_TRAFFIC_HOOK(2)
XLMC_TRAFFIC_HOOK(4)
XLMC_TRAFFIC_HOOK(8)
XLMC_TRAFFIC_HOOK(16)

extern "C" void __asan_loadN_noabort(uintptr_t a, size_t n) {
    if (g_on) access(a, n, false);
}
extern "C" void __asan_storeN_noabort(uintptr_t a, size_t n) {
    if (g_on) access(a, n, true);
}
/* memcpy/memset/memmove inside instrumented code arrive here */
extern "C" void *__asan_memcpy(void *d, const void *s, size_t n) {
    if (g_on) access((uintptr_t)s, n, false), access((uintptr_t)d, n, true);
    return memcpy(d, s, n);
}
extern "C" void *__asan_memmove(void *d, const void *s, size_t n) {
    if (g_on) access((uintptr_t)s, n, false), access((uintptr_t)d, n, true);
    return memmove(d, s, n);
}
extern "C" void *__asan_memset(void *d, int c, size_t n) {
    if (g_on) access((uintptr_t)d, n, true);
    return memset(d, c, n);
}
extern "C" void __asan_handle_no_return(void) {}

extern "C" int cudasim_count_has_traffic(void) {
    return 1;
}
