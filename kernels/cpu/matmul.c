/* matmul.c — linear layers through OpenBLAS sgemm, PyTorch's (out,in) weight layout. */
#include "kernels/cpu/cpu.h"

#include <cblas.h>
#include <omp.h>

/* One sgemm call: C (M,N) = alpha op(A) op(B) + beta C, row-major. */
struct sgemm_call {
    int trans_a, trans_b, M, N, K;
    float alpha;
    const float *A;
    int lda;
    const float *B;
    int ldb;
    float beta;
    float *C;
    int ldc;
};

/* How many slices a call is worth: each at least 16 rows or columns, and one for a product
 * too small to gain from threads. */
static int sgemm_chunks(const struct sgemm_call *g, int nth) {
    int len = g->N > g->M ? g->N : g->M;
    if ((double)g->M * g->N * g->K < 64.0 * CPU_PAR_MIN || len < 32) return 1;
    return len / 16 < nth ? len / 16 : nth;
}

/* Slice i of chunks of the call, on the calling thread. Each thread packs its slice of one
 * operand and the whole other one: split the longer of M and N, so the operand packed once
 * per thread is the smaller (the (N,V) logits of a forward: V columns, not the N rows). */
static void sgemm_slice(const struct sgemm_call *g, int i, int chunks) {
    int split_n = g->N > g->M, len = split_n ? g->N : g->M;
    /* slice boundaries on multiples of 16 except the last */
    int s0 = i == 0 ? 0 : (int)((long)len * i / chunks) & ~15;
    int s1 = i == chunks - 1 ? len : (int)((long)len * (i + 1) / chunks) & ~15;
    if (s1 <= s0) return;
    const float *a = g->A, *b = g->B;
    float *c = g->C;
    int m = g->M, n = g->N;
    if (split_n) {
        /* columns s0.. of op(B): row offset when B is (N,K), column offset when (K,N) */
        b = g->trans_b ? g->B + (size_t)s0 * g->ldb : g->B + s0;
        c = g->C + s0;
        n = s1 - s0;
    } else {
        /* rows s0.. of op(A): row offset when A is (M,K), column offset when (K,M) */
        a = g->trans_a ? g->A + s0 : g->A + (size_t)s0 * g->lda;
        c = g->C + (size_t)s0 * g->ldc;
        m = s1 - s0;
    }
    cblas_sgemm(CblasRowMajor, g->trans_a ? CblasTrans : CblasNoTrans,
                g->trans_b ? CblasTrans : CblasNoTrans, m, n, g->K, g->alpha, a, g->lda, b, g->ldb,
                g->beta, c, g->ldc);
}

void cpu_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
               const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    struct sgemm_call g = {trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc};
    int chunks = sgemm_chunks(&g, omp_get_max_threads());
#pragma omp parallel for schedule(static) num_threads(chunks) if (chunks > 1)
    for (int i = 0; i < chunks; i++)
        sgemm_slice(&g, i, chunks);
}

/* Two independent products of equal work at once, half the threads on each: every thread
 * packs operands for its own slice only, where splitting each product over all threads would
 * have every thread pack the same unsplit operand (the backward's weight and input
 * gradients: 2 N C OC flops each). With one thread, one after the other. */
static void cpu_sgemm_pair(const struct sgemm_call *x, const struct sgemm_call *y) {
    int nth = omp_get_max_threads();
    if (nth < 2 || sgemm_chunks(x, nth) < 2 || sgemm_chunks(y, nth) < 2) {
        cpu_sgemm(x->trans_a, x->trans_b, x->M, x->N, x->K, x->alpha, x->A, x->lda, x->B, x->ldb,
                  x->beta, x->C, x->ldc);
        cpu_sgemm(y->trans_a, y->trans_b, y->M, y->N, y->K, y->alpha, y->A, y->lda, y->B, y->ldb,
                  y->beta, y->C, y->ldc);
        return;
    }
    int nx = sgemm_chunks(x, nth / 2), ny = sgemm_chunks(y, nth - nth / 2);
#pragma omp parallel for schedule(static, 1) num_threads(nx + ny)
    for (int i = 0; i < nx + ny; i++) {
        if (i < nx)
            sgemm_slice(x, i, nx);
        else
            sgemm_slice(y, i - nx, ny);
    }
}

/* out (N,OC) = inp (N,C) @ w (OC,C)^T + b (OC, or NULL). The bias is written first and
 * sgemm adds onto it (beta = 1), which saves a pass over out. */
CPU_HOT void cpu_matmul_forward(const struct cpu_ctx *ctx, void *out_, const void *inp,
                                const void *w, const void *b_, int N, int C, int OC) {
    const int h = ctx->round_half;
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
 * dw (OC,C) += dout^T @ inp (dw_set: = , the sgemm's beta 0, which never reads dw: the stored
 * sum, as adding onto a zeroed dw gives it); db (OC) += column sums of dout (skipped if NULL). */
static void matmul_backward(const struct cpu_ctx *ctx, void *dinp, void *dw, void *db_,
                            const void *dout_, const void *inp, const void *w, int N, int C, int OC,
                            float dinp_beta, int dw_set) {
    const int h = ctx->round_half;
    const float *dout = dout_;
    float *db = db_;
    float dw_beta = dw_set ? 0.0f : 1.0f;
    if (dw_set && N <= 0) /* no product to write dw: its value is the empty sum */
        memset(dw, 0, (size_t)OC * C * sizeof(float));
    struct sgemm_call gw = {1, 0, OC, C, N, 1.0f, dout, OC, inp, C, dw_beta, dw, C};
    if (dinp) {
        struct sgemm_call gi = {0, 0, N, C, OC, 1.0f, dout, OC, w, C, dinp_beta, dinp, C};
        cpu_sgemm_pair(&gi, &gw);
        cpu_round_storage(dinp, (size_t)N * C, h);
    } else {
        cpu_sgemm(1, 0, OC, C, N, 1.0f, dout, OC, inp, C, dw_beta, dw, C);
    }
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

CPU_HOT void cpu_matmul_backward(const struct cpu_ctx *ctx, void *dinp, void *dw, void *db,
                                 const void *dout, const void *inp, const void *w, int N, int C,
                                 int OC, int dw_set) {
    matmul_backward(ctx, dinp, dw, db, dout, inp, w, N, C, OC, 0.0f, dw_set);
}

/* the same with dinp += dout @ w (beta = 1 onto the stored dinp, one rounding) */
CPU_HOT void cpu_matmul_backward_add(const struct cpu_ctx *ctx, void *dinp, void *dw, void *db,
                                     const void *dout, const void *inp, const void *w, int N, int C,
                                     int OC, int dw_set) {
    matmul_backward(ctx, dinp, dw, db, dout, inp, w, N, C, OC, 1.0f, dw_set);
}

/* q, k and v: each member exactly as cpu_matmul_forward computes it alone (the results the
 * three separate calls gave, bit for bit) */
CPU_HOT void cpu_matmul_forward_batched(const struct cpu_ctx *ctx, void *out, const void *inp,
                                        const void *w, const void *b, int N, int C, int OC,
                                        int batch, size_t w_stride, size_t out_stride) {
    for (int i = 0; i < batch; i++)
        cpu_matmul_forward(ctx, (float *)out + i * out_stride, inp, (const float *)w + i * w_stride,
                           b ? (const float *)b + i * w_stride : NULL, N, C, OC);
}

/* members in order onto dinp, each rounded as its own matmul_backward_add rounds it */
CPU_HOT void cpu_matmul_backward_add_batched(const struct cpu_ctx *ctx, void *dinp, void *dw,
                                             void *db, const void *dout, const void *inp,
                                             const void *w, int N, int C, int OC, int batch,
                                             size_t w_stride, size_t out_stride, int dw_set) {
    for (int i = 0; i < batch; i++)
        matmul_backward(ctx, dinp, (float *)dw + i * w_stride,
                        db ? (float *)db + i * w_stride : NULL,
                        (const float *)dout + i * out_stride, inp, (const float *)w + i * w_stride,
                        N, C, OC, 1.0f, dw_set);
}
