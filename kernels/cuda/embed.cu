/* embed.cu — word + position + language embeddings, forward and a deterministic backward. */
#include "kernels/cuda/common.cuh"

// out (B,T,C), ids/langs/pos (B,T) (pos NULL: t), wte (V,C), wpe (P,C), wlang (NL,C) or NULL.
// Thread i takes elements [i VEC, (i + 1) VEC) of out, a piece of one row (VEC > 1: C a
// multiple of VEC, every pointer 16-byte aligned), one access per tensor; the same sums in the
// same order for every VEC.
template <typename S, int VEC>
__global__ void embed_forward_kernel(S *out, const int32_t *ids, const int32_t *langs,
                                     const int32_t *pos, const S *wte, const S *wpe, const S *wlang,
                                     int T, int C, size_t n) {
    size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * VEC;
    if (i >= n) return;
    size_t bt = i / C;
    int c = (int)(i % C), t = pos ? pos[bt] : (int)(bt % T);
    float v[VEC], q[VEC];
    unpack<VEC, S>(v, ld_piece<VEC>(wte + (size_t)ids[bt] * C + c));
    unpack<VEC, S>(q, ld_piece<VEC>(wpe + (size_t)t * C + c));
    ROW_UNROLL
    for (int j = 0; j < VEC; j++)
        v[j] += q[j];
    if (wlang) {
        unpack<VEC, S>(q, ld_piece<VEC>(wlang + (size_t)langs[bt] * C + c));
        ROW_UNROLL
        for (int j = 0; j < VEC; j++)
            v[j] += q[j];
    }
    st_piece<VEC>(out + i, pack<VEC, S>(v));
}

/* ---- word-embedding backward: sort the positions by token id, then one fp32 sum per row ----
 * Key of position n: id << 32 | n. The keys are distinct, so their sorted order (by id, then by
 * position) is the one order every run and every backend sums in: the CPU backend walks the
 * same positions in the same order, so both give the same bits. Each row of dwte gets one
 * storage rounding however often its token occurs (adding into fp16 one token at a time lost
 * 0.2-1.5 % on tokens seen 100-1000 times). */
#define EMBED_SORT_THREADS 1024
#define EMBED_SUM_THREADS 128

/* keys (n2) := the sorted keys of positions [0, N), padded with UINT64_MAX to n2, a power of
 * two. One block: a bitonic network over n2 keys, log2(n2) (log2(n2) + 1) / 2 passes with a
 * barrier each (91 at N = 8192); every pass is n2 / 2 independent compare-exchanges. Passes
 * whose pairs lie within aligned tiles of EMBED_SORT_TILE keys (the first log2(tile) stages,
 * then the last log2(tile) passes of every later stage) run on a tile in shared memory, loaded
 * and stored once per run of them: a thread's chain of global accesses is then a few per tile
 * per stage instead of four per pass. */
#define EMBED_SORT_TILE 4096 /* 32 KiB of keys */

/* pass (k, j) of the network on the tile s of `tile` keys starting at key `base` */
__device__ __forceinline__ void embed_sort_tile_pass(unsigned long long *s, int base, int tile,
                                                     int k, int j) {
    for (int x = threadIdx.x; x < tile / 2; x += blockDim.x) {
        // x-th pair of this pass: i has bit j clear, partner i + j
        int i = (x / j) * 2 * j + x % j, l = i + j;
        unsigned long long a = s[i], b = s[l];
        int up = ((base + i) & k) == 0;
        if ((a > b) == up) {
            s[i] = b;
            s[l] = a;
        }
    }
}

__global__ void embed_sort_kernel(unsigned long long *keys, const int32_t *ids, int N, int n2) {
    __shared__ unsigned long long s[EMBED_SORT_TILE];
    int tile = min(n2, EMBED_SORT_TILE);
    /* stages 2 .. tile: each tile sorted in shared memory, the keys built on loading */
    for (int base = 0; base < n2; base += tile) {
        for (int i = threadIdx.x; i < tile; i += blockDim.x) {
            int g = base + i;
            s[i] = g < N ? ((unsigned long long)(uint32_t)ids[g] << 32) | (unsigned)g : ~0ull;
        }
        __syncthreads();
        for (int k = 2; k <= tile; k <<= 1) {
            for (int j = k >> 1; j > 0; j >>= 1) {
                embed_sort_tile_pass(s, base, tile, k, j);
                __syncthreads();
            }
        }
        for (int i = threadIdx.x; i < tile; i += blockDim.x)
            keys[base + i] = s[i];
        __syncthreads();
    }
    /* later stages: the passes with pairs across tiles in global memory, the rest per tile */
    for (int k = 2 * tile; k <= n2; k <<= 1) {
        for (int j = k >> 1; j >= tile; j >>= 1) {
            for (int x = threadIdx.x; x < n2 / 2; x += blockDim.x) {
                int i = (x / j) * 2 * j + x % j, l = i + j;
                unsigned long long a = keys[i], b = keys[l];
                int up = (i & k) == 0;
                if ((a > b) == up) {
                    keys[i] = b;
                    keys[l] = a;
                }
            }
            __syncthreads();
        }
        for (int base = 0; base < n2; base += tile) {
            for (int i = threadIdx.x; i < tile; i += blockDim.x)
                s[i] = keys[base + i];
            __syncthreads();
            for (int j = tile >> 1; j > 0; j >>= 1) {
                embed_sort_tile_pass(s, base, tile, k, j);
                __syncthreads();
            }
            for (int i = threadIdx.x; i < tile; i += blockDim.x)
                keys[base + i] = s[i];
            __syncthreads();
        }
    }
}

/* dwte (V,C) += the fp32 sum of dout over the positions of each token, from the sorted keys.
 * Block x takes the EMBED_ROWS_KEYS (K) sorted keys from x K and every run of equal ids that
 * starts among them; a run may go on past the group, and its thread reads on until the id
 * changes. A thread takes one piece of VEC columns (16 bytes when row_pieces_ok, else one
 * element), sums the run's rows into it in key order in fp32 and adds into dwte once: the
 * same sums in the same order as one block per key. grid (N / K, column tiles).
 * Why groups: with one block per key (grid (N, C/128)) most blocks found that their key did
 * not start a run and returned at once; the ende-1024 micro-batch's 65536 blocks ran in 31
 * waves for 50 MB of traffic, 63 us on an H100 (MODEL, tests/bench/gpu_model.c) over its 15 us
 * of DRAM traffic. N / K blocks of whole rows run in one or two waves, priced at their DRAM
 * traffic: 15.5 us on an H100, 56.5 us on a V100 (MODEL). The block stages its keys, with
 * the one before (does the first start a run?) and the one after (does the last run go on?),
 * in shared memory once, so a thread's chain of global accesses is the rows of its runs and
 * one load and one store per run. */
#define EMBED_ROWS_KEYS 4
template <typename S, int VEC>
__global__ void __launch_bounds__(EMBED_SUM_THREADS)
    embed_rows_kernel(S *dwte, const S *dout, const unsigned long long *keys, int N, int C) {
    /* keys x0 - 1 .. x0 + K, ~0 outside [0, N): an id no token has (ids are int32, >= 0) */
    __shared__ unsigned long long key_s[EMBED_ROWS_KEYS + 2];
    int x0 = blockIdx.x * EMBED_ROWS_KEYS;
    if (threadIdx.x < EMBED_ROWS_KEYS + 2) {
        int y = x0 - 1 + (int)threadIdx.x;
        key_s[threadIdx.x] = y >= 0 && y < N ? keys[y] : ~0ull;
    }
    __syncthreads();
    int c = (blockIdx.y * blockDim.x + threadIdx.x) * VEC;
    if (c >= C) return;
    for (int k = 1; k <= EMBED_ROWS_KEYS && x0 + k - 1 < N; k++) {
        uint32_t id = (uint32_t)(key_s[k] >> 32);
        if ((uint32_t)(key_s[k - 1] >> 32) == id) continue; /* not the first key of its run */
        float acc[VEC];
        ROW_UNROLL
        for (int j = 0; j < VEC; j++)
            acc[j] = 0.f;
        for (int y = x0 + k - 1;; y++) {
            int i = y - x0 + 1;
            unsigned long long key = i < EMBED_ROWS_KEYS + 2 ? key_s[i] : y < N ? keys[y] : ~0ull;
            if ((uint32_t)(key >> 32) != id) break;
            float f[VEC];
            unpack<VEC, S>(f, ld_piece<VEC>(dout + (size_t)(uint32_t)key * C + c));
            ROW_UNROLL
            for (int j = 0; j < VEC; j++)
                acc[j] += f[j];
        }
        S *d = dwte + (size_t)id * C + c;
        float f[VEC];
        unpack<VEC, S>(f, ld_piece<VEC>(d));
        ROW_UNROLL
        for (int j = 0; j < VEC; j++)
            f[j] += acc[j];
        st_piece<VEC>(d, pack<VEC, S>(f));
    }
}

/* the launch of embed_rows_kernel for dtable (rows,C) from the N sorted keys */
template <typename S>
static void cuda_embed_rows(S *dtable, const S *dout, const unsigned long long *keys, int N,
                            int C) {
    constexpr int W = row_vec<S>::n;
    bool vec = row_pieces_ok<S>((size_t)C, dtable, dout);
    int pieces = vec ? C / W : C;
    /* threads: the pieces of a row in whole warps, at most EMBED_SUM_THREADS */
    int warps = (pieces + 31) / 32;
    unsigned threads = warps * 32 < EMBED_SUM_THREADS ? (unsigned)warps * 32 : EMBED_SUM_THREADS;
    dim3 grid(cuda_blocks((size_t)N, EMBED_ROWS_KEYS), cuda_blocks((size_t)pieces, threads));
    if (vec)
        XLMC_LAUNCH((embed_rows_kernel<S, W>), grid, threads, 0, g_cuda.stream)(dtable, dout, keys,
                                                                                N, C);
    else
        XLMC_LAUNCH((embed_rows_kernel<S, 1>), grid, threads, 0, g_cuda.stream)(dtable, dout, keys,
                                                                                N, C);
    cudaLaunchCheck();
}

/* ---- language-embedding backward: masked column sums ----
 * partial (chunks, NL, C) fp32: block (column tile, chunk) sums, per language, the rows of its
 * COLSUM_ROWS-row chunk that carry that language; finish adds the chunks in order and rounds
 * once into dwlang. The CPU backend sums in the same chunks and the same order (each
 * language's rows in row order from 0, then the chunks in order), so both give the same bits.
 * Those sums are serial; the loads need not be: the block's EMBED_LANG_THREADS threads first
 * copy the chunk's EMBED_LANG_COLS columns into shared memory, a few 16-byte pieces each, and
 * the serial sums then read shared memory only. A thread's chain of global accesses is a few
 * loads instead of one per row of the chunk (256), which on a GPU costs a memory latency
 * each: 74 us for the ende-1024 micro-batch on an H100 (MODEL, tests/bench/gpu_model.c),
 * over its 5 us of DRAM traffic. The finish stages the chunks in the same way. */
#define EMBED_LANG_THREADS 256
#define EMBED_LANG_COLS 32 /* 256 rows x 32 columns: 16 KiB of fp16, 32 KiB of fp32 */
/* thread (column c, slot l0) sums languages l0, l0 + EMBED_LANG_SLOTS, ... of column c */
#define EMBED_LANG_SLOTS (EMBED_LANG_THREADS / EMBED_LANG_COLS)
static_assert(EMBED_LANG_COLS % 8 == 0, "whole 16-byte pieces of fp16 and fp32 per tile row");
template <typename S, int VEC>
__global__ void __launch_bounds__(EMBED_LANG_THREADS)
    embed_lang_partial_kernel(float *partial, const S *dout, const int32_t *langs, int N, int C,
                              int NL) {
    constexpr int PER = EMBED_LANG_COLS / VEC; /* pieces of a tile row */
    __shared__ int lang_s[COLSUM_ROWS];
    __shared__ S tile[COLSUM_ROWS][EMBED_LANG_COLS];
    int c0 = blockIdx.x * EMBED_LANG_COLS, cols = min(C - c0, EMBED_LANG_COLS);
    int n0 = blockIdx.y * COLSUM_ROWS, rows = min(N - n0, COLSUM_ROWS);
    for (int r = threadIdx.x; r < rows; r += blockDim.x)
        lang_s[r] = langs[n0 + r];
    /* piece p: row p / PER, columns (p % PER) VEC.. (VEC > 1: C a multiple of VEC, whole) */
    for (int p = threadIdx.x; p < rows * PER; p += blockDim.x) {
        int r = p / PER, j = p % PER * VEC;
        if (j >= cols) continue;
        float f[VEC];
        unpack<VEC, S>(f, ld_piece<VEC>(dout + (size_t)(n0 + r) * C + c0 + j));
        ROW_UNROLL
        for (int i = 0; i < VEC; i++)
            st(&tile[r][j + i], f[i]); /* exact: f came from storage */
    }
    __syncthreads();
    int c = threadIdx.x % EMBED_LANG_COLS;
    if (c >= cols) return;
    for (int l = threadIdx.x / EMBED_LANG_COLS; l < NL; l += EMBED_LANG_SLOTS) {
        float a = 0.f;
        for (int r = 0; r < rows; r++)
            if (lang_s[r] == l) a += ld(&tile[r][c]);
        partial[((size_t)blockIdx.y * NL + l) * C + c0 + c] = a;
    }
}

/* out (n) += the sum over k of partial (chunks, n), k in order from 0 (colsum_finish_kernel's
 * sums): block of EMBED_LANG_THREADS threads takes EMBED_LANG_COLS columns; its warps copy up
 * to EMBED_LANG_STAGE chunks of them at a time into shared memory, one chunk per warp, and
 * the first warp adds them up. */
#define EMBED_LANG_STAGE 64 /* chunks staged at a time (8 KiB), 16384 rows */
template <typename S>
__global__ void __launch_bounds__(EMBED_LANG_THREADS)
    embed_lang_finish_kernel(S *out, const float *partial, int chunks, size_t n) {
    __shared__ float stage[EMBED_LANG_STAGE][EMBED_LANG_COLS];
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    size_t c = (size_t)blockIdx.x * EMBED_LANG_COLS + lane;
    float acc = 0.f;
    for (int k0 = 0; k0 < chunks; k0 += EMBED_LANG_STAGE) {
        int m = min(chunks - k0, EMBED_LANG_STAGE);
        __syncthreads(); /* the previous stage is summed */
        if (c < n)
            for (int k = warp; k < m; k += warps)
                stage[k][lane] = partial[(size_t)(k0 + k) * n + c];
        __syncthreads();
        if (warp == 0 && c < n)
            for (int k = 0; k < m; k++)
                acc += stage[k][lane];
    }
    if (warp == 0 && c < n) st(out + c, ld(out + c) + acc);
}

template <typename S>
static void cuda_embed_forward(void *out, const int32_t *ids, const int32_t *langs,
                               const int32_t *pos, const void *wte, const void *wpe,
                               const void *wlang, int B, int T, int C) {
    size_t n = (size_t)B * T * C;
    if (!n) return;
    constexpr int W = row_vec<S>::n;
    if (row_pieces_ok<S>((size_t)C, out, wte, wpe, wlang))
        XLMC_LAUNCH((embed_forward_kernel<S, W>), cuda_blocks(n / W, 256), 256, 0, g_cuda.stream)(
            (S *)out, ids, langs, pos, (const S *)wte, (const S *)wpe, (const S *)wlang, T, C, n);
    else
        XLMC_LAUNCH((embed_forward_kernel<S, 1>), cuda_blocks(n, 256), 256, 0, g_cuda.stream)(
            (S *)out, ids, langs, pos, (const S *)wte, (const S *)wpe, (const S *)wlang, T, C, n);
    cudaLaunchCheck();
}

template <typename S>
static void cuda_embed_backward(void *dwte, void *dwpe, void *dwlang, const void *dout,
                                const int32_t *ids, const int32_t *langs, const int32_t *pos, int B,
                                int T, int C, int V, int NL) {
    int N = B * T;
    (void)V; /* ids < V and langs < NL are the caller's contract */
    if (!N || !C) return;
    int n2 = 1;
    while (n2 < N)
        n2 <<= 1;
    /* keys (n2) in the fp32 scratch, two floats each (cudaMalloc aligns to 256 bytes) */
    unsigned long long *keys = (unsigned long long *)cuda_scratch(2 * (size_t)n2);
    XLMC_LAUNCH(embed_sort_kernel, 1, EMBED_SORT_THREADS, 0, g_cuda.stream)(keys, ids, N, n2);
    cudaLaunchCheck();
    cuda_embed_rows<S>((S *)dwte, (const S *)dout, keys, N, C);
    if (pos) { // dwpe by position id, sorted and summed as the tokens (the sort reuses keys)
        XLMC_LAUNCH(embed_sort_kernel, 1, EMBED_SORT_THREADS, 0, g_cuda.stream)(keys, pos, N, n2);
        cudaLaunchCheck();
        cuda_embed_rows<S>((S *)dwpe, (const S *)dout, keys, N, C);
    } else { // dwpe (T rows of P,C) += sum over the batch: dout viewed as (B, T*C) column sums
        cuda_column_sum_add<S>((S *)dwpe, (const S *)dout, B, T * C);
    }
    if (dwlang && NL > 0) {
        int chunks = (N + COLSUM_ROWS - 1) / COLSUM_ROWS;
        float *partial = cuda_scratch((size_t)chunks * NL * C);
        dim3 grid(cuda_blocks(C, EMBED_LANG_COLS), chunks);
        constexpr int W = row_vec<S>::n;
        if (row_pieces_ok<S>((size_t)C, dout))
            XLMC_LAUNCH((embed_lang_partial_kernel<S, W>), grid, EMBED_LANG_THREADS, 0,
                        g_cuda.stream)(partial, (const S *)dout, langs, N, C, NL);
        else
            XLMC_LAUNCH((embed_lang_partial_kernel<S, 1>), grid, EMBED_LANG_THREADS, 0,
                        g_cuda.stream)(partial, (const S *)dout, langs, N, C, NL);
        cudaLaunchCheck();
        // the partials viewed as (chunks, NL*C): their column sums, added into dwlang (NL,C)
        size_t n = (size_t)NL * C;
        XLMC_LAUNCH(embed_lang_finish_kernel<S>, cuda_blocks(n, EMBED_LANG_COLS),
                    EMBED_LANG_THREADS, 0, g_cuda.stream)((S *)dwlang, partial, chunks, n);
        cudaLaunchCheck();
    }
}

CUDA_EXPORT_OP(embed_forward)
CUDA_EXPORT_OP(embed_backward)
