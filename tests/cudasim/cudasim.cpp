/* cudasim.cpp — the fiber scheduler behind cudasim.h: kernel launches, barriers, warp
 * exchanges, and the fp16 conversions (the runtime API is in cudasim_runtime.cpp, cuBLAS and
 * NCCL in cudasim_libs.cpp, capture and graphs in cudasim_graph.cpp). */
#include "cudasim.h"
#include "cudasim_count_impl.h"
#include "cudasim_graph_impl.h"
#include "cudasim_runtime_impl.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define CUDASIM_ASAN 1
#else
#define CUDASIM_ASAN 0
#endif

namespace cudasim {
thread_local cudaError_t last_error = cudaSuccess;
std::mutex g_mutex;
std::map<const void *, int> g_shared_optin;
std::map<void *, size_t> g_mapped;
std::map<void *, size_t> g_pristine;
thread_local uint3 t_threadIdx, t_blockIdx;
thread_local dim3 t_blockDim, t_gridDim;
thread_local void *t_dynamic_shared;

namespace {

/* Generous: ASan frames are several times larger than plain ones. Untouched pages cost
 * nothing (MAP_NORESERVE). */
constexpr size_t STACK_BYTES = 256 * 1024;
constexpr int MAX_THREADS = 1024;
constexpr size_t STATIC_SHARED_LIMIT = 48 * 1024;

enum { RUNNABLE, WAITING, DONE };
enum { WAIT_NONE, WAIT_BLOCK, WAIT_WARP };

struct Fiber {
    ucontext_t ctx;
    uint3 idx;
    int state, wait;
    void *fake_stack;
};

struct Warp {
    int count;
    unsigned char slot[32][16];
};

struct Sched {
    std::vector<Fiber> fibers;
    std::vector<int> order;
    std::vector<Warp> warps;
    ucontext_t main;
    int cur = -1;
    int nthreads = 0;
    int block_count = 0;
    const std::function<void()> *body = nullptr;
    const char *name = "";
    const void *main_bottom = nullptr;
    size_t main_size = 0;
    void *main_fake = nullptr;
};

/* Stacks per host thread, kept across launches. */
struct StackPool {
    std::vector<char *> stacks;
    ~StackPool() {
        for (char *s : stacks)
            munmap(s, STACK_BYTES);
    }
    char *get(int i) {
        while ((int)stacks.size() <= i) {
            void *p = mmap(nullptr, STACK_BYTES, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (p == MAP_FAILED) {
                fprintf(stderr, "cudasim: cannot map a fiber stack\n");
                abort();
            }
            stacks.push_back((char *)p);
        }
        return stacks[i];
    }
};

thread_local Sched *S;
thread_local StackPool pool;
int g_schedule = -1;
unsigned long long g_seed = 1;
unsigned long long g_launches;

void read_env_schedule() {
    std::lock_guard<std::mutex> lock(g_mutex);
    if (g_schedule >= 0) return;
    const char *s = getenv("CUDASIM_SCHEDULE");
    const char *seed = getenv("CUDASIM_SEED");
    g_schedule = (s && !strcmp(s, "shuffle")) ? CUDASIM_SHUFFLE : CUDASIM_ASCENDING;
    if (seed) g_seed = strtoull(seed, nullptr, 10);
}

uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

[[noreturn]] void kernel_fail(const char *what) {
    fprintf(stderr, "cudasim: kernel %s, block (%u,%u,%u): %s\n", S ? S->name : "?", t_blockIdx.x,
            t_blockIdx.y, t_blockIdx.z, what);
    abort();
}

void fiber_entry() {
    Sched *s = S;
#if CUDASIM_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &s->main_bottom, &s->main_size);
#endif
    (*s->body)();
    s->fibers[s->cur].state = DONE;
#if CUDASIM_ASAN
    __sanitizer_start_switch_fiber(nullptr, s->main_bottom, s->main_size);
#endif
    /* returning follows uc_link back to the scheduler */
}

void resume(int i) {
    Fiber &f = S->fibers[i];
    S->cur = i;
    t_threadIdx = f.idx;
#if CUDASIM_ASAN
    __sanitizer_start_switch_fiber(&S->main_fake, pool.stacks[i], STACK_BYTES);
#endif
    if (swapcontext(&S->main, &f.ctx) != 0) kernel_fail("swapcontext failed");
#if CUDASIM_ASAN
    __sanitizer_finish_switch_fiber(S->main_fake, nullptr, nullptr);
#endif
    S->cur = -1;
}

void yield_waiting(int wait) {
    Fiber &f = S->fibers[S->cur];
    f.state = WAITING;
    f.wait = wait;
#if CUDASIM_ASAN
    __sanitizer_start_switch_fiber(&f.fake_stack, S->main_bottom, S->main_size);
#endif
    if (swapcontext(&f.ctx, &S->main) != 0) kernel_fail("swapcontext failed");
#if CUDASIM_ASAN
    __sanitizer_finish_switch_fiber(f.fake_stack, &S->main_bottom, &S->main_size);
#endif
}

Fiber &current() {
    if (!S || S->cur < 0) {
        fprintf(stderr, "cudasim: a device intrinsic was called outside a kernel\n");
        abort();
    }
    return S->fibers[S->cur];
}

int linear_tid() {
    return S->cur;
}

int warp_expected(int w, unsigned mask) {
    int lanes = std::min(32, S->nthreads - 32 * w);
    unsigned present = lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1u);
    return __builtin_popcount(mask & present);
}

/* Lanes of warp w wait until `mask`'s present lanes have all arrived. */
void warp_barrier(unsigned mask) {
    current();
    int w = linear_tid() / 32;
    Warp &W = S->warps[w];
    if (++W.count >= warp_expected(w, mask)) {
        W.count = 0;
        int lo = 32 * w, hi = std::min(S->nthreads, lo + 32);
        for (int i = lo; i < hi; i++)
            if (S->fibers[i].state == WAITING && S->fibers[i].wait == WAIT_WARP)
                S->fibers[i].state = RUNNABLE;
        return;
    }
    yield_waiting(WAIT_WARP);
}

/* Kept out of run_block: getcontext returns twice, which would make the caller's loop
 * variables "might be clobbered" under -Werror. */
__attribute__((noinline)) void init_fiber(int i) {
    Fiber &f = S->fibers[i];
    f.state = RUNNABLE;
    f.wait = WAIT_NONE;
    f.fake_stack = nullptr;
    if (getcontext(&f.ctx) != 0) kernel_fail("getcontext failed");
    f.ctx.uc_stack.ss_sp = pool.get(i);
    f.ctx.uc_stack.ss_size = STACK_BYTES;
    f.ctx.uc_link = &S->main;
    makecontext(&f.ctx, fiber_entry, 0);
}

void run_block(uint64_t *rng, int shuffle) {
    for (int i = 0; i < S->nthreads; i++)
        init_fiber(i);
    for (Warp &w : S->warps)
        w.count = 0;
    if (shuffle)
        for (int i = S->nthreads - 1; i > 0; i--)
            std::swap(S->order[i], S->order[splitmix(rng) % (uint64_t)(i + 1)]);
    S->block_count = 0;
    for (;;) {
        int ran = 0, done = 0;
        for (int i : S->order) {
            if (S->fibers[i].state == RUNNABLE) {
                resume(i);
                ran = 1;
            }
        }
        for (const Fiber &f : S->fibers)
            done += f.state == DONE;
        if (done == S->nthreads) return;
        if (!ran)
            kernel_fail("deadlock: a barrier (__syncthreads, a shuffle or a vote) that not "
                        "every thread of the block or warp reaches");
    }
}

} // namespace

void syncthreads() {
    current();
    if (++S->block_count == S->nthreads) {
        S->block_count = 0;
        for (Fiber &f : S->fibers)
            if (f.state == WAITING && f.wait == WAIT_BLOCK) f.state = RUNNABLE;
        return;
    }
    yield_waiting(WAIT_BLOCK);
}

int lane_id() {
    current();
    return linear_tid() % 32;
}

void warp_exchange(unsigned mask, const void *val, void *out, size_t bytes, int src) {
    int lane = lane_id();
    Warp &W = S->warps[linear_tid() / 32];
    memcpy(W.slot[lane], val, bytes);
    warp_barrier(mask);
    int lanes = std::min(32, S->nthreads - 32 * (linear_tid() / 32));
    if (src < 0 || src >= lanes || !((mask >> src) & 1u)) src = lane;
    memcpy(out, W.slot[src], bytes);
    warp_barrier(mask);
}

void warp_share(unsigned mask, const void *mine, const void **all) {
    int lane = lane_id();
    Warp &W = S->warps[linear_tid() / 32];
    memcpy(W.slot[lane], &mine, sizeof mine);
    warp_barrier(mask);
    int lanes = std::min(32, S->nthreads - 32 * (linear_tid() / 32));
    for (int i = 0; i < 32; i++) {
        all[i] = nullptr;
        if (i < lanes && ((mask >> i) & 1u)) memcpy(&all[i], W.slot[i], sizeof all[i]);
    }
}

void fail(const char *what) {
    kernel_fail(what);
}

unsigned warp_ballot(unsigned mask, int pred) {
    int lane = lane_id();
    Warp &W = S->warps[linear_tid() / 32];
    W.slot[lane][0] = pred != 0;
    warp_barrier(mask);
    unsigned ballot = 0;
    int lanes = std::min(32, S->nthreads - 32 * (linear_tid() / 32));
    for (int i = 0; i < lanes; i++)
        if (((mask >> i) & 1u) && W.slot[i][0]) ballot |= 1u << i;
    warp_barrier(mask);
    return ballot;
}

void warp_sync(unsigned mask) {
    warp_barrier(mask);
}

int current_tid() {
    return S && S->cur >= 0 ? S->cur : -1;
}

/* Checks the launch against the device limits; false (and the error set) if refused. */
static bool launch_allowed(const char *name, const void *fn, dim3 grid, dim3 block, size_t shmem) {
    unsigned long long nthreads = (unsigned long long)block.x * block.y * block.z;
    size_t shared_limit = STATIC_SHARED_LIMIT;
    {
        std::lock_guard<std::mutex> lock(g_mutex);
        auto it = g_shared_optin.find(fn);
        if (it != g_shared_optin.end()) shared_limit = (size_t)it->second;
    }
    const char *bad = nullptr;
    if (nthreads == 0 || grid.x == 0 || grid.y == 0 || grid.z == 0)
        bad = "an empty grid or block";
    else if (nthreads > MAX_THREADS || block.z > 64)
        bad = "more than 1024 threads per block";
    else if (grid.y > 65535 || grid.z > 65535 || grid.x > 2147483647u)
        bad = "grid too large";
    else if (shmem > shared_limit)
        bad = "more dynamic shared memory than allowed";
    if (bad) {
        fprintf(stderr, "cudasim: launch of %s <<<(%u,%u,%u),(%u,%u,%u),%zu>>> refused: %s\n", name,
                grid.x, grid.y, grid.z, block.x, block.y, block.z, shmem, bad);
        last_error = cudaErrorInvalidConfiguration;
        return false;
    }
    return true;
}

/* The launch, now (eager, or a node of a graph replay). */
static void launch_run(const char *name, const void *fn, dim3 grid, dim3 block, size_t shmem,
                       const std::function<void()> &body, const void *stream) {
    {
        std::lock_guard<std::mutex> lock(g_mutex);
        g_launches++;
    }
    if (!launch_allowed(name, fn, grid, block, shmem)) return;
    unsigned long long nthreads = (unsigned long long)block.x * block.y * block.z;
    Sched sched;
    Sched *outer = S;
    S = &sched;
    sched.name = name;
    sched.body = &body;
    sched.nthreads = (int)nthreads;
    sched.fibers.resize(nthreads);
    sched.order.resize(nthreads);
    sched.warps.resize((nthreads + 31) / 32);
    for (int i = 0; i < (int)nthreads; i++) {
        sched.order[i] = i;
        sched.fibers[i].idx = uint3{i % block.x, (i / block.x) % block.y, i / (block.x * block.y)};
    }
    pool.get((int)nthreads - 1);
    t_blockDim = block;
    t_gridDim = grid;
    /* Fresh dynamic shared memory per block, poisoned with NaN bytes: a kernel that reads
     * what it did not write sees NaN, and ASan sees an access past the end. */
    std::vector<unsigned char> dyn;
    uint64_t rng = g_seed * 0x2545F4914F6CDD1Dull + g_launches;
    /* Blocks in linear order (x fastest); the counter may pick a sample of them. */
    cudasim_touch_all();
    count::launch_begin(name, grid, block, shmem, stream);
    unsigned long long linear;
    while (count::next_block(&linear)) {
        unsigned x = (unsigned)(linear % grid.x), y = (unsigned)(linear / grid.x % grid.y),
                 z = (unsigned)(linear / grid.x / grid.y);
        t_blockIdx = uint3{x, y, z};
        void *shared = nullptr;
        if (shmem) {
            shared = malloc(shmem);
            memset(shared, 0xff, shmem);
        }
        t_dynamic_shared = shared;
        run_block(&rng, g_schedule == CUDASIM_SHUFFLE);
        free(shared);
        count::block_end((int)nthreads);
    }
    count::launch_end();
    t_dynamic_shared = nullptr;
    S = outer;
}

void launch(const char *name, const void *fn, dim3 grid, dim3 block, size_t shmem,
            const std::function<void()> &body, const void *stream) {
    read_env_schedule();
    cudaStream_t s = (cudaStream_t)stream;
    if (graph::capturing(s)) {
        /* a configuration CUDA refuses is refused at capture, as it is there */
        if (!launch_allowed(name, fn, grid, block, shmem)) return;
        std::function<void()> kept = body;
        graph::record(s, name, [=](cudaStream_t replay) {
            launch_run(name, fn, grid, block, shmem, kept, replay);
        });
        return;
    }
    graph::check_legacy(s, name);
    launch_run(name, fn, grid, block, shmem, body, stream);
}
} // namespace cudasim

void cudasim_touch_all() {
    std::lock_guard<std::mutex> lock(cudasim::g_mutex);
    cudasim::g_pristine.clear();
}

extern "C" void cudasim_set_schedule(int schedule, unsigned long long seed) {
    std::lock_guard<std::mutex> lock(cudasim::g_mutex);
    cudasim::g_schedule = schedule;
    cudasim::g_seed = seed;
}

extern "C" unsigned long long cudasim_launch_count(void) {
    std::lock_guard<std::mutex> lock(cudasim::g_mutex);
    return cudasim::g_launches;
}

/* ---- fp16 ---- */
float cudasim_half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, bits;
    if (e == 0) {
        float v = ldexpf((float)m, -24);
        return sign ? -v : v;
    }
    if (e == 31)
        bits = sign | 0x7f800000u | (m << 13);
    else
        bits = sign | ((e - 15 + 127) << 23) | (m << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t cudasim_float_to_half(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return (uint16_t)(sign | (ax > 0x7f800000u ? 0x7e00u : 0x7c00u));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds to inf */
    if (ax < 0x38800000u) {                                   /* below 2^-14: subnormal */
        float v;
        memcpy(&v, &ax, 4);
        return (uint16_t)(sign | (uint32_t)nearbyintf(v * 16777216.0f));
    }
    uint32_t h = (((ax >> 23) - 127 + 15) << 10) | ((ax & 0x7fffffu) >> 13);
    uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}
