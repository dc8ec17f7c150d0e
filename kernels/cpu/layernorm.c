/* layernorm.c — LayerNorm over the last dim with fp32 statistics (PyTorch's biased variance). */
#include "kernels/cpu/cpu.h"

#include <omp.h>
#include <stdlib.h>

/* Row sums in LANES interleaved partial sums combined in a fixed order: a single running sum
 * is a chain of dependent adds that does not vectorize. */
#define LANES 16

/* sum of x[c] (y NULL) or of (x[c] - m) * (y[c] - m), c in [0, n) */
CPU_INLINE float lane_sum(const float *x, const float *y, float m, int n) {
    float acc[LANES] = {0};
    int c = 0;
    if (y) {
        for (; c + LANES <= n; c += LANES)
            for (int j = 0; j < LANES; j++)
                acc[j] += (x[c + j] - m) * (y[c + j] - m);
        for (; c < n; c++)
            acc[0] += (x[c] - m) * (y[c] - m);
    } else {
        for (; c + LANES <= n; c += LANES)
            for (int j = 0; j < LANES; j++)
                acc[j] += x[c + j];
        for (; c < n; c++)
            acc[0] += x[c];
    }
    float s = 0.0f;
    for (int j = 0; j < LANES; j++)
        s += acc[j];
    return s;
}

/* row n of (B,T,...) is padding (lengths NULL: none) */
CPU_INLINE int ln_padded(const int32_t *lengths, int T, int n) {
    return lengths && n % T >= lengths[n / T];
}

/* out (N,C), mean (N), rstd (N), inp (N,C), w (C), b (C); padded rows of out 0. Two passes
 * over the row for the variance: no cancellation when |mean| >> std. */
CPU_HOT void cpu_layernorm_forward(const struct cpu_ctx *ctx, void *out_, float *mean, float *rstd,
                                   const void *inp_, const void *w_, const void *b_, int N, int C,
                                   float eps, const int32_t *lengths, int T) {
    const int h = ctx->round_half;
    float *out = out_;
    const float *inp = inp_, *w = w_, *b = b_;
#pragma omp parallel for schedule(static) if ((long)N * C > CPU_PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *o = out + (size_t)n * C;
        float m = lane_sum(x, NULL, 0.0f, C) / (float)C;
        float v = lane_sum(x, x, m, C);
        float r = 1.0f / sqrtf(v / (float)C + eps);
        if (ln_padded(lengths, T, n))
            memset(o, 0, (size_t)C * sizeof(float));
        else
            for (int c = 0; c < C; c++)
                o[c] = stored((x[c] - m) * r * w[c] + b[c], h);
        mean[n] = m;
        rstd[n] = r;
    }
}

/* Rows per partial sum of dw and db: the partials are added in block order, so the
 * parameter gradients do not depend on the thread count. */
#define LN_BLOCK 32

/* dbias (C) += column sums of x (N,C): each thread owns a slice of the columns and adds the
 * rows in order straight into dbias, then rounds once: the order and the bits of
 * matmul_backward's db (kernels/cpu/matmul.c), which this sum replaces. Called inside a
 * parallel region. */
CPU_INLINE void ln_bias_next(float *dbias, const float *x, int N, int C, int h) {
    int nth = omp_get_num_threads(), id = omp_get_thread_num();
    int o0 = (int)((long)C * id / nth), o1 = (int)((long)C * (id + 1) / nth);
    for (int n = 0; n < N; n++) {
        const float *d = x + (size_t)n * C;
        for (int o = o0; o < o1; o++)
            dbias[o] += d[o];
    }
    if (h)
        for (int o = o0; o < o1; o++)
            dbias[o] = half_round(dbias[o]);
}

/* dinp (N,C) overwritten, dw (C) +=, db (C) +=; padded rows: dout taken as 0. One pass over the
 * rows: each block of LN_BLOCK rows writes its dinp rows and its partial dw, db while the rows are
 * in cache; the partials are then summed in block order (deterministic, no race). extra: dout's
 * dropout is drawn on a copy of the row (the values `dropout` would have stored), dinp's into
 * dinp_dropped from the stored row (dropout_residual's values); the next bias's column sums
 * follow the row pass. */
CPU_HOT void cpu_layernorm_backward(const struct cpu_ctx *ctx, void *dinp_, void *dw_, void *db_,
                                    const void *dout_, const void *inp_, const void *w_,
                                    const float *mean, const float *rstd, int N, int C,
                                    const int32_t *lengths, int T,
                                    const struct ln_backward_extra *extra) {
    const int h = ctx->round_half;
    float *dinp = dinp_, *dw = dw_, *db = db_;
    const float *dout = dout_, *inp = inp_, *w = w_;
    int blocks = (N + LN_BLOCK - 1) / LN_BLOCK;
    if (blocks == 0) return;
    float p = extra ? extra->p : 0.0f;
    const struct dropout_key *kin = extra && p > 0.0f ? extra->dout_key : NULL;
    const struct dropout_key *kout = extra && p > 0.0f ? extra->dinp_key : NULL;
    float *dropped = extra ? extra->dinp_dropped : NULL;
    float *dbias = extra ? extra->dbias_next : NULL;
    uint32_t thr = p > 0.0f ? dropout_threshold(p) : 0;
    float keep_scale = p > 0.0f ? 1.0f / (1.0f - p) : 1.0f;
    /* ops have no error path: cpu_xmalloc reports the size and aborts if this fails */
    float *partial = cpu_xmalloc((size_t)blocks * 2 * C * sizeof(float)); /* (blocks, dw | db) */
#pragma omp parallel if ((long)N * C > CPU_PAR_MIN)
    {
        float *drow = kin ? cpu_xmalloc((size_t)C * sizeof(float)) : NULL; /* dropout(dout) */
#pragma omp for schedule(static)
        for (int blk = 0; blk < blocks; blk++) {
            float *pw = partial + (size_t)blk * 2 * C, *pb = pw + C;
            memset(pw, 0, 2 * (size_t)C * sizeof(float));
            int n1 = (blk + 1) * LN_BLOCK < N ? (blk + 1) * LN_BLOCK : N;
            for (int n = blk * LN_BLOCK; n < n1; n++) {
                const float *x = inp + (size_t)n * C, *d = dout + (size_t)n * C;
                float m = mean[n], r = rstd[n];
                uint32_t grow = (uint32_t)(n / T);
                uint64_t e0 = (uint64_t)(n % T) * (uint64_t)C;
                float *di = dinp + (size_t)n * C;
                if (ln_padded(lengths, T, n)) { /* dout 0: dinp 0, no dw, db share */
                    memset(di, 0, (size_t)C * sizeof(float));
                    if (dropped) memset(dropped + (size_t)n * C, 0, (size_t)C * sizeof(float));
                    continue;
                }
                if (kin) {
                    memcpy(drow, d, (size_t)C * sizeof(float));
                    dropout_span(drow, C, e0, kin->row0 + grow, kin, thr, keep_scale, h);
                    d = drow;
                }
                /* sums of dnorm and dnorm * norm, in LANES interleaved partial sums */
                float sdl[LANES] = {0}, sxl[LANES] = {0};
                int c = 0;
                for (; c + LANES <= C; c += LANES)
                    for (int j = 0; j < LANES; j++) {
                        float dn = d[c + j] * w[c + j];
                        sdl[j] += dn;
                        sxl[j] += dn * (x[c + j] - m);
                    }
                for (; c < C; c++) {
                    float dn = d[c] * w[c];
                    sdl[0] += dn;
                    sxl[0] += dn * (x[c] - m);
                }
                float sd = 0.0f, sdx = 0.0f;
                for (int j = 0; j < LANES; j++) {
                    sd += sdl[j];
                    sdx += sxl[j];
                }
                sd /= (float)C;
                sdx = sdx * r / (float)C;
#pragma omp simd
                for (c = 0; c < C; c++) {
                    float xn = (x[c] - m) * r;
                    di[c] = stored((d[c] * w[c] - sd - xn * sdx) * r, h);
                    pw[c] += d[c] * xn;
                    pb[c] += d[c];
                }
                if (dropped) {
                    float *o = dropped + (size_t)n * C;
                    memcpy(o, di, (size_t)C * sizeof(float));
                    if (kout) dropout_span(o, C, e0, kout->row0 + grow, kout, thr, keep_scale, h);
                }
            }
        }
#pragma omp for schedule(static)
        for (int c = 0; c < C; c++) {
            float sw = 0.0f, sb = 0.0f;
            for (int blk = 0; blk < blocks; blk++) {
                sw += partial[(size_t)blk * 2 * C + c];
                sb += partial[(size_t)blk * 2 * C + C + c];
            }
            dw[c] = stored(dw[c] + sw, h);
            db[c] = stored(db[c] + sb, h);
        }
        /* the implicit barrier above: every row of dinp / dinp_dropped is written */
        if (dbias) ln_bias_next(dbias, dropped ? dropped : dinp, N, C, h);
        free(drow);
    }
    free(partial);
}

/* dropout_residual then layernorm_forward: the reference the fused backends match */
void cpu_residual_layernorm_forward(const struct cpu_ctx *ctx, void *out, float *mean, float *rstd,
                                    void *r, const void *res, const void *x, const void *bias,
                                    const void *w, const void *b, int B, int T, int C, float eps,
                                    const int32_t *lengths, float p,
                                    const struct dropout_key *key) {
    cpu_dropout_residual(ctx, r, res, x, bias, B, T, C, p, key);
    cpu_layernorm_forward(ctx, out, mean, rstd, r, w, b, B * T, C, eps, lengths, T);
}
