/* comm_nccl.cu — struct comm over NCCL (see comm_nccl.h). */
#include "kernels/cuda/comm_nccl.h"
#include "kernels/cuda/common.cuh"

#if defined(XLMC_HAVE_NCCL) || defined(XLMC_CUDASIM)
#include <nccl.h>

#include <string.h>
#include <time.h>
#include <unistd.h>

/* Non-blocking communicators (ncclConfig_t, ncclCommInitRankConfig, ncclInProgress,
 * ncclCommFinalize) came with NCCL 2.14. The NCCLs of CUDA 11.0-11.7 toolkits (sm_70 sites)
 * are older: they get a blocking communicator. Waits still poll the stream against
 * timeout_seconds and ncclCommAbort still ends them; only a call that blocks inside NCCL
 * itself (init, a collective stuck at enqueue) is then beyond the timeout's reach. cudasim
 * stands in for a new NCCL. ncclCommAbort and ncclCommGetAsyncError exist from 2.4. */
#if defined(XLMC_CUDASIM) || (defined(NCCL_VERSION_CODE) && NCCL_VERSION_CODE >= 21400)
#define XLMC_NCCL_NONBLOCKING 1
#else
#define XLMC_NCCL_NONBLOCKING 0
static const ncclResult_t ncclInProgress = (ncclResult_t)7; /* never returned before 2.14 */
#endif

struct nccl_impl {
    ncclComm_t nccl;
    struct comm *host; /* NULL: host-side collectives through NCCL too */
    void *staging;     /* device buffer for host-side collectives */
    size_t staging_bytes;
    /* Started sums run on their own stream so the compute stream can go on with backward;
     * `ready` marks on the compute stream the point where the bucket's values are final. */
    cudaStream_t comm_stream;
    cudaEvent_t ready;
    int aborted; /* ncclCommAbort done: the communicator is gone */
    /* gather buckets: an event on the communication stream after each started one (created
     * at its first start), and whether the backend's stream still has to wait for it */
    cudaEvent_t gathered[COMM_GATHER_BUCKETS];
    unsigned char gather_pending[COMM_GATHER_BUCKETS];
};

static int nccl_ok(ncclResult_t r, const char *what) {
    if (r == ncclSuccess) return 0;
    fprintf(stderr, "xlmc: NCCL %s failed: %s\n", what, ncclGetErrorString(r));
    return -1;
}

static double nccl_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void nccl_abort_comm(struct nccl_impl *im) {
    if (im->aborted) return;
    im->aborted = 1;
    nccl_ok(ncclCommAbort(im->nccl), "communicator abort");
}

/* The communicator is non-blocking (so that a rank that never arrives cannot hold this one
 * forever): wait for the work of `stream` by polling, watching NCCL's asynchronous error and
 * c->timeout_seconds. On either, abort the communicator and fail naming `what`. */
/* After an abort the communicator is freed: every later call fails at once. */
static int nccl_gone(struct comm *c, const char *what) {
    if (!((struct nccl_impl *)c->impl)->aborted) return 0;
    fprintf(stderr, "xlmc: NCCL %s on rank %d: the communicator was aborted\n", what, c->rank);
    return 1;
}

static int nccl_wait(struct comm *c, cudaStream_t stream, const char *what) {
    struct nccl_impl *im = (struct nccl_impl *)c->impl;
    if (nccl_gone(c, what)) return -1;
    double t0 = nccl_now();
    for (;;) {
        cudaError_t q = cudaStreamQuery(stream);
        if (q == cudaSuccess) return 0;
        if (q != cudaErrorNotReady) cudaCheck(q);
        ncclResult_t st = ncclSuccess;
        if (ncclCommGetAsyncError(im->nccl, &st) == ncclSuccess && st != ncclSuccess &&
            st != ncclInProgress) {
            fprintf(stderr, "xlmc: NCCL %s on rank %d failed: %s; communicator aborted\n", what,
                    c->rank, ncclGetErrorString(st));
            nccl_abort_comm(im);
            return -1;
        }
        double waited = nccl_now() - t0;
        if (c->timeout_seconds > 0 && waited > c->timeout_seconds) {
            fprintf(stderr,
                    "xlmc: NCCL %s on rank %d did not complete within %.0f s (a rank did not "
                    "arrive, or its GPU stopped); communicator aborted\n",
                    what, c->rank, c->timeout_seconds);
            nccl_abort_comm(im);
            return -1;
        }
        usleep(waited < 0.01 ? 20 : 1000); /* spin briefly: most waits are short */
    }
}

/* A call on a non-blocking communicator may return ncclInProgress while it is enqueued. */
static int nccl_enqueued(struct nccl_impl *im, ncclResult_t r, const char *what) {
    while (r == ncclInProgress) {
        ncclResult_t st = ncclSuccess;
        if (ncclCommGetAsyncError(im->nccl, &st) != ncclSuccess) break;
        r = st;
    }
    return nccl_ok(r, what);
}

static void *nccl_staging(struct nccl_impl *im, size_t bytes) {
    if (bytes > im->staging_bytes) {
        cudaCheck(cudaStreamSynchronize(g_cuda.stream));
        cudaCheck(cudaFree(im->staging));
        cudaCheck(cudaMalloc(&im->staging, bytes));
        im->staging_bytes = bytes;
    }
    return im->staging;
}

// x (n) device fp32: in-place sum over ranks, on the backend's stream
static int nccl_allreduce_sum_f32(struct comm *c, float *x, size_t n) {
    struct nccl_impl *im = (struct nccl_impl *)c->impl;
    if (nccl_gone(c, "gradient all-reduce")) return -1;
    if (nccl_enqueued(im, ncclAllReduce(x, x, n, ncclFloat32, ncclSum, im->nccl, g_cuda.stream),
                      "all-reduce"))
        return -1;
    return nccl_wait(c, g_cuda.stream, "gradient all-reduce");
}

// x (n) device fp32: the same sum, on the communication stream once the compute stream has
// produced x; later kernels on the compute stream do not wait for it
static int nccl_allreduce_sum_f32_start(struct comm *c, float *x, size_t n) {
    struct nccl_impl *im = (struct nccl_impl *)c->impl;
    if (nccl_gone(c, "gradient all-reduce (overlapped)")) return -1;
    cudaCheck(cudaEventRecord(im->ready, g_cuda.stream));
    cudaCheck(cudaStreamWaitEvent(im->comm_stream, im->ready, 0));
    return nccl_enqueued(im,
                         ncclAllReduce(x, x, n, ncclFloat32, ncclSum, im->nccl, im->comm_stream),
                         "all-reduce (overlapped)");
}

// A bucket's start: the communication stream waits until the backend's stream has produced
// the values, and an NCCL group opens (closed by the caller even after a failed call)
static int nccl_bucket_open(struct comm *c, const char *what) {
    struct nccl_impl *im = (struct nccl_impl *)c->impl;
    if (nccl_gone(c, what)) return -1;
    cudaCheck(cudaEventRecord(im->ready, g_cuda.stream));
    cudaCheck(cudaStreamWaitEvent(im->comm_stream, im->ready, 0));
    return nccl_ok(ncclGroupStart(), "group start");
}

// x[i] (n[i]) device fp32, i < k: one bucket, one event and one NCCL group (a single
// launch for the bucket's tensors, so a layer pays one collective latency, not sixteen)
static int nccl_allreduce_bucket_start(struct comm *c, float *const *x, const size_t *n, int k) {
    struct nccl_impl *im = (struct nccl_impl *)c->impl;
    if (nccl_bucket_open(c, "gradient all-reduce (bucket)")) return -1;
    int failed = 0;
    for (int i = 0; i < k; i++)
        failed |= nccl_enqueued(
            im, ncclAllReduce(x[i], x[i], n[i], ncclFloat32, ncclSum, im->nccl, im->comm_stream),
            "all-reduce (bucket)");
    /* the group is closed even after a failed call: NCCL's group state is per thread */
    failed |= nccl_enqueued(im, ncclGroupEnd(), "group end (bucket)");
    return failed ? -1 : 0;
}

// x[i] (n[i]) device fp32, i < k: one bucket as above, each slice summed into x[i] of rank
// root[i] only (ncclReduce, in place there): half an all-reduce's traffic
static int nccl_reduce_bucket_start(struct comm *c, float *const *x, const size_t *n,
                                    const int *root, int k) {
    struct nccl_impl *im = (struct nccl_impl *)c->impl;
    if (nccl_bucket_open(c, "gradient reduce (bucket)")) return -1;
    int failed = 0;
    for (int i = 0; i < k; i++)
        failed |= nccl_enqueued(
            im,
            ncclReduce(x[i], x[i], n[i], ncclFloat32, ncclSum, root[i], im->nccl, im->comm_stream),
            "reduce (bucket)");
    failed |= nccl_enqueued(im, ncclGroupEnd(), "group end (reduce bucket)");
    return failed ? -1 : 0;
}

#if defined(XLMC_CUDASIM) || (defined(NCCL_VERSION_CODE) && NCCL_VERSION_CODE >= 2700)
// x[i] device, i < k: to rank root[i] (ncclSend), which receives every other rank's into
// recv[i] + r * stride (ncclRecv) and copies its own; one group on the communication stream
// once the backend's stream has produced x (NCCL 2.7 and newer: point to point)
static int nccl_gather_to_owner_start(struct comm *c, const void *const *x, const size_t *n,
                                      const int *root, void *const *recv, size_t stride, int k,
                                      size_t elem) {
    struct nccl_impl *im = (struct nccl_impl *)c->impl;
    if (nccl_bucket_open(c, "gradient to its owner (bucket)")) return -1;
    int failed = 0;
    for (int i = 0; i < k; i++) {
        size_t bytes = n[i] * elem;
        if (c->rank != root[i]) {
            failed |= nccl_enqueued(
                im, ncclSend(x[i], bytes, ncclInt8, root[i], im->nccl, im->comm_stream),
                "send (gradient bucket)");
            continue;
        }
        char *to = (char *)recv[i];
        cudaCheck(cudaMemcpyAsync(to + (size_t)c->rank * stride, x[i], bytes,
                                  cudaMemcpyDeviceToDevice, im->comm_stream));
        for (int r = 0; r < c->world; r++)
            if (r != c->rank)
                failed |= nccl_enqueued(im,
                                        ncclRecv(to + (size_t)r * stride, bytes, ncclInt8, r,
                                                 im->nccl, im->comm_stream),
                                        "receive (gradient bucket)");
    }
    failed |= nccl_enqueued(im, ncclGroupEnd(), "group end (gradient to owner)");
    return failed ? -1 : 0;
}
#endif

// x device, lo[world] elements of elem bytes: rank r's [lo[r], lo[r+1]) broadcast from r, all
// in one group on the backend's stream (after the update that wrote them), then waited for
static int nccl_allgather_shards(struct comm *c, void *x, const size_t *lo, size_t elem) {
    struct nccl_impl *im = (struct nccl_impl *)c->impl;
    if (nccl_gone(c, "gathering the optimizer's shards")) return -1;
    if (nccl_ok(ncclGroupStart(), "group start")) return -1;
    int failed = 0;
    for (int r = 0; r < c->world; r++) {
        if (lo[r + 1] == lo[r]) continue;
        char *p = (char *)x + lo[r] * elem;
        failed |= nccl_enqueued(
            im,
            ncclBroadcast(p, p, (lo[r + 1] - lo[r]) * elem, ncclInt8, r, im->nccl, g_cuda.stream),
            "broadcast (optimizer shard)");
    }
    failed |= nccl_enqueued(im, ncclGroupEnd(), "group end (optimizer shards)");
    if (failed) return -1;
    return nccl_wait(c, g_cuda.stream, "gathering the optimizer's shards");
}

// x[i] (n[i] elements of elem bytes) device, i < k: broadcast from root[i], one group on the
// communication stream once the backend's stream has produced them (the update); the
// bucket's event marks their arrival for gather_bucket_wait
static int nccl_gather_bucket_start(struct comm *c, int bucket, void *const *x, const size_t *n,
                                    const int *root, int k, size_t elem) {
    struct nccl_impl *im = (struct nccl_impl *)c->impl;
    if (bucket < 0 || bucket >= COMM_GATHER_BUCKETS || im->gather_pending[bucket]) {
        fprintf(stderr, "xlmc: gather bucket %d outside 0..%d or started twice\n", bucket,
                COMM_GATHER_BUCKETS - 1);
        return -1;
    }
    if (!im->gathered[bucket])
        cudaCheck(cudaEventCreateWithFlags(&im->gathered[bucket], cudaEventDisableTiming));
    if (nccl_bucket_open(c, "broadcasting the updated weights")) return -1;
    int failed = 0;
    for (int i = 0; i < k; i++)
        failed |= nccl_enqueued(
            im,
            ncclBroadcast(x[i], x[i], n[i] * elem, ncclInt8, root[i], im->nccl, im->comm_stream),
            "broadcast (weights bucket)");
    failed |= nccl_enqueued(im, ncclGroupEnd(), "group end (weights bucket)");
    if (failed) return -1;
    cudaCheck(cudaEventRecord(im->gathered[bucket], im->comm_stream));
    im->gather_pending[bucket] = 1;
    return 0;
}

// the backend's stream waits for the bucket's event: the host goes on at once
static int nccl_gather_bucket_wait(struct comm *c, int bucket) {
    struct nccl_impl *im = (struct nccl_impl *)c->impl;
    if (bucket < 0 || bucket >= COMM_GATHER_BUCKETS || !im->gather_pending[bucket]) return 0;
    im->gather_pending[bucket] = 0;
    if (nccl_gone(c, "waiting for the updated weights")) return -1;
    cudaCheck(cudaStreamWaitEvent(g_cuda.stream, im->gathered[bucket], 0));
    return 0;
}

static int nccl_allreduce_wait(struct comm *c) {
    struct nccl_impl *im = (struct nccl_impl *)c->impl;
    return nccl_wait(c, im->comm_stream, "gradient all-reduce (overlapped)");
}

/* host buffer -> staging -> NCCL -> host */
static int nccl_host_allreduce(struct comm *c, void *x, size_t n, size_t elem, ncclDataType_t type,
                               ncclRedOp_t op) {
    struct nccl_impl *im = (struct nccl_impl *)c->impl;
    if (nccl_gone(c, "host-side all-reduce")) return -1;
    void *d = nccl_staging(im, n * elem);
    cudaCheck(cudaMemcpyAsync(d, x, n * elem, cudaMemcpyHostToDevice, g_cuda.stream));
    if (nccl_enqueued(im, ncclAllReduce(d, d, n, type, op, im->nccl, g_cuda.stream),
                      "all-reduce") ||
        nccl_wait(c, g_cuda.stream, "host-side all-reduce"))
        return -1;
    cudaCheck(cudaMemcpyAsync(x, d, n * elem, cudaMemcpyDeviceToHost, g_cuda.stream));
    cudaCheck(cudaStreamSynchronize(g_cuda.stream));
    return 0;
}

static int nccl_allreduce_sum_f64(struct comm *c, double *x, size_t n) {
    struct nccl_impl *im = (struct nccl_impl *)c->impl;
    if (im->host) return im->host->allreduce_sum_f64(im->host, x, n);
    return nccl_host_allreduce(c, x, n, sizeof(double), ncclFloat64, ncclSum);
}

static int nccl_allreduce_max_int(struct comm *c, int *x, size_t n) {
    struct nccl_impl *im = (struct nccl_impl *)c->impl;
    if (im->host) return im->host->allreduce_max_int(im->host, x, n);
    return nccl_host_allreduce(c, x, n, sizeof(int), ncclInt32, ncclMax);
}

// buf: host memory, like every host-side collective
static int nccl_broadcast(struct comm *c, void *buf, size_t bytes, int root) {
    struct nccl_impl *im = (struct nccl_impl *)c->impl;
    if (im->host) return im->host->broadcast(im->host, buf, bytes, root);
    if (nccl_gone(c, "broadcast")) return -1;
    size_t words = (bytes + 3) / 4;
    void *d = nccl_staging(im, words * 4);
    cudaCheck(cudaMemcpyAsync(d, buf, bytes, cudaMemcpyHostToDevice, g_cuda.stream));
    if (nccl_enqueued(im, ncclBroadcast(d, d, words, ncclInt32, root, im->nccl, g_cuda.stream),
                      "broadcast") ||
        nccl_wait(c, g_cuda.stream, "broadcast"))
        return -1;
    cudaCheck(cudaMemcpyAsync(buf, d, bytes, cudaMemcpyDeviceToHost, g_cuda.stream));
    cudaCheck(cudaStreamSynchronize(g_cuda.stream));
    return 0;
}

static int nccl_barrier(struct comm *c) {
    struct nccl_impl *im = (struct nccl_impl *)c->impl;
    if (im->host) return im->host->barrier(im->host);
    int x = 0;
    return nccl_host_allreduce(c, &x, 1, sizeof(int), ncclInt32, ncclMax);
}

static void nccl_abort(struct comm *c, int code) {
    struct nccl_impl *im = (struct nccl_impl *)c->impl;
    nccl_abort_comm(im); /* frees the GPU side even while another thread waits on it */
    if (im->host) im->host->abort(im->host, code);
    exit(code);
}

int comm_nccl_unique_id(unsigned char id[COMM_NCCL_ID_BYTES], char *why, size_t why_len) {
    ncclUniqueId u;
    ncclResult_t r = ncclGetUniqueId(&u);
    if (r != ncclSuccess) {
        if (why && why_len) snprintf(why, why_len, "ncclGetUniqueId: %s", ncclGetErrorString(r));
        return -1;
    }
    memset(id, 0, COMM_NCCL_ID_BYTES);
    memcpy(id, &u, sizeof u < COMM_NCCL_ID_BYTES ? sizeof u : COMM_NCCL_ID_BYTES);
    return 0;
}

static struct comm *nccl_create(const unsigned char *id, int rank, int world, int local_rank,
                                struct comm *host, char *why, size_t why_len) {
    ncclUniqueId u;
    memcpy(&u, id, sizeof u < COMM_NCCL_ID_BYTES ? sizeof u : COMM_NCCL_ID_BYTES);
    struct comm *c = (struct comm *)calloc(1, sizeof *c);
    struct nccl_impl *im = (struct nccl_impl *)calloc(1, sizeof *im);
    if (!c || !im) {
        if (why && why_len) snprintf(why, why_len, "out of host memory");
        free(c);
        free(im);
        return NULL;
    }
#if XLMC_NCCL_NONBLOCKING
    /* non-blocking, so that waits can time out and ncclCommAbort can end them */
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    ncclResult_t r = ncclCommInitRankConfig(&im->nccl, world, u, rank, &config);
#else
    ncclResult_t r = ncclCommInitRank(&im->nccl, world, u, rank);
#endif
    while (r == ncclInProgress) {
        ncclResult_t st = ncclSuccess;
        r = ncclCommGetAsyncError(im->nccl, &st);
        if (r == ncclSuccess) r = st;
    }
    if (r != ncclSuccess) {
        if (why && why_len)
            snprintf(why, why_len, "ncclCommInitRank (rank %d of %d): %s", rank, world,
                     ncclGetErrorString(r));
        free(c);
        free(im);
        return NULL;
    }
    cudaCheck(cudaStreamCreateWithFlags(&im->comm_stream, cudaStreamNonBlocking));
    cudaCheck(cudaEventCreateWithFlags(&im->ready, cudaEventDisableTiming));
    im->host = host;
    c->name = "nccl";
    c->rank = rank;
    c->world = world;
    c->local_rank = local_rank;
    c->allreduce_sum_f32 = nccl_allreduce_sum_f32;
    c->allreduce_sum_f32_start = nccl_allreduce_sum_f32_start;
    c->allreduce_bucket_start = nccl_allreduce_bucket_start;
    c->allreduce_wait = nccl_allreduce_wait;
    c->reduce_bucket_start = nccl_reduce_bucket_start;
    c->allgather_shards = nccl_allgather_shards;
    c->gather_bucket_start = nccl_gather_bucket_start;
#if defined(XLMC_CUDASIM) || (defined(NCCL_VERSION_CODE) && NCCL_VERSION_CODE >= 2700)
    c->gather_to_owner_start = nccl_gather_to_owner_start;
#endif
    c->gather_bucket_wait = nccl_gather_bucket_wait;
    c->allreduce_sum_f64 = nccl_allreduce_sum_f64;
    c->allreduce_max_int = nccl_allreduce_max_int;
    c->broadcast = nccl_broadcast;
    c->barrier = nccl_barrier;
    c->abort = nccl_abort;
    c->impl = im;
    return c;
}

struct comm *comm_nccl_create_with_id(const unsigned char id[COMM_NCCL_ID_BYTES], int rank,
                                      int world, int local_rank, char *why, size_t why_len) {
    return nccl_create(id, rank, world, local_rank, NULL, why, why_len);
}

struct comm *comm_nccl_create(struct comm *host, char *why, size_t why_len) {
    unsigned char id[COMM_NCCL_ID_BYTES] = {0};
    int failed = host->rank == 0 ? comm_nccl_unique_id(id, why, why_len) != 0 : 0;
    /* every rank learns whether rank 0 got an id, so none waits in init alone */
    if (host->allreduce_max_int(host, &failed, 1) != 0 || failed) {
        if (why && why_len && host->rank != 0)
            snprintf(why, why_len, "rank 0 could not create the NCCL unique id");
        return NULL;
    }
    if (host->broadcast(host, id, sizeof id, 0) != 0) {
        if (why && why_len) snprintf(why, why_len, "broadcasting the NCCL unique id failed");
        return NULL;
    }
    return nccl_create(id, host->rank, host->world, host->local_rank, host, why, why_len);
}

void comm_nccl_destroy(struct comm *c) {
    if (!c) return;
    struct nccl_impl *im = (struct nccl_impl *)c->impl;
    if (!im->aborted) {
        cudaCheck(cudaStreamSynchronize(g_cuda.stream));
        cudaCheck(cudaStreamSynchronize(im->comm_stream));
#if XLMC_NCCL_NONBLOCKING
        /* a non-blocking communicator is finalized (its work flushed) before destroy */
        if (!nccl_enqueued(im, ncclCommFinalize(im->nccl), "communicator finalize"))
            nccl_ok(ncclCommDestroy(im->nccl), "communicator destroy");
#else
        nccl_ok(ncclCommDestroy(im->nccl), "communicator destroy");
#endif
    }
    cudaCheck(cudaEventDestroy(im->ready));
    for (int b = 0; b < COMM_GATHER_BUCKETS; b++)
        if (im->gathered[b]) cudaCheck(cudaEventDestroy(im->gathered[b]));
    cudaCheck(cudaStreamDestroy(im->comm_stream));
    cudaCheck(cudaFree(im->staging));
    free(im);
    free(c);
}
#endif
