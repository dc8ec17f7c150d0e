/* gpu_step.c — xlmc's half of the step race of tests/gpu/run.sh (race.py is PyTorch's half):
 * times trainer_step (forward, backward, gradient check, clipping, Adam) of the model of a
 * config on one device, one micro-batch of full rows of random tokens per step, and prints
 * training tokens per second and MFU. Like tests/bench/cpu_step.c, but for any config, the
 * CUDA backend and fp16.
 *
 * usage: xlmc_gpu_step --config INI [--device cpu|cuda] [--precision fp32|fp16] [--vocab V]
 *                      [--micro-batch B] [--seq-len T] [--warmup N] [--steps N]
 *                      [--check-against-cpu]
 * Defaults: the config's precision, micro_batch and seq_len; --vocab is needed when the config
 * says vocab_size = 0 (it then comes from data); 3 warm-up and 10 timed steps.
 * --check-against-cpu times nothing: it takes the first step on the device and on the CPU
 * backend (the reference, same precision) from the same weights, batch and dropout bits and
 * compares the loss and the gradient norm: the whole model at the config's shapes, where
 * `xlmc selftest` checks each op at small ones. Exit 1 when they differ beyond tolerance.
 * Exit status: 0, 1 on a failed step, 2 usage, 77 --device cuda without a usable GPU. */
#include "core/comm.h"
#include "core/config.h"
#include "core/model.h"
#include "core/trainer.h"
#include "core/util.h"
#include "train/metrics.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s --config INI [--device cpu|cuda] [--precision fp32|fp16]\n"
            "       [--vocab V] [--micro-batch B] [--seq-len T] [--warmup N] [--steps N]\n"
            "       [--check-against-cpu] [--no-graphs]\n",
            argv0);
    return 2;
}

/* One model with its trainer on one backend. */
struct bench {
    struct model m;
    struct comm *c;
    struct trainer t;
};

static int bench_open(struct bench *b, const struct xlmc_config *cfg, const struct ops *ops) {
    memset(b, 0, sizeof *b);
    if (model_create(&b->m, cfg, ops)) return -1;
    model_init_weights(&b->m, 1);
    b->c = comm_local_create();
    return trainer_init(&b->t, &b->m, b->c);
}

static void bench_close(struct bench *b) {
    trainer_free(&b->t);
    comm_destroy(b->c);
    model_destroy(&b->m);
}

/* |a - b| within atol + rtol |b| */
static int close_to(double a, double b, double atol, double rtol) {
    return isfinite(a) && fabs(a - b) <= atol + rtol * fabs(b);
}

/* First step on dev and on the CPU reference; 0 when loss and gradient norm agree. The fp16
 * tolerances allow for half-precision storage of activations, which the CPU backend rounds
 * the same way but reaches through other summation orders. */
static int check_against_cpu(const struct xlmc_config *cfg, const struct ops *dev,
                             const struct batch *batch) {
    const struct ops *ref = ops_cpu(dev->precision);
    struct bench a, b;
    struct step_stats sa = {0}, sb = {0};
    if (bench_open(&a, cfg, dev) || trainer_step(&a.t, batch, 1, &sa)) return 1;
    bench_close(&a);
    if (bench_open(&b, cfg, ref) || trainer_step(&b.t, batch, 1, &sb)) return 1;
    bench_close(&b);
    int fp16 = dev->precision == OPS_FP16;
    /* a step skipped for overflow (both must agree on that) has no meaningful norm */
    int ok = close_to(sa.loss, sb.loss, 0, fp16 ? 2e-3 : 2e-5) && sa.skipped == sb.skipped &&
             (sa.skipped || close_to(sa.grad_norm, sb.grad_norm, 0, fp16 ? 2e-2 : 1e-3));
    printf("xlmc check: %s %s against cpu, dim %d layers %d vocab %d B %d T %d: loss %.6f vs "
           "%.6f, grad norm %.6f vs %.6f, skipped %d vs %d: %s\n",
           dev->name, fp16 ? "fp16" : "fp32", cfg->model.dim, cfg->model.n_layers,
           cfg->model.vocab_size, batch->B, batch->T, sa.loss, sb.loss, (double)sa.grad_norm,
           (double)sb.grad_norm, sa.skipped, sb.skipped, ok ? "agree" : "DIFFER");
    return ok ? 0 : 1;
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
    int check = 0, graphs = 1;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "--check-against-cpu")) {
            check = 1;
            continue;
        }
        if (!strcmp(o, "--no-graphs")) { /* train.cuda_graphs = false: kernels one by one */
            graphs = 0;
            continue;
        }
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
    if (precision)
        cfg.train.precision = strcmp(precision, "fp16") ? PRECISION_FP32 : PRECISION_FP16;
    enum ops_precision prec = cfg.train.precision == PRECISION_FP16 ? OPS_FP16 : OPS_FP32;
    B = cfg.train.micro_batch;
    T = cfg.train.seq_len;
    cfg.train.batch_tokens = B * T; /* one micro-batch per step, one rank */
    cfg.train.cuda_graphs = graphs;

    const struct ops *ops = ops_cpu(prec);
    if (!strcmp(device, "cuda")) {
        char why[256] = "";
        ops = ops_cuda(prec, 0, why, sizeof why);
        if (!ops) {
            printf("xlmc_gpu_step: skipped: %s\n", why);
            return 77;
        }
    }
    /* Full rows of random real tokens (ids above XLM's 14 specials), next-token targets, the
     * two languages alternating by row: what cpu_step.c and race.py feed too. */
    size_t n = (size_t)B * (size_t)T;
    int32_t *ids = xmalloc(n * sizeof *ids), *langs = xmalloc(n * sizeof *langs);
    int32_t *targets = xmalloc(n * sizeof *targets),
            *lengths = xmalloc((size_t)B * sizeof *lengths);
    uint64_t r = 88172645463325252ull;
    for (size_t i = 0; i < n; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        ids[i] = 14 + (int32_t)(r % (uint64_t)(cfg.model.vocab_size - 14));
        langs[i] = (int32_t)((i / (size_t)T) % 2);
    }
    for (long b = 0; b < B; b++) {
        lengths[b] = (int32_t)T;
        for (long p = 0; p < T; p++)
            targets[b * T + p] = p + 1 < T ? ids[b * T + p + 1] : -100;
    }
    struct batch batch = {.B = (int)B,
                          .T = (int)T,
                          .ids = ids,
                          .langs = langs,
                          .lengths = lengths,
                          .targets = targets,
                          .row0 = 0};

    if (check) {
        int bad = check_against_cpu(&cfg, ops, &batch);
        free(ids);
        free(langs);
        free(targets);
        free(lengths);
        return bad;
    }
    struct bench bn;
    if (bench_open(&bn, &cfg, ops)) return 1;
    struct model *m = &bn.m;
    struct trainer *t = &bn.t;
    struct step_stats st = {0};
    int rc = 0;
    for (long s = 0; s < warm && !rc; s++)
        rc = trainer_step(t, &batch, 1, &st);
    ops->synchronize();
    double t0 = now_seconds();
    for (long s = 0; s < timed && !rc; s++)
        rc = trainer_step(t, &batch, 1, &st);
    ops->synchronize();
    double seconds = now_seconds() - t0;
    if (!rc) {
        const char *source = "";
        double fpt = metrics_flops_per_token(m), peak = metrics_peak_flops(ops, 0, &source);
        double tok_s = (double)n * (double)timed / seconds;
        printf("xlmc: %s %s dim %d layers %d heads %d vocab %d B %ld T %ld: %ld steps in %.3f s, "
               "loss %.4f, loss scale %g, %ld skipped\n",
               device, prec == OPS_FP16 ? "fp16" : "fp32", cfg.model.dim, cfg.model.n_layers,
               cfg.model.n_heads, cfg.model.vocab_size, B, T, timed, seconds, st.loss,
               (double)st.loss_scale, t->skipped);
        printf("xlmc CUDA graphs %s\n", ops->graph_begin && graphs ? "on" : "off");
        printf("xlmc tokens/s %.1f\n", tok_s);
        printf("xlmc flops/token %.6g (6 x %zu parameters + 12 L C T)\n", fpt, m->num_weights);
        printf("xlmc peak TFLOP/s %.3f (%s)\n", peak / 1e12, source);
        printf("xlmc MFU %.2f%%\n", peak > 0 ? 100.0 * fpt * tok_s / peak : 0.0);
    } else {
        fprintf(stderr, "xlmc_gpu_step: a training step failed\n");
    }
    free(ids);
    free(langs);
    free(targets);
    free(lengths);
    bench_close(&bn);
    return rc ? 1 : 0;
}
