/* test_layernorm_extra_matches_ops — on the CPU backend (the reference), layernorm_backward with
 * its extras (struct ln_backward_extra) gives bit for bit what the separate ops it replaces in
 * core/model.c gave, so that training on the CPU did not change:
 *   - a residual branch: the LayerNorm backward, then dropout_residual(dropped, NULL, dinp, NULL)
 *     (the branch's gradient), then matmul_backward's db (the next linear layer's bias gradient,
 *     summed over the dropped gradient, or over dinp itself without dropout);
 *   - the embeddings: dropout of dout in place, then the LayerNorm backward.
 * In fp32 and fp16 storage, with and without padded rows, with C a multiple of 16 and odd, and
 * large enough for the ops' parallel paths. Every output is compared with memcmp. */
#include "kernels/ops.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static float uniform(float lo, float hi) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return lo + (hi - lo) * (float)(g_rng >> 40) / (float)(1u << 24);
}

/* n storage elements on the backend: uniform in [lo, hi) rounded to storage, or 0 */
static void *tensor(const struct ops *o, size_t n, float lo, float hi) {
    float *h = malloc(n * sizeof(float));
    void *d = o->alloc(n * o->storage_bytes);
    if (!h || !d) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++)
        h[i] = lo == hi ? lo : uniform(lo, hi);
    o->storage_from_f32(d, h, n);
    free(h);
    return d;
}

static void *copy_of(const struct ops *o, const void *src, size_t n) {
    void *d = tensor(o, n, 0, 0);
    memcpy(d, src, n * o->storage_bytes); /* the CPU backend's buffers are host memory */
    return d;
}

static int g_failures;
static void same(const struct ops *o, const void *a, const void *b, size_t n, const char *what,
                 const char *shape) {
    int ok = memcmp(a, b, n * o->storage_bytes) == 0;
    printf("%s %s %s: %s\n", ok ? "ok  " : "FAIL", shape, what,
           ok ? "bit-identical" : "differs from the separate ops");
    g_failures += !ok;
}

static void check(const struct ops *o, int B, int T, int C, int padded, float p) {
    int N = B * T;
    size_t nc = (size_t)N * C;
    char shape[96];
    snprintf(shape, sizeof shape, "%s B=%d T=%d C=%d%s p=%.1f",
             o->precision == OPS_FP16 ? "fp16" : "fp32", B, T, C, padded ? " padded" : "", p);
    int32_t *lengths = o->alloc((size_t)B * sizeof(int32_t));
    for (int b = 0; b < B; b++)
        lengths[b] = b % 3 == 0 ? T : b % 3 == 1 ? T / 2 : 0;
    const int32_t *len = padded ? lengths : NULL;
    void *inp = tensor(o, nc, -2, 3), *out = tensor(o, nc, 0, 0), *w = tensor(o, C, 0.5f, 1.5f);
    void *b = tensor(o, C, -1, 1), *dout = tensor(o, nc, -1, 1);
    float *mean = o->alloc((size_t)N * sizeof(float)), *rstd = o->alloc((size_t)N * sizeof(float));
    o->layernorm_forward(out, mean, rstd, inp, w, b, N, C, 1e-5f, len, T);
    struct dropout_key key = {0xabcdef0123ull, 17, 11, DROPOUT_TENSOR_ATTN_OUT(1)};

    /* a residual branch, as model_backward did it before the extras */
    void *dinp0 = tensor(o, nc, 0, 0), *dw0 = tensor(o, C, -1, 1), *db0 = tensor(o, C, -1, 1);
    void *bias0 = tensor(o, C, -1, 1), *drop0 = tensor(o, nc, 0, 0);
    void *dw1 = copy_of(o, dw0, C), *db1 = copy_of(o, db0, C), *bias1 = copy_of(o, bias0, C);
    void *dinp1 = tensor(o, nc, 0, 0), *drop1 = tensor(o, nc, 0, 0);
    void *x1 = tensor(o, N, -1, 1), *dwx = tensor(o, C, 0, 0); /* matmul's dw, not compared */
    o->layernorm_backward(dinp0, dw0, db0, dout, inp, w, mean, rstd, N, C, len, T, NULL);
    const void *branch = dinp0;
    if (p > 0.0f) {
        o->dropout_residual(drop0, NULL, dinp0, NULL, B, T, C, p, &key);
        branch = drop0;
    }
    o->matmul_backward(NULL, dwx, bias0, branch, x1, dwx, N, 1, C, 0);
    struct ln_backward_extra ex = {p, NULL, p > 0.0f ? drop1 : NULL, &key, bias1};
    o->layernorm_backward(dinp1, dw1, db1, dout, inp, w, mean, rstd, N, C, len, T, &ex);
    same(o, dinp0, dinp1, nc, "branch: dinp", shape);
    same(o, dw0, dw1, C, "branch: dw", shape);
    same(o, db0, db1, C, "branch: db", shape);
    if (p > 0.0f) same(o, drop0, drop1, nc, "branch: dropout(dinp)", shape);
    same(o, bias0, bias1, C, "branch: next bias gradient", shape);

    /* the embeddings: dout dropped in place, then the LayerNorm backward */
    void *g = copy_of(o, dout, nc), *dw2 = copy_of(o, dw0, C), *db2 = copy_of(o, db0, C);
    void *dw3 = copy_of(o, dw0, C), *db3 = copy_of(o, db0, C);
    o->dropout(g, B, T, C, p, &key);
    o->layernorm_backward(dinp0, dw2, db2, g, inp, w, mean, rstd, N, C, len, T, NULL);
    struct ln_backward_extra ey = {p, &key, NULL, NULL, NULL};
    o->layernorm_backward(dinp1, dw3, db3, dout, inp, w, mean, rstd, N, C, len, T, &ey);
    same(o, dinp0, dinp1, nc, "embeddings: dinp", shape);
    same(o, dw2, dw3, C, "embeddings: dw", shape);
    same(o, db2, db3, C, "embeddings: db", shape);

    void *all[] = {lengths, inp, out,   w,     b,   dout, mean,  rstd,  dinp0,
                   dw0,     db0, bias0, drop0, dw1, db1,  bias1, dinp1, drop1,
                   x1,      dwx, g,     dw2,   db2, dw3,  db3};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        o->free(all[i]);
}

int main(void) {
    for (int prec = 0; prec < 2; prec++) {
        const struct ops *o = ops_cpu(prec ? OPS_FP16 : OPS_FP32);
        check(o, 3, 7, 40, 0, 0.1f);
        check(o, 4, 5, 77, 1, 0.1f);   /* odd C: rows start mid Philox block */
        check(o, 6, 9, 64, 1, 0.0f);   /* no dropout: the bias sums dinp itself */
        check(o, 8, 40, 160, 1, 0.1f); /* N C above CPU_PAR_MIN: the threaded paths */
    }
    printf(g_failures ? "FAILED\n" : "PASSED\n");
    return g_failures ? 1 : 0;
}
