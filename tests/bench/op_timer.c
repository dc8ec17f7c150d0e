/* op_timer.c — see op_timer.h. One wrapper per op: it times the inner op's call with the
 * wall clock and adds the seconds to that op's slot. */
#include "tests/bench/op_timer.h"

#include "core/util.h"

#include <string.h>

enum {
    T_MEMSET0,
    T_FROM_F32,
    T_TO_F32,
    T_GRAD_ACC,
    T_EMBED_F,
    T_EMBED_B,
    T_LN_F,
    T_LN_B,
    T_MM_F,
    T_MM_B,
    T_ATT_F,
    T_ATT_B,
    T_GELU_F,
    T_GELU_B,
    T_RESIDUAL,
    T_DROPOUT,
    T_DROPOUT_RES,
    T_MASK,
    T_CLASSIFIER,
    T_UNSCALE,
    T_NORM,
    T_ADAM,
    T_COUNT
};
static const char *const NAMES[T_COUNT] = {
    "memset0",          "storage_from_f32", "storage_to_f32",    "grad_accumulate",
    "embed_forward",    "embed_backward",   "layernorm_forward", "layernorm_backward",
    "matmul_forward",   "matmul_backward",  "attention_forward", "attention_backward",
    "gelu_forward",     "gelu_backward",    "residual_forward",  "dropout",
    "dropout_residual", "mask_padding",     "classifier",        "unscale_check",
    "norm_squared",     "adam_update",
};

static struct ops g_inner, g_timed;
static double g_seconds[T_COUNT];
static long g_calls[T_COUNT];

/* time the statement S into slot K */
#define TIMED(K, S)                                                                                \
    do {                                                                                           \
        double t0_ = now_seconds();                                                                \
        S;                                                                                         \
        g_seconds[K] += now_seconds() - t0_;                                                       \
        g_calls[K]++;                                                                              \
    } while (0)

static void w_memset0(void *p, size_t bytes) {
    TIMED(T_MEMSET0, g_inner.memset0(p, bytes));
}
static void w_from_f32(void *dst, const float *src, size_t n) {
    TIMED(T_FROM_F32, g_inner.storage_from_f32(dst, src, n));
}
static void w_to_f32(float *dst, const void *src, size_t n) {
    TIMED(T_TO_F32, g_inner.storage_to_f32(dst, src, n));
}
static void w_grad_acc(float *acc, const void *grad, size_t n, float scale) {
    TIMED(T_GRAD_ACC, g_inner.grad_accumulate(acc, grad, n, scale));
}
static void w_embed_f(void *out, const int32_t *ids, const int32_t *langs, const int32_t *pos,
                      const void *wte, const void *wpe, const void *wlang, int B, int T, int C) {
    TIMED(T_EMBED_F, g_inner.embed_forward(out, ids, langs, pos, wte, wpe, wlang, B, T, C));
}
static void w_embed_b(void *dwte, void *dwpe, void *dwlang, const void *dout, const int32_t *ids,
                      const int32_t *langs, const int32_t *pos, int B, int T, int C, int V,
                      int NL) {
    TIMED(T_EMBED_B,
          g_inner.embed_backward(dwte, dwpe, dwlang, dout, ids, langs, pos, B, T, C, V, NL));
}
static void w_ln_f(void *out, float *mean, float *rstd, const void *inp, const void *w,
                   const void *b, int N, int C, float eps, const int32_t *lengths, int T) {
    TIMED(T_LN_F, g_inner.layernorm_forward(out, mean, rstd, inp, w, b, N, C, eps, lengths, T));
}
static void w_ln_b(void *dinp, void *dw, void *db, const void *dout, const void *inp, const void *w,
                   const float *mean, const float *rstd, int N, int C, const int32_t *lengths,
                   int T, const struct ln_backward_extra *extra) {
    TIMED(T_LN_B, g_inner.layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, N, C, lengths,
                                             T, extra));
}
static void w_mm_f(void *out, const void *inp, const void *w, const void *b, int N, int C, int OC) {
    TIMED(T_MM_F, g_inner.matmul_forward(out, inp, w, b, N, C, OC));
}
static void w_mm_b(void *dinp, void *dw, void *db, const void *dout, const void *inp, const void *w,
                   int N, int C, int OC, int dw_set) {
    TIMED(T_MM_B, g_inner.matmul_backward(dinp, dw, db, dout, inp, w, N, C, OC, dw_set));
}
static void w_att_f(void *out, float *lse, const void *q, const void *k, const void *v,
                    const int32_t *lengths, int B, int T, int C, int NH, float p,
                    const struct dropout_key *key) {
    TIMED(T_ATT_F, g_inner.attention_forward(out, lse, q, k, v, lengths, B, T, C, NH, p, key));
}
static void w_att_b(void *dq, void *dk, void *dv, const void *dout, const void *out,
                    const float *lse, const void *q, const void *k, const void *v,
                    const int32_t *lengths, int B, int T, int C, int NH, float p,
                    const struct dropout_key *key) {
    TIMED(T_ATT_B, g_inner.attention_backward(dq, dk, dv, dout, out, lse, q, k, v, lengths, B, T, C,
                                              NH, p, key));
}
static void w_gelu_f(void *out, const void *inp, size_t n) {
    TIMED(T_GELU_F, g_inner.gelu_forward(out, inp, n));
}
static void w_gelu_b(void *dinp, const void *inp, const void *dout, size_t n) {
    TIMED(T_GELU_B, g_inner.gelu_backward(dinp, inp, dout, n));
}
static void w_residual(void *out, const void *a, const void *b, size_t n) {
    TIMED(T_RESIDUAL, g_inner.residual_forward(out, a, b, n));
}
static void w_dropout(void *x, int B, int T, int C, float p, const struct dropout_key *key) {
    TIMED(T_DROPOUT, g_inner.dropout(x, B, T, C, p, key));
}
static void w_dropout_res(void *out, const void *res, const void *x, const void *bias, int B, int T,
                          int C, float p, const struct dropout_key *key) {
    TIMED(T_DROPOUT_RES, g_inner.dropout_residual(out, res, x, bias, B, T, C, p, key));
}
static void w_mask(void *x, const int32_t *lengths, int B, int T, int C) {
    TIMED(T_MASK, g_inner.mask_padding(x, lengths, B, T, C));
}
static void w_classifier(float *losses, void *logits, const void *bias, void *dbias,
                         const int32_t *targets, int N, int V, int Vp, float dscale) {
    TIMED(T_CLASSIFIER, g_inner.classifier(losses, logits, bias, dbias, targets, N, V, Vp, dscale));
}
static int w_unscale(float *grad, size_t n, float inv_scale) {
    int r;
    TIMED(T_UNSCALE, r = g_inner.unscale_check(grad, n, inv_scale));
    return r;
}
static double w_norm(const float *grad, size_t n) {
    double r;
    TIMED(T_NORM, r = g_inner.norm_squared(grad, n));
    return r;
}
static void w_adam(float *master, void *copy, const float *grad, float *m, float *v, size_t n,
                   float lr, float beta1, float beta2, float eps, float wd, float grad_scale, int t,
                   const uint8_t *decay_mask) {
    TIMED(T_ADAM, g_inner.adam_update(master, copy, grad, m, v, n, lr, beta1, beta2, eps, wd,
                                      grad_scale, t, decay_mask));
}

const struct ops *op_timer_wrap(const struct ops *inner) {
    g_inner = *inner;
    g_timed = *inner;
    g_timed.memset0 = w_memset0;
    g_timed.storage_from_f32 = w_from_f32;
    g_timed.storage_to_f32 = w_to_f32;
    g_timed.grad_accumulate = w_grad_acc;
    g_timed.embed_forward = w_embed_f;
    g_timed.embed_backward = w_embed_b;
    g_timed.layernorm_forward = w_ln_f;
    g_timed.layernorm_backward = w_ln_b;
    g_timed.matmul_forward = w_mm_f;
    g_timed.matmul_backward = w_mm_b;
    g_timed.attention_forward = w_att_f;
    g_timed.attention_backward = w_att_b;
    g_timed.gelu_forward = w_gelu_f;
    g_timed.gelu_backward = w_gelu_b;
    g_timed.residual_forward = w_residual;
    g_timed.dropout = w_dropout;
    g_timed.dropout_residual = w_dropout_res;
    g_timed.mask_padding = w_mask;
    g_timed.classifier = w_classifier;
    g_timed.unscale_check = w_unscale;
    g_timed.norm_squared = w_norm;
    g_timed.adam_update = w_adam;
    return &g_timed;
}

void op_timer_reset(void) {
    memset(g_seconds, 0, sizeof g_seconds);
    memset(g_calls, 0, sizeof g_calls);
}

void op_timer_report(FILE *f, int steps) {
    double total = 0;
    for (int i = 0; i < T_COUNT; i++)
        total += g_seconds[i];
    fprintf(f, "per op, ms per step (calls per step):\n");
    for (int i = 0; i < T_COUNT; i++)
        if (g_calls[i])
            fprintf(f, "  %-20s %8.2f ms (%ld)  %5.1f%%\n", NAMES[i], g_seconds[i] * 1e3 / steps,
                    g_calls[i] / steps, 100.0 * g_seconds[i] / total);
    fprintf(f, "  %-20s %8.2f ms\n", "all ops", total * 1e3 / steps);
}
