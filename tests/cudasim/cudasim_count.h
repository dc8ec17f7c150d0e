/* cudasim_count.h — what a profiler on a real GPU would see, counted by cudasim from the
 * unmodified kernels/cuda sources: kernel launches, cuBLAS calls, NCCL calls, host<->device
 * copies, memsets, the device-memory high-water mark, and (in the traffic build, see
 * tests/cudasim/CMakeLists.txt) every global-memory load and store of every kernel and the
 * floating-point operations its annotations report.
 *
 * Plain C so that C benchmarks and tests can read it. Counting is off until
 * cudasim_count_start; events then go to one log, in issue order, until cudasim_count_stop.
 * The traffic counters assume one host thread launches kernels while counting is on. */
#ifndef XLMC_CUDASIM_COUNT_H
#define XLMC_CUDASIM_COUNT_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum cudasim_event_kind {
    CUDASIM_EV_KERNEL,
    CUDASIM_EV_GEMM,   /* one cublasGemmEx or cublasGemmStridedBatchedEx call */
    CUDASIM_EV_COPY,   /* cudaMemcpy / cudaMemcpyAsync */
    CUDASIM_EV_MEMSET, /* cudaMemset / cudaMemsetAsync */
    CUDASIM_EV_NCCL,   /* ncclAllReduce / ncclBroadcast */
    CUDASIM_EV_MARK,   /* cudasim_count_mark: a label the caller put into the log */
    CUDASIM_EV_GRAPH   /* cudaGraphLaunch: name "graph"; its nodes follow it in the log, each
                          with in_graph = 1 (a capture itself logs nothing) */
};
enum cudasim_copy_dir { CUDASIM_H2D = 1, CUDASIM_D2H = 2, CUDASIM_D2D = 3, CUDASIM_H2H = 0 };

struct cudasim_record {
    int kind;         /* enum cudasim_event_kind */
    const char *name; /* kernel name, "gemm", "allreduce", "broadcast" or the mark */
    int stream;       /* 0: the legacy default stream; 1, 2, ...: in creation order */
    /* kernel */
    unsigned grid[3], block[3];
    size_t shmem; /* dynamic shared memory, bytes */
    double scale; /* blocks launched / blocks simulated (1 unless sampling) */
    /* kernel traffic (traffic build only; 0 otherwise), already multiplied by scale.
     * A request is the k-th load (or store) of the lanes of one warp; sectors are the
     * distinct 32-byte sectors that request touches. */
    double load_bytes, store_bytes;               /* requested */
    double unique_load_bytes, unique_store_bytes; /* distinct bytes touched */
    double dram_bytes; /* 32 x (sectors loaded + sectors stored): DRAM lower bound */
    double load_requests, load_sectors, store_requests, store_sectors;
    double max_thread_accesses; /* the longest chain of accesses of one thread */
    double flops;        /* floating-point operations the kernel reported (XLMC_COUNT_FLOPS in
                            kernels/cuda/common.cuh; an FMA is 2), traffic build only, scaled */
    double tc_flops;     /* tensor-core FLOPs: 2 x 16 x 16 x 16 per warp-wide wmma::mma_sync
                            (tests/cudasim/include/mma.h), traffic build only, scaled */
    double threads;      /* grid x block */
    double host_seconds; /* what simulating the launch cost this machine */
    /* gemm: column-major C (m,n) = op(A) op(B), batch times */
    int transa, transb, m, n, k, batch, lda, ldb, ldc;
    int atype, btype, ctype; /* cudaDataType values: 0 fp32, 2 fp16 */
    int elem_bytes;          /* of A */
    int align_bytes;         /* the largest power of two <= 16 dividing every leading
                                dimension in bytes and every base pointer */
    /* copy, memset, nccl */
    size_t bytes;
    int dir;    /* enum cudasim_copy_dir */
    int pinned; /* the host side was page-locked (cudaMallocHost & co.) */
    /* graphs */
    int in_graph; /* kernel, gemm, copy, memset: run as a node of the last graph launch */
    int nodes;    /* graph: the calls the launch replays */
};

enum {
    CUDASIM_COUNT_SKIP_MATH = 1, /* record cuBLAS calls without doing the arithmetic */
    CUDASIM_COUNT_ZERO_ALLOC = 2 /* cudaMalloc returns zeros instead of NaN bytes */
};
/* Starts a fresh log. sample_blocks > 0: a launch of more blocks than that runs only
 * sample_blocks of them, the first sample_blocks-1 and the last one, and its counts are scaled
 * up (the skipped blocks write nothing: for models of cost, never for numerics). */
void cudasim_count_start(int flags, int sample_blocks);
void cudasim_count_stop(void);
/* The events logged since cudasim_count_start (valid until the next start). */
size_t cudasim_count_events(const struct cudasim_record **events);
void cudasim_count_mark(const char *label);
/* 1 in the build whose kernels report their loads and stores. */
int cudasim_count_has_traffic(void);

/* Device memory in use and its high-water mark since the last reset, in bytes. */
size_t cudasim_mem_in_use(void);
size_t cudasim_mem_high_water(void);
void cudasim_mem_reset_high_water(void);

#ifdef __cplusplus
}
#endif

#endif
