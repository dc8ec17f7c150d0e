/* test_gradcheck — model_backward is the derivative of model_forward: central finite
 * differences on a tiny random model (2 layers, C=8, 2 heads, F=12, V=23, 2 languages, one
 * padded row) on sampled entries of EVERY parameter tensor and layer, with dropout and
 * attention dropout ON (p = 0.1). The forward is keyed by (seed, step), so every perturbed
 * forward draws the same masks; if the backward used other masks (or none) the check fails.
 *
 * Step size and tolerance. Everything runs in fp32: the loss (~3.2) carries a rounding noise
 * of ~3e-7, so a central difference with step eps has noise ~3e-7/eps and truncation error
 * ~eps^2 * f''' (f''' = O(1) here). eps = 1e-2 gives noise ~3e-5 and truncation ~1e-4 * |g|
 * scale; each entry is checked at eps and eps/2 (both must pass) against
 * |fd - g| <= 5e-4 + 2e-2 |g|. Typical gradient entries are 1e-2..1e-1, a wrong mask or a
 * missing term is an O(|g|) error, far outside this band; the measured worst error is printed.
 * A second check projects onto a random direction over all parameters at once. */
#include "core/config.h"
#include "core/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *CFG =
    "[model]\nvocab_size = 23\ndim = 8\nn_layers = 2\nn_heads = 2\nffn_dim = 12\n"
    "max_positions = 8\nn_langs = 2\nlangs = de,en\ndropout = 0.1\nattention_dropout = 0.1\n"
    "layer_norm_eps = 1e-5\nuse_lang_emb = true\npad_index = 2\n"
    "[train]\nbatch_tokens = 12\nmicro_batch = 2\nseq_len = 6\nlr = 0.001\nbeta1 = 0.9\n"
    "beta2 = 0.98\nadam_eps = 1e-8\nweight_decay = 0\nschedule = constant\nwarmup = 0\n"
    "clip_norm = 0\nmax_steps = 1\nprecision = fp32\nseed = 1\n";

enum { B = 2, T = 6, SEED = 5, STEP = 3 };

static uint32_t rng = 12345u;
static uint32_t next_u32(void) {
    rng = rng * 1664525u + 1013904223u;
    return rng >> 8;
}
static double uniform_pm1(void) {
    return (double)next_u32() / 8388608.0 - 1.0;
}

static float loss_at(struct model *m, const struct batch *b) {
    model_sync_weights(m);
    long count;
    return model_forward(m, b, 1, SEED, STEP, NULL, &count);
}

static float fd(struct model *m, const struct batch *b, size_t i, float eps) {
    float w = m->master[i];
    m->master[i] = w + eps;
    float lp = loss_at(m, b);
    m->master[i] = w - eps;
    float lm = loss_at(m, b);
    m->master[i] = w;
    return (float)(((double)lp - (double)lm) / (2.0 * eps));
}

int main(void) {
    struct xlmc_config cfg;
    if (config_parse_string(CFG, "gradcheck.ini", &cfg)) return 1;
    struct model m;
    if (model_create(&m, &cfg, ops_cpu(OPS_FP32))) return 1;
    model_init_weights(&m, 11);
    /* move every parameter off its init so LayerNorm weights, biases and pb all matter */
    for (size_t i = 0; i < m.num_params; i++)
        m.master[i] += (float)(0.3 * uniform_pm1());
    int32_t ids[B * T], langs[B * T], targets[B * T], lengths[B] = {6, 4};
    for (int r = 0; r < B; r++) {
        for (int t = 0; t < T; t++) {
            ids[r * T + t] = t < lengths[r] ? (int32_t)(next_u32() % 23) : 2;
            langs[r * T + t] = r;
        }
        for (int t = 0; t < T; t++)
            targets[r * T + t] = t < lengths[r] - 1 ? ids[r * T + t + 1] : -100;
    }
    struct batch b = {B, T, ids, langs, lengths, targets, 7, NULL, 0};

    /* dropout must really be on: the training loss differs from the eval loss */
    model_sync_weights(&m);
    long count;
    float eval_loss = model_forward(&m, &b, 0, SEED, STEP, NULL, &count);
    float train_loss = model_forward(&m, &b, 1, SEED, STEP, NULL, &count);
    printf("loss: eval %.6f, training (dropout on) %.6f, %ld targets\n", eval_loss, train_loss,
           count);
    if (fabsf(eval_loss - train_loss) < 1e-4f) {
        printf("FAIL: dropout does not change the loss\n");
        return 1;
    }
    model_backward(&m, &b, SEED, STEP, 1.0f, (double)count);
    float *g = malloc(m.num_params * sizeof(float));
    m.ops->storage_to_f32(g, m.grads, m.num_params);

    int fails = 0, checked = 0;
    double worst = 0.0;
    const float eps = 1e-2f;
    for (int id = 0; id < P_COUNT; id++) {
        const struct param_tensor *t = &m.params[id];
        if (!t->numel) continue;
        size_t per = t->numel / (size_t)t->layers;
        for (int l = 0; l < t->layers; l++) {
            for (int s = 0; s < 3; s++) {
                size_t i = t->offset + (size_t)l * per + next_u32() % per;
                if (id == P_WTE && s == 0) /* a token that occurs: i in row ids[1] */
                    i = t->offset + (size_t)ids[1] * t->shape[1] + next_u32() % t->shape[1];
                float an = g[i], f1 = fd(&m, &b, i, eps), f2 = fd(&m, &b, i, eps / 2);
                double tol = 5e-4 + 2e-2 * fabs(an);
                double e = fmax(fabs(f1 - an), fabs(f2 - an));
                worst = fmax(worst, e / tol);
                checked++;
                if (!(e <= tol)) {
                    printf("FAIL: %s layer %d elem %zu: backward %.6g, fd(eps) %.6g, "
                           "fd(eps/2) %.6g\n",
                           t->name, l, i - t->offset - l * per, an, f1, f2);
                    fails++;
                }
            }
        }
    }
    /* the whole gradient along one random direction d: (L(w+e d) - L(w-e d)) / 2e = g . d */
    float *w0 = malloc(m.num_params * sizeof(float)), *d = malloc(m.num_params * sizeof(float));
    memcpy(w0, m.master, m.num_params * sizeof(float));
    double gd = 0.0, dd = 0.0;
    for (size_t i = 0; i < m.num_params; i++) {
        d[i] = (float)uniform_pm1();
        gd += (double)g[i] * d[i];
        dd += (double)d[i] * d[i];
    }
    float e = 1e-2f / (float)sqrt(dd);
    for (size_t i = 0; i < m.num_params; i++)
        m.master[i] = w0[i] + e * d[i];
    float lp = loss_at(&m, &b);
    for (size_t i = 0; i < m.num_params; i++)
        m.master[i] = w0[i] - e * d[i];
    float lm = loss_at(&m, &b);
    double dir = ((double)lp - (double)lm) / (2.0 * e);
    printf("direction: fd %.6g, backward %.6g\n", dir, gd);
    if (!(fabs(dir - gd) <= 1e-3 * sqrt(dd) + 2e-2 * fabs(gd))) {
        printf("FAIL: directional derivative\n");
        fails++;
    }
    printf("%d entries over every tensor and layer checked, worst error/tolerance %.3g, %d "
           "failed\n",
           checked, worst, fails);
    free(w0);
    free(d);
    free(g);
    model_destroy(&m);
    return fails ? 1 : 0;
}
