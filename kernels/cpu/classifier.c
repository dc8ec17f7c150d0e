/* classifier.c — softmax cross-entropy over the vocabulary, fused with the output bias and
 * the logits' gradient. */
#include "kernels/cpu/cpu.h"

#include <float.h>
#include <omp.h>
#include <stdlib.h>

/* Rows per partial column sum of dbias: the partials are added in block order, so the bias
 * gradient does not depend on the thread count. */
#define CLS_BLOCK 32

/* One row l (V; the padding after it is the caller's) with target t >= 0: bias added
 * (rounded when h), loss returned, and with dscale != 0 the row overwritten by its gradient.
 * The row (V floats) stays in L1/L2 between the passes: only the first reads it from memory.
 * The log-sum-exp is summed in double: with V = 64k an fp32 sum would lose ~1e-6 relative in
 * the loss. */
CPU_INLINE float classifier_row(int h, float *l, const float *bias, int t, int V, float dscale) {
    if (bias) {
#pragma omp simd
        for (int i = 0; i < V; i++)
            l[i] = stored(l[i] + bias[i], h);
    }
    float mx = row_max(l, V);
    float lt = l[t];
    double sum = 0.0;
    if (dscale == 0.0f) {
#pragma omp simd reduction(+ : sum)
        for (int i = 0; i < V; i++)
            sum += (double)fast_expf(l[i] - mx);
        return (float)(log(sum) + (double)mx - (double)lt);
    }
    /* keep the exponentials: the gradient is one scaling pass, no second exp */
#pragma omp simd reduction(+ : sum)
    for (int i = 0; i < V; i++) {
        l[i] = fast_expf(l[i] - mx);
        sum += (double)l[i];
    }
    float s = (float)((double)dscale / sum), et = l[t];
    if (h) {
        for (int i = 0; i < V; i++)
            l[i] = half_round(l[i] * s);
    } else {
#pragma omp simd
        for (int i = 0; i < V; i++)
            l[i] *= s;
    }
    l[t] = stored(dscale * (float)((double)et / sum - 1.0), h);
    return (float)(log(sum) + (double)mx - (double)lt);
}

/* losses (N); logits (N,Vp) of which columns < V count, bias (V) or NULL, dbias (V) or
 * NULL: see ops.h */
CPU_HOT void cpu_classifier(const struct cpu_ctx *ctx, float *losses, void *logits_,
                            const void *bias_, void *dbias_, const int32_t *targets, int N, int V,
                            int Vp, float dscale) {
    const int h = ctx->round_half;
    float *logits = logits_, *dbias = dscale != 0.0f ? dbias_ : NULL;
    const float *bias = bias_;
    int blocks = (N + CLS_BLOCK - 1) / CLS_BLOCK;
    /* ops have no error path: cpu_xmalloc reports the size and aborts if this fails */
    float *partial = dbias && blocks ? cpu_xmalloc((size_t)blocks * V * sizeof(float)) : NULL;
#pragma omp parallel for schedule(static) if ((long)N * V > CPU_PAR_MIN)
    for (int blk = 0; blk < blocks; blk++) {
        float *part = partial ? partial + (size_t)blk * V : NULL;
        if (part) memset(part, 0, (size_t)V * sizeof(float));
        int n1 = (blk + 1) * CLS_BLOCK < N ? (blk + 1) * CLS_BLOCK : N;
        for (int n = blk * CLS_BLOCK; n < n1; n++) {
            float *l = logits + (size_t)n * Vp;
            int t = targets[n];
            /* the padding's gradient is zero: the output GEMMs' padding rows stay zero */
            if (dscale != 0.0f && Vp > V) memset(l + V, 0, (size_t)(Vp - V) * sizeof(float));
            if (t < 0) {
                losses[n] = 0.0f;
                if (dscale != 0.0f)
                    memset(l, 0, (size_t)V * sizeof(float));
                else if (bias)
                    for (int i = 0; i < V; i++)
                        l[i] = stored(l[i] + bias[i], h);
                continue;
            }
            losses[n] = classifier_row(h, l, bias, t, V, dscale);
            if (part) {
#pragma omp simd
                for (int i = 0; i < V; i++)
                    part[i] += l[i];
            }
        }
    }
    if (!partial) return;
#pragma omp parallel for schedule(static) if ((long)blocks * V > CPU_PAR_MIN)
    for (int i = 0; i < V; i++) {
        float s = 0.0f;
        for (int blk = 0; blk < blocks; blk++)
            s += partial[(size_t)blk * V + i];
        dbias[i] = stored(dbias[i] + s, h);
    }
    free(partial);
}

/* out (M,C) = inp rows index[m]: a copy, storage to storage (no rounding) */
void cpu_gather_rows(const struct cpu_ctx *ctx, void *out_, const void *inp_, const int32_t *index,
                     int M, int C) {
    (void)ctx;
    float *out = out_;
    const float *inp = inp_;
    for (int m = 0; m < M; m++)
        memcpy(out + (size_t)m * C, inp + (size_t)index[m] * C, (size_t)C * sizeof(float));
}

/* out (N,C) = 0 but rows index[m] = inp row m */
void cpu_scatter_rows(const struct cpu_ctx *ctx, void *out_, const void *inp_, const int32_t *index,
                      int N, int M, int C) {
    (void)ctx;
    float *out = out_;
    const float *inp = inp_;
    memset(out, 0, (size_t)N * C * sizeof(float));
    for (int m = 0; m < M; m++)
        memcpy(out + (size_t)index[m] * C, inp + (size_t)m * C, (size_t)C * sizeof(float));
}

/* correct[n] = the first maximum of row n is at targets[n] (ignored rows: 0) */
void cpu_argmax_correct(const struct cpu_ctx *ctx, int32_t *correct, const void *logits_,
                        const int32_t *targets, int N, int V, int Vp) {
    (void)ctx;
    const float *logits = logits_;
#pragma omp parallel for schedule(static) if ((long)N * V > CPU_PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *row = logits + (size_t)n * Vp;
        int best = 0;
        for (int v = 1; v < V; v++)
            if (row[v] > row[best]) best = v;
        correct[n] = targets[n] >= 0 && best == targets[n];
    }
}
