/* cudasim_traffic_hooks.cpp — the load/store hooks of the traffic build.
 *
 * The kernels of that build are compiled with -fsanitize=thread and
 * --param tsan-instrument-func-entry-exit=0: GCC then calls __tsan_{read,write}{1,2,4,8,16}(addr)
 * (or their __tsan_unaligned_ forms) before every load and store of memory that may be shared,
 * and __tsan_{read,write}_range(addr, size) for other sizes. No TSan runtime is linked: these
 * definitions are the whole "sanitizer". An access counts when counting is on, a kernel thread
 * is running and the address lies in a cudaMalloc allocation. This file itself is compiled
 * without the instrumentation.
 *
 * Why TSan's hooks and not ASan's: GCC's ASan pass instruments a memory reference once per
 * extended basic block, reads and writes alike, so the store of a read-modify-write
 * (m[i] = b * m[i] + g) got no hook and Adam's moments and master weights were counted as read
 * but never written (test_cudasim_traffic, case 7). TSan's pass hooks every access. */
#include "cudasim_count_impl.h"

#include <cstring>

using cudasim::count::access;
using cudasim::count::g_on;

#define XLMC_TRAFFIC_HOOK(N)                                                                       \
    extern "C" void __tsan_read##N(void *a) {                                                      \
        if (g_on) access((uintptr_t)a, N, false);                                                  \
    }                                                                                              \
    extern "C" void __tsan_write##N(void *a) {                                                     \
        if (g_on) access((uintptr_t)a, N, true);                                                   \
    }                                                                                              \
    extern "C" void __tsan_unaligned_read##N(void *a) {                                            \
        if (g_on) access((uintptr_t)a, N, false);                                                  \
    }                                                                                              \
    extern "C" void __tsan_unaligned_write##N(void *a) {                                           \
        if (g_on) access((uintptr_t)a, N, true);                                                   \
    }
XLMC_TRAFFIC_HOOK(1)
XLMC_TRAFFIC_HOOK(2)
XLMC_TRAFFIC_HOOK(4)
XLMC_TRAFFIC_HOOK(8)
XLMC_TRAFFIC_HOOK(16)

extern "C" void __tsan_read_range(void *a, unsigned long n) {
    if (g_on) access((uintptr_t)a, n, false);
}
extern "C" void __tsan_write_range(void *a, unsigned long n) {
    if (g_on) access((uintptr_t)a, n, true);
}
/* the module constructor GCC adds; there is no runtime to start */
extern "C" void __tsan_init(void) {}

extern "C" int cudasim_count_has_traffic(void) {
    return 1;
}
