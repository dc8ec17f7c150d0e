/* cudasim_count.cpp — the event log behind cudasim_count.h, device allocations and their
 * high-water mark, pinned host ranges, and the per-warp coalescing count of kernel loads and
 * stores (fed by the traffic hooks of cudasim_traffic_hooks.cpp in the traffic build).
 *
 * Coalescing follows Nsight Compute's "sectors per request": the k-th load of each lane of a
 * warp is one warp-level request, and its cost is the number of distinct 32-byte sectors the
 * lanes touch together (4 for 32 consecutive floats, 32 when every lane hits its own sector).
 * Loads and stores are counted as two separate sequences. */
#include "cudasim_count_impl.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace cudasim {
namespace count {
bool g_on;
int g_flags;
thread_local int t_in_graph;

namespace {
struct Access {
    uintptr_t addr;
    uint32_t size;
};
struct ThreadLog {
    std::vector<Access> loads, stores;
};

std::vector<cudasim_record> g_events;
int g_sample;
std::mutex g_mem_mu;
std::map<uintptr_t, size_t> g_device; /* base -> bytes */
std::map<uintptr_t, size_t> g_pinned; /* base -> bytes */
size_t g_in_use, g_high;
std::map<const void *, int> g_streams;

/* the launch being simulated */
cudasim_record g_cur;
std::chrono::steady_clock::time_point g_t0;
unsigned long long g_total_blocks, g_next, g_picked;
std::vector<ThreadLog> g_threads;
/* sector address -> (bit i of the low word: byte i loaded; high word: byte i stored) */
std::unordered_map<uint64_t, uint64_t> g_sectors;
uintptr_t g_hit_lo = 1, g_hit_hi = 0; /* the device allocation of the last access */
/* the gap between device allocations that held the last address outside them (fragments,
 * shared memory, stacks): most accesses of a kernel that works in shared memory land there */
uintptr_t g_miss_lo = 1, g_miss_hi = 0;

bool range_find(const std::map<uintptr_t, size_t> &m, uintptr_t a, uintptr_t *lo, uintptr_t *hi) {
    auto it = m.upper_bound(a);
    if (it == m.begin()) return false;
    --it;
    if (a >= it->first + it->second) return false;
    *lo = it->first;
    *hi = it->first + it->second;
    return true;
}

/* Distinct sectors touched by the k-th access of each lane, summed over k. */
void warp_requests(std::vector<ThreadLog> &t, int lo, int hi, bool stores, double *requests,
                   double *sectors) {
    size_t depth = 0;
    for (int i = lo; i < hi; i++)
        depth = std::max(depth, (stores ? t[i].stores : t[i].loads).size());
    uint64_t buf[32 * 4];
    for (size_t k = 0; k < depth; k++) {
        int nb = 0;
        for (int i = lo; i < hi; i++) {
            const std::vector<Access> &v = stores ? t[i].stores : t[i].loads;
            if (k >= v.size()) continue;
            uint64_t first = v[k].addr / 32, last = (v[k].addr + v[k].size - 1) / 32;
            for (uint64_t s = first; s <= last && nb < 32 * 4; s++)
                buf[nb++] = s;
        }
        std::sort(buf, buf + nb);
        *sectors += (double)(std::unique(buf, buf + nb) - buf);
        *requests += 1;
    }
}

void mark_bytes(uintptr_t addr, size_t size, bool store) {
    for (size_t i = 0; i < size;) {
        uint64_t sector = (addr + i) / 32;
        unsigned off = (unsigned)((addr + i) % 32);
        size_t n = std::min(size - i, (size_t)(32 - off));
        uint64_t bits = (n == 32 ? 0xffffffffull : ((1ull << n) - 1)) << off;
        g_sectors[sector] |= store ? bits << 32 : bits;
        i += n;
    }
}

void push(const cudasim_record &e) {
    g_events.push_back(e);
}
} // namespace

void launch_begin(const char *name, dim3 grid, dim3 block, size_t shmem, const void *stream) {
    g_cur = cudasim_record();
    g_cur.kind = CUDASIM_EV_KERNEL;
    g_cur.name = name;
    g_cur.stream = stream_id(stream);
    g_cur.grid[0] = grid.x, g_cur.grid[1] = grid.y, g_cur.grid[2] = grid.z;
    g_cur.block[0] = block.x, g_cur.block[1] = block.y, g_cur.block[2] = block.z;
    g_cur.shmem = shmem;
    g_cur.in_graph = t_in_graph;
    g_total_blocks = (unsigned long long)grid.x * grid.y * grid.z;
    g_cur.threads = (double)g_total_blocks * block.x * block.y * block.z;
    g_next = 0;
    g_picked = 0;
    g_threads.assign((size_t)block.x * block.y * block.z, ThreadLog());
    g_sectors.clear();
    g_t0 = std::chrono::steady_clock::now();
}

bool next_block(unsigned long long *linear) {
    unsigned long long n = g_total_blocks;
    if (!g_on || g_sample <= 0 || n <= (unsigned long long)g_sample) {
        if (g_next >= n) return false;
        *linear = g_next++;
        g_picked++;
        return true;
    }
    /* blocks 0 .. s-2 and the last one. Consecutive blocks, as the GPU runs them side by
     * side: the data neighbouring blocks share (an attention head's keys, one row's
     * tiles) is counted once, as it is fetched once into L2 (blocks spread over the grid
     * would each count it, and scaling up would multiply it); the last block keeps the
     * grid's tail (a partial block, the causal diagonal's longest loop) in the sample. */
    if (g_next >= (unsigned long long)g_sample) return false;
    *linear = g_next + 1 < (unsigned long long)g_sample ? g_next : n - 1;
    g_next++;
    g_picked++;
    return true;
}

void block_end(int nthreads) {
    if (!g_on) return;
    for (int w = 0; w * 32 < nthreads; w++) {
        int lo = 32 * w, hi = std::min(nthreads, lo + 32);
        warp_requests(g_threads, lo, hi, false, &g_cur.load_requests, &g_cur.load_sectors);
        warp_requests(g_threads, lo, hi, true, &g_cur.store_requests, &g_cur.store_sectors);
    }
    for (int i = 0; i < nthreads; i++) {
        ThreadLog &t = g_threads[i];
        g_cur.max_thread_accesses =
            std::max(g_cur.max_thread_accesses, (double)(t.loads.size() + t.stores.size()));
        for (const Access &a : t.loads)
            g_cur.load_bytes += a.size, mark_bytes(a.addr, a.size, false);
        for (const Access &a : t.stores)
            g_cur.store_bytes += a.size, mark_bytes(a.addr, a.size, true);
        t.loads.clear();
        t.stores.clear();
    }
}

void launch_end() {
    if (!g_on) return;
    for (const auto &s : g_sectors) {
        uint32_t ld = (uint32_t)s.second, stb = (uint32_t)(s.second >> 32);
        g_cur.unique_load_bytes += __builtin_popcount(ld);
        g_cur.unique_store_bytes += __builtin_popcount(stb);
        g_cur.dram_bytes += 32.0 * ((ld != 0) + (stb != 0));
    }
    g_sectors.clear();
    double sc = g_picked ? (double)g_total_blocks / (double)g_picked : 1.0;
    g_cur.scale = sc;
    double *scaled[] = {&g_cur.load_bytes,        &g_cur.store_bytes,
                        &g_cur.unique_load_bytes, &g_cur.unique_store_bytes,
                        &g_cur.dram_bytes,        &g_cur.load_requests,
                        &g_cur.load_sectors,      &g_cur.store_requests,
                        &g_cur.store_sectors,     &g_cur.flops,
                        &g_cur.tc_flops};
    for (double *x : scaled)
        *x *= sc;
    g_cur.host_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - g_t0).count();
    push(g_cur);
}

void access(uintptr_t addr, size_t size, bool store) {
    if (addr >= g_miss_lo && addr < g_miss_hi) return;
    if (!(addr >= g_hit_lo && addr < g_hit_hi) &&
        !range_find(g_device, addr, &g_hit_lo, &g_hit_hi)) {
        auto next = g_device.upper_bound(addr);
        g_miss_hi = next == g_device.end() ? UINTPTR_MAX : next->first;
        g_miss_lo = 0;
        if (next != g_device.begin()) {
            --next;
            g_miss_lo = next->first + next->second;
        }
        return;
    }
    int tid = current_tid();
    if (tid < 0 || (size_t)tid >= g_threads.size()) return;
    ThreadLog &t = g_threads[tid];
    (store ? t.stores : t.loads).push_back(Access{addr, (uint32_t)size});
}

/* Summed over the simulated blocks like the accesses; the thread check keeps host code that
 * calls a __device__ helper out of the count. */
void flops(double n) {
    if (current_tid() >= 0) g_cur.flops += n;
}
void tc_flops(double n) {
    if (current_tid() >= 0) g_cur.tc_flops += n;
}

static int align_of(uintptr_t v) {
    int a = 16;
    while (a > 1 && v % (uintptr_t)a)
        a /= 2;
    return a;
}

void gemm(int ta, int tb, int m, int n, int k, int batch, const void *A, int at, int lda,
          const void *B, int bt, int ldb, const void *C, int ct, int ldc, const void *stream,
          const char *name) {
    if (!g_on) return;
    cudasim_record e = cudasim_record();
    e.kind = CUDASIM_EV_GEMM;
    e.in_graph = t_in_graph;
    e.name = name ? name : batch > 1 ? "gemm_strided_batched" : "gemm";
    e.stream = stream_id(stream);
    e.scale = 1;
    e.transa = ta, e.transb = tb, e.m = m, e.n = n, e.k = k, e.batch = batch;
    e.lda = lda, e.ldb = ldb, e.ldc = ldc, e.atype = at, e.btype = bt, e.ctype = ct;
    int ea = at == CUDA_R_16F ? 2 : 4, eb = bt == CUDA_R_16F ? 2 : 4, ec = ct == CUDA_R_16F ? 2 : 4;
    e.elem_bytes = ea;
    int al = std::min({align_of((uintptr_t)lda * ea), align_of((uintptr_t)ldb * eb),
                       align_of((uintptr_t)ldc * ec), align_of((uintptr_t)A),
                       align_of((uintptr_t)B), align_of((uintptr_t)C)});
    e.align_bytes = al;
    push(e);
}

void copy(void *dst, const void *src, size_t bytes, int kind, const void *stream) {
    if (!g_on) return;
    bool dd = is_device(dst), sd = is_device(src);
    (void)kind; /* the direction follows the pointers, as with cudaMemcpyDefault */
    cudasim_record e = cudasim_record();
    e.kind = CUDASIM_EV_COPY;
    e.in_graph = t_in_graph;
    e.name = "memcpy";
    e.stream = stream_id(stream);
    e.scale = 1;
    e.bytes = bytes;
    e.dir = sd && dd ? CUDASIM_D2D : dd ? CUDASIM_H2D : sd ? CUDASIM_D2H : CUDASIM_H2H;
    const void *host = e.dir == CUDASIM_H2D ? src : e.dir == CUDASIM_D2H ? dst : nullptr;
    e.pinned = host && is_pinned(host, bytes);
    push(e);
}

void memset(void *p, size_t bytes, const void *stream) {
    if (!g_on) return;
    cudasim_record e = cudasim_record();
    e.kind = CUDASIM_EV_MEMSET;
    e.in_graph = t_in_graph;
    e.name = "memset";
    e.stream = stream_id(stream);
    e.scale = 1;
    e.bytes = bytes;
    (void)p;
    push(e);
}

void nccl(const char *op, size_t bytes, const void *stream) {
    if (!g_on) return;
    cudasim_record e = cudasim_record();
    e.kind = CUDASIM_EV_NCCL;
    e.name = op;
    e.stream = stream_id(stream);
    e.scale = 1;
    e.bytes = bytes;
    push(e);
}

void graph_launch(size_t nodes, const void *stream) {
    if (!g_on) return;
    cudasim_record e = cudasim_record();
    e.kind = CUDASIM_EV_GRAPH;
    e.name = "graph";
    e.stream = stream_id(stream);
    e.scale = 1;
    e.nodes = (int)nodes;
    push(e);
}

void device_alloc(void *p, size_t bytes) {
    std::lock_guard<std::mutex> lock(g_mem_mu);
    g_device[(uintptr_t)p] = bytes;
    g_in_use += bytes;
    g_high = std::max(g_high, g_in_use);
    g_hit_lo = 1, g_hit_hi = 0, g_miss_lo = 1, g_miss_hi = 0;
}

void device_free(void *p) {
    std::lock_guard<std::mutex> lock(g_mem_mu);
    auto it = g_device.find((uintptr_t)p);
    if (it == g_device.end()) return;
    g_in_use -= it->second;
    g_device.erase(it);
    g_hit_lo = 1, g_hit_hi = 0, g_miss_lo = 1, g_miss_hi = 0;
}

bool is_device(const void *p) {
    uintptr_t lo, hi;
    std::lock_guard<std::mutex> lock(g_mem_mu);
    return range_find(g_device, (uintptr_t)p, &lo, &hi);
}

void host_register(void *p, size_t bytes) {
    std::lock_guard<std::mutex> lock(g_mem_mu);
    g_pinned[(uintptr_t)p] = bytes;
}

void host_unregister(void *p) {
    std::lock_guard<std::mutex> lock(g_mem_mu);
    g_pinned.erase((uintptr_t)p);
}

bool is_pinned(const void *p, size_t bytes) {
    uintptr_t lo, hi;
    std::lock_guard<std::mutex> lock(g_mem_mu);
    return range_find(g_pinned, (uintptr_t)p, &lo, &hi) && (uintptr_t)p + bytes <= hi;
}

int stream_id(const void *stream) {
    if (!stream) return 0;
    std::lock_guard<std::mutex> lock(g_mem_mu);
    auto it = g_streams.find(stream);
    if (it != g_streams.end()) return it->second;
    int id = (int)g_streams.size() + 1;
    g_streams[stream] = id;
    return id;
}
} // namespace count
} // namespace cudasim

using namespace cudasim::count;

extern "C" void cudasim_count_start(int flags, int sample_blocks) {
    g_events.clear();
    g_flags = flags;
    g_sample = sample_blocks > 1 ? sample_blocks : 0;
    g_on = true;
}

extern "C" void cudasim_count_stop(void) {
    g_on = false;
}

extern "C" size_t cudasim_count_events(const struct cudasim_record **events) {
    *events = g_events.data();
    return g_events.size();
}

extern "C" void cudasim_count_mark(const char *label) {
    if (!g_on) return;
    cudasim_record e = cudasim_record();
    e.kind = CUDASIM_EV_MARK;
    e.name = label;
    e.scale = 1;
    push(e);
}

void cudasim::count_flops(double n) {
    if (g_on) cudasim::count::flops(n);
}
void cudasim::count_tc_flops(double n) {
    if (g_on) cudasim::count::tc_flops(n);
}

extern "C" size_t cudasim_mem_in_use(void) {
    std::lock_guard<std::mutex> lock(g_mem_mu);
    return g_in_use;
}

extern "C" size_t cudasim_mem_high_water(void) {
    std::lock_guard<std::mutex> lock(g_mem_mu);
    return g_high;
}

extern "C" void cudasim_mem_reset_high_water(void) {
    std::lock_guard<std::mutex> lock(g_mem_mu);
    g_high = g_in_use;
}

/* The traffic build links a strong definition that returns 1. */
extern "C" __attribute__((weak)) int cudasim_count_has_traffic(void) {
    return 0;
}
