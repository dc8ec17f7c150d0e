/* selftest_step.c — one full fp16 training step (forward, backward, unscale, Adam, dropout
 * on) of a tiny model on a backend under test against the CPU backend from the same weights
 * and batch, then an injected overflow that must skip the step on both alike; for a CLM batch
 * and for a masked bidirectional one (MLM/TLM: positions restarting, a few targets).
 *
 * Tolerances (fp16 storage rounds every activation and gradient to 11 bits, and the two
 * backends sum matrix products in different orders):
 *   loss                       |diff| <= 2e-3 loss
 *   summed gradient (fp32)     |diff| <= 2e-2 max|g| + 2e-2 |g| per element
 *   master weights after Adam  |diff| <= 2 lr (step 1 of Adam moves each weight by about
 *                              lr sign(g), so a gradient within rounding of zero may flip)
 *                              and at most 1% of the weights differ by more than lr / 10. */
#include "train/selftest.h"

#include "core/comm.h"
#include "core/config.h"
#include "core/model.h"
#include "core/trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { STEP_B = 2, STEP_T = 9 };

static const char STEP_CONFIG[] =
    "[model]\nvocab_size = 50\ndim = 64\nn_layers = 2\nn_heads = 4\nffn_dim = 256\n"
    "max_positions = 128\nn_langs = 2\nlangs = de,en\ndropout = 0.1\n"
    "attention_dropout = 0.1\nlayer_norm_eps = 1e-12\nuse_lang_emb = true\n"
    "[train]\nbatch_tokens = 18\nmicro_batch = 2\nseq_len = 9\nlr = 0.001\n"
    "schedule = constant\nmax_steps = 10\nprecision = fp16\nseed = 1\nclip_norm = 5\n";

struct step_run {
    struct model m;
    struct trainer t;
    struct comm *comm;
    float *grad, *master;
    struct step_stats st;
    int ready;
};

static int step_start(struct step_run *r, const struct xlmc_config *cfg, const struct ops *ops) {
    memset(r, 0, sizeof *r);
    if (model_create(&r->m, cfg, ops) != 0) return -1;
    if (model_init_weights(&r->m, 7) != 0) return -1;
    r->comm = comm_local_create();
    if (trainer_init(&r->t, &r->m, r->comm) != 0) return -1;
    r->ready = 1;
    r->grad = malloc(r->m.num_params * sizeof(float));
    r->master = malloc(r->m.num_params * sizeof(float));
    return r->grad && r->master ? 0 : -1;
}

static void step_end(struct step_run *r) {
    if (r->ready) {
        trainer_free(&r->t);
        comm_destroy(r->comm);
    }
    model_destroy(&r->m);
    free(r->grad);
    free(r->master);
}

/* 1 on failure: worst |a-b| over (atol + rtol |b|) above 1, or more than max_loose_frac of
 * the elements differ by more than `loose`. */
static int step_compare(FILE *log, const char *what, const float *a, const float *b, size_t n,
                        double atol, double rtol, double loose, double max_loose_frac) {
    size_t worst = 0, n_loose = 0;
    double worst_ratio = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i]) || !isfinite(b[i])) {
            fprintf(log, "FAIL train step %s: element %zu is %g, reference %g\n", what, i, a[i],
                    b[i]);
            return 1;
        }
        double d = fabs((double)a[i] - b[i]), lim = atol + rtol * fabs((double)b[i]);
        if (d / lim > worst_ratio) {
            worst_ratio = d / lim;
            worst = i;
        }
        n_loose += d > loose;
    }
    int bad = worst_ratio > 1.0 || (double)n_loose > max_loose_frac * (double)n;
    fprintf(log,
            "%s train step %-8s worst element %zu: %.6g vs %.6g (%.0f%% of tolerance); "
            "%zu of %zu differ by more than %g\n",
            bad ? "FAIL" : "ok  ", what, worst, a[worst], b[worst], 100 * worst_ratio, n_loose, n,
            loose);
    return bad;
}

/* trainer.grad_summed hooks (ctx: the step_run): keep the summed gradient for comparison;
 * put an inf into it, as an fp16 overflow would. */
static int copy_grad(void *ctx, struct trainer *t) {
    struct step_run *r = ctx;
    r->m.ops->to_host(r->grad, t->grad_acc, r->m.num_params * sizeof(float));
    return 0;
}

static int inject_inf(void *ctx, struct trainer *t) {
    (void)ctx;
    float inf = INFINITY;
    t->m->ops->to_device(t->grad_acc + t->m->num_params / 3, &inf, sizeof inf);
    return 0;
}

static int step_case(const struct ops *ref, const struct ops *dev, FILE *log,
                     const struct xlmc_config *cfg, const struct batch *b, float scale);

int selftest_train_step(const struct ops *ref, const struct ops *dev, FILE *log) {
    log = log ? log : stdout;
    struct xlmc_config cfg;
    memset(&cfg, 0, sizeof cfg);
    if (config_parse_string(STEP_CONFIG, "selftest step config", &cfg) != 0) return 1;
    int32_t ids[STEP_B * STEP_T], langs[STEP_B * STEP_T], targets[STEP_B * STEP_T];
    int32_t lengths[STEP_B] = {STEP_T, 6};
    uint64_t x = 12345;
    for (int i = 0; i < STEP_B * STEP_T; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = 4 + (int)((x >> 33) % (uint64_t)(cfg.model.vocab_size - 4));
        langs[i] = i / STEP_T;
    }
    for (int b = 0; b < STEP_B; b++)
        for (int t = 0; t < STEP_T; t++)
            targets[b * STEP_T + t] = t + 1 < lengths[b] ? ids[b * STEP_T + t + 1] : -1;
    struct batch batch = {STEP_B, STEP_T, ids, langs, lengths, targets, 0, NULL, 0};
    fprintf(log, "-- train step: CLM (causal)\n");
    int failures = step_case(ref, dev, log, &cfg, &batch, 0.0f);

    /* MLM/TLM: row 0 two sentences (en 0..4, de 0..3, positions restarting), row 1 one of 6
     * and padding; every third real position predicted, its input the mask word (5) */
    int32_t pos[STEP_B * STEP_T];
    for (int b = 0; b < STEP_B; b++)
        for (int t = 0; t < STEP_T; t++) {
            int i = b * STEP_T + t, second = b == 0 && t >= 5;
            pos[i] = t < lengths[b] ? (second ? t - 5 : t) : 0;
            langs[i] = b == 0 ? !second : 1;
            targets[i] = t < lengths[b] && t % 3 == 1 ? ids[i] : -1;
            if (targets[i] >= 0) ids[i] = 5;
        }
    batch.positions = pos;
    batch.bidirectional = 1;
    fprintf(log, "-- train step: MLM/TLM (bidirectional, positions restarting)\n");
    /* 6 targets: the default first scale (65536 / 6 per logit) overflows fp16 in the
     * embedding gradient, a skipped step that would compare nothing; start lower */
    return failures + step_case(ref, dev, log, &cfg, &batch, 1024.0f);
}

static int step_case(const struct ops *ref, const struct ops *dev, FILE *log,
                     const struct xlmc_config *cfg_, const struct batch *b, float scale) {
    struct xlmc_config cfg = *cfg_;
    const struct batch batch = *b;
    static struct step_run runs[2]; /* 0: reference, 1: under test */
    int failures = 0;
    if (step_start(&runs[0], &cfg, ref) != 0 || step_start(&runs[1], &cfg, dev) != 0) {
        fprintf(log, "FAIL train step: could not set up the model on both backends\n");
        failures = 1;
        goto done;
    }
    size_t n = runs[0].m.num_params;
    for (int k = 0; k < 2 && scale > 0.0f; k++)
        runs[k].t.scaler.scale = scale;
    /* Each step stops at the summed gradient (copy_grad) before applying it, so the
     * gradients are compared as they went into Adam. */
    for (int k = 0; k < 2; k++) {
        struct step_run *r = &runs[k];
        r->t.grad_summed = copy_grad;
        r->t.grad_summed_ctx = r;
        if (trainer_step(&r->t, &batch, 1, &r->st) != 0) {
            failures = 1;
            goto done;
        }
    }
    double gmax = 0;
    for (size_t i = 0; i < n; i++)
        gmax = fmax(gmax, fabs(runs[0].grad[i]));
    failures += step_compare(log, "gradient", runs[1].grad, runs[0].grad, n, 2e-2 * gmax, 2e-2,
                             INFINITY, 1.0);
    int loss_bad = fabs(runs[0].st.loss - runs[1].st.loss) > 2e-3 * fabs(runs[0].st.loss) ||
                   runs[0].st.skipped || runs[1].st.skipped;
    fprintf(log, "%s train step loss     %.7f vs %.7f (reference), skipped %d/%d\n",
            loss_bad ? "FAIL" : "ok  ", runs[1].st.loss, runs[0].st.loss, runs[1].st.skipped,
            runs[0].st.skipped);
    failures += loss_bad;
    for (int k = 0; k < 2; k++)
        trainer_master_to_host(&runs[k].t);
    failures += step_compare(log, "master", runs[1].m.master, runs[0].m.master, n, 2 * cfg.train.lr,
                             0, cfg.train.lr / 10, 0.01);

    /* an inf in the summed gradient: both must skip, keep the weights, halve the scale */
    for (int k = 0; k < 2; k++) {
        struct step_run *r = &runs[k];
        float scale_before = r->t.scaler.scale;
        memcpy(r->master, r->m.master, n * sizeof(float));
        r->t.grad_summed = inject_inf;
        if (trainer_step(&r->t, &batch, 1, &r->st) != 0) {
            failures = 1;
            goto done;
        }
        trainer_master_to_host(&r->t);
        int same = !memcmp(r->master, r->m.master, n * sizeof(float));
        int bad = !r->st.skipped || !same || r->t.scaler.scale != scale_before / 2;
        fprintf(log,
                "%s train step overflow on %s: skipped %d, weights untouched %d, "
                "scale %g -> %g\n",
                bad ? "FAIL" : "ok  ", k ? dev->name : "reference", r->st.skipped, same,
                scale_before, r->t.scaler.scale);
        failures += bad;
    }
    failures += runs[0].t.step != runs[1].t.step || runs[0].t.skipped != runs[1].t.skipped;
done:
    step_end(&runs[0]);
    step_end(&runs[1]);
    return failures;
}
