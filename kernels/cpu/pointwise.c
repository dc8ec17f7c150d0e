/* pointwise.c — GELU (erf form; alone and with the FFN bias), residual add, dropout (alone or
 * fused with the residual add), padding mask. */
#include "kernels/cpu/cpu.h"

#include <stdlib.h>

/* erf(x) by Abramowitz & Stegun 7.1.26 (absolute error <= 1.5e-7, below what fp32 GELU
 * outputs resolve for |x| > 1e-3 relative to the 0.5 x factor): no branches and fast_expf, so
 * the GELU loops vectorize (glibc's erff took ~6% of a training step). */
static inline float erf_as_e(float x, float e) {
    float a = fabsf(x);
    float t = 1.0f / (1.0f + 0.3275911f * a);
    float y =
        t * (0.254829592f +
             t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
    return copysignf(1.0f - y * e, x);
}

/* erf(x) given e = exp(-x^2), which the GELU backward shares with the normal density */
static inline float erf_as(float x) {
    return erf_as_e(x, fast_expf(-x * x));
}

/* out (n) = 0.5 x (1 + erf(x / sqrt 2)) */
CPU_HOT void cpu_gelu_forward(const struct cpu_ctx *ctx, void *out_, const void *inp_, size_t n) {
    const int h = ctx->round_half;
    float *out = out_;
    const float *inp = inp_;
#pragma omp parallel for schedule(static) if ((long)n > CPU_PAR_MIN)
    for (size_t blk = 0; blk < PF_BLOCKS(n); blk++) {
        size_t i0 = blk * CPU_PF_BLOCK, i1 = pf_block_end(blk, n);
        prefetch_ahead(inp + i0, CPU_PF_BLOCK * sizeof(float));
#pragma omp simd
        for (size_t i = i0; i < i1; i++) {
            float x = inp[i];
            out[i] = 0.5f * x * (1.0f + erf_as(x * 0.70710678118654752f));
        }
    }
    cpu_round_storage(out, n, h);
}

/* dinp (n) = dout * (Phi(x) + x phi(x)); dinp may alias dout (each element is read first). */
CPU_HOT void cpu_gelu_backward(const struct cpu_ctx *ctx, void *dinp_, const void *inp_,
                               const void *dout_, size_t n) {
    const int h = ctx->round_half;
    float *dinp = dinp_;
    const float *inp = inp_, *dout = dout_;
#pragma omp parallel for schedule(static) if ((long)n > CPU_PAR_MIN)
    for (size_t blk = 0; blk < PF_BLOCKS(n); blk++) {
        size_t i0 = blk * CPU_PF_BLOCK, i1 = pf_block_end(blk, n);
        prefetch_ahead(inp + i0, CPU_PF_BLOCK * sizeof(float));
        prefetch_ahead(dout + i0, CPU_PF_BLOCK * sizeof(float));
#pragma omp simd
        for (size_t i = i0; i < i1; i++) {
            float x = inp[i];
            /* exp(-x^2/2) serves both erf(x / sqrt 2) and the density: one exp, not two */
            float e = fast_expf(-0.5f * x * x);
            float cdf = 0.5f * (1.0f + erf_as_e(x * 0.70710678118654752f, e));
            float pdf = 0.39894228040143268f * e;
            dinp[i] = dout[i] * (cdf + x * pdf);
        }
    }
    cpu_round_storage(dinp, n, h);
}

/* out (N,F) = gelu(inp + bias): the GELU forward above with the bias added on the way in */
CPU_HOT void cpu_bias_gelu_forward(const struct cpu_ctx *ctx, void *out_, const void *inp_,
                                   const void *bias_, int N, int F) {
    float *out = out_;
    const float *inp = inp_, *bias = bias_;
#pragma omp parallel for schedule(static) if ((long)N * F > CPU_PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * F;
        float *o = out + (size_t)n * F;
#pragma omp simd
        for (int f = 0; f < F; f++) {
            float v = x[f] + bias[f];
            o[f] = 0.5f * v * (1.0f + erf_as(v * 0.70710678118654752f));
        }
    }
    cpu_round_storage(out, (size_t)N * F, ctx->round_half);
}

/* Rows per partial sum of dbias, added in block order: independent of the thread count. */
#define BG_BLOCK 64

/* dinp (N,F) = dout * gelu'(inp + bias), dbias (F) += column sums of the stored dinp */
CPU_HOT void cpu_bias_gelu_backward(const struct cpu_ctx *ctx, void *dinp_, void *dbias_,
                                    const void *dout_, const void *inp_, const void *bias_, int N,
                                    int F) {
    const int h = ctx->round_half;
    float *dinp = dinp_, *dbias = dbias_;
    const float *dout = dout_, *inp = inp_, *bias = bias_;
    int blocks = (N + BG_BLOCK - 1) / BG_BLOCK;
    if (blocks == 0) return;
    /* ops have no error path: cpu_xmalloc reports the size and aborts if this fails */
    float *partial = cpu_xmalloc((size_t)blocks * F * sizeof(float)); /* (blocks, F) */
#pragma omp parallel for schedule(static) if ((long)N * F > CPU_PAR_MIN)
    for (int blk = 0; blk < blocks; blk++) {
        float *pb = partial + (size_t)blk * F;
        memset(pb, 0, (size_t)F * sizeof(float));
        int n1 = (blk + 1) * BG_BLOCK < N ? (blk + 1) * BG_BLOCK : N;
        for (int n = blk * BG_BLOCK; n < n1; n++) {
            const float *x = inp + (size_t)n * F, *d = dout + (size_t)n * F;
            float *g = dinp + (size_t)n * F;
            for (int f = 0; f < F; f++) {
                float v = x[f] + bias[f];
                float e = fast_expf(-0.5f * v * v);
                float cdf = 0.5f * (1.0f + erf_as_e(v * 0.70710678118654752f, e));
                g[f] = stored(d[f] * (cdf + v * 0.39894228040143268f * e), h);
                pb[f] += g[f];
            }
        }
    }
    for (int f = 0; f < F; f++) {
        float sum = 0.0f;
        for (int blk = 0; blk < blocks; blk++)
            sum += partial[(size_t)blk * F + f];
        dbias[f] = stored(dbias[f] + sum, h);
    }
    free(partial);
}

/* out (n) = a + b; out may alias a or b */
CPU_HOT void cpu_residual_forward(const struct cpu_ctx *ctx, void *out_, const void *a_,
                                  const void *b_, size_t n) {
    const int h = ctx->round_half;
    float *out = out_;
    const float *a = a_, *b = b_;
#pragma omp parallel for schedule(static) if ((long)n > CPU_PAR_MIN)
    for (size_t blk = 0; blk < PF_BLOCKS(n); blk++) {
        size_t i0 = blk * CPU_PF_BLOCK, i1 = pf_block_end(blk, n);
        prefetch_ahead(a + i0, CPU_PF_BLOCK * sizeof(float));
        prefetch_ahead(b + i0, CPU_PF_BLOCK * sizeof(float));
        for (size_t i = i0; i < i1; i++)
            out[i] = stored(a[i] + b[i], h);
    }
}

/* x (B,T,C) in place: row r = key->row0 + b, element e = t*C + c within the row. */
CPU_HOT void cpu_dropout(const struct cpu_ctx *ctx, void *x_, int B, int T, int C, float p,
                         const struct dropout_key *key) {
    const int h = ctx->round_half;
    if (p <= 0.0f) return;
    float *x = x_;
    uint32_t thr = dropout_threshold(p);
    float keep_scale = 1.0f / (1.0f - p);
    size_t row_len = (size_t)T * C;
    long N = (long)B * T;
#pragma omp parallel for schedule(static) if (N * C > CPU_PAR_MIN)
    for (long n = 0; n < N; n++) {
        int b = (int)(n / T);
        uint64_t e0 = (uint64_t)(n % T) * (uint64_t)C;
        dropout_span(x + (size_t)b * row_len + e0, C, e0, key->row0 + (uint32_t)b, key, thr,
                     keep_scale, h);
    }
}

/* out (B,T,C) = res + dropout(x + bias) (res NULL: dropout(x + bias); bias NULL: none), row by
 * row through a per-thread copy of the row, so that out may be x or res: the values of
 * cpu_dropout then cpu_residual_forward, with each row read and written once while it is in
 * cache. x + bias is an fp32 sum, rounded only where dropout or the residual add rounds. */
CPU_HOT void cpu_dropout_residual(const struct cpu_ctx *ctx, void *out_, const void *res_,
                                  const void *x_, const void *bias_, int B, int T, int C, float p,
                                  const struct dropout_key *key) {
    const int h = ctx->round_half;
    float *out = out_;
    const float *res = res_, *x = x_, *bias = bias_;
    uint32_t thr = p > 0.0f ? dropout_threshold(p) : 0;
    float keep_scale = p > 0.0f ? 1.0f / (1.0f - p) : 1.0f;
    long N = (long)B * T;
#pragma omp parallel if (N * C > CPU_PAR_MIN)
    {
        /* ops have no error path: cpu_xmalloc reports the size and aborts if this fails */
        float *tmp = cpu_xmalloc((size_t)C * sizeof(float));
#pragma omp for schedule(static)
        for (long n = 0; n < N; n++) {
            int b = (int)(n / T);
            uint64_t e0 = (uint64_t)(n % T) * (uint64_t)C;
            memcpy(tmp, x + (size_t)n * C, (size_t)C * sizeof(float));
            if (bias)
                for (int c = 0; c < C; c++)
                    tmp[c] += bias[c];
            if (p > 0.0f)
                dropout_span(tmp, C, e0, key->row0 + (uint32_t)b, key, thr, keep_scale, h);
            float *o = out + (size_t)n * C;
            if (res) {
                const float *r = res + (size_t)n * C;
                for (int c = 0; c < C; c++)
                    o[c] = stored(r[c] + tmp[c], h);
            } else if (bias) {
                for (int c = 0; c < C; c++)
                    o[c] = stored(tmp[c], h);
            } else {
                memcpy(o, tmp, (size_t)C * sizeof(float));
            }
        }
        free(tmp);
    }
}

/* x (B,T,C): zero positions t >= lengths[b] */
void cpu_mask_padding(const struct cpu_ctx *ctx, void *x_, const int32_t *lengths, int B, int T,
                      int C) {
    const int h = ctx->round_half;
    float *x = x_;
    for (int b = 0; b < B; b++) {
        int len = lengths[b] < 0 ? 0 : lengths[b] > T ? T : lengths[b];
        if (len < T)
            memset(x + ((size_t)b * T + len) * C, 0, (size_t)(T - len) * C * sizeof(float));
    }
    (void)h;
}
