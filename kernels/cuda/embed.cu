/* embed.cu — word + position + language embeddings, forward and a deterministic backward. */
#include "kernels/cuda/common.cuh"

// out (B,T,C), ids/langs (B,T), wte (V,C), wpe (P,C), wlang (NL,C) or NULL
template <typename S>
__global__ void embed_forward_kernel(S *out, const int32_t *ids, const int32_t *langs,
                                     const S *wte, const S *wpe, const S *wlang, int T, int C,
                                     size_t n)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    size_t bt = i / C;
    int c = (int)(i % C), t = (int)(bt % T);
    float v = ld(wte + (size_t)ids[bt] * C + c) + ld(wpe + (size_t)t * C + c);
    if (wlang) v += ld(wlang + (size_t)langs[bt] * C + c);
    st(out + i, v);
}

/* One thread per column c walks the positions in order and adds into the row of each token:
 * no two threads touch the same element, and the order of the additions is fixed, so the
 * result is bit-identical from run to run (no float atomics). dtable (rows,C) +=. */
template <typename S>
__global__ void embed_table_backward_kernel(S *dtable, const S *dout, const int32_t *index,
                                            int N, int C)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    for (int n = 0; n < N; n++) {
        S *d = dtable + (size_t)index[n] * C + c;
        st(d, ld(d) + ld(dout + (size_t)n * C + c));
    }
}

template <typename S>
static void cuda_embed_forward(void *out, const int32_t *ids, const int32_t *langs,
                               const void *wte, const void *wpe, const void *wlang, int B, int T,
                               int C)
{
    size_t n = (size_t)B * T * C;
    if (!n) return;
    XLMC_LAUNCH(embed_forward_kernel<S>, cuda_blocks(n, 256), 256, 0, g_cuda.stream)(
        (S *)out, ids, langs, (const S *)wte, (const S *)wpe, (const S *)wlang, T, C, n);
    cudaLaunchCheck();
}

template <typename S>
static void cuda_embed_backward(void *dwte, void *dwpe, void *dwlang, const void *dout,
                                const int32_t *ids, const int32_t *langs, int B, int T, int C,
                                int V, int NL)
{
    int N = B * T;
    (void)V;   /* ids < V and langs < NL are the caller's contract */
    (void)NL;
    if (!N || !C) return;
    XLMC_LAUNCH(embed_table_backward_kernel<S>, cuda_blocks(C, 64), 64, 0, g_cuda.stream)(
        (S *)dwte, (const S *)dout, ids, N, C);
    cudaLaunchCheck();
    // dwpe (T rows of P,C) += sum over the batch: dout viewed as (B, T*C) column sums
    cuda_column_sum_add<S>((S *)dwpe, (const S *)dout, B, T * C);
    if (dwlang) {
        XLMC_LAUNCH(embed_table_backward_kernel<S>, cuda_blocks(C, 64), 64, 0, g_cuda.stream)(
            (S *)dwlang, (const S *)dout, langs, N, C);
        cudaLaunchCheck();
    }
}

CUDA_EXPORT_OP(embed_forward)
CUDA_EXPORT_OP(embed_backward)
