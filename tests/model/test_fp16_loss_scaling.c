/* test_fp16_loss_scaling — fp16 training with the dynamic loss scaler:
 *   1. the fp16 loss on the fixture is within 1e-2 relative of transformers' fp32 loss
 *      (expected.h5);
 *   2. an inf injected into one element of the summed gradient skips exactly that update:
 *      the scale halves, master weights, the storage copy and both Adam moments stay
 *      bit-identical, the step counter does not move, and the next step updates again;
 *   3. with loss_scale_growth = 5, five clean steps double the scale and four do not;
 *   4. a real fp16 overflow (initial scale 2^40: the half-precision gradients become inf) is
 *      skipped and halves the scale until the gradients fit;
 *   5. a scale that would fall below loss_scale_min stops training with an error (-1);
 *   6. in fp32 the scaler stays at 1 and never skips.
 *
 * usage: test_fp16_loss_scaling <dir with weights.h5 batch.h5 expected.h5> */
#include "core/comm.h"
#include "core/model.h"
#include "core/trainer.h"
#include "tests/ref/fixture.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fails;
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("FAIL line %d: ", __LINE__);                                                    \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
            fails++;                                                                               \
        }                                                                                          \
    } while (0)

static char weights[512], batch_path[512], expected[512];
static struct fixture_batch fb;

/* A fixture model in the given precision with a trainer on a local communicator. */
static int setup(struct xlmc_config *cfg, struct model *m, struct trainer *t, struct comm *c) {
    enum ops_precision p = cfg->train.precision == PRECISION_FP16 ? OPS_FP16 : OPS_FP32;
    if (model_create(m, cfg, ops_cpu(p)) || fixture_load_params(m, weights, "")) return -1;
    return trainer_init(t, m, c);
}

static void teardown(struct model *m, struct trainer *t) {
    trainer_free(t);
    model_destroy(m);
}

/* Copies of everything an update could touch, to compare bit for bit. */
struct snapshot {
    float *master, *mom_m, *mom_v, *copy;
};

static void snap(struct snapshot *s, const struct trainer *t) {
    size_t n = t->m->num_params, bytes = n * sizeof(float);
    s->master = malloc(bytes);
    s->mom_m = malloc(bytes);
    s->mom_v = malloc(bytes);
    s->copy = malloc(bytes);
    memcpy(s->master, t->m->master, bytes);
    t->m->ops->to_host(s->mom_m, t->adam_m, bytes);
    t->m->ops->to_host(s->mom_v, t->adam_v, bytes);
    t->m->ops->storage_to_f32(s->copy, t->m->weights, n);
}

static int snap_equal(const struct snapshot *a, const struct snapshot *b, size_t n) {
    size_t bytes = n * sizeof(float);
    return !memcmp(a->master, b->master, bytes) && !memcmp(a->mom_m, b->mom_m, bytes) &&
           !memcmp(a->mom_v, b->mom_v, bytes) && !memcmp(a->copy, b->copy, bytes);
}

static void snap_free(struct snapshot *s) {
    free(s->master);
    free(s->mom_m);
    free(s->mom_v);
    free(s->copy);
}

static void test_loss_matches_fp32(struct xlmc_config cfg) {
    cfg.train.precision = PRECISION_FP16;
    struct model m;
    if (model_create(&m, &cfg, ops_cpu(OPS_FP16)) || fixture_load_params(&m, weights, "")) {
        fails++;
        return;
    }
    size_t n = 0;
    float *want = fixture_read_f32(expected, "loss", &n);
    long count = 0;
    float loss = model_forward(&m, &fb.batch, 0, 1, 0, NULL, &count);
    double rel = want ? fabs(loss - want[0]) / want[0] : INFINITY;
    printf("fp16 loss %.6f, transformers fp32 %.6f: relative difference %.2e\n", loss,
           want ? want[0] : NAN, rel);
    CHECK(rel <= 1e-2, "fp16 loss off by %.3g relative (> 1e-2)", rel);
    CHECK(rel > 0, "fp16 loss equals the fp32 loss exactly: is fp16 rounding on?");
    free(want);
    model_destroy(&m);
}

/* trainer.grad_summed hook: an inf in the summed gradient, as an fp16 overflow leaves it. */
static int inject_inf(void *ctx, struct trainer *t) {
    (void)ctx;
    t->grad_acc[t->m->num_params / 3] = INFINITY; /* CPU backend: host memory */
    return 0;
}

static void test_injected_inf_and_growth(struct xlmc_config cfg, struct comm *c) {
    cfg.train.precision = PRECISION_FP16;
    cfg.train.loss_scale_init = 65536;
    cfg.train.loss_scale_growth = 5;
    struct model m;
    struct trainer t;
    struct step_stats st;
    if (setup(&cfg, &m, &t, c)) {
        fails++;
        return;
    }
    /* One clean step first, so the Adam moments are not all zero. */
    CHECK(trainer_step(&t, &fb.batch, 1, &st) == 0 && !st.skipped, "first fp16 step failed");
    CHECK(st.loss_scale == 65536, "step used scale %g", st.loss_scale);

    struct snapshot before, after;
    snap(&before, &t);
    t.grad_summed = inject_inf;
    CHECK(trainer_step(&t, &fb.batch, 1, &st) == 0, "an overflow must not stop training");
    t.grad_summed = NULL;
    snap(&after, &t);
    CHECK(st.skipped == 1, "the step with an inf was not skipped");
    CHECK(t.scaler.scale == 32768, "scale after overflow %g, want 32768", t.scaler.scale);
    CHECK(t.step == 1 && t.skipped == 1, "step %ld skipped %ld, want 1 and 1", t.step, t.skipped);
    CHECK(snap_equal(&before, &after, m.num_params),
          "weights or Adam moments changed on a skipped step");
    snap_free(&after);

    /* The next step is clean and updates; four clean steps leave the scale, the fifth
     * doubles it. */
    for (int i = 1; i <= 5; i++) {
        CHECK(trainer_step(&t, &fb.batch, 1, &st) == 0 && !st.skipped, "clean step %d failed", i);
        float want = i < 5 ? 32768.0f : 65536.0f;
        CHECK(t.scaler.scale == want, "after %d clean steps the scale is %g, want %g", i,
              t.scaler.scale, want);
    }
    snap(&after, &t);
    CHECK(!snap_equal(&before, &after, m.num_params), "clean steps did not update");
    CHECK(t.step == 6, "step counter %ld, want 6", t.step);
    snap_free(&before);
    snap_free(&after);
    teardown(&m, &t);
}

static void test_real_overflow_and_floor(struct xlmc_config cfg, struct comm *c) {
    cfg.train.precision = PRECISION_FP16;
    cfg.train.loss_scale_init = 0x1p40f; /* scaled gradients far beyond half's 65504 */
    struct model m;
    struct trainer t;
    struct step_stats st;
    if (setup(&cfg, &m, &t, c)) {
        fails++;
        return;
    }
    int skips = 0;
    while (skips < 40) {
        CHECK(trainer_step(&t, &fb.batch, 1, &st) == 0, "overflowing step returned an error");
        if (!st.skipped) break;
        skips++;
    }
    printf("scale 2^40: %d steps skipped, first update at scale 2^%g\n", skips,
           log2(st.loss_scale));
    CHECK(skips >= 1 && !st.skipped, "real fp16 overflow: %d skips, last skipped %d", skips,
          st.skipped);
    CHECK(t.step == 1, "step counter %ld after the first update", t.step);
    teardown(&m, &t);

    /* Floor: 2^40 halves to 2^39 (allowed), then 2^38 < 2^39 stops with an error. */
    cfg.train.loss_scale_min = 0x1p39f;
    if (setup(&cfg, &m, &t, c)) {
        fails++;
        return;
    }
    CHECK(trainer_step(&t, &fb.batch, 1, &st) == 0 && st.skipped, "first overflow");
    printf("expect an error about the loss scale floor:\n");
    fflush(stdout);
    CHECK(trainer_step(&t, &fb.batch, 1, &st) == -1, "scale below the floor did not stop");
    teardown(&m, &t);
}

static void test_fp32_never_scales(struct xlmc_config cfg, struct comm *c) {
    cfg.train.precision = PRECISION_FP32;
    cfg.train.loss_scale_growth = 1;
    struct model m;
    struct trainer t;
    struct step_stats st;
    if (setup(&cfg, &m, &t, c)) {
        fails++;
        return;
    }
    for (int i = 0; i < 3; i++) {
        CHECK(trainer_step(&t, &fb.batch, 1, &st) == 0 && !st.skipped, "fp32 step %d", i);
        CHECK(st.loss_scale == 1 && t.scaler.scale == 1, "fp32 scale %g", t.scaler.scale);
    }
    teardown(&m, &t);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s FIXTURE_DIR\n", argv[0]);
        return 2;
    }
    snprintf(weights, sizeof weights, "%s/weights.h5", argv[1]);
    snprintf(batch_path, sizeof batch_path, "%s/batch.h5", argv[1]);
    snprintf(expected, sizeof expected, "%s/expected.h5", argv[1]);
    struct xlmc_config cfg;
    if (fixture_load_config(weights, &cfg) || fixture_load_batch(batch_path, &fb)) return 1;
    struct comm *c = comm_local_create();

    test_loss_matches_fp32(cfg);
    test_injected_inf_and_growth(cfg, c);
    test_real_overflow_and_floor(cfg, c);
    test_fp32_never_scales(cfg, c);

    comm_destroy(c);
    fixture_free_batch(&fb);
    printf(fails ? "FAILED (%d)\n" : "ok\n", fails);
    return fails ? 1 : 0;
}
