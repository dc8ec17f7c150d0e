/* cudasim_lt.cpp — the cuBLASLt subset of include/cublasLt.h: matmuls with the default or the
 * bias epilogue, checked as cuBLASLt checks them, run by cudasim's GEMM (cudasim_libs.cpp) and
 * recorded as a GEMM named "gemm_bias" (or "gemm") for the cost model. */
#include "cudasim.h"
#include "cudasim_count_impl.h"
#include "cudasim_graph_impl.h"
#include "include/cublasLt.h"

#include <stdint.h>
#include <string.h>

struct cudasim_lt {
    int alive;
};
struct cudasim_lt_desc {
    cublasComputeType_t compute;
    cudaDataType_t scale;
    int32_t ta, tb;
    uint32_t epilogue;
    const void *bias;
};
struct cudasim_lt_layout {
    cudaDataType type;
    uint64_t rows, cols;
    int64_t ld;
};
struct cudasim_lt_pref {
    uint64_t max_workspace;
    uint32_t reductions;
    uint32_t align[4]; /* A, B, C, D: the least alignment the algorithm may assume */
};

cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) {
    if (!h) return CUBLAS_STATUS_INVALID_VALUE;
    *h = new cudasim_lt{1};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t compute,
                                        cudaDataType_t scale) {
    if (!d) return CUBLAS_STATUS_INVALID_VALUE;
    *d = new cudasim_lt_desc{compute, scale, CUBLAS_OP_N, CUBLAS_OP_N, CUBLASLT_EPILOGUE_DEFAULT,
                             nullptr};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
    delete d;
    return CUBLAS_STATUS_SUCCESS;
}
/* each attribute of its own size, as cuBLASLt checks sizeInBytes */
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d,
                                              cublasLtMatmulDescAttributes_t attr, const void *buf,
                                              size_t size) {
    if (!d || !buf) return CUBLAS_STATUS_INVALID_VALUE;
    switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA:
    case CUBLASLT_MATMUL_DESC_TRANSB: {
        int32_t v;
        if (size != sizeof v) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&v, buf, sizeof v);
        if (v != CUBLAS_OP_N && v != CUBLAS_OP_T) return CUBLAS_STATUS_INVALID_VALUE;
        (attr == CUBLASLT_MATMUL_DESC_TRANSA ? d->ta : d->tb) = v;
        return CUBLAS_STATUS_SUCCESS;
    }
    case CUBLASLT_MATMUL_DESC_EPILOGUE:
        if (size != sizeof d->epilogue) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&d->epilogue, buf, sizeof d->epilogue);
        return d->epilogue == CUBLASLT_EPILOGUE_DEFAULT || d->epilogue == CUBLASLT_EPILOGUE_BIAS
                   ? CUBLAS_STATUS_SUCCESS
                   : CUBLAS_STATUS_INVALID_VALUE;
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER:
        if (size != sizeof d->bias) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&d->bias, buf, sizeof d->bias);
        return CUBLAS_STATUS_SUCCESS;
    }
    return CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType type,
                                          uint64_t rows, uint64_t cols, int64_t ld) {
    if (!l || ld < (int64_t)(rows > 1 ? rows : 1) || rows > INT32_MAX || cols > INT32_MAX ||
        (type != CUDA_R_16F && type != CUDA_R_32F))
        return CUBLAS_STATUS_INVALID_VALUE;
    *l = new cudasim_lt_layout{type, rows, cols, ld};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
    delete l;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) {
    if (!p) return CUBLAS_STATUS_INVALID_VALUE;
    *p = new cudasim_lt_pref{0, CUBLASLT_REDUCTION_SCHEME_MASK, {256, 256, 256, 256}};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
    delete p;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                    cublasLtMatmulPreferenceAttributes_t attr,
                                                    const void *buf, size_t size) {
    if (!p || !buf) return CUBLAS_STATUS_INVALID_VALUE;
    switch (attr) {
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES:
        if (size != sizeof p->max_workspace) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&p->max_workspace, buf, size);
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK:
        if (size != sizeof p->reductions) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&p->reductions, buf, size);
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES:
        if (size != sizeof(uint32_t)) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&p->align[attr - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES], buf, size);
        return CUBLAS_STATUS_SUCCESS;
    }
    return CUBLAS_STATUS_INVALID_VALUE;
}

/* The problem the descriptors give, checked: shapes consistent with the transposes, types
 * from cuBLASLt's table for CUBLAS_COMPUTE_32F with fp32 scale (A, B of one type, C and D of
 * theirs), a bias pointer for the bias epilogue. */
static cublasStatus_t lt_problem(cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t a,
                                 cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
                                 cublasLtMatrixLayout_t dd, int *m, int *n, int *k) {
    if (!d || !a || !b || !c || !dd) return CUBLAS_STATUS_INVALID_VALUE;
    *m = (int)dd->rows, *n = (int)dd->cols;
    *k = (int)(d->ta == CUBLAS_OP_N ? a->cols : a->rows);
    uint64_t am = d->ta == CUBLAS_OP_N ? a->rows : a->cols;
    uint64_t bk = d->tb == CUBLAS_OP_N ? b->rows : b->cols,
             bn = d->tb == CUBLAS_OP_N ? b->cols : b->rows;
    if (am != dd->rows || bk != (uint64_t)*k || bn != dd->cols || c->rows != dd->rows ||
        c->cols != dd->cols)
        return CUBLAS_STATUS_INVALID_VALUE;
    if (d->compute != CUBLAS_COMPUTE_32F || d->scale != CUDA_R_32F || a->type != b->type ||
        c->type != a->type || dd->type != a->type)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if (d->epilogue == CUBLASLT_EPILOGUE_BIAS && !d->bias) return CUBLAS_STATUS_INVALID_VALUE;
    return CUBLAS_STATUS_SUCCESS;
}

static uint32_t align_of(const void *p) {
    uint32_t a = 256;
    while (a > 1 && (uintptr_t)p % a)
        a /= 2;
    return a;
}

/* One algorithm, without split-K (so any reduction mask that admits NONE), needing no
 * workspace; it keeps the alignments it was chosen for, which cublasLtMatmul then checks. */
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t d,
                                              cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                              cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t dd,
                                              cublasLtMatmulPreference_t p, int requested,
                                              cublasLtMatmulHeuristicResult_t results[],
                                              int *returned) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!p || requested < 1 || !results || !returned) return CUBLAS_STATUS_INVALID_VALUE;
    int m, n, k;
    cublasStatus_t st = lt_problem(d, a, b, c, dd, &m, &n, &k);
    *returned = 0;
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    memset(&results[0], 0, sizeof results[0]);
    results[0].algo.data[0] = 0x4c54; /* "LT": a stand-in algorithm */
    for (int i = 0; i < 4; i++)
        results[0].algo.data[1 + i] = p->align[i];
    results[0].state = CUBLAS_STATUS_SUCCESS;
    results[0].wavesCount = 1.f;
    *returned = 1;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t d, const void *alpha,
                              const void *A, cublasLtMatrixLayout_t a, const void *B,
                              cublasLtMatrixLayout_t b, const void *beta, const void *C,
                              cublasLtMatrixLayout_t c, void *D, cublasLtMatrixLayout_t dd,
                              const cublasLtMatmulAlgo_t *algo, void *workspace,
                              size_t workspace_bytes, cudaStream_t s) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!alpha || !beta) return CUBLAS_STATUS_INVALID_VALUE;
    int m, n, k;
    cublasStatus_t st = lt_problem(d, a, b, c, dd, &m, &n, &k);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    (void)workspace, (void)workspace_bytes; /* the stand-in's algorithm needs none */
    /* an algorithm chosen for stricter alignment than the pointers have fails, as on a GPU */
    if (algo) {
        if (algo->data[0] != 0x4c54) return CUBLAS_STATUS_INVALID_VALUE;
        const void *ptr[4] = {A, B, C, D};
        for (int i = 0; i < 4; i++)
            if (align_of(ptr[i]) < algo->data[1 + i]) return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    float al = *(const float *)alpha, be = *(const float *)beta;
    /* out of place with beta != 0 (C read, D written) is not modelled: xlmc writes in place or
     * with beta 0 */
    if (C != D && be != 0.f) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (C == D && c->ld != dd->ld) return CUBLAS_STATUS_INVALID_VALUE; /* in place: one layout */
    cublasOperation_t ta = (cublasOperation_t)d->ta, tb = (cublasOperation_t)d->tb;
    cudaDataType t = a->type;
    int lda = (int)a->ld, ldb = (int)b->ld, ldd = (int)dd->ld;
    const void *bias = d->epilogue == CUBLASLT_EPILOGUE_BIAS ? d->bias : nullptr;
    const char *name = bias ? "gemm_bias" : "gemm";
    if (cudasim::graph::capturing(s)) {
        cudasim::graph::record(s, "gemm", [=](cudaStream_t replay) {
            cudasim_gemm_run(ta, tb, m, n, k, al, A, t, lda, 0, B, t, ldb, 0, be, D, t, ldd, 0, 1,
                             bias, name, replay);
        });
        return CUBLAS_STATUS_SUCCESS;
    }
    cudasim::graph::check_legacy(s, "cuBLASLt matmul");
    cudasim_gemm_run(ta, tb, m, n, k, al, A, t, lda, 0, B, t, ldb, 0, be, D, t, ldd, 0, 1, bias,
                     name, s);
    return CUBLAS_STATUS_SUCCESS;
}
