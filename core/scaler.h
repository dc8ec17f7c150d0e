/* scaler.h — the dynamic loss scaler of fp16 training.
 *
 * In fp16 the backward pass keeps gradients in half precision, where small values flush to
 * zero; multiplying the loss by a large scale keeps them representable. The scale starts at
 * train.loss_scale_init (2^16), doubles after train.loss_scale_growth clean steps in a row,
 * and halves on any step whose gradient holds an inf or NaN (that update is skipped). A scale
 * that would drop below train.loss_scale_min means the model itself diverged: training stops.
 * In fp32 the scaler is off: scale 1, it never skips and never changes.
 *
 * Its whole state is two numbers (scaler_save / scaler_restore) that a checkpoint stores. */
#ifndef XLMC_SCALER_H
#define XLMC_SCALER_H

#include "core/config.h"

struct scaler {
    int enabled;          /* 0 in fp32 */
    float scale;          /* current loss scale */
    long clean_steps;     /* finite steps since the last change of scale */
    long growth_interval; /* clean steps before the scale doubles */
    float min_scale;      /* floor: below it training stops */
};

#define SCALER_STATE_LEN 2

void scaler_init(struct scaler *s, const struct train_config *tc);
/* Record the outcome of a step (overflow: the gradient had an inf/NaN). Returns 0, or -1
 * after printing an error when the halved scale falls below the floor. */
int scaler_update(struct scaler *s, int overflow);
/* state[0] = scale, state[1] = clean_steps */
void scaler_save(const struct scaler *s, double state[SCALER_STATE_LEN]);
/* Returns 0, or -1 after printing an error when the state is not a valid one. */
int scaler_restore(struct scaler *s, const double state[SCALER_STATE_LEN]);

#endif
