/* cudasim_graph_impl.h — the stream-capture hooks the cudasim runtime calls (cudasim_graph.cpp
 * implements them and the capture and graph API of cudasim.h). Internal to tests/cudasim.
 *
 * A call that CUDA can capture asks capturing(stream) first: when it is true, the call checks
 * its arguments, hands a closure that does the work to record() and returns; the closure runs
 * at each replay, on the stream the graph is launched into, with the counters' in_graph flag
 * set. Otherwise the call does its work at once. */
#ifndef XLMC_CUDASIM_GRAPH_IMPL_H
#define XLMC_CUDASIM_GRAPH_IMPL_H

#include "cudasim.h"

#include <functional>

struct cudasim_stream {
    unsigned flags; /* cudaStreamNonBlocking or 0 (blocking: the legacy stream waits for it) */
};

namespace cudasim {
namespace graph {
/* One recorded call: run at each replay with the stream the graph is launched into. */
using Work = std::function<void(cudaStream_t)>;
/* s captures (never the legacy stream, which cannot); cheap while nothing captures. */
bool capturing(cudaStream_t s);
/* Appends a node that runs `work` to s's capture; `what` names the call. */
void record(cudaStream_t s, const char *what, Work work);
/* Work issued to the legacy stream (s == nullptr): refused while a blocking stream captures,
 * which the legacy stream would wait for. */
void check_legacy(cudaStream_t s, const char *call);
/* A potentially unsafe call (cudaMalloc, cudaFree, synchronous copies and waits): refused
 * when the calling thread's capture interaction mode prohibits it (see
 * cudaThreadExchangeStreamCaptureMode in the CUDA runtime reference). */
void check_unsafe(const char *call);
/* A call that waits for s or asks about its work: refused while s captures. */
void check_wait(cudaStream_t s, const char *call);
/* Event bookkeeping: an event recorded on a capturing stream marks a point of that capture. */
void event_recorded(cudaEvent_t e, cudaStream_t s);
void event_forget(cudaEvent_t e);
/* s waits for e: refused when that would join s to a capture of another stream; a capturing s
 * that waits for its own capture's event records nothing (calls run in issue order here). */
void check_event_wait(cudaStream_t s, cudaEvent_t e);
/* A wait on the host for e: refused when e marks a point of a capture. */
void check_event_sync(cudaEvent_t e, const char *call);
/* Ends the run: `call` refused during a capture, and why. */
[[noreturn]] void fail(const char *call, const char *why);
} // namespace graph
} // namespace cudasim

#endif
