/* cudasim_libs.cpp — cuBLAS GEMMs (naive loops, fp32 accumulation, fp16 or fp32 storage) and
 * NCCL collectives between host threads of one process (each thread one rank). */
#include "cudasim.h"
#include "cudasim_count_impl.h"
#include "cudasim_graph_impl.h"
#include "include/nccl.h"

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

struct cudasim_cublas {
    cudaStream_t stream;
};

cublasStatus_t cublasCreate(cublasHandle_t *h) {
    *h = new cudasim_cublas();
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t h) {
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
    h->stream = s;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t) {
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetWorkspace(cublasHandle_t h, void *, size_t) {
    return h ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED;
}
const char *cublasGetStatusString(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS:
        return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_INVALID_VALUE:
        return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_NOT_SUPPORTED:
        return "CUBLAS_STATUS_NOT_SUPPORTED";
    default:
        return "CUBLAS_STATUS_NOT_INITIALIZED";
    }
}

static float gemm_load(const void *p, cudaDataType t, long long i) {
    return t == CUDA_R_16F ? __half2float(((const __half *)p)[i]) : ((const float *)p)[i];
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta,
                                          cublasOperation_t tb, int m, int n, int k,
                                          const void *alpha, const void *A, cudaDataType at,
                                          int lda, long long sa, const void *B, cudaDataType bt,
                                          int ldb, long long sb, const void *beta, void *C,
                                          cudaDataType ct, int ldc, long long sc, int batch,
                                          cublasComputeType_t compute, cublasGemmAlgo_t) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (m < 0 || n < 0 || k < 0 || batch < 0 || compute != CUBLAS_COMPUTE_32F ||
        ldc < (m > 1 ? m : 1) ||
        lda < ((ta == CUBLAS_OP_N ? m : k) > 1 ? (ta == CUBLAS_OP_N ? m : k) : 1) ||
        ldb < ((tb == CUBLAS_OP_N ? k : n) > 1 ? (tb == CUBLAS_OP_N ? k : n) : 1))
        return CUBLAS_STATUS_INVALID_VALUE;
    /* cuBLAS's type table for CUBLAS_COMPUTE_32F, the rows xlmc may use: A and B of one type,
     * C of theirs, or fp32 C with fp16 A and B (a weight gradient kept in fp32) */
    if (at != bt || (ct != at && !(at == CUDA_R_16F && ct == CUDA_R_32F)))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    /* host pointer mode: alpha and beta are read now (a capture keeps their values) */
    float al = *(const float *)alpha, be = *(const float *)beta;
    cudaStream_t s = h->stream;
    if (cudasim::graph::capturing(s)) {
        cudasim::graph::record(s, "gemm", [=](cudaStream_t replay) {
            cudasim_gemm_run(ta, tb, m, n, k, al, A, at, lda, sa, B, bt, ldb, sb, be, C, ct, ldc,
                             sc, batch, nullptr, nullptr, replay);
        });
        return CUBLAS_STATUS_SUCCESS;
    }
    cudasim::graph::check_legacy(s, "cuBLAS GEMM");
    cudasim_gemm_run(ta, tb, m, n, k, al, A, at, lda, sa, B, bt, ldb, sb, be, C, ct, ldc, sc, batch,
                     nullptr, nullptr, s);
    return CUBLAS_STATUS_SUCCESS;
}

/* The GEMM, now (eager, or a node of a graph replay). */
void cudasim_gemm_run(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float al,
                      const void *A, cudaDataType at, int lda, long long sa, const void *B,
                      cudaDataType bt, int ldb, long long sb, float be, void *C, cudaDataType ct,
                      int ldc, long long sc, int batch, const void *bias, const char *name,
                      cudaStream_t stream) {
    cudasim::count::gemm(ta, tb, m, n, k, batch, A, at, lda, B, bt, ldb, C, ct, ldc, stream, name);
    cudasim_touch_all();
    if (cudasim::count::g_on && (cudasim::count::g_flags & CUDASIM_COUNT_SKIP_MATH)) return;
    for (int b = 0; b < batch; b++)
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
                float acc = 0.f;
                for (int p = 0; p < k; p++) {
                    long long ia = b * sa + (ta == CUBLAS_OP_N ? i + (long long)p * lda
                                                               : p + (long long)i * lda);
                    long long ib = b * sb + (tb == CUBLAS_OP_N ? p + (long long)j * ldb
                                                               : j + (long long)p * ldb);
                    acc += gemm_load(A, at, ia) * gemm_load(B, bt, ib);
                }
                long long ic = b * sc + i + (long long)j * ldc;
                /* beta == 0 must not read C: it may hold garbage or NaN */
                float r = al * acc + (be != 0.f ? be * gemm_load(C, ct, ic) : 0.f);
                /* cuBLASLt's bias epilogue: bias (m) of C's type, added in fp32 before rounding */
                if (bias) r += gemm_load(bias, ct, i);
                if (ct == CUDA_R_16F)
                    ((__half *)C)[ic] = __float2half(r);
                else
                    ((float *)C)[ic] = r;
            }
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                            int n, int k, const void *alpha, const void *A, cudaDataType at,
                            int lda, const void *B, cudaDataType bt, int ldb, const void *beta,
                            void *C, cudaDataType ct, int ldc, cublasComputeType_t compute,
                            cublasGemmAlgo_t algo) {
    return cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, alpha, A, at, lda, 0, B, bt, ldb, 0, beta,
                                      C, ct, ldc, 0, 1, compute, algo);
}

/* ---- NCCL ---- */
/* NCCL can be captured (2.9 and newer); xlmc keeps its collectives outside graphs, and a
 * rank-threads collective cannot be replayed by one thread here. */
#define NCCL_IN_CAPTURE                                                                            \
    "an NCCL collective on a capturing stream (xlmc keeps NCCL outside graphs; cudasim does "      \
    "not record collectives)"
namespace {
struct Group {
    int nranks, joined = 0, refs = 0;
    std::mutex mu;
    std::condition_variable cv;
    unsigned long long generation = 0;
    int arrived = 0;
    std::vector<const void *> send;
};
std::mutex g_registry_mu;
std::map<std::string, Group *> g_groups;
unsigned long long g_next_id;

void group_barrier(Group *g) {
    std::unique_lock<std::mutex> lock(g->mu);
    unsigned long long gen = g->generation;
    if (++g->arrived == g->nranks) {
        g->arrived = 0;
        g->generation++;
        g->cv.notify_all();
        return;
    }
    g->cv.wait(lock, [&] { return g->generation != gen; });
}

size_t type_bytes(ncclDataType_t t) {
    return t == ncclFloat64 ? 8 : t == ncclInt8 ? 1 : t == ncclFloat16 ? 2 : 4;
}
} // namespace

struct cudasim_nccl {
    Group *group;
    std::string key;
    int rank;
    int blocking = 1;
};

/* ---- the non-blocking communicator: pending collectives (see include/nccl.h) ---- */
namespace {
struct PendingOp {
    Group *group;
    unsigned long long generation; /* the collective's number in its group */
    cudaStream_t stream;
    std::thread::id owner; /* ranks are threads: a stream query sees its own thread's work */
    bool done = false, aborted = false;
};
std::mutex g_pending_mu; /* guards every Group's nb_* fields and g_pending */
std::vector<PendingOp *> g_pending;
std::map<Group *, std::map<unsigned long long, std::vector<std::pair<const void *, void *>>>>
    g_nb_buffers; /* per group and collective: (send, recv) by rank */
/* per group and rank: the number of its next collective */
std::map<std::pair<Group *, int>, unsigned long long> g_nb_rank_next;
int g_aborts;

/* The rank-order sum (or max) of a complete collective into every rank's recv (root < 0)
 * or into root's alone. */
void nb_reduce(Group *g, std::vector<std::pair<const void *, void *>> &io, size_t count,
               ncclDataType_t type, ncclRedOp_t op, int root) {
    size_t eb = type_bytes(type);
    std::vector<unsigned char> out(count * eb);
    for (size_t i = 0; i < count; i++)
        for (int r = 0; r < g->nranks; r++) {
            const unsigned char *src = (const unsigned char *)io[r].first + i * eb;
            unsigned char *dst = out.data() + i * eb;
            if (r == 0) {
                memcpy(dst, src, eb);
                continue;
            }
            if (type == ncclFloat32) {
                float a, x;
                memcpy(&a, dst, 4);
                memcpy(&x, src, 4);
                a = op == ncclSum ? a + x : (x > a ? x : a);
                memcpy(dst, &a, 4);
            } else if (type == ncclFloat64) {
                double a, x;
                memcpy(&a, dst, 8);
                memcpy(&x, src, 8);
                a = op == ncclSum ? a + x : (x > a ? x : a);
                memcpy(dst, &a, 8);
            } else {
                int a, x;
                memcpy(&a, dst, 4);
                memcpy(&x, src, 4);
                a = op == ncclSum ? a + x : (x > a ? x : a);
                memcpy(dst, &a, 4);
            }
        }
    for (int r = 0; r < g->nranks; r++)
        if (!out.empty() && (root < 0 || r == root)) memcpy(io[r].second, out.data(), out.size());
}

/* root < 0: an all-reduce, else a reduce to root */
ncclResult_t nb_allreduce(const void *send, void *recv, size_t count, ncclDataType_t type,
                          ncclRedOp_t op, int root, ncclComm_t c, cudaStream_t s) {
    std::lock_guard<std::mutex> lock(g_pending_mu);
    Group *g = c->group;
    unsigned long long gen = g_nb_rank_next[{g, c->rank}]++;
    auto &io = g_nb_buffers[g][gen];
    io.resize(g->nranks);
    io[c->rank] = {send, recv};
    PendingOp *p = new PendingOp{g, gen, s, std::this_thread::get_id()};
    g_pending.push_back(p);
    int arrived = 0;
    for (auto &x : io)
        arrived += x.second != nullptr;
    if (arrived == g->nranks) {
        nb_reduce(g, io, count, type, op, root);
        g_nb_buffers[g].erase(gen);
        for (PendingOp *q : g_pending)
            if (q->group == g && q->generation == gen) q->done = true;
    }
    return ncclSuccess;
}

/* Point to point (non-blocking communicators): per group and (source, destination), the
 * sends and the receives not yet matched, in posting order; a send and a receive meet as the
 * second of them is posted, and both are done. Their PendingOps carry no collective number. */
const unsigned long long P2P_GENERATION = ~0ull;
struct P2PEnd {
    const void *send;
    void *recv;
    size_t bytes;
    PendingOp *op;
};
std::map<std::pair<Group *, std::pair<int, int>>,
         std::pair<std::vector<P2PEnd>, std::vector<P2PEnd>>>
    g_p2p; /* (sends, receives) */

ncclResult_t nb_p2p(const void *send, void *recv, size_t bytes, int peer, ncclComm_t c,
                    cudaStream_t s) {
    if (!c || c->blocking || peer < 0 || peer >= c->group->nranks || peer == c->rank)
        return ncclInvalidArgument;
    std::lock_guard<std::mutex> lock(g_pending_mu);
    Group *g = c->group;
    PendingOp *p = new PendingOp{g, P2P_GENERATION, s, std::this_thread::get_id()};
    g_pending.push_back(p);
    bool sending = send != nullptr;
    auto &q = g_p2p[{g, sending ? std::make_pair(c->rank, peer) : std::make_pair(peer, c->rank)}];
    std::vector<P2PEnd> &other = sending ? q.second : q.first, &mine = sending ? q.first : q.second;
    if (other.empty()) {
        mine.push_back({send, recv, bytes, p});
        return ncclSuccess;
    }
    P2PEnd o = other.front();
    other.erase(other.begin());
    if (o.bytes != bytes) return ncclInvalidArgument; /* NCCL: the sizes must match */
    if (bytes) memcpy(sending ? o.recv : recv, sending ? send : o.send, bytes);
    o.op->done = p->done = true;
    return ncclSuccess;
}
} // namespace

ncclResult_t ncclSend(const void *send, size_t count, ncclDataType_t type, int peer, ncclComm_t c,
                      cudaStream_t s) {
    if (cudasim::graph::capturing(s)) cudasim::graph::fail("ncclSend", NCCL_IN_CAPTURE);
    cudasim::count::nccl("send", count * type_bytes(type), s);
    return send ? nb_p2p(send, nullptr, count * type_bytes(type), peer, c, s) : ncclInvalidArgument;
}

ncclResult_t ncclRecv(void *recv, size_t count, ncclDataType_t type, int peer, ncclComm_t c,
                      cudaStream_t s) {
    if (cudasim::graph::capturing(s)) cudasim::graph::fail("ncclRecv", NCCL_IN_CAPTURE);
    cudasim::count::nccl("recv", count * type_bytes(type), s);
    return recv ? nb_p2p(nullptr, recv, count * type_bytes(type), peer, c, s) : ncclInvalidArgument;
}

extern "C" int cudasim_nccl_aborts(void) {
    std::lock_guard<std::mutex> lock(g_pending_mu);
    return g_aborts;
}

/* Groups: collectives inside one complete as they would outside it (every rank is its own
 * thread here), so a group only has to nest correctly; closed outermost groups are counted. */
static thread_local int t_group_depth;
static std::atomic<int> g_groups_closed;

ncclResult_t ncclGroupStart(void) {
    t_group_depth++;
    return ncclSuccess;
}

ncclResult_t ncclGroupEnd(void) {
    if (t_group_depth == 0) return ncclInvalidArgument; /* NCCL: ncclInvalidUsage */
    if (--t_group_depth == 0) g_groups_closed++;
    return ncclSuccess;
}

extern "C" int cudasim_nccl_groups(void) {
    return g_groups_closed.load();
}

cudaError_t cudaStreamQuery(cudaStream_t s) {
    cudasim::graph::check_wait(s, "cudaStreamQuery");
    std::lock_guard<std::mutex> lock(g_pending_mu);
    for (size_t i = 0; i < g_pending.size();) {
        PendingOp *p = g_pending[i];
        bool mine = p->stream == s && p->owner == std::this_thread::get_id();
        if (mine && !p->done && !p->aborted) return cudaErrorNotReady;
        if (mine) { /* finished: forget it */
            delete p;
            g_pending.erase(g_pending.begin() + (long)i);
            continue;
        }
        i++;
    }
    return cudaSuccess;
}

ncclResult_t ncclGetUniqueId(ncclUniqueId *id) {
    std::lock_guard<std::mutex> lock(g_registry_mu);
    memset(id, 0, sizeof *id);
    snprintf(id->internal, sizeof id->internal, "cudasim-%ld-%llu", (long)getpid(), g_next_id++);
    return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t *c, int nranks, ncclUniqueId id, int rank) {
    if (nranks < 1 || rank < 0 || rank >= nranks) return ncclInvalidArgument;
    std::string key(id.internal, strnlen(id.internal, sizeof id.internal));
    Group *g;
    {
        std::lock_guard<std::mutex> lock(g_registry_mu);
        auto it = g_groups.find(key);
        if (it == g_groups.end()) {
            g = new Group();
            g->nranks = nranks;
            g->send.resize(nranks);
            g_groups[key] = g;
        } else {
            g = it->second;
        }
        if (g->nranks != nranks) return ncclInvalidArgument;
        g->refs++;
    }
    *c = new cudasim_nccl{g, key, rank};
    group_barrier(g); /* like NCCL: init returns once every rank has joined */
    return ncclSuccess;
}

ncclResult_t ncclCommInitRankConfig(ncclComm_t *c, int nranks, ncclUniqueId id, int rank,
                                    ncclConfig_t *config) {
    ncclResult_t r = ncclCommInitRank(c, nranks, id, rank);
    if (r == ncclSuccess && config) (*c)->blocking = config->blocking;
    return r;
}

ncclResult_t ncclCommFinalize(ncclComm_t c) {
    return c ? ncclSuccess : ncclInvalidArgument;
}

ncclResult_t ncclCommGetAsyncError(ncclComm_t c, ncclResult_t *state) {
    if (!c || !state) return ncclInvalidArgument;
    *state = ncclSuccess; /* calls complete at once here; a missing rank is no error, a wait */
    return ncclSuccess;
}

/* Like ncclCommDestroy, without waiting for anything; this rank's pending collectives end
 * (not done) so that cudaStreamQuery no longer reports them. */
ncclResult_t ncclCommAbort(ncclComm_t c) {
    if (!c) return ncclInvalidArgument;
    {
        std::lock_guard<std::mutex> lock(g_pending_mu);
        g_aborts++;
        for (PendingOp *p : g_pending)
            if (p->group == c->group) p->aborted = true;
    }
    return ncclCommDestroy(c);
}

ncclResult_t ncclCommDestroy(ncclComm_t c) {
    if (!c) return ncclInvalidArgument;
    std::lock_guard<std::mutex> lock(g_registry_mu);
    if (--c->group->refs == 0) {
        g_groups.erase(c->key);
        std::lock_guard<std::mutex> plock(g_pending_mu);
        g_nb_buffers.erase(c->group);
        for (auto it = g_p2p.begin(); it != g_p2p.end();)
            it = it->first.first == c->group ? g_p2p.erase(it) : std::next(it);
        for (int r = 0; r < c->group->nranks; r++)
            g_nb_rank_next.erase({c->group, r});
        for (size_t i = 0; i < g_pending.size();) { /* the group's collectives end with it */
            if (g_pending[i]->group != c->group) {
                i++;
                continue;
            }
            delete g_pending[i];
            g_pending.erase(g_pending.begin() + (long)i);
        }
        delete c->group;
    }
    delete c;
    return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count, ncclDataType_t type,
                           ncclRedOp_t op, ncclComm_t c, cudaStream_t s) {
    if (!c || (op != ncclSum && op != ncclMax)) return ncclInvalidArgument;
    if (cudasim::graph::capturing(s)) cudasim::graph::fail("ncclAllReduce", NCCL_IN_CAPTURE);
    cudasim::count::nccl("allreduce", count * type_bytes(type), s);
    if (!c->blocking) return nb_allreduce(send, recv, count, type, op, -1, c, s);
    Group *g = c->group;
    g->send[c->rank] = send;
    group_barrier(g);
    /* Every rank sums in rank order, so all ranks get identical bits. */
    std::vector<unsigned char> out(count * type_bytes(type));
    for (size_t i = 0; i < count; i++) {
        if (type == ncclFloat32) {
            float acc = ((const float *)g->send[0])[i];
            for (int r = 1; r < g->nranks; r++) {
                float x = ((const float *)g->send[r])[i];
                acc = op == ncclSum ? acc + x : (x > acc ? x : acc);
            }
            ((float *)out.data())[i] = acc;
        } else if (type == ncclFloat64) {
            double acc = ((const double *)g->send[0])[i];
            for (int r = 1; r < g->nranks; r++) {
                double x = ((const double *)g->send[r])[i];
                acc = op == ncclSum ? acc + x : (x > acc ? x : acc);
            }
            ((double *)out.data())[i] = acc;
        } else {
            int acc = ((const int *)g->send[0])[i];
            for (int r = 1; r < g->nranks; r++) {
                int x = ((const int *)g->send[r])[i];
                acc = op == ncclSum ? acc + x : (x > acc ? x : acc);
            }
            ((int *)out.data())[i] = acc;
        }
    }
    group_barrier(g); /* nobody overwrites its send buffer before all have read it */
    if (!out.empty()) memcpy(recv, out.data(), out.size());
    return ncclSuccess;
}

/* Non-blocking communicators only (xlmc's): the reduce completes when the last rank arrives,
 * like their all-reduce. */
ncclResult_t ncclReduce(const void *send, void *recv, size_t count, ncclDataType_t type,
                        ncclRedOp_t op, int root, ncclComm_t c, cudaStream_t s) {
    if (!c || (op != ncclSum && op != ncclMax) || root < 0 || root >= c->group->nranks ||
        c->blocking)
        return ncclInvalidArgument;
    if (cudasim::graph::capturing(s)) cudasim::graph::fail("ncclReduce", NCCL_IN_CAPTURE);
    cudasim::count::nccl("reduce", count * type_bytes(type), s);
    return nb_allreduce(send, recv, count, type, op, root, c, s);
}

ncclResult_t ncclBroadcast(const void *send, void *recv, size_t count, ncclDataType_t type,
                           int root, ncclComm_t c, cudaStream_t s) {
    if (!c || root < 0 || root >= c->group->nranks) return ncclInvalidArgument;
    if (cudasim::graph::capturing(s)) cudasim::graph::fail("ncclBroadcast", NCCL_IN_CAPTURE);
    cudasim::count::nccl("broadcast", count * type_bytes(type), s);
    Group *g = c->group;
    g->send[c->rank] = send;
    group_barrier(g);
    std::vector<unsigned char> out(count * type_bytes(type));
    if (!out.empty()) memcpy(out.data(), g->send[root], out.size());
    group_barrier(g);
    if (!out.empty()) memcpy(recv, out.data(), out.size());
    return ncclSuccess;
}

const char *ncclGetErrorString(ncclResult_t r) {
    return r == ncclSuccess           ? "no error"
           : r == ncclInvalidArgument ? "invalid argument"
                                      : "internal error";
}
