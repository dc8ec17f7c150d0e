/* adam.c — the fp32 optimizer-side ops: unscale + overflow check, squared norm, Adam(W). */
#include "kernels/cpu/cpu.h"

/* grad (n) *= inv_scale; 1 if any result is inf or NaN */
CPU_HOT int cpu_unscale_check(const struct cpu_ctx *ctx, float *grad, size_t n, float inv_scale) {
    int bad = 0;
#pragma omp parallel for schedule(static) reduction(| : bad) if ((long)n > CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        grad[i] *= inv_scale;
        bad |= !isfinite(grad[i]);
    }
    return bad;
}

/* sum of grad^2 in fp64. Static schedule and the reduction's fixed combine order make the
 * result depend only on the thread count. */
CPU_HOT double cpu_norm_squared(const struct cpu_ctx *ctx, const float *grad, size_t n) {
    double s = 0.0;
#pragma omp parallel for simd schedule(static) reduction(+ : s) if ((long)n > CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        s += (double)grad[i] * (double)grad[i];
    return s;
}

/* torch.optim.Adam/AdamW's arithmetic: decoupled decay p *= 1 - lr*wd (where the mask says),
 * m = b1 m + (1-b1) g, v = b2 v + (1-b2) g^2,
 * p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps). */
CPU_HOT void cpu_adam_update(const struct cpu_ctx *ctx, float *master, void *copy_,
                             const float *grad, float *m, float *v, size_t n, float lr, float beta1,
                             float beta2, float eps, float wd, float grad_scale, int t,
                             const uint8_t *decay_mask) {
    const int h = ctx->round_half;
    float *copy = copy_;
    double bc1 = 1.0 - pow((double)beta1, (double)t), bc2 = 1.0 - pow((double)beta2, (double)t);
    float step_size = (float)((double)lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    float decay = 1.0f - lr * wd;
#pragma omp parallel for schedule(static) if ((long)n > CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float g = grad[i] * grad_scale, p = master[i];
        if (wd != 0.0f && (!decay_mask || decay_mask[i])) p *= decay;
        float mi = beta1 * m[i] + (1.0f - beta1) * g;
        float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        p -= step_size * mi / (sqrtf(vi) / bc2_sqrt + eps);
        master[i] = p;
        if (copy) copy[i] = stored(p, h);
    }
}
