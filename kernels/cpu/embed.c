/* embed.c — word + position (+ language) embeddings and their deterministic backward. */
#include "kernels/cpu/cpu.h"

#include <stdlib.h>

/* out (B,T,C) = wte[ids] + wpe[pos or t] + (wlang ? wlang[langs] : 0), summed in HF's order. */
CPU_HOT void cpu_embed_forward(const struct cpu_ctx *ctx, void *out_, const int32_t *ids,
                               const int32_t *langs, const int32_t *pos, const void *wte_,
                               const void *wpe_, const void *wlang_, int B, int T, int C) {
    const int h = ctx->round_half;
    float *out = out_;
    const float *wte = wte_, *wpe = wpe_, *wlang = wlang_;
    long N = (long)B * T;
#pragma omp parallel for schedule(static) if (N * C > CPU_PAR_MIN)
    for (long n = 0; n < N; n++) {
        float *o = out + n * C;
        const float *e = wte + (size_t)ids[n] * C;
        const float *p = wpe + (size_t)(pos ? pos[n] : n % T) * C;
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

/* Rows per chunk of the language-embedding column sums: the CUDA backend's COLSUM_ROWS, so that
 * both backends add the same fp32 partial sums in the same order. */
#define EMBED_LANG_CHUNK 256

/* dtable (rows,C) += per row r, the fp32 sum of dout over the positions n with index[n] == r,
 * in ascending n, rounded to storage once. The positions are grouped by a stable counting
 * sort; the CUDA backend sorts (index, position) keys and sums each run in the same order,
 * so the two give the same bits. A row gets one rounding however often its token occurs. */
CPU_HOT static void embed_rows_backward(int h, float *dtable, const float *dout,
                                        const int32_t *index, long N, int C, int rows) {
    /* ops have no error path: cpu_xmalloc reports the size and aborts if this fails */
    long *start = cpu_xmalloc(((size_t)rows + 1) * sizeof(long));
    memset(start, 0, ((size_t)rows + 1) * sizeof(long));
    long *order = cpu_xmalloc((size_t)(N ? N : 1) * sizeof(long));
    for (long n = 0; n < N; n++)
        start[index[n] + 1]++;
    for (int r = 0; r < rows; r++)
        start[r + 1] += start[r];
    long *fill = cpu_xmalloc(((size_t)rows + 1) * sizeof(long));
    memcpy(fill, start, ((size_t)rows + 1) * sizeof(long));
    for (long n = 0; n < N; n++)
        order[fill[index[n]]++] = n;
    free(fill);
#pragma omp parallel if (N * C > CPU_PAR_MIN)
    {
        float *acc = cpu_xmalloc((size_t)C * sizeof(float));
#pragma omp for schedule(dynamic, 64)
        for (int r = 0; r < rows; r++) {
            if (start[r] == start[r + 1]) continue;
            memset(acc, 0, (size_t)C * sizeof(float));
            for (long j = start[r]; j < start[r + 1]; j++) {
                const float *d = dout + (size_t)order[j] * C;
                for (int c = 0; c < C; c++)
                    acc[c] += d[c];
            }
            float *w = dtable + (size_t)r * C;
            for (int c = 0; c < C; c++)
                w[c] = stored(w[c] + acc[c], h);
        }
        free(acc);
    }
    free(start);
    free(order);
}

/* dwte by token (embed_rows_backward); dwpe (T rows) += the column sums of dout viewed as
 * (B, T*C), summed over b in order; dwlang += per language the sums over
 * EMBED_LANG_CHUNK-row chunks, added chunk after chunk. Every element is summed in fp32 in a
 * fixed order and rounded to storage once, whatever the thread count. */
CPU_HOT void cpu_embed_backward(const struct cpu_ctx *ctx, void *dwte_, void *dwpe_, void *dwlang_,
                                const void *dout_, const int32_t *ids, const int32_t *langs,
                                const int32_t *pos, int B, int T, int C, int V, int NL) {
    const int h = ctx->round_half;
    float *dwte = dwte_, *dwpe = dwpe_, *dwlang = dwlang_;
    const float *dout = dout_;
    long N = (long)B * T, TC = (long)T * C;
    embed_rows_backward(h, dwte, dout, ids, N, C, V);
    if (pos) { /* grouped like the tokens: ascending positions per row of dwpe */
        int rows = 0;
        for (long n = 0; n < N; n++)
            rows = pos[n] >= rows ? pos[n] + 1 : rows;
        embed_rows_backward(h, dwpe, dout, pos, N, C, rows);
    }
#pragma omp parallel for schedule(static) if (!pos && N * C > CPU_PAR_MIN)
    for (long i = 0; i < (pos ? 0 : TC); i++) {
        float acc = 0.0f;
        for (int b = 0; b < B; b++)
            acc += dout[(size_t)b * TC + i];
        dwpe[i] = stored(dwpe[i] + acc, h);
    }
    if (!dwlang || NL <= 0) return;
    long chunks = (N + EMBED_LANG_CHUNK - 1) / EMBED_LANG_CHUNK;
    float *partial = cpu_xmalloc((size_t)(chunks ? chunks : 1) * NL * C * sizeof(float));
#pragma omp parallel for schedule(static) if (N * C > CPU_PAR_MIN)
    for (long k = 0; k < chunks; k++) {
        float *pk = partial + (size_t)k * NL * C;
        memset(pk, 0, (size_t)NL * C * sizeof(float));
        long n1 = (k + 1) * EMBED_LANG_CHUNK < N ? (k + 1) * EMBED_LANG_CHUNK : N;
        for (long n = k * EMBED_LANG_CHUNK; n < n1; n++) {
            float *pl = pk + (size_t)langs[n] * C;
            const float *d = dout + (size_t)n * C;
            for (int c = 0; c < C; c++)
                pl[c] += d[c];
        }
    }
    for (long i = 0; i < (long)NL * C; i++) {
        float acc = 0.0f;
        for (long k = 0; k < chunks; k++)
            acc += partial[(size_t)k * NL * C + i];
        dwlang[i] = stored(dwlang[i] + acc, h);
    }
    free(partial);
}
