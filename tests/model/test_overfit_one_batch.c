/* test_overfit_one_batch — the whole training step learns: the fixture's tiny XLM (2 layers,
 * dim 64, vocab 512), freshly initialized by model_init_weights, trained with Adam on one
 * fixed batch of 4 rows (47 target tokens), drives the mean loss from ln(512) ~ 6.2 below
 * 0.1 within MAX_STEPS updates, with the default clip of 5 and a short inverse_sqrt warm-up.
 *
 * usage: test_overfit_one_batch <dir with weights.h5 batch.h5> */
#include "core/comm.h"
#include "core/model.h"
#include "core/trainer.h"
#include "tests/ref/fixture.h"

#include <stdio.h>

/* It takes 16 steps (measured); the bound leaves room for backend rounding differences. */
#define MAX_STEPS 50
#define TARGET_LOSS 0.1

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s FIXTURE_DIR\n", argv[0]);
        return 2;
    }
    char weights[512], batch_path[512];
    snprintf(weights, sizeof weights, "%s/weights.h5", argv[1]);
    snprintf(batch_path, sizeof batch_path, "%s/batch.h5", argv[1]);
    struct xlmc_config cfg;
    struct fixture_batch fb;
    if (fixture_load_config(weights, &cfg) || fixture_load_batch(batch_path, &fb)) return 1;
    cfg.train.lr = 1e-2f;
    cfg.train.schedule = SCHEDULE_INVERSE_SQRT;
    cfg.train.warmup = 10;
    cfg.train.warmup_init_lr = 1e-4f;
    cfg.train.clip_norm = 5;

    struct model m;
    struct trainer t;
    struct comm *c = comm_local_create();
    if (model_create(&m, &cfg, ops_cpu(OPS_FP32))) return 1;
    model_init_weights(&m, 7);
    if (trainer_init(&t, &m, c)) return 1;

    struct step_stats st = {0};
    double first = -1;
    int step;
    for (step = 0; step < MAX_STEPS; step++) {
        if (trainer_step(&t, &fb.batch, 1, &st)) return 1;
        if (first < 0) first = st.loss;
        if (step % 10 == 0)
            printf("step %3d  loss %.4f  lr %.2e  norm %.3f\n", step, st.loss, st.lr, st.grad_norm);
        if (st.loss < TARGET_LOSS) break;
    }
    printf("loss %.4f -> %.4f after %d steps (bound %d)\n", first, st.loss, step + 1, MAX_STEPS);
    int ok = st.loss < TARGET_LOSS;
    if (!ok)
        printf("FAIL: loss %.4f did not fall below %g within %d steps\n", st.loss, TARGET_LOSS,
               MAX_STEPS);
    trainer_free(&t);
    model_destroy(&m);
    comm_destroy(c);
    fixture_free_batch(&fb);
    printf(ok ? "ok\n" : "FAILED\n");
    return ok ? 0 : 1;
}
