/* ops_cpu.c — the CPU backend's two op tables (fp32, fp16-rounded storage), generated from
 * OPS_LIST, its memory (host memory, so "device" copies are memcpy and synchronize does
 * nothing) and the storage conversions. */
#include "kernels/cpu/cpu.h"

#include <cblas.h>
#include <omp.h>
#include <stdio.h>
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

CPU_HOT void cpu_storage_from_f32(const struct cpu_ctx *ctx, void *dst, const float *src,
                                  size_t n) {
    const int h = ctx->round_half;
    float *d = dst;
#pragma omp parallel for schedule(static) if ((long)n > CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        d[i] = stored(src[i], h);
}

void cpu_storage_to_f32(const struct cpu_ctx *ctx, float *dst, const void *src, size_t n) {
    if (n) memmove(dst, src, n * sizeof(float));
}

CPU_HOT void cpu_grad_accumulate(const struct cpu_ctx *ctx, float *acc, const void *grad, size_t n,
                                 float scale) {
    const float *g = grad;
#pragma omp parallel for schedule(static) if ((long)n > CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        acc[i] += scale * g[i];
}

/* Entry by entry and source by source through the two ops above, so a list gives the bits that
 * per-tensor calls gave (the trainer's results are compared bit for bit across versions). */
void cpu_grad_accumulate_list(const struct cpu_ctx *ctx, const struct ops_tensor_list *l) {
    int sources = l->sources > 1 ? l->sources : 1;
    for (int i = 0; i < l->count; i++) {
        float *acc = l->t[i].acc;
        size_t n = l->t[i].n;
        if (!n) continue;
        const char *grad = l->t[i].grad;
        for (int j = 0; j < sources; j++, grad += l->stride) {
            if (j == 0 && l->first && l->weight[0] == 1.0f) {
                cpu_storage_to_f32(ctx, acc, grad, n);
                continue;
            }
            if (j == 0 && l->first) memset(acc, 0, n * sizeof(float));
            cpu_grad_accumulate(ctx, acc, grad, n, l->weight[j]);
        }
    }
}

void *cpu_xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "xlmc: error: out of memory for a CPU op's scratch (%zu bytes)\n", bytes);
        abort();
    }
    return p;
}

/* The two tables. Every op of OPS_LIST gets a wrapper per precision that calls cpu_<name>
 * with that precision's context; the tables point at the wrappers. */
static const struct cpu_ctx CPU_FP32 = {0}, CPU_FP16 = {1};

#define CPU_WRAP(name, params, args)                                                               \
    static void name##_f32 params {                                                                \
        cpu_##name(&CPU_FP32, OPS_UNPAREN args);                                                   \
    }                                                                                              \
    static void name##_f16 params {                                                                \
        cpu_##name(&CPU_FP16, OPS_UNPAREN args);                                                   \
    }
#define CPU_WRAP_R(type, name, params, args)                                                       \
    static type name##_f32 params {                                                                \
        return cpu_##name(&CPU_FP32, OPS_UNPAREN args);                                            \
    }                                                                                              \
    static type name##_f16 params {                                                                \
        return cpu_##name(&CPU_FP16, OPS_UNPAREN args);                                            \
    }
OPS_LIST(CPU_WRAP, CPU_WRAP_R)

#define CPU_SLOT_F32(name, params, args) .name = name##_f32,
#define CPU_SLOT_F32_R(type, name, params, args) .name = name##_f32,
#define CPU_SLOT_F16(name, params, args) .name = name##_f16,
#define CPU_SLOT_F16_R(type, name, params, args) .name = name##_f16,
#define CPU_MEMORY                                                                                 \
    .storage_bytes = sizeof(float), .host_memory = 1, .alloc = cpu_alloc, .free = cpu_free,        \
    .to_device = cpu_copy, .to_host = cpu_copy, .memset0 = cpu_memset0,                            \
    .synchronize = cpu_synchronize, .host_alloc = cpu_alloc, .host_free = cpu_free

static const struct ops cpu_ops_f32 = {
    .name = "cpu", .precision = OPS_FP32, CPU_MEMORY, OPS_LIST(CPU_SLOT_F32, CPU_SLOT_F32_R)};
static const struct ops cpu_ops_f16 = {
    .name = "cpu", .precision = OPS_FP16, CPU_MEMORY, OPS_LIST(CPU_SLOT_F16, CPU_SLOT_F16_R)};

const struct ops *ops_cpu(enum ops_precision precision) {
    /* one thread pool: see cpu_sgemm() in cpu.h */
    openblas_set_num_threads(1);
    return precision == OPS_FP16 ? &cpu_ops_f16 : &cpu_ops_f32;
}
