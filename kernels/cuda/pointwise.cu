/* pointwise.cu — erf-GELU (alone and fused with the FFN bias), residual add, dropout (Philox
 * masks shared with the CPU; alone or fused with the residual add) and the padding mask. */
#include "kernels/cuda/common.cuh"

#define PW_THREADS 256

template <typename S>
__global__ void gelu_forward_kernel(S *out, const S *inp, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float x = ld(inp + i);
    st(out + i, 0.5f * x * (1.f + erff(x * 0.70710678118654752f)));
}

template <typename S>
__global__ void gelu_backward_kernel(S *dinp, const S *inp, const S *dout, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float x = ld(inp + i);
    float cdf = 0.5f * (1.f + erff(x * 0.70710678118654752f));
    float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
    st(dinp + i, ld(dout + i) * (cdf + x * pdf));
}

// out = a + b, PW_VEC elements per thread (out may be a or b)
template <typename S>
__global__ void residual_kernel(S *out, const S *a, const S *b, size_t n, bool vec) {
    int lane;
    size_t base = pw_base(&lane);
    if (base >= n) return;
    float x[PW_VEC], y[PW_VEC];
    ld8(x, a, vec, base, lane, n);
    ld8(y, b, vec, base, lane, n);
    for (int j = 0; j < PW_VEC; j++)
        x[j] += y[j];
    st8(out, x, vec, base, lane, n);
}

/* Loops over the 4 elements of a thread are unrolled by nvcc, which keeps the Philox words in
 * registers; g++ (cudasim) knows no such pragma. */
#ifdef __CUDACC__
#define PW_UNROLL _Pragma("unroll")
#else
#define PW_UNROLL
#endif

/* out (B, row_len) = res + dropout(x + bias) (res NULL: dropout(x + bias); bias (C) NULL: none,
 * else added in fp32 before anything is rounded); row r is global row row0 + r.
 * A thread takes 4 consecutive elements: when rows are a multiple of 4 long, its 4 dropout
 * words are the 4 outputs of one Philox call (dropout_keep draws a call per element and keeps
 * one word of it). A kept element is rounded to storage before the add, as the separate
 * dropout op stores it. out may be x or res (each element is read before it is written). */
template <typename S>
__global__ void dropout_residual_kernel(S *out, const S *res, const S *x, const S *bias, int C,
                                        size_t row_len, size_t n, int drop, float scale,
                                        uint32_t threshold, const struct cuda_vars *vars,
                                        uint32_t tensor, bool vec) {
    size_t i0 = 4 * ((size_t)blockIdx.x * blockDim.x + threadIdx.x);
    if (i0 >= n) return;
    /* the key's seed, step and row0 (cuda_vars_for): read only when there is a dropout */
    uint64_t seed = drop ? vars->seed : 0, step = drop ? vars->step : 0;
    uint32_t row0 = drop ? vars->row0 : 0;
    int whole = row_len % 4 == 0;
    struct philox4 r = {{0u, 0u, 0u, 0u}};
    if (drop && whole)
        r = philox4x32_10((uint32_t)((i0 % row_len) >> 2), row0 + (uint32_t)(i0 / row_len), tensor,
                          (uint32_t)step, (uint32_t)seed, (uint32_t)(seed >> 32));
    /* with vec (rows of a multiple of 4, 16-byte aligned pointers) one access of 4 elements
     * per operand: a warp's accesses are contiguous */
    bool wide = vec && i0 + 4 <= n;
    float xv[4], rv[4] = {0.f, 0.f, 0.f, 0.f};
    if (wide) {
        ld4(xv, x + i0);
        if (res) ld4(rv, res + i0);
    } else {
        PW_UNROLL
        for (int j = 0; j < 4; j++) {
            xv[j] = i0 + j < n ? ld(x + i0 + j) : 0.f;
            if (res) rv[j] = i0 + j < n ? ld(res + i0 + j) : 0.f;
        }
    }
    PW_UNROLL
    for (int j = 0; j < 4; j++) {
        size_t i = i0 + j;
        float v = xv[j];
        if (bias && i < n) v += ld(bias + i % (size_t)C);
        if (drop && i < n) {
            int keep = whole ? r.v[j] >= threshold
                             : dropout_keep(seed, step, row0 + (uint32_t)(i / row_len), tensor,
                                            i % row_len, threshold);
            S t;
            st(&t, keep ? v * scale : 0.f);
            v = ld(&t);
        }
        xv[j] = res ? rv[j] + v : v;
    }
    if (wide) {
        st4(out + i0, xv);
    } else {
        PW_UNROLL
        for (int j = 0; j < 4; j++)
            if (i0 + j < n) st(out + i0 + j, xv[j]);
    }
}

// x (B,T,C): zero positions t >= lengths[b] (with vec a lane's 8 elements share a row)
template <typename S>
__global__ void mask_padding_kernel(S *x, const int32_t *lengths, int T, int C, size_t n,
                                    bool vec) {
    int lane;
    size_t base = pw_base(&lane);
    if (base >= n) return;
    if (vec) { /* a piece lies in one row: one decision per piece */
        for (int j = 0; j < PW_VEC; j += PW_PIECE) {
            size_t i = pw_idx(vec, base, lane, j), bt = i / C;
            if (i < n && (int)(bt % T) >= lengths[bt / T]) {
                const float zero[PW_PIECE] = {0.f};
                st4(x + i, zero);
            }
        }
        return;
    }
    for (int j = 0; j < PW_VEC; j++) {
        size_t i = pw_idx(vec, base, lane, j), bt = i / C;
        if (i < n && (int)(bt % T) >= lengths[bt / T]) st(x + i, 0.f);
    }
}

template <typename S>
static void cuda_gelu_forward(void *out, const void *inp, size_t n) {
    if (!n) return;
    XLMC_LAUNCH(gelu_forward_kernel<S>, cuda_blocks(n, PW_THREADS), PW_THREADS, 0,
                g_cuda.stream)((S *)out, (const S *)inp, n);
    cudaLaunchCheck();
}
template <typename S>
static void cuda_gelu_backward(void *dinp, const void *inp, const void *dout, size_t n) {
    if (!n) return;
    XLMC_LAUNCH(gelu_backward_kernel<S>, cuda_blocks(n, PW_THREADS), PW_THREADS, 0,
                g_cuda.stream)((S *)dinp, (const S *)inp, (const S *)dout, n);
    cudaLaunchCheck();
}
template <typename S>
static void cuda_residual_forward(void *out, const void *a, const void *b, size_t n) {
    if (!n) return;
    XLMC_LAUNCH(residual_kernel<S>, cuda_blocks((n + PW_VEC - 1) / PW_VEC, PW_THREADS), PW_THREADS,
                0, g_cuda.stream)((S *)out, (const S *)a, (const S *)b, n, pw_vec_ok(n, out, a, b));
    cudaLaunchCheck();
}
template <typename S>
static void cuda_dropout_residual(void *out, const void *res, const void *x, const void *bias,
                                  int B, int T, int C, float p, const struct dropout_key *key) {
    size_t n = (size_t)B * T * C;
    if (!n) return;
    int drop = p > 0.f;
    const struct cuda_vars *vars = drop ? cuda_vars_for(key, 0, 0.f) : g_cuda.vars;
    XLMC_LAUNCH(dropout_residual_kernel<S>, cuda_blocks((n + 3) / 4, PW_THREADS), PW_THREADS, 0,
                g_cuda.stream)((S *)out, (const S *)res, (const S *)x, (const S *)bias, C,
                               (size_t)T * C, n, drop, drop ? 1.f / (1.f - p) : 1.f,
                               drop ? dropout_threshold(p) : 0u, vars, drop ? key->tensor : 0,
                               ((size_t)T * C) % 4 == 0 && pw_vec_ok(0, out, res, x));
    cudaLaunchCheck();
}
template <typename S>
static void cuda_dropout(void *x, int B, int T, int C, float p, const struct dropout_key *key) {
    if (p == 0.f) return;
    cuda_dropout_residual<S>(x, NULL, x, NULL, B, T, C, p, key);
}
template <typename S>
static void cuda_mask_padding(void *x, const int32_t *lengths, int B, int T, int C) {
    size_t n = (size_t)B * T * C;
    if (!n) return;
    XLMC_LAUNCH(mask_padding_kernel<S>, cuda_blocks((n + PW_VEC - 1) / PW_VEC, PW_THREADS),
                PW_THREADS, 0, g_cuda.stream)((S *)x, lengths, T, C, n, pw_vec_ok((size_t)C, x));
    cudaLaunchCheck();
}

/* ---- bias + GELU of the FFN, fused ---- */
/* PW_VEC elements per thread; with vec they lie in one row (F % PW_VEC == 0) */
template <typename S>
__global__ void bias_gelu_forward_kernel(S *out, const S *inp, const S *bias, int F, size_t n,
                                         bool vec) {
    int lane;
    size_t base = pw_base(&lane);
    if (base >= n) return;
    float x[PW_VEC], b[PW_VEC];
    ld8(x, inp, vec, base, lane, n);
    ld_bias8(b, bias, F, vec, base, lane, n);
    for (int j = 0; j < PW_VEC; j++) {
        float v = x[j] + b[j];
        x[j] = 0.5f * v * (1.f + erff(v * 0.70710678118654752f));
    }
    st8(out, x, vec, base, lane, n);
}

template <typename S>
__global__ void bias_gelu_backward_kernel(S *dinp, const S *dout, const S *inp, const S *bias,
                                          int F, size_t n, bool vec) {
    int lane;
    size_t base = pw_base(&lane);
    if (base >= n) return;
    float x[PW_VEC], b[PW_VEC], d[PW_VEC];
    ld8(x, inp, vec, base, lane, n);
    ld8(d, dout, vec, base, lane, n);
    ld_bias8(b, bias, F, vec, base, lane, n);
    for (int j = 0; j < PW_VEC; j++) {
        float v = x[j] + b[j];
        float cdf = 0.5f * (1.f + erff(v * 0.70710678118654752f));
        float pdf = 0.39894228040143268f * expf(-0.5f * v * v);
        d[j] *= cdf + v * pdf;
    }
    st8(dinp, d, vec, base, lane, n); /* dinp may be dout: every element was read above */
}

template <typename S>
static void cuda_bias_gelu_forward(void *out, const void *inp, const void *bias, int N, int F) {
    size_t n = (size_t)N * F;
    if (!n) return;
    XLMC_LAUNCH(bias_gelu_forward_kernel<S>, cuda_blocks((n + PW_VEC - 1) / PW_VEC, PW_THREADS),
                PW_THREADS, 0, g_cuda.stream)((S *)out, (const S *)inp, (const S *)bias, F, n,
                                              pw_vec_ok((size_t)F, out, inp, bias));
    cudaLaunchCheck();
}

/* dinp first, then dbias += its column sums (one GEMV against ones, common.cuh) */
template <typename S>
static void cuda_bias_gelu_backward(void *dinp, void *dbias, const void *dout, const void *inp,
                                    const void *bias, int N, int F) {
    size_t n = (size_t)N * F;
    if (!n) return;
    XLMC_LAUNCH(bias_gelu_backward_kernel<S>, cuda_blocks((n + PW_VEC - 1) / PW_VEC, PW_THREADS),
                PW_THREADS, 0,
                g_cuda.stream)((S *)dinp, (const S *)dout, (const S *)inp, (const S *)bias, F, n,
                               pw_vec_ok((size_t)F, dinp, dout, inp, bias));
    cudaLaunchCheck();
    cuda_bias_grad_add((S *)dbias, (const S *)dinp, N, F);
}

CUDA_EXPORT_OP(gelu_forward)
CUDA_EXPORT_OP(gelu_backward)
CUDA_EXPORT_OP(bias_gelu_forward)
CUDA_EXPORT_OP(bias_gelu_backward)
CUDA_EXPORT_OP(residual_forward)
CUDA_EXPORT_OP(dropout)
CUDA_EXPORT_OP(dropout_residual)
CUDA_EXPORT_OP(mask_padding)
