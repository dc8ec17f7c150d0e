/* test_adam_lr_schedules — the learning-rate schedules and the clipping factor agree with
 * what they copy:
 *   inverse_sqrt: XLM's AdamInverseSqrtWithWarmup (facebookresearch/XLM, src/optim.py):
 *     lr_step = (lr - warmup_init_lr) / warmup_updates; decay_factor = lr * warmup_updates**0.5
 *     lr(n) = warmup_init_lr + n * lr_step if n < warmup_updates else decay_factor * n**-0.5
 *     where n counts the updates already applied (the first update uses lr(0));
 *   cosine: the endpoints and midpoint of a half cosine from lr (after warm-up) to min_lr;
 *   clip: torch.nn.utils.clip_grad_norm_: coef = max_norm / (total_norm + 1e-6), clamped
 *     to 1. */
#include "core/optim.h"

#include <math.h>
#include <stdio.h>

static int fails;

static void expect(const char *what, double got, double want, double rel) {
    double err = fabs(got - want) / fmax(fabs(want), 1e-30);
    if (!(err <= rel)) {
        printf("FAIL %s: got %.9g, want %.9g\n", what, got, want);
        fails++;
    }
}

int main(void) {
    struct train_config tc = {0};
    tc.lr = 1e-4f;
    tc.warmup = 4000;
    tc.warmup_init_lr = 1e-7f;
    tc.schedule = SCHEDULE_INVERSE_SQRT;
    tc.max_steps = 100000;

    /* XLM's formula, in double, at points of both phases */
    double lr_step = (1e-4 - 1e-7) / 4000, decay = 1e-4 * sqrt(4000.0);
    long points[] = {0, 1, 1999, 3999, 4000, 4001, 16000, 99999};
    for (size_t i = 0; i < sizeof points / sizeof points[0]; i++) {
        long n = points[i];
        double want = n < 4000 ? 1e-7 + (double)n * lr_step : decay / sqrt((double)n);
        char what[64];
        snprintf(what, sizeof what, "inverse_sqrt lr(%ld)", n);
        expect(what, optim_lr(&tc, n), want, 1e-5);
    }

    tc.schedule = SCHEDULE_COSINE;
    tc.warmup = 100;
    tc.max_steps = 1100;
    tc.min_lr = 1e-5f;
    expect("cosine at the end of warm-up", optim_lr(&tc, 100), 1e-4, 1e-6);
    expect("cosine midpoint", optim_lr(&tc, 600), 0.5 * (1e-4 + 1e-5), 1e-6);
    expect("cosine quarter", optim_lr(&tc, 350), 1e-5 + 0.5 * 9e-5 * (1 + cos(M_PI / 4)), 1e-6);
    expect("cosine at max_steps", optim_lr(&tc, 1100), 1e-5, 1e-6);
    expect("cosine after max_steps", optim_lr(&tc, 5000), 1e-5, 1e-6);
    expect("cosine warm-up start", optim_lr(&tc, 0), 1e-7, 1e-6);

    tc.schedule = SCHEDULE_CONSTANT;
    tc.warmup = 0;
    expect("constant", optim_lr(&tc, 12345), 1e-4, 1e-7);

    expect("clip above the bound", optim_clip_coef(10.0, 5.0f), 5.0 / (10.0 + 1e-6), 1e-7);
    expect("clip below the bound", optim_clip_coef(4.0, 5.0f), 1.0, 0);
    expect("clip off", optim_clip_coef(1e9, 0.0f), 1.0, 0);

    printf(fails ? "FAILED (%d)\n" : "ok\n", fails);
    return fails ? 1 : 0;
}
