/* test_nccl_watchdog_cudasim — a rank that never arrives cannot hold the NCCL communicator
 * forever. Two in-process ranks (threads) over the cudasim NCCL stand-in, non-blocking as
 * comm_nccl.cu creates it:
 *  1. both ranks sum a gradient (the wait polls and completes: g0 + g1 exactly);
 *  2. rank 0 starts another sum that rank 1 never joins (the stand-in that never arrives);
 *     with timeout_seconds = 1 the call must fail within 1 + 4 s, having aborted the
 *     communicator (ncclCommAbort counted by the stand-in), and a later call on it must fail
 *     at once instead of waiting again. */
#include "core/comm.h"
#include "kernels/cuda/comm_nccl.h"
#include "kernels/ops.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define N 64
#define WORLD 2

const struct ops *cudasim_ops_cuda(enum ops_precision precision, int device, char *why,
                                   size_t why_len);
int cudasim_nccl_aborts(void);

struct rank_job {
    const struct ops *ops;
    unsigned char id[COMM_NCCL_ID_BYTES];
    int rank;
    float sum[N];
    int failed, hang_rc, again_rc;
    double hang_seconds, again_seconds;
    pthread_mutex_t *mu;
    pthread_cond_t *cv;
    int *rank0_done; /* rank 1 waits for it: it is there, but never calls the second sum */
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

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
    for (int i = 0; i < N; i++)
        host[i] = (float)(i * (j->rank + 1)); /* g_r[i] = i (r + 1) */
    float *x = j->ops->alloc(N * sizeof(float));
    j->ops->to_device(x, host, sizeof host);
    j->failed |= c->allreduce_sum_f32(c, x, N) != 0;
    j->ops->to_host(j->sum, x, sizeof host);
    if (j->rank == 0) {
        c->timeout_seconds = 1;
        double t0 = now();
        j->hang_rc = c->allreduce_sum_f32(c, x, N); /* rank 1 never comes */
        j->hang_seconds = now() - t0;
        t0 = now();
        j->again_rc = c->allreduce_sum_f32(c, x, N);
        j->again_seconds = now() - t0;
        pthread_mutex_lock(j->mu);
        *j->rank0_done = 1;
        pthread_cond_signal(j->cv);
        pthread_mutex_unlock(j->mu);
    } else {
        pthread_mutex_lock(j->mu);
        while (!*j->rank0_done)
            pthread_cond_wait(j->cv, j->mu);
        pthread_mutex_unlock(j->mu);
    }
    j->ops->free(x);
    comm_nccl_destroy(c);
    return NULL;
}

int main(void) {
    char why[256] = "";
    const struct ops *ops = cudasim_ops_cuda(OPS_FP32, 0, why, sizeof why);
    unsigned char id[COMM_NCCL_ID_BYTES];
    if (!ops || comm_nccl_unique_id(id, why, sizeof why) != 0) {
        fprintf(stderr, "cudasim: %s\n", why);
        return 1;
    }
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    int rank0_done = 0;
    static struct rank_job jobs[WORLD];
    pthread_t th[WORLD];
    for (int r = 0; r < WORLD; r++) {
        jobs[r].ops = ops;
        jobs[r].rank = r;
        jobs[r].mu = &mu;
        jobs[r].cv = &cv;
        jobs[r].rank0_done = &rank0_done;
        memcpy(jobs[r].id, id, sizeof id);
        if (pthread_create(&th[r], NULL, nccl_rank, &jobs[r]) != 0) return 1;
    }
    for (int r = 0; r < WORLD; r++)
        pthread_join(th[r], NULL);

    int failures = 0, wrong = 0;
    for (int r = 0; r < WORLD; r++) {
        failures += jobs[r].failed;
        for (int i = 0; i < N; i++)
            wrong += jobs[r].sum[i] != (float)(3 * i); /* i*1 + i*2, exact in fp32 */
    }
    const struct rank_job *j0 = &jobs[0];
    printf("1. sum of both ranks: %d of %d values wrong%s\n", wrong, WORLD * N,
           failures ? ", a call failed" : "");
    printf("2. rank 1 never arrives: the call returned %d after %.2f s (timeout 1 s), "
           "ncclCommAbort called %d time(s); the next call returned %d after %.3f s\n",
           j0->hang_rc, j0->hang_seconds, cudasim_nccl_aborts(), j0->again_rc, j0->again_seconds);
    failures += wrong != 0;
    failures += j0->hang_rc == 0 || j0->hang_seconds < 1 || j0->hang_seconds > 5;
    failures += cudasim_nccl_aborts() != 1;
    failures += j0->again_rc == 0 || j0->again_seconds > 0.5;
    printf(failures ? "FAILED\n" : "PASSED\n");
    return failures ? 1 : 0;
}
