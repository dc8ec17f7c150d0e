/* comm_nccl.h — the NCCL communicator (struct comm of core/comm.h) for the CUDA backend.
 * Gradients (device fp32) are summed by ncclAllReduce on the backend's stream; the host-side
 * collectives (losses, flags, broadcasts, barriers) go through the host communicator when one
 * is given (MPI), or through small NCCL transfers when not (in-process ranks in tests). */
#ifndef XLMC_COMM_NCCL_H
#define XLMC_COMM_NCCL_H

#include "core/comm.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define COMM_NCCL_ID_BYTES 128

/* A fresh unique id (rank 0 makes it, every rank then uses it). 0 or -1 (why filled). */
int comm_nccl_unique_id(unsigned char id[COMM_NCCL_ID_BYTES], char *why, size_t why_len);
/* One communicator per job over the ranks of `host` (MPI): rank 0's unique id is broadcast
 * through host, which also serves the host-side collectives and must outlive the result.
 * The CUDA backend must be open (ops_cuda) on this rank's GPU. NULL with why on failure. */
struct comm *comm_nccl_create(struct comm *host, char *why, size_t why_len);
/* Rank `rank` of `world` ranks sharing `id` (each rank one thread or process). */
struct comm *comm_nccl_create_with_id(const unsigned char id[COMM_NCCL_ID_BYTES], int rank,
                                      int world, int local_rank, char *why, size_t why_len);
void comm_nccl_destroy(struct comm *c);

#ifdef __cplusplus
}
#endif
#endif
