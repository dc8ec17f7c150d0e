/* test_dropout_matches_philox — the CPU backend draws exactly the masks that kernels/philox.h
 * defines (the convention both backends share): the dropout op on (B,T,C) with odd C (rows
 * that start mid Philox block) and attention dropout on (B,NH,T,T), element by element against
 * dropout_keep(), in fp32 and fp16 precision, and the kept fraction is 1-p within 5 sigma.
 * Attention: the product with an identity v shows the probabilities (p = 0) and the dropped
 * ones, out == keep ? probabilities / (1-p) : 0; the saved log-sum-exp does not depend on
 * dropout and matches log sum_s exp(q.k / sqrt(HS)) computed here in double. */
#include "kernels/ops.h"
#include "kernels/philox.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_dropout(const struct ops *ops, int B, int T, int C, float p) {
    size_t n = (size_t)B * T * C;
    float *x = malloc(n * sizeof(float)), *y = ops->alloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        x[i] = 0.5f + (float)(i % 13) * 0.25f; /* exact in half */
    ops->to_device(y, x, n * sizeof(float));
    struct dropout_key k = {0xfeedbeef12345ULL, 41, 9, DROPOUT_TENSOR_FFN_OUT(3)};
    ops->dropout(y, B, T, C, p, &k);
    uint32_t thr = dropout_threshold(p);
    long bad = 0, kept = 0;
    for (int b = 0; b < B; b++) {
        for (size_t e = 0; e < (size_t)T * C; e++) {
            size_t i = (size_t)b * T * C + e;
            int keep = dropout_keep(k.seed, k.step, k.row0 + (uint32_t)b, k.tensor, e, thr);
            float want = keep ? x[i] * (1.0f / (1.0f - p)) : 0.0f;
            if (ops->precision == OPS_FP16) {
                /* the op rounds kept values to half; compare within half's resolution */
                if (keep ? fabsf(y[i] - want) > 1e-3f * want : y[i] != 0.0f) bad++;
            } else if (y[i] != want)
                bad++;
            kept += keep;
        }
    }
    double frac = (double)kept / (double)n;
    printf("dropout %s B=%d T=%d C=%d p=%.2f: %ld mismatches, kept %.4f\n",
           ops->precision == OPS_FP16 ? "fp16" : "fp32", B, T, C, p, bad, frac);
    free(x);
    ops->free(y);
    /* binomial: 5 standard deviations */
    return bad || fabs(frac - (1.0 - p)) > 5.0 * sqrt(p * (1.0 - p) / (double)n);
}

/* dropout_residual is dropout then residual_forward in one op: the same bits, with out a
 * separate buffer, out == x and out == res, and without res. */
static int check_dropout_residual(const struct ops *ops, int B, int T, int C, float p) {
    size_t n = (size_t)B * T * C;
    float *x = malloc(n * sizeof(float)), *r = malloc(n * sizeof(float));
    float *want = malloc(n * sizeof(float)), *got = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        x[i] = 0.5f + (float)(i % 13) * 0.25f;
        r[i] = -1.0f + (float)(i % 7) * 0.375f;
    }
    struct dropout_key k = {0xabcdef12345ULL, 7, 3, DROPOUT_TENSOR_ATTN_OUT(2)};
    long bad = 0;
    for (int mode = 0; mode < 4; mode++) { /* separate out, out == x, out == res, no res */
        memcpy(want, x, n * sizeof(float));
        ops->dropout(want, B, T, C, p, &k);
        if (mode < 3) ops->residual_forward(want, r, want, n);
        float *res = mode < 3 ? malloc(n * sizeof(float)) : NULL, *in = malloc(n * sizeof(float));
        if (res) memcpy(res, r, n * sizeof(float));
        memcpy(in, x, n * sizeof(float));
        float *out = mode == 1 ? in : mode == 2 ? res : got;
        ops->dropout_residual(out, res, in, NULL, B, T, C, p, &k);
        bad += memcmp(out, want, n * sizeof(float)) != 0;
        free(res);
        free(in);
    }
    printf("dropout_residual %s B=%d T=%d C=%d p=%.2f: %ld of 4 aliasing modes differ from "
           "dropout then residual_forward\n",
           ops->precision == OPS_FP16 ? "fp16" : "fp32", B, T, C, p, bad);
    free(x);
    free(r);
    free(want);
    free(got);
    return bad != 0;
}

/* C = NH * HS with HS >= T: v of each head is the identity on its first T columns, so
 * out[b, t, h*HS + s] is the (post-dropout) probability of query t, key s. */
static int check_attention(int B, int T, int C, int NH, float p) {
    const struct ops *ops = ops_cpu(OPS_FP32);
    int HS = C / NH;
    size_t n = (size_t)B * T * C, nl = (size_t)B * NH * T;
    float *q = malloc(n * 4), *k = malloc(n * 4), *v = calloc(n, 4);
    float *out0 = malloc(n * 4), *out = malloc(n * 4);
    float *l0 = malloc(nl * 4), *lp = malloc(nl * 4);
    double *sc = malloc((size_t)T * sizeof(double));
    for (size_t i = 0; i < n; i++) {
        q[i] = sinf((float)i * 0.37f);
        k[i] = cosf((float)i * 0.11f);
    }
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int s = 0; s < T; s++)
                v[((size_t)b * T + s) * C + (size_t)h * HS + s] = 1.0f;
    struct dropout_key key = {77, 3, 120, DROPOUT_TENSOR_ATTN_PROBS(1)};
    ops->attention_forward(out0, l0, q, k, v, NULL, B, T, C, NH, 0.0f, &key);
    ops->attention_forward(out, lp, q, k, v, NULL, B, T, C, NH, p, &key);
    uint32_t thr = dropout_threshold(p);
    long bad = 0, same = 0, bad_lse = 0;
    double worst_lse = 0.0;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                size_t r = ((size_t)b * NH + h) * T + t;
                same += lp[r] == l0[r];
                double mx = -INFINITY, sum = 0.0;
                for (int s = 0; s <= t; s++) {
                    double dot = 0.0;
                    for (int c = 0; c < HS; c++)
                        dot += (double)q[((size_t)b * T + t) * C + (size_t)h * HS + c] *
                               k[((size_t)b * T + s) * C + (size_t)h * HS + c];
                    sc[s] = dot / sqrt((double)HS);
                    mx = sc[s] > mx ? sc[s] : mx;
                }
                for (int s = 0; s <= t; s++)
                    sum += exp(sc[s] - mx);
                double d = fabs(l0[r] - (mx + log(sum)));
                worst_lse = d > worst_lse ? d : worst_lse;
                bad_lse += d > 1e-5;
                for (int s = 0; s < T; s++) {
                    size_t e = ((size_t)h * T + t) * T + s,
                           o = ((size_t)b * T + t) * C + (size_t)h * HS + s;
                    int keep = s <= t && dropout_keep(key.seed, key.step, key.row0 + (uint32_t)b,
                                                      key.tensor, e, thr);
                    float want = keep ? out0[o] * (1.0f / (1.0f - p)) : 0.0f;
                    if (fabsf(out[o] - want) > 1e-6f * fabsf(want)) bad++;
                }
            }
    printf("attention dropout B=%d T=%d NH=%d p=%.2f: %ld mismatches; log-sum-exp equal without "
           "dropout: %ld of %zu, off the double-precision value by at most %.2g (%ld over 1e-5)\n",
           B, T, NH, p, bad, same, nl, worst_lse, bad_lse);
    free(q);
    free(k);
    free(v);
    free(out0);
    free(out);
    free(l0);
    free(lp);
    free(sc);
    return bad != 0 || same != (long)nl || bad_lse != 0;
}

int main(void) {
    int fails = 0;
    fails += check_dropout(ops_cpu(OPS_FP32), 3, 17, 37, 0.1f);
    fails += check_dropout(ops_cpu(OPS_FP32), 2, 5, 64, 0.5f);
    fails += check_dropout(ops_cpu(OPS_FP16), 3, 17, 37, 0.25f);
    fails += check_attention(2, 19, 60, 3, 0.2f);
    fails += check_dropout_residual(ops_cpu(OPS_FP32), 3, 17, 37, 0.1f);
    fails += check_dropout_residual(ops_cpu(OPS_FP16), 2, 9, 40, 0.3f);
    return fails ? 1 : 0;
}
