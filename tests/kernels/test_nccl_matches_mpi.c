/* test_nccl_matches_mpi — run under mpiexec -np 2. Each rank makes its own gradient; the MPI
 * communicator sums and averages them. Rank 0 then hands the same two gradients to two
 * in-process NCCL ranks (threads, through the cudasim NCCL stand-in and the CUDA backend's
 * comm_nccl) and checks that they get bit-identical averaged gradients, and that the
 * host-side collectives (fp64 sums, int max, broadcast, barrier) agree too. */
#include "core/comm.h"
#include "kernels/cuda/comm_nccl.h"
#include "kernels/ops.h"

#include <math.h>
#include <mpi.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 1537
#define WORLD 2

const struct ops *cudasim_ops_cuda(enum ops_precision precision, int device, char *why,
                                   size_t why_len);

static void make_gradient(float *g, int rank) {
    uint64_t x = 0x9E3779B97F4A7C15ull * (uint64_t)(rank + 1);
    for (int i = 0; i < N; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        g[i] = (float)((double)(x >> 11) / 9007199254740992.0 * 2.0 - 1.0) * (rank + 1);
    }
}

struct rank_job {
    const struct ops *ops;
    unsigned char id[COMM_NCCL_ID_BYTES];
    int rank;
    float result[N];
    double f64[2];
    int imax, bcast;
    int failed;
};

static void *nccl_rank(void *arg) {
    struct rank_job *j = arg;
    char why[256] = "";
    struct comm *c = comm_nccl_create_with_id(j->id, j->rank, WORLD, j->rank, why, sizeof why);
    if (!c) {
        fprintf(stderr, "rank %d: %s\n", j->rank, why);
        j->failed = 1;
        return NULL;
    }
    float host[N];
    make_gradient(host, j->rank);
    float *d = j->ops->alloc(N * sizeof(float));
    j->ops->to_device(d, host, sizeof host);
    j->failed |= c->allreduce_sum_f32(c, d, N) != 0;
    j->ops->to_host(j->result, d, sizeof host);
    for (int i = 0; i < N; i++)
        j->result[i] *= 1.0f / WORLD;
    j->ops->free(d);
    j->f64[0] = 0.5 + j->rank;
    j->f64[1] = 1e-3 * (j->rank + 1);
    j->failed |= c->allreduce_sum_f64(c, j->f64, 2) != 0;
    j->imax = 10 * j->rank + 3;
    j->failed |= c->allreduce_max_int(c, &j->imax, 1) != 0;
    j->bcast = j->rank == 1 ? 4242 : -1;
    j->failed |= c->broadcast(c, &j->bcast, sizeof j->bcast, 1) != 0;
    j->failed |= c->barrier(c) != 0;
    comm_nccl_destroy(c);
    return NULL;
}

int main(int argc, char **argv) {
    if (MPI_Init(&argc, &argv) != MPI_SUCCESS) return 1;
    int rank = 0, world = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    if (world != WORLD) {
        if (rank == 0) fprintf(stderr, "run me with mpiexec -np %d\n", WORLD);
        MPI_Finalize();
        return 2;
    }
    static float g[N], avg[N];
    make_gradient(g, rank);
    memcpy(avg, g, sizeof g);
    struct comm *mpi = comm_mpi_create();
    int rc = mpi->allreduce_sum_f32(mpi, avg, N);
    if (rc) {
        fprintf(stderr, "MPI all-reduce failed\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    for (int i = 0; i < N; i++)
        avg[i] *= 1.0f / WORLD;
    int failures = 0;
    if (rank == 0) {
        char why[256] = "";
        const struct ops *ops = cudasim_ops_cuda(OPS_FP32, 0, why, sizeof why);
        static struct rank_job jobs[WORLD];
        unsigned char id[COMM_NCCL_ID_BYTES];
        if (!ops || comm_nccl_unique_id(id, why, sizeof why) != 0) {
            fprintf(stderr, "cudasim: %s\n", why);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        pthread_t th[WORLD];
        for (int r = 0; r < WORLD; r++) {
            jobs[r].ops = ops;
            jobs[r].rank = r;
            memcpy(jobs[r].id, id, sizeof id);
            if (pthread_create(&th[r], NULL, nccl_rank, &jobs[r]) != 0)
                MPI_Abort(MPI_COMM_WORLD, 1);
        }
        for (int r = 0; r < WORLD; r++)
            pthread_join(th[r], NULL);
        for (int r = 0; r < WORLD; r++) {
            struct rank_job *j = &jobs[r];
            int diff = 0;
            for (int i = 0; i < N; i++)
                diff += memcmp(&j->result[i], &avg[i], sizeof(float)) != 0;
            printf("nccl rank %d: %d of %d averaged gradients differ from MPI's; f64 %g %g, "
                   "max %d, broadcast %d\n",
                   r, diff, N, j->f64[0], j->f64[1], j->imax, j->bcast);
            failures += j->failed || diff || j->f64[0] != 2.0 || fabs(j->f64[1] - 3e-3) > 1e-15 ||
                        j->imax != 13 || j->bcast != 4242;
        }
        printf(failures ? "FAILED\n" : "PASSED\n");
    }
    MPI_Bcast(&failures, 1, MPI_INT, 0, MPI_COMM_WORLD);
    comm_destroy(mpi);
    MPI_Finalize();
    return failures ? 1 : 0;
}
