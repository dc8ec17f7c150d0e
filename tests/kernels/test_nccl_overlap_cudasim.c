/* test_nccl_overlap_cudasim — the NCCL communicator's started all-reduce (the overlap path:
 * ncclAllReduce on its own stream after an event of the compute stream) against the host sum
 * of the two ranks' gradients, with two in-process ranks (threads) over the cudasim NCCL
 * stand-in. Three uneven slices are started back to back and waited for once; the result must
 * equal both the one-call all-reduce and g0 + g1 bit for bit (a sum of two is exact in
 * either order), and a wait with nothing started must succeed. The same three slices started
 * as one bucket (allreduce_bucket_start: one NCCL group, issue 14 item 6) must give the same
 * bits, and close exactly one group per rank. The sharded optimizer's two calls: a bucket of
 * two slices reduced to different ranks (reduce_bucket_start) must leave g0 + g1 on each
 * slice's root, and allgather_shards of 2-byte elements must bring each rank's shard to
 * both; each is one more group per rank. So must a weights bucket (gather_bucket_start:
 * two slices from different roots, waited for with gather_bucket_wait; a second wait and a
 * wait for a bucket never started return at once), and a bucket of two slices sent to
 * their owners (gather_to_owner_start: ncclSend/ncclRecv, the root's own copied), which must
 * find each rank's values in its row on the slice's root. */
#include "core/comm.h"
#include "kernels/cuda/comm_nccl.h"
#include "kernels/ops.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 1537
#define WORLD 2

int cudasim_nccl_groups(void); /* tests/cudasim/cudasim_libs.cpp */

const struct ops *cudasim_ops_cuda(enum ops_precision precision, int device, char *why,
                                   size_t why_len);

static void make_gradient(float *g, int rank) {
    uint64_t x = 0xD1B54A32D192ED03ull * (uint64_t)(rank + 3);
    for (int i = 0; i < N; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        g[i] = (float)((double)(x >> 11) / 9007199254740992.0 * 2.0 - 1.0) * (float)(rank + 1);
    }
}

struct rank_job {
    const struct ops *ops;
    unsigned char id[COMM_NCCL_ID_BYTES];
    int rank;
    float once[N], started[N], bucket[N], reduced[N];
    unsigned short gathered[N], bucketed[N];
    float owned[WORLD * N];
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
    float *a = j->ops->alloc(N * sizeof(float)), *b = j->ops->alloc(N * sizeof(float));
    j->ops->to_device(a, host, sizeof host);
    j->ops->to_device(b, host, sizeof host);
    j->failed |= c->allreduce_wait(c) != 0; /* nothing started yet */
    j->failed |= c->allreduce_sum_f32(c, a, N) != 0;
    // a (N) again, the same slices as one bucket
    j->ops->to_device(a, host, sizeof host);
    float *x[3] = {a, a + 500, a + 501};
    size_t len[3] = {500, 1, N - 501};
    j->failed |= !c->allreduce_bucket_start || c->allreduce_bucket_start(c, x, len, 3) != 0;
    j->failed |= c->allreduce_wait(c) != 0;
    j->ops->to_host(j->bucket, a, sizeof host);
    // a (N) again: [0,500) summed on rank 1, [500,N) on rank 0
    j->ops->to_device(a, host, sizeof host);
    float *rx[2] = {a, a + 500};
    size_t rlen[2] = {500, N - 500};
    int root[2] = {1, 0};
    j->failed |= !c->reduce_bucket_start || c->reduce_bucket_start(c, rx, rlen, root, 2) != 0;
    j->failed |= c->allreduce_wait(c) != 0;
    j->ops->to_host(j->reduced, a, sizeof host);
    // shards [0,700) and [700,N) of 2-byte elements: each rank fills its own with its mark
    size_t lo[WORLD + 1] = {0, 700, N};
    unsigned short h[N];
    for (int i = 0; i < N; i++)
        h[i] = (size_t)i >= lo[j->rank] && (size_t)i < lo[j->rank + 1]
                   ? (unsigned short)(0x1000 * (j->rank + 1) + i % 7)
                   : 0xFFFF;
    j->ops->to_device(b, h, sizeof h);
    j->failed |= !c->allgather_shards || c->allgather_shards(c, b, lo, sizeof h[0]) != 0;
    j->ops->to_host(j->gathered, b, sizeof h);
    // the same marks as a bucket of slices [0,700) from rank 0 and [700,N) from rank 1
    j->ops->to_device(b, h, sizeof h);
    void *gx[2] = {b, (unsigned short *)b + 700};
    size_t gn[2] = {700, N - 700};
    int groot[2] = {0, 1};
    j->failed |=
        !c->gather_bucket_start || c->gather_bucket_start(c, 5, gx, gn, groot, 2, sizeof h[0]) != 0;
    j->failed |= c->gather_bucket_wait(c, 5) != 0 || c->gather_bucket_wait(c, 5) != 0 ||
                 c->gather_bucket_wait(c, 6) != 0;
    j->ops->to_host(j->bucketed, b, sizeof h);
    // slices [0,500) to rank 1 and [500,N) to rank 0, each rank's row N floats apart
    float *rows = j->ops->alloc(WORLD * N * sizeof(float));
    j->ops->to_device(a, host, sizeof host);
    const void *ox[2] = {a, a + 500};
    void *orecv[2] = {rows, rows + 500};
    j->failed |= !c->gather_to_owner_start ||
                 c->gather_to_owner_start(c, ox, rlen, root, orecv, N * sizeof(float), 2,
                                          sizeof(float)) != 0;
    j->failed |= c->allreduce_wait(c) != 0;
    j->ops->to_host(j->owned, rows, sizeof j->owned);
    j->ops->free(rows);
    // b (N): slices [0,500) [500,501) [501,N), in the same order on both ranks
    j->ops->to_device(b, host, sizeof host);
    j->failed |= c->allreduce_sum_f32_start(c, b, 500) != 0;
    j->failed |= c->allreduce_sum_f32_start(c, b + 500, 1) != 0;
    j->failed |= c->allreduce_sum_f32_start(c, b + 501, N - 501) != 0;
    j->failed |= c->allreduce_wait(c) != 0;
    j->ops->to_device(a, host, sizeof host);
    j->failed |= c->allreduce_sum_f32(c, a, N) != 0;
    j->ops->to_host(j->once, a, sizeof host);
    j->ops->to_host(j->started, b, sizeof host);
    j->ops->free(a);
    j->ops->free(b);
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
    static struct rank_job jobs[WORLD];
    pthread_t th[WORLD];
    for (int r = 0; r < WORLD; r++) {
        jobs[r].ops = ops;
        jobs[r].rank = r;
        memcpy(jobs[r].id, id, sizeof id);
        if (pthread_create(&th[r], NULL, nccl_rank, &jobs[r]) != 0) return 1;
    }
    for (int r = 0; r < WORLD; r++)
        pthread_join(th[r], NULL);
    int groups = cudasim_nccl_groups();

    static float g0[N], g1[N];
    make_gradient(g0, 0);
    make_gradient(g1, 1);
    int failures = 0;
    for (int r = 0; r < WORLD; r++) {
        struct rank_job *j = &jobs[r];
        int vs_sum = 0, vs_once = 0, bucket = 0, reduced = 0, gathered = 0;
        for (int i = 0; i < N; i++) {
            float want = g0[i] + g1[i];
            vs_sum += memcmp(&j->started[i], &want, sizeof want) != 0;
            vs_once += memcmp(&j->started[i], &j->once[i], sizeof want) != 0;
            bucket += memcmp(&j->bucket[i], &want, sizeof want) != 0;
            if ((i < 500) == (r == 1)) { /* this rank is the slice's root */
                reduced += memcmp(&j->reduced[i], &want, sizeof want) != 0;
                reduced += memcmp(&j->owned[i], &g0[i], sizeof want) != 0;
                reduced += memcmp(&j->owned[N + i], &g1[i], sizeof want) != 0;
            }
            gathered += j->gathered[i] != 0x1000 * (i < 700 ? 1 : 2) + i % 7;
            gathered += j->bucketed[i] != 0x1000 * (i < 700 ? 1 : 2) + i % 7;
        }
        printf(
            "nccl rank %d: started sums: %d of %d differ from g0+g1, %d from the one-call "
            "sum; bucket: %d differ from g0+g1; reduced to and sent to this rank: %d of %d differ; "
            "gathered shards and weights bucket: %d of %d wrong%s\n",
            r, vs_sum, N, vs_once, bucket, reduced, 3 * (r == 1 ? 500 : N - 500), gathered, 2 * N,
            j->failed ? "; a call failed" : "");
        failures += j->failed || vs_sum || vs_once || bucket || reduced || gathered;
    }
    /* per rank one bucket, one reduce bucket, one gather, one weights bucket, one bucket to
     * owners; nothing else opens a group */
    printf("NCCL groups closed: %d (want %d, five per rank)\n", groups, 5 * WORLD);
    failures += groups != 5 * WORLD;
    printf(failures ? "FAILED\n" : "PASSED\n");
    return failures ? 1 : 0;
}
