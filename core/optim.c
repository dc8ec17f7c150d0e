/* optim.c — learning-rate schedules, gradient clipping and the Adam call (see optim.h). */
#include "core/optim.h"
#include "core/util.h"

#include <math.h>
#include <string.h>

/* Linear warm-up shared by every schedule: XLM's AdamInverseSqrtWithWarmup starts at
 * warmup_init_lr (1e-7) and reaches lr after `warmup` updates. */
static float warmup_lr(const struct train_config *tc, long step) {
    return tc->warmup_init_lr + (float)step * (tc->lr - tc->warmup_init_lr) / (float)tc->warmup;
}

float optim_lr(const struct train_config *tc, long step) {
    if (step < 0) step = 0;
    if (step < tc->warmup) return warmup_lr(tc, step);
    switch (tc->schedule) {
    case SCHEDULE_INVERSE_SQRT: {
        /* XLM: decay_factor = lr * sqrt(warmup); lr(step) = decay_factor / sqrt(step). With
         * no warm-up, the decay starts from lr at step 1. */
        double w = tc->warmup > 0 ? (double)tc->warmup : 1.0;
        double s = step > 0 ? (double)step : 1.0;
        return (float)(tc->lr * sqrt(w / s));
    }
    case SCHEDULE_COSINE: {
        long span = tc->max_steps - tc->warmup;
        double progress = span > 0 ? (double)(step - tc->warmup) / (double)span : 1.0;
        if (progress > 1.0) progress = 1.0;
        return (float)(tc->min_lr + 0.5 * (tc->lr - tc->min_lr) * (1.0 + cos(M_PI * progress)));
    }
    case SCHEDULE_CONSTANT:
        break;
    }
    return tc->lr;
}

float optim_clip_coef(double norm, float clip_norm) {
    if (clip_norm <= 0.0f) return 1.0f;
    double coef = (double)clip_norm / (norm + 1e-6);
    return coef < 1.0 ? (float)coef : 1.0f;
}

uint8_t *optim_decay_mask(const struct model *m) {
    uint8_t *mask = xcalloc(m->num_params ? m->num_params : 1, 1);
    for (int id = 0; id < P_COUNT; id++) {
        const struct param_tensor *p = &m->params[id];
        if (p->decay && p->numel) memset(mask + p->offset, 1, p->numel);
    }
    return mask;
}

void optim_adam_update(struct model *m, size_t lo, size_t hi, float *master, const float *grad,
                       float *mom_m, float *mom_v, const uint8_t *decay_mask, float lr,
                       float grad_scale, long step) {
    const struct train_config *tc = &m->cfg.train;
    if (hi <= lo) return;
    /* where the weights are the master there is nothing to copy to */
    void *copy = m->weights_are_master ? NULL : (char *)m->weights + lo * m->ops->storage_bytes;
    m->ops->adam_update(master + lo, copy, grad + lo, mom_m + lo, mom_v + lo, hi - lo, lr,
                        tc->beta1, tc->beta2, tc->adam_eps, tc->weight_decay, grad_scale,
                        (int)(step + 1), decay_mask + lo);
}
