/* test_step_flops — the model FLOPs behind the printed MFU, against a count by hand.
 *
 * PaLM's accounting (Chowdhery et al. 2022, appendix B): 6 FLOPs per weight and trained token
 * (2 forward, 4 backward) plus 12 L C T for attention. The parameters of an XLM layer stack,
 * counted from the architecture: word embeddings V C (tied to the output layer), positions
 * P C, languages NL C, the embeddings' LayerNorm 2 C; per layer q, k, v and the output
 * projection 4 (C C + C), the FFN C F + F + F C + C, two LayerNorms 4 C; the output bias V.
 * A CLM step runs the output layer on every position; MLM and TLM run it on their predicted
 * rows only, so a step of n positions with k predicted costs
 *   n (6 (W - V (C + 1)) + 12 L C T) + k 6 V (C + 1). */
#include "core/config.h"
#include "core/model.h"
#include "train/metrics.h"

#include <math.h>
#include <stdio.h>

static const char *CFG = "[model]\nvocab_size = 1000\ndim = 64\nn_layers = 2\nn_heads = 4\n"
                         "ffn_dim = 256\nmax_positions = 128\nn_langs = 2\nlangs = de,en\n"
                         "dropout = 0\nattention_dropout = 0\nlayer_norm_eps = 1e-12\n"
                         "use_lang_emb = true\n[train]\nbatch_tokens = 2048\nmicro_batch = 8\n"
                         "seq_len = 32\nlr = 1e-4\nschedule = constant\nwarmup = 0\n"
                         "max_steps = 1\nclip_norm = 5\nprecision = fp32\nseed = 1\n";

static int fails;

static void expect(const char *what, double got, double want) {
    if (!(fabs(got - want) <= 1e-12 * fabs(want))) {
        printf("FAIL %s: got %.17g, want %.17g\n", what, got, want);
        fails++;
    }
}

int main(void) {
    struct xlmc_config cfg;
    if (config_parse_string(CFG, "step_flops.ini", &cfg)) return 1;
    struct model m;
    if (model_create(&m, &cfg, ops_cpu(OPS_FP32))) return 1;

    double V = 1000, C = 64, L = 2, F = 256, P = 128, NL = 2, T = 32;
    double layer = 4 * (C * C + C) + (C * F + F) + (F * C + C) + 4 * C;
    double W = V * C + P * C + NL * C + 2 * C + L * layer + V;
    expect("parameters", (double)m.num_weights, W);

    double out = V * (C + 1), attn = 12 * L * C * T;
    expect("CLM flops per token", metrics_flops_per_token(&m), 6 * W + attn);
    double n = 2048, k = 307; /* 15 % of the positions predicted */
    expect("CLM step", metrics_step_flops(&m, n, n), n * (6 * W + attn));
    expect("MLM step", metrics_step_flops(&m, n, k), n * (6 * (W - out) + attn) + k * 6 * out);
    expect("no prediction", metrics_step_flops(&m, n, 0), n * (6 * (W - out) + attn));

    model_destroy(&m);
    if (fails) return 1;
    printf("ok: %.0f parameters, %.6g FLOPs per CLM token\n", W, 6 * W + attn);
    return 0;
}
