/* comm_mpi.c — the MPI communicator (core/comm.h) over MPI_COMM_WORLD, and the one-rank
 * local communicator that needs no MPI at all (tools, tests, `xlmc eval`).
 *
 * MPI_COMM_WORLD gets MPI_ERRORS_ARE_FATAL: a failing collective ends the whole job instead
 * of leaving the other ranks waiting in the next one forever. */
#include "core/comm.h"
#include "core/util.h"

#include <limits.h>
#include <mpi.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* MPI counts are int: large buffers go in chunks. */
#define COMM_CHUNK ((size_t)1 << 30)

static int mpi_check(int rc, const char *what) {
    if (rc == MPI_SUCCESS) return 0;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return xlmc_error("%s failed: %s", what, msg);
}

/* Progress marks for the watchdog's thread (comm_mpi_entered). */
static atomic_ulong mpi_entered;
static _Atomic(const char *) mpi_inside;

static void mark_enter(const char *what) {
    atomic_store(&mpi_inside, what);
    atomic_fetch_add(&mpi_entered, 1);
}

static int mark_leave(int rc) {
    atomic_store(&mpi_inside, (const char *)NULL);
    return rc;
}

unsigned long comm_mpi_entered(const char **inside) {
    if (inside) *inside = atomic_load(&mpi_inside);
    return atomic_load(&mpi_entered);
}

static int mpi_allreduce(void *x, size_t n, MPI_Datatype type, size_t elem_bytes, MPI_Op op) {
    mark_enter("MPI_Allreduce");
    for (size_t off = 0; off < n; off += COMM_CHUNK) {
        size_t k = n - off < COMM_CHUNK ? n - off : COMM_CHUNK;
        if (mpi_check(MPI_Allreduce(MPI_IN_PLACE, (char *)x + off * elem_bytes, (int)k, type, op,
                                    MPI_COMM_WORLD),
                      "MPI_Allreduce"))
            return mark_leave(-1);
    }
    return mark_leave(0);
}

/* A one-rank sum is x itself: no MPI call, so that the CUDA backend's device pointers (one
 * GPU, no NCCL communicator) never reach an MPI that may not be CUDA-aware. */
static int mpi_sum_f32(struct comm *c, float *x, size_t n) {
    if (c->world == 1) return 0;
    return mpi_allreduce(x, n, MPI_FLOAT, sizeof(float), MPI_SUM);
}

/* The requests of started sums (MPI_Iallreduce), completed by mpi_wait; and of each
 * started gather bucket (MPI_Ibcast), completed by mpi_gather_wait. */
struct mpi_pending {
    MPI_Request *req;
    int n, cap;
    int **keep; /* count and displacement arrays of started gathers, freed by mpi_wait */
    int n_keep, cap_keep;
    struct mpi_bucket {
        MPI_Request *req;
        int n, cap;
    } gather[COMM_GATHER_BUCKETS];
};

/* room for one more request at p->req[p->n] */
static void pending_slot(struct mpi_pending *p) {
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 64;
        p->req = xrealloc(p->req, (size_t)p->cap * sizeof *p->req);
    }
}

static int mpi_sum_f32_start(struct comm *c, float *x, size_t n) {
    struct mpi_pending *p = c->impl;
    if (c->world == 1) return 0; /* as mpi_sum_f32: nothing to start, nothing to wait for */
    for (size_t off = 0; off < n; off += COMM_CHUNK) {
        size_t k = n - off < COMM_CHUNK ? n - off : COMM_CHUNK;
        pending_slot(p);
        if (mpi_check(MPI_Iallreduce(MPI_IN_PLACE, x + off, (int)k, MPI_FLOAT, MPI_SUM,
                                     MPI_COMM_WORLD, &p->req[p->n]),
                      "MPI_Iallreduce"))
            return -1;
        p->n++;
    }
    /* Without an asynchronous progress thread MPI moves data only inside MPI calls: testing
     * here lets the sums already started advance while backward computes the next bucket. */
    int done = 0;
    if (mpi_check(MPI_Testall(p->n, p->req, &done, MPI_STATUSES_IGNORE), "MPI_Testall")) return -1;
    if (done) p->n = 0;
    return 0;
}

/* Each slice's sum to its owner (MPI_Ireduce, in place there), chunked like the sums. */
static int mpi_reduce_bucket_start(struct comm *c, float *const *x, const size_t *n,
                                   const int *root, int k) {
    struct mpi_pending *p = c->impl;
    if (c->world == 1) return 0;
    for (int i = 0; i < k; i++)
        for (size_t off = 0; off < n[i]; off += COMM_CHUNK) {
            size_t cnt = n[i] - off < COMM_CHUNK ? n[i] - off : COMM_CHUNK;
            float *buf = x[i] + off;
            pending_slot(p);
            int rc = c->rank == root[i]
                         ? MPI_Ireduce(MPI_IN_PLACE, buf, (int)cnt, MPI_FLOAT, MPI_SUM, root[i],
                                       MPI_COMM_WORLD, &p->req[p->n])
                         : MPI_Ireduce(buf, NULL, (int)cnt, MPI_FLOAT, MPI_SUM, root[i],
                                       MPI_COMM_WORLD, &p->req[p->n]);
            if (mpi_check(rc, "MPI_Ireduce")) return -1;
            p->n++;
        }
    int done = 0; /* as in mpi_sum_f32_start: let the started sums move */
    if (mpi_check(MPI_Testall(p->n, p->req, &done, MPI_STATUSES_IGNORE), "MPI_Testall")) return -1;
    if (done) p->n = 0;
    return 0;
}

/* Each slice broadcast from its root (MPI_Ibcast, chunked), the bucket's requests kept. */
static int mpi_gather_bucket_start(struct comm *c, int bucket, void *const *x, const size_t *n,
                                   const int *root, int k, size_t elem) {
    struct mpi_pending *p = c->impl;
    if (c->world == 1) return 0;
    if (bucket < 0 || bucket >= COMM_GATHER_BUCKETS)
        return xlmc_error("gather bucket %d outside 0..%d", bucket, COMM_GATHER_BUCKETS - 1);
    struct mpi_bucket *b = &p->gather[bucket];
    if (b->n) return xlmc_error("gather bucket %d started twice", bucket);
    for (int i = 0; i < k; i++) {
        size_t bytes = n[i] * elem;
        for (size_t off = 0; off < bytes; off += COMM_CHUNK) {
            size_t cnt = bytes - off < COMM_CHUNK ? bytes - off : COMM_CHUNK;
            if (b->n == b->cap) {
                b->cap = b->cap ? 2 * b->cap : 32;
                b->req = xrealloc(b->req, (size_t)b->cap * sizeof *b->req);
            }
            if (mpi_check(MPI_Ibcast((char *)x[i] + off, (int)cnt, MPI_BYTE, root[i],
                                     MPI_COMM_WORLD, &b->req[b->n]),
                          "MPI_Ibcast"))
                return -1;
            b->n++;
        }
    }
    return 0;
}

static int mpi_gather_bucket_wait(struct comm *c, int bucket) {
    struct mpi_pending *p = c->impl;
    if (bucket < 0 || bucket >= COMM_GATHER_BUCKETS) return 0;
    struct mpi_bucket *b = &p->gather[bucket];
    if (!b->n) return 0;
    int n = b->n;
    b->n = 0;
    mark_enter("MPI_Waitall (weights' broadcast)");
    return mark_leave(mpi_check(MPI_Waitall(n, b->req, MPI_STATUSES_IGNORE), "MPI_Waitall"));
}

/* Each slice to its root (MPI_Igatherv in bytes; the root's own included), completed by
 * mpi_wait with the sums. */
static int mpi_gather_to_owner_start(struct comm *c, const void *const *x, const size_t *n,
                                     const int *root, void *const *recv, size_t stride, int k,
                                     size_t elem) {
    struct mpi_pending *p = c->impl;
    if (c->world == 1) return 0;
    if (stride * (size_t)c->world > (size_t)INT_MAX)
        return xlmc_error("sending gradients to their owners: %zu bytes per rank do not fit "
                          "MPI's int displacements",
                          stride);
    for (int i = 0; i < k; i++) {
        if (n[i] * elem > stride) return xlmc_error("a gradient slice exceeds its receive slot");
        int *arr = NULL;
        if (c->rank == root[i]) {
            arr = xcalloc(2 * (size_t)c->world, sizeof *arr);
            for (int r = 0; r < c->world; r++) {
                arr[r] = (int)(n[i] * elem);
                arr[c->world + r] = (int)((size_t)r * stride);
            }
            if (p->n_keep == p->cap_keep) {
                p->cap_keep = p->cap_keep ? 2 * p->cap_keep : 32;
                p->keep = xrealloc(p->keep, (size_t)p->cap_keep * sizeof *p->keep);
            }
            p->keep[p->n_keep++] = arr;
        }
        pending_slot(p);
        if (mpi_check(MPI_Igatherv(x[i], (int)(n[i] * elem), MPI_BYTE, arr ? recv[i] : NULL, arr,
                                   arr ? arr + c->world : NULL, MPI_BYTE, root[i], MPI_COMM_WORLD,
                                   &p->req[p->n]),
                      "MPI_Igatherv"))
            return -1;
        p->n++;
    }
    int done = 0; /* as in mpi_sum_f32_start: let the started transfers move */
    if (mpi_check(MPI_Testall(p->n, p->req, &done, MPI_STATUSES_IGNORE), "MPI_Testall")) return -1;
    if (done) p->n = 0;
    return 0;
}

/* MPI_Allgatherv in place, counted in elements of elem bytes (an MPI type of that size). */
static int mpi_allgather_shards(struct comm *c, void *x, const size_t *lo, size_t elem) {
    if (c->world == 1) return 0;
    int *counts = xcalloc((size_t)c->world, sizeof *counts);
    int *displs = xcalloc((size_t)c->world, sizeof *displs);
    int rc = 0;
    for (int r = 0; r < c->world && !rc; r++) {
        if (lo[r + 1] > (size_t)INT_MAX || elem > (size_t)INT_MAX)
            rc = xlmc_error("gathering the optimizer's shards: %zu elements of %zu bytes do not "
                            "fit MPI's int counts",
                            lo[c->world], elem);
        counts[r] = (int)(lo[r + 1] - lo[r]);
        displs[r] = (int)lo[r];
    }
    MPI_Datatype t;
    if (!rc) rc = mpi_check(MPI_Type_contiguous((int)elem, MPI_BYTE, &t), "MPI_Type_contiguous");
    if (!rc) {
        rc = mpi_check(MPI_Type_commit(&t), "MPI_Type_commit");
        if (!rc) {
            mark_enter("MPI_Allgatherv (optimizer shards)");
            rc = mark_leave(mpi_check(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, x, counts,
                                                     displs, t, MPI_COMM_WORLD),
                                      "MPI_Allgatherv"));
        }
        MPI_Type_free(&t);
    }
    free(counts);
    free(displs);
    return rc ? -1 : 0;
}

static int mpi_wait(struct comm *c) {
    struct mpi_pending *p = c->impl;
    int n = p->n;
    p->n = 0;
    mark_enter("MPI_Waitall (gradient all-reduce)");
    int rc = mark_leave(mpi_check(MPI_Waitall(n, p->req, MPI_STATUSES_IGNORE), "MPI_Waitall"));
    for (int i = 0; i < p->n_keep; i++)
        free(p->keep[i]);
    p->n_keep = 0;
    return rc;
}

static int mpi_sum_f64(struct comm *c, double *x, size_t n) {
    (void)c;
    return mpi_allreduce(x, n, MPI_DOUBLE, sizeof(double), MPI_SUM);
}

static int mpi_max_int(struct comm *c, int *x, size_t n) {
    (void)c;
    return mpi_allreduce(x, n, MPI_INT, sizeof(int), MPI_MAX);
}

static int mpi_broadcast(struct comm *c, void *buf, size_t bytes, int root) {
    (void)c;
    mark_enter("MPI_Bcast");
    for (size_t off = 0; off < bytes; off += COMM_CHUNK) {
        size_t k = bytes - off < COMM_CHUNK ? bytes - off : COMM_CHUNK;
        if (mpi_check(MPI_Bcast((char *)buf + off, (int)k, MPI_BYTE, root, MPI_COMM_WORLD),
                      "MPI_Bcast"))
            return mark_leave(-1);
    }
    return mark_leave(0);
}

static int mpi_barrier(struct comm *c) {
    (void)c;
    mark_enter("MPI_Barrier");
    return mark_leave(mpi_check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier"));
}

static void mpi_abort_job(struct comm *c, int code) {
    (void)c;
    MPI_Abort(MPI_COMM_WORLD, code); /* does not return */
}

/* Rank within the node: the shared-memory split of MPI-3, else Slurm's SLURM_LOCALID. */
static int mpi_local_rank(int rank) {
    MPI_Comm node;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node) ==
        MPI_SUCCESS) {
        int local = 0;
        int rc = MPI_Comm_rank(node, &local);
        MPI_Comm_free(&node);
        if (rc == MPI_SUCCESS) return local;
    }
    const char *s = getenv("SLURM_LOCALID");
    if (s && *s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (!*end && v >= 0 && v < INT_MAX) return (int)v;
    }
    return 0;
}

struct comm *comm_mpi_create(void) {
    struct comm *c = xcalloc(1, sizeof *c);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
    MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &c->world);
    c->name = "mpi";
    c->local_rank = mpi_local_rank(c->rank);
    c->allreduce_sum_f32 = mpi_sum_f32;
    c->allreduce_sum_f32_start = mpi_sum_f32_start;
    c->allreduce_wait = mpi_wait;
    c->reduce_bucket_start = mpi_reduce_bucket_start;
    c->allgather_shards = mpi_allgather_shards;
    c->gather_bucket_start = mpi_gather_bucket_start;
    c->gather_bucket_wait = mpi_gather_bucket_wait;
    c->gather_to_owner_start = mpi_gather_to_owner_start;
    c->allreduce_sum_f64 = mpi_sum_f64;
    c->allreduce_max_int = mpi_max_int;
    c->broadcast = mpi_broadcast;
    c->barrier = mpi_barrier;
    c->abort = mpi_abort_job;
    c->impl = xcalloc(1, sizeof(struct mpi_pending));
    return c;
}

/* ---- one rank, no MPI: every collective is the identity ---- */

static int local_sum_f32(struct comm *c, float *x, size_t n) {
    (void)c, (void)x, (void)n;
    return 0;
}

static int local_wait(struct comm *c) {
    (void)c;
    return 0;
}

static int local_sum_f64(struct comm *c, double *x, size_t n) {
    (void)c, (void)x, (void)n;
    return 0;
}

static int local_max_int(struct comm *c, int *x, size_t n) {
    (void)c, (void)x, (void)n;
    return 0;
}

static int local_broadcast(struct comm *c, void *buf, size_t bytes, int root) {
    (void)c, (void)buf, (void)bytes, (void)root;
    return 0;
}

static int local_barrier(struct comm *c) {
    (void)c;
    return 0;
}

static void local_abort(struct comm *c, int code) {
    (void)c, (void)code; /* no other rank: the caller's own exit ends the job */
}

struct comm *comm_local_create(void) {
    struct comm *c = xcalloc(1, sizeof *c);
    c->name = "local";
    c->rank = 0;
    c->world = 1;
    c->local_rank = 0;
    c->allreduce_sum_f32 = local_sum_f32;
    c->allreduce_sum_f32_start = local_sum_f32;
    c->allreduce_wait = local_wait;
    c->allreduce_sum_f64 = local_sum_f64;
    c->allreduce_max_int = local_max_int;
    c->broadcast = local_broadcast;
    c->barrier = local_barrier;
    c->abort = local_abort;
    return c;
}

void comm_destroy(struct comm *c) {
    if (!c) return;
    /* the local communicator has no impl; the MPI one keeps its request list there */
    struct mpi_pending *p = c->impl;
    if (p) {
        free(p->req);
        for (int i = 0; i < p->n_keep; i++)
            free(p->keep[i]);
        free(p->keep);
        for (int b = 0; b < COMM_GATHER_BUCKETS; b++)
            free(p->gather[b].req);
    }
    free(p);
    free(c);
}
