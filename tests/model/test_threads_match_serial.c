/* test_threads_match_serial — the multi-threaded paths of the CPU backend compute what the
 * single-threaded ones do. Ops below CPU_PAR_MIN elements of work run on one thread, so the
 * small parity and gradient tests exercise only the serial paths; this runs forward + backward
 * with dropout on a model big enough to cross every threshold (N*C = 49152, N*V = 393216),
 * with 1 and with 3 OpenMP threads, and compares loss, logits and every gradient. Products are
 * split by output rows or columns (a backward's two products also run side by side) and
 * reductions run in a fixed order, so the results agree to rounding (OpenBLAS may block a
 * slice differently): limit 1e-5 of each tensor's max. */
#include "core/config.h"
#include "core/model.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *CFG =
    "[model]\nvocab_size = 512\ndim = 96\nn_layers = 2\nn_heads = 3\nffn_dim = 384\n"
    "max_positions = 64\nn_langs = 2\nlangs = de,en\ndropout = 0.1\nattention_dropout = 0.1\n"
    "layer_norm_eps = 1e-5\nuse_lang_emb = true\npad_index = 2\n"
    "[train]\nbatch_tokens = 768\nmicro_batch = 16\nseq_len = 48\nlr = 0.001\nbeta1 = 0.9\n"
    "beta2 = 0.98\nadam_eps = 1e-8\nweight_decay = 0\nschedule = constant\nwarmup = 0\n"
    "clip_norm = 0\nmax_steps = 1\nprecision = fp32\nseed = 1\n";

enum { B = 16, T = 48 };

static void run(int threads, struct model *m, const struct batch *b, float *loss, float *logits,
                float *grads) {
    omp_set_num_threads(threads);
    long count;
    *loss = model_forward(m, b, 1, 99, 4, logits, &count);
    model_backward(m, b, 99, 4, 1.0f, (double)count);
    m->ops->storage_to_f32(grads, m->grads, m->num_params);
}

static double max_abs(const float *a, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s = fmax(s, fabs((double)a[i]));
    return s;
}

/* max |a - b| over max(max |b|, floor) */
static double rel_err(const float *a, const float *b, size_t n, double floor) {
    double d = 0.0, s = fmax(max_abs(b, n), floor);
    for (size_t i = 0; i < n; i++)
        d = fmax(d, fabs((double)a[i] - (double)b[i]));
    return s > 0.0 ? d / s : d;
}

int main(void) {
    struct xlmc_config cfg;
    if (config_parse_string(CFG, "threads.ini", &cfg)) return 1;
    struct model m;
    if (model_create(&m, &cfg, ops_cpu(OPS_FP32))) return 1;
    model_init_weights(&m, 3);
    static int32_t ids[B * T], langs[B * T], targets[B * T], lengths[B];
    uint32_t r = 1;
    for (int i = 0; i < B; i++) {
        lengths[i] = T - 3 * i;
        for (int t = 0; t < T; t++) {
            r = r * 1664525u + 1013904223u;
            ids[i * T + t] = t < lengths[i] ? (int32_t)(14 + (r >> 8) % 498) : 2;
            langs[i * T + t] = i % 2;
        }
        for (int t = 0; t < T; t++)
            targets[i * T + t] = t < lengths[i] - 1 ? ids[i * T + t + 1] : -100;
    }
    struct batch b = {B, T, ids, langs, lengths, targets, 0, NULL, 0};
    size_t nl = (size_t)B * T * 512;
    float *l1 = malloc(nl * 4), *l3 = malloc(nl * 4);
    float *g1 = malloc(m.num_params * 4), *g3 = malloc(m.num_params * 4);
    float loss1, loss3;
    run(1, &m, &b, &loss1, l1, g1);
    run(3, &m, &b, &loss3, l3, g3);
    int fails = 0;
    double e = fabs((double)loss1 - loss3) / fabs((double)loss1);
    printf("loss 1 thread %.7f, 3 threads %.7f (rel %.2g)\n", loss1, loss3, e);
    fails += !(e <= 1e-6);
    e = rel_err(l3, l1, nl, 0.0);
    printf("logits rel %.2g\n", e);
    fails += !(e <= 1e-5);
    /* The key bias's gradient is 0 in exact arithmetic (it adds q.b to every score of a query,
     * which the softmax ignores): what is computed is rounding noise of the sum of dk over the
     * rows (here 2e-10 against 6e-4 for the query bias), and another blocking of a product
     * (OpenBLAS's kernels differ by CPU) changes it entirely. It is held to the scale of the
     * query bias's gradient, the same kind of sum whose terms do not cancel. */
    const struct param_tensor *qb = &m.params[P_QB];
    double kb_floor = max_abs(g1 + qb->offset, qb->numel);
    double worst = 0.0;
    for (int id = 0; id < P_COUNT; id++) {
        const struct param_tensor *t = &m.params[id];
        if (!t->numel) continue;
        e = rel_err(g3 + t->offset, g1 + t->offset, t->numel, id == P_KB ? kb_floor : 0.0);
        worst = fmax(worst, e);
        if (!(e <= 1e-5)) {
            printf("FAIL: gradient %s rel %.2g\n", t->name, e);
            fails++;
        }
    }
    printf("gradients worst rel %.2g\n", worst);
    free(l1);
    free(l3);
    free(g1);
    free(g3);
    model_destroy(&m);
    return fails ? 1 : 0;
}
