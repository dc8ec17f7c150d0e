/* gpu_step.c — xlmc's half of the step race of tests/gpu/run.sh (race.py is PyTorch's half):
 * times trainer_step (forward, backward, gradient check, clipping, Adam) of the model of a
 * config on one device, one micro-batch of full rows of random tokens per step, and prints
 * training tokens per second and MFU. Like tests/bench/cpu_step.c, but for any config, the
 * CUDA backend and fp16.
 *
 * usage: xlmc_gpu_step --config INI [--device cpu|cuda] [--precision fp32|fp16] [--vocab V]
 *                      [--micro-batch B] [--seq-len T] [--warmup N] [--steps N]
 * Defaults: the config's precision, micro_batch and seq_len; --vocab is needed when the config
 * says vocab_size = 0 (it then comes from data); 3 warm-up and 10 timed steps.
 * Exit status: 0, 1 on a failed step, 2 usage, 77 --device cuda without a usable GPU. */
#include "core/comm.h"
#include "core/config.h"
#include "core/model.h"
#include "core/trainer.h"
#include "core/util.h"
#include "train/metrics.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(const char *argv0) {
    fprintf(stderr, "usage: %s --config INI [--device cpu|cuda] [--precision fp32|fp16]\n"
                    "       [--vocab V] [--micro-batch B] [--seq-len T] [--warmup N] [--steps N]\n",
            argv0);
    return 2;
}

/* a whole positive number, or -1 */
static long positive(const char *s) {
    char *end;
    long v = strtol(s, &end, 10);
    return *s && !*end && v > 0 ? v : -1;
}

int main(int argc, char **argv) {
    const char *config = NULL, *device = "cpu", *precision = NULL;
    long vocab = 0, B = 0, T = 0, warm = 3, timed = 10;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long *num = !strcmp(o, "--vocab")         ? &vocab
                    : !strcmp(o, "--micro-batch") ? &B
                    : !strcmp(o, "--seq-len")     ? &T
                    : !strcmp(o, "--warmup")      ? &warm
                    : !strcmp(o, "--steps")       ? &timed
                                                  : NULL;
        if (!v) return usage(argv[0]);
        if (num) {
            /* --warmup 0 is allowed: the timed steps then include the first step's set-up */
            *num = !strcmp(o, "--warmup") && !strcmp(v, "0") ? 0 : positive(v);
            if (*num < 0) {
                fprintf(stderr, "%s: %s %s: expected a positive whole number\n", argv[0], o, v);
                return 2;
            }
        } else if (!strcmp(o, "--config")) {
            config = v;
        } else if (!strcmp(o, "--device")) {
            device = v;
        } else if (!strcmp(o, "--precision")) {
            precision = v;
        } else {
            return usage(argv[0]);
        }
        i++;
    }
    if (!config || (strcmp(device, "cpu") && strcmp(device, "cuda")) ||
        (precision && strcmp(precision, "fp32") && strcmp(precision, "fp16")))
        return usage(argv[0]);

    struct xlmc_config cfg;
    if (config_load(config, &cfg)) return 2;
    if (vocab) cfg.model.vocab_size = (int)vocab;
    if (cfg.model.vocab_size < 20) {
        fprintf(stderr, "%s: %s: vocab_size is %d: give --vocab\n", argv[0], config,
                cfg.model.vocab_size);
        return 2;
    }
    if (B) cfg.train.micro_batch = (int)B;
    if (T) cfg.train.seq_len = (int)T;
    if (cfg.train.seq_len + 1 > cfg.model.max_positions) {
        fprintf(stderr, "%s: --seq-len %d: the model has %d positions\n", argv[0],
                cfg.train.seq_len, cfg.model.max_positions);
        return 2;
    }
    if (precision) cfg.train.precision = strcmp(precision, "fp16") ? PRECISION_FP32 : PRECISION_FP16;
    enum ops_precision prec = cfg.train.precision == PRECISION_FP16 ? OPS_FP16 : OPS_FP32;
    B = cfg.train.micro_batch;
    T = cfg.train.seq_len;
    cfg.train.batch_tokens = B * T; /* one micro-batch per step, one rank */

    const struct ops *ops = ops_cpu(prec);
    if (!strcmp(device, "cuda")) {
        char why[256] = "";
        ops = ops_cuda(prec, 0, why, sizeof why);
        if (!ops) {
            printf("xlmc_gpu_step: skipped: %s\n", why);
            return 77;
        }
    }
    struct model m;
    if (model_create(&m, &cfg, ops)) return 1;
    model_init_weights(&m, 1);
    struct comm *c = comm_local_create();
    struct trainer t;
    if (trainer_init(&t, &m, c)) return 1;

    /* Full rows of random real tokens (ids above XLM's 14 specials), next-token targets, the
     * two languages alternating by row: what cpu_step.c and race.py feed too. */
    size_t n = (size_t)B * (size_t)T;
    int32_t *ids = xmalloc(n * sizeof *ids), *langs = xmalloc(n * sizeof *langs);
    int32_t *targets = xmalloc(n * sizeof *targets), *lengths = xmalloc((size_t)B * sizeof *lengths);
    uint64_t r = 88172645463325252ull;
    for (size_t i = 0; i < n; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        ids[i] = 14 + (int32_t)(r % (uint64_t)(cfg.model.vocab_size - 14));
        langs[i] = (int32_t)((i / (size_t)T) % 2);
    }
    for (long b = 0; b < B; b++) {
        lengths[b] = (int32_t)T;
        for (long p = 0; p < T; p++) targets[b * T + p] = p + 1 < T ? ids[b * T + p + 1] : -100;
    }
    struct batch batch = {.B = (int)B, .T = (int)T, .ids = ids, .langs = langs,
                          .lengths = lengths, .targets = targets, .row0 = 0};

    struct step_stats st = {0};
    int rc = 0;
    for (long s = 0; s < warm && !rc; s++) rc = trainer_step(&t, &batch, 1, &st);
    ops->synchronize();
    double t0 = now_seconds();
    for (long s = 0; s < timed && !rc; s++) rc = trainer_step(&t, &batch, 1, &st);
    ops->synchronize();
    double seconds = now_seconds() - t0;
    if (!rc) {
        const char *source = "";
        double fpt = metrics_flops_per_token(&m), peak = metrics_peak_flops(ops, 0, &source);
        double tok_s = (double)n * (double)timed / seconds;
        printf("xlmc: %s %s dim %d layers %d heads %d vocab %d B %ld T %ld: %ld steps in %.3f s, "
               "loss %.4f, loss scale %g, %ld skipped\n",
               device, prec == OPS_FP16 ? "fp16" : "fp32", cfg.model.dim, cfg.model.n_layers,
               cfg.model.n_heads, cfg.model.vocab_size, B, T, timed, seconds, st.loss,
               (double)st.loss_scale, t.skipped);
        printf("xlmc tokens/s %.1f\n", tok_s);
        printf("xlmc flops/token %.6g (6 x %zu parameters + 12 L C T)\n", fpt, m.num_params);
        printf("xlmc peak TFLOP/s %.3f (%s)\n", peak / 1e12, source);
        printf("xlmc MFU %.2f%%\n", peak > 0 ? 100.0 * fpt * tok_s / peak : 0.0);
    } else {
        fprintf(stderr, "xlmc_gpu_step: a training step failed\n");
    }
    free(ids);
    free(langs);
    free(targets);
    free(lengths);
    trainer_free(&t);
    comm_destroy(c);
    model_destroy(&m);
    return rc ? 1 : 0;
}
