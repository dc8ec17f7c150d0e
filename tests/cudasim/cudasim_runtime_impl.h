/* cudasim_runtime_impl.h — state the scheduler (cudasim.cpp) and the runtime API
 * (cudasim_runtime.cpp) share. Internal to tests/cudasim. */
#ifndef XLMC_CUDASIM_RUNTIME_IMPL_H
#define XLMC_CUDASIM_RUNTIME_IMPL_H

#include "cudasim.h"

#include <map>
#include <mutex>

namespace cudasim {
/* The opt-in maximum of dynamic shared memory of the smallest device we target (V100: 96 KiB). */
constexpr size_t OPTIN_SHARED_LIMIT = 96 * 1024;
extern thread_local cudaError_t last_error;        /* cudaGetLastError's */
extern std::mutex g_mutex;                         /* guards what follows */
extern std::map<const void *, int> g_shared_optin; /* kernel -> its dynamic shared limit */
extern std::map<void *, size_t> g_mapped;          /* cudaMalloc blocks that came from mmap */
/* Mapped blocks nothing has written since they were mapped: zeroing them is a no-op that
 * would only fault in every page. Any launch, copy or GEMM ends their pristine state. */
extern std::map<void *, size_t> g_pristine;
} // namespace cudasim

#endif
