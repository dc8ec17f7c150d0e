/* cudasim_count_impl.h — the counting hooks the cudasim runtime calls (see cudasim_count.h for
 * what is counted and cudasim_count.cpp for how). Internal to tests/cudasim. */
#ifndef XLMC_CUDASIM_COUNT_IMPL_H
#define XLMC_CUDASIM_COUNT_IMPL_H

#include "cudasim.h"
#include "cudasim_count.h"

#include <cstdint>

namespace cudasim {
namespace count {
extern bool g_on;   /* counting is on */
extern int g_flags; /* CUDASIM_COUNT_* */
/* 1 while a graph launch replays its nodes on this thread: their events get in_graph */
extern thread_local int t_in_graph;
/* A launch that passed the limit checks: returns the indices (linear, x fastest) of the
 * blocks to simulate, in order, through next_block. */
void launch_begin(const char *name, dim3 grid, dim3 block, size_t shmem, const void *stream);
bool next_block(unsigned long long *linear);
void block_end(int nthreads); /* the block's accesses are complete */
void launch_end();
/* One load or store of `size` bytes at addr by the current kernel thread (traffic build). */
void access(uintptr_t addr, size_t size, bool store);
/* n floating-point operations by the current kernel thread (XLMC_COUNT_FLOPS) */
void flops(double n);
void tc_flops(double n);
void gemm(int ta, int tb, int m, int n, int k, int batch, const void *A, int at, int lda,
          const void *B, int bt, int ldb, const void *C, int ct, int ldc, const void *stream,
          const char *name = nullptr);
void copy(void *dst, const void *src, size_t bytes, int kind, const void *stream);
void memset(void *p, size_t bytes, const void *stream);
void nccl(const char *op, size_t bytes, const void *stream);
void graph_launch(size_t nodes, const void *stream);
void device_alloc(void *p, size_t bytes);
void device_free(void *p);
bool is_device(const void *p);
void host_register(void *p, size_t bytes);
void host_unregister(void *p);
/* [p, p + bytes) lies in one page-locked host range */
bool is_pinned(const void *p, size_t bytes);
int stream_id(const void *stream);
} // namespace count
} // namespace cudasim
/* A GEMM now (cudasim_libs.cpp): cuBLAS's, or cuBLASLt's (cudasim_lt.cpp) with bias (m) added
 * in fp32 before rounding (null: none); name: its call record's (null: "gemm" or
 * "gemm_strided_batched") */
void cudasim_gemm_run(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float al,
                      const void *A, cudaDataType at, int lda, long long sa, const void *B,
                      cudaDataType bt, int ldb, long long sb, float be, void *C, cudaDataType ct,
                      int ldc, long long sc, int batch, const void *bias, const char *name,
                      cudaStream_t stream);
/* Something may write device memory (a launch, a copy, a GEMM): no block is pristine. */
void cudasim_touch_all();

#endif
