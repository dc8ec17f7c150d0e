/* classifier.cu — the fused output layer: output bias, softmax + cross-entropy + logits
 * gradient in place, one block per row, probabilities never stored; the bias gradient is the
 * deterministic column sum of matmul_backward. */
#include "kernels/cuda/common.cuh"

#include <math.h>

#define CLS_THREADS 256
/* The classifier's blocks: 512 threads, each holding CLS_CACHE 16-byte pieces of its row in
 * registers (64 of them; about 122 in all, so no spill under the 128 a 512-thread block
 * allows: 1024 threads with 8 pieces spilled), so a row of up to 65536 halves (XLM's 64768
 * padded columns) is read from memory once for both softmax statistics and the gradient;
 * longer rows are read again. The 16 independent loads per thread keep memory busy at one
 * block per SM. */
#define CLS_ROW_THREADS 512
#define CLS_CACHE 16

/* piece q (columns q VEC ..) of row x, with bias (V) added to its columns < V and rounded to
 * storage, as the op stores x + bias; the columns >= V keep their bits */
template <typename S, int VEC>
__device__ __forceinline__ raw16 cls_piece(const S *x, const S *bias, int q, int V) {
    raw16 r = ld_piece<VEC>(x + (size_t)q * VEC);
    if (!bias) return r;
    int c0 = q * VEC;
    float f[VEC], b[VEC];
    unpack<VEC, S>(f, r);
    if (c0 + VEC <= V) {
        unpack<VEC, S>(b, ld_piece<VEC>(bias + c0));
    } else { /* the piece across V: bias has V elements */
        ROW_UNROLL
        for (int j = 0; j < VEC; j++)
            b[j] = c0 + j < V ? ld(bias + c0 + j) : 0.f;
    }
    ROW_UNROLL
    for (int j = 0; j < VEC; j++)
        if (c0 + j < V) f[j] += b[j];
    return pack<VEC, S>(f);
}

// losses (N) fp32, logits (N,Vp) storage, columns < V (+= bias (V) or NULL first) overwritten
// by dscale * (softmax - onehot), the padding columns V..Vp-1 by 0 (with grad; dscale is
// vars->dscale, which the host set non-zero).
// One block per row, in pieces of VEC columns (VEC > 1: Vp a multiple of VEC, 16-byte
// aligned rows and bias). The row is read once for max and sum (from registers) and written
// once; with dscale 0 and a bias, the row gets x + bias (evaluation's argmax reads it).
template <typename S, int VEC>
__global__ void __launch_bounds__(CLS_ROW_THREADS)
    classifier_kernel(float *losses, S *logits, const S *bias, const int32_t *targets, int V,
                      int Vp, int grad, const struct cuda_vars *vars) {
    __shared__ float red[32];
    /* grad: dscale from the device vars (cuda_vars_for), so a graph replays any scale */
    float dscale = grad ? vars->dscale : 0.f;
    S *x = logits + (size_t)blockIdx.x * Vp;
    int target = targets[blockIdx.x];
    int nq = (V + VEC - 1) / VEC; /* pieces holding a column < V */
    auto load = [&](int q) { return cls_piece<S, VEC>(x, bias, q, V); };
    if (dscale != 0.f) /* the pieces wholly past V (the piece across V is written below) */
        for (int q = nq + (int)threadIdx.x; q < Vp / VEC; q += blockDim.x)
            st_piece<VEC>(x + (size_t)q * VEC, raw16{});
    if (target < 0) { /* ignored row: the whole block agrees, so no barrier is split */
        if (threadIdx.x == 0) losses[blockIdx.x] = 0.f;
        for (int q = threadIdx.x; q < nq; q += blockDim.x)
            if (dscale != 0.f)
                st_piece<VEC>(x + (size_t)q * VEC, raw16{});
            else if (bias)
                st_piece<VEC>(x + (size_t)q * VEC, load(q));
        return;
    }
    /* the target's logit (with its bias, rounded as stored), read before any thread writes */
    float xt = 0.f;
    if (threadIdx.x == 0) {
        S t;
        st(&t, ld(x + target) + (bias ? ld(bias + target) : 0.f));
        xt = ld(&t);
    }
    raw16 cache[CLS_CACHE] = {};
    float m = -INFINITY;
    row_pass<CLS_CACHE, true>(cache, nq, load, [&](int q, raw16 r) {
        float f[VEC];
        unpack<VEC, S>(f, r);
        ROW_UNROLL
        for (int j = 0; j < VEC; j++)
            if (q * VEC + j < V) m = fmaxf(m, f[j]);
    });
    m = block_max(m, red);
    float sum = 0.f;
    row_pass<CLS_CACHE, false>(cache, nq, load, [&](int q, raw16 r) {
        float f[VEC];
        unpack<VEC, S>(f, r);
        ROW_UNROLL
        for (int j = 0; j < VEC; j++)
            if (q * VEC + j < V) sum += expf(f[j] - m);
    });
    float lse = m + logf(block_sum(sum, red));
    if (threadIdx.x == 0) losses[blockIdx.x] = lse - xt;
    if (dscale == 0.f) {
        if (bias)
            row_pass<CLS_CACHE, false>(
                cache, nq, load, [&](int q, raw16 r) { st_piece<VEC>(x + (size_t)q * VEC, r); });
        return;
    }
    row_pass<CLS_CACHE, false>(cache, nq, load, [&](int q, raw16 r) {
        float f[VEC];
        unpack<VEC, S>(f, r);
        ROW_UNROLL
        for (int j = 0; j < VEC; j++) {
            int c = q * VEC + j;
            f[j] = c < V ? dscale * (expf(f[j] - lse) - (c == target ? 1.f : 0.f)) : 0.f;
        }
        st_piece<VEC>(x + (size_t)q * VEC, pack<VEC, S>(f));
    });
}

template <typename S>
static void cuda_classifier(float *losses, void *logits, const void *bias, void *dbias,
                            const int32_t *targets, int N, int V, int Vp, float dscale) {
    if (!N) return;
    constexpr int VEC = row_vec<S>::n;
    bool wide = row_pieces_ok<S>((size_t)Vp, logits, bias);
    int grad = dscale != 0.f;
    const struct cuda_vars *vars = grad ? cuda_vars_for(NULL, 1, dscale) : g_cuda.vars;
    /* whole warps covering the row's pieces, at most CLS_ROW_THREADS (short rows: no idle
     * warps) */
    int pieces = wide ? Vp / VEC : Vp, warps = (pieces + 31) / 32;
    warps = warps < 1 ? 1 : warps < CLS_ROW_THREADS / 32 ? warps : CLS_ROW_THREADS / 32;
    unsigned threads = 32u * (unsigned)warps;
    if (wide)
        XLMC_LAUNCH((classifier_kernel<S, VEC>), N, threads, 0, g_cuda.stream)(
            losses, (S *)logits, (const S *)bias, targets, V, Vp, grad, vars);
    else
        XLMC_LAUNCH((classifier_kernel<S, 1>), N, threads, 0, g_cuda.stream)(
            losses, (S *)logits, (const S *)bias, targets, V, Vp, grad, vars);
    cudaLaunchCheck();
    if (dbias && dscale != 0.f) cuda_column_sum_add<S>((S *)dbias, (const S *)logits, N, V, Vp);
}

CUDA_EXPORT_OP(classifier)

/* ---- the predicted rows (MLM, TLM) and evaluation ---- */

// out (M,C) = inp rows index[m]; grid-stride over M*C
template <typename S>
__global__ void gather_rows_kernel(S *out, const S *inp, const int32_t *index, int C, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    size_t m = i / C;
    out[i] = inp[(size_t)index[m] * C + i % C];
}

template <typename S>
__global__ void scatter_rows_kernel(S *out, const S *inp, const int32_t *index, int C, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    size_t m = i / C;
    out[(size_t)index[m] * C + i % C] = inp[i];
}

// one block per row: the first maximum (lowest column among equal maxima), as the CPU backend
template <typename S>
__global__ void argmax_correct_kernel(int32_t *correct, const S *logits, const int32_t *targets,
                                      int V, int Vp) {
    __shared__ float sv[CLS_THREADS];
    __shared__ int si[CLS_THREADS];
    const S *x = logits + (size_t)blockIdx.x * Vp;
    float best = -INFINITY;
    int at = V; // no column yet (rows of NaN: a diverged model, the backends may differ)
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        float v = ld(x + i);
        if (at == V || v > best) {
            best = v;
            at = i;
        }
    }
    int me = (int)threadIdx.x;
    sv[me] = best;
    si[me] = at;
    __syncthreads();
    for (int w = (int)blockDim.x / 2; w > 0; w /= 2) {
        if (me < w) {
            float ov = sv[me + w];
            int oi = si[me + w];
            if (oi < V && (si[me] == V || ov > sv[me] || (ov == sv[me] && oi < si[me]))) {
                sv[me] = ov;
                si[me] = oi;
            }
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        int t = targets[blockIdx.x];
        correct[blockIdx.x] = t >= 0 && si[0] == t;
    }
}

template <typename S>
static void cuda_gather_rows(void *out, const void *inp, const int32_t *index, int M, int C) {
    size_t n = (size_t)M * C;
    if (!n) return;
    XLMC_LAUNCH(gather_rows_kernel<S>, cuda_blocks(n, 256), 256, 0,
                g_cuda.stream)((S *)out, (const S *)inp, index, C, n);
    cudaLaunchCheck();
}

template <typename S>
static void cuda_scatter_rows(void *out, const void *inp, const int32_t *index, int N, int M,
                              int C) {
    if (cuda_call_admit("scatter_memset", out, (size_t)N * C * sizeof(S)))
        cudaCheck(cudaMemsetAsync(out, 0, (size_t)N * C * sizeof(S), g_cuda.stream));
    size_t n = (size_t)M * C;
    if (!n) return;
    XLMC_LAUNCH(scatter_rows_kernel<S>, cuda_blocks(n, 256), 256, 0,
                g_cuda.stream)((S *)out, (const S *)inp, index, C, n);
    cudaLaunchCheck();
}

template <typename S>
static void cuda_argmax_correct(int32_t *correct, const void *logits, const int32_t *targets, int N,
                                int V, int Vp) {
    if (!N) return;
    XLMC_LAUNCH(argmax_correct_kernel<S>, N, CLS_THREADS, 0,
                g_cuda.stream)(correct, (const S *)logits, targets, V, Vp);
    cudaLaunchCheck();
}

CUDA_EXPORT_OP(gather_rows)
CUDA_EXPORT_OP(scatter_rows)
CUDA_EXPORT_OP(argmax_correct)
