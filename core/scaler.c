/* scaler.c — dynamic loss scaling for fp16 (see scaler.h). */
#include "core/scaler.h"
#include "core/util.h"

#include <math.h>

void scaler_init(struct scaler *s, const struct train_config *tc) {
    s->enabled = tc->precision == PRECISION_FP16;
    s->scale = s->enabled ? tc->loss_scale_init : 1.0f;
    s->clean_steps = 0;
    s->growth_interval = tc->loss_scale_growth > 0 ? tc->loss_scale_growth : 1;
    s->min_scale = tc->loss_scale_min;
}

int scaler_update(struct scaler *s, int overflow) {
    if (!s->enabled) return 0;
    if (overflow) {
        s->clean_steps = 0;
        float halved = s->scale * 0.5f;
        if (halved < s->min_scale)
            return xlmc_error("fp16 loss scale fell to %g, below train.loss_scale_min = %g: the "
                              "gradients overflow at any scale, so the model has diverged; "
                              "lower train.lr or train with precision = fp32",
                              (double)halved, (double)s->min_scale);
        s->scale = halved;
        return 0;
    }
    if (++s->clean_steps >= s->growth_interval) {
        /* Stop doubling before float overflow: no gradient needs a scale near 2^127. */
        if (s->scale < 0x1p100f) s->scale *= 2.0f;
        s->clean_steps = 0;
    }
    return 0;
}

void scaler_save(const struct scaler *s, double state[SCALER_STATE_LEN]) {
    state[0] = s->scale;
    state[1] = (double)s->clean_steps;
}

int scaler_restore(struct scaler *s, const double state[SCALER_STATE_LEN]) {
    if (!isfinite(state[0]) || state[0] <= 0 || !(state[1] >= 0) || state[1] != floor(state[1]))
        return xlmc_error("loss scaler state (scale %g, clean steps %g) is not valid", state[0],
                          state[1]);
    if (!s->enabled) return 0; /* fp32 ignores a saved fp16 state: scale stays 1 */
    s->scale = (float)state[0];
    s->clean_steps = (long)state[1];
    return 0;
}
