/* layernorm.c — LayerNorm over the last dim with fp32 statistics (PyTorch's biased variance). */
#include "kernels/cpu/cpu.h"

#include <omp.h>

/* out (N,C), mean (N), rstd (N), inp (N,C), w (C), b (C). Two passes over the row for the
 * variance: no cancellation when |mean| >> std. */
void cpu_layernorm_forward(int h, void *out_, float *mean, float *rstd, const void *inp_,
                           const void *w_, const void *b_, int N, int C, float eps) {
    float *out = out_;
    const float *inp = inp_, *w = w_, *b = b_;
#pragma omp parallel for schedule(static) if ((long)N * C > CPU_PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *o = out + (size_t)n * C;
        float s = 0.0f;
        for (int c = 0; c < C; c++)
            s += x[c];
        float m = s / (float)C;
        float v = 0.0f;
        for (int c = 0; c < C; c++) {
            float d = x[c] - m;
            v += d * d;
        }
        float r = 1.0f / sqrtf(v / (float)C + eps);
        for (int c = 0; c < C; c++)
            o[c] = st((x[c] - m) * r * w[c] + b[c], h);
        mean[n] = m;
        rstd[n] = r;
    }
}

/* dinp (N,C) overwritten, dw (C) +=, db (C) +=. Rows in parallel for dinp; the parameter
 * gradients in a second parallel loop over column slices so each sum runs over n in order
 * (deterministic, no race). */
void cpu_layernorm_backward(int h, void *dinp_, void *dw_, void *db_, const void *dout_,
                            const void *inp_, const void *w_, const float *mean, const float *rstd,
                            int N, int C) {
    float *dinp = dinp_, *dw = dw_, *db = db_;
    const float *dout = dout_, *inp = inp_, *w = w_;
#pragma omp parallel if ((long)N * C > CPU_PAR_MIN)
    {
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            const float *x = inp + (size_t)n * C, *d = dout + (size_t)n * C;
            float m = mean[n], r = rstd[n];
            float sd = 0.0f, sdx = 0.0f; /* sums of dnorm and dnorm * norm */
            for (int c = 0; c < C; c++) {
                float dn = d[c] * w[c];
                sd += dn;
                sdx += dn * (x[c] - m) * r;
            }
            sd /= (float)C;
            sdx /= (float)C;
            float *di = dinp + (size_t)n * C;
            for (int c = 0; c < C; c++) {
                float xn = (x[c] - m) * r;
                di[c] = st((d[c] * w[c] - sd - xn * sdx) * r, h);
            }
        }
        int nth = omp_get_num_threads(), id = omp_get_thread_num();
        int c0 = (int)((long)C * id / nth), c1 = (int)((long)C * (id + 1) / nth);
        for (int n = 0; n < N; n++) {
            const float *x = inp + (size_t)n * C, *d = dout + (size_t)n * C;
            float m = mean[n], r = rstd[n];
            for (int c = c0; c < c1; c++) {
                dw[c] += d[c] * (x[c] - m) * r;
                db[c] += d[c];
            }
        }
        if (h) {
            for (int c = c0; c < c1; c++) {
                dw[c] = half_round(dw[c]);
                db[c] = half_round(db[c]);
            }
        }
    }
}
