/* cudasim_libs.cpp — cuBLAS GEMMs (naive loops, fp32 accumulation, fp16 or fp32 storage) and
 * NCCL collectives between host threads of one process (each thread one rank). */
#include "cudasim.h"
#include "cudasim_count_impl.h"

#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <unistd.h>
#include <vector>

struct cudasim_cublas {
    cudaStream_t stream;
};

cublasStatus_t cublasCreate(cublasHandle_t *h)
{
    *h = new cudasim_cublas();
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t h)
{
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s)
{
    h->stream = s;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t) { return CUBLAS_STATUS_SUCCESS; }
const char *cublasGetStatusString(cublasStatus_t s)
{
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "CUBLAS_STATUS_NOT_INITIALIZED";
    }
}

static float gemm_load(const void *p, cudaDataType t, long long i)
{
    return t == CUDA_R_16F ? __half2float(((const __half *)p)[i]) : ((const float *)p)[i];
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta,
                                          cublasOperation_t tb, int m, int n, int k,
                                          const void *alpha, const void *A, cudaDataType at,
                                          int lda, long long sa, const void *B, cudaDataType bt,
                                          int ldb, long long sb, const void *beta, void *C,
                                          cudaDataType ct, int ldc, long long sc, int batch,
                                          cublasComputeType_t compute, cublasGemmAlgo_t)
{
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (m < 0 || n < 0 || k < 0 || batch < 0 || compute != CUBLAS_COMPUTE_32F ||
        ldc < (m > 1 ? m : 1) || lda < ((ta == CUBLAS_OP_N ? m : k) > 1 ? (ta == CUBLAS_OP_N ? m : k) : 1) ||
        ldb < ((tb == CUBLAS_OP_N ? k : n) > 1 ? (tb == CUBLAS_OP_N ? k : n) : 1))
        return CUBLAS_STATUS_INVALID_VALUE;
    cudasim::count::gemm(ta, tb, m, n, k, batch, A, at, lda, B, bt, ldb, C, ct, ldc, h->stream);
    cudasim_touch_all();
    if (cudasim::count::g_on && (cudasim::count::g_flags & CUDASIM_COUNT_SKIP_MATH))
        return CUBLAS_STATUS_SUCCESS;
    float al = *(const float *)alpha, be = *(const float *)beta;
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
                if (ct == CUDA_R_16F) ((__half *)C)[ic] = __float2half(r);
                else ((float *)C)[ic] = r;
            }
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                            int n, int k, const void *alpha, const void *A, cudaDataType at,
                            int lda, const void *B, cudaDataType bt, int ldb, const void *beta,
                            void *C, cudaDataType ct, int ldc, cublasComputeType_t compute,
                            cublasGemmAlgo_t algo)
{
    return cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, alpha, A, at, lda, 0, B, bt, ldb, 0,
                                      beta, C, ct, ldc, 0, 1, compute, algo);
}

/* ---- NCCL ---- */
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

void group_barrier(Group *g)
{
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

size_t type_bytes(ncclDataType_t t) { return t == ncclFloat64 ? 8 : 4; }
}  // namespace

struct cudasim_nccl {
    Group *group;
    std::string key;
    int rank;
};

ncclResult_t ncclGetUniqueId(ncclUniqueId *id)
{
    std::lock_guard<std::mutex> lock(g_registry_mu);
    memset(id, 0, sizeof *id);
    snprintf(id->internal, sizeof id->internal, "cudasim-%ld-%llu", (long)getpid(), g_next_id++);
    return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t *c, int nranks, ncclUniqueId id, int rank)
{
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
    group_barrier(g);   /* like NCCL: init returns once every rank has joined */
    return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t c)
{
    if (!c) return ncclInvalidArgument;
    std::lock_guard<std::mutex> lock(g_registry_mu);
    if (--c->group->refs == 0) {
        g_groups.erase(c->key);
        delete c->group;
    }
    delete c;
    return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count, ncclDataType_t type,
                           ncclRedOp_t op, ncclComm_t c, cudaStream_t s)
{
    if (!c || (op != ncclSum && op != ncclMax)) return ncclInvalidArgument;
    cudasim::count::nccl("allreduce", count * type_bytes(type), s);
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
    group_barrier(g);   /* nobody overwrites its send buffer before all have read it */
    if (!out.empty()) memcpy(recv, out.data(), out.size());
    return ncclSuccess;
}

ncclResult_t ncclBroadcast(const void *send, void *recv, size_t count, ncclDataType_t type,
                           int root, ncclComm_t c, cudaStream_t s)
{
    if (!c || root < 0 || root >= c->group->nranks) return ncclInvalidArgument;
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

const char *ncclGetErrorString(ncclResult_t r)
{
    return r == ncclSuccess ? "no error" : r == ncclInvalidArgument ? "invalid argument"
                                                                     : "internal error";
}
