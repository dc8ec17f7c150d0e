/* attention.c — multi-head attention core, causal (CLM) or bidirectional over each row's real
 * keys (MLM, TLM): sgemm for q k^T and P v, fp32 softmax,
 * attention dropout keyed through Philox (kernels/philox.h). The probabilities live only in
 * per-thread (T,T) buffers: the forward saves each row's log-sum-exp, and the backward
 * recomputes the scores and the softmax of one (b,h) at a time, exactly as the forward did.
 *
 * Layout: q, k, v, out are (B,T,C) with head h in columns [h*HS, (h+1)*HS), so a head's
 * (T,HS) slice is a strided matrix (leading dimension C) that sgemm reads in place. Each
 * OpenMP thread takes whole (b,h) pairs and runs their products as single-threaded sgemm
 * calls on causal tiles (ATT_TILE below).
 *
 * Visibility: a causal query t sees keys [0, t]; a bidirectional one (lengths != NULL) sees
 * keys [0, kl) with kl = att_keys(lengths[b]), padded queries included (HF masks keys only;
 * the model zeroes the padded outputs). The products then span kl keys for every row tile. */
#include "kernels/cpu/cpu.h"

#include <cblas.h>
#include <float.h>
#include <omp.h>
#include <stdlib.h>

/* row[0..len) := softmax(row[0..len)) in fp32 and row[len..width) := 0, for width in
 * [len, cap] rounded up to whole vectors: the causal rows have every length, and their scalar
 * remainders cost more than the padded lanes (scores past len are finite and masked out of the
 * sum). */
CPU_INLINE float softmax_row(float *row, int len, int cap) {
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
    return mx + logf(sum); /* the row's log-sum-exp */
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

/* Rows per tile of the causal products. Row tile [r0, r0+ATT_TILE) of the scores needs the
 * keys 0 .. r0+ATT_TILE-1 only, so the products skip the blocks above the diagonal: at
 * T = 128 they do 10/16 of the full (T,T) work. A multiple of 16, so that softmax_row's padded
 * width never passes the columns a tile computed. */
#define ATT_TILE 32

/* Keys of a bidirectional row of length len, 0 for a causal call. An empty row keeps key 0,
 * so that its softmax is defined (its outputs are padding, zeroed by the model). */
static int att_keys(const int32_t *lengths, int b, int T) {
    if (!lengths) return 0;
    int len = lengths[b];
    return len < 1 ? 1 : len > T ? T : len;
}
/* keys [0, ATT_ROW_LEN) are visible to query t */
#define ATT_ROW_LEN(t, kl) ((kl) ? (kl) : (t) + 1)

/* dst (HS,T) = the head slice src (T,HS) (row stride C), transposed. OpenBLAS's small-matrix
 * kernels run a product with a transposed right operand at half the speed of the others
 * (measured: 66 against 173 GFLOP/s at 32x32x32), so q k^T and dout v^T multiply by a
 * transposed copy instead. */
static void transpose_head(float *dst, const float *src, int T, int C, int HS) {
    for (int t = 0; t < T; t++)
        for (int c = 0; c < HS; c++)
            dst[(size_t)c * T + t] = src[(size_t)t * C + c];
}

/* rows [r0, r0+rows) of sc (T,T) over keys [0, c1) = scale * q_bh @ kt, kt = k_bh^T (HS,T) */
static void scores_tile(float *sc, const float *qh, const float *kt, int r0, int rows, int c1,
                        int T, int C, int HS, float scale) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, c1, HS, scale, qh + (size_t)r0 * C,
                C, kt, T, 0.0f, sc + (size_t)r0 * T, T);
}

/* Rows [r0, r1) of the post-dropout probabilities P' = dropout(P) of head hd of sequence b,
 * from the P rows of a into pd (ld T), columns [0, c1) (zero past the visible keys), in fp32.
 * Forward and backward draw the same mask through this one function. */
CPU_INLINE void dropped_tile(float *pd, const float *a, int r0, int r1, int c1, int kl, int T,
                             int hd, int b, const struct dropout_key *key, uint32_t thr,
                             float keep_scale) {
    for (int t = r0; t < r1; t++) {
        float *row = pd + (size_t)t * T;
        int len = ATT_ROW_LEN(t, kl);
        memcpy(row, a + (size_t)t * T, (size_t)len * sizeof(float));
        uint64_t e0 = ((uint64_t)hd * T + (uint64_t)t) * (uint64_t)T;
        dropout_span_padded(row, len, T, e0, key->row0 + (uint32_t)b, key, thr, keep_scale, 0);
        memset(row + len, 0, (size_t)(c1 - len) * sizeof(float));
    }
}

/* Rows [r0, r1) of the probabilities P of one (b,h) into a (ld T), zero past the visible
 * keys: the scores of the tile's rows over keys [0, c1), then their softmax. The forward and
 * the backward both build P here, so the backward's P has the forward's bits. Each row's
 * log-sum-exp goes to lse[t] when lse is not NULL. */
CPU_INLINE void probs_tile(float *a, float *lse, const float *qh, const float *kt, int r0, int r1,
                           int c1, int kl, int T, int C, int HS, float scale) {
    scores_tile(a, qh, kt, r0, r1 - r0, c1, T, C, HS, scale);
    for (int t = r0; t < r1; t++) {
        float *row = a + (size_t)t * T;
        int len = ATT_ROW_LEN(t, kl);
        float l = softmax_row(row, len, c1);
        if (lse) lse[t] = l;
        memset(row + len, 0, (size_t)(T - len) * sizeof(float));
    }
}

CPU_HOT void cpu_attention_forward(const struct cpu_ctx *ctx, void *out_, float *lse,
                                   const void *q_, const void *k_, const void *v_,
                                   const int32_t *lengths, int B, int T, int C, int NH, float p,
                                   const struct dropout_key *key) {
    const int h = ctx->round_half;
    float *out = out_;
    const float *q = q_, *k = k_, *v = v_;
    int HS = C / NH;
    float scale = 1.0f / sqrtf((float)HS);
    uint32_t thr = p > 0.0f ? dropout_threshold(p) : 0;
    float keep_scale = p > 0.0f ? 1.0f / (1.0f - p) : 1.0f;
    size_t TT = (size_t)T * T;
    int nth = omp_get_max_threads();
    /* per thread, the (T,T) probabilities and post-dropout probabilities of the (b,h) at hand */
    /* ops have no error path: cpu_xmalloc reports the size and aborts if this fails */
    float *a_all = cpu_xmalloc((size_t)nth * TT * sizeof(float));
    float *pd_all = p > 0.0f ? cpu_xmalloc((size_t)nth * TT * sizeof(float)) : NULL;
    float *kt_all = cpu_xmalloc((size_t)nth * T * HS * sizeof(float));
#pragma omp parallel for schedule(static) if ((long)B * NH * T * T * HS > CPU_PAR_MIN)
    for (int bh = 0; bh < B * NH; bh++) {
        int b = bh / NH, hd = bh % NH;
        size_t off = (size_t)b * T * C + (size_t)hd * HS;
        float *a = a_all + (size_t)omp_get_thread_num() * TT;
        float *pd = pd_all ? pd_all + (size_t)omp_get_thread_num() * TT : a;
        float *kt = kt_all + (size_t)omp_get_thread_num() * T * HS;
        int kl = att_keys(lengths, b, T);
        transpose_head(kt, k + off, T, C, HS);
        for (int r0 = 0; r0 < T; r0 += ATT_TILE) {
            int rows = T - r0 < ATT_TILE ? T - r0 : ATT_TILE, c1 = kl ? kl : r0 + rows;
            probs_tile(a, lse + (size_t)bh * T, q + off, kt, r0, r0 + rows, c1, kl, T, C, HS,
                       scale);
            if (pd_all) dropped_tile(pd, a, r0, r0 + rows, c1, kl, T, hd, b, key, thr, keep_scale);
            /* out rows [r0, c1) = P' rows (rows, c1) @ v keys [0, c1) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, HS, c1, 1.0f,
                        pd + (size_t)r0 * T, T, v + off, C, 0.0f, out + off + (size_t)r0 * C, C);
        }
        if (h)
            for (int t = 0; t < T; t++)
                for (int c = 0; c < HS; c++)
                    out[off + (size_t)t * C + c] = half_round(out[off + (size_t)t * C + c]);
    }
    free(a_all);
    free(pd_all);
    free(kt_all);
}

/* With P the probabilities (rebuilt as the forward built them) and P' = P * mask / (1-p),
 * out = P' v:
 *   dv = P'^T dout,  dP' = dout v^T,  dP = dP' * mask / (1-p),
 *   dS = P * (dP - sum_s P dP),  dq = scale * dS k,  dk = scale * dS^T q.
 * A kept element of P' is nonzero wherever P is (and where P is 0, dS is 0 whatever the mask),
 * so dP takes its mask from P' != 0. The row sums of P dP are taken from the rebuilt rows (the
 * exact form of dout . out, which the CUDA backend uses). P, P', dS are fp32 per-thread
 * buffers; only dq, dk, dv are storage. Every product is tiled as in the forward: row tiles for
 * dv, dP' and dq (keys up to the tile's last row), column tiles for dk (queries from the
 * tile's first row). */
CPU_HOT void cpu_attention_backward(const struct cpu_ctx *ctx, void *dq_, void *dk_, void *dv_,
                                    const void *dout_, const void *out_, const float *lse,
                                    const void *q_, const void *k_, const void *v_,
                                    const int32_t *lengths, int B, int T, int C, int NH, float p,
                                    const struct dropout_key *key) {
    const int h = ctx->round_half;
    float *dq = dq_, *dk = dk_, *dv = dv_;
    const float *dout = dout_, *q = q_, *k = k_, *v = v_;
    (void)out_;
    (void)lse;
    int HS = C / NH;
    float scale = 1.0f / sqrtf((float)HS);
    uint32_t thr = p > 0.0f ? dropout_threshold(p) : 0;
    float keep_scale = p > 0.0f ? 1.0f / (1.0f - p) : 1.0f;
    size_t TT = (size_t)T * T;
    int nth = omp_get_max_threads();
    /* ops have no error path: cpu_xmalloc reports the size and aborts if this fails */
    float *a_all = cpu_xmalloc((size_t)nth * TT * sizeof(float));
    float *ds_all = cpu_xmalloc((size_t)nth * TT * sizeof(float));
    float *pd_all = p > 0.0f ? cpu_xmalloc((size_t)nth * TT * sizeof(float)) : NULL;
    float *kt_all = cpu_xmalloc((size_t)nth * T * HS * sizeof(float));
    float *vt_all = cpu_xmalloc((size_t)nth * T * HS * sizeof(float));
#pragma omp parallel for schedule(static) if ((long)B * NH * T * T * HS > CPU_PAR_MIN)
    for (int bh = 0; bh < B * NH; bh++) {
        int b = bh / NH, hd = bh % NH, th = omp_get_thread_num();
        size_t off = (size_t)b * T * C + (size_t)hd * HS;
        float *a = a_all + (size_t)th * TT, *ds = ds_all + (size_t)th * TT;
        float *pd = pd_all ? pd_all + (size_t)th * TT : NULL;
        const float *pdr = pd ? pd : a;
        float *kt = kt_all + (size_t)th * T * HS, *vt = vt_all + (size_t)th * T * HS;
        int kl = att_keys(lengths, b, T);
        transpose_head(kt, k + off, T, C, HS);
        transpose_head(vt, v + off, T, C, HS);
        for (int s = kl; kl && s < T; s++) /* keys no query sees */
            memset(dv + off + (size_t)s * C, 0, (size_t)HS * sizeof(float));
        for (int r0 = 0; r0 < T; r0 += ATT_TILE) {
            int rows = T - r0 < ATT_TILE ? T - r0 : ATT_TILE, c1 = kl ? kl : r0 + rows;
            probs_tile(a, NULL, q + off, kt, r0, r0 + rows, c1, kl, T, C, HS, scale);
            if (pd) dropped_tile(pd, a, r0, r0 + rows, c1, kl, T, hd, b, key, thr, keep_scale);
            if (kl) { /* dv keys [0, kl) (+)= P' (queries of the tile, keys [0, kl))^T @ dout */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kl, HS, rows, 1.0f,
                            pdr + (size_t)r0 * T, T, dout + off + (size_t)r0 * C, C,
                            r0 ? 1.0f : 0.0f, dv + off, C);
            } else { /* causal: keys [r0, c1) meet their first queries here */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r0, HS, rows, 1.0f,
                            pdr + (size_t)r0 * T, T, dout + off + (size_t)r0 * C, C, 1.0f, dv + off,
                            C);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, rows, HS, rows, 1.0f,
                            pdr + (size_t)r0 * T + r0, T, dout + off + (size_t)r0 * C, C, 0.0f,
                            dv + off + (size_t)r0 * C, C);
            }
            /* dP' rows of the tile */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, c1, HS, 1.0f,
                        dout + off + (size_t)r0 * C, C, vt, T, 0.0f, ds + (size_t)r0 * T, T);
            for (int t = r0; t < r0 + rows; t++) {
                float *d = ds + (size_t)t * T;
                const float *P = a + (size_t)t * T;
                int len = ATT_ROW_LEN(t, kl);
                if (pd) {
                    const float *kept = pd + (size_t)t * T;
                    for (int s = 0; s < len; s++) {
                        float x = d[s] * keep_scale; /* the select through bit masks */
                        uint32_t bits, keep = -(uint32_t)(kept[s] != 0.0f);
                        memcpy(&bits, &x, sizeof bits);
                        bits &= keep;
                        memcpy(&d[s], &bits, sizeof bits);
                    }
                }
                float dot = dot_lanes(P, d, len);
#pragma omp simd
                for (int s = 0; s < len; s++)
                    d[s] = P[s] * (d[s] - dot);
                memset(d + len, 0, (size_t)(T - len) * sizeof(float));
            }
            /* dq rows [r0, c1) = scale * ds (rows, keys [0, c1)) @ k */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, HS, c1, scale,
                        ds + (size_t)r0 * T, T, k + off, C, 0.0f, dq + off + (size_t)r0 * C, C);
        }
        for (int s0 = 0; s0 < T; s0 += ATT_TILE) {
            /* dk keys [s0, s0+cols) = scale * ds (queries [q0,T), keys of the tile)^T @ q,
             * q0 = s0 when causal (the earlier queries do not see these keys), else 0; keys
             * past kl have ds columns of zeros */
            int cols = T - s0 < ATT_TILE ? T - s0 : ATT_TILE, q0 = kl ? 0 : s0;
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, cols, HS, T - q0, scale,
                        ds + (size_t)q0 * T + s0, T, q + off + (size_t)q0 * C, C, 0.0f,
                        dk + off + (size_t)s0 * C, C);
        }
    }
    free(a_all);
    free(ds_all);
    free(pd_all);
    free(kt_all);
    free(vt_all);
    size_t n = (size_t)B * T * C;
    cpu_round_storage(dq, n, h);
    cpu_round_storage(dk, n, h);
    cpu_round_storage(dv, n, h);
}
