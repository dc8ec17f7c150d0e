/* matmul.cu — linear layers through cuBLAS (fp16 or fp32 inputs, fp32 accumulation).
 * Row-major (N,C) buffers are column-major (C,N) matrices to cuBLAS, so every product below
 * is written for the transposed, column-major view. */
#include "kernels/cuda/common.cuh"

// out (N,OC) = broadcast b (OC): the GEMM then adds into it with beta = 1. PW_VEC elements
// of one row per thread when vec (OC % PW_VEC == 0, aligned pointers). blockIdx.y is the
// member of a batched call: out + y out_stride, b + y b_stride.
template <typename S>
__global__ void bias_broadcast_kernel(S *out, const S *b, int OC, size_t n, bool vec,
                                      size_t out_stride, size_t b_stride) {
    int lane;
    size_t base = pw_base(&lane);
    if (base >= n) return;
    out += blockIdx.y * out_stride;
    b += blockIdx.y * b_stride;
    float v[PW_VEC];
    ld_bias8(v, b, OC, vec, base, lane, n);
    st8(out, v, vec, base, lane, n);
}

// every member's (N,OC) out set to its bias, in one launch
template <typename S>
static void bias_broadcast(void *out, const void *b, int N, int OC, int batch, size_t w_stride,
                           size_t out_stride) {
    size_t n = (size_t)N * OC;
    const S *b1 = (const S *)b + (batch > 1 ? w_stride : 0);
    S *o1 = (S *)out + (batch > 1 ? out_stride : 0);
    dim3 grid(cuda_blocks((n + PW_VEC - 1) / PW_VEC, 256), (unsigned)batch);
    XLMC_LAUNCH(bias_broadcast_kernel<S>, grid, 256, 0, g_cuda.stream)(
        (S *)out, (const S *)b, OC, n, pw_vec_ok((size_t)OC, out, b, o1, b1), out_stride, w_stride);
    cudaLaunchCheck();
}

// C = op(A) op(B) + beta C; A and B in storage, C in storage or (ct CUDA_R_32F) fp32
template <typename S>
static void gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const void *A,
                 int lda, const void *B, int ldb, void *C, int ldc, float beta,
                 cudaDataType_t ct = storage_type<S>::blas) {
    const float alpha = 1.f;
    cudaDataType_t t = storage_type<S>::blas;
    if (!cuda_call_admit("gemm", ta, tb, m, n, k, A, lda, B, ldb, (const void *)C, ldc, beta, t,
                         ct))
        return;
    cublasCheck(cublasGemmEx(g_cuda.blas, ta, tb, m, n, k, &alpha, A, t, lda, B, t, ldb, &beta, C,
                             ct, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

// batch members at strides (elements; 0: shared): C_i = op(A_i) op(B_i) + beta C_i
template <typename S>
static void gemm_batched(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                         const void *A, int lda, size_t sa, const void *B, int ldb, size_t sb,
                         void *C, int ldc, size_t sc, float beta, int batch) {
    const float alpha = 1.f;
    cudaDataType_t t = storage_type<S>::blas;
    if (!cuda_call_admit("gemm_batched", ta, tb, m, n, k, A, lda, sa, B, ldb, sb, (const void *)C,
                         ldc, sc, beta, batch, t))
        return;
    cublasCheck(cublasGemmStridedBatchedEx(
        g_cuda.blas, ta, tb, m, n, k, &alpha, A, t, lda, (long long)sa, B, t, ldb, (long long)sb,
        &beta, C, t, ldc, (long long)sc, batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

/* ---- the bias inside the GEMM's epilogue (cuBLASLt, CUBLASLT_EPILOGUE_BIAS) ----
 * D (m,n) = op(A) op(B) + bias (m) broadcast over D's columns, the sum in fp32 rounded once (as
 * the broadcast + beta = 1 GEMM gave and the CPU backend gives), without the pass that wrote the
 * bias into every row first. Only API of CUDA 11.0's cublasLt.h. The algorithm is chosen by
 * cuBLASLt's heuristic among those without split-K reductions (the same bits every run), for
 * the pointers' alignments, and kept per problem: the heuristic costs host time only. */

// largest power of two <= 256 dividing p: what the algorithm may assume of a pointer
static inline uint32_t lt_align(const void *p) {
    uint32_t a = 256;
    while (a > 1 && (uintptr_t)p % a)
        a /= 2;
    return a;
}

struct lt_key {
    int m, n, k;
    cudaDataType_t t;
    uint32_t align[3]; /* A, B, D (C is D) */
};
// descriptors of D (m,n) = op_T(A) (m,k) op_N(B) (k,n) + bias, column-major, lda = ldb = k; the
// bias pointer is set before each call
struct lt_descs {
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t a, b, d;
    explicit lt_descs(const lt_key &q) {
        int32_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
        uint32_t epi = CUBLASLT_EPILOGUE_BIAS;
        cublasCheck(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
        cublasCheck(
            cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
        cublasCheck(
            cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
        cublasCheck(
            cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
        cublasCheck(cublasLtMatrixLayoutCreate(&a, q.t, (uint64_t)q.k, (uint64_t)q.m, q.k));
        cublasCheck(cublasLtMatrixLayoutCreate(&b, q.t, (uint64_t)q.k, (uint64_t)q.n, q.k));
        cublasCheck(cublasLtMatrixLayoutCreate(&d, q.t, (uint64_t)q.m, (uint64_t)q.n, q.m));
    }
    void set_bias(const void *bias) {
        cublasCheck(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                                   sizeof bias));
    }
};

// a problem's descriptors and the algorithm cuBLASLt's heuristic chose for it (found)
struct lt_plan {
    lt_key key;
    lt_descs *ds;
    int found;
    cublasLtMatmulAlgo_t algo;
};

// the plan of a problem, made the first time it is asked for and kept for the process's life
// (like the backend, which is never torn down: g_cuda.lt is the handle they were made with).
// A model has few shapes; past the table's size a problem gets no plan (NULL) and takes the
// broadcast + GEMM path.
static const lt_plan *lt_plan_for(const lt_key &q, const void *bias) {
    enum { SLOTS = 64 };
    static lt_plan plans[SLOTS];
    static int used;
    for (int i = 0; i < used; i++)
        if (!memcmp(&plans[i].key, &q, sizeof q)) return &plans[i];
    if (used == SLOTS) return NULL;
    lt_plan *p = &plans[used++];
    memset(p, 0, sizeof *p);
    p->key = q;
    p->ds = new lt_descs(q);
    p->ds->set_bias(bias); /* the heuristic is asked about a complete problem */
    cublasLtMatmulPreference_t pref;
    cublasCheck(cublasLtMatmulPreferenceCreate(&pref));
    uint64_t ws = CUDA_BLAS_WORKSPACE;
    uint32_t none = CUBLASLT_REDUCTION_SCHEME_NONE;
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                     &ws, sizeof ws));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &none, sizeof none));
    const cublasLtMatmulPreferenceAttributes_t al[4] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    const uint32_t *qa = q.align;
    const uint32_t av[4] = {qa[0], qa[1], qa[2], qa[2]};
    for (int i = 0; i < 4; i++)
        cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, al[i], &av[i], sizeof av[i]));
    cublasLtMatmulHeuristicResult_t r;
    int n = 0;
    const lt_descs &ds = *p->ds;
    /* no algorithm (an error status or none returned): the broadcast + GEMM path instead */
    if (cublasLtMatmulAlgoGetHeuristic(g_cuda.lt, ds.op, ds.a, ds.b, ds.d, ds.d, pref, 1, &r, &n) ==
            CUBLAS_STATUS_SUCCESS &&
        n > 0 && r.state == CUBLAS_STATUS_SUCCESS && r.workspaceSize <= CUDA_BLAS_WORKSPACE) {
        p->found = 1;
        p->algo = r.algo;
    }
    cublasLtMatmulPreferenceDestroy(pref);
    return p;
}

template <typename S>
static lt_key lt_key_of(int m, int n, int k, const void *A, const void *B, const void *D) {
    lt_key q;
    memset(&q, 0, sizeof q); /* compared with memcmp: no stray padding bytes */
    q.m = m, q.n = n, q.k = k, q.t = storage_type<S>::blas;
    q.align[0] = lt_align(A), q.align[1] = lt_align(B), q.align[2] = lt_align(D);
    return q;
}

// D (m,n) = op_T(A) op_N(B) + bias with plan p (found)
static void gemm_bias_lt(const lt_plan *p, const void *A, const void *B, const void *bias,
                         void *D) {
    const lt_key &q = p->key;
    const float alpha = 1.f, beta = 0.f;
    if (!cuda_call_admit("gemm_bias", q.m, q.n, q.k, A, B, bias, (const void *)D, q.t)) return;
    lt_descs &ds = *p->ds;
    ds.set_bias(bias);
    cublasCheck(cublasLtMatmul(g_cuda.lt, ds.op, &alpha, A, ds.a, B, ds.b, &beta, D, ds.d, D, ds.d,
                               &p->algo, g_cuda.blas_workspace, CUDA_BLAS_WORKSPACE,
                               g_cuda.stream));
}

// every member through cuBLASLt's bias epilogue, one call each (no batch-stride bias attribute:
// CUDA 11.0 lacks it); 0 (nothing issued) where some member has no algorithm
template <typename S>
static int matmul_forward_lt(void *out, const void *inp, const void *w, const void *b, int N, int C,
                             int OC, int batch, size_t w_stride, size_t out_stride) {
    if (!C) return 0;                    /* k = 0: the broadcast alone */
    for (int pass = 0; pass < 2; pass++) /* all planned before any is issued */
        for (int i = 0; i < batch; i++) {
            const S *wi = (const S *)w + i * w_stride, *bi = (const S *)b + i * w_stride;
            S *oi = (S *)out + i * out_stride;
            const lt_plan *p = lt_plan_for(lt_key_of<S>(OC, N, C, wi, inp, oi), bi);
            /* an unaligned bias: one the epilogue's vector loads may not read */
            if (!p || !p->found || (uintptr_t)bi % 16) return 0;
            if (pass) gemm_bias_lt(p, wi, inp, bi, oi);
        }
    return 1;
}

// out + i out_stride (N,OC) = inp (N,C) @ (w + i w_stride) (OC,C)^T + (b + i w_stride) (OC)
template <typename S>
static void cuda_matmul_forward_batched(void *out, const void *inp, const void *w, const void *b,
                                        int N, int C, int OC, int batch, size_t w_stride,
                                        size_t out_stride) {
    if (!N || !OC || batch <= 0) return;
    if (b && matmul_forward_lt<S>(out, inp, w, b, N, C, OC, batch, w_stride, out_stride)) return;
    if (b) bias_broadcast<S>(out, b, N, OC, batch, w_stride, out_stride);
    // out^T (OC,N) = w^T' ... : col-major w is (C,OC), so op T gives (OC,C); inp is (C,N)
    if (batch == 1)
        gemm<S>(CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, w, C, inp, C, out, OC, b ? 1.f : 0.f);
    else
        gemm_batched<S>(CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, w, C, w_stride, inp, C, 0, out, OC,
                        out_stride, b ? 1.f : 0.f, batch);
}

// out (N,OC) = inp (N,C) @ w (OC,C)^T + b (OC)
template <typename S>
static void cuda_matmul_forward(void *out, const void *inp, const void *w, const void *b, int N,
                                int C, int OC) {
    cuda_matmul_forward_batched<S>(out, inp, w, b, N, C, OC, 1, 0, 0);
}

/* ---- a wide output's bias gradient inside its weight-gradient GEMM (the vocabulary) ----
 * db (OC) is dout^T 1, so with X' = [inp | 1 | 0 ...] (N,Cp) one GEMM dW' (OC,Cp) = dout^T X'
 * reads dout once for both: dw is dW'[:, :C], db is dW'[:, C], for Cp / C more FLOPs (+0.8 % at
 * C = 1024). dW' is fp32 (written with beta 0) and a last kernel adds it to dw (dw_set: writes
 * it, dw unread) and db, rounding each element once, as the GEMM's beta (1, or 0 for dw_set) and
 * the GEMV give otherwise. cuBLAS GEMMs without split-K atomics (ours: CUBLAS_GEMM_DEFAULT, no
 * atomics mode set) give the same bits on every run, so db stays deterministic; its summation
 * order is cuBLAS's, not the column sums'. */

// X' row length: C + 1 rounded up to 8 elements (16-byte leading dimensions for fp16)
static inline int wide_cols(int C) {
    return (C + 1 + 7) / 8 * 8;
}

/* Whether the wide GEMM costs less memory traffic than the bias GEMV. The GEMV reads dout,
 * N OC s bytes (s: storage bytes). The wide GEMM adds the copy to X' (N C s read, N Cp s
 * written: about 2 N Cp s) and the fp32 dW' written and read back (8 OC Cp; the dw read and
 * write of the GEMM's beta = 1 move to the last kernel). With s = 2: N OC > 2 N Cp + 4 OC Cp, i.e.
 * 2 Cp / OC + 4 Cp / N < 1: OC and N both well above C (the CLM's vocabulary: N 8192, C 1024, OC
 * 64768 gives 0.53, about half the GEMV's bytes saved). fp32 storage (s = 4) gains more on the same
 * shapes. Few rows keep the GEMV: MLM's predicted positions, and the 256 and 512 rows at which
 * tests/bench/gpu_model simulates a step before extrapolating it (it prices the GEMV). */
static inline bool wide_db(int N, int C, int OC) {
    unsigned long long cp = (unsigned long long)wide_cols(C);
    return C > 0 && (unsigned long long)N * OC > 2ull * N * cp + 4ull * OC * cp;
}

// xp (N,Cp) = [x (N,C) | 1 | 0 ...], a piece of VEC elements per thread (VEC > 1: C a multiple
// of VEC and x 16-byte aligned; Cp always is)
template <typename S, int VEC>
__global__ void widen_rows_kernel(S *xp, const S *x, int C, int Cp, size_t pieces) {
    size_t q = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (q >= pieces) return;
    int per = Cp / VEC;
    size_t n = q / per;
    int c0 = (int)(q % per) * VEC;
    raw16 r;
    if (c0 + VEC <= C) {
        r = ld_piece<VEC>(x + n * C + c0);
    } else {
        float f[VEC];
        ROW_UNROLL
        for (int j = 0; j < VEC; j++) {
            int c = c0 + j;
            f[j] = c < C ? ld(x + n * C + c) : c == C ? 1.f : 0.f;
        }
        r = pack<VEC, S>(f);
    }
    st_piece<VEC>(xp + n * Cp + c0, r);
}

// dw (OC,C) += dwp[:, :C] (dw_set: =, dw not read), db (OC) += dwp[:, C], each rounded once to
// storage; dwp (OC,Cp) fp32. A piece of VEC elements of dw per thread (VEC > 1: C a multiple of
// VEC, dw 16-byte aligned); the thread of a row's first piece also does its db.
template <typename S, int VEC>
__global__ void wide_finish_kernel(S *dw, S *db, const float *dwp, int C, int Cp, size_t pieces,
                                   bool dw_set) {
    size_t q = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (q >= pieces) return;
    int per = C / VEC;
    size_t o = q / per;
    int c0 = (int)(q % per) * VEC;
    const float *src = dwp + o * Cp + c0;
    float f[VEC], g[VEC];
    if (dw_set) {
        ROW_UNROLL
        for (int j = 0; j < VEC; j++)
            f[j] = 0.f;
    } else {
        unpack<VEC, S>(f, ld_piece<VEC>(dw + o * C + c0));
    }
    if (VEC % 4 == 0) { /* fp32 in 16-byte pieces: rows of Cp, a multiple of 8 */
        ROW_UNROLL
        for (int k = 0; k < VEC / 4; k++)
            unpack<4, float>(g + 4 * k, ld_piece<4>(src + 4 * k));
    } else {
        ROW_UNROLL
        for (int j = 0; j < VEC; j++)
            g[j] = src[j];
    }
    ROW_UNROLL
    for (int j = 0; j < VEC; j++)
        f[j] += g[j];
    st_piece<VEC>(dw + o * C + c0, pack<VEC, S>(f));
    if (c0 == 0) st(db + o, ld(db + o) + dwp[o * Cp + C]);
}

// dw (OC,C) += dout^T @ inp (dw_set: =), db (OC) += colsum(dout) from one GEMM (wide_db(N, C,
// OC) holds)
template <typename S>
static void weight_bias_grad_wide(S *dw, S *db, const S *dout, const S *inp, int N, int C, int OC,
                                  bool dw_set) {
    constexpr int VEC = row_vec<S>::n;
    int Cp = wide_cols(C);
    /* one scratch: dW' (OC,Cp) fp32, then X' (N,Cp) storage at a 256-byte boundary. Grown in
     * the first (eager) run of a graph segment; a later growth moves it, which the segment's
     * fingerprint (the pointers below) catches */
    size_t wf = (size_t)OC * Cp, xoff = (wf + 63) / 64 * 64;
    size_t xf = ((size_t)N * Cp * sizeof(S) + sizeof(float) - 1) / sizeof(float);
    float *dwp = cuda_scratch(xoff + xf);
    S *xp = (S *)(dwp + xoff);
    if (row_pieces_ok<S>((size_t)C, inp)) {
        size_t pieces = (size_t)N * (Cp / VEC);
        XLMC_LAUNCH((widen_rows_kernel<S, VEC>), cuda_blocks(pieces, 256), 256, 0,
                    g_cuda.stream)(xp, inp, C, Cp, pieces);
    } else {
        size_t pieces = (size_t)N * Cp;
        XLMC_LAUNCH((widen_rows_kernel<S, 1>), cuda_blocks(pieces, 256), 256, 0,
                    g_cuda.stream)(xp, inp, C, Cp, pieces);
    }
    cudaLaunchCheck();
    // col-major: X' is (Cp,N), dout (OC,N) taken transposed, dW' (Cp,OC)
    gemm<S>(CUBLAS_OP_N, CUBLAS_OP_T, Cp, OC, N, xp, Cp, dout, OC, dwp, Cp, 0.f, CUDA_R_32F);
    if (row_pieces_ok<S>((size_t)C, dw)) {
        size_t pieces = (size_t)OC * (C / VEC);
        XLMC_LAUNCH((wide_finish_kernel<S, VEC>), cuda_blocks(pieces, 256), 256, 0,
                    g_cuda.stream)(dw, db, dwp, C, Cp, pieces, dw_set);
    } else {
        size_t pieces = (size_t)OC * C;
        XLMC_LAUNCH((wide_finish_kernel<S, 1>), cuda_blocks(pieces, 256), 256, 0,
                    g_cuda.stream)(dw, db, dwp, C, Cp, pieces, dw_set);
    }
    cudaLaunchCheck();
}

// an empty product's dw_set: dw (OC,C) = 0 (the GEMMs are skipped when N is 0)
template <typename S>
static void zero_dw(void *dw, int C, int OC, int batch, size_t w_stride) {
    for (int i = 0; i < batch; i++)
        cudaCheck(
            cudaMemsetAsync((S *)dw + i * w_stride, 0, (size_t)OC * C * sizeof(S), g_cuda.stream));
}

// dinp (N,C) = (dinp_beta x dinp) + dout @ w; dw (OC,C) += dout^T @ inp (dw_set: =, the GEMM's
// beta 0); db (OC) += colsum(dout)
template <typename S>
static void matmul_backward(void *dinp, void *dw, void *db, const void *dout, const void *inp,
                            const void *w, int N, int C, int OC, float dinp_beta, int dw_set) {
    if (!N) {
        if (dw_set) zero_dw<S>(dw, C, OC, 1, 0);
        return;
    }
    if (dinp) gemm<S>(CUBLAS_OP_N, CUBLAS_OP_N, C, N, OC, w, C, dout, OC, dinp, C, dinp_beta);
    if (db && wide_db(N, C, OC)) {
        weight_bias_grad_wide<S>((S *)dw, (S *)db, (const S *)dout, (const S *)inp, N, C, OC,
                                 dw_set != 0);
        return;
    }
    gemm<S>(CUBLAS_OP_N, CUBLAS_OP_T, C, OC, N, inp, C, dout, OC, dw, C, dw_set ? 0.f : 1.f);
    if (db) cuda_bias_grad_add<S>((S *)db, (const S *)dout, N, OC);
}

template <typename S>
static void cuda_matmul_backward(void *dinp, void *dw, void *db, const void *dout, const void *inp,
                                 const void *w, int N, int C, int OC, int dw_set) {
    matmul_backward<S>(dinp, dw, db, dout, inp, w, N, C, OC, 0.f, dw_set);
}
template <typename S>
static void cuda_matmul_backward_add(void *dinp, void *dw, void *db, const void *dout,
                                     const void *inp, const void *w, int N, int C, int OC,
                                     int dw_set) {
    matmul_backward<S>(dinp, dw, db, dout, inp, w, N, C, OC, 1.f, dw_set);
}

// members in order: dinp += dout_i @ w_i (one GEMM each, rounded after each as the separate
// calls did); the weight gradients in one strided-batched GEMM, the bias gradients in another
// (GEMVs against ones)
template <typename S>
static void cuda_matmul_backward_add_batched(void *dinp, void *dw, void *db, const void *dout,
                                             const void *inp, const void *w, int N, int C, int OC,
                                             int batch, size_t w_stride, size_t out_stride,
                                             int dw_set) {
    if (batch <= 0) return;
    if (!N) {
        if (dw_set) zero_dw<S>(dw, C, OC, batch, w_stride);
        return;
    }
    for (int i = 0; i < batch; i++)
        gemm<S>(CUBLAS_OP_N, CUBLAS_OP_N, C, N, OC, (const S *)w + i * w_stride, C,
                (const S *)dout + i * out_stride, OC, dinp, C, 1.f);
    gemm_batched<S>(CUBLAS_OP_N, CUBLAS_OP_T, C, OC, N, inp, C, 0, dout, OC, out_stride, dw, C,
                    w_stride, dw_set ? 0.f : 1.f, batch);
    if (db && OC) {
        const void *ones = cuda_ones((size_t)N, sizeof(S) == 2);
        // col-major: dout_i is (OC,N), ones (N,1), db_i (OC,1)
        gemm_batched<S>(CUBLAS_OP_N, CUBLAS_OP_N, OC, 1, N, dout, OC, out_stride, ones, N, 0, db,
                        OC, w_stride, 1.f, batch);
    }
}

CUDA_EXPORT_OP(matmul_forward)
CUDA_EXPORT_OP(matmul_forward_batched)
CUDA_EXPORT_OP(matmul_backward_add_batched)
CUDA_EXPORT_OP(matmul_backward)
CUDA_EXPORT_OP(matmul_backward_add)
