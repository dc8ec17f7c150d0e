/* comm.h — the communicator interface: how ranks agree. core/ uses only this; the MPI
 * implementation (core/comm_mpi.c) serves the CPU backend, NCCL (kernels/cuda) the GPU one.
 * Buffers are device pointers of the backend in use (host memory for MPI). */
#ifndef XLMC_COMM_H
#define XLMC_COMM_H

#include <stddef.h>

/* gather buckets in flight at once (gather_bucket_start) */
#define COMM_GATHER_BUCKETS 64

struct comm {
    const char *name; /* "mpi", "nccl", "local" */
    int rank, world;  /* this process and the job's size */
    int local_rank;   /* rank within the node: picks the GPU */
    /* x (n) fp32: in-place sum over ranks */
    int (*allreduce_sum_f32)(struct comm *c, float *x, size_t n);
    /* x (n) fp32: the same sum, started and left running so that backward can go on while
     * the gradient travels (overlap). May be called several times; the sums complete in
     * call order, and every rank must start the same sizes in the same order. x must not be
     * touched until allreduce_wait returns. */
    int (*allreduce_sum_f32_start)(struct comm *c, float *x, size_t n);
    /* x[i] (n[i]) fp32, i < k: k sums started as one bucket (NCCL: one group, one launch
     * after the bucket's values are final), same contract as allreduce_sum_f32_start. NULL:
     * the caller starts the k sums one by one (MPI: the same k requests either way). */
    int (*allreduce_bucket_start)(struct comm *c, float *const *x, const size_t *n, int k);
    /* x[i] (n[i]) fp32, i < k: k sums started as one bucket, sum i landing in x[i] on rank
     * root[i] only (the sharded optimizer: each slice goes to the rank that updates it);
     * on the other ranks x[i] is left undefined. Same contract as allreduce_bucket_start
     * otherwise, completed by allreduce_wait. NULL: not offered (the caller all-reduces). */
    int (*reduce_bucket_start)(struct comm *c, float *const *x, const size_t *n, const int *root,
                               int k);
    /* x[i] (n[i] elements of elem bytes, backend memory), i < k: rank root[i] receives every
     * rank's x[i], its own included, rank r's at recv[i] + r * stride bytes (recv[i] is read
     * on root[i] only), for the sharded optimizer to sum them itself in fp32 (an fp16
     * gradient travels at half an fp32 sum's bytes). Started like allreduce_bucket_start
     * and completed by allreduce_wait. NULL: not offered. */
    int (*gather_to_owner_start)(struct comm *c, const void *const *x, const size_t *n,
                                 const int *root, void *const *recv, size_t stride, int k,
                                 size_t elem);
    /* x: lo[world] elements of elem bytes in the backend's memory; rank r's elements
     * [lo[r], lo[r+1]) reach every rank (in place; lo nondecreasing, lo[0] = 0). Blocking. */
    int (*allgather_shards)(struct comm *c, void *x, const size_t *lo, size_t elem);
    /* The sharded optimizer's updated weights, one bucket of slices at a time, overlapped
     * with the next forward: x[i] (n[i] elements of elem bytes, backend memory), i < k, sent
     * from rank root[i] to every other rank (in place), started after the work this rank
     * has issued so far. bucket < COMM_GATHER_BUCKETS names it for gather_bucket_wait; every
     * rank starts the same buckets with the same slices in the same order. NULL: not offered
     * (the caller uses allgather_shards). */
    int (*gather_bucket_start)(struct comm *c, int bucket, void *const *x, const size_t *n,
                               const int *root, int k, size_t elem);
    /* The bucket's slices are in place for what this rank issues from now on (NCCL: the
     * backend's stream waits for them; MPI: on return). A bucket not started (or waited for
     * already) returns at once. */
    int (*gather_bucket_wait)(struct comm *c, int bucket);
    /* waits for every sum started since the last wait; x then holds the result */
    int (*allreduce_wait)(struct comm *c);
    /* x (n) fp64 host: in-place sum over ranks (losses, counts, norms) */
    int (*allreduce_sum_f64)(struct comm *c, double *x, size_t n);
    /* x host int: in-place max over ranks (overflow flags, stop requests) */
    int (*allreduce_max_int)(struct comm *c, int *x, size_t n);
    /* bytes from root to every rank */
    int (*broadcast)(struct comm *c, void *buf, size_t bytes, int root);
    int (*barrier)(struct comm *c);
    /* ends the whole job (MPI_Abort: does not return); a one-process communicator has no
     * other rank to end and returns: the caller then exits with its status as usual */
    void (*abort)(struct comm *c, int code);
    /* NCCL: a collective not complete after this long aborts the communicator
     * (ncclCommAbort) and fails, naming what it waited on; 0 = wait forever (train leaves
     * hangs to its watchdog, which calls abort). Asynchronous NCCL errors end a wait too. */
    double timeout_seconds;
    void *impl;
};

/* MPI_COMM_WORLD after MPI_Init (the caller initializes MPI). Never fails. */
struct comm *comm_mpi_create(void);
/* A one-rank communicator without MPI (tools and tests). */
struct comm *comm_local_create(void);
void comm_destroy(struct comm *c);

/* Collectives this process has entered through the MPI communicator, and the name of the one
 * it is inside now (NULL between them). Safe to call from another thread: the watchdog reads
 * them to tell which rank did not arrive (the one that entered fewer). */
unsigned long comm_mpi_entered(const char **inside);

#endif
