/* attention.c — causal multi-head attention core: sgemm for q k^T and att v, fp32 softmax,
 * attention dropout keyed through Philox (kernels/philox.h).
 *
 * Layout: q, k, v, out are (B,T,C) with head h in columns [h*HS, (h+1)*HS), so a head's
 * (T,HS) slice is a strided matrix (leading dimension C) that sgemm reads in place. The
 * products run one (b,h) at a time on the calling thread (OpenBLAS threads them itself);
 * the row-wise softmax work runs in OpenMP loops. */
#include "kernels/cpu/cpu.h"
#include "core/util.h"

#include <cblas.h>
#include <float.h>
#include <omp.h>
#include <stdlib.h>

/* row[0..len) := softmax(row[0..len)) in fp32 and row[len..width) := 0, for width in
 * [len, cap] rounded up to whole vectors: the causal rows have every length, and their scalar
 * remainders cost more than the padded lanes (scores past len are finite and masked out of the
 * sum). The same code serves the backward's recompute, so forward and backward see
 * bit-identical probabilities. */
CPU_INLINE void softmax_row(float *row, int len, int cap) {
    float mx = row_max(row, len);
    int width = (len + 15) & ~15;
    if (width > cap) width = cap;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int s = 0; s < width; s++) {
        float e = fast_expf(row[s] - mx);
        uint32_t bits, keep = -(uint32_t)(s < len);
        memcpy(&bits, &e, sizeof bits);
        bits &= keep; /* integer masks: a float ?: does not vectorize */
        memcpy(&e, &bits, sizeof e);
        row[s] = e;
        sum += e;
    }
    float inv = 1.0f / sum;
#pragma omp simd
    for (int s = 0; s < len; s++)
        row[s] *= inv;
}

/* sum of a[s] b[s], s in [0, n), in 16 interleaved partial sums: a single running sum is a
 * chain of dependent adds that does not vectorize */
CPU_INLINE float dot_lanes(const float *a, const float *b, int n) {
    float acc[16] = {0};
    int s = 0;
    for (; s + 16 <= n; s += 16)
        for (int j = 0; j < 16; j++)
            acc[j] += a[s + j] * b[s + j];
    for (; s < n; s++)
        acc[0] += a[s] * b[s];
    float sum = 0.0f;
    for (int j = 0; j < 16; j++)
        sum += acc[j];
    return sum;
}

/* sc (T,T) = scale * q_bh (T,HS) @ k_bh (T,HS)^T, all rows and columns (the softmax reads only
 * s <= t). */
static void scores(float *sc, const float *qh, const float *kh, int T, int C, int HS, float scale) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, HS, scale, qh, C, kh, C, 0.0f, sc,
                T);
}

CPU_HOT void cpu_attention_forward(int h, void *out_, void *att_, const void *q_, const void *k_,
                                   const void *v_, int B, int T, int C, int NH, float p,
                                   const struct dropout_key *key) {
    float *out = out_, *att = att_;
    const float *q = q_, *k = k_, *v = v_;
    int HS = C / NH;
    float scale = 1.0f / sqrtf((float)HS);
    uint32_t thr = p > 0.0f ? dropout_threshold(p) : 0;
    float keep_scale = p > 0.0f ? 1.0f / (1.0f - p) : 1.0f;
    size_t TT = (size_t)T * T;
#pragma omp parallel for schedule(static) if ((long)B * NH * T * T * HS > CPU_PAR_MIN)
    for (int bh = 0; bh < B * NH; bh++) {
        int b = bh / NH, hd = bh % NH;
        size_t off = (size_t)b * T * C + (size_t)hd * HS;
        float *a = att + (size_t)bh * TT;
        scores(a, q + off, k + off, T, C, HS, scale);
        for (int t = 0; t < T; t++) {
            float *row = a + (size_t)t * T;
            softmax_row(row, t + 1, T);
            if (p > 0.0f) {
                uint64_t e0 = ((uint64_t)hd * T + (uint64_t)t) * (uint64_t)T;
                dropout_span(row, t + 1, e0, key->row0 + (uint32_t)b, key, thr, keep_scale, 0);
            }
            if (h)
                for (int s = 0; s <= t; s++)
                    row[s] = half_round(row[s]);
            for (int s = t + 1; s < T; s++)
                row[s] = 0.0f;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, HS, T, 1.0f, a, T, v + off, C,
                    0.0f, out + off, C);
        if (h)
            for (int t = 0; t < T; t++)
                for (int c = 0; c < HS; c++)
                    out[off + (size_t)t * C + c] = half_round(out[off + (size_t)t * C + c]);
    }
}

/* With P the pre-dropout probabilities, P' = P * mask / (1-p) the saved ones and out = P' v:
 *   dv = P'^T dout,  dP' = dout v^T,  dP = dP' * mask / (1-p),
 *   dS = P * (dP - sum_s P dP),  dq = scale * dS k,  dk = scale * dS^T q.
 * With dropout the dropped entries of P are not in att, so P is recomputed from q and k. */
CPU_HOT void cpu_attention_backward(int h, void *dq_, void *dk_, void *dv_, void *scratch_,
                                    const void *dout_, const void *att_, const void *q_,
                                    const void *k_, const void *v_, int B, int T, int C, int NH,
                                    float p, const struct dropout_key *key) {
    float *dq = dq_, *dk = dk_, *dv = dv_, *scratch = scratch_;
    const float *dout = dout_, *att = att_, *q = q_, *k = k_, *v = v_;
    int HS = C / NH;
    float scale = 1.0f / sqrtf((float)HS);
    uint32_t thr = p > 0.0f ? dropout_threshold(p) : 0;
    float keep_scale = p > 0.0f ? 1.0f / (1.0f - p) : 1.0f;
    size_t TT = (size_t)T * T;
    int nth = omp_get_max_threads();
    /* one T x T buffer per thread for the recomputed probabilities */
    /* ops have no error path: xmalloc reports the size and exits if this fails */
    float *probs_all = p > 0.0f ? xmalloc((size_t)nth * TT * sizeof(float)) : NULL;
#pragma omp parallel for schedule(static) if ((long)B * NH * T * T * HS > CPU_PAR_MIN)
    for (int bh = 0; bh < B * NH; bh++) {
        int b = bh / NH, hd = bh % NH;
        size_t off = (size_t)b * T * C + (size_t)hd * HS;
        const float *a = att + (size_t)bh * TT;
        float *ds = scratch + (size_t)bh * TT;
        float *probs = probs_all ? probs_all + (size_t)omp_get_thread_num() * TT : NULL;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, HS, T, 1.0f, a, T, dout + off, C,
                    0.0f, dv + off, C);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, HS, 1.0f, dout + off, C, v + off,
                    C, 0.0f, ds, T);
        if (probs) scores(probs, q + off, k + off, T, C, HS, scale);
        for (int t = 0; t < T; t++) {
            float *d = ds + (size_t)t * T;
            const float *P = a + (size_t)t * T;
            if (probs) {
                float *pr = probs + (size_t)t * T;
                softmax_row(pr, t + 1, T);
                uint64_t e0 = ((uint64_t)hd * T + (uint64_t)t) * (uint64_t)T;
                dropout_span(d, t + 1, e0, key->row0 + (uint32_t)b, key, thr, keep_scale, 0);
                P = pr;
            }
            float dot = dot_lanes(P, d, t + 1);
            if (h) {
                for (int s = 0; s <= t; s++)
                    d[s] = half_round(P[s] * (d[s] - dot));
            } else {
                for (int s = 0; s <= t; s++)
                    d[s] = P[s] * (d[s] - dot);
            }
            for (int s = t + 1; s < T; s++)
                d[s] = 0.0f;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, HS, T, scale, ds, T, k + off, C,
                    0.0f, dq + off, C);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, HS, T, scale, ds, T, q + off, C,
                    0.0f, dk + off, C);
    }
    free(probs_all);
    size_t n = (size_t)B * T * C;
    cpu_round_storage(dq, n, h);
    cpu_round_storage(dk, n, h);
    cpu_round_storage(dv, n, h);
}
