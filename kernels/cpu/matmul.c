/* matmul.c — linear layers through OpenBLAS sgemm, PyTorch's (out,in) weight layout. */
#include "kernels/cpu/cpu.h"

#include <cblas.h>
#include <omp.h>

void cpu_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
               const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    /* Each thread packs its slice of one operand and the whole other one: split the longer of
     * M and N, so the operand packed once per thread is the smaller (the (N,V) logits of a
     * forward: V columns, not the N rows). Slices of at least 16 rows or columns: below that
     * the split costs more than it saves. */
    int split_n = N > M, len = split_n ? N : M;
    int nth = omp_get_max_threads(), chunks = len / 16 < nth ? (len / 16 > 0 ? len / 16 : 1) : nth;
    if ((double)M * N * K < 64.0 * CPU_PAR_MIN) chunks = 1;
#pragma omp parallel for schedule(static) num_threads(chunks) if (chunks > 1)
    for (int i = 0; i < chunks; i++) {
        /* slice boundaries on multiples of 16 except the last */
        int s0 = i == 0 ? 0 : (int)((long)len * i / chunks) & ~15;
        int s1 = i == chunks - 1 ? len : (int)((long)len * (i + 1) / chunks) & ~15;
        if (s1 <= s0) continue;
        const float *a = A, *b = B;
        float *c = C;
        int m = M, n = N;
        if (split_n) {
            /* columns s0.. of op(B): row offset when B is (N,K), column offset when (K,N) */
            b = trans_b ? B + (size_t)s0 * ldb : B + s0;
            c = C + s0;
            n = s1 - s0;
        } else {
            /* rows s0.. of op(A): row offset when A is (M,K), column offset when (K,M) */
            a = trans_a ? A + s0 : A + (size_t)s0 * lda;
            c = C + (size_t)s0 * ldc;
            m = s1 - s0;
        }
        cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                    trans_b ? CblasTrans : CblasNoTrans, m, n, K, alpha, a, lda, b, ldb, beta, c,
                    ldc);
    }
}

/* out (N,OC) = inp (N,C) @ w (OC,C)^T + b (OC, or NULL). The bias is written first and
 * sgemm adds onto it (beta = 1), which saves a pass over out. */
CPU_HOT void cpu_matmul_forward(int h, void *out_, const void *inp, const void *w, const void *b_,
                                int N, int C, int OC) {
    float *out = out_;
    const float *b = b_;
    if (b) {
#pragma omp parallel for schedule(static) if ((long)N * OC > CPU_PAR_MIN)
        for (int n = 0; n < N; n++)
            memcpy(out + (size_t)n * OC, b, (size_t)OC * sizeof(float));
    }
    cpu_sgemm(0, 1, N, OC, C, 1.0f, inp, C, w, C, b ? 1.0f : 0.0f, out, OC);
    cpu_round_storage(out, (size_t)N * OC, h);
}

/* dinp (N,C) = dout (N,OC) @ w (OC,C), overwritten (skipped if NULL);
 * dw (OC,C) += dout^T @ inp; db (OC) += column sums of dout (skipped if NULL). */
CPU_HOT void cpu_matmul_backward(int h, void *dinp, void *dw, void *db_, const void *dout_,
                                 const void *inp, const void *w, int N, int C, int OC) {
    const float *dout = dout_;
    float *db = db_;
    if (dinp) {
        cpu_sgemm(0, 0, N, C, OC, 1.0f, dout, OC, w, C, 0.0f, dinp, C);
        cpu_round_storage(dinp, (size_t)N * C, h);
    }
    cpu_sgemm(1, 0, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dw, C);
    cpu_round_storage(dw, (size_t)OC * C, h);
    if (db) {
        /* each thread owns a slice of the OC columns and sums rows in order: deterministic */
#pragma omp parallel if ((long)N * OC > CPU_PAR_MIN)
        {
            int nth = omp_get_num_threads(), id = omp_get_thread_num();
            int o0 = (int)((long)OC * id / nth), o1 = (int)((long)OC * (id + 1) / nth);
            for (int n = 0; n < N; n++) {
                const float *d = dout + (size_t)n * OC;
                for (int o = o0; o < o1; o++)
                    db[o] += d[o];
            }
            if (h)
                for (int o = o0; o < o1; o++)
                    db[o] = half_round(db[o]);
        }
    }
}
