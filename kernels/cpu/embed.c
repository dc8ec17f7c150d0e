/* embed.c — word + position (+ language) embeddings and their deterministic backward. */
#include "kernels/cpu/cpu.h"

#include <omp.h>

/* out (B,T,C) = wte[ids] + wpe[t] + (wlang ? wlang[langs] : 0), summed in HF's order. */
CPU_HOT void cpu_embed_forward(const struct cpu_ctx *ctx, void *out_, const int32_t *ids,
                               const int32_t *langs, const void *wte_, const void *wpe_,
                               const void *wlang_, int B, int T, int C) {
    const int h = ctx->round_half;
    float *out = out_;
    const float *wte = wte_, *wpe = wpe_, *wlang = wlang_;
    long N = (long)B * T;
#pragma omp parallel for schedule(static) if (N * C > CPU_PAR_MIN)
    for (long n = 0; n < N; n++) {
        float *o = out + n * C;
        const float *e = wte + (size_t)ids[n] * C, *p = wpe + (size_t)(n % T) * C;
        if (wlang) {
            const float *l = wlang + (size_t)langs[n] * C;
            for (int c = 0; c < C; c++)
                o[c] = stored(e[c] + p[c] + l[c], h);
        } else {
            for (int c = 0; c < C; c++)
                o[c] = stored(e[c] + p[c], h);
        }
    }
}

/* Each thread owns a fixed slice of the C columns and walks the tokens in order, so every
 * element's sum has the same order whatever the thread count and no row is written by two
 * threads. */
CPU_HOT void cpu_embed_backward(const struct cpu_ctx *ctx, void *dwte_, void *dwpe_, void *dwlang_,
                                const void *dout_, const int32_t *ids, const int32_t *langs, int B,
                                int T, int C, int V, int NL) {
    const int h = ctx->round_half;
    float *dwte = dwte_, *dwpe = dwpe_, *dwlang = dwlang_;
    const float *dout = dout_;
    long N = (long)B * T;
#pragma omp parallel if (N * C > CPU_PAR_MIN)
    {
        int nth = omp_get_num_threads(), id = omp_get_thread_num();
        int c0 = (int)((long)C * id / nth), c1 = (int)((long)C * (id + 1) / nth);
        for (long n = 0; n < N; n++) {
            const float *d = dout + n * C;
            float *w = dwte + (size_t)ids[n] * C, *p = dwpe + (size_t)(n % T) * C;
            for (int c = c0; c < c1; c++)
                w[c] = stored(w[c] + d[c], h);
            for (int c = c0; c < c1; c++)
                p[c] = stored(p[c] + d[c], h);
            if (dwlang) {
                float *l = dwlang + (size_t)langs[n] * C;
                for (int c = c0; c < c1; c++)
                    l[c] = stored(l[c] + d[c], h);
            }
        }
    }
    (void)V;
    (void)NL;
}
