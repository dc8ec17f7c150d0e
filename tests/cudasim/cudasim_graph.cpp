/* cudasim_graph.cpp — stream capture and CUDA Graphs for cudasim (the API of cudasim.h, the
 * hooks of cudasim_graph_impl.h).
 *
 * A capture is a list of closures, one per call issued to the capturing stream; a graph holds
 * that list and an executable graph a copy of it; cudaGraphLaunch logs one graph event
 * (cudasim_count.h) and runs the closures in order with the counters' in_graph flag set, so
 * each replayed call is checked, scheduled, sampled and counted as an eager one would be.
 * Streams, captures and events may be used from several host threads (NCCL ranks are
 * threads), so the capture table is locked. */
#include "cudasim_count_impl.h"
#include "cudasim_graph_impl.h"

#include <atomic>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

struct cudasim_graph_node {
    const char *what;
    cudasim::graph::Work work;
};
struct cudasim_graph {
    std::vector<cudasim_graph_node> nodes;
};
struct cudasim_graph_exec {
    std::vector<cudasim_graph_node> nodes;
};

namespace cudasim {
namespace graph {
namespace {
struct Capture {
    cudaStreamCaptureMode mode;
    std::thread::id owner;
    std::vector<cudasim_graph_node> nodes;
};
std::mutex g_mu;
std::atomic<int> g_active{0}; /* captures in progress */
std::map<cudaStream_t, Capture> g_captures;
std::map<cudaEvent_t, cudaStream_t> g_event_capture; /* events recorded in a capture */
thread_local cudaStreamCaptureMode t_mode = cudaStreamCaptureModeGlobal;

const char *mode_name(cudaStreamCaptureMode m) {
    return m == cudaStreamCaptureModeGlobal        ? "global"
           : m == cudaStreamCaptureModeThreadLocal ? "thread-local"
                                                   : "relaxed";
}
} // namespace

void fail(const char *call, const char *why) {
    fprintf(stderr, "cudasim: stream capture: %s refused: %s\n", call, why);
    abort();
}

bool capturing(cudaStream_t s) {
    if (!s || g_active.load() == 0) return false;
    std::lock_guard<std::mutex> lock(g_mu);
    return g_captures.count(s) != 0;
}

void record(cudaStream_t s, const char *what, Work work) {
    std::lock_guard<std::mutex> lock(g_mu);
    g_captures.at(s).nodes.push_back(cudasim_graph_node{what, std::move(work)});
}

void check_legacy(cudaStream_t s, const char *call) {
    if (s || g_active.load() == 0) return;
    std::lock_guard<std::mutex> lock(g_mu);
    for (const auto &c : g_captures)
        if (!(c.first->flags & cudaStreamNonBlocking))
            fail(call, "work on the legacy default stream waits for every blocking stream, "
                       "and one of them is capturing (cudaErrorStreamCaptureImplicit)");
}

void check_unsafe(const char *call) {
    if (g_active.load() == 0 || t_mode == cudaStreamCaptureModeRelaxed) return;
    std::lock_guard<std::mutex> lock(g_mu);
    std::thread::id me = std::this_thread::get_id();
    for (const auto &c : g_captures) {
        const Capture &k = c.second;
        bool mine = k.owner == me && k.mode != cudaStreamCaptureModeRelaxed;
        bool global = k.owner != me && k.mode == cudaStreamCaptureModeGlobal &&
                      t_mode == cudaStreamCaptureModeGlobal;
        if (!mine && !global) continue;
        char why[256];
        snprintf(why, sizeof why,
                 "a potentially unsafe call while %s capture (%s mode) is in progress "
                 "(cudaErrorStreamCaptureUnsupported)",
                 mine ? "this thread's" : "another thread's", mode_name(k.mode));
        fail(call, why);
    }
}

void check_wait(cudaStream_t s, const char *call) {
    if (capturing(s))
        fail(call, "it waits for (or asks about) a capturing stream, whose work has not run "
                   "and will not run until a graph of it is launched");
}

void event_recorded(cudaEvent_t e, cudaStream_t s) {
    std::lock_guard<std::mutex> lock(g_mu);
    if (s && g_captures.count(s))
        g_event_capture[e] = s;
    else
        g_event_capture.erase(e);
}

void event_forget(cudaEvent_t e) {
    std::lock_guard<std::mutex> lock(g_mu);
    g_event_capture.erase(e);
}

void check_event_wait(cudaStream_t s, cudaEvent_t e) {
    std::lock_guard<std::mutex> lock(g_mu);
    auto it = g_event_capture.find(e);
    if (it == g_event_capture.end() || !g_captures.count(it->second) || it->second == s) return;
    fail("cudaStreamWaitEvent",
         "the event marks a point of another stream's capture: waiting for it would join this "
         "stream to that capture (multi-stream capture is not simulated)");
}

void check_event_sync(cudaEvent_t e, const char *call) {
    std::lock_guard<std::mutex> lock(g_mu);
    auto it = g_event_capture.find(e);
    if (it != g_event_capture.end() && g_captures.count(it->second))
        fail(call, "the event was recorded in a capture in progress: it will never complete");
}
} // namespace graph
} // namespace cudasim

using namespace cudasim::graph;

cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode) {
    if (!s)
        fail("cudaStreamBeginCapture",
             "the legacy default stream cannot be captured (cudaErrorStreamCaptureUnsupported)");
    if (mode != cudaStreamCaptureModeGlobal && mode != cudaStreamCaptureModeThreadLocal &&
        mode != cudaStreamCaptureModeRelaxed)
        return cudaErrorInvalidValue;
    std::lock_guard<std::mutex> lock(g_mu);
    if (g_captures.count(s))
        fail("cudaStreamBeginCapture", "the stream is capturing already (cudaErrorIllegalState)");
    g_captures[s] = Capture{mode, std::this_thread::get_id(), {}};
    g_active++;
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *graph) {
    std::lock_guard<std::mutex> lock(g_mu);
    auto it = s ? g_captures.find(s) : g_captures.end();
    if (it == g_captures.end())
        fail("cudaStreamEndCapture",
             "the stream is not capturing: no cudaStreamBeginCapture began a capture on it "
             "(cudaErrorIllegalState)");
    if (it->second.mode != cudaStreamCaptureModeRelaxed &&
        it->second.owner != std::this_thread::get_id())
        fail("cudaStreamEndCapture", "another thread began this capture, not in relaxed mode "
                                     "(cudaErrorStreamCaptureWrongThread)");
    if (!graph) return cudaErrorInvalidValue;
    *graph = new cudasim_graph{std::move(it->second.nodes)};
    g_captures.erase(it);
    g_active--;
    for (auto e = g_event_capture.begin(); e != g_event_capture.end();)
        e = e->second == s ? g_event_capture.erase(e) : std::next(e);
    return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus *status) {
    if (!status) return cudaErrorInvalidValue;
    *status = capturing(s) ? cudaStreamCaptureStatusActive : cudaStreamCaptureStatusNone;
    return cudaSuccess;
}

cudaError_t cudaThreadExchangeStreamCaptureMode(cudaStreamCaptureMode *mode) {
    if (!mode) return cudaErrorInvalidValue;
    cudaStreamCaptureMode old = t_mode;
    t_mode = *mode;
    *mode = old;
    return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long) {
    if (!exec || !graph) return cudaErrorInvalidValue;
    *exec = new cudasim_graph_exec{graph->nodes};
    return cudaSuccess;
}

cudaError_t cudaGraphInstantiateWithFlags(cudaGraphExec_t *exec, cudaGraph_t graph,
                                          unsigned long long flags) {
    return cudaGraphInstantiate(exec, graph, flags);
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s) {
    if (!exec) return cudaErrorInvalidValue;
    if (capturing(s))
        fail("cudaGraphLaunch", "a graph launched into a capturing stream would become a child "
                                "graph node, which cudasim does not simulate");
    check_legacy(s, "cudaGraphLaunch");
    cudasim::count::graph_launch(exec->nodes.size(), s);
    /* a replayed call runs as an eager one, marked as a node of this launch */
    int outer = cudasim::count::t_in_graph;
    cudasim::count::t_in_graph = 1;
    for (const cudasim_graph_node &n : exec->nodes)
        n.work(s);
    cudasim::count::t_in_graph = outer;
    return cudaPeekAtLastError();
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
    delete exec;
    return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
    delete graph;
    return cudaSuccess;
}

cudaError_t cudaGraphGetNodes(cudaGraph_t graph, cudaGraphNode_t *nodes, size_t *n) {
    if (!graph || !n) return cudaErrorInvalidValue;
    if (!nodes) {
        *n = graph->nodes.size();
        return cudaSuccess;
    }
    size_t k = *n < graph->nodes.size() ? *n : graph->nodes.size();
    for (size_t i = 0; i < k; i++)
        nodes[i] = &graph->nodes[i];
    *n = k;
    return cudaSuccess;
}
