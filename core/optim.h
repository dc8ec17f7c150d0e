/* optim.h — the optimizer side of a training step: learning-rate schedules, global-norm
 * clipping and Adam over the whole parameter arena.
 *
 * Steps are counted from 0: `step` is the number of updates already applied, so the first
 * update uses optim_lr(tc, 0) and Adam's bias correction t = step + 1. */
#ifndef XLMC_OPTIM_H
#define XLMC_OPTIM_H

#include "core/config.h"
#include "core/model.h"

#include <stdint.h>

/* Learning rate of update `step` (0-based) under tc->schedule:
 *   inverse_sqrt  XLM's AdamInverseSqrtWithWarmup: linear from warmup_init_lr to lr over
 *                 `warmup` updates, then lr * sqrt(warmup / step) (warmup 0: lr / sqrt(step)
 *                 from step 1 on);
 *   cosine        the same linear warm-up, then from lr down to min_lr at max_steps along a
 *                 half cosine; min_lr after max_steps;
 *   constant      the same linear warm-up, then lr. */
float optim_lr(const struct train_config *tc, long step);

/* Factor that brings a gradient of global L2 norm `norm` down to `clip_norm`, as
 * torch.nn.utils.clip_grad_norm_ computes it: clip_norm / (norm + 1e-6) when that is below 1,
 * else 1. clip_norm 0 turns clipping off (always 1). */
float optim_clip_coef(double norm, float clip_norm);

/* Per-element weight-decay mask of the arena (num_params bytes, host memory): 1 inside
 * tensors with param_tensor.decay, else 0. The caller frees it. */
uint8_t *optim_decay_mask(const struct model *m);

/* One Adam update of the arena's elements [lo, hi) (0 and num_params: the whole arena; the
 * sharded optimizer: its own shard), through ops->adam_update. The pointers are the whole
 * arenas': master (num_params fp32 in the backend's memory: m->master on the CPU) and the
 * storage copy m->weights move along grad (num_params, fp32 accumulated gradient) *
 * grad_scale; mom_m, mom_v (num_params) are the moments; decay_mask (num_params) limits
 * decoupled weight decay; step is 0-based. */
void optim_adam_update(struct model *m, size_t lo, size_t hi, float *master, const float *grad,
                       float *mom_m, float *mom_v, const uint8_t *decay_mask, float lr,
                       float grad_scale, long step);

#endif
