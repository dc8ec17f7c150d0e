/* ops_cpu.c — the CPU backend's two op tables (fp32, fp16-rounded storage) and its memory:
 * host memory, so "device" copies are memcpy and synchronize does nothing. */
#include "kernels/cpu/cpu.h"

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

CPU_HOT void cpu_round_storage(float *x, size_t n, int h) {
    if (!h) return;
#pragma omp parallel for schedule(static) if ((long)n > CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        x[i] = half_round(x[i]);
}

/* Zeroed like calloc. Large blocks (weights, gradients, Adam moments, activations) go on 2 MiB
 * boundaries with a transparent-huge-page hint: a training step streams through ~250 MB of
 * them, and with 4 KiB pages the TLB misses slowed every memory-bound pass (measured: +5-10%
 * tokens/s for the whole step). */
#define CPU_HUGE_MIN (4ul << 20)
#define CPU_HUGE_ALIGN (2ul << 20)

static void *cpu_alloc(size_t bytes) {
    if (bytes < CPU_HUGE_MIN) return calloc(1, bytes ? bytes : 1);
    size_t rounded = (bytes + CPU_HUGE_ALIGN - 1) & ~(CPU_HUGE_ALIGN - 1);
    void *p = NULL;
    if (posix_memalign(&p, CPU_HUGE_ALIGN, rounded)) return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, rounded, MADV_HUGEPAGE); /* a hint: without THP the pages stay small */
#endif
    memset(p, 0, rounded);
    return p;
}

static void cpu_free(void *p) {
    free(p);
}

static void cpu_copy(void *dst, const void *src, size_t bytes) {
    if (bytes) memmove(dst, src, bytes);
}

/* Zeroing the whole gradient (tens of MB) each backward is bandwidth-bound: one slice per
 * thread draws on more of the memory system than a single memset. */
static void cpu_memset0(void *p, size_t bytes) {
    if (!bytes) return;
    if (bytes < 4 * sizeof(float) * (size_t)CPU_PAR_MIN) {
        memset(p, 0, bytes);
        return;
    }
#pragma omp parallel
    {
        size_t nth = (size_t)omp_get_num_threads(), id = (size_t)omp_get_thread_num();
        size_t b0 = bytes * id / nth, b1 = bytes * (id + 1) / nth;
        memset((char *)p + b0, 0, b1 - b0);
    }
}

static void cpu_synchronize(void) {}

CPU_HOT static void storage_from_f32(int h, void *dst, const float *src, size_t n) {
    float *d = dst;
#pragma omp parallel for schedule(static) if ((long)n > CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        d[i] = st(src[i], h);
}

static void cpu_storage_to_f32(float *dst, const void *src, size_t n) {
    if (n) memmove(dst, src, n * sizeof(float));
}

CPU_HOT static void cpu_grad_accumulate(float *acc, const void *grad, size_t n, float scale) {
    const float *g = grad;
#pragma omp parallel for schedule(static) if ((long)n > CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        acc[i] += scale * g[i];
}

/* Bind every h-taking op to a fixed precision: one wrapper per op and precision. */
#define CPU_WRAP(H, SUF)                                                                           \
    static void storage_from_f32_##SUF(void *d, const float *s, size_t n) {                        \
        storage_from_f32(H, d, s, n);                                                              \
    }                                                                                              \
    static void embed_forward_##SUF(void *out, const int32_t *ids, const int32_t *langs,           \
                                    const void *wte, const void *wpe, const void *wlang, int B,    \
                                    int T, int C) {                                                \
        cpu_embed_forward(H, out, ids, langs, wte, wpe, wlang, B, T, C);                           \
    }                                                                                              \
    static void embed_backward_##SUF(void *dwte, void *dwpe, void *dwlang, const void *dout,       \
                                     const int32_t *ids, const int32_t *langs, int B, int T,       \
                                     int C, int V, int NL) {                                       \
        cpu_embed_backward(H, dwte, dwpe, dwlang, dout, ids, langs, B, T, C, V, NL);               \
    }                                                                                              \
    static void layernorm_forward_##SUF(void *out, float *mean, float *rstd, const void *inp,      \
                                        const void *w, const void *b, int N, int C, float eps) {   \
        cpu_layernorm_forward(H, out, mean, rstd, inp, w, b, N, C, eps);                           \
    }                                                                                              \
    static void layernorm_backward_##SUF(void *dinp, void *dw, void *db, const void *dout,         \
                                         const void *inp, const void *w, const float *mean,        \
                                         const float *rstd, int N, int C) {                        \
        cpu_layernorm_backward(H, dinp, dw, db, dout, inp, w, mean, rstd, N, C);                   \
    }                                                                                              \
    static void matmul_forward_##SUF(void *out, const void *inp, const void *w, const void *b,     \
                                     int N, int C, int OC) {                                       \
        cpu_matmul_forward(H, out, inp, w, b, N, C, OC);                                           \
    }                                                                                              \
    static void matmul_backward_##SUF(void *dinp, void *dw, void *db, const void *dout,            \
                                      const void *inp, const void *w, int N, int C, int OC) {      \
        cpu_matmul_backward(H, dinp, dw, db, dout, inp, w, N, C, OC);                              \
    }                                                                                              \
    static void attention_forward_##SUF(void *out, float *lse, const void *q, const void *k,       \
                                        const void *v, int B, int T, int C, int NH, float p,       \
                                        const struct dropout_key *key) {                           \
        cpu_attention_forward(H, out, lse, q, k, v, B, T, C, NH, p, key);                          \
    }                                                                                              \
    static void attention_backward_##SUF(void *dq, void *dk, void *dv, const void *dout,           \
                                         const void *out, const float *lse, const void *q,         \
                                         const void *k, const void *v, int B, int T, int C,        \
                                         int NH, float p, const struct dropout_key *key) {         \
        cpu_attention_backward(H, dq, dk, dv, dout, out, lse, q, k, v, B, T, C, NH, p, key);       \
    }                                                                                              \
    static void gelu_forward_##SUF(void *out, const void *inp, size_t n) {                         \
        cpu_gelu_forward(H, out, inp, n);                                                          \
    }                                                                                              \
    static void gelu_backward_##SUF(void *dinp, const void *inp, const void *dout, size_t n) {     \
        cpu_gelu_backward(H, dinp, inp, dout, n);                                                  \
    }                                                                                              \
    static void residual_forward_##SUF(void *out, const void *a, const void *b, size_t n) {        \
        cpu_residual_forward(H, out, a, b, n);                                                     \
    }                                                                                              \
    static void dropout_##SUF(void *x, int B, int T, int C, float p,                               \
                              const struct dropout_key *key) {                                     \
        cpu_dropout(H, x, B, T, C, p, key);                                                        \
    }                                                                                              \
    static void dropout_residual_##SUF(void *out, const void *res, const void *x, int B, int T,    \
                                       int C, float p, const struct dropout_key *key) {            \
        cpu_dropout_residual(H, out, res, x, B, T, C, p, key);                                     \
    }                                                                                              \
    static void mask_padding_##SUF(void *x, const int32_t *lengths, int B, int T, int C) {         \
        cpu_mask_padding(H, x, lengths, B, T, C);                                                  \
    }                                                                                              \
    static void classifier_##SUF(float *losses, void *logits, const void *bias, void *dbias,       \
                                 const int32_t *targets, int N, int V, float dscale) {             \
        cpu_classifier(H, losses, logits, bias, dbias, targets, N, V, dscale);                     \
    }                                                                                              \
    static void adam_update_##SUF(float *master, void *copy, const float *grad, float *m,          \
                                  float *v, size_t n, float lr, float beta1, float beta2,          \
                                  float eps, float wd, float grad_scale, int t,                    \
                                  const uint8_t *decay_mask) {                                     \
        cpu_adam_update(H, master, copy, grad, m, v, n, lr, beta1, beta2, eps, wd, grad_scale, t,  \
                        decay_mask);                                                               \
    }                                                                                              \
    static const struct ops cpu_ops_##SUF = {                                                      \
        .name = "cpu",                                                                             \
        .precision = H ? OPS_FP16 : OPS_FP32,                                                      \
        .storage_bytes = sizeof(float),                                                            \
        .alloc = cpu_alloc,                                                                        \
        .free = cpu_free,                                                                          \
        .to_device = cpu_copy,                                                                     \
        .to_host = cpu_copy,                                                                       \
        .memset0 = cpu_memset0,                                                                    \
        .synchronize = cpu_synchronize,                                                            \
        .storage_from_f32 = storage_from_f32_##SUF,                                                \
        .storage_to_f32 = cpu_storage_to_f32,                                                      \
        .grad_accumulate = cpu_grad_accumulate,                                                    \
        .embed_forward = embed_forward_##SUF,                                                      \
        .embed_backward = embed_backward_##SUF,                                                    \
        .layernorm_forward = layernorm_forward_##SUF,                                              \
        .layernorm_backward = layernorm_backward_##SUF,                                            \
        .matmul_forward = matmul_forward_##SUF,                                                    \
        .matmul_backward = matmul_backward_##SUF,                                                  \
        .attention_forward = attention_forward_##SUF,                                              \
        .attention_backward = attention_backward_##SUF,                                            \
        .gelu_forward = gelu_forward_##SUF,                                                        \
        .gelu_backward = gelu_backward_##SUF,                                                      \
        .residual_forward = residual_forward_##SUF,                                                \
        .dropout = dropout_##SUF,                                                                  \
        .dropout_residual = dropout_residual_##SUF,                                                \
        .mask_padding = mask_padding_##SUF,                                                        \
        .classifier = classifier_##SUF,                                                            \
        .unscale_check = cpu_unscale_check,                                                        \
        .norm_squared = cpu_norm_squared,                                                          \
        .adam_update = adam_update_##SUF,                                                          \
    };

CPU_WRAP(0, f32)
CPU_WRAP(1, f16)

const struct ops *ops_cpu(enum ops_precision precision) {
    /* one thread pool: see cpu_sgemm() in cpu.h */
    openblas_set_num_threads(1);
    return precision == OPS_FP16 ? &cpu_ops_f16 : &cpu_ops_f32;
}
