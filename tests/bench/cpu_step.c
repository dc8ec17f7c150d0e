/* cpu_step.c — xlmc's half of the CPU training benchmark (tests/bench/cpu_step.sh runs it
 * beside PyTorch): times trainer_step (forward, backward, all-reduce on one rank, clipping,
 * Adam) of an XLM causal LM in fp32 on the CPU and prints training tokens per second.
 *
 * usage: cpu_step [DIM LAYERS HEADS VOCAB B T WARMUP_STEPS TIMED_STEPS]
 * The thread count is OpenMP's (OMP_NUM_THREADS) and OpenBLAS's (OPENBLAS_NUM_THREADS).
 * XLMC_BENCH_OPS=1 also prints where the timed steps spent their time, op by op. */
#include "core/comm.h"
#include "core/config.h"
#include "core/model.h"
#include "core/trainer.h"
#include "core/util.h"
#include "tests/bench/op_timer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    int dim = 256, layers = 4, heads = 8, vocab = 8000, B = 8, T = 128, warm = 2, timed = 5;
    int *args[] = {&dim, &layers, &heads, &vocab, &B, &T, &warm, &timed};
    for (int i = 1; i < argc && i <= 8; i++)
        *args[i - 1] = atoi(argv[i]);
    if (argc > 9 || dim <= 0 || layers <= 0 || heads <= 0 || dim % heads || vocab < 20 || B <= 0 ||
        T <= 1 || warm < 0 || timed <= 0) {
        fprintf(stderr, "usage: %s [DIM LAYERS HEADS VOCAB B T WARMUP_STEPS TIMED_STEPS]\n",
                argv[0]);
        return 2;
    }

    /* The shape XLM trains with: dropout on, Adam, inverse_sqrt, clip 5. */
    char ini[1024];
    snprintf(ini, sizeof ini,
             "[model]\nvocab_size = %d\ndim = %d\nn_layers = %d\nn_heads = %d\n"
             "ffn_dim = %d\nmax_positions = %d\nn_langs = 2\ndropout = 0.1\n"
             "attention_dropout = 0.1\nlayer_norm_eps = 1e-12\nuse_lang_emb = true\n"
             "[train]\nbatch_tokens = %d\nmicro_batch = %d\nseq_len = %d\nlr = 1e-4\n"
             "warmup = 100\nmax_steps = 1000\nclip_norm = 5\nprecision = fp32\n",
             vocab, dim, layers, heads, 4 * dim, T + 1, B * T, B, T);
    struct xlmc_config cfg;
    if (config_parse_string(ini, "cpu_step", &cfg)) return 1;
    const char *by_op = getenv("XLMC_BENCH_OPS");
    int timing = by_op && *by_op && strcmp(by_op, "0") != 0;
    const struct ops *ops = ops_cpu(OPS_FP32);
    struct model m;
    if (model_create(&m, &cfg, timing ? op_timer_wrap(ops) : ops)) return 1;
    model_init_weights(&m, 1);
    struct comm *c = comm_local_create();
    struct trainer t;
    if (trainer_init(&t, &m, c)) return 1;

    /* Full rows of random real tokens (ids above XLM's 14 specials), next-token targets. */
    size_t n = (size_t)B * (size_t)T;
    int32_t *ids = xmalloc(n * sizeof *ids), *langs = xmalloc(n * sizeof *langs);
    int32_t *targets = xmalloc(n * sizeof *targets),
            *lengths = xmalloc((size_t)B * sizeof *lengths);
    uint64_t r = 88172645463325252ull;
    for (size_t i = 0; i < n; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        ids[i] = 14 + (int32_t)(r % (uint64_t)(vocab - 14));
        langs[i] = (int32_t)((i / (size_t)T) % 2);
    }
    for (int b = 0; b < B; b++) {
        lengths[b] = T;
        for (int p = 0; p < T; p++)
            targets[b * T + p] = p + 1 < T ? ids[b * T + p + 1] : -100;
    }
    struct batch batch = {.B = B,
                          .T = T,
                          .ids = ids,
                          .langs = langs,
                          .lengths = lengths,
                          .targets = targets,
                          .row0 = 0};

    struct step_stats st;
    for (int s = 0; s < warm; s++)
        if (trainer_step(&t, &batch, 1, &st)) return 1;
    if (timing) op_timer_reset();
    double t0 = now_seconds();
    for (int s = 0; s < timed; s++)
        if (trainer_step(&t, &batch, 1, &st)) return 1;
    double seconds = now_seconds() - t0;
    printf("xlmc: dim %d layers %d heads %d vocab %d B %d T %d: %d steps in %.3f s, loss %.4f\n",
           dim, layers, heads, vocab, B, T, timed, seconds, st.loss);
    printf("xlmc tokens/s %.1f\n", (double)n * timed / seconds);
    if (timing) {
        printf("step %.2f ms; ", seconds * 1e3 / timed);
        op_timer_report(stdout, timed);
    }

    free(ids);
    free(langs);
    free(targets);
    free(lengths);
    trainer_free(&t);
    comm_destroy(c);
    model_destroy(&m);
    return 0;
}
